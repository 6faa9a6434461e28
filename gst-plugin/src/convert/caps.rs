//! Caps: what a slot must hold for them, the system-memory-only rule, caps
//! strings from the peer, and which caps downstream parses.

use crate::serialize;

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

/// Parses caps a sink sent. `None` for anything that is not valid caps of
/// the types `serialize` carries. GStreamer's own parser is never used on
/// them: it `g_critical`s on invalid structure names, also nested ones
/// (`x, a=(structure)"1x;"`), and on reversed ranges (found by the
/// `peer_strings` fuzz target under `G_DEBUG=fatal-criticals`); glib's
/// string conversion panics on a NUL byte, which the parser refuses too.
pub(crate) fn parse_caps(s: &str) -> Option<gst::Caps> {
    serialize::caps_from_string(s).ok()
}

/// Whether buffers of `caps` get parsed downstream (they are not raw audio
/// or video, which are read through their caps and layout only).
pub(crate) fn is_parsed(caps: &gst::CapsRef) -> bool {
    !caps
        .iter()
        .all(|st| st.name() == "video/x-raw" || st.name() == "audio/x-raw")
}

#[cfg(test)]
mod tests {
    use super::*;

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
