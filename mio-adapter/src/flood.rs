//! [`FloodLimiter`]: the per-source count of wake-ups that brought nothing,
//! which decides when a flooding peer's wake-up fd is paused (see
//! [`FloodPolicy`]), and the [`WakeStats`] it keeps.

use std::time::{Duration, Instant};

use crate::FloodPolicy;

/// Rate limiter of wake-ups that brought nothing (see [`FloodPolicy`]).
#[derive(Debug)]
pub(crate) struct FloodLimiter {
    policy: FloodPolicy,
    window_start: Option<Instant>,
    empties: u32,
    triggered: bool,
    pause: Duration,
    pub(crate) paused_until: Option<Instant>,
    pub(crate) stats: WakeStats,
}

/// Counters of the wake-up handling of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WakeStats {
    /// Calls that followed an armed sleep (wake-ups).
    pub wakeups: u64,
    /// Wake-ups that found nothing to do (no item, no free slot): spurious
    /// races, or a peer flooding the wake-up fd.
    pub empty_wakeups: u64,
    /// Times the wake-up fd was paused because of too many empty wake-ups.
    pub throttles: u64,
}

impl FloodLimiter {
    pub(crate) fn new(policy: FloodPolicy) -> Self {
        FloodLimiter {
            pause: policy.pause,
            policy,
            window_start: None,
            empties: 0,
            triggered: false,
            paused_until: None,
            stats: WakeStats::default(),
        }
    }

    pub(crate) fn wakeup(&mut self) {
        self.stats.wakeups += 1;
    }

    /// Records an empty wake-up at `now`; returns the instant until which the
    /// wake-up fd must stay paused if this one crossed the limit.
    pub(crate) fn empty(&mut self, now: Instant) -> Option<Instant> {
        self.stats.empty_wakeups += 1;
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= self.policy.window {
            if !self.triggered {
                self.pause = self.policy.pause;
            }
            self.triggered = false;
            self.window_start = Some(now);
            self.empties = 0;
        }
        self.empties += 1;
        if self.empties <= self.policy.max_empty_wakeups {
            return None;
        }
        let until = now + self.pause;
        self.pause = (self.pause * 2).min(self.policy.max_pause.max(self.policy.pause));
        self.empties = 0;
        self.triggered = true;
        self.window_start = Some(until);
        self.stats.throttles += 1;
        self.paused_until = Some(until);
        Some(until)
    }
}
