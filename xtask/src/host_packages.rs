//! Installing what the xtask runs on the host: QEMU (`qemu-system-x86`), OVMF and `qemu-img`.
//!
//! One way, used by `cargo xtask setup` (which `.ci/run` calls), `run`, `image`, `test` and
//! `bench`. The decision is a plain function of what the machine has, so it is host-tested on
//! the package versions real machines ship.
//!
//! The trap it avoids: a fresh Debian 12 machine of ours ships `qemu-utils` 10.0 from
//! backports, which `Breaks: qemu-system-common (<< 8.0)`, while Debian 12 only has
//! `qemu-system-x86` 7.2; a plain `apt-get install qemu-system-x86` then fails with "held broken
//! packages". The fix is to install `qemu-utils` at the very version of the `qemu-system-x86`
//! about to be installed (the two come from one source package), allowing that downgrade. A
//! QEMU that already works is never touched.

use anyhow::{Context, bail};
use std::path::Path;
use std::process::{Command, Stdio};

/// What the host has, as far as the decision needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostState {
    /// `qemu-system-x86_64 --version` runs.
    pub qemu_system: bool,
    /// An `OVMF.fd` sits where QEMU profiles look for it.
    pub ovmf: bool,
    /// `qemu-img --version` runs.
    pub qemu_img: bool,
    /// `curl` runs (the network tests fetch pages with it, as a user would).
    pub curl: bool,
    /// `redis-cli` runs (the kv tests talk to the kv app with it).
    pub redis_cli: bool,
    /// The installed `qemu-utils` version (`dpkg-query`), if any.
    pub qemu_utils_installed: Option<String>,
}

/// What apt-get knows (only asked when something must be installed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptCandidates {
    /// The version `apt-get install qemu-system-x86` would install.
    pub qemu_system_x86: Option<String>,
}

/// The `apt-get install` to run: package arguments (`name` or `name=version`) and whether a
/// version pin may go down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub packages: Vec<String>,
    pub allow_downgrades: bool,
}

impl Install {
    /// The command line, as a person would type it.
    pub fn command_line(&self) -> String {
        let mut line = String::from("apt-get install -y");
        if self.allow_downgrades {
            line.push_str(" --allow-downgrades");
        }
        for package in &self.packages {
            line.push(' ');
            line.push_str(package);
        }
        line
    }
}

/// Why nothing can be planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanError {
    /// apt-get offers no `qemu-system-x86` (package lists missing, or not Debian-like).
    NoQemuCandidate,
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::NoQemuCandidate => write!(
                f,
                "apt-get offers no qemu-system-x86 package (run `apt-get update`, or install \
                 QEMU 7.2 or later by hand)"
            ),
        }
    }
}

/// Which packages are missing, before asking apt-get anything. Empty: nothing to do.
pub fn missing(host: &HostState) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !host.qemu_system {
        missing.push("qemu-system-x86");
    }
    if !host.ovmf {
        missing.push("ovmf");
    }
    if !host.qemu_img {
        missing.push("qemu-utils");
    }
    if !host.curl {
        missing.push("curl");
    }
    if !host.redis_cli {
        missing.push("redis-tools");
    }
    missing
}

/// Decides the install, or `None` when the host has everything.
pub fn plan(host: &HostState, apt: &AptCandidates) -> Result<Option<Install>, PlanError> {
    let missing = missing(host);
    if missing.is_empty() {
        return Ok(None);
    }
    let mut packages: Vec<String> = missing.iter().map(|name| name.to_string()).collect();
    let mut allow_downgrades = false;
    if !host.qemu_system {
        let candidate = apt
            .qemu_system_x86
            .as_deref()
            .ok_or(PlanError::NoQemuCandidate)?;
        // qemu-utils and qemu-system-* are built from one source: keep them at one version.
        // When a different qemu-utils is installed (say 10.0 from backports beside Debian 12's
        // 7.2), pin it to the candidate, which may be a downgrade.
        match host.qemu_utils_installed.as_deref() {
            Some(installed) if installed != candidate => {
                packages.retain(|package| package != "qemu-utils");
                packages.push(format!("qemu-utils={candidate}"));
                // The pin is exact, so the flag only allows the version asked for.
                allow_downgrades = true;
            }
            _ => {}
        }
    }
    Ok(Some(Install {
        packages,
        allow_downgrades,
    }))
}

fn runs(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Where the QEMU profiles look for OVMF.
pub const OVMF_PATHS: [&str; 2] = ["/usr/share/ovmf/OVMF.fd", "/usr/share/qemu/OVMF.fd"];

fn installed_version(package: &str) -> Option<String> {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}|${Version}", package])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let (status, version) = text.split_once('|')?;
    (status.ends_with(" installed") && !version.is_empty()).then(|| version.to_owned())
}

/// Reads the host's state.
pub fn read_host() -> HostState {
    HostState {
        qemu_system: runs("qemu-system-x86_64"),
        ovmf: OVMF_PATHS.iter().any(|path| Path::new(path).exists()),
        qemu_img: runs("qemu-img"),
        curl: runs("curl"),
        redis_cli: runs("redis-cli"),
        qemu_utils_installed: installed_version("qemu-utils"),
    }
}

/// The `Candidate:` line of `apt-cache policy` output.
pub fn parse_policy_candidate(policy: &str) -> Option<String> {
    policy
        .lines()
        .find_map(|line| line.trim().strip_prefix("Candidate:"))
        .map(str::trim)
        .filter(|version| !version.is_empty() && *version != "(none)")
        .map(str::to_owned)
}

fn read_apt() -> AptCandidates {
    let policy = Command::new("apt-cache")
        .args(["policy", "qemu-system-x86"])
        .stderr(Stdio::null())
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    AptCandidates {
        qemu_system_x86: parse_policy_candidate(&policy),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn sh(line: &str) -> anyhow::Result<()> {
    let status = Command::new("sh")
        .args(["-c", line])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("running `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Makes sure QEMU, OVMF and qemu-img are there: installs them with apt-get when running as
/// root, otherwise says exactly what to run.
pub fn ensure_installed() -> anyhow::Result<()> {
    let host = read_host();
    let missing = missing(&host);
    if missing.is_empty() {
        return Ok(());
    }
    if !is_root() {
        // Without root we cannot refresh the lists, so the advice is the generic, safe form.
        let plan = plan(&host, &read_apt()).ok().flatten();
        let line = plan.map_or_else(
            || format!("apt-get install -y {}", missing.join(" ")),
            |install| install.command_line(),
        );
        bail!(
            "missing {}: run `sudo apt-get update && sudo {line}`",
            missing.join(", ")
        );
    }
    eprintln!(
        "xtask: {} missing; installing with apt-get",
        missing.join(", ")
    );
    sh("apt-get update -qq")?;
    let install = match plan(&host, &read_apt()) {
        Ok(Some(install)) => install,
        Ok(None) => return Ok(()),
        Err(error) => bail!("cannot install QEMU: {error}"),
    };
    eprintln!("xtask: {}", install.command_line());
    sh(&format!("{} -qq", install.command_line()))?;
    let after = read_host();
    let still = crate::host_packages::missing(&after);
    if !still.is_empty() {
        bail!(
            "after `{}`, still missing: {}",
            install.command_line(),
            still.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKWORM: &str = "1:7.2+dfsg-7+deb12u18+b3";
    const BACKPORT: &str = "1:10.0.2+ds-2+deb13u1~bpo12+1";

    fn fresh_machine() -> HostState {
        // What a new machine of ours has: qemu-img from the backported qemu-utils, no QEMU.
        HostState {
            qemu_system: false,
            ovmf: false,
            qemu_img: true,
            curl: true,
            redis_cli: true,
            qemu_utils_installed: Some(BACKPORT.into()),
        }
    }

    fn bookworm() -> AptCandidates {
        AptCandidates {
            qemu_system_x86: Some(BOOKWORM.into()),
        }
    }

    #[test]
    fn nothing_to_do_when_everything_runs() {
        let host = HostState {
            qemu_system: true,
            ovmf: true,
            qemu_img: true,
            curl: true,
            redis_cli: true,
            qemu_utils_installed: Some(BACKPORT.into()),
        };
        assert_eq!(plan(&host, &AptCandidates::default()), Ok(None));
    }

    #[test]
    fn fresh_machine_pins_qemu_utils_down_to_the_qemu_version() {
        let install = plan(&fresh_machine(), &bookworm()).unwrap().unwrap();
        assert_eq!(
            install.packages,
            ["qemu-system-x86", "ovmf", &format!("qemu-utils={BOOKWORM}")]
        );
        assert!(install.allow_downgrades);
        assert_eq!(
            install.command_line(),
            format!(
                "apt-get install -y --allow-downgrades qemu-system-x86 ovmf qemu-utils={BOOKWORM}"
            )
        );
    }

    #[test]
    fn matching_qemu_utils_is_left_alone() {
        let host = HostState {
            qemu_utils_installed: Some(BOOKWORM.into()),
            ..fresh_machine()
        };
        let install = plan(&host, &bookworm()).unwrap().unwrap();
        assert_eq!(install.packages, ["qemu-system-x86", "ovmf"]);
        assert!(!install.allow_downgrades);
    }

    #[test]
    fn no_qemu_utils_at_all_installs_the_plain_package() {
        let host = HostState {
            qemu_img: false,
            curl: true,
            redis_cli: true,
            qemu_utils_installed: None,
            ..fresh_machine()
        };
        let install = plan(&host, &bookworm()).unwrap().unwrap();
        assert_eq!(install.packages, ["qemu-system-x86", "ovmf", "qemu-utils"]);
        assert!(!install.allow_downgrades);
    }

    #[test]
    fn a_working_qemu_is_never_downgraded_for_missing_ovmf() {
        let host = HostState {
            qemu_system: true,
            ovmf: false,
            qemu_img: true,
            curl: true,
            redis_cli: true,
            qemu_utils_installed: Some(BACKPORT.into()),
        };
        let install = plan(&host, &bookworm()).unwrap().unwrap();
        assert_eq!(install.packages, ["ovmf"]);
        assert!(!install.allow_downgrades);
    }

    #[test]
    fn a_different_qemu_utils_of_the_same_release_is_pinned_too() {
        let host = HostState {
            qemu_utils_installed: Some("1:7.2+dfsg-7+deb12u15".into()),
            ..fresh_machine()
        };
        let install = plan(&host, &bookworm()).unwrap().unwrap();
        assert!(install.packages.contains(&format!("qemu-utils={BOOKWORM}")));
        assert!(install.allow_downgrades);
    }

    #[test]
    fn no_candidate_is_a_named_error() {
        assert_eq!(
            plan(&fresh_machine(), &AptCandidates::default()),
            Err(PlanError::NoQemuCandidate)
        );
    }

    #[test]
    fn reads_the_candidate_from_apt_cache_policy() {
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b3\n  Version table:\n";
        assert_eq!(parse_policy_candidate(policy).as_deref(), Some(BOOKWORM));
        assert_eq!(
            parse_policy_candidate("x:\n  Installed: (none)\n  Candidate: (none)\n"),
            None
        );
        assert_eq!(parse_policy_candidate(""), None);
    }
}
