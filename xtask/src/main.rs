//! `cargo xtask`: build | run | image | test | bench.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use xtask::bundle::{self, Manifest};
use xtask::disk::DiskImage;
use xtask::image::{self, Firmware};
use xtask::qemu::{self, Profile, RunOptions, UserNetwork};

#[derive(Parser)]
#[command(about = "Build, boot, test and benchmark the library OS")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(clap::Args, Clone)]
struct BundleChoice {
    /// The bundle to build: a name under apps/bundles or tests/bundles.
    #[arg(long, default_value = "default", conflicts_with = "manifest")]
    bundle: String,
    /// A bundle manifest file anywhere.
    #[arg(long)]
    manifest: Option<PathBuf>,
}

impl BundleChoice {
    fn load(&self) -> anyhow::Result<Manifest> {
        let path = match &self.manifest {
            Some(path) => path.clone(),
            None => bundle::find(&self.bundle)?,
        };
        bundle::load(&path)
    }
}

#[derive(Subcommand)]
enum Task {
    /// Build kernel-lite and the bundle's user image.
    Build {
        #[command(flatten)]
        bundle: BundleChoice,
    },
    /// Build and boot a bundle in QEMU, serial console on this terminal (Ctrl-A X quits).
    Run {
        #[command(flatten)]
        bundle: BundleChoice,
        /// Boot the UEFI image with OVMF instead of the BIOS image.
        #[arg(long)]
        uefi: bool,
        /// Wait for GDB on localhost:1234 before the first instruction.
        #[arg(long)]
        gdb: bool,
        /// Guest memory (QEMU's -m), overriding the machine profile.
        #[arg(long)]
        memory: Option<String>,
        /// Adds N to every forwarded host port (when the manifest's ports are taken here).
        #[arg(long, value_name = "N", default_value_t = 0)]
        port_offset: u16,
        /// Writes every frame through the NIC to FILE (pcap, for Wireshark or tcpdump -r);
        /// needs an app with [app.net].
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Starts the bundle's disk image anew, empty (its data is lost); needed after the
        /// manifest's [app.disk] tables changed. Needs an app with [app.disk].
        #[arg(long)]
        fresh_disk: bool,
        /// Uses FILE as the disk image instead of target/disks/BUNDLE.img (made when missing),
        /// e.g. to run two copies of a bundle. Needs an app with [app.disk].
        #[arg(long, value_name = "FILE")]
        disk: Option<PathBuf>,
    },
    /// Write the BIOS and UEFI raw images and a qcow2 under target/images/BUNDLE/, and for a
    /// bundle with [app.disk] a blank disk image, disk-blank.img (written anew each time).
    Image {
        #[command(flatten)]
        bundle: BundleChoice,
    },
    /// Install what the xtask needs on the host (QEMU, OVMF, qemu-img) with apt-get, keeping
    /// QEMU's packages at one version; does nothing when they are there.
    Setup,
    /// Run the host unit tests and the in-QEMU tests; ends with a pass/fail summary line.
    Test,
    /// Check formatting and run clippy on the host crates and on the x86_64-unknown-none crates.
    Lint,
    /// Run the benchmark suite against a Linux guest, or only the benchmark named; writes
    /// target/bench/{results.json,report.md,report.svg}.
    ///
    /// `http` and `kv` put both guests on a tap device in a network namespace of their own
    /// (needs root or CAP_NET_ADMIN, iproute2 and /dev/net/tun) with the load tools (wrk, ab,
    /// curl; redis-benchmark) inside it; without those, or with LIBOS_BENCH_HTTP_NET=user, they
    /// use QEMU's user network and say so in every row (its forward's listen queue of one then
    /// shows in the tails).
    Bench {
        /// One of: boot, footprint, calls, switch, scale, http, kv.
        name: Option<String>,
        /// Minimal iterations: check that every benchmark runs and reports.
        #[arg(long)]
        smoke: bool,
        /// Instead of running, copy the latest full results to xtask/bench-results/ (what the
        /// README shows).
        #[arg(long, conflicts_with_all = ["name", "smoke"])]
        publish: bool,
    },
}

fn main() {
    if let Err(error) = run(Cli::parse()) {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Task::Build { bundle } => {
            let manifest = bundle.load()?;
            let out = xtask::target_dir().join("images").join(&manifest.name);
            let built = xtask::compile::build_bundle(&manifest, &out)?;
            println!("kernel-lite: {}", built.kernel.display());
            println!("user image:  {}", built.user_image.display());
            println!("boot bundle: {}", built.boot_bundle.display());
            Ok(())
        }
        Task::Run {
            bundle,
            uefi,
            gdb,
            memory,
            port_offset,
            pcap,
            fresh_disk,
            disk,
        } => {
            qemu::ensure_installed()?;
            let manifest = bundle.load()?;
            // Before the (slow) build: a disk that no longer fits the manifest is refused now.
            let disk_path = disk
                .clone()
                .unwrap_or_else(|| xtask::disk::default_path(&manifest));
            let disk_image = DiskImage::prepare(&manifest, &disk_path, fresh_disk)?;
            if disk_image.is_none() && (disk.is_some() || fresh_disk) {
                bail!(
                    "{}: bundle '{}' has no app with [app.disk], so the image has no disk",
                    if fresh_disk { "--fresh-disk" } else { "--disk" },
                    manifest.name
                );
            }
            let network = match (UserNetwork::for_bundle(&manifest), pcap) {
                (None, Some(_)) => bail!(
                    "--pcap: bundle '{}' has no app with [app.net], so the image has no NIC",
                    manifest.name
                ),
                (None, None) => None,
                (Some(mut network), pcap) => {
                    network.offset_host_ports(port_offset)?;
                    network.pcap = pcap;
                    Some(network)
                }
            };
            if let Some(network) = &network {
                // Fail before the (slow) build when a port is taken.
                network.check_host_ports_free()?;
            }
            let firmware = if uefi { Firmware::Uefi } else { Firmware::Bios };
            let (built, boot_disk) = xtask::boot_image(&manifest, firmware)?;
            let profile = Profile::for_firmware(firmware)?;
            if let Some(network) = &network {
                network.check_host_ports_free()?; // again: the build took a while
                for forward in &network.forwards {
                    println!("{forward}");
                }
                if let Some(pcap) = &network.pcap {
                    eprintln!("xtask: frames through the NIC go to {}", pcap.display());
                }
            }
            if let Some(disk_image) = &disk_image {
                eprintln!("xtask: {disk_image}");
            }
            let options = RunOptions {
                interactive: true,
                gdb,
                memory,
                network,
                disk: disk_image.map(|disk_image| disk_image.path),
                ..RunOptions::default()
            };
            let mut command = qemu::command(&profile, &boot_disk, &options)?;
            eprintln!(
                "xtask: booting bundle '{}' ({} app(s)) on {} [{}]; Ctrl-A X quits",
                manifest.name,
                manifest.apps.len(),
                profile.description,
                qemu::accelerator()
            );
            if gdb {
                eprintln!(
                    "xtask: QEMU waits for GDB; attach with:\n  gdb {} -ex 'target remote localhost:1234'",
                    built.kernel_debug.display()
                );
            }
            let status = command.status().context("starting qemu-system-x86_64")?;
            match status
                .code()
                .and_then(lite_abi::exit::ImageOutcome::from_qemu_exit_status)
            {
                Some(lite_abi::exit::ImageOutcome::AllAppsSucceeded) => Ok(()),
                Some(outcome) => bail!("the image ended with {outcome:?}"),
                None if status.success() => Ok(()), // quit from the monitor (Ctrl-A X)
                None => bail!("QEMU exited with {status}"),
            }
        }
        Task::Image { bundle } => {
            qemu::ensure_installed()?;
            let manifest = bundle.load()?;
            let (built, bios) = xtask::boot_image(&manifest, Firmware::Bios)?;
            let uefi = image::disk_image(&built, Firmware::Uefi)?;
            let qcow2 = image::qcow2(&bios)?;
            for path in [bios, uefi, qcow2] {
                let bytes = std::fs::metadata(&path)?.len();
                println!("{} ({} KiB)", path.display(), bytes / 1024);
            }
            // A template, not a run's disk: copy it before attaching it, since the next
            // `cargo xtask image` writes it anew.
            let blank = built.folder.join("disk-blank.img");
            if let Some(disk_image) = DiskImage::prepare(&manifest, &blank, true)? {
                println!(
                    "{} ({} blank, sparse; a data disk to copy and attach as virtio-blk)",
                    disk_image.path.display(),
                    xtask::bundle::human(disk_image.bytes)
                );
            }
            Ok(())
        }
        Task::Setup => {
            qemu::ensure_installed()?;
            println!("xtask: QEMU, OVMF and qemu-img are installed");
            Ok(())
        }
        Task::Test => xtask::test::run(),
        Task::Lint => xtask::test::lint(),
        Task::Bench { publish: true, .. } => xtask::bench::publish(),
        Task::Bench { name, smoke, .. } => {
            xtask::bench::run(name.as_deref(), xtask::bench::Settings::new(smoke)).map(|_| ())
        }
    }
}
