//! A lock-free single-producer single-consumer ring of plain-old-data items over a
//! raw memory region, which may be shared with another (untrusted) process.
//!
//! The ring knows nothing of files, fds or processes: it is given a [`Region`] of
//! memory and a [`RingLayout`], and an optional [`Notify`] hook that it calls when
//! the other side announced it is going to sleep.
//!
//! # Memory layout
//!
//! ```text
//! offset   0  Header        magic, layout version, capacity, element size/align, type tag
//! offset 128  producer line write index; consumer's sleep sequence
//! offset 256  consumer line read index;  producer's sleep sequence
//! offset 384  slots         capacity x T (offset rounded up to T's alignment)
//! ```
//!
//! Producer and consumer state sit 128 bytes apart (two cache lines, so that the
//! adjacent-line prefetcher does not couple them either). Each side keeps a private
//! copy of its own index and a cached copy of the other side's, and only reads the
//! shared index of the other side when its cache says full (producer) or empty
//! (consumer). Indices count up monotonically and are reduced modulo the capacity
//! (a power of two) to find a slot.
//!
//! # Trust
//!
//! Every value this side reads from the shared region is validated before it is
//! used: the other side's index must lie in `[ours, ours + capacity]` (producer view:
//! `read <= write <= read + capacity`), or the endpoint reports [`Error::Corrupt`] and
//! is poisoned. Capacity, sizes and offsets always come from the local
//! [`RingLayout`], never from the shared header, which is only compared against it.
//!
//! # No references into memory the peer can write
//!
//! A peer process may write any byte of the region at any time. Rust lets no
//! `&T` or `&mut T` point at memory that changes under it (that is a data race,
//! undefined behaviour, and lets the compiler read a value twice and see two
//! different values), so the safe API never creates one over the slots:
//! [`Writer::push`], [`Writer::push_slice`], [`Reader::pop`],
//! [`Reader::pop_slice`] and the chunks' [`WriteChunk::write`],
//! [`WriteChunk::fill_from_iter`], [`ReadChunk::read`], [`ReadChunk::get`] and
//! [`ReadChunk::iter`] copy items between the slots and local memory with
//! volatile loads and stores (each byte is read once; one `u64` is one plain
//! `mov`, a run is copied in 16-byte moves on x86_64). The index lines are
//! only touched through
//! atomics. What a copy yields may be garbage from a hostile peer, but it is
//! a valid `T` (see below) that cannot change after the copy.
//!
//! In-place views, [`ReadChunk::as_slices`] and [`WriteChunk::as_mut_slices`],
//! are `unsafe fn`s (as shmem-ipc's `*_trusted` calls): their caller promises
//! that the peer does not touch the slots while the slices live (both ends are
//! in this process, or the peer is trusted). Calling one without `unsafe` does
//! not compile (`E0133`, checked by rustdoc on nightly; each is followed by
//! its twin, which differs only by the `unsafe` block and compiles):
//!
//! ```compile_fail,E0133
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! let chunk = reader.read_chunk(1)?;
//! let (a, _) = chunk.as_slices(); // error[E0133]: call to unsafe function
//! assert_eq!(a, &[7]);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! let chunk = reader.read_chunk(1)?;
//! // SAFETY: both ends are ours; the writer does not run while `a` lives.
//! let (a, _) = unsafe { chunk.as_slices() };
//! assert_eq!(a, &[7]);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```compile_fail,E0133
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! let mut chunk = writer.write_chunk(1)?;
//! chunk.as_mut_slices().0[0] = 7; // error[E0133]: call to unsafe function
//! chunk.commit_all();
//! assert_eq!(reader.pop()?, 7);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! let mut chunk = writer.write_chunk(1)?;
//! // SAFETY: both ends are ours; the reader does not run meanwhile.
//! unsafe { chunk.as_mut_slices() }.0[0] = 7;
//! chunk.commit_all();
//! assert_eq!(reader.pop()?, 7);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # One writer and one reader per ring in this process
//!
//! Two `Writer`s over the same memory in one process would write the same
//! slots from two threads: a data race in safe code. So attaching an end
//! ([`RingLayout::writer`], [`RingLayout::reader`], both by
//! [`RingLayout::init`]) claims it in a process-wide table keyed by the
//! region's address, and fails with [`Error::InvalidArgument`] while that end
//! is attached (or while the other end is attached with another
//! [`RingLayout`]: two geometries over one memory); dropping the end releases
//! the claim. The claim is deliberately
//! not a flag in the shared header: a hostile peer could set it to keep us out,
//! or clear it while we hold it and so let a second end of ours attach. The
//! peer's own ends (in its process, through its own mapping) are outside our
//! table and need not be: its writes are the hostile writes the ring already
//! survives.
//!
//! # Why `Pod` and not `Copy`
//!
//! Items are `T: bytemuck::Pod`: every bit pattern is a valid `T`. `Copy` alone is
//! not enough when the peer is untrusted: a hostile peer can write any bytes into
//! the slots, and reading a `bool` that holds 2, a `char` that is a surrogate or an
//! enum with an unknown discriminant is undefined behaviour in Rust, which a
//! `Copy` bound would allow.
//!
//! # Example
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! writer.push_slice(&[8, 9])?;
//! assert_eq!(reader.pop()?, 7);
//! let mut out = [0u32; 4];
//! assert_eq!(reader.pop_slice(&mut out)?, 2);
//! assert_eq!(&out[..2], &[8, 9]);
//! # Ok::<(), shmring::Error>(())
//! ```

use std::alloc::{self, Layout};
use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::atomic::{
    AtomicU32 as StdAtomicU32, AtomicU64 as StdAtomicU64, Ordering as StdOrdering,
};
use std::sync::{Arc, Mutex};

use bytemuck::Pod;

use crate::sync::{fence, AtomicU64, Ordering};
use crate::{Error, Result};

/// Magic number at the start of every ring header: `b"SHMRING\0"` little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");
/// Version of the shared-memory layout described in this module.
pub const LAYOUT_VERSION: u32 = 1;
/// Largest capacity (in items) a ring may have.
pub const MAX_CAPACITY: usize = 1 << 32;
/// Largest size in bytes of a ring's region (header and slots).
pub const MAX_REGION_SIZE: usize = 1 << 40;
/// Largest element alignment supported (a page).
pub const MAX_ALIGN: usize = 4096;

const LINE: usize = 128;
const PRODUCER_OFFSET: usize = LINE;
const CONSUMER_OFFSET: usize = 2 * LINE;
const HEADER_SIZE: usize = 3 * LINE;

/// What a ring holds: element size, alignment and a hash of a user-given name.
///
/// Both sides of a shared ring must agree on all three; the name catches two
/// types of the same size that mean different things (`[f32; 2]` stereo samples
/// versus a complex number, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TypeTag {
    /// `size_of::<T>()`.
    pub size: u32,
    /// `align_of::<T>()`.
    pub align: u32,
    /// FNV-1a 64-bit hash of the user-given type name.
    pub name_hash: u64,
}

impl TypeTag {
    /// The tag of `T` under `name`.
    pub fn of<T>(name: &str) -> Self {
        TypeTag {
            size: size_of::<T>() as u32,
            align: align_of::<T>() as u32,
            name_hash: fnv1a(name.as_bytes()),
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The header at offset 0 of a ring region. Written once by the creator; the
/// other side copies it out and compares it with its own [`RingLayout`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    magic: u64,
    version: u32,
    elem_size: u32,
    elem_align: u32,
    reserved: u32,
    capacity: u64,
    name_hash: u64,
}

/// The producer's cache line. Every word has exactly one writer: the producer
/// writes `write`; the consumer writes `consumer_sleep`, its sleep sequence (odd
/// while it announces a sleep, a new odd value for every sleep), which the
/// producer only reads, right after each commit.
#[repr(C)]
pub(crate) struct ProducerLine {
    pub(crate) write: AtomicU64,
    pub(crate) consumer_sleep: AtomicU64,
}

/// The consumer's cache line, mirror image of [`ProducerLine`].
#[repr(C)]
pub(crate) struct ConsumerLine {
    pub(crate) read: AtomicU64,
    pub(crate) producer_sleep: AtomicU64,
}

/// One side's half of the sleep/wake protocol: its own sleep sequence (it is the
/// only writer of the shared copy) and the peer's sequence it last woke.
#[derive(Debug, Default)]
struct SleepState {
    /// Our sleep sequence: odd while we announce a sleep.
    mine: u64,
    /// The peer's sleep sequence we last sent a wake-up for.
    woken: u64,
}

impl SleepState {
    /// The next odd value: a fresh sleep that the peer has not woken yet.
    fn begin(&mut self) -> u64 {
        self.mine += if self.mine % 2 == 1 { 2 } else { 1 };
        self.mine
    }

    /// Back to even (awake); `None` if we were awake already.
    fn end(&mut self) -> Option<u64> {
        (self.mine % 2 == 1).then(|| {
            self.mine += 1;
            self.mine
        })
    }

    /// After our commit or release: must we wake a peer whose sequence is `seq`?
    /// Once per sleep: a hostile peer flipping its word costs at most one
    /// wake-up write per commit.
    #[inline]
    fn should_wake(&mut self, seq: u64) -> bool {
        if seq % 2 == 1 && seq != self.woken {
            self.woken = seq;
            true
        } else {
            false
        }
    }
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Header>() <= LINE);
    assert!(size_of::<ProducerLine>() <= LINE);
    assert!(size_of::<ConsumerLine>() <= LINE);
};

/// Offsets and sizes of a ring of `capacity` items of one [`TypeTag`].
///
/// Computed locally by each side from its own expectations; the peer's header is
/// only ever compared against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    capacity: usize,
    tag: TypeTag,
    slots_offset: usize,
    total_size: usize,
}

impl RingLayout {
    /// The layout of a ring of at least `capacity` items of `T` (rounded up to a
    /// power of two).
    ///
    /// Fails for a zero-sized `T`, a zero capacity, an alignment above
    /// [`MAX_ALIGN`], a capacity above [`MAX_CAPACITY`] or a region above
    /// [`MAX_REGION_SIZE`], or a `tag` that does not describe `T`.
    pub fn new<T: Pod>(capacity: usize, tag: TypeTag) -> Result<Self> {
        if tag.size as usize != size_of::<T>() || tag.align as usize != align_of::<T>() {
            return Err(Error::InvalidArgument(format!(
                "type tag {}/{} does not describe an element of size {} align {}",
                tag.size,
                tag.align,
                size_of::<T>(),
                align_of::<T>()
            )));
        }
        Self::from_tag(capacity, tag)
    }

    /// The layout for a tag alone (used when validating what a peer announces).
    pub fn from_tag(capacity: usize, tag: TypeTag) -> Result<Self> {
        let size = tag.size as usize;
        let align = tag.align as usize;
        if size == 0 {
            return Err(Error::InvalidArgument("zero-sized elements".into()));
        }
        if !align.is_power_of_two() || align > MAX_ALIGN || size % align != 0 {
            return Err(Error::InvalidArgument(format!(
                "unsupported element alignment {align} (size {size})"
            )));
        }
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(Error::InvalidArgument(format!(
                "capacity {capacity} outside 1..={MAX_CAPACITY}"
            )));
        }
        let capacity = capacity.next_power_of_two();
        let slots_offset = HEADER_SIZE.next_multiple_of(align);
        let total_size = capacity
            .checked_mul(size)
            .and_then(|s| s.checked_add(slots_offset))
            .filter(|&s| s <= MAX_REGION_SIZE)
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "ring of {capacity} x {size} bytes exceeds {MAX_REGION_SIZE} bytes"
                ))
            })?;
        Ok(RingLayout {
            capacity,
            tag,
            slots_offset,
            total_size,
        })
    }

    /// Number of slots (a power of two).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The element type's tag.
    pub fn tag(&self) -> TypeTag {
        self.tag
    }

    /// Bytes of memory the ring needs, header included.
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    fn header(&self) -> Header {
        Header {
            magic: MAGIC,
            version: LAYOUT_VERSION,
            elem_size: self.tag.size,
            elem_align: self.tag.align,
            reserved: 0,
            capacity: self.capacity as u64,
            name_hash: self.tag.name_hash,
        }
    }

    /// Writes a fresh header and zeroed indices and flags into `region` (with
    /// atomic stores: a peer may already look at it), then returns both ends of
    /// the ring (for use in one process, or to keep one end and let another
    /// process [`attach`](Self::writer) the other).
    ///
    /// Fails with [`Error::InvalidArgument`] if an end of a ring over this
    /// region is attached in this process (see the [module docs](self)); the
    /// region is then left untouched.
    pub fn init<T: Pod>(&self, region: Arc<dyn Region>) -> Result<(Writer<T>, Reader<T>)> {
        self.check_region::<T>(&*region)?;
        let base = region.as_ptr();
        let writer = Claim::take(base, End::Writer, self)?;
        let reader = Claim::take(base, End::Reader, self)?;
        // SAFETY: `check_region` proved the region is at least `total_size` bytes
        // long, non-null and aligned to 128 bytes, so the header and both index
        // lines lie inside it, aligned for their atomics. The region's contract
        // (`Region`) lets us access it; nothing in this process holds a
        // reference into it (we hold both claims), and another process's
        // concurrent accesses only race with our atomic stores.
        unsafe {
            header_atomics(base).store(&self.header());
            let prod = &*base.add(PRODUCER_OFFSET).cast::<ProducerLine>();
            prod.write.store(0, Ordering::Relaxed);
            prod.consumer_sleep.store(0, Ordering::Relaxed);
            let cons = &*base.add(CONSUMER_OFFSET).cast::<ConsumerLine>();
            cons.read.store(0, Ordering::Relaxed);
            cons.producer_sleep.store(0, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        Ok((
            self.writer_claimed(region.clone(), writer)?,
            self.reader_claimed(region, reader)?,
        ))
    }

    /// Attaches the producing end to a ring that was initialised in `region`
    /// (possibly by another process). The header is copied out and compared with
    /// this layout; indices are validated.
    ///
    /// Fails with [`Error::InvalidArgument`] while a writer of this region is
    /// attached in this process (see the [module docs](self)).
    pub fn writer<T: Pod>(&self, region: Arc<dyn Region>) -> Result<Writer<T>> {
        self.check_region::<T>(&*region)?;
        let claim = Claim::take(region.as_ptr(), End::Writer, self)?;
        self.writer_claimed(region, claim)
    }

    /// Attaches the consuming end, as [`writer`](Self::writer) does the producing one.
    pub fn reader<T: Pod>(&self, region: Arc<dyn Region>) -> Result<Reader<T>> {
        self.check_region::<T>(&*region)?;
        let claim = Claim::take(region.as_ptr(), End::Reader, self)?;
        self.reader_claimed(region, claim)
    }

    fn writer_claimed<T: Pod>(&self, region: Arc<dyn Region>, claim: Claim) -> Result<Writer<T>> {
        let shared = self.attach::<T>(region, claim)?;
        let write = shared.prod().write.load(Ordering::Acquire);
        let read = shared.cons().read.load(Ordering::Acquire);
        check_attach(read, write, shared.capacity)?;
        Ok(Writer {
            shared,
            write,
            read_cache: read,
            poisoned: false,
            notify: None,
            sleep: SleepState::default(),
        })
    }

    fn reader_claimed<T: Pod>(&self, region: Arc<dyn Region>, claim: Claim) -> Result<Reader<T>> {
        let shared = self.attach::<T>(region, claim)?;
        let read = shared.cons().read.load(Ordering::Acquire);
        let write = shared.prod().write.load(Ordering::Acquire);
        check_attach(read, write, shared.capacity)?;
        Ok(Reader {
            shared,
            read,
            write_cache: write,
            poisoned: false,
            notify: None,
            sleep: SleepState::default(),
        })
    }

    fn check_region<T: Pod>(&self, region: &dyn Region) -> Result<()> {
        if self.tag.size as usize != size_of::<T>() || self.tag.align as usize != align_of::<T>() {
            return Err(Error::InvalidArgument(
                "layout was made for another element type".into(),
            ));
        }
        let base = region.as_ptr();
        if base.is_null() || (base as usize) % LINE.max(self.tag.align as usize) != 0 {
            return Err(Error::InvalidArgument(
                "region is not aligned to 128 bytes and the element alignment".into(),
            ));
        }
        if region.len() < self.total_size {
            return Err(Error::BadSegment(format!(
                "region has {} bytes, ring needs {}",
                region.len(),
                self.total_size
            )));
        }
        Ok(())
    }

    /// Pointers into a region `check_region` accepted, after comparing its
    /// header with ours.
    fn attach<T: Pod>(&self, region: Arc<dyn Region>, claim: Claim) -> Result<Shared<T>> {
        let base = region.as_ptr();
        // SAFETY: the region is at least HEADER_SIZE bytes and 128-aligned
        // (check_region, run by every caller). Atomic loads: a concurrent
        // hostile write can only give us garbage fields, which we compare below.
        let found = unsafe { header_atomics(base).load() };
        let want = self.header();
        if found != want {
            return Err(Error::HeaderMismatch(describe_mismatch(&found, &want)));
        }
        // SAFETY: offsets are within the checked region and suitably aligned.
        let (prod, cons, slots) = unsafe {
            (
                NonNull::new_unchecked(base.add(PRODUCER_OFFSET).cast::<ProducerLine>()),
                NonNull::new_unchecked(base.add(CONSUMER_OFFSET).cast::<ConsumerLine>()),
                NonNull::new_unchecked(base.add(self.slots_offset).cast::<T>()),
            )
        };
        Ok(Shared {
            prod,
            cons,
            slots,
            capacity: self.capacity as u64,
            mask: self.capacity as u64 - 1,
            _claim: Some(claim),
            _keep: Arc::new(region),
            _marker: PhantomData,
        })
    }
}

/// The header as atomics, for reading and writing it in shared memory (same
/// layout as [`Header`]). `std`'s atomics even under loom: the model never
/// touches a header.
#[repr(C)]
struct HeaderAtomics {
    magic: StdAtomicU64,
    version: StdAtomicU32,
    elem_size: StdAtomicU32,
    elem_align: StdAtomicU32,
    reserved: StdAtomicU32,
    capacity: StdAtomicU64,
    name_hash: StdAtomicU64,
}

const _: () = {
    assert!(size_of::<HeaderAtomics>() == size_of::<Header>());
    assert!(align_of::<HeaderAtomics>() <= LINE);
};

/// # Safety
/// `base` must be valid for reads and writes of `size_of::<Header>()` bytes,
/// 8-aligned, for `'a`, and accessed by this process only through atomics
/// meanwhile.
unsafe fn header_atomics<'a>(base: *mut u8) -> &'a HeaderAtomics {
    // SAFETY: the caller's contract; atomics may alias memory that another
    // process writes (they are `UnsafeCell`s).
    unsafe { &*base.cast::<HeaderAtomics>() }
}

impl HeaderAtomics {
    fn store(&self, h: &Header) {
        let r = StdOrdering::Relaxed;
        self.magic.store(h.magic, r);
        self.version.store(h.version, r);
        self.elem_size.store(h.elem_size, r);
        self.elem_align.store(h.elem_align, r);
        self.reserved.store(h.reserved, r);
        self.capacity.store(h.capacity, r);
        self.name_hash.store(h.name_hash, r);
    }

    fn load(&self) -> Header {
        let a = StdOrdering::Acquire;
        Header {
            magic: self.magic.load(a),
            version: self.version.load(a),
            elem_size: self.elem_size.load(a),
            elem_align: self.elem_align.load(a),
            reserved: self.reserved.load(a),
            capacity: self.capacity.load(a),
            name_hash: self.name_hash.load(a),
        }
    }
}

/// The two ends of a ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Writer,
    Reader,
}

/// Ends attached in this process: the address of their region, which end,
/// and the layout they attached with.
static CLAIMS: Mutex<Vec<(usize, End, RingLayout)>> = Mutex::new(Vec::new());

/// This process's claim on one end of the ring at one address: while it
/// lives, no other end of that kind attaches there, and the other end only
/// with the same layout (see the module docs).
#[derive(Debug)]
struct Claim {
    base: usize,
    end: End,
}

impl Claim {
    fn take(base: *mut u8, end: End, layout: &RingLayout) -> Result<Self> {
        let base = base as usize;
        let mut claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        for (b, e, l) in claims.iter() {
            if *b != base {
                continue;
            }
            if *e == end {
                return Err(Error::InvalidArgument(format!(
                    "the ring's {} is already attached in this process",
                    match end {
                        End::Writer => "writer",
                        End::Reader => "reader",
                    }
                )));
            }
            if l != layout {
                // Two geometries over one memory: one end's slots would overlap
                // the other's in ways the indices do not order.
                return Err(Error::InvalidArgument(
                    "the other end of this region is attached in this process with another layout"
                        .into(),
                ));
            }
        }
        claims.push((base, end, *layout));
        Ok(Claim { base, end })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut claims = CLAIMS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = claims
            .iter()
            .position(|&(b, e, _)| (b, e) == (self.base, self.end))
        {
            claims.swap_remove(i);
        }
    }
}

fn describe_mismatch(found: &Header, want: &Header) -> String {
    if found.magic != want.magic {
        format!("bad magic {:#018x}", found.magic)
    } else if found.version != want.version {
        format!(
            "layout version {} (expected {})",
            found.version, want.version
        )
    } else if found.elem_size != want.elem_size || found.elem_align != want.elem_align {
        format!(
            "element size/align {}/{} (expected {}/{})",
            found.elem_size, found.elem_align, want.elem_size, want.elem_align
        )
    } else if found.name_hash != want.name_hash {
        "type name differs".to_string()
    } else if found.capacity != want.capacity {
        format!("capacity {} (expected {})", found.capacity, want.capacity)
    } else {
        "reserved field set".to_string()
    }
}

/// Largest index an end accepts when it attaches. A ring starts at 0 and our
/// own index only grows by what we move, so this bound (2^62 items: a century
/// at 10^9 items/s) keeps every later `index + n` from overflowing, whatever
/// the peer wrote before we attached (found by the `ring_header` fuzz target).
const MAX_ATTACH_INDEX: u64 = 1 << 62;

/// The indices found at attach: consistent, and far from overflowing.
fn check_attach(read: u64, write: u64, capacity: u64) -> Result<()> {
    if write > MAX_ATTACH_INDEX {
        return Err(Error::Corrupt("index too large at attach"));
    }
    check_distance(read, write, capacity, "indices inconsistent at attach")
}

/// `read <= write <= read + capacity`, or the peer has corrupted an index.
#[inline]
fn check_distance(read: u64, write: u64, capacity: u64, what: &'static str) -> Result<()> {
    if write < read || write - read > capacity {
        Err(Error::Corrupt(what))
    } else {
        Ok(())
    }
}

/// Memory that holds a ring: a heap block in one process, or a mapping of a
/// shared segment.
///
/// # Safety
/// `as_ptr()` must return the same pointer for the lifetime of the value, valid
/// for reads and writes of `len()` bytes until the value is dropped.
///
/// Another process may write the memory at any time (the ring only accesses
/// it with atomics and volatile copies). Code in this process that uses the
/// pointer while a ring is attached must do the same: no references into the
/// region, no plain reads or writes. The memory must not overlap that of any
/// other `Region` alive in this process unless both start at the same address
/// (the rings' claims tell those apart; see the [module docs](self)).
pub unsafe trait Region: Send + Sync + 'static {
    /// Start of the region.
    fn as_ptr(&self) -> *mut u8;
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// `true` if the region has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A zeroed, page-aligned heap block: the region of an in-process ring.
#[derive(Debug)]
pub struct HeapRegion {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl HeapRegion {
    /// Allocates `len` zeroed bytes aligned to a page.
    ///
    /// # Panics
    /// If `len` is zero or allocation fails (as `Vec` does).
    pub fn new(len: usize) -> Self {
        let layout = match Layout::from_size_align(len.max(1), MAX_ALIGN) {
            Ok(l) => l,
            Err(_) => panic!("HeapRegion of {len} bytes is too large"),
        };
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else {
            alloc::handle_alloc_error(layout)
        };
        HeapRegion { ptr, layout }
    }
}

impl Drop for HeapRegion {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) };
    }
}

// SAFETY: a plain heap block; all concurrent access goes through the ring's
// atomics and its single-producer single-consumer slot protocol.
unsafe impl Send for HeapRegion {}
// SAFETY: as above.
unsafe impl Sync for HeapRegion {}

// SAFETY: the pointer is fixed at construction and valid for `layout.size()` bytes
// until drop.
unsafe impl Region for HeapRegion {
    fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
    fn len(&self) -> usize {
        self.layout.size()
    }
}

/// Called by one end of the ring after it made progress while the other end had
/// announced that it sleeps. The channel layer implements it with an eventfd or a
/// pipe; an in-process user may implement it with a thread unpark.
pub trait Notify: Send + Sync {
    /// Wakes the sleeping side. Must not block; failures are ignored (a full
    /// eventfd or pipe means a wake-up is already pending).
    fn notify(&self);
}

/// Pointers into the shared region, valid while `_keep` lives.
struct Shared<T> {
    prod: NonNull<ProducerLine>,
    cons: NonNull<ConsumerLine>,
    slots: NonNull<T>,
    capacity: u64,
    mask: u64,
    /// This end's claim (`None` only in the loom model); released before the
    /// memory can be freed.
    _claim: Option<Claim>,
    /// Keeps the memory behind the pointers alive.
    _keep: Arc<dyn Send + Sync>,
    _marker: PhantomData<T>,
}

impl<T> Shared<T> {
    #[inline]
    fn prod(&self) -> &ProducerLine {
        // SAFETY: points into the memory kept alive by `_keep`; only atomics inside.
        unsafe { self.prod.as_ref() }
    }
    #[inline]
    fn cons(&self) -> &ConsumerLine {
        // SAFETY: as for `prod`.
        unsafe { self.cons.as_ref() }
    }
    #[inline]
    fn slot(&self, index: u64) -> *mut T {
        // SAFETY: `index & mask < capacity`, and the slots array holds `capacity`
        // elements inside the region.
        unsafe { self.slots.as_ptr().add((index & self.mask) as usize) }
    }
    /// The two runs of slots `[start, start + n)` covers, wrapping at the end.
    #[inline]
    fn runs(&self, start: u64, n: usize) -> (*mut T, usize, *mut T, usize) {
        let first_idx = (start & self.mask) as usize;
        let first_len = n.min(self.capacity as usize - first_idx);
        (
            self.slot(start),
            first_len,
            self.slots.as_ptr(),
            n - first_len,
        )
    }
}

/// The widest of `u64`, `u32`, `u16` and `u8` that divides both the size and
/// the alignment of `T`: every item in the slots starts and ends on a multiple
/// of it, so a run of items can be copied in units of it without tearing an
/// aligned access.
struct Unit<T>(PhantomData<T>);

impl<T> Unit<T> {
    const BYTES: usize = {
        let (size, align) = (size_of::<T>(), align_of::<T>());
        let mut w = 8;
        while w > 1 && (size % w != 0 || align % w != 0) {
            w /= 2;
        }
        w
    };
}

/// Copies `n` items from the slots at `src` into local memory at `dst` with
/// volatile loads: each byte of the shared memory is read exactly once, and
/// the compiler may neither re-read it nor assume it stays put. The loads are
/// plain moves: units of [`Unit`] up to the first 8-aligned byte, then (on
/// x86_64) 16-byte SSE2 loads from the first 16-aligned byte, 8-byte words,
/// and units again at the end. One `u64` is one 8-byte `mov`; a run of them
/// copies at about `memcpy`'s speed (measured single-threaded in L1: 2.1-2.4
/// vs 2.6 G items/s for 64-item `push_slice` + `pop_slice`, equal at 4096).
///
/// # Safety
/// `src` must be valid for reads of `n` items and aligned for `T` (another
/// process may write them meanwhile); `dst` valid for writes of `n` items and
/// not shared with any other process.
#[inline(always)]
unsafe fn load_items<T: Pod>(src: *const T, dst: *mut T, n: usize) {
    let bytes = n * size_of::<T>();
    #[cfg(loom)]
    model::touch(src.cast(), bytes, false);
    let (s, d) = (src.cast::<u8>(), dst.cast::<u8>());
    // SAFETY: forwarded from the caller; `Unit::<T>::BYTES` divides the size and
    // alignment of `T`, so `s` is aligned for the unit and `bytes` a multiple of it.
    unsafe {
        match Unit::<T>::BYTES {
            8 => load_bytes::<u64>(s, d, bytes),
            4 => load_bytes::<u32>(s, d, bytes),
            2 => load_bytes::<u16>(s, d, bytes),
            _ => load_bytes::<u8>(s, d, bytes),
        }
    }
}

/// Copies `n` items from local memory at `src` into the slots at `dst` with
/// volatile stores (the mirror image of [`load_items`]).
///
/// # Safety
/// `dst` must be valid for writes of `n` items and aligned for `T` (another
/// process may access them meanwhile); `src` valid for reads of `n` items.
#[inline(always)]
unsafe fn store_items<T: Pod>(dst: *mut T, src: *const T, n: usize) {
    let bytes = n * size_of::<T>();
    #[cfg(loom)]
    model::touch(dst.cast(), bytes, true);
    let (d, s) = (dst.cast::<u8>(), src.cast::<u8>());
    // SAFETY: as in `load_items`.
    unsafe {
        match Unit::<T>::BYTES {
            8 => store_bytes::<u64>(d, s, bytes),
            4 => store_bytes::<u32>(d, s, bytes),
            2 => store_bytes::<u16>(d, s, bytes),
            _ => store_bytes::<u8>(d, s, bytes),
        }
    }
}

/// # Safety
/// `s` (shared) valid for reads of `bytes` bytes and aligned for `U`; `d`
/// (local) valid for writes of `bytes` bytes; `bytes` a multiple of the size
/// of `U`, which is 1, 2, 4 or 8.
#[inline(always)]
unsafe fn load_bytes<U: Copy>(s: *const u8, d: *mut u8, bytes: usize) {
    let u = size_of::<U>();
    let mut i = 0;
    // SAFETY: every access lies in `[0, bytes)` of both buffers (`i` steps by
    // the width it accesses and stops before `bytes`). Shared loads are aligned:
    // `s + i` is a multiple of `u` throughout, of 8 from the first 8-aligned
    // byte on (`bytes - i` stays a multiple of `u`, so the unit loop never
    // overruns), of 16 in the vector loop. Local stores are unaligned.
    unsafe {
        if u < 8 {
            let head = ((8 - (s as usize) % 8) % 8).min(bytes);
            while i < head {
                let v = ptr::read_volatile(s.add(i).cast::<U>());
                ptr::write_unaligned(d.add(i).cast::<U>(), v);
                i += u;
            }
        }
        // `s + i` is 8-aligned here (or `i == bytes`).
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::__m128i;
            if (s as usize + i) % 16 != 0 && i + 8 <= bytes {
                let v = ptr::read_volatile(s.add(i).cast::<u64>());
                ptr::write_unaligned(d.add(i).cast::<u64>(), v);
                i += 8;
            }
            while i + 16 <= bytes {
                let v = ptr::read_volatile(s.add(i).cast::<__m128i>());
                ptr::write_unaligned(d.add(i).cast::<__m128i>(), v);
                i += 16;
            }
        }
        while i + 8 <= bytes {
            let v = ptr::read_volatile(s.add(i).cast::<u64>());
            ptr::write_unaligned(d.add(i).cast::<u64>(), v);
            i += 8;
        }
        while i < bytes {
            let v = ptr::read_volatile(s.add(i).cast::<U>());
            ptr::write_unaligned(d.add(i).cast::<U>(), v);
            i += u;
        }
    }
}

/// # Safety
/// `d` (shared) valid for writes of `bytes` bytes and aligned for `U`; `s`
/// (local) valid for reads of `bytes` initialised bytes; `bytes` a multiple of
/// the size of `U`, which is 1, 2, 4 or 8.
#[inline(always)]
unsafe fn store_bytes<U: Copy>(d: *mut u8, s: *const u8, bytes: usize) {
    let u = size_of::<U>();
    let mut i = 0;
    // SAFETY: as in `load_bytes`, with the roles of the buffers swapped. The
    // local bytes are initialised: they are the bytes of `Pod` items, which
    // have no padding.
    unsafe {
        if u < 8 {
            let head = ((8 - (d as usize) % 8) % 8).min(bytes);
            while i < head {
                let v = ptr::read_unaligned(s.add(i).cast::<U>());
                ptr::write_volatile(d.add(i).cast::<U>(), v);
                i += u;
            }
        }
        // `d + i` is 8-aligned here (or `i == bytes`).
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::__m128i;
            if (d as usize + i) % 16 != 0 && i + 8 <= bytes {
                let v = ptr::read_unaligned(s.add(i).cast::<u64>());
                ptr::write_volatile(d.add(i).cast::<u64>(), v);
                i += 8;
            }
            while i + 16 <= bytes {
                let v = ptr::read_unaligned(s.add(i).cast::<__m128i>());
                ptr::write_volatile(d.add(i).cast::<__m128i>(), v);
                i += 16;
            }
        }
        while i + 8 <= bytes {
            let v = ptr::read_unaligned(s.add(i).cast::<u64>());
            ptr::write_volatile(d.add(i).cast::<u64>(), v);
            i += 8;
        }
        while i < bytes {
            let v = ptr::read_unaligned(s.add(i).cast::<U>());
            ptr::write_volatile(d.add(i).cast::<U>(), v);
            i += u;
        }
    }
}

// SAFETY: the ring is single-producer single-consumer: a `Writer` or `Reader` is
// owned by one thread at a time and the region it points into is `Send + Sync`.
unsafe impl<T: Send> Send for Writer<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Send for Reader<T> {}

/// The producing end of a ring.
pub struct Writer<T> {
    shared: Shared<T>,
    write: u64,
    read_cache: u64,
    poisoned: bool,
    notify: Option<Arc<dyn Notify>>,
    sleep: SleepState,
}

/// The consuming end of a ring.
pub struct Reader<T> {
    shared: Shared<T>,
    read: u64,
    write_cache: u64,
    poisoned: bool,
    notify: Option<Arc<dyn Notify>>,
    sleep: SleepState,
}

impl<T> std::fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("capacity", &self.shared.capacity)
            .field("write", &self.write)
            .field("read_cache", &self.read_cache)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<T> std::fmt::Debug for Reader<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("capacity", &self.shared.capacity)
            .field("read", &self.read)
            .field("write_cache", &self.write_cache)
            .field("poisoned", &self.poisoned)
            .finish()
    }
}

impl<T: Pod> Writer<T> {
    /// Sets the hook called when a commit finds the consumer asleep.
    pub fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.notify = notify;
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity as usize
    }

    /// `true` once the peer corrupted an index; every call then fails.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Free slots right now (reads the consumer's index).
    pub fn slots(&mut self) -> Result<usize> {
        self.refresh()?;
        Ok((self.shared.capacity - (self.write - self.read_cache)) as usize)
    }

    #[inline]
    fn refresh(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Corrupt("endpoint poisoned by an earlier corruption"));
        }
        let read = self.shared.cons().read.load(Ordering::Acquire);
        // The consumer's index may only move forward, up to our write index.
        if read < self.read_cache || read > self.write {
            self.poisoned = true;
            return Err(Error::Corrupt("consumer index out of range"));
        }
        self.read_cache = read;
        Ok(())
    }

    #[inline]
    fn free(&mut self, want: usize) -> Result<usize> {
        if self.poisoned {
            return Err(Error::Corrupt("endpoint poisoned by an earlier corruption"));
        }
        let free = (self.shared.capacity - (self.write - self.read_cache)) as usize;
        if free >= want {
            return Ok(free);
        }
        self.refresh()?;
        Ok((self.shared.capacity - (self.write - self.read_cache)) as usize)
    }

    /// Up to `max` free slots to fill (fewer if the ring has fewer free;
    /// possibly none), by copies ([`WriteChunk::write`],
    /// [`WriteChunk::fill_from_iter`]) or, for a trusted consumer, in place
    /// ([`WriteChunk::as_mut_slices`]). Nothing is published until
    /// [`WriteChunk::commit`].
    #[inline]
    pub fn write_chunk(&mut self, max: usize) -> Result<WriteChunk<'_, T>> {
        let n = self.free(max)?.min(max);
        Ok(WriteChunk { writer: self, n })
    }

    /// Appends one item, or fails with [`Error::Full`].
    #[inline]
    pub fn push(&mut self, value: T) -> Result<()> {
        if self.free(1)? == 0 {
            return Err(Error::Full);
        }
        // SAFETY: the slot at `write` lies in the slots array and is free
        // (write - read < capacity): an honest consumer does not read it until
        // we publish it below; a hostile one racing us sees some bytes of a
        // `Pod` item. A volatile store from a local value: no reference into
        // the slot.
        unsafe { store_items(self.shared.slot(self.write), &value, 1) };
        self.publish(1);
        Ok(())
    }

    /// Appends as many items of `src` as fit; returns how many. The items are
    /// copied into the slots with volatile stores.
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize> {
        let n = self.free(src.len())?.min(src.len());
        let (p0, n0, p1, n1) = self.shared.runs(self.write, n);
        // SAFETY: the `n` slots from `write` are free and lie in the slots array
        // as two runs of `n0 + n1 == n` items; `src` holds at least `n` items.
        unsafe {
            store_items(p0, src.as_ptr(), n0);
            store_items(p1, src.as_ptr().add(n0), n1);
        }
        if n > 0 {
            self.publish(n);
        }
        Ok(n)
    }

    /// Publishes `n` filled slots and wakes the consumer if it sleeps.
    #[inline]
    fn publish(&mut self, n: usize) {
        self.write += n as u64;
        let prod = self.shared.prod();
        prod.write.store(self.write, Ordering::Release);
        // Pairs with the fence in `Reader::prepare_sleep`: either the consumer sees
        // our new index, or we see its sleep (store-buffer litmus, fenced both ways).
        fence(Ordering::SeqCst);
        let seq = prod.consumer_sleep.load(Ordering::Relaxed);
        if self.sleep.should_wake(seq) {
            if let Some(n) = &self.notify {
                n.notify();
            }
        }
    }

    /// Announces that the producer is about to sleep because the ring is full.
    /// Returns `Ok(true)` if it is still full after the announcement (go to sleep:
    /// the consumer will notify after its next release), `Ok(false)` if space
    /// appeared meanwhile (the announcement is withdrawn; do not sleep).
    ///
    /// Every call announces a new sleep, so calling it again after a wake-up
    /// without [`cancel_sleep`](Self::cancel_sleep) is safe (event loops do).
    pub fn prepare_sleep(&mut self) -> Result<bool> {
        let seq = self.sleep.begin();
        self.shared
            .cons()
            .producer_sleep
            .store(seq, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.free(1)? > 0 {
            self.cancel_sleep();
            return Ok(false);
        }
        Ok(true)
    }

    /// Withdraws the sleep announcement (after waking up, for whatever reason).
    pub fn cancel_sleep(&mut self) {
        if let Some(seq) = self.sleep.end() {
            self.shared
                .cons()
                .producer_sleep
                .store(seq, Ordering::Relaxed);
        }
    }
}

impl<T: Pod> Reader<T> {
    /// Sets the hook called when a release finds the producer asleep.
    pub fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.notify = notify;
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity as usize
    }

    /// `true` once the peer corrupted an index; every call then fails.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Items ready to read right now (reads the producer's index).
    pub fn slots(&mut self) -> Result<usize> {
        self.refresh()?;
        Ok((self.write_cache - self.read) as usize)
    }

    #[inline]
    fn refresh(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Corrupt("endpoint poisoned by an earlier corruption"));
        }
        let write = self.shared.prod().write.load(Ordering::Acquire);
        // The producer's index may only move forward, at most `capacity` past ours.
        if write < self.write_cache || write - self.read > self.shared.capacity {
            self.poisoned = true;
            return Err(Error::Corrupt("producer index out of range"));
        }
        self.write_cache = write;
        Ok(())
    }

    #[inline]
    fn available(&mut self, want: usize) -> Result<usize> {
        if self.poisoned {
            return Err(Error::Corrupt("endpoint poisoned by an earlier corruption"));
        }
        let ready = (self.write_cache - self.read) as usize;
        if ready >= want {
            return Ok(ready);
        }
        self.refresh()?;
        Ok((self.write_cache - self.read) as usize)
    }

    /// Up to `max` items to read (fewer if fewer are ready; possibly none), by
    /// copies ([`ReadChunk::read`], [`ReadChunk::get`], [`ReadChunk::iter`])
    /// or, from a trusted producer, in place ([`ReadChunk::as_slices`]). They
    /// stay in the ring until [`ReadChunk::release`].
    #[inline]
    pub fn read_chunk(&mut self, max: usize) -> Result<ReadChunk<'_, T>> {
        let n = self.available(max)?.min(max);
        Ok(ReadChunk { reader: self, n })
    }

    /// Removes and returns the oldest item, or fails with [`Error::Empty`].
    #[inline]
    pub fn pop(&mut self) -> Result<T> {
        if self.available(1)? == 0 {
            return Err(Error::Empty);
        }
        let mut value = T::zeroed();
        // SAFETY: the slot at `read` was published by the producer (read < write,
        // validated) and lies inside the slots array. A volatile copy into a
        // local: whatever bytes a hostile producer writes concurrently, `T: Pod`
        // makes them a valid `T`, and the copy cannot change afterwards.
        unsafe { load_items(self.shared.slot(self.read), &mut value, 1) };
        self.retire(1);
        Ok(value)
    }

    /// Removes up to `dst.len()` items into `dst`; returns how many. The items
    /// are copied out of the slots with volatile loads.
    #[inline]
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize> {
        let n = self.available(dst.len())?.min(dst.len());
        let (p0, n0, p1, n1) = self.shared.runs(self.read, n);
        // SAFETY: the `n` items from `read` were published (validated) and lie in
        // the slots array as two runs of `n0 + n1 == n` items; `dst` has room
        // for `n` and is ours alone.
        unsafe {
            load_items(p0, dst.as_mut_ptr(), n0);
            load_items(p1, dst.as_mut_ptr().add(n0), n1);
        }
        if n > 0 {
            self.retire(n);
        }
        Ok(n)
    }

    /// Frees `n` read slots and wakes the producer if it sleeps.
    #[inline]
    fn retire(&mut self, n: usize) {
        self.read += n as u64;
        let cons = self.shared.cons();
        cons.read.store(self.read, Ordering::Release);
        // Pairs with the fence in `Writer::prepare_sleep`.
        fence(Ordering::SeqCst);
        let seq = cons.producer_sleep.load(Ordering::Relaxed);
        if self.sleep.should_wake(seq) {
            if let Some(n) = &self.notify {
                n.notify();
            }
        }
    }

    /// Announces that the consumer is about to sleep because the ring is empty.
    /// Returns `Ok(true)` if it is still empty after the announcement (go to
    /// sleep: the producer will notify after its next commit), `Ok(false)` if items
    /// arrived meanwhile (the announcement is withdrawn; do not sleep).
    ///
    /// Every call announces a new sleep, so calling it again after a wake-up
    /// without [`cancel_sleep`](Self::cancel_sleep) is safe (event loops do).
    pub fn prepare_sleep(&mut self) -> Result<bool> {
        let seq = self.sleep.begin();
        self.shared
            .prod()
            .consumer_sleep
            .store(seq, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.available(1)? > 0 {
            self.cancel_sleep();
            return Ok(false);
        }
        Ok(true)
    }

    /// Withdraws the sleep announcement (after waking up, for whatever reason).
    pub fn cancel_sleep(&mut self) {
        if let Some(seq) = self.sleep.end() {
            self.shared
                .prod()
                .consumer_sleep
                .store(seq, Ordering::Relaxed);
        }
    }
}

/// Free slots of a ring handed out by [`Writer::write_chunk`].
///
/// Fill them with copies ([`write`](Self::write), [`set`](Self::set),
/// [`fill_from_iter`](Self::fill_from_iter)), then publish them with
/// [`commit`](Self::commit). Dropping the chunk without committing publishes
/// nothing.
#[derive(Debug)]
pub struct WriteChunk<'a, T: Pod> {
    writer: &'a mut Writer<T>,
    n: usize,
}

impl<T: Pod> WriteChunk<'_, T> {
    /// Number of slots in the chunk.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` if the chunk has no slots (the ring is full).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies `src` into the slots `offset..offset + src.len()` of the chunk
    /// (volatile stores; no reference into the ring is made).
    ///
    /// # Panics
    /// If `offset + src.len() > self.len()` (a bug in the caller, not in the peer).
    #[inline]
    pub fn write(&mut self, offset: usize, src: &[T]) {
        assert!(
            offset <= self.n && src.len() <= self.n - offset,
            "write of {} items at {offset} into a chunk of {}",
            src.len(),
            self.n
        );
        let start = self.writer.write + offset as u64;
        let (p0, n0, p1, n1) = self.writer.shared.runs(start, src.len());
        // SAFETY: the chunk's `n` slots from `write` are free and inside the slots
        // array; the checked range is a part of them, as two runs of
        // `n0 + n1 == src.len()` items.
        unsafe {
            store_items(p0, src.as_ptr(), n0);
            store_items(p1, src.as_ptr().add(n0), n1);
        }
    }

    /// Copies `value` into slot `i` of the chunk.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn set(&mut self, i: usize, value: T) {
        self.write(i, std::slice::from_ref(&value));
    }

    /// Fills the slots from the first on with the items of `iter`, until the
    /// chunk or the iterator ends; returns how many were written (commit them
    /// with [`commit`](Self::commit)).
    #[inline]
    pub fn fill_from_iter<I: IntoIterator<Item = T>>(&mut self, iter: I) -> usize {
        let (p0, n0, p1, n1) = self.writer.shared.runs(self.writer.write, self.n);
        let mut iter = iter.into_iter();
        let mut done = 0;
        for (p, len) in [(p0, n0), (p1, n1)] {
            for j in 0..len {
                let Some(value) = iter.next() else {
                    return done;
                };
                // SAFETY: slot `j` of a run of `len` free slots inside the array.
                unsafe { store_items(p.add(j), &value, 1) };
                done += 1;
            }
        }
        done
    }

    /// The free slots, in place, as at most two slices (the second is
    /// non-empty when the chunk wraps around the end of the ring). They hold
    /// stale data.
    ///
    /// # Safety
    /// Nothing but these slices may read or write the chunk's slots while
    /// they live: the consumer must be in this process, or a process trusted
    /// to follow the protocol (it reads slots only after they are committed
    /// and never writes them). A hostile consumer that touches them makes this
    /// a data race, which is undefined behaviour. Use the copying methods
    /// otherwise.
    #[inline]
    pub unsafe fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let (p0, n0, p1, n1) = self.writer.shared.runs(self.writer.write, self.n);
        // SAFETY: the `n` slots from `write` are free and inside the slots array
        // as two disjoint runs; the `&mut self` borrow makes them exclusive on
        // this side, and the caller promises the consumer does not touch them.
        unsafe {
            (
                std::slice::from_raw_parts_mut(p0, n0),
                std::slice::from_raw_parts_mut(p1, n1),
            )
        }
    }

    /// Publishes the first `k` slots of the chunk.
    ///
    /// # Panics
    /// If `k > self.len()` (a bug in the caller, not in the peer).
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "commit({k}) of a chunk of {}", self.n);
        if k > 0 {
            self.writer.publish(k);
        }
    }

    /// Publishes every slot of the chunk.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

/// Ready items of a ring handed out by [`Reader::read_chunk`].
///
/// Read them as copies ([`read`](Self::read), [`get`](Self::get),
/// [`iter`](Self::iter)): a hostile producer may rewrite a published slot at
/// any time, so two copies of one item may differ, but a copy never changes.
/// Dropping the chunk without releasing leaves the items in the ring.
#[derive(Debug)]
pub struct ReadChunk<'a, T: Pod> {
    reader: &'a mut Reader<T>,
    n: usize,
}

impl<T: Pod> ReadChunk<'_, T> {
    /// Number of items in the chunk.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` if the chunk has no items (the ring is empty).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies the items `offset..offset + dst.len()` of the chunk into `dst`
    /// (volatile loads; no reference into the ring is made).
    ///
    /// # Panics
    /// If `offset + dst.len() > self.len()` (a bug in the caller, not in the peer).
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [T]) {
        assert!(
            offset <= self.n && dst.len() <= self.n - offset,
            "read of {} items at {offset} from a chunk of {}",
            dst.len(),
            self.n
        );
        let start = self.reader.read + offset as u64;
        let (p0, n0, p1, n1) = self.reader.shared.runs(start, dst.len());
        // SAFETY: the chunk's `n` items from `read` were published (validated) and
        // lie in the slots array; the checked range is a part of them, as two runs
        // of `n0 + n1 == dst.len()` items. `T: Pod`: any bytes are a valid `T`.
        unsafe {
            load_items(p0, dst.as_mut_ptr(), n0);
            load_items(p1, dst.as_mut_ptr().add(n0), n1);
        }
    }

    /// A copy of item `i` of the chunk.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> T {
        let mut value = T::zeroed();
        self.read(i, std::slice::from_mut(&mut value));
        value
    }

    /// Copies of the items, oldest first.
    #[inline]
    pub fn iter(&self) -> ReadChunkIter<'_, T> {
        let (p0, n0, p1, n1) = self.reader.shared.runs(self.reader.read, self.n);
        ReadChunkIter {
            ptr: p0,
            left: n0,
            next_ptr: p1,
            next_left: n1,
            _chunk: PhantomData,
        }
    }

    /// The items, in place, as at most two slices (oldest first).
    ///
    /// # Safety
    /// Nothing may write the chunk's slots while the slices live: the producer
    /// must be in this process, or a process trusted to follow the protocol
    /// (it never writes a slot between committing it and our release). A
    /// hostile producer that writes them makes this a data race, which is
    /// undefined behaviour (and a value checked once may read differently the
    /// next time). Use the copying methods otherwise.
    #[inline]
    pub unsafe fn as_slices(&self) -> (&[T], &[T]) {
        let (p0, n0, p1, n1) = self.reader.shared.runs(self.reader.read, self.n);
        // SAFETY: the `n` items from `read` were published (validated against the
        // producer's index) and lie inside the slots array; the caller promises
        // the producer does not write them while the slices live.
        unsafe {
            (
                std::slice::from_raw_parts(p0, n0),
                std::slice::from_raw_parts(p1, n1),
            )
        }
    }

    /// Frees the first `k` items of the chunk for the producer.
    ///
    /// # Panics
    /// If `k > self.len()` (a bug in the caller, not in the peer).
    pub fn release(self, k: usize) {
        assert!(k <= self.n, "release({k}) of a chunk of {}", self.n);
        if k > 0 {
            self.reader.retire(k);
        }
    }

    /// Frees every item of the chunk.
    pub fn release_all(self) {
        let n = self.n;
        self.release(n);
    }
}

/// Copies of the items of a [`ReadChunk`], oldest first (see
/// [`ReadChunk::iter`]).
#[derive(Debug)]
pub struct ReadChunkIter<'a, T: Pod> {
    /// Next item of the current run, and how many are left in it.
    ptr: *mut T,
    left: usize,
    /// The run after it (the start of the slots array when the chunk wraps).
    next_ptr: *mut T,
    next_left: usize,
    _chunk: PhantomData<&'a ReadChunk<'a, T>>,
}

impl<T: Pod> Iterator for ReadChunkIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            if self.next_left == 0 {
                return None;
            }
            self.ptr = self.next_ptr;
            self.left = std::mem::take(&mut self.next_left);
        }
        let mut value = T::zeroed();
        // SAFETY: `ptr` is the next of `left > 0` published items of the borrowed
        // chunk, inside the slots array; the chunk (and so the reader) is
        // borrowed, so nothing releases them meanwhile.
        unsafe {
            load_items(self.ptr, &mut value, 1);
            self.ptr = self.ptr.add(1);
        }
        self.left -= 1;
        Some(value)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left + self.next_left;
        (n, Some(n))
    }
}

impl<T: Pod> ExactSizeIterator for ReadChunkIter<'_, T> {}

/// Building blocks for the loom model (`--cfg loom`): a ring whose index lines
/// are loom atomics owned by the model, and whose slots loom watches.
///
/// Loom sees atomics, not plain memory: a slot copied before its index was
/// published (a `Relaxed` where `Release` belongs) would still hold the right
/// value in the model, which runs its threads one at a time. So each slot of a
/// [`ModelRing`] has a shadow `loom::cell::UnsafeCell`, and every copy the
/// ring makes into or out of the slots (`load_items`, `store_items`: all the
/// copying methods, single items and chunks) is announced to it first. Loom
/// then fails the model if a write to a slot and a read or write of it by
/// the other thread are not ordered by the ring's own atomics.
#[cfg(loom)]
pub mod model {
    use super::*;
    use std::sync::Weak;

    /// Lines and slots of a ring allocated on the heap for the model.
    pub struct ModelRing {
        prod: Box<ProducerLine>,
        cons: Box<ConsumerLine>,
        slots: Box<[std::cell::UnsafeCell<u64>]>,
        /// One loom-tracked cell per slot (see the module docs).
        shadow: Box<[loom::cell::UnsafeCell<()>]>,
    }

    /// Live model rings, found by the address of their slots. A `std` mutex
    /// on purpose: it orders nothing in loom's eyes, so it cannot hide a
    /// missing `Release`/`Acquire` in the ring.
    static RINGS: Mutex<Vec<Weak<ModelRing>>> = Mutex::new(Vec::new());

    /// Tells loom that `bytes` bytes at `addr` are about to be read or
    /// written, if they lie in the slots of a live model ring (the ring only
    /// copies into or out of its slots).
    pub(super) fn touch(addr: *const u8, bytes: usize, write: bool) {
        if bytes == 0 {
            return;
        }
        let addr = addr as usize;
        let ring = {
            let rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
            rings.iter().filter_map(Weak::upgrade).find(|r| {
                let base = r.slots.as_ptr() as usize;
                addr >= base && addr < base + r.slots.len() * size_of::<u64>()
            })
        };
        let Some(ring) = ring else {
            return;
        };
        let base = ring.slots.as_ptr() as usize;
        let first = (addr - base) / size_of::<u64>();
        let last = (addr + bytes - 1 - base) / size_of::<u64>();
        for cell in &ring.shadow[first..=last] {
            if write {
                cell.with_mut(|_| ());
            } else {
                cell.with(|_| ());
            }
        }
    }

    // SAFETY: only atomics and slots accessed through the SPSC protocol.
    unsafe impl Send for ModelRing {}
    // SAFETY: as above.
    unsafe impl Sync for ModelRing {}

    impl ModelRing {
        /// A ring of `capacity` (a power of two) u64 slots.
        pub fn new(capacity: usize) -> Arc<Self> {
            let ring = Arc::new(ModelRing {
                prod: Box::new(ProducerLine {
                    write: AtomicU64::new(0),
                    consumer_sleep: AtomicU64::new(0),
                }),
                cons: Box::new(ConsumerLine {
                    read: AtomicU64::new(0),
                    producer_sleep: AtomicU64::new(0),
                }),
                slots: (0..capacity)
                    .map(|_| std::cell::UnsafeCell::new(0))
                    .collect(),
                shadow: (0..capacity)
                    .map(|_| loom::cell::UnsafeCell::new(()))
                    .collect(),
            });
            let mut rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
            rings.retain(|r| r.strong_count() > 0);
            rings.push(Arc::downgrade(&ring));
            ring
        }

        fn shared(self: &Arc<Self>) -> Shared<u64> {
            Shared {
                prod: NonNull::from(&*self.prod),
                cons: NonNull::from(&*self.cons),
                // Test-only model: a Vec's element pointer is never null.
                slots: NonNull::new(self.slots[0].get()).expect("non-null"),
                capacity: self.slots.len() as u64,
                mask: self.slots.len() as u64 - 1,
                _claim: None,
                _keep: self.clone(),
                _marker: PhantomData,
            }
        }

        /// Both ends over this ring (they keep it alive).
        pub fn ends(self: &Arc<Self>) -> (Writer<u64>, Reader<u64>) {
            (
                Writer {
                    shared: self.shared(),
                    write: 0,
                    read_cache: 0,
                    poisoned: false,
                    notify: None,
                    sleep: SleepState::default(),
                },
                Reader {
                    shared: self.shared(),
                    read: 0,
                    write_cache: 0,
                    poisoned: false,
                    notify: None,
                    sleep: SleepState::default(),
                },
            )
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests;
