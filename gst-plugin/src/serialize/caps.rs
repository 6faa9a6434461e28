//! Caps: their string form (GStreamer's caps syntax, features included)
//! and the checked parse of the peer's caps, which never reaches
//! GStreamer's parser.

use gst::glib;
use gst::prelude::*;

use super::gvalue::{item_from_structure, item_to_structure};
use super::parser::parse_items;
use super::text::{bounded, print_items};
use super::{invalid, SerdeError};

/// Caps as a string [`caps_from_string`] reads (GStreamer's caps syntax,
/// features included); `None` if a value is of a type that is not carried
/// (see the module docs) or the string would exceed [`MAX_STRING`](super::MAX_STRING).
pub(crate) fn caps_to_string(caps: &gst::CapsRef) -> Option<String> {
    if caps.is_any() {
        return Some("ANY".to_owned());
    }
    if caps.is_empty() {
        return Some("EMPTY".to_owned());
    }
    let mut items = Vec::new();
    for (st, f) in caps.iter_with_features() {
        let mut it = item_from_structure(st, 0)?;
        if f.is_any() {
            it.features = Some(vec!["ANY".to_owned()]);
        } else if !system_memory_only(f) {
            it.features = Some(f.iter().map(|x| x.to_string()).collect());
        }
        items.push(it);
    }
    bounded(print_items(&items))
}

/// Whether caps features `f` say nothing beyond system memory (none, or
/// `memory:SystemMemory` alone).
pub(super) fn system_memory_only(f: &gst::CapsFeaturesRef) -> bool {
    f.is_empty() || (f.size() == 1 && f.contains("memory:SystemMemory"))
}

/// Caps from the peer (as [`caps_to_string`] or GStreamer writes fixed
/// caps), parsed without GStreamer's parser, which `g_critical`s on invalid
/// names (also nested ones) and reversed ranges. Ranges are not read:
/// negotiated caps are fixed.
pub(crate) fn caps_from_string(s: &str) -> Result<gst::Caps, SerdeError> {
    match s.trim() {
        "ANY" => return Ok(gst::Caps::new_any()),
        "EMPTY" | "NONE" => return Ok(gst::Caps::new_empty()),
        _ => {}
    }
    let items = parse_items(s)?;
    if items.is_empty() {
        return Err(invalid("no caps"));
    }
    let mut caps = gst::Caps::new_empty();
    {
        let c = caps.make_mut();
        for mut it in items {
            let features = it.features.take().map(|f| {
                if f.iter().any(|x| x == "ANY") {
                    gst::CapsFeatures::new_any()
                } else {
                    gst::CapsFeatures::new(f.iter().map(String::as_str))
                }
            });
            let mut st = item_to_structure(&it, 0)?;
            mark_stream_headers(&mut st);
            c.append_structure_full(st, features);
        }
    }
    Ok(caps)
}

/// Buffers of a caps' `streamheader` are headers: the flag does not survive
/// the string form (GStreamer prints a buffer's bytes only), so it is set
/// again, as the producer's muxer or encoder had it.
fn mark_stream_headers(st: &mut gst::StructureRef) {
    let Ok(headers) = st.get::<gst::Array>("streamheader") else {
        return;
    };
    let marked: Vec<glib::SendValue> = headers
        .iter()
        .map(|v| match v.get::<gst::Buffer>() {
            Ok(mut b) => {
                b.make_mut().set_flags(gst::BufferFlags::HEADER);
                b.to_send_value()
            }
            Err(_) => v.clone(),
        })
        .collect();
    st.set("streamheader", gst::Array::from_values(marked));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;

    #[test]
    fn caps_round_trip_from_our_strings_and_gstreamers() {
        init();
        for caps in caps_cases() {
            let ours = caps_to_string(&caps).expect("carried");
            assert_eq!(caps_from_string(&ours).expect(&ours), caps, "{ours}");
            let theirs = caps.to_string();
            assert_eq!(caps_from_string(&theirs).expect(&theirs), caps, "{theirs}");
            assert_eq!(crate::peer::parse_caps(&theirs), Some(caps));
        }
        // Hand-written caps: types inferred as GStreamer infers them.
        for s in [
            "video/x-raw,format=GRAY8,width=4,height=4,framerate=30/1",
            "audio/x-raw, rate=48000, scale=0.5, flag=true, name=(string)\"a b\", hex=0x10",
            "x/y, a=< 1, 2 >, b={ a, b }",
        ] {
            let want = <gst::Caps as std::str::FromStr>::from_str(s).expect("gst parses");
            assert_eq!(caps_from_string(s).expect(s), want, "{s}");
        }
        assert!(caps_from_string("x/y, a=< 1, b >").is_err());
    }

    #[test]
    fn hostile_caps_are_refused_without_a_critical() {
        init();
        for s in [
            "1abc",
            "video/x-raw, a=(structure)\"1x, b=(int)2;\"",
            "video/x-raw, a=(structure)[1x, b=(int)2]",
            "x, a=(GstCaps)\"1x\"",
            "x, a=(int)[ 1, 0 ]",
            "x, a=(int)[ 1, 2 ]",
            "x, a=(fraction)1/0",
            "x, a=(GstFormat)nope",
            "video/x-raw(1bad:feature), a=(int)1",
            "video/x-raw(memory:), a=(int)1",
            "video/x-raw(memory:Sys-Mem), a=(int)1",
            "video/x-raw, a=(string)\"nul\\000\"",
            "video/x-raw, a=(buffer)abc",
            "video/x-raw, a=(date)2020-02-30",
            "video/x-raw, f=(GstVideoMultiviewFlagsSet)zz:ff",
            "video/x-raw, f=(GstFlagSet)0:ff",
            "video/x-raw, a=(float)1.5",
            "video/x-raw; ; 1x",
            "",
        ] {
            assert!(caps_from_string(s).is_err(), "{s:?}");
            assert!(crate::peer::parse_caps(s).is_none(), "{s:?}");
        }
    }
}
