//! One client connection's state machine, sans I/O.
//!
//! The server hands it the bytes it reads ([`Connection::receive`], [`Connection::receive_eof`])
//! and asks it what to do next ([`Connection::poll_output`], with the engine and the time):
//!
//! - [`Output::Write`]: write these bytes, then poll again. They are the replies to every
//!   complete request buffered (pipelining), in order, packed together up to about
//!   [`OUTPUT_CHUNK_BYTES`] per write.
//! - [`Output::NeedInput`]: read more.
//! - [`Output::Close`]: everything owed has been written; close the connection.
//!
//! After a protocol error the connection answers `-ERR Protocol error: ...` and closes: what
//! follows cannot be framed. `QUIT` is answered `+OK`, then the connection closes. Once the
//! peer has closed its side, the complete requests still buffered are answered first.
//!
//! For group commit ([`crate::commit`]) the connection remembers which replies of the
//! current output belong to writes, so that if their batch fails to reach the disk
//! [`Connection::settle`] can turn exactly those into errors before anything is sent.

use crate::engine::Engine;
use crate::persist::StorageError;
use crate::resp::{Parse, ParserLimits, Reply, RequestParser};
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

/// About the most bytes one [`Output::Write`] carries (one reply may take it past this).
pub const OUTPUT_CHUNK_BYTES: usize = 64 * 1024;

/// Buffers grown past this by one large request or reply are freed once they are empty, so a
/// thousand idle connections do not each keep their largest message's memory.
const RETAINED_BUFFER_BYTES: usize = 2 * OUTPUT_CHUNK_BYTES;

/// What the server should do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Output<'a> {
    Write(&'a [u8]),
    NeedInput,
    Close,
}

/// The state of one connection.
#[derive(Debug, Default)]
pub struct Connection {
    parser: RequestParser,
    /// Received bytes; those before `input_start` belong to requests already answered.
    input: Vec<u8>,
    input_start: usize,
    /// The bytes of the last [`Output::Write`], or the next one being assembled.
    output: Vec<u8>,
    /// Where in `output` the replies of requests that changed the keyspace are.
    write_replies: Vec<Range<usize>>,
    /// No more requests will be answered: close once `output` is written.
    done: bool,
    peer_closed: bool,
}

impl Connection {
    pub fn new(limits: ParserLimits) -> Connection {
        Connection {
            parser: RequestParser::new(limits),
            ..Connection::default()
        }
    }

    /// Takes bytes read from the peer.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.done {
            return;
        }
        if self.input_start > 0 {
            // The parser's positions are relative to the unconsumed bytes; dropping the
            // consumed ones does not disturb it.
            self.input.drain(..self.input_start);
            self.input_start = 0;
            if self.input.is_empty() && self.input.capacity() > RETAINED_BUFFER_BYTES {
                self.input = Vec::new();
            }
        }
        self.input.extend_from_slice(bytes);
    }

    /// Notes that the peer has closed its side (a read returned 0).
    pub fn receive_eof(&mut self) {
        self.peer_closed = true;
    }

    /// Whether a request has begun arriving but is not complete.
    pub fn has_partial_request(&self) -> bool {
        self.input_start < self.input.len() || self.parser.has_partial_request()
    }

    /// What to do next; see the module docs. `now_ms` is the engine's clock.
    pub fn poll_output(&mut self, engine: &mut Engine, now_ms: u64) -> Output<'_> {
        if self.output.capacity() > RETAINED_BUFFER_BYTES {
            self.output = Vec::new();
        } else {
            self.output.clear();
        }
        self.write_replies.clear();
        while !self.done && self.output.len() < OUTPUT_CHUNK_BYTES {
            match self.parser.parse(&self.input[self.input_start..]) {
                Ok(Parse::Incomplete) => break,
                Ok(Parse::Complete(request, consumed)) => {
                    self.input_start += consumed;
                    let is_quit = request
                        .first()
                        .is_some_and(|name| name.eq_ignore_ascii_case(b"quit"));
                    if is_quit {
                        Reply::OK.encode(&mut self.output);
                        self.done = true;
                    } else {
                        let recorded_before = engine.recorded_mutations();
                        let start = self.output.len();
                        if let Some(reply) = engine.execute(&request, now_ms) {
                            reply.encode(&mut self.output);
                        }
                        if engine.recorded_mutations() > recorded_before {
                            self.write_replies.push(start..self.output.len());
                        }
                    }
                }
                Err(error) => {
                    log::debug!("kv: closing a connection after a protocol error: {error}");
                    Reply::error(format!("Protocol error: {error}")).encode(&mut self.output);
                    self.done = true;
                }
            }
        }
        if self.done {
            // Nothing more will be parsed; free the input.
            self.input = Vec::new();
            self.input_start = 0;
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

    /// The bytes of the last [`Output::Write`] (as settled).
    pub fn output(&self) -> &[u8] {
        &self.output
    }

    /// Applies the outcome of the batch the last output's writes joined: on an error, every
    /// write's reply becomes Redis's `MISCONF` error, since none of them may be reported
    /// done; the other replies stay as they are.
    pub fn settle(&mut self, outcome: Result<(), StorageError>) {
        let Err(error) = outcome else {
            return;
        };
        if self.write_replies.is_empty() {
            return;
        }
        let refusal = Reply::Error(crate::commit::misconf_message(&error));
        let mut settled = Vec::with_capacity(self.output.len());
        let mut copied_to = 0;
        for range in self.write_replies.drain(..) {
            settled.extend_from_slice(&self.output[copied_to..range.start]);
            refusal.encode(&mut settled);
            copied_to = range.end;
        }
        settled.extend_from_slice(&self.output[copied_to..]);
        self.output = settled;
    }
}

#[cfg(test)]
mod tests;
