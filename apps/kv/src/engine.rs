//! The commands: a request's words in, a [`Reply`] out, with Redis's reply shapes and error
//! texts. Time is an argument (`now_ms`, unix milliseconds: expiry deadlines are absolute, so
//! they mean the same after a restart), so tests drive expiry with a fake clock.
//!
//! Supported: `PING [msg]`, `ECHO`, `GET`, `SET key value [NX|XX] [GET] [EX s|PX ms|KEEPTTL]`,
//! `DEL`, `EXISTS`, `INCR`, `DECR`, `INCRBY`, `DECRBY`, `EXPIRE`/`PEXPIRE key t
//! [NX|XX|GT|LT]`, `TTL`, `PTTL`, `PERSIST`, `TYPE`, `KEYS pattern`, `SCAN cursor [MATCH p]
//! [COUNT n] [TYPE t]`, `MGET`, `MSET`, `DBSIZE`, `FLUSHDB [ASYNC|SYNC]`, `INFO [section...]`,
//! `SELECT 0`, and `COMMAND` (an empty list, enough for `redis-cli`). `QUIT` is the
//! connection's ([`crate::connection`]). `EXAT`/`PXAT`/`EXPIREAT` are not offered yet.
//!
//! Every change to the keyspace is a [`Mutation`] applied through one place
//! ([`Engine::apply`]); with [`EngineConfig::record_mutations`] the engine also keeps them for
//! the caller to take ([`Engine::take_mutations`]), the hook for a write-ahead log. While the
//! log cannot take writes, the server has the engine refuse them ([`Engine::refuse_writes`]:
//! Redis's `MISCONF`) and go on serving reads.
//!
//! Writes that would grow the keyspace past [`EngineConfig::max_memory_bytes`] (as the store
//! counts bytes) are refused with Redis's `OOM` error; deletes, expiries and flushes are not.

use crate::glob::glob_match;
use crate::resp::Reply;
use crate::store::{Mutation, Store};
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

/// The version `INFO` reports, so clients that check it are content.
pub const REDIS_VERSION: &str = "7.2.0";

/// How the engine is set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// The most bytes the keyspace may hold (see [`crate::store::ENTRY_OVERHEAD_BYTES`]).
    pub max_memory_bytes: usize,
    /// Keep every [`Mutation`] for [`Engine::take_mutations`].
    pub record_mutations: bool,
    /// The port `INFO` reports.
    pub tcp_port: u16,
    /// When the server started, on the `now_ms` clock (for `INFO`'s uptime).
    pub started_at_ms: u64,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            max_memory_bytes: 64 * 1024 * 1024,
            record_mutations: false,
            tcp_port: 6379,
            started_at_ms: 0,
        }
    }
}

/// The keyspace and the commands on it.
#[derive(Debug, Default)]
pub struct Engine {
    config: EngineConfig,
    store: Store,
    recorded: Vec<Mutation>,
    /// The error every write gets while set.
    write_refusal: Option<String>,
    connected_clients: usize,
    commands_processed: u64,
}

/// `-ERR value is not an integer or out of range`
fn not_an_integer() -> Reply {
    Reply::error("value is not an integer or out of range")
}

fn syntax_error() -> Reply {
    Reply::error("syntax error")
}

fn out_of_memory() -> Reply {
    Reply::Error(String::from(
        "OOM command not allowed when used memory > 'maxmemory'.",
    ))
}

/// Parses a signed 64-bit integer exactly as Redis's `string2ll` does: an optional `-`, no
/// `+`, no spaces, no leading zeros.
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    if bytes == b"0" {
        return Some(0);
    }
    let (negative, digits) = match bytes.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, bytes),
    };
    if digits.is_empty() || digits[0] == b'0' || digits.len() > 19 {
        return None;
    }
    let mut magnitude: u64 = 0;
    for &digit in digits {
        if !digit.is_ascii_digit() {
            return None;
        }
        magnitude = magnitude
            .checked_mul(10)?
            .checked_add(u64::from(digit - b'0'))?;
    }
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

fn integer_argument(bytes: &[u8]) -> Result<i64, Reply> {
    parse_integer(bytes).ok_or_else(not_an_integer)
}

/// Lowercased copy of a command or option name, for matching and for error texts.
fn lowercase(bytes: &[u8]) -> Vec<u8> {
    bytes.to_ascii_lowercase()
}

/// Whether a command may change the keyspace: what is refused while writes are.
fn is_write_command(name: &[u8]) -> bool {
    matches!(
        name,
        b"set"
            | b"del"
            | b"incr"
            | b"decr"
            | b"incrby"
            | b"decrby"
            | b"expire"
            | b"pexpire"
            | b"persist"
            | b"mset"
            | b"flushdb"
    )
}

/// The required argument count of each command, counting the name, as Redis gives it:
/// `n` exactly `n`, `-n` at least `n`. `None` for unknown commands.
fn arity(name: &[u8]) -> Option<i32> {
    Some(match name {
        b"ping" | b"flushdb" | b"info" | b"command" => -1,
        b"echo" | b"get" | b"incr" | b"decr" | b"ttl" | b"pttl" | b"persist" | b"keys"
        | b"select" | b"type" => 2,
        b"set" | b"expire" | b"pexpire" | b"mset" => -3,
        b"del" | b"exists" | b"scan" | b"mget" => -2,
        b"incrby" | b"decrby" => 3,
        b"dbsize" => 1,
        _ => return None,
    })
}

/// Redis's reply to an unknown command: the name and the first arguments, quoted.
fn unknown_command(request: &[Vec<u8>]) -> Reply {
    let mut arguments = String::new();
    for argument in &request[1..] {
        if arguments.len() >= 128 {
            break;
        }
        let room = 128 - arguments.len();
        let text = String::from_utf8_lossy(&argument[..argument.len().min(room)]);
        let _ = write!(arguments, "'{text}' ");
    }
    let name = &request[0];
    let name = String::from_utf8_lossy(&name[..name.len().min(128)]);
    Reply::error(format!(
        "unknown command '{name}', with args beginning with: {arguments}"
    ))
}

/// The options of one `SET`.
#[derive(Debug, Default)]
struct SetOptions {
    only_if_missing: bool,
    only_if_present: bool,
    return_old_value: bool,
    keep_ttl: bool,
    /// The expiry requested, made absolute.
    expires_at_ms: Option<u64>,
}

/// Which condition an `EXPIRE` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ExpireCondition {
    Always,
    OnlyWithoutExpiry,
    OnlyWithExpiry,
    OnlyIfGreater,
    OnlyIfLess,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config,
            ..Engine::default()
        }
    }

    /// An engine serving `store` (a recovered keyspace).
    pub fn with_store(config: EngineConfig, store: Store) -> Engine {
        Engine {
            config,
            store,
            ..Engine::default()
        }
    }

    /// Refuses every write with `reason` (the whole error text, as `MISCONF ...`) while it is
    /// `Some`; reads go on.
    pub fn refuse_writes(&mut self, reason: Option<String>) {
        self.write_refusal = reason;
    }

    /// The keyspace (read-only; changes go through [`Engine::apply`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Counts a client in (`INFO`'s `connected_clients`).
    pub fn client_connected(&mut self) {
        self.connected_clients += 1;
    }

    /// Counts a client out.
    pub fn client_disconnected(&mut self) {
        self.connected_clients = self.connected_clients.saturating_sub(1);
    }

    /// How many mutations are recorded and not yet taken.
    pub fn recorded_mutations(&self) -> usize {
        self.recorded.len()
    }

    /// The mutations applied since the last call, if the engine records them.
    pub fn take_mutations(&mut self) -> Vec<Mutation> {
        core::mem::take(&mut self.recorded)
    }

    /// Applies a change to the keyspace, recording it if configured to. Also how a replay
    /// feeds a log back in.
    pub fn apply(&mut self, mutation: Mutation) {
        self.store.apply(&mutation);
        if self.config.record_mutations {
            self.recorded.push(mutation);
        }
    }

    /// Removes expired keys: one bounded step of the active expiry. Returns how many.
    pub fn expire_step(&mut self, now_ms: u64, max_entries: usize) -> usize {
        self.store.expire_step(now_ms, max_entries)
    }

    /// Whether growing the keyspace by `bytes` would pass the memory budget.
    fn over_budget(&self, bytes: usize) -> bool {
        self.store.used_bytes().saturating_add(bytes) > self.config.max_memory_bytes
    }

    /// Runs one request (its words, the name first) and returns the reply. An empty request
    /// gets `None` (Redis ignores it).
    pub fn execute(&mut self, request: &[Vec<u8>], now_ms: u64) -> Option<Reply> {
        let name = lowercase(request.first()?);
        self.commands_processed += 1;
        let Some(arity) = arity(&name) else {
            return Some(unknown_command(request));
        };
        let count = request.len() as i32;
        if (arity > 0 && count != arity) || (arity < 0 && count < -arity) {
            return Some(Reply::error(format!(
                "wrong number of arguments for '{}' command",
                String::from_utf8_lossy(&name)
            )));
        }
        if let Some(reason) = &self.write_refusal
            && is_write_command(&name)
        {
            return Some(Reply::Error(reason.clone()));
        }
        let arguments = &request[1..];
        Some(match name.as_slice() {
            b"ping" => match arguments {
                [] => Reply::Simple("PONG"),
                [message] => Reply::Bulk(message.clone()),
                _ => Reply::error("wrong number of arguments for 'ping' command"),
            },
            b"echo" => Reply::Bulk(arguments[0].clone()),
            b"get" => self.get(&arguments[0], now_ms),
            b"set" => self.set(arguments, now_ms),
            b"del" => self.delete(arguments, now_ms),
            b"exists" => Reply::Integer(
                arguments
                    .iter()
                    .filter(|key| self.store.get(key, now_ms).is_some())
                    .count() as i64,
            ),
            b"incr" => self.increment(&arguments[0], 1, now_ms),
            b"decr" => self.increment(&arguments[0], -1, now_ms),
            b"incrby" => match integer_argument(&arguments[1]) {
                Ok(by) => self.increment(&arguments[0], by, now_ms),
                Err(reply) => reply,
            },
            b"decrby" => match integer_argument(&arguments[1]) {
                Ok(i64::MIN) => Reply::error("decrement would overflow"),
                Ok(by) => self.increment(&arguments[0], -by, now_ms),
                Err(reply) => reply,
            },
            b"expire" => self.expire(arguments, 1000, "expire", now_ms),
            b"pexpire" => self.expire(arguments, 1, "pexpire", now_ms),
            b"ttl" => self.time_to_live(&arguments[0], now_ms, true),
            b"pttl" => self.time_to_live(&arguments[0], now_ms, false),
            b"persist" => self.persist(&arguments[0], now_ms),
            b"type" => match self.store.get(&arguments[0], now_ms) {
                Some(_) => Reply::Simple("string"),
                None => Reply::Simple("none"),
            },
            b"keys" => Reply::Array(
                self.store
                    .keys(now_ms, |key| glob_match(&arguments[0], key))
                    .into_iter()
                    .map(Reply::Bulk)
                    .collect(),
            ),
            b"scan" => self.scan(arguments, now_ms),
            b"mget" => Reply::Array(arguments.iter().map(|key| self.get(key, now_ms)).collect()),
            b"mset" => self.set_many(arguments),
            b"dbsize" => Reply::Integer(self.store.len() as i64),
            b"flushdb" => match arguments {
                [] => self.flush(),
                [mode] if matches!(lowercase(mode).as_slice(), b"async" | b"sync") => self.flush(),
                _ => syntax_error(),
            },
            b"info" => Reply::Bulk(self.info(arguments, now_ms).into_bytes()),
            b"select" => match parse_integer(&arguments[0]) {
                Some(0) => Reply::OK,
                Some(_) => Reply::error("DB index is out of range"),
                None => not_an_integer(),
            },
            b"command" => Reply::Array(Vec::new()),
            _ => unknown_command(request),
        })
    }

    fn get(&mut self, key: &[u8], now_ms: u64) -> Reply {
        match self.store.get(key, now_ms) {
            Some(entry) => Reply::Bulk(entry.value.clone()),
            None => Reply::NullBulk,
        }
    }

    fn set(&mut self, arguments: &[Vec<u8>], now_ms: u64) -> Reply {
        let options = match parse_set_options(&arguments[2..], now_ms) {
            Ok(options) => options,
            Err(reply) => return reply,
        };
        let (key, value) = (&arguments[0], &arguments[1]);
        let existing = self.store.get(key, now_ms).cloned();
        let old_reply = || match &existing {
            Some(entry) => Reply::Bulk(entry.value.clone()),
            None => Reply::NullBulk,
        };
        let blocked = (options.only_if_missing && existing.is_some())
            || (options.only_if_present && existing.is_none());
        if blocked {
            return if options.return_old_value {
                old_reply()
            } else {
                Reply::NullBulk
            };
        }
        if self.over_budget(self.store.growth_if_set(key, value)) {
            return out_of_memory();
        }
        let expires_at_ms = if options.keep_ttl {
            existing.as_ref().and_then(|entry| entry.expires_at_ms)
        } else {
            options.expires_at_ms
        };
        let reply = if options.return_old_value {
            old_reply()
        } else {
            Reply::OK
        };
        self.apply(Mutation::Set {
            key: key.clone(),
            value: value.clone(),
            expires_at_ms,
        });
        reply
    }

    fn set_many(&mut self, arguments: &[Vec<u8>]) -> Reply {
        if arguments.len() % 2 != 0 {
            return Reply::error("wrong number of arguments for 'mset' command");
        }
        let growth = arguments
            .as_chunks::<2>()
            .0
            .iter()
            .map(|[key, value]| self.store.growth_if_set(key, value))
            .fold(0usize, usize::saturating_add);
        if self.over_budget(growth) {
            return out_of_memory();
        }
        for [key, value] in arguments.as_chunks::<2>().0 {
            self.apply(Mutation::Set {
                key: key.clone(),
                value: value.clone(),
                expires_at_ms: None,
            });
        }
        Reply::OK
    }

    fn delete(&mut self, keys: &[Vec<u8>], now_ms: u64) -> Reply {
        let mut deleted = 0;
        for key in keys {
            if self.store.get(key, now_ms).is_some() {
                self.apply(Mutation::Delete { key: key.clone() });
                deleted += 1;
            }
        }
        Reply::Integer(deleted)
    }

    fn increment(&mut self, key: &[u8], by: i64, now_ms: u64) -> Reply {
        let (current, expires_at_ms) = match self.store.get(key, now_ms) {
            Some(entry) => match parse_integer(&entry.value) {
                Some(value) => (value, entry.expires_at_ms),
                None => return not_an_integer(),
            },
            None => (0, None),
        };
        let Some(updated) = current.checked_add(by) else {
            return Reply::error("increment or decrement would overflow");
        };
        let value = format!("{updated}").into_bytes();
        if self.over_budget(self.store.growth_if_set(key, &value)) {
            return out_of_memory();
        }
        self.apply(Mutation::Set {
            key: key.to_vec(),
            value,
            expires_at_ms,
        });
        Reply::Integer(updated)
    }

    /// `EXPIRE` (`unit_ms` 1000) and `PEXPIRE` (1).
    fn expire(&mut self, arguments: &[Vec<u8>], unit_ms: i64, command: &str, now_ms: u64) -> Reply {
        let key = &arguments[0];
        let amount = match integer_argument(&arguments[1]) {
            Ok(amount) => amount,
            Err(reply) => return reply,
        };
        let mut condition = ExpireCondition::Always;
        for option in &arguments[2..] {
            let wanted = match lowercase(option).as_slice() {
                b"nx" => ExpireCondition::OnlyWithoutExpiry,
                b"xx" => ExpireCondition::OnlyWithExpiry,
                b"gt" => ExpireCondition::OnlyIfGreater,
                b"lt" => ExpireCondition::OnlyIfLess,
                _ => {
                    return Reply::error(format!(
                        "Unsupported option {}",
                        String::from_utf8_lossy(option)
                    ));
                }
            };
            if condition != ExpireCondition::Always && condition != wanted {
                let greater_and_less = matches!(
                    (condition, wanted),
                    (ExpireCondition::OnlyIfGreater, ExpireCondition::OnlyIfLess)
                        | (ExpireCondition::OnlyIfLess, ExpireCondition::OnlyIfGreater)
                );
                return Reply::error(if greater_and_less {
                    "GT and LT options at the same time are not compatible"
                } else {
                    "NX and XX, GT or LT options at the same time are not compatible"
                });
            }
            condition = wanted;
        }
        let deadline = amount
            .checked_mul(unit_ms)
            .and_then(|offset| offset.checked_add(now_ms as i64));
        let Some(deadline) = deadline else {
            return Reply::error(format!("invalid expire time in '{command}' command"));
        };
        let Some(entry) = self.store.get(key, now_ms) else {
            return Reply::Integer(0);
        };
        // A key without an expiry counts as expiring never: later than any deadline.
        let allowed = match (condition, entry.expires_at_ms) {
            (ExpireCondition::Always, _) => true,
            (ExpireCondition::OnlyWithoutExpiry, current) => current.is_none(),
            (ExpireCondition::OnlyWithExpiry, current) => current.is_some(),
            (ExpireCondition::OnlyIfGreater, None) => false,
            (ExpireCondition::OnlyIfGreater, Some(current)) => deadline > current as i64,
            (ExpireCondition::OnlyIfLess, None) => true,
            (ExpireCondition::OnlyIfLess, Some(current)) => deadline < (current as i64),
        };
        if !allowed {
            return Reply::Integer(0);
        }
        if deadline <= now_ms as i64 {
            self.apply(Mutation::Delete { key: key.clone() });
        } else {
            self.apply(Mutation::SetExpiry {
                key: key.clone(),
                expires_at_ms: Some(deadline as u64),
            });
        }
        Reply::Integer(1)
    }

    fn time_to_live(&mut self, key: &[u8], now_ms: u64, in_seconds: bool) -> Reply {
        match self.store.get(key, now_ms) {
            None => Reply::Integer(-2),
            Some(entry) => match entry.expires_at_ms {
                None => Reply::Integer(-1),
                Some(deadline) => {
                    let remaining_ms = deadline.saturating_sub(now_ms);
                    Reply::Integer(if in_seconds {
                        remaining_ms.saturating_add(500) / 1000
                    } else {
                        remaining_ms
                    } as i64)
                }
            },
        }
    }

    fn persist(&mut self, key: &[u8], now_ms: u64) -> Reply {
        match self.store.get(key, now_ms) {
            Some(entry) if entry.expires_at_ms.is_some() => {
                self.apply(Mutation::SetExpiry {
                    key: key.to_vec(),
                    expires_at_ms: None,
                });
                Reply::Integer(1)
            }
            _ => Reply::Integer(0),
        }
    }

    fn scan(&mut self, arguments: &[Vec<u8>], now_ms: u64) -> Reply {
        let cursor = match parse_cursor(&arguments[0]) {
            Some(cursor) => cursor,
            None => return Reply::error("invalid cursor"),
        };
        let mut pattern: Option<&[u8]> = None;
        let mut count = 10usize;
        let mut only_strings = true;
        let mut options = arguments[1..].chunks(2);
        for option in options.by_ref() {
            let [name, value] = option else {
                return syntax_error();
            };
            match lowercase(name).as_slice() {
                b"match" => pattern = Some(value),
                b"count" => match parse_integer(value) {
                    Some(wanted) if wanted >= 1 => count = wanted as usize,
                    Some(_) => return syntax_error(),
                    None => return not_an_integer(),
                },
                b"type" => only_strings = lowercase(value) == b"string",
                _ => return syntax_error(),
            }
        }
        let batch = self.store.scan(cursor, count, now_ms, |key| {
            only_strings && pattern.is_none_or(|pattern| glob_match(pattern, key))
        });
        Reply::Array(vec![
            Reply::Bulk(format!("{}", batch.next_cursor).into_bytes()),
            Reply::Array(batch.keys.into_iter().map(Reply::Bulk).collect()),
        ])
    }

    fn flush(&mut self) -> Reply {
        self.apply(Mutation::Flush);
        Reply::OK
    }

    /// `INFO`: the `server`, `clients`, `memory`, `stats` and `keyspace` sections.
    fn info(&self, arguments: &[Vec<u8>], now_ms: u64) -> String {
        let wanted = |section: &[u8]| {
            arguments.is_empty()
                || arguments.iter().any(|argument| {
                    let argument = lowercase(argument);
                    argument == section
                        || matches!(argument.as_slice(), b"all" | b"default" | b"everything")
                })
        };
        let mut text = String::new();
        let mut section = |title: &str, body: String| {
            if !text.is_empty() {
                text.push_str("\r\n");
            }
            let _ = write!(text, "# {title}\r\n{body}");
        };
        if wanted(b"server") {
            section(
                "Server",
                format!(
                    "redis_version:{REDIS_VERSION}\r\nredis_mode:standalone\r\nos:libos\r\n\
                     arch_bits:64\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n",
                    self.config.tcp_port,
                    now_ms.saturating_sub(self.config.started_at_ms) / 1000
                ),
            );
        }
        if wanted(b"clients") {
            section(
                "Clients",
                format!("connected_clients:{}\r\n", self.connected_clients),
            );
        }
        if wanted(b"memory") {
            section(
                "Memory",
                format!(
                    "used_memory:{}\r\nmaxmemory:{}\r\nmaxmemory_policy:noeviction\r\n",
                    self.store.used_bytes(),
                    self.config.max_memory_bytes
                ),
            );
        }
        if wanted(b"stats") {
            section(
                "Stats",
                format!("total_commands_processed:{}\r\n", self.commands_processed),
            );
        }
        if wanted(b"keyspace") {
            let body = if self.store.is_empty() {
                String::new()
            } else {
                format!(
                    "db0:keys={},expires={},avg_ttl=0\r\n",
                    self.store.len(),
                    self.store.keys_with_expiry()
                )
            };
            section("Keyspace", body);
        }
        text
    }
}

/// A `SCAN` cursor: an unsigned decimal.
fn parse_cursor(bytes: &[u8]) -> Option<u64> {
    if bytes.is_empty() || bytes.len() > 20 || !bytes.iter().all(u8::is_ascii_digit) {
        return None;
    }
    core::str::from_utf8(bytes).ok()?.parse().ok()
}

fn parse_set_options(options: &[Vec<u8>], now_ms: u64) -> Result<SetOptions, Reply> {
    let mut parsed = SetOptions::default();
    let mut has_expiry = false;
    let mut position = 0;
    while position < options.len() {
        let option = lowercase(&options[position]);
        let next = options.get(position + 1);
        match option.as_slice() {
            b"nx" if !parsed.only_if_present => parsed.only_if_missing = true,
            b"xx" if !parsed.only_if_missing => parsed.only_if_present = true,
            b"get" => parsed.return_old_value = true,
            b"keepttl" if !has_expiry => parsed.keep_ttl = true,
            b"ex" | b"px" if !has_expiry && !parsed.keep_ttl && next.is_some() => {
                let amount = next.map_or(Ok(0), |next| integer_argument(next))?;
                let unit_ms: i64 = if option == b"ex" { 1000 } else { 1 };
                let invalid = || Reply::error("invalid expire time in 'set' command");
                if amount <= 0 {
                    return Err(invalid());
                }
                let deadline = amount
                    .checked_mul(unit_ms)
                    .and_then(|offset| offset.checked_add(now_ms as i64))
                    .ok_or_else(invalid)?;
                parsed.expires_at_ms = Some(deadline as u64);
                has_expiry = true;
                position += 1;
            }
            _ => return Err(syntax_error()),
        }
        position += 1;
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests;
