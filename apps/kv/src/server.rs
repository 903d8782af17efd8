//! The async shell around [`Engine`] and [`Connection`]: a TCP listener on port 6379, one task
//! per connection, the periodic active expiry, and the idle timeout. The engine is shared by
//! the tasks through `Rc<RefCell<..>>` (one executor per app, no threads); no borrow of it is
//! held across an await. Any I/O error or timeout drops that connection only.

use crate::connection::{Connection, Output};
use crate::engine::{Engine, EngineConfig};
use crate::resp::ParserLimits;
use alloc::rc::Rc;
use core::cell::RefCell;
use libos::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use libos::task;
use libos::time::{Duration, Instant};

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

/// The shared state: the engine and the clock's zero.
struct Server {
    engine: RefCell<Engine>,
    started: Instant,
}

impl Server {
    /// Milliseconds since the server started: the engine's clock.
    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
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
    let server = Rc::new(Server {
        engine: RefCell::new(Engine::new(EngineConfig {
            tcp_port: PORT,
            ..EngineConfig::default()
        })),
        started: Instant::now(),
    });
    log::info!("kv: listening on {address}");
    let expiry_server = server.clone();
    // Dropping the handle detaches the task.
    drop(task::spawn(async move {
        loop {
            task::sleep(EXPIRY_PERIOD).await;
            let now_ms = expiry_server.now_ms();
            expiry_server
                .engine
                .borrow_mut()
                .expire_step(now_ms, EXPIRY_ENTRIES_PER_STEP);
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
        let now_ms = server.now_ms();
        let output = {
            let mut engine = server.engine.borrow_mut();
            connection.poll_output(&mut engine, now_ms)
        };
        match output {
            Output::Write(bytes) => {
                match task::timeout(WRITE_TIMEOUT, stream.write_all(bytes)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break Err(Dropped::Io),
                    Err(_elapsed) => break Err(Dropped::TimedOut),
                }
            }
            Output::Close => break Ok(()),
            Output::NeedInput => {
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
