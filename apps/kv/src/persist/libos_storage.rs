//! [`Storage`] over libos's file system (std's names: `libos::fs`), and the wall clock the
//! engine's absolute deadlines need.
//!
//! The files live in the app's root directory, all named `kv-*`.
//!
//! libos's file calls block until the device is done. `File::sync_all` and `fs::rename`
//! commit everything done on the volume so far and are durable on return, which is what the
//! [`Storage`] contract asks. An app without a disk gets `Unsupported` from the volume.

use super::storage::{Storage, StorageError};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use libos::fs::{File, OpenOptions};
use libos::io::{ErrorKind, Write};

/// The directory the files are in.
const DIRECTORY: &str = "/";

fn path(name: &str) -> String {
    format!("{DIRECTORY}{name}")
}

fn storage_error(error: libos::io::Error) -> StorageError {
    match error.kind() {
        ErrorKind::StorageFull => StorageError::Full,
        kind => StorageError::Failed(format!("{kind:?}")),
    }
}

/// The kv files of the app's file system. Keeps the file last appended to open, since every
/// batch is an append and a sync of the same log.
pub struct LibosStorage {
    open_file: Option<(String, File)>,
}

impl LibosStorage {
    /// Opens the app's file system; `Err(StorageError::NoDisk)` if the app has none.
    pub fn open() -> Result<LibosStorage, StorageError> {
        match libos::fs::read_dir(DIRECTORY) {
            Ok(_) => Ok(LibosStorage { open_file: None }),
            Err(error) if error.kind() == ErrorKind::Unsupported => Err(StorageError::NoDisk),
            Err(error) => Err(storage_error(error)),
        }
    }

    fn file(&mut self, name: &str) -> Result<&mut File, StorageError> {
        if self.open_file.as_ref().is_none_or(|(open, _)| open != name) {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(&path(name))
                .map_err(storage_error)?;
            self.open_file = Some((String::from(name), file));
        }
        match &mut self.open_file {
            Some((_, file)) => Ok(file),
            None => Err(StorageError::Failed(String::from("no open file"))),
        }
    }

    /// Closes `name` if it is the open file (before it is renamed or removed).
    fn forget(&mut self, name: &str) {
        if self
            .open_file
            .as_ref()
            .is_some_and(|(open, _)| open == name)
        {
            self.open_file = None;
        }
    }
}

impl Storage for LibosStorage {
    fn list(&mut self) -> Result<Vec<String>, StorageError> {
        let mut names = Vec::new();
        for entry in libos::fs::read_dir(DIRECTORY).map_err(storage_error)? {
            let name = entry.map_err(storage_error)?.file_name();
            if name.starts_with("kv-") {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read(&mut self, name: &str) -> Result<Option<Vec<u8>>, StorageError> {
        match libos::fs::read(&path(name)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(storage_error(error)),
        }
    }

    fn append(&mut self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        self.file(name)?.write_all(bytes).map_err(storage_error)
    }

    fn sync(&mut self, name: &str) -> Result<(), StorageError> {
        self.file(name)?.sync_all().map_err(storage_error)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), StorageError> {
        self.forget(from);
        self.forget(to);
        libos::fs::rename(&path(from), &path(to)).map_err(storage_error)
    }

    fn remove(&mut self, name: &str) -> Result<(), StorageError> {
        self.forget(name);
        match libos::fs::remove_file(&path(name)) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(()),
            Err(error) => Err(storage_error(error)),
        }
    }
}

/// Unix milliseconds now: the engine's clock.
pub fn unix_time_ms() -> u64 {
    libos::time::SystemTime::now()
        .duration_since(libos::time::UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}
