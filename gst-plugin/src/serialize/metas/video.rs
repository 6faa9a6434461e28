//! `GstVideoMeta`: a plane layout (format, size, per-plane offsets and
//! strides), checked to lie inside the buffer and to match the caps before
//! it is attached; [`check_video_layout`] checks a layout carried another
//! way (the frame descriptor) by the same rules.

use glib::translate::IntoGlib as _;
use gst::glib;

use super::super::text::{Item, Val};
use super::super::{invalid, SerdeError};

/// The video meta of `buffer` (of several, the one with the lowest id) as
/// an item, if the receiving side would accept it.
pub(super) fn item(buffer: &gst::BufferRef) -> Option<Item> {
    video_meta_item(buffer).filter(|it| check_video_meta(it, buffer.size(), None).is_ok())
}

fn video_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer
        .iter_meta::<gst_video::VideoMeta>()
        .min_by_key(|m| m.id())?;
    let n = m.n_planes() as usize;
    let offsets = m.offset().iter().take(n).map(|&o| Val::UInt64(o as u64));
    let strides = m.stride().iter().take(n).map(|&s| Val::Int(s));
    Some(
        Item::new("video-meta")
            .with("format", Val::Str(m.format().to_str().to_string()))
            .with("width", Val::UInt(m.width()))
            .with("height", Val::UInt(m.height()))
            .with("flags", Val::UInt(m.video_frame_flags().bits()))
            .with("n-planes", Val::UInt(m.n_planes()))
            .with("offsets", Val::Array(offsets.collect()))
            .with("strides", Val::Array(strides.collect())),
    )
}

/// A checked `GstVideoMeta`.
#[derive(Debug)]
pub(super) struct VideoMetaParams {
    flags: gst_video::VideoFrameFlags,
    format: gst_video::VideoFormat,
    pub(super) width: u32,
    pub(super) height: u32,
    offsets: Vec<usize>,
    strides: Vec<i32>,
}

impl VideoMetaParams {
    /// Whether `other` has the same format, size, offsets and strides.
    pub(super) fn same_layout(&self, other: &VideoMetaParams) -> bool {
        (
            self.format,
            self.width,
            self.height,
            &self.offsets,
            &self.strides,
        ) == (
            other.format,
            other.width,
            other.height,
            &other.offsets,
            &other.strides,
        )
    }
}

/// The video meta already on `buffer` (of several, the one with the
/// lowest id).
pub(super) fn attached(buffer: &gst::BufferRef) -> Option<VideoMetaParams> {
    let m = buffer
        .iter_meta::<gst_video::VideoMeta>()
        .min_by_key(|m| m.id())?;
    let n = (m.n_planes() as usize).min(4);
    Some(VideoMetaParams {
        flags: m.video_frame_flags(),
        format: m.format(),
        width: m.width(),
        height: m.height(),
        offsets: m.offset()[..n].to_vec(),
        strides: m.stride()[..n].to_vec(),
    })
}

/// Attaches the checked video meta `v` to `buffer`.
pub(super) fn attach(buffer: &mut gst::BufferRef, v: &VideoMetaParams) -> Result<(), SerdeError> {
    let mut offset = [0usize; 4];
    let mut stride = [0i32; 4];
    offset[..v.offsets.len()].copy_from_slice(&v.offsets);
    stride[..v.strides.len()].copy_from_slice(&v.strides);
    // SAFETY: `buffer` is a valid, writable buffer; the arrays
    // have the GST_VIDEO_MAX_PLANES (4) entries the function reads
    // at most, of which `n_planes` (<= 4, the format's) are set.
    // The function asserts nothing (unlike gstreamer-rs's
    // `add_full`, which wants GStreamer's default plane sizes).
    let meta = unsafe {
        gst_video::ffi::gst_buffer_add_video_meta_full(
            buffer.as_mut_ptr(),
            v.flags.into_glib(),
            v.format.into_glib(),
            v.width,
            v.height,
            v.offsets.len() as u32,
            &offset,
            &stride,
        )
    };
    if meta.is_null() {
        return Err(invalid("video-meta: GStreamer refused it"));
    }
    Ok(())
}

/// The video info of raw video caps: `Ok(None)` for no caps or caps of
/// another media type, an error for raw video caps that are not a valid
/// fixed video format (metas are then not checkable against them).
pub(super) fn video_info_of(
    caps: Option<&gst::CapsRef>,
) -> Result<Option<gst_video::VideoInfo>, String> {
    super::raw_info_of(caps, "video", |c| gst_video::VideoInfo::from_caps(c).ok())
}

/// Bytes a row of `plane` needs at `width` (for packed formats without a
/// per-pixel stride: GStreamer's default stride, which is exactly enough).
fn row_bytes(
    finfo: &gst_video::VideoFormatInfo,
    plane: u32,
    width: u32,
    default_stride: i32,
) -> Result<u64, String> {
    let mut need = 0u64;
    for c in 0..finfo.n_components() as usize {
        if finfo.plane()[c] != plane {
            continue;
        }
        let pstride = finfo.pixel_stride()[c];
        if pstride <= 0 {
            return u64::try_from(default_stride).map_err(|_| "negative default stride".to_owned());
        }
        let w = u64::from(finfo.scale_width(c as u8, width));
        let elem = u64::from(finfo.depth()[c] + finfo.shift()[c]).div_ceil(8);
        let last = (pstride as u64)
            .checked_mul(w.saturating_sub(1))
            .and_then(|x| x.checked_add(u64::from(finfo.poffset()[c])))
            .and_then(|x| x.checked_add(elem))
            .ok_or_else(|| "row size overflows".to_owned())?;
        need = need.max(last);
    }
    if need == 0 {
        return u64::try_from(default_stride).map_err(|_| "negative default stride".to_owned());
    }
    Ok(need)
}

/// Checks a `video-meta` item against the buffer size and (if known) the
/// negotiated video info (see [`check_video_layout`]).
pub(super) fn check_video_meta(
    it: &Item,
    size: usize,
    info: Option<&gst_video::VideoInfo>,
) -> Result<VideoMetaParams, SerdeError> {
    it.check_fields(&[
        "format", "width", "height", "flags", "n-planes", "offsets", "strides",
    ])?;
    let fname = it.str("format")?;
    let format = gst_video::VideoFormat::from_string(fname);
    if matches!(
        format,
        gst_video::VideoFormat::Unknown | gst_video::VideoFormat::Encoded
    ) {
        return Err(invalid(format!("video-meta: unsupported format {fname:?}")));
    }
    let width = it.u32("width")?;
    let height = it.u32("height")?;
    let flags = gst_video::VideoFrameFlags::from_bits_truncate(it.u32("flags")?);
    let n_planes = it.u32("n-planes")?;
    let offsets = it.u64_array("offsets")?;
    let strides = it.i32_array("strides")?;
    if offsets.len() != n_planes as usize || strides.len() != n_planes as usize {
        return Err(invalid(format!(
            "video-meta: {} offsets and {} strides for {n_planes} planes",
            offsets.len(),
            strides.len()
        )));
    }
    layout_checks(format, width, height, &offsets, &strides, size, info)
        .map_err(|e| invalid(format!("video-meta: {e}")))?;
    Ok(VideoMetaParams {
        flags,
        format,
        width,
        height,
        offsets: offsets.iter().map(|&o| o as usize).collect(),
        strides,
    })
}

/// Checks a plane layout (a `GstVideoMeta`'s format, size, per-plane offsets
/// and strides) from the peer before it is attached to a buffer of
/// `buffer_size` bytes: every plane's rows — `offset + stride × (rows − 1) +
/// row`, with the format's plane height in rows and the bytes a row of the
/// format needs at `width` (exact, not GStreamer's padded default stride, so
/// tightly packed producers pass) — lie inside the buffer, and no stride is
/// shorter than a row. With raw video `caps`, the layout must match them:
/// same format and plane count, at least their width and height
/// (`gst_video_frame_map` reads with the caps' size and the meta's strides,
/// and `g_critical`s on a mismatch). Paletted and tiled formats are refused.
pub(crate) fn check_video_layout(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    offsets: &[u64],
    strides: &[i32],
    buffer_size: usize,
    caps: Option<&gst::CapsRef>,
) -> Result<(), SerdeError> {
    let info = video_info_of(caps).map_err(invalid)?;
    layout_checks(
        format,
        width,
        height,
        offsets,
        strides,
        buffer_size,
        info.as_ref(),
    )
    .map_err(invalid)
}

fn layout_checks(
    format: gst_video::VideoFormat,
    width: u32,
    height: u32,
    offsets: &[u64],
    strides: &[i32],
    size: usize,
    info: Option<&gst_video::VideoInfo>,
) -> Result<(), String> {
    let fname = format.to_str();
    let finfo = carried_format(format)?;
    if !(1..=65536).contains(&width) || !(1..=65536).contains(&height) {
        return Err(format!("size {width}x{height} out of range"));
    }
    let n_planes = finfo.n_planes();
    if offsets.len() != n_planes as usize || strides.len() != n_planes as usize {
        return Err(format!(
            "{} offsets and {} strides: format {fname} has {n_planes} planes",
            offsets.len(),
            strides.len()
        ));
    }
    if let Some(info) = info {
        if info.format() != format
            || info.width() > width
            || info.height() > height
            || info.n_planes() != n_planes
        {
            return Err(format!(
                "{fname} {width}x{height} does not match the caps ({} {}x{})",
                info.format().to_str(),
                info.width(),
                info.height()
            ));
        }
    }
    let defaults = gst_video::VideoInfo::builder(format, width, height)
        .build()
        .map_err(|_| format!("no layout for {fname} {width}x{height}"))?;
    for p in 0..n_planes {
        let pi = p as usize;
        let row = row_of(&finfo, p, width, strides[pi], defaults.stride()[pi])?;
        check_plane_end(&finfo, p, height, offsets[pi], strides[pi], row, size)?;
    }
    Ok(())
}

/// The format info of `format`, if video metas of it are carried (not
/// unknown, encoded, paletted or tiled).
fn carried_format(format: gst_video::VideoFormat) -> Result<gst_video::VideoFormatInfo, String> {
    let fname = format.to_str();
    if matches!(
        format,
        gst_video::VideoFormat::Unknown | gst_video::VideoFormat::Encoded
    ) {
        return Err(format!("unsupported format {fname:?}"));
    }
    let finfo = gst_video::VideoFormatInfo::from_format(format);
    if finfo.has_palette() {
        return Err(format!("paletted format {fname} is not carried"));
    }
    if finfo.is_tiled() {
        return Err(format!("tiled format {fname} is not carried"));
    }
    Ok(finfo)
}

/// The bytes a row of plane `p` needs at `width`, if `stride` is positive
/// and not shorter.
fn row_of(
    finfo: &gst_video::VideoFormatInfo,
    p: u32,
    width: u32,
    stride: i32,
    default_stride: i32,
) -> Result<u64, String> {
    if stride <= 0 {
        return Err(format!("plane {p} has stride {stride}"));
    }
    let row = row_bytes(finfo, p, width, default_stride)?;
    if (stride as u64) < row {
        return Err(format!(
            "plane {p} stride {stride} is shorter than a row ({row} bytes)"
        ));
    }
    Ok(row)
}

/// Checks that plane `p`'s rows (`offset + stride × (rows − 1) + row`, with
/// the format's plane height at `height`) end inside `size` bytes.
fn check_plane_end(
    finfo: &gst_video::VideoFormatInfo,
    p: u32,
    height: u32,
    offset: u64,
    stride: i32,
    row: u64,
    size: usize,
) -> Result<(), String> {
    let plane_h = (0..finfo.n_components() as usize)
        .filter(|&c| finfo.plane()[c] == p)
        .map(|c| finfo.scale_height(c as u8, height))
        .max()
        .ok_or_else(|| format!("{} plane {p} has no component", finfo.format().to_str()))?;
    let end = (stride as u64)
        .checked_mul(u64::from(plane_h.saturating_sub(1)))
        .and_then(|x| x.checked_add(offset))
        .and_then(|x| x.checked_add(row));
    match end {
        Some(end) if end <= size as u64 => Ok(()),
        _ => Err(format!(
            "plane {p} (offset {offset}, stride {stride}, {plane_h} rows of {row} bytes) \
             reads past the {size}-byte buffer"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::metas::{metas_to_string, metas_to_string_without_video};
    use crate::serialize::test_support::*;
    use gst_video::prelude::*;

    #[test]
    fn metas_the_sender_cannot_vouch_for_are_left_out() {
        init();
        // A video meta whose planes do not fit its buffer (an upstream bug).
        let mut buf = gst::Buffer::with_size(5200).expect("buffer");
        add_i420_66x50_meta(&mut buf, &[0, 3400, 5000], &[68, 36, 36]);
        assert_eq!(metas_to_string(&buf), None);
    }

    /// Asserts that `a` and `b` hold the same pixels of a 66x50 I420 frame
    /// with vp9dec's strides.
    fn assert_same_vp9_pixels(a: &gst::BufferRef, b: &gst::BufferRef, info: &gst_video::VideoInfo) {
        let a = gst_video::VideoFrameRef::from_buffer_ref_readable(a, info).expect("map");
        let b = gst_video::VideoFrameRef::from_buffer_ref_readable(b, info).expect("map");
        for p in 0..3u32 {
            assert_eq!(a.plane_stride()[p as usize], b.plane_stride()[p as usize]);
            let (pa, pb) = (
                a.plane_data(p).expect("plane"),
                b.plane_data(p).expect("plane"),
            );
            let (rows, w) = if p == 0 { (50, 66) } else { (25, 33) };
            let st = VP9_STRIDES[p as usize] as usize;
            for r in 0..rows {
                assert_eq!(
                    pa[r * st..r * st + w],
                    pb[r * st..r * st + w],
                    "plane {p} row {r}"
                );
            }
        }
    }

    #[test]
    fn video_meta_of_a_padded_vp9dec_like_i420_buffer_round_trips_and_maps_the_same_pixels() {
        init();
        let src = vp9_like_buffer();
        let caps = i420_caps(66, 50);
        let dst = round_trip_metas(&src, Some(&caps));
        let m = dst.meta::<gst_video::VideoMeta>().expect("video meta");
        assert_eq!(m.format(), gst_video::VideoFormat::I420);
        assert_eq!((m.width(), m.height(), m.n_planes()), (66, 50, 3));
        assert_eq!(&m.offset()[..3], &VP9_OFFSETS);
        assert_eq!(&m.stride()[..3], &VP9_STRIDES);
        // Downstream maps both the same way.
        let info = gst_video::VideoInfo::from_caps(&caps).expect("info");
        assert_same_vp9_pixels(&src, &dst, &info);
        // Without caps too.
        round_trip_metas(&src, None);
    }

    #[test]
    fn a_video_meta_already_attached_from_the_descriptor_is_matched_not_duplicated() {
        init();
        let src = vp9_like_buffer();
        let all = metas_to_string(&src).expect("carried");
        assert_eq!(metas_to_string_without_video(&src), None);
        let mut src2 = src.copy();
        gst_video::VideoCropMeta::add(src2.get_mut().expect("writable"), (0, 0, 8, 8));
        let crop_only = metas_to_string_without_video(&src2).expect("crop");
        assert!(!crop_only.contains("video-meta"), "{crop_only}");
        // The receiver attached the descriptor's layout first.
        let mut dst = bare_copy(&src);
        add_vp9_video_meta(&mut dst);
        apply_to(&mut dst, &all, None).expect("same layout");
        assert_eq!(dst.iter_meta::<gst_video::VideoMeta>().count(), 1);
        // The crop is checked against the attached meta's frame.
        apply_to(&mut dst, &crop_only, None).expect("crop");
        let other = all.replace("strides=(int)< 96", "strides=(int)< 97");
        let mut dst = bare_copy(&src);
        add_vp9_video_meta(&mut dst);
        let err = apply_to(&mut dst, &other, None).expect_err("differs");
        assert!(err.to_string().contains("differs"), "{err}");
    }

    #[test]
    fn check_video_layout_is_exact_at_the_last_row() {
        init();
        use gst_video::VideoFormat::*;
        // RGB 5x2: rows of 15 bytes; GStreamer's default stride is 16.
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[15], 30, None).is_ok());
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[13], 28, None).is_err());
        assert!(check_video_layout(Rgb, 5, 2, &[0], &[15], 29, None).is_err());
        assert!(check_video_layout(Rgb, 5, 2, &[1], &[15], 30, None).is_err());
        let caps = i420_caps(66, 50);
        let o = vp9_offsets();
        let st = VP9_STRIDES;
        assert!(check_video_layout(I420, 66, 50, &o, &st, VP9_SIZE, Some(&caps)).is_ok());
        assert!(check_video_layout(I420, 64, 50, &o, &st, VP9_SIZE, Some(&caps)).is_err());
        assert!(
            check_video_layout(Nv12, 66, 50, &o[..2], &st[..2], VP9_SIZE, Some(&caps)).is_err()
        );
    }

    #[test]
    fn a_tightly_packed_video_meta_is_accepted() {
        init();
        // (meta, buffer size, caps, accepted): 66x50 I420 with strides
        // 66/33/33 and no padding is 4950 bytes, less than GStreamer's
        // default layout (strides rounded up to 4); packed formats: YUY2 3
        // pixels wide needs 8 bytes a row, RGB 3 bytes a pixel; a format
        // without a per-pixel stride (v210) needs GStreamer's stride.
        let caps = i420_caps(66, 50);
        let i420 = video_meta_string("I420", 66, 50, &[0, 3300, 4125], &[66, 33, 33]);
        let rgb = video_meta_string("RGB", 5, 2, &[0], &[15]);
        let cases = [
            (i420.clone(), 4950, Some(&caps), true),
            (i420, 4949, None, false),
            (video_meta_string("YUY2", 3, 2, &[0], &[8]), 16, None, true),
            (video_meta_string("YUY2", 3, 2, &[0], &[7]), 16, None, false),
            (rgb.clone(), 30, None, true),
            (rgb, 29, None, false),
            (
                video_meta_string("v210", 48, 2, &[0], &[128]),
                256,
                None,
                true,
            ),
            (
                video_meta_string("v210", 48, 2, &[0], &[127]),
                256,
                None,
                false,
            ),
        ];
        for (s, size, caps, ok) in cases {
            let (r, _) = apply_new(size, &s, caps);
            assert_eq!(r.is_ok(), ok, "{s} in {size} bytes: {r:?}");
        }
    }

    #[test]
    fn video_metas_that_would_read_past_the_buffer_or_mismatch_the_caps_are_refused() {
        init();
        let o = vp9_offsets();
        let st = VP9_STRIDES;
        let caps = i420_caps(66, 50);
        let i420 = |h: u32, o: &[u64], st: &[i32]| video_meta_string("I420", 66, h, o, st);
        let cases: Vec<(String, Option<&gst::Caps>, &str)> = vec![
            (
                i420(50, &[1552, 9232, VP9_SIZE as u64 - 100], &st),
                None,
                "past",
            ),
            (i420(50, &[1552, 9232, u64::MAX - 10], &st), None, "past"),
            (i420(50, &o, &[96, 48, 800]), None, "past"),
            (i420(50, &o, &[96, 48, i32::MAX]), None, "past"),
            (i420(50, &o, &[96, 48, 32]), None, "shorter than a row"),
            (i420(50, &o, &[96, 48, 0]), None, "stride 0"),
            (i420(50, &o, &[96, 48, -48]), None, "stride -48"),
            (i420(500, &o, &st), None, "past"),
            (i420(50, &o[..2], &st[..2]), None, "planes"),
            (
                video_meta_string("I420", 0, 50, &o, &st),
                None,
                "out of range",
            ),
            (i420(49, &o, &st), Some(&caps), "does not match the caps"),
            (
                video_meta_string("YV12", 66, 50, &o, &st),
                Some(&caps),
                "does not match the caps",
            ),
            (
                video_meta_string("NOPE", 66, 50, &o, &st),
                None,
                "unsupported format",
            ),
            (
                video_meta_string("NV12_64Z32", 64, 64, &[0, 4096], &[64, 64]),
                None,
                "tiled",
            ),
        ];
        for (s, caps, why) in cases {
            let (r, b) = apply_new(VP9_SIZE, &s, caps);
            let err = r.expect_err(&s).to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(b.meta::<gst_video::VideoMeta>().is_none());
        }
    }

    #[test]
    fn paletted_formats_and_invalid_raw_caps_make_video_metas_refused() {
        init();
        let s = video_meta_string("RGB8P", 16, 16, &[0, 256], &[16, 4]);
        let err = apply_new(VP9_SIZE, &s, None).0.expect_err("palette");
        assert!(err.to_string().contains("paletted"), "{err}");
        let good = video_meta_string("I420", 66, 50, &vp9_offsets(), &VP9_STRIDES);
        let unfixed = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .field("width", gst::IntRange::new(1i32, 100))
            .field("height", 50i32)
            .build();
        let invalid_caps = gst::Caps::builder("video/x-raw")
            .field("format", "I420")
            .build();
        let encoded = gst::Caps::new_empty_simple("video/x-vp9");
        for (caps, ok) in [(&unfixed, false), (&invalid_caps, false), (&encoded, true)] {
            let (r, _) = apply_new(VP9_SIZE, &good, Some(caps));
            assert_eq!(r.is_ok(), ok, "{caps}: {r:?}");
            // A crop needs a frame size: none from these caps.
            let crop = "crop-meta, x=(uint)0, y=(uint)0, width=(uint)2, height=(uint)2";
            let (r, _) = apply_new(VP9_SIZE, crop, Some(caps));
            assert!(r.is_err(), "{caps}: {r:?}");
        }
    }
}
