//! Time read in user mode from the TSC, with std's names: monotonic [`Instant`]s and the wall
//! clock, [`SystemTime`].
//!
//! `Instant::now()` is one `rdtsc`; converting to a [`Duration`] uses the TSC rate kernel-lite
//! calibrated and published on the info page. `SystemTime::now()` adds the time since boot to
//! the wall-clock time kernel-lite read from the real-time clock at boot (the info page's
//! `boot_unix_ms`; the Unix epoch itself when the clock could not be read). No kcall is
//! involved in either.

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

/// A point in wall-clock time: milliseconds-precise at boot, then as precise as the TSC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SystemTime {
    since_epoch: Duration,
}

/// 1970-01-01 00:00:00 UTC.
pub const UNIX_EPOCH: SystemTime = SystemTime {
    since_epoch: Duration::ZERO,
};

/// `earlier` was later than the time it was measured from; says by how much.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemTimeError(pub Duration);

impl SystemTime {
    pub const UNIX_EPOCH: SystemTime = UNIX_EPOCH;

    /// The time `since_epoch` after the Unix epoch.
    pub const fn from_unix(since_epoch: Duration) -> SystemTime {
        SystemTime { since_epoch }
    }

    /// Time from `earlier` to `self`, or how far `earlier` lies after `self`.
    pub fn duration_since(&self, earlier: SystemTime) -> Result<Duration, SystemTimeError> {
        self.since_epoch
            .checked_sub(earlier.since_epoch)
            .ok_or_else(|| SystemTimeError(earlier.since_epoch - self.since_epoch))
    }

    /// `self + duration`, or `None` on overflow.
    pub fn checked_add(&self, duration: Duration) -> Option<SystemTime> {
        self.since_epoch
            .checked_add(duration)
            .map(|since_epoch| SystemTime { since_epoch })
    }
}

#[cfg(target_os = "none")]
impl SystemTime {
    /// Now.
    pub fn now() -> SystemTime {
        let page = crate::sys::info_page();
        let since_boot = Instant::now().duration_since(Instant::from_tsc(page.boot_tsc));
        SystemTime {
            since_epoch: Duration::from_millis(page.boot_unix_ms) + since_boot,
        }
    }

    /// Time since `self`, or how far `self` lies in the future.
    pub fn elapsed(&self) -> Result<Duration, SystemTimeError> {
        SystemTime::now().duration_since(*self)
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
    fn system_times_subtract_like_std() {
        let boot = SystemTime::from_unix(Duration::from_secs(1_795_700_862));
        let later = boot.checked_add(Duration::from_millis(1500)).unwrap();
        assert_eq!(later.duration_since(boot), Ok(Duration::from_millis(1500)));
        assert_eq!(
            boot.duration_since(later),
            Err(SystemTimeError(Duration::from_millis(1500)))
        );
        assert_eq!(
            boot.duration_since(UNIX_EPOCH),
            Ok(Duration::from_secs(1_795_700_862))
        );
    }

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
