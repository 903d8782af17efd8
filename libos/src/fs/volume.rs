//! One mounted volume's state and its write path: the dirty-block cache, copy-on-write
//! write-back, commits (one journal record and one flush) and checkpoints (the whole tree to
//! fresh blocks, then the other superblock slot). Mounting and replay are in `mount.rs`.
//!
//! The rules that make it crash-safe:
//! - Data never overwrites a block that the durable state (the checkpoint plus the journal
//!   records on disk) may still reference: every change goes to a freshly allocated block.
//! - A block given up (overwritten, truncated, removed) waits in `pending_free` until the
//!   record (or checkpoint) that gives it up is flushed; only then may it be reused. So no
//!   block is written twice between two flushes either, and the device's reordering within
//!   an epoch cannot matter.
//! - A commit writes the data blocks and the record (which holds their CRCs) together and
//!   then flushes once. A torn record fails its own CRC and simply ends the replay; a whole
//!   record whose data did not all land (the cut came before the flush) is recognized on
//!   mount by checking the last record's data against those CRCs, and is left out too.
//! - The old checkpoint's blocks are freed only after the superblock that supersedes it is
//!   flushed, and the journal restarts only then.

use super::alloc::BlockAllocator;
use super::device::{BLOCK_BYTES, BlockDevice};
use super::error::FsError;
use super::journal::{Op, encode_ops};
use super::layout::{
    CHECKPOINT_PAYLOAD_BYTES, CheckpointHeader, SUPERBLOCK_SLOTS, Superblock, crc32c,
    encode_record, record_blocks,
};
use super::tree::{BlockRef, Kind, Node, Tree};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec;
use alloc::vec::Vec;

/// Dirty blocks kept in memory before they are written back (512 KiB): enough to coalesce
/// appends into large requests, small enough for a small heap.
pub(crate) const DIRTY_BLOCK_LIMIT: usize = 128;
/// Most blocks in one device request the file system issues.
const MAX_REQUEST_BLOCKS: usize = 256;
/// Extra bytes of checkpoint image kept room for, beyond the tree's current size.
const IMAGE_SLACK_BYTES: u64 = 1024;

/// Counters, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct VolumeStats {
    /// Commits that wrote a journal record.
    pub commits: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Device flushes.
    pub flushes: u64,
    /// Device write requests.
    pub write_requests: u64,
    /// Device read requests.
    pub read_requests: u64,
}

/// Space on the volume, in blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceUsage {
    /// Blocks in the volume.
    pub total_blocks: u64,
    /// Blocks free now (not counting blocks that become free at the next commit).
    pub free_blocks: u64,
}

/// What changed in one file since the last commit.
#[derive(Debug, Clone, Default)]
pub(crate) struct FileChanges {
    /// The fewest blocks the file had since the last commit.
    pub low_water: u64,
    /// Blocks whose place changed.
    pub blocks: BTreeSet<u64>,
}

/// A mounted volume.
pub(crate) struct VolumeState {
    pub device: Box<dyn BlockDevice + Send>,
    pub block_count: u64,
    pub journal_first: u64,
    pub journal_blocks: u64,
    pub tree: Tree,
    pub allocator: BlockAllocator,
    /// The current superblock's generation.
    pub generation: u64,
    /// The current checkpoint's blocks, in chain order.
    pub checkpoint: Vec<u64>,
    /// Journal block (from `journal_first`) where the next record goes.
    pub journal_next: u64,
    /// Sequence number of the next record.
    pub next_seq: u64,
    /// Namespace changes since the last commit, in order.
    pub pending_ops: Vec<Op>,
    pub changed_files: BTreeMap<u64, FileChanges>,
    /// Blocks written to in memory but not yet on the device, by (inode, file block).
    pub dirty: BTreeMap<(u64, u64), Box<[u8]>>,
    /// Blocks given up since the last commit; free once it is flushed.
    pub pending_free: Vec<u64>,
    /// Set when a commit's device transfer failed: what is on disk is still consistent, but
    /// the memory state is ahead of it, so nothing more is written.
    pub stopped: bool,
    pub stats: VolumeStats,
}

/// Blocks a checkpoint image of `bytes` bytes takes.
pub(crate) fn image_blocks(bytes: u64) -> u64 {
    bytes.div_ceil(CHECKPOINT_PAYLOAD_BYTES as u64).max(1)
}

impl VolumeState {
    /// The largest file, in bytes: the volume's size.
    pub fn max_file_bytes(&self) -> u64 {
        self.block_count * BLOCK_BYTES as u64
    }

    pub fn space(&self) -> SpaceUsage {
        SpaceUsage {
            total_blocks: self.block_count,
            free_blocks: self.allocator.free_blocks(),
        }
    }

    fn check_running(&self) -> Result<(), FsError> {
        if self.stopped {
            Err(FsError::Stopped)
        } else {
            Ok(())
        }
    }

    /// Makes sure `new_dirty` more dirty blocks and `extra_image` more bytes of metadata fit,
    /// keeping room for a checkpoint of everything; commits first to free what earlier
    /// changes gave up when that is needed.
    fn ensure_room(&mut self, new_dirty: u64, extra_image: u64) -> Result<(), FsError> {
        loop {
            let image = self.tree.image_bytes() + extra_image + IMAGE_SLACK_BYTES;
            let needed = self.dirty.len() as u64 + new_dirty + image_blocks(image);
            if self.allocator.free_blocks() >= needed {
                return Ok(());
            }
            if self.pending_free.is_empty() {
                return Err(FsError::StorageFull);
            }
            self.commit()?;
        }
    }

    /// Notes that file `inode` is about to change (before its block count does).
    fn note_change(&mut self, inode: u64) -> Result<&mut FileChanges, FsError> {
        let count = self.tree.file(inode)?.blocks.len() as u64;
        Ok(self
            .changed_files
            .entry(inode)
            .or_insert_with(|| FileChanges {
                low_water: count,
                blocks: BTreeSet::new(),
            }))
    }

    fn device_read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), FsError> {
        self.stats.read_requests += 1;
        Ok(self.device.read(first, buf)?)
    }

    /// Queues writes of `blocks` (their places) holding `data` (one block each, in the same
    /// order), one request per run of neighbouring places.
    fn write_blocks(&mut self, places: &[u64], data: &[u8]) -> Result<(), FsError> {
        let mut start = 0;
        while start < places.len() {
            let mut end = start + 1;
            while end < places.len()
                && end - start < MAX_REQUEST_BLOCKS
                && places[end] == places[end - 1] + 1
            {
                end += 1;
            }
            self.stats.write_requests += 1;
            self.device
                .write(places[start], &data[start * BLOCK_BYTES..end * BLOCK_BYTES])?;
            start = end;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), FsError> {
        self.stats.flushes += 1;
        Ok(self.device.flush()?)
    }

    /// Reads block `index` of file `inode` into `out` as it is now (dirty, on disk checked
    /// against its CRC, or zeros for a hole or past the end).
    fn load_block(&mut self, inode: u64, index: u64, out: &mut [u8]) -> Result<(), FsError> {
        if let Some(data) = self.dirty.get(&(inode, index)) {
            out.copy_from_slice(data);
            return Ok(());
        }
        let block = self.tree.file(inode)?.blocks.get(index as usize).copied();
        match block {
            Some(block) if !block.is_hole() => {
                self.device_read(block.disk as u64, out)?;
                check_block(inode, index, block, out)
            }
            _ => {
                out.fill(0);
                Ok(())
            }
        }
    }

    /// Reads from file `inode` at `offset` into `buf`; returns how many bytes (0 at or past
    /// the end). Neighbouring blocks on disk are read in one request.
    pub fn read_at(&mut self, inode: u64, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let size = self.tree.file(inode)?.size;
        if offset >= size || buf.is_empty() {
            return Ok(0);
        }
        let total = buf.len().min((size - offset) as usize);
        let block_bytes = BLOCK_BYTES as u64;
        let mut done = 0;
        let mut scratch = Vec::new();
        while done < total {
            let position = offset + done as u64;
            let index = position / block_bytes;
            let within = (position % block_bytes) as usize;
            // The run of blocks from `index` that lie next to each other on disk, are not
            // dirty, and are wanted.
            let wanted = (within + total - done)
                .div_ceil(BLOCK_BYTES)
                .min(MAX_REQUEST_BLOCKS);
            let file = self.tree.file(inode)?;
            let first = file.blocks[index as usize];
            let mut run = 1;
            if !first.is_hole() && !self.dirty.contains_key(&(inode, index)) {
                while run < wanted {
                    let next = index + run as u64;
                    let block = file.blocks[next as usize];
                    if block.disk != first.disk + run as u32
                        || self.dirty.contains_key(&(inode, next))
                    {
                        break;
                    }
                    run += 1;
                }
            }
            scratch.resize(run * BLOCK_BYTES, 0);
            if run == 1 {
                self.load_block(inode, index, &mut scratch)?;
            } else {
                self.device_read(first.disk as u64, &mut scratch)?;
                let file = self.tree.file(inode)?;
                for i in 0..run {
                    let block = file.blocks[index as usize + i];
                    check_block(
                        inode,
                        index + i as u64,
                        block,
                        &scratch[i * BLOCK_BYTES..(i + 1) * BLOCK_BYTES],
                    )?;
                }
            }
            let n = (run * BLOCK_BYTES - within).min(total - done);
            buf[done..done + n].copy_from_slice(&scratch[within..within + n]);
            done += n;
        }
        Ok(total)
    }

    /// Writes `data` into file `inode` at `offset`, growing it as needed (a gap reads as
    /// zeros); returns how many bytes were written: fewer than asked only when the volume
    /// filled up part way.
    pub fn write_at(&mut self, inode: u64, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        self.check_running()?;
        self.tree.file(inode)?;
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::FileTooLarge)?;
        if end > self.max_file_bytes() {
            return Err(FsError::FileTooLarge);
        }
        let block_bytes = BLOCK_BYTES as u64;
        let mut done = 0;
        while done < data.len() {
            // A chunk of at most the dirty limit, so memory stays bounded for any length.
            let position = offset + done as u64;
            let first = position / block_bytes;
            let chunk_end = ((first + DIRTY_BLOCK_LIMIT as u64) * block_bytes).min(end);
            let last = (chunk_end - 1) / block_bytes;
            let new_dirty = (first..=last)
                .filter(|index| !self.dirty.contains_key(&(inode, *index)))
                .count() as u64;
            let held = self.tree.file(inode)?.blocks.len() as u64;
            let growth = (last + 1).saturating_sub(held);
            if let Err(error) = self.ensure_room(new_dirty, 8 * growth) {
                return if done > 0 { Ok(done) } else { Err(error) };
            }
            self.note_change(inode)?;
            if growth > 0 {
                self.tree.set_block_count(inode, last + 1)?;
            }
            for index in first..=last {
                let block_start = index * block_bytes;
                let from = position.max(block_start);
                let to = chunk_end.min(block_start + block_bytes);
                let piece = &data[(from - offset) as usize..(to - offset) as usize];
                let within = (from - block_start) as usize;
                let mut buffer = match self.dirty.remove(&(inode, index)) {
                    Some(buffer) => buffer,
                    None if piece.len() == BLOCK_BYTES => vec![0u8; BLOCK_BYTES].into_boxed_slice(),
                    None => {
                        let mut buffer = vec![0u8; BLOCK_BYTES].into_boxed_slice();
                        self.load_block(inode, index, &mut buffer)?;
                        buffer
                    }
                };
                buffer[within..within + piece.len()].copy_from_slice(piece);
                self.dirty.insert((inode, index), buffer);
            }
            let file = self.tree.file_mut(inode)?;
            file.size = file.size.max(chunk_end);
            done = (chunk_end - offset) as usize;
            if self.dirty.len() >= DIRTY_BLOCK_LIMIT {
                self.write_back()?;
            }
        }
        Ok(done)
    }

    /// Truncates or extends file `inode` to `len` bytes (an extension reads as zeros).
    pub fn set_len(&mut self, inode: u64, len: u64) -> Result<(), FsError> {
        self.check_running()?;
        let file = self.tree.file(inode)?;
        let (size, held) = (file.size, file.blocks.len() as u64);
        if len > self.max_file_bytes() {
            return Err(FsError::FileTooLarge);
        }
        let count = len.div_ceil(BLOCK_BYTES as u64);
        let tail = (len % BLOCK_BYTES as u64) as usize;
        let last_is_hole = count > 0
            && !self.dirty.contains_key(&(inode, count - 1))
            && file
                .blocks
                .get(count as usize - 1)
                .is_none_or(BlockRef::is_hole);
        if len < size && tail != 0 && !last_is_hole {
            // The bytes past the new end in the last block must read as zeros if the file
            // grows again: rewrite that block with them cleared.
            let last = count - 1;
            let new_dirty = u64::from(!self.dirty.contains_key(&(inode, last)));
            self.ensure_room(new_dirty, 0)?;
            self.note_change(inode)?;
            let mut buffer = vec![0u8; BLOCK_BYTES].into_boxed_slice();
            self.load_block(inode, last, &mut buffer)?;
            buffer[tail..].fill(0);
            self.dirty.insert((inode, last), buffer);
        }
        if count > held {
            self.ensure_room(0, 8 * (count - held))?;
        }
        let changes = self.note_change(inode)?;
        changes.low_water = changes.low_water.min(count);
        changes.blocks.retain(|index| *index < count);
        for block in self.tree.set_block_count(inode, count)? {
            if !block.is_hole() {
                self.pending_free.push(block.disk as u64);
            }
        }
        let stale: Vec<(u64, u64)> = self
            .dirty
            .range((inode, count)..=(inode, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.dirty.remove(&key);
        }
        self.tree.file_mut(inode)?.size = len;
        Ok(())
    }

    /// Creates an empty file or directory named by `components`.
    pub fn create_node(&mut self, components: &[&str], kind: Kind) -> Result<u64, FsError> {
        self.check_running()?;
        let (parent, name) = self.tree.parent_of(components)?;
        match self.tree.dir(parent)?.entries.contains_key(name) {
            true => return Err(FsError::AlreadyExists),
            false => self.ensure_room(0, 64 + name.len() as u64)?,
        }
        let inode = self.tree.allocate_inode();
        self.tree.create(parent, name, inode, kind)?;
        self.pending_ops.push(Op::Create {
            parent,
            name: name.into(),
            inode,
            kind,
        });
        Ok(inode)
    }

    /// Gives up everything a removed or replaced node held.
    fn discard_node(&mut self, inode: u64, node: Node) {
        if let Node::File(file) = node {
            self.pending_free.extend(
                file.blocks
                    .iter()
                    .filter(|b| !b.is_hole())
                    .map(|b| b.disk as u64),
            );
        }
        self.changed_files.remove(&inode);
        let stale: Vec<(u64, u64)> = self
            .dirty
            .range((inode, 0)..=(inode, u64::MAX))
            .map(|(key, _)| *key)
            .collect();
        for key in stale {
            self.dirty.remove(&key);
        }
    }

    /// Removes the file (`kind` File) or empty directory (`kind` Dir) named by `components`.
    pub fn remove_node(&mut self, components: &[&str], kind: Kind) -> Result<(), FsError> {
        self.check_running()?;
        let (parent, name) = self.tree.parent_of(components)?;
        let inode = self.tree.lookup(components)?;
        match (kind, self.tree.node(inode)?.kind()) {
            (Kind::File, Kind::Dir) => return Err(FsError::IsADirectory),
            (Kind::Dir, Kind::File) => return Err(FsError::NotADirectory),
            _ => {}
        }
        let node = self.tree.remove(parent, name)?;
        self.discard_node(inode, node);
        self.pending_ops.push(Op::Remove {
            parent,
            name: name.into(),
        });
        Ok(())
    }

    /// Moves `from` to `to` (replacing a file there) and commits: durable on return.
    pub fn rename(&mut self, from: &[&str], to: &[&str]) -> Result<(), FsError> {
        self.check_running()?;
        let (from_parent, from_name) = self.tree.parent_of(from)?;
        let (to_parent, to_name) = self.tree.parent_of(to)?;
        let replaced_inode = self.tree.lookup(to).ok();
        let growth = to_name.len().saturating_sub(from_name.len()) as u64;
        self.ensure_room(0, growth)?;
        if let Some(replaced) = self
            .tree
            .rename(from_parent, from_name, to_parent, to_name)?
        {
            self.discard_node(replaced_inode.unwrap_or(0), replaced);
        }
        self.pending_ops.push(Op::Rename {
            from_parent,
            from_name: from_name.into(),
            to_parent,
            to_name: to_name.into(),
        });
        self.commit()
    }

    /// Writes every dirty block to a fresh place and points its file at it.
    pub fn write_back(&mut self) -> Result<(), FsError> {
        if self.dirty.is_empty() {
            return Ok(());
        }
        let places = self
            .allocator
            .allocate(self.dirty.len() as u64)
            .ok_or(FsError::StorageFull)?;
        let dirty = core::mem::take(&mut self.dirty);
        let mut data = Vec::with_capacity(dirty.len() * BLOCK_BYTES);
        for (((inode, index), buffer), place) in dirty.into_iter().zip(&places) {
            let crc = crc32c(&buffer);
            data.extend_from_slice(&buffer);
            let old = core::mem::replace(
                &mut self.tree.file_mut(inode)?.blocks[index as usize],
                BlockRef {
                    disk: *place as u32,
                    crc,
                },
            );
            if !old.is_hole() {
                self.pending_free.push(old.disk as u64);
            }
            self.note_change(inode)?.blocks.insert(index);
        }
        if let Err(error) = self.write_blocks(&places, &data) {
            self.stopped = true;
            return Err(error);
        }
        Ok(())
    }

    /// Makes everything done so far durable: dirty data to fresh blocks, then one journal
    /// record of the metadata changes, then one flush (a checkpoint instead when the record
    /// does not fit in the journal).
    pub fn commit(&mut self) -> Result<(), FsError> {
        self.check_running()?;
        self.write_back()?;
        if self.pending_ops.is_empty() && self.changed_files.is_empty() {
            return Ok(());
        }
        // Cloned, not taken: when the record does not fit, the checkpoint below may still
        // fail (no room), and the queue must then stay for the next try.
        let mut ops = self.pending_ops.clone();
        for (inode, changes) in &self.changed_files {
            let file = self.tree.file(*inode)?;
            ops.push(Op::FileState {
                inode: *inode,
                size: file.size,
                low_water: changes.low_water,
                updates: changes
                    .blocks
                    .iter()
                    .map(|index| (*index, file.blocks[*index as usize]))
                    .collect(),
            });
        }
        let payload = encode_ops(&ops);
        if self.journal_next + record_blocks(payload.len()) > self.journal_blocks {
            return self.checkpoint();
        }
        let record = encode_record(self.next_seq, &payload);
        let first = self.journal_first + self.journal_next;
        self.stats.write_requests += 1;
        let written = self.device.write(first, &record).map_err(FsError::from);
        if let Err(error) = written.and_then(|()| self.flush()) {
            self.stopped = true;
            return Err(error);
        }
        self.stats.commits += 1;
        self.pending_ops.clear();
        self.journal_next += (record.len() / BLOCK_BYTES) as u64;
        self.next_seq += 1;
        self.changed_files.clear();
        for block in core::mem::take(&mut self.pending_free) {
            self.allocator.release(block);
        }
        Ok(())
    }

    /// Writes the whole tree as a new checkpoint, flushes, points the other superblock slot
    /// at it, flushes, and starts the journal over.
    pub fn checkpoint(&mut self) -> Result<(), FsError> {
        self.check_running()?;
        self.write_back()?;
        let image = self.tree.encode();
        let count = image_blocks(image.len() as u64);
        let places = self.allocator.allocate(count).ok_or(FsError::StorageFull)?;
        let generation = self.generation + 1;
        let mut data = vec![0u8; places.len() * BLOCK_BYTES];
        for index in 0..places.len() {
            let start = (index * CHECKPOINT_PAYLOAD_BYTES).min(image.len());
            let end = (start + CHECKPOINT_PAYLOAD_BYTES).min(image.len());
            let header = CheckpointHeader {
                generation,
                index: index as u32,
                payload_len: (end - start) as u32,
                next: places.get(index + 1).copied().unwrap_or(0),
            };
            header.encode_into(
                &image[start..end],
                &mut data[index * BLOCK_BYTES..(index + 1) * BLOCK_BYTES],
            );
        }
        let superblock = Superblock {
            generation,
            block_count: self.block_count,
            journal_first: self.journal_first,
            journal_blocks: self.journal_blocks,
            journal_start_seq: self.next_seq,
            checkpoint_first: places[0],
            checkpoint_blocks: count,
            checkpoint_bytes: image.len() as u64,
        };
        let slot = SUPERBLOCK_SLOTS[(generation % 2) as usize];
        let result = self
            .write_blocks(&places, &data)
            .and_then(|()| self.flush())
            .and_then(|()| {
                self.stats.write_requests += 1;
                Ok(self.device.write(slot, &superblock.encode())?)
            })
            .and_then(|()| self.flush());
        if let Err(error) = result {
            self.stopped = true;
            return Err(error);
        }
        self.stats.checkpoints += 1;
        let old = core::mem::replace(&mut self.checkpoint, places);
        for block in old
            .into_iter()
            .chain(core::mem::take(&mut self.pending_free))
        {
            self.allocator.release(block);
        }
        self.generation = generation;
        self.journal_next = 0;
        self.pending_ops.clear();
        self.changed_files.clear();
        Ok(())
    }
}

/// Checks block `index` of file `inode`, read from `block.disk`, against its CRC.
fn check_block(inode: u64, index: u64, block: BlockRef, data: &[u8]) -> Result<(), FsError> {
    if crc32c(data) == block.crc {
        Ok(())
    } else {
        Err(FsError::DamagedData {
            inode,
            file_block: index,
            disk_block: block.disk as u64,
        })
    }
}
