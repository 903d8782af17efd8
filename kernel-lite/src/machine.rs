//! Ending the machine: QEMU's isa-debug-exit device, then a halt loop as a fallback.

use lite_abi::exit::{DEBUG_EXIT_PORT, ImageOutcome};
use x86_64::instructions::port::Port;

/// Ends QEMU with `outcome`. On a machine without the debug-exit device, halts forever.
pub fn exit(outcome: ImageOutcome) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to the isa-debug-exit port ends QEMU; on other machines the port is unused
    // and the write has no effect.
    unsafe { port.write(outcome.port_value()) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// Reports `why` and ends QEMU with `outcome`.
pub fn halt_with(outcome: ImageOutcome, why: &str) -> ! {
    crate::kprintln!("kernel-lite: {why}");
    exit(outcome)
}
