//! `shmringsrc` timing and stream events against a real frame-stream producer
//! in this process: live mapping through the shared monotonic clock, arrival
//! anchoring, do-timestamp, latency, segments, tags, gaps and reconnection.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use gst::prelude::*;
use shmring::frames::{FrameMeta, SegmentInfo, NONE};

const SEC: u64 = 1_000_000_000;

fn time_segment(start: u64, base: u64) -> SegmentInfo {
    SegmentInfo {
        format: 3, // GST_FORMAT_TIME
        flags: 0,
        rate: 1.0,
        applied_rate: 1.0,
        base,
        offset: 0,
        start,
        stop: NONE,
        time: start,
        position: start,
        duration: NONE,
    }
}

/// The tag list string a shmringsink sends for its timeline.
fn timeline_tags(base_time: u64, latency: u64) -> String {
    format!("taglist, shmring-base-time=(guint64){base_time}, shmring-latency=(guint64){latency};")
}

fn pull(out: &gst_app::AppSink) -> gst::Sample {
    out.try_pull_sample(gst::ClockTime::from_seconds(10))
        .expect("a sample within 10 s")
}

/// Sets `pipeline` playing and waits until its src is (a live pipeline's
/// sink only completes the change with the first buffer).
fn playing(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).expect("playing");
    let src = pipeline.by_name("src").expect("src");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while src.current_state() != gst::State::Playing {
        assert!(std::time::Instant::now() < deadline, "src not PLAYING");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// Records the events of `kind` reaching `out`.
fn record_events(out: &gst_app::AppSink, kind: gst::EventType) -> Arc<Mutex<Vec<gst::Event>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    out.static_pad("sink").expect("appsink pad").add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            if let Some(ev) = info.event() {
                if ev.type_() == kind {
                    s.lock().expect("lock").push(ev.clone());
                }
            }
            gst::PadProbeReturn::Ok
        },
    );
    seen
}

#[test]
fn live_src_maps_the_sink_timeline_onto_its_running_time() {
    init();
    let path = sock("live-map");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "is-live=true latency=20");
    playing(&pipeline);
    let (_l, mut tx) = server.join().expect("server");
    // Our running time 0 is at monotonic `base`; say the sink's was 1 s
    // later, and its segment starts at 5 s: its pts 5.5 s is running time
    // 0.5 s there, 1.5 s here.
    let base = pipeline.base_time().expect("base time").nseconds();
    tx.send_caps("application/x-test").expect("caps");
    retry(&mut tx, |tx| {
        tx.send_tags(&timeline_tags(base + SEC, 40_000_000))
    });
    tx.send_segment(&time_segment(5 * SEC, 0)).expect("segment");
    send(&mut tx, 1, 8, 5 * SEC + SEC / 2);
    send_meta(
        &mut tx,
        2,
        8,
        &FrameMeta {
            pts: 6 * SEC,
            dts: 5 * SEC + SEC / 2,
            duration: 1000,
            ..FrameMeta::default()
        },
    );
    let a = pull(&out);
    assert_eq!(
        a.buffer().expect("buffer").pts(),
        Some(gst::ClockTime::from_nseconds(SEC + SEC / 2))
    );
    let b = pull(&out);
    let b = b.buffer().expect("buffer");
    assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(2 * SEC)));
    assert_eq!(b.dts(), Some(gst::ClockTime::from_nseconds(SEC + SEC / 2)));
    // The segment downstream is the src's own, from 0.
    let seg = a.segment().expect("segment");
    assert_eq!(seg.start().value(), 0);

    // Latency: the sink pipeline's 40 ms plus our 20 ms.
    let src = pipeline.by_name("src").expect("src");
    let mut q = gst::query::Latency::new();
    assert!(src.static_pad("src").expect("pad").query(&mut q));
    let (live, min, _max) = q.result();
    assert!(live);
    assert_eq!(min, gst::ClockTime::from_mseconds(60));
    pipeline.set_state(gst::State::Null).expect("null");
}

#[test]
fn live_src_without_a_timeline_anchors_the_first_frame_at_its_arrival() {
    init();
    let path = sock("live-anchor");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "is-live=true");
    playing(&pipeline);
    let (_l, mut tx) = server.join().expect("server");
    let clock = pipeline.clock().expect("clock");
    let base = pipeline.base_time().expect("base time");
    tx.send_caps("application/x-test").expect("caps");
    let before = clock.time().expect("time") - base;
    send(&mut tx, 1, 8, 100 * SEC);
    send(&mut tx, 2, 8, 100 * SEC + 40_000_000);
    let a = pull(&out).buffer().expect("buffer").pts().expect("pts");
    let after = clock.time().expect("time") - base;
    let b = pull(&out).buffer().expect("buffer").pts().expect("pts");
    assert!(before <= a && a <= after, "{before} <= {a} <= {after}");
    assert_eq!(b - a, gst::ClockTime::from_mseconds(40));
    pipeline.set_state(gst::State::Null).expect("null");
}

#[test]
fn live_src_with_do_timestamp_stamps_the_arrival() {
    init();
    let path = sock("do-ts");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "is-live=true do-timestamp=true");
    playing(&pipeline);
    let (_l, mut tx) = server.join().expect("server");
    let clock = pipeline.clock().expect("clock");
    let base = pipeline.base_time().expect("base time");
    tx.send_caps("application/x-test").expect("caps");
    retry(&mut tx, |tx| tx.send_tags(&timeline_tags(0, 0)));
    let mut last = gst::ClockTime::ZERO;
    for i in 0..3 {
        let before = clock.time().expect("time") - base;
        send(&mut tx, i, 8, 999 * SEC);
        let pts = pull(&out).buffer().expect("buffer").pts().expect("pts");
        let after = clock.time().expect("time") - base;
        assert!(
            before <= pts && pts <= after,
            "{before} <= {pts} <= {after}"
        );
        assert!(pts >= last);
        last = pts;
    }
    pipeline.set_state(gst::State::Null).expect("null");
}

#[test]
fn src_keeps_the_sink_segment_and_forwards_tags_and_gaps() {
    init();
    let path = sock("segment");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "");
    let tags = record_events(&out, gst::EventType::Tag);
    let gaps = record_events(&out, gst::EventType::Gap);
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (_l, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test").expect("caps");
    tx.send_segment(&time_segment(10 * SEC, 2 * SEC))
        .expect("segment");
    retry(&mut tx, |tx| {
        tx.send_tags("taglist, title=(string)\"from the sink\", no-such-tag=(string)x;")
    });
    send(&mut tx, 1, 8, 10 * SEC);
    tx.send_gap(11 * SEC, SEC).expect("gap");
    send(&mut tx, 2, 8, 12 * SEC);
    tx.send_eos().expect("eos");

    let a = pull(&out);
    let seg = a
        .segment()
        .expect("segment")
        .downcast_ref::<gst::ClockTime>()
        .expect("a TIME segment")
        .clone();
    assert_eq!(seg.start(), Some(gst::ClockTime::from_seconds(10)));
    assert_eq!(seg.base(), Some(gst::ClockTime::from_seconds(2)));
    assert_eq!(
        a.buffer().expect("buffer").pts(),
        Some(gst::ClockTime::from_seconds(10))
    );
    let b = pull(&out);
    assert_eq!(
        b.buffer().expect("buffer").pts(),
        Some(gst::ClockTime::from_seconds(12))
    );
    assert!(out
        .try_pull_sample(gst::ClockTime::from_seconds(5))
        .is_none());
    assert!(out.is_eos());

    let tags = tags.lock().expect("lock");
    let titles: Vec<String> = tags
        .iter()
        .filter_map(|e| match e.view() {
            gst::EventView::Tag(t) => t
                .tag()
                .get::<gst::tags::Title>()
                .map(|v| v.get().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(titles, ["from the sink"]);
    let gaps = gaps.lock().expect("lock");
    assert_eq!(gaps.len(), 1);
    match gaps[0].view() {
        gst::EventView::Gap(g) => assert_eq!(
            g.get(),
            (
                gst::ClockTime::from_seconds(11),
                Some(gst::ClockTime::from_seconds(1))
            )
        ),
        _ => unreachable!(),
    }
    pipeline.set_state(gst::State::Null).expect("null");
}

/// The README's promise for `reconnect=true`: when the sink dies the src
/// posts a warning and waits for the next sink on the same path, then goes
/// on with that sink's (new) segment and a `DISCONT` buffer. Checked in the
/// order things reach downstream: segment A, frames 1 and 2, segment B,
/// frame 3 (DISCONT, new caps).
#[test]
fn src_with_reconnect_waits_for_the_next_sink() {
    init();
    let path = sock("reconnect");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "reconnect=true");
    // What reaches the appsink, in order: segments (their start, s) and
    // buffers (their first byte).
    let order = Arc::new(Mutex::new(Vec::<String>::new()));
    let o = order.clone();
    out.static_pad("sink").expect("appsink pad").add_probe(
        gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER,
        move |_, info| {
            let mut o = o.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = info.buffer() {
                let byte = b.map_readable().map(|m| m[0]).unwrap_or(0);
                o.push(format!("frame {byte}"));
            } else if let Some(gst::EventView::Segment(seg)) = info.event().map(|e| e.view()) {
                let start = seg
                    .segment()
                    .downcast_ref::<gst::ClockTime>()
                    .and_then(|s| s.start())
                    .map_or(u64::MAX, |t| t.nseconds() / SEC);
                o.push(format!("segment {start}"));
            }
            gst::PadProbeReturn::Ok
        },
    );
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (listener, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test,n=(int)1").expect("caps");
    tx.send_segment(&time_segment(0, 0)).expect("segment");
    send(&mut tx, 1, 8, 0);
    send(&mut tx, 2, 8, 1000);
    let first = pull(&out);
    drop((tx, listener)); // the sink dies
    let second = pull(&out);

    // A new sink on the same path, with a segment of its own (a real
    // shmringsink sends its sticky events to every new consumer).
    let server = serve(&path);
    let (_l, mut tx) = server.join().expect("new server");
    tx.send_caps("application/x-test,n=(int)2").expect("caps");
    retry(&mut tx, |tx| tx.send_segment(&time_segment(7 * SEC, 0)));
    send(&mut tx, 3, 8, 7 * SEC);
    tx.send_eos().expect("eos");
    let third = pull(&out);
    assert!(out
        .try_pull_sample(gst::ClockTime::from_seconds(5))
        .is_none());
    assert!(out.is_eos());

    let byte = |s: &gst::Sample| s.buffer().expect("buffer").map_readable().expect("map")[0];
    assert_eq!([byte(&first), byte(&second), byte(&third)], [1, 2, 3]);
    let n = |s: &gst::Sample| {
        s.caps()
            .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("n").ok()))
    };
    assert_eq!(n(&third), Some(2));
    assert!(third
        .buffer()
        .expect("buffer")
        .flags()
        .contains(gst::BufferFlags::DISCONT));
    assert_eq!(
        *order.lock().unwrap_or_else(|e| e.into_inner()),
        ["segment 0", "frame 1", "frame 2", "segment 7", "frame 3"],
        "what reached downstream, in order"
    );
    // One pass over the bus (a filtered pop discards what it skips).
    let bus = pipeline.bus().expect("bus");
    let mut warnings = Vec::new();
    for m in bus.iter_filtered(&[gst::MessageType::Error, gst::MessageType::Warning]) {
        match m.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("waiting for a new one"),
        "{warnings:?}"
    );
    // The src's stats count the three frames, their bytes and the reconnect;
    // the frames are copied: `application/x-test` is no raw audio or video,
    // so downstream may parse it, and the sink is not declared trusted.
    let stats = pipeline
        .by_name("src")
        .expect("src")
        .property::<gst::Structure>("stats");
    let get = |f: &str| stats.get::<u64>(f).expect(f);
    assert_eq!(
        [
            get("frames"),
            get("bytes"),
            get("zero-copy"),
            get("copied"),
            get("reconnects")
        ],
        [3, 24, 0, 3, 1],
        "{stats}"
    );
    pipeline.set_state(gst::State::Null).expect("null");
}

/// A sink that drops this consumer with a reason (its slow-consumer policy)
/// and goes on listening: with `reconnect=true` the src posts a warning with
/// that reason and connects again to the same sink; without, it posts an
/// error with the reason.
#[test]
fn src_with_reconnect_connects_again_after_being_dropped() {
    init();
    for reconnect in [true, false] {
        let path = sock(if reconnect {
            "dropped-again"
        } else {
            "dropped-end"
        });
        let server = serve(&path);
        let (pipeline, out) = src_pipeline(&path, &format!("reconnect={reconnect}"));
        pipeline.set_state(gst::State::Playing).expect("playing");
        let (listener, mut tx) = server.join().expect("server");
        tx.send_caps("application/x-test,n=(int)1").expect("caps");
        tx.send_segment(&time_segment(0, 0)).expect("segment");
        send(&mut tx, 1, 8, 0);
        let first = pull(&out);
        tx.say_goodbye("took nothing back for 5 s");
        drop(tx);
        let bus = pipeline.bus().expect("bus");
        let message = bus
            .timed_pop_filtered(
                gst::ClockTime::from_seconds(10),
                &[gst::MessageType::Error, gst::MessageType::Warning],
            )
            .expect("a warning or an error");
        let text = match message.view() {
            gst::MessageView::Warning(w) if reconnect => w.error().to_string(),
            gst::MessageView::Error(e) if !reconnect => e.error().to_string(),
            other => panic!("reconnect={reconnect}: {other:?}"),
        };
        assert!(text.contains("took nothing back for 5 s"), "{text}");
        if reconnect {
            // The same sink serves the src again.
            let conn = listener.accept(Some(std::time::Duration::from_secs(10)));
            let mut tx = shmring::frames::serve(
                conn.expect("the src connects again"),
                &shmring::frames::FrameConfig::new(32, 4096),
            )
            .expect("serve");
            tx.send_caps("application/x-test,n=(int)2").expect("caps");
            tx.send_segment(&time_segment(0, 0)).expect("segment");
            send(&mut tx, 2, 8, 0);
            let second = pull(&out);
            let byte =
                |s: &gst::Sample| s.buffer().expect("buffer").map_readable().expect("map")[0];
            assert_eq!([byte(&first), byte(&second)], [1, 2]);
            let stats = pipeline
                .by_name("src")
                .expect("src")
                .property::<gst::Structure>("stats");
            assert_eq!(stats.get::<u64>("reconnects"), Ok(1), "{stats}");
        }
        pipeline.set_state(gst::State::Null).expect("null");
    }
}

/// Frames the sink skipped for this consumer (it reports them on the next
/// frame) are counted in the src's `drops`.
#[test]
fn src_counts_the_frames_the_sink_skipped_for_it() {
    init();
    let path = sock("missed");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (_listener, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test").expect("caps");
    send(&mut tx, 1, 8, 0);
    for _ in 0..3 {
        tx.note_missed();
    }
    send(&mut tx, 2, 8, 4000);
    pull(&out);
    pull(&out);
    let stats = pipeline
        .by_name("src")
        .expect("src")
        .property::<gst::Structure>("stats");
    assert_eq!(stats.get::<u64>("drops"), Ok(3), "{stats}");
    pipeline.set_state(gst::State::Null).expect("null");
}
