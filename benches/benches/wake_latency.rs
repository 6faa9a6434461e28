//! Wake-up latency from a producer in another process to a mio event loop:
//! shmring (`MioConsumer`, the loop asleep in `epoll_wait`) beside a bare
//! eventfd written by the other process and watched by the same kind of loop,
//! measured in the same run. The producer stamps each item with
//! `CLOCK_MONOTONIC` (one clock for all processes) and sends one item per
//! millisecond, so the loop is asleep every time; the loop takes the
//! difference when the item reaches its code. The two paths alternate in ten
//! rounds so that drifting machine conditions hit both alike.
//!
//! ```text
//! cargo bench -p shmring-benches --bench wake_latency            # 3000 samples each
//! cargo bench -p shmring-benches --bench wake_latency -- --smoke # 200 samples each
//! ```

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use shmring::handshake::{self, Listener};
use shmring::Config;
use shmring_benches::{machine, now_ns, percentile, spawn_role, write_report, Table};
use shmring_mio::{MioConsumer, Readiness};

const CHILD_VAR: &str = "SHMRING_WAKE_CHILD";
const GAP: Duration = Duration::from_millis(1);
const TYPE_NAME: &str = "wake-latency-ns";

fn config() -> Config {
    Config::new(1024).type_name(TYPE_NAME)
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_VAR) {
        child(&role);
        return;
    }
    let smoke = std::env::args().any(|a| a == "--smoke");
    let samples: usize = if smoke { 200 } else { 3000 };

    // Alternate the two in rounds, so that both see the same machine (on a
    // small VM, conditions drift over seconds).
    const ROUNDS: usize = 10;
    let (mut bare, mut ring) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        bare.extend(bare_eventfd(samples / ROUNDS));
        ring.extend(shmring_mio(samples / ROUNDS));
    }
    bare.sort_unstable();
    ring.sort_unstable();

    let mut out = format!(
        "Wake-up latency, producer process -> mio loop asleep in epoll_wait, {samples} samples each{}\n\nMachine: {}\n\n",
        if smoke { " (SMOKE)" } else { "" },
        machine()
    );
    let mut t = Table::new(&["path", "p50", "p99", "p99.9", "max"]);
    for (name, v) in [
        ("bare eventfd + mio", &bare),
        ("shmring + MioConsumer", &ring),
    ] {
        t.row(&[
            name.to_string(),
            us(percentile(v, 50.0)),
            us(percentile(v, 99.0)),
            us(percentile(v, 99.9)),
            us(*v.last().unwrap_or(&0)),
        ]);
    }
    out.push_str(t.as_str());
    let ratio = percentile(&ring, 50.0) as f64 / percentile(&bare, 50.0).max(1) as f64;
    out.push_str(&format!(
        "\np50 ratio shmring / bare eventfd: {ratio:.2}x (target <= 1.25x: {})\n",
        if ratio <= 1.25 { "met" } else { "MISSED" }
    ));
    let lost = LOST_STAMPS.load(std::sync::atomic::Ordering::Relaxed);
    if lost > 0 {
        out.push_str(&format!(
            "bare eventfd: {lost} stamps lost (writes that added up in the counter before the loop read it; not timed)\n"
        ));
    }
    print!("{out}");
    write_report("bench-wake.md", &out);
}

fn us(ns: u64) -> String {
    format!("{:.1} µs", ns as f64 / 1000.0)
}

fn spawn(role: &str, env: &[(&str, String)]) -> std::process::Child {
    spawn_role(CHILD_VAR, role, env)
}

fn child(role: &str) {
    let n: usize = std::env::var("SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    match role {
        "shmring" => {
            let path = std::env::var("SOCK").expect("SOCK");
            let mut tx = handshake::connect_producer::<u64>(path, &config()).expect("connect");
            for _ in 0..n {
                std::thread::sleep(GAP);
                tx.try_push(now_ns()).expect("push");
            }
        }
        "eventfd" => {
            let fd: i32 = std::env::var("EVFD")
                .ok()
                .and_then(|v| v.parse().ok())
                .expect("EVFD");
            for _ in 0..n {
                std::thread::sleep(GAP);
                let ts = now_ns();
                // SAFETY: writes 8 bytes from a live local to the inherited eventfd.
                unsafe { libc::write(fd, (&ts as *const u64).cast(), 8) };
            }
        }
        other => panic!("unknown role {other}"),
    }
}

fn shmring_mio(samples: usize) -> Vec<u64> {
    let dir = std::env::temp_dir().join(format!("shmring-wake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("s.sock");
    let listener = Listener::bind(&path, &Default::default()).expect("bind");
    let mut child = spawn(
        "shmring",
        &[
            ("SOCK", path.display().to_string()),
            ("SAMPLES", samples.to_string()),
        ],
    );
    let rx = listener.accept_consumer::<u64>(&config()).expect("accept");
    let mut rx = MioConsumer::new(rx);
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut rx, Token(1), Interest::READABLE)
        .expect("register");
    let mut lat = Vec::with_capacity(samples);
    let mut state = Readiness::Ready;
    loop {
        let timeout = match state {
            Readiness::Ready => Some(Duration::ZERO),
            _ => Some(Duration::from_secs(5)),
        };
        poll.poll(&mut events, timeout).expect("poll");
        state = rx
            .drain_with(poll.registry(), |items| {
                let now = now_ns();
                for &ts in items {
                    lat.push(now.saturating_sub(ts));
                }
            })
            .expect("drain");
        if state == Readiness::Closed {
            break;
        }
    }
    poll.registry().deregister(&mut rx).expect("deregister");
    child.wait().expect("child");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(lat.len(), samples, "every stamp arrived");
    lat.sort_unstable();
    lat
}

fn bare_eventfd(samples: usize) -> Vec<u64> {
    // SAFETY: eventfd has no pointer arguments. Not CLOEXEC: the child inherits it.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK) };
    assert!(raw >= 0, "eventfd");
    // SAFETY: a fresh fd that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut child = spawn(
        "eventfd",
        &[("EVFD", raw.to_string()), ("SAMPLES", samples.to_string())],
    );
    let mut poll = Poll::new().expect("poll");
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut SourceFd(&fd.as_raw_fd()), Token(1), Interest::READABLE)
        .expect("register");
    let mut lat = Vec::with_capacity(samples);
    let mut lost = 0;
    while lat.len() + lost < samples {
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(!events.is_empty(), "eventfd producer stalled");
        let mut v = 0u64;
        // SAFETY: reads 8 bytes into a live local.
        let r = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
        if r != 8 {
            continue;
        }
        let now = now_ns();
        match stamps_in(v, now) {
            1 => lat.push(now.saturating_sub(v)),
            // Two or more writes added up in the counter before the loop
            // read it (the loop was late): their stamps are lost, not timed.
            k => lost += k,
        }
    }
    child.wait().expect("child");
    LOST_STAMPS.fetch_add(lost, std::sync::atomic::Ordering::Relaxed);
    lat.sort_unstable();
    lat
}

/// Stamps the bare eventfd path lost because writes added up in the counter.
static LOST_STAMPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How many `CLOCK_MONOTONIC` stamps an eventfd counter value `v` read at
/// `now` holds. One stamp is never later than `now`; a sum of `k` stamps
/// taken within the last few milliseconds (while the machine has been up
/// far longer) is about `k * now`.
fn stamps_in(v: u64, now: u64) -> usize {
    if v <= now {
        1
    } else {
        ((v as f64 / now.max(1) as f64).round() as usize).max(2)
    }
}
