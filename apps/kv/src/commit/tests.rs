//! Group commit: replies wait for their batch's sync; many connections' writes share one
//! sync; reads that may have seen an uncommitted write wait for it, other reads do not; a
//! full disk turns exactly the writes' replies into `MISCONF` errors, refuses later writes,
//! keeps serving reads, and takes writes again once a new generation starts; the futures
//! wake their tasks.

use super::*;
use crate::persist::memory_storage::MemoryStorage;
use crate::persist::{NoDisk, PersistConfig};
use crate::test_support::Node;
use alloc::sync::Arc;
use alloc::task::Wake;
use std::format;
use std::sync::atomic::{AtomicUsize, Ordering};

const NOW: u64 = 1_700_000_000_000;

fn node() -> Node {
    Node::start(MemoryStorage::new(), PersistConfig::default(), NOW).unwrap()
}

fn ticket(step: Step) -> Option<Ticket> {
    match step {
        Step::Write { wait_for } => wait_for,
        other => panic!("expected replies, got {other:?}"),
    }
}

const MISCONF_FULL: &str = "-MISCONF Errors writing to the AOF file: disk full\r\n";

#[test]
fn a_write_is_acknowledged_only_after_its_batch_is_synced() {
    let mut node = node();
    let syncs = node.storage.stats().syncs;
    let client = node.connect();
    let wait_for = ticket(node.send(client, "SET k v\r\n", NOW));
    assert!(wait_for.is_some());
    assert_eq!(
        node.replies(client, wait_for),
        None,
        "no reply before the sync"
    );
    assert_eq!(node.storage.stats().syncs, syncs);
    assert_eq!(node.flush(NOW), Some(Ok(())));
    assert_eq!(node.storage.stats().syncs, syncs + 1);
    assert_eq!(node.replies(client, wait_for).as_deref(), Some("+OK\r\n"));
    // Nothing left to commit: the committer does no I/O.
    assert_eq!(node.flush(NOW), None);
    assert_eq!(node.storage.stats().syncs, syncs + 1);
}

#[test]
fn many_connections_writes_share_one_append_and_one_sync() {
    let mut node = node();
    let before = node.storage.stats();
    let clients: Vec<usize> = (0..10).map(|_| node.connect()).collect();
    let tickets: Vec<_> = clients
        .iter()
        .map(|&client| {
            // Pipelined: several writes per connection in one read.
            let input = format!("SET a{client} 1\r\nINCR n\r\nMSET b{client} 2 c{client} 3\r\n");
            ticket(node.send(client, &input, NOW))
        })
        .collect();
    assert!(tickets.iter().all(|ticket| *ticket == tickets[0]));
    node.flush(NOW);
    let after = node.storage.stats();
    assert_eq!(after.syncs - before.syncs, 1);
    assert_eq!(after.appends - before.appends, 1);
    for (&client, &ticket) in clients.iter().zip(&tickets) {
        let replies = node.replies(client, ticket).unwrap();
        assert_eq!(replies, format!("+OK\r\n:{}\r\n+OK\r\n", client + 1));
    }
    assert_eq!(node.commit.stats().batches_committed, 1);
    assert_eq!(node.commit.stats().mutations_committed, 40);
}

#[test]
fn reads_wait_only_for_writes_they_may_have_seen() {
    let mut node = node();
    let reader = node.connect();
    // Nothing in flight: no wait.
    assert_eq!(ticket(node.send(reader, "GET k\r\n", NOW)), None);
    assert_eq!(node.replies(reader, None).as_deref(), Some("$-1\r\n"));
    let writer = node.connect();
    let write = ticket(node.send(writer, "SET k v\r\n", NOW));
    // The read sees the uncommitted value, so its reply waits for that batch.
    let read = ticket(node.send(reader, "GET k\r\n", NOW));
    assert_eq!(read, write);
    assert_eq!(node.replies(reader, read), None);
    node.flush(NOW);
    assert_eq!(node.replies(reader, read).as_deref(), Some("$1\r\nv\r\n"));
    assert_eq!(ticket(node.send(reader, "GET k\r\n", NOW)), None);
}

#[test]
fn a_full_disk_fails_exactly_the_writes_refuses_later_ones_and_serves_reads() {
    let mut node = node();
    node.request("SET a 1", NOW);
    node.storage.set_capacity(Some(0));
    let client = node.connect();
    let failing = ticket(node.send(
        client,
        "GET a\r\nSET b 2\r\nGET a\r\nINCR a\r\nPING\r\n",
        NOW,
    ));
    assert_eq!(node.flush(NOW), Some(Err(StorageError::Full)));
    assert_eq!(
        node.replies(client, failing).unwrap(),
        format!("$1\r\n1\r\n{MISCONF_FULL}$1\r\n1\r\n{MISCONF_FULL}+PONG\r\n")
    );
    // Writes are now refused before they run; reads go on.
    assert_eq!(node.request("SET c 3", NOW), MISCONF_FULL);
    assert_eq!(node.request("DEL a", NOW), MISCONF_FULL);
    assert_eq!(node.request("FLUSHDB", NOW), MISCONF_FULL);
    assert_eq!(node.request("EXISTS a c", NOW), ":1\r\n");
    // Retries wait their interval, and fail while the disk is full.
    assert_eq!(node.commit.retry(&mut node.engine, NOW), None);
    let retry_at = NOW + RETRY_INTERVAL_MS;
    assert_eq!(
        node.commit.retry(&mut node.engine, retry_at),
        Some(Err(StorageError::Full))
    );
    node.storage.set_capacity(None);
    let retry_at = retry_at + RETRY_INTERVAL_MS;
    assert_eq!(node.commit.retry(&mut node.engine, retry_at), Some(Ok(())));
    assert_eq!(node.commit.refusal(), None);
    assert_eq!(node.request("SET c 3", retry_at), "+OK\r\n");
    assert_eq!(node.commit.stats().batches_failed, 1);
}

#[test]
fn a_failed_sync_is_never_reported_durable() {
    let mut node = node();
    node.storage.set_fail_syncs(true);
    let client = node.connect();
    let wait_for = ticket(node.send(client, "SET k v\r\n", NOW));
    assert!(matches!(
        node.flush(NOW),
        Some(Err(StorageError::Failed(_)))
    ));
    let reply = node.replies(client, wait_for).unwrap();
    assert!(reply.starts_with("-MISCONF"), "{reply}");
    assert!(!node.commit.log().unwrap().is_writable());
}

#[test]
fn in_memory_nothing_waits() {
    let mut commit = GroupCommit::<NoDisk>::in_memory();
    assert_eq!(commit.durability(), Durability::InMemory);
    let set = Mutation::Flush;
    assert_eq!(commit.submit(&[set]), None);
    assert!(!commit.has_pending_batch());
}

/// A waker that counts its wakes.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn the_futures_wake_the_committer_and_the_waiting_connections() {
    let mut node = node();
    let commit = RefCell::new(core::mem::replace(
        &mut node.commit,
        GroupCommit::in_memory(),
    ));
    let counter = Arc::new(CountingWaker::default());
    let waker = Waker::from(counter.clone());
    let mut cx = Context::from_waker(&waker);
    let mut next_batch = GroupCommit::next_batch(&commit);
    assert_eq!(Pin::new(&mut next_batch).poll(&mut cx), Poll::Pending);
    let ticket = commit
        .borrow_mut()
        .submit(&[Mutation::Flush])
        .expect("a ticket");
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        1,
        "the committer was woken"
    );
    assert_eq!(Pin::new(&mut next_batch).poll(&mut cx), Poll::Ready(()));
    let mut wait = GroupCommit::wait(&commit, ticket);
    assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Pending);
    commit.borrow_mut().flush(&mut node.engine, NOW);
    assert_eq!(
        counter.0.load(Ordering::SeqCst),
        2,
        "the connection was woken"
    );
    assert_eq!(Pin::new(&mut wait).poll(&mut cx), Poll::Ready(Ok(())));
}
