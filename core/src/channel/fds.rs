//! [`ChannelFds`]: the file descriptors and parameters of one channel, to
//! create, duplicate, move by any route and validate into an endpoint; and
//! the glue that lets the ring use a segment's mapping ([`Region`]) and a
//! signal ([`Notify`]).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use bytemuck::Pod;

use super::{Config, Consumer, Producer};
use crate::ring::{Notify, Region, RingLayout, TypeTag};
use crate::segment::{Access, Mapping, Segment};
use crate::signal::{Direction, Signal, SignalKind};
use crate::{Error, Result};

// SAFETY: the pointer is fixed for the mapping's lifetime and valid for `len`
// bytes; the mapping cannot lose its pages because the memfd is sealed against
// shrinking (checked on receipt by `Segment::from_fd`, set by `Segment::create`).
unsafe impl Region for Mapping {
    fn as_ptr(&self) -> *mut u8 {
        Mapping::as_ptr(self)
    }
    fn len(&self) -> usize {
        Mapping::len(self)
    }
}

impl Notify for Signal {
    fn notify(&self) {
        Signal::notify(self)
    }
}

/// The file descriptors and parameters of one channel, to move to another
/// process by any route (the [`handshake`](crate::handshake) module, D-Bus, a
/// socket of your own) and turn into an endpoint there.
#[derive(Debug)]
pub struct ChannelFds {
    /// Ring capacity (items).
    pub capacity: usize,
    /// Element type tag.
    pub tag: TypeTag,
    /// Kind of both signals.
    pub signal: SignalKind,
    /// The ring's memfd.
    pub segment: OwnedFd,
    /// The "items ready" signal (the consumer waits on it): fds in
    /// [`Signal::fds`] order.
    pub data: Vec<OwnedFd>,
    /// The "space free" signal (the producer waits on it).
    pub space: Vec<OwnedFd>,
    /// The creator's own ends of both signals of a [`SignalKind::Socket`]
    /// channel (`data`, `space`), which never travel: `data` and `space`
    /// above hold the peer's ends then. `None` on the receiving side and for
    /// the other kinds (both sides use the same fds).
    own: Option<(OwnedFd, OwnedFd)>,
}

impl ChannelFds {
    /// Creates a sealed segment holding an initialised ring and two signals for
    /// elements `T` as `config` describes.
    pub fn create<T: Pod>(config: &Config) -> Result<Self> {
        let layout = config.layout::<T>()?;
        let seg = Segment::create("shmring", layout.total_size())?;
        let map: Arc<dyn Region> = Arc::new(seg.map(layout.total_size(), Access::ReadWrite)?);
        drop(layout.init::<T>(map)?);
        seg.seal_seals()?;
        let owned = |s: Signal| -> Result<Vec<OwnedFd>> {
            s.fds()
                .into_iter()
                .map(|fd| fd.try_clone_to_owned().map_err(|e| Error::io("dup", e)))
                .collect()
        };
        let (data, space, own) = match config.signal {
            SignalKind::Socket => {
                let (data_ours, data_theirs) = crate::signal::socket_pair()?;
                let (space_ours, space_theirs) = crate::signal::socket_pair()?;
                (
                    vec![data_theirs],
                    vec![space_theirs],
                    Some((data_ours, space_ours)),
                )
            }
            kind => (owned(Signal::new(kind)?)?, owned(Signal::new(kind)?)?, None),
        };
        Ok(ChannelFds {
            capacity: layout.capacity(),
            tag: layout.tag(),
            signal: config.signal,
            segment: seg.into_fd(),
            data,
            space,
            own,
        })
    }

    /// Duplicates every fd.
    pub fn try_clone(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup", e));
        let own = match &self.own {
            Some((d, s)) => Some((dup(d)?, dup(s)?)),
            None => None,
        };
        Ok(ChannelFds {
            own,
            ..self.peer_copy()?
        })
    }

    /// Duplicates the fds that travel to the peer (what [`fds`](Self::fds)
    /// lists): the peer's side of the channel.
    pub fn peer_copy(&self) -> Result<Self> {
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| Error::io("dup", e));
        Ok(ChannelFds {
            capacity: self.capacity,
            tag: self.tag,
            signal: self.signal,
            segment: dup(&self.segment)?,
            data: self.data.iter().map(dup).collect::<Result<_>>()?,
            space: self.space.iter().map(dup).collect::<Result<_>>()?,
            own: None,
        })
    }

    /// All fds to send to the peer, in wire order: segment, data signal,
    /// space signal (for a socket channel, the peer's ends).
    pub fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let mut v = vec![self.segment.as_fd()];
        v.extend(self.data.iter().map(|f| f.as_fd()));
        v.extend(self.space.iter().map(|f| f.as_fd()));
        v
    }

    /// Rebuilds a `ChannelFds` from fds in wire order (see [`fds`](Self::fds)),
    /// checking their number.
    pub fn from_wire(
        capacity: usize,
        tag: TypeTag,
        signal: SignalKind,
        mut fds: Vec<OwnedFd>,
    ) -> Result<Self> {
        let per = signal.fd_count();
        if fds.len() != 1 + 2 * per {
            return Err(Error::Protocol(format!(
                "channel needs {} fds, got {}",
                1 + 2 * per,
                fds.len()
            )));
        }
        let space = fds.split_off(1 + per);
        let data = fds.split_off(1);
        let segment = fds.remove(0);
        Ok(ChannelFds {
            capacity,
            tag,
            signal,
            segment,
            data,
            space,
            own: None,
        })
    }

    fn open<T: Pod>(self) -> Result<(Arc<dyn Region>, Signal, Signal, RingLayout)> {
        let layout = RingLayout::new::<T>(self.capacity, self.tag)?;
        if layout.capacity() != self.capacity {
            return Err(Error::Protocol(format!(
                "capacity {} is not a power of two",
                self.capacity
            )));
        }
        let seg = Segment::from_fd(self.segment, layout.total_size())?;
        let map: Arc<dyn Region> = Arc::new(seg.map(layout.total_size(), Access::ReadWrite)?);
        // The creator of a socket channel uses its own ends; the peer's close
        // here (they were sent).
        let (data, space) = match self.own {
            Some((d, s)) => (vec![d], vec![s]),
            None => (self.data, self.space),
        };
        let data = Signal::from_fds(self.signal, data)?;
        let space = Signal::from_fds(self.signal, space)?;
        Ok((map, data, space, layout))
    }

    /// Validates everything (memfd seals and size, ring header against `T`,
    /// signal fds) and builds the producing end. `link` is the socket whose
    /// hang-up means the consumer is gone.
    pub fn into_producer<T: Pod>(self, link: OwnedFd, spin: Duration) -> Result<Producer<T>> {
        let (map, data, space, layout) = self.open::<T>()?;
        data.restrict(Direction::Notify);
        space.restrict(Direction::Wait);
        Ok(Producer::assemble(
            layout.writer(map)?,
            data,
            space,
            link,
            spin,
        ))
    }

    /// Validates everything and builds the consuming end.
    pub fn into_consumer<T: Pod>(self, link: OwnedFd, spin: Duration) -> Result<Consumer<T>> {
        let (map, data, space, layout) = self.open::<T>()?;
        data.restrict(Direction::Wait);
        space.restrict(Direction::Notify);
        Ok(Consumer::assemble(
            layout.reader(map)?,
            space,
            data,
            link,
            spin,
        ))
    }
}
