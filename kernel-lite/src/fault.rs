//! A CPU exception as kernel-lite reports it: the vector, its name, the error code (decoded for
//! page faults), where it happened and in which ring. Its own module so that the interrupt
//! handlers (which build one) and the app table (which reports one against an app) need not
//! import each other.

use core::fmt;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::{InterruptStackFrame, PageFaultErrorCode};

/// A CPU exception as reported on the console.
#[derive(Debug, Clone, Copy)]
pub struct Exception {
    pub vector: u8,
    pub name: &'static str,
    pub error_code: Option<u64>,
    pub rip: u64,
    pub cs: u16,
    pub rsp: u64,
    /// The faulting address, for page faults.
    pub cr2: Option<u64>,
}

impl Exception {
    /// The exception of `vector` that `frame` describes (CR2 read for a page fault).
    pub fn from_frame(
        vector: u8,
        name: &'static str,
        frame: &InterruptStackFrame,
        error_code: Option<u64>,
    ) -> Exception {
        Exception {
            vector,
            name,
            error_code,
            rip: frame.instruction_pointer.as_u64(),
            cs: frame.code_segment.0,
            rsp: frame.stack_pointer.as_u64(),
            cr2: (vector == 14).then(Cr2::read_raw),
        }
    }

    fn ring(&self) -> u16 {
        self.cs & 3
    }
}

impl fmt::Display for Exception {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (vector {})", self.name, self.vector)?;
        if let Some(address) = self.cr2 {
            write!(f, " at address {address:#x}")?;
        }
        if let Some(code) = self.error_code {
            write!(f, ", error code {code:#x}")?;
            if self.vector == 14 {
                write!(f, " ({:?})", PageFaultErrorCode::from_bits_truncate(code))?;
            }
        }
        write!(
            f,
            ", RIP {:#x}, CS {:#x} (ring {}), RSP {:#x}",
            self.rip,
            self.cs,
            self.ring(),
            self.rsp
        )
    }
}
