//! The only part of libos that uses `unsafe` or traps: kcalls, the TSC, the info page, the
//! app's frame-ring area, the per-app context behind the FS base, the heap router, the panic handler, and the deliberate
//! faults the containment tests need. Built for `x86_64-unknown-none` only.
//!
//! Private to libos: apps get safe calls built on these (`diag`, `process`, `thread`, `time`,
//! `task`), and the deliberate faults only through `faults`, behind a cargo feature.
#![cfg(target_os = "none")]

pub(crate) mod blk;
mod context;
mod entry;
mod heap;
mod kcall;
#[cfg(feature = "deliberate-faults")]
pub mod misbehave;
mod net;
mod panic;

pub use context::{app_info, current_context, install_context};
#[cfg(feature = "deliberate-faults")]
pub use kcall::raw_kcall;
pub use kcall::{
    blk_kick, console_write, exit, net_flush, null_kcall, wait, wait_until, yield_now,
};
pub use net::AppRingMemory;

use lite_abi::layout::{INFO_MAGIC, INFO_PAGE_ADDR, InfoPage};

/// Reads the time-stamp counter (no trap: kernel-lite leaves CR4.TSD clear).
#[inline]
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU, allowed in ring 3 here, and has no side
    // effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// The info page kernel-lite published before any app ran.
pub fn info_page() -> &'static InfoPage {
    // SAFETY: kernel-lite maps the info page read-only at INFO_PAGE_ADDR for every app before
    // entering the image and never changes or unmaps it; `InfoPage` is plain `repr(C)` data.
    let page = unsafe { &*(INFO_PAGE_ADDR as *const InfoPage) };
    debug_assert_eq!(page.magic, INFO_MAGIC);
    page
}

/// TSC ticks per second, as calibrated by kernel-lite.
#[inline]
pub fn tsc_hz() -> u64 {
    info_page().tsc_hz
}

/// The privilege level the code runs at, read from CS (3 for every app).
pub fn privilege_level() -> u8 {
    let cs: u16;
    // SAFETY: reading CS has no side effects.
    unsafe {
        core::arch::asm!("mov {0:x}, cs", out(reg) cs, options(nomem, nostack, preserves_flags))
    };
    (cs & 3) as u8
}
