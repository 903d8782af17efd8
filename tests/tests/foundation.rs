//! The foundation, shown in QEMU: apps run in ring 3, kcalls round-trip, and every kind of
//! ring-3 fault is reported with the app's name while kernel-lite survives to end the machine.

use system_tests::{Firmware, ImageOutcome, assert_serial_contains, boot, run_disk};

#[test]
fn hello_runs_in_ring_3_and_the_image_exits_successfully() {
    let output = boot("default", Firmware::Bios);
    assert_serial_contains(
        &output,
        &[
            "cpu protection: NX=on SMEP=on SMAP=on UMIP=on",
            "[hello] Hello from hello, a libos app! CPL=3",
            "[hello] allocated 1000 squares",
            "[hello] INFO  hello: slept 10 ms",
            "kernel-lite: app 'hello' exited with status 0",
        ],
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn hello_boots_with_uefi_firmware() {
    let output = boot("default", Firmware::Uefi);
    assert_serial_contains(&output, &["[hello] Hello from hello, a libos app! CPL=3"]);
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn kcalls_round_trip_with_results_and_errors() {
    let output = boot("kcalls", Firmware::Bios);
    assert_serial_contains(
        &output,
        &[
            "[kcalls] check CPL=3: ok",
            "[kcalls] check null kcall returns 0: ok",
            "[kcalls] check unknown kcall is refused: ok",
            "[kcalls] check console write from a kernel address is refused: ok",
            "[kcalls] check console write of an unmapped range is refused: ok",
            "[kcalls] check oversized console write is refused: ok",
            "[kcalls] check sleep 20 ms lasts at least 20 ms: ok",
            "[kcalls] check heap allocation: ok",
        ],
    );
    assert!(!output.serial.contains("FAILED"));
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

/// The image must report the fault, end the app, and still end the machine itself.
fn assert_contained(output: &system_tests::RunOutput, report: &[&str]) {
    assert_serial_contains(output, report);
    assert_serial_contains(output, &["kernel-lite: all apps ended"]);
    assert_eq!(output.outcome, Some(ImageOutcome::SomeAppFailed));
}

#[test]
fn a_ring_3_write_to_kernel_memory_page_faults_and_names_the_app() {
    let output = boot("fault-kernel-write", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'kernel-write' ended by page fault (vector 14) at address 0xffffff0000000000",
            // Present but supervisor-only: a protection violation, not a missing page.
            "PROTECTION_VIOLATION | CAUSED_BY_WRITE | USER_MODE",
            "(ring 3)",
        ],
    );
}

#[test]
fn hlt_in_ring_3_raises_a_general_protection_fault() {
    let output = boot("fault-hlt", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'hlt' ended by general protection fault (vector 13), error code 0x0",
            "(ring 3)",
        ],
    );
}

#[test]
fn cli_in_ring_3_raises_a_general_protection_fault() {
    let output = boot("fault-cli", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'cli' ended by general protection fault (vector 13)",
            "(ring 3)",
        ],
    );
}

#[test]
fn mov_cr3_in_ring_3_raises_a_general_protection_fault() {
    let output = boot("fault-mov-cr3", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'mov-cr3' ended by general protection fault (vector 13)",
            "(ring 3)",
        ],
    );
}

#[test]
fn a_stack_overflow_hits_the_guard_page() {
    let output = boot("fault-stack-overflow", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'stack-overflow' ended by page fault (vector 14)",
            "(stack overflow into the guard page)",
        ],
    );
}

#[test]
fn a_panic_is_reported_with_the_app_and_location() {
    let output = boot("fault-panic", Firmware::Bios);
    assert_contained(
        &output,
        &[
            "kernel-lite: app 'panic' ended by panic: panicked at apps/selftest/src/lib.rs:",
            "a deliberate panic",
        ],
    );
}

#[test]
fn a_corrupt_boot_bundle_is_refused_by_name() {
    let manifest = xtask::bundle::load(&xtask::bundle::find("default").unwrap()).unwrap();
    let out = xtask::target_dir().join("images").join("corrupt-bundle");
    let built = xtask::compile::build_bundle(&manifest, &out).unwrap();
    let mut bytes = std::fs::read(&built.boot_bundle).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&built.boot_bundle, bytes).unwrap();
    let disk = xtask::image::disk_image(&built, Firmware::Bios).unwrap();
    let output = run_disk(&disk, Firmware::Bios);
    assert_serial_contains(
        &output,
        &["kernel-lite: boot bundle refused: not a boot bundle (bad magic)"],
    );
    assert_eq!(output.outcome, Some(ImageOutcome::KernelPanic));
}

#[test]
fn images_are_written_for_bios_uefi_and_as_qcow2() {
    let manifest = xtask::bundle::load(&xtask::bundle::find("default").unwrap()).unwrap();
    let out = xtask::target_dir().join("images").join("image-test");
    let built = xtask::compile::build_bundle(&manifest, &out).unwrap();
    let bios = xtask::image::disk_image(&built, Firmware::Bios).unwrap();
    let uefi = xtask::image::disk_image(&built, Firmware::Uefi).unwrap();
    let qcow2 = xtask::image::qcow2(&bios).unwrap();
    for raw in [&bios, &uefi] {
        // Raw disk images with a partition table: the MBR/protective-MBR signature.
        let bytes = std::fs::read(raw).unwrap();
        assert_eq!(
            &bytes[510..512],
            &[0x55, 0xaa],
            "{} has no boot signature",
            raw.display()
        );
    }
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&qcow2)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
}

/// RFLAGS.AC set in ring 3 (which, in ring 0, would switch SMAP off) survives timer
/// interrupts and a kcall: kernel-lite gives ring 3 its own flags back, and the app exits 0.
#[test]
fn ring_3_keeps_its_own_alignment_check_flag_across_interrupts_and_kcalls() {
    let output = boot("set-ac", Firmware::Bios);
    assert_serial_contains(
        &output,
        &[
            "[set-ac] AC set in ring 3: yes",
            "kernel-lite: app 'set-ac' exited with status 0",
        ],
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}
