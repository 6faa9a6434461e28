//! The elements in this process against a real peer on a real socket path:
//! `shmring::frames` plays the other side (any program can), so each test
//! controls exactly what crosses.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::*;
use gst::prelude::*;
use shmring::frames::{self, Descriptor, FrameConfig, FrameMeta, Kind, Received};
use shmring::Zeroable;

/// What a consumer saw: frames are copied out at once (so their slots go back).
#[derive(Debug)]
enum Seen {
    Frame(Vec<u8>, FrameMeta),
    Caps(String),
    Other,
}

/// Collects what a consumer receives until EOS.
fn consume(path: PathBuf) -> std::thread::JoinHandle<Vec<Seen>> {
    std::thread::spawn(move || {
        let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect");
        let mut got = Vec::new();
        loop {
            match rx.recv(T) {
                Ok(Received::Eos) => break,
                Ok(Received::Frame(f)) => got.push(Seen::Frame(f.bytes().to_vec(), *f.meta())),
                Ok(Received::Caps(c)) => got.push(Seen::Caps(c)),
                Ok(_) => got.push(Seen::Other),
                Err(e) => panic!("consumer: {e}"),
            }
        }
        got
    })
}

fn frames_of(got: &[Seen]) -> Vec<(&[u8], &FrameMeta)> {
    got.iter()
        .filter_map(|m| match m {
            Seen::Frame(b, m) => Some((b.as_slice(), m)),
            _ => None,
        })
        .collect()
}

#[test]
fn sink_sends_from_its_own_pool_without_copying() {
    init();
    let path = sock("pool");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=30 pattern=ball ! video/x-raw,format=RGBA,width=64,height=48,framerate=30/1 ! shmringsink name=sink socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let consumer = consume(path);
    run_to_eos(&pipeline);
    let got = consumer.join().expect("consumer");
    let frames = frames_of(&got);
    assert_eq!(frames.len(), 30);
    for (i, (bytes, meta)) in frames.iter().enumerate() {
        assert_eq!(bytes.len(), 64 * 48 * 4);
        // 30 fps from 0: pts = i / 30 s.
        assert_eq!(meta.pts, i as u64 * 1_000_000_000 / 30, "frame {i}");
    }
    assert!(got
        .iter()
        .any(|m| matches!(m, Seen::Caps(c) if c.contains("width=(int)64"))));
    let sink = pipeline.by_name("sink").expect("sink");
    let (zero_copy, copied, dropped) = stats(&sink);
    assert_eq!(
        (zero_copy, copied, dropped),
        (30, 0, 0),
        "upstream used the offered pool"
    );
}

#[test]
fn sink_copies_foreign_buffers_once_and_keeps_their_content() {
    init();
    let path = sock("foreign");
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src format=time caps=application/x-test ! shmringsink name=sink slot-size=4096 socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let src = pipeline
        .by_name("src")
        .expect("appsrc")
        .downcast::<gst_app::AppSrc>()
        .expect("appsrc type");
    let consumer = consume(path);
    pipeline.set_state(gst::State::Playing).expect("playing");
    for i in 0..50u8 {
        let mut b = gst::Buffer::from_slice(vec![i; 100 + i as usize]);
        b.get_mut()
            .expect("writable")
            .set_pts(gst::ClockTime::from_mseconds(u64::from(i)));
        src.push_buffer(b).expect("push");
    }
    src.end_of_stream().expect("eos");
    let got = consumer.join().expect("consumer");
    let frames = frames_of(&got);
    assert_eq!(frames.len(), 50);
    for (i, (bytes, meta)) in frames.iter().enumerate() {
        assert_eq!(*bytes, vec![i as u8; 100 + i].as_slice());
        assert_eq!(meta.pts, i as u64 * 1_000_000);
    }
    let sink = pipeline.by_name("sink").expect("sink");
    assert_eq!(stats(&sink), (0, 50, 0));
    pipeline.set_state(gst::State::Null).expect("null");
}

#[test]
fn sink_drops_a_consumer_that_never_returns_slots() {
    init();
    let path = sock("stuck");
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers=40 ! video/x-raw,format=GRAY8,width=16,height=16 ! shmringsink name=sink slots=6 timeout=200 socket-path={}",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let p = path.clone();
    let hoarder = std::thread::spawn(move || {
        let mut rx = frames::connect(&p, &FrameConfig::consumer()).expect("connect");
        let mut kept = Vec::new();
        // Keep every frame: no slot ever goes back.
        let end = loop {
            match rx.recv(Some(Duration::from_secs(3))) {
                Ok(m) => kept.push(m),
                Err(e) => break e,
            }
        };
        (kept.len(), end)
    });
    let start = Instant::now();
    run_to_eos(&pipeline);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        start.elapsed()
    );
    let sink = pipeline.by_name("sink").expect("sink");
    let (zero_copy, _, dropped) = stats(&sink);
    assert!(
        zero_copy < 40 && dropped > 0,
        "{zero_copy} sent, {dropped} dropped"
    );
    let (kept, end) = hoarder.join().expect("hoarder");
    assert!(kept > 0);
    // Dropped, and told why, before the sink stopped.
    match end {
        shmring::Error::Dropped(why) => assert!(why.contains("of 6 slots"), "{why}"),
        e => panic!("the consumer was not dropped with a reason: {e}"),
    }
    assert_eq!(common::stat(&sink, "disconnects"), 1);
}

/// A socket path longer than a Unix socket address holds: both elements
/// refuse to start, with the limit in the error, instead of binding a path
/// nobody can connect to (sink) or waiting forever.
#[test]
fn both_elements_refuse_a_socket_path_over_107_bytes() {
    init();
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    for desc in [
        format!("videotestsrc num-buffers=1 ! shmringsink socket-path={long}"),
        format!("shmringsrc socket-path={long} ! fakesink"),
    ] {
        let pipeline = pipeline(&desc);
        let _ = pipeline.set_state(gst::State::Playing);
        let text = bus_error(&pipeline);
        assert!(text.contains("107"), "{desc}: {text}");
        pipeline.set_state(gst::State::Null).expect("null");
        assert!(!std::path::Path::new(&long).exists());
    }
}

// ------------------------------------------------------------------ src side

#[test]
fn src_wraps_the_read_only_arena_and_follows_caps_changes() {
    init();
    let path = sock("src");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (_listener, mut tx) = server.join().expect("server");
    tx.send_caps("video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1")
        .expect("caps");
    for i in 0..3u8 {
        send(&mut tx, i, 16, u64::from(i) * 1000);
    }
    retry(&mut tx, |tx| {
        tx.send_caps("video/x-raw,format=GRAY8,width=8,height=8,framerate=30/1")
    });
    for i in 3..5u8 {
        send(&mut tx, i, 64, u64::from(i) * 1000);
    }
    tx.send_eos().expect("eos");

    for i in 0..5u8 {
        let sample = out
            .try_pull_sample(gst::ClockTime::from_seconds(10))
            .expect("sample");
        let caps = sample.caps().expect("caps");
        let width = caps.structure(0).and_then(|s| s.get::<i32>("width").ok());
        assert_eq!(width, Some(if i < 3 { 4 } else { 8 }), "caps of frame {i}");
        let buffer = sample.buffer().expect("buffer");
        assert_eq!(
            buffer.pts(),
            Some(gst::ClockTime::from_nseconds(u64::from(i) * 1000))
        );
        let map = buffer.map_readable().expect("map");
        assert!(map.iter().all(|&b| b == i));
        assert_eq!(map.len(), if i < 3 { 16 } else { 64 });
        let line = mapping_of(map.as_ptr() as usize);
        assert!(
            line.contains("shmring-arena") && line.split_whitespace().nth(1) == Some("r--s"),
            "buffer memory is the shared read-only arena: {line}"
        );
    }
    assert!(out
        .try_pull_sample(gst::ClockTime::from_seconds(5))
        .is_none());
    assert!(out.is_eos());
    pipeline.set_state(gst::State::Null).expect("null");
}

/// The text of the first error on `pipeline`'s bus (panics after 5 s).
fn bus_error(pipeline: &gst::Pipeline) -> String {
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error on the bus");
    match msg.view() {
        gst::MessageView::Error(e) => format!("{} {:?}", e.error(), e.debug()),
        _ => unreachable!("filtered for errors"),
    }
}

/// Starts a src against a producer that sends `bad` after valid caps, and
/// returns the bus error text (or panics after 5 s).
fn src_error_after(tag: &str, bad: impl FnOnce(&mut frames::FrameSender)) -> String {
    init();
    let path = sock(tag);
    let server = serve(&path);
    let (pipeline, _out) = src_pipeline(&path, "");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (listener, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test").expect("caps");
    send(&mut tx, 1, 10, 0);
    bad(&mut tx);
    let text = bus_error(&pipeline);
    pipeline.set_state(gst::State::Null).expect("null");
    drop((listener, tx));
    text
}

fn raw(kind: u32, slot: u32, offset: u32, size: u32, seq: u64) -> Descriptor {
    let mut d = Descriptor::zeroed();
    d.kind = kind;
    d.slot = slot;
    d.offset = offset;
    d.size = size;
    d.seq = seq;
    d
}

#[test]
fn src_errors_on_hostile_descriptors() {
    // Two descriptors went before: the caps (seq 0) and a frame (seq 1).
    let frame = Kind::Frame as u32;
    let cases = [
        ("range", raw(frame, 99, 0, 1, 2), "slot 99 out of range"),
        ("outside", raw(frame, 0, 4000, 100, 2), "outside"),
        ("kind", raw(77, 0, 0, 0, 2), "unknown kind 77"),
        ("seq", raw(Kind::Eos as u32, 0, 0, 0, 9), "sequence"),
    ];
    for (tag, d, want) in cases {
        let text = src_error_after(tag, |tx| tx.send_raw(d).expect("raw"));
        assert!(text.contains(want), "{tag}: {text}");
    }
}

#[test]
fn src_errors_on_caps_that_do_not_parse() {
    let text = src_error_after("badcaps", |tx| {
        retry(tx, |tx| tx.send_caps("this is {{ not caps"))
    });
    assert!(text.contains("caps"), "{text}");
}

/// A NUL byte in the caps (valid UTF-8, but not a C string): an error, not a
/// panic of the streaming thread (found by the `peer_strings` fuzz target).
#[test]
fn src_errors_on_caps_with_a_nul_byte() {
    let text = src_error_after("nulcaps", |tx| {
        retry(tx, |tx| tx.send_caps("audio/x-raw\0, rate=(int)48000"))
    });
    assert!(text.contains("caps") && !text.contains("panic"), "{text}");
}

#[test]
fn src_reports_a_dead_sink_within_a_second() {
    init();
    let path = sock("dead");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path, "");
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (listener, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test").expect("caps");
    send(&mut tx, 1, 10, 0);
    assert!(out
        .try_pull_sample(gst::ClockTime::from_seconds(5))
        .is_some());
    let start = Instant::now();
    drop(tx);
    drop(listener);
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error on the bus");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    match msg.view() {
        gst::MessageView::Error(e) => {
            assert!(e.error().to_string().contains("went away"), "{}", e.error())
        }
        _ => unreachable!(),
    }
    pipeline.set_state(gst::State::Null).expect("null");
}

/// Field 5 of a /proc/self/maps line: the inode of the mapped file.
fn inode_of(bytes: &[u8]) -> String {
    let line = mapping_of(bytes.as_ptr() as usize);
    assert!(line.contains("shmring-arena"), "{line}");
    line.split_whitespace().nth(4).unwrap_or("").to_string()
}

#[test]
fn sink_serves_the_next_consumer_with_sticky_events_and_a_fresh_arena() {
    init();
    let path = sock("next");
    let pipeline = pipeline(&format!(
        "videotestsrc is-live=true num-buffers=120 ! video/x-raw,format=GRAY8,width=64,height=64,framerate=60/1 ! shmringsink name=sink socket-path={}",
        path.display()
    ));
    pipeline.set_state(gst::State::Playing).expect("playing");

    // The first consumer takes 10 frames and leaves.
    let first_arena = {
        let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect 1");
        let mut n = 0;
        loop {
            if let Received::Frame(f) = rx.recv(T).expect("recv 1") {
                n += 1;
                if n == 10 {
                    break inode_of(f.bytes());
                }
            }
        }
    };

    // The next one starts with the stream's sticky events, from a new arena.
    let mut rx = frames::connect(&path, &FrameConfig::consumer()).expect("connect 2");
    let mut kinds = Vec::new();
    let mut arenas = std::collections::BTreeSet::new();
    let mut frames = 0;
    loop {
        match rx.recv(T).expect("recv 2") {
            Received::Frame(f) => {
                arenas.insert(inode_of(f.bytes()));
                frames += 1;
                kinds.push("frame");
            }
            Received::StreamStart(_) => kinds.push("stream-start"),
            Received::Caps(c) => {
                assert!(c.contains("width=(int)64"), "{c}");
                kinds.push("caps");
            }
            Received::Segment(_) => kinds.push("segment"),
            Received::Tags(_) => kinds.push("tags"),
            Received::Eos => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(kinds[..3], ["stream-start", "caps", "segment"], "{kinds:?}");
    assert!(frames > 50, "{frames} frames");
    assert_eq!(arenas.len(), 1);
    assert!(
        !arenas.contains(&first_arena),
        "the second consumer got the first one's arena"
    );
    wait_eos(&pipeline);
    let sink = pipeline.by_name("sink").expect("sink");
    let (zero_copy, copied, dropped) = stats(&sink);
    assert_eq!(zero_copy + copied + dropped, 120);
    assert_eq!(
        sink.property::<gst::Structure>("stats")
            .get::<u64>("consumers-served"),
        Ok(2)
    );
    // Upstream renders into the new arena's pool once it renegotiated.
    assert!(copied < 10, "{zero_copy} zero-copy, {copied} copied");
    pipeline.set_state(gst::State::Null).expect("null");
}

/// Raw audio gets no pool: its buffer size is not in the caps, and a pool of
/// slots would cut an upstream's bigger buffers short (audiotestsrc with
/// 1-second buffers lost four fifths of every buffer that way). Each buffer
/// is copied once into a slot (or a blob when bigger than one).
#[test]
fn sink_copies_audio_buffers_once_into_slots() {
    init();
    let path = sock("audio");
    let pipeline = pipeline(&format!(
        "audiotestsrc num-buffers=300 samplesperbuffer=64 ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! shmringsink name=sink socket-path={}",
        path.display()
    ));
    let consumer = consume(path);
    run_to_eos(&pipeline);
    let got = consumer.join().expect("consumer");
    let frames = frames_of(&got);
    // More buffers than slots: each slot is used many times.
    assert_eq!(frames.len(), 300);
    for (i, (bytes, meta)) in frames.iter().enumerate() {
        assert_eq!(bytes.len(), 64 * 4);
        assert_eq!(meta.offset, i as u64 * 64, "sample offset of buffer {i}");
        assert_eq!(meta.pts, i as u64 * 64 * 1_000_000_000 / 48_000);
    }
    let sink = pipeline.by_name("sink").expect("sink");
    assert_eq!(stats(&sink), (0, 300, 0));
}

#[test]
fn sink_keeps_up_when_upstream_outruns_a_shmringsrc() {
    // Upstream bursts ahead of the consumer; the sink waits for slots to
    // come back. Nothing is lost, even though the consumer's fakesink keeps
    // one slot (its last sample).
    init();
    let path = sock("burst");
    let sender = pipeline(&format!(
        "audiotestsrc num-buffers=3000 samplesperbuffer=64 ! audio/x-raw,format=S16LE,rate=48000,channels=2 ! shmringsink name=sink sync=false timeout=2000 socket-path={}",
        path.display()
    ));
    sender
        .set_state(gst::State::Playing)
        .expect("sender playing");
    let receiver = pipeline(&format!(
        "shmringsrc socket-path={} ! fakesink name=out sync=false",
        path.display()
    ));
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = count.clone();
    receiver
        .by_name("out")
        .expect("fakesink")
        .static_pad("sink")
        .expect("pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
    receiver
        .set_state(gst::State::Playing)
        .expect("receiver playing");
    wait_eos(&sender);
    wait_eos(&receiver);
    let sink = sender.by_name("sink").expect("sink");
    let (zero_copy, copied, dropped) = stats(&sink);
    assert_eq!(dropped, 0, "{zero_copy} zero-copy, {copied} copied");
    assert_eq!((zero_copy, copied), (0, 3000), "raw audio is copied once");
    assert_eq!(count.load(std::sync::atomic::Ordering::Relaxed), 3000);
    receiver.set_state(gst::State::Null).expect("null");
    sender.set_state(gst::State::Null).expect("null");
}

#[test]
fn sink_without_a_consumer_drops_when_not_waiting() {
    init();
    let path = sock("nowait");
    let pipeline = pipeline(&format!(
        "videotestsrc num-buffers=20 ! video/x-raw,width=32,height=32 ! shmringsink name=sink wait-for-connection=false socket-path={}",
        path.display()
    ));
    run_to_eos(&pipeline);
    let sink = pipeline.by_name("sink").expect("sink");
    assert_eq!(stats(&sink), (0, 0, 20));
}

/// `allowed-uid`: a consumer running as another uid is refused (it gets the
/// reason), one running as the allowed uid is served.
#[test]
fn sink_serves_only_the_allowed_uid() {
    init();
    // SAFETY: getuid has no arguments and cannot fail.
    let me = unsafe { libc::getuid() };
    for (allowed, served) in [(i64::from(me) + 1, false), (i64::from(me), true)] {
        let path = sock(&format!("uid{allowed}"));
        let pipeline = pipeline(&format!(
            "videotestsrc num-buffers=3 ! video/x-raw,width=32,height=32 ! shmringsink name=sink allowed-uid={allowed} socket-path={}",
            path.display()
        ));
        let p = path.clone();
        let consumer = std::thread::spawn(move || frames::connect(&p, &FrameConfig::consumer()));
        pipeline.set_state(gst::State::Playing).expect("playing");
        let result = consumer.join().expect("consumer");
        match (served, result) {
            (true, Ok(_)) => {}
            (false, Err(shmring::Error::PeerRefused(reason))) => {
                assert!(reason.contains("not allowed"), "{reason}");
            }
            (_, other) => panic!("allowed-uid={allowed}: {:?}", other.map(|_| "served")),
        }
        pipeline.set_state(gst::State::Null).expect("null");
    }
}

#[test]
fn sink_tells_the_consumer_its_timeline() {
    init();
    let path = sock("timeline");
    let pipeline = pipeline(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=32,height=32 ! shmringsink name=sink socket-path={}",
        path.display()
    ));
    let p = path.clone();
    let consumer = std::thread::spawn(move || {
        let mut rx = frames::connect(&p, &FrameConfig::consumer()).expect("connect");
        let mut tags = Vec::new();
        loop {
            match rx.recv(T).expect("recv") {
                Received::Tags(t) => tags.push(t),
                Received::Frame(_) if tags.is_empty() => panic!("a frame before the timeline"),
                Received::Eos => return tags,
                _ => {}
            }
        }
    });
    pipeline.set_state(gst::State::Playing).expect("playing");
    wait_eos(&pipeline);
    // The default pipeline clock is the monotonic system clock: the base time
    // is sent as it is.
    let base = pipeline.base_time().expect("base time").nseconds();
    pipeline.set_state(gst::State::Null).expect("null");
    let tags = consumer.join().expect("consumer");
    assert_eq!(tags.len(), 1, "{tags:?}");
    assert!(
        tags[0].contains(&format!("shmring-base-time=(guint64){base}")),
        "{tags:?} (base time {base})"
    );
    assert!(tags[0].contains("shmring-latency=(guint64)0"), "{tags:?}");
}

#[test]
fn caps_changes_cross_sink_and_src_in_order_with_the_frames() {
    init();
    let path = sock("caps-change");
    let sender = pipeline(&format!(
        "appsrc name=in format=time ! shmringsink name=sink slot-size=4096 socket-path={}",
        path.display()
    ));
    let input = sender
        .by_name("in")
        .expect("appsrc")
        .downcast::<gst_app::AppSrc>()
        .expect("appsrc type");
    sender
        .set_state(gst::State::Playing)
        .expect("sender playing");
    let (receiver, out) = src_pipeline(&path, "");
    receiver
        .set_state(gst::State::Playing)
        .expect("receiver playing");

    let sizes = [16usize, 32, 8];
    for (n, &w) in sizes.iter().enumerate() {
        let caps = gst::Caps::builder("video/x-raw")
            .field("format", "GRAY8")
            .field("width", w as i32)
            .field("height", w as i32)
            .field("framerate", gst::Fraction::new(30, 1))
            .build();
        input.set_caps(Some(&caps));
        for i in 0..3u8 {
            let mut b = gst::Buffer::from_slice(vec![n as u8 * 10 + i; w * w]);
            b.get_mut()
                .expect("writable")
                .set_pts(gst::ClockTime::from_mseconds(
                    u64::from(n as u8 * 3 + i) * 10,
                ));
            input.push_buffer(b).expect("push");
        }
    }
    input.end_of_stream().expect("eos");

    for (n, &w) in sizes.iter().enumerate() {
        for i in 0..3u8 {
            let s = out
                .try_pull_sample(gst::ClockTime::from_seconds(10))
                .expect("sample");
            let width = s
                .caps()
                .and_then(|c| c.structure(0).and_then(|s| s.get::<i32>("width").ok()));
            assert_eq!(width, Some(w as i32), "caps of frame {i} at size {w}");
            let map = s.buffer().expect("buffer").map_readable().expect("map");
            assert_eq!(map.len(), w * w);
            assert!(map.iter().all(|&b| b == n as u8 * 10 + i));
        }
    }
    assert!(out
        .try_pull_sample(gst::ClockTime::from_seconds(5))
        .is_none());
    assert!(out.is_eos());
    wait_eos(&sender);
    let sink = sender.by_name("sink").expect("sink");
    assert_eq!(stats(&sink), (0, 9, 0));
    receiver.set_state(gst::State::Null).expect("null");
    sender.set_state(gst::State::Null).expect("null");
}
