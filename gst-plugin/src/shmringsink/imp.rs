//! The `shmringsink` subclass of `GstBaseSink`: settings, state and the
//! GStreamer trait impls. The machinery is beside it: [`super::intake`]
//! (consumers connecting), [`super::peers`] (each consumer, fan-out and the
//! slow-consumer policy), [`super::stream`] (buffers and events into the
//! frame stream), [`super::arena`] (the shared memory and the pool over it)
//! and [`super::upstream`] (the consumers' upstream events).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, LazyLock, Mutex};
use std::time::Duration;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::prelude::*;
use shmring::frames::{self, Arena};
use shmring::handshake::Connection;

use super::intake::Acceptor;
use super::peers::{Peer, Stats, Sticky, ARENA_STATS_EVERY};
use super::upstream::Upstream;
use super::SlowConsumer;
use crate::clock::ClockOffset;
use crate::convert::{self, frame_size_for};
use crate::pool::SlotPool;
use crate::util::{self, lock, DEFAULT_SPIN_US, DEFAULT_TIMEOUT_MS};

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "shmringsink",
        gst::DebugColorFlags::empty(),
        Some("shmring shared-memory sink"),
    )
});

/// 0: as many slots as fit in [`super::arena::AUTO_ARENA`], between 8 and 64.
const DEFAULT_SLOTS: u32 = 0;
const DEFAULT_PERMS: u32 = 0o600;
/// Each consumer costs two rings and a few fds: a bound, raised at will.
const DEFAULT_MAX_CONSUMERS: u32 = 64;
/// Longest the pool waits for a slot in flight to come back before it hands
/// out another (colder) one, by default (`return-wait`, µs).
const DEFAULT_RETURN_WAIT_US: u32 = 1000;
/// Default `blob-budget`: bytes of buffers too big for a slot that one
/// consumer may hold at once.
const DEFAULT_BLOB_BUDGET: u64 = frames::DEFAULT_BLOB_BUDGET as u64;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub(super) socket_path: Option<String>,
    pub(super) perms: u32,
    pub(super) slots: u32,
    pub(super) slot_size: u32,
    pub(super) wait_for_connection: bool,
    pub(super) timeout_ms: u32,
    /// Only this uid may connect (`SO_PEERCRED`); -1: any the socket mode lets in.
    pub(super) allowed_uid: i64,
    pub(super) slow_consumer: SlowConsumer,
    /// Most consumers served at once; 0: no limit.
    pub(super) max_consumers: u32,
    /// Busy-poll time (µs) of waits for consumers before sleeping.
    pub(super) spin_us: u32,
    /// Longest wait (µs) of an acquire for the slot in flight (big slots).
    pub(super) return_wait_us: u32,
    /// Most bytes of buffers too big for a slot one consumer may hold.
    pub(super) blob_budget: u64,
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
            slow_consumer: SlowConsumer::default(),
            max_consumers: DEFAULT_MAX_CONSUMERS,
            spin_us: DEFAULT_SPIN_US,
            return_wait_us: DEFAULT_RETURN_WAIT_US,
            blob_budget: DEFAULT_BLOB_BUDGET,
        }
    }
}

/// Everything that exists between `start` and `stop`.
pub(super) struct State {
    /// Consumers that connected before the slot size was known (no caps
    /// yet): served as soon as it is.
    pub(super) pending: Vec<Connection>,
    /// The slot size is known (set, or from caps or an allocation query).
    pub(super) geometry_known: bool,
    pub(super) arena: Option<Arena>,
    pub(super) pool: Option<SlotPool>,
    pub(super) peers: Vec<Peer>,
    pub(super) sticky: Sticky,
    /// Bytes a slot must hold for the current caps.
    pub(super) frame_size: usize,
    /// The arena was shown to a consumer: once every consumer has left, the
    /// next one gets a new arena (a consumer keeps read access to its arena
    /// after it left).
    pub(super) arena_served: bool,
    /// The offered pool changed: ask upstream to negotiate again.
    pub(super) reconfigure: bool,
    /// A consumer waits for a keyframe: ask upstream for one.
    pub(super) request_keyframe: bool,
    /// Buffers rendered (for the arena stats' period).
    pub(super) renders: u64,
    /// A buffer that is not a header came after the last header: the next
    /// header starts a new set.
    pub(super) header_run_over: bool,
    /// The pipeline clock's offset from `CLOCK_MONOTONIC`, cached.
    pub(super) clock_offset: ClockOffset,
}

impl State {
    fn new(geometry_known: bool) -> Self {
        State {
            pending: Vec::new(),
            geometry_known,
            arena: None,
            pool: None,
            peers: Vec::new(),
            sticky: Sticky::default(),
            frame_size: 4096,
            arena_served: false,
            reconfigure: false,
            request_keyframe: false,
            renders: 0,
            header_run_over: false,
            clock_offset: ClockOffset::default(),
        }
    }
}

#[derive(Default)]
pub struct ShmringSink {
    pub(super) settings: Mutex<Settings>,
    pub(super) state: Mutex<Option<State>>,
    /// Signalled when a consumer is served, and on `unlock`.
    pub(super) served: Condvar,
    pub(super) acceptor: Mutex<Option<Acceptor>>,
    /// The consumers' upstream events, read by the accepting thread without
    /// the state lock.
    pub(super) upstream: Upstream,
    pub(super) stats: Mutex<Stats>,
    pub(super) unlocked: AtomicBool,
}

#[glib::object_subclass]
impl ObjectSubclass for ShmringSink {
    const NAME: &'static str = "GstShmringSink";
    type Type = super::ShmringSink;
    type ParentType = gst_base::BaseSink;
}

impl ObjectImpl for ShmringSink {
    fn constructed(&self) {
        self.parent_constructed();
        // BaseSink keeps the last buffer for its `last-sample` property: here
        // that holds a slot of the arena out of the pool until the next
        // buffer, so upstream cycles through more slots instead of rewriting
        // the one the consumer just returned (still in the CPU caches).
        // Nobody reads it here; a user can turn it back on.
        self.obj().set_enable_last_sample(false);
    }

    fn properties() -> &'static [glib::ParamSpec] {
        static PROPS: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                util::socket_path_pspec("Unix socket path consumers connect to"),
                glib::ParamSpecUInt::builder("perms")
                    .nick("Permissions")
                    .blurb("Mode of the socket file")
                    .maximum(0o777)
                    .default_value(DEFAULT_PERMS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecInt64::builder("allowed-uid")
                    .nick("Allowed uid")
                    .blurb("The only uid whose consumers are served (-1: any)")
                    .minimum(-1)
                    .maximum(i64::from(u32::MAX))
                    .default_value(-1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slots")
                    .nick("Slots")
                    .blurb("Frame slots in the shared arena (0: as many as fit in 16 MiB, 8 to 64)")
                    .maximum(frames::MAX_SLOTS)
                    .default_value(DEFAULT_SLOTS)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("slot-size")
                    .nick("Slot size")
                    .blurb("Bytes per slot (0: from the caps: a video frame, 200 ms of audio, else 4 MiB)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("wait-for-connection")
                    .nick("Wait for connection")
                    .blurb("Block the stream until a first consumer connects")
                    .default_value(true)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("timeout")
                    .nick("Timeout")
                    .blurb("Milliseconds to wait for a stalled consumer before dropping it")
                    .minimum(1)
                    .default_value(DEFAULT_TIMEOUT_MS)
                    .mutable_playing()
                    .build(),
                util::spin_pspec("Microseconds to busy-poll for a returned slot (0: never)"),
                glib::ParamSpecUInt::builder("return-wait")
                    .nick("Return wait")
                    .blurb("Microseconds a buffer request waits for the cache-hot slot in flight (0: never)")
                    .maximum(1_000_000)
                    .default_value(DEFAULT_RETURN_WAIT_US)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("blob-budget")
                    .nick("Blob budget")
                    .blurb("Most bytes of oversized buffers one consumer may hold")
                    .minimum(1)
                    .default_value(DEFAULT_BLOB_BUDGET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-consumers")
                    .nick("Max consumers")
                    .blurb("Most consumers served at once (0: no limit)")
                    .default_value(DEFAULT_MAX_CONSUMERS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("slow-consumer", SlowConsumer::default())
                    .nick("Slow consumer")
                    .blurb("What to do with a consumer that cannot take a frame")
                    .mutable_playing()
                    .build(),
                util::stats_pspec("Counters of the sink and of each consumer"),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => util::set_socket_path(&mut s.socket_path, value, *CAT, &*self.obj()),
            "perms" => s.perms = value.get().unwrap_or(DEFAULT_PERMS),
            "slots" => s.slots = value.get().unwrap_or(DEFAULT_SLOTS),
            "slot-size" => s.slot_size = value.get().unwrap_or(0),
            "wait-for-connection" => s.wait_for_connection = value.get().unwrap_or(true),
            "timeout" => s.timeout_ms = value.get().unwrap_or(DEFAULT_TIMEOUT_MS),
            "allowed-uid" => s.allowed_uid = value.get().unwrap_or(-1),
            "slow-consumer" => s.slow_consumer = value.get().unwrap_or_default(),
            "max-consumers" => s.max_consumers = value.get().unwrap_or(DEFAULT_MAX_CONSUMERS),
            "spin" => s.spin_us = value.get().unwrap_or(DEFAULT_SPIN_US),
            "return-wait" => s.return_wait_us = value.get().unwrap_or(DEFAULT_RETURN_WAIT_US),
            "blob-budget" => s.blob_budget = value.get().unwrap_or(DEFAULT_BLOB_BUDGET),
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
            "slow-consumer" => s.slow_consumer.to_value(),
            "max-consumers" => s.max_consumers.to_value(),
            "spin" => s.spin_us.to_value(),
            "return-wait" => s.return_wait_us.to_value(),
            "blob-budget" => s.blob_budget.to_value(),
            "stats" => lock(&self.stats).to_structure().to_value(),
            _ => glib::Value::from_type(pspec.value_type()),
        }
    }
}

util::element_impls!(
    ShmringSink,
    "shmring sink",
    "Sink",
    "Sends buffers, caps and events to another process through sealed memfd shared memory (zero-copy with its own pool)",
    "sink",
    gst::PadDirection::Sink
);

impl BaseSinkImpl for ShmringSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = lock(&self.settings).clone();
        let path = util::socket_path_to_open(s.socket_path.as_deref())?;
        let intake = Self::listen(&path, &s)?;
        *lock(&self.stats) = Stats::default();
        *lock(&self.state) = Some(State::new(s.slot_size > 0));
        self.start_acceptor(intake)
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        self.stop_acceptor();
        *lock(&self.state) = None;
        self.upstream.clear();
        let mut st = lock(&self.stats);
        st.close();
        gst::info!(
            CAT,
            imp = self,
            "{} frames sent without a copy, {} copied, {} dropped, {} missed by single consumers, {} consumers served",
            st.zero_copy,
            st.copied,
            st.dropped,
            st.missed,
            st.consumers_served
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
        if !convert::system_memory_only(caps) {
            return Err(gst::loggable_error!(
                CAT,
                "caps {caps} are not in system memory: only system memory crosses"
            ));
        }
        let mut guard = lock(&self.state);
        let st = guard
            .as_mut()
            .ok_or_else(|| gst::loggable_error!(CAT, "not started"))?;
        let (size, _) = frame_size_for(caps);
        st.frame_size = size;
        st.geometry_known = true;
        // Caps that need bigger slots get a new arena (at the allocation
        // query or the next buffer); each consumer moves to it once it holds
        // no slot of the old one, and gets blobs until then.
        self.send_caps(st, caps);
        // Consumers that waited for the caps get them as sticky state.
        self.serve_pending(st);
        let served = !st.peers.is_empty();
        drop(guard);
        if served {
            self.served.notify_all();
        }
        Ok(())
    }

    fn caps(&self, filter: Option<&gst::Caps>) -> Option<gst::Caps> {
        Some(convert::system_memory_caps(filter))
    }

    fn query(&self, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::AcceptCaps(q) = query.view_mut() {
            let ok = convert::system_memory_only(q.caps());
            q.set_result(ok);
            if !ok {
                return true;
            }
        }
        BaseSinkImplExt::parent_query(self, query)
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
        let mut exact = None;
        if let Some(c) = &caps {
            let (size, is_exact) = frame_size_for(c);
            st.frame_size = st.frame_size.max(size);
            st.geometry_known = true;
            exact = is_exact.then_some(size);
        }
        let arena = self
            .ensure_arena(st)
            .map_err(|e| gst::loggable_error!(CAT, "{e:?}"))?;
        // The metas that cross (see `serialize`): upstream may use them
        // instead of rewriting buffers (videocrop then only adds a crop).
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        query.add_allocation_meta::<gst_video::VideoCropMeta>(None);
        query.add_allocation_meta::<gst_audio::AudioMeta>(None);
        // A pool only where every buffer's size is known (raw video): a pool
        // buffer is one slot, and an upstream that wanted more (an audio
        // source with big buffers, an encoder) would be cut short.
        let Some(size) = exact.filter(|&s| s <= arena.slot_size()) else {
            return Ok(());
        };
        // No maximum: the pool never blocks upstream (see `SlotPool`).
        if need_pool {
            let pool = self.offered_pool(st, &arena, caps.as_ref(), size)?;
            query.add_allocation_pool(Some(&pool), size as u32, 0, 0);
        } else {
            query.add_allocation_pool(None::<&gst::BufferPool>, size as u32, 0, 0);
        }
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        if let gst::EventView::FlushStart(_) = event.view() {
            // The base class first unlocks a render that waits for room.
            let ret = self.parent_event(event);
            if let Some(st) = lock(&self.state).as_mut() {
                self.send_event(st, false, |tx| tx.send_flush_start());
            }
            return ret;
        }
        {
            let mut guard = lock(&self.state);
            if Self::waits_for_first_consumer(&event, guard.as_ref()) {
                if let (Some(st), gst::EventView::Caps(c)) = (guard.as_mut(), event.view()) {
                    st.frame_size = frame_size_for(c.caps()).0;
                    st.geometry_known = true;
                }
                match self.wait_first_consumer(guard) {
                    Ok(g) => guard = g,
                    Err(_) => return self.parent_event(event),
                }
            }
            if let Some(st) = guard.as_mut() {
                self.forward_event(st, &event);
            }
        }
        self.parent_event(event)
    }

    fn render(&self, buffer: &gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (res, reconfigure, keyframe) = {
            let mut guard = lock(&self.state);
            if let Some(st) = guard.as_mut().filter(|st| !st.geometry_known) {
                // No caps and no slot-size: the first buffer sizes the slots.
                st.frame_size = st.frame_size.max(buffer.size());
                st.geometry_known = true;
            }
            let mut guard = self.wait_first_consumer(guard)?;
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            let res = self.render_locked(st, buffer);
            st.renders += 1;
            self.publish(st, st.renders % ARENA_STATS_EVERY == 0);
            (
                res,
                std::mem::take(&mut st.reconfigure),
                std::mem::take(&mut st.request_keyframe),
            )
        };
        if reconfigure {
            self.reconfigure_upstream();
        }
        if keyframe {
            self.request_keyframe_upstream();
        }
        res
    }
}

impl ShmringSink {
    pub(super) fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(lock(&self.settings).timeout_ms))
    }

    pub(super) fn policy(&self) -> SlowConsumer {
        lock(&self.settings).slow_consumer
    }

    /// When the sink is in `PLAYING`: its running time 0 on the monotonic
    /// clock, and its latency (see `crate::clock`).
    pub(super) fn timeline(&self, st: &mut State) -> Option<crate::clock::Timeline> {
        let obj = self.obj();
        let clock = obj.clock()?;
        let base = obj.base_time()?;
        let latency = obj.latency() + obj.render_delay();
        st.clock_offset.timeline(&clock, base, latency)
    }

    pub(super) fn reconfigure_upstream(&self) {
        // Upstream still renders into the previous arena's pool: those
        // buffers are copied until it takes the new pool.
        gst::debug!(CAT, imp = self, "new arena: asking upstream to reconfigure");
        let _ = self
            .obj()
            .sink_pad()
            .push_event(gst::event::Reconfigure::new());
    }

    fn request_keyframe_upstream(&self) {
        gst::debug!(
            CAT,
            imp = self,
            "a consumer waits for a keyframe: asking upstream"
        );
        let ev = gst_video::UpstreamForceKeyUnitEvent::builder()
            .all_headers(true)
            .build();
        let _ = self.obj().sink_pad().push_event(ev);
    }
}
