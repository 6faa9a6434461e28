//! # shmring-mio
//!
//! [`mio`] integration for [`shmring`] endpoints: one `Poll` thread serves
//! many rings (and accepts the peers that bring them).
//!
//! * [`MioConsumer`] / [`MioProducer`] own a [`shmring::Consumer`] /
//!   [`shmring::Producer`] and implement [`mio::event::Source`]. Registering one
//!   registers **two** fds under the same token: the endpoint's wake-up fd
//!   ([`AsFd`](std::os::fd::AsFd) of the endpoint: an eventfd or a pipe,
//!   readable when the peer committed items / freed slots while we announced a
//!   sleep) and its link socket ([`link_fd`](shmring::Consumer::link_fd): it
//!   hangs up when the peer is gone; [`mio::event::Event::is_read_closed`] is
//!   true for that event). Both are registered [`Interest::READABLE`].
//! * [`MioFrameReceiver`] does the same for the receiving end of a frame
//!   stream ([`shmring::frames::FrameReceiver`]: the descriptor ring's wake-up
//!   fd and its link); it delivers [`Received`](shmring::frames::Received)
//!   messages (frames and stream events) instead of items.
//! * [`MioListener`] wraps a [`shmring::handshake::Listener`] and completes
//!   handshakes inside the loop without ever waiting for a slow client.
//! * [`ConsumerDriver`] is a whole loop over many producers (its own `Poll`,
//!   optionally a listener): it does the bookkeeping below for you, and
//!   hands items and arrivals to one callback. Start there; use the parts
//!   above when the loop serves more than consumers of one type.
//!
//! # The edge-triggered contract
//!
//! mio is edge-triggered, and shmring only writes a wake-up fd when the other
//! side announced that it sleeps. So a wake-up is never lost only if, after
//! every event, the loop does exactly this, in this order:
//!
//! 1. drain the wake-up fd (`drain_signal`: one `read`);
//! 2. pop until the ring is empty;
//! 3. announce the sleep with `prepare_sleep`: `Ok(false)` means items arrived
//!    in the meantime (go back to 2), `Ok(true)` means the sleep is announced and
//!    the ring was still empty after announcing it, so the producer's next commit will
//!    write the wake-up fd (the ring's `publish` checks the announcement after
//!    a full fence; `prepare_sleep` re-checks the ring after one);
//! 4. only then return to `poll`.
//!
//! Draining *after* announcing the sleep could swallow the wake-up for the
//! new sleep; returning to `poll` before the announcement could wait forever.
//! [`MioConsumer::drain_with`] and [`MioFrameReceiver::drain_with`] do all
//! four steps, and also ask the link whether the producer is still alive (one
//! `recv`), so a hang-up is never missed even when it arrives in the same
//! batch as data; what the producer sent before leaving is still delivered
//! before they report `Closed`. The announcement stays set while we sleep in
//! `poll`; the producer wakes each announced sleep once.
//! [`MioProducer::poll_writable`] is the same for free slots.
//!
//! Each call returns a [`Readiness`]: `Armed` (go back to `poll`), `Ready`
//! (work remains, no event will come: call again), `Throttled(t)` (call again
//! at `t`), or `Closed` (the peer is gone; deregister and drop the endpoint).
//!
//! # Hostile peers and floods
//!
//! The peer holds the wake-up fd too and can write it in a tight loop without
//! committing anything. Every such write is a new edge, so a naive loop would
//! spin. A flood costs one `read` (plus one `recv`) per wake-up, never memory,
//! and is rate-limited by [`FloodPolicy`]: a wake-up that finds nothing to do
//! is *empty*; more than `max_empty_wakeups` of them within `window` take the
//! wake-up fd out of the `Poll` for `pause` (doubling on repeated offences, up
//! to `max_pause`; reset after a quiet window), and the call returns
//! [`Readiness::Throttled`]. The link stays registered meanwhile, so the
//! peer's exit is still seen. An honest peer produces an empty wake-up only
//! when a commit races with our announcement, far below the limit.
//!
//! With the default [`shmring::SignalKind::Socket`], no wake-up write or drain
//! of the loop can block whatever the peer does to its fds (see
//! [`shmring::signal`]; test `tests/hostile_signals.rs`). With eventfd or pipe
//! signals, which share one open file with the peer, a peer can make a
//! wake-up write block, and the whole loop with it: use them only with peers
//! of the same trust domain.
//!
//! Because the peer holds the wake-up fd's open file, closing our fd does not
//! remove it from the epoll set (epoll tracks open files, not fd numbers): a
//! peer that keeps writing would keep firing a dead token. Deregister
//! endpoints before dropping them; as a safety net, dropping a still-registered
//! endpoint removes its fds from the epoll instance it was registered with.
//! The fds a source puts into the `Poll` are its own duplicates of the
//! endpoint's (made when it registers, closed when it deregisters or drops),
//! so safe code that reaches the endpoint through `DerefMut` or `get_mut` and
//! closes or replaces it cannot make the source later pass a dead or reused fd
//! number to `epoll_ctl`.
//!
//! # Frame streams
//!
//! A frame stream's receiving end connects with
//! [`shmring::frames::connect`] (a short blocking handshake; run it before
//! the loop, or on a helper thread, and hand the receiver over), then goes into
//! the loop as a [`MioFrameReceiver`]. Each [`Received`](shmring::frames::Received)
//! counts one unit of its budget ([`DEFAULT_FRAME_BUDGET`]). A frame keeps its
//! arena slot until the [`FrameRef`](shmring::frames::FrameRef) drops, from
//! any thread; the producer reuses slots only once they come back. A producer
//! that breaks the protocol (a descriptor with an unknown kind, a slot out of
//! range, bytes outside their slot, a slot sent twice, a skipped sequence
//! number) makes `drain_with` fail with [`shmring::Error::BadDescriptor`]
//! inside [`Error::Shmring`]: drop that receiver. Flood handling is the same
//! as for a ring.
//!
//! # Errors
//!
//! One enum, [`Error`]: it wraps [`shmring::Error`] and adds registry
//! failures and the listener's per-peer outcomes.
//!
//! # A loop over two producers
//!
//! With a [`ConsumerDriver`] the loop is the call, the match and the
//! handling: the driver computes the `poll` timeout (zero while a consumer has
//! items left over, the end of a flood pause, the listener's handshake
//! deadlines), serves the tokens that fired or are due, and drains every new
//! consumer once right after registering it. Here two producers connect
//! through a socket, as two processes would (each is a thread here):
//!
//! ```
//! use std::collections::HashMap;
//! use std::time::Duration;
//! use shmring::{handshake, Config};
//! use shmring_mio::{ConsumerDriver, DriverEvent, MioListener};
//!
//! let dir = std::env::temp_dir().join(format!("shmring-mio-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let path = dir.join("two.sock");
//! let config = Config::new(1024);
//!
//! let mut driver = ConsumerDriver::<u64>::new()?;
//! driver.listen(MioListener::bind(&path, &Default::default())?, config.clone())?;
//! let producers: Vec<_> = (0..2u64)
//!     .map(|p| {
//!         let (path, config) = (path.clone(), config.clone());
//!         std::thread::spawn(move || -> shmring::Result<()> {
//!             let mut tx = handshake::connect_producer::<u64>(&path, &config)?;
//!             for i in 0..50_000 {
//!                 tx.push_blocking(p * 1_000_000 + i, Some(Duration::from_secs(5)))?;
//!             }
//!             Ok(())
//!         })
//!     })
//!     .collect();
//!
//! // Per producer: how many items, and whether they came in order.
//! let mut seen: HashMap<mio::Token, (u64, bool)> = HashMap::new();
//! let mut closed = 0;
//! while closed < 2 {
//!     driver.run_once(Some(Duration::from_secs(1)), |event| match event {
//!         DriverEvent::Connected { token, .. } => {
//!             seen.insert(token, (0, true));
//!         }
//!         DriverEvent::Items { token, items } => {
//!             let (n, in_order) = seen.get_mut(&token).unwrap();
//!             for &x in items {
//!                 *in_order &= x % 1_000_000 == *n;
//!                 *n += 1;
//!             }
//!         }
//!         DriverEvent::Closed { .. } => closed += 1,
//!         DriverEvent::Failed { token, error } => panic!("{token:?}: {error}"),
//!         DriverEvent::Refused(e) => panic!("{e}"),
//!         _ => {}
//!     })?;
//! }
//! assert!(seen.values().all(|&s| s == (50_000, true)) && seen.len() == 2);
//! for p in producers {
//!     p.join().unwrap()?;
//! }
//! std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `examples/src/bin/mio_consumer.rs` is the same loop across processes,
//! with rates and checksums.
//!
//! # Example by hand
//!
//! The parts the driver is made of, in a loop of your own: one loop thread
//! consuming a ring that another thread fills (across processes the
//! endpoints come from [`MioListener`] or [`shmring::handshake`]; nothing
//! else changes):
//!
//! ```
//! use std::time::Duration;
//! use mio::{Events, Interest, Poll, Token};
//! use shmring::{channel, Config};
//! use shmring_mio::{MioConsumer, Readiness};
//!
//! let (mut tx, rx) = channel::pair::<u64>(&Config::new(256))?;
//! let producer = std::thread::spawn(move || {
//!     for i in 0..10_000u64 {
//!         tx.push_blocking(i, Some(Duration::from_secs(5))).unwrap();
//!     }
//! }); // dropping `tx` hangs up the link
//!
//! let mut poll = Poll::new()?;
//! let mut events = Events::with_capacity(16);
//! let mut rx = MioConsumer::new(rx);
//! poll.registry().register(&mut rx, Token(1), Interest::READABLE)?;
//!
//! let (mut next, mut state) = (0u64, Readiness::Ready);
//! loop {
//!     let timeout = match state {
//!         Readiness::Ready => Some(Duration::ZERO),
//!         _ => Some(Duration::from_millis(100)),
//!     };
//!     poll.poll(&mut events, timeout)?;
//!     // Any event for Token(1), a timeout, or `Ready`/`Throttled`: drain.
//!     state = rx.drain_with(poll.registry(), |items| {
//!         for &x in items {
//!             assert_eq!(x, next);
//!             next += 1;
//!         }
//!     })?;
//!     if state == Readiness::Closed {
//!         break;
//!     }
//! }
//! poll.registry().deregister(&mut rx)?;
//! assert_eq!(next, 10_000);
//! producer.join().unwrap();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg(target_os = "linux")]

use std::io;
use std::time::{Duration, Instant};

use shmring::handshake::PeerCred;

mod consumer;
mod driver;
mod flood;
mod frames;
mod listener;
mod producer;
mod registration;
mod wakeup;
mod wrapper;

pub use consumer::{MioConsumer, DEFAULT_BUDGET};
pub use driver::{ConsumerDriver, DriverEvent, FIRST_DRIVER_TOKEN};
pub use flood::WakeStats;
pub use frames::{MioFrameReceiver, DEFAULT_FRAME_BUDGET};
pub use listener::{Accepted, MioListener, DEFAULT_MAX_PENDING};
pub use mio::Interest;
pub use producer::MioProducer;

/// What to do next with an endpoint, as returned by
/// [`MioConsumer::drain_with`], [`MioFrameReceiver::drain_with`] and
/// [`MioProducer::poll_writable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// The sleep is announced: the token fires when there is something to do.
    /// Go back to `poll`.
    Armed,
    /// There is work now (consumer, frame receiver: items or messages left
    /// after the budget; producer: free slots). No event will announce it: act,
    /// then call again.
    Ready,
    /// The wake-up fd is paused after a flood of empty wake-ups (see
    /// [`FloodPolicy`]): call again at or after this instant (use it in the
    /// `poll` timeout). A hang-up still fires the token meanwhile.
    Throttled(Instant),
    /// The peer is gone (for a consumer or frame receiver: after everything it
    /// committed was delivered). Deregister and drop the endpoint.
    Closed,
}

/// Limits on wake-ups that bring nothing (see the [crate docs](crate)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodPolicy {
    /// Empty wake-ups tolerated within one `window`.
    pub max_empty_wakeups: u32,
    /// Length of the counting window.
    pub window: Duration,
    /// First pause of the wake-up fd once the limit is crossed.
    pub pause: Duration,
    /// Longest pause (the pause doubles while the flood goes on).
    pub max_pause: Duration,
}

impl FloodPolicy {
    /// No limit: every wake-up is served (a flooding peer can then keep the
    /// loop busy).
    pub fn unlimited() -> Self {
        FloodPolicy {
            max_empty_wakeups: u32::MAX,
            ..Self::default()
        }
    }
}

impl Default for FloodPolicy {
    /// 256 empty wake-ups per 10 ms (an honest peer stays orders of magnitude
    /// below), then a pause of 5 ms, doubling up to 200 ms.
    fn default() -> Self {
        FloodPolicy {
            max_empty_wakeups: 256,
            window: Duration::from_millis(10),
            pause: Duration::from_millis(5),
            max_pause: Duration::from_millis(200),
        }
    }
}

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An error of the endpoint or the handshake (peer corrupted the ring, bad
    /// hello, refused uid, ...).
    #[error(transparent)]
    Shmring(#[from] shmring::Error),
    /// Registering, deregistering or polling an fd failed.
    #[error("{context}: {source}")]
    Registry {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The source must be registered with a `Registry` first.
    #[error("source is not registered with a mio Registry")]
    NotRegistered,
    /// A connected peer sent no hello within the handshake timeout and was
    /// dropped.
    #[error("peer pid {} uid {} sent no hello in time", .peer.pid, .peer.uid)]
    HandshakeTimeout {
        /// The peer.
        peer: PeerCred,
    },
    /// A peer connected while `max` others were still in their handshake; it
    /// was dropped.
    #[error("peer pid {} uid {} dropped: {max} handshakes already pending", .peer.pid, .peer.uid)]
    TooManyPending {
        /// The peer.
        peer: PeerCred,
        /// The limit.
        max: usize,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
