//! The user half of the one address space, and the info page kernel-lite publishes in it.
//!
//! ```text
//! 0x0000_0000_0040_0000  user image (libos + apps), linked here, segments R / RX / RW
//! 0x0000_0000_1000_0000  info page(s), read-only for ring 3: TSC rate, the apps and their slots
//! 0x0000_0100_0000_0000  app slot 0: [guard][stack][gap] | heap (quota) ...
//! 0x0000_0110_0000_0000  app slot 1 ...          (one APP_SLOT_SIZE apart)
//! 0xffff_8000_0000_0000  kernel-lite (supervisor-only): never reachable from ring 3
//! ```

/// Where the user image is linked (its `build.rs` passes `--image-base` with this value).
pub const USER_IMAGE_BASE: u64 = 0x40_0000;
/// The user image's segments must end below this address.
pub const USER_IMAGE_LIMIT: u64 = 0x1000_0000;
/// The read-only info page(s), right above the image window.
pub const INFO_PAGE_ADDR: u64 = 0x1000_0000;
/// Size of the info area reserved for a header and up to [`MAX_APPS`] app records; only the
/// pages the bundle's apps need are mapped (see [`info_bytes`]).
pub const INFO_PAGE_BYTES: u64 = 0x20_0000;
/// Where app slot 0 starts.
pub const APP_SLOTS_BASE: u64 = 0x100_0000_0000;
/// Virtual space reserved per app (only what the quota allows is ever mapped).
pub const APP_SLOT_SIZE: u64 = 0x10_0000_0000;
/// Bytes reserved for the stack part of a slot; the heap starts right after it.
pub const APP_STACK_WINDOW: u64 = 0x4000_0000;
/// The most apps one image runs.
pub const MAX_APPS: usize = 1024;
/// Ring-3 mappings never reach this address: the top page of the lower half stays unmapped so a
/// `sysret` can never return to a non-canonical address.
pub const USER_TOP: u64 = 0x0000_7fff_ffff_0000;
/// The page size everything here is aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// Where one app's stack and heap live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSlot {
    /// Lowest address of the stack (the page below it is an unmapped guard page).
    pub stack_bottom: u64,
    /// One past the highest stack address: the initial stack pointer.
    pub stack_top: u64,
    /// First byte of the heap; the app's context block lives here and FS points at it.
    pub heap_base: u64,
}

impl AppSlot {
    /// The slot of app `index` with a stack of `stack_bytes` (rounded up to pages).
    ///
    /// Returns `None` when the index or the stack size does not fit the layout.
    pub fn new(index: usize, stack_bytes: u64) -> Option<AppSlot> {
        if index >= MAX_APPS || stack_bytes == 0 {
            return None;
        }
        let stack_bytes = stack_bytes.checked_next_multiple_of(PAGE_SIZE)?;
        // Leave a guard page below the stack and an unmapped gap page above it.
        if stack_bytes > APP_STACK_WINDOW - 2 * PAGE_SIZE {
            return None;
        }
        let base = APP_SLOTS_BASE + index as u64 * APP_SLOT_SIZE;
        let stack_top = base + APP_STACK_WINDOW - PAGE_SIZE;
        Some(AppSlot {
            stack_bottom: stack_top - stack_bytes,
            stack_top,
            heap_base: base + APP_STACK_WINDOW,
        })
    }

    /// The unmapped page right below the stack: touching it is a stack overflow.
    pub fn guard_page(&self) -> u64 {
        self.stack_bottom - PAGE_SIZE
    }
}

/// The header of the info page. Written once by kernel-lite before any app runs.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct InfoPage {
    /// [`INFO_MAGIC`].
    pub magic: u64,
    /// TSC ticks per second, calibrated by kernel-lite against the PIT.
    pub tsc_hz: u64,
    /// The TSC when kernel-lite started: `Instant`s count from here.
    pub boot_tsc: u64,
    /// How many entries of `apps` are valid.
    pub app_count: u64,
    /// One record per app of the bundle, in bundle order.
    pub apps: [AppInfo; MAX_APPS],
}

/// `b"LITEINFO"` as a little-endian number.
pub const INFO_MAGIC: u64 = u64::from_le_bytes(*b"LITEINFO");

/// Longest app (and program) name.
pub const NAME_LEN: usize = 24;

/// What an app learns about itself at start-up.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct AppInfo {
    /// The app's name in the bundle (NUL-padded).
    pub name: [u8; NAME_LEN],
    /// The program it runs: a name in the image's app table (NUL-padded).
    pub program: [u8; NAME_LEN],
    /// Start of the heap region (also the context block FS points at).
    pub heap_base: u64,
    /// Bytes mapped for the heap: the app's memory quota.
    pub heap_bytes: u64,
    /// Maximum `log` level: 0 off, 1 error, 2 warn, 3 info, 4 debug, 5 trace.
    pub log_level: u64,
}

impl AppInfo {
    pub const EMPTY: AppInfo = AppInfo {
        name: [0; NAME_LEN],
        program: [0; NAME_LEN],
        heap_base: 0,
        heap_bytes: 0,
        log_level: 0,
    };
}

const _: () = assert!(core::mem::size_of::<InfoPage>() as u64 <= INFO_PAGE_BYTES);
const _: () = assert!(
    APP_SLOTS_BASE + MAX_APPS as u64 * APP_SLOT_SIZE <= USER_TOP
        && APP_SLOT_SIZE.is_multiple_of(1 << 30)
);

/// Bytes of the info page that hold the header and `app_count` records (page-rounded).
pub const fn info_bytes(app_count: usize) -> u64 {
    let header = core::mem::size_of::<InfoPage>() - MAX_APPS * core::mem::size_of::<AppInfo>();
    ((header + app_count * core::mem::size_of::<AppInfo>()) as u64).next_multiple_of(PAGE_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_do_not_overlap_and_keep_guard_pages() {
        let a = AppSlot::new(0, 64 * 1024).unwrap();
        let b = AppSlot::new(1, 64 * 1024).unwrap();
        assert_eq!(a.stack_top - a.stack_bottom, 64 * 1024);
        assert!(a.guard_page() >= APP_SLOTS_BASE);
        assert!(a.heap_base > a.stack_top);
        assert!(b.guard_page() >= a.heap_base + 1024 * 1024 * 1024);
        assert_eq!(info_bytes(1), PAGE_SIZE);
        assert!(info_bytes(MAX_APPS) >= core::mem::size_of::<InfoPage>() as u64);
        let last = AppSlot::new(MAX_APPS - 1, 1).unwrap();
        assert!(last.heap_base + APP_SLOT_SIZE - APP_STACK_WINDOW <= USER_TOP);
    }

    #[test]
    fn bad_slots_are_refused() {
        assert!(AppSlot::new(MAX_APPS, 4096).is_none());
        assert!(AppSlot::new(0, 0).is_none());
        assert!(AppSlot::new(0, APP_STACK_WINDOW).is_none());
        assert_eq!(
            AppSlot::new(0, 1).map(|s| s.stack_top - s.stack_bottom),
            Some(PAGE_SIZE)
        );
    }
}
