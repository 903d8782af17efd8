//! I/O traits and errors with std's names. The app's console is a writer here; the network's
//! sockets (`net`) are async and report the same [`Error`] kinds.

use core::fmt;

/// What went wrong with an I/O operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A write accepted no bytes.
    WriteZero,
    /// Formatting a value failed.
    FormatterError,
    /// The remote end refused the connection (nothing listens there).
    ConnectionRefused,
    /// The remote end reset the connection.
    ConnectionReset,
    /// The operation did not complete in time.
    TimedOut,
    /// The local address (port) is taken by another socket of the app.
    AddrInUse,
    /// The local address is not one of the app's.
    AddrNotAvailable,
    /// No route leads to the remote host.
    HostUnreachable,
    /// The socket is not connected (or was shut down for this direction).
    NotConnected,
    /// An argument is not acceptable (a zero port, a datagram too long).
    InvalidInput,
    /// The stream ended before the bytes asked for arrived.
    UnexpectedEof,
    /// A limit was reached: the app's socket quota, or its heap.
    OutOfMemory,
    /// The operation is not available here (no network binding, no such protocol).
    Unsupported,
    /// The thing looked for does not exist (a host name that does not resolve).
    NotFound,
}

/// An I/O error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
}

impl Error {
    pub const fn new(kind: ErrorKind) -> Error {
        Error { kind }
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl From<ErrorKind> for Error {
    fn from(kind: ErrorKind) -> Error {
        Error::new(kind)
    }
}

impl core::error::Error for Error {}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::WriteZero => f.write_str("write accepted no bytes"),
            ErrorKind::FormatterError => f.write_str("formatter error"),
            ErrorKind::ConnectionRefused => f.write_str("connection refused"),
            ErrorKind::ConnectionReset => f.write_str("connection reset by the peer"),
            ErrorKind::TimedOut => f.write_str("timed out"),
            ErrorKind::AddrInUse => f.write_str("address in use"),
            ErrorKind::AddrNotAvailable => f.write_str("address not available"),
            ErrorKind::HostUnreachable => f.write_str("host unreachable"),
            ErrorKind::NotConnected => f.write_str("not connected"),
            ErrorKind::InvalidInput => f.write_str("invalid input"),
            ErrorKind::UnexpectedEof => f.write_str("unexpected end of stream"),
            ErrorKind::OutOfMemory => f.write_str("out of memory (socket limit reached)"),
            ErrorKind::Unsupported => f.write_str("unsupported"),
            ErrorKind::NotFound => f.write_str("not found"),
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// A byte sink, like `std::io::Write`.
pub trait Write {
    /// Writes some of `buf`, returning how much.
    fn write(&mut self, buf: &[u8]) -> Result<usize>;

    /// Pushes out anything buffered.
    fn flush(&mut self) -> Result<()>;

    /// Writes all of `buf`.
    fn write_all(&mut self, mut buf: &[u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.write(buf)? {
                0 => return Err(Error::new(ErrorKind::WriteZero)),
                n => buf = &buf[n..],
            }
        }
        Ok(())
    }

    /// Writes formatted text (what `write!` calls).
    fn write_fmt(&mut self, args: fmt::Arguments<'_>) -> Result<()> {
        struct Adapter<'a, W: ?Sized> {
            inner: &'a mut W,
            error: Option<Error>,
        }
        impl<W: Write + ?Sized> fmt::Write for Adapter<'_, W> {
            fn write_str(&mut self, text: &str) -> fmt::Result {
                self.inner.write_all(text.as_bytes()).map_err(|error| {
                    self.error = Some(error);
                    fmt::Error
                })
            }
        }
        let mut adapter = Adapter {
            inner: self,
            error: None,
        };
        fmt::write(&mut adapter, args).map_err(|_| {
            adapter
                .error
                .unwrap_or(Error::new(ErrorKind::FormatterError))
        })
    }
}

/// The running app's console, line-buffered (see [`crate::console`]).
#[cfg(target_os = "none")]
#[derive(Debug, Clone, Copy)]
pub struct Stdout;

/// The running app's console.
#[cfg(target_os = "none")]
pub fn stdout() -> Stdout {
    Stdout
}

#[cfg(target_os = "none")]
impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        crate::rt::with_console(|buffer| buffer.push(buf, &mut crate::sys::console_write));
        Ok(buf.len())
    }

    fn flush(&mut self) -> Result<()> {
        crate::console::flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accepts at most 3 bytes a call; refuses everything after `limit` bytes.
    struct Trickle {
        got: Vec<u8>,
        limit: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> Result<usize> {
            let n = buf.len().min(3).min(self.limit - self.got.len());
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_all_and_write_fmt_loop_over_short_writes() {
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 100,
        };
        write!(sink, "hello-{}", 42).unwrap();
        assert_eq!(sink.got, b"hello-42");
    }

    #[test]
    fn a_sink_that_stops_accepting_gives_write_zero() {
        let mut sink = Trickle {
            got: Vec::new(),
            limit: 4,
        };
        assert_eq!(
            sink.write_all(b"too long").unwrap_err().kind(),
            ErrorKind::WriteZero
        );
        assert_eq!(write!(sink, "x").unwrap_err().kind(), ErrorKind::WriteZero);
    }
}
