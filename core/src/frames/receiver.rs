//! The consuming end of a frame stream.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::arena::ArenaView;
use super::blob::BlobView;
use super::descriptor::{Descriptor, FrameMeta, Kind, PlaneLayout, SegmentInfo, STORAGE_BLOB};
use super::messages::{self, Message};
use super::sender::{BLOB_RETURN, MAX_BLOBS};
use super::switch;
use crate::{Consumer, Error, PeerWatch, Producer, Result};

/// Most arena switches [`FrameReceiver::try_recv`] takes in one call.
const SWITCHES_PER_CALL: usize = 64;

/// What the producer sent, in order.
#[derive(Debug)]
pub enum Received {
    /// A frame (its slot goes back when the `FrameRef` drops).
    Frame(FrameRef),
    /// The stream's format (GStreamer caps as a string).
    Caps(String),
    /// Tags as a string.
    Tags(String),
    /// Metadata of the next frame as a string (for GStreamer: its metas).
    Metas(String),
    /// Another in-band event as a string (for GStreamer: a serialized
    /// downstream event).
    Event(String),
    /// Stream start: the stream id, flags and group.
    StreamStart(StreamStart),
    /// A segment.
    Segment(SegmentInfo),
    /// End of stream.
    Eos,
    /// Flush start.
    FlushStart,
    /// Flush stop.
    FlushStop {
        /// Whether running time restarts at 0.
        reset_time: bool,
    },
    /// Nothing for `duration` from `pts`.
    Gap {
        /// Start (ns).
        pts: u64,
        /// Length (ns).
        duration: u64,
    },
}

/// A stream start as the producer announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStart {
    /// The stream id.
    pub id: String,
    /// Flags, opaque to shmring (for GStreamer: `GstStreamFlags`).
    pub flags: u32,
    /// The group the stream belongs to, if the producer named one.
    pub group_id: Option<u32>,
}

/// Returns slots to the producer from whatever thread drops a [`FrameRef`].
#[derive(Debug)]
struct Returner {
    ring: Mutex<Producer<u32>>,
    /// Slots this consumer holds (received, not yet returned), by number:
    /// sized for the largest arena the stream may switch to, so that a
    /// switch never resizes what other threads read (slot numbers index the
    /// current arena; a switch comes only when none is held).
    held: Box<[AtomicBool]>,
    /// How many of `held` are set.
    held_count: AtomicUsize,
    /// Blobs this consumer holds.
    blobs_held: AtomicUsize,
}

impl Returner {
    fn give_back_blob(&self, id: u32) {
        self.blobs_held.fetch_sub(1, Ordering::Relaxed);
        if let Ok(mut ring) = self.ring.lock() {
            let _ = ring.try_push(id | BLOB_RETURN);
        }
    }

    fn give_back(&self, slot: u32) {
        if let Some(h) = self.held.get(slot as usize) {
            if h.swap(false, Ordering::AcqRel) {
                self.held_count.fetch_sub(1, Ordering::Release);
            }
        }
        // The return ring has room for every slot, so it is never full unless the
        // producer stopped reading it; then there is nobody to give the slot to.
        // A poisoned lock means a panic elsewhere; the slot stays out.
        if let Ok(mut ring) = self.ring.lock() {
            let _ = ring.try_push(slot);
        }
    }
}

/// Where a frame's bytes are.
#[derive(Debug)]
enum Payload {
    /// In a slot of the arena, which the producer can still write.
    Slot { arena: ArenaView, offset: u32 },
    /// In a blob of its own, sealed against every write.
    Blob(BlobView),
}

/// A frame: bytes in a slot of the read-only mapped arena (or in a sealed
/// blob of its own), and their [`FrameMeta`]. Dropping it (from any thread)
/// gives the slot or blob back.
///
/// Unless [`is_immutable`](Self::is_immutable), the bytes are in memory the
/// producer can still write while you read them: parse them as untrusted
/// input, or copy them first.
#[derive(Debug)]
pub struct FrameRef {
    payload: Payload,
    returner: Arc<Returner>,
    slot: u32,
    size: u32,
    meta: FrameMeta,
    layout: Option<PlaneLayout>,
    missed: u64,
}

impl FrameRef {
    /// Timing and flags.
    pub fn meta(&self) -> &FrameMeta {
        &self.meta
    }

    /// Frames the producer skipped for this consumer just before this one
    /// (it was too slow, or joined between keyframes), as the producer says:
    /// a figure to count, not to size anything by.
    pub fn missed(&self) -> u64 {
        self.missed
    }

    /// The slot number (for a blob: its number among blobs).
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The frame's plane layout, as the producer described it (unchecked:
    /// make sure every plane lies inside [`bytes`](Self::bytes) before
    /// reading through it).
    pub fn layout(&self) -> Option<&PlaneLayout> {
        self.layout.as_ref()
    }

    /// `true` when nobody, the producer included, can change the bytes any
    /// more (a sealed blob): they may be parsed in place. `false` for an
    /// arena slot, which the producer can still write.
    pub fn is_immutable(&self) -> bool {
        matches!(self.payload, Payload::Blob(_))
    }

    /// The frame's bytes (same as `as_ref()`).
    pub fn bytes(&self) -> &[u8] {
        match &self.payload {
            Payload::Slot { arena, offset } => arena.bytes(self.slot, *offset, self.size),
            Payload::Blob(b) => b.bytes(),
        }
    }
}

impl AsRef<[u8]> for FrameRef {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Drop for FrameRef {
    fn drop(&mut self) {
        match self.payload {
            Payload::Slot { .. } => self.returner.give_back(self.slot),
            Payload::Blob(_) => self.returner.give_back_blob(self.slot),
        }
    }
}

/// Sends upstream messages (for GStreamer: upstream events) from any thread
/// to the producer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamSender {
    sock: Arc<OwnedFd>,
}

impl UpstreamSender {
    /// Sends `s` (at most [`MAX_MESSAGE`](super::MAX_MESSAGE) bytes). Never
    /// waits: [`Error::Full`] when the producer has not read the earlier
    /// ones, [`Error::Disconnected`] when it is gone.
    pub fn send(&self, s: &str) -> Result<()> {
        messages::send_upstream(self.sock.as_fd(), s)
    }
}

/// The consuming end: the arena (read-only), the descriptor ring's reader and
/// the return ring's writer.
#[derive(Debug)]
pub struct FrameReceiver {
    arena: ArenaView,
    desc: Consumer<Descriptor>,
    returner: Arc<Returner>,
    next_seq: u64,
    /// The consumer's end of the message socket.
    msgs: Arc<OwnedFd>,
    next_blob: u32,
    /// The producer's reason for dropping us, once read.
    goodbye: Option<String>,
    /// Largest arena (bytes) this consumer maps, at a switch too.
    max_arena: usize,
    /// Arena switches taken.
    switches: u64,
}

impl FrameReceiver {
    pub(crate) fn new(
        arena: ArenaView,
        desc: Consumer<Descriptor>,
        returns: Producer<u32>,
        msgs: OwnedFd,
        max_arena: usize,
    ) -> Self {
        let slots = switch::max_slots(returns.capacity(), arena.slots());
        let held = (0..slots).map(|_| AtomicBool::new(false)).collect();
        FrameReceiver {
            arena,
            desc,
            returner: Arc::new(Returner {
                ring: Mutex::new(returns),
                held,
                held_count: AtomicUsize::new(0),
                blobs_held: AtomicUsize::new(0),
            }),
            next_seq: 0,
            msgs: Arc::new(msgs),
            next_blob: 0,
            goodbye: None,
            max_arena,
            switches: 0,
        }
    }

    /// A handle that sends upstream messages to the producer from any thread.
    pub fn upstream(&self) -> UpstreamSender {
        UpstreamSender {
            sock: self.msgs.clone(),
        }
    }

    /// The read-only arena: the one served at connect, or the last one the
    /// producer switched this consumer to (a switch comes only once every
    /// frame in a slot of the old one was dropped).
    pub fn arena(&self) -> ArenaView {
        self.arena.clone()
    }

    /// Arena switches taken (see
    /// [`FrameSender::switch_arena`](super::FrameSender::switch_arena)).
    pub fn arena_switches(&self) -> u64 {
        self.switches
    }

    /// How many slots this consumer holds right now (frames not yet dropped).
    /// When it nears [`ArenaView::slots`], the producer is about to starve:
    /// copy frames out and drop them rather than keep them.
    pub fn frames_held(&self) -> usize {
        self.returner.held_count.load(Ordering::Relaxed)
    }

    /// The next message if one is ready (`Ok(None)`: none yet).
    ///
    /// # Errors
    ///
    /// * [`Error::BadDescriptor`]: the producer wrote a descriptor that
    ///   breaks the rules (a hostile or broken producer; the stream is over);
    /// * [`Error::Disconnected`]: the producer is known to be gone (a wait,
    ///   a liveness check or a [`PeerWatch`] saw it) and everything it sent
    ///   was received; [`Error::Dropped`] instead when it said why it
    ///   dropped this consumer;
    /// * [`Error::Protocol`]: an announced blob did not arrive as announced;
    /// * [`Error::BadSegment`]: the memfd of a blob or of a new arena is not
    ///   sealed as it must be, or shorter than announced.
    ///
    /// An arena switch is taken on the way (after the same checks as the
    /// arena at connect, and only while no slot of the current arena is
    /// held: else [`Error::BadDescriptor`]) and is not returned; `Ok(None)`
    /// may then come although more is queued.
    pub fn try_recv(&mut self) -> Result<Option<Received>> {
        // Arena switches are taken here, not returned; a bounded number per
        // call, so that a producer flooding them cannot keep us here.
        for _ in 0..SWITCHES_PER_CALL {
            let d = match self.desc.try_pop() {
                Ok(d) => d,
                Err(Error::Empty) => return Ok(None),
                Err(e) => return Err(self.why(e)),
            };
            // `d` is our copy: check it, then use only it.
            if let Some(m) = self.decode(d)? {
                return Ok(Some(m));
            }
        }
        Ok(None)
    }

    /// The next message, waiting up to `timeout` (`None`: forever) for it.
    /// [`Error::Disconnected`] once the producer is gone and everything it sent
    /// was received.
    ///
    /// When the producer said why it dropped this consumer before it hung
    /// up, the error is [`Error::Dropped`] with its reason.
    ///
    /// # Errors
    ///
    /// Those of [`try_recv`](Self::try_recv), and [`Error::Timeout`] when
    /// nothing came within `timeout`.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Received> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(m) = self.try_recv()? {
                return Ok(m);
            }
            // `try_recv` may return nothing although more is queued (a run of
            // arena switches): the deadline holds all the same.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.desc.wait_readable(left) {
                return Err(self.why(e));
            }
        }
    }

    /// `Disconnected` (or `PeerDied`) becomes `Dropped` when the producer
    /// left a reason (kept: see [`goodbye`](Self::goodbye)).
    fn why(&mut self, e: Error) -> Error {
        if !matches!(e, Error::Disconnected | Error::PeerDied) {
            return e;
        }
        if self.goodbye.is_none() {
            // Blobs nobody announced may precede the goodbye: skip them.
            for _ in 0..=MAX_BLOBS {
                match messages::try_recv(self.msgs.as_fd()) {
                    Ok(Some(Message::Bye(reason))) => {
                        self.goodbye = Some(reason);
                        break;
                    }
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
        match &self.goodbye {
            Some(reason) => Error::Dropped(reason.clone()),
            None => e,
        }
    }

    /// Why the producer dropped this consumer, once it is gone and every
    /// message it sent was received (`None` while it is there, or when it
    /// left without a word). A receive that ended with [`Error::Dropped`]
    /// already told; this also serves who learned of the end otherwise (a
    /// liveness check, an event loop's `Closed`). Costs a `poll` and a
    /// `recvmsg` or two until it knows.
    pub fn goodbye(&mut self) -> Option<&str> {
        if self.goodbye.is_none()
            && !self.desc.is_peer_alive()
            && self.desc.slots().is_ok_and(|n| n == 0)
        {
            // Everything was received: no blob is still to come.
            let _ = self.why(Error::Disconnected);
        }
        self.goodbye.as_deref()
    }

    /// `true` unless the producer is known to be gone.
    pub fn is_peer_alive(&mut self) -> bool {
        self.desc.is_peer_alive()
    }

    /// A [`PeerWatch`] of the producer for another thread (see
    /// [`Consumer::peer_watch`]): once it saw the producer go,
    /// [`try_recv`](Self::try_recv) on an empty ring returns
    /// [`Error::Disconnected`] (or [`Error::Dropped`] with the producer's
    /// reason) instead of `Ok(None)`, with no system call of its own.
    pub fn peer_watch(&self) -> Result<PeerWatch> {
        self.desc.peer_watch()
    }

    /// The socket that hangs up when the producer goes away (for pollers).
    pub fn link_fd(&self) -> BorrowedFd<'_> {
        self.desc.link_fd()
    }

    /// Announces that the caller is about to sleep in its own poller; see
    /// [`Consumer::prepare_sleep`].
    pub fn prepare_sleep(&mut self) -> Result<bool> {
        self.desc.prepare_sleep()
    }

    /// Empties the wake-up fd; see [`Consumer::drain_signal`].
    pub fn drain_signal(&self) -> Result<()> {
        self.desc.drain_signal()
    }

    /// This consumer's end of the message socket, for tests of producers
    /// against a consumer that writes anything on it (with the
    /// `test-support` feature only).
    #[cfg(feature = "test-support")]
    pub fn message_fd(&self) -> BorrowedFd<'_> {
        self.msgs.as_fd()
    }

    /// Puts `slot` on the return ring exactly as given, unchecked: for tests of
    /// producers against a hostile consumer (with the `test-support`
    /// feature only).
    #[cfg(feature = "test-support")]
    pub fn return_raw(&self, slot: u32) -> Result<()> {
        match self.returner.ring.lock() {
            Ok(mut ring) => ring.try_push(slot),
            Err(_) => Err(Error::InvalidArgument("return ring lock poisoned".into())),
        }
    }

    /// Checks descriptor `d` (our copy) and turns it into what it announces
    /// (`None`: an arena switch, taken).
    fn decode(&mut self, d: Descriptor) -> Result<Option<Received>> {
        let bad = |m: String| Error::BadDescriptor(m);
        if d.seq != self.next_seq {
            return Err(bad(format!(
                "sequence {} where {} was due",
                d.seq, self.next_seq
            )));
        }
        self.next_seq += 1;
        let kind = d
            .check(self.arena.slots(), self.arena.slot_size())
            .map_err(bad)?;
        if kind == Kind::Arena {
            self.switch_arena(&d)?;
            return Ok(None);
        }
        let frame = if kind.has_payload() {
            Some(self.frame_of(&d, kind)?)
        } else {
            None
        };
        let take = |f: Option<FrameRef>, what: &str| {
            f.ok_or_else(|| bad(format!("{what} without a payload")))
        };
        let string = |f: Option<FrameRef>, what: &str| -> Result<String> {
            // Copy out, then return the slot at once (the FrameRef drops here).
            let f = take(f, what)?;
            let s = String::from_utf8(f.bytes().to_vec())
                .map_err(|_| bad(format!("{what} is not UTF-8")))?;
            // No C string may hold a NUL: GStreamer would refuse (or abort
            // on) any of these strings with one.
            if s.contains('\0') {
                return Err(bad(format!("{what} holds a NUL byte")));
            }
            Ok(s)
        };
        Ok(Some(match kind {
            Kind::Frame => Received::Frame(take(frame, "frame")?),
            Kind::Caps => Received::Caps(string(frame, "caps")?),
            Kind::Tags => Received::Tags(string(frame, "tags")?),
            Kind::Metas => Received::Metas(string(frame, "metas")?),
            Kind::Event => Received::Event(string(frame, "event")?),
            Kind::StreamStart => Received::StreamStart(StreamStart {
                id: string(frame, "stream id")?,
                flags: d.args[0] as u32,
                group_id: (d.args[1] >> 32 == 1).then_some(d.args[1] as u32),
            }),
            Kind::Segment => Received::Segment(d.segment().map_err(bad)?),
            Kind::Eos => Received::Eos,
            Kind::FlushStart => Received::FlushStart,
            Kind::FlushStop => Received::FlushStop {
                reset_time: d.args[0] != 0,
            },
            Kind::Gap => Received::Gap {
                pts: d.pts,
                duration: d.duration,
            },
            Kind::Arena => return Err(bad("arena switch taken twice".into())),
        }))
    }

    /// Takes the arena switch `d` announces (see [`switch`]): only while no
    /// slot of the current arena is held (a producer that switches earlier
    /// would make the slot numbers on the return ring ambiguous).
    fn switch_arena(&mut self, d: &Descriptor) -> Result<()> {
        // Only this thread adds holds; a `FrameRef` dropped elsewhere clears
        // its flag before it lowers the count: at 0, no flag is set.
        let held = self.returner.held_count.load(Ordering::Acquire);
        if held != 0 {
            return Err(Error::BadDescriptor(format!(
                "arena switch while this consumer holds {held} slots of the current arena"
            )));
        }
        let max_slots = u32::try_from(self.returner.held.len()).unwrap_or(u32::MAX);
        self.arena = switch::accept(d, self.msgs.as_fd(), self.max_arena, max_slots)?;
        self.switches += 1;
        Ok(())
    }
}

impl FrameReceiver {
    /// The payload of checked descriptor `d` of `kind`, taken: a blob's fd
    /// from the message socket, or the slot, marked held (a slot we hold
    /// already is a bad descriptor).
    fn frame_of(&mut self, d: &Descriptor, kind: Kind) -> Result<FrameRef> {
        let bad = |m: String| Error::BadDescriptor(m);
        let layout = if kind == Kind::Frame {
            d.layout().map_err(bad)?
        } else {
            None
        };
        let payload = if d.storage == STORAGE_BLOB {
            Payload::Blob(self.take_blob(d)?)
        } else {
            // In range: checked against the arena, which never has more
            // slots than `held`.
            let held = self
                .returner
                .held
                .get(d.slot as usize)
                .ok_or_else(|| bad(format!("slot {} past the held table", d.slot)))?;
            if held.swap(true, Ordering::AcqRel) {
                return Err(bad(format!("slot {} sent again while we hold it", d.slot)));
            }
            self.returner.held_count.fetch_add(1, Ordering::Relaxed);
            Payload::Slot {
                arena: self.arena.clone(),
                offset: d.offset,
            }
        };
        Ok(FrameRef {
            payload,
            returner: self.returner.clone(),
            slot: d.slot,
            size: d.size,
            meta: d.meta(),
            layout,
            missed: d.args[0],
        })
    }

    /// The blob `d` announces: the next message on the message socket must be
    /// its fd (the producer sends it before the descriptor).
    fn take_blob(&mut self, d: &Descriptor) -> Result<BlobView> {
        let bad = |m: String| Error::BadDescriptor(m);
        if d.slot != self.next_blob {
            return Err(bad(format!(
                "blob {} where {} was due",
                d.slot, self.next_blob
            )));
        }
        if self.returner.blobs_held.load(Ordering::Relaxed) >= MAX_BLOBS as usize {
            return Err(bad(format!("more than {MAX_BLOBS} blobs at once")));
        }
        let msg = messages::try_recv(self.msgs.as_fd())
            .map_err(|e| bad(format!("blob {}: {e}", d.slot)))?;
        let (id, size, fd) = match msg {
            Some(Message::Blob { id, size, fd }) => (id, size, fd),
            Some(_) => return Err(bad(format!("blob {}: another message came", d.slot))),
            None => return Err(bad(format!("blob {} announced, its fd never came", d.slot))),
        };
        if id != d.slot || size != d.size as usize {
            return Err(bad(format!(
                "blob {id} of {size} bytes where blob {} of {} was announced",
                d.slot, d.size
            )));
        }
        let view = BlobView::open(fd, size)?;
        self.next_blob = (self.next_blob + 1) & !BLOB_RETURN;
        self.returner.blobs_held.fetch_add(1, Ordering::Relaxed);
        Ok(view)
    }
}

impl AsFd for FrameReceiver {
    /// Readable when descriptors arrived while this end announced a sleep.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.desc.as_fd()
    }
}
