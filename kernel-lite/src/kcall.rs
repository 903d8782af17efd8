//! The privileged-call gate: `syscall` enters here, `sysret` leaves.
//!
//! The entry stub switches to the running app's kernel stack, saves the registers a kcall
//! uses into a [`KcallFrame`], and calls [`dispatch`]. The table is the one in `lite_abi::kcall`.

use crate::{apps, mm, net, storage};
use core::sync::atomic::{AtomicU64, Ordering};
use lite_abi::kcall::{CONSOLE_WRITE_MAX, Events, Kcall, KcallError, ReportedFault};
use x86_64::VirtAddr;
use x86_64::registers::model_specific::{Efer, EferFlags, LStar, SFMask, Star};
use x86_64::registers::rflags::RFlags;

/// Top of the running app's kernel stack; the entry stub switches to it.
static KCALL_STACK_TOP: AtomicU64 = AtomicU64::new(0);
/// The app's stack pointer while the entry stub saves it (one CPU, interrupts off).
static USER_RSP_SCRATCH: AtomicU64 = AtomicU64::new(0);

/// The app's registers at the `syscall`, as the entry stub pushed them.
#[derive(Debug)]
#[repr(C)]
pub struct KcallFrame {
    /// The kcall number on entry; the result on return.
    pub rax: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub r10: u64,
    pub r8: u64,
    pub r9: u64,
    /// The app's RIP after the `syscall` (the CPU put it in RCX).
    pub rcx: u64,
    /// The app's RFLAGS (the CPU put them in R11).
    pub r11: u64,
    pub user_rsp: u64,
}

/// Enables `syscall`/`sysret` and points them at the entry stub.
pub fn init() {
    let selectors = crate::cpu::selectors();
    // SAFETY: the selectors are laid out as `sysret` requires (kernel code, kernel data, user
    // data, user code, checked by `Star::write`), the entry stub is a valid kernel function, and
    // the mask clears IF so the stub runs with interrupts off until `sysret`.
    unsafe {
        Star::write(
            selectors.user_code,
            selectors.user_data,
            selectors.kernel_code,
            selectors.kernel_data,
        )
        .unwrap_or_else(|error| panic!("GDT layout unfit for sysret: {error}"));
        LStar::write(VirtAddr::new(syscall_entry as *const () as usize as u64));
        SFMask::write(
            RFlags::INTERRUPT_FLAG
                | RFlags::TRAP_FLAG
                | RFlags::DIRECTION_FLAG
                | RFlags::ALIGNMENT_CHECK
                | RFlags::NESTED_TASK,
        );
        Efer::update(|efer| efer.insert(EferFlags::SYSTEM_CALL_EXTENSIONS));
    }
    // Touch the entry stub's page from ring 0 before ring 3 first runs: an experiment for
    // hypervisors whose first `syscall` was seen fetching the stub as not present (see README).
    // SAFETY: the stub is kernel code, mapped readable; a volatile read of its first byte has
    // no side effects.
    let _ = unsafe { core::ptr::read_volatile(syscall_entry as *const () as *const u8) };
}

/// Makes kcalls run on `top`, the kernel stack of the app about to run.
#[inline]
pub fn set_kernel_stack(top: VirtAddr) {
    KCALL_STACK_TOP.store(top.as_u64(), Ordering::Relaxed);
}

#[unsafe(naked)]
extern "C" fn syscall_entry() {
    core::arch::naked_asm!(
        "mov [rip + {scratch}], rsp",
        "mov rsp, [rip + {stack_top}]",
        "push qword ptr [rip + {scratch}]",
        "push r11",
        "push rcx",
        "push r9",
        "push r8",
        "push r10",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rax",
        // Ten pushes keep the 16-byte alignment the call needs.
        "mov rdi, rsp",
        "call {dispatch}",
        "pop rax",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop r10",
        "pop r8",
        "pop r9",
        "pop rcx",
        "pop r11",
        "pop rsp",
        // RCX is the app's own RIP after its `syscall`, below USER_TOP, so canonical.
        "sysretq",
        scratch = sym USER_RSP_SCRATCH,
        stack_top = sym KCALL_STACK_TOP,
        dispatch = sym dispatch,
    )
}

extern "C" fn dispatch(frame: &mut KcallFrame) {
    // SFMASK cleared AC (and IF, TF, DF) on the way in; the app's own flags are in R11.
    let user_ac = frame.r11 & RFlags::ALIGNMENT_CHECK.bits() != 0;
    let kcall = Kcall::from_number(frame.rax);
    apps::count_entry(
        kcall.map_or(apps::Entry::UnknownKcall, apps::Entry::Kcall),
        user_ac,
    );
    let result = match kcall {
        Some(kcall) => run(kcall, frame),
        None => Err(KcallError::UnknownKcall),
    };
    frame.rax = match result {
        Ok(value) => value,
        Err(error) => error.to_result(),
    };
}

/// Copies an app's buffer in, mapping on demand any page of its stack or heap it has not
/// touched yet (it reads as zeros, as it would in ring 3).
fn copy_in(address: u64, out: &mut [u8]) -> Result<(), KcallError> {
    loop {
        match mm::copy_from_user(address, out) {
            Ok(()) => return Ok(()),
            Err(mm::UserCopyError::NotMapped(page)) if apps::map_for_kernel(page) => continue,
            Err(_) => return Err(KcallError::BadAddress),
        }
    }
}

fn run(kcall: Kcall, frame: &KcallFrame) -> Result<u64, KcallError> {
    match kcall {
        Kcall::Null => Ok(0),
        Kcall::ConsoleWrite => console_write(frame.rdi, frame.rsi),
        Kcall::Exit => apps::exit_current(frame.rdi as i64),
        Kcall::Yield => {
            apps::yield_current();
            Ok(0)
        }
        Kcall::Wait => {
            // An app about to sleep needs no flush kcall of its own.
            let index = apps::running_index();
            let _ = net::flush(index);
            let _ = storage::kick(index);
            Ok(apps::wait(frame.rdi, Events(frame.rsi)).0)
        }
        Kcall::ReportFault => report_fault(frame.rdi, frame.rsi, frame.rdx),
        Kcall::NetFlush => net::flush(apps::running_index()),
        Kcall::BlkKick => storage::kick(apps::running_index()),
    }
}

// The two kcalls with buffers live apart from `dispatch` so that the hot ones (null, yield,
// wait) do not pay for their stack frame and saved registers.

#[inline(never)]
fn console_write(address: u64, len: u64) -> Result<u64, KcallError> {
    let len = len as usize;
    if len > CONSOLE_WRITE_MAX {
        return Err(KcallError::BadArgument);
    }
    // Small chunks keep the kernel stack small; the console keeps the line the app's.
    let mut chunk = [0u8; 256];
    let mut done = 0;
    while done < len {
        let part = (len - done).min(chunk.len());
        copy_in(address.wrapping_add(done as u64), &mut chunk[..part])?;
        apps::console_write(&chunk[..part]);
        done += part;
    }
    Ok(len as u64)
}

#[inline(never)]
fn report_fault(kind: u64, address: u64, len: u64) -> Result<u64, KcallError> {
    let kind = ReportedFault::from_number(kind).ok_or(KcallError::BadArgument)?;
    let mut message = [0u8; 512];
    let len = (len as usize).min(message.len());
    copy_in(address, &mut message[..len])?;
    let text = match core::str::from_utf8(&message[..len]) {
        Ok(text) => text,
        Err(error) => core::str::from_utf8(&message[..error.valid_up_to()]).unwrap_or(""),
    };
    apps::end_current_for_report(kind, text)
}
