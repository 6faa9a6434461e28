//! The `shmringsink` subclass of `GstBaseSink`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::subclass::prelude::*;
use shmring::frames::{self, Arena, FrameConfig, FrameMeta, FrameSender, SegmentInfo, NONE};
use shmring::handshake::{ListenOptions, Listener};

use crate::pool::SlotPool;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsink",
        gst::DebugColorFlags::empty(),
        Some("shmring shared-memory sink"),
    )
});

/// 0: as many slots as fit in [`AUTO_ARENA`], between 8 and 64.
const DEFAULT_SLOTS: u32 = 0;
const AUTO_ARENA: usize = 16 << 20;
const DEFAULT_PERMS: u32 = 0o600;
const DEFAULT_TIMEOUT_MS: u32 = 5000;
/// Slots kept out of the offered pool: for caps/tags strings and copies.
const SPARE_SLOTS: u32 = 2;
/// Step of every wait, so that `unlock` is seen promptly.
const STEP: Duration = Duration::from_millis(20);

#[derive(Debug, Clone)]
struct Settings {
    socket_path: Option<String>,
    perms: u32,
    slots: u32,
    slot_size: u32,
    wait_for_connection: bool,
    timeout_ms: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            socket_path: None,
            perms: DEFAULT_PERMS,
            slots: DEFAULT_SLOTS,
            slot_size: 0,
            wait_for_connection: true,
            timeout_ms: DEFAULT_TIMEOUT_MS,
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    zero_copy: u64,
    copied: u64,
    consumers: u64,
    dropped: u64,
}

/// Everything that exists between `start` and `stop`.
struct State {
    listener: Listener,
    arena: Option<Arena>,
    pool: Option<SlotPool>,
    sender: Option<FrameSender>,
    /// Buffers sent by slot number, held until the consumer returns the slot.
    held: Vec<Option<gst::Buffer>>,
    stream_start: Option<String>,
    caps: Option<String>,
    segment: Option<SegmentInfo>,
    /// Bytes a slot must hold for the current caps.
    frame_size: usize,
}

#[derive(Default)]
pub struct ShmringSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    stats: Mutex<Stats>,
    unlocked: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for ShmringSink {
    const NAME: &'static str = "GstShmringSink";
    type Type = super::ShmringSink;
    type ParentType = gst_base::BaseSink;
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic in another callback; the data is plain.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ObjectImpl for ShmringSink {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("socket-path")
                    .nick("Socket path")
                    .blurb("Unix socket path on which consumers (shmringsrc) connect")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("perms")
                    .nick("Permissions")
                    .blurb("Mode of the socket file (0600: only this user may connect)")
                    .maximum(0o777)
                    .default_value(DEFAULT_PERMS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Slots")
                    .blurb("Number of frame slots in the shared arena (frames in flight + pool); 0 = as many as fit in 16 MiB, 8 to 64")
                    .maximum(frames::MAX_SLOTS)
                    .default_value(DEFAULT_SLOTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slot-size")
                    .nick("Slot size")
                    .blurb("Bytes per slot; 0 = from the caps (raw video: one frame; raw audio: 200 ms; else 4 MiB)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("wait-for-connection")
                    .nick("Wait for connection")
                    .blurb("Block the stream until the first consumer connects (else drop buffers until then)")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Milliseconds to wait for a consumer to return a slot or free descriptor room before dropping that consumer")
                    .minimum(1)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("zero-copy / copied frames, consumers served, buffers dropped")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => s.socket_path = value.get().unwrap_or(None),
            "perms" => s.perms = value.get().unwrap_or(DEFAULT_PERMS),
            "slots" => s.slots = value.get().unwrap_or(DEFAULT_SLOTS),
            "slot-size" => s.slot_size = value.get().unwrap_or(0),
            "wait-for-connection" => s.wait_for_connection = value.get().unwrap_or(true),
            "timeout" => s.timeout_ms = value.get().unwrap_or(DEFAULT_TIMEOUT_MS),
            _ => {}
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => s.socket_path.to_value(),
            "perms" => s.perms.to_value(),
            "slots" => s.slots.to_value(),
            "slot-size" => s.slot_size.to_value(),
            "wait-for-connection" => s.wait_for_connection.to_value(),
            "timeout" => s.timeout_ms.to_value(),
            "stats" => {
                let st = *lock(&self.stats);
                gst::Structure::builder("shmringsink-stats")
                    .field("zero-copy", st.zero_copy)
                    .field("copied", st.copied)
                    .field("consumers", st.consumers)
                    .field("dropped", st.dropped)
                    .build()
                    .to_value()
            }
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

impl GstObjectImpl for ShmringSink {}

impl ElementImpl for ShmringSink {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static META: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "shmring sink",
                "Sink",
                "Sends buffers, caps and events to another process through sealed memfd shared memory (zero-copy with its own pool)",
                "shmring developers",
            )
        });
        Some(&*META)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static T: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            vec![gst::PadTemplate::new(
                "sink",
                gst::PadDirection::Sink,
                gst::PadPresence::Always,
                &gst::Caps::new_any(),
            )
            .expect("static pad template")]
        });
        T.as_ref()
    }
}

/// Frame metadata of a buffer.
fn meta_of(buffer: &gst::BufferRef) -> FrameMeta {
    let t = |c: Option<gst::ClockTime>| c.map_or(NONE, |c| c.nseconds());
    FrameMeta {
        pts: t(buffer.pts()),
        dts: t(buffer.dts()),
        duration: t(buffer.duration()),
        offset: buffer.offset(),
        offset_end: buffer.offset_end(),
        flags: buffer.flags().bits(),
    }
}

fn segment_info(s: &gst::Segment) -> SegmentInfo {
    let v = |x: gst::GenericFormattedValue| x.value() as u64;
    SegmentInfo {
        format: s.format().into_glib() as u32,
        flags: s.flags().bits(),
        rate: s.rate(),
        applied_rate: s.applied_rate(),
        base: v(s.base()),
        offset: v(s.offset()),
        start: v(s.start()),
        stop: v(s.stop()),
        time: v(s.time()),
        position: v(s.position()),
        duration: v(s.duration()),
    }
}

/// Bytes one slot needs for `caps` when `slot-size` is 0.
fn frame_size_for(caps: &gst::CapsRef) -> usize {
    if let Ok(info) = gst_video::VideoInfo::from_caps(caps) {
        return info.size();
    }
    if let Ok(info) = gst_audio::AudioInfo::from_caps(caps) {
        return (info.rate() as usize * info.bpf() as usize / 5).max(4096);
    }
    4 << 20
}

use glib::translate::IntoGlib;

impl ShmringSink {
    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(lock(&self.settings).timeout_ms))
    }

    fn frame_config(&self, frame_size: usize) -> FrameConfig {
        let s = lock(&self.settings);
        let slot_size = if s.slot_size > 0 {
            s.slot_size as usize
        } else {
            frame_size
        };
        let slots = if s.slots > 0 {
            s.slots.max(SPARE_SLOTS + 2)
        } else {
            (AUTO_ARENA / slot_size.max(1)).clamp(8, 64) as u32
        };
        FrameConfig::new(slots, slot_size.max(64))
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)))
    }

    /// The arena for the current caps: made on first need, remade while no
    /// consumer uses it if the caps need bigger slots.
    fn ensure_arena(&self, st: &mut State) -> Result<Arena, gst::ErrorMessage> {
        if let Some(a) = &st.arena {
            if a.slot_size() >= st.frame_size || st.sender.is_some() {
                return Ok(a.clone());
            }
        }
        let cfg = self.frame_config(st.frame_size);
        let arena = Arena::new(&cfg).map_err(|e| {
            gst::error_msg!(gst::ResourceError::Failed, ["cannot create the arena: {e}"])
        })?;
        gst::info!(
            CAT,
            imp = self,
            "arena: {} slots of {} bytes",
            arena.slots(),
            arena.slot_size()
        );
        st.held = (0..arena.slots()).map(|_| None).collect();
        st.arena = Some(arena.clone());
        st.pool = None;
        Ok(arena)
    }

    /// Serves a consumer that is waiting (or, with `block`, waits for one).
    fn accept(&self, st: &mut State, block: bool) -> Result<(), gst::FlowError> {
        if st.sender.is_some() {
            return Ok(());
        }
        let conn = loop {
            let r = if block {
                st.listener.accept(Some(STEP)).map(Some)
            } else {
                st.listener.try_accept()
            };
            match r {
                Ok(Some(c)) => break c,
                Ok(None) => return Ok(()),
                Err(shmring::Error::Timeout) => {
                    if self.unlocked.load(Ordering::Acquire) {
                        return Err(gst::FlowError::Flushing);
                    }
                }
                Err(e) => {
                    gst::warning!(CAT, imp = self, "refused a consumer: {e}");
                    if !block {
                        return Ok(());
                    }
                }
            }
        };
        let peer = conn.peer();
        let arena = self.ensure_arena(st).map_err(|e| {
            self.post_error_message(e);
            gst::FlowError::Error
        })?;
        let cfg = self.frame_config(st.frame_size);
        let tx = match frames::serve_arena(conn, &cfg, arena) {
            Ok(tx) => tx,
            Err(e) => {
                gst::warning!(
                    CAT,
                    imp = self,
                    "handshake with pid {} failed: {e}",
                    peer.pid
                );
                return Ok(());
            }
        };
        gst::info!(
            CAT,
            imp = self,
            "serving consumer pid {} uid {}",
            peer.pid,
            peer.uid
        );
        lock(&self.stats).consumers += 1;
        st.sender = Some(tx);
        // A consumer joining mid-stream first gets the sticky state (strings
        // share one slot: each waits for the previous one to come back).
        if let Some(s) = st.stream_start.clone() {
            self.send_event(st, |tx| tx.send_stream_start(&s));
        }
        if let Some(c) = st.caps.clone() {
            self.send_event(st, |tx| tx.send_caps(&c));
        }
        if let Some(seg) = st.segment {
            self.send_event(st, |tx| tx.send_segment(&seg));
        }
        Ok(())
    }

    /// The consumer is gone or misbehaves: forget it and everything it held.
    fn drop_consumer(&self, st: &mut State, why: &shmring::Error) {
        if let Some(mut tx) = st.sender.take() {
            gst::warning!(CAT, imp = self, "dropping consumer: {why}");
            tx.reclaim_all();
        }
        for h in st.held.iter_mut() {
            *h = None;
        }
    }

    /// Takes returned slots (dropping the buffers held for them).
    fn reclaim(st: &mut State) -> shmring::Result<()> {
        let State { sender, held, .. } = st;
        if let Some(tx) = sender {
            tx.reclaim(|slot| {
                if let Some(h) = held.get_mut(slot as usize) {
                    *h = None;
                }
            })?;
        }
        Ok(())
    }

    /// Runs `op` against the consumer, waiting (in steps, up to `timeout`) while
    /// it reports `Full`; drops the consumer on any other error or on timeout.
    fn with_room(
        &self,
        st: &mut State,
        mut op: impl FnMut(&mut State) -> shmring::Result<()>,
    ) -> Result<bool, gst::FlowError> {
        let deadline = Instant::now() + self.timeout();
        loop {
            if st.sender.is_none() {
                return Ok(false);
            }
            if let Err(e) = Self::reclaim(st) {
                self.drop_consumer(st, &e);
                return Ok(false);
            }
            match op(st) {
                Ok(()) => return Ok(true),
                Err(shmring::Error::Full) => {}
                Err(e) => {
                    self.drop_consumer(st, &e);
                    return Ok(false);
                }
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if Instant::now() >= deadline {
                if let Some(tx) = st.sender.as_ref() {
                    gst::warning!(
                        CAT,
                        imp = self,
                        "consumer holds {} of {} slots and returned none for {:?}",
                        tx.in_flight(),
                        tx.slots(),
                        self.timeout()
                    );
                }
                self.drop_consumer(st, &shmring::Error::Timeout);
                return Ok(false);
            }
            if let Some(tx) = st.sender.as_mut() {
                // Either a returned slot or descriptor room may be missing.
                let _ = tx.wait_returns(Some(STEP / 2));
                let _ = tx.wait_writable(Some(STEP / 2));
            }
        }
    }

    fn send_event(&self, st: &mut State, f: impl Fn(&mut FrameSender) -> shmring::Result<()>) {
        let _ = self.with_room(st, |st| match st.sender.as_mut() {
            Some(tx) => f(tx),
            None => Ok(()),
        });
    }
}

impl BaseSinkImpl for ShmringSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = lock(&self.settings).clone();
        let path = s.socket_path.ok_or_else(|| {
            gst::error_msg!(gst::ResourceError::Settings, ["socket-path is not set"])
        })?;
        let opts = ListenOptions {
            mode: s.perms,
            ..ListenOptions::default()
        };
        let listener = Listener::bind(&path, &opts).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ["cannot listen on {path}: {e}"]
            )
        })?;
        *lock(&self.stats) = Stats::default();
        *lock(&self.state) = Some(State {
            listener,
            arena: None,
            pool: None,
            sender: None,
            held: Vec::new(),
            stream_start: None,
            caps: None,
            segment: None,
            frame_size: 4096,
        });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *lock(&self.state) = None;
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::Release);
        Ok(())
    }

    fn unlock_stop(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(false, Ordering::Release);
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let mut guard = lock(&self.state);
        let st = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "not started"))?;
        st.frame_size = frame_size_for(caps);
        if let Some(a) = &st.arena {
            if st.sender.is_some() && a.slot_size() < st.frame_size {
                return Err(gst::loggable_error!(
                    CAT,
                    "caps need {}-byte slots, the arena in use has {}: set slot-size",
                    st.frame_size,
                    a.slot_size()
                ));
            }
        }
        let s = caps.to_string();
        st.caps = Some(s.clone());
        self.send_event(st, |tx| tx.send_caps(&s));
        Ok(())
    }

    fn propose_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        let (caps, need_pool) = query.get_owned();
        let mut guard = lock(&self.state);
        let st = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "not started"))?;
        if let Some(c) = &caps {
            st.frame_size = st.frame_size.max(frame_size_for(c));
        }
        let arena = self
            .ensure_arena(st)
            .map_err(|e| gst::loggable_error!(CAT, "{e:?}"))?;
        let size = caps
            .as_ref()
            .and_then(|c| gst_video::VideoInfo::from_caps(c).ok().map(|i| i.size()))
            .unwrap_or(arena.slot_size());
        if size > arena.slot_size() {
            return Ok(());
        }
        let limit = arena.slots() - SPARE_SLOTS;
        // No maximum: the pool never blocks upstream (see `SlotPool`).
        let max = 0;
        if need_pool {
            let pool = match &st.pool {
                Some(p) => p.clone(),
                None => {
                    let p = SlotPool::new(arena.clone(), limit);
                    let mut config = p.config();
                    config.set_params(caps.as_ref(), size as u32, 0, max);
                    p.set_config(config)
                        .map_err(|e| gst::loggable_error!(CAT, "pool config: {e}"))?;
                    st.pool = Some(p.clone());
                    p
                }
            };
            query.add_allocation_pool(Some(&pool), size as u32, 0, max);
        } else {
            query.add_allocation_pool(None::<&gst::BufferPool>, size as u32, 0, max);
        }
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        {
            let mut guard = lock(&self.state);
            if let Some(st) = guard.as_mut() {
                use gst::EventView;
                match event.view() {
                    EventView::StreamStart(e) => {
                        let id = e.stream_id().to_string();
                        st.stream_start = Some(id.clone());
                        self.send_event(st, |tx| tx.send_stream_start(&id));
                    }
                    EventView::Segment(e) => {
                        let info = segment_info(e.segment());
                        st.segment = Some(info);
                        self.send_event(st, |tx| tx.send_segment(&info));
                    }
                    EventView::Eos(_) => {
                        // Like a buffer: wait for a first consumer if asked to.
                        let first = lock(&self.stats).consumers == 0;
                        let _ = self.accept(st, lock(&self.settings).wait_for_connection && first);
                        self.send_event(st, |tx| tx.send_eos());
                    }
                    EventView::FlushStart(_) => self.send_event(st, |tx| tx.send_flush_start()),
                    EventView::FlushStop(e) => {
                        let reset = e.resets_time();
                        self.send_event(st, |tx| tx.send_flush_stop(reset));
                    }
                    EventView::Gap(e) => {
                        let (pts, dur) = e.get();
                        let d = dur.map_or(NONE, |d| d.nseconds());
                        self.send_event(st, |tx| tx.send_gap(pts.nseconds(), d));
                    }
                    EventView::Tag(e) => {
                        let tags = e.tag().to_string();
                        self.send_event(st, |tx| tx.send_tags(&tags));
                    }
                    _ => {}
                }
            }
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let wait = lock(&self.settings).wait_for_connection;
        let mut guard = lock(&self.state);
        let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let first = lock(&self.stats).consumers == 0;
        self.accept(st, wait && first)?;
        if st.sender.is_none() {
            lock(&self.stats).dropped += 1;
            return Ok(gst::FlowSuccess::Ok);
        }
        let arena = self.ensure_arena(st).map_err(|e| {
            self.post_error_message(e);
            gst::FlowError::Error
        })?;
        let meta = meta_of(buffer);

        // Ours: one memory inside one arena slot.
        let own = if buffer.n_memory() == 1 {
            buffer.peek_memory(0).map_readable().ok().and_then(|m| {
                arena
                    .locate(m.as_ptr(), m.size())
                    .map(|(s, o)| (s, o, m.size()))
            })
        } else {
            None
        };
        if let Some((slot, offset, size)) = own {
            let sent = self.with_room(st, |st| match st.sender.as_mut() {
                Some(tx) => tx.send_frame(slot, offset, size, &meta),
                None => Ok(()),
            })?;
            if sent {
                if let Some(h) = st.held.get_mut(slot as usize) {
                    *h = Some(buffer.clone());
                }
                lock(&self.stats).zero_copy += 1;
            } else {
                lock(&self.stats).dropped += 1;
            }
            return Ok(gst::FlowSuccess::Ok);
        }

        // Foreign: copy once into a free slot.
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        if map.size() > arena.slot_size() {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "buffer of {} bytes does not fit a {}-byte slot: set slot-size",
                    map.size(),
                    arena.slot_size()
                )
            );
            return Err(gst::FlowError::Error);
        }
        let sent = self.with_room(st, |st| {
            let Some(tx) = st.sender.as_mut() else {
                return Ok(());
            };
            let mut lease = tx.try_lease().ok_or(shmring::Error::Full)?;
            lease.as_mut()[..map.size()].copy_from_slice(&map);
            tx.send_lease(lease, map.size(), &meta)
        })?;
        if sent {
            lock(&self.stats).copied += 1;
        } else {
            lock(&self.stats).dropped += 1;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
