//! `shmringsink`: serves a consumer process on a Unix socket path through a
//! shmring frame stream.
//!
//! Upstream is offered a buffer pool whose memory is the shared arena
//! (`propose_allocation`); buffers from that pool are sent by slot number with
//! no copy, any other buffer is copied once into a free slot. A sent buffer is
//! held until the consumer returns its slot. Caps, segments, stream-start,
//! tags, gaps, flushes and EOS travel in order with the frames; a consumer
//! that connects mid-stream first receives the current stream-start, caps and
//! segment. When the consumer goes away the sink keeps running (dropping
//! buffers) and serves the next one, with every slot of the old one reclaimed.
//!
//! The `stats` property counts frames sent without a copy (`zero-copy`) and
//! with one (`copied`).

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `shmringsink` element.
    pub struct ShmringSink(ObjectSubclass<imp::ShmringSink>) @extends gst_base::BaseSink, gst::Element, gst::Object;
}

/// Registers `shmringsink` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "shmringsink",
        gst::Rank::NONE,
        ShmringSink::static_type(),
    )
}
