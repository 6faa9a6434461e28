//! The producing end of a frame stream.

use std::os::fd::{AsFd, BorrowedFd};
use std::time::Duration;

use bytemuck::Zeroable;

use super::arena::{Arena, SlotLease};
use super::descriptor::{Descriptor, FrameMeta, Kind, SegmentInfo};
use crate::{Consumer, Error, Producer, Result};

/// How many returned slot numbers [`FrameSender::reclaim`] pops per batch.
const RECLAIM_BATCH: usize = 64;

/// The producing end: owns the arena (read-write), the descriptor ring's
/// writer and the return ring's reader.
///
/// Frames are bytes in arena slots. Either lease a slot, fill it and
/// [`send_lease`](Self::send_lease) it, or keep leases elsewhere (inside a
/// GStreamer memory, say) and [`send_frame`](Self::send_frame) by slot number.
/// A sent slot is not reused until the consumer returns it; call
/// [`reclaim`](Self::reclaim) to take returns.
#[derive(Debug)]
pub struct FrameSender {
    arena: Arena,
    desc: Producer<Descriptor>,
    returns: Consumer<u32>,
    seq: u64,
}

impl FrameSender {
    pub(crate) fn new(arena: Arena, desc: Producer<Descriptor>, returns: Consumer<u32>) -> Self {
        FrameSender {
            arena,
            desc,
            returns,
            seq: 0,
        }
    }

    /// Number of slots in the arena.
    pub fn slots(&self) -> u32 {
        self.arena.slots()
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.arena.slot_size()
    }

    /// The arena (a cheap handle; it keeps the mapping alive).
    pub fn arena(&self) -> Arena {
        self.arena.clone()
    }

    /// A free slot to write, if any (see [`Arena::try_lease`]).
    pub fn try_lease(&self) -> Option<SlotLease> {
        self.arena.try_lease()
    }

    /// Slots the consumer holds.
    pub fn in_flight(&self) -> usize {
        self.arena.in_flight()
    }

    /// Sends bytes `offset..offset + size` of `slot` as a frame. The slot must be
    /// leased (its bytes written by the lease holder) and not in flight; it stays
    /// in flight until the consumer returns it. Returns [`Error::Full`] when the
    /// descriptor ring is full (see [`wait_writable`](Self::wait_writable)).
    pub fn send_frame(
        &mut self,
        slot: u32,
        offset: usize,
        size: usize,
        meta: &FrameMeta,
    ) -> Result<()> {
        if slot >= self.slots()
            || offset
                .checked_add(size)
                .is_none_or(|e| e > self.slot_size())
        {
            return Err(Error::InvalidArgument(format!(
                "bytes {offset}+{size} of slot {slot} are outside the arena"
            )));
        }
        let mut d = Descriptor::event(Kind::Frame);
        d.set_meta(meta);
        d.slot = slot;
        // Both fit in u32: slot_size <= u32::MAX.
        d.offset = offset as u32;
        d.size = size as u32;
        self.send_with_slot(d)
    }

    /// Sends the first `size` bytes of a leased slot as a frame and gives up the
    /// lease: the slot is free again once the consumer returns it. On error the
    /// lease is dropped too (the slot is free at once).
    pub fn send_lease(&mut self, lease: SlotLease, size: usize, meta: &FrameMeta) -> Result<()> {
        self.check_own(&lease)?;
        self.send_frame(lease.index(), 0, size, meta)
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
        self.send_string(Kind::StreamStart, stream_id)
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

    /// Takes the slots the consumer returned, calling `f` with each slot number,
    /// and returns how many. A return of a slot the consumer did not hold is an
    /// [`Error::BadDescriptor`] (the consumer misbehaves; drop it).
    pub fn reclaim(&mut self, mut f: impl FnMut(u32)) -> Result<usize> {
        let mut buf = [0u32; RECLAIM_BATCH];
        let mut total = 0;
        loop {
            let n = self.returns.pop_slice(&mut buf)?;
            for &slot in &buf[..n] {
                self.arena.mark_returned(slot)?;
                f(slot);
            }
            total += n;
            if n < RECLAIM_BATCH {
                return Ok(total);
            }
        }
    }

    /// Waits until the consumer returns a slot (then [`reclaim`](Self::reclaim)).
    /// [`Error::Disconnected`] when the consumer is gone, [`Error::Timeout`].
    pub fn wait_returns(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.returns.wait_readable(timeout)
    }

    /// Waits for room in the descriptor ring.
    pub fn wait_writable(&mut self, timeout: Option<Duration>) -> Result<()> {
        self.desc.wait_writable(timeout)
    }

    /// `true` unless the consumer is known to be gone.
    pub fn is_peer_alive(&mut self) -> bool {
        self.desc.is_peer_alive()
    }

    /// Forgets every slot the consumer holds (call after it disconnected, when
    /// whatever referenced those slots has been let go).
    pub fn reclaim_all(&mut self) {
        self.arena.reclaim_all();
    }

    /// The socket that hangs up when the consumer goes away (for pollers).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.desc.link_fd()
    }

    /// Sends a descriptor exactly as given, unchecked: for tests of consumers
    /// against a hostile producer. Not part of the stable API.
    #[doc(hidden)]
    pub fn send_raw(&mut self, d: Descriptor) -> Result<()> {
        self.desc.try_push(d)
    }

    fn check_own(&self, lease: &SlotLease) -> Result<()> {
        if lease.arena().as_ptr() != self.arena.as_ptr() {
            return Err(Error::InvalidArgument("lease from another arena".into()));
        }
        Ok(())
    }

    fn send_string(&mut self, kind: Kind, s: &str) -> Result<()> {
        if s.len() > self.slot_size() {
            return Err(Error::InvalidArgument(format!(
                "{kind:?} string of {} bytes does not fit a {}-byte slot",
                s.len(),
                self.slot_size()
            )));
        }
        // The consumer copies a string out and returns its slot at once, so the
        // string slot is only briefly busy.
        let mut lease = self.arena.lease_string_slot().ok_or(Error::Full)?;
        lease.as_mut()[..s.len()].copy_from_slice(s.as_bytes());
        let mut d = Descriptor::zeroed();
        d.kind = kind as u32;
        d.slot = lease.index();
        d.size = s.len() as u32;
        // The lease drops after sending: the slot is free once returned.
        self.send_with_slot(d)
    }

    fn send_with_slot(&mut self, d: Descriptor) -> Result<()> {
        if self.desc.slots()? == 0 {
            return Err(Error::Full);
        }
        self.arena.mark_sent(d.slot)?;
        if let Err(e) = self.push(d) {
            self.arena.unmark_sent(d.slot);
            return Err(e);
        }
        Ok(())
    }

    fn push(&mut self, mut d: Descriptor) -> Result<()> {
        d.seq = self.seq;
        self.desc.try_push(d)?;
        self.seq += 1;
        Ok(())
    }
}

impl AsFd for FrameSender {
    /// Readable when the consumer returned slots while this end waited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.returns.as_fd()
    }
}
