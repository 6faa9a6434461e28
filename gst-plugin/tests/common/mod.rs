//! Helpers shared by the element tests: a real `shmring::frames` peer on a real
//! socket path plays the other side.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::sync::Once;
use std::time::{Duration, Instant};

use gst::prelude::*;
use shmring::frames::{self, FrameConfig, FrameMeta};
use shmring::handshake::Listener;

/// Patience of every blocking call in the tests.
pub const T: Option<Duration> = Some(Duration::from_secs(10));

/// Initialises GStreamer and registers the elements (without the `.so`).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().expect("gst init");
        gstshmring::register_static().expect("register elements");
    });
}

/// A fresh socket path for `tag`.
pub fn sock(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-gst-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir.join("s.sock")
}

/// A producer serving one `shmringsrc` from this process: bound at once, served
/// on a thread (the src connects in its `start`).
pub fn serve(path: &Path) -> std::thread::JoinHandle<(Listener, frames::FrameSender)> {
    let listener = Listener::bind(path, &Default::default()).expect("bind");
    std::thread::spawn(move || {
        let c = listener.accept(T).expect("accept");
        let tx = frames::serve(c, &FrameConfig::new(32, 4096)).expect("serve");
        (listener, tx)
    })
}

/// `shmringsrc <props> ! appsink`.
pub fn src_pipeline(path: &Path, props: &str) -> (gst::Pipeline, gst_app::AppSink) {
    let pipeline = gst::parse::launch(&format!(
        "shmringsrc name=src socket-path={} {props} ! appsink name=out sync=false",
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
pub fn retry(
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

/// Sends a frame of `len` bytes `byte` with `pts` (ns) and a 1 µs duration.
pub fn send(tx: &mut frames::FrameSender, byte: u8, len: usize, pts: u64) {
    send_meta(
        tx,
        byte,
        len,
        &FrameMeta {
            pts,
            duration: 1000,
            ..FrameMeta::default()
        },
    )
}

/// Sends a frame of `len` bytes `byte` with `meta`.
pub fn send_meta(tx: &mut frames::FrameSender, byte: u8, len: usize, meta: &FrameMeta) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        tx.reclaim(|_| {}).expect("reclaim");
        if let Some(mut lease) = tx.try_lease() {
            lease.as_mut()[..len].fill(byte);
            match tx.send_lease(lease, len, meta) {
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

/// The line of /proc/self/maps whose mapping holds `ptr` (address range,
/// permissions, offset, device, inode, name).
pub fn mapping_of(ptr: usize) -> String {
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

/// The stats of a `shmringsink`: (zero-copy, copied, dropped).
pub fn stats(sink: &gst::Element) -> (u64, u64, u64) {
    let s = sink.property::<gst::Structure>("stats");
    let g = |k: &str| s.get::<u64>(k).expect("stats field");
    assert_eq!(g("frames"), g("zero-copy") + g("copied"));
    (g("zero-copy"), g("copied"), g("dropped"))
}

/// Runs `pipeline` to EOS (or fails after 20 s with the bus error).
pub fn run_to_eos(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).expect("playing");
    wait_eos(pipeline);
    pipeline.set_state(gst::State::Null).expect("null");
}

/// Waits for EOS on the bus (or fails after 20 s with the bus error).
pub fn wait_eos(pipeline: &gst::Pipeline) {
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
}

/// Parses a pipeline description into a `gst::Pipeline`.
pub fn pipeline(desc: &str) -> gst::Pipeline {
    gst::parse::launch(desc)
        .expect("pipeline")
        .downcast::<gst::Pipeline>()
        .expect("a pipeline")
}
