//! [`WakeCycle`]: the wake-up state machine of *one* source, shared by
//! [`MioConsumer`](crate::MioConsumer), [`MioProducer`](crate::MioProducer)
//! and [`MioFrameReceiver`](crate::MioFrameReceiver): which call follows an
//! armed sleep, pausing the wake-up fd after a flood, the drain loop of the
//! receiving sources (drain the signal, deliver, `prepare_sleep`, liveness),
//! and the delivery of what a departed peer left behind. (The loop over
//! *many* sources is [`ConsumerDriver`](crate::ConsumerDriver), in
//! `driver.rs`.)
//!
//! The endpoints plug in through two small traits: [`Endpoint`] (the wake-up
//! fd and the link) and [`Deliver`] (hand up to N units to a callback).

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use crate::flood::FloodLimiter;
use crate::registration::{check_interests, Registration};
use crate::{FloodPolicy, Readiness, Result};

/// An endpoint with a wake-up fd and a link to its peer.
pub(crate) trait Endpoint {
    /// Empties the wake-up fd (one `read`).
    fn drain_signal(&self) -> shmring::Result<()>;
    /// Announces a sleep: `Ok(true)` if nothing is to be done after announcing
    /// it (the peer will write the wake-up fd), `Ok(false)` if there is work.
    fn prepare_sleep(&mut self) -> shmring::Result<bool>;
    /// `false` once the peer is known to be gone (one `recv`).
    fn is_peer_alive(&mut self) -> bool;
}

/// A receiving endpoint that hands units (items, messages) to a callback `F`.
pub(crate) trait Deliver<F>: Endpoint {
    /// Hands up to `max` units to `f`, in order; returns how many. Fewer than
    /// `max` means none are left right now.
    fn deliver(&mut self, f: &mut F, max: usize) -> Result<usize>;

    /// The most units a peer that went away can have left behind. It bounds
    /// the delivery of leftovers, which otherwise would never end if a hostile
    /// process the peer handed the memory to kept committing.
    fn leftover_limit(&self) -> usize;
}

/// What the previous call returned (for the flood accounting and the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Last {
    /// Just registered, or back from a pause: the next call is no wake-up.
    Fresh,
    /// The sleep was announced: the next call follows a wake-up.
    Armed,
    /// Work remained (or, for a producer, slots were free).
    Ready,
    /// The peer is gone; at most `left` more units are delivered.
    Closing { left: usize },
    /// The peer is gone and everything was delivered.
    Closed,
}

/// Outcome of [`WakeCycle::start`].
pub(crate) enum Start {
    /// Go on; `woken`: this call follows an armed sleep.
    Go { woken: bool },
    /// Return this at once.
    Return(Readiness),
    /// The peer is gone (or was already, with leftovers to deliver).
    PeerGone,
}

/// Registration, flood limiter and state of one source. It registers its own
/// duplicates of the endpoint's fds, so nothing done to the endpoint can close
/// them under it.
#[derive(Debug)]
pub(crate) struct WakeCycle {
    pub(crate) registration: Registration,
    pub(crate) limiter: FloodLimiter,
    pub(crate) last: Last,
}

impl WakeCycle {
    /// A source that is not registered yet.
    pub(crate) fn new(policy: FloodPolicy) -> Self {
        WakeCycle {
            registration: Registration::new(),
            limiter: FloodLimiter::new(policy),
            last: Last::Fresh,
        }
    }

    /// The common start of every call: refuses an unregistered source, serves
    /// or ends a pause of the wake-up fd, counts the wake-up and drains the
    /// wake-up fd.
    pub(crate) fn start<E: Endpoint>(&mut self, registry: &Registry, ep: &mut E) -> Result<Start> {
        match self.last {
            Last::Closed => return Ok(Start::Return(Readiness::Closed)),
            Last::Closing { .. } => return Ok(Start::PeerGone),
            _ => {}
        }
        self.registration.token()?;
        if let Some(until) = self.limiter.paused_until {
            if Instant::now() < until {
                // Woken by the link (the wake-up fd is out of the Poll): the peer
                // hung up, or sent something it must not send.
                if !ep.is_peer_alive() {
                    return Ok(Start::PeerGone);
                }
                return Ok(Start::Return(Readiness::Throttled(until)));
            }
            self.registration.resume(registry)?;
            self.limiter.paused_until = None;
            // Not a wake-up: we come back on our own.
            self.last = Last::Fresh;
        }
        let woken = self.last == Last::Armed;
        if woken {
            self.limiter.wakeup();
        }
        match ep.drain_signal() {
            // A socket signal whose peer closed its end: the peer is gone
            // (or broke the protocol); what it committed is still delivered.
            Err(shmring::Error::Disconnected | shmring::Error::PeerDied) => {
                return Ok(Start::PeerGone)
            }
            r => r?,
        }
        Ok(Start::Go { woken })
    }

    /// Records a wake-up that brought nothing; if that crossed the limit of the
    /// [`FloodPolicy`], pauses the wake-up fd and returns until when.
    pub(crate) fn empty(&mut self, registry: &Registry) -> Result<Option<Instant>> {
        match self.limiter.empty(Instant::now()) {
            Some(until) => {
                self.registration.pause(registry)?;
                Ok(Some(until))
            }
            None => Ok(None),
        }
    }

    /// The edge-triggered drain of a receiving endpoint (see the crate docs):
    /// drains the wake-up fd, delivers until empty or `budget` units, announces
    /// the sleep (delivering again while units keep arriving), checks that the
    /// peer is alive, and does the flood accounting.
    pub(crate) fn drain<E, F>(
        &mut self,
        registry: &Registry,
        ep: &mut E,
        budget: usize,
        f: &mut F,
    ) -> Result<Readiness>
    where
        E: Deliver<F>,
    {
        let woken = match self.start(registry, ep)? {
            Start::Go { woken } => woken,
            Start::Return(r) => return Ok(r),
            Start::PeerGone => return self.finish(ep, f, budget),
        };
        let mut delivered = 0usize;
        loop {
            delivered += ep.deliver(f, budget - delivered)?;
            if delivered >= budget {
                self.last = Last::Ready;
                return Ok(Readiness::Ready);
            }
            if ep.prepare_sleep()? {
                break;
            }
        }
        if !ep.is_peer_alive() {
            // `delivered < budget`: there is room for at least one more.
            return self.finish(ep, f, budget - delivered);
        }
        self.last = Last::Armed;
        if woken && delivered == 0 {
            if let Some(until) = self.empty(registry)? {
                return Ok(Readiness::Throttled(until));
            }
        }
        Ok(Readiness::Armed)
    }

    /// The peer is gone: delivers what it committed before leaving, at most
    /// `room` units in this call (`Ready` if that was not all) and at most
    /// [`Deliver::leftover_limit`] in all, then reports `Closed`.
    fn finish<E, F>(&mut self, ep: &mut E, f: &mut F, room: usize) -> Result<Readiness>
    where
        E: Deliver<F>,
    {
        let left = match self.last {
            Last::Closing { left } => left,
            _ => ep.leftover_limit(),
        };
        let want = room.min(left);
        // Should `deliver` fail, the source stays closed.
        self.last = Last::Closed;
        let n = ep.deliver(f, want)?;
        if n == want && n < left {
            self.last = Last::Closing { left: left - n };
            return Ok(Readiness::Ready);
        }
        Ok(Readiness::Closed)
    }

    /// [`mio::event::Source::register`] of the source: `fds` are the
    /// endpoint's wake-up fd and its link socket (duplicates of both go into
    /// the registry).
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
        fds: (BorrowedFd<'_>, BorrowedFd<'_>),
    ) -> io::Result<()> {
        check_interests(interests)?;
        let (signal, link) = fds;
        self.registration.register(registry, token, signal, link)?;
        self.limiter.paused_until = None;
        if matches!(self.last, Last::Armed | Last::Ready) {
            self.last = Last::Fresh;
        }
        Ok(())
    }

    /// [`mio::event::Source::reregister`] of the source.
    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        check_interests(interests)?;
        self.registration.reregister(registry, token)
    }

    /// [`mio::event::Source::deregister`] of the source.
    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.limiter.paused_until = None;
        self.registration.deregister(registry)
    }
}
