//! One app's async executor: its tasks, its ready queue, its timers and its event waiters.
//!
//! Plain Rust over a [`Clock`] seam (now, rate, wait for a deadline or events), so the same
//! executor runs on the TSC and the `wait` kcall in an app, and on a fake clock in host tests.
//! The only time it leaves the app is when nothing is ready: then it waits, through the clock,
//! for the earliest timer or any event a task awaits, whichever comes first — in an app, the
//! one kcall that puts the app to sleep. A busy executor never asks for events (that would be
//! a kcall per turn); a busy driver polls its rings instead.
//!
//! Tasks live in a slab of cells the executor owns (`slab.rs`): spawning takes a free cell,
//! joining gives it back, and a cell keeps its boxed future for the next task of the same
//! type, so a steady spawn-and-join loop allocates nothing. A join handle awaited while its
//! task is ready runs the task there and then, instead of waiting for its turn in the ready
//! queue (the joiner would only wait for it).

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::cell::{Cell, RefCell};
use core::future::Future;
use core::marker::PhantomData;
use core::pin::Pin;
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use lite_abi::kcall::Events;
use spin::Mutex;

use super::slab::{Stage, TaskSlab};

/// Where an executor gets its time and its events from, and how it waits.
pub trait Clock {
    /// Now, in ticks.
    fn now(&self) -> u64;
    /// Ticks per second.
    fn ticks_per_second(&self) -> u64;
    /// Blocks until `now() >= deadline` or one of `events` is pending, whichever comes first
    /// (`u64::MAX`: no deadline). Returns the pending events among `events`, which it clears;
    /// empty when the deadline passed. May return early with nothing: the executor checks
    /// again.
    fn wait(&self, deadline: u64, events: Events) -> Events;
}

/// `run_until` found every task waiting, no timer set and no event awaited: nothing can ever
/// wake them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stalled;

impl core::fmt::Display for Stalled {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(
            "every task is waiting, no timer is set and no event awaited: the app can never go on",
        )
    }
}

/// A task waiting for some of the app's events (see [`Executor::wait_event`]).
struct EventWaiter {
    key: u64,
    events: Events,
    waker: Waker,
}

/// The app's events as the executor sees them: who waits for which, and those that came back
/// from the clock but have not been taken by a waiter yet (so none is lost).
#[derive(Default)]
struct EventState {
    waiters: Vec<EventWaiter>,
    pending: Events,
    next_key: u64,
}

impl EventState {
    /// Every event some task waits for.
    fn awaited(&self) -> Events {
        self.waiters
            .iter()
            .fold(Events::NONE, |all, waiter| all.union(waiter.events))
    }

    /// Wakes each waiter that one of the pending events concerns.
    fn wake_pending(&self) {
        for waiter in &self.waiters {
            if !waiter.events.intersection(self.pending).is_empty() {
                waiter.waker.wake_by_ref();
            }
        }
    }
}

/// The id the future given to `run_until` has in the ready queue.
const MAIN: usize = usize::MAX;

/// Cells (and `MAIN`) whose task was woken, in wake order. Behind a lock because a `Waker` must
/// be `Send + Sync`; an app runs on one CPU, so it is never contended.
struct ReadyQueue(Mutex<VecDeque<usize>>);

/// The waker of one task cell (or of `run_until`'s future): queues its index once until it is
/// polled.
struct TaskWaker {
    index: usize,
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue.0.lock().push_back(self.index);
        }
    }
}

/// Counters for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ExecutorStats {
    pub spawned: u64,
    pub polls: u64,
    /// Times the executor waited on the clock because nothing was ready.
    pub idle_waits: u64,
    /// Waits that came back with events.
    pub event_wakes: u64,
}

/// An app's executor. Single-threaded: an app runs on one CPU at a time.
pub struct Executor<C: Clock> {
    clock: C,
    queue: Arc<ReadyQueue>,
    tasks: RefCell<TaskSlab<TaskWaker>>,
    timers: RefCell<BTreeMap<(u64, u64), Waker>>,
    next_timer: Cell<u64>,
    events: RefCell<EventState>,
    stats: Cell<ExecutorStats>,
}

impl<C: Clock> Executor<C> {
    pub fn new(clock: C) -> Executor<C> {
        Executor {
            clock,
            queue: Arc::new(ReadyQueue(Mutex::new(VecDeque::new()))),
            tasks: RefCell::new(TaskSlab::new()),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
            events: RefCell::new(EventState::default()),
            stats: Cell::new(ExecutorStats::default()),
        }
    }

    pub fn clock(&self) -> &C {
        &self.clock
    }

    pub fn stats(&self) -> ExecutorStats {
        self.stats.get()
    }

    fn bump(&self, f: impl FnOnce(&mut ExecutorStats)) {
        let mut stats = self.stats.get();
        f(&mut stats);
        self.stats.set(stats);
    }

    fn waker_for(&self, index: usize) -> Arc<TaskWaker> {
        Arc::new(TaskWaker {
            index,
            queued: AtomicBool::new(false),
            queue: Arc::clone(&self.queue),
        })
    }

    /// Starts `future` as a task of this executor; it runs while `run_until` runs. The task
    /// takes a free cell of the executor's slab (a new one only when all are busy), and reuses
    /// the cell's boxed body when the cell last held a task of the same type.
    #[inline]
    pub fn spawn<F>(&self, future: F) -> JoinHandle<'_, C, F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        let mut tasks = self.tasks.borrow_mut();
        let (index, replaced) = tasks.insert(future, |index| self.waker_for(index));
        tasks.cells[index].waker_state.wake_by_ref();
        drop(tasks);
        drop(replaced);
        self.bump(|stats| stats.spawned += 1);
        JoinHandle {
            executor: self,
            index,
            joined: false,
            output: PhantomData,
        }
    }

    fn poll_task(&self, index: usize) {
        let mut parts = {
            let mut tasks = self.tasks.borrow_mut();
            let Some(cell) = tasks.cells.get_mut(index) else {
                return;
            };
            cell.waker_state.queued.store(false, Ordering::Relaxed);
            // A stale wake, for a cell whose task has completed (or is being polled further
            // up), is ignored.
            if cell.stage != Stage::Running {
                return;
            }
            let Some(parts) = cell.parts.take() else {
                return;
            };
            parts
        };
        self.bump(|stats| stats.polls += 1);
        // No borrow is held while the task runs: it may spawn, sleep or join.
        let done = parts
            .body
            .poll(&mut Context::from_waker(&parts.waker), &mut ())
            .is_ready();
        let mut tasks = self.tasks.borrow_mut();
        if done && tasks.cells[index].detached {
            // Nobody will take the output: drop it (the app's value) with no borrow held.
            drop(tasks);
            parts.body.drop_output();
            tasks = self.tasks.borrow_mut();
        }
        let cell = &mut tasks.cells[index];
        cell.parts = Some(parts);
        if !done {
            return;
        }
        if cell.detached {
            tasks.release(index);
            return;
        }
        cell.stage = Stage::Finished;
        let joiner = cell.joiner.take();
        drop(tasks);
        if let Some(joiner) = joiner {
            joiner.wake();
        }
    }

    /// Fires every timer whose deadline has passed; returns the earliest one left.
    fn fire_timers(&self) -> Option<u64> {
        let now = self.clock.now();
        let mut due = Vec::new();
        {
            let mut timers = self.timers.borrow_mut();
            while let Some(entry) = timers.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                due.push(entry.remove());
            }
        }
        for waker in due {
            waker.wake();
        }
        self.timers
            .borrow()
            .keys()
            .next()
            .map(|&(deadline, _)| deadline)
    }

    /// Nothing is ready: waits on the clock for the earliest timer (`earliest`) or an awaited
    /// event, and wakes the tasks whose events came back. `Err(Stalled)` if there is neither.
    fn idle(&self, earliest: Option<u64>) -> Result<(), Stalled> {
        let awaited = {
            let events = self.events.borrow();
            let awaited = events.awaited();
            if !events.pending.intersection(awaited).is_empty() {
                // Already here (a waiter that re-registered after another took its share).
                events.wake_pending();
                return Ok(());
            }
            awaited
        };
        if earliest.is_none() && awaited.is_empty() {
            return Err(Stalled);
        }
        self.bump(|stats| stats.idle_waits += 1);
        let fired = self
            .clock
            .wait(earliest.unwrap_or(u64::MAX), awaited)
            .intersection(awaited);
        if !fired.is_empty() {
            self.bump(|stats| stats.event_wakes += 1);
            let mut events = self.events.borrow_mut();
            events.pending = events.pending.union(fired);
            events.wake_pending();
        }
        Ok(())
    }

    /// Runs the tasks and `future` until `future` completes, sleeping on the clock whenever
    /// nothing is ready. Tasks still pending when it completes stay, for the next call.
    pub fn run_until<F: Future>(&self, future: F) -> Result<F::Output, Stalled> {
        let mut future = core::pin::pin!(future);
        let main = self.waker_for(MAIN);
        let main_waker = Waker::from(Arc::clone(&main));
        main.wake_by_ref();
        loop {
            loop {
                let next = self.queue.0.lock().pop_front();
                let Some(index) = next else { break };
                if index == MAIN {
                    main.queued.store(false, Ordering::Release);
                    self.bump(|stats| stats.polls += 1);
                    if let Poll::Ready(output) =
                        future.as_mut().poll(&mut Context::from_waker(&main_waker))
                    {
                        return Ok(output);
                    }
                } else {
                    self.poll_task(index);
                }
            }
            let earliest = self.fire_timers();
            if !self.queue.0.lock().is_empty() {
                continue;
            }
            self.idle(earliest)?;
        }
    }

    /// A future that completes when one of `events` has fired, with those of them that did
    /// (and clears them). An event that fired before the future was polled — while the app
    /// was busy, or while its waiter was not waiting — is not lost: it completes at once.
    /// Completes at once, with nothing, when `events` is empty.
    pub fn wait_event(&self, events: Events) -> WaitEvent<'_, C> {
        WaitEvent {
            executor: self,
            events,
            key: None,
        }
    }

    /// Events that came back from the clock and that no waiter has taken yet.
    pub fn pending_events(&self) -> Events {
        self.events.borrow().pending
    }

    /// A future that completes once the clock reaches `deadline` (in ticks).
    pub fn sleep_until(&self, deadline: u64) -> Sleep<'_, C> {
        Sleep {
            executor: self,
            deadline,
            key: None,
        }
    }

    /// A future that completes after `duration`.
    pub fn sleep(&self, duration: Duration) -> Sleep<'_, C> {
        let ticks = crate::time::duration_to_ticks(duration, self.clock.ticks_per_second())
            .unwrap_or(u64::MAX);
        self.sleep_until(self.clock.now().saturating_add(ticks))
    }

    /// `future`, or `Err(Elapsed)` if it has not completed after `duration`.
    pub fn timeout<F: Future>(&self, duration: Duration, future: F) -> Timeout<'_, C, F> {
        Timeout {
            future: Box::pin(future),
            sleep: self.sleep(duration),
        }
    }

    /// Timers waiting to fire.
    pub fn pending_timers(&self) -> usize {
        self.timers.borrow().len()
    }

    /// Tasks spawned and not yet completed.
    pub fn live_tasks(&self) -> usize {
        self.tasks
            .borrow()
            .cells
            .iter()
            .filter(|cell| cell.stage == Stage::Running)
            .count()
    }

    /// Cells in the task slab: the most tasks that were alive (or unjoined) at once.
    pub fn task_cells(&self) -> usize {
        self.tasks.borrow().cells.len()
    }
}

/// Awaits a spawned task's output; polled while the task is ready, it runs the task itself.
/// Dropping it detaches the task, which runs on; its cell is freed when it completes.
pub struct JoinHandle<'a, C: Clock, T> {
    executor: &'a Executor<C>,
    index: usize,
    /// The output was taken and the cell given back.
    joined: bool,
    output: PhantomData<fn() -> T>,
}

impl<C: Clock, T> JoinHandle<'_, C, T> {
    /// Whether the task has completed.
    pub fn is_finished(&self) -> bool {
        self.joined || self.executor.tasks.borrow().cells[self.index].stage == Stage::Finished
    }
}

impl<C: Clock, T: 'static> Future for JoinHandle<'_, C, T> {
    type Output = T;

    #[inline(always)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        assert!(!self.joined, "a JoinHandle was polled after it completed");
        let (executor, index) = (self.executor, self.index);
        let mut output: Option<T> = None;
        let mut tasks = executor.tasks.borrow_mut();
        let cell = &mut tasks.cells[index];
        // The task is ready to run and not running: run it here, for its joiner, rather than
        // wait for the executor to reach it in the ready queue. Its queue entry stays (and
        // covers any wake meanwhile); the executor will find the cell done, or holding a
        // newer task that the entry is then due for.
        if cell.stage == Stage::Running
            && cell.waker_state.queued.load(Ordering::Relaxed)
            && let Some(mut parts) = cell.parts.take()
        {
            drop(tasks);
            executor.bump(|stats| stats.polls += 1);
            let done = parts
                .body
                .poll(&mut Context::from_waker(&parts.waker), &mut output)
                .is_ready();
            tasks = executor.tasks.borrow_mut();
            let cell = &mut tasks.cells[index];
            cell.parts = Some(parts);
            if done {
                cell.stage = Stage::Finished;
            }
        }
        let cell = &mut tasks.cells[index];
        if cell.stage != Stage::Finished {
            drop(tasks);
            self.wait_for_task(cx);
            return Poll::Pending;
        }
        if output.is_none()
            && let Some(parts) = cell.parts.as_mut()
        {
            parts.body.take_output(&mut output);
        }
        tasks.release(index);
        drop(tasks);
        self.joined = true;
        Poll::Ready(output.expect("a finished task holds its output"))
    }
}

impl<C: Clock, T> Drop for JoinHandle<'_, C, T> {
    #[inline]
    fn drop(&mut self) {
        if !self.joined {
            self.detach();
        }
    }
}

impl<C: Clock, T> JoinHandle<'_, C, T> {
    /// The task has not completed: its completion wakes `cx`'s waker.
    #[inline(never)]
    fn wait_for_task(&self, cx: &Context<'_>) {
        let mut tasks = self.executor.tasks.borrow_mut();
        match &mut tasks.cells[self.index].joiner {
            Some(joiner) => joiner.clone_from(cx.waker()),
            joiner => *joiner = Some(cx.waker().clone()),
        }
    }

    /// Dropped before it was joined: the task runs on, and its cell is freed when it completes
    /// (now, if it has).
    #[inline(never)]
    fn detach(&mut self) {
        let mut tasks = self.executor.tasks.borrow_mut();
        let cell = &mut tasks.cells[self.index];
        if cell.stage != Stage::Finished {
            cell.detached = true;
            return;
        }
        // The output is the app's value: dropped with no borrow held, since its drop may use
        // the executor.
        let parts = cell.parts.take();
        drop(tasks);
        let parts = parts.map(|mut parts| {
            parts.body.drop_output();
            parts
        });
        let mut tasks = self.executor.tasks.borrow_mut();
        tasks.cells[self.index].parts = parts;
        tasks.release(self.index);
    }
}

/// See [`Executor::sleep_until`].
pub struct Sleep<'a, C: Clock> {
    executor: &'a Executor<C>,
    deadline: u64,
    key: Option<(u64, u64)>,
}

impl<C: Clock> Future for Sleep<'_, C> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let executor = self.executor;
        if executor.clock.now() >= self.deadline {
            if let Some(key) = self.key.take() {
                executor.timers.borrow_mut().remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let sequence = executor.next_timer.get();
                executor.next_timer.set(sequence + 1);
                let key = (self.deadline, sequence);
                self.key = Some(key);
                key
            }
        };
        executor.timers.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl<C: Clock> Drop for Sleep<'_, C> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.executor.timers.borrow_mut().remove(&key);
        }
    }
}

/// See [`Executor::wait_event`].
pub struct WaitEvent<'a, C: Clock> {
    executor: &'a Executor<C>,
    events: Events,
    key: Option<u64>,
}

impl<C: Clock> Future for WaitEvent<'_, C> {
    type Output = Events;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Events> {
        let this = &mut *self;
        let mut state = this.executor.events.borrow_mut();
        let fired = state.pending.intersection(this.events);
        if !fired.is_empty() || this.events.is_empty() {
            state.pending = state.pending.without(fired);
            if let Some(key) = this.key.take() {
                state.waiters.retain(|waiter| waiter.key != key);
            }
            return Poll::Ready(fired);
        }
        match this.key {
            Some(key) => {
                if let Some(waiter) = state.waiters.iter_mut().find(|w| w.key == key) {
                    waiter.waker.clone_from(cx.waker());
                }
            }
            None => {
                let key = state.next_key;
                state.next_key += 1;
                state.waiters.push(EventWaiter {
                    key,
                    events: this.events,
                    waker: cx.waker().clone(),
                });
                this.key = Some(key);
            }
        }
        Poll::Pending
    }
}

impl<C: Clock> Drop for WaitEvent<'_, C> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.executor
                .events
                .borrow_mut()
                .waiters
                .retain(|waiter| waiter.key != key);
        }
    }
}

/// A [`Timeout`] ran out before its future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl core::fmt::Display for Elapsed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("deadline elapsed")
    }
}

/// See [`Executor::timeout`].
pub struct Timeout<'a, C: Clock, F> {
    // Boxed so that any future (async blocks are not `Unpin`) can be polled without unsafe
    // pin projection.
    future: Pin<Box<F>>,
    sleep: Sleep<'a, C>,
}

impl<C: Clock, F: Future> Future for Timeout<'_, C, F> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Poll::Ready(output) = this.future.as_mut().poll(cx) {
            return Poll::Ready(Ok(output));
        }
        match Pin::new(&mut this.sleep).poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Completes on its second poll, letting every other ready task run in between.
#[derive(Debug, Default)]
pub struct YieldNow {
    yielded: bool,
}

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.yielded {
            return Poll::Ready(());
        }
        self.yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
