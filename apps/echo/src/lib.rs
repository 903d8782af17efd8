//! echo: TCP and UDP echo servers (RFC 862, port 7) on libos's sockets.
//!
//! Each TCP connection gets its own task; the UDP server answers every datagram to its sender.
//! Both run on the app's executor, so an idle echo app sleeps in one `wait` kcall. Built for
//! the machine only (the sockets need the app's network binding); on the host the crate is
//! empty.
#![cfg_attr(not(test), no_std)]

#[cfg(target_os = "none")]
mod server {
    use libos::io;
    use libos::net::{self, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
    use libos::task;

    /// The echo port.
    const PORT: u16 = 7;
    /// Bytes moved per read: one full-size segment or so.
    const CHUNK: usize = 2048;

    pub fn main() -> i32 {
        let stack = match net::stack() {
            Ok(stack) => stack,
            Err(error) => {
                log::error!("no network: {error}");
                return 1;
            }
        };
        log::info!(
            "echo on port {PORT} (TCP and UDP), addresses {:?}",
            stack.addresses()
        );
        let any = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), PORT);
        let result = task::block_on(async move {
            let udp = UdpSocket::bind(any)?;
            let listener = TcpListener::bind(any)?;
            drop(task::spawn(async move {
                if let Err(error) = serve_udp(udp).await {
                    log::error!("UDP echo stopped: {error}");
                }
            }));
            serve_tcp(listener).await
        });
        match result {
            Ok(()) => 0,
            Err(error) => {
                log::error!("TCP echo stopped: {error}");
                1
            }
        }
    }

    async fn serve_tcp(listener: TcpListener) -> io::Result<()> {
        loop {
            let (stream, peer) = listener.accept().await?;
            log::debug!("connection from {peer}");
            drop(task::spawn(async move {
                if let Err(error) = echo_stream(stream).await {
                    log::debug!("connection from {peer} ended: {error}");
                }
            }));
        }
    }

    async fn echo_stream(mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut buffer = [0u8; CHUNK];
        loop {
            match stream.read(&mut buffer).await? {
                0 => return Ok(()),
                read => stream.write_all(&buffer[..read]).await?,
            }
        }
    }

    async fn serve_udp(socket: UdpSocket) -> io::Result<()> {
        let mut buffer = [0u8; CHUNK];
        loop {
            let (len, peer) = socket.recv_from(&mut buffer).await?;
            socket.send_to(&buffer[..len], peer).await?;
        }
    }
}

/// Serves TCP and UDP echo on port 7 until an error stops the TCP server; the exit status.
#[cfg(target_os = "none")]
pub fn main() -> i32 {
    server::main()
}
