//! `GstVideoCropMeta`: a rectangle, which must lie inside the frame.

use super::super::text::{Item, Val};
use super::super::{invalid, SerdeError};

/// The crop meta of `buffer` as an item.
pub(super) fn item(buffer: &gst::BufferRef) -> Option<Item> {
    let (x, y, w, h) = buffer.meta::<gst_video::VideoCropMeta>()?.rect();
    Some(
        Item::new("crop-meta")
            .with("x", Val::UInt(x))
            .with("y", Val::UInt(y))
            .with("width", Val::UInt(w))
            .with("height", Val::UInt(h)),
    )
}

/// Checks a `crop-meta` item: a non-empty rectangle inside `frame` (the
/// buffer's frame size, if known); `video_error` is why the raw video caps
/// are unusable, if they are.
pub(super) fn check(
    it: &Item,
    video_error: Option<&String>,
    frame: Option<(u32, u32)>,
) -> Result<(u32, u32, u32, u32), SerdeError> {
    it.check_fields(&["x", "y", "width", "height"])?;
    let (x, y, w, h) = (
        it.u32("x")?,
        it.u32("y")?,
        it.u32("width")?,
        it.u32("height")?,
    );
    if let Some(e) = video_error {
        return Err(invalid(format!("crop-meta: {e}")));
    }
    let (fw, fh) = frame
        .ok_or_else(|| invalid("crop-meta without a frame size (no video caps, no video-meta)"))?;
    if w == 0
        || h == 0
        || u64::from(x) + u64::from(w) > u64::from(fw)
        || u64::from(y) + u64::from(h) > u64::from(fh)
    {
        return Err(invalid(format!(
            "crop-meta {w}x{h} at ({x}, {y}) is not inside the {fw}x{fh} frame"
        )));
    }
    Ok((x, y, w, h))
}

#[cfg(test)]
mod tests {
    use crate::serialize::test_support::*;

    #[test]
    fn crop_meta_round_trips_and_must_lie_inside_the_frame() {
        init();
        let mut src = vp9_like_buffer();
        gst_video::VideoCropMeta::add(src.get_mut().expect("writable"), (2, 4, 60, 40));
        let dst = round_trip_metas(&src, Some(&i420_caps(66, 50)));
        assert_eq!(
            dst.meta::<gst_video::VideoCropMeta>().expect("crop").rect(),
            (2, 4, 60, 40)
        );

        // Checked against the caps' frame, else the video meta's.
        let crop = |x: u32, y: u32, w: u32, h: u32| {
            format!("crop-meta, x=(uint){x}, y=(uint){y}, width=(uint){w}, height=(uint){h}")
        };
        let caps = i420_caps(66, 50);
        for (s, ok) in [
            (crop(0, 0, 66, 50), true),
            (crop(1, 0, 66, 50), false),
            (crop(0, 1, 66, 50), false),
            (crop(0, 0, 0, 50), false),
            (crop(u32::MAX, 0, 2, 2), false),
        ] {
            let (r, _) = apply_new(10, &s, Some(&caps));
            assert_eq!(r.is_ok(), ok, "{s}: {r:?}");
        }
        let err = apply_new(10, &crop(0, 0, 2, 2), None)
            .0
            .expect_err("no frame");
        assert!(err.to_string().contains("without a frame size"), "{err}");
        let video = video_meta_string("I420", 66, 50, &vp9_offsets(), &VP9_STRIDES);
        let s = format!("{}; {video}", crop(0, 0, 66, 50));
        let (r, _) = apply_new(VP9_SIZE, &s, None);
        r.expect("frame from the video meta");
        let s = format!("{}; {video}", crop(0, 0, 67, 50));
        let (r, b) = apply_new(VP9_SIZE, &s, None);
        assert!(r.is_err());
        assert!(
            b.meta::<gst_video::VideoMeta>().is_none(),
            "nothing attached on error"
        );
    }
}
