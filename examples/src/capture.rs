//! The real-time half of `cpal_capture`: what the audio callback does with
//! each period of samples, built only from the frame stream's ring API (no
//! allocation, no lock, no syscall but the wake-up write when the reader
//! sleeps), and the setup a new reader gets before the callback sees it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shmring::frames::{FrameMeta, FrameSender, SegmentInfo, NONE};

use crate::handoff::Handoff;

/// Caps of interleaved raw audio, as GStreamer writes them (`format` is
/// `F32LE` or `S16LE`).
pub fn audio_caps(format: &str, rate: u32, channels: u16) -> String {
    format!("audio/x-raw,format={format},rate={rate},channels={channels},layout=interleaved")
}

/// Sends a new reader what it needs before any frame (stream start, caps,
/// segment), waiting up to `timeout` for each string slot to come back.
pub fn start_stream(tx: &mut FrameSender, caps: &str, timeout: Duration) -> shmring::Result<()> {
    let deadline = Instant::now() + timeout;
    let send = |tx: &mut FrameSender, f: &dyn Fn(&mut FrameSender) -> shmring::Result<()>| loop {
        tx.reclaim(|_| {})?;
        match f(tx) {
            Err(shmring::Error::Full) if Instant::now() < deadline => {
                match tx.wait_returns(Some(Duration::from_millis(20))) {
                    Ok(()) | Err(shmring::Error::Timeout) => {}
                    Err(e) => return Err(e),
                }
            }
            r => return r,
        }
    };
    send(tx, &|tx| tx.send_stream_start("shmring-cpal-capture"))?;
    send(tx, &|tx| tx.send_caps(caps))?;
    send(tx, &|tx| tx.send_segment(&SegmentInfo::time()))
}

/// What the callback and the control thread share: counters and flags.
#[derive(Debug, Default)]
pub struct Shared {
    /// Callbacks run.
    pub callbacks: AtomicU64,
    /// Sample frames (one sample per channel) captured.
    pub captured: AtomicU64,
    /// Sample frames sent to a reader.
    pub sent: AtomicU64,
    /// Sample frames dropped (no reader, reader full, or reader gone).
    pub dropped: AtomicU64,
    /// Control → callback: the current reader hung up; retire its sender.
    pub hangup: AtomicBool,
    /// Callback → control: the frame limit was reached and EOS sent.
    pub done: AtomicBool,
}

/// The state the audio callback owns.
pub struct Capture {
    handoff: Arc<Handoff<FrameSender>>,
    shared: Arc<Shared>,
    current: Option<Box<FrameSender>>,
    to_retire: Option<Box<FrameSender>>,
    bytes_per_frame: usize,
    rate: u32,
    /// Stop (EOS) after this many sample frames.
    limit: u64,
    frames: u64,
    first: Option<u64>,
}

impl Capture {
    /// State for a stream of `channels` × `bytes_per_sample` frames at `rate`
    /// Hz that ends after `limit` frames (`u64::MAX`: never).
    pub fn new(
        handoff: Arc<Handoff<FrameSender>>,
        shared: Arc<Shared>,
        channels: u16,
        bytes_per_sample: usize,
        rate: u32,
        limit: u64,
    ) -> Self {
        Self {
            handoff,
            shared,
            current: None,
            to_retire: None,
            bytes_per_frame: usize::from(channels) * bytes_per_sample,
            rate: rate.max(1),
            limit,
            frames: 0,
            first: None,
        }
    }

    /// The callback body: `data` is one period of interleaved samples as
    /// bytes, `capture_ns` the time (ns, any origin) its first sample was
    /// captured. Never blocks: a period no reader can take is dropped and
    /// counted.
    pub fn on_input(&mut self, data: &[u8], capture_ns: u64) {
        self.shared.callbacks.fetch_add(1, Ordering::Relaxed);
        if let Some(old) = self.to_retire.take() {
            self.to_retire = self.handoff.retire(old).err();
        }
        if self.shared.hangup.swap(false, Ordering::AcqRel) {
            if let Some(tx) = self.current.take() {
                self.retire(tx);
            }
        }
        if self.current.is_none() && self.to_retire.is_none() {
            self.current = self.handoff.take();
        }
        if self.frames >= self.limit {
            return;
        }
        let frames = (data.len() / self.bytes_per_frame.max(1)) as u64;
        let n = frames.min(self.limit - self.frames);
        let bytes = &data[..(n as usize) * self.bytes_per_frame];
        let first = *self.first.get_or_insert(capture_ns);
        let meta = FrameMeta {
            pts: capture_ns.saturating_sub(first),
            dts: NONE,
            duration: n * 1_000_000_000 / u64::from(self.rate),
            offset: self.frames,
            offset_end: self.frames + n,
            flags: if self.frames == 0 { DISCONT } else { 0 },
        };
        self.shared.captured.fetch_add(n, Ordering::Relaxed);
        if self.send(bytes, &meta) {
            self.shared.sent.fetch_add(n, Ordering::Relaxed);
        } else {
            self.shared.dropped.fetch_add(n, Ordering::Relaxed);
        }
        self.frames += n;
        if self.frames >= self.limit {
            if let Some(mut tx) = self.current.take() {
                let _ = tx.send_eos();
                self.retire(tx);
            }
            self.shared.done.store(true, Ordering::Release);
        }
    }

    fn retire(&mut self, tx: Box<FrameSender>) {
        // At most one waits here; a third reader is not taken before the
        // control thread collected the second (see `on_input`).
        if self.to_retire.is_none() {
            self.to_retire = self.handoff.retire(tx).err();
        } else {
            self.current = Some(tx);
        }
    }

    fn send(&mut self, bytes: &[u8], meta: &FrameMeta) -> bool {
        let Some(tx) = self.current.as_mut() else {
            return false;
        };
        let ok = tx.reclaim(|_| {}).is_ok();
        if !ok || bytes.len() > tx.slot_size() {
            if !ok {
                if let Some(tx) = self.current.take() {
                    self.retire(tx);
                }
            }
            return false;
        }
        let Some(mut lease) = tx.try_lease() else {
            return false;
        };
        lease.as_mut()[..bytes.len()].copy_from_slice(bytes);
        match tx.send_lease(lease, bytes.len(), meta) {
            Ok(()) => true,
            // The lease goes back with the error and is dropped here: the
            // period is dropped and counted, the slot is free again.
            Err(e) if matches!(e.error, shmring::Error::Full) => false,
            Err(_) => {
                if let Some(tx) = self.current.take() {
                    self.retire(tx);
                }
                false
            }
        }
    }
}

/// `GST_BUFFER_FLAG_DISCONT`.
const DISCONT: u32 = 1 << 6;
