//! Ending the app, with std's names.

/// Ends the app with `status` (0 is success), after flushing its console.
pub fn exit(status: i32) -> ! {
    crate::console::flush();
    crate::sys::exit(status)
}
