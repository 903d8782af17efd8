//! App contexts: creation from the bundle, round-robin scheduling, blocking, demand paging of
//! each app's stack and heap, and the end of an app (exit or fault) — reported, its memory
//! returned, its restart policy applied — without disturbing the others.
//!
//! Each app has its own kernel stack, made at admission and kept across restarts. A context
//! switch saves the callee-saved registers on the current kernel stack and moves to another: an
//! app that yields, blocks or is preempted hands the CPU straight to the next ready app; an app
//! that ends goes to the scheduler loop on the boot stack, which returns its memory once nothing
//! runs on it. Who runs when is [`lite_core::schedule::Policy`]'s decision.

mod accounting;
mod admission;
mod app;

use crate::fault::Exception;
use crate::loader::LoadedImage;
use crate::{console, cpu, kprintln, machine, mm, timer};
use alloc::string::String;
use alloc::vec::Vec;
use app::{App, EntryCounts};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use lite_abi::bundle::Bundle;
use lite_abi::exit::ImageOutcome;
use lite_abi::kcall::{Events, Kcall, ReportedFault};
use lite_abi::layout::{INFO_PAGE_ADDR, MAX_APPS};
use lite_core::schedule::{AfterEnd, AppEnd, Policy, Wait};
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
    /// The TSC when the running app got the CPU.
    running_since: u64,
    /// An app whose run just ended, for the scheduler loop to clean up off its stacks.
    just_ended: Option<usize>,
    /// Frames in use before the first app started: what remains when all have ended.
    frames_before_apps: u64,
}

static SCHEDULER: Mutex<Option<Scheduler>> = Mutex::new(None);
/// Saved kernel stack pointers: one per app, one for the scheduler loop. Kept outside the lock
/// because a switch writes one while it moves to another stack.
static APP_RSP: [AtomicU64; MAX_APPS] = [const { AtomicU64::new(0) }; MAX_APPS];
static SCHEDULER_RSP: AtomicU64 = AtomicU64::new(0);
/// The app on the CPU (`usize::MAX`: none) and its entry counters, set by the scheduler loop
/// around each switch, so the hot entry paths (a kcall, a timer tick) need no lock to find them.
static RUNNING_APP: AtomicUsize = AtomicUsize::new(usize::MAX);
static RUNNING_ENTRIES: AtomicPtr<EntryCounts> = AtomicPtr::new(core::ptr::null_mut());
/// Set by an NMI: the scheduler loop reports it and prints the accounting tables when it next
/// runs; the NMI's RIP and ring (the last one's, if several came).
static DIAGNOSTICS_REQUESTED: AtomicBool = AtomicBool::new(false);
static NMI_RIP: AtomicU64 = AtomicU64::new(0);
static NMI_RING: AtomicU64 = AtomicU64::new(0);

/// Asks for the accounting tables (see `interrupts::non_maskable_interrupt`); safe in any
/// context, NMI included, as it only stores atomics.
pub fn request_diagnostics(rip: u64, ring: u16) {
    NMI_RIP.store(rip, Ordering::Relaxed);
    NMI_RING.store(u64::from(ring), Ordering::Relaxed);
    DIAGNOSTICS_REQUESTED.store(true, Ordering::Release);
}

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
    crate::net::start(app.index);
    crate::storage::start(app.index);
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
        if let Some(config) = &spec.net
            && let Err(error) = app.attach_network(config)
        {
            // The rings are part of the app's promise, so this cannot fail once admitted.
            kprintln!("kernel-lite: app '{}': frame rings: {error}", app.name);
            machine::exit(ImageOutcome::KernelPanic);
        }
        if let Some(binding) = &spec.disk
            && let Err(error) = app.attach_disk(binding)
        {
            // Likewise part of the app's promise.
            kprintln!("kernel-lite: app '{}': block ring: {error}", app.name);
            machine::exit(ImageOutcome::KernelPanic);
        }
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
    let policy = Policy::new(bundle.apps().map(|spec| spec.restart), QUANTUM_TICKS);
    *SCHEDULER.lock() = Some(Scheduler {
        apps,
        policy,
        entry: image.entry,
        started_tsc: timer::rdtsc(),
        running_since: 0,
        just_ended: None,
        frames_before_apps,
    });
    scheduler_loop()
}

/// Runs on the boot stack: cleans up after an app that ended, picks the next ready app, or
/// idles. An app that yields, blocks or is preempted switches straight to the next ready app
/// ([`Scheduler::hand_over`]); only an end, or nothing else to run, comes back here.
fn scheduler_loop() -> ! {
    loop {
        let next = with_scheduler(|scheduler| {
            if let Some(index) = scheduler.just_ended.take() {
                scheduler.after_end(index);
            }
            if DIAGNOSTICS_REQUESTED.swap(false, Ordering::Acquire) {
                kprintln!(
                    "kernel-lite: non-maskable interrupt at RIP {:#x} (ring {}); diagnostics \
                     requested",
                    NMI_RIP.load(Ordering::Relaxed),
                    NMI_RING.load(Ordering::Relaxed)
                );
                kprintln!("kernel-lite: diagnostics (apps still running)");
                scheduler.print_tables();
            }
            let now = timer::rdtsc();
            scheduler.wake_due(now);
            let next = scheduler.policy.pick_next()?;
            scheduler.switch_in(next, now);
            Some(next)
        });
        match next {
            // SAFETY: the app's saved stack pointer was prepared by `start` or saved by
            // `switch_context` when it last left the CPU; its kernel stack lives as long as
            // kernel-lite, and interrupts are off.
            Some(index) => unsafe {
                switch_context(
                    SCHEDULER_RSP.as_ptr(),
                    APP_RSP[index].load(Ordering::Relaxed),
                )
            },
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
    /// The accounting tables: every app, then the network's ports.
    fn print_tables(&self) {
        accounting::print_table(&self.apps, &self.policy, timer::rdtsc() - self.started_tsc);
        accounting::print_network_table(&self.apps);
        accounting::print_storage_table(&self.apps);
        // Two of these lines bracket a run: busy time is the TSC's advance less the idle's.
        kprintln!(
            "kernel-lite: cpu tsc {} idle {} ticks per ms {}",
            timer::rdtsc(),
            timer::idle_ticks(),
            timer::tsc_per_ms()
        );
        kprintln!("kernel-lite: end of tables");
    }

    /// Gives `index` the CPU: its kernel stack for traps and kcalls, its FS base, and the
    /// lock-free pointers the entry paths use.
    fn switch_in(&mut self, index: usize, now: u64) {
        let app = &self.apps[index];
        cpu::set_kernel_stack(app.kernel_stack.top);
        // Below USER_TOP, so canonical: no check needed on this hot path.
        FsBase::write(VirtAddr::new_truncate(app.slot.heap_base));
        RUNNING_APP.store(index, Ordering::Relaxed);
        RUNNING_ENTRIES.store(
            core::ptr::from_ref(&app.entries).cast_mut(),
            Ordering::Relaxed,
        );
        self.running_since = now;
    }

    /// The running app `index` leaves the CPU (its policy state already set): count its time.
    fn switch_out(&mut self, index: usize, now: u64) {
        self.apps[index].cpu_ticks += now - self.running_since;
        self.policy.left_cpu();
        RUNNING_APP.store(usize::MAX, Ordering::Relaxed);
        RUNNING_ENTRIES.store(core::ptr::null_mut(), Ordering::Relaxed);
    }

    /// The app on the CPU; only called while one runs (from its kcalls and faults).
    fn running(&mut self) -> &mut App {
        let index = self.policy.running().expect("an app is running");
        &mut self.apps[index]
    }

    /// Wakes what is due; an app whose restart is due gets a fresh entry frame.
    #[inline(always)]
    fn wake_due(&mut self, now: u64) {
        if self.policy.maybe_due(now) {
            self.wake_due_scan(now);
        }
    }

    #[inline(never)]
    fn wake_due_scan(&mut self, now: u64) {
        let (apps, entry) = (&mut self.apps, self.entry);
        self.policy.wake_due(now, |index, used, limit| {
            let app = &mut apps[index];
            kprintln!(
                "kernel-lite: restarting app '{}' (restart {used} of {limit})",
                app.name
            );
            start(app, entry);
        });
    }

    /// An app's run ended: return its memory, then restart it or not, by its policy.
    fn after_end(&mut self, index: usize) {
        let app = &mut self.apps[index];
        app.release_memory();
        crate::net::stop(index);
        crate::storage::stop(index);
        let limit = self.policy.restart_limit(index);
        match self
            .policy
            .after_end(index, timer::rdtsc(), timer::tsc_per_ms())
        {
            AfterEnd::Restart { delay_ms, used } => {
                kprintln!(
                    "kernel-lite: app '{}' will restart in {delay_ms} ms ({used} of {limit} restarts used)",
                    app.name
                );
            }
            AfterEnd::Stopped { limit_reached } => {
                if limit_reached {
                    kprintln!(
                        "kernel-lite: app '{}' is not restarted: restart limit {limit} reached",
                        app.name
                    );
                }
                // It will not run again: its rings and its promise go back to the pool.
                app.release_rings();
                mm::close_account(&mut app.account);
            }
        }
    }
}

impl Scheduler {
    /// The running app `index` leaves the CPU, staying ready behind any app that is due now
    /// (`requeue`, a yield or preemption) or with its state already set (a wait): picks who
    /// runs next, under the caller's lock. See [`switch_away`].
    fn hand_over(&mut self, index: usize, requeue: bool) -> Option<usize> {
        let now = timer::rdtsc();
        // Woken apps queue ahead of the one leaving: a sleeper whose deadline a tick found due
        // runs next, not after the spinner's next quantum.
        self.wake_due(now);
        if requeue {
            self.policy.yield_running();
        }
        self.switch_out(index, now);
        let next = self.policy.pick_next()?;
        self.switch_in(next, now);
        Some(next)
    }
}

/// Switches from app `index` to `next` as [`Scheduler::hand_over`] chose: straight to the next
/// app's kernel stack (one switch), or to the scheduler loop to idle when none is ready.
/// Returns when `index` runs again.
fn switch_away(index: usize, next: Option<usize>) {
    let load = match next {
        Some(next) if next == index => return,
        Some(next) => APP_RSP[next].load(Ordering::Relaxed),
        None => SCHEDULER_RSP.load(Ordering::Relaxed),
    };
    // SAFETY: `load` was saved by `switch_context` (or prepared by `start`) for a context that is
    // not running: another app's kernel stack, or the scheduler loop's boot stack, all of which
    // live as long as kernel-lite; interrupts are off.
    unsafe { switch_context(APP_RSP[index].as_ptr(), load) };
}

/// The app on the CPU (for kcalls that act on the caller).
pub fn running_index() -> usize {
    current()
}

/// Raises `events` for app `index` (from a device's interrupt, or another app's frames): a
/// blocked app waiting for one becomes due.
pub fn signal(index: usize, events: Events) {
    with_scheduler(|scheduler| scheduler.policy.signal(index, events));
}

/// After a device interrupt that hit ring 3: if it made an app due (its events), let it run
/// now rather than at the end of the running app's quantum.
pub fn after_device_interrupt_from_user() {
    let preempt = with_scheduler(|scheduler| {
        let now = timer::rdtsc();
        scheduler.policy.maybe_due(now) && scheduler.policy.any_due(now)
    });
    if preempt {
        yield_current();
    }
}

fn current() -> usize {
    let index = RUNNING_APP.load(Ordering::Relaxed);
    debug_assert_ne!(index, usize::MAX, "an app is running");
    index
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
    let counts = RUNNING_ENTRIES.load(Ordering::Relaxed);
    if counts.is_null() {
        return;
    }
    // SAFETY: the pointer is to the running app's counters inside the scheduler's app table,
    // which is never resized or freed once apps run; it is cleared when the app leaves the CPU.
    // The counters are atomics, so a shared reference beside the scheduler's own is sound.
    unsafe { &*counts }.count(entry);
    if user_ac {
        note_user_ac();
    }
}

/// The running app entered ring 0 with RFLAGS.AC set: check that ring 0 runs with it clear, and
/// say so once per app.
#[cold]
fn note_user_ac() {
    if x86_64::registers::rflags::read()
        .contains(x86_64::registers::rflags::RFlags::ALIGNMENT_CHECK)
    {
        kprintln!("kernel-lite: FATAL: RFLAGS.AC still set in ring 0: SMAP bypassed");
        machine::exit(ImageOutcome::KernelPanic);
    }
    with_scheduler(|scheduler| {
        let app = scheduler.running();
        if !app.saw_user_ac {
            app.saw_user_ac = true;
            kprintln!(
                "kernel-lite: app '{}' entered ring 0 with RFLAGS.AC set; ring 0 runs with it \
                 clear (SMAP holds)",
                app.name
            );
        }
    });
}

/// Writes the running app's console output (see [`console::write_app`]).
pub fn console_write(bytes: &[u8]) {
    let index = current();
    with_scheduler(|scheduler| console::write_app(index, &scheduler.apps[index].name, bytes));
}

/// The running app gives up the CPU but stays ready.
pub fn yield_current() {
    let index = current();
    let next = with_scheduler(|scheduler| scheduler.hand_over(index, true));
    switch_away(index, next);
}

/// The running app sleeps until the TSC reaches `deadline_tsc` or one of `events` is pending;
/// returns (and clears) the pending events of the mask.
pub fn wait(deadline_tsc: u64, events: Events) -> Events {
    let index = current();
    let outcome = with_scheduler(|scheduler| {
        match scheduler.policy.wait(deadline_tsc, events, timer::rdtsc()) {
            Wait::Now(ready) => Ok(ready),
            Wait::Blocked => Err(scheduler.hand_over(index, false)),
        }
    });
    match outcome {
        Ok(ready) => ready,
        Err(next) => {
            switch_away(index, next);
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
        scheduler.switch_out(index, timer::rdtsc());
        scheduler.just_ended = Some(index);
    });
    // The scheduler loop returns its memory: nothing may run on its stacks meanwhile.
    // SAFETY: the scheduler loop's context was saved when it last switched to an app and its
    // stack (the boot stack) is always mapped; interrupts are off.
    unsafe {
        switch_context(
            APP_RSP[index].as_ptr(),
            SCHEDULER_RSP.load(Ordering::Relaxed),
        )
    };
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
        scheduler.print_tables();
        let outcome = if scheduler.policy.any_failed() {
            ImageOutcome::SomeAppFailed
        } else {
            ImageOutcome::AllAppsSucceeded
        };
        (outcome, scheduler.frames_before_apps)
    });
    let deepest = with_scheduler(|scheduler| {
        scheduler
            .apps
            .iter()
            .map(|app| app.kernel_stack.high_water())
            .max()
            .unwrap_or(0)
    });
    kprintln!(
        "kernel-lite: deepest kernel stack use {deepest} of {} bytes",
        mm::KERNEL_STACK_BYTES
    );
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
