//! Finding the running app's context: kernel-lite points the FS base at it on every switch.

use crate::mem::AppHeap;
use crate::rt::AppContext;
use lite_abi::layout::AppInfo;

/// The info record of app `index`, if the bundle has that many apps.
pub fn app_info(index: usize) -> Option<&'static AppInfo> {
    let page = super::info_page();
    if index as u64 >= page.app_count {
        return None;
    }
    page.apps.get(index)
}

/// Places the app's context at the start of its heap region (where kernel-lite pointed FS) and
/// gives it the rest of the region as its heap. What the context holds is
/// [`AppContext::new`]'s business, not this function's.
pub fn install_context(index: usize, info: &AppInfo) {
    let context_bytes = core::mem::size_of::<AppContext>().next_multiple_of(64) as u64;
    assert!(
        info.heap_bytes > context_bytes,
        "heap too small for the app context"
    );
    let heap_start = (info.heap_base + context_bytes) as *mut core::mem::MaybeUninit<u8>;
    // SAFETY: kernel-lite reserved `heap_bytes` bytes at `heap_base` for this app alone (mapped
    // on first touch); the region past the context is used by nothing else and lives as long
    // as the app.
    let region = unsafe {
        core::slice::from_raw_parts_mut(heap_start, (info.heap_bytes - context_bytes) as usize)
    };
    let context = AppContext::new(info.heap_base, index, info, AppHeap::new(region));
    // SAFETY: the context fits before the heap region (checked above), at the start of the
    // app's own region, which nothing has used yet.
    unsafe { (info.heap_base as *mut AppContext).write(context) };
}

/// The running app's context.
#[inline]
pub fn current_context() -> &'static AppContext {
    let address: u64;
    // SAFETY: kernel-lite sets the FS base to the running app's context before it enters ring 3,
    // and `install_context` wrote the context's own address as its first word before any caller
    // could get here. Reading `fs:0` has no side effects.
    unsafe {
        core::arch::asm!("mov {}, fs:[0]", out(reg) address, options(nostack, readonly, preserves_flags));
        &*(address as *const AppContext)
    }
}
