//! Mounting: finding the current superblock, reading its checkpoint, replaying the journal
//! records after it, and rebuilding the free-block map from what the metadata references.
//! Formatting a blank extent is here too. Nothing is written while mounting: recovery is the
//! replay, done in memory, so a mount never needs a repair step.

use super::alloc::BlockAllocator;
use super::device::{BLOCK_BYTES, BlockDevice};
use super::error::MountError;
use super::journal::{apply, decode_ops};
use super::layout::{
    CheckpointHeader, JOURNAL_FIRST, MIN_BLOCKS, RecordHeader, Superblock, SuperblockFault,
    journal_blocks_for,
};
use super::tree::{Node, Tree};
use super::volume::{VolumeState, VolumeStats};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

/// Blocks read in one request while walking the checkpoint chain or the journal.
const READ_AHEAD_BLOCKS: u64 = 64;
/// Blocks at the start of an extent that must be zero for it to count as blank.
const BLANK_PROBE_BLOCKS: u64 = 64;

/// A window of neighbouring blocks read ahead in one request.
struct ReadAhead {
    first: u64,
    data: Vec<u8>,
}

impl ReadAhead {
    fn new() -> ReadAhead {
        ReadAhead {
            first: 0,
            data: Vec::new(),
        }
    }

    /// Blocks `first..first + count` (all before `limit`), reading `READ_AHEAD_BLOCKS` or
    /// more in one request when they are not in the window.
    fn blocks(
        &mut self,
        device: &mut dyn BlockDevice,
        first: u64,
        count: u64,
        limit: u64,
    ) -> Result<&[u8], MountError> {
        let held = (self.data.len() / BLOCK_BYTES) as u64;
        if first < self.first || first + count > self.first + held {
            let read = count.max(READ_AHEAD_BLOCKS).min(limit - first).max(count);
            self.data.resize(read as usize * BLOCK_BYTES, 0);
            device.read(first, &mut self.data)?;
            self.first = first;
        }
        let start = (first - self.first) as usize * BLOCK_BYTES;
        Ok(&self.data[start..start + count as usize * BLOCK_BYTES])
    }
}

impl VolumeState {
    /// Mounts the volume on `device`: formats it when it is blank (all zeros at the start),
    /// refuses it when it holds anything else that is not a volume.
    pub fn mount(mut device: Box<dyn BlockDevice + Send>) -> Result<VolumeState, MountError> {
        let block_count = device.block_count();
        if block_count < MIN_BLOCKS {
            return Err(MountError::TooSmall {
                blocks: block_count,
            });
        }
        let mut slots = vec![0u8; 2 * BLOCK_BYTES];
        device.read(0, &mut slots)?;
        let decoded = [
            Superblock::decode(&slots[..BLOCK_BYTES]),
            Superblock::decode(&slots[BLOCK_BYTES..]),
        ];
        let newest = decoded
            .iter()
            .filter_map(|slot| slot.as_ref().ok())
            .max_by_key(|superblock| superblock.generation)
            .copied();
        let superblock = match newest {
            Some(superblock) => superblock,
            None if decoded
                .iter()
                .all(|slot| *slot == Err(SuperblockFault::NoMagic)) =>
            {
                return if is_blank(device.as_mut(), block_count)? {
                    VolumeState::format(device)
                } else {
                    Err(MountError::NotAVolume)
                };
            }
            None => {
                return Err(decoded
                    .iter()
                    .find_map(|slot| match slot {
                        Err(SuperblockFault::UnsupportedVersion(version)) => {
                            Some(MountError::UnsupportedVersion(*version))
                        }
                        _ => None,
                    })
                    .unwrap_or(MountError::BadSuperblock));
            }
        };
        if superblock.block_count != block_count {
            return Err(MountError::SizeMismatch {
                recorded: superblock.block_count,
                device: block_count,
            });
        }
        let data_first = superblock
            .journal_first
            .saturating_add(superblock.journal_blocks);
        if superblock.journal_first < JOURNAL_FIRST
            || superblock.journal_blocks == 0
            || data_first >= block_count
            || superblock.checkpoint_blocks == 0
            || superblock.checkpoint_blocks > block_count - data_first
            || superblock.checkpoint_first < data_first
            || superblock.checkpoint_first >= block_count
        {
            return Err(MountError::BadGeometry);
        }
        let (image, checkpoint) = read_checkpoint(device.as_mut(), &superblock)?;
        let mut tree = Tree::decode(&image).map_err(|_| MountError::MalformedCheckpoint)?;
        drop(image);
        let (journal_next, next_seq) = replay(device.as_mut(), &superblock, &mut tree)?;
        let allocator = rebuild_free_map(&tree, &checkpoint, data_first, block_count)?;
        Ok(VolumeState {
            device,
            block_count,
            journal_first: superblock.journal_first,
            journal_blocks: superblock.journal_blocks,
            tree,
            allocator,
            generation: superblock.generation,
            checkpoint,
            journal_next,
            next_seq,
            pending_ops: Vec::new(),
            changed_files: BTreeMap::new(),
            dirty: BTreeMap::new(),
            pending_free: Vec::new(),
            stopped: false,
            stats: VolumeStats::default(),
        })
    }

    /// Makes a new, empty volume on `device`, whatever it held: clears the journal, writes
    /// an empty checkpoint and the first superblock.
    pub fn format(mut device: Box<dyn BlockDevice + Send>) -> Result<VolumeState, MountError> {
        let block_count = device.block_count();
        if block_count < MIN_BLOCKS {
            return Err(MountError::TooSmall {
                blocks: block_count,
            });
        }
        let journal_blocks = journal_blocks_for(block_count);
        // Both superblock slots and the whole journal are cleared, so nothing of an earlier
        // volume can be replayed into this one.
        let zeros = vec![0u8; READ_AHEAD_BLOCKS as usize * BLOCK_BYTES];
        let clear_end = JOURNAL_FIRST + journal_blocks;
        let mut block = 0;
        while block < clear_end {
            let count = (clear_end - block).min(READ_AHEAD_BLOCKS);
            device.write(block, &zeros[..count as usize * BLOCK_BYTES])?;
            block += count;
        }
        let mut allocator = BlockAllocator::new(block_count);
        for fixed in 0..clear_end {
            let _ = allocator.claim(fixed);
        }
        let mut state = VolumeState {
            device,
            block_count,
            journal_first: JOURNAL_FIRST,
            journal_blocks,
            tree: Tree::new(),
            allocator,
            generation: 0,
            checkpoint: Vec::new(),
            journal_next: 0,
            next_seq: 1,
            pending_ops: Vec::new(),
            changed_files: BTreeMap::new(),
            dirty: BTreeMap::new(),
            pending_free: Vec::new(),
            stopped: false,
            stats: VolumeStats::default(),
        };
        state.checkpoint().map_err(|error| match error {
            super::error::FsError::Device(error) => MountError::Device(error),
            _ => MountError::TooSmall {
                blocks: block_count,
            },
        })?;
        Ok(state)
    }
}

/// Whether the extent is blank: its first blocks and its last block all zero, or holding
/// only the first checkpoint of a format a power cut interrupted before its superblock.
/// (Reading a whole multi-GiB extent would be too slow; every format we know of, ours
/// included, writes its signature there.)
fn is_blank(device: &mut dyn BlockDevice, block_count: u64) -> Result<bool, MountError> {
    let probe = BLANK_PROBE_BLOCKS.min(block_count);
    let mut data = vec![0u8; probe as usize * BLOCK_BYTES];
    device.read(0, &mut data)?;
    let mut last = vec![0u8; BLOCK_BYTES];
    device.read(block_count - 1, &mut last)?;
    Ok(data
        .chunks(BLOCK_BYTES)
        .chain([last.as_slice()])
        .all(|block| {
            block.iter().all(|byte| *byte == 0)
                || CheckpointHeader::decode(block).is_some_and(|header| header.generation == 1)
        }))
}

/// Reads and checks the checkpoint chain: every block's magic, CRC, generation and place in
/// the chain. Returns the image and the chain's blocks.
fn read_checkpoint(
    device: &mut dyn BlockDevice,
    superblock: &Superblock,
) -> Result<(Vec<u8>, Vec<u64>), MountError> {
    let block_count = superblock.block_count;
    let data_first = superblock.journal_first + superblock.journal_blocks;
    let mut image = Vec::with_capacity(
        superblock
            .checkpoint_bytes
            .min(block_count * BLOCK_BYTES as u64) as usize,
    );
    let mut chain = Vec::with_capacity(superblock.checkpoint_blocks as usize);
    let mut window = ReadAhead::new();
    let mut block = superblock.checkpoint_first;
    for index in 0..superblock.checkpoint_blocks {
        let damaged = MountError::BadCheckpoint { block, index };
        if block < data_first || block >= block_count {
            return Err(damaged);
        }
        let data = window.blocks(device, block, 1, block_count)?;
        let header = CheckpointHeader::decode(data).ok_or(damaged)?;
        let last = index + 1 == superblock.checkpoint_blocks;
        if header.generation != superblock.generation
            || u64::from(header.index) != index
            || (header.next == 0) != last
        {
            return Err(damaged);
        }
        let payload =
            &data[super::layout::CHECKPOINT_HEADER_BYTES..][..header.payload_len as usize];
        image.extend_from_slice(payload);
        chain.push(block);
        block = header.next;
    }
    if image.len() as u64 != superblock.checkpoint_bytes {
        return Err(MountError::MalformedCheckpoint);
    }
    Ok((image, chain))
}

/// Replays the journal records after the checkpoint into `tree`, in sequence order, until
/// the first that is missing, torn or stale. Returns where the next record goes and its
/// sequence number.
///
/// The last record's commit may have been cut before its flush: the record can be on disk
/// whole while some of the data it names is not. So the data blocks the last record points
/// at are checked against the CRCs it holds, and if any fails, that commit did not happen
/// and the record is left out. (Every earlier record was followed by its flush, or the next
/// record would not exist.) A record that fails its checksum while a later one is intact is
/// damage, not a torn tail, and is reported.
fn replay(
    device: &mut dyn BlockDevice,
    superblock: &Superblock,
    tree: &mut Tree,
) -> Result<(u64, u64), MountError> {
    let first = superblock.journal_first;
    let limit = first + superblock.journal_blocks;
    let mut window = ReadAhead::new();
    let mut chain: Vec<(u64, RecordHeader)> = Vec::new();
    let mut position = 0;
    let mut seq = superblock.journal_start_seq;
    while position < superblock.journal_blocks {
        let Some(header) =
            intact_record(device, &mut window, first + position, limit, |s| s == seq)?
        else {
            break;
        };
        chain.push((position, header));
        position += header.blocks as u64;
        seq += 1;
    }
    if let Some((last, header)) = chain.last().copied() {
        let data = window.blocks(device, first + last, header.blocks as u64, limit)?;
        let damaged = MountError::BadJournal {
            seq: header.seq,
            block: first + last,
        };
        let ops = decode_ops(header.payload(data)).map_err(|_| damaged)?;
        if !commit_data_landed(device, &ops, superblock.block_count)? {
            chain.pop();
            position = last;
            seq -= 1;
        }
    }
    // Nothing after the end may be a newer intact record.
    for later in position + 1..superblock.journal_blocks {
        if intact_record(device, &mut window, first + later, limit, |s| s > seq)?.is_some() {
            return Err(MountError::BadJournal {
                seq,
                block: first + position,
            });
        }
    }
    for (at, header) in chain {
        let damaged = MountError::BadJournal {
            seq: header.seq,
            block: first + at,
        };
        let data = window.blocks(device, first + at, header.blocks as u64, limit)?;
        let ops = decode_ops(header.payload(data)).map_err(|_| damaged)?;
        for op in ops {
            apply(tree, op, superblock.block_count).map_err(|_| damaged)?;
        }
    }
    Ok((position, seq))
}

/// Whether every data block the `ops` of one record point at holds what the record says
/// (read in runs of neighbouring blocks).
fn commit_data_landed(
    device: &mut dyn BlockDevice,
    ops: &[super::journal::Op],
    block_count: u64,
) -> Result<bool, MountError> {
    let mut blocks: Vec<(u64, u32)> = ops
        .iter()
        .filter_map(|op| match op {
            super::journal::Op::FileState { updates, .. } => Some(updates),
            _ => None,
        })
        .flatten()
        .filter(|(_, block)| !block.is_hole())
        .map(|(_, block)| (block.disk as u64, block.crc))
        .collect();
    blocks.sort_unstable();
    if blocks.iter().any(|(place, _)| *place >= block_count) {
        return Ok(false);
    }
    let mut window = ReadAhead::new();
    for (place, crc) in blocks {
        let data = window.blocks(device, place, 1, block_count)?;
        if super::layout::crc32c(data) != crc {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The header of the record at `block` if one is there whose sequence number `wanted`
/// accepts, that fits before `limit` and passes its CRC.
fn intact_record(
    device: &mut dyn BlockDevice,
    window: &mut ReadAhead,
    block: u64,
    limit: u64,
    wanted: impl Fn(u64) -> bool,
) -> Result<Option<RecordHeader>, MountError> {
    let Some(header) = RecordHeader::decode(window.blocks(device, block, 1, limit)?) else {
        return Ok(None);
    };
    if !wanted(header.seq) || block + header.blocks as u64 > limit {
        return Ok(None);
    }
    let data = window.blocks(device, block, header.blocks as u64, limit)?;
    Ok(header.holds(data).then_some(header))
}

/// The free-block map: the superblocks and journal, the checkpoint chain and every block a
/// file references are in use. A reference outside the data area or to a block already in
/// use is damage.
fn rebuild_free_map(
    tree: &Tree,
    checkpoint: &[u64],
    data_first: u64,
    block_count: u64,
) -> Result<BlockAllocator, MountError> {
    let mut allocator = BlockAllocator::new(block_count);
    for fixed in 0..data_first {
        let _ = allocator.claim(fixed);
    }
    for (index, block) in checkpoint.iter().enumerate() {
        allocator
            .claim(*block)
            .map_err(|_| MountError::BadCheckpoint {
                block: *block,
                index: index as u64,
            })?;
    }
    for (_, node) in tree.nodes() {
        if let Node::File(file) = node {
            for block in file.blocks.iter().filter(|block| !block.is_hole()) {
                let place = block.disk as u64;
                if place < data_first {
                    return Err(MountError::BadBlockReference { block: place });
                }
                allocator
                    .claim(place)
                    .map_err(|_| MountError::BadBlockReference { block: place })?;
            }
        }
    }
    Ok(allocator)
}
