//! The consumers' upstream events (force-key-unit, navigation, QoS,
//! reconfigure, custom), read on the acceptor thread and pushed to this
//! pipeline's upstream; with several consumers, only the slowest one's QoS.

use std::sync::Mutex;
use std::time::Instant;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use shmring::frames::UpstreamReceiver;

use super::imp::{ShmringSink, CAT};
use crate::serialize::{self, QosAggregate};
use crate::util::lock;

/// Most upstream events read from one consumer per round: a consumer that
/// floods cannot keep the acceptor thread from its other work.
const EVENTS_PER_ROUND: usize = 16;

/// Each consumer's upstream receiver, and whose QoS goes upstream.
#[derive(Default)]
pub(super) struct Upstream {
    /// (pid, receiver) of each consumer.
    receivers: Mutex<Vec<(i32, UpstreamReceiver)>>,
    /// Which consumer's QoS goes upstream (the slowest one's, see
    /// [`QosAggregate`]).
    qos: Mutex<QosAggregate>,
}

impl Upstream {
    /// A consumer was served: its events are read from now on.
    pub(super) fn add(&self, pid: i32, rx: UpstreamReceiver) {
        lock(&self.receivers).push((pid, rx));
    }

    /// Forgets every consumer (`stop`).
    pub(super) fn clear(&self) {
        lock(&self.receivers).clear();
    }
}

impl ShmringSink {
    /// Pushes the upstream events consumers sent to this pipeline's
    /// upstream (at most [`EVENTS_PER_ROUND`] per consumer per call).
    pub(super) fn forward_upstream(&self) {
        let (mut events, gone) = self.read_upstream();
        let now = Instant::now();
        {
            let mut qos = lock(&self.upstream.qos);
            for pid in gone {
                qos.forget(pid as u64);
            }
            // With several consumers, upstream adapts to the slowest one.
            events.retain(|(pid, ev)| {
                ev.type_() != gst::EventType::Qos || qos.offer_event(*pid as u64, ev, now)
            });
        }
        let pad = self.obj().sink_pad().clone();
        for (pid, ev) in events {
            gst::debug!(CAT, imp = self, "upstream event from pid {pid}: {ev:?}");
            let _ = pad.push_event(ev);
        }
    }

    /// The events that arrived, by pid, and the pids of the consumers whose
    /// upstream link is gone (their receivers are dropped).
    fn read_upstream(&self) -> (Vec<(i32, gst::Event)>, Vec<i32>) {
        let mut events = Vec::new();
        let mut gone = Vec::new();
        lock(&self.upstream.receivers).retain(|(pid, rx)| {
            for _ in 0..EVENTS_PER_ROUND {
                match rx.try_recv() {
                    Ok(Some(s)) => match serialize::upstream_event_from_string(&s) {
                        Ok(ev) => events.push((*pid, ev)),
                        Err(e) => {
                            gst::warning!(
                                CAT,
                                imp = self,
                                "pid {pid}: upstream event refused ({e})"
                            )
                        }
                    },
                    Ok(None) => return true,
                    Err(shmring::Error::Disconnected) => {
                        gone.push(*pid);
                        return false;
                    }
                    Err(e) => {
                        gst::warning!(CAT, imp = self, "pid {pid}: {e}");
                        gone.push(*pid);
                        return false;
                    }
                }
            }
            true
        });
        (events, gone)
    }
}
