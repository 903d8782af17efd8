//! `cargo xtask bench http`: our http app (bundle `bench-http`) against nginx in the Linux guest,
//! side by side in one run, both on the same QEMU flags (the q35 BIOS profile, one modern-only
//! virtio-net NIC, a monitor socket), both serving the same 612-byte page (the http app's
//! `static/index.html`, which the peer's initramfs carries as nginx's `/index.html`).
//!
//! The network: a tap device in a network namespace the benchmark makes for each boot
//! ([`qemu::TapNamespace`]), its host side 10.0.2.2/24 (the guests' gateway), QEMU started inside
//! the namespace, and wrk, ab and curl run there against 10.0.2.15:80 directly. QEMU's user
//! network (slirp) is not used when the tap can be had: its `hostfwd` accepts through a listen
//! queue of one, so a burst of connects (wrk's 30, ab's constant new ones) leaves some waiting
//! for the host's SYN retransmits (up to seconds), which measures slirp rather than either
//! server. Without root or CAP_NET_ADMIN (or with `LIBOS_BENCH_HTTP_NET=user`), it falls back to
//! the user network with a `hostfwd` from 127.0.0.1, and every row says so.
//!
//! Per side, one boot for the wall-clock loads and one under `-icount shift=0` for the guest's
//! busy instructions:
//! - `wrk -t2 -c30 -d10s --latency` (keep-alive): req/s, p50, p99;
//! - `ab -n 3000 -c 30 -s 10` (no keep-alive: a TCP connection per request): req/s, p50, p99;
//! - a 16 MiB GET with curl, 3 times: MB/s (ours `/bytes/16777216`, nginx a 16 MiB file);
//! - under icount, the same wrk load for 10 s bracketed by two readings of the guest's busy time:
//!   ours, kernel-lite's tables printed on an NMI (TSC less the ticks spent halted, and the http
//!   app's kcall and trap counters); Linux, the `cpu` line of `/proc/stat` its init prints every
//!   second (user + nice + system + irq + softirq jiffies).
//!
//! A load tool that fails (ab giving up on a timeout, wrk or curl erring) is run once more on the
//! same boot; what failed is said in the rows' notes, and a figure that two tries could not give
//! leaves its row out (the notes say which) rather than ending the whole run.

use super::report::{Bound, LATENCY_MS, Row, Stat};
use super::{Suite, peer, suite_bundle};
use crate::bundle::Protocol;
use crate::image::Firmware;
use crate::qemu::{self, PortForward, Profile, RunOptions, RunningQemu, TapNamespace, UserNetwork};
use anyhow::{Context, bail};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The line the http app logs once it listens.
const OUR_LISTENING_LINE: &str = "[http] INFO  http::server: http: listening";

/// kernel-lite's last line of the tables an NMI makes it print.
const END_OF_TABLES: &str = "kernel-lite: end of tables";

/// How long a side may take to boot and listen (TCG on a shared machine; icount is slower).
const BOOT_WAIT: Duration = Duration::from_secs(240);

/// The loads, full or smoke.
#[derive(Debug, Clone, Copy)]
struct Loads {
    /// wrk's duration, keep-alive (seconds).
    wrk_seconds: u32,
    /// ab's request count (a connection each).
    ab_requests: u32,
    /// 16 MiB GETs.
    large_gets: usize,
    /// wrk's duration under icount (seconds).
    icount_seconds: u32,
}

const FULL: Loads = Loads {
    wrk_seconds: 10,
    ab_requests: 3000,
    large_gets: 3,
    icount_seconds: 10,
};

const SMOKE: Loads = Loads {
    wrk_seconds: 1,
    ab_requests: 300,
    large_gets: 1,
    icount_seconds: 1,
};

const WRK_THREADS: u32 = 2;
const CONNECTIONS: u32 = 30;
const LARGE_BYTES: u64 = 16 << 20;

/// The environment variable that picks the network (of the kv benchmark too): `user` forces
/// QEMU's user network, `tap` (or unset) uses a tap when it can be had.
const NETWORK_VARIABLE: &str = "LIBOS_BENCH_HTTP_NET";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Ours,
    Linux,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Ours => "ours (http app)",
            Side::Linux => "Linux (nginx)",
        }
    }
}

/// The network both sides get in one run (the kv benchmark's too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Network {
    /// A tap in a network namespace per boot, the clients inside it.
    Tap,
    /// QEMU's user network with a `hostfwd`, because the tap could not be had (why).
    User { why: String },
}

impl Network {
    /// The tap when a namespace with one can be made here (tried once), else the user network.
    pub(super) fn choose() -> Network {
        match std::env::var(NETWORK_VARIABLE).as_deref() {
            Ok("user") => {
                return Network::User {
                    why: format!("{NETWORK_VARIABLE}=user"),
                };
            }
            Ok("tap") | Err(_) => {}
            Ok(other) => eprintln!("xtask: {NETWORK_VARIABLE}={other} is neither user nor tap"),
        }
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
        if !root {
            return Network::User {
                why: "not root (a tap in a network namespace needs CAP_NET_ADMIN)".into(),
            };
        }
        match TapNamespace::create(Ipv4Addr::from(peer::GATEWAY), 24) {
            Ok(_made_and_dropped) => Network::Tap,
            Err(error) => Network::User {
                why: format!("{error:#}"),
            },
        }
    }

    /// How the rows describe it.
    fn described(&self) -> String {
        match self {
            Network::Tap => "on a tap device in a network namespace the benchmark made for each \
                             boot (-netdev tap,script=no,downscript=no; its host side 10.0.2.2/24 \
                             is the guest's gateway), with wrk, ab and curl in that namespace \
                             against 10.0.2.15:80 directly (no NAT, no forward)"
                .to_owned(),
            Network::User { why } => format!(
                "on QEMU's user network with a hostfwd from 127.0.0.1 to 10.0.2.15:80 (user \
                 networking: tails include QEMU's listen-queue stalls, its forward accepting \
                 through a listen queue of one; the tap was not used: {why})"
            ),
        }
    }

    /// The URL the clients use, as the rows write it.
    fn client_url(&self) -> &'static str {
        match self {
            Network::Tap => "http://10.0.2.15/",
            Network::User { .. } => "http://127.0.0.1:PORT/",
        }
    }
}

/// One side booted and serving at `base` (`http://10.0.2.15` in the tap's namespace, or
/// `http://127.0.0.1:PORT` on the host through QEMU's forward).
struct Serving {
    side: Side,
    /// Before `namespace`: QEMU ends before its namespace goes.
    qemu: RunningQemu,
    /// The tap's namespace the clients run in, on the tap network.
    namespace: Option<TapNamespace>,
    base: String,
    monitor: PathBuf,
}

impl Serving {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `program`, to run where the guest is reached: in the tap's namespace, or on the host.
    fn client(&self, program: &str) -> Command {
        let command = Command::new(program);
        match &self.namespace {
            Some(namespace) => namespace.exec(&command),
            None => command,
        }
    }

    fn large_path(&self) -> String {
        match self.side {
            Side::Ours => format!("/bytes/{LARGE_BYTES}"),
            Side::Linux => peer::LARGE_FILE.to_owned(),
        }
    }

    fn serial(&self) -> String {
        self.qemu.serial()
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.monitor);
    }
}

/// A port free on 127.0.0.1 now (the kernel's pick for port 0).
pub(super) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

fn monitor_socket(side: Side, icount: bool) -> PathBuf {
    std::env::temp_dir().join(format!(
        "libos-bench-http-{}-{}{}.sock",
        std::process::id(),
        match side {
            Side::Ours => "ours",
            Side::Linux => "linux",
        },
        if icount { "-icount" } else { "" }
    ))
}

/// The network, its namespace (on the tap) and the clients' base URL for one boot.
fn boot_network(
    network: &Network,
) -> anyhow::Result<(Option<TapNamespace>, Option<UserNetwork>, String)> {
    match network {
        Network::Tap => {
            let namespace = TapNamespace::create(Ipv4Addr::from(peer::GATEWAY), 24)
                .context("making the tap's network namespace")?;
            let base = format!("http://{}", Ipv4Addr::from(peer::GUEST_ADDRESS));
            Ok((Some(namespace), None, base))
        }
        Network::User { .. } => {
            let port = free_port()?;
            let user = UserNetwork {
                forwards: vec![PortForward {
                    app: "http".into(),
                    protocol: Protocol::Tcp,
                    host_port: port,
                    guest_address: Ipv4Addr::from(peer::GUEST_ADDRESS),
                    guest_port: 80,
                }],
                pcap: None,
            };
            Ok((None, Some(user), format!("http://127.0.0.1:{port}")))
        }
    }
}

fn start(
    side: Side,
    suite: &mut Suite,
    icount: bool,
    network: &Network,
) -> anyhow::Result<Serving> {
    let profile = Profile::for_firmware(Firmware::Bios)?;
    let monitor = monitor_socket(side, icount);
    let _ = std::fs::remove_file(&monitor);
    let (namespace, user, base) = boot_network(network)?;
    // Identical QEMU options for both sides: the network, icount or not, a monitor.
    let options = RunOptions {
        icount,
        monitor_socket: Some(monitor.clone()),
        network: user,
        tap: namespace.as_ref().map(TapNamespace::network),
        ..RunOptions::default()
    };
    let (command, ready) = match side {
        Side::Ours => {
            let manifest = suite_bundle("bench-http")?;
            let bundle = UserNetwork::for_bundle(&manifest)
                .context("the bench-http bundle has no networked app")?;
            if bundle.forwards.len() != 1
                || bundle.forwards[0].guest_address != Ipv4Addr::from(peer::GUEST_ADDRESS)
                || bundle.forwards[0].guest_port != 80
                || bundle.host_port("http", Protocol::Tcp, 80).is_none()
            {
                bail!(
                    "the bench-http bundle must forward one TCP port to the http app's port 80 \
                     at 10.0.2.15"
                );
            }
            let (_, disk) = crate::boot_image(&manifest, Firmware::Bios)?;
            (
                qemu::command(&profile, &disk, &options)?,
                OUR_LISTENING_LINE,
            )
        }
        Side::Linux => {
            let peer = suite.peer()?;
            let append = "console=ttyS0 quiet panic=-1 libos.bench=nginx-net";
            let command = qemu::linux_command(
                &profile,
                &peer.kernel,
                &peer.initramfs_nginx,
                append,
                &options,
            )?;
            (command, peer::NGINX_LISTENING_LINE)
        }
    };
    let command = match &namespace {
        Some(namespace) => namespace.exec(&command),
        None => command,
    };
    suite.step(format!(
        "http: booting {}{}",
        side.label(),
        if icount { " under -icount shift=0" } else { "" }
    ));
    let mut qemu = RunningQemu::spawn(command)?;
    if qemu.wait_for_serial(ready, BOOT_WAIT).is_none() {
        let output = qemu.stop();
        bail!(
            "{} did not get to '{ready}' (QEMU status {:?}); its output was:\n{}",
            side.label(),
            output.status,
            output.serial
        );
    }
    let serving = Serving {
        side,
        qemu,
        namespace,
        base,
        monitor,
    };
    check_page(&serving)?;
    Ok(serving)
}

/// GETs `/` once and checks that the body is the 612-byte page both sides serve.
fn check_page(serving: &Serving) -> anyhow::Result<()> {
    let output = serving
        .client("curl")
        .args(["--silent", "--show-error", "--max-time", "120"])
        .arg(serving.url("/"))
        .output()
        .context("running curl")?;
    let page = peer::served_page();
    if !output.status.success() || output.stdout != page {
        bail!(
            "{} did not serve the {}-byte page at /: curl {} gave {} bytes ({}); serial:\n{}",
            serving.side.label(),
            page.len(),
            output.status,
            output.stdout.len(),
            String::from_utf8_lossy(&output.stderr).trim(),
            serving.serial()
        );
    }
    Ok(())
}
/// Makes sure `program` (from Debian package `package`) is there: installs it with apt-get
/// when running as root, else fails naming the line to run.
pub(super) fn ensure_tool(program: &str, package: &str) -> anyhow::Result<()> {
    let present = || Command::new(program).arg("-V").output().is_ok();
    if present() {
        return Ok(());
    }
    let line = format!("apt-get install -y {package}");
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0");
    if !root {
        bail!("{program} is missing: run `sudo apt-get update && sudo {line}`");
    }
    eprintln!("xtask: {program} missing; installing with `{line}`");
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    let status = Command::new("apt-get")
        .args(["install", "-y", "-qq", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .context("running apt-get")?;
    if !status.success() || !present() {
        bail!("`{line}` failed; {program} is needed for the benchmarks");
    }
    Ok(())
}

pub(super) fn run_tool(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    if !output.status.success() {
        // ab's last words on a timeout ("apr_pollset_poll: The timeout specified has expired
        // (70007)", "Total of N requests completed") are on stderr.
        bail!(
            "{what} failed ({}): {}",
            output.status,
            last_lines(&String::from_utf8_lossy(&output.stderr), 3)
        );
    }
    Ok(text)
}

/// The last `count` non-empty lines of `text`, joined with " / ".
fn last_lines(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..].join(" / ")
}

/// Runs `measure` once, and once more if it fails: its result if either try gave one, and a
/// note on every failure (empty when the first try did).
pub(super) fn twice<T>(
    what: &str,
    mut measure: impl FnMut() -> anyhow::Result<T>,
) -> (Option<T>, Vec<String>) {
    let mut notes = Vec::new();
    for attempt in ["first", "second"] {
        match measure() {
            Ok(value) => return (Some(value), notes),
            Err(error) => {
                let note = format!("{what}: the {attempt} try failed: {error:#}");
                eprintln!("xtask: {note}");
                notes.push(note);
            }
        }
    }
    (None, notes)
}

/// What one load generator reported.
#[derive(Debug, Clone, PartialEq)]
struct LoadResult {
    requests: u64,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Errors the tool counted (socket errors, non-2xx answers, failed requests), as it words
    /// them; empty when none.
    errors: String,
    /// The tool's own summary of the spread: wrk's latency line (avg, stdev, max), ab's time
    /// taken and longest request.
    spread: String,
}

/// A wrk duration (`612.00us`, `1.23ms`, `2.00s`, `1.5m`) in milliseconds.
fn wrk_duration_ms(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    Some(
        number
            * match unit {
                "us" => 0.001,
                "ms" => 1.0,
                "s" => 1000.0,
                "m" => 60_000.0,
                "h" => 3_600_000.0,
                _ => return None,
            },
    )
}

/// Reads `wrk --latency` output.
fn parse_wrk(text: &str) -> Option<LoadResult> {
    let percentile = |label: &str| {
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(label)?;
            wrk_duration_ms(rest)
        })
    };
    let requests = text
        .lines()
        .find_map(|line| line.trim().split_once(" requests in ")?.0.parse().ok())?;
    let per_second = text.lines().find_map(|line| {
        line.trim()
            .strip_prefix("Requests/sec:")?
            .trim()
            .parse()
            .ok()
    })?;
    let errors: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| {
            line.starts_with("Socket errors:") || line.starts_with("Non-2xx or 3xx responses:")
        })
        .collect();
    let spread = text
        .lines()
        .find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            (words.first() == Some(&"Latency") && words.len() >= 4).then(|| {
                format!(
                    "latency avg {} stdev {} max {}",
                    words[1], words[2], words[3]
                )
            })
        })
        .unwrap_or_default();
    Some(LoadResult {
        requests,
        per_second,
        p50_ms: percentile("50%")?,
        p99_ms: percentile("99%")?,
        errors: errors.join("; "),
        spread,
    })
}

/// Reads `ab` output (its percentiles are whole milliseconds).
fn parse_ab(text: &str) -> Option<LoadResult> {
    let field = |label: &str| {
        text.lines().find_map(|line| {
            let rest = line.trim().strip_prefix(label)?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
    };
    let failed = field("Failed requests:")? as u64;
    let non_2xx = field("Non-2xx responses:").unwrap_or(0.0) as u64;
    let mut errors = Vec::new();
    if failed > 0 {
        errors.push(format!("{failed} failed requests"));
    }
    if non_2xx > 0 {
        errors.push(format!("{non_2xx} non-2xx responses"));
    }
    let spread = match (field("Time taken for tests:"), field("100%")) {
        (Some(taken), Some(longest)) => {
            format!("all requests in {taken:.1} s, the longest {longest:.0} ms")
        }
        _ => String::new(),
    };
    Some(LoadResult {
        requests: field("Complete requests:")? as u64,
        per_second: field("Requests per second:")?,
        p50_ms: field("50%")?,
        p99_ms: field("99%")?,
        errors: errors.join(", "),
        spread,
    })
}

fn wrk(serving: &Serving, seconds: u32) -> anyhow::Result<LoadResult> {
    let text = run_tool(
        serving
            .client("wrk")
            .arg(format!("-t{WRK_THREADS}"))
            .arg(format!("-c{CONNECTIONS}"))
            .arg(format!("-d{seconds}s"))
            .arg("--latency")
            .arg(serving.url("/")),
        "wrk",
    )?;
    parse_wrk(&text).with_context(|| format!("wrk's output did not parse:\n{text}"))
}

/// Seconds ab waits on one request before counting it failed.
const AB_TIMEOUT_S: u32 = 10;

fn ab(serving: &Serving, requests: u32) -> anyhow::Result<LoadResult> {
    // ab's own table has whole milliseconds; its CSV (-e) has the percentiles to a microsecond.
    let csv = std::env::temp_dir().join(format!("libos-bench-http-ab-{}.csv", std::process::id()));
    let text = run_tool(
        serving
            .client("ab")
            .args(["-q", "-r", "-s"])
            .arg(AB_TIMEOUT_S.to_string())
            .arg("-e")
            .arg(&csv)
            .arg("-n")
            .arg(requests.to_string())
            .arg("-c")
            .arg(CONNECTIONS.to_string())
            .arg(serving.url("/")),
        "ab",
    )?;
    let percentiles = std::fs::read_to_string(&csv).unwrap_or_default();
    let _ = std::fs::remove_file(&csv);
    let mut result =
        parse_ab(&text).with_context(|| format!("ab's output did not parse:\n{text}"))?;
    if let (Some(p50), Some(p99)) = (
        ab_csv_percentile(&percentiles, 50),
        ab_csv_percentile(&percentiles, 99),
    ) {
        (result.p50_ms, result.p99_ms) = (p50, p99);
    }
    Ok(result)
}

/// The `percent`th percentile (ms) from ab's `-e` CSV (`Percentage served,Time in ms` lines).
fn ab_csv_percentile(csv: &str, percent: u32) -> Option<f64> {
    csv.lines().find_map(|line| {
        let (served, ms) = line.split_once(',')?;
        (served.trim().parse::<u32>().ok()? == percent)
            .then(|| ms.trim().parse().ok())
            .flatten()
    })
}

/// One 16 MiB GET with curl: MB/s (10^6 bytes a second) over curl's whole transfer.
fn large_get(serving: &Serving) -> anyhow::Result<f64> {
    let text = run_tool(
        serving
            .client("curl")
            .args(["--silent", "--show-error", "--max-time", "300"])
            .args(["--output", "/dev/null"])
            .args(["--write-out", "%{http_code} %{size_download} %{time_total}"])
            .arg(serving.url(&serving.large_path())),
        "curl (16 MiB GET)",
    )?;
    let words: Vec<&str> = text.split_whitespace().collect();
    let (Some(&"200"), Some(Ok(size)), Some(Ok(seconds))) = (
        words.first(),
        words.get(1).map(|w| w.parse::<f64>()),
        words.get(2).map(|w| w.parse::<f64>()),
    ) else {
        bail!("curl's 16 MiB GET gave '{text}'");
    };
    if size as u64 != LARGE_BYTES {
        bail!(
            "the 16 MiB GET from {} gave {size} bytes",
            serving.side.label()
        );
    }
    Ok(size / seconds / 1e6)
}

/// Everything the wall-clock boot of one side measured; a load that failed twice is `None`
/// (or missing from `large_mb_s`), and `notes` says what failed.
struct WallResults {
    wrk: Option<LoadResult>,
    ab: Option<LoadResult>,
    large_mb_s: Vec<f64>,
    /// Ours: the http app's row of kernel-lite's network table after the loads (an NMI).
    network_row: Option<String>,
    notes: Vec<String>,
}

fn wall_run(
    side: Side,
    suite: &mut Suite,
    loads: Loads,
    network: &Network,
) -> anyhow::Result<WallResults> {
    let serving = start(side, suite, false, network)?;
    let mut notes = Vec::new();
    suite.step(format!(
        "http: {}: wrk keep-alive {} s",
        side.label(),
        loads.wrk_seconds
    ));
    let (wrk, failed) = twice("wrk", || wrk(&serving, loads.wrk_seconds));
    notes.extend(failed);
    suite.step(format!(
        "http: {}: ab, {} connections",
        side.label(),
        loads.ab_requests
    ));
    let (ab, failed) = twice("ab", || ab(&serving, loads.ab_requests));
    notes.extend(failed);
    suite.step(format!("http: {}: 16 MiB GETs", side.label()));
    let mut large_mb_s = Vec::new();
    for _ in 0..loads.large_gets {
        let (mb_s, failed) = twice("curl (16 MiB GET)", || large_get(&serving));
        large_mb_s.extend(mb_s);
        notes.extend(failed);
    }
    if let Err(error) = check_page(&serving) {
        notes.push(format!("after the loads, / was not served: {error:#}"));
    }
    let network_row = match side {
        Side::Ours => match nmi_tables(&serving) {
            Ok(_) => network_row(&serving.serial(), "http"),
            Err(error) => {
                notes.push(format!("no network table after the loads: {error:#}"));
                None
            }
        },
        Side::Linux => None,
    };
    Ok(WallResults {
        wrk,
        ab,
        large_mb_s,
        network_row,
        notes,
    })
}

/// kernel-lite's figures from one set of NMI tables.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tables {
    tsc: u64,
    idle: u64,
    ticks_per_ms: u64,
    /// The http app's kcalls, all numbers together.
    kcalls: u64,
    /// The http app's page faults, interrupts and exceptions.
    traps: u64,
}

/// The last set of tables in `serial` (from its last `kernel-lite: diagnostics` line up to
/// [`END_OF_TABLES`]): the `cpu` line and `app`'s accounting row.
fn parse_tables(serial: &str, app: &str) -> Option<Tables> {
    let start = serial.rfind("kernel-lite: diagnostics")?;
    let block = &serial[start..];
    let block = &block[..block.find(END_OF_TABLES)?];
    let mut tables = Tables {
        tsc: 0,
        idle: 0,
        ticks_per_ms: 0,
        kcalls: 0,
        traps: 0,
    };
    let mut row = false;
    let mut cpu = false;
    for line in block.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let Some(rest) = line.trim().strip_prefix("kernel-lite: cpu tsc ") {
            // "T idle I ticks per ms K"
            let numbers: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|word| word.parse().ok())
                .collect();
            let [tsc, idle, per_ms] = numbers[..] else {
                return None;
            };
            (tables.tsc, tables.idle, tables.ticks_per_ms) = (tsc, idle, per_ms);
            cpu = true;
        } else if words.first() == Some(&app) && words.contains(&"|") && !row {
            let bar = words.iter().position(|word| *word == "|")?;
            let count = |pair: &&str| -> Option<(String, u64)> {
                let (name, count) = pair.split_once('=')?;
                Some((name.to_owned(), count.parse().ok()?))
            };
            for pair in &words[..bar] {
                if let Some((_, n)) = count(pair) {
                    tables.kcalls += n;
                }
            }
            for pair in &words[bar + 1..] {
                if let Some((name, n)) = count(pair)
                    && matches!(name.as_str(), "page_fault" | "interrupt" | "exception")
                {
                    tables.traps += n;
                }
            }
            row = true;
        }
    }
    (row && cpu).then_some(tables)
}

/// `app`'s row of the last network table kernel-lite printed, as
/// `frames in F (K KiB), out …; dropped: ring full D, spoofed S, bad B`.
fn network_row(serial: &str, app: &str) -> Option<String> {
    let start = serial.rfind("\nnet app ")?;
    serial[start + 1..].lines().skip(1).find_map(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        (words.len() == 8 && words[0] == app).then(|| {
            format!(
                "frames in {} ({} KiB), out {} ({} KiB); dropped: ring full {}, spoofed {}, bad {}",
                words[1], words[2], words[3], words[4], words[5], words[6], words[7]
            )
        })
    })
}

/// Sends `nmi` to QEMU's monitor and waits for the tables it makes kernel-lite print.
fn nmi_tables(serving: &Serving) -> anyhow::Result<Tables> {
    use std::io::Write;
    let before = serving.serial().matches(END_OF_TABLES).count();
    let mut monitor = std::os::unix::net::UnixStream::connect(&serving.monitor)
        .with_context(|| format!("QEMU's monitor at {}", serving.monitor.display()))?;
    writeln!(monitor, "nmi")?;
    monitor.flush()?;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let serial = serving.serial();
        if serial.matches(END_OF_TABLES).count() > before {
            return parse_tables(&serial, "http")
                .with_context(|| format!("kernel-lite's tables did not parse:\n{serial}"));
        }
        if Instant::now() > deadline {
            bail!("no tables within 120 s of an NMI:\n{serial}");
        }
    }
}

/// Waits for the Linux guest's next `/proc/stat` line after those already printed.
fn next_jiffies(serving: &Serving) -> anyhow::Result<peer::CpuJiffies> {
    let seen = peer::cpu_jiffies(&serving.serial()).len();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let lines = peer::cpu_jiffies(&serving.serial());
        if lines.len() > seen {
            return Ok(*lines.last().expect("more than none"));
        }
        if Instant::now() > deadline {
            bail!(
                "the Linux guest printed no /proc/stat line in 60 s:\n{}",
                serving.serial()
            );
        }
    }
}

/// What the icount boot of one side measured.
#[derive(Debug, Clone, Copy)]
struct Counted {
    requests: u64,
    /// Guest instructions spent busy (not halted) over the bracket.
    busy_instructions: f64,
    /// Guest virtual nanoseconds over the bracket, busy or not.
    elapsed_ns: f64,
    /// Ours only: the http app's kcalls and traps over the bracket.
    kcalls: Option<u64>,
    traps: Option<u64>,
}

/// USER_HZ: the unit of `/proc/stat`'s jiffies is 1/100 s.
const USER_HZ: f64 = 100.0;

/// The icount boot of one side: what it counted (`None` when the load or a reading failed
/// twice) and notes on what failed.
fn icount_run(
    side: Side,
    suite: &mut Suite,
    loads: Loads,
    network: &Network,
) -> anyhow::Result<(Option<Counted>, Vec<String>)> {
    let serving = start(side, suite, true, network)?;
    suite.step(format!(
        "http: {}: wrk keep-alive {} s under icount",
        side.label(),
        loads.icount_seconds
    ));
    Ok(twice("wrk under icount", || match side {
        Side::Ours => {
            let before = nmi_tables(&serving)?;
            let load = wrk(&serving, loads.icount_seconds)?;
            let after = nmi_tables(&serving)?;
            let ns_per_tick = 1e6 / after.ticks_per_ms as f64;
            let busy = (after.tsc - before.tsc).saturating_sub(after.idle - before.idle);
            Ok(Counted {
                requests: load.requests,
                busy_instructions: busy as f64 * ns_per_tick,
                elapsed_ns: (after.tsc - before.tsc) as f64 * ns_per_tick,
                kcalls: Some(after.kcalls - before.kcalls),
                traps: Some(after.traps - before.traps),
            })
        }
        Side::Linux => {
            let before = next_jiffies(&serving)?;
            let load = wrk(&serving, loads.icount_seconds)?;
            let after = next_jiffies(&serving)?;
            let ns_per_jiffy = 1e9 / USER_HZ;
            let busy = after.busy - before.busy;
            let all = busy + (after.idle - before.idle);
            Ok(Counted {
                requests: load.requests,
                busy_instructions: busy as f64 * ns_per_jiffy,
                elapsed_ns: all as f64 * ns_per_jiffy,
                kcalls: None,
                traps: None,
            })
        }
    }))
}

fn errors_note(side: Side, load: &Option<LoadResult>) -> String {
    let Some(load) = load else {
        return format!(" {}: no figures (the tool failed twice).", side.label());
    };
    let mut note = format!(" {}: {}", side.label(), load.spread);
    if !load.errors.is_empty() {
        note.push_str(&format!("; errors: {}", load.errors));
    }
    note.push('.');
    note
}

/// Both sides' figure, or `None` (and a note naming `row`) when either is missing.
fn both(
    row: &str,
    ours: Option<f64>,
    linux: Option<f64>,
    left_out: &mut Vec<String>,
) -> Option<(Stat, Stat)> {
    match (ours, linux) {
        (Some(ours), Some(linux)) => Some((Stat::single(ours), Stat::single(linux))),
        _ => {
            left_out.push(row.to_owned());
            None
        }
    }
}

/// The http benchmark's rows.
pub(super) fn http(suite: &mut Suite) -> anyhow::Result<()> {
    ensure_tool("wrk", "wrk")?;
    ensure_tool("ab", "apache2-utils")?;
    ensure_tool("curl", "curl")?;
    let loads = if suite.settings.smoke { SMOKE } else { FULL };
    let network = Network::choose();
    if let Network::User { why } = &network {
        eprintln!(
            "xtask: http: on QEMU's user network (its listen-queue stalls show in the tails): \
             the tap was not used: {why}"
        );
    }
    let ours = wall_run(Side::Ours, suite, loads, &network)?;
    let linux = wall_run(Side::Linux, suite, loads, &network)?;
    let (ours_counted, ours_count_notes) = icount_run(Side::Ours, suite, loads, &network)?;
    let (linux_counted, linux_count_notes) = icount_run(Side::Linux, suite, loads, &network)?;

    // What failed, by side, for every row's notes.
    let mut failures: Vec<String> = Vec::new();
    for (side, notes) in [
        (Side::Ours, &ours.notes),
        (Side::Linux, &linux.notes),
        (Side::Ours, &ours_count_notes),
        (Side::Linux, &linux_count_notes),
    ] {
        failures.extend(notes.iter().map(|note| format!("{}: {note}", side.label())));
    }
    let mut left_out: Vec<String> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();

    let same = format!(
        "Both sides in one run on identical QEMU flags (q35 BIOS profile, TCG, one virtio-net-pci \
         NIC with disable-legacy=on {}, a monitor socket), serving the same 612-byte page (the \
         http app's static/index.html; nginx 1 worker, access log off, sendfile off, from the \
         Linux guest's initramfs)",
        network.described()
    );
    let smoke_note = if suite.settings.smoke {
        " SMOKE RUN: a short load, figures are rough."
    } else {
        ""
    };
    let url = network.client_url();
    let requests = |load: &Option<LoadResult>| {
        load.as_ref()
            .map_or("none".to_owned(), |load| load.requests.to_string())
    };
    let wrk_what = format!(
        "wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{}s --latency {url} (HTTP/1.1 keep-alive; ours {} \
         requests, Linux {}). {same}.{}{}{smoke_note}",
        loads.wrk_seconds,
        requests(&ours.wrk),
        requests(&linux.wrk),
        errors_note(Side::Ours, &ours.wrk),
        errors_note(Side::Linux, &linux.wrk),
    );
    let wrk_what = match &ours.network_row {
        Some(row) => format!(
            "{wrk_what} kernel-lite's network table for the http app after all of this boot's \
             loads (wrk, ab, the 16 MiB GETs): {row}."
        ),
        None => wrk_what,
    };
    let wrk_label = format!("wrk -c{CONNECTIONS} keep-alive");
    let wrk_figure =
        |load: &Option<LoadResult>, figure: fn(&LoadResult) -> f64| load.as_ref().map(figure);
    type Figure = fn(&LoadResult) -> f64;
    let figures = [
        (
            "requests/s",
            "requests per second as wrk reports it",
            "req/s",
            (|load| load.per_second) as Figure,
            Some((Bound::AtLeast, 2.0)),
        ),
        (
            "p50 latency",
            "wrk's 50th percentile latency",
            LATENCY_MS,
            |load| load.p50_ms,
            None,
        ),
        (
            "p99 latency",
            "wrk's 99th percentile latency",
            LATENCY_MS,
            |load| load.p99_ms,
            Some((Bound::Below, 1.0)),
        ),
    ];
    for (what, meaning, unit, figure, target) in figures {
        let name = format!("{wrk_label}: {what}, http app vs nginx");
        if let Some((ours_stat, linux_stat)) = both(
            &name,
            wrk_figure(&ours.wrk, figure),
            wrk_figure(&linux.wrk, figure),
            &mut left_out,
        ) {
            let row = Row::compared(
                "http",
                &name,
                &format!("{meaning}: {wrk_what}"),
                unit,
                ours_stat,
                linux_stat,
            );
            rows.push(match target {
                Some((bound, factor)) => row.with_target_of_peer(bound, factor),
                None => row,
            });
        }
    }
    let ab_what = format!(
        "ab -n {} -c {CONNECTIONS} -r -s {AB_TIMEOUT_S} -e FILE {url} (apache2-utils; HTTP/1.0 \
         without keep-alive: a TCP connection per request; percentiles from ab's CSV; a request \
         unanswered after {AB_TIMEOUT_S} s counts as failed, and ab's req/s is all requests over \
         its whole time, so such a request holds it down). {same}.{}{}{smoke_note}",
        loads.ab_requests,
        errors_note(Side::Ours, &ours.ab),
        errors_note(Side::Linux, &linux.ab),
    );
    let ab_label = format!("ab -c{CONNECTIONS}, a connection per request");
    for (what, unit, figure) in [
        ("requests/s", "req/s", (|load| load.per_second) as Figure),
        ("p50 latency", LATENCY_MS, |load| load.p50_ms),
        ("p99 latency", LATENCY_MS, |load| load.p99_ms),
    ] {
        let name = format!("{ab_label}: {what}, http app vs nginx");
        if let Some((ours_stat, linux_stat)) = both(
            &name,
            wrk_figure(&ours.ab, figure),
            wrk_figure(&linux.ab, figure),
            &mut left_out,
        ) {
            rows.push(Row::compared(
                "http",
                &name,
                &format!("{what} as ab reports it: {ab_what}"),
                unit,
                ours_stat,
                linux_stat,
            ));
        }
    }
    let large_name = "16 MiB GET: MB/s, http app /bytes/16777216 vs nginx static file";
    if ours.large_mb_s.is_empty() || linux.large_mb_s.is_empty() {
        left_out.push(large_name.to_owned());
    } else {
        rows.push(Row::compared(
            "http",
            large_name,
            &format!(
                "10^6 bytes per second over curl's whole transfer (connect to last byte, body to \
                 /dev/null), median of the GETs that succeeded (ours {}, Linux {}, of {} each) on \
                 one boot after the wrk and ab loads. Ours: /bytes/16777216 (a generated \
                 pattern); Linux: a 16 MiB file of zeros that the guest's init wrote into nginx's \
                 root (in RAM). {same}.{smoke_note}",
                ours.large_mb_s.len(),
                linux.large_mb_s.len(),
                loads.large_gets
            ),
            "MB/s",
            Stat::from_samples(&ours.large_mb_s),
            Stat::from_samples(&linux.large_mb_s),
        ));
    }
    let per_request = |counted: &Counted, value: f64| value / counted.requests.max(1) as f64;
    let instructions_name = "guest instructions per request (icount, busy time), http app vs nginx";
    if let (Some(ours_counted), Some(linux_counted)) = (&ours_counted, &linux_counted) {
        let count_what = format!(
            "guest instructions spent busy (not halted) per request, over a second boot of each \
             side under -icount shift=0 (one instruction is 1 ns of virtual time) while wrk \
             -t{WRK_THREADS} -c{CONNECTIONS} -d{}s keep-alive ran (ours {} requests over {:.2} s \
             of guest time, Linux {} over {:.2} s), divided by the requests wrk completed. Ours: \
             the TSC less the ticks kernel-lite spent halted, between two NMIs' tables \
             (kernel-lite: cpu tsc T idle I ticks per ms K; busy ns = (ΔT − ΔI) × 10^6 / K), so \
             kernel-lite, libos and the app, interrupts included. Linux: user + nice + system + \
             irq + softirq jiffies of /proc/stat between the guest's once-a-second lines before \
             and after the load, × 10 ms (USER_HZ = 100; the kernel samples them at its 250 Hz \
             tick), so nginx, the kernel and the guest's own once-a-second shell loop (builtins \
             only). {same}.{smoke_note}",
            loads.icount_seconds,
            ours_counted.requests,
            ours_counted.elapsed_ns / 1e9,
            linux_counted.requests,
            linux_counted.elapsed_ns / 1e9,
        );
        rows.push(
            Row::compared(
                "http",
                instructions_name,
                &count_what,
                "instructions/request",
                Stat::single(per_request(ours_counted, ours_counted.busy_instructions)),
                Stat::single(per_request(linux_counted, linux_counted.busy_instructions)),
            )
            .with_target_of_peer(Bound::AtMost, 0.5),
        );
    } else {
        left_out.push(instructions_name.to_owned());
    }
    if let Some(ours_counted) = &ours_counted {
        let bracket = format!(
            "over the icount boot's wrk load ({} requests), between the two NMIs' accounting \
             tables",
            ours_counted.requests
        );
        rows.push(Row::ours(
            "http",
            "kcalls per request (http app)",
            &format!(
                "the http app's kcalls of every number together (its accounting row's kcall \
                 counts), {bracket}, over wrk's completed requests. Ours only.{smoke_note}"
            ),
            "per request",
            Stat::single(per_request(
                ours_counted,
                ours_counted.kcalls.unwrap_or(0) as f64,
            )),
        ));
        rows.push(Row::ours(
            "http",
            "traps per request (http app)",
            &format!(
                "the http app's entries into ring 0 other than kcalls: page_fault + interrupt + \
                 exception of its accounting row, {bracket}, over wrk's completed requests. Ours \
                 only.{smoke_note}"
            ),
            "per request",
            Stat::single(per_request(
                ours_counted,
                ours_counted.traps.unwrap_or(0) as f64,
            )),
        ));
    } else {
        left_out.push("kcalls and traps per request (http app)".to_owned());
    }

    if rows.is_empty() {
        bail!(
            "the http benchmark measured nothing: {}",
            failures.join("; ")
        );
    }
    if !failures.is_empty() || !left_out.is_empty() {
        let mut said = String::new();
        if !failures.is_empty() {
            said.push_str(&format!(" Load failures: {}.", failures.join("; ")));
        }
        if !left_out.is_empty() {
            said.push_str(&format!(
                " Rows left out for want of a figure: {}.",
                left_out.join("; ")
            ));
            eprintln!("xtask: http: rows left out: {}", left_out.join("; "));
        }
        for row in &mut rows {
            row.what.push_str(&said);
        }
    }
    suite.rows.extend(rows);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const WRK: &str = "Running 10s test @ http://127.0.0.1:8080/
  2 threads and 30 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.10ms    2.00ms  40.00ms   90.00%
    Req/Sec     3.00k   200.00     3.50k    70.00%
  Latency Distribution
     50%  612.00us
     75%    6.00ms
     90%    8.00ms
     99%    1.20s
  60000 requests in 10.00s, 45.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:   5999.50
Transfer/sec:      4.50MB
";

    #[test]
    fn wrk_output_parses() {
        assert_eq!(
            parse_wrk(WRK),
            Some(LoadResult {
                requests: 60000,
                per_second: 5999.5,
                p50_ms: 0.612,
                p99_ms: 1200.0,
                errors: "Socket errors: connect 0, read 2, write 0, timeout 1".into(),
                spread: "latency avg 5.10ms stdev 2.00ms max 40.00ms".into(),
            })
        );
        assert_eq!(parse_wrk("Running 10s test"), None);
        assert_eq!(wrk_duration_ms("2.50m"), Some(150_000.0));
        assert_eq!(wrk_duration_ms("3parsecs"), None);
    }

    #[test]
    fn ab_output_parses() {
        let text = "Concurrency Level:      30
Time taken for tests:   2.000 seconds
Complete requests:      3000
Failed requests:        2
   (Connect: 0, Receive: 0, Length: 2, Exceptions: 0)
Requests per second:    1500.25 [#/sec] (mean)
Percentage of the requests served within a certain time (ms)
  50%     19
  66%     20
  99%     45
 100%     80 (longest request)
";
        assert_eq!(
            parse_ab(text),
            Some(LoadResult {
                requests: 3000,
                per_second: 1500.25,
                p50_ms: 19.0,
                p99_ms: 45.0,
                errors: "2 failed requests".into(),
                spread: "all requests in 2.0 s, the longest 80 ms".into(),
            })
        );
    }

    #[test]
    fn a_failing_tool_is_tried_twice_and_noted() {
        let mut calls = 0;
        let (value, notes) = twice("ab", || {
            calls += 1;
            if calls == 1 {
                bail!("ab failed (exit status: 119): Total of 2994 requests completed")
            }
            Ok(7)
        });
        assert_eq!((value, calls), (Some(7), 2));
        assert_eq!(
            notes,
            [
                "ab: the first try failed: ab failed (exit status: 119): Total of 2994 requests \
              completed"
            ]
        );
        let (value, notes) = twice("wrk", || -> anyhow::Result<u32> { bail!("no") });
        assert_eq!((value, notes.len()), (None, 2));
        let (value, notes) = twice("curl", || Ok(1));
        assert_eq!((value, notes.len()), (Some(1), 0));
        assert_eq!(
            last_lines("a\n\nb\n c \nd\n", 3),
            "b / c / d",
            "the tool's last words"
        );
    }

    #[test]
    fn the_user_network_says_why_and_what_it_costs() {
        let user = Network::User {
            why: "not root".into(),
        };
        assert!(
            user.described()
                .contains("user networking: tails include QEMU's listen-queue stalls")
        );
        assert!(user.described().contains("not root"));
        assert_eq!(user.client_url(), "http://127.0.0.1:PORT/");
        assert!(Network::Tap.described().contains("tap"));
        assert_eq!(Network::Tap.client_url(), "http://10.0.2.15/");
        let mut left_out = Vec::new();
        assert!(both("a", Some(1.0), Some(2.0), &mut left_out).is_some());
        assert!(both("b", None, Some(2.0), &mut left_out).is_none());
        assert_eq!(left_out, ["b"]);
    }

    #[test]
    fn ab_csv_percentiles_parse() {
        let csv = "Percentage served,Time in ms\n0,0.100\n50,0.823\n99,12.500\n100,40.000\n";
        assert_eq!(ab_csv_percentile(csv, 50), Some(0.823));
        assert_eq!(ab_csv_percentile(csv, 99), Some(12.5));
        assert_eq!(ab_csv_percentile(csv, 75), None);
    }

    #[test]
    fn the_last_tables_parse() {
        let serial = "kernel-lite: diagnostics (apps still running)\n\
            app              end       mem KiB  peak KiB heap peak quota KiB restarts  cpu %  kcalls | traps\n\
            http             running      100      200       50     49152        0    1.0  wait=5 yield=2 | interrupt=7\n\
            kernel-lite: cpu tsc 1000 idle 400 ticks per ms 1000000\n\
            kernel-lite: end of tables\n\
            [http] INFO  noise\n\
            kernel-lite: diagnostics (apps still running)\n\
            app              end       mem KiB  peak KiB heap peak quota KiB restarts  cpu %  kcalls | traps\n\
            http             running      100      200       50     49152        0    1.0  wait=50 yield=2 map_device=1 | page_fault=3 interrupt=70 unknown_kcall=9\n\
            net app ...\n\
            kernel-lite: cpu tsc 5000 idle 900 ticks per ms 999000\n\
            kernel-lite: end of tables\n";
        assert_eq!(
            parse_tables(serial, "http"),
            Some(Tables {
                tsc: 5000,
                idle: 900,
                ticks_per_ms: 999_000,
                kcalls: 53,
                traps: 73,
            })
        );
        assert_eq!(parse_tables("kernel-lite: diagnostics\n", "http"), None);
        let serial = "x\nnet app          frames in  KiB in frames out KiB out full spoofed bad\n\
                      http                   10       2        12       9    3       0   0\n\
                      kernel-lite: cpu tsc 1 idle 1 ticks per ms 1\n";
        assert_eq!(
            network_row(serial, "http").as_deref(),
            Some("frames in 10 (2 KiB), out 12 (9 KiB); dropped: ring full 3, spoofed 0, bad 0")
        );
    }
}
