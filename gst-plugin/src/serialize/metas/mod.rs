//! Buffer metas: which metas cross (one module each: `video`, `crop`,
//! `reference`, `audio`, `timecode`), the string of a buffer's metas, and
//! attaching the peer's metas to a buffer once all of them are checked
//! against the buffer and the caps.

mod audio;
mod crop;
mod reference;
mod timecode;
mod video;

pub(crate) use video::check_video_layout;

use super::parser::parse_items;
use super::text::{bounded, print_items, Item};
use super::{invalid, SerdeError, MAX_REFERENCE_METAS};

/// The metas of `buffer` that cross the boundary, as a string; `None` when it
/// has none of them. A meta that [`apply_metas`] would refuse (a layout that
/// does not fit the buffer, an invalid time code, reference caps with values
/// that are not carried, ...) is left out.
// The elements carry the plane layout in the frame descriptor (see
// `metas_to_string_without_video`); the tests use this one.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn metas_to_string(buffer: &gst::BufferRef) -> Option<String> {
    metas_string(buffer, true)
}

/// Like [`metas_to_string`] without the `GstVideoMeta`, for a stream whose
/// frame descriptors carry the plane layout themselves.
pub(crate) fn metas_to_string_without_video(buffer: &gst::BufferRef) -> Option<String> {
    metas_string(buffer, false)
}

fn metas_string(buffer: &gst::BufferRef, with_video: bool) -> Option<String> {
    let mut items = Vec::new();
    if with_video {
        items.extend(video::item(buffer));
    }
    items.extend(crop::item(buffer));
    items.extend(reference::items(buffer));
    items.extend(audio::item(buffer));
    items.extend(timecode::item(buffer));
    bounded(print_items(&items)).filter(|_| !items.is_empty())
}

/// The info of raw `media` caps (`video/x-raw`, `audio/x-raw`) as
/// `from_caps` reads it: `Ok(None)` for no caps or caps of another media
/// type, an error for raw caps that are not a valid fixed `kind` format
/// (metas are then not checkable against them).
fn raw_info_of<T>(
    caps: Option<&gst::CapsRef>,
    kind: &str,
    from_caps: impl FnOnce(&gst::CapsRef) -> Option<T>,
) -> Result<Option<T>, String> {
    let Some(caps) = caps else { return Ok(None) };
    let media = format!("{kind}/x-raw");
    if caps.structure(0).is_none_or(|s| s.name() != media.as_str()) {
        return Ok(None);
    }
    if !caps.is_fixed() {
        return Err(format!("raw {kind} caps are not fixed: {caps}"));
    }
    from_caps(caps)
        .map(Some)
        .ok_or_else(|| format!("raw {kind} caps are not a valid {kind} format: {caps}"))
}

/// A checked meta, ready to attach.
enum Pending {
    Video(video::VideoMetaParams),
    Crop(u32, u32, u32, u32),
    Reference(gst::Caps, gst::ClockTime, Option<gst::ClockTime>),
    Audio(Box<gst_audio::AudioInfo>, usize, Vec<usize>),
    TimeCode(gst_video::ValidVideoTimeCode),
}

impl Pending {
    fn attach(self, buffer: &mut gst::BufferRef) -> Result<(), SerdeError> {
        match self {
            Pending::Video(v) => video::attach(buffer, &v)?,
            Pending::Crop(x, y, w, h) => {
                gst_video::VideoCropMeta::add(buffer, (x, y, w, h));
            }
            Pending::Reference(caps, ts, d) => {
                gst::ReferenceTimestampMeta::add(buffer, &caps, ts, d);
            }
            Pending::Audio(info, samples, offsets) => {
                gst_audio::AudioMeta::add(buffer, &info, samples, &offsets)
                    .map_err(|e| invalid(format!("audio-meta: {e}")))?;
            }
            Pending::TimeCode(tc) => {
                gst_video::VideoTimeCodeMeta::add(buffer, &tc);
            }
        }
        Ok(())
    }
}

/// The slot of a meta item's kind (for counting) and how many items of
/// that kind one buffer may carry.
fn slot_of(name: &str) -> Result<(usize, usize), SerdeError> {
    Ok(match name {
        "video-meta" => (0, 1),
        "crop-meta" => (1, 1),
        "reference-timestamp-meta" => (2, MAX_REFERENCE_METAS),
        "audio-meta" => (3, 1),
        "timecode-meta" => (4, 1),
        n => return Err(invalid(format!("unknown meta {n:?}"))),
    })
}

/// What the metas of one buffer are checked against.
struct Target {
    size: usize,
    video: Result<Option<gst_video::VideoInfo>, String>,
    audio: Result<Option<gst_audio::AudioInfo>, String>,
    /// A video meta already attached (from a plane layout the frame
    /// descriptor carried): a video-meta item must agree with it, and is
    /// not attached twice; crops are checked against its size.
    existing: Option<video::VideoMetaParams>,
    /// The frame a crop refers to is the buffer's: the video meta's size
    /// when there is one (videocrop with crop metas sends the uncropped
    /// frame with caps of the cropped size), else the caps'.
    frame: Option<(u32, u32)>,
}

impl Target {
    fn new(buffer: &gst::BufferRef, caps: Option<&gst::CapsRef>) -> Self {
        let video = video::video_info_of(caps);
        let existing = video::attached(buffer);
        let frame = match &existing {
            Some(e) => Some((e.width, e.height)),
            None => video
                .as_ref()
                .ok()
                .and_then(Option::as_ref)
                .map(|i| (i.width(), i.height())),
        };
        Target {
            size: buffer.size(),
            video,
            audio: audio::audio_info_of(caps),
            existing,
            frame,
        }
    }

    /// Checks the meta item `it`; `None` for a video meta the buffer
    /// already has.
    fn check(&mut self, it: &Item) -> Result<Option<Pending>, SerdeError> {
        Ok(Some(match it.name.as_str() {
            "video-meta" => {
                let info = self
                    .video
                    .as_ref()
                    .map_err(|e| invalid(format!("video-meta: {e}")))?;
                let p = video::check_video_meta(it, self.size, info.as_ref())?;
                if let Some(e) = &self.existing {
                    if !e.same_layout(&p) {
                        return Err(invalid("video-meta differs from the buffer's plane layout"));
                    }
                    return Ok(None);
                }
                self.frame = Some((p.width, p.height));
                Pending::Video(p)
            }
            "crop-meta" => {
                let (x, y, w, h) = crop::check(it, self.video.as_ref().err(), self.frame)?;
                Pending::Crop(x, y, w, h)
            }
            "reference-timestamp-meta" => {
                let (caps, ts, duration) = reference::check(it)?;
                Pending::Reference(caps, ts, duration)
            }
            "audio-meta" => {
                let caps_info = self
                    .audio
                    .as_ref()
                    .map_err(|e| invalid(format!("audio-meta: {e}")))?;
                let (info, samples, offsets) =
                    audio::check_audio_meta(it, self.size, caps_info.as_ref())?;
                Pending::Audio(Box::new(info), samples, offsets)
            }
            "timecode-meta" => Pending::TimeCode(timecode::check_timecode_meta(it)?),
            n => return Err(invalid(format!("unknown meta {n:?}"))),
        }))
    }
}

/// Attaches the metas `s` (from [`metas_to_string`] on the peer) to
/// `buffer`, which should carry none of these metas yet, except a
/// `GstVideoMeta` attached from the frame descriptor's plane layout (which a
/// `video-meta` item must then match exactly; it is not attached twice).
/// `caps` are the
/// stream's current caps: pass them whenever there are some, since with raw
/// video or audio caps the metas must agree with them (same format and
/// planes, at least their size, same audio info: downstream code maps
/// buffers with both, and `gst_video_frame_map` / `gst_audio_buffer_map`
/// `g_critical` on a mismatch); raw caps that are not a valid fixed format
/// make video, crop and audio metas refused.
///
/// Everything is checked before anything is attached: on error `buffer` is
/// unchanged. Refused: a video plane whose rows (offset + stride × rows of
/// the format's plane height, the last row as long as the format needs)
/// would read past the buffer or a stride shorter than a row; audio samples
/// (× bytes per frame, or per plane at each offset) past the buffer or
/// overlapping planes; a crop outside the frame (the caps' size, else the
/// video meta's; a crop with neither is refused); an invalid time code;
/// paletted and tiled video formats; anything malformed, unknown or over
/// the limits. Plane heights are the whole frame's, so a buffer holding one
/// field of alternate-interlaced video (`ONEFIELD`, half the rows) is
/// refused.
pub(crate) fn apply_metas(
    buffer: &mut gst::BufferRef,
    s: &str,
    caps: Option<&gst::CapsRef>,
) -> Result<(), SerdeError> {
    let items = parse_items(s)?;
    let mut target = Target::new(buffer, caps);
    let mut seen = [0usize; 5];
    let mut pending = Vec::new();
    // Video meta first: a crop is checked against its size.
    let mut order: Vec<&Item> = items.iter().filter(|i| i.name == "video-meta").collect();
    order.extend(items.iter().filter(|i| i.name != "video-meta"));
    for it in order {
        let (slot, max) = slot_of(&it.name)?;
        seen[slot] += 1;
        if seen[slot] > max {
            return Err(invalid(format!("too many {} items", it.name)));
        }
        pending.extend(target.check(it)?);
    }
    for p in pending {
        p.attach(buffer)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;

    #[test]
    fn a_buffer_without_carried_metas_gives_none() {
        init();
        let buf = gst::Buffer::with_size(100).expect("buffer");
        assert_eq!(metas_to_string(&buf), None);
    }

    #[test]
    fn unknown_or_repeated_metas_are_refused_and_nothing_is_attached() {
        init();
        let crop = "crop-meta, x=(uint)0, y=(uint)0, width=(uint)2, height=(uint)2";
        let caps = i420_caps(66, 50);
        for s in [
            format!("{crop}; {crop}"),
            format!("{crop}; roi-meta, x=(uint)1"),
            format!("{crop}, extra=(int)1"),
            "crop-meta, x=(int)0, y=(uint)0, width=(uint)2, height=(uint)2".to_owned(),
        ] {
            let (r, b) = apply_new(10, &s, Some(&caps));
            assert!(r.is_err(), "{s}");
            assert!(b.meta::<gst_video::VideoCropMeta>().is_none());
        }
    }
}
