//! The boot-time check that MSI-X reaches kernel-lite, on an Intel 82574 (QEMU's `e1000e`, the
//! q35 machine's default NIC) where there is one: the NIC is reset, its MSI-X table (in a BAR)
//! gets entry 0 pointed at a device vector with the API a driver uses, its "other" interrupt
//! cause is routed to entry 0 and raised a few times through the cause-set register, and the
//! interrupts are counted. Then the NIC's interrupts are masked and MSI-X switched off: no
//! driver owns it, and it never did DMA (bus mastering is on only for the MSI writes).
//!
//! QEMU 7.2's e1000e throttles each MSI-X vector (at least 128 us between messages, by a timer
//! that a software reset does not stop) and aborts when that timer fires with MSI-X off, so the
//! check lets [`SETTLE_MS`] pass with every cause masked before it switches MSI-X off.

use super::irq::{self, IrqError};
use super::pci::{PciError, PciFunction};
use super::{Devices, mmio::MmioError};
use crate::{kprintln, timer};
use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};
use lite_abi::devices::pci::{Bar, COMMAND, COMMAND_BUS_MASTER, COMMAND_MEMORY};

const INTEL: u16 = 0x8086;
const E1000E_82574: u16 = 0x10d3;

/// Device control; bit 26 resets the MAC (self-clearing).
const CTRL: u64 = 0x0000;
const CTRL_RESET: u32 = 1 << 26;
/// Interrupt cause read (write ones to clear), set, mask set, mask clear.
const ICR: u64 = 0x00c0;
const ICS: u64 = 0x00c8;
const IMS: u64 = 0x00d0;
const IMC: u64 = 0x00d8;
/// Interrupt vector allocation: which MSI-X entry each cause uses.
const IVAR: u64 = 0x00e4;
/// The "other" cause, and its IVAR field: valid (bit 3), entry 0, at bits 16–19.
const CAUSE_OTHER: u32 = 1 << 24;
const IVAR_OTHER_TO_ENTRY_0: u32 = (1 << 31) | (0b1000 << 16);
const REGISTERS_BYTES: u64 = 128 * 1024;
/// Interrupts to raise, and how long to wait for each.
const WANTED: u32 = 8;
const TIMEOUT_MS: u64 = 5;
/// Quiet time before MSI-X is switched off: well past the NIC's interrupt throttling.
const SETTLE_MS: u64 = 2;

static COUNT: AtomicU32 = AtomicU32::new(0);

fn on_interrupt(_context: usize) {
    COUNT.fetch_add(1, Ordering::Relaxed);
}

/// Why the check could not run.
#[derive(Debug, Clone, Copy)]
enum CheckError {
    NoRegisterBar,
    Mmio(MmioError),
    Pci(PciError),
    Irq(IrqError),
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckError::NoRegisterBar => write!(f, "BAR 0 is not a memory BAR"),
            CheckError::Mmio(error) => write!(f, "{error}"),
            CheckError::Pci(error) => write!(f, "{error}"),
            CheckError::Irq(error) => write!(f, "{error}"),
        }
    }
}

/// Raises the NIC's "other" cause `WANTED` times; returns the vector and how many arrived.
fn count_on(devices: &Devices, nic: &PciFunction) -> Result<(irq::Vector, u32), CheckError> {
    let Some(Bar::Memory { address, .. }) = nic.bars[0] else {
        return Err(CheckError::NoRegisterBar);
    };
    let registers = devices
        .window()
        .map_device(address, REGISTERS_BYTES)
        .map_err(CheckError::Mmio)?;
    let reset = || {
        registers.write32(CTRL, registers.read32(CTRL) | CTRL_RESET);
        for _ in 0..1000 {
            if registers.read32(CTRL) & CTRL_RESET == 0 {
                break;
            }
        }
        registers.write32(IMC, u32::MAX);
        registers.write32(ICR, u32::MAX);
        registers.write32(IVAR, 0);
    };
    reset();
    let vector = irq::allocate_vector().map_err(CheckError::Irq)?;
    let counted = (|| {
        irq::bind(vector, on_interrupt, 0).map_err(CheckError::Irq)?;
        let message = irq::msi_message(vector).map_err(CheckError::Irq)?;
        let table = nic.msix_table(devices.window()).map_err(CheckError::Pci)?;
        table.set(0, message);
        table.set_masked(0, false);
        nic.enable_msix().map_err(CheckError::Pci)?;
        registers.write32(IVAR, IVAR_OTHER_TO_ENTRY_0);
        registers.write32(IMS, CAUSE_OTHER);
        COUNT.store(0, Ordering::Relaxed);
        for raised in 1..=WANTED {
            registers.write32(ICS, CAUSE_OTHER);
            let deadline = timer::rdtsc() + TIMEOUT_MS * timer::tsc_per_ms();
            while COUNT.load(Ordering::Relaxed) < raised && timer::rdtsc() < deadline {
                timer::idle_until(Some(deadline));
            }
            registers.write32(ICR, CAUSE_OTHER);
        }
        Ok(COUNT.load(Ordering::Relaxed))
    })();
    reset();
    let settled = timer::rdtsc() + SETTLE_MS * timer::tsc_per_ms();
    while timer::rdtsc() < settled {
        timer::idle_until(Some(settled));
    }
    if let Ok(table) = nic.msix_table(devices.window()) {
        table.set_masked(0, true);
    }
    nic.disable_msix();
    let _ = irq::free_vector(vector);
    counted.map(|count| (vector, count))
}

/// Runs the check where there is an 82574 with MSI-X, and prints its boot line.
pub fn check_and_report(devices: &Devices) {
    let Some(nic) = devices
        .find_pci(INTEL, E1000E_82574)
        .find(|nic| nic.msix.is_some())
    else {
        kprintln!("kernel-lite: device interrupts: MSI-X not checked: no 82574 NIC");
        return;
    };
    let command = nic.read_config16(COMMAND as u64);
    nic.enable(COMMAND_MEMORY | COMMAND_BUS_MASTER);
    let result = count_on(devices, nic);
    nic.write_config16(COMMAND as u64, command);
    match result {
        Ok((vector, count)) => kprintln!(
            "kernel-lite: device interrupts: MSI-X {} {:04x}:{:04x} entry 0 -> {vector}: {count} of {WANTED} interrupts",
            nic.address,
            nic.identity.vendor,
            nic.identity.device
        ),
        Err(error) => kprintln!("kernel-lite: device interrupts: MSI-X not checked: {error}"),
    }
}
