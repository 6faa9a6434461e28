//! `shmringsink`: serves any number of consumer processes on a Unix socket
//! path through shmring frame streams.
//!
//! Upstream is offered a buffer pool whose memory is the shared arena
//! (`propose_allocation`); buffers from that pool are sent by slot number with
//! no copy, any other buffer is copied once into a free slot. Every consumer
//! has its own descriptor and return ring over the one arena; a sent buffer is
//! held until every consumer it went to returned its slot. Caps, segments,
//! stream-start, tags, gaps, flushes and EOS travel in order with the frames;
//! a consumer that connects mid-stream first receives the current
//! stream-start, caps and segment, then frames from the next keyframe (frames
//! flagged `DELTA_UNIT` are skipped for it, and a keyframe is asked of
//! upstream).
//!
//! Caps that need bigger slots get a new arena and pool even while consumers
//! are connected: each consumer is switched to it once it gave back every
//! slot of the arena it reads, and until then gets a sealed copy (a blob) of
//! each frame; consumers that join later are served the new arena.
//!
//! A consumer that cannot keep up is handled by the `slow-consumer` policy
//! ([`SlowConsumer`]); the default (`drop`) never lets one consumer stall the
//! others. A consumer that goes away, is too slow under the policy, or breaks
//! the protocol is dropped with every slot it held reclaimed; the sink keeps
//! running (dropping buffers while nobody is connected) and serves the next.
//! A return of a slot a consumer does not hold is ignored and counted.
//!
//! `GST_DEBUG=shmringsink:5` traces every decision.
//!
//! # Properties
//!
//! * `socket-path`: the Unix socket path on which consumers (`shmringsrc`)
//!   connect; at most 107 bytes.
//! * `perms`: the socket file's mode; 0600 (the default) lets only this user
//!   connect.
//! * `allowed-uid`: only a consumer running as this uid is served (checked
//!   with `SO_PEERCRED`; others are refused and logged with their pid and
//!   uid); -1 (the default): any that `perms` lets connect.
//! * `slots`: frame slots in the shared arena (frames in flight plus the
//!   pool); 0 (the default): as many as fit in 16 MiB, 8 to 64.
//! * `slot-size`: bytes per slot; 0 (the default): from the caps (raw video:
//!   one frame; raw audio: 200 ms; encoded video: half a byte per pixel;
//!   else 1 MiB).
//! * `wait-for-connection`: block the stream until the first consumer
//!   connects (the default); else drop buffers until then.
//! * `timeout`: milliseconds to wait for a consumer to return a slot or free
//!   descriptor room before dropping that consumer (5000).
//! * `spin`: most microseconds to busy-poll for a returned slot or
//!   descriptor room before sleeping on the wake-up fd (50); it burns CPU,
//!   but returns usually come back within tens of microseconds. Waits stop
//!   spinning while recent spins ran out for nothing; 0: never spin.
//! * `return-wait`: with slots of 1 MiB or more, the microseconds
//!   upstream's buffer request waits for the slot in flight to come back, so
//!   that it rewrites that (cache-hot) slot rather than a colder free one
//!   (1000); 0: never wait.
//! * `blob-budget`: most bytes of buffers bigger than a slot that one
//!   consumer may hold at once (1 GiB); a single buffer bigger than that is
//!   an error that names the property.
//! * `max-consumers`: most consumers served at once, each costing two rings
//!   and a few fds (64); more are refused with the reason and logged with
//!   their pid and uid; 0: no limit.
//! * `slow-consumer`: what to do with a consumer that cannot take a frame
//!   ([`SlowConsumer`]).
//! * `stats`: a `GstStructure` with `frames` (= `zero-copy` + `copied`),
//!   `bytes`, `consumers` (connected), `consumers-served`, `dropped`
//!   (buffers no consumer got), `drops` (frames single consumers missed),
//!   `bad-returns`, `disconnects`, `arena-switches` (consumers moved to a
//!   new arena), `refused`, `slots-in-flight` and `leaked-slots` (over every
//!   arena a consumer still reads), and `peers`: one structure per consumer (`pid`, `uid`,
//!   `frames`, `bytes`, `drops`, `held`, `bad-returns`).

use gst::glib;
use gst::prelude::*;

mod arena;
mod imp;
mod intake;
mod peers;
mod stream;
mod upstream;

/// What `shmringsink` does with a consumer that cannot take a frame: its
/// descriptor ring is full, or (with several consumers) it holds half the
/// arena's frame slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, glib::Enum)]
#[repr(i32)]
#[enum_type(name = "GstShmringSlowConsumer")]
pub enum SlowConsumer {
    /// Every consumer gets every frame: the pipeline waits for the slowest,
    /// up to `timeout`, after which a consumer that took nothing is dropped.
    #[enum_value(
        name = "Block: the pipeline waits for the slowest consumer (up to timeout, then drops it)",
        nick = "block"
    )]
    Block = 0,
    /// A consumer that cannot take a frame misses it (counted); it resumes at
    /// the next keyframe, flagged DISCONT. The sink waits only while no
    /// consumer can take the frame, so with one consumer this is `block`.
    #[default]
    #[enum_value(
        name = "Drop: frames are dropped for a slow consumer only; the pipeline follows the fastest",
        nick = "drop"
    )]
    Drop = 1,
    /// Like `drop`, and a consumer that has missed every frame for `timeout`
    /// is disconnected (every slot it held goes back to the pool).
    #[enum_value(
        name = "Disconnect: like drop, and a consumer that missed every frame for timeout is disconnected",
        nick = "disconnect"
    )]
    Disconnect = 2,
}

glib::wrapper! {
    /// The `shmringsink` element.
    pub struct ShmringSink(ObjectSubclass<imp::ShmringSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Registers `shmringsink` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    SlowConsumer::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    gst::Element::register(
        Some(plugin),
        "shmringsink",
        gst::Rank::NONE,
        ShmringSink::static_type(),
    )
}
