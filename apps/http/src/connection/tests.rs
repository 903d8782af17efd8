//! The connection state machine on the host: pipelined answers in order, keep-alive and close,
//! streamed bodies, and property tests that no input panics it.
use super::*;
use crate::response::PATTERN_PERIOD;
use crate::site::{INDEX_HTML, ServerStatus};
use alloc::format;
use alloc::string::{String, ToString};
use core::cell::Cell;
use core::time::Duration;
use proptest::prelude::*;

/// A server context with fixed status figures that counts requests.
#[derive(Default)]
struct FakeServer {
    served: Cell<u64>,
}

impl ServerContext for FakeServer {
    fn status(&self) -> ServerStatus {
        ServerStatus {
            app_name: "http-test".to_string(),
            uptime: Duration::from_millis(12_345),
            requests_served: self.served.get(),
            open_connections: 3,
        }
    }

    fn request_served(&self) {
        self.served.set(self.served.get() + 1);
    }
}

/// A parsed response as the client sees it.
#[derive(Debug)]
struct ClientResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl ClientResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Everything the connection writes until it wants input or closes, with the largest write.
fn drain(connection: &mut Connection, server: &FakeServer) -> (Vec<u8>, bool, usize) {
    let mut written = Vec::new();
    let mut largest = 0;
    loop {
        match connection.poll_output(server) {
            Output::Write(bytes) => {
                largest = largest.max(bytes.len());
                written.extend_from_slice(bytes);
            }
            Output::NeedInput => return (written, false, largest),
            Output::Close => return (written, true, largest),
        }
    }
}

/// Splits `bytes` into responses; `head_only` says which requests were HEAD (no body).
fn parse_responses(mut bytes: &[u8], head_only: &[bool]) -> Vec<ClientResponse> {
    let mut responses = Vec::new();
    for &is_head in head_only {
        let head_end = bytes
            .windows(4)
            .position(|window| window == b"\r\n\r\n")
            .expect("a response head")
            + 4;
        let head = core::str::from_utf8(&bytes[..head_end]).expect("an ASCII head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().expect("a status line");
        assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
        let status = status_line[9..12].parse().expect("a status code");
        let headers: Vec<(String, String)> = lines
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line.split_once(": ").expect("a header");
                (name.to_string(), value.to_string())
            })
            .collect();
        let mut response = ClientResponse {
            status,
            headers,
            body: Vec::new(),
        };
        let length: usize = response
            .header("Content-Length")
            .expect("Content-Length")
            .parse()
            .expect("a length");
        let body_length = if is_head { 0 } else { length };
        response.body = bytes[head_end..head_end + body_length].to_vec();
        bytes = &bytes[head_end + body_length..];
        responses.push(response);
    }
    assert!(bytes.is_empty(), "{} bytes left over", bytes.len());
    responses
}

/// One request on a fresh connection: its response and whether the connection closed.
fn exchange(request: &[u8]) -> (ClientResponse, bool) {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    connection.receive(request);
    let (written, closed, _) = drain(&mut connection, &server);
    let is_head = request.starts_with(b"HEAD ");
    let mut responses = parse_responses(&written, &[is_head]);
    (responses.remove(0), closed)
}

fn get(path: &str) -> ClientResponse {
    exchange(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).0
}

#[test]
fn index_is_nginx_s_612_byte_page() {
    assert_eq!(INDEX_HTML.len(), 612);
    assert!(
        INDEX_HTML
            .starts_with(b"<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>")
    );
    assert!(INDEX_HTML.ends_with(b"</body>\n</html>\n"));
    for path in ["/", "/index.html", "/?query=1", "http://t/index.html"] {
        let response = get(path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.body, INDEX_HTML);
        assert_eq!(response.header("Content-Length"), Some("612"));
        assert_eq!(response.header("Content-Type"), Some("text/html"));
        assert_eq!(response.header("Server"), Some("libos-http"));
        assert_eq!(response.header("Connection"), Some("keep-alive"));
    }
}

#[test]
fn head_sends_get_s_headers_without_a_body() {
    for path in ["/", "/hello.txt", "/bytes/1000", "/status", "/missing"] {
        let get = exchange(format!("GET {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes()).0;
        let (head, closed) =
            exchange(format!("HEAD {path} HTTP/1.1\r\nHost: t\r\n\r\n").as_bytes());
        assert!(!closed);
        assert_eq!(head.status, get.status);
        assert_eq!(head.headers, get.headers, "{path}");
        assert!(head.body.is_empty());
        assert_eq!(
            get.header("Content-Length"),
            Some(get.body.len().to_string().as_str())
        );
    }
}

#[test]
fn hello_and_status_pages() {
    let hello = get("/hello.txt");
    assert_eq!(hello.status, 200);
    assert_eq!(hello.header("Content-Type"), Some("text/plain"));
    assert!(hello.body.starts_with(b"Hello"));
    let status = get("/status");
    assert_eq!(status.status, 200);
    let text = core::str::from_utf8(&status.body).expect("text");
    assert_eq!(
        text,
        "app: http-test\nuptime: 12.345 s\nrequests served: 1\nopen connections: 3\n"
    );
}

#[test]
fn unknown_paths_are_404_and_keep_the_connection() {
    let (response, closed) = exchange(b"GET /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_eq!(response.status, 404);
    assert!(!closed);
}

#[test]
fn other_methods_are_405_with_allow() {
    let (response, closed) = exchange(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!(response.status, 405);
    assert_eq!(response.header("Allow"), Some("GET, HEAD"));
    assert!(!closed);
}

#[test]
fn bytes_pattern_and_length() {
    for count in [0usize, 1, 250, 251, 252, 100_000] {
        let response = get(&format!("/bytes/{count}"));
        assert_eq!(response.status, 200);
        assert_eq!(
            response.header("Content-Type"),
            Some("application/octet-stream")
        );
        assert_eq!(
            response.header("Content-Length"),
            Some(count.to_string().as_str())
        );
        assert_eq!(response.body.len(), count);
        assert!(
            response
                .body
                .iter()
                .enumerate()
                .all(|(index, &byte)| byte == (index % PATTERN_PERIOD) as u8)
        );
    }
    assert_eq!(get("/bytes/abc").status, 400);
    assert_eq!(get("/bytes/").status, 400);
    assert_eq!(get("/bytes/-1").status, 400);
    assert_eq!(get("/bytes/67108864").status, 200);
    assert_eq!(get("/bytes/67108865").status, 413);
    assert_eq!(get("/bytes/99999999999999999999999").status, 413);
}

#[test]
fn a_large_body_is_streamed_in_bounded_writes() {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    connection.receive(b"GET /bytes/16777216 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    let mut total = 0usize;
    let mut writes = 0;
    let mut next_byte = 0usize;
    let mut head_seen = false;
    loop {
        match connection.poll_output(&server) {
            Output::Write(bytes) => {
                assert!(bytes.len() <= OUTPUT_CHUNK_BYTES);
                writes += 1;
                let mut body = bytes;
                if !head_seen {
                    let end = bytes
                        .windows(4)
                        .position(|w| w == b"\r\n\r\n")
                        .expect("head")
                        + 4;
                    assert!(bytes.starts_with(b"HTTP/1.1 200 OK\r\n"));
                    body = &bytes[end..];
                    head_seen = true;
                }
                // Spot-check the pattern's phase across chunk boundaries.
                if let (Some(&first), Some(&last)) = (body.first(), body.last()) {
                    assert_eq!(first, (next_byte % PATTERN_PERIOD) as u8);
                    assert_eq!(last, ((next_byte + body.len() - 1) % PATTERN_PERIOD) as u8);
                }
                next_byte += body.len();
                total += body.len();
            }
            Output::NeedInput => panic!("a close was asked for"),
            Output::Close => break,
        }
    }
    assert_eq!(total, 16 * 1024 * 1024);
    assert!(writes > 1000);
}

#[test]
fn three_pipelined_requests_are_answered_in_order() {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    connection.receive(
        b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
HEAD / HTTP/1.1\r\nHost: t\r\n\r\n\
GET /bytes/5 HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let (written, closed, largest) = drain(&mut connection, &server);
    assert!(!closed);
    // Small responses to pipelined requests go out in one write.
    assert_eq!(largest, written.len());
    let responses = parse_responses(&written, &[false, true, false]);
    assert!(responses[0].body.starts_with(b"Hello"));
    assert_eq!(responses[1].header("Content-Length"), Some("612"));
    assert!(responses[1].body.is_empty());
    assert_eq!(responses[2].body, [0, 1, 2, 3, 4]);
    assert_eq!(server.served.get(), 3);
}

#[test]
fn keep_alive_and_close() {
    let cases: [(&[u8], bool); 5] = [
        (b"GET / HTTP/1.1\r\nHost: t\r\n\r\n", false),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
            true,
        ),
        (b"GET / HTTP/1.0\r\n\r\n", true),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", false),
        (b"HEAD / HTTP/1.0\r\n\r\n", true),
    ];
    for (request, closes) in cases {
        let (response, closed) = exchange(request);
        assert_eq!(closed, closes, "{:?}", core::str::from_utf8(request));
        let expected = if closes { "close" } else { "keep-alive" };
        assert_eq!(response.header("Connection"), Some(expected));
    }
}

#[test]
fn a_request_after_connection_close_is_not_answered() {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    connection.receive(
        b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n",
    );
    let (written, closed, _) = drain(&mut connection, &server);
    assert!(closed);
    assert_eq!(parse_responses(&written, &[false]).len(), 1);
}

#[test]
fn errors_are_answered_then_the_connection_closes() {
    let cases: [(&[u8], u16); 5] = [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
            501,
        ),
        (
            b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n",
            413,
        ),
        (
            b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET / HTTP/1.1\r\nHost t\r\n\r\n",
            400,
        ),
    ];
    for (request, status) in cases {
        let server = FakeServer::default();
        let mut connection = Connection::new();
        connection.receive(request);
        let (written, closed, _) = drain(&mut connection, &server);
        assert!(closed);
        let responses = parse_responses(&written, &vec![false; server.served.get() as usize]);
        let last = responses.last().expect("a response");
        assert_eq!(last.status, status);
        assert_eq!(last.header("Connection"), Some("close"));
        // Anything more from the peer is ignored.
        connection.receive(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n");
        assert_eq!(connection.poll_output(&server), Output::Close);
    }
    let mut connection = Connection::new();
    let server = FakeServer::default();
    connection.receive(&[b'a'; crate::request::MAX_HEAD_BYTES + 1]);
    let (written, closed, _) = drain(&mut connection, &server);
    assert!(closed);
    assert_eq!(parse_responses(&written, &[false])[0].status, 431);
}

#[test]
fn waits_for_input_and_closes_at_eof() {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    assert_eq!(connection.poll_output(&server), Output::NeedInput);
    assert!(!connection.has_partial_request());
    connection.receive(b"GET / HTTP/1.1\r\n");
    assert_eq!(connection.poll_output(&server), Output::NeedInput);
    assert!(connection.has_partial_request());
    connection.receive(b"Host: t\r\n\r\n");
    let (written, closed, _) = drain(&mut connection, &server);
    assert!(!closed);
    assert_eq!(parse_responses(&written, &[false])[0].status, 200);
    assert!(!connection.has_partial_request());
    // A request cut short by the peer's close gets no answer.
    connection.receive(b"GET / HT");
    connection.receive_eof();
    assert_eq!(connection.poll_output(&server), Output::Close);
}

#[test]
fn complete_requests_before_eof_are_still_answered() {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    connection
        .receive(b"GET / HTTP/1.1\r\nHost: t\r\n\r\nGET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    connection.receive_eof();
    let (written, closed, _) = drain(&mut connection, &server);
    assert!(closed);
    assert_eq!(parse_responses(&written, &[false, false]).len(), 2);
}

/// Feeds `input` in pieces of the given sizes, draining output after each, then EOF.
fn feed_in_pieces(input: &[u8], sizes: &[usize]) -> (Vec<u8>, bool) {
    let server = FakeServer::default();
    let mut connection = Connection::new();
    let mut written = Vec::new();
    let mut rest = input;
    let mut sizes = sizes.iter().cycle();
    while !rest.is_empty() {
        let size = sizes.next().copied().unwrap_or(1).clamp(1, rest.len());
        connection.receive(&rest[..size]);
        rest = &rest[size..];
        let (bytes, closed, _) = drain(&mut connection, &server);
        written.extend_from_slice(&bytes);
        if closed {
            return (written, true);
        }
    }
    connection.receive_eof();
    let (bytes, closed, _) = drain(&mut connection, &server);
    written.extend_from_slice(&bytes);
    (written, closed)
}

#[test]
fn pipelined_requests_split_at_every_byte_give_the_same_bytes() {
    let input = b"GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n\
HEAD /status HTTP/1.1\r\nHost: t\r\n\r\n\
POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc\
GET /bytes/300 HTTP/1.0\r\n\r\n";
    let whole = feed_in_pieces(input, &[input.len()]);
    assert!(whole.1);
    for split in 1..input.len() {
        assert_eq!(
            feed_in_pieces(input, &[split, input.len()]),
            whole,
            "split at {split}"
        );
    }
    assert_eq!(feed_in_pieces(input, &[1]), whole);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_input_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..2048),
        sizes in proptest::collection::vec(1usize..64, 1..8),
    ) {
        let _ = feed_in_pieces(&input, &sizes);
    }

    #[test]
    fn near_valid_input_never_panics(
        pieces in proptest::collection::vec(
            prop_oneof![
                Just(&b"GET / HTTP/1.1\r\n"[..]),
                Just(&b"HEAD /bytes/70000 HTTP/1.0\r\n"[..]),
                Just(&b"Host: t\r\n"[..]),
                Just(&b"Content-Length: 3\r\n"[..]),
                Just(&b"Connection: close\r\n"[..]),
                Just(&b"\r\n"[..]),
                Just(&b"\n"[..]),
                Just(&b"abc"[..]),
                Just(&b" "[..]),
            ],
            0..40,
        ),
        sizes in proptest::collection::vec(1usize..32, 1..4),
    ) {
        let input: Vec<u8> = pieces.concat();
        let _ = feed_in_pieces(&input, &sizes);
    }
}
