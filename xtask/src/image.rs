//! Disk images: BIOS and UEFI raw images (and a qcow2) from kernel-lite plus a boot bundle.

use crate::compile::BuiltBundle;
use anyhow::{Context, bail};
use bootloader::{BiosBoot, BootConfig, UefiBoot};
use std::path::PathBuf;
use std::process::Command;

/// Which firmware an image is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firmware {
    Bios,
    Uefi,
}

fn boot_config() -> BootConfig {
    let mut config = BootConfig::default();
    // kernel-lite owns the serial console; the bootloader stays quiet on it and on the screen.
    config.serial_logging = false;
    config.frame_buffer_logging = false;
    config
}

/// Writes the disk image for `firmware` next to the bundle's other artifacts.
pub fn disk_image(built: &BuiltBundle, firmware: Firmware) -> anyhow::Result<PathBuf> {
    let config = boot_config();
    match firmware {
        Firmware::Bios => {
            let path = built.folder.join("bios.img");
            BiosBoot::new(&built.kernel)
                .set_ramdisk(&built.boot_bundle)
                .set_boot_config(&config)
                .create_disk_image(&path)
                .context("creating the BIOS image")?;
            Ok(path)
        }
        Firmware::Uefi => {
            let path = built.folder.join("uefi.img");
            UefiBoot::new(&built.kernel)
                .set_ramdisk(&built.boot_bundle)
                .set_boot_config(&config)
                .create_disk_image(&path)
                .context("creating the UEFI image")?;
            Ok(path)
        }
    }
}

/// Converts a raw image to qcow2 with `qemu-img` (for cloud VMs and snapshots).
pub fn qcow2(raw: &PathBuf) -> anyhow::Result<PathBuf> {
    let out = raw.with_extension("qcow2");
    let status = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(&out)
        .status()
        .context("running qemu-img (Debian package qemu-utils)")?;
    if !status.success() {
        bail!("qemu-img convert failed ({status})");
    }
    Ok(out)
}
