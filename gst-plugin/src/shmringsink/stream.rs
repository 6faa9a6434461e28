//! What the streaming thread sends: each buffer as a frame (its own arena
//! slot without a copy, a copy in a free slot, or a sealed blob when it is
//! bigger than a slot), caps and serialized events as stream messages, and
//! the sticky state (stream-start, caps, segment, tags, other sticky events,
//! header buffers) a consumer that joins later gets first.

use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst::EventView;
use shmring::frames::{Arena, Blob, SlotLease, NONE};

use super::imp::{ShmringSink, State, CAT};
use super::peers::{wait_for_room, Outgoing, Payload, Peer};
use crate::convert::{self, meta_of, segment_info};
use crate::pool::SlotPool;
use crate::serialize;
use crate::util::{lock, retry_until};

/// Where a foreign buffer was copied to.
enum Copied {
    /// A free slot, leased while it is sent.
    Lease(SlotLease),
    /// A buffer of the pool (held for the consumers), and its slot.
    Buffer(gst::Buffer, u32),
    /// A sealed memfd of its own (the buffer is bigger than a slot).
    Blob(Blob),
}

impl Copied {
    /// The payload, in a slot of `arena` unless a blob.
    fn payload<'a>(&'a self, arena: &'a Arena) -> Payload<'a> {
        match self {
            // Sent slots stay held by the consumers after the lease drops.
            Copied::Lease(lease) => Payload::Slot {
                arena: lease.arena(),
                slot: lease.index(),
                offset: 0,
                keep: None,
            },
            Copied::Buffer(b, slot) => Payload::Slot {
                arena,
                slot: *slot,
                offset: 0,
                keep: Some(b),
            },
            Copied::Blob(b) => Payload::Blob(b),
        }
    }
}

impl ShmringSink {
    /// Sends `buffer`, after the consumers that waited for the caps were
    /// served; keeps it for later consumers if it is a header.
    pub(super) fn render_locked(
        &self,
        st: &mut State,
        buffer: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.serve_pending(st);
        let res = self.send_buffer(st, buffer);
        // After sending: a consumer that joins from now on gets it first.
        if buffer.flags().contains(gst::BufferFlags::HEADER) {
            self.remember_header(st, buffer);
        } else {
            st.header_run_over = true;
        }
        res
    }

    fn send_buffer(
        &self,
        st: &mut State,
        buffer: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        if st.peers.is_empty() {
            lock(&self.stats).dropped += 1;
            return Ok(gst::FlowSuccess::Ok);
        }
        let arena = self.ensure_arena(st).map_err(|e| {
            self.post_error_message(e);
            gst::FlowError::Error
        })?;
        let behind = follow_arena(st, &arena);
        let meta = meta_of(buffer);
        let layout = convert::layout_of(buffer);
        // The metas that cross as a string (all but `GstVideoMeta`, which
        // travels in the descriptor).
        let metas = serialize::metas_to_string_without_video(buffer);
        let out = |payload, size, fallback| Outgoing {
            payload,
            size,
            meta,
            layout,
            metas: metas.clone(),
            fallback,
        };
        if let Some((slot, offset, size)) = own_slot(&arena, buffer) {
            let payload = Payload::Slot {
                arena: &arena,
                slot,
                offset,
                keep: Some(buffer),
            };
            let fallback = self.fallback_of(behind, buffer)?;
            let copied = fallback.is_some();
            let n = self.deliver(st, &out(payload, size, fallback))?;
            self.count(n, size, copied);
            return Ok(gst::FlowSuccess::Ok);
        }
        // Foreign: copied once, into a free slot, or into a blob of its own
        // when it is bigger than a slot.
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        let copied = if map.size() > arena.slot_size() {
            Some(Copied::Blob(self.blob_of(&map)?))
        } else {
            self.copy_slot(st, &arena, &map)?
        };
        let fallback = match &copied {
            Some(Copied::Lease(_) | Copied::Buffer(..)) => self.fallback_of(behind, buffer)?,
            Some(Copied::Blob(_)) | None => None,
        };
        let n = match &copied {
            Some(c) => self.deliver(st, &out(c.payload(&arena), map.size(), fallback))?,
            None => 0,
        };
        self.count(n, map.size(), true);
        Ok(gst::FlowSuccess::Ok)
    }

    /// A sealed copy of `buffer` for the consumers `behind` (on an older
    /// arena than the slot it is sent in); none if no consumer is.
    fn fallback_of(
        &self,
        behind: bool,
        buffer: &gst::Buffer,
    ) -> Result<Option<Blob>, gst::FlowError> {
        if !behind {
            return Ok(None);
        }
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        if map.is_empty() {
            // Nothing to copy: each consumer gets it in a slot of its own arena.
            return Ok(None);
        }
        // Without a copy the consumers behind are dropped (see
        // `Peer::send_frame`); the others still get the frame.
        Ok(self
            .try_blob(&map)
            .inspect_err(|why| gst::warning!(CAT, imp = self, "{why}"))
            .ok())
    }

    /// A sealed copy of a buffer bigger than a slot, within `blob-budget`;
    /// an element error if there can be none.
    fn blob_of(&self, data: &[u8]) -> Result<Blob, gst::FlowError> {
        self.try_blob(data).map_err(|why| {
            gst::element_imp_error!(self, gst::ResourceError::NoSpaceLeft, ("{why}"));
            gst::FlowError::Error
        })
    }

    /// A sealed copy of `data` within `blob-budget`, or why there is none.
    fn try_blob(&self, data: &[u8]) -> Result<Blob, String> {
        let budget = lock(&self.settings).blob_budget;
        if data.len() as u64 > budget {
            return Err(format!(
                "buffer of {} bytes is bigger than blob-budget ({budget} bytes): raise blob-budget",
                data.len()
            ));
        }
        Blob::copy_of(data)
            .map_err(|e| format!("cannot make a {}-byte shared buffer: {e}", data.len()))
    }

    /// Counts a rendered buffer that `n` consumers got.
    fn count(&self, n: usize, size: usize, copied: bool) {
        let mut s = lock(&self.stats);
        if n == 0 {
            s.dropped += 1;
        } else if copied {
            s.copied += 1;
            s.bytes += size as u64;
        } else {
            s.zero_copy += 1;
            s.bytes += size as u64;
        }
    }

    /// A slot holding a copy of `data` (a foreign buffer): a free slot (its
    /// lease), or a free buffer of the pool. Waits up to `timeout` for one;
    /// then the consumer holding most slots is dropped and `None` returned.
    fn copy_slot(
        &self,
        st: &mut State,
        arena: &Arena,
        data: &[u8],
    ) -> Result<Option<Copied>, gst::FlowError> {
        let deadline = Instant::now() + self.timeout();
        let attempt = |st: &mut State| {
            for p in st.peers.iter_mut() {
                p.reclaim();
            }
            self.remove_gone(st);
            if st.peers.is_empty() {
                return Some(None);
            }
            if let Some(mut lease) = arena.try_lease() {
                lease.as_mut()[..data.len()].copy_from_slice(data);
                return Some(Some(Copied::Lease(lease)));
            }
            // Every free slot may sit in the pool (e.g. upstream outran the
            // consumers, the pool grew, and this buffer came from outside
            // it): copy into a buffer of the pool's then.
            let (b, slot) = copy_to_pool_slot(st.pool.as_ref()?, arena, data)?;
            Some(Some(Copied::Buffer(b, slot)))
        };
        let expire = |st: &mut State| {
            self.drop_biggest_holder(st);
            None
        };
        let wait = |st: &mut State| wait_for_room(&mut st.peers, true);
        retry_until(st, deadline, &self.unlocked, attempt, expire, wait)
    }

    /// No slot came free for `timeout`: the consumer holding most slots of
    /// the current arena goes (one still on an older arena holds none).
    fn drop_biggest_holder(&self, st: &mut State) {
        let arena = st.arena.clone();
        let on_it = |p: &Peer| arena.as_ref().is_none_or(|a| p.tx.is_on(a));
        if let Some(p) = st
            .peers
            .iter_mut()
            .filter(|p| on_it(p))
            .max_by_key(|p| p.tx.in_flight())
        {
            gst::warning!(
                CAT,
                imp = self,
                "no free slot for {:?}: consumer pid {} holds {} of {}",
                self.timeout(),
                p.pid,
                p.tx.in_flight(),
                p.tx.slots()
            );
            p.gone = Some(shmring::Error::Dropped(format!(
                "took nothing back for {:?} (timeout) while holding {} of {} slots: no slot was free for the stream",
                self.timeout(),
                p.tx.in_flight(),
                p.tx.slots()
            )));
        }
        self.remove_gone(st);
    }

    /// Keeps a copy of a header buffer for consumers that join later: they
    /// get the stream's headers before their first frame. A run of headers
    /// after other buffers replaces the previous set.
    fn remember_header(&self, st: &mut State, buffer: &gst::Buffer) {
        if std::mem::take(&mut st.header_run_over) {
            st.sticky.headers.clear();
        }
        let Ok(map) = buffer.map_readable() else {
            return;
        };
        if map.is_empty() {
            return;
        }
        match Blob::copy_of(&map) {
            Ok(blob) => st.sticky.headers.push((blob, meta_of(buffer))),
            Err(e) => gst::warning!(CAT, imp = self, "cannot keep a header buffer: {e}"),
        }
    }

    /// Sends the caps to every consumer, and keeps them as sticky state.
    pub(super) fn send_caps(&self, st: &mut State, caps: &gst::Caps) {
        // The printer the src's parser reads (GStreamer's own string of some
        // values is not); caps it cannot print go as GStreamer prints them.
        let s = serialize::caps_to_string(caps).unwrap_or_else(|| {
            gst::warning!(
                CAT,
                imp = self,
                "caps with values the src cannot read: {caps}"
            );
            caps.to_string()
        });
        st.sticky.caps = Some(s.clone());
        self.send_event(st, false, |tx| tx.send_caps(&s));
    }

    /// Sends a serialized event (but caps: `set_caps` sends them) to every
    /// consumer, and keeps the sticky ones for consumers that join later.
    pub(super) fn forward_event(&self, st: &mut State, event: &gst::Event) {
        match event.view() {
            EventView::StreamStart(e) => {
                let (id, flags, group) = convert::stream_start_of(event, e);
                st.sticky.stream_start = Some((id.clone(), flags, group));
                self.send_event(st, false, |tx| tx.send_stream_start_with(&id, flags, group));
            }
            EventView::Segment(e) => {
                let info = segment_info(e.segment());
                st.sticky.segment = Some(info);
                self.send_event(st, false, |tx| tx.send_segment(&info));
            }
            EventView::Eos(_) => self.send_event(st, true, |tx| tx.send_eos()),
            EventView::FlushStop(e) => {
                let reset = e.resets_time();
                self.send_event(st, false, |tx| tx.send_flush_stop(reset));
            }
            EventView::Gap(e) => {
                let (pts, dur) = e.get();
                let d = dur.map_or(NONE, |d| d.nseconds());
                self.send_event(st, false, |tx| tx.send_gap(pts.nseconds(), d));
            }
            EventView::Tag(e) => match serialize::tags_to_string(e.tag()) {
                Some(tags) => {
                    // Sticky: consumers that join later get them.
                    let scope = e.tag().scope();
                    st.sticky.tags.retain(|(s, _)| *s != scope);
                    st.sticky.tags.push((scope, tags.clone()));
                    self.send_event(st, false, |tx| tx.send_tags(&tags))
                }
                None => gst::debug!(CAT, imp = self, "tags not carried: {:?}", e.tag()),
            },
            EventView::Caps(_) => {} // set_caps sends them
            _ if event.is_serialized() && event.is_downstream() => self.forward_other(st, event),
            _ => {}
        }
    }

    /// Any other serialized downstream event, as a string.
    fn forward_other(&self, st: &mut State, event: &gst::Event) {
        let Some(s) = serialize::downstream_event_to_string(event) else {
            gst::debug!(CAT, imp = self, "event not carried: {event:?}");
            return;
        };
        if event.is_sticky() {
            let key = convert::sticky_key(event);
            st.sticky.events.retain(|(k, _)| *k != key);
            st.sticky.events.push((key, s.clone()));
        }
        self.send_event(st, false, |tx| tx.send_event_string(&s));
    }
}

/// Moves the consumers that still read an older arena to `arena` where they
/// hold none of its slots; `true` if some remain behind (they get sealed
/// copies of what is sent in slots of `arena`).
fn follow_arena(st: &mut State, arena: &Arena) -> bool {
    for p in st.peers.iter_mut() {
        p.follow(arena);
    }
    st.peers.iter().any(|p| !p.tx.is_on(arena))
}

/// Where `buffer` lies in `arena` (slot, offset, size), if it is one memory
/// inside one slot: a buffer of the offered pool, sent without a copy.
fn own_slot(arena: &Arena, buffer: &gst::Buffer) -> Option<(u32, usize, usize)> {
    if buffer.n_memory() != 1 {
        return None;
    }
    let m = buffer.peek_memory(0).map_readable().ok()?;
    arena
        .locate(m.as_ptr(), m.size())
        .map(|(s, o)| (s, o, m.size()))
}

/// A free buffer of the pool, if it is a whole slot of `arena`, holding
/// `data`: the buffer and its slot.
fn copy_to_pool_slot(pool: &SlotPool, arena: &Arena, data: &[u8]) -> Option<(gst::Buffer, u32)> {
    let params = gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
    let mut b = pool.acquire_buffer(Some(&params)).ok()?;
    let w = b.get_mut()?;
    if w.n_memory() != 1 || w.maxsize() < data.len() {
        return None;
    }
    w.set_size(data.len());
    let slot = {
        let mut m = w.map_writable().ok()?;
        let (slot, offset) = arena.locate(m.as_ptr(), data.len())?;
        if offset != 0 {
            return None;
        }
        m.copy_from_slice(data);
        slot
    };
    Some((b, slot))
}
