//! # shmring
//!
//! Lock-free single-producer single-consumer rings of plain-old-data items in
//! sealed memfd shared memory, with wake-ups through an eventfd (or a pipe) only
//! when a side actually sleeps, and file descriptors passed over a Unix socket.
//! Built for real-time audio callbacks and video between processes on one Linux
//! host, where the process on the other side is **not trusted**.
//!
//! The layers, each usable alone (see `ARCHITECTURE.md` in the repository):
//!
//! | module | what it is |
//! |---|---|
//! | [`ring`] | the SPSC ring over a raw memory region |
//! | [`segment`] | a sealed memfd, its mapping, and validation of a received one |
//! | [`signal`] | a wake-up fd: eventfd or pipe |
//! | [`channel`] | [`Producer`] / [`Consumer`]: segment + ring + signals + peer link |
//! | [`handshake`] | passing a channel's fds over a Unix socket |
//! | [`frames`] | media frames and stream events: slot arena + descriptor ring + return ring |
//!
//! # Example: two threads
//!
//! ```
//! use std::time::Duration;
//! use shmring::{channel, Config};
//!
//! let (mut tx, mut rx) = channel::pair::<u64>(&Config::new(1024))?;
//! let t = std::thread::spawn(move || -> shmring::Result<()> {
//!     for i in 0..10_000u64 {
//!         tx.push_blocking(i, Some(Duration::from_secs(5)))?;
//!     }
//!     Ok(())
//! });
//! for i in 0..10_000u64 {
//!     assert_eq!(rx.pop_blocking(Some(Duration::from_secs(5)))?, i);
//! }
//! t.join().unwrap()?;
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! # Your own element types
//!
//! Items are plain old data ([`Pod`]): `#[repr(C)]` (or `transparent`)
//! structs of numbers and arrays, without padding, pointers or references.
//! Derive [`Pod`] and [`Zeroable`] through this crate, with no dependency
//! of your own on `bytemuck`: the `#[bytemuck(crate = "shmring::bytemuck")]`
//! line tells the derive where this crate re-exports [`bytemuck`].
//!
//! ```
//! use std::time::Duration;
//! use shmring::{channel, Config, Pod, Zeroable};
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
//! #[bytemuck(crate = "shmring::bytemuck")]
//! struct Sample {
//!     pts: u64,
//!     left: f32,
//!     right: f32,
//! }
//!
//! let (mut tx, mut rx) = channel::pair::<Sample>(&Config::new(64))?;
//! tx.try_push(Sample { pts: 7, left: 0.5, right: -0.5 })?;
//! let got = rx.pop_blocking(Some(Duration::from_secs(5)))?;
//! assert_eq!(got, Sample { pts: 7, left: 0.5, right: -0.5 });
//! # Ok::<(), shmring::Error>(())
//! ```
//!
//! A struct with padding (here 3 bytes after `flag`) is refused at compile
//! time: the padding bytes would carry whatever the stack held into the
//! peer's memory. Add the padding as an explicit field (`_pad: [u8; 3]`).
//!
//! ```compile_fail
//! use shmring::{Pod, Zeroable};
//!
//! #[repr(C)]
//! #[derive(Clone, Copy, Pod, Zeroable)]
//! #[bytemuck(crate = "shmring::bytemuck")]
//! struct Padded {
//!     flag: u8,
//!     value: u32,
//! }
//! ```
//!
//! Both sides of a channel must use the same type: see
//! [`Config::type_name`] for how they are told apart.
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg(target_os = "linux")]

mod error;
mod sync;
mod sys;

pub mod channel;
pub mod frames;
#[cfg(feature = "test-support")]
pub mod fuzzing;
pub mod handshake;
pub mod ring;
pub mod segment;
pub mod signal;

/// The `bytemuck` crate this one uses, for the derives of [`Pod`] and
/// [`Zeroable`] (see [Your own element types](crate#your-own-element-types)).
pub use bytemuck;
pub use bytemuck::{Pod, Zeroable};
pub use channel::{Config, Consumer, PeerWatch, Producer};
pub use error::{ElemType, Error, Peer, Result};
pub use signal::SignalKind;

/// Compiles the Rust example of the project README.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
