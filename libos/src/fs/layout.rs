//! The on-disk format: where things are, and how the superblock, the checkpoint blocks and
//! the journal records are encoded and checked. The README's "On-disk format (libos::fs)"
//! section describes the same thing in prose; keep them together.
//!
//! Every integer is little-endian. Every structure carries a CRC-32C (Castagnoli) over its
//! bytes with the CRC field itself zero, so a torn or flipped structure is recognized.

use super::device::BLOCK_BYTES;
use alloc::vec::Vec;

/// The superblock's magic, at byte 0 of blocks 0 and 1.
pub(crate) const SUPERBLOCK_MAGIC: [u8; 8] = *b"LIBOSFS\x01";
/// The format version this code writes and reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Bytes of the superblock proper; they sit in the block's first 512-byte sector, so a
/// write torn at a sector boundary leaves it whole-old or whole-new (the CRC checks anyway).
pub(crate) const SUPERBLOCK_BYTES: usize = 128;
/// The two superblock slots: commits of a checkpoint alternate between them.
pub(crate) const SUPERBLOCK_SLOTS: [u64; 2] = [0, 1];
/// The journal region starts right after the superblocks.
pub(crate) const JOURNAL_FIRST: u64 = 2;
/// The smallest volume: superblocks, a 16-block journal and room for data.
pub(crate) const MIN_BLOCKS: u64 = 64;

/// The checkpoint block's magic.
pub(crate) const CHECKPOINT_MAGIC: [u8; 4] = *b"CKPT";
/// Header bytes at the start of every checkpoint block.
pub(crate) const CHECKPOINT_HEADER_BYTES: usize = 32;
/// Payload bytes a checkpoint block carries.
pub(crate) const CHECKPOINT_PAYLOAD_BYTES: usize = BLOCK_BYTES - CHECKPOINT_HEADER_BYTES;

/// The journal record's magic.
pub(crate) const RECORD_MAGIC: [u8; 4] = *b"JRNL";
/// Header bytes at the start of a record's first block.
pub(crate) const RECORD_HEADER_BYTES: usize = 32;

/// Journal blocks for a volume of `block_count` blocks: 1/32 of it, 16 to 8192 (64 KiB to
/// 32 MiB). A full journal forces a checkpoint, so its size trades checkpoint frequency
/// against space.
pub(crate) fn journal_blocks_for(block_count: u64) -> u64 {
    (block_count / 32).clamp(16, 8192)
}

/// CRC-32C, slice-by-16 (a 16 KiB table in read-only data).
const CASTAGNOLI: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI);

/// CRC-32C of `bytes`.
pub(crate) fn crc32c(bytes: &[u8]) -> u32 {
    CASTAGNOLI.checksum(bytes)
}

/// CRC-32C of the concatenation of `parts`.
pub(crate) fn crc32c_parts(parts: &[&[u8]]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// Appends little-endian fields to a byte vector.
pub(crate) struct Encoder {
    pub bytes: Vec<u8>,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder { bytes: Vec::new() }
    }
    pub fn u8(&mut self, value: u8) {
        self.bytes.push(value);
    }
    pub fn u16(&mut self, value: u16) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn u32(&mut self, value: u32) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    pub fn u64(&mut self, value: u64) {
        self.bytes.extend_from_slice(&value.to_le_bytes());
    }
    /// A name: its length (u16) and its bytes.
    pub fn name(&mut self, name: &str) {
        self.u16(name.len() as u16);
        self.bytes.extend_from_slice(name.as_bytes());
    }
}

/// The bytes ran out, or a field held an impossible value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Reads little-endian fields from a byte slice.
pub(crate) struct Decoder<'a> {
    bytes: &'a [u8],
}

impl<'a> Decoder<'a> {
    pub fn new(bytes: &'a [u8]) -> Decoder<'a> {
        Decoder { bytes }
    }
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.bytes.len() < n {
            return Err(Malformed);
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }
    pub fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_le_bytes(
            self.take(2)?.try_into().map_err(|_| Malformed)?,
        ))
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| Malformed)?,
        ))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| Malformed)?,
        ))
    }
    /// A name written by [`Encoder::name`]; it must be a valid file name.
    pub fn name(&mut self) -> Result<alloc::string::String, Malformed> {
        let len = self.u16()? as usize;
        let bytes = self.take(len)?;
        let name = core::str::from_utf8(bytes).map_err(|_| Malformed)?;
        super::path::validate_name(name).map_err(|_| Malformed)?;
        Ok(alloc::string::String::from(name))
    }
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// The superblock: where the newest checkpoint is and where the journal after it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Superblock {
    /// Counts checkpoints; the valid slot with the higher one is current.
    pub generation: u64,
    /// The volume's size in blocks; must match the device.
    pub block_count: u64,
    pub journal_first: u64,
    pub journal_blocks: u64,
    /// Sequence number of the first record after this checkpoint (at `journal_first`).
    pub journal_start_seq: u64,
    /// First block of the checkpoint's chain.
    pub checkpoint_first: u64,
    /// Blocks in the checkpoint's chain.
    pub checkpoint_blocks: u64,
    /// Payload bytes in the checkpoint.
    pub checkpoint_bytes: u64,
}

/// Why a superblock slot does not hold a usable superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SuperblockFault {
    /// No magic: never written (or not ours).
    NoMagic,
    /// The magic is there but the CRC does not match (torn or damaged).
    BadChecksum,
    /// Written by a format version this code does not read.
    UnsupportedVersion(u32),
}

impl Superblock {
    /// The superblock as a whole block.
    pub fn encode(&self) -> Vec<u8> {
        let mut block = alloc::vec![0u8; BLOCK_BYTES];
        block[0..8].copy_from_slice(&SUPERBLOCK_MAGIC);
        block[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 12..16: the CRC, filled below.
        let fields = [
            self.generation,
            self.block_count,
            self.journal_first,
            self.journal_blocks,
            self.journal_start_seq,
            self.checkpoint_first,
            self.checkpoint_blocks,
            self.checkpoint_bytes,
        ];
        for (i, field) in fields.iter().enumerate() {
            block[16 + 8 * i..24 + 8 * i].copy_from_slice(&field.to_le_bytes());
        }
        let crc = crc32c(&block[..SUPERBLOCK_BYTES]);
        block[12..16].copy_from_slice(&crc.to_le_bytes());
        block
    }

    /// The superblock in `block`, checked.
    pub fn decode(block: &[u8]) -> Result<Superblock, SuperblockFault> {
        if block[0..8] != SUPERBLOCK_MAGIC {
            return Err(SuperblockFault::NoMagic);
        }
        let mut copy = [0u8; SUPERBLOCK_BYTES];
        copy.copy_from_slice(&block[..SUPERBLOCK_BYTES]);
        copy[12..16].fill(0);
        if crc32c(&copy) != le_u32(block, 12) {
            return Err(SuperblockFault::BadChecksum);
        }
        let version = le_u32(block, 8);
        if version != FORMAT_VERSION {
            return Err(SuperblockFault::UnsupportedVersion(version));
        }
        let field = |i: usize| le_u64(block, 16 + 8 * i);
        Ok(Superblock {
            generation: field(0),
            block_count: field(1),
            journal_first: field(2),
            journal_blocks: field(3),
            journal_start_seq: field(4),
            checkpoint_first: field(5),
            checkpoint_blocks: field(6),
            checkpoint_bytes: field(7),
        })
    }
}

/// The header of one checkpoint block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CheckpointHeader {
    /// The generation of the superblock that points at this checkpoint.
    pub generation: u64,
    /// This block's place in the chain, from 0.
    pub index: u32,
    /// Payload bytes in this block.
    pub payload_len: u32,
    /// The next block of the chain; 0 after the last.
    pub next: u64,
}

impl CheckpointHeader {
    /// A whole checkpoint block: this header and `payload` (at most
    /// [`CHECKPOINT_PAYLOAD_BYTES`]), written into `block`.
    pub fn encode_into(&self, payload: &[u8], block: &mut [u8]) {
        block.fill(0);
        block[0..4].copy_from_slice(&CHECKPOINT_MAGIC);
        block[8..16].copy_from_slice(&self.generation.to_le_bytes());
        block[16..20].copy_from_slice(&self.index.to_le_bytes());
        block[20..24].copy_from_slice(&self.payload_len.to_le_bytes());
        block[24..32].copy_from_slice(&self.next.to_le_bytes());
        block[CHECKPOINT_HEADER_BYTES..CHECKPOINT_HEADER_BYTES + payload.len()]
            .copy_from_slice(payload);
        let crc = crc32c(block);
        block[4..8].copy_from_slice(&crc.to_le_bytes());
    }

    /// The header of `block`, if its magic and CRC (over the whole block) hold.
    pub fn decode(block: &[u8]) -> Option<CheckpointHeader> {
        if block[0..4] != CHECKPOINT_MAGIC {
            return None;
        }
        let stored = le_u32(block, 4);
        let crc = crc32c_parts(&[&block[0..4], &[0; 4], &block[8..]]);
        if crc != stored {
            return None;
        }
        let header = CheckpointHeader {
            generation: le_u64(block, 8),
            index: le_u32(block, 16),
            payload_len: le_u32(block, 20),
            next: le_u64(block, 24),
        };
        (header.payload_len as usize <= CHECKPOINT_PAYLOAD_BYTES).then_some(header)
    }
}

/// The header of a journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHeader {
    /// The record's sequence number: one more than the record before it.
    pub seq: u64,
    /// Payload bytes after the header.
    pub payload_len: u32,
    /// Blocks the record spans (header and payload, padded with zeros).
    pub blocks: u32,
    /// CRC-32C of the header (CRC field zero) and the payload.
    pub crc: u32,
}

/// How many blocks a record with `payload_len` bytes spans.
pub(crate) fn record_blocks(payload_len: usize) -> u64 {
    (RECORD_HEADER_BYTES + payload_len).div_ceil(BLOCK_BYTES) as u64
}

/// A whole record (whole blocks): the header and `payload`, padded with zeros.
pub(crate) fn encode_record(seq: u64, payload: &[u8]) -> Vec<u8> {
    let blocks = record_blocks(payload.len());
    let mut bytes = alloc::vec![0u8; blocks as usize * BLOCK_BYTES];
    bytes[0..4].copy_from_slice(&RECORD_MAGIC);
    bytes[8..16].copy_from_slice(&seq.to_le_bytes());
    bytes[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    bytes[20..24].copy_from_slice(&(blocks as u32).to_le_bytes());
    bytes[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + payload.len()].copy_from_slice(payload);
    let crc = crc32c(&bytes[..RECORD_HEADER_BYTES + payload.len()]);
    bytes[4..8].copy_from_slice(&crc.to_le_bytes());
    bytes
}

impl RecordHeader {
    /// The header at the start of `block`, if the magic is there and the sizes agree (the
    /// CRC is checked over the whole record by [`RecordHeader::holds`]).
    pub fn decode(block: &[u8]) -> Option<RecordHeader> {
        if block[0..4] != RECORD_MAGIC {
            return None;
        }
        let header = RecordHeader {
            crc: le_u32(block, 4),
            seq: le_u64(block, 8),
            payload_len: le_u32(block, 16),
            blocks: le_u32(block, 20),
        };
        (header.blocks >= 1 && record_blocks(header.payload_len as usize) == header.blocks as u64)
            .then_some(header)
    }

    /// Whether `record` (its whole blocks, from the header on) matches this header's CRC.
    pub fn holds(&self, record: &[u8]) -> bool {
        let end = RECORD_HEADER_BYTES + self.payload_len as usize;
        if record.len() < end {
            return false;
        }
        crc32c_parts(&[&record[0..4], &[0; 4], &record[8..end]]) == self.crc
    }

    /// The payload of `record`.
    pub fn payload<'r>(&self, record: &'r [u8]) -> &'r [u8] {
        &record[RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + self.payload_len as usize]
    }
}
