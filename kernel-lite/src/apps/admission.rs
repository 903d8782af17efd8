//! Admission control: before any app runs, everything the bundle's apps are guaranteed is set
//! aside — a kernel stack each, every page table over their slots, and each app's promise of
//! frames for every page its stack and heap may hold — or
//! the bundle is refused, saying what does not fit and by how much. Once admitted, no app can
//! make another run out of memory, and no restart can fail for want of frames.

use super::app::App;
use crate::mm::{self, FrameAccount, KernelStack, MapError};
use alloc::vec::Vec;
use core::fmt;
use lite_abi::layout::{AppSlot, PAGE_SIZE, page_tables_over};

/// Why the bundle cannot run on this machine.
#[derive(Debug, Clone, Copy)]
pub enum AdmissionError {
    /// The apps' guaranteed memory exceeds what is free.
    ShortOfMemory {
        apps: usize,
        /// Frames for the apps' stacks and heaps.
        promised_frames: u64,
        /// Frames for their kernel stacks and the page tables over their slots.
        kernel_frames: u64,
        available_frames: u64,
    },
    /// Setting aside the kernel's part failed after the sums said it fit (a bug).
    Map(MapError),
}

impl fmt::Display for AdmissionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kib = |frames: u64| frames * PAGE_SIZE / 1024;
        match *self {
            AdmissionError::ShortOfMemory {
                apps,
                promised_frames,
                kernel_frames,
                available_frames,
            } => {
                let needed = promised_frames + kernel_frames;
                write!(
                    f,
                    "bundle refused: its {apps} app(s) need {} KiB guaranteed ({} KiB for their \
                     stacks and heap quotas, {} KiB for kernel stacks and page tables) but {} KiB \
                     are free: short by {} KiB; give the machine more memory (QEMU -m) or lower \
                     the apps' memory quotas",
                    kib(needed),
                    kib(promised_frames),
                    kib(kernel_frames),
                    kib(available_frames),
                    kib(needed - available_frames)
                )
            }
            AdmissionError::Map(error) => write!(f, "bundle refused: {error}"),
        }
    }
}

/// Frames for kernel-lite's own part of `slots`: a kernel stack each (and a page table per 32
/// of them), and every page table, directory and PDPT over the slots' span.
fn kernel_frames(slots: &[AppSlot]) -> u64 {
    const GIB: u64 = 1 << 30;
    let stacks = slots.len() as u64;
    let stack_frames = stacks * (mm::KERNEL_STACK_BYTES / PAGE_SIZE) + stacks.div_ceil(32);
    let (Some(first), Some(last)) = (slots.first(), slots.last()) else {
        return stack_frames;
    };
    let tables = page_tables_over(first.base, last.end);
    let directories = last.end.div_ceil(GIB) - first.base / GIB;
    let pdpts = last.end.div_ceil(512 * GIB) - first.base / (512 * GIB);
    stack_frames + tables + directories + pdpts
}

/// Sets aside everything the apps are guaranteed and returns their kernel stacks and frame
/// accounts, in bundle order; or says why not (nothing is set aside then that matters: the
/// machine ends).
pub fn admit(slots: &[AppSlot]) -> Result<Vec<(KernelStack, FrameAccount)>, AdmissionError> {
    let promised_frames: u64 = slots.iter().map(App::guaranteed_frames).sum();
    let kernel_frames = kernel_frames(slots);
    let available_frames = mm::available_frames();
    if promised_frames + kernel_frames > available_frames {
        return Err(AdmissionError::ShortOfMemory {
            apps: slots.len(),
            promised_frames,
            kernel_frames,
            available_frames,
        });
    }
    if let (Some(first), Some(last)) = (slots.first(), slots.last()) {
        mm::prepare_user_tables(first.base, last.end).map_err(AdmissionError::Map)?;
    }
    let mut admitted = Vec::with_capacity(slots.len());
    for slot in slots {
        let stack = mm::allocate_kernel_stack().map_err(AdmissionError::Map)?;
        let account = mm::promise(App::guaranteed_frames(slot))
            .map_err(|error| AdmissionError::Map(error.into()))?;
        admitted.push((stack, account));
    }
    Ok(admitted)
}
