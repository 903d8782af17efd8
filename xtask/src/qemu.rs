//! QEMU: machine profiles (data under `qemu/`), installing QEMU when missing, the user network
//! of bundles with networked apps, and running an image either on the terminal or with its
//! serial output captured for a test.

use crate::bundle::{Manifest, Protocol};
use crate::image::Firmware;
use anyhow::{Context, bail};
use lite_abi::exit::ImageOutcome;
use serde::Deserialize;
use std::fmt;
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
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
    /// A NIC on QEMU's user network, for bundles with networked apps
    /// ([`UserNetwork::for_bundle`]); `None` adds no network option at all.
    pub network: Option<UserNetwork>,
    /// A NIC on a tap device instead ([`TapNetwork`]; QEMU must then run in the tap's network
    /// namespace, see [`TapNamespace::exec`]). [`command`] refuses options with both networks.
    pub tap: Option<TapNetwork>,
    /// A disk image attached as the machine's virtio-blk disk ([`disk_args`]), made or checked
    /// by [`crate::disk::DiskImage::prepare`]; `None` adds no disk.
    pub disk: Option<PathBuf>,
}

/// The MAC of the virtio-net NIC itself. The apps send and receive with their own MACs (see
/// `lite_abi::net::config`); this one only names the device (QEMU's usual prefix 52:54:00,
/// locally administered).
pub const NIC_MAC: &str = "52:54:00:12:34:56";

/// The user network QEMU gives a bundle whose apps have `[app.net]`: one modern-only
/// virtio-net NIC (`disable-legacy=on`, the virtio 1.x interface kernel-lite drives) on QEMU's
/// user networking (libslirp) with 10.0.2.0/24 and fec0::/64, its gateway at 10.0.2.2 / fec0::2
/// and DNS at 10.0.2.3, and one `hostfwd` per forward of the manifest.
///
/// QEMU 7.2 (Debian 12's) was tried for what it accepts:
/// - `hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80` and the `udp:` form: yes;
/// - IPv6, `hostfwd=tcp:[::1]:8080-[fec0::15]:80`: refused ("Bad host address"), and
///   `tcp:::1:8080-fec0::15:80` too ("Bad host port"). Forwards are therefore IPv4 only, on
///   127.0.0.1; a guest's IPv6 is reached from inside the user network only;
/// - `ipv6=on` alone turns IPv4 off (and then refuses `net=`), so both are named;
/// - a host port already taken, or two rules on one port: QEMU exits with "Could not set up
///   host forwarding rule" before the guest runs;
/// - a guest address outside `net=`: accepted but useless (the manifest refuses it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserNetwork {
    pub forwards: Vec<PortForward>,
    /// Every frame through the NIC written to this pcap file (QEMU's `filter-dump`).
    pub pcap: Option<PathBuf>,
}

/// One host port QEMU forwards to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    /// The app (its manifest name) the port goes to.
    pub app: String,
    pub protocol: Protocol,
    /// The port on the host's 127.0.0.1.
    pub host_port: u16,
    /// The app's static IPv4 address.
    pub guest_address: Ipv4Addr,
    pub guest_port: u16,
}

impl PortForward {
    /// Where a client on the host reaches the app: `http://127.0.0.1:8080/` for TCP to guest
    /// port 80 or 8080, else `tcp://127.0.0.1:PORT` or `udp://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        match (self.protocol, self.guest_port) {
            (Protocol::Tcp, 80 | 8080) => format!("http://127.0.0.1:{}/", self.host_port),
            (protocol, _) => format!("{protocol}://127.0.0.1:{}", self.host_port),
        }
    }

    /// QEMU's `hostfwd` rule for it.
    pub fn hostfwd(&self) -> String {
        format!(
            "hostfwd={}:127.0.0.1:{}-{}:{}",
            self.protocol, self.host_port, self.guest_address, self.guest_port
        )
    }
}

impl fmt::Display for PortForward {
    /// `http: http://127.0.0.1:8080/ -> 10.0.2.15:80`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} -> {}:{}",
            self.app,
            self.url(),
            self.guest_address,
            self.guest_port
        )
    }
}

/// QEMU splits option values at commas; a literal comma is written twice.
fn qemu_option_value(text: &str) -> String {
    text.replace(',', ",,")
}

impl UserNetwork {
    /// The network for `manifest`, with the host ports it declares; `None` when no app has
    /// `[app.net]` (the image then boots with QEMU's command line exactly as before).
    pub fn for_bundle(manifest: &Manifest) -> Option<UserNetwork> {
        if manifest.apps.iter().all(|app| app.net.is_none()) {
            return None;
        }
        let forwards = manifest
            .apps
            .iter()
            .flat_map(|app| {
                // The manifest refuses forwards on apps without a static IPv4 address.
                let address = app.net.and_then(|net| net.static_ipv4());
                app.forwards.iter().filter_map(move |forward| {
                    Some(PortForward {
                        app: app.name.clone(),
                        protocol: forward.protocol,
                        host_port: forward.host_port,
                        guest_address: Ipv4Addr::from(address?),
                        guest_port: forward.guest_port,
                    })
                })
            })
            .collect();
        Some(UserNetwork {
            forwards,
            pcap: None,
        })
    }

    /// Adds `offset` to every host port (`cargo xtask run --port-offset`), refusing a port past
    /// 65535.
    pub fn offset_host_ports(&mut self, offset: u16) -> anyhow::Result<()> {
        for forward in &mut self.forwards {
            forward.host_port = forward.host_port.checked_add(offset).with_context(|| {
                format!(
                    "app '{}': host {} port {} + --port-offset {offset} passes 65535; use an \
                     offset of at most {}",
                    forward.app,
                    forward.protocol,
                    forward.host_port,
                    u16::MAX - forward.host_port
                )
            })?;
        }
        Ok(())
    }

    /// Fails, naming every taken port, unless each host port can be bound on 127.0.0.1 now
    /// (QEMU would fail on them with a vaguer message).
    pub fn check_host_ports_free(&self) -> anyhow::Result<()> {
        let taken: Vec<String> = self
            .forwards
            .iter()
            .filter(|forward| {
                let address = (Ipv4Addr::LOCALHOST, forward.host_port);
                match forward.protocol {
                    Protocol::Tcp => std::net::TcpListener::bind(address).is_err(),
                    Protocol::Udp => std::net::UdpSocket::bind(address).is_err(),
                }
            })
            .map(|forward| {
                format!(
                    "{} port {} (for app '{}')",
                    forward.protocol, forward.host_port, forward.app
                )
            })
            .collect();
        if !taken.is_empty() {
            bail!(
                "host {} already taken on 127.0.0.1; stop what uses it, or move every forward \
                 with --port-offset N (e.g. --port-offset 10000)",
                taken.join(", ")
            );
        }
        Ok(())
    }

    /// The host port forwarded to `app`'s `protocol` `guest_port`, if there is one.
    pub fn host_port(&self, app: &str, protocol: Protocol, guest_port: u16) -> Option<u16> {
        self.forwards
            .iter()
            .find(|forward| {
                forward.app == app
                    && forward.protocol == protocol
                    && forward.guest_port == guest_port
            })
            .map(|forward| forward.host_port)
    }

    /// QEMU's options for this network.
    pub fn args(&self) -> Vec<String> {
        let mut netdev =
            String::from("user,id=net0,ipv4=on,net=10.0.2.0/24,ipv6=on,ipv6-net=fec0::/64");
        for forward in &self.forwards {
            netdev.push(',');
            netdev.push_str(&forward.hostfwd());
        }
        nic_args(netdev, self.pcap.as_deref())
    }
}

/// `-netdev NETDEV` (its id `net0`), the pcap filter if asked for, and the NIC every network
/// gets: one modern-only virtio-net-pci device on `net0`.
fn nic_args(netdev: String, pcap: Option<&Path>) -> Vec<String> {
    let mut args = vec!["-netdev".to_owned(), netdev];
    if let Some(pcap) = pcap {
        args.push("-object".to_owned());
        args.push(format!(
            "filter-dump,id=dump0,netdev=net0,file={}",
            qemu_option_value(&pcap.to_string_lossy())
        ));
    }
    args.push("-device".to_owned());
    args.push(format!(
        "virtio-net-pci,netdev=net0,disable-legacy=on,mac={NIC_MAC}"
    ));
    args
}

/// QEMU's options for the image's data disk: the raw file `path` as one modern-only
/// virtio-blk-pci device (`disable-legacy=on`: PCI 1af4:1042, the virtio 1.x interface
/// kernel-lite drives). The drive is `if=none`, so only that device sees it, and the firmware
/// never boots from it (it has no boot sector either). QEMU's default cache mode, writeback,
/// makes a guest's flush an fdatasync of the file on the host: what the guest flushed survives
/// QEMU being killed.
pub fn disk_args(path: &Path) -> Vec<String> {
    vec![
        "-drive".to_owned(),
        format!(
            "file={},if=none,id=disk0,format=raw",
            qemu_option_value(&path.to_string_lossy())
        ),
        "-device".to_owned(),
        "virtio-blk-pci,drive=disk0,disable-legacy=on".to_owned(),
    ]
}

/// The same NIC as on the user network ([`UserNetwork::args`]: virtio-net-pci, modern only, the
/// same MAC) on a tap device that already exists (`script=no,downscript=no`: QEMU configures
/// nothing on the host). Its host side is a real Linux interface: no forwards, no listen queue
/// of QEMU's own in the way; clients reach the guest's address directly from the tap's network
/// namespace (see [`TapNamespace`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapNetwork {
    /// The tap device (at most 15 bytes, Linux's limit).
    pub ifname: String,
    /// Every frame through the NIC written to this pcap file (QEMU's `filter-dump`).
    pub pcap: Option<PathBuf>,
}

impl TapNetwork {
    /// QEMU's options for this network.
    pub fn args(&self) -> Vec<String> {
        nic_args(
            format!(
                "tap,id=net0,ifname={},script=no,downscript=no",
                qemu_option_value(&self.ifname)
            ),
            self.pcap.as_deref(),
        )
    }
}

/// The prefix of the network namespaces [`TapNamespace::create`] makes; the process id follows.
const NAMESPACE_PREFIX: &str = "libos-tap-";

/// A network namespace of its own with one tap device in it, up, at `host_address/prefix`
/// (the guest's gateway), for a QEMU started inside it ([`TapNamespace::exec`]) and for the
/// clients that talk to the guest ([`TapNamespace::exec`] again). Names carry the process id
/// and a counter, so parallel runs and several boots of one run never meet. Dropping it deletes
/// the tap and the namespace (stop the QEMU inside first: the namespace lives on while a
/// process is in it); namespaces left by a process that died without dropping theirs (a
/// signal) are deleted by the next [`TapNamespace::create`].
///
/// Needs CAP_NET_ADMIN (root) and iproute2's `ip`.
#[derive(Debug)]
pub struct TapNamespace {
    pub namespace: String,
    pub tap: String,
}

impl TapNamespace {
    /// The names of the `index`th namespace of process `pid`: `libos-tap-PID-INDEX` and
    /// `tapPID-INDEX` (15 bytes at most for any pid Linux gives and an index below 1000).
    pub fn names(pid: u32, index: usize) -> (String, String) {
        (
            format!("{NAMESPACE_PREFIX}{pid}-{index}"),
            format!("tap{pid}-{}", index % 1000),
        )
    }

    /// The `ip` command lines (arguments after `ip`) that make the namespace: the namespace,
    /// its loopback up, the tap in it, the tap's address, the tap up.
    pub fn setup_lines(
        namespace: &str,
        tap: &str,
        host_address: Ipv4Addr,
        prefix: u8,
    ) -> Vec<Vec<String>> {
        let inside = |rest: &[&str]| -> Vec<String> {
            ["netns", "exec", namespace, "ip"]
                .iter()
                .chain(rest)
                .map(|word| (*word).to_owned())
                .collect()
        };
        vec![
            vec!["netns".into(), "add".into(), namespace.to_owned()],
            inside(&["link", "set", "lo", "up"]),
            inside(&["tuntap", "add", "dev", tap, "mode", "tap"]),
            inside(&[
                "addr",
                "add",
                &format!("{host_address}/{prefix}"),
                "dev",
                tap,
            ]),
            inside(&["link", "set", tap, "up"]),
        ]
    }

    /// Makes the namespace and its tap; on failure, removes what it made and says which line
    /// failed and why (no CAP_NET_ADMIN, no `ip`, no /dev/net/tun).
    pub fn create(host_address: Ipv4Addr, prefix: u8) -> anyhow::Result<TapNamespace> {
        static CREATED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        remove_dead_namespaces();
        let index = CREATED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (namespace, tap) = TapNamespace::names(std::process::id(), index);
        let made = TapNamespace { namespace, tap };
        for (step, line) in
            TapNamespace::setup_lines(&made.namespace, &made.tap, host_address, prefix)
                .into_iter()
                .enumerate()
        {
            let output = Command::new("ip")
                .args(&line)
                .stdin(Stdio::null())
                .output()
                .context("running ip (iproute2)")?;
            if !output.status.success() {
                if step == 0 {
                    // Nothing was made: dropping would try to delete what is not there.
                    std::mem::forget(made);
                }
                bail!(
                    "`ip {}` failed ({}): {}",
                    line.join(" "),
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
        }
        Ok(made)
    }

    /// `command` run inside the namespace: `ip netns exec NAMESPACE PROGRAM ARGS…`, with the
    /// same environment changes and working directory.
    pub fn exec(&self, command: &Command) -> Command {
        let mut inside = Command::new("ip");
        inside
            .args(["netns", "exec", &self.namespace])
            .arg(command.get_program())
            .args(command.get_args());
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => inside.env(key, value),
                None => inside.env_remove(key),
            };
        }
        if let Some(folder) = command.get_current_dir() {
            inside.current_dir(folder);
        }
        inside
    }

    /// QEMU's network for the tap.
    pub fn network(&self) -> TapNetwork {
        TapNetwork {
            ifname: self.tap.clone(),
            pcap: None,
        }
    }
}

fn delete_namespace(namespace: &str, tap: Option<&str>) {
    let quiet = |args: &[&str]| {
        let _ = Command::new("ip")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    if let Some(tap) = tap {
        quiet(&["netns", "exec", namespace, "ip", "link", "del", tap]);
    }
    quiet(&["netns", "del", namespace]);
}

impl Drop for TapNamespace {
    fn drop(&mut self) {
        delete_namespace(&self.namespace, Some(&self.tap));
    }
}

/// The process id in a name [`TapNamespace::names`] made.
fn namespace_pid(name: &str) -> Option<u32> {
    name.strip_prefix(NAMESPACE_PREFIX)?
        .split_once('-')?
        .0
        .parse()
        .ok()
}

/// Deletes the namespaces of processes that no longer run (their taps go with them).
fn remove_dead_namespaces() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        // "NAME" or "NAME (id: N)"
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if let Some(pid) = namespace_pid(name)
            && pid != std::process::id()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            delete_namespace(name, None);
        }
    }
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
    // A captured run gets its serial console in a file (see `RunningQemu::spawn`).
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
    if let Some(network) = &options.network {
        command.args(network.args());
    }
    if let Some(tap) = &options.tap {
        command.args(tap.args());
    }
    if let Some(disk) = &options.disk {
        command.args(disk_args(disk));
    }
    command
}

fn check_networks(options: &RunOptions) -> anyhow::Result<()> {
    if options.network.is_some() && options.tap.is_some() {
        bail!("QEMU gets one NIC: a user network or a tap device, not both");
    }
    Ok(())
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
    check_networks(options)?;
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
    check_networks(options)?;
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
    command: Command,
    timeout: Duration,
    ready: Option<&str>,
    mut injection: Option<&Injection>,
) -> anyhow::Result<RunOutput> {
    let mut qemu = RunningQemu::spawn(command)?;
    let mut ready_after = None;
    let mut seen = 0usize;
    let mut timed_out = false;
    loop {
        let exited = qemu.child.try_wait()?.is_some();
        if let Some(pattern) = ready
            && ready_after.is_none()
        {
            let console = qemu.console();
            // Only the new bytes (and a pattern's length before them) can hold a match.
            let from = seen.saturating_sub(pattern.len());
            if contains(&console[from.min(console.len())..], pattern) {
                ready_after = Some(qemu.started.elapsed());
            }
            seen = console.len();
        }
        if exited {
            break;
        }
        if let Some(pending) = injection
            && ready_after.is_some()
        {
            injection = None;
            inject(pending)?;
        }
        if qemu.started.elapsed() > timeout {
            timed_out = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(qemu.finish(timed_out, ready, ready_after))
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    needle.is_empty()
        || haystack.len() >= needle.len()
            && haystack
                .windows(needle.len())
                .any(|window| window == needle.as_bytes())
}

/// A QEMU started with its serial console going to a file, still running: for a test that
/// talks to the guest while it runs. [`RunningQemu::stop`] or [`RunningQemu::wait`] end it and
/// give the same [`RunOutput`] as [`run_captured`]; dropping it kills QEMU.
pub struct RunningQemu {
    child: Child,
    serial_path: PathBuf,
    /// Threads reading QEMU's stdout and stderr to their ends.
    readers: Vec<JoinHandle<Vec<u8>>>,
    started: Instant,
}

impl RunningQemu {
    /// Starts `command` (a [`command`] line) with the serial console in a file of its own.
    pub fn spawn(mut command: Command) -> anyhow::Result<RunningQemu> {
        static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let serial_path = std::env::temp_dir().join(format!(
            "libos-serial-{}-{}.txt",
            std::process::id(),
            RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&serial_path);
        // A captured run gets its serial console in a file: a pipe's reader can fall behind on
        // a loaded machine, and QEMU then drops console bytes.
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
        Ok(RunningQemu {
            child,
            serial_path,
            readers,
            started,
        })
    }

    fn console(&self) -> Vec<u8> {
        std::fs::read(&self.serial_path).unwrap_or_default()
    }

    /// The serial console so far.
    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&self.console()).into_owned()
    }

    /// Whether QEMU still runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits until `needle` appears on the serial console; `Some(time since QEMU started)`, or
    /// `None` when QEMU ended or `timeout` passed first.
    pub fn wait_for_serial(&mut self, needle: &str, timeout: Duration) -> Option<Duration> {
        let waiting = Instant::now();
        loop {
            let running = self.is_running();
            if contains(&self.console(), needle) {
                return Some(self.started.elapsed());
            }
            if !running || waiting.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU if it still runs and returns what it produced (`status` is `None` when it
    /// had to be killed; `timed_out` stays false: stopping was the caller's wish).
    pub fn stop(self) -> RunOutput {
        self.finish(false, None, None)
    }

    /// Waits up to `timeout` for QEMU to end by itself (kills it and says `timed_out` if not)
    /// and returns what it produced.
    pub fn wait(mut self, timeout: Duration) -> RunOutput {
        let waiting = Instant::now();
        while self.is_running() {
            if waiting.elapsed() > timeout {
                return self.finish(true, None, None);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.finish(false, None, None)
    }

    /// Ends QEMU (killing it if it still runs) and gathers its output. `ready`, when seen only
    /// now, is dated at the end: the closest bound there is.
    fn finish(
        mut self,
        timed_out: bool,
        ready: Option<&str>,
        mut ready_after: Option<Duration>,
    ) -> RunOutput {
        let status = match self.child.try_wait() {
            Ok(Some(status)) => status.code(),
            _ => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        };
        let mut captured = self.console();
        let _ = std::fs::remove_file(&self.serial_path);
        if let Some(pattern) = ready
            && ready_after.is_none()
            && contains(&captured, pattern)
        {
            ready_after = Some(self.started.elapsed());
        }
        for reader in std::mem::take(&mut self.readers) {
            captured.extend(reader.join().unwrap_or_default());
        }
        let serial = String::from_utf8_lossy(&captured).into_owned();
        RunOutput {
            status,
            outcome: status.and_then(ImageOutcome::from_qemu_exit_status),
            serial,
            timed_out,
            wall: self.started.elapsed(),
            ready_after,
        }
    }
}

impl Drop for RunningQemu {
    fn drop(&mut self) {
        // Also after `finish`, where both are no-ops.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.serial_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn manifest(text: &str) -> Manifest {
        crate::bundle::parse(Path::new("x.toml"), text).unwrap()
    }

    const TWO_APPS: &str = "[[app]]\nname = \"web\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n\
        [app.net]\nipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:8080:80\", \"udp:5353:53\", \"tcp:2222:22\"]\n\
        [[app]]\nname = \"kv\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n\
        [app.net]\nipv4 = \"10.0.2.16/24\"\nforward = [\"tcp:8081:8080\"]\n\
        [[app]]\nname = \"plain\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n";

    fn profile() -> Profile {
        Profile {
            description: "test".into(),
            machine: "q35".into(),
            cpu: "max".into(),
            memory: "256M".into(),
            firmware: "bios".into(),
            ovmf: Vec::new(),
            args: vec!["-no-reboot".into()],
        }
    }

    fn args(command: &Command) -> Vec<String> {
        command
            .get_args()
            .map(|arg| arg.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn a_bundle_without_net_apps_keeps_its_command_line() {
        let plain = manifest("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n");
        assert_eq!(UserNetwork::for_bundle(&plain), None);
        let options = RunOptions {
            network: UserNetwork::for_bundle(&plain),
            ..RunOptions::default()
        };
        let image = Path::new("/tmp/bios.img");
        assert_eq!(
            args(&command(&profile(), image, &options).unwrap()),
            args(&command(&profile(), image, &RunOptions::default()).unwrap())
        );
    }

    #[test]
    fn net_apps_get_a_virtio_nic_and_their_forwards() {
        let mut network = UserNetwork::for_bundle(&manifest(TWO_APPS)).unwrap();
        network.pcap = Some(PathBuf::from("/tmp/a,b.pcap"));
        assert_eq!(
            network.args(),
            [
                "-netdev",
                "user,id=net0,ipv4=on,net=10.0.2.0/24,ipv6=on,ipv6-net=fec0::/64,\
                 hostfwd=tcp:127.0.0.1:8080-10.0.2.15:80,hostfwd=udp:127.0.0.1:5353-10.0.2.15:53,\
                 hostfwd=tcp:127.0.0.1:2222-10.0.2.15:22,hostfwd=tcp:127.0.0.1:8081-10.0.2.16:8080",
                "-object",
                "filter-dump,id=dump0,netdev=net0,file=/tmp/a,,b.pcap",
                "-device",
                "virtio-net-pci,netdev=net0,disable-legacy=on,mac=52:54:00:12:34:56",
            ]
        );
        let lines: Vec<String> = network.forwards.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            lines,
            [
                "web: http://127.0.0.1:8080/ -> 10.0.2.15:80",
                "web: udp://127.0.0.1:5353 -> 10.0.2.15:53",
                "web: tcp://127.0.0.1:2222 -> 10.0.2.15:22",
                "kv: http://127.0.0.1:8081/ -> 10.0.2.16:8080",
            ]
        );
        assert_eq!(network.host_port("kv", Protocol::Tcp, 8080), Some(8081));
        assert_eq!(network.host_port("kv", Protocol::Udp, 8080), None);

        // The options follow the machine's, before what it boots.
        let options = RunOptions {
            network: Some(network),
            ..RunOptions::default()
        };
        let line = args(&command(&profile(), Path::new("/tmp/bios.img"), &options).unwrap());
        let device = line.iter().position(|arg| arg == "-device").unwrap();
        assert!(line[device + 1].starts_with("virtio-net-pci"));
        assert_eq!(line[line.len() - 2], "-drive");
    }

    #[test]
    fn a_tap_network_gets_the_same_nic_on_a_tap_netdev() {
        let tap = TapNetwork {
            ifname: "tap4194304-999".into(),
            pcap: Some(PathBuf::from("/tmp/t.pcap")),
        };
        assert_eq!(
            tap.args(),
            [
                "-netdev",
                "tap,id=net0,ifname=tap4194304-999,script=no,downscript=no",
                "-object",
                "filter-dump,id=dump0,netdev=net0,file=/tmp/t.pcap",
                "-device",
                "virtio-net-pci,netdev=net0,disable-legacy=on,mac=52:54:00:12:34:56",
            ]
        );
        // The NIC is the user network's, option for option.
        let user = UserNetwork::default().args();
        assert_eq!(tap.args().last(), user.last());
        let options = RunOptions {
            tap: Some(TapNetwork {
                pcap: None,
                ..tap.clone()
            }),
            ..RunOptions::default()
        };
        let image = Path::new("/tmp/bios.img");
        let line = args(&command(&profile(), image, &options).unwrap());
        let netdev = line.iter().position(|arg| arg == "-netdev").unwrap();
        assert_eq!(
            line[netdev..netdev + 4],
            [
                "-netdev",
                "tap,id=net0,ifname=tap4194304-999,script=no,downscript=no",
                "-device",
                "virtio-net-pci,netdev=net0,disable-legacy=on,mac=52:54:00:12:34:56",
            ]
        );
        assert!(!line.iter().any(|arg| arg.contains("hostfwd")));
        // Everything but the network is as without one.
        let mut without = line.clone();
        without.drain(netdev..netdev + 4);
        assert_eq!(
            without,
            args(&command(&profile(), image, &RunOptions::default()).unwrap())
        );
        let both = RunOptions {
            network: Some(UserNetwork::default()),
            ..options.clone()
        };
        let error = command(&profile(), image, &both).unwrap_err().to_string();
        assert!(error.contains("not both"), "{error}");
        let kernel = Path::new("/tmp/vmlinuz");
        assert!(linux_command(&profile(), kernel, kernel, "quiet", &both).is_err());
        let linux = args(&linux_command(&profile(), kernel, kernel, "quiet", &options).unwrap());
        assert!(
            linux.contains(&"tap,id=net0,ifname=tap4194304-999,script=no,downscript=no".into())
        );
    }

    #[test]
    fn a_disk_is_a_modern_virtio_blk_device_before_the_boot_drive() {
        assert_eq!(
            disk_args(Path::new("/tmp/a,b.img")),
            [
                "-drive",
                "file=/tmp/a,,b.img,if=none,id=disk0,format=raw",
                "-device",
                "virtio-blk-pci,drive=disk0,disable-legacy=on",
            ]
        );
        let options = RunOptions {
            disk: Some(PathBuf::from("/tmp/disks/default.img")),
            ..RunOptions::default()
        };
        let image = Path::new("/tmp/bios.img");
        let line = args(&command(&profile(), image, &options).unwrap());
        let at = line
            .iter()
            .position(|arg| arg == "file=/tmp/disks/default.img,if=none,id=disk0,format=raw")
            .unwrap();
        assert_eq!(line[at + 2], "virtio-blk-pci,drive=disk0,disable-legacy=on");
        // The boot drive stays last, and nothing else changes.
        assert_eq!(line[line.len() - 1], "format=raw,file=/tmp/bios.img");
        let mut without = line.clone();
        without.drain(at - 1..at + 3);
        assert_eq!(
            without,
            args(&command(&profile(), image, &RunOptions::default()).unwrap())
        );
        let kernel = Path::new("/tmp/vmlinuz");
        let linux = args(&linux_command(&profile(), kernel, kernel, "quiet", &options).unwrap());
        assert!(linux.contains(&"virtio-blk-pci,drive=disk0,disable-legacy=on".to_owned()));
    }

    #[test]
    fn a_tap_namespace_has_unique_names_and_its_ip_lines() {
        let (namespace, tap) = TapNamespace::names(4_194_304, 2);
        assert_eq!(
            (namespace.as_str(), tap.as_str()),
            ("libos-tap-4194304-2", "tap4194304-2")
        );
        assert!(TapNamespace::names(4_194_304, 999).1.len() <= 15);
        assert_ne!(TapNamespace::names(7, 0), TapNamespace::names(8, 0));
        assert_ne!(TapNamespace::names(7, 0), TapNamespace::names(7, 1));
        assert_eq!(namespace_pid(&namespace), Some(4_194_304));
        assert_eq!(namespace_pid("libos-tap-x-1"), None);
        assert_eq!(namespace_pid("other-12-1"), None);
        let lines: Vec<String> =
            TapNamespace::setup_lines("libos-tap-7-0", "tap7-0", Ipv4Addr::new(10, 0, 2, 2), 24)
                .iter()
                .map(|line| line.join(" "))
                .collect();
        assert_eq!(
            lines,
            [
                "netns add libos-tap-7-0",
                "netns exec libos-tap-7-0 ip link set lo up",
                "netns exec libos-tap-7-0 ip tuntap add dev tap7-0 mode tap",
                "netns exec libos-tap-7-0 ip addr add 10.0.2.2/24 dev tap7-0",
                "netns exec libos-tap-7-0 ip link set tap7-0 up",
            ]
        );
        // Not created (that needs root): only its names, to wrap a command line.
        let made = std::mem::ManuallyDrop::new(TapNamespace {
            namespace: "libos-tap-7-0".into(),
            tap: "tap7-0".into(),
        });
        let mut client = Command::new("wrk");
        client.args(["-c30", "http://10.0.2.15/"]).env("LANG", "C");
        let inside = made.exec(&client);
        assert_eq!(inside.get_program(), "ip");
        assert_eq!(
            args(&inside),
            [
                "netns",
                "exec",
                "libos-tap-7-0",
                "wrk",
                "-c30",
                "http://10.0.2.15/"
            ]
        );
        assert_eq!(inside.get_envs().count(), 1);
        assert_eq!(
            made.network().args()[1],
            "tap,id=net0,ifname=tap7-0,script=no,downscript=no"
        );
    }

    #[test]
    fn a_port_offset_moves_every_host_port_and_refuses_to_overflow() {
        let mut network = UserNetwork::for_bundle(&manifest(TWO_APPS)).unwrap();
        network.offset_host_ports(10_000).unwrap();
        let ports: Vec<u16> = network.forwards.iter().map(|f| f.host_port).collect();
        assert_eq!(ports, [18080, 15353, 12222, 18081]);
        let error = network.offset_host_ports(50_000).unwrap_err().to_string();
        assert!(error.contains("passes 65535"), "{error}");
        assert!(error.contains("at most 47455"), "{error}");
    }

    /// A stand-in for QEMU: `sh -c SCRIPT` gets `-serial file:PATH` as `$0 $1`, so the script
    /// writes its "console" to `$f`. A long sleep is `exec`ed: a child of `sh` would keep the
    /// output pipes open after `sh` is killed.
    fn fake_qemu(script: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("f=\"${{1#file:}}\"; {script}"));
        command
    }

    #[test]
    fn a_running_qemu_is_watched_stopped_and_waited_for() {
        let mut running =
            RunningQemu::spawn(fake_qemu("echo booted > \"$f\"; exec sleep 30")).unwrap();
        assert!(
            running
                .wait_for_serial("booted\n", Duration::from_secs(10))
                .is_some()
        );
        assert!(running.is_running());
        assert_eq!(running.serial(), "booted\n");
        let output = running.stop();
        assert_eq!((output.status, output.timed_out), (None, false));
        assert_eq!(output.serial, "booted\n");

        let running = RunningQemu::spawn(fake_qemu("echo done > \"$f\"; exit 3")).unwrap();
        let output = running.wait(Duration::from_secs(10));
        assert_eq!((output.status, output.timed_out), (Some(3), false));
        assert!(output.serial.starts_with("done\n"), "{output:?}");

        let mut running = RunningQemu::spawn(fake_qemu("echo bye >&2; exit 1")).unwrap();
        assert_eq!(
            running.wait_for_serial("never", Duration::from_secs(10)),
            None
        );
        let output = running.stop();
        assert_eq!(output.status, Some(1));
        assert!(
            output.serial.contains("bye"),
            "QEMU's stderr is kept: {output:?}"
        );

        let running = RunningQemu::spawn(fake_qemu("exec sleep 30")).unwrap();
        let output = running.wait(Duration::from_millis(100));
        assert_eq!((output.status, output.timed_out), (None, true));
    }

    #[test]
    fn captured_runs_note_when_the_ready_line_came() {
        let output = run_watched(
            fake_qemu("sleep 0.2; echo ready > \"$f\"; sleep 0.3"),
            Duration::from_secs(10),
            Some("ready"),
        )
        .unwrap();
        let ready = output.ready_after.expect("the ready line was seen");
        assert!(
            ready >= Duration::from_millis(200) && ready < output.wall,
            "{output:?}"
        );
        assert_eq!(output.status, Some(0));
    }

    #[test]
    fn taken_host_ports_are_found_before_qemu_starts() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let network = UserNetwork {
            forwards: vec![PortForward {
                app: "web".into(),
                protocol: Protocol::Tcp,
                host_port: port,
                guest_address: Ipv4Addr::new(10, 0, 2, 15),
                guest_port: 80,
            }],
            pcap: None,
        };
        let error = network.check_host_ports_free().unwrap_err().to_string();
        assert!(
            error.contains(&format!("tcp port {port} (for app 'web')")),
            "{error}"
        );
        assert!(error.contains("--port-offset"), "{error}");
        drop(taken);
        network.check_host_ports_free().unwrap();
    }
}
