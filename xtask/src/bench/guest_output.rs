//! Parsing what the benchmark programs print: `bench NAME median=… min=… max=… runs=…
//! iterations=…` lines (libos's call-bench and switch-bench, and the Linux peer's syscall-bench
//! print the same format) and `bench-error NAME: WHY` lines (a measure that could not be taken);
//! kernel-lite's `app 'NAME' exited with status N` lines and its closing frame count.

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

/// The reason a guest gave for not measuring `name` (`bench-error NAME: WHY`), if it gave one.
pub fn bench_error(serial: &str, name: &str) -> Option<String> {
    serial.lines().find_map(|line| {
        let rest = line.split("bench-error ").nth(1)?;
        let why = rest.strip_prefix(name)?.strip_prefix(':')?;
        Some(why.trim().to_owned())
    })
}

/// Every `kernel-lite: app 'NAME' exited with status N` line, as (name, status).
pub fn parse_exits(serial: &str) -> Vec<(String, i64)> {
    serial
        .lines()
        .filter_map(|line| {
            let rest = line.split("kernel-lite: app '").nth(1)?;
            let (name, rest) = rest.split_once("' exited with status ")?;
            Some((name.to_owned(), rest.trim().parse().ok()?))
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
    fn bench_errors_parse() {
        let serial = "bench linux_getpid median=1 min=1 max=1 runs=7 iterations=2\n\
                      bench-error linux_clock_gettime_vdso: no AT_SYSINFO_EHDR\r\n";
        assert_eq!(
            bench_error(serial, "linux_clock_gettime_vdso").as_deref(),
            Some("no AT_SYSINFO_EHDR")
        );
        assert_eq!(bench_error(serial, "linux_getpid"), None);
        assert_eq!(parse(serial).len(), 1);
    }

    #[test]
    fn exits_parse() {
        let serial = "[hello-0] Hello\nkernel-lite: app 'hello-0' exited with status 0\n\
                      kernel-lite: app 'hello-1' exited with status -3\r\n\
                      kernel-lite: app 'hello-2' ended by page fault\n";
        assert_eq!(
            parse_exits(serial),
            [("hello-0".to_owned(), 0), ("hello-1".to_owned(), -3)]
        );
    }

    #[test]
    fn peak_frames_parse() {
        let serial =
            "kernel-lite: frames in use 1053 (peak 1825) of 63656; exit AllAppsSucceeded\n";
        assert_eq!(parse_peak_frames(serial), Some(1825));
        assert_eq!(parse_peak_frames("nothing"), None);
    }
}
