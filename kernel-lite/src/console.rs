//! The serial console (COM1), shared by kernel-lite's own messages and the apps' output.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

static SERIAL: Mutex<Option<SerialPort>> = Mutex::new(None);

pub fn init() {
    // SAFETY: COM1 is the standard 16550 UART at 0x3f8 on the PC platforms we boot on, and
    // nothing else in the kernel drives these ports.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *SERIAL.lock() = Some(port);
}

/// Writes to the serial port. Interrupts are off whenever kernel-lite runs, so the lock is only
/// ever contended when a fault hit the kernel while it printed; then the message still goes out.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut serial = match SERIAL.try_lock() {
        Some(guard) => guard,
        None => {
            // SAFETY: a single CPU runs kernel-lite with interrupts off, so the holder can only be
            // code this fault interrupted; it never resumes, and the port is a plain I/O port.
            unsafe { SERIAL.force_unlock() };
            SERIAL.lock()
        }
    };
    if let Some(port) = serial.as_mut() {
        let _ = port.write_fmt(args);
    }
}

/// Writes raw bytes (an app's console line) to the serial port.
pub fn write_bytes(bytes: &[u8]) {
    let mut serial = SERIAL.lock();
    if let Some(port) = serial.as_mut() {
        for &byte in bytes {
            port.send(byte);
        }
    }
}

#[macro_export]
macro_rules! kprint {
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! kprintln {
    () => { $crate::kprint!("\n") };
    ($($arg:tt)*) => { $crate::console::write_fmt(format_args!("{}\n", format_args!($($arg)*))) };
}
