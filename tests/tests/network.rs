//! Networked bundles in QEMU: an image whose apps have `[app.net]` boots with a virtio-net NIC
//! on QEMU's user network, QEMU takes every forwarded host port (moved to free ones at run
//! time) while the image runs, and the image still runs to its end.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::Duration;
use system_tests::{Firmware, ImageOutcome, Protocol, assert_serial_contains, boot_networked};

/// Whether `port` on 127.0.0.1 is held by someone (QEMU) for `protocol`.
fn held(protocol: Protocol, port: u16) -> bool {
    match protocol {
        Protocol::Tcp => TcpListener::bind(("127.0.0.1", port)).is_err(),
        Protocol::Udp => UdpSocket::bind(("127.0.0.1", port)).is_err(),
    }
}

#[test]
fn forwarded_ports_are_open_while_the_image_runs_and_the_image_ends_normally() {
    let mut image = boot_networked("net-forward", Firmware::Bios);
    let web = image.host_port("counter", Protocol::Tcp, 80);
    let dns = image.host_port("counter", Protocol::Udp, 53);
    let alt = image.host_port("hello", Protocol::Tcp, 8080);
    assert_eq!(image.forwards().len(), 3);
    image.wait_for_serial("[counter] count 1\n", Duration::from_secs(60));
    for (protocol, port) in [
        (Protocol::Tcp, web),
        (Protocol::Udp, dns),
        (Protocol::Tcp, alt),
    ] {
        assert!(
            held(protocol, port),
            "QEMU does not hold {protocol} port {port}"
        );
    }
    // QEMU accepts on the host side at once, whatever the guest does with it later.
    TcpStream::connect_timeout(&([127, 0, 0, 1], web).into(), Duration::from_secs(5))
        .expect("QEMU listens on the forwarded TCP port");
    let output = image.wait();
    assert_eq!(output.outcome, Some(ImageOutcome::AllAppsSucceeded));
    assert_serial_contains(
        &output,
        &[
            "kernel-lite: pci 00:02.0 1af4:1041 class 02.00 (Ethernet)",
            "[hello] Hello from hello, a libos app! CPL=3",
            "[counter] count 40",
        ],
    );
    // QEMU is gone, and its ports with it.
    assert!(!held(Protocol::Tcp, web));
}

#[test]
fn a_networked_image_can_be_stopped_while_it_runs() {
    let mut image = boot_networked("net-forward", Firmware::Bios);
    image.wait_for_serial("[counter] count 1\n", Duration::from_secs(60));
    assert!(image.is_running());
    let output = image.stop();
    assert_eq!(output.status, None, "QEMU was killed, not ended");
    assert!(!output.timed_out);
    assert_serial_contains(&output, &["[counter] count 1"]);
}
