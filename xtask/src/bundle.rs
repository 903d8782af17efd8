//! Bundle manifests: the TOML file that names the apps of an image and each app's resources.
//!
//! A manifest is checked completely on the host before anything is built; every problem is
//! reported with the file, the line, what is wrong and how to fix it.
//!
//! # Networking: `[app.net]`
//!
//! An app with an `[app.net]` table gets its own MAC and IP addresses on the image's one NIC
//! (kernel-lite's frame switch binds them to the app) and its own network stack in libos. When
//! any app of a bundle has one, `cargo xtask run` adds a virtio-net NIC on QEMU's user network
//! (10.0.2.0/24 with the gateway at 10.0.2.2 and DNS at 10.0.2.3; fec0::/64 for IPv6) and
//! forwards the declared host ports to the apps. Every key is optional; an empty `[app.net]`
//! gives an app with only its IPv6 link-local address.
//!
//! ```toml
//! [[app]]
//! name = "http"
//! memory = "4 MiB"
//! [app.net]
//! ipv4 = "10.0.2.15/24"      # CIDR, or "dhcp"; absent: no IPv4
//! gateway = "10.0.2.2"       # IPv4 default gateway (static ipv4 only; inside its subnet)
//! dns = "10.0.2.3"           # DNS server (static ipv4 only)
//! ipv6 = "fec0::15/64"       # CIDR, or "slaac"; absent: link-local only
//! gateway6 = "fec0::2"       # IPv6 default gateway (static ipv6 only; may be link-local)
//! mac = "02:00:00:00:00:15"  # unicast; absent: derived from the app's name (stable, 02:...)
//! forward = ["tcp:8080:80", "udp:5353:53"]   # "PROTOCOL:HOST-PORT:GUEST-PORT"
//! rx-ring = 256              # receive ring, frame slots: a power of two, 8 to 1024
//! tx-ring = 256              # transmit ring, likewise
//! max-sockets = 1100         # TCP and UDP sockets open at once, 1 to 8192
//! socket-buffer = "16 KiB"   # each TCP socket's receive and send buffer, 1 KiB to 4 MiB
//! ```
//!
//! Forwards listen on the host's 127.0.0.1 and go to the app's static IPv4 address, so an app
//! with forwards needs `ipv4 = "A.B.C.D/N"` inside QEMU's 10.0.2.0/24 (and not QEMU's own
//! 10.0.2.2 or 10.0.2.3). `dhcp` apps may not have forwards: QEMU forwards to one fixed guest
//! address, and which lease a DHCP app gets depends on the order in which the apps ask (QEMU
//! hands out 10.0.2.15, .16, ... first come, first served). For the same reason a static
//! address in QEMU's lease pool (10.0.2.15 to 10.0.2.30) is refused when another app of the
//! bundle uses `dhcp`. There are no IPv6 forwards: QEMU 7.2 refuses an IPv6 `hostfwd` (see
//! [`crate::qemu::UserNetwork`]). `cargo xtask run --port-offset N` adds N to every host port.
//!
//! Refused, each with its line and a fix: an address that is not `A.B.C.D/N` (or `dhcp`,
//! `slaac`), a prefix out of range, an address no app may own (unspecified, loopback,
//! multicast, broadcast), a gateway outside the app's IPv4 subnet, a gateway or DNS server with
//! a mode that learns them, a MAC that is malformed, zero or multicast, a forward that is not
//! `tcp:H:G` or `udp:H:G` or names port 0, a forward on an app without a static IPv4, two apps
//! with one MAC, IPv4 or IPv6 address, two forwards of one protocol and host port (across the
//! bundle; TCP and UDP on one port are fine), two forwards of one app to one protocol and guest
//! port, and ring sizes that are not a power of two from 8 to 1024.
//!
//! # Storage: `[app.disk]`
//!
//! An app with an `[app.disk]` table gets an extent of the image's one disk (a modern
//! virtio-blk device) for its own file system in libos; kernel-lite binds the app to the extent
//! the disk table at sector 0 names for it and checks every request against it, so an app can
//! only ever reach its own sectors. `cargo xtask run` keeps the disk in a file,
//! `target/disks/BUNDLE.img`, and lays the extents out in manifest order (see [`crate::disk`]).
//!
//! ```toml
//! [app.disk]
//! size = "64 MiB"            # required: the extent, whole 4 KiB blocks, 1 MiB to 1 TiB
//! queue = 32                 # requests in flight: a power of two, 1 to 64 (default 32)
//! request = "32 KiB"         # largest request: a power of two, 4 KiB to 64 KiB (default 32 KiB)
//! ```
//!
//! The request ring lives in the app's slot beside its heap: a 4 KiB header page and `queue`
//! buffers of `request` bytes (1 MiB + 4 KiB with the defaults), mapped at boot and charged to
//! the app like the frame rings of `[app.net]`. Refused, each with its line and a fix: a size
//! that is missing, below 1 MiB, above 1 TiB or not whole 4 KiB blocks, a queue that is not a
//! power of two up to 64, a request that is not a power of two from 4 KiB to 64 KiB, unknown
//! keys, and more apps with a disk than the disk table has entries for
//! ([`disk::MAX_EXTENTS`]).

use lite_abi::bundle::{
    AppSpec, MAX_HEAP_BYTES, MAX_STACK_BYTES, MIN_HEAP_BYTES, RestartPolicy, shares_an_address,
};
use lite_abi::layout::{MAX_APPS, NAME_LEN};
use lite_abi::net::config::{
    Ipv4Mode, Ipv6Mode, MAX_SOCKET_BUFFER, MAX_SOCKETS, MIN_SOCKET_BUFFER, NetConfig,
    NetConfigError, derived_mac,
};
use serde::Deserialize;
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use toml::Spanned;

pub mod disk;

/// A checked manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The bundle's name (the file stem).
    pub name: String,
    pub path: PathBuf,
    pub apps: Vec<App>,
}

/// One app of a manifest, with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    pub name: String,
    pub program: String,
    pub heap_bytes: u64,
    pub stack_bytes: u64,
    pub log_level: u8,
    pub restart: RestartPolicy,
    /// The app's network binding (`[app.net]`), checked.
    pub net: Option<NetConfig>,
    /// Host ports QEMU forwards to the app's static IPv4 address (`forward = [...]`).
    pub forwards: Vec<Forward>,
    /// The app's extent of the image's disk (`[app.disk]`), checked.
    pub disk: Option<lite_abi::blk::DiskBinding>,
}

/// A transport protocol of a forwarded port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// `tcp` or `udp`, as QEMU's `hostfwd` and the manifest write it.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `forward = ["tcp:8080:80"]` entry: QEMU listens on the host port and passes what comes
/// to the guest port of the app's static IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Forward {
    pub protocol: Protocol,
    pub host_port: u16,
    pub guest_port: u16,
}

/// QEMU's user network, which the xtask always gives a networked image: forwards reach only
/// addresses inside it.
pub const QEMU_USER_NET: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 0, 2, 0), 24);
/// QEMU's own addresses on its user network (the gateway and the DNS server).
pub const QEMU_USER_NET_RESERVED: [Ipv4Addr; 2] =
    [Ipv4Addr::new(10, 0, 2, 2), Ipv4Addr::new(10, 0, 2, 3)];
/// The addresses QEMU's DHCP server leases, first come, first served (libslirp's 16 clients
/// from `dhcpstart`, 10.0.2.15 by default).
pub const QEMU_DHCP_POOL: std::ops::RangeInclusive<Ipv4Addr> =
    Ipv4Addr::new(10, 0, 2, 15)..=Ipv4Addr::new(10, 0, 2, 30);
/// QEMU's user network for IPv6 (`ipv6-net`).
pub const QEMU_USER_NET6: (Ipv6Addr, u8) = (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 64);

impl App {
    pub fn spec(&self) -> AppSpec<'_> {
        AppSpec {
            name: &self.name,
            program: &self.program,
            heap_bytes: self.heap_bytes,
            stack_bytes: self.stack_bytes,
            log_level: self.log_level,
            restart: self.restart,
            net: self.net,
            disk: self.disk,
        }
    }
}

pub const DEFAULT_STACK_BYTES: u64 = 64 * 1024;
pub const DEFAULT_RESTART_LIMIT: u16 = 3;

/// What is wrong with a manifest, where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestError {
    pub file: PathBuf,
    /// 1-based line, when the problem has one.
    pub line: Option<usize>,
    pub problem: String,
    pub fix: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}\n  fix: {}", self.problem, self.fix)
    }
}

impl std::error::Error for ManifestError {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    #[serde(default)]
    app: Vec<Spanned<RawApp>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawApp {
    name: Spanned<String>,
    program: Option<Spanned<String>>,
    memory: Spanned<Size>,
    stack: Option<Spanned<Size>>,
    log: Option<Spanned<String>>,
    restart: Option<Spanned<String>>,
    restart_limit: Option<Spanned<i64>>,
    net: Option<Spanned<RawNet>>,
    disk: Option<Spanned<disk::RawDisk>>,
}

/// `[app.net]` as written; see the module docs.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNet {
    ipv4: Option<Spanned<String>>,
    gateway: Option<Spanned<String>>,
    dns: Option<Spanned<String>>,
    ipv6: Option<Spanned<String>>,
    gateway6: Option<Spanned<String>>,
    mac: Option<Spanned<String>>,
    #[serde(default)]
    forward: Vec<Spanned<String>>,
    rx_ring: Option<Spanned<i64>>,
    tx_ring: Option<Spanned<i64>>,
    max_sockets: Option<Spanned<i64>>,
    socket_buffer: Option<Spanned<Size>>,
}

/// A size written as a number of bytes or a string like "64 KiB", "1 MiB", "2 GiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(i64),
    Text(String),
}

/// Parses "64 KiB", "1MiB", "4096" and the like into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        "TiB" | "T" => 1 << 40,
        _ => return None,
    };
    number.checked_mul(scale)
}

/// `bytes` in the largest binary unit that divides it: "64 MiB", "1 TiB", "1049088 bytes".
pub fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 40 && b % (1 << 40) == 0 => format!("{} TiB", b >> 40),
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

struct Checker<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Checker<'_> {
    fn error(&self, span: Option<Range<usize>>, problem: String, fix: &str) -> ManifestError {
        ManifestError {
            file: self.file.to_path_buf(),
            line: span.map(|span| line_number(self.text, span.start)),
            problem,
            fix: fix.to_owned(),
        }
    }

    fn size(
        &self,
        size: &Spanned<Size>,
        what: &str,
        min: u64,
        max: u64,
    ) -> Result<u64, ManifestError> {
        let bytes = match size.get_ref() {
            Size::Bytes(n) => u64::try_from(*n).ok(),
            Size::Text(text) => parse_size(text),
        };
        let fix = format!(
            "write a size between {} and {}, for example \"{}\"",
            human(min),
            human(max),
            human(min.max(1 << 20).min(max))
        );
        match bytes {
            None => Err(self.error(Some(size.span()), format!("{what} is not a size"), &fix)),
            Some(0) => Err(self.error(Some(size.span()), format!("{what} is zero"), &fix)),
            Some(b) if b < min => Err(self.error(
                Some(size.span()),
                format!(
                    "{what} of {} is below the minimum of {}",
                    human(b),
                    human(min)
                ),
                &fix,
            )),
            Some(b) if b > max => Err(self.error(
                Some(size.span()),
                format!(
                    "{what} of {} is absurd (more than {})",
                    human(b),
                    human(max)
                ),
                &fix,
            )),
            Some(b) => Ok(b),
        }
    }
}

/// Whether `address` lies in the IPv4 subnet `network`/`prefix`.
pub fn in_subnet(address: Ipv4Addr, network: Ipv4Addr, prefix: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
    u32::from(address) & mask == u32::from(network) & mask
}

/// `02:00:00:00:00:15` (colons or dashes) as six bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let parts: Vec<&str> = text.split([':', '-']).collect();
    if parts.len() != 6 {
        return None;
    }
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(parts) {
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    Some(mac)
}

/// A MAC as `02:00:00:00:00:15`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

/// `tcp:8080:80` as a [`Forward`]; `Err` says what is wrong.
pub fn parse_forward(text: &str) -> Result<Forward, String> {
    let parts: Vec<&str> = text.split(':').collect();
    let [protocol, host, guest] = parts[..] else {
        return Err(format!(
            "forward '{text}' is not PROTOCOL:HOST-PORT:GUEST-PORT"
        ));
    };
    let protocol = match protocol {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => return Err(format!("forward '{text}' has unknown protocol '{other}'")),
    };
    let port = |which: &str, port: &str| match port.parse::<u16>() {
        Ok(0) => Err(format!("forward '{text}' names {which} port 0")),
        Ok(port) => Ok(port),
        Err(_) => Err(format!(
            "forward '{text}' has {which} port '{port}', not a number from 1 to 65535"
        )),
    };
    Ok(Forward {
        protocol,
        host_port: port("host", host)?,
        guest_port: port("guest", guest)?,
    })
}

/// `[app.net]` checked: the binding, its forwards, and where they were written.
struct CheckedNet {
    config: NetConfig,
    forwards: Vec<Forward>,
    forward_spans: Vec<Range<usize>>,
    /// The `mac`, `ipv4` and `ipv6` values' spans (the table's where absent): where address
    /// clashes are reported.
    mac_span: Range<usize>,
    ipv4_span: Range<usize>,
    ipv6_span: Range<usize>,
}

const CIDR4_FIX: &str = "write the address and prefix length, e.g. \"10.0.2.15/24\", or \"dhcp\"";
const CIDR6_FIX: &str = "write the address and prefix length, e.g. \"fec0::15/64\", or \"slaac\"";
const MAC_FIX: &str = "write a unicast MAC such as \"02:00:00:00:00:15\" (locally administered: \
                       the first byte's second-lowest bit set, its lowest clear), or leave `mac` \
                       out to derive one from the app's name";

impl Checker<'_> {
    fn ipv4_address(
        &self,
        field: &Spanned<String>,
        what: &str,
        fix: &str,
    ) -> Result<Ipv4Addr, ManifestError> {
        field.get_ref().trim().parse().map_err(|_| {
            self.error(
                Some(field.span()),
                format!("{what} '{}' is not an IPv4 address", field.get_ref()),
                fix,
            )
        })
    }

    fn ipv6_address(
        &self,
        field: &Spanned<String>,
        what: &str,
        fix: &str,
    ) -> Result<Ipv6Addr, ManifestError> {
        field.get_ref().trim().parse().map_err(|_| {
            self.error(
                Some(field.span()),
                format!("{what} '{}' is not an IPv6 address", field.get_ref()),
                fix,
            )
        })
    }

    /// `A/N` split, with the prefix checked to lie in `1..=max_prefix`.
    fn cidr<'t>(
        &self,
        field: &'t Spanned<String>,
        what: &str,
        max_prefix: u8,
        fix: &str,
    ) -> Result<(&'t str, u8), ManifestError> {
        let text = field.get_ref().trim();
        let Some((address, prefix)) = text.split_once('/') else {
            return Err(self.error(
                Some(field.span()),
                format!("{what} '{text}' has no prefix length"),
                fix,
            ));
        };
        match prefix.parse::<u8>() {
            Ok(prefix) if (1..=max_prefix).contains(&prefix) => Ok((address, prefix)),
            _ => Err(self.error(
                Some(field.span()),
                format!("{what} '{text}': prefix length /{prefix} is out of range"),
                &format!("an {what} prefix length is 1 to {max_prefix}; {fix}"),
            )),
        }
    }

    fn ring_slots(&self, field: &Option<Spanned<i64>>, what: &str) -> Result<u16, ManifestError> {
        use lite_abi::net::config::{DEFAULT_RING_SLOTS, MAX_RING_SLOTS, MIN_RING_SLOTS};
        let Some(field) = field else {
            return Ok(DEFAULT_RING_SLOTS);
        };
        match u16::try_from(*field.get_ref()) {
            Ok(slots)
                if slots.is_power_of_two()
                    && (MIN_RING_SLOTS..=MAX_RING_SLOTS).contains(&slots) =>
            {
                Ok(slots)
            }
            _ => Err(self.error(
                Some(field.span()),
                format!(
                    "{what} of {} slots is not a power of two from {MIN_RING_SLOTS} to {MAX_RING_SLOTS}",
                    field.get_ref()
                ),
                &format!(
                    "use 8, 16, 32, 64, 128, 256, 512 or 1024 (leave it out for {DEFAULT_RING_SLOTS})"
                ),
            )),
        }
    }

    /// Checks one app's `[app.net]`; cross-app rules are checked by [`parse`].
    fn net(&self, app_name: &str, raw: &Spanned<RawNet>) -> Result<CheckedNet, ManifestError> {
        let table_span = raw.span();
        let net = raw.get_ref();
        let mac = match &net.mac {
            None => derived_mac(app_name),
            Some(field) => parse_mac(field.get_ref().trim()).ok_or_else(|| {
                self.error(
                    Some(field.span()),
                    format!("mac '{}' is not six hex bytes", field.get_ref()),
                    MAC_FIX,
                )
            })?,
        };
        let mut config = NetConfig::new(mac);

        if let Some(field) = &net.ipv4 {
            config.ipv4 = if field.get_ref().trim() == "dhcp" {
                Ipv4Mode::Dhcp
            } else {
                let (address, prefix) = self.cidr(field, "IPv4", 32, CIDR4_FIX)?;
                let address: Ipv4Addr = address.parse().map_err(|_| {
                    self.error(
                        Some(field.span()),
                        format!("ipv4 '{}' is not an IPv4 address", field.get_ref()),
                        CIDR4_FIX,
                    )
                })?;
                // The subnet's own address and its broadcast address are no host's.
                let host_bits = !u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                let host = u32::from(address) & host_bits;
                if prefix <= 30 && (host == 0 || host == host_bits) {
                    return Err(self.error(
                        Some(field.span()),
                        format!(
                            "ipv4 {address}/{prefix} is the subnet's network or broadcast address"
                        ),
                        "pick a host address inside the subnet, e.g. \"10.0.2.15/24\"",
                    ));
                }
                Ipv4Mode::Static {
                    address: address.octets(),
                    prefix,
                }
            };
        }
        let static_ipv4 = match config.ipv4 {
            Ipv4Mode::Static { address, prefix } => Some((Ipv4Addr::from(address), prefix)),
            _ => None,
        };
        let learned_or_absent = |what: &str| match config.ipv4 {
            Ipv4Mode::Dhcp => format!("DHCP supplies the {what} of a `dhcp` app"),
            _ => format!("a {what} needs a static `ipv4` address"),
        };
        if let Some(field) = &net.gateway {
            let fix = "name the router inside the app's IPv4 subnet, e.g. \"10.0.2.2\" (QEMU's), \
                       or leave `gateway` out";
            let Some((own, prefix)) = static_ipv4 else {
                return Err(self.error(Some(field.span()), learned_or_absent("gateway"), fix));
            };
            let gateway = self.ipv4_address(field, "gateway", fix)?;
            if !lite_abi::net::config::is_usable_ipv4(gateway.octets()) || gateway == own {
                return Err(self.error(
                    Some(field.span()),
                    format!("gateway {gateway} is no router's address"),
                    fix,
                ));
            }
            if !in_subnet(gateway, own, prefix) {
                return Err(self.error(
                    Some(field.span()),
                    format!("gateway {gateway} lies outside the app's subnet {own}/{prefix}"),
                    fix,
                ));
            }
            config.gateway4 = Some(gateway.octets());
        }
        if let Some(field) = &net.dns {
            let fix = "name a DNS server, e.g. \"10.0.2.3\" (QEMU's), or leave `dns` out";
            if static_ipv4.is_none() {
                return Err(self.error(Some(field.span()), learned_or_absent("DNS server"), fix));
            }
            let dns = self.ipv4_address(field, "dns", fix)?;
            if !lite_abi::net::config::is_usable_ipv4(dns.octets()) {
                return Err(self.error(
                    Some(field.span()),
                    format!("dns {dns} is no server's address"),
                    fix,
                ));
            }
            config.dns4 = Some(dns.octets());
        }

        if let Some(field) = &net.ipv6 {
            config.ipv6 = if field.get_ref().trim() == "slaac" {
                Ipv6Mode::Slaac
            } else {
                let (address, prefix) = self.cidr(field, "IPv6", 128, CIDR6_FIX)?;
                let address: Ipv6Addr = address.parse().map_err(|_| {
                    self.error(
                        Some(field.span()),
                        format!("ipv6 '{}' is not an IPv6 address", field.get_ref()),
                        CIDR6_FIX,
                    )
                })?;
                Ipv6Mode::Static {
                    address: address.octets(),
                    prefix,
                }
            };
        }
        if let Some(field) = &net.gateway6 {
            let fix = "name the router, e.g. \"fec0::2\" (QEMU's) or its link-local address, or \
                       leave `gateway6` out";
            let own = match config.ipv6 {
                Ipv6Mode::Static { address, .. } => Ipv6Addr::from(address),
                Ipv6Mode::Slaac => {
                    return Err(self.error(
                        Some(field.span()),
                        "router advertisements supply the gateway of a `slaac` app".into(),
                        fix,
                    ));
                }
                Ipv6Mode::None => {
                    return Err(self.error(
                        Some(field.span()),
                        "a gateway6 needs a static `ipv6` address".into(),
                        fix,
                    ));
                }
            };
            let gateway = self.ipv6_address(field, "gateway6", fix)?;
            if !lite_abi::net::config::is_usable_ipv6(gateway.octets()) || gateway == own {
                return Err(self.error(
                    Some(field.span()),
                    format!("gateway6 {gateway} is no router's address"),
                    fix,
                ));
            }
            config.gateway6 = Some(gateway.octets());
        }

        config.rx_slots = self.ring_slots(&net.rx_ring, "rx-ring")?;
        config.tx_slots = self.ring_slots(&net.tx_ring, "tx-ring")?;
        if let Some(field) = &net.max_sockets {
            config.max_sockets = u16::try_from(*field.get_ref())
                .ok()
                .filter(|count| (1..=MAX_SOCKETS).contains(count))
                .ok_or_else(|| {
                    self.error(
                        Some(field.span()),
                        format!("max-sockets {} is out of range", field.get_ref()),
                        &format!("allow 1 to {MAX_SOCKETS} sockets"),
                    )
                })?;
        }
        if let Some(field) = &net.socket_buffer {
            let bytes = self.size(
                field,
                "socket-buffer",
                u64::from(MIN_SOCKET_BUFFER),
                u64::from(MAX_SOCKET_BUFFER),
            )?;
            config.socket_buffer = u32::try_from(bytes).expect("checked against a u32 maximum");
        }

        // The same check kernel-lite makes when it reads the bundle: whatever the finer checks
        // above let through is named here.
        config.check().map_err(|error| {
            let (span, fix) = match error {
                NetConfigError::BadMac => (net.mac.as_ref().map(Spanned::span), MAC_FIX),
                NetConfigError::BadIpv4 => (
                    net.ipv4.as_ref().map(Spanned::span),
                    "an app's address may not be unspecified, loopback (127/8), multicast or \
                     broadcast (224/3); pick one such as \"10.0.2.15/24\"",
                ),
                NetConfigError::BadIpv6 => (
                    net.ipv6.as_ref().map(Spanned::span),
                    "an app's address may not be unspecified (::), loopback (::1) or multicast \
                     (ff00::/8); pick one such as \"fec0::15/64\"",
                ),
                NetConfigError::BadPrefix => (
                    net.ipv4.as_ref().or(net.ipv6.as_ref()).map(Spanned::span),
                    "an IPv4 prefix length is 1 to 32, an IPv6 one 1 to 128",
                ),
                NetConfigError::BadRingSize => (
                    net.rx_ring
                        .as_ref()
                        .or(net.tx_ring.as_ref())
                        .map(Spanned::span),
                    "use a power of two from 8 to 1024",
                ),
                NetConfigError::BadSocketCount => (
                    net.max_sockets.as_ref().map(Spanned::span),
                    "allow 1 to 8192 sockets",
                ),
                NetConfigError::BadSocketBuffer | NetConfigError::BadMode => (
                    net.socket_buffer.as_ref().map(Spanned::span),
                    "use a socket buffer from 1 KiB to 4 MiB",
                ),
            };
            let what = match error {
                NetConfigError::BadMac => format!("mac {}: {error}", format_mac(config.mac)),
                _ => error.to_string(),
            };
            self.error(span.or(Some(table_span.clone())), what, fix)
        })?;

        let mut forwards: Vec<Forward> = Vec::new();
        let mut forward_spans = Vec::new();
        for field in &net.forward {
            let forward = parse_forward(field.get_ref().trim()).map_err(|problem| {
                self.error(
                    Some(field.span()),
                    problem,
                    "write \"tcp:HOST-PORT:GUEST-PORT\" or \"udp:HOST-PORT:GUEST-PORT\" with ports \
                     from 1 to 65535, e.g. \"tcp:8080:80\"",
                )
            })?;
            let Some((address, _)) = static_ipv4 else {
                let problem = match config.ipv4 {
                    Ipv4Mode::Dhcp => {
                        "a `dhcp` app cannot have forwards: QEMU forwards to a fixed address, \
                         and the lease a DHCP app gets depends on the order the apps ask in"
                    }
                    _ => "forwards go to the app's IPv4 address, and the app has none",
                };
                return Err(self.error(
                    Some(field.span()),
                    problem.into(),
                    "give the app a static address in QEMU's network, e.g. ipv4 = \
                     \"10.0.2.15/24\"",
                ));
            };
            let (qemu_net, qemu_prefix) = QEMU_USER_NET;
            if !in_subnet(address, qemu_net, qemu_prefix)
                || QEMU_USER_NET_RESERVED.contains(&address)
            {
                return Err(self.error(
                    Some(field.span()),
                    format!(
                        "QEMU forwards only to its user network {qemu_net}/{qemu_prefix}, \
                         without its own 10.0.2.2 and 10.0.2.3; the app's address is {address}"
                    ),
                    "give the app an address such as \"10.0.2.15/24\", or drop the forward",
                ));
            }
            if forwards.iter().any(|earlier| {
                earlier.protocol == forward.protocol && earlier.host_port == forward.host_port
            }) {
                return Err(self.error(
                    Some(field.span()),
                    format!(
                        "host {} port {} is forwarded twice",
                        forward.protocol, forward.host_port
                    ),
                    "forward each host port to one guest port only: pick another host port",
                ));
            }
            if forwards.iter().any(|earlier| {
                earlier.protocol == forward.protocol && earlier.guest_port == forward.guest_port
            }) {
                return Err(self.error(
                    Some(field.span()),
                    format!(
                        "{} port {} of this app is forwarded twice",
                        forward.protocol, forward.guest_port
                    ),
                    "forward each guest port from one host port",
                ));
            }
            forwards.push(forward);
            forward_spans.push(field.span());
        }
        Ok(CheckedNet {
            config,
            forwards,
            forward_spans,
            mac_span: net.mac.as_ref().map_or(table_span.clone(), Spanned::span),
            ipv4_span: net.ipv4.as_ref().map_or(table_span.clone(), Spanned::span),
            ipv6_span: net.ipv6.as_ref().map_or(table_span, Spanned::span),
        })
    }
}

/// The 1-based line of byte `offset` in `text`.
pub fn line_number(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Parses and checks a manifest's text; `file` names it in errors.
pub fn parse(file: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let checker = Checker { file, text };
    let raw: RawManifest = toml::from_str(text).map_err(|error| {
        let problem = error.message().trim().to_owned();
        let disk_fix = format!("in [app.disk] use only the keys {}", disk::KEYS);
        let fix = if problem.contains("unknown field") && problem.contains("`ipv4`") {
            "in [app.net] use only the keys ipv4, gateway, dns, ipv6, gateway6, mac, forward, \
             rx-ring, tx-ring, max-sockets, socket-buffer"
        } else if problem.contains("unknown field") && problem.contains("`queue`") {
            &disk_fix
        } else if problem.contains("unknown field") {
            "use only the keys name, program, memory, stack, log, restart, restart-limit, and \
             [app.net] and [app.disk] tables"
        } else if problem.contains("expected a sequence") {
            "`forward` is a list, e.g. forward = [\"tcp:8080:80\"]"
        } else if problem.contains("missing field `size`") {
            "every [app.disk] needs `size`, e.g. size = \"64 MiB\""
        } else if problem.contains("missing field") {
            "every [[app]] needs at least `name` and `memory`"
        } else {
            "write valid TOML: a list of [[app]] tables"
        };
        checker.error(error.span(), problem, fix)
    })?;
    if raw.app.is_empty() {
        return Err(checker.error(
            None,
            "the bundle has no apps".into(),
            "add an [[app]] table with a name and a memory quota",
        ));
    }
    if raw.app.len() > MAX_APPS {
        return Err(checker.error(
            Some(raw.app[MAX_APPS].span()),
            format!(
                "the bundle has {} apps; an image runs at most {MAX_APPS}",
                raw.app.len()
            ),
            "split the apps over several bundles",
        ));
    }
    let mut apps: Vec<App> = Vec::new();
    // Each app's checked `[app.net]` with its spans, beside `apps`, for the cross-app rules.
    let mut nets: Vec<Option<CheckedNet>> = Vec::new();
    for entry in &raw.app {
        let raw_app = entry.get_ref();
        let name = raw_app.name.get_ref().clone();
        if name.is_empty()
            || name.len() > NAME_LEN
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(checker.error(
                Some(raw_app.name.span()),
                format!("app name '{name}' is not 1 to {NAME_LEN} letters, digits, '-' or '_'"),
                "pick a short name such as \"web-1\"",
            ));
        }
        if apps.iter().any(|app| app.name == name) {
            return Err(checker.error(
                Some(raw_app.name.span()),
                format!("app name '{name}' is used twice"),
                "give every app of the bundle its own name",
            ));
        }
        let program_field = raw_app.program.as_ref().unwrap_or(&raw_app.name);
        let program = program_field.get_ref().clone();
        if crate::programs::feature_of(&program).is_none() {
            let known: Vec<&str> = crate::programs::PROGRAMS
                .iter()
                .map(|(name, _)| *name)
                .collect();
            return Err(checker.error(
                Some(program_field.span()),
                format!("unknown app program '{program}'"),
                &format!("use one of: {}", known.join(", ")),
            ));
        }
        let heap_bytes = checker.size(&raw_app.memory, "memory", MIN_HEAP_BYTES, MAX_HEAP_BYTES)?;
        let stack_bytes = match &raw_app.stack {
            Some(stack) => checker.size(stack, "stack", 4096, MAX_STACK_BYTES)?,
            None => DEFAULT_STACK_BYTES,
        };
        let log_level = match raw_app.log.as_ref() {
            None => 3,
            Some(level) => match level.get_ref().as_str() {
                "off" => 0,
                "error" => 1,
                "warn" => 2,
                "info" => 3,
                "debug" => 4,
                "trace" => 5,
                other => {
                    return Err(checker.error(
                        Some(level.span()),
                        format!("unknown log level '{other}'"),
                        "use off, error, warn, info, debug or trace",
                    ));
                }
            },
        };
        let limit = match &raw_app.restart_limit {
            None => DEFAULT_RESTART_LIMIT,
            Some(limit) => u16::try_from(*limit.get_ref()).map_err(|_| {
                checker.error(
                    Some(limit.span()),
                    format!("restart-limit {} is out of range", limit.get_ref()),
                    "use a limit from 0 to 65535",
                )
            })?,
        };
        let restart = match raw_app.restart.as_ref() {
            None => RestartPolicy::Never,
            Some(policy) => match policy.get_ref().as_str() {
                "never" => RestartPolicy::Never,
                "on-failure" => RestartPolicy::OnFailure { limit },
                "always" => RestartPolicy::Always { limit },
                other => {
                    return Err(checker.error(
                        Some(policy.span()),
                        format!("unknown restart policy '{other}'"),
                        "use never, on-failure or always",
                    ));
                }
            },
        };
        let net = match &raw_app.net {
            Some(raw_net) => Some(checker.net(&name, raw_net)?),
            None => None,
        };
        if let Some(net) = &net {
            check_against_earlier_apps(&checker, net, &apps, &nets)?;
        }
        let disk = match &raw_app.disk {
            Some(raw_disk) => {
                if apps.iter().filter(|app| app.disk.is_some()).count() == disk::MAX_EXTENTS {
                    return Err(checker.error(
                        Some(raw_disk.span()),
                        format!(
                            "app '{name}' is one app with [app.disk] too many: the disk table \
                             holds at most {} extents",
                            disk::MAX_EXTENTS
                        ),
                        "split the apps with disks over several bundles",
                    ));
                }
                Some(checker.disk(raw_disk)?)
            }
            None => None,
        };
        apps.push(App {
            name,
            program,
            heap_bytes,
            stack_bytes,
            log_level,
            restart,
            net: net.as_ref().map(|net| net.config),
            disk,
            forwards: net
                .as_ref()
                .map(|net| net.forwards.clone())
                .unwrap_or_default(),
        });
        nets.push(net);
    }
    if let Some(dhcp_app) = apps
        .iter()
        .find(|app| app.net.is_some_and(|net| net.ipv4 == Ipv4Mode::Dhcp))
    {
        for (app, net) in apps.iter().zip(&nets) {
            let (Some(address), Some(net)) = (app.net.and_then(|net| net.static_ipv4()), net)
            else {
                continue;
            };
            let address = Ipv4Addr::from(address);
            if QEMU_DHCP_POOL.contains(&address) {
                return Err(checker.error(
                    Some(net.ipv4_span.clone()),
                    format!(
                        "app '{}' has {address}, inside the addresses QEMU's DHCP server leases \
                         ({} to {}), and app '{}' uses dhcp: both could end up with it",
                        app.name,
                        QEMU_DHCP_POOL.start(),
                        QEMU_DHCP_POOL.end(),
                        dhcp_app.name
                    ),
                    "give the static app an address outside the pool, e.g. \"10.0.2.100/24\"",
                ));
            }
        }
    }
    Ok(Manifest {
        name: file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        path: file.to_path_buf(),
        apps,
    })
}

/// The rules between apps: no two bind one MAC, IPv4 or IPv6 address, and no two forwards take
/// one protocol's host port.
fn check_against_earlier_apps(
    checker: &Checker<'_>,
    net: &CheckedNet,
    earlier_apps: &[App],
    earlier_nets: &[Option<CheckedNet>],
) -> Result<(), ManifestError> {
    for (earlier_app, earlier_net) in earlier_apps.iter().zip(earlier_nets) {
        let Some(earlier_net) = earlier_net else {
            continue;
        };
        let (ours, theirs) = (&net.config, &earlier_net.config);
        if shares_an_address(ours, theirs) {
            let (what, span) = if ours.mac == theirs.mac {
                (
                    format!("MAC {}", format_mac(ours.mac)),
                    net.mac_span.clone(),
                )
            } else if ours.static_ipv4().is_some() && ours.static_ipv4() == theirs.static_ipv4() {
                let address = Ipv4Addr::from(ours.static_ipv4().unwrap_or_default());
                (format!("IPv4 address {address}"), net.ipv4_span.clone())
            } else {
                let address = Ipv6Addr::from(ours.static_ipv6().unwrap_or_default());
                (format!("IPv6 address {address}"), net.ipv6_span.clone())
            };
            return Err(checker.error(
                Some(span),
                format!("app '{}' already has the {what}", earlier_app.name),
                "give every app its own MAC and addresses (leave `mac` out to derive one from \
                 the app's name)",
            ));
        }
        for (forward, span) in net.forwards.iter().zip(&net.forward_spans) {
            if earlier_app.forwards.iter().any(|earlier| {
                earlier.protocol == forward.protocol && earlier.host_port == forward.host_port
            }) {
                return Err(checker.error(
                    Some(span.clone()),
                    format!(
                        "host {} port {} is already forwarded to app '{}'",
                        forward.protocol, forward.host_port, earlier_app.name
                    ),
                    "forward each host port to one app only: pick another host port",
                ));
            }
        }
    }
    Ok(())
}

/// Reads and checks the manifest at `path`.
pub fn load(path: &Path) -> anyhow::Result<Manifest> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        anyhow::anyhow!("cannot read bundle manifest {}: {error}", path.display())
    })?;
    Ok(parse(path, &text)?)
}

/// Where the bundle called `name` lives: `apps/bundles/NAME.toml`, or `tests/bundles/NAME.toml`.
pub fn find(name: &str) -> anyhow::Result<PathBuf> {
    let root = crate::workspace_root();
    let candidates = [root.join("apps/bundles"), root.join("tests/bundles")];
    for folder in &candidates {
        let path = folder.join(format!("{name}.toml"));
        if path.is_file() {
            return Ok(path);
        }
    }
    let mut known: Vec<String> = candidates
        .iter()
        .filter_map(|folder| std::fs::read_dir(folder).ok())
        .flatten()
        .filter_map(|entry| {
            entry
                .ok()?
                .path()
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .collect();
    known.sort();
    anyhow::bail!("no bundle named '{name}' (known: {})", known.join(", "))
}

/// The image features the manifest's programs need, sorted and without repeats.
pub fn features(manifest: &Manifest) -> Vec<&'static str> {
    let mut features: Vec<&'static str> = manifest
        .apps
        .iter()
        .filter_map(|app| crate::programs::feature_of(&app.program))
        .collect();
    features.sort_unstable();
    features.dedup();
    features
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn check(text: &str) -> Result<Manifest, ManifestError> {
        parse(Path::new("bundles/x.toml"), text)
    }

    #[test]
    fn the_shipped_bundles_parse() {
        for folder in ["apps/bundles", "tests/bundles"] {
            for entry in std::fs::read_dir(crate::workspace_root().join(folder)).unwrap() {
                let path = entry.unwrap().path();
                load(&path).unwrap_or_else(|error| panic!("{error}"));
            }
        }
    }

    #[test]
    fn a_full_app_parses_with_defaults() {
        let manifest =
            check("[[app]]\nname = \"a\"\nprogram = \"hello\"\nmemory = \"2 MiB\"\n").unwrap();
        assert_eq!(
            manifest.apps,
            [App {
                name: "a".into(),
                program: "hello".into(),
                heap_bytes: 2 << 20,
                stack_bytes: DEFAULT_STACK_BYTES,
                log_level: 3,
                restart: RestartPolicy::Never,
                net: None,
                forwards: Vec::new(),
                disk: None,
            }]
        );
        let manifest = check("[[app]]\nname = \"hello\"\nmemory = 1048576\nrestart = \"on-failure\"\nrestart-limit = 5\nlog = \"debug\"\n").unwrap();
        assert_eq!(
            manifest.apps[0].restart,
            RestartPolicy::OnFailure { limit: 5 }
        );
        assert_eq!(manifest.apps[0].log_level, 4);
    }

    pub(super) fn refused(text: &str) -> ManifestError {
        check(text).expect_err("manifest should be refused")
    }

    #[test]
    fn bad_manifests_name_the_file_the_line_and_the_fix() {
        let error = refused("[[app]]\nname = \"a\"\nprogram = \"nope\"\nmemory = \"1 MiB\"\n");
        assert_eq!(error.line, Some(3));
        assert!(
            error.problem.contains("unknown app program 'nope'"),
            "{error}"
        );
        assert!(error.fix.contains("hello"), "{error}");
        assert!(
            error.to_string().starts_with("bundles/x.toml:3: "),
            "{error}"
        );

        let error = refused(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n",
        );
        assert_eq!(error.line, Some(5));
        assert!(error.problem.contains("used twice"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = 0\n");
        assert_eq!(error.line, Some(3));
        assert!(error.problem.contains("memory is zero"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"900 GiB\"\n");
        assert!(error.problem.contains("absurd"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\ncolour = \"red\"\n");
        assert_eq!(error.line, Some(4));
        assert!(error.problem.contains("unknown field"), "{error}");
        assert!(error.fix.contains("restart-limit"), "{error}");

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"lots\"\n");
        assert!(error.problem.contains("not a size"), "{error}");

        let error =
            refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\nrestart = \"sometimes\"\n");
        assert_eq!(error.line, Some(4));

        let error = refused("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\nlog = \"loud\"\n");
        assert!(error.problem.contains("log level"), "{error}");

        assert!(refused("").problem.contains("no apps"));
        assert!(
            refused("[[app]]\nmemory = \"1 MiB\"\n")
                .problem
                .contains("missing field")
        );
    }

    /// The module docs' example, as a test keeps it honest.
    const NET_EXAMPLE: &str = r#"[[app]]
name = "http"
program = "hello"
memory = "4 MiB"
[app.net]
ipv4 = "10.0.2.15/24"
gateway = "10.0.2.2"
dns = "10.0.2.3"
ipv6 = "fec0::15/64"
gateway6 = "fec0::2"
mac = "02:00:00:00:00:15"
forward = ["tcp:8080:80", "udp:5353:53"]
rx-ring = 256
tx-ring = 512
max-sockets = 1100
socket-buffer = "16 KiB"
"#;

    #[test]
    fn the_module_docs_net_example_is_the_one_tested() {
        let docs: String = include_str!("bundle.rs")
            .lines()
            .filter_map(|line| line.strip_prefix("//! "))
            .collect::<Vec<_>>()
            .join("\n");
        assert!(docs.contains("ipv4 = \"10.0.2.15/24\""), "{docs}");
        assert!(docs.contains("forward = [\"tcp:8080:80\", \"udp:5353:53\"]"));
    }

    #[test]
    fn a_full_net_table_parses() {
        let manifest = check(NET_EXAMPLE).unwrap();
        let app = &manifest.apps[0];
        let mut ipv6 = [0u8; 16];
        ipv6[..2].copy_from_slice(&[0xfe, 0xc0]);
        ipv6[15] = 0x15;
        let mut gateway6 = ipv6;
        gateway6[15] = 2;
        assert_eq!(
            app.net,
            Some(NetConfig {
                mac: [2, 0, 0, 0, 0, 0x15],
                ipv4: Ipv4Mode::Static {
                    address: [10, 0, 2, 15],
                    prefix: 24
                },
                gateway4: Some([10, 0, 2, 2]),
                dns4: Some([10, 0, 2, 3]),
                ipv6: Ipv6Mode::Static {
                    address: ipv6,
                    prefix: 64
                },
                gateway6: Some(gateway6),
                rx_slots: 256,
                tx_slots: 512,
                max_sockets: 1100,
                socket_buffer: 16 * 1024,
            })
        );
        assert_eq!(
            app.forwards,
            [
                Forward {
                    protocol: Protocol::Tcp,
                    host_port: 8080,
                    guest_port: 80
                },
                Forward {
                    protocol: Protocol::Udp,
                    host_port: 5353,
                    guest_port: 53
                }
            ]
        );
        assert_eq!(app.spec().net, app.net);

        // An empty table: a derived MAC, link-local IPv6 only, the default limits.
        let manifest = check("[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\n").unwrap();
        assert_eq!(
            manifest.apps[0].net,
            Some(NetConfig::new(derived_mac("hello")))
        );
        assert!(manifest.apps[0].forwards.is_empty());

        // DHCP and SLAAC; TCP and UDP may share a host port.
        let manifest = check(
            "[[app]]\nname = \"a\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\nipv4 = \"dhcp\"\nipv6 = \"slaac\"\n\
             [[app]]\nname = \"b\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\nipv4 = \"10.0.2.100/24\"\nforward = [\"tcp:53:53\", \"udp:53:53\"]\n",
        )
        .unwrap();
        let a = manifest.apps[0].net.unwrap();
        assert_eq!((a.ipv4, a.ipv6), (Ipv4Mode::Dhcp, Ipv6Mode::Slaac));
        assert_eq!(manifest.apps[1].forwards.len(), 2);
    }

    /// A one-app manifest whose `[app.net]` holds `lines` (its first line is line 5).
    fn net_refused(lines: &str) -> ManifestError {
        refused(&format!(
            "[[app]]\nname = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\n{lines}\n"
        ))
    }

    #[test]
    fn bad_net_tables_name_the_line_and_the_fix() {
        let cases: &[(&str, usize, &str)] = &[
            ("ipv4 = \"10.0.2.15\"", 5, "no prefix length"),
            ("ipv4 = \"10.0.2/24\"", 5, "not an IPv4 address"),
            ("ipv4 = \"10.0.2.15/33\"", 5, "/33 is out of range"),
            ("ipv4 = \"10.0.2.15/0\"", 5, "/0 is out of range"),
            ("ipv4 = \"127.0.0.1/8\"", 5, "unusable IPv4 address"),
            ("ipv4 = \"224.0.0.1/4\"", 5, "unusable IPv4 address"),
            ("ipv4 = \"10.0.2.0/24\"", 5, "network or broadcast"),
            ("ipv4 = \"10.0.2.255/24\"", 5, "network or broadcast"),
            ("ipv6 = \"fec0::15\"", 5, "no prefix length"),
            ("ipv6 = \"fec0::15/129\"", 5, "/129 is out of range"),
            ("ipv6 = \"fec0::zz/64\"", 5, "not an IPv6 address"),
            ("ipv6 = \"ff02::1/64\"", 5, "unusable IPv6 address"),
            ("ipv6 = \"::1/128\"", 5, "unusable IPv6 address"),
            (
                "ipv4 = \"10.0.2.15/24\"\ngateway = \"10.0.3.2\"",
                6,
                "outside the app's subnet",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\ngateway = \"10.0.2\"",
                6,
                "not an IPv4 address",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\ngateway = \"10.0.2.15\"",
                6,
                "no router's address",
            ),
            (
                "ipv4 = \"dhcp\"\ngateway = \"10.0.2.2\"",
                6,
                "DHCP supplies the gateway",
            ),
            ("gateway = \"10.0.2.2\"", 5, "needs a static `ipv4`"),
            ("dns = \"10.0.2.3\"", 5, "needs a static `ipv4`"),
            (
                "ipv4 = \"10.0.2.15/24\"\ndns = \"0.0.0.0\"",
                6,
                "no server's address",
            ),
            (
                "ipv6 = \"slaac\"\ngateway6 = \"fec0::2\"",
                6,
                "router advertisements",
            ),
            ("gateway6 = \"fec0::2\"", 5, "needs a static `ipv6`"),
            (
                "ipv6 = \"fec0::15/64\"\ngateway6 = \"ff02::2\"",
                6,
                "no router's address",
            ),
            ("mac = \"02:00:00:00:15\"", 5, "not six hex bytes"),
            ("mac = \"02:00:00:00:00:zz\"", 5, "not six hex bytes"),
            (
                "mac = \"01:00:5e:00:00:01\"",
                5,
                "zero, multicast or broadcast",
            ),
            (
                "mac = \"00:00:00:00:00:00\"",
                5,
                "zero, multicast or broadcast",
            ),
            (
                "mac = \"ff:ff:ff:ff:ff:ff\"",
                5,
                "zero, multicast or broadcast",
            ),
            ("rx-ring = 100", 5, "not a power of two"),
            ("tx-ring = 2048", 5, "not a power of two"),
            ("tx-ring = 4", 5, "not a power of two"),
            ("max-sockets = 0", 5, "max-sockets 0 is out of range"),
            ("max-sockets = 9000", 5, "out of range"),
            ("socket-buffer = \"512 B\"", 5, "below the minimum"),
            ("socket-buffer = \"64 MiB\"", 5, "absurd"),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:8080\"]",
                6,
                "not PROTOCOL:HOST-PORT:GUEST-PORT",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"sctp:8080:80\"]",
                6,
                "unknown protocol 'sctp'",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:0:80\"]",
                6,
                "host port 0",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:8080:0\"]",
                6,
                "guest port 0",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:70000:80\"]",
                6,
                "not a number from 1 to 65535",
            ),
            ("forward = [\"tcp:8080:80\"]", 5, "the app has none"),
            (
                "ipv4 = \"dhcp\"\nforward = [\"tcp:8080:80\"]",
                6,
                "a `dhcp` app cannot have forwards",
            ),
            (
                "ipv4 = \"192.168.1.5/24\"\nforward = [\"tcp:8080:80\"]",
                6,
                "QEMU forwards only",
            ),
            (
                "ipv4 = \"10.0.2.2/24\"\nforward = [\"tcp:8080:80\"]",
                6,
                "QEMU forwards only",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:8080:80\", \"tcp:8080:81\"]",
                6,
                "host tcp port 8080 is forwarded twice",
            ),
            (
                "ipv4 = \"10.0.2.15/24\"\nforward = [\"udp:8080:80\", \"udp:8081:80\"]",
                6,
                "udp port 80 of this app is forwarded twice",
            ),
            ("colour = \"red\"", 5, "unknown field"),
        ];
        for (lines, line, problem) in cases {
            let error = net_refused(lines);
            assert!(
                error.problem.contains(problem),
                "{lines:?}: expected {problem:?} in\n{error}"
            );
            assert_eq!(error.line, Some(*line), "{lines:?}: {error}");
            assert!(!error.fix.is_empty(), "{lines:?}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("bundles/x.toml:{line}: "))
            );
        }
        assert!(net_refused("colour = \"red\"").fix.contains("max-sockets"));
        assert!(
            net_refused("mac = \"01:00:5e:00:00:01\"")
                .fix
                .contains("02:00:00:00:00:15")
        );
    }

    /// Two apps, `a` then `b`, with these `[app.net]` lines: `a`'s start on line 6, `b`'s on
    /// line 11 plus the number of `a`'s lines.
    fn pair_refused(a: &str, b: &str) -> ManifestError {
        refused(&format!(
            "[[app]]\nname = \"a\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\n{a}\n\
             [[app]]\nname = \"b\"\nprogram = \"hello\"\nmemory = \"1 MiB\"\n[app.net]\n{b}\n"
        ))
    }

    #[test]
    fn apps_may_not_share_addresses_or_host_ports() {
        let error = pair_refused("mac = \"02:00:00:00:00:15\"", "mac = \"02:00:00:00:00:15\"");
        assert_eq!(error.line, Some(12), "{error}");
        assert!(
            error
                .problem
                .contains("app 'a' already has the MAC 02:00:00:00:00:15"),
            "{error}"
        );

        let error = pair_refused("ipv4 = \"10.0.2.15/24\"", "ipv4 = \"10.0.2.15/16\"");
        assert_eq!(error.line, Some(12), "{error}");
        assert!(error.problem.contains("IPv4 address 10.0.2.15"), "{error}");

        let error = pair_refused(
            "ipv6 = \"fec0::15/64\"",
            "ipv4 = \"10.0.2.16/24\"\nipv6 = \"fec0::15/64\"",
        );
        assert_eq!(error.line, Some(13), "{error}");
        assert!(error.problem.contains("IPv6 address fec0::15"), "{error}");

        let error = pair_refused(
            "ipv4 = \"10.0.2.15/24\"\nforward = [\"tcp:8080:80\"]",
            "ipv4 = \"10.0.2.16/24\"\nforward = [\"udp:8080:80\", \"tcp:8080:80\"]",
        );
        assert_eq!(error.line, Some(14), "{error}");
        assert!(
            error
                .problem
                .contains("host tcp port 8080 is already forwarded to app 'a'"),
            "{error}"
        );

        let error = pair_refused("ipv4 = \"dhcp\"", "ipv4 = \"10.0.2.20/24\"");
        assert_eq!(error.line, Some(12), "{error}");
        assert!(
            error.problem.contains("QEMU's DHCP server leases"),
            "{error}"
        );
        assert!(error.fix.contains("outside the pool"), "{error}");
    }

    #[test]
    fn forwards_parse() {
        assert_eq!(
            parse_forward("udp:5353:53"),
            Ok(Forward {
                protocol: Protocol::Udp,
                host_port: 5353,
                guest_port: 53
            })
        );
        assert!(parse_forward("tcp:1:2:3").is_err());
        assert_eq!(parse_mac("02-00-00-00-00-15"), Some([2, 0, 0, 0, 0, 0x15]));
        assert_eq!(format_mac([2, 0, 0, 0, 0, 0x15]), "02:00:00:00:00:15");
        assert!(in_subnet(
            Ipv4Addr::new(10, 0, 2, 200),
            Ipv4Addr::new(10, 0, 2, 0),
            24
        ));
        assert!(!in_subnet(
            Ipv4Addr::new(10, 0, 3, 1),
            Ipv4Addr::new(10, 0, 2, 0),
            24
        ));
        assert!(in_subnet(
            Ipv4Addr::new(10, 0, 2, 1),
            Ipv4Addr::new(10, 0, 2, 1),
            32
        ));
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("64 KiB"), Some(65536));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1 TB"), None);
        assert_eq!(parse_size("1 TiB"), Some(1 << 40));
        assert_eq!(human(1 << 40), "1 TiB");
        assert_eq!(human(3 << 20), "3 MiB");
        assert_eq!(parse_size("99999999999999 GiB"), None);
    }
}
