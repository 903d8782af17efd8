//! The app's disk extent as a [`crate::fs::BlockDevice`]. A placeholder until the ring-backed
//! device is merged: every app has no disk.

/// The app's disk extent; `NoDisk` while no device is wired.
pub(crate) fn open_disk()
-> Result<alloc::boxed::Box<dyn crate::fs::BlockDevice + Send>, crate::fs::MountError> {
    Err(crate::fs::MountError::NoDisk)
}
