//! An app's network binding: its MAC and IP addresses, how it gets them, and the sizes of its
//! rings and sockets. The xtask writes it into the bundle from the manifest's `[app.net]`;
//! kernel-lite checks it ([`NetConfig::decode`]), binds the app to these addresses in the frame
//! switch, and copies it into the app's ring header page, where libos reads it to build the
//! app's smoltcp interface.
//!
//! ```text
//! 0  mac [6] | 6 ipv4 mode u8 | 7 ipv4 prefix u8 | 8 ipv4 [4] | 12 gateway [4] | 16 dns [4]
//! 20 ipv6 mode u8 | 21 ipv6 prefix u8 | 22 rx slots u16 | 24 ipv6 [16] | 40 ipv6 gateway [16]
//! 56 tx slots u16 | 58 max sockets u16 | 60 socket buffer bytes u32          (64 bytes)
//! ```
//! An all-zero address field means "none" (no gateway, no DNS server).

/// Bytes of an encoded [`NetConfig`].
pub const NET_CONFIG_BYTES: usize = 64;
/// Ring sizes (in frame slots) allowed per direction: powers of two in this range.
pub const MIN_RING_SLOTS: u16 = 8;
pub const MAX_RING_SLOTS: u16 = 1024;
/// Socket limits allowed per app.
pub const MAX_SOCKETS: u16 = 8192;
pub const MIN_SOCKET_BUFFER: u32 = 1024;
pub const MAX_SOCKET_BUFFER: u32 = 4 * 1024 * 1024;
/// Defaults the xtask fills in when the manifest says nothing.
pub const DEFAULT_RING_SLOTS: u16 = 256;
pub const DEFAULT_MAX_SOCKETS: u16 = 1100;
pub const DEFAULT_SOCKET_BUFFER: u32 = 16 * 1024;

/// How an app gets its IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv4Mode {
    /// No IPv4.
    None,
    /// A fixed address and prefix length.
    Static { address: [u8; 4], prefix: u8 },
    /// From a DHCP server; the frame switch learns the lease from the server's answer.
    Dhcp,
}

/// How an app gets its IPv6 address (besides its link-local one, derived from the MAC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ipv6Mode {
    /// Link-local only.
    None,
    /// A fixed address and prefix length.
    Static { address: [u8; 16], prefix: u8 },
    /// Stateless autoconfiguration from router advertisements (prefix + the MAC's EUI-64).
    Slaac,
}

/// One app's network binding and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetConfig {
    pub mac: [u8; 6],
    pub ipv4: Ipv4Mode,
    /// The IPv4 default gateway, if any.
    pub gateway4: Option<[u8; 4]>,
    /// The DNS server, if any.
    pub dns4: Option<[u8; 4]>,
    pub ipv6: Ipv6Mode,
    /// The IPv6 default gateway, if any (SLAAC learns it from the router).
    pub gateway6: Option<[u8; 16]>,
    /// Frame slots in the receive ring (kernel-lite to the app).
    pub rx_slots: u16,
    /// Frame slots in the transmit ring (the app to kernel-lite).
    pub tx_slots: u16,
    /// The most TCP and UDP sockets the app may have open at once.
    pub max_sockets: u16,
    /// Bytes of each TCP socket's receive buffer and of its send buffer.
    pub socket_buffer: u32,
}

/// What is wrong with an encoded [`NetConfig`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetConfigError {
    /// The MAC is zero, multicast or broadcast.
    BadMac,
    /// An unknown IPv4 or IPv6 mode byte.
    BadMode,
    /// A prefix length longer than the address.
    BadPrefix,
    /// A static IPv4 address that is unspecified, loopback, multicast or broadcast.
    BadIpv4,
    /// A static IPv6 address that is unspecified, loopback or multicast.
    BadIpv6,
    /// A ring size that is not a power of two in `MIN_RING_SLOTS..=MAX_RING_SLOTS`.
    BadRingSize,
    /// No sockets, or more than [`MAX_SOCKETS`].
    BadSocketCount,
    /// A socket buffer outside `MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER`.
    BadSocketBuffer,
}

impl core::fmt::Display for NetConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let text = match self {
            NetConfigError::BadMac => "the MAC is zero, multicast or broadcast",
            NetConfigError::BadMode => "unknown address mode",
            NetConfigError::BadPrefix => "prefix length longer than the address",
            NetConfigError::BadIpv4 => "unusable IPv4 address",
            NetConfigError::BadIpv6 => "unusable IPv6 address",
            NetConfigError::BadRingSize => "ring size is not a power of two in 8..=1024",
            NetConfigError::BadSocketCount => "socket limit out of range",
            NetConfigError::BadSocketBuffer => "socket buffer size out of range",
        };
        f.write_str(text)
    }
}

fn optional<const N: usize>(bytes: &[u8]) -> Option<[u8; N]> {
    let mut field = [0u8; N];
    field.copy_from_slice(&bytes[..N]);
    (field != [0; N]).then_some(field)
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

/// Whether a MAC may be an app's own: not zero, not multicast (which includes broadcast).
pub fn is_unicast_mac(mac: [u8; 6]) -> bool {
    mac != [0; 6] && mac[0] & 1 == 0
}

/// Whether an IPv4 address may be an app's own.
pub fn is_usable_ipv4(address: [u8; 4]) -> bool {
    address != [0; 4] && address[0] != 127 && !(224..=255).contains(&address[0])
}

/// Whether an IPv6 address may be an app's own.
pub fn is_usable_ipv6(address: [u8; 16]) -> bool {
    let mut loopback = [0u8; 16];
    loopback[15] = 1;
    address != [0; 16] && address != loopback && address[0] != 0xff
}

/// The MAC an app gets when its manifest names none: locally administered (`02:`), unicast,
/// from a hash of the app's name, so it is stable across builds and differs between apps.
pub fn derived_mac(app_name: &str) -> [u8; 6] {
    // FNV-1a, 64-bit: small, stable, good enough to spread names.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in app_name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let bytes = hash.to_le_bytes();
    [0x02, bytes[0], bytes[1], bytes[2], bytes[3], bytes[4]]
}

/// The link-local IPv6 address (fe80::/64 + modified EUI-64) of a MAC.
pub fn link_local_ipv6(mac: [u8; 6]) -> [u8; 16] {
    let mut address = [0u8; 16];
    address[0] = 0xfe;
    address[1] = 0x80;
    address[8..].copy_from_slice(&eui64(mac));
    address
}

/// The modified EUI-64 interface identifier of a MAC (RFC 4291 appendix A).
pub fn eui64(mac: [u8; 6]) -> [u8; 8] {
    [
        mac[0] ^ 0x02,
        mac[1],
        mac[2],
        0xff,
        0xfe,
        mac[3],
        mac[4],
        mac[5],
    ]
}

impl NetConfig {
    /// A binding with no IP addresses and default limits; fill in what the manifest says.
    pub const fn new(mac: [u8; 6]) -> NetConfig {
        NetConfig {
            mac,
            ipv4: Ipv4Mode::None,
            gateway4: None,
            dns4: None,
            ipv6: Ipv6Mode::None,
            gateway6: None,
            rx_slots: DEFAULT_RING_SLOTS,
            tx_slots: DEFAULT_RING_SLOTS,
            max_sockets: DEFAULT_MAX_SOCKETS,
            socket_buffer: DEFAULT_SOCKET_BUFFER,
        }
    }

    /// The static IPv4 address, if the app has one.
    pub fn static_ipv4(&self) -> Option<[u8; 4]> {
        match self.ipv4 {
            Ipv4Mode::Static { address, .. } => Some(address),
            _ => None,
        }
    }

    /// The static IPv6 address, if the app has one.
    pub fn static_ipv6(&self) -> Option<[u8; 16]> {
        match self.ipv6 {
            Ipv6Mode::Static { address, .. } => Some(address),
            _ => None,
        }
    }

    /// Checks every field; `Ok(())` means [`NetConfig::decode`] accepts the encoding.
    pub fn check(&self) -> Result<(), NetConfigError> {
        if !is_unicast_mac(self.mac) {
            return Err(NetConfigError::BadMac);
        }
        if let Ipv4Mode::Static { address, prefix } = self.ipv4 {
            if prefix > 32 {
                return Err(NetConfigError::BadPrefix);
            }
            if !is_usable_ipv4(address) {
                return Err(NetConfigError::BadIpv4);
            }
        }
        if let Ipv6Mode::Static { address, prefix } = self.ipv6 {
            if prefix > 128 {
                return Err(NetConfigError::BadPrefix);
            }
            if !is_usable_ipv6(address) {
                return Err(NetConfigError::BadIpv6);
            }
        }
        for slots in [self.rx_slots, self.tx_slots] {
            if !slots.is_power_of_two() || !(MIN_RING_SLOTS..=MAX_RING_SLOTS).contains(&slots) {
                return Err(NetConfigError::BadRingSize);
            }
        }
        if self.max_sockets == 0 || self.max_sockets > MAX_SOCKETS {
            return Err(NetConfigError::BadSocketCount);
        }
        if !(MIN_SOCKET_BUFFER..=MAX_SOCKET_BUFFER).contains(&self.socket_buffer) {
            return Err(NetConfigError::BadSocketBuffer);
        }
        Ok(())
    }

    /// The 64-byte encoding (see the module docs).
    pub fn encode(&self) -> [u8; NET_CONFIG_BYTES] {
        let mut out = [0u8; NET_CONFIG_BYTES];
        out[..6].copy_from_slice(&self.mac);
        match self.ipv4 {
            Ipv4Mode::None => {}
            Ipv4Mode::Static { address, prefix } => {
                out[6] = 1;
                out[7] = prefix;
                out[8..12].copy_from_slice(&address);
            }
            Ipv4Mode::Dhcp => out[6] = 2,
        }
        out[12..16].copy_from_slice(&self.gateway4.unwrap_or_default());
        out[16..20].copy_from_slice(&self.dns4.unwrap_or_default());
        match self.ipv6 {
            Ipv6Mode::None => {}
            Ipv6Mode::Static { address, prefix } => {
                out[20] = 1;
                out[21] = prefix;
                out[24..40].copy_from_slice(&address);
            }
            Ipv6Mode::Slaac => out[20] = 2,
        }
        out[22..24].copy_from_slice(&self.rx_slots.to_le_bytes());
        out[40..56].copy_from_slice(&self.gateway6.unwrap_or_default());
        out[56..58].copy_from_slice(&self.tx_slots.to_le_bytes());
        out[58..60].copy_from_slice(&self.max_sockets.to_le_bytes());
        out[60..64].copy_from_slice(&self.socket_buffer.to_le_bytes());
        out
    }

    /// Decodes and checks an encoding; trusts nothing in it.
    pub fn decode(bytes: &[u8; NET_CONFIG_BYTES]) -> Result<NetConfig, NetConfigError> {
        let mut mac = [0u8; 6];
        mac.copy_from_slice(&bytes[..6]);
        let mut ipv4_address = [0u8; 4];
        ipv4_address.copy_from_slice(&bytes[8..12]);
        let ipv4 = match bytes[6] {
            0 => Ipv4Mode::None,
            1 => Ipv4Mode::Static {
                address: ipv4_address,
                prefix: bytes[7],
            },
            2 => Ipv4Mode::Dhcp,
            _ => return Err(NetConfigError::BadMode),
        };
        let mut ipv6_address = [0u8; 16];
        ipv6_address.copy_from_slice(&bytes[24..40]);
        let ipv6 = match bytes[20] {
            0 => Ipv6Mode::None,
            1 => Ipv6Mode::Static {
                address: ipv6_address,
                prefix: bytes[21],
            },
            2 => Ipv6Mode::Slaac,
            _ => return Err(NetConfigError::BadMode),
        };
        let config = NetConfig {
            mac,
            ipv4,
            gateway4: optional(&bytes[12..16]),
            dns4: optional(&bytes[16..20]),
            ipv6,
            gateway6: optional(&bytes[40..56]),
            rx_slots: u16_at(bytes, 22),
            tx_slots: u16_at(bytes, 56),
            max_sockets: u16_at(bytes, 58),
            socket_buffer: u32::from_le_bytes([bytes[60], bytes[61], bytes[62], bytes[63]]),
        };
        config.check()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> NetConfig {
        NetConfig {
            ipv4: Ipv4Mode::Static {
                address: [10, 0, 2, 15],
                prefix: 24,
            },
            gateway4: Some([10, 0, 2, 2]),
            dns4: Some([10, 0, 2, 3]),
            ipv6: Ipv6Mode::Static {
                address: [0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x15],
                prefix: 64,
            },
            ..NetConfig::new(derived_mac("http"))
        }
    }

    #[test]
    fn configs_round_trip() {
        let config = sample();
        assert_eq!(NetConfig::decode(&config.encode()), Ok(config));
        let dhcp = NetConfig {
            ipv4: Ipv4Mode::Dhcp,
            ipv6: Ipv6Mode::Slaac,
            ..NetConfig::new(derived_mac("kv"))
        };
        assert_eq!(NetConfig::decode(&dhcp.encode()), Ok(dhcp));
    }

    #[test]
    fn bad_configs_are_refused_by_name() {
        let good = sample().encode();
        let mut bad = good;
        bad[0] = 1; // multicast MAC
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadMac));
        let mut bad = good;
        bad[6] = 9;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadMode));
        let mut bad = good;
        bad[7] = 33;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadPrefix));
        let mut bad = good;
        bad[8] = 224;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadIpv4));
        let mut bad = good;
        bad[24] = 0xff;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadIpv6));
        let mut bad = good;
        bad[22] = 100;
        bad[23] = 0;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadRingSize));
        let mut bad = good;
        bad[58] = 0;
        bad[59] = 0;
        assert_eq!(NetConfig::decode(&bad), Err(NetConfigError::BadSocketCount));
        let mut bad = good;
        bad[60..64].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(
            NetConfig::decode(&bad),
            Err(NetConfigError::BadSocketBuffer)
        );
    }

    #[test]
    fn derived_macs_are_stable_local_unicast_and_distinct() {
        let a = derived_mac("http");
        assert_eq!(a, derived_mac("http"));
        assert_ne!(a, derived_mac("http2"));
        assert!(is_unicast_mac(a));
        assert_eq!(a[0], 0x02);
        assert_eq!(
            link_local_ipv6([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            [
                0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0x50, 0x54, 0, 0xff, 0xfe, 0x12, 0x34, 0x56
            ]
        );
    }
}
