//! Journal records' contents: the metadata changes of one commit, as a list of [`Op`]s, and
//! how they are encoded and applied. The live volume applies each namespace change to its
//! tree at once and queues the `Op`; a commit writes the queue, followed by the new state of
//! every file changed since the last commit, as one record. Replay applies the same `Op`s to
//! the checkpoint's tree in the same order, through the same [`Tree`] methods.

use super::layout::{Decoder, Encoder, Malformed};
use super::tree::{BlockRef, Kind, Tree};
use alloc::string::String;
use alloc::vec::Vec;

/// One metadata change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    /// An empty file or directory `inode` named `name` appears in `parent`.
    Create {
        parent: u64,
        name: String,
        inode: u64,
        kind: Kind,
    },
    /// The entry `name` of `parent` and its node go away.
    Remove { parent: u64, name: String },
    /// An entry moves (replacing what was at the target).
    Rename {
        from_parent: u64,
        from_name: String,
        to_parent: u64,
        to_name: String,
    },
    /// A file's new size and the blocks that changed: its block list is first cut to
    /// `low_water` blocks (the fewest it had since the last commit), then grown with holes to
    /// fit `size`, then `updates` (block index, new place and CRC) are applied.
    FileState {
        inode: u64,
        size: u64,
        low_water: u64,
        updates: Vec<(u64, BlockRef)>,
    },
}

const CREATE: u8 = 1;
const REMOVE: u8 = 2;
const RENAME: u8 = 3;
const FILE_STATE: u8 = 4;

/// The payload of a record holding `ops`.
pub(crate) fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Encoder::new();
    for op in ops {
        match op {
            Op::Create {
                parent,
                name,
                inode,
                kind,
            } => {
                out.u8(CREATE);
                out.u64(*parent);
                out.name(name);
                out.u64(*inode);
                out.u8(*kind as u8);
            }
            Op::Remove { parent, name } => {
                out.u8(REMOVE);
                out.u64(*parent);
                out.name(name);
            }
            Op::Rename {
                from_parent,
                from_name,
                to_parent,
                to_name,
            } => {
                out.u8(RENAME);
                out.u64(*from_parent);
                out.name(from_name);
                out.u64(*to_parent);
                out.name(to_name);
            }
            Op::FileState {
                inode,
                size,
                low_water,
                updates,
            } => {
                out.u8(FILE_STATE);
                out.u64(*inode);
                out.u64(*size);
                out.u64(*low_water);
                out.u64(updates.len() as u64);
                for (index, block) in updates {
                    out.u64(*index);
                    out.u32(block.disk);
                    out.u32(block.crc);
                }
            }
        }
    }
    out.bytes
}

/// The `Op`s in a record's payload.
pub(crate) fn decode_ops(payload: &[u8]) -> Result<Vec<Op>, Malformed> {
    let mut input = Decoder::new(payload);
    let mut ops = Vec::new();
    while !input.is_empty() {
        let op = match input.u8()? {
            CREATE => Op::Create {
                parent: input.u64()?,
                name: input.name()?,
                inode: input.u64()?,
                kind: Kind::from_code(input.u8()?)?,
            },
            REMOVE => Op::Remove {
                parent: input.u64()?,
                name: input.name()?,
            },
            RENAME => Op::Rename {
                from_parent: input.u64()?,
                from_name: input.name()?,
                to_parent: input.u64()?,
                to_name: input.name()?,
            },
            FILE_STATE => {
                let inode = input.u64()?;
                let size = input.u64()?;
                let low_water = input.u64()?;
                let count = input.u64()?;
                if count > input.remaining() as u64 / 16 {
                    return Err(Malformed);
                }
                let mut updates = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    let index = input.u64()?;
                    let disk = input.u32()?;
                    let crc = input.u32()?;
                    updates.push((index, BlockRef { disk, crc }));
                }
                Op::FileState {
                    inode,
                    size,
                    low_water,
                    updates,
                }
            }
            _ => return Err(Malformed),
        };
        ops.push(op);
    }
    Ok(ops)
}

/// Applies one replayed `op` to `tree`; `max_blocks` bounds a file's block count (the
/// volume's size), so a damaged size cannot make the replay allocate without bound.
pub(crate) fn apply(tree: &mut Tree, op: Op, max_blocks: u64) -> Result<(), Malformed> {
    match op {
        Op::Create {
            parent,
            name,
            inode,
            kind,
        } => tree
            .create(parent, &name, inode, kind)
            .map_err(|_| Malformed),
        Op::Remove { parent, name } => tree.remove(parent, &name).map(drop).map_err(|_| Malformed),
        Op::Rename {
            from_parent,
            from_name,
            to_parent,
            to_name,
        } => tree
            .rename(from_parent, &from_name, to_parent, &to_name)
            .map(drop)
            .map_err(|_| Malformed),
        Op::FileState {
            inode,
            size,
            low_water,
            updates,
        } => {
            let count = size.div_ceil(super::device::BLOCK_BYTES as u64);
            if count > max_blocks {
                return Err(Malformed);
            }
            let held = tree.file(inode).map_err(|_| Malformed)?.blocks.len() as u64;
            tree.set_block_count(inode, low_water.min(held))
                .map_err(|_| Malformed)?;
            tree.set_block_count(inode, count).map_err(|_| Malformed)?;
            let file = tree.file_mut(inode).map_err(|_| Malformed)?;
            for (index, block) in updates {
                *file.blocks.get_mut(index as usize).ok_or(Malformed)? = block;
            }
            file.size = size;
            Ok(())
        }
    }
}
