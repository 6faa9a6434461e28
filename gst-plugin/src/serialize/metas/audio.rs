//! `GstAudioMeta`: the audio info, sample count and per-channel offsets,
//! checked to lie inside the buffer without overlapping and to match the
//! caps before it is attached.

use glib::translate::IntoGlib as _;
use gst::glib;

use super::super::text::{Item, Val};
use super::super::{invalid, SerdeError};

/// The audio meta of `buffer` as an item, if the receiving side would
/// accept it.
pub(super) fn item(buffer: &gst::BufferRef) -> Option<Item> {
    audio_meta_item(buffer).filter(|it| check_audio_meta(it, buffer.size(), None).is_ok())
}

/// The audio info of raw audio caps, like [`video_info_of`](super::video::video_info_of).
pub(super) fn audio_info_of(
    caps: Option<&gst::CapsRef>,
) -> Result<Option<gst_audio::AudioInfo>, String> {
    super::raw_info_of(caps, "audio", |c| gst_audio::AudioInfo::from_caps(c).ok())
}

fn audio_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer.meta::<gst_audio::AudioMeta>()?;
    let info = m.info();
    if info.channels() == 0 || info.channels() > 64 {
        return None;
    }
    let positions: Vec<Val> = match info.positions() {
        Some(p) => p.iter().map(|p| Val::Int(p.into_glib())).collect(),
        None => (0..info.channels())
            .map(|_| Val::Int(gst_audio::AudioChannelPosition::None.into_glib()))
            .collect(),
    };
    let layout = match info.layout() {
        gst_audio::AudioLayout::NonInterleaved => "non-interleaved",
        _ => "interleaved",
    };
    let mut it = Item::new("audio-meta")
        .with("format", Val::Str(info.format().to_str().to_string()))
        .with("rate", Val::Int(i32::try_from(info.rate()).ok()?))
        .with("channels", Val::Int(i32::try_from(info.channels()).ok()?))
        .with("layout", Val::Str(layout.to_owned()))
        .with("flags", Val::UInt(info.flags().bits()))
        .with("positions", Val::Array(positions))
        .with("samples", Val::UInt64(m.samples() as u64));
    if !m.offsets().is_empty() {
        it = it.with(
            "offsets",
            Val::Array(m.offsets().iter().map(|&o| Val::UInt64(o as u64)).collect()),
        );
    }
    Some(it)
}

/// Checks an `audio-meta` item: a valid format, the channels' samples
/// (at their offsets when planar) inside the buffer, planes not overlapping,
/// the same audio info as the caps (if known).
pub(super) fn check_audio_meta(
    it: &Item,
    size: usize,
    caps_info: Option<&gst_audio::AudioInfo>,
) -> Result<(gst_audio::AudioInfo, usize, Vec<usize>), SerdeError> {
    it.check_fields(&[
        "format",
        "rate",
        "channels",
        "layout",
        "flags",
        "positions",
        "samples",
        "offsets",
    ])?;
    let info = audio_info_from_item(it)?;
    if let Some(ci) = caps_info {
        if *ci != info {
            return Err(invalid("audio-meta: audio info differs from the caps"));
        }
    }
    let samples = it.u64("samples")?;
    // All channels' samples fit (so one plane's do, without overflow).
    samples
        .checked_mul(u64::from(info.bpf()))
        .filter(|&t| t <= size as u64)
        .ok_or_else(|| {
            invalid(format!(
                "audio-meta: {samples} samples of {} bytes exceed the {size}-byte buffer",
                info.bpf()
            ))
        })?;
    let offsets = it.u64_array("offsets")?;
    if !offsets.is_empty() {
        check_planes(&info, samples, &offsets, size)?;
    }
    Ok((
        info,
        samples as usize,
        offsets.iter().map(|&o| o as usize).collect(),
    ))
}

/// The audio info an `audio-meta` item describes (format, rate, channels,
/// layout, flags, positions), checked as its builder wants it.
fn audio_info_from_item(it: &Item) -> Result<gst_audio::AudioInfo, SerdeError> {
    let fname = it.str("format")?;
    let format = gst_audio::AudioFormat::from_string(fname);
    if matches!(
        format,
        gst_audio::AudioFormat::Unknown | gst_audio::AudioFormat::Encoded
    ) {
        return Err(invalid(format!("audio-meta: unsupported format {fname:?}")));
    }
    let rate = it.i32("rate")?;
    let channels = it.i32("channels")?;
    if rate <= 0 {
        return Err(invalid(format!("audio-meta: rate {rate}")));
    }
    if !(1..=64).contains(&channels) {
        return Err(invalid(format!(
            "audio-meta: {channels} channels (1 to 64)"
        )));
    }
    let layout = match it.str("layout")? {
        "interleaved" => gst_audio::AudioLayout::Interleaved,
        "non-interleaved" => gst_audio::AudioLayout::NonInterleaved,
        l => return Err(invalid(format!("audio-meta: layout {l:?}"))),
    };
    let flags = gst_audio::AudioFlags::from_bits_truncate(it.u32("flags")?);
    let positions = channel_positions(it, channels)?;
    gst_audio::AudioInfo::builder(format, rate as u32, channels as u32)
        .positions(&positions)
        .flags(flags)
        .layout(layout)
        .build()
        .map_err(|e| invalid(format!("audio-meta: {e}")))
}

/// The `positions` of an `audio-meta` item: one valid position per channel.
fn channel_positions(
    it: &Item,
    channels: i32,
) -> Result<Vec<gst_audio::AudioChannelPosition>, SerdeError> {
    let raw_pos = it.i32_array("positions")?;
    if raw_pos.len() != channels as usize {
        return Err(invalid(format!(
            "audio-meta: {} positions for {channels} channels",
            raw_pos.len()
        )));
    }
    let mut positions = Vec::with_capacity(raw_pos.len());
    for p in raw_pos {
        // NONE (-3) .. the last defined position; anything else is unknown.
        if !(-3..=27).contains(&p) {
            return Err(invalid(format!("audio-meta: channel position {p}")));
        }
        // SAFETY: `p` is one of GstAudioChannelPosition's values (checked
        // above), the representation `from_glib` expects.
        positions.push(unsafe {
            <gst_audio::AudioChannelPosition as glib::translate::FromGlib<i32>>::from_glib(p)
        });
    }
    if !gst_audio::AudioChannelPosition::check_valid_channel_positions(&positions, true) {
        return Err(invalid("audio-meta: invalid channel positions"));
    }
    Ok(positions)
}

/// Checks planar audio's per-channel `offsets`: one per channel, each
/// plane of `samples` inside `size` bytes, no two planes overlapping.
fn check_planes(
    info: &gst_audio::AudioInfo,
    samples: u64,
    offsets: &[u64],
    size: usize,
) -> Result<(), SerdeError> {
    let channels = info.channels();
    if info.layout() != gst_audio::AudioLayout::NonInterleaved {
        return Err(invalid("audio-meta: offsets for interleaved audio"));
    }
    if offsets.len() != channels as usize {
        return Err(invalid(format!(
            "audio-meta: {} offsets for {channels} channels",
            offsets.len()
        )));
    }
    let plane = samples * u64::from(info.bps());
    for (i, &o) in offsets.iter().enumerate() {
        if o.checked_add(plane).is_none_or(|end| end > size as u64) {
            return Err(invalid(format!(
                "audio-meta: channel {i} at offset {o} ({plane} bytes) reads past the {size}-byte buffer"
            )));
        }
        for (j, &q) in offsets.iter().enumerate().take(i) {
            if !(q + plane <= o || o + plane <= q) {
                return Err(invalid(format!("audio-meta: channels {j} and {i} overlap")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::serialize::test_support::*;

    /// The audio meta of a buffer of `size` bytes carrying one of `info`,
    /// `samples` and `offsets`, after the round trip (with `caps`, if any).
    fn round_trip(
        info: &gst_audio::AudioInfo,
        size: usize,
        samples: usize,
        offsets: &[usize],
        caps: Option<&gst::Caps>,
    ) -> (gst_audio::AudioInfo, usize, Vec<usize>) {
        let mut src = gst::Buffer::with_size(size).expect("buffer");
        gst_audio::AudioMeta::add(src.get_mut().expect("writable"), info, samples, offsets)
            .expect("meta");
        let dst = round_trip_metas(&src, caps);
        let m = dst.meta::<gst_audio::AudioMeta>().expect("audio meta");
        (m.info(), m.samples(), m.offsets().to_vec())
    }

    #[test]
    fn planar_audio_meta_round_trips_with_its_offsets() {
        init();
        // 64 samples of 4 bytes per plane, the second plane after a gap.
        let info = planar_f32_info(48000);
        let caps = info.to_caps().expect("caps");
        let got = round_trip(&info, 1024, 64, &[0, 512], Some(&caps));
        assert_eq!(got, (info, 64, vec![0, 512]));
        // Interleaved, no offsets.
        let info = gst_audio::AudioInfo::builder(gst_audio::AudioFormat::S16le, 44100, 2)
            .build()
            .expect("info");
        assert_eq!(round_trip(&info, 400, 100, &[], None), (info, 100, vec![]));
        // Unpositioned channels (10 channels, channel mask 0).
        let caps = gst::Caps::builder("audio/x-raw")
            .field("format", "S16LE")
            .field("rate", 8000i32)
            .field("channels", 10i32)
            .field("channel-mask", gst::Bitmask::new(0))
            .field("layout", "interleaved")
            .build();
        let info = gst_audio::AudioInfo::from_caps(&caps).expect("info");
        assert!(info.is_unpositioned());
        let got = round_trip(&info, 200, 10, &[], Some(&caps));
        assert_eq!(got, (info, 10, vec![]));
    }

    #[test]
    fn audio_metas_past_the_buffer_overlapping_or_mismatching_the_caps_are_refused() {
        init();
        let good = "audio-meta, format=(string)F32LE, rate=(int)48000, channels=(int)2, \
                    layout=(string)non-interleaved, flags=(uint)0, positions=(int)< 1, 2 >, \
                    samples=(uint64)64, offsets=(uint64)< 0, 512 >";
        apply_new(1024, good, None).0.expect("good one");
        let other_caps = planar_f32_info(44100).to_caps().expect("caps");
        // (what `good` has, what it is replaced with, the error).
        let cases = [
            ("< 0, 512 >", "< 0, 800 >", "reads past"),
            ("< 0, 512 >", "< 0, 18446744073709551615 >", "reads past"),
            ("< 0, 512 >", "< 0, 100 >", "overlap"),
            ("< 0, 512 >", "< 0 >", "offsets for 2 channels"),
            ("samples=(uint64)64", "samples=(uint64)200", "exceed"),
            (
                "samples=(uint64)64",
                "samples=(uint64)4611686018427387904",
                "exceed",
            ),
            ("< 1, 2 >", "< 1, 1 >", "channel positions"),
            ("< 1, 2 >", "< 1, 99 >", "channel position"),
            ("channels=(int)2", "channels=(int)65", "channels"),
            ("rate=(int)48000", "rate=(int)0", "rate"),
            ("F32LE", "nope", "unsupported format"),
            ("non-interleaved", "interleaved", "offsets for interleaved"),
        ];
        let mut strings: Vec<(String, Option<&gst::Caps>, &str)> = cases
            .iter()
            .map(|(from, to, why)| (good.replace(from, to), None, *why))
            .collect();
        strings.push((good.to_owned(), Some(&other_caps), "differs from the caps"));
        for (s, caps, why) in strings {
            let (r, b) = apply_new(1024, &s, caps);
            let err = r.expect_err(&s).to_string();
            assert!(err.contains(why), "{s}: {err}");
            assert!(b.meta::<gst_audio::AudioMeta>().is_none());
        }
    }
}
