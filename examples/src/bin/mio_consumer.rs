//! One thread, one mio `Poll`: listens on a socket path and consumes u64 items
//! from any number of producer processes (`mio_producer`), printing each
//! producer's rate every second and its item count and checksum when it exits.
//!
//! ```text
//! mio_consumer /tmp/demo.sock [--expect N] [--capacity C] [--pipe|--eventfd]
//! mio_producer /tmp/demo.sock --items 1000000      # as many as you like
//! ```
//!
//! `--expect N` exits after N producers have finished (for tests and demos).

use shmring_examples::{checksum_step, CHECKSUM_INIT};
use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mio::Token;
use shmring::{Config, SignalKind};
use shmring_mio::{ConsumerDriver, DriverEvent, MioListener};

const REPORT_EVERY: Duration = Duration::from_secs(1);

struct Args {
    path: String,
    expect: Option<usize>,
    capacity: usize,
    signal: SignalKind,
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut args = Args {
        path: String::new(),
        expect: None,
        capacity: 4096,
        signal: SignalKind::default(),
    };
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--expect" => args.expect = Some(value("--expect")?),
            "--capacity" => args.capacity = value("--capacity")?,
            "--pipe" => args.signal = SignalKind::Pipe,
            "--eventfd" => args.signal = SignalKind::EventFd,
            "-h" | "--help" => return Err(String::new()),
            p if args.path.is_empty() && !p.starts_with('-') => args.path = p.into(),
            other => return Err(format!("unexpected argument {other}")),
        }
    }
    if args.path.is_empty() {
        return Err("missing socket path".into());
    }
    Ok(args)
}

/// What the loop knows of one connected producer.
struct Peer {
    pid: i32,
    items: u64,
    checksum: u64,
    in_order: bool,
    since_report: u64,
    started: Instant,
}

impl Peer {
    fn new(pid: i32) -> Self {
        Peer {
            pid,
            items: 0,
            checksum: CHECKSUM_INIT,
            in_order: true,
            since_report: 0,
            started: Instant::now(),
        }
    }

    /// Counts and checks the next items of this producer (0, 1, 2, ...).
    fn take(&mut self, items: &[u64]) {
        for &x in items {
            self.in_order &= x == self.items;
            self.checksum = checksum_step(self.checksum, x);
            self.items += 1;
        }
        self.since_report += items.len() as u64;
    }
}

/// Prints each producer's rate over the last `elapsed`, and starts a new
/// period.
fn report(peers: &mut HashMap<Token, Peer>, elapsed: Duration) {
    let mut list: Vec<_> = peers.values_mut().collect();
    list.sort_by_key(|p| p.pid);
    for p in list {
        println!(
            "  pid {:>7}: {:>12.0} items/s ({} total)",
            p.pid,
            p.since_report as f64 / elapsed.as_secs_f64(),
            p.items
        );
        p.since_report = 0;
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("mio_consumer: {e}");
            }
            eprintln!(
                "usage: mio_consumer SOCKET_PATH [--expect N] [--capacity C] [--pipe|--eventfd]"
            );
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mio_consumer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::new(args.capacity)
        .type_name("shmring-demo-u64")
        .signal(args.signal);
    let mut driver = ConsumerDriver::<u64>::new()?;
    driver.listen(MioListener::bind(&args.path, &Default::default())?, config)?;
    println!("listening on {}", args.path);

    let mut peers: HashMap<Token, Peer> = HashMap::new();
    let mut finished = 0usize;
    let mut last_report = Instant::now();

    while args.expect.is_none_or(|n| finished < n) {
        let until_report = (last_report + REPORT_EVERY).saturating_duration_since(Instant::now());
        driver.run_once(Some(until_report), |event| match event {
            DriverEvent::Connected { token, peer } => {
                println!("producer pid {} connected", peer.pid);
                peers.insert(token, Peer::new(peer.pid));
            }
            DriverEvent::Items { token, items } => {
                if let Some(p) = peers.get_mut(&token) {
                    p.take(items);
                }
            }
            DriverEvent::Closed { token, stats } => {
                if let Some(p) = peers.remove(&token) {
                    let secs = p.started.elapsed().as_secs_f64();
                    println!(
                        "producer pid {} finished: {} items, checksum {:#018x}, in order: {}, {:.0} items/s overall, {stats:?}",
                        p.pid,
                        p.items,
                        p.checksum,
                        if p.in_order { "yes" } else { "NO" },
                        p.items as f64 / secs,
                    );
                }
                finished += 1;
            }
            DriverEvent::Failed { token, error } => {
                let pid = peers.remove(&token).map_or(0, |p| p.pid);
                eprintln!("producer pid {pid}: {error}; dropped it");
                finished += 1;
            }
            DriverEvent::Throttled { token, until } => {
                let pid = peers.get(&token).map_or(0, |p| p.pid);
                eprintln!(
                    "producer pid {pid} floods its wake-up fd: paused {:?}",
                    until.saturating_duration_since(Instant::now())
                );
            }
            DriverEvent::Refused(e) => eprintln!("handshake failed: {e}"),
            DriverEvent::Other(_) => {}
        })?;

        let elapsed = last_report.elapsed();
        if elapsed >= REPORT_EVERY {
            report(&mut peers, elapsed);
            last_report = Instant::now();
        }
    }
    Ok(())
}
