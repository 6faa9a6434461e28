//! [`Reader`]: the consuming end of a ring, the mirror image of
//! [`Writer`](super::Writer). Its [`EndState`] holds the read index and a
//! cached copy of the producer's write index, which it refreshes and
//! validates only when the cache says empty; this module adds what is the
//! reader's own: ready items, popping, and the [`ReadChunk`] it hands out.

use std::sync::Arc;

use bytemuck::Pod;

use super::chunks::ReadChunk;
use super::end::{ring_end, EndState, ReaderState};
use super::slots::{load_items, Shared};
use super::wake::Notify;
use crate::{Error, Result};

ring_end!(
    /// The consuming end of a ring.
    Reader(ReaderState),
    own: "read",
    peer: "write_cache",
    other: "producer",
    moves: "commit",
    stall: "empty",
    slots: "Items ready to read",
);

impl<T> Reader<T> {
    /// Our read index: items released so far.
    #[inline]
    pub(super) fn read(&self) -> u64 {
        self.end.own
    }
}

impl<T: Pod> Reader<T> {
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
        let n = self.end.ready(max)?.min(max);
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
        if self.end.ready(1)? == 0 {
            return Err(Error::Empty);
        }
        let mut value = T::zeroed();
        // SAFETY: the slot at `read` was published by the producer (read < write,
        // validated) and lies inside the slots array. A volatile copy into a
        // local: whatever bytes a hostile producer writes concurrently, `T: Pod`
        // makes them a valid `T`, and the copy cannot change afterwards.
        unsafe { load_items(self.end.shared.slot(self.read()), &mut value, 1) };
        self.retire(1);
        Ok(value)
    }

    /// Removes up to `dst.len()` items into `dst`; returns how many. The items
    /// are copied out of the slots with volatile loads (as
    /// [`ReadChunk::read`] does, without the chunk).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the producer's index is out of range (the
    /// reader is poisoned from then on). An empty ring is not an error: `0`.
    #[inline]
    pub fn pop_slice(&mut self, dst: &mut [T]) -> Result<usize> {
        let n = self.end.ready(dst.len())?.min(dst.len());
        // SAFETY: the `n` items from `read` were published (at most the ready
        // items `ready` counted, validated) and are not released.
        unsafe { self.end.shared.load_run(self.read(), &mut dst[..n]) };
        if n > 0 {
            self.retire(n);
        }
        Ok(n)
    }

    /// Frees `n` read slots and wakes the producer if it sleeps.
    #[inline]
    pub(super) fn retire(&mut self, n: usize) {
        self.end.advance(n);
    }
}
