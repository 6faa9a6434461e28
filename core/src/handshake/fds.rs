//! Passing fds over the handshake socket: one message with its fds out
//! ([`send_with_fds`]), one message with at most so many fds in, by a
//! deadline ([`recv_with_fds`]). What the kernel reports (a reset, a
//! truncated message or control part, end-of-file) becomes the protocol's
//! error here; the system calls themselves are in the crate's `sys` layer.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use crate::sys;
use crate::{Error, Result};

/// Sends one message with `fds` attached (never blocks, never raises SIGPIPE).
///
/// # Errors
///
/// [`Error::Disconnected`] if the peer closed its end, [`Error::Protocol`]
/// if the message went out in part, [`Error::Io`] for other failures (a
/// full socket buffer: `EAGAIN`).
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let n = sys::send_fds(sock, bytes, fds).map_err(|e| match e.raw_os_error() {
        Some(libc::EPIPE | libc::ECONNRESET) => Error::Disconnected,
        _ => Error::io("sendmsg", e),
    })?;
    if n != bytes.len() {
        return Err(Error::Protocol("message sent partially".into()));
    }
    Ok(())
}

/// Receives one message into `buf` with at most `max_fds` fds, waiting until
/// `deadline`. Returns the message length and the fds, each already owned (so
/// closed if the caller rejects the message).
///
/// # Errors
///
/// [`Error::Timeout`] if nothing arrived by `deadline`;
/// [`Error::Disconnected`] at end-of-file or a reset; [`Error::Protocol`]
/// for a message longer than `buf` or with more fds than `max_fds` (beyond
/// [`MAX_FDS`](super::MAX_FDS) the kernel closes the surplus, we close the
/// rest).
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    deadline: Instant,
) -> Result<(usize, Vec<OwnedFd>)> {
    wait_readable(sock, deadline)?;
    let mut reset_seen = false;
    let got = loop {
        match sys::recv_fds(sock, buf) {
            Ok(got) => break got,
            // A peer that closed with our message unread reports ECONNRESET once;
            // what it sent before closing is still queued behind the error.
            Err(e) if sys::is(&e, libc::ECONNRESET) && !reset_seen => reset_seen = true,
            Err(e) if sys::is(&e, libc::ECONNRESET) || sys::is(&e, libc::EAGAIN) => {
                return Err(Error::Disconnected)
            }
            Err(e) => return Err(Error::io("recvmsg", e)),
        }
    };
    if got.fds_truncated {
        return Err(Error::Protocol(
            "control message truncated (too many fds)".into(),
        ));
    }
    if got.truncated {
        return Err(Error::Protocol("message longer than expected".into()));
    }
    if got.len == 0 && got.fds.is_empty() {
        return Err(Error::Disconnected);
    }
    if got.fds.len() > max_fds {
        return Err(Error::Protocol(format!(
            "{} fds attached, at most {max_fds} expected",
            got.fds.len()
        )));
    }
    Ok((got.len, got.fds))
}

/// Waits until `sock` is readable, or [`Error::Timeout`] at `deadline`.
pub(super) fn wait_readable(sock: BorrowedFd<'_>, deadline: Instant) -> Result<()> {
    let mut pfd = [sys::pollfd(sock.as_raw_fd(), libc::POLLIN)];
    match sys::ppoll_until(&mut pfd, Some(deadline))? {
        0 => Err(Error::Timeout),
        _ => Ok(()),
    }
}

/// For tests of hostile peers: the connecting side's first exchange with
/// nothing checked. Sends `hello` (any bytes, no fds) on `link` and waits
/// until `deadline` for the answer; returns its bytes (at most 512) and its
/// fds (at most [`MAX_FDS`](super::MAX_FDS)), as they came.
///
/// # Errors
///
/// Those of [`send_with_fds`] and [`recv_with_fds`].
#[cfg(feature = "test-support")]
pub fn exchange_hello(
    link: BorrowedFd<'_>,
    hello: &[u8],
    deadline: Instant,
) -> Result<(Vec<u8>, Vec<OwnedFd>)> {
    send_with_fds(link, hello, &[])?;
    let mut buf = vec![0u8; 512];
    let (len, fds) = recv_with_fds(link, &mut buf, super::MAX_FDS, deadline)?;
    buf.truncate(len);
    Ok((buf, fds))
}
