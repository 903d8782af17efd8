//! The foundation, shown in QEMU: apps run in ring 3, kcalls round-trip, and every kind of
//! ring-3 fault is reported with the app's name while kernel-lite survives to end the machine.

use system_tests::{Firmware, ImageOutcome, assert_serial_contains, boot, run_disk};

#[test]
fn hello_runs_in_ring_3_and_the_image_exits_successfully() {
    let output = boot("hello", Firmware::Bios);
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
    let output = boot("hello", Firmware::Uefi);
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
    let manifest = xtask::bundle::load(&xtask::bundle::find("hello").unwrap()).unwrap();
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
    let manifest = xtask::bundle::load(&xtask::bundle::find("hello").unwrap()).unwrap();
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

/// Boots a counter and, once it has counted to 3, sends `command` to QEMU's monitor.
fn counter_with_injected(name: &str, command: &str) -> system_tests::RunOutput {
    use system_tests::{Injection, RunOptions, boot_with};
    let socket = std::env::temp_dir().join(format!("libos-{name}-{}.sock", std::process::id()));
    let options = RunOptions {
        monitor_socket: Some(socket.clone()),
        ..RunOptions::default()
    };
    let injection = Injection {
        after: "[counter] count 3".into(),
        socket,
        commands: vec![command.into()],
    };
    boot_with("counter", Firmware::Bios, &options, Some(&injection))
}

#[test]
fn an_nmi_while_an_app_runs_is_reported_prints_the_tables_and_the_app_runs_on() {
    let output = counter_with_injected("nmi", "nmi");
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: non-maskable interrupt at RIP",
            "; diagnostics requested",
            "kernel-lite: diagnostics (apps still running)",
            "kernel-lite: end of tables",
            "[counter] count 40",
            "kernel-lite: app 'counter' exited with status 0",
        ],
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn a_machine_check_stops_the_machine_whatever_ring_runs() {
    // Bank 1: valid, uncorrected, enabled; MCG_STATUS: RIPV, EIPV, MCIP.
    let output = counter_with_injected("mce", "mce 0 1 0xb000000000000000 0x7 0 0");
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: FATAL: machine check (vector 18)",
            "a hardware error; the machine stops",
        ],
    );
    assert!(!output.serial.contains("[counter] count 40"));
    assert_eq!(output.outcome, Some(ImageOutcome::KernelPanic));
}

/// Without NX, W^X cannot hold, so nothing may run. On QEMU the bootloader (which sets
/// EFER.NXE itself) already stops such a CPU before kernel-lite starts; kernel-lite's own refusal
/// (`cpu::CpuRefused::NoExecuteMissing`, checked against CPUID and EFER read back) guards the
/// boot paths that do not. Either way: no app runs and the image does not report success.
#[test]
fn a_cpu_without_nx_runs_no_app() {
    use system_tests::{RunOptions, boot_with};
    let options = RunOptions {
        cpu: Some("max,nx=off".into()),
        ..RunOptions::default()
    };
    let output = boot_with("hello", Firmware::Bios, &options, None);
    assert!(!output.serial.contains("[hello]"), "an app ran without NX");
    assert!(!output.serial.contains("cpu protection: NX=off"));
    assert_ne!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn the_boot_lines_show_the_protections_and_gate_registers_read_back() {
    let output = boot("hello", Firmware::Bios);
    let gate = output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix("kernel-lite: kcall gate: "))
        .expect("the gate line");
    for register in ["STAR=", "LSTAR=0xffff", "SFMASK=", "EFER=", "CR0=", "CR4="] {
        assert!(gate.contains(register), "{gate}");
    }
    // EFER: SCE (bit 0), LME, LMA and NXE (bit 11) read back set.
    let efer = gate
        .split_whitespace()
        .find_map(|field| field.strip_prefix("EFER=0x"))
        .map(|hex| u64::from_str_radix(hex, 16).unwrap())
        .unwrap();
    assert_eq!(efer & (1 | 1 << 11), 1 | 1 << 11, "EFER {efer:#x}");
}

#[test]
fn every_console_line_carries_its_true_origin() {
    let output = boot("forger", Firmware::Bios);
    for line in output.serial.lines() {
        let honest = line.starts_with("[counter] ")
            || line.starts_with("[forger] ")
            || line.starts_with("kernel-lite: ")
            || line.starts_with("app ")
            || line.starts_with("counter ")
            || line.starts_with("forger ")
            || line.is_empty();
        assert!(honest, "a line of unknown origin: {line:?}");
        assert!(!line.contains('\r') && !line.contains('\x1b'), "{line:?}");
        if line.starts_with("kernel-lite: ") {
            assert!(
                !line.contains("forged by") && line != "kernel-lite: forged",
                "{line:?}"
            );
        }
    }
    assert_serial_contains(
        &output,
        &[
            "[forger] half a line, left open ",
            "[forger] \\x0dkernel-lite: app 'counter' exited with status 0",
            "[forger] \\x1b[2K\\x1b[1Gkernel-lite: forged by an escape sequence",
            "kernel-lite: app 'forger' ended by panic: panicked at apps/selftest/src/lib.rs:",
            "forged\\x0akernel-lite: all apps ended",
        ],
    );
    // The half line was ended before anyone else wrote, and finished on a line of its own.
    let half = output
        .serial
        .lines()
        .find(|line| line.starts_with("[forger] half a line"))
        .unwrap();
    assert_eq!(half, "[forger] half a line, left open ");
    assert!(output.serial.contains("\n[forger] then finished\n"));
    assert_eq!(
        output
            .serial
            .lines()
            .filter(|line| *line == "kernel-lite: all apps ended")
            .count(),
        1
    );
    assert_eq!(
        system_tests::accounting_row(&output, "counter").end,
        "exit 0"
    );
    assert_eq!(output.outcome, Some(ImageOutcome::SomeAppFailed));
}
