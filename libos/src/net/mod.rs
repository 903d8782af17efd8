//! The network: one smoltcp stack instance per app, with std-like async sockets.
//!
//! Each app with a network binding has its own [`NetStack`]: its smoltcp interface (its MAC,
//! its addresses, its ARP and neighbor caches) and its sockets, over the frame rings
//! kernel-lite shares with it (`device.rs`), driven by a task on the app's own executor
//! (`stack.rs`). Nothing is global: on the machine the stack lives in the app's context, made
//! on first use; in host tests two stacks are two values wired back to back.
//!
//! On the machine the sockets take the running app's stack: [`TcpListener::bind`],
//! [`TcpStream::connect`], [`UdpSocket::bind`], [`lookup_host`]. The generic types under them
//! (`tcp::TcpListener<M, C>`, ...) take a stack explicitly (`bind_on`, `connect_on`), which is
//! how the host tests use them. Errors are [`crate::io::Error`]s with std's kinds; timeouts
//! come from `task::timeout`.

mod device;
mod dns;
mod stack;
mod tcp;
mod udp;

pub use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
pub use device::RingDevice;
pub use dns::lookup_host_on;
pub use stack::{FrameRings, NetError, NetStack, NetStats};
pub use tcp::Shutdown;

#[cfg(not(target_os = "none"))]
pub use tcp::{TcpListener, TcpStream};
#[cfg(not(target_os = "none"))]
pub use udp::UdpSocket;

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use crate::io;
    use crate::sys::AppRingMemory;
    use crate::task::SystemClock;
    use alloc::vec::Vec;

    impl FrameRings for AppRingMemory {
        /// The `net_flush` kcall; an error (no NIC yet, say) counts as nothing sent, and the
        /// next `wait` flushes again.
        fn flush(&self) -> u64 {
            crate::sys::net_flush().unwrap_or(0)
        }
    }

    /// The running app's stack.
    pub type AppNetStack = NetStack<AppRingMemory, SystemClock>;
    /// A TCP listener on the running app's stack.
    pub type TcpListener = tcp::TcpListener<AppRingMemory, SystemClock>;
    /// A TCP connection on the running app's stack.
    pub type TcpStream = tcp::TcpStream<AppRingMemory, SystemClock>;
    /// A UDP socket on the running app's stack.
    pub type UdpSocket = udp::UdpSocket<AppRingMemory, SystemClock>;

    /// The running app's stack, made and started on first use (from then on it answers ARP
    /// and neighbour solicitations and keeps its DHCP lease while the app's executor runs);
    /// `Unsupported` without a network binding, `InvalidInput` when the binding in the ring
    /// header is bad.
    pub fn stack() -> io::Result<&'static AppNetStack> {
        let stack = crate::rt::current().net()?;
        stack.start();
        Ok(stack)
    }

    impl TcpListener {
        /// Listens on `address` of the running app's stack.
        pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
            TcpListener::bind_on(stack()?, address)
        }
    }

    impl TcpStream {
        /// Connects to `address` from the running app's stack.
        pub async fn connect(address: SocketAddr) -> io::Result<TcpStream> {
            TcpStream::connect_on(stack()?, address).await
        }
    }

    impl UdpSocket {
        /// A socket bound to `address` of the running app's stack.
        pub fn bind(address: SocketAddr) -> io::Result<UdpSocket> {
            UdpSocket::bind_on(stack()?, address)
        }
    }

    /// The addresses of `host`, through the running app's stack.
    pub async fn lookup_host(host: &str) -> io::Result<Vec<IpAddr>> {
        lookup_host_on(stack()?, host).await
    }
}

#[cfg(target_os = "none")]
pub use machine::{AppNetStack, TcpListener, TcpStream, UdpSocket, lookup_host, stack};

#[cfg(test)]
mod tests;
