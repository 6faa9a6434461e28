//! Arena switches: moving one consumer to a new arena (bigger slots after a
//! format change, say) while it stays connected.
//!
//! The producer announces the new arena in the descriptor ring, in order with
//! frames and events (a [`Kind::Arena`] descriptor carrying the geometry),
//! and sends its memfd on the message socket just before, exactly as it does
//! a blob's. It does so only once the consumer holds no slot of the current
//! arena ("switch on drain"), so every return-ring entry is unambiguous
//! without generation bits: before the switch, a slot number is one of the
//! old arena; after it, one of the new.
//!
//! The consumer checks the announcement as it checks the arena at connect:
//! it holds no slot of the old arena, the geometry is one it accepts (at
//! most as many slots as its return ring has room for, within its
//! [`max_arena`](super::FrameConfig::max_arena)), and the memfd is sealed
//! against shrinking, growing and new writable mappings and covers the
//! geometry. Only then does it map it, read-only.

use std::os::fd::{AsFd, BorrowedFd};

use super::arena::{Arena, ArenaView, Geometry, MAX_SLOTS};
use super::descriptor::{Descriptor, Kind};
use super::messages::{self, Message};
use super::sender::MAX_BLOBS;
use crate::{Error, Result};

/// Most slots an arena may have that a consumer switches to, on both sides:
/// what a return ring of `return_capacity` has room for beside
/// [`MAX_BLOBS`], at least the `slots` of the arena served at connect, at
/// most [`MAX_SLOTS`].
pub(crate) fn max_slots(return_capacity: usize, slots: u32) -> u32 {
    let room = return_capacity.saturating_sub(MAX_BLOBS as usize);
    u32::try_from(room)
        .unwrap_or(u32::MAX)
        .min(MAX_SLOTS)
        .max(slots)
}

/// The descriptor that switches to `arena`, once its memfd and geometry went
/// out on the message socket `msgs` ([`Error::Full`] when the socket has no
/// room: nothing was sent).
pub(crate) fn announce(msgs: BorrowedFd<'_>, arena: &Arena) -> Result<Descriptor> {
    messages::send_arena(
        msgs,
        arena.slots(),
        arena.slot_size(),
        arena.segment().as_fd(),
    )?;
    let mut d = Descriptor::event(Kind::Arena);
    d.args[0] = u64::from(arena.slots());
    d.args[1] = arena.slot_size() as u64;
    Ok(d)
}

/// Checks the geometry a switch announces: at most `max_slots` slots (what
/// the return ring has room for), a slot size that is a multiple of 64, all
/// of it within `max_arena` bytes.
pub(crate) fn check_geometry(
    slots: u64,
    slot_size: u64,
    max_arena: usize,
    max_slots: u32,
) -> std::result::Result<Geometry, String> {
    let n = u32::try_from(slots)
        .ok()
        .filter(|&n| n <= max_slots)
        .ok_or_else(|| {
            format!("an arena of {slots} slots (this stream takes at most {max_slots})")
        })?;
    let size = usize::try_from(slot_size).map_err(|_| format!("slot size {slot_size}"))?;
    let g = Geometry::new(n, size, max_arena).map_err(|e| format!("arena geometry: {e}"))?;
    if g.slot_size != size {
        return Err(format!("slot size {size} is not a multiple of 64"));
    }
    Ok(g)
}

/// Takes the switch `d` (our copy, of kind [`Kind::Arena`]) announces: its
/// memfd must be the next message on `msgs`, with the same geometry, which
/// must pass [`check_geometry`]; the memfd is validated and mapped
/// read-only. The caller checked it holds no slot of the current arena.
pub(crate) fn accept(
    d: &Descriptor,
    msgs: BorrowedFd<'_>,
    max_arena: usize,
    max_slots: u32,
) -> Result<ArenaView> {
    let bad = |m: String| Error::BadDescriptor(format!("arena switch: {m}"));
    // The message first, so that its fd is ours (and closed) whatever the
    // verdict.
    let (slots, slot_size, fd) = match messages::try_recv(msgs).map_err(|e| bad(e.to_string()))? {
        Some(Message::Arena {
            slots,
            slot_size,
            fd,
        }) => (slots, slot_size, fd),
        Some(_) => return Err(bad("another message came instead of its memfd".into())),
        None => return Err(bad("announced, its memfd never came".into())),
    };
    if (slots, slot_size) != (d.args[0], d.args[1]) {
        return Err(bad(format!(
            "{slots} slots of {slot_size} bytes on the socket, {} of {} in the descriptor",
            d.args[0], d.args[1]
        )));
    }
    let g = check_geometry(slots, slot_size, max_arena, max_slots).map_err(bad)?;
    ArenaView::open(fd, g)
}
