//! Host tests: two stack instances wired back to back through two ring areas in `Vec`s. A
//! small wire stands in for kernel-lite: it moves frames from one app's transmit ring to the
//! other's receive ring when a stack flushes or the executor waits, and raises the receiving
//! side's event. Both stacks run on one executor over a fake clock that jumps to the next
//! deadline when nothing is ready.

use super::*;
use crate::io::ErrorKind;
use crate::task::{Clock, Events, Executor};
use core::cell::{Cell, RefCell};
use core::time::Duration;
use lite_abi::net::config::{Ipv4Mode, NetConfig, NetConfigError, derived_mac};
use lite_abi::net::ring::host::VecMemory;
use lite_abi::net::ring::{Geometry, KernelEnd, MAX_FRAME, RingMemory};
use std::rc::Rc;

/// One app's ring area and kernel-lite's end of it.
struct Side {
    memory: VecMemory,
    kernel: RefCell<KernelEnd>,
    event: Events,
    /// Frames arrived that the app has not been told of.
    raised: Cell<bool>,
}

/// Two apps' rings, back to back.
struct Wire {
    sides: [Side; 2],
    moved: Cell<u64>,
}

impl Wire {
    /// Moves every transmitted frame to the other side's receive ring (dropping it when that
    /// ring is full, as kernel-lite does); returns how many moved.
    fn transfer(&self) -> u64 {
        let mut moved = 0;
        for (from, to) in [(0, 1), (1, 0)] {
            let (from, to) = (&self.sides[from], &self.sides[to]);
            let mut frame = [0u8; MAX_FRAME];
            loop {
                let popped = from.kernel.borrow_mut().pop_tx(&from.memory, &mut frame);
                match popped {
                    Ok(Some(len)) => {
                        if to
                            .kernel
                            .borrow_mut()
                            .push_rx(&to.memory, &frame[..len])
                            .is_ok()
                        {
                            to.raised.set(true);
                            moved += 1;
                        }
                    }
                    Ok(None) => break,
                    Err(error) => panic!("the app wrote a bad transmit ring: {error}"),
                }
            }
        }
        self.moved.set(self.moved.get() + moved);
        moved
    }
}

/// One app's view of its rings.
struct TestRings {
    wire: Rc<Wire>,
    side: usize,
}

impl RingMemory for TestRings {
    fn load_index(&self, offset: usize) -> u32 {
        self.wire.sides[self.side].memory.load_index(offset)
    }

    fn store_index(&self, offset: usize, value: u32) {
        self.wire.sides[self.side].memory.store_index(offset, value)
    }

    // `VecMemory` keeps its bytes in one `RefCell`, but smoltcp writes a reply into a transmit
    // slot while it still reads the received frame (distinct slots of real memory), so the
    // test copies each access out and back instead of nesting borrows.
    fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let memory = &self.wire.sides[self.side].memory;
        let copy = memory.with_bytes(offset, len, <[u8]>::to_vec);
        f(&copy)
    }

    fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let memory = &self.wire.sides[self.side].memory;
        let mut copy = memory.with_bytes(offset, len, <[u8]>::to_vec);
        let result = f(&mut copy);
        memory.with_bytes_mut(offset, len, |bytes| bytes.copy_from_slice(&copy));
        result
    }
}

impl FrameRings for TestRings {
    fn flush(&self) -> u64 {
        self.wire.transfer()
    }

    fn event(&self) -> Events {
        self.wire.sides[self.side].event
    }
}

/// Nanosecond ticks; `wait` moves frames (as kernel-lite's `wait` flushes), returns the
/// raised events asked for, or jumps to the deadline.
struct WireClock {
    now: Cell<u64>,
    wire: Rc<Wire>,
    waits: Cell<u64>,
}

impl Clock for WireClock {
    fn now(&self) -> u64 {
        self.now.get()
    }

    fn ticks_per_second(&self) -> u64 {
        1_000_000_000
    }

    fn wait(&self, deadline: u64, events: Events) -> Events {
        self.waits.set(self.waits.get() + 1);
        self.wire.transfer();
        let mut fired = Events::NONE;
        for side in &self.wire.sides {
            if side.raised.get() && !side.event.intersection(events).is_empty() {
                side.raised.set(false);
                fired = fired.union(side.event);
            }
        }
        if fired.is_empty() {
            assert_ne!(deadline, u64::MAX, "the apps would wait forever");
            self.now.set(self.now.get().max(deadline));
        }
        fired
    }
}

type Stack = NetStack<TestRings, WireClock>;
type Listener = TcpListener<TestRings, WireClock>;
type Stream = TcpStream<TestRings, WireClock>;
type Udp = UdpSocket<TestRings, WireClock>;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn config(name: &str, address: [u8; 4], max_sockets: u16) -> NetConfig {
    NetConfig {
        ipv4: Ipv4Mode::Static {
            address,
            prefix: 24,
        },
        max_sockets,
        ..NetConfig::new(derived_mac(name))
    }
}

fn side(config: &NetConfig, event: Events) -> Side {
    let geometry = Geometry::of(config);
    let memory = VecMemory::new(geometry.area_bytes());
    let kernel = KernelEnd::reset(geometry, config, &memory);
    Side {
        memory,
        kernel: RefCell::new(kernel),
        event,
        raised: Cell::new(false),
    }
}

/// Two apps' stacks on one executor, wired back to back.
struct Net {
    executor: &'static Executor<WireClock>,
    a: &'static Stack,
    b: &'static Stack,
}

fn net_with(a: NetConfig, b: NetConfig) -> Net {
    let wire = Rc::new(Wire {
        sides: [side(&a, Events::bit(0)), side(&b, Events::bit(1))],
        moved: Cell::new(0),
    });
    let clock = WireClock {
        now: Cell::new(0),
        wire: Rc::clone(&wire),
        waits: Cell::new(0),
    };
    let executor: &'static Executor<WireClock> = Box::leak(Box::new(Executor::new(clock)));
    let stack = |side| -> &'static Stack {
        let rings = TestRings {
            wire: Rc::clone(&wire),
            side,
        };
        let stack: &'static Stack = Box::leak(Box::new(NetStack::new(executor, rings).unwrap()));
        // An app's stack runs from its first socket call; these answer the peer from the start.
        stack.start();
        stack
    };
    Net {
        executor,
        a: stack(0),
        b: stack(1),
    }
}

fn net() -> Net {
    net_with(config("a", A, 200), config("b", B, 200))
}

fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
}

impl Net {
    fn run<F: core::future::Future>(&self, future: F) -> F::Output {
        self.executor.run_until(future).unwrap()
    }

    fn settle(&self, seconds: u64) {
        self.run(self.executor.sleep(Duration::from_secs(seconds)));
    }

    /// Echoes every connection on `listener`, each in its own task.
    fn serve_echo(&self, listener: Listener) {
        let executor = self.executor;
        drop(executor.spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                drop(executor.spawn(async move {
                    let mut buffer = vec![0u8; 4096];
                    loop {
                        let read = stream.read(&mut buffer).await.unwrap();
                        if read == 0 {
                            break;
                        }
                        stream.write_all(&buffer[..read]).await.unwrap();
                    }
                }));
            }
        }));
    }
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(31).wrapping_add(seed) >> 3) as u8)
        .collect()
}

#[test]
fn a_client_connects_and_a_few_hundred_kib_echo_back_byte_exact() {
    let net = net();
    let listener = Listener::bind_on(net.b, addr(B, 7)).unwrap();
    assert_eq!(listener.local_addr().unwrap(), addr(B, 7));
    net.serve_echo(listener);
    let sent = pattern(1, 300 * 1024);
    let a = net.a;
    let echoed = net.run(async {
        let mut stream = Stream::connect_on(a, addr(B, 7)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), addr(B, 7));
        assert_eq!(
            stream.local_addr().unwrap().ip(),
            IpAddr::V4(Ipv4Addr::from(A))
        );
        stream.set_nodelay(true).unwrap();
        let mut echoed = vec![0u8; sent.len()];
        for (out, back) in sent.chunks(8 * 1024).zip(echoed.chunks_mut(8 * 1024)) {
            stream.write_all(out).await.unwrap();
            stream.read_exact(back).await.unwrap();
        }
        stream.flush().await.unwrap();
        echoed
    });
    assert!(echoed == sent, "the echo differs from what was sent");
    let stats = net.a.stats();
    assert!(stats.frames_sent > 200, "{stats:?}");
    assert!(
        stats.flushes <= stats.polls,
        "at most one flush per poll: {stats:?}"
    );
    // A busy stack batches: several frames leave per flush (per kcall on the machine).
    assert!(stats.flushes * 2 < stats.frames_sent, "{stats:?}");
}

#[test]
fn sixty_four_clients_are_served_at_once() {
    let net = net();
    net.serve_echo(Listener::bind_on(net.b, addr(B, 7)).unwrap());
    let (executor, a) = (net.executor, net.a);
    let results = net.run(async {
        let clients: Vec<_> = (0..64u32)
            .map(|n| {
                executor.spawn(async move {
                    let mut stream = Stream::connect_on(a, addr(B, 7)).await?;
                    let sent = pattern(n, 1000 + n as usize * 37);
                    stream.write_all(&sent).await?;
                    let mut back = vec![0u8; sent.len()];
                    stream.read_exact(&mut back).await?;
                    Ok::<bool, crate::io::Error>(back == sent)
                })
            })
            .collect();
        let mut results = Vec::new();
        for client in clients {
            results.push(client.await);
        }
        results
    });
    assert_eq!(results.len(), 64);
    for (n, result) in results.into_iter().enumerate() {
        assert_eq!(result, Ok(true), "client {n}");
    }
}

#[test]
fn connecting_where_nothing_listens_is_refused_and_leaves_no_socket() {
    let net = net();
    let a = net.a;
    let error = net.run(async { Stream::connect_on(a, addr(B, 9)).await.err() });
    assert_eq!(error.map(|e| e.kind()), Some(ErrorKind::ConnectionRefused));
    net.settle(1);
    assert_eq!(net.a.open_sockets(), 0);
}

#[test]
fn closed_streams_and_listeners_give_their_sockets_back() {
    let net = net();
    let listener = Listener::bind_on(net.b, addr(B, 80)).unwrap();
    let backlog = net.b.open_sockets();
    assert!(backlog >= 1);
    let a = net.a;
    let (mut client, mut server) = net.run(async {
        let connect = Stream::connect_on(a, addr(B, 80));
        let client = connect.await.unwrap();
        let (server, peer) = listener.accept().await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        (client, server)
    });
    assert_eq!(net.a.open_sockets(), 1);
    assert_eq!(net.b.open_sockets(), backlog + 1);
    // The client closes its half: the server reads the data, then end of stream.
    net.run(async {
        client.write_all(b"bye").await.unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut buffer = [0u8; 16];
        loop {
            match server.read(&mut buffer).await.unwrap() {
                0 => break,
                read => got.extend_from_slice(&buffer[..read]),
            }
        }
        assert_eq!(got, b"bye");
        assert_eq!(
            client.write(b"more").await.unwrap_err().kind(),
            ErrorKind::NotConnected
        );
    });
    drop(server);
    drop(client);
    net.settle(2);
    assert_eq!(net.a.open_sockets(), 0, "the client's socket was reaped");
    assert_eq!(net.b.open_sockets(), backlog, "only the backlog is left");
    drop(listener);
    net.settle(1);
    assert_eq!(net.b.open_sockets(), 0);
}

#[test]
fn the_socket_limit_is_an_error_not_a_leak() {
    let net = net_with(config("a", A, 3), config("b", B, 200));
    let a = net.a;
    let first = Udp::bind_on(a, addr(A, 1000)).unwrap();
    let _second = Udp::bind_on(a, addr(A, 1001)).unwrap();
    let _third = Udp::bind_on(a, addr(A, 0)).unwrap();
    let over = Udp::bind_on(a, addr(A, 1003)).err().map(|e| e.kind());
    assert_eq!(over, Some(ErrorKind::OutOfMemory));
    let over = net.run(async {
        Stream::connect_on(a, addr(B, 7))
            .await
            .err()
            .map(|e| e.kind())
    });
    assert_eq!(over, Some(ErrorKind::OutOfMemory));
    drop(first);
    assert_eq!(net.a.open_sockets(), 2);
    let _fourth = Udp::bind_on(a, addr(A, 1003)).unwrap();
    assert_eq!(
        Udp::bind_on(a, addr(A, 1001)).err().map(|e| e.kind()),
        Some(ErrorKind::OutOfMemory),
        "still at the limit"
    );
}

#[test]
fn udp_datagrams_go_both_ways_with_their_senders() {
    let net = net();
    let (a, b) = (net.a, net.b);
    let server = Udp::bind_on(b, addr(B, 7)).unwrap();
    assert_eq!(
        Udp::bind_on(b, addr(B, 7)).err().map(|e| e.kind()),
        Some(ErrorKind::AddrInUse)
    );
    assert_eq!(
        Udp::bind_on(b, addr([10, 0, 0, 99], 8))
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::AddrNotAvailable)
    );
    let client = Udp::bind_on(a, addr(A, 5000)).unwrap();
    let (request, from, reply, reply_from) = net.run(async {
        client.send_to(b"ping", addr(B, 7)).await.unwrap();
        let mut buffer = [0u8; 64];
        let (len, from) = server.recv_from(&mut buffer).await.unwrap();
        let request = buffer[..len].to_vec();
        server.send_to(b"pong!", from).await.unwrap();
        let (len, reply_from) = client.recv_from(&mut buffer).await.unwrap();
        (request, from, buffer[..len].to_vec(), reply_from)
    });
    assert_eq!((request.as_slice(), from), (&b"ping"[..], addr(A, 5000)));
    assert_eq!((reply.as_slice(), reply_from), (&b"pong!"[..], addr(B, 7)));
    let too_long = vec![0u8; 2000];
    let error = net.run(async { client.send_to(&too_long, addr(B, 7)).await.err() });
    assert_eq!(error.map(|e| e.kind()), Some(ErrorKind::InvalidInput));
}

#[test]
fn a_bad_binding_in_the_ring_header_is_an_error() {
    let bad = NetConfig::new([0; 6]); // a zero MAC
    let geometry = Geometry::of(&bad);
    let memory = VecMemory::new(geometry.area_bytes());
    KernelEnd::reset(geometry, &bad, &memory);
    let wire = Rc::new(Wire {
        sides: [side(&bad, Events::bit(0)), side(&bad, Events::bit(1))],
        moved: Cell::new(0),
    });
    let clock = WireClock {
        now: Cell::new(0),
        wire: Rc::clone(&wire),
        waits: Cell::new(0),
    };
    let executor: &'static Executor<WireClock> = Box::leak(Box::new(Executor::new(clock)));
    let result = NetStack::new(executor, TestRings { wire, side: 0 });
    let error = result.err().expect("a zero MAC is refused");
    assert_eq!(error, NetError::BadConfig(NetConfigError::BadMac));
    assert_eq!(
        crate::io::Error::from(error).kind(),
        ErrorKind::InvalidInput
    );
}

#[test]
fn an_idle_stack_sleeps_and_sends_nothing() {
    let net = net();
    let _listener = Listener::bind_on(net.b, addr(B, 7)).unwrap();
    let _socket = Udp::bind_on(net.a, addr(A, 7)).unwrap();
    net.settle(1);
    let (polls, flushes) = (net.b.stats().polls, net.b.stats().flushes);
    net.settle(60);
    assert_eq!(net.b.stats().flushes, flushes, "nothing to send, no flush");
    assert!(net.b.stats().polls - polls <= 2, "{:?}", net.b.stats());
}

#[test]
fn host_names_need_a_server_and_literals_need_none() {
    let net = net();
    let a = net.a;
    let literal = net.run(async { lookup_host_on(a, "10.1.2.3").await.unwrap() });
    assert_eq!(literal, vec![IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))]);
    let error = net.run(async { lookup_host_on(a, "example.com").await.err() });
    assert_eq!(error.map(|e| e.kind()), Some(ErrorKind::NotFound));
}

#[test]
fn a_connection_costs_its_two_buffers_and_under_a_kib_more() {
    // 1024 connections with 16 KiB buffers each way must fit an app's heap: what a connection
    // holds besides its buffers is its slot in the socket set.
    assert!(core::mem::size_of::<smoltcp::iface::SocketStorage>() <= 1024);
    let net = net();
    let listener = Listener::bind_on(net.b, addr(B, 7)).unwrap();
    let a = net.a;
    let stream = net.run(async { Stream::connect_on(a, addr(B, 7)).await.unwrap() });
    let buffer = net.a.config().socket_buffer as usize;
    assert_eq!(buffer, 16 * 1024);
    assert_eq!(net.a.open_sockets(), 1);
    drop((stream, listener));
}
