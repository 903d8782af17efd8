//! PCI over ECAM: enumeration from bus 0 down through PCI-to-PCI bridges, each function's
//! identity, BARs (sized by the write-ones probe) and MSI/MSI-X capabilities, and the MSI-X
//! table a driver programs. The decoding is `lite_abi::devices::pci`'s.

use super::mmio::{Mmio, MmioError, PhysicalWindow};
use crate::kprintln;
use alloc::vec::Vec;
use core::fmt;
use lite_abi::devices::acpi::EcamRegion;
use lite_abi::devices::apic::MsiMessage;
use lite_abi::devices::pci::{
    BAR0, Bar, BarKind, CAPABILITY_MSI, CAPABILITY_MSIX, COMMAND, COMMAND_INTX_DISABLE, COMMAND_IO,
    COMMAND_MEMORY, CONFIG_BYTES, FunctionAddress, Identity, MSIX_ENABLE, MSIX_ENTRY_BYTES,
    MSIX_ENTRY_MASKED, MSIX_FUNCTION_MASK, MsiCapability, MsixCapability, SECONDARY_BUS,
    capabilities, class_name,
};

/// Bytes of one function's ECAM configuration space.
const FUNCTION_CONFIG_BYTES: u64 = 4096;

/// One PCI function, as found at boot.
#[derive(Debug, Clone)]
pub struct PciFunction {
    pub segment: u16,
    pub address: FunctionAddress,
    pub identity: Identity,
    /// BAR slots; a 64-bit BAR fills its slot and leaves the next `None`.
    pub bars: [Option<Bar>; 6],
    pub msi: Option<MsiCapability>,
    pub msix: Option<MsixCapability>,
    config: Mmio,
}

/// Why a function's MSI-X table cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciError {
    NoMsix,
    /// The BAR the capability names is missing or not a memory BAR.
    BadMsixBar(u8),
    Mmio(MmioError),
}

impl fmt::Display for PciError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciError::NoMsix => write!(f, "the function has no MSI-X capability"),
            PciError::BadMsixBar(bar) => write!(f, "the MSI-X table's BAR {bar} is not memory"),
            PciError::Mmio(error) => write!(f, "{error}"),
        }
    }
}

impl PciFunction {
    pub fn read_config32(&self, offset: u64) -> u32 {
        self.config.read32(offset)
    }

    pub fn write_config32(&self, offset: u64, value: u32) {
        self.config.write32(offset, value)
    }

    pub fn read_config16(&self, offset: u64) -> u16 {
        self.config.read16(offset)
    }

    pub fn write_config16(&self, offset: u64, value: u16) {
        self.config.write16(offset, value)
    }

    /// Sets bits of the command register (memory decoding, bus mastering, INTx disable).
    pub fn enable(&self, bits: u16) {
        let command = self.read_config16(COMMAND as u64);
        self.write_config16(COMMAND as u64, command | bits);
    }

    /// Maps the function's MSI-X table, every entry masked.
    pub fn msix_table(&self, window: &PhysicalWindow) -> Result<MsixTable, PciError> {
        let msix = self.msix.ok_or(PciError::NoMsix)?;
        let Some(Bar::Memory { address, .. }) = self
            .bars
            .get(usize::from(msix.table_bar))
            .copied()
            .flatten()
        else {
            return Err(PciError::BadMsixBar(msix.table_bar));
        };
        let entries = window
            .map_device(
                address + u64::from(msix.table_offset),
                u64::from(msix.table_size) * MSIX_ENTRY_BYTES,
            )
            .map_err(PciError::Mmio)?;
        let table = MsixTable { entries, msix };
        for index in 0..msix.table_size {
            table.set_masked(index, true);
        }
        Ok(table)
    }

    /// Turns MSI-X on (legacy INTx off); the table's entries are masked until unmasked.
    pub fn enable_msix(&self) -> Result<(), PciError> {
        let msix = self.msix.ok_or(PciError::NoMsix)?;
        let control_at = msix.control_offset() as u64;
        let control = self.read_config16(control_at);
        self.write_config16(control_at, (control | MSIX_ENABLE) & !MSIX_FUNCTION_MASK);
        self.enable(COMMAND_INTX_DISABLE | COMMAND_MEMORY);
        Ok(())
    }

    /// Turns MSI-X off.
    pub fn disable_msix(&self) {
        if let Some(msix) = self.msix {
            let control_at = msix.control_offset() as u64;
            let control = self.read_config16(control_at);
            self.write_config16(control_at, control & !MSIX_ENABLE);
        }
    }
}

impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = &self.identity;
        if self.segment != 0 {
            write!(f, "{:04x}:", self.segment)?;
        }
        write!(
            f,
            "{} {:04x}:{:04x} class {:02x}.{:02x} ({})",
            self.address,
            id.vendor,
            id.device,
            id.class,
            id.subclass,
            class_name(id.class, id.subclass)
        )?;
        for (index, bar) in self.bars.iter().enumerate() {
            if let Some(bar) = bar {
                write!(f, " bar{index}={bar}")?;
            }
        }
        if self.msi.is_some() {
            write!(f, " msi")?;
        }
        if let Some(msix) = self.msix {
            write!(f, " msi-x({})", msix.table_size)?;
        }
        Ok(())
    }
}

/// A function's MSI-X vector table.
#[derive(Debug, Clone, Copy)]
pub struct MsixTable {
    entries: Mmio,
    msix: MsixCapability,
}

impl MsixTable {
    /// Points entry `index` at `message` (leaving its mask as it is); `false` past the end.
    pub fn set(&self, index: u16, message: MsiMessage) -> bool {
        let Some(at) = self.msix.entry_offset(index) else {
            return false;
        };
        let at = at - u64::from(self.msix.table_offset);
        self.entries.write32(at, message.address as u32);
        self.entries.write32(at + 4, (message.address >> 32) as u32);
        self.entries.write32(at + 8, message.data);
        true
    }

    /// Masks or unmasks entry `index`; `false` past the end.
    pub fn set_masked(&self, index: u16, masked: bool) -> bool {
        let Some(at) = self.msix.entry_offset(index) else {
            return false;
        };
        let control_at = at - u64::from(self.msix.table_offset) + 12;
        let control = self.entries.read32(control_at);
        let control = if masked {
            control | MSIX_ENTRY_MASKED
        } else {
            control & !MSIX_ENTRY_MASKED
        };
        self.entries.write32(control_at, control);
        true
    }
}

/// Walks every ECAM region from its first bus, following bridges.
pub fn enumerate(window: &PhysicalWindow, regions: &[EcamRegion]) -> Vec<PciFunction> {
    let mut functions = Vec::new();
    for region in regions {
        let bytes = (u64::from(region.bus_end - region.bus_start) + 1) << 20;
        let ecam_base = region.base + (u64::from(region.bus_start) << 20);
        let ecam = match window.map_device(ecam_base, bytes) {
            Ok(ecam) => ecam,
            Err(error) => {
                kprintln!(
                    "kernel-lite: pci: segment {} skipped: {error}",
                    region.segment
                );
                continue;
            }
        };
        let mut scanned = [false; 256];
        scan_bus(
            region,
            &ecam,
            region.bus_start,
            &mut scanned,
            &mut functions,
        );
    }
    functions
}

fn scan_bus(
    region: &EcamRegion,
    ecam: &Mmio,
    bus: u8,
    scanned: &mut [bool; 256],
    found: &mut Vec<PciFunction>,
) {
    if bus < region.bus_start || bus > region.bus_end || scanned[usize::from(bus)] {
        return;
    }
    scanned[usize::from(bus)] = true;
    for device in 0..32 {
        for function in 0..8 {
            let Some(address) = FunctionAddress::new(bus, device, function) else {
                continue;
            };
            let Some(offset) = address.ecam_offset(region.bus_start) else {
                continue;
            };
            let config = ecam.slice(offset, FUNCTION_CONFIG_BYTES);
            let Some(pci_function) = read_function(region.segment, address, config) else {
                if function == 0 {
                    break;
                }
                continue;
            };
            let multi_function = pci_function.identity.multi_function;
            if pci_function.identity.is_pci_bridge() {
                let secondary =
                    config.read32(SECONDARY_BUS as u64 & !3).to_le_bytes()[SECONDARY_BUS % 4];
                found.push(pci_function);
                scan_bus(region, ecam, secondary, scanned, found);
            } else {
                found.push(pci_function);
            }
            if function == 0 && !multi_function {
                break;
            }
        }
    }
}

fn read_function(segment: u16, address: FunctionAddress, config: Mmio) -> Option<PciFunction> {
    if config.read16(0) == lite_abi::devices::pci::NO_DEVICE {
        return None;
    }
    let mut bytes = [0u8; CONFIG_BYTES];
    for (index, word) in bytes.as_chunks_mut::<4>().0.iter_mut().enumerate() {
        word.copy_from_slice(&config.read32(index as u64 * 4).to_le_bytes());
    }
    let identity = Identity::parse(&bytes)?;
    let mut msi = None;
    let mut msix = None;
    for capability in capabilities(&bytes) {
        match capability.id {
            CAPABILITY_MSI => msi = msi.or(MsiCapability::parse(&bytes, capability.offset)),
            CAPABILITY_MSIX => msix = msix.or(MsixCapability::parse(&bytes, capability.offset)),
            _ => {}
        }
    }
    Some(PciFunction {
        segment,
        address,
        bars: probe_bars(&config, identity.bar_count()),
        identity,
        msi,
        msix,
        config,
    })
}

/// Sizes each BAR by writing all ones and reading back, with decoding off meanwhile so the
/// device never answers at the probe's address; restores the BARs and the command register.
fn probe_bars(config: &Mmio, count: usize) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    let command = config.read16(COMMAND as u64);
    config.write16(COMMAND as u64, command & !(COMMAND_IO | COMMAND_MEMORY));
    let mut index = 0;
    while index < count {
        let at = (BAR0 + 4 * index) as u64;
        let raw = config.read32(at);
        let wide = BarKind::of(raw) == BarKind::Memory64 && index + 1 < count;
        config.write32(at, u32::MAX);
        let probe = config.read32(at);
        config.write32(at, raw);
        let (high, probe_high) = if wide {
            let high = config.read32(at + 4);
            config.write32(at + 4, u32::MAX);
            let probe_high = config.read32(at + 4);
            config.write32(at + 4, high);
            (high, probe_high)
        } else {
            (0, 0)
        };
        bars[index] = Bar::decode(raw, high, probe, probe_high);
        index += if wide { 2 } else { 1 };
    }
    config.write16(COMMAND as u64, command);
    bars
}
