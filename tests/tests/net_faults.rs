//! Misbehaving network apps beside a serving one: spoofed frames never reach the wire (the pcap
//! QEMU writes shows it), hostile ring indices and lengths are counted and harm no one, an app
//! that crashes mid-traffic is restarted and serves again while the http app never stops; and an app inside the image reaches the http app over the frame
//! switch with a DHCP lease and over IPv6.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use system_tests::*;
use xtask::bundle::Protocol;
use xtask::qemu::UserNetwork;

const WAIT: Duration = Duration::from_secs(90);

fn connect(port: u16) -> std::io::Result<TcpStream> {
    let stream = TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(stream)
}

/// The frames of a pcap file (classic format, any byte order is little-endian here).
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).expect("QEMU wrote the pcap");
    assert_eq!(
        &bytes[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian pcap"
    );
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let captured = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let start = at + 16;
        let end = (start + captured).min(bytes.len());
        frames.push(bytes[start..end].to_vec());
        at = start + captured;
    }
    frames
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// GETs `/` over and over on keep-alive connections until told to stop; counts answers and
/// failures (a failure reconnects).
fn load(port: u16, stop: Arc<AtomicBool>, served: Arc<AtomicUsize>, failed: Arc<AtomicUsize>) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(stream) = connect(port) else {
            failed.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        for _ in 0..20 {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let ok = writer
                .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .is_ok()
                && read_index(&mut reader);
            if ok {
                served.fetch_add(1, Ordering::Relaxed);
            } else {
                failed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
    }
}

/// Reads one response to `GET /` and checks it is the 612-byte page.
fn read_index(reader: &mut impl BufRead) -> bool {
    let mut length = None;
    let mut status = String::new();
    if reader.read_line(&mut status).is_err() || !status.starts_with("HTTP/1.1 200") {
        return false;
    }
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return false;
        }
        let line = line.trim_end().to_ascii_lowercase();
        if line.is_empty() {
            break;
        }
        if let Some(value) = line.strip_prefix("content-length:") {
            length = value.trim().parse::<usize>().ok();
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    length == Some(612) && reader.read_exact(&mut body).is_ok()
}

fn echo_once(port: u16, line: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = connect(port)?;
    stream.write_all(line)?;
    let mut answer = vec![0; line.len()];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

#[test]
fn spoofed_frames_never_reach_the_wire_broken_rings_are_counted_and_a_crashing_app_restarts_while_http_serves()
 {
    let manifest = xtask::bundle::load(&xtask::bundle::find("net-faults").unwrap()).unwrap();
    let pcap: PathBuf =
        std::env::temp_dir().join(format!("net-faults-{}.pcap", std::process::id()));
    let socket = std::env::temp_dir().join(format!("net-faults-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&socket);
    let mut network = UserNetwork::for_bundle(&manifest).unwrap();
    network.pcap = Some(pcap.clone());
    let options = RunOptions {
        network: Some(network),
        monitor_socket: Some(socket.clone()),
        ..RunOptions::default()
    };
    let mut image = boot_networked_with("net-faults", Firmware::Bios, &options);
    image.wait_for_serial("[http] INFO  http::server: http: listening", WAIT);
    image.wait_for_serial("spoofer: kernel-lite sent 1 of 4 frames", WAIT);
    image.wait_for_serial("net-crasher: listening on port 9", WAIT);
    image.wait_for_serial(
        "kernel-lite: app 'ring-scribbler' exited with status 0",
        WAIT,
    );
    let http = image.host_port("http", Protocol::Tcp, 80);
    let crasher = image.host_port("net-crasher", Protocol::Tcp, 9);

    let stop = Arc::new(AtomicBool::new(false));
    let (served, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let loader = {
        let (stop, served, failed) = (stop.clone(), served.clone(), failed.clone());
        std::thread::spawn(move || load(http, stop, served, failed))
    };

    assert_eq!(echo_once(crasher, b"hello").unwrap(), b"hello");
    // The crash: the connection just ends.
    let _ = echo_once(crasher, b"crash");
    image.wait_for_serial("kernel-lite: app 'net-crasher' ended by panic", WAIT);
    image.wait_for_serial("kernel-lite: restarting app 'net-crasher'", WAIT);
    let deadline = Instant::now() + WAIT;
    loop {
        match echo_once(crasher, b"again") {
            Ok(answer) if answer == b"again" => break,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            other => panic!("the restarted app does not serve: {other:?}"),
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    loader.join().unwrap();
    let (served, failed) = (
        served.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    assert!(served >= 20, "http served {served} requests meanwhile");
    assert_eq!(
        failed,
        0,
        "http failed {failed} of {} requests",
        served + failed
    );

    monitor_command(&socket, "nmi");
    image.wait_for_serial("kernel-lite: end of tables", WAIT);
    let serial = image.serial();
    let spoofer = network_row(&serial, "spoofer");
    assert_eq!(
        (spoofer.dropped_spoofed, spoofer.frames_out),
        (3, 1),
        "{spoofer:?}"
    );
    let output = image.stop();
    assert!(!output.serial.contains("PANIC"));

    let frames = pcap_frames(&pcap);
    assert!(
        frames.len() > 20,
        "the pcap holds the traffic ({} frames)",
        frames.len()
    );
    assert!(frames.iter().any(|frame| contains(frame, b"GENUINE-FRAME")));
    let spoofer_mac = lite_abi::net::config::derived_mac("spoofer");
    for frame in &frames {
        assert!(
            !contains(frame, b"SPOOFED"),
            "a spoofed frame reached the wire"
        );
        assert_ne!(frame[6..12], [0x02, 0x66, 0x66, 0x66, 0x66, 0x66]);
        // No ARP from the spoofer claiming the http app's address.
        let arp_claims_victim = frame.len() >= 42
            && frame[12..14] == [0x08, 0x06]
            && frame[22..28] == spoofer_mac
            && frame[28..32] == [10, 0, 2, 15];
        assert!(!arp_claims_victim, "a forged ARP reply reached the wire");
    }
    let _ = std::fs::remove_file(&pcap);
    let _ = std::fs::remove_file(&socket);
}

#[test]
fn an_app_reaches_another_over_the_switch_with_dhcp_and_slaac_addresses_over_ipv4_and_ipv6() {
    let mut image = boot_networked("net-probe", Firmware::Bios);
    image.wait_for_serial("net-probe: GET http://10.0.2.40:80/ -> 612 bytes", WAIT);
    image.wait_for_serial("net-probe: GET http://[fec0::40]:80/ -> 612 bytes", WAIT);
    image.wait_for_serial("kernel-lite: app 'net-probe' exited with status 0", WAIT);
    let serial = image.serial();
    let addresses = serial
        .lines()
        .find(|line| line.contains("net-probe: addresses"))
        .unwrap()
        .to_owned();
    assert!(addresses.contains("10.0.2."), "a DHCP lease: {addresses}");
    // SLAAC: QEMU's prefix and the interface ID of the app's MAC.
    let eui64 = lite_abi::net::config::eui64(lite_abi::net::config::derived_mac("net-probe"));
    let interface_id = format!(
        "{:x}:{:x}:{:x}:{:x}",
        u16::from_be_bytes([eui64[0], eui64[1]]),
        u16::from_be_bytes([eui64[2], eui64[3]]),
        u16::from_be_bytes([eui64[4], eui64[5]]),
        u16::from_be_bytes([eui64[6], eui64[7]])
    );
    assert!(
        addresses.contains(&format!("fec0::{interface_id}")),
        "a SLAAC address fec0::{interface_id}: {addresses}"
    );
    // The host still reaches the http app.
    let port = image.host_port("http", Protocol::Tcp, 80);
    let stream = connect(port).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    (&stream)
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    assert!(read_index(&mut reader));
    image.stop();
}
