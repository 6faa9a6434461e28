//! Handshakes that never block serving: an [`Intake`] accepts every
//! connection at once and polls all pending ones for their hello together,
//! each with its own deadline, at most so many of them (see the module
//! docs of `handshake`).

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd};
use std::time::{Duration, Instant};

use super::{Connection, Listener, PeerCred};
use crate::sys;
use crate::{Error, Result};

/// Default bound on handshakes pending in an [`Intake`] (connections accepted
/// whose hello has not arrived): beyond it, the oldest is dropped.
pub const DEFAULT_MAX_PENDING: usize = 64;
/// Default time a connection has to send its hello to an [`Intake`] (an
/// honest peer sends it right after `connect`).
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// Most connections an [`Intake`] accepts per [`poll`](Intake::poll), so that
/// a flood of connections cannot keep it from the pending ones.
const ACCEPT_BATCH: usize = 256;

/// Settings of an [`Intake`].
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    /// Most connections waiting for their hello at once; beyond it the oldest
    /// is dropped (and counted). At least 1.
    pub max_pending: usize,
    /// Time each connection has, from its accept, to send its hello.
    pub hello_timeout: Duration,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        IntakeOptions {
            max_pending: DEFAULT_MAX_PENDING,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        }
    }
}

/// What an [`Intake::poll`] found.
#[derive(Debug)]
pub enum Arrival {
    /// A connection whose hello arrived: serving it never waits.
    Ready(Connection),
    /// A connection that was dropped (or refused), and why.
    Refused {
        /// Its peer, when known.
        peer: Option<PeerCred>,
        /// Why.
        reason: Refusal,
    },
}

/// Why an [`Intake`] let a connection go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No hello within [`IntakeOptions::hello_timeout`].
    Silent,
    /// Dropped as the oldest pending one, to stay within
    /// [`IntakeOptions::max_pending`].
    TooManyPending,
    /// It hung up before its hello.
    HungUp,
    /// Its uid is not allowed ([`ListenOptions::allowed_uids`](super::ListenOptions::allowed_uids)).
    Uid(u32),
    /// Its first message was not a readable hello (oversized, with fds...).
    BadHello(String),
    /// `accept` failed (e.g. out of fds).
    Accept(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Silent => write!(f, "no hello in time"),
            Refusal::TooManyPending => {
                write!(f, "too many pending handshakes (dropped the oldest)")
            }
            Refusal::HungUp => write!(f, "hung up before its hello"),
            Refusal::Uid(u) => write!(f, "uid {u} not allowed"),
            Refusal::BadHello(e) => write!(f, "bad hello: {e}"),
            Refusal::Accept(e) => write!(f, "accept failed: {e}"),
        }
    }
}

/// Counters of an [`Intake`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections whose hello arrived ([`Arrival::Ready`]).
    pub ready: u64,
    /// Connections let go ([`Arrival::Refused`]), all reasons.
    pub refused: u64,
    /// Of those: silent until their deadline.
    pub silent: u64,
    /// Of those: dropped as the oldest beyond the bound.
    pub evicted: u64,
}

#[derive(Debug)]
struct Pending {
    conn: Connection,
    deadline: Instant,
}

/// Accepts connections and reads their hellos concurrently, without ever
/// blocking on one peer (see the module docs): one `poll` watches the
/// listening socket and every pending connection, each with its own
/// deadline, at most [`IntakeOptions::max_pending`] of them.
///
/// ```no_run
/// use std::time::Duration;
/// use shmring::handshake::{Arrival, Intake, IntakeOptions, Listener};
/// use shmring::Config;
///
/// let listener = Listener::bind("/tmp/audio.sock", &Default::default())?;
/// let mut intake = Intake::new(listener, IntakeOptions::default());
/// loop {
///     for arrival in intake.poll(Duration::from_millis(20))? {
///         match arrival {
///             // The hello is in: serving sends and never waits.
///             Arrival::Ready(conn) => {
///                 let _tx = conn.serve_producer::<f32>(&Config::new(4096))?;
///             }
///             Arrival::Refused { peer, reason } => eprintln!("{peer:?}: {reason}"),
///         }
///     }
/// }
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Debug)]
pub struct Intake {
    listener: Listener,
    pending: VecDeque<Pending>,
    opts: IntakeOptions,
    stats: IntakeStats,
}

impl Intake {
    /// Takes connections from `listener`.
    pub fn new(listener: Listener, opts: IntakeOptions) -> Self {
        Intake {
            listener,
            pending: VecDeque::new(),
            opts,
            stats: IntakeStats::default(),
        }
    }

    /// The listener.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Connections waiting for their hello.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> IntakeStats {
        self.stats
    }

    fn refused(&mut self, peer: Option<PeerCred>, reason: Refusal) -> Arrival {
        self.stats.refused += 1;
        match reason {
            Refusal::Silent => self.stats.silent += 1,
            Refusal::TooManyPending => self.stats.evicted += 1,
            _ => {}
        }
        Arrival::Refused { peer, reason }
    }

    /// Waits up to `timeout` for something to happen (a connection, a hello,
    /// a hang-up, a deadline), then accepts what is waiting and reads every
    /// hello that arrived. Returns at once if something did.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if `ppoll` fails. What goes wrong with one connection
    /// (including a failed `accept`) is an [`Arrival::Refused`] instead.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Arrival>> {
        // A timeout too long for an `Instant` waits for an event alone.
        let wait = [
            Instant::now().checked_add(timeout),
            self.pending.iter().map(|p| p.deadline).min(),
        ]
        .into_iter()
        .flatten()
        .min();
        let mut pfds = Vec::with_capacity(1 + self.pending.len());
        pfds.push(sys::pollfd(self.listener.as_fd().as_raw_fd(), libc::POLLIN));
        pfds.extend(
            self.pending
                .iter()
                .map(|p| sys::pollfd(p.conn.fd().as_raw_fd(), libc::POLLIN | libc::POLLRDHUP)),
        );
        sys::ppoll_until(&mut pfds, wait)?;
        let mut out = Vec::new();
        self.read_hellos(&pfds[1..], &mut out);
        self.accept_new(&mut out);
        Ok(out)
    }

    /// Hellos, hang-ups and deadlines of the pending connections, whose poll
    /// results are `pfds` (in the same order).
    fn read_hellos(&mut self, pfds: &[libc::pollfd], out: &mut Vec<Arrival>) {
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        for (p, pfd) in pending.into_iter().zip(pfds) {
            let peer = p.conn.peer();
            let mut conn = p.conn;
            if pfd.revents & libc::POLLIN != 0 {
                match conn.read_hello(now) {
                    Ok(()) => {
                        self.stats.ready += 1;
                        out.push(Arrival::Ready(conn));
                    }
                    Err(Error::Disconnected) => {
                        out.push(self.refused(Some(peer), Refusal::HungUp));
                    }
                    Err(e) => {
                        let why = e.to_string();
                        conn.refuse(&why);
                        out.push(self.refused(Some(peer), Refusal::BadHello(why)));
                    }
                }
            } else if pfd.revents != 0 {
                out.push(self.refused(Some(peer), Refusal::HungUp));
            } else if now >= p.deadline {
                conn.refuse("no hello in time");
                out.push(self.refused(Some(peer), Refusal::Silent));
            } else {
                self.pending.push_back(Pending {
                    conn,
                    deadline: p.deadline,
                });
            }
        }
    }

    /// Accepts up to [`ACCEPT_BATCH`] new connections, dropping the oldest
    /// pending ones beyond the bound.
    fn accept_new(&mut self, out: &mut Vec<Arrival>) {
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept_one() {
                Ok(Some(Ok(conn))) => {
                    self.stats.accepted += 1;
                    self.pending.push_back(Pending {
                        conn,
                        deadline: crate::sys::deadline_in(self.opts.hello_timeout),
                    });
                    while self.pending.len() > self.opts.max_pending.max(1) {
                        if let Some(old) = self.pending.pop_front() {
                            let peer = old.conn.peer();
                            old.conn.refuse("too many pending handshakes");
                            out.push(self.refused(Some(peer), Refusal::TooManyPending));
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(cred))) => {
                    self.stats.accepted += 1;
                    out.push(self.refused(Some(cred), Refusal::Uid(cred.uid)));
                }
                Err(e) => {
                    // Out of fds, say: let the oldest pending one go, so that
                    // the next round can accept again.
                    if let Some(old) = self.pending.pop_front() {
                        let peer = old.conn.peer();
                        out.push(self.refused(Some(peer), Refusal::TooManyPending));
                    }
                    out.push(self.refused(None, Refusal::Accept(e.to_string())));
                    break;
                }
            }
        }
    }
}
