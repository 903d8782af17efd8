//! The keyspace: string keys to string values, each with an optional expiry time in
//! milliseconds on a clock the caller passes in (`now_ms`; nothing here reads a clock).
//!
//! Every change goes through [`Store::apply`] with a [`Mutation`]: a compact, replayable record
//! of what changed, with expiry times made absolute. Replaying the mutations of a run in order
//! on an empty store rebuilds its keyspace; that is the hook for a write-ahead log. Keys that
//! expire are not logged: their absolute deadline is in the log, so a replay drops them too.
//!
//! Expired keys are removed lazily when a lookup finds them ([`Store::get`]) and actively by
//! [`Store::expire_step`], which the server calls periodically and which sweeps a bounded
//! number of entries per call, resuming where it stopped.
//!
//! Keys are kept in a `BTreeMap` ordered by a 64-bit FNV-1a hash of the key, then the key.
//! That order is what makes `SCAN` cursors stable: a cursor is the hash to resume from
//! ([`Store::scan`]), so keys inserted or removed between calls never make a scan skip or
//! repeat a key that stays in the keyspace throughout.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::ops::Bound;

/// Bytes charged for each entry on top of its key and value: the map node, the allocations'
/// headers, the expiry. An estimate, kept simple so it is easy to reason about.
pub const ENTRY_OVERHEAD_BYTES: usize = 64;

/// A change to the keyspace, as a write-ahead log would record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// `key` now holds `value`, expiring at `expires_at_ms` (or never).
    Set {
        key: Vec<u8>,
        value: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// `key` is gone.
    Delete { key: Vec<u8> },
    /// `key` (which exists) now expires at `expires_at_ms` (or never).
    SetExpiry {
        key: Vec<u8>,
        expires_at_ms: Option<u64>,
    },
    /// Every key is gone.
    Flush,
}

/// A key in its map order: by hash, then by bytes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct OrderedKey {
    hash: u64,
    bytes: Vec<u8>,
}

impl OrderedKey {
    fn new(bytes: &[u8]) -> OrderedKey {
        OrderedKey {
            hash: key_hash(bytes),
            bytes: bytes.to_vec(),
        }
    }
}

/// 64-bit FNV-1a: the position of a key in scan order. It need not resist collisions: keys
/// with equal hashes are kept apart by their bytes and are always returned in the same scan
/// batch.
pub fn key_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Vec<u8>,
    pub expires_at_ms: Option<u64>,
}

impl Entry {
    fn is_expired(&self, now_ms: u64) -> bool {
        self.expires_at_ms
            .is_some_and(|deadline| deadline <= now_ms)
    }
}

/// One batch of a [`Store::scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanBatch {
    /// The cursor for the next call; 0 once the scan is complete.
    pub next_cursor: u64,
    pub keys: Vec<Vec<u8>>,
}

/// The keyspace; see the module docs.
#[derive(Debug, Default)]
pub struct Store {
    entries: BTreeMap<OrderedKey, Entry>,
    used_bytes: usize,
    keys_with_expiry: usize,
    /// The hash where the next [`Store::expire_step`] resumes.
    expiry_sweep_from: u64,
}

fn entry_bytes(key: &[u8], value: &[u8]) -> usize {
    key.len() + value.len() + ENTRY_OVERHEAD_BYTES
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// The bytes the keyspace is charged for (see [`ENTRY_OVERHEAD_BYTES`]).
    pub fn used_bytes(&self) -> usize {
        self.used_bytes
    }

    /// How many bytes storing `value` under `key` would add, counting what it replaces.
    pub fn growth_if_set(&self, key: &[u8], value: &[u8]) -> usize {
        let replaced = self
            .entries
            .get(&OrderedKey::new(key))
            .map_or(0, |entry| entry_bytes(key, &entry.value));
        entry_bytes(key, value).saturating_sub(replaced)
    }

    /// Keys stored, including expired ones not yet removed.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Keys with an expiry, including expired ones not yet removed.
    pub fn keys_with_expiry(&self) -> usize {
        self.keys_with_expiry
    }

    /// The live entry under `key`, removing it first if it has expired.
    pub fn get(&mut self, key: &[u8], now_ms: u64) -> Option<&Entry> {
        let ordered = OrderedKey::new(key);
        if self.entries.get(&ordered)?.is_expired(now_ms) {
            self.remove(&ordered);
            return None;
        }
        self.entries.get(&ordered)
    }

    /// Applies a change (see [`Mutation`]).
    pub fn apply(&mut self, mutation: &Mutation) {
        match mutation {
            Mutation::Set {
                key,
                value,
                expires_at_ms,
            } => {
                let ordered = OrderedKey::new(key);
                self.remove(&ordered);
                self.used_bytes += entry_bytes(key, value);
                self.keys_with_expiry += usize::from(expires_at_ms.is_some());
                self.entries.insert(
                    ordered,
                    Entry {
                        value: value.clone(),
                        expires_at_ms: *expires_at_ms,
                    },
                );
            }
            Mutation::Delete { key } => {
                self.remove(&OrderedKey::new(key));
            }
            Mutation::SetExpiry { key, expires_at_ms } => {
                if let Some(entry) = self.entries.get_mut(&OrderedKey::new(key)) {
                    self.keys_with_expiry -= usize::from(entry.expires_at_ms.is_some());
                    self.keys_with_expiry += usize::from(expires_at_ms.is_some());
                    entry.expires_at_ms = *expires_at_ms;
                }
            }
            Mutation::Flush => {
                self.entries.clear();
                self.used_bytes = 0;
                self.keys_with_expiry = 0;
            }
        }
    }

    fn remove(&mut self, key: &OrderedKey) -> Option<Entry> {
        let entry = self.entries.remove(key)?;
        self.used_bytes -= entry_bytes(&key.bytes, &entry.value);
        self.keys_with_expiry -= usize::from(entry.expires_at_ms.is_some());
        Some(entry)
    }

    /// Removes expired keys, examining at most `max_entries` entries from where the last call
    /// stopped (wrapping around). Returns how many keys it removed.
    pub fn expire_step(&mut self, now_ms: u64, max_entries: usize) -> usize {
        if self.keys_with_expiry == 0 {
            return 0;
        }
        let mut expired = Vec::new();
        let mut last_hash = None;
        for (key, entry) in self
            .entries
            .range(self.sweep_start()..)
            .chain(self.entries.range(..self.sweep_start()))
            .take(max_entries)
        {
            last_hash = Some(key.hash);
            if entry.is_expired(now_ms) {
                expired.push(key.clone());
            }
        }
        self.expiry_sweep_from = last_hash.map_or(0, |hash| hash.wrapping_add(1));
        for key in &expired {
            self.remove(key);
        }
        expired.len()
    }

    fn sweep_start(&self) -> OrderedKey {
        OrderedKey {
            hash: self.expiry_sweep_from,
            bytes: Vec::new(),
        }
    }

    /// Live keys in scan order, starting at `cursor` (0 to start), at least `count` entries
    /// examined unless the keyspace ends first, and more while they share the last one's hash.
    /// Only keys for which `keep` is true are returned.
    pub fn scan(
        &self,
        cursor: u64,
        count: usize,
        now_ms: u64,
        mut keep: impl FnMut(&[u8]) -> bool,
    ) -> ScanBatch {
        let start = OrderedKey {
            hash: cursor,
            bytes: Vec::new(),
        };
        let mut keys = Vec::new();
        let mut last_hash = None;
        for (examined, (key, entry)) in self
            .entries
            .range((Bound::Included(start), Bound::Unbounded))
            .enumerate()
        {
            if examined >= count && last_hash != Some(key.hash) {
                return ScanBatch {
                    // Nonzero: it is the hash of a key after the last one returned.
                    next_cursor: key.hash.max(1),
                    keys,
                };
            }
            last_hash = Some(key.hash);
            if !entry.is_expired(now_ms) && keep(&key.bytes) {
                keys.push(key.bytes.clone());
            }
        }
        ScanBatch {
            next_cursor: 0,
            keys,
        }
    }

    /// Every entry, expired or not, in scan order (what a snapshot writes).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.entries
            .iter()
            .map(|(key, entry)| (key.bytes.as_slice(), entry))
    }

    /// Every live key, in scan order, for which `keep` is true.
    pub fn keys(&self, now_ms: u64, mut keep: impl FnMut(&[u8]) -> bool) -> Vec<Vec<u8>> {
        self.entries
            .iter()
            .filter(|(key, entry)| !entry.is_expired(now_ms) && keep(&key.bytes))
            .map(|(key, _)| key.bytes.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests;
