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
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks)]
#![cfg(target_os = "linux")]

mod error;
mod sync;

pub mod channel;
pub mod frames;
#[doc(hidden)]
pub mod fuzzing;
pub mod handshake;
pub mod ring;
pub mod segment;
pub mod signal;

pub use bytemuck::{Pod, Zeroable};
pub use channel::{Config, Consumer, Producer};
pub use error::{Error, Result};
pub use signal::SignalKind;

/// Compiles the Rust example of the project README.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
