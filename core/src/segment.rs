//! Shared-memory segments: a memfd, sized, sealed and mapped, and the validation
//! of a memfd received from an untrusted peer.
//!
//! A segment we create is sealed against shrinking and growing, so no process can
//! truncate it under a mapping and make its readers take `SIGBUS`. A segment we
//! receive is only mapped after [`Segment::from_fd`] proved that it is a memfd
//! carrying those seals and that it is at least as long as the local side expects;
//! only the locally expected length is mapped.
//!
//! ```
//! use shmring::segment::{Access, Segment};
//!
//! let seg = Segment::create("example", 10_000)?;
//! assert_eq!(seg.len(), 12_288); // page-rounded
//! let map = seg.map(seg.len(), Access::ReadWrite)?;
//! assert_eq!(map.len(), 12_288);
//! # Ok::<(), shmring::Error>(())
//! ```

use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use memfd::{FileSeal, MemfdOptions};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};

use crate::sys::{self, syscall};
use crate::{Error, Result};

/// The seals every shared segment must carry.
pub const REQUIRED_SEALS: i32 = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW;

/// How a mapping may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Read only (frames of an arena another process writes).
    ReadOnly,
    /// Read and write (rings: both sides write their own index).
    ReadWrite,
}

/// A sealed memfd of known length.
#[derive(Debug)]
pub struct Segment {
    fd: OwnedFd,
    len: usize,
}

/// The size of a page on this machine.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if p > 0 {
        p as usize
    } else {
        4096
    }
}

impl Segment {
    /// Creates a memfd named `name` (shown in `/proc/PID/fd`) of at least `len`
    /// bytes, rounded up to a page, zero-filled, close-on-exec, and sealed against
    /// shrinking and growing.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a length of zero (or one that
    /// overflows when rounded up); [`Error::Io`] if `memfd_create`,
    /// `ftruncate` or sealing fails (out of memory or fds, say).
    pub fn create(name: &str, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::InvalidArgument("segment of zero bytes".into()));
        }
        let len = len
            .checked_next_multiple_of(page_size())
            .ok_or_else(|| Error::InvalidArgument("segment size overflows".into()))?;
        let mfd = MemfdOptions::default()
            .close_on_exec(true)
            .allow_sealing(true)
            .create(name)
            .map_err(|e| Error::io("memfd_create", memfd_err(e)))?;
        mfd.as_file()
            .set_len(len as u64)
            .map_err(|e| Error::io("ftruncate memfd", e))?;
        mfd.add_seals(&[FileSeal::SealShrink, FileSeal::SealGrow])
            .map_err(|e| Error::io("seal memfd", memfd_err(e)))?;
        Ok(Segment {
            fd: mfd.into_file().into(),
            len,
        })
    }

    /// Validates a memfd received from a peer before anything maps it: it must be
    /// a regular file that supports seals (a memfd), carry `F_SEAL_SHRINK` and
    /// `F_SEAL_GROW`, and be at least `expected_len` bytes long.
    ///
    /// The seals are read before the size: once `F_SEAL_SHRINK` is set nobody
    /// can shrink the file again, so the size read after it holds for as long
    /// as the mapping. (Read the other way round, a peer could shrink the file
    /// between the two reads and only then seal it, and our mapping would
    /// reach past its end: `SIGBUS` on the first touch.)
    ///
    /// The returned segment's length is `expected_len`: a longer file is accepted
    /// but only the expected part is ever mapped.
    ///
    /// # Errors
    ///
    /// [`Error::BadSegment`] for an fd that is not a memfd, lacks the seals,
    /// is not a regular file or is shorter than `expected_len`;
    /// [`Error::InvalidArgument`] for an `expected_len` of zero.
    pub fn from_fd(fd: OwnedFd, expected_len: usize) -> Result<Self> {
        if expected_len == 0 {
            return Err(Error::InvalidArgument("expected length of zero".into()));
        }
        let seals = seals_of(fd.as_fd()).map_err(|e| match e {
            Error::Io { source, .. } if source.raw_os_error() == Some(libc::EINVAL) => {
                Error::BadSegment("not a memfd (file does not support seals)".into())
            }
            other => other,
        })?;
        // The window a peer would use: after we read one property of the file,
        // before we read the other.
        #[cfg(test)]
        tests::between_checks(fd.as_fd());
        if seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(Error::BadSegment(format!(
                "memfd lacks the shrink/grow seals (seals {seals:#x})"
            )));
        }
        let st = sys::fstat(fd.as_fd()).map_err(|e| Error::io("fstat segment", e))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(Error::BadSegment(format!(
                "not a regular file (mode {:o})",
                st.st_mode
            )));
        }
        if st.st_size < 0 || (st.st_size as u64) < expected_len as u64 {
            return Err(Error::BadSegment(format!(
                "memfd has {} bytes, {} expected",
                st.st_size, expected_len
            )));
        }
        Ok(Segment {
            fd,
            len: expected_len,
        })
    }

    /// Length in bytes (what [`map`](Self::map) may map).
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the segment has no bytes (never, for a valid segment).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The seals currently on the memfd (`F_SEAL_*` bits).
    pub fn seals(&self) -> Result<i32> {
        seals_of(self.fd.as_fd())
    }

    /// Adds `F_SEAL_FUTURE_WRITE` (no new writable mapping or `write()` may be made
    /// by anyone; existing writable mappings keep working) and `F_SEAL_SEAL`.
    /// Call it after the writer mapped the segment, before passing the fd to
    /// readers, so that they can only map it read-only.
    pub fn seal_future_write(&self) -> Result<()> {
        add_seals(
            self.fd.as_fd(),
            libc::F_SEAL_FUTURE_WRITE | libc::F_SEAL_SEAL,
        )
    }

    /// Adds `F_SEAL_SEAL`: no further seals can be added, nor removed.
    pub fn seal_seals(&self) -> Result<()> {
        add_seals(self.fd.as_fd(), libc::F_SEAL_SEAL)
    }

    /// Maps the first `len` bytes (at most [`len`](Self::len)) shared.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if `len` is zero or beyond the segment;
    /// [`Error::Io`] if `mmap` fails (read-write access to a segment sealed
    /// with [`seal_future_write`](Self::seal_future_write), say).
    pub fn map(&self, len: usize, access: Access) -> Result<Mapping> {
        if len == 0 || len > self.len {
            return Err(Error::InvalidArgument(format!(
                "cannot map {len} bytes of a {}-byte segment",
                self.len
            )));
        }
        let prot = match access {
            Access::ReadOnly => ProtFlags::PROT_READ,
            Access::ReadWrite => ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        };
        let nz = NonZeroUsize::new(len).ok_or_else(|| Error::InvalidArgument("len 0".into()))?;
        // SAFETY: a fresh shared mapping chosen by the kernel (no fixed address), of
        // a validated memfd that is sealed against shrinking, so every mapped page
        // stays backed for the mapping's lifetime.
        let ptr = unsafe { mmap(None, nz, prot, MapFlags::MAP_SHARED, &self.fd, 0) }
            .map_err(|e| Error::errno("mmap segment", e))?;
        Ok(Mapping { ptr, len })
    }

    /// Gives up the fd (to pass it to another process).
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// Duplicates the fd (close-on-exec).
    pub fn try_clone_fd(&self) -> Result<OwnedFd> {
        self.fd
            .try_clone()
            .map_err(|e| Error::io("dup segment fd", e))
    }
}

impl AsFd for Segment {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Segment {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn memfd_err(e: memfd::Error) -> std::io::Error {
    match e {
        memfd::Error::Create(e) | memfd::Error::AddSeals(e) | memfd::Error::GetSeals(e) => e,
    }
}

fn seals_of(fd: BorrowedFd<'_>) -> Result<i32> {
    // SAFETY: F_GET_SEALS takes no pointer argument.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_GET_SEALS)) }
        .map_err(|e| Error::io("F_GET_SEALS", e))
}

pub(crate) fn add_seals(fd: BorrowedFd<'_>, seals: i32) -> Result<()> {
    // SAFETY: F_ADD_SEALS takes an int argument, no pointer.
    unsafe { syscall!(fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals)) }
        .map_err(|e| Error::io("F_ADD_SEALS", e))?;
    Ok(())
}

/// A shared mapping of a segment; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<c_void>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; concurrent access is governed by
// the protocols built on top of it (atomics in the ring, slot ownership in frames).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Start of the mapping.
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr().cast()
    }

    /// Length of the mapping in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` if the mapping has no bytes (never).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own this mapping (made by `Segment::map`) and nothing refers
        // to it once the owner drops it. A failure cannot be handled here.
        let _ = unsafe { munmap(self.ptr, self.len) };
    }
}

#[cfg(test)]
mod tests;

/// Maps the whole file behind `fd` shared and read-write, whatever its seals
/// say (`F_SEAL_FUTURE_WRITE` makes this fail), and never unmaps it: what a
/// hostile peer does with a ring segment it was sent, for tests of the side
/// that sent it (with the `test-support` feature only). Returns the base and
/// the length.
///
/// # Errors
///
/// [`Error::Io`] when `fstat` or `mmap` fails.
#[cfg(feature = "test-support")]
pub fn map_writable_forever(fd: BorrowedFd<'_>) -> Result<(*mut u8, usize)> {
    let len = usize::try_from(sys::fstat(fd).map_err(|e| Error::io("fstat", e))?.st_size)
        .map_err(|_| Error::InvalidArgument("negative file size".into()))?;
    // SAFETY: a fresh shared mapping of `len` bytes at an address the kernel
    // picks; it aliases no Rust object, and nothing unmaps it.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(Error::io("mmap", std::io::Error::last_os_error()));
    }
    Ok((p.cast(), len))
}
