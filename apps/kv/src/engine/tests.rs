//! Every command's replies and errors, expiry on a fake clock, SCAN's guarantee under
//! concurrent inserts, the memory budget, replaying recorded mutations, and a property test
//! against a plain `HashMap` model.

use super::*;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet};

/// Runs a command given as space-separated words.
fn run(engine: &mut Engine, now_ms: u64, command: &str) -> Reply {
    let request: Vec<Vec<u8>> = command
        .split(' ')
        .map(|word| word.as_bytes().to_vec())
        .collect();
    engine.execute(&request, now_ms).expect("a reply")
}

fn bulk(text: &str) -> Reply {
    Reply::Bulk(text.as_bytes().to_vec())
}

fn error(text: &str) -> Reply {
    Reply::Error(text.into())
}

fn bulks(list: &[&str]) -> Reply {
    Reply::Array(list.iter().map(|text| bulk(text)).collect())
}

#[test]
fn ping_and_echo() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "PING"), Reply::Simple("PONG"));
    assert_eq!(run(&mut engine, 0, "ping hi"), bulk("hi"));
    assert_eq!(
        run(&mut engine, 0, "ping a b"),
        error("ERR wrong number of arguments for 'ping' command")
    );
    assert_eq!(run(&mut engine, 0, "ECHO hello"), bulk("hello"));
    assert_eq!(
        run(&mut engine, 0, "echo"),
        error("ERR wrong number of arguments for 'echo' command")
    );
    assert_eq!(engine.execute(&[], 0), None);
}

#[test]
fn unknown_commands() {
    let mut engine = Engine::default();
    assert_eq!(
        run(&mut engine, 0, "foo a b"),
        error("ERR unknown command 'foo', with args beginning with: 'a' 'b' ")
    );
    assert_eq!(
        run(&mut engine, 0, "FOO"),
        error("ERR unknown command 'FOO', with args beginning with: ")
    );
}

#[test]
fn get_set_and_arity_errors() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "GET k"), Reply::NullBulk);
    assert_eq!(run(&mut engine, 0, "SET k v"), Reply::OK);
    assert_eq!(run(&mut engine, 0, "GET k"), bulk("v"));
    assert_eq!(
        run(&mut engine, 0, "GET"),
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        run(&mut engine, 0, "GET a b"),
        error("ERR wrong number of arguments for 'get' command")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k"),
        error("ERR wrong number of arguments for 'set' command")
    );
    assert_eq!(run(&mut engine, 0, "TYPE k"), Reply::Simple("string"));
    assert_eq!(run(&mut engine, 0, "TYPE nothing"), Reply::Simple("none"));
}

#[test]
fn set_options() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "SET k v XX"), Reply::NullBulk);
    assert_eq!(run(&mut engine, 0, "SET k v NX"), Reply::OK);
    assert_eq!(run(&mut engine, 0, "SET k w NX"), Reply::NullBulk);
    assert_eq!(run(&mut engine, 0, "SET k w XX"), Reply::OK);
    assert_eq!(run(&mut engine, 0, "SET k x GET"), bulk("w"));
    assert_eq!(run(&mut engine, 0, "SET new x GET"), Reply::NullBulk);
    assert_eq!(run(&mut engine, 0, "SET k y NX GET"), bulk("x"));
    assert_eq!(run(&mut engine, 0, "GET k"), bulk("x"));
    assert_eq!(
        run(&mut engine, 0, "SET k v NX XX"),
        error("ERR syntax error")
    );
    assert_eq!(run(&mut engine, 0, "SET k v EX"), error("ERR syntax error"));
    assert_eq!(
        run(&mut engine, 0, "SET k v bogus"),
        error("ERR syntax error")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v EX 10 PX 100"),
        error("ERR syntax error")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v EX 10 KEEPTTL"),
        error("ERR syntax error")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v EX ten"),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v EX 0"),
        error("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v PX -5"),
        error("ERR invalid expire time in 'set' command")
    );
    assert_eq!(
        run(&mut engine, 0, "SET k v EX 9223372036854775807"),
        error("ERR invalid expire time in 'set' command")
    );
}

#[test]
fn set_with_expiry_and_keepttl() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 1_000, "SET k v EX 10"), Reply::OK);
    assert_eq!(run(&mut engine, 1_000, "TTL k"), Reply::Integer(10));
    assert_eq!(run(&mut engine, 1_000, "PTTL k"), Reply::Integer(10_000));
    assert_eq!(run(&mut engine, 2_000, "SET k w KEEPTTL"), Reply::OK);
    assert_eq!(run(&mut engine, 2_000, "PTTL k"), Reply::Integer(9_000));
    assert_eq!(run(&mut engine, 2_000, "SET k v"), Reply::OK);
    assert_eq!(run(&mut engine, 2_000, "TTL k"), Reply::Integer(-1));
    assert_eq!(run(&mut engine, 2_000, "SET k v PX 1500"), Reply::OK);
    assert_eq!(run(&mut engine, 3_499, "GET k"), bulk("v"));
    assert_eq!(run(&mut engine, 3_500, "GET k"), Reply::NullBulk);
    assert_eq!(run(&mut engine, 3_500, "TTL k"), Reply::Integer(-2));
}

#[test]
fn delete_and_exists() {
    let mut engine = Engine::default();
    run(&mut engine, 0, "MSET a 1 b 2 c 3");
    assert_eq!(run(&mut engine, 0, "EXISTS a b nope a"), Reply::Integer(3));
    assert_eq!(run(&mut engine, 0, "DEL a b nope"), Reply::Integer(2));
    assert_eq!(run(&mut engine, 0, "DEL a"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXISTS a"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "DBSIZE"), Reply::Integer(1));
    assert_eq!(
        run(&mut engine, 0, "DEL"),
        error("ERR wrong number of arguments for 'del' command")
    );
}

#[test]
fn counters() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "INCR n"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "INCRBY n 10"), Reply::Integer(11));
    assert_eq!(run(&mut engine, 0, "DECR n"), Reply::Integer(10));
    assert_eq!(run(&mut engine, 0, "DECRBY n 20"), Reply::Integer(-10));
    assert_eq!(run(&mut engine, 0, "GET n"), bulk("-10"));
    let not_integer = error("ERR value is not an integer or out of range");
    assert_eq!(run(&mut engine, 0, "INCRBY n x"), not_integer);
    assert_eq!(run(&mut engine, 0, "INCRBY n +1"), not_integer);
    for bad in ["abc", " 1", "01", "+1", "1.5", "", "99999999999999999999"] {
        engine.apply(Mutation::Set {
            key: b"s".to_vec(),
            value: bad.as_bytes().to_vec(),
            expires_at_ms: None,
        });
        assert_eq!(run(&mut engine, 0, "INCR s"), not_integer, "{bad:?}");
    }
    run(&mut engine, 0, "SET big 9223372036854775807");
    assert_eq!(
        run(&mut engine, 0, "INCR big"),
        error("ERR increment or decrement would overflow")
    );
    run(&mut engine, 0, "SET small -9223372036854775808");
    assert_eq!(
        run(&mut engine, 0, "DECR small"),
        error("ERR increment or decrement would overflow")
    );
    assert_eq!(
        run(&mut engine, 0, "DECRBY x -9223372036854775808"),
        error("ERR decrement would overflow")
    );
    // A counter keeps its expiry.
    run(&mut engine, 0, "SET t 5 EX 100");
    assert_eq!(run(&mut engine, 0, "INCR t"), Reply::Integer(6));
    assert_eq!(run(&mut engine, 0, "TTL t"), Reply::Integer(100));
}

#[test]
fn parse_integer_matches_string2ll() {
    assert_eq!(parse_integer(b"0"), Some(0));
    assert_eq!(parse_integer(b"-0"), None);
    assert_eq!(parse_integer(b"-1"), Some(-1));
    assert_eq!(parse_integer(b"9223372036854775807"), Some(i64::MAX));
    assert_eq!(parse_integer(b"9223372036854775808"), None);
    assert_eq!(parse_integer(b"-9223372036854775808"), Some(i64::MIN));
    assert_eq!(parse_integer(b"-9223372036854775809"), None);
    assert_eq!(parse_integer(b"-"), None);
}

#[test]
fn expire_ttl_persist() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "EXPIRE k 10"), Reply::Integer(0));
    run(&mut engine, 0, "SET k v");
    assert_eq!(run(&mut engine, 0, "TTL k"), Reply::Integer(-1));
    assert_eq!(run(&mut engine, 0, "PERSIST k"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 10"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 4_400, "TTL k"), Reply::Integer(6));
    assert_eq!(run(&mut engine, 4_600, "TTL k"), Reply::Integer(5));
    assert_eq!(run(&mut engine, 5_000, "PERSIST k"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 50_000, "GET k"), bulk("v"));
    assert_eq!(run(&mut engine, 50_000, "PEXPIRE k 250"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 50_249, "EXISTS k"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 50_250, "EXISTS k"), Reply::Integer(0));
    // A deadline in the past deletes the key.
    run(&mut engine, 0, "SET k v");
    assert_eq!(run(&mut engine, 0, "EXPIRE k -1"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "EXISTS k"), Reply::Integer(0));
    assert_eq!(
        run(&mut engine, 0, "EXPIRE k x"),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        run(&mut engine, 0, "EXPIRE k 9223372036854775807"),
        error("ERR invalid expire time in 'expire' command")
    );
}

#[test]
fn expire_conditions() {
    let mut engine = Engine::default();
    run(&mut engine, 0, "SET k v");
    assert_eq!(run(&mut engine, 0, "EXPIRE k 10 XX"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 10 GT"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 10 NX"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 20 NX"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 5 GT"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 20 GT"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 30 LT"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "EXPIRE k 15 LT"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "TTL k"), Reply::Integer(15));
    assert_eq!(
        run(&mut engine, 0, "EXPIRE k 1 NX XX"),
        error("ERR NX and XX, GT or LT options at the same time are not compatible")
    );
    assert_eq!(
        run(&mut engine, 0, "EXPIRE k 1 GT LT"),
        error("ERR GT and LT options at the same time are not compatible")
    );
    assert_eq!(
        run(&mut engine, 0, "EXPIRE k 1 SOON"),
        error("ERR Unsupported option SOON")
    );
}

#[test]
fn active_expiry_removes_keys_nobody_reads() {
    let mut engine = Engine::default();
    for index in 0..100 {
        run(&mut engine, 0, &format!("SET short{index} v PX 10"));
        run(&mut engine, 0, &format!("SET long{index} v"));
    }
    assert_eq!(engine.store().len(), 200);
    let mut removed = 0;
    for _ in 0..20 {
        removed += engine.expire_step(10, 16);
    }
    assert_eq!(removed, 100);
    assert_eq!(run(&mut engine, 10, "DBSIZE"), Reply::Integer(100));
    assert_eq!(engine.store().keys_with_expiry(), 0);
    assert_eq!(engine.expire_step(10, 16), 0);
}

#[test]
fn mget_mset() {
    let mut engine = Engine::default();
    assert_eq!(run(&mut engine, 0, "MSET a 1 b 2"), Reply::OK);
    assert_eq!(
        run(&mut engine, 0, "MGET a nope b"),
        Reply::Array(vec![bulk("1"), Reply::NullBulk, bulk("2")])
    );
    assert_eq!(
        run(&mut engine, 0, "MSET a 1 b"),
        error("ERR wrong number of arguments for 'mset' command")
    );
    run(&mut engine, 0, "EXPIRE a 10");
    run(&mut engine, 0, "MSET a 3");
    assert_eq!(run(&mut engine, 0, "TTL a"), Reply::Integer(-1));
}

#[test]
fn keys_with_patterns() {
    let mut engine = Engine::default();
    run(&mut engine, 0, "MSET user:1 a user:2 b item:1 c");
    run(&mut engine, 0, "SET user:3 d PX 5");
    let mut sorted =
        |pattern: &str, now_ms| match run(&mut engine, now_ms, &format!("KEYS {pattern}")) {
            Reply::Array(mut keys) => {
                keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
                Reply::Array(keys)
            }
            other => other,
        };
    assert_eq!(sorted("user:*", 0), bulks(&["user:1", "user:2", "user:3"]));
    assert_eq!(sorted("user:*", 5), bulks(&["user:1", "user:2"]));
    assert_eq!(sorted("*:1", 5), bulks(&["item:1", "user:1"]));
    assert_eq!(sorted("nothing*", 5), bulks(&[]));
}

/// Runs a whole SCAN iteration with `count`, calling `between` after each batch.
fn full_scan(
    engine: &mut Engine,
    options: &str,
    mut between: impl FnMut(&mut Engine, usize),
) -> Vec<Vec<u8>> {
    let mut cursor = String::from("0");
    let mut seen = Vec::new();
    for batch in 0.. {
        let reply = run(engine, 0, &format!("SCAN {cursor}{options}"));
        let Reply::Array(parts) = reply else {
            panic!("not an array: {reply:?}")
        };
        let [Reply::Bulk(next), Reply::Array(keys)] = parts.as_slice() else {
            panic!("bad shape: {parts:?}")
        };
        for key in keys {
            let Reply::Bulk(key) = key else { panic!() };
            seen.push(key.clone());
        }
        cursor = String::from_utf8(next.clone()).unwrap();
        if cursor == "0" {
            break;
        }
        between(engine, batch);
    }
    seen
}

#[test]
fn scan_returns_every_key_once_even_with_inserts() {
    let mut engine = Engine::default();
    for index in 0..500 {
        run(&mut engine, 0, &format!("SET key{index} v"));
    }
    let seen = full_scan(&mut engine, " COUNT 7", |engine, batch| {
        for extra in 0..5 {
            run(engine, 0, &format!("SET new{batch}_{extra} v"));
        }
    });
    let unique: HashSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a key was returned twice");
    for index in 0..500 {
        assert!(
            unique.contains(format!("key{index}").as_bytes()),
            "key{index} missed"
        );
    }
}

#[test]
fn scan_options_and_errors() {
    let mut engine = Engine::default();
    for index in 0..50 {
        run(&mut engine, 0, &format!("SET a{index} v"));
        run(&mut engine, 0, &format!("SET b{index} v"));
    }
    let matched = full_scan(&mut engine, " MATCH a* COUNT 5", |_, _| {});
    assert_eq!(matched.len(), 50);
    assert!(matched.iter().all(|key| key.starts_with(b"a")));
    assert_eq!(full_scan(&mut engine, " TYPE string", |_, _| {}).len(), 100);
    assert_eq!(full_scan(&mut engine, " TYPE hash", |_, _| {}).len(), 0);
    assert_eq!(run(&mut engine, 0, "SCAN x"), error("ERR invalid cursor"));
    assert_eq!(
        run(&mut engine, 0, "SCAN 0 COUNT 0"),
        error("ERR syntax error")
    );
    assert_eq!(
        run(&mut engine, 0, "SCAN 0 COUNT x"),
        error("ERR value is not an integer or out of range")
    );
    assert_eq!(
        run(&mut engine, 0, "SCAN 0 MATCH"),
        error("ERR syntax error")
    );
    assert_eq!(
        run(&mut engine, 0, "SCAN 0 FOO bar"),
        error("ERR syntax error")
    );
    let empty = &mut Engine::default();
    assert_eq!(
        run(empty, 0, "SCAN 0"),
        Reply::Array(vec![bulk("0"), Reply::Array(vec![])])
    );
}

#[test]
fn dbsize_flushdb_select_command() {
    let mut engine = Engine::default();
    run(&mut engine, 0, "MSET a 1 b 2");
    assert_eq!(run(&mut engine, 0, "DBSIZE"), Reply::Integer(2));
    assert_eq!(run(&mut engine, 0, "FLUSHDB"), Reply::OK);
    assert_eq!(run(&mut engine, 0, "DBSIZE"), Reply::Integer(0));
    assert_eq!(run(&mut engine, 0, "FLUSHDB ASYNC"), Reply::OK);
    assert_eq!(
        run(&mut engine, 0, "FLUSHDB later"),
        error("ERR syntax error")
    );
    assert_eq!(engine.store().used_bytes(), 0);
    assert_eq!(run(&mut engine, 0, "SELECT 0"), Reply::OK);
    assert_eq!(
        run(&mut engine, 0, "SELECT 1"),
        error("ERR DB index is out of range")
    );
    assert_eq!(run(&mut engine, 0, "COMMAND DOCS"), Reply::Array(vec![]));
}

#[test]
fn info_sections() {
    let mut engine = Engine::default();
    engine.client_connected();
    run(&mut engine, 0, "SET a 1 EX 100");
    run(&mut engine, 0, "SET b 1");
    let Reply::Bulk(text) = run(&mut engine, 61_000, "INFO") else {
        panic!()
    };
    let text = String::from_utf8(text).unwrap();
    assert!(text.starts_with("# Server\r\nredis_version:"), "{text}");
    assert!(text.contains("uptime_in_seconds:61\r\n"), "{text}");
    assert!(text.contains("connected_clients:1\r\n"), "{text}");
    assert!(
        text.contains("# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n"),
        "{text}"
    );
    let Reply::Bulk(text) = run(&mut engine, 0, "INFO keyspace") else {
        panic!()
    };
    assert_eq!(text, b"# Keyspace\r\ndb0:keys=2,expires=1,avg_ttl=0\r\n");
}

#[test]
fn the_memory_budget_refuses_writes_but_not_deletes() {
    let mut engine = Engine::new(EngineConfig {
        max_memory_bytes: 1000,
        ..EngineConfig::default()
    });
    let value = "x".repeat(400);
    assert_eq!(run(&mut engine, 0, &format!("SET a {value}")), Reply::OK);
    assert_eq!(run(&mut engine, 0, &format!("SET b {value}")), Reply::OK);
    let oom = error("OOM command not allowed when used memory > 'maxmemory'.");
    assert_eq!(run(&mut engine, 0, &format!("SET c {value}")), oom);
    assert_eq!(run(&mut engine, 0, &format!("MSET c {value}")), oom);
    // Replacing a value with one the same size does not grow the keyspace.
    assert_eq!(run(&mut engine, 0, &format!("SET a {value}")), Reply::OK);
    assert_eq!(run(&mut engine, 0, "EXPIRE a 10"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, "DEL a"), Reply::Integer(1));
    assert_eq!(run(&mut engine, 0, &format!("SET c {value}")), Reply::OK);
    assert!(engine.store().used_bytes() <= 1000);
}

#[test]
fn recorded_mutations_replay_to_the_same_keyspace() {
    let mut engine = Engine::new(EngineConfig {
        record_mutations: true,
        ..EngineConfig::default()
    });
    for command in [
        "SET a 1",
        "SET b 2 EX 100",
        "INCR a",
        "MSET c 3 d 4",
        "DEL c",
        "EXPIRE d 50",
        "PERSIST b",
        "SET e 5 PX 10",
        "GET a",
        "FLUSHDB",
        "SET f 6",
        "INCRBY f 4",
        "SET g 7 EX 5",
        "SET g 8 KEEPTTL",
    ] {
        run(&mut engine, 1_000, command);
    }
    let mutations = engine.take_mutations();
    assert!(engine.take_mutations().is_empty());
    assert!(
        !mutations
            .iter()
            .any(|mutation| matches!(mutation, Mutation::Set { key, .. } if key == b"x"))
    );
    let mut replayed = Engine::default();
    for mutation in mutations {
        replayed.apply(mutation);
    }
    let everything = |engine: &Engine| {
        let mut keys = engine.store().keys(1_000, |_| true);
        keys.sort();
        keys
    };
    assert_eq!(everything(&replayed), everything(&engine));
    for key in everything(&engine) {
        let key = String::from_utf8(key).unwrap();
        for query in ["GET", "PTTL"] {
            assert_eq!(
                run(&mut replayed, 1_000, &format!("{query} {key}")),
                run(&mut engine, 1_000, &format!("{query} {key}"))
            );
        }
    }
}

/// A command of the model test.
#[derive(Debug, Clone)]
enum ModelCommand {
    Get(u8),
    Set(u8, i64),
    Delete(u8),
    Exists(u8),
    Increment(u8),
    DatabaseSize,
}

fn model_command() -> impl Strategy<Value = ModelCommand> {
    let key = 0u8..8;
    prop_oneof![
        key.clone().prop_map(ModelCommand::Get),
        (key.clone(), -5i64..5).prop_map(|(key, value)| ModelCommand::Set(key, value)),
        key.clone().prop_map(ModelCommand::Delete),
        key.clone().prop_map(ModelCommand::Exists),
        key.prop_map(ModelCommand::Increment),
        Just(ModelCommand::DatabaseSize),
    ]
}

proptest! {
    #[test]
    fn agrees_with_a_hashmap_model(commands in proptest::collection::vec(model_command(), 0..60)) {
        let mut engine = Engine::default();
        let mut model: HashMap<u8, i64> = HashMap::new();
        for command in commands {
            let (request, expected) = match command {
                ModelCommand::Get(key) => (
                    format!("GET k{key}"),
                    model.get(&key).map_or(Reply::NullBulk, |value| bulk(&value.to_string())),
                ),
                ModelCommand::Set(key, value) => {
                    model.insert(key, value);
                    (format!("SET k{key} {value}"), Reply::OK)
                }
                ModelCommand::Delete(key) => (
                    format!("DEL k{key}"),
                    Reply::Integer(i64::from(model.remove(&key).is_some())),
                ),
                ModelCommand::Exists(key) => (
                    format!("EXISTS k{key}"),
                    Reply::Integer(i64::from(model.contains_key(&key))),
                ),
                ModelCommand::Increment(key) => {
                    let value = model.entry(key).or_insert(0);
                    *value += 1;
                    (format!("INCR k{key}"), Reply::Integer(*value))
                }
                ModelCommand::DatabaseSize => {
                    ("DBSIZE".to_string(), Reply::Integer(model.len() as i64))
                }
            };
            prop_assert_eq!(run(&mut engine, 0, &request), expected, "{}", request);
        }
    }
}
