//! Blocking waits spin only while spinning pays off: a consumer of a dense
//! stream spins through the short gaps (the producer writes no wake-ups), a
//! consumer of a sparse stream sleeps at once (no CPU burnt on gaps longer
//! than the spin window).

mod common;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use shmring::{channel, Config};

/// The tests measure CPU time and wake-ups: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// Busy-waits `d` (a producer that computes between items).
fn busy(d: Duration) {
    let t = Instant::now();
    while t.elapsed() < d {
        std::hint::spin_loop();
    }
}

#[test]
fn sparse_stream_stops_the_spinning() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Items 4 ms apart, a 2 ms spin: spinning every wait would burn half
    // the consumer's time for nothing.
    let (mut tx, mut rx) =
        channel::pair::<u64>(&Config::new(64).spin(Duration::from_millis(2))).expect("pair");
    let n = 60u64;
    let producer = std::thread::spawn(move || {
        for i in 0..n {
            std::thread::sleep(Duration::from_millis(4));
            tx.push_blocking(i, Some(Duration::from_secs(5)))
                .expect("push");
        }
    });
    let (wall0, cpu0) = (Instant::now(), common::thread_cpu());
    for i in 0..n {
        assert_eq!(
            rx.pop_blocking(Some(Duration::from_secs(5))).expect("pop"),
            i
        );
    }
    let (wall, cpu) = (wall0.elapsed(), common::thread_cpu() - cpu0);
    producer.join().expect("producer");
    // A few spins learn the gaps are long, one wait in 64 probes again:
    // well under 2 ms × 60 = 120 ms.
    assert!(
        cpu < Duration::from_millis(40),
        "consumer burnt {cpu:?} of CPU in {wall:?} waiting for a sparse stream"
    );
}

#[test]
fn dense_stream_keeps_spinning() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Items 20 µs apart, a 1 ms spin: the consumer catches each item while
    // spinning, so the producer hardly ever has a sleeper to wake.
    let (mut tx, mut rx) =
        channel::pair::<u64>(&Config::new(64).spin(Duration::from_millis(1))).expect("pair");
    let n = 5000u64;
    let consumer = std::thread::spawn(move || {
        for i in 0..n {
            assert_eq!(
                rx.pop_blocking(Some(Duration::from_secs(5))).expect("pop"),
                i
            );
        }
    });
    for i in 0..n {
        busy(Duration::from_micros(20));
        tx.push_blocking(i, Some(Duration::from_secs(5)))
            .expect("push");
    }
    consumer.join().expect("consumer");
    let woken = tx.stats().wakeups_sent;
    // A consumer that slept at every empty ring would need ~5000 wake-ups
    // (spinning, 0 or 1 here); allow for preemption on a busy machine.
    assert!(woken < n / 4, "{woken} wake-ups for {n} items");
}
