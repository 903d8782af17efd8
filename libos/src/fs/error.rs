//! The file system's named errors: [`MountError`] (the volume cannot be used, and what in it
//! is damaged) and [`FsError`] (one operation failed), both mapped to [`crate::io::Error`] at
//! the std-like API.

use super::device::DeviceError;
use super::path::NameError;
use crate::io::{self, ErrorKind};
use core::fmt;

/// Why a volume cannot be mounted. Damage is named by the structure and block it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountError {
    /// The app has no disk extent.
    NoDisk,
    /// The device failed a transfer.
    Device(DeviceError),
    /// The extent is smaller than the smallest volume (64 blocks, 256 KiB).
    TooSmall { blocks: u64 },
    /// The extent is neither blank nor one of our volumes (foreign data, never reformatted).
    NotAVolume,
    /// Our magic is there, but no superblock slot passes its checksum.
    BadSuperblock,
    /// The volume was written by a format version this code does not read.
    UnsupportedVersion(u32),
    /// The volume was made for an extent of `recorded` blocks but the device has `device`
    /// (a truncated or resized extent).
    SizeMismatch { recorded: u64, device: u64 },
    /// The superblock's layout fields point outside the volume or overlap.
    BadGeometry,
    /// Block `block` of the checkpoint chain (entry `index`) is damaged or missing.
    BadCheckpoint { block: u64, index: u64 },
    /// The checkpoint's contents do not decode (a damaged or foreign metadata image).
    MalformedCheckpoint,
    /// The journal record `seq` at block `block` is damaged: it fails its checksum although a
    /// later record is intact, or its contents do not apply.
    BadJournal { seq: u64, block: u64 },
    /// A file claims block `block`, which lies outside the data area or is claimed twice.
    BadBlockReference { block: u64 },
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::NoDisk => f.write_str("the app has no disk"),
            MountError::Device(error) => write!(f, "disk error: {error}"),
            MountError::TooSmall { blocks } => {
                write!(
                    f,
                    "the disk extent ({blocks} blocks) is too small for a volume"
                )
            }
            MountError::NotAVolume => {
                f.write_str("the disk extent holds something that is not a libos volume")
            }
            MountError::BadSuperblock => f.write_str("both superblocks are damaged"),
            MountError::UnsupportedVersion(version) => {
                write!(f, "volume format version {version} is not supported")
            }
            MountError::SizeMismatch { recorded, device } => write!(
                f,
                "the volume was made for {recorded} blocks but the extent has {device}"
            ),
            MountError::BadGeometry => f.write_str("the superblock's layout is impossible"),
            MountError::BadCheckpoint { block, index } => {
                write!(
                    f,
                    "checkpoint block {index} (disk block {block}) is damaged"
                )
            }
            MountError::MalformedCheckpoint => {
                f.write_str("the checkpoint's contents are malformed")
            }
            MountError::BadJournal { seq, block } => {
                write!(f, "journal record {seq} at block {block} is damaged")
            }
            MountError::BadBlockReference { block } => {
                write!(
                    f,
                    "a file claims block {block}, outside the data area or twice"
                )
            }
        }
    }
}

impl From<DeviceError> for MountError {
    fn from(error: DeviceError) -> MountError {
        MountError::Device(error)
    }
}

impl From<MountError> for io::Error {
    fn from(error: MountError) -> io::Error {
        io::Error::new(match error {
            MountError::NoDisk => ErrorKind::Unsupported,
            MountError::Device(_) => ErrorKind::Other,
            MountError::TooSmall { .. } => ErrorKind::StorageFull,
            _ => ErrorKind::InvalidData,
        })
    }
}

/// Why one file system operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    AlreadyExists,
    NotADirectory,
    IsADirectory,
    DirectoryNotEmpty,
    /// The extent has no room for the data (or the metadata) asked for.
    StorageFull,
    /// A path component is not a valid name.
    InvalidName(NameError),
    /// The operation makes no sense (removing the root, moving a directory into itself).
    InvalidInput,
    /// A file would grow past the volume's size.
    FileTooLarge,
    /// Block `file_block` of file (inode) `inode`, at disk block `disk_block`, fails its
    /// checksum: the data is damaged and is not returned.
    DamagedData {
        inode: u64,
        file_block: u64,
        disk_block: u64,
    },
    /// The device failed a transfer.
    Device(DeviceError),
    /// An earlier device failure in a commit stopped the volume; remount to go on.
    Stopped,
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => f.write_str("no such file or directory"),
            FsError::AlreadyExists => f.write_str("already exists"),
            FsError::NotADirectory => f.write_str("not a directory"),
            FsError::IsADirectory => f.write_str("is a directory"),
            FsError::DirectoryNotEmpty => f.write_str("directory not empty"),
            FsError::StorageFull => f.write_str("no room left on the volume"),
            FsError::InvalidName(error) => write!(f, "invalid name: {error}"),
            FsError::InvalidInput => f.write_str("invalid input"),
            FsError::FileTooLarge => f.write_str("file too large for the volume"),
            FsError::DamagedData {
                inode,
                file_block,
                disk_block,
            } => write!(
                f,
                "block {file_block} of file #{inode} (disk block {disk_block}) fails its checksum"
            ),
            FsError::Device(error) => write!(f, "disk error: {error}"),
            FsError::Stopped => f.write_str("the volume stopped after a disk error"),
        }
    }
}

impl From<DeviceError> for FsError {
    fn from(error: DeviceError) -> FsError {
        FsError::Device(error)
    }
}

impl From<NameError> for FsError {
    fn from(error: NameError) -> FsError {
        FsError::InvalidName(error)
    }
}

impl FsError {
    /// The std kind this error is reported as.
    pub fn kind(&self) -> ErrorKind {
        match self {
            FsError::NotFound => ErrorKind::NotFound,
            FsError::AlreadyExists => ErrorKind::AlreadyExists,
            FsError::NotADirectory => ErrorKind::NotADirectory,
            FsError::IsADirectory => ErrorKind::IsADirectory,
            FsError::DirectoryNotEmpty => ErrorKind::DirectoryNotEmpty,
            FsError::StorageFull => ErrorKind::StorageFull,
            FsError::InvalidName(_) => ErrorKind::InvalidFilename,
            FsError::InvalidInput => ErrorKind::InvalidInput,
            FsError::FileTooLarge => ErrorKind::FileTooLarge,
            FsError::DamagedData { .. } => ErrorKind::InvalidData,
            FsError::Device(_) | FsError::Stopped => ErrorKind::Other,
        }
    }
}

impl From<FsError> for io::Error {
    fn from(error: FsError) -> io::Error {
        if matches!(error, FsError::DamagedData { .. } | FsError::Device(_)) {
            log::error!("fs: {error}");
        }
        io::Error::new(error.kind())
    }
}
