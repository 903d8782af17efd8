//! The async shell around [`Engine`], [`Connection`] and [`GroupCommit`]: recovery from the
//! disk at start, a TCP listener on port 6379, one task per connection, the committer task,
//! the periodic active expiry (and retries after a disk failure), and the idle timeout. The
//! engine and the committer are shared by the tasks through `Rc<RefCell<..>>` (one executor
//! per app, no threads); no borrow is held across an await. Any I/O error or timeout drops
//! that connection only.
//!
//! Without a disk the keyspace lives in memory and writes are acknowledged at once
//! ([`Durability::InMemory`]); with one, a reply waits for its batch's sync
//! ([`Durability::GroupCommit`]). libos's file calls block the executor while the device
//! works, so every request that arrives during a sync joins the next batch.

use crate::commit::{GroupCommit, Step, poll_connection};
use crate::connection::Connection;
use crate::engine::{Engine, EngineConfig};
use crate::persist::{Durability, DurableLog, PersistConfig, RecoveryError, StorageError};
use crate::resp::ParserLimits;
use crate::store::Store;
use alloc::rc::Rc;
use core::cell::RefCell;
use libos::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use libos::task;
use libos::time::{Duration, Instant};

/// The storage the keyspace persists to: the app's own file system.
type DiskStorage = crate::persist::libos_storage::LibosStorage;

/// Opens the app's storage; `Err(StorageError::NoDisk)` (no `[app.disk]`) runs the server in
/// memory.
fn open_storage() -> Result<DiskStorage, StorageError> {
    DiskStorage::open()
}

/// The engine's clock: unix milliseconds, so persisted deadlines are absolute.
fn unix_time_ms() -> u64 {
    crate::persist::libos_storage::unix_time_ms()
}

/// The port served, on all of the app's addresses.
const PORT: u16 = 6379;
/// How long a connection may sit without sending anything.
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a write may stall (a client that stops reading its replies).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The size of each connection's read buffer.
const READ_BUFFER_BYTES: usize = 4 * 1024;
/// How often the active expiry runs, and how many entries each run examines.
const EXPIRY_PERIOD: Duration = Duration::from_millis(100);
const EXPIRY_ENTRIES_PER_STEP: usize = 200;

/// The shared state.
struct Server {
    engine: RefCell<Engine>,
    commit: RefCell<GroupCommit<DiskStorage>>,
}

/// Recovers the keyspace from the disk, or starts empty in memory without one.
fn open_keyspace(now_ms: u64) -> Result<(Store, GroupCommit<DiskStorage>), RecoveryError> {
    match open_storage() {
        Ok(storage) => {
            let config = PersistConfig {
                // Unknown to clients, different on every start.
                salt_seed: now_ms ^ Instant::now().tsc().rotate_left(32),
                ..PersistConfig::default()
            };
            let recovered = DurableLog::open(storage, config, now_ms)?;
            Ok((recovered.store, GroupCommit::on_disk(recovered.log)))
        }
        Err(StorageError::NoDisk) => {
            log::warn!("kv: no disk: the keyspace lives in memory only, writes are not durable");
            Ok((Store::new(), GroupCommit::in_memory()))
        }
        Err(error) => Err(RecoveryError::Storage(error)),
    }
}

pub fn main() -> i32 {
    task::block_on(serve())
}

async fn serve() -> i32 {
    let address = SocketAddr::from(([0, 0, 0, 0], PORT));
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            log::error!("kv: cannot listen on {address}: {error:?}");
            return 1;
        }
    };
    let started_at_ms = unix_time_ms();
    let (store, commit) = match open_keyspace(started_at_ms) {
        Ok(opened) => opened,
        Err(error) => {
            // Serving without the acknowledged writes the files hold would lose them.
            log::error!("kv: cannot recover the keyspace, not starting (files untouched): {error}");
            return 1;
        }
    };
    let durability = commit.durability();
    let mut engine = Engine::with_store(
        EngineConfig {
            tcp_port: PORT,
            record_mutations: durability == Durability::GroupCommit,
            started_at_ms,
            ..EngineConfig::default()
        },
        store,
    );
    engine.refuse_writes(commit.refusal());
    let server = Rc::new(Server {
        engine: RefCell::new(engine),
        commit: RefCell::new(commit),
    });
    log::info!("kv: listening on {address} ({durability:?})");
    // Dropping the handles detaches the tasks.
    if durability == Durability::GroupCommit {
        drop(task::spawn(run_committer(server.clone())));
    }
    let expiry_server = server.clone();
    drop(task::spawn(async move {
        loop {
            task::sleep(EXPIRY_PERIOD).await;
            let now_ms = unix_time_ms();
            let mut engine = expiry_server.engine.borrow_mut();
            engine.expire_step(now_ms, EXPIRY_ENTRIES_PER_STEP);
            expiry_server.commit.borrow_mut().retry(&mut engine, now_ms);
        }
    }));
    loop {
        match listener.accept().await {
            Ok((mut stream, _peer)) => {
                let server = server.clone();
                drop(task::spawn(async move {
                    server.engine.borrow_mut().client_connected();
                    serve_connection(&mut stream, &server).await;
                    server.engine.borrow_mut().client_disconnected();
                }));
            }
            Err(error) => log::debug!("kv: accept failed: {error:?}"),
        }
    }
}

/// Commits batches as they fill: one append and one sync for everything submitted meanwhile.
async fn run_committer(server: Rc<Server>) {
    loop {
        GroupCommit::next_batch(&server.commit).await;
        // Let every connection already woken add its writes to this batch.
        task::yield_now().await;
        let mut engine = server.engine.borrow_mut();
        server
            .commit
            .borrow_mut()
            .flush(&mut engine, unix_time_ms());
    }
}

/// Why a connection ended early; each just drops it.
#[derive(Debug)]
enum Dropped {
    Io,
    TimedOut,
}

async fn serve_connection(stream: &mut TcpStream, server: &Server) {
    let _ = stream.set_nodelay(true);
    let mut connection = Connection::new(ParserLimits::default());
    let mut read_buffer = [0u8; READ_BUFFER_BYTES];
    let outcome: Result<(), Dropped> = loop {
        let step = {
            let mut engine = server.engine.borrow_mut();
            let mut commit = server.commit.borrow_mut();
            poll_connection(&mut connection, &mut engine, &mut commit, unix_time_ms())
        };
        match step {
            Step::Write { wait_for } => {
                if let Some(ticket) = wait_for {
                    let outcome = GroupCommit::wait(&server.commit, ticket).await;
                    connection.settle(outcome);
                }
                let bytes = connection.output();
                match task::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Err(Dropped::Io),
                    Err(_elapsed) => break Err(Dropped::TimedOut),
                }
            }
            Step::Close => break Ok(()),
            Step::NeedInput => {
                match task::timeout(IDLE_TIMEOUT, stream.read(&mut read_buffer)).await {
                    Ok(Ok(0)) => connection.receive_eof(),
                    Ok(Ok(count)) => connection.receive(&read_buffer[..count]),
                    Ok(Err(_)) => break Err(Dropped::Io),
                    Err(_elapsed) => break Err(Dropped::TimedOut),
                }
            }
        }
    };
    match outcome {
        Ok(()) => {
            let _ = stream.shutdown(Shutdown::Write);
        }
        Err(reason) => log::debug!("kv: dropped a connection: {reason:?}"),
    }
}
