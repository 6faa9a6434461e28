//! `shmringsink` and caps that grow while consumers stay connected: each
//! consumer moves to the new, bigger arena once it gave back every slot of
//! the old one, and gets blobs until then; one that never does keeps getting
//! blobs (never a slot of an arena it does not read); a consumer that joins
//! after the caps grew is served the new arena. (The split pipeline's
//! output and its zero-copy count: `transparency.rs`
//! `caps_that_grow_cross_zero_copy_after_an_arena_switch`.)

mod common;

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::time::Duration;

use common::{init, pipeline, sock, stat, wait_eos, T};
use gst::prelude::*;
use shmring::frames::{self, FrameConfig, Received};

const SMALL: usize = 320 * 240 * 3 / 2;
const BIG: usize = 640 * 480 * 3 / 2;

/// What one consumer received: each frame's bytes by (pts, size) (concat
/// restarts timestamps at each part), how many came as
/// blobs (sealed copies) and in slots, per size, and its arena switches.
#[derive(Default, Debug)]
struct Got {
    frames: BTreeMap<(u64, usize), Vec<u8>>,
    big_blobs: usize,
    big_slots: usize,
    switches: u64,
    slot_size: usize,
    /// How its stream ended if not by EOS.
    error: Option<String>,
}

/// Receives until EOS; with `hold`, keeps its first frame (a slot of the
/// first arena) until then. `big` hears when the first big frame came.
fn consume(
    path: std::path::PathBuf,
    hold: bool,
    big: Option<mpsc::Sender<()>>,
) -> std::thread::JoinHandle<Got> {
    std::thread::spawn(move || {
        let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
        let mut got = Got::default();
        let mut held = None;
        loop {
            let m = match rx.recv(T) {
                Ok(m) => m,
                Err(e) => {
                    got.error = Some(e.to_string());
                    break;
                }
            };
            match m {
                Received::Frame(f) => {
                    if f.bytes().len() == BIG {
                        if f.is_immutable() {
                            got.big_blobs += 1;
                        } else {
                            got.big_slots += 1;
                        }
                        if let Some(tx) = &big {
                            let _ = tx.send(());
                        }
                    }
                    got.frames
                        .insert((f.meta().pts, f.bytes().len()), f.bytes().to_vec());
                    if hold && held.is_none() {
                        held = Some(f);
                    }
                }
                Received::Eos => break,
                _ => {}
            }
        }
        got.switches = rx.arena_switches();
        got.slot_size = rx.arena().slot_size();
        drop(held);
        got
    })
}

#[test]
fn consumers_switch_as_they_drain_and_a_holder_keeps_getting_blobs() {
    init();
    let path = sock("switch");
    // 10 frames of 320x240, then 20 of 640x480, paced at 30 fps.
    let p = pipeline(&format!(
        "videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! c. \
         videotestsrc num-buffers=20 pattern=ball ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! c. \
         concat name=c ! identity sync=true ! shmringsink name=sink sync=false socket-path={}",
        path.display()
    ));
    // Both connect while the sink starts (they retry until it listens).
    let (big_tx, big_rx) = mpsc::channel();
    let holder = consume(path.clone(), true, None);
    let drainer = consume(path.clone(), false, Some(big_tx));
    p.set_state(gst::State::Playing).expect("playing");
    // A third consumer joins once the caps grew.
    big_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("a big frame");
    let late = consume(path.clone(), false, None);
    wait_eos(&p);
    let sink = p.by_name("sink").expect("sink");
    let switches = stat(&sink, "arena-switches");
    let leaked = stat(&sink, "leaked-slots");
    p.set_state(gst::State::Null).expect("null");
    let (holder, drainer, late) = (
        holder.join().expect("holder"),
        drainer.join().expect("drainer"),
        late.join().expect("late"),
    );

    for g in [&holder, &drainer, &late] {
        assert_eq!(g.error, None);
    }
    // Everyone got the same bytes for the same frame.
    for (key, bytes) in holder.frames.iter().chain(&late.frames) {
        if let Some(b) = drainer.frames.get(key) {
            assert!(b == bytes, "frame {key:?} differs between consumers");
        }
    }
    let count = |g: &Got, len: usize| g.frames.keys().filter(|k| k.1 == len).count();
    // Both were there before the caps grew (one may have missed the very
    // first frames, had its handshake come after them).
    assert!(count(&drainer, SMALL) >= 1 && count(&holder, SMALL) >= 1);
    assert_eq!(count(&drainer, BIG), 20);
    assert_eq!(count(&holder, BIG), 20);
    // The consumer that gives slots back moves to the bigger arena at once.
    assert_eq!(drainer.switches, 1, "{:?}", drainer.switches);
    assert!(drainer.slot_size >= BIG, "{}", drainer.slot_size);
    assert!(
        drainer.big_blobs <= 5,
        "{} of 20 big frames copied",
        drainer.big_blobs
    );
    // The one that holds a slot of the first arena is never switched and
    // never sent a slot of the new one: every big frame came as a blob.
    assert_eq!(holder.switches, 0);
    assert_eq!((holder.big_blobs, holder.big_slots), (20, 0));
    // The late one was served the new arena: no switch, no blob.
    assert!(!late.frames.is_empty());
    assert_eq!((late.switches, late.big_blobs), (0, 0), "{late:?}");
    assert!(late.slot_size >= BIG);
    assert_eq!(switches, 1, "the sink's stats");
    assert_eq!(leaked, 0);
}

#[test]
fn a_holder_that_needs_a_copy_over_blob_budget_is_dropped_not_the_stream() {
    init();
    let path = sock("switch-budget");
    // The big frames (460 800 bytes) are over blob-budget: a consumer still
    // on the first arena cannot be sent a copy of them.
    let p = pipeline(&format!(
        "videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! c. \
         videotestsrc num-buffers=20 pattern=ball ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! c. \
         concat name=c ! identity sync=true ! shmringsink name=sink sync=false blob-budget=200000 socket-path={}",
        path.display()
    ));
    let holder = consume(path.clone(), true, None);
    let drainer = consume(path.clone(), false, None);
    p.set_state(gst::State::Playing).expect("playing");
    // No error on the bus: the stream goes on for the consumers that can
    // take the frames.
    wait_eos(&p);
    p.set_state(gst::State::Null).expect("null");
    let (holder, drainer) = (
        holder.join().expect("holder"),
        drainer.join().expect("drainer"),
    );
    let why = holder.error.expect("the holder was dropped");
    assert!(why.contains("blob-budget"), "{why}");
    assert_eq!(holder.big_slots + holder.big_blobs, 0);
    // The other one drains and is switched (unless it too held a slot of
    // the first arena when the first big frame came: then it is dropped for
    // the same reason, never sent a slot of an arena it does not read).
    match &drainer.error {
        None => assert_eq!((drainer.switches, drainer.big_blobs), (1, 0), "{drainer:?}"),
        Some(why) => assert!(why.contains("blob-budget"), "{why}"),
    }
}

#[test]
fn caps_that_grow_twice_switch_twice_and_leak_nothing() {
    init();
    let path = sock("switch-twice");
    const HUGE: usize = 1280 * 720 * 3 / 2;
    let p = pipeline(&format!(
        "videotestsrc num-buffers=10 pattern=smpte ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! c. \
         videotestsrc num-buffers=10 pattern=ball ! video/x-raw,format=I420,width=640,height=480,framerate=30/1 ! c. \
         videotestsrc num-buffers=10 pattern=snow ! video/x-raw,format=I420,width=1280,height=720,framerate=30/1 ! c. \
         concat name=c ! identity sync=true ! shmringsink name=sink sync=false socket-path={}",
        path.display()
    ));
    let holder = consume(path.clone(), true, None);
    let drainer = consume(path.clone(), false, None);
    p.set_state(gst::State::Playing).expect("playing");
    wait_eos(&p);
    let sink = p.by_name("sink").expect("sink");
    let (switches, leaked) = (stat(&sink, "arena-switches"), stat(&sink, "leaked-slots"));
    p.set_state(gst::State::Null).expect("null");
    let (holder, drainer) = (
        holder.join().expect("holder"),
        drainer.join().expect("drainer"),
    );
    assert_eq!((&holder.error, &drainer.error), (&None, &None));
    let count = |g: &Got, len: usize| g.frames.keys().filter(|k| k.1 == len).count();
    for g in [&holder, &drainer] {
        assert_eq!(
            (count(g, BIG), count(g, HUGE)),
            (10, 10),
            "{:?}",
            g.switches
        );
    }
    // Same bytes for the same frame, whichever way they came.
    for (key, bytes) in &holder.frames {
        if let Some(b) = drainer.frames.get(key) {
            assert!(b == bytes, "frame {key:?} differs between consumers");
        }
    }
    assert_eq!(drainer.switches, 2);
    assert!(drainer.slot_size >= HUGE, "{}", drainer.slot_size);
    assert_eq!(holder.switches, 0);
    assert_eq!(holder.big_slots, 0, "the holder reads only its first arena");
    assert_eq!(switches, 2, "the sink's stats");
    assert_eq!(leaked, 0);
}
