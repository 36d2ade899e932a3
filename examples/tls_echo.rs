//! A TLS echo server and its clients in one binary, on one OS thread: the server runs a greenlet
//! per connection, the clients are greenlets too. It makes its own certificate with rcgen.
//!
//! ```text
//! # Server plus 10 concurrent clients, each sending a few lines and checking the echo:
//! cargo run --example tls_echo
//! cargo run --example tls_echo -- --clients 200
//!
//! # Server only; it prints an `openssl s_client` command that trusts its certificate:
//! cargo run --example tls_echo -- --serve 127.0.0.1:16443
//! ```

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Write};
use std::rc::Rc;
use std::time::Instant;

use green::net::{TcpListener, TcpStream};
use green::tls::{TlsAcceptor, TlsConnector, TlsStream};

fn main() -> io::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let option = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).cloned()
    };
    let serve_only = option("--serve");
    let clients: usize = option("--clients").map_or(10, |n| n.parse().expect("--clients N"));

    // A self-signed certificate for localhost and 127.0.0.1, trusted by our own clients.
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.key_pair.serialize_pem());
    let acceptor = TlsAcceptor::new(&cert_pem, &key_pem)?;

    let listener = TcpListener::bind(serve_only.as_deref().unwrap_or("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let server = green::spawn(move || loop {
        let (tcp, peer) = match listener.accept() {
            Ok(conn) => conn,
            Err(err) => return eprintln!("accept: {err}"),
        };
        let acceptor = acceptor.clone();
        green::spawn(move || {
            if let Err(err) = acceptor.accept(tcp).and_then(echo) {
                eprintln!("{peer}: {err}");
            }
        });
    });

    if serve_only.is_some() {
        let ca_file = std::env::temp_dir().join("green-tls-echo-cert.pem");
        std::fs::write(&ca_file, &cert_pem)?;
        println!("TLS echo server on {addr}; try:");
        println!(
            "  openssl s_client -connect {addr} -servername localhost -CAfile {}",
            ca_file.display()
        );
        return server.join().map_err(|e| io::Error::other(e.to_string()));
    }

    let connector = TlsConnector::builder()
        .add_root_certificate(&cert_pem)
        .system_roots(false)
        .build()?;
    let echoed = Rc::new(Cell::new(0));
    let started = Instant::now();
    let greenlets: Vec<_> = (0..clients)
        .map(|i| {
            let (connector, echoed) = (connector.clone(), echoed.clone());
            green::spawn(move || -> io::Result<()> {
                let tls = connector.connect("localhost", TcpStream::connect(addr)?)?;
                let mut reader = BufReader::new(tls);
                for line in 0..3 {
                    let message = format!("client {i} line {line}\n");
                    reader.get_mut().write_all(message.as_bytes())?;
                    let mut reply = String::new();
                    reader.read_line(&mut reply)?;
                    assert_eq!(reply, message);
                    echoed.set(echoed.get() + 1);
                }
                reader.get_mut().shutdown()
            })
        })
        .collect();
    for result in green::joinall(greenlets) {
        result.map_err(|e| io::Error::other(e.to_string()))??;
    }
    println!(
        "{clients} TLS clients echoed {} lines through {addr} in {:?}",
        echoed.get(),
        started.elapsed()
    );
    server.kill();
    Ok(())
}

/// Echoes until the client's close_notify, then sends ours.
fn echo(mut tls: TlsStream<TcpStream>) -> io::Result<()> {
    let mut buf = [0; 4096];
    loop {
        match io::Read::read(&mut tls, &mut buf)? {
            0 => return tls.shutdown(),
            n => tls.write_all(&buf[..n])?,
        }
    }
}
