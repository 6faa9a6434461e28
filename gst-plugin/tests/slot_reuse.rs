//! Which arena slots upstream writes: with a consumer that returns each
//! frame, the sink's pool hands out the slot just returned (hot in the CPU
//! caches) rather than cycling through the arena. Deterministic: the
//! returns are made to precede the acquires (a pad probe, or the pool's own
//! `return-wait`), so the slots used are exact, not a matter of scheduling.

mod common;

use common::*;
use gst::prelude::*;
use shmring::frames::{self, FrameConfig, Received};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One test at a time (their pipelines would share the CPU, not the slots).
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Small frames (no `return-wait`): the pool takes returned slots back on
/// every acquire and hands out the one released last. Each buffer is held
/// at the sink's pad until the consumer has returned the frame before it,
/// so that when upstream acquires buffer k + 1, frame k - 1 is back (and
/// frame k may be): the pool hands out one of those two slots. So the whole
/// run of 200 frames uses at most 2 slots of the 14 on offer (1 if every
/// return beat the next acquire; without the reclaim it cycles through all
/// of them).
#[test]
fn prompt_consumer_keeps_upstream_on_few_slots() {
    init();
    let _serial = serial();
    let path = sock("hot");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=200 ! video/x-raw,format=RGBA,width=64,height=48,framerate=500/1 ! shmringsink name=sink slots=16 sync=false socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let returned = Arc::new((Mutex::new(0u64), Condvar::new()));
    let late = Arc::new(AtomicBool::new(false));
    let sink = pipeline.by_name("sink").expect("sink");
    let (r, l) = (returned.clone(), late.clone());
    let next = AtomicU64::new(0);
    sink.static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            // Buffer k waits for the return of frame k - 1.
            let k = next.fetch_add(1, Ordering::SeqCst);
            let (m, cv) = &*r;
            let mut n = m.lock().unwrap_or_else(|e| e.into_inner());
            let deadline = Instant::now() + Duration::from_secs(20);
            while *n < k {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    l.store(true, Ordering::SeqCst);
                    break;
                }
                n = cv
                    .wait_timeout(n, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            gst::PadProbeReturn::Ok
        });
    let consumer = slot_recorder(path, 0, Some(returned));
    run_to_eos(&pipeline);
    let slots = consumer.join().expect("consumer");
    assert!(!late.load(Ordering::SeqCst), "a return never came");
    assert_eq!(slots.len(), 200);
    let mut distinct = slots.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.len() <= 2, "slots used: {slots:?}");
}

/// A consumer thread that lets every frame go at once (returning its slot)
/// and records the slot of each, until EOS.
/// The first `hold` frames are kept until the next one arrives, so that the
/// pool grows and has free buffers to pick from later. With `returned`, the
/// count of frames returned so far is published there.
fn slot_recorder(
    path: std::path::PathBuf,
    hold: usize,
    returned: Option<Arc<(Mutex<u64>, Condvar)>>,
) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
        let mut slots = Vec::new();
        let mut held = Vec::new();
        loop {
            match rx.recv(T) {
                Ok(Received::Eos) => break,
                Ok(Received::Frame(f)) if slots.len() < hold => {
                    slots.push(f.slot());
                    held.push(f);
                }
                // Dropping the frame (and the held ones) returns the slots.
                Ok(Received::Frame(f)) => {
                    slots.push(f.slot());
                    drop(f);
                    held.clear();
                    if let Some(r) = &returned {
                        let (m, cv) = &**r;
                        *m.lock().unwrap_or_else(|e| e.into_inner()) = slots.len() as u64;
                        cv.notify_all();
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("consumer: {e}"),
            }
        }
        slots
    })
}

/// Big frames, an unpaced upstream and a consumer that lets each frame go at
/// once: upstream rewrites the slot it just got back (one slot, hot in the
/// caches) rather than cycling through colder ones. The sink waits on every
/// acquire for that return (`return-wait`, 1 ms by default; the most, 1 s,
/// here: a deadline no consumer thread misses, even on a loaded machine, so
/// the return always comes first), and it does not keep the last buffer
/// (`enable-last-sample` is off by default: it would hold a second slot).
/// So after the warm-up every frame goes to the slot of the frame before:
/// no change of slot at all. Without either, upstream cycles through two or
/// more slots.
#[test]
fn big_frames_reuse_the_slot_just_returned() {
    init();
    let _serial = serial();
    let slots = big_frame_run();
    let changes = slots.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(changes, 0, "changes of slot in: {slots:?}");
}

/// One run of 300 1 MiB frames: the slot of each frame after the 50th.
fn big_frame_run() -> Vec<u32> {
    let path = sock("hot-big");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=300 pattern=ball ! video/x-raw,format=GRAY8,width=1024,height=1024 ! shmringsink name=sink sync=false return-wait=1000000 socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("sink");
    assert!(!sink.property::<bool>("enable-last-sample"));
    // The first four frames held: the pool grows to five buffers or more,
    // and then always has free ones besides the slot in flight.
    let consumer = slot_recorder(path, 4, None);
    run_to_eos(&pipeline);
    let slots = consumer.join().expect("consumer");
    assert_eq!(slots.len(), 300);
    slots[50..].to_vec()
}
