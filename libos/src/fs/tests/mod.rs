//! Host tests of the file system, and what they share: a sparse RAM disk that clones cheaply
//! (for crash states), a model of the namespace and contents, workload operations applied to
//! both, and a snapshot of everything a volume holds.

mod api;
mod crash;
mod damage;
mod model;

use super::*;
use ::alloc::collections::BTreeMap;
use std::sync::{Arc as StdArc, Mutex as StdMutex};

/// A disk that holds only the blocks written (the rest read as zeros), shared by clones of
/// its handle, so a test can remount what a volume left or change it.
#[derive(Clone)]
pub(super) struct SparseDisk {
    pub blocks: StdArc<StdMutex<BTreeMap<u64, StdArc<Vec<u8>>>>>,
    pub block_count: u64,
}

impl SparseDisk {
    pub fn new(block_count: u64) -> SparseDisk {
        SparseDisk::from_blocks(BTreeMap::new(), block_count)
    }

    pub fn from_blocks(blocks: BTreeMap<u64, StdArc<Vec<u8>>>, block_count: u64) -> SparseDisk {
        SparseDisk {
            blocks: StdArc::new(StdMutex::new(blocks)),
            block_count,
        }
    }

    /// An independent copy.
    pub fn fork(&self) -> SparseDisk {
        SparseDisk::from_blocks(self.blocks.lock().unwrap().clone(), self.block_count)
    }
}

impl BlockDevice for SparseDisk {
    fn block_count(&self) -> u64 {
        self.block_count
    }

    fn read(&mut self, first: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        device::check_range(self.block_count, first, buf.len())?;
        let blocks = self.blocks.lock().unwrap();
        for (i, chunk) in buf.chunks_mut(BLOCK_BYTES).enumerate() {
            match blocks.get(&(first + i as u64)) {
                Some(data) => chunk.copy_from_slice(data),
                None => chunk.fill(0),
            }
        }
        Ok(())
    }

    fn write(&mut self, first: u64, data: &[u8]) -> Result<(), DeviceError> {
        device::check_range(self.block_count, first, data.len())?;
        let mut blocks = self.blocks.lock().unwrap();
        for (i, chunk) in data.chunks(BLOCK_BYTES).enumerate() {
            blocks.insert(first + i as u64, StdArc::new(chunk.to_vec()));
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }
}

/// What a path holds in the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Entry {
    File(Vec<u8>),
    Dir,
}

/// Everything a volume holds: every path, with its contents (files) or `Dir`.
pub(super) type Snapshot = BTreeMap<String, Entry>;

/// Reads everything on `volume`; panics on any error (damage included).
pub(super) fn snapshot(volume: &Volume) -> Snapshot {
    try_snapshot(volume).expect("reading the volume")
}

/// Reads everything on `volume`.
pub(super) fn try_snapshot(volume: &Volume) -> io::Result<Snapshot> {
    let mut out = Snapshot::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        for entry in volume.read_dir(&dir)? {
            let entry = entry?;
            let path = if dir.is_empty() {
                entry.file_name()
            } else {
                format!("{dir}/{}", entry.file_name())
            };
            if entry.file_type()?.is_dir() {
                out.insert(path.clone(), Entry::Dir);
                pending.push(path);
            } else {
                let contents = volume.read(&path)?;
                assert_eq!(contents.len() as u64, entry.metadata()?.len());
                out.insert(path, Entry::File(contents));
            }
        }
    }
    Ok(out)
}

/// One step of a workload.
#[derive(Debug, Clone)]
pub(super) enum Step {
    /// Writes `len` bytes made from `seed` at `offset` (creating the file).
    Write {
        path: &'static str,
        offset: u64,
        len: usize,
        seed: u8,
    },
    /// Appends `len` bytes made from `seed` (creating the file).
    Append {
        path: &'static str,
        len: usize,
        seed: u8,
    },
    SetLen {
        path: &'static str,
        len: u64,
    },
    Remove {
        path: &'static str,
    },
    CreateDir {
        path: &'static str,
    },
    RemoveDir {
        path: &'static str,
    },
    Rename {
        from: &'static str,
        to: &'static str,
    },
    /// Opens the file and calls `sync_all`.
    SyncFile {
        path: &'static str,
    },
    Sync,
    Checkpoint,
}

impl Step {
    /// Whether the step commits (everything is durable when it returns successfully).
    pub fn commits(&self) -> bool {
        matches!(
            self,
            Step::Rename { .. } | Step::SyncFile { .. } | Step::Sync | Step::Checkpoint
        )
    }
}

/// Bytes of a write: a pattern that differs by seed and by position.
pub(super) fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed).rotate_left(3) ^ (i >> 8) as u8)
        .collect()
}

/// Runs `step` on `volume`.
pub(super) fn run_step(volume: &Volume, step: &Step) -> Result<(), ErrorKind> {
    let result: io::Result<()> = (|| match step {
        Step::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let mut file = OpenOptions::new()
                .write(true)
                .create(true)
                .open_on(volume, path)?;
            file.seek(SeekFrom::Start(*offset))?;
            file.write_all(&pattern(*len, *seed))
        }
        Step::Append { path, len, seed } => {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open_on(volume, path)?;
            file.write_all(&pattern(*len, *seed))
        }
        Step::SetLen { path, len } => OpenOptions::new()
            .write(true)
            .open_on(volume, path)?
            .set_len(*len),
        Step::Remove { path } => volume.remove_file(path),
        Step::CreateDir { path } => volume.create_dir(path),
        Step::RemoveDir { path } => volume.remove_dir(path),
        Step::Rename { from, to } => volume.rename(from, to),
        Step::SyncFile { path } => volume.open(path)?.sync_all(),
        Step::Sync => volume.sync(),
        Step::Checkpoint => volume.checkpoint(),
    })();
    result.map_err(|error| error.kind())
}

/// The parent of `path` ("" for the root).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// Checks that every directory above `path` exists in `model`.
fn check_parents(model: &Snapshot, path: &str) -> Result<(), ErrorKind> {
    let mut prefix = String::new();
    for name in path.split('/').collect::<Vec<_>>().split_last().unwrap().1 {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(name);
        match model.get(&prefix) {
            None => return Err(ErrorKind::NotFound),
            Some(Entry::File(_)) => return Err(ErrorKind::NotADirectory),
            Some(Entry::Dir) => {}
        }
    }
    Ok(())
}

fn has_children(model: &Snapshot, path: &str) -> bool {
    model.keys().any(|key| parent(key) == path)
}

/// Runs `step` on the model, predicting the volume's result.
pub(super) fn model_step(model: &mut Snapshot, step: &Step) -> Result<(), ErrorKind> {
    match step {
        Step::Write {
            path,
            offset,
            len,
            seed,
        } => {
            let file = model_file(model, path, true)?;
            let end = *offset as usize + len;
            if file.len() < end {
                file.resize(end, 0);
            }
            file[*offset as usize..end].copy_from_slice(&pattern(*len, *seed));
            Ok(())
        }
        Step::Append { path, len, seed } => {
            model_file(model, path, true)?.extend_from_slice(&pattern(*len, *seed));
            Ok(())
        }
        Step::SetLen { path, len } => {
            model_file(model, path, false)?.resize(*len as usize, 0);
            Ok(())
        }
        Step::Remove { path } => {
            check_parents(model, path)?;
            match model.get(*path) {
                None => Err(ErrorKind::NotFound),
                Some(Entry::Dir) => Err(ErrorKind::IsADirectory),
                Some(Entry::File(_)) => {
                    model.remove(*path);
                    Ok(())
                }
            }
        }
        Step::CreateDir { path } => {
            check_parents(model, path)?;
            if model.contains_key(*path) {
                return Err(ErrorKind::AlreadyExists);
            }
            model.insert(path.to_string(), Entry::Dir);
            Ok(())
        }
        Step::RemoveDir { path } => {
            check_parents(model, path)?;
            match model.get(*path) {
                None => Err(ErrorKind::NotFound),
                Some(Entry::File(_)) => Err(ErrorKind::NotADirectory),
                Some(Entry::Dir) if has_children(model, path) => Err(ErrorKind::DirectoryNotEmpty),
                Some(Entry::Dir) => {
                    model.remove(*path);
                    Ok(())
                }
            }
        }
        Step::Rename { from, to } => {
            check_parents(model, from)?;
            check_parents(model, to)?;
            let source = model.get(*from).cloned().ok_or(ErrorKind::NotFound)?;
            if from == to {
                return Ok(());
            }
            let moving_dir = source == Entry::Dir;
            if moving_dir && to.starts_with(&format!("{from}/")) {
                return Err(ErrorKind::InvalidInput);
            }
            match (moving_dir, model.get(*to)) {
                (true, Some(Entry::File(_))) => return Err(ErrorKind::NotADirectory),
                (false, Some(Entry::Dir)) => return Err(ErrorKind::IsADirectory),
                (true, Some(Entry::Dir)) if has_children(model, to) => {
                    return Err(ErrorKind::DirectoryNotEmpty);
                }
                _ => {}
            }
            let moved: Vec<(String, Entry)> = model
                .iter()
                .filter(|(key, _)| *key == from || key.starts_with(&format!("{from}/")))
                .map(|(key, entry)| (key.clone(), entry.clone()))
                .collect();
            model.remove(*to);
            for (key, entry) in moved {
                model.remove(&key);
                model.insert(format!("{to}{}", &key[from.len()..]), entry);
            }
            Ok(())
        }
        Step::SyncFile { path } => match model.get(*path) {
            Some(Entry::File(_)) => Ok(()),
            Some(Entry::Dir) => Err(ErrorKind::IsADirectory),
            None => check_parents(model, path).and(Err(ErrorKind::NotFound)),
        },
        Step::Sync | Step::Checkpoint => Ok(()),
    }
}

/// The file at `path` in the model, made when `create`.
fn model_file<'m>(
    model: &'m mut Snapshot,
    path: &str,
    create: bool,
) -> Result<&'m mut Vec<u8>, ErrorKind> {
    check_parents(model, path)?;
    match model.get(path) {
        Some(Entry::Dir) => return Err(ErrorKind::IsADirectory),
        None if !create => return Err(ErrorKind::NotFound),
        None => {
            model.insert(path.to_string(), Entry::File(Vec::new()));
        }
        Some(Entry::File(_)) => {}
    }
    match model.get_mut(path) {
        Some(Entry::File(contents)) => Ok(contents),
        _ => unreachable!(),
    }
}
