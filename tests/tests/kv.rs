//! The kv app (RESP2, durable on its disk: every acknowledged write flushed) against Debian's
//! own Redis clients: `redis-cli` checks each command's reply, `redis-benchmark` pipelines 50
//! clients through it, a client sending garbage is answered and closed while the others go
//! on, and after QEMU is killed the keys are there on the next boot.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;
use system_tests::*;

const WAIT: Duration = Duration::from_secs(90);

fn cli(port: u16, args: &[&str]) -> String {
    let output = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned()
}

#[test]
fn redis_clients_get_redis_answers_and_garbage_harms_no_one() {
    let disk = TestDisk::new("kv", "redis_clients_get_redis_answers");
    let mut image = boot_networked_with("kv", Firmware::Bios, &disk.options());
    image.wait_for_serial("kv: listening", WAIT);
    assert!(image.serial().contains("(GroupCommit)"), "kv runs durably");
    let port = image.host_port("kv", Protocol::Tcp, 6379);
    let expect = |args: &[&str], reply: &str| assert_eq!(cli(port, args), reply, "{args:?}");
    expect(&["ping"], "PONG");
    expect(&["echo", "hello there"], "hello there");
    expect(&["set", "a", "1"], "OK");
    expect(&["get", "a"], "1");
    expect(&["get", "missing"], "");
    expect(&["set", "a", "2", "nx"], "");
    expect(&["set", "a", "3", "xx"], "OK");
    expect(&["incr", "n"], "1");
    expect(&["incrby", "n", "41"], "42");
    expect(&["decr", "n"], "41");
    expect(&["incr", "a"], "4");
    expect(&["set", "s", "text"], "OK");
    expect(
        &["incr", "s"],
        "ERR value is not an integer or out of range",
    );
    expect(&["set", "t", "v", "ex", "100"], "OK");
    let ttl: i64 = cli(port, &["ttl", "t"]).parse().unwrap();
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    expect(&["persist", "t"], "1");
    expect(&["ttl", "t"], "-1");
    expect(&["expire", "t", "100"], "1");
    expect(&["ttl", "nothing"], "-2");
    expect(&["mset", "k1", "v1", "k2", "v2"], "OK");
    expect(&["mget", "k1", "k2", "k3"], "v1\nv2");
    expect(&["exists", "k1", "k2", "k3"], "2");
    let mut keys: Vec<String> = cli(port, &["keys", "k*"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    assert_eq!(keys, ["k1", "k2"]);
    expect(&["del", "k1", "k3"], "1");
    expect(&["dbsize"], "5");
    assert!(cli(port, &["info", "server"]).contains("redis_version:"));
    expect(
        &["nosuchcommand"],
        "ERR unknown command 'nosuchcommand', with args beginning with:",
    );
    // A 1 GiB bulk length is refused at once and that client closed; others are unaffected.
    let mut garbage = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    garbage
        .write_all(b"*2\r\n$3\r\nSET\r\n$1073741824\r\n")
        .unwrap();
    let mut reply = Vec::new();
    garbage.read_to_end(&mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("-ERR Protocol error"), "{reply}");
    expect(&["ping"], "PONG");
    // 50 clients, pipelines of 16, 20 000 requests per test.
    let bench = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-t",
            "set,get,incr,mset",
            "-n",
            "20000",
            "-P",
            "16",
            "-c",
            "50",
            "-q",
        ])
        .output()
        .expect("redis-benchmark runs");
    let text = String::from_utf8_lossy(&bench.stdout);
    println!("{text}");
    assert!(bench.status.success(), "{bench:?}");
    for test in ["SET", "GET", "INCR", "MSET"] {
        assert!(
            // Progress lines end in carriage returns; the final figure follows the last.
            text.split(['\r', '\n'])
                .map(str::trim)
                .any(|line| line.starts_with(test) && line.contains("requests per second")),
            "redis-benchmark finished {test}: {text}"
        );
    }
    assert!(!text.contains("ERR"), "{text}");
    expect(&["get", "a"], "4");
    let output = image.stop();
    assert!(!output.serial.contains("PANIC"));
    // Killed, booted again on its disk: what was acknowledged is there, expiry included.
    let mut again = boot_networked_with("kv", Firmware::Bios, &disk.options());
    again.wait_for_serial("kv: listening", WAIT);
    let port = again.host_port("kv", Protocol::Tcp, 6379);
    let expect = |args: &[&str], reply: &str| assert_eq!(cli(port, args), reply, "{args:?}");
    expect(&["get", "a"], "4");
    expect(&["get", "n"], "41");
    expect(&["mget", "k1", "k2"], "\nv2");
    expect(&["ttl", "s"], "-1");
    let ttl: i64 = cli(port, &["ttl", "t"]).parse().unwrap();
    assert!((1..=100).contains(&ttl), "ttl {ttl} after a reboot");
    assert!(!again.stop().serial.contains("PANIC"));
}

/// One RESP command on `stream`, and the reply's first line.
fn ask(stream: &mut TcpStream, parts: &[&str]) -> Option<String> {
    let mut bytes = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        bytes.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    stream.write_all(&bytes).ok()?;
    let mut reply = Vec::new();
    let mut byte = [0u8];
    while !reply.ends_with(b"\r\n") {
        stream.read_exact(&mut byte).ok()?;
        reply.push(byte[0]);
    }
    Some(String::from_utf8_lossy(&reply).trim_end().to_owned())
}

#[test]
fn a_thousand_clients_at_once_each_get_their_own_durable_key() {
    const CLIENTS: usize = 1000;
    let disk = TestDisk::new("kv-many", "a_thousand_clients_at_once");
    let mut image = boot_networked_with("kv-many", Firmware::Bios, &disk.options());
    image.wait_for_serial("kv: listening", WAIT);
    let port = image.host_port("kv", Protocol::Tcp, 6379);
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut open: Vec<TcpStream> = Vec::with_capacity(CLIENTS);
    while open.len() < CLIENTS {
        let index = open.len();
        let Ok(mut stream) = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))) else {
            continue;
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        // A connection the guest refused (a burst past the listener's backlog) is opened again.
        match ask(
            &mut stream,
            &["SET", &format!("client:{index}"), &index.to_string()],
        ) {
            Some(reply) => {
                assert_eq!(reply, "+OK", "client {index}");
                open.push(stream);
            }
            None => assert!(
                std::time::Instant::now() < deadline,
                "only {index} of {CLIENTS} clients could connect"
            ),
        }
    }
    // All open at once: each still answers, with its own key.
    for (index, stream) in open.iter_mut().enumerate() {
        assert_eq!(
            ask(stream, &["GET", &format!("client:{index}")]).as_deref(),
            Some(format!("${}", index.to_string().len()).as_str()),
            "client {index}"
        );
    }
    assert_eq!(cli(port, &["dbsize"]), CLIENTS.to_string());
    drop(open);
    assert!(!image.stop().serial.contains("PANIC"));
}
