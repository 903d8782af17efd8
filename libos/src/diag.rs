//! Diagnostics for benchmarks and tests: what an app may ask about the machine it runs on, and
//! the cost of the kcall gate. Every call here is safe and harmless to the app and the others.
//!
//! The other kcall the benchmarks time, `yield` (one app switch each way), is
//! [`crate::thread::yield_now`]. Reading the TSC is [`crate::time::Instant::now`].

/// The privilege level the code runs at, read from CS: 3 for every app.
pub fn privilege_level() -> u8 {
    crate::sys::privilege_level()
}

/// The null kcall: enters kernel-lite's gate, does nothing, returns 0. Its cost is the gate's.
#[inline]
pub fn null_kcall() -> u64 {
    crate::sys::null_kcall()
}
