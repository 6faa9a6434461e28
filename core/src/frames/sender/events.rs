//! Events and strings (caps, tags, stream-start, metas, serialized events),
//! in order with the frames: a string goes in the arena's string slot, or
//! as a blob when it is longer than a slot or a switch waits for the
//! consumer to drain its arena.

use bytemuck::Zeroable;

use super::FrameSender;
use crate::frames::blob::Blob;
use crate::frames::descriptor::{Descriptor, Kind, SegmentInfo};
use crate::{Error, Result};

impl FrameSender {
    /// Sends metadata for the next frame as a string (for GStreamer: its
    /// metas). Prefer [`FrameExtras::metas`](super::FrameExtras::metas), which sends both or neither.
    pub fn send_metas(&mut self, metas: &str) -> Result<()> {
        self.send_string(Kind::Metas, metas)
    }

    /// Sends an in-band event as a string (for GStreamer: a serialized
    /// downstream event), in order with the frames.
    pub fn send_event_string(&mut self, event: &str) -> Result<()> {
        self.send_string(Kind::Event, event)
    }

    /// Sends the stream's format (for GStreamer: caps as a string).
    pub fn send_caps(&mut self, caps: &str) -> Result<()> {
        self.send_string(Kind::Caps, caps)
    }

    /// Sends tags (as a string).
    pub fn send_tags(&mut self, tags: &str) -> Result<()> {
        self.send_string(Kind::Tags, tags)
    }

    /// Sends stream-start with its id.
    pub fn send_stream_start(&mut self, stream_id: &str) -> Result<()> {
        self.send_stream_start_with(stream_id, 0, None)
    }

    /// Sends stream-start with its id, flags (opaque; for GStreamer
    /// `GstStreamFlags`) and group.
    pub fn send_stream_start_with(
        &mut self,
        stream_id: &str,
        flags: u32,
        group_id: Option<u32>,
    ) -> Result<()> {
        let mut args = [0u64; 2];
        args[0] = u64::from(flags);
        if let Some(g) = group_id {
            args[1] = (1 << 32) | u64::from(g);
        }
        self.send_string_with(Kind::StreamStart, stream_id, &args)
    }

    /// Sends a segment.
    pub fn send_segment(&mut self, s: &SegmentInfo) -> Result<()> {
        let mut d = Descriptor::event(Kind::Segment);
        d.set_segment(s);
        self.push(d)
    }

    /// Sends end-of-stream.
    pub fn send_eos(&mut self) -> Result<()> {
        self.push(Descriptor::event(Kind::Eos))
    }

    /// Sends flush-start.
    pub fn send_flush_start(&mut self) -> Result<()> {
        self.push(Descriptor::event(Kind::FlushStart))
    }

    /// Sends flush-stop.
    pub fn send_flush_stop(&mut self, reset_time: bool) -> Result<()> {
        let mut d = Descriptor::event(Kind::FlushStop);
        d.args[0] = u64::from(reset_time);
        self.push(d)
    }

    /// Sends a gap of `duration` at `pts`.
    pub fn send_gap(&mut self, pts: u64, duration: u64) -> Result<()> {
        let mut d = Descriptor::event(Kind::Gap);
        d.pts = pts;
        d.duration = duration;
        self.push(d)
    }

    pub(super) fn send_string(&mut self, kind: Kind, s: &str) -> Result<()> {
        self.send_string_with(kind, s, &[])
    }

    /// Sends a string with `args` in the first argument words.
    fn send_string_with(&mut self, kind: Kind, s: &str, args: &[u64]) -> Result<()> {
        if s.len() > self.slot_size() || self.draining {
            // Too long for a slot (caps with stream headers, say), or a
            // switch waits for the consumer to give back every slot: a blob.
            let blob = Blob::copy_of(s.as_bytes())?;
            let mut d = Descriptor::zeroed();
            d.kind = kind as u32;
            d.args[..args.len()].copy_from_slice(args);
            return self.send_blob_as(d, &blob);
        }
        // The consumer copies a string out and returns its slot at once, so the
        // string slot is only briefly busy.
        let mut lease = self.arena.lease_string_slot().ok_or(Error::Full)?;
        lease.as_mut()[..s.len()].copy_from_slice(s.as_bytes());
        let mut d = Descriptor::zeroed();
        d.kind = kind as u32;
        d.slot = lease.index();
        d.size = s.len() as u32;
        d.args[..args.len()].copy_from_slice(args);
        // The lease drops after sending: the slot is free once returned.
        self.send_with_slot(d)
    }
}
