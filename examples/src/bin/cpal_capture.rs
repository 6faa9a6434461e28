//! Captures audio with cpal and serves it as a shmring frame stream on a
//! socket path, from inside the audio callback (no allocation, lock or
//! blocking call there: see `shmring_examples::capture`). A `shmringsrc` reads
//! it directly:
//!
//! ```text
//! cpal_capture --socket /tmp/mic.sock &
//! gst-launch-1.0 shmringsrc socket-path=/tmp/mic.sock ! audioconvert ! wavenc ! filesink location=out.wav
//! ```
//!
//! Options: `--device NAME` (default: the default input device), `--rate HZ`
//! (48000), `--channels N` (2), `--format f32|i16` (f32), `--buffer FRAMES`
//! (period size; default: the device's), `--frames N` (stop after N sample
//! frames and send EOS; default: run until killed), `--slots N` (32),
//! `--no-wait` (start capturing before a reader connects; periods without a
//! reader are dropped and counted). A reader that goes away is replaced by the
//! next one that connects; the callback never waits for either. SIGINT or
//! SIGTERM stops it with a final report.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, StreamTrait};
use shmring::frames::{self, FrameConfig, FrameSender};
use shmring::handshake::{ListenOptions, Listener};
use shmring_examples::capture::{audio_caps, start_stream, Capture, Shared};
use shmring_examples::device::{self, Direction};
use shmring_examples::handoff::Handoff;

struct Args {
    socket: String,
    device: Option<String>,
    rate: u32,
    channels: u16,
    format: String,
    buffer: Option<u32>,
    frames: u64,
    slots: u32,
    wait: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        socket: String::new(),
        device: None,
        rate: 48_000,
        channels: 2,
        format: "f32".into(),
        buffer: None,
        frames: u64::MAX,
        slots: 32,
        wait: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--socket" => a.socket = value()?,
            "--device" => a.device = Some(value()?),
            "--rate" => a.rate = num(value()?)? as u32,
            "--channels" => a.channels = num(value()?)? as u16,
            "--format" => a.format = value()?,
            "--buffer" => a.buffer = Some(num(value()?)? as u32),
            "--frames" => a.frames = num(value()?)?,
            "--slots" => a.slots = num(value()?)? as u32,
            "--no-wait" => a.wait = false,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    if a.socket.is_empty() {
        return Err("--socket PATH is required".into());
    }
    if !matches!(a.format.as_str(), "f32" | "i16") {
        return Err("--format is f32 or i16".into());
    }
    Ok(a)
}

/// Serves one reader: handshake, then the stream's sticky events. Returns the
/// sender and a duplicate of its link socket (to watch for a hang-up).
fn serve(
    conn: shmring::handshake::Connection,
    cfg: &FrameConfig,
    caps: &str,
) -> Result<(Box<FrameSender>, OwnedFd), Box<dyn std::error::Error>> {
    let pid = conn.peer().pid;
    let mut tx = frames::serve(conn, cfg)?;
    start_stream(&mut tx, caps, Duration::from_secs(5))?;
    let link = tx.link_fd().try_clone_to_owned()?;
    eprintln!("cpal_capture: reader pid {pid} connected");
    Ok((Box::new(tx), link))
}

/// Whether the reader behind `link` hung up (non-blocking).
fn hung_up(link: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: link.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for an fd we own; a zero timeout only
    // reads its state.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    r > 0 && p.revents & (libc::POLLHUP | libc::POLLERR | libc::POLLRDHUP) != 0
}

/// Waits (up to `limit`) until the reader returned every slot of `tx` or
/// went away, so that it can read the last frames and EOS.
fn drain(mut tx: Box<FrameSender>, limit: Duration) {
    let deadline = Instant::now() + limit;
    while tx.in_flight() > 0 && tx.is_peer_alive() && Instant::now() < deadline {
        let _ = tx.reclaim(|_| {});
        let _ = tx.wait_returns(Some(Duration::from_millis(20)));
    }
}

fn main() {
    shmring_examples::stop::run_main("cpal_capture", parse_args, run);
}

fn run(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let device = device::find(Direction::Input, args.device.as_deref())?;
    let (gst_format, sample_bytes) = match args.format.as_str() {
        "i16" => ("S16LE", 2),
        _ => ("F32LE", 4),
    };
    let caps = audio_caps(gst_format, args.rate, args.channels);
    // A slot holds one period; periods beyond 16384 frames are dropped.
    let max_period = args.buffer.unwrap_or(16_384).max(16_384) as usize;
    let cfg = FrameConfig::new(
        args.slots,
        max_period * usize::from(args.channels) * sample_bytes,
    );
    let listener = Listener::bind(&args.socket, &ListenOptions::default())?;
    eprintln!("cpal_capture: serving {caps} on {}", args.socket);

    let handoff = Arc::new(Handoff::new());
    let shared = Arc::new(Shared::default());
    let mut link = None;
    if args.wait {
        let (tx, l) = serve(listener.accept(None)?, &cfg, &caps)?;
        let _ = handoff.offer(tx);
        link = Some(l);
    }

    let config = cpal::StreamConfig {
        channels: args.channels,
        sample_rate: args.rate,
        buffer_size: args
            .buffer
            .map_or(cpal::BufferSize::Default, cpal::BufferSize::Fixed),
    };
    let capture = Capture::new(
        handoff.clone(),
        shared.clone(),
        args.channels,
        sample_bytes,
        args.rate,
        args.frames,
    );
    let on_error = |e: cpal::StreamError| eprintln!("cpal_capture: stream error: {e}");
    let stream = if sample_bytes == 2 {
        input_stream::<i16>(&device, &config, capture, on_error)?
    } else {
        input_stream::<f32>(&device, &config, capture, on_error)?
    };
    stream.play()?;

    let started = Instant::now();
    let mut last_report = Instant::now();
    let mut done_at = None;
    loop {
        std::thread::sleep(Duration::from_millis(5));
        // `done` is stored after the callback retired its last sender: read
        // it first, and that sender is collected below (or, if the mailbox
        // was busy, within a few callbacks).
        let done = shared.done.load(Ordering::Acquire);
        if shmring_examples::stop::requested() {
            break;
        }
        if let Some(old) = handoff.collect() {
            // Let the reader read to the end (EOS) before the link closes.
            drain(old, Duration::from_secs(5));
        }
        if done {
            let at = *done_at.get_or_insert_with(Instant::now);
            if at.elapsed() > Duration::from_millis(100) {
                break;
            }
            continue;
        }
        if link.as_ref().is_some_and(hung_up) {
            eprintln!("cpal_capture: reader went away");
            link = None;
            shared.hangup.store(true, Ordering::Release);
        }
        if !handoff.is_offered() && !shared.hangup.load(Ordering::Acquire) {
            if let Some(conn) = listener.try_accept()? {
                if link.is_some() {
                    // One reader at a time: the newcomer replaces the old.
                    shared.hangup.store(true, Ordering::Release);
                }
                match serve(conn, &cfg, &caps) {
                    Ok((tx, l)) => {
                        let _ = handoff.offer(tx);
                        link = Some(l);
                    }
                    Err(e) => eprintln!("cpal_capture: reader refused: {e}"),
                }
            }
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            report(&shared, started);
        }
    }
    drop(stream);
    report(&shared, started);
    Ok(())
}

/// The cpal input stream whose callback runs `capture` on each period of
/// samples `T`, timed from the first period's capture instant.
fn input_stream<T: cpal::SizedSample + bytemuck::Pod>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut capture: Capture,
    on_error: impl FnMut(cpal::StreamError) + Send + 'static,
) -> Result<cpal::Stream, cpal::BuildStreamError> {
    let mut origin = None;
    device.build_input_stream(
        config,
        move |data: &[T], info: &cpal::InputCallbackInfo| {
            let t = info.timestamp().capture;
            let ns = t
                .duration_since(origin.get_or_insert(t))
                .map_or(0, |d| d.as_nanos() as u64);
            capture.on_input(bytemuck::cast_slice(data), ns);
        },
        on_error,
        None,
    )
}

fn report(s: &Shared, started: Instant) {
    eprintln!(
        "cpal_capture: {:.1} s: {} callbacks, {} frames captured, {} sent, {} dropped",
        started.elapsed().as_secs_f64(),
        s.callbacks.load(Ordering::Relaxed),
        s.captured.load(Ordering::Relaxed),
        s.sent.load(Ordering::Relaxed),
        s.dropped.load(Ordering::Relaxed),
    );
}
