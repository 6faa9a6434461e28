//! What the three endpoint sources ([`MioConsumer`](crate::MioConsumer),
//! [`MioProducer`](crate::MioProducer),
//! [`MioFrameReceiver`](crate::MioFrameReceiver)) share word for word,
//! written once: [`Deref`](std::ops::Deref)/[`DerefMut`](std::ops::DerefMut)
//! to the endpoint, the [`mio::event::Source`] impl through their
//! [`WakeCycle`](crate::wakeup::WakeCycle), and the accessors `get_ref`,
//! `into_inner`, `wake_stats` and `throttled_until`.
//!
//! Each source is a struct with the fields `wake: WakeCycle` and
//! `inner: Endpoint`, where the endpoint has `as_fd` (its wake-up fd) and
//! `link_fd`.

/// Implements the shared parts for `$source` (generic over `T: Pod` when
/// written `$source<T>`) wrapping `$endpoint`, called `$name` in the docs.
macro_rules! endpoint_source {
    ($source:ident $(<$T:ident>)?, $endpoint:ty, $name:literal) => {
        impl$(<$T: shmring::Pod>)? $source$(<$T>)? {
            #[doc = concat!("The wrapped ", $name, ".")]
            pub fn get_ref(&self) -> &$endpoint {
                &self.inner
            }

            #[doc = concat!(
                "Unwraps the ", $name, ", removing it from the `Poll` it was registered with."
            )]
            pub fn into_inner(self) -> $endpoint {
                let Self { wake, inner, .. } = self;
                drop(wake);
                inner
            }

            /// Counters of wake-ups, empty wake-ups and throttles.
            pub fn wake_stats(&self) -> $crate::WakeStats {
                self.wake.limiter.stats
            }

            /// The instant until which the wake-up fd is paused, if it is.
            pub fn throttled_until(&self) -> Option<std::time::Instant> {
                self.wake.limiter.paused_until
            }
        }

        impl$(<$T: shmring::Pod>)? std::ops::Deref for $source$(<$T>)? {
            type Target = $endpoint;
            fn deref(&self) -> &$endpoint {
                &self.inner
            }
        }

        impl$(<$T: shmring::Pod>)? std::ops::DerefMut for $source$(<$T>)? {
            fn deref_mut(&mut self) -> &mut $endpoint {
                &mut self.inner
            }
        }

        impl$(<$T: shmring::Pod>)? mio::event::Source for $source$(<$T>)? {
            fn register(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                use std::os::fd::AsFd;
                let fds = (self.inner.as_fd(), self.inner.link_fd());
                self.wake.register(registry, token, interests, fds)
            }

            fn reregister(
                &mut self,
                registry: &mio::Registry,
                token: mio::Token,
                interests: mio::Interest,
            ) -> std::io::Result<()> {
                self.wake.reregister(registry, token, interests)
            }

            fn deregister(&mut self, registry: &mio::Registry) -> std::io::Result<()> {
                self.wake.deregister(registry)
            }
        }
    };
}

pub(crate) use endpoint_source;
