//! The RESP2 parser (framing, inline commands, limits, every split point of a pipelined
//! buffer) and the reply encoder.

use super::*;
use alloc::vec;
use proptest::prelude::*;

fn words(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|word| word.as_bytes().to_vec()).collect()
}

/// Feeds `input` in pieces of `split` bytes (the last may be shorter) as a connection would,
/// and returns the requests parsed, or the first error.
fn parse_in_pieces(input: &[u8], split: usize) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    let mut parser = RequestParser::new(ParserLimits::default());
    let mut buffer = Vec::new();
    let mut requests = Vec::new();
    for piece in input.chunks(split.max(1)) {
        buffer.extend_from_slice(piece);
        while let Parse::Complete(request, consumed) = parser.parse(&buffer)? {
            requests.push(request);
            buffer.drain(..consumed);
        }
    }
    Ok(requests)
}

fn parse_whole(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
    parse_in_pieces(input, input.len())
}

const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n\
    PING\r\n\
    *2\r\n$3\r\nGET\r\n$1\r\nk\r\n\
    *1\r\n$0\r\n\r\n\
    echo \"a b\" 'c\\'d'\n\
    *0\r\n";

fn pipeline_requests() -> Vec<Vec<Vec<u8>>> {
    vec![
        words(&["SET", "k", "hello"]),
        words(&["PING"]),
        words(&["GET", "k"]),
        words(&[""]),
        words(&["echo", "a b", "c'd"]),
        vec![],
    ]
}

#[test]
fn parses_a_pipeline_whole() {
    assert_eq!(parse_whole(PIPELINE).unwrap(), pipeline_requests());
}

#[test]
fn every_split_point_gives_the_same_requests() {
    for split in 1..=PIPELINE.len() {
        assert_eq!(
            parse_in_pieces(PIPELINE, split).unwrap(),
            pipeline_requests(),
            "pieces of {split}"
        );
    }
    // And every single cut into two pieces.
    for cut in 0..=PIPELINE.len() {
        let mut parser = RequestParser::new(ParserLimits::default());
        let mut buffer = PIPELINE[..cut].to_vec();
        let mut requests = Vec::new();
        for rest in [&PIPELINE[cut..], &[][..]] {
            while let Parse::Complete(request, consumed) = parser.parse(&buffer).unwrap() {
                requests.push(request);
                buffer.drain(..consumed);
            }
            buffer.extend_from_slice(rest);
        }
        assert_eq!(requests, pipeline_requests(), "cut at {cut}");
    }
}

#[test]
fn binary_values_pass_through() {
    let requests = parse_whole(b"*2\r\n$3\r\nGET\r\n$4\r\n\r\n\0\xff\r\n").unwrap();
    assert_eq!(
        requests,
        vec![vec![b"GET".to_vec(), b"\r\n\0\xff".to_vec()]]
    );
}

#[test]
fn inline_commands() {
    assert_eq!(parse_whole(b"PING\r\n").unwrap(), vec![words(&["PING"])]);
    assert_eq!(parse_whole(b"PING\n").unwrap(), vec![words(&["PING"])]);
    assert_eq!(
        parse_whole(b"  set  k   v \r\n").unwrap(),
        vec![words(&["set", "k", "v"])]
    );
    assert_eq!(parse_whole(b"\r\n").unwrap(), vec![Vec::<Vec<u8>>::new()]);
    assert_eq!(
        parse_whole(b"set k \"\\x41\\n\\\"\"\r\n").unwrap(),
        vec![vec![b"set".to_vec(), b"k".to_vec(), b"A\n\"".to_vec()]]
    );
    assert_eq!(
        parse_whole(b"set k \"\"\r\n").unwrap(),
        vec![words(&["set", "k", ""])]
    );
}

#[test]
fn inline_quote_errors() {
    assert_eq!(
        parse_whole(b"set k \"abc\r\n"),
        Err(ProtocolError::UnbalancedQuotes)
    );
    assert_eq!(
        parse_whole(b"set k \"abc\"x\r\n"),
        Err(ProtocolError::UnbalancedQuotes)
    );
    assert_eq!(
        parse_whole(b"set k 'abc\r\n"),
        Err(ProtocolError::UnbalancedQuotes)
    );
}

#[test]
fn incomplete_requests_wait() {
    let mut parser = RequestParser::new(ParserLimits::default());
    assert_eq!(parser.parse(b""), Ok(Parse::Incomplete));
    assert!(!parser.has_partial_request());
    assert_eq!(
        parser.parse(b"*2\r\n$3\r\nGET\r\n$1\r"),
        Ok(Parse::Incomplete)
    );
    assert!(parser.has_partial_request());
}

#[test]
fn a_one_gibibyte_bulk_is_refused_at_once() {
    let mut parser = RequestParser::new(ParserLimits::default());
    assert_eq!(
        parser.parse(b"*2\r\n$3\r\nSET\r\n$1073741824\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    // The same with Redis's own 512 MiB limit.
    let mut parser = RequestParser::new(ParserLimits {
        max_bulk_bytes: 512 * 1024 * 1024,
        ..ParserLimits::default()
    });
    assert_eq!(
        parser.parse(b"*1\r\n$1073741824\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
}

#[test]
fn limits_are_enforced() {
    let limits = ParserLimits {
        max_bulk_bytes: 10,
        max_array_elements: 3,
        max_request_bytes: 15,
        max_line_bytes: 20,
    };
    let parse = |input: &[u8]| RequestParser::new(limits).parse(input);
    assert!(matches!(
        parse(b"*1\r\n$10\r\n0123456789\r\n"),
        Ok(Parse::Complete(..))
    ));
    assert_eq!(
        parse(b"*1\r\n$11\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(parse(b"*4\r\n"), Err(ProtocolError::InvalidArrayLength));
    assert_eq!(
        parse(b"*2\r\n$10\r\n0123456789\r\n$6\r\n"),
        Err(ProtocolError::RequestTooBig)
    );
    assert_eq!(parse(&[b'x'; 21]), Err(ProtocolError::InlineTooBig));
    assert_eq!(
        parse(b"*1\r\n$123456789012345678901234567890123"),
        Err(ProtocolError::BulkHeaderTooBig)
    );
    assert_eq!(
        parse(b"*123456789012345678901234567890123"),
        Err(ProtocolError::ArrayHeaderTooBig)
    );
}

#[test]
fn framing_errors() {
    let parse = |input: &[u8]| RequestParser::new(ParserLimits::default()).parse(input);
    assert_eq!(parse(b"*x\r\n"), Err(ProtocolError::InvalidArrayLength));
    assert_eq!(
        parse(b"*1\r\n:1\r\n"),
        Err(ProtocolError::ExpectedBulk(b':'))
    );
    assert_eq!(
        parse(b"*1\r\n$x\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(
        parse(b"*1\r\n$-1\r\n"),
        Err(ProtocolError::InvalidBulkLength)
    );
    assert_eq!(
        parse(b"*1\r\n$1\r\nab\r\n"),
        Err(ProtocolError::MissingBulkTerminator)
    );
    assert_eq!(parse(b"*-1\r\n"), Ok(Parse::Complete(vec![], 5)));
}

#[test]
fn error_texts_follow_redis() {
    assert_eq!(
        alloc::format!("{}", ProtocolError::ExpectedBulk(b'x')),
        "expected '$', got 'x'"
    );
    assert_eq!(
        alloc::format!("{}", ProtocolError::InvalidBulkLength),
        "invalid bulk length"
    );
    assert_eq!(
        alloc::format!("{}", ProtocolError::InvalidArrayLength),
        "invalid multibulk length"
    );
}

fn encoded(reply: &Reply) -> Vec<u8> {
    let mut out = Vec::new();
    reply.encode(&mut out);
    out
}

#[test]
fn encodes_replies() {
    assert_eq!(encoded(&Reply::OK), b"+OK\r\n");
    assert_eq!(encoded(&Reply::error("boom")), b"-ERR boom\r\n");
    assert_eq!(
        encoded(&Reply::Error("ERR a\r\nb".into())),
        b"-ERR a  b\r\n"
    );
    assert_eq!(encoded(&Reply::Integer(0)), b":0\r\n");
    assert_eq!(encoded(&Reply::Integer(-42)), b":-42\r\n");
    assert_eq!(
        encoded(&Reply::Integer(i64::MIN)),
        b":-9223372036854775808\r\n"
    );
    assert_eq!(encoded(&Reply::Bulk(b"hi".to_vec())), b"$2\r\nhi\r\n");
    assert_eq!(encoded(&Reply::Bulk(vec![])), b"$0\r\n\r\n");
    assert_eq!(encoded(&Reply::NullBulk), b"$-1\r\n");
    assert_eq!(encoded(&Reply::NullArray), b"*-1\r\n");
    assert_eq!(
        encoded(&Reply::Array(vec![Reply::Integer(1), Reply::NullBulk])),
        b"*2\r\n:1\r\n$-1\r\n"
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..200), split in 1usize..20) {
        let _ = parse_in_pieces(&input, split);
    }

    #[test]
    fn encoded_requests_parse_back(request in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6), split in 1usize..30) {
        let mut input = Vec::new();
        Reply::Array(request.iter().cloned().map(Reply::Bulk).collect()).encode(&mut input);
        prop_assert_eq!(parse_in_pieces(&input, split).unwrap(), vec![request]);
    }
}
