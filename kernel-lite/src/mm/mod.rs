//! Memory: physical frames, the one address space, the kernel heap and guarded kernel stacks.
//!
//! The upper half holds what the bootloader mapped for us (kernel-lite, its boot stack, all of
//! physical memory at an offset) plus kernel-lite's own heap and stacks, all supervisor-only.
//! The lower half starts empty and is ring 3's: the user image, the info page and the apps'
//! slots, mapped with the `USER_ACCESSIBLE` bit and W^X per mapping.

mod frames;

use crate::kprintln;
use frames::Frames;
use linked_list_allocator::LockedHeap;
use lite_abi::exit::ImageOutcome;
use lite_abi::layout::USER_TOP;
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::mapper::{MapToError, TranslateResult, UnmapError};
use x86_64::structures::paging::{
    FrameAllocator, FrameDeallocator, Mapper, OffsetPageTable, Page, PageTable, PageTableFlags,
    PhysFrame, Size4KiB, Translate,
};

/// kernel-lite's own region (PML4 slot 510): its heap, then its stacks.
const KERNEL_HEAP_BASE: u64 = 0xffff_ff00_0000_0000;
const KERNEL_HEAP_BYTES: u64 = 4 * 1024 * 1024;
const KERNEL_STACKS_BASE: u64 = 0xffff_ff10_0000_0000;
/// Each kernel stack gets this much virtual space: an unmapped guard page, then the stack.
const KERNEL_STACK_SLOT: u64 = 64 * 1024;
/// Bytes of one kernel stack (trap frames, kcall handling; no recursion).
pub const KERNEL_STACK_BYTES: u64 = 16 * 1024;

#[global_allocator]
static KERNEL_HEAP: LockedHeap = LockedHeap::empty();

struct Memory {
    page_table: OffsetPageTable<'static>,
    frames: Frames,
    physical_offset: u64,
    next_stack_slot: u64,
    free_stack_slots: alloc::vec::Vec<u64>,
}

static MEMORY: Mutex<Option<Memory>> = Mutex::new(None);

fn with_memory<R>(f: impl FnOnce(&mut Memory) -> R) -> R {
    let mut memory = MEMORY.lock();
    f(memory.as_mut().expect("mm::init ran"))
}

/// Why a mapping could not be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// No physical frame is left.
    OutOfFrames,
    /// The page is already mapped (a bug in the caller's layout).
    AlreadyMapped(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of physical memory"),
            MapError::AlreadyMapped(at) => write!(f, "page {at:#x} is already mapped"),
        }
    }
}

fn map_error(error: MapToError<Size4KiB>, page: Page) -> MapError {
    match error {
        MapToError::FrameAllocationFailed => MapError::OutOfFrames,
        _ => MapError::AlreadyMapped(page.start_address().as_u64()),
    }
}

/// Builds the address space and the kernel heap.
///
/// # Safety
///
/// 1. All physical memory must be mapped at `physical_offset` in the active page tables.
/// 2. `regions` must be the machine's memory map, with `Usable` regions unused by anything.
/// 3. Must be called once, before anything allocates, with the kernel's own GDT loaded (the
///    bootloader's lives in the lower half, which this drops).
pub unsafe fn init(physical_offset: u64, regions: &bootloader_api::info::MemoryRegions) {
    let mut frames = Frames::new(regions);
    let (boot_pml4, _) = Cr3::read();
    let Some(new_pml4) = frames.allocate_frame() else {
        crate::machine::halt_with(ImageOutcome::KernelPanic, "no memory for page tables");
    };
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
        crate::machine::halt_with(ImageOutcome::KernelPanic, "PML4 slot 510 is taken");
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
        free_stack_slots: alloc::vec::Vec::new(),
    };
    let heap_flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | no_execute();
    if let Err(error) = memory.map_fresh(KERNEL_HEAP_BASE, KERNEL_HEAP_BYTES, heap_flags, |_, _| {})
    {
        kprintln!("kernel-lite: kernel heap: {error}");
        crate::machine::halt_with(ImageOutcome::KernelPanic, "cannot map the kernel heap");
    }
    // SAFETY: the heap range was just mapped writable, is used by nothing else, and lives for
    // the whole kernel.
    unsafe {
        KERNEL_HEAP
            .lock()
            .init(KERNEL_HEAP_BASE as *mut u8, KERNEL_HEAP_BYTES as usize)
    };
    *MEMORY.lock() = Some(memory);
}

/// kernel-lite starts only where NX is on (`cpu::enable_protection`), so W^X always holds.
fn no_execute() -> PageTableFlags {
    PageTableFlags::NO_EXECUTE
}

impl Memory {
    /// Maps `bytes` (rounded up to pages) at `start` to fresh zeroed frames.
    /// Maps `bytes` (rounded up to pages) at `start` to fresh zeroed frames, after `fill` has
    /// written each page's initial contents (page address, page bytes).
    fn map_fresh(
        &mut self,
        start: u64,
        bytes: u64,
        flags: PageTableFlags,
        mut fill: impl FnMut(u64, &mut [u8; 4096]),
    ) -> Result<(), MapError> {
        for index in 0..bytes.div_ceil(4096) {
            let address = start + index * 4096;
            let frame = self.frames.allocate_frame().ok_or(MapError::OutOfFrames)?;
            self.zero(frame);
            let contents =
                (self.physical_offset + frame.start_address().as_u64()) as *mut [u8; 4096];
            // SAFETY: the frame is fresh and not yet mapped anywhere, so this is the only
            // reference to it; the physical-memory window maps it writable.
            fill(address, unsafe { &mut *contents });
            self.map(
                Page::containing_address(VirtAddr::new(address)),
                frame,
                flags,
            )?;
        }
        Ok(())
    }

    fn map(&mut self, page: Page, frame: PhysFrame, flags: PageTableFlags) -> Result<(), MapError> {
        // Intermediate tables of ring-3 pages must allow ring 3 too; kernel ones must not.
        let parent_flags = PageTableFlags::PRESENT
            | PageTableFlags::WRITABLE
            | (flags & PageTableFlags::USER_ACCESSIBLE);
        // SAFETY: the frame is fresh (or a caller-provided frame it owns) and the page is
        // unmapped: the mapping aliases nothing, so no existing reference is invalidated.
        let flush = unsafe {
            self.page_table.map_to_with_table_flags(
                page,
                frame,
                flags,
                parent_flags,
                &mut self.frames,
            )
        }
        .map_err(|error| map_error(error, page))?;
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
    slot: u64,
}

/// Maps a new kernel stack with a guard page below it.
pub fn allocate_kernel_stack() -> Result<KernelStack, MapError> {
    with_memory(|memory| {
        let slot = memory.free_stack_slots.pop().unwrap_or_else(|| {
            memory.next_stack_slot += 1;
            memory.next_stack_slot - 1
        });
        let top = KERNEL_STACKS_BASE + (slot + 1) * KERNEL_STACK_SLOT;
        let flags = PageTableFlags::PRESENT | PageTableFlags::WRITABLE | no_execute();
        memory
            .map_fresh(
                top - KERNEL_STACK_BYTES,
                KERNEL_STACK_BYTES,
                flags,
                |_, _| {},
            )
            .map(|()| KernelStack {
                top: VirtAddr::new(top),
                slot,
            })
            .inspect_err(|_| {
                memory.unmap_range(top - KERNEL_STACK_BYTES, KERNEL_STACK_BYTES);
                memory.free_stack_slots.push(slot);
            })
    })
}

/// Unmaps a kernel stack and returns its frames. Must not be the stack in use.
pub fn free_kernel_stack(stack: KernelStack) {
    let bottom = stack.top.as_u64() - KERNEL_STACK_BYTES;
    with_memory(|memory| {
        memory.unmap_range(bottom, KERNEL_STACK_BYTES);
        memory.free_stack_slots.push(stack.slot);
    });
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
/// after `fill` has written each page's initial contents (page address, page bytes).
pub fn map_user(
    start: u64,
    bytes: u64,
    access: UserAccess,
    fill: impl FnMut(u64, &mut [u8; 4096]),
) -> Result<(), MapError> {
    assert!(
        start % 4096 == 0 && start + bytes <= USER_TOP,
        "user range outside the lower half"
    );
    with_memory(|memory| memory.map_fresh(start, bytes, user_flags(access), fill))
}

/// Maps one fresh zeroed page for ring 3 at `address` (page-aligned): demand paging of an app's
/// stack and heap within its quota.
pub fn map_user_page(address: u64, access: UserAccess) -> Result<(), MapError> {
    map_user(address, 4096, access, |_, _| {})
}

/// Unmaps everything ring 3 has in `start..start + bytes` (both 1 GiB-aligned: an app slot) and
/// returns the frames, including those of the page tables that served only this range.
pub fn release_user_range(start: u64, bytes: u64) {
    const GIB: u64 = 1 << 30;
    assert!(start.is_multiple_of(GIB) && bytes.is_multiple_of(GIB) && start + bytes <= USER_TOP);
    with_memory(|memory| {
        let offset = memory.physical_offset;
        let table_at =
            |frame: PhysFrame| (offset + frame.start_address().as_u64()) as *mut PageTable;
        let mut released = alloc::vec::Vec::new();
        let pml4 = memory.page_table.level_4_table_mut();
        let mut address = start;
        while address < start + bytes {
            let p4 = (address >> 39) as usize & 511;
            let p3 = (address >> 30) as usize & 511;
            address += GIB;
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
            for pd_entry in pd.iter_mut() {
                let Ok(pt_frame) = pd_entry.frame() else {
                    continue;
                };
                // SAFETY: as above.
                let pt = unsafe { &mut *table_at(pt_frame) };
                for pt_entry in pt.iter_mut() {
                    if let Ok(frame) = pt_entry.frame() {
                        released.push(frame);
                    }
                    pt_entry.set_unused();
                }
                released.push(pt_frame);
                pd_entry.set_unused();
            }
            released.push(pd_frame);
            pdpt[p3].set_unused();
        }
        // One CR3 reload flushes every non-global translation of the range at once.
        x86_64::instructions::tlb::flush_all();
        for frame in released {
            // SAFETY: the frame backed a page or a page table of this range only; both are
            // unmapped and flushed above, so nothing refers to it any more.
            unsafe { memory.frames.deallocate_frame(frame) };
        }
    });
}

impl Memory {
    fn unmap_range(&mut self, start: u64, bytes: u64) {
        for index in 0..bytes.div_ceil(4096) {
            let page: Page<Size4KiB> =
                Page::containing_address(VirtAddr::new(start + index * 4096));
            match self.page_table.unmap(page) {
                Ok((frame, flush)) => {
                    flush.flush();
                    // SAFETY: the frame was mapped only here and is now unmapped and flushed.
                    unsafe { self.frames.deallocate_frame(frame) };
                }
                Err(UnmapError::PageNotMapped) => {}
                Err(error) => {
                    kprintln!("kernel-lite: unmap {:#x}: {error:?}", page.start_address())
                }
            }
        }
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

/// Physical frames in use now, at most so far, and in all, for accounting.
pub fn frame_usage() -> FrameUsage {
    with_memory(|memory| FrameUsage {
        in_use: memory.frames.in_use(),
        peak: memory.frames.peak(),
        total: memory.frames.total(),
    })
}

/// See [`frame_usage`].
#[derive(Debug, Clone, Copy)]
pub struct FrameUsage {
    pub in_use: u64,
    pub peak: u64,
    pub total: u64,
}
