//! Storage's privileged half: kernel-lite drives the one disk and binds each app with an
//! `[app.disk]` to its extent; the file system above the block is each app's own libos instance.
//!
//! - **Binding.** At boot the disk table (sector 0, written by the xtask) is read and checked
//!   (`lite_abi::blk::table`); an app whose bundle record has a disk binding gets the table's
//!   extent with its name, if the sizes agree. Otherwise it runs without a disk and `blk_kick`
//!   answers `NoDisk`; the boot log says why.
//! - **Requests** ([`kick`], from the `blk_kick` kcall and from every `wait`): requests are
//!   taken from the app's ring by `ring::KernelEnd`, which reads each once into kernel-lite's
//!   memory and checks it against the extent (sectors counted from the extent's start,
//!   overflow checked) and the ring's buffers; a broken one is completed with an error status.
//!   A write's data is copied into a bounce buffer, then the request goes to the device; up to
//!   `disk::IN_FLIGHT` are in flight over all apps, the rest wait on their rings.
//! - **Flush is a barrier.** An app's flush is sent to the device only once every request the
//!   app made before it has completed, and the app's later requests wait behind it, so "a
//!   flush completes ⇒ everything completed before it is durable" holds without the app
//!   having to drain its ring first.
//! - **Completions** (the disk's MSI-X interrupt): a read's data is copied into the app's
//!   buffer, the completion posted on its ring, and the app gets [`BLK_EVENT`].
//! - **Restarts.** Requests of an app's earlier run that are still in the device when it
//!   restarts complete into nothing, and the new run's requests wait until they have: a write
//!   of a dead run can never land after a write of the new one.
//!
//! Lock order: as for the network, this module's lock is never held while raising events.

mod disk;

use crate::devices::Devices;
use crate::kprintln;
use crate::mm::ring_pages::RingPages;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use disk::{Disk, Kind};
use lite_abi::blk::ring::{CorruptIndex, Geometry, KernelEnd, Op, Request, Status, Taken};
use lite_abi::blk::table::{DiskTable, TABLE_BYTES};
use lite_abi::blk::{BLK_EVENT, DiskBinding, SECTOR_BYTES};
use lite_abi::bundle::Bundle;
use lite_abi::kcall::KcallError;
use lite_abi::layout::MAX_APPS;
use spin::Mutex;

/// What one app's extent has seen, over all its runs.
#[derive(Debug, Default, Clone, Copy)]
pub struct ExtentCounters {
    pub reads: u64,
    pub writes: u64,
    pub flushes: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Requests refused by the check (outside the extent, bad buffer or length, bad op).
    pub refused: u64,
    /// Requests the device failed.
    pub device_errors: u64,
    /// Times the app's ring held an impossible index.
    pub bad_ring: u64,
}

/// An app's extent and its ring.
struct Port {
    /// First sector of the extent on the disk, and its length.
    start: u64,
    sectors: u64,
    geometry: Geometry,
    end: KernelEnd,
    memory: RingPages,
    live: bool,
    /// Bumped at each start: completions of an earlier run are dropped.
    run: u32,
    /// The app's requests in the device, of any run.
    in_device: u32,
    /// Requests of an earlier run are still in the device: take nothing new until they are done.
    draining: bool,
    /// A flush taken from the ring, waiting for the requests before it.
    held_flush: Option<u32>,
}

/// A request in the device: whose, and where its completion goes.
#[derive(Clone, Copy)]
struct InFlight {
    app: usize,
    run: u32,
    tag: u32,
    op: Op,
    buffer_offset: usize,
    bytes: usize,
}

struct Storage {
    /// Boxed: the queue holds kilobytes of descriptors (kernel stacks are 4 KiB).
    disk: Option<alloc::boxed::Box<Disk>>,
    /// `extents[i]`: app `i`'s checked extent (start, sectors), if it has one.
    extents: Vec<Option<(u64, u64)>>,
    ports: Vec<Option<Port>>,
    counters: Vec<Option<ExtentCounters>>,
    in_flight: [Option<InFlight>; disk::IN_FLIGHT],
    /// Apps with requests left on their ring for want of a device slot (or behind a barrier).
    waiting: Vec<usize>,
    to_signal: Vec<usize>,
}

static STORAGE: Mutex<Option<Storage>> = Mutex::new(None);
/// Which apps have a bound extent, readable without the lock: every `wait` asks.
static BOUND: [AtomicBool; MAX_APPS] = [const { AtomicBool::new(false) }; MAX_APPS];

fn with_storage<R>(f: impl FnOnce(&mut Storage) -> R) -> Option<R> {
    STORAGE.lock().as_mut().map(f)
}

/// Brings up the disk (if the machine has one), reads its table and checks each app's disk
/// binding against it. Prints what it found; a missing disk or table is not fatal (apps
/// without a disk run on, apps with one are told `NoDisk`).
pub fn init(devices: &'static Devices, bundle: &Bundle<'_>) {
    let wanted: Vec<(String, DiskBinding)> = bundle
        .apps()
        .filter_map(|app| app.disk.map(|disk| (String::from(app.name), disk)))
        .collect();
    let mut extents: Vec<Option<(u64, u64)>> = (0..bundle.app_count()).map(|_| None).collect();
    let disk = match Disk::new(devices, on_interrupt) {
        Ok(mut disk) => {
            kprintln!(
                "kernel-lite: disk: virtio-blk {} MiB{}{}, MSI-X {}",
                (disk.capacity * SECTOR_BYTES) >> 20,
                if disk.flushes {
                    ", write cache flushed on request"
                } else {
                    ", write-through"
                },
                if disk.read_only { ", read-only" } else { "" },
                disk.vector
            );
            bind_extents(&mut disk, bundle, &mut extents);
            Some(alloc::boxed::Box::new(disk))
        }
        Err(disk::DiskError::Virtio(crate::devices::virtio::VirtioError::NotFound)) => {
            if !wanted.is_empty() {
                kprintln!("kernel-lite: disk: none attached; apps with [app.disk] run without one");
            }
            None
        }
        Err(error) => {
            kprintln!("kernel-lite: disk: not used: {error}");
            None
        }
    };
    *STORAGE.lock() = Some(Storage {
        disk,
        extents,
        ports: (0..bundle.app_count()).map(|_| None).collect(),
        counters: (0..bundle.app_count()).map(|_| None).collect(),
        in_flight: [None; disk::IN_FLIGHT],
        waiting: Vec::new(),
        to_signal: Vec::new(),
    });
}

/// Reads the disk table and fills `extents` for every app whose binding matches its entry.
fn bind_extents(disk: &mut Disk, bundle: &Bundle<'_>, extents: &mut [Option<(u64, u64)>]) {
    if bundle.apps().all(|app| app.disk.is_none()) {
        return;
    }
    let mut table = alloc::vec![0u8; TABLE_BYTES];
    if let Err(error) = disk.read_now(0, &mut table) {
        kprintln!("kernel-lite: disk: {error}; no app gets its extent");
        return;
    }
    let table = match DiskTable::parse(&table, disk.capacity) {
        Ok(table) => table,
        Err(error) => {
            kprintln!("kernel-lite: disk: table refused: {error}; no app gets its extent");
            return;
        }
    };
    for (index, app) in bundle.apps().enumerate() {
        let Some(binding) = app.disk else { continue };
        match table.extent_of(app.name) {
            Some(extent) if extent.bytes() == binding.bytes => {
                kprintln!(
                    "kernel-lite: disk: app '{}' gets sectors {}..{} ({} MiB)",
                    app.name,
                    extent.first_sector,
                    extent.end_sector(),
                    extent.bytes() >> 20
                );
                extents[index] = Some((extent.first_sector, extent.sectors));
            }
            Some(extent) => kprintln!(
                "kernel-lite: disk: app '{}' asks for {} bytes but its extent has {}: not bound",
                app.name,
                binding.bytes,
                extent.bytes()
            ),
            None => kprintln!(
                "kernel-lite: disk: the disk table has no extent for app '{}': not bound",
                app.name
            ),
        }
    }
}

/// Binds app `index` to its extent with its ring in `pages` (the app's block-ring area,
/// mapped); nothing happens when its extent did not check out. The port is down until [`start`].
pub fn attach(index: usize, binding: &DiskBinding, pages: Vec<u64>) {
    with_storage(|storage| {
        let Some(Some((start, sectors))) = storage.extents.get(index).copied() else {
            return;
        };
        if storage.disk.is_none() {
            return;
        }
        let memory = RingPages::new(pages);
        let end = KernelEnd::reset(binding.geometry, sectors, &memory);
        storage.ports[index] = Some(Port {
            start,
            sectors,
            geometry: binding.geometry,
            end,
            memory,
            live: false,
            run: 0,
            in_device: 0,
            draining: false,
            held_flush: None,
        });
        storage.counters[index] = Some(ExtentCounters::default());
        BOUND[index].store(true, Ordering::Relaxed);
    });
}

/// App `index` (re)starts: its ring is emptied; requests of its last run still in the device
/// must finish before new ones are taken.
pub fn start(index: usize) {
    with_storage(|storage| {
        if let Some(port) = storage.ports[index].as_mut() {
            port.end = KernelEnd::reset(port.geometry, port.sectors, &port.memory);
            port.run = port.run.wrapping_add(1);
            port.live = true;
            port.held_flush = None;
            port.draining = port.in_device > 0;
        }
    });
}

/// App `index` ended: nothing more is taken from its ring until it starts again.
pub fn stop(index: usize) {
    with_storage(|storage| {
        if let Some(port) = storage.ports[index].as_mut() {
            port.live = false;
        }
    });
}

/// App `index` will not run again: its port goes (its ring pages may then be unmapped;
/// completions still in the device find no port and are dropped).
pub fn detach(index: usize) {
    BOUND[index].store(false, Ordering::Relaxed);
    with_storage(|storage| storage.ports[index] = None);
}

/// What app `index`'s extent has seen over all its runs, if it ever had one.
pub fn counters(index: usize) -> Option<ExtentCounters> {
    with_storage(|storage| storage.counters[index]).flatten()
}

impl Storage {
    /// Takes what app `index`'s ring holds and starts it on the device: see the module docs.
    /// Returns how many requests were taken.
    fn kick(&mut self, index: usize) -> Result<u64, KcallError> {
        let Storage {
            disk,
            ports,
            counters,
            in_flight,
            waiting,
            to_signal,
            ..
        } = self;
        let (Some(disk), Some(Some(port)), Some(Some(counters))) =
            (disk.as_mut(), ports.get_mut(index), counters.get_mut(index))
        else {
            return Err(KcallError::NoDisk);
        };
        if !port.live || port.draining {
            return Ok(0);
        }
        let mut taken = 0;
        loop {
            if let Some(tag) = port.held_flush {
                if port.in_device > 0 {
                    break;
                }
                let Some(slot) = disk.reserve() else {
                    waiting_on(waiting, index);
                    break;
                };
                port.held_flush = None;
                start_request(
                    disk,
                    port,
                    counters,
                    in_flight,
                    slot,
                    index,
                    flush(tag),
                    to_signal,
                );
                continue;
            }
            let Some(slot) = disk.reserve() else {
                // Taken again from the interrupt that frees a slot.
                if port
                    .end
                    .pending(&port.memory)
                    .is_ok_and(|pending| pending > 0)
                {
                    waiting_on(waiting, index);
                }
                break;
            };
            let request = match port.end.take(&port.memory) {
                Ok(Some(Taken::Request(request))) => request,
                Ok(Some(Taken::Refused { tag, status })) => {
                    disk.unreserve(slot);
                    counters.refused += 1;
                    taken += 1;
                    post(port, counters, tag, status, index, to_signal);
                    continue;
                }
                Ok(None) => {
                    disk.unreserve(slot);
                    break;
                }
                Err(CorruptIndex(_)) => {
                    disk.unreserve(slot);
                    counters.bad_ring += 1;
                    break;
                }
            };
            taken += 1;
            if request.op == Op::Flush && port.in_device > 0 {
                disk.unreserve(slot);
                port.held_flush = Some(request.tag);
                continue;
            }
            start_request(
                disk, port, counters, in_flight, slot, index, request, to_signal,
            );
        }
        disk.notify();
        Ok(taken)
    }

    /// Handles every request the device finished; then takes more from the apps that waited.
    fn complete(&mut self) {
        let Some(disk) = self.disk.as_mut() else {
            return;
        };
        let mut freed = false;
        while let Some((slot, ok)) = disk.complete() {
            freed = true;
            let Some(request) = self.in_flight[slot].take() else {
                disk.release(slot);
                continue;
            };
            let port = self.ports.get_mut(request.app).and_then(Option::as_mut);
            let counters = self.counters.get_mut(request.app).and_then(Option::as_mut);
            let (Some(port), Some(counters)) = (port, counters) else {
                disk.release(slot);
                continue;
            };
            port.in_device = port.in_device.saturating_sub(1);
            if port.run != request.run {
                if port.in_device == 0 && port.draining {
                    port.draining = false;
                    waiting_on(&mut self.waiting, request.app);
                }
                disk.release(slot);
                continue;
            }
            if ok && request.op == Op::Read {
                port.memory
                    .write(request.buffer_offset, &disk.bounce(slot)[..request.bytes]);
            }
            disk.release(slot);
            let status = if ok { Status::Ok } else { Status::DeviceError };
            if !ok {
                counters.device_errors += 1;
            }
            post(
                port,
                counters,
                request.tag,
                status,
                request.app,
                &mut self.to_signal,
            );
            if port.held_flush.is_some() && port.in_device == 0 {
                waiting_on(&mut self.waiting, request.app);
            }
        }
        if freed {
            for index in core::mem::take(&mut self.waiting) {
                let _ = self.kick(index);
            }
        }
    }
}

fn flush(tag: u32) -> Request {
    Request {
        tag,
        op: Op::Flush,
        sector: 0,
        sectors: 0,
        buffer_offset: 0,
    }
}

fn waiting_on(waiting: &mut Vec<usize>, index: usize) {
    if !waiting.contains(&index) {
        waiting.push(index);
    }
}

/// Posts a completion on the app's ring and marks it to be signalled.
fn post(
    port: &mut Port,
    counters: &mut ExtentCounters,
    tag: u32,
    status: Status,
    index: usize,
    to_signal: &mut Vec<usize>,
) {
    if port.end.complete(&port.memory, tag, status).is_err() {
        counters.bad_ring += 1;
    }
    if !to_signal.contains(&index) {
        to_signal.push(index);
    }
}

/// Starts a checked request of app `index` in reserved slot `slot`.
#[allow(clippy::too_many_arguments)]
fn start_request(
    disk: &mut Disk,
    port: &mut Port,
    counters: &mut ExtentCounters,
    in_flight: &mut [Option<InFlight>; disk::IN_FLIGHT],
    slot: usize,
    index: usize,
    request: Request,
    to_signal: &mut Vec<usize>,
) {
    let bytes = request.sectors as usize * SECTOR_BYTES as usize;
    let (kind, sector) = match request.op {
        Op::Read => (Kind::Read, port.start + request.sector),
        Op::Write => (Kind::Write, port.start + request.sector),
        Op::Flush => (Kind::Flush, 0),
    };
    if kind == Kind::Write {
        port.memory
            .read(request.buffer_offset, &mut disk.bounce(slot)[..bytes]);
    }
    if kind == Kind::Flush && !disk.flushes {
        // A write-through disk: everything completed is durable already.
        disk.unreserve(slot);
        counters.flushes += 1;
        post(port, counters, request.tag, Status::Ok, index, to_signal);
        return;
    }
    if disk.start(slot, kind, sector, bytes).is_err() {
        counters.device_errors += 1;
        post(
            port,
            counters,
            request.tag,
            Status::DeviceError,
            index,
            to_signal,
        );
        return;
    }
    match kind {
        Kind::Read => {
            counters.reads += 1;
            counters.sectors_read += u64::from(request.sectors);
        }
        Kind::Write => {
            counters.writes += 1;
            counters.sectors_written += u64::from(request.sectors);
        }
        Kind::Flush => counters.flushes += 1,
    }
    port.in_device += 1;
    in_flight[slot] = Some(InFlight {
        app: index,
        run: port.run,
        tag: request.tag,
        op: request.op,
        buffer_offset: request.buffer_offset,
        bytes,
    });
}

/// Raises [`BLK_EVENT`] for every app that got completions (outside this module's lock).
fn raise_events() {
    let to_signal = with_storage(|storage| core::mem::take(&mut storage.to_signal));
    for index in to_signal.into_iter().flatten() {
        crate::apps::signal(index, BLK_EVENT);
    }
}

/// Takes what app `index` has queued (the `blk_kick` kcall, and every `wait`).
pub fn kick(index: usize) -> Result<u64, KcallError> {
    if !BOUND[index].load(Ordering::Relaxed) {
        return Err(KcallError::NoDisk);
    }
    let taken = with_storage(|storage| storage.kick(index)).unwrap_or(Err(KcallError::NoDisk));
    raise_events();
    taken
}

/// The disk's interrupt: hand every finished request back to its app.
fn on_interrupt(_context: usize) {
    with_storage(Storage::complete);
    raise_events();
}
