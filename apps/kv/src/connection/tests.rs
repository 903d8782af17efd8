//! The connection state machine: pipelined replies in order, QUIT, protocol errors that close
//! the connection (and leave others alone), end of input, and a property test that no input
//! panics it.

use super::*;
use alloc::vec;
use proptest::prelude::*;

/// Feeds `input` and collects everything written until the connection needs input or closes.
fn exchange(connection: &mut Connection, engine: &mut Engine, input: &[u8]) -> (Vec<u8>, bool) {
    connection.receive(input);
    let mut written = Vec::new();
    loop {
        match connection.poll_output(engine, 0) {
            Output::Write(bytes) => written.extend_from_slice(bytes),
            Output::NeedInput => return (written, false),
            Output::Close => return (written, true),
        }
    }
}

fn connection() -> Connection {
    Connection::new(ParserLimits::default())
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let mut engine = Engine::default();
    let mut client = connection();
    let (written, closed) = exchange(
        &mut client,
        &mut engine,
        b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\nGET k\r\nINCR k\r\nPING\r\n*2\r\n$3\r\nGET\r\n",
    );
    assert_eq!(
        written,
        b"+OK\r\n$1\r\nv\r\n-ERR value is not an integer or out of range\r\n+PONG\r\n"
    );
    assert!(!closed);
    assert!(client.has_partial_request());
    let (written, closed) = exchange(&mut client, &mut engine, b"$1\r\nk\r\n");
    assert_eq!(written, b"$1\r\nv\r\n");
    assert!(!closed);
    assert!(!client.has_partial_request());
}

#[test]
fn byte_by_byte_gives_the_same_replies() {
    let input = b"SET a 1\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\nMGET a b\r\n";
    let mut engine = Engine::default();
    let mut client = connection();
    let mut written = Vec::new();
    for byte in input {
        written.extend(exchange(&mut client, &mut engine, &[*byte]).0);
    }
    assert_eq!(written, b"+OK\r\n:2\r\n*2\r\n$1\r\n2\r\n$-1\r\n");
}

#[test]
fn quit_answers_then_closes() {
    let mut engine = Engine::default();
    let mut client = connection();
    let (written, closed) = exchange(&mut client, &mut engine, b"PING\r\nQUIT\r\nPING\r\n");
    assert_eq!(written, b"+PONG\r\n+OK\r\n");
    assert!(closed);
}

#[test]
fn a_protocol_error_is_answered_then_the_connection_closes() {
    let mut engine = Engine::default();
    let mut bad = connection();
    let mut good = connection();
    let (written, closed) = exchange(&mut bad, &mut engine, b"PING\r\n*1\r\n$1073741824\r\n");
    assert_eq!(
        written,
        b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"
    );
    assert!(closed);
    // Later input is ignored; the connection stays closed.
    let (written, closed) = exchange(&mut bad, &mut engine, b"PING\r\n");
    assert!(written.is_empty() && closed);
    // Another connection on the same engine is unaffected.
    let (written, closed) = exchange(&mut good, &mut engine, b"PING\r\n");
    assert_eq!(written, b"+PONG\r\n");
    assert!(!closed);
}

#[test]
fn garbage_gets_an_error() {
    let mut engine = Engine::default();
    let mut client = connection();
    let (written, closed) = exchange(&mut client, &mut engine, b"*1\r\n+hello\r\n");
    assert_eq!(written, b"-ERR Protocol error: expected '$', got '+'\r\n");
    assert!(closed);
}

#[test]
fn end_of_input_answers_what_is_complete_then_closes() {
    let mut engine = Engine::default();
    let mut client = connection();
    client.receive(b"PING\r\nPIN");
    client.receive_eof();
    assert_eq!(
        client.poll_output(&mut engine, 0),
        Output::Write(b"+PONG\r\n")
    );
    assert_eq!(client.poll_output(&mut engine, 0), Output::Close);
}

#[test]
fn large_pipelines_are_written_in_chunks() {
    let mut engine = Engine::default();
    let mut client = connection();
    let value = "x".repeat(1000);
    client.receive(format!("SET k {value}\r\n").as_bytes());
    client.receive(&b"GET k\r\n".repeat(200));
    let mut writes = vec![];
    while let Output::Write(bytes) = client.poll_output(&mut engine, 0) {
        assert!(bytes.len() < OUTPUT_CHUNK_BYTES + 2000);
        writes.push(bytes.len());
    }
    assert!(writes.len() > 1);
    assert_eq!(
        writes.iter().sum::<usize>(),
        5 + 200 * ("$1000\r\n".len() + 1000 + 2)
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)
    ) {
        let mut engine = Engine::default();
        let mut client = connection();
        for piece in pieces {
            let (_, closed) = exchange(&mut client, &mut engine, &piece);
            if closed {
                break;
            }
        }
    }

    #[test]
    fn command_like_bytes_never_panic(
        words in proptest::collection::vec("(SET|GET|INCR|EXPIRE|SCAN|KEYS|MSET|DEL|[a-z*?0-9\\[\\]-]{0,6}| |\r\n|\"|')", 0..40)
    ) {
        let mut engine = Engine::default();
        let mut client = connection();
        let _ = exchange(&mut client, &mut engine, words.concat().as_bytes());
    }
}
