//! The thin layer of system calls the other modules share: polling with a
//! deadline, `fstat`, file flags, socket pairs and Unix sockets, and passing
//! fds (`SCM_RIGHTS`). Everything that turns a `-1`/`errno` into an error
//! goes through [`syscall!`].
//!
//! One binding per job: fd passing (`sendmsg`, `recvmsg`), polling and file
//! flags use `libc`; socket creation, `bind`/`listen`/`accept` and
//! `SO_PEERCRED` use `nix` (in `handshake`), mappings use `nix` (in
//! `segment`).
//!
//! The functions here know nothing of the protocols above them: they report
//! what the kernel said (`std::io::Error`, or [`Error::Io`] with the call's
//! name where every caller would name it the same way) and leave the meaning
//! (a peer gone, a protocol violation) to the caller.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Calls `libc::$fn(args…)` and turns a negative return value into
/// `Err(std::io::Error::last_os_error())` (`Ok(value)` otherwise). The call
/// stays `unsafe`: write it inside an `unsafe` block with its `// SAFETY:`
/// comment.
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {
        $crate::sys::cvt(libc::$fn($($arg),*))
    };
}
pub(crate) use syscall;

/// A system call's return type: negative means failure (`errno` set).
pub(crate) trait Ret: Copy + PartialOrd + Default {}
impl Ret for i32 {}
impl Ret for isize {}

/// `Err(last_os_error)` if `r` is negative, else `Ok(r)` (see [`syscall!`]).
pub(crate) fn cvt<T: Ret>(r: T) -> io::Result<T> {
    if r < T::default() {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `true` if `e` is `errno`.
pub(crate) fn is(e: &io::Error, errno: i32) -> bool {
    e.raw_os_error() == Some(errno)
}

/// A `timespec` of `d` (seconds saturated).
fn timespec(d: Duration) -> libc::timespec {
    libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    }
}

/// The instant `t` from now, or one year from now for a `t` too long to
/// add (a caller's `Duration::MAX` means "as long as it takes", not a panic).
pub(crate) fn deadline_in(t: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(t)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600))
}

/// A `pollfd` for `fd` (a negative fd is ignored by the kernel).
pub(crate) fn pollfd(fd: RawFd, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// `ppoll` on `fds` until one is ready or `deadline` passes (`None`: no
/// deadline). Returns the number of ready fds, 0 once the deadline passed.
/// `EINTR` and early returns wait again for the time left. `ppoll`, not
/// `poll`: poll's whole milliseconds would round the last sub-millisecond
/// down to 0 and spin until the deadline.
pub(crate) fn ppoll_until(fds: &mut [libc::pollfd], deadline: Option<Instant>) -> Result<usize> {
    loop {
        let ts = deadline.map(|d| timespec(d.saturating_duration_since(Instant::now())));
        let tsp = ts
            .as_ref()
            .map_or(std::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `fds` is a live slice of its stated length and `tsp` null or
        // a live local; ppoll reads `tsp` and writes only the `revents`.
        let r = unsafe {
            syscall!(ppoll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                tsp,
                std::ptr::null()
            ))
        };
        match r {
            Ok(n) if n > 0 => return Ok(n as usize),
            Ok(_) if deadline.is_none_or(|d| Instant::now() >= d) => return Ok(0),
            Ok(_) => {}
            Err(e) if is(&e, libc::EINTR) => {}
            Err(e) => return Err(Error::io("ppoll", e)),
        }
    }
}

/// The poll events of `fd` right now (one `poll` that never sleeps; `EINTR`
/// retried): a look at whether a socket is readable or hung up, without
/// reading it.
pub(crate) fn peek_events(fd: BorrowedFd<'_>, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut pfd = pollfd(fd.as_raw_fd(), events);
    loop {
        // SAFETY: one live pollfd; a zero timeout never sleeps.
        match unsafe { syscall!(poll(&mut pfd, 1, 0)) } {
            Ok(_) => return Ok(pfd.revents),
            Err(e) if is(&e, libc::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
}

/// `fstat` of an open fd.
pub(crate) fn fstat(fd: BorrowedFd<'_>) -> io::Result<libc::stat> {
    // SAFETY: `stat` is plain data: all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the live struct we pass; the fd is open.
    unsafe { syscall!(fstat(fd.as_raw_fd(), &mut st)) }?;
    Ok(st)
}

/// The file status flags (`F_GETFL`) of an open fd.
pub(crate) fn file_flags(fd: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    // SAFETY: F_GETFL takes no argument.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_GETFL)) }
}

/// Sets `O_NONBLOCK` on the open file behind `fd`.
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    let set = |fl: libc::c_int| {
        // SAFETY: F_SETFL takes an int argument, no pointer.
        unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK)) }
    };
    file_flags(fd)
        .and_then(set)
        .map_err(|e| Error::io("set O_NONBLOCK", e))?;
    Ok(())
}

/// An integer `SOL_SOCKET` option of a socket (`SO_TYPE`, `SO_DOMAIN`, ...);
/// an error for an fd that is not a socket.
pub(crate) fn socket_option(fd: BorrowedFd<'_>, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the live int.
    unsafe {
        syscall!(getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        ))
    }?;
    Ok(v)
}

/// A connected pair of Unix sockets of `ty` (`SOCK_STREAM`,
/// `SOCK_SEQPACKET`, or'ed with `SOCK_NONBLOCK` if wanted), close-on-exec.
pub(crate) fn socketpair(ty: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` has room for the two fds socketpair writes.
    unsafe {
        syscall!(socketpair(
            libc::AF_UNIX,
            ty | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr()
        ))
    }
    .map_err(|e| Error::io("socketpair", e))?;
    // SAFETY: two fresh fds that nothing else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A new Unix `SOCK_SEQPACKET` socket, close-on-exec.
pub(crate) fn seqpacket_socket() -> Result<OwnedFd> {
    nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::errno("socket", e))
}

/// One `connect` of a new `SOCK_SEQPACKET` socket to `path` (no retry).
pub(crate) fn connect_seqpacket(path: &Path) -> Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let addr =
        nix::sys::socket::UnixAddr::new(path).map_err(|e| Error::errno("socket address", e))?;
    nix::sys::socket::connect(fd.as_raw_fd(), &addr).map_err(|e| Error::errno("connect", e))?;
    Ok(fd)
}

/// Most fds [`recv_fds`] takes from one message: more are cut by the kernel
/// (`MSG_CTRUNC`), which closes the ones that did not fit.
pub(crate) const RECV_FDS_MAX: usize = crate::handshake::MAX_FDS;

/// Words of the control buffer of [`recv_fds`].
const CBUF_WORDS: usize = 8;
// SAFETY: CMSG_SPACE only computes a size (a `const fn` here).
const RECV_SPACE: usize =
    unsafe { libc::CMSG_SPACE((RECV_FDS_MAX * std::mem::size_of::<RawFd>()) as u32) } as usize;
// The buffer the kernel may fill `RECV_SPACE` bytes of: checked at compile time.
const _: () = assert!(RECV_SPACE <= CBUF_WORDS * std::mem::size_of::<u64>());

/// Sends one message of `bytes` with `fds` attached (`SCM_RIGHTS`), with
/// `MSG_NOSIGNAL | MSG_DONTWAIT`: never blocks, never raises `SIGPIPE`.
/// Returns the bytes sent.
pub(crate) fn send_fds(
    sock: BorrowedFd<'_>,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<usize> {
    let payload = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload as u32) } as usize;
    let space = if fds.is_empty() { 0 } else { space };
    // u64 words: aligned for a cmsghdr. Empty (no allocation) without fds.
    let mut cbuf = vec![0u64; space.div_ceil(std::mem::size_of::<u64>())];
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = cbuf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds `space` = CMSG_SPACE(payload)
        // bytes, room for one header and `payload` bytes of fds, which we
        // write unaligned.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(payload as u32) as _;
            let data = libc::CMSG_DATA(c).cast::<RawFd>();
            for (i, fd) in fds.iter().enumerate() {
                std::ptr::write_unaligned(data.add(i), fd.as_raw_fd());
            }
        }
    }
    // SAFETY: `msg` points at live buffers of the sizes it states; the kernel
    // only reads them.
    let n = unsafe {
        syscall!(sendmsg(
            sock.as_raw_fd(),
            &msg,
            libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT
        ))
    }?;
    Ok(n as usize)
}

/// What [`recv_fds`] received.
#[derive(Debug)]
pub(crate) struct Received {
    /// Bytes of the message.
    pub len: usize,
    /// Every fd that arrived, owned (closed if dropped).
    pub fds: Vec<OwnedFd>,
    /// The message was longer than the buffer (`MSG_TRUNC`).
    pub truncated: bool,
    /// More fds came than [`RECV_FDS_MAX`] (`MSG_CTRUNC`; the kernel closed
    /// the surplus).
    pub fds_truncated: bool,
}

/// One `recvmsg` into `buf` with `MSG_CMSG_CLOEXEC | MSG_DONTWAIT`, taking
/// ownership of every fd that arrived (at most [`RECV_FDS_MAX`]) before
/// anything else looks at the message.
pub(crate) fn recv_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<Received> {
    let mut cbuf = [0u64; CBUF_WORDS];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: msghdr is plain data; all-zero is a valid empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = RECV_SPACE;
    // SAFETY: `msg` points at live buffers of the sizes it states.
    let n = unsafe {
        syscall!(recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT
        ))
    }?;
    let mut fds = Vec::new();
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled, within
    // the `msg_controllen` it reported; SCM_RIGHTS payloads are arrays of fds that
    // the kernel installed in our table for us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let payload = (*c).cmsg_len as usize - (data as usize - c as usize);
                for i in 0..payload / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Ok(Received {
        len: n as usize,
        fds,
        truncated: msg.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: msg.msg_flags & libc::MSG_CTRUNC != 0,
    })
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn fds_sent_arrive_owned_and_close_on_exec() {
        let (a, b) = socketpair(libc::SOCK_SEQPACKET).expect("socketpair");
        let (x, _y) = socketpair(libc::SOCK_STREAM).expect("socketpair");
        assert_eq!(send_fds(a.as_fd(), b"hi", &[x.as_fd()]).expect("send"), 2);
        let mut buf = [0u8; 8];
        let got = recv_fds(b.as_fd(), &mut buf).expect("recv");
        assert_eq!((got.len, got.fds.len()), (2, 1));
        assert!(!got.truncated && !got.fds_truncated);
        // SAFETY: F_GETFD takes no argument.
        let fl = unsafe { syscall!(fcntl(got.fds[0].as_raw_fd(), libc::F_GETFD)) };
        assert_eq!(fl.expect("F_GETFD") & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }

    #[test]
    fn too_many_fds_and_long_messages_are_reported_truncated() {
        let (a, b) = socketpair(libc::SOCK_SEQPACKET).expect("socketpair");
        let many: Vec<_> = (0..RECV_FDS_MAX + 1).map(|_| a.as_fd()).collect();
        send_fds(a.as_fd(), b"hello", &many).expect("send");
        let mut buf = [0u8; 2];
        let got = recv_fds(b.as_fd(), &mut buf).expect("recv");
        assert!(got.truncated && got.fds_truncated);
        assert!(got.fds.len() <= RECV_FDS_MAX);
    }

    #[test]
    fn ppoll_until_a_passed_deadline_returns_zero() {
        let (a, _b) = socketpair(libc::SOCK_STREAM).expect("socketpair");
        let mut pfd = [pollfd(a.as_raw_fd(), libc::POLLIN)];
        assert_eq!(
            ppoll_until(&mut pfd, Some(Instant::now())).expect("ppoll"),
            0
        );
        assert_eq!(peek_events(a.as_fd(), libc::POLLIN).expect("poll"), 0);
    }
}
