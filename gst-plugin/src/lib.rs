//! # gst-plugin-shmring
//!
//! `libgstshmring.so`: two GStreamer elements that join pipelines in two
//! processes through shmring's frame stream (sealed memfd slots, a descriptor
//! ring and a return ring; see `shmring::frames`).
//!
//! * `shmringsink` (in the producing process) listens on `socket-path` and
//!   offers upstream a buffer pool whose memory *is* the shared arena, so a
//!   well-behaved upstream renders straight into shared memory;
//! * `shmringsrc` (in the consuming process) connects, takes the caps it
//!   receives, and pushes buffers that wrap the read-only mapped slots.
//!
//! ```text
//! gst-launch-1.0 videotestsrc ! video/x-raw,width=1920,height=1080 ! shmringsink socket-path=/tmp/v.sock
//! gst-launch-1.0 shmringsrc socket-path=/tmp/v.sock ! videoconvert ! autovideosink
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]

use gst::glib;

mod clock;
mod convert;
mod error;
mod pool;
mod serialize;
pub mod shmringsink;
pub mod shmringsrc;
mod util;

pub use error::Error;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    clock::register_tags();
    shmringsink::register(plugin)?;
    shmringsrc::register(plugin)?;
    Ok(())
}

/// The plugin description `gst::plugin_define!` generates (its items carry
/// no docs of their own).
#[allow(missing_docs)]
mod plugin_desc {
    use super::plugin_init;

    gst::plugin_define!(
        shmring,
        env!("CARGO_PKG_DESCRIPTION"),
        plugin_init,
        concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
        "MIT/X11",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_REPOSITORY"),
        env!("BUILD_REL_DATE")
    );
}

/// Registers the elements in this process without loading the `.so` (for
/// tests and applications that link the crate).
pub fn register_static() -> Result<(), glib::BoolError> {
    plugin_desc::plugin_register_static()
}

/// Fuzzing entry point: what the elements do with a string the peer sent
/// as caps, tags, metas or an event (parse it; filter the tags). Must not panic or
/// abort on any input. With the `test-support` feature only.
#[cfg(feature = "test-support")]
pub fn fuzz_peer_string(data: &[u8]) {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        if gst::init().is_ok() {
            clock::register_tags();
        }
    });
    if !gst::INITIALIZED.load(std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    // The frame stream hands over only valid UTF-8 strings.
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(caps) = convert::parse_caps(s) {
        let _ = caps.to_string();
    }
    let _ = clock::parse_peer_tags(s);
    // Metas and event strings, through the same parser.
    if let Ok(mut b) = gst::Buffer::with_size(4096) {
        if let Some(b) = b.get_mut() {
            let _ = serialize::apply_metas(b, s, None);
        }
    }
    let _ = serialize::downstream_event_from_string(s);
    let _ = serialize::upstream_event_from_string(s);
}
