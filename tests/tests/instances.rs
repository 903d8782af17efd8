//! Per-app instances, shown in QEMU: apps with their own heaps side by side, fault containment
//! with restart policies, preemption, and the accounting that checks CSE work makes no kcalls.

use system_tests::{
    Firmware, ImageOutcome, accounting_row, assert_serial_contains, boot, count_occurrences,
    frames_at_end_and_before_apps,
};

#[test]
fn two_apps_fill_their_own_heaps_at_once_within_their_quotas() {
    let output = boot("two-fillers", Firmware::Bios);
    assert_serial_contains(
        &output,
        &["[fill-a] filled 47 chunks", "[fill-b] filled 23 chunks"],
    );
    assert_eq!(count_occurrences(&output, ": all intact;"), 2);
    for app in ["fill-a", "fill-b"] {
        let row = accounting_row(&output, app);
        assert_eq!(row.end, "exit 0");
        assert!(row.heap_peak_kib <= row.quota_kib, "{app}: {row:?}");
        assert!(
            row.heap_peak_kib * 2 > row.quota_kib,
            "{app} filled its heap: {row:?}"
        );
        // Each gave the CPU away between chunks, so the two really ran interleaved.
        assert!(row.kcalls["yield"] >= 20, "{app}: {row:?}");
    }
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

/// Fault reports are the deepest paths in ring 0: each image says how deep its kernel stacks
/// went, and that must stay under half of a stack, so a deeper path shows here first.
fn assert_kernel_stacks_have_room(output: &system_tests::RunOutput) {
    let line = output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix("kernel-lite: deepest kernel stack use "))
        .expect("kernel-lite reports its deepest kernel stack use");
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse().unwrap())
        .collect();
    let (used, size) = (numbers[0], numbers[1]);
    assert!(
        used * 2 <= size,
        "kernel stacks went {used} of {size} bytes deep"
    );
}

/// A counter beside an app that crashes by `report`, restarted twice (`on-failure`, limit 2).
fn crash_is_contained(bundle: &str, report: &str) {
    let output = boot(bundle, Firmware::Bios);
    let ended = format!("kernel-lite: app 'crasher' ended by {report}");
    assert_eq!(
        count_occurrences(&output, &ended),
        3,
        "one crash per run: {ended}"
    );
    assert_eq!(
        count_occurrences(&output, "kernel-lite: restarting app 'crasher'"),
        2
    );
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: app 'crasher' will restart in 50 ms (0 of 2 restarts used)",
            "kernel-lite: app 'crasher' will restart in 100 ms (1 of 2 restarts used)",
            "kernel-lite: app 'crasher' is not restarted: restart limit 2 reached",
            "[counter] count 40",
            "kernel-lite: app 'counter' exited with status 0",
        ],
    );
    // The counter kept counting between the first crash and the last.
    let first = output.serial.find(&ended).unwrap();
    let last = output.serial.rfind(&ended).unwrap();
    assert!(
        output.serial[first..last]
            .matches("[counter] count")
            .count()
            >= 3,
        "the counter did not count through the crashes"
    );
    let crasher = accounting_row(&output, "crasher");
    assert_eq!((crasher.end.as_str(), crasher.restarts), ("fault", 2));
    assert_eq!(crasher.memory_kib, 0, "an ended app's memory is returned");
    let (end, before) = frames_at_end_and_before_apps(&output);
    assert_eq!(
        end, before,
        "every frame the apps took (three crasher runs, the counter) is back"
    );
    assert_kernel_stacks_have_room(&output);
    assert_eq!(accounting_row(&output, "counter").end, "exit 0");
    assert_eq!(output.outcome, Some(ImageOutcome::SomeAppFailed));
}

#[test]
fn a_panicking_app_is_restarted_while_the_counter_counts() {
    crash_is_contained(
        "crash-panic",
        "panic: panicked at apps/selftest/src/lib.rs:",
    );
}

#[test]
fn a_page_faulting_app_is_restarted_while_the_counter_counts() {
    crash_is_contained(
        "crash-page-fault",
        "page fault (vector 14) at address 0x10,",
    );
}

#[test]
fn a_general_protection_fault_is_contained() {
    crash_is_contained(
        "crash-general-protection",
        "general protection fault (vector 13)",
    );
}

#[test]
fn an_invalid_opcode_is_contained() {
    crash_is_contained("crash-invalid-opcode", "invalid opcode (vector 6)");
}

#[test]
fn a_debug_exception_is_contained_on_its_own_stack() {
    crash_is_contained("crash-debug-trap", "debug exception (vector 1)");
}

#[test]
fn a_stack_overflow_is_contained() {
    crash_is_contained("crash-stack-overflow", "page fault (vector 14)");
    let output = boot("crash-stack-overflow", Firmware::Bios);
    assert_eq!(
        count_occurrences(&output, "(stack overflow into the guard page)"),
        3
    );
}

#[test]
fn running_out_of_memory_ends_only_that_app() {
    crash_is_contained(
        "crash-out-of-memory",
        "out of memory: allocation of 65536 bytes failed",
    );
}

#[test]
fn an_app_dying_inside_libos_holding_a_lock_wedges_nothing() {
    crash_is_contained(
        "crash-holding-lock",
        "page fault (vector 14) at address 0x10,",
    );
}

#[test]
fn a_spinning_app_does_not_starve_a_sleeping_one() {
    let output = boot("preemption", Firmware::Bios);
    let line = output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix("[sleeper] slept 20 times; max oversleep "))
        .expect("the sleeper finished");
    let oversleep_us: u64 = line.trim_end_matches(" us").parse().unwrap();
    // Without preemption the sleeper would wait out the spinner's whole 1.5 s. With it, a sleep
    // ends within a timer tick or two; the bound leaves room for a slow, shared machine.
    assert!(oversleep_us < 300_000, "oversleep {oversleep_us} us");
    let slept = output.serial.find("[sleeper] slept").unwrap();
    let spun = output
        .serial
        .find("[spinner] spun")
        .expect("the spinner finished");
    assert!(
        slept < spun,
        "the sleeper finished while the spinner still spun"
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn cse_work_makes_no_kcall_but_to_sleep_print_and_exit() {
    let output = boot("quiet", Firmware::Bios);
    assert_serial_contains(&output, &["[worker] 8 tasks, 16 timers, 8824 primes"]);
    let row = accounting_row(&output, "worker");
    assert_eq!(row.end, "exit 0");
    for kcall in row.kcalls.keys() {
        assert!(
            ["console_write", "wait", "exit"].contains(&kcall.as_str()),
            "the worker made a {kcall} kcall: {row:?}"
        );
    }
    assert_eq!(
        row.kcalls["console_write"], 1,
        "one line printed, one kcall"
    );
    assert_eq!(row.kcalls["exit"], 1);
    assert!(
        row.kcalls["wait"] >= 1,
        "an idle executor sleeps through wait"
    );
    // Traps: demand paging of the pages it touches, and the timer ticks that landed while it
    // ran; no other exception and no bad kcall.
    assert!(!row.traps.contains_key("exception"), "{row:?}");
    assert!(!row.traps.contains_key("unknown_kcall"), "{row:?}");
    let page_faults = row.traps.get("page_fault").copied().unwrap_or(0);
    assert!(
        page_faults <= 24,
        "the worker's first touches cost {page_faults} page faults: {row:?}"
    );
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
}

#[test]
fn the_demo_bundle_interleaves_apps_and_restarts_the_crasher() {
    let output = boot("demo-multi", Firmware::Bios);
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: started 4 app(s)",
            "[hello] Hello from hello, a libos app! CPL=3",
            "[worker] 8 tasks, 16 timers",
            "kernel-lite: restarting app 'crasher' (restart 2 of 2)",
            "[counter] count 40",
        ],
    );
    // Lines of different apps alternate on the console.
    let prefixes: Vec<&str> = output
        .serial
        .lines()
        .filter_map(|line| line.strip_prefix('[')?.split(']').next())
        .collect();
    let switches = prefixes
        .windows(2)
        .filter(|pair| pair[0] != pair[1])
        .count();
    assert!(switches >= 6, "apps did not interleave: {prefixes:?}");
    assert_eq!(accounting_row(&output, "crasher").restarts, 2);
    assert_eq!(output.outcome, Some(ImageOutcome::SomeAppFailed));
}
