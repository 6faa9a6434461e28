//! Atomics used by the ring: `std`'s normally, `loom`'s under `--cfg loom` so the
//! model checker explores every interleaving of the index and sleep-flag protocol.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;
