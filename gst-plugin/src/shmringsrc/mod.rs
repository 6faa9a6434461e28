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
//!
//! # Properties
//!
//! * `socket-path`: the Unix socket path of the `shmringsink` to receive
//!   from; at most 107 bytes.
//! * `timeout`: milliseconds to keep trying to connect when starting (the
//!   sink may start later) (5000).
//! * `is-live`: act as a live source: timestamps are mapped onto this
//!   pipeline's running time through the monotonic clock both processes
//!   share (or, with `do-timestamp`, replaced by the arrival time); else
//!   (the default) the sink's timestamps and segment are kept as they are.
//! * `latency`: in live mode, milliseconds added to the sink pipeline's
//!   latency in latency queries, for the transfer and scheduling (10).
//! * `spin`: most microseconds to busy-poll for the next frame before
//!   sleeping on the wake-up fd, while frames follow closely (a stream of
//!   small audio buffers: the sink then never has to wake this side); frames
//!   further apart than this are waited for asleep (50); 0: never spin.
//! * `trusted`: trust the sink: push every buffer without a copy, also those
//!   that downstream parses (encoded, muxed: anything but raw audio and
//!   video), which are otherwise copied out of the arena the sink can still
//!   write unless they came as a sealed blob (off).
//! * `reconnect`: when the sink goes away or drops this consumer, post a
//!   warning (with the sink's reason) and connect again to `socket-path`,
//!   waiting for a sink there (else, the default, post an error).
//! * `stats`: a `GstStructure` with `frames` and `bytes` pushed, `zero-copy`
//!   and `copied` (a copy when downstream holds half the slots, or parses the
//!   bytes), `drops` (frames the sink skipped for this consumer: slow-consumer
//!   policy, joining at a keyframe) and `reconnects`.

use gst::glib;
use gst::prelude::*;

mod buffers;
mod events;
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
