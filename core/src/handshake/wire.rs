//! The handshake's wire format: the [`Hello`] a connecting side sends, the
//! [`Welcome`] the listener answers, their magic numbers, version and status
//! codes, and their validation ([`Hello::parse`], [`Welcome::parse`]).
//!
//! Both are `#[repr(C)]` plain old data sent as one `SOCK_SEQPACKET`
//! message each: a message of any other size is refused before a field is
//! read ([`read_exact_pod`]).

use std::path::Path;

use bytemuck::{Pod, Zeroable};

use super::{NAME_MAX, PROTOCOL_VERSION};
use crate::channel::{ChannelFds, Config};
use crate::ring::TypeTag;
use crate::signal::SignalKind;
use crate::{ElemType, Error, Peer, Result};

const HELLO_MAGIC: u64 = u64::from_le_bytes(*b"SHMRHELO");
const WELCOME_MAGIC: u64 = u64::from_le_bytes(*b"SHMRWLCM");
const REASON_MAX: usize = 128;

const STATUS_ACCEPTED: u32 = 0;
const STATUS_REFUSED: u32 = 1;
const STATUS_TYPE_MISMATCH: u32 = 2;
pub(super) const STATUS_INCOMPATIBLE: u32 = 3;

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
        check_magic_version("hello", (h.magic, HELLO_MAGIC), h.version)?;
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
    pub(super) fn accept(fds: &ChannelFds) -> Self {
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

    pub(super) fn refuse(reason: &str) -> Self {
        Self::refuse_with(STATUS_REFUSED, reason)
    }

    /// A refusal for a type mismatch, carrying the listener's type.
    pub(super) fn mismatch(ours: &ElemType) -> Self {
        let mut w = Self::refuse_with(STATUS_TYPE_MISMATCH, &ours.name);
        w.elem_size = ours.size;
        w.elem_align = ours.align;
        w
    }

    pub(super) fn refuse_with(status: u32, reason: &str) -> Self {
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
    #[cfg_attr(not(feature = "test-support"), allow(dead_code))]
    pub fn parse(bytes: &[u8]) -> Result<WelcomeInfo> {
        Self::parse_for(bytes, None)
    }

    /// [`parse`](Self::parse) by a client that knows the listener's path
    /// and its own element type: a type mismatch becomes
    /// [`Error::TypeMismatch`], incompatible settings
    /// [`Error::Incompatible`].
    pub(super) fn parse_for(
        bytes: &[u8],
        client: Option<(&Path, &ElemType)>,
    ) -> Result<WelcomeInfo> {
        let w: Welcome = read_exact_pod(bytes, "welcome")?;
        check_magic_version("welcome", (w.magic, WELCOME_MAGIC), w.version)?;
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

/// Checks a message's magic number (`(theirs, ours)`) and protocol version.
fn check_magic_version(what: &str, (magic, ours): (u64, u64), version: u32) -> Result<()> {
    if magic != ours {
        return Err(Error::Protocol(format!("bad {what} magic {magic:#018x}")));
    }
    if version != PROTOCOL_VERSION {
        return Err(Error::Protocol(format!(
            "{what} protocol version {version} (this side speaks {PROTOCOL_VERSION})"
        )));
    }
    Ok(())
}

/// Reads a `P` from a message that must be exactly its size (`what` names
/// the message in the error).
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
