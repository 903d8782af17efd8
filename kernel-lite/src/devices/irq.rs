//! Device interrupts: a small pool of IDT vectors, a handler (a plain function and a context
//! word) bound to each, and the two ways a device reaches one — an I/O APIC input (ISA IRQs via
//! the MADT's overrides, or any GSI) or an MSI/MSI-X message aimed at the boot CPU's local
//! APIC.
//!
//! A driver's sequence: [`allocate_vector`], [`bind`], then either [`route_isa_irq`] and
//! [`set_masked`]`(gsi, false)`, or [`msi_message`] written into the device's MSI-X table (see
//! `pci::PciFunction::msix_table`), and [`free_vector`] when done. Handlers run in interrupt context with
//! interrupts off, on whichever kernel stack was current; they must be short and must not
//! block. The local APIC's EOI is sent after the handler returns.

use super::apic::IoApic;
use alloc::vec::Vec;
use core::fmt;
use lite_abi::devices::acpi::{InterruptOverride, IsaRoute, Polarity, Trigger, isa_route};
use lite_abi::devices::apic::{MsiMessage, Redirection};

/// The first IDT vector handed to devices; [`DEVICE_VECTORS`] of them follow.
pub const FIRST_DEVICE_VECTOR: u8 = 0x50;
pub const DEVICE_VECTORS: usize = 32;

/// An IDT vector allocated to a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vector(u8);

impl Vector {
    fn slot(self) -> usize {
        usize::from(self.0 - FIRST_DEVICE_VECTOR)
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vector {:#x}", self.0)
    }
}

/// A device interrupt handler; gets the context word given to [`bind`].
pub type Handler = fn(context: usize);

/// Why an interrupt could not be set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IrqError {
    /// There is no enabled local APIC (and so no I/O APIC or MSI delivery).
    NoApic,
    /// Every device vector is taken.
    NoFreeVector,
    /// The vector was not allocated (or was freed).
    NotAllocated(Vector),
    /// No I/O APIC serves this GSI.
    NoInputFor { gsi: u32 },
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IrqError::NoApic => write!(f, "no local APIC is in use"),
            IrqError::NoFreeVector => write!(f, "all {DEVICE_VECTORS} device vectors are taken"),
            IrqError::NotAllocated(vector) => write!(f, "{vector} is not allocated"),
            IrqError::NoInputFor { gsi } => write!(f, "no I/O APIC serves GSI {gsi}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Binding {
    handler: Handler,
    context: usize,
}

/// The routing state, behind the `Devices` lock. kernel-lite runs with interrupts off in ring
/// 0 except while idle, and never holds the lock there, so an interrupt never finds it taken.
#[derive(Debug)]
pub struct Router {
    /// The boot CPU's local APIC ID, or `None` when no local APIC is in use.
    destination: Option<u8>,
    io_apics: Vec<IoApic>,
    overrides: Vec<InterruptOverride>,
    allocated: u32,
    bindings: [Option<Binding>; DEVICE_VECTORS],
}

impl Router {
    pub fn new(
        destination: Option<u8>,
        io_apics: Vec<IoApic>,
        overrides: Vec<InterruptOverride>,
    ) -> Router {
        Router {
            destination,
            io_apics,
            overrides,
            allocated: 0,
            bindings: [None; DEVICE_VECTORS],
        }
    }

    fn check(&self, vector: Vector) -> Result<(), IrqError> {
        if self.allocated & (1 << vector.slot()) == 0 {
            return Err(IrqError::NotAllocated(vector));
        }
        Ok(())
    }

    fn allocate(&mut self) -> Result<Vector, IrqError> {
        self.destination.ok_or(IrqError::NoApic)?;
        let slot = (!self.allocated).trailing_zeros() as usize;
        if slot >= DEVICE_VECTORS {
            return Err(IrqError::NoFreeVector);
        }
        self.allocated |= 1 << slot;
        Ok(Vector(FIRST_DEVICE_VECTOR + slot as u8))
    }

    /// Clears every I/O APIC input aimed at `vector`, unbinds it and returns it to the pool.
    fn free(&mut self, vector: Vector) {
        for io_apic in &mut self.io_apics {
            for pin in 0..io_apic.inputs {
                let entry = io_apic.get(pin);
                if entry.vector == vector.0 {
                    io_apic.set(pin, Redirection::unused());
                }
            }
        }
        self.bindings[vector.slot()] = None;
        self.allocated &= !(1 << vector.slot());
    }

    fn io_apic_for(&mut self, gsi: u32) -> Result<(&mut IoApic, u32), IrqError> {
        self.io_apics
            .iter_mut()
            .find_map(|io_apic| io_apic.pin_of(gsi).map(|pin| (io_apic, pin)))
            .ok_or(IrqError::NoInputFor { gsi })
    }

    fn route(
        &mut self,
        gsi: u32,
        vector: Vector,
        polarity: Polarity,
        trigger: Trigger,
    ) -> Result<(), IrqError> {
        self.check(vector)?;
        let destination = self.destination.ok_or(IrqError::NoApic)?;
        let (io_apic, pin) = self.io_apic_for(gsi)?;
        io_apic.set(
            pin,
            Redirection {
                vector: vector.0,
                destination,
                polarity,
                trigger,
                masked: true,
            },
        );
        Ok(())
    }

    fn set_masked(&mut self, gsi: u32, masked: bool) -> Result<(), IrqError> {
        let (io_apic, pin) = self.io_apic_for(gsi)?;
        let entry = io_apic.get(pin);
        io_apic.set(pin, Redirection { masked, ..entry });
        Ok(())
    }
}

fn with_router<R>(f: impl FnOnce(&mut Router) -> Result<R, IrqError>) -> Result<R, IrqError> {
    let devices = super::get().ok_or(IrqError::NoApic)?;
    f(&mut devices.router.lock())
}

/// Takes a free device vector.
pub fn allocate_vector() -> Result<Vector, IrqError> {
    with_router(Router::allocate)
}

/// Masks whatever the vector was routed from, unbinds it and returns it to the pool.
pub fn free_vector(vector: Vector) -> Result<(), IrqError> {
    with_router(|router| {
        router.check(vector)?;
        router.free(vector);
        Ok(())
    })
}

/// Makes `handler(context)` run on each interrupt at `vector`.
pub fn bind(vector: Vector, handler: Handler, context: usize) -> Result<(), IrqError> {
    with_router(|router| {
        router.check(vector)?;
        router.bindings[vector.slot()] = Some(Binding { handler, context });
        Ok(())
    })
}

/// Routes ISA IRQ `irq` to `vector` through its I/O APIC input, with the MADT's override for
/// that IRQ (GSI, polarity, trigger) where there is one; the input stays masked.
pub fn route_isa_irq(irq: u8, vector: Vector) -> Result<IsaRoute, IrqError> {
    with_router(|router| {
        let route = isa_route(&router.overrides, irq);
        router.route(route.gsi, vector, route.polarity, route.trigger)?;
        Ok(route)
    })
}

/// Masks or unmasks the I/O APIC input of `gsi`.
pub fn set_masked(gsi: u32, masked: bool) -> Result<(), IrqError> {
    with_router(|router| router.set_masked(gsi, masked))
}

/// The MSI/MSI-X message that raises `vector` on the boot CPU.
pub fn msi_message(vector: Vector) -> Result<MsiMessage, IrqError> {
    with_router(|router| {
        router.check(vector)?;
        let destination = router.destination.ok_or(IrqError::NoApic)?;
        Ok(MsiMessage::fixed(destination, vector.0))
    })
}

/// Runs the handler bound to device vector `vector`, then signals the end of the interrupt.
/// Called by the IDT's device-vector entries.
pub fn dispatch(vector: u8) {
    let Some(devices) = super::get() else {
        return;
    };
    let slot = usize::from(vector.wrapping_sub(FIRST_DEVICE_VECTOR));
    let binding = devices.router.lock().bindings.get(slot).copied().flatten();
    match binding {
        Some(binding) => (binding.handler)(binding.context),
        None => {
            crate::kprintln!("kernel-lite: interrupt on vector {vector:#x}, which has no handler")
        }
    }
    if let Some(local_apic) = devices.local_apic() {
        local_apic.end_of_interrupt();
    }
}
