//! The zero-copy chunk API: [`WriteChunk`] (up to `n` free slots, filled
//! then committed) and [`ReadChunk`] (up to `n` ready items, read then
//! released), each at most two runs of slots when it wraps around the end
//! of the ring, and [`ReadChunkIter`]. The items are copied with volatile
//! loads and stores; the in-place views are `unsafe fn`s (see the
//! [module docs](crate::ring)). The copies themselves are
//! `Shared::store_run` and `Shared::load_run`, which `push_slice` and
//! `pop_slice` use too.

use std::marker::PhantomData;

use bytemuck::Pod;

#[cfg(doc)]
use super::slots::Shared;
use super::slots::{load_items, store_items};
use super::{Reader, Writer};

/// Free slots of a ring handed out by [`Writer::write_chunk`].
///
/// Fill them with copies ([`write`](Self::write), [`set`](Self::set),
/// [`fill_from_iter`](Self::fill_from_iter)), then publish them with
/// [`commit`](Self::commit). Dropping the chunk without committing publishes
/// nothing.
#[derive(Debug)]
pub struct WriteChunk<'a, T: Pod> {
    writer: &'a mut Writer<T>,
    n: usize,
}

impl<'a, T: Pod> WriteChunk<'a, T> {
    /// The first `n` free slots of `writer` (`n` at most its free slots).
    pub(super) fn new(writer: &'a mut Writer<T>, n: usize) -> Self {
        WriteChunk { writer, n }
    }

    /// Number of slots in the chunk.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` if the chunk has no slots (the ring is full).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies `src` into the slots `offset..offset + src.len()` of the chunk
    /// (volatile stores; no reference into the ring is made).
    ///
    /// # Panics
    /// If `offset + src.len() > self.len()` (a bug in the caller, not in the peer).
    #[inline]
    pub fn write(&mut self, offset: usize, src: &[T]) {
        assert!(
            offset <= self.n && src.len() <= self.n - offset,
            "write of {} items at {offset} into a chunk of {}",
            src.len(),
            self.n
        );
        // SAFETY: the chunk's `n` slots from `write` are free and not yet
        // published; the checked range is a part of them.
        unsafe {
            self.writer
                .end
                .shared
                .store_run(self.writer.write() + offset as u64, src)
        };
    }

    /// Copies `value` into slot `i` of the chunk.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn set(&mut self, i: usize, value: T) {
        self.write(i, std::slice::from_ref(&value));
    }

    /// Fills the slots from the first on with the items of `iter`, until the
    /// chunk or the iterator ends; returns how many were written (commit them
    /// with [`commit`](Self::commit)).
    #[inline]
    pub fn fill_from_iter<I: IntoIterator<Item = T>>(&mut self, iter: I) -> usize {
        let (p0, n0, p1, n1) = self.writer.end.shared.runs(self.writer.write(), self.n);
        let mut iter = iter.into_iter();
        let mut done = 0;
        for (p, len) in [(p0, n0), (p1, n1)] {
            for j in 0..len {
                let Some(value) = iter.next() else {
                    return done;
                };
                // SAFETY: slot `j` of a run of `len` free slots inside the array.
                unsafe { store_items(p.add(j), &value, 1) };
                done += 1;
            }
        }
        done
    }

    /// The free slots, in place, as at most two slices (the second is
    /// non-empty when the chunk wraps around the end of the ring). They hold
    /// stale data.
    ///
    /// # Safety
    /// Nothing but these slices may read or write the chunk's slots while
    /// they live: the consumer must be in this process, or a process trusted
    /// to follow the protocol (it reads slots only after they are committed
    /// and never writes them). A hostile consumer that touches them makes this
    /// a data race, which is undefined behaviour. Use the copying methods
    /// otherwise.
    #[inline]
    pub unsafe fn as_mut_slices(&mut self) -> (&mut [T], &mut [T]) {
        let (p0, n0, p1, n1) = self.writer.end.shared.runs(self.writer.write(), self.n);
        // SAFETY: the `n` slots from `write` are free and inside the slots array
        // as two disjoint runs; the `&mut self` borrow makes them exclusive on
        // this side, and the caller promises the consumer does not touch them.
        unsafe {
            (
                std::slice::from_raw_parts_mut(p0, n0),
                std::slice::from_raw_parts_mut(p1, n1),
            )
        }
    }

    /// Publishes the first `k` slots of the chunk.
    ///
    /// # Panics
    /// If `k > self.len()` (a bug in the caller, not in the peer).
    pub fn commit(self, k: usize) {
        assert!(k <= self.n, "commit({k}) of a chunk of {}", self.n);
        if k > 0 {
            self.writer.publish(k);
        }
    }

    /// Publishes every slot of the chunk.
    pub fn commit_all(self) {
        let n = self.n;
        self.commit(n);
    }
}

/// Ready items of a ring handed out by [`Reader::read_chunk`].
///
/// Read them as copies ([`read`](Self::read), [`get`](Self::get),
/// [`iter`](Self::iter)): a hostile producer may rewrite a published slot at
/// any time, so two copies of one item may differ, but a copy never changes.
/// Dropping the chunk without releasing leaves the items in the ring.
#[derive(Debug)]
pub struct ReadChunk<'a, T: Pod> {
    reader: &'a mut Reader<T>,
    n: usize,
}

impl<'a, T: Pod> ReadChunk<'a, T> {
    /// The first `n` ready items of `reader` (`n` at most its ready items).
    pub(super) fn new(reader: &'a mut Reader<T>, n: usize) -> Self {
        ReadChunk { reader, n }
    }

    /// Number of items in the chunk.
    pub fn len(&self) -> usize {
        self.n
    }

    /// `true` if the chunk has no items (the ring is empty).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Copies the items `offset..offset + dst.len()` of the chunk into `dst`
    /// (volatile loads; no reference into the ring is made).
    ///
    /// # Panics
    /// If `offset + dst.len() > self.len()` (a bug in the caller, not in the peer).
    #[inline]
    pub fn read(&self, offset: usize, dst: &mut [T]) {
        assert!(
            offset <= self.n && dst.len() <= self.n - offset,
            "read of {} items at {offset} from a chunk of {}",
            dst.len(),
            self.n
        );
        // SAFETY: the chunk's `n` items from `read` were published (validated)
        // and are not released; the checked range is a part of them.
        unsafe {
            self.reader
                .end
                .shared
                .load_run(self.reader.read() + offset as u64, dst)
        };
    }

    /// A copy of item `i` of the chunk.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    #[inline]
    pub fn get(&self, i: usize) -> T {
        let mut value = T::zeroed();
        self.read(i, std::slice::from_mut(&mut value));
        value
    }

    /// Copies of the items, oldest first.
    #[inline]
    pub fn iter(&self) -> ReadChunkIter<'_, T> {
        let (p0, n0, p1, n1) = self.reader.end.shared.runs(self.reader.read(), self.n);
        ReadChunkIter {
            ptr: p0,
            left: n0,
            next_ptr: p1,
            next_left: n1,
            _chunk: PhantomData,
        }
    }

    /// The items, in place, as at most two slices (oldest first).
    ///
    /// # Safety
    /// Nothing may write the chunk's slots while the slices live: the producer
    /// must be in this process, or a process trusted to follow the protocol
    /// (it never writes a slot between committing it and our release). A
    /// hostile producer that writes them makes this a data race, which is
    /// undefined behaviour (and a value checked once may read differently the
    /// next time). Use the copying methods otherwise.
    #[inline]
    pub unsafe fn as_slices(&self) -> (&[T], &[T]) {
        let (p0, n0, p1, n1) = self.reader.end.shared.runs(self.reader.read(), self.n);
        // SAFETY: the `n` items from `read` were published (validated against the
        // producer's index) and lie inside the slots array; the caller promises
        // the producer does not write them while the slices live.
        unsafe {
            (
                std::slice::from_raw_parts(p0, n0),
                std::slice::from_raw_parts(p1, n1),
            )
        }
    }

    /// Frees the first `k` items of the chunk for the producer.
    ///
    /// # Panics
    /// If `k > self.len()` (a bug in the caller, not in the peer).
    pub fn release(self, k: usize) {
        assert!(k <= self.n, "release({k}) of a chunk of {}", self.n);
        if k > 0 {
            self.reader.retire(k);
        }
    }

    /// Frees every item of the chunk.
    pub fn release_all(self) {
        let n = self.n;
        self.release(n);
    }
}

/// Copies of the items of a [`ReadChunk`], oldest first (see
/// [`ReadChunk::iter`]).
#[derive(Debug)]
pub struct ReadChunkIter<'a, T: Pod> {
    /// Next item of the current run, and how many are left in it.
    ptr: *mut T,
    left: usize,
    /// The run after it (the start of the slots array when the chunk wraps).
    next_ptr: *mut T,
    next_left: usize,
    _chunk: PhantomData<&'a ReadChunk<'a, T>>,
}

impl<T: Pod> Iterator for ReadChunkIter<'_, T> {
    type Item = T;

    #[inline]
    fn next(&mut self) -> Option<T> {
        if self.left == 0 {
            if self.next_left == 0 {
                return None;
            }
            self.ptr = self.next_ptr;
            self.left = std::mem::take(&mut self.next_left);
        }
        let mut value = T::zeroed();
        // SAFETY: `ptr` is the next of `left > 0` published items of the borrowed
        // chunk, inside the slots array; the chunk (and so the reader) is
        // borrowed, so nothing releases them meanwhile.
        unsafe {
            load_items(self.ptr, &mut value, 1);
            self.ptr = self.ptr.add(1);
        }
        self.left -= 1;
        Some(value)
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.left + self.next_left;
        (n, Some(n))
    }
}

impl<T: Pod> ExactSizeIterator for ReadChunkIter<'_, T> {}
