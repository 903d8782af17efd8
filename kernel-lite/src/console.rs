//! The serial console (COM1), shared by kernel-lite's own messages and the apps' output.
//!
//! Every line on it carries its true origin: an app's line starts with `[name] `, a line of
//! kernel-lite's with `kernel-lite:` (or is one of its tables), and nothing an app writes can
//! change that. The console remembers who wrote the unfinished line; when someone else writes,
//! it ends that line first, so an app's half line is never continued by another writer and a
//! writer's text never lands behind another's prefix. Control characters in app text (a carriage
//! return, an escape sequence) are shown escaped (`\x1b`), so an app cannot redraw a line either.

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::SerialPort;

const COM1: u16 = 0x3f8;

/// Who wrote the line the console is in the middle of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Kernel,
    App(usize),
}

struct Console {
    port: SerialPort,
    /// `None` at the start of a line.
    open_line: Option<Origin>,
}

impl Console {
    fn send(&mut self, byte: u8) {
        self.port.send(byte);
    }

    /// Ends the open line if `origin` did not write it; returns whether a fresh line starts.
    fn take_line(&mut self, origin: Origin) -> bool {
        match self.open_line {
            Some(open) if open == origin => false,
            Some(_) => {
                self.send(b'\n');
                true
            }
            None => true,
        }
    }
}

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            self.take_line(Origin::Kernel);
            self.send(byte);
            self.open_line = (byte != b'\n').then_some(Origin::Kernel);
        }
        Ok(())
    }
}

static CONSOLE: Mutex<Option<Console>> = Mutex::new(None);

pub fn init() {
    // SAFETY: COM1 is the standard 16550 UART at 0x3f8 on the PC platforms we boot on, and
    // nothing else in the kernel drives these ports.
    let mut port = unsafe { SerialPort::new(COM1) };
    port.init();
    *CONSOLE.lock() = Some(Console {
        port,
        open_line: None,
    });
}

/// Runs `f` on the console. Interrupts are off whenever kernel-lite runs, so the lock is only
/// ever contended when a fault hit the kernel while it printed; then the message still goes out.
fn with_console(f: impl FnOnce(&mut Console)) {
    let mut console = match CONSOLE.try_lock() {
        Some(guard) => guard,
        None => {
            // SAFETY: a single CPU runs kernel-lite with interrupts off, so the holder can only be
            // code this fault interrupted; it never resumes, and the port is a plain I/O port.
            unsafe { CONSOLE.force_unlock() };
            CONSOLE.lock()
        }
    };
    if let Some(console) = console.as_mut() {
        f(console);
    }
}

/// Writes kernel-lite's own text.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    with_console(|console| {
        let _ = console.write_fmt(args);
    });
}

/// Writes part of app `index`'s console output: each line it starts gets `[name] `, control
/// characters but tab are escaped, and a line another writer left open is ended first.
pub fn write_app(index: usize, name: &str, bytes: &[u8]) {
    with_console(|console| {
        for &byte in bytes {
            if console.take_line(Origin::App(index)) {
                let _ = write!(ConsoleRaw(console), "[{name}] ");
            }
            match byte {
                b'\n' | b'\t' | 0x20..=0x7e | 0x80..=0xff => console.send(byte),
                other => {
                    let _ = write!(ConsoleRaw(console), "\\x{other:02x}");
                }
            }
            console.open_line = (byte != b'\n').then_some(Origin::App(index));
        }
    });
}

/// Writes to the port without origin bookkeeping (for a prefix or an escape inside a line).
struct ConsoleRaw<'a>(&'a mut Console);

impl Write for ConsoleRaw<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            self.0.send(byte);
        }
        Ok(())
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

/// Shows untrusted text (an app's fault message) on one line: control characters, newlines
/// included, are escaped, so the text cannot start a line of its own.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "\\x{:02x}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}
