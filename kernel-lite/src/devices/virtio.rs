//! What kernel-lite's virtio drivers (the NIC, the disk) share: the `virtio-drivers` crate's
//! modern PCI transport over kernel-lite's DMA and MMIO (its `Hal`), a configuration-space
//! accessor over the function's ECAM window, and MSI-X set up by us.
//!
//! Two things the crate leaves to us, and why:
//! - **MSI-X vectors.** The crate's PCI transport never writes `queue_msix_vector`, so with
//!   MSI-X on the device would raise nothing; we find the common configuration structure
//!   ourselves (the vendor capability of type 1) and point the queues at our vector.
//! - **Notification suppression by flags, not event index.** virtio-drivers 0.13 compares
//!   `avail_idx >= avail_event + 1` on `u16` indices (`queue.rs`, `should_notify`), which stops
//!   notifying the device after 65 536 buffers when the index wraps, and its `set_dev_notify`
//!   is a no-op under event index. So the transport hides `VIRTIO_F_RING_EVENT_IDX` from the
//!   crate and both directions use the ring flags (`VIRTQ_USED_F_NO_NOTIFY`,
//!   `VIRTQ_AVAIL_F_NO_INTERRUPT`), which are wrap-safe.

use crate::devices::pci::PciFunction;
use crate::devices::{self, Devices, irq};
use crate::mm::{self, dma::DmaRegion};
use core::ptr::NonNull;
use lite_abi::devices::pci::{Bar, COMMAND_BUS_MASTER, COMMAND_MEMORY, CONFIG_BYTES, capabilities};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal};
use x86_64::PhysAddr;

pub const VIRTIO_VENDOR: u16 = 0x1af4;
const RING_EVENT_IDX: u64 = 1 << 29;
const PCI_CAPABILITY_VENDOR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Offsets in `virtio_pci_common_cfg`.
const COMMON_MSIX_CONFIG: u64 = 0x10;
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
const NO_VECTOR: u16 = 0xffff;

/// Why a virtio function could not be opened.
#[derive(Debug)]
pub enum VirtioError {
    /// No such function on the PCI bus.
    NotFound,
    /// A memory BAR of the function cannot be mapped (outside the window, or shares RAM).
    Bar(devices::mmio::MmioError),
    /// The virtio capabilities refused.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    /// No common configuration capability, so no way to set MSI-X vectors.
    NoCommonConfig,
    /// The device did not take our MSI-X vector for a queue.
    VectorRefused {
        queue: u16,
    },
    Irq(irq::IrqError),
    Pci(devices::pci::PciError),
}

impl core::fmt::Display for VirtioError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VirtioError::NotFound => write!(f, "no such modern virtio function"),
            VirtioError::Bar(error) => write!(f, "BAR: {error}"),
            VirtioError::Transport(error) => write!(f, "virtio PCI: {error}"),
            VirtioError::NoCommonConfig => write!(f, "no virtio common configuration capability"),
            VirtioError::VectorRefused { queue } => {
                write!(f, "the device refused an MSI-X vector for queue {queue}")
            }
            VirtioError::Irq(error) => write!(f, "{error}"),
            VirtioError::Pci(error) => write!(f, "{error}"),
        }
    }
}

/// A modern virtio PCI function, opened: its transport (for the crate), its MSI-X vector bound
/// to a handler, and its common configuration (to route queues to that vector).
pub struct ModernFunction {
    pub transport: FlagNotifiedTransport,
    pub vector: irq::Vector,
    pub router: QueueRouter,
}

/// The function's common configuration, kept to route its queues' interrupts.
pub struct QueueRouter {
    common: devices::mmio::Mmio,
}

impl ModernFunction {
    /// Opens the first function with `device_id` (0x1040 + the virtio device type): maps its
    /// BARs, enables it as a bus master, and gives it MSI-X table entry 0 on a fresh vector
    /// bound to `handler`.
    pub fn open(
        devices: &'static Devices,
        device_id: u16,
        handler: irq::Handler,
    ) -> Result<ModernFunction, VirtioError> {
        let function = devices
            .find_pci(VIRTIO_VENDOR, device_id)
            .next()
            .ok_or(VirtioError::NotFound)?;
        for bar in function.bars.iter().flatten() {
            if let Bar::Memory { address, size, .. } = *bar {
                devices
                    .window()
                    .map_device(address, size)
                    .map_err(VirtioError::Bar)?;
            }
        }
        function.enable(COMMAND_MEMORY | COMMAND_BUS_MASTER);
        let common = common_config(devices, function)?;
        let address = function.address;
        let device_function = DeviceFunction {
            bus: address.bus,
            device: address.device,
            function: address.function,
        };
        let mut root = PciRoot::new(FunctionConfig(function));
        let transport = PciTransport::new::<KernelHal, _>(&mut root, device_function)
            .map_err(VirtioError::Transport)?;
        let vector = irq::allocate_vector().map_err(VirtioError::Irq)?;
        irq::bind(vector, handler, 0).map_err(VirtioError::Irq)?;
        let message = irq::msi_message(vector).map_err(VirtioError::Irq)?;
        let table = function
            .msix_table(devices.window())
            .map_err(VirtioError::Pci)?;
        table.set(0, message);
        table.set_masked(0, false);
        function.enable_msix().map_err(VirtioError::Pci)?;
        Ok(ModernFunction {
            transport: FlagNotifiedTransport(transport),
            vector,
            router: QueueRouter { common },
        })
    }
}

impl QueueRouter {
    /// Points `queues` (already set up) at MSI-X entry 0, and configuration changes at none.
    pub fn route_queues(&self, queues: &[u16]) -> Result<(), VirtioError> {
        self.common.write16(COMMON_MSIX_CONFIG, NO_VECTOR);
        for &queue in queues {
            self.common.write16(COMMON_QUEUE_SELECT, queue);
            self.common.write16(COMMON_QUEUE_MSIX_VECTOR, 0);
            if self.common.read16(COMMON_QUEUE_MSIX_VECTOR) != 0 {
                return Err(VirtioError::VectorRefused { queue });
            }
        }
        Ok(())
    }
}

/// kernel-lite's side of the crate's hardware abstraction.
pub struct KernelHal;

// SAFETY: `dma_alloc` returns owned, zeroed, page-aligned runs reachable at the returned pointer
// (the physical-memory window), freed only by `dma_dealloc`; `mmio_phys_to_virt` maps the range
// uncached through the window for kernel-lite's life; `share` returns the physical address of
// memory in the window (x86 DMA is coherent, so nothing is copied).
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (u64, NonNull<u8>) {
        match DmaRegion::allocate(pages as u64, 1) {
            Ok(region) => {
                let (physical, virtual_start, _) = region.into_raw();
                let pointer = NonNull::new(virtual_start as *mut u8).expect("window is not null");
                (physical.as_u64(), pointer)
            }
            // The crate turns a zero physical address into its DMA error.
            Err(_) => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: u64, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: the crate passes back exactly what `dma_alloc` returned, once.
        drop(unsafe {
            DmaRegion::from_raw(PhysAddr::new(paddr), vaddr.as_ptr() as u64, pages as u64)
        });
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: u64, size: usize) -> NonNull<u8> {
        let devices = devices::get().expect("devices found before any virtio device");
        // `ModernFunction::open` checked every memory BAR of the function maps before the
        // crate asks.
        let mmio = devices
            .window()
            .map_device(paddr, size as u64)
            .expect("a checked BAR maps");
        NonNull::new(mmio.base() as *mut u8).expect("window is not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> u64 {
        mm::window_to_physical(buffer.as_ptr() as *mut u8 as u64)
            .expect("device buffers live in the physical-memory window")
    }

    unsafe fn unshare(_paddr: u64, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// Configuration space of the one function, as the crate's PCI code reads it.
struct FunctionConfig(&'static PciFunction);

impl ConfigurationAccess for FunctionConfig {
    fn read_word(&self, _function: DeviceFunction, register_offset: u8) -> u32 {
        self.0.read_config32(u64::from(register_offset))
    }

    fn write_word(&mut self, _function: DeviceFunction, register_offset: u8, data: u32) {
        self.0.write_config32(u64::from(register_offset), data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        FunctionConfig(self.0)
    }
}

/// The crate's PCI transport with the event-index feature hidden (see the module docs).
pub struct FlagNotifiedTransport(pub PciTransport);

impl Transport for FlagNotifiedTransport {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }
    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features() & !RING_EVENT_IDX
    }
    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.write_driver_features(driver_features)
    }
    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }
    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }
    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }
    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status)
    }
    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }
    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }
    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: u64,
        driver_area: u64,
        device_area: u64,
    ) {
        self.0
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }
    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }
    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }
    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }
    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }
    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.0.read_config_space(offset)
    }
    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.0.write_config_space(offset, value)
    }
}

fn common_config(
    devices: &Devices,
    function: &PciFunction,
) -> Result<devices::mmio::Mmio, VirtioError> {
    let mut config = [0u8; CONFIG_BYTES];
    for (index, word) in config.as_chunks_mut::<4>().0.iter_mut().enumerate() {
        word.copy_from_slice(&function.read_config32(index as u64 * 4).to_le_bytes());
    }
    for capability in capabilities(&config) {
        if capability.id != PCI_CAPABILITY_VENDOR
            || config.get(capability.offset + 3) != Some(&VIRTIO_PCI_CAP_COMMON_CFG)
        {
            continue;
        }
        let at = capability.offset;
        let (Some(&bar), Some(offset)) = (config.get(at + 4), config.get(at + 8..at + 12)) else {
            continue;
        };
        let offset = u32::from_le_bytes([offset[0], offset[1], offset[2], offset[3]]);
        let Some(Some(Bar::Memory { address, .. })) = function.bars.get(usize::from(bar)) else {
            continue;
        };
        return devices
            .window()
            .map_device(address + u64::from(offset), 0x38)
            .map_err(VirtioError::Bar);
    }
    Err(VirtioError::NoCommonConfig)
}
