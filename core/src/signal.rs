//! Wake-up file descriptors: an eventfd (the default) or a pipe (the portable
//! fallback), with [`notify`](Signal::notify), [`wait`](Signal::wait) and
//! [`drain`](Signal::drain).
//!
//! A signal carries no data: a notification means "look at the shared memory
//! again". Both processes hold both ends of a pipe signal, so a write never meets
//! a closed reader (no `SIGPIPE`); a peer's disappearance is detected through the
//! channel's socket instead.
//!
//! # Hostile peers
//!
//! The fd is shared with the peer, and with it the file's flags: a peer can clear
//! `O_NONBLOCK` behind our back. Reads (eventfd and pipe) and pipe writes are
//! therefore issued with `RWF_NOWAIT`, which makes each call non-blocking whatever
//! the file's flags say. Linux does not support `RWF_NOWAIT` on eventfd writes: a
//! peer that both clears `O_NONBLOCK` and fills the eventfd counter to its maximum
//! can make our next [`notify`](Signal::notify) block. Use [`SignalKind::Pipe`]
//! where that matters. A peer that floods the fd costs us one `read` per wake-up
//! and never any memory.
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Which kind of fd carries wake-ups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignalKind {
    /// An eventfd: one fd, 8-byte counter. The default.
    #[default]
    EventFd,
    /// A pipe: two fds. The portable fallback, immune to flag tampering.
    Pipe,
}

impl SignalKind {
    /// Number of fds that make up one signal of this kind.
    pub fn fd_count(self) -> usize {
        match self {
            SignalKind::EventFd => 1,
            SignalKind::Pipe => 2,
        }
    }

    pub(crate) fn to_wire(self) -> u32 {
        match self {
            SignalKind::EventFd => 1,
            SignalKind::Pipe => 2,
        }
    }

    pub(crate) fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(SignalKind::EventFd),
            2 => Some(SignalKind::Pipe),
            _ => None,
        }
    }
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
}

impl Signal {
    /// Creates a signal of `kind` (close-on-exec, non-blocking).
    pub fn new(kind: SignalKind) -> Result<Self> {
        match kind {
            SignalKind::EventFd => {
                // SAFETY: eventfd takes no pointers; we own the fd it returns.
                let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
                if fd < 0 {
                    return Err(Error::io("eventfd", std::io::Error::last_os_error()));
                }
                // SAFETY: `fd` is a fresh fd that nothing else owns.
                let rx = unsafe { OwnedFd::from_raw_fd(fd) };
                Ok(Self::assemble(kind, rx, None))
            }
            SignalKind::Pipe => {
                let mut fds = [0 as RawFd; 2];
                // SAFETY: `fds` has room for the two fds pipe2 writes.
                let r =
                    unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) };
                if r != 0 {
                    return Err(Error::io("pipe2", std::io::Error::last_os_error()));
                }
                // SAFETY: both are fresh fds that nothing else owns.
                let (rx, tx) =
                    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
                Ok(Self::assemble(kind, rx, Some(tx)))
            }
        }
    }

    fn assemble(kind: SignalKind, rx: OwnedFd, tx: Option<OwnedFd>) -> Self {
        Signal {
            kind,
            rx,
            tx,
            notifies: AtomicU64::new(0),
        }
    }

    /// Rebuilds a signal from fds received from a peer, in the order of
    /// [`fds`](Self::fds), after checking that they are what `kind` says: an
    /// eventfd, or the read and write ends of one pipe.
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
        }
    }

    /// The kind of this signal.
    pub fn kind(&self) -> SignalKind {
        self.kind
    }

    /// The fds to pass to the peer (eventfd; or pipe read end, write end).
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
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

    /// Wakes a waiter: one `write`. Never blocks (see the module docs for the
    /// eventfd caveat); an already pending wake-up (full pipe, saturated counter)
    /// is not an error.
    pub fn notify(&self) {
        self.notifies.fetch_add(1, Ordering::Relaxed);
        match &self.tx {
            None => {
                let one: u64 = 1;
                // SAFETY: writes 8 bytes from a live local; fd is open.
                let _ = unsafe { libc::write(self.rx.as_raw_fd(), (&one as *const u64).cast(), 8) };
            }
            Some(tx) => {
                let byte = 1u8;
                let _ = write_nowait(tx.as_fd(), std::slice::from_ref(&byte));
            }
        }
    }

    /// Consumes pending wake-ups with one non-blocking `read`. A pipe flooded by
    /// the peer may stay readable; callers re-check their condition anyway.
    pub fn drain(&self) -> Result<()> {
        let mut buf = [0u8; 64];
        let want = match self.kind {
            SignalKind::EventFd => 8,
            SignalKind::Pipe => buf.len(),
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
    pub fn wait_with(
        &self,
        timeout: Option<Duration>,
        extra: Option<BorrowedFd<'_>>,
    ) -> Result<Woken> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: self.rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: extra.map_or(-1, |f| f.as_raw_fd()),
                    events: libc::POLLIN | libc::POLLRDHUP,
                    revents: 0,
                },
            ];
            let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let ts = remaining.map(|r| libc::timespec {
                tv_sec: r.as_secs().min(i64::MAX as u64) as libc::time_t,
                tv_nsec: r.subsec_nanos() as libc::c_long,
            });
            let tsp = ts
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `fds` and `ts` are live locals; poll reads/writes only them.
            // An fd of -1 is ignored by ppoll.
            let r = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, tsp, std::ptr::null()) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                return Err(Error::io("ppoll", e));
            }
            if fds[1].revents != 0 {
                return Ok(Woken::Extra);
            }
            if fds[0].revents & (libc::POLLERR | libc::POLLNVAL) != 0 {
                return Err(Error::Protocol("signal fd reported an error".into()));
            }
            if fds[0].revents != 0 {
                return Ok(Woken::Signalled);
            }
            if r == 0 {
                return Ok(Woken::Timeout);
            }
        }
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
    let r = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    // SAFETY: as above, plain read into the live buffer.
    let r = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// A `write` that does not block whatever the file's flags, where supported.
fn write_nowait(fd: BorrowedFd<'_>, buf: &[u8]) -> std::io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over a live buffer that the kernel only reads.
    let r = unsafe { libc::pwritev2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
    if r >= 0 {
        return Ok(r as usize);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    // SAFETY: as above, plain write from the live buffer.
    let r = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

fn fstat(fd: BorrowedFd<'_>) -> Result<libc::stat> {
    // SAFETY: fstat fills the zeroed struct; the fd is open.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd.as_raw_fd(), &mut st) != 0 {
            return Err(Error::io("fstat", std::io::Error::last_os_error()));
        }
        Ok(st)
    }
}

fn access_mode(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: F_GETFL takes no argument.
    let fl = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if fl < 0 {
        return Err(Error::io("F_GETFL", std::io::Error::last_os_error()));
    }
    Ok(fl & libc::O_ACCMODE)
}

pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: F_GETFL/F_SETFL take an int argument, no pointer.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK) < 0 {
            return Err(Error::io("set O_NONBLOCK", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
