//! Connects to `mio_consumer` and pushes the u64 items 0..N, then prints their
//! checksum (the consumer prints the checksum of what it received) and exits.
//!
//! ```text
//! mio_producer /tmp/demo.sock --items 1000000 [--pipe|--eventfd]
//! ```

use shmring_examples::{checksum_step, CHECKSUM_INIT};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use shmring::{handshake, Config, SignalKind};

fn main() -> ExitCode {
    let mut path = None;
    let mut items = 1_000_000u64;
    let mut signal = SignalKind::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--items" => match it.next().and_then(|v| v.parse().ok()) {
                Some(n) => items = n,
                None => return usage("--items needs a number"),
            },
            "--pipe" => signal = SignalKind::Pipe,
            "--eventfd" => signal = SignalKind::EventFd,
            p if path.is_none() && !p.starts_with('-') => path = Some(p.to_string()),
            other => return usage(&format!("unexpected argument {other}")),
        }
    }
    let Some(path) = path else {
        return usage("missing socket path");
    };
    match run(&path, items, signal) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mio_producer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(msg: &str) -> ExitCode {
    eprintln!("mio_producer: {msg}");
    eprintln!("usage: mio_producer SOCKET_PATH [--items N] [--pipe|--eventfd]");
    ExitCode::from(2)
}

fn run(path: &str, items: u64, signal: SignalKind) -> shmring::Result<()> {
    // The listener chooses the capacity; ours only matters for the type tag.
    let config = Config::new(1)
        .type_name("shmring-demo-u64")
        .signal(signal)
        .handshake_timeout(Duration::from_secs(10));
    let mut tx = handshake::connect_producer::<u64>(path, &config)?;
    let start = Instant::now();
    let mut sum = CHECKSUM_INIT;
    let mut next = 0u64;
    while next < items {
        // Copy into the free slots; wait (with a timeout) when the ring is full.
        let mut chunk = tx.write_chunk((items - next).min(4096) as usize)?;
        let filled = chunk.len();
        chunk.fill_from_iter((next..).inspect(|&x| sum = checksum_step(sum, x)));
        next += filled as u64;
        chunk.commit_all();
        if filled == 0 {
            tx.wait_writable(Some(Duration::from_secs(10)))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "pid {}: pushed {items} items, checksum {sum:#018x}, {:.0} items/s, {} wake-ups sent",
        std::process::id(),
        items as f64 / secs,
        tx.stats().wakeups_sent
    );
    Ok(())
}
