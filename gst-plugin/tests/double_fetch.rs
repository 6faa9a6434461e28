//! A hostile sink that keeps rewriting a frame after sending it: downstream
//! of `shmringsrc` must never see the bytes of a parsed format (here VP8)
//! change under it, unless the user declared the sink `trusted`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{init, serve, src_pipeline, T};
use gst::prelude::*;
use shmring::frames::{FrameMeta, SegmentInfo};

const LEN: usize = 2048;
const FRAMES: usize = 20;

fn checksum(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |s, &x| {
        s.wrapping_mul(1_000_003).wrapping_add(u64::from(x))
    })
}

/// Runs the hostile sink against `shmringsrc <props>`; returns, per frame,
/// whether downstream read the same bytes twice (50 ms apart).
fn stable_reads(props: &str) -> Vec<bool> {
    init();
    let path = common::sock(&format!("dfetch-{}", props.len()));
    let server = serve(&path);
    let (pipeline, appsink) = src_pipeline(&path, props);
    let results = Arc::new(Mutex::new(Vec::new()));
    let r = results.clone();
    appsink.static_pad("sink").expect("pad").add_probe(
        gst::PadProbeType::BUFFER,
        move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data {
                let m = b.map_readable().expect("map");
                let first = checksum(&m);
                std::thread::sleep(Duration::from_millis(50));
                let second = checksum(&m);
                r.lock().expect("lock").push(first == second);
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (_listener, mut tx) = server.join().expect("server");
    common::retry(&mut tx, |tx| tx.send_stream_start("hostile"));
    common::retry(&mut tx, |tx| {
        tx.send_caps("video/x-vp8,width=64,height=64,framerate=30/1")
    });
    common::retry(&mut tx, |tx| tx.send_segment(&SegmentInfo::time()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for i in 0..FRAMES {
        let mut lease = loop {
            tx.reclaim(|_| {}).expect("reclaim");
            match tx.try_lease() {
                Some(l) => break l,
                None => {
                    let _ = tx.wait_returns(Some(Duration::from_millis(10)));
                }
            }
        };
        lease.as_mut()[..LEN].fill(i as u8);
        let meta = FrameMeta {
            pts: i as u64 * 33_000_000,
            ..FrameMeta::default()
        };
        let slot = lease.index();
        common::retry(&mut tx, |tx| tx.send_frame(slot, 0, LEN, &meta));
        // The sink keeps its lease and rewrites the slot after sending it.
        let stop = stop.clone();
        writers.push(std::thread::spawn(move || {
            let mut k = 0u8;
            while !stop.load(Ordering::Relaxed) {
                k = k.wrapping_add(1);
                lease.as_mut()[..LEN].fill(k);
                std::hint::spin_loop();
            }
        }));
        common::wait_until("frame read twice", Duration::from_secs(10), || {
            results.lock().expect("lock").len() > i
        });
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    let _ = T;
    pipeline.set_state(gst::State::Null).expect("null");
    let out = results.lock().expect("lock").clone();
    out
}

#[test]
fn a_rewriting_sink_cannot_change_what_downstream_parses() {
    let reads = stable_reads("");
    assert_eq!(reads.len(), FRAMES);
    assert!(reads.iter().all(|&same| same), "{reads:?}");
}

#[test]
fn with_trusted_the_same_rewrites_are_seen() {
    // Proof that the test above can fail: zero copy for a trusted sink.
    let reads = stable_reads("trusted=true");
    assert_eq!(reads.len(), FRAMES);
    assert!(reads.iter().any(|&same| !same), "{reads:?}");
}
