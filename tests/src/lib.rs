//! The harness of the in-QEMU tests: build a bundle's image the way `cargo xtask run` does,
//! boot it with the serial console captured, and hand the output to the test's assertions.

pub use lite_abi::exit::ImageOutcome;
use std::time::Duration;
pub use xtask::image::Firmware;
pub use xtask::qemu::{Injection, RunOptions, RunOutput};

/// Longest a test image may run under TCG before it counts as hung.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds bundle `name` and boots it on `firmware`; panics (failing the test) if anything on the
/// way fails or QEMU hangs.
pub fn boot(name: &str, firmware: Firmware) -> RunOutput {
    boot_with(name, firmware, &RunOptions::default(), None)
}

/// Like [`boot`], with QEMU options (another `-cpu`, `-m`, a monitor) and monitor commands to
/// send once a line appears.
pub fn boot_with(
    name: &str,
    firmware: Firmware,
    options: &RunOptions,
    injection: Option<&Injection>,
) -> RunOutput {
    xtask::qemu::ensure_installed().expect("QEMU is installed");
    let manifest = xtask::bundle::load(&xtask::bundle::find(name).unwrap()).unwrap();
    // Tests run in parallel and several boot one bundle: each builds under a lock and boots a
    // copy of its own, so no QEMU reads an image another test is rewriting (or has locked).
    let copy = {
        static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let _building = BUILDING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (_, disk) = xtask::boot_image(&manifest, firmware).unwrap();
        let copy = disk.with_file_name(format!(
            "run-{}-{}.img",
            std::process::id(),
            COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::copy(&disk, &copy).unwrap();
        copy
    };
    let output = run_disk_with(&copy, firmware, options, injection);
    let _ = std::fs::remove_file(&copy);
    output
}

/// Boots an already written disk image.
pub fn run_disk(disk: &std::path::Path, firmware: Firmware) -> RunOutput {
    run_disk_with(disk, firmware, &RunOptions::default(), None)
}

fn run_disk_with(
    disk: &std::path::Path,
    firmware: Firmware,
    options: &RunOptions,
    injection: Option<&Injection>,
) -> RunOutput {
    let profile = xtask::qemu::Profile::for_firmware(firmware).unwrap();
    let command = xtask::qemu::command(&profile, disk, options).unwrap();
    let output = match injection {
        Some(injection) => xtask::qemu::run_injecting(command, BOOT_TIMEOUT, injection),
        None => xtask::qemu::run_captured(command, BOOT_TIMEOUT),
    }
    .unwrap();
    // Shown by the test harness when the test fails.
    println!(
        "---- serial ({:?}, {:.1} s) ----\n{}",
        output.status,
        output.wall.as_secs_f64(),
        output.serial
    );
    assert!(
        !output.timed_out,
        "QEMU did not end within {BOOT_TIMEOUT:?}"
    );
    output
}

/// Asserts that the serial output contains every one of `needles`.
pub fn assert_serial_contains(output: &RunOutput, needles: &[&str]) {
    for needle in needles {
        assert!(
            output.serial.contains(needle),
            "serial output lacks {needle:?}"
        );
    }
}

/// One row of the per-app accounting table kernel-lite prints when the image ends.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountingRow {
    pub end: String,
    pub memory_kib: u64,
    pub peak_kib: u64,
    pub heap_peak_kib: u64,
    pub quota_kib: u64,
    pub restarts: u64,
    pub cpu_percent: f64,
    /// kcall name → count (only kcalls the app made).
    pub kcalls: std::collections::BTreeMap<String, u64>,
    /// Other entries into ring 0 by cause (`page_fault`, `interrupt`, `exception`,
    /// `unknown_kcall`) → count, only those that happened.
    pub traps: std::collections::BTreeMap<String, u64>,
}

/// The lines of the accounting table, found only where kernel-lite wrote it: after its own
/// whole line `kernel-lite: all apps ended` (an app's lines all start with `[name] `, so no app
/// can print that line) up to its closing `kernel-lite: frames in use` line.
fn accounting_table(output: &RunOutput) -> Vec<&str> {
    let mut lines = output.serial.lines();
    lines
        .by_ref()
        .find(|line| *line == "kernel-lite: all apps ended")
        .expect("kernel-lite printed its accounting table");
    lines
        .take_while(|line| !line.starts_with("kernel-lite: frames in use"))
        .collect()
}

fn pairs(words: &[&str]) -> std::collections::BTreeMap<String, u64> {
    words
        .iter()
        .map(|pair| {
            let (name, count) = pair.split_once('=').expect("name=count");
            (name.to_owned(), count.parse().expect("a count"))
        })
        .collect()
}

/// The accounting row of `app`; panics if the table has none.
pub fn accounting_row(output: &RunOutput, app: &str) -> AccountingRow {
    for line in accounting_table(output) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&app) {
            continue;
        }
        // name, end (one or two words), then six numbers, then kcalls | traps.
        let (end, rest) = if words[1] == "exit" {
            (format!("exit {}", words[2]), &words[3..])
        } else {
            (words[1].to_owned(), &words[2..])
        };
        let number = |index: usize| rest[index].parse::<u64>().expect("a number");
        let bar = rest
            .iter()
            .position(|word| *word == "|")
            .expect("kcalls | traps");
        return AccountingRow {
            end,
            memory_kib: number(0),
            peak_kib: number(1),
            heap_peak_kib: number(2),
            quota_kib: number(3),
            restarts: number(4),
            cpu_percent: rest[5].parse().expect("a percentage"),
            kcalls: pairs(&rest[6..bar]),
            traps: pairs(&rest[bar + 1..]),
        };
    }
    panic!("no accounting row for app {app:?}");
}

/// Frames in use when the image ended, and before the first app started, from kernel-lite's
/// closing line: every app's memory is returned when the two are equal.
pub fn frames_at_end_and_before_apps(output: &RunOutput) -> (u64, u64) {
    let line = output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix("kernel-lite: frames in use "))
        .expect("kernel-lite's closing line");
    let number_after = |label: &str| -> u64 {
        let at = line.find(label).expect(label) + label.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let end = line
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("frames in use");
    (end, number_after("; before the apps "))
}

/// How many times `needle` occurs in the serial output.
pub fn count_occurrences(output: &RunOutput, needle: &str) -> usize {
    output.serial.matches(needle).count()
}
