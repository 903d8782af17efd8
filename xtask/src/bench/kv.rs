//! `cargo xtask bench kv`: our kv app against Debian's `redis-server` in the Linux guest, side by
//! side in one run, both driven by the same `redis-benchmark` (redis-tools) from the host.
//!
//! Two durabilities, each with both sides on identical QEMU flags (the q35 BIOS profile, one
//! modern-only virtio-net NIC on a tap in a network namespace of the benchmark's own, as in
//! [`super::http`]):
//! - **durable**: both guests get the same data disk, a fresh 256 MiB raw image file under
//!   `target/bench/` as one virtio-blk device ([`qemu::disk_args`], QEMU's default
//!   `cache=writeback`: a flush from the guest is an `fdatasync` on the host). redis-server runs
//!   with `appendonly yes`, `appendfsync always`, `save ""`, its AOF on an ext4 file system
//!   (made on the host by `mkfs.ext4`, mounted by the guest with the kernel's defaults, barriers
//!   on); ours is the kv app with `[app.disk]` (bundle `bench-kv`), whose acknowledged writes
//!   are flushed. Until that bundle's manifest parses in this tree, ours is not run and its rows
//!   say why (with the manifest's error) beside redis-server's figures.
//! - **in memory**: neither guest has a disk; redis-server with `appendonly no`, `save ""`; ours
//!   is the kv app without a disk (bundle `bench-kv-memory`).
//!
//! Each boot gets `redis-benchmark -h 10.0.2.15 -p 6379 -c 30 -P 16 -t set,get -n N --csv`
//! (Unikraft's published setup: 30 connections, pipelines of 16) and the same with `-P 1`; the
//! CSV gives requests per second and the p99 latency of each test. Rows: req/s and p99 for SET
//! and GET, per durability and pipeline depth, with the floor "ahead of redis-server" on every
//! req/s row (equal durability on both sides of each row).

use super::http::{Network, ensure_tool, free_port, run_tool, twice};
use super::report::{Bound, LATENCY_MS, Row, Stat};
use super::{Suite, peer, suite_bundle};
use crate::bundle::{self, Manifest, Protocol};
use crate::image::Firmware;
use crate::qemu::{self, PortForward, Profile, RunOptions, RunningQemu, TapNamespace, UserNetwork};
use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// The line the kv app logs once it listens.
const OUR_LISTENING_LINE: &str = "[kv] INFO  kv::server: kv: listening";

/// How long a side may take to boot and listen (TCG on a shared machine).
const BOOT_WAIT: Duration = Duration::from_secs(240);

/// redis-benchmark's connections, as in Unikraft's published runs.
const CONNECTIONS: u32 = 30;

/// The size of the data disk both guests get in the durable runs.
const DISK_BYTES: u64 = 256 << 20;

/// One redis-benchmark setting: the pipeline depth and the requests per test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    pipeline: u32,
    requests: u32,
}

impl Load {
    /// How the rows name the flags.
    fn flags(self) -> String {
        format!("-c{CONNECTIONS} -P{}", self.pipeline)
    }
}

/// Sized for the whole benchmark to stay near three minutes under TCG: pipelined, our kv does
/// about 100 000 requests a second and redis-server a fraction of that.
const FULL: [Load; 2] = [
    Load {
        pipeline: 16,
        requests: 300_000,
    },
    Load {
        pipeline: 1,
        requests: 30_000,
    },
];

const SMOKE: [Load; 2] = [
    Load {
        pipeline: 16,
        requests: 3_200,
    },
    Load {
        pipeline: 1,
        requests: 600,
    },
];

/// The tests redis-benchmark runs (`-t`), as its CSV names them.
const TESTS: [&str; 2] = ["SET", "GET"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durability {
    /// Every acknowledged write is on the disk.
    Durable,
    /// No disk.
    Memory,
}

impl Durability {
    fn label(self) -> &'static str {
        match self {
            Durability::Durable => "durable",
            Durability::Memory => "in memory",
        }
    }

    /// The Linux guest's boot mode (`libos.bench=...`).
    fn peer_mode(self) -> &'static str {
        match self {
            Durability::Durable => "redis-net",
            Durability::Memory => "redis-net-memory",
        }
    }

    /// Our bundle's name.
    fn bundle(self) -> &'static str {
        match self {
            Durability::Durable => "bench-kv",
            Durability::Memory => "bench-kv-memory",
        }
    }

    /// redis-server's configuration, as the rows name it.
    fn redis_config(self) -> &'static str {
        match self {
            Durability::Durable => "appendonly yes, appendfsync always",
            Durability::Memory => "appendonly no",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Linux,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Ours => "ours (kv app)",
            Side::Linux => "Linux (redis-server)",
        }
    }

    fn file_name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Linux => "linux",
        }
    }
}

/// One test of redis-benchmark's CSV output.
#[derive(Debug, Clone, PartialEq)]
struct TestResult {
    test: String,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

/// Reads `redis-benchmark --csv` (7.x: `"test","rps","avg_latency_ms","min_latency_ms",
/// "p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"`), by the header's names.
fn parse_csv(text: &str) -> Vec<TestResult> {
    let fields = |line: &str| -> Vec<String> {
        line.split(',')
            .map(|field| field.trim().trim_matches('"').to_owned())
            .collect()
    };
    let mut lines = text.lines().filter(|line| line.starts_with('"'));
    let Some(header) = lines.next().map(fields) else {
        return Vec::new();
    };
    let column = |name: &str| header.iter().position(|field| field == name);
    let (Some(test), Some(rps), Some(p50), Some(p99), Some(max)) = (
        column("test"),
        column("rps"),
        column("p50_latency_ms"),
        column("p99_latency_ms"),
        column("max_latency_ms"),
    ) else {
        return Vec::new();
    };
    lines
        .filter_map(|line| {
            let values = fields(line);
            let number = |index: usize| values.get(index)?.parse::<f64>().ok();
            Some(TestResult {
                test: values.get(test)?.clone(),
                per_second: number(rps)?,
                p50_ms: number(p50)?,
                p99_ms: number(p99)?,
                max_ms: number(max)?,
            })
        })
        .collect()
}

/// One side booted and serving at `host:port`.
struct Serving {
    side: Side,
    /// Before `namespace`: QEMU ends before its namespace goes.
    qemu: RunningQemu,
    namespace: Option<TapNamespace>,
    host: String,
    port: u16,
}

impl Serving {
    /// `program`, to run where the guest is reached: in the tap's namespace, or on the host.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command.args(["-h", &self.host, "-p", &self.port.to_string()]);
        match &self.namespace {
            Some(namespace) => namespace.exec(&command),
            None => command,
        }
    }

    /// One command through `redis-cli`: its reply, as redis-cli prints it.
    fn cli(&self, args: &[&str]) -> anyhow::Result<String> {
        Ok(run_tool(self.client("redis-cli").args(args), "redis-cli")?
            .trim()
            .to_owned())
    }
}

/// The kv app's durable bundle, or why it cannot be had in this tree: the manifest's error (its
/// path relative to the workspace, without the suggested fix).
fn durable_bundle() -> Result<Manifest, String> {
    let root = crate::workspace_root();
    let path = bundle::find(Durability::Durable.bundle()).map_err(|error| format!("{error:#}"))?;
    let mut manifest = bundle::load(&path).map_err(|error| {
        let text = format!("{error:#}").replace(&format!("{}/", root.display()), "");
        match text.split_once(" fix:") {
            Some((error, _fix)) => error.trim().to_owned(),
            None => text,
        }
    })?;
    manifest.name = format!("bench-suite-{}", Durability::Durable.bundle());
    Ok(manifest)
}

/// A fresh data disk for `side`: ext4 for redis-server; for ours, the bundle's disk image
/// (its disk table, every extent blank), made anew.
fn fresh_disk(side: Side, ours: Option<&Manifest>) -> anyhow::Result<PathBuf> {
    let path = crate::target_dir()
        .join("bench")
        .join(format!("kv-disk-{}.img", side.file_name()));
    std::fs::create_dir_all(path.parent().expect("under target/bench"))?;
    match side {
        Side::Linux => peer::make_redis_disk(&path, DISK_BYTES)?,
        Side::Ours => {
            let manifest = ours.context("no bundle for the kv app")?;
            crate::disk::DiskImage::prepare(manifest, &path, true)?
                .with_context(|| format!("bundle {} has no [app.disk]", manifest.name))?;
        }
    }
    Ok(path)
}

fn start(
    side: Side,
    durability: Durability,
    ours: Option<&Manifest>,
    suite: &mut Suite,
    network: &Network,
) -> anyhow::Result<Serving> {
    let profile = Profile::for_firmware(Firmware::Bios)?;
    let guest = Ipv4Addr::from(peer::GUEST_ADDRESS);
    let (namespace, user, host, port) = match network {
        Network::Tap => {
            let namespace = TapNamespace::create(Ipv4Addr::from(peer::GATEWAY), 24)
                .context("making the tap's network namespace")?;
            (Some(namespace), None, guest.to_string(), peer::REDIS_PORT)
        }
        Network::User { .. } => {
            let port = free_port()?;
            let user = UserNetwork {
                forwards: vec![PortForward {
                    app: "kv".into(),
                    protocol: Protocol::Tcp,
                    host_port: port,
                    guest_address: guest,
                    guest_port: peer::REDIS_PORT,
                }],
                pcap: None,
            };
            (None, Some(user), Ipv4Addr::LOCALHOST.to_string(), port)
        }
    };
    // Identical QEMU options for both sides: the network, and the disk when durable.
    let options = RunOptions {
        network: user,
        tap: namespace.as_ref().map(TapNamespace::network),
        ..RunOptions::default()
    };
    let (mut command, ready) = match side {
        Side::Ours => {
            let manifest = ours.context("no bundle for the kv app")?;
            let bundle = UserNetwork::for_bundle(manifest)
                .with_context(|| format!("bundle {} has no networked app", manifest.name))?;
            if bundle.forwards.len() != 1
                || bundle.forwards[0].guest_address != guest
                || bundle
                    .host_port("kv", Protocol::Tcp, peer::REDIS_PORT)
                    .is_none()
            {
                bail!(
                    "bundle {} must forward one TCP port to the kv app's port 6379 at 10.0.2.15",
                    manifest.name
                );
            }
            let (_, image) = crate::boot_image(manifest, Firmware::Bios)?;
            (
                qemu::command(&profile, &image, &options)?,
                OUR_LISTENING_LINE,
            )
        }
        Side::Linux => {
            let peer = suite.peer()?;
            let append = format!(
                "console=ttyS0 quiet panic=-1 libos.bench={}",
                durability.peer_mode()
            );
            let command = qemu::linux_command(
                &profile,
                &peer.kernel,
                &peer.initramfs_redis,
                &append,
                &options,
            )?;
            (command, peer::REDIS_LISTENING_LINE)
        }
    };
    if durability == Durability::Durable {
        command.args(qemu::disk_args(&fresh_disk(side, ours)?));
    }
    let command = match &namespace {
        Some(namespace) => namespace.exec(&command),
        None => command,
    };
    suite.step(format!(
        "kv: booting {}, {}",
        side.label(),
        durability.label()
    ));
    let mut qemu = RunningQemu::spawn(command)?;
    if qemu.wait_for_serial(ready, BOOT_WAIT).is_none() {
        let output = qemu.stop();
        bail!(
            "{} ({}) did not get to '{ready}' (QEMU status {:?}); its output was:\n{}",
            side.label(),
            durability.label(),
            output.status,
            output.serial
        );
    }
    let serving = Serving {
        side,
        qemu,
        namespace,
        host,
        port,
    };
    check_serves(&serving, durability)?;
    Ok(serving)
}

/// A SET and a GET through redis-cli; on the Linux side, that redis-server runs with the
/// configuration the rows claim.
fn check_serves(serving: &Serving, durability: Durability) -> anyhow::Result<()> {
    let set = serving.cli(&["SET", "libos:bench:check", "42"])?;
    let get = serving.cli(&["GET", "libos:bench:check"])?;
    if set != "OK" || get != "42" {
        bail!(
            "{} did not answer SET and GET: '{set}', '{get}'; serial:\n{}",
            serving.side.label(),
            serving.qemu.serial()
        );
    }
    if serving.side == Side::Linux {
        let expected: &[(&str, &str)] = match durability {
            Durability::Durable => &[("appendonly", "yes"), ("appendfsync", "always")],
            Durability::Memory => &[("appendonly", "no")],
        };
        for (name, value) in expected.iter().chain(&[("save", "")]) {
            let reply = serving.cli(&["CONFIG", "GET", name])?;
            let got = reply.lines().nth(1).unwrap_or("").trim();
            if got != *value {
                bail!("redis-server runs with {name} '{got}', not '{value}'");
            }
        }
    }
    Ok(())
}

fn redis_benchmark(serving: &Serving, load: Load) -> anyhow::Result<Vec<TestResult>> {
    let text = run_tool(
        serving
            .client("redis-benchmark")
            .args(["-c", &CONNECTIONS.to_string()])
            .args(["-P", &load.pipeline.to_string()])
            .args(["-n", &load.requests.to_string()])
            .args(["-t", "set,get", "--csv"]),
        "redis-benchmark",
    )?;
    let results = parse_csv(&text);
    for test in TESTS {
        if !results.iter().any(|result| result.test == test) {
            bail!("redis-benchmark gave no {test} figures:\n{text}");
        }
    }
    Ok(results)
}

/// What one boot measured: per load, the tests' figures (`None` when redis-benchmark failed
/// twice), and notes on what failed or what the guest said of its disk.
struct SideResults {
    loads: Vec<(Load, Option<Vec<TestResult>>)>,
    notes: Vec<String>,
}

impl SideResults {
    fn figure(&self, load: Load, test: &str) -> Option<&TestResult> {
        self.loads
            .iter()
            .find(|(measured, _)| *measured == load)?
            .1
            .as_ref()?
            .iter()
            .find(|result| result.test == test)
    }
}

fn side_run(
    side: Side,
    durability: Durability,
    ours: Option<&Manifest>,
    suite: &mut Suite,
    loads: &[Load],
    network: &Network,
) -> anyhow::Result<SideResults> {
    let serving = start(side, durability, ours, suite, network)?;
    let mut results = SideResults {
        loads: Vec::new(),
        notes: Vec::new(),
    };
    for &load in loads {
        suite.step(format!(
            "kv: {}, {}: redis-benchmark {} -n {}",
            side.label(),
            durability.label(),
            load.flags(),
            load.requests
        ));
        let (figures, failed) = twice("redis-benchmark", || redis_benchmark(&serving, load));
        results.loads.push((load, figures));
        results.notes.extend(failed);
    }
    if side == Side::Linux && durability == Durability::Durable {
        match peer::redis_disk(&serving.qemu.serial()) {
            Some(mount) => results.notes.push(format!(
                "redis-server's disk as the guest mounted it: {mount}"
            )),
            None => bail!(
                "the Linux guest did not mount redis-server's disk:\n{}",
                serving.qemu.serial()
            ),
        }
        if let Ok(info) = serving.cli(&["INFO", "persistence"]) {
            let field = |name: &str| {
                info.lines()
                    .find_map(|line| line.trim().strip_prefix(&format!("{name}:")))
                    .map(str::to_owned)
            };
            if let (Some(size), Some(status)) =
                (field("aof_current_size"), field("aof_last_write_status"))
            {
                results.notes.push(format!(
                    "redis-server's AOF after the loads: {size} bytes, last write {status}"
                ));
            }
        }
    }
    Ok(results)
}

/// The kv benchmark's rows.
pub(super) fn kv(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_tool("redis-benchmark", "redis-tools")?;
    ensure_tool("redis-cli", "redis-tools")?;
    let loads: &[Load] = if suite.settings.smoke { &SMOKE } else { &FULL };
    let network = Network::choose();
    if let Network::User { why } = &network {
        eprintln!("xtask: kv: on QEMU's user network: the tap was not used: {why}");
    }
    let memory_bundle = suite_bundle(Durability::Memory.bundle())?;
    let durable_bundle = durable_bundle();
    let mut rows = Vec::new();
    for durability in [Durability::Memory, Durability::Durable] {
        let linux = side_run(Side::Linux, durability, None, suite, loads, &network)?;
        let ours = match (durability, &durable_bundle) {
            (Durability::Memory, _) => Ok(side_run(
                Side::Ours,
                durability,
                Some(&memory_bundle),
                suite,
                loads,
                &network,
            )?),
            (Durability::Durable, Ok(manifest)) => side_run(
                Side::Ours,
                durability,
                Some(manifest),
                suite,
                loads,
                &network,
            )
            .map_err(|error| format!("the durable kv app did not serve: {error:#}")),
            (Durability::Durable, Err(error)) => Err(format!(
                "pending integration of the durable kv app: {error}"
            )),
        };
        rows.extend(durability_rows(
            durability,
            loads,
            ours.as_ref(),
            &linux,
            suite.settings.smoke,
            &network,
        ));
    }
    if rows
        .iter()
        .all(|row| row.peer.is_none() && row.ours.is_none())
    {
        bail!("the kv benchmark measured nothing");
    }
    suite.rows.extend(rows);
    Ok(())
}

/// The rows of one durability: per load and test, req/s (with the floor "ahead of
/// redis-server") and p99.
fn durability_rows(
    durability: Durability,
    loads: &[Load],
    ours: Result<&SideResults, &String>,
    linux: &SideResults,
    smoke: bool,
    network: &Network,
) -> Vec<Row> {
    let network_text = match network {
        Network::Tap => {
            "one virtio-net-pci NIC with disable-legacy=on on a tap device in a network \
                         namespace the benchmark made for each boot (its host side 10.0.2.2/24), \
                         redis-benchmark in that namespace against 10.0.2.15:6379 directly"
                .to_owned()
        }
        Network::User { why } => format!(
            "one virtio-net-pci NIC with disable-legacy=on on QEMU's user network, \
             redis-benchmark on the host through a hostfwd to 10.0.2.15:6379 (user networking: \
             its forward's listen queue of one is in the figures; the tap was not used: {why})"
        ),
    };
    let disk_text = match durability {
        Durability::Durable => format!(
            "Both guests get the same data disk: a fresh {} MiB raw image file under \
             target/bench/, {} (cache=writeback, QEMU's default: a flush from the guest is an \
             fdatasync of the file on the host). redis-server: appendonly yes, appendfsync \
             always, save \"\" (redis writes and fsyncs its AOF before replying to the clients of \
             each event-loop pass), the AOF on ext4 (mkfs.ext4 on the host, mounted with the \
             kernel's defaults: barriers on, so each fsync ends in a virtio-blk flush). Ours: the \
             kv app of bundle bench-kv with [app.disk], a write acknowledged only once flushed",
            DISK_BYTES >> 20,
            qemu::disk_args(std::path::Path::new("PATH")).join(" ")
        ),
        Durability::Memory => "Neither guest has a disk. redis-server: appendonly no, save \"\"; \
                               ours: the kv app of bundle bench-kv-memory (in memory only)"
            .to_owned(),
    };
    let mut notes: Vec<String> = linux
        .notes
        .iter()
        .map(|note| format!("{}: {note}", Side::Linux.label()))
        .collect();
    if let Ok(ours) = ours {
        notes.extend(
            ours.notes
                .iter()
                .map(|note| format!("{}: {note}", Side::Ours.label())),
        );
    }
    let notes = if notes.is_empty() {
        String::new()
    } else {
        format!(" Notes: {}.", notes.join("; "))
    };
    let smoke_note = if smoke {
        " SMOKE RUN: few requests, figures are rough."
    } else {
        ""
    };
    let mut rows = Vec::new();
    for &load in loads {
        for test in TESTS {
            let linux_figure = linux.figure(load, test);
            let ours_figure = ours.ok().and_then(|ours| ours.figure(load, test));
            let command = format!(
                "redis-benchmark -h 10.0.2.15 -p 6379 -c {CONNECTIONS} -P {} -n {} -t set,get \
                 --csv (redis-tools {}), the {test} test",
                load.pipeline,
                load.requests,
                redis_benchmark_version()
            );
            let what = |meaning: &str| {
                format!(
                    "{meaning}: {command}. Both sides in one run on identical QEMU flags (q35 BIOS \
                     profile, TCG, -m 256M, {network_text}); redis-server {} from Debian \
                     (redis-tools' binary, one process, io-threads 1) in the Linux guest's \
                     initramfs, at 10.0.2.15 like the kv app. {disk_text}.{}{notes}{smoke_note}",
                    durability.redis_config(),
                    ours_spread(ours_figure, linux_figure),
                )
            };
            let label = format!(
                "redis-benchmark {} {test}, {}",
                load.flags(),
                durability.label()
            );
            let versus = format!("kv app vs redis-server {}", durability.redis_config());
            type Figure = fn(&TestResult) -> f64;
            let figures: [(&str, &str, &str, Figure, bool); 2] = [
                (
                    "requests/s",
                    "requests per second as redis-benchmark reports it",
                    "req/s",
                    |result| result.per_second,
                    true,
                ),
                (
                    "p99 latency",
                    "redis-benchmark's 99th percentile latency (a request's time from its \
                     pipeline's send to its reply)",
                    LATENCY_MS,
                    |result| result.p99_ms,
                    false,
                ),
            ];
            for (measure, meaning, unit, figure, floor) in figures {
                let name = format!("{label}: {measure}, {versus}");
                let Some(linux_result) = linux_figure else {
                    eprintln!("xtask: kv: no figure for {name}");
                    continue;
                };
                let linux_stat = Stat::single(figure(linux_result));
                let row = match (&ours, ours_figure) {
                    (_, Some(ours_result)) => {
                        let row = Row::compared(
                            "kv",
                            &name,
                            &what(meaning),
                            unit,
                            Stat::single(figure(ours_result)),
                            linux_stat,
                        );
                        if floor {
                            row.with_target_of_peer(Bound::Above, 1.0)
                        } else {
                            row
                        }
                    }
                    (Err(why), None) => {
                        Row::peer_only("kv", &name, &what(meaning), unit, linux_stat, why)
                    }
                    (Ok(_), None) => Row::peer_only(
                        "kv",
                        &name,
                        &what(meaning),
                        unit,
                        linux_stat,
                        "redis-benchmark failed twice against the kv app",
                    ),
                };
                rows.push(row);
            }
        }
    }
    rows
}

/// Both sides' p50 and largest latency, for the rows' text.
fn ours_spread(ours: Option<&TestResult>, linux: Option<&TestResult>) -> String {
    let show = |side: Side, result: Option<&TestResult>| {
        result.map(|result| {
            format!(
                " {}: p50 {:.3} ms, max {:.3} ms.",
                side.label(),
                result.p50_ms,
                result.max_ms
            )
        })
    };
    [show(Side::Ours, ours), show(Side::Linux, linux)]
        .into_iter()
        .flatten()
        .collect()
}

/// The installed redis-benchmark's version (`redis-benchmark 7.0.15` gives `7.0.15`).
fn redis_benchmark_version() -> String {
    Command::new("redis-benchmark")
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| {
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .nth(1)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "version unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &str = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\
                       \"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                       \"SET\",\"689655.19\",\"0.531\",\"0.200\",\"0.543\",\"0.775\",\"0.935\",\"1.015\"\n\
                       \"GET\",\"416666.66\",\"0.869\",\"0.072\",\"0.447\",\"3.687\",\"5.583\",\"5.783\"\n";

    #[test]
    fn redis_benchmark_csv_parses_by_its_header() {
        let results = parse_csv(CSV);
        assert_eq!(
            results,
            [
                TestResult {
                    test: "SET".into(),
                    per_second: 689_655.19,
                    p50_ms: 0.543,
                    p99_ms: 0.935,
                    max_ms: 1.015,
                },
                TestResult {
                    test: "GET".into(),
                    per_second: 416_666.66,
                    p50_ms: 0.447,
                    p99_ms: 5.583,
                    max_ms: 5.783,
                }
            ]
        );
        // An older redis-benchmark's CSV has no percentiles: nothing is made up.
        assert!(parse_csv("\"test\",\"rps\"\n\"SET\",\"1000.00\"\n").is_empty());
        assert!(parse_csv("ERR something\n").is_empty());
    }

    fn results(rps: f64) -> SideResults {
        SideResults {
            loads: FULL
                .iter()
                .map(|&load| {
                    let tests = TESTS
                        .iter()
                        .map(|test| TestResult {
                            test: (*test).into(),
                            per_second: rps * f64::from(load.pipeline),
                            p50_ms: 1.0,
                            p99_ms: 2.0,
                            max_ms: 3.0,
                        })
                        .collect();
                    (load, Some(tests))
                })
                .collect(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn rows_set_the_floor_on_requests_per_second_only() {
        let rows = durability_rows(
            Durability::Memory,
            &FULL,
            Ok(&results(2000.0)),
            &results(1000.0),
            false,
            &Network::Tap,
        );
        // Two loads × two tests × (req/s, p99).
        assert_eq!(rows.len(), 8);
        let floors: Vec<&Row> = rows.iter().filter(|row| row.target.is_some()).collect();
        assert_eq!(floors.len(), 4);
        assert!(
            floors
                .iter()
                .all(|row| row.unit == "req/s"
                    && row.target.as_ref().is_some_and(|target| target.met))
        );
        assert!(rows.iter().any(|row| row.name
            == "redis-benchmark -c30 -P16 SET, in memory: requests/s, kv app vs redis-server \
                appendonly no"));
        assert!(rows[0].what.contains("-c 30 -P 16 -n 300000"));
    }

    #[test]
    fn a_side_not_run_gives_rows_with_redis_figures_and_the_reason() {
        let why = "the image did not serve: kv: cannot open its disk".to_owned();
        let rows = durability_rows(
            Durability::Durable,
            &FULL,
            Err(&why),
            &results(1000.0),
            false,
            &Network::Tap,
        );
        assert_eq!(rows.len(), 8);
        for row in &rows {
            assert!(row.ours.is_none() && row.peer.is_some() && row.target.is_none());
            assert_eq!(row.ours_not_run.as_deref(), Some(why.as_str()));
            assert!(row.name.contains("appendfsync always"), "{}", row.name);
            assert!(
                row.what
                    .contains("virtio-blk-pci,drive=disk0,disable-legacy=on")
            );
        }
    }

    #[test]
    fn the_durable_bundle_parses() {
        let manifest = durable_bundle().unwrap();
        assert_eq!(manifest.apps.len(), 1);
        assert_eq!(manifest.apps[0].name, "kv");
        assert_eq!(
            manifest.apps[0].disk.map(|disk| disk.bytes),
            Some(DISK_BYTES)
        );
    }
}
