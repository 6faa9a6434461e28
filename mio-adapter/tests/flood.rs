//! Issue 3, test 3: a hostile peer that floods the wake-up fd (writing it in a
//! tight loop without committing anything) is throttled, does not grow the
//! loop's memory, and does not hold up an honest producer on the same loop.
//!
//! "Does not make the loop spin" is checked as the mechanism that bounds the
//! loop's work, not as a CPU share (that depends on the machine's load; the
//! CPU figures are printed): the loop serves at most `max_empty_wakeups + 1`
//! empty wake-ups of one peer per counting window, a window lasting at least
//! `window` unless it ends in a pause.

mod common;

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use shmring::{channel, Config, SignalKind};
use shmring_mio::{FloodPolicy, MioConsumer, MioProducer, Readiness, WakeStats};

child_test!();

const FLOOD_SECS: f64 = 2.0;

/// Asserts that `stats`, gathered over at most `wall` under the default
/// policy, served no more empty wake-ups than the policy lets through: at most
/// `max_empty_wakeups + 1` per window, and no more windows than `wall` holds
/// (one per `window`, plus the first, plus one cut short by each pause).
fn assert_rate_limited(stats: &WakeStats, wall: Duration) {
    let p = FloodPolicy::default();
    let windows = (wall.as_nanos() / p.window.as_nanos()) as u64 + 1 + stats.throttles;
    let most = windows * (u64::from(p.max_empty_wakeups) + 1);
    assert!(
        stats.empty_wakeups <= most,
        "{} empty wake-ups served in {wall:?} (at most {most}): {stats:?}",
        stats.empty_wakeups
    );
}

fn flooding_producer_process(signal: SignalKind) {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("flood");
    let config = common::config(signal, 1024);
    let mut listener = common::bind(&path);
    let flooder = common::spawn_at(
        "flooder",
        &path,
        &[common::signal_name(signal).into(), FLOOD_SECS.to_string()],
    );
    // An honest producer on the same loop meanwhile: ~2.5 s of bursts and gaps.
    let (honest, honest_total) = common::spawn_bursty(&path, signal, 1024, (42, 1800, 200));
    let (flooder_pid, honest_pid) = (flooder.id() as i32, honest.id() as i32);

    let rss_before = common::rss();
    let cpu_before = common::thread_cpu();
    let t0 = Instant::now();
    let finished = common::consume(
        &mut listener,
        &config,
        &common::LoopOpts {
            expect: 2,
            budget: 4096,
            stall: Duration::from_secs(3),
            overall: Duration::from_secs(20),
        },
    );
    let wall = t0.elapsed();
    let cpu = common::thread_cpu() - cpu_before;
    let rss_growth = common::rss().saturating_sub(rss_before);
    common::wait_ok(flooder, "flooder");
    common::wait_ok(honest, "honest producer");

    let f = finished.iter().find(|f| f.pid == flooder_pid).unwrap();
    let h = finished.iter().find(|f| f.pid == honest_pid).unwrap();
    eprintln!(
        "{signal:?}: loop thread: {cpu:?} CPU over {wall:?} wall ({:.1}%), RSS +{} KiB; flooder {:?}; honest {:?}",
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        rss_growth / 1024,
        f.wake,
        h.wake
    );
    // The flooder wrote for FLOOD_SECS before it left: the loop served it
    // all that time.
    assert!(wall >= Duration::from_secs_f64(FLOOD_SECS));
    assert!(rss_growth < 8 << 20, "RSS grew by {rss_growth} bytes");
    assert_eq!(f.items, 0);
    assert!(
        f.wake.throttles > 0,
        "flooder never throttled: {:?}",
        f.wake
    );
    assert_rate_limited(&f.wake, wall);
    assert_eq!(h.items, honest_total);
    assert!(h.in_order);
    assert_eq!(h.wake.throttles, 0, "honest producer throttled");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn flooding_producer_process_is_throttled_eventfd() {
    flooding_producer_process(SignalKind::EventFd);
}

#[test]
fn flooding_producer_process_is_throttled_pipe() {
    flooding_producer_process(SignalKind::Pipe);
}

#[test]
fn flooding_producer_process_is_throttled_socket() {
    flooding_producer_process(SignalKind::Socket);
}

/// Writes `fd` (a dup of a wake-up eventfd: what a hostile peer holds) in a
/// tight loop until `stop`.
fn flood_thread(fd: OwnedFd, stop: Instant) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let one = 1u64;
        let mut n = 0;
        while Instant::now() < stop {
            for _ in 0..64 {
                // SAFETY: writes 8 bytes from a live local to an fd we own.
                unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
            n += 64;
        }
        n
    })
}

#[test]
fn flooded_idle_producer_is_throttled() {
    let _serial = common::serial();
    let (tx, mut rx) = channel::pair::<u64>(&Config::new(64).signal(SignalKind::EventFd)).unwrap();
    let mut tx = MioProducer::new(tx);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(64);
    poll.registry()
        .register(&mut tx, Token(7), Interest::READABLE)
        .unwrap();
    let mut state = tx.poll_writable(poll.registry()).unwrap();
    assert_eq!(state, Readiness::Ready);
    let dup = tx.as_fd().try_clone_to_owned().unwrap();
    let wall = Duration::from_secs_f64(1.5);
    let rss_before = common::rss();
    let cpu_before = common::thread_cpu();
    let t0 = Instant::now();
    let flooder = flood_thread(dup, t0 + wall);
    let mut pushed = 0u64;
    while t0.elapsed() < wall {
        let timeout = match state {
            Readiness::Throttled(t) => t.saturating_duration_since(Instant::now()),
            _ => Duration::from_millis(50),
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        state = tx.poll_writable(poll.registry()).unwrap();
        // Now and then there is something to send: it must still get through.
        if pushed < 1000 && state == Readiness::Ready {
            pushed += tx.try_push(pushed).map(|_| 1).unwrap_or(0);
            assert_eq!(rx.try_pop().unwrap(), pushed - 1);
        }
    }
    let cpu = common::thread_cpu() - cpu_before;
    let writes = flooder.join().unwrap();
    let stats = tx.wake_stats();
    eprintln!(
        "producer loop: {cpu:?} CPU over {:?}, {writes} flood writes, {stats:?}",
        t0.elapsed()
    );
    assert!(stats.throttles > 0);
    assert_rate_limited(&stats, t0.elapsed());
    assert!(common::rss().saturating_sub(rss_before) < 8 << 20);
    assert!(pushed > 0);
    poll.registry().deregister(&mut tx).unwrap();
}

#[test]
fn dropped_endpoint_leaves_no_stale_registration() {
    let _serial = common::serial();
    for explicit in [false, true] {
        let (tx, rx) = channel::pair::<u64>(&Config::new(64).signal(SignalKind::EventFd)).unwrap();
        let mut rx = MioConsumer::new(rx);
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        poll.registry()
            .register(&mut rx, Token(3), Interest::READABLE)
            .unwrap();
        assert_eq!(
            rx.drain_with(poll.registry(), |_| {}).unwrap(),
            Readiness::Armed
        );
        // The peer's copy of our wake-up fd (same open file).
        let peer_copy = rx.as_fd().try_clone_to_owned().unwrap();
        if explicit {
            poll.registry().deregister(&mut rx).unwrap();
        }
        drop(rx);
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to an fd we own.
        let w = unsafe { libc::write(peer_copy.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(w, 8);
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        assert!(
            events.is_empty(),
            "stale event after drop (explicit deregister: {explicit})"
        );
        drop(tx);
    }
}

#[test]
fn write_only_interest_is_refused() {
    let (_tx, rx) = channel::pair::<u64>(&Config::new(64).signal(SignalKind::EventFd)).unwrap();
    let mut rx = MioConsumer::new(rx);
    let poll = Poll::new().unwrap();
    let e = poll
        .registry()
        .register(&mut rx, Token(1), Interest::WRITABLE)
        .unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
}

/// The consumer's side of `leftovers_after_a_hang_up_while_throttled` in
/// tests/frames.rs: a producer that floods, commits more than a budget's worth
/// while the wake-up fd is paused, and leaves. Everything comes out, one budget
/// per call, before `Closed`.
#[test]
fn leftovers_after_a_hang_up_while_throttled() {
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(512).signal(SignalKind::EventFd)).unwrap();
    let policy = shmring_mio::FloodPolicy {
        max_empty_wakeups: 4,
        window: Duration::from_secs(10),
        pause: Duration::from_secs(10),
        max_pause: Duration::from_secs(10),
    };
    let mut rx = MioConsumer::with_policy(rx, policy);
    rx.set_budget(100);
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(8);
    poll.registry()
        .register(&mut rx, Token(5), Interest::READABLE)
        .unwrap();
    assert_eq!(
        rx.drain_with(poll.registry(), |_| panic!()).unwrap(),
        Readiness::Armed
    );
    let peer_copy = rx.as_fd().try_clone_to_owned().unwrap();
    let mut throttled = false;
    for _ in 0..10 {
        let one = 1u64;
        // SAFETY: writes 8 bytes from a live local to an fd we own.
        let w = unsafe { libc::write(peer_copy.as_raw_fd(), (&one as *const u64).cast(), 8) };
        assert_eq!(w, 8);
        if let Readiness::Throttled(_) = rx.drain_with(poll.registry(), |_| panic!()).unwrap() {
            throttled = true;
            break;
        }
    }
    assert!(throttled, "{:?}", rx.wake_stats());
    for i in 0..300u64 {
        tx.try_push(i).unwrap();
    }
    drop(tx);
    poll.poll(&mut events, Some(Duration::from_secs(5)))
        .unwrap();
    assert!(events.iter().any(|e| e.token() == Token(5)));
    let mut next = 0u64;
    let mut states = Vec::new();
    while states.last() != Some(&Readiness::Closed) && states.len() < 10 {
        let s = rx
            .drain_with(poll.registry(), |items| {
                for &x in items {
                    assert_eq!(x, next);
                    next += 1;
                }
            })
            .unwrap();
        states.push(s);
    }
    use Readiness::{Closed, Ready};
    assert_eq!(states, [Ready, Ready, Ready, Closed]);
    assert_eq!(next, 300);
    poll.registry().deregister(&mut rx).unwrap();
}
