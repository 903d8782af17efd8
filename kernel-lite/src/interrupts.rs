//! The IDT: every CPU exception, the timer interrupts (the local APIC's, or the PIT's through
//! the 8259 PIC), the device vectors (see `devices::irq`), and what happens when one comes from
//! ring 3.
//!
//! An exception in ring 3 ends the app that caused it (reported with its name, the exception,
//! the error code, RIP, CS and CR2 for page faults) and the other apps run on. An exception in
//! ring 0 is a kernel-lite bug: it is reported the same way and ends the machine.
//!
//! Every entry from ring 3 goes through [`entered_from_user`] first: it clears RFLAGS.AC (which
//! ring 3 may set, and which would switch SMAP off for ring 0) and counts the entry against the
//! running app by cause. NMIs are not an app's doing: they are reported and return. A machine
//! check or a double fault means the machine or kernel-lite is broken: the machine ends, whatever
//! ring was running. NMI, #MC, #DF and #DB run on IST stacks of their own.

use crate::apps::{self, Entry};
use crate::cpu::{DEBUG_IST, DOUBLE_FAULT_IST, MACHINE_CHECK_IST, NMI_IST};
use crate::devices::{self, apic, irq};
use crate::fault::Exception;
use crate::{cpu, kprintln, machine, timer};
use lite_abi::exit::ImageOutcome;
use pic8259::ChainedPics;
use spin::{Mutex, Once};
use x86_64::PrivilegeLevel;
use x86_64::registers::rflags::RFlags;
use x86_64::structures::idt::{InterruptDescriptorTable, InterruptStackFrame, PageFaultErrorCode};

/// The legacy PICs, remapped above the CPU exceptions; every line masked but the PIT's, and
/// that one only where the local APIC is not used.
pub const PIC_OFFSET: u8 = 32;
const PIT_VECTOR: u8 = PIC_OFFSET;
const SPURIOUS_MASTER: u8 = PIC_OFFSET + 7;
const SPURIOUS_SLAVE: u8 = PIC_OFFSET + 15;

static PICS: Mutex<ChainedPics> = Mutex::new(
    // SAFETY: vectors 32..48 do not overlap the CPU exceptions or any other handler.
    unsafe { ChainedPics::new_contiguous(PIC_OFFSET) },
);
static IDT: Once<InterruptDescriptorTable> = Once::new();

/// The first thing every handler does when it interrupted ring 3: clear AC (SMAP stays in force
/// for ring 0 whatever ring 3 did to its flags) and count the entry. Returns whether the entry
/// came from ring 3.
#[inline(always)]
fn entered_from_user(frame: &InterruptStackFrame, entry: Entry) -> bool {
    if frame.code_segment.rpl() != PrivilegeLevel::Ring3 {
        return false;
    }
    cpu::clear_alignment_check();
    let user_ac = frame.cpu_flags.contains(RFlags::ALIGNMENT_CHECK);
    apps::count_entry(entry, user_ac);
    true
}

fn on_exception(
    vector: u8,
    name: &'static str,
    frame: &InterruptStackFrame,
    error_code: Option<u64>,
) {
    let entry = if vector == 14 {
        Entry::PageFault
    } else {
        Entry::Exception
    };
    let exception = Exception::from_frame(vector, name, frame, error_code);
    if entered_from_user(frame, entry) {
        if let (Some(address), Some(code)) = (exception.cr2, error_code)
            && apps::handle_user_page_fault(address, code)
        {
            return;
        }
        apps::end_current_for_exception(&exception);
    }
    kprintln!("kernel-lite: FATAL: {exception} in kernel-lite");
    machine::exit(ImageOutcome::KernelPanic);
}

macro_rules! exception_handlers {
    ($( $field:ident, $vector:literal, $name:literal, $kind:ident; )*) => {
        fn install_exception_handlers(idt: &mut InterruptDescriptorTable) {
            $( exception_handlers!(@install idt, $field, $vector, $name, $kind); )*
        }
    };
    (@install $idt:ident, $field:ident, $vector:literal, $name:literal, plain) => {{
        extern "x86-interrupt" fn handler(frame: InterruptStackFrame) {
            on_exception($vector, $name, &frame, None);
        }
        $idt.$field.set_handler_fn(handler);
    }};
    (@install $idt:ident, $field:ident, $vector:literal, $name:literal, with_code) => {{
        extern "x86-interrupt" fn handler(frame: InterruptStackFrame, code: u64) {
            on_exception($vector, $name, &frame, Some(code));
        }
        $idt.$field.set_handler_fn(handler);
    }};
}

exception_handlers! {
    divide_error, 0, "divide error", plain;
    breakpoint, 3, "breakpoint", plain;
    overflow, 4, "overflow", plain;
    bound_range_exceeded, 5, "bound range exceeded", plain;
    invalid_opcode, 6, "invalid opcode", plain;
    device_not_available, 7, "device not available", plain;
    invalid_tss, 10, "invalid TSS", with_code;
    segment_not_present, 11, "segment not present", with_code;
    stack_segment_fault, 12, "stack-segment fault", with_code;
    general_protection_fault, 13, "general protection fault", with_code;
    x87_floating_point, 16, "x87 floating-point exception", plain;
    alignment_check, 17, "alignment check", with_code;
    simd_floating_point, 19, "SIMD floating-point exception", plain;
    virtualization, 20, "virtualization exception", plain;
    cp_protection_exception, 21, "control protection exception", with_code;
    hv_injection_exception, 28, "hypervisor injection exception", plain;
    vmm_communication_exception, 29, "VMM communication exception", with_code;
    security_exception, 30, "security exception", with_code;
}

extern "x86-interrupt" fn page_fault(frame: InterruptStackFrame, code: PageFaultErrorCode) {
    on_exception(14, "page fault", &frame, Some(code.bits()));
}

/// A debug exception (a single step, a breakpoint register, `int1`) runs on its own stack: one
/// could hit the first instruction of the kcall entry, before it has switched stacks. From ring
/// 3 it ends the app like any fault; the app never resumes on this stack, so leaving its frame
/// there is safe.
extern "x86-interrupt" fn debug(frame: InterruptStackFrame) {
    on_exception(1, "debug exception", &frame, None);
}

/// An NMI is nobody's fault: it is the host asking for diagnostics (QEMU's `nmi`, EC2's
/// `send-diagnostic-interrupt`), or a watchdog. Ask for a report and the accounting tables
/// (printed by the scheduler when the CPU next idles: an NMI may arrive while the console or
/// their lock is held), and carry on. It must return with `iretq`, which is also what unblocks the next NMI.
extern "x86-interrupt" fn non_maskable_interrupt(frame: InterruptStackFrame) {
    entered_from_user(&frame, Entry::Interrupt);
    // No printing here: an NMI may land while the console is held, and it returns to that
    // holder. The scheduler reports it (with this RIP and ring) when the CPU next idles.
    apps::request_diagnostics(frame.instruction_pointer.as_u64(), frame.code_segment.0 & 3);
}

/// A double fault means kernel-lite's own state is broken (ring 3 faults are taken one at a
/// time and never nest): the machine ends, even when CS says ring 3.
extern "x86-interrupt" fn double_fault(frame: InterruptStackFrame, code: u64) -> ! {
    let exception = Exception::from_frame(8, "double fault", &frame, Some(code));
    kprintln!("kernel-lite: FATAL: {exception}; the machine stops");
    machine::exit(ImageOutcome::KernelPanic)
}

/// A machine check is the hardware reporting an error it could not correct: no app caused it
/// and nothing may trust the machine's state after it, so the machine ends.
extern "x86-interrupt" fn machine_check(frame: InterruptStackFrame) -> ! {
    let exception = Exception::from_frame(18, "machine check", &frame, None);
    kprintln!("kernel-lite: FATAL: {exception}: a hardware error; the machine stops");
    machine::exit(ImageOutcome::KernelPanic)
}

/// The PIT's tick through the 8259 PIC (only where the local APIC is not used).
extern "x86-interrupt" fn pit_interrupt(frame: InterruptStackFrame) {
    let from_user = entered_from_user(&frame, Entry::Interrupt);
    // SAFETY: this is the handler of the PIC's timer line, so an EOI is owed for it.
    unsafe { PICS.lock().notify_end_of_interrupt(PIT_VECTOR) };
    if from_user {
        apps::on_timer_from_user();
    }
}

/// The local APIC timer's one-shot: a quantum tick when it hit ring 3, else the end of an idle
/// wait (`timer::idle_until`).
extern "x86-interrupt" fn local_apic_timer(frame: InterruptStackFrame) {
    let from_user = entered_from_user(&frame, Entry::Interrupt);
    if timer::on_local_apic_tick(from_user) {
        apps::on_timer_from_user();
    }
}

/// The local APIC found an error (a bad vector, an illegal register access): reported, cleared.
extern "x86-interrupt" fn local_apic_error(frame: InterruptStackFrame) {
    entered_from_user(&frame, Entry::Interrupt);
    if let Some(local_apic) = devices::get().and_then(|devices| devices.local_apic()) {
        let status = local_apic.clear_errors();
        local_apic.end_of_interrupt();
        kprintln!("kernel-lite: local APIC error, status {status:#x}");
    }
}

/// A spurious local APIC interrupt: nothing to do, and no EOI.
extern "x86-interrupt" fn local_apic_spurious(frame: InterruptStackFrame) {
    entered_from_user(&frame, Entry::Interrupt);
}

fn on_device_interrupt(vector: u8, frame: &InterruptStackFrame) {
    let from_user = entered_from_user(frame, Entry::Interrupt);
    irq::dispatch(vector);
    if from_user {
        apps::after_device_interrupt_from_user();
    }
}

/// One IDT entry per device vector, each calling `irq::dispatch` with its number.
macro_rules! device_vectors {
    ($($vector:literal)*) => {
        fn install_device_vectors(idt: &mut InterruptDescriptorTable) {
            $({
                extern "x86-interrupt" fn handler(frame: InterruptStackFrame) {
                    on_device_interrupt($vector, &frame);
                }
                idt[$vector].set_handler_fn(handler);
            })*
        }
        const _: () = assert!(
            [$($vector),*].len() == irq::DEVICE_VECTORS
                && [$($vector),*][0] == irq::FIRST_DEVICE_VECTOR
        );
    };
}

device_vectors! {
    0x50 0x51 0x52 0x53 0x54 0x55 0x56 0x57 0x58 0x59 0x5a 0x5b 0x5c 0x5d 0x5e 0x5f
    0x60 0x61 0x62 0x63 0x64 0x65 0x66 0x67 0x68 0x69 0x6a 0x6b 0x6c 0x6d 0x6e 0x6f
}

extern "x86-interrupt" fn spurious_master(frame: InterruptStackFrame) {
    // A spurious IRQ 7 gets no EOI.
    entered_from_user(&frame, Entry::Interrupt);
}

extern "x86-interrupt" fn spurious_slave(frame: InterruptStackFrame) {
    entered_from_user(&frame, Entry::Interrupt);
    // A spurious IRQ 15 still owes the master its EOI (for the cascade line).
    // SAFETY: vector of IRQ 2 on the master: EOI the master only.
    unsafe { PICS.lock().notify_end_of_interrupt(PIC_OFFSET + 2) };
}

/// Installs the IDT and remaps the PICs with every line masked (see [`unmask_pit`]).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        install_exception_handlers(&mut idt);
        idt.page_fault.set_handler_fn(page_fault);
        // SAFETY: the IST indices name stacks set up in the TSS by `cpu::init`, one per vector
        // and used by nothing else, so these handlers always have a good stack even when the
        // kernel's overflowed, and one cannot overwrite another's frame.
        unsafe {
            idt.debug.set_handler_fn(debug).set_stack_index(DEBUG_IST);
            idt.double_fault
                .set_handler_fn(double_fault)
                .set_stack_index(DOUBLE_FAULT_IST);
            idt.non_maskable_interrupt
                .set_handler_fn(non_maskable_interrupt)
                .set_stack_index(NMI_IST);
            idt.machine_check
                .set_handler_fn(machine_check)
                .set_stack_index(MACHINE_CHECK_IST);
        }
        idt[PIT_VECTOR].set_handler_fn(pit_interrupt);
        idt[SPURIOUS_MASTER].set_handler_fn(spurious_master);
        idt[SPURIOUS_SLAVE].set_handler_fn(spurious_slave);
        install_device_vectors(&mut idt);
        idt[apic::TIMER_VECTOR].set_handler_fn(local_apic_timer);
        idt[apic::ERROR_VECTOR].set_handler_fn(local_apic_error);
        idt[apic::SPURIOUS_VECTOR].set_handler_fn(local_apic_spurious);
        idt
    });
    idt.load();
    let mut pics = PICS.lock();
    // SAFETY: the PICs sit at the standard ports; remapping them to 32..48 keeps them off the
    // exception vectors, and every line stays masked.
    unsafe {
        pics.initialize();
        pics.write_masks(0xff, 0xff);
    }
}

/// Unmasks the PIT's line at the master PIC: the timer where there is no local APIC.
pub fn unmask_pit() {
    // SAFETY: only the PIT's line (IRQ 0) is unmasked, and `pit_interrupt` handles it.
    unsafe { PICS.lock().write_masks(0xfe, 0xff) };
}
