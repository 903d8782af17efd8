//! Memory: physical frames, the one address space, the kernel heap and guarded kernel stacks.
//!
//! The upper half holds what the bootloader mapped for us (kernel-lite, its boot stack, all of
//! physical memory at an offset) plus kernel-lite's own heap and stacks, all supervisor-only.
//! The lower half starts empty and is ring 3's: the user image, the info page and the apps'
//! slots, mapped with the `USER_ACCESSIBLE` bit and W^X per mapping.
//!
//! Frames come from a bitmap ([`frames`]). An app's pages and page tables are charged to its
//! [`FrameAccount`], whose frames were promised when the bundle was admitted, so one app can
//! never take what another was guaranteed, and running out is an error for the one that asked.

pub mod dma;
mod frames;
pub mod ring_pages;

pub use frames::{FrameAccount, FrameError};

use alloc::vec::Vec;
use frames::Frames;
use linked_list_allocator::LockedHeap;
use lite_abi::layout::{PAGE_SIZE, PAGE_TABLE_REACH, USER_TOP};
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult};
use x86_64::structures::paging::{
    Mapper, OffsetPageTable, Page, PageTable, PageTableFlags, PhysFrame, Size4KiB, Translate,
};

/// kernel-lite's own region (PML4 slot 510): its heap, then its stacks.
const KERNEL_HEAP_BASE: u64 = 0xffff_ff00_0000_0000;
const KERNEL_STACKS_BASE: u64 = 0xffff_ff10_0000_0000;
/// Each kernel stack gets this much virtual space: an unmapped guard page, then the stack.
const KERNEL_STACK_SLOT: u64 = 64 * 1024;
/// Bytes of one kernel stack. Interrupts are off in ring 0, so nothing nests on it (NMIs and
/// machine checks have stacks of their own); it holds one entry's frame and its handler's calls,
/// with no recursion and small buffers (console text is copied 256 bytes at a time). The deepest
/// use over the whole test suite is about 1.2 KiB; each image reports its own deepest use when it
/// ends, and a test keeps it under half of this.
pub const KERNEL_STACK_BYTES: u64 = 4 * 1024;

#[global_allocator]
static KERNEL_HEAP: LockedHeap = LockedHeap::empty();

struct Memory {
    page_table: OffsetPageTable<'static>,
    frames: Frames,
    physical_offset: u64,
    next_stack_slot: u64,
}

static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

fn with_memory<R>(f: impl FnOnce(&mut Memory) -> R) -> R {
    let mut memory = MEMORY.lock();
    f(memory.as_mut().expect("mm::init ran"))
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No frame could be had (for the page or a page table).
    Frames(FrameError),
    /// The page is already mapped (a bug in the caller's layout).
    AlreadyMapped(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::Frames(error) => write!(f, "{error}"),
            MapError::AlreadyMapped(at) => write!(f, "page {at:#x} is already mapped"),
        }
    }
}

impl From<FrameError> for MapError {
    fn from(error: FrameError) -> MapError {
        MapError::Frames(error)
    }
}

fn map_error(error: MapToError<Size4KiB>, page: Page, table_error: FrameError) -> MapError {
    match error {
        MapToError::FrameAllocationFailed => MapError::Frames(table_error),
        _ => MapError::AlreadyMapped(page.start_address().as_u64()),
    }
}

/// Why memory could not be set up at boot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// The memory map has no usable region large enough for the frame bitmap.
    NoMemoryMap,
    /// The boot PML4's slot for kernel-lite's heap and stacks is taken.
    KernelRegionTaken,
    Map(MapError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            InitError::NoMemoryMap => write!(f, "no usable memory for the frame bitmap"),
            InitError::KernelRegionTaken => write!(f, "PML4 slot 510 is taken"),
            InitError::Map(error) => write!(f, "{error}"),
        }
    }
}

/// Builds the address space and a kernel heap of `heap_bytes`.
///
/// # Safety
///
/// 1. All physical memory must be mapped at `physical_offset` in the active page tables.
/// 2. `regions` must be the machine's memory map, with `Usable` regions unused by anything.
/// 3. Must be called once, before anything allocates, with the kernel's own GDT loaded (the
///    bootloader's lives in the lower half, which this drops).
pub unsafe fn init(
    physical_offset: u64,
    regions: &bootloader_api::info::MemoryRegions,
    heap_bytes: u64,
) -> Result<(), InitError> {
    // SAFETY: (1) and (2) are the caller's; this is the only call.
    let mut frames =
        unsafe { Frames::new(regions, physical_offset) }.ok_or(InitError::NoMemoryMap)?;
    let (boot_pml4, _) = Cr3::read();
    let new_pml4 = frames
        .allocate_unpromised()
        .map_err(|error| InitError::Map(error.into()))?;
    let to_virt =
        |frame: PhysFrame| (physical_offset + frame.start_address().as_u64()) as *mut PageTable;
    // SAFETY: (1) both frames are reachable through the physical-memory window; the boot PML4 is
    // live and only read, the new one was just allocated and is not yet in use.
    let (boot, new) = unsafe { (&*to_virt(boot_pml4), &mut *to_virt(new_pml4)) };
    new.zero();
    // Keep the upper half (kernel-lite, the physical-memory window); drop the lower half
    // (the bootloader's identity mappings) so it is ring 3's alone.
    for index in 256..512 {
        new[index] = boot[index].clone();
    }
    if !new[510].is_unused() {
        return Err(InitError::KernelRegionTaken);
    }
    // SAFETY: the new PML4 maps the kernel, its stack and the physical-memory window exactly as
    // the old one did (same upper-half entries), so execution continues unchanged.
    unsafe { Cr3::write(new_pml4, Cr3Flags::empty()) };
    // SAFETY: (1) the new PML4 is active and reachable at this offset; it is only ever used
    // through this one `OffsetPageTable`, behind the `MEMORY` lock.
    let page_table =
        unsafe { OffsetPageTable::new(&mut *to_virt(new_pml4), VirtAddr::new(physical_offset)) };
    let mut memory = Memory {
        page_table,
        frames,
        physical_offset,
        next_stack_slot: 0,
    };
    let heap_flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | no_execute();
    memory
        .map_fresh(KERNEL_HEAP_BASE, heap_bytes, heap_flags, None, |_, _| {})
        .map_err(InitError::Map)?;
    // SAFETY: the heap range was just mapped writable, is used by nothing else, and lives for
    // the whole kernel.
    unsafe {
        KERNEL_HEAP
            .lock()
            .init(KERNEL_HEAP_BASE as *mut u8, heap_bytes as usize)
    };
    *MEMORY.lock() = Some(memory);
    Ok(())
}

/// kernel-lite starts only where NX is on (`cpu::enable_protection`), so W^X always holds.
fn no_execute() -> PageTableFlags {
    PageTableFlags::NO_EXECUTE
}

impl Memory {
    /// Maps `bytes` (rounded up to pages) at `start` to fresh zeroed frames.
    /// Maps `bytes` (rounded up to pages) at `start` to fresh zeroed frames, after `fill` has
    /// written each page's initial contents (page address, page bytes).
    /// Frames (the pages and any page table) come from `account`, or from the unpromised pool
    /// when it is `None`.
    fn map_fresh(
        &mut self,
        start: u64,
        bytes: u64,
        flags: PageTableFlags,
        mut account: Option<&mut FrameAccount>,
        mut fill: impl FnMut(u64, &mut [u8; 4096]),
    ) -> Result<(), MapError> {
        for index in 0..bytes.div_ceil(4096) {
            let address = start + index * 4096;
            let frame = match account.as_deref_mut() {
                Some(account) => self.frames.allocate_for(account)?,
                None => self.frames.allocate_unpromised()?,
            };
            self.zero(frame);
            let contents =
                (self.physical_offset + frame.start_address().as_u64()) as *mut [u8; 4096];
            // SAFETY: the frame is fresh and not yet mapped anywhere, so this is the only
            // reference to it; the physical-memory window maps it writable.
            fill(address, unsafe { &mut *contents });
            let page = Page::containing_address(VirtAddr::new(address));
            let mapped = self.map(page, frame, flags);
            if let Err(error) = mapped {
                // SAFETY: the frame was never mapped, so nothing refers to it.
                unsafe {
                    match account.as_deref_mut() {
                        Some(account) => self.frames.release_for(account, frame),
                        None => self.frames.release(frame),
                    }
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Maps `page` to the fresh `frame`. Missing page tables come from the unpromised pool:
    /// kernel-lite's own mappings make theirs as they go, and the apps' slots have all of
    /// theirs from admission ([`prepare_user_tables`]).
    fn map(&mut self, page: Page, frame: PhysFrame, flags: PageTableFlags) -> Result<(), MapError> {
        // Intermediate tables of ring-3 pages must allow ring 3 too; kernel ones must not.
        let parent_flags = PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | (flags & PageTableFlags::USER_ACCESSIBLE);
        let exhausted = FrameError::Exhausted {
            wanted: 1,
            available: self.frames.available(),
        };
        // SAFETY: the frame is fresh (callers allocate it just before) and, when the page is
        // already mapped, `map_to` refuses: the mapping aliases nothing, so no existing
        // reference is invalidated.
        let flush = unsafe {
            self.page_table.map_to_with_table_flags(
                page,
                frame,
                flags,
                parent_flags,
                &mut self.frames,
            )
        }
        .map_err(|error| map_error(error, page, exhausted))?;
        flush.flush();
        Ok(())
    }

    fn zero(&self, frame: PhysFrame) {
        let at = (self.physical_offset + frame.start_address().as_u64()) as *mut u8;
        // SAFETY: the frame was just allocated, so nothing else refers to it, and it is mapped
        // writable through the physical-memory window.
        unsafe { core::ptr::write_bytes(at, 0, 4096) };
    }
}

/// A kernel stack: `top` is the initial stack pointer; the page below its bottom is unmapped.
#[derive(Debug, Clone, Copy)]
pub struct KernelStack {
    pub top: VirtAddr,
}

impl KernelStack {
    /// The most bytes of this stack ever used: stacks start zeroed, so the lowest byte that is
    /// not zero marks the deepest point reached (a value pushed as zero there can make this an
    /// underestimate by a few words).
    pub fn high_water(&self) -> u64 {
        let bottom = self.top.as_u64() - KERNEL_STACK_BYTES;
        // SAFETY: the stack's pages are mapped for as long as kernel-lite runs, and reading them
        // while nothing runs on them (the caller is on another stack) races with nothing.
        let bytes = unsafe {
            core::slice::from_raw_parts(bottom as *const u64, (KERNEL_STACK_BYTES / 8) as usize)
        };
        let untouched = bytes.iter().take_while(|&&word| word == 0).count() as u64;
        KERNEL_STACK_BYTES - untouched * 8
    }
}

/// Maps a new kernel stack with a guard page below it, from the unpromised pool. Kernel stacks
/// live as long as kernel-lite: an app keeps its own across restarts.
pub fn allocate_kernel_stack() -> Result<KernelStack, MapError> {
    with_memory(|memory| {
        let slot = memory.next_stack_slot;
        let top = KERNEL_STACKS_BASE + (slot + 1) * KERNEL_STACK_SLOT;
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | no_execute();
        memory.map_fresh(
            top - KERNEL_STACK_BYTES,
            KERNEL_STACK_BYTES,
            flags,
            None,
            |_, _| {},
        )?;
        memory.next_stack_slot += 1;
        Ok(KernelStack {
            top: VirtAddr::new(top),
        })
    })
}

/// Access rights for a ring-3 mapping.
#[allow(clippy::enum_variant_names)] // named after what ring 3 may do
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAccess {
    ReadOnly,
    ReadWrite,
    ReadExecute,
}

fn user_flags(access: UserAccess) -> PageTableFlags {
    let base = PageTableFlags::PRESENT | PageTableFlags::USER_ACCESSIBLE;
    match access {
        UserAccess::ReadOnly => base | no_execute(),
        UserAccess::ReadWrite => base | PageTableFlags::WRITABLE | no_execute(),
        UserAccess::ReadExecute => base,
    }
}

/// Maps `bytes` at `start` (page-aligned, below [`USER_TOP`]) to fresh zeroed frames for ring 3,
/// after `fill` has written each page's initial contents (page address, page bytes). The
/// frames come from the unpromised pool (the user image, the info page).
pub fn map_user(
    start: u64,
    bytes: u64,
    access: UserAccess,
    fill: impl FnMut(u64, &mut [u8; 4096]),
) -> Result<(), MapError> {
    assert!(
        start.is_multiple_of(PAGE_SIZE) && start + bytes <= USER_TOP,
        "user range outside the lower half"
    );
    with_memory(|memory| memory.map_fresh(start, bytes, user_flags(access), None, fill))
}

/// Maps `count` fresh zeroed pages from `address` (page-aligned) for ring 3, charged to
/// `account`: demand paging of an app's stack and heap. Stops at the first page already mapped
/// (returning how many it mapped) or when the account is spent after at least one page.
pub fn map_user_pages(
    address: u64,
    count: u64,
    access: UserAccess,
    account: &mut FrameAccount,
) -> Result<u64, MapError> {
    assert!(address.is_multiple_of(PAGE_SIZE) && address + count * PAGE_SIZE <= USER_TOP);
    with_memory(|memory| {
        let mut mapped = 0;
        while mapped < count {
            let page = address + mapped * PAGE_SIZE;
            if mapped > 0 && memory.is_mapped(page) {
                break;
            }
            match memory.map_fresh(
                page,
                PAGE_SIZE,
                user_flags(access),
                Some(account),
                |_, _| {},
            ) {
                Ok(()) => mapped += 1,
                Err(_) if mapped > 0 => break,
                Err(error) => return Err(error),
            }
        }
        Ok(mapped)
    })
}

/// Makes every page table (and the directories above) over `start..end`, from the unpromised
/// pool, so that demand paging in the apps' slots there never allocates one and a table shared
/// by several small apps belongs to none of them. Done once at admission; never freed.
pub fn prepare_user_tables(start: u64, end: u64) -> Result<(), MapError> {
    with_memory(|memory| {
        let offset = memory.physical_offset;
        let table_at =
            |frame: PhysFrame| (offset + frame.start_address().as_u64()) as *mut PageTable;
        let flags =
            PageTableFlags::PRESENT | PageTableFlags::WRITABLE | PageTableFlags::USER_ACCESSIBLE;
        let mut address = start & !(PAGE_TABLE_REACH - 1);
        while address < end {
            let indices = [
                (address >> 39) as usize & 511,
                (address >> 30) as usize & 511,
                (address >> 21) as usize & 511,
            ];
            let mut table_frame = Cr3::read().0;
            for index in indices {
                // SAFETY: page-table frames are reachable through the physical-memory window
                // and only touched behind the `MEMORY` lock, which we hold.
                let table = unsafe { &mut *table_at(table_frame) };
                if table[index].is_unused() {
                    let frame = memory.frames.allocate_unpromised()?;
                    memory.zero(frame);
                    table[index].set_frame(frame, flags);
                }
                table_frame = table[index].frame().expect("present above");
            }
            address += PAGE_TABLE_REACH;
        }
        Ok(())
    })
}

/// Unmaps everything ring 3 has in `start..end` (page-aligned: one app's slot) and returns the
/// frames to `account`. The page tables stay: they may serve the next slot too.
pub fn release_user_range(start: u64, end: u64, account: &mut FrameAccount) {
    assert!(start.is_multiple_of(PAGE_SIZE) && end.is_multiple_of(PAGE_SIZE) && end <= USER_TOP);
    with_memory(|memory| {
        let offset = memory.physical_offset;
        let table_at =
            |frame: PhysFrame| (offset + frame.start_address().as_u64()) as *mut PageTable;
        // Frames go back to the bitmap as the walk finds them (no list on the kernel heap, whose
        // size must not depend on an app's): nothing can take them before the flush below, as
        // we hold the lock with interrupts off on the only CPU, and the ended app cannot run.
        let frames = &mut memory.frames;
        let pml4 = memory.page_table.level_4_table_mut();
        let mut address = start;
        while address < end {
            // This table's part of the range.
            let table_end = ((address / PAGE_TABLE_REACH) + 1) * PAGE_TABLE_REACH;
            let part_end = table_end.min(end);
            let first = (address >> 12) as usize & 511;
            let count = ((part_end - address) / PAGE_SIZE) as usize;
            let (p4, p3, p2) = (
                (address >> 39) as usize & 511,
                (address >> 30) as usize & 511,
                (address >> 21) as usize & 511,
            );
            address = part_end;
            let Ok(pdpt_frame) = pml4[p4].frame() else {
                continue;
            };
            // SAFETY: every page-table frame is reachable through the physical-memory window and
            // is only ever accessed behind the `MEMORY` lock, which we hold.
            let pdpt = unsafe { &mut *table_at(pdpt_frame) };
            let Ok(pd_frame) = pdpt[p3].frame() else {
                continue;
            };
            // SAFETY: as above.
            let pd = unsafe { &mut *table_at(pd_frame) };
            let Ok(pt_frame) = pd[p2].frame() else {
                continue;
            };
            // SAFETY: as above.
            let pt = unsafe { &mut *table_at(pt_frame) };
            for pt_entry in pt.iter_mut().skip(first).take(count) {
                if let Ok(frame) = pt_entry.frame() {
                    pt_entry.set_unused();
                    // SAFETY: the frame backed a page of this range only, now unmapped; its
                    // stale translation is flushed below before anything can run in ring 3.
                    unsafe { frames.release_for(account, frame) };
                }
            }
        }
        // One CR3 reload flushes every non-global translation of the range at once.
        x86_64::instructions::tlb::flush_all();
    });
}

/// Maps `bytes` (whole pages) at `start` for ring 3, read-write, to fresh zeroed frames charged
/// to `account`, and returns where kernel-lite reaches each page through the physical-memory
/// window, in order: memory ring 3 and kernel-lite share (an app's frame rings), which
/// kernel-lite then touches from any context without walking page tables or meeting SMAP.
pub fn map_shared_with_user(
    start: u64,
    bytes: u64,
    account: &mut FrameAccount,
) -> Result<Vec<u64>, MapError> {
    assert!(
        start.is_multiple_of(PAGE_SIZE)
            && bytes.is_multiple_of(PAGE_SIZE)
            && start + bytes <= USER_TOP,
        "shared range outside the lower half"
    );
    let mut pages = Vec::with_capacity((bytes / PAGE_SIZE) as usize);
    with_memory(|memory| {
        memory.map_fresh(
            start,
            bytes,
            user_flags(UserAccess::ReadWrite),
            Some(account),
            |_, contents| pages.push(contents.as_mut_ptr() as u64),
        )
    })?;
    Ok(pages)
}

/// The physical address of kernel-lite memory at `virtual_address` in the physical-memory
/// window (DMA buffers are reached there), or `None` outside the window.
pub fn window_to_physical(virtual_address: u64) -> Option<u64> {
    let offset = with_memory(|memory| memory.physical_offset);
    virtual_address.checked_sub(offset)
}

/// Promises `frames` frames to a new account (see [`frames`]).
pub fn promise(frames: u64) -> Result<FrameAccount, FrameError> {
    with_memory(|memory| memory.frames.promise(frames))
}

/// Frames neither in use nor promised.
pub fn available_frames() -> u64 {
    with_memory(|memory| memory.frames.available())
}

/// Ends an account that holds no frames: its promise returns to the pool.
pub fn close_account(account: &mut FrameAccount) {
    with_memory(|memory| memory.frames.close(account));
}

impl Memory {
    fn is_mapped(&self, address: u64) -> bool {
        matches!(
            self.page_table.translate(VirtAddr::new(address)),
            TranslateResult::Mapped { .. }
        )
    }
}

/// Why a copy from ring-3 memory failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserCopyError {
    /// The range leaves the lower half (or wraps).
    OutOfRange,
    /// The page at this address is not mapped, or not for ring 3.
    NotMapped(u64),
}

/// Copies ring-3 memory at `address..address + out.len()` into `out`, through the
/// physical-memory window, after checking that every page is mapped for ring 3.
pub fn copy_from_user(address: u64, out: &mut [u8]) -> Result<(), UserCopyError> {
    let end = address
        .checked_add(out.len() as u64)
        .ok_or(UserCopyError::OutOfRange)?;
    if end > USER_TOP {
        return Err(UserCopyError::OutOfRange);
    }
    with_memory(|memory| {
        let mut done = 0usize;
        while done < out.len() {
            let at = address + done as u64;
            let (physical, flags) = match memory.page_table.translate(VirtAddr::new(at)) {
                TranslateResult::Mapped {
                    frame,
                    offset,
                    flags,
                } => (frame.start_address() + offset, flags),
                _ => return Err(UserCopyError::NotMapped(at)),
            };
            if !flags.contains(PageTableFlags::USER_ACCESSIBLE) {
                return Err(UserCopyError::NotMapped(at));
            }
            let chunk = ((4096 - at % 4096) as usize).min(out.len() - done);
            let source = (memory.physical_offset + physical.as_u64()) as *const u8;
            // SAFETY: the range lies within one mapped frame, reachable through the
            // physical-memory window; a single CPU with interrupts off means ring 3 cannot
            // change it during the copy.
            unsafe { core::ptr::copy_nonoverlapping(source, out[done..].as_mut_ptr(), chunk) };
            done += chunk;
        }
        Ok(())
    })
}

/// Physical frames in use now, at most so far, promised, and in all, for accounting.
pub fn frame_usage() -> FrameUsage {
    with_memory(|memory| FrameUsage {
        in_use: memory.frames.in_use(),
        peak: memory.frames.peak(),
        promised: memory.frames.promised(),
        total: memory.frames.total(),
    })
}

/// See [`frame_usage`].
#[derive(Debug, Clone, Copy)]
pub struct FrameUsage {
    pub in_use: u64,
    pub peak: u64,
    pub promised: u64,
    pub total: u64,
}
