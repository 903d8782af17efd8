//! A bundle's disk image: the file QEMU gives the image as its virtio-blk disk, holding the disk
//! table (`lite_abi::blk::table`) at sector 0 and every app's extent after it, in manifest order.
//!
//! The file outlives runs: that is where the apps' data persists. [`DiskImage::prepare`] makes
//! it when it is missing (sparse: the table, then zeros; an app's file system formats its blank
//! extent on first mount) and otherwise keeps it only if its table is exactly the one the
//! manifest lays out now. Any difference — an app with a disk added, removed, renamed, resized or
//! moved, a damaged or foreign table, a file truncated or grown — is refused with what changed
//! and the fix ([`DiskImageError`]); nothing is ever reformatted unless asked (`fresh`, the
//! `--fresh-disk` flag). An empty file counts as missing: it holds no data to lose.

use crate::bundle::{Manifest, human};
use anyhow::Context;
use lite_abi::blk::SECTOR_BYTES;
use lite_abi::blk::table::{self, DiskTable, Extent, TABLE_BYTES, TableError};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The fix for a disk that no longer matches its manifest.
const FRESH_FIX: &str = "run again with --fresh-disk to start a new empty disk (its data is \
                         lost), or restore the manifest";

/// A disk image ready to attach ([`crate::qemu::RunOptions::disk`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskImage {
    pub path: PathBuf,
    /// Bytes of the whole disk: the table and every extent.
    pub bytes: u64,
    /// How many apps have an extent on it.
    pub extents: usize,
    /// Whether the file was made now or kept from an earlier run.
    pub state: DiskState,
}

/// What [`DiskImage::prepare`] did with the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskState {
    /// There was none (or an empty file): a new empty disk.
    Created,
    /// There was one, and `fresh` replaced it with a new empty disk.
    Replaced,
    /// There was one with the manifest's table: kept, with its data.
    Kept,
}

/// Why an existing disk image was refused.
#[derive(Debug)]
pub enum DiskImageError {
    /// The path is a directory, a device or something else that is not a plain file.
    NotAFile { path: PathBuf, what: &'static str },
    /// The file's size is not whole 512-byte sectors.
    NotWholeSectors { path: PathBuf, bytes: u64 },
    /// The file's disk table is missing, damaged, or for a disk of another size.
    BadTable {
        bundle: String,
        path: PathBuf,
        error: TableError,
    },
    /// The file's table is sound but not the one the manifest lays out now.
    Changed {
        bundle: String,
        path: PathBuf,
        changes: Vec<ExtentChange>,
    },
}

/// One way an existing disk differs from what the manifest asks now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtentChange {
    /// The manifest asks an extent for an app the disk has none for.
    Added {
        app: String,
        bytes: u64,
    },
    /// The disk has an extent for an app that has no `[app.disk]` now; `app_remains` says
    /// whether the app is still in the manifest (without a disk) or gone (removed or renamed).
    Removed {
        app: String,
        bytes: u64,
        app_remains: bool,
    },
    Resized {
        app: String,
        was: u64,
        now: u64,
    },
    /// Same size, another place: the apps with disks were reordered.
    Moved {
        app: String,
        was_sector: u64,
        now_sector: u64,
    },
    /// Same extents, but the table is for a disk of another size (not one the xtask wrote).
    DiskSize {
        was: u64,
        now: u64,
    },
}

impl ExtentChange {
    fn describe(&self, path: &Path) -> String {
        let path = path.display();
        match self {
            ExtentChange::Added { app, bytes } => format!(
                "the manifest asks a {} extent for app '{app}', which {path} has none for",
                human(*bytes)
            ),
            ExtentChange::Removed {
                app,
                bytes,
                app_remains: true,
            } => format!(
                "app '{app}' had a {} extent on {path}, the manifest now gives it no [app.disk]",
                human(*bytes)
            ),
            ExtentChange::Removed {
                app,
                bytes,
                app_remains: false,
            } => format!(
                "app '{app}' had a {} extent on {path}, the manifest now has no app '{app}' \
                 (removed or renamed)",
                human(*bytes)
            ),
            ExtentChange::Resized { app, was, now } => format!(
                "app '{app}' had a {} extent on {path}, the manifest now asks {}",
                human(*was),
                human(*now)
            ),
            ExtentChange::Moved {
                app,
                was_sector,
                now_sector,
            } => format!(
                "app '{app}''s extent starts at sector {was_sector} on {path}, the manifest's \
                 order of apps now puts it at sector {now_sector} (the apps with disks were \
                 reordered)"
            ),
            ExtentChange::DiskSize { was, now } => format!(
                "{path}'s table is for a disk of {}, the manifest lays out {}",
                human(*was),
                human(*now)
            ),
        }
    }
}

impl fmt::Display for DiskImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiskImageError::NotAFile { path, what } => write!(
                f,
                "disk image {} is {what}, not a file\n  fix: name a file (it is made when \
                 missing), e.g. --disk target/disks/other.img",
                path.display()
            ),
            DiskImageError::NotWholeSectors { path, bytes } => write!(
                f,
                "disk image {} is {bytes} bytes, not whole 512-byte sectors: not a disk the \
                 xtask made, or cut short\n  fix: {FRESH_FIX}, or name another file with --disk",
                path.display()
            ),
            DiskImageError::BadTable {
                bundle,
                path,
                error,
            } => {
                let (problem, fix) = match error {
                    TableError::BadMagic | TableError::Truncated => (
                        "holds no disk table: it is blank or not a disk the xtask made",
                        "name another file with --disk, or run again with --fresh-disk to \
                         overwrite it (its data is lost)",
                    ),
                    TableError::WrongDiskSize { .. } => (
                        "was truncated or grown since its table was written",
                        "restore the file, or run again with --fresh-disk to start a new empty \
                         disk (its data is lost)",
                    ),
                    _ => (
                        "has a damaged disk table",
                        "restore the file from a copy, or run again with --fresh-disk to start \
                         a new empty disk (its data is lost)",
                    ),
                };
                write!(
                    f,
                    "bundle '{bundle}': disk image {} {problem} ({error})\n  fix: {fix}",
                    path.display()
                )
            }
            DiskImageError::Changed {
                bundle,
                path,
                changes,
            } => {
                for change in changes {
                    writeln!(f, "bundle '{bundle}': {}", change.describe(path))?;
                }
                write!(f, "  fix: {FRESH_FIX}")
            }
        }
    }
}

impl std::error::Error for DiskImageError {}

impl fmt::Display for DiskImage {
    /// `disk image target/disks/default.img (1 extent, 64 MiB): kept, with its data` (the size
    /// is the extents', without the table's 4 KiB).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            DiskState::Created => "created empty",
            DiskState::Replaced => "replaced by an empty one (--fresh-disk)",
            DiskState::Kept => "kept, with its data",
        };
        write!(
            f,
            "disk image {} ({} extent{}, {}): {state}",
            self.path.display(),
            self.extents,
            if self.extents == 1 { "" } else { "s" },
            human(self.bytes - TABLE_BYTES as u64)
        )
    }
}

/// Where `cargo xtask run` keeps bundle `manifest`'s disk: `target/disks/BUNDLE.img`.
pub fn default_path(manifest: &Manifest) -> PathBuf {
    crate::target_dir()
        .join("disks")
        .join(format!("{}.img", manifest.name))
}

/// The extents of the manifest's apps with `[app.disk]`, in manifest order, and the disk's
/// sectors; `None` when no app has a disk.
pub fn layout(manifest: &Manifest) -> Option<(Vec<Extent<'_>>, u64)> {
    let sizes: Vec<(&str, u64)> = manifest
        .apps
        .iter()
        .filter_map(|app| Some((app.name.as_str(), app.disk?.bytes)))
        .collect();
    if sizes.is_empty() {
        return None;
    }
    Some(table::lay_out(&sizes))
}

impl DiskImage {
    /// Makes or checks the disk image at `path` for `manifest` (see the module docs); `None`
    /// when no app of the manifest has a disk (the file is then left alone). With `fresh`, an
    /// existing file is replaced by a new empty disk.
    pub fn prepare(
        manifest: &Manifest,
        path: &Path,
        fresh: bool,
    ) -> anyhow::Result<Option<DiskImage>> {
        let Some((extents, disk_sectors)) = layout(manifest) else {
            return Ok(None);
        };
        let table_bytes = table::encode(&extents, disk_sectors).map_err(|error| {
            anyhow::anyhow!("bundle '{}': laying out the disk: {error}", manifest.name)
        })?;
        let existing = match std::fs::metadata(path) {
            Ok(metadata) if metadata.is_dir() => {
                return Err(DiskImageError::NotAFile {
                    path: path.to_path_buf(),
                    what: "a directory",
                }
                .into());
            }
            Ok(metadata) if !metadata.is_file() => {
                return Err(DiskImageError::NotAFile {
                    path: path.to_path_buf(),
                    what: "a device, socket or pipe",
                }
                .into());
            }
            Ok(metadata) => Some(metadata.len()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => {
                return Err(error).with_context(|| format!("looking at {}", path.display()));
            }
        };
        let image = |state| DiskImage {
            path: path.to_path_buf(),
            bytes: disk_sectors * SECTOR_BYTES,
            extents: extents.len(),
            state,
        };
        let state = match existing {
            None | Some(0) => DiskState::Created,
            Some(_) if fresh => DiskState::Replaced,
            Some(file_bytes) => {
                check_existing(manifest, path, file_bytes, &extents, disk_sectors)?;
                return Ok(Some(image(DiskState::Kept)));
            }
        };
        create(path, &table_bytes, disk_sectors * SECTOR_BYTES)?;
        Ok(Some(image(state)))
    }
}

/// Refuses the file at `path` unless its table is exactly `wanted` on a disk of
/// `wanted_sectors`.
fn check_existing(
    manifest: &Manifest,
    path: &Path,
    file_bytes: u64,
    wanted: &[Extent<'_>],
    wanted_sectors: u64,
) -> anyhow::Result<()> {
    if !file_bytes.is_multiple_of(SECTOR_BYTES) {
        return Err(DiskImageError::NotWholeSectors {
            path: path.to_path_buf(),
            bytes: file_bytes,
        }
        .into());
    }
    let mut head = Vec::with_capacity(TABLE_BYTES);
    File::open(path)
        .and_then(|file| file.take(TABLE_BYTES as u64).read_to_end(&mut head))
        .with_context(|| format!("reading the disk table of {}", path.display()))?;
    let bad_table = |error| DiskImageError::BadTable {
        bundle: manifest.name.clone(),
        path: path.to_path_buf(),
        error,
    };
    let found = DiskTable::parse(&head, file_bytes / SECTOR_BYTES).map_err(bad_table)?;
    let changes = changes(
        manifest,
        &found,
        file_bytes / SECTOR_BYTES,
        wanted,
        wanted_sectors,
    );
    if changes.is_empty() {
        return Ok(());
    }
    Err(DiskImageError::Changed {
        bundle: manifest.name.clone(),
        path: path.to_path_buf(),
        changes,
    }
    .into())
}

/// How the disk's table `found` differs from the `wanted` layout. Moves and the disk's size are
/// named only when nothing else changed: they follow from any other change.
fn changes(
    manifest: &Manifest,
    found: &DiskTable<'_>,
    found_sectors: u64,
    wanted: &[Extent<'_>],
    wanted_sectors: u64,
) -> Vec<ExtentChange> {
    let mut changes = Vec::new();
    for had in found.extents() {
        match wanted.iter().find(|extent| extent.app == had.app) {
            None => changes.push(ExtentChange::Removed {
                app: had.app.to_owned(),
                bytes: had.bytes(),
                app_remains: manifest.apps.iter().any(|app| app.name == had.app),
            }),
            Some(now) if now.sectors != had.sectors => changes.push(ExtentChange::Resized {
                app: had.app.to_owned(),
                was: had.bytes(),
                now: now.bytes(),
            }),
            Some(_) => {}
        }
    }
    for now in wanted {
        if found.extent_of(now.app).is_none() {
            changes.push(ExtentChange::Added {
                app: now.app.to_owned(),
                bytes: now.bytes(),
            });
        }
    }
    if !changes.is_empty() {
        return changes;
    }
    for now in wanted {
        if let Some(had) = found.extent_of(now.app)
            && had.first_sector != now.first_sector
        {
            changes.push(ExtentChange::Moved {
                app: now.app.to_owned(),
                was_sector: had.first_sector,
                now_sector: now.first_sector,
            });
        }
    }
    if changes.is_empty() && found_sectors != wanted_sectors {
        changes.push(ExtentChange::DiskSize {
            was: found_sectors * SECTOR_BYTES,
            now: wanted_sectors * SECTOR_BYTES,
        });
    }
    changes
}

/// Writes a new empty disk of `disk_bytes` with `table_bytes` at its start to `path`: a sparse
/// file made beside it and renamed over it, so an interrupted run leaves the old file or the
/// new one, never half of one.
fn create(path: &Path, table_bytes: &[u8], disk_bytes: u64) -> anyhow::Result<()> {
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::create_dir_all(folder)
            .with_context(|| format!("making the folder {}", folder.display()))?;
    }
    let name = path
        .file_name()
        .with_context(|| format!("disk image {} names no file", path.display()))?;
    let new = path.with_file_name(format!(
        ".{}.new-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&new)?;
        file.set_len(disk_bytes)?;
        file.write_all(table_bytes)?;
        file.sync_all()?;
        std::fs::rename(&new, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&new);
        return Err(error).with_context(|| {
            format!(
                "writing the disk image {} ({})",
                path.display(),
                human(disk_bytes)
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    /// A folder of this test's own under the system's temporary folder, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(test: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("xtask-disk-{}-{test}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A bundle `b` of apps given as (name, disk size or none).
    fn manifest(apps: &[(&str, Option<&str>)]) -> Manifest {
        let text: String = apps
            .iter()
            .map(|(name, disk)| {
                let mut app = format!(
                    "[[app]]\nname = \"{name}\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n"
                );
                if let Some(size) = disk {
                    app.push_str(&format!("[app.disk]\nsize = \"{size}\"\n"));
                }
                app
            })
            .collect();
        crate::bundle::parse(Path::new("bundles/b.toml"), &text).unwrap()
    }

    fn refusal(manifest: &Manifest, path: &Path) -> DiskImageError {
        DiskImage::prepare(manifest, path, false)
            .expect_err("the disk should be refused")
            .downcast()
            .expect("a DiskImageError")
    }

    fn changes_of(error: DiskImageError) -> Vec<ExtentChange> {
        match error {
            DiskImageError::Changed { changes, .. } => changes,
            other => panic!("expected changes, got {other}"),
        }
    }

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_bundle_without_disks_gets_none_and_its_path_is_left_alone() {
        let dir = TempDir::new("none");
        let path = dir.0.join("b.img");
        let plain = manifest(&[("a", None)]);
        assert_eq!(DiskImage::prepare(&plain, &path, true).unwrap(), None);
        assert!(!path.exists());
        assert!(default_path(&plain).ends_with("disks/b.img"));
    }

    #[test]
    fn a_new_disk_is_sparse_with_the_table_at_sector_zero() {
        let dir = TempDir::new("create");
        let path = dir.0.join("sub/b.img");
        let bundle = manifest(&[("a", Some("1 MiB")), ("plain", None), ("b", Some("2 MiB"))]);
        let image = DiskImage::prepare(&bundle, &path, false).unwrap().unwrap();
        assert_eq!(image.state, DiskState::Created);
        assert_eq!((image.extents, image.bytes), (2, 4096 + 3 * MIB));
        assert_eq!(
            image.to_string(),
            format!(
                "disk image {} (2 extents, 3 MiB): created empty",
                path.display()
            )
        );
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len() as u64, image.bytes);
        let table = DiskTable::parse(&bytes, image.bytes / SECTOR_BYTES).unwrap();
        let a = table.extent_of("a").unwrap();
        let b = table.extent_of("b").unwrap();
        assert_eq!((a.first_sector, a.bytes()), (8, MIB));
        assert_eq!((b.first_sector, b.bytes()), (a.end_sector(), 2 * MIB));
        assert!(table.extent_of("plain").is_none());
        assert!(bytes[TABLE_BYTES..].iter().all(|&byte| byte == 0));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["b.img"]);
    }

    #[test]
    fn a_matching_disk_is_kept_with_its_data_and_fresh_empties_it() {
        let dir = TempDir::new("keep");
        let path = dir.0.join("b.img");
        let bundle = manifest(&[("a", Some("1 MiB")), ("b", Some("1 MiB"))]);
        DiskImage::prepare(&bundle, &path, false).unwrap().unwrap();
        let b_start = (8 + MIB / SECTOR_BYTES) * SECTOR_BYTES;
        let mut file = OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(SeekFrom::Start(b_start)).unwrap();
        file.write_all(b"kept across runs").unwrap();
        drop(file);

        let image = DiskImage::prepare(&bundle, &path, false).unwrap().unwrap();
        assert_eq!(image.state, DiskState::Kept);
        assert!(image.to_string().ends_with(": kept, with its data"));
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[b_start as usize..][..16], b"kept across runs");

        let image = DiskImage::prepare(&bundle, &path, true).unwrap().unwrap();
        assert_eq!(image.state, DiskState::Replaced);
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[TABLE_BYTES..].iter().all(|&byte| byte == 0));
        assert!(DiskTable::parse(&bytes, image.bytes / SECTOR_BYTES).is_ok());

        // An empty file holds nothing to lose: it is made a disk.
        std::fs::write(&path, b"").unwrap();
        let image = DiskImage::prepare(&bundle, &path, false).unwrap().unwrap();
        assert_eq!(image.state, DiskState::Created);
    }

    #[test]
    fn every_kind_of_change_is_refused_naming_it_and_the_fix() {
        let dir = TempDir::new("changes");
        let path = dir.0.join("b.img");
        let made = manifest(&[("kv", Some("64 MiB")), ("notes", Some("1 MiB"))]);
        DiskImage::prepare(&made, &path, false).unwrap().unwrap();
        let before = std::fs::read(&path).unwrap();

        let resized = manifest(&[("kv", Some("128 MiB")), ("notes", Some("1 MiB"))]);
        let error = refusal(&resized, &path);
        let text = error.to_string();
        assert!(
            text.contains(&format!(
                "bundle 'b': app 'kv' had a 64 MiB extent on {}, the manifest now asks 128 MiB",
                path.display()
            )),
            "{text}"
        );
        assert!(text.contains("--fresh-disk"), "{text}");
        assert!(text.contains("restore the manifest"), "{text}");
        assert_eq!(
            changes_of(error),
            [ExtentChange::Resized {
                app: "kv".into(),
                was: 64 * MIB,
                now: 128 * MIB
            }]
        );

        let added = manifest(&[
            ("kv", Some("64 MiB")),
            ("notes", Some("1 MiB")),
            ("more", Some("1 MiB")),
        ]);
        assert_eq!(
            changes_of(refusal(&added, &path)),
            [ExtentChange::Added {
                app: "more".into(),
                bytes: MIB
            }]
        );

        let disk_dropped = manifest(&[("kv", Some("64 MiB")), ("notes", None)]);
        let error = refusal(&disk_dropped, &path);
        assert!(error.to_string().contains("no [app.disk]"), "{error}");
        assert_eq!(
            changes_of(error),
            [ExtentChange::Removed {
                app: "notes".into(),
                bytes: MIB,
                app_remains: true
            }]
        );

        let renamed = manifest(&[("kv", Some("64 MiB")), ("memo", Some("1 MiB"))]);
        let error = refusal(&renamed, &path);
        assert!(error.to_string().contains("removed or renamed"), "{error}");
        assert_eq!(
            changes_of(error),
            [
                ExtentChange::Removed {
                    app: "notes".into(),
                    bytes: MIB,
                    app_remains: false
                },
                ExtentChange::Added {
                    app: "memo".into(),
                    bytes: MIB
                }
            ]
        );

        let reordered = manifest(&[("notes", Some("1 MiB")), ("kv", Some("64 MiB"))]);
        let changes = changes_of(refusal(&reordered, &path));
        assert_eq!(changes.len(), 2, "{changes:?}");
        assert!(matches!(&changes[0], ExtentChange::Moved { app, .. } if app == "notes"));

        // Refusals never touch the file.
        assert_eq!(std::fs::read(&path).unwrap(), before);
        // And --fresh-disk takes any of them.
        let image = DiskImage::prepare(&resized, &path, true).unwrap().unwrap();
        assert_eq!(image.state, DiskState::Replaced);
        assert_eq!(image.bytes, 4096 + 129 * MIB);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), image.bytes);
    }

    #[test]
    fn damaged_foreign_or_resized_files_are_refused_by_name() {
        let dir = TempDir::new("damaged");
        let path = dir.0.join("b.img");
        let bundle = manifest(&[("kv", Some("1 MiB"))]);
        let bad_table = |path: &Path| match refusal(&bundle, path) {
            DiskImageError::BadTable { error, .. } => error,
            other => panic!("expected a bad table, got {other}"),
        };
        DiskImage::prepare(&bundle, &path, false).unwrap().unwrap();
        let good = std::fs::read(&path).unwrap();

        let mut damaged = good.clone();
        damaged[40] ^= 0x40;
        std::fs::write(&path, &damaged).unwrap();
        assert!(matches!(bad_table(&path), TableError::BadChecksum { .. }));
        let text = refusal(&bundle, &path).to_string();
        assert!(text.contains("damaged disk table"), "{text}");
        assert!(text.contains("--fresh-disk"), "{text}");

        std::fs::write(&path, vec![0u8; good.len()]).unwrap();
        assert_eq!(bad_table(&path), TableError::BadMagic);
        let text = refusal(&bundle, &path).to_string();
        assert!(text.contains("not a disk the xtask made"), "{text}");

        std::fs::write(&path, &good[..1024]).unwrap();
        assert_eq!(bad_table(&path), TableError::Truncated);

        let mut grown = good.clone();
        grown.extend_from_slice(&[0; 4096]);
        std::fs::write(&path, &grown).unwrap();
        assert!(matches!(bad_table(&path), TableError::WrongDiskSize { .. }));
        let text = refusal(&bundle, &path).to_string();
        assert!(text.contains("truncated or grown"), "{text}");

        std::fs::write(&path, &good[..good.len() - 100]).unwrap();
        assert!(matches!(
            refusal(&bundle, &path),
            DiskImageError::NotWholeSectors { .. }
        ));

        // A sound table for a bigger disk than the manifest lays out (not one the xtask made).
        let (extents, sectors) = table::lay_out(&[("kv", MIB)]);
        let mut foreign = table::encode(&extents, sectors + 8).unwrap();
        foreign.resize(((sectors + 8) * SECTOR_BYTES) as usize, 0);
        std::fs::write(&path, &foreign).unwrap();
        assert_eq!(
            changes_of(refusal(&bundle, &path)),
            [ExtentChange::DiskSize {
                was: (sectors + 8) * SECTOR_BYTES,
                now: sectors * SECTOR_BYTES
            }]
        );
    }

    #[test]
    fn a_directory_is_no_disk_image() {
        let dir = TempDir::new("directory");
        let bundle = manifest(&[("kv", Some("1 MiB"))]);
        let error = refusal(&bundle, &dir.0);
        assert!(
            matches!(
                error,
                DiskImageError::NotAFile {
                    what: "a directory",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("is a directory, not a file"));
        // Not even with --fresh-disk.
        assert!(DiskImage::prepare(&bundle, &dir.0, true).is_err());
        assert!(dir.0.is_dir());
        let device = DiskImage::prepare(&bundle, Path::new("/dev/null"), true).unwrap_err();
        assert!(device.to_string().contains("not a file"), "{device}");
    }
}
