//! [`Producer`] and [`Consumer`]: a ring in a sealed memfd segment, two wake-up
//! signals (one per direction) and a link socket to the peer.
//!
//! * Non-blocking calls ([`Producer::try_push`], [`Consumer::try_pop`], the chunk
//!   API) make no system call, except the one write that wakes a sleeping peer.
//! * Blocking calls take a timeout. They spin for [`Config::spin`] first (so a
//!   stream with short gaps never pays for a real sleep and wake-up, which
//!   costs far more than a spin), then announce
//!   the sleep in shared memory and wait on the signal fd and the link together:
//!   a peer that disappears ends the wait with [`Error::Disconnected`] at once.
//!   The spin adapts: once most recent spins ran out without the ring getting
//!   ready (items further apart than the spin), waits sleep at once, and one
//!   in 64 spins again to notice a stream that speeds up. So does how often
//!   a spin looks at the ring: often while items come one by one (a
//!   hand-over), seldom while they land faster than it looks (a dense
//!   stream, which every look slows down by pulling the peer's index away
//!   from its cache) until a batch of 32 KiB or an eighth of the ring waits
//!   at each look.
//! * [`AsFd`] gives the fd a poller should watch for readiness;
//!   [`Producer::link_fd`] the one that reports the peer's hang-up.
//!
//! [`pair`] builds both ends in one process (for two threads). Across processes,
//! [`crate::handshake`] sets channels up over a Unix socket path, or a program can
//! move [`ChannelFds`] by any route it likes and rebuild the ends with
//! [`ChannelFds::into_producer`] / [`ChannelFds::into_consumer`], which validate
//! every fd as the handshake does.
//!
//! # Where things are
//!
//! | module | what it owns |
//! |---|---|
//! | this one | [`pair`], [`Producer`] and [`Consumer`] (what they share written once) |
//! | `config` | [`Config`] and the default type name |
//! | `fds` | [`ChannelFds`]: creating, moving and validating a channel's fds |
//! | `waiter` | the waiting half of an endpoint (spin, sleep, the peer's liveness) and [`PeerWatch`] |

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::ring::{self, Reader, Writer};
use crate::signal::Signal;
use crate::{Error, Result};

mod config;
mod fds;
mod waiter;

pub(crate) use config::link_setters;
pub use config::{Config, DEFAULT_MAX_SEGMENT, DEFAULT_SPIN};
pub use fds::ChannelFds;
pub use waiter::PeerWatch;
use waiter::Waiter;

/// Both ends of a channel in one process, joined by a socket pair so that
/// dropping one end makes the other's blocking calls return
/// [`Error::Disconnected`].
///
/// # Errors
/// [`Error::InvalidArgument`] for a capacity or element type the ring does
/// not support (see [`RingLayout::new`](crate::ring::RingLayout::new)); [`Error::Io`] if a memfd, a
/// mapping, a signal or the socket pair cannot be made (out of fds or
/// memory, say).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmring::{channel, Config};
///
/// let (mut tx, mut rx) = channel::pair::<f32>(&Config::new(256))?;
/// let t = std::thread::spawn(move || -> shmring::Result<()> {
///     tx.push_all(&[0.5; 1000], Some(Duration::from_secs(5)))
/// });
/// let mut got = 0;
/// let mut buf = [0.0; 64];
/// while got < 1000 {
///     got += rx.pop_slice_blocking(&mut buf, Some(Duration::from_secs(5)))?;
/// }
/// t.join().unwrap()?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn pair<T: Pod>(config: &Config) -> Result<(Producer<T>, Consumer<T>)> {
    let fds = ChannelFds::create::<T>(config)?;
    let (a, b) = socket_pair()?;
    let theirs = fds.peer_copy()?;
    Ok((
        fds.into_producer(a, config.spin)?,
        theirs.into_consumer(b, config.spin)?,
    ))
}

/// The link of a channel: a connected `SOCK_SEQPACKET` pair.
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    crate::sys::socketpair(libc::SOCK_SEQPACKET)
}

/// Counters of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Wake-ups this end wrote to the peer's signal fd.
    pub wakeups_sent: u64,
}

/// The producing end of a channel.
#[derive(Debug)]
pub struct Producer<T> {
    ring: Writer<T>,
    waiter: Waiter,
}

/// The consuming end of a channel.
#[derive(Debug)]
pub struct Consumer<T> {
    ring: Reader<T>,
    waiter: Waiter,
}

/// What [`Producer`] and [`Consumer`] have alike, written once: building
/// the end, the peer's liveness, the fds and counters, and the event-loop
/// calls. `$peer` names the other end in the docs; `$slots`, `$sleep` and
/// `$readable` are the docs that differ.
macro_rules! endpoint_common {
    (
        $End:ident($Ring:ident),
        peer: $peer:literal,
        slots: $slots:literal,
        sleep: $sleep:literal,
        readable: $readable:literal $(,)?
    ) => {
        impl<T: Pod> $End<T> {
            /// The end over `ring`: it wakes the peer through `notify`,
            /// sleeps on `wait`, and watches the link `socket`.
            fn assemble(
                mut ring: $Ring<T>,
                notify: Signal,
                wait: Signal,
                socket: OwnedFd,
                spin: Duration,
            ) -> Self {
                let notify = Arc::new(notify);
                ring.set_notify(Some(notify.clone()));
                $End {
                    ring,
                    waiter: Waiter::new(notify, wait, socket, spin),
                }
            }

            /// Number of slots.
            pub fn capacity(&self) -> usize {
                self.ring.capacity()
            }

            /// [`Error::Disconnected`] stays itself when the peer dropped
            /// its end (it marks the ring), else becomes [`Error::PeerDied`].
            #[cold]
            fn gone(&self, e: Error) -> Error {
                match e {
                    Error::Disconnected if !self.ring.peer_closed() => Error::PeerDied,
                    e => e,
                }
            }

            #[doc = $slots]
            ///
            /// # Errors
            /// [`Error::Corrupt`] if the peer corrupted the ring's indices.
            pub fn slots(&mut self) -> Result<usize> {
                self.ring.slots()
            }

            #[doc = concat!("`true` unless the ", $peer, " is gone: it hung up (exited, was")]
            /// killed, closed the link) or broke the protocol by sending on
            /// the link. Costs one `poll` with no timeout.
            pub fn is_peer_alive(&mut self) -> bool {
                self.waiter.peer_alive()
            }

            /// Like [`is_peer_alive`](Self::is_peer_alive), with the reason.
            ///
            /// # Errors
            /// [`Error::Disconnected`] for a hang-up, [`Error::Protocol`]
            /// the first time for a peer that sent bytes on the link.
            pub fn check_peer(&mut self) -> Result<()> {
                let r = self.waiter.check_peer();
                r.map_err(|e| self.gone(e))
            }

            #[doc = concat!("The link socket: it reports a hang-up when the ", $peer, " goes away.")]
            pub fn link_fd(&self) -> BorrowedFd<'_> {
                self.waiter.socket.as_fd()
            }

            /// Counters.
            pub fn stats(&self) -> Stats {
                Stats {
                    wakeups_sent: self.waiter.notify.notify_count(),
                }
            }

            #[doc = $sleep]
            ///
            /// # Errors
            /// [`Error::Corrupt`] if the peer corrupted the ring's indices.
            pub fn prepare_sleep(&mut self) -> Result<bool> {
                self.ring.prepare_sleep()
            }

            /// Consumes pending wake-ups on [`AsFd::as_fd`] (one `read`).
            ///
            /// # Errors
            /// [`Error::Disconnected`] if the peer closed its end of a
            /// socket signal; [`Error::Io`] if the `read` fails otherwise
            /// (an empty signal is not an error).
            pub fn drain_signal(&self) -> Result<()> {
                self.waiter.wait.drain().map_err(|e| self.gone(e))
            }
        }

        impl<T> Drop for $End<T> {
            /// Marks the ring closed before the link closes, so that the
            /// peer tells this close from a death ([`Error::PeerDied`]).
            fn drop(&mut self) {
                self.ring.mark_closed();
            }
        }

        impl<T> AsFd for $End<T> {
            #[doc = $readable]
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.waiter.wait.as_fd()
            }
        }

        impl<T> AsRawFd for $End<T> {
            fn as_raw_fd(&self) -> RawFd {
                self.waiter.wait.as_raw_fd()
            }
        }
    };
}

endpoint_common!(
    Producer(Writer),
    peer: "consumer",
    slots: "Free slots right now.",
    sleep: "Announces a sleep (for event loops): `Ok(true)` means the ring is still \
            full and the consumer will signal [`AsFd::as_fd`] when it frees a slot.",
    readable: "The signal fd that becomes readable when the consumer frees slots while \
               this end sleeps.",
);

endpoint_common!(
    Consumer(Reader),
    peer: "producer",
    slots: "Items ready right now.",
    sleep: "Announces a sleep (for event loops): `Ok(true)` means the ring is still \
            empty and the producer will signal [`AsFd::as_fd`] on its next commit.",
    readable: "The signal fd that becomes readable when the producer commits items while \
               this end sleeps.",
);

impl<T: Pod> Producer<T> {
    /// Appends one item without blocking: [`Error::Full`] if there is no
    /// room, [`Error::Disconnected`] instead once the consumer is known to
    /// be gone. No system call unless the consumer sleeps (then one
    /// `write`), whatever the outcome.
    ///
    /// Known to be gone: a wake-up to it failed (a consumer that died or
    /// left while waiting for items: the default
    /// [`SignalKind::Socket`](crate::SignalKind::Socket) signal reports its closed end), or
    /// [`is_peer_alive`](Self::is_peer_alive) /
    /// [`check_peer`](Self::check_peer) / a blocking call saw it go. A
    /// consumer that died while busy leaves nothing this call can see
    /// without a system call: a producer that keeps getting `Full` calls
    /// [`is_peer_alive`](Self::is_peer_alive) (one `poll`) now and then.
    ///
    /// # Errors
    /// [`Error::Full`] if no slot is free; [`Error::Disconnected`] instead
    /// once the consumer is known to be gone; [`Error::Corrupt`] if the
    /// consumer corrupted the ring's indices.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::{channel, Config, Error};
    ///
    /// let (mut tx, mut rx) = channel::pair::<u32>(&Config::new(2))?;
    /// tx.try_push(1)?;
    /// tx.try_push(2)?;
    /// assert!(matches!(tx.try_push(3), Err(Error::Full)));
    /// assert_eq!(rx.try_pop()?, 1);
    /// tx.try_push(3)?; // room again
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_push(&mut self, value: T) -> Result<()> {
        match self.ring.push(value) {
            Err(Error::Full) => {
                let e = self.waiter.stalled(Error::Full);
                Err(self.gone(e))
            }
            r => r,
        }
    }

    /// Appends as many items of `src` as fit, without blocking; returns how many.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer corrupted the ring's indices. A
    /// full ring is not an error: `0`.
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize> {
        self.ring.push_slice(src)
    }

    /// Up to `max` free slots to fill (by copies); see [`ring::WriteChunk`]. Its
    /// commit wakes the consumer if it sleeps.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer corrupted the ring's indices. A
    /// full ring is not an error: the chunk is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::{channel, Config};
    ///
    /// let (mut tx, mut rx) = channel::pair::<u32>(&Config::new(8))?;
    /// let mut chunk = tx.write_chunk(3)?;
    /// chunk.write(0, &[1, 2, 3]);
    /// chunk.commit_all();
    /// let mut out = [0; 8];
    /// assert_eq!(rx.pop_slice(&mut out)?, 3);
    /// assert_eq!(out[..3], [1, 2, 3]);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn write_chunk(&mut self, max: usize) -> Result<ring::WriteChunk<'_, T>> {
        self.ring.write_chunk(max)
    }

    /// Waits until at least one slot is free (`None`: no timeout).
    ///
    /// # Errors
    /// [`Error::Timeout`] if none was free in time; [`Error::Disconnected`]
    /// once the consumer is gone; [`Error::Protocol`] if it sent bytes on
    /// the link; [`Error::Corrupt`] if it corrupted the ring's indices;
    /// [`Error::Io`] if waiting on the signal failed.
    pub fn wait_writable(&mut self, timeout: Option<Duration>) -> Result<()> {
        let r = self.waiter.wait_until(&mut self.ring, timeout);
        r.map_err(|e| self.gone(e))
    }

    /// Appends one item, waiting for room up to `timeout` (`None`: no
    /// timeout). Spins for [`Config::spin`] before it sleeps.
    ///
    /// # Errors
    /// As [`wait_writable`](Self::wait_writable): [`Error::Timeout`],
    /// [`Error::Disconnected`], [`Error::Protocol`], [`Error::Corrupt`],
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::{channel, Config, Error};
    ///
    /// let (mut tx, rx) = channel::pair::<u32>(&Config::new(1))?;
    /// tx.push_blocking(1, Some(Duration::from_secs(5)))?;
    /// // Full, and nobody pops: the wait ends with the timeout.
    /// let r = tx.push_blocking(2, Some(Duration::from_millis(10)));
    /// assert!(matches!(r, Err(Error::Timeout)));
    /// drop(rx); // the consumer goes: the wait ends at once
    /// let r = tx.push_blocking(2, None);
    /// assert!(matches!(r, Err(Error::Disconnected)));
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn push_blocking(&mut self, value: T, timeout: Option<Duration>) -> Result<()> {
        match self.ring.push(value) {
            Err(Error::Full) => {
                self.wait_writable(timeout)?;
                self.ring.push(value)
            }
            r => r,
        }
    }

    /// Appends all of `src`, waiting for room up to `timeout` in all.
    ///
    /// # Errors
    /// As [`wait_writable`](Self::wait_writable); the items before the
    /// failure were sent.
    pub fn push_all(&mut self, mut src: &[T], timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        while !src.is_empty() {
            let n = self.ring.push_slice(src)?;
            src = &src[n..];
            if !src.is_empty() {
                let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
                self.wait_writable(left)?;
            }
        }
        Ok(())
    }

    /// A [`PeerWatch`] of the consumer, for another thread: once it saw the
    /// consumer go, [`try_push`](Self::try_push) on a full ring returns
    /// [`Error::Disconnected`] instead of [`Error::Full`], with no system
    /// call of its own. How a real-time producer learns that a consumer died
    /// while the ring was full (no wake-up write, which would have told it,
    /// happens then).
    ///
    /// # Errors
    /// [`Error::Io`] if the link cannot be duplicated.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::{channel, Config, Error};
    ///
    /// let (mut tx, rx) = channel::pair::<u32>(&Config::new(2))?;
    /// let watch = tx.peer_watch()?;
    /// tx.try_push(1)?;
    /// tx.try_push(2)?;
    /// drop(rx); // the consumer dies with the ring full
    /// assert!(matches!(tx.try_push(3), Err(Error::Full))); // nobody looked yet
    /// assert!(!watch.check()); // the control thread looks: gone
    /// assert!(matches!(tx.try_push(3), Err(Error::Disconnected)));
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn peer_watch(&self) -> Result<PeerWatch> {
        self.waiter.watch()
    }
}

impl<T: Pod> Consumer<T> {
    /// Removes the oldest item without blocking: [`Error::Empty`] if none,
    /// [`Error::Disconnected`] instead once the producer is known to be gone
    /// (as for [`Producer::try_push`]: a failed wake-up of a producer
    /// waiting for room, or a liveness check or wait that saw it go) and
    /// every item it committed was popped. No system call unless the
    /// producer sleeps (then one `write`), whatever the outcome.
    ///
    /// # Errors
    /// [`Error::Empty`] if no item is ready; [`Error::Disconnected`]
    /// instead once the producer is known to be gone and its items were
    /// popped; [`Error::Corrupt`] if the producer corrupted the ring's
    /// indices.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::{channel, Config, Error};
    ///
    /// let (mut tx, mut rx) = channel::pair::<u32>(&Config::new(4))?;
    /// assert!(matches!(rx.try_pop(), Err(Error::Empty)));
    /// tx.try_push(7)?;
    /// assert_eq!(rx.try_pop()?, 7);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn try_pop(&mut self) -> Result<T> {
        match self.ring.pop() {
            Err(Error::Empty) => match self.waiter.stalled(Error::Empty) {
                // What the producer committed before it left comes first.
                Error::Disconnected => match self.ring.pop() {
                    Err(Error::Empty) => Err(self.gone(Error::Disconnected)),
                    r => r,
                },
                e => Err(e),
            },
            r => r,
        }
    }

    /// Removes up to `dst.len()` items without blocking; returns how many.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer corrupted the ring's indices. An
    /// empty ring is not an error: `0`.
    #[inline]
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize> {
        self.ring.pop_slice(dst)
    }

    /// Up to `max` items to read (by copies); see [`ring::ReadChunk`]. Its release
    /// wakes the producer if it sleeps.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer corrupted the ring's indices. An
    /// empty ring is not an error: the chunk is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::{channel, Config};
    ///
    /// let (mut tx, mut rx) = channel::pair::<u32>(&Config::new(8))?;
    /// tx.push_slice(&[1, 2, 3])?;
    /// let chunk = rx.read_chunk(8)?;
    /// assert_eq!(chunk.len(), 3);
    /// assert_eq!(chunk.get(2), 3);
    /// chunk.release_all();
    /// assert_eq!(rx.slots()?, 0);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn read_chunk(&mut self, max: usize) -> Result<ring::ReadChunk<'_, T>> {
        self.ring.read_chunk(max)
    }

    /// Waits until at least one item is ready (`None`: no timeout). Items the
    /// producer committed before it went away are still delivered; after them
    /// this returns [`Error::Disconnected`].
    ///
    /// # Errors
    /// [`Error::Timeout`] if none was ready in time; [`Error::Disconnected`]
    /// once the producer is gone and its items were taken;
    /// [`Error::Protocol`] if it sent bytes on the link; [`Error::Corrupt`]
    /// if it corrupted the ring's indices; [`Error::Io`] if waiting on the
    /// signal failed.
    pub fn wait_readable(&mut self, timeout: Option<Duration>) -> Result<()> {
        let r = self.waiter.wait_until(&mut self.ring, timeout);
        r.map_err(|e| self.gone(e))
    }

    /// Removes the oldest item, waiting up to `timeout` for one (`None`: no
    /// timeout). Spins for [`Config::spin`] before it sleeps.
    ///
    /// # Errors
    /// As [`wait_readable`](Self::wait_readable): [`Error::Timeout`],
    /// [`Error::Disconnected`], [`Error::Protocol`], [`Error::Corrupt`],
    /// [`Error::Io`].
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::{channel, Config, Error};
    ///
    /// let (mut tx, mut rx) = channel::pair::<u32>(&Config::new(4))?;
    /// tx.try_push(5)?;
    /// drop(tx); // the producer goes: what it committed still arrives
    /// assert_eq!(rx.pop_blocking(Some(Duration::from_secs(5)))?, 5);
    /// let r = rx.pop_blocking(Some(Duration::from_secs(5)));
    /// assert!(matches!(r, Err(Error::Disconnected)));
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn pop_blocking(&mut self, timeout: Option<Duration>) -> Result<T> {
        match self.ring.pop() {
            Err(Error::Empty) => {
                self.wait_readable(timeout)?;
                self.ring.pop()
            }
            r => r,
        }
    }

    /// Removes between 1 and `dst.len()` items, waiting up to `timeout` for the
    /// first; returns how many.
    ///
    /// # Errors
    /// As [`wait_readable`](Self::wait_readable).
    pub fn pop_slice_blocking(
        &mut self,
        dst: &mut [T],
        timeout: Option<Duration>,
    ) -> Result<usize> {
        if dst.is_empty() {
            return Ok(0);
        }
        let n = self.ring.pop_slice(dst)?;
        if n > 0 {
            return Ok(n);
        }
        self.wait_readable(timeout)?;
        self.ring.pop_slice(dst)
    }

    /// A [`PeerWatch`] of the producer for another thread (see
    /// [`Producer::peer_watch`]): once it saw the producer go,
    /// [`try_pop`](Self::try_pop) on an empty ring returns
    /// [`Error::Disconnected`].
    ///
    /// # Errors
    /// [`Error::Io`] if the link cannot be duplicated.
    pub fn peer_watch(&self) -> Result<PeerWatch> {
        self.waiter.watch()
    }
}
