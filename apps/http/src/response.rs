//! Responses: status codes, the head as written on the wire, and bodies that are written out in
//! pieces, so a generated body of many mebibytes never needs a buffer of its size.

use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// The statuses this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    BadRequest,
    NotFound,
    MethodNotAllowed,
    ContentTooLarge,
    RequestHeaderFieldsTooLarge,
    NotImplemented,
    HttpVersionNotSupported,
}

impl Status {
    pub fn code(self) -> u16 {
        match self {
            Status::Ok => 200,
            Status::BadRequest => 400,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::ContentTooLarge => 413,
            Status::RequestHeaderFieldsTooLarge => 431,
            Status::NotImplemented => 501,
            Status::HttpVersionNotSupported => 505,
        }
    }

    /// The reason phrase (RFC 9110 §15).
    pub fn reason(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::BadRequest => "Bad Request",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Method Not Allowed",
            Status::ContentTooLarge => "Content Too Large",
            Status::RequestHeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::NotImplemented => "Not Implemented",
            Status::HttpVersionNotSupported => "HTTP Version Not Supported",
        }
    }
}

/// The value of the `Server` header.
pub const SERVER_NAME: &str = "libos-http";

/// The period of the `/bytes/N` pattern: byte `i` is `(i % 251) as u8`. 251 is prime, so the
/// pattern does not line up with any power-of-two chunking, and a lost or repeated chunk shows.
pub const PATTERN_PERIOD: usize = 251;

/// One period of the pattern, copied from rather than computed byte by byte.
const PATTERN: [u8; PATTERN_PERIOD] = {
    let mut pattern = [0u8; PATTERN_PERIOD];
    let mut index = 0;
    while index < PATTERN_PERIOD {
        pattern[index] = index as u8;
        index += 1;
    }
    pattern
};

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// A file built into the image.
    Static(&'static [u8]),
    /// A page generated for this request (small: error texts, `/status`).
    Generated(Vec<u8>),
    /// `length` bytes of the deterministic pattern, produced as they are written.
    Pattern { length: u64 },
}

impl Body {
    pub fn len(&self) -> u64 {
        match self {
            Body::Static(bytes) => bytes.len() as u64,
            Body::Generated(bytes) => bytes.len() as u64,
            Body::Pattern { length } => *length,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A response before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: Status,
    pub content_type: &'static str,
    pub body: Body,
    /// The `Allow` header's value, for 405.
    pub allow: Option<&'static str>,
}

impl Response {
    pub fn new(status: Status, content_type: &'static str, body: Body) -> Response {
        Response {
            status,
            content_type,
            body,
            allow: None,
        }
    }

    /// A short plain-text page for `status`, e.g. "404 Not Found\n".
    pub fn error(status: Status) -> Response {
        let mut text = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = writeln!(
            ByteWriter(&mut text),
            "{} {}",
            status.code(),
            status.reason()
        );
        Response::new(status, "text/plain", Body::Generated(text))
    }

    /// Appends the status line and headers, through the empty line, to `out`. The version is
    /// always HTTP/1.1, the highest this server speaks (RFC 9110 §6.2), whatever the request's.
    pub fn write_head(&self, keep_alive: bool, out: &mut Vec<u8>) {
        let mut writer = ByteWriter(out);
        // Writing into a Vec cannot fail. No `Date`: the machine has no calendar clock, and an
        // origin server without one must not send it (RFC 9110 §6.6.1).
        let _ = write!(
            writer,
            "HTTP/1.1 {} {}\r\nServer: {SERVER_NAME}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
            self.status.code(),
            self.status.reason(),
            self.content_type,
            self.body.len(),
            if keep_alive { "keep-alive" } else { "close" },
        );
        if let Some(allow) = self.allow {
            let _ = write!(writer, "Allow: {allow}\r\n");
        }
        writer.0.extend_from_slice(b"\r\n");
    }
}

/// A body being written out: where the next piece starts.
#[derive(Debug)]
pub struct BodyWriter {
    body: Body,
    written: u64,
}

impl BodyWriter {
    pub fn new(body: Body) -> BodyWriter {
        BodyWriter { body, written: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.written >= self.body.len()
    }

    /// Appends the next bytes of the body to `out`, until `out` holds `capacity` bytes or the
    /// body ends.
    pub fn fill(&mut self, out: &mut Vec<u8>, capacity: usize) {
        while !self.is_done() && out.len() < capacity {
            let room = (capacity - out.len()) as u64;
            let left = self.body.len() - self.written;
            let take = room.min(left);
            match &self.body {
                Body::Static(bytes) => extend_from_range(out, bytes, self.written, take),
                Body::Generated(bytes) => extend_from_range(out, bytes, self.written, take),
                Body::Pattern { .. } => {
                    let phase = (self.written % PATTERN_PERIOD as u64) as usize;
                    let run = take.min((PATTERN_PERIOD - phase) as u64) as usize;
                    out.extend_from_slice(&PATTERN[phase..phase + run]);
                    self.written += run as u64;
                    continue;
                }
            }
            self.written += take;
        }
    }
}

fn extend_from_range(out: &mut Vec<u8>, bytes: &[u8], start: u64, length: u64) {
    let start = usize::try_from(start).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(length).unwrap_or(usize::MAX));
    if let Some(piece) = bytes.get(start..end) {
        out.extend_from_slice(piece);
    }
}

/// `core::fmt::Write` into a byte vector.
pub(crate) struct ByteWriter<'a>(pub(crate) &'a mut Vec<u8>);

impl fmt::Write for ByteWriter<'_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}
