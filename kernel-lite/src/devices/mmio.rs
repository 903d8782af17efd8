//! Physical memory as kernel-lite reaches it: firmware tables (ordinary memory) and device
//! registers (MMIO), both through the bootloader's window that maps all physical memory at an
//! offset.
//!
//! The bootloader maps that window write-back. Device registers must be uncached, so
//! [`PhysicalWindow::map_device`] switches the window's pages over a device range to
//! uncacheable (PCD|PWT, PAT entry 3) before handing out an [`Mmio`]; it refuses a range whose
//! pages also hold RAM, which would then be reached with two memory types.

use bootloader_api::info::{MemoryRegionKind, MemoryRegions};
use core::fmt;
use lite_abi::devices::acpi::PhysicalMemory;
use x86_64::VirtAddr;
use x86_64::registers::control::Cr3;
use x86_64::registers::model_specific::Msr;
use x86_64::structures::paging::{PageTable, PageTableFlags};

const GIB_4: u64 = 1 << 32;
const PAGE_2M: u64 = 2 << 20;
const IA32_PAT: u32 = 0x277;

/// Why a device range could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioError {
    /// The range is empty, wraps, or lies past the physical-memory window.
    OutsideWindow { address: u64, bytes: u64 },
    /// A page of the window over the range also maps RAM.
    SharesPageWithRam { address: u64 },
    /// The window is not mapped the way the bootloader maps it (2 MiB or 4 KiB pages).
    UnexpectedMapping { address: u64 },
    /// PAT entry 3 is not "uncacheable", so PCD|PWT would not mean uncached.
    PatNotDefault(u64),
}

impl fmt::Display for MmioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MmioError::OutsideWindow { address, bytes } => write!(
                f,
                "{bytes:#x} bytes at {address:#x} lie outside the physical-memory window"
            ),
            MmioError::SharesPageWithRam { address } => {
                write!(f, "device memory at {address:#x} shares a page with RAM")
            }
            MmioError::UnexpectedMapping { address } => {
                write!(f, "the window over {address:#x} is not mapped as expected")
            }
            MmioError::PatNotDefault(pat) => write!(f, "PAT {pat:#x} has no UC entry 3"),
        }
    }
}

/// The bootloader's mapping of all physical memory: physical `p` is at virtual `offset + p`
/// for every `p < limit`.
#[derive(Debug, Clone, Copy)]
pub struct PhysicalWindow {
    offset: u64,
    limit: u64,
    regions: &'static MemoryRegions,
}

impl PhysicalWindow {
    /// The window the bootloader built: it covers the memory map and at least the first 4 GiB
    /// (where the APICs and PCI windows live).
    pub fn new(offset: u64, regions: &'static MemoryRegions) -> PhysicalWindow {
        let top = regions.iter().map(|r| r.end).max().unwrap_or(0);
        PhysicalWindow {
            offset,
            limit: top.max(GIB_4),
            regions,
        }
    }

    fn contains(&self, address: u64, bytes: u64) -> bool {
        bytes != 0
            && address
                .checked_add(bytes)
                .is_some_and(|end| end <= self.limit)
    }

    /// Whether RAM kernel-lite may use (or the bootloader used) lies in `start..end`.
    fn has_ram(&self, start: u64, end: u64) -> bool {
        self.regions.iter().any(|region| {
            matches!(
                region.kind,
                MemoryRegionKind::Usable | MemoryRegionKind::Bootloader
            ) && region.start < end
                && start < region.end
        })
    }

    /// Maps `bytes` of device registers at physical `address`, uncached.
    pub fn map_device(&self, address: u64, bytes: u64) -> Result<Mmio, MmioError> {
        if !self.contains(address, bytes) {
            return Err(MmioError::OutsideWindow { address, bytes });
        }
        // SAFETY: reading IA32_PAT has no side effects; every x86-64 CPU has it.
        let pat = unsafe { Msr::new(IA32_PAT).read() };
        if (pat >> 24) & 0x7 != 0 {
            return Err(MmioError::PatNotDefault(pat));
        }
        let mut page = address & !(PAGE_2M - 1);
        while page < address + bytes {
            self.uncache(page, address, address + bytes)?;
            page += PAGE_2M;
        }
        Ok(Mmio {
            base: self.offset + address,
            physical: address,
            bytes,
        })
    }

    /// Makes the window's mapping of the 2 MiB page at physical `page` uncached: the whole
    /// page where it is one 2 MiB mapping, else the 4 KiB pages of `start..end` in it.
    fn uncache(&self, page: u64, start: u64, end: u64) -> Result<(), MmioError> {
        let unexpected = MmioError::UnexpectedMapping { address: page };
        let uncached = PageTableFlags::NO_CACHE | PageTableFlags::WRITE_THROUGH;
        let virt = VirtAddr::new(self.offset + page);
        let table_at = |entry_address: u64| (self.offset + entry_address) as *mut PageTable;
        let (pml4, _) = Cr3::read();
        // SAFETY: (1) the page tables in use are reachable through the window; (2) only the
        // entries that map the window itself are changed, and only in their caching bits: mm
        // never remaps the window, so no mapping it relies on changes; (3) one CPU with
        // interrupts off, so nothing walks or edits these tables meanwhile.
        unsafe {
            let pml4 = &mut *table_at(pml4.start_address().as_u64());
            let pdpt_entry = &pml4[virt.p4_index()];
            if !pdpt_entry.flags().contains(PageTableFlags::PRESENT) {
                return Err(unexpected);
            }
            let pdpt = &mut *table_at(pdpt_entry.addr().as_u64());
            let pd_entry = &pdpt[virt.p3_index()];
            let flags = pd_entry.flags();
            if !flags.contains(PageTableFlags::PRESENT) || flags.contains(PageTableFlags::HUGE_PAGE)
            {
                return Err(unexpected);
            }
            let pd = &mut *table_at(pd_entry.addr().as_u64());
            let entry = &mut pd[virt.p2_index()];
            let flags = entry.flags();
            if !flags.contains(PageTableFlags::PRESENT) {
                return Err(unexpected);
            }
            if flags.contains(PageTableFlags::HUGE_PAGE) {
                if self.has_ram(page, page + PAGE_2M) {
                    return Err(MmioError::SharesPageWithRam { address: page });
                }
                if !flags.contains(uncached) {
                    entry.set_flags(flags | uncached);
                    x86_64::instructions::tlb::flush(virt);
                }
                return Ok(());
            }
            let pt = &mut *table_at(entry.addr().as_u64());
            let mut small = start.max(page) & !0xfff;
            while small < end.min(page + PAGE_2M) {
                if self.has_ram(small, small + 4096) {
                    return Err(MmioError::SharesPageWithRam { address: small });
                }
                let virt = VirtAddr::new(self.offset + small);
                let entry = &mut pt[virt.p1_index()];
                let flags = entry.flags();
                if !flags.contains(PageTableFlags::PRESENT) {
                    return Err(unexpected);
                }
                entry.set_flags(flags | uncached);
                x86_64::instructions::tlb::flush(virt);
                small += 4096;
            }
        }
        Ok(())
    }
}

impl PhysicalMemory for PhysicalWindow {
    /// Firmware tables, read through the window; a range past it is refused.
    fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
        if !self.contains(address, len as u64) {
            return None;
        }
        // SAFETY: (1) the range lies inside the window, which maps all of it readable for the
        // kernel's whole life; (2) firmware tables lie in regions the frame allocator never
        // hands out, so nothing writes them while this borrow lives.
        Some(unsafe { core::slice::from_raw_parts((self.offset + address) as *const u8, len) })
    }
}

/// A range of device registers, mapped uncached. Accesses are volatile and checked against the
/// range; an access outside it is a kernel-lite bug and panics.
#[derive(Debug, Clone, Copy)]
pub struct Mmio {
    base: u64,
    physical: u64,
    bytes: u64,
}

impl Mmio {
    pub fn physical(&self) -> u64 {
        self.physical
    }

    /// Where kernel-lite reaches the first register, for code that does its own volatile
    /// accesses (the virtio-drivers crate).
    pub fn base(&self) -> u64 {
        self.base
    }

    fn at<T>(&self, offset: u64) -> *mut T {
        let size = core::mem::size_of::<T>() as u64;
        assert!(
            offset.is_multiple_of(size) && offset + size <= self.bytes,
            "MMIO access at {offset:#x} outside {:#x} bytes",
            self.bytes
        );
        (self.base + offset) as *mut T
    }

    pub fn read32(&self, offset: u64) -> u32 {
        // SAFETY: `at` checked that the aligned word lies in this device range, which
        // `map_device` mapped uncached for the kernel's whole life.
        unsafe { self.at::<u32>(offset).read_volatile() }
    }

    pub fn write32(&self, offset: u64, value: u32) {
        // SAFETY: as in `read32`; the caller knows what the register does.
        unsafe { self.at::<u32>(offset).write_volatile(value) }
    }

    pub fn read16(&self, offset: u64) -> u16 {
        // SAFETY: as in `read32`.
        unsafe { self.at::<u16>(offset).read_volatile() }
    }

    pub fn write16(&self, offset: u64, value: u16) {
        // SAFETY: as in `write32`.
        unsafe { self.at::<u16>(offset).write_volatile(value) }
    }

    /// A sub-range of this one.
    pub fn slice(&self, offset: u64, bytes: u64) -> Mmio {
        assert!(
            offset
                .checked_add(bytes)
                .is_some_and(|end| end <= self.bytes)
        );
        Mmio {
            base: self.base + offset,
            physical: self.physical + offset,
            bytes,
        }
    }
}
