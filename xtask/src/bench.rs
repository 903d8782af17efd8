//! `cargo xtask bench`: boots the benchmark bundle under `-icount shift=0` (so the guest TSC
//! counts instructions, which TCG can do and cycles it cannot) and reports the cost of a libos
//! call against a kcall round trip.

use crate::bundle;
use crate::image::Firmware;
use crate::qemu::{self, Profile, RunOptions};
use anyhow::{Context, bail};
use std::fmt::Write as _;
use std::time::Duration;

/// One benchmark line from the guest:
/// `bench NAME median=N min=N max=N runs=N iterations=N` (per-operation TSC ticks).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
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
            let mut words = rest.split_whitespace();
            let name = words.next()?.to_owned();
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

pub fn run() -> anyhow::Result<()> {
    qemu::ensure_installed()?;
    let manifest = bundle::load(&bundle::find("bench")?)?;
    let (_, disk) = crate::boot_image(&manifest, Firmware::Bios)?;
    let profile = Profile::for_firmware(Firmware::Bios)?;
    let options = RunOptions {
        icount: true,
        ..RunOptions::default()
    };
    eprintln!(
        "xtask: running the call benchmarks in QEMU ({}, -icount shift=0)",
        qemu::accelerator()
    );
    let output = qemu::run_captured(
        qemu::command(&profile, &disk, &options)?,
        Duration::from_secs(300),
    )?;
    let measurements = parse(&output.serial);
    let find = |name: &str| measurements.iter().find(|m| m.name == name);
    let (Some(call), Some(kcall)) = (find("clock_read"), find("null_kcall")) else {
        bail!(
            "the benchmark printed no results; its output was:\n{}",
            output.serial
        );
    };
    let mut table = String::new();
    writeln!(
        table,
        "| operation | ticks/op median | min | max | runs × iterations |"
    )?;
    writeln!(table, "|---|---:|---:|---:|---:|")?;
    for m in &measurements {
        writeln!(
            table,
            "| {} | {:.1} | {:.1} | {:.1} | {} × {} |",
            m.name, m.median, m.min, m.max, m.runs, m.iterations
        )?;
    }
    let ratio = kcall.median / call.median.max(0.001);
    println!("{table}");
    println!("null kcall / libos clock read = {ratio:.1}×");
    println!(
        "(QEMU {} with -icount shift=0: the guest TSC counts emulated instructions, not real cycles)",
        qemu::accelerator()
    );
    let out = crate::target_dir().join("bench");
    std::fs::create_dir_all(&out)?;
    let report = serde_json::json!({
        "accelerator": qemu::accelerator(),
        "icount": true,
        "unit": "TSC ticks per operation (emulated instructions under -icount shift=0)",
        "results": measurements,
        "kcall_over_call": ratio,
    });
    let json = serde_json::to_string_pretty(&report)?;
    let path = out.join("calls.json");
    std::fs::write(&path, json).with_context(|| format!("writing {}", path.display()))?;
    println!("results: {}", path.display());
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
}
