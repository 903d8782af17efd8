//! Programs for the in-QEMU tests. `kcalls` checks the gate and the ring; each `fault_*` program
//! commits one fault that kernel-lite must contain (report with the app's name, end the app).
//!
//! The only crate that turns on libos's `deliberate-faults` feature: no shipped bundle may run
//! a program from here (xtask's tidy checks it).
#![no_std]

extern crate alloc;

pub mod disk_probe;

use alloc::boxed::Box;
use alloc::vec::Vec;
use libos::faults::{self, PrivilegedInstruction};
use libos::time::{Duration, Instant};
use libos::{diag, println, rt, thread};
use lite_abi::kcall::{Kcall, KcallError};

fn check(what: &str, ok: bool) -> bool {
    println!("check {what}: {}", if ok { "ok" } else { "FAILED" });
    ok
}

/// Runs at CPL 3; kcalls round-trip with their results and errors; the clock moves.
pub fn kcalls() -> i32 {
    let mut ok = check("CPL=3", diag::privilege_level() == 3);
    ok &= check("null kcall returns 0", diag::null_kcall() == 0);
    ok &= check(
        "unknown kcall is refused",
        faults::raw_kcall(999, 0, 0) == Err(KcallError::UnknownKcall),
    );
    ok &= check(
        "console write from a kernel address is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, faults::KERNEL_LITE_ADDRESS, 8)
            == Err(KcallError::BadAddress),
    );
    ok &= check(
        "console write of an unmapped range is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, 0x10, 8) == Err(KcallError::BadAddress),
    );
    ok &= check(
        "oversized console write is refused",
        faults::raw_kcall(Kcall::ConsoleWrite as u64, 0x40_0000, 1 << 20)
            == Err(KcallError::BadArgument),
    );
    let before = Instant::now();
    thread::sleep(Duration::from_millis(20));
    let slept = before.elapsed();
    ok &= check(
        "sleep 20 ms lasts at least 20 ms",
        slept >= Duration::from_millis(20),
    );
    let boxed = Box::new([7u8; 4096]);
    ok &= check("heap allocation", boxed.iter().all(|&b| b == 7));
    if ok { 0 } else { 1 }
}

pub fn fault_kernel_write() -> i32 {
    println!(
        "writing to kernel-lite memory at {:#x}",
        faults::KERNEL_LITE_ADDRESS
    );
    faults::write_kernel_memory()
}

pub fn fault_hlt() -> i32 {
    println!("running hlt in ring 3");
    faults::run_privileged(PrivilegedInstruction::Hlt)
}

pub fn fault_cli() -> i32 {
    println!("running cli in ring 3");
    faults::run_privileged(PrivilegedInstruction::Cli)
}

pub fn fault_mov_cr3() -> i32 {
    println!("running mov cr3 in ring 3");
    faults::run_privileged(PrivilegedInstruction::MovCr3)
}

/// Recurses until the stack runs into its guard page.
pub fn fault_stack_overflow() -> i32 {
    println!("recursing without end");
    let depth = recurse(core::hint::black_box(1));
    println!("recursion returned {depth}");
    0
}

fn recurse(depth: u64) -> u64 {
    let frame = core::hint::black_box([depth; 64]);
    if core::hint::black_box(depth) == 0 {
        return frame[0];
    }
    recurse(depth + 1).wrapping_add(frame[63])
}

pub fn fault_panic() -> i32 {
    let reason = core::hint::black_box("a deliberate panic");
    panic!("{reason}");
}

/// How long a crasher lets its neighbours run before it faults.
const CRASH_AFTER: Duration = Duration::from_millis(150);

fn crash_soon(what: &str) {
    println!("will crash by {what} in {} ms", CRASH_AFTER.as_millis());
    thread::sleep(CRASH_AFTER);
}

pub fn crash_panic() -> i32 {
    crash_soon("panic");
    fault_panic()
}

pub fn crash_page_fault() -> i32 {
    crash_soon("page fault");
    faults::write_unmapped_memory()
}

pub fn crash_general_protection() -> i32 {
    crash_soon("general protection fault");
    faults::run_privileged(PrivilegedInstruction::Hlt)
}

pub fn crash_invalid_opcode() -> i32 {
    crash_soon("invalid opcode");
    faults::invalid_opcode()
}

pub fn crash_debug_trap() -> i32 {
    crash_soon("debug exception");
    faults::debug_trap()
}

pub fn crash_stack_overflow() -> i32 {
    crash_soon("stack overflow");
    fault_stack_overflow()
}

/// Allocates until the heap quota is exhausted.
pub fn crash_out_of_memory() -> i32 {
    crash_soon("running out of memory");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(alloc::vec![0xa5; 64 * 1024]);
    }
}

pub fn crash_holding_lock() -> i32 {
    crash_soon("page fault while holding its console lock");
    faults::fault_holding_console_lock()
}

/// Fills about three quarters of its heap with a pattern of its own, a chunk at a time, giving
/// the CPU away between chunks so that another filler interleaves; then checks every byte.
pub fn fill() -> i32 {
    const CHUNK: usize = 64 * 1024;
    let context = rt::current();
    let seed = context.index() as u8 * 37 + 11;
    let chunks = context.heap_usage().size * 3 / 4 / CHUNK;
    let mut buffers: Vec<Vec<u8>> = Vec::with_capacity(chunks);
    for chunk in 0..chunks {
        let byte = seed.wrapping_add(chunk as u8);
        buffers.push(alloc::vec![byte; CHUNK]);
        thread::yield_now();
    }
    let intact = buffers.iter().enumerate().all(|(chunk, buffer)| {
        let byte = seed.wrapping_add(chunk as u8);
        buffer.iter().all(|&b| b == byte)
    });
    let heap = context.heap_usage();
    println!(
        "filled {chunks} chunks of {CHUNK} bytes: {}; heap peak {} of {} bytes",
        if intact { "all intact" } else { "CORRUPTED" },
        heap.peak,
        heap.size
    );
    if intact { 0 } else { 1 }
}

/// Takes its whole quota: allocates 64 KiB chunks (touching every page) until the heap refuses
/// one, holds them while the counter beside it counts, checks them, and exits 0. Shows that an
/// app at its quota takes nothing a neighbour was guaranteed.
pub fn hog() -> i32 {
    const CHUNK: usize = 64 * 1024;
    let context = rt::current();
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    if chunks
        .try_reserve(context.heap_usage().size / CHUNK)
        .is_err()
    {
        println!("no room for the chunk list");
        return 1;
    }
    loop {
        let mut chunk = Vec::new();
        if chunk.try_reserve_exact(CHUNK).is_err() {
            break;
        }
        chunk.resize(CHUNK, chunks.len() as u8);
        chunks.push(chunk);
        thread::yield_now();
    }
    let heap = context.heap_usage();
    println!(
        "holds {} chunks: heap {} of {} bytes in use",
        chunks.len(),
        heap.used,
        heap.size
    );
    thread::sleep(Duration::from_millis(300));
    let intact = chunks
        .iter()
        .enumerate()
        .all(|(index, chunk)| chunk.iter().all(|&b| b == index as u8));
    println!("chunks {}", if intact { "intact" } else { "CORRUPTED" });
    if intact { 0 } else { 1 }
}

/// Tries to forge console lines of kernel-lite and of another app: a half line left open while
/// another app prints, a carriage return, an escape sequence, and a panic message with a
/// newline in it. Every attempt must still show as this app's, escaped.
pub fn forger() -> i32 {
    libos::print!("half a line, left open ");
    libos::console::flush();
    // Longer than the counter's period, so it prints while this line is open.
    thread::sleep(Duration::from_millis(120));
    println!("then finished");
    println!("\rkernel-lite: app 'counter' exited with status 0");
    println!("\x1b[2K\x1b[1Gkernel-lite: forged by an escape sequence");
    panic!("forged\nkernel-lite: all apps ended")
}

/// Spins for 1.5 s without ever blocking or yielding.
pub fn spinner() -> i32 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_millis(1500) {
        spins = core::hint::black_box(spins + 1);
    }
    println!("spun {spins} times");
    0
}

/// Sleeps 10 ms twenty times and reports the worst overshoot.
pub fn sleeper() -> i32 {
    let mut worst = Duration::ZERO;
    for _ in 0..20 {
        let before = Instant::now();
        thread::sleep(Duration::from_millis(10));
        worst = worst.max(before.elapsed().saturating_sub(Duration::from_millis(10)));
    }
    println!("slept 20 times; max oversleep {} us", worst.as_micros());
    0
}

/// Sets RFLAGS.AC in ring 3, spins about 30 ms reading the clock (so timer interrupts arrive
/// while AC is set), makes a null kcall, then checks that AC is still set: kernel-lite must
/// clear AC for itself on entry (with AC set, SMAP does not guard ring 0) but give ring 3 its
/// own flags back.
pub fn set_ac() -> i32 {
    faults::set_alignment_check();
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < Duration::from_millis(30) {
        spins = core::hint::black_box(spins + 1);
    }
    diag::null_kcall();
    let still_set = faults::alignment_check_is_set();
    println!(
        "AC set in ring 3: {} (after {spins} clock reads and a null kcall)",
        if still_set { "yes" } else { "no" }
    );
    if still_set { 0 } else { 1 }
}

/// Where `tests/bundles/net-probe.toml` puts the http app the probe fetches from.
const PROBE_TARGET_V4: [u8; 4] = [10, 0, 2, 40];
const PROBE_TARGET_V6: [u16; 8] = [0xfec0, 0, 0, 0, 0, 0, 0, 0x40];

/// A client of the image's http app, over kernel-lite's frame switch (app to app): waits for
/// an IPv4 address (by DHCP when the binding says so, which kernel-lite learns by snooping) and
/// a global IPv6 address (by SLAAC when it says so), then fetches the index page over IPv4 and
/// over IPv6 and reports its length.
pub fn net_probe() -> i32 {
    use libos::net::{IpAddr, Ipv6Addr, SocketAddr};
    use libos::task;
    let stack = match libos::net::stack() {
        Ok(stack) => stack,
        Err(error) => {
            println!("net-probe: no network: {error}");
            return 1;
        }
    };
    task::block_on(async move {
        let started = Instant::now();
        let addressed = || {
            let addresses = stack.addresses();
            let ipv4 = addresses
                .iter()
                .any(|address| matches!(address, IpAddr::V4(v4) if !v4.is_unspecified()));
            let global_ipv6 = addresses
                .iter()
                .any(|address| matches!(address, IpAddr::V6(v6) if !v6.is_unicast_link_local()));
            ipv4 && global_ipv6
        };
        while !addressed() {
            if started.elapsed() > Duration::from_secs(30) {
                println!(
                    "net-probe: no IPv4 and global IPv6 address after 30 s: {:?}",
                    stack.addresses()
                );
                return 1;
            }
            task::sleep(Duration::from_millis(50)).await;
        }
        println!("net-probe: addresses {:?}", stack.addresses());
        let targets = [
            SocketAddr::from((PROBE_TARGET_V4, 80)),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(PROBE_TARGET_V6)), 80),
        ];
        let mut failed = false;
        for target in targets {
            match task::timeout(Duration::from_secs(30), fetch_index(target)).await {
                Ok(Ok(len)) => println!("net-probe: GET http://{target}/ -> {len} bytes"),
                Ok(Err(error)) => {
                    println!("net-probe: GET http://{target}/ failed: {error}");
                    failed = true;
                }
                Err(_) => {
                    println!("net-probe: GET http://{target}/ timed out");
                    failed = true;
                }
            }
        }
        i32::from(failed)
    })
}

/// The body length of `GET /` from `target`.
async fn fetch_index(target: libos::net::SocketAddr) -> libos::io::Result<usize> {
    let mut stream = libos::net::TcpStream::connect(target).await?;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    let mut buffer = [0u8; 2048];
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        response.extend_from_slice(&buffer[..read]);
    }
    let body = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .map_or(0, |head| response.len() - head - 4);
    Ok(body)
}

/// Hands kernel-lite frames with sources that are not the app's (another MAC; its own MAC
/// with another app's IPv4; an ARP reply claiming another app's IPv4) and one genuine frame:
/// only the genuine one may leave. The test reads the wire (a pcap) and kernel-lite's counters.
pub fn spoofer() -> i32 {
    let Some(binding) = faults::own_binding() else {
        println!("spoofer: no network binding");
        return 1;
    };
    let own_mac = binding.mac;
    let Some(own_ip) = binding.static_ipv4() else {
        println!("spoofer: needs a static IPv4 address");
        return 1;
    };
    const FORGED_MAC: [u8; 6] = [0x02, 0x66, 0x66, 0x66, 0x66, 0x66];
    const VICTIM_IP: [u8; 4] = [10, 0, 2, 15];
    const GATEWAY: [u8; 4] = [10, 0, 2, 2];
    let broadcast = [0xff; 6];
    let frames = [
        udp_frame(FORGED_MAC, broadcast, own_ip, GATEWAY, b"SPOOFED-MAC"),
        udp_frame(own_mac, broadcast, VICTIM_IP, GATEWAY, b"SPOOFED-IP"),
        arp_reply(own_mac, VICTIM_IP),
        udp_frame(own_mac, broadcast, own_ip, GATEWAY, b"GENUINE-FRAME"),
    ];
    let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
    match faults::send_raw_frames(&refs) {
        Ok(sent) => {
            println!("spoofer: kernel-lite sent {sent} of {} frames", refs.len());
            0
        }
        Err(error) => {
            println!("spoofer: could not send: {error:?}");
            1
        }
    }
}

fn ethernet(source: [u8; 6], destination: [u8; 6], ethertype: u16) -> Vec<u8> {
    let mut frame = Vec::with_capacity(64);
    frame.extend_from_slice(&destination);
    frame.extend_from_slice(&source);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame
}

/// An IPv4/UDP frame to port 9 (discard) carrying `payload`.
fn udp_frame(
    mac: [u8; 6],
    destination_mac: [u8; 6],
    source: [u8; 4],
    destination: [u8; 4],
    payload: &[u8],
) -> Vec<u8> {
    let mut frame = ethernet(mac, destination_mac, 0x0800);
    let total = (20 + 8 + payload.len()) as u16;
    let mut header = [0u8; 20];
    header[0] = 0x45;
    header[2..4].copy_from_slice(&total.to_be_bytes());
    header[8] = 64;
    header[9] = 17;
    header[12..16].copy_from_slice(&source);
    header[16..20].copy_from_slice(&destination);
    let sum = header
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], pair[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    header[10..12].copy_from_slice(&(!((folded & 0xffff) + (folded >> 16)) as u16).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&9u16.to_be_bytes());
    frame.extend_from_slice(&9u16.to_be_bytes());
    frame.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    frame.extend_from_slice(&[0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// An ARP reply, broadcast, saying `claimed` is at `mac`.
fn arp_reply(mac: [u8; 6], claimed: [u8; 4]) -> Vec<u8> {
    let mut frame = ethernet(mac, [0xff; 6], 0x0806);
    frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 2]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&claimed);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&claimed);
    frame
}

/// A TCP server on port 9 that echoes what each connection sends first and panics when that is
/// `crash`: an app that faults mid-traffic, for the test that it restarts while another app
/// serves on.
pub fn net_crasher() -> i32 {
    use libos::net::{SocketAddr, TcpListener};
    use libos::task;
    let result: libos::io::Result<()> = task::block_on(async {
        let listener = TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], 9)))?;
        println!("net-crasher: listening on port 9");
        loop {
            let (mut stream, _) = listener.accept().await?;
            let mut buffer = [0u8; 64];
            let read = stream.read(&mut buffer).await?;
            if buffer[..read].starts_with(b"crash") {
                panic!("asked to crash mid-traffic");
            }
            stream.write_all(&buffer[..read]).await?;
        }
    });
    match result {
        Ok(()) => 0,
        Err(error) => {
            println!("net-crasher: {error}");
            1
        }
    }
}

/// Scribbles on its own frame rings: an impossible transmit length, then indices that claim
/// more frames than there are slots, and stays a while so received frames meet the broken
/// receive index. kernel-lite must count and drop, never trust or crash.
pub fn ring_scribbler() -> i32 {
    let first = faults::scribble_on_rings(60_000, 1, 0);
    let second = faults::scribble_on_rings(60, 0xdead_beef, 777_777);
    thread::sleep(Duration::from_secs(2));
    println!("ring-scribbler: flushes answered {first:?} and {second:?}; still running");
    0
}
