//! App contexts: creation from the bundle, round-robin scheduling, blocking, demand paging of
//! each app's stack and heap, and the end of an app (exit or fault) — reported, its memory
//! returned, its restart policy applied — without disturbing the others.
//!
//! Each app has its own kernel stack. A context switch saves the callee-saved registers on the
//! current kernel stack and moves to another; the scheduler loop runs on the boot stack, so an
//! ended app's stacks and memory are freed only once nothing runs on them.

mod accounting;
mod admission;
mod app;

use crate::interrupts::Exception;
use crate::loader::LoadedImage;
use crate::{console, cpu, kprintln, machine, mm, timer};
use alloc::string::String;
use alloc::vec::Vec;
use app::App;
use core::sync::atomic::{AtomicU64, Ordering};
use lite_abi::bundle::Bundle;
use lite_abi::exit::ImageOutcome;
use lite_abi::kcall::{Events, Kcall, ReportedFault};
use lite_abi::layout::{INFO_PAGE_ADDR, MAX_APPS};
use lite_core::schedule::{AfterEnd, AppEnd, Policy, RunState, Wait};
use spin::Mutex;
use x86_64::VirtAddr;
use x86_64::registers::model_specific::FsBase;

/// Timer ticks an app runs before the next ready app gets the CPU.
const QUANTUM_TICKS: u32 = 10;

/// The mechanism's state: each app's record and the policy deciding who runs
/// ([`lite_core::schedule::Policy`], host-tested).
struct Scheduler {
    apps: Vec<App>,
    policy: Policy,
    entry: u64,
    started_tsc: u64,
    /// Frames in use before the first app started: what remains when all have ended.
    frames_before_apps: u64,
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

/// Lays out `app`'s kernel stack so that switching to it enters `entry` in ring 3 with
/// `rdi = index`, `rsi = INFO_PAGE_ADDR`, interrupts on, on the app's own stack (whose pages,
/// like the heap's, are mapped when first touched).
fn start(app: &mut App, entry: u64) {
    let selectors = cpu::selectors();
    let frame: [u64; 14] = [
        0, // r15
        0, // r14
        0, // r13
        0, // r12
        0, // rbx
        0, // rbp
        enter_user as *const () as usize as u64,
        app.index as u64,
        INFO_PAGE_ADDR,
        entry,
        u64::from(selectors.user_code.0),
        0x202, // IF set
        // The ABI expects a return address slot at entry: RSP ≡ 8 (mod 16).
        app.slot.stack_top - 8,
        u64::from(selectors.user_data.0),
    ];
    let start = app.kernel_stack.top.as_u64() - 8 * frame.len() as u64;
    // SAFETY: the kernel stack is this app's alone and nothing runs on it now (the app is new
    // or has ended; the scheduler loop runs on the boot stack); the frame fits far inside it.
    unsafe { core::ptr::copy_nonoverlapping(frame.as_ptr(), start as *mut u64, frame.len()) };
    APP_RSP[app.index].store(start, Ordering::Relaxed);
}

/// Admits the bundle's apps (or refuses the bundle, ending the machine), starts them and runs
/// them until every one has ended; then ends the machine.
pub fn run(bundle: &Bundle<'_>, image: LoadedImage) -> ! {
    let admitted = admission::admit(&image.slots).unwrap_or_else(|error| {
        kprintln!("kernel-lite: {error}");
        machine::exit(ImageOutcome::BundleRefused)
    });
    let frames_before_apps = mm::frame_usage().in_use;
    let mut apps = Vec::with_capacity(bundle.app_count());
    for ((index, spec), (stack, account)) in bundle.apps().enumerate().zip(admitted) {
        let mut app = App::new(index, &spec, image.slots[index], stack, account);
        start(&mut app, image.entry);
        apps.push(app);
    }
    let usage = mm::frame_usage();
    kprintln!(
        "kernel-lite: started {} app(s); {} KiB guaranteed to them, {} KiB free beyond that",
        apps.len(),
        usage.promised * 4,
        (usage.total - usage.in_use - usage.promised) * 4
    );
    let policy = Policy::new(apps.iter().map(|app| app.restart), QUANTUM_TICKS);
    *SCHEDULER.lock() = Some(Scheduler {
        apps,
        policy,
        entry: image.entry,
        started_tsc: timer::rdtsc(),
        frames_before_apps,
    });
    scheduler_loop()
}

fn scheduler_loop() -> ! {
    loop {
        let next = with_scheduler(|scheduler| {
            scheduler.wake_due();
            let next = scheduler.policy.pick_next()?;
            let app = &scheduler.apps[next];
            cpu::set_kernel_stack(app.kernel_stack.top);
            FsBase::write(VirtAddr::new(app.slot.heap_base));
            Some(next)
        });
        match next {
            Some(index) => {
                let switched_in = timer::rdtsc();
                // SAFETY: the app's saved stack pointer was prepared by `start` or saved by
                // `switch_context` when it last left the CPU; its kernel stack lives as long as
                // kernel-lite, and interrupts are off.
                unsafe {
                    switch_context(
                        SCHEDULER_RSP.as_ptr(),
                        APP_RSP[index].load(Ordering::Relaxed),
                    )
                };
                let ran = timer::rdtsc() - switched_in;
                with_scheduler(|scheduler| {
                    scheduler.policy.left_cpu();
                    scheduler.apps[index].cpu_ticks += ran;
                    if let RunState::Ended(_) = scheduler.policy.state(index) {
                        scheduler.after_end(index);
                    }
                });
            }
            None => {
                let (all_ended, wakeup) = with_scheduler(|scheduler| {
                    (scheduler.policy.all_ended(), scheduler.policy.next_wakeup())
                });
                if all_ended {
                    finish();
                }
                // Nothing is ready: sleep until the next deadline or interrupt.
                timer::idle_until(wakeup);
            }
        }
    }
}

impl Scheduler {
    /// The app on the CPU; only called while one runs (from its kcalls and faults).
    fn running(&mut self) -> &mut App {
        let index = self.policy.running().expect("an app is running");
        &mut self.apps[index]
    }

    /// Wakes what is due; an app whose restart is due gets a fresh entry frame.
    fn wake_due(&mut self) {
        let (apps, entry) = (&mut self.apps, self.entry);
        self.policy.wake_due(timer::rdtsc(), |index, used| {
            let app = &mut apps[index];
            kprintln!(
                "kernel-lite: restarting app '{}' (restart {used} of {})",
                app.name,
                app.restart.limit()
            );
            start(app, entry);
        });
    }

    /// An app's run ended: return its memory, then restart it or not, by its policy.
    fn after_end(&mut self, index: usize) {
        let app = &mut self.apps[index];
        app.release_memory();
        match self
            .policy
            .after_end(index, timer::rdtsc(), timer::tsc_per_ms())
        {
            AfterEnd::Restart { delay_ms, used } => {
                kprintln!(
                    "kernel-lite: app '{}' will restart in {delay_ms} ms ({used} of {} restarts used)",
                    app.name,
                    app.restart.limit()
                );
            }
            AfterEnd::Stopped { limit_reached } => {
                if limit_reached {
                    kprintln!(
                        "kernel-lite: app '{}' is not restarted: restart limit {} reached",
                        app.name,
                        app.restart.limit()
                    );
                }
                // It will not run again: its promise goes back to the pool.
                mm::close_account(&mut app.account);
            }
        }
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
    with_scheduler(|scheduler| scheduler.policy.running()).expect("an app is running")
}

/// Why ring 3 entered ring 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Kcall(Kcall),
    /// A `syscall` with a number that names no kcall.
    UnknownKcall,
    /// A page fault: demand paging of the app's stack or heap, or the app's own error.
    PageFault,
    /// Any other CPU exception.
    Exception,
    /// A timer or device interrupt (or an NMI) that arrived while the app ran.
    Interrupt,
}

/// Counts an entry into ring 0 against the running app. `user_ac`: the app had RFLAGS.AC set;
/// the entry path cleared it, which is checked here (SMAP must hold for ring 0).
pub fn count_entry(entry: Entry, user_ac: bool) {
    with_scheduler(|scheduler| {
        let Some(index) = scheduler.policy.running() else {
            return;
        };
        let app = &mut scheduler.apps[index];
        app.entries.count(entry);
        if user_ac {
            if x86_64::registers::rflags::read()
                .contains(x86_64::registers::rflags::RFlags::ALIGNMENT_CHECK)
            {
                kprintln!("kernel-lite: FATAL: RFLAGS.AC still set in ring 0: SMAP bypassed");
                machine::exit(ImageOutcome::KernelPanic);
            }
            if !app.saw_user_ac {
                app.saw_user_ac = true;
                kprintln!(
                    "kernel-lite: app '{}' entered ring 0 with RFLAGS.AC set; ring 0 runs with it \
                     clear (SMAP holds)",
                    app.name
                );
            }
        }
    });
}

/// Writes the running app's console output (see [`console::write_app`]).
pub fn console_write(bytes: &[u8]) {
    with_scheduler(|scheduler| {
        if let Some(index) = scheduler.policy.running() {
            console::write_app(index, &scheduler.apps[index].name, bytes);
        }
    });
}

/// The running app gives up the CPU but stays ready.
pub fn yield_current() {
    let index = current();
    with_scheduler(|scheduler| scheduler.policy.yield_running());
    switch_to_scheduler(index);
}

/// The running app sleeps until the TSC reaches `deadline_tsc` or one of `events` is pending;
/// returns (and clears) the pending events of the mask.
pub fn wait(deadline_tsc: u64, events: Events) -> Events {
    let index = current();
    let outcome =
        with_scheduler(|scheduler| scheduler.policy.wait(deadline_tsc, events, timer::rdtsc()));
    match outcome {
        Wait::Now(ready) => ready,
        Wait::Blocked => {
            switch_to_scheduler(index);
            with_scheduler(|scheduler| scheduler.policy.take_events(index, events))
        }
    }
}

/// On a timer interrupt that hit ring 3: preempt the running app when its quantum is used up
/// or another app is due (a sleeper's deadline or event, a restart).
pub fn on_timer_from_user() {
    if with_scheduler(|scheduler| scheduler.policy.on_tick(timer::rdtsc())) {
        yield_current();
    }
}

/// A page fault in ring 3 on a page not mapped yet: if it lies in the running app's stack or
/// heap, map it and let the app go on. Returns `false` when the fault is the app's own error.
pub fn handle_user_page_fault(address: u64, error_code: u64) -> bool {
    const PRESENT: u64 = 1;
    if error_code & PRESENT != 0 {
        return false;
    }
    let mapped = with_scheduler(|scheduler| {
        let app = scheduler.running();
        if !app.owns_address(address) {
            return None;
        }
        Some(app.map_on_demand(address))
    });
    match mapped {
        None => false,
        Some(Ok(())) => true,
        Some(Err(error)) => end_current_for_report(
            ReportedFault::OutOfMemory,
            &alloc::format!("no memory for the page at {address:#x}: {error}"),
        ),
    }
}

/// Maps the page at `address` for the running app if it lies in its stack or heap and is not
/// mapped yet (a kcall reading a buffer the app never touched). `false` if it is not the app's.
pub fn map_for_kernel(address: u64) -> bool {
    with_scheduler(|scheduler| {
        let app = scheduler.running();
        app.owns_address(address) && app.map_on_demand(address).is_ok()
    })
}

fn end_current(end: AppEnd) -> ! {
    let index = current();
    with_scheduler(|scheduler| {
        scheduler.policy.end_running(end);
        if end == AppEnd::Faulted {
            scheduler.apps[index].faults += 1;
        }
    });
    switch_to_scheduler(index);
    unreachable!("an ended app is never resumed");
}

fn current_name() -> String {
    with_scheduler(|scheduler| scheduler.running().name.clone())
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
        let app = scheduler.running();
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
        "kernel-lite: app '{}' ended by {}: {}",
        current_name(),
        kind.name(),
        console::Escaped(message)
    );
    end_current(AppEnd::Faulted)
}

/// Every app has ended: print the accounting table and end the machine with the apps' verdict.
fn finish() -> ! {
    let (outcome, frames_before_apps) = with_scheduler(|scheduler| {
        kprintln!("kernel-lite: all apps ended");
        accounting::print_table(
            &scheduler.apps,
            &scheduler.policy,
            timer::rdtsc() - scheduler.started_tsc,
        );
        let outcome = if scheduler.policy.any_failed() {
            ImageOutcome::SomeAppFailed
        } else {
            ImageOutcome::AllAppsSucceeded
        };
        (outcome, scheduler.frames_before_apps)
    });
    let frames = mm::frame_usage();
    kprintln!(
        "kernel-lite: frames in use {} (peak {}) of {}; before the apps {frames_before_apps}; \
         exit {outcome:?}",
        frames.in_use,
        frames.peak,
        frames.total
    );
    machine::exit(outcome)
}
