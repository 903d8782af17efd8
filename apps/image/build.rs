//! Links the user image as a fixed-address executable at `USER_IMAGE_BASE` (0x400000), with its
//! segments split R / RX / RW, so kernel-lite can map it without relocating it.

fn main() {
    println!("cargo:rustc-link-arg-bins=--no-pie");
    println!("cargo:rustc-link-arg-bins=--image-base=0x400000");
    println!("cargo:rustc-link-arg-bins=-zseparate-code");
    println!("cargo:rerun-if-changed=build.rs");
}
