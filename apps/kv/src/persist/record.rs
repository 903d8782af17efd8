//! The on-disk encoding: file headers, checksummed frames, and the records inside them.
//!
//! Every file (log or snapshot) is a 32-byte [`FileHeader`] followed by frames:
//!
//! ```text
//! file header   magic "libos-kv" | version u16 | kind u16 | generation u64 | salt u64 | crc u32
//! frame         body_len u32 | sequence u64 | body_crc u32 | header_crc u32 | body[body_len]
//! ```
//!
//! All integers are little-endian; every checksum is CRC-32C. `body_crc` covers the body;
//! `header_crc` covers the file's salt and the frame's first 16 bytes. A frame's header thus
//! proves its own length, so a reader can tell a frame torn by a power cut from a frame that
//! was written whole and later damaged (see [`scan_log`]), and the salt (a per-file value the
//! clients never see) means a value stored by a client can never pass for a frame, however
//! its bytes are chosen. Sequence numbers count frames from 0 in each file.
//!
//! A body is a list of records, each a tag byte and its fields; lengths are LEB128 varints:
//!
//! | tag | record                         | fields                         |
//! |-----|--------------------------------|--------------------------------|
//! | 1   | `Set` without expiry           | key, value                     |
//! | 2   | `Set` with expiry              | key, value, expires_at_ms u64  |
//! | 3   | `Delete`                       | key                            |
//! | 4   | `SetExpiry` to a deadline      | key, expires_at_ms u64         |
//! | 5   | `SetExpiry` to never (PERSIST) | key                            |
//! | 6   | `Flush`                        |                                |
//! | 7   | end of snapshot                | entry count u64                |
//!
//! (key and value are a varint length and the bytes; deadlines are absolute unix milliseconds.)
//!
//! In a log, one frame is one group-commit batch: recovery applies a frame whole or not at all.
//! Decoding never panics and never allocates more than the input's size, whatever the bytes.

use crate::store::Mutation;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// The format written; a file with any other version is refused by name.
pub const FORMAT_VERSION: u16 = 1;
/// The first bytes of every file.
pub const MAGIC: [u8; 8] = *b"libos-kv";
/// The size of a [`FileHeader`].
pub const FILE_HEADER_BYTES: usize = 32;
/// The size of a frame's header (length, sequence, two checksums).
pub const FRAME_HEADER_BYTES: usize = 20;

const CASTAGNOLI: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISCSI);

fn crc32c(parts: &[&[u8]]) -> u32 {
    let mut digest = CASTAGNOLI.digest();
    for part in parts {
        digest.update(part);
    }
    digest.finalize()
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Batches of mutations, appended as they are committed.
    Log,
    /// The whole keyspace, written at once.
    Snapshot,
}

impl FileKind {
    fn code(self) -> u16 {
        match self {
            FileKind::Log => 1,
            FileKind::Snapshot => 2,
        }
    }
}

/// The header at the start of every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    pub kind: FileKind,
    /// The generation the file belongs to (it is also in the file's name).
    pub generation: u64,
    /// Mixed into every frame's header checksum.
    pub salt: u64,
}

/// Why a file header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    TooShort,
    BadMagic,
    BadChecksum,
    UnsupportedVersion(u16),
    UnknownKind(u16),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeaderError::TooShort => write!(f, "file shorter than its header"),
            HeaderError::BadMagic => write!(f, "not a kv file (bad magic)"),
            HeaderError::BadChecksum => write!(f, "file header checksum mismatch"),
            HeaderError::UnsupportedVersion(version) => {
                write!(f, "unsupported format version {version}")
            }
            HeaderError::UnknownKind(kind) => write!(f, "unknown file kind {kind}"),
        }
    }
}

impl FileHeader {
    pub fn encode(&self) -> [u8; FILE_HEADER_BYTES] {
        let mut bytes = [0u8; FILE_HEADER_BYTES];
        bytes[0..8].copy_from_slice(&MAGIC);
        bytes[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes[10..12].copy_from_slice(&self.kind.code().to_le_bytes());
        bytes[12..20].copy_from_slice(&self.generation.to_le_bytes());
        bytes[20..28].copy_from_slice(&self.salt.to_le_bytes());
        let checksum = crc32c(&[&bytes[..28]]);
        bytes[28..32].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<FileHeader, HeaderError> {
        let header = bytes
            .get(..FILE_HEADER_BYTES)
            .ok_or(HeaderError::TooShort)?;
        if header[0..8] != MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32c(&[&header[..28]]) != read_u32(header, 28) {
            return Err(HeaderError::BadChecksum);
        }
        let version = read_u16(header, 8);
        if version != FORMAT_VERSION {
            return Err(HeaderError::UnsupportedVersion(version));
        }
        let kind = match read_u16(header, 10) {
            1 => FileKind::Log,
            2 => FileKind::Snapshot,
            other => return Err(HeaderError::UnknownKind(other)),
        };
        Ok(FileHeader {
            kind,
            generation: read_u64(header, 12),
            salt: read_u64(header, 20),
        })
    }
}

// The readers below are called only on slices already checked to be long enough.
fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// A record in a frame's body: a mutation, or the end of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    Mutation(Mutation),
    /// The last record of a snapshot: how many `Set` records came before it.
    SnapshotEnd {
        entries: u64,
    },
}

const TAG_SET: u8 = 1;
const TAG_SET_WITH_EXPIRY: u8 = 2;
const TAG_DELETE: u8 = 3;
const TAG_SET_EXPIRY: u8 = 4;
const TAG_PERSIST: u8 = 5;
const TAG_FLUSH: u8 = 6;
const TAG_SNAPSHOT_END: u8 = 7;

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends the record of `Mutation::Set` with these fields to `out` (without building one).
pub fn encode_set(key: &[u8], value: &[u8], expires_at_ms: Option<u64>, out: &mut Vec<u8>) {
    out.push(match expires_at_ms {
        None => TAG_SET,
        Some(_) => TAG_SET_WITH_EXPIRY,
    });
    put_bytes(out, key);
    put_bytes(out, value);
    if let Some(deadline) = expires_at_ms {
        out.extend_from_slice(&deadline.to_le_bytes());
    }
}

/// Appends `mutation`'s record to `out`.
pub fn encode_mutation(mutation: &Mutation, out: &mut Vec<u8>) {
    match mutation {
        Mutation::Set {
            key,
            value,
            expires_at_ms,
        } => encode_set(key, value, *expires_at_ms, out),
        Mutation::Delete { key } => {
            out.push(TAG_DELETE);
            put_bytes(out, key);
        }
        Mutation::SetExpiry {
            key,
            expires_at_ms: Some(deadline),
        } => {
            out.push(TAG_SET_EXPIRY);
            put_bytes(out, key);
            out.extend_from_slice(&deadline.to_le_bytes());
        }
        Mutation::SetExpiry {
            key,
            expires_at_ms: None,
        } => {
            out.push(TAG_PERSIST);
            put_bytes(out, key);
        }
        Mutation::Flush => out.push(TAG_FLUSH),
    }
}

/// Appends a snapshot's end record to `out`.
pub fn encode_snapshot_end(entries: u64, out: &mut Vec<u8>) {
    out.push(TAG_SNAPSHOT_END);
    out.extend_from_slice(&entries.to_le_bytes());
}

/// Why a frame's body did not decode (its checksums were good, so this is not a torn write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// The body ends inside a record.
    Truncated,
    UnknownTag(u8),
    /// A varint longer than 64 bits.
    VarintOverflow,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Truncated => write!(f, "record truncated"),
            RecordError::UnknownTag(tag) => write!(f, "unknown record tag {tag}"),
            RecordError::VarintOverflow => write!(f, "length varint overflows"),
        }
    }
}

/// A cursor over a frame's body.
struct BodyReader<'a> {
    bytes: &'a [u8],
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, count: usize) -> Result<&'a [u8], RecordError> {
        if count > self.bytes.len() {
            return Err(RecordError::Truncated);
        }
        let (taken, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(taken)
    }

    fn byte(&mut self) -> Result<u8, RecordError> {
        Ok(self.take(1)?[0])
    }

    fn u64(&mut self) -> Result<u64, RecordError> {
        Ok(read_u64(self.take(8)?, 0))
    }

    fn varint(&mut self) -> Result<u64, RecordError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            if shift == 63 && bits > 1 {
                return Err(RecordError::VarintOverflow);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(RecordError::VarintOverflow)
    }

    /// Length-prefixed bytes; the length is checked against what is left before allocating.
    fn bytes(&mut self) -> Result<Vec<u8>, RecordError> {
        let length = self.varint()?;
        let length = usize::try_from(length).map_err(|_| RecordError::Truncated)?;
        Ok(self.take(length)?.to_vec())
    }
}

/// Decodes every record of a frame's body, in order.
pub fn decode_records(body: &[u8]) -> Result<Vec<Record>, RecordError> {
    let mut reader = BodyReader { bytes: body };
    let mut records = Vec::new();
    while !reader.bytes.is_empty() {
        let record = match reader.byte()? {
            TAG_SET => Mutation::Set {
                key: reader.bytes()?,
                value: reader.bytes()?,
                expires_at_ms: None,
            },
            TAG_SET_WITH_EXPIRY => Mutation::Set {
                key: reader.bytes()?,
                value: reader.bytes()?,
                expires_at_ms: Some(reader.u64()?),
            },
            TAG_DELETE => Mutation::Delete {
                key: reader.bytes()?,
            },
            TAG_SET_EXPIRY => Mutation::SetExpiry {
                key: reader.bytes()?,
                expires_at_ms: Some(reader.u64()?),
            },
            TAG_PERSIST => Mutation::SetExpiry {
                key: reader.bytes()?,
                expires_at_ms: None,
            },
            TAG_FLUSH => Mutation::Flush,
            TAG_SNAPSHOT_END => {
                records.push(Record::SnapshotEnd {
                    entries: reader.u64()?,
                });
                continue;
            }
            other => return Err(RecordError::UnknownTag(other)),
        };
        records.push(Record::Mutation(record));
    }
    Ok(records)
}

/// Builds one frame: records are encoded straight after room for the frame header, which
/// [`FrameBuilder::seal`] fills in, so a batch is never copied on its way to the disk.
#[derive(Debug)]
pub struct FrameBuilder {
    bytes: Vec<u8>,
    records: usize,
}

impl Default for FrameBuilder {
    fn default() -> FrameBuilder {
        FrameBuilder::new()
    }
}

/// A builder that grew past this (one large batch) gives its memory back when cleared.
const RETAINED_FRAME_BYTES: usize = 1024 * 1024;

impl FrameBuilder {
    pub fn new() -> FrameBuilder {
        FrameBuilder {
            bytes: vec![0; FRAME_HEADER_BYTES],
            records: 0,
        }
    }

    pub fn push_mutation(&mut self, mutation: &Mutation) {
        encode_mutation(mutation, &mut self.bytes);
        self.records += 1;
    }

    pub fn push_set(&mut self, key: &[u8], value: &[u8], expires_at_ms: Option<u64>) {
        encode_set(key, value, expires_at_ms, &mut self.bytes);
        self.records += 1;
    }

    pub fn push_snapshot_end(&mut self, entries: u64) {
        encode_snapshot_end(entries, &mut self.bytes);
        self.records += 1;
    }

    /// Records pushed since the last clear.
    pub fn records(&self) -> usize {
        self.records
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The bytes the frame will take, header included.
    pub fn frame_len(&self) -> usize {
        self.bytes.len()
    }

    /// Fills in the header for frame `sequence` of a file salted with `salt` and returns the
    /// whole frame.
    pub fn seal(&mut self, sequence: u64, salt: u64) -> &[u8] {
        let body_len = (self.bytes.len() - FRAME_HEADER_BYTES) as u32;
        let body_crc = crc32c(&[&self.bytes[FRAME_HEADER_BYTES..]]);
        self.bytes[0..4].copy_from_slice(&body_len.to_le_bytes());
        self.bytes[4..12].copy_from_slice(&sequence.to_le_bytes());
        self.bytes[12..16].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32c(&[&salt.to_le_bytes(), &self.bytes[..16]]);
        self.bytes[16..20].copy_from_slice(&header_crc.to_le_bytes());
        &self.bytes
    }

    /// Empties the builder for the next frame.
    pub fn clear(&mut self) {
        if self.bytes.capacity() > RETAINED_FRAME_BYTES {
            self.bytes = Vec::new();
        }
        self.bytes.clear();
        self.bytes.resize(FRAME_HEADER_BYTES, 0);
        self.records = 0;
    }
}

/// A frame read whole with both checksums good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub sequence: u64,
    pub body: &'a [u8],
    /// Where the next frame starts.
    pub end: usize,
}

/// Why the bytes at an offset are not a good frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a frame header are left.
    HeaderIncomplete,
    BadHeaderChecksum,
    /// The header is good but the file ends before the body does.
    BodyIncomplete,
    BadBodyChecksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::HeaderIncomplete => write!(f, "frame header incomplete"),
            FrameError::BadHeaderChecksum => write!(f, "frame header checksum mismatch"),
            FrameError::BodyIncomplete => write!(f, "frame body incomplete"),
            FrameError::BadBodyChecksum => write!(f, "frame body checksum mismatch"),
        }
    }
}

/// Reads the frame at `offset` of a file salted with `salt`.
pub fn read_frame(bytes: &[u8], offset: usize, salt: u64) -> Result<Frame<'_>, FrameError> {
    let header = bytes
        .get(offset..)
        .and_then(|rest| rest.get(..FRAME_HEADER_BYTES))
        .ok_or(FrameError::HeaderIncomplete)?;
    if crc32c(&[&salt.to_le_bytes(), &header[..16]]) != read_u32(header, 16) {
        return Err(FrameError::BadHeaderChecksum);
    }
    let body_len = read_u32(header, 0) as usize;
    let body_start = offset + FRAME_HEADER_BYTES;
    let body = bytes
        .get(body_start..)
        .and_then(|rest| rest.get(..body_len))
        .ok_or(FrameError::BodyIncomplete)?;
    if crc32c(&[body]) != read_u32(header, 12) {
        return Err(FrameError::BadBodyChecksum);
    }
    Ok(Frame {
        sequence: read_u64(header, 4),
        body,
        end: body_start + body_len,
    })
}

/// Whether a good frame (both checksums) starts anywhere after `offset`: the test that tells
/// damage in the middle of a log (good frames follow it) from a torn final append (nothing
/// good follows). Costs one 20-byte checksum per byte examined, and a body checksum only for
/// the rare header that passes.
fn good_frame_after(bytes: &[u8], offset: usize, salt: u64) -> Option<usize> {
    (offset + 1..bytes.len().saturating_sub(FRAME_HEADER_BYTES - 1))
        .find(|&start| read_frame(bytes, start, salt).is_ok())
}

/// How a log's frames ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogEnd {
    /// Every byte belonged to a good frame.
    Clean,
    /// The bytes from `offset` on are what is left of an append the power cut interrupted:
    /// a frame that is incomplete or fails its checksums, with no good frame after it. No
    /// batch in it was acknowledged (an ack waits for the sync), so it is dropped.
    TornTail { offset: usize, bytes: usize },
    /// Damage that no power cut explains: a bad frame with good frames after it, a frame
    /// whose checksums are good but whose records do not decode, or a frame out of sequence.
    Corrupt { offset: usize, error: LogCorruption },
}

/// What is wrong at a [`LogEnd::Corrupt`] offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogCorruption {
    /// A damaged frame; the offset of the next good frame says acknowledged data followed.
    BadFrame {
        error: FrameError,
        next_good_frame: usize,
    },
    BadRecord(RecordError),
    /// A record that does not belong in this kind of file (a snapshot's end in a log).
    MisplacedRecord,
    OutOfSequence {
        expected: u64,
        found: u64,
    },
}

impl fmt::Display for LogCorruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogCorruption::BadFrame {
                error,
                next_good_frame,
            } => write!(
                f,
                "{error}, with a good frame after it at {next_good_frame}"
            ),
            LogCorruption::BadRecord(error) => write!(f, "{error}"),
            LogCorruption::MisplacedRecord => write!(f, "a snapshot's end record in a log"),
            LogCorruption::OutOfSequence { expected, found } => {
                write!(f, "frame {found} where frame {expected} was expected")
            }
        }
    }
}

/// What [`scan_log`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogScan {
    pub header: FileHeader,
    /// Good frames (batches) applied.
    pub frames: u64,
    /// Mutations in them.
    pub mutations: u64,
    pub end: LogEnd,
}

/// Reads a log, handing each good batch's mutations to `apply` in order, a frame at a time
/// (a frame is decoded whole before any of it is applied). Stops at the first bad frame and
/// says in [`LogScan::end`] whether it was a torn tail or corruption.
pub fn scan_log(bytes: &[u8], mut apply: impl FnMut(Mutation)) -> Result<LogScan, HeaderError> {
    let header = FileHeader::decode(bytes)?;
    let mut scan = LogScan {
        header,
        frames: 0,
        mutations: 0,
        end: LogEnd::Clean,
    };
    let mut offset = FILE_HEADER_BYTES;
    while offset < bytes.len() {
        let frame = match read_frame(bytes, offset, header.salt) {
            Ok(frame) => frame,
            Err(error) => {
                scan.end = match good_frame_after(bytes, offset, header.salt) {
                    Some(next_good_frame) => LogEnd::Corrupt {
                        offset,
                        error: LogCorruption::BadFrame {
                            error,
                            next_good_frame,
                        },
                    },
                    None => LogEnd::TornTail {
                        offset,
                        bytes: bytes.len() - offset,
                    },
                };
                return Ok(scan);
            }
        };
        let corrupt = |error| LogEnd::Corrupt { offset, error };
        if frame.sequence != scan.frames {
            scan.end = corrupt(LogCorruption::OutOfSequence {
                expected: scan.frames,
                found: frame.sequence,
            });
            return Ok(scan);
        }
        let records = match decode_records(frame.body) {
            Ok(records) => records,
            Err(error) => {
                scan.end = corrupt(LogCorruption::BadRecord(error));
                return Ok(scan);
            }
        };
        if records
            .iter()
            .any(|record| matches!(record, Record::SnapshotEnd { .. }))
        {
            scan.end = corrupt(LogCorruption::MisplacedRecord);
            return Ok(scan);
        }
        for record in records {
            if let Record::Mutation(mutation) = record {
                apply(mutation);
                scan.mutations += 1;
            }
        }
        scan.frames += 1;
        offset = frame.end;
    }
    Ok(scan)
}

/// Why a snapshot was refused. A snapshot is written to a temporary file, synced and renamed
/// into place, so unlike a log it is never torn: anything wrong with it is damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotError {
    Header(HeaderError),
    NotASnapshot,
    BadFrame {
        offset: usize,
        error: FrameError,
    },
    BadRecord {
        offset: usize,
        error: RecordError,
    },
    OutOfSequence {
        offset: usize,
    },
    /// The file ends without the end record.
    MissingEnd,
    /// The end record's count differs from the entries read.
    WrongEntryCount {
        expected: u64,
        found: u64,
    },
    /// Bytes after the end record.
    TrailingBytes {
        offset: usize,
    },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Header(error) => write!(f, "{error}"),
            SnapshotError::NotASnapshot => write!(f, "the file's header is not a snapshot's"),
            SnapshotError::BadFrame { offset, error } => write!(f, "{error} at {offset}"),
            SnapshotError::BadRecord { offset, error } => {
                write!(f, "{error} in the frame at {offset}")
            }
            SnapshotError::OutOfSequence { offset } => {
                write!(f, "frame out of sequence at {offset}")
            }
            SnapshotError::MissingEnd => write!(f, "no end record"),
            SnapshotError::WrongEntryCount { expected, found } => {
                write!(f, "end record counts {expected} entries, found {found}")
            }
            SnapshotError::TrailingBytes { offset } => {
                write!(f, "bytes after the end record at {offset}")
            }
        }
    }
}

/// Reads a snapshot, handing each of its mutations to `apply`; returns its header and entry
/// count. Entries are applied as they are read, so a caller that gets an error must throw
/// away what it built.
pub fn scan_snapshot(
    bytes: &[u8],
    mut apply: impl FnMut(Mutation),
) -> Result<(FileHeader, u64), SnapshotError> {
    let header = FileHeader::decode(bytes).map_err(SnapshotError::Header)?;
    if header.kind != FileKind::Snapshot {
        return Err(SnapshotError::NotASnapshot);
    }
    let mut offset = FILE_HEADER_BYTES;
    let mut sequence = 0;
    let mut entries = 0u64;
    while offset < bytes.len() {
        let frame = read_frame(bytes, offset, header.salt)
            .map_err(|error| SnapshotError::BadFrame { offset, error })?;
        if frame.sequence != sequence {
            return Err(SnapshotError::OutOfSequence { offset });
        }
        let records = decode_records(frame.body)
            .map_err(|error| SnapshotError::BadRecord { offset, error })?;
        let record_count = records.len();
        for (index, record) in records.into_iter().enumerate() {
            match record {
                Record::Mutation(mutation) => {
                    apply(mutation);
                    entries += 1;
                }
                Record::SnapshotEnd { entries: expected } => {
                    if expected != entries {
                        return Err(SnapshotError::WrongEntryCount {
                            expected,
                            found: entries,
                        });
                    }
                    // The end record closes the last frame; nothing may follow it.
                    if index + 1 != record_count || frame.end != bytes.len() {
                        return Err(SnapshotError::TrailingBytes { offset: frame.end });
                    }
                    return Ok((header, entries));
                }
            }
        }
        sequence += 1;
        offset = frame.end;
    }
    Err(SnapshotError::MissingEnd)
}

#[cfg(test)]
mod tests;
