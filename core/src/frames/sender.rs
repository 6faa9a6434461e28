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
///
/// **Fan-out**: serve several consumers from one [`Arena`] (see
/// [`serve_arena`](super::serve_arena)), one `FrameSender` each, and send the
/// same slot to each of them; the slot is free again once every consumer
/// returned it. Each sender keeps its own record of the slots its consumer
/// holds, so a consumer can only give back what it was sent: a forged,
/// repeated or out-of-range return is ignored and counted
/// ([`bad_returns`](Self::bad_returns)), and never frees a slot another
/// consumer still reads. Dropping a sender lets go of everything its consumer
/// held.
#[derive(Debug)]
pub struct FrameSender {
    arena: Arena,
    desc: Producer<Descriptor>,
    returns: Consumer<u32>,
    seq: u64,
    /// Producer-private: the slots this consumer holds (sent, not returned).
    held: Box<[bool]>,
    held_count: usize,
    bad_returns: u64,
    /// Frames skipped for this consumer since its last frame.
    missed: u64,
}

impl FrameSender {
    pub(crate) fn new(arena: Arena, desc: Producer<Descriptor>, returns: Consumer<u32>) -> Self {
        let held = vec![false; arena.slots() as usize].into_boxed_slice();
        FrameSender {
            arena,
            desc,
            returns,
            seq: 0,
            held,
            held_count: 0,
            bad_returns: 0,
            missed: 0,
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

    /// Slots this consumer holds (sent to it, not yet returned).
    pub fn in_flight(&self) -> usize {
        self.held_count
    }

    /// Whether this consumer holds `slot`.
    pub fn holds(&self, slot: u32) -> bool {
        self.held.get(slot as usize).copied().unwrap_or(false)
    }

    /// Returns the consumer sent that it did not hold (never sent to it,
    /// returned twice, out of range): ignored, counted here.
    pub fn bad_returns(&self) -> u64 {
        self.bad_returns
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
        d.args[0] = self.missed;
        self.send_with_slot(d)?;
        self.missed = 0;
        Ok(())
    }

    /// Records that a frame was skipped for this consumer (fan-out with a slow
    /// consumer): the next frame sent tells the consumer how many it missed
    /// ([`FrameRef::missed`](super::FrameRef::missed)).
    pub fn note_missed(&mut self) {
        self.missed = self.missed.saturating_add(1);
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
    /// and returns how many. A return of a slot the consumer does not hold
    /// (never sent to it, returned twice, out of range) is ignored and counted
    /// in [`bad_returns`](Self::bad_returns): it cannot free a slot that
    /// another consumer of the same arena still reads. At most one ring's
    /// worth is taken per call, so a consumer that floods returns cannot keep
    /// the producer here.
    pub fn reclaim(&mut self, mut f: impl FnMut(u32)) -> Result<usize> {
        let mut buf = [0u32; RECLAIM_BATCH];
        let mut total = 0;
        let mut budget = self.returns.capacity();
        while budget > 0 {
            let want = budget.min(RECLAIM_BATCH);
            let n = self.returns.pop_slice(&mut buf[..want])?;
            budget -= n;
            for &slot in &buf[..n] {
                match self.held.get_mut(slot as usize) {
                    Some(h) if *h => {
                        *h = false;
                        self.held_count -= 1;
                        self.arena.mark_returned(slot);
                        f(slot);
                        total += 1;
                    }
                    _ => self.bad_returns += 1,
                }
            }
            if n < want {
                break;
            }
        }
        Ok(total)
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

    /// Lets go of every slot this consumer holds (call after it disconnected;
    /// dropping the sender does the same). Slots other consumers hold stay
    /// theirs.
    pub fn reclaim_all(&mut self) {
        for (slot, h) in self.held.iter_mut().enumerate() {
            if std::mem::take(h) {
                self.arena.mark_returned(slot as u32);
            }
        }
        self.held_count = 0;
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
        if self.holds(d.slot) {
            return Err(Error::InvalidArgument(format!(
                "slot {} is already in flight to this consumer",
                d.slot
            )));
        }
        self.arena.mark_sent(d.slot)?;
        if let Err(e) = self.push(d) {
            self.arena.mark_returned(d.slot);
            return Err(e);
        }
        // In range: `holds` indexes the same table, and mark_sent checked the slot.
        if let Some(h) = self.held.get_mut(d.slot as usize) {
            *h = true;
            self.held_count += 1;
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

impl Drop for FrameSender {
    fn drop(&mut self) {
        self.reclaim_all();
    }
}

impl AsFd for FrameSender {
    /// Readable when the consumer returned slots while this end waited.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.returns.as_fd()
    }
}
