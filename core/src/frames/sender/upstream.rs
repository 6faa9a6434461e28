//! A consumer's upstream messages, taken on any thread.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::frames::messages::{self, Message};
use crate::{Error, Result};

/// Takes a consumer's upstream messages (for GStreamer: upstream events)
/// on any thread, apart from its [`FrameSender`](super::FrameSender).
#[derive(Debug)]
pub struct UpstreamReceiver {
    pub(super) sock: OwnedFd,
}

impl UpstreamReceiver {
    /// The next upstream message, if one is queued. [`Error::Disconnected`]
    /// once the consumer closed its end, [`Error::Rejected`] if it refused
    /// the stream; anything but an upstream message (or the consumer's
    /// "ready") is [`Error::Protocol`].
    pub fn try_recv(&self) -> Result<Option<String>> {
        upstream_message(self.sock.as_fd())
    }
}

/// The next upstream message on a producer's message socket, skipping the
/// consumer's "ready".
pub(super) fn upstream_message(sock: BorrowedFd<'_>) -> Result<Option<String>> {
    loop {
        return match messages::try_recv(sock)? {
            None => Ok(None),
            Some(Message::Upstream(s)) => Ok(Some(s)),
            Some(Message::Ready) => continue,
            Some(Message::Refuse(why)) => Err(Error::Rejected(why)),
            Some(_) => Err(Error::Protocol("consumer sent a producer's message".into())),
        };
    }
}

impl AsFd for UpstreamReceiver {
    /// Readable when a message is queued or the consumer hung up.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}
