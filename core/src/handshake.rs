//! Setting up channels between processes over a Unix socket path.
//!
//! The listening side creates the channel (segment, ring, signals) and keeps the
//! socket connection open as the channel's link; the connecting side sends a
//! [`Hello`], receives a [`Welcome`] with the fds (`SCM_RIGHTS`), validates them
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
//! a window in which it has another mode: it is bound in a private directory,
//! `chmod`ed and then renamed into place. The listener can refuse peers by uid
//! ([`ListenOptions::allowed_uids`], checked with `SO_PEERCRED`).
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

use std::ffi::OsString;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use nix::sys::socket::{self, sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::channel::{ChannelFds, Config};
use crate::ring::TypeTag;
use crate::signal::SignalKind;
use crate::{Consumer, Error, Producer, Result};

/// Version of the handshake protocol.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest type name carried in a [`Hello`].
pub const NAME_MAX: usize = 64;
/// Most fds one handshake message may carry (a frame stream's arena, return
/// ring segment and two pipe signals need 6).
pub const MAX_FDS: usize = 8;

const HELLO_MAGIC: u64 = u64::from_le_bytes(*b"SHMRHELO");
const WELCOME_MAGIC: u64 = u64::from_le_bytes(*b"SHMRWLCM");
const REASON_MAX: usize = 128;

/// Which end of the channel the connecting side takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The connecting side will push items.
    Producer,
    /// The connecting side will pop items.
    Consumer,
}

impl Role {
    fn to_wire(self) -> u32 {
        match self {
            Role::Producer => 1,
            Role::Consumer => 2,
        }
    }
    fn from_wire(v: u32) -> Option<Self> {
        match v {
            1 => Some(Role::Producer),
            2 => Some(Role::Consumer),
            _ => None,
        }
    }
}

/// First message, connecting side to listener.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Hello {
    /// `b"SHMRHELO"`.
    pub magic: u64,
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// Role of the connecting side (1 producer, 2 consumer).
    pub role: u32,
    /// Element size.
    pub elem_size: u32,
    /// Element alignment.
    pub elem_align: u32,
    /// Signal kind wanted (1 eventfd, 2 pipe).
    pub signal: u32,
    /// Bytes of `name` in use.
    pub name_len: u32,
    /// Type name, `name_len` bytes of UTF-8.
    pub name: [u8; NAME_MAX],
}

/// Validated content of a [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelloInfo {
    /// Role of the connecting side.
    pub role: Role,
    /// Element type.
    pub tag: TypeTag,
    /// Type name as sent.
    pub name: String,
    /// Signal kind wanted.
    pub signal: SignalKind,
}

impl Hello {
    /// The hello of a side that takes `role` for elements `T` under `config`.
    pub fn new<T>(role: Role, config: &Config) -> Result<Self> {
        let name = config.type_name.as_bytes();
        if name.len() > NAME_MAX {
            return Err(Error::InvalidArgument(format!(
                "type name longer than {NAME_MAX} bytes"
            )));
        }
        let mut h = Hello {
            magic: HELLO_MAGIC,
            version: PROTOCOL_VERSION,
            role: role.to_wire(),
            elem_size: std::mem::size_of::<T>() as u32,
            elem_align: std::mem::align_of::<T>() as u32,
            signal: config.signal.to_wire(),
            name_len: name.len() as u32,
            name: [0; NAME_MAX],
        };
        h.name[..name.len()].copy_from_slice(name);
        Ok(h)
    }

    /// Parses and validates a received message (exact size, magic, version,
    /// role, signal kind, name length and encoding).
    pub fn parse(bytes: &[u8]) -> Result<HelloInfo> {
        let h: Hello = read_exact_pod(bytes, "hello")?;
        if h.magic != HELLO_MAGIC {
            return Err(Error::Protocol(format!(
                "bad hello magic {:#018x}",
                h.magic
            )));
        }
        if h.version != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "hello protocol version {} (this side speaks {PROTOCOL_VERSION})",
                h.version
            )));
        }
        let role = Role::from_wire(h.role)
            .ok_or_else(|| Error::Protocol(format!("unknown role {}", h.role)))?;
        let signal = SignalKind::from_wire(h.signal)
            .ok_or_else(|| Error::Protocol(format!("unknown signal kind {}", h.signal)))?;
        let len = h.name_len as usize;
        if len > NAME_MAX {
            return Err(Error::Protocol(format!("type name length {len}")));
        }
        let name = std::str::from_utf8(&h.name[..len])
            .map_err(|_| Error::Protocol("type name is not UTF-8".into()))?
            .to_string();
        Ok(HelloInfo {
            role,
            tag: TypeTag {
                size: h.elem_size,
                align: h.elem_align,
                name_hash: TypeTag::of::<()>(&name).name_hash,
            },
            name,
            signal,
        })
    }
}

/// Answer of the listener; carries the channel's fds when `status` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable, PartialEq, Eq)]
pub struct Welcome {
    /// `b"SHMRWLCM"`.
    pub magic: u64,
    /// [`PROTOCOL_VERSION`].
    pub version: u32,
    /// 0: accepted (fds attached); 1: refused (see `reason`).
    pub status: u32,
    /// Ring capacity in items (a power of two).
    pub capacity: u64,
    /// Hash of the type name.
    pub name_hash: u64,
    /// Element size.
    pub elem_size: u32,
    /// Element alignment.
    pub elem_align: u32,
    /// Signal kind (1 eventfd, 2 pipe).
    pub signal: u32,
    /// Number of fds attached.
    pub nfds: u32,
    /// Why the connection was refused (UTF-8, zero padded).
    pub reason: [u8; REASON_MAX],
}

/// Validated content of an accepting [`Welcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WelcomeInfo {
    /// Ring capacity.
    pub capacity: usize,
    /// Element type.
    pub tag: TypeTag,
    /// Signal kind.
    pub signal: SignalKind,
    /// Number of fds the message says it carries.
    pub nfds: usize,
}

impl Welcome {
    fn accept(fds: &ChannelFds) -> Self {
        Welcome {
            magic: WELCOME_MAGIC,
            version: PROTOCOL_VERSION,
            status: 0,
            capacity: fds.capacity as u64,
            name_hash: fds.tag.name_hash,
            elem_size: fds.tag.size,
            elem_align: fds.tag.align,
            signal: fds.signal.to_wire(),
            nfds: fds.fds().len() as u32,
            reason: [0; REASON_MAX],
        }
    }

    fn refuse(reason: &str) -> Self {
        let mut w = Welcome::zeroed();
        w.magic = WELCOME_MAGIC;
        w.version = PROTOCOL_VERSION;
        w.status = 1;
        let mut n = reason.len().min(REASON_MAX);
        while !reason.is_char_boundary(n) {
            n -= 1;
        }
        w.reason[..n].copy_from_slice(&reason.as_bytes()[..n]);
        w
    }

    /// Parses and validates a received welcome: exact size, magic, version,
    /// status (a refusal becomes [`Error::PeerRefused`] with its reason), known
    /// signal kind, and an fd count that matches the signal kind.
    pub fn parse(bytes: &[u8]) -> Result<WelcomeInfo> {
        let w: Welcome = read_exact_pod(bytes, "welcome")?;
        if w.magic != WELCOME_MAGIC {
            return Err(Error::Protocol(format!(
                "bad welcome magic {:#018x}",
                w.magic
            )));
        }
        if w.version != PROTOCOL_VERSION {
            return Err(Error::Protocol(format!(
                "welcome protocol version {} (this side speaks {PROTOCOL_VERSION})",
                w.version
            )));
        }
        match w.status {
            0 => {}
            1 => {
                let end = w.reason.iter().position(|&b| b == 0).unwrap_or(REASON_MAX);
                let reason = String::from_utf8_lossy(&w.reason[..end]).into_owned();
                return Err(Error::PeerRefused(format!("listener refused: {reason}")));
            }
            s => return Err(Error::Protocol(format!("unknown welcome status {s}"))),
        }
        let signal = SignalKind::from_wire(w.signal)
            .ok_or_else(|| Error::Protocol(format!("unknown signal kind {}", w.signal)))?;
        let nfds = w.nfds as usize;
        if nfds != 1 + 2 * signal.fd_count() {
            return Err(Error::Protocol(format!(
                "welcome announces {nfds} fds, a {signal:?} channel has {}",
                1 + 2 * signal.fd_count()
            )));
        }
        let capacity = usize::try_from(w.capacity)
            .ok()
            .filter(|c| c.is_power_of_two() && *c <= crate::ring::MAX_CAPACITY)
            .ok_or_else(|| Error::Protocol(format!("capacity {}", w.capacity)))?;
        Ok(WelcomeInfo {
            capacity,
            tag: TypeTag {
                size: w.elem_size,
                align: w.elem_align,
                name_hash: w.name_hash,
            },
            signal,
            nfds,
        })
    }
}

pub(crate) fn read_exact_pod<P: Pod>(bytes: &[u8], what: &str) -> Result<P> {
    if bytes.len() != std::mem::size_of::<P>() {
        return Err(Error::Protocol(format!(
            "{what} message of {} bytes, expected {}",
            bytes.len(),
            std::mem::size_of::<P>()
        )));
    }
    Ok(bytemuck::pod_read_unaligned(bytes))
}

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

/// Sends one message with `fds` attached (never blocks, never raises SIGPIPE).
pub fn send_with_fds(sock: BorrowedFd<'_>, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let iov = [IoSlice::new(bytes)];
    let n = sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
        None,
    )
    .map_err(|e| match e {
        nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET => Error::Disconnected,
        e => Error::errno("sendmsg", e),
    })?;
    if n != bytes.len() {
        return Err(Error::Protocol("message sent partially".into()));
    }
    Ok(())
}

/// Receives one message into `buf` with at most `max_fds` fds, waiting until
/// `deadline`. Returns the message length and the fds, each already owned (so
/// closed if the caller rejects the message). A message longer than `buf`, one
/// with more fds than `max_fds` (`MSG_CTRUNC`: the surplus is closed by the
/// kernel, the rest by us), or end-of-file, is an error.
pub fn recv_with_fds(
    sock: BorrowedFd<'_>,
    buf: &mut [u8],
    max_fds: usize,
    deadline: Instant,
) -> Result<(usize, Vec<OwnedFd>)> {
    wait_readable(sock, deadline)?;
    // Room for MAX_FDS fds; a message with more is cut by the kernel (MSG_CTRUNC),
    // which closes the fds that did not fit.
    // SAFETY: CMSG_SPACE only computes a size (a `const fn` here).
    const SPACE: usize =
        unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) } as usize;
    const CBUF_WORDS: usize = 8;
    // The buffer the kernel may fill `SPACE` bytes of: checked at compile time.
    const _: () = assert!(SPACE <= CBUF_WORDS * std::mem::size_of::<u64>());
    let space = SPACE;
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
    msg.msg_controllen = space;
    let mut reset_seen = false;
    let n = loop {
        // SAFETY: `msg` points at live buffers of the sizes it states.
        let n = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
            )
        };
        if n >= 0 {
            break n;
        }
        let e = std::io::Error::last_os_error();
        match e.raw_os_error() {
            // A peer that closed with our message unread reports ECONNRESET once;
            // what it sent before closing is still queued behind the error.
            Some(libc::ECONNRESET) if !reset_seen => reset_seen = true,
            Some(libc::ECONNRESET) | Some(libc::EAGAIN) => return Err(Error::Disconnected),
            _ => return Err(Error::io("recvmsg", e)),
        }
    };
    // Take ownership of every fd that arrived before looking at anything else, so
    // that whatever we reject is closed.
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
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(Error::Protocol(
            "control message truncated (too many fds)".into(),
        ));
    }
    if msg.msg_flags & libc::MSG_TRUNC != 0 {
        return Err(Error::Protocol("message longer than expected".into()));
    }
    if n == 0 && fds.is_empty() {
        return Err(Error::Disconnected);
    }
    if fds.len() > max_fds {
        return Err(Error::Protocol(format!(
            "{} fds attached, at most {max_fds} expected",
            fds.len()
        )));
    }
    Ok((n as usize, fds))
}

fn wait_readable(sock: BorrowedFd<'_>, deadline: Instant) -> Result<()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = libc::pollfd {
            fd: sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // ppoll, not poll: poll's whole milliseconds would round the last
        // sub-millisecond down to 0 and spin until the deadline.
        let ts = libc::timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pfd` and `ts` are live locals; ppoll reads `ts` and
        // writes only `pfd.revents`.
        let r = unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(Error::io("ppoll", e));
        }
        if r > 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Timeout);
        }
    }
}

fn seqpacket_socket() -> Result<OwnedFd> {
    socket::socket(
        socket::AddressFamily::Unix,
        socket::SockType::SeqPacket,
        socket::SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| Error::errno("socket", e))
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
/// when the listener drops.
#[derive(Debug)]
pub struct Listener {
    fd: OwnedFd,
    path: PathBuf,
    ino: u64,
    opts: ListenOptions,
}

impl Listener {
    /// Binds `path` with `opts.mode`, atomically (see the module docs).
    pub fn bind(path: impl AsRef<Path>, opts: &ListenOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            let stale = md.file_type().is_socket()
                && opts.replace_stale
                && matches!(
                    connect_raw(&path),
                    Err(Error::Io { ref source, .. }) if source.raw_os_error() == Some(libc::ECONNREFUSED)
                );
            if !stale {
                return Err(Error::io(
                    "bind socket path",
                    std::io::Error::from_raw_os_error(libc::EADDRINUSE),
                ));
            }
            std::fs::remove_file(&path).map_err(|e| Error::io("remove stale socket", e))?;
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp_name = OsString::from(".shmring-");
        tmp_name.push(std::process::id().to_string());
        tmp_name.push("-");
        tmp_name.push(
            Instant::now()
                .elapsed()
                .subsec_nanos()
                .wrapping_add(rand_u32())
                .to_string(),
        );
        let tmp_dir = dir.join(tmp_name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&tmp_dir)
            .map_err(|e| Error::io("create private bind directory", e))?;
        let result = (|| {
            let tmp_sock = tmp_dir.join("s");
            let fd = seqpacket_socket()?;
            let addr = UnixAddr::new(&tmp_sock).map_err(|e| Error::errno("socket address", e))?;
            socket::bind(fd.as_raw_fd(), &addr).map_err(|e| Error::errno("bind", e))?;
            std::fs::set_permissions(&tmp_sock, std::fs::Permissions::from_mode(opts.mode))
                .map_err(|e| Error::io("chmod socket", e))?;
            socket::listen(
                &fd,
                socket::Backlog::new(64).map_err(|e| Error::errno("listen", e))?,
            )
            .map_err(|e| Error::errno("listen", e))?;
            std::fs::rename(&tmp_sock, &path)
                .map_err(|e| Error::io("move socket into place", e))?;
            let ino = std::fs::symlink_metadata(&path)
                .map_err(|e| Error::io("stat socket", e))?
                .ino();
            Ok((fd, ino))
        })();
        let _ = std::fs::remove_dir_all(&tmp_dir);
        let (fd, ino) = result?;
        crate::signal::set_nonblocking(fd.as_fd())?;
        Ok(Listener {
            fd,
            path,
            ino,
            opts: opts.clone(),
        })
    }

    /// The path this listener is bound to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts one connection without blocking: `Ok(None)` if none is pending.
    /// Peers whose uid is not allowed are refused with a message and an error.
    pub fn try_accept(&self) -> Result<Option<Connection>> {
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
                        return Err(Error::PeerRefused(format!(
                            "peer pid {} uid {}: {reason}",
                            cred.pid, cred.uid
                        )));
                    }
                }
                Ok(Some(Connection { fd, cred }))
            }
            Err(nix::errno::Errno::EAGAIN) => Ok(None),
            Err(e) => Err(Error::errno("accept", e)),
        }
    }

    /// Waits up to `timeout` (`None`: forever) for a connection.
    pub fn accept(&self, timeout: Option<Duration>) -> Result<Connection> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(c) = self.try_accept()? {
                return Ok(c);
            }
            let d = deadline.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            wait_readable(self.fd.as_fd(), d)?;
        }
    }

    /// Waits for a connecting consumer and serves it a new channel; returns
    /// this side's producing end.
    pub fn accept_producer<T: Pod>(&self, config: &Config) -> Result<Producer<T>> {
        self.accept(None)?.serve_producer(config)
    }

    /// Waits for a connecting producer and serves it a new channel; returns this
    /// side's consuming end.
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

fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    // SAFETY: getrandom writes at most 4 bytes into the live buffer.
    let _ = unsafe { libc::getrandom(b.as_mut_ptr().cast(), 4, libc::GRND_NONBLOCK) };
    u32::from_ne_bytes(b)
}

/// An accepted connection, before the channel is set up.
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
    cred: PeerCred,
}

impl Connection {
    /// The peer's credentials.
    pub fn peer(&self) -> PeerCred {
        self.cred
    }

    /// The socket (readable once the peer's hello arrived).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Turns the peer away: it gets [`Error::PeerRefused`] with `reason`
    /// (e.g. a server that already serves as many peers as it allows).
    pub fn refuse(self, reason: &str) {
        // Best effort: a peer that went away meanwhile needs no answer.
        let _ = send_with_fds(
            self.fd.as_fd(),
            bytemuck::bytes_of(&Welcome::refuse(reason)),
            &[],
        );
    }

    /// Reads the hello (waiting up to `config.handshake_timeout`), checks that
    /// the peer wants to consume `T`, sends it a new channel; returns our
    /// producing end.
    pub fn serve_producer<T: Pod>(self, config: &Config) -> Result<Producer<T>> {
        let fds = self.serve::<T>(Role::Consumer, config)?;
        fds.0.into_producer(fds.1, config.spin)
    }

    /// As [`serve_producer`](Self::serve_producer), with roles swapped.
    pub fn serve_consumer<T: Pod>(self, config: &Config) -> Result<Consumer<T>> {
        let fds = self.serve::<T>(Role::Producer, config)?;
        fds.0.into_consumer(fds.1, config.spin)
    }

    pub(crate) fn serve<T: Pod>(
        self,
        peer_role: Role,
        config: &Config,
    ) -> Result<(ChannelFds, OwnedFd)> {
        let deadline = Instant::now() + config.handshake_timeout;
        let mut buf = [0u8; std::mem::size_of::<Hello>() + 1];
        let (len, fds) = recv_with_fds(self.fd.as_fd(), &mut buf, 0, deadline)?;
        drop(fds);
        let refuse = |reason: String| -> Error {
            let _ = send_with_fds(
                self.fd.as_fd(),
                bytemuck::bytes_of(&Welcome::refuse(&reason)),
                &[],
            );
            Error::Protocol(reason)
        };
        let hello = match Hello::parse(&buf[..len]) {
            Ok(h) => h,
            Err(e) => return Err(refuse(e.to_string())),
        };
        if hello.role != peer_role {
            return Err(refuse(format!("both sides want to be {:?}", hello.role)));
        }
        let ours = TypeTag::of::<T>(&config.type_name);
        if hello.tag != ours {
            return Err(refuse(format!(
                "type mismatch: peer has {}-byte align-{} '{}', listener has {}-byte align-{} '{}'",
                hello.tag.size,
                hello.tag.align,
                hello.name,
                ours.size,
                ours.align,
                config.type_name
            )));
        }
        if hello.signal != config.signal {
            return Err(refuse(format!(
                "signal kind mismatch: peer wants {:?}, listener uses {:?}",
                hello.signal, config.signal
            )));
        }
        let fds = ChannelFds::create::<T>(config)?;
        let welcome = Welcome::accept(&fds);
        send_with_fds(self.fd.as_fd(), bytemuck::bytes_of(&welcome), &fds.fds())?;
        Ok((fds, self.fd))
    }
}

fn connect_raw(path: &Path) -> Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    let addr = UnixAddr::new(path).map_err(|e| Error::errno("socket address", e))?;
    socket::connect(fd.as_raw_fd(), &addr).map_err(|e| Error::errno("connect", e))?;
    Ok(fd)
}

/// Connects to `path`, retrying while the socket does not exist yet or nobody
/// listens, until `timeout`.
pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<OwnedFd> {
    let path = path.as_ref();
    if path.as_os_str().as_bytes().len() >= 108 {
        return Err(Error::InvalidArgument(
            "socket path longer than 107 bytes".into(),
        ));
    }
    let deadline = Instant::now() + timeout;
    loop {
        match connect_raw(path) {
            Ok(fd) => return Ok(fd),
            Err(Error::Io { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::ENOENT | libc::ECONNREFUSED)
                ) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn client<T: Pod>(
    path: &Path,
    role: Role,
    config: &Config,
) -> Result<(ChannelFds, OwnedFd)> {
    let deadline = Instant::now() + config.handshake_timeout;
    let fd = connect(path, config.handshake_timeout)?;
    let hello = Hello::new::<T>(role, config)?;
    let sent = send_with_fds(fd.as_fd(), bytemuck::bytes_of(&hello), &[]);
    let mut buf = [0u8; std::mem::size_of::<Welcome>() + 1];
    // A listener that refuses us may do so (and hang up) before our hello lands:
    // read its refusal even if the send failed.
    let (len, fds) = match recv_with_fds(fd.as_fd(), &mut buf, MAX_FDS, deadline) {
        Ok(r) => r,
        Err(e) => return Err(sent.err().unwrap_or(e)),
    };
    let info = Welcome::parse(&buf[..len])?;
    if fds.len() != info.nfds {
        return Err(Error::Protocol(format!(
            "welcome announces {} fds but carries {}",
            info.nfds,
            fds.len()
        )));
    }
    let ours = TypeTag::of::<T>(&config.type_name);
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
/// channel of `T` (the listener serves with [`Listener::accept_consumer`]).
pub fn connect_producer<T: Pod>(path: impl AsRef<Path>, config: &Config) -> Result<Producer<T>> {
    let (fds, link) = client::<T>(path.as_ref(), Role::Producer, config)?;
    fds.into_producer(link, config.spin)
}

/// Connects to a listener at `path` and takes the consuming end of a new
/// channel of `T` (the listener serves with [`Listener::accept_producer`]).
pub fn connect_consumer<T: Pod>(path: impl AsRef<Path>, config: &Config) -> Result<Consumer<T>> {
    let (fds, link) = client::<T>(path.as_ref(), Role::Consumer, config)?;
    fds.into_consumer(link, config.spin)
}
