//! The request parser on the host: every status it produces, splits at every byte, pipelining,
//! and property tests that no input panics it.
use super::*;
use alloc::format;
use alloc::string::ToString;
use proptest::prelude::*;

fn parse(bytes: &[u8]) -> Result<Parse, RequestError> {
    RequestParser::new().parse(bytes)
}

fn complete(bytes: &[u8]) -> (Request, usize) {
    match parse(bytes) {
        Ok(Parse::Complete(request, consumed)) => (request, consumed),
        other => panic!("expected a complete request, got {other:?}"),
    }
}

fn error_status(bytes: &[u8]) -> u16 {
    match parse(bytes) {
        Err(error) => error.status().code(),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn simple_get() {
    let bytes = b"GET /index.html HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n";
    let (request, consumed) = complete(bytes);
    assert_eq!(consumed, bytes.len());
    assert_eq!(request.method, Method::Get);
    assert_eq!(request.target, "/index.html");
    assert_eq!(request.version, Version::Http11);
    assert_eq!(request.header("HOST"), Some(&b"example"[..]));
    assert_eq!(request.header("accept"), Some(&b"*/*"[..]));
    assert!(request.keep_alive);
    assert!(request.body.is_empty());
}

#[test]
fn head_and_other_methods() {
    let (head, _) = complete(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(head.method, Method::Head);
    let (post, _) = complete(b"POST / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(post.method, Method::Other("POST".to_string()));
    // Methods are case-sensitive.
    let (lower, _) = complete(b"get / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(lower.method, Method::Other("get".to_string()));
}

#[test]
fn incomplete_until_the_empty_line() {
    assert_eq!(parse(b""), Ok(Parse::Incomplete));
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\n"),
        Ok(Parse::Incomplete)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r"),
        Ok(Parse::Incomplete)
    );
    assert_eq!(parse(b"\r\n\r\n"), Ok(Parse::Incomplete));
}

#[test]
fn bare_lf_and_leading_empty_lines_are_accepted() {
    let bytes = b"\r\n\r\nGET /a HTTP/1.0\nHost: x\n\n";
    let (request, consumed) = complete(bytes);
    assert_eq!(consumed, bytes.len());
    assert_eq!(request.target, "/a");
    assert_eq!(request.version, Version::Http10);
}

#[test]
fn body_framed_by_content_length() {
    let bytes = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloGET";
    let (request, consumed) = complete(bytes);
    assert_eq!(request.body, b"hello");
    assert_eq!(&bytes[consumed..], b"GET");
    assert_eq!(
        parse(b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhell"),
        Ok(Parse::Incomplete)
    );
}

#[test]
fn malformed_syntax_is_400() {
    for bytes in [
        &b"GET /\r\nHost: a\r\n\r\n"[..],
        b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
        b" GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: a\r\n\r\n",
        b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTX/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.10\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\n: a\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
    ] {
        assert_eq!(
            error_status(bytes),
            400,
            "{:?}",
            core::str::from_utf8(bytes)
        );
    }
}

#[test]
fn host_is_required_once_in_http_1_1() {
    assert_eq!(parse(b"GET / HTTP/1.1\r\n\r\n"), Err(RequestError::BadHost));
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
        Err(RequestError::BadHost)
    );
    assert!(matches!(
        parse(b"GET / HTTP/1.0\r\n\r\n"),
        Ok(Parse::Complete(..))
    ));
}

#[test]
fn bad_content_lengths() {
    let with_length = |value: &str| {
        let text = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
        parse(text.as_bytes())
    };
    assert_eq!(with_length("abc"), Err(RequestError::InvalidContentLength));
    assert_eq!(with_length(""), Err(RequestError::InvalidContentLength));
    assert_eq!(with_length("-1"), Err(RequestError::InvalidContentLength));
    assert_eq!(with_length("+1"), Err(RequestError::InvalidContentLength));
    assert_eq!(with_length("1 2"), Err(RequestError::InvalidContentLength));
    assert_eq!(with_length("5, 5"), Err(RequestError::InvalidContentLength));
    assert_eq!(
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nx"),
        Err(RequestError::DuplicateContentLength)
    );
    assert_eq!(
        parse(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"),
        Err(RequestError::DuplicateContentLength)
    );
    assert_eq!(RequestError::InvalidContentLength.status().code(), 400);
    assert_eq!(RequestError::DuplicateContentLength.status().code(), 400);
}

#[test]
fn oversized_body_is_413_before_it_arrives() {
    let limit = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n");
    assert_eq!(parse(limit.as_bytes()), Ok(Parse::Incomplete));
    let over = format!(
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    assert_eq!(error_status(over.as_bytes()), 413);
    let huge = "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n";
    assert_eq!(error_status(huge.as_bytes()), 413);
}

#[test]
fn oversized_head_is_431() {
    // Exactly at the limit is fine.
    let start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    let end = "\r\n\r\n";
    let filler = "y".repeat(MAX_HEAD_BYTES - start.len() - end.len());
    let at_limit = format!("{start}{filler}{end}");
    assert_eq!(at_limit.len(), MAX_HEAD_BYTES);
    assert!(matches!(
        parse(at_limit.as_bytes()),
        Ok(Parse::Complete(..))
    ));
    let over = format!("{start}{filler}y{end}");
    assert_eq!(error_status(over.as_bytes()), 431);
    // Without the end of the head: 431 as soon as the limit is passed, not a wait.
    let endless = format!("{start}{}", "y".repeat(MAX_HEAD_BYTES));
    assert_eq!(error_status(endless.as_bytes()), 431);
    assert_eq!(error_status(&[b'\n'; MAX_HEAD_BYTES]), 431);
    let long_target = format!("GET /{} HTTP/1.1\r\n", "a".repeat(MAX_HEAD_BYTES));
    assert_eq!(error_status(long_target.as_bytes()), 431);
}

#[test]
fn too_many_headers_is_431() {
    let mut text = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for index in 0..MAX_HEADERS {
        text.push_str(&format!("X-{index}: v\r\n"));
    }
    text.push_str("\r\n");
    assert_eq!(parse(text.as_bytes()), Err(RequestError::TooManyHeaders));
    assert_eq!(RequestError::TooManyHeaders.status().code(), 431);
}

#[test]
fn unknown_versions_are_505() {
    assert_eq!(error_status(b"GET / HTTP/2.0\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(error_status(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"), 505);
    assert_eq!(error_status(b"GET / HTTP/0.9\r\n\r\n"), 505);
}

#[test]
fn transfer_encoding_is_501() {
    assert_eq!(
        error_status(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        501
    );
}

#[test]
fn keep_alive_decisions() {
    let keep_alive = |text: &str| complete(text.as_bytes()).0.keep_alive;
    assert!(keep_alive("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    assert!(!keep_alive(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
    ));
    assert!(!keep_alive(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n"
    ));
    assert!(!keep_alive(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: x\r\nconnection: close\r\n\r\n"
    ));
    assert!(keep_alive(
        "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n"
    ));
    assert!(!keep_alive("GET / HTTP/1.0\r\n\r\n"));
    assert!(keep_alive(
        "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"
    ));
    assert!(!keep_alive(
        "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
    ));
}

#[test]
fn three_pipelined_requests_parse_in_turn() {
    let bytes = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n\
POST /c HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz";
    let mut parser = RequestParser::new();
    let mut rest = &bytes[..];
    let mut seen = Vec::new();
    while !rest.is_empty() {
        match parser.parse(rest) {
            Ok(Parse::Complete(request, consumed)) => {
                seen.push((request.method, request.target, request.keep_alive));
                rest = &rest[consumed..];
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            (Method::Get, "/a".to_string(), true),
            (Method::Head, "/b".to_string(), true),
            (Method::Other("POST".to_string()), "/c".to_string(), false),
        ]
    );
}

/// Feeds `bytes` as two pieces, split at `split`, through one parser, and returns what the
/// parser makes of the whole.
fn parse_in_two_pieces(bytes: &[u8], split: usize) -> Result<Parse, RequestError> {
    let mut parser = RequestParser::new();
    match parser.parse(&bytes[..split]) {
        Ok(Parse::Incomplete) => parser.parse(bytes),
        // The first piece may already hold the whole request (or a definite error).
        settled => settled,
    }
}

#[test]
fn every_split_gives_the_same_result() {
    let cases: [&[u8]; 4] = [
        b"POST /upload?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n\r\nbody",
        b"GET / HTTP/1.0\nConnection: keep-alive\n\n",
        b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab",
        b"\r\nGET / HTTP/3.0\r\nHost: h\r\n\r\n",
    ];
    for bytes in cases {
        let whole = parse(bytes);
        assert!(!matches!(whole, Ok(Parse::Incomplete)));
        for split in 0..=bytes.len() {
            assert_eq!(parse_in_two_pieces(bytes, split), whole, "split at {split}");
        }
        // And byte by byte.
        let mut parser = RequestParser::new();
        let mut result = Ok(Parse::Incomplete);
        for end in 1..=bytes.len() {
            result = parser.parse(&bytes[..end]);
            if !matches!(result, Ok(Parse::Incomplete)) {
                break;
            }
        }
        assert_eq!(result, whole);
    }
}

#[test]
fn a_shorter_buffer_restarts_the_parser() {
    let mut parser = RequestParser::new();
    assert_eq!(
        parser.parse(b"GET / HTTP/1.1\r\nHost: a\r\n"),
        Ok(Parse::Incomplete)
    );
    assert!(parser.has_partial_request());
    assert!(matches!(
        parser.parse(b"GET / HTTP/1.0\r\n\r\n"),
        Ok(Parse::Complete(..))
    ));
    assert!(!parser.has_partial_request());
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
}

fn header() -> impl Strategy<Value = Header> {
    // Names that frame or route the request are generated apart.
    let name = token().prop_filter("reserved name", |name| {
        !["host", "content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|reserved| name.eq_ignore_ascii_case(reserved))
    });
    // Visible characters, inner spaces and tabs, and obs-text; no surrounding whitespace.
    let value = prop_oneof![
        Just(Vec::new()),
        proptest::collection::vec(
            prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff, Just(b' '), Just(b'\t')],
            0..20
        )
        .prop_map(|mut value| {
            value.insert(0, b'v');
            value.push(b'v');
            value
        }),
    ];
    (name, value).prop_map(|(name, value)| Header { name, value })
}

prop_compose! {
    fn valid_request()(
        method in prop_oneof![Just(Method::Get), Just(Method::Head), token().prop_map(|name| Method::from_token(&name))],
        target in "/[!-~]{0,40}",
        version in prop_oneof![Just(Version::Http10), Just(Version::Http11)],
        headers in proptest::collection::vec(header(), 0..8),
        body in proptest::collection::vec(any::<u8>(), 0..64),
        close in any::<bool>(),
        bare_lf in any::<bool>(),
    ) -> (Request, Vec<u8>) {
        let newline: &[u8] = if bare_lf { b"\n" } else { b"\r\n" };
        let mut all_headers = Vec::new();
        if version == Version::Http11 {
            all_headers.push(Header { name: "Host".to_string(), value: b"example.org".to_vec() });
        }
        all_headers.extend(headers);
        if !body.is_empty() {
            all_headers.push(Header { name: "Content-Length".to_string(), value: body.len().to_string().into_bytes() });
        }
        let connection: &[u8] = match (close, version) {
            (true, _) => b"close",
            (false, Version::Http10) => b"keep-alive",
            (false, Version::Http11) => b"",
        };
        if !connection.is_empty() {
            all_headers.push(Header { name: "Connection".to_string(), value: connection.to_vec() });
        }
        let mut wire = format!("{} {target} {}", method.as_str(), version.as_str()).into_bytes();
        wire.extend_from_slice(newline);
        for header in &all_headers {
            wire.extend_from_slice(header.name.as_bytes());
            wire.extend_from_slice(b": ");
            wire.extend_from_slice(&header.value);
            wire.extend_from_slice(newline);
        }
        wire.extend_from_slice(newline);
        wire.extend_from_slice(&body);
        let request = Request { method, target, version, headers: all_headers, body, keep_alive: !close };
        (request, wire)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn valid_requests_round_trip((request, wire) in valid_request(), split in any::<prop::sample::Index>()) {
        let mut followed = wire.clone();
        followed.extend_from_slice(b"GET /next HTTP/1.0\r\n\r\n");
        prop_assert_eq!(parse(&followed), Ok(Parse::Complete(request.clone(), wire.len())));
        let split = split.index(wire.len() + 1);
        prop_assert_eq!(parse_in_two_pieces(&wire, split), Ok(Parse::Complete(request, wire.len())));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), split in any::<prop::sample::Index>()) {
        let whole = parse(&bytes);
        if let Ok(Parse::Complete(_, consumed)) = &whole {
            prop_assert!(*consumed <= bytes.len());
        }
        let split = split.index(bytes.len() + 1);
        let _ = parse_in_two_pieces(&bytes, split);
    }

    #[test]
    fn mutated_requests_never_panic((_, mut wire) in valid_request(), flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        for (index, byte) in flips {
            let index = index.index(wire.len());
            wire[index] = byte;
        }
        let _ = parse(&wire);
    }
}
