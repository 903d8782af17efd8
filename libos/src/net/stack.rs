//! One app's network stack instance: its smoltcp [`Interface`] and [`SocketSet`] over its frame
//! rings, built from its [`NetConfig`], with its socket limits, and the driver that polls it.
//!
//! ## Driving
//!
//! The stack is driven by one task on the app's own executor (started by the first socket
//! call), not by an executor hook: the executor already knows how to sleep on a deadline and
//! on the app's events at once, so a task that awaits `NET_EVENT`, smoltcp's `poll_at`
//! deadline, or a socket's request for a poll, folds the network's needs into the app's one
//! `wait` kcall with no change to the executor. The driver loop:
//!
//! 1. polls the interface: every waiting received frame (one at a time, topping up listeners'
//!    backlogs after each, so a burst of SYNs finds listening sockets), then egress, DHCP
//!    events, and the reaping of closed sockets;
//! 2. flushes the transmit ring with one `net_flush` kcall if that poll produced frames (and
//!    only then; also mid-poll when the ring filled up);
//! 3. if the poll took frames off the receive ring, yields and polls again (a busy app polls
//!    its ring and makes no kcall per packet: the executor asks kernel-lite for events only
//!    when nothing is ready); otherwise waits for `NET_EVENT`, the next smoltcp deadline, or a
//!    socket operation that asked for a poll (sending, connecting, closing, reading that opens
//!    the window) — whichever is first. An idle app thus sleeps in `wait`.
//!
//! Socket operations never poll the interface themselves; they ask the driver, so the work of
//! every task that ran in one executor round goes out in one poll and one flush.
//!
//! Time comes from the executor's [`Clock`]: the TSC on the machine, a fake clock in tests.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Poll, Waker};

use lite_abi::kcall::Events;
use lite_abi::net::config::{Ipv4Mode, Ipv6Mode, NetConfig, NetConfigError, link_local_ipv6};
use lite_abi::net::ring::{AppEnd, Geometry, RingMemory};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::socket::{dhcpv4, tcp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint, Ipv4Address, Ipv4Cidr,
    Ipv6Address, Ipv6Cidr,
};

use super::device::RingDevice;
use crate::io::{self, ErrorKind};
use crate::task::{Clock, Executor};

/// The app's ring area, and how its transmit ring is pushed out: the `net_flush` kcall on the
/// machine, a test wire on the host.
pub trait FrameRings: RingMemory {
    /// Hands the frames waiting on the transmit ring over; how many left (0 when none could).
    fn flush(&self) -> u64;

    /// The event raised when frames arrive on the receive ring.
    fn event(&self) -> Events {
        lite_abi::net::NET_EVENT
    }
}

/// Why an app has no network stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetError {
    /// The app has no network binding (its `net_area` is 0).
    NoNetwork,
    /// The binding kernel-lite wrote into the ring header is not valid.
    BadConfig(NetConfigError),
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::NoNetwork => f.write_str("the app has no network binding"),
            NetError::BadConfig(error) => write!(f, "bad network binding: {error}"),
        }
    }
}

impl From<NetError> for io::Error {
    fn from(error: NetError) -> io::Error {
        match error {
            NetError::NoNetwork => io::Error::new(ErrorKind::Unsupported),
            NetError::BadConfig(_) => io::Error::new(ErrorKind::InvalidInput),
        }
    }
}

/// Listening sockets a listener keeps ready: smoltcp accepts one connection per listening
/// socket, and the driver tops the backlog up after every received frame, so a few suffice
/// even for a burst of connections.
pub(crate) const BACKLOG: usize = 4;

/// How long a dropped stream may take to finish closing before it is dropped for good.
pub(crate) const CLOSE_TIMEOUT: smoltcp::time::Duration = smoltcp::time::Duration::from_secs(30);

/// First port of the ephemeral range.
const EPHEMERAL_FIRST: u16 = 49152;

/// Counters, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct NetStats {
    /// Polls of the interface.
    pub polls: u64,
    /// `net_flush` calls (kcalls on the machine).
    pub flushes: u64,
    pub frames_sent: u64,
    pub frames_received: u64,
}

/// A listener's sockets: those listening, and those that left `Listen` (a SYN came) and wait
/// for `accept`.
pub(crate) struct ListenerState {
    pub endpoint: IpListenEndpoint,
    pub listening: Vec<SocketHandle>,
    pub pending: VecDeque<SocketHandle>,
    pub waker: Option<Waker>,
}

/// Everything the stack's `RefCell` guards.
pub(crate) struct StackState<M: RingMemory> {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub device: RingDevice<M>,
    pub config: NetConfig,
    /// TCP and UDP sockets in the set (backlogs and closing streams included).
    pub open_sockets: usize,
    pub listeners: Vec<Option<ListenerState>>,
    /// Dropped streams finishing their close; removed from the set once closed.
    pub closing: Vec<SocketHandle>,
    pub dns: Option<SocketHandle>,
    dhcp: Option<SocketHandle>,
    /// DNS server learnt from DHCP (or the configured one).
    pub dns_server: Option<Ipv4Address>,
    next_port: u16,
}

/// A byte buffer of `len` zeros, or `OutOfMemory` when the app's heap cannot hold it.
pub(crate) fn zeroed_buffer(len: usize) -> io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    buffer
        .try_reserve_exact(len)
        .map_err(|_| io::Error::new(ErrorKind::OutOfMemory))?;
    buffer.resize(len, 0);
    Ok(buffer)
}

impl<M: RingMemory> StackState<M> {
    /// Room for one more socket under the app's limit, or `OutOfMemory`.
    pub fn check_socket_limit(&self) -> io::Result<()> {
        if self.open_sockets >= usize::from(self.config.max_sockets) {
            return Err(io::Error::new(ErrorKind::OutOfMemory));
        }
        Ok(())
    }

    /// A new TCP socket with the app's buffer size each way (not yet in the set).
    pub fn new_tcp_socket(&self) -> io::Result<tcp::Socket<'static>> {
        self.check_socket_limit()?;
        let size = self.config.socket_buffer as usize;
        let rx = zeroed_buffer(size)?;
        let tx = zeroed_buffer(size)?;
        Ok(tcp::Socket::new(
            tcp::SocketBuffer::new(rx),
            tcp::SocketBuffer::new(tx),
        ))
    }

    /// Adds a counted socket to the set.
    pub fn add_counted<T: smoltcp::socket::AnySocket<'static>>(
        &mut self,
        socket: T,
    ) -> SocketHandle {
        self.open_sockets += 1;
        self.sockets.add(socket)
    }

    /// Removes a counted socket from the set.
    pub fn remove_counted(&mut self, handle: SocketHandle) {
        self.sockets.remove(handle);
        self.open_sockets -= 1;
    }

    /// Whether a TCP socket of the app listens on or uses local `port`.
    fn tcp_port_in_use(&self, port: u16) -> bool {
        self.sockets.iter().any(|(_, socket)| match socket {
            smoltcp::socket::Socket::Tcp(socket) => {
                socket.listen_endpoint().port == port
                    || socket
                        .local_endpoint()
                        .is_some_and(|local| local.port == port)
            }
            _ => false,
        })
    }

    /// Whether a UDP socket of the app is bound to `port`.
    pub fn udp_port_in_use(&self, port: u16) -> bool {
        self.sockets.iter().any(|(_, socket)| match socket {
            smoltcp::socket::Socket::Udp(socket) => socket.endpoint().port == port,
            _ => false,
        })
    }

    /// A free local port from the ephemeral range, for TCP (`tcp`) or UDP.
    pub fn ephemeral_port(&mut self, tcp: bool) -> io::Result<u16> {
        let range = u32::from(u16::MAX - EPHEMERAL_FIRST) + 1;
        for _ in 0..range {
            let port = self.next_port;
            self.next_port = if port == u16::MAX {
                EPHEMERAL_FIRST
            } else {
                port + 1
            };
            let used = if tcp {
                self.tcp_port_in_use(port)
            } else {
                self.udp_port_in_use(port)
            };
            if !used {
                return Ok(port);
            }
        }
        Err(io::Error::new(ErrorKind::AddrInUse))
    }

    /// Whether `address` is one of the app's (or unspecified, meaning all of them).
    pub fn is_local_or_any(&self, address: IpAddress) -> bool {
        address.is_unspecified() || self.iface.has_ip_addr(address)
    }

    /// Moves a listener's sockets that got a SYN to its pending queue, tops its listening
    /// sockets up to the backlog (as the limits allow), drops pending ones that were reset,
    /// and wakes its `accept` when a connection is ready.
    pub fn refill_listener(&mut self, index: usize) {
        let Some(mut listener) = self.listeners.get_mut(index).and_then(Option::take) else {
            return;
        };
        let mut i = 0;
        while i < listener.listening.len() {
            let handle = listener.listening[i];
            if self.sockets.get::<tcp::Socket>(handle).state() == tcp::State::Listen {
                i += 1;
            } else {
                listener.listening.swap_remove(i);
                listener.pending.push_back(handle);
            }
        }
        let mut ready = false;
        let mut j = 0;
        while j < listener.pending.len() {
            let handle = listener.pending[j];
            match self.sockets.get::<tcp::Socket>(handle).state() {
                tcp::State::Closed => {
                    listener.pending.remove(j);
                    self.remove_counted(handle);
                }
                tcp::State::SynReceived | tcp::State::Listen => j += 1,
                _ => {
                    ready = true;
                    j += 1;
                }
            }
        }
        while listener.listening.len() < BACKLOG {
            let Ok(mut socket) = self.new_tcp_socket() else {
                break;
            };
            if socket.listen(listener.endpoint).is_err() {
                break;
            }
            let handle = self.add_counted(socket);
            listener.listening.push(handle);
        }
        if ready && let Some(waker) = listener.waker.take() {
            waker.wake();
        }
        self.listeners[index] = Some(listener);
    }

    fn refill_listeners(&mut self) {
        for index in 0..self.listeners.len() {
            if self.listeners[index].is_some() {
                self.refill_listener(index);
            }
        }
    }

    /// Removes dropped streams that have finished closing.
    fn reap_closed(&mut self) {
        let mut i = 0;
        while i < self.closing.len() {
            let handle = self.closing[i];
            let state = self.sockets.get::<tcp::Socket>(handle).state();
            if matches!(state, tcp::State::Closed | tcp::State::TimeWait) {
                self.closing.swap_remove(i);
                self.remove_counted(handle);
            } else {
                i += 1;
            }
        }
    }

    /// Applies what the DHCP client learnt (or lost).
    fn apply_dhcp(&mut self) {
        let Some(handle) = self.dhcp else { return };
        let learnt = match self.sockets.get_mut::<dhcpv4::Socket>(handle).poll() {
            None => return,
            Some(dhcpv4::Event::Configured(lease)) => Some((
                lease.address,
                lease.router,
                lease.dns_servers.first().copied(),
            )),
            Some(dhcpv4::Event::Deconfigured) => None,
        };
        self.iface.update_ip_addrs(|addresses| {
            addresses.retain(|cidr| !matches!(cidr, IpCidr::Ipv4(_)));
        });
        self.iface.routes_mut().remove_default_ipv4_route();
        if let Some((address, router, dns)) = learnt {
            log::info!("DHCP lease: {address}");
            add_address(&mut self.iface, IpCidr::Ipv4(address));
            if let Some(router) = router
                && self
                    .iface
                    .routes_mut()
                    .add_default_ipv4_route(router)
                    .is_err()
            {
                log::warn!("no room for the DHCP default route");
            }
            if let Some(dns) = dns {
                self.dns_server = Some(dns);
            }
        } else {
            log::info!("DHCP lease lost");
        }
    }
}

/// Adds an address to the interface, first making room by dropping the IPv6 link-local
/// address when the interface's table is full (smoltcp keeps two by default).
fn add_address(iface: &mut Interface, cidr: IpCidr) {
    iface.update_ip_addrs(|addresses| {
        if addresses.push(cidr).is_ok() {
            return;
        }
        if let Some(at) = addresses.iter().position(|existing| match existing {
            IpCidr::Ipv6(v6) => v6.address().is_unicast_link_local(),
            _ => false,
        }) {
            addresses.remove(at);
            let _ = addresses.push(cidr);
        } else {
            log::warn!("no room for address {cidr} on the interface");
        }
    });
}

/// One app's network stack. Sockets borrow it for `'static`: on the machine it lives in the
/// app's context, in host tests it is leaked.
pub struct NetStack<M: FrameRings + 'static, C: Clock + 'static> {
    executor: &'static Executor<C>,
    pub(crate) state: RefCell<StackState<M>>,
    event: Events,
    poll_requested: Cell<bool>,
    driver_waker: RefCell<Option<Waker>>,
    driver_started: Cell<bool>,
    stats: Cell<NetStats>,
}

impl<M: FrameRings + 'static, C: Clock + 'static> NetStack<M, C> {
    /// The stack over the ring area `rings`, whose header holds the app's binding (checked);
    /// driven by a task of `executor`, started by the first socket call.
    pub fn new(executor: &'static Executor<C>, rings: M) -> Result<NetStack<M, C>, NetError> {
        let config = AppEnd::config(&rings).map_err(NetError::BadConfig)?;
        let mut device = RingDevice::new(rings, AppEnd::new(Geometry::of(&config)));
        let now = instant(executor.clock());
        let mac = EthernetAddress(config.mac);
        let seed = u64::from_le_bytes([
            config.mac[0],
            config.mac[1],
            config.mac[2],
            config.mac[3],
            config.mac[4],
            config.mac[5],
            0,
            0,
        ]) ^ executor.clock().now().rotate_left(17);
        let mut iface_config = Config::new(HardwareAddress::Ethernet(mac));
        iface_config.random_seed = seed;
        iface_config.slaac = config.ipv6 == Ipv6Mode::Slaac;
        let mut iface = Interface::new(iface_config, &mut device, now);
        if let Ipv4Mode::Static { address, prefix } = config.ipv4 {
            add_address(
                &mut iface,
                IpCidr::Ipv4(Ipv4Cidr::new(Ipv4Address::from(address), prefix)),
            );
            if let Some(gateway) = config.gateway4 {
                let _ = iface
                    .routes_mut()
                    .add_default_ipv4_route(Ipv4Address::from(gateway));
            }
        }
        if let Ipv6Mode::Static { address, prefix } = config.ipv6 {
            add_address(
                &mut iface,
                IpCidr::Ipv6(Ipv6Cidr::new(Ipv6Address::from(address), prefix)),
            );
        }
        if config.ipv6 != Ipv6Mode::None
            && let Some(gateway) = config.gateway6
        {
            let _ = iface
                .routes_mut()
                .add_default_ipv6_route(Ipv6Address::from(gateway));
        }
        // Link-local, always: when the table is full (static IPv4 and IPv6), it yields.
        iface.update_ip_addrs(|addresses| {
            let link_local = Ipv6Cidr::new(Ipv6Address::from(link_local_ipv6(config.mac)), 64);
            if addresses.push(IpCidr::Ipv6(link_local)).is_err() {
                log::debug!("no room for the link-local address");
            }
        });
        let mut sockets = SocketSet::new(Vec::new());
        let dhcp = (config.ipv4 == Ipv4Mode::Dhcp).then(|| sockets.add(dhcpv4::Socket::new()));
        let event = device.memory().event();
        let next_port = EPHEMERAL_FIRST + (seed % u64::from(u16::MAX - EPHEMERAL_FIRST)) as u16;
        Ok(NetStack {
            executor,
            state: RefCell::new(StackState {
                iface,
                sockets,
                device,
                config,
                open_sockets: 0,
                listeners: Vec::new(),
                closing: Vec::new(),
                dns: None,
                dhcp,
                dns_server: config.dns4.map(Ipv4Address::from),
                next_port,
            }),
            event,
            poll_requested: Cell::new(false),
            driver_waker: RefCell::new(None),
            driver_started: Cell::new(false),
            stats: Cell::new(NetStats::default()),
        })
    }

    /// The binding the stack was built from.
    pub fn config(&self) -> NetConfig {
        self.state.borrow().config
    }

    /// The interface's addresses now.
    pub fn addresses(&self) -> Vec<core::net::IpAddr> {
        self.state
            .borrow()
            .iface
            .ip_addrs()
            .iter()
            .map(|cidr| cidr.address().into())
            .collect()
    }

    pub fn stats(&self) -> NetStats {
        self.stats.get()
    }

    /// TCP and UDP sockets in the set now (listeners' backlogs and closing streams included).
    pub fn open_sockets(&self) -> usize {
        self.state.borrow().open_sockets
    }

    /// Runs `f` on the stack's state. Never held across an `await`.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut StackState<M>) -> R) -> R {
        f(&mut self.state.borrow_mut())
    }

    /// Starts the driver task (once; every socket call does it too).
    pub fn start(&'static self) {
        if !self.driver_started.replace(true) {
            drop(self.executor.spawn(self.drive()));
        }
    }

    /// Asks the driver for a poll (a socket has something to send).
    pub(crate) fn request_poll(&self) {
        if !self.poll_requested.replace(true)
            && let Some(waker) = self.driver_waker.borrow().as_ref()
        {
            waker.wake_by_ref();
        }
    }

    fn bump(&self, f: impl FnOnce(&mut NetStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    /// Flushes the transmit ring if frames wait on it.
    fn flush_transmitted(&self, state: &StackState<M>) {
        let sent = state.device.take_transmitted();
        if sent > 0 {
            state.device.memory().flush();
            self.bump(|stats| {
                stats.flushes += 1;
                stats.frames_sent += u64::from(sent);
            });
        }
    }

    /// One poll of the interface (see the module docs); whether it took received frames.
    pub(crate) fn poll_once(&self) -> bool {
        self.poll_requested.set(false);
        let now = instant(self.executor.clock());
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        state.iface.poll_maintenance(now);
        loop {
            while state
                .iface
                .poll_ingress_single(now, &mut state.device, &mut state.sockets)
                != PollIngressSingleResult::None
            {
                state.refill_listeners();
            }
            while state
                .iface
                .poll_egress(now, &mut state.device, &mut state.sockets)
                == PollResult::SocketStateChanged
            {}
            // A full transmit ring stops ingress (replies need slots): push it out and go on.
            if state.device.tx_full() && state.device.rx_waiting() {
                self.flush_transmitted(state);
                if state.device.tx_full() {
                    break;
                }
                continue;
            }
            break;
        }
        state.apply_dhcp();
        state.refill_listeners();
        state.reap_closed();
        // Sockets reaped or listeners refilled may have something to say at once.
        while state
            .iface
            .poll_egress(now, &mut state.device, &mut state.sockets)
            == PollResult::SocketStateChanged
        {}
        self.flush_transmitted(state);
        let received = state.device.take_received();
        self.bump(|stats| {
            stats.polls += 1;
            stats.frames_received += u64::from(received);
        });
        received > 0
    }

    /// When smoltcp next wants a poll, in clock ticks.
    fn next_deadline(&self) -> Option<u64> {
        let clock = self.executor.clock();
        let now = instant(clock);
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        let at = state.iface.poll_at(now, &state.sockets)?;
        let micros = u128::try_from(at.total_micros().max(0)).unwrap_or(0);
        let ticks = (micros * u128::from(clock.ticks_per_second())).div_ceil(1_000_000);
        Some(u64::try_from(ticks).unwrap_or(u64::MAX))
    }

    /// The driver task: polls, flushes, and sleeps (see the module docs).
    async fn drive(&'static self) {
        loop {
            if self.poll_once() {
                crate::task::yield_now().await;
                continue;
            }
            let deadline = self.next_deadline();
            let mut event = self.executor.wait_event(self.event);
            let mut sleep = deadline.map(|ticks| self.executor.sleep_until(ticks));
            poll_fn(|cx| {
                if self.poll_requested.get() {
                    return Poll::Ready(());
                }
                match &mut *self.driver_waker.borrow_mut() {
                    Some(waker) => waker.clone_from(cx.waker()),
                    slot => *slot = Some(cx.waker().clone()),
                }
                if Pin::new(&mut event).poll(cx).is_ready() {
                    return Poll::Ready(());
                }
                if let Some(sleep) = sleep.as_mut()
                    && Pin::new(sleep).poll(cx).is_ready()
                {
                    return Poll::Ready(());
                }
                Poll::Pending
            })
            .await;
        }
    }
}

/// Now, for smoltcp, from the executor's clock.
fn instant<C: Clock>(clock: &C) -> Instant {
    let hz = clock.ticks_per_second().max(1);
    let micros = u128::from(clock.now()) * 1_000_000 / u128::from(hz);
    Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}
