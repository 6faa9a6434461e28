//! The real-time path: push, pop, the chunk API and the wake-up of a sleeping
//! peer allocate nothing, and a busy consumer costs the producer no wake-up
//! writes at all.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use shmring::{channel, Config, Error};

/// Counts allocations made by threads that opted in.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

// SAFETY: delegates every call to the system allocator unchanged; the counter
// is a lock-free atomic and the thread-local is const-initialised (no allocation).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn counted<R>(f: impl FnOnce() -> R) -> R {
    COUNTING.with(|c| c.set(true));
    let r = f();
    COUNTING.with(|c| c.set(false));
    r
}

const T: Option<Duration> = Some(Duration::from_secs(10));

#[test]
fn push_pop_chunks_and_wakeups_allocate_nothing() {
    let (mut tx, mut rx) =
        channel::pair::<[f32; 2]>(&Config::new(64).spin(Duration::ZERO)).expect("pair");
    let before = ALLOCS.load(Ordering::Relaxed);
    // The consumer sleeps (spin 0) whenever the ring is empty, so the producer
    // takes the wake-up path over and over; both threads count allocations.
    let consumer = std::thread::spawn(move || {
        counted(|| -> shmring::Result<u64> {
            let mut got = 0u64;
            let mut buf = [[0f32; 2]; 16];
            while got < 100_000 {
                match rx.try_pop() {
                    Ok(_) => got += 1,
                    Err(Error::Empty) => {
                        let n = rx.pop_slice_blocking(&mut buf, T)?;
                        got += n as u64;
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok(got)
        })
    });
    let sent = counted(|| -> shmring::Result<u64> {
        let mut sent = 0u64;
        let frame = [0.25f32, -0.25];
        while sent < 100_000 {
            match sent % 3 {
                0 => {
                    tx.push_blocking(frame, T)?;
                    sent += 1;
                }
                1 => {
                    let n = tx.push_slice(&[frame; 7][..(100_000 - sent).min(7) as usize])?;
                    sent += n as u64;
                }
                _ => {
                    let mut c = tx.write_chunk(5)?;
                    c.fill_from_iter(std::iter::repeat(frame));
                    let n = c.len().min((100_000 - sent) as usize);
                    c.commit(n);
                    sent += n as u64;
                }
            }
            if sent % 1000 == 0 {
                std::thread::yield_now();
            }
        }
        Ok(sent)
    })
    .expect("producer");
    let got = consumer.join().expect("join").expect("consumer");
    assert_eq!((sent, got), (100_000, 100_000));
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    assert_eq!(allocs, 0, "{allocs} allocations on the real-time path");
    assert!(
        tx.stats().wakeups_sent > 0,
        "the wake-up path was not exercised"
    );
}

#[test]
fn busy_consumer_gets_no_wakeup_writes() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(1024)).expect("pair");
    const N: u64 = 2_000_000;
    let consumer = std::thread::spawn(move || {
        // A busy consumer: polls without ever announcing a sleep.
        let mut expect = 0u64;
        let mut buf = [0u64; 256];
        while expect < N {
            let n = rx.pop_slice(&mut buf).expect("pop");
            for &v in &buf[..n] {
                assert_eq!(v, expect);
                expect += 1;
            }
        }
        rx.stats().wakeups_sent
    });
    let mut i = 0u64;
    while i < N {
        match tx.try_push(i) {
            Ok(()) => i += 1,
            Err(Error::Full) => std::hint::spin_loop(),
            Err(e) => panic!("{e}"),
        }
    }
    let consumer_wakeups = consumer.join().expect("join");
    // The producer never slept either (it spins on Full), so neither side wrote
    // its peer's fd a single time for two million items.
    assert_eq!(tx.stats().wakeups_sent, 0);
    assert_eq!(consumer_wakeups, 0);
}

#[test]
fn blocking_consumer_costs_far_less_than_one_wakeup_per_item() {
    let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(1024)).expect("pair");
    const N: u64 = 1_000_000;
    let consumer = std::thread::spawn(move || {
        for i in 0..N {
            assert_eq!(rx.pop_blocking(T).expect("pop"), i);
        }
    });
    for i in 0..N {
        tx.push_blocking(i, T).expect("push");
    }
    consumer.join().expect("join");
    let wakeups = tx.stats().wakeups_sent;
    assert!(wakeups < N / 100, "{wakeups} wake-ups for {N} items");
}
