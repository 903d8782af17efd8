//! An incremental HTTP/1.1 request parser over a byte buffer (RFC 9112), sans I/O.
//!
//! [`RequestParser::parse`] is given the unconsumed bytes of a connection and answers
//! [`Parse::Incomplete`] (read more), [`Parse::Complete`] (a request and how many bytes it used:
//! the rest may be the next, pipelined, request) or a [`RequestError`] whose
//! [`status`](RequestError::status) is what to send before closing.
//!
//! Choices, where the RFC leaves room:
//! - Lines end in CRLF; a bare LF is accepted too (RFC 9112 §2.2 allows it). Empty lines before
//!   a request line are skipped (§2.2: clients may send an extra CRLF after a body).
//! - The head (request line and headers, up to and including the empty line) may be at most
//!   [`MAX_HEAD_BYTES`], with at most [`MAX_HEADERS`] fields; more is 431.
//! - Bodies are framed by `Content-Length` only. `Transfer-Encoding` (chunked or not) is answered
//!   with 501 and the connection closed: this server serves GET and HEAD, whose requests carry
//!   no body in practice, so chunked decoding would be code with no user. A `Content-Length`
//!   that is not all digits, or appears twice (even with equal values), is 400; one over
//!   [`MAX_BODY_BYTES`] is 413, answered as soon as the head is read.
//! - HTTP/1.1 requests must carry exactly one `Host` (§3.2: a server MUST answer 400 otherwise).
//! - Only `HTTP/1.0` and `HTTP/1.1` are served; another well-formed `HTTP/x.y` is 505.

use crate::response::Status;
use alloc::string::String;
use alloc::vec::Vec;

/// The most bytes a request head (request line, headers and the empty line) may take.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// The most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// The largest request body accepted.
pub const MAX_BODY_BYTES: u64 = 1024 * 1024;

/// A request method. Methods other than GET and HEAD are kept by name (for the 405 answer and
/// for tests); the parser accepts any token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Other(String),
}

impl Method {
    fn from_token(token: &str) -> Method {
        // Methods are case-sensitive (RFC 9110 §9.1): "get" is not GET.
        match token {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            other => Method::Other(String::from(other)),
        }
    }

    /// The method's name as sent on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Other(name) => name,
        }
    }
}

/// The protocol versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    /// The version as written in a request line.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// One header field as received; the name keeps its case, lookups ignore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: String,
    /// The value without leading or trailing whitespace. Bytes, since obs-text (0x80..=0xFF)
    /// is allowed in values.
    pub value: Vec<u8>,
}

/// A complete request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// The request target as sent (origin-form `/path?query`, absolute-form, or `*`).
    pub target: String,
    pub version: Version,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the response (RFC 9112 §9.3).
    pub keep_alive: bool,
}

impl Request {
    /// The value of the first header named `name` (case-insensitively).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|header| header.name.eq_ignore_ascii_case(name))
            .map(|header| header.value.as_slice())
    }
}

/// What [`RequestParser::parse`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed; the caller keeps the buffer and calls again with it extended.
    Incomplete,
    /// A request, and the number of bytes at the start of the buffer it took.
    Complete(Request, usize),
}

/// Why a request was refused. After any of these the connection is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// The request line is not `method SP target SP version`.
    MalformedRequestLine,
    /// A header line is not `name: value`, or uses obsolete line folding.
    MalformedHeader,
    /// An HTTP/1.1 request without `Host`, or any request with two.
    BadHost,
    /// `Content-Length` is not a decimal number.
    InvalidContentLength,
    /// `Content-Length` appears more than once.
    DuplicateContentLength,
    /// The head is larger than [`MAX_HEAD_BYTES`].
    HeadTooLarge,
    /// More than [`MAX_HEADERS`] header fields.
    TooManyHeaders,
    /// The body is larger than [`MAX_BODY_BYTES`].
    BodyTooLarge,
    /// A well-formed version other than HTTP/1.0 and HTTP/1.1.
    UnsupportedVersion,
    /// `Transfer-Encoding` is present (see the module docs).
    TransferEncodingNotImplemented,
}

impl RequestError {
    /// The status to answer with before closing.
    pub fn status(self) -> Status {
        match self {
            RequestError::MalformedRequestLine
            | RequestError::MalformedHeader
            | RequestError::BadHost
            | RequestError::InvalidContentLength
            | RequestError::DuplicateContentLength => Status::BadRequest,
            RequestError::HeadTooLarge | RequestError::TooManyHeaders => {
                Status::RequestHeaderFieldsTooLarge
            }
            RequestError::BodyTooLarge => Status::ContentTooLarge,
            RequestError::UnsupportedVersion => Status::HttpVersionNotSupported,
            RequestError::TransferEncodingNotImplemented => Status::NotImplemented,
        }
    }
}

/// The head of a request whose body may still be arriving.
#[derive(Debug)]
struct ParsedHead {
    request: Request,
    /// Bytes from the buffer's start through the head's empty line.
    head_end: usize,
    body_length: usize,
}

/// An incremental parser: it remembers how far it has searched for the end of the head, and
/// a head it has parsed while the body arrives, so bytes trickling in are not scanned again.
///
/// Contract: each call's buffer starts with the same bytes as the previous call's (the
/// unconsumed input, possibly extended). After `Complete` or an error the parser starts afresh,
/// and the caller drops the consumed bytes. A shorter buffer than before also restarts it.
#[derive(Debug, Default)]
pub struct RequestParser {
    /// Bytes already searched for the head's end without finding it.
    scanned: usize,
    head: Option<ParsedHead>,
}

impl RequestParser {
    pub fn new() -> RequestParser {
        RequestParser::default()
    }

    /// Parses the request at the start of `buffer`.
    pub fn parse(&mut self, buffer: &[u8]) -> Result<Parse, RequestError> {
        if buffer.len() < self.scanned
            || self
                .head
                .as_ref()
                .is_some_and(|head| buffer.len() < head.head_end)
        {
            *self = RequestParser::default();
        }
        let result = self.parse_inner(buffer);
        if !matches!(result, Ok(Parse::Incomplete)) {
            *self = RequestParser::default();
        }
        result
    }

    /// Whether part of a request has been seen (a head in progress or a body arriving).
    pub fn has_partial_request(&self) -> bool {
        self.head.is_some() || self.scanned > 0
    }

    fn parse_inner(&mut self, buffer: &[u8]) -> Result<Parse, RequestError> {
        if self.head.is_none() {
            let Some(head_end) = self.find_head_end(buffer)? else {
                return Ok(Parse::Incomplete);
            };
            self.head = Some(parse_head(buffer, head_end)?);
        }
        let Some(head) = self.head.as_mut() else {
            return Ok(Parse::Incomplete);
        };
        let total = head.head_end + head.body_length;
        if buffer.len() < total {
            return Ok(Parse::Incomplete);
        }
        let mut request = core::mem::replace(&mut head.request, empty_request());
        request.body = buffer[head.head_end..total].to_vec();
        Ok(Parse::Complete(request, total))
    }

    /// The index just past the empty line that ends the head, once it has arrived.
    fn find_head_end(&mut self, buffer: &[u8]) -> Result<Option<usize>, RequestError> {
        let start = skip_leading_empty_lines(buffer);
        // Empty lines before the request line count towards the limit, or a peer could make
        // the buffer grow without end by sending nothing else.
        let limit = buffer.len().min(MAX_HEAD_BYTES);
        let mut index = self.scanned.max(start);
        while index < limit {
            // An LF ends the head when the line it ends is empty: "\n\n" or "\n\r\n".
            if buffer[index] == b'\n' && index > start {
                let previous = buffer[index - 1];
                let ends_empty_line = previous == b'\n'
                    || (previous == b'\r' && index >= start + 2 && buffer[index - 2] == b'\n');
                if ends_empty_line {
                    return Ok(Some(index + 1));
                }
            }
            index += 1;
        }
        self.scanned = index;
        if limit >= MAX_HEAD_BYTES {
            return Err(RequestError::HeadTooLarge);
        }
        Ok(None)
    }
}

fn empty_request() -> Request {
    Request {
        method: Method::Get,
        target: String::new(),
        version: Version::Http11,
        headers: Vec::new(),
        body: Vec::new(),
        keep_alive: false,
    }
}

/// The number of CR and LF bytes before the request line.
fn skip_leading_empty_lines(buffer: &[u8]) -> usize {
    buffer
        .iter()
        .take_while(|&&byte| byte == b'\r' || byte == b'\n')
        .count()
}

/// Parses the head that ends at `head_end` (just past its empty line).
fn parse_head(buffer: &[u8], head_end: usize) -> Result<ParsedHead, RequestError> {
    let start = skip_leading_empty_lines(buffer);
    let mut lines = buffer[start..head_end]
        .split(|&byte| byte == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line));
    let request_line = lines.next().ok_or(RequestError::MalformedRequestLine)?;
    let (method, target, version) = parse_request_line(request_line)?;

    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            // The empty line ending the head (and the empty piece after its LF).
            continue;
        }
        if headers.len() == MAX_HEADERS {
            return Err(RequestError::TooManyHeaders);
        }
        headers.push(parse_header(line)?);
    }

    let body_length = content_length(&headers)?;
    if headers
        .iter()
        .any(|header| header.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(RequestError::TransferEncodingNotImplemented);
    }
    let hosts = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("host"))
        .count();
    if hosts > 1 || (hosts == 0 && version == Version::Http11) {
        return Err(RequestError::BadHost);
    }
    let keep_alive = keeps_alive(version, &headers);
    Ok(ParsedHead {
        request: Request {
            method,
            target,
            version,
            headers,
            body: Vec::new(),
            keep_alive,
        },
        head_end,
        body_length,
    })
}

fn parse_request_line(line: &[u8]) -> Result<(Method, String, Version), RequestError> {
    let mut parts = line.split(|&byte| byte == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::MalformedRequestLine);
    };
    if method.is_empty() || !method.iter().all(|&byte| is_token_byte(byte)) {
        return Err(RequestError::MalformedRequestLine);
    }
    if target.is_empty() || !target.iter().all(|&byte| (0x21..=0x7e).contains(&byte)) {
        return Err(RequestError::MalformedRequestLine);
    }
    let version = parse_version(version)?;
    // Both are ASCII, checked above, so these conversions cannot fail.
    let method = core::str::from_utf8(method).map_err(|_| RequestError::MalformedRequestLine)?;
    let target = core::str::from_utf8(target).map_err(|_| RequestError::MalformedRequestLine)?;
    Ok((Method::from_token(method), String::from(target), version))
}

fn parse_version(version: &[u8]) -> Result<Version, RequestError> {
    match version {
        b"HTTP/1.1" => Ok(Version::Http11),
        b"HTTP/1.0" => Ok(Version::Http10),
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            Err(RequestError::UnsupportedVersion)
        }
        _ => Err(RequestError::MalformedRequestLine),
    }
}

fn parse_header(line: &[u8]) -> Result<Header, RequestError> {
    // A line starting with whitespace is obsolete line folding (RFC 9112 §5.2): rejected. So
    // is whitespace between the name and the colon (§5.1), which the token check catches.
    let colon = line
        .iter()
        .position(|&byte| byte == b':')
        .ok_or(RequestError::MalformedHeader)?;
    let (name, rest) = line.split_at(colon);
    if name.is_empty() || !name.iter().all(|&byte| is_token_byte(byte)) {
        return Err(RequestError::MalformedHeader);
    }
    let value = trim_whitespace(&rest[1..]);
    if value
        .iter()
        .any(|&byte| (byte < 0x20 && byte != b'\t') || byte == 0x7f)
    {
        return Err(RequestError::MalformedHeader);
    }
    let name = core::str::from_utf8(name).map_err(|_| RequestError::MalformedHeader)?;
    Ok(Header {
        name: String::from(name),
        value: value.to_vec(),
    })
}

/// The body length `Content-Length` declares, or 0 without one.
fn content_length(headers: &[Header]) -> Result<usize, RequestError> {
    let mut lengths = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("content-length"));
    let Some(first) = lengths.next() else {
        return Ok(0);
    };
    if lengths.next().is_some() {
        return Err(RequestError::DuplicateContentLength);
    }
    let digits = &first.value;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(RequestError::InvalidContentLength);
    }
    // A number too long for u64 is valid syntax, just far too large.
    let length = digits.iter().try_fold(0u64, |length, &digit| {
        length.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    });
    match length {
        Some(length) if length <= MAX_BODY_BYTES => {
            usize::try_from(length).map_err(|_| RequestError::BodyTooLarge)
        }
        _ => Err(RequestError::BodyTooLarge),
    }
}

/// RFC 9112 §9.3: HTTP/1.1 persists unless `Connection: close`; HTTP/1.0 closes unless
/// `Connection: keep-alive`. `Connection` is a comma-separated list, possibly over several lines.
fn keeps_alive(version: Version, headers: &[Header]) -> bool {
    let mut close = false;
    let mut keep_alive = false;
    let options = headers
        .iter()
        .filter(|header| header.name.eq_ignore_ascii_case("connection"))
        .flat_map(|header| header.value.split(|&byte| byte == b','))
        .map(trim_whitespace);
    for option in options {
        close |= option.eq_ignore_ascii_case(b"close");
        keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
    }
    match version {
        _ if close => false,
        Version::Http11 => true,
        Version::Http10 => keep_alive,
    }
}

fn trim_whitespace(bytes: &[u8]) -> &[u8] {
    let is_space = |byte: &u8| *byte == b' ' || *byte == b'\t';
    let start = bytes
        .iter()
        .position(|byte| !is_space(byte))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|byte| !is_space(byte))
        .map_or(start, |last| last + 1);
    &bytes[start..end.max(start)]
}

/// RFC 9110 §5.6.2: tchar.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

#[cfg(test)]
mod tests;
