//! The producing end of a frame stream.

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use super::arena::{Arena, SlotLease};
use super::blob::Blob;
use super::descriptor::{Descriptor, FrameMeta, Kind, PlaneLayout, STORAGE_BLOB};
use super::messages::{self, Message};
use super::switch;
use crate::{Consumer, Error, PeerWatch, Producer, Result};

mod events;
mod upstream;

use upstream::upstream_message;
pub use upstream::UpstreamReceiver;

/// A return-ring entry with this bit set gives back blob `entry & !BLOB_RETURN`
/// (without it, the entry is a slot number).
pub(crate) const BLOB_RETURN: u32 = 1 << 31;
/// Most blobs one consumer may hold at once (the return ring has room for
/// them beside every slot).
pub const MAX_BLOBS: u32 = 64;

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
///
/// **Arena switch**: [`switch_arena`](Self::switch_arena) moves the consumer
/// to another arena (bigger slots after a format change) while it stays
/// connected, once it holds no slot of the current one.
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
    /// The producer's end of the message socket.
    msgs: OwnedFd,
    /// Blobs this consumer holds: (number, bytes), oldest first.
    blobs: VecDeque<(u32, usize)>,
    blob_bytes: usize,
    /// Most blob bytes this consumer may hold at once.
    blob_budget: usize,
    next_blob: u32,
    /// Upstream messages read while waiting for the consumer's verdict.
    early_upstream: Vec<String>,
    /// Most slots an arena this consumer switches to may have (the room its
    /// return ring has beside [`MAX_BLOBS`]).
    max_arena_slots: u32,
    /// Arena switches sent to this consumer.
    switches: u64,
    /// A switch waits for this consumer to give back every slot of the
    /// current arena: strings go as blobs meanwhile, so that it can.
    draining: bool,
}

impl FrameSender {
    pub(crate) fn new(
        arena: Arena,
        desc: Producer<Descriptor>,
        returns: Consumer<u32>,
        msgs: OwnedFd,
        blob_budget: usize,
    ) -> Self {
        let held = vec![false; arena.slots() as usize].into_boxed_slice();
        let max_arena_slots = switch::max_slots(returns.capacity(), arena.slots());
        FrameSender {
            arena,
            desc,
            returns,
            seq: 0,
            held,
            held_count: 0,
            bad_returns: 0,
            missed: 0,
            msgs,
            blobs: VecDeque::new(),
            blob_bytes: 0,
            blob_budget,
            next_blob: 0,
            early_upstream: Vec::new(),
            max_arena_slots,
            switches: 0,
            draining: false,
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

    /// The arena this consumer reads (a cheap handle; it keeps the mapping
    /// alive): the one it was served, or the last one it was switched to.
    pub fn arena(&self) -> Arena {
        self.arena.clone()
    }

    /// Whether this consumer reads `arena` (slot numbers sent to it are
    /// slots of that arena).
    pub fn is_on(&self, arena: &Arena) -> bool {
        self.arena.as_ptr() == arena.as_ptr()
    }

    /// Most slots an arena may have that this consumer is switched to (the
    /// room its return ring has; at least the slots of the arena it was
    /// served).
    pub fn max_arena_slots(&self) -> u32 {
        self.max_arena_slots
    }

    /// Arena switches sent to this consumer.
    pub fn arena_switches(&self) -> u64 {
        self.switches
    }

    /// Moves this consumer to `arena` (one with bigger slots after the
    /// format grew, say), in order with the frames and events sent so far:
    /// every slot sent after it is a slot of `arena`, and leases of the old
    /// arena can no longer be sent to it. `Ok(true)` once switched (or if
    /// it already reads `arena`); `Ok(false)` while the consumer still holds
    /// slots of the current arena: [`reclaim`](Self::reclaim) its returns
    /// and try again (meanwhile, what does not fit the current arena's slots
    /// can go as [`Blob`]s, and strings such as caps and metas go as blobs
    /// by themselves, so that the consumer can drain). Blobs it holds stay
    /// valid across the switch.
    ///
    /// Slot numbers are the caller's to keep apart: after a switch,
    /// [`send_frame`](Self::send_frame) takes slot numbers of the new arena
    /// only (leases of the old arena are refused by
    /// [`send_lease`](Self::send_lease); [`is_on`](Self::is_on) tells which
    /// arena a consumer reads).
    ///
    /// The consumer maps the new arena only if it is within its
    /// [`FrameConfig::max_arena`](super::FrameConfig::max_arena); a bigger
    /// one ends its stream with an error.
    ///
    /// # Errors
    ///
    /// * [`Error::InvalidArgument`]: `arena` has more slots than
    ///   [`max_arena_slots`](Self::max_arena_slots);
    /// * [`Error::Full`]: no room in the descriptor ring or on the message
    ///   socket; nothing was sent, try again later;
    /// * [`Error::Protocol`]: the memfd went out but the descriptor could
    ///   not follow; the consumer cannot go on and must be dropped;
    /// * [`Error::Disconnected`] / [`Error::PeerDied`]: the consumer is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::frames::{self, Arena, FrameConfig, FrameMeta, Received};
    ///
    /// let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096))?;
    /// tx.send_bytes(b"small", &FrameMeta::default(), None)?;
    /// let Received::Frame(small) = rx.recv(None)? else { panic!("a frame") };
    ///
    /// // The format grows: an arena with bigger slots.
    /// let big = Arena::new(&FrameConfig::new(4, 1 << 20))?;
    /// assert!(!tx.switch_arena(&big)?, "the consumer holds an old slot");
    /// drop(small);
    /// tx.reclaim(|_| {})?;
    /// assert!(tx.switch_arena(&big)?);
    ///
    /// let mut slot = tx.lease(None)?; // a slot of the new arena
    /// slot.as_mut()[..3].copy_from_slice(b"big");
    /// tx.send_lease(slot, 3, &FrameMeta::default())?;
    /// let Received::Frame(f) = rx.recv(None)? else { panic!("a frame") };
    /// assert_eq!(f.bytes(), b"big");
    /// assert_eq!(rx.arena().slot_size(), 1 << 20);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn switch_arena(&mut self, arena: &Arena) -> Result<bool> {
        if self.is_on(arena) {
            return Ok(true);
        }
        if arena.slots() > self.max_arena_slots {
            return Err(Error::InvalidArgument(format!(
                "an arena of {} slots: this consumer's return ring has room for {}",
                arena.slots(),
                self.max_arena_slots
            )));
        }
        if self.held_count > 0 {
            self.draining = true;
            return Ok(false);
        }
        if self.desc.slots()? == 0 {
            return Err(Error::Full);
        }
        let d = switch::announce(self.msgs.as_fd(), arena)?;
        // Room was checked: a failure here leaves the consumer with a memfd
        // it cannot place, so it must go.
        self.push(d).map_err(|e| match e {
            e if e.is_would_block() => Error::Protocol(format!("arena switch lost: {e}")),
            e => e,
        })?;
        // It holds no slot of the old arena: nothing to let go of there.
        self.arena = arena.clone();
        self.held = vec![false; arena.slots() as usize].into_boxed_slice();
        self.switches += 1;
        self.draining = false;
        Ok(true)
    }

    /// A free slot to write, if any (see [`Arena::try_lease`]). Slots come
    /// back only through [`reclaim`](Self::reclaim): call it first, or use
    /// [`lease`](Self::lease), which does both and waits.
    pub fn try_lease(&self) -> Option<SlotLease> {
        self.arena.try_lease()
    }

    /// A free slot to write, taking the consumer's returns and waiting up to
    /// `timeout` (`None`: forever) for one.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no slot came back in time,
    /// [`Error::Disconnected`] when the consumer is gone. (A return of a
    /// slot it does not hold is no error: see [`reclaim`](Self::reclaim).)
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::frames::{self, FrameConfig, FrameMeta};
    ///
    /// let (mut tx, _rx) = frames::pair(&FrameConfig::new(4, 4096))?;
    /// let mut slot = tx.lease(Some(Duration::from_secs(1)))?;
    /// slot.as_mut()[..3].copy_from_slice(b"abc");
    /// tx.send_lease(slot, 3, &FrameMeta::default())?;
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn lease(&mut self, timeout: Option<Duration>) -> Result<SlotLease> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            self.reclaim(|_| {})?;
            if let Some(l) = self.arena.try_lease() {
                return Ok(l);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(Error::Timeout);
            }
            match self.returns.wait_readable(left) {
                Ok(()) | Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Sends `data` as a frame whatever its size, waiting up to `timeout`
    /// (`None`: forever) for room: copied into a slot when it fits one, else
    /// into a [`Blob`] of its own. The simplest way to send; zero copy needs
    /// [`lease`](Self::lease) and [`send_lease`](Self::send_lease).
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] when no room came in time (nothing was sent);
    /// [`Error::InvalidArgument`] for a payload over
    /// [`FrameConfig::blob_budget`](super::FrameConfig::blob_budget);
    /// [`Error::Disconnected`] when the consumer is gone.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::frames::{self, FrameConfig, FrameMeta, Received};
    ///
    /// let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096))?;
    /// let t = Some(Duration::from_secs(1));
    /// tx.send_bytes(&[7; 10], &FrameMeta::default(), t)?;
    /// tx.send_bytes(&vec![8; 100_000], &FrameMeta::default(), t)?; // bigger than a slot
    /// for len in [10, 100_000] {
    ///     match rx.recv(t)? {
    ///         Received::Frame(f) => assert_eq!(f.bytes().len(), len),
    ///         other => panic!("{other:?}"),
    ///     }
    /// }
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn send_bytes(
        &mut self,
        data: &[u8],
        meta: &FrameMeta,
        timeout: Option<Duration>,
    ) -> Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let blob = if data.len() > self.slot_size() {
            Some(Blob::copy_of(data)?)
        } else {
            None
        };
        let mut lease = None;
        loop {
            let r = match &blob {
                Some(b) => {
                    self.reclaim(|_| {})?;
                    self.send_blob(b, meta, &FrameExtras::default())
                }
                None => {
                    let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                    let mut l = match lease.take() {
                        Some(l) => l,
                        None => self.lease(left)?,
                    };
                    l.as_mut()[..data.len()].copy_from_slice(data);
                    let r = self.send_frame(l.index(), 0, data.len(), meta);
                    if r.is_err() {
                        lease = Some(l);
                    }
                    r
                }
            };
            match r {
                Err(Error::Full) => {}
                r => return r,
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|l| l.is_zero()) {
                return Err(Error::Timeout);
            }
            // No room in the descriptor ring, or the blob budget is spent.
            let step = left.map_or(Duration::from_millis(10), |l| {
                l.min(Duration::from_millis(10))
            });
            match self.desc.wait_writable(Some(step)) {
                Ok(()) | Err(Error::Timeout) => {}
                Err(e) => return Err(e),
            }
            if blob.is_some() {
                match self.returns.wait_readable(Some(Duration::ZERO)) {
                    Ok(()) | Err(Error::Timeout) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    /// Sends end-of-stream, waiting up to `timeout` for room, then waits
    /// until the consumer gave back every slot and blob (or `timeout`): the
    /// clean end of a stream. Dropping the sender then is safe for the
    /// consumer, which has read everything.
    pub fn finish(&mut self, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let left = || deadline.map(|d: Instant| d.saturating_duration_since(Instant::now()));
        loop {
            match self.send_eos() {
                Err(Error::Full) => self.desc.wait_writable(left())?,
                r => break r?,
            }
        }
        while self.held_count > 0 || !self.blobs.is_empty() {
            self.reclaim(|_| {})?;
            if self.held_count == 0 && self.blobs.is_empty() {
                break;
            }
            match self.returns.wait_readable(left()) {
                Ok(()) => {}
                // The consumer left (or died): nothing to wait for.
                Err(Error::Disconnected | Error::PeerDied) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
        self.send_frame_with(slot, offset, size, meta, &FrameExtras::default())
    }

    /// Like [`send_frame`](Self::send_frame), with the frame's plane layout
    /// and metadata string ([`FrameExtras`]). Either everything is sent or
    /// nothing ([`Error::Full`] when the descriptor ring lacks room for both).
    pub fn send_frame_with(
        &mut self,
        slot: u32,
        offset: usize,
        size: usize,
        meta: &FrameMeta,
        extras: &FrameExtras<'_>,
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
        let mut d = self.frame_descriptor(meta, extras);
        d.slot = slot;
        // Both fit in u32: slot_size <= u32::MAX.
        d.offset = offset as u32;
        d.size = size as u32;
        self.send_metas_first(extras, |s| s.send_with_slot(d))?;
        self.missed = 0;
        Ok(())
    }

    /// Sends a [`Blob`] as a frame (a payload of any size: see
    /// [`Blob`]). [`Error::Full`] when the descriptor ring has no room, or
    /// when this consumer already holds [`MAX_BLOBS`] blobs or its blob
    /// budget ([`FrameConfig::blob_budget`](super::FrameConfig::blob_budget))
    /// would be exceeded: [`reclaim`](Self::reclaim) and try again. A blob
    /// bigger than the whole budget is [`Error::InvalidArgument`].
    pub fn send_blob(
        &mut self,
        blob: &Blob,
        meta: &FrameMeta,
        extras: &FrameExtras<'_>,
    ) -> Result<()> {
        let d = self.frame_descriptor(meta, extras);
        self.send_metas_first(extras, |s| s.send_blob_as(d, blob))?;
        self.missed = 0;
        Ok(())
    }

    /// Blob bytes this consumer holds (sent, not yet returned).
    pub fn blob_bytes(&self) -> usize {
        self.blob_bytes
    }

    /// Blobs this consumer holds.
    pub fn blobs_in_flight(&self) -> usize {
        self.blobs.len()
    }

    /// Whether a blob of `len` bytes could be sent to this consumer now as
    /// far as its blob budget goes (the descriptor ring may still be full).
    pub fn blob_fits(&self, len: usize) -> bool {
        self.blobs.len() < MAX_BLOBS as usize
            && self.blob_bytes.saturating_add(len) <= self.blob_budget
    }

    /// Tells the consumer why it is being dropped, just before the producer
    /// lets go of it: its receiver reports [`Error::Dropped`] with `reason`
    /// instead of a bare [`Error::Disconnected`]. Best effort (never waits).
    pub fn say_goodbye(&mut self, reason: &str) {
        let _ = messages::send_bye(self.msgs.as_fd(), reason);
    }

    /// The next upstream message from the consumer (for GStreamer: an
    /// upstream event as a string), if one is queued. Anything else on the
    /// message socket is [`Error::Protocol`]; the consumer having closed it
    /// is [`Error::Disconnected`].
    pub fn try_recv_upstream(&mut self) -> Result<Option<String>> {
        if !self.early_upstream.is_empty() {
            return Ok(Some(self.early_upstream.remove(0)));
        }
        upstream_message(self.msgs.as_fd())
    }

    /// Waits up to `timeout` for the consumer's verdict on the stream it was
    /// served: `Ok` once it checked everything and took it,
    /// [`Error::Rejected`] with its reason when it refused (an arena bigger
    /// than it accepts, say), [`Error::Disconnected`] when it hung up
    /// without a word. [`serve`](super::serve) does this; a producer that
    /// serves with [`serve_arena`](super::serve_arena) may call it, or learn
    /// the same later from its next wait.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = crate::sys::deadline_in(timeout);
        let mut buf = Vec::new();
        loop {
            match messages::recv_until(self.msgs.as_fd(), deadline)? {
                Message::Ready => {
                    // Upstream messages that came before it stay for later.
                    self.early_upstream.append(&mut buf);
                    return Ok(());
                }
                Message::Refuse(why) => return Err(Error::Rejected(why)),
                Message::Upstream(s) => buf.push(s),
                _ => return Err(Error::Protocol("consumer sent a producer's message".into())),
            }
        }
    }

    /// A handle that takes this consumer's upstream messages from another
    /// thread (a duplicate of the message socket's fd): see
    /// [`UpstreamReceiver`].
    pub fn upstream_receiver(&self) -> Result<UpstreamReceiver> {
        Ok(UpstreamReceiver {
            sock: self
                .msgs
                .try_clone()
                .map_err(|e| Error::io("dup message socket", e))?,
        })
    }

    /// The message socket: readable when the consumer sent an upstream
    /// message (for pollers; see [`try_recv_upstream`](Self::try_recv_upstream)).
    pub fn upstream_fd(&self) -> BorrowedFd<'_> {
        self.msgs.as_fd()
    }

    fn frame_descriptor(&self, meta: &FrameMeta, extras: &FrameExtras<'_>) -> Descriptor {
        let mut d = Descriptor::event(Kind::Frame);
        d.set_meta(meta);
        d.args[0] = self.missed;
        if let Some(l) = &extras.layout {
            d.set_layout(l);
        }
        d
    }

    /// Sends `extras.metas` (if any) and then the frame through `send`, or
    /// neither.
    fn send_metas_first(
        &mut self,
        extras: &FrameExtras<'_>,
        send: impl FnOnce(&mut Self) -> Result<()>,
    ) -> Result<()> {
        let Some(metas) = extras.metas else {
            return send(self);
        };
        if self.desc.slots()? < 2 {
            return Err(Error::Full);
        }
        self.send_string(Kind::Metas, metas)?;
        // Room for the frame's descriptor was checked above; a failure now
        // leaves a metas string without its frame: the consumer must go.
        send(self).map_err(|e| match e {
            e if e.is_would_block() => Error::Protocol(format!("frame lost after its metas: {e}")),
            e => e,
        })
    }

    fn send_blob_as(&mut self, mut d: Descriptor, blob: &Blob) -> Result<()> {
        let len = blob.len();
        if len > self.blob_budget {
            return Err(Error::InvalidArgument(format!(
                "a payload of {len} bytes exceeds the blob budget of {} bytes",
                self.blob_budget
            )));
        }
        if !self.blob_fits(len) || self.desc.slots()? == 0 {
            return Err(Error::Full);
        }
        let id = self.next_blob;
        messages::send_blob(self.msgs.as_fd(), id, len, blob.fd())?;
        d.storage = STORAGE_BLOB;
        d.slot = id;
        d.offset = 0;
        // Blobs are at most u32::MAX bytes (Blob::fill).
        d.size = len as u32;
        self.next_blob = (id + 1) & !BLOB_RETURN;
        self.blobs.push_back((id, len));
        self.blob_bytes += len;
        // Room was checked: a failure here leaves the consumer with a blob it
        // cannot place, so it must go.
        self.push(d).map_err(|e| match e {
            e if e.is_would_block() => Error::Protocol(format!("blob descriptor lost: {e}")),
            e => e,
        })
    }

    /// Records that a frame was skipped for this consumer (fan-out with a slow
    /// consumer): the next frame sent tells the consumer how many it missed
    /// ([`FrameRef::missed`](super::FrameRef::missed)).
    pub fn note_missed(&mut self) {
        self.missed = self.missed.saturating_add(1);
    }

    /// Sends the first `size` bytes of a leased slot as a frame and gives up the
    /// lease: the slot is free again once the consumer returns it. On error the
    /// lease comes back in the [`LeaseError`], its bytes as written, so the
    /// caller can wait and send it again ([`Error::Full`]) without filling
    /// another slot; `?` turns it into an [`Error`] (dropping the lease).
    ///
    /// # Errors
    ///
    /// [`Error::Full`] when the descriptor ring has no room; an
    /// [`Error::InvalidArgument`] for a lease of another arena or a size
    /// past the slot; [`Error::Disconnected`] when the consumer is gone.
    pub fn send_lease(
        &mut self,
        lease: SlotLease,
        size: usize,
        meta: &FrameMeta,
    ) -> std::result::Result<(), LeaseError> {
        let r = self
            .check_own(&lease)
            .and_then(|()| self.send_frame(lease.index(), 0, size, meta));
        match r {
            Ok(()) => Ok(()),
            Err(error) => Err(LeaseError { error, lease }),
        }
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
                if slot & BLOB_RETURN != 0 {
                    let id = slot & !BLOB_RETURN;
                    match self.blobs.iter().position(|&(b, _)| b == id) {
                        Some(i) => {
                            let (_, len) = self.blobs.remove(i).unwrap_or((id, 0));
                            self.blob_bytes -= len;
                        }
                        None => self.bad_returns += 1,
                    }
                    continue;
                }
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

    /// A [`PeerWatch`] of the consumer for another thread (a control
    /// thread, an event loop; see [`Producer::peer_watch`]): once it saw the
    /// consumer go, every send that finds the descriptor ring full returns
    /// [`Error::Disconnected`] instead of [`Error::Full`], with no system
    /// call of its own. A real-time producer whose [`try_lease`](Self::try_lease)
    /// finds no free slot asks [`PeerWatch::is_gone`] (no system call) whether
    /// the consumer died holding them.
    ///
    /// ```
    /// use shmring::frames::{self, FrameConfig, FrameMeta};
    ///
    /// let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 64).descriptors(2))?;
    /// let watch = tx.peer_watch()?;
    /// for _ in 0..2 {
    ///     let slot = tx.try_lease().expect("a free slot");
    ///     tx.send_lease(slot, 8, &FrameMeta::default())?;
    /// }
    /// drop(rx); // the consumer dies, its ring full
    /// assert!(matches!(tx.send_eos(), Err(shmring::Error::Full))); // nobody looked yet
    /// assert!(!watch.check()); // the control thread looks: gone
    /// assert!(watch.is_gone());
    /// assert!(matches!(tx.send_eos(), Err(shmring::Error::Disconnected)));
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn peer_watch(&self) -> Result<PeerWatch> {
        self.desc.peer_watch()
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
        self.blobs.clear();
        self.blob_bytes = 0;
    }

    /// The socket that hangs up when the consumer goes away (for pollers).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.desc.link_fd()
    }

    /// Sends a descriptor exactly as given, unchecked: for tests of consumers
    /// against a hostile producer (with the `test-support` feature only).
    #[cfg(feature = "test-support")]
    pub fn send_raw(&mut self, d: Descriptor) -> Result<()> {
        self.desc.try_push(d)
    }

    /// The producer's end of the message socket, for tests of consumers
    /// against a producer that sends any message and fd on it (with the
    /// `test-support` feature only).
    #[cfg(feature = "test-support")]
    pub fn message_fd(&self) -> BorrowedFd<'_> {
        self.msgs.as_fd()
    }

    fn check_own(&self, lease: &SlotLease) -> Result<()> {
        if lease.arena().as_ptr() != self.arena.as_ptr() {
            return Err(Error::InvalidArgument("lease from another arena".into()));
        }
        Ok(())
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

/// A lease [`FrameSender::send_lease`] could not send, and why: the lease is
/// still the caller's. Makes no allocation (usable in a real-time callback).
#[derive(Debug)]
pub struct LeaseError {
    /// Why the frame was not sent.
    pub error: Error,
    /// The lease, with the bytes written to it.
    pub lease: SlotLease,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "slot {} not sent: {}", self.lease.index(), self.error)
    }
}

impl std::error::Error for LeaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<LeaseError> for Error {
    fn from(e: LeaseError) -> Error {
        e.error
    }
}

/// What a frame carries beside its bytes and [`FrameMeta`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameExtras<'a> {
    /// How its bytes are laid out in planes (for GStreamer: `GstVideoMeta`).
    pub layout: Option<PlaneLayout>,
    /// Other metadata as a string, sent just before the frame (for
    /// GStreamer: its metas).
    pub metas: Option<&'a str>,
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
