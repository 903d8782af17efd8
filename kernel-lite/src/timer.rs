//! Time: the TSC (calibrated against the PIT, then read by ring 3 without a trap) and the
//! timer interrupt that drives preemption and wakes apps whose deadline has passed.
//!
//! Where the local APIC is in use its timer runs one-shot: armed 1 ms ahead at each tick while
//! an app runs (the 1 kHz quantum ticks the scheduler counts), armed for the next deadline when
//! the CPU idles, and not armed at all when nothing has a deadline (tickless idle). Without a
//! local APIC the PIT interrupts at 1 kHz through the 8259 PIC, as before.

use crate::devices::apic::LocalApic;
use crate::interrupts;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};
use lite_abi::devices::apic::{timer_count_for_tsc, timer_hz};
use spin::Once;
use x86_64::instructions::port::Port;

/// Quantum ticks per second while an app runs (and PIT interrupts per second).
pub const TICK_HZ: u64 = 1000;
/// The PIT's input clock.
const PIT_HZ: u64 = 1_193_182;
/// Calibration window: 50 ms of PIT channel 2.
const CALIBRATION_PIT_TICKS: u64 = PIT_HZ / 20;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);

/// The timer interrupt in use.
#[derive(Debug, Clone, Copy)]
pub enum TimerSource {
    /// The local APIC timer, one-shot; `hz` is its count rate (bus clock / 16).
    LocalApic {
        apic: LocalApic,
        hz: u64,
        tick_count: u32,
    },
    /// The PIT at [`TICK_HZ`], through the 8259 PIC.
    Pit,
}

static SOURCE: Once<TimerSource> = Once::new();

impl fmt::Display for TimerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TimerSource::LocalApic { hz, .. } => write!(
                f,
                "LAPIC one-shot at {}.{:03} MHz (1 ms ticks while an app runs, tickless idle)",
                hz / 1_000_000,
                hz % 1_000_000 / 1000
            ),
            TimerSource::Pit => write!(f, "PIT periodic at {TICK_HZ} Hz"),
        }
    }
}

/// Reads the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is available on every x86-64 CPU and has no side effects.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Calibrates the TSC (and the local APIC timer, in the same window) and starts the timer
/// interrupt: the local APIC's where `local_apic` is given, else the PIT's. Returns TSC ticks
/// per second and the source in use.
pub fn init(local_apic: Option<&LocalApic>) -> (u64, TimerSource) {
    let (tsc_hz, apic_hz) = calibrate(local_apic);
    TSC_HZ.store(tsc_hz, Ordering::Relaxed);
    let source = match (local_apic, apic_hz) {
        (Some(apic), Some(hz)) if hz >= TICK_HZ => TimerSource::LocalApic {
            apic: *apic,
            hz,
            tick_count: timer_count_for_tsc(tsc_hz / TICK_HZ, tsc_hz, hz),
        },
        (Some(_), Some(hz)) => {
            crate::kprintln!(
                "kernel-lite: local APIC timer counts {hz} Hz: too slow, the PIT is used"
            );
            TimerSource::Pit
        }
        _ => TimerSource::Pit,
    };
    let source = *SOURCE.call_once(|| source);
    match source {
        TimerSource::LocalApic {
            apic, tick_count, ..
        } => apic.timer_one_shot(tick_count),
        TimerSource::Pit => start_pit(local_apic),
    }
    (tsc_hz, source)
}

/// Starts the PIT at [`TICK_HZ`]; where a local APIC is enabled (with a timer too slow to use),
/// the 8259 reaches the CPU through its LINT0 again.
fn start_pit(local_apic: Option<&LocalApic>) {
    let divisor = (PIT_HZ / TICK_HZ) as u16;
    let mut command = Port::<u8>::new(0x43);
    let mut channel0 = Port::<u8>::new(0x40);
    // SAFETY: programs PIT channel 0 (mode 2, rate generator) at the standard ports; its
    // interrupt line is handled by `interrupts::pit_interrupt`.
    unsafe {
        command.write(0b0011_0100);
        channel0.write(divisor as u8);
        channel0.write((divisor >> 8) as u8);
    }
    if let Some(apic) = local_apic {
        apic.accept_legacy_pic();
    }
    interrupts::unmask_pit();
}

/// Counts TSC ticks, and the local APIC timer's counts where there is one, over about 50 ms of
/// PIT channel 2 (polled, interrupts off). Returns both rates per second.
///
/// The PIT ticks really elapsed are read from channel 2's own count, latched right after the
/// start and the end are taken: a poll that sees the end late (the emulator's thread was
/// descheduled, say) then lengthens the window it measures instead of inflating the rates.
fn calibrate(local_apic: Option<&LocalApic>) -> (u64, Option<u64>) {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    let count = CALIBRATION_PIT_TICKS as u16;
    if let Some(apic) = local_apic {
        apic.timer_start_free_running();
    }
    // SAFETY: (1) port 0x61 bit 0 gates PIT channel 2 and bit 1 the speaker (kept off);
    // (2) channel 2 in mode 0 raises its output (bit 5 of port 0x61) when the count runs out,
    // then counts on down from 0xffff; (3) nothing else uses channel 2.
    let (elapsed_tsc, pit_ticks, apic_counts) = unsafe {
        let value = gate.read();
        gate.write((value & !0x02) & !0x01);
        command.write(0b1011_0000);
        channel2.write(count as u8);
        channel2.write((count >> 8) as u8);
        let value = gate.read();
        gate.write(value | 0x01);
        let start = rdtsc();
        let apic_start = local_apic.map(LocalApic::timer_count);
        let left_at_start = channel2_count();
        while gate.read() & 0x20 == 0 {
            core::hint::spin_loop();
        }
        let end = rdtsc();
        let apic_end = local_apic.map(LocalApic::timer_count);
        let past_the_end = channel2_count().wrapping_neg();
        let value = gate.read();
        gate.write(value & !0x01);
        let pit_ticks = u64::from(left_at_start) + u64::from(past_the_end);
        (end - start, pit_ticks, apic_start.zip(apic_end))
    };
    if let Some(apic) = local_apic {
        apic.timer_stop();
    }
    // A count that makes no sense (an emulator without the latch) falls back to the window.
    let pit_ticks = if (CALIBRATION_PIT_TICKS / 2..CALIBRATION_PIT_TICKS * 2).contains(&pit_ticks) {
        pit_ticks
    } else {
        CALIBRATION_PIT_TICKS
    };
    let apic_hz = apic_counts.map(|(start, end)| timer_hz(start, end, pit_ticks, PIT_HZ));
    (elapsed_tsc * PIT_HZ / pit_ticks, apic_hz)
}

/// PIT channel 2's count, latched so that its two bytes belong together.
fn channel2_count() -> u16 {
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: the latch command (0x80) freezes channel 2's count for one two-byte read and
    // changes nothing else; only `calibrate` uses channel 2, and it calls this.
    unsafe {
        command.write(0b1000_0000);
        u16::from_le_bytes([channel2.read(), channel2.read()])
    }
}

/// TSC ticks per millisecond.
pub fn tsc_per_ms() -> u64 {
    TSC_HZ.load(Ordering::Relaxed) / 1000
}

/// The local APIC timer interrupt: acknowledges it and, when it interrupted ring 3 (an app
/// running), arms the next quantum tick. Returns whether it was a quantum tick.
pub fn on_local_apic_tick(from_user: bool) -> bool {
    if let Some(TimerSource::LocalApic {
        apic, tick_count, ..
    }) = SOURCE.get()
    {
        apic.end_of_interrupt();
        if from_user {
            apic.timer_one_shot(*tick_count);
        }
    }
    from_user
}

/// Halts until an interrupt, with interrupts on, and returns with them off. `wakeup` is the TSC
/// of the next deadline, if any. With the local APIC timer, the one-shot is armed for that
/// deadline (or not at all without one), and re-armed for a quantum tick on the way out, for
/// the app that runs next; with the PIT, its periodic tick wakes the CPU in time.
pub fn idle_until(wakeup: Option<u64>) {
    let started = rdtsc();
    halt_until(wakeup);
    IDLE_TICKS.fetch_add(rdtsc().saturating_sub(started), Ordering::Relaxed);
}

/// TSC ticks the CPU spent halted in [`idle_until`] since boot: the rest of the time it ran
/// (an app, or kernel-lite on its behalf). Under `-icount shift=0` the busy ticks count the
/// guest's instructions (at the TSC's rate), which is how the benchmarks compare work per
/// request with a Linux guest's busy time.
pub fn idle_ticks() -> u64 {
    IDLE_TICKS.load(Ordering::Relaxed)
}

static IDLE_TICKS: AtomicU64 = AtomicU64::new(0);

fn halt_until(wakeup: Option<u64>) {
    let Some(TimerSource::LocalApic {
        apic,
        hz,
        tick_count,
    }) = SOURCE.get()
    else {
        x86_64::instructions::interrupts::enable_and_hlt();
        x86_64::instructions::interrupts::disable();
        return;
    };
    match wakeup {
        Some(deadline) => {
            let now = rdtsc();
            if deadline <= now {
                apic.timer_one_shot(*tick_count);
                return;
            }
            let tsc_hz = TSC_HZ.load(Ordering::Relaxed);
            apic.timer_one_shot(timer_count_for_tsc(deadline - now, tsc_hz, *hz));
        }
        None => apic.timer_stop(),
    }
    x86_64::instructions::interrupts::enable_and_hlt();
    x86_64::instructions::interrupts::disable();
    apic.timer_one_shot(*tick_count);
}
