//! Programs for the in-QEMU tests. `kcalls` checks the gate and the ring; each `fault_*` program
//! commits one fault that kernel-lite must contain (report with the app's name, end the app).
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use libos::sys::misbehave::{self, PrivilegedInstruction};
use libos::time::{Duration, Instant};
use libos::{println, sys, thread};
use lite_abi::kcall::{Kcall, KcallError};

fn check(what: &str, ok: bool) -> bool {
    println!("check {what}: {}", if ok { "ok" } else { "FAILED" });
    ok
}

/// Runs at CPL 3; kcalls round-trip with their results and errors; the clock moves.
pub fn kcalls() -> i32 {
    let mut ok = check("CPL=3", sys::privilege_level() == 3);
    ok &= check("null kcall returns 0", sys::null_kcall() == 0);
    ok &= check(
        "unknown kcall is refused",
        sys::raw_kcall(999, 0, 0) == Err(KcallError::UnknownKcall),
    );
    ok &= check(
        "console write from a kernel address is refused",
        sys::raw_kcall(
            Kcall::ConsoleWrite as u64,
            misbehave::KERNEL_LITE_ADDRESS,
            8,
        ) == Err(KcallError::BadAddress),
    );
    ok &= check(
        "console write of an unmapped range is refused",
        sys::raw_kcall(Kcall::ConsoleWrite as u64, 0x10, 8) == Err(KcallError::BadAddress),
    );
    ok &= check(
        "oversized console write is refused",
        sys::raw_kcall(Kcall::ConsoleWrite as u64, 0x40_0000, 1 << 20)
            == Err(KcallError::BadArgument),
    );
    let before = Instant::now();
    thread::sleep(Duration::from_millis(20));
    let slept = before.elapsed();
    ok &= check(
        "sleep 20 ms lasts at least 20 ms",
        slept >= Duration::from_millis(20),
    );
    let boxed = Box::new([7u8; 4096]);
    ok &= check("heap allocation", boxed.iter().all(|&b| b == 7));
    if ok { 0 } else { 1 }
}

pub fn fault_kernel_write() -> i32 {
    println!(
        "writing to kernel-lite memory at {:#x}",
        misbehave::KERNEL_LITE_ADDRESS
    );
    misbehave::write_kernel_memory()
}

pub fn fault_hlt() -> i32 {
    println!("running hlt in ring 3");
    misbehave::run_privileged(PrivilegedInstruction::Hlt)
}

pub fn fault_cli() -> i32 {
    println!("running cli in ring 3");
    misbehave::run_privileged(PrivilegedInstruction::Cli)
}

pub fn fault_mov_cr3() -> i32 {
    println!("running mov cr3 in ring 3");
    misbehave::run_privileged(PrivilegedInstruction::MovCr3)
}

/// Recurses until the stack runs into its guard page.
pub fn fault_stack_overflow() -> i32 {
    println!("recursing without end");
    let depth = recurse(core::hint::black_box(1));
    println!("recursion returned {depth}");
    0
}

fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == 0 {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(frame[63])
}

pub fn fault_panic() -> i32 {
    let reason = core::hint::black_box("a deliberate panic");
    panic!("{reason}");
}
