//! [`Registration`]: which of a source's two fds are in a mio `Registry`
//! (through [`WakeCycle`](crate::wakeup::WakeCycle)): two fds under one
//! token, pausing the wake-up fd while a flood is throttled, and the
//! drop-time safety net.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::{Error, Result};

/// Which of an endpoint's two fds are in a `Registry`, and under what token.
///
/// What goes into the epoll set are our own duplicates of the endpoint's fds,
/// made at [`register`](Self::register) and owned here: code with access to
/// the endpoint (through `DerefMut` or `get_mut` of the source) can close or
/// replace the endpoint's fds, but not these, so an fd number this struct
/// passes to `epoll_ctl` is always the file it registered (never a number
/// the process reused for something else).
#[derive(Debug)]
pub(crate) struct Registration {
    /// Our duplicates of the wake-up fd (eventfd, or the read end of a pipe)
    /// and of the link socket, while registered.
    fds: Option<(OwnedFd, OwnedFd)>,
    /// The registry's epoll fd, for [`Drop`].
    epfd: RawFd,
    token: Option<Token>,
    signal_on: bool,
    link_on: bool,
}

impl Registration {
    pub(crate) fn new() -> Self {
        Registration {
            fds: None,
            epfd: -1,
            token: None,
            signal_on: false,
            link_on: false,
        }
    }

    pub(crate) fn token(&self) -> Result<Token> {
        self.token.ok_or(Error::NotRegistered)
    }

    /// The registered duplicates (wake-up fd, link) as raw numbers.
    fn raw(&self) -> io::Result<(RawFd, RawFd)> {
        match &self.fds {
            Some((signal, link)) => Ok((signal.as_raw_fd(), link.as_raw_fd())),
            None => Err(io::Error::from_raw_os_error(libc::ENOENT)),
        }
    }

    /// Registers duplicates of `signal` (the wake-up fd) and `link` under
    /// `token`, both [`Interest::READABLE`]. Fails with `EEXIST` if this
    /// source is registered already.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        signal: BorrowedFd<'_>,
        link: BorrowedFd<'_>,
    ) -> io::Result<()> {
        if self.fds.is_some() {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        let signal = signal.try_clone_to_owned()?;
        let link = link.try_clone_to_owned()?;
        registry.register(
            &mut SourceFd(&signal.as_raw_fd()),
            token,
            Interest::READABLE,
        )?;
        if let Err(e) =
            registry.register(&mut SourceFd(&link.as_raw_fd()), token, Interest::READABLE)
        {
            let _ = registry.deregister(&mut SourceFd(&signal.as_raw_fd()));
            return Err(e);
        }
        self.fds = Some((signal, link));
        self.epfd = registry.as_raw_fd();
        self.token = Some(token);
        self.signal_on = true;
        self.link_on = true;
        Ok(())
    }

    /// Reregisters under a new token. A paused wake-up fd stays paused; it is
    /// registered under the new token when it resumes.
    pub(crate) fn reregister(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let (signal, link) = self.raw()?;
        if self.signal_on {
            registry.reregister(&mut SourceFd(&signal), token, Interest::READABLE)?;
        }
        registry.reregister(&mut SourceFd(&link), token, Interest::READABLE)?;
        self.epfd = registry.as_raw_fd();
        self.token = Some(token);
        self.link_on = true;
        Ok(())
    }

    /// Takes both fds out of the registry and closes our duplicates.
    pub(crate) fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        let mut result = Ok(());
        if let Ok((signal, link)) = self.raw() {
            if self.signal_on {
                result = registry.deregister(&mut SourceFd(&signal));
            }
            if self.link_on {
                let r = registry.deregister(&mut SourceFd(&link));
                result = result.and(r);
            }
        }
        self.signal_on = false;
        self.link_on = false;
        self.fds = None;
        self.token = None;
        self.epfd = -1;
        result
    }

    /// Takes the wake-up fd out of the registry (the link stays, so a hang-up
    /// is still reported).
    pub(crate) fn pause(&mut self, registry: &Registry) -> Result<()> {
        if self.signal_on {
            self.with_signal("pause wake-up fd", |fd| {
                registry.deregister(&mut SourceFd(&fd))
            })?;
            self.signal_on = false;
        }
        Ok(())
    }

    /// Puts the wake-up fd back after [`pause`](Self::pause).
    pub(crate) fn resume(&mut self, registry: &Registry) -> Result<()> {
        let token = self.token()?;
        if !self.signal_on {
            self.with_signal("resume wake-up fd", |fd| {
                registry.register(&mut SourceFd(&fd), token, Interest::READABLE)
            })?;
            self.signal_on = true;
        }
        Ok(())
    }

    /// Runs `op` on the registered wake-up fd; a failure is a
    /// [`Error::Registry`] with `context`.
    fn with_signal(
        &self,
        context: &'static str,
        op: impl FnOnce(RawFd) -> io::Result<()>,
    ) -> Result<()> {
        self.raw()
            .and_then(|(signal, _)| op(signal))
            .map_err(|source| Error::Registry { context, source })
    }
}

impl Drop for Registration {
    /// Safety net for an endpoint dropped while still registered.
    ///
    /// Closing an fd removes it from an epoll set only once *every* fd of the
    /// open file is closed, and the peer process holds the wake-up fd's file too.
    /// Without this, a peer that keeps writing it after we dropped the endpoint
    /// would keep producing events for a dead token (and no way to deregister
    /// it). So we remove both of our duplicates from the epoll instance they
    /// were registered with, before they close. If that `Poll` is gone already
    /// (its number maybe reused), the call fails harmlessly: no other epoll set
    /// holds our duplicates.
    fn drop(&mut self) {
        if self.epfd < 0 {
            return;
        }
        let Ok((signal, link)) = self.raw() else {
            return;
        };
        for (fd, on) in [(signal, self.signal_on), (link, self.link_on)] {
            if on {
                // SAFETY: epoll_ctl with EPOLL_CTL_DEL ignores the event pointer
                // (null is allowed since Linux 2.6.9) and touches no memory of
                // ours; `fd` is our own open duplicate; on a stale epoll fd it
                // fails with EBADF/EINVAL/ENOENT.
                unsafe {
                    libc::epoll_ctl(self.epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut());
                }
            }
        }
    }
}

/// Refuses interests without [`Interest::READABLE`]: the only readiness a
/// source of this crate reports.
pub(crate) fn check_interests(interests: Interest) -> io::Result<()> {
    if interests.is_readable() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "shmring endpoints only report READABLE readiness",
        ))
    }
}
