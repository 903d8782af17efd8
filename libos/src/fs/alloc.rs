//! Free space: one bit per block, in memory only. It is rebuilt on mount from what the
//! metadata references, so there is no on-disk bitmap to keep consistent. Allocation is
//! next-fit from a cursor, so a file written or appended in order lands in runs of
//! neighbouring blocks and goes out in few device requests.

use alloc::vec;
use alloc::vec::Vec;

/// The free-block map of one volume.
#[derive(Debug, Clone)]
pub(crate) struct BlockAllocator {
    /// Bit set: block in use (or not allocatable).
    used: Vec<u64>,
    block_count: u64,
    free: u64,
    /// Where the next search starts.
    cursor: u64,
}

/// The block is already in use (a block claimed twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AlreadyUsed;

impl BlockAllocator {
    /// A map of `block_count` blocks, all free.
    pub fn new(block_count: u64) -> BlockAllocator {
        BlockAllocator {
            used: vec![0; block_count.div_ceil(64) as usize],
            block_count,
            free: block_count,
            cursor: 0,
        }
    }

    pub fn free_blocks(&self) -> u64 {
        self.free
    }

    pub fn is_used(&self, block: u64) -> bool {
        self.used[(block / 64) as usize] & (1 << (block % 64)) != 0
    }

    /// Marks `block` in use; `AlreadyUsed` if it was.
    pub fn claim(&mut self, block: u64) -> Result<(), AlreadyUsed> {
        if block >= self.block_count || self.is_used(block) {
            return Err(AlreadyUsed);
        }
        self.used[(block / 64) as usize] |= 1 << (block % 64);
        self.free -= 1;
        Ok(())
    }

    /// Gives `block` back.
    pub fn release(&mut self, block: u64) {
        debug_assert!(self.is_used(block), "block {block} released twice");
        if self.is_used(block) {
            self.used[(block / 64) as usize] &= !(1 << (block % 64));
            self.free += 1;
        }
    }

    /// Takes one run of at most `want` (≥ 1) neighbouring free blocks: `(first, len)`.
    pub fn allocate_run(&mut self, want: u64) -> Option<(u64, u64)> {
        if self.free == 0 || want == 0 {
            return None;
        }
        let first = self.next_free(self.cursor).or_else(|| self.next_free(0))?;
        let mut len = 0;
        while len < want && first + len < self.block_count && !self.is_used(first + len) {
            self.used[((first + len) / 64) as usize] |= 1 << ((first + len) % 64);
            len += 1;
        }
        self.free -= len;
        self.cursor = first + len;
        Some((first, len))
    }

    /// Takes `count` blocks, in as few runs as the free space allows; none if they are not
    /// all there.
    pub fn allocate(&mut self, count: u64) -> Option<Vec<u64>> {
        if count > self.free {
            return None;
        }
        let mut blocks = Vec::with_capacity(count as usize);
        while (blocks.len() as u64) < count {
            let (first, len) = self.allocate_run(count - blocks.len() as u64)?;
            blocks.extend(first..first + len);
        }
        Some(blocks)
    }

    /// The first free block at or after `from`.
    fn next_free(&self, from: u64) -> Option<u64> {
        let mut word = (from / 64) as usize;
        let mut mask = !0u64 << (from % 64);
        while word < self.used.len() {
            let free_bits = !self.used[word] & mask;
            if free_bits != 0 {
                let block = word as u64 * 64 + free_bits.trailing_zeros() as u64;
                return (block < self.block_count).then_some(block);
            }
            word += 1;
            mask = !0;
        }
        None
    }
}
