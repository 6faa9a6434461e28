//! Registration bookkeeping shared by the sources of this crate (through
//! [`Driver`](crate::drive::Driver)): two fds under one token, pausing the
//! wake-up fd while a flood is throttled, and the drop-time safety net.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::{Error, FloodPolicy, Result};

/// Which of an endpoint's two fds are in a `Registry`, and under what token.
///
/// What goes into the epoll set are our own duplicates of the endpoint's fds,
/// made at [`register`](Self::register) and owned here: code with access to
/// the endpoint (through `DerefMut` or `get_mut` of the source) can close or
/// replace the endpoint's fds, but not these, so an fd number this struct
/// passes to `epoll_ctl` is always the file it registered (never a number
/// the process reused for something else).
#[derive(Debug)]
pub(crate) struct Reg {
    /// Our duplicates of the wake-up fd (eventfd, or the read end of a pipe)
    /// and of the link socket, while registered.
    fds: Option<(OwnedFd, OwnedFd)>,
    /// The registry's epoll fd, for [`Drop`].
    epfd: RawFd,
    token: Option<Token>,
    signal_on: bool,
    link_on: bool,
}

impl Reg {
    pub(crate) fn new() -> Self {
        Reg {
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
    /// `token`. Fails with `EEXIST` if this source is registered already.
    pub(crate) fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
        signal: BorrowedFd<'_>,
        link: BorrowedFd<'_>,
    ) -> io::Result<()> {
        check_interests(interests)?;
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
    pub(crate) fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        check_interests(interests)?;
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
            let (signal, _) = self.raw().map_err(|source| Error::Registry {
                context: "pause wake-up fd",
                source,
            })?;
            registry
                .deregister(&mut SourceFd(&signal))
                .map_err(|source| Error::Registry {
                    context: "pause wake-up fd",
                    source,
                })?;
            self.signal_on = false;
        }
        Ok(())
    }

    /// Puts the wake-up fd back after [`pause`](Self::pause).
    pub(crate) fn resume(&mut self, registry: &Registry) -> Result<()> {
        let token = self.token()?;
        if !self.signal_on {
            let (signal, _) = self.raw().map_err(|source| Error::Registry {
                context: "resume wake-up fd",
                source,
            })?;
            registry
                .register(&mut SourceFd(&signal), token, Interest::READABLE)
                .map_err(|source| Error::Registry {
                    context: "resume wake-up fd",
                    source,
                })?;
            self.signal_on = true;
        }
        Ok(())
    }
}

impl Drop for Reg {
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

fn check_interests(interests: Interest) -> io::Result<()> {
    if interests.is_readable() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "shmring endpoints only report READABLE readiness",
        ))
    }
}

/// Rate limiter of wake-ups that brought nothing (see [`FloodPolicy`]).
#[derive(Debug)]
pub(crate) struct Guard {
    policy: FloodPolicy,
    window_start: Option<Instant>,
    empties: u32,
    triggered: bool,
    pause: Duration,
    pub(crate) paused_until: Option<Instant>,
    pub(crate) stats: WakeStats,
}

/// Counters of the wake-up handling of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WakeStats {
    /// Calls that followed an armed sleep (wake-ups).
    pub wakeups: u64,
    /// Wake-ups that found nothing to do (no item, no free slot): spurious
    /// races, or a peer flooding the wake-up fd.
    pub empty_wakeups: u64,
    /// Times the wake-up fd was paused because of too many empty wake-ups.
    pub throttles: u64,
}

impl Guard {
    pub(crate) fn new(policy: FloodPolicy) -> Self {
        Guard {
            pause: policy.pause,
            policy,
            window_start: None,
            empties: 0,
            triggered: false,
            paused_until: None,
            stats: WakeStats::default(),
        }
    }

    pub(crate) fn wakeup(&mut self) {
        self.stats.wakeups += 1;
    }

    /// Records an empty wake-up at `now`; returns the instant until which the
    /// wake-up fd must stay paused if this one crossed the limit.
    pub(crate) fn empty(&mut self, now: Instant) -> Option<Instant> {
        self.stats.empty_wakeups += 1;
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_duration_since(start) >= self.policy.window {
            if !self.triggered {
                self.pause = self.policy.pause;
            }
            self.triggered = false;
            self.window_start = Some(now);
            self.empties = 0;
        }
        self.empties += 1;
        if self.empties <= self.policy.max_empty_wakeups {
            return None;
        }
        let until = now + self.pause;
        self.pause = (self.pause * 2).min(self.policy.max_pause.max(self.policy.pause));
        self.empties = 0;
        self.triggered = true;
        self.window_start = Some(until);
        self.stats.throttles += 1;
        self.paused_until = Some(until);
        Some(until)
    }
}
