//! Helpers shared by the persistence and group-commit tests: a server without sockets (an
//! engine, its group commit over a [`MemoryStorage`], and connections fed by hand) and a
//! plain view of a keyspace to compare.

use crate::commit::{GroupCommit, Step, Ticket, poll_connection};
use crate::connection::Connection;
use crate::engine::{Engine, EngineConfig};
use crate::persist::memory_storage::MemoryStorage;
use crate::persist::{DurableLog, PersistConfig, RecoveryError, RecoveryReport, StorageError};
use crate::resp::{ParserLimits, Reply};
use crate::store::Store;
use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

/// A keyspace's live entries at some time: key to (value, deadline).
pub type Keyspace = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// The entries of `store` alive at `now_ms`.
pub fn live_keyspace(store: &Store, now_ms: u64) -> Keyspace {
    store
        .iter()
        .filter(|(_, entry)| entry.expires_at_ms.is_none_or(|deadline| deadline > now_ms))
        .map(|(key, entry)| (key.to_vec(), (entry.value.clone(), entry.expires_at_ms)))
        .collect()
}

/// Persistence tuned to compact often, so small tests cross many generations.
pub fn eager_compaction() -> PersistConfig {
    PersistConfig {
        compact_min_log_bytes: 256,
        compact_log_to_snapshot_ratio: 1,
        salt_seed: 0xfeed,
        salvage_corrupt_log: false,
        snapshot_frame_bytes: 128,
    }
}

/// One server, as `server.rs` wires it, minus the sockets and the tasks.
pub struct Node {
    pub engine: Engine,
    pub commit: GroupCommit<MemoryStorage>,
    pub storage: MemoryStorage,
    pub report: RecoveryReport,
    connections: Vec<Connection>,
}

impl Node {
    /// Recovers from `storage` and serves it.
    pub fn start(
        storage: MemoryStorage,
        config: PersistConfig,
        now_ms: u64,
    ) -> Result<Node, RecoveryError> {
        let recovered = DurableLog::open(storage.clone(), config, now_ms)?;
        let mut engine = Engine::with_store(
            EngineConfig {
                record_mutations: true,
                started_at_ms: now_ms,
                ..EngineConfig::default()
            },
            recovered.store,
        );
        let commit = GroupCommit::on_disk(recovered.log);
        engine.refuse_writes(commit.refusal());
        Ok(Node {
            engine,
            commit,
            storage,
            report: recovered.report,
            connections: Vec::new(),
        })
    }

    /// Opens a connection; returns its number.
    pub fn connect(&mut self) -> usize {
        self.connections
            .push(Connection::new(ParserLimits::default()));
        self.connections.len() - 1
    }

    /// Client `client` sends `input`; the connection executes what it can. Returns what its
    /// task would do next (for a write: the ticket to wait for).
    pub fn send(&mut self, client: usize, input: &str, now_ms: u64) -> Step {
        let connection = &mut self.connections[client];
        connection.receive(input.as_bytes());
        poll_connection(connection, &mut self.engine, &mut self.commit, now_ms)
    }

    /// The committer's turn: commits the open batch.
    pub fn flush(&mut self, now_ms: u64) -> Option<Result<(), StorageError>> {
        self.commit.flush(&mut self.engine, now_ms)
    }

    /// What client `client` may now be sent for its last [`Step::Write`]: `None` while the
    /// batch is not yet durable.
    pub fn replies(&mut self, client: usize, wait_for: Option<Ticket>) -> Option<String> {
        let connection = &mut self.connections[client];
        match wait_for {
            None => {}
            Some(ticket) => connection.settle(self.commit.outcome(ticket)?),
        }
        Some(String::from_utf8_lossy(connection.output()).into_owned())
    }

    /// Runs one request on a fresh connection, commits, and returns the settled reply.
    pub fn request(&mut self, command: &str, now_ms: u64) -> String {
        let client = self.connect();
        let step = self.send(client, &std::format!("{command}\r\n"), now_ms);
        let Step::Write { wait_for } = step else {
            panic!("no reply to {command}: {step:?}");
        };
        self.flush(now_ms);
        self.replies(client, wait_for)
            .expect("the batch has an outcome after a flush")
    }

    pub fn keyspace(&self, now_ms: u64) -> Keyspace {
        live_keyspace(self.engine.store(), now_ms)
    }
}

/// `text` as the RESP reply a client reads.
pub fn encoded(reply: Reply) -> String {
    let mut bytes = Vec::new();
    reply.encode(&mut bytes);
    String::from_utf8(bytes).unwrap()
}
