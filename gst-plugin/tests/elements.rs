//! The elements in this process against a real peer on a real socket path:
//! `shmring::frames` plays the other side (any program can), so each test
//! controls exactly what crosses.

use std::path::PathBuf;
use std::sync::Once;
use std::time::{Duration, Instant};

use gst::prelude::*;
use shmring::frames::{self, Descriptor, FrameConfig, FrameMeta, Kind, Received};
use shmring::handshake::Listener;
use shmring::Zeroable;

const T: Option<Duration> = Some(Duration::from_secs(10));

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst init");
        gstshmring::register_static().expect("register elements");
    });
}

fn sock(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-gst-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("s.sock")
}

fn stats(sink: &gst::Element) -> (u64, u64, u64) {
    let s = sink.property::<gst::Structure>("stats");
    let g = |k: &str| s.get::<u64>(k).expect("stats field");
    (g("zero-copy"), g("copied"), g("dropped"))
}

/// Runs `pipeline` to EOS (or fails after 20 s with the bus error).
fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).expect("playing");
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(20),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or error within 20 s");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("pipeline error: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).expect("null");
}

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
        let mut rx = frames::connect(&path, &FrameConfig::new(1, 64)).expect("connect");
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
        let mut rx = frames::connect(&p, &FrameConfig::new(1, 64)).expect("connect");
        let mut kept = Vec::new();
        // Keep every frame: no slot ever goes back.
        while let Ok(m) = rx.recv(Some(Duration::from_secs(3))) {
            kept.push(m);
        }
        kept.len()
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
    assert!(hoarder.join().expect("hoarder") > 0);
}

// ------------------------------------------------------------------ src side

/// A producer serving one `shmringsrc` from this process: bound at once, served
/// on a thread (the src connects in its `start`).
fn serve(path: &std::path::Path) -> std::thread::JoinHandle<(Listener, frames::FrameSender)> {
    let listener = Listener::bind(path, &Default::default()).expect("bind");
    std::thread::spawn(move || {
        let c = listener.accept(T).expect("accept");
        let tx = frames::serve(c, &FrameConfig::new(32, 4096)).expect("serve");
        (listener, tx)
    })
}

fn src_pipeline(path: &std::path::Path) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc name=src socket-path={} ! appsink name=out sync=false",
        path.display()
    ))
    .expect("pipeline")
    .downcast::<gst::Pipeline>()
    .expect("a pipeline");
    let sink = pipeline
        .by_name("out")
        .expect("appsink")
        .downcast::<gst_app::AppSink>()
        .expect("appsink type");
    (pipeline, sink)
}

/// Retries `op` while the producer is `Full` (e.g. the string slot is still
/// with the consumer), taking returns meanwhile.
fn retry(
    tx: &mut frames::FrameSender,
    mut op: impl FnMut(&mut frames::FrameSender) -> shmring::Result<()>,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {}).expect("reclaim");
        match op(tx) {
            Ok(()) => return,
            Err(shmring::Error::Full) if Instant::now() < deadline => {
                let _ = tx.wait_returns(Some(Duration::from_millis(10)));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

fn send(tx: &mut frames::FrameSender, byte: u8, len: usize, pts: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {}).expect("reclaim");
        if let Some(mut lease) = tx.try_lease() {
            lease.as_mut()[..len].fill(byte);
            let meta = FrameMeta {
                pts,
                duration: 1000,
                ..FrameMeta::default()
            };
            match tx.send_lease(lease, len, &meta) {
                Ok(()) => return,
                Err(shmring::Error::Full) => {}
                Err(e) => panic!("{e}"),
            }
        }
        assert!(
            Instant::now() < deadline,
            "consumer stopped returning slots"
        );
        let _ = tx.wait_returns(Some(Duration::from_millis(10)));
    }
}

/// The start address of the mapping holding `ptr` and its line in /proc/self/maps.
fn mapping_of(ptr: usize) -> String {
    let maps = std::fs::read_to_string("/proc/self/maps").expect("maps");
    maps.lines()
        .find(|l| {
            let r = l.split_whitespace().next().unwrap_or("");
            let (a, b) = r.split_once('-').unwrap_or(("0", "0"));
            let a = usize::from_str_radix(a, 16).unwrap_or(0);
            let b = usize::from_str_radix(b, 16).unwrap_or(0);
            a <= ptr && ptr < b
        })
        .unwrap_or("")
        .to_string()
}

#[test]
fn src_wraps_the_read_only_arena_and_follows_caps_changes() {
    init();
    let path = sock("src");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path);
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

/// Starts a src against a producer that sends `bad` after valid caps, and
/// returns the bus error text (or panics after 5 s).
fn src_error_after(tag: &str, bad: impl FnOnce(&mut frames::FrameSender)) -> String {
    init();
    let path = sock(tag);
    let server = serve(&path);
    let (pipeline, _out) = src_pipeline(&path);
    pipeline.set_state(gst::State::Playing).expect("playing");
    let (listener, mut tx) = server.join().expect("server");
    tx.send_caps("application/x-test").expect("caps");
    send(&mut tx, 1, 10, 0);
    bad(&mut tx);
    let bus = pipeline.bus().expect("bus");
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error])
        .expect("an error on the bus");
    let text = match msg.view() {
        gst::MessageView::Error(e) => format!("{} {:?}", e.error(), e.debug()),
        _ => unreachable!(),
    };
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

#[test]
fn src_reports_a_dead_sink_within_a_second() {
    init();
    let path = sock("dead");
    let server = serve(&path);
    let (pipeline, out) = src_pipeline(&path);
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
