//! The connecting side: [`connect_socket`] (connect to a listener's path,
//! with retries while nothing listens there yet) and the client's half of
//! the handshake behind [`connect_producer`] / [`connect_consumer`]: send the
//! hello, read the welcome and its fds, check them against this side's
//! settings.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::{Duration, Instant};

use bytemuck::Pod;

use super::fds::{recv_with_fds, send_with_fds};
use super::{check_socket_path, Hello, Role, Welcome, MAX_FDS};
use crate::channel::{ChannelFds, Config};
use crate::sys;
use crate::{Consumer, ElemType, Error, Peer, Producer, Result};

/// Pause between two connection attempts of [`connect_socket`] (and so of
/// [`connect_producer`] and [`connect_consumer`]).
pub const CONNECT_RETRY_EVERY: Duration = Duration::from_millis(5);

/// Connects a `SOCK_SEQPACKET` socket to the listener at `path`, retrying
/// every [`CONNECT_RETRY_EVERY`] while the socket file does not exist yet or
/// nobody accepts on it, for up to `timeout` (`Duration::ZERO`: one
/// attempt). Returns the connected socket, before any handshake: for a
/// custom protocol on top, or for tests; [`connect_producer`] and
/// [`connect_consumer`] do the handshake too.
///
/// # Errors
///
/// [`Error::NotListening`] once `timeout` passed with nothing listening;
/// [`Error::BadPath`] at once for a path whose directory does not exist,
/// or where a file that is not a socket is; [`Error::InvalidArgument`] for
/// a path too long for a Unix socket address.
pub fn connect_socket(path: impl AsRef<Path>, timeout: Duration) -> Result<OwnedFd> {
    let path = path.as_ref();
    check_socket_path(path)?;
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        let source = match sys::connect_seqpacket(path) {
            Ok(fd) => return Ok(fd),
            Err(Error::Io { source, .. }) => source,
            Err(e) => return Err(e),
        };
        let bad = |why: String| Error::BadPath {
            path: path.to_path_buf(),
            why,
        };
        match source.raw_os_error() {
            Some(libc::ENOENT | libc::ECONNREFUSED) => {
                check_not_listening(path).map_err(bad)?;
                if Instant::now() >= deadline {
                    return Err(Error::NotListening {
                        path: path.to_path_buf(),
                        waited: start.elapsed(),
                    });
                }
                std::thread::sleep(CONNECT_RETRY_EVERY);
            }
            Some(libc::ENOTDIR) => {
                return Err(bad("a component of the path is not a directory".into()))
            }
            _ => return Err(bad(format!("connect: {source}"))),
        }
    }
}

/// After a connect found nothing listening at `path`: whether a listener
/// may still come there (`Ok`), or the path is wrong (`Err(why)`): its
/// directory does not exist, or a file that is not a socket is there.
fn check_not_listening(path: &Path) -> std::result::Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Ok(md) if md.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dir.display())),
        Err(e) => return Err(format!("directory {}: {e}", dir.display())),
    }
    if let Ok(md) = std::fs::symlink_metadata(path) {
        if !md.file_type().is_socket() && !md.file_type().is_symlink() {
            return Err("the file there is not a socket".into());
        }
    }
    Ok(())
}

/// The connecting side's handshake: connects, says hello as `role` for `T`,
/// and checks the welcome and its fds; returns them and the link.
pub(crate) fn client<T: Pod>(
    path: &Path,
    role: Role,
    config: &Config,
) -> Result<(ChannelFds, OwnedFd)> {
    let fd = connect_socket(path, config.connect_timeout_or_default())?;
    let deadline = crate::sys::deadline_in(config.handshake_timeout);
    let ours = config.tag::<T>();
    let our_type = ElemType {
        name: config.type_name_for::<T>().into_owned(),
        size: ours.size,
        align: ours.align,
    };
    let hello = Hello::new::<T>(role, config)?;
    let sent = send_with_fds(fd.as_fd(), bytemuck::bytes_of(&hello), &[]);
    let mut buf = [0u8; std::mem::size_of::<Welcome>() + 1];
    // A listener that refuses us may do so (and hang up) before our hello lands:
    // read its refusal even if the send failed.
    let (len, fds) = match recv_with_fds(fd.as_fd(), &mut buf, MAX_FDS, deadline) {
        Ok(r) => r,
        Err(Error::Timeout) => {
            return Err(Error::HandshakeTimeout {
                peer: Peer::Listener(path.to_path_buf()),
                after: config.handshake_timeout,
            })
        }
        Err(e) => return Err(sent.err().unwrap_or(e)),
    };
    let info = Welcome::parse_for(&buf[..len], Some((path, &our_type)))?;
    if fds.len() != info.nfds {
        return Err(Error::Protocol(format!(
            "welcome announces {} fds but carries {}",
            info.nfds,
            fds.len()
        )));
    }
    if info.tag != ours {
        return Err(Error::Protocol(
            "listener answered with another type".into(),
        ));
    }
    if info.signal != config.signal {
        return Err(Error::Protocol(
            "listener answered with another signal kind".into(),
        ));
    }
    let layout = crate::ring::RingLayout::new::<T>(info.capacity, ours)?;
    if layout.total_size() > config.max_segment {
        return Err(Error::Protocol(format!(
            "listener's ring needs {} bytes, more than the {} this side accepts",
            layout.total_size(),
            config.max_segment
        )));
    }
    Ok((
        ChannelFds::from_wire(info.capacity, ours, info.signal, fds)?,
        fd,
    ))
}

/// Connects to a listener at `path` and takes the producing end of a new
/// channel of `T` (the listener serves with
/// [`Listener::accept_consumer`](super::Listener::accept_consumer)).
/// Connecting is retried while nothing listens at `path` yet, for
/// [`Config::connect_timeout`] (see [`connect_socket`]).
///
/// # Errors
///
/// [`Error::NotListening`] (nobody listened in time) and [`Error::BadPath`]
/// (a wrong path) as [`connect_socket`]; [`Error::TypeMismatch`] with both
/// sides' types, [`Error::Incompatible`] (the listener wants to produce too,
/// or another signal kind), [`Error::PeerRefused`] (the listener's policy,
/// with its reason), [`Error::HandshakeTimeout`] (no answer in
/// [`Config::handshake_timeout`]); [`Error::Protocol`] or
/// [`Error::BadSegment`] for a listener that breaks the protocol.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmring::handshake::{self, Listener};
/// use shmring::Config;
///
/// let path = std::env::temp_dir().join(format!("shmring-producer-{}.sock", std::process::id()));
/// let config = Config::new(64).type_name("u32-level");
/// let listener = Listener::bind(&path, &Default::default())?;
/// let producer = {
///     let (path, config) = (path.clone(), config.clone());
///     std::thread::spawn(move || -> shmring::Result<()> {
///         let mut tx = handshake::connect_producer::<u32>(&path, &config)?;
///         tx.push_blocking(42, Some(Duration::from_secs(5)))
///     })
/// };
/// let mut rx = listener.accept_consumer::<u32>(&config)?;
/// assert_eq!(rx.pop_blocking(Some(Duration::from_secs(5)))?, 42);
/// producer.join().expect("producer thread")?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn connect_producer<T: Pod>(path: impl AsRef<Path>, config: &Config) -> Result<Producer<T>> {
    let (fds, link) = client::<T>(path.as_ref(), Role::Producer, config)?;
    fds.into_producer(link, config.spin)
}

/// Connects to a listener at `path` and takes the consuming end of a new
/// channel of `T` (the listener serves with
/// [`Listener::accept_producer`](super::Listener::accept_producer)).
/// Connecting is retried as by [`connect_producer`].
///
/// # Errors
///
/// As [`connect_producer`].
///
/// # Examples
///
/// A consumer that finds nothing listening gives up after its connect
/// timeout and names the path:
///
/// ```
/// use std::time::Duration;
/// use shmring::{handshake, Config, Error};
///
/// let path = std::env::temp_dir().join(format!("shmring-nobody-{}.sock", std::process::id()));
/// let config = Config::new(64).connect_timeout(Duration::from_millis(20));
/// match handshake::connect_consumer::<u64>(&path, &config) {
///     Err(Error::NotListening { path: p, .. }) => assert_eq!(p, path),
///     other => panic!("expected NotListening, got {other:?}"),
/// }
/// ```
///
/// With a listener, see [`Listener::bind`](super::Listener::bind).
pub fn connect_consumer<T: Pod>(path: impl AsRef<Path>, config: &Config) -> Result<Consumer<T>> {
    let (fds, link) = client::<T>(path.as_ref(), Role::Consumer, config)?;
    fds.into_consumer(link, config.spin)
}
