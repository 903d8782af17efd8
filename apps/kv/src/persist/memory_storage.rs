//! An in-memory [`Storage`] for host tests that models what a power cut keeps: each file
//! remembers how much of it was synced, and [`MemoryStorage::power_cut`] returns the disk as a
//! restart would find it, with the unsynced tails dropped, kept, kept in part, or garbled.
//!
//! A test can also stop the disk after a given number of operations ([`MemoryStorage::
//! crash_after`]: later ones fail and change nothing, as if the machine had died there), fill
//! it ([`MemoryStorage::set_capacity`]), make syncs fail, and count what was done.

use super::storage::{Storage, StorageError};
use alloc::collections::BTreeMap;
use alloc::rc::Rc;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::cell::RefCell;

/// What a power cut does to the bytes appended since a file's last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerCut {
    /// They are lost.
    DropUnsynced,
    /// They all reached the disk.
    KeepUnsynced,
    /// Their first `n` bytes reached the disk.
    KeepPrefix(usize),
    /// They reached the disk, but their first 16 bytes (a frame header's worth) did not
    /// and read as garbage: blocks written out of order.
    GarbleStart,
}

/// Operations counted by a [`MemoryStorage`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageStats {
    pub appends: usize,
    pub syncs: usize,
    pub renames: usize,
    pub removes: usize,
}

impl StorageStats {
    /// Every operation that changes the disk.
    pub fn changes(&self) -> usize {
        self.appends + self.syncs + self.renames + self.removes
    }
}

#[derive(Debug, Clone, Default)]
struct MemoryFile {
    contents: Vec<u8>,
    synced_len: usize,
}

#[derive(Debug, Default)]
struct MemoryDisk {
    files: BTreeMap<String, MemoryFile>,
    stats: StorageStats,
    /// After this many changes, the disk is dead: changes fail and do nothing.
    crash_after: Option<usize>,
    /// The most bytes all files together may hold.
    capacity: Option<usize>,
    fail_syncs: bool,
}

/// A handle to an in-memory disk; clones share it, so a test keeps one to look inside.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    disk: Rc<RefCell<MemoryDisk>>,
}

fn crashed() -> StorageError {
    StorageError::Failed("the machine is down".to_string())
}

impl MemoryStorage {
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    pub fn stats(&self) -> StorageStats {
        self.disk.borrow().stats
    }

    /// Lets `changes` more changes happen, then fails every later one without effect.
    pub fn crash_after(&self, changes: usize) {
        let mut disk = self.disk.borrow_mut();
        disk.crash_after = Some(disk.stats.changes() + changes);
    }

    pub fn set_capacity(&self, bytes: Option<usize>) {
        self.disk.borrow_mut().capacity = bytes;
    }

    pub fn set_fail_syncs(&self, fail: bool) {
        self.disk.borrow_mut().fail_syncs = fail;
    }

    /// The disk a restart after a power cut now would find (a new, independent disk).
    pub fn power_cut(&self, cut: PowerCut) -> MemoryStorage {
        let disk = self.disk.borrow();
        let files = disk
            .files
            .iter()
            .map(|(name, file)| {
                let (synced, unsynced) = file.contents.split_at(file.synced_len);
                let mut contents = synced.to_vec();
                match cut {
                    PowerCut::DropUnsynced => {}
                    PowerCut::KeepUnsynced => contents.extend_from_slice(unsynced),
                    PowerCut::KeepPrefix(n) => {
                        contents.extend_from_slice(&unsynced[..n.min(unsynced.len())]);
                    }
                    PowerCut::GarbleStart => {
                        let garbled = unsynced.len().min(16);
                        contents.extend(core::iter::repeat_n(0xa5, garbled));
                        contents.extend_from_slice(&unsynced[garbled..]);
                    }
                }
                let synced_len = contents.len();
                (
                    name.clone(),
                    MemoryFile {
                        contents,
                        synced_len,
                    },
                )
            })
            .collect();
        MemoryStorage {
            disk: Rc::new(RefCell::new(MemoryDisk {
                files,
                ..MemoryDisk::default()
            })),
        }
    }

    /// A file's current contents (synced or not), for tests that damage or inspect it.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        Some(self.disk.borrow().files.get(name)?.contents.clone())
    }

    /// Replaces a file's contents, all synced (a test planting damage).
    pub fn put(&self, name: &str, contents: Vec<u8>) {
        let synced_len = contents.len();
        self.disk.borrow_mut().files.insert(
            name.to_string(),
            MemoryFile {
                contents,
                synced_len,
            },
        );
    }

    pub fn names(&self) -> Vec<String> {
        self.disk.borrow().files.keys().cloned().collect()
    }
}

impl MemoryDisk {
    /// Counts a change, or refuses it if the machine is down.
    fn change(&mut self, count: impl FnOnce(&mut StorageStats)) -> Result<(), StorageError> {
        if self
            .crash_after
            .is_some_and(|limit| self.stats.changes() >= limit)
        {
            return Err(crashed());
        }
        count(&mut self.stats);
        Ok(())
    }

    fn used_bytes(&self) -> usize {
        self.files.values().map(|file| file.contents.len()).sum()
    }
}

impl Storage for MemoryStorage {
    fn list(&mut self) -> Result<Vec<String>, StorageError> {
        Ok(self.names())
    }

    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.contents(name))
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        if disk
            .capacity
            .is_some_and(|capacity| disk.used_bytes() + bytes.len() > capacity)
        {
            return Err(StorageError::Full);
        }
        disk.change(|stats| stats.appends += 1)?;
        let file = disk.files.entry(name.to_string()).or_default();
        file.contents.extend_from_slice(bytes);
        Ok(())
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        if disk.fail_syncs {
            return Err(StorageError::Failed("sync failed".to_string()));
        }
        disk.change(|stats| stats.syncs += 1)?;
        let file = disk
            .files
            .get_mut(name)
            .ok_or_else(|| StorageError::Failed("sync of a missing file".to_string()))?;
        file.synced_len = file.contents.len();
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        disk.change(|stats| stats.renames += 1)?;
        let file = disk
            .files
            .remove(from)
            .ok_or_else(|| StorageError::Failed("rename of a missing file".to_string()))?;
        disk.files.insert(to.to_string(), file);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        let mut disk = self.disk.borrow_mut();
        disk.change(|stats| stats.removes += 1)?;
        disk.files.remove(name);
        Ok(())
    }
}
