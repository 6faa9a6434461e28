//! Intake of consumers: the listening socket, the acceptor thread (accept,
//! handshake, refusals, hang-ups while no buffer flows), serving a consumer
//! (before the caps are known it waits in `State::pending`) and
//! `wait-for-connection`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use gst::glib;
use gst::subclass::prelude::*;
use shmring::frames::{self, Arena, FrameConfig, FrameSender};
use shmring::handshake::{
    Arrival, Connection, Intake, IntakeOptions, ListenOptions, Listener, PeerCred, Refusal,
};

use super::imp::{Settings, ShmringSink, State, CAT};
use super::peers::Peer;
use crate::util::{lock, STEP};

/// Longest handshake with a connecting consumer (it is local: milliseconds).
pub(super) const HANDSHAKE: Duration = Duration::from_secs(1);
/// Most connections waiting for their hello at once (the oldest is dropped
/// beyond it): a silent connection costs an fd until its deadline
/// ([`HANDSHAKE`]), never a wait.
const MAX_PENDING_HANDSHAKES: usize = shmring::handshake::DEFAULT_MAX_PENDING;

/// The thread that accepts consumers on the socket and notices their hang-up.
pub(super) struct Acceptor {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl ShmringSink {
    /// Listens on `path` as the settings say.
    pub(super) fn listen(path: &str, s: &Settings) -> Result<Intake, gst::ErrorMessage> {
        let opts = ListenOptions {
            mode: s.perms,
            allowed_uids: u32::try_from(s.allowed_uid).ok().map(|uid| vec![uid]),
            ..ListenOptions::default()
        };
        let listener = Listener::bind(path, &opts).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenWrite,
                ["cannot listen on {path}: {e}"]
            )
        })?;
        Ok(Intake::new(
            listener,
            IntakeOptions {
                max_pending: MAX_PENDING_HANDSHAKES,
                hello_timeout: Duration::from_millis(u64::from(s.timeout_ms)).min(HANDSHAKE),
            },
        ))
    }

    /// Starts the acceptor thread on `intake`.
    pub(super) fn start_acceptor(&self, intake: Intake) -> Result<(), gst::ErrorMessage> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = self.obj().downgrade();
        let st = stop.clone();
        let thread = std::thread::Builder::new()
            .name("shmringsink-accept".into())
            .spawn(move || Self::acceptor_loop(weak, intake, st))
            .map_err(|e| {
                gst::error_msg!(
                    gst::ResourceError::Failed,
                    ["cannot start the accepting thread: {e}"]
                )
            })?;
        *lock(&self.acceptor) = Some(Acceptor { stop, thread });
        Ok(())
    }

    /// Stops the acceptor thread and waits for it.
    pub(super) fn stop_acceptor(&self) {
        if let Some(a) = lock(&self.acceptor).take() {
            a.stop.store(true, Ordering::Release);
            // It sees `stop` within one STEP: it never waits on a peer.
            let _ = a.thread.join();
        }
    }

    /// The acceptor thread: takes connections and reads their hellos
    /// concurrently ([`Intake`]: none can hold up another, or the stream),
    /// serves them, serves those that waited for the caps once the caps are
    /// known, and drops consumers whose link hung up even while no buffer
    /// flows.
    fn acceptor_loop(
        weak: glib::WeakRef<super::ShmringSink>,
        mut intake: Intake,
        stop: Arc<AtomicBool>,
    ) {
        while !stop.load(Ordering::Acquire) {
            let arrivals = intake.poll(STEP);
            let Some(obj) = weak.upgrade() else {
                return;
            };
            let imp = obj.imp();
            match arrivals {
                Ok(arrivals) => {
                    for a in arrivals {
                        match a {
                            Arrival::Ready(c) => imp.take_connection(c),
                            Arrival::Refused { peer, reason } => imp.refused(peer, reason),
                        }
                    }
                }
                Err(e) => {
                    gst::warning!(CAT, imp = imp, "accepting consumers: {e}");
                    std::thread::sleep(STEP);
                }
            }
            imp.check_alive();
            imp.forward_upstream();
        }
    }

    /// The intake turned a connection away (no hello in time, too many
    /// pending handshakes, bad hello, uid).
    fn refused(&self, peer: Option<PeerCred>, reason: Refusal) {
        lock(&self.stats).refused += 1;
        match peer {
            Some(p) => gst::warning!(
                CAT,
                imp = self,
                "dropped connection of pid {} uid {}: {reason}",
                p.pid,
                p.uid
            ),
            None => gst::warning!(CAT, imp = self, "dropped a connection: {reason}"),
        }
    }

    /// Drops consumers whose link hung up or broke the protocol, and those
    /// waiting for the caps that went away; serves the waiting ones once the
    /// caps are known (without waiting for a streaming thread that holds the
    /// state).
    fn check_alive(&self) {
        let mut guard = match self.state.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::WouldBlock) => return,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
        };
        let mut served = false;
        if let Some(st) = guard.as_mut() {
            for p in st.peers.iter_mut() {
                p.check_link();
                // Returns arrive while no buffer flows, too: let go of them.
                p.reclaim();
            }
            self.remove_gone(st);
            st.pending.retain(|c| {
                let gone = c.is_gone();
                if gone {
                    gst::info!(
                        CAT,
                        imp = self,
                        "pid {} left before the caps were known",
                        c.peer().pid
                    );
                }
                !gone
            });
            served = st.geometry_known && !st.pending.is_empty();
            self.serve_pending(st);
        }
        drop(guard);
        if served {
            self.served.notify_all();
        }
    }

    /// A consumer's hello arrived (the [`Intake`] read it): serving it only
    /// sends, never waits. It runs here, on the acceptor thread, without
    /// holding the state while it sends.
    fn take_connection(&self, conn: Connection) {
        let peer = conn.peer();
        let Some((conn, arena, cfg)) = self.admit(conn) else {
            return;
        };
        let served = frames::serve_arena(conn, &cfg, arena.clone());
        let reconfigure = {
            let mut guard = lock(&self.state);
            let Some(st) = guard.as_mut() else {
                return;
            };
            match served {
                Ok(tx)
                    if st
                        .arena
                        .as_ref()
                        .is_some_and(|a| a.as_ptr() == arena.as_ptr()) =>
                {
                    self.add_peer(st, tx, peer);
                }
                Ok(_) => gst::info!(
                    CAT,
                    imp = self,
                    "the arena changed during the handshake with pid {}: it must reconnect",
                    peer.pid
                ),
                Err(e) => gst::warning!(
                    CAT,
                    imp = self,
                    "handshake with pid {} failed: {e}",
                    peer.pid
                ),
            }
            std::mem::take(&mut st.reconfigure)
        };
        self.served.notify_all();
        if reconfigure {
            self.reconfigure_upstream();
        }
    }

    /// The arena and configuration to serve `conn` with; `None` when it
    /// waits for the caps (kept in `pending`), is refused
    /// (`max-consumers`), or no arena can be made.
    fn admit(&self, conn: Connection) -> Option<(Connection, Arena, FrameConfig)> {
        let peer = conn.peer();
        let mut guard = lock(&self.state);
        let st = guard.as_mut()?;
        if !st.geometry_known {
            gst::debug!(CAT, imp = self, "pid {} waits for the caps", peer.pid);
            st.pending.push(conn);
            return None;
        }
        // Consumers that left meanwhile go first: if none is left, this
        // one gets a new arena.
        for p in st.peers.iter_mut() {
            p.check_link();
        }
        self.remove_gone(st);
        st.pending.retain(|c| !c.is_gone());
        let max = lock(&self.settings).max_consumers as usize;
        if max > 0 && st.peers.len() + st.pending.len() >= max {
            gst::warning!(
                CAT,
                imp = self,
                "refusing consumer pid {} uid {}: {} consumers served, max-consumers is {max}",
                peer.pid,
                peer.uid,
                st.peers.len() + st.pending.len()
            );
            conn.refuse(&format!("this sink serves at most {max} consumers at once"));
            lock(&self.stats).refused += 1;
            return None;
        }
        let arena = self.arena_for_new_peer(st)?;
        Some((conn, arena, self.frame_config(st.frame_size)))
    }

    /// A consumer was served: it joins the consumers, and gets the sticky
    /// state first.
    fn add_peer(&self, st: &mut State, tx: FrameSender, cred: PeerCred) {
        gst::info!(
            CAT,
            imp = self,
            "serving consumer pid {} uid {} ({} connected)",
            cred.pid,
            cred.uid,
            st.peers.len() + 1
        );
        match tx.upstream_receiver() {
            Ok(u) => self.upstream.add(cred.pid, u),
            Err(e) => gst::warning!(CAT, imp = self, "pid {}: no upstream events: {e}", cred.pid),
        }
        let mut p = Peer::new(tx, cred.pid, cred.uid);
        // The sticky state first (if there is room now; else before its
        // first frame).
        let _ = p.catch_up(&st.sticky, None);
        st.peers.push(p);
        lock(&self.stats).consumers_served += 1;
        self.publish(st, true);
    }

    /// Serves the consumers that connected before the caps were known
    /// (their hellos are in: this only sends, and never waits on them).
    pub(super) fn serve_pending(&self, st: &mut State) {
        if !st.geometry_known || st.pending.is_empty() {
            return;
        }
        for conn in std::mem::take(&mut st.pending) {
            let peer = conn.peer();
            let Some(arena) = self.arena_for_new_peer(st) else {
                return;
            };
            let cfg = self.frame_config(st.frame_size);
            match frames::serve_arena(conn, &cfg, arena) {
                Ok(tx) => self.add_peer(st, tx, peer),
                Err(e) => gst::warning!(
                    CAT,
                    imp = self,
                    "handshake with pid {} failed: {e}",
                    peer.pid
                ),
            }
        }
    }

    /// With `wait-for-connection`, waits until a first consumer is served
    /// (later ones are not waited for: buffers are dropped between consumers).
    pub(super) fn wait_first_consumer<'a>(
        &'a self,
        mut guard: MutexGuard<'a, Option<State>>,
    ) -> Result<MutexGuard<'a, Option<State>>, gst::FlowError> {
        if !lock(&self.settings).wait_for_connection {
            return Ok(guard);
        }
        loop {
            let st = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
            self.serve_pending(st);
            if !st.peers.is_empty() || lock(&self.stats).consumers_served > 0 {
                return Ok(guard);
            }
            if self.unlocked.load(Ordering::Acquire) {
                return Err(gst::FlowError::Flushing);
            }
            guard = match self.served.wait_timeout(guard, STEP) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    /// Whether `event` waits for a first consumer (`wait-for-connection`):
    /// the first consumer then sees the stream from its caps on, every
    /// event as it came (not only the latest sticky ones).
    pub(super) fn waits_for_first_consumer(event: &gst::Event, st: Option<&State>) -> bool {
        // Serialized events wait like buffers. The caps size the arena
        // first (a consumer is served only once the slot size is known);
        // stream-start comes before the caps and is kept as sticky state.
        let is_caps = matches!(event.view(), gst::EventView::Caps(_));
        event.is_serialized()
            && !matches!(
                event.view(),
                gst::EventView::StreamStart(_) | gst::EventView::FlushStop(_)
            )
            && (is_caps || st.is_some_and(|st| st.geometry_known))
    }
}
