//! The std-like API on a RAM disk: files, cursors, options, directories, rename, names,
//! errors, remount, many files, a file as large as most of the volume, a full volume, and
//! the number of device requests a sync costs.

use super::*;

fn kind<T: core::fmt::Debug>(result: io::Result<T>) -> ErrorKind {
    result.unwrap_err().kind()
}

/// A fresh volume of `blocks` blocks on a sparse disk, and the disk.
fn fresh(blocks: u64) -> (Volume, SparseDisk) {
    let disk = SparseDisk::new(blocks);
    (Volume::mount(disk.clone()).unwrap(), disk)
}

#[test]
fn files_are_written_read_sought_and_cut() {
    let (volume, _) = fresh(1024);
    let mut file = volume.create("notes.txt").unwrap();
    file.write_all(b"hello, world").unwrap();
    file.seek(SeekFrom::Start(7)).unwrap();
    file.write_all(b"there").unwrap();
    assert_eq!(volume.read_to_string("notes.txt").unwrap(), "hello, there");
    assert_eq!(file.seek(SeekFrom::End(-5)).unwrap(), 7);
    assert_eq!(
        kind(file.seek(SeekFrom::Current(-8))),
        ErrorKind::InvalidInput
    );
    // Writing past the end leaves a gap of zeros.
    file.seek(SeekFrom::Start(10_000)).unwrap();
    file.write_all(b"!").unwrap();
    let contents = volume.read("notes.txt").unwrap();
    assert_eq!(contents.len(), 10_001);
    assert!(contents[12..10_000].iter().all(|b| *b == 0));
    // Cutting inside a block and growing again shows zeros, not the old bytes.
    file.set_len(3).unwrap();
    file.set_len(8).unwrap();
    assert_eq!(volume.read("notes.txt").unwrap(), b"hel\0\0\0\0\0");
    assert_eq!(file.metadata().unwrap().len(), 8);
    let mut reader = volume.open("notes.txt").unwrap();
    let mut buf = [0u8; 2];
    reader.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"he");
    assert_eq!(kind(reader.write(b"x")), ErrorKind::InvalidInput);
}

#[test]
fn open_options_follow_std() {
    let (volume, _) = fresh(1024);
    assert_eq!(kind(volume.open("missing")), ErrorKind::NotFound);
    assert_eq!(
        kind(OpenOptions::new().open_on(&volume, "x")),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(
            OpenOptions::new()
                .read(true)
                .create(true)
                .open_on(&volume, "x")
        ),
        ErrorKind::InvalidInput
    );
    let mut new = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open_on(&volume, "log")
        .unwrap();
    new.write_all(b"one ").unwrap();
    assert_eq!(
        kind(
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open_on(&volume, "log")
        ),
        ErrorKind::AlreadyExists
    );
    let mut append = OpenOptions::new()
        .append(true)
        .open_on(&volume, "log")
        .unwrap();
    new.write_all(b"two ").unwrap();
    append.write_all(b"three").unwrap();
    assert_eq!(volume.read("log").unwrap(), b"one two three");
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open_on(&volume, "log")
        .unwrap();
    assert_eq!(volume.metadata("log").unwrap().len(), 0);
    volume.create_dir("dir").unwrap();
    assert_eq!(kind(volume.open("dir")), ErrorKind::IsADirectory);
    assert_eq!(kind(volume.create("log/inside")), ErrorKind::NotADirectory);
    assert_eq!(kind(volume.create("nowhere/inside")), ErrorKind::NotFound);
}

#[test]
fn names_are_checked() {
    let (volume, _) = fresh(1024);
    let long = "x".repeat(MAX_NAME_BYTES + 1);
    for bad in ["a//b", ".", "a/..", "nul\0", long.as_str()] {
        assert_eq!(
            kind(volume.write(bad, b"x")),
            ErrorKind::InvalidFilename,
            "{bad:?}"
        );
    }
    volume.write(&"y".repeat(MAX_NAME_BYTES), b"ok").unwrap();
    volume.write("/rooted", b"1").unwrap();
    assert_eq!(volume.read("rooted").unwrap(), b"1");
    assert_eq!(kind(volume.write("/", b"x")), ErrorKind::IsADirectory);
    assert!(volume.metadata("/").unwrap().is_dir());
}

#[test]
fn directories_are_made_listed_and_removed() {
    let (volume, _) = fresh(1024);
    volume.create_dir_all("a/b/c").unwrap();
    volume.create_dir_all("a/b/c/").unwrap();
    volume.write("a/b/file", b"123").unwrap();
    assert_eq!(kind(volume.create_dir("a/b")), ErrorKind::AlreadyExists);
    assert_eq!(
        kind(volume.create_dir_all("a/b/file/x")),
        ErrorKind::NotADirectory
    );
    let entries: Vec<(String, bool, u64)> = volume
        .read_dir("a/b")
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name(),
                entry.file_type().unwrap().is_dir(),
                entry.metadata().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [("c".to_string(), true, 0), ("file".to_string(), false, 3)]
    );
    assert_eq!(kind(volume.remove_dir("a/b")), ErrorKind::DirectoryNotEmpty);
    assert_eq!(
        kind(volume.remove_dir("a/b/file")),
        ErrorKind::NotADirectory
    );
    assert_eq!(kind(volume.remove_file("a/b/c")), ErrorKind::IsADirectory);
    assert_eq!(kind(volume.read_dir("a/b/file")), ErrorKind::NotADirectory);
    volume.remove_file("a/b/file").unwrap();
    volume.remove_dir("a/b/c").unwrap();
    volume.remove_dir("a/b").unwrap();
    assert!(!volume.exists("a/b"));
    assert!(volume.try_exists("a").unwrap());
    assert_eq!(
        kind(volume.try_exists("a/../b")),
        ErrorKind::InvalidFilename
    );
    assert_eq!(kind(volume.remove_dir("/")), ErrorKind::InvalidInput);
}

#[test]
fn rename_replaces_files_and_moves_directories() {
    let (volume, disk) = fresh(1024);
    volume.write("snapshot", b"old").unwrap();
    volume.write("snapshot.tmp", b"new").unwrap();
    let old_handle = volume.open("snapshot").unwrap();
    volume.rename("snapshot.tmp", "snapshot").unwrap();
    assert_eq!(volume.read("snapshot").unwrap(), b"new");
    assert!(!volume.exists("snapshot.tmp"));
    assert_eq!(kind(old_handle.metadata()), ErrorKind::NotFound);
    volume.create_dir_all("d/e").unwrap();
    assert_eq!(kind(volume.rename("d", "d/e/f")), ErrorKind::InvalidInput);
    assert_eq!(
        kind(volume.rename("d", "snapshot")),
        ErrorKind::NotADirectory
    );
    assert_eq!(
        kind(volume.rename("snapshot", "d")),
        ErrorKind::IsADirectory
    );
    volume.rename("snapshot", "d/e/kept").unwrap();
    volume.rename("d", "moved").unwrap();
    // Renames are durable on return: a remount without sync sees them.
    drop(volume);
    let volume = Volume::mount(disk.fork()).unwrap();
    assert_eq!(volume.read("moved/e/kept").unwrap(), b"new");
    assert_eq!(snapshot(&volume).len(), 3);
}

#[test]
fn a_remount_shows_what_was_synced_and_not_the_rest() {
    let (volume, disk) = fresh(2048);
    volume.write("kept", pattern(20_000, 1)).unwrap();
    volume.create_dir("dir").unwrap();
    volume.sync().unwrap();
    let synced = snapshot(&volume);
    volume.write("lost", b"never synced").unwrap();
    volume.write("kept", b"overwritten, not synced").unwrap();
    drop(volume);
    let volume = Volume::mount(disk.fork()).unwrap();
    assert_eq!(snapshot(&volume), synced);
    volume.verify().unwrap();
}

#[test]
fn a_sync_costs_one_flush_and_few_writes() {
    let (volume, _) = fresh(16 * 1024);
    let mut log = volume.create("log").unwrap();
    log.sync_all().unwrap();
    let before = volume.stats();
    for i in 0..100 {
        log.write_all(&pattern(100, i)).unwrap();
        log.sync_all().unwrap();
    }
    let after = volume.stats();
    let (flushes, writes) = (
        after.flushes - before.flushes,
        after.write_requests - before.write_requests,
    );
    let checkpoints = after.checkpoints - before.checkpoints;
    // One flush per sync, plus one more per checkpoint; a data block and a record per sync.
    assert_eq!(flushes, 100 + checkpoints, "{after:?}");
    assert!(writes <= 200 + 3 * checkpoints, "{after:?}");
    // A sync with nothing to commit costs nothing.
    log.sync_all().unwrap();
    assert_eq!(volume.stats().flushes, after.flushes);
}

#[test]
fn large_writes_go_out_in_large_requests() {
    let (volume, _) = fresh(16 * 1024);
    let before = volume.stats();
    volume.write("big", pattern(4 << 20, 9)).unwrap();
    volume.sync().unwrap();
    let after = volume.stats();
    assert!(
        after.write_requests - before.write_requests <= 12,
        "{after:?}"
    );
    let reads = volume.stats().read_requests;
    assert_eq!(volume.read("big").unwrap(), pattern(4 << 20, 9));
    assert!(volume.stats().read_requests - reads <= 8);
}

#[test]
fn thousands_of_files_in_one_directory() {
    let (volume, disk) = fresh(8192);
    volume.create_dir("many").unwrap();
    for i in 0..3000 {
        volume
            .write(&format!("many/file-{i:05}"), format!("{i}"))
            .unwrap();
    }
    volume.sync().unwrap();
    for i in (0..3000).step_by(2) {
        volume.remove_file(&format!("many/file-{i:05}")).unwrap();
    }
    volume.sync().unwrap();
    drop(volume);
    let volume = Volume::mount(disk.fork()).unwrap();
    let names: Vec<String> = volume
        .read_dir("many")
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1500);
    assert_eq!(volume.read_to_string("many/file-02999").unwrap(), "2999");
}

#[test]
fn a_file_as_large_as_most_of_the_volume() {
    let blocks = 4096; // 16 MiB
    let (volume, disk) = fresh(blocks);
    let size = (blocks - 300) as usize * BLOCK_BYTES;
    let chunk = pattern(1 << 20, 5);
    let mut file = volume.create("huge").unwrap();
    let mut written = 0;
    while written < size {
        let n = chunk.len().min(size - written);
        file.write_all(&chunk[..n]).unwrap();
        written += n;
    }
    file.sync_all().unwrap();
    drop((file, volume));
    let volume = Volume::mount(disk.fork()).unwrap();
    assert_eq!(volume.metadata("huge").unwrap().len(), size as u64);
    let mut reader = volume.open("huge").unwrap();
    reader.seek(SeekFrom::Start(size as u64 - 1000)).unwrap();
    let mut tail = Vec::new();
    reader.read_to_end(&mut tail).unwrap();
    assert_eq!(tail, chunk[(size - 1000) % chunk.len()..][..1000]);
    volume.verify().unwrap();
}

#[test]
fn a_full_volume_says_storage_full_and_recovers_after_removal() {
    let (volume, disk) = fresh(512);
    let chunk = pattern(64 * 1024, 3);
    let mut files = 0;
    'fill: loop {
        let mut file = volume.create(&format!("f{files}")).unwrap();
        for _ in 0..4 {
            if let Err(error) = file.write_all(&chunk) {
                assert_eq!(error.kind(), ErrorKind::StorageFull);
                break 'fill;
            }
        }
        file.sync_all().unwrap();
        files += 1;
    }
    assert!(files >= 5, "{files}");
    assert_eq!(
        kind(volume.sync().and_then(|()| volume.write("more", &chunk))),
        ErrorKind::StorageFull
    );
    for i in 0..files {
        volume.remove_file(&format!("f{i}")).unwrap();
    }
    volume.write("after", &chunk).unwrap();
    volume.sync().unwrap();
    drop(volume);
    let volume = Volume::mount(disk.fork()).unwrap();
    assert_eq!(volume.read("after").unwrap(), chunk);
    volume.verify().unwrap();
}

#[test]
fn many_commits_wrap_the_journal_through_checkpoints() {
    let (volume, disk) = fresh(256);
    let mut log = volume.create("log").unwrap();
    for i in 0..400 {
        log.write_all(&[i as u8; 10]).unwrap();
        log.sync_all().unwrap();
        if i % 50 == 0 {
            volume.write(&format!("side-{i}"), [i as u8; 5000]).unwrap();
            volume.rename(&format!("side-{i}"), "side").unwrap();
        }
    }
    assert!(volume.stats().checkpoints > 3, "{:?}", volume.stats());
    let expected = snapshot(&volume);
    drop((log, volume));
    let volume = Volume::mount(disk.fork()).unwrap();
    assert_eq!(snapshot(&volume), expected);
}

#[test]
fn a_file_cannot_grow_past_the_volume() {
    let (volume, _) = fresh(1024);
    let file = volume.create("sparse").unwrap();
    assert_eq!(kind(file.set_len(1 << 40)), ErrorKind::FileTooLarge);
    file.set_len(3 << 20).unwrap();
    assert_eq!(volume.read("sparse").unwrap(), vec![0; 3 << 20]);
}
