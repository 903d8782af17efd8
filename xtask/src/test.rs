//! `cargo xtask test`: the host unit tests and the in-QEMU tests, with one summary line.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Counts from cargo's `test result:` lines.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Tally {
    /// Adds the counts of one `test result: ok. 3 passed; 0 failed; 1 ignored; ...` line.
    pub fn add_line(&mut self, line: &str) {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            return;
        };
        for part in rest.split([';', '.']) {
            let mut words = part.split_whitespace();
            let (Some(number), Some(label)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(number) = number.parse::<u64>() else {
                continue;
            };
            match label {
                "passed" => self.passed += number,
                "failed" => self.failed += number,
                "ignored" => self.ignored += number,
                _ => {}
            }
        }
    }
}

/// Runs `cargo test` over the host crates (the workspace's default members, which include the
/// QEMU tests in `tests/`), echoing its output and summing its results.
pub fn run() -> anyhow::Result<()> {
    crate::qemu::ensure_installed()?;
    let mut child = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(crate::workspace_root())
        .args(["test", "--color", "never"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let mut tally = Tally::default();
    let stdout = child.stdout.take().expect("piped");
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        println!("{line}");
        tally.add_line(&line);
    }
    let status = child.wait()?;
    println!();
    let summary = format!("{} passed, {} failed", tally.passed, tally.failed);
    if tally.ignored > 0 {
        println!("{summary}, {} skipped", tally.ignored);
    } else {
        println!("{summary}");
    }
    if !status.success() || tally.failed > 0 {
        bail!("tests failed");
    }
    if tally.passed == 0 {
        bail!("no test ran");
    }
    Ok(())
}

/// `cargo fmt --check`, then clippy with warnings denied, for the host crates and for the
/// crates built for `x86_64-unknown-none` (with every program of the user image).
pub fn lint() -> anyhow::Result<()> {
    let features: Vec<String> = {
        let mut features: Vec<&str> = crate::programs::PROGRAMS.iter().map(|(_, f)| *f).collect();
        features.sort_unstable();
        features.dedup();
        features.iter().map(|f| format!("user-image/{f}")).collect()
    };
    let target_packages = [
        "kernel-lite",
        "libos",
        "user-image",
        "hello",
        "selftest",
        "bench",
        "demo",
        "http",
        "echo",
        "kv",
    ];
    let mut target_args: Vec<String> = ["clippy", "--release", "--target", crate::compile::TARGET]
        .map(String::from)
        .to_vec();
    for package in target_packages {
        target_args.extend(["--package".to_owned(), package.to_owned()]);
    }
    target_args.extend(["--features".to_owned(), features.join(",")]);
    target_args.extend(["--".to_owned(), "-D".to_owned(), "warnings".to_owned()]);
    let runs: Vec<Vec<String>> = vec![
        ["fmt", "--all", "--check"].map(String::from).to_vec(),
        ["clippy", "--all-targets", "--", "-D", "warnings"]
            .map(String::from)
            .to_vec(),
        target_args,
    ];
    for args in runs {
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(crate::workspace_root())
            .args(&args)
            .status()
            .context("running cargo")?;
        if !status.success() {
            bail!("cargo {} failed", args.join(" "));
        }
    }
    println!("lint: clean");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines_are_summed() {
        let mut tally = Tally::default();
        tally.add_line("test result: ok. 12 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s");
        tally.add_line(
            "test result: FAILED. 3 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out",
        );
        tally.add_line("running 5 tests");
        assert_eq!(
            tally,
            Tally {
                passed: 15,
                failed: 2,
                ignored: 1
            }
        );
    }
}
