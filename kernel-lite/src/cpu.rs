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
/// IST slot for NMIs, which may arrive anywhere, even on the kcall entry before its stack switch.
pub const NMI_IST: u16 = 1;
/// IST slot for machine checks (as anywhere as NMIs).
pub const MACHINE_CHECK_IST: u16 = 2;
/// IST slot for debug exceptions, which a breakpoint can raise on the kcall entry's first
/// instruction, still on ring 3's stack.
pub const DEBUG_IST: u16 = 3;
const IST_SLOTS: [u16; 4] = [DOUBLE_FAULT_IST, NMI_IST, MACHINE_CHECK_IST, DEBUG_IST];

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
    for slot in IST_SLOTS {
        set_ist(slot, early_top);
    }
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

/// Replaces the early fault stacks with guarded ones, one per IST slot, once page tables can
/// make them.
pub fn install_fault_stacks() -> Result<(), crate::mm::MapError> {
    for slot in IST_SLOTS {
        set_ist(slot, crate::mm::allocate_kernel_stack()?.top);
    }
    Ok(())
}

/// Sets the stack the CPU switches to when ring 3 is interrupted, faults or makes a kcall.
pub fn set_kernel_stack(top: VirtAddr) {
    // SAFETY: see `TssCell`; `top` is the top of a mapped kernel stack.
    unsafe { (*TSS.0.get()).privilege_stack_table[0] = top };
    crate::kcall::set_kernel_stack(top);
}

/// Clears RFLAGS.AC on an entry from ring 3, where the app may have set it: with AC set, SMAP
/// would not stop ring 0 from touching user pages.
#[inline(always)]
pub fn clear_alignment_check() {
    if SMAP_ON.load(core::sync::atomic::Ordering::Relaxed) {
        // SAFETY: `clac` only clears RFLAGS.AC; it exists wherever SMAP does (checked at boot).
        unsafe { core::arch::asm!("clac", options(nomem, nostack)) };
    }
    debug_assert!(
        !x86_64::registers::rflags::read()
            .contains(x86_64::registers::rflags::RFlags::ALIGNMENT_CHECK)
    );
}

static SMAP_ON: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Which protection features are on, as read back from EFER and CR4 after enabling them.
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
            write!(f, "{name}={}", if on { "on" } else { "off" })?;
        }
        Ok(())
    }
}

/// Why kernel-lite will not start on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuRefused {
    /// No NX bit (or EFER.NXE would not stay set): W^X could not be enforced, so every
    /// writable page would be executable.
    NoExecuteMissing,
}

impl fmt::Display for CpuRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuRefused::NoExecuteMissing => write!(
                f,
                "the CPU has no NX (no-execute) bit, so W^X cannot be enforced; \
                 kernel-lite needs NX (in QEMU: a -cpu with nx, e.g. max or qemu64)"
            ),
        }
    }
}

/// Turns on every protection feature the CPU has (NX, SMEP, SMAP, UMIP, CR0.WP so ring 0
/// honours read-only pages, and CR4.MCE so a machine check is reported), then reads EFER and
/// CR4 back: what they hold is what is reported.
/// Refuses a CPU without NX.
pub fn enable_protection() -> Result<Protection, CpuRefused> {
    let leaf7 = core::arch::x86_64::__cpuid_count(7, 0);
    let ext = core::arch::x86_64::__cpuid(0x8000_0001);
    let offered = Protection {
        nx: ext.edx & (1 << 20) != 0,
        smep: leaf7.ebx & (1 << 7) != 0,
        smap: leaf7.ebx & (1 << 20) != 0,
        umip: leaf7.ecx & (1 << 2) != 0,
    };
    if !offered.nx {
        return Err(CpuRefused::NoExecuteMissing);
    }
    let machine_check = core::arch::x86_64::__cpuid(1).edx & (1 << 7) != 0;
    // SAFETY: each bit is set only when CPUID reports the feature; kernel-lite never executes
    // or touches user pages directly (it copies through the physical-memory window), so SMEP
    // and SMAP cannot fault it, and no kernel code uses the instructions UMIP restricts in ring 3.
    unsafe {
        Efer::update(|efer| efer.insert(EferFlags::NO_EXECUTE_ENABLE));
        Cr0::update(|cr0| cr0.insert(Cr0Flags::WRITE_PROTECT));
        Cr4::update(|cr4| {
            // Machine checks raise #MC (which stops the machine) instead of a silent reset.
            cr4.set(Cr4Flags::MACHINE_CHECK_EXCEPTION, machine_check);
            cr4.set(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION, offered.smep);
            cr4.set(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION, offered.smap);
            cr4.set(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION, offered.umip);
        });
    }
    let cr4 = Cr4::read();
    let on = Protection {
        nx: Efer::read().contains(EferFlags::NO_EXECUTE_ENABLE),
        smep: cr4.contains(Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        smap: cr4.contains(Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
        umip: cr4.contains(Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
    };
    if !on.nx {
        return Err(CpuRefused::NoExecuteMissing);
    }
    SMAP_ON.store(on.smap, core::sync::atomic::Ordering::Relaxed);
    Ok(on)
}

/// The registers that set up the kcall gate and the protections, as read back (printed at
/// boot: under a hypervisor that mishandles one, this line shows which).
pub fn gate_registers() -> impl fmt::Display {
    use x86_64::registers::model_specific::Msr;
    const STAR: u32 = 0xc000_0081;
    const LSTAR: u32 = 0xc000_0082;
    const SFMASK: u32 = 0xc000_0084;
    // SAFETY: these MSRs exist on every x86-64 CPU with `syscall` (which kernel-lite requires)
    // and reading them has no side effects.
    let (star, lstar, sfmask) = unsafe {
        (
            Msr::new(STAR).read(),
            Msr::new(LSTAR).read(),
            Msr::new(SFMASK).read(),
        )
    };
    let efer = Efer::read_raw();
    let cr4 = Cr4::read_raw();
    let cr0 = Cr0::read_raw();
    alloc::format!(
        "STAR={star:#x} LSTAR={lstar:#x} SFMASK={sfmask:#x} EFER={efer:#x} CR0={cr0:#x} CR4={cr4:#x}"
    )
}
