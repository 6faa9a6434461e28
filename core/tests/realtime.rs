//! The real-time path: push, pop, the chunk API and the wake-up of a sleeping
//! peer allocate nothing and make no system call but the wake-up `write`, and
//! a busy consumer costs the producer no wake-up writes at all.

#[path = "common/syscalls.rs"]
mod syscalls;

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

/// The non-blocking calls (`try_push`, `push_slice`, `write_chunk`+`commit`,
/// `try_pop`, `pop_slice`, `read_chunk`+`release`) make no system call but
/// the wake-up `write` to the peer's eventfd, one per wake-up counted in the
/// stats: every call of both threads is seen by a seccomp supervisor
/// (`common/syscalls.rs`), not sampled. The blocking waits between them (a
/// sleep is a system call by nature) are outside the measured regions.
#[test]
fn the_real_time_path_makes_no_syscall_but_the_wake_up_write() {
    const N: u64 = 50_000;
    let (mut tx, mut rx) =
        channel::pair::<u64>(&Config::new(64).spin(Duration::ZERO)).expect("pair");
    let consumer = std::thread::spawn(move || {
        syscalls::count(|gate| {
            let mut expect = 0u64;
            let mut buf = [0u64; 16];
            let mut step = 0u64;
            while expect < N {
                step += 1;
                let n = gate.measure(|| -> shmring::Result<usize> {
                    let mut n = 0;
                    match step % 3 {
                        0 => match rx.try_pop() {
                            Ok(v) => {
                                buf[0] = v;
                                n = 1;
                            }
                            Err(Error::Empty) => {}
                            Err(e) => return Err(e),
                        },
                        1 => n = rx.pop_slice(&mut buf)?,
                        _ => {
                            let c = rx.read_chunk(buf.len())?;
                            n = c.len();
                            c.read(0, &mut buf[..n]);
                            c.release_all();
                        }
                    }
                    Ok(n)
                });
                let n = n.expect("pop");
                if n == 0 {
                    rx.wait_readable(T).expect("wait for items");
                }
                for &v in &buf[..n] {
                    assert_eq!(v, expect, "items in order");
                    expect += 1;
                }
            }
            rx.stats().wakeups_sent
        })
    });
    let (producer_wakeups, producer_calls) = syscalls::count(|gate| {
        let mut sent = 0u64;
        while sent < N {
            let n = gate.measure(|| -> shmring::Result<u64> {
                let left = (N - sent) as usize;
                Ok(match sent % 3 {
                    0 => match tx.try_push(sent) {
                        Ok(()) => 1,
                        Err(Error::Full) => 0,
                        Err(e) => return Err(e),
                    },
                    1 => {
                        let mut items = [0u64; 7];
                        for (k, v) in items.iter_mut().enumerate() {
                            *v = sent + k as u64;
                        }
                        tx.push_slice(&items[..left.min(7)])? as u64
                    }
                    _ => {
                        let mut c = tx.write_chunk(left.min(5))?;
                        let n = c.len();
                        c.fill_from_iter((0..n).map(|k| sent + k as u64));
                        c.commit_all();
                        n as u64
                    }
                })
            });
            let n = n.expect("push");
            if n == 0 {
                tx.wait_writable(T).expect("wait for room");
            }
            sent += n;
        }
        tx.stats().wakeups_sent
    });
    let (consumer_wakeups, consumer_calls) = consumer.join().expect("consumer");
    for (side, calls, wakeups) in [
        ("producer", &producer_calls, producer_wakeups),
        ("consumer", &consumer_calls, consumer_wakeups),
    ] {
        assert!(
            calls.other().is_empty(),
            "{side}: system calls other than write: {:?}",
            calls.other()
        );
        assert_eq!(calls.other_writes, 0, "{side}: writes to other fds");
        assert_eq!(
            calls.wake_writes, wakeups,
            "{side}: one write per wake-up sent"
        );
    }
    // The consumer sleeps (spin 0) whenever the ring is empty: the producer's
    // wake-up path was taken.
    assert!(producer_wakeups > 0, "the wake-up path was not exercised");
}

/// The counter behind the test above sees every call: 100 `getppid`, one
/// `write` to a file, one to an eventfd, and nothing outside the measured
/// region.
#[test]
fn the_syscall_counter_sees_every_call() {
    let ((), calls) = syscalls::count(|gate| {
        let file = std::fs::File::create(
            std::env::temp_dir().join(format!("shmring-syscalls-{}", std::process::id())),
        )
        .expect("file");
        // SAFETY: eventfd takes no pointers; the fd is closed below.
        let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        assert!(efd >= 0);
        // SAFETY: getppid takes no arguments.
        let _ = unsafe { libc::getppid() };
        gate.measure(|| {
            for _ in 0..100 {
                // SAFETY: as above.
                let _ = unsafe { libc::getppid() };
            }
            use std::os::fd::AsRawFd;
            let one = 1u64;
            // SAFETY: writes 8 bytes from a live local to fds we own.
            unsafe {
                libc::write(file.as_raw_fd(), (&one as *const u64).cast(), 8);
                libc::write(efd, (&one as *const u64).cast(), 8);
            }
        });
        // SAFETY: the eventfd is ours.
        unsafe { libc::close(efd) };
    });
    assert_eq!(calls.count(libc::SYS_getppid), 100, "{calls:?}");
    assert_eq!(calls.count(libc::SYS_write), 2, "{calls:?}");
    assert_eq!((calls.wake_writes, calls.other_writes), (1, 1));
    assert_eq!(calls.total, 102, "{calls:?}");
}
