//! The global allocator: every `Box`, `Vec` and `String` goes to the running app's own heap.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};
use core::sync::atomic::Ordering;

struct AppHeapRouter;

// SAFETY: allocations come from the running app's heap, which hands out each block once and
// takes it back on dealloc; a block is always freed by the app that allocated it, because an
// app's objects never leave its own context (apps do not share heap objects).
unsafe impl GlobalAlloc for AppHeapRouter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let context = super::current_context();
        match context.heap.lock().allocate_first_fit(layout) {
            Ok(block) => {
                context.failed_allocation.store(0, Ordering::Relaxed);
                block.as_ptr()
            }
            Err(()) => {
                context
                    .failed_allocation
                    .store(layout.size().max(1), Ordering::Relaxed);
                null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout on this
            // app's heap.
            unsafe {
                super::current_context()
                    .heap
                    .lock()
                    .deallocate(block, layout)
            };
        }
    }
}

#[global_allocator]
static APP_HEAP_ROUTER: AppHeapRouter = AppHeapRouter;
