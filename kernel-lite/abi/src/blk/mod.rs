//! The storage contract: how one disk is shared between apps by extent ([`table`]), and the
//! request ring between an app and kernel-lite for its extent ([`ring`]).
//!
//! The xtask writes a disk table at the start of the image's disk; kernel-lite checks it and
//! binds each app with an `[app.disk]` to its extent, so an app's requests can only ever reach
//! its own sectors.

pub mod ring;
pub mod table;

/// Bytes of one sector, the unit of every disk address here.
pub const SECTOR_BYTES: u64 = 512;
