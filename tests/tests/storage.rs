//! One virtio-blk disk shared by extent, each app with its own file system on its own extent:
//! two apps write the same file name and each reads back only its own; data persists across
//! boots; an app that fills its extent gets "no space" and the other is untouched; bytes
//! flipped in one app's extent are reported by name, never a panic, and the other app runs on.

use lite_abi::blk::table::{DiskTable, TABLE_BYTES};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use system_tests::*;

const BUNDLE: &str = "disk-probes";

/// The sectors of `app`'s extent on the disk image at `path` (first, count), from its table.
fn extent_of(path: &Path, app: &str) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap();
    let table = DiskTable::parse(&bytes[..TABLE_BYTES], bytes.len() as u64 / 512).unwrap();
    let extent = table.extent_of(app).unwrap();
    (extent.first_sector, extent.sectors)
}

#[test]
fn apps_share_one_disk_by_extent_keep_their_data_and_cannot_reach_each_other() {
    let disk = TestDisk::new(BUNDLE, "apps_share_one_disk_by_extent");
    let first = boot_with(BUNDLE, Firmware::Bios, &disk.options(), None);
    assert_eq!(
        first.outcome,
        Some(ImageOutcome::AllAppsSucceeded),
        "{}",
        first.serial
    );
    assert_serial_contains(
        &first,
        &[
            "kernel-lite: disk: app 'probe' gets sectors",
            "kernel-lite: disk: app 'filler' gets sectors",
            "disk-probe probe: boot 1",
            "disk-probe filler: boot 1",
            "disk-probe probe: shared.txt holds its own 2700 bytes",
            "disk-probe filler: shared.txt holds its own 2800 bytes",
            "disk-probe filler: a write after freeing space works",
            "disk-probe probe: ok",
            "disk-probe filler: ok",
        ],
    );
    // The filler ran its 8 MiB extent full: "no space", not a fault, and not before it had
    // most of it.
    let full = first
        .serial
        .lines()
        .find_map(|line| line.split("disk-probe filler: no space after ").nth(1))
        .expect("the filler ran out of space");
    let mib: u64 = full.split(' ').next().unwrap().parse().unwrap();
    assert!((5..8).contains(&mib), "{full}");
    // Nothing was refused by the extent check: each file system stays inside its own extent.
    for row in ["probe", "filler"] {
        let line = first
            .serial
            .lines()
            .find(|line| line.starts_with(row) && line.split_whitespace().count() == 9)
            .unwrap_or_else(|| panic!("no disk table row for {row}"));
        let columns: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(columns[6..], ["0", "0", "0"], "{line}");
    }

    let second = boot_with(BUNDLE, Firmware::Bios, &disk.options(), None);
    assert_eq!(
        second.outcome,
        Some(ImageOutcome::AllAppsSucceeded),
        "{}",
        second.serial
    );
    assert_serial_contains(
        &second,
        &[
            "disk-probe probe: boot 2",
            "disk-probe filler: boot 2",
            "disk-probe probe: ok",
            "disk-probe filler: ok",
        ],
    );
}

#[test]
fn flipped_bytes_in_one_extent_are_reported_by_name_and_the_other_app_runs_on() {
    let disk = TestDisk::new(BUNDLE, "flipped_bytes_in_one_extent");
    let first = boot_with(BUNDLE, Firmware::Bios, &disk.options(), None);
    assert_eq!(
        first.outcome,
        Some(ImageOutcome::AllAppsSucceeded),
        "{}",
        first.serial
    );
    // One byte in every 4 KiB block of the first MiB of probe's extent: its superblocks, its
    // journal, the start of its data.
    let (first_sector, sectors) = extent_of(disk.path(), "probe");
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk.path())
        .unwrap();
    let start = first_sector * 512;
    for block in 0..(sectors * 512 / 4096).min(256) {
        let at = start + block * 4096 + (block * 97) % 4096;
        let mut byte = [0u8];
        file.seek(SeekFrom::Start(at)).unwrap();
        file.read_exact(&mut byte).unwrap();
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&[byte[0] ^ 0x5a]).unwrap();
    }
    drop(file);
    let second = boot_with(BUNDLE, Firmware::Bios, &disk.options(), None);
    assert_eq!(
        second.outcome,
        Some(ImageOutcome::SomeAppFailed),
        "{}",
        second.serial
    );
    assert!(!second.serial.contains("PANIC"), "{}", second.serial);
    assert_serial_contains(
        &second,
        &[
            "fs: cannot mount the app's volume",
            "disk-probe probe: error:",
            "disk-probe filler: boot 2",
            "disk-probe filler: ok",
        ],
    );
    let mount_error = second
        .serial
        .lines()
        .find(|line| line.contains("fs: cannot mount the app's volume"))
        .unwrap();
    assert!(mount_error.starts_with("[probe]"), "{mount_error}");
}
