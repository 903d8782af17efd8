//! Physical frames: [`lite_core::frames::FrameBitmap`] over the machine's memory map, its bitmap
//! kept in frames of its own (never on the kernel heap, so its cost is fixed at boot: one bit
//! per frame), wrapped with the page-table allocator traits.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use lite_core::frames::FrameBitmap;
pub use lite_core::frames::{FrameAccount, FrameError};
use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, PhysFrame, Size4KiB};

const FRAME: u64 = 4096;

fn frame_at(number: u64) -> PhysFrame {
    PhysFrame::containing_address(PhysAddr::new(number * FRAME))
}

fn number_of(frame: PhysFrame) -> u64 {
    frame.start_address().as_u64() / FRAME
}

pub struct Frames {
    bitmap: FrameBitmap<'static>,
}

impl Frames {
    /// Builds the bitmap over the usable regions of `memory`, in frames taken from the first
    /// region that holds it.
    ///
    /// # Safety
    ///
    /// All physical memory must be mapped writable at `physical_offset`, and the `Usable`
    /// regions must be unused by anything else; called once.
    pub unsafe fn new(memory: &MemoryRegions, physical_offset: u64) -> Option<Frames> {
        let usable = || {
            memory
                .iter()
                .filter(|region| region.kind == MemoryRegionKind::Usable)
                // Frame 0 stays unused so that a physical address of 0 is never handed out.
                .map(|region| {
                    (
                        region.start.max(FRAME).next_multiple_of(FRAME),
                        region.end & !(FRAME - 1),
                    )
                })
                .filter(|(start, end)| end > start)
        };
        let limit = usable().map(|(_, end)| end).max()?;
        let words = (limit / FRAME).div_ceil(64) as usize;
        let bitmap_bytes = (words as u64 * 8).next_multiple_of(FRAME);
        let (home, _) = usable().find(|(start, end)| end - start >= bitmap_bytes)?;
        // SAFETY: (1) `home..home + bitmap_bytes` lies in a usable region nothing else uses,
        // (2) it is mapped writable at `physical_offset`, and (3) it is left out of the free
        // frames below, so nothing else will ever be handed those frames.
        let words =
            unsafe { core::slice::from_raw_parts_mut((physical_offset + home) as *mut u64, words) };
        let mut bitmap = FrameBitmap::new(words);
        for (start, end) in usable() {
            let (first, end) = (start / FRAME, end / FRAME);
            let (home_first, home_end) = (home / FRAME, (home + bitmap_bytes) / FRAME);
            if (first..end).contains(&home_first) {
                bitmap.add_free(first, home_first);
                bitmap.add_free(home_end, end);
            } else {
                bitmap.add_free(first, end);
            }
        }
        Some(Frames { bitmap })
    }

    pub fn available(&self) -> u64 {
        self.bitmap.available()
    }

    /// A frame from what is neither in use nor promised (kernel-lite's own needs).
    pub fn allocate_unpromised(&mut self) -> Result<PhysFrame, FrameError> {
        self.bitmap.allocate().map(frame_at)
    }

    /// `count` contiguous frames aligned to `align_frames`, unpromised (for DMA).
    pub fn allocate_run(&mut self, count: u64, align_frames: u64) -> Result<PhysFrame, FrameError> {
        self.bitmap.allocate_run(count, align_frames).map(frame_at)
    }

    /// Gives back a frame taken by an unpromised allocation.
    ///
    /// # Safety
    ///
    /// Nothing may refer to the frame any more.
    pub unsafe fn release(&mut self, frame: PhysFrame) {
        let released = self.bitmap.release(number_of(frame));
        debug_assert!(released, "frame {frame:?} released twice");
    }

    pub fn promise(&mut self, count: u64) -> Result<FrameAccount, FrameError> {
        self.bitmap.promise(count)
    }

    pub fn close(&mut self, account: &mut FrameAccount) {
        self.bitmap.close(account);
    }

    /// A frame for `account`, within its promise.
    pub fn allocate_for(&mut self, account: &mut FrameAccount) -> Result<PhysFrame, FrameError> {
        self.bitmap.allocate_for(account).map(frame_at)
    }

    /// Gives back a frame `account` held; it stays promised to the account.
    ///
    /// # Safety
    ///
    /// As for [`Frames::release`]; the frame was allocated for this account.
    pub unsafe fn release_for(&mut self, account: &mut FrameAccount, frame: PhysFrame) {
        let released = self.bitmap.release_for(account, number_of(frame));
        debug_assert!(released, "frame {frame:?} released twice");
    }

    pub fn in_use(&self) -> u64 {
        self.bitmap.in_use()
    }

    pub fn peak(&self) -> u64 {
        self.bitmap.peak()
    }

    pub fn total(&self) -> u64 {
        self.bitmap.total()
    }

    pub fn promised(&self) -> u64 {
        self.bitmap.promised()
    }
}

/// Page tables for kernel-lite's own mappings come from the unpromised pool.
// SAFETY: every frame comes from a `Usable` region of the boot memory map, which nothing else
// uses, and is handed out once until it is given back.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.allocate_unpromised().ok()
    }
}
