//! [`MioConsumer`]: a [`Consumer`] as a [`mio::event::Source`].

use mio::Registry;
use shmring::{Consumer, Pod};

use crate::wakeup::{Deliver, Endpoint, WakeCycle};
use crate::wrapper::endpoint_source;
use crate::{FloodPolicy, Readiness, Result};

/// Default [`MioConsumer::set_budget`]: items delivered per call before the
/// consumer yields to the other sources of the loop.
pub const DEFAULT_BUDGET: usize = 16 * 1024;

/// Bytes of the local buffer that [`MioConsumer::drain_with`] copies items
/// into (at least one item).
const SCRATCH_BYTES: usize = 64 * 1024;

/// A [`Consumer`] that a mio [`Poll`](mio::Poll) can watch.
///
/// Registering it registers two fds under one token: the wake-up fd (readable
/// when the producer committed items while we announced a sleep) and the link
/// socket (hang-up when the producer is gone). Interests must include
/// [`Interest::READABLE`](mio::Interest::READABLE); nothing else is reported.
///
/// Call [`drain_with`](Self::drain_with) once right after registering (until a
/// sleep is announced the producer has no reason to write the wake-up fd, so
/// items already queued would bring no event), then after every event for its
/// token, after [`Readiness::Ready`], and at the instant of
/// [`Readiness::Throttled`]. It implements the edge-triggered contract; see the
/// [crate docs](crate).
///
/// Deregister it before dropping it. If you do not, dropping it removes its fds
/// from the `Poll` anyway (see the crate docs for why that matters). What is
/// registered are duplicates of the consumer's fds, owned by this wrapper:
/// nothing done to the consumer through [`DerefMut`](std::ops::DerefMut) or
/// [`get_mut`](Self::get_mut) can close them under the registration
/// (replacing the consumer there leaves the registration on the old one's
/// files, so deregister first).
///
/// # Errors
///
/// Registering fails with [`io::ErrorKind::InvalidInput`](std::io::ErrorKind)
/// if the interests lack [`Interest::READABLE`](mio::Interest::READABLE), with `EEXIST` if it is
/// registered already, or with what `epoll_ctl` or duplicating the fds
/// reports; reregistering fails when it is not registered. For
/// [`drain_with`](Self::drain_with), see there.
///
/// # Examples
///
/// Items that were queued before the consumer joined the `Poll` bring no
/// event: the first [`drain_with`](Self::drain_with), right after
/// registering, finds them and arms the wake-up.
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use shmring::{channel, Config};
/// use shmring_mio::{MioConsumer, Readiness};
///
/// let (mut tx, rx) = channel::pair::<u32>(&Config::new(16))?;
/// tx.push_slice(&[1, 2, 3])?;
///
/// let mut poll = Poll::new()?;
/// let mut rx = MioConsumer::new(rx);
/// poll.registry().register(&mut rx, Token(7), Interest::READABLE)?;
/// let mut got = Vec::new();
/// let state = rx.drain_with(poll.registry(), |items| got.extend_from_slice(items))?;
/// assert_eq!((got.as_slice(), state), (&[1, 2, 3][..], Readiness::Armed));
///
/// // The next commit wakes the armed consumer: its token fires.
/// tx.try_push(4)?;
/// let mut events = Events::with_capacity(4);
/// poll.poll(&mut events, Some(Duration::from_secs(5)))?;
/// assert!(events.iter().any(|e| e.token() == Token(7)));
/// rx.drain_with(poll.registry(), |items| got.extend_from_slice(items))?;
/// assert_eq!(got, [1, 2, 3, 4]);
///
/// // The producer leaves: the link hangs up and the consumer reports `Closed`.
/// drop(tx);
/// poll.poll(&mut events, Some(Duration::from_secs(5)))?;
/// assert_eq!(rx.drain_with(poll.registry(), |_| {})?, Readiness::Closed);
/// poll.registry().deregister(&mut rx)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioConsumer<T: Pod> {
    wake: WakeCycle,
    budget: usize,
    inner: Consumer<T>,
    /// Local copies of the items handed to `drain_with`'s callback.
    scratch: Vec<T>,
}

impl<T: Pod> MioConsumer<T> {
    /// Wraps `consumer` with the default [`FloodPolicy`] and [`DEFAULT_BUDGET`].
    pub fn new(consumer: Consumer<T>) -> Self {
        Self::with_policy(consumer, FloodPolicy::default())
    }

    /// Wraps `consumer` with a flood policy of your choice.
    pub fn with_policy(consumer: Consumer<T>, policy: FloodPolicy) -> Self {
        MioConsumer {
            wake: WakeCycle::new(policy),
            budget: DEFAULT_BUDGET,
            inner: consumer,
            scratch: Vec::new(),
        }
    }

    /// Sets how many items one [`drain_with`](Self::drain_with) delivers at most
    /// before it returns [`Readiness::Ready`] (so that one busy producer cannot
    /// starve the other sources of the loop). At least 1.
    pub fn set_budget(&mut self, items: usize) {
        self.budget = items.max(1);
    }

    /// The wrapped consumer. Popping through it is allowed, but a wake-up
    /// whose items you popped this way counts as empty for the [`FloodPolicy`];
    /// calling its `prepare_sleep`/`drain_signal` yourself bypasses the
    /// bookkeeping of [`drain_with`](Self::drain_with).
    pub fn get_mut(&mut self) -> &mut Consumer<T> {
        &mut self.inner
    }

    /// Delivers the items that are ready to `f` (in order, as slices of local
    /// copies: a hostile producer cannot change them while `f` reads them),
    /// then re-arms the wake-up.
    ///
    /// In this order: drains the wake-up fd (one `read`), pops until the ring is
    /// empty (or the budget is spent), announces the sleep with
    /// `prepare_sleep` (popping again while items keep arriving), then asks the
    /// link whether the producer is still there (one `recv`). Returns:
    ///
    /// * [`Readiness::Armed`]: the ring is empty and the sleep announced; the
    ///   next commit of the producer makes the token fire. Go back to `poll`.
    /// * [`Readiness::Ready`]: the budget is spent and items remain; the sleep is
    ///   *not* announced, so no event will come: call again soon (poll the other
    ///   sources with a zero timeout first, for fairness). This holds after the
    ///   producer left too, while what it committed exceeds the budget.
    /// * [`Readiness::Throttled`]: too many wake-ups brought nothing (see
    ///   [`FloodPolicy`]); the wake-up fd is out of the `Poll` until the given
    ///   instant: call again at or after it. A hang-up still fires the token.
    /// * [`Readiness::Closed`]: the producer is gone and every item it committed
    ///   has been delivered (at most one ring's worth after it left: only a
    ///   hostile process could commit more). Deregister and drop this consumer.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegistered`](crate::Error::NotRegistered) before the
    /// consumer is registered; [`Error::Shmring`](crate::Error::Shmring) when
    /// the ring or its wake-up fd fails ([`shmring::Error::Corrupt`] from a
    /// hostile producer); [`Error::Registry`](crate::Error::Registry) when
    /// pausing or resuming the wake-up fd fails. Each is final for this
    /// consumer: deregister and drop it.
    ///
    /// The items are copied out of shared memory (volatile loads) into a
    /// buffer of this consumer, up to 64 KiB at a time, and released to the
    /// producer before `f` sees them.
    pub fn drain_with<F>(&mut self, registry: &Registry, mut f: F) -> Result<Readiness>
    where
        F: FnMut(&[T]),
    {
        let mut ep = Copying {
            consumer: &mut self.inner,
            scratch: &mut self.scratch,
        };
        self.wake.drain(registry, &mut ep, self.budget, &mut f)
    }
}

/// A consumer and the buffer its items are copied into for delivery.
struct Copying<'a, T: Pod> {
    consumer: &'a mut Consumer<T>,
    scratch: &'a mut Vec<T>,
}

impl<T: Pod> Endpoint for Copying<'_, T> {
    fn drain_signal(&self) -> shmring::Result<()> {
        self.consumer.drain_signal()
    }

    fn prepare_sleep(&mut self) -> shmring::Result<bool> {
        self.consumer.prepare_sleep()
    }

    fn is_peer_alive(&mut self) -> bool {
        self.consumer.is_peer_alive()
    }
}

impl<T: Pod, F: FnMut(&[T])> Deliver<F> for Copying<'_, T> {
    /// Pops up to `max` items into `f`, as slices of the local buffer.
    fn deliver(&mut self, f: &mut F, max: usize) -> Result<usize> {
        if self.scratch.is_empty() {
            let n = (SCRATCH_BYTES / std::mem::size_of::<T>().max(1))
                .clamp(1, self.consumer.capacity());
            self.scratch.resize(n, T::zeroed());
        }
        let mut done = 0;
        while done < max {
            let want = (max - done).min(self.scratch.len());
            let n = self.consumer.pop_slice(&mut self.scratch[..want])?;
            if n == 0 {
                break;
            }
            f(&self.scratch[..n]);
            done += n;
        }
        Ok(done)
    }

    /// One ring's worth: nobody can commit after the producer closed its link,
    /// except a hostile process it handed the memory to.
    fn leftover_limit(&self) -> usize {
        self.consumer.capacity()
    }
}

endpoint_source!(MioConsumer<T>, Consumer<T>, "consumer");
