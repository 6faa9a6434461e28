//! The audio callback body (`Capture::on_input`, what `cpal_capture` runs in
//! its cpal callback) allocates nothing: counted by a global allocator, per
//! thread, over thousands of periods: with a reader taking frames, with no
//! reader, with a full reader, and across a reader hand-over and hang-up.
//! Both callback bodies make no system call but the wake-up write to an
//! eventfd: every call counted by a seccomp supervisor
//! (`core/tests/common/syscalls.rs`).

#[path = "../../core/tests/common/syscalls.rs"]
mod syscalls;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use shmring::frames::{self, FrameConfig, Received};
use shmring_examples::capture::{start_stream, Capture, Shared};
use shmring_examples::handoff::Handoff;

struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts
// (thread-local cells, no allocation of their own).
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        if COUNTING.try_with(Cell::get).unwrap_or(false) {
            let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
        }
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and frees) `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

#[test]
fn the_callback_body_does_not_allocate() {
    let period = vec![0x5au8; 480 * 8];
    let handoff = Arc::new(Handoff::new());
    let shared = Arc::new(Shared::default());
    let mut cap = Capture::new(handoff.clone(), shared.clone(), 2, 4, 48_000, u64::MAX);

    // No reader yet: every period dropped, nothing allocated.
    assert_eq!(
        allocations(|| (0..1000).for_each(|i| cap.on_input(&period, i * 10_000_000))),
        0
    );

    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(8, period.len())).expect("pair");
    let caps = "audio/x-raw,format=F32LE,rate=48000,channels=2,layout=interleaved";
    // The sticky events are sent before the hand-over (from the control
    // thread in cpal_capture); the reader takes them now.
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        loop {
            match rx.recv(Some(std::time::Duration::from_secs(5))) {
                Ok(Received::Frame(f)) => {
                    assert_eq!(f.bytes().len(), 480 * 8);
                    n += 1;
                }
                Ok(Received::Eos) | Err(_) => return n,
                Ok(_) => {}
            }
        }
    });
    start_stream(&mut tx, caps, std::time::Duration::from_secs(5)).expect("start");
    assert!(handoff.offer(Box::new(tx)).is_ok(), "offer");

    // Streaming to a live reader (and, when it lags, into a full ring).
    let n = allocations(|| (0..20_000).for_each(|i| cap.on_input(&period, i * 10_000_000)));
    assert_eq!(n, 0, "allocations in 20000 callbacks");

    // The reader's hang-up: the callback retires its sender (no drop there).
    shared.hangup.store(true, Ordering::Release);
    let n = allocations(|| (0..100).for_each(|i| cap.on_input(&period, i)));
    assert_eq!(n, 0, "allocations while retiring a reader");
    let retired = handoff.collect().expect("retired sender");
    drop(retired); // here, on the control thread: frees and unmaps
    let frames = reader.join().expect("reader");
    assert!(frames > 0, "the reader got frames");
    let sent = shared.sent.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    assert_eq!(sent, frames * 480, "every frame sent arrived");
    assert_eq!(sent + dropped, shared.captured.load(Ordering::Relaxed));
}

#[test]
fn the_playback_callback_does_not_allocate() {
    use shmring_examples::playback::{Playback, PlaybackStats};
    use std::sync::atomic::AtomicBool;

    let (mut tx, rx) = shmring::channel::pair::<f32>(&shmring::Config::new(4096)).expect("ring");
    let stats = Arc::new(PlaybackStats::default());
    let ended = Arc::new(AtomicBool::new(false));
    let mut play = Playback::new(rx, stats.clone(), ended.clone());
    let mut out = vec![1.0f32; 960];
    let samples: Vec<f32> = (0..960).map(|i| i as f32).collect();
    let n = allocations(|| {
        for _ in 0..1000 {
            // The reader thread's push and the callback's pop.
            tx.push_all(&samples, None).expect("push");
            play.on_output(&mut out);
        }
        // Empty ring: an underrun, filled with silence.
        play.on_output(&mut out);
    });
    assert_eq!(n, 0, "allocations in 1001 callbacks");
    assert!(out.iter().all(|&s| s == 0.0), "silence on underrun");
    assert_eq!(stats.played.load(Ordering::Relaxed), 960 * 1000);
    assert_eq!(stats.underrun.load(Ordering::Relaxed), 960);
}

/// The capture callback body over 20 000 periods to a live reader (which
/// sleeps when it has caught up, so the callback takes the wake-up path),
/// across a reader's hang-up, and the playback callback over 1 001 periods
/// (one an underrun): no system call but `write` to an eventfd, the wake-up.
/// So they never sleep, never do I/O, and never wait for a lock: a lock that
/// is held by another thread makes its taker wait in `futex`, which would be
/// counted. (A lock taken without contention makes no system call: the
/// source check below covers that.)
#[test]
fn the_callbacks_make_no_syscall_but_the_wake_up_write() {
    use shmring_examples::playback::{Playback, PlaybackStats};
    use std::sync::atomic::AtomicBool;

    let period = vec![0x5au8; 480 * 8];
    let handoff = Arc::new(Handoff::new());
    let shared = Arc::new(Shared::default());
    let mut cap = Capture::new(handoff.clone(), shared.clone(), 2, 4, 48_000, u64::MAX);
    let (mut tx, mut rx) = frames::pair(&FrameConfig::new(8, period.len())).expect("pair");
    let reader = std::thread::spawn(move || {
        let mut n = 0u64;
        loop {
            match rx.recv(Some(std::time::Duration::from_secs(5))) {
                Ok(Received::Frame(_)) => n += 1,
                Ok(Received::Eos) | Err(_) => return n,
                Ok(_) => {}
            }
        }
    });
    let caps = "audio/x-raw,format=F32LE,rate=48000,channels=2,layout=interleaved";
    start_stream(&mut tx, caps, std::time::Duration::from_secs(5)).expect("start");
    assert!(handoff.offer(Box::new(tx)).is_ok(), "offer");
    let ((), calls) = syscalls::count(move |gate| {
        gate.measure(|| (0..20_000).for_each(|i| cap.on_input(&period, i * 10_000_000)));
        shared.hangup.store(true, Ordering::Release);
        gate.measure(|| (0..100).for_each(|i| cap.on_input(&period, i)));
    });
    drop(handoff.collect().expect("retired sender"));
    let frames = reader.join().expect("reader");
    assert!(frames > 0, "the reader got frames");
    assert!(calls.other().is_empty(), "capture: {calls:?}");
    assert_eq!(calls.other_writes, 0, "capture: {calls:?}");
    assert!(calls.wake_writes > 0, "the wake-up path was not taken");

    let (mut tx, rx) = shmring::channel::pair::<f32>(&shmring::Config::new(4096)).expect("ring");
    let stats = Arc::new(PlaybackStats::default());
    let ended = Arc::new(AtomicBool::new(false));
    let mut play = Playback::new(rx, stats.clone(), ended);
    let samples: Vec<f32> = (0..960).map(|i| i as f32).collect();
    let ((), calls) = syscalls::count(move |gate| {
        let mut out = vec![1.0f32; 960];
        for _ in 0..1000 {
            // The reader thread's push (not measured), the callback's pop.
            tx.push_all(&samples, None).expect("push");
            gate.measure(|| play.on_output(&mut out));
        }
        gate.measure(|| play.on_output(&mut out));
    });
    assert_eq!(calls.total, 0, "playback: {calls:?}");
    assert_eq!(stats.played.load(Ordering::Relaxed), 960 * 1000);
    assert_eq!(stats.underrun.load(Ordering::Relaxed), 960);
}

/// No lock type on the real-time path, uncontended or not: the callback
/// bodies and the mailbox that feeds them are built from atomics and the
/// ring API only. A source check, and only of these three files (what they
/// call in `shmring` is covered by the system-call counts of
/// `core/tests/realtime.rs`): it catches a lock taken without contention,
/// which makes no system call and so escapes the test above.
#[test]
fn the_real_time_modules_take_no_lock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for file in ["capture.rs", "playback.rs", "handoff.rs"] {
        let src = std::fs::read_to_string(dir.join(file)).expect("source");
        for word in [
            "Mutex", "RwLock", "Condvar", ".lock(", "mpsc", "Barrier", "park(",
        ] {
            assert!(!src.contains(word), "{file} uses {word}");
        }
    }
}
