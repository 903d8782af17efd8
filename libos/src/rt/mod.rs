//! The runtime, in two halves: the bottom is [`AppContext`], one per app, holding the app's
//! instance of every element and found through `fs:0` (`rt/context.rs`); the top is start-up
//! and the table of programs an image carries (`rt/start.rs`).
//!
//! A new element (a network stack, a file system) is one new field of [`AppContext`] and one
//! line of [`AppContext::new`]; start-up and `sys` do not change.

mod context;
mod start;

#[cfg(target_os = "none")]
pub use context::current;
pub use context::{AppContext, HeapUsage};
#[cfg(target_os = "none")]
pub(crate) use context::{log_level, with_console};
#[cfg(target_os = "none")]
pub use start::start;
pub use start::{Program, find_program};
