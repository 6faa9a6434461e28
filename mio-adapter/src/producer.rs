//! [`MioProducer`]: a [`Producer`] as a [`mio::event::Source`].

use mio::Registry;
use shmring::ring::WriteChunk;
use shmring::{Pod, Producer};

use crate::wakeup::{Endpoint, Last, Start, WakeCycle};
use crate::wrapper::endpoint_source;
use crate::{FloodPolicy, Readiness, Result};

/// A [`Producer`] that a mio [`Poll`](mio::Poll) can watch.
///
/// Registering it registers two fds under one token: the wake-up fd (readable
/// when the consumer freed slots while we announced a sleep) and the link
/// socket (hang-up when the consumer is gone). Interests must include
/// [`Interest::READABLE`](mio::Interest::READABLE) ("space may be free" is reported as readable).
///
/// Push with [`try_push`](Self::try_push), [`push_slice`](Self::push_slice) or
/// [`write_chunk`](Self::write_chunk) (the rest of [`Producer`] is reachable
/// through [`Deref`](std::ops::Deref)); when a push comes up short, and after every
/// event for the token, call [`poll_writable`](Self::poll_writable) (and at the
/// instant of [`Readiness::Throttled`]).
///
/// Deregister it before dropping it. If you do not, dropping it removes its fds
/// from the `Poll` anyway. What is registered are duplicates of the producer's
/// fds, owned by this wrapper: nothing done to the producer through
/// [`DerefMut`](std::ops::DerefMut) or [`get_mut`](Self::get_mut) can close
/// them under the registration.
///
/// # Errors
///
/// Registering fails as for [`MioConsumer`](crate::MioConsumer) (interests
/// without [`Interest::READABLE`](mio::Interest::READABLE), registered
/// already, `epoll_ctl`). The push methods fail as those of [`Producer`];
/// for [`poll_writable`](Self::poll_writable), see there.
///
/// # Examples
///
/// A loop thread pushing 1,000 items through a 64-slot ring as fast as a
/// consumer thread frees slots:
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use shmring::{channel, Config};
/// use shmring_mio::{MioProducer, Readiness};
///
/// let (tx, mut rx) = channel::pair::<u64>(&Config::new(64))?;
/// let consumer = std::thread::spawn(move || {
///     (0..1000).map(|_| rx.pop_blocking(Some(Duration::from_secs(5))).unwrap()).sum::<u64>()
/// });
///
/// let mut poll = Poll::new()?;
/// let mut events = Events::with_capacity(4);
/// let mut tx = MioProducer::new(tx);
/// poll.registry().register(&mut tx, Token(0), Interest::READABLE)?;
/// let mut next = 0u64;
/// while next < 1000 {
///     match tx.poll_writable(poll.registry())? {
///         // Push until the ring is full, then ask again.
///         Readiness::Ready => {
///             while next < 1000 && tx.try_push(next).is_ok() {
///                 next += 1;
///             }
///         }
///         // Full: the token fires when the consumer frees a slot.
///         Readiness::Armed | Readiness::Throttled(_) => {
///             poll.poll(&mut events, Some(Duration::from_millis(100)))?
///         }
///         Readiness::Closed => unreachable!("the consumer pops all 1,000"),
///     }
/// }
/// poll.registry().deregister(&mut tx)?;
/// assert_eq!(consumer.join().unwrap(), (0..1000).sum::<u64>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioProducer<T: Pod> {
    wake: WakeCycle,
    /// A push was attempted since the last `poll_writable`.
    pushed: bool,
    inner: Producer<T>,
}

impl<T: Pod> MioProducer<T> {
    /// Wraps `producer` with the default [`FloodPolicy`].
    pub fn new(producer: Producer<T>) -> Self {
        Self::with_policy(producer, FloodPolicy::default())
    }

    /// Wraps `producer` with a flood policy of your choice.
    pub fn with_policy(producer: Producer<T>, policy: FloodPolicy) -> Self {
        MioProducer {
            wake: WakeCycle::new(policy),
            pushed: false,
            inner: producer,
        }
    }

    /// [`Producer::try_push`], noted for the flood accounting of
    /// [`poll_writable`](Self::poll_writable).
    #[inline]
    pub fn try_push(&mut self, value: T) -> shmring::Result<()> {
        self.pushed = true;
        self.inner.try_push(value)
    }

    /// [`Producer::push_slice`], noted for the flood accounting.
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> shmring::Result<usize> {
        self.pushed = true;
        self.inner.push_slice(src)
    }

    /// [`Producer::write_chunk`], noted for the flood accounting.
    #[inline]
    pub fn write_chunk(&mut self, max: usize) -> shmring::Result<WriteChunk<'_, T>> {
        self.pushed = true;
        self.inner.write_chunk(max)
    }

    /// The wrapped producer. Prefer the push methods of `MioProducer` itself
    /// (which [`Deref`](std::ops::Deref) does not hide): they tell
    /// [`poll_writable`](Self::poll_writable) that the free slots it finds are
    /// progress, not a wake-up nobody asked for.
    pub fn get_mut(&mut self) -> &mut Producer<T> {
        &mut self.inner
    }

    /// Finds out whether there is room, arming the wake-up if there is none.
    ///
    /// Call it after every event for the token and whenever a push came up
    /// short. In this order: drains the wake-up fd (one `read`), asks the link
    /// whether the consumer is still there (one `recv`), then looks for free
    /// slots and, if there are none, announces the sleep with `prepare_sleep`.
    ///
    /// * [`Readiness::Ready`]: slots are free; push.
    /// * [`Readiness::Armed`]: the ring is full and the sleep is announced; the
    ///   consumer's next release makes the token fire.
    /// * [`Readiness::Throttled`]: too many wake-ups brought nothing (see
    ///   [`FloodPolicy`]); call again at or after the given instant.
    /// * [`Readiness::Closed`]: the consumer is gone. Deregister and drop.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegistered`](crate::Error::NotRegistered) before the
    /// producer is registered; [`Error::Shmring`](crate::Error::Shmring) when
    /// the ring or its wake-up fd fails;
    /// [`Error::Registry`](crate::Error::Registry) when pausing or resuming
    /// the wake-up fd fails. Each is final for this producer: deregister and
    /// drop it.
    pub fn poll_writable(&mut self, registry: &Registry) -> Result<Readiness> {
        match self.wake.start(registry, &mut self.inner)? {
            Start::Go { .. } => {}
            Start::Return(r) => return Ok(r),
            Start::PeerGone => {
                self.wake.last = Last::Closed;
                return Ok(Readiness::Closed);
            }
        }
        if !self.inner.is_peer_alive() {
            self.wake.last = Last::Closed;
            return Ok(Readiness::Closed);
        }
        let now = if self.inner.slots()? > 0 || !self.inner.prepare_sleep()? {
            Last::Ready
        } else {
            Last::Armed
        };
        // Woken with the ring still full, or called again while not asleep
        // without a push in between (a wake-up we never asked for): no progress.
        let useless = match (self.wake.last, now) {
            (Last::Armed, Last::Armed) => true,
            (Last::Ready, Last::Ready) => !self.pushed,
            _ => false,
        };
        self.pushed = false;
        self.wake.last = now;
        if useless {
            if let Some(until) = self.wake.empty(registry)? {
                return Ok(Readiness::Throttled(until));
            }
        }
        Ok(match now {
            Last::Armed => Readiness::Armed,
            _ => Readiness::Ready,
        })
    }
}

impl<T: Pod> Endpoint for Producer<T> {
    fn drain_signal(&self) -> shmring::Result<()> {
        Producer::drain_signal(self)
    }

    fn prepare_sleep(&mut self) -> shmring::Result<bool> {
        Producer::prepare_sleep(self)
    }

    fn is_peer_alive(&mut self) -> bool {
        Producer::is_peer_alive(self)
    }
}

endpoint_source!(MioProducer<T>, Producer<T>, "producer");
