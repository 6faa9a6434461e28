//! A `GstBufferPool` whose buffers' memory is slots of a shmring arena.
//!
//! `shmringsink` offers it upstream in `propose_allocation`: an element that
//! uses it renders straight into shared memory, and the sink sends the slot
//! by number without copying. Each buffer owns a `SlotLease` (inside its
//! `GstMemory`), so a slot is never handed to two buffers; the sink keeps a
//! reference to a sent buffer until the consumer returns its slot, so the
//! buffer only goes back to the pool (to be written again) once nobody reads
//! it.
//!
//! Free buffers are reused last-in first-out (the base class queues them
//! first-in first-out), and before each acquire the sink takes back what its
//! consumers returned: a stream that needs two buffers at a time keeps
//! writing the same two slots, which stay in the CPU caches, even after a
//! burst made the pool grow (a 1080p RGBA frame is 8 MB; eight of them do not
//! fit in a 32 MB L3).

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use shmring::frames::Arena;

mod imp {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct SlotPool {
        pub(super) arena: Mutex<Option<Arena>>,
        /// Most slots the pool may hold; the rest stay free for copies and
        /// caps strings.
        pub(super) limit: AtomicU32,
        /// Slots held by this pool's buffers.
        pub(super) leased: AtomicU32,
        /// Free slot buffers, most recently released last.
        free: Mutex<Vec<gst::Buffer>>,
        /// Called on every acquire, before a free buffer is picked: the sink
        /// takes the slots its consumers returned since (waiting briefly for
        /// one in flight when slots are big), so the slot just read is
        /// written again (still in cache) rather than a colder free one.
        pub(super) on_acquire: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SlotPool {
        const NAME: &'static str = "GstShmringSlotPool";
        type Type = super::SlotPool;
        type ParentType = gst::BufferPool;
    }

    impl ObjectImpl for SlotPool {}
    impl GstObjectImpl for SlotPool {}

    impl SlotPool {
        fn arena(&self) -> Option<Arena> {
            self.arena.lock().ok().and_then(|a| a.clone())
        }

        fn is_slot(&self, buffer: &gst::BufferRef) -> bool {
            let Some(arena) = self.arena() else {
                return false;
            };
            buffer.n_memory() == 1
                && buffer
                    .peek_memory(0)
                    .map_readable()
                    .is_ok_and(|m| arena.locate(m.as_ptr(), 1).is_some())
        }
    }

    impl BufferPoolImpl for SlotPool {
        fn acquire_buffer(
            &self,
            params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            // First the hook: the sink takes back what its consumers
            // returned (and, for big slots, waits briefly for the slot in
            // flight), so the buffer on top of the free list is the one
            // read last, still in the caches. No lock of ours is held here:
            // the hook drops buffers, which come back through
            // `release_buffer`.
            if let Some(hook) = self
                .on_acquire
                .lock()
                .ok()
                .as_deref()
                .and_then(Option::as_ref)
            {
                hook();
            }
            let reused = self.free.lock().ok().and_then(|mut f| f.pop());
            match reused {
                Some(b) => Ok(b),
                None => self.parent_acquire_buffer(params),
            }
        }

        fn release_buffer(&self, buffer: gst::Buffer) {
            // The base class's checks: the buffer is as it was handed out.
            let intact = !buffer.flags().contains(gst::BufferFlags::TAG_MEMORY)
                && self
                    .obj()
                    .config()
                    .params()
                    .is_some_and(|(_, size, _, _)| buffer.size() == size as usize)
                && buffer.is_all_memory_writable()
                && self.is_slot(&buffer);
            if intact && self.obj().is_active() {
                if let Ok(mut f) = self.free.lock() {
                    f.push(buffer);
                    return;
                }
            }
            self.parent_release_buffer(buffer)
        }

        fn stop(&self) -> bool {
            // Hand the free buffers to the base class, which frees its queue.
            let free = self
                .free
                .lock()
                .map(|mut f| std::mem::take(&mut *f))
                .unwrap_or_default();
            for b in free {
                self.parent_release_buffer(b);
            }
            self.parent_stop()
        }

        fn alloc_buffer(
            &self,
            _params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            let arena = self.arena().ok_or(gst::FlowError::Flushing)?;
            let config = self.obj().config();
            let (_, size, _, _) = config.params().ok_or(gst::FlowError::NotNegotiated)?;
            let size = size as usize;
            if size > arena.slot_size() {
                return Err(gst::FlowError::NotNegotiated);
            }
            let limit = self.limit.load(Ordering::Relaxed);
            let lease = if self.leased.load(Ordering::Relaxed) < limit {
                arena.try_lease()
            } else {
                None
            };
            let Some(lease) = lease else {
                // Every slot of ours is out (the consumer holds them, or
                // upstream does): never block upstream here. A plain buffer,
                // tagged so the pool frees it on release, is copied by the sink
                // into a spare slot (or dropped after the sink's timeout).
                let mut b = gst::Buffer::with_size(size).map_err(|_| gst::FlowError::Error)?;
                b.get_mut()
                    .ok_or(gst::FlowError::Error)?
                    .set_flags(gst::BufferFlags::TAG_MEMORY);
                return Ok(b);
            };
            self.leased.fetch_add(1, Ordering::Relaxed);
            let mut buffer = gst::Buffer::from_mut_slice(lease);
            buffer
                .get_mut()
                .ok_or(gst::FlowError::Error)?
                .set_size(size);
            Ok(buffer)
        }

        fn free_buffer(&self, buffer: gst::Buffer) {
            if self.is_slot(&buffer) {
                self.leased.fetch_sub(1, Ordering::Relaxed);
            }
            self.parent_free_buffer(buffer)
        }
    }
}

glib::wrapper! {
    /// A buffer pool over the slots of one arena.
    pub struct SlotPool(ObjectSubclass<imp::SlotPool>) @extends gst::BufferPool, gst::Object;
}

impl SlotPool {
    /// A pool whose buffers are slots of `arena`, at most `limit` of them at a
    /// time (beyond that it hands out plain buffers rather than block).
    pub fn new(arena: Arena, limit: u32) -> Self {
        let pool: SlotPool = glib::Object::new();
        if let Ok(mut a) = pool.imp().arena.lock() {
            *a = Some(arena);
        }
        pool.imp()
            .limit
            .store(limit, std::sync::atomic::Ordering::Relaxed);
        pool
    }

    /// Sets what the pool calls on every acquire, before it picks a free
    /// buffer: the sink takes back the slots its consumers returned. The
    /// hook must not call into this pool's acquire.
    pub fn set_on_acquire(&self, hook: impl Fn() + Send + Sync + 'static) {
        if let Ok(mut h) = self.imp().on_acquire.lock() {
            *h = Some(Box::new(hook));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use shmring::frames::FrameConfig;

    use super::*;

    /// The pool asks for returned slots (the sink's reclaim) on every
    /// acquire, before it picks a buffer; the buffer released last is handed
    /// out again first (last in, first out).
    #[test]
    fn the_pool_calls_its_hook_on_every_acquire_and_reuses_the_last_released() {
        gst::init().expect("gst init");
        let arena = Arena::new(&FrameConfig::new(8, 4096)).expect("arena");
        let pool = SlotPool::new(arena, 6);
        let calls = Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        pool.set_on_acquire(move || {
            c.fetch_add(1, Ordering::Relaxed);
        });
        let mut config = pool.config();
        config.set_params(None, 4096, 0, 6);
        pool.set_config(config).expect("config");
        pool.set_active(true).expect("active");
        let a = pool.acquire_buffer(None).expect("a");
        let b = pool.acquire_buffer(None).expect("b");
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let b_ptr = b.map_readable().expect("map").as_ptr();
        drop(b);
        let again = pool.acquire_buffer(None).expect("again");
        assert_eq!(calls.load(Ordering::Relaxed), 3, "every acquire");
        assert_eq!(again.map_readable().expect("map").as_ptr(), b_ptr, "LIFO");
        drop((a, again));
        pool.set_active(false).expect("inactive");
    }
}
