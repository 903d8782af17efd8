//! The encoding: round trips of headers, records and frames; logs cut at every byte (a torn
//! tail, never corruption); damage before the end reported by name; snapshots that are
//! incomplete refused; and property tests that no bytes make a decoder panic.

use super::*;
use alloc::vec;
use proptest::prelude::*;

const SALT: u64 = 0x5eed_5a17;

fn set(key: &str, value: &str, expires_at_ms: Option<u64>) -> Mutation {
    Mutation::Set {
        key: key.as_bytes().to_vec(),
        value: value.as_bytes().to_vec(),
        expires_at_ms,
    }
}

fn sample_mutations() -> Vec<Mutation> {
    vec![
        set("a", "1", None),
        set("b", "two", Some(1_700_000_000_123)),
        Mutation::Delete { key: b"a".to_vec() },
        Mutation::SetExpiry {
            key: b"b".to_vec(),
            expires_at_ms: Some(u64::MAX),
        },
        Mutation::SetExpiry {
            key: b"b".to_vec(),
            expires_at_ms: None,
        },
        Mutation::Flush,
        set("", "", None),
        set("big", &"x".repeat(300), Some(0)),
    ]
}

/// A log of `batches`, one frame each.
fn log_bytes(batches: &[Vec<Mutation>], salt: u64) -> Vec<u8> {
    let mut bytes = FileHeader {
        kind: FileKind::Log,
        generation: 7,
        salt,
    }
    .encode()
    .to_vec();
    let mut frame = FrameBuilder::new();
    for (sequence, batch) in batches.iter().enumerate() {
        for mutation in batch {
            frame.push_mutation(mutation);
        }
        bytes.extend_from_slice(frame.seal(sequence as u64, salt));
        frame.clear();
    }
    bytes
}

fn scan(bytes: &[u8]) -> (Vec<Mutation>, LogScan) {
    let mut applied = Vec::new();
    let scan = scan_log(bytes, |mutation| applied.push(mutation)).expect("a good header");
    (applied, scan)
}

fn three_batches() -> Vec<Vec<Mutation>> {
    vec![
        vec![set("a", "1", None), set("b", "2", Some(99))],
        vec![Mutation::Delete { key: b"a".to_vec() }],
        vec![Mutation::Flush, set("c", &"v".repeat(100), None)],
    ]
}

#[test]
fn file_header_round_trip_and_errors() {
    let header = FileHeader {
        kind: FileKind::Snapshot,
        generation: 0x1234,
        salt: 42,
    };
    let bytes = header.encode();
    assert_eq!(FileHeader::decode(&bytes), Ok(header));
    assert_eq!(FileHeader::decode(&bytes[..31]), Err(HeaderError::TooShort));
    let mut bad_magic = bytes;
    bad_magic[0] ^= 1;
    assert_eq!(FileHeader::decode(&bad_magic), Err(HeaderError::BadMagic));
    let mut flipped = bytes;
    flipped[13] ^= 1;
    assert_eq!(FileHeader::decode(&flipped), Err(HeaderError::BadChecksum));
}

#[test]
fn a_newer_format_version_is_refused_by_name() {
    let mut bytes = FileHeader {
        kind: FileKind::Log,
        generation: 1,
        salt: 1,
    }
    .encode();
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    let checksum = crc32c(&[&bytes[..28]]);
    bytes[28..32].copy_from_slice(&checksum.to_le_bytes());
    assert_eq!(
        FileHeader::decode(&bytes),
        Err(HeaderError::UnsupportedVersion(2))
    );
}

#[test]
fn every_mutation_kind_round_trips_through_a_frame() {
    let mutations = sample_mutations();
    let mut frame = FrameBuilder::new();
    for mutation in &mutations {
        frame.push_mutation(mutation);
    }
    assert_eq!(frame.records(), mutations.len());
    let bytes = frame.seal(3, SALT).to_vec();
    let read = read_frame(&bytes, 0, SALT).expect("a good frame");
    assert_eq!(read.sequence, 3);
    assert_eq!(read.end, bytes.len());
    let expected: Vec<Record> = mutations.into_iter().map(Record::Mutation).collect();
    assert_eq!(decode_records(read.body), Ok(expected));
    // Another file's salt does not read it.
    assert_eq!(
        read_frame(&bytes, 0, SALT + 1),
        Err(FrameError::BadHeaderChecksum)
    );
}

#[test]
fn a_whole_log_replays_in_order() {
    let batches = three_batches();
    let (applied, scan) = scan(&log_bytes(&batches, SALT));
    assert_eq!(applied, batches.concat());
    assert_eq!(scan.frames, 3);
    assert_eq!(scan.mutations, 5);
    assert_eq!(scan.end, LogEnd::Clean);
}

#[test]
fn a_log_cut_at_any_byte_keeps_its_whole_frames_and_reports_a_torn_tail() {
    let batches = three_batches();
    let bytes = log_bytes(&batches, SALT);
    let mut frame_ends = vec![FILE_HEADER_BYTES];
    let mut offset = FILE_HEADER_BYTES;
    while offset < bytes.len() {
        offset = read_frame(&bytes, offset, SALT).unwrap().end;
        frame_ends.push(offset);
    }
    for cut in FILE_HEADER_BYTES..=bytes.len() {
        let (applied, scan) = scan(&bytes[..cut]);
        let whole_frames = frame_ends.iter().filter(|&&end| end <= cut).count() - 1;
        assert_eq!(scan.frames, whole_frames as u64, "cut at {cut}");
        assert_eq!(applied, batches[..whole_frames].concat(), "cut at {cut}");
        let last_end = frame_ends[whole_frames];
        if cut == last_end {
            assert_eq!(scan.end, LogEnd::Clean);
        } else {
            assert_eq!(
                scan.end,
                LogEnd::TornTail {
                    offset: last_end,
                    bytes: cut - last_end
                },
                "cut at {cut}"
            );
        }
    }
}

#[test]
fn a_final_frame_with_garbage_where_blocks_were_not_written_is_a_torn_tail() {
    let batches = three_batches();
    let bytes = log_bytes(&batches, SALT);
    let last_start = bytes.len() - {
        let mut frame = FrameBuilder::new();
        for mutation in &batches[2] {
            frame.push_mutation(mutation);
        }
        frame.frame_len()
    };
    for garbage in [0x00, 0xa5, 0xff] {
        // The header is garbage, the body made it.
        let mut torn = bytes.clone();
        torn[last_start..last_start + 16].fill(garbage);
        assert_eq!(
            scan(&torn).1.end,
            LogEnd::TornTail {
                offset: last_start,
                bytes: bytes.len() - last_start
            }
        );
        // The header made it, part of the body is garbage.
        let mut torn = bytes.clone();
        torn[bytes.len() - 10..].fill(garbage);
        assert!(matches!(scan(&torn).1.end, LogEnd::TornTail { .. }));
        // The file grew but no block of the append was written.
        let mut torn = bytes[..last_start].to_vec();
        torn.resize(bytes.len(), garbage);
        assert!(matches!(scan(&torn).1.end, LogEnd::TornTail { .. }));
    }
}

#[test]
fn damage_before_the_end_is_corruption_and_keeps_what_came_before() {
    let batches = three_batches();
    let bytes = log_bytes(&batches, SALT);
    let second = read_frame(&bytes, FILE_HEADER_BYTES, SALT).unwrap().end;
    let third = read_frame(&bytes, second, SALT).unwrap().end;
    // A flipped bit in the second frame's body.
    let mut damaged = bytes.clone();
    damaged[third - 1] ^= 0x10;
    let (applied, scan_result) = scan(&damaged);
    assert_eq!(applied, batches[0]);
    assert_eq!(
        scan_result.end,
        LogEnd::Corrupt {
            offset: second,
            error: LogCorruption::BadFrame {
                error: FrameError::BadBodyChecksum,
                next_good_frame: third
            }
        }
    );
    // A flipped bit in the second frame's length: its end is unknown, the third still found.
    let mut damaged = bytes.clone();
    damaged[second + 1] ^= 0x40;
    assert_eq!(
        scan(&damaged).1.end,
        LogEnd::Corrupt {
            offset: second,
            error: LogCorruption::BadFrame {
                error: FrameError::BadHeaderChecksum,
                next_good_frame: third
            }
        }
    );
}

#[test]
fn frames_out_of_sequence_are_corruption() {
    let batches = three_batches();
    let mut bytes = log_bytes(&batches[..1], SALT);
    let mut frame = FrameBuilder::new();
    frame.push_mutation(&Mutation::Flush);
    bytes.extend_from_slice(frame.seal(5, SALT));
    let (applied, scan) = scan(&bytes);
    assert_eq!(applied, batches[0]);
    assert!(matches!(
        scan.end,
        LogEnd::Corrupt {
            error: LogCorruption::OutOfSequence {
                expected: 1,
                found: 5
            },
            ..
        }
    ));
}

#[test]
fn a_value_holding_a_frame_cannot_pass_for_one_in_a_torn_tail() {
    // A client stores a value that is itself a well-formed frame (it cannot know the salt).
    let mut forged = FrameBuilder::new();
    forged.push_mutation(&Mutation::Flush);
    let forged = forged.seal(1, 0xbad).to_vec();
    let value = String::from_utf8_lossy(&forged).into_owned();
    let mut bytes = log_bytes(&[vec![set("k", "v", None)]], SALT);
    let mut last = FrameBuilder::new();
    last.push_mutation(&Mutation::Set {
        key: b"evil".to_vec(),
        value: forged.clone(),
        expires_at_ms: None,
    });
    let start = bytes.len();
    bytes.extend_from_slice(last.seal(1, SALT));
    // The final append's header did not reach the disk.
    bytes[start..start + 16].fill(0);
    assert!(!value.is_empty());
    assert!(matches!(scan(&bytes).1.end, LogEnd::TornTail { .. }));
}

fn snapshot_bytes(entries: &[Mutation], frame_bytes: usize) -> Vec<u8> {
    let mut bytes = FileHeader {
        kind: FileKind::Snapshot,
        generation: 3,
        salt: SALT,
    }
    .encode()
    .to_vec();
    let mut frame = FrameBuilder::new();
    let mut sequence = 0;
    for entry in entries {
        frame.push_mutation(entry);
        if frame.frame_len() >= frame_bytes {
            bytes.extend_from_slice(frame.seal(sequence, SALT));
            frame.clear();
            sequence += 1;
        }
    }
    frame.push_snapshot_end(entries.len() as u64);
    bytes.extend_from_slice(frame.seal(sequence, SALT));
    bytes
}

#[test]
fn snapshots_round_trip_and_are_refused_unless_whole() {
    let entries: Vec<Mutation> = (0..50)
        .map(|i| set(&format!("key{i}"), &format!("value{i}"), Some(i)))
        .collect();
    let bytes = snapshot_bytes(&entries, 64);
    let mut applied = Vec::new();
    let (header, count) = scan_snapshot(&bytes, |mutation| applied.push(mutation)).unwrap();
    assert_eq!(header.generation, 3);
    assert_eq!(count, 50);
    assert_eq!(applied, entries);
    for cut in 0..bytes.len() {
        assert!(
            scan_snapshot(&bytes[..cut], |_| {}).is_err(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(matches!(
        scan_snapshot(&longer, |_| {}),
        Err(SnapshotError::TrailingBytes { .. })
    ));
    let log = log_bytes(&three_batches(), SALT);
    assert_eq!(
        scan_snapshot(&log, |_| {}),
        Err(SnapshotError::NotASnapshot)
    );
}

#[test]
fn an_empty_snapshot_is_just_its_end() {
    let bytes = snapshot_bytes(&[], 64);
    assert_eq!(scan_snapshot(&bytes, |_| {}).map(|(_, n)| n), Ok(0));
}

#[test]
fn a_snapshot_end_in_a_log_is_corruption() {
    let mut bytes = log_bytes(&[], SALT);
    let mut frame = FrameBuilder::new();
    frame.push_snapshot_end(0);
    bytes.extend_from_slice(frame.seal(0, SALT));
    assert!(matches!(
        scan(&bytes).1.end,
        LogEnd::Corrupt {
            error: LogCorruption::MisplacedRecord,
            ..
        }
    ));
}

fn arbitrary_mutation() -> impl Strategy<Value = Mutation> {
    let bytes = || proptest::collection::vec(any::<u8>(), 0..40);
    prop_oneof![
        (bytes(), bytes(), proptest::option::of(any::<u64>())).prop_map(
            |(key, value, expires_at_ms)| Mutation::Set {
                key,
                value,
                expires_at_ms
            }
        ),
        bytes().prop_map(|key| Mutation::Delete { key }),
        (bytes(), proptest::option::of(any::<u64>()))
            .prop_map(|(key, expires_at_ms)| Mutation::SetExpiry { key, expires_at_ms }),
        Just(Mutation::Flush),
    ]
}

proptest! {
    #[test]
    fn mutations_round_trip(mutations in proptest::collection::vec(arbitrary_mutation(), 0..20)) {
        let mut out = Vec::new();
        for mutation in &mutations {
            encode_mutation(mutation, &mut out);
        }
        let expected: Vec<Record> = mutations.into_iter().map(Record::Mutation).collect();
        prop_assert_eq!(decode_records(&out), Ok(expected));
    }

    #[test]
    fn no_bytes_make_a_decoder_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = decode_records(&bytes);
        let _ = FileHeader::decode(&bytes);
        let _ = read_frame(&bytes, 0, SALT);
        let _ = scan_log(&bytes, |_| {});
        let _ = scan_snapshot(&bytes, |_| {});
        // Behind a good header, so the frame readers see the bytes too.
        for kind in [FileKind::Log, FileKind::Snapshot] {
            let mut file = FileHeader { kind, generation: 1, salt: SALT }.encode().to_vec();
            file.extend_from_slice(&bytes);
            let _ = scan_log(&file, |_| {});
            let _ = scan_snapshot(&file, |_| {});
        }
    }

    #[test]
    fn damaged_logs_never_panic_and_keep_a_prefix(
        batches in proptest::collection::vec(proptest::collection::vec(arbitrary_mutation(), 1..4), 1..5),
        position in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let bytes = log_bytes(&batches, SALT);
        let mut damaged = bytes.clone();
        let at = FILE_HEADER_BYTES + position.index(bytes.len() - FILE_HEADER_BYTES);
        damaged[at] ^= flip;
        let (applied, scan) = scan(&damaged);
        // Whatever the damage, what was applied is a prefix of the batches, frame by frame.
        let frames = scan.frames as usize;
        prop_assert!(frames < batches.len());
        prop_assert_eq!(applied, batches[..frames].concat());
        prop_assert!(scan.end != LogEnd::Clean);
    }
}
