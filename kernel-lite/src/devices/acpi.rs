//! What the firmware's ACPI tables say about this machine: the interrupt controllers (MADT)
//! and where PCI configuration space is mapped (MCFG). The parsing is `lite_abi`'s; this reads
//! through the physical-memory window and reports each finding, or each problem, in a boot line.

use super::mmio::PhysicalWindow;
use crate::kprintln;
use alloc::vec::Vec;
use lite_abi::devices::acpi::{
    AcpiError, EcamRegion, InterruptOverride, IoApicEntry, MADT, MCFG, Madt, MadtEntry, Polarity,
    RootTable, Tables, Trigger, mcfg_regions,
};

/// The interrupt controllers the MADT describes.
#[derive(Debug, Clone)]
pub struct InterruptTopology {
    pub local_apic_address: u64,
    /// APIC IDs of the CPUs that are enabled.
    pub cpus: Vec<u8>,
    pub io_apics: Vec<IoApicEntry>,
    pub overrides: Vec<InterruptOverride>,
    /// The legacy 8259 PICs are there too (and must be masked).
    pub legacy_pics: bool,
}

/// What kernel-lite learnt from ACPI.
#[derive(Debug, Clone, Default)]
pub struct Platform {
    /// `None` without a usable MADT: no local APIC timer, no I/O APIC.
    pub interrupts: Option<InterruptTopology>,
    /// Empty without a usable MCFG: no PCI enumeration.
    pub ecam: Vec<EcamRegion>,
}

/// Reads the tables from the RSDP the bootloader found. A missing or bad RSDP is an error (the
/// machine runs on the legacy timer and PICs); a bad or missing MADT or MCFG only leaves its
/// part out, with a boot line that says why.
pub fn discover(window: &PhysicalWindow, rsdp: Option<u64>) -> Result<Platform, AcpiError> {
    let tables = Tables::new(window, rsdp.ok_or(AcpiError::NoRsdp)?)?;
    let root = match tables.rsdp.root {
        RootTable::Rsdt(at) => ("RSDT", u64::from(at)),
        RootTable::Xsdt(at) => ("XSDT", at),
    };
    kprintln!(
        "kernel-lite: acpi: RSDP at {:#x} (revision {}), {} at {:#x} with {} tables",
        tables.rsdp.address,
        tables.rsdp.revision,
        root.0,
        root.1,
        tables.addresses().count()
    );
    let interrupts = match tables
        .find(MADT)
        .and_then(|madt| madt.map(read_madt).transpose())
    {
        Ok(Some(topology)) => {
            print_topology(&topology);
            Some(topology)
        }
        Ok(None) => {
            kprintln!("kernel-lite: acpi: no MADT: no local APIC or I/O APIC is used");
            None
        }
        Err(error) => {
            kprintln!(
                "kernel-lite: acpi: MADT refused: {error}; no local APIC or I/O APIC is used"
            );
            None
        }
    };
    let ecam = match tables.find(MCFG) {
        Ok(Some(table)) => match mcfg_regions(table) {
            Ok(regions) => regions.collect(),
            Err(error) => {
                kprintln!("kernel-lite: acpi: MCFG refused: {error}; PCI enumeration skipped");
                Vec::new()
            }
        },
        Ok(None) => {
            kprintln!("kernel-lite: acpi: no MCFG: PCI enumeration skipped");
            Vec::new()
        }
        Err(error) => {
            kprintln!("kernel-lite: acpi: MCFG refused: {error}; PCI enumeration skipped");
            Vec::new()
        }
    };
    for region in &ecam {
        kprintln!(
            "kernel-lite: acpi: MCFG: PCI ECAM at {:#x}, segment {}, buses {:02x}-{:02x}",
            region.base,
            region.segment,
            region.bus_start,
            region.bus_end
        );
    }
    Ok(Platform { interrupts, ecam })
}

fn read_madt(table: lite_abi::devices::acpi::Table<'_>) -> Result<InterruptTopology, AcpiError> {
    let madt = Madt::parse(table)?;
    let mut topology = InterruptTopology {
        local_apic_address: madt.local_apic_address()?,
        cpus: Vec::new(),
        io_apics: Vec::new(),
        overrides: Vec::new(),
        legacy_pics: madt.pcat_compat,
    };
    for entry in madt.entries() {
        match entry? {
            MadtEntry::LocalApic {
                apic_id, enabled, ..
            } if enabled => topology.cpus.push(apic_id),
            MadtEntry::IoApic(io_apic) => topology.io_apics.push(io_apic),
            MadtEntry::Override(entry) => topology.overrides.push(entry),
            _ => {}
        }
    }
    Ok(topology)
}

fn print_topology(topology: &InterruptTopology) {
    kprintln!(
        "kernel-lite: acpi: MADT: {} CPU(s), local APIC at {:#x}, {} I/O APIC(s){}",
        topology.cpus.len(),
        topology.local_apic_address,
        topology.io_apics.len(),
        if topology.legacy_pics {
            ", 8259 PICs present"
        } else {
            ""
        }
    );
    if topology.overrides.is_empty() {
        return;
    }
    let mut line = alloc::string::String::from("kernel-lite: acpi: MADT overrides:");
    for entry in &topology.overrides {
        use core::fmt::Write;
        let _ = write!(line, " IRQ{}->GSI{}", entry.irq, entry.gsi);
        if entry.trigger == Trigger::Level {
            line.push_str(" level");
        }
        if entry.polarity == Polarity::ActiveLow {
            line.push_str(" low");
        }
        line.push(',');
    }
    line.pop();
    kprintln!("{line}");
}
