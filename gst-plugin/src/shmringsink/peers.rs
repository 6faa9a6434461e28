//! The consumers of a `shmringsink`: each one's sender, the buffers it holds,
//! its place in the slow-consumer policy, and the counters behind the
//! `stats` property.

use std::time::Instant;

use gst::prelude::*;
use shmring::frames::{Blob, FrameMeta, FrameSender, SegmentInfo};

use crate::clock::Timeline;

/// Counters of one consumer, as the `stats` property shows them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PeerStats {
    pub(super) pid: i32,
    pub(super) uid: u32,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) drops: u64,
    pub(super) held: u64,
    pub(super) bad_returns: u64,
}

#[derive(Debug, Default, Clone)]
pub(super) struct Stats {
    pub(super) zero_copy: u64,
    pub(super) copied: u64,
    pub(super) bytes: u64,
    /// Consumers served since `start`.
    pub(super) consumers_served: u64,
    /// Buffers no consumer received (none connected, or none could take it).
    pub(super) dropped: u64,
    /// Frames single consumers missed (slow-consumer policy, joining or
    /// resuming at a keyframe), summed over the consumers that are gone
    /// (the live ones' are in `peers`).
    pub(super) drops: u64,
    /// Slot returns ignored (never sent to that consumer, returned twice, out
    /// of range), summed over the consumers that are gone.
    pub(super) bad_returns: u64,
    /// Consumers the sink let go (hang-up, timeout, policy, protocol error).
    pub(super) disconnects: u64,
    /// Connections turned away before being served: no hello in time, too
    /// many pending handshakes, bad hello, uid, `max-consumers`.
    pub(super) refused: u64,
    /// The connected consumers, refreshed after every buffer.
    pub(super) peers: Vec<PeerStats>,
    /// Slots some consumer holds, and slots marked held that no connected
    /// consumer holds (always 0 unless slots leak); refreshed whenever a
    /// consumer joins or leaves and every [`ARENA_STATS_EVERY`] buffers.
    pub(super) slots_in_flight: u64,
    pub(super) leaked_slots: u64,
}

/// How often (in buffers) the arena-wide stats are recomputed.
pub(super) const ARENA_STATS_EVERY: u64 = 32;

/// One connected consumer.
pub(super) struct Peer {
    pub(super) pid: i32,
    pub(super) uid: u32,
    pub(super) tx: FrameSender,
    /// Buffers sent to this consumer, by slot, held until it returns the slot
    /// (the buffer goes back to the pool when every consumer returned it).
    pub(super) held: Vec<Option<gst::Buffer>>,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    pub(super) drops: u64,
    /// Since when it has missed every frame (drop and disconnect policies).
    pub(super) behind_since: Option<Instant>,
    /// It missed frames (or just joined): frames flagged DELTA_UNIT are
    /// skipped until a keyframe.
    pub(super) need_keyframe: bool,
    /// A keyframe was asked of upstream for it.
    pub(super) key_requested: bool,
    /// The next frame it gets carries DISCONT.
    pub(super) discont: bool,
    /// It missed events: the sticky ones (stream-start, caps, segment) are
    /// sent again before its next frame.
    pub(super) resync: bool,
    pub(super) timeline_sent: Option<Timeline>,
    /// It has the stream's header buffers (or joined before there were any).
    pub(super) headers_sent: bool,
    /// How many of the stored headers it got so far.
    pub(super) headers_done: usize,
    /// Still to receive the frame being delivered.
    pub(super) todo: bool,
    /// Why it must go, once found out (removed by `remove_gone`).
    pub(super) gone: Option<shmring::Error>,
}

impl Peer {
    pub(super) fn new(tx: FrameSender, pid: i32, uid: u32) -> Self {
        let slots = tx.slots() as usize;
        Peer {
            pid,
            uid,
            tx,
            held: (0..slots).map(|_| None).collect(),
            frames: 0,
            bytes: 0,
            drops: 0,
            behind_since: None,
            need_keyframe: true,
            key_requested: false,
            discont: false,
            resync: true,
            timeline_sent: None,
            headers_sent: false,
            headers_done: 0,
            todo: false,
            gone: None,
        }
    }

    /// Takes the slots it returned (letting go of their buffers).
    pub(super) fn reclaim(&mut self) -> usize {
        let Peer { tx, held, gone, .. } = self;
        match tx.reclaim(|slot| {
            if let Some(h) = held.get_mut(slot as usize) {
                *h = None;
            }
        }) {
            Ok(n) => n,
            Err(e) => {
                gone.get_or_insert(e);
                0
            }
        }
    }

    /// Marks it gone on an error other than "no room".
    pub(super) fn note(&mut self, r: shmring::Result<()>) -> Result<(), ()> {
        match r {
            Ok(()) => Ok(()),
            Err(shmring::Error::Full) => Err(()),
            Err(e) => {
                self.gone.get_or_insert(e);
                Err(())
            }
        }
    }

    /// It misses the frame being delivered.
    pub(super) fn miss(&mut self, now: Instant) {
        self.todo = false;
        self.drops += 1;
        self.tx.note_missed();
        self.need_keyframe = true;
        self.discont = true;
        self.behind_since.get_or_insert(now);
    }

    pub(super) fn stats(&self) -> PeerStats {
        PeerStats {
            pid: self.pid,
            uid: self.uid,
            frames: self.frames,
            bytes: self.bytes,
            drops: self.drops,
            held: self.tx.in_flight() as u64,
            bad_returns: self.tx.bad_returns(),
        }
    }
}

/// The stream's sticky state, sent to a consumer that joins or missed events.
#[derive(Default)]
pub(super) struct Sticky {
    /// Stream id, flags and group id.
    pub(super) stream_start: Option<(String, u32, Option<u32>)>,
    pub(super) caps: Option<String>,
    pub(super) segment: Option<SegmentInfo>,
    /// The stream's latest run of `HEADER` buffers, for consumers that join
    /// later.
    pub(super) headers: Vec<(Blob, FrameMeta)>,
    /// The latest tags of each scope (stream, global), as strings.
    pub(super) tags: Vec<(gst::TagScope, String)>,
    /// Other sticky events (TOC, custom sticky events) as strings, by kind.
    pub(super) events: Vec<(String, String)>,
}

impl Stats {
    pub(super) fn to_structure(&self) -> gst::Structure {
        let peers = gst::Array::new(self.peers.iter().map(|p| {
            gst::Structure::builder("consumer")
                .field("pid", p.pid)
                .field("uid", p.uid)
                .field("frames", p.frames)
                .field("bytes", p.bytes)
                .field("drops", p.drops)
                .field("held", p.held)
                .field("bad-returns", p.bad_returns)
                .build()
                .to_send_value()
        }));
        let live_bad: u64 = self.peers.iter().map(|p| p.bad_returns).sum();
        let live_drops: u64 = self.peers.iter().map(|p| p.drops).sum();
        gst::Structure::builder("shmringsink-stats")
            .field("frames", self.zero_copy + self.copied)
            .field("zero-copy", self.zero_copy)
            .field("copied", self.copied)
            .field("bytes", self.bytes)
            .field("consumers", self.peers.len() as u64)
            .field("consumers-served", self.consumers_served)
            .field("dropped", self.dropped)
            .field("drops", self.drops + live_drops)
            .field("bad-returns", self.bad_returns + live_bad)
            .field("disconnects", self.disconnects)
            .field("refused", self.refused)
            .field("slots-in-flight", self.slots_in_flight)
            .field("leaked-slots", self.leaked_slots)
            .field("peers", peers)
            .build()
    }
}
