//! Fixtures the serialize tests share: GStreamer with fatal criticals,
//! caps, buffers laid out like real decoders', a TOC, custom and navigation
//! structures, and shorthands for applying metas to a fresh buffer.
//!
//! Compiled for the unit tests only (`#[cfg(test)]` in `serialize/mod.rs`).
//! Each `expect` here unwraps a fixture the test itself built (GStreamer's
//! init, a buffer it owns, a meta it adds), never a value from a peer: a
//! failure is a broken fixture, and failing the test on it is the point.

use gst::glib;
use gst::prelude::*;

use super::gvalue::{flags_value, plain_send_value};
use super::metas::{apply_metas, metas_to_string};
use super::parser::register_types;
use super::upstream::NAVIGATION;
use super::SerdeError;

/// GStreamer initialised, with every `g_critical` fatal (as under
/// `G_DEBUG=fatal-criticals`), so a test that provokes one aborts.
pub(super) fn init() {
    gst::init().expect("gst init");
    glib::log_set_always_fatal(glib::LogLevels::LEVEL_CRITICAL | glib::LogLevels::LEVEL_ERROR);
}

pub(super) fn i420_caps(w: i32, h: i32) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("format", "I420")
        .field("width", w)
        .field("height", h)
        .field("framerate", gst::Fraction::new(30, 1))
        .build()
}

pub(super) const VP9_SIZE: usize = 28_831;
pub(super) const VP9_OFFSETS: [usize; 3] = [1552, 9232, 11232];
pub(super) const VP9_STRIDES: [i32; 3] = [96, 48, 48];

/// A buffer laid out like vp9dec's 66x50 I420 output: padded planes, a
/// `GstVideoMeta` with their offsets and strides, a byte pattern.
pub(super) fn vp9_like_buffer() -> gst::Buffer {
    let data: Vec<u8> = (0..VP9_SIZE).map(|i| (i * 7 % 251) as u8).collect();
    let mut buf = gst::Buffer::from_mut_slice(data);
    add_vp9_video_meta(&mut buf);
    buf
}

/// Attaches to `buf` the `GstVideoMeta` of [`vp9_like_buffer`].
pub(super) fn add_vp9_video_meta(buf: &mut gst::Buffer) {
    add_i420_66x50_meta(buf, &VP9_OFFSETS, &VP9_STRIDES);
}

/// Attaches to `buf` a `GstVideoMeta` of 66x50 I420 with these planes.
pub(super) fn add_i420_66x50_meta(buf: &mut gst::Buffer, offsets: &[usize], strides: &[i32]) {
    gst_video::VideoMeta::add_full(
        buf.get_mut().expect("writable"),
        gst_video::VideoFrameFlags::empty(),
        gst_video::VideoFormat::I420,
        66,
        50,
        offsets,
        strides,
    )
    .expect("video meta");
}

/// The `VP9_OFFSETS` as a video meta string writes them.
pub(super) fn vp9_offsets() -> [u64; 3] {
    VP9_OFFSETS.map(|x| x as u64)
}

/// A buffer with the same bytes as `src` and no metas (what the
/// receiving side gets from the shared memory).
pub(super) fn bare_copy(src: &gst::BufferRef) -> gst::Buffer {
    let map = src.map_readable().expect("map");
    gst::Buffer::from_mut_slice(map.to_vec())
}

/// A `video-meta` item as the peer would write it.
pub(super) fn video_meta_string(
    format: &str,
    w: u32,
    h: u32,
    offsets: &[u64],
    strides: &[i32],
) -> String {
    let o: Vec<String> = offsets.iter().map(|x| x.to_string()).collect();
    let s: Vec<String> = strides.iter().map(|x| x.to_string()).collect();
    format!(
        "video-meta, format=(string){format}, width=(uint){w}, height=(uint){h}, flags=(uint)0, \
         n-planes=(uint){}, offsets=(uint64)< {} >, strides=(int)< {} >",
        offsets.len(),
        o.join(", "),
        s.join(", ")
    )
}

/// I420 caps with multiview flags (a `GstFlagSet` subtype).
fn multiview_caps() -> gst::Caps {
    register_types();
    let mut multiview = i420_caps(64, 48);
    let t = glib::Type::from_name("GstVideoMultiviewFlagsSet").expect("type");
    let mut v = glib::Value::from_type(t);
    // SAFETY: the value is initialised to a GstFlagSet subtype.
    unsafe {
        gst::ffi::gst_value_set_flagset(
            glib::translate::ToGlibPtrMut::to_glib_none_mut(&mut v).0,
            0x4,
            0xffff_ffff,
        );
    }
    let flags = plain_send_value(v).expect("plain");
    multiview
        .make_mut()
        .structure_mut(0)
        .expect("s")
        .set_value("multiview-flags", flags);
    multiview
}

/// Caps of every kind the elements negotiate, ANY and EMPTY included.
pub(super) fn caps_cases() -> Vec<gst::Caps> {
    vec![
        i420_caps(320, 240),
        multiview_caps(),
        gst::Caps::builder("video/x-h264")
            .field("stream-format", "avc")
            .field(
                "codec_data",
                gst::Buffer::from_slice([1u8, 0x64, 0, 0x28, 0xff, 0xe1]),
            )
            .field("level", "4")
            .build(),
        gst::Caps::builder("audio/x-opus")
            .field("channel-mapping-family", 0i32)
            .field(
                "streamheader",
                gst::Array::new([
                    gst::Buffer::from_slice(*b"OpusHead"),
                    gst::Buffer::from_slice(*b"OpusTags"),
                ]),
            )
            .build(),
        planar_f32_info(48000).to_caps().expect("caps"),
        gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 8000i32)
            .field("channels", 3i32)
            .field("channel-mask", gst::Bitmask::new(0x7))
            .field("layout", "interleaved")
            .build(),
        gst::Caps::builder("video/x-raw")
            .features(["memory:DMABuf", "meta:GstVideoOverlayComposition"])
            .field("format", "NV12")
            .build(),
        gst::Caps::builder("video/x-raw")
            .any_features()
            .field("s", "with \"quotes\", commas; and é")
            .field("d", 0.25f64)
            .field("big", u64::MAX)
            .field("neg", i64::MIN)
            .build(),
        gst::Caps::builder_full()
            .structure(gst::Structure::new_empty("a/b"))
            .structure(gst::Structure::builder("c/d").field("x", 1i32).build())
            .build(),
        gst::Caps::new_any(),
        gst::Caps::new_empty(),
    ]
}

pub(super) fn planar_f32_info(rate: u32) -> gst_audio::AudioInfo {
    gst_audio::AudioInfo::builder(gst_audio::AudioFormat::F32le, rate, 2)
        .positions(&[
            gst_audio::AudioChannelPosition::FrontLeft,
            gst_audio::AudioChannelPosition::FrontRight,
        ])
        .layout(gst_audio::AudioLayout::NonInterleaved)
        .build()
        .expect("info")
}

pub(super) fn test_toc() -> gst::Toc {
    let mut toc = gst::Toc::new(gst::TocScope::Global);
    {
        let t = toc.get_mut().expect("writable");
        let mut tags = gst::TagList::new();
        tags.get_mut()
            .expect("w")
            .add::<gst::tags::Title>(&"Movie", gst::TagMergeMode::Append);
        tags.get_mut().expect("w").set_scope(gst::TagScope::Global);
        t.set_tags(tags);
        let mut edition = gst::TocEntry::new(gst::TocEntryType::Edition, "ed\"1");
        {
            let e = edition.get_mut().expect("w");
            e.set_start_stop_times(0, 10_000_000_000);
            for i in 0..3 {
                let mut ch = gst::TocEntry::new(gst::TocEntryType::Chapter, &format!("ch{i}"));
                let c = ch.get_mut().expect("w");
                c.set_start_stop_times(i * 1000, (i + 1) * 1000);
                let mut tags = gst::TagList::new();
                {
                    let tw = tags.get_mut().expect("w");
                    tw.add::<gst::tags::Title>(
                        &format!("Chapter {i}").as_str(),
                        gst::TagMergeMode::Append,
                    );
                    tw.add::<gst::tags::TrackNumber>(&(i as u32), gst::TagMergeMode::Append);
                }
                c.set_tags(tags);
                if i == 1 {
                    c.set_loop(gst::TocLoopType::Forward, 2);
                    let sub = gst::TocEntry::new(gst::TocEntryType::Chapter, "ch1.sub");
                    c.append_sub_entry(sub);
                }
                e.append_sub_entry(ch);
            }
        }
        t.append_entry(edition);
        t.append_entry(gst::TocEntry::new(gst::TocEntryType::Edition, "ed2"));
    }
    toc
}

pub(super) fn custom_event_structure() -> gst::Structure {
    gst::Structure::builder("my-event")
        .field("n", 42i32)
        .field("what", "hello, \"world\"")
        .field("times", gst::Array::new([1u64, 2, 3]))
        .build()
}

pub(super) fn navigation_structure() -> gst::Structure {
    let mut s = gst::Structure::builder(NAVIGATION)
        .field("event", "mouse-button-press")
        .field("button", 1i32)
        .field("pointer_x", 12.5f64)
        .field("pointer_y", 1.0f64 / 3.0)
        .build();
    s.set_value("state", modifier_flags(1 | 4));
    s
}

/// A `GstNavigationModifierType` value of the bits `v`.
pub(super) fn modifier_flags(v: u32) -> glib::SendValue {
    let flags =
        flags_value(gst_video::NavigationModifierType::static_type(), v).expect("flags value");
    plain_send_value(flags).expect("plain")
}

/// Applies the metas `s` to `b` (with `caps`, if any).
pub(super) fn apply_to(
    b: &mut gst::Buffer,
    s: &str,
    caps: Option<&gst::Caps>,
) -> Result<(), SerdeError> {
    apply_metas(b.get_mut().expect("writable"), s, caps.map(|c| c.as_ref()))
}

/// Applies the metas `s` to a new buffer of `size` bytes: the result, and
/// the buffer.
pub(super) fn apply_new(
    size: usize,
    s: &str,
    caps: Option<&gst::Caps>,
) -> (Result<(), SerdeError>, gst::Buffer) {
    let mut b = gst::Buffer::with_size(size).expect("buffer");
    (apply_to(&mut b, s, caps), b)
}

/// The metas of `src` applied (with `caps`, if any) to a [`bare_copy`] of it.
pub(super) fn round_trip_metas(src: &gst::Buffer, caps: Option<&gst::Caps>) -> gst::Buffer {
    let s = metas_to_string(src).expect("carried");
    let mut dst = bare_copy(src);
    apply_to(&mut dst, &s, caps).expect("applies");
    dst
}
