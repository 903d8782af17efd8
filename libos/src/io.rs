//! I/O traits and errors with std's names. The app's console is a writer here; the network's
//! sockets (`net`) are async and report the same [`Error`] kinds; files (`fs`) are readers,
//! writers and seekers.

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
    /// The thing looked for does not exist (a host name that does not resolve, a file).
    NotFound,
    /// The thing to be made exists already (a file opened with `create_new`).
    AlreadyExists,
    /// A path component that must be a directory is not one.
    NotADirectory,
    /// The operation needs a file but the path names a directory.
    IsADirectory,
    /// A directory to be removed (or replaced) still has entries.
    DirectoryNotEmpty,
    /// The storage (the app's disk extent) has no room left.
    StorageFull,
    /// A file name is not acceptable (empty, `.`, `..`, a NUL, too long).
    InvalidFilename,
    /// Stored data is damaged (a checksum does not match) or is not what was expected.
    InvalidData,
    /// A file would grow past the largest size the file system allows.
    FileTooLarge,
    /// Any other error (the storage device reported a failure).
    Other,
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
            ErrorKind::AlreadyExists => f.write_str("already exists"),
            ErrorKind::NotADirectory => f.write_str("not a directory"),
            ErrorKind::IsADirectory => f.write_str("is a directory"),
            ErrorKind::DirectoryNotEmpty => f.write_str("directory not empty"),
            ErrorKind::StorageFull => f.write_str("no storage space"),
            ErrorKind::InvalidFilename => f.write_str("invalid file name"),
            ErrorKind::InvalidData => f.write_str("invalid (damaged) data"),
            ErrorKind::FileTooLarge => f.write_str("file too large"),
            ErrorKind::Other => f.write_str("other error (device failure)"),
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

/// A byte source, like `std::io::Read`.
pub trait Read {
    /// Reads some bytes into `buf`, returning how many (0 at the end).
    fn read(&mut self, buf: &mut [u8]) -> Result<usize>;

    /// Fills all of `buf`; `UnexpectedEof` when the source ends first.
    fn read_exact(&mut self, mut buf: &mut [u8]) -> Result<()> {
        while !buf.is_empty() {
            match self.read(buf)? {
                0 => return Err(Error::new(ErrorKind::UnexpectedEof)),
                n => buf = &mut buf[n..],
            }
        }
        Ok(())
    }

    /// Appends everything up to the end to `out`, returning how many bytes that was.
    fn read_to_end(&mut self, out: &mut alloc::vec::Vec<u8>) -> Result<usize> {
        let start = out.len();
        let mut chunk = [0u8; 4096];
        loop {
            match self.read(&mut chunk)? {
                0 => return Ok(out.len() - start),
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Appends everything up to the end to `out`; `InvalidData` (and `out` unchanged) when
    /// it is not UTF-8.
    fn read_to_string(&mut self, out: &mut alloc::string::String) -> Result<usize> {
        let mut bytes = alloc::vec::Vec::new();
        let n = self.read_to_end(&mut bytes)?;
        let text = core::str::from_utf8(&bytes).map_err(|_| Error::new(ErrorKind::InvalidData))?;
        out.push_str(text);
        Ok(n)
    }
}

/// Where a seek goes, like `std::io::SeekFrom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekFrom {
    /// This many bytes from the start.
    Start(u64),
    /// This many bytes from the end (may be negative).
    End(i64),
    /// This many bytes from the current position (may be negative).
    Current(i64),
}

/// A cursor that can move, like `std::io::Seek`.
pub trait Seek {
    /// Moves the cursor, returning its new position from the start; `InvalidInput` before 0.
    fn seek(&mut self, position: SeekFrom) -> Result<u64>;

    /// Moves the cursor back to the start.
    fn rewind(&mut self) -> Result<()> {
        self.seek(SeekFrom::Start(0)).map(|_| ())
    }

    /// The cursor's position from the start.
    fn stream_position(&mut self) -> Result<u64> {
        self.seek(SeekFrom::Current(0))
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
