//! libos: the library OS's critical system elements, linked into the apps, running in ring 3.
//!
//! An app uses these with plain function calls: reading the clock, allocating, printing. One copy
//! of this code serves every app of an image, and each app gets its own instance of every
//! element (its heap, its console line buffer, its log level), found through the FS base that
//! kernel-lite loads on every switch — no trap needed. Only the crate-private `sys` module talks
//! to kernel-lite; apps reach the machine only through safe calls (`diag` for benchmarks and
//! tests; `faults`, with the `deliberate-faults` feature, for the containment tests alone).
//!
//! The logic (time conversion, line buffering, program lookup, the executor) is plain Rust that
//! the host compiles and tests; what needs the machine lives in `sys` and is built for
//! `x86_64-unknown-none` only.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]

extern crate alloc;

pub mod console;
#[cfg(target_os = "none")]
pub mod diag;
#[cfg(all(target_os = "none", feature = "deliberate-faults"))]
pub mod faults;
pub mod fs;
pub mod io;
pub mod logger;
pub mod mem;
pub mod net;
#[cfg(target_os = "none")]
pub mod process;
pub mod rt;
#[allow(unsafe_code)]
mod sys;
pub mod task;
#[cfg(target_os = "none")]
pub mod thread;
pub mod time;

pub use rt::Program;
