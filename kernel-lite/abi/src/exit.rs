//! How the image tells the host how it ended: QEMU's `isa-debug-exit` device.
//!
//! Writing `v` to the device's port makes QEMU exit with status `(v << 1) | 1`, so no value the
//! image writes can be confused with QEMU's own exit status 0 (or 1 for its errors after
//! shifting); the host maps the status back to an [`ImageOutcome`].

/// The I/O port of QEMU's `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=4`).
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// How a whole image ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ImageOutcome {
    /// Every app exited with status 0.
    AllAppsSucceeded = 0x10,
    /// At least one app exited with a non-zero status or was ended by a fault.
    SomeAppFailed = 0x11,
    /// kernel-lite itself failed (a ring-0 fault, a bad boot bundle).
    KernelPanic = 0x12,
    /// kernel-lite refused to run the bundle on this machine: its apps' guaranteed memory does
    /// not fit (the console says by how much).
    BundleRefused = 0x13,
}

impl ImageOutcome {
    /// The value kernel-lite writes to [`DEBUG_EXIT_PORT`].
    pub const fn port_value(self) -> u32 {
        self as u32
    }

    /// QEMU's process exit status for this outcome.
    pub const fn qemu_exit_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The outcome a QEMU exit status reports, if it is one of ours.
    pub fn from_qemu_exit_status(status: i32) -> Option<ImageOutcome> {
        [
            ImageOutcome::AllAppsSucceeded,
            ImageOutcome::SomeAppFailed,
            ImageOutcome::KernelPanic,
            ImageOutcome::BundleRefused,
        ]
        .into_iter()
        .find(|outcome| outcome.qemu_exit_status() == status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_statuses_are_distinct_and_round_trip() {
        assert_eq!(ImageOutcome::AllAppsSucceeded.qemu_exit_status(), 33);
        for outcome in [
            ImageOutcome::AllAppsSucceeded,
            ImageOutcome::SomeAppFailed,
            ImageOutcome::KernelPanic,
            ImageOutcome::BundleRefused,
        ] {
            assert_eq!(
                ImageOutcome::from_qemu_exit_status(outcome.qemu_exit_status()),
                Some(outcome)
            );
        }
        assert_eq!(ImageOutcome::from_qemu_exit_status(0), None);
        assert_eq!(ImageOutcome::from_qemu_exit_status(1), None);
    }
}
