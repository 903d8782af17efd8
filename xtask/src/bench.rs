//! `cargo xtask bench [NAME]`: the benchmarks, each booting real images.
//!
//! - `calls`: TSC ticks per operation for a libos call (clock read), a null kcall round trip,
//!   task spawn + join and task yield + wake, under `-icount shift=0` (the guest TSC then counts
//!   emulated instructions: TCG models no cycles, so compare ratios).
//! - `switch`: ticks per app switch (two apps yielding to each other), also under icount.
//! - `scale`: memory per additional app instance (peak physical frames with 1 and with 64
//!   hello-class apps) and the most hello-class apps that run in an image with 64 MiB of RAM.
//!
//! Results print as tables and go to `target/bench/results.json`.

use crate::bundle::{self, Manifest};
use crate::image::Firmware;
use crate::qemu::{self, Profile, RunOptions, RunOutput};
use anyhow::{Context, bail};
use lite_abi::exit::ImageOutcome;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The benchmarks, by name.
pub const BENCHMARKS: &[&str] = &["calls", "switch", "scale"];

/// One benchmark line from the guest:
/// `bench NAME median=N min=N max=N runs=N iterations=N` (per-operation TSC ticks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    pub name: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: u64,
    pub iterations: u64,
}

/// Reads every `bench ...` line out of the serial output.
pub fn parse(serial: &str) -> Vec<Measurement> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = line.split("bench ").nth(1)?;
            let name = rest.split_whitespace().next()?.to_owned();
            let field = |key: &str| -> Option<f64> {
                rest.split_whitespace()
                    .find_map(|word| word.strip_prefix(key)?.strip_prefix('=')?.parse().ok())
            };
            Some(Measurement {
                median: field("median")?,
                min: field("min")?,
                max: field("max")?,
                runs: field("runs")? as u64,
                iterations: field("iterations")? as u64,
                name,
            })
        })
        .collect()
}

/// Peak physical frames from kernel-lite's closing line `frames in use N (peak P) of T; …`.
pub fn parse_peak_frames(serial: &str) -> Option<u64> {
    let line = serial.lines().find(|line| line.contains("frames in use"))?;
    line.split("(peak ")
        .nth(1)?
        .split(')')
        .next()?
        .trim()
        .parse()
        .ok()
}

fn boot(manifest: &Manifest, options: &RunOptions, timeout: Duration) -> anyhow::Result<RunOutput> {
    let (_, disk) = crate::boot_image(manifest, Firmware::Bios)?;
    let profile = Profile::for_firmware(Firmware::Bios)?;
    qemu::run_captured(qemu::command(&profile, &disk, options)?, timeout)
}

fn instruction_counted(bundle_name: &str) -> anyhow::Result<Vec<Measurement>> {
    let manifest = bundle::load(&bundle::find(bundle_name)?)?;
    let options = RunOptions {
        icount: true,
        ..RunOptions::default()
    };
    let output = boot(&manifest, &options, Duration::from_secs(300))?;
    let measurements = parse(&output.serial);
    if measurements.is_empty() || output.outcome != Some(ImageOutcome::AllAppsSucceeded) {
        bail!(
            "bundle {bundle_name} gave no results; its output was:\n{}",
            output.serial
        );
    }
    Ok(measurements)
}

/// A generated bundle of `count` hello-class apps.
fn hello_apps(count: usize) -> anyhow::Result<Manifest> {
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&format!(
            "[[app]]\nname = \"hello-{index}\"\nprogram = \"hello\"\nmemory = \"256 KiB\"\nstack = \"16 KiB\"\n"
        ));
    }
    let path = crate::target_dir()
        .join("bench")
        .join(format!("scale-{count}.toml"));
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, &text)?;
    Ok(bundle::parse(&path, &text)?)
}

/// What the scale benchmark found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scale {
    /// Bytes of physical memory per additional hello-class app (kernel stack, ring-3 pages
    /// touched, page tables), from peak frames with 1 and with 64 apps.
    pub bytes_per_app: u64,
    pub peak_frames_1: u64,
    pub peak_frames_64: u64,
    /// The most hello-class apps that all ran to success with `-m 64M` (bounded by MAX_APPS).
    pub most_apps_in_64_mib: usize,
    pub max_apps_limit: usize,
}

fn runs_with(count: usize, memory: Option<&str>) -> anyhow::Result<RunOutput> {
    let options = RunOptions {
        memory: memory.map(str::to_owned),
        ..RunOptions::default()
    };
    boot(&hello_apps(count)?, &options, Duration::from_secs(600))
}

fn scale() -> anyhow::Result<Scale> {
    let peak = |count: usize| -> anyhow::Result<u64> {
        let output = runs_with(count, None)?;
        if output.outcome != Some(ImageOutcome::AllAppsSucceeded) {
            bail!("{count} hello apps did not all succeed:\n{}", output.serial);
        }
        parse_peak_frames(&output.serial).context("no frame count in the output")
    };
    let peak_frames_1 = peak(1)?;
    let peak_frames_64 = peak(64)?;
    let bytes_per_app = (peak_frames_64.saturating_sub(peak_frames_1)) * 4096 / 63;
    // Doubling, then bisection between the last count that fit and the first that did not.
    let fits = |count: usize| -> anyhow::Result<bool> {
        eprintln!("xtask: scale: {count} apps with -m 64M");
        Ok(runs_with(count, Some("64M"))?.outcome == Some(ImageOutcome::AllAppsSucceeded))
    };
    let limit = lite_abi::layout::MAX_APPS;
    let (mut good, mut bad) = (0usize, None);
    let mut count = 64;
    while count <= limit {
        if fits(count)? {
            good = count;
            count *= 2;
        } else {
            bad = Some(count);
            break;
        }
    }
    if let Some(mut bad) = bad {
        while bad - good > good / 16 + 1 {
            let middle = (good + bad) / 2;
            if fits(middle)? {
                good = middle
            } else {
                bad = middle
            }
        }
    }
    Ok(Scale {
        bytes_per_app,
        peak_frames_1,
        peak_frames_64,
        most_apps_in_64_mib: good,
        max_apps_limit: limit,
    })
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Results {
    accelerator: String,
    qemu: String,
    commit: String,
    calls: Vec<Measurement>,
    switch: Vec<Measurement>,
    scale: Option<Scale>,
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .current_dir(crate::workspace_root())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}

fn print_ticks(title: &str, measurements: &[Measurement]) {
    println!("\n{title}\n");
    println!("| operation | ticks/op median | min | max | runs × iterations |");
    println!("|---|---:|---:|---:|---:|");
    for m in measurements {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {} × {} |",
            m.name, m.median, m.min, m.max, m.runs, m.iterations
        );
    }
}

pub fn run(only: Option<&str>) -> anyhow::Result<()> {
    if let Some(name) = only
        && !BENCHMARKS.contains(&name)
    {
        bail!(
            "no benchmark named '{name}' (known: {})",
            BENCHMARKS.join(", ")
        );
    }
    qemu::ensure_installed()?;
    let wanted = |name: &str| only.is_none_or(|only| only == name);
    let out = crate::target_dir().join("bench");
    let path = out.join("results.json");
    // A run of one benchmark keeps the others' latest results.
    let mut results: Results = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    results.accelerator = qemu::accelerator();
    results.qemu = command_output("qemu-system-x86_64", &["--version"]);
    results.commit = command_output("git", &["rev-parse", "--short", "HEAD"]);
    if wanted("calls") {
        eprintln!(
            "xtask: bench calls (QEMU {}, -icount shift=0)",
            results.accelerator
        );
        results.calls = instruction_counted("bench-calls")?;
        print_ticks(
            "calls (guest TSC ticks = emulated instructions under -icount shift=0)",
            &results.calls,
        );
        let find = |name: &str| {
            results
                .calls
                .iter()
                .find(|m| m.name == name)
                .map(|m| m.median)
        };
        if let (Some(call), Some(kcall)) = (find("clock_read"), find("null_kcall")) {
            println!(
                "\nnull kcall / libos clock read = {:.1}×",
                kcall / call.max(0.001)
            );
        }
    }
    if wanted("switch") {
        eprintln!(
            "xtask: bench switch (QEMU {}, -icount shift=0)",
            results.accelerator
        );
        results.switch = instruction_counted("bench-switch")?;
        print_ticks(
            "app switch (two apps yielding to each other)",
            &results.switch,
        );
    }
    if wanted("scale") {
        eprintln!("xtask: bench scale (QEMU {})", results.accelerator);
        let scale = scale()?;
        println!("\nscale (hello-class apps: 256 KiB heap quota, 16 KiB stack)\n");
        println!("| measure | value |");
        println!("|---|---:|");
        println!(
            "| memory per additional app | {} bytes ({:.1} KiB) |",
            scale.bytes_per_app,
            scale.bytes_per_app as f64 / 1024.0
        );
        println!(
            "| peak frames, 1 app / 64 apps | {} / {} |",
            scale.peak_frames_1, scale.peak_frames_64
        );
        let bound = if scale.most_apps_in_64_mib >= scale.max_apps_limit {
            " (the MAX_APPS limit)"
        } else {
            ""
        };
        println!(
            "| most apps with -m 64M | {}{bound} |",
            scale.most_apps_in_64_mib
        );
        results.scale = Some(scale);
    }
    std::fs::create_dir_all(&out)?;
    std::fs::write(&path, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("\nresults: {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_lines_parse() {
        let serial = "noise\n[bench] bench null_kcall median=310.5 min=300 max=400 runs=7 iterations=100000\n";
        assert_eq!(
            parse(serial),
            [Measurement {
                name: "null_kcall".into(),
                median: 310.5,
                min: 300.0,
                max: 400.0,
                runs: 7,
                iterations: 100000,
            }]
        );
        assert!(parse("bench broken median=x").is_empty());
    }

    #[test]
    fn peak_frames_parse() {
        let serial =
            "kernel-lite: frames in use 1053 (peak 1825) of 63656; exit AllAppsSucceeded\n";
        assert_eq!(parse_peak_frames(serial), Some(1825));
        assert_eq!(parse_peak_frames("nothing"), None);
    }
}
