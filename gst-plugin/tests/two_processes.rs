//! Two real `gst-launch-1.0` processes joined by shmringsink → shmringsrc, as a
//! user would run them: what the receiver writes to a file must be byte for
//! byte what the same source writes to a file in one process, with the caps
//! and timestamps of the source.
//!
//! The plugin is loaded from `SHMRING_GST_PLUGIN_DIR`, else from the target
//! directory these tests were built in (`cargo build -p gst-plugin-shmring`
//! puts `libgstshmring.so` there; `make test` builds it first).

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::gst_launch;

fn check(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn temp(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shmring-gst2-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}

/// Runs `source ! shmringsink` and `shmringsrc ! identity ! filesink` as two
/// processes, and `source ! filesink` as the reference; returns the
/// receiver's verbose output.
fn through_two_processes(tag: &str, source: &str) -> String {
    let dir = temp(tag);
    let sock = dir.join("s.sock");
    let out = dir.join("out.raw");
    let reference = dir.join("ref.raw");

    check(
        gst_launch(&format!(
            "-q {source} ! filesink location={}",
            reference.display()
        ))
        .output()
        .expect("reference gst-launch"),
        "reference pipeline",
    );
    let sender = gst_launch(&format!(
        "-q {source} ! shmringsink socket-path={}",
        sock.display()
    ))
    .spawn()
    .expect("sender gst-launch");
    let receiver = gst_launch(&format!(
        "-v shmringsrc socket-path={} ! identity silent=false ! filesink location={}",
        sock.display(),
        out.display()
    ))
    .spawn()
    .expect("receiver gst-launch");
    check(sender.wait_with_output().expect("sender"), "sender");
    let log = check(receiver.wait_with_output().expect("receiver"), "receiver");

    let a = std::fs::read(&reference).expect("reference file");
    let b = std::fs::read(&out).expect("received file");
    assert!(!a.is_empty());
    assert_eq!(a.len(), b.len(), "{tag}: byte count");
    assert!(a == b, "{tag}: received bytes differ from the source's");
    let _ = std::fs::remove_dir_all(&dir);
    log
}

/// The pts of every buffer `identity silent=false` reported, in ns.
fn pts_of(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("chain"))
        .filter_map(|l| {
            let t = l.split("pts: ").nth(1)?.split(',').next()?;
            let mut parts = t.split(':');
            let h: u64 = parts.next()?.trim().parse().ok()?;
            let m: u64 = parts.next()?.parse().ok()?;
            let s: f64 = parts.next()?.parse().ok()?;
            Some(h * 3_600_000_000_000 + m * 60_000_000_000 + (s * 1e9).round() as u64)
        })
        .collect()
}

#[test]
fn video_in_several_formats_arrives_byte_exact_with_caps_and_timestamps() {
    for (tag, caps, frames) in [
        (
            "rgba",
            "video/x-raw,format=RGBA,width=320,height=240,framerate=30/1",
            60,
        ),
        (
            "i420",
            "video/x-raw,format=I420,width=176,height=144,framerate=25/1",
            50,
        ),
        (
            "gray",
            "video/x-raw,format=GRAY8,width=64,height=48,framerate=10/1",
            30,
        ),
    ] {
        let log = through_two_processes(
            tag,
            &format!("videotestsrc num-buffers={frames} pattern=smpte ! {caps}"),
        );
        let width = caps
            .split("width=")
            .nth(1)
            .and_then(|s| s.split(',').next());
        assert!(
            log.contains(&format!("width=(int){}", width.expect("width"))),
            "{tag}: caps reached the receiver\n{log}"
        );
        let fps: u64 = caps
            .split("framerate=")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .and_then(|s| s.parse().ok())
            .expect("fps");
        let pts = pts_of(&log);
        assert_eq!(pts.len(), frames, "{tag}: buffers seen by identity");
        for (i, p) in pts.iter().enumerate() {
            let want = i as u64 * 1_000_000_000 / fps;
            assert!(
                p.abs_diff(want) <= 1,
                "{tag}: frame {i} pts {p}, want {want}"
            );
        }
    }
}

#[test]
fn audio_arrives_byte_exact() {
    let log = through_two_processes(
        "audio",
        "audiotestsrc num-buffers=100 samplesperbuffer=480 wave=sine ! audio/x-raw,format=S16LE,rate=48000,channels=2,layout=interleaved",
    );
    assert!(log.contains("audio/x-raw"), "{log}");
    let pts = pts_of(&log);
    assert_eq!(pts.len(), 100);
    // 480 samples at 48 kHz: 10 ms per buffer.
    assert!(pts
        .iter()
        .enumerate()
        .all(|(i, p)| *p == i as u64 * 10_000_000));
}

/// A live stream between two processes, timestamped on the receiver's
/// clock: all 45 frames arrive in order; the frames the sender made before
/// the receiver was playing are late (pts 0), and only those, at the start;
/// every frame after them keeps the sender's 30 fps cadence to the
/// nanosecond. The order of the processes needs no sleep: the sender waits
/// for its first consumer (`wait-for-connection`, the default) and the
/// receiver for the sender's socket. How many frames come late depends on
/// how fast the receiver reaches PLAYING, so it is not asserted; at least
/// two must be on time to check a cadence at all (the receiver has the 1.5
/// s of the stream to get there).
#[test]
fn live_video_keeps_its_cadence_on_the_receivers_clock() {
    let dir = temp("live");
    let sock = dir.join("s.sock");
    let receiver = gst_launch(&format!(
        "-v shmringsrc is-live=true socket-path={} ! identity silent=false ! fakesink sync=true",
        sock.display()
    ))
    .spawn()
    .expect("receiver gst-launch");
    let sender = gst_launch(&format!(
        "-q videotestsrc is-live=true num-buffers=45 ! video/x-raw,format=GRAY8,width=64,height=48,framerate=30/1 ! shmringsink socket-path={}",
        sock.display()
    ))
    .spawn()
    .expect("sender gst-launch");
    check(sender.wait_with_output().expect("sender"), "sender");
    let log = check(receiver.wait_with_output().expect("receiver"), "receiver");
    let _ = std::fs::remove_dir_all(&dir);

    let pts = pts_of(&log);
    assert_eq!(pts.len(), 45, "{log}");
    assert!(pts.windows(2).all(|w| w[0] <= w[1]), "{pts:?}");
    let late = pts.iter().take_while(|&&p| p == 0).count();
    let on_time = &pts[late..];
    assert!(
        on_time.iter().all(|&p| p > 0),
        "late frames after on-time ones: {pts:?}"
    );
    assert!(on_time.len() >= 2, "{late} of 45 frames late: {pts:?}");
    for w in on_time.windows(2) {
        let d = w[1] - w[0];
        assert!(
            d.abs_diff(33_333_333) <= 1,
            "frame interval {d} ns, not 1/30 s: {pts:?}"
        );
    }
}
