//! Building blocks for the loom model (`--cfg loom`): a ring whose index lines
//! are loom atomics owned by the model, and whose slots loom watches.
//!
//! Loom sees atomics, not plain memory: a slot copied before its index was
//! published (a `Relaxed` where `Release` belongs) would still hold the right
//! value in the model, which runs its threads one at a time. So each slot of a
//! [`ModelRing`] has a shadow `loom::cell::UnsafeCell`, and every copy the
//! ring makes into or out of the slots (`load_items`, `store_items`: all the
//! copying methods, single items and chunks) is announced to it first. Loom
//! then fails the model if a write to a slot and a read or write of it by
//! the other thread are not ordered by the ring's own atomics.

use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

use super::header::{ConsumerLine, ProducerLine};
use super::slots::Shared;
use super::{Reader, Writer};
use crate::sync::AtomicU64;

/// Lines and slots of a ring allocated on the heap for the model.
pub struct ModelRing {
    prod: Box<ProducerLine>,
    cons: Box<ConsumerLine>,
    slots: Box<[std::cell::UnsafeCell<u64>]>,
    /// One loom-tracked cell per slot (see the module docs).
    shadow: Box<[loom::cell::UnsafeCell<()>]>,
}

/// Live model rings, found by the address of their slots. A `std` mutex
/// on purpose: it orders nothing in loom's eyes, so it cannot hide a
/// missing `Release`/`Acquire` in the ring.
static RINGS: Mutex<Vec<Weak<ModelRing>>> = Mutex::new(Vec::new());

/// Tells loom that `bytes` bytes at `addr` are about to be read or
/// written, if they lie in the slots of a live model ring (the ring only
/// copies into or out of its slots).
pub(super) fn touch(addr: *const u8, bytes: usize, write: bool) {
    if bytes == 0 {
        return;
    }
    let addr = addr as usize;
    let ring = {
        let rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
        rings.iter().filter_map(Weak::upgrade).find(|r| {
            let base = r.slots.as_ptr() as usize;
            addr >= base && addr < base + r.slots.len() * size_of::<u64>()
        })
    };
    let Some(ring) = ring else {
        return;
    };
    let base = ring.slots.as_ptr() as usize;
    let first = (addr - base) / size_of::<u64>();
    let last = (addr + bytes - 1 - base) / size_of::<u64>();
    for cell in &ring.shadow[first..=last] {
        if write {
            cell.with_mut(|_| ());
        } else {
            cell.with(|_| ());
        }
    }
}

// SAFETY: only atomics and slots accessed through the SPSC protocol.
unsafe impl Send for ModelRing {}
// SAFETY: as above.
unsafe impl Sync for ModelRing {}

impl ModelRing {
    /// A ring of `capacity` (a power of two) u64 slots.
    pub fn new(capacity: usize) -> Arc<Self> {
        let ring = Arc::new(ModelRing {
            prod: Box::new(ProducerLine {
                write: AtomicU64::new(0),
                consumer_sleep: AtomicU64::new(0),
                consumer_closed: AtomicU64::new(0),
            }),
            cons: Box::new(ConsumerLine {
                read: AtomicU64::new(0),
                producer_sleep: AtomicU64::new(0),
                producer_closed: AtomicU64::new(0),
            }),
            slots: (0..capacity)
                .map(|_| std::cell::UnsafeCell::new(0))
                .collect(),
            shadow: (0..capacity)
                .map(|_| loom::cell::UnsafeCell::new(()))
                .collect(),
        });
        let mut rings = RINGS.lock().unwrap_or_else(|e| e.into_inner());
        rings.retain(|r| r.strong_count() > 0);
        rings.push(Arc::downgrade(&ring));
        ring
    }

    fn shared(self: &Arc<Self>) -> Shared<u64> {
        Shared::new(
            NonNull::from(&*self.prod),
            NonNull::from(&*self.cons),
            // Loom model only (`--cfg loom`), no peer data: a Vec's element
            // pointer is never null, so this `expect` cannot fire.
            NonNull::new(self.slots[0].get()).expect("non-null"),
            self.slots.len() as u64,
            None,
            self.clone(),
        )
    }

    /// Both ends over this ring (they keep it alive).
    pub fn ends(self: &Arc<Self>) -> (Writer<u64>, Reader<u64>) {
        (
            Writer::new(self.shared(), 0, 0),
            Reader::new(self.shared(), 0, 0),
        )
    }
}
