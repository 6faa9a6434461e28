//! The `shmringsrc` subclass of `GstPushSrc`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::frames::{
    self, FrameConfig, FrameMeta, FrameReceiver, PlaneLayout, Received, SegmentInfo, UpstreamSender,
};

use crate::clock::{self, Timeline};
use crate::convert::{self, clamp_time, clock, segment_of};
use crate::util::{self, lock, DEFAULT_SPIN_US, DEFAULT_TIMEOUT_MS, STEP};
use crate::{serialize, Error};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsrc",
        gst::DebugColorFlags::empty(),
        Some("shmring shared-memory source"),
    )
});

const DEFAULT_LATENCY_MS: u32 = 10;

#[derive(Debug, Clone)]
struct Settings {
    socket_path: Option<String>,
    timeout_ms: u32,
    is_live: bool,
    reconnect: bool,
    latency_ms: u32,
    spin_us: u32,
    /// The sink is trusted: even buffers downstream parses (encoded, muxed,
    /// anything but raw audio and video) wrap the shared slot.
    trusted: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket_path: None,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            is_live: false,
            reconnect: false,
            latency_ms: DEFAULT_LATENCY_MS,
            spin_us: DEFAULT_SPIN_US,
            trusted: false,
        }
    }
}

/// How the sink's timestamps become ours (see `crate::clock`).
#[derive(Debug)]
struct Timing {
    /// The sink's current segment.
    segment: gst::FormattedSegment<gst::ClockTime>,
    /// The sink's timeline, once it sent one.
    timeline: Option<Timeline>,
    /// Live without a timeline: our running time minus the sink's, fixed at
    /// the first frame.
    anchor: Option<i128>,
    /// A segment was handed to the base class and not yet sent downstream
    /// (it goes with the next buffer).
    segment_pending: bool,
    /// Tags waiting for the stream to have a segment downstream.
    pending_tags: Option<gst::TagList>,
    /// The next buffer follows a reconnection.
    discont: bool,
    /// Metas (as a string) for the next frame.
    metas: Option<String>,
    /// The caps are not raw audio or video: their bytes get parsed
    /// downstream, so they must not change under it (see `trusted`).
    parsed: bool,
    /// Events waiting for the stream to have caps and a segment downstream.
    pending_events: Vec<gst::Event>,
    /// A stream-start went downstream (the sink's, or ours).
    stream_started: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            segment: gst::FormattedSegment::new(),
            timeline: None,
            anchor: None,
            segment_pending: false,
            pending_tags: None,
            discont: false,
            metas: None,
            parsed: true,
            pending_events: Vec::new(),
            stream_started: false,
        }
    }
}

#[derive(Default)]
pub struct ShmringSrc {
    settings: Mutex<Settings>,
    rx: Mutex<Option<FrameReceiver>>,
    /// Sends upstream events to the sink (without waiting for `rx`).
    upstream: Mutex<Option<UpstreamSender>>,
    timing: Mutex<Timing>,
    unlocked: AtomicBool,
    /// This element is pushing a stream-start or segment of the sink's: the
    /// probe lets it through (the base class's own ones are dropped, see
    /// `constructed`).
    own_event: AtomicBool,
    stats: Stats,
}

/// Counters behind the `stats` property.
#[derive(Default)]
struct Stats {
    /// Frames pushed (zero-copy + copied).
    frames: AtomicU64,
    /// Payload bytes pushed.
    bytes: AtomicU64,
    /// Frames pushed as a copy (downstream held too many slots).
    copied: AtomicU64,
    /// Times a new sink was joined after the previous one went away.
    reconnects: AtomicU64,
    /// Frames the sink skipped for this consumer (as the sink reports;
    /// `drops` in the stats).
    missed: AtomicU64,
}

#[glib::object_subclass]
impl ObjectSubclass for ShmringSrc {
    const NAME: &'static str = "GstShmringSrc";
    type Type = super::ShmringSrc;
    type ParentType = gst_base::PushSrc;
}

impl ObjectImpl for ShmringSrc {
    fn constructed(&self) {
        self.parent_constructed();
        self.obj().set_format(gst::Format::Time);
        // Downstream sees the sink's stream-start (id, flags, group) and,
        // unless live, its segment (any format), in order with the other
        // events: the base class's own ones, made before the first buffer,
        // are dropped here.
        let weak = self.obj().downgrade();
        self.obj()
            .src_pad()
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, move |_, info| {
                let Some(src) = weak.upgrade() else {
                    return gst::PadProbeReturn::Ok;
                };
                let imp = src.imp();
                let Some(gst::PadProbeData::Event(ev)) = &info.data else {
                    return gst::PadProbeReturn::Ok;
                };
                if imp.own_event.load(Ordering::Acquire) {
                    return gst::PadProbeReturn::Ok;
                }
                let theirs = match ev.type_() {
                    gst::EventType::StreamStart => true,
                    gst::EventType::Segment => !lock(&imp.settings).is_live,
                    _ => false,
                };
                if theirs {
                    gst::log!(CAT, imp = imp, "dropping the base class's {:?}", ev.type_());
                    // Handled, not Drop: the event counts as sent (a sticky
                    // one is not pushed again) and is released here.
                    info.data = None;
                    gst::PadProbeReturn::Handled
                } else {
                    gst::PadProbeReturn::Ok
                }
            });
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                util::socket_path_pspec("Unix socket path of the shmringsink"),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Milliseconds to keep trying to connect at start")
                    .minimum(1)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("is-live")
                    .nick("Is live")
                    .blurb("Act as a live source on this pipeline's clock")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("latency")
                    .nick("Latency")
                    .blurb("Milliseconds added to the sink's latency (live)")
                    .default_value(DEFAULT_LATENCY_MS)
                    .mutable_ready()
                    .build(),
                util::spin_pspec("Microseconds to busy-poll for the next frame (0: never)"),
                glib::ParamSpecBoolean::builder("trusted")
                    .nick("Trusted")
                    .blurb("Trust the sink: never copy what downstream parses")
                    .default_value(false)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("reconnect")
                    .nick("Reconnect")
                    .blurb("Wait for a new sink when the sink goes away")
                    .default_value(false)
                    .mutable_playing()
                    .build(),
                util::stats_pspec("Frames, bytes, copies, drops and reconnects"),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => util::set_socket_path(&mut s.socket_path, value, *CAT, &*self.obj()),
            "trusted" => s.trusted = value.get().unwrap_or(false),
            "timeout" => s.timeout_ms = value.get().unwrap_or(DEFAULT_TIMEOUT_MS),
            "is-live" => {
                s.is_live = value.get().unwrap_or(false);
                self.obj().set_live(s.is_live);
            }
            "latency" => s.latency_ms = value.get().unwrap_or(DEFAULT_LATENCY_MS),
            "reconnect" => s.reconnect = value.get().unwrap_or(false),
            "spin" => s.spin_us = value.get().unwrap_or(DEFAULT_SPIN_US),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => s.socket_path.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "is-live" => s.is_live.to_value(),
            "latency" => s.latency_ms.to_value(),
            "reconnect" => s.reconnect.to_value(),
            "trusted" => s.trusted.to_value(),
            "stats" => {
                let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
                let (frames, copied) = (load(&self.stats.frames), load(&self.stats.copied));
                gst::Structure::builder("shmringsrc-stats")
                    .field("frames", frames)
                    .field("bytes", load(&self.stats.bytes))
                    .field("zero-copy", frames - copied)
                    .field("copied", copied)
                    .field("reconnects", load(&self.stats.reconnects))
                    .field("drops", load(&self.stats.missed))
                    .build()
                    .to_value()
            }
            "spin" => s.spin_us.to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

util::element_impls!(
    ShmringSrc,
    "shmring source",
    "Source",
    "Receives buffers, caps and events from a shmringsink in another process; buffers wrap the shared memory (no copy)",
    "src",
    gst::PadDirection::Src
);

/// What a live src needs to map one frame's timestamps.
struct LiveClock {
    /// Our pipeline clock minus `CLOCK_MONOTONIC`.
    clock_minus_monotonic: i128,
    /// Our base time.
    base_time: u64,
    /// Our running time now.
    now: i128,
}

impl ShmringSrc {
    fn fail(&self, e: &Error) -> gst::FlowError {
        match e {
            Error::Shmring(shmring::Error::Disconnected) => {
                gst::element_imp_error!(self, gst::ResourceError::Read, ("the sink went away"));
            }
            Error::Shmring(shmring::Error::Dropped(why)) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("the sink dropped this consumer: {why}")
                );
            }
            e => {
                gst::element_imp_error!(self, gst::StreamError::Failed, ("{e}"));
            }
        }
        gst::FlowError::Error
    }

    fn live_clock(&self) -> Option<LiveClock> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base_time = obj.base_time()?.nseconds();
        let now = clock.time()?.nseconds();
        Some(LiveClock {
            clock_minus_monotonic: clock::clock_minus_monotonic(&clock),
            base_time,
            now: i128::from(now) - i128::from(base_time),
        })
    }

    /// One of the sink's timestamps as one of ours.
    fn map_time(t: &mut Timing, live: Option<&LiveClock>, ns: u64) -> Option<gst::ClockTime> {
        let ts = clock(ns)?;
        let Some(live) = live else {
            // Not live: the sink's timestamps, in the sink's segment.
            return Some(ts);
        };
        let rt = t.segment.to_running_time_full(ts)?;
        let rt = match rt {
            gst::Signed::Positive(v) => i128::from(v.nseconds()),
            gst::Signed::Negative(v) => -i128::from(v.nseconds()),
        };
        let ours = match t.timeline {
            Some(tl) => clock::map_running_time(
                rt,
                tl.base_time,
                live.clock_minus_monotonic,
                live.base_time,
            ),
            None => rt + *t.anchor.get_or_insert(live.now - rt),
        };
        Some(clamp_time(ours))
    }

    /// A frame of the sink's as a buffer: its bytes, plane layout and
    /// metas, timestamps (mapped, see `map_time`), offsets and flags.
    fn frame(&self, f: frames::FrameRef) -> Result<gst::Buffer, gst::FlowError> {
        let m: FrameMeta = *f.meta();
        let layout = f.layout().copied();
        let is_live = lock(&self.settings).is_live;
        let mut buffer = self.buffer_of(f);
        let live = if is_live { self.live_clock() } else { None };
        let stamp = !(is_live && self.obj().property::<bool>("do-timestamp"));
        let mut t = lock(&self.timing);
        let b = buffer.get_mut().ok_or(gst::FlowError::Error)?;
        if let Err(e) = self.attach_extras(b, layout.as_ref(), &mut t) {
            drop(t);
            return Err(self.fail(&e));
        }
        if stamp {
            b.set_pts(Self::map_time(&mut t, live.as_ref(), m.pts));
            b.set_dts(Self::map_time(&mut t, live.as_ref(), m.dts));
        }
        // else the base class stamps the buffer with its arrival time.
        convert::set_meta(b, &m, std::mem::take(&mut t.discont));
        t.segment_pending = false;
        Ok(buffer)
    }

    /// The frame's bytes as a buffer (counted): the slot itself, or a copy.
    fn buffer_of(&self, f: frames::FrameRef) -> gst::Buffer {
        let (held, slots) = match lock(&self.rx).as_ref() {
            Some(rx) => (rx.frames_held(), rx.arena().slots() as usize),
            None => (0, 1),
        };
        // Zero copy, unless downstream keeps so many buffers (a filesink
        // batching small ones, a deep queue) that the sink would run out of
        // slots: then copy and return the slot at once.
        self.stats.frames.fetch_add(1, Ordering::Relaxed);
        self.stats
            .bytes
            .fetch_add(f.bytes().len() as u64, Ordering::Relaxed);
        // Bytes downstream parses must not change under it: unless the sink
        // is trusted, they are copied out of the arena it can still write
        // (a sealed blob needs no copy). Raw audio and video are read
        // through their caps and layout only, so they stay zero copy.
        let trusted = lock(&self.settings).trusted;
        let parsed = lock(&self.timing).parsed;
        let must_copy = parsed && !trusted && !f.is_immutable();
        if must_copy || held * 2 > slots {
            self.stats.copied.fetch_add(1, Ordering::Relaxed);
            gst::Buffer::from_slice(f.bytes().to_vec())
        } else {
            gst::Buffer::from_slice(f)
        }
    }

    /// Attaches the frame's plane layout, then the metas that came before
    /// it, each checked against the current caps.
    fn attach_extras(
        &self,
        b: &mut gst::BufferRef,
        layout: Option<&PlaneLayout>,
        t: &mut Timing,
    ) -> Result<(), Error> {
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Error::Shmring(shmring::Error::BadDescriptor(format!("{what}: {e}")))
        };
        let caps = self.obj().src_pad().current_caps();
        if let Some(l) = layout {
            convert::attach_layout(b, l, caps.as_deref()).map_err(|e| bad("plane layout", &e))?;
        }
        if let Some(m) = t.metas.take() {
            serialize::apply_metas(b, &m, caps.as_deref()).map_err(|e| bad("metas", &e))?;
        }
        Ok(())
    }

    fn segment(&self, info: &SegmentInfo) {
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
    fn stream_start(&self, ss: &frames::StreamStart) {
        let ev = convert::stream_start_event(ss);
        lock(&self.timing).stream_started = true;
        self.push_own(ev);
    }

    /// A producer that sends no stream-start (a plain `frames` sender):
    /// one of ours before the caps.
    fn ensure_stream_start(&self) {
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

    fn tags(&self, s: &str) {
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

    fn push_pending(&self) {
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
    fn event_from_sink(&self, s: &str) {
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

    fn gap(&self, pts: u64, duration: u64) {
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

    fn config(&self) -> (String, FrameConfig) {
        let s = lock(&self.settings);
        let cfg = FrameConfig::consumer()
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)))
            .spin(Duration::from_micros(u64::from(s.spin_us)));
        (s.socket_path.clone().unwrap_or_default(), cfg)
    }

    /// The sink went away and `reconnect` is set: waits for the next one.
    fn reconnect(&self) -> Result<(), gst::FlowError> {
        gst::element_imp_warning!(
            self,
            gst::ResourceError::Read,
            ("the sink went away; waiting for a new one (reconnect=true)")
        );
        // Buffers downstream still hold the old arena's mapping alive.
        *lock(&self.rx) = None;
        {
            let mut t = lock(&self.timing);
            t.timeline = None;
            t.anchor = None;
            t.discont = true;
        }
        let (path, cfg) = self.config();
        let cfg = cfg.handshake_timeout(Duration::from_millis(200));
        loop {
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            match frames::connect(&path, &cfg) {
                Ok(rx) => {
                    gst::info!(CAT, imp = self, "reconnected to {path}");
                    self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
                    *lock(&self.upstream) = Some(rx.upstream());
                    *lock(&self.rx) = Some(rx);
                    return Ok(());
                }
                Err(e) => {
                    gst::debug!(CAT, imp = self, "no sink yet: {e}");
                    std::thread::sleep(STEP);
                }
            }
        }
    }
}

impl ShmringSrc {
    /// The next message from the sink; reconnects (with `reconnect`) when
    /// the sink went away.
    fn receive(&self) -> Result<Received, gst::FlowError> {
        loop {
            let mut guard = lock(&self.rx);
            let rx = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            match rx.recv(Some(STEP)) {
                Ok(m) => return Ok(m),
                Err(shmring::Error::Timeout) => {
                    if self.unlocked.load(Ordering::Acquire) {
                        return Err(gst::FlowError::Flushing);
                    }
                }
                Err(shmring::Error::Disconnected) if lock(&self.settings).reconnect => {
                    drop(guard);
                    self.reconnect()?;
                }
                Err(e) => return Err(self.fail(&e.into())),
            }
        }
    }

    /// The sink's caps, set on the src pad (after a stream-start).
    fn caps_from_sink(&self, s: &str) -> Result<(), gst::FlowError> {
        let caps = convert::parse_caps(s)
            .filter(|c| convert::system_memory_only(c))
            .ok_or_else(|| self.fail(&Error::BadCaps(s.to_owned())))?;
        lock(&self.timing).parsed = convert::is_parsed(&caps);
        gst::debug!(CAT, imp = self, "caps from the sink: {caps}");
        self.ensure_stream_start();
        if self.obj().set_caps(&caps).is_err() {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("downstream refused the sink's caps {caps}")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        Ok(())
    }
}

impl BaseSrcImpl for ShmringSrc {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let (path, cfg) = self.config();
        let path = util::socket_path_to_open(Some(path.as_str()))?;
        let rx = frames::connect(&path, &cfg).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ["cannot connect to {path}: {e}"]
            )
        })?;
        gst::info!(CAT, imp = self, "connected to {path}");
        *lock(&self.upstream) = Some(rx.upstream());
        *lock(&self.rx) = Some(rx);
        *lock(&self.timing) = Timing::default();
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.upstream) = None;
        *lock(&self.rx) = None;
        Ok(())
    }

    fn event(&self, event: &gst::Event) -> bool {
        // Upstream events from this pipeline go to the sink's upstream.
        if event.is_upstream() {
            if let Some(s) = serialize::upstream_event_to_string(event) {
                let sent = lock(&self.upstream).as_ref().map(|u| u.send(&s));
                match sent {
                    Some(Ok(())) => {
                        gst::debug!(CAT, imp = self, "upstream event to the sink: {s}");
                        return true;
                    }
                    Some(Err(e)) => {
                        gst::debug!(CAT, imp = self, "upstream event not sent ({e}): {s}")
                    }
                    None => {}
                }
            }
        }
        BaseSrcImplExt::parent_event(self, event)
    }

    fn is_seekable(&self) -> bool {
        false
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Latency(q) = query.view_mut() {
            let s = lock(&self.settings).clone();
            if s.is_live {
                let sink = lock(&self.timing).timeline.map_or(0, |t| t.latency);
                let min = gst::ClockTime::from_nseconds(sink)
                    + gst::ClockTime::from_mseconds(u64::from(s.latency_ms));
                gst::debug!(CAT, imp = self, "latency: live, min {min}");
                q.set(true, min, gst::ClockTime::NONE);
                return true;
            }
        }
        BaseSrcImplExt::parent_query(self, query)
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(false, Ordering::Release);
        Ok(())
    }
}

impl PushSrcImpl for ShmringSrc {
    fn create(
        &self,
        _buffer: Option<&mut gst::BufferRef>,
    ) -> Result<CreateSuccess, gst::FlowError> {
        self.push_pending();
        loop {
            let msg = self.receive()?;
            gst::trace!(CAT, imp = self, "received {msg:?}");
            match msg {
                Received::Frame(f) => {
                    if f.missed() > 0 {
                        gst::debug!(
                            CAT,
                            imp = self,
                            "the sink skipped {} frames for us",
                            f.missed()
                        );
                        self.stats.missed.fetch_add(f.missed(), Ordering::Relaxed);
                    }
                    return Ok(CreateSuccess::NewBuffer(self.frame(f)?));
                }
                Received::Caps(s) => self.caps_from_sink(&s)?,
                Received::Metas(m) => lock(&self.timing).metas = Some(m),
                Received::Event(e) => self.event_from_sink(&e),
                Received::Segment(info) => self.segment(&info),
                Received::Tags(s) => self.tags(&s),
                Received::Gap { pts, duration } => self.gap(pts, duration),
                Received::Eos => return Err(gst::FlowError::Eos),
                // The base class makes its own stream-start (with its own
                // stream id); a flush in the sink's pipeline ends with a new
                // segment, which is what this pipeline needs to know.
                Received::StreamStart(ss) => self.stream_start(&ss),
                Received::FlushStart | Received::FlushStop { .. } => {}
            }
        }
    }
}
