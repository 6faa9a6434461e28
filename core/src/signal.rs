//! Wake-up file descriptors: a Unix socket pair (the default), an eventfd or a
//! pipe, with [`notify`](Signal::notify), [`wait`](Signal::wait) and
//! [`drain`](Signal::drain).
//!
//! A signal carries no data: a notification means "look at the shared memory
//! again".
//!
//! # Hostile peers
//!
//! Only [`SignalKind::Socket`] is immune to what a peer does to the fds it was
//! given, and it is the default. Each side keeps **its own end** of a stream
//! socket pair: the notifier `send`s one byte on its end with `MSG_DONTWAIT |
//! MSG_NOSIGNAL` (non-blocking whatever the file's flags, no `SIGPIPE`), the
//! waiter polls and `recv`s its end with `MSG_DONTWAIT`. A send takes no lock
//! the peer can hold (only the receiver's queue spinlock), and its bytes are
//! charged to the sender's own send buffer: a peer that never reads, floods,
//! clears `O_NONBLOCK`, shuts its end down or closes it cannot make a call
//! block. A listener's own ends never leave its process. (A connecting side's
//! ends are created by the listener, which could keep a copy of the waiting
//! end; see `SECURITY.md` for what that allows.) The peer closing its end
//! makes [`drain`](Signal::drain) report [`Error::Disconnected`].
//!
//! The other two kinds share one open file with the peer, and with it more
//! than the data:
//!
//! * **eventfd**: the file's flags are shared, and Linux does not support
//!   `RWF_NOWAIT` on eventfd writes (nor reopening an eventfd to get private
//!   flags). A peer that clears `O_NONBLOCK` and fills the counter to its
//!   maximum makes our next [`notify`](Signal::notify) block for good. Use it
//!   only between processes of one trust domain.
//! * **pipe**: reads and writes are issued with `RWF_NOWAIT`, which defeats
//!   cleared flags and a full pipe, but not the pipe's lock, which both ends
//!   share: a peer that `splice`s from its end into a socket whose buffer is
//!   full sleeps holding that lock, and our next write or read waits for it.
//!   Use it only between processes of one trust domain, too.
//!
//! A peer that floods the fd costs us one `read` per wake-up and never any
//! memory.
//!
//! ```
//! use std::time::Duration;
//! use shmring::signal::{Signal, SignalKind};
//!
//! let s = Signal::new(SignalKind::EventFd)?;
//! assert!(!s.wait(Some(Duration::from_millis(1)))?);
//! s.notify();
//! assert!(s.wait(Some(Duration::from_secs(1)))?);
//! s.drain()?;
//! # Ok::<(), shmring::Error>(())
//! ```

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sys::{self, set_nonblocking, syscall};
use crate::{Error, Result};

/// Which kind of fd carries wake-ups (see the module docs for what a hostile
/// peer can do with each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalKind {
    /// An eventfd: one fd shared by both sides, 8-byte counter. Only for peers
    /// of one trust domain: a peer can make our writes block.
    EventFd,
    /// A pipe: both ends shared by both sides. Only for peers of one trust
    /// domain: a peer can hold the pipe's lock.
    Pipe,
    /// A Unix stream socket pair, one end per side. The default: no peer can
    /// make a wake-up or a drain block.
    #[default]
    Socket,
}

impl SignalKind {
    /// Number of fds of one signal of this kind that a side holds (and that
    /// travel to the peer).
    pub fn fd_count(self) -> usize {
        match self {
            SignalKind::EventFd => 1,
            SignalKind::Pipe => 2,
            SignalKind::Socket => 1,
        }
    }

    /// The kind's number on the wire (1 eventfd, 2 pipe, 3 socket).
    pub fn to_wire(self) -> u32 {
        match self {
            SignalKind::EventFd => 1,
            SignalKind::Pipe => 2,
            SignalKind::Socket => 3,
        }
    }

    /// The kind of a wire number, if known.
    pub fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(SignalKind::EventFd),
            2 => Some(SignalKind::Pipe),
            3 => Some(SignalKind::Socket),
            _ => None,
        }
    }
}

/// Which way a side uses a [`SignalKind::Socket`] end (see
/// [`Signal::restrict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// This side only notifies through it.
    Notify,
    /// This side only waits on it.
    Wait,
}

/// What ended a [`Signal::wait_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woken {
    /// The signal fd is readable.
    Signalled,
    /// The extra fd is readable or hung up.
    Extra,
    /// The timeout passed.
    Timeout,
}

/// A wake-up fd.
#[derive(Debug)]
pub struct Signal {
    kind: SignalKind,
    /// The fd a waiter polls and reads (eventfd, or the pipe's read end).
    rx: OwnedFd,
    /// The pipe's write end; `None` for an eventfd (writes go to `rx`).
    tx: Option<OwnedFd>,
    notifies: AtomicU64,
    /// A wake-up of a [`SignalKind::Socket`] signal failed because the
    /// peer's end is closed (`EPIPE`, `ECONNRESET`): the peer is gone.
    peer_gone: AtomicBool,
}

impl Signal {
    /// Creates a signal of `kind` (close-on-exec, non-blocking).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the fds cannot be created (out of fds, say).
    pub fn new(kind: SignalKind) -> Result<Self> {
        match kind {
            SignalKind::EventFd => {
                // SAFETY: eventfd takes no pointers; we own the fd it returns.
                let fd = unsafe { syscall!(eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK)) }
                    .map_err(|e| Error::io("eventfd", e))?;
                // SAFETY: `fd` is a fresh fd that nothing else owns.
                let rx = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Self::assemble(kind, rx, None))
            }
            SignalKind::Pipe => {
                let mut fds = [0 as RawFd; 2];
                // SAFETY: `fds` has room for the two fds pipe2 writes.
                unsafe { syscall!(pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK)) }
                    .map_err(|e| Error::io("pipe2", e))?;
                // SAFETY: both are fresh fds that nothing else owns.
                let (rx, tx) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                Ok(Self::assemble(kind, rx, Some(tx)))
            }
            SignalKind::Socket => {
                // One process holding both ends (the creator, before it hands
                // one over: see `Signal::socket_pair`).
                let (a, b) = socket_pair()?;
                Ok(Self::assemble(kind, a, Some(b)))
            }
        }
    }

    /// Creates a [`SignalKind::Socket`] signal as its two ends: each is a
    /// complete signal for one side (this side keeps one, the other goes to
    /// the peer).
    pub fn socket_pair() -> Result<(Signal, Signal)> {
        let (a, b) = socket_pair()?;
        Ok((
            Self::assemble(SignalKind::Socket, a, None),
            Self::assemble(SignalKind::Socket, b, None),
        ))
    }

    /// For a [`SignalKind::Socket`] end: shuts the unused direction down, so
    /// that the peer cannot send into the end we only notify through (its
    /// sends fail) and nothing is sent from the end we only wait on. No effect
    /// on the other kinds.
    pub fn restrict(&self, dir: Direction) {
        if self.kind != SignalKind::Socket {
            return;
        }
        let how = match dir {
            Direction::Notify => libc::SHUT_RD,
            Direction::Wait => libc::SHUT_WR,
        };
        // SAFETY: shutdown takes no pointers; the fd is open. A socket already
        // shut down or disconnected reports an error we do not need.
        let _ = unsafe { libc::shutdown(self.rx.as_raw_fd(), how) };
    }

    fn assemble(kind: SignalKind, rx: OwnedFd, tx: Option<OwnedFd>) -> Self {
        Signal {
            kind,
            rx,
            tx,
            notifies: AtomicU64::new(0),
            peer_gone: AtomicBool::new(false),
        }
    }

    /// Rebuilds a signal from fds received from a peer, in the order of
    /// [`fds`](Self::fds), after checking that they are what `kind` says: an
    /// eventfd, or the read and write ends of one pipe.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] for the wrong number of fds or fds that are not
    /// what `kind` says; [`Error::Io`] if inspecting them fails.
    pub fn from_fds(kind: SignalKind, mut fds: Vec<OwnedFd>) -> Result<Self> {
        if fds.len() != kind.fd_count() {
            return Err(Error::Protocol(format!(
                "{kind:?} signal needs {} fds, got {}",
                kind.fd_count(),
                fds.len()
            )));
        }
        match kind {
            SignalKind::EventFd => {
                let rx = fds.remove(0);
                let link = std::fs::read_link(format!("/proc/self/fd/{}", rx.as_raw_fd()))
                    .map_err(|e| Error::io("readlink signal fd", e))?;
                if link.as_os_str() != "anon_inode:[eventfd]" {
                    return Err(Error::Protocol(format!(
                        "signal fd is not an eventfd ({})",
                        link.display()
                    )));
                }
                set_nonblocking(rx.as_fd())?;
                Ok(Self::assemble(kind, rx, None))
            }
            SignalKind::Pipe => {
                let tx = fds.remove(1);
                let rx = fds.remove(0);
                let (rs, ws) = (fstat(rx.as_fd())?, fstat(tx.as_fd())?);
                let fifo = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFIFO;
                if !fifo(&rs) || !fifo(&ws) || rs.st_ino != ws.st_ino || rs.st_dev != ws.st_dev {
                    return Err(Error::Protocol(
                        "signal fds are not the two ends of one pipe".into(),
                    ));
                }
                if access_mode(rx.as_fd())? != libc::O_RDONLY
                    || access_mode(tx.as_fd())? != libc::O_WRONLY
                {
                    return Err(Error::Protocol("pipe ends in the wrong order".into()));
                }
                set_nonblocking(rx.as_fd())?;
                set_nonblocking(tx.as_fd())?;
                Ok(Self::assemble(kind, rx, Some(tx)))
            }
            SignalKind::Socket => {
                let fd = fds.remove(0);
                let st = fstat(fd.as_fd())?;
                if st.st_mode & libc::S_IFMT != libc::S_IFSOCK
                    || sockopt_int(fd.as_fd(), libc::SO_DOMAIN)? != libc::AF_UNIX
                    || sockopt_int(fd.as_fd(), libc::SO_TYPE)? != libc::SOCK_STREAM
                {
                    return Err(Error::Protocol(
                        "signal fd is not a Unix stream socket".into(),
                    ));
                }
                set_nonblocking(fd.as_fd())?;
                Ok(Self::assemble(kind, fd, None))
            }
        }
    }

    /// The kind of this signal.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// The fds to pass to the peer (eventfd; or pipe read end, write end; or,
    /// for a socket signal made by [`new`](Self::new), the second end).
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        if self.kind == SignalKind::Socket {
            return self.tx.iter().map(|t| t.as_fd()).collect();
        }
        let mut v = vec![self.rx.as_fd()];
        if let Some(tx) = &self.tx {
            v.push(tx.as_fd());
        }
        v
    }

    /// Duplicates the fds (to keep them while passing copies on).
    pub fn try_clone(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup signal fd", e));
        let tx = match &self.tx {
            Some(tx) => Some(dup(tx)?),
            None => None,
        };
        Ok(Self::assemble(self.kind, dup(&self.rx)?, tx))
    }

    /// How many times [`notify`](Self::notify) wrote the fd (wake-ups sent).
    pub fn notify_count(&self) -> u64 {
        self.notifies.load(Ordering::Relaxed)
    }

    /// Wakes a waiter: one `write` (`send` for a socket). A socket or pipe
    /// signal never blocks whatever the peer did (see the module docs for the
    /// eventfd and pipe caveats); an already pending wake-up (full buffer,
    /// saturated counter) or a peer that closed its end is not an error.
    pub fn notify(&self) {
        self.notifies.fetch_add(1, Ordering::Relaxed);
        let byte = 1u8;
        match (self.kind, &self.tx) {
            (SignalKind::Socket, tx) => {
                // One end per side: send on ours. Both ends in one process
                // (made by `new`): send on the other one, wait on `rx`.
                let fd = tx.as_ref().unwrap_or(&self.rx);
                // SAFETY: sends one byte from a live local; the fd is open.
                let r = unsafe {
                    syscall!(send(
                        fd.as_raw_fd(),
                        (&byte as *const u8).cast(),
                        1,
                        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                    ))
                };
                if r.is_err_and(|e| sys::is(&e, libc::EPIPE) || sys::is(&e, libc::ECONNRESET)) {
                    self.peer_gone.store(true, Ordering::Relaxed);
                }
            }
            (_, None) => {
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a live local; fd is open.
                let _ = unsafe { libc::write(self.rx.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
            (_, Some(tx)) => {
                let _ = write_nowait(tx.as_fd(), std::slice::from_ref(&byte));
            }
        }
    }

    /// Whether a wake-up found the peer's end of a [`SignalKind::Socket`]
    /// signal closed (one atomic load, no system call). Always `false` for
    /// the other kinds, whose files the peer shares.
    pub fn peer_gone(&self) -> bool {
        self.peer_gone.load(Ordering::Relaxed)
    }

    /// Consumes pending wake-ups with one non-blocking `read`. A pipe or socket
    /// flooded by the peer may stay readable; callers re-check their condition
    /// anyway. A socket signal whose peer closed its end reports
    /// [`Error::Disconnected`] (it would stay readable for good).
    ///
    /// # Errors
    ///
    /// [`Error::Disconnected`] as above; [`Error::Io`] if the read fails
    /// otherwise.
    pub fn drain(&self) -> Result<()> {
        let mut buf = [0u8; 64];
        if self.kind == SignalKind::Socket {
            // SAFETY: receives at most `buf.len()` bytes into the live buffer.
            let r = unsafe {
                syscall!(recv(
                    self.rx.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                ))
            };
            return match r {
                Ok(0) => Err(Error::Disconnected),
                Ok(_) => Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(()),
                    Some(libc::ECONNRESET) => Err(Error::Disconnected),
                    _ => Err(Error::io("drain signal", e)),
                },
            };
        }
        let want = match self.kind {
            SignalKind::EventFd => 8,
            _ => buf.len(),
        };
        match read_nowait(self.rx.as_fd(), &mut buf[..want]) {
            Ok(_) => Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(()),
            Err(e) => Err(Error::io("drain signal", e)),
        }
    }

    /// Waits until the signal is readable (`Ok(true)`) or `timeout` passes
    /// (`Ok(false)`); `None` waits forever. Does not consume the wake-up.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<bool> {
        Ok(self.wait_with(timeout, None)? == Woken::Signalled)
    }

    /// Waits for the signal or for `extra` (typically the peer link, to notice a
    /// hang-up) to become readable, or for `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::Protocol`] if the signal fd reports an error (`POLLERR`,
    /// `POLLNVAL`); [`Error::Io`] if `ppoll` fails.
    pub fn wait_with(
        &self,
        timeout: Option<Duration>,
        extra: Option<BorrowedFd<'_>>,
    ) -> Result<Woken> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        let mut fds = [
            sys::pollfd(self.rx.as_raw_fd(), libc::POLLIN),
            sys::pollfd(
                extra.map_or(-1, |f| f.as_raw_fd()),
                libc::POLLIN | libc::POLLRDHUP,
            ),
        ];
        sys::ppoll_until(&mut fds, deadline)?;
        if fds[1].revents != 0 {
            return Ok(Woken::Extra);
        }
        if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
            return Err(Error::Protocol("signal fd reported an error".into()));
        }
        if fds[0].revents != 0 {
            return Ok(Woken::Signalled);
        }
        Ok(Woken::Timeout)
    }
}

impl AsFd for Signal {
    /// The fd to watch for readability.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl AsRawFd for Signal {
    fn as_raw_fd(&self) -> RawFd {
        self.rx.as_raw_fd()
    }
}

/// A `read` that does not block whatever the file's flags (RWF_NOWAIT), falling
/// back to a plain read where the kernel does not support the flag.
fn read_nowait(fd: BorrowedFd<'_>, buf: &mut [u8]) -> std::io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over a live, writable buffer; offset -1 = current position.
    match unsafe { syscall!(preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT)) } {
        Err(e) if sys::is(&e, libc::EOPNOTSUPP) => {}
        r => return r.map(|n| n as usize),
    }
    // SAFETY: as above, plain read into the live buffer.
    unsafe { syscall!(read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())) }
        .map(|n| n as usize)
}

/// A `write` that does not block whatever the file's flags, where supported.
fn write_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> std::io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over a live buffer that the kernel only reads.
    match unsafe { syscall!(pwritev2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT)) } {
        Err(e) if sys::is(&e, libc::EOPNOTSUPP) => {}
        r => return r.map(|n| n as usize),
    }
    // SAFETY: as above, plain write from the live buffer.
    unsafe { syscall!(write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len())) }.map(|n| n as usize)
}

fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat> {
    sys::fstat(fd).map_err(|e| Error::io("fstat", e))
}

fn sockopt_int(fd: BorrowedFd<'_>, opt: libc::c_int) -> Result<libc::c_int> {
    sys::socket_option(fd, opt)
        .map_err(|e| Error::Protocol(format!("signal fd is not a socket ({e})")))
}

/// A connected Unix stream socket pair (close-on-exec, non-blocking).
pub(crate) fn socket_pair() -> Result<(OwnedFd, OwnedFd)> {
    sys::socketpair(libc::SOCK_STREAM | libc::SOCK_NONBLOCK)
}

fn access_mode(fd: BorrowedFd<'_>) -> Result<i32> {
    let fl = sys::file_flags(fd).map_err(|e| Error::io("F_GETFL", e))?;
    Ok(fl & libc::O_ACCMODE)
}
