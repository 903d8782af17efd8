//! Deliberate faults and raw kcalls, for the tests that show kernel-lite contains a misbehaving
//! app: each fault ends the calling app (or leaves the CPU in a state kernel-lite must cope
//! with) and none can harm kernel-lite or another app.
//!
//! Only with libos's `deliberate-faults` feature, which only the test-program crate
//! (`apps/selftest`) enables; xtask's tidy checks that no shipped bundle's image carries it.

pub use crate::sys::misbehave::{
    KERNEL_LITE_ADDRESS, PrivilegedInstruction, UNMAPPED_ADDRESS, alignment_check_is_set,
    debug_trap, invalid_opcode, run_privileged, set_alignment_check, write_kernel_memory,
    write_unmapped_memory,
};
use lite_abi::kcall::KcallError;

/// Makes kcall `number` with two arguments, unchecked: for the tests of the gate itself (an
/// unknown number, a kernel or unmapped pointer, an oversized length).
pub fn raw_kcall(number: u64, a0: u64, a1: u64) -> Result<u64, KcallError> {
    crate::sys::raw_kcall(number, a0, a1)
}

/// Faults while holding the app's console lock, half-way through a line: kernel-lite must end
/// the app without that lock (or anything else shared) wedging another app.
pub fn fault_holding_console_lock() -> ! {
    let context = crate::rt::current();
    let mut console = context.console.lock();
    console.push(b"half a line, then ", &mut |_: &[u8]| {});
    write_unmapped_memory()
}
