//! The frame stream: media frames and stream events between two processes,
//! in order, without copying frame bytes.
//!
//! Three parts, all created by the producer:
//!
//! * an **arena**: one memfd split into equal slots. The producer maps it
//!   read-write and then seals it `F_SEAL_FUTURE_WRITE`, so a consumer can only
//!   map it read-only;
//! * a **descriptor ring** ([`Descriptor`], a ring of the [`channel`]
//!   layer) carrying frames (slot, offset, size, timestamps, flags) and events
//!   (caps, segment, EOS, flush, gap, stream-start, tags) in one order;
//! * a **return ring** of slot numbers the consumer is done with.
//!
//! The producer may move a consumer to a new arena while it stays connected
//! (bigger slots after the format grew): see
//! [`FrameSender::switch_arena`].
//!
//! Strings (caps, tags, stream id) travel in the arena's last slot, kept for
//! them, so a consumer that holds every frame slot cannot hold up a caps change
//! (while a consumer holds that slot, a free frame slot carries the string). The
//! consumer copies each descriptor out of shared memory, then validates it
//! (known kind, sequence number, slot in range, bytes inside the slot, slot not
//! already held) before it uses any field: a bad producer yields
//! [`Error::BadDescriptor`]. The producer checks every returned slot number the
//! same way.
//!
//! Nothing here knows GStreamer; the `gst-plugin` crate maps its types onto
//! these, and any program (an audio callback, a test) can speak to a
//! `shmringsink` or `shmringsrc` through this module.
//!
//! ```
//! use shmring::frames::{self, FrameConfig, FrameMeta, Received};
//!
//! let (mut tx, mut rx) = frames::pair(&FrameConfig::new(4, 4096))?;
//! tx.send_caps("audio/x-raw,format=S16LE,rate=48000,channels=2")?;
//! let mut slot = tx.try_lease().expect("a free slot");
//! slot.as_mut()[..4].copy_from_slice(&[1, 2, 3, 4]);
//! tx.send_lease(slot, 4, &FrameMeta { pts: 0, ..FrameMeta::default() })?;
//!
//! assert!(matches!(rx.try_recv()?, Some(Received::Caps(c)) if c.starts_with("audio/x-raw")));
//! match rx.try_recv()? {
//!     Some(Received::Frame(f)) => assert_eq!(f.bytes(), &[1, 2, 3, 4]),
//!     other => panic!("{other:?}"),
//! } // the frame dropped: its slot goes back
//! assert_eq!(tx.reclaim(|_| {})?, 2); // the caps slot and the frame slot
//!
//! // The end: EOS, in order after every frame; once the producer is gone
//! // too, the receiver reports `Disconnected` (or `Dropped` with the
//! // producer's reason, if it dropped this consumer).
//! tx.send_eos()?;
//! drop(tx);
//! assert!(matches!(rx.try_recv()?, Some(Received::Eos)));
//! assert!(matches!(
//!     rx.recv(Some(std::time::Duration::from_secs(1))),
//!     Err(shmring::Error::Disconnected)
//! ));
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! Between two processes the producer serves a socket path
//! ([`serve`]) and the consumer connects ([`connect`]);
//! `examples/src/bin/frame_stream.rs` is a complete two-process program
//! with frames of 1 byte to 8 MiB and end-of-stream.

mod arena;
mod blob;
mod descriptor;
mod messages;
mod receiver;
mod sender;
pub(crate) mod switch;

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use bytemuck::{Pod, Zeroable};

pub use arena::{Arena, ArenaView, SlotLease, MAX_SLOTS};
pub use blob::Blob;
pub use descriptor::{
    Descriptor, FrameMeta, Kind, PlaneLayout, SegmentInfo, MAX_PLANES, NONE, STORAGE_BLOB,
    STORAGE_SLOT,
};
pub use messages::MAX_MESSAGE;
pub use receiver::{FrameReceiver, FrameRef, Received, StreamStart, UpstreamSender};
pub use sender::{FrameExtras, FrameSender, LeaseError, UpstreamReceiver, MAX_BLOBS};

use crate::channel::{self, ChannelFds, Config, DEFAULT_SPIN};
use crate::handshake::{self, Connection, Role};
use crate::ring::TypeTag;
use crate::signal::SignalKind;
use crate::{Error, Result};
use arena::Geometry;
use descriptor::{DESCRIPTOR_TYPE, RETURN_TYPE};

/// Default largest arena a consumer agrees to map.
pub const DEFAULT_MAX_ARENA: usize = 1 << 30;

/// Default [`FrameConfig::blob_budget`]: 1 GiB of outsized payloads per
/// consumer (four 256 MiB buffers in flight).
pub const DEFAULT_BLOB_BUDGET: usize = 1 << 30;

/// Settings of a frame stream.
///
/// The stream's shape (`slots`, `slot_size`, `descriptors`) is the
/// producer's choice. A consumer that does not care passes
/// [`FrameConfig::consumer`], where they are 0 ("the producer's"); one that
/// gives a shape gets exactly that shape or [`Error::Incompatible`] from
/// [`connect`], naming both sides' values.
#[derive(Debug, Clone)]
pub struct FrameConfig {
    /// Number of slots in the arena (2 to [`MAX_SLOTS`]). The last one
    /// carries strings (caps, tags, stream id), the others frames. On
    /// [`connect`]: 0 takes the producer's, any other value must be it.
    pub slots: u32,
    /// Bytes per slot, rounded up to a multiple of 64. On [`connect`]: 0
    /// takes the producer's, any other value must be it (after rounding).
    pub slot_size: usize,
    /// Capacity of the descriptor ring, rounded up to a power of two. On
    /// [`connect`]: 0 takes the producer's, any other value must be it
    /// (after rounding).
    pub descriptors: usize,
    /// Wake-up kind (the socket signal by default, which no peer can turn
    /// against us; see [`SignalKind`]); both sides must agree.
    pub signal: SignalKind,
    /// Busy-poll time of blocking calls before they sleep.
    pub spin: Duration,
    /// Limit on the whole handshake.
    pub handshake_timeout: Duration,
    /// How long [`connect`] retries while nothing listens at the path yet
    /// (see [`Config::connect_timeout`]); `None`: as long as
    /// [`handshake_timeout`](Self::handshake_timeout).
    pub connect_timeout: Option<Duration>,
    /// Largest arena (bytes) the consumer agrees to map, at connect and at
    /// every arena switch.
    pub max_arena: usize,
    /// Most bytes of [`Blob`]s (payloads that do not fit a slot) one consumer
    /// may hold at once (a limit of the producer's, not used by
    /// [`connect`]): beyond it,
    /// [`FrameSender::send_blob`] is [`Error::Full`] until the consumer
    /// gives some back.
    pub blob_budget: usize,
}

impl FrameConfig {
    /// `slots` slots of `slot_size` bytes, defaults for the rest.
    pub fn new(slots: u32, slot_size: usize) -> Self {
        FrameConfig {
            slots,
            slot_size,
            descriptors: 256,
            signal: SignalKind::Socket,
            spin: DEFAULT_SPIN,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: None,
            max_arena: DEFAULT_MAX_ARENA,
            blob_budget: DEFAULT_BLOB_BUDGET,
        }
    }

    /// Sets [`blob_budget`](Self::blob_budget).
    pub fn blob_budget(mut self, bytes: usize) -> Self {
        self.blob_budget = bytes;
        self
    }

    /// Settings for [`connect`] that take whatever shape the producer
    /// chose (`slots`, `slot_size` and `descriptors` are 0); the rest are
    /// this side's: signal kind, spin, handshake timeout, largest arena.
    ///
    /// ```
    /// use shmring::frames::FrameConfig;
    ///
    /// let cfg = FrameConfig::consumer().max_arena(64 << 20);
    /// assert_eq!((cfg.slots, cfg.slot_size, cfg.descriptors), (0, 0, 0));
    /// ```
    pub fn consumer() -> Self {
        FrameConfig {
            descriptors: 0,
            ..FrameConfig::new(0, 0)
        }
    }

    /// The shape a consumer asked for that the producer's differs from, as
    /// "what: ours x, the producer's y" (none: it takes the stream).
    fn shape_mismatch(&self, slots: u32, slot_size: usize, descriptors: usize) -> Option<String> {
        let want = [
            ("slots", self.slots as usize, slots as usize),
            (
                "slot size",
                self.slot_size
                    .checked_next_multiple_of(64)
                    .unwrap_or(usize::MAX),
                slot_size,
            ),
            (
                "descriptors",
                match self.descriptors {
                    0 => 0,
                    n => n.checked_next_power_of_two().unwrap_or(usize::MAX),
                },
                descriptors,
            ),
        ];
        let diffs: Vec<String> = want
            .iter()
            .filter(|(_, ours, theirs)| *ours != 0 && ours != theirs)
            .map(|(what, ours, theirs)| format!("{what}: ours {ours}, the producer's {theirs}"))
            .collect();
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }

    /// Sets [`descriptors`](Self::descriptors).
    pub fn descriptors(mut self, n: usize) -> Self {
        self.descriptors = n;
        self
    }

    crate::channel::link_setters!();

    /// Sets [`max_arena`](Self::max_arena).
    pub fn max_arena(mut self, bytes: usize) -> Self {
        self.max_arena = bytes;
        self
    }

    fn ring_config(&self, capacity: usize, name: &str) -> Config {
        Config {
            type_name: Some(name.into()),
            signal: self.signal,
            spin: self.spin,
            handshake_timeout: self.handshake_timeout,
            connect_timeout: self.connect_timeout,
            ..Config::new(capacity)
        }
    }

    fn desc_config(&self) -> Config {
        self.ring_config(self.descriptors, DESCRIPTOR_TYPE)
    }

    fn return_config(&self, slots: u32) -> Config {
        // Room for every slot and every blob: a return never finds the ring full.
        self.ring_config(return_capacity(slots), RETURN_TYPE)
    }
}

fn return_capacity(slots: u32) -> usize {
    (slots as usize + MAX_BLOBS as usize).next_power_of_two()
}

/// Both ends in one process.
pub fn pair(cfg: &FrameConfig) -> Result<(FrameSender, FrameReceiver)> {
    let arena = Arena::new(cfg)?;
    let g = arena.geometry();
    let view = ArenaView::of(arena.segment(), g)?;
    let (dtx, drx) = channel::pair::<Descriptor>(&cfg.desc_config())?;
    let (rtx, rrx) = channel::pair::<u32>(&cfg.return_config(g.slots))?;
    let (mine, theirs) = messages::pair()?;
    Ok((
        FrameSender::new(arena, dtx, rrx, mine, cfg.blob_budget),
        FrameReceiver::new(view, drx, rtx, theirs, cfg.max_arena),
    ))
}

const FRAMES_MAGIC: u64 = u64::from_le_bytes(*b"SHMRFRAM");
/// 3: arena switches ([`Kind::Arena`], the arena message).
const FRAMES_VERSION: u32 = 3;

/// Second handshake message of a frame stream (after the descriptor ring's
/// [`Welcome`](handshake::Welcome)): the arena, the return ring and the
/// consumer's end of the message socket.
#[repr(C)]
#[derive(Debug, Clone, Copy, Pod, Zeroable)]
struct FramesWelcome {
    magic: u64,
    version: u32,
    signal: u32,
    slots: u32,
    nfds: u32,
    slot_size: u64,
    return_capacity: u64,
}

/// Serves one consumer on an accepted connection (the listening side is the
/// producer): creates the arena and both rings and sends their fds.
///
/// Returns once the consumer checked everything and took the stream. The
/// example at [`connect`] shows both ends.
///
/// # Errors
///
/// * [`Error::Rejected`]: the consumer refused the stream, with its reason
///   (an arena over its [`FrameConfig::max_arena`], a shape it insists on);
/// * [`Error::Incompatible`]: the consumer's signal kind differs;
/// * [`Error::Timeout`] / [`Error::HandshakeTimeout`]: the consumer did not
///   answer within [`FrameConfig::handshake_timeout`];
/// * [`Error::InvalidArgument`]: `cfg`'s shape is not one an arena can have.
pub fn serve(conn: Connection, cfg: &FrameConfig) -> Result<FrameSender> {
    let mut tx = serve_arena(conn, cfg, Arena::new(cfg)?)?;
    tx.wait_ready(cfg.handshake_timeout)?;
    Ok(tx)
}

/// Like [`serve`], with an arena that already exists (its geometry wins over
/// `cfg`'s): a producer can then hand out leases, e.g. to a buffer pool,
/// before any consumer connects, and keep them across consumers, and serve
/// several consumers at once from one arena (fan-out: see [`FrameSender`]).
/// Every consumer served from one arena can read every frame written to it
/// while it keeps its mapping, even after it disconnected: use a new arena
/// where that matters (`shmringsink` does once all consumers have left). A
/// consumer can be moved to another arena later: see
/// [`FrameSender::switch_arena`].
pub fn serve_arena(conn: Connection, cfg: &FrameConfig, arena: Arena) -> Result<FrameSender> {
    let g = arena.geometry();
    let (desc_fds, link) = conn.serve::<Descriptor>(Role::Consumer, &cfg.desc_config())?;
    let ret_cfg = cfg.return_config(g.slots);
    let ret = ChannelFds::create::<u32>(&ret_cfg)?;
    let (mine, theirs) = messages::pair()?;
    let mut fds = vec![arena.segment().as_fd()];
    fds.extend(ret.fds());
    fds.push(theirs.as_fd());
    let msg = FramesWelcome {
        magic: FRAMES_MAGIC,
        version: FRAMES_VERSION,
        signal: cfg.signal.to_wire(),
        slots: g.slots,
        nfds: fds.len() as u32,
        slot_size: g.slot_size as u64,
        return_capacity: ret.capacity as u64,
    };
    handshake::send_with_fds(link.as_fd(), bytemuck::bytes_of(&msg), &fds)?;
    drop(fds);
    drop(theirs);
    let link2 = link.try_clone().map_err(|e| Error::io("dup link", e))?;
    let desc = desc_fds.into_producer::<Descriptor>(link, cfg.spin)?;
    let returns = ret.into_consumer::<u32>(link2, cfg.spin)?;
    Ok(FrameSender::new(
        arena,
        desc,
        returns,
        mine,
        cfg.blob_budget,
    ))
}

/// Connects to a producer listening on `path` and validates everything it
/// sends (both rings, the arena's seals and size, the geometry against
/// [`FrameConfig::max_arena`]), then tells the producer it took the stream,
/// or why not.
///
/// The stream's shape (slots, slot size, descriptor ring) is the
/// producer's choice: pass [`FrameConfig::consumer`] to take any, or a
/// shape to insist on it. `signal` must match the producer's; `spin`,
/// `handshake_timeout` and `max_arena` are this side's; `blob_budget` is
/// not used here.
///
/// # Errors
///
/// * [`Error::NotListening`] / [`Error::BadPath`]: nothing serves `path`;
/// * [`Error::Incompatible`]: the stream's shape is not the one `cfg`
///   insists on (both values in the message), or the producer's signal
///   kind or element types differ; the producer hears why;
/// * [`Error::Protocol`]: the producer sent something malformed (bad
///   seals, a geometry over [`FrameConfig::max_arena`], wrong fds);
/// * [`Error::HandshakeTimeout`]: the producer did not finish the
///   handshake within [`FrameConfig::handshake_timeout`].
///
/// # Examples
///
/// ```
/// use shmring::frames::{self, FrameConfig, Received};
/// use shmring::handshake::{ListenOptions, Listener};
///
/// let path = std::env::temp_dir().join(format!("frames-doc-{}.sock", std::process::id()));
/// let listener = Listener::bind(&path, &ListenOptions::default())?;
/// let producer = std::thread::spawn(move || -> shmring::Result<()> {
///     let cfg = FrameConfig::new(4, 4096);
///     // The first consumer refuses this shape, and `serve` says so.
///     let refused = frames::serve(listener.accept(None)?, &cfg);
///     assert!(matches!(refused, Err(shmring::Error::Rejected(_))));
///     let mut tx = frames::serve(listener.accept(None)?, &cfg)?;
///     tx.send_caps("video/x-raw")?;
///     tx.send_eos()
/// });
///
/// // Insisting on another shape fails, with both sides' values...
/// let err = frames::connect(&path, &FrameConfig::new(2, 64)).unwrap_err();
/// assert!(matches!(err, shmring::Error::Incompatible { .. }), "{err}");
/// // ...taking the producer's works.
/// let mut rx = frames::connect(&path, &FrameConfig::consumer())?;
/// assert!(matches!(rx.recv(None)?, Received::Caps(c) if c == "video/x-raw"));
/// assert!(matches!(rx.recv(None)?, Received::Eos));
/// producer.join().expect("producer thread")?;
/// # Ok::<(), shmring::Error>(())
/// ```
pub fn connect(path: impl AsRef<Path>, cfg: &FrameConfig) -> Result<FrameReceiver> {
    let deadline = crate::sys::deadline_in(cfg.handshake_timeout);
    let (desc_fds, link) =
        handshake::client::<Descriptor>(path.as_ref(), Role::Consumer, &cfg.desc_config())?;
    let (w, mut fds, msgs) = recv_frames_welcome(link.as_fd(), cfg, deadline)?;
    // From here on the producer hears why we refuse, if we do.
    let refuse = |e: Error| {
        messages::send_refuse(msgs.as_fd(), &e.to_string());
        e
    };
    let (g, capacity) = check_geometry(&w, cfg).map_err(refuse)?;
    if let Some(reason) = cfg.shape_mismatch(g.slots, g.slot_size, desc_fds.capacity) {
        return Err(refuse(Error::Incompatible {
            peer: crate::error::Peer::Listener(path.as_ref().to_path_buf()),
            reason,
        }));
    }
    let arena_fd = fds.remove(0);
    let view = ArenaView::open(arena_fd, g).map_err(refuse)?;
    let ret = ChannelFds::from_wire(capacity, TypeTag::of::<u32>(RETURN_TYPE), cfg.signal, fds)
        .map_err(refuse)?;
    let link2 = link
        .try_clone()
        .map_err(|e| refuse(Error::io("dup link", e)))?;
    let desc = desc_fds
        .into_consumer::<Descriptor>(link, cfg.spin)
        .map_err(refuse)?;
    let returns = ret.into_producer::<u32>(link2, cfg.spin).map_err(refuse)?;
    messages::send_ready(msgs.as_fd())?;
    Ok(FrameReceiver::new(view, desc, returns, msgs, cfg.max_arena))
}

/// Receives the [`FramesWelcome`] on `link` and checks its header and fds:
/// the welcome, the fds before the message socket (arena, return ring), and
/// the message socket, checked.
fn recv_frames_welcome(
    link: BorrowedFd<'_>,
    cfg: &FrameConfig,
    deadline: Instant,
) -> Result<(FramesWelcome, Vec<OwnedFd>, OwnedFd)> {
    let mut buf = [0u8; std::mem::size_of::<FramesWelcome>() + 1];
    let (len, mut fds) = handshake::recv_with_fds(link, &mut buf, handshake::MAX_FDS, deadline)?;
    let w: FramesWelcome = handshake::read_exact_pod(&buf[..len], "frames welcome")?;
    if w.magic != FRAMES_MAGIC || w.version != FRAMES_VERSION {
        return Err(Error::Protocol(format!(
            "frames welcome magic {:#x} version {}",
            w.magic, w.version
        )));
    }
    if SignalKind::from_wire(w.signal) != Some(cfg.signal) {
        return Err(Error::Protocol(format!(
            "frames welcome signal {}",
            w.signal
        )));
    }
    let want = 3 + 2 * cfg.signal.fd_count();
    if w.nfds as usize != want || fds.len() != want {
        return Err(Error::Protocol(format!(
            "frames welcome with {} fds (announced {}), {want} expected",
            fds.len(),
            w.nfds
        )));
    }
    // The message socket comes last; check it is what it must be.
    let msgs = fds
        .pop()
        .ok_or_else(|| Error::Protocol("frames welcome without its message socket".into()))?;
    check_message_socket(&msgs)?;
    Ok((w, fds, msgs))
}

/// The arena geometry and return ring capacity the welcome announces,
/// checked against this side's limits.
fn check_geometry(w: &FramesWelcome, cfg: &FrameConfig) -> Result<(Geometry, usize)> {
    let slot_size = usize::try_from(w.slot_size)
        .map_err(|_| Error::Protocol(format!("slot size {}", w.slot_size)))?;
    let g = Geometry::new(w.slots, slot_size, cfg.max_arena)
        .map_err(|e| Error::Protocol(format!("arena geometry: {e}")))?;
    if g.slot_size != slot_size {
        return Err(Error::Protocol(format!(
            "slot size {slot_size} is not a multiple of 64"
        )));
    }
    let capacity = usize::try_from(w.return_capacity)
        .ok()
        .filter(|&c| c == return_capacity(g.slots))
        .ok_or_else(|| {
            Error::Protocol(format!(
                "return ring of {} for {} slots",
                w.return_capacity, g.slots
            ))
        })?;
    Ok((g, capacity))
}

/// The producer's message socket must be a Unix `SOCK_SEQPACKET` socket;
/// ours is made non-blocking (only our end: the flag is per open file).
fn check_message_socket(fd: &std::os::fd::OwnedFd) -> Result<()> {
    let ty = crate::sys::socket_option(fd.as_fd(), libc::SO_TYPE)
        .map_err(|_| Error::Protocol("message fd is not a socket".into()))?;
    let domain = crate::sys::socket_option(fd.as_fd(), libc::SO_DOMAIN)
        .map_err(|e| Error::io("SO_DOMAIN", e))?;
    if ty != libc::SOCK_SEQPACKET || domain != libc::AF_UNIX {
        return Err(Error::Protocol(format!(
            "message socket of type {ty}, domain {domain}: a Unix SOCK_SEQPACKET expected"
        )));
    }
    crate::sys::set_nonblocking(fd.as_fd())
}
