//! The local APIC (xAPIC, memory-mapped) of the boot CPU and the I/O APICs.
//!
//! The local APIC takes every interrupt once the 8259 PICs are masked: its timer (one-shot,
//! see `timer`), device interrupts routed by the I/O APICs or sent as MSI/MSI-X messages, its
//! error interrupt and its spurious vector.

use super::mmio::{Mmio, MmioError, PhysicalWindow};
use core::fmt;
use lite_abi::devices::acpi::IoApicEntry;
use lite_abi::devices::apic::{
    IOAPIC_VERSION, Redirection, TIMER_DIVIDE_BY_16, ioapic_inputs, redirection_registers,
};
use x86_64::registers::model_specific::Msr;

/// The local APIC's vectors (the highest priority class, above every device vector).
pub const TIMER_VECTOR: u8 = 0xf0;
pub const ERROR_VECTOR: u8 = 0xfe;
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_BASE_ENABLE: u64 = 1 << 11;
const APIC_BASE_X2APIC: u64 = 1 << 10;

const REG_ID: u64 = 0x20;
const REG_VERSION: u64 = 0x30;
const REG_TPR: u64 = 0x80;
const REG_EOI: u64 = 0xb0;
const REG_SPURIOUS: u64 = 0xf0;
const REG_ERROR_STATUS: u64 = 0x280;
const REG_LVT_TIMER: u64 = 0x320;
const REG_LVT_LINT0: u64 = 0x350;
const REG_LVT_ERROR: u64 = 0x370;
const REG_TIMER_INITIAL: u64 = 0x380;
const REG_TIMER_CURRENT: u64 = 0x390;
const REG_TIMER_DIVIDE: u64 = 0x3e0;
const LVT_MASKED: u32 = 1 << 16;
const SPURIOUS_APIC_ENABLE: u32 = 1 << 8;

/// Why the local APIC is not used (the PIT and the 8259 PICs stay in charge).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicError {
    /// CPUID says the CPU has no local APIC.
    NotInCpuid,
    /// The firmware left the local APIC in x2APIC mode, which kernel-lite does not drive.
    X2ApicMode,
    /// The base MSR and the MADT disagree on the local APIC's address.
    BaseMismatch {
        msr: u64,
        madt: u64,
    },
    Mmio(MmioError),
}

impl fmt::Display for ApicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApicError::NotInCpuid => write!(f, "the CPU reports no local APIC"),
            ApicError::X2ApicMode => write!(f, "the local APIC is in x2APIC mode"),
            ApicError::BaseMismatch { msr, madt } => write!(
                f,
                "the local APIC is at {msr:#x} by its MSR but at {madt:#x} by the MADT"
            ),
            ApicError::Mmio(error) => write!(f, "{error}"),
        }
    }
}

/// The boot CPU's local APIC, enabled.
#[derive(Debug, Clone, Copy)]
pub struct LocalApic {
    registers: Mmio,
    id: u8,
    version: u8,
}

impl LocalApic {
    /// Enables the local APIC at `address` (from the MADT): spurious vector, error vector,
    /// timer and LINT0 masked (the 8259s' virtual wire is not used), all priorities accepted.
    pub fn enable(window: &PhysicalWindow, address: u64) -> Result<LocalApic, ApicError> {
        const CPUID_APIC: u32 = 1 << 9;
        let has_apic = core::arch::x86_64::__cpuid(1).edx & CPUID_APIC != 0;
        if !has_apic {
            return Err(ApicError::NotInCpuid);
        }
        let mut base_msr = Msr::new(IA32_APIC_BASE);
        // SAFETY: the CPU has a local APIC (CPUID above), so IA32_APIC_BASE exists; reading it
        // has no side effects.
        let base = unsafe { base_msr.read() };
        if base & APIC_BASE_X2APIC != 0 {
            return Err(ApicError::X2ApicMode);
        }
        let msr_address = base & 0x000f_ffff_ffff_f000;
        if msr_address != address {
            return Err(ApicError::BaseMismatch {
                msr: msr_address,
                madt: address,
            });
        }
        if base & APIC_BASE_ENABLE == 0 {
            // SAFETY: sets only the global enable bit, at the address the MSR already holds;
            // every local interrupt source is masked until it is programmed below.
            unsafe { base_msr.write(base | APIC_BASE_ENABLE) };
        }
        let registers = window.map_device(address, 4096).map_err(ApicError::Mmio)?;
        let apic = LocalApic {
            registers,
            id: (registers.read32(REG_ID) >> 24) as u8,
            version: registers.read32(REG_VERSION) as u8,
        };
        registers.write32(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
        registers.write32(REG_TIMER_INITIAL, 0);
        registers.write32(REG_LVT_LINT0, LVT_MASKED);
        registers.write32(REG_LVT_ERROR, u32::from(ERROR_VECTOR));
        registers.write32(REG_TPR, 0);
        registers.write32(
            REG_SPURIOUS,
            SPURIOUS_APIC_ENABLE | u32::from(SPURIOUS_VECTOR),
        );
        apic.clear_errors();
        apic.end_of_interrupt();
        Ok(apic)
    }

    pub fn id(&self) -> u8 {
        self.id
    }

    pub fn version(&self) -> u8 {
        self.version
    }

    pub fn address(&self) -> u64 {
        self.registers.physical()
    }

    /// Signals the end of the interrupt being handled (not for the spurious vector).
    pub fn end_of_interrupt(&self) {
        self.registers.write32(REG_EOI, 0);
    }

    /// Reads and clears the error status.
    pub fn clear_errors(&self) -> u32 {
        // The status register latches on a write.
        self.registers.write32(REG_ERROR_STATUS, 0);
        self.registers.read32(REG_ERROR_STATUS)
    }

    /// Starts the timer counting down from `u32::MAX` with its interrupt masked (calibration).
    pub fn timer_start_free_running(&self) {
        self.registers.write32(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
        self.registers
            .write32(REG_LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
        self.registers.write32(REG_TIMER_INITIAL, u32::MAX);
    }

    /// The timer's current count.
    pub fn timer_count(&self) -> u32 {
        self.registers.read32(REG_TIMER_CURRENT)
    }

    /// Arms the timer to interrupt once, at [`TIMER_VECTOR`], after `count` ticks; re-arming
    /// replaces the previous count.
    pub fn timer_one_shot(&self, count: u32) {
        self.registers.write32(REG_TIMER_DIVIDE, TIMER_DIVIDE_BY_16);
        self.registers
            .write32(REG_LVT_TIMER, u32::from(TIMER_VECTOR));
        self.registers.write32(REG_TIMER_INITIAL, count.max(1));
    }

    /// Stops the timer: no interrupt until it is armed again.
    pub fn timer_stop(&self) {
        self.registers.write32(REG_TIMER_INITIAL, 0);
    }

    /// Lets the 8259 PIC's interrupts in through LINT0 (ExtINT, the "virtual wire"), for the
    /// PIT fallback; they are acknowledged at the PIC, not here.
    pub fn accept_legacy_pic(&self) {
        const LVT_EXTINT: u32 = 0b111 << 8;
        self.registers.write32(REG_LVT_LINT0, LVT_EXTINT);
    }
}

/// One I/O APIC: its inputs serve GSIs `gsi_base..gsi_base + inputs`.
#[derive(Debug)]
pub struct IoApic {
    registers: Mmio,
    pub id: u8,
    pub gsi_base: u32,
    pub inputs: u32,
}

const IOREGSEL: u64 = 0x00;
const IOWIN: u64 = 0x10;

impl IoApic {
    /// Maps the I/O APIC the MADT lists and masks every input.
    pub fn new(window: &PhysicalWindow, entry: &IoApicEntry) -> Result<IoApic, MmioError> {
        let registers = window.map_device(entry.address.into(), 0x20)?;
        let mut io_apic = IoApic {
            registers,
            id: entry.id,
            gsi_base: entry.gsi_base,
            inputs: 0,
        };
        io_apic.inputs = ioapic_inputs(io_apic.read(IOAPIC_VERSION));
        for pin in 0..io_apic.inputs {
            io_apic.set(pin, Redirection::unused());
        }
        Ok(io_apic)
    }

    pub fn address(&self) -> u64 {
        self.registers.physical()
    }

    fn read(&mut self, register: u32) -> u32 {
        self.registers.write32(IOREGSEL, register);
        self.registers.read32(IOWIN)
    }

    fn write(&mut self, register: u32, value: u32) {
        self.registers.write32(IOREGSEL, register);
        self.registers.write32(IOWIN, value);
    }

    /// The input serving `gsi`, if this I/O APIC has it.
    pub fn pin_of(&self, gsi: u32) -> Option<u32> {
        gsi.checked_sub(self.gsi_base)
            .filter(|&pin| pin < self.inputs)
    }

    pub fn get(&mut self, pin: u32) -> Redirection {
        let (low, high) = redirection_registers(pin);
        let value = u64::from(self.read(low)) | (u64::from(self.read(high)) << 32);
        Redirection::decode(value)
    }

    /// Programs input `pin`. The low half (with the mask bit) is written last when unmasking
    /// and first when masking, so the input never fires half-programmed.
    pub fn set(&mut self, pin: u32, entry: Redirection) {
        let (low, high) = redirection_registers(pin);
        let value = entry.encode();
        if entry.masked {
            self.write(low, value as u32);
            self.write(high, (value >> 32) as u32);
        } else {
            self.write(high, (value >> 32) as u32);
            self.write(low, value as u32);
        }
    }
}
