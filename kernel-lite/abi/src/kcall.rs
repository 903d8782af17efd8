//! The privileged-call gate: numbers, arguments and results.
//!
//! A kcall is a `syscall` instruction with the number in `rax` and up to four arguments in
//! `rdi`, `rsi`, `rdx`, `r10`. The result comes back in `rax`: a value `>= 0` is success, a
//! negative value is `-(KcallError as i64)`. The table is deliberately small: a CSE operation
//! (send, recv, read, write, now, sleep, spawn) never needs one in the common case.

/// Every kcall kernel-lite implements, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Kcall {
    /// Does nothing and returns 0: the cost of the gate itself (benchmarks, tests).
    Null = 0,
    /// `console_write(ptr, len)`: writes one line (or part of one) to the console, prefixed
    /// with the calling app's name. Returns the number of bytes written.
    ConsoleWrite = 1,
    /// `exit(status)`: ends the calling app with `status` (0 is success). Does not return.
    Exit = 2,
    /// `yield()`: gives the CPU to the next ready app.
    Yield = 3,
    /// `wait(deadline_tsc, events)`: blocks until the TSC reaches `deadline_tsc` or one of the
    /// app's events in the mask `events` is pending, whichever comes first (at once if either
    /// already holds). Returns the pending events of the mask, and clears them; 0 means the
    /// deadline passed. `u64::MAX` as deadline waits for an event alone. See [`Events`].
    Wait = 4,
    /// `report_fault(kind, ptr, len)`: the app reports a fault it detected itself (a panic, an
    /// allocation failure) with a message; kernel-lite logs it and ends the app as failed.
    /// Does not return.
    ReportFault = 5,
    /// `net_flush()`: kernel-lite takes every frame waiting on the app's transmit ring, checks
    /// each against the app's binding and hands the good ones to the NIC in one batch. Returns
    /// how many frames left. (`wait` flushes too, so an app about to sleep needs no flush.)
    NetFlush = 6,
    /// `blk_kick()`: kernel-lite takes every request waiting on the app's block ring, checks
    /// each against the app's extent and hands the good ones to the disk in one batch; their
    /// completions arrive later on the ring with the app's `blk::BLK_EVENT`. Returns how many
    /// requests it took. (`wait` takes them too, so an app about to sleep needs no kick.)
    BlkKick = 7,
}

/// How many kcall numbers exist; per-app accounting keeps one counter each.
pub const KCALL_COUNT: usize = 8;

impl Kcall {
    /// Every kcall, in number order.
    pub const ALL: [Kcall; KCALL_COUNT] = [
        Kcall::Null,
        Kcall::ConsoleWrite,
        Kcall::Exit,
        Kcall::Yield,
        Kcall::Wait,
        Kcall::ReportFault,
        Kcall::NetFlush,
        Kcall::BlkKick,
    ];

    /// The kcall with this number, if there is one.
    pub fn from_number(number: u64) -> Option<Kcall> {
        Self::ALL.get(usize::try_from(number).ok()?).copied()
    }

    /// A short name for reports and accounting tables.
    pub fn name(self) -> &'static str {
        match self {
            Kcall::Null => "null",
            Kcall::ConsoleWrite => "console_write",
            Kcall::Exit => "exit",
            Kcall::Yield => "yield",
            Kcall::Wait => "wait",
            Kcall::ReportFault => "report_fault",
            Kcall::NetFlush => "net_flush",
            Kcall::BlkKick => "blk_kick",
        }
    }
}

/// A set of an app's events, as the `wait` kcall takes and returns them: one bit per event
/// source bound to the app (a device ring's completion, for example). kernel-lite sets a bit
/// when the source signals and clears it when a `wait` reports it, so an event that fires while
/// the app runs is not lost: the next `wait` returns at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Events(pub u64);

impl Events {
    pub const NONE: Events = Events(0);
    pub const ALL: Events = Events(u64::MAX);

    /// The event with number `bit` (0..64).
    pub const fn bit(bit: u32) -> Events {
        Events(1 << bit)
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub const fn intersection(self, other: Events) -> Events {
        Events(self.0 & other.0)
    }

    pub const fn union(self, other: Events) -> Events {
        Events(self.0 | other.0)
    }

    pub const fn without(self, other: Events) -> Events {
        Events(self.0 & !other.0)
    }
}

/// Why a kcall failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum KcallError {
    /// The number in `rax` names no kcall.
    UnknownKcall = 1,
    /// A pointer argument does not point into mapped user memory of the right kind.
    BadAddress = 2,
    /// An argument is out of range (a length too large, an unknown fault kind).
    BadArgument = 3,
    /// The app has no network binding (or no NIC was found).
    NoNetwork = 4,
    /// The app has no disk binding (or no disk was found, or its extent did not check out).
    NoDisk = 5,
}

impl KcallError {
    /// Encodes the error as the kcall's `rax` result.
    pub const fn to_result(self) -> u64 {
        (-(self as i64)) as u64
    }

    /// Decodes a kcall's `rax` result: `Ok(value)` or the error it names.
    pub fn decode(result: u64) -> Result<u64, KcallError> {
        match result as i64 {
            value if value >= 0 => Ok(value as u64),
            -1 => Err(KcallError::UnknownKcall),
            -2 => Err(KcallError::BadAddress),
            -4 => Err(KcallError::NoNetwork),
            -5 => Err(KcallError::NoDisk),
            _ => Err(KcallError::BadArgument),
        }
    }
}

/// What an app reports through [`Kcall::ReportFault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum ReportedFault {
    /// The app panicked; the message says where and why.
    Panic = 1,
    /// The app's heap could not satisfy an allocation within its quota.
    OutOfMemory = 2,
}

impl ReportedFault {
    pub fn from_number(number: u64) -> Option<ReportedFault> {
        match number {
            1 => Some(ReportedFault::Panic),
            2 => Some(ReportedFault::OutOfMemory),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ReportedFault::Panic => "panic",
            ReportedFault::OutOfMemory => "out of memory",
        }
    }
}

/// The longest console write kernel-lite accepts in one kcall.
pub const CONSOLE_WRITE_MAX: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_round_trip() {
        for kcall in Kcall::ALL {
            assert_eq!(Kcall::from_number(kcall as u64), Some(kcall));
        }
        assert_eq!(Kcall::from_number(KCALL_COUNT as u64), None);
        assert_eq!(Kcall::from_number(u64::MAX), None);
    }

    #[test]
    fn results_encode_errors_as_negative_values() {
        assert_eq!(KcallError::decode(7), Ok(7));
        for error in [
            KcallError::UnknownKcall,
            KcallError::BadAddress,
            KcallError::BadArgument,
            KcallError::NoNetwork,
            KcallError::NoDisk,
        ] {
            assert_eq!(KcallError::decode(error.to_result()), Err(error));
        }
    }
}
