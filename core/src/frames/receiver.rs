//! The consuming end of a frame stream.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::arena::ArenaView;
use super::descriptor::{Descriptor, FrameMeta, Kind, SegmentInfo};
use crate::{Consumer, Error, Producer, Result};

/// What the producer sent, in order.
#[derive(Debug)]
pub enum Received {
    /// A frame (its slot goes back when the `FrameRef` drops).
    Frame(FrameRef),
    /// The stream's format (GStreamer caps as a string).
    Caps(String),
    /// Tags as a string.
    Tags(String),
    /// Stream start, with the stream id.
    StreamStart(String),
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

/// Returns slots to the producer from whatever thread drops a [`FrameRef`].
#[derive(Debug)]
struct Returner {
    ring: Mutex<Producer<u32>>,
    /// Slots this consumer holds (received, not yet returned).
    held: Box<[AtomicBool]>,
    /// How many of `held` are set.
    held_count: AtomicUsize,
}

impl Returner {
    fn give_back(&self, slot: u32) {
        if let Some(h) = self.held.get(slot as usize) {
            if h.swap(false, Ordering::AcqRel) {
                self.held_count.fetch_sub(1, Ordering::Relaxed);
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

/// A frame: bytes in a slot of the read-only mapped arena, and their
/// [`FrameMeta`]. Dropping it (from any thread) returns the slot.
///
/// The bytes are in memory the producer can still write while you read them:
/// parse them as untrusted input.
#[derive(Debug)]
pub struct FrameRef {
    arena: ArenaView,
    returner: Arc<Returner>,
    slot: u32,
    offset: u32,
    size: u32,
    meta: FrameMeta,
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

    /// The slot number.
    pub fn slot(&self) -> u32 {
        self.slot
    }

    /// The frame's bytes (same as `as_ref()`).
    pub fn bytes(&self) -> &[u8] {
        self.arena.bytes(self.slot, self.offset, self.size)
    }
}

impl AsRef<[u8]> for FrameRef {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

impl Drop for FrameRef {
    fn drop(&mut self) {
        self.returner.give_back(self.slot);
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
}

impl FrameReceiver {
    pub(crate) fn new(
        arena: ArenaView,
        desc: Consumer<Descriptor>,
        returns: Producer<u32>,
    ) -> Self {
        let held = (0..arena.slots()).map(|_| AtomicBool::new(false)).collect();
        FrameReceiver {
            arena,
            desc,
            returner: Arc::new(Returner {
                ring: Mutex::new(returns),
                held,
                held_count: AtomicUsize::new(0),
            }),
            next_seq: 0,
        }
    }

    /// The read-only arena.
    pub fn arena(&self) -> ArenaView {
        self.arena.clone()
    }

    /// How many slots this consumer holds right now (frames not yet dropped).
    /// When it nears [`ArenaView::slots`], the producer is about to starve:
    /// copy frames out and drop them rather than keep them.
    pub fn frames_held(&self) -> usize {
        self.returner.held_count.load(Ordering::Relaxed)
    }

    /// The next message if one is ready. A descriptor that breaks the rules is
    /// an [`Error::BadDescriptor`].
    pub fn try_recv(&mut self) -> Result<Option<Received>> {
        let d = match self.desc.try_pop() {
            Ok(d) => d,
            Err(Error::Empty) => return Ok(None),
            Err(e) => return Err(e),
        };
        // `d` is our copy: check it, then use only it.
        self.decode(d).map(Some)
    }

    /// The next message, waiting up to `timeout` (`None`: forever) for it.
    /// [`Error::Disconnected`] once the producer is gone and everything it sent
    /// was received.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Received> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(m) = self.try_recv()? {
                return Ok(m);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            self.desc.wait_readable(left)?;
        }
    }

    /// `true` unless the producer is known to be gone.
    pub fn is_peer_alive(&mut self) -> bool {
        self.desc.is_peer_alive()
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

    /// Puts `slot` on the return ring exactly as given, unchecked: for tests of
    /// producers against a hostile consumer. Not part of the stable API.
    #[doc(hidden)]
    pub fn return_raw(&self, slot: u32) -> Result<()> {
        match self.returner.ring.lock() {
            Ok(mut ring) => ring.try_push(slot),
            Err(_) => Err(Error::InvalidArgument("return ring lock poisoned".into())),
        }
    }

    fn decode(&mut self, d: Descriptor) -> Result<Received> {
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
        if kind.has_payload() {
            let held = &self.returner.held[d.slot as usize];
            if held.swap(true, Ordering::AcqRel) {
                return Err(bad(format!("slot {} sent again while we hold it", d.slot)));
            }
            self.returner.held_count.fetch_add(1, Ordering::Relaxed);
        }
        let frame = || FrameRef {
            arena: self.arena.clone(),
            returner: self.returner.clone(),
            slot: d.slot,
            offset: d.offset,
            size: d.size,
            meta: d.meta(),
            missed: d.args[0],
        };
        let string = |what: &str| -> Result<String> {
            // Copy out, then return the slot at once (the FrameRef drops here).
            let f = frame();
            String::from_utf8(f.bytes().to_vec()).map_err(|_| bad(format!("{what} is not UTF-8")))
        };
        Ok(match kind {
            Kind::Frame => Received::Frame(frame()),
            Kind::Caps => Received::Caps(string("caps")?),
            Kind::Tags => Received::Tags(string("tags")?),
            Kind::StreamStart => Received::StreamStart(string("stream id")?),
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
        })
    }
}

impl AsFd for FrameReceiver {
    /// Readable when descriptors arrived while this end announced a sleep.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.desc.as_fd()
    }
}
