//! Builds the two ELF images with cargo and packs a bundle into a boot bundle (the ramdisk).

use crate::bundle::Manifest;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The target both images are built for.
pub const TARGET: &str = "x86_64-unknown-none";

/// Builds share cargo's output paths (the user image's features change per bundle), so one
/// build-and-copy runs at a time in a process.
static BUILD_LOCK: Mutex<()> = Mutex::new(());

fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(crate::workspace_root());
    // A build started from inside `cargo test` or `cargo run` must not inherit the host
    // build's flags meant for the host crates.
    command
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

fn build_for_target(package: &str, features: &[&str]) -> anyhow::Result<PathBuf> {
    let mut command = cargo();
    command.args([
        "build",
        "--quiet",
        "--release",
        "--target",
        TARGET,
        "--package",
        package,
    ]);
    if !features.is_empty() {
        command.args(["--features", &features.join(",")]);
    }
    let status = command
        .status()
        .with_context(|| format!("running cargo to build {package}"))?;
    if !status.success() {
        bail!("building {package} failed ({status})");
    }
    Ok(crate::target_dir()
        .join(TARGET)
        .join("release")
        .join(package))
}

/// `llvm-objcopy` from the toolchain's `llvm-tools-preview` component.
fn llvm_objcopy() -> anyhow::Result<PathBuf> {
    llvm_tool("llvm-objcopy")
}

/// A tool of the toolchain's `llvm-tools-preview` component (`llvm-objcopy`, `llvm-readobj`).
pub fn llvm_tool(name: &str) -> anyhow::Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let output = Command::new(rustc)
        .current_dir(crate::workspace_root())
        .args(["--print", "sysroot"])
        .output()
        .context("asking rustc for its sysroot")?;
    let sysroot = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    let host = "x86_64-unknown-linux-gnu";
    let tool = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin")
        .join(name);
    if !tool.is_file() {
        bail!(
            "{} is missing: the toolchain needs the llvm-tools-preview component (rust-toolchain.toml lists it)",
            tool.display()
        );
    }
    Ok(tool)
}

/// Copies `from` to `to` without debug information: the boot images carry only what runs.
fn copy_stripped(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new(llvm_objcopy()?)
        .arg("--strip-debug")
        .arg(from)
        .arg(to)
        .status()
        .context("running llvm-objcopy")?;
    if !status.success() {
        bail!(
            "llvm-objcopy --strip-debug {} failed ({status})",
            from.display()
        );
    }
    Ok(())
}

/// The artifacts of one bundle, copied out of cargo's folders.
#[derive(Debug, Clone)]
pub struct BuiltBundle {
    /// kernel-lite as it goes into the images (no debug information).
    pub kernel: PathBuf,
    /// kernel-lite with its debug information, for GDB.
    pub kernel_debug: PathBuf,
    pub user_image: PathBuf,
    /// The boot bundle: app records + user image, for the ramdisk.
    pub boot_bundle: PathBuf,
    pub folder: PathBuf,
}

/// Builds kernel-lite and a user image with the manifest's programs, and writes the boot bundle
/// under `out` (`target/images/NAME` by default).
pub fn build_bundle(manifest: &Manifest, out: &Path) -> anyhow::Result<BuiltBundle> {
    let _guard = BUILD_LOCK
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let kernel_built = build_for_target("kernel-lite", &[])?;
    let image_built = build_for_target("user-image", &crate::bundle::features(manifest))?;
    let kernel = out.join("kernel-lite.elf");
    let kernel_debug = out.join("kernel-lite.debug.elf");
    let user_image = out.join("user-image.elf");
    std::fs::copy(&kernel_built, &kernel_debug)
        .with_context(|| format!("copying {}", kernel_built.display()))?;
    copy_stripped(&kernel_built, &kernel)?;
    copy_stripped(&image_built, &user_image)?;
    let elf = std::fs::read(&user_image)?;
    let specs: Vec<_> = manifest.apps.iter().map(|app| app.spec()).collect();
    let bytes = lite_abi::bundle::encode(&specs, &elf)
        .map_err(|error| anyhow::anyhow!("packing bundle {}: {error}", manifest.name))?;
    let boot_bundle = out.join("bundle.bin");
    std::fs::write(&boot_bundle, bytes)?;
    Ok(BuiltBundle {
        kernel,
        kernel_debug,
        user_image,
        boot_bundle,
        folder: out.to_path_buf(),
    })
}
