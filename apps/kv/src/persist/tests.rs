//! Recovery and crashes: a workload cut by a power cut after every single disk operation
//! (compactions included), with the unsynced tails dropped, kept, kept in part or garbled,
//! always recovers to a state that holds every acknowledged batch; expiry stays absolute
//! across restarts; every command's effect is replayed; damage is refused by name (or
//! salvaged when asked); a full disk at start refuses writes and serves reads.

use super::durable_log::{corrupt_log_name, log_name, snapshot_name};
use super::memory_storage::{MemoryStorage, PowerCut};
use super::record::{FILE_HEADER_BYTES, LogCorruption, SnapshotError};
use super::*;
use crate::commit::Step;
use crate::resp::Reply;
use crate::test_support::{Keyspace, Node, eager_compaction, encoded, live_keyspace};
use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

const START_MS: u64 = 1_700_000_000_000;

/// Batches of commands, each batch sent by three clients and committed together. Covers
/// every write command, expiries set and cleared, and enough bytes to compact several times
/// under [`eager_compaction`].
fn workload() -> Vec<Vec<String>> {
    let mut batches = Vec::new();
    for round in 0..6 {
        batches.push(vec![
            format!("SET key{round} value{round}"),
            String::from("INCR counter"),
            format!("MSET a{round} {round} b{round} {round}"),
        ]);
        batches.push(vec![
            format!("SET ttl{round} short PX 30"),
            format!("SET long{round} kept EX 1000"),
            format!("EXPIRE key{round} 500"),
        ]);
        batches.push(vec![
            format!("DEL a{round}"),
            format!("PERSIST key{round}"),
            String::from("INCRBY counter 10"),
        ]);
        if round == 3 {
            batches.push(vec![
                String::from("FLUSHDB"),
                String::from("SET after-flush yes"),
                String::from("GET counter"),
            ]);
        }
    }
    batches
}

/// What one run of the workload saw.
struct Run {
    /// The keyspace after each batch (index 0: before any).
    states: Vec<Keyspace>,
    /// How many batches were acknowledged (a prefix: after a failure, none are).
    acknowledged: usize,
    last_ms: u64,
}

/// Runs the workload against `storage`, one batch per 10 ms, the keyspaces compared at
/// `compare_ms`.
fn run_workload(storage: &MemoryStorage, compare_ms: u64) -> Run {
    let mut now = START_MS;
    let mut node = Node::start(storage.clone(), eager_compaction(), now).expect("recovery");
    let clients: Vec<usize> = (0..3).map(|_| node.connect()).collect();
    let mut run = Run {
        states: vec![node.keyspace(compare_ms)],
        acknowledged: 0,
        last_ms: now,
    };
    let mut all_acknowledged = true;
    for batch in workload() {
        now += 10;
        let tickets: Vec<_> = batch
            .iter()
            .zip(&clients)
            .map(
                |(command, &client)| match node.send(client, &format!("{command}\r\n"), now) {
                    Step::Write { wait_for } => wait_for,
                    other => panic!("{other:?}"),
                },
            )
            .collect();
        node.flush(now);
        // A write is acknowledged only if every write of the batch was (they share a sync).
        let acknowledged =
            batch
                .iter()
                .zip(&clients)
                .zip(&tickets)
                .all(|((command, &client), &ticket)| {
                    let reply = node
                        .replies(client, ticket)
                        .expect("an outcome after the flush");
                    command.starts_with("GET") || !reply.starts_with("-")
                });
        all_acknowledged &= acknowledged;
        if all_acknowledged {
            run.acknowledged += 1;
        }
        run.states.push(node.keyspace(compare_ms));
    }
    run.last_ms = now;
    run
}

fn recovered_keyspace(storage: MemoryStorage, now_ms: u64) -> Keyspace {
    let node = Node::start(storage, eager_compaction(), now_ms).expect("recovery");
    node.keyspace(now_ms)
}

#[test]
fn an_uninterrupted_workload_survives_a_restart_and_compacts() {
    let storage = MemoryStorage::new();
    let compare_ms = START_MS + 1_000;
    let run = run_workload(&storage, compare_ms);
    assert_eq!(run.acknowledged, workload().len());
    let names = storage.names();
    assert_eq!(names.len(), 2, "one snapshot and one log remain: {names:?}");
    let generation: u64 = u64::from_str_radix(&names[0][3..19], 16).unwrap();
    assert!(
        generation > 3,
        "compactions happened: generation {generation}"
    );
    let recovered = recovered_keyspace(storage.power_cut(PowerCut::DropUnsynced), compare_ms);
    assert_eq!(&recovered, run.states.last().unwrap());
    // The workload's effects, spelled out: FLUSHDB dropped rounds 0-3's keys, DEL and
    // PERSIST took effect, INCR/INCRBY counted from the flush, the short TTLs expired.
    assert_eq!(
        recovered.get(&b"after-flush"[..]),
        Some(&(b"yes".to_vec(), None))
    );
    assert!(!recovered.contains_key(&b"key0"[..]));
    assert_eq!(
        recovered.get(&b"key5"[..]),
        Some(&(b"value5".to_vec(), None))
    );
    assert!(!recovered.contains_key(&b"a5"[..]));
    assert_eq!(recovered.get(&b"b5"[..]), Some(&(b"5".to_vec(), None)));
    assert_eq!(
        recovered.get(&b"counter"[..]),
        Some(&(b"22".to_vec(), None))
    );
    assert!(!recovered.contains_key(&b"ttl5"[..]));
    assert!(recovered[&b"long5"[..]].1.is_some());
}

#[test]
fn a_power_cut_after_any_disk_operation_keeps_every_acknowledged_batch() {
    let compare_ms = START_MS + 1_000;
    let total = {
        let storage = MemoryStorage::new();
        run_workload(&storage, compare_ms);
        storage.stats().changes()
    };
    assert!(total > 60, "the workload does {total} disk operations");
    let cuts = [
        PowerCut::DropUnsynced,
        PowerCut::KeepUnsynced,
        PowerCut::KeepPrefix(7),
        PowerCut::KeepPrefix(30),
        PowerCut::GarbleStart,
    ];
    for crash_after in 0..=total {
        let storage = MemoryStorage::new();
        storage.crash_after(crash_after);
        let run = run_workload(&storage, compare_ms);
        for cut in cuts {
            let recovered = recovered_keyspace(storage.power_cut(cut), compare_ms);
            let matching = run.states.iter().rposition(|state| *state == recovered);
            assert!(
                matching.is_some_and(|batches| batches >= run.acknowledged),
                "crash after {crash_after} of {total} operations, {cut:?}: recovered {:?} \
                 batches, {} acknowledged",
                matching,
                run.acknowledged
            );
        }
    }
}

#[test]
fn a_crash_at_every_step_of_a_compaction_recovers_the_same_keyspace() {
    let now = START_MS;
    let storage = MemoryStorage::new();
    let mut node = Node::start(storage.clone(), eager_compaction(), now).unwrap();
    for i in 0..20 {
        node.request(&format!("SET k{i} {i} PX {}", 1_000 + i), now);
    }
    node.request("DEL k3", now);
    let expected = node.keyspace(now);
    // One compaction by itself, to count its steps.
    let steps = {
        let probe = storage.power_cut(PowerCut::KeepUnsynced);
        let mut log = DurableLog::open(probe.clone(), eager_compaction(), now)
            .unwrap()
            .log;
        let before = probe.stats().changes();
        log.start_generation(node.engine.store()).unwrap();
        probe.stats().changes() - before
    };
    assert!(steps >= 8, "a compaction is {steps} steps");
    for crash_after in 0..=steps {
        let disk = storage.power_cut(PowerCut::KeepUnsynced);
        let mut log = DurableLog::open(disk.clone(), eager_compaction(), now)
            .unwrap()
            .log;
        disk.crash_after(crash_after);
        let outcome = log.start_generation(node.engine.store());
        // (Removing the old generation's files may fail without failing the compaction.)
        assert!(
            outcome.is_ok() || crash_after < steps,
            "crash after {crash_after}"
        );
        for cut in [
            PowerCut::DropUnsynced,
            PowerCut::KeepUnsynced,
            PowerCut::GarbleStart,
        ] {
            assert_eq!(
                recovered_keyspace(disk.power_cut(cut), now),
                expected,
                "crash after {crash_after} of {steps} steps, {cut:?}"
            );
        }
    }
}

#[test]
fn expiry_is_absolute_across_restarts() {
    let storage = MemoryStorage::new();
    let mut node = Node::start(storage.clone(), PersistConfig::default(), START_MS).unwrap();
    assert_eq!(node.request("SET k v PX 10000", START_MS), "+OK\r\n");
    assert_eq!(node.request("SET gone v PX 100", START_MS), "+OK\r\n");
    assert_eq!(node.request("SET kept v EX 1", START_MS), "+OK\r\n");
    assert_eq!(node.request("PERSIST kept", START_MS), ":1\r\n");
    // Restarted 4 s later: the deadline did not move.
    let later = START_MS + 4_000;
    let mut node = Node::start(
        storage.power_cut(PowerCut::DropUnsynced),
        PersistConfig::default(),
        later,
    )
    .unwrap();
    assert_eq!(node.report.expired_dropped, 1);
    assert_eq!(node.request("PTTL k", later), ":6000\r\n");
    assert_eq!(node.request("TTL kept", later), ":-1\r\n");
    assert_eq!(node.request("EXISTS gone", later), ":0\r\n");
    // Restarted after the deadline: not revived.
    let much_later = START_MS + 20_000;
    let mut node = Node::start(
        node.storage.power_cut(PowerCut::DropUnsynced),
        PersistConfig::default(),
        much_later,
    )
    .unwrap();
    assert_eq!(node.report.expired_dropped, 1);
    assert_eq!(node.request("GET k", much_later), "$-1\r\n");
    assert_eq!(node.request("GET kept", much_later), "$1\r\nv\r\n");
}

#[test]
fn every_write_command_is_replayed_with_its_semantics() {
    let storage = MemoryStorage::new();
    let now = START_MS;
    let mut node = Node::start(storage.clone(), PersistConfig::default(), now).unwrap();
    for command in [
        "SET gone 1",
        "FLUSHDB",
        "MSET a 1 b 2 c 3",
        "DEL b",
        "INCR a",
        "INCRBY a 40",
        "DECR c",
        "DECRBY c 5",
        "SET e x EX 100",
        "EXPIRE c 50",
        "PEXPIRE e 7000 LT",
        "SET k v",
        "SET k w KEEPTTL",
        "SET p 1 PX 5000",
        "PERSIST p",
        "SET t old EX 9",
        "SET t new KEEPTTL GET",
        "EXPIRE a -1",
    ] {
        node.request(command, now);
    }
    let expected = node.keyspace(now);
    let restarted = Node::start(
        storage.power_cut(PowerCut::DropUnsynced),
        PersistConfig::default(),
        now,
    )
    .unwrap();
    assert_eq!(restarted.keyspace(now), expected);
    let text = |node: &mut Node, command: &str| node.request(command, now);
    let mut restarted = restarted;
    assert_eq!(
        text(&mut restarted, "MGET a b c gone k"),
        "*5\r\n$-1\r\n$-1\r\n$2\r\n-3\r\n$-1\r\n$1\r\nw\r\n"
    );
    assert_eq!(text(&mut restarted, "PTTL c"), ":50000\r\n");
    assert_eq!(text(&mut restarted, "PTTL e"), ":7000\r\n");
    assert_eq!(text(&mut restarted, "TTL p"), ":-1\r\n");
    assert_eq!(text(&mut restarted, "GET t"), "$3\r\nnew\r\n");
    assert_eq!(text(&mut restarted, "TTL t"), ":9\r\n");
}

#[test]
fn a_torn_final_append_is_dropped_silently_and_never_appended_after() {
    let storage = MemoryStorage::new();
    let now = START_MS;
    let mut node = Node::start(storage.clone(), PersistConfig::default(), now).unwrap();
    node.request("SET a 1", now);
    // The next batch's sync never happens: its frame is appended, then the power goes.
    storage.set_fail_syncs(true);
    assert!(node.request("SET b 2", now).starts_with("-MISCONF"));
    let disk = storage.power_cut(PowerCut::KeepPrefix(10));
    let mut node = Node::start(disk.clone(), PersistConfig::default(), now).unwrap();
    assert!(node.report.torn_tail_bytes > 0);
    assert_eq!(node.report.log_batches, 1);
    assert_eq!(node.request("MGET a b", now), "*2\r\n$1\r\n1\r\n$-1\r\n");
    // Appends go to a fresh generation; the torn log is gone.
    assert_eq!(node.request("SET c 3", now), "+OK\r\n");
    let generation = node.report.generation.unwrap();
    assert_eq!(
        disk.names(),
        vec![log_name(generation), snapshot_name(generation)]
    );
    let node = Node::start(
        disk.power_cut(PowerCut::DropUnsynced),
        PersistConfig::default(),
        now,
    )
    .unwrap();
    assert_eq!(node.report.torn_tail_bytes, 0);
    assert_eq!(node.keyspace(now).len(), 2);
}

/// A disk whose log holds three batches, and the log's name.
fn disk_with_three_batches() -> (MemoryStorage, String) {
    let storage = MemoryStorage::new();
    let mut node = Node::start(storage.clone(), PersistConfig::default(), START_MS).unwrap();
    for command in ["SET a 1", "SET b 2", "SET c 3"] {
        node.request(command, START_MS);
    }
    (storage, log_name(node.report.generation.unwrap()))
}

#[test]
fn damage_inside_the_log_refuses_to_start_and_leaves_the_files_alone() {
    let (storage, log) = disk_with_three_batches();
    let mut bytes = storage.contents(&log).unwrap();
    // Flip a bit in the first batch's body: acknowledged batches follow it.
    bytes[FILE_HEADER_BYTES + 22] ^= 1;
    storage.put(&log, bytes);
    let names = storage.names();
    let changes = storage.stats().changes();
    let error = Node::start(storage.clone(), PersistConfig::default(), START_MS)
        .err()
        .unwrap();
    assert!(
        matches!(
            error,
            RecoveryError::CorruptLog {
                offset: FILE_HEADER_BYTES,
                error: LogCorruption::BadFrame { .. },
                ..
            }
        ),
        "{error:?}"
    );
    assert!(format!("{error}").contains("damaged at byte 32"), "{error}");
    assert_eq!(storage.names(), names);
    assert_eq!(storage.stats().changes(), changes);
}

#[test]
fn salvaging_a_damaged_log_keeps_the_batches_before_the_damage_and_the_file() {
    let (storage, log) = disk_with_three_batches();
    let mut bytes = storage.contents(&log).unwrap();
    // The batches "SET a 1", "SET b 2", "SET c 3" make frames of one size.
    let second_start = FILE_HEADER_BYTES + (bytes.len() - FILE_HEADER_BYTES) / 3;
    // Damage the second batch; the third is intact after it.
    bytes[second_start + 21] ^= 0x80;
    storage.put(&log, bytes);
    let config = PersistConfig {
        salvage_corrupt_log: true,
        ..PersistConfig::default()
    };
    let node = Node::start(storage.clone(), config, START_MS).unwrap();
    assert!(
        matches!(
            node.report.salvaged,
            Some((offset, LogCorruption::BadFrame { .. })) if offset == second_start
        ),
        "{:?} at {second_start}",
        node.report
    );
    assert_eq!(node.keyspace(START_MS).len(), 1);
    let generation: u64 = u64::from_str_radix(&log[3..19], 16).unwrap();
    assert!(storage.names().contains(&corrupt_log_name(generation)));
}

#[test]
fn a_damaged_snapshot_refuses_to_start() {
    let (storage, log) = disk_with_three_batches();
    let snapshot = log.replace(".log", ".snapshot");
    let mut bytes = storage.contents(&snapshot).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    storage.put(&snapshot, bytes);
    assert!(matches!(
        Node::start(storage, PersistConfig::default(), START_MS)
            .err()
            .unwrap(),
        RecoveryError::CorruptSnapshot {
            error: SnapshotError::BadFrame { .. },
            ..
        }
    ));
}

#[test]
fn a_log_without_its_snapshot_refuses_to_start() {
    let (storage, log) = disk_with_three_batches();
    let without_snapshot = MemoryStorage::new();
    without_snapshot.put(&log, storage.contents(&log).unwrap());
    assert!(matches!(
        Node::start(without_snapshot, PersistConfig::default(), START_MS)
            .err()
            .unwrap(),
        RecoveryError::LogWithoutSnapshot { .. }
    ));
}

#[test]
fn a_full_disk_at_start_serves_reads_refuses_writes_and_recovers_when_space_returns() {
    let (storage, _) = disk_with_three_batches();
    let disk = storage.power_cut(PowerCut::DropUnsynced);
    disk.set_capacity(Some(0));
    let mut node = Node::start(disk.clone(), PersistConfig::default(), START_MS).unwrap();
    assert_eq!(node.report.start_error, Some(StorageError::Full));
    assert_eq!(node.request("GET a", START_MS), "$1\r\n1\r\n");
    let refusal = encoded(Reply::Error(String::from(
        "MISCONF Errors writing to the AOF file: disk full",
    )));
    assert_eq!(node.request("SET d 4", START_MS), refusal);
    disk.set_capacity(None);
    let later = START_MS + crate::commit::RETRY_INTERVAL_MS;
    assert_eq!(node.commit.retry(&mut node.engine, later), Some(Ok(())));
    assert_eq!(node.request("SET d 4", later), "+OK\r\n");
    let restarted = Node::start(
        disk.power_cut(PowerCut::DropUnsynced),
        PersistConfig::default(),
        later,
    )
    .unwrap();
    assert_eq!(
        restarted.keyspace(later),
        live_keyspace(node.engine.store(), later)
    );
}

#[test]
fn recovery_starts_empty_on_an_empty_disk_and_ignores_strangers() {
    let storage = MemoryStorage::new();
    storage.put("notes.txt", b"not ours".to_vec());
    storage.put("kv-new.tmp", b"half a snapshot".to_vec());
    let node = Node::start(storage.clone(), PersistConfig::default(), START_MS).unwrap();
    assert_eq!(node.report.snapshot_generation, None);
    assert_eq!(node.report.generation, Some(1));
    assert!(storage.names().contains(&String::from("notes.txt")));
    assert!(!storage.names().contains(&String::from("kv-new.tmp")));
}
