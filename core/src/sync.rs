//! Atomics used by the ring and the frame arena: `std`'s normally, `loom`'s
//! under `--cfg loom` so the model checker explores every interleaving of the
//! index and sleep-flag protocol and of the arena's slot states.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{fence, AtomicU32, AtomicU64};
#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{fence, AtomicU32, AtomicU64};

pub(crate) use std::sync::atomic::Ordering;
