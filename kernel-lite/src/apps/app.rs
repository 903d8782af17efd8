//! One app's kernel-side record: its slot, its stacks, its memory promise, and what it has used.
//! Where it stands (ready, blocked, ended) is the policy's ([`lite_core::schedule`]).

use crate::mm::{self, FrameAccount, KernelStack, UserAccess};
use alloc::string::String;
use core::sync::atomic::{AtomicU64, Ordering};
use lite_abi::bundle::AppSpec;
use lite_abi::kcall::KCALL_COUNT;
use lite_abi::layout::{AppSlot, PAGE_SIZE};

/// Entries into ring 0, by cause. Atomics, so the entry paths count through a shared pointer
/// to the running app's counters without taking the scheduler lock (see `apps::count_entry`).
#[derive(Debug, Default)]
pub struct EntryCounts {
    pub kcalls: [AtomicU64; KCALL_COUNT],
    pub unknown_kcalls: AtomicU64,
    pub page_faults: AtomicU64,
    pub exceptions: AtomicU64,
    pub interrupts: AtomicU64,
}

impl EntryCounts {
    pub fn count(&self, entry: super::Entry) {
        use super::Entry;
        let counter = match entry {
            Entry::Kcall(kcall) => &self.kcalls[kcall as usize],
            Entry::UnknownKcall => &self.unknown_kcalls,
            Entry::PageFault => &self.page_faults,
            Entry::Exception => &self.exceptions,
            Entry::Interrupt => &self.interrupts,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

pub struct App {
    pub name: String,
    pub index: usize,
    pub slot: AppSlot,
    /// Made at admission and kept across restarts.
    pub kernel_stack: KernelStack,
    /// The frames promised to the app at admission (its stack and heap pages and their page
    /// tables), and those it holds now.
    pub account: FrameAccount,
    /// Entries into ring 0 while this app ran, by cause, over all runs.
    pub entries: EntryCounts,
    /// Whether the app was seen entering ring 0 with RFLAGS.AC set (reported once).
    pub saw_user_ac: bool,
    /// Ring-3 pages mapped on demand now, and at most at once over all runs.
    pub resident_pages: u64,
    pub peak_pages: u64,
    /// Of those, heap pages now and at most (the part the quota limits).
    pub heap_pages: u64,
    pub heap_peak_pages: u64,
    /// TSC ticks spent running, over all runs.
    pub cpu_ticks: u64,
}

impl App {
    /// Frames an app with `slot` is promised: every page its stack and heap can hold, and its
    /// frame rings (their page tables are kernel-lite's, made at admission).
    pub fn guaranteed_frames(slot: &AppSlot) -> u64 {
        slot.pages() + (slot.net_bytes + slot.blk_bytes) / PAGE_SIZE
    }

    pub fn new(
        index: usize,
        spec: &AppSpec<'_>,
        slot: AppSlot,
        kernel_stack: KernelStack,
        account: FrameAccount,
    ) -> App {
        App {
            name: String::from(spec.name),
            index,
            slot,
            kernel_stack,
            account,
            entries: EntryCounts::default(),
            saw_user_ac: false,
            resident_pages: 0,
            peak_pages: 0,
            heap_pages: 0,
            heap_peak_pages: 0,
            cpu_ticks: 0,
        }
    }

    /// Whether `address` lies in the app's stack or heap, where pages are mapped on demand.
    pub fn owns_address(&self, address: u64) -> bool {
        self.slot.owns(address)
    }

    /// Maps the page holding `address` (which [`App::owns_address`]), and in the heap a run of
    /// pages after it that grows with the heap (a quarter of the resident heap, 1 to 64 pages),
    /// so a small app pays for no page it does not touch while a large one takes far fewer
    /// first-touch traps. Its frames come from the app's own promise.
    pub fn map_on_demand(&mut self, address: u64) -> Result<(), mm::MapError> {
        let page = address & !(PAGE_SIZE - 1);
        let in_heap = page >= self.slot.heap_base;
        let run = if in_heap {
            let heap_end = self.slot.heap_base + self.slot.heap_bytes;
            (self.heap_pages / 4)
                .clamp(1, 64)
                .min((heap_end - page) / PAGE_SIZE)
        } else {
            1
        };
        let mapped = mm::map_user_pages(page, run, UserAccess::ReadWrite, &mut self.account)?;
        self.resident_pages += mapped;
        self.peak_pages = self.peak_pages.max(self.resident_pages);
        if in_heap {
            self.heap_pages += mapped;
            self.heap_peak_pages = self.heap_peak_pages.max(self.heap_pages);
        }
        Ok(())
    }

    /// Returns everything the app's last run held: every ring-3 page of its stack and heap (to
    /// its account: they stay promised to it for a restart). Its frame rings stay, like its
    /// kernel stack, until it will not run again ([`App::release_rings`]).
    pub fn release_memory(&mut self) {
        mm::release_user_range(self.slot.base, self.slot.net_base, &mut self.account);
        self.resident_pages = 0;
        self.heap_pages = 0;
    }

    /// Maps the app's frame rings (charged to its promise) and binds it to the network.
    pub fn attach_network(
        &mut self,
        config: &lite_abi::net::config::NetConfig,
    ) -> Result<(), mm::MapError> {
        let pages =
            mm::map_shared_with_user(self.slot.net_base, self.slot.net_bytes, &mut self.account)?;
        crate::net::attach(self.index, &self.name, config, pages);
        Ok(())
    }

    /// Maps the app's block ring (charged to its promise) and binds it to its extent.
    pub fn attach_disk(
        &mut self,
        binding: &lite_abi::blk::DiskBinding,
    ) -> Result<(), mm::MapError> {
        let pages =
            mm::map_shared_with_user(self.slot.blk_base, self.slot.blk_bytes, &mut self.account)?;
        crate::storage::attach(self.index, binding, pages);
        Ok(())
    }

    /// The app will not run again: unbinds it and returns its rings to its account.
    pub fn release_rings(&mut self) {
        if self.slot.net_bytes > 0 {
            crate::net::detach(self.index);
        }
        if self.slot.blk_bytes > 0 {
            crate::storage::detach(self.index);
        }
        if self.slot.net_bytes + self.slot.blk_bytes > 0 {
            mm::release_user_range(self.slot.net_base, self.slot.end, &mut self.account);
        }
    }

    /// Bytes of its promise the app holds now: its ring-3 pages.
    pub fn memory_bytes(&self) -> u64 {
        self.account.held * PAGE_SIZE
    }

    /// The most bytes the app held at once: its ring-3 pages at peak, its frame rings and its
    /// kernel stack.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_pages * PAGE_SIZE
            + self.slot.net_bytes
            + self.slot.blk_bytes
            + mm::KERNEL_STACK_BYTES
    }

    /// The heap quota, in bytes.
    pub fn heap_bytes(&self) -> u64 {
        self.slot.heap_bytes
    }
}
