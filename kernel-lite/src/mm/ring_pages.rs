//! kernel-lite's view of one app's ring area (its frame rings, its block ring): the frames behind the app's pages, reached through
//! the physical-memory window, so the rings are read and written from interrupt context without
//! walking page tables or lowering SMAP.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, Ordering};
use lite_abi::net::ring::RingMemory;

const PAGE: usize = 4096;

/// The pages of an app's ring area, in order (their addresses in the physical-memory window).
pub struct RingPages {
    pages: Vec<u64>,
}

impl RingPages {
    pub fn new(pages: Vec<u64>) -> RingPages {
        RingPages { pages }
    }

    /// Where `offset..offset + len` lies, all within one page; a range crossing a page is a bug
    /// in the ring layout (slots never cross a page), not something an app can cause.
    fn locate(&self, offset: usize, len: usize) -> *mut u8 {
        let (page, within) = (offset / PAGE, offset % PAGE);
        assert!(
            page < self.pages.len() && within + len <= PAGE,
            "ring access {offset:#x}+{len} crosses a page"
        );
        (self.pages[page] + within as u64) as *mut u8
    }
}

impl RingMemory for RingPages {
    fn load_index(&self, offset: usize) -> u32 {
        let at = self.locate(offset, 4).cast::<u32>();
        // SAFETY: the word lies in a frame of this app's ring area, mapped for kernel-lite's
        // life in the window and aligned (index words sit at fixed aligned offsets); ring 3
        // writes it only through atomics of the same size.
        unsafe { AtomicU32::from_ptr(at) }.load(Ordering::Acquire)
    }

    fn store_index(&self, offset: usize, value: u32) {
        let at = self.locate(offset, 4).cast::<u32>();
        // SAFETY: as in `load_index`.
        unsafe { AtomicU32::from_ptr(at) }.store(value, Ordering::Release)
    }

    fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let at = self.locate(offset, len);
        // SAFETY: (1) the range lies in one frame of the ring area, mapped in the window for
        // kernel-lite's life; (2) kernel-lite runs with interrupts off on the only CPU, so ring 3
        // cannot change the bytes while the slice lives; whatever it wrote before is just bytes.
        f(unsafe { core::slice::from_raw_parts(at, len) })
    }

    fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let at = self.locate(offset, len);
        // SAFETY: as in `with_bytes`; and no other slice over these bytes exists meanwhile
        // (each call makes and drops its own).
        f(unsafe { core::slice::from_raw_parts_mut(at, len) })
    }
}

impl RingPages {
    /// Copies `out.len()` bytes from the area at `offset` (page by page).
    pub fn read(&self, offset: usize, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let at = offset + done;
            let part = (PAGE - at % PAGE).min(out.len() - done);
            self.with_bytes(at, part, |bytes| {
                out[done..done + part].copy_from_slice(bytes)
            });
            done += part;
        }
    }

    /// Copies `data` into the area at `offset` (page by page).
    pub fn write(&self, offset: usize, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done;
            let part = (PAGE - at % PAGE).min(data.len() - done);
            self.with_bytes_mut(at, part, |bytes| {
                bytes.copy_from_slice(&data[done..done + part])
            });
            done += part;
        }
    }
}
