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
//! A consumer that cannot keep up is handled by the `slow-consumer` policy
//! ([`SlowConsumer`]); the default (`drop`) never lets one consumer stall the
//! others. A consumer that goes away, is too slow under the policy, or breaks
//! the protocol is dropped with every slot it held reclaimed; the sink keeps
//! running (dropping buffers while nobody is connected) and serves the next.
//! A return of a slot a consumer does not hold is ignored and counted.
//!
//! The `stats` property counts frames sent without a copy (`zero-copy`) and
//! with one (`copied`), drops, bad returns, disconnects, and per consumer
//! frames, bytes, drops and slots held. `GST_DEBUG=shmringsink:5` traces
//! every decision.

use gst::glib;
use gst::prelude::*;

mod imp;
mod peers;

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
