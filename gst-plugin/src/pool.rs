//! A `GstBufferPool` whose buffers' memory is slots of a shmring arena.
//!
//! `shmringsink` offers it upstream in `propose_allocation`: an element that
//! uses it renders straight into shared memory, and the sink sends the slot
//! by number without copying. Each buffer owns a `SlotLease` (inside its
//! `GstMemory`), so a slot is never handed to two buffers; the sink keeps a
//! reference to a sent buffer until the consumer returns its slot, so the
//! buffer only goes back to the pool (to be written again) once nobody reads
//! it.

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use shmring::frames::Arena;

mod imp {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct SlotPool {
        pub(super) arena: Mutex<Option<Arena>>,
    }

    #[glib::object_subclass]
    impl ObjectSubclass for SlotPool {
        const NAME: &'static str = "GstShmringSlotPool";
        type Type = super::SlotPool;
        type ParentType = gst::BufferPool;
    }

    impl ObjectImpl for SlotPool {}
    impl GstObjectImpl for SlotPool {}

    impl BufferPoolImpl for SlotPool {
        fn alloc_buffer(
            &self,
            _params: Option<&gst::BufferPoolAcquireParams>,
        ) -> Result<gst::Buffer, gst::FlowError> {
            let arena = match self.arena.lock() {
                Ok(a) => a.clone(),
                Err(_) => None,
            }
            .ok_or(gst::FlowError::Flushing)?;
            let config = self.obj().config();
            let (_, size, _, _) = config.params().ok_or(gst::FlowError::NotNegotiated)?;
            let size = size as usize;
            if size > arena.slot_size() {
                return Err(gst::FlowError::NotNegotiated);
            }
            // The pool's max-buffers leaves slots for events and copies, so a
            // free slot is normally there; if not, say so rather than block.
            let lease = arena.try_lease().ok_or(gst::FlowError::Error)?;
            let mut buffer = gst::Buffer::from_mut_slice(lease);
            buffer
                .get_mut()
                .ok_or(gst::FlowError::Error)?
                .set_size(size);
            Ok(buffer)
        }
    }
}

glib::wrapper! {
    /// A buffer pool over the slots of one arena.
    pub struct SlotPool(ObjectSubclass<imp::SlotPool>) @extends gst::BufferPool, gst::Object;
}

impl SlotPool {
    /// A pool whose buffers are slots of `arena`.
    pub fn new(arena: Arena) -> Self {
        let pool: SlotPool = glib::Object::new();
        if let Ok(mut a) = pool.imp().arena.lock() {
            *a = Some(arena);
        }
        pool
    }
}
