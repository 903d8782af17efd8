//! The file system: one crash-safe volume per app, on the app's extent of the disk, with a
//! std-like API ([`File`], [`OpenOptions`], [`read_dir`], [`rename`], ...).
//!
//! On the machine the volume lives in the app's context, mounted on first use from the disk
//! extent kernel-lite grants the app (formatted when the extent is blank, refused when it
//! holds anything else), and the free functions and `File::open`/`create` act on it. The
//! [`Volume`] type offers every operation as a method too, over any [`BlockDevice`], which is
//! how the host tests (and tools) use it.
//!
//! Durability: `File::sync_all`/`sync_data`, [`rename`] and [`sync`] commit everything done
//! so far on the volume (all files, all namespace changes) as one atomic step with one device
//! flush; when they return it survives a power cut at any instant. What was not committed may
//! be lost in a cut, but never damages what was. The design is in `volume.rs`; the on-disk
//! format in `layout.rs` and in the README ("On-disk format (libos::fs)").
//!
//! Paths are '/'-separated and relative to the app's root (a leading '/' is allowed); names
//! are 1 to 255 bytes, without NUL, and not `.` or `..`. An open [`File`] refers to its
//! inode: after its name is removed (or replaced by a rename) its operations fail with
//! `NotFound`.

mod alloc;
mod device;
mod error;
mod journal;
mod layout;
mod mount;
mod path;
mod tree;
mod volume;

#[cfg(test)]
mod tests;

pub use device::{BLOCK_BYTES, BlockDevice, DeviceError, RamDisk, SECTOR_BYTES};
pub use error::{FsError, MountError};
pub use path::{MAX_NAME_BYTES, NameError};
pub use volume::{SpaceUsage, VolumeStats};

use crate::io::{self, ErrorKind, Read, Seek, SeekFrom, Write};
use ::alloc::boxed::Box;
use ::alloc::string::String;
use ::alloc::sync::Arc;
use ::alloc::vec::Vec;
use spin::Mutex;
use tree::{Kind, Node};
use volume::VolumeState;

/// A mounted volume: a cheap handle (clones share it); every operation locks it for its
/// duration.
#[derive(Clone)]
pub struct Volume {
    state: Arc<Mutex<VolumeState>>,
}

impl core::fmt::Debug for Volume {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Volume")
            .field("space", &self.space())
            .finish()
    }
}

fn components(path: &str) -> Result<Vec<&str>, FsError> {
    Ok(path::components(path)?)
}

impl Volume {
    /// Mounts the volume on `device`; a blank device is formatted first.
    pub fn mount(device: impl BlockDevice + Send + 'static) -> Result<Volume, MountError> {
        Volume::mount_boxed(Box::new(device))
    }

    /// [`Volume::mount`] for a boxed device.
    pub fn mount_boxed(device: Box<dyn BlockDevice + Send>) -> Result<Volume, MountError> {
        Ok(Volume::from_state(VolumeState::mount(device)?))
    }

    /// Makes a new, empty volume on `device`, whatever it held.
    pub fn format(device: impl BlockDevice + Send + 'static) -> Result<Volume, MountError> {
        Ok(Volume::from_state(VolumeState::format(Box::new(device))?))
    }

    fn from_state(state: VolumeState) -> Volume {
        Volume {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Opens the file at `path` to read.
    pub fn open(&self, path: &str) -> io::Result<File> {
        OpenOptions::new().read(true).open_on(self, path)
    }

    /// Opens the file at `path` to write, creating it or truncating it.
    pub fn create(&self, path: &str) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open_on(self, path)
    }

    /// Makes the file at `path` hold `contents` (not durable until the next commit).
    pub fn write(&self, path: &str, contents: impl AsRef<[u8]>) -> io::Result<()> {
        self.create(path)?.write_all(contents.as_ref())
    }

    /// The whole contents of the file at `path`.
    pub fn read(&self, path: &str) -> io::Result<Vec<u8>> {
        let mut file = self.open(path)?;
        // One buffer of the whole length, so neighbouring blocks are read in large requests.
        let mut contents = ::alloc::vec![0u8; file.metadata()?.len() as usize];
        let mut done = 0;
        while done < contents.len() {
            match file.read(&mut contents[done..])? {
                0 => break,
                n => done += n,
            }
        }
        contents.truncate(done);
        Ok(contents)
    }

    /// The whole contents of the file at `path`, as text; `InvalidData` when not UTF-8.
    pub fn read_to_string(&self, path: &str) -> io::Result<String> {
        String::from_utf8(self.read(path)?).map_err(|_| io::Error::new(ErrorKind::InvalidData))
    }

    /// Moves `from` to `to`, atomically replacing a file (or an empty directory, when a
    /// directory moves) there; commits everything, so it is durable when this returns.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (from, to) = (components(from)?, components(to)?);
        Ok(self.state.lock().rename(&from, &to)?)
    }

    /// Removes the file at `path`.
    pub fn remove_file(&self, path: &str) -> io::Result<()> {
        Ok(self
            .state
            .lock()
            .remove_node(&components(path)?, Kind::File)?)
    }

    /// Makes the directory `path`; its parent must exist.
    pub fn create_dir(&self, path: &str) -> io::Result<()> {
        self.state
            .lock()
            .create_node(&components(path)?, Kind::Dir)?;
        Ok(())
    }

    /// Makes the directory `path` and any missing parents.
    pub fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let components = components(path)?;
        let mut state = self.state.lock();
        for depth in 1..=components.len() {
            match state.tree.lookup(&components[..depth]) {
                Ok(inode) => {
                    if state.tree.dir(inode).is_err() {
                        return Err(FsError::NotADirectory.into());
                    }
                }
                Err(FsError::NotFound) => {
                    state.create_node(&components[..depth], Kind::Dir)?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    /// Removes the empty directory `path`.
    pub fn remove_dir(&self, path: &str) -> io::Result<()> {
        Ok(self
            .state
            .lock()
            .remove_node(&components(path)?, Kind::Dir)?)
    }

    /// The entries of the directory `path`, in name order (a snapshot).
    pub fn read_dir(&self, path: &str) -> io::Result<ReadDir> {
        let state = self.state.lock();
        let dir = state.tree.dir(state.tree.lookup(&components(path)?)?)?;
        let mut entries = Vec::with_capacity(dir.entries.len());
        for (name, inode) in &dir.entries {
            entries.push(DirEntry {
                name: name.clone(),
                metadata: metadata_of(state.tree.node(*inode)?),
            });
        }
        Ok(ReadDir {
            entries: entries.into_iter(),
        })
    }

    /// What is at `path`.
    pub fn metadata(&self, path: &str) -> io::Result<Metadata> {
        let state = self.state.lock();
        Ok(metadata_of(
            state.tree.node(state.tree.lookup(&components(path)?)?)?,
        ))
    }

    /// Whether something is at `path` (false on any error).
    pub fn exists(&self, path: &str) -> bool {
        self.try_exists(path).unwrap_or(false)
    }

    /// Whether something is at `path`; an error when the path is invalid or passes through
    /// a file.
    pub fn try_exists(&self, path: &str) -> io::Result<bool> {
        match self.metadata(path) {
            Ok(_) => Ok(true),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Commits everything done so far: durable when this returns.
    pub fn sync(&self) -> io::Result<()> {
        Ok(self.state.lock().commit()?)
    }

    /// Commits everything as a new checkpoint (and empties the journal).
    pub fn checkpoint(&self) -> io::Result<()> {
        Ok(self.state.lock().checkpoint()?)
    }

    /// Reads every block of every file and checks it against its checksum; the first
    /// damage found is named.
    pub fn verify(&self) -> Result<(), FsError> {
        let mut state = self.state.lock();
        let files: Vec<(u64, u64)> = state
            .tree
            .nodes()
            .filter_map(|(inode, node)| match node {
                Node::File(file) => Some((*inode, file.size)),
                Node::Dir(_) => None,
            })
            .collect();
        let mut buffer = ::alloc::vec![0u8; 64 * BLOCK_BYTES];
        for (inode, size) in files {
            let mut offset = 0;
            while offset < size {
                offset += state.read_at(inode, offset, &mut buffer)? as u64;
            }
        }
        Ok(())
    }

    /// Device counters.
    pub fn stats(&self) -> VolumeStats {
        self.state.lock().stats
    }

    /// Free and total space.
    pub fn space(&self) -> SpaceUsage {
        self.state.lock().space()
    }
}

fn metadata_of(node: &Node) -> Metadata {
    match node {
        Node::File(file) => Metadata {
            len: file.size,
            file_type: FileType { dir: false },
        },
        Node::Dir(_) => Metadata {
            len: 0,
            file_type: FileType { dir: true },
        },
    }
}

/// Whether a directory entry is a file or a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileType {
    dir: bool,
}

impl FileType {
    pub fn is_file(&self) -> bool {
        !self.dir
    }
    pub fn is_dir(&self) -> bool {
        self.dir
    }
}

/// What a path holds: its type and (for a file) its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metadata {
    len: u64,
    file_type: FileType,
}

impl Metadata {
    /// The file's length in bytes (0 for a directory).
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn is_file(&self) -> bool {
        self.file_type.is_file()
    }
    pub fn is_dir(&self) -> bool {
        self.file_type.is_dir()
    }
    pub fn file_type(&self) -> FileType {
        self.file_type
    }
}

/// One entry of a directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    name: String,
    metadata: Metadata,
}

impl DirEntry {
    /// The entry's name (its last path component).
    pub fn file_name(&self) -> String {
        self.name.clone()
    }
    /// What the entry was when the directory was read.
    pub fn metadata(&self) -> io::Result<Metadata> {
        Ok(self.metadata)
    }
    pub fn file_type(&self) -> io::Result<FileType> {
        Ok(self.metadata.file_type)
    }
}

/// A directory listing, from [`read_dir`].
#[derive(Debug)]
pub struct ReadDir {
    entries: ::alloc::vec::IntoIter<DirEntry>,
}

impl Iterator for ReadDir {
    type Item = io::Result<DirEntry>;

    fn next(&mut self) -> Option<io::Result<DirEntry>> {
        self.entries.next().map(Ok)
    }
}

/// How to open a file, like `std::fs::OpenOptions`.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    append: bool,
    truncate: bool,
    create: bool,
    create_new: bool,
}

impl OpenOptions {
    /// Nothing set: set at least one of read, write, append.
    pub fn new() -> OpenOptions {
        OpenOptions::default()
    }
    pub fn read(&mut self, read: bool) -> &mut OpenOptions {
        self.read = read;
        self
    }
    pub fn write(&mut self, write: bool) -> &mut OpenOptions {
        self.write = write;
        self
    }
    /// Every write goes to the end of the file (implies write).
    pub fn append(&mut self, append: bool) -> &mut OpenOptions {
        self.append = append;
        self
    }
    /// Cut the file to 0 bytes on open (needs write).
    pub fn truncate(&mut self, truncate: bool) -> &mut OpenOptions {
        self.truncate = truncate;
        self
    }
    /// Create the file if it is not there (needs write or append).
    pub fn create(&mut self, create: bool) -> &mut OpenOptions {
        self.create = create;
        self
    }
    /// Create the file, failing with `AlreadyExists` if it is there (needs write or append).
    pub fn create_new(&mut self, create_new: bool) -> &mut OpenOptions {
        self.create_new = create_new;
        self
    }

    /// Opens `path` on `volume` with these options.
    pub fn open_on(&self, volume: &Volume, path: &str) -> io::Result<File> {
        let writable = self.write || self.append;
        if !(self.read || writable)
            || (!writable && (self.truncate || self.create || self.create_new))
            || (self.append && self.truncate)
        {
            return Err(io::Error::new(ErrorKind::InvalidInput));
        }
        let components = components(path)?;
        let mut state = volume.state.lock();
        let inode = match state.tree.lookup(&components) {
            Ok(_) if self.create_new => return Err(FsError::AlreadyExists.into()),
            Ok(inode) => {
                state.tree.file(inode)?;
                if self.truncate {
                    state.set_len(inode, 0)?;
                }
                inode
            }
            Err(FsError::NotFound) if self.create || self.create_new => {
                state.create_node(&components, Kind::File)?
            }
            Err(error) => return Err(error.into()),
        };
        Ok(File {
            volume: volume.clone(),
            inode,
            path: String::from(path),
            position: 0,
            readable: self.read,
            writable,
            append: self.append,
        })
    }
}

/// An open file, like `std::fs::File`: reads and writes at its cursor; [`File::sync_all`]
/// makes everything written durable. Dropping it does not sync.
#[derive(Debug)]
pub struct File {
    volume: Volume,
    inode: u64,
    /// The path it was opened by, for error messages.
    path: String,
    position: u64,
    readable: bool,
    writable: bool,
    append: bool,
}

impl File {
    /// Options to open a file with.
    pub fn options() -> OpenOptions {
        OpenOptions::new()
    }

    /// Cuts or extends the file to `size` bytes (an extension reads as zeros); the cursor
    /// stays where it is.
    pub fn set_len(&self, size: u64) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::new(ErrorKind::InvalidInput));
        }
        Ok(self.volume.state.lock().set_len(self.inode, size)?)
    }

    /// Commits everything written (to this file and every other change on the volume):
    /// durable when this returns. One device flush.
    pub fn sync_all(&self) -> io::Result<()> {
        self.volume.state.lock().tree.file(self.inode)?;
        self.volume.sync()
    }

    /// The same as [`File::sync_all`]: data and metadata go in the same commit.
    pub fn sync_data(&self) -> io::Result<()> {
        self.sync_all()
    }

    /// The file's length and type.
    pub fn metadata(&self) -> io::Result<Metadata> {
        let state = self.volume.state.lock();
        Ok(metadata_of(state.tree.node(self.inode)?))
    }

    /// Reports `error`, naming the file when its data is damaged.
    fn report(&self, error: FsError) -> io::Error {
        if let FsError::DamagedData { .. } = error {
            log::error!("fs: file '{}': {error}", self.path);
            return io::Error::new(error.kind());
        }
        error.into()
    }
}

impl Read for File {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.readable {
            return Err(io::Error::new(ErrorKind::InvalidInput));
        }
        let read = self
            .volume
            .state
            .lock()
            .read_at(self.inode, self.position, buf);
        let n = read.map_err(|error| self.report(error))?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Write for File {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.writable {
            return Err(io::Error::new(ErrorKind::InvalidInput));
        }
        let mut state = self.volume.state.lock();
        if self.append {
            self.position = state.tree.file(self.inode)?.size;
        }
        let written = state.write_at(self.inode, self.position, buf);
        drop(state);
        let n = written.map_err(|error| self.report(error))?;
        self.position += n as u64;
        Ok(n)
    }

    /// Nothing to do: writes are in the volume's cache; [`File::sync_all`] makes them
    /// durable.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for File {
    fn seek(&mut self, position: SeekFrom) -> io::Result<u64> {
        let target = match position {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => {
                let size = self.volume.state.lock().tree.file(self.inode)?.size;
                size.checked_add_signed(delta)
            }
        };
        self.position = target.ok_or(io::Error::new(ErrorKind::InvalidInput))?;
        Ok(self.position)
    }
}

#[cfg(target_os = "none")]
mod machine {
    //! The running app's volume and the free functions that act on it.
    use super::*;

    /// The running app's volume, mounted on first use.
    pub fn volume() -> io::Result<&'static Volume> {
        crate::rt::current().fs()
    }

    impl File {
        /// Opens the file at `path` on the app's volume to read.
        pub fn open(path: &str) -> io::Result<File> {
            volume()?.open(path)
        }

        /// Opens the file at `path` on the app's volume to write, creating or truncating it.
        pub fn create(path: &str) -> io::Result<File> {
            volume()?.create(path)
        }
    }

    impl OpenOptions {
        /// Opens `path` on the app's volume with these options.
        pub fn open(&self, path: &str) -> io::Result<File> {
            self.open_on(volume()?, path)
        }
    }

    /// See [`Volume::write`].
    pub fn write(path: &str, contents: impl AsRef<[u8]>) -> io::Result<()> {
        volume()?.write(path, contents)
    }
    /// See [`Volume::read`].
    pub fn read(path: &str) -> io::Result<Vec<u8>> {
        volume()?.read(path)
    }
    /// See [`Volume::read_to_string`].
    pub fn read_to_string(path: &str) -> io::Result<String> {
        volume()?.read_to_string(path)
    }
    /// See [`Volume::rename`]: atomic, and durable on return.
    pub fn rename(from: &str, to: &str) -> io::Result<()> {
        volume()?.rename(from, to)
    }
    /// See [`Volume::remove_file`].
    pub fn remove_file(path: &str) -> io::Result<()> {
        volume()?.remove_file(path)
    }
    /// See [`Volume::create_dir`].
    pub fn create_dir(path: &str) -> io::Result<()> {
        volume()?.create_dir(path)
    }
    /// See [`Volume::create_dir_all`].
    pub fn create_dir_all(path: &str) -> io::Result<()> {
        volume()?.create_dir_all(path)
    }
    /// See [`Volume::remove_dir`].
    pub fn remove_dir(path: &str) -> io::Result<()> {
        volume()?.remove_dir(path)
    }
    /// See [`Volume::read_dir`].
    pub fn read_dir(path: &str) -> io::Result<ReadDir> {
        volume()?.read_dir(path)
    }
    /// See [`Volume::metadata`].
    pub fn metadata(path: &str) -> io::Result<Metadata> {
        volume()?.metadata(path)
    }
    /// See [`Volume::exists`].
    pub fn exists(path: &str) -> bool {
        volume().is_ok_and(|volume| volume.exists(path))
    }
    /// See [`Volume::try_exists`].
    pub fn try_exists(path: &str) -> io::Result<bool> {
        volume()?.try_exists(path)
    }
    /// See [`Volume::sync`]: commits everything, durable on return.
    pub fn sync() -> io::Result<()> {
        volume()?.sync()
    }
}

#[cfg(target_os = "none")]
pub use machine::*;
