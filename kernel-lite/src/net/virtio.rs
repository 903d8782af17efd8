//! The virtio-net device, driven with the `virtio-drivers` crate over its modern PCI transport:
//! kernel-lite's DMA and MMIO behind the crate's `Hal`, a configuration-space accessor over the
//! function's ECAM window, MSI-X for the receive queue, and fixed pools of frame buffers.
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
use lite_abi::net::ring::MAX_FRAME;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{BufferDirection, Hal};
use x86_64::PhysAddr;

const VIRTIO_VENDOR: u16 = 0x1af4;
/// A modern-only (`disable-legacy=on`) virtio-net function: 0x1040 + device type 1.
const VIRTIO_NET_MODERN: u16 = 0x1041;
/// Descriptors per queue (QEMU's default for virtio-net), and buffers per direction.
pub const QUEUE_SIZE: usize = 256;
/// Bytes of one buffer: the 12-byte virtio-net header and the longest frame, rounded up.
const BUFFER_BYTES: usize = 2048;
/// The virtio-net header of a modern device (with `num_buffers`).
pub const HEADER_BYTES: usize = 12;
const RING_EVENT_IDX: u64 = 1 << 29;
const PCI_CAPABILITY_VENDOR: u8 = 0x09;
const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
/// Offsets in `virtio_pci_common_cfg`.
const COMMON_MSIX_CONFIG: u64 = 0x10;
const COMMON_QUEUE_SELECT: u64 = 0x16;
const COMMON_QUEUE_MSIX_VECTOR: u64 = 0x1a;
const NO_VECTOR: u16 = 0xffff;
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;

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
        let devices = devices::get().expect("devices found before the NIC");
        // `Nic::new` checked every memory BAR of the function maps before the crate asks.
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
pub struct FlagNotifiedTransport(PciTransport);

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

/// Why the NIC could not be brought up.
#[derive(Debug)]
pub enum NicError {
    /// No modern virtio-net function on the PCI bus.
    NotFound,
    /// A memory BAR of the function cannot be mapped (outside the window, or shares RAM).
    Bar(devices::mmio::MmioError),
    /// The virtio capabilities or the device refused.
    Transport(virtio_drivers::transport::pci::VirtioPciError),
    Device(virtio_drivers::Error),
    /// No common configuration capability, so no way to set MSI-X vectors.
    NoCommonConfig,
    /// The device did not take our MSI-X vector for a queue.
    VectorRefused {
        queue: u16,
    },
    Irq(irq::IrqError),
    Pci(devices::pci::PciError),
    /// No DMA memory for the buffer pools.
    Dma(mm::FrameError),
}

impl core::fmt::Display for NicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NicError::NotFound => write!(f, "no modern virtio-net device (1af4:1041)"),
            NicError::Bar(error) => write!(f, "BAR: {error}"),
            NicError::Transport(error) => write!(f, "virtio PCI: {error}"),
            NicError::Device(error) => write!(f, "virtio-net: {error}"),
            NicError::NoCommonConfig => write!(f, "no virtio common configuration capability"),
            NicError::VectorRefused { queue } => {
                write!(f, "the device refused an MSI-X vector for queue {queue}")
            }
            NicError::Irq(error) => write!(f, "{error}"),
            NicError::Pci(error) => write!(f, "{error}"),
            NicError::Dma(error) => write!(f, "DMA buffers: {error}"),
        }
    }
}

/// A pool of `QUEUE_SIZE` device buffers of `BUFFER_BYTES` in one contiguous DMA run.
struct BufferPool {
    region: DmaRegion,
}

impl BufferPool {
    fn new() -> Result<BufferPool, NicError> {
        let pages = (QUEUE_SIZE * BUFFER_BYTES / 4096) as u64;
        Ok(BufferPool {
            region: DmaRegion::allocate(pages, 1).map_err(NicError::Dma)?,
        })
    }

    fn buffer(&mut self, index: usize) -> &mut [u8] {
        &mut self.region.bytes()[index * BUFFER_BYTES..(index + 1) * BUFFER_BYTES]
    }
}

/// The NIC: the crate's raw driver, our buffers, and which buffer each queued token holds.
pub struct Nic {
    device: VirtIONetRaw<KernelHal, FlagNotifiedTransport, QUEUE_SIZE>,
    rx: BufferPool,
    tx: BufferPool,
    /// Buffer of each receive token (descriptor head), as posted.
    rx_of_token: [u16; QUEUE_SIZE],
    /// Buffer and queued length of each transmit token in flight.
    tx_of_token: [(u16, u16); QUEUE_SIZE],
    /// Transmit buffers not in flight.
    tx_free: alloc::vec::Vec<u16>,
    pub mac: [u8; 6],
    pub vector: irq::Vector,
}

fn common_config(
    devices: &Devices,
    function: &PciFunction,
) -> Result<devices::mmio::Mmio, NicError> {
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
            .map_err(NicError::Bar);
    }
    Err(NicError::NoCommonConfig)
}

impl Nic {
    /// Finds the first modern virtio-net function, brings it up with MSI-X on `handler`, and
    /// posts every receive buffer.
    pub fn new(devices: &'static Devices, handler: irq::Handler) -> Result<Nic, NicError> {
        let function = devices
            .find_pci(VIRTIO_VENDOR, VIRTIO_NET_MODERN)
            .next()
            .ok_or(NicError::NotFound)?;
        for bar in function.bars.iter().flatten() {
            if let Bar::Memory { address, size, .. } = *bar {
                devices
                    .window()
                    .map_device(address, size)
                    .map_err(NicError::Bar)?;
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
            .map_err(NicError::Transport)?;
        let mut device =
            VirtIONetRaw::new(FlagNotifiedTransport(transport)).map_err(NicError::Device)?;
        let vector = irq::allocate_vector().map_err(NicError::Irq)?;
        irq::bind(vector, handler, 0).map_err(NicError::Irq)?;
        let message = irq::msi_message(vector).map_err(NicError::Irq)?;
        let table = function
            .msix_table(devices.window())
            .map_err(NicError::Pci)?;
        table.set(0, message);
        table.set_masked(0, false);
        function.enable_msix().map_err(NicError::Pci)?;
        common.write16(COMMON_MSIX_CONFIG, NO_VECTOR);
        for queue in [RECEIVE_QUEUE, TRANSMIT_QUEUE] {
            common.write16(COMMON_QUEUE_SELECT, queue);
            common.write16(COMMON_QUEUE_MSIX_VECTOR, 0);
            if common.read16(COMMON_QUEUE_MSIX_VECTOR) != 0 {
                return Err(NicError::VectorRefused { queue });
            }
        }
        let mac = device.mac_address();
        let mut nic = Nic {
            rx: BufferPool::new()?,
            tx: BufferPool::new()?,
            rx_of_token: [0; QUEUE_SIZE],
            tx_of_token: [(0, 0); QUEUE_SIZE],
            tx_free: (0..QUEUE_SIZE as u16).rev().collect(),
            mac,
            vector,
            device: {
                device.enable_interrupts();
                device
            },
        };
        for buffer in 0..QUEUE_SIZE {
            nic.post_receive(buffer)?;
        }
        Ok(nic)
    }

    fn post_receive(&mut self, buffer: usize) -> Result<(), NicError> {
        let bytes = self.rx.buffer(buffer);
        // SAFETY: the buffer is ours alone until the device hands its token back, and we touch
        // it again only in `receive`, after `poll_receive` returned that token.
        let token = unsafe { self.device.receive_begin(bytes) }.map_err(NicError::Device)?;
        self.rx_of_token[usize::from(token) % QUEUE_SIZE] = buffer as u16;
        Ok(())
    }

    /// Takes every frame the device has received, in order, handing each to `deliver` and then
    /// giving its buffer back to the device.
    pub fn receive(&mut self, mut deliver: impl FnMut(&[u8])) {
        self.device.ack_interrupt();
        while let Some(token) = self.device.poll_receive() {
            let buffer = usize::from(self.rx_of_token[usize::from(token) % QUEUE_SIZE]);
            let bytes = self.rx.buffer(buffer);
            // SAFETY: the same buffer was posted with this token in `post_receive`.
            let completed = unsafe { self.device.receive_complete(token, bytes) };
            let Ok((header, len)) = completed else {
                // The used ring disagrees with what we posted: stop rather than spin on it.
                crate::kprintln!("kernel-lite: net: receive completion refused: {completed:?}");
                return;
            };
            let bytes = self.rx.buffer(buffer);
            if let Some(frame) = bytes.get(header..header + len) {
                deliver(frame);
            }
            // Failing to repost would shrink the queue for good: nothing sensible remains.
            if self.post_receive(buffer).is_err() {
                crate::kprintln!("kernel-lite: net: a receive buffer could not be reposted");
            }
        }
    }

    /// Takes back transmit buffers the device is done with.
    pub fn reclaim(&mut self) {
        while let Some(token) = self.device.poll_transmit() {
            let (buffer, len) = self.tx_of_token[usize::from(token) % QUEUE_SIZE];
            let bytes = &self.tx.buffer(usize::from(buffer))[..usize::from(len)];
            // SAFETY: the same buffer (and length) was queued with this token in `transmit`.
            if unsafe { self.device.transmit_complete(token, bytes) }.is_err() {
                // Not the token we queued: leave the buffer out rather than hand it out twice.
                crate::kprintln!("kernel-lite: net: transmit completion refused");
                return;
            }
            self.tx_free.push(buffer);
        }
    }

    /// Whether a transmit buffer is free.
    pub fn can_transmit(&self) -> bool {
        !self.tx_free.is_empty()
    }

    /// Queues one frame for transmission, written by `fill` into the frame part of a free
    /// buffer (at most `MAX_FRAME` bytes; `fill` returns the length, or `None` to not send).
    /// Returns whether a frame was queued.
    pub fn transmit(&mut self, fill: impl FnOnce(&mut [u8; MAX_FRAME]) -> Option<usize>) -> bool {
        let Some(buffer) = self.tx_free.pop() else {
            return false;
        };
        let bytes = self.tx.buffer(usize::from(buffer));
        let (header, frame) = bytes.split_at_mut(HEADER_BYTES);
        let frame: &mut [u8; MAX_FRAME] = (&mut frame[..MAX_FRAME])
            .try_into()
            .expect("buffers hold a header and the longest frame");
        let Some(len) = fill(frame) else {
            self.tx_free.push(buffer);
            return false;
        };
        header.fill(0);
        let len = HEADER_BYTES + len.min(MAX_FRAME);
        let queued = &self.tx.buffer(usize::from(buffer))[..len];
        // SAFETY: the buffer is not touched again until `reclaim` sees its token come back.
        match unsafe { self.device.transmit_begin(queued) } {
            Ok(token) => {
                self.tx_of_token[usize::from(token) % QUEUE_SIZE] = (buffer, len as u16);
                true
            }
            Err(_) => {
                self.tx_free.push(buffer);
                false
            }
        }
    }
}
