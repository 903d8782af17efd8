//! A panic ends the app that panicked, reported with its name and where it panicked.

use core::fmt::{self, Write};
use lite_abi::kcall::ReportedFault;

/// Formats into a fixed buffer on the stack (the heap may be what failed), cutting at its end.
struct MessageBuffer {
    bytes: [u8; 480],
    len: usize,
}

impl Write for MessageBuffer {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let room = self.bytes.len() - self.len;
        let mut take = text.len().min(room);
        while !text.is_char_boundary(take) {
            take -= 1;
        }
        self.bytes[self.len..self.len + take].copy_from_slice(&text.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut message = MessageBuffer {
        bytes: [0; 480],
        len: 0,
    };
    // `try_lock`: a panic raised while the heap was locked must not wait on itself.
    let failed = super::current_context()
        .heap
        .try_lock()
        .and_then(|heap| heap.failed_allocation());
    let kind = if let Some(failed) = failed {
        let _ = write!(message, "allocation of {failed} bytes failed; ");
        ReportedFault::OutOfMemory
    } else {
        ReportedFault::Panic
    };
    match info.location() {
        Some(at) => {
            let _ = write!(
                message,
                "panicked at {}:{}:{}: {}",
                at.file(),
                at.line(),
                at.column(),
                info.message()
            );
        }
        None => {
            let _ = write!(message, "panicked: {}", info.message());
        }
    }
    super::kcall::report_fault(kind, &message.bytes[..message.len])
}
