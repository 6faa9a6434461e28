//! The ring's shared header and index lines: the constants of the layout,
//! the [`TypeTag`] both sides compare, the header at offset 0 (written once
//! by the creator with atomic stores, copied out with atomic loads by the
//! other side) and the two cache lines that hold the indices and sleep
//! words.

use std::mem::{align_of, size_of};
use std::sync::atomic::{
    AtomicU32 as StdAtomicU32, AtomicU64 as StdAtomicU64, Ordering as StdOrdering,
};

use crate::sync::AtomicU64;

/// Magic number at the start of every ring header: `b"SHMRING\0"` little-endian.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SHMRING\0");
/// Version of the shared-memory layout described in the [module docs](crate::ring).
pub const LAYOUT_VERSION: u32 = 1;
/// Largest capacity (in items) a ring may have.
pub const MAX_CAPACITY: usize = 1 << 32;
/// Largest size in bytes of a ring's region (header and slots).
pub const MAX_REGION_SIZE: usize = 1 << 40;
/// Largest element alignment supported (a page).
pub const MAX_ALIGN: usize = 4096;

pub(super) const LINE: usize = 128;
pub(super) const PRODUCER_OFFSET: usize = LINE;
pub(super) const CONSUMER_OFFSET: usize = 2 * LINE;
pub(super) const HEADER_SIZE: usize = 3 * LINE;

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
/// other side copies it out and compares it with its own [`RingLayout`](super::RingLayout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub(super) magic: u64,
    pub(super) version: u32,
    pub(super) elem_size: u32,
    pub(super) elem_align: u32,
    pub(super) reserved: u32,
    pub(super) capacity: u64,
    pub(super) name_hash: u64,
}

/// The producer's cache line. Every word has exactly one writer: the producer
/// writes `write`; the consumer writes `consumer_sleep`, its sleep sequence (odd
/// while it announces a sleep, a new odd value for every sleep), which the
/// producer only reads, right after each commit, and `consumer_closed`
/// (non-zero once the consumer dropped its end: it closed rather than died),
/// which the producer reads only once the consumer is gone.
#[repr(C)]
pub(crate) struct ProducerLine {
    pub(crate) write: AtomicU64,
    pub(crate) consumer_sleep: AtomicU64,
    pub(crate) consumer_closed: AtomicU64,
}

/// The consumer's cache line, mirror image of [`ProducerLine`].
#[repr(C)]
pub(crate) struct ConsumerLine {
    pub(crate) read: AtomicU64,
    pub(crate) producer_sleep: AtomicU64,
    pub(crate) producer_closed: AtomicU64,
}

#[cfg(not(loom))]
const _: () = {
    assert!(size_of::<Header>() <= LINE);
    assert!(size_of::<ProducerLine>() <= LINE);
    assert!(size_of::<ConsumerLine>() <= LINE);
};

/// The header as atomics, for reading and writing it in shared memory (same
/// layout as [`Header`]). `std`'s atomics even under loom: the model never
/// touches a header.
#[repr(C)]
pub(super) struct HeaderAtomics {
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
pub(super) unsafe fn header_atomics<'a>(base: *mut u8) -> &'a HeaderAtomics {
    // SAFETY: the caller's contract; atomics may alias memory that another
    // process writes (they are `UnsafeCell`s).
    unsafe { &*base.cast::<HeaderAtomics>() }
}

impl HeaderAtomics {
    pub(super) fn store(&self, h: &Header) {
        let r = StdOrdering::Relaxed;
        self.magic.store(h.magic, r);
        self.version.store(h.version, r);
        self.elem_size.store(h.elem_size, r);
        self.elem_align.store(h.elem_align, r);
        self.reserved.store(h.reserved, r);
        self.capacity.store(h.capacity, r);
        self.name_hash.store(h.name_hash, r);
    }

    pub(super) fn load(&self) -> Header {
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

/// What differs between the header `found` in a region and the one we `want`,
/// for [`Error::HeaderMismatch`](crate::Error::HeaderMismatch).
pub(super) fn describe_mismatch(found: &Header, want: &Header) -> String {
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
