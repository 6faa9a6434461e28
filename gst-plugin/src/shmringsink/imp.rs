//! The `shmringsink` subclass of `GstBaseSink`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use shmring::frames::{self, Arena, FrameConfig, FrameMeta, FrameSender, SegmentInfo, NONE};
use shmring::handshake::{Connection, ListenOptions, Listener};

use crate::clock::{clock_minus_monotonic, Timeline};
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
/// Longest the pool waits for a slot in flight to come back before it leases
/// a free (cold) one.
const RETURN_WAIT: Duration = Duration::from_millis(1);
/// Slot size from which the pool waits for a slot in flight (see
/// `reclaim_returned`): about the size of a core's L2 cache.
const WAIT_FOR_RETURN_FROM: usize = 1 << 20;
/// Step of every wait, so that `unlock` is seen promptly.
const STEP: Duration = Duration::from_millis(20);
/// Longest handshake with a connecting consumer (it is local: milliseconds).
const HANDSHAKE: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
struct Settings {
    socket_path: Option<String>,
    perms: u32,
    slots: u32,
    slot_size: u32,
    wait_for_connection: bool,
    timeout_ms: u32,
    /// Only this uid may connect (`SO_PEERCRED`); -1: any the socket mode lets in.
    allowed_uid: i64,
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
            allowed_uid: -1,
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
    /// A consumer that connected before the slot size was known (no caps
    /// yet): served as soon as it is.
    pending: Option<Connection>,
    /// The slot size is known (set, or from caps or an allocation query).
    geometry_known: bool,
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
    /// The arena was shown to a consumer: the next one gets a new arena (a
    /// consumer keeps read access to its arena after it left).
    arena_served: bool,
    /// The offered pool changed: ask upstream to negotiate again.
    reconfigure: bool,
    /// The timeline last sent to the current consumer.
    timeline_sent: Option<Timeline>,
    /// The pipeline clock's offset from `CLOCK_MONOTONIC`: the clock (by
    /// address), the offset, and when it was sampled. Exact (0) for the
    /// monotonic system clock; resampled every 100 ms for another clock.
    clock_offset: Option<(usize, i128, Instant)>,
}

/// The thread that accepts consumers on the socket and notices their hang-up.
struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
pub struct ShmringSink {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// Signalled when a consumer is served, and on `unlock`.
    served: Condvar,
    acceptor: Mutex<Option<Acceptor>>,
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
                glib::ParamSpecInt64::builder("allowed-uid")
                    .nick("Allowed uid")
                    .blurb("Only a consumer running as this uid is served (checked with SO_PEERCRED; others are refused and logged with their pid and uid); -1 = any that perms lets connect")
                    .minimum(-1)
                    .maximum(i64::from(u32::MAX))
                    .default_value(-1)
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
                    .blurb("Frames sent (frames = zero-copy + copied), consumers served, buffers dropped (no consumer, or it stopped returning slots)")
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
            "allowed-uid" => s.allowed_uid = value.get().unwrap_or(-1),
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
            "allowed-uid" => s.allowed_uid.to_value(),
            "stats" => {
                let st = *lock(&self.stats);
                gst::Structure::builder("shmringsink-stats")
                    .field("frames", st.zero_copy + st.copied)
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
            // Not peer data: a constant template with ANY caps is always valid.
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

fn ignore_would_block(e: shmring::Error) -> shmring::Result<()> {
    if e.is_would_block() {
        Ok(())
    } else {
        Err(e)
    }
}

/// Bytes one slot needs for `caps` when `slot-size` is 0.
/// The second value is `true` when every buffer needs that much (raw video);
/// otherwise it is a guess (raw audio: 200 ms; anything else: 4 MiB).
fn frame_size_for(caps: &gst::CapsRef) -> (usize, bool) {
    if let Ok(info) = gst_video::VideoInfo::from_caps(caps) {
        return (info.size(), true);
    }
    if let Ok(info) = gst_audio::AudioInfo::from_caps(caps) {
        return (
            (info.rate() as usize * info.bpf() as usize / 5).max(4096),
            false,
        );
    }
    (4 << 20, false)
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
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)).min(HANDSHAKE))
    }

    /// The arena for the current caps: made on first need, remade while no
    /// consumer uses it if the caps need bigger slots.
    fn ensure_arena(&self, st: &mut State) -> Result<Arena, gst::ErrorMessage> {
        let cfg = self.frame_config(st.frame_size);
        if let Some(a) = &st.arena {
            if a.slot_size() >= cfg.slot_size || st.sender.is_some() {
                return Ok(a.clone());
            }
        }
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
        if st.arena.replace(arena.clone()).is_some() {
            st.reconfigure = true;
        }
        st.pool = None;
        st.arena_served = false;
        Ok(arena)
    }

    /// The acceptor thread: takes connections, and drops a consumer whose
    /// link hung up even while no buffer flows.
    fn acceptor_loop(
        weak: glib::WeakRef<super::ShmringSink>,
        listener: Listener,
        stop: Arc<AtomicBool>,
    ) {
        while !stop.load(Ordering::Acquire) {
            let conn = listener.accept(Some(STEP));
            let Some(obj) = weak.upgrade() else {
                return;
            };
            let imp = obj.imp();
            match conn {
                Ok(c) => imp.take_connection(c),
                Err(shmring::Error::Timeout) => {}
                Err(e) => gst::warning!(CAT, imp = imp, "refused a consumer: {e}"),
            }
            imp.check_alive();
        }
    }

    /// Drops the consumer if its link hung up (without waiting for a
    /// streaming thread that holds the state).
    fn check_alive(&self) {
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        };
        if let Some(st) = guard.as_mut() {
            if st.sender.as_mut().is_some_and(|tx| !tx.is_peer_alive()) {
                self.drop_consumer(st, &shmring::Error::Disconnected);
            }
        }
    }

    /// A consumer connected: serve it (one at a time).
    fn take_connection(&self, conn: Connection) {
        let peer = conn.peer();
        let reconfigure = {
            let mut guard = lock(&self.state);
            let Some(st) = guard.as_mut() else {
                return;
            };
            if st.sender.as_mut().is_some_and(|tx| tx.is_peer_alive()) || st.pending.is_some() {
                gst::warning!(
                    CAT,
                    imp = self,
                    "refusing consumer pid {}: this sink serves one consumer at a time",
                    peer.pid
                );
                return;
            }
            if st.sender.is_some() {
                self.drop_consumer(st, &shmring::Error::Disconnected);
            }
            st.pending = Some(conn);
            self.serve_pending(st);
            std::mem::take(&mut st.reconfigure)
        };
        self.served.notify_all();
        if reconfigure {
            self.reconfigure_upstream();
        }
    }

    /// Serves the consumer that waits, once the slot size is known.
    fn serve_pending(&self, st: &mut State) {
        if !st.geometry_known || st.sender.is_some() {
            return;
        }
        let Some(conn) = st.pending.take() else {
            return;
        };
        let peer = conn.peer();
        if st.arena_served {
            // The previous consumer may still map the old arena: never let it
            // read what this one is sent.
            st.arena = None;
            st.pool = None;
            st.reconfigure = true;
        }
        let arena = match self.ensure_arena(st) {
            Ok(a) => a,
            Err(e) => {
                self.post_error_message(e);
                return;
            }
        };
        // Shown to this consumer from now on, even if the handshake fails.
        st.arena_served = true;
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
                return;
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
        st.timeline_sent = None;
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
    }

    /// With `wait-for-connection`, waits until a first consumer is served
    /// (later ones are not waited for: buffers are dropped between consumers).
    fn wait_first_consumer<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Option<State>>,
    ) -> Result<MutexGuard<'a, Option<State>>, gst::FlowError> {
        if !lock(&self.settings).wait_for_connection {
            return Ok(guard);
        }
        loop {
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            self.serve_pending(st);
            if st.sender.is_some() || lock(&self.stats).consumers > 0 {
                return Ok(guard);
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            guard = match self.served.wait_timeout(guard, STEP) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    fn reconfigure_upstream(&self) {
        // Upstream still renders into the previous arena's pool: those
        // buffers are copied until it takes the new pool.
        gst::debug!(CAT, imp = self, "new arena: asking upstream to reconfigure");
        let _ = self
            .obj()
            .sink_pad()
            .push_event(gst::event::Reconfigure::new());
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

    /// From the pool, when upstream wants a buffer and none is free: takes
    /// the slots the consumer returned (unless a render holds the state; it
    /// reclaims itself). An error is left for the next render to handle.
    fn reclaim_returned(&self) {
        let Ok(mut guard) = self.state.try_lock() else {
            return;
        };
        let Some(st) = guard.as_mut() else {
            return;
        };
        let held_before = st.held.iter().filter(|h| h.is_some()).count();
        let _ = Self::reclaim(st);
        if st.held.iter().filter(|h| h.is_some()).count() < held_before {
            return;
        }
        // Nothing came back yet: a slot in flight usually does within
        // microseconds. For big slots, waiting for it (asleep, at most
        // RETURN_WAIT) keeps upstream writing the same hot slots; a new slot
        // would be a cold one (for 1080p RGBA that costs more than the
        // wait). Small slots stay in cache anyway: no wait.
        let big = st
            .arena
            .as_ref()
            .is_some_and(|a| a.slot_size() >= WAIT_FOR_RETURN_FROM);
        if let Some(tx) = st.sender.as_mut().filter(|_| big) {
            if tx.in_flight() > 0 && tx.wait_returns(Some(RETURN_WAIT)).is_ok() {
                let _ = Self::reclaim(st);
            }
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
                        "consumer holds {} of {} slots and returned none for {:?} ({} buffers held here)",
                        tx.in_flight(),
                        tx.slots(),
                        self.timeout(),
                        st.held.iter().filter(|h| h.is_some()).count()
                    );
                }
                self.drop_consumer(st, &shmring::Error::Timeout);
                return Ok(false);
            }
            if let Some(tx) = st.sender.as_mut() {
                // Either a returned slot or descriptor room may be missing.
                let r = tx
                    .wait_returns(Some(STEP / 2))
                    .or_else(ignore_would_block)
                    .and_then(|()| tx.wait_writable(Some(STEP / 2)))
                    .or_else(ignore_would_block);
                if let Err(e) = r {
                    self.drop_consumer(st, &e);
                    return Ok(false);
                }
            }
        }
    }

    /// A free buffer of the pool, if it is a whole slot of `arena`, holding
    /// `data`: the buffer and its slot.
    fn copy_to_pool_slot(
        pool: &SlotPool,
        arena: &Arena,
        data: &[u8],
    ) -> Option<(gst::Buffer, u32)> {
        let params =
            gst::BufferPoolAcquireParams::with_flags(gst::BufferPoolAcquireFlags::DONTWAIT);
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

    /// Where this pipeline's running time 0 lies on the monotonic clock, and
    /// its latency (see `crate::clock`); `None` before PLAYING.
    fn timeline(&self, st: &mut State) -> Option<Timeline> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        let key = clock.as_ptr() as usize;
        // Once per clock (per 100 ms for a clock that is not the monotonic
        // one): reading the clock's type is a GObject property lookup, too
        // slow for every small audio buffer.
        let offset = match st.clock_offset {
            Some((k, off, at))
                if k == key && (off == 0 || at.elapsed() < Duration::from_millis(100)) =>
            {
                off
            }
            _ => {
                let off = clock_minus_monotonic(&clock);
                st.clock_offset = Some((key, off, Instant::now()));
                off
            }
        };
        let base_time = u64::try_from(i128::from(base.nseconds()) - offset).ok()?;
        let latency = obj.latency() + obj.render_delay();
        Some(Timeline {
            base_time,
            latency: latency.nseconds(),
        })
    }

    /// Tells the consumer the timeline if it changed (a sampled clock offset
    /// moving by less than 1 ms is no change).
    fn send_timeline(&self, st: &mut State) {
        let Some(t) = self.timeline(st) else {
            return;
        };
        let changed = st.timeline_sent.is_none_or(|old| {
            old.latency != t.latency || old.base_time.abs_diff(t.base_time) > 1_000_000
        });
        if changed && st.sender.is_some() {
            gst::debug!(CAT, imp = self, "timeline {t:?}");
            let tags = t.to_tags_string();
            self.send_event(st, |tx| tx.send_tags(&tags));
            if st.sender.is_some() {
                st.timeline_sent = Some(t);
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
            allowed_uids: u32::try_from(s.allowed_uid).ok().map(|uid| vec![uid]),
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
            pending: None,
            geometry_known: s.slot_size > 0,
            arena: None,
            pool: None,
            sender: None,
            held: Vec::new(),
            stream_start: None,
            caps: None,
            segment: None,
            frame_size: 4096,
            arena_served: false,
            reconfigure: false,
            timeline_sent: None,
            clock_offset: None,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let weak = self.obj().downgrade();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shmringsink-accept".into())
            .spawn(move || Self::acceptor_loop(weak, listener, st))
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Failed,
                    ["cannot start the accepting thread: {e}"]
                )
            })?;
        *lock(&self.acceptor) = Some(Acceptor { stop, thread });
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        if let Some(a) = lock(&self.acceptor).take() {
            a.stop.store(true, Ordering::Release);
            // It sees `stop` within one STEP (or one bounded handshake).
            let _ = a.thread.join();
        }
        *lock(&self.state) = None;
        let st = *lock(&self.stats);
        gst::info!(
            CAT,
            imp = self,
            "{} frames sent without a copy, {} copied, {} dropped, {} consumers",
            st.zero_copy,
            st.copied,
            st.dropped,
            st.consumers
        );
        Ok(())
    }

    fn unlock(&self) -> Result<(), gst::ErrorMessage> {
        self.unlocked.store(true, Ordering::Release);
        self.served.notify_all();
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
        let (size, exact) = frame_size_for(caps);
        st.frame_size = size;
        st.geometry_known = true;
        let too_small = st
            .arena
            .as_ref()
            .filter(|a| exact && st.sender.is_some() && a.slot_size() < size)
            .map(|a| a.slot_size());
        if let Some(have) = too_small {
            // The consumer maps this arena and cannot be given a bigger one:
            // let it go (a shmringsrc with reconnect=true comes back and gets
            // an arena for the new caps).
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                ("caps {caps} need {size}-byte slots, the consumer's arena has {have}: consumer dropped (set slot-size to the largest frame to avoid this)")
            );
            self.drop_consumer(st, &shmring::Error::Full);
        }
        let s = caps.to_string();
        st.caps = Some(s.clone());
        if st.sender.is_some() {
            self.send_event(st, |tx| tx.send_caps(&s));
        } else {
            // A consumer that waited for the caps gets them as sticky state.
            self.serve_pending(st);
        }
        let served = st.sender.is_some();
        drop(guard);
        if served {
            self.served.notify_all();
        }
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
            st.frame_size = st.frame_size.max(frame_size_for(c).0);
            st.geometry_known = true;
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
                    let sink = self.obj().downgrade();
                    p.set_on_empty(move || {
                        if let Some(sink) = sink.upgrade() {
                            sink.imp().reclaim_returned();
                        }
                    });
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
        use gst::EventView;
        if let EventView::FlushStart(_) = event.view() {
            // The base class first unlocks a render that waits for room.
            let ret = self.parent_event(event);
            if let Some(st) = lock(&self.state).as_mut() {
                self.send_event(st, |tx| tx.send_flush_start());
            }
            return ret;
        }
        {
            let mut guard = lock(&self.state);
            if let EventView::Eos(_) = event.view() {
                // Like a buffer: wait for a first consumer if asked to.
                if let Some(st) = guard.as_mut() {
                    st.geometry_known = true;
                }
                match self.wait_first_consumer(guard) {
                    Ok(g) => guard = g,
                    Err(_) => return self.parent_event(event),
                }
            }
            if let Some(st) = guard.as_mut() {
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
                    EventView::Eos(_) => self.send_event(st, |tx| tx.send_eos()),
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
        let (res, reconfigure) = {
            let mut guard = lock(&self.state);
            if let Some(st) = guard.as_mut().filter(|st| !st.geometry_known) {
                // No caps and no slot-size: the first buffer sizes the slots.
                st.frame_size = st.frame_size.max(buffer.size());
                st.geometry_known = true;
            }
            let mut guard = self.wait_first_consumer(guard)?;
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let res = self.render_locked(st, buffer);
            (res, std::mem::take(&mut st.reconfigure))
        };
        if reconfigure {
            self.reconfigure_upstream();
        }
        res
    }
}

impl ShmringSink {
    fn render_locked(
        &self,
        st: &mut State,
        buffer: &gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        self.serve_pending(st);
        if st.sender.is_none() {
            lock(&self.stats).dropped += 1;
            return Ok(gst::FlowSuccess::Ok);
        }
        self.send_timeline(st);
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
            if lock(&self.settings).slot_size > 0 {
                gst::element_imp_error!(
                    self,
                    gst::StreamError::Format,
                    (
                        "buffer of {} bytes does not fit a {}-byte slot: raise slot-size",
                        map.size(),
                        arena.slot_size()
                    )
                );
                return Err(gst::FlowError::Error);
            }
            // Slots sized from a guess (audio, compressed formats): the next
            // consumer gets slots for twice this buffer.
            st.frame_size = st.frame_size.max(map.size().saturating_mul(2));
            gst::element_imp_warning!(
                self,
                gst::ResourceError::NoSpaceLeft,
                (
                    "buffer of {} bytes does not fit the consumer's {}-byte slots: consumer dropped (set slot-size to the largest buffer to avoid this)",
                    map.size(),
                    arena.slot_size()
                )
            );
            self.drop_consumer(st, &shmring::Error::Full);
            lock(&self.stats).dropped += 1;
            return Ok(gst::FlowSuccess::Ok);
        }
        let mut slot_buffer = None;
        let sent = self.with_room(st, |st| {
            let Some(tx) = st.sender.as_mut() else {
                return Ok(());
            };
            if let Some(mut lease) = tx.try_lease() {
                lease.as_mut()[..map.size()].copy_from_slice(&map);
                return tx.send_lease(lease, map.size(), &meta);
            }
            // Every free slot may sit in the pool (e.g. upstream outran the
            // consumer, the pool grew, and this buffer came from outside it):
            // copy into a buffer of the pool's then.
            let (b, slot) = st
                .pool
                .as_ref()
                .and_then(|p| Self::copy_to_pool_slot(p, &arena, &map))
                .ok_or(shmring::Error::Full)?;
            tx.send_frame(slot, 0, map.size(), &meta)?;
            slot_buffer = Some((slot, b));
            Ok(())
        })?;
        if let Some((slot, b)) = slot_buffer {
            if let Some(h) = st.held.get_mut(slot as usize) {
                *h = Some(b);
            }
        }
        if sent {
            lock(&self.stats).copied += 1;
        } else {
            lock(&self.stats).dropped += 1;
        }
        Ok(gst::FlowSuccess::Ok)
    }
}
