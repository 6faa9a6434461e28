//! [`QosAggregate`]: which consumers' QoS events the sink forwards
//! upstream when several consumers report.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One consumer's latest QoS report.
#[derive(Debug, Clone, Copy)]
struct QosReport {
    proportion: f64,
    at: Instant,
}

/// Decides which consumers' QoS events go upstream when several consumers
/// report.
///
/// Rule: a consumer's QoS event is forwarded when its proportion is at least
/// every other consumer's latest proportion reported within the last
/// [`QosAggregate::WINDOW`] (1 s). So upstream follows the slowest live
/// consumer (the highest proportion: the one that most needs upstream to
/// drop or speed up), and the reports of consumers that keep up are
/// swallowed while a slower one is reporting; once the slow consumer has been
/// silent for a second (or is [forgotten](QosAggregate::forget)), the others'
/// reports go through again. With a single consumer every report is
/// forwarded. Memory: one entry per consumer that reported.
#[derive(Debug, Default)]
pub(crate) struct QosAggregate {
    latest: HashMap<u64, QosReport>,
}

impl QosAggregate {
    /// How long a consumer's report counts against the others'.
    pub(crate) const WINDOW: Duration = Duration::from_secs(1);

    /// No report yet.
    // The sink builds its aggregate with `Default`; the tests use this.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records consumer `consumer`'s QoS report (the `proportion` of its QoS
    /// event; the rule needs neither its diff nor its timestamp, which the
    /// forwarded event carries as they are) made at `now`; `true` if that
    /// event should be forwarded upstream. A non-finite or negative
    /// proportion is never forwarded.
    pub(crate) fn offer(&mut self, consumer: u64, proportion: f64, now: Instant) -> bool {
        if !proportion.is_finite() || proportion < 0.0 {
            return false;
        }
        self.latest
            .retain(|_, r| now.saturating_duration_since(r.at) <= Self::WINDOW);
        self.latest.insert(
            consumer,
            QosReport {
                proportion,
                at: now,
            },
        );
        self.latest
            .iter()
            .all(|(&c, r)| c == consumer || r.proportion <= proportion)
    }

    /// Like [`offer`](Self::offer) for a QoS event; `false` for any other
    /// event.
    pub(crate) fn offer_event(&mut self, consumer: u64, ev: &gst::EventRef, now: Instant) -> bool {
        match ev.view() {
            gst::EventView::Qos(q) => {
                let (_, proportion, _, _) = q.get();
                self.offer(consumer, proportion, now)
            }
            _ => false,
        }
    }

    /// Drops a consumer that went away: its reports no longer count.
    pub(crate) fn forget(&mut self, consumer: u64) {
        self.latest.remove(&consumer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serialize::test_support::*;

    #[test]
    fn qos_aggregate_forwards_the_slowest_consumer_of_the_last_second() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut q = QosAggregate::new();
        // One consumer: every report goes through.
        assert!(q.offer(1, 0.8, ms(0)));
        assert!(q.offer(1, 1.5, ms(10)));
        // A second, faster consumer is swallowed while 1 is slower...
        assert!(!q.offer(2, 1.0, ms(20)));
        // ...a slower report from it goes through...
        assert!(q.offer(2, 2.0, ms(30)));
        // ...and then 1's (now faster) reports are swallowed.
        assert!(!q.offer(1, 1.2, ms(40)));
        // Once 2 has been silent for over a second, 1 goes through again.
        assert!(!q.offer(1, 1.2, ms(1030)));
        assert!(q.offer(1, 1.2, ms(1031)));
        // A consumer that goes away stops counting at once.
        assert!(q.offer(2, 3.0, ms(1100)));
        assert!(!q.offer(1, 1.0, ms(1110)));
        q.forget(2);
        assert!(q.offer(1, 1.0, ms(1120)));
        // Nonsense is never forwarded.
        assert!(!q.offer(3, f64::NAN, ms(1130)));
        assert!(!q.offer(3, -1.0, ms(1130)));
        // Events.
        init();
        let ev = gst::event::Qos::new(gst::QOSType::Underflow, 9.0, 0, gst::ClockTime::ZERO);
        assert!(q.offer_event(4, &ev, ms(1140)));
        assert!(!q.offer_event(4, &gst::event::Reconfigure::new(), ms(1140)));
    }
}
