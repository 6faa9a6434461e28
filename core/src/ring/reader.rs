//! [`Reader`]: the consuming end of a ring, the mirror image of
//! [`Writer`](super::Writer). It owns the read index (a private copy and the
//! shared one it releases), a cached copy of the producer's write index
//! that it refreshes and validates only when the cache says empty, and its
//! half of the sleep/wake protocol ([`wake`](super::wake)).

use std::sync::Arc;

use bytemuck::Pod;

use super::chunks::ReadChunk;
use super::claim::End;
use super::slots::{load_items, Shared};
use super::wake::{Notify, Wake};
use crate::sync::Ordering;
use crate::{Error, Result};

/// The consuming end of a ring.
pub struct Reader<T> {
    pub(super) shared: Shared<T>,
    /// Our read index: items released so far.
    pub(super) read: u64,
    /// The producer's write index as last read (and validated).
    write_cache: u64,
    poisoned: bool,
    wake: Wake,
}

// SAFETY: the ring is single-producer single-consumer: a `Reader` is owned by
// one thread at a time, and the region it points into is `Send + Sync`.
unsafe impl<T: Send> Send for Reader<T> {}

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

impl<T> Reader<T> {
    /// An end over `shared` at the indices found (and validated) at attach.
    pub(super) fn new(shared: Shared<T>, read: u64, write: u64) -> Self {
        Reader {
            shared,
            read,
            write_cache: write,
            poisoned: false,
            wake: Wake::default(),
        }
    }
}

impl<T: Pod> Reader<T> {
    /// Sets the hook called when a release finds the producer asleep.
    pub fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.wake.set_notify(notify);
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
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer's index is out of range (the
    /// reader is poisoned from then on).
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
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer's index is out of range (the
    /// reader is poisoned from then on). An empty ring is not an error: the
    /// chunk is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmring::ring::{HeapRegion, RingLayout, TypeTag};
    /// use std::sync::Arc;
    ///
    /// let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
    /// let region = Arc::new(HeapRegion::new(layout.total_size()));
    /// let (mut writer, mut reader) = layout.init::<u32>(region)?;
    /// writer.push_slice(&[1, 2, 3])?;
    /// let chunk = reader.read_chunk(8)?;
    /// assert_eq!(chunk.iter().collect::<Vec<_>>(), [1, 2, 3]);
    /// chunk.release(2); // the third item stays in the ring
    /// assert_eq!(reader.pop()?, 3);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn read_chunk(&mut self, max: usize) -> Result<ReadChunk<'_, T>> {
        let n = self.available(max)?.min(max);
        Ok(ReadChunk::new(self, n))
    }

    /// Removes and returns the oldest item, or fails with [`Error::Empty`].
    ///
    /// # Errors
    /// [`Error::Empty`] if no item is ready; [`Error::Corrupt`] if the
    /// producer's index is out of range (the reader is poisoned from then
    /// on).
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

    /// Removes up to `dst.len()` items into `dst`; returns how many (a chunk
    /// of them, read and released). The items are copied out of the slots
    /// with volatile loads.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer's index is out of range (the
    /// reader is poisoned from then on). An empty ring is not an error: `0`.
    #[inline]
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize> {
        let chunk = self.read_chunk(dst.len())?;
        let n = chunk.len();
        chunk.read(0, &mut dst[..n]);
        chunk.release(n);
        Ok(n)
    }

    /// Frees `n` read slots and wakes the producer if it sleeps.
    #[inline]
    pub(super) fn retire(&mut self, n: usize) {
        self.read += n as u64;
        self.wake.publish(self.shared.words(End::Reader), self.read);
    }

    /// Announces that the consumer is about to sleep because the ring is empty.
    /// Returns `Ok(true)` if it is still empty after the announcement (go to
    /// sleep: the producer will notify after its next commit), `Ok(false)` if items
    /// arrived meanwhile (the announcement is withdrawn; do not sleep).
    ///
    /// Every call announces a new sleep, so calling it again after a wake-up
    /// without [`cancel_sleep`](Self::cancel_sleep) is safe (event loops do).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer's index is out of range (the
    /// reader is poisoned from then on; the announcement stands).
    pub fn prepare_sleep(&mut self) -> Result<bool> {
        self.wake.announce(self.shared.words(End::Reader));
        let ready = self.available(1)?;
        Ok(self
            .wake
            .sleep_unless(self.shared.words(End::Reader), ready))
    }

    /// Withdraws the sleep announcement (after waking up, for whatever reason).
    pub fn cancel_sleep(&mut self) {
        self.wake.withdraw(self.shared.words(End::Reader));
    }
}
