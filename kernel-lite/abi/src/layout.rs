//! The user half of the one address space, and the info page kernel-lite publishes in it.
//!
//! ```text
//! 0x0000_0000_0040_0000  user image (libos + apps), linked here, segments R / RX / RW
//! 0x0000_0000_1000_0000  info page(s), read-only for ring 3: TSC rate, the apps and their slots
//! 0x0000_0100_0000_0000  app slot 0: [guard][stack][gap][heap (quota)][gap][net rings]
//!                        app slot 1 right after it, and so on: slots are packed page by page
//! 0xffff_8000_0000_0000  kernel-lite (supervisor-only): never reachable from ring 3
//! ```
//!
//! Slots are packed page by page, each starting with its stack's unmapped guard page, which
//! also parts it from the heap of the slot before. Small apps share page tables (seven
//! hello-sized apps to one 2 MiB table); kernel-lite makes every table over the slots once,
//! at admission, so demand paging never allocates one.

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
/// One page table's reach.
pub const PAGE_TABLE_REACH: u64 = 0x20_0000;
/// The most apps one image runs: far more than memory holds today (each app's guaranteed
/// memory is reserved at boot), so the real limit is the machine's memory.
pub const MAX_APPS: usize = 16384;
/// Ring-3 mappings never reach this address: the top page of the lower half stays unmapped so a
/// `sysret` can never return to a non-canonical address.
pub const USER_TOP: u64 = 0x0000_7fff_ffff_0000;
/// The page size everything here is aligned to.
pub const PAGE_SIZE: u64 = 4096;

/// Where one app's stack and heap live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppSlot {
    /// First byte of the slot: the stack's guard page.
    pub base: u64,
    /// Lowest address of the stack (the page below it is an unmapped guard page).
    pub stack_bottom: u64,
    /// One past the highest stack address: the initial stack pointer.
    pub stack_top: u64,
    /// First byte of the heap; the app's context block lives here and FS points at it.
    pub heap_base: u64,
    /// Bytes of heap: the app's memory quota.
    pub heap_bytes: u64,
    /// First byte of the app's frame rings (`net::ring`), after an unmapped gap page above
    /// the heap; equal to `end` when the app has no network.
    pub net_base: u64,
    /// Bytes of the frame rings (zero without a network).
    pub net_bytes: u64,
    /// First byte of the app's block request ring (`blk::ring`), after an unmapped gap page
    /// above the frame rings (or the heap); equal to `end` when the app has no disk.
    pub blk_base: u64,
    /// Bytes of the block ring's area (zero without a disk).
    pub blk_bytes: u64,
    /// One past the slot's last byte: the next slot's base.
    pub end: u64,
}

impl AppSlot {
    /// The unmapped page right below the stack: touching it is a stack overflow.
    pub fn guard_page(&self) -> u64 {
        self.stack_bottom - PAGE_SIZE
    }

    /// Whether `address` lies in the stack or the heap, the parts mapped on demand.
    pub fn owns(&self, address: u64) -> bool {
        (self.stack_bottom..self.stack_top).contains(&address)
            || (self.heap_base..self.heap_base + self.heap_bytes).contains(&address)
    }

    /// Pages of stack and heap: the most ring-3 pages the app can hold.
    pub fn pages(&self) -> u64 {
        (self.stack_top - self.stack_bottom + self.heap_bytes) / PAGE_SIZE
    }
}

/// Page tables (the last level) that map `start..end`: one per 2 MiB it touches.
pub const fn page_tables_over(start: u64, end: u64) -> u64 {
    if end <= start {
        return 0;
    }
    (end - 1) / PAGE_TABLE_REACH - start / PAGE_TABLE_REACH + 1
}

/// Places the apps' slots one after another from [`APP_SLOTS_BASE`].
#[derive(Debug, Clone)]
pub struct SlotPlanner {
    next: u64,
}

impl Default for SlotPlanner {
    fn default() -> Self {
        SlotPlanner::new()
    }
}

impl SlotPlanner {
    pub const fn new() -> SlotPlanner {
        SlotPlanner {
            next: APP_SLOTS_BASE,
        }
    }

    /// The next slot, for a stack of `stack_bytes`, a heap of `heap_bytes`, `net_bytes` of
    /// frame rings and `blk_bytes` of block ring (all rounded up to pages; no rings when zero);
    /// `None` when the stack or heap size is zero or the slots would pass [`USER_TOP`].
    pub fn place(
        &mut self,
        stack_bytes: u64,
        heap_bytes: u64,
        net_bytes: u64,
        blk_bytes: u64,
    ) -> Option<AppSlot> {
        if stack_bytes == 0 || heap_bytes == 0 {
            return None;
        }
        let stack_bytes = stack_bytes.checked_next_multiple_of(PAGE_SIZE)?;
        let heap_bytes = heap_bytes.checked_next_multiple_of(PAGE_SIZE)?;
        let base = self.next;
        let stack_bottom = base + PAGE_SIZE;
        let stack_top = stack_bottom.checked_add(stack_bytes)?;
        // An unmapped page between the stack's top and the heap.
        let heap_base = stack_top.checked_add(PAGE_SIZE)?;
        let heap_end = heap_base.checked_add(heap_bytes)?;
        let net_bytes = net_bytes.checked_next_multiple_of(PAGE_SIZE)?;
        let (net_base, net_end) = if net_bytes == 0 {
            (heap_end, heap_end)
        } else {
            // An unmapped page between the heap's top and the rings.
            let net_base = heap_end.checked_add(PAGE_SIZE)?;
            (net_base, net_base.checked_add(net_bytes)?)
        };
        let blk_bytes = blk_bytes.checked_next_multiple_of(PAGE_SIZE)?;
        let (blk_base, end) = if blk_bytes == 0 {
            (net_end, net_end)
        } else {
            // An unmapped page between what lies below and the block ring.
            let blk_base = net_end.checked_add(PAGE_SIZE)?;
            (blk_base, blk_base.checked_add(blk_bytes)?)
        };
        if end > USER_TOP {
            return None;
        }
        self.next = end;
        Some(AppSlot {
            base,
            stack_bottom,
            stack_top,
            heap_base,
            heap_bytes,
            net_base,
            net_bytes,
            blk_base,
            blk_bytes,
            end,
        })
    }

    /// One past the last slot placed so far.
    pub fn end(&self) -> u64 {
        self.next
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
    /// Wall-clock time at `boot_tsc`, in milliseconds since the Unix epoch (UTC), read from
    /// the CMOS real-time clock; 0 when the clock could not be read.
    pub boot_unix_ms: u64,
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
    /// Start of the app's frame-ring area (`net::ring`), or 0 when it has no network.
    pub net_area: u64,
    /// Start of the app's block-ring area (`blk::ring`), or 0 when it has no disk.
    pub blk_area: u64,
    /// The block ring's shape: request slots and sectors per data buffer (0 without a disk).
    pub blk_slots: u32,
    pub blk_buffer_sectors: u32,
    /// Sectors of the app's extent of the disk (0 without a disk).
    pub blk_sectors: u64,
}

impl AppInfo {
    pub const EMPTY: AppInfo = AppInfo {
        name: [0; NAME_LEN],
        program: [0; NAME_LEN],
        heap_base: 0,
        heap_bytes: 0,
        log_level: 0,
        net_area: 0,
        blk_area: 0,
        blk_slots: 0,
        blk_buffer_sectors: 0,
        blk_sectors: 0,
    };
}

const _: () = assert!(core::mem::size_of::<InfoPage>() as u64 <= INFO_PAGE_BYTES);
const _: () = assert!(APP_SLOTS_BASE.is_multiple_of(PAGE_TABLE_REACH));

/// Bytes of the info page that hold the header and `app_count` records (page-rounded).
pub const fn info_bytes(app_count: usize) -> u64 {
    let header = core::mem::size_of::<InfoPage>() - MAX_APPS * core::mem::size_of::<AppInfo>();
    ((header + app_count * core::mem::size_of::<AppInfo>()) as u64).next_multiple_of(PAGE_SIZE)
}

/// Bytes of the info page's header (before the app records).
pub const fn info_header_bytes() -> usize {
    core::mem::size_of::<InfoPage>() - MAX_APPS * core::mem::size_of::<AppInfo>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_packed_and_keep_guard_pages() {
        let mut planner = SlotPlanner::new();
        let a = planner.place(64 * 1024, 256 * 1024, 0, 0).unwrap();
        let b = planner.place(64 * 1024, 3 * 1024 * 1024, 0, 0).unwrap();
        assert_eq!(a.base, APP_SLOTS_BASE);
        assert_eq!(a.stack_top - a.stack_bottom, 64 * 1024);
        assert_eq!(a.guard_page(), a.base);
        assert!(a.heap_base > a.stack_top, "a gap page above the stack");
        assert_eq!(a.end, a.heap_base + 256 * 1024);
        assert_eq!(b.base, a.end, "packed: b's guard page follows a's heap");
        assert_eq!(b.guard_page(), a.end);
        assert_eq!(b.end, b.heap_base + b.heap_bytes);
        assert!(a.owns(a.heap_base) && a.owns(a.stack_top - 1));
        assert!(!a.owns(a.guard_page()) && !a.owns(a.stack_top) && !a.owns(b.base));
        assert_eq!(a.pages(), (64 + 256) / 4);
        assert_eq!((a.net_base, a.net_bytes), (a.end, 0));
        let c = planner.place(64 * 1024, 256 * 1024, 5000, 0).unwrap();
        assert_eq!(
            c.net_base,
            c.heap_base + c.heap_bytes + PAGE_SIZE,
            "a gap page"
        );
        assert_eq!((c.net_bytes, c.end), (8192, c.net_base + 8192));
        assert!(
            !c.owns(c.net_base),
            "the rings are mapped at admission, not on demand"
        );
        assert_eq!((c.blk_base, c.blk_bytes), (c.end, 0));
        let d = planner
            .place(64 * 1024, 256 * 1024, 5000, 4096 + 8192)
            .unwrap();
        assert_eq!(
            d.blk_base,
            d.net_base + d.net_bytes + PAGE_SIZE,
            "a gap page"
        );
        assert_eq!((d.blk_bytes, d.end), (12288, d.blk_base + 12288));
        let e = planner.place(64 * 1024, 256 * 1024, 0, 4096).unwrap();
        assert_eq!(e.blk_base, e.heap_base + e.heap_bytes + PAGE_SIZE);
        assert!(!e.owns(e.blk_base));
        assert_eq!(info_bytes(1), PAGE_SIZE);
        assert!(info_bytes(MAX_APPS) >= core::mem::size_of::<InfoPage>() as u64);
    }

    #[test]
    fn page_tables_are_counted_over_a_span() {
        let reach = PAGE_TABLE_REACH;
        assert_eq!(page_tables_over(0, 0), 0);
        assert_eq!(page_tables_over(0, 1), 1);
        assert_eq!(page_tables_over(0, reach), 1);
        assert_eq!(page_tables_over(reach - 1, reach + 1), 2);
        assert_eq!(
            page_tables_over(APP_SLOTS_BASE, APP_SLOTS_BASE + 3 * reach),
            3
        );
    }

    #[test]
    fn bad_slots_are_refused() {
        let mut planner = SlotPlanner::new();
        assert!(planner.place(0, 4096, 0, 0).is_none());
        assert!(planner.place(4096, 0, 0, 0).is_none());
        assert!(planner.place(u64::MAX - 10, 4096, 0, 0).is_none());
        assert!(planner.place(4096, USER_TOP, 0, 0).is_none());
        assert_eq!(
            planner
                .place(1, 1, 0, 0)
                .map(|s| (s.stack_top - s.stack_bottom, s.heap_bytes)),
            Some((PAGE_SIZE, PAGE_SIZE))
        );
    }

    #[test]
    fn the_most_apps_with_the_largest_quota_are_refused_not_wrapped() {
        let mut planner = SlotPlanner::new();
        let placed = (0..MAX_APPS)
            .map_while(|_| planner.place(64 * 1024, 16 << 30, 0, 0))
            .count();
        assert!(placed < MAX_APPS && placed > 1000, "{placed}");
        assert!(planner.end() <= USER_TOP);
    }
}
