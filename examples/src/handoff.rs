//! Hand an owned value to a real-time thread and take it back, without a lock
//! or an allocation on the real-time side.
//!
//! A control thread [`offer`](Handoff::offer)s a boxed value (a new
//! consumer's `FrameSender`); the real-time callback [`take`](Handoff::take)s
//! it, and when it is done with it (the consumer went away) hands it back
//! with [`retire`](Handoff::retire), so that the control thread
//! [`collect`](Handoff::collect)s and drops it: freeing memory and unmapping
//! shared memory never happen in the callback. Both sides only swap or
//! compare-and-swap one pointer.

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

/// A one-place mailbox each way between a control thread and a real-time
/// thread.
pub struct Handoff<T> {
    incoming: AtomicPtr<T>,
    retired: AtomicPtr<T>,
}

// SAFETY: a `Handoff` only moves `Box<T>`s between threads (each pointer is
// owned by exactly one side at a time, transferred by atomic swaps), so it is
// as thread-safe as sending a `T`.
unsafe impl<T: Send> Send for Handoff<T> {}
// SAFETY: as above: shared access only swaps pointers atomically; a value is
// never reachable from two threads at once.
unsafe impl<T: Send> Sync for Handoff<T> {}

impl<T> Default for Handoff<T> {
    fn default() -> Self {
        Self {
            incoming: AtomicPtr::new(ptr::null_mut()),
            retired: AtomicPtr::new(ptr::null_mut()),
        }
    }
}

impl<T> Handoff<T> {
    /// An empty mailbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Control side: offers `value`; gives it back if the previous offer was
    /// not taken yet.
    pub fn offer(&self, value: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(value);
        match self.incoming.compare_exchange(
            ptr::null_mut(),
            p,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => Ok(()),
            // SAFETY: `p` came from `Box::into_raw` just above and was not
            // published (the exchange failed), so we still own it.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    /// Real-time side: takes the offered value, if any. No allocation, no lock.
    pub fn take(&self) -> Option<Box<T>> {
        let p = self.incoming.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null `incoming` was published by `offer` from
        // `Box::into_raw`; the swap made us its only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// Real-time side: hands `value` back for the control side to drop; gives
    /// it back if the previous one was not collected yet (keep it and try
    /// again later: never drop it on the real-time thread).
    pub fn retire(&self, value: Box<T>) -> Result<(), Box<T>> {
        let p = Box::into_raw(value);
        match self
            .retired
            .compare_exchange(ptr::null_mut(), p, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            // SAFETY: `p` came from `Box::into_raw` just above and was not
            // published, so we still own it.
            Err(_) => Err(unsafe { Box::from_raw(p) }),
        }
    }

    /// Control side: takes a retired value, if any (to drop it here).
    pub fn collect(&self) -> Option<Box<T>> {
        let p = self.retired.swap(ptr::null_mut(), Ordering::AcqRel);
        // SAFETY: a non-null `retired` was published by `retire` from
        // `Box::into_raw`; the swap made us its only owner.
        (!p.is_null()).then(|| unsafe { Box::from_raw(p) })
    }

    /// Whether an offer waits to be taken.
    pub fn is_offered(&self) -> bool {
        !self.incoming.load(Ordering::Acquire).is_null()
    }
}

impl<T> Drop for Handoff<T> {
    fn drop(&mut self) {
        drop(self.take());
        drop(self.collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_go_round_once() {
        let h = Handoff::new();
        assert!(h.take().is_none());
        h.offer(Box::new(1)).expect("empty");
        assert_eq!(*h.offer(Box::new(2)).expect_err("occupied"), 2);
        let v = h.take().expect("offered");
        assert!(h.take().is_none());
        h.retire(v).expect("empty");
        assert_eq!(*h.retire(Box::new(3)).expect_err("occupied"), 3);
        assert_eq!(*h.collect().expect("retired"), 1);
        assert!(h.collect().is_none());
    }
}
