//! `shmringsrc`: receives a shmring frame stream from a `shmringsink` (or any
//! `shmring::frames` producer) in another process.
//!
//! It connects to `socket-path`, sets the caps it receives (following changes
//! mid-stream, in order with the frames), and pushes buffers whose memory is
//! the read-only mapped slot, without copying; the slot goes back to the
//! producer when the buffer is freed, from whatever thread. Timestamps,
//! durations, offsets and buffer flags are the producer's. When the producer
//! goes away the element posts an error (`the sink went away`); a bad
//! descriptor or caps string is an error too, never a crash.

use gst::glib;
use gst::prelude::*;

mod imp;

glib::wrapper! {
    /// The `shmringsrc` element.
    pub struct ShmringSrc(ObjectSubclass<imp::ShmringSrc>) @extends gst_base::PushSrc, gst_base::BaseSrc, gst::Element, gst::Object;
}

/// Registers `shmringsrc` with `plugin`.
pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    gst::Element::register(
        Some(plugin),
        "shmringsrc",
        gst::Rank::NONE,
        ShmringSrc::static_type(),
    )
}
