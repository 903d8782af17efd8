//! The async shell around [`Connection`]: a TCP listener on port 80, one task per connection,
//! and the timeouts. Any I/O error or timeout drops that connection; nothing here ends the app.

use crate::connection::{Connection, Output};
use crate::site::{ServerContext, ServerStatus};
use alloc::rc::Rc;
use alloc::string::String;
use core::cell::Cell;
use libos::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use libos::task;
use libos::time::{Duration, Instant};

/// The port served, on all of the app's addresses.
const PORT: u16 = 80;
/// How long a kept-alive connection may sit idle between requests.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may take to arrive once its first byte has (slowloris protection).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The size of each connection's read buffer.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The server's shared counters, and the source of `/status`.
struct Server {
    app_name: String,
    started: Instant,
    requests_served: Cell<u64>,
    open_connections: Cell<u64>,
}

impl ServerContext for Server {
    fn status(&self) -> ServerStatus {
        ServerStatus {
            app_name: self.app_name.clone(),
            uptime: self.started.elapsed(),
            requests_served: self.requests_served.get(),
            open_connections: self.open_connections.get(),
        }
    }

    fn request_served(&self) {
        self.requests_served.set(self.requests_served.get() + 1);
    }
}

pub fn main() -> i32 {
    task::block_on(serve())
}

async fn serve() -> i32 {
    let address = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT);
    let listener = match TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(error) => {
            log::error!("http: cannot listen on {address}: {error:?}");
            return 1;
        }
    };
    log::info!("http: listening on {address}");
    let server = Rc::new(Server {
        app_name: String::from(libos::rt::current().name()),
        started: Instant::now(),
        requests_served: Cell::new(0),
        open_connections: Cell::new(0),
    });
    loop {
        match listener.accept().await {
            Ok((mut stream, _peer)) => {
                let server = server.clone();
                // Dropping the handle detaches the task: it runs on until the connection ends.
                drop(task::spawn(async move {
                    server
                        .open_connections
                        .set(server.open_connections.get() + 1);
                    serve_connection(&mut stream, &server).await;
                    server
                        .open_connections
                        .set(server.open_connections.get() - 1);
                }));
            }
            Err(error) => log::debug!("http: accept failed: {error:?}"),
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
    let mut connection = Connection::new();
    let mut read_buffer = [0u8; READ_BUFFER_BYTES];
    let mut request_started: Option<Instant> = None;
    let outcome: Result<(), Dropped> = loop {
        match connection.poll_output(server) {
            Output::Write(bytes) => {
                if stream.write_all(bytes).await.is_err() {
                    break Err(Dropped::Io);
                }
            }
            Output::Close => break Ok(()),
            Output::NeedInput => {
                let limit = if connection.has_partial_request() {
                    let started = *request_started.get_or_insert_with(Instant::now);
                    REQUEST_TIMEOUT.saturating_sub(started.elapsed())
                } else {
                    request_started = None;
                    IDLE_TIMEOUT
                };
                match task::timeout(limit, stream.read(&mut read_buffer)).await {
                    Ok(Ok(0)) => connection.receive_eof(),
                    Ok(Ok(count)) => {
                        if request_started.is_none() {
                            request_started = Some(Instant::now());
                        }
                        connection.receive(&read_buffer[..count]);
                    }
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
        Err(reason) => log::debug!("http: dropped a connection: {reason:?}"),
    }
}
