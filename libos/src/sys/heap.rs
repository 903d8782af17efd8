//! The global allocator: every `Box`, `Vec` and `String` goes to the running app's own heap.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{NonNull, null_mut};

struct AppHeapRouter;

// SAFETY: allocations come from the running app's heap, which hands out each block once and
// takes it back on dealloc; a block is always freed by the app that allocated it, because an
// app's objects never leave its own context (apps do not share heap objects).
unsafe impl GlobalAlloc for AppHeapRouter {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        super::current_context()
            .heap
            .lock()
            .allocate(layout)
            .map_or(null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // SAFETY: the caller guarantees `ptr` came from `alloc` with this layout, and so
            // from this app's heap.
            unsafe {
                super::current_context()
                    .heap
                    .lock()
                    .allocator()
                    .deallocate(block, layout)
            };
        }
    }
}

#[global_allocator]
static APP_HEAP_ROUTER: AppHeapRouter = AppHeapRouter;
