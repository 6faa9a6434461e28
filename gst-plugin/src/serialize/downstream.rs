//! Serialized downstream events the frame stream does not carry natively
//! (TOC, custom, stream-group-done, instant-rate-change, segment-done,
//! protection): their strings, each naming the event type and its sticky
//! flag, and the checked rebuild of the peer's.

use glib::translate::IntoGlib as _;
use gst::glib;

use super::gvalue::{item_from_structure, item_to_structure};
use super::parser::parse_one;
use super::text::{bounded, hex, print_items, unhex, valid_name, Item, Val};
use super::toc::{toc_from_item, toc_item};
use super::{invalid, SerdeError, MAX_PROTECTION_DATA};

/// A custom event's structure as an item named `kind`.
pub(super) fn custom_item(kind: &str, s: Option<&gst::StructureRef>) -> Option<Item> {
    Some(Item::new(kind).with(
        "structure",
        Val::Struct(Box::new(item_from_structure(s?, 1)?)),
    ))
}

/// The structure of a [`custom_item`], which may have only the fields
/// `allowed`.
pub(super) fn custom_structure(it: &Item, allowed: &[&str]) -> Result<gst::Structure, SerdeError> {
    it.check_fields(allowed)?;
    item_to_structure(it.item("structure")?, 1)
}

fn format_from_int(v: i32) -> Option<gst::Format> {
    Some(match v {
        1 => gst::Format::Default,
        2 => gst::Format::Bytes,
        3 => gst::Format::Time,
        4 => gst::Format::Buffers,
        5 => gst::Format::Percent,
        _ => return None,
    })
}

/// The structure name `gst_event_new_protection` makes (it must be a valid
/// name, or GStreamer `g_critical`s).
fn protection_name(system_id: &str, origin: Option<&str>) -> String {
    match origin {
        Some(o) => format!("GstProtectionEvent-{o}-{system_id}"),
        None => format!("GstProtectionEvent-{system_id}"),
    }
}

/// A serialized downstream event that the frame stream does not carry
/// natively, as a string; `None` for any other event, or one holding values
/// that are not carried (see the module docs).
///
/// Carried: TOC (scope, tags, updated flag, the entry tree with types, uids,
/// start/stop, loops and tags), custom downstream, custom downstream sticky,
/// custom both, stream-group-done, instant-rate-change, segment-done and
/// protection (payloads up to [`MAX_PROTECTION_DATA`] bytes). Each string
/// names the event type and its sticky flag.
pub(crate) fn downstream_event_to_string(ev: &gst::EventRef) -> Option<String> {
    use gst::EventView;
    let item = match ev.view() {
        EventView::Toc(t) => {
            let (toc, updated) = t.toc();
            toc_item(toc, updated)?
        }
        EventView::CustomDownstream(c) => custom_item("custom-downstream", c.structure())?,
        EventView::CustomDownstreamSticky(c) => {
            custom_item("custom-downstream-sticky", c.structure())?
        }
        EventView::CustomBoth(c) => custom_item("custom-both", c.structure())?,
        EventView::StreamGroupDone(_) => {
            let id = ev.structure()?.get::<u32>("group-id").ok()?;
            Item::new("stream-group-done").with("group-id", Val::UInt(id))
        }
        EventView::InstantRateChange(r) => {
            let (rate, new_flags) = r.get();
            if !rate.is_finite() || rate == 0.0 {
                return None;
            }
            Item::new("instant-rate-change")
                .with("rate", Val::Double(rate))
                .with("flags", Val::UInt(new_flags.bits()))
        }
        EventView::SegmentDone(sd) => {
            let pos = sd.get();
            format_from_int(pos.format().into_glib())?;
            Item::new("segment-done")
                .with("format", Val::Int(pos.format().into_glib()))
                .with("position", Val::Int64(pos.value()))
        }
        EventView::Protection(p) => protection_item(p)?,
        _ => return None,
    };
    let sticky = ev.is_sticky();
    let item = if item.get("sticky").is_some() {
        item
    } else {
        item.with("sticky", Val::Bool(sticky))
    };
    bounded(print_items(&[item]))
}

/// A protection event as an item, if its payload is not over
/// [`MAX_PROTECTION_DATA`] and its structure name is valid.
fn protection_item(p: &gst::event::Protection) -> Option<Item> {
    let (system_id, data, origin) = p.get();
    if data.size() > MAX_PROTECTION_DATA || !valid_name(&protection_name(system_id, origin)) {
        return None;
    }
    let map = data.map_readable().ok()?;
    let mut it = Item::new("protection")
        .with("system-id", Val::Str(system_id.to_owned()))
        .with("data", Val::Str(hex(&map)));
    if let Some(o) = origin {
        it = it.with("origin", Val::Str(o.to_owned()));
    }
    Some(it)
}

/// Rebuilds an event from [`downstream_event_to_string`]'s string (from the
/// peer: checked, see the module docs). The rebuilt event's sticky flag must
/// match the string's.
pub(crate) fn downstream_event_from_string(s: &str) -> Result<gst::Event, SerdeError> {
    let it = parse_one(s)?;
    let custom = |it: &Item| custom_structure(it, &["sticky", "structure"]);
    let ev = match it.name.as_str() {
        "toc" => toc_from_item(&it)?,
        "custom-downstream" => gst::event::CustomDownstream::new(custom(&it)?),
        "custom-downstream-sticky" => gst::event::CustomDownstreamSticky::new(custom(&it)?),
        "custom-both" => gst::event::CustomBoth::new(custom(&it)?),
        "stream-group-done" => stream_group_done_from_item(&it)?,
        "instant-rate-change" => {
            it.check_fields(&["sticky", "rate", "flags"])?;
            let rate = it.f64("rate")?;
            if rate == 0.0 {
                return Err(invalid("instant-rate-change: rate 0"));
            }
            let flags = gst::SegmentFlags::from_bits_truncate(it.u32("flags")?);
            gst::event::InstantRateChange::new(rate, flags)
        }
        "segment-done" => segment_done_from_item(&it)?,
        "protection" => protection_from_item(&it)?,
        n => return Err(invalid(format!("unknown downstream event {n:?}"))),
    };
    if ev.is_sticky() != it.bool("sticky")? {
        return Err(invalid(format!("{}: wrong sticky flag", it.name)));
    }
    Ok(ev)
}

fn stream_group_done_from_item(it: &Item) -> Result<gst::Event, SerdeError> {
    it.check_fields(&["sticky", "group-id"])?;
    let id = it.u32("group-id")?;
    if id == 0 {
        return Err(invalid("stream-group-done: group id 0"));
    }
    // SAFETY: `id` is not GST_GROUP_ID_INVALID (0), the function's
    // only precondition; it returns a new event (transfer full).
    let ptr = unsafe { gst::ffi::gst_event_new_stream_group_done(id) };
    if ptr.is_null() {
        return Err(invalid("stream-group-done: GStreamer refused it"));
    }
    // SAFETY: `ptr` is a non-NULL event we own (transfer full).
    Ok(unsafe { glib::translate::from_glib_full(ptr) })
}

fn segment_done_from_item(it: &Item) -> Result<gst::Event, SerdeError> {
    it.check_fields(&["sticky", "format", "position"])?;
    let f = it.i32("format")?;
    let format = format_from_int(f).ok_or_else(|| invalid(format!("segment-done: format {f}")))?;
    let pos = it.i64("position")?;
    let max = if format == gst::Format::Percent {
        gst::ffi::GST_FORMAT_PERCENT_MAX
    } else {
        i64::MAX
    };
    if pos != -1 && !(0..=max).contains(&pos) {
        return Err(invalid(format!("segment-done: position {pos}")));
    }
    Ok(gst::event::SegmentDone::new(
        gst::GenericFormattedValue::new(format, pos),
    ))
}

fn protection_from_item(it: &Item) -> Result<gst::Event, SerdeError> {
    it.check_fields(&["sticky", "system-id", "data", "origin"])?;
    let data = unhex(it.str("data")?)
        .filter(|d| d.len() <= MAX_PROTECTION_DATA)
        .ok_or_else(|| invalid("protection: data is not hex or too long"))?;
    let buf = gst::Buffer::from_mut_slice(data);
    let origin = match it.get("origin") {
        None => None,
        Some(_) => Some(it.str("origin")?),
    };
    let system_id = it.str("system-id")?;
    if !valid_name(&protection_name(system_id, origin)) {
        return Err(invalid(
            "protection: system id or origin has characters a structure name cannot",
        ));
    }
    Ok(gst::event::Protection::builder(system_id, &buf)
        .origin_if_some(origin)
        .build())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;
    use crate::serialize::upstream::upstream_event_to_string;
    use crate::serialize::MAX_STRING;

    #[test]
    fn custom_downstream_events_round_trip_with_their_type_and_sticky_flag() {
        init();
        for ev in [
            gst::event::CustomDownstream::new(custom_event_structure()),
            gst::event::CustomDownstreamSticky::new(custom_event_structure()),
            gst::event::CustomBoth::new(custom_event_structure()),
        ] {
            let s = downstream_event_to_string(&ev).expect("carried");
            let back = downstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.is_sticky(), ev.is_sticky());
            assert_eq!(back.structure(), ev.structure());
            // The type cannot be swapped under a wrong sticky flag.
            let swapped = s.replacen("custom-downstream-sticky", "custom-downstream", 1);
            if swapped != s {
                assert!(downstream_event_from_string(&swapped).is_err());
            }
        }
    }

    /// Asserts that the rebuilt event `b` has the fields of `a` (`s`: the
    /// string between them).
    fn assert_same_fields(a: &gst::Event, b: &gst::Event, s: &str) {
        match (a.view(), b.view()) {
            (gst::EventView::StreamGroupDone(a), gst::EventView::StreamGroupDone(b)) => {
                assert_eq!(a.group_id(), b.group_id())
            }
            (gst::EventView::InstantRateChange(a), gst::EventView::InstantRateChange(b)) => {
                assert_eq!(a.get(), b.get())
            }
            (gst::EventView::SegmentDone(a), gst::EventView::SegmentDone(b)) => {
                assert_eq!(a.get(), b.get())
            }
            (gst::EventView::Protection(a), gst::EventView::Protection(b)) => {
                let (ai, ad, ao) = a.get();
                let (bi, bd, bo) = b.get();
                assert_eq!((ai, ao), (bi, bo));
                assert_eq!(
                    *ad.map_readable().expect("map"),
                    *bd.map_readable().expect("map")
                );
            }
            _ => panic!("{s}"),
        }
    }

    #[test]
    fn other_serialized_downstream_events_round_trip() {
        init();
        let group = gst::GroupId::next();
        let mut protection_data = gst::Buffer::from_slice([0u8, 1, 2, 0xfe, 0xff]);
        protection_data
            .get_mut()
            .expect("w")
            .set_pts(gst::ClockTime::NONE);
        let evs = [
            gst::event::StreamGroupDone::new(group),
            gst::event::InstantRateChange::new(
                0.1 + 0.2,
                gst::SegmentFlags::SKIP | gst::SegmentFlags::TRICKMODE,
            ),
            gst::event::SegmentDone::new(gst::ClockTime::from_nseconds(123_456)),
            gst::event::SegmentDone::new(gst::format::Bytes::from_u64(99)),
            gst::event::SegmentDone::new(gst::GenericFormattedValue::new(gst::Format::Time, -1)),
            gst::event::Protection::builder(
                "69f908af-4816-46ea-910c-cd5dcccb0a3a",
                &protection_data,
            )
            .origin("dash/mpd")
            .build(),
            gst::event::Protection::new("sys", &protection_data),
        ];
        for ev in evs {
            let s = downstream_event_to_string(&ev).expect("carried");
            let back = downstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.is_sticky(), ev.is_sticky());
            assert_same_fields(&ev, &back, &s);
        }
        for bad in [

            "stream-group-done, sticky=(boolean)true, group-id=(uint)0",
            "instant-rate-change, sticky=(boolean)true, rate=(double)0.0, flags=(uint)0",
            "segment-done, sticky=(boolean)false, format=(int)0, position=(int64)1",
            "segment-done, sticky=(boolean)false, format=(int)5, position=(int64)1000001",
            "segment-done, sticky=(boolean)false, format=(int)3, position=(int64)-2",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)abc",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)zz",
            "protection, sticky=(boolean)true, system-id=(string)x, data=(string)00, origin=(string)\"a b\"",
            "eos, sticky=(boolean)true",
        ] {
            assert!(downstream_event_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn natively_carried_and_out_of_band_events_are_not_turned_into_strings() {
        init();
        for ev in [
            gst::event::Eos::new(),
            gst::event::Caps::new(&i420_caps(2, 2)),
            gst::event::Segment::new(&gst::FormattedSegment::<gst::ClockTime>::new()),
            gst::event::StreamStart::new("s"),
            gst::event::FlushStart::new(),
            gst::event::CustomDownstreamOob::new(custom_event_structure()),
            gst::event::CustomBothOob::new(custom_event_structure()),
        ] {
            assert_eq!(downstream_event_to_string(&ev), None, "{:?}", ev.type_());
        }
        assert_eq!(
            upstream_event_to_string(&gst::event::Seek::new(
                1.0,
                gst::SeekFlags::FLUSH,
                gst::SeekType::Set,
                gst::ClockTime::ZERO,
                gst::SeekType::None,
                gst::ClockTime::NONE,
            )),
            None
        );
    }

    #[test]
    fn strings_over_the_limit_are_not_produced() {
        init();
        let big = gst::Structure::builder("big")
            .field("s", "x".repeat(MAX_STRING))
            .build();
        assert_eq!(
            downstream_event_to_string(&gst::event::CustomDownstream::new(big.clone())),
            None
        );
        assert_eq!(
            upstream_event_to_string(&gst::event::CustomUpstream::new(big)),
            None
        );
    }
}
