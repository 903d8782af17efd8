//! Devices, shown in QEMU: kernel-lite reads the ACPI tables (MADT, MCFG), enumerates PCI over
//! ECAM, runs its timer on the local APIC, and takes a real device interrupt through the I/O
//! APIC and one sent as an MSI-X message — on BIOS and UEFI alike; and a CPU without a local
//! APIC falls back to the PIT.

use system_tests::{Firmware, ImageOutcome, RunOptions, RunOutput, assert_serial_contains, boot};

/// The kernel-lite line that starts with `prefix`, without the prefix.
fn line_after<'a>(output: &'a RunOutput, prefix: &str) -> &'a str {
    output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting {prefix:?}"))
}

/// The number right after `label` in `text`.
fn number_after(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("{label:?} in {text:?}"))
        + label.len();
    text[at..]
        .split(|c: char| !c.is_ascii_digit() && c != '.')
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("a number after {label:?} in {text:?}"))
}

fn q35_devices_and_interrupts(firmware: Firmware) {
    let output = boot("hello", firmware);
    assert_serial_contains(
        &output,
        &[
            // ACPI: q35 has one CPU (as started here), one I/O APIC and the ISA overrides.
            "kernel-lite: acpi: MADT: 1 CPU(s), local APIC at 0xfee00000, 1 I/O APIC(s)",
            "kernel-lite: acpi: MADT overrides: IRQ0->GSI2,",
            "kernel-lite: acpi: MCFG: PCI ECAM at 0xb0000000, segment 0, buses 00-ff",
            "kernel-lite: local APIC 0 at 0xfee00000",
            "kernel-lite: I/O APIC 0 at 0xfec00000: GSI 0-23, all masked",
            // DMA-able memory: a contiguous, aligned, zeroed run, returned when dropped.
            "kernel-lite: dma: 64 KiB contiguous at 0x",
            ", aligned, zeroed, returned",
            // PCI: the q35 host bridge and the ICH9 LPC/ISA bridge, with their classes.
            "kernel-lite: pci 00:00.0 8086:29c0 class 06.00 (host bridge)",
            "kernel-lite: pci 00:1f.0 8086:2918 class 06.01 (ISA bridge)",
            // The ICH9 AHCI controller: its BARs were sized by the probe, MSI found.
            "kernel-lite: pci 00:1f.2 8086:2922 class 01.06 (SATA) bar4=io ",
            "[hello] Hello from hello, a libos app! CPL=3",
        ],
    );
    // The default NIC (e1000e) has an MSI-X table of 5 vectors.
    let nic = line_after(
        &output,
        "kernel-lite: pci 00:02.0 8086:10d3 class 02.00 (Ethernet)",
    );
    assert!(nic.contains("msi-x(5)"), "{nic}");

    // The timer is the local APIC's, calibrated against the PIT: QEMU's runs at 1 GHz / 16.
    let timer = line_after(&output, "kernel-lite: TSC ");
    assert!(timer.contains("timer: LAPIC one-shot at "), "{timer}");
    let mhz = number_after(timer, "one-shot at ");
    assert!((55.0..70.0).contains(&mhz), "LAPIC timer at {mhz} MHz");

    // A real device interrupt: the RTC's periodic interrupt through the I/O APIC.
    let check = line_after(
        &output,
        "kernel-lite: device interrupts: RTC IRQ 8 -> GSI 8 -> I/O APIC -> vector 0x50: ",
    );
    let interrupts = number_after(check, "");
    assert!(interrupts >= 1.0, "no RTC interrupt counted: {check}");
    // And MSI-X: the NIC's table entry 0 aimed at a device vector, its cause raised 8 times.
    let msix = line_after(
        &output,
        "kernel-lite: device interrupts: MSI-X 00:02.0 8086:10d3 entry 0 -> vector 0x50: ",
    );
    assert_eq!(msix, "8 of 8 interrupts");
    assert!(!output.serial.contains("which has no handler"));
    assert!(!output.serial.contains("local APIC error"));
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn q35_devices_and_interrupts_on_bios() {
    q35_devices_and_interrupts(Firmware::Bios);
}

#[test]
fn q35_devices_and_interrupts_on_uefi() {
    q35_devices_and_interrupts(Firmware::Uefi);
}

#[test]
fn without_a_local_apic_the_pit_drives_preemption() {
    let options = RunOptions {
        cpu: Some("max,-apic".into()),
        ..RunOptions::default()
    };
    let output = system_tests::boot_with("preemption", Firmware::Bios, &options, None);
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: local APIC not used: the CPU reports no local APIC",
            "timer: PIT periodic at 1000 Hz",
            "kernel-lite: device interrupts: not checked: no local APIC is in use",
            // QEMU gives the NIC no MSI-X without an APIC to take the messages.
            "kernel-lite: device interrupts: MSI-X not checked: ",
            "[sleeper] slept 20 times",
        ],
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}
