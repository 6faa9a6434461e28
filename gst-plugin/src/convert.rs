//! GStreamer ↔ frame-stream conversions shared by both elements: timing and
//! flags, segments, plane layouts (`GstVideoMeta`), slot sizes from caps,
//! caps features, socket paths.

use gst::glib::translate::IntoGlib;
use shmring::frames::{FrameMeta, PlaneLayout, SegmentInfo, MAX_PLANES, NONE};

/// Longest socket path a Unix socket address holds (`sun_path` is 108 bytes
/// with its terminating NUL).
pub(crate) const MAX_SOCKET_PATH: usize = 107;

/// `Err` with a message naming the limit when `path` cannot be a Unix socket
/// address.
pub(crate) fn check_socket_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("socket-path is not set".into());
    }
    if path.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "socket-path of {} bytes is longer than the {MAX_SOCKET_PATH} bytes a Unix socket path can hold: {path}",
            path.len()
        ));
    }
    if path.contains('\0') {
        return Err("socket-path contains a NUL byte".into());
    }
    Ok(())
}

/// Frame metadata of a buffer.
pub(crate) fn meta_of(buffer: &gst::BufferRef) -> FrameMeta {
    let t = |c: Option<gst::ClockTime>| c.map_or(NONE, |c| c.nseconds());
    FrameMeta {
        pts: t(buffer.pts()),
        dts: t(buffer.dts()),
        duration: t(buffer.duration()),
        offset: buffer.offset(),
        offset_end: buffer.offset_end(),
        flags: buffer.flags().bits(),
    }
}

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

/// A timestamp from the stream (`NONE`: none).
pub(crate) fn clock(ns: u64) -> Option<gst::ClockTime> {
    (ns != NONE).then(|| gst::ClockTime::from_nseconds(ns))
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
    use gst::glib::translate::from_glib_none;
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

/// Bytes one slot needs for `caps` when `slot-size` is 0. The second value is
/// `true` when every buffer needs exactly that much (raw video); otherwise it
/// is a guess, and bigger buffers cross as blobs: raw audio, 200 ms; encoded
/// video and images, half a byte per pixel (64 KiB to 4 MiB); anything else,
/// 1 MiB.
pub(crate) fn frame_size_for(caps: &gst::CapsRef) -> (usize, bool) {
    if let Ok(info) = gst_video::VideoInfo::from_caps(caps) {
        if info.format() != gst_video::VideoFormat::Encoded && info.size() > 0 {
            return (info.size(), true);
        }
        let pixels = info.width() as usize * info.height() as usize;
        return ((pixels / 2).clamp(64 << 10, 4 << 20), false);
    }
    if let Ok(info) = gst_audio::AudioInfo::from_caps(caps) {
        return (
            (info.rate() as usize * info.bpf() as usize / 5).max(4096),
            false,
        );
    }
    (1 << 20, false)
}

/// Whether every structure of `caps` is in system memory (no caps features,
/// or `memory:SystemMemory`): the only memory that crosses.
pub(crate) fn system_memory_only(caps: &gst::CapsRef) -> bool {
    caps.iter_with_features().all(|(_, f)| {
        !f.is_any()
            && f.iter()
                .all(|name| *name == *gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
    })
}

/// `filter` (or ANY) cut down to system memory: what the sink can take.
pub(crate) fn system_memory_caps(filter: Option<&gst::Caps>) -> gst::Caps {
    let Some(filter) = filter else {
        return gst::Caps::new_any();
    };
    if filter.is_any() {
        return filter.clone();
    }
    let mut out = gst::Caps::new_empty();
    {
        let out = out.make_mut();
        for (s, f) in filter.iter_with_features() {
            if !f.is_any()
                && f.iter()
                    .all(|n| *n == *gst::CAPS_FEATURE_MEMORY_SYSTEM_MEMORY)
            {
                out.append_structure_full(s.to_owned(), Some(f.to_owned()));
            }
        }
    }
    out
}

/// The plane layout of a buffer's `GstVideoMeta`, if it has one.
pub(crate) fn layout_of(buffer: &gst::BufferRef) -> Option<PlaneLayout> {
    let m = buffer.meta::<gst_video::VideoMeta>()?;
    let n = (m.n_planes() as usize).min(MAX_PLANES);
    let mut l = PlaneLayout {
        format: m.format().into_glib() as u32,
        flags: m.video_frame_flags().bits(),
        width: m.width(),
        height: m.height(),
        n_planes: n as u32,
        ..PlaneLayout::default()
    };
    for p in 0..n {
        l.offsets[p] = m.offset()[p] as u64;
        l.strides[p] = m.stride()[p];
    }
    Some(l)
}

/// Attaches the `GstVideoMeta` a layout from the peer describes, after
/// checking (exactly, see `serialize::check_video_layout`) that every row of
/// every plane lies inside the buffer and that the layout matches the raw
/// video `caps` (downstream reads through it without checking).
pub(crate) fn attach_layout(
    buffer: &mut gst::BufferRef,
    l: &PlaneLayout,
    caps: Option<&gst::CapsRef>,
) -> Result<(), String> {
    let format = gst_video::VideoFormat::from_glib_checked(l.format)
        .ok_or_else(|| format!("video format {}", l.format))?;
    let n = l.n_planes as usize;
    if n == 0 || n > MAX_PLANES {
        return Err(format!("{n} planes"));
    }
    crate::serialize::check_video_layout(
        format,
        l.width,
        l.height,
        &l.offsets[..n],
        &l.strides[..n],
        buffer.size(),
        caps,
    )
    .map_err(|e| e.to_string())?;
    if buffer.meta::<gst_video::VideoMeta>().is_some() {
        return Err("the buffer has a video meta already".into());
    }
    let mut offset = [0usize; MAX_PLANES];
    let mut stride = [0i32; MAX_PLANES];
    for p in 0..n {
        // Fits: checked against the buffer's size above.
        offset[p] = l.offsets[p] as usize;
        stride[p] = l.strides[p];
    }
    let flags = gst_video::VideoFrameFlags::from_bits_truncate(l.flags);
    // SAFETY: `buffer` is a writable buffer (we hold `&mut`); `offset` and
    // `stride` are arrays of GST_VIDEO_MAX_PLANES (4) entries, of which the
    // function reads `n` (<= 4); the layout was checked to lie inside the
    // buffer. The function keeps no pointer to them.
    let meta = unsafe {
        gst_video::ffi::gst_buffer_add_video_meta_full(
            buffer.as_mut_ptr(),
            flags.into_glib(),
            format.into_glib(),
            l.width,
            l.height,
            n as u32,
            &offset,
            &stride,
        )
    };
    if meta.is_null() {
        return Err("GStreamer refused the video meta".into());
    }
    Ok(())
}

trait FromGlibChecked: Sized {
    fn from_glib_checked(v: u32) -> Option<Self>;
}

impl FromGlibChecked for gst_video::VideoFormat {
    fn from_glib_checked(v: u32) -> Option<Self> {
        use gst::glib::translate::FromGlib;
        let v = i32::try_from(v).ok()?;
        // SAFETY: from_glib maps any integer to a variant (unknown values
        // become `__Unknown`), so no invalid enum value is made.
        let f = unsafe { gst_video::VideoFormat::from_glib(v) };
        gst_video::VideoFormat::iter_raw()
            .any(|k| k == f)
            .then_some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_paths_over_107_bytes_are_refused_with_the_limit() {
        assert!(check_socket_path(&"a".repeat(107)).is_ok());
        let e = check_socket_path(&"a".repeat(108)).expect_err("accepted");
        assert!(e.contains("107"), "{e}");
        assert!(check_socket_path("").is_err());
    }

    #[test]
    fn encoded_video_gets_a_useful_slot_size() {
        gst::init().expect("gst");
        let caps: gst::Caps = "video/x-vp8,width=1280,height=720".parse().expect("caps");
        let (size, exact) = frame_size_for(&caps);
        assert!(!exact);
        assert_eq!(size, 1280 * 720 / 2);
        let caps: gst::Caps = "video/x-raw,format=I420,width=66,height=50"
            .parse()
            .expect("caps");
        let info = gst_video::VideoInfo::from_caps(&caps).expect("info");
        assert_eq!(frame_size_for(&caps), (info.size(), true));
    }

    #[test]
    fn a_layout_outside_the_buffer_is_refused() {
        gst::init().expect("gst");
        // vp9dec-like: 66x50 I420 with padded planes.
        let l = PlaneLayout {
            format: gst_video::VideoFormat::I420.into_glib() as u32,
            flags: 0,
            width: 66,
            height: 50,
            n_planes: 3,
            offsets: [0, 80 * 64, 80 * 64 + 48 * 32, 0],
            strides: [80, 48, 48, 0],
        };
        let mut b = gst::Buffer::with_size(80 * 64 + 2 * 48 * 32).expect("buffer");
        attach_layout(b.get_mut().expect("writable"), &l, None).expect("valid layout");
        assert!(b.meta::<gst_video::VideoMeta>().is_some());
        let mut small = gst::Buffer::with_size(80 * 64 + 48 * 32).expect("buffer");
        assert!(attach_layout(small.get_mut().expect("writable"), &l, None).is_err());
        let mut bad = l;
        bad.strides[0] = -80;
        let mut b = gst::Buffer::with_size(1 << 20).expect("buffer");
        assert!(attach_layout(b.get_mut().expect("writable"), &bad, None).is_err());
        bad = l;
        bad.format = 9999;
        assert!(attach_layout(b.get_mut().expect("writable"), &bad, None).is_err());
        bad = l;
        bad.n_planes = 1;
        assert!(attach_layout(b.get_mut().expect("writable"), &bad, None).is_err());
    }

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

    #[test]
    fn only_system_memory_caps_pass() {
        gst::init().expect("gst");
        let sys: gst::Caps = "video/x-raw,format=I420".parse().expect("caps");
        assert!(system_memory_only(&sys));
        let dma: gst::Caps = "video/x-raw(memory:DMABuf),format=I420"
            .parse()
            .expect("caps");
        assert!(!system_memory_only(&dma));
        let both: gst::Caps = "video/x-raw(memory:DMABuf); video/x-raw"
            .parse()
            .expect("caps");
        let cut = system_memory_caps(Some(&both));
        assert_eq!(cut.size(), 1);
        assert!(system_memory_only(&cut));
    }
}
