//! Helpers shared by the element tests: a real `shmring::frames` peer on a real
//! socket path plays the other side.

#![allow(dead_code)] // each test binary uses its own subset

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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
                Err(e) if matches!(e.error, shmring::Error::Full) => {}
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

/// The directory holding `libgstshmring.so` for child `gst-launch-1.0`
/// processes: `SHMRING_GST_PLUGIN_DIR`, else the target directory these tests
/// were built in (`cargo build -p gst-plugin-shmring` puts the plugin there;
/// `make test` builds it first).
pub fn plugin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SHMRING_GST_PLUGIN_DIR") {
        return d.into();
    }
    // target/<profile>/deps/<test binary> -> target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf();
    assert!(
        dir.join("libgstshmring.so").exists(),
        "{}/libgstshmring.so is missing: run `cargo build -p gst-plugin-shmring` (make test does)",
        dir.display()
    );
    dir
}

/// `gst-launch-1.0 <args>` with the plugin on its path, stdout and stderr piped.
pub fn gst_launch(args: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.env("GST_PLUGIN_PATH", plugin_dir())
        .args(args.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Number of open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count()
}

// ---- Fan-out: consumer processes and the sink's per-consumer stats. ----

/// 100 small live frames per second: cheap, so that rates are the sink's
/// doing and not the machine's.
pub const SOURCE: &str = "videotestsrc is-live=true pattern=ball ! video/x-raw,format=GRAY8,width=64,height=48,framerate=100/1";

/// Consumer processes, killed (even when stopped) when the test ends.
#[derive(Default)]
pub struct Children(pub Vec<Child>);

impl Children {
    pub fn spawn_src(&mut self, path: &std::path::Path) -> u32 {
        let child = gst_launch(&format!(
            "shmringsrc socket-path={} ! fakesink sync=false",
            path.display()
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("gst-launch consumer");
        let pid = child.id();
        self.0.push(child);
        pid
    }

    pub fn signal(&self, pid: u32, sig: i32) {
        // SAFETY: kill(2) on a child of ours that has not been reaped yet
        // (reaping happens only in `kill`/`drop` below), so the pid is ours.
        let r = unsafe { libc::kill(pid as i32, sig) };
        assert_eq!(r, 0, "kill({pid}, {sig})");
    }

    /// SIGKILLs `pid` and reaps it.
    pub fn kill(&mut self, pid: u32) {
        if let Some(i) = self.0.iter().position(|c| c.id() == pid) {
            let mut c = self.0.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `SOURCE ! shmringsink <props>` in this process, playing.
pub fn sink_pipeline(path: &std::path::Path, props: &str) -> (gst::Pipeline, gst::Element) {
    let p = pipeline(&format!(
        "{SOURCE} ! shmringsink name=sink socket-path={} {props}",
        path.display()
    ));
    p.set_state(gst::State::Playing).expect("playing");
    let sink = p.by_name("sink").expect("sink");
    (p, sink)
}

#[derive(Debug, Clone, Copy, Default)]
pub struct PeerStats {
    pub frames: u64,
    pub drops: u64,
    pub held: u64,
}

pub fn stat(sink: &gst::Element, field: &str) -> u64 {
    let s = sink.property::<gst::Structure>("stats");
    s.get::<u64>(field)
        .unwrap_or_else(|_| panic!("{field} in {s}"))
}

/// Per consumer pid, its counters.
pub fn peers(sink: &gst::Element) -> std::collections::HashMap<u32, PeerStats> {
    let s = sink.property::<gst::Structure>("stats");
    let arr = s.get::<gst::Array>("peers").expect("peers");
    arr.iter()
        .map(|v| {
            let p = v.get::<gst::Structure>().expect("a structure");
            let g = |k: &str| p.get::<u64>(k).expect(k);
            (
                p.get::<i32>("pid").expect("pid") as u32,
                PeerStats {
                    frames: g("frames"),
                    drops: g("drops"),
                    held: g("held"),
                },
            )
        })
        .collect()
}

pub fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until `pids` are all served and have each received a few frames.
pub fn wait_streaming(sink: &gst::Element, pids: &[u32]) {
    wait_until("consumers streaming", Duration::from_secs(10), || {
        let p = peers(sink);
        pids.iter()
            .all(|pid| p.get(pid).is_some_and(|s| s.frames >= 10))
    });
}

/// Frames each of `pids` got, and frames the sink sent at all, during `d`.
pub fn rates(sink: &gst::Element, pids: &[u32], d: Duration) -> (Vec<u64>, u64) {
    let (p0, f0) = (peers(sink), stat(sink, "frames"));
    std::thread::sleep(d);
    let (p1, f1) = (peers(sink), stat(sink, "frames"));
    let got = pids
        .iter()
        .map(|pid| {
            let a = p0.get(pid).map_or(0, |s| s.frames);
            p1.get(pid).map_or(a, |s| s.frames) - a
        })
        .collect();
    (got, f1 - f0)
}

/// A deterministic generator for kill times and victims.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}
