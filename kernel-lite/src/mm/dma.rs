//! Memory a device reaches by physical address: physically contiguous frames, owned by a value
//! whose `Drop` gives them back (the asterinas `DmaCoherent` idea). kernel-lite reaches them
//! through the physical-memory window, so no extra mapping is made; x86 DMA is cache-coherent,
//! so the window's write-back caching is right for them.

use super::{FrameError, with_memory};
use x86_64::PhysAddr;
use x86_64::structures::paging::PhysFrame;

/// `pages` contiguous, zeroed frames for a device.
#[derive(Debug)]
pub struct DmaRegion {
    start: PhysFrame,
    pages: u64,
    virtual_start: u64,
}

impl DmaRegion {
    /// Allocates `pages` contiguous frames aligned to `align_pages` (a power of two) from the
    /// unpromised pool, zeroed.
    pub fn allocate(pages: u64, align_pages: u64) -> Result<DmaRegion, FrameError> {
        with_memory(|memory| {
            let start = memory.frames.allocate_run(pages, align_pages)?;
            let virtual_start = memory.physical_offset + start.start_address().as_u64();
            // SAFETY: the run was just allocated, so nothing else refers to it, and the
            // physical-memory window maps it writable.
            unsafe { core::ptr::write_bytes(virtual_start as *mut u8, 0, (pages * 4096) as usize) };
            Ok(DmaRegion {
                start,
                pages,
                virtual_start,
            })
        })
    }

    /// The physical address a device is given.
    pub fn physical(&self) -> PhysAddr {
        self.start.start_address()
    }

    /// The region's bytes, for kernel-lite (through the physical-memory window).
    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: the region is owned by `self` alone (allocated once, freed in `Drop`), mapped
        // writable through the physical-memory window for its whole length.
        unsafe {
            core::slice::from_raw_parts_mut(
                self.virtual_start as *mut u8,
                (self.pages * 4096) as usize,
            )
        }
    }

    pub fn pages(&self) -> u64 {
        self.pages
    }
}

impl Drop for DmaRegion {
    fn drop(&mut self) {
        with_memory(|memory| {
            for index in 0..self.pages {
                let frame = self.start + index;
                // SAFETY: (1) the frames were allocated for this region and are released once,
                // here; (2) the device must have been told to stop using them before the region
                // is dropped, which is the owner's duty (a driver resets its device first).
                unsafe { memory.frames.release(frame) };
            }
        });
    }
}
