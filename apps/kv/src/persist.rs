//! Durability: an append-only log of committed batches, snapshots that compact it, and
//! recovery at start, over a small [`Storage`] seam so all of it is host-tested against a
//! model of power cuts.
//!
//! # Files
//!
//! Work happens in *generations* `g` (a counter, 16 hex digits in names):
//! - `kv-<g>.snapshot`: the whole keyspace when generation `g` began;
//! - `kv-<g>.log`: every batch committed since, one checksummed frame per batch
//!   (formats in [`record`]);
//! - `kv-new.tmp`: a snapshot or log header being written; garbage at recovery.
//!
//! Expiry deadlines are stored as absolute unix milliseconds, so a restart neither revives
//! keys that expired while the server was down nor moves anyone's deadline.
//!
//! # Commit
//!
//! A batch (the mutations of every connection since the last commit) is appended to the
//! current log as one frame and the log is synced; only then are the writes in it
//! acknowledged (group commit: one sync for everything that arrived meanwhile, see
//! [`crate::commit`]). If the append or the sync fails, the log takes no more appends (its
//! end may hold part of the frame), the batch's writes are answered with an error, and writes
//! are refused until a new generation starts.
//!
//! # New generation (compaction, or getting past a failed write)
//!
//! With nothing in flight, generation `g + 1` starts from the keyspace in memory:
//! 1. write the snapshot to `kv-new.tmp`, sync it, rename it to `kv-<g+1>.snapshot`;
//! 2. write the log's header to `kv-new.tmp`, sync it, rename it to `kv-<g+1>.log`;
//! 3. remove the files of generations below `g + 1`.
//!
//! A crash before the rename of 1 leaves generation `g` whole (the temporary file is
//! ignored); after it, snapshot `g + 1` holds everything committed, and a missing log `g + 1`
//! means nothing was committed to it; after 2, old files are merely left over. Renames are
//! atomic and durable (the [`Storage`] contract). After a failed step no log is open until a
//! later start succeeds with a fresh number.
//!
//! # Recovery
//!
//! Load the newest snapshot, replay its generation's log, drop keys whose deadline has
//! passed, then start a new generation (so a torn tail is never appended after). In the log:
//! - a final frame that is incomplete or fails its checksums with no good frame after it is
//!   an append the power cut interrupted: it was never acknowledged, and is dropped silently;
//! - anything else wrong ([`record::LogEnd::Corrupt`]: a bad frame with good frames after
//!   it, good checksums on undecodable records, frames out of sequence) means acknowledged
//!   batches may lie beyond the damage. Recovery refuses to start ([`RecoveryError`],
//!   files untouched), as Redis does with a damaged AOF, unless
//!   [`PersistConfig::salvage_corrupt_log`] says to keep the batches before the damage and
//!   set the file aside.
//!
//! A damaged newest snapshot also refuses to start: the older logs it replaced are gone.

pub mod durable_log;
#[cfg(target_os = "none")]
pub mod libos_storage;
#[cfg(test)]
pub mod memory_storage;
pub mod record;
pub mod storage;

pub use durable_log::{DurableLog, PersistConfig, Recovered, RecoveryError, RecoveryReport};
pub use storage::{NoDisk, Storage, StorageError};

/// Whether acknowledged writes survive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The keyspace lives in memory only (an app without a disk, or the benchmark's
    /// no-durability mode): writes are acknowledged at once.
    InMemory,
    /// A write is acknowledged once the batch holding it is synced to the log.
    GroupCommit,
}

#[cfg(test)]
mod tests;
