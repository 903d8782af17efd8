//! `[app.disk]`: an app's extent of the image's one disk and the shape of its request ring,
//! checked with the file, the line and a fix for every problem (see the `bundle` module docs).
//!
//! The checked value is a [`DiskBinding`], the record the boot bundle carries; the cross-app
//! rule (the disk table holds at most [`MAX_EXTENTS`] extents) is checked by `bundle::parse`.

use super::{Checker, ManifestError, Size, human};
use lite_abi::blk::ring::{Geometry, MAX_BUFFER_SECTORS, MAX_SLOTS};
use lite_abi::blk::{DEFAULT_GEOMETRY, DiskBinding, SECTOR_BYTES};
use serde::Deserialize;
use toml::Spanned;

pub use lite_abi::blk::table::MAX_EXTENTS;

/// The smallest extent an app may ask for.
pub const MIN_DISK_BYTES: u64 = 1 << 20;
/// The largest extent an app may ask for.
pub const MAX_DISK_BYTES: u64 = 1 << 40;
/// Extents are whole blocks of this many bytes (the disk table's 4 KiB).
pub const DISK_BLOCK_BYTES: u64 = lite_abi::blk::table::BLOCK_SECTORS * SECTOR_BYTES;
/// The smallest largest-request (one block).
pub const MIN_REQUEST_BYTES: u64 = DISK_BLOCK_BYTES;
/// The largest largest-request (the ring's biggest data buffer).
pub const MAX_REQUEST_BYTES: u64 = MAX_BUFFER_SECTORS as u64 * SECTOR_BYTES;

/// The keys `[app.disk]` accepts, for the unknown-key fix.
pub(super) const KEYS: &str = "size, queue, request";

/// `[app.disk]` as written; see the module docs of `bundle`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawDisk {
    size: Spanned<Size>,
    queue: Option<Spanned<i64>>,
    request: Option<Spanned<Size>>,
}

impl Checker<'_> {
    /// Checks one app's `[app.disk]`.
    pub(super) fn disk(&self, raw: &Spanned<RawDisk>) -> Result<DiskBinding, ManifestError> {
        let disk = raw.get_ref();
        let bytes = self.size(&disk.size, "disk size", MIN_DISK_BYTES, MAX_DISK_BYTES)?;
        if !bytes.is_multiple_of(DISK_BLOCK_BYTES) {
            let rounded = bytes.next_multiple_of(DISK_BLOCK_BYTES);
            return Err(self.error(
                Some(disk.size.span()),
                format!(
                    "disk size of {} is not a whole number of 4 KiB blocks",
                    human(bytes)
                ),
                &format!(
                    "write a multiple of 4 KiB, e.g. \"{}\" or {rounded}",
                    human(bytes.next_multiple_of(MIN_DISK_BYTES))
                ),
            ));
        }
        let slots = match &disk.queue {
            None => DEFAULT_GEOMETRY.slots,
            Some(field) => u32::try_from(*field.get_ref())
                .ok()
                .filter(|slots| slots.is_power_of_two() && *slots <= MAX_SLOTS)
                .ok_or_else(|| {
                    self.error(
                        Some(field.span()),
                        format!(
                            "queue of {} requests is not a power of two from 1 to {MAX_SLOTS}",
                            field.get_ref()
                        ),
                        &format!(
                            "use 1, 2, 4, 8, 16, 32 or 64 (leave it out for {})",
                            DEFAULT_GEOMETRY.slots
                        ),
                    )
                })?,
        };
        let buffer_sectors = match &disk.request {
            None => DEFAULT_GEOMETRY.buffer_sectors,
            Some(field) => {
                let request = self.size(field, "request", MIN_REQUEST_BYTES, MAX_REQUEST_BYTES)?;
                if !request.is_power_of_two() {
                    return Err(self.error(
                        Some(field.span()),
                        format!("request of {} is not a power of two", human(request)),
                        "use 4 KiB, 8 KiB, 16 KiB, 32 KiB or 64 KiB (leave it out for 32 KiB)",
                    ));
                }
                u32::try_from(request / SECTOR_BYTES).expect("at most 64 KiB")
            }
        };
        let binding = DiskBinding {
            bytes,
            geometry: Geometry {
                slots,
                buffer_sectors,
            },
        };
        // The same check kernel-lite makes when it reads the bundle: whatever the finer checks
        // above let through is named here.
        binding.check().map_err(|error| {
            self.error(
                Some(raw.span()),
                format!("[app.disk]: {error}"),
                "write a size of whole 4 KiB blocks, a queue that is a power of two up to 64 \
                 and a request that is a power of two from 4 KiB to 64 KiB",
            )
        })?;
        Ok(binding)
    }
}

/// Bytes the app's request ring takes in its slot: a header page and `queue` buffers of
/// `request` bytes (kernel-lite maps and charges it like the frame rings).
pub fn ring_area_bytes(binding: &DiskBinding) -> u64 {
    binding.geometry.area_bytes()
}

#[cfg(test)]
mod tests {
    use super::super::tests::{check, refused};
    use super::*;

    /// A one-app manifest whose `[app.disk]` holds `lines` (its first line is line 5).
    fn disk_refused(lines: &str) -> ManifestError {
        refused(&format!(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.disk]\n{lines}\n"
        ))
    }

    /// The module docs' example, as a test keeps it honest.
    const DISK_EXAMPLE: &str = r#"[[app]]
name = "kv"
program = "hello"
memory = "8 MiB"
[app.disk]
size = "64 MiB"
queue = 32
request = "32 KiB"
"#;

    #[test]
    fn the_module_docs_disk_example_is_the_one_tested() {
        let docs: String = include_str!("../bundle.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! "))
            .collect::<Vec<_>>()
            .join("\n");
        // From `[app.disk]` on, each line opens a line of the docs (which add comments).
        for line in DISK_EXAMPLE.lines().skip(4) {
            assert!(
                docs.lines().any(|docs_line| docs_line.starts_with(line)),
                "{line:?} is not in the docs:\n{docs}"
            );
        }
    }

    #[test]
    fn a_disk_table_parses_with_defaults() {
        let manifest = check(DISK_EXAMPLE).unwrap();
        let binding = DiskBinding {
            bytes: 64 << 20,
            geometry: Geometry {
                slots: 32,
                buffer_sectors: 64,
            },
        };
        assert_eq!(manifest.apps[0].disk, Some(binding));
        assert_eq!(manifest.apps[0].spec().disk, Some(binding));
        assert_eq!(ring_area_bytes(&binding), 4096 + 32 * 32 * 1024);

        let manifest =
            check("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.disk]\nsize = 1048576\n")
                .unwrap();
        assert_eq!(
            manifest.apps[0].disk,
            Some(DiskBinding {
                bytes: 1 << 20,
                geometry: DEFAULT_GEOMETRY
            })
        );

        let manifest = check(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.disk]\nsize = \"1 TiB\"\n\
             queue = 1\nrequest = \"4 KiB\"\n",
        )
        .unwrap();
        assert_eq!(
            manifest.apps[0].disk,
            Some(DiskBinding {
                bytes: 1 << 40,
                geometry: Geometry {
                    slots: 1,
                    buffer_sectors: 8
                }
            })
        );
        let manifest = check(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.disk]\nsize = \"2 GiB\"\n\
             queue = 64\nrequest = \"64 KiB\"\n",
        )
        .unwrap();
        assert_eq!(
            manifest.apps[0].disk.unwrap().geometry,
            Geometry {
                slots: 64,
                buffer_sectors: 128
            }
        );
    }

    #[test]
    fn bad_disk_tables_name_the_line_and_the_fix() {
        let cases: &[(&str, usize, &str)] = &[
            ("size = \"512 KiB\"", 5, "below the minimum of 1 MiB"),
            ("size = \"2048 GiB\"", 5, "absurd (more than 1 TiB)"),
            ("size = 0", 5, "disk size is zero"),
            ("size = \"lots\"", 5, "disk size is not a size"),
            ("size = \"1 PiB\"", 5, "disk size is not a size"),
            (
                "size = 1049088",
                5,
                "1049088 bytes is not a whole number of 4 KiB blocks",
            ),
            ("size = \"1 MiB\"\nqueue = 3", 6, "queue of 3 requests"),
            (
                "size = \"1 MiB\"\nqueue = 0",
                6,
                "not a power of two from 1 to 64",
            ),
            ("size = \"1 MiB\"\nqueue = 128", 6, "queue of 128 requests"),
            ("size = \"1 MiB\"\nqueue = -1", 6, "queue of -1 requests"),
            (
                "size = \"1 MiB\"\nrequest = \"2 KiB\"",
                6,
                "request of 2 KiB is below the minimum of 4 KiB",
            ),
            (
                "size = \"1 MiB\"\nrequest = \"128 KiB\"",
                6,
                "request of 128 KiB is absurd (more than 64 KiB)",
            ),
            (
                "size = \"1 MiB\"\nrequest = \"12 KiB\"",
                6,
                "request of 12 KiB is not a power of two",
            ),
            ("size = \"1 MiB\"\ncolour = \"red\"", 6, "unknown field"),
            ("queue = 32", 4, "missing field `size`"),
        ];
        for (lines, line, problem) in cases {
            let error = disk_refused(lines);
            assert!(
                error.problem.contains(problem),
                "{lines:?}: expected {problem:?} in\n{error}"
            );
            assert_eq!(error.line, Some(*line), "{lines:?}: {error}");
            assert!(!error.fix.is_empty(), "{lines:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("bundles/x.toml:{line}: ")),
                "{error}"
            );
        }
        assert!(
            disk_refused("size = \"1 MiB\"\ncolour = \"red\"")
                .fix
                .contains("size, queue, request")
        );
        assert!(disk_refused("queue = 32").fix.contains("[app.disk] needs"));
        assert!(disk_refused("size = 1049088").fix.contains("1052672"));
        assert!(
            disk_refused("size = \"1 MiB\"\nqueue = 3")
                .fix
                .contains("32")
        );
    }

    #[test]
    fn the_disk_table_holds_a_bounded_number_of_extents() {
        let app = |index: usize| {
            format!(
                "[[app]]\nname = \"a{index}\"\nprogram = \"hello\"\nmemory = \"64 KiB\"\n\
                 [app.disk]\nsize = \"1 MiB\"\n"
            )
        };
        let fits: String = (0..MAX_EXTENTS).map(app).collect();
        assert_eq!(check(&fits).unwrap().apps.len(), MAX_EXTENTS);
        let error = refused(&(fits + &app(MAX_EXTENTS)));
        assert_eq!(error.line, Some(MAX_EXTENTS * 6 + 5), "{error}");
        assert!(
            error
                .problem
                .contains(&format!("the disk table holds at most {MAX_EXTENTS}")),
            "{error}"
        );
    }
}
