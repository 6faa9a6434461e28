//! The crate's one error type.

use std::io;

/// Everything that can go wrong in shmring.
///
/// Errors caused by the peer (a corrupted index, a malformed message, a memfd that
/// is not sealed) are reported as [`Error::Corrupt`], [`Error::Protocol`] or
/// [`Error::BadSegment`]; none of them ever panics.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The ring has no free slot right now (non-blocking write).
    #[error("ring is full")]
    Full,
    /// The ring holds no item right now (non-blocking read).
    #[error("ring is empty")]
    Empty,
    /// A blocking call reached its timeout.
    #[error("timed out")]
    Timeout,
    /// The peer is gone after closing its end: a channel's or frame
    /// stream's peer dropped its endpoint (where nothing tells a close from
    /// a death, e.g. a bare socket, any hang-up). Items the peer committed
    /// before going away are still delivered before this is returned.
    /// [`Producer::try_push`](crate::Producer::try_push) and
    /// [`Consumer::try_pop`](crate::Consumer::try_pop) return it instead of
    /// `Full` (`Empty`) once the peer is known to be gone (see there).
    /// [`Error::is_peer_gone`] matches this, [`Error::PeerDied`] and
    /// [`Error::Dropped`].
    #[error("peer disconnected")]
    Disconnected,
    /// The peer is gone without closing its end: its process was killed,
    /// crashed, or exited without dropping its endpoint (a channel's ends
    /// mark the ring when they are dropped; the kernel's hang-up alone
    /// cannot tell). Otherwise as [`Error::Disconnected`]: what it committed
    /// first is still delivered. A report of the peer's shared memory,
    /// which a hostile peer can fake either way.
    #[error("peer died: it went away without closing its end")]
    PeerDied,
    /// A value read from shared memory broke the ring's invariants (for example
    /// the peer's index moved backwards or ran more than `capacity` ahead). The
    /// endpoint is poisoned: every later call returns this error again.
    #[error("shared memory corrupted by peer: {0}")]
    Corrupt(&'static str),
    /// The header of a shared ring does not match what this side expects
    /// (magic, layout version, element size or alignment, type tag, capacity).
    #[error("ring header mismatch: {0}")]
    HeaderMismatch(String),
    /// A received file descriptor is not an acceptable shared-memory segment
    /// (not a memfd, missing seals, too short, ...).
    #[error("unacceptable segment: {0}")]
    BadSegment(String),
    /// A handshake or control message broke the protocol (wrong magic, version,
    /// size, number of fds, truncated message, ...).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// A frame-stream descriptor from the producer is invalid (unknown kind,
    /// slot out of range, bytes outside the slot, slot sent twice, payload that
    /// is not UTF-8), or a consumer returned a slot it did not hold.
    #[error("bad frame descriptor: {0}")]
    BadDescriptor(String),
    /// The peer ended the stream for us and said why (a frame-stream
    /// producer dropping a consumer: too slow, protocol broken, ...).
    #[error("dropped by the peer: {0}")]
    Dropped(String),
    /// The peer looked at what we offered and refused it, saying why (a
    /// frame-stream consumer refusing an arena bigger than it accepts, say).
    #[error("the peer refused what we offered: {0}")]
    Rejected(String),
    /// Refused by policy: the listener turned this side away (its uid is
    /// not allowed, it serves as many peers as it wants, ...; the listener's
    /// reason follows), or, on a listener, a peer's credentials were refused.
    #[error("refused by policy: {0}")]
    PeerRefused(String),
    /// The two sides name different element types, or types of different
    /// sizes or alignments (see [`Config::type_name`](crate::Config::type_name)).
    /// Nothing was set up.
    #[error("element type mismatch with {peer}: this side has {ours}, the peer has {theirs}")]
    TypeMismatch {
        /// The other side.
        peer: Peer,
        /// This side's element type.
        ours: ElemType,
        /// The peer's element type.
        theirs: ElemType,
    },
    /// The two sides disagree on a setting they must share (both want the
    /// same role, different signal kinds). Nothing was set up.
    #[error("incompatible with {peer}: {reason}")]
    Incompatible {
        /// The other side.
        peer: Peer,
        /// What differs, with both sides' values.
        reason: String,
    },
    /// Nothing listens at `path` (no socket file there, or one that nobody
    /// accepts on), still after retrying for `waited` (see
    /// [`Config::connect_timeout`](crate::Config::connect_timeout)). Worth
    /// trying again later.
    #[error("nothing listens at {} (retried for {waited:?})", path.display())]
    NotListening {
        /// The socket path.
        path: std::path::PathBuf,
        /// How long connecting was retried.
        waited: std::time::Duration,
    },
    /// `path` cannot be a listener's socket: its directory does not exist,
    /// or a file that is not a socket is there. Reported at once (no retry):
    /// a wrong path, not a listener that is late.
    #[error("cannot connect to {}: {why}", path.display())]
    BadPath {
        /// The socket path.
        path: std::path::PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The handshake with `peer` did not complete within
    /// [`Config::handshake_timeout`](crate::Config::handshake_timeout)
    /// (the peer accepted the connection but did not answer in time).
    #[error("handshake with {peer} timed out after {after:?}")]
    HandshakeTimeout {
        /// The other side.
        peer: Peer,
        /// The time limit.
        after: std::time::Duration,
    },
    /// A caller-side argument is invalid (zero capacity, zero-sized element, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// Another live listener serves this socket path (its lock is held, or
    /// it answers connections).
    #[error("socket path in use: {0}")]
    InUse(String),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// `true` for [`Error::Full`], [`Error::Empty`] and [`Error::Timeout`]: the
    /// call may succeed later; everything else is final for this endpoint.
    pub fn is_would_block(&self) -> bool {
        matches!(self, Error::Full | Error::Empty | Error::Timeout)
    }

    /// `true` when the peer is gone, however it went: [`Error::Disconnected`]
    /// (it closed its end), [`Error::PeerDied`] (it did not) or
    /// [`Error::Dropped`] (it ended the stream for us, saying why).
    pub fn is_peer_gone(&self) -> bool {
        matches!(
            self,
            Error::Disconnected | Error::PeerDied | Error::Dropped(_)
        )
    }

    pub(crate) fn io(context: &'static str, source: impl Into<io::Error>) -> Self {
        Error::Io {
            context,
            source: source.into(),
        }
    }

    pub(crate) fn errno(context: &'static str, errno: nix::errno::Errno) -> Self {
        Error::Io {
            context,
            source: io::Error::from_raw_os_error(errno as i32),
        }
    }
}

/// The other side of a handshake, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Peer {
    /// The listener at this socket path (seen from the connecting side).
    Listener(std::path::PathBuf),
    /// A connected process (seen from the listener), by its credentials.
    Process {
        /// Its process id at connect time.
        pid: i32,
        /// Its user id.
        uid: u32,
    },
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Listener(p) => write!(f, "the listener at {}", p.display()),
            Peer::Process { pid, uid } => write!(f, "peer pid {pid} uid {uid}"),
        }
    }
}

/// An element type as one side of a channel describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElemType {
    /// Its name (see [`Config::type_name_for`](crate::Config::type_name_for)).
    pub name: String,
    /// `size_of`.
    pub size: u32,
    /// `align_of`.
    pub align: u32,
}

impl std::fmt::Display for ElemType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "'{}' ({} bytes, align {})",
            self.name, self.size, self.align
        )
    }
}

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
