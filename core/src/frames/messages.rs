//! The stream's message socket: a `SOCK_SEQPACKET` pair made by the producer
//! for each consumer, beside the rings. It carries what does not fit a
//! descriptor:
//!
//! * producer → consumer: the fd of each [`Blob`](super::Blob), sent just
//!   before the descriptor that refers to it; the memfd and geometry of a
//!   new arena, sent just before the descriptor that switches to it; the
//!   reason the producer drops the consumer, sent just before it hangs up;
//! * consumer → producer: upstream events (for GStreamer: force-key-unit,
//!   navigation, QoS, reconfigure) as strings.
//!
//! Both ends are non-blocking: a full socket is [`Error::Full`] for the
//! sender, never a wait. Every message is one datagram with a fixed header;
//! anything malformed is [`Error::Protocol`].

use std::os::fd::{BorrowedFd, OwnedFd};
use std::time::Instant;

use bytemuck::{Pod, Zeroable};

use crate::handshake;
use crate::{Error, Result};

const MAGIC: u32 = u32::from_le_bytes(*b"SRMS");

/// Longest string a message carries (an upstream event, a reason).
pub const MAX_MESSAGE: usize = 64 << 10;

/// What a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum MsgKind {
    /// A blob's fd (`id`, `size`).
    Blob = 1,
    /// The producer drops this consumer: the reason follows.
    Bye = 2,
    /// An upstream event from the consumer: the string follows.
    Upstream = 3,
    /// The consumer took the stream (every check passed).
    Ready = 4,
    /// The consumer refused the stream: the reason follows.
    Refuse = 5,
    /// A new arena's memfd (`id`: slots, `size`: bytes per slot).
    Arena = 6,
}

#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct Header {
    magic: u32,
    kind: u32,
    id: u64,
    size: u64,
}

const HEADER: usize = std::mem::size_of::<Header>();

/// A message as received.
#[derive(Debug)]
pub(crate) enum Message {
    Blob {
        id: u32,
        size: usize,
        fd: OwnedFd,
    },
    Arena {
        slots: u64,
        slot_size: u64,
        fd: OwnedFd,
    },
    Bye(String),
    Upstream(String),
    Ready,
    Refuse(String),
}

/// A socketpair: (producer's end, consumer's end).
pub(crate) fn pair() -> Result<(OwnedFd, OwnedFd)> {
    crate::sys::socketpair(libc::SOCK_SEQPACKET | libc::SOCK_NONBLOCK)
}

fn send(
    sock: BorrowedFd<'_>,
    kind: MsgKind,
    id: u64,
    size: u64,
    text: &str,
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    if text.len() > MAX_MESSAGE {
        return Err(Error::InvalidArgument(format!(
            "message of {} bytes (at most {MAX_MESSAGE})",
            text.len()
        )));
    }
    let h = Header {
        magic: MAGIC,
        kind: kind as u32,
        id,
        size,
    };
    let mut buf = Vec::with_capacity(HEADER + text.len());
    buf.extend_from_slice(bytemuck::bytes_of(&h));
    buf.extend_from_slice(text.as_bytes());
    handshake::send_with_fds(sock, &buf, fds).map_err(|e| match e {
        Error::Io { source, .. } if source.raw_os_error() == Some(libc::EAGAIN) => Error::Full,
        e => e,
    })
}

/// Sends a blob's fd.
pub(crate) fn send_blob(
    sock: BorrowedFd<'_>,
    id: u32,
    size: usize,
    fd: BorrowedFd<'_>,
) -> Result<()> {
    send(sock, MsgKind::Blob, u64::from(id), size as u64, "", &[fd])
}

/// Sends a new arena's memfd and geometry.
pub(crate) fn send_arena(
    sock: BorrowedFd<'_>,
    slots: u32,
    slot_size: usize,
    fd: BorrowedFd<'_>,
) -> Result<()> {
    send(
        sock,
        MsgKind::Arena,
        u64::from(slots),
        slot_size as u64,
        "",
        &[fd],
    )
}

/// Sends the reason this consumer is dropped (best effort: cut to
/// [`MAX_MESSAGE`] at a character boundary).
pub(crate) fn send_bye(sock: BorrowedFd<'_>, reason: &str) -> Result<()> {
    let mut end = reason.len().min(MAX_MESSAGE);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    send(sock, MsgKind::Bye, 0, 0, &reason[..end], &[])
}

/// Tells the producer the consumer took the stream.
pub(crate) fn send_ready(sock: BorrowedFd<'_>) -> Result<()> {
    send(sock, MsgKind::Ready, 0, 0, "", &[])
}

/// Tells the producer why the consumer refused the stream (best effort).
pub(crate) fn send_refuse(sock: BorrowedFd<'_>, reason: &str) {
    let mut end = reason.len().min(MAX_MESSAGE);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let _ = send(sock, MsgKind::Refuse, 0, 0, &reason[..end], &[]);
}

/// Sends an upstream event string.
pub(crate) fn send_upstream(sock: BorrowedFd<'_>, s: &str) -> Result<()> {
    send(sock, MsgKind::Upstream, 0, 0, s, &[])
}

/// The next message, waiting until `deadline` ([`Error::Timeout`]).
pub(crate) fn recv_until(sock: BorrowedFd<'_>, deadline: Instant) -> Result<Message> {
    loop {
        if let Some(m) = try_recv(sock)? {
            return Ok(m);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Timeout);
        }
        let mut pfd = [crate::sys::pollfd(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::POLLIN,
        )];
        crate::sys::ppoll_until(&mut pfd, Some(deadline))?;
    }
}

/// The next message if one is queued (`Ok(None)`: none). The socket's peer
/// having closed is [`Error::Disconnected`].
pub(crate) fn try_recv(sock: BorrowedFd<'_>) -> Result<Option<Message>> {
    let mut buf = vec![0u8; HEADER + MAX_MESSAGE + 1];
    let (n, mut fds) = match handshake::recv_with_fds(sock, &mut buf, 1, Instant::now()) {
        Ok(r) => r,
        Err(Error::Timeout) => return Ok(None),
        Err(e) => return Err(e),
    };
    let h: Header = handshake::read_exact_pod(&buf[..HEADER.min(n)], "message header")?;
    if h.magic != MAGIC {
        return Err(Error::Protocol(format!("message magic {:#x}", h.magic)));
    }
    let text = || {
        if !fds.is_empty() {
            return Err(Error::Protocol("fd attached to a text message".into()));
        }
        String::from_utf8(buf[HEADER..n].to_vec())
            .map_err(|_| Error::Protocol("message text is not UTF-8".into()))
    };
    match h.kind {
        k if k == MsgKind::Blob as u32 => {
            let (Some(fd), true) = (fds.pop(), n == HEADER) else {
                return Err(Error::Protocol("blob message without its fd".into()));
            };
            let id = u32::try_from(h.id)
                .map_err(|_| Error::Protocol(format!("blob number {}", h.id)))?;
            let size = usize::try_from(h.size)
                .ok()
                .filter(|&s| s > 0 && s <= u32::MAX as usize)
                .ok_or_else(|| Error::Protocol(format!("blob of {} bytes", h.size)))?;
            Ok(Some(Message::Blob { id, size, fd }))
        }
        k if k == MsgKind::Arena as u32 => {
            // The geometry is checked by whoever takes the switch.
            let (Some(fd), true) = (fds.pop(), n == HEADER) else {
                return Err(Error::Protocol("arena message without its fd".into()));
            };
            Ok(Some(Message::Arena {
                slots: h.id,
                slot_size: h.size,
                fd,
            }))
        }
        k if k == MsgKind::Bye as u32 => Ok(Some(Message::Bye(text()?))),
        k if k == MsgKind::Upstream as u32 => Ok(Some(Message::Upstream(text()?))),
        k if k == MsgKind::Ready as u32 => {
            text()?;
            Ok(Some(Message::Ready))
        }
        k if k == MsgKind::Refuse as u32 => Ok(Some(Message::Refuse(text()?))),
        k => Err(Error::Protocol(format!("message kind {k}"))),
    }
}
