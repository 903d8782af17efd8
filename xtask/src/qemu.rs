//! QEMU: machine profiles (data under `qemu/`), installing QEMU when missing, and running an
//! image either on the terminal or with its serial output captured for a test.

use crate::image::Firmware;
use anyhow::{Context, bail};
use lite_abi::exit::ImageOutcome;
use serde::Deserialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A machine profile, read from `qemu/NAME.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    pub machine: String,
    pub cpu: String,
    pub memory: String,
    pub firmware: String,
    #[serde(default)]
    pub ovmf: Vec<PathBuf>,
    #[serde(default)]
    pub args: Vec<String>,
}

impl Profile {
    /// Loads `qemu/NAME.toml`.
    pub fn load(name: &str) -> anyhow::Result<Profile> {
        let path = crate::workspace_root()
            .join("qemu")
            .join(format!("{name}.toml"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading QEMU profile {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("QEMU profile {}", path.display()))
    }

    /// The profile for `firmware`: `q35-bios` or `q35-uefi`.
    pub fn for_firmware(firmware: Firmware) -> anyhow::Result<Profile> {
        Profile::load(match firmware {
            Firmware::Bios => "q35-bios",
            Firmware::Uefi => "q35-uefi",
        })
    }

    pub fn firmware(&self) -> anyhow::Result<Firmware> {
        match self.firmware.as_str() {
            "bios" => Ok(Firmware::Bios),
            "uefi" => Ok(Firmware::Uefi),
            other => bail!("QEMU profile firmware '{other}' is neither bios nor uefi"),
        }
    }
}

/// The accelerator chosen by [`use_accelerator`] (the benchmark suite's KVM probe).
static CHOSEN_ACCELERATOR: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// How QEMU accelerates: `LIBOS_QEMU_ACCEL` if set, else what [`use_accelerator`] chose, else
/// TCG (KVM does not work on every machine that has `/dev/kvm`).
pub fn accelerator() -> String {
    std::env::var("LIBOS_QEMU_ACCEL")
        .ok()
        .or_else(|| CHOSEN_ACCELERATOR.get().cloned())
        .unwrap_or_else(|| "tcg".to_owned())
}

/// Makes later runs of this process use `accelerator` (unless `LIBOS_QEMU_ACCEL` is set).
pub fn use_accelerator(accelerator: &str) {
    let _ = CHOSEN_ACCELERATOR.set(accelerator.to_owned());
}

/// Whether KVM really works here: boots `image` (which must end by itself with success) with
/// `-accel kvm`. `Err` says why not.
pub fn probe_kvm(profile: &Profile, image: &Path) -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("no /dev/kvm".into());
    }
    let mut command = Command::new("qemu-system-x86_64");
    command
        .args([
            "-machine",
            &profile.machine,
            "-cpu",
            "host",
            "-m",
            &profile.memory,
            "-accel",
            "kvm",
        ])
        .args(&profile.args)
        .args(["-drive"])
        .arg(format!("format=raw,file={}", image.display()));
    // A working KVM boots the default bundle in well under a second.
    match run_captured(command, Duration::from_secs(15)) {
        Ok(output) if output.outcome == Some(ImageOutcome::AllAppsSucceeded) => Ok(()),
        Ok(output) => {
            let last = output
                .serial
                .lines()
                .rev()
                .find(|line| !line.trim().is_empty())
                .unwrap_or("no output");
            Err(format!(
                "a test boot with -accel kvm failed: {}",
                last.trim()
            ))
        }
        Err(error) => Err(format!("{error:#}")),
    }
}

/// Makes sure QEMU, OVMF and qemu-img are there (see [`crate::host_packages`]).
pub fn ensure_installed() -> anyhow::Result<()> {
    crate::host_packages::ensure_installed()
}

/// Options of one QEMU run beyond the profile.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Serial on the terminal with QEMU's monitor multiplexed (Ctrl-A X quits).
    pub interactive: bool,
    /// Wait for GDB on :1234 before the first instruction.
    pub gdb: bool,
    /// `-icount shift=0` under TCG: the guest TSC counts instructions (for cycle benchmarks).
    pub icount: bool,
    /// Overrides the profile's memory size (`-m`).
    pub memory: Option<String>,
    /// Overrides the profile's CPU model (`-cpu`, TCG only), e.g. `max,nx=off`.
    pub cpu: Option<String>,
    /// A QEMU monitor on this Unix socket, for tests that inject events (see [`Injection`]).
    pub monitor_socket: Option<PathBuf>,
}

/// Monitor commands a test sends once a line appears on the serial console (an NMI, a machine
/// check): see [`run_injecting`].
#[derive(Debug, Clone)]
pub struct Injection {
    /// The serial text to wait for.
    pub after: String,
    /// The monitor's socket ([`RunOptions::monitor_socket`]).
    pub socket: PathBuf,
    /// Monitor commands, one per line.
    pub commands: Vec<String>,
}

/// The machine part of a QEMU command line: everything but what it boots.
fn machine(profile: &Profile, options: &RunOptions) -> Command {
    let mut command = Command::new("qemu-system-x86_64");
    let accelerator = accelerator();
    // Under KVM the guest sees the host CPU; TCG emulates the profile's.
    let cpu = if accelerator == "kvm" {
        "host"
    } else {
        options.cpu.as_deref().unwrap_or(&profile.cpu)
    };
    command
        .args(["-machine", &profile.machine])
        .args(["-cpu", cpu])
        .args(["-m", options.memory.as_deref().unwrap_or(&profile.memory)])
        .args(["-accel", &accelerator]);
    command.args(&profile.args);
    // A captured run gets its serial console in a file (see `run_observed`): a pipe's reader can
    // fall behind on a loaded machine, and QEMU then drops console bytes.
    if options.interactive {
        command.args(["-serial", "mon:stdio"]);
    } // icount exists only in TCG; under KVM the TSC counts real cycles anyway.
    if options.icount && accelerator == "tcg" {
        command.args(["-icount", "shift=0"]);
    }
    if options.gdb {
        command.args(["-s", "-S"]);
    }
    if let Some(socket) = &options.monitor_socket {
        command
            .arg("-monitor")
            .arg(format!("unix:{},server=on,wait=off", socket.display()));
    }
    command
}

/// Adds the profile's firmware: OVMF for UEFI profiles (SeaBIOS is QEMU's default).
fn firmware(command: &mut Command, profile: &Profile) -> anyhow::Result<()> {
    if profile.firmware()? == Firmware::Uefi {
        let ovmf = profile
            .ovmf
            .iter()
            .find(|path| path.exists())
            .with_context(|| {
                format!(
                    "no OVMF firmware found (looked for {:?}); install the `ovmf` package",
                    profile.ovmf
                )
            })?;
        command.arg("-bios").arg(ovmf);
    }
    Ok(())
}

/// The QEMU command line that boots the disk `image` on `profile`.
pub fn command(profile: &Profile, image: &Path, options: &RunOptions) -> anyhow::Result<Command> {
    let mut command = machine(profile, options);
    command
        .arg("-drive")
        .arg(format!("format=raw,file={}", image.display()));
    firmware(&mut command, profile)?;
    Ok(command)
}

/// The QEMU command line that boots a Linux `kernel` and `initrd` directly (the profile's
/// firmware loads them), with the same machine flags as [`command`].
pub fn linux_command(
    profile: &Profile,
    kernel: &Path,
    initrd: &Path,
    append: &str,
    options: &RunOptions,
) -> anyhow::Result<Command> {
    let mut command = machine(profile, options);
    command
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", append]);
    firmware(&mut command, profile)?;
    Ok(command)
}

/// What a captured run produced.
#[derive(Debug, Clone)]
pub struct RunOutput {
    /// QEMU's exit status, `None` when it was killed.
    pub status: Option<i32>,
    /// What the image said about how it ended (via isa-debug-exit).
    pub outcome: Option<ImageOutcome>,
    /// Everything on the serial console.
    pub serial: String,
    pub timed_out: bool,
    pub wall: Duration,
    /// When the watched-for line first appeared, counted from QEMU's start.
    pub ready_after: Option<Duration>,
}

/// Runs QEMU with the serial console captured, killing it after `timeout`.
pub fn run_captured(command: Command, timeout: Duration) -> anyhow::Result<RunOutput> {
    run_watched(command, timeout, None)
}

/// Like [`run_captured`], also noting when `ready` first appears in the output.
pub fn run_watched(
    command: Command,
    timeout: Duration,
    ready: Option<&str>,
) -> anyhow::Result<RunOutput> {
    run_observed(command, timeout, ready, None)
}

/// Like [`run_captured`], sending `injection`'s monitor commands once its line appears.
pub fn run_injecting(
    command: Command,
    timeout: Duration,
    injection: &Injection,
) -> anyhow::Result<RunOutput> {
    run_observed(command, timeout, Some(&injection.after), Some(injection))
}

fn inject(injection: &Injection) -> anyhow::Result<()> {
    use std::io::Write;
    let mut monitor = std::os::unix::net::UnixStream::connect(&injection.socket)
        .with_context(|| format!("connecting to {}", injection.socket.display()))?;
    for line in &injection.commands {
        writeln!(monitor, "{line}")?;
    }
    monitor.flush()?;
    // Give the monitor a moment to read before the socket closes.
    std::thread::sleep(Duration::from_millis(200));
    Ok(())
}

fn run_observed(
    mut command: Command,
    timeout: Duration,
    ready: Option<&str>,
    mut injection: Option<&Injection>,
) -> anyhow::Result<RunOutput> {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let serial_path = std::env::temp_dir().join(format!(
        "libos-serial-{}-{}.txt",
        std::process::id(),
        RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&serial_path);
    command
        .arg("-serial")
        .arg(format!("file:{}", serial_path.display()));
    let started = Instant::now();
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting qemu-system-x86_64")?;
    // QEMU's own messages (its errors, a guest kernel on stdio) are kept after the console.
    let mut readers = Vec::new();
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut stream = stream;
            let mut text = Vec::new();
            let _ = stream.read_to_end(&mut text);
            text
        }));
    }
    let mut ready_after = None;
    let mut seen = 0usize;
    let mut timed_out = false;
    let status = loop {
        let exited = child.try_wait()?;
        if let Some(pattern) = ready
            && ready_after.is_none()
        {
            let console = std::fs::read(&serial_path).unwrap_or_default();
            // Only the new bytes (and a pattern's length before them) can hold a match.
            let from = seen.saturating_sub(pattern.len());
            if console.len() >= pattern.len()
                && console[from..]
                    .windows(pattern.len())
                    .any(|w| w == pattern.as_bytes())
            {
                ready_after = Some(started.elapsed());
            }
            seen = console.len();
        }
        if let Some(status) = exited {
            break status.code();
        }
        if let Some(pending) = injection
            && ready_after.is_some()
        {
            injection = None;
            inject(pending)?;
        }
        if started.elapsed() > timeout {
            timed_out = true;
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut captured = std::fs::read(&serial_path).unwrap_or_default();
    let _ = std::fs::remove_file(&serial_path);
    if let Some(pattern) = ready
        && ready_after.is_none()
        && captured
            .windows(pattern.len())
            .any(|w| w == pattern.as_bytes())
    {
        // It came between the last poll and the exit: the exit is the closest bound we have.
        ready_after = Some(started.elapsed());
    }
    for reader in readers {
        captured.extend(reader.join().unwrap_or_default());
    }
    let serial = String::from_utf8_lossy(&captured).into_owned();
    Ok(RunOutput {
        status,
        outcome: status.and_then(ImageOutcome::from_qemu_exit_status),
        serial,
        timed_out,
        wall: started.elapsed(),
        ready_after,
    })
}
