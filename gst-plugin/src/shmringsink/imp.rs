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
use shmring::frames::{
    self, Arena, Blob, FrameConfig, FrameExtras, FrameMeta, FrameSender, PlaneLayout, NONE,
};
use shmring::handshake::PeerCred;
use shmring::handshake::{Arrival, Connection, Intake, IntakeOptions, ListenOptions, Listener};

use super::peers::{Peer, PeerStats, Stats, Sticky, ARENA_STATS_EVERY};
use super::SlowConsumer;
use crate::clock::{clock_minus_monotonic, Timeline};
use crate::convert::{self, frame_size_for, meta_of, segment_info};
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
/// Each consumer costs two rings and a few fds: a bound, raised at will.
const DEFAULT_MAX_CONSUMERS: u32 = 64;
/// A returned slot usually comes back within tens of microseconds.
const DEFAULT_SPIN_US: u32 = 50;
/// Slots kept out of the offered pool: for caps/tags strings and copies.
const SPARE_SLOTS: u32 = 2;
/// Longest the pool waits for a slot in flight to come back before it hands
/// out another (colder) one, by default (`return-wait`, µs).
const DEFAULT_RETURN_WAIT_US: u32 = 1000;
/// Slot size from which the pool waits for a slot in flight (see
/// `reclaim_returned`): about the size of a core's L2 cache.
const WAIT_FOR_RETURN_FROM: usize = 1 << 20;
/// Step of every wait, so that `unlock` is seen promptly.
const STEP: Duration = Duration::from_millis(20);
/// Longest handshake with a connecting consumer (it is local: milliseconds).
const HANDSHAKE: Duration = Duration::from_secs(1);
/// Most connections waiting for their hello at once (the oldest is dropped
/// beyond it): a silent connection costs an fd until its deadline
/// ([`HANDSHAKE`]), never a wait.
const MAX_PENDING_HANDSHAKES: usize = shmring::handshake::DEFAULT_MAX_PENDING;

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
    slow_consumer: SlowConsumer,
    /// Most consumers served at once; 0: no limit.
    max_consumers: u32,
    /// Busy-poll time (µs) of waits for consumers before sleeping.
    spin_us: u32,
    /// Longest wait (µs) of an acquire for the slot in flight (big slots).
    return_wait_us: u32,
    /// Most bytes of buffers too big for a slot one consumer may hold.
    blob_budget: u64,
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
struct State {
    /// Consumers that connected before the slot size was known (no caps
    /// yet): served as soon as it is.
    pending: Vec<Connection>,
    /// The slot size is known (set, or from caps or an allocation query).
    geometry_known: bool,
    arena: Option<Arena>,
    pool: Option<SlotPool>,
    peers: Vec<Peer>,
    sticky: Sticky,
    /// Bytes a slot must hold for the current caps.
    frame_size: usize,
    /// The arena was shown to a consumer: once every consumer has left, the
    /// next one gets a new arena (a consumer keeps read access to its arena
    /// after it left).
    arena_served: bool,
    /// The offered pool changed: ask upstream to negotiate again.
    reconfigure: bool,
    /// A consumer waits for a keyframe: ask upstream for one.
    request_keyframe: bool,
    /// Buffers rendered (for the arena stats' period).
    renders: u64,
    /// A buffer that is not a header came after the last header: the next
    /// header starts a new set.
    header_run_over: bool,
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
    /// Each consumer's upstream messages (pid, receiver), read by the
    /// accepting thread without the state lock.
    upstream: Mutex<Vec<(i32, frames::UpstreamReceiver)>>,
    /// Which consumer's QoS goes upstream (the slowest one's, see
    /// `QosAggregate`).
    qos: Mutex<crate::serialize::QosAggregate>,
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
                glib::ParamSpecUInt::builder("spin")
                    .nick("Spin")
                    .blurb("Most microseconds to busy-poll for a returned slot or descriptor room before sleeping on the wake-up fd (burns CPU; returns usually come back within tens of microseconds); waits stop spinning while recent spins ran out for nothing; 0 = never spin")
                    .maximum(1_000_000)
                    .default_value(DEFAULT_SPIN_US)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("return-wait")
                    .nick("Return wait")
                    .blurb("With slots of 1 MiB or more: microseconds upstream's buffer request waits for the slot in flight to come back, so that it rewrites that (cache-hot) slot rather than a colder free one; 0 = never wait")
                    .maximum(1_000_000)
                    .default_value(DEFAULT_RETURN_WAIT_US)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecUInt64::builder("blob-budget")
                    .nick("Blob budget")
                    .blurb("Most bytes of buffers bigger than a slot that one consumer may hold at once")
                    .minimum(1)
                    .default_value(DEFAULT_BLOB_BUDGET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("max-consumers")
                    .nick("Max consumers")
                    .blurb("Most consumers served at once (each costs two rings and a few fds); more are refused with the reason and logged with their pid and uid; 0 = no limit")
                    .default_value(DEFAULT_MAX_CONSUMERS)
                    .mutable_playing()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("slow-consumer", SlowConsumer::default())
                    .nick("Slow consumer")
                    .blurb("What to do with a consumer that cannot take a frame (its descriptor ring is full, or with several consumers it holds half the slots): block the pipeline for it, drop frames for it only, or disconnect it once it has missed frames for `timeout`")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecBoxed::builder::<gst::Structure>("stats")
                    .nick("Statistics")
                    .blurb("frames (= zero-copy + copied), bytes, consumers (connected), consumers-served, dropped (buffers no consumer got), drops (frames single consumers missed), bad-returns, disconnects, slots-in-flight, leaked-slots, and peers: one structure per consumer (pid, uid, frames, bytes, drops, held, bad-returns)")
                    .read_only()
                    .build(),
            ]
        });
        PROPS.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut s = lock(&self.settings);
        match pspec.name() {
            "socket-path" => {
                let path: Option<String> = value.get().unwrap_or(None);
                if let Some(Err(e)) = path.as_deref().map(convert::check_socket_path) {
                    gst::warning!(CAT, imp = self, "{e}");
                }
                s.socket_path = path;
            }
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

/// Frame flags that matter here.
const DELTA_UNIT: u32 = gst::BufferFlags::DELTA_UNIT.bits();
const DISCONT: u32 = gst::BufferFlags::DISCONT.bits();
const HEADER: u32 = gst::BufferFlags::HEADER.bits();

/// Default `blob-budget`: bytes of buffers too big for a slot that one
/// consumer may hold at once.
const DEFAULT_BLOB_BUDGET: u64 = frames::DEFAULT_BLOB_BUDGET as u64;

/// Sticky events replace their kind: same type and structure name.
fn sticky_key(ev: &gst::Event) -> String {
    format!(
        "{:?}/{}",
        ev.type_(),
        ev.structure().map_or("", |s| s.name().as_str())
    )
}

/// What a frame's bytes are, for [`ShmringSink::deliver`].
#[derive(Clone, Copy)]
enum Payload<'a> {
    /// Bytes `offset..offset + size` of an arena slot; `keep` (the buffer
    /// whose memory is the slot) is held for each consumer until it returns
    /// the slot.
    Slot {
        slot: u32,
        offset: usize,
        keep: Option<&'a gst::Buffer>,
    },
    /// A sealed memfd of its own (a buffer bigger than a slot).
    Blob(&'a Blob),
}

/// A frame on its way to the consumers.
struct Outgoing<'a> {
    payload: Payload<'a>,
    size: usize,
    meta: FrameMeta,
    layout: Option<PlaneLayout>,
    metas: Option<String>,
}

impl ShmringSink {
    fn timeout(&self) -> Duration {
        Duration::from_millis(u64::from(lock(&self.settings).timeout_ms))
    }

    fn policy(&self) -> SlowConsumer {
        lock(&self.settings).slow_consumer
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
            .blob_budget(usize::try_from(s.blob_budget).unwrap_or(usize::MAX))
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)).min(HANDSHAKE))
            .spin(Duration::from_micros(u64::from(s.spin_us)))
    }

    /// The arena for the current caps: made on first need, remade while no
    /// consumer uses it if the caps need bigger slots.
    fn ensure_arena(&self, st: &mut State) -> Result<Arena, gst::ErrorMessage> {
        let cfg = self.frame_config(st.frame_size);
        if let Some(a) = &st.arena {
            if a.slot_size() >= cfg.slot_size || !st.peers.is_empty() {
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
        if st.arena.replace(arena.clone()).is_some() {
            st.reconfigure = true;
        }
        st.pool = None;
        st.arena_served = false;
        Ok(arena)
    }

    /// The acceptor thread: takes connections and reads their hellos
    /// concurrently ([`Intake`]: none can hold up another, or the stream),
    /// serves them, serves those that waited for the caps once the caps are
    /// known, and drops consumers whose link hung up even while no buffer
    /// flows.
    fn acceptor_loop(
        weak: glib::WeakRef<super::ShmringSink>,
        mut intake: Intake,
        stop: Arc<AtomicBool>,
    ) {
        while !stop.load(Ordering::Acquire) {
            let arrivals = intake.poll(STEP);
            let Some(obj) = weak.upgrade() else {
                return;
            };
            let imp = obj.imp();
            match arrivals {
                Ok(arrivals) => {
                    for a in arrivals {
                        match a {
                            Arrival::Ready(c) => imp.take_connection(c),
                            Arrival::Refused { peer, reason } => {
                                lock(&imp.stats).refused += 1;
                                match peer {
                                    Some(p) => gst::warning!(
                                        CAT,
                                        imp = imp,
                                        "dropped connection of pid {} uid {}: {reason}",
                                        p.pid,
                                        p.uid
                                    ),
                                    None => {
                                        gst::warning!(
                                            CAT,
                                            imp = imp,
                                            "dropped a connection: {reason}"
                                        )
                                    }
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    gst::warning!(CAT, imp = imp, "accepting consumers: {e}");
                    std::thread::sleep(STEP);
                }
            }
            imp.check_alive();
            imp.forward_upstream();
        }
    }

    /// Pushes the upstream events consumers sent (force-key-unit,
    /// navigation, QoS, reconfigure, custom) to this pipeline's upstream.
    /// At most 16 per consumer per round: a consumer that floods cannot keep
    /// this thread from its other work.
    fn forward_upstream(&self) {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        lock(&self.upstream).retain(|(pid, rx)| {
            for _ in 0..16 {
                match rx.try_recv() {
                    Ok(Some(s)) => match crate::serialize::upstream_event_from_string(&s) {
                        Ok(ev) => events.push((*pid, ev)),
                        Err(e) => {
                            gst::warning!(
                                CAT,
                                imp = self,
                                "pid {pid}: upstream event refused ({e})"
                            )
                        }
                    },
                    Ok(None) => return true,
                    Err(shmring::Error::Disconnected) => {
                        gone.push(*pid);
                        return false;
                    }
                    Err(e) => {
                        gst::warning!(CAT, imp = self, "pid {pid}: {e}");
                        gone.push(*pid);
                        return false;
                    }
                }
            }
            true
        });
        let now = Instant::now();
        {
            let mut qos = lock(&self.qos);
            for pid in gone {
                qos.forget(pid as u64);
            }
            // With several consumers, upstream adapts to the slowest one.
            events.retain(|(pid, ev)| {
                ev.type_() != gst::EventType::Qos || qos.offer_event(*pid as u64, ev, now)
            });
        }
        let pad = self.obj().sink_pad().clone();
        for (pid, ev) in events {
            gst::debug!(CAT, imp = self, "upstream event from pid {pid}: {ev:?}");
            let _ = pad.push_event(ev);
        }
    }

    /// Drops consumers whose link hung up or broke the protocol, and those
    /// waiting for the caps that went away; serves the waiting ones once the
    /// caps are known (without waiting for a streaming thread that holds the
    /// state).
    fn check_alive(&self) {
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let mut served = false;
        if let Some(st) = guard.as_mut() {
            for p in st.peers.iter_mut() {
                // A hang-up, or bytes on the link (a protocol violation).
                if !p.tx.is_peer_alive() {
                    p.gone.get_or_insert(shmring::Error::Disconnected);
                }
                // Returns arrive while no buffer flows, too: let go of them.
                p.reclaim();
            }
            self.remove_gone(st);
            st.pending.retain(|c| {
                let gone = c.is_gone();
                if gone {
                    gst::info!(
                        CAT,
                        imp = self,
                        "pid {} left before the caps were known",
                        c.peer().pid
                    );
                }
                !gone
            });
            served = st.geometry_known && !st.pending.is_empty();
            self.serve_pending(st);
        }
        drop(guard);
        if served {
            self.served.notify_all();
        }
    }

    /// A consumer's hello arrived (the [`Intake`] read it): serving it only
    /// sends, never waits. It runs here, on the acceptor thread, without
    /// holding the state while it sends.
    fn take_connection(&self, conn: Connection) {
        let peer = conn.peer();
        let (arena, cfg) = {
            let mut guard = lock(&self.state);
            let Some(st) = guard.as_mut() else {
                return;
            };
            if !st.geometry_known {
                gst::debug!(CAT, imp = self, "pid {} waits for the caps", peer.pid);
                st.pending.push(conn);
                return;
            }
            // Consumers that left meanwhile go first: if none is left, this
            // one gets a new arena.
            for p in st.peers.iter_mut() {
                // A hang-up, or bytes on the link (a protocol violation).
                if !p.tx.is_peer_alive() {
                    p.gone.get_or_insert(shmring::Error::Disconnected);
                }
            }
            self.remove_gone(st);
            st.pending.retain(|c| !c.is_gone());
            let max = lock(&self.settings).max_consumers as usize;
            if max > 0 && st.peers.len() + st.pending.len() >= max {
                gst::warning!(
                    CAT,
                    imp = self,
                    "refusing consumer pid {} uid {}: {} consumers served, max-consumers is {max}",
                    peer.pid,
                    peer.uid,
                    st.peers.len() + st.pending.len()
                );
                conn.refuse(&format!("this sink serves at most {max} consumers at once"));
                lock(&self.stats).refused += 1;
                return;
            }
            match self.arena_for_new_peer(st) {
                Some(a) => (a, self.frame_config(st.frame_size)),
                None => return,
            }
        };
        let served = frames::serve_arena(conn, &cfg, arena.clone());
        let reconfigure = {
            let mut guard = lock(&self.state);
            let Some(st) = guard.as_mut() else {
                return;
            };
            match served {
                Ok(tx)
                    if st
                        .arena
                        .as_ref()
                        .is_some_and(|a| a.as_ptr() == arena.as_ptr()) =>
                {
                    self.add_peer(st, tx, peer);
                }
                Ok(_) => gst::info!(
                    CAT,
                    imp = self,
                    "the arena changed during the handshake with pid {}: it must reconnect",
                    peer.pid
                ),
                Err(e) => gst::warning!(
                    CAT,
                    imp = self,
                    "handshake with pid {} failed: {e}",
                    peer.pid
                ),
            }
            std::mem::take(&mut st.reconfigure)
        };
        self.served.notify_all();
        if reconfigure {
            self.reconfigure_upstream();
        }
    }

    /// The arena a new consumer is served from: the current one while other
    /// consumers use it; a new one if every consumer that saw the current
    /// one has left.
    fn arena_for_new_peer(&self, st: &mut State) -> Option<Arena> {
        if st.peers.is_empty() && st.arena_served {
            // The previous consumers may still map the old arena: never let
            // them read what this one is sent.
            st.arena = None;
            st.pool = None;
            st.reconfigure = true;
        }
        match self.ensure_arena(st) {
            Ok(a) => {
                // Shown to a consumer from now on, even if the handshake fails.
                st.arena_served = true;
                Some(a)
            }
            Err(e) => {
                self.post_error_message(e);
                None
            }
        }
    }

    fn add_peer(&self, st: &mut State, tx: FrameSender, cred: PeerCred) {
        gst::info!(
            CAT,
            imp = self,
            "serving consumer pid {} uid {} ({} connected)",
            cred.pid,
            cred.uid,
            st.peers.len() + 1
        );
        match tx.upstream_receiver() {
            Ok(u) => lock(&self.upstream).push((cred.pid, u)),
            Err(e) => gst::warning!(CAT, imp = self, "pid {}: no upstream events: {e}", cred.pid),
        }
        let mut p = Peer::new(tx, cred.pid, cred.uid);
        // The sticky state first (if there is room now; else before its
        // first frame).
        let _ = Self::catch_up(&mut p, &st.sticky, None);
        st.peers.push(p);
        lock(&self.stats).consumers_served += 1;
        self.publish(st, true);
    }

    /// Serves the consumers that connected before the caps were known
    /// (their hellos are in: this only sends, and never waits on them).
    fn serve_pending(&self, st: &mut State) {
        if !st.geometry_known || st.pending.is_empty() {
            return;
        }
        for conn in std::mem::take(&mut st.pending) {
            let peer = conn.peer();
            let Some(arena) = self.arena_for_new_peer(st) else {
                return;
            };
            let cfg = self.frame_config(st.frame_size);
            match frames::serve_arena(conn, &cfg, arena) {
                Ok(tx) => self.add_peer(st, tx, peer),
                Err(e) => gst::warning!(
                    CAT,
                    imp = self,
                    "handshake with pid {} failed: {e}",
                    peer.pid
                ),
            }
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
            if !st.peers.is_empty() || lock(&self.stats).consumers_served > 0 {
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

    /// Lets go of the consumers marked gone, and everything they held.
    fn remove_gone(&self, st: &mut State) {
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
                p.drops,
                p.tx.in_flight()
            );
            // Tell it why, unless it left by itself.
            match why {
                shmring::Error::Disconnected => {}
                shmring::Error::Dropped(reason) => p.tx.say_goodbye(reason),
                e => p.tx.say_goodbye(&e.to_string()),
            }
            stats.disconnects += 1;
            stats.bad_returns += p.tx.bad_returns();
            stats.drops += p.drops;
            // Dropping the sender releases its slots; its buffers go back.
            false
        });
        drop(stats);
        self.publish(st, true);
    }

    /// Copies the consumers' counters into the `stats` property, and the
    /// arena-wide ones when `arena` (or every [`ARENA_STATS_EVERY`] buffers).
    fn publish(&self, st: &State, arena: bool) {
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
        let Some(a) = &st.arena else {
            (stats.slots_in_flight, stats.leaked_slots) = (0, 0);
            return;
        };
        let marked: u64 = (0..a.slots()).map(|s| u64::from(a.holders(s))).sum();
        let held: u64 = st.peers.iter().map(|p| p.tx.in_flight() as u64).sum();
        stats.slots_in_flight = a.in_flight() as u64;
        stats.leaked_slots = marked.saturating_sub(held);
    }

    /// From the pool, whenever upstream wants a buffer: takes the slots the
    /// consumers returned (unless a render holds the state; it reclaims
    /// itself), so that the pool hands out the slot read last.
    fn reclaim_returned(&self) {
        let Ok(mut guard) = self.state.try_lock() else {
            return;
        };
        let Some(st) = guard.as_mut() else {
            return;
        };
        if st.peers.iter_mut().map(Peer::reclaim).sum::<usize>() > 0 {
            return;
        }
        // Nothing came back yet: a slot in flight usually does within
        // microseconds. For big slots, waiting for it (asleep, at most
        // `return-wait`) keeps upstream writing the same hot slots; a new slot
        // would be a cold one (for 1080p RGBA that costs more than the
        // wait). Small slots stay in cache anyway: no wait.
        let big = st
            .arena
            .as_ref()
            .is_some_and(|a| a.slot_size() >= WAIT_FOR_RETURN_FROM);
        // Only consumers that keep up: one that is missing frames (stopped,
        // say) would make every acquire wait for nothing.
        let keeps_up = |p: &Peer| p.tx.in_flight() > 0 && p.behind_since.is_none();
        let busy = st.peers.iter().filter(|p| keeps_up(p)).count();
        if !big || busy == 0 {
            return;
        }
        let wait = Duration::from_micros(u64::from(lock(&self.settings).return_wait_us));
        if wait.is_zero() {
            return;
        }
        let each = wait / busy as u32;
        for p in st.peers.iter_mut().filter(|p| keeps_up(p)) {
            if p.tx.wait_returns(Some(each)).is_ok() {
                p.reclaim();
            }
        }
    }

    /// Brings a consumer up to date before a frame: the sticky events if it
    /// missed some, then the timeline if it changed. `false`: not yet (no
    /// room, or it is gone: see `Peer::gone`).
    fn catch_up(p: &mut Peer, sticky: &Sticky, timeline: Option<Timeline>) -> bool {
        if p.resync {
            if let Some((id, flags, group)) = &sticky.stream_start {
                let r = p.tx.send_stream_start_with(id, *flags, *group);
                if p.note(r).is_err() {
                    return false;
                }
            }
            if let Some(c) = &sticky.caps {
                let r = p.tx.send_caps(c);
                if p.note(r).is_err() {
                    return false;
                }
            }
            if let Some(seg) = &sticky.segment {
                let r = p.tx.send_segment(seg);
                if p.note(r).is_err() {
                    return false;
                }
            }
            for (_, tags) in &sticky.tags {
                let r = p.tx.send_tags(tags);
                if p.note(r).is_err() {
                    return false;
                }
            }
            for (_, ev) in &sticky.events {
                let r = p.tx.send_event_string(ev);
                if p.note(r).is_err() {
                    return false;
                }
            }
            p.resync = false;
            p.timeline_sent = None;
        }
        // A consumer that joined after the stream's headers went out gets
        // them before its first frame.
        if !p.headers_sent {
            if p.frames == 0 {
                for (h, m) in sticky.headers.iter().skip(p.headers_done) {
                    let r = p.tx.send_blob(h, m, &FrameExtras::default());
                    if p.note(r).is_err() {
                        return false;
                    }
                    p.headers_done += 1;
                }
            }
            p.headers_sent = true;
        }
        if let Some(t) = timeline {
            let changed = p.timeline_sent.is_none_or(|old| {
                old.latency != t.latency || old.base_time.abs_diff(t.base_time) > 1_000_000
            });
            if changed {
                let r = p.tx.send_tags(&t.to_tags_string());
                if p.note(r).is_err() {
                    return false;
                }
                gst::trace!(CAT, "pid {}: timeline {t:?}", p.pid);
                p.timeline_sent = Some(t);
            }
        }
        true
    }

    /// Most slots one consumer may hold while others are served: half the
    /// frame slots, so that a stopped consumer leaves the rest to the others.
    fn hold_cap(st: &State) -> Option<usize> {
        let a = st.arena.as_ref()?;
        (st.peers.len() >= 2).then(|| (a.frame_slots() as usize / 2).max(1))
    }

    /// Waits a little (at most `STEP / 2` in all) for any of `peers` to return
    /// a slot or make descriptor room.
    fn wait_for<'a>(peers: impl Iterator<Item = &'a mut Peer>, n: usize) {
        let each = (STEP / 2) / n.max(1) as u32;
        for p in peers {
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

    /// Sends a frame to every consumer as the slow-consumer policy says.
    /// Returns how many consumers got it.
    fn deliver(&self, st: &mut State, out: &Outgoing<'_>) -> Result<usize, gst::FlowError> {
        let policy = self.policy();
        let timeout = self.timeout();
        let deadline = Instant::now() + timeout;
        let timeline = self.timeline(st);
        let cap = Self::hold_cap(st);
        let meta = &out.meta;
        let size = out.size;
        // Headers are never skipped: a consumer needs them before any frame.
        let delta = meta.flags & DELTA_UNIT != 0 && meta.flags & HEADER == 0;
        let extras = FrameExtras {
            layout: out.layout,
            metas: out.metas.as_deref(),
        };
        for p in st.peers.iter_mut() {
            p.todo = true;
            if delta && p.need_keyframe {
                // Joined or missed frames: a delta frame is useless to it.
                p.todo = false;
                p.drops += 1;
                p.tx.note_missed();
                if !p.key_requested {
                    p.key_requested = true;
                    st.request_keyframe = true;
                }
            }
        }
        let mut delivered = 0;
        loop {
            let mut waiting = 0;
            let State { peers, sticky, .. } = &mut *st;
            for p in peers.iter_mut().filter(|p| p.todo) {
                p.reclaim();
                let ready = p.gone.is_none()
                    && Self::catch_up(p, sticky, timeline)
                    && match out.payload {
                        Payload::Slot { .. } => cap.is_none_or(|c| p.tx.in_flight() < c),
                        Payload::Blob(b) => p.tx.blob_fits(b.len()),
                    };
                if ready {
                    let mut m = *meta;
                    if p.discont {
                        m.flags |= DISCONT;
                    }
                    let r = match out.payload {
                        Payload::Slot { slot, offset, .. } => {
                            p.tx.send_frame_with(slot, offset, size, &m, &extras)
                        }
                        Payload::Blob(b) => p.tx.send_blob(b, &m, &extras),
                    };
                    if p.note(r).is_ok() {
                        if let Payload::Slot { slot, keep, .. } = out.payload {
                            if let Some(h) = p.held.get_mut(slot as usize) {
                                *h = keep.cloned();
                            }
                        }
                        p.todo = false;
                        p.frames += 1;
                        p.bytes += size as u64;
                        p.discont = false;
                        p.need_keyframe = false;
                        p.key_requested = false;
                        p.behind_since = None;
                        delivered += 1;
                        continue;
                    }
                }
                if p.gone.is_none() {
                    waiting += 1;
                }
            }
            self.remove_gone(st);
            if waiting == 0 {
                return Ok(delivered);
            }
            let now = Instant::now();
            if policy != SlowConsumer::Block && delivered > 0 {
                // Others took it: the slow ones miss it rather than stall them.
                for p in st.peers.iter_mut().filter(|p| p.todo) {
                    p.miss(now);
                    gst::log!(CAT, "pid {} misses a frame ({} so far)", p.pid, p.drops);
                    if policy == SlowConsumer::Disconnect
                        && p.behind_since.is_some_and(|t| now - t >= timeout)
                    {
                        p.gone = Some(shmring::Error::Dropped(format!(
                            "missed every frame for {timeout:?} (slow-consumer=disconnect)"
                        )));
                    }
                }
                self.remove_gone(st);
                return Ok(delivered);
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if now >= deadline {
                for p in st.peers.iter_mut().filter(|p| p.todo) {
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
                return Ok(delivered);
            }
            let n = st.peers.iter().filter(|p| p.todo).count();
            Self::wait_for(st.peers.iter_mut().filter(|p| p.todo), n);
        }
    }

    /// Sends an event to every consumer. With the block policy, a single
    /// consumer, or when `must` (EOS), the sink waits up to `timeout` for
    /// room; otherwise a consumer without room gets the sticky events
    /// (stream-start, caps, segment) again before its next frame instead.
    fn send_event(
        &self,
        st: &mut State,
        must: bool,
        f: impl Fn(&mut FrameSender) -> shmring::Result<()>,
    ) {
        let wait = must || st.peers.len() == 1 || self.policy() == SlowConsumer::Block;
        let deadline = Instant::now() + self.timeout();
        for p in st.peers.iter_mut() {
            p.todo = true;
        }
        loop {
            let mut waiting = 0;
            let State { peers, sticky, .. } = &mut *st;
            for p in peers.iter_mut().filter(|p| p.todo) {
                p.reclaim();
                if p.gone.is_none() && Self::catch_up(p, sticky, None) {
                    let r = f(&mut p.tx);
                    if p.note(r).is_ok() {
                        p.todo = false;
                        continue;
                    }
                }
                if p.gone.is_some() {
                    continue;
                }
                if wait {
                    waiting += 1;
                } else {
                    gst::debug!(CAT, "pid {} has no room for an event: resync", p.pid);
                    p.todo = false;
                    p.resync = true;
                    p.need_keyframe = true;
                    p.discont = true;
                }
            }
            self.remove_gone(st);
            if waiting == 0 || self.unlocked.load(Ordering::Acquire) {
                return;
            }
            if Instant::now() >= deadline {
                let t = self.timeout();
                for p in st.peers.iter_mut().filter(|p| p.todo) {
                    p.gone = Some(shmring::Error::Dropped(format!(
                        "no room for an event for {t:?}"
                    )));
                }
                self.remove_gone(st);
                return;
            }
            let n = st.peers.iter().filter(|p| p.todo).count();
            Self::wait_for(st.peers.iter_mut().filter(|p| p.todo), n);
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
        loop {
            for p in st.peers.iter_mut() {
                p.reclaim();
            }
            self.remove_gone(st);
            if st.peers.is_empty() {
                return Ok(None);
            }
            if let Some(mut lease) = arena.try_lease() {
                lease.as_mut()[..data.len()].copy_from_slice(data);
                return Ok(Some(Copied::Lease(lease)));
            }
            // Every free slot may sit in the pool (e.g. upstream outran the
            // consumers, the pool grew, and this buffer came from outside
            // it): copy into a buffer of the pool's then.
            if let Some((b, slot)) = st
                .pool
                .as_ref()
                .and_then(|p| Self::copy_to_pool_slot(p, arena, data))
            {
                return Ok(Some(Copied::Buffer(b, slot)));
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            if Instant::now() >= deadline {
                if let Some(p) = st.peers.iter_mut().max_by_key(|p| p.tx.in_flight()) {
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
                return Ok(None);
            }
            let n = st.peers.len();
            Self::wait_for(st.peers.iter_mut(), n);
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
}

/// Where a foreign buffer was copied to.
enum Copied {
    /// A free slot, leased while it is sent.
    Lease(shmring::frames::SlotLease),
    /// A buffer of the pool (held for the consumers), and its slot.
    Buffer(gst::Buffer, u32),
}

impl BaseSinkImpl for ShmringSink {
    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let s = lock(&self.settings).clone();
        let path = s.socket_path.unwrap_or_default();
        convert::check_socket_path(&path)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ["{e}"]))?;
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
        let intake = Intake::new(
            listener,
            IntakeOptions {
                max_pending: MAX_PENDING_HANDSHAKES,
                hello_timeout: Duration::from_millis(u64::from(s.timeout_ms)).min(HANDSHAKE),
            },
        );
        *lock(&self.stats) = Stats::default();
        *lock(&self.state) = Some(State {
            pending: Vec::new(),
            geometry_known: s.slot_size > 0,
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
            clock_offset: None,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let weak = self.obj().downgrade();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shmringsink-accept".into())
            .spawn(move || Self::acceptor_loop(weak, intake, st))
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
            // It sees `stop` within one STEP: it never waits on a peer.
            let _ = a.thread.join();
        }
        *lock(&self.state) = None;
        lock(&self.upstream).clear();
        let mut st = lock(&self.stats);
        // The consumers are gone: their counts join the totals.
        let peers = std::mem::take(&mut st.peers);
        st.drops += peers.iter().map(|p| p.drops).sum::<u64>();
        st.bad_returns += peers.iter().map(|p| p.bad_returns).sum::<u64>();
        (st.slots_in_flight, st.leaked_slots) = (0, 0);
        gst::info!(
            CAT,
            imp = self,
            "{} frames sent without a copy, {} copied, {} dropped, {} missed by single consumers, {} consumers served",
            st.zero_copy,
            st.copied,
            st.dropped,
            st.drops,
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
        // Consumers keep the arena they map; frames bigger than its slots
        // cross as blobs (the next consumers get slots for the new caps).
        // The printer the src's parser reads (GStreamer's own string of some
        // values is not); caps it cannot print go as GStreamer prints them.
        let s = crate::serialize::caps_to_string(caps).unwrap_or_else(|| {
            gst::warning!(
                CAT,
                imp = self,
                "caps with values the src cannot read: {caps}"
            );
            caps.to_string()
        });
        st.sticky.caps = Some(s.clone());
        self.send_event(st, false, |tx| tx.send_caps(&s));
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
        // A pool only where every buffer's size is known (raw video): a pool
        // buffer is one slot, and an upstream that wanted more (an audio
        // source with big buffers, an encoder) would be cut short.
        // The metas that cross (see `serialize`): upstream may use them
        // instead of rewriting buffers (videocrop then only adds a crop).
        query.add_allocation_meta::<gst_video::VideoMeta>(None);
        query.add_allocation_meta::<gst_video::VideoCropMeta>(None);
        query.add_allocation_meta::<gst_audio::AudioMeta>(None);
        let Some(size) = exact.filter(|&s| s <= arena.slot_size()) else {
            return Ok(());
        };
        let limit = arena.slots() - SPARE_SLOTS;
        // No maximum: the pool never blocks upstream (see `SlotPool`).
        let max = 0;
        if need_pool {
            let pool = match &st.pool {
                Some(p) => p.clone(),
                None => {
                    let p = SlotPool::new(arena.clone(), limit);
                    let sink = self.obj().downgrade();
                    p.set_on_acquire(move || {
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
        Ok(())
    }

    fn event(&self, event: gst::Event) -> bool {
        use gst::EventView;
        if let EventView::FlushStart(_) = event.view() {
            // The base class first unlocks a render that waits for room.
            let ret = self.parent_event(event);
            if let Some(st) = lock(&self.state).as_mut() {
                self.send_event(st, false, |tx| tx.send_flush_start());
            }
            return ret;
        }
        {
            let mut guard = lock(&self.state);
            // With wait-for-connection, the first consumer sees the stream
            // from its caps on, every event as it came (not only the latest
            // sticky ones): serialized events wait for it like buffers. The
            // caps size the arena first (a consumer is served only once the
            // slot size is known); stream-start comes before the caps and is
            // kept as sticky state.
            let is_caps = matches!(event.view(), EventView::Caps(_));
            let waits = event.is_serialized()
                && !matches!(
                    event.view(),
                    EventView::StreamStart(_) | EventView::FlushStop(_)
                )
                && (is_caps || guard.as_ref().is_some_and(|st| st.geometry_known));
            if waits {
                if let (Some(st), EventView::Caps(c)) = (guard.as_mut(), event.view()) {
                    st.frame_size = frame_size_for(c.caps()).0;
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
                        let flags = e.stream_flags().bits();
                        let group = event
                            .structure()
                            .and_then(|s| s.get::<u32>("group-id").ok())
                            .filter(|&g| g != 0);
                        st.sticky.stream_start = Some((id.clone(), flags, group));
                        self.send_event(st, false, |tx| {
                            tx.send_stream_start_with(&id, flags, group)
                        });
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
                    EventView::Tag(e) => match crate::serialize::tags_to_string(e.tag()) {
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
                    _ if event.is_serialized() && event.is_downstream() => {
                        if let Some(s) = crate::serialize::downstream_event_to_string(&event) {
                            if event.is_sticky() {
                                let key = sticky_key(&event);
                                st.sticky.events.retain(|(k, _)| *k != key);
                                st.sticky.events.push((key, s.clone()));
                            }
                            self.send_event(st, false, |tx| tx.send_event_string(&s));
                        } else {
                            gst::debug!(CAT, imp = self, "event not carried: {event:?}");
                        }
                    }
                    _ => {}
                }
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
        let meta = meta_of(buffer);
        let layout = convert::layout_of(buffer);
        let metas = self.metas_of(buffer);

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
        let out = |payload, size| Outgoing {
            payload,
            size,
            meta,
            layout,
            metas: metas.clone(),
        };
        if let Some((slot, offset, size)) = own {
            let payload = Payload::Slot {
                slot,
                offset,
                keep: Some(buffer),
            };
            let n = self.deliver(st, &out(payload, size))?;
            self.count(n, size, false);
            return Ok(gst::FlowSuccess::Ok);
        }

        // Foreign: copied once, into a free slot, or into a blob of its own
        // when it is bigger than a slot.
        let map = buffer.map_readable().map_err(|_| gst::FlowError::Error)?;
        if map.size() > arena.slot_size() {
            let budget = lock(&self.settings).blob_budget;
            if map.size() as u64 > budget {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    (
                        "buffer of {} bytes is bigger than blob-budget ({budget} bytes): raise blob-budget",
                        map.size()
                    )
                );
                return Err(gst::FlowError::Error);
            }
            let blob = Blob::copy_of(&map).map_err(|e| {
                gst::element_imp_error!(
                    self,
                    gst::ResourceError::NoSpaceLeft,
                    ("cannot make a {}-byte shared buffer: {e}", map.size())
                );
                gst::FlowError::Error
            })?;
            let n = self.deliver(st, &out(Payload::Blob(&blob), map.size()))?;
            self.count(n, map.size(), true);
            return Ok(gst::FlowSuccess::Ok);
        }
        let n = match self.copy_slot(st, &arena, &map)? {
            Some(Copied::Lease(lease)) => {
                // Sent slots stay held by the consumers after the lease drops.
                let payload = Payload::Slot {
                    slot: lease.index(),
                    offset: 0,
                    keep: None,
                };
                self.deliver(st, &out(payload, map.size()))?
            }
            Some(Copied::Buffer(b, slot)) => {
                let payload = Payload::Slot {
                    slot,
                    offset: 0,
                    keep: Some(&b),
                };
                self.deliver(st, &out(payload, map.size()))?
            }
            None => 0,
        };
        self.count(n, map.size(), true);
        Ok(gst::FlowSuccess::Ok)
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

    /// The metas of `buffer` that cross as a string (all but `GstVideoMeta`,
    /// which travels in the descriptor).
    fn metas_of(&self, buffer: &gst::BufferRef) -> Option<String> {
        crate::serialize::metas_to_string_without_video(buffer)
    }
}
