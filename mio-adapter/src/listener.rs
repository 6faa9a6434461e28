//! [`MioListener`]: a [`Listener`] that accepts peers without ever blocking the
//! loop on a slow or silent client.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{event, Interest, Registry, Token};
use shmring::handshake::{Connection, ListenOptions, Listener, PeerCred};
use shmring::{Config, Pod};

use crate::{Error, MioConsumer, MioProducer, Result};

/// Default [`MioListener::set_max_pending`].
pub const DEFAULT_MAX_PENDING: usize = 64;

/// A peer whose handshake completed.
#[derive(Debug)]
pub struct Accepted<E> {
    /// The new endpoint (not registered yet: register it under a token of yours).
    pub endpoint: E,
    /// The peer's credentials, read when it connected.
    pub peer: PeerCred,
}

/// A connection whose hello has not arrived yet.
#[derive(Debug)]
struct Pending {
    conn: Connection,
    deadline: Instant,
}

/// A [`Listener`] as a [`mio::event::Source`], with the handshakes done inside
/// the loop.
///
/// Its token fires when a peer connects and when the hello of an accepted peer
/// arrives (both the listening socket and every pending connection are
/// registered under it). On each such event, and at
/// [`next_deadline`](Self::next_deadline), call
/// [`accept_consumers`](Self::accept_consumers) (or
/// [`accept_producers`](Self::accept_producers)): it accepts whatever is
/// queued, completes the handshake of each peer whose hello is there (no wait:
/// the data is already in the socket), and drops peers that stayed silent past
/// the handshake timeout. A silent client therefore costs one fd until its
/// timeout, never a blocked loop; at most
/// [`max_pending`](Self::set_max_pending) such clients are held, later ones are
/// dropped at once.
///
/// A loop that only consumes one type is shorter with
/// [`ConsumerDriver::listen`](crate::ConsumerDriver::listen), which does the
/// bookkeeping below.
///
/// # Errors
///
/// [`bind`](Self::bind) fails as [`Listener::bind`] does. The accept methods
/// fail as a whole only when the listener is not registered or polling its
/// pending connections fails; each peer that could not be served is an
/// error of its own in the returned list (see
/// [`accept_consumers`](Self::accept_consumers)).
///
/// # Examples
///
/// One producer connects from another thread (from another process it is
/// the same call); the loop accepts it, registers the consumer it gets and
/// drains it until the producer leaves:
///
/// ```
/// use std::time::Duration;
/// use mio::{Events, Interest, Poll, Token};
/// use shmring::{handshake, Config};
/// use shmring_mio::{MioListener, Readiness};
///
/// let dir = std::env::temp_dir().join(format!("shmring-mio-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("listener.sock");
/// let config = Config::new(64);
///
/// let mut poll = Poll::new()?;
/// let mut events = Events::with_capacity(8);
/// let mut listener = MioListener::bind(&path, &Default::default())?;
/// poll.registry().register(&mut listener, Token(0), Interest::READABLE)?;
///
/// let (p, c) = (path.clone(), config.clone());
/// let producer = std::thread::spawn(move || -> shmring::Result<()> {
///     let mut tx = handshake::connect_producer::<u64>(&p, &c)?;
///     for i in 1..=100 {
///         tx.push_blocking(i, Some(Duration::from_secs(5)))?;
///     }
///     Ok(())
/// }); // dropping `tx` hangs up the link
///
/// let (mut rx, mut sum, mut state) = (None, 0u64, Readiness::Ready);
/// while state != Readiness::Closed {
///     poll.poll(&mut events, Some(Duration::from_millis(100)))?;
///     if rx.is_none() {
///         for accepted in listener.accept_consumers::<u64>(poll.registry(), &config)? {
///             let mut consumer = accepted?.endpoint;
///             poll.registry().register(&mut consumer, Token(1), Interest::READABLE)?;
///             rx = Some(consumer); // drained below, right after registering
///         }
///     }
///     if let Some(rx) = rx.as_mut() {
///         state = rx.drain_with(poll.registry(), |items| sum += items.iter().sum::<u64>())?;
///     }
/// }
/// assert_eq!(sum, 5050);
/// producer.join().unwrap()?;
/// std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct MioListener {
    pending: Vec<Pending>,
    token: Option<Token>,
    max_pending: usize,
    timeout: Option<Duration>,
    listener: Listener,
}

impl MioListener {
    /// Binds a listener at `path` (see [`Listener::bind`]).
    ///
    /// # Errors
    ///
    /// [`Error::Shmring`] with what [`Listener::bind`] reports (another live
    /// listener on the path, a path too long for a socket address, ...).
    pub fn bind(path: impl AsRef<Path>, opts: &ListenOptions) -> Result<Self> {
        Ok(Self::from_listener(Listener::bind(path, opts)?))
    }

    /// Wraps a bound listener.
    pub fn from_listener(listener: Listener) -> Self {
        MioListener {
            pending: Vec::new(),
            token: None,
            max_pending: DEFAULT_MAX_PENDING,
            timeout: None,
            listener,
        }
    }

    /// The wrapped listener.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// How many accepted peers have not sent their hello yet.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Most peers waiting for their hello at once (default
    /// [`DEFAULT_MAX_PENDING`]); a peer beyond is dropped when accepted.
    pub fn set_max_pending(&mut self, n: usize) {
        self.max_pending = n.max(1);
    }

    /// How long a peer may take to send its hello. Default: the
    /// `handshake_timeout` of the [`Config`] passed to the accept call.
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.timeout = Some(timeout);
    }

    /// When the next silent peer times out: call an accept method then (use it
    /// in the timeout of `poll`).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|p| p.deadline).min()
    }

    /// Accepts peers that connect to *produce* `T`, and serves each a channel;
    /// returns our consuming ends (unregistered), and an error for every peer
    /// that failed (refused uid, bad hello, type mismatch, timeout, hung up).
    ///
    /// # Errors
    ///
    /// The outer error: [`Error::NotRegistered`] before the listener is
    /// registered, [`Error::Registry`] when polling the pending connections
    /// fails. Per peer, in the list: [`Error::TooManyPending`],
    /// [`Error::HandshakeTimeout`], [`Error::Registry`] (its connection could
    /// not be registered), and [`Error::Shmring`] for a failed accept or
    /// handshake (refused uid, bad hello, type mismatch, hung up). A failed
    /// `accept` itself (`EMFILE`, ...) ends the round; the next event or
    /// deadline tries again.
    pub fn accept_consumers<T: Pod>(
        &mut self,
        registry: &Registry,
        config: &Config,
    ) -> Result<Vec<Result<Accepted<MioConsumer<T>>>>> {
        self.accept_with(registry, config, |c| {
            c.serve_consumer::<T>(config).map(MioConsumer::new)
        })
    }

    /// Accepts peers that connect to *consume* `T`; returns our producing ends.
    ///
    /// # Errors
    ///
    /// As [`accept_consumers`](Self::accept_consumers).
    pub fn accept_producers<T: Pod>(
        &mut self,
        registry: &Registry,
        config: &Config,
    ) -> Result<Vec<Result<Accepted<MioProducer<T>>>>> {
        self.accept_with(registry, config, |c| {
            c.serve_producer::<T>(config).map(MioProducer::new)
        })
    }

    /// The general form: `serve` completes the handshake of a connection whose
    /// hello is readable (for instance with [`Connection::serve_consumer`]).
    ///
    /// # Errors
    ///
    /// As [`accept_consumers`](Self::accept_consumers); an error of `serve`
    /// is the peer's [`Error::Shmring`] in the list.
    pub fn accept_with<E, F>(
        &mut self,
        registry: &Registry,
        config: &Config,
        mut serve: F,
    ) -> Result<Vec<Result<Accepted<E>>>>
    where
        F: FnMut(Connection) -> shmring::Result<E>,
    {
        let token = self.token.ok_or(Error::NotRegistered)?;
        let timeout = self.timeout.unwrap_or(config.handshake_timeout);
        let mut out = Vec::new();
        self.accept_queued(registry, token, timeout, &mut out);
        if self.pending.is_empty() {
            return Ok(out);
        }
        self.complete_pending(registry, &mut serve, &mut out)?;
        Ok(out)
    }

    /// Step 1 of [`accept_with`](Self::accept_with): accepts everything queued
    /// on the listening socket and registers each connection under `token`
    /// until its hello arrives or `timeout` passes.
    fn accept_queued<E>(
        &mut self,
        registry: &Registry,
        token: Token,
        timeout: Duration,
        out: &mut Vec<Result<Accepted<E>>>,
    ) {
        loop {
            match self.listener.try_accept() {
                Ok(Some(conn)) => {
                    let peer = conn.peer();
                    if self.pending.len() >= self.max_pending {
                        out.push(Err(Error::TooManyPending {
                            peer,
                            max: self.max_pending,
                        }));
                        continue;
                    }
                    let raw = conn.fd().as_raw_fd();
                    if let Err(source) =
                        registry.register(&mut SourceFd(&raw), token, Interest::READABLE)
                    {
                        out.push(Err(Error::Registry {
                            context: "register pending connection",
                            source,
                        }));
                        continue;
                    }
                    self.pending.push(Pending {
                        conn,
                        deadline: Instant::now() + timeout,
                    });
                }
                Ok(None) => break,
                Err(e @ shmring::Error::PeerRefused(_)) => out.push(Err(e.into())),
                Err(e) => {
                    // accept itself failed (EMFILE, ...): report it and try again
                    // at the next event or deadline rather than spin here.
                    out.push(Err(e.into()));
                    break;
                }
            }
        }
    }

    /// Step 2 of [`accept_with`](Self::accept_with): serves the pending peers
    /// whose hello (or hang-up) is there, found with one poll(2) over all, and
    /// drops those past their deadline.
    fn complete_pending<E, F>(
        &mut self,
        registry: &Registry,
        serve: &mut F,
        out: &mut Vec<Result<Accepted<E>>>,
    ) -> Result<()>
    where
        F: FnMut(Connection) -> shmring::Result<E>,
    {
        let mut fds: Vec<libc::pollfd> = self
            .pending
            .iter()
            .map(|p| libc::pollfd {
                fd: p.conn.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: `fds` is a live array of `fds.len()` pollfds that poll fills
        // in; a zero timeout never blocks.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(Error::Registry {
                    context: "poll pending connections",
                    source: e,
                });
            }
        }
        let now = Instant::now();
        let mut i = 0;
        for pfd in &fds {
            let ready = r > 0 && pfd.revents != 0;
            if !ready && now < self.pending[i].deadline {
                i += 1;
                continue;
            }
            let p = self.pending.remove(i);
            let peer = p.conn.peer();
            deregister(registry, p.conn.fd().as_raw_fd());
            if ready {
                out.push(
                    serve(p.conn)
                        .map(|endpoint| Accepted { endpoint, peer })
                        .map_err(Error::from),
                );
            } else {
                out.push(Err(Error::HandshakeTimeout { peer }));
            }
        }
        Ok(())
    }
}

fn deregister(registry: &Registry, fd: RawFd) {
    // Cannot fail for a registered fd; if it did, closing the fd (a socket only
    // we hold) removes it from the epoll set anyway.
    let _ = registry.deregister(&mut SourceFd(&fd));
}

impl MioListener {
    /// The listening socket and every pending connection: what goes into the
    /// `Poll` under the listener's token.
    fn raw_fds(&self) -> impl Iterator<Item = RawFd> + '_ {
        let listening = self.listener.as_fd().as_raw_fd();
        let pending = self.pending.iter().map(|p| p.conn.fd().as_raw_fd());
        std::iter::once(listening).chain(pending)
    }

    /// (Re)registers all of [`raw_fds`](Self::raw_fds) with `op` (a
    /// [`Registry`] method), stopping at the first failure, and records `token`.
    fn register_all(
        &mut self,
        op: impl Fn(&mut SourceFd<'_>) -> io::Result<()>,
        token: Token,
    ) -> io::Result<()> {
        for fd in self.raw_fds() {
            op(&mut SourceFd(&fd))?;
        }
        self.token = Some(token);
        Ok(())
    }
}

impl event::Source for MioListener {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.register_all(|fd| registry.register(fd, token, interests), token)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.register_all(|fd| registry.reregister(fd, token, interests), token)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        let raw = self.listener.as_fd().as_raw_fd();
        let r = registry.deregister(&mut SourceFd(&raw));
        for p in &self.pending {
            deregister(registry, p.conn.fd().as_raw_fd());
        }
        self.token = None;
        r
    }
}
