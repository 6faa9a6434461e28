//! Setting up channels between processes over a Unix socket path.
//!
//! The listening side creates the channel (segment, ring, signals) and keeps the
//! socket connection open as the channel's link; the connecting side sends a
//! hello, receives a welcome with the fds (`SCM_RIGHTS`), validates them
//! all, and keeps its end of the link.
//!
//! ```text
//! client                                   listener
//!   | -- Hello {magic, version, role, type tag, name} --> |  checks tag and role
//!   | <-- Welcome {magic, version, status, capacity, ...} |  + segment, data, space fds
//!   |  validates message, fd count, memfd seals and size, |
//!   |  ring header, signal fds                            |
//! ```
//!
//! Sockets are `SOCK_SEQPACKET`: each message arrives whole or is reported
//! truncated, so a short, long or merged message is always detected. Every
//! malformed or unexpected message is an [`Error::Protocol`]; fds beyond what a
//! message may carry are closed at once; each step has a deadline.
//!
//! The socket file is created with mode 0600 (see [`ListenOptions::mode`]) without
//! a window in which it has a wider mode: the socket's own mode is set before
//! `bind` creates the file (Linux creates it with that mode, less the umask;
//! a mode wider than the umask allows is set right after). The listener can
//! refuse peers by uid ([`ListenOptions::allowed_uids`], checked with
//! `SO_PEERCRED`).
//!
//! **One listener per path**: [`Listener::bind`] takes an advisory `flock` on
//! `<path>.lock` before it looks at the path, and holds it for its life. A
//! second listener fails with [`Error::InUse`], race-free; a socket file left
//! by a listener that died (nobody holds the lock, nobody answers) is
//! replaced. `bind` never replaces a file silently. A path too long for a Unix
//! socket address (107 bytes) fails at once with the limit in the message.
//!
//! **What a connecting side is told.** [`connect_producer`] /
//! [`connect_consumer`] retry while nothing listens at the path yet (every
//! [`CONNECT_RETRY_EVERY`], for [`Config::connect_timeout`](crate::Config::connect_timeout)), then fail with
//! [`Error::NotListening`] naming the path; a path whose directory does not
//! exist, or that holds a file that is not a socket, fails at once with
//! [`Error::BadPath`]. Once connected: [`Error::TypeMismatch`] with both
//! sides' element types (name, size, alignment; see
//! [`Config::type_name`](crate::Config::type_name)), [`Error::Incompatible`] for another shared
//! setting (both sides want one role, different signal kinds),
//! [`Error::PeerRefused`] for the listener's policy (uid, number of peers)
//! with its reason, [`Error::HandshakeTimeout`] for a listener that does not
//! answer in [`Config::handshake_timeout`](crate::Config::handshake_timeout). The listening side gets the same
//! variants, naming the peer by pid and uid.
//!
//! **Handshakes never block serving**: an [`Intake`] accepts every connection
//! at once and polls all pending ones for their hello together, each with its
//! own deadline, up to a bound (the oldest goes beyond it). The listening side
//! only reads the hello; everything after it is sent without waiting, so a
//! silent or slow peer costs an fd until its deadline and nothing else.
//!
//! ```no_run
//! use shmring::{handshake, Config};
//!
//! // process A
//! let listener = handshake::Listener::bind("/tmp/audio.sock", &Default::default())?;
//! let mut tx = listener.accept_producer::<f32>(&Config::new(4096).type_name("f32-mono"))?;
//! tx.try_push(0.5)?;
//!
//! // process B
//! let mut rx = handshake::connect_consumer::<f32>("/tmp/audio.sock", &Config::new(4096).type_name("f32-mono"))?;
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! The parts, one file each: the wire format (hello, welcome, their
//! validation), fd passing over the socket (on top of the crate's system
//! call layer), the [`Listener`] (the socket file, its lock, `accept`), the
//! [`Intake`] (concurrent handshakes), an accepted [`Connection`] (serving
//! it a channel), and the client ([`connect_producer`],
//! [`connect_consumer`], [`connect_socket`]).

use std::path::Path;

use crate::{Error, Result};

mod client;
mod connection;
mod fds;
mod intake;
mod listener;
mod wire;

pub(crate) use client::client;
pub use client::{connect_consumer, connect_producer, connect_socket, CONNECT_RETRY_EVERY};
pub use connection::Connection;
pub use intake::{
    Arrival, Intake, IntakeOptions, IntakeStats, Refusal, DEFAULT_HELLO_TIMEOUT,
    DEFAULT_MAX_PENDING,
};
pub use listener::{peer_cred, ListenOptions, Listener, PeerCred};
pub(crate) use wire::read_exact_pod;

/// For tests of hostile peers: the wire messages and raw fd passing, with
/// which a test plays a peer that breaks the protocol (feature
/// `test-support`).
#[cfg(feature = "test-support")]
pub use fds::{exchange_hello, recv_with_fds, send_with_fds};
#[cfg(not(feature = "test-support"))]
pub(crate) use fds::{recv_with_fds, send_with_fds};
/// For tests of hostile peers: the wire messages, to build or parse them by
/// hand (feature `test-support`).
#[cfg(feature = "test-support")]
pub use wire::{Hello, HelloInfo, Role, Welcome, WelcomeInfo};
#[cfg(not(feature = "test-support"))]
pub(crate) use wire::{Hello, Role, Welcome};

/// Version of the handshake protocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest type name a hello carries.
pub const NAME_MAX: usize = 64;
/// Most fds one handshake message may carry (a frame stream's arena, return
/// ring segment and two pipe signals need 6).
pub const MAX_FDS: usize = 8;

/// Longest path a Unix socket address holds (`sun_path` less its NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// Checks that `path` fits a Unix socket address.
///
/// # Errors
///
/// [`Error::InvalidArgument`] if `path` is empty or longer than
/// [`SOCKET_PATH_MAX`] bytes.
pub fn check_socket_path(path: &Path) -> Result<()> {
    let n = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).len();
    if n > SOCKET_PATH_MAX {
        return Err(Error::InvalidArgument(format!(
            "socket path {} is {n} bytes long; a Unix socket address holds at most {SOCKET_PATH_MAX}",
            path.display()
        )));
    }
    if n == 0 {
        return Err(Error::InvalidArgument("empty socket path".into()));
    }
    Ok(())
}
