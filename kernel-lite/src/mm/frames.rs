//! Physical frames: a bitmap over the machine's memory, kept in frames of its own (never on the
//! kernel heap, so its cost is fixed at boot: one bit per frame), with promises.
//!
//! A *promise* is a number of frames set aside for one owner (an app's guaranteed memory, see
//! [`FrameAccount`]): frames anyone else asks for come only from what is neither in use nor
//! promised, so an app allocating within its promise can never fail, and nobody else can eat
//! into it. Contiguous runs (for DMA) come from the same bitmap.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use x86_64::PhysAddr;
use x86_64::structures::paging::{FrameAllocator, FrameDeallocator, PhysFrame, Size4KiB};

const FRAME: u64 = 4096;

/// Why frames could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer frames are free and unpromised than asked for.
    Exhausted { wanted: u64, available: u64 },
    /// The account has used its whole promise.
    AccountSpent { promised: u64 },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::Exhausted { wanted, available } => write!(
                f,
                "out of physical memory ({wanted} frame(s) wanted, {available} free and unpromised)"
            ),
            FrameError::AccountSpent { promised } => {
                write!(f, "its guaranteed {promised} frame(s) are all in use")
            }
        }
    }
}

/// Frames promised to one owner, and how many of them it holds now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameAccount {
    pub promised: u64,
    pub held: u64,
}

pub struct Frames {
    /// One bit per frame from physical address 0 to `limit`: set = free. Lives in frames taken
    /// from the memory map at boot, reached through the physical-memory window.
    bitmap: &'static mut [u64],
    /// Word to start searching at: no free bit below it.
    hint: usize,
    in_use: u64,
    peak: u64,
    total: u64,
    /// Frames promised to accounts and not held by them.
    promised: u64,
}

impl Frames {
    /// Builds the bitmap over the usable regions of `memory` and takes the bitmap's own frames
    /// from the first region that holds it.
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
        // (2) it is mapped writable at `physical_offset`, and (3) it is removed from the free
        // frames below, so nothing else will ever be handed those frames.
        let bitmap =
            unsafe { core::slice::from_raw_parts_mut((physical_offset + home) as *mut u64, words) };
        bitmap.fill(0);
        let mut frames = Frames {
            bitmap,
            hint: 0,
            in_use: 0,
            peak: 0,
            total: 0,
            promised: 0,
        };
        for (start, end) in usable() {
            let mut address = start;
            while address < end {
                if !(home..home + bitmap_bytes).contains(&address) {
                    frames.set_free(address / FRAME, true);
                    frames.total += 1;
                }
                address += FRAME;
            }
        }
        Some(frames)
    }

    fn set_free(&mut self, frame: u64, free: bool) {
        let (word, bit) = ((frame / 64) as usize, frame % 64);
        if free {
            self.bitmap[word] |= 1 << bit;
            self.hint = self.hint.min(word);
        } else {
            self.bitmap[word] &= !(1 << bit);
        }
    }

    fn is_free(&self, frame: u64) -> bool {
        self.bitmap[(frame / 64) as usize] & (1 << (frame % 64)) != 0
    }

    /// Frames free and not promised to anyone.
    pub fn available(&self) -> u64 {
        self.total - self.in_use - self.promised
    }

    /// Takes the lowest free frame; the caller has checked it may.
    fn take_one(&mut self) -> Option<PhysFrame> {
        while self.hint < self.bitmap.len() {
            let word = self.bitmap[self.hint];
            if word != 0 {
                let frame = self.hint as u64 * 64 + u64::from(word.trailing_zeros());
                self.set_free(frame, false);
                self.note_taken(1);
                return Some(PhysFrame::containing_address(PhysAddr::new(frame * FRAME)));
            }
            self.hint += 1;
        }
        None
    }

    fn note_taken(&mut self, count: u64) {
        self.in_use += count;
        self.peak = self.peak.max(self.in_use);
    }

    /// A frame from what is neither in use nor promised (kernel-lite's own needs).
    pub fn allocate_unpromised(&mut self) -> Result<PhysFrame, FrameError> {
        if self.available() == 0 {
            return Err(FrameError::Exhausted {
                wanted: 1,
                available: 0,
            });
        }
        self.take_one().ok_or(FrameError::Exhausted {
            wanted: 1,
            available: 0,
        })
    }

    /// `count` physically contiguous frames, aligned to `align_frames` (a power of two), from
    /// what is neither in use nor promised: memory a device reaches by physical address.
    pub fn allocate_run(&mut self, count: u64, align_frames: u64) -> Result<PhysFrame, FrameError> {
        let exhausted = FrameError::Exhausted {
            wanted: count,
            available: self.available(),
        };
        if count == 0 || count > self.available() || !align_frames.is_power_of_two() {
            return Err(exhausted);
        }
        let limit = self.bitmap.len() as u64 * 64;
        let mut start = (self.hint as u64 * 64).next_multiple_of(align_frames);
        while start + count <= limit {
            match (start..start + count).find(|&frame| !self.is_free(frame)) {
                None => {
                    for frame in start..start + count {
                        self.set_free(frame, false);
                    }
                    self.note_taken(count);
                    return Ok(PhysFrame::containing_address(PhysAddr::new(start * FRAME)));
                }
                Some(taken) => start = (taken + 1).next_multiple_of(align_frames),
            }
        }
        Err(exhausted)
    }

    /// Gives back a frame taken by any of the allocation functions.
    ///
    /// # Safety
    ///
    /// Nothing may refer to the frame any more.
    pub unsafe fn release(&mut self, frame: PhysFrame) {
        let number = frame.start_address().as_u64() / FRAME;
        debug_assert!(!self.is_free(number), "frame {number:#x} released twice");
        self.set_free(number, true);
        self.in_use -= 1;
    }

    /// Promises `count` frames to a new account, or says by how many frames the machine falls
    /// short.
    pub fn promise(&mut self, count: u64) -> Result<FrameAccount, FrameError> {
        if count > self.available() {
            return Err(FrameError::Exhausted {
                wanted: count,
                available: self.available(),
            });
        }
        self.promised += count;
        Ok(FrameAccount {
            promised: count,
            held: 0,
        })
    }

    /// Ends an account whose frames are all given back: its promise returns to the pool.
    pub fn close(&mut self, account: &mut FrameAccount) {
        debug_assert_eq!(account.held, 0, "an account closed while holding frames");
        self.promised -= account.promised - account.held;
        *account = FrameAccount::default();
    }

    /// A frame for `account`, within its promise.
    pub fn allocate_for(&mut self, account: &mut FrameAccount) -> Result<PhysFrame, FrameError> {
        if account.held >= account.promised {
            return Err(FrameError::AccountSpent {
                promised: account.promised,
            });
        }
        // The promise guarantees a free frame: `promised` counts it among the free ones.
        let frame = self.take_one().ok_or(FrameError::Exhausted {
            wanted: 1,
            available: 0,
        })?;
        self.promised -= 1;
        account.held += 1;
        Ok(frame)
    }

    /// Gives back a frame `account` held; it stays promised to the account.
    ///
    /// # Safety
    ///
    /// As for [`Frames::release`]; the frame was allocated for this account.
    pub unsafe fn release_for(&mut self, account: &mut FrameAccount, frame: PhysFrame) {
        // SAFETY: the caller's promise.
        unsafe { self.release(frame) };
        account.held -= 1;
        self.promised += 1;
    }

    /// Frames handed out and not given back.
    pub fn in_use(&self) -> u64 {
        self.in_use
    }

    /// The most frames ever in use at once.
    pub fn peak(&self) -> u64 {
        self.peak
    }

    /// All usable frames of the machine (less the bitmap's own).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Frames promised to accounts and not yet held by them.
    pub fn promised(&self) -> u64 {
        self.promised
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

impl FrameDeallocator<Size4KiB> for Frames {
    unsafe fn deallocate_frame(&mut self, frame: PhysFrame) {
        // SAFETY: the caller's promise, as the trait requires.
        unsafe { self.release(frame) }
    }
}

/// Page tables for an app's mappings come from its account.
pub struct Charged<'a> {
    pub frames: &'a mut Frames,
    pub account: &'a mut FrameAccount,
}

// SAFETY: as for `Frames`: each frame is handed out once until given back.
unsafe impl FrameAllocator<Size4KiB> for Charged<'_> {
    fn allocate_frame(&mut self) -> Option<PhysFrame> {
        self.frames.allocate_for(self.account).ok()
    }
}
