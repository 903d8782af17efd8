//! The storage seam: the few file operations persistence needs, so the log, the snapshots and
//! recovery run over libos's file system on the machine and over a power-cut model in host
//! tests.
//!
//! The contract every implementation keeps (and that the crash tests model):
//! - `append` adds bytes at a file's end, creating the file; they may be lost, in whole or in
//!   part (a torn tail, possibly with garbage where blocks were not written), until `sync`
//!   of that file returns `Ok`.
//! - `sync` makes everything appended to the file so far durable.
//! - `rename` replaces `to` with `from` atomically, and is durable when it returns (a crash
//!   leaves either the old `to` or the new one).
//! - `remove` need not be durable: persistence removes only files whose return after a crash
//!   recovery ignores (the temporary file, older generations).
//! - Any error leaves what was durable before the call durable.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Why a storage operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageError {
    /// The app has no disk (the "no durability" mode; see [`super::Durability`]).
    NoDisk,
    /// The disk or the app's quota is full.
    Full,
    /// The device failed, or the file system refused, with this description.
    Failed(String),
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageError::NoDisk => write!(f, "no disk"),
            StorageError::Full => write!(f, "disk full"),
            StorageError::Failed(what) => write!(f, "{what}"),
        }
    }
}

/// The files of one kv instance, in one flat namespace of short names.
pub trait Storage {
    /// The names of the files there are.
    fn list(&mut self) -> Result<Vec<String>, StorageError>;
    /// A file's whole contents, or `None` if it does not exist.
    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Appends `bytes` to `name`, creating it if needed; not durable until [`Storage::sync`].
    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// Makes every byte appended to `name` durable.
    fn sync(&mut self, name: &str) -> Result<(), StorageError>;
    /// Atomically replaces `to` with `from`; durable on return.
    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Removes `name` if it exists (see the module docs on durability).
    fn remove(&mut self, name: &str) -> Result<(), StorageError>;
}

/// The storage of an app without a disk: it has no values, so it can never be used. It gives
/// the in-memory server a type to name where a disk server names its storage.
#[derive(Debug)]
pub enum NoDisk {}

impl Storage for NoDisk {
    fn list(&mut self) -> Result<Vec<String>, StorageError> {
        match *self {}
    }

    fn read(&mut self, _name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match *self {}
    }

    fn append(&mut self, _name: &str, _bytes: &[u8]) -> Result<(), StorageError> {
        match *self {}
    }

    fn sync(&mut self, _name: &str) -> Result<(), StorageError> {
        match *self {}
    }

    fn rename(&mut self, _from: &str, _to: &str) -> Result<(), StorageError> {
        match *self {}
    }

    fn remove(&mut self, _name: &str) -> Result<(), StorageError> {
        match *self {}
    }
}
