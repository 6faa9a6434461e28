//! [`MioFrameReceiver`]: the receiving end of a frame stream
//! ([`shmring::frames`]) as a [`mio::event::Source`].

use mio::Registry;
use shmring::frames::{FrameReceiver, Received};

use crate::wakeup::{Deliver, Endpoint, WakeCycle};
use crate::wrapper::endpoint_source;
use crate::{FloodPolicy, Readiness, Result};

/// Default [`MioFrameReceiver::set_budget`]: messages (frames and events)
/// delivered per call before the receiver yields to the other sources of the
/// loop.
pub const DEFAULT_FRAME_BUDGET: usize = 64;

/// A [`FrameReceiver`] that a mio [`Poll`](mio::Poll) can watch.
///
/// The same contract as [`MioConsumer`](crate::MioConsumer), with messages
/// ([`Received`]) instead of items. Registering it registers two fds under one
/// token: the descriptor ring's wake-up fd (readable when the producer sent
/// something while we announced a sleep) and the link socket (hang-up when the
/// producer is gone). Interests must include [`Interest::READABLE`](mio::Interest::READABLE); nothing
/// else is reported.
///
/// Call [`drain_with`](Self::drain_with) once right after registering, then
/// after every event for its token, after [`Readiness::Ready`], and at the
/// instant of [`Readiness::Throttled`]. It implements the edge-triggered
/// contract of the [crate docs](crate).
///
/// A [`Received::Frame`] holds its arena slot until it drops; the producer
/// can reuse the slot only then. Drop frames (or copy them out) promptly: a
/// receiver that keeps every slot starves the producer. (Strings travel in a
/// slot of their own and are copied out before `f` sees them.)
///
/// Deregister it before dropping it. If you do not, dropping it removes its fds
/// from the `Poll` anyway (see the crate docs for why that matters).
///
/// # Errors
///
/// Registering fails as for [`MioConsumer`](crate::MioConsumer) (interests
/// without [`Interest::READABLE`](mio::Interest::READABLE), registered
/// already, `epoll_ctl`); for [`drain_with`](Self::drain_with), see there.
///
/// # Examples
///
/// A sender thread streams 100 one-byte frames and an end of stream; the
/// loop receives them, then sees the sender leave:
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use shmring::frames::{self, FrameConfig, FrameMeta, Received};
/// use shmring_mio::{MioFrameReceiver, Readiness};
///
/// let (mut tx, rx) = frames::pair(&FrameConfig::new(4, 1024))?;
/// let sender = std::thread::spawn(move || -> shmring::Result<()> {
///     tx.send_caps("application/x-demo")?;
///     for i in 0..100u8 {
///         let mut slot = loop {
///             tx.reclaim(|_| {})?; // slots the receiver gave back
///             match tx.try_lease() {
///                 Some(slot) => break slot,
///                 None => tx.wait_returns(Some(Duration::from_secs(5)))?,
///             }
///         };
///         slot.as_mut()[0] = i;
///         tx.send_lease(slot, 1, &FrameMeta::default())?;
///     }
///     tx.send_eos()
/// }); // dropping `tx` hangs up the link
///
/// let mut poll = Poll::new()?;
/// let mut events = Events::with_capacity(16);
/// let mut rx = MioFrameReceiver::new(rx);
/// poll.registry().register(&mut rx, Token(1), Interest::READABLE)?;
///
/// let (mut frames, mut eos, mut state) = (0u8, false, Readiness::Ready);
/// while state != Readiness::Closed {
///     let timeout = match state {
///         Readiness::Ready => Duration::ZERO,
///         _ => Duration::from_millis(100),
///     };
///     poll.poll(&mut events, Some(timeout))?;
///     state = rx.drain_with(poll.registry(), |msg| match msg {
///         Received::Frame(f) => {
///             assert_eq!(f.bytes(), &[frames]);
///             frames += 1;
///         } // `f` drops here: its slot goes back
///         Received::Eos => eos = true,
///         _ => {}
///     })?;
/// }
/// poll.registry().deregister(&mut rx)?;
/// assert_eq!((frames, eos), (100, true));
/// sender.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioFrameReceiver {
    // `wake` registers duplicates of the receiver's fds, which it owns.
    wake: WakeCycle,
    budget: usize,
    inner: FrameReceiver,
}

impl MioFrameReceiver {
    /// Wraps `receiver` with the default [`FloodPolicy`] and
    /// [`DEFAULT_FRAME_BUDGET`].
    pub fn new(receiver: FrameReceiver) -> Self {
        Self::with_policy(receiver, FloodPolicy::default())
    }

    /// Wraps `receiver` with a flood policy of your choice.
    pub fn with_policy(receiver: FrameReceiver, policy: FloodPolicy) -> Self {
        MioFrameReceiver {
            wake: WakeCycle::new(policy),
            budget: DEFAULT_FRAME_BUDGET,
            inner: receiver,
        }
    }

    /// Sets how many messages one [`drain_with`](Self::drain_with) delivers at
    /// most before it returns [`Readiness::Ready`] (so that one busy producer
    /// cannot starve the other sources of the loop). At least 1.
    pub fn set_budget(&mut self, messages: usize) {
        self.budget = messages.max(1);
    }

    /// The wrapped receiver. Receiving through it is allowed, but a wake-up
    /// whose messages you took this way counts as empty for the
    /// [`FloodPolicy`]; calling its `prepare_sleep`/`drain_signal` yourself
    /// bypasses the bookkeeping of [`drain_with`](Self::drain_with).
    pub fn get_mut(&mut self) -> &mut FrameReceiver {
        &mut self.inner
    }

    /// Delivers the messages that are ready to `f`, in the order the producer
    /// sent them, then re-arms the wake-up.
    ///
    /// In this order: drains the wake-up fd (one `read`), receives until the
    /// descriptor ring is empty (or the budget is spent; each message counts
    /// one), announces the sleep with `prepare_sleep` (receiving again while
    /// messages keep arriving), then asks the link whether the producer is
    /// still there (one `recv`). Returns:
    ///
    /// * [`Readiness::Armed`]: nothing is left and the sleep is announced; the
    ///   producer's next message makes the token fire. Go back to `poll`.
    /// * [`Readiness::Ready`]: the budget is spent and messages remain; no event
    ///   will come: call again soon (poll the other sources with a zero timeout
    ///   first, for fairness). This holds after the producer left too, while
    ///   what it sent exceeds the budget.
    /// * [`Readiness::Throttled`]: too many wake-ups brought nothing (see
    ///   [`FloodPolicy`]); the wake-up fd is out of the `Poll` until the given
    ///   instant: call again at or after it. A hang-up still fires the token.
    /// * [`Readiness::Closed`]: the producer is gone and every message it sent
    ///   has been delivered; [`FrameReceiver::goodbye`] says why when it
    ///   dropped this consumer with a reason. Deregister and drop this
    ///   receiver.
    ///
    /// # Errors
    ///
    /// [`Error::NotRegistered`](crate::Error::NotRegistered) before the
    /// receiver is registered; [`Error::Shmring`](crate::Error::Shmring) when
    /// the stream or its wake-up fd fails: a producer that breaks the protocol
    /// yields [`shmring::Error::BadDescriptor`] (messages delivered before the
    /// bad descriptor remain valid); [`Error::Registry`](crate::Error::Registry)
    /// when pausing or resuming the wake-up fd fails. Each is final for this
    /// receiver: deregister and drop it.
    ///
    /// Frame bytes are in memory the producer can still write while `f` reads
    /// them: parse them as untrusted input.
    pub fn drain_with<F>(&mut self, registry: &Registry, mut f: F) -> Result<Readiness>
    where
        F: FnMut(Received),
    {
        self.wake
            .drain(registry, &mut self.inner, self.budget, &mut f)
    }
}

impl Endpoint for FrameReceiver {
    fn drain_signal(&self) -> shmring::Result<()> {
        FrameReceiver::drain_signal(self)
    }

    fn prepare_sleep(&mut self) -> shmring::Result<bool> {
        FrameReceiver::prepare_sleep(self)
    }

    fn is_peer_alive(&mut self) -> bool {
        FrameReceiver::is_peer_alive(self)
    }
}

impl<F: FnMut(Received)> Deliver<F> for FrameReceiver {
    /// Receives up to `max` messages into `f`.
    fn deliver(&mut self, f: &mut F, max: usize) -> Result<usize> {
        let mut done = 0;
        while done < max {
            match self.try_recv() {
                Ok(Some(m)) => f(m),
                Ok(None) => break,
                // The producer is gone (with a reason: `goodbye()`) and
                // everything it sent was received: the liveness check that
                // follows reports it.
                Err(e) if e.is_peer_gone() => break,
                Err(e) => return Err(e.into()),
            }
            done += 1;
        }
        Ok(done)
    }

    /// Unknown here ([`FrameReceiver`] does not tell its descriptor ring's
    /// capacity), so leftovers are bounded per call by the budget only: a
    /// hostile process that keeps sending after the producer left looks like a
    /// producer that is still there, and costs no more.
    fn leftover_limit(&self) -> usize {
        usize::MAX
    }
}

endpoint_source!(MioFrameReceiver, FrameReceiver, "receiver");
