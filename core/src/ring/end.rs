//! What both ends of a ring hold and do alike, written once: the pointers
//! into the region, this end's index and its cache of the other end's, the
//! poisoned flag, and moving the index and sleeping through the
//! [`wake`](super::wake) protocol. [`Writer`](super::Writer) and
//! [`Reader`](super::Reader) add what differs: how the other end's index is
//! validated, and what "ready" means (free slots, or items).

use std::sync::Arc;

use super::claim::End;
use super::slots::Shared;
use super::wake::{Notify, Wake, Words};
use crate::sync::Ordering;
use crate::{Error, Result};

/// The state of one end of a ring (see the module docs): the writer's if
/// `WRITER`, else the reader's (a constant, so that every choice between
/// the two is made at compile time).
pub(super) struct EndState<T, const WRITER: bool> {
    pub(super) shared: Shared<T>,
    /// This end's index: items published (writer) or released (reader) so far.
    pub(super) own: u64,
    /// The other end's index as last read (and validated).
    pub(super) peer: u64,
    poisoned: bool,
    wake: Wake,
}

/// The writer's state.
pub(super) type WriterState<T> = EndState<T, true>;
/// The reader's state.
pub(super) type ReaderState<T> = EndState<T, false>;

impl<T, const WRITER: bool> EndState<T, WRITER> {
    /// Which end this is.
    const END: End = if WRITER { End::Writer } else { End::Reader };

    /// An end over `shared`, at the indices found (and validated) at attach.
    pub(super) fn new(shared: Shared<T>, own: u64, peer: u64) -> Self {
        EndState {
            shared,
            own,
            peer,
            poisoned: false,
            wake: Wake::default(),
        }
    }

    /// The words this end uses in the index and sleep/wake protocols.
    #[inline]
    fn words(&self) -> Words<'_> {
        self.shared.words(Self::END)
    }

    /// Number of slots.
    #[inline]
    pub(super) fn capacity(&self) -> u64 {
        self.shared.capacity
    }

    /// `true` once the peer corrupted an index.
    pub(super) fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// `true` once the other end said it closed (rather than died). Only a
    /// report: a hostile peer may set or clear it at will.
    pub(super) fn peer_closed(&self) -> bool {
        self.words().peer_closed.load(Ordering::Acquire) != 0
    }

    /// Tells the other end this one closes (see [`peer_closed`](Self::peer_closed)).
    pub(super) fn mark_closed(&self) {
        self.words().own_closed.store(1, Ordering::Release);
    }

    /// Sets the hook called when a move of our index finds the other end
    /// asleep.
    pub(super) fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.wake.set_notify(notify);
    }

    /// [`Error::Corrupt`] once poisoned.
    #[inline]
    pub(super) fn healthy(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Corrupt("endpoint poisoned by an earlier corruption"));
        }
        Ok(())
    }

    /// Free slots (writer) or ready items (reader) as far as the cached
    /// index of the other end tells.
    #[inline]
    pub(super) fn cached_ready(&self) -> usize {
        if WRITER {
            (self.capacity() - (self.own - self.peer)) as usize
        } else {
            (self.peer - self.own) as usize
        }
    }

    /// Free slots (writer) or ready items (reader): from the cache if it
    /// tells at least `want`, else after a [`refresh`](Self::refresh).
    #[inline]
    pub(super) fn ready(&mut self, want: usize) -> Result<usize> {
        self.healthy()?;
        let ready = self.cached_ready();
        if ready >= want {
            return Ok(ready);
        }
        self.refresh()?;
        Ok(self.cached_ready())
    }

    /// Reads the other end's index and validates it before it replaces the
    /// cache: an index only moves forward, the consumer's up to the
    /// producer's, the producer's at most `capacity` past the consumer's.
    /// Anything else poisons this end.
    #[inline]
    pub(super) fn refresh(&mut self) -> Result<()> {
        self.healthy()?;
        let peer = self.words().peer_index.load(Ordering::Acquire);
        let valid = if WRITER {
            peer >= self.peer && peer <= self.own
        } else {
            peer >= self.peer && peer - self.own <= self.capacity()
        };
        if !valid {
            self.poisoned = true;
            return Err(Error::Corrupt(if WRITER {
                "consumer index out of range"
            } else {
                "producer index out of range"
            }));
        }
        self.peer = peer;
        Ok(())
    }

    /// Moves our index `n` items on, publishes it and wakes the other end if
    /// it sleeps.
    #[inline]
    pub(super) fn advance(&mut self, n: usize) {
        self.own += n as u64;
        let words = self.shared.words(Self::END);
        self.wake.publish(words, self.own);
    }

    /// Announces a sleep of this end; the caller then looks at the ring
    /// again and passes what it found to [`sleep_unless`](Self::sleep_unless)
    /// (an error meanwhile leaves the announcement standing).
    pub(super) fn announce_sleep(&mut self) {
        let words = self.shared.words(Self::END);
        self.wake.announce(words);
    }

    /// After [`announce_sleep`](Self::announce_sleep) and a new look that
    /// found `ready` free slots (writer) or items (reader): `true` to go to
    /// sleep (none), else the announcement is withdrawn and `false`.
    pub(super) fn sleep_unless(&mut self, ready: usize) -> bool {
        let words = self.shared.words(Self::END);
        self.wake.sleep_unless(words, ready)
    }

    /// Withdraws the sleep announcement, if one stands.
    pub(super) fn cancel_sleep(&mut self) {
        let words = self.shared.words(Self::END);
        self.wake.withdraw(words);
    }

    /// The `Debug` output of the end called `name`, whose own index is
    /// called `own` and the cache of the other's `peer`.
    pub(super) fn debug(
        &self,
        f: &mut std::fmt::Formatter<'_>,
        name: &str,
        own: &str,
        peer: &str,
    ) -> std::fmt::Result {
        f.debug_struct(name)
            .field("capacity", &self.shared.capacity)
            .field(own, &self.own)
            .field(peer, &self.peer)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

/// What [`Writer`](super::Writer) and [`Reader`](super::Reader) have alike,
/// written once: the struct over its [`EndState`], `Send`, `Debug`, the
/// constructor, and the public calls that only forward to the state.
/// `$own`/`$peer` name the indices in `Debug`; `$other` names the other
/// end, `$moves` what it does to wake this one, `$stall` what this end
/// waits out (full, empty) and `$slots` what it counts, in the docs.
macro_rules! ring_end {
    (
        $(#[$doc:meta])*
        $End:ident($State:ident),
        own: $own:literal,
        peer: $peer:literal,
        other: $other:literal,
        moves: $moves:literal,
        stall: $stall:literal,
        slots: $slots:literal $(,)?
    ) => {
        $(#[$doc])*
        pub struct $End<T> {
            pub(super) end: $State<T>,
        }

        // SAFETY: the ring is single-producer single-consumer: an end is owned
        // by one thread at a time, and the region it points into is
        // `Send + Sync`.
        unsafe impl<T: Send> Send for $End<T> {}

        impl<T> std::fmt::Debug for $End<T> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.end.debug(f, stringify!($End), $own, $peer)
            }
        }

        impl<T> $End<T> {
            #[doc = concat!("An end over `shared` with its own index (`", $own, "`) and the")]
            /// other end's as found (and validated) at attach.
            pub(super) fn new(shared: Shared<T>, own: u64, peer: u64) -> Self {
                $End {
                    end: EndState::new(shared, own, peer),
                }
            }

            #[doc = concat!("`true` once the ", $other, " said it closes the ring ([`mark_closed`](Self::mark_closed)),")]
            /// rather than dying with it (a process killed or crashed never
            /// says so). A report of the other side's, which may lie.
            pub fn peer_closed(&self) -> bool {
                self.end.peer_closed()
            }

            #[doc = concat!("Tells the ", $other, " that this end closes the ring for good (a channel's")]
            /// endpoints do when they are dropped), so that it can tell a close
            /// from a death: one store into the region.
            pub fn mark_closed(&self) {
                self.end.mark_closed()
            }
        }

        impl<T: Pod> $End<T> {
            #[doc = concat!("Sets the hook called when this end moves its index while the ", $other)]
            /// sleeps.
            pub fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
                self.end.set_notify(notify);
            }

            /// Number of slots.
            pub fn capacity(&self) -> usize {
                self.end.capacity() as usize
            }

            /// `true` once the peer corrupted an index; every call then fails.
            pub fn is_poisoned(&self) -> bool {
                self.end.is_poisoned()
            }

            #[doc = concat!($slots, " right now (reads the ", $other, "'s index).")]
            ///
            /// # Errors
            #[doc = concat!("[`Error::Corrupt`] if the ", $other, "'s index is out of range (this end is")]
            /// poisoned from then on).
            pub fn slots(&mut self) -> Result<usize> {
                self.end.refresh()?;
                Ok(self.end.cached_ready())
            }

            #[doc = concat!("Announces that this end is about to sleep because the ring is ", $stall, ".")]
            #[doc = concat!("Returns `Ok(true)` if it is still ", $stall, " after the announcement")]
            #[doc = concat!("(go to sleep: the ", $other, " will notify after its next ", $moves, "),")]
            /// `Ok(false)` if that changed meanwhile (the announcement is
            /// withdrawn; do not sleep).
            ///
            /// Every call announces a new sleep, so calling it again after a
            /// wake-up without [`cancel_sleep`](Self::cancel_sleep) is safe
            /// (event loops do).
            ///
            /// # Errors
            #[doc = concat!("[`Error::Corrupt`] if the ", $other, "'s index is out of range (this end is")]
            /// poisoned from then on; the announcement stands).
            pub fn prepare_sleep(&mut self) -> Result<bool> {
                self.end.announce_sleep();
                let ready = self.end.ready(1)?;
                Ok(self.end.sleep_unless(ready))
            }

            /// Withdraws the sleep announcement (after waking up, for
            /// whatever reason).
            pub fn cancel_sleep(&mut self) {
                self.end.cancel_sleep();
            }
        }
    };
}

pub(super) use ring_end;
