//! Deliberate faults, for the tests that show kernel-lite contains them (public as
//! `libos::faults`, with the `deliberate-faults` feature only). Each of these ends the calling
//! app or leaves ring 3 in a state kernel-lite must cope with; none can harm kernel-lite or
//! another app.

/// A fixed address inside kernel-lite's own (supervisor-only) region: its heap.
pub const KERNEL_LITE_ADDRESS: u64 = 0xffff_ff00_0000_0000;

/// Writes to kernel-lite's memory: a page fault (protection violation, user mode, write).
pub fn write_kernel_memory() -> ! {
    // SAFETY: deliberately unsound: the page is supervisor-only, so the CPU refuses the write
    // with a page fault and kernel-lite ends this app; no byte is ever written.
    unsafe { core::ptr::write_volatile(KERNEL_LITE_ADDRESS as *mut u64, 0xbad) };
    unreachable!("a ring-3 write to kernel-lite memory returned");
}

/// A privileged instruction that ring 3 may not run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrivilegedInstruction {
    Hlt,
    Cli,
    /// `mov cr3, rax`: switching page tables.
    MovCr3,
}

/// Runs a privileged instruction in ring 3: a general protection fault.
pub fn run_privileged(instruction: PrivilegedInstruction) -> ! {
    // SAFETY: each instruction is privileged, so in ring 3 the CPU raises #GP before it has any
    // effect and kernel-lite ends this app.
    unsafe {
        match instruction {
            PrivilegedInstruction::Hlt => core::arch::asm!("hlt", options(nomem, nostack)),
            PrivilegedInstruction::Cli => core::arch::asm!("cli", options(nomem, nostack)),
            PrivilegedInstruction::MovCr3 => {
                core::arch::asm!("xor eax, eax", "mov cr3, rax", out("rax") _, options(nostack))
            }
        }
    }
    unreachable!("a privileged instruction ran in ring 3");
}

/// An address no app owns and kernel-lite never maps: touching it is a page fault on a page
/// that is not present (the classic null-pointer dereference, just above address zero).
pub const UNMAPPED_ADDRESS: u64 = 0x10;

/// Writes to an unmapped address: a page fault (not present, user mode, write).
pub fn write_unmapped_memory() -> ! {
    // SAFETY: deliberately unsound: nothing is mapped there, so the CPU faults before any byte is
    // written and kernel-lite ends this app.
    unsafe { core::ptr::write_volatile(UNMAPPED_ADDRESS as *mut u64, 0xbad) };
    unreachable!("a write to an unmapped address returned");
}

/// Executes `ud2`: an invalid-opcode exception.
pub fn invalid_opcode() -> ! {
    // SAFETY: `ud2` raises #UD before anything else happens; kernel-lite ends this app.
    unsafe { core::arch::asm!("ud2", options(nomem, nostack)) };
    unreachable!("ud2 returned");
}

/// Sets RFLAGS.TF (single-step): the next instruction raises a debug exception, which
/// kernel-lite takes on a stack of its own (a breakpoint could hit its kcall entry before the
/// stack switch) and contains like any fault.
pub fn debug_trap() -> ! {
    // SAFETY: with TF set, the CPU raises #DB after the `nop`; kernel-lite ends this app and
    // never resumes it. Nothing else reads the flags in between.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], 0x100",
            "popfq",
            "nop",
            options(nomem)
        )
    };
    unreachable!("a debug exception returned");
}

/// RFLAGS.AC, the alignment-check flag (bit 18).
const RFLAGS_AC: u64 = 1 << 18;

/// Sets RFLAGS.AC in ring 3 and leaves it set. In ring 0, AC set switches SMAP off, so
/// kernel-lite must clear it for itself on every entry from ring 3 (kcall, interrupt,
/// exception) and give ring 3 its own flags back on return.
pub fn set_alignment_check() {
    // SAFETY: AC only makes the CPU check the alignment of ring-3 accesses when CR0.AM is set;
    // kernel-lite leaves AM clear, so nothing the compiler relies on changes (and with AM set,
    // a misaligned access would raise #AC, a fault kernel-lite contains by ending the app).
    // The block pushes one word below the stack pointer and pops it again.
    unsafe {
        core::arch::asm!(
            "pushfq",
            "or qword ptr [rsp], {ac}",
            "popfq",
            ac = const RFLAGS_AC,
        )
    };
}

/// Whether RFLAGS.AC is set now, read with `pushfq`.
pub fn alignment_check_is_set() -> bool {
    let flags: u64;
    // SAFETY: pushing RFLAGS and popping it into a register changes nothing but that register
    // (the stack pointer is back where it was).
    unsafe { core::arch::asm!("pushfq", "pop {}", out(reg) flags, options(preserves_flags)) };
    flags & RFLAGS_AC != 0
}
