//! The shared arena and the pool over it: sized from the settings and the
//! caps, remade when the caps need bigger slots (connected consumers are
//! switched to the new one as they drain the old one) or every consumer
//! that saw it has left, offered upstream as a [`SlotPool`], and refilled
//! from the consumers' returns when upstream asks for a buffer.

use std::time::Duration;

use gst::prelude::*;
use gst::subclass::prelude::*;
use shmring::frames::{Arena, FrameConfig};

use super::imp::{ShmringSink, State, CAT};
use super::intake::HANDSHAKE;
use super::peers::Peer;
use crate::pool::SlotPool;
use crate::util::lock;

/// With `slots` 0: as many slots as fit in this many bytes, 8 to 64.
pub(super) const AUTO_ARENA: usize = 16 << 20;
/// Slots kept out of the offered pool: for caps/tags strings and copies.
const SPARE_SLOTS: u32 = 2;
/// Slot size from which the pool waits for a slot in flight (see
/// `reclaim_returned`): about the size of a core's L2 cache.
const WAIT_FOR_RETURN_FROM: usize = 1 << 20;

impl ShmringSink {
    /// The arena's configuration for frames of `frame_size` bytes.
    pub(super) fn frame_config(&self, frame_size: usize) -> FrameConfig {
        let s = lock(&self.settings);
        let slot_size = if s.slot_size > 0 {
            s.slot_size as usize
        } else {
            frame_size
        };
        let slots = if s.slots > 0 {
            s.slots.max(SPARE_SLOTS + 2)
        } else {
            (AUTO_ARENA / slot_size.max(1)).clamp(8, 64) as u32
        };
        FrameConfig::new(slots, slot_size.max(64))
            .blob_budget(usize::try_from(s.blob_budget).unwrap_or(usize::MAX))
            .handshake_timeout(Duration::from_millis(u64::from(s.timeout_ms)).min(HANDSHAKE))
            .spin(Duration::from_micros(u64::from(s.spin_us)))
    }

    /// The arena for the current caps: made on first need, remade when the
    /// caps need bigger slots. Connected consumers keep the arena they read
    /// (alive through their senders) until they hold none of its slots,
    /// then move to the new one (`Peer::follow`); meanwhile they get blobs
    /// of what does not fit their slots.
    pub(super) fn ensure_arena(&self, st: &mut State) -> Result<Arena, gst::ErrorMessage> {
        let mut cfg = self.frame_config(st.frame_size);
        if let Some(a) = &st.arena {
            if a.slot_size() >= cfg.slot_size {
                return Ok(a.clone());
            }
        }
        // No more slots than every connected consumer's return ring has room
        // for (auto-sized arenas have fewer slots as slots grow anyway).
        if let Some(max) = st.peers.iter().map(|p| p.tx.max_arena_slots()).min() {
            cfg.slots = cfg.slots.min(max);
        }
        let arena = match (Arena::new(&cfg), &st.arena) {
            (Ok(a), _) => a,
            (Err(e), Some(old)) if !st.peers.is_empty() => {
                // Bigger frames still cross, as blobs.
                gst::warning!(
                    CAT,
                    imp = self,
                    "cannot make an arena of {} slots of {} bytes ({e}): keeping the current one",
                    cfg.slots,
                    cfg.slot_size
                );
                return Ok(old.clone());
            }
            (Err(e), _) => {
                return Err(gst::error_msg!(
                    gst::ResourceError::Failed,
                    ["cannot create the arena: {e}"]
                ))
            }
        };
        gst::info!(
            CAT,
            imp = self,
            "arena: {} slots of {} bytes",
            arena.slots(),
            arena.slot_size()
        );
        if st.arena.replace(arena.clone()).is_some() {
            st.reconfigure = true;
        }
        st.pool = None;
        // The consumers connected now move to it: it is theirs to read.
        st.arena_served = !st.peers.is_empty();
        Ok(arena)
    }

    /// The arena a new consumer is served from: the current one while other
    /// consumers use it; a new one if every consumer that saw the current
    /// one has left.
    pub(super) fn arena_for_new_peer(&self, st: &mut State) -> Option<Arena> {
        if st.peers.is_empty() && st.arena_served {
            // The previous consumers may still map the old arena: never let
            // them read what this one is sent.
            st.arena = None;
            st.pool = None;
            st.reconfigure = true;
        }
        match self.ensure_arena(st) {
            Ok(a) => {
                // Shown to a consumer from now on, even if the handshake fails.
                st.arena_served = true;
                Some(a)
            }
            Err(e) => {
                self.post_error_message(e);
                None
            }
        }
    }

    /// The pool offered upstream for buffers of `size` bytes: the current
    /// one, or a new one over `arena`.
    pub(super) fn offered_pool(
        &self,
        st: &mut State,
        arena: &Arena,
        caps: Option<&gst::Caps>,
        size: usize,
    ) -> Result<SlotPool, gst::LoggableError> {
        if let Some(p) = &st.pool {
            return Ok(p.clone());
        }
        let p = SlotPool::new(arena.clone(), arena.slots() - SPARE_SLOTS);
        let sink = self.obj().downgrade();
        p.set_on_acquire(move || {
            if let Some(sink) = sink.upgrade() {
                sink.imp().reclaim_returned();
            }
        });
        let mut config = p.config();
        // No maximum: the pool never blocks upstream (see `SlotPool`).
        config.set_params(caps, size as u32, 0, 0);
        p.set_config(config)
            .map_err(|e| gst::loggable_error!(CAT, "pool config: {e}"))?;
        st.pool = Some(p.clone());
        Ok(p)
    }

    /// From the pool, whenever upstream wants a buffer: takes the slots the
    /// consumers returned (unless a render holds the state; it reclaims
    /// itself), so that the pool hands out the slot read last.
    fn reclaim_returned(&self) {
        let Ok(mut guard) = self.state.try_lock() else {
            return;
        };
        let Some(st) = guard.as_mut() else {
            return;
        };
        if st.peers.iter_mut().map(Peer::reclaim).sum::<usize>() > 0 {
            return;
        }
        // Nothing came back yet: a slot in flight usually does within
        // microseconds. For big slots, waiting for it (asleep, at most
        // `return-wait`) keeps upstream writing the same hot slots; a new slot
        // would be a cold one (for 1080p RGBA that costs more than the
        // wait). Small slots stay in cache anyway: no wait.
        let big = st
            .arena
            .as_ref()
            .is_some_and(|a| a.slot_size() >= WAIT_FOR_RETURN_FROM);
        // Only consumers that keep up: one that is missing frames (stopped,
        // say) would make every acquire wait for nothing; so would one still
        // on an older arena, whose returns free nothing in this pool.
        let Some(arena) = st.arena.clone() else {
            return;
        };
        let keeps_up =
            |p: &Peer| p.tx.in_flight() > 0 && p.behind_since.is_none() && p.tx.is_on(&arena);
        let busy = st.peers.iter().filter(|p| keeps_up(p)).count();
        if !big || busy == 0 {
            return;
        }
        let wait = Duration::from_micros(u64::from(lock(&self.settings).return_wait_us));
        if wait.is_zero() {
            return;
        }
        let each = wait / busy as u32;
        for p in st.peers.iter_mut().filter(|p| keeps_up(p)) {
            if p.tx.wait_returns(Some(each)).is_ok() {
                p.reclaim();
            }
        }
    }
}
