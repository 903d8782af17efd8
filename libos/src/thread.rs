//! Blocking the running app, with std's names.

use crate::time::{Duration, Instant};

/// Blocks the app for at least `duration`; the CPU goes to other apps (or halts) meanwhile.
pub fn sleep(duration: Duration) {
    let deadline = Instant::now()
        .checked_add(duration)
        .unwrap_or(Instant::from_tsc(u64::MAX));
    crate::sys::wait_until(deadline.tsc());
}

/// Gives the CPU to the next ready app.
pub fn yield_now() {
    crate::sys::yield_now();
}
