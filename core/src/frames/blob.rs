//! Blobs: payloads that do not fit an arena slot, each in a memfd of its own
//! that the producer fills and then seals against every write.
//!
//! A blob is made once and can be sent to any number of consumers (its fd
//! travels on each consumer's message socket). Once sealed `F_SEAL_WRITE`, no
//! process, the producer included, can change its bytes: a consumer may hand
//! them to a parser without copying them first, which is not true of an arena
//! slot (the producer keeps its writable mapping of the arena).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;

use crate::segment::{add_seals, Access, Mapping, Segment};
use crate::{Error, Result};

/// Seals a blob must carry: its size is fixed and nobody can write it.
const BLOB_SEALS: i32 =
    libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;

/// An immutable payload in a sealed memfd of its own (producer side). Cheap
/// to clone.
#[derive(Debug, Clone)]
pub struct Blob {
    inner: Arc<Segment>,
    len: usize,
}

impl Blob {
    /// A blob holding a copy of `data`: a new memfd, filled through a
    /// temporary mapping, unmapped, then sealed against writes.
    pub fn copy_of(data: &[u8]) -> Result<Self> {
        Self::fill(data.len(), |buf| buf.copy_from_slice(data))
    }

    /// A blob of `len` bytes written by `f` (the buffer is zeroed at first).
    pub fn fill(len: usize, f: impl FnOnce(&mut [u8])) -> Result<Self> {
        if len == 0 || len > u32::MAX as usize {
            return Err(Error::InvalidArgument(format!("blob of {len} bytes")));
        }
        let seg = Segment::create("shmring-blob", len)?;
        {
            let map = seg.map(len, Access::ReadWrite)?;
            // SAFETY: `len` bytes of a live read-write mapping of a memfd made
            // just above and not passed to anyone yet, so nothing else reads
            // or writes it; `map` outlives the slice.
            let buf = unsafe { std::slice::from_raw_parts_mut(map.as_ptr(), len) };
            f(buf);
        } // unmapped: F_SEAL_WRITE refuses while a writable mapping exists
        add_seals(seg.as_fd(), BLOB_SEALS)?;
        Ok(Blob {
            inner: Arc::new(seg),
            len,
        })
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a blob has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

/// A received blob, validated and mapped read-only (consumer side).
#[derive(Debug)]
pub(crate) struct BlobView {
    map: Mapping,
    len: usize,
}

impl BlobView {
    /// Validates a blob memfd from the producer: a memfd sealed against
    /// shrinking, growing and writing, at least `len` bytes long; maps its
    /// first `len` bytes read-only.
    pub(crate) fn open(fd: OwnedFd, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::BadDescriptor("blob of 0 bytes".into()));
        }
        let seg = Segment::from_fd(fd, len)?;
        let seals = seg.seals()?;
        let need = libc::F_SEAL_WRITE | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;
        if seals & need != need {
            return Err(Error::BadSegment(format!(
                "blob memfd lacks F_SEAL_WRITE (seals {seals:#x}): the producer could change it under us"
            )));
        }
        let map = seg.map(len, Access::ReadOnly)?;
        Ok(BlobView { map, len })
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes of a live read-only mapping (owned by `self`) of
        // a memfd sealed against shrinking (pages stay backed) and writing
        // (nobody changes them while the slice lives).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr(), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_is_sealed_and_reads_back() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let b = Blob::copy_of(&data).expect("blob");
        assert_eq!(b.len(), data.len());
        let fd = b.fd().try_clone_to_owned().expect("dup");
        let v = BlobView::open(fd, data.len()).expect("open");
        assert_eq!(v.bytes(), &data[..]);
        // Nobody can write it any more, through a mapping or write(2).
        let seg = Segment::from_fd(b.fd().try_clone_to_owned().expect("dup"), 4096).expect("seg");
        assert!(seg.map(4096, Access::ReadWrite).is_err());
    }

    #[test]
    fn an_unsealed_memfd_is_refused_as_a_blob() {
        let seg = Segment::create("not-a-blob", 4096).expect("segment");
        let err = BlobView::open(seg.into_fd(), 4096).expect_err("accepted");
        assert!(matches!(err, Error::BadSegment(_)), "{err}");
    }

    #[test]
    fn empty_and_oversized_blobs_are_refused() {
        assert!(Blob::copy_of(&[]).is_err());
    }
}
