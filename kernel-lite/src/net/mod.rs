//! The network's privileged half: kernel-lite drives the one NIC and switches frames between it
//! and the apps' rings; everything above the frame (ARP, IP, TCP, UDP, DHCP) is each app's own
//! libos instance.
//!
//! - **Receive** (the NIC's MSI-X interrupt): every frame the device has is routed by
//!   `lite_abi::net::switch::route_received` — to the app owning its destination, to every app
//!   for broadcasts, or dropped as having no owner — and copied into that app's receive ring;
//!   each app that got frames gets [`NET_EVENT`]. A DHCP acknowledgement teaches the switch the
//!   address a `dhcp` app leased.
//! - **Transmit** ([`flush`], from the `net_flush` kcall and from every `wait`): the app's
//!   transmit ring is drained, each frame copied once into kernel-lite's memory and checked
//!   there against the app's binding (`check_transmit`); spoofed frames are dropped and
//!   counted. Frames for another app of the image go straight to its ring; the rest go to the
//!   device, in one batch.
//!
//! Every index and length read from an app's ring is checked by `ring::KernelEnd` before use.
//! Lock order: the scheduler's lock may be held when this module's is taken, never the other
//! way: events are raised after this module's lock is dropped.

mod virtio;

use crate::devices::Devices;
use crate::kprintln;
use crate::mm::ring_pages::RingPages;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use lite_abi::kcall::KcallError;
use lite_abi::layout::MAX_APPS;
use lite_abi::net::NET_EVENT;
use lite_abi::net::config::NetConfig;
use lite_abi::net::ring::{Geometry, KernelEnd, MAX_FRAME, RingError};
use lite_abi::net::switch::{Binding, Delivery, check_transmit, dhcp_ack, route_received};
use spin::Mutex;
use virtio::Nic;

/// What one app's port has seen, over all its runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct PortCounters {
    pub frames_in: u64,
    pub bytes_in: u64,
    pub frames_out: u64,
    pub bytes_out: u64,
    /// Frames for the app dropped because its receive ring was full (or it was not running).
    pub dropped_full: u64,
    /// Frames the app sent with a source MAC or IP that is not its own.
    pub dropped_spoofed: u64,
    /// Frames lost to a ring the app broke (impossible index or length).
    pub dropped_bad: u64,
}

struct Port {
    end: KernelEnd,
    memory: RingPages,
    config: NetConfig,
    /// Whether the app runs (frames for it are delivered) or has ended (they are dropped).
    live: bool,
}

struct Network {
    /// Boxed: the driver's queues hold kilobytes of descriptors, and must never be moved onto
    /// a 4 KiB kernel stack.
    nic: Option<alloc::boxed::Box<Nic>>,
    board: Board,
    /// A transmitted frame, copied out of an app's ring, checked and switched from here.
    scratch: alloc::boxed::Box<[u8; MAX_FRAME]>,
}

/// The apps' side of the switch: their bindings and ports.
struct Board {
    /// `bindings[i]` is app `i`'s, as the switch checks it; `None` without a network.
    bindings: Vec<Option<Binding>>,
    ports: Vec<Option<Port>>,
    /// Each bound app's counters, kept after it stops for good (for the final table).
    counters: Vec<Option<PortCounters>>,
    /// Received frames no app owns.
    no_owner: u64,
    /// Apps that got frames since events were last raised.
    to_signal: Vec<usize>,
    /// Apps whose transmit ring still holds frames because the NIC had no free buffer: the
    /// interrupt that gives buffers back sends them (the app may be asleep by then).
    stalled: Vec<usize>,
}

static NETWORK: Mutex<Option<Network>> = Mutex::new(None);
/// Which apps have a port, readable without the lock: every `wait` asks, and most apps have no
/// network.
static BOUND: [AtomicBool; MAX_APPS] = [const { AtomicBool::new(false) }; MAX_APPS];

fn with_network<R>(f: impl FnOnce(&mut Network) -> R) -> Option<R> {
    NETWORK.lock().as_mut().map(f)
}

/// Brings up the NIC (if the machine has one) for a bundle of `app_count` apps. Prints a boot
/// line either way; a missing or broken NIC is not fatal (apps without a network run on).
pub fn init(devices: &'static Devices, app_count: usize) {
    let nic = match Nic::new(devices, on_interrupt) {
        Ok(nic) => {
            let mac = nic.mac;
            kprintln!(
                "kernel-lite: net: virtio-net {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, \
                 {} receive buffers, MSI-X {}; frame switch on",
                mac[0],
                mac[1],
                mac[2],
                mac[3],
                mac[4],
                mac[5],
                virtio::QUEUE_SIZE,
                nic.vector
            );
            Some(alloc::boxed::Box::new(nic))
        }
        Err(virtio::NicError::Virtio(crate::devices::virtio::VirtioError::NotFound)) => None,
        Err(error) => {
            kprintln!("kernel-lite: net: NIC not used: {error}");
            None
        }
    };
    *NETWORK.lock() = Some(Network {
        nic,
        board: Board {
            bindings: (0..app_count).map(|_| None).collect(),
            ports: (0..app_count).map(|_| None).collect(),
            counters: (0..app_count).map(|_| None).collect(),
            no_owner: 0,
            to_signal: Vec::new(),
            stalled: Vec::new(),
        },
        scratch: alloc::boxed::Box::new([0; MAX_FRAME]),
    });
}

/// Binds app `index` to `config`, its rings in `pages` (the app's ring area, mapped). The port
/// stays down until [`start`].
pub fn attach(index: usize, name: &str, config: &NetConfig, pages: Vec<u64>) {
    with_network(|network| {
        if network.nic.is_none() {
            kprintln!("kernel-lite: net: app '{name}' has a network binding but there is no NIC");
        }
        let memory = RingPages::new(pages);
        let end = KernelEnd::reset(Geometry::of(config), config, &memory);
        let board = &mut network.board;
        board.bindings[index] = Some(Binding::of(config));
        board.ports[index] = Some(Port {
            end,
            memory,
            config: *config,
            live: false,
        });
        board.counters[index] = Some(PortCounters::default());
        BOUND[index].store(true, Ordering::Relaxed);
    });
}

/// App `index` (re)starts: its rings are emptied and its binding (re)written into them.
pub fn start(index: usize) {
    with_network(|network| {
        let board = &mut network.board;
        if let Some(port) = board.ports[index].as_mut() {
            port.end = KernelEnd::reset(port.end.geometry(), &port.config, &port.memory);
            port.live = true;
            board.bindings[index] = Some(Binding::of(&port.config));
        }
    });
}

/// App `index` ended: frames for it are dropped until it starts again.
pub fn stop(index: usize) {
    with_network(|network| {
        if let Some(port) = network.board.ports[index].as_mut() {
            port.live = false;
        }
    });
}

/// App `index` will not run again: its port goes (its ring pages may then be unmapped).
pub fn detach(index: usize) {
    BOUND[index].store(false, Ordering::Relaxed);
    with_network(|network| {
        network.board.ports[index] = None;
        network.board.bindings[index] = None;
    });
}

/// What app `index`'s port has seen over all its runs, if it ever had one.
pub fn counters(index: usize) -> Option<PortCounters> {
    with_network(|network| network.board.counters[index]).flatten()
}

/// Received frames no app owned.
pub fn frames_without_owner() -> u64 {
    with_network(|network| network.board.no_owner).unwrap_or(0)
}

impl Board {
    /// Copies `frame` into app `index`'s receive ring, counting what happens.
    fn deliver(&mut self, index: usize, frame: &[u8]) {
        let (Some(port), Some(counters)) = (
            self.ports.get_mut(index).and_then(Option::as_mut),
            self.counters.get_mut(index).and_then(Option::as_mut),
        ) else {
            self.no_owner += 1;
            return;
        };
        if !port.live {
            counters.dropped_full += 1;
            return;
        }
        match port.end.push_rx(&port.memory, frame) {
            Ok(()) => {
                counters.frames_in += 1;
                counters.bytes_in += frame.len() as u64;
                if !self.to_signal.contains(&index) {
                    self.to_signal.push(index);
                }
            }
            Err(RingError::Full | RingError::TooLong { .. }) => counters.dropped_full += 1,
            Err(RingError::Corrupt { .. } | RingError::BadLength { .. }) => {
                counters.dropped_bad += 1
            }
        }
    }

    /// Delivers `frame` as the switch routes it; `except` (the sender of a local frame) does
    /// not get its own broadcast back.
    fn switch(&mut self, frame: &[u8], except: Option<usize>) -> Delivery {
        let delivery = route_received(&self.bindings, frame);
        match delivery {
            Delivery::App(index) => self.deliver(index, frame),
            Delivery::Every => {
                for index in 0..self.ports.len() {
                    if Some(index) != except && self.ports[index].is_some() {
                        self.deliver(index, frame);
                    }
                }
            }
            Delivery::NoOwner | Delivery::Malformed => {
                if except.is_none() {
                    self.no_owner += 1;
                }
            }
        }
        delivery
    }

    fn learn_dhcp_lease(&mut self, frame: &[u8]) {
        if let Some((mac, address)) = dhcp_ack(frame)
            && let Some(binding) = self
                .bindings
                .iter_mut()
                .flatten()
                .find(|binding| binding.mac() == mac)
        {
            binding.learn_ipv4(address);
        }
    }
}

impl Network {
    /// Drains app `index`'s transmit ring: see the module docs. Returns frames that left.
    fn flush(&mut self, index: usize) -> Result<u64, KcallError> {
        let board = &mut self.board;
        match board.ports.get(index) {
            Some(Some(port)) if port.live => {}
            // An app that ended sends nothing more, even what a stalled flush left behind.
            Some(Some(_)) => return Ok(0),
            _ => return Err(KcallError::NoNetwork),
        }
        if let Some(nic) = self.nic.as_mut() {
            nic.reclaim();
        }
        let mut sent = 0;
        loop {
            if self.nic.as_ref().is_some_and(|nic| !nic.can_transmit()) {
                if !board.stalled.contains(&index) {
                    board.stalled.push(index);
                }
                break;
            }
            let (Some(port), Some(binding), Some(counters)) = (
                board.ports[index].as_mut(),
                board.bindings[index].as_ref(),
                board.counters[index].as_mut(),
            ) else {
                break;
            };
            let len = match port.end.pop_tx(&port.memory, &mut self.scratch) {
                Ok(Some(len)) => len,
                Ok(None) => break,
                Err(RingError::Corrupt { .. }) => {
                    counters.dropped_bad += 1;
                    break;
                }
                Err(_) => {
                    counters.dropped_bad += 1;
                    continue;
                }
            };
            let frame = &self.scratch[..len];
            if check_transmit(binding, frame).is_err() {
                counters.dropped_spoofed += 1;
                continue;
            }
            counters.frames_out += 1;
            counters.bytes_out += len as u64;
            if matches!(board.switch(frame, Some(index)), Delivery::App(_)) {
                continue;
            }
            let left = self.nic.as_mut().is_some_and(|nic| {
                nic.transmit(|buffer| {
                    buffer[..len].copy_from_slice(frame);
                    Some(len)
                })
            });
            if left {
                sent += 1;
            } else if let Some(counters) = board.counters[index].as_mut() {
                // No NIC (or it refused the frame): counted as out, but it never left.
                counters.frames_out -= 1;
                counters.bytes_out -= len as u64;
                counters.dropped_full += 1;
            }
        }
        Ok(sent)
    }
}

/// Raises [`NET_EVENT`] for every app that got frames (outside this module's lock).
fn raise_events() {
    let to_signal = with_network(|network| core::mem::take(&mut network.board.to_signal));
    for index in to_signal.into_iter().flatten() {
        crate::apps::signal(index, NET_EVENT);
    }
}

/// Sends what app `index` has queued (the `net_flush` kcall, and every `wait`).
pub fn flush(index: usize) -> Result<u64, KcallError> {
    if !BOUND[index].load(Ordering::Relaxed) {
        return Err(KcallError::NoNetwork);
    }
    let sent = with_network(|network| network.flush(index)).unwrap_or(Err(KcallError::NoNetwork));
    raise_events();
    sent
}

/// The NIC's interrupt: switch every received frame, take back sent buffers.
fn on_interrupt(_context: usize) {
    with_network(|network| {
        let Network { nic, board, .. } = network;
        let Some(nic) = nic.as_mut() else {
            return;
        };
        nic.receive(|frame| {
            board.learn_dhcp_lease(frame);
            board.switch(frame, None);
        });
        nic.reclaim();
        let stalled = core::mem::take(&mut network.board.stalled);
        for index in stalled {
            // The app may be asleep, waiting for ring space to take in frames again: wake it
            // once its frames have left.
            if network.flush(index).is_ok_and(|sent| sent > 0)
                && !network.board.to_signal.contains(&index)
            {
                network.board.to_signal.push(index);
            }
        }
    });
    raise_events();
}
