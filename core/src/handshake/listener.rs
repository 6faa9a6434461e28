//! The listening side: a [`Listener`] bound to a socket path (its mode, its
//! `flock`ed `<path>.lock`, the replacement of a stale socket file),
//! `accept` with the uid policy of [`ListenOptions`], and the peer's
//! credentials ([`peer_cred`]).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytemuck::Pod;
use nix::sys::socket::{self, UnixAddr};

use super::fds::{send_with_fds, wait_readable};
use super::{check_socket_path, Connection, Welcome};
use crate::channel::Config;
use crate::sys::{self, syscall};
use crate::{Consumer, Error, Producer, Result};

/// Credentials of the process at the other end of a socket (`SO_PEERCRED`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    /// Process id at connect time.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// Reads the peer's credentials of a connected Unix socket.
pub fn peer_cred(fd: BorrowedFd<'_>) -> Result<PeerCred> {
    let c = socket::getsockopt(&fd, socket::sockopt::PeerCredentials)
        .map_err(|e| Error::errno("SO_PEERCRED", e))?;
    Ok(PeerCred {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    })
}

/// Options of a [`Listener`].
#[derive(Debug, Clone)]
pub struct ListenOptions {
    /// Mode of the socket file (default `0o600`: only the same user may connect).
    pub mode: u32,
    /// If set, only peers with one of these uids are served (`SO_PEERCRED`).
    pub allowed_uids: Option<Vec<u32>>,
    /// Replace a stale socket file (one nobody listens on) at the path.
    pub replace_stale: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            mode: 0o600,
            allowed_uids: None,
            replace_stale: true,
        }
    }
}

/// A Unix socket bound to a path, accepting peers. The socket file is removed
/// when the listener drops, and so is its lock file.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    ino: u64,
    opts: ListenOptions,
    /// The `flock`ed `<path>.lock` (see the module docs), held while this
    /// lives and removed after the socket file.
    _lock: PathLock,
}

/// The advisory lock on `<path>.lock` that makes a listener the only one on
/// its path.
#[derive(Debug)]
struct PathLock {
    file: std::fs::File,
    path: PathBuf,
}

impl PathLock {
    fn take(socket: &Path) -> Result<Self> {
        let mut name = socket.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        // A lock file removed by the previous holder between our open and our
        // flock is not the lock any more: open again (a few times at most).
        for _ in 0..16 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
                .open(&path)
                .map_err(|e| Error::io("open the socket's lock file", e))?;
            // SAFETY: flock takes no pointers; the fd is open.
            let locked =
                unsafe { syscall!(flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB)) };
            if let Err(e) = locked {
                if sys::is(&e, libc::EWOULDBLOCK) {
                    return Err(Error::InUse(format!(
                        "another listener holds {} (it serves {})",
                        path.display(),
                        socket.display()
                    )));
                }
                return Err(Error::io("flock the socket's lock file", e));
            }
            let ours = file
                .metadata()
                .map_err(|e| Error::io("stat the socket's lock file", e))?;
            match std::fs::symlink_metadata(&path) {
                Ok(now) if now.ino() == ours.ino() && now.dev() == ours.dev() => {
                    return Ok(PathLock { file, path });
                }
                _ => continue,
            }
        }
        Err(Error::InUse(format!(
            "the lock file {} keeps changing",
            path.display()
        )))
    }
}

impl Drop for PathLock {
    fn drop(&mut self) {
        // Remove it while we still hold it; a listener that opened it before
        // the removal sees another inode at the path after its flock and
        // opens again.
        if std::fs::symlink_metadata(&self.path)
            .ok()
            .zip(self.file.metadata().ok())
            .is_some_and(|(a, b)| a.ino() == b.ino() && a.dev() == b.dev())
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Listener {
    /// Binds `path` with `opts.mode`, as the only listener on it (see the
    /// module docs). A stale socket file at `path` (nobody answers on it) is
    /// replaced if `opts.replace_stale`.
    ///
    /// # Errors
    ///
    /// [`Error::InUse`] if another live listener serves `path` (it holds the
    /// lock, or answers), a stale socket is there and `opts.replace_stale`
    /// is off, or a file that is not a socket is there;
    /// [`Error::InvalidArgument`] if the path is empty or too long for a
    /// Unix socket address; [`Error::Io`] if the directory does not exist or
    /// a system call fails.
    ///
    /// # Examples
    ///
    /// A listener serving one consumer in another thread (in practice,
    /// another process):
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmring::handshake::{self, Listener};
    /// use shmring::Config;
    ///
    /// let path = std::env::temp_dir().join(format!("shmring-bind-{}.sock", std::process::id()));
    /// let config = Config::new(64).type_name("u64-counter");
    /// let listener = Listener::bind(&path, &Default::default())?;
    /// let consumer = {
    ///     let (path, config) = (path.clone(), config.clone());
    ///     std::thread::spawn(move || handshake::connect_consumer::<u64>(&path, &config))
    /// };
    /// let mut tx = listener.accept_producer::<u64>(&config)?;
    /// let mut rx = consumer.join().expect("consumer thread")?;
    /// tx.try_push(7)?;
    /// assert_eq!(rx.pop_blocking(Some(Duration::from_secs(5)))?, 7);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    pub fn bind(path: impl AsRef<Path>, opts: &ListenOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        check_socket_path(&path)?;
        let lock = PathLock::take(&path)?;
        clear_stale(&path, opts)?;
        let (fd, ino) = bind_socket(&path, opts.mode)?;
        Ok(Listener {
            fd,
            path,
            ino,
            opts: opts.clone(),
            _lock: lock,
        })
    }

    /// The path this listener is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection without blocking: `Ok(None)` if none is pending.
    /// Peers whose uid is not allowed are refused with a message and an error.
    pub fn try_accept(&self) -> Result<Option<Connection>> {
        match self.accept_one()? {
            None => Ok(None),
            Some(Ok(c)) => Ok(Some(c)),
            Some(Err(cred)) => Err(Error::PeerRefused(format!(
                "peer pid {} uid {}: uid {} not allowed",
                cred.pid, cred.uid, cred.uid
            ))),
        }
    }

    /// One `accept4`; a peer whose uid is not allowed is told so, closed, and
    /// returned as `Err(its credentials)`.
    pub(super) fn accept_one(&self) -> Result<Option<std::result::Result<Connection, PeerCred>>> {
        match socket::accept4(self.fd.as_raw_fd(), socket::SockFlag::SOCK_CLOEXEC) {
            Ok(raw) => {
                // SAFETY: accept4 returned a fresh fd that nothing else owns.
                let fd = unsafe { OwnedFd::from_raw_fd(raw) };
                let cred = peer_cred(fd.as_fd())?;
                if let Some(allowed) = &self.opts.allowed_uids {
                    if !allowed.contains(&cred.uid) {
                        let reason = format!("uid {} not allowed", cred.uid);
                        let _ = send_with_fds(
                            fd.as_fd(),
                            bytemuck::bytes_of(&Welcome::refuse(&reason)),
                            &[],
                        );
                        return Ok(Some(Err(cred)));
                    }
                }
                Ok(Some(Ok(Connection::from_parts(fd, cred))))
            }
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(Error::errno("accept", e)),
        }
    }

    /// Waits up to `timeout` (`None`: forever) for a connection. Peers whose
    /// uid is not allowed are refused with a message and an error.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if none came in time; [`Error::PeerRefused`] for a
    /// peer whose uid is not allowed ([`ListenOptions::allowed_uids`]);
    /// [`Error::Io`] if `accept` fails (out of fds, say).
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Connection> {
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            if let Some(c) = self.try_accept()? {
                return Ok(c);
            }
            let d = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            wait_readable(self.fd.as_fd(), d)?;
        }
    }

    /// Waits for a connecting consumer and serves it a new channel; returns
    /// this side's producing end (see [`bind`](Self::bind) for an example).
    ///
    /// # Errors
    ///
    /// Those of [`accept`](Self::accept) and of
    /// [`Connection::serve_producer`]: the peer's type or settings differ,
    /// it broke the protocol, or it did not say hello in
    /// [`Config::handshake_timeout`].
    pub fn accept_producer<T: Pod>(&self, config: &Config) -> Result<Producer<T>> {
        self.accept(None)?.serve_producer(config)
    }

    /// Waits for a connecting producer and serves it a new channel; returns this
    /// side's consuming end.
    ///
    /// # Errors
    ///
    /// Those of [`accept`](Self::accept) and of
    /// [`Connection::serve_consumer`].
    pub fn accept_consumer<T: Pod>(&self, config: &Config) -> Result<Consumer<T>> {
        self.accept(None)?.serve_consumer(config)
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // Remove the socket file only if it is still ours.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.ino() == self.ino) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Makes room at `path` for a new socket: nothing there, or a stale socket
/// file (nobody answers on it) that `opts` allows replacing. Called with the
/// path's lock held.
fn clear_stale(path: &Path, opts: &ListenOptions) -> Result<()> {
    let Ok(md) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !md.file_type().is_socket() {
        return Err(Error::InUse(format!(
            "{} exists and is not a socket",
            path.display()
        )));
    }
    // We hold the lock: a listener of this library cannot be there.
    // One that answers is another program (or an older version).
    let stale = matches!(
        sys::connect_seqpacket(path),
        Err(Error::Io { ref source, .. }) if source.raw_os_error() == Some(libc::ECONNREFUSED)
    );
    if !stale {
        return Err(Error::InUse(format!(
            "a listener answers on {}",
            path.display()
        )));
    }
    if !opts.replace_stale {
        return Err(Error::InUse(format!(
            "a stale socket is at {} (replace_stale is off)",
            path.display()
        )));
    }
    std::fs::remove_file(path).map_err(|e| Error::io("remove stale socket", e))
}

/// Creates the socket file at `path` with `mode` and listens on it
/// (non-blocking); returns the socket and the file's inode. The file is
/// removed again if a step after `bind` fails.
fn bind_socket(path: &Path, mode: u32) -> Result<(OwnedFd, u64)> {
    let fd = sys::seqpacket_socket()?;
    // The socket inode's mode becomes the file's mode at bind (less the
    // umask): no window with a wider mode.
    // SAFETY: fchmod takes no pointers; the fd is open.
    unsafe { syscall!(fchmod(fd.as_raw_fd(), (mode & 0o777) as libc::mode_t)) }
        .map_err(|e| Error::io("chmod socket", e))?;
    let addr = UnixAddr::new(path).map_err(|e| Error::errno("socket address", e))?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(|e| match e {
        nix::errno::Errno::EADDRINUSE => Error::InUse(format!(
            "{} appeared while binding (another program)",
            path.display()
        )),
        e => Error::errno("bind", e),
    })?;
    let result = (|| {
        let md = std::fs::symlink_metadata(path).map_err(|e| Error::io("stat socket", e))?;
        if md.mode() & 0o777 != mode & 0o777 {
            // The umask took bits away: only widening is left to do.
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| Error::io("chmod socket", e))?;
        }
        socket::listen(
            &fd,
            socket::Backlog::new(128).map_err(|e| Error::errno("listen", e))?,
        )
        .map_err(|e| Error::errno("listen", e))?;
        sys::set_nonblocking(fd.as_fd())?;
        Ok(md.ino())
    })();
    match result {
        Ok(ino) => Ok((fd, ino)),
        Err(e) => {
            let _ = std::fs::remove_file(path);
            Err(e)
        }
    }
}
