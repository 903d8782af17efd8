//! The disk table: the first 4 KiB of a disk shared by extent, naming each app's extent.
//!
//! ```text
//! 0    magic "LITEDISK" | 8 version u32 | 12 extent count u32 | 16 disk sectors u64
//! 24   checksum u32 (FNV-1a over the 4 KiB with this field zero) | 28 reserved u32
//! 32   extents × { app name [24] (NUL-padded) | first sector u64 | sectors u64 }   (40 bytes)
//! ```
//! Little-endian. Extents are whole 4 KiB blocks (8 sectors), start after the table, do not
//! overlap and lie inside the disk the table was written for. kernel-lite trusts nothing here:
//! [`DiskTable::parse`] checks every field against the disk it is on and names what is wrong.

use super::SECTOR_BYTES;
use crate::decode_name;
use crate::layout::NAME_LEN;

/// Bytes of the table; extents start at or after it.
pub const TABLE_BYTES: usize = 4096;
/// Sectors the table takes.
pub const TABLE_SECTORS: u64 = TABLE_BYTES as u64 / SECTOR_BYTES;
/// Extents are whole blocks of this many sectors (4 KiB), aligned to it.
pub const BLOCK_SECTORS: u64 = 8;
pub const MAGIC: [u8; 8] = *b"LITEDISK";
pub const VERSION: u32 = 1;
const HEADER_BYTES: usize = 32;
const ENTRY_BYTES: usize = NAME_LEN + 16;
/// The most extents one table holds.
pub const MAX_EXTENTS: usize = (TABLE_BYTES - HEADER_BYTES) / ENTRY_BYTES;
const CHECKSUM_AT: usize = 24;

/// One app's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent<'a> {
    /// The app it belongs to (its name in the bundle).
    pub app: &'a str,
    pub first_sector: u64,
    pub sectors: u64,
}

impl Extent<'_> {
    /// One past its last sector.
    pub fn end_sector(&self) -> u64 {
        self.first_sector + self.sectors
    }

    /// Its size in bytes.
    pub fn bytes(&self) -> u64 {
        self.sectors * SECTOR_BYTES
    }
}

/// What is wrong with a disk table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// Shorter than [`TABLE_BYTES`].
    Truncated,
    /// Not a disk table (a blank or foreign disk).
    BadMagic,
    UnsupportedVersion(u32),
    /// The checksum does not match: the table is damaged.
    BadChecksum {
        stored: u32,
        computed: u32,
    },
    /// More extents than [`MAX_EXTENTS`].
    TooManyExtents(u32),
    /// The table was written for a disk of another size.
    WrongDiskSize {
        table: u64,
        disk: u64,
    },
    /// Extent `index` has an empty, overlong or non-UTF-8 app name.
    BadName {
        index: usize,
    },
    /// Extent `index` names the same app as an earlier one.
    DuplicateName {
        index: usize,
    },
    /// Extent `index` is empty, or not whole aligned 4 KiB blocks.
    BadSize {
        index: usize,
    },
    /// Extent `index` starts inside the table, overlaps an earlier one or passes the disk's end.
    OutOfPlace {
        index: usize,
    },
}

impl core::fmt::Display for TableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            TableError::Truncated => write!(f, "disk table is truncated"),
            TableError::BadMagic => write!(f, "no disk table (a blank or foreign disk)"),
            TableError::UnsupportedVersion(v) => write!(f, "unsupported disk table version {v}"),
            TableError::BadChecksum { stored, computed } => write!(
                f,
                "disk table checksum {stored:#010x} does not match its contents ({computed:#010x}): damaged"
            ),
            TableError::TooManyExtents(n) => {
                write!(f, "disk table has {n} extents (at most {MAX_EXTENTS})")
            }
            TableError::WrongDiskSize { table, disk } => write!(
                f,
                "disk table was written for {table} sectors but the disk has {disk}"
            ),
            TableError::BadName { index } => write!(f, "extent {index}: bad app name"),
            TableError::DuplicateName { index } => {
                write!(f, "extent {index}: app already has an extent")
            }
            TableError::BadSize { index } => {
                write!(f, "extent {index}: empty or not whole aligned 4 KiB blocks")
            }
            TableError::OutOfPlace { index } => write!(
                f,
                "extent {index}: overlaps the table or an earlier extent, or passes the disk's end"
            ),
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// FNV-1a, 32-bit, over the table with its checksum field taken as zero: it guards against
/// damage, not against an attacker (the disk is the operator's).
fn checksum_of_table(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for (at, &byte) in bytes[..TABLE_BYTES].iter().enumerate() {
        let byte = if (CHECKSUM_AT..CHECKSUM_AT + 4).contains(&at) {
            0
        } else {
            byte
        };
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A disk table whose every field has been checked.
#[derive(Debug, Clone, Copy)]
pub struct DiskTable<'a> {
    bytes: &'a [u8],
    count: usize,
}

impl<'a> DiskTable<'a> {
    /// Checks `bytes` (the disk's first [`TABLE_BYTES`]) as the table of a disk of
    /// `disk_sectors` sectors.
    pub fn parse(bytes: &'a [u8], disk_sectors: u64) -> Result<DiskTable<'a>, TableError> {
        if bytes.len() < TABLE_BYTES {
            return Err(TableError::Truncated);
        }
        if bytes[..8] != MAGIC {
            return Err(TableError::BadMagic);
        }
        let version = u32_at(bytes, 8);
        if version != VERSION {
            return Err(TableError::UnsupportedVersion(version));
        }
        let stored = u32_at(bytes, CHECKSUM_AT);
        let computed = checksum_of_table(bytes);
        if stored != computed {
            return Err(TableError::BadChecksum { stored, computed });
        }
        let count = u32_at(bytes, 12);
        if count as usize > MAX_EXTENTS {
            return Err(TableError::TooManyExtents(count));
        }
        let table_disk = u64_at(bytes, 16);
        if table_disk != disk_sectors {
            return Err(TableError::WrongDiskSize {
                table: table_disk,
                disk: disk_sectors,
            });
        }
        let table = DiskTable {
            bytes: &bytes[..TABLE_BYTES],
            count: count as usize,
        };
        let mut previous_end = TABLE_SECTORS;
        for index in 0..table.count {
            let extent = table.decode(index)?;
            if extent.sectors == 0
                || !extent.sectors.is_multiple_of(BLOCK_SECTORS)
                || !extent.first_sector.is_multiple_of(BLOCK_SECTORS)
            {
                return Err(TableError::BadSize { index });
            }
            let end = extent
                .first_sector
                .checked_add(extent.sectors)
                .ok_or(TableError::OutOfPlace { index })?;
            // Extents are kept in disk order, so one comparison finds every overlap.
            if extent.first_sector < previous_end || end > disk_sectors {
                return Err(TableError::OutOfPlace { index });
            }
            previous_end = end;
            for earlier in 0..index {
                if table.decode(earlier)?.app == extent.app {
                    return Err(TableError::DuplicateName { index });
                }
            }
        }
        Ok(table)
    }

    fn decode(&self, index: usize) -> Result<Extent<'a>, TableError> {
        let entry = &self.bytes[HEADER_BYTES + index * ENTRY_BYTES..][..ENTRY_BYTES];
        let app = decode_name(&entry[..NAME_LEN]).ok_or(TableError::BadName { index })?;
        Ok(Extent {
            app,
            first_sector: u64_at(entry, NAME_LEN),
            sectors: u64_at(entry, NAME_LEN + 8),
        })
    }

    /// How many extents the table names.
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The extents, in disk order.
    pub fn extents(&self) -> impl Iterator<Item = Extent<'a>> + '_ {
        (0..self.count).filter_map(|index| self.decode(index).ok())
    }

    /// The extent of `app`, if it has one.
    pub fn extent_of(&self, app: &str) -> Option<Extent<'a>> {
        self.extents().find(|extent| extent.app == app)
    }
}

/// Writes the table for `extents` (in disk order) on a disk of `disk_sectors` sectors; the
/// result always passes [`DiskTable::parse`], or an error says why not.
#[cfg(any(test, feature = "std"))]
pub fn encode(extents: &[Extent<'_>], disk_sectors: u64) -> Result<std::vec::Vec<u8>, TableError> {
    let count = u32::try_from(extents.len()).map_err(|_| TableError::TooManyExtents(u32::MAX))?;
    if extents.len() > MAX_EXTENTS {
        return Err(TableError::TooManyExtents(count));
    }
    let mut out = std::vec![0u8; TABLE_BYTES];
    out[..8].copy_from_slice(&MAGIC);
    out[8..12].copy_from_slice(&VERSION.to_le_bytes());
    out[12..16].copy_from_slice(&count.to_le_bytes());
    out[16..24].copy_from_slice(&disk_sectors.to_le_bytes());
    for (index, extent) in extents.iter().enumerate() {
        let entry = &mut out[HEADER_BYTES + index * ENTRY_BYTES..][..ENTRY_BYTES];
        let name: [u8; NAME_LEN] =
            crate::encode_name(extent.app).ok_or(TableError::BadName { index })?;
        entry[..NAME_LEN].copy_from_slice(&name);
        entry[NAME_LEN..NAME_LEN + 8].copy_from_slice(&extent.first_sector.to_le_bytes());
        entry[NAME_LEN + 8..].copy_from_slice(&extent.sectors.to_le_bytes());
    }
    let sum = checksum_of_table(&out);
    out[CHECKSUM_AT..CHECKSUM_AT + 4].copy_from_slice(&sum.to_le_bytes());
    DiskTable::parse(&out, disk_sectors)?;
    Ok(out)
}

/// Places extents of the given sizes (bytes, rounded up to whole 4 KiB blocks) one after
/// another after the table, and says how many sectors the disk needs.
#[cfg(any(test, feature = "std"))]
pub fn lay_out<'a>(sizes: &[(&'a str, u64)]) -> (std::vec::Vec<Extent<'a>>, u64) {
    let block_bytes = BLOCK_SECTORS * SECTOR_BYTES;
    let mut next = TABLE_SECTORS.next_multiple_of(BLOCK_SECTORS);
    let extents = sizes
        .iter()
        .map(|&(app, bytes)| {
            let sectors = bytes.div_ceil(block_bytes).max(1) * BLOCK_SECTORS;
            let extent = Extent {
                app,
                first_sector: next,
                sectors,
            };
            next += sectors;
            extent
        })
        .collect();
    (extents, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (std::vec::Vec<u8>, u64) {
        let (extents, sectors) = lay_out(&[("kv", 64 << 20), ("notes", 5000)]);
        (encode(&extents, sectors).unwrap(), sectors)
    }

    #[test]
    fn laid_out_tables_parse_back_in_disk_order() {
        let (bytes, sectors) = sample();
        let table = DiskTable::parse(&bytes, sectors).unwrap();
        assert_eq!(table.len(), 2);
        let kv = table.extent_of("kv").unwrap();
        assert_eq!(kv.first_sector, TABLE_SECTORS);
        assert_eq!(kv.bytes(), 64 << 20);
        let notes = table.extent_of("notes").unwrap();
        assert_eq!(notes.first_sector, kv.end_sector());
        assert_eq!(notes.bytes(), 8192, "rounded up to whole blocks");
        assert_eq!(notes.end_sector(), sectors);
        assert!(table.extent_of("http").is_none());
    }

    #[test]
    fn damaged_or_foreign_tables_are_refused_by_name() {
        let (good, sectors) = sample();
        assert_eq!(
            DiskTable::parse(&good[..100], sectors).unwrap_err(),
            TableError::Truncated
        );
        assert_eq!(
            DiskTable::parse(&[0u8; TABLE_BYTES], sectors).unwrap_err(),
            TableError::BadMagic
        );
        let mut flipped = good.clone();
        flipped[HEADER_BYTES + NAME_LEN] ^= 0x10;
        assert!(matches!(
            DiskTable::parse(&flipped, sectors).unwrap_err(),
            TableError::BadChecksum { .. }
        ));
        assert_eq!(
            DiskTable::parse(&good, sectors + 8).unwrap_err(),
            TableError::WrongDiskSize {
                table: sectors,
                disk: sectors + 8
            }
        );
        let mut newer = good.clone();
        newer[8] = 9;
        assert_eq!(
            DiskTable::parse(&newer, sectors).unwrap_err(),
            TableError::UnsupportedVersion(9)
        );
    }

    #[test]
    fn overlapping_misplaced_or_duplicate_extents_are_refused() {
        let extent = |app, first_sector, sectors| Extent {
            app,
            first_sector,
            sectors,
        };
        let disk = 1 << 20;
        assert_eq!(
            encode(&[extent("a", 0, 8)], disk).unwrap_err(),
            TableError::OutOfPlace { index: 0 },
            "inside the table"
        );
        assert_eq!(
            encode(&[extent("a", 8, 16), extent("b", 16, 8)], disk).unwrap_err(),
            TableError::OutOfPlace { index: 1 },
            "overlap"
        );
        assert_eq!(
            encode(&[extent("a", disk - 8, 16)], disk).unwrap_err(),
            TableError::OutOfPlace { index: 0 },
            "past the end"
        );
        assert_eq!(
            encode(&[extent("a", 8, u64::MAX - 7)], disk).unwrap_err(),
            TableError::OutOfPlace { index: 0 },
            "wraps"
        );
        assert_eq!(
            encode(&[extent("a", 8, 12)], disk).unwrap_err(),
            TableError::BadSize { index: 0 }
        );
        assert_eq!(
            encode(&[extent("a", 8, 0)], disk).unwrap_err(),
            TableError::BadSize { index: 0 }
        );
        assert_eq!(
            encode(&[extent("a", 8, 8), extent("a", 16, 8)], disk).unwrap_err(),
            TableError::DuplicateName { index: 1 }
        );
        assert_eq!(
            encode(&[extent("", 8, 8)], disk).unwrap_err(),
            TableError::BadName { index: 0 }
        );
        let many: std::vec::Vec<_> = (0..=MAX_EXTENTS as u64)
            .map(|i| extent("x", 8 + i * 8, 8))
            .collect();
        assert!(matches!(
            encode(&many, disk).unwrap_err(),
            TableError::TooManyExtents(_)
        ));
    }

    #[test]
    fn checksums_cover_every_byte() {
        let (good, sectors) = sample();
        for at in (0..TABLE_BYTES).step_by(97) {
            let mut bad = good.clone();
            bad[at] ^= 1;
            assert!(
                DiskTable::parse(&bad, sectors).is_err(),
                "a flip at byte {at} went unnoticed"
            );
        }
    }
}
