//! Two processes, one frame stream: the producer serves a socket path and
//! sends caps, a segment, frames from 1 byte to 8 MiB (those bigger than a
//! slot cross as sealed blobs) and end-of-stream; the consumer, a copy of
//! this program, connects, reads until EOS and prints what it got. Both fold
//! every frame into an order-sensitive checksum; the producer checks that
//! they match.
//!
//! ```text
//! frame_stream [--frames N] [--socket PATH]
//! ```

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use shmring::frames::{self, FrameConfig, FrameMeta, Received, SegmentInfo};
use shmring::handshake::{ListenOptions, Listener};
use shmring_examples::{checksum_step, CHECKSUM_INIT};

const T: Option<Duration> = Some(Duration::from_secs(10));

/// Size of frame `i`: mostly small, every 16th one bigger than a slot.
fn size_of(i: u64) -> usize {
    match i % 16 {
        15 => 8 << 20,
        7 => 100_000,
        k => 1 + (k as usize * 1013) % 60_000,
    }
}

fn checksum(sum: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(sum, |s, &b| checksum_step(s, u64::from(b)))
}

fn consumer(path: &str) -> shmring::Result<()> {
    let mut rx = frames::connect(path, &FrameConfig::consumer())?;
    let (mut n, mut bytes, mut blobs, mut sum) = (0u64, 0u64, 0u64, CHECKSUM_INIT);
    let mut caps = String::new();
    loop {
        match rx.recv(T)? {
            Received::Caps(c) => caps = c,
            Received::Frame(f) => {
                sum = checksum(sum, f.bytes());
                bytes += f.bytes().len() as u64;
                blobs += u64::from(f.is_immutable());
                n += 1;
            } // dropped here: its slot (or blob) goes back to the producer
            Received::Eos => break,
            _ => {}
        }
    }
    println!(
        "consumer: {n} frames, {bytes} bytes ({blobs} as blobs), caps {caps}, checksum {sum:#x}"
    );
    Ok(())
}

fn producer(frames_n: u64, socket: PathBuf) -> Result<(), String> {
    let listener = Listener::bind(&socket, &ListenOptions::default()).map_err(|e| e.to_string())?;
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--consume", &socket.display().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| e.to_string())?;
    let conn = listener.accept(T).map_err(|e| e.to_string())?;
    // 8 slots of 64 KiB; anything bigger goes as a blob.
    let mut tx = frames::serve(conn, &FrameConfig::new(8, 64 << 10)).map_err(|e| e.to_string())?;
    let e = |e: shmring::Error| e.to_string();
    tx.send_caps("application/x-shmring-demo").map_err(e)?;
    tx.send_segment(&SegmentInfo::time()).map_err(e)?;
    let mut sum = CHECKSUM_INIT;
    for i in 0..frames_n {
        let data: Vec<u8> = (0..size_of(i)).map(|k| (k as u64 ^ i) as u8).collect();
        sum = checksum(sum, &data);
        let meta = FrameMeta {
            pts: i * 20_000_000,
            ..FrameMeta::default()
        };
        tx.send_bytes(&data, &meta, T).map_err(e)?;
    }
    tx.finish(T).map_err(e)?;
    drop(tx);
    let out = child.stdout.take().ok_or("no stdout")?;
    let line = BufReader::new(out)
        .lines()
        .next()
        .and_then(|l| l.ok())
        .unwrap_or_default();
    let status = child.wait().map_err(|e| e.to_string())?;
    println!("{line}");
    if !status.success() {
        return Err(format!("consumer failed: {status}"));
    }
    if !line.contains(&format!("{frames_n} frames"))
        || !line.contains(&format!("checksum {sum:#x}"))
    {
        return Err(format!(
            "consumer saw something else than the {frames_n} frames sent (checksum {sum:#x})"
        ));
    }
    println!("producer: {frames_n} frames sent, checksums match");
    Ok(())
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let (mut frames_n, mut socket) = (200u64, None);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--consume" => {
                let path = args.next().unwrap_or_default();
                return match consumer(&path) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("frame_stream consumer: {e}");
                        ExitCode::FAILURE
                    }
                };
            }
            "--frames" => frames_n = args.next().and_then(|v| v.parse().ok()).unwrap_or(frames_n),
            "--socket" => socket = args.next().map(PathBuf::from),
            other => {
                eprintln!("usage: frame_stream [--frames N] [--socket PATH] (not {other})");
                return ExitCode::from(2);
            }
        }
    }
    let socket = socket.unwrap_or_else(|| {
        std::env::temp_dir().join(format!("shmring-frame-stream-{}.sock", std::process::id()))
    });
    let r = producer(frames_n, socket.clone());
    let _ = std::fs::remove_file(&socket);
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("frame_stream: {e}");
            ExitCode::FAILURE
        }
    }
}
