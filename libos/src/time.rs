//! Monotonic time read in user mode from the TSC, with std's names.
//!
//! `Instant::now()` is one `rdtsc`; converting to a [`Duration`] uses the TSC rate kernel-lite
//! calibrated and published on the info page. No kcall is involved.

pub use core::time::Duration;

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A point in monotonic time (TSC ticks since boot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant {
    tsc: u64,
}

impl Instant {
    /// The instant `tsc` ticks after power-on (conversions from raw counters).
    pub const fn from_tsc(tsc: u64) -> Instant {
        Instant { tsc }
    }

    /// The raw TSC value.
    pub const fn tsc(&self) -> u64 {
        self.tsc
    }
}

#[cfg(target_os = "none")]
impl Instant {
    /// Now.
    pub fn now() -> Instant {
        Instant {
            tsc: crate::sys::rdtsc(),
        }
    }

    /// Time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn duration_since(&self, earlier: Instant) -> Duration {
        ticks_to_duration(self.tsc.saturating_sub(earlier.tsc), crate::sys::tsc_hz())
    }

    /// Time since `self`.
    pub fn elapsed(&self) -> Duration {
        Instant::now().duration_since(*self)
    }

    /// `self + duration`, or `None` on overflow.
    pub fn checked_add(&self, duration: Duration) -> Option<Instant> {
        let ticks = duration_to_ticks(duration, crate::sys::tsc_hz())?;
        self.tsc.checked_add(ticks).map(|tsc| Instant { tsc })
    }
}

#[cfg(target_os = "none")]
impl core::ops::Add<Duration> for Instant {
    type Output = Instant;

    fn add(self, duration: Duration) -> Instant {
        self.checked_add(duration)
            .expect("overflow when adding a duration to an instant")
    }
}

#[cfg(target_os = "none")]
impl core::ops::Sub for Instant {
    type Output = Duration;

    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}

/// Converts TSC ticks at `tsc_hz` to a duration (rounding down).
pub fn ticks_to_duration(ticks: u64, tsc_hz: u64) -> Duration {
    if tsc_hz == 0 {
        return Duration::ZERO;
    }
    let nanos = u128::from(ticks) * NANOS_PER_SEC / u128::from(tsc_hz);
    Duration::new(
        (nanos / NANOS_PER_SEC) as u64,
        (nanos % NANOS_PER_SEC) as u32,
    )
}

/// Converts a duration to TSC ticks at `tsc_hz` (rounding up), or `None` if it does not fit.
pub fn duration_to_ticks(duration: Duration, tsc_hz: u64) -> Option<u64> {
    let ticks = (duration.as_nanos() * u128::from(tsc_hz)).div_ceil(NANOS_PER_SEC);
    u64::try_from(ticks).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_durations_convert_both_ways() {
        let hz = 2_500_000_000;
        assert_eq!(ticks_to_duration(hz, hz), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(2_500, hz), Duration::from_micros(1));
        assert_eq!(
            duration_to_ticks(Duration::from_millis(3), hz),
            Some(7_500_000)
        );
        // Rounding up means a sleep never ends early.
        assert_eq!(duration_to_ticks(Duration::from_nanos(1), hz), Some(3));
        assert_eq!(duration_to_ticks(Duration::MAX, hz), None);
        assert_eq!(ticks_to_duration(5, 0), Duration::ZERO);
    }
}
