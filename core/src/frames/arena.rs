//! The slot arena: one sealed memfd split into equal slots, written only by
//! the producer, and the producer's private record of who holds each slot.

use std::sync::Arc;

use crate::segment::{page_size, Access, Mapping, Segment};
use crate::sync::{AtomicU32, Ordering};
use crate::{Error, Result};

/// Most slots an arena may have.
pub const MAX_SLOTS: u32 = 4096;

/// Slot state bit: a [`SlotLease`] exists (someone may write the slot).
const LEASED: u32 = 1 << 31;
/// Low bits: how many consumers hold the slot (sent, not yet returned).
const IN_FLIGHT: u32 = LEASED - 1;

/// Geometry of an arena, checked on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub slots: u32,
    pub slot_size: usize,
}

impl Geometry {
    /// Validates and rounds the slot size up to a multiple of 64 bytes (so
    /// every slot starts cache-line and SIMD aligned).
    pub fn new(slots: u32, slot_size: usize, max_bytes: usize) -> Result<Self> {
        if !(2..=MAX_SLOTS).contains(&slots) {
            return Err(Error::InvalidArgument(format!(
                "{slots} slots (2..={MAX_SLOTS}: frames and one for strings)"
            )));
        }
        if slot_size == 0 || slot_size > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!("slot size {slot_size}")));
        }
        let slot_size = slot_size
            .checked_next_multiple_of(64)
            .ok_or_else(|| Error::InvalidArgument("slot size overflows".into()))?;
        let g = Geometry { slots, slot_size };
        match g.bytes() {
            Some(b) if b <= max_bytes => Ok(g),
            _ => Err(Error::InvalidArgument(format!(
                "{slots} slots of {slot_size} bytes exceed the {max_bytes}-byte limit"
            ))),
        }
    }

    /// Bytes of all slots, page-rounded.
    pub fn bytes(&self) -> Option<usize> {
        (self.slots as usize)
            .checked_mul(self.slot_size)?
            .checked_next_multiple_of(page_size())
    }
}

#[derive(Debug)]
struct Inner {
    map: Mapping,
    /// The memfd, kept to hand to each new consumer.
    seg: Segment,
    geometry: Geometry,
    /// Producer-private (never shared memory): `LEASED` | in-flight count.
    states: Box<[AtomicU32]>,
    cursor: AtomicU32,
}

/// The producer's arena: its writable mapping and slot bookkeeping. Cheap to
/// clone (an `Arc`); keeps the mapping alive.
#[derive(Debug, Clone)]
pub struct Arena {
    inner: Arc<Inner>,
}

impl Arena {
    /// A new arena of `cfg.slots` slots of `cfg.slot_size` bytes (rounded up
    /// to 64), for [`serve_arena`](super::serve_arena).
    pub fn new(cfg: &super::FrameConfig) -> Result<Self> {
        Self::create(Geometry::new(cfg.slots, cfg.slot_size, cfg.max_arena)?)
    }

    /// Creates the memfd, maps it read-write, then seals it
    /// `F_SEAL_FUTURE_WRITE` so that consumers can only map it read-only.
    pub(crate) fn create(geometry: Geometry) -> Result<Self> {
        let bytes = geometry
            .bytes()
            .ok_or_else(|| Error::InvalidArgument("arena size overflows".into()))?;
        let seg = Segment::create("shmring-arena", bytes)?;
        let map = seg.map(bytes, Access::ReadWrite)?;
        seg.seal_future_write()?;
        let states = (0..geometry.slots).map(|_| AtomicU32::new(0)).collect();
        Ok(Arena {
            inner: Arc::new(Inner {
                map,
                seg,
                geometry,
                states,
                cursor: AtomicU32::new(0),
            }),
        })
    }

    pub(crate) fn geometry(&self) -> Geometry {
        self.inner.geometry
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.inner.seg
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.inner.geometry.slots
    }

    /// Bytes per slot (a multiple of 64).
    pub fn slot_size(&self) -> usize {
        self.inner.geometry.slot_size
    }

    /// Start of the mapping.
    pub fn as_ptr(&self) -> *const u8 {
        self.inner.map.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.inner.map.len()
    }

    /// Never true (an arena has at least one slot).
    pub fn is_empty(&self) -> bool {
        self.inner.map.is_empty()
    }

    /// If `len` bytes at `ptr` lie inside one slot of this arena, that slot and
    /// the offset in it. This is how a sink recognises memory it handed out.
    pub fn locate(&self, ptr: *const u8, len: usize) -> Option<(u32, usize)> {
        let start = (ptr as usize).checked_sub(self.as_ptr() as usize)?;
        let end = start.checked_add(len)?;
        let size = self.slot_size();
        let slot = start / size;
        if slot >= self.slots() as usize || end > (slot + 1) * size {
            return None;
        }
        Some((slot as u32, start - slot * size))
    }

    /// A free slot (neither leased nor in flight), leased to the caller.
    /// Lock-free; any thread.
    pub fn try_lease(&self) -> Option<SlotLease> {
        let n = self.frame_slots();
        let start = self.inner.cursor.load(Ordering::Relaxed);
        for i in 0..n {
            let idx = (start.wrapping_add(i)) % n;
            if self
                .state(idx)
                .compare_exchange(0, LEASED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.inner.cursor.store((idx + 1) % n, Ordering::Relaxed);
                return Some(SlotLease {
                    arena: self.clone(),
                    index: idx,
                });
            }
        }
        None
    }

    /// Slots for frames: all but the last, which carries the stream's strings
    /// (caps, tags, stream id) so that a consumer holding every frame slot
    /// never blocks a caps change.
    pub fn frame_slots(&self) -> u32 {
        self.slots() - 1
    }

    /// A slot for a string: the string slot if no consumer holds it, else
    /// any free frame slot (with several consumers, a stopped one may hold the
    /// string slot; the others' caps must still go through).
    pub(crate) fn lease_string_slot(&self) -> Option<SlotLease> {
        let idx = self.slots() - 1;
        self.state(idx)
            .compare_exchange(0, LEASED, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SlotLease {
                arena: self.clone(),
                index: idx,
            })
            .or_else(|| self.try_lease())
    }

    /// Number of slots some consumer holds (each counted once however many
    /// consumers hold it).
    pub fn in_flight(&self) -> usize {
        self.inner
            .states
            .iter()
            .filter(|s| s.load(Ordering::Relaxed) & IN_FLIGHT != 0)
            .count()
    }

    fn state(&self, idx: u32) -> &AtomicU32 {
        &self.inner.states[idx as usize]
    }

    /// Marks `idx` sent to one more consumer. It must be leased (its bytes are
    /// someone's to have written); each [`FrameSender`](super::FrameSender)
    /// checks that it does not hold the slot already.
    ///
    /// One atomic transition: the check that the slot is leased and the new
    /// holder count cannot be separated by a lease dropped and taken again
    /// on another thread (which would send a slot while it is rewritten).
    pub(crate) fn mark_sent(&self, idx: u32) -> Result<()> {
        self.state(idx)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v & LEASED != 0 && v & IN_FLIGHT != IN_FLIGHT).then(|| v + 1)
            })
            .map(|_| ())
            .map_err(|_| {
                Error::InvalidArgument(format!("slot {idx} is not leased: nobody wrote it"))
            })
    }

    /// One consumer let go of `idx` (it returned the slot, it was never sent,
    /// or the consumer is gone). Only called by a sender that holds `idx`.
    pub(crate) fn mark_returned(&self, idx: u32) {
        let _ = self
            .state(idx)
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |v| {
                (v & IN_FLIGHT != 0).then(|| v - 1)
            });
    }

    /// How many consumers hold slot `idx` (0 when out of range).
    pub fn holders(&self, idx: u32) -> u32 {
        self.inner
            .states
            .get(idx as usize)
            .map_or(0, |s| s.load(Ordering::Acquire) & IN_FLIGHT)
    }

    fn slot_ptr(&self, idx: u32) -> *mut u8 {
        // In bounds: idx < slots and slots * slot_size <= mapping length.
        self.inner
            .map
            .as_ptr()
            .wrapping_add(idx as usize * self.slot_size())
    }
}

/// Entry points for the loom model (`core/tests/loom.rs`, `--cfg loom`): what
/// a [`FrameSender`](super::FrameSender) calls when it sends a slot to its
/// consumer and when the consumer gives it back, and the raw slot state.
#[cfg(loom)]
#[doc(hidden)]
impl Arena {
    /// [`mark_sent`](Self::mark_sent).
    pub fn model_mark_sent(&self, idx: u32) -> Result<()> {
        self.mark_sent(idx)
    }

    /// [`mark_returned`](Self::mark_returned).
    pub fn model_mark_returned(&self, idx: u32) {
        self.mark_returned(idx)
    }

    /// The state word of slot `idx`: the lease bit (1 << 31) | holder count.
    pub fn model_state(&self, idx: u32) -> u32 {
        self.state(idx).load(Ordering::Acquire)
    }
}

/// Exclusive right to write one slot. Dropping it gives the slot back (once no
/// consumer holds it either). `Send`, so it can live inside a `gst::Memory`.
#[derive(Debug)]
pub struct SlotLease {
    arena: Arena,
    index: u32,
}

impl SlotLease {
    /// The slot's number.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The arena the slot belongs to.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }
}

impl AsRef<[u8]> for SlotLease {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the slot lies inside the live mapping (kept alive by
        // `self.arena`); only the lease holder writes it, and `&self` excludes
        // that here. The consumer maps it read-only.
        unsafe {
            std::slice::from_raw_parts(self.arena.slot_ptr(self.index), self.arena.slot_size())
        }
    }
}

impl AsMut<[u8]> for SlotLease {
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_ref`; the lease is the only writer of its slot
        // (leases are handed out by a compare-exchange from the free state),
        // and `&mut self` makes this the only reference through it.
        unsafe {
            std::slice::from_raw_parts_mut(self.arena.slot_ptr(self.index), self.arena.slot_size())
        }
    }
}

impl Drop for SlotLease {
    fn drop(&mut self) {
        self.arena
            .state(self.index)
            .fetch_and(!LEASED, Ordering::AcqRel);
    }
}

/// The consumer's read-only view of an arena. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ArenaView {
    map: Arc<Mapping>,
    geometry: Geometry,
}

impl ArenaView {
    /// Validates a received arena memfd (seals SHRINK, GROW and FUTURE_WRITE,
    /// size) and maps it read-only.
    pub(crate) fn open(fd: std::os::fd::OwnedFd, geometry: Geometry) -> Result<Self> {
        let bytes = geometry
            .bytes()
            .ok_or_else(|| Error::Protocol("arena size overflows".into()))?;
        let seg = Segment::from_fd(fd, bytes)?;
        let seals = seg.seals()?;
        if seals & libc::F_SEAL_FUTURE_WRITE == 0 {
            return Err(Error::BadSegment(format!(
                "arena memfd lacks F_SEAL_FUTURE_WRITE (seals {seals:#x}): another consumer could write it"
            )));
        }
        let map = seg.map(bytes, Access::ReadOnly)?;
        Ok(ArenaView {
            map: Arc::new(map),
            geometry,
        })
    }

    /// A read-only view of the producer's own arena (in-process pairs).
    pub(crate) fn of(seg: &Segment, geometry: Geometry) -> Result<Self> {
        Self::open(seg.try_clone_fd()?, geometry)
    }

    /// Start of the read-only mapping.
    pub fn as_ptr(&self) -> *const u8 {
        self.map.as_ptr()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Never true.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Number of slots.
    pub fn slots(&self) -> u32 {
        self.geometry.slots
    }

    /// Bytes per slot.
    pub fn slot_size(&self) -> usize {
        self.geometry.slot_size
    }

    /// Bytes `offset..offset + size` of `slot`, already checked by
    /// [`Descriptor::check`](super::Descriptor::check).
    ///
    /// The bytes live in memory the producer can still write: they are data to
    /// parse defensively, not a value whose invariants hold.
    pub(crate) fn bytes(&self, slot: u32, offset: u32, size: u32) -> &[u8] {
        let start = slot as usize * self.geometry.slot_size + offset as usize;
        let end = start + size as usize;
        if end > self.map.len() {
            return &[];
        }
        // SAFETY: `start..end` lies inside the live read-only mapping (checked
        // just above; `self.map` keeps it mapped). The memfd is sealed against
        // shrinking, so the pages stay backed. u8 is valid for any bits.
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(start), size as usize) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry() -> Geometry {
        Geometry::new(2, 4096, 1 << 20).expect("geometry")
    }

    #[test]
    fn consumers_cannot_map_the_arena_writable() {
        let arena = Arena::create(geometry()).expect("arena");
        let seg = arena.segment();
        let len = geometry().bytes().expect("bytes");
        assert!(
            seg.map(len, Access::ReadWrite).is_err(),
            "FUTURE_WRITE seal"
        );
        assert!(seg.map(len, Access::ReadOnly).is_ok());
    }

    #[test]
    fn an_arena_without_the_future_write_seal_is_refused() {
        let len = geometry().bytes().expect("bytes");
        let seg = Segment::create("not-an-arena", len).expect("segment");
        let err = ArenaView::open(seg.into_fd(), geometry()).expect_err("accepted");
        assert!(matches!(err, Error::BadSegment(_)), "{err}");
    }

    #[test]
    fn locate_finds_slots_and_refuses_what_straddles() {
        let arena = Arena::create(geometry()).expect("arena");
        let base = arena.as_ptr();
        assert_eq!(arena.locate(base, 4096), Some((0, 0)));
        assert_eq!(arena.locate(base.wrapping_add(4100), 10), Some((1, 4)));
        assert_eq!(arena.locate(base.wrapping_add(4000), 200), None);
        assert_eq!(arena.locate(base.wrapping_add(8192), 1), None);
        assert_eq!(arena.locate(base.wrapping_sub(1), 1), None);
    }
}
