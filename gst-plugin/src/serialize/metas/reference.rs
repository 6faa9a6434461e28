//! `GstReferenceTimestampMeta`: reference caps of one structure (values
//! of carried types only), a timestamp and an optional duration.

use super::super::caps::system_memory_only;
use super::super::gvalue::{item_from_structure, item_to_structure};
use super::super::text::{opt_time, time_from, Item, Val};
use super::super::{invalid, SerdeError, MAX_REFERENCE_METAS};

/// The first [`MAX_REFERENCE_METAS`] reference timestamp metas of `buffer`
/// as items, those whose caps do not cross left out.
pub(super) fn items(buffer: &gst::BufferRef) -> Vec<Item> {
    buffer
        .iter_meta::<gst::ReferenceTimestampMeta>()
        .take(MAX_REFERENCE_METAS)
        .filter_map(|m| item(&m))
        .collect()
}

fn item(m: &gst::ReferenceTimestampMeta) -> Option<Item> {
    let caps = m.reference();
    if caps.size() != 1 || caps.is_any() {
        return None;
    }
    let features_ok = caps.features(0).is_none_or(system_memory_only);
    let s = caps.structure(0).filter(|_| features_ok)?;
    let reference = item_from_structure(s, 1)?;
    Some(
        Item::new("reference-timestamp-meta")
            .with("reference", Val::Struct(Box::new(reference)))
            .with("timestamp", Val::UInt64(m.timestamp().nseconds()))
            .with("duration", opt_time(m.duration())),
    )
}

/// Checks a `reference-timestamp-meta` item: its reference caps, timestamp
/// (not none) and duration.
pub(super) fn check(
    it: &Item,
) -> Result<(gst::Caps, gst::ClockTime, Option<gst::ClockTime>), SerdeError> {
    it.check_fields(&["reference", "timestamp", "duration"])?;
    let reference = item_to_structure(it.item("reference")?, 1)?;
    let ts = time_from(it.u64("timestamp")?)
        .ok_or_else(|| invalid("reference-timestamp-meta: no timestamp"))?;
    let duration = time_from(it.u64("duration")?);
    let mut caps = gst::Caps::new_empty();
    caps.make_mut().append_structure(reference);
    Ok((caps, ts, duration))
}

#[cfg(test)]
mod tests {
    use crate::serialize::test_support::*;

    #[test]
    fn reference_timestamp_metas_round_trip() {
        init();
        let ntp = gst::Caps::builder("timestamp/x-ntp")
            .field("host", "pool.ntp.org")
            .field("port", 123i32)
            .build();
        let unix = gst::Caps::new_empty_simple("timestamp/x-unix");
        let mut src = gst::Buffer::with_size(10).expect("buffer");
        {
            let b = src.get_mut().expect("writable");
            gst::ReferenceTimestampMeta::add(
                b,
                &ntp,
                gst::ClockTime::from_nseconds(123_456_789),
                gst::ClockTime::from_mseconds(40),
            );
            gst::ReferenceTimestampMeta::add(
                b,
                &unix,
                gst::ClockTime::from_seconds(1_700_000_000),
                None,
            );
        }
        let mut dst = round_trip_metas(&src, None);
        let got: Vec<_> = dst
            .iter_meta::<gst::ReferenceTimestampMeta>()
            .map(|m| (m.reference().to_owned(), m.timestamp(), m.duration()))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    ntp,
                    gst::ClockTime::from_nseconds(123_456_789),
                    Some(gst::ClockTime::from_mseconds(40))
                ),
                (unix, gst::ClockTime::from_seconds(1_700_000_000), None),
            ]
        );
        let bad = "reference-timestamp-meta, reference=(structure)[timestamp/x-unix], timestamp=(uint64)18446744073709551615, duration=(uint64)1";
        assert!(apply_to(&mut dst, bad, None).is_err());
    }
}
