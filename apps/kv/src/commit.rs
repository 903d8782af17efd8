//! Group commit: connections hand in the mutations of what they executed and hold the
//! replies until the batch holding them is durable; one committer appends and syncs
//! everything that arrived meanwhile as one batch, with one sync.
//!
//! Sans I/O but for the [`Storage`] calls, so the host tests drive it step by step; the
//! server's tasks are thin loops over it:
//! - a connection calls [`poll_connection`] (execute what it has read, submit the mutations,
//!   learn which [`Ticket`] to wait for), awaits [`GroupCommit::wait`], lets
//!   [`Connection::settle`] turn the write replies into errors if the batch failed, and
//!   writes [`Connection::output`];
//! - the committer awaits [`GroupCommit::next_batch`], yields once so that every connection
//!   already woken adds to the batch, and calls [`GroupCommit::flush`].
//!
//! Tickets are batch numbers: a submission joins the open batch and gets its number. A reply
//! to reads waits for the newest batch holding mutations if it is not yet durable, because
//! those reads may have seen its writes: no client ever sees a write that a crash could take
//! back (what Redis gives with `appendfsync always`). With nothing in flight, reads do not
//! wait. A connection waits for one chunk of replies at a time, so its replies stay in order.
//!
//! When an append or a sync fails, the batch's writes are answered with a `MISCONF` error,
//! the engine refuses writes with the same error (reads go on), and [`GroupCommit::retry`]
//! starts a new generation every [`RETRY_INTERVAL_MS`] until one succeeds. The failed batch
//! stays applied in memory and may still reach the disk with that generation's snapshot:
//! like a timeout, the error means its outcome is unknown, never that it is durable.

use crate::connection::{Connection, Output};
use crate::engine::Engine;
use crate::persist::record::FrameBuilder;
use crate::persist::{Durability, DurableLog, Storage, StorageError};
use crate::store::Mutation;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A batch number: what a connection waits on.
pub type Ticket = u64;

/// How long after a failure the next new generation is tried.
pub const RETRY_INTERVAL_MS: u64 = 1000;

/// Redis's error for writes while persistence is failing.
pub fn misconf_message(error: &StorageError) -> String {
    format!("MISCONF Errors writing to the AOF file: {error}")
}

/// Counters for `INFO` and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CommitStats {
    pub batches_committed: u64,
    pub mutations_committed: u64,
    pub batches_failed: u64,
    /// New generations started after the first (compactions and recoveries from failures).
    pub generations_started: u64,
}

/// The shared committer state; see the module docs.
#[derive(Debug)]
pub struct GroupCommit<S: Storage> {
    /// `None` in memory.
    log: Option<DurableLog<S>>,
    /// The open batch's records.
    pending: FrameBuilder,
    /// The batch new submissions join.
    open_batch: Ticket,
    /// The newest batch given any mutation (0: none yet).
    newest_written: Ticket,
    /// Every batch up to this one has an outcome.
    completed_through: Ticket,
    /// The batches that failed, with why (failures are rare: after one, writes are refused).
    failed_batches: BTreeMap<Ticket, StorageError>,
    /// Set while the log takes no appends; writes are refused meanwhile.
    failure: Option<StorageError>,
    retry_at_ms: u64,
    batch_waiters: Vec<Waker>,
    committer: Option<Waker>,
    stats: CommitStats,
}

impl<S: Storage> GroupCommit<S> {
    /// No disk: writes are acknowledged at once.
    pub fn in_memory() -> Self {
        GroupCommit::new(None)
    }

    fn new(log: Option<DurableLog<S>>) -> Self {
        let failure = log.as_ref().and_then(|log| log.closed_by().cloned());
        GroupCommit {
            log,
            pending: FrameBuilder::new(),
            open_batch: 1,
            newest_written: 0,
            completed_through: 0,
            failed_batches: BTreeMap::new(),
            failure,
            retry_at_ms: 0,
            batch_waiters: Vec::new(),
            committer: None,
            stats: CommitStats::default(),
        }
    }

    /// Writes wait for their batch's sync to `log` (recovered by [`DurableLog::open`]). If
    /// the log could not start its generation, writes are refused until a retry succeeds.
    pub fn on_disk(log: DurableLog<S>) -> Self {
        GroupCommit::new(Some(log))
    }

    pub fn durability(&self) -> Durability {
        match self.log {
            Some(_) => Durability::GroupCommit,
            None => Durability::InMemory,
        }
    }

    pub fn stats(&self) -> CommitStats {
        self.stats
    }

    pub fn log(&self) -> Option<&DurableLog<S>> {
        self.log.as_ref()
    }

    /// Why writes are refused, if they are: the text of the error reply.
    pub fn refusal(&self) -> Option<String> {
        self.failure.as_ref().map(misconf_message)
    }

    /// Hands in the mutations of what a connection just executed (possibly none) and returns
    /// the ticket its replies must wait for, if any (see the module docs).
    pub fn submit(&mut self, mutations: &[Mutation]) -> Option<Ticket> {
        self.log.as_ref()?;
        if mutations.is_empty() {
            return (self.newest_written > self.completed_through).then_some(self.newest_written);
        }
        for mutation in mutations {
            self.pending.push_mutation(mutation);
        }
        self.newest_written = self.open_batch;
        if let Some(committer) = self.committer.take() {
            committer.wake();
        }
        Some(self.open_batch)
    }

    /// The outcome of batch `ticket`, once it has one.
    pub fn outcome(&self, ticket: Ticket) -> Option<Result<(), StorageError>> {
        if ticket > self.completed_through {
            return None;
        }
        Some(match self.failed_batches.get(&ticket) {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        })
    }

    /// Whether the open batch holds anything to commit.
    pub fn has_pending_batch(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Completes once batch `ticket` is durable (`Ok`) or has failed.
    pub fn wait(commit: &RefCell<Self>, ticket: Ticket) -> WaitCommitted<'_, S> {
        WaitCommitted { commit, ticket }
    }

    /// Completes once the open batch holds something to commit (the committer's wait).
    pub fn next_batch(commit: &RefCell<Self>) -> NextBatch<'_, S> {
        NextBatch { commit }
    }

    /// Commits the open batch, if it holds anything: one append and one sync. Then, if the
    /// log has grown enough, starts a new generation from `engine`'s keyspace (which holds
    /// exactly what is committed: the batch just taken was everything submitted). Tells the
    /// engine whether to refuse writes. Returns the batch's outcome.
    pub fn flush(&mut self, engine: &mut Engine, now_ms: u64) -> Option<Result<(), StorageError>> {
        if self.pending.is_empty() {
            return None;
        }
        let batch = self.open_batch;
        self.open_batch += 1;
        let mutations = self.pending.records() as u64;
        let outcome = match (&mut self.log, &self.failure) {
            (_, Some(error)) => Err(error.clone()),
            (None, None) => Ok(()),
            (Some(log), None) => log.append_batch(&mut self.pending),
        };
        self.pending.clear();
        match &outcome {
            Ok(()) => {
                self.stats.batches_committed += 1;
                self.stats.mutations_committed += mutations;
            }
            Err(error) => {
                log::error!("kv: committing a batch of {mutations} writes failed: {error}");
                self.stats.batches_failed += 1;
                self.failed_batches.insert(batch, error.clone());
                self.enter_failure(error.clone(), now_ms);
            }
        }
        self.completed_through = batch;
        for waiter in core::mem::take(&mut self.batch_waiters) {
            waiter.wake();
        }
        if outcome.is_ok()
            && let Some(log) = &mut self.log
            && log.needs_compaction()
        {
            match log.start_generation(engine.store()) {
                Ok(()) => self.stats.generations_started += 1,
                Err(error) => {
                    log::error!("kv: compacting the log failed: {error}");
                    self.enter_failure(error, now_ms);
                }
            }
        }
        engine.refuse_writes(self.refusal());
        Some(outcome)
    }

    fn enter_failure(&mut self, error: StorageError, now_ms: u64) {
        if self.failure.is_none() {
            log::error!("kv: refusing writes until the disk takes a new generation: {error}");
        }
        self.failure = Some(error);
        self.retry_at_ms = now_ms.saturating_add(RETRY_INTERVAL_MS);
    }

    /// While writes are refused, tries (at most every [`RETRY_INTERVAL_MS`]) to start a new
    /// generation from `engine`'s keyspace; on success writes are taken again. Call it
    /// periodically, with no batch in flight. Returns the attempt's outcome, if it made one.
    pub fn retry(&mut self, engine: &mut Engine, now_ms: u64) -> Option<Result<(), StorageError>> {
        let log = self.log.as_mut()?;
        if self.failure.is_none() || now_ms < self.retry_at_ms || !self.pending.is_empty() {
            return None;
        }
        let outcome = log.start_generation(engine.store());
        match &outcome {
            Ok(()) => {
                log::info!("kv: the disk takes writes again");
                self.failure = None;
                self.stats.generations_started += 1;
            }
            Err(error) => self.enter_failure(error.clone(), now_ms),
        }
        engine.refuse_writes(self.refusal());
        Some(outcome)
    }
}

/// The future of [`GroupCommit::wait`].
#[derive(Debug)]
pub struct WaitCommitted<'a, S: Storage> {
    commit: &'a RefCell<GroupCommit<S>>,
    ticket: Ticket,
}

impl<S: Storage> Future for WaitCommitted<'_, S> {
    type Output = Result<(), StorageError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut commit = self.commit.borrow_mut();
        match commit.outcome(self.ticket) {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                commit.batch_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The future of [`GroupCommit::next_batch`].
#[derive(Debug)]
pub struct NextBatch<'a, S: Storage> {
    commit: &'a RefCell<GroupCommit<S>>,
}

impl<S: Storage> Future for NextBatch<'_, S> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut commit = self.commit.borrow_mut();
        if commit.has_pending_batch() {
            Poll::Ready(())
        } else {
            commit.committer = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// What a connection's task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Wait for this ticket (if any), settle, then write [`Connection::output`].
    Write {
        wait_for: Option<Ticket>,
    },
    NeedInput,
    Close,
}

/// Executes what `connection` has buffered (see [`Connection::poll_output`]) and submits
/// the mutations to `commit`.
pub fn poll_connection<S: Storage>(
    connection: &mut Connection,
    engine: &mut Engine,
    commit: &mut GroupCommit<S>,
    now_ms: u64,
) -> Step {
    let step = match connection.poll_output(engine, now_ms) {
        Output::Write(_) => Step::Write { wait_for: None },
        Output::NeedInput => Step::NeedInput,
        Output::Close => Step::Close,
    };
    // Only executed requests make mutations, and they always make output; submitting
    // unconditionally still means none could ever be dropped.
    let wait_for = commit.submit(&engine.take_mutations());
    match step {
        Step::Write { .. } => Step::Write { wait_for },
        other => other,
    }
}
#[cfg(test)]
mod tests;
