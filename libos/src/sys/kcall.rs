//! The kcall instruction and the calls libos makes with it.

use lite_abi::kcall::{Events, Kcall, KcallError, ReportedFault};

/// Makes kcall `number` with four arguments and returns its raw `rax` result.
#[inline]
fn kcall4(number: u64, a0: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    let result: u64;
    // SAFETY: `syscall` enters kernel-lite's gate, which saves and restores every register but
    // RAX (the result), RCX and R11 (clobbered by the instruction itself); kernel-lite only
    // reads user memory the arguments point to after checking it is mapped for ring 3.
    unsafe {
        core::arch::asm!(
            "syscall",
            inlateout("rax") number => result,
            in("rdi") a0,
            in("rsi") a1,
            in("rdx") a2,
            in("r10") a3,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    result
}

/// Makes any kcall by number; for tests of the gate itself.
#[cfg(feature = "deliberate-faults")]
pub fn raw_kcall(number: u64, a0: u64, a1: u64) -> Result<u64, lite_abi::kcall::KcallError> {
    lite_abi::kcall::KcallError::decode(kcall4(number, a0, a1, 0, 0))
}

/// The null kcall: the cost of the gate alone.
#[inline]
pub fn null_kcall() -> u64 {
    kcall4(Kcall::Null as u64, 0, 0, 0, 0)
}

/// Writes bytes to the console (kernel-lite prefixes the app's name at each line start).
pub fn console_write(bytes: &[u8]) {
    for chunk in bytes.chunks(lite_abi::kcall::CONSOLE_WRITE_MAX) {
        kcall4(
            Kcall::ConsoleWrite as u64,
            chunk.as_ptr() as u64,
            chunk.len() as u64,
            0,
            0,
        );
    }
}

/// Ends the app with `status`.
pub fn exit(status: i32) -> ! {
    kcall4(Kcall::Exit as u64, status as i64 as u64, 0, 0, 0);
    unreachable!("kernel-lite never returns from exit");
}

/// Gives the CPU to the next ready app.
pub fn yield_now() {
    kcall4(Kcall::Yield as u64, 0, 0, 0, 0);
}

/// Blocks until the TSC reaches `deadline_tsc` or one of `events` is pending; returns the
/// pending ones (now cleared), empty when the deadline passed.
pub fn wait(deadline_tsc: u64, events: Events) -> Events {
    Events(kcall4(Kcall::Wait as u64, deadline_tsc, events.0, 0, 0))
}

/// Blocks until the TSC reaches `deadline_tsc`.
pub fn wait_until(deadline_tsc: u64) {
    wait(deadline_tsc, Events::NONE);
}

/// Asks kernel-lite to send the frames waiting on the app's transmit ring; how many left, or
/// why none could (no network binding, for one).
pub fn net_flush() -> Result<u64, KcallError> {
    KcallError::decode(kcall4(Kcall::NetFlush as u64, 0, 0, 0, 0))
}

/// Asks kernel-lite to start the requests waiting on the app's block ring; how many it took,
/// or why it took none (no disk binding, for one).
pub fn blk_kick() -> Result<u64, KcallError> {
    KcallError::decode(kcall4(Kcall::BlkKick as u64, 0, 0, 0, 0))
}

/// Reports a fault the app detected itself; kernel-lite ends the app.
pub fn report_fault(kind: ReportedFault, message: &[u8]) -> ! {
    kcall4(
        Kcall::ReportFault as u64,
        kind as u64,
        message.as_ptr() as u64,
        message.len() as u64,
        0,
    );
    // Only reached if kernel-lite refused the report (a bad pointer); end the app anyway.
    exit(101)
}
