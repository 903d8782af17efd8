//! The durable keyspace on a [`Storage`]: recovery at start, appending committed batches, and
//! starting a new generation (snapshot + fresh log) to compact the log or to get past a
//! failed write. The file-level protocol is in the [`super`] module docs.

use super::record::{
    FILE_HEADER_BYTES, FileHeader, FileKind, FrameBuilder, HeaderError, LogCorruption, LogEnd,
    SnapshotError, scan_log, scan_snapshot,
};
use super::storage::{Storage, StorageError};
use crate::store::Store;
use alloc::format;
use alloc::string::{String, ToString};
use core::fmt;

/// The temporary file a snapshot or a log header is written to before it is renamed.
pub const TEMP_FILE: &str = "kv-new.tmp";

/// The snapshot of `generation`.
pub fn snapshot_name(generation: u64) -> String {
    format!("kv-{generation:016x}.snapshot")
}

/// The log of `generation`.
pub fn log_name(generation: u64) -> String {
    format!("kv-{generation:016x}.log")
}

/// A damaged log kept aside when [`PersistConfig::salvage_corrupt_log`] is on.
pub fn corrupt_log_name(generation: u64) -> String {
    format!("kv-{generation:016x}.log.corrupt")
}

/// What a file name says, if it is one of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileName {
    Snapshot(u64),
    Log(u64),
}

fn parse_name(name: &str) -> Option<FileName> {
    let rest = name.strip_prefix("kv-")?;
    let (generation, kind) = rest.split_once('.')?;
    if generation.len() != 16 {
        return None;
    }
    let generation = u64::from_str_radix(generation, 16).ok()?;
    match kind {
        "snapshot" => Some(FileName::Snapshot(generation)),
        "log" => Some(FileName::Log(generation)),
        _ => None,
    }
}

/// How persistence is tuned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PersistConfig {
    /// A log shorter than this is never compacted.
    pub compact_min_log_bytes: u64,
    /// Compact once the log is this many times larger than the last snapshot, so that the
    /// cost of writing snapshots stays proportional to the bytes logged.
    pub compact_log_to_snapshot_ratio: u64,
    /// Mixed with each generation's number into that generation's salt (see
    /// [`super::record`]); a value clients cannot guess, such as the clock at start.
    pub salt_seed: u64,
    /// On a damaged log, keep the batches before the damage, set the file aside as
    /// `*.log.corrupt` and go on, instead of refusing to start. Off by default: the batches
    /// after the damage were acknowledged, and dropping them is for an operator to choose.
    pub salvage_corrupt_log: bool,
    /// About how many bytes each append of a snapshot carries.
    pub snapshot_frame_bytes: usize,
}

impl Default for PersistConfig {
    fn default() -> PersistConfig {
        PersistConfig {
            compact_min_log_bytes: 4 * 1024 * 1024,
            compact_log_to_snapshot_ratio: 2,
            salt_seed: 0,
            salvage_corrupt_log: false,
            snapshot_frame_bytes: 64 * 1024,
        }
    }
}

/// splitmix64: spreads a generation's number and the seed over a 64-bit salt.
fn salt_for(seed: u64, generation: u64) -> u64 {
    let mut z = seed ^ generation.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Why recovery refused to start. The files are left as they were.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoveryError {
    Storage(StorageError),
    /// The newest snapshot is damaged. Older generations cannot stand in for it: their logs
    /// were removed once it was written.
    CorruptSnapshot {
        generation: u64,
        error: SnapshotError,
    },
    /// A snapshot whose header names another generation than its file name.
    MisnamedFile {
        name: String,
        generation: u64,
    },
    /// The log's header is damaged (it was synced before the log was renamed into place).
    BadLogHeader {
        generation: u64,
        error: HeaderError,
    },
    /// The log is damaged before its end, and salvaging is off.
    CorruptLog {
        generation: u64,
        offset: usize,
        error: LogCorruption,
    },
    /// A log newer than every snapshot: its snapshot, written first, is missing.
    LogWithoutSnapshot {
        generation: u64,
    },
}

impl fmt::Display for RecoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecoveryError::Storage(error) => write!(f, "storage: {error}"),
            RecoveryError::CorruptSnapshot { generation, error } => {
                write!(f, "{} is damaged: {error}", snapshot_name(*generation))
            }
            RecoveryError::MisnamedFile { name, generation } => {
                write!(f, "{name} holds generation {generation}")
            }
            RecoveryError::BadLogHeader { generation, error } => {
                write!(f, "{} has a bad header: {error}", log_name(*generation))
            }
            RecoveryError::CorruptLog {
                generation,
                offset,
                error,
            } => write!(
                f,
                "{} is damaged at byte {offset}: {error}",
                log_name(*generation)
            ),
            RecoveryError::LogWithoutSnapshot { generation } => write!(
                f,
                "{} exists but {} does not",
                log_name(*generation),
                snapshot_name(*generation)
            ),
        }
    }
}

impl From<StorageError> for RecoveryError {
    fn from(error: StorageError) -> RecoveryError {
        RecoveryError::Storage(error)
    }
}

/// What recovery found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The snapshot loaded (its generation), if any.
    pub snapshot_generation: Option<u64>,
    pub snapshot_entries: u64,
    /// Batches and mutations replayed from the log.
    pub log_batches: u64,
    pub log_mutations: u64,
    /// Bytes of an interrupted final append, dropped.
    pub torn_tail_bytes: usize,
    /// Damage salvaged past (only with [`PersistConfig::salvage_corrupt_log`]).
    pub salvaged: Option<(usize, LogCorruption)>,
    /// Keys dropped because their absolute deadline had passed.
    pub expired_dropped: usize,
    /// Keys in the recovered keyspace.
    pub keys: usize,
    /// The generation started for this run, if starting it succeeded.
    pub generation: Option<u64>,
    /// Why starting the new generation failed; the server then refuses writes until a retry
    /// succeeds, but serves the recovered keys.
    pub start_error: Option<StorageError>,
}

/// The log appends go to.
#[derive(Debug)]
struct ActiveLog {
    generation: u64,
    name: String,
    salt: u64,
    next_sequence: u64,
    bytes: u64,
}

/// The durable half of the keyspace: see the module docs.
#[derive(Debug)]
pub struct DurableLog<S: Storage> {
    storage: S,
    config: PersistConfig,
    next_generation: u64,
    /// `None` after a failed append, sync or generation start: the log's end may hold a
    /// partial frame, so nothing more may be appended to it; a new generation must start.
    active: Option<ActiveLog>,
    /// Why no log is open, if none is.
    closed_by: Option<StorageError>,
    snapshot_bytes: u64,
}

/// A recovered keyspace and the log to continue it.
#[derive(Debug)]
pub struct Recovered<S: Storage> {
    pub log: DurableLog<S>,
    pub store: Store,
    pub report: RecoveryReport,
}

impl<S: Storage> DurableLog<S> {
    /// Recovers the keyspace from `storage` (newest snapshot, then its log; keys whose
    /// deadline is before `now_ms` are dropped), then starts a new generation from it. Logs
    /// what it found with `log::info!`.
    pub fn open(
        mut storage: S,
        config: PersistConfig,
        now_ms: u64,
    ) -> Result<Recovered<S>, RecoveryError> {
        let mut report = RecoveryReport::default();
        let mut store = Store::new();
        let names = storage.list()?;
        let parsed = || names.iter().filter_map(|name| parse_name(name));
        let newest_snapshot = parsed()
            .filter_map(|file| match file {
                FileName::Snapshot(generation) => Some(generation),
                FileName::Log(_) => None,
            })
            .max();
        let newest_log = parsed()
            .filter_map(|file| match file {
                FileName::Log(generation) => Some(generation),
                FileName::Snapshot(_) => None,
            })
            .max();
        if let Some(log) = newest_log
            && newest_snapshot.is_none_or(|snapshot| log > snapshot)
        {
            return Err(RecoveryError::LogWithoutSnapshot { generation: log });
        }
        if let Some(generation) = newest_snapshot {
            report.snapshot_generation = Some(generation);
            let name = snapshot_name(generation);
            let bytes = storage.read(&name)?.unwrap_or_default();
            let (header, entries) = scan_snapshot(&bytes, |mutation| store.apply(&mutation))
                .map_err(|error| RecoveryError::CorruptSnapshot { generation, error })?;
            if header.generation != generation {
                return Err(RecoveryError::MisnamedFile {
                    name,
                    generation: header.generation,
                });
            }
            report.snapshot_entries = entries;
            // No log means the crash came between the snapshot's rename and its log's: no
            // batch was committed in that generation.
            if let Some(bytes) = storage.read(&log_name(generation))? {
                Self::replay_log(
                    &mut storage,
                    &config,
                    generation,
                    &bytes,
                    &mut store,
                    &mut report,
                )?;
            }
        }
        report.expired_dropped = store.expire_step(now_ms, usize::MAX);
        report.keys = store.len();
        let mut log = DurableLog {
            storage,
            config,
            next_generation: newest_snapshot.map_or(1, |generation| generation + 1),
            active: None,
            closed_by: None,
            snapshot_bytes: 0,
        };
        match log.start_generation(&store) {
            Ok(()) => report.generation = log.generation(),
            Err(error) => report.start_error = Some(error),
        }
        log_report(&report);
        Ok(Recovered { log, store, report })
    }

    fn replay_log(
        storage: &mut S,
        config: &PersistConfig,
        generation: u64,
        bytes: &[u8],
        store: &mut Store,
        report: &mut RecoveryReport,
    ) -> Result<(), RecoveryError> {
        let scan = scan_log(bytes, |mutation| store.apply(&mutation))
            .map_err(|error| RecoveryError::BadLogHeader { generation, error })?;
        if scan.header.kind != FileKind::Log || scan.header.generation != generation {
            return Err(RecoveryError::MisnamedFile {
                name: log_name(generation),
                generation: scan.header.generation,
            });
        }
        report.log_batches = scan.frames;
        report.log_mutations = scan.mutations;
        match scan.end {
            LogEnd::Clean => {}
            LogEnd::TornTail { bytes, .. } => report.torn_tail_bytes = bytes,
            LogEnd::Corrupt { offset, error } => {
                if !config.salvage_corrupt_log {
                    return Err(RecoveryError::CorruptLog {
                        generation,
                        offset,
                        error,
                    });
                }
                log::error!(
                    "kv: {} is damaged at byte {offset}: {error}; keeping the {} batches before it and setting the file aside as {}",
                    log_name(generation),
                    scan.frames,
                    corrupt_log_name(generation)
                );
                storage.rename(&log_name(generation), &corrupt_log_name(generation))?;
                report.salvaged = Some((offset, error));
            }
        }
        Ok(())
    }

    /// The generation appends go to, if a log is open.
    pub fn generation(&self) -> Option<u64> {
        self.active.as_ref().map(|active| active.generation)
    }

    /// Whether batches can be appended (no failure since the last generation started).
    pub fn is_writable(&self) -> bool {
        self.active.is_some()
    }

    /// Why no batches can be appended, if they cannot.
    pub fn closed_by(&self) -> Option<&StorageError> {
        self.closed_by.as_ref()
    }

    fn close(&mut self, error: StorageError) {
        self.active = None;
        self.closed_by = Some(error);
    }

    /// Bytes in the open log, header included.
    pub fn log_bytes(&self) -> u64 {
        self.active.as_ref().map_or(0, |active| active.bytes)
    }

    /// Appends one batch as one frame and syncs it. On `Ok` the batch is durable. On an
    /// error the log takes no more appends (its end may now hold part of this frame) until
    /// [`DurableLog::start_generation`] succeeds; the batch may or may not survive a crash.
    pub fn append_batch(&mut self, batch: &mut FrameBuilder) -> Result<(), StorageError> {
        let active = self.active.as_mut().ok_or_else(|| {
            StorageError::Failed("the log is closed after a failed write".to_string())
        })?;
        let frame = batch.seal(active.next_sequence, active.salt);
        let frame_bytes = frame.len() as u64;
        let result = self
            .storage
            .append(&active.name, frame)
            .and_then(|()| self.storage.sync(&active.name));
        match &result {
            Ok(()) => {
                active.next_sequence += 1;
                active.bytes += frame_bytes;
            }
            Err(error) => self.close(error.clone()),
        }
        result
    }

    /// Whether the log has grown enough past the snapshot to be worth compacting.
    pub fn needs_compaction(&self) -> bool {
        let threshold = self.config.compact_min_log_bytes.max(
            self.snapshot_bytes
                .saturating_mul(self.config.compact_log_to_snapshot_ratio),
        );
        self.log_bytes() > threshold
    }

    /// Starts a new generation holding `store`, which must be everything committed so far
    /// (the caller has no batch in flight):
    /// 1. the snapshot is written to [`TEMP_FILE`], synced, and renamed to its name;
    /// 2. the new log's header likewise;
    /// 3. every file of an older generation is removed.
    ///
    /// A crash at any point recovers to the same keyspace (see the module docs). On an error
    /// no log is open until a later call succeeds, and that call uses a new generation
    /// number, so it never trips over half-made files.
    pub fn start_generation(&mut self, store: &Store) -> Result<(), StorageError> {
        let result = self.try_start_generation(store);
        if let Err(error) = &result {
            self.close(error.clone());
        }
        result
    }

    fn try_start_generation(&mut self, store: &Store) -> Result<(), StorageError> {
        self.active = None;
        let generation = self.next_generation;
        self.next_generation += 1;
        let salt = salt_for(self.config.salt_seed, generation);
        let snapshot_bytes = self.write_snapshot(store, generation, salt)?;
        let header = FileHeader {
            kind: FileKind::Log,
            generation,
            salt,
        };
        self.storage.remove(TEMP_FILE)?;
        self.storage.append(TEMP_FILE, &header.encode())?;
        self.storage.sync(TEMP_FILE)?;
        self.storage.rename(TEMP_FILE, &log_name(generation))?;
        self.active = Some(ActiveLog {
            generation,
            name: log_name(generation),
            salt,
            next_sequence: 0,
            bytes: FILE_HEADER_BYTES as u64,
        });
        self.closed_by = None;
        self.snapshot_bytes = snapshot_bytes;
        self.remove_older_generations(generation);
        Ok(())
    }

    /// Writes `store` as the snapshot of `generation`; returns its size.
    fn write_snapshot(
        &mut self,
        store: &Store,
        generation: u64,
        salt: u64,
    ) -> Result<u64, StorageError> {
        let header = FileHeader {
            kind: FileKind::Snapshot,
            generation,
            salt,
        };
        self.storage.remove(TEMP_FILE)?;
        self.storage.append(TEMP_FILE, &header.encode())?;
        let mut written = FILE_HEADER_BYTES as u64;
        let mut frame = FrameBuilder::new();
        let mut sequence = 0;
        let mut entries = 0;
        for (key, entry) in store.iter() {
            frame.push_set(key, &entry.value, entry.expires_at_ms);
            entries += 1;
            if frame.frame_len() >= self.config.snapshot_frame_bytes {
                let bytes = frame.seal(sequence, salt);
                written += bytes.len() as u64;
                self.storage.append(TEMP_FILE, bytes)?;
                frame.clear();
                sequence += 1;
            }
        }
        frame.push_snapshot_end(entries);
        let bytes = frame.seal(sequence, salt);
        written += bytes.len() as u64;
        self.storage.append(TEMP_FILE, bytes)?;
        self.storage.sync(TEMP_FILE)?;
        self.storage.rename(TEMP_FILE, &snapshot_name(generation))?;
        Ok(written)
    }

    /// Removes the files the generation `current` supersedes. A failure is only logged: a
    /// leftover old file is ignored by recovery and removed by the next generation.
    fn remove_older_generations(&mut self, current: u64) {
        let names = match self.storage.list() {
            Ok(names) => names,
            Err(error) => {
                log::warn!("kv: cannot list files to remove old generations: {error}");
                return;
            }
        };
        for name in names {
            let older = match parse_name(&name) {
                Some(FileName::Snapshot(generation) | FileName::Log(generation)) => {
                    generation < current
                }
                None => false,
            };
            if older && let Err(error) = self.storage.remove(&name) {
                log::warn!("kv: cannot remove {name}: {error}");
            }
        }
    }

    /// The storage, for tests that look inside.
    pub fn storage(&self) -> &S {
        &self.storage
    }
}

fn log_report(report: &RecoveryReport) {
    match report.snapshot_generation {
        Some(generation) => log::info!(
            "kv: recovered {} keys: snapshot {generation:#x} ({} entries) + {} batches ({} mutations) from its log; {} expired keys dropped; {} bytes of a torn final append dropped",
            report.keys,
            report.snapshot_entries,
            report.log_batches,
            report.log_mutations,
            report.expired_dropped,
            report.torn_tail_bytes
        ),
        None => log::info!("kv: no data on the disk yet: starting empty"),
    }
    match (&report.generation, &report.start_error) {
        (Some(generation), _) => log::info!("kv: writing generation {generation:#x}"),
        (None, Some(error)) => log::error!(
            "kv: cannot start a new generation: {error}; refusing writes until a retry succeeds"
        ),
        (None, None) => {}
    }
}
