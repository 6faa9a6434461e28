//! `cpal_capture` and `cpal_playback` end to end, on ALSA with the project's
//! file/null PCM (`examples/alsa/asound.conf`, chosen through
//! `ALSA_CONFIG_PATH` for these processes only). Capture: a real cpal input
//! stream reads a fixture, the callback pushes it into shmring, and a real
//! `gst-launch-1.0 shmringsrc ! wavenc` in another process writes it out.
//! Playback: a real `gst-launch-1.0 … ! shmringsink` feeds `cpal_playback`,
//! whose cpal output stream writes a file.
//!
//! The plugin is loaded from `SHMRING_GST_PLUGIN_DIR`, else from the target
//! directory these tests were built in (`make test` builds it first).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn plugin_dir() -> PathBuf {
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

fn tmp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("shmring-cpal-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmp dir");
    d
}

/// A stereo f32 fixture: 440 Hz left, a 100 Hz → 4 kHz sweep right, with a
/// ramp so that a shifted, dropped or repeated period changes the bytes.
fn fixture(frames: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames * 8);
    let mut phase = 0.0f64;
    for i in 0..frames {
        let t = i as f64 / 48_000.0;
        let f = 100.0 + 3900.0 * i as f64 / frames as f64;
        phase += 2.0 * std::f64::consts::PI * f / 48_000.0;
        let l = (0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as f32;
        let r = (0.25 * phase.sin() + 1e-6 * i as f64) as f32;
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}

fn capture(sock: &Path, infile: Option<&Path>, args: &[&str]) -> Child {
    example(env!("CARGO_BIN_EXE_cpal_capture"), sock, infile, None, args)
}

/// Runs an example on the project's ALSA PCM: capture reads `infile`,
/// playback writes `outfile`.
fn example(
    exe: &str,
    sock: &Path,
    infile: Option<&Path>,
    outfile: Option<&Path>,
    args: &[&str],
) -> Child {
    let mut c = Command::new(exe);
    c.arg("--socket")
        .arg(sock)
        .args(args)
        .env(
            "ALSA_CONFIG_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("alsa/asound.conf"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (var, file) in [
        ("SHMRING_ALSA_INFILE", infile),
        ("SHMRING_ALSA_OUTFILE", outfile),
    ] {
        match file {
            Some(f) => c.env(var, f),
            None => c.env_remove(var),
        };
    }
    c.spawn().expect("spawn the example")
}

fn wait_for(path: &Path) {
    let t0 = Instant::now();
    while !path.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "no socket at {path:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn gst_launch(pipeline: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.env("GST_PLUGIN_PATH", plugin_dir())
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` up to `limit` (killing it after), returning its output.
fn finish(mut child: Child, limit: Duration) -> Output {
    let t0 = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// A child's stderr, read line by line on a thread as it comes: the test
/// waits for lines (states of the child), not for time.
struct Lines {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
}

impl Lines {
    fn of(child: &mut Child) -> Lines {
        use std::io::BufRead as _;
        let err = child.stderr.take().expect("piped stderr");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = seen.clone();
        let reader = std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                s.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Lines { seen, reader }
    }

    /// Lines so far that contain `pat`.
    fn count(&self, pat: &str) -> usize {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().filter(|l| l.contains(pat)).count()
    }

    /// Waits until `n` lines contain `pat`; fails the test after 20 s.
    fn wait_for(&self, pat: &str, n: usize) {
        let t0 = Instant::now();
        while self.count(pat) < n {
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "no {n} lines with {pat:?} in:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn text(&self) -> String {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Everything, once the child closed its stderr.
    fn finish(self) -> String {
        let Lines { seen, reader } = self;
        reader.join().expect("stderr reader");
        let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.join("\n")
    }
}

/// The sample bytes of a WAV file's data chunk.
fn wav_data(wav: &[u8]) -> &[u8] {
    let mut i = 12;
    while i + 8 <= wav.len() {
        let len = u32::from_le_bytes(wav[i + 4..i + 8].try_into().expect("4 bytes")) as usize;
        if &wav[i..i + 4] == b"data" {
            return &wav[i + 8..(i + 8 + len).min(wav.len())];
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk");
}

/// Counts reported by cpal_capture's last report line.
fn counts(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("frames captured"))
        .unwrap_or_else(|| panic!("no report in {stderr}"));
    let num = |before: &str| -> u64 {
        let head = &line[..line
            .find(before)
            .unwrap_or_else(|| panic!("{before} in {line}"))];
        head.split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{before} in {line}"))
    };
    (num(" frames captured"), num(" sent"), num(" dropped"))
}

#[test]
fn capture_feeds_wavenc_sample_for_sample() {
    const FRAMES: usize = 48_000;
    let dir = tmp("e2e");
    let (sock, infile, wav) = (
        dir.join("cap.sock"),
        dir.join("in.raw"),
        dir.join("out.wav"),
    );
    let want = fixture(FRAMES);
    std::fs::write(&infile, &want).expect("fixture");
    // 480-frame periods; 256 slots hold the whole second, so an unpaced
    // null PCM cannot outrun the reader.
    let cap = capture(
        &sock,
        Some(&infile),
        &[
            "--frames",
            &FRAMES.to_string(),
            "--buffer",
            "480",
            "--slots",
            "256",
        ],
    );
    wait_for(&sock);
    let rx = gst_launch(&format!(
        "shmringsrc socket-path={} ! wavenc ! filesink location={}",
        sock.display(),
        wav.display()
    ))
    .spawn()
    .expect("gst-launch");
    let rx = finish(rx, Duration::from_secs(30));
    let cap = finish(cap, Duration::from_secs(30));
    let cap_err = String::from_utf8_lossy(&cap.stderr);
    assert!(
        rx.status.success(),
        "receiver: {}\ncapture: {cap_err}",
        String::from_utf8_lossy(&rx.stderr)
    );
    assert!(cap.status.success(), "capture: {cap_err}");
    let got = std::fs::read(&wav).expect("wav");
    let data = wav_data(&got);
    assert_eq!(data.len(), want.len(), "sample count");
    assert!(data == want.as_slice(), "samples differ from the fixture");
    assert_eq!(counts(&cap_err), (FRAMES as u64, FRAMES as u64, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A reader killed mid-stream (checked to have died of the SIGKILL) is seen
/// as gone, and the next reader is served. Ordered by the capture's report
/// lines: the kill comes once reader 1 is connected, reader 2 starts once
/// reader 1 is reported gone.
#[test]
fn capture_survives_a_killed_reader_and_serves_the_next() {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tmp("kill");
    let sock = dir.join("cap.sock");
    // Zeros without end (no infile); periods with no reader are dropped.
    let mut cap = capture(&sock, None, &["--buffer", "480", "--no-wait"]);
    let lines = Lines::of(&mut cap);
    wait_for(&sock);
    let src = format!("shmringsrc socket-path={} ! fakesink", sock.display());
    let mut first = gst_launch(&src).spawn().expect("reader 1");
    lines.wait_for("connected", 1);
    first.kill().expect("SIGKILL reader 1");
    let status = first.wait().expect("reader 1");
    assert_eq!(status.signal(), Some(libc::SIGKILL), "reader 1: {status:?}");
    lines.wait_for("reader went away", 1);
    // A second reader attaches and gets 200 buffers.
    let second = gst_launch(&format!(
        "shmringsrc socket-path={} num-buffers=200 ! fakesink",
        sock.display()
    ))
    .spawn()
    .expect("reader 2");
    let second = finish(second, Duration::from_secs(20));
    // Reader 2 leaves after its 200 buffers: the capture sees it go too.
    lines.wait_for("reader went away", 2);
    // SIGTERM: the capture stops and prints its final counts.
    // SAFETY: plain kill(2) on our own child's pid.
    let rc = unsafe { libc::kill(cap.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0);
    let out = finish(cap, Duration::from_secs(10));
    let err = lines.finish();
    assert!(
        out.status.success(),
        "capture did not stop cleanly on SIGTERM: {:?}\n{err}",
        out.status
    );
    assert!(
        second.status.success(),
        "reader 2: {}\ncapture: {err}",
        String::from_utf8_lossy(&second.stderr)
    );
    // Reader 1 killed, reader 2 gone after its 200 buffers.
    assert_eq!(err.matches("reader went away").count(), 2, "{err}");
    assert_eq!(err.matches("connected").count(), 2, "{err}");
    let (captured, sent, dropped) = counts(&err);
    assert!(sent >= 200 * 480, "{err}");
    // Between reader 1's death and reader 2's arrival the callback had no
    // reader: those periods are dropped and counted.
    assert!(dropped > 0, "periods without a reader are counted: {err}");
    assert_eq!(captured, sent + dropped, "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shmringsink_feeds_playback_sample_for_sample() {
    let dir = tmp("playback");
    let (sock, reference, out) = (dir.join("p.sock"), dir.join("ref.raw"), dir.join("out.raw"));
    let source = "audiotestsrc num-buffers=100 samplesperbuffer=480 wave=sine freq=440 ! audio/x-raw,format=F32LE,rate=48000,channels=2";
    // The same source in one process, to a file: what playback must play.
    let r = gst_launch(&format!(
        "{source} ! filesink location={}",
        reference.display()
    ))
    .output()
    .expect("reference");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let sink = gst_launch(&format!(
        "{source} ! shmringsink socket-path={}",
        sock.display()
    ))
    .spawn()
    .expect("sender");
    wait_for(&sock);
    // The whole second fits in the ring and is queued before playback
    // starts: the unpaced null PCM cannot underrun before the end.
    let play = example(
        env!("CARGO_BIN_EXE_cpal_playback"),
        &sock,
        None,
        Some(&out),
        &["--ring", "2000", "--prefill", "1500"],
    );
    let play = finish(play, Duration::from_secs(30));
    let sink = finish(sink, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&play.stderr);
    assert!(play.status.success(), "playback: {err}");
    assert!(
        sink.status.success(),
        "sender: {}",
        String::from_utf8_lossy(&sink.stderr)
    );
    assert!(
        err.contains("played 48000 frames, 0 underrun frames"),
        "{err}"
    );
    let want = std::fs::read(&reference).expect("reference");
    let got = std::fs::read(&out).expect("played");
    assert_eq!(want.len(), 48_000 * 8);
    assert!(got.len() >= want.len(), "played {} bytes", got.len());
    assert!(got[..want.len()] == want[..], "played samples differ");
    // After the end, the callback writes silence until the program stops.
    assert!(
        got[want.len()..].iter().all(|&b| b == 0),
        "noise after the end"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The typed ring (`cpal_typed`): the reader receives the captured fixture
/// sample for sample, in order, with its peak.
#[test]
fn typed_ring_capture_reaches_the_reader() {
    let dir = tmp("typed");
    let (sock, infile) = (dir.join("t.sock"), dir.join("in.raw"));
    std::fs::write(&infile, fixture(4800)).expect("fixture");
    let exe = env!("CARGO_BIN_EXE_cpal_typed");
    let got = dir.join("got.raw");
    let mut reader = Command::new(exe);
    reader
        .args(["read", "--seconds", "1", "--out"])
        .arg(&got)
        .arg("--socket")
        .arg(&sock)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let reader = reader.spawn().expect("reader");
    wait_for(&sock);
    let mut cap = Command::new(exe);
    cap.args(["capture", "--socket"])
        .arg(&sock)
        .env(
            "ALSA_CONFIG_PATH",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("alsa/asound.conf"),
        )
        .env("SHMRING_ALSA_INFILE", &infile)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let cap = cap.spawn().expect("capture");
    let reader = finish(reader, Duration::from_secs(20));
    // The reader left after 1 s: the capture notices and stops by itself.
    let cap = finish(cap, Duration::from_secs(20));
    let (r, c) = (
        String::from_utf8_lossy(&reader.stderr),
        String::from_utf8_lossy(&cap.stderr),
    );
    assert!(reader.status.success(), "reader: {r}");
    assert!(cap.status.success(), "capture: {c}");
    assert!(
        r.contains("peak 0.500"),
        "the fixture's 0.5 peak arrived: {r}"
    );
    let received: u64 = r
        .lines()
        .find_map(|l| l.strip_prefix("cpal_typed: received "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{r}"));
    assert!(received >= 9600, "{r}");
    assert!(c.contains("sent "), "{c}");
    // Sample for sample: the fixture (a ramp on the right channel, so a
    // lost, repeated or reordered sample shows), in order, first. The ring
    // holds the whole fixture: none of it can be dropped. (What the file PCM
    // delivers past the end of its file is ALSA's business: not checked.)
    let got = std::fs::read(&got).expect("received samples");
    let want = fixture(4800);
    assert_eq!(
        got.len() as u64,
        received * 4,
        "bytes written by the reader"
    );
    assert!(got[..want.len()] == want[..], "the fixture arrived altered");
    let _ = std::fs::remove_dir_all(&dir);
}
