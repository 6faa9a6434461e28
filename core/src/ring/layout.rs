//! [`RingLayout`]: the geometry of a ring as this side expects it (capacity,
//! element type, where the slots start, how big the region is), and
//! attaching the ends to a region: initialising it, comparing the header
//! found there with ours, and validating the indices before an end is made.

use std::mem::{align_of, size_of};
use std::ptr::NonNull;
use std::sync::Arc;

use bytemuck::Pod;

use super::claim::{Claim, End};
use super::header::{
    describe_mismatch, header_atomics, ConsumerLine, Header, ProducerLine, TypeTag,
    CONSUMER_OFFSET, HEADER_SIZE, LAYOUT_VERSION, LINE, MAGIC, MAX_ALIGN, MAX_CAPACITY,
    MAX_REGION_SIZE, PRODUCER_OFFSET,
};
use super::region::Region;
use super::slots::Shared;
use super::{Reader, Writer};
use crate::sync::{fence, Ordering};
use crate::{Error, Result};

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
    /// # Errors
    /// [`Error::InvalidArgument`] for a zero-sized `T`, a zero capacity, an
    /// alignment above [`MAX_ALIGN`], a capacity above [`MAX_CAPACITY`] or a
    /// region above [`MAX_REGION_SIZE`], or a `tag` that does not describe
    /// `T`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::ring::{RingLayout, TypeTag};
    ///
    /// let layout = RingLayout::new::<u64>(1000, TypeTag::of::<u64>("ticks"))?;
    /// assert_eq!(layout.capacity(), 1024);
    /// assert!(RingLayout::new::<u64>(0, TypeTag::of::<u64>("ticks")).is_err());
    /// # Ok::<(), shmring::Error>(())
    /// ```
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
    ///
    /// # Errors
    /// As [`new`](Self::new), except the check of the tag against a type.
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
    /// # Errors
    /// [`Error::InvalidArgument`] if an end of a ring over this region is
    /// attached in this process (see the [module docs](crate::ring)); the
    /// region is then left untouched. Also if the layout was made for
    /// another element type or the region is not aligned to 128 bytes and
    /// the element's alignment; [`Error::BadSegment`] if it is too short.
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
            prod.consumer_closed.store(0, Ordering::Relaxed);
            let cons = &*base.add(CONSUMER_OFFSET).cast::<ConsumerLine>();
            cons.read.store(0, Ordering::Relaxed);
            cons.producer_sleep.store(0, Ordering::Relaxed);
            cons.producer_closed.store(0, Ordering::Relaxed);
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
    /// # Errors
    /// [`Error::InvalidArgument`] while a writer of this region is attached
    /// in this process (see the [module docs](crate::ring)), and for the
    /// region checks of [`init`](Self::init); [`Error::BadSegment`] for a
    /// short region; [`Error::HeaderMismatch`] if the header found differs
    /// from this layout's; [`Error::Corrupt`] if the indices found are
    /// inconsistent.
    pub fn writer<T: Pod>(&self, region: Arc<dyn Region>) -> Result<Writer<T>> {
        self.check_region::<T>(&*region)?;
        let claim = Claim::take(region.as_ptr(), End::Writer, self)?;
        self.writer_claimed(region, claim)
    }

    /// Attaches the consuming end, as [`writer`](Self::writer) does the producing one.
    ///
    /// # Errors
    /// As [`writer`](Self::writer), for a reader.
    pub fn reader<T: Pod>(&self, region: Arc<dyn Region>) -> Result<Reader<T>> {
        self.check_region::<T>(&*region)?;
        let claim = Claim::take(region.as_ptr(), End::Reader, self)?;
        self.reader_claimed(region, claim)
    }

    fn writer_claimed<T: Pod>(&self, region: Arc<dyn Region>, claim: Claim) -> Result<Writer<T>> {
        let shared = self.attach::<T>(region, claim)?;
        let (write, read) = shared.indices_at_attach(End::Writer)?;
        Ok(Writer::new(shared, write, read))
    }

    fn reader_claimed<T: Pod>(&self, region: Arc<dyn Region>, claim: Claim) -> Result<Reader<T>> {
        let shared = self.attach::<T>(region, claim)?;
        let (read, write) = shared.indices_at_attach(End::Reader)?;
        Ok(Reader::new(shared, read, write))
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
        Ok(Shared::new(
            prod,
            cons,
            slots,
            self.capacity as u64,
            Some(claim),
            Arc::new(region),
        ))
    }
}

/// Largest index an end accepts when it attaches. A ring starts at 0 and our
/// own index only grows by what we move, so this bound (2^62 items: a century
/// at 10^9 items/s) keeps every later `index + n` from overflowing, whatever
/// the peer wrote before we attached (found by the `ring_header` fuzz target).
const MAX_ATTACH_INDEX: u64 = 1 << 62;

/// The indices found at attach: consistent, and far from overflowing.
pub(super) fn check_attach(read: u64, write: u64, capacity: u64) -> Result<()> {
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
