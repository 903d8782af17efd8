//! The harness of the in-QEMU tests: build a bundle's image the way `cargo xtask run` does,
//! boot it with the serial console captured, and hand the output to the test's assertions.

pub use lite_abi::exit::ImageOutcome;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use xtask::bundle::Protocol;
pub use xtask::disk::{DiskImage, DiskState};
pub use xtask::image::Firmware;
use xtask::qemu::RunningQemu;
pub use xtask::qemu::{Injection, PortForward, RunOptions, RunOutput, UserNetwork};

/// Longest a test image may run under TCG before it counts as hung.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Builds bundle `name` and boots it on `firmware`; panics (failing the test) if anything on the
/// way fails or QEMU hangs.
pub fn boot(name: &str, firmware: Firmware) -> RunOutput {
    boot_with(name, firmware, &RunOptions::default(), None)
}

/// Like [`boot`], with QEMU options (another `-cpu`, `-m`, a monitor) and monitor commands to
/// send once a line appears.
pub fn boot_with(
    name: &str,
    firmware: Firmware,
    options: &RunOptions,
    injection: Option<&Injection>,
) -> RunOutput {
    let (_, copy) = private_image(name, firmware);
    let output = run_disk_with(&copy, firmware, options, injection);
    let _ = std::fs::remove_file(&copy);
    output
}

/// Builds bundle `name` for `firmware` and copies its disk image to a file of this boot's own;
/// the caller removes the copy. Tests run in parallel and several boot one bundle: each builds
/// under a lock and boots a copy of its own, so no QEMU reads an image another test is
/// rewriting (or has locked).
fn private_image(name: &str, firmware: Firmware) -> (xtask::bundle::Manifest, PathBuf) {
    xtask::qemu::ensure_installed().expect("QEMU is installed");
    let manifest = xtask::bundle::load(&xtask::bundle::find(name).unwrap()).unwrap();
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let _building = BUILDING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (_, disk) = xtask::boot_image(&manifest, firmware).unwrap();
    let copy = disk.with_file_name(format!(
        "run-{}-{}.img",
        std::process::id(),
        COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::copy(&disk, &copy).unwrap();
    (manifest, copy)
}

/// Moves every forward's host port to one free on 127.0.0.1 now: each is bound to port 0 (the
/// kernel picks a free one), all stay bound until all are picked so they differ, then all are
/// let go for QEMU to take.
fn pick_free_host_ports(network: &mut UserNetwork) {
    let mut tcp_held = Vec::new();
    let mut udp_held = Vec::new();
    for forward in &mut network.forwards {
        let any_port = (std::net::Ipv4Addr::LOCALHOST, 0);
        forward.host_port = match forward.protocol {
            Protocol::Tcp => {
                let listener = std::net::TcpListener::bind(any_port).expect("a free TCP port");
                let port = listener.local_addr().unwrap().port();
                tcp_held.push(listener);
                port
            }
            Protocol::Udp => {
                let socket = std::net::UdpSocket::bind(any_port).expect("a free UDP port");
                let port = socket.local_addr().unwrap().port();
                udp_held.push(socket);
                port
            }
        };
    }
    drop((tcp_held, udp_held));
}

/// QEMU's message when it cannot bind a host port (another process took the port between
/// [`pick_free_host_ports`] and QEMU's start).
const FORWARD_REFUSED: &str = "Could not set up host forwarding rule";

/// Boots bundle `name`, whose apps have `[app.net]` forwards, with every forward's host port
/// moved to a free one chosen now, and returns while QEMU runs, so that the test can talk to
/// the guest through the forwarded ports. Ask the handle for the port of each
/// (app, protocol, guest port) with [`NetworkedImage::host_port`]; end the run with
/// [`NetworkedImage::wait`] (the image ends by itself) or [`NetworkedImage::stop`] (QEMU is
/// killed), which give the [`RunOutput`] the other helpers give. Dropping the handle kills QEMU.
///
/// Returns once QEMU has set up its forwards (the console's first byte: QEMU binds the host
/// ports before the guest runs); a port taken meanwhile by another process is picked again.
///
/// For example, with an `http` app (forward `tcp:8080:80`) in the bundle:
///
/// ```no_run
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use system_tests::{Firmware, Protocol, boot_networked};
///
/// let mut image = boot_networked("http", Firmware::Bios);
/// image.wait_for_serial("[http] listening", Duration::from_secs(60));
/// let port = image.host_port("http", Protocol::Tcp, 80);
/// let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
/// client.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
/// let mut reply = String::new();
/// client.read_to_string(&mut reply).unwrap();
/// assert!(reply.starts_with("HTTP/1.0 200"));
/// let output = image.stop();
/// assert!(output.serial.contains("[http] served 1 request"));
/// ```
pub fn boot_networked(name: &str, firmware: Firmware) -> NetworkedImage {
    boot_networked_with(name, firmware, &RunOptions::default())
}

/// Like [`boot_networked`], with QEMU options (another `-m`, a monitor, a disk image in
/// `options.disk`, see [`TestDisk`]; `options.network` gives the pcap file, its forwards are
/// replaced by the bundle's).
pub fn boot_networked_with(name: &str, firmware: Firmware, options: &RunOptions) -> NetworkedImage {
    let (manifest, disk_copy) = private_image(name, firmware);
    let mut network = UserNetwork::for_bundle(&manifest)
        .unwrap_or_else(|| panic!("bundle {name:?} has no app with [app.net]"));
    network.pcap = options
        .network
        .as_ref()
        .and_then(|given| given.pcap.clone());
    let profile = xtask::qemu::Profile::for_firmware(firmware).unwrap();
    let mut attempts = 0;
    loop {
        attempts += 1;
        pick_free_host_ports(&mut network);
        let options = RunOptions {
            network: Some(network.clone()),
            ..options.clone()
        };
        let command = xtask::qemu::command(&profile, &disk_copy, &options).unwrap();
        let mut qemu = RunningQemu::spawn(command).unwrap();
        // kernel-lite always speaks before the image ends: a QEMU gone without a console byte
        // never started.
        let started = qemu.wait_for_serial("\n", BOOT_TIMEOUT).is_some() || qemu.is_running();
        if started {
            return NetworkedImage {
                qemu: Some(qemu),
                network,
                disk_copy,
            };
        }
        let output = qemu.stop();
        if output.serial.contains(FORWARD_REFUSED) && attempts < 3 {
            continue;
        }
        let _ = std::fs::remove_file(&disk_copy);
        panic!(
            "QEMU did not start ({:?}, forwards {:?}):\n{}",
            output.status, network.forwards, output.serial
        );
    }
}

/// A networked image booted by [`boot_networked`], QEMU still running.
pub struct NetworkedImage {
    /// `None` once [`NetworkedImage::stop`] or [`NetworkedImage::wait`] took it.
    qemu: Option<RunningQemu>,
    network: UserNetwork,
    disk_copy: PathBuf,
}

impl NetworkedImage {
    /// The host port (on 127.0.0.1) forwarded to `app`'s `protocol` `guest_port`; panics if
    /// the bundle forwards none there.
    pub fn host_port(&self, app: &str, protocol: Protocol, guest_port: u16) -> u16 {
        self.network
            .host_port(app, protocol, guest_port)
            .unwrap_or_else(|| {
                panic!(
                    "no forward to {app} {protocol} port {guest_port}; the bundle has {:?}",
                    self.network.forwards
                )
            })
    }

    /// Every forward, with the host ports chosen for this boot.
    pub fn forwards(&self) -> &[PortForward] {
        &self.network.forwards
    }

    fn qemu(&mut self) -> &mut RunningQemu {
        self.qemu.as_mut().expect("QEMU was not yet collected")
    }

    /// The serial console so far.
    pub fn serial(&mut self) -> String {
        self.qemu().serial()
    }

    /// Whether QEMU still runs.
    pub fn is_running(&mut self) -> bool {
        self.qemu().is_running()
    }

    /// Waits until `needle` appears on the serial console and returns when, counted from
    /// QEMU's start; panics (showing the console) if QEMU ends or `timeout` passes first.
    pub fn wait_for_serial(&mut self, needle: &str, timeout: Duration) -> Duration {
        match self.qemu().wait_for_serial(needle, timeout) {
            Some(after) => after,
            None => {
                let serial = self.serial();
                panic!("{needle:?} did not appear within {timeout:?}; serial so far:\n{serial}");
            }
        }
    }

    /// Kills QEMU and returns what it produced (`status` is `None` unless the image had ended).
    pub fn stop(mut self) -> RunOutput {
        let output = self.qemu.take().expect("collected once").stop();
        show(&output);
        output
    }

    /// Waits for the image to end by itself and returns what it produced; panics if it runs
    /// past [`BOOT_TIMEOUT`].
    pub fn wait(mut self) -> RunOutput {
        let output = self.qemu.take().expect("collected once").wait(BOOT_TIMEOUT);
        show(&output);
        assert!(
            !output.timed_out,
            "QEMU did not end within {BOOT_TIMEOUT:?}"
        );
        output
    }
}

impl Drop for NetworkedImage {
    fn drop(&mut self) {
        // QEMU first (dropping it kills it), then the image it had open.
        self.qemu = None;
        let _ = std::fs::remove_file(&self.disk_copy);
    }
}

/// Prints a run's console; the test harness shows it when the test fails.
fn show(output: &RunOutput) {
    println!(
        "---- serial ({:?}, {:.1} s) ----\n{}",
        output.status,
        output.wall.as_secs_f64(),
        output.serial
    );
}

/// Boots an already written disk image.
pub fn run_disk(disk: &std::path::Path, firmware: Firmware) -> RunOutput {
    run_disk_with(disk, firmware, &RunOptions::default(), None)
}

fn run_disk_with(
    disk: &std::path::Path,
    firmware: Firmware,
    options: &RunOptions,
    injection: Option<&Injection>,
) -> RunOutput {
    let profile = xtask::qemu::Profile::for_firmware(firmware).unwrap();
    let command = xtask::qemu::command(&profile, disk, options).unwrap();
    let output = match injection {
        Some(injection) => xtask::qemu::run_injecting(command, BOOT_TIMEOUT, injection),
        None => xtask::qemu::run_captured(command, BOOT_TIMEOUT),
    }
    .unwrap();
    show(&output);
    assert!(
        !output.timed_out,
        "QEMU did not end within {BOOT_TIMEOUT:?}"
    );
    output
}

/// Asserts that the serial output contains every one of `needles`.
pub fn assert_serial_contains(output: &RunOutput, needles: &[&str]) {
    for needle in needles {
        assert!(
            output.serial.contains(needle),
            "serial output lacks {needle:?}"
        );
    }
}

/// One row of the per-app accounting table kernel-lite prints when the image ends.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountingRow {
    pub end: String,
    pub memory_kib: u64,
    pub peak_kib: u64,
    pub heap_peak_kib: u64,
    pub quota_kib: u64,
    pub restarts: u64,
    pub cpu_percent: f64,
    /// kcall name → count (only kcalls the app made).
    pub kcalls: std::collections::BTreeMap<String, u64>,
    /// Other entries into ring 0 by cause (`page_fault`, `interrupt`, `exception`,
    /// `unknown_kcall`) → count, only those that happened.
    pub traps: std::collections::BTreeMap<String, u64>,
}

/// The lines of the accounting table, found only where kernel-lite wrote it: after its own
/// whole line `kernel-lite: all apps ended` (an app's lines all start with `[name] `, so no app
/// can print that line) up to its closing `kernel-lite: frames in use` line.
fn accounting_table(output: &RunOutput) -> Vec<&str> {
    let mut lines = output.serial.lines();
    lines
        .by_ref()
        .find(|line| *line == "kernel-lite: all apps ended")
        .expect("kernel-lite printed its accounting table");
    lines
        .take_while(|line| !line.starts_with("kernel-lite: frames in use"))
        .collect()
}

fn pairs(words: &[&str]) -> std::collections::BTreeMap<String, u64> {
    words
        .iter()
        .map(|pair| {
            let (name, count) = pair.split_once('=').expect("name=count");
            (name.to_owned(), count.parse().expect("a count"))
        })
        .collect()
}

/// The accounting row of `app`; panics if the table has none.
pub fn accounting_row(output: &RunOutput, app: &str) -> AccountingRow {
    row_among(accounting_table(output), app)
}

/// `app`'s row in the last accounting table of `serial` (the diagnostics an NMI prints while
/// apps run, or the final one); panics if there is none.
pub fn accounting_row_in(serial: &str, app: &str) -> AccountingRow {
    let start = serial
        .rfind("\napp              end")
        .expect("kernel-lite printed an accounting table");
    let lines = serial[start + 1..]
        .lines()
        .skip(1)
        .take_while(|line| !line.starts_with("net app") && !line.starts_with("kernel-lite:"))
        .collect();
    row_among(lines, app)
}

fn row_among(lines: Vec<&str>, app: &str) -> AccountingRow {
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&app) {
            continue;
        }
        // name, end (one or two words), then six numbers, then kcalls | traps.
        let (end, rest) = if words[1] == "exit" {
            (format!("exit {}", words[2]), &words[3..])
        } else {
            (words[1].to_owned(), &words[2..])
        };
        let number = |index: usize| rest[index].parse::<u64>().expect("a number");
        let bar = rest
            .iter()
            .position(|word| *word == "|")
            .expect("kcalls | traps");
        return AccountingRow {
            end,
            memory_kib: number(0),
            peak_kib: number(1),
            heap_peak_kib: number(2),
            quota_kib: number(3),
            restarts: number(4),
            cpu_percent: rest[5].parse().expect("a percentage"),
            kcalls: pairs(&rest[6..bar]),
            traps: pairs(&rest[bar + 1..]),
        };
    }
    panic!("no accounting row for app {app:?}");
}

/// Frames in use when the image ended, and before the first app started, from kernel-lite's
/// closing line: every app's memory is returned when the two are equal.
pub fn frames_at_end_and_before_apps(output: &RunOutput) -> (u64, u64) {
    let line = output
        .serial
        .lines()
        .find_map(|line| line.strip_prefix("kernel-lite: frames in use "))
        .expect("kernel-lite's closing line");
    let number_after = |label: &str| -> u64 {
        let at = line.find(label).expect(label) + label.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let end = line
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .expect("frames in use");
    (end, number_after("; before the apps "))
}

/// How many times `needle` occurs in the serial output.
pub fn count_occurrences(output: &RunOutput, needle: &str) -> usize {
    output.serial.matches(needle).count()
}

/// Sends `command` to the QEMU monitor listening on `socket` ([`RunOptions::monitor_socket`]).
pub fn monitor_command(socket: &std::path::Path, command: &str) {
    use std::io::Write;
    let mut monitor = std::os::unix::net::UnixStream::connect(socket).expect("QEMU's monitor");
    writeln!(monitor, "{command}").expect("monitor accepts a command");
    monitor.flush().unwrap();
    // Give the monitor a moment to read before the socket closes.
    std::thread::sleep(Duration::from_millis(200));
}

/// One app's row of kernel-lite's network table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkRow {
    pub frames_in: u64,
    pub kib_in: u64,
    pub frames_out: u64,
    pub kib_out: u64,
    pub dropped_full: u64,
    pub dropped_spoofed: u64,
    pub dropped_bad: u64,
}

/// `app`'s row in the last network table kernel-lite printed (at the end, or on an NMI);
/// panics if there is none.
pub fn network_row(serial: &str, app: &str) -> NetworkRow {
    let table_start = serial
        .rfind("\nnet app ")
        .expect("kernel-lite printed a network table");
    for line in serial[table_start + 1..].lines().skip(1) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"kernel-lite:") {
            break;
        }
        if words.first() != Some(&app) || words.len() != 8 {
            continue;
        }
        let number = |index: usize| words[index].parse::<u64>().expect("a count");
        return NetworkRow {
            frames_in: number(1),
            kib_in: number(2),
            frames_out: number(3),
            kib_out: number(4),
            dropped_full: number(5),
            dropped_spoofed: number(6),
            dropped_bad: number(7),
        };
    }
    panic!("no network row for app {app:?}");
}

/// An image booted on a tap device in a network namespace of its own (see
/// [`xtask::qemu::TapNamespace`]): the host side of the tap is 10.0.2.2/24 and fec0::2/64, so
/// programs run in the namespace ([`TapImage::run_inside`]) reach the guest's apps directly,
/// IPv6 included, with no user-network forwarding between. Needs CAP_NET_ADMIN (root, as in
/// CI); panics saying so otherwise.
pub struct TapImage {
    qemu: Option<RunningQemu>,
    namespace: xtask::qemu::TapNamespace,
    disk_copy: PathBuf,
}

/// Boots bundle `name` on a tap; returns once the console shows its first line.
pub fn boot_on_tap(name: &str, firmware: Firmware) -> TapImage {
    boot_on_tap_with(name, firmware, &RunOptions::default())
}

/// Like [`boot_on_tap`], with QEMU options (another `-m`, a disk image in `options.disk`;
/// `options.tap` is replaced by the namespace's tap).
pub fn boot_on_tap_with(name: &str, firmware: Firmware, options: &RunOptions) -> TapImage {
    let namespace = xtask::qemu::TapNamespace::create(std::net::Ipv4Addr::new(10, 0, 2, 2), 24)
        .unwrap_or_else(|error| {
            panic!("this test needs a tap in a network namespace (CAP_NET_ADMIN): {error}")
        });
    let ipv6 = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &namespace.namespace,
            "ip",
            "-6",
            "addr",
            "add",
        ])
        .args(["fec0::2/64", "dev", &namespace.tap, "nodad"])
        .status()
        .expect("ip runs");
    assert!(ipv6.success(), "the tap takes an IPv6 address");
    let (_, disk_copy) = private_image(name, firmware);
    let profile = xtask::qemu::Profile::for_firmware(firmware).unwrap();
    let options = RunOptions {
        tap: Some(namespace.network()),
        ..options.clone()
    };
    let command = xtask::qemu::command(&profile, &disk_copy, &options).unwrap();
    let mut qemu = RunningQemu::spawn(namespace.exec(&command)).unwrap();
    assert!(
        qemu.wait_for_serial("\n", BOOT_TIMEOUT).is_some(),
        "QEMU did not start in the namespace:\n{}",
        qemu.serial()
    );
    TapImage {
        qemu: Some(qemu),
        namespace,
        disk_copy,
    }
}

impl TapImage {
    /// Waits until `needle` appears on the serial console; panics (showing it) if QEMU ends
    /// or `timeout` passes first.
    pub fn wait_for_serial(&mut self, needle: &str, timeout: Duration) {
        let qemu = self.qemu.as_mut().expect("QEMU runs");
        if qemu.wait_for_serial(needle, timeout).is_none() {
            panic!(
                "{needle:?} did not appear within {timeout:?}:\n{}",
                qemu.serial()
            );
        }
    }

    /// Runs `program` with `args` inside the namespace and returns its standard output;
    /// panics if it fails.
    pub fn run_inside(&self, program: &str, args: &[&str]) -> String {
        let mut command = std::process::Command::new(program);
        command.args(args);
        let output = self
            .namespace
            .exec(&command)
            .output()
            .expect("the program runs");
        assert!(
            output.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Kills QEMU and returns what it produced.
    pub fn stop(mut self) -> RunOutput {
        let output = self.qemu.take().expect("collected once").stop();
        show(&output);
        output
    }
}

impl Drop for TapImage {
    fn drop(&mut self) {
        // QEMU first (it holds the tap and the image), then the files; the namespace goes
        // when its own value drops, after this.
        self.qemu = None;
        let _ = std::fs::remove_file(&self.disk_copy);
    }
}

/// Makes a new empty disk image for bundle `bundle` at `folder/BUNDLE.img` (replacing one there)
/// and returns its path, for [`RunOptions::disk`]; panics if the bundle has no app with
/// `[app.disk]`. The file is the caller's: no helper removes it, so boots on it one after
/// another see what the earlier ones wrote (see [`TestDisk`] for a folder of the test's own).
pub fn fresh_disk_for(bundle: &str, folder: &Path) -> PathBuf {
    let manifest = xtask::bundle::load(&xtask::bundle::find(bundle).unwrap()).unwrap();
    let path = folder.join(format!("{bundle}.img"));
    DiskImage::prepare(&manifest, &path, true)
        .unwrap_or_else(|error| panic!("making a disk image for bundle {bundle:?}: {error:#}"))
        .unwrap_or_else(|| panic!("bundle {bundle:?} has no app with [app.disk]"))
        .path
}

/// A new empty disk image for one test, in a folder of that test's own under
/// `target/test-disks/` (tests run in parallel, and several may boot one bundle), kept across
/// every boot that uses [`TestDisk::options`] and removed when the value drops. A boot killed
/// mid-write ([`NetworkedImage::stop`] kills QEMU with SIGKILL: a power cut for the guest)
/// leaves the file as the host had it; the next boot on it sees what was flushed.
///
/// For example, with a `kv` app that keeps its data on its disk:
///
/// ```no_run
/// use std::time::Duration;
/// use system_tests::{Firmware, TestDisk, boot_networked_with};
///
/// let disk = TestDisk::new("kv", "kv_survives_a_power_cut");
/// let mut image = boot_networked_with("kv", Firmware::Bios, &disk.options());
/// image.wait_for_serial("kv: listening", Duration::from_secs(90));
/// // ... write through the forwarded port ...
/// image.stop(); // SIGKILL, no shutdown
/// let mut again = boot_networked_with("kv", Firmware::Bios, &disk.options());
/// again.wait_for_serial("kv: listening", Duration::from_secs(90));
/// // ... read it back ...
/// ```
pub struct TestDisk {
    folder: PathBuf,
    path: PathBuf,
}

impl TestDisk {
    /// A fresh disk image for bundle `bundle` in `target/test-disks/PID-TEST/`; panics if the
    /// bundle has no app with `[app.disk]`.
    pub fn new(bundle: &str, test: &str) -> TestDisk {
        let folder = xtask::target_dir()
            .join("test-disks")
            .join(format!("{}-{test}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        std::fs::create_dir_all(&folder).unwrap();
        let path = fresh_disk_for(bundle, &folder);
        TestDisk { folder, path }
    }

    /// The disk image's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// QEMU options that attach the disk image (the rest default); add others with
    /// `RunOptions { memory: ..., ..disk.options() }`.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            disk: Some(self.path.clone()),
            ..RunOptions::default()
        }
    }
}

impl Drop for TestDisk {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}
