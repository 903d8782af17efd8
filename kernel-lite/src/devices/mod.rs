//! Devices: what the firmware says the machine has (ACPI), the interrupt controllers (the boot
//! CPU's local APIC, the I/O APICs), PCI functions found over ECAM, and the routing of device
//! interrupts to handlers. This is the ground a driver (virtio-net next) stands on.
//!
//! Everything found at boot is kept in one value, [`Devices`], set once by [`init`] and read
//! through [`get`]; the only state that changes afterwards (vectors, handlers, I/O APIC inputs)
//! is behind its one lock.

pub mod acpi;
pub mod apic;
pub mod irq;
pub mod mmio;
pub mod msix_check;
pub mod pci;
pub mod rtc;
pub mod virtio;

use crate::kprintln;
use acpi::Platform;
use alloc::vec::Vec;
use apic::{IoApic, LocalApic};
use bootloader_api::info::MemoryRegions;
use irq::Router;
use mmio::PhysicalWindow;
use pci::PciFunction;
use spin::{Mutex, Once};

/// The machine's devices as found at boot.
pub struct Devices {
    window: PhysicalWindow,
    local_apic: Option<LocalApic>,
    router: Mutex<Router>,
    pci: Vec<PciFunction>,
}

static DEVICES: Once<Devices> = Once::new();

/// The devices, once [`init`] has run.
pub fn get() -> Option<&'static Devices> {
    DEVICES.get()
}

impl Devices {
    /// The physical-memory window, to map a device's registers ([`PhysicalWindow::map_device`]).
    pub fn window(&self) -> &PhysicalWindow {
        &self.window
    }

    /// The boot CPU's local APIC, when it is in use (else the PIT and the 8259s are).
    pub fn local_apic(&self) -> Option<&LocalApic> {
        self.local_apic.as_ref()
    }

    /// Every PCI function found, in bus order.
    pub fn pci(&self) -> &[PciFunction] {
        &self.pci
    }

    /// The PCI functions with this vendor and device ID.
    pub fn find_pci(&self, vendor: u16, device: u16) -> impl Iterator<Item = &PciFunction> {
        self.pci
            .iter()
            .filter(move |f| f.identity.vendor == vendor && f.identity.device == device)
    }
}

/// Reads the ACPI tables, enables the local APIC and masks every I/O APIC input, enumerates
/// PCI; prints a boot line for each. Nothing here is fatal: without ACPI (or its MADT) the
/// machine keeps the PIT and the 8259 PICs; without an MCFG there is no PCI list.
///
/// Runs once, after `mm::init`, with interrupts off.
pub fn init(
    physical_offset: u64,
    regions: &'static MemoryRegions,
    rsdp: Option<u64>,
) -> &'static Devices {
    let window = PhysicalWindow::new(physical_offset, regions);
    let platform = acpi::discover(&window, rsdp).unwrap_or_else(|error| {
        kprintln!("kernel-lite: acpi: unusable: {error}; legacy PIT and 8259 PICs, no PCI");
        Platform::default()
    });
    let mut local_apic = None;
    let mut io_apics = Vec::new();
    let mut overrides = Vec::new();
    if let Some(topology) = &platform.interrupts {
        match LocalApic::enable(&window, topology.local_apic_address) {
            Ok(apic) => {
                kprintln!(
                    "kernel-lite: local APIC {} at {:#x} (version {:#x}) enabled; 8259 PICs masked",
                    apic.id(),
                    apic.address(),
                    apic.version()
                );
                local_apic = Some(apic);
            }
            Err(error) => kprintln!("kernel-lite: local APIC not used: {error}"),
        }
        if local_apic.is_some() {
            for entry in &topology.io_apics {
                match IoApic::new(&window, entry) {
                    Ok(io_apic) => {
                        kprintln!(
                            "kernel-lite: I/O APIC {} at {:#x}: GSI {}-{}, all masked",
                            io_apic.id,
                            io_apic.address(),
                            io_apic.gsi_base,
                            io_apic.gsi_base + io_apic.inputs - 1
                        );
                        io_apics.push(io_apic);
                    }
                    Err(error) => kprintln!(
                        "kernel-lite: I/O APIC {} at {:#x} not used: {error}",
                        entry.id,
                        entry.address
                    ),
                }
            }
            overrides = topology.overrides.clone();
        }
    }
    let pci = pci::enumerate(&window, &platform.ecam);
    let router = Router::new(local_apic.map(|apic| apic.id()), io_apics, overrides);
    let devices = DEVICES.call_once(|| Devices {
        window,
        local_apic,
        router: Mutex::new(router),
        pci,
    });
    for function in devices.pci() {
        kprintln!("kernel-lite: pci {function}");
    }
    devices
}
