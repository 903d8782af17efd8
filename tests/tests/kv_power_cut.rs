//! Power cuts under load: clients write numbered keys to the kv app and record every write the
//! app acknowledged; QEMU is killed with SIGKILL at a random moment (no shutdown, nothing
//! flushed by anyone but the app); the image boots again on the same disk and every
//! acknowledged key must be there with its value. Ten cuts per run (`KV_POWER_CUTS=N` for
//! more); the seed is printed, and `KV_POWER_CUT_SEED=S` replays a run.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use system_tests::*;

const WAIT: Duration = Duration::from_secs(120);
const WRITERS: usize = 3;
/// SETs each writer sends before reading their replies.
const PIPELINE: usize = 4;

/// xorshift64*: enough randomness for cut points, and replayable from its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn command(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        out.extend_from_slice(format!("${}\r\n{part}\r\n", part.len()).as_bytes());
    }
    out
}

fn connect(port: u16) -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let reader = BufReader::new(stream.try_clone()?);
    Ok((stream, reader))
}

fn line(reader: &mut BufReader<TcpStream>) -> std::io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end().to_owned())
}

/// Writes `writer`'s keys until the connection breaks (the power cut), recording each SET the
/// app answered `+OK`.
fn write_until_cut(
    port: u16,
    writer: usize,
    first: u64,
    seed: u64,
    acked: &Mutex<Vec<(String, String)>>,
) {
    let Ok((mut stream, mut reader)) = connect(port) else {
        return;
    };
    let mut next = first;
    loop {
        let batch: Vec<(String, String)> = (0..PIPELINE as u64)
            .map(|i| {
                let n = next + i;
                (format!("w{writer}:k{n}"), format!("v{n}-{seed:x}"))
            })
            .collect();
        next += PIPELINE as u64;
        let mut bytes = Vec::new();
        for (key, value) in &batch {
            bytes.extend(command(&["SET", key, value]));
        }
        if stream.write_all(&bytes).is_err() {
            return;
        }
        for pair in batch {
            match line(&mut reader) {
                Ok(reply) if reply == "+OK" => acked.lock().unwrap().push(pair),
                Ok(reply) => panic!("SET {} answered {reply:?}", pair.0),
                Err(_) => return,
            }
        }
    }
}

/// Checks every acknowledged key with GETs, pipelined 64 at a time.
fn verify(port: u16, acked: &[(String, String)]) {
    let (mut stream, mut reader) = connect(port).expect("the kv app accepts after a reboot");
    for chunk in acked.chunks(64) {
        let mut bytes = Vec::new();
        for (key, _) in chunk {
            bytes.extend(command(&["GET", key]));
        }
        stream.write_all(&bytes).unwrap();
        for (key, value) in chunk {
            let header = line(&mut reader).unwrap();
            assert_eq!(
                header,
                format!("${}", value.len()),
                "acknowledged key {key} lost or changed"
            );
            assert_eq!(line(&mut reader).unwrap(), *value, "key {key}");
        }
    }
}

#[test]
fn every_acknowledged_write_survives_power_cuts_at_random_moments() {
    let seed = std::env::var("KV_POWER_CUT_SEED")
        .ok()
        .and_then(|text| u64::from_str_radix(text.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let cuts: usize = std::env::var("KV_POWER_CUTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(10);
    println!("power-cut seed {seed:#x} ({cuts} cuts): replay with KV_POWER_CUT_SEED={seed:x}");
    let mut random = Random(seed);
    let disk = TestDisk::new("kv", "kv_power_cut");
    let mut acked: Vec<(String, String)> = Vec::new();
    for cut in 0..=cuts {
        let mut image = boot_networked_with("kv", Firmware::Bios, &disk.options());
        image.wait_for_serial("kv: listening", WAIT);
        let serial = image.serial();
        assert!(
            serial.contains("(GroupCommit)"),
            "kv runs durably: {serial}"
        );
        let port = image.host_port("kv", Protocol::Tcp, 6379);
        verify(port, &acked);
        println!(
            "boot {}: all {} acknowledged keys are there",
            cut + 1,
            acked.len()
        );
        if cut == cuts {
            break;
        }
        let delay = Duration::from_millis(200 + random.next() % 2500);
        let this_cut = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let this_cut = this_cut.clone();
                // Keys continue from the last boot's so every write is a new key.
                let first = (cut as u64) << 32;
                std::thread::spawn(move || write_until_cut(port, writer, first, seed, &this_cut))
            })
            .collect();
        std::thread::sleep(delay);
        let output = image.stop();
        assert!(!output.serial.contains("PANIC"), "{}", output.serial);
        for writer in writers {
            writer.join().unwrap();
        }
        let this_cut = Arc::try_unwrap(this_cut).unwrap().into_inner().unwrap();
        println!(
            "cut {} after {} ms: {} writes acknowledged",
            cut + 1,
            delay.as_millis(),
            this_cut.len()
        );
        acked.extend(this_cut);
    }
    assert!(
        !acked.is_empty(),
        "no write was acknowledged in {cuts} runs"
    );
}
