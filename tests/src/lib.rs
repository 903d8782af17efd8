//! The harness of the in-QEMU tests: build a bundle's image the way `cargo xtask run` does,
//! boot it with the serial console captured, and hand the output to the test's assertions.

pub use lite_abi::exit::ImageOutcome;
use std::time::Duration;
pub use xtask::image::Firmware;
pub use xtask::qemu::RunOutput;

/// Longest a test image may run under TCG before it counts as hung.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds bundle `name` and boots it on `firmware`; panics (failing the test) if anything on the
/// way fails or QEMU hangs.
pub fn boot(name: &str, firmware: Firmware) -> RunOutput {
    xtask::qemu::ensure_installed().expect("QEMU is installed");
    let manifest = xtask::bundle::load(&xtask::bundle::find(name).unwrap()).unwrap();
    let (_, disk) = xtask::boot_image(&manifest, firmware).unwrap();
    run_disk(&disk, firmware)
}

/// Boots an already written disk image.
pub fn run_disk(disk: &std::path::Path, firmware: Firmware) -> RunOutput {
    let profile = xtask::qemu::Profile::for_firmware(firmware).unwrap();
    let command = xtask::qemu::command(&profile, disk, &Default::default()).unwrap();
    let output = xtask::qemu::run_captured(command, BOOT_TIMEOUT).unwrap();
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
}

/// The accounting row of `app`; panics if the table has none.
pub fn accounting_row(output: &RunOutput, app: &str) -> AccountingRow {
    let table = output
        .serial
        .split("kernel-lite: all apps ended")
        .nth(1)
        .expect("the image printed its accounting table");
    for line in table.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&app) {
            continue;
        }
        // name, end (one or two words), then six numbers, then kcalls.
        let (end, rest) = if words[1] == "exit" {
            (format!("exit {}", words[2]), &words[3..])
        } else {
            (words[1].to_owned(), &words[2..])
        };
        let number = |index: usize| rest[index].parse::<u64>().expect("a number");
        return AccountingRow {
            end,
            memory_kib: number(0),
            peak_kib: number(1),
            heap_peak_kib: number(2),
            quota_kib: number(3),
            restarts: number(4),
            cpu_percent: rest[5].parse().expect("a percentage"),
            kcalls: rest[6..]
                .iter()
                .filter_map(|pair| {
                    let (name, count) = pair.split_once('=')?;
                    Some((name.to_owned(), count.parse().ok()?))
                })
                .collect(),
        };
    }
    panic!("no accounting row for app {app:?}");
}

/// How many times `needle` occurs in the serial output.
pub fn count_occurrences(output: &RunOutput, needle: &str) -> usize {
    output.serial.matches(needle).count()
}
