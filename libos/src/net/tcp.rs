//! TCP with std's names, async: [`TcpListener`] and [`TcpStream`] over the app's stack.
//!
//! A listener keeps a small backlog of listening smoltcp sockets (smoltcp accepts one
//! connection per listening socket); the driver moves those that got a SYN to the listener's
//! pending queue and tops the backlog up after every received frame, so many clients can
//! connect at once. Each connection owns one smoltcp socket with the app's buffer size each
//! way (the only per-connection allocation besides smoltcp's own state). Dropping a stream
//! closes it gracefully; the driver removes its socket from the set once it is closed (or in
//! TIME-WAIT, which holds no data), or after a timeout if the peer vanished.

use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::stack::{FrameRings, ListenerState, NetStack};
use crate::io::{self, Error, ErrorKind};
use crate::task::Clock;

/// Which halves of a stream [`TcpStream::shutdown`] closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// No more reads: later reads return end of stream.
    Read,
    /// No more writes: the peer sees end of stream (a FIN).
    Write,
    Both,
}

pub(crate) fn socket_addr(endpoint: IpEndpoint) -> SocketAddr {
    SocketAddr::new(endpoint.addr.into(), endpoint.port)
}

/// A TCP listener.
pub struct TcpListener<M: FrameRings + 'static, C: Clock + 'static> {
    stack: &'static NetStack<M, C>,
    index: usize,
    local: SocketAddr,
}

impl<M: FrameRings + 'static, C: Clock + 'static> TcpListener<M, C> {
    /// Listens on `address` (port 0 picks a free one) of `stack`. `AddrInUse` if another
    /// listener of the app has the port, `AddrNotAvailable` if the address is not the app's,
    /// `OutOfMemory` at the socket limit.
    pub fn bind_on(stack: &'static NetStack<M, C>, address: SocketAddr) -> io::Result<Self> {
        stack.start();
        let (index, local) = stack.with_state(|state| {
            if !state.is_local_or_any(address.ip().into()) {
                return Err(Error::new(ErrorKind::AddrNotAvailable));
            }
            let port = match address.port() {
                0 => state.ephemeral_port(true)?,
                port => port,
            };
            let taken = state
                .listeners
                .iter()
                .flatten()
                .any(|listener| listener.endpoint.port == port);
            if taken {
                return Err(Error::new(ErrorKind::AddrInUse));
            }
            let endpoint = IpListenEndpoint {
                addr: (!address.ip().is_unspecified()).then(|| address.ip().into()),
                port,
            };
            // One listening socket at least, now: the limit is reported here, not later.
            let mut socket = state.new_tcp_socket()?;
            socket
                .listen(endpoint)
                .map_err(|_| Error::new(ErrorKind::InvalidInput))?;
            let handle = state.add_counted(socket);
            let listener = ListenerState {
                endpoint,
                listening: alloc::vec![handle],
                pending: Default::default(),
                waker: None,
            };
            let index = match state.listeners.iter().position(Option::is_none) {
                Some(free) => {
                    state.listeners[free] = Some(listener);
                    free
                }
                None => {
                    state.listeners.push(Some(listener));
                    state.listeners.len() - 1
                }
            };
            state.refill_listener(index);
            Ok((index, SocketAddr::new(address.ip(), port)))
        })?;
        Ok(TcpListener {
            stack,
            index,
            local,
        })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// The next connection, and its peer's address.
    pub async fn accept(&self) -> io::Result<(TcpStream<M, C>, SocketAddr)> {
        let stack = self.stack;
        let index = self.index;
        let (handle, peer) = poll_fn(|cx| {
            stack.with_state(|state| {
                state.refill_listener(index);
                let listener = state.listeners[index]
                    .as_mut()
                    .expect("a listener's state lives as long as the listener");
                let ready = listener.pending.iter().position(|&handle| {
                    !matches!(
                        state.sockets.get::<tcp::Socket>(handle).state(),
                        tcp::State::SynReceived | tcp::State::Listen | tcp::State::Closed
                    )
                });
                match ready {
                    Some(at) => {
                        let handle = listener.pending.remove(at).expect("position is in range");
                        let socket = state.sockets.get::<tcp::Socket>(handle);
                        let peer = socket.remote_endpoint().map(socket_addr);
                        Poll::Ready((handle, peer))
                    }
                    None => {
                        listener.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        let stream = TcpStream::new(stack, handle);
        let peer = peer.ok_or(Error::new(ErrorKind::ConnectionReset))?;
        Ok((stream, peer))
    }
}

impl<M: FrameRings + 'static, C: Clock + 'static> Drop for TcpListener<M, C> {
    /// Stops listening; connections not accepted yet are reset.
    fn drop(&mut self) {
        self.stack.with_state(|state| {
            let Some(listener) = state.listeners[self.index].take() else {
                return;
            };
            for handle in listener.listening.into_iter().chain(listener.pending) {
                state.sockets.get_mut::<tcp::Socket>(handle).abort();
                state.closing.push(handle);
            }
        });
        self.stack.request_poll();
    }
}

/// A TCP connection.
pub struct TcpStream<M: FrameRings + 'static, C: Clock + 'static> {
    stack: &'static NetStack<M, C>,
    handle: SocketHandle,
    read_shut: bool,
    write_shut: bool,
}

impl<M: FrameRings + 'static, C: Clock + 'static> TcpStream<M, C> {
    fn new(stack: &'static NetStack<M, C>, handle: SocketHandle) -> Self {
        TcpStream {
            stack,
            handle,
            read_shut: false,
            write_shut: false,
        }
    }

    fn with_socket<R>(&self, f: impl FnOnce(&mut tcp::Socket<'static>) -> R) -> R {
        self.stack
            .with_state(|state| f(state.sockets.get_mut::<tcp::Socket>(self.handle)))
    }

    /// Connects to `address` through `stack`. `ConnectionRefused` when the peer answers with
    /// a reset; wrap it in `task::timeout` to bound the wait for an unreachable host.
    pub async fn connect_on(
        stack: &'static NetStack<M, C>,
        address: SocketAddr,
    ) -> io::Result<Self> {
        stack.start();
        if address.port() == 0 || address.ip().is_unspecified() {
            return Err(Error::new(ErrorKind::InvalidInput));
        }
        let handle = stack.with_state(|state| {
            let socket = state.new_tcp_socket()?;
            let port = state.ephemeral_port(true)?;
            let handle = state.add_counted(socket);
            let remote = IpEndpoint::from(address);
            let context = state.iface.context();
            match state
                .sockets
                .get_mut::<tcp::Socket>(handle)
                .connect(context, remote, port)
            {
                Ok(()) => Ok(handle),
                Err(error) => {
                    state.remove_counted(handle);
                    Err(Error::new(match error {
                        tcp::ConnectError::Unaddressable => ErrorKind::HostUnreachable,
                        tcp::ConnectError::InvalidState => ErrorKind::InvalidInput,
                    }))
                }
            }
        })?;
        // From here the stream owns the socket: dropped (a timeout), it closes and is reaped.
        let stream = TcpStream::new(stack, handle);
        stack.request_poll();
        poll_fn(|cx| {
            stream.with_socket(|socket| match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
                tcp::State::Closed => Poll::Ready(Err(Error::new(ErrorKind::ConnectionRefused))),
                _ => Poll::Ready(Ok(())),
            })
        })
        .await?;
        Ok(stream)
    }

    /// Reads into `buf`: how many bytes, 0 at end of stream (or for an empty `buf`).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.read_shut {
            return Ok(0);
        }
        let stack = self.stack;
        let handle = self.handle;
        poll_fn(|cx| {
            stack.with_state(|state| {
                let socket = state.sockets.get_mut::<tcp::Socket>(handle);
                match socket.recv_slice(buf) {
                    Ok(0) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                    Ok(read) => Poll::Ready(Ok(read)),
                    Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                    Err(tcp::RecvError::InvalidState) => {
                        Poll::Ready(Err(Error::new(ErrorKind::ConnectionReset)))
                    }
                }
            })
        })
        .await
        .inspect(|&read| {
            if read > 0 {
                // The window opened: the peer may need to hear of it.
                stack.request_poll();
            }
        })
    }

    /// Writes some of `buf` into the send buffer: how many bytes (waits while it is full).
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.write_shut {
            return Err(Error::new(ErrorKind::NotConnected));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let stack = self.stack;
        let handle = self.handle;
        let written = poll_fn(|cx| {
            stack.with_state(|state| {
                let socket = state.sockets.get_mut::<tcp::Socket>(handle);
                match socket.send_slice(buf) {
                    Ok(0) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Ok(written) => Poll::Ready(Ok(written)),
                    Err(tcp::SendError::InvalidState) => {
                        Poll::Ready(Err(Error::new(ErrorKind::ConnectionReset)))
                    }
                }
            })
        })
        .await?;
        stack.request_poll();
        Ok(written)
    }

    /// Fills `buf` exactly; `UnexpectedEof` if the stream ends first.
    pub async fn read_exact(&mut self, mut buf: &mut [u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read(buf).await? {
                0 => return Err(Error::new(ErrorKind::UnexpectedEof)),
                read => buf = &mut buf[read..],
            }
        }
        Ok(())
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write(buf).await? {
                0 => return Err(Error::new(ErrorKind::WriteZero)),
                written => buf = &buf[written..],
            }
        }
        Ok(())
    }

    /// Waits until the peer has acknowledged every byte written so far.
    pub async fn flush(&mut self) -> io::Result<()> {
        self.stack.request_poll();
        poll_fn(|cx| {
            self.with_socket(|socket| {
                if socket.send_queue() == 0 {
                    Poll::Ready(Ok(()))
                } else if socket.state() == tcp::State::Closed {
                    Poll::Ready(Err(Error::new(ErrorKind::ConnectionReset)))
                } else {
                    socket.register_send_waker(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }

    /// Closes the read half, the write half (sends a FIN after the data written), or both.
    pub fn shutdown(&mut self, how: Shutdown) -> io::Result<()> {
        if matches!(how, Shutdown::Read | Shutdown::Both) {
            self.read_shut = true;
        }
        if matches!(how, Shutdown::Write | Shutdown::Both) {
            self.write_shut = true;
            self.with_socket(|socket| socket.close());
            self.stack.request_poll();
        }
        Ok(())
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.with_socket(|socket| socket.remote_endpoint())
            .map(socket_addr)
            .ok_or(Error::new(ErrorKind::NotConnected))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.with_socket(|socket| socket.local_endpoint())
            .map(socket_addr)
            .ok_or(Error::new(ErrorKind::NotConnected))
    }

    /// With `true`, small writes go out at once instead of waiting for earlier data's ACK
    /// (Nagle's algorithm off).
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.with_socket(|socket| socket.set_nagle_enabled(!nodelay));
        Ok(())
    }
}

impl<M: FrameRings + 'static, C: Clock + 'static> Drop for TcpStream<M, C> {
    /// Closes gracefully (a FIN after the data written); the driver reaps the socket.
    fn drop(&mut self) {
        let handle = self.handle;
        self.stack.with_state(|state| {
            let socket = state.sockets.get_mut::<tcp::Socket>(handle);
            socket.close();
            socket.set_timeout(Some(super::stack::CLOSE_TIMEOUT));
            state.closing.push(handle);
        });
        self.stack.request_poll();
    }
}
