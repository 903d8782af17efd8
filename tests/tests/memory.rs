//! Memory is guaranteed per app: admission control reserves each app's quota at boot or refuses
//! the bundle by how much; an app at its quota takes nothing from its neighbour; a large app
//! ending and restarting on a large guest returns and retakes its frames with no halt.

use system_tests::{
    Firmware, ImageOutcome, RunOptions, accounting_row, assert_serial_contains, boot_with,
    count_occurrences, frames_at_end_and_before_apps,
};

fn with_memory(memory: &str) -> RunOptions {
    RunOptions {
        memory: Some(memory.to_owned()),
        ..RunOptions::default()
    }
}

/// KiB the boot line says are free beyond what the apps were guaranteed.
fn free_beyond_guarantees(output: &system_tests::RunOutput) -> u64 {
    let line = output
        .serial
        .lines()
        .find(|line| line.starts_with("kernel-lite: started "))
        .expect("the apps started");
    let before = line
        .strip_suffix(" KiB free beyond that")
        .expect("the started line ends with the free memory");
    before.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn a_hog_at_its_quota_beside_a_counter_on_a_tight_machine() {
    let output = boot_with("hog", Firmware::Bios, &with_memory("32M"), None);
    let spare = free_beyond_guarantees(&output);
    assert!(
        spare < 4 * 1024,
        "the machine is tight: {spare} KiB spare beyond the guarantees"
    );
    assert_serial_contains(
        &output,
        &[
            "[hog] chunks intact",
            "[counter] count 40",
            "kernel-lite: app 'counter' exited with status 0",
            "kernel-lite: app 'hog' exited with status 0",
        ],
    );
    let hog = accounting_row(&output, "hog");
    assert!(
        hog.heap_peak_kib * 10 >= hog.quota_kib * 9,
        "the hog used (nearly) all its quota: {hog:?}"
    );
    assert_eq!(accounting_row(&output, "counter").end, "exit 0");
    let (end, before) = frames_at_end_and_before_apps(&output);
    assert_eq!(end, before);
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn a_bundle_that_does_not_fit_is_refused_by_how_much() {
    let output = boot_with("hog", Firmware::Bios, &with_memory("24M"), None);
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: bundle refused: its 2 app(s) need ",
            " short by ",
        ],
    );
    assert!(!output.serial.contains("[counter]"), "no app ran");
    assert_eq!(output.outcome, Some(ImageOutcome::BundleRefused));
}

fn a_large_app_ends_and_restarts(memory: &str) {
    let output = boot_with("big-restart", Firmware::Bios, &with_memory(memory), None);
    assert_eq!(
        count_occurrences(&output, ": all intact; heap peak "),
        2,
        "the big app filled its heap twice"
    );
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: restarting app 'big' (restart 1 of 1)",
            "[counter] count 40",
            "kernel-lite: app 'counter' exited with status 0",
        ],
    );
    let big = accounting_row(&output, "big");
    assert_eq!((big.end.as_str(), big.restarts), ("exit 0", 1));
    assert!(big.heap_peak_kib > 700 * 1024, "{big:?}");
    // Filling 768 MiB took few traps: the demand-paging runs grow with the heap.
    let faults = big.traps.get("page_fault").copied().unwrap_or(0);
    assert!(
        faults < 20_000,
        "{faults} page faults for two 768 MiB fills"
    );
    let (end, before) = frames_at_end_and_before_apps(&output);
    assert_eq!(end, before, "every frame came back");
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn a_1_gib_app_ends_and_restarts_on_a_2_gib_guest() {
    a_large_app_ends_and_restarts("2G");
}

#[test]
fn a_1_gib_app_ends_and_restarts_on_an_8_gib_guest() {
    a_large_app_ends_and_restarts("8G");
}
