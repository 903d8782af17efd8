//! The CPU's own tables and switches: GDT with kernel and user segments, the TSS with its
//! interrupt stacks, and the protection features (NX, SMEP, SMAP, UMIP, WP).

use core::cell::UnsafeCell;
use core::fmt;
use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, FS, GS, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::control::{Cr0, Cr0Flags, Cr4, Cr4Flags};
use x86_64::registers::model_specific::{Efer, EferFlags};
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot for the double-fault handler (a kernel stack overflow lands here).
pub const DOUBLE_FAULT_IST: u16 = 0;
/// IST slot for NMI and machine check, which may arrive anywhere.
pub const NMI_IST: u16 = 1;

/// The segment selectors, in the order `syscall`/`sysret` require: kernel code, kernel data,
/// user data, user code.
#[derive(Debug, Clone, Copy)]
pub struct Selectors {
    pub kernel_code: SegmentSelector,
    pub kernel_data: SegmentSelector,
    pub user_data: SegmentSelector,
    pub user_code: SegmentSelector,
    tss: SegmentSelector,
}

/// The TSS lives in a cell because its RSP0 changes on every switch to another app.
struct TssCell(UnsafeCell<TaskStateSegment>);

// SAFETY: one CPU; the TSS is only written with interrupts off (boot, app switches), and the CPU
// reads it only on a privilege change or an IST interrupt, which cannot overlap those writes.
unsafe impl Sync for TssCell {}

static TSS: TssCell = TssCell(UnsafeCell::new(TaskStateSegment::new()));
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

/// A small stack for faults taken before the guarded ones exist (see [`install_fault_stacks`]).
/// It is written by the CPU, so it must live in writable memory: hence the cell.
#[repr(align(16))]
struct EarlyStack(UnsafeCell<[u8; 8192]>);

// SAFETY: only the CPU writes it (as a stack, during a fault before `install_fault_stacks`).
unsafe impl Sync for EarlyStack {}

static EARLY_FAULT_STACK: EarlyStack = EarlyStack(UnsafeCell::new([0; 8192]));

/// Loads the GDT and TSS and points the data segments at null, so that ring 3 starts with the
/// FS base kernel-lite sets and no kernel selector.
pub fn init() {
    let early_top = VirtAddr::from_ptr(EARLY_FAULT_STACK.0.get()) + 8192u64;
    set_ist(DOUBLE_FAULT_IST, early_top);
    set_ist(NMI_IST, early_top);
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let kernel_code = gdt.append(Descriptor::kernel_code_segment());
        let kernel_data = gdt.append(Descriptor::kernel_data_segment());
        let user_data = gdt.append(Descriptor::user_data_segment());
        let user_code = gdt.append(Descriptor::user_code_segment());
        // SAFETY: the TSS is a static, so the descriptor's reference lives for the whole kernel.
        let tss = gdt.append(Descriptor::tss_segment(unsafe { &*TSS.0.get() }));
        (
            gdt,
            Selectors {
                kernel_code,
                kernel_data,
                user_data,
                user_code,
                tss,
            },
        )
    });
    gdt.load();
    let null = SegmentSelector(0);
    // SAFETY: the selectors come from the GDT just loaded; null data segments are valid in
    // 64-bit mode, and SS gets the kernel data segment this ring needs.
    unsafe {
        CS::set_reg(selectors.kernel_code);
        SS::set_reg(selectors.kernel_data);
        DS::set_reg(null);
        ES::set_reg(null);
        FS::set_reg(null);
        GS::set_reg(null);
        load_tss(selectors.tss);
    }
}

pub fn selectors() -> Selectors {
    GDT.get().expect("cpu::init ran").1
}

fn set_ist(index: u16, top: VirtAddr) {
    // SAFETY: see `TssCell`: interrupts are off while kernel-lite runs, so no IST interrupt reads
    // the entry while it changes, and the pointer is to a live static.
    unsafe { (*TSS.0.get()).interrupt_stack_table[index as usize] = top };
}

/// Replaces the early fault stacks with guarded ones, once page tables can make them.
pub fn install_fault_stacks() {
    set_ist(DOUBLE_FAULT_IST, crate::mm::allocate_kernel_stack().top);
    set_ist(NMI_IST, crate::mm::allocate_kernel_stack().top);
}

/// Sets the stack the CPU switches to when ring 3 is interrupted or faults.
pub fn set_kernel_stack(top: VirtAddr) {
    // SAFETY: see `TssCell`; `top` is the top of a mapped kernel stack.
    unsafe { (*TSS.0.get()).privilege_stack_table[0] = top };
}

/// Which protection features are on; printed at boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Protection {
    pub nx: bool,
    pub smep: bool,
    pub smap: bool,
    pub umip: bool,
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (name, on) in [
            ("NX", self.nx),
            ("SMEP", self.smep),
            ("SMAP", self.smap),
            ("UMIP", self.umip),
        ] {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{name}={}", if on { "on" } else { "MISSING" })?;
        }
        Ok(())
    }
}

static PROTECTION: Once<Protection> = Once::new();

/// Turns on every protection feature the CPU has (NX, SMEP, SMAP, UMIP, and CR0.WP so ring 0
/// honours read-only pages) and says which are missing.
pub fn enable_protection() -> Protection {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    let found = Protection {
        nx: ext.edx & (1 << 20) != 0,
        smep: leaf7.ebx & (1 << 7) != 0,
        smap: leaf7.ebx & (1 << 20) != 0,
        umip: leaf7.ecx & (1 << 2) != 0,
    };
    // SAFETY: each bit is set only when CPUID reports the feature; kernel-lite never executes
    // or touches user pages directly (it copies through the physical-memory window), so SMEP
    // and SMAP cannot fault it, and no kernel code uses the instructions UMIP restricts in ring 3.
    unsafe {
        if found.nx {
            Efer::update(|efer| efer.insert(EferFlags::NO_EXECUTE_ENABLE));
        }
        Cr0::update(|cr0| cr0.insert(Cr0Flags::WRITE_PROTECT));
        Cr4::update(|cr4| {
            cr4.set(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION, found.smep);
            cr4.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, found.smap);
            cr4.set(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION, found.umip);
        });
    }
    *PROTECTION.call_once(|| found)
}

/// Whether pages may be marked no-execute.
pub fn has_nx() -> bool {
    PROTECTION.get().is_some_and(|p| p.nx)
}
