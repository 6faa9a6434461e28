//! `MioProducer` in a loop feeding a consumer process: full ring, wake-ups on
//! free space, and the consumer's exit or death seen as `Closed`.

mod common;

use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};
use shmring::SignalKind;
use shmring_mio::{MioProducer, Readiness};

child_test!();

const LISTENER: Token = Token(0);
const PEER: Token = Token(1);

/// Accepts one consumer process and returns our producing end, registered.
fn accept_one(
    poll: &mut Poll,
    listener: &mut shmring_mio::MioListener,
    config: &shmring::Config,
) -> MioProducer<u64> {
    let mut events = Events::with_capacity(8);
    let t0 = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(10), "no consumer came");
        poll.poll(&mut events, Some(Duration::from_millis(50)))
            .unwrap();
        if let Some(r) = listener
            .accept_producers::<u64>(poll.registry(), config)
            .unwrap()
            .into_iter()
            .next()
        {
            let mut tx = r.unwrap().endpoint;
            poll.registry()
                .register(&mut tx, PEER, Interest::READABLE)
                .unwrap();
            return tx;
        }
    }
}

/// Pushes 0..n (or forever if `n` is None) until the consumer is gone;
/// `on_armed` runs the first time the ring is full and the producer arms its
/// wake-up. Returns (items pushed, times armed).
fn push_until_closed(
    poll: &mut Poll,
    tx: &mut MioProducer<u64>,
    n: Option<u64>,
    mut on_armed: Option<&mut dyn FnMut()>,
) -> (u64, u64) {
    let mut events = Events::with_capacity(8);
    let mut next = 0u64;
    let mut armed = 0u64;
    let mut state = tx.poll_writable(poll.registry()).unwrap();
    let t0 = Instant::now();
    let mut last_progress = Instant::now();
    loop {
        assert!(t0.elapsed() < Duration::from_secs(60), "loop ran a minute");
        assert!(
            last_progress.elapsed() < Duration::from_secs(10),
            "producer loop stalled at {next} ({state:?})"
        );
        match state {
            Readiness::Closed => return (next, armed),
            Readiness::Ready if n.is_none_or(|n| next < n) => {
                let want = n.map_or(4096, |n| (n - next).min(4096)) as usize;
                let mut chunk = tx.write_chunk(want).unwrap();
                next += chunk.fill_from_iter(next..) as u64;
                let k = chunk.len();
                chunk.commit_all();
                if k > 0 {
                    last_progress = Instant::now();
                }
                if k < want {
                    state = tx.poll_writable(poll.registry()).unwrap();
                    armed += (state == Readiness::Armed) as u64;
                    if state == Readiness::Armed {
                        if let Some(f) = on_armed.take() {
                            f();
                        }
                    }
                }
                continue;
            }
            _ => {}
        }
        let timeout = match state {
            Readiness::Throttled(t) => t.saturating_duration_since(Instant::now()),
            _ => Duration::from_millis(100),
        };
        poll.poll(&mut events, Some(timeout)).unwrap();
        if !events.is_empty() || matches!(state, Readiness::Throttled(_)) {
            state = tx.poll_writable(poll.registry()).unwrap();
        }
        if n.is_some_and(|n| next >= n) {
            // Everything is pushed: only waiting for the hang-up now.
            last_progress = Instant::now();
        }
    }
}

fn run(signal: SignalKind) {
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("producer");
    let config = common::config(signal, 256);
    let mut listener = common::bind(&path);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let fds_before = common::fd_count();
    let n = 100_000u64;
    let child = common::spawn_at(
        "slow_consumer",
        &path,
        &[common::signal_name(signal).into(), n.to_string()],
    );
    let mut tx = accept_one(&mut poll, &mut listener, &config);
    let (pushed, armed) = push_until_closed(&mut poll, &mut tx, Some(n), None);
    assert_eq!(pushed, n);
    assert!(armed > 0, "the ring never filled up");
    eprintln!("{signal:?}: armed {armed} times, {:?}", tx.wake_stats());
    assert_eq!(tx.wake_stats().throttles, 0);
    poll.registry().deregister(&mut tx).unwrap();
    drop(tx);
    common::wait_ok(child, "slow consumer");
    assert_eq!(common::fd_count(), fds_before);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn feeds_slow_consumer_eventfd() {
    run(SignalKind::EventFd);
}

#[test]
fn feeds_slow_consumer_pipe() {
    run(SignalKind::Pipe);
}

/// A consumer process killed while the producer waits for room (its ring
/// full, its wake-up armed) is seen as `Closed`; the child is checked to have
/// died of that SIGKILL.
#[test]
fn killed_consumer_is_closed() {
    use std::os::unix::process::ExitStatusExt as _;
    let _serial = common::serial();
    let (dir, path) = common::temp_socket("killed");
    let config = common::config(SignalKind::EventFd, 256);
    let mut listener = common::bind(&path);
    let mut poll = Poll::new().unwrap();
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut child = common::spawn_at(
        "slow_consumer",
        &path,
        &["eventfd".into(), u64::MAX.to_string()],
    );
    let mut tx = accept_one(&mut poll, &mut listener, &config);
    let mut killed = false;
    let (pushed, armed) = push_until_closed(
        &mut poll,
        &mut tx,
        None,
        Some(&mut || {
            child.kill().unwrap();
            killed = true;
        }),
    );
    assert!(killed, "the ring never filled up");
    assert!(pushed > 0 && armed > 0);
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    poll.registry().deregister(&mut tx).unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
