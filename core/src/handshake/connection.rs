//! An accepted connection ([`Connection`]) and the listening side's half of
//! the handshake: read the hello, check it against this side's settings,
//! answer with a welcome carrying a new channel's fds, or with a refusal
//! that says why.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Instant;

use bytemuck::Pod;

use super::fds::{recv_with_fds, send_with_fds};
use super::wire::{HelloInfo, STATUS_INCOMPATIBLE};
use super::{Hello, PeerCred, Role, Welcome};
use crate::channel::{ChannelFds, Config};
use crate::sys;
use crate::{Consumer, ElemType, Error, Peer, Producer, Result};

/// Room for a hello and one byte more (a longer message is truncated, and
/// refused).
const HELLO_BUF: usize = std::mem::size_of::<Hello>() + 1;

/// An accepted connection, before the channel is set up.
#[derive(Debug)]
pub struct Connection {
    fd: OwnedFd,
    cred: PeerCred,
    /// The hello, once an [`Intake`](super::Intake) read it (bytes, length).
    hello: Option<([u8; HELLO_BUF], usize)>,
}

impl Connection {
    /// A connection on an already connected `SOCK_SEQPACKET` socket (one end
    /// of a `socketpair`, an fd received from elsewhere), whose peer is
    /// `cred`.
    pub fn from_parts(fd: OwnedFd, cred: PeerCred) -> Self {
        Connection {
            fd,
            cred,
            hello: None,
        }
    }

    /// The peer's credentials.
    pub fn peer(&self) -> PeerCred {
        self.cred
    }

    /// The socket (readable once the peer's hello arrived).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the hello was read already (by an [`Intake`](super::Intake)): serving then
    /// never waits.
    pub fn has_hello(&self) -> bool {
        self.hello.is_some()
    }

    /// Reads the hello now, waiting until `deadline` (an [`Intake`](super::Intake) does it
    /// for all pending connections at once). Fds attached to it are closed
    /// and make it an error.
    ///
    /// # Errors
    ///
    /// [`Error::Timeout`] if no hello came by `deadline`,
    /// [`Error::Disconnected`] if the peer hung up, [`Error::Protocol`] for
    /// a message too long or with fds.
    pub fn read_hello(&mut self, deadline: Instant) -> Result<()> {
        if self.hello.is_some() {
            return Ok(());
        }
        let mut buf = [0u8; HELLO_BUF];
        let (len, fds) = recv_with_fds(self.fd.as_fd(), &mut buf, 0, deadline)?;
        drop(fds);
        self.hello = Some((buf, len));
        Ok(())
    }

    /// Whether the peer went away or sent more than its hello (a protocol
    /// violation): one `poll` with no timeout. For connections waiting to be
    /// served after their hello.
    pub fn is_gone(&self) -> bool {
        self.hello.is_some()
            && sys::peek_events(self.fd.as_fd(), libc::POLLIN | libc::POLLRDHUP)
                .is_ok_and(|ev| ev != 0)
    }

    /// Turns the peer away: it gets [`Error::PeerRefused`] with `reason`
    /// (e.g. a server that already serves as many peers as it allows).
    pub fn refuse(self, reason: &str) {
        self.answer(Welcome::refuse(reason));
    }

    /// Reads the hello (waiting up to `config.handshake_timeout`), checks that
    /// the peer wants to consume `T`, sends it a new channel; returns our
    /// producing end.
    ///
    /// # Errors
    ///
    /// [`Error::HandshakeTimeout`] if no hello came in time;
    /// [`Error::TypeMismatch`] (with both sides' types) or
    /// [`Error::Incompatible`] (the peer wants to produce too, or another
    /// signal kind) if the hello does not fit, after telling the peer why;
    /// [`Error::Protocol`] for a malformed hello; [`Error::Disconnected`] if
    /// the peer left; [`Error::Io`] if the channel cannot be created.
    pub fn serve_producer<T: Pod>(self, config: &Config) -> Result<Producer<T>> {
        let fds = self.serve::<T>(Role::Consumer, config)?;
        fds.0.into_producer(fds.1, config.spin)
    }

    /// As [`serve_producer`](Self::serve_producer), with roles swapped.
    ///
    /// # Errors
    ///
    /// As [`serve_producer`](Self::serve_producer).
    pub fn serve_consumer<T: Pod>(self, config: &Config) -> Result<Consumer<T>> {
        let fds = self.serve::<T>(Role::Producer, config)?;
        fds.0.into_consumer(fds.1, config.spin)
    }

    /// The listening side's handshake: reads the hello (by
    /// `config.handshake_timeout`), checks it against `peer_role` and `T`,
    /// and sends a new channel's fds; returns them and the link.
    pub(crate) fn serve<T: Pod>(
        mut self,
        peer_role: Role,
        config: &Config,
    ) -> Result<(ChannelFds, OwnedFd)> {
        let hello = self.take_hello(config)?;
        self.check_hello::<T>(&hello, peer_role, config)?;
        let fds = ChannelFds::create::<T>(config)?;
        let welcome = Welcome::accept(&fds);
        send_with_fds(self.fd.as_fd(), bytemuck::bytes_of(&welcome), &fds.fds())?;
        Ok((fds, self.fd))
    }

    /// Sends `w` (a refusal), best effort: a peer that went away meanwhile
    /// needs no answer.
    fn answer(&self, w: Welcome) {
        let _ = send_with_fds(self.fd.as_fd(), bytemuck::bytes_of(&w), &[]);
    }

    fn peer_id(&self) -> Peer {
        Peer::Process {
            pid: self.cred.pid,
            uid: self.cred.uid,
        }
    }

    /// The hello, read now if an [`Intake`](super::Intake) did not, and
    /// parsed; a malformed one is refused.
    fn take_hello(&mut self, config: &Config) -> Result<HelloInfo> {
        match self.read_hello(crate::sys::deadline_in(config.handshake_timeout)) {
            Err(Error::Timeout) => {
                return Err(Error::HandshakeTimeout {
                    peer: self.peer_id(),
                    after: config.handshake_timeout,
                })
            }
            r => r?,
        }
        let Some((buf, len)) = self.hello.take() else {
            return Err(Error::Protocol("no hello".into()));
        };
        Hello::parse(&buf[..len]).map_err(|e| {
            let reason = e.to_string();
            self.answer(Welcome::refuse(&reason));
            Error::Protocol(reason)
        })
    }

    /// Checks the peer's role, element type and signal kind against ours;
    /// a mismatch is answered (with our type, or what differs) and returned.
    fn check_hello<T: Pod>(
        &self,
        hello: &HelloInfo,
        peer_role: Role,
        config: &Config,
    ) -> Result<()> {
        let incompatible = |reason: String| {
            self.answer(Welcome::refuse_with(STATUS_INCOMPATIBLE, &reason));
            Error::Incompatible {
                peer: self.peer_id(),
                reason,
            }
        };
        if hello.role != peer_role {
            return Err(incompatible(format!(
                "both sides want to be {:?}",
                hello.role
            )));
        }
        let ours = config.tag::<T>();
        if hello.tag != ours {
            let ours = ElemType {
                name: config.type_name_for::<T>().into_owned(),
                size: ours.size,
                align: ours.align,
            };
            self.answer(Welcome::mismatch(&ours));
            return Err(Error::TypeMismatch {
                peer: self.peer_id(),
                ours,
                theirs: ElemType {
                    name: hello.name.clone(),
                    size: hello.tag.size,
                    align: hello.tag.align,
                },
            });
        }
        if hello.signal != config.signal {
            return Err(incompatible(format!(
                "signal kind: the connecting side wants {:?}, the listener uses {:?}",
                hello.signal, config.signal
            )));
        }
        Ok(())
    }
}
