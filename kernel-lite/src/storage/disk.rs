//! The virtio-blk device, driven over the crate's `VirtQueue` and the modern PCI transport of
//! `devices::virtio`. The crate's own `VirtIOBlk` is not used: its flush only exists as a
//! blocking call (it spins until the device answers), and kernel-lite must never stall every
//! app for one app's cache flush. Here reads, writes and flushes are all queued the same way
//! and complete through the MSI-X interrupt.
//!
//! Each request in flight holds one of [`IN_FLIGHT`] slots: a 16-byte request header and a
//! status byte in one DMA page, and a bounce buffer of 64 KiB (the largest request an app's
//! ring may make) in one DMA run. Apps' data is copied between their ring buffers and the
//! bounce buffer, so the device never sees a user page and an app cannot change a request's
//! data or an extent check after it was made.

use crate::devices::virtio::{FlagNotifiedTransport, KernelHal, ModernFunction, VirtioError};
use crate::devices::{Devices, irq};
use crate::mm::{self, dma::DmaRegion};
use alloc::vec::Vec;
use lite_abi::blk::SECTOR_BYTES;
use lite_abi::blk::ring::MAX_BUFFER_SECTORS;
use virtio_drivers::queue::VirtQueue;
use virtio_drivers::transport::Transport;

/// A modern-only (`disable-legacy=on`) virtio-blk function: 0x1040 + device type 2.
const VIRTIO_BLK_MODERN: u16 = 0x1042;
/// Descriptors in the request queue; each request takes three (header, data, status).
const QUEUE_SIZE: usize = 128;
const REQUEST_QUEUE: u16 = 0;
/// Requests in flight at once, over all apps.
pub const IN_FLIGHT: usize = 32;
/// The largest transfer: one app request.
pub const BOUNCE_BYTES: usize = MAX_BUFFER_SECTORS as usize * SECTOR_BYTES as usize;
const HEADER_BYTES: usize = 16;
const VIRTIO_BLK_T_IN: u32 = 0;
const VIRTIO_BLK_T_OUT: u32 = 1;
const VIRTIO_BLK_T_FLUSH: u32 = 4;
const VIRTIO_BLK_S_OK: u8 = 0;

bitflags::bitflags! {
    /// The features kernel-lite negotiates.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct Features: u64 {
        /// The disk is read-only.
        const RO = 1 << 5;
        /// The device has a volatile write cache and takes flush requests.
        const FLUSH = 1 << 9;
        const VERSION_1 = 1 << 32;
    }
}

/// What a request asks of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Read,
    Write,
    Flush,
}

/// Why the disk could not be brought up.
#[derive(Debug)]
pub enum DiskError {
    /// No modern virtio-blk function, or it could not be opened.
    Virtio(VirtioError),
    Device(virtio_drivers::Error),
    /// The device offers no virtio 1.x interface.
    NotModern,
    /// No DMA memory for headers and bounce buffers.
    Dma(mm::FrameError),
    /// Reading the disk table at boot failed.
    TableRead,
}

impl core::fmt::Display for DiskError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DiskError::Virtio(VirtioError::NotFound) => {
                write!(f, "no modern virtio-blk device (1af4:1042)")
            }
            DiskError::Virtio(error) => write!(f, "{error}"),
            DiskError::Device(error) => write!(f, "virtio-blk: {error}"),
            DiskError::NotModern => write!(f, "virtio-blk without VIRTIO_F_VERSION_1"),
            DiskError::Dma(error) => write!(f, "DMA buffers: {error}"),
            DiskError::TableRead => write!(f, "the disk table (sector 0) could not be read"),
        }
    }
}

/// The disk: the request queue, the slots' DMA memory, and which slot each token holds.
pub struct Disk {
    queue: VirtQueue<KernelHal, QUEUE_SIZE>,
    transport: FlagNotifiedTransport,
    /// Request headers (`IN_FLIGHT` × 16 bytes), then status bytes (`IN_FLIGHT`).
    headers: DmaRegion,
    bounce: DmaRegion,
    /// What each busy slot holds: its token, kind and data length.
    busy: [Option<(u16, Kind, usize)>; IN_FLIGHT],
    free: Vec<usize>,
    /// Requests added since the device was last notified.
    unnotified: bool,
    /// Sectors on the device.
    pub capacity: u64,
    /// Whether the device has a write cache to flush (without, every write is durable when it
    /// completes and a flush completes at once).
    pub flushes: bool,
    pub read_only: bool,
    pub vector: irq::Vector,
}

impl Disk {
    /// Finds the first modern virtio-blk function and brings it up with MSI-X on `handler`.
    pub fn new(devices: &'static Devices, handler: irq::Handler) -> Result<Disk, DiskError> {
        let ModernFunction {
            mut transport,
            vector,
            router,
        } = ModernFunction::open(devices, VIRTIO_BLK_MODERN, handler).map_err(DiskError::Virtio)?;
        let features = transport.begin_init(Features::FLUSH | Features::RO | Features::VERSION_1);
        if !features.contains(Features::VERSION_1) {
            return Err(DiskError::NotModern);
        }
        // The capacity is a u64 at offset 0, read as two words: the transport only promises
        // 4-byte alignment.
        let capacity = transport
            .read_consistent(|| {
                let low = transport.read_config_space::<u32>(0)?;
                let high = transport.read_config_space::<u32>(4)?;
                Ok(u64::from(low) | (u64::from(high) << 32))
            })
            .map_err(DiskError::Device)?;
        let queue = VirtQueue::new(&mut transport, REQUEST_QUEUE, false, false)
            .map_err(DiskError::Device)?;
        router
            .route_queues(&[REQUEST_QUEUE])
            .map_err(DiskError::Virtio)?;
        transport.finish_init();
        let bounce_pages = (IN_FLIGHT * BOUNCE_BYTES / 4096) as u64;
        Ok(Disk {
            queue,
            transport,
            headers: DmaRegion::allocate(1, 1).map_err(DiskError::Dma)?,
            bounce: DmaRegion::allocate(bounce_pages, 1).map_err(DiskError::Dma)?,
            busy: [None; IN_FLIGHT],
            free: (0..IN_FLIGHT).rev().collect(),
            unnotified: false,
            capacity,
            flushes: features.contains(Features::FLUSH),
            read_only: features.contains(Features::RO),
            vector,
        })
    }

    /// A free slot, reserved for a request about to be started; `None` when all are busy.
    pub fn reserve(&mut self) -> Option<usize> {
        self.free.pop()
    }

    /// Gives back a slot reserved and not used.
    pub fn unreserve(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// Slot `slot`'s bounce buffer: a write's data goes here before [`Disk::start`], a read's
    /// arrives here.
    pub fn bounce(&mut self, slot: usize) -> &mut [u8] {
        &mut self.bounce.bytes()[slot * BOUNCE_BYTES..(slot + 1) * BOUNCE_BYTES]
    }

    /// Queues a request in reserved slot `slot` (for a write, its `len` bytes already in the
    /// bounce buffer). On error the slot is free again.
    pub fn start(
        &mut self,
        slot: usize,
        kind: Kind,
        sector: u64,
        len: usize,
    ) -> Result<(), virtio_drivers::Error> {
        let len = if kind == Kind::Flush { 0 } else { len };
        assert!(
            len <= BOUNCE_BYTES,
            "requests are checked against the ring's buffers"
        );
        let request_type = match kind {
            Kind::Read => VIRTIO_BLK_T_IN,
            Kind::Write => VIRTIO_BLK_T_OUT,
            Kind::Flush => VIRTIO_BLK_T_FLUSH,
        };
        let (header, data, status) = parts(&mut self.headers, &mut self.bounce, slot, len);
        header[..4].copy_from_slice(&request_type.to_le_bytes());
        header[4..8].fill(0);
        header[8..].copy_from_slice(&sector.to_le_bytes());
        status[0] = 0xff;
        // SAFETY: the header, data and status buffers are this slot's alone, in DMA memory the
        // disk owns for its life; they are not touched again until `complete` pops this token
        // (a slot is reused only after that).
        let added = unsafe {
            match kind {
                Kind::Read => self.queue.add(&[header], &mut [data, status]),
                Kind::Write => self.queue.add(&[header, data], &mut [status]),
                Kind::Flush => self.queue.add(&[header], &mut [status]),
            }
        };
        match added {
            Ok(token) => {
                self.busy[slot] = Some((token, kind, len));
                self.unnotified = true;
                Ok(())
            }
            Err(error) => {
                self.free.push(slot);
                Err(error)
            }
        }
    }

    /// Tells the device about requests started since the last call.
    pub fn notify(&mut self) {
        if self.unnotified {
            self.unnotified = false;
            if self.queue.should_notify() {
                self.transport.notify(REQUEST_QUEUE);
            }
        }
    }

    /// The next finished request: its slot and whether the device reported success. The slot
    /// stays busy (a read's data is in its bounce buffer) until [`Disk::release`].
    pub fn complete(&mut self) -> Option<(usize, bool)> {
        let token = self.queue.peek_used()?;
        let Some(slot) = self
            .busy
            .iter()
            .position(|busy| busy.is_some_and(|(held, _, _)| held == token))
        else {
            crate::kprintln!("kernel-lite: disk: the device completed an unknown token {token}");
            return None;
        };
        let (_, kind, len) = self.busy[slot].expect("found busy");
        let (header, data, status) = parts(&mut self.headers, &mut self.bounce, slot, len);
        // SAFETY: these are the very buffers `start` queued with this token.
        let popped = unsafe {
            match kind {
                Kind::Read => self.queue.pop_used(token, &[header], &mut [data, status]),
                Kind::Write => self.queue.pop_used(token, &[header, data], &mut [status]),
                Kind::Flush => self.queue.pop_used(token, &[header], &mut [status]),
            }
        };
        let (_, _, status) = parts(&mut self.headers, &mut self.bounce, slot, len);
        let ok = popped.is_ok() && status[0] == VIRTIO_BLK_S_OK;
        Some((slot, ok))
    }

    /// Frees a slot whose completion was handled.
    pub fn release(&mut self, slot: usize) {
        self.busy[slot] = None;
        self.free.push(slot);
    }

    /// Reads `out.len()` bytes (whole sectors, at most a bounce buffer) from `sector`, waiting
    /// for the device: for the disk table at boot, before any app runs.
    pub fn read_now(&mut self, sector: u64, out: &mut [u8]) -> Result<(), DiskError> {
        let slot = self.reserve().ok_or(DiskError::TableRead)?;
        self.start(slot, Kind::Read, sector, out.len())
            .map_err(DiskError::Device)?;
        self.notify();
        let start = crate::timer::rdtsc();
        let deadline = start + 5_000 * crate::timer::tsc_per_ms();
        loop {
            if let Some((done, ok)) = self.complete() {
                let data = &self.bounce(done)[..out.len()];
                out.copy_from_slice(data);
                self.release(done);
                return if ok && done == slot {
                    Ok(())
                } else {
                    Err(DiskError::TableRead)
                };
            }
            if crate::timer::rdtsc() > deadline {
                return Err(DiskError::TableRead);
            }
            core::hint::spin_loop();
        }
    }
}

/// The three buffers of slot `slot`'s request: header, data (`len` bytes), status.
fn parts<'a>(
    headers: &'a mut DmaRegion,
    bounce: &'a mut DmaRegion,
    slot: usize,
    len: usize,
) -> (&'a mut [u8], &'a mut [u8], &'a mut [u8]) {
    let (headers, statuses) = headers.bytes().split_at_mut(IN_FLIGHT * HEADER_BYTES);
    let header = &mut headers[slot * HEADER_BYTES..(slot + 1) * HEADER_BYTES];
    let status = &mut statuses[slot..slot + 1];
    let data = &mut bounce.bytes()[slot * BOUNCE_BYTES..][..len];
    (header, data, status)
}
