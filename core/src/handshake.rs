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
//! a window in which it has a wider mode: the socket's own mode is set before
//! `bind` creates the file (Linux creates it with that mode, less the umask;
//! a mode wider than the umask allows is set right after). The listener can
//! refuse peers by uid ([`ListenOptions::allowed_uids`], checked with
//! `SO_PEERCRED`).
//!
//! **One listener per path**: [`Listener::bind`] takes an advisory `flock` on
//! `<path>.lock` before it looks at the path, and holds it for its life. A
//! second listener fails with [`Error::InUse`], race-free; a socket file left
//! by a listener that died (nobody holds the lock, nobody answers) is
//! replaced. `bind` never replaces a file silently. A path too long for a Unix
//! socket address (107 bytes) fails at once with the limit in the message.
//!
//! **What a connecting side is told.** [`connect_producer`] /
//! [`connect_consumer`] retry while nothing listens at the path yet (every
//! [`CONNECT_RETRY_EVERY`], for [`Config::connect_timeout`]), then fail with
//! [`Error::NotListening`] naming the path; a path whose directory does not
//! exist, or that holds a file that is not a socket, fails at once with
//! [`Error::BadPath`]. Once connected: [`Error::TypeMismatch`] with both
//! sides' element types (name, size, alignment; see
//! [`Config::type_name`]), [`Error::Incompatible`] for another shared
//! setting (both sides want one role, different signal kinds),
//! [`Error::PeerRefused`] for the listener's policy (uid, number of peers)
//! with its reason, [`Error::HandshakeTimeout`] for a listener that does not
//! answer in [`Config::handshake_timeout`]. The listening side gets the same
//! variants, naming the peer by pid and uid.
//!
//! **Handshakes never block serving**: an [`Intake`] accepts every connection
//! at once and polls all pending ones for their hello together, each with its
//! own deadline, up to a bound (the oldest goes beyond it). The listening side
//! only reads the hello; everything after it is sent without waiting, so a
//! silent or slow peer costs an fd until its deadline and nothing else.
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

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};
use nix::sys::socket::{self, sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::channel::{ChannelFds, Config};
use crate::ring::TypeTag;
use crate::signal::SignalKind;
use crate::{Consumer, ElemType, Error, Peer, Producer, Result};

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

const STATUS_ACCEPTED: u32 = 0;
const STATUS_REFUSED: u32 = 1;
const STATUS_TYPE_MISMATCH: u32 = 2;
const STATUS_INCOMPATIBLE: u32 = 3;

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
        let name = config.type_name_for::<T>();
        let name = name.as_bytes();
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
    /// 0: accepted (fds attached); 1: refused by policy (see `reason`);
    /// 2: element type mismatch (`elem_size`, `elem_align` and `reason`
    /// hold the listener's type and its name); 3: incompatible settings
    /// (role, signal kind; see `reason`).
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
        Self::refuse_with(STATUS_REFUSED, reason)
    }

    /// A refusal for a type mismatch, carrying the listener's type.
    fn mismatch(ours: &ElemType) -> Self {
        let mut w = Self::refuse_with(STATUS_TYPE_MISMATCH, &ours.name);
        w.elem_size = ours.size;
        w.elem_align = ours.align;
        w
    }

    fn refuse_with(status: u32, reason: &str) -> Self {
        let mut w = Welcome::zeroed();
        w.magic = WELCOME_MAGIC;
        w.version = PROTOCOL_VERSION;
        w.status = status;
        let mut n = reason.len().min(REASON_MAX);
        while !reason.is_char_boundary(n) {
            n -= 1;
        }
        w.reason[..n].copy_from_slice(&reason.as_bytes()[..n]);
        w
    }

    /// Parses and validates a received welcome: exact size, magic, version,
    /// status (a refusal of any kind becomes [`Error::PeerRefused`] with its
    /// reason here; the connecting functions of this module, which know the
    /// path and their own type, report [`Error::TypeMismatch`] and
    /// [`Error::Incompatible`] instead), known signal kind, and an fd count
    /// that matches the signal kind.
    pub fn parse(bytes: &[u8]) -> Result<WelcomeInfo> {
        Self::parse_for(bytes, None)
    }

    /// [`parse`](Self::parse) by a client that knows the listener's path
    /// and its own element type: a type mismatch becomes
    /// [`Error::TypeMismatch`], incompatible settings
    /// [`Error::Incompatible`].
    fn parse_for(bytes: &[u8], client: Option<(&Path, &ElemType)>) -> Result<WelcomeInfo> {
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
        let end = w.reason.iter().position(|&b| b == 0).unwrap_or(REASON_MAX);
        let reason = String::from_utf8_lossy(&w.reason[..end]).into_owned();
        match (w.status, client) {
            (STATUS_ACCEPTED, _) => {}
            (STATUS_TYPE_MISMATCH, Some((path, ours))) => {
                return Err(Error::TypeMismatch {
                    peer: Peer::Listener(path.to_path_buf()),
                    ours: ours.clone(),
                    theirs: ElemType {
                        name: reason,
                        size: w.elem_size,
                        align: w.elem_align,
                    },
                });
            }
            (STATUS_TYPE_MISMATCH, None) => {
                return Err(Error::PeerRefused(format!(
                    "element type mismatch: the listener has '{reason}' ({} bytes, align {})",
                    w.elem_size, w.elem_align
                )));
            }
            (STATUS_INCOMPATIBLE, Some((path, _))) => {
                return Err(Error::Incompatible {
                    peer: Peer::Listener(path.to_path_buf()),
                    reason,
                });
            }
            (STATUS_REFUSED | STATUS_INCOMPATIBLE, _) => {
                return Err(Error::PeerRefused(format!("listener refused: {reason}")));
            }
            (s, _) => return Err(Error::Protocol(format!("unknown welcome status {s}"))),
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

/// Longest path a Unix socket address holds (`sun_path` less its NUL).
pub const SOCKET_PATH_MAX: usize = 107;

/// Checks that `path` fits a Unix socket address.
pub fn check_socket_path(path: &Path) -> Result<()> {
    let n = path.as_os_str().as_bytes().len();
    if n > SOCKET_PATH_MAX {
        return Err(Error::InvalidArgument(format!(
            "socket path {} is {n} bytes long; a Unix socket address holds at most {SOCKET_PATH_MAX}",
            path.display()
        )));
    }
    if n == 0 {
        return Err(Error::InvalidArgument("empty socket path".into()));
    }
    Ok(())
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
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
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
    /// module docs): [`Error::InUse`] if another live listener serves it,
    /// [`Error::InvalidArgument`] if the path is too long for a Unix socket
    /// address.
    pub fn bind(path: impl AsRef<Path>, opts: &ListenOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        check_socket_path(&path)?;
        let lock = PathLock::take(&path)?;
        if let Ok(md) = std::fs::symlink_metadata(&path) {
            if !md.file_type().is_socket() {
                return Err(Error::InUse(format!(
                    "{} exists and is not a socket",
                    path.display()
                )));
            }
            // We hold the lock: a listener of this library cannot be there.
            // One that answers is another program (or an older version).
            let stale = matches!(
                connect_raw(&path),
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
            std::fs::remove_file(&path).map_err(|e| Error::io("remove stale socket", e))?;
        }
        let fd = seqpacket_socket()?;
        // The socket inode's mode becomes the file's mode at bind (less the
        // umask): no window with a wider mode.
        // SAFETY: fchmod takes no pointers; the fd is open.
        if unsafe { libc::fchmod(fd.as_raw_fd(), (opts.mode & 0o777) as libc::mode_t) } != 0 {
            return Err(Error::io("chmod socket", std::io::Error::last_os_error()));
        }
        let addr = UnixAddr::new(&path).map_err(|e| Error::errno("socket address", e))?;
        socket::bind(fd.as_raw_fd(), &addr).map_err(|e| match e {
            nix::errno::Errno::EADDRINUSE => Error::InUse(format!(
                "{} appeared while binding (another program)",
                path.display()
            )),
            e => Error::errno("bind", e),
        })?;
        let result = (|| {
            let md = std::fs::symlink_metadata(&path).map_err(|e| Error::io("stat socket", e))?;
            if md.mode() & 0o777 != opts.mode & 0o777 {
                // The umask took bits away: only widening is left to do.
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(opts.mode))
                    .map_err(|e| Error::io("chmod socket", e))?;
            }
            socket::listen(
                &fd,
                socket::Backlog::new(128).map_err(|e| Error::errno("listen", e))?,
            )
            .map_err(|e| Error::errno("listen", e))?;
            crate::signal::set_nonblocking(fd.as_fd())?;
            Ok(md.ino())
        })();
        let ino = match result {
            Ok(ino) => ino,
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                return Err(e);
            }
        };
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
    fn accept_one(&self) -> Result<Option<std::result::Result<Connection, PeerCred>>> {
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
                Ok(Some(Ok(Connection {
                    fd,
                    cred,
                    hello: None,
                })))
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

/// Default bound on handshakes pending in an [`Intake`] (connections accepted
/// whose hello has not arrived): beyond it, the oldest is dropped.
pub const DEFAULT_MAX_PENDING: usize = 64;
/// Default time a connection has to send its hello to an [`Intake`] (an
/// honest peer sends it right after `connect`).
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(1);
/// Most connections an [`Intake`] accepts per [`poll`](Intake::poll), so that
/// a flood of connections cannot keep it from the pending ones.
const ACCEPT_BATCH: usize = 256;

/// Settings of an [`Intake`].
#[derive(Debug, Clone)]
pub struct IntakeOptions {
    /// Most connections waiting for their hello at once; beyond it the oldest
    /// is dropped (and counted). At least 1.
    pub max_pending: usize,
    /// Time each connection has, from its accept, to send its hello.
    pub hello_timeout: Duration,
}

impl Default for IntakeOptions {
    fn default() -> Self {
        IntakeOptions {
            max_pending: DEFAULT_MAX_PENDING,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
        }
    }
}

/// What an [`Intake::poll`] found.
#[derive(Debug)]
pub enum Arrival {
    /// A connection whose hello arrived: serving it never waits.
    Ready(Connection),
    /// A connection that was dropped (or refused), and why.
    Refused {
        /// Its peer, when known.
        peer: Option<PeerCred>,
        /// Why.
        reason: Refusal,
    },
}

/// Why an [`Intake`] let a connection go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No hello within [`IntakeOptions::hello_timeout`].
    Silent,
    /// Dropped as the oldest pending one, to stay within
    /// [`IntakeOptions::max_pending`].
    TooManyPending,
    /// It hung up before its hello.
    HungUp,
    /// Its uid is not allowed ([`ListenOptions::allowed_uids`]).
    Uid(u32),
    /// Its first message was not a readable hello (oversized, with fds...).
    BadHello(String),
    /// `accept` failed (e.g. out of fds).
    Accept(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Silent => write!(f, "no hello in time"),
            Refusal::TooManyPending => {
                write!(f, "too many pending handshakes (dropped the oldest)")
            }
            Refusal::HungUp => write!(f, "hung up before its hello"),
            Refusal::Uid(u) => write!(f, "uid {u} not allowed"),
            Refusal::BadHello(e) => write!(f, "bad hello: {e}"),
            Refusal::Accept(e) => write!(f, "accept failed: {e}"),
        }
    }
}

/// Counters of an [`Intake`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IntakeStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections whose hello arrived ([`Arrival::Ready`]).
    pub ready: u64,
    /// Connections let go ([`Arrival::Refused`]), all reasons.
    pub refused: u64,
    /// Of those: silent until their deadline.
    pub silent: u64,
    /// Of those: dropped as the oldest beyond the bound.
    pub evicted: u64,
}

#[derive(Debug)]
struct Pending {
    conn: Connection,
    deadline: Instant,
}

/// Accepts connections and reads their hellos concurrently, without ever
/// blocking on one peer (see the module docs): one `poll` watches the
/// listening socket and every pending connection, each with its own
/// deadline, at most [`IntakeOptions::max_pending`] of them.
///
/// ```no_run
/// use std::time::Duration;
/// use shmring::handshake::{Arrival, Intake, IntakeOptions, Listener};
/// use shmring::Config;
///
/// let listener = Listener::bind("/tmp/audio.sock", &Default::default())?;
/// let mut intake = Intake::new(listener, IntakeOptions::default());
/// loop {
///     for arrival in intake.poll(Duration::from_millis(20))? {
///         match arrival {
///             // The hello is in: serving sends and never waits.
///             Arrival::Ready(conn) => {
///                 let _tx = conn.serve_producer::<f32>(&Config::new(4096))?;
///             }
///             Arrival::Refused { peer, reason } => eprintln!("{peer:?}: {reason}"),
///         }
///     }
/// }
/// # Ok::<(), shmring::Error>(())
/// ```
#[derive(Debug)]
pub struct Intake {
    listener: Listener,
    pending: VecDeque<Pending>,
    opts: IntakeOptions,
    stats: IntakeStats,
}

impl Intake {
    /// Takes connections from `listener`.
    pub fn new(listener: Listener, opts: IntakeOptions) -> Self {
        Intake {
            listener,
            pending: VecDeque::new(),
            opts,
            stats: IntakeStats::default(),
        }
    }

    /// The listener.
    pub fn listener(&self) -> &Listener {
        &self.listener
    }

    /// Connections waiting for their hello.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Counters since creation.
    pub fn stats(&self) -> IntakeStats {
        self.stats
    }

    fn refused(&mut self, peer: Option<PeerCred>, reason: Refusal) -> Arrival {
        self.stats.refused += 1;
        match reason {
            Refusal::Silent => self.stats.silent += 1,
            Refusal::TooManyPending => self.stats.evicted += 1,
            _ => {}
        }
        Arrival::Refused { peer, reason }
    }

    /// Waits up to `timeout` for something to happen (a connection, a hello,
    /// a hang-up, a deadline), then accepts what is waiting and reads every
    /// hello that arrived. Returns at once if something did.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<Arrival>> {
        let now = Instant::now();
        let mut wait = timeout;
        if let Some(d) = self.pending.iter().map(|p| p.deadline).min() {
            wait = wait.min(d.saturating_duration_since(now));
        }
        let mut pfds = Vec::with_capacity(1 + self.pending.len());
        pfds.push(libc::pollfd {
            fd: self.listener.as_fd().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        pfds.extend(self.pending.iter().map(|p| libc::pollfd {
            fd: p.conn.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        }));
        let ts = libc::timespec {
            tv_sec: wait.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: wait.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `pfds` and `ts` are live; ppoll writes only the revents.
        let r = unsafe {
            libc::ppoll(
                pfds.as_mut_ptr(),
                pfds.len() as libc::nfds_t,
                &ts,
                std::ptr::null(),
            )
        };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(Vec::new());
            }
            return Err(Error::io("ppoll", e));
        }
        let mut out = Vec::new();
        // Hellos, hang-ups and deadlines of the pending connections.
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        for (p, pfd) in pending.into_iter().zip(&pfds[1..]) {
            let peer = p.conn.cred;
            let mut conn = p.conn;
            if pfd.revents & libc::POLLIN != 0 {
                match conn.read_hello(now) {
                    Ok(()) => {
                        self.stats.ready += 1;
                        out.push(Arrival::Ready(conn));
                    }
                    Err(Error::Disconnected) => {
                        out.push(self.refused(Some(peer), Refusal::HungUp));
                    }
                    Err(e) => {
                        let why = e.to_string();
                        conn.refuse(&why);
                        out.push(self.refused(Some(peer), Refusal::BadHello(why)));
                    }
                }
            } else if pfd.revents != 0 {
                out.push(self.refused(Some(peer), Refusal::HungUp));
            } else if now >= p.deadline {
                conn.refuse("no hello in time");
                out.push(self.refused(Some(peer), Refusal::Silent));
            } else {
                self.pending.push_back(Pending {
                    conn,
                    deadline: p.deadline,
                });
            }
        }
        // New connections.
        for _ in 0..ACCEPT_BATCH {
            match self.listener.accept_one() {
                Ok(Some(Ok(conn))) => {
                    self.stats.accepted += 1;
                    self.pending.push_back(Pending {
                        conn,
                        deadline: Instant::now() + self.opts.hello_timeout,
                    });
                    while self.pending.len() > self.opts.max_pending.max(1) {
                        if let Some(old) = self.pending.pop_front() {
                            let peer = old.conn.cred;
                            old.conn.refuse("too many pending handshakes");
                            out.push(self.refused(Some(peer), Refusal::TooManyPending));
                        }
                    }
                }
                Ok(None) => break,
                Ok(Some(Err(cred))) => {
                    self.stats.accepted += 1;
                    out.push(self.refused(Some(cred), Refusal::Uid(cred.uid)));
                }
                Err(e) => {
                    // Out of fds, say: let the oldest pending one go, so that
                    // the next round can accept again.
                    if let Some(old) = self.pending.pop_front() {
                        let peer = old.conn.cred;
                        out.push(self.refused(Some(peer), Refusal::TooManyPending));
                    }
                    out.push(self.refused(None, Refusal::Accept(e.to_string())));
                    break;
                }
            }
        }
        Ok(out)
    }
}

/// Room for a hello and one byte more (a longer message is truncated, and
/// refused).
const HELLO_BUF: usize = std::mem::size_of::<Hello>() + 1;

/// An accepted connection, before the channel is set up.
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
    cred: PeerCred,
    /// The hello, once an [`Intake`] read it (bytes, length).
    hello: Option<([u8; HELLO_BUF], usize)>,
}

impl Connection {
    /// A connection on an already connected `SOCK_SEQPACKET` socket (one end
    /// of a `socketpair`, an fd received from elsewhere), whose peer is
    /// `cred`.
    pub fn from_parts(fd: OwnedFd, cred: PeerCred) -> Self {
        Connection {
            fd,
            cred,
            hello: None,
        }
    }

    /// The peer's credentials.
    pub fn peer(&self) -> PeerCred {
        self.cred
    }

    /// The socket (readable once the peer's hello arrived).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the hello was read already (by an [`Intake`]): serving then
    /// never waits.
    pub fn has_hello(&self) -> bool {
        self.hello.is_some()
    }

    /// Reads the hello now, waiting until `deadline` (an [`Intake`] does it
    /// for all pending connections at once). Fds attached to it are closed
    /// and make it an error.
    pub fn read_hello(&mut self, deadline: Instant) -> Result<()> {
        if self.hello.is_some() {
            return Ok(());
        }
        let mut buf = [0u8; HELLO_BUF];
        let (len, fds) = recv_with_fds(self.fd.as_fd(), &mut buf, 0, deadline)?;
        drop(fds);
        self.hello = Some((buf, len));
        Ok(())
    }

    /// Whether the peer went away or sent more than its hello (a protocol
    /// violation): one `poll` with no timeout. For connections waiting to be
    /// served after their hello.
    pub fn is_gone(&self) -> bool {
        if self.hello.is_none() {
            return false;
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLRDHUP,
            revents: 0,
        };
        // SAFETY: one live pollfd; a zero timeout never sleeps.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        r > 0 && pfd.revents != 0
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
        mut self,
        peer_role: Role,
        config: &Config,
    ) -> Result<(ChannelFds, OwnedFd)> {
        let peer = Peer::Process {
            pid: self.cred.pid,
            uid: self.cred.uid,
        };
        match self.read_hello(Instant::now() + config.handshake_timeout) {
            Err(Error::Timeout) => {
                return Err(Error::HandshakeTimeout {
                    peer,
                    after: config.handshake_timeout,
                })
            }
            r => r?,
        }
        let Some((buf, len)) = self.hello.take() else {
            return Err(Error::Protocol("no hello".into()));
        };
        let answer = |w: Welcome| {
            let _ = send_with_fds(self.fd.as_fd(), bytemuck::bytes_of(&w), &[]);
        };
        let hello = match Hello::parse(&buf[..len]) {
            Ok(h) => h,
            Err(e) => {
                let reason = e.to_string();
                answer(Welcome::refuse(&reason));
                return Err(Error::Protocol(reason));
            }
        };
        let incompatible = |reason: String| {
            answer(Welcome::refuse_with(STATUS_INCOMPATIBLE, &reason));
            Error::Incompatible {
                peer: peer.clone(),
                reason,
            }
        };
        if hello.role != peer_role {
            return Err(incompatible(format!(
                "both sides want to be {:?}",
                hello.role
            )));
        }
        let ours = config.tag::<T>();
        if hello.tag != ours {
            let ours = ElemType {
                name: config.type_name_for::<T>().into_owned(),
                size: ours.size,
                align: ours.align,
            };
            answer(Welcome::mismatch(&ours));
            return Err(Error::TypeMismatch {
                peer,
                ours,
                theirs: ElemType {
                    name: hello.name,
                    size: hello.tag.size,
                    align: hello.tag.align,
                },
            });
        }
        if hello.signal != config.signal {
            return Err(incompatible(format!(
                "signal kind: the connecting side wants {:?}, the listener uses {:?}",
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

/// Pause between two connection attempts of [`connect`].
pub const CONNECT_RETRY_EVERY: Duration = Duration::from_millis(5);

/// Connects to `path`, retrying every [`CONNECT_RETRY_EVERY`] while the
/// socket file does not exist yet or nobody accepts on it, for up to
/// `timeout` (`Duration::ZERO`: one attempt), then
/// [`Error::NotListening`]. A path whose directory does not exist, or where
/// a file that is not a socket is, fails at once with [`Error::BadPath`].
pub fn connect(path: impl AsRef<Path>, timeout: Duration) -> Result<OwnedFd> {
    let path = path.as_ref();
    check_socket_path(path)?;
    let start = Instant::now();
    let deadline = start + timeout;
    let bad = |why: String| Error::BadPath {
        path: path.to_path_buf(),
        why,
    };
    loop {
        match connect_raw(path) {
            Ok(fd) => return Ok(fd),
            Err(Error::Io { source, .. }) => match source.raw_os_error() {
                Some(libc::ENOENT | libc::ECONNREFUSED) => {
                    let dir = match path.parent() {
                        Some(d) if !d.as_os_str().is_empty() => d,
                        _ => Path::new("."),
                    };
                    match std::fs::metadata(dir) {
                        Ok(md) if md.is_dir() => {}
                        Ok(_) => return Err(bad(format!("{} is not a directory", dir.display()))),
                        Err(e) => {
                            return Err(bad(format!("directory {}: {e}", dir.display())));
                        }
                    }
                    if let Ok(md) = std::fs::symlink_metadata(path) {
                        if !md.file_type().is_socket() && !md.file_type().is_symlink() {
                            return Err(bad("the file there is not a socket".into()));
                        }
                    }
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
                _ => {
                    return Err(bad(format!("connect: {source}")));
                }
            },
            Err(e) => return Err(e),
        }
    }
}

pub(crate) fn client<T: Pod>(
    path: &Path,
    role: Role,
    config: &Config,
) -> Result<(ChannelFds, OwnedFd)> {
    let fd = connect(path, config.connect_timeout_or_default())?;
    let deadline = Instant::now() + config.handshake_timeout;
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
