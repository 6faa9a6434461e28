//! [`Writer`]: the producing end of a ring. Its [`EndState`] holds the write
//! index and a cached copy of the consumer's read index, which it refreshes
//! and validates only when the cache says full; this module adds what is
//! the writer's own: free slots, pushing, and the [`WriteChunk`] it hands
//! out.

use std::sync::Arc;

use bytemuck::Pod;

use super::chunks::WriteChunk;
use super::end::{ring_end, EndState, WriterState};
use super::slots::{store_items, Shared};
use super::wake::Notify;
use crate::{Error, Result};

ring_end!(
    /// The producing end of a ring.
    Writer(WriterState),
    own: "write",
    peer: "read_cache",
    other: "consumer",
    moves: "release",
    stall: "full",
    slots: "Free slots",
);

impl<T> Writer<T> {
    /// Our write index: items published so far.
    #[inline]
    pub(super) fn write(&self) -> u64 {
        self.end.own
    }
}

impl<T: Pod> Writer<T> {
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

    /// Appends as many items of `src` as fit; returns how many. The items are
    /// copied into the slots with volatile stores (as
    /// [`WriteChunk::write`] does, without the chunk: measurably faster for
    /// short slices).
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the consumer's index is out of range (the
    /// writer is poisoned from then on). A full ring is not an error: `0`.
    #[inline]
    pub fn push_slice(&mut self, src: &[T]) -> Result<usize> {
        let n = self.end.ready(src.len())?.min(src.len());
        // SAFETY: the `n` slots from `write` are free (at most the free slots
        // `ready` counted) and not yet published.
        unsafe { self.end.shared.store_run(self.write(), &src[..n]) };
        if n > 0 {
            self.publish(n);
        }
        Ok(n)
    }

    /// Publishes `n` filled slots and wakes the consumer if it sleeps.
    #[inline]
    pub(super) fn publish(&mut self, n: usize) {
        self.end.advance(n);
    }
}
