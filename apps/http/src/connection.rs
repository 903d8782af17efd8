//! One connection's state machine, sans I/O.
//!
//! The server hands it the bytes it reads ([`Connection::receive`], [`Connection::receive_eof`])
//! and asks it what to do next ([`Connection::poll_output`]):
//!
//! - [`Output::Write`]: write these bytes, then poll again. They are response heads and body
//!   pieces, at most [`OUTPUT_CHUNK_BYTES`] at a time, so a streamed body of any size needs only
//!   that much memory. Responses to several pipelined requests are packed into one write.
//! - [`Output::NeedInput`]: read more (and apply the timeouts; see
//!   [`Connection::has_partial_request`]).
//! - [`Output::Close`]: everything owed has been written; close the connection.
//!
//! Requests are answered strictly in order. The connection closes after a response whose
//! request asked for that (`Connection: close`, or HTTP/1.0 without keep-alive), after the
//! answer to a request it could not parse (whatever followed it cannot be framed), and when the
//! peer has closed its side and no complete request is left.

use crate::request::Method;
use crate::request::{Parse, RequestParser};
use crate::response::{BodyWriter, Response};
use crate::site::{self, ServerContext};
use alloc::vec::Vec;

/// The most bytes one [`Output::Write`] carries.
pub const OUTPUT_CHUNK_BYTES: usize = 16 * 1024;

/// What the server should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    Write(&'a [u8]),
    NeedInput,
    Close,
}

/// The state of one HTTP connection.
#[derive(Debug, Default)]
pub struct Connection {
    parser: RequestParser,
    /// Received bytes; those before `input_start` have been consumed by parsed requests.
    input: Vec<u8>,
    input_start: usize,
    /// The bytes of the last [`Output::Write`], or the next one being assembled.
    output: Vec<u8>,
    /// The body of the response being written, if it is not all in `output` yet.
    body: Option<BodyWriter>,
    /// The response being written is the last: close once it is out.
    close_after_body: bool,
    /// No more responses will be started.
    done: bool,
    peer_closed: bool,
}

impl Connection {
    pub fn new() -> Connection {
        Connection::default()
    }

    /// Takes bytes read from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.done {
            // The connection is closing; whatever the peer sends is never parsed.
            return;
        }
        if self.input_start > 0 {
            // Drop consumed requests before growing the buffer. The parser's position is
            // relative to the unconsumed bytes, so it is not disturbed.
            self.input.drain(..self.input_start);
            self.input_start = 0;
        }
        self.input.extend_from_slice(bytes);
    }

    /// Notes that the peer has closed its side (a read returned 0).
    pub fn receive_eof(&mut self) {
        self.peer_closed = true;
    }

    /// Whether a request has begun arriving but is not complete: the server's cue to apply
    /// the request timeout rather than the idle keep-alive timeout.
    pub fn has_partial_request(&self) -> bool {
        self.input_start < self.input.len() || self.parser.has_partial_request()
    }

    /// What to do next. `context` supplies `/status` and counts the requests served.
    pub fn poll_output(&mut self, context: &dyn ServerContext) -> Output<'_> {
        self.output.clear();
        while self.output.len() < OUTPUT_CHUNK_BYTES {
            if let Some(body) = self.body.as_mut() {
                body.fill(&mut self.output, OUTPUT_CHUNK_BYTES);
                if !body.is_done() {
                    break;
                }
                self.body = None;
            }
            if self.close_after_body {
                self.done = true;
            }
            if self.done || !self.start_next_response(context) {
                break;
            }
        }
        if !self.output.is_empty() {
            Output::Write(&self.output)
        } else if self.done || self.peer_closed {
            self.done = true;
            Output::Close
        } else {
            Output::NeedInput
        }
    }

    /// Parses the next buffered request and starts its response; false if there is none yet.
    fn start_next_response(&mut self, context: &dyn ServerContext) -> bool {
        let parsed = self.parser.parse(&self.input[self.input_start..]);
        if parsed == Ok(Parse::Incomplete) {
            return false;
        }
        // Counted first, so `/status` includes the request that asks for it.
        context.request_served();
        let (response, keep_alive, send_body) = match parsed {
            Ok(Parse::Complete(request, consumed)) => {
                self.input_start += consumed;
                let response = site::respond(&request, context);
                (response, request.keep_alive, request.method != Method::Head)
            }
            Ok(Parse::Incomplete) => return false,
            Err(error) => {
                log::debug!("refused a request: {error:?}");
                self.input.clear();
                self.input_start = 0;
                (Response::error(error.status()), false, true)
            }
        };
        response.write_head(keep_alive, &mut self.output);
        if send_body && !response.body.is_empty() {
            self.body = Some(BodyWriter::new(response.body));
        }
        self.close_after_body = !keep_alive;
        true
    }
}

#[cfg(test)]
mod tests;
