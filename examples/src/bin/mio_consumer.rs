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

use mio::{Events, Interest, Poll, Token};
use shmring::{Config, SignalKind};
use shmring_mio::{MioConsumer, MioListener, Readiness};

const LISTENER: Token = Token(0);
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

struct Peer {
    rx: MioConsumer<u64>,
    pid: i32,
    items: u64,
    checksum: u64,
    in_order: bool,
    state: Readiness,
    since_report: u64,
    started: Instant,
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
    let mut listener = MioListener::bind(&args.path, &Default::default())?;
    let mut poll = Poll::new()?;
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    println!("listening on {}", args.path);

    let mut events = Events::with_capacity(256);
    let mut peers: HashMap<Token, Peer> = HashMap::new();
    let mut next_token = 1usize;
    let mut finished = 0usize;
    let mut due: Vec<Token> = Vec::new();
    let mut last_report = Instant::now();

    while args.expect.is_none_or(|n| finished < n) {
        // Timeout: zero if a consumer has work left over, else the nearest of
        // the report tick, a throttled consumer's resume and a handshake deadline.
        let now = Instant::now();
        let mut timeout = (last_report + REPORT_EVERY).saturating_duration_since(now);
        if let Some(d) = listener.next_deadline() {
            timeout = timeout.min(d.saturating_duration_since(now));
        }
        for p in peers.values() {
            match p.state {
                Readiness::Ready => timeout = Duration::ZERO,
                Readiness::Throttled(t) => timeout = timeout.min(t.saturating_duration_since(now)),
                _ => {}
            }
        }
        poll.poll(&mut events, Some(timeout))?;

        let now = Instant::now();
        due.clear();
        due.extend(events.iter().map(|e| e.token()));
        for (&t, p) in &peers {
            match p.state {
                Readiness::Ready => due.push(t),
                Readiness::Throttled(until) if until <= now => due.push(t),
                _ => {}
            }
        }
        if listener.next_deadline().is_some_and(|d| d <= now) {
            due.push(LISTENER);
        }
        due.sort();
        due.dedup();

        if due.first() == Some(&LISTENER) {
            for r in listener.accept_consumers::<u64>(poll.registry(), &config)? {
                match r {
                    Ok(acc) => {
                        let mut rx = acc.endpoint;
                        let t = Token(next_token);
                        next_token += 1;
                        poll.registry().register(&mut rx, t, Interest::READABLE)?;
                        println!("producer pid {} connected", acc.peer.pid);
                        peers.insert(
                            t,
                            Peer {
                                rx,
                                pid: acc.peer.pid,
                                items: 0,
                                checksum: CHECKSUM_INIT,
                                in_order: true,
                                state: Readiness::Ready,
                                since_report: 0,
                                started: Instant::now(),
                            },
                        );
                        // Drain once at once: that arms its wake-up.
                        due.push(t);
                    }
                    Err(e) => eprintln!("handshake failed: {e}"),
                }
            }
        }

        for &t in &due {
            let Some(p) = peers.get_mut(&t) else {
                continue;
            };
            let (items, sum, in_order) = (&mut p.items, &mut p.checksum, &mut p.in_order);
            let before = *items;
            let result = p.rx.drain_with(poll.registry(), |chunk| {
                for &x in chunk {
                    *in_order &= x == *items;
                    *sum = checksum_step(*sum, x);
                    *items += 1;
                }
            });
            p.since_report += p.items - before;
            match result {
                Ok(Readiness::Closed) => {
                    // `t` is the key `p` was just looked up by: our own map, not peer data.
                    let mut p = peers.remove(&t).expect("peer");
                    poll.registry().deregister(&mut p.rx)?;
                    let secs = p.started.elapsed().as_secs_f64();
                    println!(
                        "producer pid {} finished: {} items, checksum {:#018x}, in order: {}, {:.0} items/s overall, {:?}",
                        p.pid,
                        p.items,
                        p.checksum,
                        if p.in_order { "yes" } else { "NO" },
                        p.items as f64 / secs,
                        p.rx.wake_stats(),
                    );
                    finished += 1;
                }
                Ok(Readiness::Throttled(until)) => {
                    if !matches!(p.state, Readiness::Throttled(_)) {
                        eprintln!(
                            "producer pid {} floods its wake-up fd: paused {:?}",
                            p.pid,
                            until.saturating_duration_since(now)
                        );
                    }
                    p.state = Readiness::Throttled(until);
                }
                Ok(state) => p.state = state,
                Err(e) => {
                    eprintln!("producer pid {}: {e}; dropping it", p.pid);
                    // `t` is the key `p` was just looked up by: our own map, not peer data.
                    let mut p = peers.remove(&t).expect("peer");
                    poll.registry().deregister(&mut p.rx)?;
                    finished += 1;
                }
            }
        }

        let elapsed = last_report.elapsed();
        if elapsed >= REPORT_EVERY {
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
            last_report = Instant::now();
        }
    }
    poll.registry().deregister(&mut listener)?;
    Ok(())
}
