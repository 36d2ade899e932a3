//! Resolves many names at once through a green `Pool`, under one overall timeout, and prints how
//! many finished (gevent's `examples/dns_mass_resolve.py`).
//!
//! ```text
//! # Standalone: the names of /etc/hosts plus localhost, through the default resolver.
//! cargo run --release --example dns_mass_resolve
//!
//! # Against a DNS server of your own, e.g. dnsmasq serving host0.test … host9999.test:
//! #   seq 0 9999 | awk '{printf "10.1.%d.%d host%d.test\n", $1/250, $1%250+1, $1}' > /tmp/names.hosts
//! #   dnsmasq --no-daemon --port=5353 --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
//! #       --no-hosts --local=/test/ --addn-hosts=/tmp/names.hosts &
//! cargo run --release --example dns_mass_resolve -- --nameserver 127.0.0.1:5353 --count 10000 \
//!     --suffix .test --pool 500 --timeout 10
//!
//! # Names from a file (one per line), getaddrinfo on the thread pool instead of the native resolver:
//! GREEN_RESOLVER=thread cargo run --release --example dns_mass_resolve -- --names names.txt
//! ```
//!
//! Options: `--nameserver IP:PORT` (repeatable; installs a native resolver asking only those
//! servers), `--names FILE`, `--count N --prefix host --suffix .test` (generated names
//! `host0.test` …), `--pool N` (concurrent lookups, default 200), `--timeout SECS` (overall,
//! default 10), `--max-in-flight N` (a native resolver sending at most N tries at once).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use green::dns::{self, NativeResolver};

struct Options {
    nameservers: Vec<SocketAddr>,
    names_file: Option<String>,
    count: Option<usize>,
    prefix: String,
    suffix: String,
    pool: usize,
    timeout: Duration,
    max_in_flight: Option<usize>,
}

fn usage(problem: &str) -> ! {
    eprintln!("dns_mass_resolve: {problem}");
    eprintln!(
        "usage: dns_mass_resolve [--nameserver IP:PORT]... [--names FILE | --count N \
         [--prefix P] [--suffix S]] [--pool N] [--timeout SECS] [--max-in-flight N]"
    );
    std::process::exit(2)
}

fn parse_args() -> Options {
    let mut options = Options {
        nameservers: Vec::new(),
        names_file: None,
        count: None,
        prefix: "host".into(),
        suffix: String::new(),
        pool: 200,
        timeout: Duration::from_secs(10),
        max_in_flight: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--nameserver" => match dns::ResolvConf::parse_nameservers(&value()) {
                Ok(servers) => options.nameservers.extend(servers),
                Err(err) => usage(&err.to_string()),
            },
            "--names" => options.names_file = Some(value()),
            "--count" => options.count = value().parse().ok(),
            "--prefix" => options.prefix = value(),
            "--suffix" => options.suffix = value(),
            "--pool" => {
                options.pool = value()
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--pool needs a positive number"))
            }
            "--timeout" => {
                let secs: f64 = value()
                    .parse()
                    .unwrap_or_else(|_| usage("--timeout needs seconds"));
                options.timeout = Duration::from_secs_f64(secs);
            }
            "--max-in-flight" => options.max_in_flight = value().parse().ok(),
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    options
}

/// The names of the hosts file (every name and alias), plus `localhost`.
fn names_from_hosts() -> Vec<String> {
    let text = std::fs::read_to_string(dns::Hosts::DEFAULT_PATH).unwrap_or_default();
    let mut names = vec!["localhost".to_string()];
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        for name in line.split_whitespace().skip(1) {
            if !names.iter().any(|n| n.eq_ignore_ascii_case(name)) {
                names.push(name.to_string());
            }
        }
    }
    names
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let options = parse_args();
    if !options.nameservers.is_empty() || options.max_in_flight.is_some() {
        let mut builder = NativeResolver::builder();
        if !options.nameservers.is_empty() {
            builder = builder.nameservers(options.nameservers.iter().copied());
        }
        if let Some(tries) = options.max_in_flight {
            builder = builder.max_in_flight(tries);
        }
        dns::set_resolver(builder.build());
    }
    let names: Vec<String> = if let Some(path) = &options.names_file {
        std::fs::read_to_string(path)
            .unwrap_or_else(|err| usage(&format!("{path}: {err}")))
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect()
    } else if let Some(count) = options.count {
        (0..count)
            .map(|i| format!("{}{i}{}", options.prefix, options.suffix))
            .collect()
    } else {
        names_from_hosts()
    };
    let total = names.len();
    println!(
        "resolving {total} names, {} at a time, {:?} overall, resolver {:?}",
        options.pool,
        options.timeout,
        dns::resolver()
    );

    let pool = green::Pool::new(options.pool);
    let (ok, failed) = (Rc::new(Cell::new(0usize)), Rc::new(Cell::new(0usize)));
    let slowest = Rc::new(Cell::new(Duration::ZERO));
    let slowest_name = Rc::new(RefCell::new(String::new()));
    let started = Instant::now();
    let finished_in_time = green::with_timeout(options.timeout, || {
        let (ok, failed) = (ok.clone(), failed.clone());
        let (slowest, slowest_name) = (slowest.clone(), slowest_name.clone());
        let lookups = pool.imap_unordered(names, |name| {
            let started = Instant::now();
            (dns::resolve(&name), name, started.elapsed())
        });
        for outcome in lookups {
            if let Ok((_, name, took)) = &outcome {
                if *took > slowest.get() {
                    slowest.set(*took);
                    *slowest_name.borrow_mut() = name.clone();
                }
            }
            match outcome {
                Ok((Ok(_), _, _)) => ok.set(ok.get() + 1),
                Ok((Err(err), name, _)) => {
                    if failed.get() < 5 {
                        eprintln!("{name}: {err}");
                    }
                    failed.set(failed.get() + 1);
                }
                Err(err) => {
                    eprintln!("lookup greenlet failed: {err}");
                    failed.set(failed.get() + 1);
                }
            }
        }
    })
    .is_ok();
    let elapsed = started.elapsed();
    pool.kill();
    let done = ok.get() + failed.get();
    println!(
        "finished {done} of {total} in {elapsed:.2?} ({} resolved, {} failed{}); {:.0} names/s",
        ok.get(),
        failed.get(),
        if finished_in_time {
            String::new()
        } else {
            format!(", {} cut off by the timeout", total - done)
        },
        done as f64 / elapsed.as_secs_f64()
    );
    println!(
        "slowest lookup: {:.2?} ({})",
        slowest.get(),
        slowest_name.borrow()
    );
}
