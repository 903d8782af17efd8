//! Physical frames: handed out from the boot memory map, recycled through a free list.

use alloc::vec::Vec;
use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

/// The usable regions of the memory map, consumed front to back, plus frames given back.
pub struct Frames {
    regions: [(u64, u64); 64],
    region_count: usize,
    current: usize,
    next: u64,
    /// Frames returned by ended apps; empty until the kernel heap exists.
    free: Vec<PhysFrame>,
    in_use: u64,
    peak: u64,
    total: u64,
}

impl Frames {
    /// Collects the usable regions (page-aligned inward) of `memory`.
    pub fn new(memory: &MemoryRegions) -> Frames {
        let mut regions = [(0, 0); 64];
        let mut region_count = 0;
        let mut total = 0;
        for region in memory.iter() {
            if region.kind != MemoryRegionKind::Usable || region_count == regions.len() {
                continue;
            }
            // Frame 0 stays unused so that a physical address of 0 is never handed out.
            let start = region.start.max(0x1000).next_multiple_of(4096);
            let end = region.end & !0xfff;
            if end > start {
                regions[region_count] = (start, end);
                region_count += 1;
                total += (end - start) / 4096;
            }
        }
        Frames {
            regions,
            region_count,
            current: 0,
            next: regions[0].0,
            free: Vec::new(),
            in_use: 0,
            peak: 0,
            total,
        }
    }

    fn fresh(&mut self) -> Option<PhysFrame> {
        while self.current < self.region_count {
            let (_, end) = self.regions[self.current];
            if self.next < end {
                let frame = PhysFrame::containing_address(PhysAddr::new(self.next));
                self.next += 4096;
                return Some(frame);
            }
            self.current += 1;
            if let Some(&(start, _)) = self.regions.get(self.current) {
                self.next = start;
            }
        }
        None
    }

    /// Frames handed out and not given back.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The most frames ever in use at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// All usable frames of the machine.
    pub fn total(&self) -> u64 {
        self.total
    }
}

// SAFETY: every frame comes from a `Usable` region of the boot memory map, which nothing else
// uses, and is handed out once until it is given back through `deallocate_frame`.
unsafe impl FrameAllocator<Size4KiB> for Frames {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        let frame = self.free.pop().or_else(|| self.fresh())?;
        self.in_use += 1;
        self.peak = self.peak.max(self.in_use);
        Some(frame)
    }
}

impl FrameDeallocator<Size4KiB> for Frames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        self.in_use -= 1;
        self.free.push(frame);
    }
}
