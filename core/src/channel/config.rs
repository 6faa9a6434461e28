//! [`Config`]: the settings of a channel, for both ends, and the default
//! type name that tells element types apart.

use std::time::Duration;

use bytemuck::Pod;

use crate::ring::{RingLayout, TypeTag};
use crate::signal::SignalKind;
use crate::Result;

/// Default spin before a blocking call sleeps.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default largest segment a connecting side accepts from a listener.
pub const DEFAULT_MAX_SEGMENT: usize = 1 << 30;

/// The setters of the settings every connection has (`signal`, `spin`,
/// `handshake_timeout`, `connect_timeout`), for [`Config`] and
/// [`FrameConfig`](crate::frames::FrameConfig), which both have these fields.
macro_rules! link_setters {
    () => {
        /// Sets [`signal`](Self::signal).
        pub fn signal(mut self, kind: $crate::signal::SignalKind) -> Self {
            self.signal = kind;
            self
        }

        /// Sets [`spin`](Self::spin).
        pub fn spin(mut self, spin: std::time::Duration) -> Self {
            self.spin = spin;
            self
        }

        /// Sets [`handshake_timeout`](Self::handshake_timeout).
        pub fn handshake_timeout(mut self, t: std::time::Duration) -> Self {
            self.handshake_timeout = t;
            self
        }

        /// Sets [`connect_timeout`](Self::connect_timeout).
        pub fn connect_timeout(mut self, t: std::time::Duration) -> Self {
            self.connect_timeout = Some(t);
            self
        }
    };
}
pub(crate) use link_setters;

/// Settings of a channel, for both ends.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ring capacity in items, rounded up to a power of two. Used by the side that
    /// creates the channel; a connecting side accepts the creator's choice within
    /// [`max_segment`](Self::max_segment).
    pub capacity: usize,
    /// Name of the element type, which both sides must agree on beside its
    /// size and alignment. `None` (the default): [`std::any::type_name`] of
    /// the element type `T` the channel is made for, so `[f32; 2]` stereo
    /// frames never meet `[i32; 2]` pairs, nor `[u64; 3]` a 24-byte struct.
    /// `type_name` output is only stable within one build: set a name of
    /// your own when the two sides are built separately (from different
    /// crates, versions or compilers), e.g. `"myapp-stereo-f32-v1"`. See
    /// [`type_name_for`](Self::type_name_for).
    pub type_name: Option<String>,
    /// Wake-up fds: [`SignalKind::Socket`] by default, the only kind no peer
    /// can turn against us (see [`crate::signal`]).
    pub signal: SignalKind,
    /// Longest a blocking call busy-polls before it sleeps (less while recent
    /// spins ran out for nothing; see the [module docs](crate::channel)). `Duration::ZERO` for
    /// callers that must never burn CPU.
    pub spin: Duration,
    /// Limit on the handshake once connected (the listener's answer; on a
    /// listener, the peer's hello), else [`Error::HandshakeTimeout`](crate::Error::HandshakeTimeout).
    pub handshake_timeout: Duration,
    /// How long [`connect_producer`](crate::handshake::connect_producer) /
    /// [`connect_consumer`](crate::handshake::connect_consumer) retry
    /// (every [`CONNECT_RETRY_EVERY`](crate::handshake::CONNECT_RETRY_EVERY))
    /// while nothing listens at the path yet, before
    /// [`Error::NotListening`](crate::Error::NotListening). `None` (the default): as long as
    /// [`handshake_timeout`](Self::handshake_timeout) (5 s by default).
    /// `Some(Duration::ZERO)`: one attempt. A missing directory, or a file
    /// that is not a socket at the path, fails at once ([`Error::BadPath`](crate::Error::BadPath)).
    pub connect_timeout: Option<Duration>,
    /// Largest ring segment (bytes) a connecting side agrees to map.
    pub max_segment: usize,
}

impl Config {
    /// A configuration for a ring of `capacity` items and defaults for the rest.
    pub fn new(capacity: usize) -> Self {
        Config {
            capacity,
            type_name: None,
            signal: SignalKind::default(),
            spin: DEFAULT_SPIN,
            handshake_timeout: Duration::from_secs(5),
            connect_timeout: None,
            max_segment: DEFAULT_MAX_SEGMENT,
        }
    }

    /// Sets [`type_name`](Self::type_name): an explicit name overrides the
    /// default ([`std::any::type_name`] of the element type). At most
    /// [`NAME_MAX`](crate::handshake::NAME_MAX) bytes.
    pub fn type_name(mut self, name: impl Into<String>) -> Self {
        self.type_name = Some(name.into());
        self
    }

    /// The name both sides compare for element type `T`: the explicit
    /// [`type_name`](Self::type_name), else [`std::any::type_name::<T>()`]
    /// (a longer one than [`NAME_MAX`](crate::handshake::NAME_MAX) bytes is
    /// shortened to a hash of the whole and its tail, the same on both sides).
    ///
    /// ```
    /// use shmring::Config;
    ///
    /// assert_eq!(Config::new(8).type_name_for::<[u64; 3]>(), "[u64; 3]");
    /// assert_eq!(Config::new(8).type_name("stereo").type_name_for::<[u64; 3]>(), "stereo");
    /// ```
    pub fn type_name_for<T>(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow;
        if let Some(name) = &self.type_name {
            return Cow::Borrowed(name);
        }
        Cow::Owned(default_type_name(std::any::type_name::<T>()))
    }

    /// The type tag (size, alignment, name hash) of `T` under this config.
    pub(crate) fn tag<T>(&self) -> TypeTag {
        TypeTag::of::<T>(&self.type_name_for::<T>())
    }

    link_setters!();

    pub(crate) fn connect_timeout_or_default(&self) -> Duration {
        self.connect_timeout.unwrap_or(self.handshake_timeout)
    }

    pub(crate) fn layout<T: Pod>(&self) -> Result<RingLayout> {
        RingLayout::new::<T>(self.capacity, self.tag::<T>())
    }
}

/// `name` if it fits a hello, else the FNV-1a hash of all of it in hex, a
/// `~` and as much of its tail as fits.
fn default_type_name(name: &str) -> String {
    let max = crate::handshake::NAME_MAX;
    if name.len() <= max {
        return name.to_string();
    }
    let hash = format!("{:016x}~", TypeTag::of::<()>(name).name_hash);
    let mut start = name.len() - (max - hash.len());
    while !name.is_char_boundary(start) {
        start += 1;
    }
    hash + &name[start..]
}

impl Default for Config {
    fn default() -> Self {
        Config::new(1024)
    }
}
