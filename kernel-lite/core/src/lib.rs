//! kernel-lite's policy, apart from its mechanism: plain `no_std` Rust with no hardware in it,
//! so the host tests it in milliseconds. kernel-lite wraps each piece with what only ring 0 can
//! do (page tables, context switches, the physical-memory window).
//!
//! - [`calendar`]: the real-time clock's date and time as Unix time.
//! - [`frames`]: which physical frames are free, and the promises that make each app's
//!   guaranteed memory its own.
//! - [`schedule`]: which app runs next, when a blocked app wakes (deadline or event, whichever
//!   first), when a running one is preempted, and when an ended one restarts.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod calendar;
pub mod frames;
pub mod schedule;
