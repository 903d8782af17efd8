//! Deliberate faults and raw kcalls, for the tests that show kernel-lite contains a misbehaving
//! app: each fault ends the calling app (or leaves the CPU in a state kernel-lite must cope
//! with) and none can harm kernel-lite or another app.
//!
//! Only with libos's `deliberate-faults` feature, which only the test-program crate
//! (`apps/selftest`) enables; xtask's tidy checks that no shipped bundle's image carries it.

pub use crate::sys::misbehave::{
    KERNEL_LITE_ADDRESS, PrivilegedInstruction, UNMAPPED_ADDRESS, alignment_check_is_set,
    debug_trap, invalid_opcode, run_privileged, set_alignment_check, write_kernel_memory,
    write_unmapped_memory,
};
use lite_abi::kcall::KcallError;
use lite_abi::net::ring::{AppEnd, Geometry, MAX_FRAME};

/// Makes kcall `number` with two arguments, unchecked: for the tests of the gate itself (an
/// unknown number, a kernel or unmapped pointer, an oversized length).
pub fn raw_kcall(number: u64, a0: u64, a1: u64) -> Result<u64, KcallError> {
    crate::sys::raw_kcall(number, a0, a1)
}

/// Faults while holding the app's console lock, half-way through a line: kernel-lite must end
/// the app without that lock (or anything else shared) wedging another app.
pub fn fault_holding_console_lock() -> ! {
    let context = crate::rt::current();
    let mut console = context.console.lock();
    console.push(b"half a line, then ", &mut |_: &[u8]| {});
    write_unmapped_memory()
}

/// Why raw frames could not be handed to kernel-lite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawFrameError {
    /// The app has no network binding (or its ring header is unreadable).
    NoNetwork,
    /// A frame is longer than a ring slot holds.
    TooLong,
    /// The transmit ring has no free slot.
    RingFull,
    /// The `net_flush` kcall refused.
    Flush(KcallError),
}

/// The app's network binding as kernel-lite wrote it into the ring header, without starting
/// the network stack.
pub fn own_binding() -> Option<lite_abi::net::config::NetConfig> {
    let memory = crate::sys::AppRingMemory::of_app(crate::rt::current().net_area())?;
    AppEnd::config(&memory).ok()
}

/// Puts raw Ethernet frames on the app's transmit ring, bypassing its network stack (which
/// must not have started: the two would fight over the ring), and flushes them: the test that
/// kernel-lite drops frames with a source that is not the app's. Returns how many frames
/// kernel-lite says left for the wire.
pub fn send_raw_frames(frames: &[&[u8]]) -> Result<u64, RawFrameError> {
    let context = crate::rt::current();
    let memory =
        crate::sys::AppRingMemory::of_app(context.net_area()).ok_or(RawFrameError::NoNetwork)?;
    let config = AppEnd::config(&memory).map_err(|_| RawFrameError::NoNetwork)?;
    let mut end = AppEnd::new(Geometry::of(&config));
    for frame in frames {
        if frame.len() > MAX_FRAME {
            return Err(RawFrameError::TooLong);
        }
        let at = end.tx_slot(&memory).ok_or(RawFrameError::RingFull)?;
        lite_abi::net::ring::RingMemory::with_bytes_mut(&memory, at, frame.len(), |bytes| {
            bytes.copy_from_slice(frame)
        });
        end.tx_commit(&memory, frame.len());
    }
    crate::sys::net_flush().map_err(RawFrameError::Flush)
}

/// Writes hostile values into the app's own rings — a transmit length of `length` in the first
/// transmit slot, then `tx_producer` and `rx_consumer` as the indices the app publishes — and
/// asks kernel-lite to flush: the test that kernel-lite checks every index and length it reads
/// from an app's ring and loses nothing but that app's frames. Returns the flush's result.
pub fn scribble_on_rings(
    length: u32,
    tx_producer: u32,
    rx_consumer: u32,
) -> Result<u64, RawFrameError> {
    use lite_abi::net::ring::{RX_CONSUMER, RingMemory, SLOT_HEADER, TX_PRODUCER};
    let memory = crate::sys::AppRingMemory::of_app(crate::rt::current().net_area())
        .ok_or(RawFrameError::NoNetwork)?;
    let config = AppEnd::config(&memory).map_err(|_| RawFrameError::NoNetwork)?;
    let slot = Geometry::of(&config).tx_slot(0);
    memory.with_bytes_mut(slot, SLOT_HEADER, |bytes| {
        bytes[..4].copy_from_slice(&length.to_le_bytes())
    });
    memory.store_index(TX_PRODUCER, tx_producer);
    memory.store_index(RX_CONSUMER, rx_consumer);
    crate::sys::net_flush().map_err(RawFrameError::Flush)
}
