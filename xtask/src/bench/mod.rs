//! `cargo xtask bench [NAME] [--smoke]`: every headline figure, measured on real images and set
//! side by side with a Linux guest (see [`peer`]) booted with the same QEMU machine flags in the
//! same run.
//!
//! - `boot`: wall time from QEMU's start to the first app's ready line (BIOS and UEFI images)
//!   against the Linux guest reaching its READY line.
//! - `footprint`: kernel, user space and boot payload sizes against the Linux kernel and
//!   initramfs; the smallest `-m` that still boots and serves, found by bisection, for both.
//! - `calls`: TSC ticks per libos call (clock read) and per null kcall against a Linux `getpid`
//!   system call, all under `-icount shift=0` (the guest TSC counts emulated instructions: TCG
//!   models no cycles, so these are instruction counts); plus task spawn and wake costs.
//! - `switch`: ticks per app switch (two apps yielding to each other), also under icount.
//! - `scale`: memory per additional app and the most hello-class apps that run with 64 MiB.
//!
//! HTTP, TCP and key-value benchmarks join when the network stack and storage exist.
//! Results: `target/bench/results.json`, `report.md` and `report.svg`.

pub mod cpio;
pub mod guest_output;
pub mod peer;
pub mod report;

use crate::bundle::{self, Manifest};
use crate::image::Firmware;
use crate::qemu::{self, Profile, RunOptions, RunOutput};
use anyhow::{Context, bail};
use guest_output::Measurement;
use indicatif::{ProgressBar, ProgressStyle};
use lite_abi::exit::ImageOutcome;
use report::{Report, Row, Stat};
use std::time::Duration;

/// The benchmarks, by name, in the order the suite runs them.
pub const BENCHMARKS: &[&str] = &["boot", "footprint", "calls", "switch", "scale"];

/// How hard to try, and where to write.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Minimal iterations: every benchmark runs and reports, numbers are rough (CI uses this).
    pub smoke: bool,
    /// Boots per timed measurement.
    pub runs: usize,
    /// Where the reports go: `target/bench/`, or `target/bench/smoke/` for a smoke run, so a
    /// smoke run never overwrites real figures.
    pub out: std::path::PathBuf,
}

impl Settings {
    pub fn new(smoke: bool) -> Settings {
        let bench = crate::target_dir().join("bench");
        Settings {
            smoke,
            runs: if smoke { 1 } else { 5 },
            out: if smoke { bench.join("smoke") } else { bench },
        }
    }
}

/// The ready line of the default bundle's first app.
const OUR_READY_LINE: &str = "[hello] Hello from";

struct Suite {
    settings: Settings,
    progress: ProgressBar,
    peer: Option<peer::Peer>,
    rows: Vec<Row>,
}

impl Suite {
    fn step(&self, message: String) {
        self.progress.set_message(message);
        self.progress.tick();
    }

    fn peer(&mut self) -> anyhow::Result<peer::Peer> {
        if self.peer.is_none() {
            self.step("building the Linux peer from Debian packages".into());
            self.peer = Some(peer::build()?);
        }
        Ok(self.peer.clone().expect("built above"))
    }
}

fn boot_ours(
    manifest: &Manifest,
    firmware: Firmware,
    options: &RunOptions,
    timeout: Duration,
) -> anyhow::Result<RunOutput> {
    let (_, disk) = crate::boot_image(manifest, firmware)?;
    let profile = Profile::for_firmware(firmware)?;
    qemu::run_watched(
        qemu::command(&profile, &disk, options)?,
        timeout,
        Some(OUR_READY_LINE),
    )
}

fn boot_peer(
    peer: &peer::Peer,
    mode: &str,
    options: &RunOptions,
    timeout: Duration,
) -> anyhow::Result<RunOutput> {
    boot_peer_on(peer, Firmware::Bios, mode, options, timeout)
}

/// Boots the Linux guest with `firmware` loading its kernel and initramfs directly.
fn boot_peer_on(
    peer: &peer::Peer,
    firmware: Firmware,
    mode: &str,
    options: &RunOptions,
    timeout: Duration,
) -> anyhow::Result<RunOutput> {
    let append = format!("console=ttyS0 quiet panic=-1 libos.bench={mode}");
    let profile = Profile::for_firmware(firmware)?;
    let command = qemu::linux_command(&profile, &peer.kernel, &peer.initramfs, &append, options)?;
    qemu::run_watched(command, timeout, Some(peer::READY_LINE))
}

fn default_bundle() -> anyhow::Result<Manifest> {
    bundle::load(&bundle::find("default")?)
}

/// Boot-to-ready times in milliseconds over `runs` boots.
fn ready_times(
    runs: usize,
    mut boot: impl FnMut() -> anyhow::Result<RunOutput>,
) -> anyhow::Result<Stat> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let output = boot()?;
        let ready = output
            .ready_after
            .with_context(|| format!("no ready line; the output was:\n{}", output.serial))?;
        samples.push(ready.as_secs_f64() * 1000.0);
    }
    Ok(Stat::from_samples(&samples))
}

fn boot(suite: &mut Suite) -> anyhow::Result<()> {
    let manifest = default_bundle()?;
    let runs = suite.settings.runs;
    let timeout = Duration::from_secs(120);
    let options = RunOptions::default();
    suite.step(format!("boot: our BIOS image ×{runs}"));
    let bios = ready_times(runs, || {
        boot_ours(&manifest, Firmware::Bios, &options, timeout)
    })?;
    suite.step(format!("boot: our UEFI image ×{runs}"));
    let uefi = ready_times(runs, || {
        boot_ours(&manifest, Firmware::Uefi, &options, timeout)
    })?;
    let peer = suite.peer()?;
    suite.step(format!("boot: the Linux guest with SeaBIOS ×{runs}"));
    let linux_bios = ready_times(runs, || {
        boot_peer_on(&peer, Firmware::Bios, "ready", &options, timeout)
    })?;
    suite.step(format!("boot: the Linux guest with OVMF ×{runs}"));
    let linux_uefi = ready_times(runs, || {
        boot_peer_on(&peer, Firmware::Uefi, "ready", &options, timeout)
    })?;
    let what = "QEMU start → first ready line, wall ms: our default bundle's hello from a disk image vs \
                Linux init's READY, kernel and initramfs loaded by the same firmware (-kernel/-initrd)";
    suite.rows.push(Row::compared(
        "boot",
        "boot to ready, BIOS (SeaBIOS)",
        what,
        "ms",
        bios,
        linux_bios,
    ));
    suite.rows.push(Row::compared(
        "boot",
        "boot to ready, UEFI (OVMF)",
        what,
        "ms",
        uefi,
        linux_uefi,
    ));
    Ok(())
}

fn file_size(path: &std::path::Path) -> anyhow::Result<f64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("size of {}", path.display()))?
        .len() as f64)
}

/// The smallest memory (MiB) in `low..=high` for which `works` holds, assuming it holds at
/// `high` and that more memory never hurts; stops when the bracket is `step` wide.
fn smallest_memory(
    suite: &Suite,
    who: &str,
    mut low: u64,
    mut high: u64,
    step: u64,
    mut works: impl FnMut(u64) -> anyhow::Result<bool>,
) -> anyhow::Result<u64> {
    if !works(high)? {
        bail!("{who} does not work even with -m {high}M");
    }
    while high - low > step {
        let middle = (low + high) / 2;
        suite.step(format!("footprint: {who} with -m {middle}M"));
        if works(middle)? {
            high = middle
        } else {
            low = middle
        }
    }
    Ok(high)
}

fn footprint(suite: &mut Suite) -> anyhow::Result<()> {
    let manifest = default_bundle()?;
    let (built, bios) = crate::boot_image(&manifest, Firmware::Bios)?;
    let uefi = crate::image::disk_image(&built, Firmware::Uefi)?;
    let peer = suite.peer()?;
    let linux_kernel = file_size(&peer.kernel)?;
    let linux_initramfs = file_size(&peer.initramfs)?;
    let linux_boot = linux_kernel + linux_initramfs;
    let sizes = [
        (
            "kernel: kernel-lite ELF vs vmlinuz",
            file_size(&built.kernel)?,
            linux_kernel,
        ),
        (
            "user space: user image ELF vs initramfs",
            file_size(&built.user_image)?,
            linux_initramfs,
        ),
        (
            "boot payload: BIOS disk image vs kernel + initramfs",
            file_size(&bios)?,
            linux_boot,
        ),
        (
            "boot payload: UEFI disk image vs kernel + initramfs",
            file_size(&uefi)?,
            linux_boot,
        ),
    ];
    for (name, ours, linux) in sizes {
        let (ours, linux) = (Stat::single(ours), Stat::single(linux));
        suite.rows.push(Row::compared(
            "footprint",
            name,
            "bytes on disk",
            "bytes",
            ours,
            linux,
        ));
    }

    let step = if suite.settings.smoke { 64 } else { 2 };
    let ours = smallest_memory(suite, "our image", 2, 256, step, |mib| {
        let options = RunOptions {
            memory: Some(format!("{mib}M")),
            ..RunOptions::default()
        };
        // A machine too small for the bootloader hangs rather than failing: cut it short.
        let output = boot_ours(&manifest, Firmware::Bios, &options, Duration::from_secs(15))?;
        Ok(output.outcome == Some(ImageOutcome::AllAppsSucceeded))
    })?;
    let linux = smallest_memory(suite, "the Linux guest", 2, 256, step, |mib| {
        let options = RunOptions {
            memory: Some(format!("{mib}M")),
            ..RunOptions::default()
        };
        let output = boot_peer(&peer, "ready", &options, Duration::from_secs(60))?;
        Ok(output.ready_after.is_some())
    })?;
    suite.rows.push(Row::compared(
        "footprint",
        "smallest -m that boots and serves",
        &format!("bisection on QEMU -m in MiB, to {step} MiB; ours: the default bundle exits 0; Linux: init prints READY"),
        "MiB",
        Stat::single(ours as f64),
        Stat::single(linux as f64),
    ));
    Ok(())
}

fn instruction_counted(bundle_name: &str) -> anyhow::Result<Vec<Measurement>> {
    let manifest = bundle::load(&bundle::find(bundle_name)?)?;
    let options = RunOptions {
        icount: true,
        ..RunOptions::default()
    };
    let output = boot_ours(
        &manifest,
        Firmware::Bios,
        &options,
        Duration::from_secs(300),
    )?;
    let measurements = guest_output::parse(&output.serial);
    if measurements.is_empty() || output.outcome != Some(ImageOutcome::AllAppsSucceeded) {
        bail!(
            "bundle {bundle_name} gave no results; its output was:\n{}",
            output.serial
        );
    }
    Ok(measurements)
}

fn find<'a>(measurements: &'a [Measurement], name: &str) -> anyhow::Result<&'a Measurement> {
    measurements
        .iter()
        .find(|m| m.name == name)
        .with_context(|| format!("no result for {name}"))
}

const TICKS: &str = "ticks/op";

/// What a guest TSC tick means under the accelerator in use.
fn ticks_meaning(what: &str) -> String {
    if qemu::accelerator() == "tcg" {
        format!(
            "guest TSC ticks {what}, under -icount shift=0 (the TSC counts emulated instructions)"
        )
    } else {
        format!(
            "guest TSC ticks {what}, under {} (real cycles at the TSC rate)",
            qemu::accelerator()
        )
    }
}

fn calls(suite: &mut Suite) -> anyhow::Result<()> {
    suite.step("calls: libos calls and kcalls (icount)".into());
    let ours = instruction_counted("bench-calls")?;
    let peer = suite.peer()?;
    suite.step("calls: Linux getpid (icount)".into());
    let options = RunOptions {
        icount: true,
        ..RunOptions::default()
    };
    let output = boot_peer(&peer, "calls", &options, Duration::from_secs(300))?;
    let linux = guest_output::parse(&output.serial);
    let getpid = Stat::from_measurement(find(&linux, "linux_getpid").with_context(|| {
        format!(
            "the Linux guest printed no getpid result:\n{}",
            output.serial
        )
    })?);
    let what = &ticks_meaning("per operation, median of 7 runs");
    suite.rows.push(Row::compared(
        "calls",
        "libos clock read vs Linux getpid()",
        what,
        TICKS,
        Stat::from_measurement(find(&ours, "clock_read")?),
        getpid.clone(),
    ));
    suite.rows.push(Row::compared(
        "calls",
        "null kcall vs Linux getpid()",
        what,
        TICKS,
        Stat::from_measurement(find(&ours, "null_kcall")?),
        getpid,
    ));
    suite.rows.push(Row::ours(
        "calls",
        "task spawn + join",
        what,
        TICKS,
        Stat::from_measurement(find(&ours, "task_spawn_join")?),
    ));
    suite.rows.push(Row::ours(
        "calls",
        "task yield + wake",
        what,
        TICKS,
        Stat::from_measurement(find(&ours, "task_yield_wake")?),
    ));
    Ok(())
}

fn switch(suite: &mut Suite) -> anyhow::Result<()> {
    suite.step("switch: two apps yielding (icount)".into());
    let ours = instruction_counted("bench-switch")?;
    suite.rows.push(Row::ours(
        "switch",
        "app switch (yield kcall → scheduler → other app)",
        &ticks_meaning("per switch, two apps yielding to each other"),
        TICKS,
        Stat::from_measurement(find(&ours, "app_switch")?),
    ));
    Ok(())
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

fn hello_run(count: usize, memory: Option<&str>) -> anyhow::Result<RunOutput> {
    let options = RunOptions {
        memory: memory.map(str::to_owned),
        ..RunOptions::default()
    };
    boot_ours(
        &hello_apps(count)?,
        Firmware::Bios,
        &options,
        Duration::from_secs(600),
    )
}

fn scale(suite: &mut Suite) -> anyhow::Result<()> {
    let peak = |count: usize| -> anyhow::Result<u64> {
        suite.step(format!("scale: {count} hello apps"));
        let output = hello_run(count, None)?;
        if output.outcome != Some(ImageOutcome::AllAppsSucceeded) {
            bail!("{count} hello apps did not all succeed:\n{}", output.serial);
        }
        guest_output::parse_peak_frames(&output.serial).context("no frame count in the output")
    };
    let one = peak(1)?;
    let many = peak(64)?;
    let bytes_per_app = many.saturating_sub(one) as f64 * 4096.0 / 63.0;
    suite.rows.push(Row::ours(
        "scale",
        "memory per additional app",
        "peak physical frames with 64 hello-class apps vs 1, per app",
        "bytes",
        Stat::single(bytes_per_app),
    ));
    // Doubling, then bisection between the last count that fit and the first that did not.
    let fits = |count: usize| -> anyhow::Result<bool> {
        suite.step(format!("scale: {count} hello apps with -m 64M"));
        Ok(hello_run(count, Some("64M"))?.outcome == Some(ImageOutcome::AllAppsSucceeded))
    };
    let limit = if suite.settings.smoke {
        64
    } else {
        lite_abi::layout::MAX_APPS
    };
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
    let note = if good >= lite_abi::layout::MAX_APPS {
        " (the MAX_APPS limit)"
    } else if suite.settings.smoke {
        " (smoke: only 64 tried)"
    } else {
        ""
    };
    suite.rows.push(Row::ours(
        "scale",
        "most hello-class apps with -m 64M",
        &format!("apps that all run to success in one image with 64 MiB of RAM{note}"),
        "apps",
        Stat::single(good as f64),
    ));
    Ok(())
}

/// Uses KVM for the whole suite when it really works here (a test boot), else TCG; returns
/// what the probe found, for the report.
fn choose_accelerator() -> anyhow::Result<String> {
    if let Ok(forced) = std::env::var("LIBOS_QEMU_ACCEL") {
        return Ok(format!("LIBOS_QEMU_ACCEL={forced}"));
    }
    let (_, disk) = crate::boot_image(&default_bundle()?, Firmware::Bios)?;
    Ok(
        match qemu::probe_kvm(&Profile::for_firmware(Firmware::Bios)?, &disk) {
            Ok(()) => {
                qemu::use_accelerator("kvm");
                "KVM works: used".to_owned()
            }
            Err(why) => {
                qemu::use_accelerator("tcg");
                format!("KVM not used: {why}")
            }
        },
    )
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

/// Runs the suite (or the benchmark `only`) and writes the reports; returns the report.
pub fn run(only: Option<&str>, settings: Settings) -> anyhow::Result<Report> {
    if let Some(name) = only
        && !BENCHMARKS.contains(&name)
    {
        bail!(
            "no benchmark named '{name}' (known: {})",
            BENCHMARKS.join(", ")
        );
    }
    qemu::ensure_installed()?;
    let kvm = choose_accelerator()?;
    let progress = ProgressBar::new_spinner();
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    let mut suite = Suite {
        settings: settings.clone(),
        progress,
        peer: None,
        rows: Vec::new(),
    };
    for &name in BENCHMARKS {
        if only.is_some_and(|only| only != name) {
            continue;
        }
        let result = match name {
            "boot" => boot(&mut suite),
            "footprint" => footprint(&mut suite),
            "calls" => calls(&mut suite),
            "switch" => switch(&mut suite),
            _ => scale(&mut suite),
        };
        result.with_context(|| format!("benchmark {name}"))?;
        suite.progress.println(format!("bench {name}: done"));
    }
    suite.progress.finish_and_clear();
    let accelerator = qemu::accelerator();
    let report = Report {
        qemu: command_output("qemu-system-x86_64", &["--version"]),
        accelerator: accelerator.clone(),
        emulated: accelerator == "tcg",
        kvm,
        commit: command_output("git", &["rev-parse", "--short", "HEAD"]),
        date: command_output("date", &["-u", "+%Y-%m-%d"]),
        smoke: settings.smoke,
        peer_kernel: suite.peer.as_ref().map(|peer| peer.kernel_package.clone()),
        rows: suite.rows,
    };
    report.write(&settings.out, only.is_some())?;
    Ok(report)
}

/// Boots the Linux guest with nginx and fetches its page over loopback inside the guest: the
/// check that the peer the HTTP benchmarks compare against really serves.
pub fn peer_nginx_serves() -> anyhow::Result<RunOutput> {
    let peer = peer::build()?;
    let profile = Profile::for_firmware(Firmware::Bios)?;
    let append = "console=ttyS0 quiet panic=-1 libos.bench=nginx";
    let options = RunOptions::default();
    let command = qemu::linux_command(
        &profile,
        &peer.kernel,
        &peer.initramfs_nginx,
        append,
        &options,
    )?;
    qemu::run_watched(
        command,
        Duration::from_secs(120),
        Some(peer::NGINX_SERVED_LINE),
    )
}

/// Where `cargo xtask bench --publish` puts the latest full results for the README.
pub fn published_folder() -> std::path::PathBuf {
    crate::workspace_root().join("xtask/bench-results")
}

/// Copies the latest full run's results (re-rendered) to [`published_folder`].
pub fn publish() -> anyhow::Result<()> {
    let path = crate::target_dir().join("bench/results.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no results to publish at {}: run `cargo xtask bench` first",
            path.display()
        )
    })?;
    let report: Report = serde_json::from_str(&text).context("results.json does not parse")?;
    if report.smoke {
        bail!(
            "{} holds a smoke run; publish only full runs",
            path.display()
        );
    }
    report.write(&published_folder(), false)
}
