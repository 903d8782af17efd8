//! UDP with std's names, async: [`UdpSocket`] over the app's stack. Each socket has the app's
//! buffer size each way (datagrams queue there until read or sent); a socket is removed from
//! the set as soon as it is dropped.

use core::future::poll_fn;
use core::net::SocketAddr;
use core::task::Poll;

use lite_abi::net::ring::MAX_FRAME;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::udp;
use smoltcp::wire::{IpEndpoint, IpListenEndpoint};

use super::stack::{FrameRings, NetStack, zeroed_buffer};
use super::tcp::socket_addr;
use crate::io::{self, Error, ErrorKind};
use crate::task::Clock;

/// Datagrams each way a socket can queue (besides the byte limit).
const DATAGRAMS_QUEUED: usize = 32;

/// Ethernet (14) + IPv4 (20) or IPv6 (40) + UDP (8) headers.
const fn max_payload(ipv6: bool) -> usize {
    MAX_FRAME - 14 - if ipv6 { 40 } else { 20 } - 8
}

/// A UDP socket.
pub struct UdpSocket<M: FrameRings + 'static, C: Clock + 'static> {
    stack: &'static NetStack<M, C>,
    handle: SocketHandle,
    local: SocketAddr,
}

impl<M: FrameRings + 'static, C: Clock + 'static> UdpSocket<M, C> {
    /// A socket bound to `address` (port 0 picks a free one) of `stack`.
    pub fn bind_on(stack: &'static NetStack<M, C>, address: SocketAddr) -> io::Result<Self> {
        stack.start();
        let (handle, local) = stack.with_state(|state| {
            if !state.is_local_or_any(address.ip().into()) {
                return Err(Error::new(ErrorKind::AddrNotAvailable));
            }
            state.check_socket_limit()?;
            let port = match address.port() {
                0 => state.ephemeral_port(false)?,
                port if state.udp_port_in_use(port) => {
                    return Err(Error::new(ErrorKind::AddrInUse));
                }
                port => port,
            };
            let size = state.config.socket_buffer as usize;
            let buffer = || -> io::Result<udp::PacketBuffer<'static>> {
                let mut metadata = alloc::vec::Vec::new();
                metadata
                    .try_reserve_exact(DATAGRAMS_QUEUED)
                    .map_err(|_| Error::new(ErrorKind::OutOfMemory))?;
                metadata.resize(DATAGRAMS_QUEUED, udp::PacketMetadata::EMPTY);
                Ok(udp::PacketBuffer::new(metadata, zeroed_buffer(size)?))
            };
            let mut socket = udp::Socket::new(buffer()?, buffer()?);
            let endpoint = IpListenEndpoint {
                addr: (!address.ip().is_unspecified()).then(|| address.ip().into()),
                port,
            };
            socket
                .bind(endpoint)
                .map_err(|_| Error::new(ErrorKind::InvalidInput))?;
            Ok((
                state.add_counted(socket),
                SocketAddr::new(address.ip(), port),
            ))
        })?;
        Ok(UdpSocket {
            stack,
            handle,
            local,
        })
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }

    /// Sends `buf` as one datagram to `target` (waits while the send buffer is full).
    /// `InvalidInput` for a datagram that does not fit one frame or a zero port.
    pub async fn send_to(&self, buf: &[u8], target: SocketAddr) -> io::Result<usize> {
        if buf.len() > max_payload(target.is_ipv6())
            || target.port() == 0
            || target.ip().is_unspecified()
        {
            return Err(Error::new(ErrorKind::InvalidInput));
        }
        let stack = self.stack;
        let handle = self.handle;
        poll_fn(|cx| {
            stack.with_state(|state| {
                let socket = state.sockets.get_mut::<udp::Socket>(handle);
                match socket.send_slice(buf, IpEndpoint::from(target)) {
                    Ok(()) => Poll::Ready(Ok(buf.len())),
                    Err(udp::SendError::BufferFull) => {
                        socket.register_send_waker(cx.waker());
                        Poll::Pending
                    }
                    Err(udp::SendError::Unaddressable) => {
                        Poll::Ready(Err(Error::new(ErrorKind::HostUnreachable)))
                    }
                }
            })
        })
        .await?;
        stack.request_poll();
        Ok(buf.len())
    }

    /// Receives one datagram into `buf` (cut to its length, as std does): its length and
    /// sender.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let stack = self.stack;
        let handle = self.handle;
        poll_fn(|cx| {
            stack.with_state(|state| {
                let socket = state.sockets.get_mut::<udp::Socket>(handle);
                match socket.recv() {
                    Ok((payload, metadata)) => {
                        let len = payload.len().min(buf.len());
                        buf[..len].copy_from_slice(&payload[..len]);
                        Poll::Ready(Ok((len, socket_addr(metadata.endpoint))))
                    }
                    Err(_) => {
                        socket.register_recv_waker(cx.waker());
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }
}

impl<M: FrameRings + 'static, C: Clock + 'static> Drop for UdpSocket<M, C> {
    fn drop(&mut self) {
        let handle = self.handle;
        self.stack.with_state(|state| state.remove_counted(handle));
    }
}
