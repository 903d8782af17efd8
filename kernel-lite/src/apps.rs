//! App contexts: creation from the bundle, round-robin scheduling, blocking, and the end of an
//! app (exit or fault) without disturbing the others.
//!
//! Each app has its own kernel stack. A context switch saves the callee-saved registers on the
//! current kernel stack and moves to another; the scheduler loop runs on the boot stack, so an
//! ended app's stack is freed only once nothing runs on it.

use crate::interrupts::Exception;
use crate::loader::LoadedImage;
use crate::mm::{self, KernelStack, UserAccess};
use crate::{cpu, kcall, kprintln, machine, timer};
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use lite_abi::bundle::Bundle;
use lite_abi::exit::ImageOutcome;
use lite_abi::kcall::{KCALL_COUNT, Kcall, ReportedFault};
use lite_abi::layout::{AppSlot, INFO_PAGE_ADDR, MAX_APPS};
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::FsBase;

/// Timer ticks an app runs before the next ready app gets the CPU.
const QUANTUM_TICKS: u32 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AppState {
    Ready,
    Running,
    Blocked { deadline_tsc: u64 },
    Ended(AppEnd),
}

/// How an app ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnd {
    Exited(i64),
    Faulted,
}

struct App {
    name: String,
    slot: AppSlot,
    heap_bytes: u64,
    state: AppState,
    kernel_stack: Option<KernelStack>,
    at_line_start: bool,
    kcalls: [u64; KCALL_COUNT],
}

struct Scheduler {
    apps: Vec<App>,
    current: Option<usize>,
    last: usize,
    quantum_left: u32,
}

static SCHEDULER: Mutex<Option<Scheduler>> = Mutex::new(None);
/// Saved kernel stack pointers: one per app, one for the scheduler loop. Kept outside the lock
/// because a switch writes one while it moves to another stack.
static APP_RSP: [AtomicU64; MAX_APPS] = [const { AtomicU64::new(0) }; MAX_APPS];
static SCHEDULER_RSP: AtomicU64 = AtomicU64::new(0);

fn with_scheduler<R>(f: impl FnOnce(&mut Scheduler) -> R) -> R {
    let mut scheduler = SCHEDULER.lock();
    f(scheduler.as_mut().expect("apps::run started"))
}

/// Saves the callee-saved registers and the stack pointer into `*save`, then resumes the
/// context whose stack pointer is `load`.
///
/// # Safety
///
/// `load` must be a stack pointer saved by this function (or prepared like one by
/// [`prepare_entry`]) whose stack is still mapped, and interrupts must be off.
#[unsafe(naked)]
unsafe extern "C" fn switch_context(save: *mut u64, load: u64) {
    core::arch::naked_asm!(
        "push rbp",
        "push rbx",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "mov [rdi], rsp",
        "mov rsp, rsi",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop rbx",
        "pop rbp",
        "ret",
    )
}

/// The first code a new app context runs: load its arguments and enter ring 3 with `iretq`.
#[unsafe(naked)]
unsafe extern "C" fn enter_user() {
    core::arch::naked_asm!(
        "pop rdi",
        "pop rsi",
        "xor eax, eax",
        "xor ebx, ebx",
        "xor ecx, ecx",
        "xor edx, edx",
        "xor ebp, ebp",
        "xor r8d, r8d",
        "xor r9d, r9d",
        "xor r10d, r10d",
        "xor r11d, r11d",
        "xor r12d, r12d",
        "xor r13d, r13d",
        "xor r14d, r14d",
        "xor r15d, r15d",
        "iretq",
    )
}

/// Lays out a new app's kernel stack so that switching to it enters `entry` in ring 3 with
/// `rdi = index`, `rsi = INFO_PAGE_ADDR`, interrupts on, on the app's own stack.
fn prepare_entry(stack: &KernelStack, index: usize, entry: u64, user_stack_top: u64) -> u64 {
    let selectors = cpu::selectors();
    let frame: [u64; 13] = [
        0, // r15
        0, // r14
        0, // r13
        0, // r12
        0, // rbx
        0, // rbp
        enter_user as *const () as usize as u64,
        index as u64,
        INFO_PAGE_ADDR,
        entry,
        u64::from(selectors.user_code.0),
        0x202, // IF set
        // The ABI expects a return address slot at entry: RSP ≡ 8 (mod 16).
        user_stack_top - 8,
    ];
    let ss = u64::from(selectors.user_data.0);
    let start = stack.top.as_u64() - 8 * (frame.len() as u64 + 1);
    let words = start as *mut u64;
    // SAFETY: the kernel stack was just mapped for this app and nothing runs on it yet; the
    // frame fits far inside it.
    unsafe {
        core::ptr::copy_nonoverlapping(frame.as_ptr(), words, frame.len());
        words.add(frame.len()).write(ss);
    }
    start
}

/// Creates the bundle's apps and runs them until every one has ended; then ends the machine.
pub fn run(bundle: &Bundle<'_>, image: LoadedImage) -> ! {
    let mut apps = Vec::with_capacity(bundle.app_count());
    for (index, spec) in bundle.apps().enumerate() {
        let slot = image.slots[index];
        let start = mm::map_user(
            slot.stack_bottom,
            slot.stack_top - slot.stack_bottom,
            UserAccess::ReadWrite,
            |_, _| {},
        )
        .and_then(|()| {
            mm::map_user(
                slot.heap_base,
                spec.heap_bytes,
                UserAccess::ReadWrite,
                |_, _| {},
            )
        });
        if let Err(error) = start {
            kprintln!("kernel-lite: cannot start app '{}': {error}", spec.name);
            machine::exit(ImageOutcome::KernelPanic);
        }
        let kernel_stack = mm::allocate_kernel_stack();
        APP_RSP[index].store(
            prepare_entry(&kernel_stack, index, image.entry, slot.stack_top),
            Ordering::Relaxed,
        );
        apps.push(App {
            name: String::from(spec.name),
            slot,
            heap_bytes: spec.heap_bytes,
            state: AppState::Ready,
            kernel_stack: Some(kernel_stack),
            at_line_start: true,
            kcalls: [0; KCALL_COUNT],
        });
    }
    *SCHEDULER.lock() = Some(Scheduler {
        apps,
        current: None,
        last: usize::MAX,
        quantum_left: QUANTUM_TICKS,
    });
    scheduler_loop()
}

fn scheduler_loop() -> ! {
    loop {
        let next = with_scheduler(|scheduler| {
            scheduler.wake_sleepers(timer::rdtsc());
            let next = scheduler.pick_next()?;
            let app = &mut scheduler.apps[next];
            app.state = AppState::Running;
            let top = app
                .kernel_stack
                .as_ref()
                .expect("a ready app has a kernel stack")
                .top;
            cpu::set_kernel_stack(top);
            kcall::set_kernel_stack(top);
            FsBase::write(VirtAddr::new(app.slot.heap_base));
            scheduler.current = Some(next);
            scheduler.last = next;
            scheduler.quantum_left = QUANTUM_TICKS;
            Some(next)
        });
        match next {
            Some(index) => {
                // SAFETY: the app's saved stack pointer was prepared by `prepare_entry` or saved
                // by `switch_context` when it last left the CPU; its stack is still mapped
                // (stacks are freed only below, once an app has ended), and interrupts are off.
                unsafe {
                    switch_context(
                        SCHEDULER_RSP.as_ptr(),
                        APP_RSP[index].load(Ordering::Relaxed),
                    )
                };
                with_scheduler(|scheduler| {
                    scheduler.current = None;
                    if let AppState::Ended(_) = scheduler.apps[index].state {
                        scheduler.reap(index);
                    }
                });
            }
            None => {
                if with_scheduler(|scheduler| scheduler.all_ended()) {
                    finish();
                }
                // Nothing is ready: sleep until the next interrupt (the timer wakes sleepers).
                x86_64::instructions::interrupts::enable_and_hlt();
                x86_64::instructions::interrupts::disable();
            }
        }
    }
}

impl Scheduler {
    fn pick_next(&self) -> Option<usize> {
        let count = self.apps.len();
        (1..=count)
            .map(|step| self.last.wrapping_add(step) % count)
            .find(|&index| self.apps[index].state == AppState::Ready)
    }

    fn wake_sleepers(&mut self, now: u64) {
        for app in &mut self.apps {
            if let AppState::Blocked { deadline_tsc } = app.state
                && deadline_tsc <= now
            {
                app.state = AppState::Ready;
            }
        }
    }

    fn sleeper_due(&self, now: u64) -> bool {
        self.apps.iter().any(
            |app| matches!(app.state, AppState::Blocked { deadline_tsc } if deadline_tsc <= now),
        )
    }

    fn all_ended(&self) -> bool {
        self.apps
            .iter()
            .all(|app| matches!(app.state, AppState::Ended(_)))
    }

    /// Returns an ended app's memory: its kernel stack, its ring-3 stack and heap.
    fn reap(&mut self, index: usize) {
        let app = &mut self.apps[index];
        if let Some(stack) = app.kernel_stack.take() {
            mm::free_kernel_stack(stack);
        }
        mm::unmap_user(
            app.slot.stack_bottom,
            app.slot.stack_top - app.slot.stack_bottom,
        );
        mm::unmap_user(app.slot.heap_base, app.heap_bytes);
    }
}

/// Leaves the CPU to the scheduler loop after the current app's state has been set.
fn switch_to_scheduler(index: usize) {
    // SAFETY: the scheduler's stack pointer was saved when it switched to this app, its stack
    // (the boot stack) is always mapped, and kernel-lite runs with interrupts off.
    unsafe {
        switch_context(
            APP_RSP[index].as_ptr(),
            SCHEDULER_RSP.load(Ordering::Relaxed),
        )
    };
}

fn current() -> usize {
    with_scheduler(|scheduler| scheduler.current).expect("an app is running")
}

/// Counts a kcall against the running app.
pub fn count_kcall(kcall: Kcall) {
    with_scheduler(|scheduler| {
        if let Some(index) = scheduler.current {
            scheduler.apps[index].kcalls[kcall as usize] += 1;
        }
    });
}

/// Writes an app's console output, each line prefixed with the app's name.
pub fn console_write(bytes: &[u8]) {
    with_scheduler(|scheduler| {
        let Some(index) = scheduler.current else {
            return;
        };
        let app = &mut scheduler.apps[index];
        for line in bytes.split_inclusive(|&b| b == b'\n') {
            if app.at_line_start {
                crate::kprint!("[{}] ", app.name);
            }
            crate::console::write_bytes(line);
            app.at_line_start = line.ends_with(b"\n");
        }
    });
}

/// The running app gives up the CPU but stays ready.
pub fn yield_current() {
    let index = current();
    with_scheduler(|scheduler| scheduler.apps[index].state = AppState::Ready);
    switch_to_scheduler(index);
}

/// The running app sleeps until the TSC reaches `deadline_tsc`.
pub fn wait_until(deadline_tsc: u64) {
    if deadline_tsc <= timer::rdtsc() {
        return;
    }
    let index = current();
    with_scheduler(|scheduler| scheduler.apps[index].state = AppState::Blocked { deadline_tsc });
    switch_to_scheduler(index);
}

/// On a timer interrupt that hit ring 3: preempt the running app when its quantum is used up
/// or a sleeping app is due.
pub fn on_timer_from_user() {
    let preempt = with_scheduler(|scheduler| {
        scheduler.quantum_left = scheduler.quantum_left.saturating_sub(1);
        scheduler.quantum_left == 0 || scheduler.sleeper_due(timer::rdtsc())
    });
    if preempt {
        yield_current();
    }
}

fn end_current(end: AppEnd) -> ! {
    let index = current();
    with_scheduler(|scheduler| scheduler.apps[index].state = AppState::Ended(end));
    switch_to_scheduler(index);
    unreachable!("an ended app is never resumed");
}

fn current_name() -> String {
    with_scheduler(|scheduler| {
        scheduler.apps[scheduler.current.expect("an app is running")]
            .name
            .clone()
    })
}

/// The running app asked to end with `status`.
pub fn exit_current(status: i64) -> ! {
    kprintln!(
        "kernel-lite: app '{}' exited with status {status}",
        current_name()
    );
    end_current(AppEnd::Exited(status))
}

/// The running app caused a CPU exception: report it and end the app.
pub fn end_current_for_exception(exception: &Exception) -> ! {
    let (name, guard_page) = with_scheduler(|scheduler| {
        let app = &scheduler.apps[scheduler.current.expect("an app is running")];
        (app.name.clone(), app.slot.guard_page())
    });
    let overflow = exception
        .cr2
        .is_some_and(|address| (guard_page..guard_page + 4096).contains(&address));
    let note = if overflow {
        " (stack overflow into the guard page)"
    } else {
        ""
    };
    kprintln!("kernel-lite: app '{name}' ended by {exception}{note}");
    end_current(AppEnd::Faulted)
}

/// The running app reported a fault of its own (a panic, out of memory): log it and end the app.
pub fn end_current_for_report(kind: ReportedFault, message: &str) -> ! {
    kprintln!(
        "kernel-lite: app '{}' ended by {}: {message}",
        current_name(),
        kind.name()
    );
    end_current(AppEnd::Faulted)
}

/// Every app has ended: print the accounting table and end the machine with the apps' verdict.
fn finish() -> ! {
    let outcome = with_scheduler(|scheduler| {
        kprintln!("kernel-lite: all apps ended");
        kprint_table(scheduler);
        let failed = scheduler
            .apps
            .iter()
            .any(|app| app.state != AppState::Ended(AppEnd::Exited(0)));
        if failed {
            ImageOutcome::SomeAppFailed
        } else {
            ImageOutcome::AllAppsSucceeded
        }
    });
    let (in_use, total) = mm::frame_usage();
    kprintln!("kernel-lite: frames in use {in_use} of {total}; exit {outcome:?}");
    machine::exit(outcome)
}

fn kprint_table(scheduler: &Scheduler) {
    kprintln!("{:<16} {:<12} kcalls", "app", "end");
    for app in &scheduler.apps {
        let end = match app.state {
            AppState::Ended(AppEnd::Exited(status)) => alloc::format!("exit {status}"),
            AppState::Ended(AppEnd::Faulted) => String::from("fault"),
            _ => String::from("running"),
        };
        let mut kcalls = String::new();
        for kcall in Kcall::ALL {
            let count = app.kcalls[kcall as usize];
            if count > 0 {
                kcalls.push_str(&alloc::format!("{}={} ", kcall.name(), count));
            }
        }
        kprintln!("{:<16} {:<12} {}", app.name, end, kcalls.trim_end());
    }
}
