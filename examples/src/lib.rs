//! Shared bits of the example programs.
#![deny(missing_docs)]

/// Start value of [`checksum_step`] folds.
pub const CHECKSUM_INIT: u64 = 0xcbf2_9ce4_8422_2325;

/// One step of the order-sensitive checksum that producers and consumers of
/// the demos both print (FNV-style multiply, then rotate, so swapped or lost
/// items change the result).
#[inline]
pub fn checksum_step(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(17)
}

pub mod capture;
pub mod device;
pub mod handoff;
pub mod playback;
pub mod stop;
