//! [`Writer`]: the producing end of a ring. Its [`EndState`] holds the write
//! index and a cached copy of the consumer's read index, which it refreshes
//! and validates only when the cache says full; this module adds what is
//! the writer's own: free slots, pushing, and the [`WriteChunk`] it hands
//! out.

use std::sync::Arc;

use bytemuck::Pod;

use super::chunks::WriteChunk;
use super::end::{EndState, WriterState};
use super::slots::{store_items, Shared};
use super::wake::Notify;
use crate::{Error, Result};

/// The producing end of a ring.
pub struct Writer<T> {
    pub(super) end: WriterState<T>,
}

// SAFETY: the ring is single-producer single-consumer: a `Writer` is owned by
// one thread at a time, and the region it points into is `Send + Sync`.
unsafe impl<T: Send> Send for Writer<T> {}

impl<T> std::fmt::Debug for Writer<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.end.debug(f, "Writer", "write", "read_cache")
    }
}

impl<T> Writer<T> {
    /// An end over `shared` at the indices found (and validated) at attach.
    pub(super) fn new(shared: Shared<T>, write: u64, read: u64) -> Self {
        Writer {
            end: EndState::new(shared, write, read),
        }
    }

    /// Our write index: items published so far.
    #[inline]
    pub(super) fn write(&self) -> u64 {
        self.end.own
    }
}

impl<T: Pod> Writer<T> {
    /// Sets the hook called when a commit finds the consumer asleep.
    pub fn set_notify(&mut self, notify: Option<Arc<dyn Notify>>) {
        self.end.set_notify(notify);
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.end.capacity() as usize
    }

    /// `true` once the peer corrupted an index; every call then fails.
    pub fn is_poisoned(&self) -> bool {
        self.end.is_poisoned()
    }

    /// Free slots right now (reads the consumer's index).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer's index is out of range (the
    /// writer is poisoned from then on).
    pub fn slots(&mut self) -> Result<usize> {
        self.end.refresh()?;
        Ok(self.end.cached_ready())
    }

    /// Up to `max` free slots to fill (fewer if the ring has fewer free;
    /// possibly none), by copies ([`WriteChunk::write`],
    /// [`WriteChunk::fill_from_iter`]) or, for a trusted consumer, in place
    /// ([`WriteChunk::as_mut_slices`]). Nothing is published until
    /// [`WriteChunk::commit`].
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer's index is out of range (the
    /// writer is poisoned from then on). A full ring is not an error: the
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
    /// let mut chunk = writer.write_chunk(8)?;
    /// assert_eq!(chunk.len(), 4); // the whole ring is free, no more
    /// assert_eq!(chunk.fill_from_iter(10..13), 3);
    /// chunk.commit(3);
    /// assert_eq!(reader.pop()?, 10);
    /// # Ok::<(), shmring::Error>(())
    /// ```
    #[inline]
    pub fn write_chunk(&mut self, max: usize) -> Result<WriteChunk<'_, T>> {
        let n = self.end.ready(max)?.min(max);
        Ok(WriteChunk::new(self, n))
    }

    /// Appends one item, or fails with [`Error::Full`].
    ///
    /// # Errors
    /// [`Error::Full`] if no slot is free; [`Error::Corrupt`] if the
    /// consumer's index is out of range (the writer is poisoned from then
    /// on).
    #[inline]
    pub fn push(&mut self, value: T) -> Result<()> {
        if self.end.ready(1)? == 0 {
            return Err(Error::Full);
        }
        // SAFETY: the slot at `write` lies in the slots array and is free
        // (write - read < capacity): an honest consumer does not read it until
        // we publish it below; a hostile one racing us sees some bytes of a
        // `Pod` item. A volatile store from a local value: no reference into
        // the slot.
        unsafe { store_items(self.end.shared.slot(self.write()), &value, 1) };
        self.publish(1);
        Ok(())
    }

    /// Appends as many items of `src` as fit; returns how many (a chunk of
    /// them, written and committed). The items are copied into the slots
    /// with volatile stores.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer's index is out of range (the
    /// writer is poisoned from then on). A full ring is not an error: `0`.
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize> {
        let mut chunk = self.write_chunk(src.len())?;
        let n = chunk.len();
        chunk.write(0, &src[..n]);
        chunk.commit(n);
        Ok(n)
    }

    /// Publishes `n` filled slots and wakes the consumer if it sleeps.
    #[inline]
    pub(super) fn publish(&mut self, n: usize) {
        self.end.advance(n);
    }

    /// Announces that the producer is about to sleep because the ring is full.
    /// Returns `Ok(true)` if it is still full after the announcement (go to sleep:
    /// the consumer will notify after its next release), `Ok(false)` if space
    /// appeared meanwhile (the announcement is withdrawn; do not sleep).
    ///
    /// Every call announces a new sleep, so calling it again after a wake-up
    /// without [`cancel_sleep`](Self::cancel_sleep) is safe (event loops do).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer's index is out of range (the
    /// writer is poisoned from then on; the announcement stands).
    pub fn prepare_sleep(&mut self) -> Result<bool> {
        self.end.announce_sleep();
        let free = self.end.ready(1)?;
        Ok(self.end.sleep_unless(free))
    }

    /// Withdraws the sleep announcement (after waking up, for whatever reason).
    pub fn cancel_sleep(&mut self) {
        self.end.cancel_sleep();
    }
}
