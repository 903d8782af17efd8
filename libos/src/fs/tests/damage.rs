//! Damaged, foreign and wrong-sized extents: byte flips anywhere are detected (a mount error
//! by name, or a read error) and never returned as good data, never a panic; extents that
//! are not volumes are refused by name and never reformatted.

use super::*;

/// A small volume with files, directories and live journal records (after a checkpoint),
/// the state before its last commit, and its final state.
fn populated(blocks: u64) -> (RamDisk, Snapshot, Snapshot) {
    let disk = SparseDisk::new(blocks);
    let volume = Volume::mount(disk.clone()).unwrap();
    volume.create_dir_all("d/e").unwrap();
    volume.write("d/e/big", pattern(30_000, 1)).unwrap();
    volume.write("small", b"small file").unwrap();
    volume.checkpoint().unwrap();
    volume.write("log", pattern(5000, 2)).unwrap();
    volume.sync().unwrap();
    volume.write("d/x.tmp", pattern(9000, 3)).unwrap();
    volume.sync().unwrap();
    let before_last = snapshot(&volume);
    volume.rename("d/x.tmp", "d/x").unwrap();
    let last = snapshot(&volume);
    drop(volume);
    let mut image = vec![0u8; blocks as usize * BLOCK_BYTES];
    for (block, data) in disk.blocks.lock().unwrap().iter() {
        image[*block as usize * BLOCK_BYTES..][..BLOCK_BYTES].copy_from_slice(data);
    }
    (RamDisk::from_bytes(image), before_last, last)
}

/// Mounts `disk` after damage: a named mount error, or a volume whose every file reads as
/// in `last` (or, for damage to the newest record, which looks like a torn commit, in
/// `before_last`) or fails with InvalidData.
fn check_damaged(disk: RamDisk, before_last: &Snapshot, last: &Snapshot, what: &str) {
    let volume = match Volume::mount(disk) {
        Ok(volume) => volume,
        Err(MountError::NoDisk | MountError::Device(_) | MountError::TooSmall { .. }) => {
            panic!("{what}: wrong error")
        }
        Err(_) => return,
    };
    let names: Vec<String> = match try_snapshot(&volume) {
        Ok(found) => {
            assert!(
                found == *last || found == *before_last,
                "{what}: damaged data returned as good"
            );
            return;
        }
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::InvalidData, "{what}");
            last.keys().cloned().collect()
        }
    };
    // Some file fails; every one that reads must read right.
    for name in names {
        if let (Ok(contents), Some(Entry::File(expected))) = (volume.read(&name), last.get(&name)) {
            let earlier = before_last.get(&name);
            assert!(
                contents == *expected || earlier == Some(&Entry::File(contents.clone())),
                "{what}: {name} wrong"
            );
        }
    }
    assert!(
        matches!(volume.verify(), Err(FsError::DamagedData { .. })),
        "{what}"
    );
}

#[test]
fn byte_flips_anywhere_are_caught() {
    let blocks = 128;
    let (image, before_last, last) = populated(blocks);
    let mut seed = 7u64;
    for block in 0..blocks as usize {
        for _ in 0..3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let offset = block * BLOCK_BYTES + (seed >> 40) as usize % BLOCK_BYTES;
            let mut damaged = image.clone();
            damaged.bytes_mut()[offset] ^= 1 << (seed % 8);
            check_damaged(
                damaged,
                &before_last,
                &last,
                &format!("flip at byte {offset} (block {block})"),
            );
        }
        // The first bytes of every block hold the headers: flip there too.
        let mut damaged = image.clone();
        damaged.bytes_mut()[block * BLOCK_BYTES + 9] ^= 0x40;
        check_damaged(
            damaged,
            &before_last,
            &last,
            &format!("header flip in block {block}"),
        );
    }
}

#[test]
fn a_damaged_data_block_is_named_on_read() {
    let disk = SparseDisk::new(256);
    let volume = Volume::mount(disk.clone()).unwrap();
    volume.write("victim", pattern(10_000, 4)).unwrap();
    volume.sync().unwrap();
    // Another commit after it: damage to the data of the newest commit alone looks like a
    // commit cut before its flush, and that commit is left out instead.
    volume.write("later", b"x").unwrap();
    volume.sync().unwrap();
    drop(volume);
    // The file's second block: the data area's blocks after the first checkpoint.
    let second = {
        let blocks = disk.blocks.lock().unwrap();
        let data = pattern(10_000, 4);
        *blocks
            .iter()
            .find(|(_, block)| block[..] == data[BLOCK_BYTES..2 * BLOCK_BYTES])
            .unwrap()
            .0
    };
    let mut blocks = disk.blocks.lock().unwrap();
    StdArc::make_mut(blocks.get_mut(&second).unwrap())[100] ^= 1;
    drop(blocks);
    let volume = Volume::mount(disk).unwrap();
    let mut file = volume.open("victim").unwrap();
    let mut first = vec![0; BLOCK_BYTES];
    file.read_exact(&mut first).unwrap();
    assert_eq!(
        file.read(&mut first).unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    assert_eq!(
        volume.read("victim").unwrap_err().kind(),
        ErrorKind::InvalidData
    );
    assert_eq!(
        volume.verify(),
        Err(FsError::DamagedData {
            inode: 2,
            file_block: 1,
            disk_block: second
        })
    );
}

#[test]
fn foreign_garbage_and_wrong_sizes_are_refused_by_name() {
    // Garbage at the start: never reformatted.
    let mut garbage = RamDisk::new(256);
    garbage.bytes_mut()[..4096]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8 ^ 0x5a);
    assert_eq!(
        Volume::mount(garbage.clone()).unwrap_err(),
        MountError::NotAVolume
    );
    assert_eq!(garbage.bytes()[0], 0x5a);
    // An ext-style superblock at byte 1024 only.
    let mut foreign = RamDisk::new(256);
    foreign.bytes_mut()[1024 + 56..1024 + 58].copy_from_slice(&[0x53, 0xef]);
    assert_eq!(Volume::mount(foreign).unwrap_err(), MountError::NotAVolume);
    // Something only in the last block (a backup partition table).
    let mut tail = RamDisk::new(256);
    let end = tail.bytes().len();
    tail.bytes_mut()[end - 512..end - 504].copy_from_slice(b"EFI PART");
    assert_eq!(Volume::mount(tail).unwrap_err(), MountError::NotAVolume);
    // Too small for a volume.
    assert_eq!(
        Volume::mount(RamDisk::new(10)).unwrap_err(),
        MountError::TooSmall { blocks: 10 }
    );
    // A volume on a truncated or grown extent.
    let disk = SparseDisk::new(256);
    Volume::mount(disk.clone())
        .unwrap()
        .write("x", b"1")
        .unwrap();
    let blocks = disk.blocks.lock().unwrap().clone();
    let truncated = SparseDisk::from_blocks(blocks.clone(), 200);
    assert_eq!(
        Volume::mount(truncated).unwrap_err(),
        MountError::SizeMismatch {
            recorded: 256,
            device: 200
        }
    );
    // Both superblocks damaged; one damaged is survived.
    let mut one = blocks.clone();
    let first_slot = one.keys().copied().find(|b| *b < 2).unwrap();
    StdArc::make_mut(one.get_mut(&first_slot).unwrap())[20] ^= 1;
    let survived = Volume::mount(SparseDisk::from_blocks(one.clone(), 256));
    assert!(matches!(
        survived,
        Ok(_) | Err(MountError::BadCheckpoint { .. } | MountError::BadJournal { .. })
    ));
    for slot in 0..2u64 {
        let block = one
            .entry(slot)
            .or_insert_with(|| StdArc::new(vec![0; BLOCK_BYTES]));
        let block = StdArc::make_mut(block);
        block[..8].copy_from_slice(b"LIBOSFS\x01");
        block[30] ^= 1;
    }
    assert_eq!(
        Volume::mount(SparseDisk::from_blocks(one, 256)).unwrap_err(),
        MountError::BadSuperblock
    );
    // A blank extent is formatted; an explicit format takes anything.
    assert!(Volume::mount(RamDisk::new(64)).is_ok());
    let volume = Volume::format(garbage).unwrap();
    assert!(volume.read_dir("/").unwrap().next().is_none());
}

#[test]
fn random_images_never_panic() {
    let mut seed = 99u64;
    for round in 0..200 {
        let mut disk = RamDisk::new(64);
        for byte in disk.bytes_mut().iter_mut().take(8 * BLOCK_BYTES) {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *byte = (seed >> 56) as u8;
        }
        if round % 2 == 0 {
            // Our magic with garbage behind it.
            disk.bytes_mut()[..8].copy_from_slice(b"LIBOSFS\x01");
        }
        assert!(Volume::mount(disk).is_err());
    }
}
