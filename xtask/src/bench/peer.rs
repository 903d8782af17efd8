//! The peer every benchmark is compared with: a Linux guest built from Debian packages only —
//! the `linux-image-cloud-amd64` kernel, `busybox-static` as its whole userland, and a tiny
//! static program for the system-call benchmark — booted by QEMU with the same machine flags as
//! our images. Built once and cached under `target/peer/`.

use super::cpio::{self, Entry};
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Bump when the peer's contents change, so a cached one is rebuilt.
const PEER_VERSION: &str = "1";

/// The line the guest prints once its init runs: "ready".
pub const READY_LINE: &str = "LINUX-PEER READY";

/// A built peer: its kernel and its initramfs.
#[derive(Debug, Clone)]
pub struct Peer {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// The Debian kernel package it came from.
    pub kernel_package: String,
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("running {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The concrete kernel package `linux-image-cloud-amd64` depends on.
fn kernel_package() -> anyhow::Result<String> {
    let find = || -> Option<String> {
        let out = Command::new("apt-cache")
            .args(["depends", "linux-image-cloud-amd64"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|line| line.trim().strip_prefix("Depends: "))
            .filter(|name| name.starts_with("linux-image-"))
            .map(str::to_owned)
    };
    if let Some(name) = find() {
        return Ok(name);
    }
    // A fresh machine may not have read its package lists yet.
    let _ = Command::new("apt-get").args(["update", "-qq"]).status();
    find().context(
        "the Debian package linux-image-cloud-amd64 was not found: the Linux peer needs Debian's \
         package lists (run `apt-get update`)",
    )
}

fn download(packages: &[&str], folder: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(folder)?;
    run(
        Command::new("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(folder),
        &format!("apt-get download {}", packages.join(" ")),
    )
    .with_context(|| {
        format!(
            "a Debian package for the Linux peer is missing: {}",
            packages.join(", ")
        )
    })?;
    Ok(())
}

fn extract_all(debs: &Path, into: &Path) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(debs)? {
        let deb = entry?.path();
        if deb.extension().is_some_and(|ext| ext == "deb") {
            run(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(into),
                "dpkg-deb -x",
            )?;
        }
    }
    Ok(())
}

fn compile_syscall_bench(out: &Path) -> anyhow::Result<()> {
    let source = crate::workspace_root().join("xtask/peer/syscall_bench.c");
    run(
        Command::new("gcc")
            .args([
                "-O2",
                "-static",
                "-nostdlib",
                "-fno-stack-protector",
                "-fno-builtin",
                "-fno-pie",
                "-no-pie",
                "-o",
            ])
            .arg(out)
            .arg(&source),
        "gcc (the Linux peer's syscall benchmark)",
    )?;
    Ok(())
}

/// The guest's `/init`: announce readiness, run the benchmark named on the kernel command line
/// (`libos.bench=calls`), power off.
const INIT: &str = "#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
echo LINUX-PEER READY
case \"$(/bin/busybox cat /proc/cmdline)\" in
  *libos.bench=calls*) /bin/syscall-bench ;;
esac
/bin/busybox poweroff -f
";

/// Builds the peer (or finds it cached).
pub fn build() -> anyhow::Result<Peer> {
    let folder = crate::target_dir().join("peer");
    let stamp = folder.join("stamp");
    let kernel = folder.join("vmlinuz");
    let initramfs = folder.join("initramfs.cpio");
    if let Ok(text) = std::fs::read_to_string(&stamp)
        && let Some(package) = text.strip_prefix(&format!("{PEER_VERSION} "))
        && kernel.is_file()
        && initramfs.is_file()
    {
        return Ok(Peer {
            kernel,
            initramfs,
            kernel_package: package.trim().to_owned(),
        });
    }
    eprintln!(
        "xtask: building the Linux peer from Debian packages under {}",
        folder.display()
    );
    let _ = std::fs::remove_dir_all(&folder);
    let package = kernel_package()?;
    let debs = folder.join("debs");
    download(&[&package, "busybox-static"], &debs)?;
    let root = folder.join("extract");
    extract_all(&debs, &root)?;
    let vmlinuz = std::fs::read_dir(root.join("boot"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("vmlinuz-"))
        })
        .context("the kernel package holds no /boot/vmlinuz-*")?;
    std::fs::copy(&vmlinuz, &kernel)?;
    let busybox =
        std::fs::read(root.join("bin/busybox")).context("busybox-static holds no /bin/busybox")?;
    let bench_binary = folder.join("syscall-bench");
    compile_syscall_bench(&bench_binary)?;
    let bench = std::fs::read(&bench_binary)?;
    let archive = cpio::archive(&[
        Entry::Directory { path: "bin" },
        Entry::Directory { path: "dev" },
        Entry::Directory { path: "proc" },
        Entry::CharDevice {
            path: "dev/console",
            major: 5,
            minor: 1,
        },
        Entry::File {
            path: "bin/busybox",
            data: &busybox,
            executable: true,
        },
        Entry::File {
            path: "bin/syscall-bench",
            data: &bench,
            executable: true,
        },
        Entry::File {
            path: "init",
            data: INIT.as_bytes(),
            executable: true,
        },
    ]);
    std::fs::write(&initramfs, archive)?;
    std::fs::write(&stamp, format!("{PEER_VERSION} {package}\n"))?;
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&debs);
    Ok(Peer {
        kernel,
        initramfs,
        kernel_package: package,
    })
}
