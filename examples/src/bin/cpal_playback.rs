//! Plays a shmring frame stream (from a `shmringsink`) through cpal. A reader
//! thread takes frames from the stream and queues their samples in a typed
//! shmring ring (`channel::pair::<f32>`); the cpal output callback only pops
//! from that ring, filling with silence (counted as underrun) when it is
//! empty, so it never waits for the other process.
//!
//! ```text
//! gst-launch-1.0 audiotestsrc ! audioconvert ! audio/x-raw,format=F32LE ! shmringsink socket-path=/tmp/out.sock &
//! cpal_playback --socket /tmp/out.sock
//! ```
//!
//! Options: `--device NAME` (default: the default output device), `--buffer
//! FRAMES` (period size; default: the device's), `--ring MS` (queue length,
//! 500), `--prefill MS` (queued before playback starts, 100). It stops at the
//! stream's EOS (after playing what is queued), when the sink goes away, or on
//! SIGINT / SIGTERM, and prints what it played and the underruns.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use shmring::channel::{self, Producer};
use shmring::frames::{self, FrameConfig, Received};
use shmring::Config;
use shmring_examples::device::{self, Direction};
use shmring_examples::playback::{parse_audio_caps, AudioFormat, Playback, PlaybackStats};

struct Args {
    socket: String,
    device: Option<String>,
    buffer: Option<u32>,
    ring_ms: u64,
    prefill_ms: u64,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        socket: String::new(),
        device: None,
        buffer: None,
        ring_ms: 500,
        prefill_ms: 100,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--socket" => a.socket = value()?,
            "--device" => a.device = Some(value()?),
            "--buffer" => a.buffer = Some(num(value()?)? as u32),
            "--ring" => a.ring_ms = num(value()?)?.max(10),
            "--prefill" => a.prefill_ms = num(value()?)?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.socket.is_empty() {
        return Err("--socket PATH is required".into());
    }
    Ok(a)
}

fn main() {
    shmring_examples::stop::run_main("cpal_playback", parse_args, run);
}

/// Queues the samples of `bytes` (F32LE, from shared memory: any alignment).
fn queue(tx: &mut Producer<f32>, bytes: &[u8], queued: &AtomicU64) -> shmring::Result<()> {
    if bytes.len() % 4 != 0 {
        return Err(shmring::Error::BadDescriptor(format!(
            "a frame of {} bytes is not whole F32LE samples",
            bytes.len()
        )));
    }
    let mut buf = [0f32; 1024];
    for chunk in bytes.chunks(buf.len() * 4) {
        let n = chunk.len() / 4;
        for (s, b) in buf.iter_mut().zip(chunk.chunks_exact(4)) {
            *s = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
        // Waits while the ring is full: this is the reader thread, not the
        // audio callback. Gives up if playback stopped taking samples.
        tx.push_all(&buf[..n], Some(Duration::from_secs(5)))?;
        queued.fetch_add(n as u64, Ordering::Relaxed);
    }
    Ok(())
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut rx = frames::connect(&args.socket, &FrameConfig::consumer())?;
    // The format comes first, in the caps.
    let format: AudioFormat = loop {
        match rx.recv(Some(Duration::from_secs(5)))? {
            Received::Caps(c) => break parse_audio_caps(&c)?,
            Received::Frame(_) => return Err("a frame before any caps".into()),
            Received::Eos => return Err("the stream ended before any caps".into()),
            _ => {}
        }
    };
    eprintln!(
        "cpal_playback: {} Hz, {} channels from {}",
        format.rate, format.channels, args.socket
    );
    let per_ms = u64::from(format.rate) * u64::from(format.channels) / 1000;
    let (mut tx, ring) = channel::pair::<f32>(&Config::new(
        ((per_ms * args.ring_ms) as usize).next_power_of_two(),
    ))?;

    let ended = Arc::new(AtomicBool::new(false));
    let queued = Arc::new(AtomicU64::new(0));
    let reader = {
        let (ended, queued) = (ended.clone(), queued.clone());
        std::thread::spawn(move || -> Result<(), String> {
            let result = loop {
                if shmring_examples::stop::requested() {
                    break Ok(());
                }
                match rx.recv(Some(Duration::from_millis(100))) {
                    Ok(Received::Frame(f)) => {
                        if let Err(e) = queue(&mut tx, f.bytes(), &queued) {
                            break Err(e.to_string());
                        }
                    }
                    Ok(Received::Caps(c)) => match parse_audio_caps(&c) {
                        Ok(f) if f == format => {}
                        Ok(f) => break Err(format!("the format changed to {f:?}: not supported")),
                        Err(e) => break Err(e),
                    },
                    Ok(Received::Eos) => break Ok(()),
                    Ok(_) | Err(shmring::Error::Timeout) => {}
                    Err(shmring::Error::Disconnected | shmring::Error::PeerDied) => {
                        break Err("the sink went away".into());
                    }
                    Err(e) => break Err(e.to_string()),
                }
            };
            ended.store(true, Ordering::Release);
            result
        })
    };

    // Prefill, so that playback does not start with an underrun.
    let prefill = per_ms * args.prefill_ms;
    let t0 = Instant::now();
    while queued.load(Ordering::Relaxed) < prefill
        && !ended.load(Ordering::Acquire)
        && t0.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(1));
    }

    let device = device::find(Direction::Output, args.device.as_deref())?;
    let config = cpal::StreamConfig {
        channels: format.channels,
        sample_rate: format.rate,
        buffer_size: args
            .buffer
            .map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
    };
    let stats = Arc::new(PlaybackStats::default());
    let mut playback = Playback::new(ring, stats.clone(), ended.clone());
    let stream = device.build_output_stream(
        &config,
        move |out: &mut [f32], _: &cpal::OutputCallbackInfo| playback.on_output(out),
        |e| eprintln!("cpal_playback: stream error: {e}"),
        None,
    )?;
    stream.play()?;
    while !stats.finished.load(Ordering::Acquire) && !shmring_examples::stop::requested() {
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(stream);
    shmring_examples::stop::request();
    let result = reader.join().map_err(|_| "the reader thread panicked")?;
    let channels = u64::from(format.channels);
    eprintln!(
        "cpal_playback: played {} frames, {} underrun frames",
        stats.played.load(Ordering::Relaxed) / channels,
        stats.underrun.load(Ordering::Relaxed) / channels
    );
    result.map_err(Into::into)
}
