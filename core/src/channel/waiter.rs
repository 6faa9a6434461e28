//! [`Waiter`]: the waiting half of an endpoint, the same for both ends (the
//! wake-up signals, the link to the peer, spin-then-sleep, the peer's
//! liveness), with [`SpinOdds`], which adapts the spin, and [`PeerWatch`],
//! which lets another thread tell the endpoint that the peer went.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::ring::{Reader, Writer};
use crate::signal::{Signal, Woken};
use crate::{Error, Result};

/// The waiting half of an endpoint, the same for both: the two wake-up
/// signals, the link socket to the peer, the spin-then-sleep wait
/// ([`wait_until`](Self::wait_until)) and what this end knows of the peer's
/// liveness (which ends a wait, and turns `Full`/`Empty` into
/// [`Error::Disconnected`]).
#[derive(Debug)]
pub(super) struct Waiter {
    /// The signal this end notifies.
    pub(super) notify: Arc<Signal>,
    /// The signal this end waits on.
    pub(super) wait: Signal,
    /// The link to the peer: its hang-up means the peer is gone.
    pub(super) socket: OwnedFd,
    /// Longest spin before a sleep ([`Config::spin`]).
    spin: Duration,
    /// How often the spin paid off lately, see [`SpinOdds`].
    odds: SpinOdds,
    /// A wake-up is left in `wait` to be drained before the next sleep.
    drain_pending: bool,
    /// The peer is known to be gone.
    gone: bool,
    /// Set by a [`PeerWatch`] (on another thread) that saw the peer go.
    watched_gone: Arc<AtomicBool>,
}

/// Whether spinning before a sleep pays off: an average of how often a spin
/// ended with the ring ready (not with the window spent). Waits that are
/// longer than the spin window (frames far apart) stop the spinning, which
/// would only burn CPU before the same sleep; one wait in
/// [`SpinOdds::PROBE`] still spins, so a stream that speeds up again is
/// noticed.
#[derive(Debug, Clone, Copy)]
struct SpinOdds {
    /// Fraction of recent spins that saw the ring ready, in 1/65536.
    rate: u32,
    waits: u32,
    /// Pauses between two looks at the ring while spinning, see
    /// [`SpinOdds::found`].
    poll_every: u32,
}

impl SpinOdds {
    const ONE: u32 = 1 << 16;
    /// One wait in this many spins whatever the odds.
    const PROBE: u32 = 64;

    /// Fewest and most pauses between two looks at the ring (how long a
    /// pause takes depends on the CPU; see the README's benchmark section).
    const POLL_MIN: u32 = 8;
    const POLL_MAX: u32 = 512;
    /// Largest batch worth letting pile up between two looks, bytes.
    const BATCH_BYTES: usize = 32 << 10;
    /// Pauses between looks of a wait for room.
    const POLL_FIXED: u32 = 64;

    pub(super) fn new() -> Self {
        SpinOdds {
            rate: Self::ONE,
            waits: 0,
            poll_every: 32,
        }
    }

    /// A spin ended with `ready` items in the ring at its `looks`-th look;
    /// `batch` is the most items worth letting pile up. Found at the first
    /// or second look: items come as fast as we look or faster, and every
    /// look pulls the cache line the peer writes its index to away from it,
    /// which slows a dense stream down a lot (the figures are in the
    /// README's benchmark section): look less often, so that items come in
    /// batches, until a batch reaches `batch` (32 KiB or an eighth of the
    /// ring: bigger ones make this side fall behind). Found one item after
    /// many looks: a hand-over (a returned slot, a frame), which the sooner
    /// we see the sooner the peer gets an answer: look more often.
    fn found(&mut self, ready: usize, looks: u32, batch: usize) {
        if ready >= batch.max(2) {
            self.poll_every = (self.poll_every / 2).max(Self::POLL_MIN);
        } else if looks <= 2 {
            self.poll_every = (self.poll_every * 2).min(Self::POLL_MAX);
        } else if ready == 1 {
            self.poll_every = (self.poll_every / 2).max(Self::POLL_MIN);
        }
    }

    /// Whether the next wait should spin.
    fn spin_next(&mut self) -> bool {
        self.waits = self.waits.wrapping_add(1);
        self.rate >= Self::ONE / 2 || self.waits % Self::PROBE == 0
    }

    /// A spin ended: ready (`hit`) or the window spent.
    fn record(&mut self, hit: bool) {
        // Exponential average over about the last 8 spins.
        self.rate = self.rate - self.rate / 8 + if hit { Self::ONE / 8 } else { 0 };
    }
}

/// What a blocking wait should look at.
pub(super) trait Ready {
    /// Items (reader) or free slots (writer) right now: the operation can
    /// proceed when it is not 0.
    fn ready(&mut self) -> Result<usize>;
    fn capacity(&self) -> usize;
    /// Whether a spin adapts how often it looks (see [`SpinOdds::found`]):
    /// a consumer waiting for items does; a producer waiting for room looks
    /// at a fixed pace (the consumer it waits for is the bottleneck then).
    const ADAPTS: bool;
    /// Bytes per item.
    const ITEM: usize;
    fn prepare_sleep(&mut self) -> Result<bool>;
    fn cancel_sleep(&mut self);
}

impl<T: Pod> Ready for Writer<T> {
    fn ready(&mut self) -> Result<usize> {
        self.slots()
    }
    fn capacity(&self) -> usize {
        Writer::capacity(self)
    }
    const ADAPTS: bool = false;
    const ITEM: usize = std::mem::size_of::<T>();
    fn prepare_sleep(&mut self) -> Result<bool> {
        Writer::prepare_sleep(self)
    }
    fn cancel_sleep(&mut self) {
        Writer::cancel_sleep(self)
    }
}

impl<T: Pod> Ready for Reader<T> {
    fn ready(&mut self) -> Result<usize> {
        self.slots()
    }
    fn capacity(&self) -> usize {
        Reader::capacity(self)
    }
    const ADAPTS: bool = true;
    const ITEM: usize = std::mem::size_of::<T>();
    fn prepare_sleep(&mut self) -> Result<bool> {
        Reader::prepare_sleep(self)
    }
    fn cancel_sleep(&mut self) {
        Reader::cancel_sleep(self)
    }
}

/// `Ok` if `ring` is ready after all (what arrived before a timeout or the
/// peer's exit is still delivered), else `err`.
fn ready_or<R: Ready>(ring: &mut R, err: Error) -> Result<()> {
    if ring.ready()? > 0 {
        Ok(())
    } else {
        Err(err)
    }
}

impl Waiter {
    /// A waiter that notifies `notify`, waits on `wait` and watches the link
    /// `socket`.
    pub(super) fn new(notify: Arc<Signal>, wait: Signal, socket: OwnedFd, spin: Duration) -> Self {
        Waiter {
            notify,
            wait,
            socket,
            spin,
            odds: SpinOdds::new(),
            drain_pending: false,
            gone: false,
            watched_gone: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Spins, then sleeps, until `ring.ready()`, the timeout, or the peer's exit.
    pub(super) fn wait_until<R: Ready>(
        &mut self,
        ring: &mut R,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if ring.ready()? > 0 {
            return Ok(());
        }
        if self.gone {
            return Err(Error::Disconnected);
        }
        let start = Instant::now();
        let deadline = timeout.map(|t| start + t);
        let spin = timeout.map_or(self.spin, |t| t.min(self.spin));
        if !spin.is_zero() && self.odds.spin_next() && self.spin_for(ring, start, spin)? {
            return Ok(());
        }
        self.sleep(ring, deadline)
    }

    /// Busy-polls `ring` until it is ready (`Ok(true)`) or `window` since
    /// `start` is spent (`Ok(false)`), and records how the spin went in
    /// [`SpinOdds`].
    fn spin_for<R: Ready>(
        &mut self,
        ring: &mut R,
        start: Instant,
        window: Duration,
    ) -> Result<bool> {
        let mut since_clock = 0u32;
        let mut looks = 0u32;
        let poll_every = if R::ADAPTS {
            self.odds.poll_every
        } else {
            SpinOdds::POLL_FIXED
        };
        loop {
            for _ in 0..poll_every {
                std::hint::spin_loop();
            }
            let ready = ring.ready()?;
            looks = looks.saturating_add(1);
            if ready > 0 {
                self.odds.record(true);
                if R::ADAPTS {
                    let batch = (ring.capacity() / 8).min(SpinOdds::BATCH_BYTES / R::ITEM.max(1));
                    self.odds.found(ready, looks, batch);
                }
                return Ok(true);
            }
            // Read the clock every 1024 pauses only: cheap, not free.
            since_clock += poll_every;
            if since_clock >= 1024 {
                since_clock = 0;
                if start.elapsed() >= window {
                    self.odds.record(false);
                    return Ok(false);
                }
            }
        }
    }

    /// Announces a sleep and waits on the signal and the link, again after
    /// each wake-up that found the ring still not ready, until it is, the
    /// `deadline` passes or the peer goes.
    fn sleep<R: Ready>(&mut self, ring: &mut R, deadline: Option<Instant>) -> Result<()> {
        // The wake-up that ended the last sleep, left in the fd so that the
        // caller got its item one `read` sooner: consume it before sleeping
        // again (the peer writes at most one per announced sleep, and none
        // until the next announcement).
        if std::mem::take(&mut self.drain_pending) {
            self.wait.drain()?;
        }
        loop {
            if !ring.prepare_sleep()? {
                return Ok(());
            }
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let woken = self.wait.wait_with(remaining, Some(self.socket.as_fd()));
            ring.cancel_sleep();
            match woken? {
                Woken::Signalled => {
                    if ring.ready()? > 0 {
                        self.drain_pending = true;
                        return Ok(());
                    }
                    self.wait.drain()?;
                }
                Woken::Extra => {
                    self.check_link()?;
                    return ready_or(ring, Error::Disconnected);
                }
                Woken::Timeout => return ready_or(ring, Error::Timeout),
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return ready_or(ring, Error::Timeout);
            }
        }
    }

    /// The link became readable or hung up: either way the peer is treated as
    /// gone from now on. A message (which the channel protocol does not allow
    /// after the handshake) without a hang-up is a protocol violation.
    fn check_link(&mut self) -> Result<()> {
        self.gone = true;
        match link_events(self.socket.as_fd()) {
            Some(ev) if ev & HANG_UP == 0 && ev & libc::POLLIN != 0 => Err(Error::Protocol(
                "peer sent a message on the link after the handshake".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Asks the kernel whether the peer still holds its end and kept quiet:
    /// one `poll` with no timeout. A hang-up (whatever the peer left unread
    /// on either side) or any byte from the peer (a protocol violation) marks
    /// it gone for good.
    pub(super) fn peer_alive(&mut self) -> bool {
        if self.gone {
            return false;
        }
        if link_stirred(self.socket.as_fd()) {
            self.gone = true;
        }
        !self.gone
    }

    /// A non-blocking call found the ring full (empty): `would_block` unless
    /// the peer is known to be gone, then [`Error::Disconnected`]. Known,
    /// without a system call, once a wake-up to it failed (its end of a
    /// socket signal is closed) or a liveness check or a wait saw it go.
    #[cold]
    pub(super) fn stalled(&mut self, would_block: Error) -> Error {
        if self.gone || self.notify.peer_gone() || self.watched_gone.load(Ordering::Acquire) {
            self.gone = true;
            return Error::Disconnected;
        }
        would_block
    }

    /// A watch of the link for another thread, see [`PeerWatch`].
    pub(super) fn watch(&self) -> Result<PeerWatch> {
        Ok(PeerWatch {
            socket: Arc::new(
                self.socket
                    .try_clone()
                    .map_err(|e| Error::io("dup link", e))?,
            ),
            gone: self.watched_gone.clone(),
        })
    }

    /// Why the peer is gone, if it is (see [`Producer::check_peer`]).
    pub(super) fn check_peer(&mut self) -> Result<()> {
        if self.gone {
            return Err(Error::Disconnected);
        }
        match link_events(self.socket.as_fd()) {
            None | Some(0) => Ok(()),
            Some(_) => {
                self.check_link()?;
                Err(Error::Disconnected)
            }
        }
    }
}

/// Watches, from another thread (a control thread, an event loop), whether a
/// channel's peer is still there, so that the endpoint's non-blocking calls
/// learn it without a system call of their own: see
/// [`Producer::peer_watch`](super::Producer::peer_watch). Cheap to clone; holds a duplicate of the link.
#[derive(Debug, Clone)]
pub struct PeerWatch {
    socket: Arc<OwnedFd>,
    gone: Arc<AtomicBool>,
}

impl PeerWatch {
    /// `true` while the peer holds its end and kept quiet (one `poll` with no
    /// timeout); once it hung up or sent bytes on the link, `false` for good,
    /// and the endpoint reports [`Error::Disconnected`] where it would report
    /// `Full` or `Empty`.
    pub fn check(&self) -> bool {
        if self.gone.load(Ordering::Acquire) {
            return false;
        }
        if link_stirred(self.socket.as_fd()) {
            self.gone.store(true, Ordering::Release);
        }
        !self.gone.load(Ordering::Acquire)
    }

    /// Whether a [`check`](Self::check) saw the peer go (no system call).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }
}

impl AsFd for PeerWatch {
    /// The link: it reports a hang-up (readable) when the peer goes away,
    /// for a poller that then calls [`PeerWatch::check`].
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Events that end a link: the peer closed (`POLLHUP`, `POLLRDHUP`), or left
/// with our data unread (`POLLERR`: reset).
const HANG_UP: libc::c_short = libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR | libc::POLLNVAL;

/// Whether anything happened on the link: a hang-up, or a byte from the
/// peer (a protocol violation after the handshake). Either way the peer is
/// gone for good.
fn link_stirred(fd: BorrowedFd<'_>) -> bool {
    link_events(fd).is_some_and(|ev| ev != 0)
}

/// The link's poll events right now (`None` if poll failed): one `poll`
/// with no timeout, the only way this module looks at the link without
/// waiting.
fn link_events(fd: BorrowedFd<'_>) -> Option<libc::c_short> {
    crate::sys::peek_events(fd, libc::POLLIN | libc::POLLRDHUP).ok()
}

#[cfg(test)]
mod tests {
    use super::SpinOdds;

    #[test]
    fn polling_backs_off_for_dense_streams_and_tightens_for_hand_overs() {
        let mut odds = SpinOdds::new();
        let start = odds.poll_every;
        // Items ready at the first look: look less often, up to the bound.
        odds.found(3, 1, 16);
        assert_eq!(odds.poll_every, start * 2);
        for _ in 0..20 {
            odds.found(10, 1, 16);
        }
        assert_eq!(odds.poll_every, SpinOdds::POLL_MAX);
        // A batch as big as allowed: look more often.
        odds.found(16, 1, 16);
        assert_eq!(odds.poll_every, SpinOdds::POLL_MAX / 2);
        // One item after many looks (a hand-over): look as often as allowed.
        for _ in 0..20 {
            odds.found(1, 40, 16);
        }
        assert_eq!(odds.poll_every, SpinOdds::POLL_MIN);
        // One item at the first look: a stream as fast as we look.
        odds.found(1, 1, 16);
        assert_eq!(odds.poll_every, SpinOdds::POLL_MIN * 2);
    }
}
