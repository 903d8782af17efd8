//! The app's own frame-ring area (see `lite_abi::net::ring`), as [`RingMemory`] for the safe
//! network stack in `net`: index words through atomics, slot bytes as plain slices.
//!
//! kernel-lite maps the area into the app's slot before the app starts and never unmaps it
//! while the app lives; it writes only the receive slots it has not published yet and the
//! header's kernel-side index words, so a slot the app reads after an acquire load of the
//! producer index (or writes before a release store of its own) is the app's alone.

use core::sync::atomic::{AtomicU32, Ordering};
use lite_abi::net::ring::{AppEnd, Geometry, HEADER_BYTES, RingMemory};

/// The running app's ring area: `bytes` bytes at `base`.
pub struct AppRingMemory {
    base: *mut u8,
    bytes: usize,
}

impl AppRingMemory {
    /// The ring area of the app whose info record says `net_area`: `None` when the app has no
    /// network binding. Reads the binding from the header page to learn the area's size; a bad
    /// header is reported by the caller (through [`AppEnd::config`] again), so here it only
    /// limits the area to its header page.
    pub fn of_app(net_area: u64) -> Option<AppRingMemory> {
        if net_area == 0 {
            return None;
        }
        let header = AppRingMemory {
            base: net_area as *mut u8,
            bytes: HEADER_BYTES,
        };
        let bytes = match AppEnd::config(&header) {
            Ok(config) => Geometry::of(&config).area_bytes() as usize,
            Err(_) => HEADER_BYTES,
        };
        Some(AppRingMemory {
            base: net_area as *mut u8,
            bytes,
        })
    }

    /// The address of `len` bytes at `offset`, checked to lie inside the area.
    fn address(&self, offset: usize, len: usize) -> *mut u8 {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.bytes),
            "ring access at {offset}+{len} outside the {}-byte area",
            self.bytes
        );
        self.base.wrapping_add(offset)
    }

    fn index_word(&self, offset: usize) -> &AtomicU32 {
        let address = self.address(offset, 4);
        assert!(address.cast::<u32>().is_aligned(), "index word misaligned");
        // SAFETY: 1. the word lies inside the app's ring area (checked above), which kernel-lite
        // keeps mapped, readable and writable for ring 3 for the app's whole life, so the
        // reference cannot outlive the memory; 2. it is 4-byte aligned (checked); 3. every
        // access to an index word, by either end, is atomic (kernel-lite's end uses atomics
        // too), so no non-atomic access races with this one.
        unsafe { AtomicU32::from_ptr(address.cast::<u32>()) }
    }
}

impl RingMemory for AppRingMemory {
    fn load_index(&self, offset: usize) -> u32 {
        self.index_word(offset).load(Ordering::Acquire)
    }

    fn store_index(&self, offset: usize, value: u32) {
        self.index_word(offset).store(value, Ordering::Release);
    }

    fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
        let address = self.address(offset, len);
        // SAFETY: the bytes lie inside the mapped ring area (checked by `address`); they are
        // the header page or a slot that kernel-lite published to the app (acquire load of
        // its index before) and does not write until the app releases it, so nothing writes
        // them while the slice lives; `u8` has no alignment or validity requirement.
        let bytes = unsafe { core::slice::from_raw_parts(address.cast_const(), len) };
        f(bytes)
    }

    fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
        let address = self.address(offset, len);
        // SAFETY: the bytes lie inside the mapped ring area (checked by `address`); they are a
        // transmit slot the app owns until it publishes it (kernel-lite reads a slot only after
        // the app's release store of its producer index), and the app's end is driven by one
        // task at a time, so no other reference to these bytes exists while the slice lives.
        let bytes = unsafe { core::slice::from_raw_parts_mut(address, len) };
        f(bytes)
    }
}
