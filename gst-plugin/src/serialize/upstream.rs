//! Upstream events going back from a consumer to the sink (force-key-unit,
//! navigation, QoS, reconfigure, custom): their strings and the checked
//! rebuild of the peer's, navigation structures checked as GStreamer's
//! parsers read them.

use glib::translate::IntoGlib as _;
use gst::glib;

use super::downstream::{custom_item, custom_structure};
use super::parser::parse_one;
use super::text::{bounded, opt_time, print_items, time_from, Item, Val};
use super::{invalid, SerdeError};

/// The structure name navigation events carry.
pub(super) const NAVIGATION: &str = "application/x-gst-navigation";

/// Checks a navigation event's structure as GStreamer's parsers read it
/// (`gst_navigation_event_parse_*` `g_warning` on a missing field, and C
/// code converts coordinates to integers): a known event type, its fields
/// present with their types, finite coordinates.
fn check_navigation(s: &gst::StructureRef) -> Result<(), SerdeError> {
    if s.name() != NAVIGATION {
        return Err(invalid(format!(
            "navigation: structure named {:?}",
            s.name()
        )));
    }
    let event = s
        .get::<&str>("event")
        .map_err(|_| invalid("navigation: no event string"))?;
    let xy: &[&str] = &["pointer_x", "pointer_y"];
    let (coords, ints, uints, strs): (&[&str], &[&str], &[&str], &[&str]) = match event {
        "key-press" | "key-release" => (&[], &[], &[], &["key"]),
        "mouse-move" => (xy, &[], &[], &[]),
        "mouse-button-press" | "mouse-button-release" => (xy, &["button"], &[], &[]),
        "mouse-scroll" => (
            &[
                "pointer_x",
                "pointer_y",
                "delta_pointer_x",
                "delta_pointer_y",
            ],
            &[],
            &[],
            &[],
        ),
        "command" => (&[], &[], &["command-code"], &[]),
        "touch-down" | "touch-motion" | "touch-up" => (xy, &[], &["identifier"], &[]),
        "touch-frame" | "touch-cancel" => (&[], &[], &[], &[]),
        e => return Err(invalid(format!("navigation: unknown event {e:?}"))),
    };
    let missing = |f: &str| invalid(format!("navigation: {event} without a valid {f:?}"));
    for f in coords {
        if !s.get::<f64>(*f).is_ok_and(f64::is_finite) {
            return Err(missing(f));
        }
    }
    for f in ints {
        s.get::<i32>(*f).map_err(|_| missing(f))?;
    }
    for f in uints {
        s.get::<u32>(*f).map_err(|_| missing(f))?;
    }
    for f in strs {
        s.get::<&str>(*f).map_err(|_| missing(f))?;
    }
    // Pressure: 0 to 1, or NaN when unknown.
    if (event == "touch-down" || event == "touch-motion") && s.get::<f64>("pressure").is_err() {
        return Err(missing("pressure"));
    }
    if s.has_field("state") && s.get::<gst_video::NavigationModifierType>("state").is_err() {
        return Err(missing("state"));
    }
    Ok(())
}

/// An upstream event from a consumer, as a string; `None` for events that are
/// not carried. Carried: force-key-unit (upstream form: running time,
/// all-headers, count), navigation (its structure, if well-formed: see
/// `check_navigation`), QoS (type, proportion,
/// diff, timestamp), reconfigure, custom upstream and custom both.
pub(crate) fn upstream_event_to_string(ev: &gst::EventRef) -> Option<String> {
    use gst::EventView;
    let item = match ev.view() {
        EventView::CustomUpstream(c) => {
            if gst_video::ForceKeyUnitEvent::is(ev) {
                let f = gst_video::UpstreamForceKeyUnitEvent::parse(ev).ok()?;
                Item::new("force-key-unit")
                    .with("running-time", opt_time(f.running_time))
                    .with("all-headers", Val::Bool(f.all_headers))
                    .with("count", Val::UInt(f.count))
            } else {
                custom_item("custom-upstream", c.structure())?
            }
        }
        EventView::CustomBoth(c) => custom_item("custom-both", c.structure())?,
        EventView::Navigation(n) => {
            check_navigation(n.structure()?).ok()?;
            custom_item("navigation", n.structure())?
        }
        EventView::Qos(q) => {
            let (ty, proportion, diff, ts) = q.get();
            if !proportion.is_finite() {
                return None;
            }
            Item::new("qos")
                .with("type", Val::Int(ty.into_glib()))
                .with("proportion", Val::Double(proportion))
                .with("diff", Val::Int64(diff))
                .with("timestamp", opt_time(ts))
        }
        EventView::Reconfigure(_) => Item::new("reconfigure"),
        _ => return None,
    };
    bounded(print_items(&[item]))
}

/// Rebuilds an upstream event from [`upstream_event_to_string`]'s string
/// (from the peer: checked, see the module docs), with gstreamer-rs's typed
/// constructors.
pub(crate) fn upstream_event_from_string(s: &str) -> Result<gst::Event, SerdeError> {
    let it = parse_one(s)?;
    let custom = |it: &Item| custom_structure(it, &["structure"]);
    Ok(match it.name.as_str() {
        "force-key-unit" => {
            it.check_fields(&["running-time", "all-headers", "count"])?;
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .running_time(time_from(it.u64("running-time")?))
                .all_headers(it.bool("all-headers")?)
                .count(it.u32("count")?)
                .build()
        }
        "navigation" => {
            let s = custom(&it)?;
            check_navigation(&s)?;
            gst::event::Navigation::new(s)
        }
        "qos" => {
            it.check_fields(&["type", "proportion", "diff", "timestamp"])?;
            let ty = match it.i32("type")? {
                0 => gst::QOSType::Overflow,
                1 => gst::QOSType::Underflow,
                2 => gst::QOSType::Throttle,
                t => return Err(invalid(format!("qos: type {t}"))),
            };
            let proportion = it.f64("proportion")?;
            if proportion < 0.0 {
                return Err(invalid(format!("qos: proportion {proportion}")));
            }
            let diff = it.i64("diff")?;
            let ts = it.u64("timestamp")?;
            // gst_event_new_qos asserts: diff >= 0 or timestamp + diff >= 0.
            if diff < 0 && diff.unsigned_abs() > ts {
                return Err(invalid(format!("qos: diff {diff} before timestamp {ts}")));
            }
            gst::event::Qos::new(ty, proportion, diff, time_from(ts))
        }
        "reconfigure" => {
            it.check_fields(&[])?;
            gst::event::Reconfigure::new()
        }
        "custom-upstream" => gst::event::CustomUpstream::new(custom(&it)?),
        "custom-both" => gst::event::CustomBoth::new(custom(&it)?),
        n => return Err(invalid(format!("unknown upstream event {n:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;

    #[test]
    fn upstream_events_round_trip() {
        init();
        let evs = [
            gst_video::UpstreamForceKeyUnitEvent::builder()
                .running_time(gst::ClockTime::from_mseconds(1234))
                .all_headers(true)
                .count(3)
                .build(),
            gst_video::UpstreamForceKeyUnitEvent::builder().build(),
            gst::event::Navigation::new(navigation_structure()),
            gst::event::Qos::new(
                gst::QOSType::Underflow,
                1.25,
                -5_000,
                gst::ClockTime::from_mseconds(100),
            ),
            gst::event::Qos::new(
                gst::QOSType::Throttle,
                0.5,
                40_000_000,
                gst::ClockTime::NONE,
            ),
            gst::event::Reconfigure::new(),
            gst::event::CustomUpstream::new(custom_event_structure()),
            gst::event::CustomBoth::new(custom_event_structure()),
        ];
        for ev in evs {
            let s = upstream_event_to_string(&ev).expect("carried");
            let back = upstream_event_from_string(&s).expect("rebuilt");
            assert_eq!(back.type_(), ev.type_(), "{s}");
            assert_eq!(back.structure(), ev.structure(), "{s}");
        }
        let fku = upstream_event_from_string(
            "force-key-unit, running-time=(uint64)5, all-headers=(boolean)true, count=(uint)7",
        )
        .expect("fku");
        assert_eq!(
            gst_video::UpstreamForceKeyUnitEvent::parse(&fku).expect("parses"),
            gst_video::UpstreamForceKeyUnitEvent {
                running_time: Some(gst::ClockTime::from_nseconds(5)),
                all_headers: true,
                count: 7
            }
        );
        for bad in [
            "qos, type=(int)1, proportion=(double)1.0, diff=(int64)-101, timestamp=(uint64)100",
            "qos, type=(int)3, proportion=(double)1.0, diff=(int64)0, timestamp=(uint64)0",
            "qos, type=(int)1, proportion=(double)-1.0, diff=(int64)0, timestamp=(uint64)0",
            "navigation, structure=(structure)[not-navigation, a=(int)1]",
            "reconfigure, x=(int)1",
            "seek, rate=(double)1.0",
        ] {
            assert!(upstream_event_from_string(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn navigation_events_must_be_well_formed() {
        init();
        let touch = gst::Structure::builder(NAVIGATION)
            .field("event", "touch-down")
            .field("identifier", 3u32)
            .field("pointer_x", 1.0f64)
            .field("pointer_y", 2.0f64)
            .field("pressure", f64::NAN)
            .build();
        let s = upstream_event_to_string(&gst::event::Navigation::new(touch)).expect("carried");
        let back = upstream_event_from_string(&s).expect("rebuilt");
        let st = back.structure().expect("structure");
        assert!(st.get::<f64>("pressure").expect("pressure").is_nan());
        assert_eq!(st.get::<u32>("identifier").expect("id"), 3);
        let nav = |fields: &str| {
            format!("navigation, structure=(structure)[application/x-gst-navigation, {fields}]")
        };
        for bad in [
            nav("event=(string)mouse-move, pointer_x=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(double)NaN, pointer_y=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(double)inf, pointer_y=(double)1.0"),
            nav("event=(string)mouse-move, pointer_x=(int)1, pointer_y=(double)1.0"),
            nav("event=(string)mouse-button-press, pointer_x=(double)1.0, pointer_y=(double)1.0"),
            nav("event=(string)key-press"),
            nav("event=(string)command, command-code=(int)1"),
            nav("event=(string)touch-down, identifier=(uint)1, pointer_x=(double)1.0, pointer_y=(double)1.0"),
            nav("event=(string)no-such-event"),
            nav("pointer_x=(double)1.0"),
            nav("event=(string)touch-frame, state=(int)1"),
            "navigation, structure=(structure)[not-navigation, event=(string)touch-frame]".to_owned(),
        ] {
            assert!(upstream_event_from_string(&bad).is_err(), "{bad}");
        }
        assert!(upstream_event_from_string(&nav("event=(string)touch-frame")).is_ok());
        // The sending side does not send what the receiving side refuses.
        let broken = gst::Structure::builder(NAVIGATION)
            .field("event", "mouse-move")
            .build();
        assert_eq!(
            upstream_event_to_string(&gst::event::Navigation::new(broken)),
            None
        );
    }
}
