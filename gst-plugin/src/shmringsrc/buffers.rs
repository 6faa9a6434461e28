//! A frame of the sink's becomes a buffer: its bytes (the slot itself, or a
//! copy when downstream parses them or holds too many slots), its plane
//! layout and metas (checked), and its timestamps, mapped onto this
//! pipeline's running time when live (see `crate::clock`).

use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::frames::{self, FrameMeta, PlaneLayout};

use super::imp::{ShmringSrc, Timing};
use crate::convert::{self, clamp_time, clock};
use crate::util::lock;
use crate::{clock, serialize, Error};

/// What a live src needs to map one frame's timestamps.
pub(super) struct LiveClock {
    /// Our pipeline clock minus `CLOCK_MONOTONIC`.
    clock_minus_monotonic: i128,
    /// Our base time.
    base_time: u64,
    /// Our running time now.
    now: i128,
}

impl ShmringSrc {
    pub(super) fn live_clock(&self) -> Option<LiveClock> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base_time = obj.base_time()?.nseconds();
        let now = clock.time()?.nseconds();
        Some(LiveClock {
            clock_minus_monotonic: clock::clock_minus_monotonic(&clock),
            base_time,
            now: i128::from(now) - i128::from(base_time),
        })
    }

    /// One of the sink's timestamps as one of ours.
    pub(super) fn map_time(
        t: &mut Timing,
        live: Option<&LiveClock>,
        ns: u64,
    ) -> Option<gst::ClockTime> {
        let ts = clock(ns)?;
        let Some(live) = live else {
            // Not live: the sink's timestamps, in the sink's segment.
            return Some(ts);
        };
        let rt = t.segment.to_running_time_full(ts)?;
        let rt = match rt {
            gst::Signed::Positive(v) => i128::from(v.nseconds()),
            gst::Signed::Negative(v) => -i128::from(v.nseconds()),
        };
        let ours = match t.timeline {
            Some(tl) => clock::map_running_time(
                rt,
                tl.base_time,
                live.clock_minus_monotonic,
                live.base_time,
            ),
            None => rt + *t.anchor.get_or_insert(live.now - rt),
        };
        Some(clamp_time(ours))
    }

    /// A frame of the sink's as a buffer: its bytes, plane layout and
    /// metas, timestamps (mapped, see `map_time`), offsets and flags.
    pub(super) fn frame(&self, f: frames::FrameRef) -> Result<gst::Buffer, gst::FlowError> {
        let m: FrameMeta = *f.meta();
        let layout = f.layout().copied();
        let is_live = lock(&self.settings).is_live;
        let mut buffer = self.buffer_of(f);
        let live = if is_live { self.live_clock() } else { None };
        let stamp = !(is_live && self.obj().property::<bool>("do-timestamp"));
        let mut t = lock(&self.timing);
        let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
        if let Err(e) = self.attach_extras(b, layout.as_ref(), &mut t) {
            drop(t);
            return Err(self.fail(&e));
        }
        if stamp {
            b.set_pts(Self::map_time(&mut t, live.as_ref(), m.pts));
            b.set_dts(Self::map_time(&mut t, live.as_ref(), m.dts));
        }
        // else the base class stamps the buffer with its arrival time.
        convert::set_meta(b, &m, std::mem::take(&mut t.discont));
        t.segment_pending = false;
        Ok(buffer)
    }

    /// The frame's bytes as a buffer (counted): the slot itself, or a copy.
    fn buffer_of(&self, f: frames::FrameRef) -> gst::Buffer {
        let (held, slots) = match lock(&self.rx).as_ref() {
            Some(rx) => (rx.frames_held(), rx.arena().slots() as usize),
            None => (0, 1),
        };
        // Zero copy, unless downstream keeps so many buffers (a filesink
        // batching small ones, a deep queue) that the sink would run out of
        // slots: then copy and return the slot at once.
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(f.bytes().len() as u64, Ordering::Relaxed);
        // Bytes downstream parses must not change under it: unless the sink
        // is trusted, they are copied out of the arena it can still write
        // (a sealed blob needs no copy). Raw audio and video are read
        // through their caps and layout only, so they stay zero copy.
        let trusted = lock(&self.settings).trusted;
        let parsed = lock(&self.timing).parsed;
        let must_copy = parsed && !trusted && !f.is_immutable();
        if must_copy || held * 2 > slots {
            self.stats.copied.fetch_add(1, Ordering::Relaxed);
            gst::Buffer::from_slice(f.bytes().to_vec())
        } else {
            gst::Buffer::from_slice(f)
        }
    }

    /// Attaches the frame's plane layout, then the metas that came before
    /// it, each checked against the current caps.
    fn attach_extras(
        &self,
        b: &mut gst::BufferRef,
        layout: Option<&PlaneLayout>,
        t: &mut Timing,
    ) -> Result<(), Error> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::Shmring(shmring::Error::BadDescriptor(format!("{what}: {e}")))
        };
        let caps = self.obj().src_pad().current_caps();
        if let Some(l) = layout {
            convert::attach_layout(b, l, caps.as_deref()).map_err(|e| bad("plane layout", &e))?;
        }
        if let Some(m) = t.metas.take() {
            serialize::apply_metas(b, &m, caps.as_deref()).map_err(|e| bad("metas", &e))?;
        }
        Ok(())
    }
}
