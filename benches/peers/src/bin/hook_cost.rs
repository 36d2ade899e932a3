//! What a green::patch hook adds to a libc call, in instructions (deterministic, unlike
//! nanoseconds on a shared VM): run each variant under callgrind and compare.
//!
//! ```sh
//! cargo build --release -p green-bench --bin hook_cost
//! for v in glibc off on greenlet; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/hook_cost $v 1000000 2>&1 | grep refs
//! done
//! ```
//! Each variant makes `calls` 1-byte writes to /dev/null (the kernel's work is not counted by
//! callgrind): `glibc` calls glibc's `write` through its address (no hook), `off` calls `write`
//! (the hook) with the patch off, `on` with it on outside any greenlet, `greenlet` inside one.
//! `--ns` times them instead (noisy here).

use std::os::fd::AsRawFd;
use std::time::Instant;

type WriteFn =
    unsafe extern "C" fn(libc::c_int, *const libc::c_void, libc::size_t) -> libc::ssize_t;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(variant), Some(calls)) =
        (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok()))
    else {
        eprintln!("usage: hook_cost glibc|off|on|greenlet CALLS [--ns]");
        std::process::exit(2);
    };
    let timed = args.iter().any(|a| a == "--ns");
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .unwrap();
    let fd = null.as_raw_fd();
    static BYTE: [u8; 1] = [0];
    let buf = BYTE.as_ptr().cast::<libc::c_void>();
    // SAFETY: dlsym of glibc's `write`, whose signature WriteFn repeats.
    let glibc_write: WriteFn =
        unsafe { std::mem::transmute(libc::dlsym(libc::RTLD_NEXT, c"write".as_ptr())) };
    let run = move |function: WriteFn| {
        let started = Instant::now();
        for _ in 0..calls {
            // SAFETY: a 1-byte write from a static buffer to an open fd.
            std::hint::black_box(unsafe { function(fd, buf, 1) });
        }
        started.elapsed().as_nanos() as f64 / calls as f64
    };
    let hooked: WriteFn = libc::write;
    let ns = match variant.as_str() {
        "glibc" => run(glibc_write),
        "off" => run(hooked),
        "on" => {
            assert!(green::patch::all());
            run(hooked)
        }
        "greenlet" => {
            assert!(green::patch::all());
            green::spawn(move || run(hooked)).join().unwrap()
        }
        other => {
            eprintln!("unknown variant {other}");
            std::process::exit(2);
        }
    };
    if timed {
        println!("{variant}: {ns:.1} ns per call");
    }
    drop(null);
}
