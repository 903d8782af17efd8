//! The block-device seam under the file system: 4 KiB blocks, queued writes, a flush that
//! makes them durable. On the machine the app's extent of the virtio disk implements it
//! (`sys::blk`); in host tests a [`RamDisk`] (or a crash simulator) does.

use alloc::vec;
use alloc::vec::Vec;

/// Bytes in one block: the file system's unit and the device's unit of transfer.
pub const BLOCK_BYTES: usize = 4096;

/// Bytes in one sector: the unit a power cut may tear a write at.
pub const SECTOR_BYTES: usize = 512;

/// Why a device transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    /// The blocks lie beyond the device's end.
    OutOfRange,
    /// The device reported an error.
    Io,
}

impl core::fmt::Display for DeviceError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DeviceError::OutOfRange => f.write_str("blocks beyond the device's end"),
            DeviceError::Io => f.write_str("the device reported an error"),
        }
    }
}

/// A device of 4 KiB blocks (the app's extent of a disk).
pub trait BlockDevice {
    /// How many 4 KiB blocks the device (the app's extent) holds.
    fn block_count(&self) -> u64;
    /// Reads `buf.len() / BLOCK_BYTES` blocks from `first` (buf.len() a multiple of BLOCK_BYTES); sees every earlier write.
    fn read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Queues a write: it may reach stable storage at any moment until the next flush, in any order with other unflushed writes, and a power cut may tear it at any 512-byte sector boundary.
    fn write(&mut self, first: u64, data: &[u8]) -> Result<(), DeviceError>;
    /// Returns once every write queued before it is on stable storage.
    fn flush(&mut self) -> Result<(), DeviceError>;
}

/// Checks that `len` bytes from block `first` are whole blocks inside a device of `count`.
pub(crate) fn check_range(count: u64, first: u64, len: usize) -> Result<(), DeviceError> {
    if !len.is_multiple_of(BLOCK_BYTES) {
        return Err(DeviceError::Io);
    }
    let blocks = (len / BLOCK_BYTES) as u64;
    match first.checked_add(blocks) {
        Some(end) if end <= count => Ok(()),
        _ => Err(DeviceError::OutOfRange),
    }
}

/// A device in memory: every write is durable at once. For host tests and tools.
#[derive(Debug, Clone)]
pub struct RamDisk {
    bytes: Vec<u8>,
}

impl RamDisk {
    /// A blank (all-zero) disk of `blocks` blocks.
    pub fn new(blocks: u64) -> RamDisk {
        RamDisk {
            bytes: vec![0; blocks as usize * BLOCK_BYTES],
        }
    }

    /// A disk holding `bytes` (rounded down to whole blocks).
    pub fn from_bytes(mut bytes: Vec<u8>) -> RamDisk {
        bytes.truncate(bytes.len() / BLOCK_BYTES * BLOCK_BYTES);
        RamDisk { bytes }
    }

    /// The disk's contents.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The disk's contents, to change (to damage them, in tests).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl BlockDevice for RamDisk {
    fn block_count(&self) -> u64 {
        (self.bytes.len() / BLOCK_BYTES) as u64
    }

    fn read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(self.block_count(), first, buf.len())?;
        let start = first as usize * BLOCK_BYTES;
        buf.copy_from_slice(&self.bytes[start..start + buf.len()]);
        Ok(())
    }

    fn write(&mut self, first: u64, data: &[u8]) -> Result<(), DeviceError> {
        check_range(self.block_count(), first, data.len())?;
        let start = first as usize * BLOCK_BYTES;
        self.bytes[start..start + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}
