//! GStreamer elements for shmring (work in progress: see issue 4).
#![deny(missing_docs)]
