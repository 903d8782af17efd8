//! Host name lookup through smoltcp's DNS socket (one per stack, made on first use), asking
//! the server the binding names (`dns4`) or the one DHCP learnt.

use alloc::vec::Vec;
use core::future::poll_fn;
use core::net::IpAddr;
use core::task::Poll;

use smoltcp::iface::SocketHandle;
use smoltcp::socket::dns::{self, GetQueryResultError, QueryHandle, StartQueryError};
use smoltcp::wire::{DnsQueryType, IpAddress};

use super::stack::{FrameRings, NetStack};
use crate::io::{self, Error, ErrorKind};
use crate::task::Clock;

/// Cancels its query if the lookup is dropped before it completes.
struct QueryGuard<M: FrameRings + 'static, C: Clock + 'static> {
    stack: &'static NetStack<M, C>,
    socket: SocketHandle,
    query: Option<QueryHandle>,
}

impl<M: FrameRings + 'static, C: Clock + 'static> Drop for QueryGuard<M, C> {
    fn drop(&mut self) {
        if let Some(query) = self.query.take() {
            self.stack.with_state(|state| {
                state
                    .sockets
                    .get_mut::<dns::Socket>(self.socket)
                    .cancel_query(query)
            });
        }
    }
}

/// The addresses of `host` (IPv4 from an A query); a literal address is returned as is.
/// `NotFound` when the name does not resolve or no DNS server is known, `InvalidInput` for a
/// malformed name.
pub async fn lookup_host_on<M: FrameRings + 'static, C: Clock + 'static>(
    stack: &'static NetStack<M, C>,
    host: &str,
) -> io::Result<Vec<IpAddr>> {
    if let Ok(address) = host.parse::<IpAddr>() {
        return Ok(alloc::vec![address]);
    }
    stack.start();
    let (socket, query) = stack.with_state(|state| {
        let server = state.dns_server.ok_or(Error::new(ErrorKind::NotFound))?;
        let servers = [IpAddress::Ipv4(server)];
        let socket = match state.dns {
            Some(socket) => {
                state
                    .sockets
                    .get_mut::<dns::Socket>(socket)
                    .update_servers(&servers);
                socket
            }
            None => {
                let socket = state.sockets.add(dns::Socket::new(&servers, Vec::new()));
                state.dns = Some(socket);
                socket
            }
        };
        let context = state.iface.context();
        let query = state
            .sockets
            .get_mut::<dns::Socket>(socket)
            .start_query(context, host, DnsQueryType::A)
            .map_err(|error| {
                Error::new(match error {
                    StartQueryError::NoFreeSlot => ErrorKind::OutOfMemory,
                    StartQueryError::InvalidName | StartQueryError::NameTooLong => {
                        ErrorKind::InvalidInput
                    }
                })
            })?;
        Ok::<_, Error>((socket, query))
    })?;
    let mut guard = QueryGuard {
        stack,
        socket,
        query: Some(query),
    };
    stack.request_poll();
    let result = poll_fn(|cx| {
        stack.with_state(|state| {
            let dns = state.sockets.get_mut::<dns::Socket>(socket);
            match dns.get_query_result(query) {
                Ok(addresses) => Poll::Ready(Ok(addresses
                    .iter()
                    .map(|&address| address.into())
                    .collect())),
                Err(GetQueryResultError::Failed) => {
                    Poll::Ready(Err(Error::new(ErrorKind::NotFound)))
                }
                Err(GetQueryResultError::Pending) => {
                    dns.register_query_waker(query, cx.waker());
                    Poll::Pending
                }
            }
        })
    })
    .await;
    // A finished query frees its slot itself.
    guard.query = None;
    result
}
