//! Events: segments (in any format), stream-start, and the key under which
//! a sticky event replaces its kind.

use gst::glib::translate::{from_glib_none, IntoGlib};
use shmring::frames::{SegmentInfo, StreamStart};

use super::clock;

/// A segment as the frame stream carries it.
pub(crate) fn segment_info(s: &gst::Segment) -> SegmentInfo {
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

/// The sink's segment, if it is a well-formed TIME segment.
pub(crate) fn segment_of(s: &SegmentInfo) -> Option<gst::FormattedSegment<gst::ClockTime>> {
    let finite = |r: f64| r.is_finite() && r != 0.0;
    if s.format != gst::Format::Time.into_glib() as u32
        || !finite(s.rate)
        || !finite(s.applied_rate)
    {
        return None;
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_flags(gst::SegmentFlags::from_bits_truncate(s.flags));
    seg.set_rate(s.rate);
    seg.set_applied_rate(s.applied_rate);
    seg.set_base(clock(s.base)?);
    seg.set_offset(clock(s.offset)?);
    seg.set_start(clock(s.start)?);
    seg.set_stop(clock(s.stop));
    seg.set_time(clock(s.time));
    seg.set_position(clock(s.position));
    seg.set_duration(clock(s.duration));
    Some(seg)
}

/// The sink's segment in any format GStreamer knows (bytes, time, buffers,
/// percent, default), as the sink had it; `None` for another format.
pub(crate) fn generic_segment_of(s: &SegmentInfo) -> Option<gst::Segment> {
    if !(1..=5).contains(&s.format) || !s.rate.is_finite() || s.rate == 0.0 {
        return None;
    }
    if !s.applied_rate.is_finite() || s.applied_rate == 0.0 {
        return None;
    }
    // SAFETY: an all-zero GstSegment is a plain C struct of numbers, which
    // gst_segment_init then initialises for a known format (checked above).
    let mut raw: gst::ffi::GstSegment = unsafe { std::mem::zeroed() };
    // SAFETY: `raw` is a live, writable GstSegment; the format is valid.
    unsafe { gst::ffi::gst_segment_init(&mut raw, s.format as gst::ffi::GstFormat) };
    raw.flags = gst::SegmentFlags::from_bits_truncate(s.flags).into_glib();
    raw.rate = s.rate;
    raw.applied_rate = s.applied_rate;
    raw.base = s.base;
    raw.offset = s.offset;
    raw.start = s.start;
    raw.stop = s.stop;
    raw.time = s.time;
    raw.position = s.position;
    raw.duration = s.duration;
    // SAFETY: `raw` is a valid, initialised segment; from_glib_none copies it.
    Some(unsafe { from_glib_none(&raw as *const gst::ffi::GstSegment) })
}

/// A stream-start as the frame stream carries it: id, flags, group id (none
/// for 0).
pub(crate) fn stream_start_of(
    event: &gst::Event,
    e: &gst::event::StreamStart,
) -> (String, u32, Option<u32>) {
    let id = e.stream_id().to_string();
    let flags = e.stream_flags().bits();
    let group = event
        .structure()
        .and_then(|s| s.get::<u32>("group-id").ok())
        .filter(|&g| g != 0);
    (id, flags, group)
}

/// The sink's stream-start, with its flags and group.
pub(crate) fn stream_start_event(ss: &StreamStart) -> gst::Event {
    let mut ev = gst::event::StreamStart::builder(&ss.id)
        .flags(gst::StreamFlags::from_bits_truncate(ss.flags))
        .build();
    if let Some(g) = ss.group_id.filter(|&g| g != 0) {
        // SAFETY: the event was just made (writable, one reference) and
        // `g` is not GST_GROUP_ID_INVALID (0).
        unsafe { gst::ffi::gst_event_set_group_id(ev.make_mut().as_mut_ptr(), g) };
    }
    ev
}

/// Sticky events replace their kind: same type and structure name.
pub(crate) fn sticky_key(ev: &gst::Event) -> String {
    format!(
        "{:?}/{}",
        ev.type_(),
        ev.structure().map_or("", |s| s.name().as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_segments_in_any_known_format_and_nothing_else() {
        gst::init().expect("gst");
        let mut s = SegmentInfo::time();
        s.format = gst::Format::Bytes.into_glib() as u32;
        s.start = 100;
        let seg = generic_segment_of(&s).expect("a bytes segment");
        assert_eq!(seg.format(), gst::Format::Bytes);
        assert_eq!(seg.start().value(), 100);
        for bad in [0u32, 6, 77, u32::MAX] {
            s.format = bad;
            assert!(generic_segment_of(&s).is_none(), "format {bad}");
        }
        s.format = gst::Format::Time.into_glib() as u32;
        for rate in [0.0, f64::NAN, f64::INFINITY] {
            s.rate = rate;
            assert!(generic_segment_of(&s).is_none(), "rate {rate}");
        }
        s.rate = 1.0;
        s.applied_rate = 0.0;
        assert!(generic_segment_of(&s).is_none());
    }
}
