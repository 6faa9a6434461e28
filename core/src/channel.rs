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

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use crate::ring::{self, Notify, Reader, Region, RingLayout, TypeTag, Writer};
use crate::segment::{Access, Mapping, Segment};
use crate::signal::{Direction, Signal, SignalKind, Woken};
use crate::{Error, Result};

/// Default spin before a blocking call sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default largest segment a connecting side accepts from a listener.
pub const DEFAULT_MAX_SEGMENT: usize = 1 << 30;

/// Settings of a channel, for both ends.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ring capacity in items, rounded up to a power of two. Used by the side that
    /// creates the channel; a connecting side accepts the creator's choice within
    /// [`max_segment`](Self::max_segment).
    pub capacity: usize,
    /// Name of the element type, which both sides must agree on beside its
    /// size and alignment. `None` (the default): [`std::any::type_name`] of
    /// the element type `T` the channel is made for, so `[f32; 2]` stereo
    /// frames never meet `[i32; 2]` pairs, nor `[u64; 3]` a 24-byte struct.
    /// `type_name` output is only stable within one build: set a name of
    /// your own when the two sides are built separately (from different
    /// crates, versions or compilers), e.g. `"myapp-stereo-f32-v1"`. See
    /// [`type_name_for`](Self::type_name_for).
    pub type_name: Option<String>,
    /// Wake-up fds: [`SignalKind::Socket`] by default, the only kind no peer
    /// can turn against us (see [`crate::signal`]).
    pub signal: SignalKind,
    /// Longest a blocking call busy-polls before it sleeps (less while recent
    /// spins ran out for nothing; see the module docs). `Duration::ZERO` for
    /// callers that must never burn CPU.
    pub spin: Duration,
    /// Limit on the handshake once connected (the listener's answer; on a
    /// listener, the peer's hello), else [`Error::HandshakeTimeout`].
    pub handshake_timeout: Duration,
    /// How long [`connect_producer`](crate::handshake::connect_producer) /
    /// [`connect_consumer`](crate::handshake::connect_consumer) retry
    /// (every [`CONNECT_RETRY_EVERY`](crate::handshake::CONNECT_RETRY_EVERY))
    /// while nothing listens at the path yet, before
    /// [`Error::NotListening`]. `None` (the default): as long as
    /// [`handshake_timeout`](Self::handshake_timeout) (5 s by default).
    /// `Some(Duration::ZERO)`: one attempt. A missing directory, or a file
    /// that is not a socket at the path, fails at once ([`Error::BadPath`]).
    pub connect_timeout: Option<Duration>,
    /// Largest ring segment (bytes) a connecting side agrees to map.
    pub max_segment: usize,
}

impl Config {
    /// A configuration for a ring of `capacity` items and defaults for the rest.
    pub fn new(capacity: usize) -> Self {
        Config {
            capacity,
            type_name: None,
            signal: SignalKind::default(),
            spin: DEFAULT_SPIN,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: None,
            max_segment: DEFAULT_MAX_SEGMENT,
        }
    }

    /// Sets [`type_name`](Self::type_name): an explicit name overrides the
    /// default ([`std::any::type_name`] of the element type). At most
    /// [`NAME_MAX`](crate::handshake::NAME_MAX) bytes.
    pub fn type_name(mut self, name: impl Into<String>) -> Self {
        self.type_name = Some(name.into());
        self
    }

    /// The name both sides compare for element type `T`: the explicit
    /// [`type_name`](Self::type_name), else [`std::any::type_name::<T>()`]
    /// (a longer one than [`NAME_MAX`](crate::handshake::NAME_MAX) bytes is
    /// shortened to a hash of the whole and its tail, the same on both sides).
    ///
    /// ```
    /// use shmring::Config;
    ///
    /// assert_eq!(Config::new(8).type_name_for::<[u64; 3]>(), "[u64; 3]");
    /// assert_eq!(Config::new(8).type_name("stereo").type_name_for::<[u64; 3]>(), "stereo");
    /// ```
    pub fn type_name_for<T>(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        if let Some(name) = &self.type_name {
            return Cow::Borrowed(name);
        }
        Cow::Owned(default_type_name(std::any::type_name::<T>()))
    }

    /// The type tag (size, alignment, name hash) of `T` under this config.
    pub(crate) fn tag<T>(&self) -> TypeTag {
        TypeTag::of::<T>(&self.type_name_for::<T>())
    }

    /// Sets [`signal`](Self::signal).
    pub fn signal(mut self, kind: SignalKind) -> Self {
        self.signal = kind;
        self
    }

    /// Sets [`spin`](Self::spin).
    pub fn spin(mut self, spin: Duration) -> Self {
        self.spin = spin;
        self
    }

    /// Sets [`handshake_timeout`](Self::handshake_timeout).
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    pub fn connect_timeout(mut self, t: Duration) -> Self {
        self.connect_timeout = Some(t);
        self
    }

    pub(crate) fn connect_timeout_or_default(&self) -> Duration {
        self.connect_timeout.unwrap_or(self.handshake_timeout)
    }

    pub(crate) fn layout<T: Pod>(&self) -> Result<RingLayout> {
        RingLayout::new::<T>(self.capacity, self.tag::<T>())
    }
}

/// `name` if it fits a hello, else the FNV-1a hash of all of it in hex, a
/// `~` and as much of its tail as fits.
fn default_type_name(name: &str) -> String {
    let max = crate::handshake::NAME_MAX;
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:016x}~", TypeTag::of::<()>(name).name_hash);
    let mut start = name.len() - (max - hash.len());
    while !name.is_char_boundary(start) {
        start += 1;
    }
    hash + &name[start..]
}

impl Default for Config {
    fn default() -> Self {
        Config::new(1024)
    }
}

// SAFETY: the pointer is fixed for the mapping's lifetime and valid for `len`
// bytes; the mapping cannot lose its pages because the memfd is sealed against
// shrinking (checked on receipt by `Segment::from_fd`, set by `Segment::create`).
unsafe impl Region for Mapping {
    fn as_ptr(&self) -> *mut u8 {
        Mapping::as_ptr(self)
    }
    fn len(&self) -> usize {
        Mapping::len(self)
    }
}

impl Notify for Signal {
    fn notify(&self) {
        Signal::notify(self)
    }
}

/// The file descriptors and parameters of one channel, to move to another
/// process by any route (the [`handshake`](crate::handshake) module, D-Bus, a
/// socket of your own) and turn into an endpoint there.
#[derive(Debug)]
pub struct ChannelFds {
    /// Ring capacity (items).
    pub capacity: usize,
    /// Element type tag.
    pub tag: TypeTag,
    /// Kind of both signals.
    pub signal: SignalKind,
    /// The ring's memfd.
    pub segment: OwnedFd,
    /// The "items ready" signal (the consumer waits on it): fds in
    /// [`Signal::fds`] order.
    pub data: Vec<OwnedFd>,
    /// The "space free" signal (the producer waits on it).
    pub space: Vec<OwnedFd>,
    /// The creator's own ends of both signals of a [`SignalKind::Socket`]
    /// channel (`data`, `space`), which never travel: `data` and `space`
    /// above hold the peer's ends then. `None` on the receiving side and for
    /// the other kinds (both sides use the same fds).
    own: Option<(OwnedFd, OwnedFd)>,
}

impl ChannelFds {
    /// Creates a sealed segment holding an initialised ring and two signals for
    /// elements `T` as `config` describes.
    pub fn create<T: Pod>(config: &Config) -> Result<Self> {
        let layout = config.layout::<T>()?;
        let seg = Segment::create("shmring", layout.total_size())?;
        let map: Arc<dyn Region> = Arc::new(seg.map(layout.total_size(), Access::ReadWrite)?);
        drop(layout.init::<T>(map)?);
        seg.seal_seals()?;
        let owned = |s: Signal| -> Result<Vec<OwnedFd>> {
            s.fds()
                .into_iter()
                .map(|fd| fd.try_clone_to_owned().map_err(|e| Error::io("dup", e)))
                .collect()
        };
        let (data, space, own) = match config.signal {
            SignalKind::Socket => {
                let (data_ours, data_theirs) = crate::signal::socket_pair()?;
                let (space_ours, space_theirs) = crate::signal::socket_pair()?;
                (
                    vec![data_theirs],
                    vec![space_theirs],
                    Some((data_ours, space_ours)),
                )
            }
            kind => (owned(Signal::new(kind)?)?, owned(Signal::new(kind)?)?, None),
        };
        Ok(ChannelFds {
            capacity: layout.capacity(),
            tag: layout.tag(),
            signal: config.signal,
            segment: seg.into_fd(),
            data,
            space,
            own,
        })
    }

    /// Duplicates every fd.
    pub fn try_clone(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup", e));
        let own = match &self.own {
            Some((d, s)) => Some((dup(d)?, dup(s)?)),
            None => None,
        };
        Ok(ChannelFds {
            own,
            ..self.peer_copy()?
        })
    }

    /// Duplicates the fds that travel to the peer (what [`fds`](Self::fds)
    /// lists): the peer's side of the channel.
    pub fn peer_copy(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup", e));
        Ok(ChannelFds {
            capacity: self.capacity,
            tag: self.tag,
            signal: self.signal,
            segment: dup(&self.segment)?,
            data: self.data.iter().map(dup).collect::<Result<_>>()?,
            space: self.space.iter().map(dup).collect::<Result<_>>()?,
            own: None,
        })
    }

    /// All fds to send to the peer, in wire order: segment, data signal,
    /// space signal (for a socket channel, the peer's ends).
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.segment.as_fd()];
        v.extend(self.data.iter().map(|f| f.as_fd()));
        v.extend(self.space.iter().map(|f| f.as_fd()));
        v
    }

    /// Rebuilds a `ChannelFds` from fds in wire order (see [`fds`](Self::fds)),
    /// checking their number.
    pub fn from_wire(
        capacity: usize,
        tag: TypeTag,
        signal: SignalKind,
        mut fds: Vec<OwnedFd>,
    ) -> Result<Self> {
        let per = signal.fd_count();
        if fds.len() != 1 + 2 * per {
            return Err(Error::Protocol(format!(
                "channel needs {} fds, got {}",
                1 + 2 * per,
                fds.len()
            )));
        }
        let space = fds.split_off(1 + per);
        let data = fds.split_off(1);
        let segment = fds.remove(0);
        Ok(ChannelFds {
            capacity,
            tag,
            signal,
            segment,
            data,
            space,
            own: None,
        })
    }

    fn open<T: Pod>(self) -> Result<(Arc<dyn Region>, Signal, Signal, RingLayout)> {
        let layout = RingLayout::new::<T>(self.capacity, self.tag)?;
        if layout.capacity() != self.capacity {
            return Err(Error::Protocol(format!(
                "capacity {} is not a power of two",
                self.capacity
            )));
        }
        let seg = Segment::from_fd(self.segment, layout.total_size())?;
        let map: Arc<dyn Region> = Arc::new(seg.map(layout.total_size(), Access::ReadWrite)?);
        // The creator of a socket channel uses its own ends; the peer's close
        // here (they were sent).
        let (data, space) = match self.own {
            Some((d, s)) => (vec![d], vec![s]),
            None => (self.data, self.space),
        };
        let data = Signal::from_fds(self.signal, data)?;
        let space = Signal::from_fds(self.signal, space)?;
        Ok((map, data, space, layout))
    }

    /// Validates everything (memfd seals and size, ring header against `T`,
    /// signal fds) and builds the producing end. `link` is the socket whose
    /// hang-up means the consumer is gone.
    pub fn into_producer<T: Pod>(self, link: OwnedFd, spin: Duration) -> Result<Producer<T>> {
        let (map, data, space, layout) = self.open::<T>()?;
        data.restrict(Direction::Notify);
        space.restrict(Direction::Wait);
        Ok(Producer::assemble(
            layout.writer(map)?,
            data,
            space,
            link,
            spin,
        ))
    }

    /// Validates everything and builds the consuming end.
    pub fn into_consumer<T: Pod>(self, link: OwnedFd, spin: Duration) -> Result<Consumer<T>> {
        let (map, data, space, layout) = self.open::<T>()?;
        data.restrict(Direction::Wait);
        space.restrict(Direction::Notify);
        Ok(Consumer::assemble(
            layout.reader(map)?,
            space,
            data,
            link,
            spin,
        ))
    }
}

/// Both ends of a channel in one process, joined by a socket pair so that
/// dropping one end makes the other's blocking calls return
/// [`Error::Disconnected`].
///
/// # Errors
/// [`Error::InvalidArgument`] for a capacity or element type the ring does
/// not support (see [`RingLayout::new`]); [`Error::Io`] if a memfd, a
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

pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(Error::io("socketpair", std::io::Error::last_os_error()));
    }
    // SAFETY: two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The waiting half of an endpoint, the same for both: the two wake-up
/// signals, the link socket to the peer, the spin-then-sleep wait
/// ([`wait_until`](Self::wait_until)) and what this end knows of the peer's
/// liveness (which ends a wait, and turns `Full`/`Empty` into
/// [`Error::Disconnected`]).
#[derive(Debug)]
struct Waiter {
    /// The signal this end notifies.
    notify: Arc<Signal>,
    /// The signal this end waits on.
    wait: Signal,
    /// The link to the peer: its hang-up means the peer is gone.
    socket: OwnedFd,
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

    fn new() -> Self {
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
trait Ready {
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
    fn new(notify: Arc<Signal>, wait: Signal, socket: OwnedFd, spin: Duration) -> Self {
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
    fn wait_until<R: Ready>(&mut self, ring: &mut R, timeout: Option<Duration>) -> Result<()> {
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
    fn peer_alive(&mut self) -> bool {
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
    fn stalled(&mut self, would_block: Error) -> Error {
        if self.gone || self.notify.peer_gone() || self.watched_gone.load(Ordering::Acquire) {
            self.gone = true;
            return Error::Disconnected;
        }
        would_block
    }

    /// A watch of the link for another thread, see [`PeerWatch`].
    fn watch(&self) -> Result<PeerWatch> {
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
    fn check_peer(&mut self) -> Result<()> {
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
/// [`Producer::peer_watch`]. Cheap to clone; holds a duplicate of the link.
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
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd; a zero timeout never sleeps.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        if r >= 0 {
            return Some(pfd.revents);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
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
                self.waiter.check_peer()
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
                self.waiter.wait.drain()
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
    /// [`SignalKind::Socket`] signal reports its closed end), or
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
            Err(Error::Full) => Err(self.waiter.stalled(Error::Full)),
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
        self.waiter.wait_until(&mut self.ring, timeout)
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
        let deadline = timeout.map(|t| Instant::now() + t);
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
                    Err(Error::Empty) => Err(Error::Disconnected),
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
        self.waiter.wait_until(&mut self.ring, timeout)
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
