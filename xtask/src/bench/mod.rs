//! `cargo xtask bench [NAME] [--smoke]`: every headline figure, measured on real images and set
//! side by side with a Linux guest (see [`peer`]) booted with the same QEMU machine flags in the
//! same run. Every row's name says what is measured on our side and, after "vs", on Linux's; its
//! description says exactly what ran.
//!
//! - `boot`: wall time from QEMU's start until the hello bundle's app greets (BIOS and UEFI
//!   disk images) against the Linux guest's init printing READY.
//! - `footprint`: kernel, user space and boot payload sizes against the Linux kernel and
//!   initramfs; the smallest `-m` at which the hello bundle's app runs to exit 0 and the
//!   image ends with success, against the smallest at which Linux's init prints READY (neither
//!   side serves anything there), both by bisection.
//! - `calls`: TSC ticks per operation, under `-icount shift=0` on TCG (the guest TSC counts
//!   emulated instructions: TCG models no cycles, so these are instruction counts): libos's
//!   `Instant::now()` against Linux's `clock_gettime(CLOCK_MONOTONIC)` through the vDSO (both
//!   read the clock without trapping), and a null kcall against a Linux `getpid()` system call
//!   (both trap to the privileged layer and back); plus task spawn + join and yield + wake.
//! - `switch`: ticks per app switch (two apps yielding to each other), also under icount.
//! - `scale`: memory per additional hello-class app, and the most hello-class apps that all exit
//!   0 with `-m 64M` and with `-m 1G`, by bisection up to `lite_abi::layout::MAX_APPS`.
//!
//! - `http`: our http app against nginx in the Linux guest, same QEMU flags and page (see
//!   [`http`]): wrk keep-alive req/s, p50, p99; ab with a connection per request; a 16 MiB GET
//!   in MB/s; guest instructions per request under icount; our kcalls and traps per request. Both
//!   guests on a tap in a network namespace of the benchmark's own (QEMU's user network when no
//!   tap can be had, said in the rows).
//! - `kv`: our kv app against Debian's redis-server in the Linux guest, same QEMU flags (see
//!   [`kv`]): redis-benchmark `-c 30` with pipelines of 16 and of 1, SET and GET req/s and p99,
//!   durable (redis `appendfsync always` with its AOF on ext4 on a virtio-blk disk, ours the kv
//!   app with its disk) and in memory, on the same tap setup as `http`.
//!
//! Some rows carry a target for our figure; the reports say whether it was met, and a missed
//! target does not fail the run. Results: `target/bench/results.json`, `report.md` and
//! `report.svg`.

pub mod cpio;
pub mod guest_output;
pub mod http;
pub mod kv;
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
pub const BENCHMARKS: &[&str] = &[
    "boot",
    "footprint",
    "calls",
    "switch",
    "scale",
    "http",
    "kv",
];

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

/// The ready line of the hello bundle's app.
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

/// The shipped bundle `name`, renamed so that its images are built under
/// `target/images/bench-suite-NAME/`: a `cargo xtask run` or a test booting the same bundle at the
/// same time then holds no lock on the disk image the suite boots.
fn suite_bundle(name: &str) -> anyhow::Result<Manifest> {
    let mut manifest = bundle::load(&bundle::find(name)?)?;
    manifest.name = format!("bench-suite-{name}");
    Ok(manifest)
}

fn default_bundle() -> anyhow::Result<Manifest> {
    suite_bundle("hello")
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
    let what = "wall ms from QEMU's start to the first ready line, median of the boots. Ours: the \
                hello bundle (one app, hello) as a disk image, until hello prints its greeting \
                ([hello] Hello from …) on the serial console; Linux: the firmware loads vmlinuz and \
                the initramfs (-kernel/-initrd), until busybox's /init prints LINUX-PEER READY";
    suite.rows.push(Row::compared(
        "boot",
        "boot to ready, BIOS (SeaBIOS): our disk image until hello greets vs Linux until init prints READY",
        what,
        "ms",
        bios,
        linux_bios,
    ));
    suite.rows.push(Row::compared(
        "boot",
        "boot to ready, UEFI (OVMF): our disk image until hello greets vs Linux until init prints READY",
        what,
        "ms",
        uefi,
        linux_uefi,
    ));
    Ok(())
}

/// Whether every app of `manifest` printed an exit with status 0 and the image ended with success.
fn all_exited_zero(manifest: &Manifest, output: &RunOutput) -> bool {
    let exited: std::collections::HashSet<String> = guest_output::parse_exits(&output.serial)
        .into_iter()
        .filter(|(_, status)| *status == 0)
        .map(|(name, _)| name)
        .collect();
    output.outcome == Some(ImageOutcome::AllAppsSucceeded)
        && manifest.apps.iter().all(|app| exited.contains(&app.name))
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
            "kernel file: kernel-lite ELF (stripped) vs Linux vmlinuz",
            "bytes on disk. Ours: kernel-lite's ELF with debug info stripped; Linux: the Debian \
             cloud kernel's compressed vmlinuz",
            file_size(&built.kernel)?,
            linux_kernel,
        ),
        (
            "user space file: our user image ELF (libos + the hello bundle's program) vs Linux initramfs",
            "bytes on disk. Ours: the stripped user image ELF that kernel-lite loads; Linux: the \
             newc initramfs with busybox-static, the call benchmark and /init (no nginx)",
            file_size(&built.user_image)?,
            linux_initramfs,
        ),
        (
            "boot payload: our BIOS disk image vs Linux vmlinuz + initramfs",
            "bytes on disk. Ours: the whole BIOS disk image (bootloader, kernel-lite, user image, \
             boot bundle); Linux: vmlinuz plus the initramfs, which SeaBIOS loads with \
             -kernel/-initrd",
            file_size(&bios)?,
            linux_boot,
        ),
        (
            "boot payload: our UEFI disk image vs Linux vmlinuz + initramfs",
            "bytes on disk. Ours: the whole UEFI disk image (bootloader, kernel-lite, user image, \
             boot bundle); Linux: vmlinuz plus the initramfs, which OVMF loads with \
             -kernel/-initrd",
            file_size(&uefi)?,
            linux_boot,
        ),
    ];
    for (name, what, ours, linux) in sizes {
        let (ours, linux) = (Stat::single(ours), Stat::single(linux));
        suite
            .rows
            .push(Row::compared("footprint", name, what, "bytes", ours, linux));
    }

    let step = if suite.settings.smoke { 64 } else { 2 };
    let ours = smallest_memory(suite, "our image", 2, 256, step, |mib| {
        let options = RunOptions {
            memory: Some(format!("{mib}M")),
            ..RunOptions::default()
        };
        // A machine too small for the bootloader hangs rather than failing: cut it short.
        let output = boot_ours(&manifest, Firmware::Bios, &options, Duration::from_secs(15))?;
        Ok(all_exited_zero(&manifest, &output))
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
        "smallest -m: ours runs hello to exit 0 and the image exits with success vs Linux init prints READY",
        &format!(
            "the smallest QEMU -m in MiB, by bisection between 2 and 256 MiB to {step} MiB, BIOS \
             boot. Ours: the hello bundle's one app, runs to exit status 0 and the image \
             ends with success (isa-debug-exit: all apps succeeded) within 15 s; Linux: busybox's \
             /init prints LINUX-PEER READY within 60 s (nothing is served on either side)"
        ),
        "MiB",
        Stat::single(ours as f64),
        Stat::single(linux as f64),
    ));
    Ok(())
}

fn instruction_counted(bundle_name: &str) -> anyhow::Result<Vec<Measurement>> {
    let manifest = suite_bundle(bundle_name)?;
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

/// Target: task spawn + join in at most this many ticks (instructions under TCG).
const TARGET_TASK_SPAWN_JOIN: f64 = 300.0;
/// Target: an app switch in at most this many ticks.
const TARGET_APP_SWITCH: f64 = 200.0;
/// Target: at most this many bytes of memory per additional hello-class app.
const TARGET_BYTES_PER_APP: f64 = 24.0 * 1024.0;

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

/// The vDSO's clock read on the Linux guest: its figure, and the clocksource it ran on.
const LINUX_VDSO_CLOCK: &str = "linux_clock_gettime_vdso";

/// Clocksources whose reads the x86-64 vDSO serves in user mode (Linux 6.1: those with a
/// `vdso_clock_mode`); with any other (hpet, acpi_pm, …) the vDSO's `clock_gettime` falls back
/// to a system call.
const VDSO_CLOCKSOURCES: &[&str] = &[
    "tsc",
    "tsc-early",
    "kvm-clock",
    "hyperv_clocksource_tsc_page",
];

fn calls(suite: &mut Suite) -> anyhow::Result<()> {
    suite.step("calls: libos calls and kcalls (icount)".into());
    let ours = instruction_counted("bench-calls")?;
    let peer = suite.peer()?;
    suite.step("calls: Linux getpid and vDSO clock_gettime (icount)".into());
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
    if let Some(why) = guest_output::bench_error(&output.serial, LINUX_VDSO_CLOCK) {
        bail!(
            "the Linux guest could not read its clock through the vDSO: {why}; no system-call \
             fallback is measured in its place"
        );
    }
    let vdso_clock = Stat::from_measurement(find(&linux, LINUX_VDSO_CLOCK).with_context(|| {
        format!(
            "the Linux guest printed no vDSO clock_gettime result:\n{}",
            output.serial
        )
    })?);
    let clocksource = peer::clocksource(&output.serial)
        .with_context(|| format!("the Linux guest named no clocksource:\n{}", output.serial))?;
    let clocksource_note = if VDSO_CLOCKSOURCES.contains(&clocksource.as_str()) {
        format!("Linux's clocksource was {clocksource}, which the vDSO reads in user mode")
    } else {
        format!(
            "Linux's clocksource was {clocksource}, which the vDSO cannot read in user mode: \
             its clock_gettime fell back to a system call"
        )
    };
    let per_op = ticks_meaning("per operation, median of 7 runs × 20 000 iterations");
    suite.rows.push(Row::compared(
        "calls",
        "clock read: libos Instant::now() vs Linux clock_gettime(CLOCK_MONOTONIC) through the vDSO",
        &format!(
            "{per_op}. Ours: libos's Instant::now() in an app (a user-mode rdtsc kept as TSC ticks, no \
             kcall; nanoseconds are worked out only when two Instants are subtracted); \
             Linux: a static program finds __vdso_clock_gettime through AT_SYSINFO_EHDR and the \
             vDSO's symbol table and calls it, checking it returns 0 and the clock moves; \
             {clocksource_note}"
        ),
        TICKS,
        Stat::from_measurement(find(&ours, "clock_read")?),
        vdso_clock,
    ));
    suite.rows.push(Row::compared(
        "calls",
        "null kcall (ring 3 → kernel-lite → ring 3) vs Linux getpid() system call",
        &format!(
            "{per_op}. Ours: libos's null kcall (kcall number Null: kernel-lite's gate entered, nothing done, \
             0 returned) from an app; Linux: \
             getpid() by the syscall instruction from a static program (no libc, no vDSO)"
        ),
        TICKS,
        Stat::from_measurement(find(&ours, "null_kcall")?),
        getpid,
    ));
    suite.rows.push(
        Row::ours(
            "calls",
            "task spawn + join, one at a time (libos executor, within one app)",
            &format!(
                "{per_op}. Ours only: spawning a task that returns a number on the app's own \
                 executor and awaiting its join handle at once, no kcall"
            ),
            TICKS,
            Stat::from_measurement(find(&ours, "task_spawn_join")?),
        )
        .with_target(TARGET_TASK_SPAWN_JOIN),
    );
    // Newer call-benches also spawn in batches that go through the executor's ready queue.
    if let Ok(batched) = find(&ours, "task_spawn_join_batch") {
        suite.rows.push(Row::ours(
            "calls",
            "task spawn + join, in batches of 16 through the ready queue (libos executor, within one app)",
            &format!(
                "{per_op}. Ours only: 16 tasks spawned, the spawner yields so the executor polls \
                 them from its ready queue, then their join handles are awaited; ticks per task, \
                 no kcall"
            ),
            TICKS,
            Stat::from_measurement(batched),
        ));
    }
    suite.rows.push(Row::ours(
        "calls",
        "task yield + wake (libos executor, within one app)",
        &format!(
            "{per_op}. Ours only: a task yields to its executor and is polled again, no kcall"
        ),
        TICKS,
        Stat::from_measurement(find(&ours, "task_yield_wake")?),
    ));
    Ok(())
}

fn switch(suite: &mut Suite) -> anyhow::Result<()> {
    suite.step("switch: two apps yielding (icount)".into());
    let ours = instruction_counted("bench-switch")?;
    suite.rows.push(
        Row::ours(
            "switch",
            "app switch: yield kcall → kernel-lite scheduler → the other app",
            &format!(
                "{}. Ours only: two apps call thread::yield_now() (the yield kcall) in turn, 7 runs \
                 × 5 000 yields each; a run's ticks over its 10 000 switches",
                ticks_meaning("per switch, median of 7 runs")
            ),
            TICKS,
            Stat::from_measurement(find(&ours, "app_switch")?),
        )
        .with_target(TARGET_APP_SWITCH),
    );
    Ok(())
}

/// A generated bundle of `count` hello-class apps, `hello-0` … (every count is written to the
/// same manifest, so the images of one run overwrite each other).
fn hello_apps(count: usize) -> anyhow::Result<Manifest> {
    let mut text = String::new();
    for index in 0..count {
        text.push_str(&format!(
            "[[app]]\nname = \"hello-{index}\"\nprogram = \"hello\"\nmemory = \"256 KiB\"\nstack = \"16 KiB\"\n"
        ));
    }
    let path = crate::target_dir()
        .join("bench")
        .join("scale-hello-apps.toml");
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    std::fs::write(&path, &text)?;
    Ok(bundle::parse(&path, &text)?)
}

/// One boot of `count` hello-class apps: whether every app exited 0 and the image ended with
/// success, and what it printed.
struct HelloRun {
    all_exited_zero: bool,
    output: RunOutput,
}

fn hello_run(count: usize, memory: Option<&str>, timeout: Duration) -> anyhow::Result<HelloRun> {
    let manifest = hello_apps(count)?;
    let options = RunOptions {
        memory: memory.map(str::to_owned),
        ..RunOptions::default()
    };
    let output = boot_ours(&manifest, Firmware::Bios, &options, timeout)?;
    Ok(HelloRun {
        all_exited_zero: all_exited_zero(&manifest, &output),
        output,
    })
}

/// Why a boot of hello apps did not count as fitting: how the image ended, as kernel-lite's
/// exit outcome names it (`BundleRefused`, `SomeAppFailed`, …).
fn miss_reason(output: &RunOutput) -> String {
    match (output.timed_out, output.outcome, output.status) {
        (true, _, _) => "timed out".to_owned(),
        (_, Some(ImageOutcome::AllAppsSucceeded), _) => {
            "success, but not every app printed an exit with status 0".to_owned()
        }
        (_, Some(outcome), _) => format!("{outcome:?}"),
        (_, None, Some(status)) => format!("QEMU exit status {status}"),
        (_, None, None) => "QEMU killed".to_owned(),
    }
}

/// The most apps that fit, as found by [`most_that_fit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Most {
    count: usize,
    /// `count` is the largest that could be tried (the image's MAX_APPS), not a measured limit.
    limit_hit: bool,
    /// Boots tried.
    tries: usize,
}

/// The largest count in `1..=max` for which `fits` holds, by bisection, assuming that if a
/// count fits every smaller one does: `max` itself is tried first, then 1, then halves.
fn most_that_fit(
    max: usize,
    mut fits: impl FnMut(usize) -> anyhow::Result<bool>,
) -> anyhow::Result<Most> {
    let mut tries = 1;
    if fits(max)? {
        return Ok(Most {
            count: max,
            limit_hit: true,
            tries,
        });
    }
    tries += 1;
    if max == 1 || !fits(1)? {
        return Ok(Most {
            count: 0,
            limit_hit: false,
            tries,
        });
    }
    let (mut good, mut bad) = (1, max);
    while bad - good > 1 {
        let middle = good + (bad - good) / 2;
        tries += 1;
        if fits(middle)? {
            good = middle
        } else {
            bad = middle
        }
    }
    Ok(Most {
        count: good,
        limit_hit: false,
        tries,
    })
}

/// The memory sizes the scale benchmark finds the most apps for.
const SCALE_MEMORY: &[&str] = &["64M", "1G"];

/// Hello-class apps a smoke run tries per memory size (and only those).
const SMOKE_APPS: usize = 64;

fn scale(suite: &mut Suite) -> anyhow::Result<()> {
    let max_apps = lite_abi::layout::MAX_APPS;
    let peak = |count: usize| -> anyhow::Result<(u64, Duration)> {
        suite.step(format!("scale: {count} hello apps"));
        let run = hello_run(count, None, Duration::from_secs(600))?;
        if !run.all_exited_zero {
            bail!(
                "{count} hello apps did not all exit 0:\n{}",
                run.output.serial
            );
        }
        let frames = guest_output::parse_peak_frames(&run.output.serial)
            .context("no frame count in the output")?;
        Ok((frames, run.output.wall))
    };
    let (one, one_wall) = peak(1)?;
    let (many, many_wall) = peak(64)?;
    let bytes_per_app = many.saturating_sub(one) as f64 * 4096.0 / 63.0;
    suite.rows.push(
        Row::ours(
            "scale",
            "memory per additional hello-class app (peak frames, 64 apps vs 1)",
            "bytes of physical memory per app beyond the first: kernel-lite's peak count of 4 KiB \
             frames in use with 64 hello apps (256 KiB heap quota, 16 KiB stack each) minus that \
             with 1, over 63, with the profile's default -m. Ours only",
            "bytes",
            Stat::single(bytes_per_app),
        )
        .with_target(TARGET_BYTES_PER_APP),
    );

    // A boot's time grows with its apps: allow five times the measured cost per app (and at
    // least 10 ms an app), so only a hang times out; a timed-out boot counts as not fitting.
    let per_app = (many_wall.saturating_sub(one_wall) / 63).max(Duration::from_millis(2)) * 5;
    let timeout = |count: usize| Duration::from_secs(60) + per_app * count as u32;
    for &memory in SCALE_MEMORY {
        // How the boots that did not fit ended, and how often.
        let mut misses = std::collections::BTreeMap::<String, usize>::new();
        let mut fits = |count: usize| -> anyhow::Result<bool> {
            suite.step(format!("scale: {count} hello apps with -m {memory}"));
            let run = hello_run(count, Some(memory), timeout(count))?;
            if !run.all_exited_zero {
                *misses.entry(miss_reason(&run.output)).or_default() += 1;
            }
            Ok(run.all_exited_zero)
        };
        let (most, qualifier, method) = if suite.settings.smoke {
            let count = SMOKE_APPS.min(max_apps);
            let good = fits(count)?;
            (
                Most {
                    count: if good { count } else { 0 },
                    limit_hit: count == max_apps,
                    tries: 1,
                },
                format!(" (smoke run: only {count} tried, not a limit)"),
                format!("smoke run: one boot with {count} apps, no bisection"),
            )
        } else {
            let most = most_that_fit(max_apps, &mut fits)?;
            let qualifier = if most.limit_hit {
                " (= MAX_APPS, the image's app limit: memory did not run out)".to_owned()
            } else {
                String::new()
            };
            let method = format!(
                "found by bisection between 1 and MAX_APPS = {max_apps}, {} boot{}",
                most.tries,
                if most.tries == 1 { "" } else { "s" }
            );
            (most, qualifier, method)
        };
        if most.count == 0 {
            bail!("not even one hello app exits 0 with -m {memory}");
        }
        let misses = if misses.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = misses
                .iter()
                .map(|(reason, boots)| format!("{reason} ×{boots}"))
                .collect();
            format!(" Boots that did not fit ended: {}.", list.join(", "))
        };
        suite.rows.push(Row::ours(
            "scale",
            &format!("most hello-class apps that all exit 0 with -m {memory}{qualifier}"),
            &format!(
                "the largest count of hello apps (256 KiB heap quota, 16 KiB stack each) in one BIOS \
                 image with QEMU -m {memory} for which every app prints an exit with status 0 and the \
                 image ends with success ({method}; each boot's timeout 60 s + {:.0} ms per app: five \
                 times the per-app boot cost measured with 64 apps, counted as at least 2 ms).{misses} \
                 Ours only",
                per_app.as_secs_f64() * 1000.0
            ),
            "apps",
            Stat::single(most.count as f64),
        ));
    }
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
            "http" => http::http(&mut suite),
            "kv" => kv::kv(&mut suite),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bisection_finds_the_most_that_fit() {
        for (max, limit) in [(1024, 700), (65536, 21_345), (1024, 1), (7, 6)] {
            let mut tried = Vec::new();
            let most = most_that_fit(max, |count| {
                tried.push(count);
                Ok(count <= limit)
            })
            .unwrap();
            assert_eq!(
                (most.count, most.limit_hit),
                (limit, false),
                "{max} {limit}"
            );
            assert_eq!(most.tries, tried.len());
            assert!(tried.iter().all(|&count| (1..=max).contains(&count)));
            assert!(most.tries <= 2 + max.ilog2() as usize + 1, "{tried:?}");
        }
    }

    #[test]
    fn bisection_says_when_the_limit_is_hit_or_nothing_fits() {
        let most = most_that_fit(1024, |_| Ok(true)).unwrap();
        assert_eq!((most.count, most.limit_hit, most.tries), (1024, true, 1));
        let most = most_that_fit(1024, |_| Ok(false)).unwrap();
        assert_eq!((most.count, most.limit_hit, most.tries), (0, false, 2));
        assert!(most_that_fit(16, |_| anyhow::bail!("qemu failed")).is_err());
    }
}
