//! Time: the TSC (calibrated against the PIT, then read by ring 3 without a trap) and the PIT's
//! periodic interrupt, which drives preemption and wakes apps whose deadline has passed.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// Timer interrupts per second.
pub const TICK_HZ: u64 = 1000;
/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 50 ms of PIT channel 2.
const CALIBRATION_PIT_TICKS: u64 = PIT_HZ / 20;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Calibrates the TSC and starts the periodic timer; returns TSC ticks per second.
pub fn init() -> u64 {
    let tsc_hz = calibrate_tsc();
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let divisor = (PIT_HZ / TICK_HZ) as u16;
    let mut command = Port::<u8>::new(0x43);
    let mut channel0 = Port::<u8>::new(0x40);
    // SAFETY: programs PIT channel 0 (mode 2, rate generator) at the standard ports; its
    // interrupt line is handled by `interrupts::timer_interrupt`.
    unsafe {
        command.write(0b0011_0100);
        channel0.write(divisor as u8);
        channel0.write((divisor >> 8) as u8);
    }
    tsc_hz
}

/// Counts TSC ticks over a known number of PIT channel-2 ticks (polled, interrupts off).
fn calibrate_tsc() -> u64 {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    let count = CALIBRATION_PIT_TICKS as u16;
    // SAFETY: port 0x61 bit 0 gates PIT channel 2 and bit 1 the speaker (kept off); channel 2 in
    // mode 0 raises its output (bit 5 of port 0x61) when the count runs out. Nothing else uses
    // channel 2.
    unsafe {
        let value = gate.read();
        gate.write((value & !0x02) & !0x01);
        command.write(0b1011_0000);
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let value = gate.read();
        gate.write(value | 0x01);
        let start = rdtsc();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let elapsed = rdtsc() - start;
        let value = gate.read();
        gate.write(value & !0x01);
        elapsed * PIT_HZ / CALIBRATION_PIT_TICKS
    }
}

/// TSC ticks per millisecond.
pub fn tsc_per_ms() -> u64 {
    TSC_HZ.load(Ordering::Relaxed) / 1000
}

/// Halts until an interrupt, with interrupts on, and returns with them off. `wakeup` is the TSC
/// of the next deadline, if any: the periodic tick (PIT, 1 kHz) wakes the CPU in time for it.
pub fn idle_until(wakeup: Option<u64>) {
    let _ = wakeup;
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
}
