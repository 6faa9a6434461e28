//! A lock-free single-producer single-consumer ring of plain-old-data items over a
//! raw memory region, which may be shared with another (untrusted) process.
//!
//! The ring knows nothing of files, fds or processes: it is given a [`Region`] of
//! memory and a [`RingLayout`], and an optional [`Notify`] hook that it calls when
//! the other side announced it is going to sleep.
//!
//! # Where things are
//!
//! | module | what it owns |
//! |---|---|
//! | `header` | layout constants, [`TypeTag`], the shared header and the two index lines |
//! | `layout` | [`RingLayout`]: geometry, initialising a region, attaching an end |
//! | `claim` | one writer and one reader per region in this process |
//! | `region` | [`Region`] and [`HeapRegion`] |
//! | `slots` | pointers into the region and the volatile copies in and out of the slots |
//! | `wake` | the sleep/wake protocol, written once for both ends, and [`Notify`] |
//! | `end` | what both ends hold and do alike (indices, poisoning, sleeping) |
//! | `writer`, `reader` | [`Writer`] and [`Reader`]: what differs between the ends |
//! | `chunks` | [`WriteChunk`], [`ReadChunk`], [`ReadChunkIter`] |
//!
//! # Memory layout
//!
//! ```text
//! offset   0  Header        magic, layout version, capacity, element size/align, type tag
//! offset 128  producer line write index; consumer's sleep sequence; consumer closed
//! offset 256  consumer line read index;  producer's sleep sequence; producer closed
//! offset 384  slots         capacity x T (offset rounded up to T's alignment)
//! ```
//!
//! Producer and consumer state sit 128 bytes apart (two cache lines, so that the
//! adjacent-line prefetcher does not couple them either). Each side keeps a private
//! copy of its own index and a cached copy of the other side's, and only reads the
//! shared index of the other side when its cache says full (producer) or empty
//! (consumer). Indices count up monotonically and are reduced modulo the capacity
//! (a power of two) to find a slot.
//!
//! An end marks itself closed ([`Writer::mark_closed`]; a channel's
//! endpoints do when they are dropped) so that the other side can tell a
//! close from a death ([`Writer::peer_closed`]): a process that is killed
//! never marks. The flag is a report, not a trust boundary: a hostile peer
//! sets it or not as it likes, which only changes which of
//! [`Error::Disconnected`](crate::Error::Disconnected) and
//! [`Error::PeerDied`](crate::Error::PeerDied) we report.
//!
//! # Trust
//!
//! Every value this side reads from the shared region is validated before it is
//! used: the other side's index must lie in `[ours, ours + capacity]` (producer view:
//! `read <= write <= read + capacity`), or the endpoint reports [`Error::Corrupt`](crate::Error::Corrupt) and
//! is poisoned. Capacity, sizes and offsets always come from the local
//! [`RingLayout`], never from the shared header, which is only compared against it.
//!
//! # No references into memory the peer can write
//!
//! A peer process may write any byte of the region at any time. Rust lets no
//! `&T` or `&mut T` point at memory that changes under it (that is a data race,
//! undefined behaviour, and lets the compiler read a value twice and see two
//! different values), so the safe API never creates one over the slots:
//! [`Writer::push`], [`Writer::push_slice`], [`Reader::pop`],
//! [`Reader::pop_slice`] and the chunks' [`WriteChunk::write`],
//! [`WriteChunk::fill_from_iter`], [`ReadChunk::read`], [`ReadChunk::get`] and
//! [`ReadChunk::iter`] copy items between the slots and local memory with
//! volatile loads and stores (each byte is read once; one `u64` is one plain
//! `mov`, a run is copied in 16-byte moves on x86_64). The index lines are
//! only touched through
//! atomics. What a copy yields may be garbage from a hostile peer, but it is
//! a valid `T` (see below) that cannot change after the copy.
//!
//! In-place views, [`ReadChunk::as_slices`] and [`WriteChunk::as_mut_slices`],
//! are `unsafe fn`s (as shmem-ipc's `*_trusted` calls): their caller promises
//! that the peer does not touch the slots while the slices live (both ends are
//! in this process, or the peer is trusted). Calling one without `unsafe` does
//! not compile (`E0133`, checked by rustdoc on nightly; each is followed by
//! its twin, which differs only by the `unsafe` block and compiles):
//!
//! ```compile_fail,E0133
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! let chunk = reader.read_chunk(1)?;
//! let (a, _) = chunk.as_slices(); // error[E0133]: call to unsafe function
//! assert_eq!(a, &[7]);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! let chunk = reader.read_chunk(1)?;
//! // SAFETY: both ends are ours; the writer does not run while `a` lives.
//! let (a, _) = unsafe { chunk.as_slices() };
//! assert_eq!(a, &[7]);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```compile_fail,E0133
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! let mut chunk = writer.write_chunk(1)?;
//! chunk.as_mut_slices().0[0] = 7; // error[E0133]: call to unsafe function
//! chunk.commit_all();
//! assert_eq!(reader.pop()?, 7);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! let mut chunk = writer.write_chunk(1)?;
//! // SAFETY: both ends are ours; the reader does not run meanwhile.
//! unsafe { chunk.as_mut_slices() }.0[0] = 7;
//! chunk.commit_all();
//! assert_eq!(reader.pop()?, 7);
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # One writer and one reader per ring in this process
//!
//! Two `Writer`s over the same memory in one process would write the same
//! slots from two threads: a data race in safe code. So attaching an end
//! ([`RingLayout::writer`], [`RingLayout::reader`], both by
//! [`RingLayout::init`]) claims it in a process-wide table keyed by the
//! region's address, and fails with [`Error::InvalidArgument`](crate::Error::InvalidArgument) while that end
//! is attached (or while the other end is attached with another
//! [`RingLayout`]: two geometries over one memory); dropping the end releases
//! the claim. The claim is deliberately
//! not a flag in the shared header: a hostile peer could set it to keep us out,
//! or clear it while we hold it and so let a second end of ours attach. The
//! peer's own ends (in its process, through its own mapping) are outside our
//! table and need not be: its writes are the hostile writes the ring already
//! survives.
//!
//! # Why `Pod` and not `Copy`
//!
//! Items are `T: bytemuck::Pod`: every bit pattern is a valid `T`. `Copy` alone is
//! not enough when the peer is untrusted: a hostile peer can write any bytes into
//! the slots, and reading a `bool` that holds 2, a `char` that is a surrogate or an
//! enum with an unknown discriminant is undefined behaviour in Rust, which a
//! `Copy` bound would allow.
//!
//! # Example
//!
//! ```
//! use shmring::ring::{HeapRegion, RingLayout, TypeTag};
//! use std::sync::Arc;
//!
//! let layout = RingLayout::new::<u32>(4, TypeTag::of::<u32>("example"))?;
//! let region = Arc::new(HeapRegion::new(layout.total_size()));
//! let (mut writer, mut reader) = layout.init::<u32>(region)?;
//! writer.push(7)?;
//! writer.push_slice(&[8, 9])?;
//! assert_eq!(reader.pop()?, 7);
//! let mut out = [0u32; 4];
//! assert_eq!(reader.pop_slice(&mut out)?, 2);
//! assert_eq!(&out[..2], &[8, 9]);
//! # Ok::<(), shmring::Error>(())
//! ```

mod chunks;
mod claim;
mod end;
mod header;
mod layout;
mod reader;
mod region;
mod slots;
mod wake;
mod writer;

#[cfg(loom)]
pub mod model;

pub use chunks::{ReadChunk, ReadChunkIter, WriteChunk};
pub use header::{TypeTag, LAYOUT_VERSION, MAGIC, MAX_ALIGN, MAX_CAPACITY, MAX_REGION_SIZE};
pub use layout::RingLayout;
pub use reader::Reader;
pub use region::{HeapRegion, Region};
pub use wake::Notify;
pub use writer::Writer;

#[cfg(all(test, not(loom)))]
mod tests;
