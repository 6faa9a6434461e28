//! `GstVideoTimeCodeMeta`: a time code (rate, flags, hours to frames,
//! field count) and its optional daily jam, checked valid before it is
//! attached.

use gst::glib;

use super::super::text::{Item, Val};
use super::super::{invalid, SerdeError};

/// The time code meta of `buffer` as an item, if the receiving side would
/// accept it.
pub(super) fn item(buffer: &gst::BufferRef) -> Option<Item> {
    timecode_meta_item(buffer).filter(|it| check_timecode_meta(it).is_ok())
}

fn timecode_meta_item(buffer: &gst::BufferRef) -> Option<Item> {
    let m = buffer.meta::<gst_video::VideoTimeCodeMeta>()?;
    // SAFETY: `m` borrows a GstVideoTimeCodeMeta on `buffer`; reading its
    // plain fields is sound (gstreamer-rs's accessors are not used: they
    // panic on a zero fps denominator).
    let tc = unsafe { &(*m.as_ptr()).tc };
    let mut it = Item::new("timecode-meta")
        .with("fps-n", Val::UInt(tc.config.fps_n))
        .with("fps-d", Val::UInt(tc.config.fps_d))
        .with("flags", Val::UInt(tc.config.flags))
        .with("hours", Val::UInt(tc.hours))
        .with("minutes", Val::UInt(tc.minutes))
        .with("seconds", Val::UInt(tc.seconds))
        .with("frames", Val::UInt(tc.frames))
        .with("field-count", Val::UInt(tc.field_count));
    if !tc.config.latest_daily_jam.is_null() {
        // SAFETY: a non-NULL `latest_daily_jam` is a GDateTime the meta
        // holds a reference to; we take our own.
        let jam: glib::DateTime =
            unsafe { glib::translate::from_glib_none(tc.config.latest_daily_jam) };
        it = it
            .with(
                "jam-unix-usec",
                Val::Int64(
                    jam.to_unix()
                        .checked_mul(1_000_000)?
                        .checked_add(i64::from(jam.microsecond()))?,
                ),
            )
            .with(
                "jam-utc-offset",
                Val::Int(i32::try_from(jam.utc_offset().as_seconds()).ok()?),
            );
    }
    Some(it)
}

/// Checks a `timecode-meta` item: a valid rate, field count, daily jam
/// and time code.
pub(super) fn check_timecode_meta(it: &Item) -> Result<gst_video::ValidVideoTimeCode, SerdeError> {
    it.check_fields(&[
        "fps-n",
        "fps-d",
        "flags",
        "hours",
        "minutes",
        "seconds",
        "frames",
        "field-count",
        "jam-unix-usec",
        "jam-utc-offset",
    ])?;
    let fps_n = it.u32("fps-n")?;
    let fps_d = it.u32("fps-d")?;
    if fps_n == 0 || fps_d == 0 || fps_n > i32::MAX as u32 || fps_d > i32::MAX as u32 {
        return Err(invalid(format!("timecode-meta: fps {fps_n}/{fps_d}")));
    }
    let field_count = it.u32("field-count")?;
    if field_count > 2 {
        return Err(invalid(format!("timecode-meta: field count {field_count}")));
    }
    let jam = if it.both_or_neither(
        "jam-unix-usec",
        "jam-utc-offset",
        "timecode-meta: half a daily jam",
    )? {
        Some(daily_jam(
            it.i64("jam-unix-usec")?,
            it.i32("jam-utc-offset")?,
        )?)
    } else {
        None
    };
    let tc = gst_video::VideoTimeCode::new(
        gst::Fraction::new_raw(fps_n as i32, fps_d as i32),
        jam.as_ref(),
        gst_video::VideoTimeCodeFlags::from_bits_truncate(it.u32("flags")?),
        it.u32("hours")?,
        it.u32("minutes")?,
        it.u32("seconds")?,
        it.u32("frames")?,
        field_count,
    );
    gst_video::ValidVideoTimeCode::try_from(tc)
        .map_err(|_| invalid("timecode-meta: invalid time code"))
}

/// The daily jam at `usec` microseconds since the Unix epoch, in the time
/// zone `offset` seconds from UTC.
fn daily_jam(usec: i64, offset: i32) -> Result<glib::DateTime, SerdeError> {
    if !(-86_399..=86_399).contains(&offset) {
        return Err(invalid(format!("timecode-meta: UTC offset {offset} s")));
    }
    let (sign, abs) = if offset < 0 {
        ('-', -offset)
    } else {
        ('+', offset)
    };
    let tz_name = format!(
        "{sign}{:02}:{:02}:{:02}",
        abs / 3600,
        abs / 60 % 60,
        abs % 60
    );
    #[allow(deprecated)]
    let tz = glib::TimeZone::new(Some(&tz_name));
    glib::DateTime::from_unix_utc(usec.div_euclid(1_000_000))
        .and_then(|d| {
            d.add(glib::TimeSpan::from_microseconds(
                usec.rem_euclid(1_000_000),
            ))
        })
        .and_then(|d| d.to_timezone(&tz))
        .map_err(|_| invalid("timecode-meta: daily jam out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;

    #[test]
    fn timecode_meta_round_trips_with_its_daily_jam() {
        init();
        #[allow(deprecated)]
        let tz = glib::TimeZone::new(Some("+02:00"));
        let jam = glib::DateTime::new(&tz, 2024, 5, 6, 7, 8, 9.25).expect("date");
        for jam in [Some(jam), None] {
            let tc = gst_video::VideoTimeCode::new(
                gst::Fraction::new(30000, 1001),
                jam.as_ref(),
                gst_video::VideoTimeCodeFlags::DROP_FRAME,
                1,
                2,
                3,
                4,
                0,
            );
            let tc = gst_video::ValidVideoTimeCode::try_from(tc).expect("valid");
            let mut src = gst::Buffer::with_size(10).expect("buffer");
            gst_video::VideoTimeCodeMeta::add(src.get_mut().expect("writable"), &tc);
            let dst = round_trip_metas(&src, None);
            let got = dst
                .meta::<gst_video::VideoTimeCodeMeta>()
                .expect("meta")
                .tc();
            assert_eq!(got.to_string(), tc.to_string());
            assert_eq!(
                (got.fps(), got.flags(), got.field_count()),
                (tc.fps(), tc.flags(), 0)
            );
            match (got.latest_daily_jam(), jam) {
                (Some(g), Some(j)) => {
                    assert_eq!(g.to_unix(), j.to_unix());
                    assert_eq!(g.microsecond(), j.microsecond());
                    assert_eq!(g.utc_offset(), j.utc_offset());
                }
                (None, None) => {}
                other => panic!("jam {other:?}"),
            }
        }
        let bad = "timecode-meta, fps-n=(uint)25, fps-d=(uint)1, flags=(uint)0, hours=(uint)25, \
                   minutes=(uint)0, seconds=(uint)0, frames=(uint)0, field-count=(uint)0";
        assert!(apply_new(1, bad, None).0.is_err());
        let bad = bad
            .replace("hours=(uint)25", "hours=(uint)1")
            .replace("fps-d=(uint)1", "fps-d=(uint)0");
        assert!(apply_new(1, &bad, None).0.is_err());
    }
}
