//! One app's kernel-side record: its slot, its state, its stacks, and what it has used.

use crate::mm::{self, KernelStack, UserAccess};
use alloc::string::String;
use lite_abi::bundle::{AppSpec, RestartPolicy};
use lite_abi::kcall::{Events, KCALL_COUNT};
use lite_abi::layout::{APP_SLOT_SIZE, APP_SLOTS_BASE, AppSlot};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Ready,
    Running,
    Blocked {
        deadline_tsc: u64,
        events: Events,
    },
    /// Ended, to be started again when the TSC reaches `at_tsc` (restart back-off).
    Restarting {
        at_tsc: u64,
    },
    Ended(AppEnd),
}

/// How an app's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnd {
    Exited(i64),
    Faulted,
}

impl AppEnd {
    pub fn failed(self) -> bool {
        self != AppEnd::Exited(0)
    }
}

/// Entries into ring 0, by cause.
#[derive(Debug, Clone, Copy, Default)]
pub struct EntryCounts {
    pub kcalls: [u64; KCALL_COUNT],
    pub unknown_kcalls: u64,
    pub page_faults: u64,
    pub exceptions: u64,
    pub interrupts: u64,
}

impl EntryCounts {
    pub fn count(&mut self, entry: super::Entry) {
        use super::Entry;
        match entry {
            Entry::Kcall(kcall) => self.kcalls[kcall as usize] += 1,
            Entry::UnknownKcall => self.unknown_kcalls += 1,
            Entry::PageFault => self.page_faults += 1,
            Entry::Exception => self.exceptions += 1,
            Entry::Interrupt => self.interrupts += 1,
        }
    }
}

pub struct App {
    pub name: String,
    pub index: usize,
    pub slot: AppSlot,
    pub heap_bytes: u64,
    pub restart: RestartPolicy,
    pub state: AppState,
    pub kernel_stack: Option<KernelStack>,
    /// Entries into ring 0 while this app ran, by cause, over all runs.
    pub entries: EntryCounts,
    /// Whether the app was seen entering ring 0 with RFLAGS.AC set (reported once).
    pub saw_user_ac: bool,
    /// Events signalled and not yet reported by a `wait`.
    pub pending_events: Events,
    /// Ring-3 pages mapped on demand now, and at most at once over all runs.
    pub resident_pages: u64,
    pub peak_pages: u64,
    /// Of those, heap pages now and at most (the part the quota limits).
    pub heap_pages: u64,
    pub heap_peak_pages: u64,
    pub restarts: u16,
    pub faults: u32,
    /// TSC ticks spent running, over all runs.
    pub cpu_ticks: u64,
}

impl App {
    pub fn new(index: usize, spec: &AppSpec<'_>, slot: AppSlot) -> App {
        App {
            name: String::from(spec.name),
            index,
            slot,
            heap_bytes: spec.heap_bytes,
            restart: spec.restart,
            state: AppState::Ended(AppEnd::Exited(0)),
            kernel_stack: None,
            entries: EntryCounts::default(),
            saw_user_ac: false,
            pending_events: Events::NONE,
            resident_pages: 0,
            peak_pages: 0,
            heap_pages: 0,
            heap_peak_pages: 0,
            restarts: 0,
            faults: 0,
            cpu_ticks: 0,
        }
    }

    fn slot_base(&self) -> u64 {
        APP_SLOTS_BASE + self.index as u64 * APP_SLOT_SIZE
    }

    /// Whether `address` lies in the app's stack or heap, where pages are mapped on demand.
    pub fn owns_address(&self, address: u64) -> bool {
        (self.slot.stack_bottom..self.slot.stack_top).contains(&address)
            || (self.slot.heap_base..self.slot.heap_base + self.heap_bytes).contains(&address)
    }

    /// Maps the page holding `address` (which [`App::owns_address`]).
    pub fn map_on_demand(&mut self, address: u64) -> Result<(), mm::MapError> {
        mm::map_user_page(address & !0xfff, UserAccess::ReadWrite)?;
        self.resident_pages += 1;
        self.peak_pages = self.peak_pages.max(self.resident_pages);
        if address >= self.slot.heap_base {
            self.heap_pages += 1;
            self.heap_peak_pages = self.heap_peak_pages.max(self.heap_pages);
        }
        Ok(())
    }

    /// Returns everything the app's last run held: its kernel stack and every ring-3 page and
    /// page table of its slot.
    pub fn release_memory(&mut self) {
        if let Some(stack) = self.kernel_stack.take() {
            mm::free_kernel_stack(stack);
        }
        mm::release_user_range(self.slot_base(), APP_SLOT_SIZE);
        self.resident_pages = 0;
        self.heap_pages = 0;
    }

    /// Bytes the app holds now: resident ring-3 pages and its kernel stack.
    pub fn memory_bytes(&self) -> u64 {
        let kernel_stack = if self.kernel_stack.is_some() {
            mm::KERNEL_STACK_BYTES
        } else {
            0
        };
        self.resident_pages * 4096 + kernel_stack
    }

    /// The most bytes the app held at once (a run always has its kernel stack).
    pub fn peak_bytes(&self) -> u64 {
        self.peak_pages * 4096 + mm::KERNEL_STACK_BYTES
    }
}
