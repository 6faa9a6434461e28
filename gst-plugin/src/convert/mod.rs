//! GStreamer ↔ frame-stream conversions shared by both elements, one file a
//! concept: [`buffer`] (timing, flags, plane layouts), [`caps`] (slot sizes,
//! system memory, caps from the peer) and [`events`] (segments,
//! stream-start, sticky events).

pub(crate) mod buffer;
pub(crate) mod caps;
pub(crate) mod events;

pub(crate) use buffer::{attach_layout, clamp_time, clock, layout_of, meta_of, set_meta};
pub(crate) use caps::{
    frame_size_for, is_parsed, parse_caps, system_memory_caps, system_memory_only,
};
pub(crate) use events::{
    generic_segment_of, segment_info, segment_of, sticky_key, stream_start_event, stream_start_of,
};
