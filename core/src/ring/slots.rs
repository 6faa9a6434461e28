//! Where the slots are and how items get in and out of them: [`Shared`],
//! this end's pointers into the region (the two index lines and the slots
//! array, with the runs a wrapping range of slots covers), and the
//! volatile copies between the slots and local memory that every safe
//! method uses (no reference into memory the peer can write; see the
//! [module docs](crate::ring)).

use std::marker::PhantomData;
use std::mem::{align_of, size_of};
use std::ptr::{self, NonNull};
use std::sync::Arc;

use bytemuck::Pod;

use super::claim::{Claim, End};
use super::header::{ConsumerLine, ProducerLine};
use super::layout::check_attach;
use super::wake::Words;
use crate::sync::Ordering;
use crate::Result;

/// Pointers into the shared region, valid while `_keep` lives.
pub(super) struct Shared<T> {
    prod: NonNull<ProducerLine>,
    cons: NonNull<ConsumerLine>,
    slots: NonNull<T>,
    pub(super) capacity: u64,
    mask: u64,
    /// This end's claim (`None` only in the loom model); released before the
    /// memory can be freed.
    _claim: Option<Claim>,
    /// Keeps the memory behind the pointers alive.
    _keep: Arc<dyn Send + Sync>,
    _marker: PhantomData<T>,
}

impl<T> Shared<T> {
    /// Pointers to the lines and slots of a region that holds `capacity`
    /// slots (a power of two), kept alive by `keep`.
    pub(super) fn new(
        prod: NonNull<ProducerLine>,
        cons: NonNull<ConsumerLine>,
        slots: NonNull<T>,
        capacity: u64,
        claim: Option<Claim>,
        keep: Arc<dyn Send + Sync>,
    ) -> Self {
        Shared {
            prod,
            cons,
            slots,
            capacity,
            mask: capacity - 1,
            _claim: claim,
            _keep: keep,
            _marker: PhantomData,
        }
    }

    /// The words `end` uses in the index and sleep/wake protocols.
    #[inline]
    pub(super) fn words(&self, end: End) -> Words<'_> {
        let (prod, cons) = (self.prod(), self.cons());
        match end {
            End::Writer => Words {
                index: &prod.write,
                peer_index: &cons.read,
                own_sleep: &cons.producer_sleep,
                peer_sleep: &prod.consumer_sleep,
                own_closed: &cons.producer_closed,
                peer_closed: &prod.consumer_closed,
            },
            End::Reader => Words {
                index: &cons.read,
                peer_index: &prod.write,
                own_sleep: &prod.consumer_sleep,
                peer_sleep: &cons.producer_sleep,
                own_closed: &prod.consumer_closed,
                peer_closed: &cons.producer_closed,
            },
        }
    }

    /// `end`'s own index and the other end's, as found when it attaches
    /// (loaded in that order), once they passed [`check_attach`].
    pub(super) fn indices_at_attach(&self, end: End) -> Result<(u64, u64)> {
        let words = self.words(end);
        let own = words.index.load(Ordering::Acquire);
        let peer = words.peer_index.load(Ordering::Acquire);
        let (read, write) = match end {
            End::Writer => (peer, own),
            End::Reader => (own, peer),
        };
        check_attach(read, write, self.capacity)?;
        Ok((own, peer))
    }

    #[inline]
    pub(super) fn prod(&self) -> &ProducerLine {
        // SAFETY: points into the memory kept alive by `_keep`; only atomics inside.
        unsafe { self.prod.as_ref() }
    }
    #[inline]
    pub(super) fn cons(&self) -> &ConsumerLine {
        // SAFETY: as for `prod`.
        unsafe { self.cons.as_ref() }
    }
    #[inline]
    pub(super) fn slot(&self, index: u64) -> *mut T {
        // SAFETY: `index & mask < capacity`, and the slots array holds `capacity`
        // elements inside the region.
        unsafe { self.slots.as_ptr().add((index & self.mask) as usize) }
    }
    /// The two runs of slots `[start, start + n)` covers, wrapping at the end.
    #[inline]
    pub(super) fn runs(&self, start: u64, n: usize) -> (*mut T, usize, *mut T, usize) {
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

impl<T: Pod> Shared<T> {
    /// Copies `src` into the slots from index `start` on (wrapping at the end
    /// of the array), with volatile stores.
    ///
    /// # Safety
    /// The `src.len()` slots from `start` must be the writer's to fill: free,
    /// and not yet published.
    #[inline(always)]
    pub(super) unsafe fn store_run(&self, start: u64, src: &[T]) {
        let (p0, n0, p1, n1) = self.runs(start, src.len());
        // SAFETY: the caller's slots lie in the slots array as two runs of
        // `n0 + n1 == src.len()` items (free slots never exceed the
        // capacity); `src` holds that many.
        unsafe {
            store_items(p0, src.as_ptr(), n0);
            store_items(p1, src.as_ptr().add(n0), n1);
        }
    }

    /// Copies the items from index `start` on (wrapping at the end of the
    /// array) into `dst`, with volatile loads. `T: Pod`: any bytes a hostile
    /// producer left there are a valid `T`.
    ///
    /// # Safety
    /// The `dst.len()` items from `start` must be published to the reader
    /// (validated against the producer's index) and not yet released.
    #[inline(always)]
    pub(super) unsafe fn load_run(&self, start: u64, dst: &mut [T]) {
        let (p0, n0, p1, n1) = self.runs(start, dst.len());
        // SAFETY: the caller's items lie in the slots array as two runs of
        // `n0 + n1 == dst.len()` items (published items never exceed the
        // capacity); `dst` has room for that many and is ours alone.
        unsafe {
            load_items(p0, dst.as_mut_ptr(), n0);
            load_items(p1, dst.as_mut_ptr().add(n0), n1);
        }
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
/// copies at about `memcpy`'s speed (the figures are in the README's
/// benchmark section).
///
/// # Safety
/// `src` must be valid for reads of `n` items and aligned for `T` (another
/// process may write them meanwhile); `dst` valid for writes of `n` items and
/// not shared with any other process.
#[inline(always)]
pub(super) unsafe fn load_items<T: Pod>(src: *const T, dst: *mut T, n: usize) {
    // SAFETY: the caller's contract is `copy_items`' for a `Load`.
    unsafe { copy_items::<T, Load>(src, dst, n) }
}

/// Copies `n` items from local memory at `src` into the slots at `dst` with
/// volatile stores (the mirror image of [`load_items`]).
///
/// # Safety
/// `dst` must be valid for writes of `n` items and aligned for `T` (another
/// process may access them meanwhile); `src` valid for reads of `n` items.
#[inline(always)]
pub(super) unsafe fn store_items<T: Pod>(dst: *mut T, src: *const T, n: usize) {
    // SAFETY: the caller's contract is `copy_items`' for a `Store`.
    unsafe { copy_items::<T, Store>(src, dst, n) }
}

/// Which way a copy goes: the side in the slots (shared memory) gets
/// aligned volatile accesses, the local side plain unaligned ones.
trait Way {
    /// `true` if the source is in the slots (a load), `false` if the
    /// destination is (a store).
    const FROM_SLOTS: bool;

    /// Copies one `V` from `s + i` to `d + i`.
    ///
    /// # Safety
    /// Both valid for `size_of::<V>()` bytes at `i`; the shared one (see
    /// [`FROM_SLOTS`](Self::FROM_SLOTS)) aligned for `V`; the local source
    /// of a store initialised.
    unsafe fn step<V>(s: *const u8, d: *mut u8, i: usize);
}

/// From the slots into local memory.
struct Load;
/// From local memory into the slots.
struct Store;

impl Way for Load {
    const FROM_SLOTS: bool = true;

    #[inline(always)]
    unsafe fn step<V>(s: *const u8, d: *mut u8, i: usize) {
        // SAFETY: the caller's contract; `s` is the shared, aligned side.
        unsafe {
            let v = ptr::read_volatile(s.add(i).cast::<V>());
            ptr::write_unaligned(d.add(i).cast::<V>(), v);
        }
    }
}

impl Way for Store {
    const FROM_SLOTS: bool = false;

    #[inline(always)]
    unsafe fn step<V>(s: *const u8, d: *mut u8, i: usize) {
        // SAFETY: the caller's contract; `d` is the shared, aligned side.
        unsafe {
            let v = ptr::read_unaligned(s.add(i).cast::<V>());
            ptr::write_volatile(d.add(i).cast::<V>(), v);
        }
    }
}

/// Copies `n` items from `src` to `dst` the way `W` says (see
/// [`load_items`] for how).
///
/// # Safety
/// `src` valid for reads and `dst` for writes of `n` items; the side in the
/// slots aligned for `T` (another process may access it meanwhile), the
/// local side not shared with any other process.
#[inline(always)]
unsafe fn copy_items<T: Pod, W: Way>(src: *const T, dst: *mut T, n: usize) {
    let bytes = n * size_of::<T>();
    let (s, d) = (src.cast::<u8>(), dst.cast::<u8>());
    let shared = if W::FROM_SLOTS { s } else { d.cast_const() };
    #[cfg(loom)]
    super::model::touch(shared, bytes, !W::FROM_SLOTS);
    // SAFETY: forwarded from the caller; `Unit::<T>::BYTES` divides the size and
    // alignment of `T`, so the shared side is aligned for the unit and `bytes`
    // a multiple of it.
    unsafe {
        match Unit::<T>::BYTES {
            8 => copy_bytes::<u64, W>(s, d, shared as usize, bytes),
            4 => copy_bytes::<u32, W>(s, d, shared as usize, bytes),
            2 => copy_bytes::<u16, W>(s, d, shared as usize, bytes),
            _ => copy_bytes::<u8, W>(s, d, shared as usize, bytes),
        }
    }
}

/// # Safety
/// `s` valid for reads and `d` for writes of `bytes` bytes; `shared` the
/// address of whichever of them is in the slots (see [`Way`]), aligned for
/// `U`; `bytes` a multiple of the size of `U`, which is 1, 2, 4 or 8; the
/// local source of a store initialised.
#[inline(always)]
unsafe fn copy_bytes<U: Copy, W: Way>(s: *const u8, d: *mut u8, shared: usize, bytes: usize) {
    let u = size_of::<U>();
    let mut i = 0;
    // SAFETY: every access lies in `[0, bytes)` of both buffers (`i` steps by
    // the width it accesses and stops before `bytes`). Shared accesses are
    // aligned: `shared + i` is a multiple of `u` throughout, of 8 from the
    // first 8-aligned byte on (`bytes - i` stays a multiple of `u`, so the
    // unit loop never overruns), of 16 in the vector loop. Local accesses are
    // unaligned. The local bytes of a store are initialised: they are the
    // bytes of `Pod` items, which have no padding.
    unsafe {
        if u < 8 {
            let head = ((8 - shared % 8) % 8).min(bytes);
            while i < head {
                W::step::<U>(s, d, i);
                i += u;
            }
        }
        // `shared + i` is 8-aligned here (or `i == bytes`).
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::__m128i;
            if (shared + i) % 16 != 0 && i + 8 <= bytes {
                W::step::<u64>(s, d, i);
                i += 8;
            }
            while i + 16 <= bytes {
                W::step::<__m128i>(s, d, i);
                i += 16;
            }
        }
        while i + 8 <= bytes {
            W::step::<u64>(s, d, i);
            i += 8;
        }
        while i < bytes {
            W::step::<U>(s, d, i);
            i += u;
        }
    }
}
