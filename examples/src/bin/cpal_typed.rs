//! The simplest audio path: a typed ring of interleaved `f32` samples between
//! a cpal input callback and a reader process, no frame stream, no GStreamer.
//!
//! ```text
//! cpal_typed read --socket /tmp/pcm.sock --seconds 5 &   # listens, prints levels
//!                                        [--out FILE]      # and keeps the samples
//! cpal_typed capture --socket /tmp/pcm.sock              # cpal input -> Producer<f32>
//! ```
//!
//! In the callback, `push_slice` copies what fits (no allocation, no lock, a
//! wake-up write only if the reader sleeps) and the rest is dropped and
//! counted. `capture` stops when the reader goes away (seen by its main
//! thread on the link socket) or on SIGINT/SIGTERM;
//! `read` prints per-second peak levels and, at the end, what it received
//! (with `--out FILE`, it also writes every sample it received to FILE, raw
//! little-endian `f32`, in the order received).

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use shmring::handshake::{self, ListenOptions, Listener};
use shmring::Config;
use shmring_examples::device::{self, Direction};

/// Both sides agree on the element type and this name.
fn config() -> Config {
    // 2^16 samples: about 0.7 s of 48 kHz stereo.
    Config::new(1 << 16).type_name("shmring-example-f32-interleaved")
}

fn main() {
    shmring_examples::stop::install();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let socket = args
        .iter()
        .position(|a| a == "--socket")
        .and_then(|i| args.get(i + 1));
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<u64>().ok());
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1));
    let result = match (args.first().map(String::as_str), socket) {
        (Some("read"), Some(s)) => read(s, seconds, out.map(String::as_str)),
        (Some("capture"), Some(s)) => capture(s),
        _ => Err("usage: cpal_typed read|capture --socket PATH [--seconds N] [--out FILE]".into()),
    };
    if let Err(e) = result {
        eprintln!("cpal_typed: {e}");
        std::process::exit(1);
    }
}

fn read(
    socket: &str,
    seconds: Option<u64>,
    out: Option<&str>,
) -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind(socket, &ListenOptions::default())?;
    eprintln!("cpal_typed: waiting for a producer on {socket}");
    let mut rx = listener.accept_consumer::<f32>(&config())?;
    let start = Instant::now();
    let (mut total, mut peak, mut second) = (0u64, 0f32, 1);
    let mut buf = vec![0f32; 4096];
    let mut kept: Vec<u8> = Vec::new();
    loop {
        if shmring_examples::stop::requested()
            || seconds.is_some_and(|s| start.elapsed().as_secs() >= s)
        {
            break;
        }
        match rx.pop_slice_blocking(&mut buf, Some(Duration::from_millis(100))) {
            Ok(n) => {
                total += n as u64;
                peak = buf[..n].iter().fold(peak, |p, s| p.max(s.abs()));
                if out.is_some() {
                    kept.extend(buf[..n].iter().flat_map(|s| s.to_le_bytes()));
                }
            }
            Err(shmring::Error::Timeout) => {}
            Err(shmring::Error::Disconnected | shmring::Error::PeerDied) => break,
            Err(e) => return Err(e.into()),
        }
        if start.elapsed().as_secs() >= second {
            eprintln!("cpal_typed: {second} s: peak {peak:.3}");
            (peak, second) = (0.0, second + 1);
        }
    }
    eprintln!("cpal_typed: received {total} samples");
    if let Some(path) = out {
        std::fs::write(path, &kept)?;
    }
    Ok(())
}

fn capture(socket: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut tx = handshake::connect_producer::<f32>(socket, &config())?;
    // Watched here, not in the callback (that would be a syscall per period).
    let link = tx.link_fd().try_clone_to_owned()?;
    let device = device::find(Direction::Input, None)?;
    let config = cpal::StreamConfig {
        channels: 2,
        sample_rate: 48_000,
        buffer_size: cpal::BufferSize::Default,
    };
    let (sent, dropped) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let gone = Arc::new(AtomicBool::new(false));
    let stream = {
        let (sent, dropped, gone) = (sent.clone(), dropped.clone(), gone.clone());
        device.build_input_stream(
            &config,
            move |data: &[f32], _: &cpal::InputCallbackInfo| {
                // The whole real-time path: copy what fits, count the rest.
                let n = match tx.push_slice(data) {
                    Ok(n) => n,
                    Err(_) => {
                        gone.store(true, Ordering::Relaxed);
                        0
                    }
                };
                sent.fetch_add(n as u64, Ordering::Relaxed);
                dropped.fetch_add((data.len() - n) as u64, Ordering::Relaxed);
            },
            |e| eprintln!("cpal_typed: stream error: {e}"),
            None,
        )?
    };
    stream.play()?;
    while !shmring_examples::stop::requested() && !gone.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
        let mut p = libc::pollfd {
            fd: link.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for an fd we own; a zero timeout only
        // reads its state.
        let r = unsafe { libc::poll(&mut p, 1, 0) };
        if r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0 {
            eprintln!("cpal_typed: the reader went away");
            break;
        }
    }
    drop(stream);
    eprintln!(
        "cpal_typed: sent {} samples, dropped {}",
        sent.load(Ordering::Relaxed),
        dropped.load(Ordering::Relaxed)
    );
    Ok(())
}
