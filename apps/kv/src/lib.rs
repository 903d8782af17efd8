//! kv: a Redis-protocol (RESP2) key-value server on libos's sockets.
//!
//! The protocol and the keyspace are sans I/O, so the host tests cover all of it:
//! - [`resp`]: the incremental request parser (limits, inline commands) and the reply encoder;
//! - [`glob`]: Redis's glob patterns for `KEYS` and `SCAN ... MATCH`;
//! - [`store`]: the keyspace with millisecond expiry and the replayable [`store::Mutation`]s;
//! - [`engine`]: the commands, with Redis's replies and error texts;
//! - [`connection`]: one connection's state machine, from bytes read to bytes to write;
//! - [`persist`]: the log, snapshots and recovery over a [`persist::Storage`] seam;
//! - [`commit`]: group commit, holding replies until their batch is synced.
//!
//! `server` (on the machine only) is the async shell: it accepts TCP connections on port 6379,
//! moves bytes between the sockets and the state machines, runs the committer, and runs the
//! active expiry.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod commit;
pub mod connection;
pub mod engine;
pub mod glob;
pub mod persist;
pub mod resp;
pub mod store;

#[cfg(test)]
mod test_support;

#[cfg(target_os = "none")]
mod server;

#[cfg(target_os = "none")]
pub use server::main;
