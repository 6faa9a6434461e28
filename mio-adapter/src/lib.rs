//! mio integration for shmring endpoints (work in progress: see issue 3).
#![deny(missing_docs)]
