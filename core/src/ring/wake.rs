//! The sleep/wake protocol between the two ends, written once for both.
//!
//! A side that finds the ring full (writer) or empty (reader) announces a
//! sleep in a word of the other side's line ([`Wake::announce`]), fences,
//! and looks at the ring again; only if it is still full (empty) does it
//! sleep ([`Wake::sleep_unless`]). The other side, after each move of its
//! index ([`Wake::publish`]), fences, reads that word and calls its
//! [`Notify`] hook once per announced sleep. The two `SeqCst` fences make
//! this the store-buffer litmus test fenced on both sides: either the
//! sleeper sees the new index, or the mover sees the announcement, so no
//! wake-up is lost (the loom model in `core/tests/loom.rs` checks it). A
//! busy peer that never sleeps costs no system call at all.

use std::sync::Arc;

use crate::sync::{fence, AtomicU64, Ordering};

/// Called by one end of the ring after it made progress while the other end had
/// announced that it sleeps. The channel layer implements it with an eventfd or a
/// pipe; an in-process user may implement it with a thread unpark.
pub trait Notify: Send + Sync {
    /// Wakes the sleeping side. Must not block; failures are ignored (a full
    /// eventfd or pipe means a wake-up is already pending).
    fn notify(&self);
}

/// The shared words one end touches in the index and sleep/wake protocols
/// (see [`Shared::words`](super::slots::Shared::words)).
#[derive(Clone, Copy)]
pub(super) struct Words<'a> {
    /// This end's index (the writer's write index, the reader's read
    /// index): only this end writes it.
    pub(super) index: &'a AtomicU64,
    /// The other end's index.
    pub(super) peer_index: &'a AtomicU64,
    /// Where this end announces its sleeps: a word of the other end's line,
    /// which the other end reads right after each move of its index.
    pub(super) own_sleep: &'a AtomicU64,
    /// Where the other end announces its sleeps (a word of this end's line).
    pub(super) peer_sleep: &'a AtomicU64,
    /// Set when this end is dropped (a word of the other end's line).
    pub(super) own_closed: &'a AtomicU64,
    /// Set when the other end is dropped (a word of this end's line).
    pub(super) peer_closed: &'a AtomicU64,
}

/// One side's half of the sleep/wake protocol: its own sleep sequence (it is the
/// only writer of the shared copy) and the peer's sequence it last woke.
#[derive(Debug, Default)]
struct SleepState {
    /// Our sleep sequence: odd while we announce a sleep.
    mine: u64,
    /// The peer's sleep sequence we last sent a wake-up for.
    woken: u64,
}

impl SleepState {
    /// The next odd value: a fresh sleep that the peer has not woken yet.
    fn begin(&mut self) -> u64 {
        self.mine += if self.mine % 2 == 1 { 2 } else { 1 };
        self.mine
    }

    /// Back to even (awake); `None` if we were awake already.
    fn end(&mut self) -> Option<u64> {
        (self.mine % 2 == 1).then(|| {
            self.mine += 1;
            self.mine
        })
    }

    /// After our commit or release: must we wake a peer whose sequence is `seq`?
    /// Once per sleep: a hostile peer flipping its word costs at most one
    /// wake-up write per commit.
    #[inline]
    fn should_wake(&mut self, seq: u64) -> bool {
        if seq % 2 == 1 && seq != self.woken {
            self.woken = seq;
            true
        } else {
            false
        }
    }
}

/// One end's half of the sleep/wake protocol: its sleep sequence and the
/// hook that wakes the other end.
#[derive(Default)]
pub(super) struct Wake {
    sleep: SleepState,
    notify: Option<Arc<dyn Notify>>,
}

impl Wake {
    /// Sets the hook called when a move of our index finds the other end
    /// asleep.
    pub(super) fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.notify = notify;
    }

    /// Publishes our index, now `index`, and wakes the other end if it
    /// announced a sleep we have not woken yet.
    #[inline]
    pub(super) fn publish(&mut self, words: Words<'_>, index: u64) {
        words.index.store(index, Ordering::Release);
        // Pairs with the fence in `announce` on the other end: either it sees
        // our new index, or we see its sleep (store-buffer litmus, fenced both
        // ways).
        fence(Ordering::SeqCst);
        let seq = words.peer_sleep.load(Ordering::Relaxed);
        if self.sleep.should_wake(seq) {
            if let Some(n) = &self.notify {
                n.notify();
            }
        }
    }

    /// Announces a new sleep of this end; the caller then looks at the ring
    /// again and passes what it found to [`sleep_unless`](Self::sleep_unless).
    pub(super) fn announce(&mut self, words: Words<'_>) {
        let seq = self.sleep.begin();
        words.own_sleep.store(seq, Ordering::Relaxed);
        // Pairs with the fence in `publish` on the other end.
        fence(Ordering::SeqCst);
    }

    /// After [`announce`](Self::announce) and a new look at the ring that
    /// found `ready` items (reader) or free slots (writer): `true` to go to
    /// sleep (none), else the announcement is withdrawn and `false`.
    pub(super) fn sleep_unless(&mut self, words: Words<'_>, ready: usize) -> bool {
        if ready > 0 {
            self.withdraw(words);
            return false;
        }
        true
    }

    /// Withdraws the sleep announcement, if one stands.
    pub(super) fn withdraw(&mut self, words: Words<'_>) {
        if let Some(seq) = self.sleep.end() {
            words.own_sleep.store(seq, Ordering::Relaxed);
        }
    }
}
