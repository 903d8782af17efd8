//! The volume's metadata, all in memory: inodes (files with their block maps and sizes,
//! directories with their entries), the namespace operations that change them (shared by the
//! live volume and the journal replay, so both do exactly the same thing), and the checkpoint
//! image they are saved as.

use super::device::BLOCK_BYTES;
use super::error::FsError;
use super::layout::{Decoder, Encoder, Malformed};
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

/// The root directory's inode number.
pub(crate) const ROOT: u64 = 1;

/// Where one block of a file lies and its CRC-32C; `disk` 0 is a hole (reads as zeros:
/// block 0 is a superblock, never data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockRef {
    pub disk: u32,
    pub crc: u32,
}

impl BlockRef {
    pub const HOLE: BlockRef = BlockRef { disk: 0, crc: 0 };

    pub fn is_hole(&self) -> bool {
        self.disk == 0
    }
}

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File = 1,
    Dir = 2,
}

impl Kind {
    pub fn from_code(code: u8) -> Result<Kind, Malformed> {
        match code {
            1 => Ok(Kind::File),
            2 => Ok(Kind::Dir),
            _ => Err(Malformed),
        }
    }
}

/// A file: its size and one [`BlockRef`] per 4 KiB of it (`blocks.len()` is always
/// `size.div_ceil(4096)`; bytes past `size` in the last block are zero).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FileNode {
    pub size: u64,
    pub blocks: Vec<BlockRef>,
}

/// A directory: its entries by name, and its parent (the root is its own parent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DirNode {
    pub parent: u64,
    pub entries: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    File(FileNode),
    Dir(DirNode),
}

impl Node {
    pub fn kind(&self) -> Kind {
        match self {
            Node::File(_) => Kind::File,
            Node::Dir(_) => Kind::Dir,
        }
    }

    /// Bytes this node takes in a checkpoint.
    fn image_bytes(&self) -> u64 {
        match self {
            Node::File(file) => 25 + 8 * file.blocks.len() as u64,
            Node::Dir(dir) => {
                13 + dir
                    .entries
                    .keys()
                    .map(|name| entry_bytes(name))
                    .sum::<u64>()
            }
        }
    }
}

/// Bytes a directory entry named `name` takes in a checkpoint.
fn entry_bytes(name: &str) -> u64 {
    10 + name.len() as u64
}

/// Bytes of the checkpoint header (next inode number, node count).
const IMAGE_HEADER_BYTES: u64 = 16;

/// All the metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    nodes: BTreeMap<u64, Node>,
    /// Inode numbers are never reused, so a journal record can never mean an older file.
    next_inode: u64,
    /// What [`Tree::encode`] would produce, in bytes; kept up to date so the volume can keep
    /// room for the next checkpoint without walking everything.
    image_bytes: u64,
}

impl Tree {
    /// A tree holding only the empty root directory.
    pub fn new() -> Tree {
        let root = Node::Dir(DirNode {
            parent: ROOT,
            entries: BTreeMap::new(),
        });
        let image_bytes = IMAGE_HEADER_BYTES + root.image_bytes();
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, root);
        Tree {
            nodes,
            next_inode: ROOT + 1,
            image_bytes,
        }
    }

    pub fn image_bytes(&self) -> u64 {
        self.image_bytes
    }

    pub fn node(&self, inode: u64) -> Result<&Node, FsError> {
        self.nodes.get(&inode).ok_or(FsError::NotFound)
    }

    pub fn nodes(&self) -> impl Iterator<Item = (&u64, &Node)> {
        self.nodes.iter()
    }

    pub fn file(&self, inode: u64) -> Result<&FileNode, FsError> {
        match self.nodes.get(&inode) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(FsError::IsADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// The file, to change its size or its blocks' places; changing how many blocks it has
    /// goes through [`Tree::set_block_count`] instead.
    pub fn file_mut(&mut self, inode: u64) -> Result<&mut FileNode, FsError> {
        match self.nodes.get_mut(&inode) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(FsError::IsADirectory),
            None => Err(FsError::NotFound),
        }
    }

    pub fn dir(&self, inode: u64) -> Result<&DirNode, FsError> {
        match self.nodes.get(&inode) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    fn dir_mut(&mut self, inode: u64) -> Result<&mut DirNode, FsError> {
        match self.nodes.get_mut(&inode) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(FsError::NotADirectory),
            None => Err(FsError::NotFound),
        }
    }

    /// A fresh inode number.
    pub fn allocate_inode(&mut self) -> u64 {
        let inode = self.next_inode;
        self.next_inode += 1;
        inode
    }

    /// The inode at the end of `components` from the root.
    pub fn lookup(&self, components: &[&str]) -> Result<u64, FsError> {
        let mut inode = ROOT;
        for name in components {
            inode = *self
                .dir(inode)?
                .entries
                .get(*name)
                .ok_or(FsError::NotFound)?;
        }
        Ok(inode)
    }

    /// The directory holding the last of `components`, and that last name; `InvalidInput`
    /// for the root itself.
    pub fn parent_of<'p>(&self, components: &[&'p str]) -> Result<(u64, &'p str), FsError> {
        let (name, parents) = components.split_last().ok_or(FsError::InvalidInput)?;
        let parent = self.lookup(parents)?;
        self.dir(parent)?;
        Ok((parent, name))
    }

    /// Makes an empty file or directory `inode` named `name` in `parent`.
    pub fn create(
        &mut self,
        parent: u64,
        name: &str,
        inode: u64,
        kind: Kind,
    ) -> Result<(), FsError> {
        if self.nodes.contains_key(&inode) {
            return Err(FsError::InvalidInput);
        }
        let dir = self.dir_mut(parent)?;
        if dir.entries.contains_key(name) {
            return Err(FsError::AlreadyExists);
        }
        dir.entries.insert(String::from(name), inode);
        let node = match kind {
            Kind::File => Node::File(FileNode::default()),
            Kind::Dir => Node::Dir(DirNode {
                parent,
                entries: BTreeMap::new(),
            }),
        };
        self.image_bytes += entry_bytes(name) + node.image_bytes();
        self.nodes.insert(inode, node);
        self.next_inode = self.next_inode.max(inode + 1);
        Ok(())
    }

    /// Removes the entry `name` of `parent` and its node (a directory must be empty);
    /// returns the node so its blocks can be freed.
    pub fn remove(&mut self, parent: u64, name: &str) -> Result<Node, FsError> {
        let inode = *self
            .dir(parent)?
            .entries
            .get(name)
            .ok_or(FsError::NotFound)?;
        if let Node::Dir(dir) = self.node(inode)?
            && !dir.entries.is_empty()
        {
            return Err(FsError::DirectoryNotEmpty);
        }
        self.dir_mut(parent)?.entries.remove(name);
        let node = self.nodes.remove(&inode).ok_or(FsError::NotFound)?;
        self.image_bytes -= entry_bytes(name) + node.image_bytes();
        Ok(node)
    }

    /// Moves `from_name` of `from_parent` to `to_name` of `to_parent`, replacing a file there
    /// (or an empty directory, when a directory moves); returns the replaced node.
    pub fn rename(
        &mut self,
        from_parent: u64,
        from_name: &str,
        to_parent: u64,
        to_name: &str,
    ) -> Result<Option<Node>, FsError> {
        let inode = *self
            .dir(from_parent)?
            .entries
            .get(from_name)
            .ok_or(FsError::NotFound)?;
        let target = self.dir(to_parent)?.entries.get(to_name).copied();
        if target == Some(inode) {
            return Ok(None);
        }
        let moving_dir = matches!(self.node(inode)?, Node::Dir(_));
        if moving_dir {
            // A directory may not move into itself or below itself.
            let mut ancestor = to_parent;
            loop {
                if ancestor == inode {
                    return Err(FsError::InvalidInput);
                }
                if ancestor == ROOT {
                    break;
                }
                ancestor = self.dir(ancestor)?.parent;
            }
        }
        let replaced = match target {
            None => None,
            Some(target) => {
                match (moving_dir, self.node(target)?) {
                    (true, Node::File(_)) => return Err(FsError::NotADirectory),
                    (false, Node::Dir(_)) => return Err(FsError::IsADirectory),
                    (true, Node::Dir(dir)) if !dir.entries.is_empty() => {
                        return Err(FsError::DirectoryNotEmpty);
                    }
                    _ => {}
                }
                Some(self.remove(to_parent, to_name)?)
            }
        };
        self.dir_mut(from_parent)?.entries.remove(from_name);
        self.dir_mut(to_parent)?
            .entries
            .insert(String::from(to_name), inode);
        self.image_bytes = self.image_bytes - entry_bytes(from_name) + entry_bytes(to_name);
        if let Some(Node::Dir(dir)) = self.nodes.get_mut(&inode) {
            dir.parent = to_parent;
        }
        Ok(replaced)
    }

    /// Gives file `inode` `count` blocks: new ones are holes; returns the dropped ones.
    pub fn set_block_count(&mut self, inode: u64, count: u64) -> Result<Vec<BlockRef>, FsError> {
        let file = self.file_mut(inode)?;
        let old = file.blocks.len() as u64;
        let dropped = if count < old {
            file.blocks.split_off(count as usize)
        } else {
            file.blocks.resize(count as usize, BlockRef::HOLE);
            Vec::new()
        };
        self.image_bytes = self.image_bytes + 8 * count - 8 * old;
        Ok(dropped)
    }

    /// The checkpoint image: next inode number, node count, then every node.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Encoder::new();
        out.bytes.reserve(self.image_bytes as usize);
        out.u64(self.next_inode);
        out.u64(self.nodes.len() as u64);
        for (inode, node) in &self.nodes {
            out.u64(*inode);
            out.u8(node.kind() as u8);
            match node {
                Node::File(file) => {
                    out.u64(file.size);
                    out.u64(file.blocks.len() as u64);
                    for block in &file.blocks {
                        out.u32(block.disk);
                        out.u32(block.crc);
                    }
                }
                Node::Dir(dir) => {
                    out.u32(dir.entries.len() as u32);
                    for (name, child) in &dir.entries {
                        out.name(name);
                        out.u64(*child);
                    }
                }
            }
        }
        debug_assert_eq!(out.bytes.len() as u64, self.image_bytes);
        out.bytes
    }

    /// The tree in a checkpoint image, checked to be a tree: a root directory, every other
    /// node named exactly once, every name leading to a node, every file's block count
    /// matching its size.
    pub fn decode(image: &[u8]) -> Result<Tree, Malformed> {
        let mut input = Decoder::new(image);
        let next_inode = input.u64()?;
        let count = input.u64()?;
        let mut nodes = BTreeMap::new();
        for _ in 0..count {
            let inode = input.u64()?;
            let node = match Kind::from_code(input.u8()?)? {
                Kind::File => {
                    let size = input.u64()?;
                    let blocks = input.u64()?;
                    if blocks != size.div_ceil(BLOCK_BYTES as u64)
                        || blocks > input.remaining() as u64 / 8
                    {
                        return Err(Malformed);
                    }
                    let mut refs = Vec::with_capacity(blocks as usize);
                    for _ in 0..blocks {
                        refs.push(BlockRef {
                            disk: input.u32()?,
                            crc: input.u32()?,
                        });
                    }
                    Node::File(FileNode { size, blocks: refs })
                }
                Kind::Dir => {
                    let entries = input.u32()?;
                    let mut map = BTreeMap::new();
                    for _ in 0..entries {
                        let name = input.name()?;
                        let child = input.u64()?;
                        if map.insert(name, child).is_some() {
                            return Err(Malformed);
                        }
                    }
                    Node::Dir(DirNode {
                        parent: ROOT,
                        entries: map,
                    })
                }
            };
            if inode == 0 || inode >= next_inode || nodes.insert(inode, node).is_some() {
                return Err(Malformed);
            }
        }
        if !input.is_empty() || !matches!(nodes.get(&ROOT), Some(Node::Dir(_))) {
            return Err(Malformed);
        }
        // Walk from the root: each node must be reached exactly once, and all of them.
        let mut parents: BTreeMap<u64, u64> = BTreeMap::new();
        let mut pending = alloc::vec![ROOT];
        while let Some(dir) = pending.pop() {
            if let Some(Node::Dir(node)) = nodes.get(&dir) {
                for child in node.entries.values() {
                    if *child == ROOT
                        || parents.insert(*child, dir).is_some()
                        || !nodes.contains_key(child)
                    {
                        return Err(Malformed);
                    }
                    pending.push(*child);
                }
            }
        }
        if parents.len() + 1 != nodes.len() {
            return Err(Malformed);
        }
        for (child, parent) in parents {
            if let Some(Node::Dir(dir)) = nodes.get_mut(&child) {
                dir.parent = parent;
            }
        }
        let image_bytes = IMAGE_HEADER_BYTES + nodes.values().map(Node::image_bytes).sum::<u64>();
        Ok(Tree {
            nodes,
            next_inode,
            image_bytes,
        })
    }
}
