//! Async tasks, with tokio-like names: `spawn`, `JoinHandle`, `yield_now`, `sleep`, `timeout`,
//! `block_on`, and `wait_event` for the app's events (a device ring's completion, say). Each app
//! has its own executor (in its context), so its tasks, timers and event waiters are its own;
//! none of these functions makes a kcall, except that an executor with nothing ready sleeps
//! through the `wait` kcall until its next timer or an awaited event.

mod executor;
mod slab;

pub use executor::{
    Clock, Elapsed, Executor, ExecutorStats, JoinHandle, Sleep, Stalled, Timeout, WaitEvent,
    YieldNow,
};
pub use lite_abi::kcall::Events;

/// Gives every other ready task of the app a turn (no kcall).
pub fn yield_now() -> YieldNow {
    YieldNow::default()
}

#[cfg(target_os = "none")]
mod machine {
    use super::*;
    use crate::time::{Duration, Instant};
    use core::future::Future;

    /// The app's clock: the TSC, and the `wait` kcall when idle.
    pub struct SystemClock;

    impl Clock for SystemClock {
        fn now(&self) -> u64 {
            crate::sys::rdtsc()
        }

        fn ticks_per_second(&self) -> u64 {
            crate::sys::tsc_hz()
        }

        fn wait(&self, deadline: u64, events: Events) -> Events {
            crate::sys::wait(deadline, events)
        }
    }

    /// The running app's executor.
    pub fn executor() -> &'static Executor<SystemClock> {
        crate::rt::current().executor()
    }

    /// Starts `future` as a task of the running app.
    pub fn spawn<F>(future: F) -> JoinHandle<'static, SystemClock, F::Output>
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        executor().spawn(future)
    }

    /// Completes after `duration`.
    pub fn sleep(duration: Duration) -> Sleep<'static, SystemClock> {
        executor().sleep(duration)
    }

    /// Completes at `deadline`.
    pub fn sleep_until(deadline: Instant) -> Sleep<'static, SystemClock> {
        executor().sleep_until(deadline.tsc())
    }

    /// `future`, or `Err(Elapsed)` if it has not completed after `duration`.
    pub fn timeout<F: Future>(duration: Duration, future: F) -> Timeout<'static, SystemClock, F> {
        executor().timeout(duration, future)
    }

    /// Completes when one of the app's `events` has fired, with those of them that did. An
    /// event that fired earlier (while the app was busy) completes it at once.
    pub fn wait_event(events: Events) -> WaitEvent<'static, SystemClock> {
        executor().wait_event(events)
    }

    /// Runs the app's tasks until `future` completes. Panics (ending the app with a report) if
    /// every task waits, no timer is set and no event is awaited, since then nothing could
    /// ever wake them.
    pub fn block_on<F: Future>(future: F) -> F::Output {
        match executor().run_until(future) {
            Ok(output) => output,
            Err(stalled) => panic!("{stalled}"),
        }
    }
}

#[cfg(target_os = "none")]
pub use machine::{
    SystemClock, block_on, executor, sleep, sleep_until, spawn, timeout, wait_event,
};

#[cfg(test)]
mod tests;
