//! Memory that holds a ring: the [`Region`] contract, and [`HeapRegion`],
//! the zeroed heap block of an in-process ring (a shared segment's mapping
//! is the other kind, in [`crate::segment`]).

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use super::header::MAX_ALIGN;

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
/// (the rings' claims tell those apart; see the [module docs](crate::ring)).
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
