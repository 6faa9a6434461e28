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
    /// The peer closed its end of the link (or died). Items it committed before
    /// going away are still delivered before this is returned.
    #[error("peer disconnected")]
    Disconnected,
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
    /// The peer's credentials were refused by the configured policy.
    #[error("peer refused: {0}")]
    PeerRefused(String),
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

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
