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
