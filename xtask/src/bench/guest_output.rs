//! Parsing what the benchmark programs print: `bench NAME median=… min=… max=… runs=…
//! iterations=…` lines (libos's call-bench and switch-bench, and the Linux peer's syscall-bench
//! print the same format), and kernel-lite's closing frame count.

use serde::{Deserialize, Serialize};

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
