//! Buffers: timing, offsets and flags (`FrameMeta`), and plane layouts
//! (`GstVideoMeta`, checked before it is attached).

use gst::glib::translate::{FromGlib, IntoGlib};
use shmring::frames::{FrameMeta, PlaneLayout, MAX_PLANES, NONE};

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

/// Sets what `m` says of a buffer but its timestamps: duration, offsets and
/// flags (plus `DISCONT` when `discont`).
pub(crate) fn set_meta(b: &mut gst::BufferRef, m: &FrameMeta, discont: bool) {
    b.set_duration(clock(m.duration));
    b.set_offset(m.offset);
    b.set_offset_end(m.offset_end);
    let mut flags = gst::BufferFlags::from_bits_truncate(m.flags);
    if discont {
        flags |= gst::BufferFlags::DISCONT;
    }
    b.set_flags(flags);
}

/// A timestamp from the stream (`NONE`: none).
pub(crate) fn clock(ns: u64) -> Option<gst::ClockTime> {
    (ns != NONE).then(|| gst::ClockTime::from_nseconds(ns))
}

/// A time in ns as a valid clock time: clamped to 0..=`ClockTime::MAX`.
pub(crate) fn clamp_time(t: i128) -> gst::ClockTime {
    // ClockTime::MAX is the largest valid value (NONE is one above it).
    gst::ClockTime::from_nseconds(t.clamp(0, i128::from(gst::ClockTime::MAX.nseconds())) as u64)
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
}
