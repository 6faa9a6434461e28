//! The `shmringsrc` subclass of `GstPushSrc`: settings, state, the
//! connection to the sink (with `reconnect`) and the GStreamer trait impls.
//! Beside it: [`super::buffers`] (frames into buffers) and
//! [`super::events`] (the sink's events pushed downstream in order).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_src::CreateSuccess;
use gst_base::subclass::prelude::*;
use shmring::frames::{self, FrameConfig, FrameReceiver, Received, UpstreamSender};

use crate::clock::Timeline;
use crate::convert;
use crate::util::{self, lock, DEFAULT_SPIN_US, DEFAULT_TIMEOUT_MS, STEP};
use crate::{serialize, Error};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsrc",
        gst::DebugColorFlags::empty(),
        Some("shmring shared-memory source"),
    )
});

const DEFAULT_LATENCY_MS: u32 = 10;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) socket_path: Option<String>,
    pub(super) timeout_ms: u32,
    pub(super) is_live: bool,
    pub(super) reconnect: bool,
    pub(super) latency_ms: u32,
    pub(super) spin_us: u32,
    /// The sink is trusted: even buffers downstream parses (encoded, muxed,
    /// anything but raw audio and video) wrap the shared slot.
    pub(super) trusted: bool,
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
pub(super) struct Timing {
    /// The sink's current segment.
    pub(super) segment: gst::FormattedSegment<gst::ClockTime>,
    /// The sink's timeline, once it sent one.
    pub(super) timeline: Option<Timeline>,
    /// Live without a timeline: our running time minus the sink's, fixed at
    /// the first frame.
    pub(super) anchor: Option<i128>,
    /// A segment was handed to the base class and not yet sent downstream
    /// (it goes with the next buffer).
    pub(super) segment_pending: bool,
    /// Tags waiting for the stream to have a segment downstream.
    pub(super) pending_tags: Option<gst::TagList>,
    /// The next buffer follows a reconnection.
    pub(super) discont: bool,
    /// Metas (as a string) for the next frame.
    pub(super) metas: Option<String>,
    /// The caps are not raw audio or video: their bytes get parsed
    /// downstream, so they must not change under it (see `trusted`).
    pub(super) parsed: bool,
    /// Events waiting for the stream to have caps and a segment downstream.
    pub(super) pending_events: Vec<gst::Event>,
    /// A stream-start went downstream (the sink's, or ours).
    pub(super) stream_started: bool,
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
    pub(super) settings: Mutex<Settings>,
    pub(super) rx: Mutex<Option<FrameReceiver>>,
    /// Sends upstream events to the sink (without waiting for `rx`).
    pub(super) upstream: Mutex<Option<UpstreamSender>>,
    pub(super) timing: Mutex<Timing>,
    pub(super) unlocked: AtomicBool,
    /// This element is pushing a stream-start or segment of the sink's: the
    /// probe lets it through (the base class's own ones are dropped, see
    /// `constructed`).
    pub(super) own_event: AtomicBool,
    pub(super) stats: Stats,
}

/// Counters behind the `stats` property.
#[derive(Default)]
pub(super) struct Stats {
    /// Frames pushed (zero-copy + copied).
    pub(super) frames: AtomicU64,
    /// Payload bytes pushed.
    pub(super) bytes: AtomicU64,
    /// Frames pushed as a copy (downstream held too many slots).
    pub(super) copied: AtomicU64,
    /// Times a new sink was joined after the previous one went away.
    pub(super) reconnects: AtomicU64,
    /// Frames the sink skipped for this consumer (as the sink reports;
    /// `drops` in the stats).
    pub(super) missed: AtomicU64,
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
                    .blurb("Connect again when the sink goes away or drops this consumer")
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

impl ShmringSrc {
    pub(super) fn fail(&self, e: &Error) -> gst::FlowError {
        match e {
            Error::Shmring(shmring::Error::Disconnected) => {
                gst::element_imp_error!(self, gst::ResourceError::Read, ("the sink went away"));
            }
            Error::Shmring(shmring::Error::PeerDied) => {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::Read,
                    ("the sink's process died (it went away without closing its end)")
                );
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

    fn config(&self) -> (String, FrameConfig) {
        let s = lock(&self.settings);
        let cfg = FrameConfig::consumer()
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)))
            .spin(Duration::from_micros(u64::from(s.spin_us)));
        (s.socket_path.clone().unwrap_or_default(), cfg)
    }

    /// The sink went away and `reconnect` is set: waits for the next one.
    /// With `reconnect`: the sink went away, or dropped this consumer
    /// (`dropped`: its reason); waits for a sink on the same path.
    fn reconnect(&self, dropped: Option<&str>) -> Result<(), gst::FlowError> {
        match dropped {
            None => gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                ("the sink went away; waiting for a new one (reconnect=true)")
            ),
            Some(why) => gst::element_imp_warning!(
                self,
                gst::ResourceError::Read,
                ("the sink dropped this consumer ({why}); connecting again (reconnect=true)")
            ),
        }
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
                Err(shmring::Error::Disconnected | shmring::Error::PeerDied)
                    if lock(&self.settings).reconnect =>
                {
                    drop(guard);
                    self.reconnect(None)?;
                }
                Err(shmring::Error::Dropped(why)) if lock(&self.settings).reconnect => {
                    drop(guard);
                    self.reconnect(Some(&why))?;
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
