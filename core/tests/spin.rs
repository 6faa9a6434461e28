//! Blocking waits spin only while spinning pays off: a consumer of a dense
//! stream catches each item while spinning (the producer writes no wake-ups),
//! a consumer whose recent spins ran out for nothing sleeps at once.
//!
//! Deterministic: the spin window is an hour, so whether a wait spun is seen
//! in the consumer thread's state, not in timings. A spinning consumer is
//! running and never asleep; one that does not spin is asleep in the kernel
//! (`/proc/self/task/TID/stat`) right after it found the ring empty.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::{channel, Config, Error};

/// Longer than any test: a wait that spins never reaches its sleep.
const HOUR: Duration = Duration::from_secs(3600);
/// Patience for a state the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// Waits until `cond` holds, failing the test with `what` after `PATIENCE`.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::yield_now();
    }
}

/// The scheduler state of thread `tid` of this process (`R`, `S`, ...).
fn state(tid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).expect("stat");
    // "tid (comm) S ...": the comm may hold spaces, not ')' after the last.
    let after = &stat[stat.rfind(')').expect("comm") + 2..];
    after.chars().next().expect("state")
}

/// A consumer on its own thread: publishes its tid and, once its `misses`
/// empty waits are over, how many items it popped (in order), popping with
/// `pop_blocking(None)`.
fn consumer(
    mut rx: channel::Consumer<u64>,
    n: u64,
    misses: u32,
) -> (Arc<AtomicI32>, Arc<AtomicU64>, std::thread::JoinHandle<()>) {
    let tid = Arc::new(AtomicI32::new(0));
    let popped = Arc::new(AtomicU64::new(u64::MAX));
    let (t, p) = (tid.clone(), popped.clone());
    let h = std::thread::spawn(move || {
        // SAFETY: gettid takes no arguments.
        t.store(unsafe { libc::gettid() }, Ordering::SeqCst);
        // Waits that spin their whole window (2 ms: the timeout bounds the
        // window) and find nothing: gaps longer than the window.
        for _ in 0..misses {
            let r = rx.pop_blocking(Some(Duration::from_millis(2)));
            assert!(matches!(r, Err(Error::Timeout)), "{r:?}");
        }
        p.store(0, Ordering::SeqCst);
        for i in 0..n {
            assert_eq!(rx.pop_blocking(None).expect("pop"), i);
            p.store(i + 1, Ordering::SeqCst);
        }
    });
    wait_until("the consumer's tid", || tid.load(Ordering::SeqCst) != 0);
    (tid, popped, h)
}

/// Dense stream: each item is pushed while the consumer waits for it, within
/// its (one-hour) spin window. Every wait spins and catches its item, so the
/// consumer never announces a sleep and the producer never writes its
/// wake-up fd: exactly 0 wake-ups. (A consumer that did not spin would sleep
/// at every empty ring: one wake-up per item.)
#[test]
fn dense_stream_keeps_spinning() {
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(64).spin(HOUR)).expect("pair");
    let n = 2000u64;
    let (_tid, popped, h) = consumer(rx, n, 0);
    for i in 0..n {
        wait_until("the consumer to take the last item", || {
            popped.load(Ordering::SeqCst) == i
        });
        tx.try_push(i).expect("push");
    }
    h.join().expect("consumer");
    assert_eq!(tx.stats().wakeups_sent, 0, "the consumer slept");
}

/// Sparse stream: after eight waits whose spin ran out for nothing, the
/// consumer stops spinning: each following wait (one-hour window) goes to
/// sleep at once, which the producer sees in the thread's state before it
/// pushes the next item. A consumer still spinning would never be asleep,
/// and the wait for its sleep would fail the test. One wake-up per item.
/// (One wait in 64 still spins, to notice a stream that speeds up: the 48
/// waits here stay below it.)
#[test]
fn sparse_stream_stops_the_spinning() {
    let (mut tx, rx) = channel::pair::<u64>(&Config::new(64).spin(HOUR)).expect("pair");
    let n = 40u64;
    let (tid, popped, h) = consumer(rx, n, 8);
    let tid = tid.load(Ordering::SeqCst);
    for i in 0..n {
        wait_until("the consumer to take the last item", || {
            popped.load(Ordering::SeqCst) == i && !h.is_finished()
        });
        wait_until(&format!("the consumer to sleep before item {i}"), || {
            state(tid) == 'S'
        });
        tx.try_push(i).expect("push");
    }
    h.join().expect("consumer");
    assert_eq!(tx.stats().wakeups_sent, n);
}
