//! The per-app accounting table kernel-lite prints when the image ends: how each app ended, its
//! memory now and at peak (all of it, and the heap against its quota), restarts, its share of the CPU, and its kcalls by
//! number, then every other entry into ring 0 (traps) by cause — the check on the design's claim
//! that CSE work makes no kcalls and few traps.

use super::app::App;
use crate::kprintln;
use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;
use lite_abi::kcall::Kcall;
use lite_core::schedule::{AppEnd, Policy, RunState};

pub fn print_table(apps: &[App], policy: &Policy, elapsed_ticks: u64) {
    kprintln!(
        "{:<16} {:<8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>6}  kcalls | traps",
        "app",
        "end",
        "mem KiB",
        "peak KiB",
        "heap peak",
        "quota KiB",
        "restarts",
        "cpu %"
    );
    for app in apps {
        let end = match policy.state(app.index) {
            RunState::Ended(AppEnd::Exited(status)) => format!("exit {status}"),
            RunState::Ended(AppEnd::Faulted) => String::from("fault"),
            _ => String::from("running"),
        };
        let mut kcalls = String::new();
        for kcall in Kcall::ALL {
            let count = app.entries.kcalls[kcall as usize].load(Ordering::Relaxed);
            if count > 0 {
                kcalls.push_str(&format!("{}={} ", kcall.name(), count));
            }
        }
        kcalls.push_str("| ");
        for (name, count) in [
            (
                "page_fault",
                app.entries.page_faults.load(Ordering::Relaxed),
            ),
            ("interrupt", app.entries.interrupts.load(Ordering::Relaxed)),
            ("exception", app.entries.exceptions.load(Ordering::Relaxed)),
            (
                "unknown_kcall",
                app.entries.unknown_kcalls.load(Ordering::Relaxed),
            ),
        ] {
            if count > 0 {
                kcalls.push_str(&format!("{name}={count} "));
            }
        }
        let share = app.cpu_ticks as f64 * 100.0 / elapsed_ticks.max(1) as f64;
        kprintln!(
            "{:<16} {:<8} {:>8} {:>8} {:>9} {:>9} {:>8} {:>6.1}  {}",
            app.name,
            end,
            app.memory_bytes() / 1024,
            app.peak_bytes() / 1024,
            app.heap_peak_pages * 4,
            app.heap_bytes() / 1024,
            policy.restarts(app.index),
            share,
            kcalls.trim_end()
        );
    }
}

/// The network table, when any app has a binding: frames and bytes each way, and drops by cause
/// (ring full or app not running; spoofed source; a ring the app broke), then the received
/// frames no app owned.
pub fn print_network_table(apps: &[App]) {
    let ports: alloc::vec::Vec<_> = apps
        .iter()
        .filter_map(|app| crate::net::counters(app.index).map(|counters| (app, counters)))
        .collect();
    if ports.is_empty() {
        return;
    }
    kprintln!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
        "net app",
        "frames in",
        "KiB in",
        "frames out",
        "KiB out",
        "drop full",
        "drop spoof",
        "drop bad"
    );
    for (app, counters) in ports {
        kprintln!(
            "{:<16} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9}",
            app.name,
            counters.frames_in,
            counters.bytes_in / 1024,
            counters.frames_out,
            counters.bytes_out / 1024,
            counters.dropped_full,
            counters.dropped_spoofed,
            counters.dropped_bad
        );
    }
    kprintln!(
        "kernel-lite: net: {} received frame(s) had no owner",
        crate::net::frames_without_owner()
    );
}

/// Prints each disk-bound app's extent counters (nothing when no app has a disk).
pub fn print_storage_table(apps: &[App]) {
    let extents: alloc::vec::Vec<_> = apps
        .iter()
        .filter_map(|app| crate::storage::counters(app.index).map(|counters| (app, counters)))
        .collect();
    if extents.is_empty() {
        return;
    }
    kprintln!(
        "{:<16} {:>9} {:>10} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
        "disk app",
        "reads",
        "KiB read",
        "writes",
        "KiB written",
        "flushes",
        "refused",
        "dev err",
        "bad ring"
    );
    for (app, counters) in extents {
        kprintln!(
            "{:<16} {:>9} {:>10} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8}",
            app.name,
            counters.reads,
            counters.sectors_read / 2,
            counters.writes,
            counters.sectors_written / 2,
            counters.flushes,
            counters.refused,
            counters.device_errors,
            counters.bad_ring
        );
    }
}
