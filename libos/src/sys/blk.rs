//! The app's own block-request ring (see `lite_abi::blk::ring`) as the file system's
//! [`BlockDevice`]: requests go on the ring, one `blk_kick` kcall starts a batch, and the app
//! sleeps in `wait` on `BLK_EVENT` until its completions arrive.
//!
//! Writes are queued and return at once (as a disk with a write cache would take them); a
//! flush is a barrier kernel-lite holds until every earlier request completed, and it reports
//! any write of its epoch that failed. A read first lets every queued write finish, so it sees
//! them (the device does not order requests among themselves).

use crate::fs::{BLOCK_BYTES, BlockDevice, DeviceError, MountError};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use lite_abi::blk::ring::{AppEnd, Geometry, Op, Status};
use lite_abi::blk::{BLK_EVENT, SECTOR_BYTES};
use lite_abi::net::ring::RingMemory;

/// The app's block-ring area: `bytes` bytes at `base`.
struct BlockArea {
    base: *mut u8,
    bytes: usize,
}

// SAFETY: the area belongs to the app and is used only by the app's own code, one call at a
// time (the file system holds its device behind a lock); `Send` lets that lock's owner move.
unsafe impl Send for BlockArea {}

impl BlockArea {
    fn address(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.bytes),
            "block ring access at {offset}+{len} outside the {}-byte area",
            self.bytes
        );
        self.base.wrapping_add(offset)
    }
}

impl RingMemory for BlockArea {
    fn load_index(&self, offset: usize) -> u32 {
        let address = self.address(offset, 4).cast::<u32>();
        assert!(address.is_aligned(), "index word misaligned");
        // SAFETY: 1. the word lies inside the app's block-ring area (checked), which
        // kernel-lite keeps mapped for ring 3 for the app's whole life; 2. it is aligned
        // (checked); 3. both ends access index words only atomically.
        unsafe { AtomicU32::from_ptr(address) }.load(Ordering::Acquire)
    }

    fn store_index(&self, offset: usize, value: u32) {
        let address = self.address(offset, 4).cast::<u32>();
        assert!(address.is_aligned(), "index word misaligned");
        // SAFETY: as in `load_index`.
        unsafe { AtomicU32::from_ptr(address) }.store(value, Ordering::Release)
    }

    fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let address = self.address(offset, len);
        // SAFETY: the bytes lie inside the mapped area (checked); they are a completion
        // kernel-lite published (acquire load of its index before) or a data buffer whose
        // request completed, which kernel-lite no longer writes; `u8` has no validity needs.
        f(unsafe { core::slice::from_raw_parts(address.cast_const(), len) })
    }

    fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let address = self.address(offset, len);
        // SAFETY: the bytes lie inside the mapped area (checked); they are a request slot or a
        // data buffer the app owns until it publishes the request (kernel-lite copies a buffer
        // only after the release store of the producer index), and this device is used by one
        // caller at a time, so no other reference to them exists while the slice lives.
        f(unsafe { core::slice::from_raw_parts_mut(address, len) })
    }
}

/// A request on the ring, by tag: the buffer it holds.
#[derive(Clone, Copy)]
struct Pending {
    tag: u32,
    op: Op,
    buffer: u32,
}

/// The app's extent, through its ring.
pub(crate) struct RingDisk {
    area: BlockArea,
    end: AppEnd,
    geometry: Geometry,
    /// Sectors in the extent.
    sectors: u64,
    next_tag: u32,
    free_buffers: Vec<u32>,
    pending: Vec<Pending>,
    /// A queued write failed since the last flush: the flush must say so.
    write_failed: bool,
}

/// The running app's disk: its extent through its ring, or why it has none.
pub(crate) fn open_disk() -> Result<Box<dyn BlockDevice + Send>, MountError> {
    let info = super::app_info(super::current_context().index()).ok_or(MountError::NoDisk)?;
    if info.blk_area == 0 {
        return Err(MountError::NoDisk);
    }
    // kernel-lite answers `NoDisk` when the app's extent did not check out at boot (the boot
    // log says why); the ring is mapped either way, but unused.
    super::blk_kick().map_err(|_| MountError::NoDisk)?;
    let geometry = Geometry {
        slots: info.blk_slots,
        buffer_sectors: info.blk_buffer_sectors,
    };
    if !geometry.is_valid() {
        return Err(MountError::NoDisk);
    }
    Ok(Box::new(RingDisk {
        area: BlockArea {
            base: info.blk_area as *mut u8,
            bytes: geometry.area_bytes() as usize,
        },
        end: AppEnd::new(geometry),
        geometry,
        sectors: info.blk_sectors,
        next_tag: 0,
        free_buffers: (0..geometry.slots).rev().collect(),
        pending: Vec::new(),
        write_failed: false,
    }))
}

impl RingDisk {
    /// Sectors per block.
    const BLOCK_SECTORS: u64 = BLOCK_BYTES as u64 / SECTOR_BYTES;

    fn check_range(&self, first: u64, len: usize) -> Result<(), DeviceError> {
        let blocks = (len / BLOCK_BYTES) as u64;
        if !len.is_multiple_of(BLOCK_BYTES)
            || first
                .checked_add(blocks)
                .is_none_or(|end| end > self.block_count())
        {
            return Err(DeviceError::OutOfRange);
        }
        Ok(())
    }

    /// Posts a request on a free buffer (which the caller took) with `fill` writing its data.
    fn submit(&mut self, op: Op, sector: u64, sectors: u32, buffer: u32) {
        let tag = self.next_tag;
        self.next_tag = self.next_tag.wrapping_add(1);
        // There is room: at most `slots` requests exist, one per buffer (a flush holds one too).
        let posted = self
            .end
            .submit(&self.area, tag, op, sector, sectors, buffer);
        assert!(posted, "a request per buffer always fits the ring");
        self.pending.push(Pending { tag, op, buffer });
    }

    /// Takes every completion on the ring; `on_read` gets each finished read's buffer and
    /// status. Returns how many completed.
    fn reap(&mut self, mut on_read: impl FnMut(&BlockArea, u32, u32, bool)) -> usize {
        let mut done = 0;
        while let Some((tag, status)) = self.end.next_completion(&self.area) {
            let Some(at) = self.pending.iter().position(|pending| pending.tag == tag) else {
                // Not ours (kernel-lite never invents tags): ignore rather than trust it.
                continue;
            };
            let pending = self.pending.swap_remove(at);
            let ok = Status::from_code(status) == Some(Status::Ok);
            match pending.op {
                Op::Read => on_read(&self.area, tag, pending.buffer, ok),
                Op::Write | Op::Flush => self.write_failed |= !ok,
            }
            self.free_buffers.push(pending.buffer);
            done += 1;
        }
        done
    }

    /// Sleeps until kernel-lite posts completions (the `wait` also starts what is queued).
    fn wait_for_completions(&mut self) {
        super::wait(u64::MAX, BLK_EVENT);
    }

    /// A free buffer, waiting for completions when all are in use.
    fn buffer(&mut self) -> u32 {
        loop {
            if let Some(buffer) = self.free_buffers.pop() {
                return buffer;
            }
            let _ = super::blk_kick();
            if self.reap(|_, _, _, _| {}) == 0 {
                self.wait_for_completions();
            }
        }
    }

    /// Waits until nothing is pending.
    fn drain(&mut self) {
        if !self.pending.is_empty() {
            let _ = super::blk_kick();
        }
        while !self.pending.is_empty() {
            if self.reap(|_, _, _, _| {}) == 0 {
                self.wait_for_completions();
            }
        }
    }
}

impl BlockDevice for RingDisk {
    fn block_count(&self) -> u64 {
        self.sectors / Self::BLOCK_SECTORS
    }

    fn read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.check_range(first, buf.len())?;
        self.drain();
        let chunk = self.geometry.buffer_bytes();
        let mut failed = false;
        // (tag, offset in `buf`) of each read in flight.
        let mut reads: Vec<(u32, usize)> = Vec::new();
        let mut next = 0;
        while next < buf.len() || !reads.is_empty() {
            while next < buf.len() && !self.free_buffers.is_empty() {
                let len = chunk.min(buf.len() - next);
                let buffer = self.free_buffers.pop().expect("checked non-empty");
                let sector = first * Self::BLOCK_SECTORS + (next as u64 / SECTOR_BYTES);
                reads.push((self.next_tag, next));
                self.submit(Op::Read, sector, (len as u64 / SECTOR_BYTES) as u32, buffer);
                next += len;
            }
            let _ = super::blk_kick();
            let geometry = self.geometry;
            let reaped = self.reap(|area, tag, buffer, ok| {
                let Some(at) = reads.iter().position(|(read, _)| *read == tag) else {
                    return;
                };
                let (_, offset) = reads.swap_remove(at);
                let len = chunk.min(buf.len() - offset);
                if ok {
                    area.with_bytes(geometry.buffer_offset(buffer), len, |data| {
                        buf[offset..offset + len].copy_from_slice(data)
                    });
                } else {
                    failed = true;
                }
            });
            if reaped == 0 && !reads.is_empty() {
                self.wait_for_completions();
            }
        }
        if failed { Err(DeviceError::Io) } else { Ok(()) }
    }

    fn write(&mut self, first: u64, data: &[u8]) -> Result<(), DeviceError> {
        self.check_range(first, data.len())?;
        let chunk = self.geometry.buffer_bytes();
        for (index, part) in data.chunks(chunk).enumerate() {
            let buffer = self.buffer();
            let offset = self.geometry.buffer_offset(buffer);
            self.area
                .with_bytes_mut(offset, part.len(), |bytes| bytes.copy_from_slice(part));
            let sector = first * Self::BLOCK_SECTORS + (index * chunk) as u64 / SECTOR_BYTES;
            self.submit(
                Op::Write,
                sector,
                (part.len() as u64 / SECTOR_BYTES) as u32,
                buffer,
            );
        }
        let _ = super::blk_kick();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        let buffer = self.buffer();
        self.submit(Op::Flush, 0, 0, buffer);
        self.drain();
        if core::mem::take(&mut self.write_failed) {
            Err(DeviceError::Io)
        } else {
            Ok(())
        }
    }
}
