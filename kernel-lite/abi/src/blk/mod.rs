//! The storage contract: how one disk is shared between apps by extent ([`table`]), and the
//! request ring between an app and kernel-lite for its extent ([`ring`]).
//!
//! The xtask writes a disk table at the start of the image's disk; kernel-lite checks it and
//! binds each app with an `[app.disk]` to its extent, so an app's requests can only ever reach
//! its own sectors.

use crate::kcall::Events;

pub mod ring;
pub mod table;

/// The event kernel-lite raises when it posted completions to an app's block ring.
pub const BLK_EVENT: Events = Events::bit(1);

/// Bytes of one sector, the unit of every disk address here.
pub const SECTOR_BYTES: u64 = 512;

/// An app's claim on the disk, as the bundle carries it: the size of its extent (which must
/// match the disk table's entry for the app) and the shape of its request ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskBinding {
    /// Bytes of the app's extent: a whole number of the table's 4 KiB blocks.
    pub bytes: u64,
    pub geometry: ring::Geometry,
}

/// Bytes of a [`DiskBinding`] in a bundle record.
pub const DISK_BINDING_BYTES: usize = 16;

/// The ring shape an `[app.disk]` gets unless its manifest says otherwise: 32 requests of up
/// to 32 KiB in flight (1 MiB of buffers plus the header page).
pub const DEFAULT_GEOMETRY: ring::Geometry = ring::Geometry {
    slots: 32,
    buffer_sectors: 64,
};

/// Why a [`DiskBinding`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBindingError {
    /// No bytes, or not a whole number of 4 KiB blocks.
    BadSize(u64),
    /// A ring shape kernel-lite does not accept (see [`ring::Geometry::is_valid`]).
    BadGeometry { slots: u32, buffer_sectors: u32 },
    /// The record's has-disk flag is neither 0 nor 1.
    BadFlag(u8),
}

impl core::fmt::Display for DiskBindingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DiskBindingError::BadSize(bytes) => {
                write!(f, "disk size {bytes} is not a positive multiple of 4 KiB")
            }
            DiskBindingError::BadGeometry {
                slots,
                buffer_sectors,
            } => write!(
                f,
                "ring of {slots} slots of {buffer_sectors} sectors (slots a power of two up to {}, \
                 buffers a power of two from 8 to {} sectors)",
                ring::MAX_SLOTS,
                ring::MAX_BUFFER_SECTORS
            ),
            DiskBindingError::BadFlag(flag) => write!(f, "has-disk flag {flag} (0 or 1)"),
        }
    }
}

impl DiskBinding {
    /// `{ bytes u64 | slots u32 | buffer_sectors u32 }`, little-endian.
    pub fn encode(&self) -> [u8; DISK_BINDING_BYTES] {
        let mut out = [0; DISK_BINDING_BYTES];
        out[..8].copy_from_slice(&self.bytes.to_le_bytes());
        out[8..12].copy_from_slice(&self.geometry.slots.to_le_bytes());
        out[12..].copy_from_slice(&self.geometry.buffer_sectors.to_le_bytes());
        out
    }

    /// Checks an encoded binding.
    pub fn decode(bytes: &[u8; DISK_BINDING_BYTES]) -> Result<DiskBinding, DiskBindingError> {
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let mut size = [0; 8];
        size.copy_from_slice(&bytes[..8]);
        let binding = DiskBinding {
            bytes: u64::from_le_bytes(size),
            geometry: ring::Geometry {
                slots: word(8),
                buffer_sectors: word(12),
            },
        };
        binding.check()?;
        Ok(binding)
    }

    /// Whether the binding is one kernel-lite accepts.
    pub fn check(&self) -> Result<(), DiskBindingError> {
        let block = table::BLOCK_SECTORS * SECTOR_BYTES;
        if self.bytes == 0 || !self.bytes.is_multiple_of(block) {
            return Err(DiskBindingError::BadSize(self.bytes));
        }
        if !self.geometry.is_valid() {
            return Err(DiskBindingError::BadGeometry {
                slots: self.geometry.slots,
                buffer_sectors: self.geometry.buffer_sectors,
            });
        }
        Ok(())
    }

    /// Sectors of the extent.
    pub fn sectors(&self) -> u64 {
        self.bytes / SECTOR_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_round_trip_and_bad_ones_are_named() {
        let good = DiskBinding {
            bytes: 64 << 20,
            geometry: DEFAULT_GEOMETRY,
        };
        assert_eq!(DiskBinding::decode(&good.encode()), Ok(good));
        assert_eq!(good.sectors(), (64 << 20) / 512);
        let odd = DiskBinding {
            bytes: 4096 + 512,
            ..good
        };
        assert_eq!(
            DiskBinding::decode(&odd.encode()),
            Err(DiskBindingError::BadSize(4096 + 512))
        );
        let empty = DiskBinding { bytes: 0, ..good };
        assert!(DiskBinding::decode(&empty.encode()).is_err());
        for (slots, buffer_sectors) in [(0, 64), (3, 64), (128, 64), (32, 4), (32, 256), (32, 24)] {
            let shaped = DiskBinding {
                geometry: ring::Geometry {
                    slots,
                    buffer_sectors,
                },
                ..good
            };
            assert_eq!(
                DiskBinding::decode(&shaped.encode()),
                Err(DiskBindingError::BadGeometry {
                    slots,
                    buffer_sectors
                })
            );
        }
    }
}
