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

    /// Gives up ownership without freeing: for memory handed to code that frees it later
    /// through [`DmaRegion::from_raw`] (the virtio queues' own allocations).
    pub fn into_raw(self) -> (PhysAddr, u64, u64) {
        let raw = (self.physical(), self.virtual_start, self.pages);
        core::mem::forget(self);
        raw
    }

    /// Takes back a region given up with [`DmaRegion::into_raw`].
    ///
    /// # Safety
    ///
    /// The values must come from one `into_raw` call, and the region must not be taken back
    /// twice.
    pub unsafe fn from_raw(physical: PhysAddr, virtual_start: u64, pages: u64) -> DmaRegion {
        DmaRegion {
            start: PhysFrame::containing_address(physical),
            pages,
            virtual_start,
        }
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
}

/// What the boot self-check found wrong with a DMA run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaCheckError {
    Frames(FrameError),
    /// The run does not start on the alignment asked for.
    Misaligned(PhysAddr),
    /// A byte of a fresh run was not zero.
    NotZeroed(PhysAddr),
    /// Frames did not all come back when the run was dropped.
    NotReturned {
        before: u64,
        after: u64,
    },
}

impl core::fmt::Display for DmaCheckError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            DmaCheckError::Frames(error) => write!(f, "{error}"),
            DmaCheckError::Misaligned(at) => write!(f, "run at {at:#x} is misaligned"),
            DmaCheckError::NotZeroed(at) => write!(f, "run at {at:#x} was not zeroed"),
            DmaCheckError::NotReturned { before, after } => {
                write!(
                    f,
                    "{before} frames in use before, {after} after the run was dropped"
                )
            }
        }
    }
}

/// At boot, before any driver relies on it: takes a run of `pages` frames aligned to `pages`,
/// checks it is aligned and zeroed, dirties it, and checks that dropping it returns every
/// frame. Returns where the run was.
pub fn self_check(pages: u64) -> Result<PhysAddr, DmaCheckError> {
    let before = with_memory(|memory| memory.frames.in_use());
    let at = {
        let mut region = DmaRegion::allocate(pages, pages).map_err(DmaCheckError::Frames)?;
        let at = region.physical();
        if !at.is_aligned(pages * 4096) {
            return Err(DmaCheckError::Misaligned(at));
        }
        if region.bytes().iter().any(|&byte| byte != 0) {
            return Err(DmaCheckError::NotZeroed(at));
        }
        region.bytes().fill(0xa5);
        at
    };
    let after = with_memory(|memory| memory.frames.in_use());
    if after != before {
        return Err(DmaCheckError::NotReturned { before, after });
    }
    Ok(at)
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
