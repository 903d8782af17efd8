//! The app's console: `print!`/`println!` into a per-app line buffer that goes to kernel-lite
//! one whole line per kcall (which prefixes it with the app's name).

#[cfg(target_os = "none")]
use core::fmt;

/// Bytes a line may hold before it is sent without its newline.
pub const LINE_CAPACITY: usize = 256;

/// Collects output and hands it on in whole lines.
pub struct LineBuffer {
    bytes: [u8; LINE_CAPACITY],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    pub const fn new() -> LineBuffer {
        LineBuffer {
            bytes: [0; LINE_CAPACITY],
            len: 0,
        }
    }

    /// Appends `text`, calling `emit` with each completed line (newline included) and with the
    /// buffer whenever it fills up.
    pub fn push(&mut self, text: &[u8], emit: &mut impl FnMut(&[u8])) {
        for &byte in text {
            self.bytes[self.len] = byte;
            self.len += 1;
            if byte == b'\n' || self.len == LINE_CAPACITY {
                emit(&self.bytes[..self.len]);
                self.len = 0;
            }
        }
    }

    /// Hands on whatever is buffered.
    pub fn flush(&mut self, emit: &mut impl FnMut(&[u8])) {
        if self.len > 0 {
            emit(&self.bytes[..self.len]);
            self.len = 0;
        }
    }
}

#[cfg(target_os = "none")]
struct Console;

#[cfg(target_os = "none")]
impl fmt::Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        crate::rt::with_console(|buffer| {
            buffer.push(text.as_bytes(), &mut crate::sys::console_write)
        });
        Ok(())
    }
}

#[cfg(target_os = "none")]
#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    let _ = fmt::Write::write_fmt(&mut Console, args);
}

/// Sends any partial line to the console.
#[cfg(target_os = "none")]
pub fn flush() {
    crate::rt::with_console(|buffer| buffer.flush(&mut crate::sys::console_write));
}

/// Prints to the app's console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the app's console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_goes_out_in_whole_lines() {
        let mut lines: Vec<Vec<u8>> = Vec::new();
        let mut buffer = LineBuffer::new();
        let mut emit = |line: &[u8]| lines.push(line.to_vec());
        buffer.push(b"hel", &mut emit);
        buffer.push(b"lo\nwor", &mut emit);
        buffer.push(b"ld\n", &mut emit);
        buffer.push(b"tail", &mut emit);
        buffer.flush(&mut emit);
        assert_eq!(lines, [&b"hello\n"[..], b"world\n", b"tail"]);
    }

    #[test]
    fn a_full_buffer_is_sent_without_waiting_for_a_newline() {
        let mut sizes = Vec::new();
        let mut buffer = LineBuffer::new();
        buffer.push(&[b'x'; LINE_CAPACITY + 10], &mut |line: &[u8]| {
            sizes.push(line.len())
        });
        assert_eq!(sizes, [LINE_CAPACITY]);
    }
}
