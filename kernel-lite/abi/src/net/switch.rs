//! The frame switch: which app a frame received from the NIC belongs to, and whether a frame an
//! app wants to transmit may leave. kernel-lite owns the one NIC and runs every frame in both
//! directions through these functions; they are pure logic over byte slices (no allocation, no
//! state besides the [`Binding`]s the caller keeps), so they are tested on the host.
//!
//! Frames are Ethernet II without FCS: a 14-byte header (destination MAC, source MAC,
//! ethertype). VLAN tags are not understood: a tagged frame has an unsupported ethertype.
//! Every field is read through a bounds check; no input makes these functions panic.
//!
//! # Receiving ([`route_received`])
//!
//! - Shorter than an Ethernet header: [`Delivery::Malformed`].
//! - Unicast destination MAC: the app whose MAC it is, else [`Delivery::NoOwner`]. Nothing past
//!   the Ethernet header is looked at.
//! - Broadcast or multicast destination MAC, by ethertype:
//!   - ARP: the app whose IPv4 address is the target protocol address, else `NoOwner`. ARP that
//!     is not Ethernet/IPv4 or is cut short is `Malformed`.
//!   - IPv4 carrying UDP to port 68 (a DHCP server answering a client): the DHCP app whose MAC
//!     is the BOOTP client hardware address, else `NoOwner`; a DHCP answer is meant for one
//!     client even when it is broadcast. Any other IPv4 broadcast or multicast goes to every
//!     bound app, [`Delivery::Every`] (a later fragment, whose UDP header is in the first one,
//!     counts as "other").
//!   - IPv6: an ICMPv6 neighbour solicitation goes to the app owning its target address, else
//!     `NoOwner`. Anything else sent to a solicited-node group (`ff02::1:ffXX:XXXX`) goes to the
//!     first app with an address whose low 24 bits match, else `NoOwner` (nobody here joined
//!     that group). Other multicast (router advertisements to all-nodes, ...): `Every`.
//!   - Any other ethertype: `NoOwner`.
//!
//! An app owns an IPv6 address when it is its static address, its link-local address, or, for
//! a SLAAC app, any non-multicast address whose interface identifier (low 64 bits) is the
//! EUI-64 of its MAC: the prefix comes from router advertisements kernel-lite does not track.
//!
//! # Transmitting ([`check_transmit`])
//!
//! The frame must hold an Ethernet header ([`Refusal::Malformed`]) whose source MAC is the
//! app's ([`Refusal::SourceMac`]); then, by ethertype:
//! - ARP: Ethernet/IPv4 ARP, whole (`Malformed`); the sender hardware address is the app's MAC
//!   (`SourceMac`); the sender protocol address is the app's IPv4 address or `0.0.0.0`, an ARP
//!   probe (RFC 5227) ([`Refusal::SourceIp`]).
//! - IPv4: version 4, header length at least 20 bytes, header and total length within the frame
//!   (`Malformed`); the source address is the app's (`SourceIp`). A DHCP app may also send from
//!   `0.0.0.0`, but only an unfragmented UDP datagram from port 68 to port 67: a DHCP client
//!   before it has (or while it re-acquires) a lease. Whatever its source, nothing may come
//!   from UDP port 67 (apps are not DHCP servers) and a message to port 67 must carry the app's
//!   own MAC as client hardware address ([`Refusal::Impersonation`]), so no app can move
//!   another's lease.
//! - IPv6: version 6, the 40-byte header and its payload length within the frame (`Malformed`);
//!   the source is an address the app owns (see above), or `::` for the two ICMPv6 messages a
//!   host sends before it has an address: router solicitation (133) and neighbour solicitation
//!   (135, duplicate address detection), with ICMPv6 directly after the IPv6 header. Neighbour
//!   discovery speaks for the app alone (`Impersonation`): no router advertisement (134) or
//!   redirect (137); a neighbour advertisement (136) only for an address the app owns; every
//!   source or target link-layer option names the app's MAC; and no extension header before
//!   the payload, so nothing hides from these checks.
//! - Any other ethertype: [`Refusal::Ethertype`].
//!
//! Destinations are not restricted: an app may talk to anyone, it just may not pretend to be
//! someone else.
//!
//! # DHCP snooping ([`dhcp_ack`], [`Binding::learn_ipv4`])
//!
//! A DHCP app's IPv4 address is not in its manifest. kernel-lite looks at each frame received
//! from the NIC with [`dhcp_ack`]; when a server acknowledges a lease for a DHCP app's MAC, it
//! records the address with [`Binding::learn_ipv4`], and from then on ARP for that address
//! reaches the app and the app may send from it. Only frames from the NIC should be snooped:
//! a frame one app sends to another could otherwise hand the second app any address.

use super::config::{Ipv4Mode, Ipv6Mode, NetConfig, eui64, is_usable_ipv4, link_local_ipv6};

/// Bytes of an Ethernet II header (no VLAN tag, no FCS).
pub const ETHERNET_HEADER: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

const IP_PROTOCOL_UDP: u8 = 17;
const IP_PROTOCOL_ICMPV6: u8 = 58;
const DHCP_SERVER_PORT: u16 = 67;
const DHCP_CLIENT_PORT: u16 = 68;
const ICMPV6_ROUTER_SOLICITATION: u8 = 133;
const ICMPV6_NEIGHBOUR_SOLICITATION: u8 = 135;

/// An app's addresses as the switch checks them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    mac: [u8; 6],
    /// The static address, or the one learned from a DHCP server's acknowledgement.
    ipv4: Option<[u8; 4]>,
    dhcp: bool,
    /// The static address; SLAAC addresses are recognised by their interface identifier.
    ipv6: Option<[u8; 16]>,
    slaac: bool,
    link_local: [u8; 16],
}

impl Binding {
    /// The binding a (checked) network configuration asks for; a DHCP app starts without an
    /// IPv4 address.
    pub fn of(config: &NetConfig) -> Binding {
        Binding {
            mac: config.mac,
            ipv4: config.static_ipv4(),
            dhcp: config.ipv4 == Ipv4Mode::Dhcp,
            ipv6: config.static_ipv6(),
            slaac: config.ipv6 == Ipv6Mode::Slaac,
            link_local: link_local_ipv6(config.mac),
        }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The static IPv4 address, or the one learned by DHCP snooping.
    pub fn ipv4(&self) -> Option<[u8; 4]> {
        self.ipv4
    }

    /// Whether the app gets its IPv4 address from DHCP.
    pub fn uses_dhcp(&self) -> bool {
        self.dhcp
    }

    /// The static IPv6 address, if any.
    pub fn ipv6(&self) -> Option<[u8; 16]> {
        self.ipv6
    }

    /// Whether the app configures IPv6 addresses from router advertisements.
    pub fn uses_slaac(&self) -> bool {
        self.slaac
    }

    /// The link-local IPv6 address (fe80::/64 and the MAC's EUI-64).
    pub fn link_local(&self) -> [u8; 16] {
        self.link_local
    }

    /// DHCP snooping: records the lease a DHCP server acknowledged for this app's MAC, replacing
    /// any earlier one. Has no effect on an app that does not use DHCP (its address comes from
    /// the manifest, not the network) or for an address no host may have (zero, loopback,
    /// multicast, broadcast). Returns whether the address was recorded.
    pub fn learn_ipv4(&mut self, address: [u8; 4]) -> bool {
        if !self.dhcp || !is_usable_ipv4(address) {
            return false;
        }
        self.ipv4 = Some(address);
        true
    }

    /// Whether `address` is the app's IPv4 address.
    pub fn owns_ipv4(&self, address: [u8; 4]) -> bool {
        self.ipv4 == Some(address)
    }

    /// Whether `address` is one of the app's IPv6 addresses (see the module docs).
    pub fn owns_ipv6(&self, address: [u8; 16]) -> bool {
        if self.ipv6 == Some(address) || self.link_local == address {
            return true;
        }
        // Multicast addresses are never a host's own, whatever their low bits.
        self.slaac && address[0] != 0xff && address[8..] == eui64(self.mac)
    }

    /// Whether one of the app's IPv6 addresses has these low 24 bits, i.e. the app listens on
    /// the solicited-node group they name. SLAAC addresses share the link-local address's
    /// interface identifier, so checking the link-local one covers them.
    fn joins_solicited_node(&self, low_bits: [u8; 3]) -> bool {
        let matches = |address: [u8; 16]| address[13..] == low_bits;
        matches(self.link_local) || self.ipv6.is_some_and(matches)
    }
}

/// Where a received frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// To one app: an index into the bindings slice.
    App(usize),
    /// To every app that has a binding.
    Every,
    /// To no app: nobody here has the address it is for (or the protocol is not switched).
    NoOwner,
    /// Too short or inconsistent to be the protocol it claims to be; dropped.
    Malformed,
}

/// Why a transmitted frame may not leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too short or inconsistent to be the protocol it claims to be.
    Malformed,
    /// The Ethernet source or the ARP sender hardware address is not the app's MAC.
    SourceMac,
    /// The ARP sender, IPv4 or IPv6 source address is not one of the app's.
    SourceIp,
    /// Neither ARP, IPv4 nor IPv6.
    Ethertype,
    /// A message only a router or a DHCP server may send (router advertisement, redirect,
    /// DHCP from port 67), or one that speaks for another host (a neighbour advertisement for
    /// an address or a link-layer address that is not the app's, a DHCP request carrying
    /// another client's hardware address).
    Impersonation,
}

impl core::fmt::Display for Refusal {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            Refusal::Malformed => "malformed frame",
            Refusal::SourceMac => "source MAC is not the app's",
            Refusal::SourceIp => "source IP address is not the app's",
            Refusal::Ethertype => "ethertype is not ARP, IPv4 or IPv6",
            Refusal::Impersonation => "speaks for a router, a DHCP server or another host",
        };
        f.write_str(text)
    }
}

/// Decides where a received frame goes. `bindings[i]` is app i's binding, `None` for apps
/// without a network. Rules: see the module docs.
pub fn route_received(bindings: &[Option<Binding>], frame: &[u8]) -> Delivery {
    let Some(ethernet) = Ethernet::parse(frame) else {
        return Delivery::Malformed;
    };
    if !is_group_mac(ethernet.destination) {
        return first_owner(bindings, |binding| binding.mac == ethernet.destination);
    }
    match ethernet.ethertype {
        ETHERTYPE_ARP => match Arp::parse(ethernet.payload) {
            Some(arp) => first_owner(bindings, |binding| binding.owns_ipv4(arp.target_ip)),
            None => Delivery::Malformed,
        },
        ETHERTYPE_IPV4 => route_group_ipv4(bindings, ethernet.payload),
        ETHERTYPE_IPV6 => route_group_ipv6(bindings, ethernet.payload),
        _ => Delivery::NoOwner,
    }
}

/// Checks that a frame app `own` wants to send carries only its own source MAC and addresses.
/// Rules: see the module docs.
pub fn check_transmit(own: &Binding, frame: &[u8]) -> Result<(), Refusal> {
    let ethernet = Ethernet::parse(frame).ok_or(Refusal::Malformed)?;
    if ethernet.source != own.mac {
        return Err(Refusal::SourceMac);
    }
    match ethernet.ethertype {
        ETHERTYPE_ARP => {
            let arp = Arp::parse(ethernet.payload).ok_or(Refusal::Malformed)?;
            if arp.sender_mac != own.mac {
                return Err(Refusal::SourceMac);
            }
            if arp.sender_ip != [0; 4] && !own.owns_ipv4(arp.sender_ip) {
                return Err(Refusal::SourceIp);
            }
            Ok(())
        }
        ETHERTYPE_IPV4 => {
            let ip = Ipv4::parse(ethernet.payload).ok_or(Refusal::Malformed)?;
            if !(own.owns_ipv4(ip.source) || (own.dhcp && is_dhcp_client_request(&ip))) {
                return Err(Refusal::SourceIp);
            }
            check_dhcp_speaks_for_itself(own, &ip)
        }
        ETHERTYPE_IPV6 => {
            let ip = Ipv6::parse(ethernet.payload).ok_or(Refusal::Malformed)?;
            if !(own.owns_ipv6(ip.source) || is_unspecified_solicitation(&ip)) {
                return Err(Refusal::SourceIp);
            }
            check_neighbour_discovery(own, &ip)
        }
        _ => Err(Refusal::Ethertype),
    }
}

/// An app is a DHCP client, never a server: nothing from UDP port 67, and a message to a server
/// must carry the app's own MAC as its client hardware address (else a forged request could
/// have the server, and the snooping switch, move another app's lease).
fn check_dhcp_speaks_for_itself(own: &Binding, ip: &Ipv4) -> Result<(), Refusal> {
    const CHADDR: usize = 28;
    if ip.protocol != IP_PROTOCOL_UDP || ip.is_fragment() {
        return Ok(());
    }
    let Some(udp) = Udp::parse(ip.payload) else {
        return Err(Refusal::Malformed);
    };
    if udp.source_port == DHCP_SERVER_PORT {
        return Err(Refusal::Impersonation);
    }
    if udp.destination_port == DHCP_SERVER_PORT {
        let ethernet_client = udp.payload.get(1..3) == Some(&[1, 6][..]);
        let chaddr: Option<[u8; 6]> = array_at(udp.payload, CHADDR);
        if !ethernet_client || chaddr != Some(own.mac) {
            return Err(Refusal::Impersonation);
        }
    }
    Ok(())
}

/// Neighbour discovery speaks for the sender: an app may advertise only its own addresses with
/// its own MAC, its solicitations may name only its own MAC, and router advertisements and
/// redirects (routers' messages) are refused. ICMPv6 after an extension header is refused too,
/// so nothing hides a message from this check.
fn check_neighbour_discovery(own: &Binding, ip: &Ipv6) -> Result<(), Refusal> {
    const HOP_BY_HOP: u8 = 0;
    const ROUTING: u8 = 43;
    const FRAGMENT: u8 = 44;
    const DESTINATION_OPTIONS: u8 = 60;
    const ROUTER_ADVERTISEMENT: u8 = 134;
    const NEIGHBOUR_ADVERTISEMENT: u8 = 136;
    const REDIRECT: u8 = 137;
    const SOURCE_LINK_LAYER: u8 = 1;
    const TARGET_LINK_LAYER: u8 = 2;
    if matches!(
        ip.next_header,
        HOP_BY_HOP | ROUTING | FRAGMENT | DESTINATION_OPTIONS
    ) {
        return Err(Refusal::Impersonation);
    }
    if ip.next_header != IP_PROTOCOL_ICMPV6 {
        return Ok(());
    }
    let kind = *ip.payload.first().ok_or(Refusal::Malformed)?;
    // Where a message's options start, after its fixed part.
    let (options_at, wanted_option) = match kind {
        ROUTER_ADVERTISEMENT | REDIRECT => return Err(Refusal::Impersonation),
        ICMPV6_ROUTER_SOLICITATION => (8, SOURCE_LINK_LAYER),
        ICMPV6_NEIGHBOUR_SOLICITATION => (24, SOURCE_LINK_LAYER),
        NEIGHBOUR_ADVERTISEMENT => {
            let target: [u8; 16] = array_at(ip.payload, 8).ok_or(Refusal::Malformed)?;
            if !own.owns_ipv6(target) {
                return Err(Refusal::Impersonation);
            }
            (24, TARGET_LINK_LAYER)
        }
        _ => return Ok(()),
    };
    let mut at = options_at;
    while at < ip.payload.len() {
        let kind = *ip.payload.get(at).ok_or(Refusal::Malformed)?;
        let length = usize::from(*ip.payload.get(at + 1).ok_or(Refusal::Malformed)?) * 8;
        if length == 0 {
            return Err(Refusal::Malformed);
        }
        if kind == wanted_option {
            let address: [u8; 6] = array_at(ip.payload, at + 2).ok_or(Refusal::Malformed)?;
            if address != own.mac {
                return Err(Refusal::Impersonation);
            }
        }
        at += length;
    }
    Ok(())
}

/// DHCP snooping: if `frame` is a DHCPACK from a server (an unfragmented IPv4 UDP datagram
/// from port 67 to port 68, BOOTP op 2 (reply) for an Ethernet client, the DHCP magic cookie,
/// option 53 (message type) = 5 (ACK)), the client hardware address (chaddr) and the leased
/// address (yiaddr). Options overloaded into the `sname`/`file` fields (option 52) are not
/// searched: servers put the message type in the options field.
pub fn dhcp_ack(frame: &[u8]) -> Option<([u8; 6], [u8; 4])> {
    const OP_REPLY: u8 = 2;
    const HTYPE_ETHERNET: u8 = 1;
    const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
    const OPTIONS: usize = 240;
    const OPTION_PAD: u8 = 0;
    const OPTION_END: u8 = 255;
    const OPTION_MESSAGE_TYPE: u8 = 53;
    const MESSAGE_ACK: u8 = 5;

    let ethernet = Ethernet::parse(frame)?;
    if ethernet.ethertype != ETHERTYPE_IPV4 {
        return None;
    }
    let ip = Ipv4::parse(ethernet.payload)?;
    if ip.protocol != IP_PROTOCOL_UDP || ip.is_fragment() {
        return None;
    }
    let udp = Udp::parse(ip.payload)?;
    if udp.source_port != DHCP_SERVER_PORT || udp.destination_port != DHCP_CLIENT_PORT {
        return None;
    }
    let bootp = udp.payload;
    if *bootp.first()? != OP_REPLY
        || *bootp.get(1)? != HTYPE_ETHERNET
        || *bootp.get(2)? != 6
        || array_at::<4>(bootp, 236)? != MAGIC_COOKIE
    {
        return None;
    }
    let yiaddr = array_at::<4>(bootp, 16)?;
    let chaddr = array_at::<6>(bootp, 28)?;

    let mut at = OPTIONS;
    loop {
        let code = *bootp.get(at)?;
        match code {
            OPTION_PAD => at += 1,
            OPTION_END => return None,
            _ => {
                let length = usize::from(*bootp.get(at + 1)?);
                let value = bootp.get(at + 2..at + 2 + length)?;
                if code == OPTION_MESSAGE_TYPE {
                    return (value == [MESSAGE_ACK]).then_some((chaddr, yiaddr));
                }
                at += 2 + length;
            }
        }
    }
}

/// The first app a predicate picks, or `NoOwner`.
fn first_owner(bindings: &[Option<Binding>], owns: impl Fn(&Binding) -> bool) -> Delivery {
    bindings
        .iter()
        .position(|binding| binding.as_ref().is_some_and(&owns))
        .map_or(Delivery::NoOwner, Delivery::App)
}

fn route_group_ipv4(bindings: &[Option<Binding>], packet: &[u8]) -> Delivery {
    let Some(ip) = Ipv4::parse(packet) else {
        return Delivery::Malformed;
    };
    // A later fragment has no UDP header to look at.
    if ip.protocol != IP_PROTOCOL_UDP || ip.fragment_offset != 0 {
        return Delivery::Every;
    }
    let Some(udp) = Udp::parse(ip.payload) else {
        return Delivery::Malformed;
    };
    if udp.destination_port != DHCP_CLIENT_PORT {
        return Delivery::Every;
    }
    // BOOTP: op, htype, hlen, hops, xid (4), secs (2), flags (2), ciaddr, yiaddr, siaddr,
    // giaddr (4 each), then chaddr at 28.
    let Some(chaddr) = array_at::<6>(udp.payload, 28) else {
        return Delivery::Malformed;
    };
    first_owner(bindings, |binding| binding.dhcp && binding.mac == chaddr)
}

fn route_group_ipv6(bindings: &[Option<Binding>], packet: &[u8]) -> Delivery {
    let Some(ip) = Ipv6::parse(packet) else {
        return Delivery::Malformed;
    };
    if ip.next_header == IP_PROTOCOL_ICMPV6
        && ip.payload.first() == Some(&ICMPV6_NEIGHBOUR_SOLICITATION)
    {
        // Type, code, checksum, reserved (4), then the target address.
        let Some(target) = array_at::<16>(ip.payload, 8) else {
            return Delivery::Malformed;
        };
        return first_owner(bindings, |binding| binding.owns_ipv6(target));
    }
    const SOLICITED_NODE_PREFIX: [u8; 13] = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff];
    if ip.destination[..13] == SOLICITED_NODE_PREFIX {
        let low_bits = [ip.destination[13], ip.destination[14], ip.destination[15]];
        return first_owner(bindings, |binding| binding.joins_solicited_node(low_bits));
    }
    Delivery::Every
}

/// The one IPv4 datagram an app without an address may send: a DHCP client's, from
/// 0.0.0.0:68 to port 67, unfragmented.
fn is_dhcp_client_request(ip: &Ipv4) -> bool {
    ip.source == [0; 4]
        && ip.protocol == IP_PROTOCOL_UDP
        && !ip.is_fragment()
        && Udp::parse(ip.payload).is_some_and(|udp| {
            udp.source_port == DHCP_CLIENT_PORT && udp.destination_port == DHCP_SERVER_PORT
        })
}

/// The IPv6 packets a host sends before it has an address: router and neighbour solicitations
/// from `::` (RFC 4861 section 4.1, RFC 4862 section 5.4.2).
fn is_unspecified_solicitation(ip: &Ipv6) -> bool {
    ip.source == [0; 16]
        && ip.next_header == IP_PROTOCOL_ICMPV6
        && matches!(
            ip.payload.first(),
            Some(&(ICMPV6_ROUTER_SOLICITATION | ICMPV6_NEIGHBOUR_SOLICITATION))
        )
}

/// Whether a destination MAC is a group address (multicast, which includes broadcast).
fn is_group_mac(mac: [u8; 6]) -> bool {
    mac[0] & 1 == 1
}

/// `N` bytes at `at`, if the slice holds them.
fn array_at<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A big-endian u16 at `at`, if the slice holds it.
fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    array_at::<2>(bytes, at).map(u16::from_be_bytes)
}

struct Ethernet<'a> {
    destination: [u8; 6],
    source: [u8; 6],
    ethertype: u16,
    payload: &'a [u8],
}

impl<'a> Ethernet<'a> {
    fn parse(frame: &'a [u8]) -> Option<Ethernet<'a>> {
        Some(Ethernet {
            destination: array_at(frame, 0)?,
            source: array_at(frame, 6)?,
            ethertype: u16_at(frame, 12)?,
            payload: frame.get(ETHERNET_HEADER..)?,
        })
    }
}

/// An Ethernet/IPv4 ARP packet: the only kind the switch passes.
struct Arp {
    sender_mac: [u8; 6],
    sender_ip: [u8; 4],
    target_ip: [u8; 4],
}

impl Arp {
    fn parse(packet: &[u8]) -> Option<Arp> {
        const HTYPE_ETHERNET: u16 = 1;
        let shape_is_ethernet_ipv4 = u16_at(packet, 0)? == HTYPE_ETHERNET
            && u16_at(packet, 2)? == ETHERTYPE_IPV4
            && *packet.get(4)? == 6
            && *packet.get(5)? == 4;
        if !shape_is_ethernet_ipv4 {
            return None;
        }
        // htype, ptype, hlen, plen, oper (2), sha (6), spa (4), tha (6), tpa (4).
        Some(Arp {
            sender_mac: array_at(packet, 8)?,
            sender_ip: array_at(packet, 14)?,
            target_ip: array_at(packet, 24)?,
        })
    }
}

struct Ipv4<'a> {
    protocol: u8,
    source: [u8; 4],
    /// In 8-byte units; only the first fragment (offset 0) carries the transport header.
    fragment_offset: u16,
    more_fragments: bool,
    /// Up to the total length: Ethernet padding after it is not part of the datagram.
    payload: &'a [u8],
}

impl<'a> Ipv4<'a> {
    /// `None` unless version 4, a header of at least 20 bytes, and header and total length
    /// within the packet.
    fn parse(packet: &'a [u8]) -> Option<Ipv4<'a>> {
        let version_and_length = *packet.first()?;
        if version_and_length >> 4 != 4 {
            return None;
        }
        let header_bytes = usize::from(version_and_length & 0x0f) * 4;
        let total_bytes = usize::from(u16_at(packet, 2)?);
        if header_bytes < 20 || total_bytes < header_bytes {
            return None;
        }
        let flags_and_offset = u16_at(packet, 6)?;
        Some(Ipv4 {
            protocol: *packet.get(9)?,
            source: array_at(packet, 12)?,
            fragment_offset: flags_and_offset & 0x1fff,
            more_fragments: flags_and_offset & 0x2000 != 0,
            payload: packet.get(header_bytes..total_bytes)?,
        })
    }

    fn is_fragment(&self) -> bool {
        self.fragment_offset != 0 || self.more_fragments
    }
}

struct Udp<'a> {
    source_port: u16,
    destination_port: u16,
    /// Up to the UDP length.
    payload: &'a [u8],
}

impl<'a> Udp<'a> {
    /// `None` unless the 8-byte header is there and the UDP length fits the datagram.
    fn parse(datagram: &'a [u8]) -> Option<Udp<'a>> {
        let length = usize::from(u16_at(datagram, 4)?);
        Some(Udp {
            source_port: u16_at(datagram, 0)?,
            destination_port: u16_at(datagram, 2)?,
            payload: datagram.get(8..length)?,
        })
    }
}

struct Ipv6<'a> {
    next_header: u8,
    source: [u8; 16],
    destination: [u8; 16],
    /// Up to the payload length.
    payload: &'a [u8],
}

impl<'a> Ipv6<'a> {
    /// `None` unless version 6, the 40-byte header, and the payload length within the packet.
    fn parse(packet: &'a [u8]) -> Option<Ipv6<'a>> {
        if *packet.first()? >> 4 != 6 {
            return None;
        }
        let payload_bytes = usize::from(u16_at(packet, 4)?);
        Some(Ipv6 {
            next_header: *packet.get(6)?,
            source: array_at(packet, 8)?,
            destination: array_at(packet, 24)?,
            payload: packet.get(40..40 + payload_bytes)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::config::derived_mac;
    use proptest::prelude::*;

    const BROADCAST: [u8; 6] = [0xff; 6];
    const OTHER_MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
    const OTHER_IPV4: [u8; 4] = [10, 0, 2, 2];
    const OTHER_IPV6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x99];
    const ICMPV4: u8 = 1;

    // ---- frame builders -------------------------------------------------------------------

    fn ethernet(destination: [u8; 6], source: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        frame.extend_from_slice(&destination);
        frame.extend_from_slice(&source);
        frame.extend_from_slice(&ethertype.to_be_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    fn arp(sender_mac: [u8; 6], sender_ip: [u8; 4], target_ip: [u8; 4]) -> Vec<u8> {
        let mut packet = vec![0, 1, 0x08, 0x00, 6, 4, 0, 1];
        packet.extend_from_slice(&sender_mac);
        packet.extend_from_slice(&sender_ip);
        packet.extend_from_slice(&[0; 6]);
        packet.extend_from_slice(&target_ip);
        packet
    }

    fn ipv4(source: [u8; 4], destination: [u8; 4], protocol: u8, payload: &[u8]) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap();
        let mut packet = vec![0x45, 0];
        packet.extend_from_slice(&total.to_be_bytes());
        packet.extend_from_slice(&[0, 0, 0, 0, 64, protocol, 0, 0]);
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&destination);
        packet.extend_from_slice(payload);
        packet
    }

    fn udp(source_port: u16, destination_port: u16, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(8 + payload.len()).unwrap();
        let mut datagram = Vec::new();
        datagram.extend_from_slice(&source_port.to_be_bytes());
        datagram.extend_from_slice(&destination_port.to_be_bytes());
        datagram.extend_from_slice(&length.to_be_bytes());
        datagram.extend_from_slice(&[0, 0]);
        datagram.extend_from_slice(payload);
        datagram
    }

    /// A BOOTP message with the DHCP magic cookie and one message-type option.
    fn bootp(op: u8, chaddr: [u8; 6], yiaddr: [u8; 4], message_type: u8) -> Vec<u8> {
        let mut message = vec![0u8; 236];
        message[0] = op;
        message[1] = 1;
        message[2] = 6;
        message[16..20].copy_from_slice(&yiaddr);
        message[28..34].copy_from_slice(&chaddr);
        message.extend_from_slice(&[99, 130, 83, 99]);
        message.extend_from_slice(&[0, 0]); // pads before the option
        message.extend_from_slice(&[53, 1, message_type, 255]);
        message
    }

    /// A DHCP server's broadcast answer to a client.
    fn dhcp_reply(chaddr: [u8; 6], yiaddr: [u8; 4], message_type: u8) -> Vec<u8> {
        let message = bootp(2, chaddr, yiaddr, message_type);
        let datagram = udp(67, 68, &message);
        let packet = ipv4(OTHER_IPV4, [255; 4], IP_PROTOCOL_UDP, &datagram);
        ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet)
    }

    fn ipv6(source: [u8; 16], destination: [u8; 16], next_header: u8, payload: &[u8]) -> Vec<u8> {
        let length = u16::try_from(payload.len()).unwrap();
        let mut packet = vec![0x60, 0, 0, 0];
        packet.extend_from_slice(&length.to_be_bytes());
        packet.extend_from_slice(&[next_header, 255]);
        packet.extend_from_slice(&source);
        packet.extend_from_slice(&destination);
        packet.extend_from_slice(payload);
        packet
    }

    fn icmpv6(message_type: u8, target: [u8; 16]) -> Vec<u8> {
        let mut message = vec![message_type, 0, 0, 0, 0, 0, 0, 0];
        message.extend_from_slice(&target);
        message
    }

    fn solicited_node(address: [u8; 16]) -> [u8; 16] {
        let mut group = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
        group[13..].copy_from_slice(&address[13..]);
        group
    }

    fn multicast_mac(group: [u8; 16]) -> [u8; 6] {
        [0x33, 0x33, group[12], group[13], group[14], group[15]]
    }

    fn with_prefix(prefix: [u8; 8], interface_id: [u8; 8]) -> [u8; 16] {
        let mut address = [0u8; 16];
        address[..8].copy_from_slice(&prefix);
        address[8..].copy_from_slice(&interface_id);
        address
    }

    // ---- bindings -------------------------------------------------------------------------

    const STATIC_IPV4: [u8; 4] = [10, 0, 2, 15];
    const STATIC_IPV6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15];
    const LEASE: [u8; 4] = [10, 0, 2, 16];
    const GLOBAL_PREFIX: [u8; 8] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 1];

    /// App 0: static IPv4 and IPv6.
    fn static_app() -> Binding {
        Binding::of(&NetConfig {
            ipv4: Ipv4Mode::Static {
                address: STATIC_IPV4,
                prefix: 24,
            },
            ipv6: Ipv6Mode::Static {
                address: STATIC_IPV6,
                prefix: 64,
            },
            ..NetConfig::new(derived_mac("static"))
        })
    }

    /// App 2: DHCP and SLAAC, before any lease.
    fn dhcp_app() -> Binding {
        Binding::of(&NetConfig {
            ipv4: Ipv4Mode::Dhcp,
            ipv6: Ipv6Mode::Slaac,
            ..NetConfig::new(derived_mac("dhcp"))
        })
    }

    /// App 0 static, app 1 without a network, app 2 DHCP (leased) and SLAAC.
    fn apps() -> [Option<Binding>; 3] {
        let mut dhcp = dhcp_app();
        assert!(dhcp.learn_ipv4(LEASE));
        [Some(static_app()), None, Some(dhcp)]
    }

    // ---- bindings -------------------------------------------------------------------------

    #[test]
    fn bindings_take_the_configured_addresses() {
        let app = static_app();
        assert_eq!(app.mac(), derived_mac("static"));
        assert_eq!(app.ipv4(), Some(STATIC_IPV4));
        assert_eq!(app.ipv6(), Some(STATIC_IPV6));
        assert_eq!(app.link_local(), link_local_ipv6(app.mac()));
        assert!(!app.uses_dhcp() && !app.uses_slaac());
        let dhcp = dhcp_app();
        assert_eq!(dhcp.ipv4(), None);
        assert_eq!(dhcp.ipv6(), None);
        assert!(dhcp.uses_dhcp() && dhcp.uses_slaac());
    }

    #[test]
    fn only_dhcp_apps_learn_usable_leases() {
        let mut app = static_app();
        assert!(!app.learn_ipv4(LEASE));
        assert_eq!(app.ipv4(), Some(STATIC_IPV4));
        let mut dhcp = dhcp_app();
        for unusable in [[0; 4], [127, 0, 0, 1], [224, 0, 0, 1], [255; 4]] {
            assert!(!dhcp.learn_ipv4(unusable));
        }
        assert_eq!(dhcp.ipv4(), None);
        assert!(dhcp.learn_ipv4(LEASE));
        assert!(
            dhcp.learn_ipv4(STATIC_IPV4),
            "a new lease replaces the old one"
        );
        assert_eq!(dhcp.ipv4(), Some(STATIC_IPV4));
    }

    #[test]
    fn slaac_apps_own_any_prefix_with_their_interface_id() {
        let dhcp = dhcp_app();
        let interface_id = eui64(dhcp.mac());
        assert!(dhcp.owns_ipv6(with_prefix(GLOBAL_PREFIX, interface_id)));
        assert!(dhcp.owns_ipv6(dhcp.link_local()));
        assert!(!dhcp.owns_ipv6(with_prefix(GLOBAL_PREFIX, [1; 8])));
        let mut multicast_prefix = GLOBAL_PREFIX;
        multicast_prefix[0] = 0xff;
        assert!(!dhcp.owns_ipv6(with_prefix(multicast_prefix, interface_id)));
        let app = static_app();
        assert!(!app.owns_ipv6(with_prefix(GLOBAL_PREFIX, eui64(app.mac()))));
    }

    // ---- receiving ------------------------------------------------------------------------

    #[test]
    fn unicast_goes_to_the_mac_owner() {
        let apps = apps();
        let payload = [0u8; 46];
        for (index, mac) in [(0, derived_mac("static")), (2, derived_mac("dhcp"))] {
            let frame = ethernet(mac, OTHER_MAC, 0x1234, &payload);
            assert_eq!(route_received(&apps, &frame), Delivery::App(index));
        }
        let stranger = ethernet(OTHER_MAC, derived_mac("static"), ETHERTYPE_IPV4, &payload);
        assert_eq!(route_received(&apps, &stranger), Delivery::NoOwner);
        // Only the Ethernet header is needed for unicast.
        let bare = ethernet(derived_mac("static"), OTHER_MAC, ETHERTYPE_IPV4, &[]);
        assert_eq!(route_received(&apps, &bare), Delivery::App(0));
    }

    #[test]
    fn short_frames_are_malformed() {
        let apps = apps();
        for length in 0..ETHERNET_HEADER {
            assert_eq!(
                route_received(&apps, &[0xff; ETHERNET_HEADER][..length]),
                Delivery::Malformed
            );
        }
    }

    #[test]
    fn broadcast_arp_goes_to_the_target_address_owner() {
        let apps = apps();
        let request = |target| {
            ethernet(
                BROADCAST,
                OTHER_MAC,
                ETHERTYPE_ARP,
                &arp(OTHER_MAC, OTHER_IPV4, target),
            )
        };
        assert_eq!(
            route_received(&apps, &request(STATIC_IPV4)),
            Delivery::App(0)
        );
        assert_eq!(route_received(&apps, &request(LEASE)), Delivery::App(2));
        assert_eq!(
            route_received(&apps, &request([10, 0, 2, 99])),
            Delivery::NoOwner
        );
        // Before its lease a DHCP app has no IPv4 address to be asked about.
        let unleased = [Some(dhcp_app())];
        assert_eq!(
            route_received(&unleased, &request([0; 4])),
            Delivery::NoOwner
        );
    }

    #[test]
    fn broken_or_foreign_arp_is_malformed() {
        let apps = apps();
        let good = arp(OTHER_MAC, OTHER_IPV4, STATIC_IPV4);
        let cut = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_ARP, &good[..27]);
        assert_eq!(route_received(&apps, &cut), Delivery::Malformed);
        for (at, value) in [(1, 6), (3, 0xdd), (4, 8), (5, 16)] {
            let mut foreign = good.clone();
            foreign[at] = value;
            let frame = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_ARP, &foreign);
            assert_eq!(route_received(&apps, &frame), Delivery::Malformed);
        }
    }

    #[test]
    fn broadcast_dhcp_answers_go_to_the_client_by_chaddr() {
        let apps = apps();
        let offer = dhcp_reply(derived_mac("dhcp"), LEASE, 2);
        assert_eq!(route_received(&apps, &offer), Delivery::App(2));
        // The static app does not use DHCP, so an answer for its MAC has no owner.
        let to_static = dhcp_reply(derived_mac("static"), LEASE, 2);
        assert_eq!(route_received(&apps, &to_static), Delivery::NoOwner);
        let to_stranger = dhcp_reply(OTHER_MAC, LEASE, 2);
        assert_eq!(route_received(&apps, &to_stranger), Delivery::NoOwner);
        // Too short to hold a chaddr.
        let datagram = udp(67, 68, &[2, 1, 6, 0]);
        let packet = ipv4(OTHER_IPV4, [255; 4], IP_PROTOCOL_UDP, &datagram);
        let cut = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet);
        assert_eq!(route_received(&apps, &cut), Delivery::Malformed);
    }

    #[test]
    fn other_ipv4_broadcast_and_multicast_go_to_every_app() {
        let apps = apps();
        let mdns = ipv4(
            OTHER_IPV4,
            [224, 0, 0, 251],
            IP_PROTOCOL_UDP,
            &udp(5353, 5353, &[0; 12]),
        );
        let mdns_mac = [0x01, 0, 0x5e, 0, 0, 0xfb];
        let frame = ethernet(mdns_mac, OTHER_MAC, ETHERTYPE_IPV4, &mdns);
        assert_eq!(route_received(&apps, &frame), Delivery::Every);
        let ping = ipv4(OTHER_IPV4, [255; 4], ICMPV4, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let frame = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &ping);
        assert_eq!(route_received(&apps, &frame), Delivery::Every);
        // A later fragment of a datagram to port 68 has no UDP header to look at.
        let mut fragment = ipv4(
            OTHER_IPV4,
            [255; 4],
            IP_PROTOCOL_UDP,
            &udp(67, 68, &[0; 40]),
        );
        fragment[6..8].copy_from_slice(&0x0010u16.to_be_bytes());
        let frame = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &fragment);
        assert_eq!(route_received(&apps, &frame), Delivery::Every);
    }

    #[test]
    fn broken_ipv4_broadcast_is_malformed() {
        let apps = apps();
        let good = ipv4(OTHER_IPV4, [255; 4], ICMPV4, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let mut broken = Vec::new();
        let mut wrong_version = good.clone();
        wrong_version[0] = 0x65;
        broken.push(wrong_version);
        let mut short_header = good.clone();
        short_header[0] = 0x44;
        broken.push(short_header);
        let mut long_header = good.clone();
        long_header[0] = 0x4f;
        broken.push(long_header);
        let mut long_total = good.clone();
        long_total[2..4].copy_from_slice(&200u16.to_be_bytes());
        broken.push(long_total);
        broken.push(good[..19].to_vec());
        let mut bad_udp = ipv4(
            OTHER_IPV4,
            [255; 4],
            IP_PROTOCOL_UDP,
            &udp(67, 68, &[0; 40]),
        );
        bad_udp[24..26].copy_from_slice(&100u16.to_be_bytes()); // UDP length past the datagram
        broken.push(bad_udp);
        for packet in broken {
            let frame = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet);
            assert_eq!(route_received(&apps, &frame), Delivery::Malformed);
        }
        // Ethernet padding after the datagram is fine.
        let mut padded = ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &good);
        padded.resize(60, 0);
        assert_eq!(route_received(&apps, &padded), Delivery::Every);
    }

    #[test]
    fn neighbour_solicitations_go_to_the_target_owner() {
        let apps = apps();
        let solicit = |target: [u8; 16]| {
            let group = solicited_node(target);
            let packet = ipv6(
                link_local_ipv6(OTHER_MAC),
                group,
                IP_PROTOCOL_ICMPV6,
                &icmpv6(ICMPV6_NEIGHBOUR_SOLICITATION, target),
            );
            ethernet(multicast_mac(group), OTHER_MAC, ETHERTYPE_IPV6, &packet)
        };
        let dhcp_mac = derived_mac("dhcp");
        let static_mac = derived_mac("static");
        let slaac_address = with_prefix(GLOBAL_PREFIX, eui64(dhcp_mac));
        for (target, owner) in [
            (STATIC_IPV6, 0),
            (link_local_ipv6(static_mac), 0),
            (link_local_ipv6(dhcp_mac), 2),
            (slaac_address, 2),
        ] {
            assert_eq!(
                route_received(&apps, &solicit(target)),
                Delivery::App(owner)
            );
        }
        // The static app does not do SLAAC: its EUI-64 under a global prefix is not its own.
        let not_configured = with_prefix(GLOBAL_PREFIX, eui64(static_mac));
        assert_eq!(
            route_received(&apps, &solicit(not_configured)),
            Delivery::NoOwner
        );
        assert_eq!(
            route_received(&apps, &solicit(link_local_ipv6(OTHER_MAC))),
            Delivery::NoOwner
        );
        // No room for the target address.
        let packet = ipv6(
            [0; 16],
            solicited_node(STATIC_IPV6),
            IP_PROTOCOL_ICMPV6,
            &[ICMPV6_NEIGHBOUR_SOLICITATION, 0, 0, 0, 0, 0, 0, 0],
        );
        let frame = ethernet(
            multicast_mac(solicited_node(STATIC_IPV6)),
            OTHER_MAC,
            ETHERTYPE_IPV6,
            &packet,
        );
        assert_eq!(route_received(&apps, &frame), Delivery::Malformed);
    }

    #[test]
    fn other_solicited_node_traffic_goes_to_the_group_member() {
        let apps = apps();
        let to_group = |address: [u8; 16]| {
            let group = solicited_node(address);
            let packet = ipv6(
                link_local_ipv6(OTHER_MAC),
                group,
                IP_PROTOCOL_UDP,
                &udp(1, 2, &[]),
            );
            ethernet(multicast_mac(group), OTHER_MAC, ETHERTYPE_IPV6, &packet)
        };
        assert_eq!(
            route_received(&apps, &to_group(STATIC_IPV6)),
            Delivery::App(0)
        );
        let slaac_address = with_prefix(GLOBAL_PREFIX, eui64(derived_mac("dhcp")));
        assert_eq!(
            route_received(&apps, &to_group(slaac_address)),
            Delivery::App(2)
        );
        assert_eq!(
            route_received(&apps, &to_group(link_local_ipv6(OTHER_MAC))),
            Delivery::NoOwner
        );
    }

    #[test]
    fn other_ipv6_multicast_goes_to_every_app() {
        let apps = apps();
        let all_nodes = [0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let router_advertisement = ipv6(
            link_local_ipv6(OTHER_MAC),
            all_nodes,
            IP_PROTOCOL_ICMPV6,
            &[134, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        let frame = ethernet(
            multicast_mac(all_nodes),
            OTHER_MAC,
            ETHERTYPE_IPV6,
            &router_advertisement,
        );
        assert_eq!(route_received(&apps, &frame), Delivery::Every);
        let cut = ethernet(
            multicast_mac(all_nodes),
            OTHER_MAC,
            ETHERTYPE_IPV6,
            &router_advertisement[..39],
        );
        assert_eq!(route_received(&apps, &cut), Delivery::Malformed);
        let mut wrong_version = router_advertisement.clone();
        wrong_version[0] = 0x40;
        let frame = ethernet(
            multicast_mac(all_nodes),
            OTHER_MAC,
            ETHERTYPE_IPV6,
            &wrong_version,
        );
        assert_eq!(route_received(&apps, &frame), Delivery::Malformed);
        let mut long_payload = router_advertisement.clone();
        long_payload[4..6].copy_from_slice(&17u16.to_be_bytes());
        let frame = ethernet(
            multicast_mac(all_nodes),
            OTHER_MAC,
            ETHERTYPE_IPV6,
            &long_payload,
        );
        assert_eq!(route_received(&apps, &frame), Delivery::Malformed);
    }

    #[test]
    fn other_broadcast_ethertypes_have_no_owner() {
        let apps = apps();
        // A VLAN tag is just an ethertype the switch does not know.
        for ethertype in [0x8100, 0x88cc, 0x0842] {
            let frame = ethernet(BROADCAST, OTHER_MAC, ethertype, &[0; 46]);
            assert_eq!(route_received(&apps, &frame), Delivery::NoOwner);
        }
        assert_eq!(
            route_received(&[], &ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &[])),
            Delivery::Malformed
        );
    }

    // ---- transmitting ---------------------------------------------------------------------

    fn leased() -> Binding {
        apps()[2].unwrap()
    }

    #[test]
    fn transmit_needs_a_header_and_the_own_source_mac() {
        let app = static_app();
        for length in 0..ETHERNET_HEADER {
            assert_eq!(
                check_transmit(&app, &vec![0; length]),
                Err(Refusal::Malformed)
            );
        }
        let ping = ipv4(STATIC_IPV4, OTHER_IPV4, ICMPV4, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_transmit(&app, &ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV4, &ping)),
            Ok(())
        );
        assert_eq!(
            check_transmit(&app, &ethernet(OTHER_MAC, OTHER_MAC, ETHERTYPE_IPV4, &ping)),
            Err(Refusal::SourceMac)
        );
        assert_eq!(
            check_transmit(&app, &ethernet(OTHER_MAC, app.mac(), 0x8100, &[0; 46])),
            Err(Refusal::Ethertype)
        );
    }

    #[test]
    fn transmitted_arp_speaks_only_for_the_app() {
        let app = static_app();
        let send = |packet: Vec<u8>| {
            check_transmit(
                &app,
                &ethernet(BROADCAST, app.mac(), ETHERTYPE_ARP, &packet),
            )
        };
        assert_eq!(send(arp(app.mac(), STATIC_IPV4, OTHER_IPV4)), Ok(()));
        assert_eq!(send(arp(app.mac(), [0; 4], STATIC_IPV4)), Ok(()), "a probe");
        assert_eq!(
            send(arp(OTHER_MAC, STATIC_IPV4, OTHER_IPV4)),
            Err(Refusal::SourceMac)
        );
        assert_eq!(
            send(arp(app.mac(), OTHER_IPV4, STATIC_IPV4)),
            Err(Refusal::SourceIp)
        );
        let good = arp(app.mac(), STATIC_IPV4, OTHER_IPV4);
        assert_eq!(send(good[..27].to_vec()), Err(Refusal::Malformed));
        let mut foreign = good.clone();
        foreign[3] = 0xdd;
        assert_eq!(send(foreign), Err(Refusal::Malformed));
        // Before its lease a DHCP app may only probe.
        let unleased = dhcp_app();
        let probe = arp(unleased.mac(), [0; 4], LEASE);
        assert_eq!(
            check_transmit(
                &unleased,
                &ethernet(BROADCAST, unleased.mac(), ETHERTYPE_ARP, &probe)
            ),
            Ok(())
        );
        let claim = arp(unleased.mac(), LEASE, LEASE);
        assert_eq!(
            check_transmit(
                &unleased,
                &ethernet(BROADCAST, unleased.mac(), ETHERTYPE_ARP, &claim)
            ),
            Err(Refusal::SourceIp)
        );
    }

    #[test]
    fn transmitted_ipv4_comes_from_the_own_address() {
        let send = |app: &Binding, packet: Vec<u8>| {
            check_transmit(
                app,
                &ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV4, &packet),
            )
        };
        let datagram = udp(1234, 53, &[0; 20]);
        let app = static_app();
        assert_eq!(
            send(
                &app,
                ipv4(STATIC_IPV4, OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)
            ),
            Ok(())
        );
        assert_eq!(
            send(&app, ipv4(LEASE, OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)),
            Err(Refusal::SourceIp)
        );
        assert_eq!(
            send(&app, ipv4([0; 4], OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)),
            Err(Refusal::SourceIp)
        );
        let leased = leased();
        assert_eq!(
            send(&leased, ipv4(LEASE, OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)),
            Ok(())
        );
        assert_eq!(
            send(
                &leased,
                ipv4(STATIC_IPV4, OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)
            ),
            Err(Refusal::SourceIp)
        );
        let no_ipv4 = Binding::of(&NetConfig::new(derived_mac("none")));
        assert_eq!(
            send(
                &no_ipv4,
                ipv4(STATIC_IPV4, OTHER_IPV4, IP_PROTOCOL_UDP, &datagram)
            ),
            Err(Refusal::SourceIp)
        );
    }

    #[test]
    fn apps_speak_dhcp_only_as_clients_for_themselves() {
        let send = |app: &Binding, packet: Vec<u8>| {
            check_transmit(
                app,
                &ethernet(BROADCAST, app.mac(), ETHERTYPE_IPV4, &packet),
            )
        };
        let app = leased();
        let from = |chaddr: [u8; 6], source_port: u16, destination_port: u16| {
            let message = bootp(1, chaddr, [0; 4], 3);
            ipv4(
                LEASE,
                [255; 4],
                IP_PROTOCOL_UDP,
                &udp(source_port, destination_port, &message),
            )
        };
        assert_eq!(send(&app, from(app.mac(), 68, 67)), Ok(()));
        // A request (or decline) on another client's behalf would move its lease.
        assert_eq!(
            send(&app, from(OTHER_MAC, 68, 67)),
            Err(Refusal::Impersonation)
        );
        let stranger = static_app();
        assert_eq!(
            send(&stranger, {
                let message = bootp(1, app.mac(), [0; 4], 3);
                ipv4(
                    STATIC_IPV4,
                    [255; 4],
                    IP_PROTOCOL_UDP,
                    &udp(68, 67, &message),
                )
            }),
            Err(Refusal::Impersonation)
        );
        // No app is a DHCP server.
        assert_eq!(
            send(&app, from(app.mac(), 67, 68)),
            Err(Refusal::Impersonation)
        );
        // Other UDP is the app's business.
        assert_eq!(
            send(
                &app,
                ipv4(LEASE, OTHER_IPV4, IP_PROTOCOL_UDP, &udp(5000, 53, b"q"))
            ),
            Ok(())
        );
    }

    #[test]
    fn neighbour_discovery_speaks_only_for_the_app() {
        let app = static_app();
        let send = |message: Vec<u8>| {
            let packet = ipv6(
                app.link_local(),
                [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                IP_PROTOCOL_ICMPV6,
                &message,
            );
            check_transmit(
                &app,
                &ethernet([0x33, 0x33, 0, 0, 0, 1], app.mac(), ETHERTYPE_IPV6, &packet),
            )
        };
        let with_option = |mut message: Vec<u8>, kind: u8, mac: [u8; 6]| {
            message.extend_from_slice(&[kind, 1]);
            message.extend_from_slice(&mac);
            message
        };
        // Advertising its own address with its own MAC is what a host does.
        assert_eq!(
            send(with_option(icmpv6(136, STATIC_IPV6), 2, app.mac())),
            Ok(())
        );
        // Another host's address, or its own address at another MAC, is a takeover.
        assert_eq!(
            send(with_option(icmpv6(136, OTHER_IPV6), 2, app.mac())),
            Err(Refusal::Impersonation)
        );
        assert_eq!(
            send(with_option(icmpv6(136, STATIC_IPV6), 2, OTHER_MAC)),
            Err(Refusal::Impersonation)
        );
        // Solicitations may name only the app's MAC.
        assert_eq!(
            send(with_option(icmpv6(135, OTHER_IPV6), 1, app.mac())),
            Ok(())
        );
        assert_eq!(
            send(with_option(icmpv6(135, OTHER_IPV6), 1, OTHER_MAC)),
            Err(Refusal::Impersonation)
        );
        // Routers' messages are not an app's to send.
        assert_eq!(send(icmpv6(134, [0; 16])), Err(Refusal::Impersonation));
        assert_eq!(send(icmpv6(137, OTHER_IPV6)), Err(Refusal::Impersonation));
        // A zero-length option would loop a reader forever: malformed.
        let mut looping = icmpv6(136, STATIC_IPV6);
        looping.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(send(looping), Err(Refusal::Malformed));
        // Nothing hides behind an extension header.
        let packet = ipv6(app.link_local(), OTHER_IPV6, 0, &[58, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_transmit(
                &app,
                &ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV6, &packet)
            ),
            Err(Refusal::Impersonation)
        );
    }

    #[test]
    fn only_dhcp_apps_send_dhcp_requests_from_zero() {
        let send = |app: &Binding, packet: Vec<u8>| {
            check_transmit(
                app,
                &ethernet(BROADCAST, app.mac(), ETHERTYPE_IPV4, &packet),
            )
        };
        let request = |app: &Binding, source_port, destination_port| {
            let message = bootp(1, app.mac(), [0; 4], 3);
            ipv4(
                [0; 4],
                [255; 4],
                IP_PROTOCOL_UDP,
                &udp(source_port, destination_port, &message),
            )
        };
        for app in [dhcp_app(), leased()] {
            assert_eq!(send(&app, request(&app, 68, 67)), Ok(()));
            assert_eq!(send(&app, request(&app, 68, 53)), Err(Refusal::SourceIp));
            assert_eq!(send(&app, request(&app, 1068, 67)), Err(Refusal::SourceIp));
            let not_udp = ipv4([0; 4], [255; 4], ICMPV4, &udp(68, 67, &[]));
            assert_eq!(send(&app, not_udp), Err(Refusal::SourceIp));
            let mut fragment = request(&app, 68, 67);
            fragment[6] = 0x20; // more fragments
            assert_eq!(send(&app, fragment), Err(Refusal::SourceIp));
        }
        let app = static_app();
        assert_eq!(send(&app, request(&app, 68, 67)), Err(Refusal::SourceIp));
    }

    #[test]
    fn transmitted_broken_ipv4_is_malformed() {
        let app = static_app();
        let good = ipv4(STATIC_IPV4, OTHER_IPV4, ICMPV4, &[8, 0, 0, 0, 0, 0, 0, 0]);
        let send = |packet: &[u8]| {
            check_transmit(
                &app,
                &ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV4, packet),
            )
        };
        for (at, value) in [(0, 0x65), (0, 0x44), (0, 0x4f), (2, 0x10), (3, 19)] {
            let mut broken = good.clone();
            broken[at] = value;
            assert_eq!(
                send(&broken),
                Err(Refusal::Malformed),
                "byte {at} = {value:#x}"
            );
        }
        assert_eq!(send(&good[..19]), Err(Refusal::Malformed));
        assert_eq!(send(&[]), Err(Refusal::Malformed));
    }

    #[test]
    fn transmitted_ipv6_comes_from_an_own_address() {
        let send = |app: &Binding, source: [u8; 16], next_header: u8, payload: &[u8]| {
            let packet = ipv6(source, link_local_ipv6(OTHER_MAC), next_header, payload);
            check_transmit(
                app,
                &ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV6, &packet),
            )
        };
        let datagram = udp(1234, 80, &[]);
        let app = static_app();
        let slaac = dhcp_app();
        let slaac_address = with_prefix(GLOBAL_PREFIX, eui64(slaac.mac()));
        assert_eq!(send(&app, STATIC_IPV6, IP_PROTOCOL_UDP, &datagram), Ok(()));
        assert_eq!(
            send(&app, app.link_local(), IP_PROTOCOL_UDP, &datagram),
            Ok(())
        );
        assert_eq!(
            send(&slaac, slaac.link_local(), IP_PROTOCOL_UDP, &datagram),
            Ok(())
        );
        assert_eq!(
            send(&slaac, slaac_address, IP_PROTOCOL_UDP, &datagram),
            Ok(())
        );
        assert_eq!(
            send(&app, slaac_address, IP_PROTOCOL_UDP, &datagram),
            Err(Refusal::SourceIp)
        );
        assert_eq!(
            send(&slaac, STATIC_IPV6, IP_PROTOCOL_UDP, &datagram),
            Err(Refusal::SourceIp)
        );
        let own_id_elsewhere = with_prefix(GLOBAL_PREFIX, eui64(app.mac()));
        assert_eq!(
            send(&app, own_id_elsewhere, IP_PROTOCOL_UDP, &datagram),
            Err(Refusal::SourceIp)
        );
        // The unspecified address, only for solicitations.
        let dad = icmpv6(ICMPV6_NEIGHBOUR_SOLICITATION, slaac_address);
        assert_eq!(send(&slaac, [0; 16], IP_PROTOCOL_ICMPV6, &dad), Ok(()));
        let router_solicitation = [ICMPV6_ROUTER_SOLICITATION, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            send(&slaac, [0; 16], IP_PROTOCOL_ICMPV6, &router_solicitation),
            Ok(())
        );
        let echo = [128, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            send(&slaac, [0; 16], IP_PROTOCOL_ICMPV6, &echo),
            Err(Refusal::SourceIp)
        );
        assert_eq!(
            send(&slaac, [0; 16], IP_PROTOCOL_ICMPV6, &[]),
            Err(Refusal::SourceIp)
        );
        assert_eq!(
            send(&slaac, [0; 16], IP_PROTOCOL_UDP, &datagram),
            Err(Refusal::SourceIp)
        );
        // Broken headers.
        let good = ipv6(
            STATIC_IPV6,
            link_local_ipv6(OTHER_MAC),
            IP_PROTOCOL_UDP,
            &datagram,
        );
        let frame = |packet: &[u8]| ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV6, packet);
        assert_eq!(
            check_transmit(&app, &frame(&good[..39])),
            Err(Refusal::Malformed)
        );
        let mut wrong_version = good.clone();
        wrong_version[0] = 0x40;
        assert_eq!(
            check_transmit(&app, &frame(&wrong_version)),
            Err(Refusal::Malformed)
        );
        let mut long_payload = good.clone();
        long_payload[5] = 9;
        assert_eq!(
            check_transmit(&app, &frame(&long_payload)),
            Err(Refusal::Malformed)
        );
    }

    // ---- DHCP snooping --------------------------------------------------------------------

    #[test]
    fn dhcp_acks_are_recognised() {
        let client = derived_mac("dhcp");
        assert_eq!(
            dhcp_ack(&dhcp_reply(client, LEASE, 5)),
            Some((client, LEASE))
        );
        // Offers, NAKs and requests are not acknowledgements.
        assert_eq!(dhcp_ack(&dhcp_reply(client, LEASE, 2)), None);
        assert_eq!(dhcp_ack(&dhcp_reply(client, LEASE, 6)), None);
        let request = bootp(1, client, LEASE, 5);
        let packet = ipv4([0; 4], [255; 4], IP_PROTOCOL_UDP, &udp(67, 68, &request));
        assert_eq!(
            dhcp_ack(&ethernet(BROADCAST, client, ETHERTYPE_IPV4, &packet)),
            None
        );
        // Wrong ports.
        let ack = bootp(2, client, LEASE, 5);
        for (source, destination) in [(68, 67), (67, 67), (1067, 68)] {
            let packet = ipv4(
                OTHER_IPV4,
                [255; 4],
                IP_PROTOCOL_UDP,
                &udp(source, destination, &ack),
            );
            assert_eq!(
                dhcp_ack(&ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet)),
                None
            );
        }
        // A unicast ACK is just as good.
        let packet = ipv4(OTHER_IPV4, LEASE, IP_PROTOCOL_UDP, &udp(67, 68, &ack));
        assert_eq!(
            dhcp_ack(&ethernet(client, OTHER_MAC, ETHERTYPE_IPV4, &packet)),
            Some((client, LEASE))
        );
    }

    #[test]
    fn dhcp_ack_options_are_walked_carefully() {
        let client = derived_mac("dhcp");
        let with_options = |options: &[u8]| {
            let mut message = bootp(2, client, LEASE, 5);
            message.truncate(240);
            message.extend_from_slice(options);
            let packet = ipv4(
                OTHER_IPV4,
                [255; 4],
                IP_PROTOCOL_UDP,
                &udp(67, 68, &message),
            );
            dhcp_ack(&ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet))
        };
        // Other options before the message type are skipped.
        assert_eq!(
            with_options(&[1, 4, 255, 255, 255, 0, 0, 53, 1, 5, 255]),
            Some((client, LEASE))
        );
        // Missing, after the end, cut short, too long, or no end at all.
        assert_eq!(with_options(&[1, 4, 255, 255, 255, 0, 255]), None);
        assert_eq!(with_options(&[255, 53, 1, 5]), None);
        assert_eq!(with_options(&[53, 1]), None);
        assert_eq!(with_options(&[53, 2, 5, 0, 255]), None);
        assert_eq!(with_options(&[1, 200, 0]), None);
        assert_eq!(with_options(&[]), None);
        // No magic cookie.
        let mut message = bootp(2, client, LEASE, 5);
        message[236] = 0;
        let packet = ipv4(
            OTHER_IPV4,
            [255; 4],
            IP_PROTOCOL_UDP,
            &udp(67, 68, &message),
        );
        assert_eq!(
            dhcp_ack(&ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet)),
            None
        );
        // Not an Ethernet client.
        let mut message = bootp(2, client, LEASE, 5);
        message[1] = 6;
        let packet = ipv4(
            OTHER_IPV4,
            [255; 4],
            IP_PROTOCOL_UDP,
            &udp(67, 68, &message),
        );
        assert_eq!(
            dhcp_ack(&ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet)),
            None
        );
        // Fragmented.
        let mut packet = ipv4(
            OTHER_IPV4,
            [255; 4],
            IP_PROTOCOL_UDP,
            &udp(67, 68, &bootp(2, client, LEASE, 5)),
        );
        packet[6] = 0x20;
        assert_eq!(
            dhcp_ack(&ethernet(BROADCAST, OTHER_MAC, ETHERTYPE_IPV4, &packet)),
            None
        );
    }

    #[test]
    fn snooped_leases_open_the_switch_for_the_client() {
        let mut bindings = [Some(static_app()), Some(dhcp_app())];
        let client = derived_mac("dhcp");
        let arp_for_lease = ethernet(
            BROADCAST,
            OTHER_MAC,
            ETHERTYPE_ARP,
            &arp(OTHER_MAC, OTHER_IPV4, LEASE),
        );
        assert_eq!(route_received(&bindings, &arp_for_lease), Delivery::NoOwner);
        let (chaddr, yiaddr) = dhcp_ack(&dhcp_reply(client, LEASE, 5)).unwrap();
        for binding in bindings.iter_mut().flatten() {
            if binding.mac() == chaddr {
                binding.learn_ipv4(yiaddr);
            }
        }
        assert_eq!(route_received(&bindings, &arp_for_lease), Delivery::App(1));
        let app = bindings[1].unwrap();
        let ping = ipv4(LEASE, OTHER_IPV4, ICMPV4, &[8, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            check_transmit(&app, &ethernet(OTHER_MAC, client, ETHERTYPE_IPV4, &ping)),
            Ok(())
        );
    }

    // ---- properties -----------------------------------------------------------------------

    fn unicast_mac() -> impl Strategy<Value = [u8; 6]> {
        any::<[u8; 6]>()
            .prop_map(|mut mac| {
                mac[0] &= 0xfe;
                mac
            })
            .prop_filter("not zero", |mac| *mac != [0; 6])
    }

    /// Valid frames of every kind the switch parses, for mutation.
    fn sample_frames() -> Vec<Vec<u8>> {
        let app = static_app();
        let client = derived_mac("dhcp");
        let group = solicited_node(STATIC_IPV6);
        vec![
            ethernet(
                BROADCAST,
                app.mac(),
                ETHERTYPE_ARP,
                &arp(app.mac(), STATIC_IPV4, LEASE),
            ),
            dhcp_reply(client, LEASE, 5),
            ethernet(
                BROADCAST,
                client,
                ETHERTYPE_IPV4,
                &ipv4(
                    [0; 4],
                    [255; 4],
                    IP_PROTOCOL_UDP,
                    &udp(68, 67, &bootp(1, client, [0; 4], 3)),
                ),
            ),
            ethernet(
                multicast_mac(group),
                app.mac(),
                ETHERTYPE_IPV6,
                &ipv6(
                    [0; 16],
                    group,
                    IP_PROTOCOL_ICMPV6,
                    &icmpv6(ICMPV6_NEIGHBOUR_SOLICITATION, STATIC_IPV6),
                ),
            ),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..1600)) {
            let apps = apps();
            let _ = route_received(&apps, &frame);
            for app in apps.iter().flatten() {
                let _ = check_transmit(app, &frame);
            }
            let _ = dhcp_ack(&frame);
        }

        #[test]
        fn mutated_frames_never_panic(
            which in 0usize..4,
            edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<proptest::sample::Index>(),
        ) {
            let mut frame = sample_frames().swap_remove(which);
            for (at, value) in edits {
                let at = at.index(frame.len());
                frame[at] = value;
            }
            frame.truncate(cut.index(frame.len() + 1));
            let apps = apps();
            let _ = route_received(&apps, &frame);
            for app in apps.iter().flatten() {
                let _ = check_transmit(app, &frame);
            }
            let _ = dhcp_ack(&frame);
        }

        #[test]
        fn a_foreign_source_mac_never_leaves(
            source in any::<[u8; 6]>(),
            rest in proptest::collection::vec(any::<u8>(), 8..200),
            which in 0usize..3,
        ) {
            let app = apps()[which].unwrap_or_else(static_app);
            prop_assume!(source != app.mac());
            let mut frame = vec![0u8; 6];
            frame.extend_from_slice(&source);
            frame.extend_from_slice(&rest);
            prop_assert_eq!(check_transmit(&app, &frame), Err(Refusal::SourceMac));
        }

        #[test]
        fn a_foreign_ipv4_source_never_leaves(
            source in any::<[u8; 4]>(),
            protocol in any::<u8>(),
            ports in any::<(u16, u16)>(),
            leased_app in any::<bool>(),
        ) {
            let app = if leased_app { leased() } else { static_app() };
            prop_assume!(Some(source) != app.ipv4());
            let is_dhcp_exception = app.uses_dhcp()
                && source == [0; 4]
                && protocol == IP_PROTOCOL_UDP
                && ports == (68, 67);
            prop_assume!(!is_dhcp_exception);
            let packet = ipv4(source, OTHER_IPV4, protocol, &udp(ports.0, ports.1, &[0; 16]));
            let frame = ethernet(OTHER_MAC, app.mac(), ETHERTYPE_IPV4, &packet);
            prop_assert_eq!(check_transmit(&app, &frame), Err(Refusal::SourceIp));
        }

        #[test]
        fn unicast_reaches_the_mac_owner(
            macs in proptest::collection::vec(proptest::option::of(unicast_mac()), 1..8),
            pick in any::<proptest::sample::Index>(),
            ethertype in any::<u16>(),
            payload in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let bound: Vec<[u8; 6]> = macs.iter().flatten().copied().collect();
            prop_assume!(!bound.is_empty());
            let mut distinct = bound.clone();
            distinct.sort_unstable();
            distinct.dedup();
            prop_assume!(distinct.len() == bound.len());
            let bindings: Vec<Option<Binding>> = macs
                .iter()
                .map(|mac| mac.map(|mac| Binding::of(&NetConfig::new(mac))))
                .collect();
            let target = bound[pick.index(bound.len())];
            let owner = macs.iter().position(|mac| *mac == Some(target)).unwrap();
            let frame = ethernet(target, OTHER_MAC, ethertype, &payload);
            prop_assert_eq!(route_received(&bindings, &frame), Delivery::App(owner));
        }
    }
}
