//! RESP2, the Redis protocol: an incremental request parser and a reply encoder.
//!
//! Requests come in two forms, as redis-server accepts them:
//! - multibulk: `*<count>\r\n` then `count` bulk strings `$<length>\r\n<bytes>\r\n`;
//! - inline: one line of words (`PING\r\n`, `SET k "a b"\n`), split like `redis-cli` input,
//!   with double quotes (escapes `\n \r \t \b \a \\ \" \xHH`) and single quotes (`\'`).
//!
//! [`RequestParser::parse`] is given the unconsumed bytes of a connection, a buffer that only
//! grows at its end between calls; it remembers how far it has got, so each byte is examined
//! once however the request is split. Limits ([`ParserLimits`]) are checked as soon as a length
//! is declared: a bulk that claims 1 GiB is refused before any of it arrives. Every
//! [`ProtocolError`] is fatal for its connection: the server answers it with
//! `-ERR Protocol error: ...` and closes, since whatever follows cannot be framed.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Limits on one request, checked as soon as a length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParserLimits {
    /// The most bytes in one bulk string (Redis's `proto-max-bulk-len`, 512 MiB there).
    pub max_bulk_bytes: usize,
    /// The most elements in one multibulk request (1024 * 1024 in Redis).
    pub max_array_elements: usize,
    /// The most bytes of bulk payload in one request, all elements together.
    pub max_request_bytes: usize,
    /// The longest inline request or header line (64 KiB in Redis).
    pub max_line_bytes: usize,
}

impl Default for ParserLimits {
    fn default() -> ParserLimits {
        ParserLimits {
            max_bulk_bytes: 1024 * 1024,
            max_array_elements: 64 * 1024,
            max_request_bytes: 8 * 1024 * 1024,
            max_line_bytes: 64 * 1024,
        }
    }
}

/// Why a request could not be parsed. The text after `Protocol error: ` follows Redis's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolError {
    /// An inline request longer than [`ParserLimits::max_line_bytes`] without a newline.
    InlineTooBig,
    /// An inline request with an unterminated quote, or a closing quote not followed by a space.
    UnbalancedQuotes,
    /// A `*` header line too long to be a count.
    ArrayHeaderTooBig,
    /// A `*` count that is not a number or above [`ParserLimits::max_array_elements`].
    InvalidArrayLength,
    /// An array element that does not start with `$`; carries the byte found.
    ExpectedBulk(u8),
    /// A `$` header line too long to be a length.
    BulkHeaderTooBig,
    /// A `$` length that is not a number or above [`ParserLimits::max_bulk_bytes`].
    InvalidBulkLength,
    /// Bulk data not followed by `\r\n`.
    MissingBulkTerminator,
    /// The elements of one request together above [`ParserLimits::max_request_bytes`].
    RequestTooBig,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InlineTooBig => f.write_str("too big inline request"),
            ProtocolError::UnbalancedQuotes => f.write_str("unbalanced quotes in request"),
            ProtocolError::ArrayHeaderTooBig => f.write_str("too big mbulk count string"),
            ProtocolError::InvalidArrayLength => f.write_str("invalid multibulk length"),
            ProtocolError::ExpectedBulk(byte) => {
                if byte.is_ascii_graphic() {
                    write!(f, "expected '$', got '{}'", char::from(*byte))
                } else {
                    write!(f, "expected '$', got '\\x{byte:02x}'")
                }
            }
            ProtocolError::BulkHeaderTooBig => f.write_str("too big bulk count string"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::MissingBulkTerminator => f.write_str("expected CRLF after bulk data"),
            ProtocolError::RequestTooBig => f.write_str("request too big"),
        }
    }
}

/// The outcome of [`RequestParser::parse`] that is not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    /// More bytes are needed; call again with the same bytes and more appended.
    Incomplete,
    /// A request (its words; possibly none, which Redis ignores) and how many bytes of the
    /// buffer it took. The caller drops those bytes before the next call.
    Complete(Vec<Vec<u8>>, usize),
}

/// Where the parser is inside a multibulk request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
enum Progress {
    /// Nothing of the next request examined yet.
    #[default]
    Start,
    /// Inside `*count`: `words` collected, the next element's header starts at `position`.
    Array {
        count: usize,
        words: Vec<Vec<u8>>,
        payload_bytes: usize,
        position: usize,
    },
    /// An element of `length` bytes starts at `position` (its header already read).
    Bulk {
        count: usize,
        words: Vec<Vec<u8>>,
        payload_bytes: usize,
        position: usize,
        length: usize,
    },
}

/// An incremental RESP2 request parser; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct RequestParser {
    limits: ParserLimits,
    progress: Progress,
    /// For inline requests: how far the search for the newline has got.
    scanned: usize,
}

/// The most elements reserved up front, whatever count a request declares.
const PREALLOCATED_WORDS: usize = 64;

impl RequestParser {
    pub fn new(limits: ParserLimits) -> RequestParser {
        RequestParser {
            limits,
            ..RequestParser::default()
        }
    }

    /// Whether part of a request has been examined and the rest is awaited.
    pub fn has_partial_request(&self) -> bool {
        self.progress != Progress::Start || self.scanned > 0
    }

    /// Parses the next request from `buffer`, the connection's unconsumed bytes. Between
    /// calls the caller may only append to `buffer`, except after [`Parse::Complete`], when it
    /// drops the consumed bytes from the front. After an error the parser must not be used again.
    pub fn parse(&mut self, buffer: &[u8]) -> Result<Parse, ProtocolError> {
        loop {
            match core::mem::take(&mut self.progress) {
                Progress::Start => {
                    let Some(&first) = buffer.first() else {
                        return Ok(Parse::Incomplete);
                    };
                    if first != b'*' {
                        return self.parse_inline(buffer);
                    }
                    let Some((line, next)) =
                        find_line(buffer, 1).map_err(|_| ProtocolError::ArrayHeaderTooBig)?
                    else {
                        return Ok(Parse::Incomplete);
                    };
                    let count = parse_length(line).ok_or(ProtocolError::InvalidArrayLength)?;
                    let Some(count) = count else {
                        // `*-1` and `*0` are requests with no words.
                        return Ok(Parse::Complete(Vec::new(), next));
                    };
                    if count > self.limits.max_array_elements {
                        return Err(ProtocolError::InvalidArrayLength);
                    }
                    if count == 0 {
                        return Ok(Parse::Complete(Vec::new(), next));
                    }
                    self.progress = Progress::Array {
                        count,
                        words: Vec::with_capacity(count.min(PREALLOCATED_WORDS)),
                        payload_bytes: 0,
                        position: next,
                    };
                }
                Progress::Array {
                    count,
                    words,
                    payload_bytes,
                    position,
                } => {
                    if words.len() == count {
                        return Ok(Parse::Complete(words, position));
                    }
                    let Some(&marker) = buffer.get(position) else {
                        self.progress = Progress::Array {
                            count,
                            words,
                            payload_bytes,
                            position,
                        };
                        return Ok(Parse::Incomplete);
                    };
                    if marker != b'$' {
                        return Err(ProtocolError::ExpectedBulk(marker));
                    }
                    let found = find_line(buffer, position + 1)
                        .map_err(|_| ProtocolError::BulkHeaderTooBig)?;
                    let Some((line, next)) = found else {
                        self.progress = Progress::Array {
                            count,
                            words,
                            payload_bytes,
                            position,
                        };
                        return Ok(Parse::Incomplete);
                    };
                    let length = parse_length(line)
                        .flatten()
                        .ok_or(ProtocolError::InvalidBulkLength)?;
                    if length > self.limits.max_bulk_bytes {
                        return Err(ProtocolError::InvalidBulkLength);
                    }
                    let payload_bytes = payload_bytes.saturating_add(length);
                    if payload_bytes > self.limits.max_request_bytes {
                        return Err(ProtocolError::RequestTooBig);
                    }
                    self.progress = Progress::Bulk {
                        count,
                        words,
                        payload_bytes,
                        position: next,
                        length,
                    };
                }
                Progress::Bulk {
                    count,
                    mut words,
                    payload_bytes,
                    position,
                    length,
                } => {
                    let end = position + length;
                    if buffer.len() < end + 2 {
                        self.progress = Progress::Bulk {
                            count,
                            words,
                            payload_bytes,
                            position,
                            length,
                        };
                        return Ok(Parse::Incomplete);
                    }
                    if &buffer[end..end + 2] != b"\r\n" {
                        return Err(ProtocolError::MissingBulkTerminator);
                    }
                    words.push(buffer[position..end].to_vec());
                    self.progress = Progress::Array {
                        count,
                        words,
                        payload_bytes,
                        position: end + 2,
                    };
                }
            }
        }
    }

    /// An inline request: one line, `\n` or `\r\n` terminated.
    fn parse_inline(&mut self, buffer: &[u8]) -> Result<Parse, ProtocolError> {
        let Some(newline) = buffer[self.scanned..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|offset| self.scanned + offset)
        else {
            self.scanned = buffer.len();
            if buffer.len() > self.limits.max_line_bytes {
                return Err(ProtocolError::InlineTooBig);
            }
            return Ok(Parse::Incomplete);
        };
        self.scanned = 0;
        if newline > self.limits.max_line_bytes {
            return Err(ProtocolError::InlineTooBig);
        }
        let line = buffer[..newline]
            .strip_suffix(b"\r")
            .unwrap_or(&buffer[..newline]);
        let words = split_inline_words(line).ok_or(ProtocolError::UnbalancedQuotes)?;
        Ok(Parse::Complete(words, newline + 1))
    }
}

/// Why [`find_line`] gave up.
struct LineTooLong;

/// The longest `*` or `$` header line: a length has at most 20 digits. Short, so searching
/// it again on every call costs nothing.
const MAX_HEADER_BYTES: usize = 32;

/// Finds the `\r\n`-terminated header line that starts at `start`: its content and the
/// position after it, `None` if it is not complete yet, an error if it is too long.
fn find_line(buffer: &[u8], start: usize) -> Result<Option<(&[u8], usize)>, LineTooLong> {
    let rest = buffer.get(start..).unwrap_or(&[]);
    let window = &rest[..rest.len().min(MAX_HEADER_BYTES + 2)];
    match window.windows(2).position(|pair| pair == b"\r\n") {
        Some(end) => Ok(Some((&rest[..end], start + end + 2))),
        None if rest.len() > MAX_HEADER_BYTES => Err(LineTooLong),
        None => Ok(None),
    }
}

/// A decimal length as in a `*` or `$` header: `Some(Some(n))`, `Some(None)` for a negative
/// number (a null), `None` if it is not a number.
fn parse_length(digits: &[u8]) -> Option<Option<usize>> {
    if let Some(negative) = digits.strip_prefix(b"-") {
        return parse_decimal(negative).map(|_| None);
    }
    parse_decimal(digits).map(Some)
}

fn parse_decimal(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0usize, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
    })
}

/// Splits an inline request into words like Redis's `sdssplitargs`; `None` on unbalanced
/// quotes.
fn split_inline_words(line: &[u8]) -> Option<Vec<Vec<u8>>> {
    let mut words = Vec::new();
    let mut position = 0;
    loop {
        while line.get(position).is_some_and(|b| b.is_ascii_whitespace()) {
            position += 1;
        }
        if position >= line.len() {
            return Some(words);
        }
        let mut word = Vec::new();
        let mut in_double_quotes = false;
        let mut in_single_quotes = false;
        loop {
            let byte = line.get(position).copied();
            if in_double_quotes {
                match byte? {
                    b'\\'
                        if line.get(position + 1) == Some(&b'x')
                            && line.get(position + 2).is_some_and(u8::is_ascii_hexdigit)
                            && line.get(position + 3).is_some_and(u8::is_ascii_hexdigit) =>
                    {
                        word.push(
                            hex_value(line[position + 2]) * 16 + hex_value(line[position + 3]),
                        );
                        position += 3;
                    }
                    b'\\' if position + 1 < line.len() => {
                        position += 1;
                        word.push(match line[position] {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            b'b' => 0x08,
                            b'a' => 0x07,
                            other => other,
                        });
                    }
                    b'"' => {
                        // The closing quote must end the word.
                        if line
                            .get(position + 1)
                            .is_some_and(|b| !b.is_ascii_whitespace())
                        {
                            return None;
                        }
                        in_double_quotes = false;
                        position += 1;
                        break;
                    }
                    other => word.push(other),
                }
            } else if in_single_quotes {
                match byte? {
                    b'\\' if line.get(position + 1) == Some(&b'\'') => {
                        position += 1;
                        word.push(b'\'');
                    }
                    b'\'' => {
                        if line
                            .get(position + 1)
                            .is_some_and(|b| !b.is_ascii_whitespace())
                        {
                            return None;
                        }
                        in_single_quotes = false;
                        position += 1;
                        break;
                    }
                    other => word.push(other),
                }
            } else {
                match byte {
                    None => break,
                    Some(space) if space.is_ascii_whitespace() => break,
                    Some(b'"') => in_double_quotes = true,
                    Some(b'\'') => in_single_quotes = true,
                    Some(other) => word.push(other),
                }
            }
            position += 1;
        }
        debug_assert!(!in_double_quotes && !in_single_quotes);
        words.push(word);
    }
}

fn hex_value(digit: u8) -> u8 {
    match digit {
        b'0'..=b'9' => digit - b'0',
        b'a'..=b'f' => digit - b'a' + 10,
        _ => digit - b'A' + 10,
    }
}

/// A reply, as the engine produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: a status line (must not contain `\r` or `\n`).
    Simple(&'static str),
    /// `-ERR ...`: the whole error line after the `-`, with its prefix (`ERR`, `OOM`, ...).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nabc`
    Bulk(Vec<u8>),
    /// `$-1`
    NullBulk,
    /// `*2\r\n...`
    Array(Vec<Reply>),
    /// `*-1`
    NullArray,
}

impl Reply {
    /// The standard `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// An error with the `ERR` prefix.
    pub fn error(message: impl fmt::Display) -> Reply {
        Reply::Error(alloc::format!("ERR {message}"))
    }

    /// Appends the RESP2 encoding of the reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Simple(text) => encode_line(out, b'+', text.as_bytes()),
            Reply::Error(text) => encode_line(out, b'-', text.as_bytes()),
            Reply::Integer(value) => encode_header(out, b':', *value),
            Reply::Bulk(bytes) => {
                encode_header(out, b'$', bytes.len() as i64);
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Reply::NullBulk => out.extend_from_slice(b"$-1\r\n"),
            Reply::Array(items) => {
                encode_header(out, b'*', items.len() as i64);
                for item in items {
                    item.encode(out);
                }
            }
            Reply::NullArray => out.extend_from_slice(b"*-1\r\n"),
        }
    }
}

/// `marker`, `text` with any `\r` or `\n` turned into spaces, `\r\n`.
fn encode_line(out: &mut Vec<u8>, marker: u8, text: &[u8]) {
    out.push(marker);
    out.extend(text.iter().map(|&byte| {
        if byte == b'\r' || byte == b'\n' {
            b' '
        } else {
            byte
        }
    }));
    out.extend_from_slice(b"\r\n");
}

fn encode_header(out: &mut Vec<u8>, marker: u8, value: i64) {
    out.push(marker);
    let mut digits = [0u8; 20];
    let mut remaining = value.unsigned_abs();
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (remaining % 10) as u8;
        remaining /= 10;
        if remaining == 0 {
            break;
        }
    }
    if value < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[start..]);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests;
