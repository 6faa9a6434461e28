//! The consumers of a `shmringsink`: each one's sender, the buffers it holds,
//! what it still has to be sent to catch up, its place in the slow-consumer
//! policy and its counters; the fan-out of frames and events to all of them
//! ([`ShmringSink::deliver`], [`ShmringSink::send_event`]); letting go of
//! the ones that are gone; the `stats` property.

use std::cell::Cell;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gst::subclass::prelude::*;
use shmring::frames::{Arena, Blob, FrameExtras, FrameMeta, FrameSender, PlaneLayout, SegmentInfo};

use super::imp::{ShmringSink, State, CAT};
use super::SlowConsumer;
use crate::clock::Timeline;
use crate::util::{lock, retry_until, STEP};

/// Frame flags that matter here.
const DELTA_UNIT: u32 = gst::BufferFlags::DELTA_UNIT.bits();
const DISCONT: u32 = gst::BufferFlags::DISCONT.bits();
const HEADER: u32 = gst::BufferFlags::HEADER.bits();

/// How often (in buffers) the arena-wide stats are recomputed.
pub(super) const ARENA_STATS_EVERY: u64 = 32;

/// Counters of one consumer, as the `stats` property shows them.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct PeerStats {
    pub(super) pid: i32,
    pub(super) uid: u32,
    pub(super) frames: u64,
    pub(super) bytes: u64,
    /// Frames it missed (`drops` in the stats).
    pub(super) missed: u64,
    pub(super) held: u64,
    pub(super) bad_returns: u64,
    pub(super) arena_switches: u64,
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
    /// (the live ones' are in `peers`); `drops` in the stats.
    pub(super) missed: u64,
    /// Slot returns ignored (never sent to that consumer, returned twice, out
    /// of range), summed over the consumers that are gone.
    pub(super) bad_returns: u64,
    /// Consumers the sink let go (hang-up, timeout, policy, protocol error).
    pub(super) disconnects: u64,
    /// Times consumers were moved to a new arena (caps that need bigger
    /// slots), summed over the consumers that are gone.
    pub(super) arena_switches: u64,
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

impl Stats {
    pub(super) fn to_structure(&self) -> gst::Structure {
        let peers = gst::Array::new(self.peers.iter().map(|p| {
            gst::Structure::builder("consumer")
                .field("pid", p.pid)
                .field("uid", p.uid)
                .field("frames", p.frames)
                .field("bytes", p.bytes)
                .field("drops", p.missed)
                .field("held", p.held)
                .field("bad-returns", p.bad_returns)
                .build()
                .to_send_value()
        }));
        let live_bad: u64 = self.peers.iter().map(|p| p.bad_returns).sum();
        let live_missed: u64 = self.peers.iter().map(|p| p.missed).sum();
        let live_switches: u64 = self.peers.iter().map(|p| p.arena_switches).sum();
        gst::Structure::builder("shmringsink-stats")
            .field("frames", self.zero_copy + self.copied)
            .field("zero-copy", self.zero_copy)
            .field("copied", self.copied)
            .field("bytes", self.bytes)
            .field("consumers", self.peers.len() as u64)
            .field("consumers-served", self.consumers_served)
            .field("dropped", self.dropped)
            .field("drops", self.missed + live_missed)
            .field("bad-returns", self.bad_returns + live_bad)
            .field("disconnects", self.disconnects)
            .field("arena-switches", self.arena_switches + live_switches)
            .field("refused", self.refused)
            .field("slots-in-flight", self.slots_in_flight)
            .field("leaked-slots", self.leaked_slots)
            .field("peers", peers)
            .build()
    }

    /// At `stop`: the consumers are gone, their counts join the totals.
    pub(super) fn close(&mut self) {
        let peers = std::mem::take(&mut self.peers);
        self.missed += peers.iter().map(|p| p.missed).sum::<u64>();
        self.bad_returns += peers.iter().map(|p| p.bad_returns).sum::<u64>();
        self.arena_switches += peers.iter().map(|p| p.arena_switches).sum::<u64>();
        (self.slots_in_flight, self.leaked_slots) = (0, 0);
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

/// What a frame's bytes are, for [`ShmringSink::deliver`].
#[derive(Clone, Copy)]
pub(super) enum Payload<'a> {
    /// Bytes `offset..offset + size` of a slot of `arena`; `keep` (the
    /// buffer whose memory is the slot) is held for each consumer until it
    /// returns the slot.
    Slot {
        arena: &'a Arena,
        slot: u32,
        offset: usize,
        keep: Option<&'a gst::Buffer>,
    },
    /// A sealed memfd of its own (a buffer bigger than a slot).
    Blob(&'a Blob),
}

/// A frame on its way to the consumers.
pub(super) struct Outgoing<'a> {
    pub(super) payload: Payload<'a>,
    pub(super) size: usize,
    pub(super) meta: FrameMeta,
    pub(super) layout: Option<PlaneLayout>,
    pub(super) metas: Option<String>,
    /// A sealed copy of a slot payload, for consumers on another arena
    /// (not yet switched to the one the slot is in).
    pub(super) fallback: Option<Blob>,
}

impl Outgoing<'_> {
    /// What `tx`'s consumer is sent: the slot if it reads that slot's
    /// arena, else the sealed copy (`None`: there is none).
    fn payload_for(&self, tx: &FrameSender) -> Option<Payload<'_>> {
        match self.payload {
            Payload::Slot { arena, .. } if !tx.is_on(arena) => {
                self.fallback.as_ref().map(Payload::Blob)
            }
            p => Some(p),
        }
    }
}

/// One connected consumer.
pub(super) struct Peer {
    pub(super) pid: i32,
    pub(super) uid: u32,
    pub(super) tx: FrameSender,
    /// Buffers sent to this consumer, by slot, held until it returns the slot
    /// (the buffer goes back to the pool when every consumer returned it).
    held: Vec<Option<gst::Buffer>>,
    frames: u64,
    bytes: u64,
    missed: u64,
    /// Since when it has missed every frame (drop and disconnect policies).
    pub(super) behind_since: Option<Instant>,
    /// It missed frames (or just joined): frames flagged DELTA_UNIT are
    /// skipped until a keyframe.
    need_keyframe: bool,
    /// A keyframe was asked of upstream for it.
    key_requested: bool,
    /// The next frame it gets carries DISCONT.
    discont: bool,
    /// It missed events: the sticky ones (stream-start, caps, segment) are
    /// sent again before its next frame.
    resync: bool,
    timeline_sent: Option<Timeline>,
    /// It has the stream's header buffers (or joined before there were any).
    headers_sent: bool,
    /// How many of the stored headers it got so far.
    headers_done: usize,
    /// The frame or event being delivered is still owed to it.
    owed: bool,
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
            missed: 0,
            behind_since: None,
            need_keyframe: true,
            key_requested: false,
            discont: false,
            resync: true,
            timeline_sent: None,
            headers_sent: false,
            headers_done: 0,
            owed: false,
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

    /// Moves it to `arena` once it holds no slot of the one it reads (its
    /// returns taken first); until then what does not fit its slots goes as
    /// blobs. `true` if it switched now.
    pub(super) fn follow(&mut self, arena: &Arena) -> bool {
        if self.tx.is_on(arena) || self.gone.is_some() {
            return false;
        }
        self.reclaim();
        match self.tx.switch_arena(arena) {
            Ok(true) => {
                self.held = (0..arena.slots()).map(|_| None).collect();
                gst::info!(
                    CAT,
                    "pid {}: switched to the arena of {} slots of {} bytes",
                    self.pid,
                    arena.slots(),
                    arena.slot_size()
                );
                true
            }
            // It holds slots of the old one, or has no room now: later.
            Ok(false) | Err(shmring::Error::Full) => false,
            Err(shmring::Error::InvalidArgument(why)) => {
                // Its return ring is too small for that arena: it stays
                // on blobs.
                gst::debug!(CAT, "pid {} stays on its arena: {why}", self.pid);
                false
            }
            Err(e) => {
                self.gone.get_or_insert(e);
                false
            }
        }
    }

    /// Marks it gone if its link hung up, or it wrote bytes on it (a
    /// protocol violation).
    pub(super) fn check_link(&mut self) {
        if !self.tx.is_peer_alive() {
            self.gone.get_or_insert(shmring::Error::Disconnected);
        }
    }

    /// Sends with `f`: `true` if it went out; `false` if there was no room,
    /// or on another error, which marks it gone.
    fn send(&mut self, f: impl FnOnce(&mut FrameSender) -> shmring::Result<()>) -> bool {
        match f(&mut self.tx) {
            Ok(()) => true,
            Err(shmring::Error::Full) => false,
            Err(e) => {
                self.gone.get_or_insert(e);
                false
            }
        }
    }

    /// It misses the frame being delivered.
    fn miss(&mut self, now: Instant) {
        self.owed = false;
        self.missed += 1;
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
            missed: self.missed,
            held: self.tx.in_flight() as u64,
            bad_returns: self.tx.bad_returns(),
            arena_switches: self.tx.arena_switches(),
        }
    }

    /// Brings it up to date before a frame: the sticky events if it missed
    /// some, the stream's headers if it just joined, then the timeline if it
    /// changed. `false`: not yet (no room, or it is gone: see `gone`).
    pub(super) fn catch_up(&mut self, sticky: &Sticky, timeline: Option<Timeline>) -> bool {
        if self.resync {
            if !self.resend_sticky(sticky) {
                return false;
            }
            self.resync = false;
            self.timeline_sent = None;
        }
        // A consumer that joined after the stream's headers went out gets
        // them before its first frame.
        if !self.headers_sent {
            if self.frames == 0 {
                for (h, m) in sticky.headers.iter().skip(self.headers_done) {
                    if !self.send(|tx| tx.send_blob(h, m, &FrameExtras::default())) {
                        return false;
                    }
                    self.headers_done += 1;
                }
            }
            self.headers_sent = true;
        }
        match timeline {
            Some(t) => self.send_timeline(t),
            None => true,
        }
    }

    /// Sends the sticky events again; `false` if one did not go out.
    fn resend_sticky(&mut self, sticky: &Sticky) -> bool {
        if let Some((id, flags, group)) = &sticky.stream_start {
            if !self.send(|tx| tx.send_stream_start_with(id, *flags, *group)) {
                return false;
            }
        }
        if let Some(c) = &sticky.caps {
            if !self.send(|tx| tx.send_caps(c)) {
                return false;
            }
        }
        if let Some(seg) = &sticky.segment {
            if !self.send(|tx| tx.send_segment(seg)) {
                return false;
            }
        }
        sticky
            .tags
            .iter()
            .all(|(_, tags)| self.send(|tx| tx.send_tags(tags)))
            && sticky
                .events
                .iter()
                .all(|(_, ev)| self.send(|tx| tx.send_event_string(ev)))
    }

    /// Sends the timeline if it changed since the last one it got; `false`
    /// if it did not go out.
    fn send_timeline(&mut self, t: Timeline) -> bool {
        let changed = self.timeline_sent.is_none_or(|old| {
            old.latency != t.latency || old.base_time.abs_diff(t.base_time) > 1_000_000
        });
        if changed {
            if !self.send(|tx| tx.send_tags(&t.to_tags_string())) {
                return false;
            }
            gst::trace!(CAT, "pid {}: timeline {t:?}", self.pid);
            self.timeline_sent = Some(t);
        }
        true
    }

    /// Marks the frame `meta` describes as owed to it, unless it is a delta
    /// frame it cannot use (it waits for a keyframe): then it misses it.
    /// `true` if a keyframe must be asked of upstream for it.
    fn begin_frame(&mut self, meta: &FrameMeta) -> bool {
        self.owed = true;
        // Headers are never skipped: a consumer needs them before any frame.
        let delta = meta.flags & DELTA_UNIT != 0 && meta.flags & HEADER == 0;
        if !(delta && self.need_keyframe) {
            return false;
        }
        // Joined or missed frames: a delta frame is useless to it.
        self.owed = false;
        self.missed += 1;
        self.tx.note_missed();
        !std::mem::replace(&mut self.key_requested, true)
    }

    /// Sends it the frame if it is up to date and has room (with `cap`, at
    /// most that many slots held); `true` if it went out.
    fn send_frame(
        &mut self,
        out: &Outgoing<'_>,
        sticky: &Sticky,
        timeline: Option<Timeline>,
        cap: Option<usize>,
    ) -> bool {
        self.reclaim();
        if let Payload::Slot { arena, .. } = out.payload {
            self.follow(arena);
        }
        // An empty frame has no sealed copy (a blob has bytes): a slot of
        // its own arena carries it, leased while it is sent.
        let empty;
        let payload = match out.payload_for(&self.tx) {
            Some(p) => p,
            None if out.size == 0 => match self.tx.try_lease() {
                Some(l) => {
                    empty = l;
                    Payload::Slot {
                        arena: empty.arena(),
                        slot: empty.index(),
                        offset: 0,
                        keep: None,
                    }
                }
                None => return false,
            },
            None => {
                // No sealed copy could be made (over `blob-budget`, no
                // memory) for this consumer, still on an older arena; no
                // slot of one arena is ever sent to a reader of another.
                self.gone.get_or_insert(shmring::Error::Dropped(format!(
                    "a frame of {} bytes while still on the previous arena, and no copy of it could be made (blob-budget)",
                    out.size
                )));
                return false;
            }
        };
        if self.gone.is_some() || !self.catch_up(sticky, timeline) || !self.has_room(payload, cap) {
            return false;
        }
        let mut m = out.meta;
        if self.discont {
            m.flags |= DISCONT;
        }
        let extras = FrameExtras {
            layout: out.layout,
            metas: out.metas.as_deref(),
        };
        let sent = self.send(|tx| match payload {
            Payload::Slot { slot, offset, .. } => {
                tx.send_frame_with(slot, offset, out.size, &m, &extras)
            }
            Payload::Blob(b) => tx.send_blob(b, &m, &extras),
        });
        if sent {
            self.took_frame(payload, out.size);
        }
        sent
    }

    /// Whether it can take `payload` now: a slot while it holds fewer than
    /// `cap`, a blob within its blob budget.
    fn has_room(&self, payload: Payload<'_>, cap: Option<usize>) -> bool {
        match payload {
            Payload::Slot { .. } => cap.is_none_or(|c| self.tx.in_flight() < c),
            Payload::Blob(b) => self.tx.blob_fits(b.len()),
        }
    }

    /// It took the frame (`size` bytes): it holds the buffer, and is up to
    /// date.
    fn took_frame(&mut self, payload: Payload<'_>, size: usize) {
        if let Payload::Slot { slot, keep, .. } = payload {
            if let Some(h) = self.held.get_mut(slot as usize) {
                *h = keep.cloned();
            }
        }
        self.owed = false;
        self.frames += 1;
        self.bytes += size as u64;
        self.discont = false;
        self.need_keyframe = false;
        self.key_requested = false;
        self.behind_since = None;
    }

    /// It had no room for an event: it gets the sticky events again before
    /// its next frame, which starts at a keyframe with DISCONT.
    fn resync_later(&mut self) {
        gst::debug!(CAT, "pid {} has no room for an event: resync", self.pid);
        self.owed = false;
        self.resync = true;
        self.need_keyframe = true;
        self.discont = true;
    }
}

/// Most slots one consumer may hold while others are served: half the
/// frame slots, so that a stopped consumer leaves the rest to the others.
fn hold_cap(st: &State) -> Option<usize> {
    let a = st.arena.as_ref()?;
    (st.peers.len() >= 2).then(|| (a.frame_slots() as usize / 2).max(1))
}

/// Waits a little (at most `STEP / 2` in all) for any of the consumers that
/// are owed something (all of them with `all`) to return a slot or make
/// descriptor room.
pub(super) fn wait_for_room(peers: &mut [Peer], all: bool) {
    let n = peers.iter().filter(|p| all || p.owed).count();
    let each = (STEP / 2) / n.max(1) as u32;
    for p in peers.iter_mut().filter(|p| all || p.owed) {
        match p.tx.wait_returns(Some(each)) {
            Ok(()) => continue,
            Err(e) if e.is_would_block() => {}
            Err(e) => {
                p.gone.get_or_insert(e);
                continue;
            }
        }
        if let Err(e) = p.tx.wait_writable(Some(each)) {
            if !e.is_would_block() {
                p.gone.get_or_insert(e);
            }
        }
    }
}

impl ShmringSink {
    /// Sends a frame to every consumer as the slow-consumer policy says.
    /// Returns how many consumers got it.
    pub(super) fn deliver(
        &self,
        st: &mut State,
        out: &Outgoing<'_>,
    ) -> Result<usize, gst::FlowError> {
        let policy = self.policy();
        let timeout = self.timeout();
        let deadline = Instant::now() + timeout;
        let timeline = self.timeline(st);
        let cap = hold_cap(st);
        for p in st.peers.iter_mut() {
            if p.begin_frame(&out.meta) {
                st.request_keyframe = true;
            }
        }
        let delivered = Cell::new(0);
        let attempt = |st: &mut State| {
            let mut waiting = 0;
            let State { peers, sticky, .. } = st;
            for p in peers.iter_mut().filter(|p| p.owed) {
                if p.send_frame(out, sticky, timeline, cap) {
                    delivered.set(delivered.get() + 1);
                } else if p.gone.is_none() {
                    waiting += 1;
                }
            }
            self.remove_gone(st);
            if waiting == 0 {
                return Some(delivered.get());
            }
            if policy != SlowConsumer::Block && delivered.get() > 0 {
                // Others took it: the slow ones miss it rather than stall them.
                self.miss_frame(st, policy, timeout);
                return Some(delivered.get());
            }
            None
        };
        let expire = |st: &mut State| {
            self.drop_stalled(st, timeout);
            delivered.get()
        };
        let wait = |st: &mut State| wait_for_room(&mut st.peers, false);
        retry_until(st, deadline, &self.unlocked, attempt, expire, wait)
    }

    /// The consumers the frame is still owed to took nothing for `timeout`:
    /// they go.
    fn drop_stalled(&self, st: &mut State, timeout: Duration) {
        for p in st.peers.iter_mut().filter(|p| p.owed) {
            gst::warning!(
                CAT,
                imp = self,
                "consumer pid {} holds {} of {} slots and took nothing for {timeout:?}",
                p.pid,
                p.tx.in_flight(),
                p.tx.slots()
            );
            p.gone = Some(shmring::Error::Dropped(format!(
                "took nothing for {timeout:?} while holding {} of {} slots",
                p.tx.in_flight(),
                p.tx.slots()
            )));
        }
        self.remove_gone(st);
    }

    /// The consumers the frame is still owed to miss it (drop and disconnect
    /// policies); with `disconnect`, one that has missed every frame for
    /// `timeout` goes.
    fn miss_frame(&self, st: &mut State, policy: SlowConsumer, timeout: Duration) {
        let now = Instant::now();
        for p in st.peers.iter_mut().filter(|p| p.owed) {
            p.miss(now);
            gst::log!(CAT, "pid {} misses a frame ({} so far)", p.pid, p.missed);
            if policy == SlowConsumer::Disconnect
                && p.behind_since.is_some_and(|t| now - t >= timeout)
            {
                p.gone = Some(shmring::Error::Dropped(format!(
                    "missed every frame for {timeout:?} (slow-consumer=disconnect)"
                )));
            }
        }
        self.remove_gone(st);
    }

    /// Sends an event to every consumer. With the block policy, a single
    /// consumer, or when `must` (EOS), the sink waits up to `timeout` for
    /// room; otherwise a consumer without room gets the sticky events
    /// (stream-start, caps, segment) again before its next frame instead.
    pub(super) fn send_event(
        &self,
        st: &mut State,
        must: bool,
        f: impl Fn(&mut FrameSender) -> shmring::Result<()>,
    ) {
        let wait = must || st.peers.len() == 1 || self.policy() == SlowConsumer::Block;
        let deadline = Instant::now() + self.timeout();
        for p in st.peers.iter_mut() {
            p.owed = true;
        }
        let attempt = |st: &mut State| {
            let mut waiting = 0;
            let State { peers, sticky, .. } = st;
            for p in peers.iter_mut().filter(|p| p.owed) {
                p.reclaim();
                if p.gone.is_none() && p.catch_up(sticky, None) && p.send(&f) {
                    p.owed = false;
                } else if p.gone.is_none() {
                    if wait {
                        waiting += 1;
                    } else {
                        p.resync_later();
                    }
                }
            }
            self.remove_gone(st);
            (waiting == 0).then_some(())
        };
        let expire = |st: &mut State| {
            let t = self.timeout();
            for p in st.peers.iter_mut().filter(|p| p.owed) {
                p.gone = Some(shmring::Error::Dropped(format!(
                    "no room for an event for {t:?}"
                )));
            }
            self.remove_gone(st);
        };
        let room = |st: &mut State| wait_for_room(&mut st.peers, false);
        // Unlocked (flushing): the event is not waited for.
        let _ = retry_until(st, deadline, &self.unlocked, attempt, expire, room);
    }

    /// Lets go of the consumers marked gone, and everything they held.
    pub(super) fn remove_gone(&self, st: &mut State) {
        if st.peers.iter().all(|p| p.gone.is_none()) {
            return;
        }
        let mut stats = lock(&self.stats);
        st.peers.retain_mut(|p| {
            let Some(why) = &p.gone else {
                return true;
            };
            gst::warning!(
                CAT,
                imp = self,
                "dropping consumer pid {} ({} frames, {} missed, holding {} slots): {why}",
                p.pid,
                p.frames,
                p.missed,
                p.tx.in_flight()
            );
            // Tell it why, unless it left by itself.
            match why {
                shmring::Error::Disconnected | shmring::Error::PeerDied => {}
                shmring::Error::Dropped(reason) => p.tx.say_goodbye(reason),
                e => p.tx.say_goodbye(&e.to_string()),
            }
            stats.disconnects += 1;
            stats.bad_returns += p.tx.bad_returns();
            stats.arena_switches += p.tx.arena_switches();
            stats.missed += p.missed;
            // Dropping the sender releases its slots; its buffers go back.
            false
        });
        drop(stats);
        self.publish(st, true);
    }

    /// Copies the consumers' counters into the `stats` property, and the
    /// arena-wide ones when `arena` (or every [`ARENA_STATS_EVERY`] buffers).
    pub(super) fn publish(&self, st: &State, arena: bool) {
        let mut stats = lock(&self.stats);
        if stats.peers.len() != st.peers.len() {
            stats.peers.resize(st.peers.len(), PeerStats::default());
        }
        for (s, p) in stats.peers.iter_mut().zip(&st.peers) {
            *s = p.stats();
        }
        if !arena {
            return;
        }
        // The current arena and those consumers not yet switched still read.
        let mut arenas: Vec<Arena> = st.arena.iter().cloned().collect();
        for p in &st.peers {
            let a = p.tx.arena();
            if !arenas.iter().any(|b| b.as_ptr() == a.as_ptr()) {
                arenas.push(a);
            }
        }
        let marked: u64 = arenas
            .iter()
            .flat_map(|a| (0..a.slots()).map(|s| u64::from(a.holders(s))))
            .sum();
        let held: u64 = st.peers.iter().map(|p| p.tx.in_flight() as u64).sum();
        stats.slots_in_flight = arenas.iter().map(|a| a.in_flight() as u64).sum();
        stats.leaked_slots = marked.saturating_sub(held);
    }
}
