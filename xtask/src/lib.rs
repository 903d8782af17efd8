//! The xtask: builds kernel-lite and the user image, packs bundles into boot images, boots them
//! in QEMU, runs the tests and the benchmarks. The test crate (`tests/`) uses this library to
//! boot images too, so the way tests boot is the way `cargo xtask run` boots.

pub mod bench;
pub mod bundle;
pub mod compile;
pub mod disk;
pub mod host_packages;
pub mod image;
pub mod programs;
pub mod qemu;
pub mod test;
mod tidy;

use std::path::PathBuf;

/// The workspace root (the folder above `xtask/`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Cargo's target folder for this workspace.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds everything a bundle needs and writes its disk image for `firmware`, under
/// `target/images/NAME/`. Returns the disk image.
pub fn boot_image(
    manifest: &bundle::Manifest,
    firmware: image::Firmware,
) -> anyhow::Result<(compile::BuiltBundle, PathBuf)> {
    let out = target_dir().join("images").join(&manifest.name);
    let built = compile::build_bundle(manifest, &out)?;
    let disk = image::disk_image(&built, firmware)?;
    Ok((built, disk))
}
