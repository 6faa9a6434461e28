//! Which arena slots upstream writes: with a consumer that returns each
//! frame at once, the sink's pool hands out the slot just returned (hot in
//! the CPU caches) rather than cycling through the arena. Timing-sensitive,
//! so alone in its test binary: the other tests of a binary run in parallel
//! and would starve the consumer thread.

mod common;

use common::*;
use gst::prelude::*;
use shmring::frames::{self, FrameConfig, Received};

/// One test at a time: each needs a consumer thread that is not starved.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A consumer that returns each frame at once: upstream keeps writing the
/// same (cache-hot) slots instead of cycling through the whole arena, because
/// the pool takes returned slots back on every acquire. Frames
/// come every 2 ms (`sync=true` at 500 fps): time enough for the consumer to
/// return each one even on a loaded machine; an unpaced upstream may rightly
/// run ahead of a consumer that is not scheduled.
#[test]
fn prompt_consumer_keeps_upstream_on_few_slots() {
    init();
    let _serial = serial();
    let path = sock("hot");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=200 ! video/x-raw,format=RGBA,width=64,height=48,framerate=500/1 ! shmringsink name=sink slots=16 sync=true socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let consumer = slot_recorder(path, 0);
    run_to_eos(&pipeline);
    let slots = consumer.join().expect("consumer");
    assert_eq!(slots.len(), 200);
    let mut distinct = slots.clone();
    distinct.sort_unstable();
    distinct.dedup();
    // 14 slots are on offer; a prompt consumer needs 2 (one being written,
    // one being read). The preroll or a slow wake-up of the consumer (a
    // loaded machine) may add a few; without the reclaim all 14 and more are
    // used.
    assert!(distinct.len() <= 6, "slots used: {distinct:?}");
}

/// A consumer thread that lets every frame go at once (returning its slot)
/// and records the slot of each, until EOS.
/// The first `hold` frames are kept until the next one arrives, so that the
/// pool grows and has free buffers to pick from later.
fn slot_recorder(path: std::path::PathBuf, hold: usize) -> std::thread::JoinHandle<Vec<u32>> {
    std::thread::spawn(move || {
        let mut rx = frames::connect(&path, &FrameConfig::new(1, 64)).expect("connect");
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
                    held.clear();
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
/// acquire for that return (`return-wait`, 1 ms by default; 100 ms here, so
/// that a consumer thread that is not scheduled at once on a loaded machine
/// still makes it), and it does not keep the last buffer
/// (`enable-last-sample` is off by default: it would hold a second slot).
/// Without either, upstream cycles through two or more slots: every frame
/// (or every other one) goes to another slot than the one before. Measured
/// as changes of slot from one frame to the next, so that one late return
/// on a loaded machine (upstream then moves to another slot and stays on
/// it) does not fail the test.
#[test]
fn big_frames_reuse_the_slot_just_returned() {
    init();
    let _serial = serial();
    let slots = big_frame_run();
    let changes = slots.windows(2).filter(|w| w[0] != w[1]).count();
    assert!(changes <= 10, "{changes} changes of slot in: {slots:?}");
}

/// One run of 300 1 MiB frames: the slot of each frame after the 50th.
fn big_frame_run() -> Vec<u32> {
    let path = sock("hot-big");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=300 pattern=ball ! video/x-raw,format=GRAY8,width=1024,height=1024 ! shmringsink name=sink sync=false return-wait=100000 socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline.by_name("sink").expect("sink");
    assert!(!sink.property::<bool>("enable-last-sample"));
    // The first four frames held: the pool grows to five buffers or more,
    // and then always has free ones besides the slot in flight.
    let consumer = slot_recorder(path, 4);
    run_to_eos(&pipeline);
    let slots = consumer.join().expect("consumer");
    assert_eq!(slots.len(), 300);
    slots[50..].to_vec()
}
