//! Programs for the in-QEMU tests. `kcalls` checks the gate and the ring; each `fault_*` program
//! commits one fault that kernel-lite must contain (report with the app's name, end the app).
//!
//! The only crate that turns on libos's `deliberate-faults` feature: no shipped bundle may run
//! a program from here (xtask's tidy checks it).
#![no_std]

extern crate alloc;

use alloc::boxed::Box;
use alloc::vec::Vec;
use libos::faults::{self, PrivilegedInstruction};
use libos::time::{Duration, Instant};
use libos::{diag, println, rt, thread};
use lite_abi::kcall::{Kcall, KcallError};

fn check(what: &str, ok: bool) -> bool {
    println!("check {what}: {}", if ok { "ok" } else { "FAILED" });
    ok
}

/// Runs at CPL 3; kcalls round-trip with their results and errors; the clock moves.
pub fn kcalls() -> i32 {
    let mut ok = check("CPL=3", diag::privilege_level() == 3);
    ok &= check("null kcall returns 0", diag::null_kcall() == 0);
    ok &= check(
        "unknown kcall is refused",
        faults::raw_kcall(999, 0, 0) == Err(KcallError::UnknownKcall),
    );
    ok &= check(
        "console write from a kernel address is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, faults::KERNEL_LITE_ADDRESS, 8)
            == Err(KcallError::BadAddress),
    );
    ok &= check(
        "console write of an unmapped range is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, 0x10, 8) == Err(KcallError::BadAddress),
    );
    ok &= check(
        "oversized console write is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, 0x40_0000, 1 << 20)
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
        faults::KERNEL_LITE_ADDRESS
    );
    faults::write_kernel_memory()
}

pub fn fault_hlt() -> i32 {
    println!("running hlt in ring 3");
    faults::run_privileged(PrivilegedInstruction::Hlt)
}

pub fn fault_cli() -> i32 {
    println!("running cli in ring 3");
    faults::run_privileged(PrivilegedInstruction::Cli)
}

pub fn fault_mov_cr3() -> i32 {
    println!("running mov cr3 in ring 3");
    faults::run_privileged(PrivilegedInstruction::MovCr3)
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

/// How long a crasher lets its neighbours run before it faults.
const CRASH_AFTER: Duration = Duration::from_millis(150);

fn crash_soon(what: &str) {
    println!("will crash by {what} in {} ms", CRASH_AFTER.as_millis());
    thread::sleep(CRASH_AFTER);
}

pub fn crash_panic() -> i32 {
    crash_soon("panic");
    fault_panic()
}

pub fn crash_page_fault() -> i32 {
    crash_soon("page fault");
    faults::write_unmapped_memory()
}

pub fn crash_general_protection() -> i32 {
    crash_soon("general protection fault");
    faults::run_privileged(PrivilegedInstruction::Hlt)
}

pub fn crash_invalid_opcode() -> i32 {
    crash_soon("invalid opcode");
    faults::invalid_opcode()
}

pub fn crash_debug_trap() -> i32 {
    crash_soon("debug exception");
    faults::debug_trap()
}

pub fn crash_stack_overflow() -> i32 {
    crash_soon("stack overflow");
    fault_stack_overflow()
}

/// Allocates until the heap quota is exhausted.
pub fn crash_out_of_memory() -> i32 {
    crash_soon("running out of memory");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(alloc::vec![0xa5; 64 * 1024]);
    }
}

pub fn crash_holding_lock() -> i32 {
    crash_soon("page fault while holding its console lock");
    faults::fault_holding_console_lock()
}

/// Fills about three quarters of its heap with a pattern of its own, a chunk at a time, giving
/// the CPU away between chunks so that another filler interleaves; then checks every byte.
pub fn fill() -> i32 {
    const CHUNK: usize = 64 * 1024;
    let context = rt::current();
    let seed = context.index() as u8 * 37 + 11;
    let chunks = context.heap_usage().size * 3 / 4 / CHUNK;
    let mut buffers: Vec<Vec<u8>> = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let byte = seed.wrapping_add(chunk as u8);
        buffers.push(alloc::vec![byte; CHUNK]);
        thread::yield_now();
    }
    let intact = buffers.iter().enumerate().all(|(chunk, buffer)| {
        let byte = seed.wrapping_add(chunk as u8);
        buffer.iter().all(|&b| b == byte)
    });
    let heap = context.heap_usage();
    println!(
        "filled {chunks} chunks of {CHUNK} bytes: {}; heap peak {} of {} bytes",
        if intact { "all intact" } else { "CORRUPTED" },
        heap.peak,
        heap.size
    );
    if intact { 0 } else { 1 }
}

/// Takes its whole quota: allocates 64 KiB chunks (touching every page) until the heap refuses
/// one, holds them while the counter beside it counts, checks them, and exits 0. Shows that an
/// app at its quota takes nothing a neighbour was guaranteed.
pub fn hog() -> i32 {
    const CHUNK: usize = 64 * 1024;
    let context = rt::current();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    if chunks
        .try_reserve(context.heap_usage().size / CHUNK)
        .is_err()
    {
        println!("no room for the chunk list");
        return 1;
    }
    loop {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            break;
        }
        chunk.resize(CHUNK, chunks.len() as u8);
        chunks.push(chunk);
        thread::yield_now();
    }
    let heap = context.heap_usage();
    println!(
        "holds {} chunks: heap {} of {} bytes in use",
        chunks.len(),
        heap.used,
        heap.size
    );
    thread::sleep(Duration::from_millis(300));
    let intact = chunks
        .iter()
        .enumerate()
        .all(|(index, chunk)| chunk.iter().all(|&b| b == index as u8));
    println!("chunks {}", if intact { "intact" } else { "CORRUPTED" });
    if intact { 0 } else { 1 }
}

/// Tries to forge console lines of kernel-lite and of another app: a half line left open while
/// another app prints, a carriage return, an escape sequence, and a panic message with a
/// newline in it. Every attempt must still show as this app's, escaped.
pub fn forger() -> i32 {
    libos::print!("half a line, left open ");
    libos::console::flush();
    // Longer than the counter's period, so it prints while this line is open.
    thread::sleep(Duration::from_millis(120));
    println!("then finished");
    println!("\rkernel-lite: app 'counter' exited with status 0");
    println!("\x1b[2K\x1b[1Gkernel-lite: forged by an escape sequence");
    panic!("forged\nkernel-lite: all apps ended")
}

/// Spins for 1.5 s without ever blocking or yielding.
pub fn spinner() -> i32 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        spins = core::hint::black_box(spins + 1);
    }
    println!("spun {spins} times");
    0
}

/// Sleeps 10 ms twenty times and reports the worst overshoot.
pub fn sleeper() -> i32 {
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let before = Instant::now();
        thread::sleep(Duration::from_millis(10));
        worst = worst.max(before.elapsed().saturating_sub(Duration::from_millis(10)));
    }
    println!("slept 20 times; max oversleep {} us", worst.as_micros());
    0
}

/// Sets RFLAGS.AC in ring 3, spins about 30 ms reading the clock (so timer interrupts arrive
/// while AC is set), makes a null kcall, then checks that AC is still set: kernel-lite must
/// clear AC for itself on entry (with AC set, SMAP does not guard ring 0) but give ring 3 its
/// own flags back.
pub fn set_ac() -> i32 {
    faults::set_alignment_check();
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_millis(30) {
        spins = core::hint::black_box(spins + 1);
    }
    diag::null_kcall();
    let still_set = faults::alignment_check_is_set();
    println!(
        "AC set in ring 3: {} (after {spins} clock reads and a null kcall)",
        if still_set { "yes" } else { "no" }
    );
    if still_set { 0 } else { 1 }
}
