//! `disk-probe`: exercises the app's own file system on its extent, for the storage tests.
//!
//! Every run: counts its boots in `boot-count` (so a test sees data persist across QEMU runs),
//! writes `shared.txt` with its own name (every probe of a bundle uses that one file name, and
//! each must read back only its own), and reads back what it wrote. An app whose name starts
//! with `filler` then writes 1 MiB files until the extent is full, and checks that the volume
//! still works (removing one lets a write succeed). Others wait a moment and read their file
//! again, to show the filler left them alone. Any error is printed with its name; the program
//! never panics on what the disk holds.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use libos::fs;
use libos::io::{ErrorKind, Write};
use libos::time::Duration;
use libos::{println, rt, thread};

/// The name every probe's file has.
const SHARED: &str = "shared.txt";

/// `fs::write` and then `sync_all`: on disk when it returns.
fn write_synced(path: &str, bytes: impl AsRef<[u8]>) -> libos::io::Result<()> {
    let mut file = fs::File::create(path)?;
    file.write_all(bytes.as_ref())?;
    file.sync_all()
}

fn name() -> String {
    String::from(rt::current().name())
}

/// Runs the probe; prints `disk-probe NAME: ok` at the end when everything checked out.
pub fn main() -> i32 {
    let name = name();
    match probe(&name) {
        Ok(()) => {
            println!("disk-probe {name}: ok");
            0
        }
        Err(error) => {
            println!("disk-probe {name}: error: {error}");
            1
        }
    }
}

fn probe(name: &str) -> Result<(), String> {
    let boots = match fs::read_to_string("boot-count") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("boot-count holds {text:?}"))?,
        Err(error) if error.kind() == ErrorKind::NotFound => 0,
        Err(error) => return Err(format!("reading boot-count: {error}")),
    } + 1;
    write_synced("boot-count", format!("{boots}\n"))
        .map_err(|e| format!("writing boot-count: {e}"))?;
    println!("disk-probe {name}: boot {boots}");
    let mine = format!("this file belongs to {name}\n").repeat(100);
    write_synced(SHARED, &mine).map_err(|e| format!("writing {SHARED}: {e}"))?;
    check_own_file(name, &mine)?;
    if name.starts_with("filler") {
        fill(name)?;
    } else {
        thread::sleep(Duration::from_secs(2));
        check_own_file(name, &mine)?;
    }
    Ok(())
}

fn check_own_file(name: &str, mine: &str) -> Result<(), String> {
    let read = fs::read(SHARED).map_err(|e| format!("reading {SHARED}: {e}"))?;
    if read != mine.as_bytes() {
        return Err(format!("{SHARED} does not hold what {name} wrote"));
    }
    println!(
        "disk-probe {name}: {SHARED} holds its own {} bytes",
        read.len()
    );
    Ok(())
}

/// Writes 1 MiB files until the volume says it is full, then frees one and writes again.
fn fill(name: &str) -> Result<(), String> {
    let block = vec![0x5a; 1 << 20];
    let mut written = 0;
    loop {
        let file = format!("fill-{written}");
        match write_synced(&file, &block) {
            Ok(()) => written += 1,
            Err(error) if error.kind() == ErrorKind::StorageFull => {
                println!("disk-probe {name}: no space after {written} MiB: {error}");
                break;
            }
            Err(error) => return Err(format!("writing {file}: {error}")),
        }
        if written > 1 << 16 {
            return Err(String::from("never ran out of space"));
        }
    }
    if written == 0 {
        return Err(String::from("not even 1 MiB fit"));
    }
    fs::remove_file("fill-0").map_err(|e| format!("removing fill-0: {e}"))?;
    write_synced("after-full", b"the volume works after it was full")
        .map_err(|e| format!("writing after removing a file: {e}"))?;
    println!("disk-probe {name}: a write after freeing space works");
    Ok(())
}
