//! Timing across the process boundary.
//!
//! Both processes can read the same `CLOCK_MONOTONIC` (GStreamer's default
//! pipeline clock, `GstSystemClock`, *is* that clock). The sink therefore
//! tells the consumer, in the stream, the monotonic time of its running time
//! 0 (its pipeline's base time, translated to the monotonic clock when the
//! pipeline runs on another clock) and its pipeline latency. It sends them as
//! a tag list with two tags this plugin registers (`shmring-base-time`,
//! `shmring-latency`), in order with the frames, whenever they change and to
//! every new consumer; shmring's core stays free of GStreamer notions.
//!
//! A live `shmringsrc` then maps each timestamp `t` of the sink's segment to
//! its own running time:
//!
//! ```text
//! monotonic(t) = sink_running_time(t) + sink_base_time_monotonic
//! src_pts      = monotonic(t) + (src_clock_now - monotonic_now) - src_base_time
//! ```
//!
//! (the middle term is exactly 0 when the src's pipeline clock is the
//! monotonic system clock, and sampled otherwise), so a `sync=true` sink after
//! the src renders each frame at the moment the producer meant, plus the
//! latency the src reports (the sink's pipeline latency plus the src's
//! `latency` property). Without a base time from the sink (a producer that is
//! not a `shmringsink`), the first frame is anchored to its arrival and later
//! ones keep their distance from it.

use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::tags::Tag;

/// Tag: `CLOCK_MONOTONIC` time (ns) of the sender's running time 0.
pub(crate) enum BaseTimeTag {}

impl gst::tags::Tag<'_> for BaseTimeTag {
    type TagType = u64;
    const TAG_NAME: &'static glib::GStr = glib::gstr!("shmring-base-time");
}

impl gst::tags::CustomTag<'_> for BaseTimeTag {
    const FLAG: gst::TagFlag = gst::TagFlag::Meta;
    const NICK: &'static glib::GStr = glib::gstr!("shmring base time");
    const DESCRIPTION: &'static glib::GStr =
        glib::gstr!("CLOCK_MONOTONIC time (ns) of a shmringsink's running time 0");
}

/// Tag: the sender pipeline's latency (ns).
pub(crate) enum LatencyTag {}

impl gst::tags::Tag<'_> for LatencyTag {
    type TagType = u64;
    const TAG_NAME: &'static glib::GStr = glib::gstr!("shmring-latency");
}

impl gst::tags::CustomTag<'_> for LatencyTag {
    const FLAG: gst::TagFlag = gst::TagFlag::Meta;
    const NICK: &'static glib::GStr = glib::gstr!("shmring latency");
    const DESCRIPTION: &'static glib::GStr =
        glib::gstr!("Latency (ns) of the pipeline of a shmringsink");
}

/// Registers the plugin's tags (once per process).
pub(crate) fn register_tags() {
    if !gst::tags::tag_exists(BaseTimeTag::TAG_NAME) {
        gst::tags::register::<BaseTimeTag>();
    }
    if !gst::tags::tag_exists(LatencyTag::TAG_NAME) {
        gst::tags::register::<LatencyTag>();
    }
}

/// What a sink tells its consumer about its timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// `CLOCK_MONOTONIC` ns of the sender's running time 0.
    pub base_time: u64,
    /// The sender pipeline's latency (ns).
    pub latency: u64,
}

impl Timeline {
    /// The tag list string that carries it.
    pub(crate) fn to_tags_string(self) -> String {
        let mut tags = gst::TagList::new();
        {
            let t = tags.make_mut();
            t.add::<BaseTimeTag>(&self.base_time, gst::TagMergeMode::Replace);
            t.add::<LatencyTag>(&self.latency, gst::TagMergeMode::Replace);
        }
        tags.to_string()
    }
}

/// A tag list received from the peer, made safe to pass downstream, and the
/// sender's timeline if it carried one.
#[derive(Debug)]
pub(crate) struct PeerTags {
    /// Every value of a registered tag whose type matches the registration
    /// (nothing else: a hostile list could make other elements abort).
    pub tags: gst::TagList,
    /// The sender's timeline, if the list carried `shmring-base-time`.
    pub timeline: Option<Timeline>,
}

/// Parses a tag list's string form from the peer (`None` if it does not
/// parse) and keeps only well-formed tags.
pub(crate) fn parse_peer_tags(s: &str) -> Option<PeerTags> {
    let parsed = parse_tags(s)?;
    let mut tags = gst::TagList::new();
    let mut base_time = None;
    let mut latency = None;
    {
        let out = tags.make_mut();
        out.set_scope(parsed.scope());
        for (name, values) in parsed.iter_generic() {
            for v in values {
                if name == BaseTimeTag::TAG_NAME {
                    base_time = v.get::<u64>().ok();
                } else if name == LatencyTag::TAG_NAME {
                    latency = v.get::<u64>().ok();
                } else if gst::tags::tag_exists(name) {
                    // Checks the value's type against the registration.
                    let _ = out.add_value(name, v, gst::TagMergeMode::Append);
                }
            }
        }
    }
    Some(PeerTags {
        tags,
        timeline: base_time.map(|base_time| Timeline {
            base_time,
            latency: latency.unwrap_or(0),
        }),
    })
}

/// Parses a tag list's string form (`None` if it does not parse) with
/// `serialize`'s parser, never GStreamer's (which `g_critical`s on invalid
/// nested names). Values are checked against the tags' registrations; see
/// also [`parse_peer_tags`].
fn parse_tags(s: &str) -> Option<gst::TagList> {
    crate::serialize::tags_from_string(s).ok()
}

/// `CLOCK_MONOTONIC` now, in ns.
pub(crate) fn monotonic_now() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always
    // exists on Linux, so the call only writes `ts`.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// `clock`'s time minus `CLOCK_MONOTONIC`'s: exactly 0 for the monotonic
/// system clock (every pipeline's default), sampled for any other clock.
pub(crate) fn clock_minus_monotonic(clock: &gst::Clock) -> i128 {
    if let Some(sys) = clock.downcast_ref::<gst::SystemClock>() {
        if sys.property::<gst::ClockType>("clock-type") == gst::ClockType::Monotonic
            && clock.master().is_none()
        {
            return 0;
        }
    }
    let now = clock.time().map_or(0, |t| t.nseconds());
    i128::from(now) - i128::from(monotonic_now())
}

/// A pipeline clock's offset from `CLOCK_MONOTONIC`, cached: the clock (by
/// address), the offset, and when it was sampled. Exact (0) for the
/// monotonic system clock; resampled every 100 ms for another clock.
#[derive(Debug, Default)]
pub(crate) struct ClockOffset(Option<(usize, i128, Instant)>);

impl ClockOffset {
    /// The timeline of a sender whose pipeline runs on `clock` from `base`
    /// with `latency`; `None` if its base time lies before the monotonic
    /// clock's 0.
    pub(crate) fn timeline(
        &mut self,
        clock: &gst::Clock,
        base: gst::ClockTime,
        latency: gst::ClockTime,
    ) -> Option<Timeline> {
        let key = clock.as_ptr() as usize;
        // Once per clock (per 100 ms for a clock that is not the monotonic
        // one): reading the clock's type is a GObject property lookup, too
        // slow for every small audio buffer.
        let offset = match self.0 {
            Some((k, off, at))
                if k == key && (off == 0 || at.elapsed() < Duration::from_millis(100)) =>
            {
                off
            }
            _ => {
                let off = clock_minus_monotonic(clock);
                self.0 = Some((key, off, Instant::now()));
                off
            }
        };
        let base_time = u64::try_from(i128::from(base.nseconds()) - offset).ok()?;
        Some(Timeline {
            base_time,
            latency: latency.nseconds(),
        })
    }
}

/// Maps a time of the sender's running time onto the receiver's running time
/// (see the module docs); negative when it lies before the receiver's start.
pub(crate) fn map_running_time(
    sender_running_time: i128,
    sender_base_monotonic: u64,
    receiver_clock_minus_monotonic: i128,
    receiver_base_time: u64,
) -> i128 {
    sender_running_time + i128::from(sender_base_monotonic) + receiver_clock_minus_monotonic
        - i128::from(receiver_base_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_round_trips_through_a_tag_string_and_leaves_other_tags() {
        gst::init().expect("gst init");
        register_tags();
        let t = Timeline {
            base_time: 123_456_789_012,
            latency: 33_000_000,
        };
        let got = parse_peer_tags(&t.to_tags_string()).expect("parses");
        assert_eq!(got.timeline, Some(t));
        assert_eq!(got.tags.n_tags(), 0);

        let got = parse_peer_tags("taglist, title=(string)hello;").expect("parses");
        assert_eq!(got.timeline, None);
        assert_eq!(
            got.tags
                .get::<gst::tags::Title>()
                .map(|v| v.get().to_owned()),
            Some("hello".to_owned())
        );
        assert!(parse_peer_tags("not a tag list {{").is_none());
        assert!(parse_peer_tags("taglist, {{").is_none());
    }

    #[test]
    fn hostile_tags_are_filtered() {
        gst::init().expect("gst init");
        register_tags();
        // Wrong types, an unregistered tag, a list where one value is allowed.
        let got = parse_peer_tags(
            "taglist, title=(int)5, no-such-tag=(string)x, bitrate=(uint){ 1, 2 }, \
             shmring-base-time=(string)nope, artist=(string){ a, b };",
        )
        .expect("parses");
        assert_eq!(got.timeline, None);
        assert!(got.tags.generic("title").is_none());
        assert!(got.tags.generic("no-such-tag").is_none());
        assert_eq!(got.tags.size_by_name("artist"), 2);
        assert!(got.tags.size_by_name("bitrate") <= 1);
    }

    #[test]
    fn running_time_maps_through_the_monotonic_clock() {
        // Sender started at monotonic 100 s, receiver at 101 s: the sender's
        // running time 5 s is the receiver's 4 s.
        let s = 1_000_000_000i128;
        assert_eq!(
            map_running_time(5 * s, 100 * s as u64, 0, 101 * s as u64),
            4 * s
        );
        // A receiver clock 7 s ahead of the monotonic clock.
        assert_eq!(
            map_running_time(5 * s, 100 * s as u64, 7 * s, 108 * s as u64),
            4 * s
        );
        assert!(map_running_time(0, 100 * s as u64, 0, 101 * s as u64) < 0);
    }

    #[test]
    fn the_default_system_clock_is_the_monotonic_clock() {
        gst::init().expect("gst init");
        let clock = gst::SystemClock::obtain();
        assert_eq!(clock_minus_monotonic(&clock), 0);
        let a = monotonic_now();
        let b = clock.time().expect("time").nseconds();
        let c = monotonic_now();
        assert!(a <= b && b <= c, "{a} {b} {c}");
    }
}
