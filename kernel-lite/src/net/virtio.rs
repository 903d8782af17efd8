//! The virtio-net device, driven with the `virtio-drivers` crate's raw driver over the modern
//! PCI transport of `devices::virtio` (MSI-X for both queues, event index hidden), with fixed
//! pools of frame buffers.

use crate::devices::virtio::{FlagNotifiedTransport, KernelHal, ModernFunction, VirtioError};
use crate::devices::{Devices, irq};
use crate::mm::{self, dma::DmaRegion};
use lite_abi::net::ring::MAX_FRAME;
use virtio_drivers::device::net::VirtIONetRaw;

/// A modern-only (`disable-legacy=on`) virtio-net function: 0x1040 + device type 1.
const VIRTIO_NET_MODERN: u16 = 0x1041;
/// Descriptors per queue (QEMU's default for virtio-net), and buffers per direction.
pub const QUEUE_SIZE: usize = 256;
/// Bytes of one buffer: the 12-byte virtio-net header and the longest frame, rounded up.
const BUFFER_BYTES: usize = 2048;
/// The virtio-net header of a modern device (with `num_buffers`).
pub const HEADER_BYTES: usize = 12;
const RECEIVE_QUEUE: u16 = 0;
const TRANSMIT_QUEUE: u16 = 1;

/// Why the NIC could not be brought up.
#[derive(Debug)]
pub enum NicError {
    /// No modern virtio-net function, or it could not be opened.
    Virtio(VirtioError),
    Device(virtio_drivers::Error),
    /// No DMA memory for the buffer pools.
    Dma(mm::FrameError),
}

impl core::fmt::Display for NicError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NicError::Virtio(VirtioError::NotFound) => {
                write!(f, "no modern virtio-net device (1af4:1041)")
            }
            NicError::Virtio(error) => write!(f, "{error}"),
            NicError::Device(error) => write!(f, "virtio-net: {error}"),
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

impl Nic {
    /// Finds the first modern virtio-net function, brings it up with MSI-X on `handler`, and
    /// posts every receive buffer.
    pub fn new(devices: &'static Devices, handler: irq::Handler) -> Result<Nic, NicError> {
        let ModernFunction {
            transport,
            vector,
            router,
        } = ModernFunction::open(devices, VIRTIO_NET_MODERN, handler).map_err(NicError::Virtio)?;
        let mut device: VirtIONetRaw<KernelHal, FlagNotifiedTransport, QUEUE_SIZE> =
            VirtIONetRaw::new(transport).map_err(NicError::Device)?;
        router
            .route_queues(&[RECEIVE_QUEUE, TRANSMIT_QUEUE])
            .map_err(NicError::Virtio)?;
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
