//! The sink's stream-start, segments, tags, gaps and other serialized
//! events, pushed downstream in order with the buffers: an event waits until
//! the stream has its caps (and a segment); the base class's own
//! stream-start and segment are dropped by the probe of `constructed`.

use std::sync::atomic::Ordering;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::frames::{self, SegmentInfo};

use super::imp::{ShmringSrc, Timing, CAT};
use crate::convert::{self, clock, segment_of};
use crate::util::lock;
use crate::{clock, serialize};

impl ShmringSrc {
    pub(super) fn segment(&self, info: &SegmentInfo) {
        let is_live = lock(&self.settings).is_live;
        if let Some(seg) = segment_of(info) {
            lock(&self.timing).segment = seg;
        }
        if is_live {
            // Live: timestamps are mapped onto our own (the base class's)
            // segment instead.
            return;
        }
        let Some(seg) = convert::generic_segment_of(info) else {
            gst::warning!(
                CAT,
                imp = self,
                "ignoring a segment that is not valid: {info:?}"
            );
            return;
        };
        gst::debug!(CAT, imp = self, "segment from the sink: {seg:?}");
        self.ensure_stream_start();
        self.push_own(gst::event::Segment::new(&seg));
        self.push_pending();
    }

    /// Pushes an event of the sink's that the probe would drop if the base
    /// class had made it.
    fn push_own(&self, ev: gst::Event) -> bool {
        self.own_event.store(true, Ordering::Release);
        let ok = self.obj().src_pad().push_event(ev);
        self.own_event.store(false, Ordering::Release);
        ok
    }

    /// The sink's stream-start, with its flags and group.
    pub(super) fn stream_start(&self, ss: &frames::StreamStart) {
        let ev = convert::stream_start_event(ss);
        lock(&self.timing).stream_started = true;
        self.push_own(ev);
    }

    /// A producer that sends no stream-start (a plain `frames` sender):
    /// one of ours before the caps.
    pub(super) fn ensure_stream_start(&self) {
        if lock(&self.timing).stream_started {
            return;
        }
        let obj = self.obj();
        let id = obj.src_pad().create_stream_id(&*obj, None::<&str>);
        let ev = gst::event::StreamStart::builder(id.as_str())
            .group_id(gst::GroupId::next())
            .build();
        lock(&self.timing).stream_started = true;
        self.push_own(ev);
    }

    pub(super) fn tags(&self, s: &str) {
        let Some(peer) = clock::parse_peer_tags(s) else {
            gst::warning!(CAT, imp = self, "ignoring tags that do not parse: {s:?}");
            return;
        };
        let is_live = lock(&self.settings).is_live;
        let mut t = lock(&self.timing);
        if let Some(tl) = peer.timeline {
            let old = t.timeline.replace(tl);
            gst::debug!(CAT, imp = self, "sink timeline {tl:?}");
            if is_live && old.map(|o| o.latency) != Some(tl.latency) {
                drop(t);
                let obj = self.obj();
                let _ = obj.post_message(gst::message::Latency::builder().src(&*obj).build());
                t = lock(&self.timing);
            }
        }
        if peer.tags.n_tags() > 0 {
            match t.pending_tags.as_mut() {
                Some(p) => p.make_mut().insert(&peer.tags, gst::TagMergeMode::Append),
                None => t.pending_tags = Some(peer.tags),
            }
        }
        drop(t);
        self.push_pending();
    }

    /// Pushes the segment (if one is waiting) so that an event can follow it.
    fn push_segment_now(&self, t: &mut Timing) {
        if t.segment_pending {
            let ev = gst::event::Segment::new(t.segment.upcast_ref());
            if self.obj().src_pad().push_event(ev) {
                t.segment_pending = false;
            }
        }
    }

    /// Whether events may be pushed: the stream has its caps and a segment.
    fn stream_ready(&self) -> bool {
        // Tags and other sticky events may precede the segment (decoders
        // send them so); only stream-start, caps and segment are ordered.
        let obj = self.obj();
        let pad = obj.src_pad();
        pad.sticky_event::<gst::event::Caps>(0).is_some()
    }

    pub(super) fn push_pending(&self) {
        if !self.stream_ready() {
            return;
        }
        let tags = {
            let mut t = lock(&self.timing);
            self.push_segment_now(&mut t);
            t.pending_tags.take()
        };
        if let Some(tags) = tags {
            let _ = self.obj().src_pad().push_event(gst::event::Tag::new(tags));
        }
        let events = std::mem::take(&mut lock(&self.timing).pending_events);
        for ev in events {
            let _ = self.obj().src_pad().push_event(ev);
        }
    }

    /// A serialized downstream event from the sink, pushed in order (once
    /// the stream has caps and a segment).
    pub(super) fn event_from_sink(&self, s: &str) {
        match serialize::downstream_event_from_string(s) {
            Ok(ev) => {
                lock(&self.timing).pending_events.push(ev);
                self.push_pending();
            }
            Err(e) => gst::warning!(
                CAT,
                imp = self,
                "ignoring an event that does not parse ({e}): {s:?}"
            ),
        }
    }

    pub(super) fn gap(&self, pts: u64, duration: u64) {
        let is_live = lock(&self.settings).is_live;
        let live = if is_live { self.live_clock() } else { None };
        let mut t = lock(&self.timing);
        let Some(pts) = Self::map_time(&mut t, live.as_ref(), pts) else {
            return;
        };
        if !self.stream_ready() {
            gst::debug!(CAT, imp = self, "gap before the stream started: dropped");
            return;
        }
        self.push_segment_now(&mut t);
        drop(t);
        let ev = gst::event::Gap::builder(pts)
            .duration(clock(duration))
            .build();
        let _ = self.obj().src_pad().push_event(ev);
    }
}
