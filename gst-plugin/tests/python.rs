//! The Python examples (`examples/python/`, PyGObject and NumPy, run with
//! Debian's `/usr/bin/python3`) against the Rust plugin in `gst-launch-1.0`
//! processes: the consumer's NumPy frames must be the source's pixels exactly
//! (padded rows included), and every byte the producer's NumPy frames carry
//! must arrive, with caps and timestamps.

mod common;
mod procs;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use procs::{run, temp_dir, Proc};

const LIMIT: Duration = Duration::from_secs(120);
const PYTHON: &str = "/usr/bin/python3";

fn script(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/python")
        .join(name);
    assert!(p.exists(), "{}", p.display());
    p
}

fn python(name: &str, args: &[String]) -> Command {
    let mut c = Command::new(PYTHON);
    c.env("GST_PLUGIN_PATH", common::plugin_dir())
        .arg(script(name))
        .args(args);
    c
}

fn launch(desc: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.env("GST_PLUGIN_PATH", common::plugin_dir())
        .args(procs::launch_args(desc));
    c
}

/// `videotestsrc ! caps ! shmringsink` in gst-launch, the Python consumer on
/// the other side; returns the consumer's raw output, its stdout and the
/// source's frames written in one process.
fn consume(tag: &str, caps: &str, format: &str, frames: usize) -> (Vec<u8>, String, Vec<u8>) {
    let dir = temp_dir(&format!("py-consumer-{tag}"));
    let (sock, out, reference) = (dir.join("s.sock"), dir.join("out.raw"), dir.join("ref.raw"));
    let source = format!("videotestsrc num-buffers={frames} pattern=ball ! {caps}");
    run(
        "reference",
        &mut launch(&format!(
            "-q {source} ! filesink location={}",
            reference.display()
        )),
        LIMIT,
    )
    .ok("reference");
    let producer = Proc::spawn(
        "gst-launch producer",
        &mut launch(&format!(
            "-q {source} ! shmringsink socket-path={}",
            sock.display()
        )),
    );
    let consumer = Proc::spawn(
        "consumer.py",
        &mut python(
            "consumer.py",
            &[
                "--socket".into(),
                sock.display().to_string(),
                "--format".into(),
                format.into(),
                "--raw".into(),
                out.display().to_string(),
            ],
        ),
    )
    .wait(LIMIT)
    .ok("consumer.py");
    producer.wait(LIMIT).ok("gst-launch producer");
    let got = std::fs::read(&out).expect("consumer's file");
    let want = std::fs::read(&reference).expect("reference");
    let _ = std::fs::remove_dir_all(&dir);
    (got, consumer.stdout, want)
}

#[test]
fn consumer_reads_rgba_frames_into_numpy_arrays_exactly() {
    let frames = 20;
    let (got, stdout, want) = consume(
        "rgba",
        "video/x-raw,format=RGBA,width=64,height=48,framerate=30/1",
        "RGBA",
        frames,
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains("shape (48, 64, 4)"))
            .count(),
        frames,
        "one (48, 64, 4) array per frame\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("received {frames} frames")),
        "{stdout}"
    );
    assert_eq!(got.len(), want.len(), "bytes");
    assert!(
        got == want,
        "the arrays hold other pixels than the source's"
    );
}

#[test]
fn consumer_drops_row_padding_of_rgb_frames() {
    // RGB at width 63: 189 bytes of pixels in rows of 192 (GStreamer pads to 4).
    let (w, h, frames) = (63usize, 47usize, 10usize);
    let (got, stdout, want) = consume(
        "rgb",
        &format!("video/x-raw,format=RGB,width={w},height={h},framerate=30/1"),
        "RGB",
        frames,
    );
    assert_eq!(
        stdout
            .lines()
            .filter(|l| l.contains(&format!("shape ({h}, {w}, 3)")))
            .count(),
        frames,
        "{stdout}"
    );
    let (row, stride) = (w * 3, (w * 3).div_ceil(4) * 4);
    assert_eq!(want.len(), frames * h * stride, "the source pads its rows");
    let unpadded: Vec<u8> = want
        .chunks(stride)
        .flat_map(|r| &r[..row])
        .copied()
        .collect();
    assert_eq!(got.len(), unpadded.len(), "bytes");
    assert!(
        got == unpadded,
        "the arrays hold other pixels than the source's"
    );
}

/// The producer's frame `i`, as `pattern()` in producer.py computes it.
fn pattern(i: usize, h: usize, w: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(h * w * 4);
    for y in 0..h {
        for x in 0..w {
            f.extend_from_slice(&[
                ((x + i) % 256) as u8,
                ((y + 2 * i) % 256) as u8,
                ((x + y + 3 * i) % 256) as u8,
                255,
            ]);
        }
    }
    f
}

#[test]
fn producer_numpy_frames_arrive_exactly_with_caps_and_timestamps() {
    let (w, h, fps, frames) = (64usize, 48usize, 30u64, 30usize);
    let dir = temp_dir("py-producer");
    let (sock, out) = (dir.join("s.sock"), dir.join("out.raw"));
    let producer = Proc::spawn(
        "producer.py",
        &mut python(
            "producer.py",
            &[
                "--socket".into(),
                sock.display().to_string(),
                "--frames".into(),
                frames.to_string(),
                "--width".into(),
                w.to_string(),
                "--height".into(),
                h.to_string(),
                "--fps".into(),
                fps.to_string(),
            ],
        ),
    );
    let consumer = Proc::spawn(
        "gst-launch consumer",
        &mut launch(&format!(
            "-v shmringsrc socket-path={} timeout=60000 ! identity silent=false ! filesink location={}",
            sock.display(),
            out.display()
        )),
    );
    let log = consumer.wait(LIMIT).ok("gst-launch consumer").stdout;
    let sent = producer.wait(LIMIT).ok("producer.py").stdout;
    assert!(sent.contains(&format!("sent {frames} frames")), "{sent}");
    assert!(
        log.contains(&format!(
            "caps = video/x-raw, format=(string)RGBA, width=(int){w}, height=(int){h}, framerate=(fraction){fps}/1"
        )),
        "{log}"
    );
    let got = std::fs::read(&out).expect("received file");
    let frame = w * h * 4;
    assert_eq!(got.len(), frames * frame, "bytes");
    for (i, f) in got.chunks(frame).enumerate() {
        assert!(
            f == pattern(i, h, w),
            "frame {i} differs from the NumPy frame sent"
        );
    }
    let pts: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("chain"))
        .filter_map(|l| l.split("pts: ").nth(1)?.split(',').next())
        .collect();
    let want: Vec<String> = (0..frames as u64)
        .map(|i| {
            let ns = i * 1_000_000_000 / fps;
            format!("0:00:{:02}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000)
        })
        .collect();
    assert_eq!(pts, want, "the pts producer.py stamped (n / fps)");
    let _ = std::fs::remove_dir_all(&dir);
}
