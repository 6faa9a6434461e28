//! The plugin's error type.

/// What can go wrong inside the elements.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The shared-memory layer failed (peer gone, bad descriptor, ...).
    #[error(transparent)]
    Shmring(#[from] shmring::Error),
    /// A caps string from the peer does not parse.
    #[error("caps from the peer do not parse: {0:?}")]
    BadCaps(String),
}
