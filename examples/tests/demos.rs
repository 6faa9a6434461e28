//! Runs the demo programs as `make demo` does (real processes, real socket
//! paths) on smaller workloads, and checks what they print: every item
//! arrived, in order, with the producer's checksum.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run_stream_demo(extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_stream_demo"))
        .args(["--items", "1000000"])
        .args(extra)
        .output()
        .expect("run stream_demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "stream_demo failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("checksums match"), "{stdout}");
    assert!(stdout.contains("received 1000000 items"), "{stdout}");
}

#[test]
fn stream_demo_eventfd() {
    run_stream_demo(&[]);
}

#[test]
fn stream_demo_pipe_item_by_item() {
    run_stream_demo(&["--pipe", "--batch", "1", "--capacity", "64"]);
}

/// Parses `<prefix>... pid P ...: N items, checksum C` style lines into pid -> (items, checksum).
fn field<'a>(line: &'a str, before: &str) -> Option<&'a str> {
    let rest = &line[line.find(before)? + before.len()..];
    rest.split([' ', ',', ':']).find(|s| !s.is_empty())
}

#[test]
fn mio_consumer_serves_three_producers() {
    let dir = std::env::temp_dir().join(format!("shmring-demo-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("mio.sock");
    let consumer = Command::new(env!("CARGO_BIN_EXE_mio_consumer"))
        .arg(&sock)
        .args(["--expect", "3"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mio_consumer");
    let producers: Vec<_> = (0..3)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_mio_producer"))
                .arg(&sock)
                .args(["--items", &(200_000 + i * 1000).to_string()])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn mio_producer")
        })
        .collect();

    let mut sent = HashMap::new();
    for p in producers {
        let out = p.wait_with_output().expect("producer output");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "producer failed: {stdout}");
        let line = stdout
            .lines()
            .find(|l| l.contains("pushed"))
            .expect("report");
        let pid: u32 = field(line, "pid")
            .and_then(|s| s.parse().ok())
            .expect("pid");
        let items = field(line, "pushed").expect("items").to_string();
        let sum = field(line, "checksum").expect("checksum").to_string();
        sent.insert(pid, (items, sum));
    }

    // The consumer exits on its own after the third producer's hang-up.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut consumer = consumer;
    while consumer.try_wait().expect("try_wait").is_none() {
        assert!(Instant::now() < deadline, "mio_consumer did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = consumer.wait_with_output().expect("consumer output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "mio_consumer failed:\n{stdout}");
    let finished: Vec<_> = stdout.lines().filter(|l| l.contains("finished:")).collect();
    assert_eq!(finished.len(), 3, "{stdout}");
    for line in finished {
        let pid: u32 = field(line, "producer pid")
            .and_then(|s| s.parse().ok())
            .expect("pid");
        let (items, sum) = sent.get(&pid).expect("a producer we started");
        assert_eq!(field(line, "finished"), Some(items.as_str()), "{line}");
        assert_eq!(field(line, "checksum"), Some(sum.as_str()), "{line}");
        assert!(line.contains("in order: yes"), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `make soak` on a short run: children killed at random, nothing lost, no
/// leak in the long-lived process.
#[test]
fn soak_short_run_loses_nothing() {
    let out = Command::new(env!("CARGO_BIN_EXE_soak"))
        .args(["--seconds", "3"])
        .output()
        .expect("run soak");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "soak failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" 0 items lost, 0 leaks"), "{stdout}");
    assert!(!stdout.contains(" 0 kills survived"), "{stdout}");
}

#[test]
fn frame_stream_crosses_every_size_and_ends_with_eos() {
    let out = Command::new(env!("CARGO_BIN_EXE_frame_stream"))
        .args(["--frames", "64"])
        .output()
        .expect("run frame_stream");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "frame_stream failed:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains("consumer: 64 frames"), "{stdout}");
    assert!(stdout.contains("(8 as blobs)"), "{stdout}");
    assert!(stdout.contains("checksums match"), "{stdout}");
}
