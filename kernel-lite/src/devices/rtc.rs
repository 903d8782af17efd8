//! The boot-time check that device interrupts reach kernel-lite: the CMOS real-time clock's
//! periodic interrupt (ISA IRQ 8) is routed through the I/O APIC with the API a driver uses
//! (allocate a vector, bind a handler, route, unmask), counted for a few milliseconds, and
//! switched off again. Also the wall clock: the RTC's date and time, read once at boot.

use super::irq::{self, IrqError};
use crate::{kprintln, timer};
use core::sync::atomic::{AtomicU32, Ordering};
use x86_64::instructions::port::Port;

const RTC_IRQ: u8 = 8;
const REGISTER_A: u8 = 0x0a;
const REGISTER_B: u8 = 0x0b;
const REGISTER_C: u8 = 0x0c;
/// Register A's rate select for 8192 Hz (32768 Hz >> (rate - 1)).
const RATE_8192_HZ: u8 = 3;
const PERIODIC_INTERRUPT_ENABLE: u8 = 1 << 6;
/// Interrupts to count before the check ends (about 2 ms at 8192 Hz).
const WANTED: u32 = 16;
/// The check gives up after this long.
const TIMEOUT_MS: u64 = 20;

/// Periodic interrupts seen by [`on_interrupt`] during the check.
static COUNT: AtomicU32 = AtomicU32::new(0);

/// Reads CMOS register `index`, with NMIs disabled during the access.
fn read(index: u8) -> u8 {
    let mut select = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: ports 0x70/0x71 select and access a CMOS register; bit 7 of the index keeps NMIs
    // off during the access; the RTC is used by nothing else.
    unsafe {
        select.write(0x80 | index);
        data.read()
    }
}

/// Writes CMOS register `index`, with NMIs disabled during the access.
fn write(index: u8, value: u8) {
    let mut select = Port::<u8>::new(0x70);
    let mut data = Port::<u8>::new(0x71);
    // SAFETY: as in `read`; only the RTC's control registers A and B are written.
    unsafe {
        select.write(0x80 | index);
        data.write(value);
    }
}

/// Leaves the CMOS index on an ordinary register with NMIs enabled again.
fn enable_nmi() {
    let mut select = Port::<u8>::new(0x70);
    // SAFETY: selects status register D without bit 7: NMIs on, nothing written.
    unsafe { select.write(0x0d) };
}

fn on_interrupt(_context: usize) {
    // Reading register C acknowledges the interrupt; the RTC raises no more until it is read.
    read(REGISTER_C);
    COUNT.fetch_add(1, Ordering::Relaxed);
}

/// What the check saw.
#[derive(Debug, Clone, Copy)]
pub struct CheckResult {
    pub gsi: u32,
    pub vector: irq::Vector,
    pub interrupts: u32,
    pub micros: u64,
}

/// Routes the RTC's periodic interrupt, counts it for up to [`TIMEOUT_MS`], and undoes it all.
pub fn check() -> Result<CheckResult, IrqError> {
    let vector = irq::allocate_vector()?;
    let result = count_on(vector);
    irq::free_vector(vector)?;
    let (gsi, interrupts, micros) = result?;
    Ok(CheckResult {
        gsi,
        vector,
        interrupts,
        micros,
    })
}

fn count_on(vector: irq::Vector) -> Result<(u32, u32, u64), IrqError> {
    irq::bind(vector, on_interrupt, 0)?;
    let route = irq::route_isa_irq(RTC_IRQ, vector)?;
    let register_a = read(REGISTER_A);
    let register_b = read(REGISTER_B);
    write(REGISTER_A, (register_a & 0xf0) | RATE_8192_HZ);
    write(REGISTER_B, register_b | PERIODIC_INTERRUPT_ENABLE);
    read(REGISTER_C);
    COUNT.store(0, Ordering::Relaxed);
    irq::set_masked(route.gsi, false)?;
    let start = timer::rdtsc();
    let deadline = start + TIMEOUT_MS * timer::tsc_per_ms();
    let mut now = start;
    while COUNT.load(Ordering::Relaxed) < WANTED && now < deadline {
        timer::idle_until(Some(deadline));
        now = timer::rdtsc();
    }
    let interrupts = COUNT.load(Ordering::Relaxed);
    irq::set_masked(route.gsi, true)?;
    write(REGISTER_B, register_b & !PERIODIC_INTERRUPT_ENABLE);
    write(REGISTER_A, register_a);
    read(REGISTER_C);
    enable_nmi();
    let micros = (now - start) * 1000 / timer::tsc_per_ms().max(1);
    Ok((route.gsi, interrupts, micros))
}

/// Runs the check and prints its boot line.
pub fn check_and_report() {
    match check() {
        Ok(result) => kprintln!(
            "kernel-lite: device interrupts: RTC IRQ {RTC_IRQ} -> GSI {} -> I/O APIC -> {}: {} interrupts in {} us",
            result.gsi,
            result.vector,
            result.interrupts,
            result.micros
        ),
        Err(error) => kprintln!("kernel-lite: device interrupts: not checked: {error}"),
    }
}

const STATUS_A_UPDATE_IN_PROGRESS: u8 = 1 << 7;

/// One reading of the clock's registers: second, minute, hour, day, month, year (two digits),
/// century (register 0x32, which QEMU and most firmware keep).
fn read_clock() -> [u8; 7] {
    [0x00, 0x02, 0x04, 0x07, 0x08, 0x09, 0x32].map(read)
}

/// The wall-clock time in milliseconds since the Unix epoch (UTC, as QEMU's default `-rtc
/// base=utc` keeps it), or `None` when the clock reads as nonsense. Reads until two readings
/// agree, so an update in the middle cannot tear it.
pub fn unix_time_ms() -> Option<u64> {
    let mut previous = None;
    for _ in 0..1000 {
        while read(REGISTER_A) & STATUS_A_UPDATE_IN_PROGRESS != 0 {
            core::hint::spin_loop();
        }
        let reading = read_clock();
        if previous == Some(reading) {
            enable_nmi();
            return lite_core::calendar::rtc_reading_to_unix_ms(reading, read(REGISTER_B));
        }
        previous = Some(reading);
    }
    enable_nmi();
    None
}
