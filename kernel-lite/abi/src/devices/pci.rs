//! PCI configuration space: ECAM address arithmetic, the header fields kernel-lite reads, BAR
//! decoding with the write-ones size probe, the capability list, and the MSI and MSI-X
//! capabilities.
//!
//! kernel-lite reads a function's first 256 bytes of configuration space into a buffer and
//! decodes it here; every pointer in it (the capability list) is checked and followed at most
//! a bounded number of times.

use super::{le16, le32};
use core::fmt;

/// Bytes of the configuration space decoded here (the conventional PCI part).
pub const CONFIG_BYTES: usize = 256;

pub const VENDOR_ID: usize = 0x00;
pub const DEVICE_ID: usize = 0x02;
pub const COMMAND: usize = 0x04;
pub const STATUS: usize = 0x06;
pub const REVISION: usize = 0x08;
pub const HEADER_TYPE: usize = 0x0e;
pub const BAR0: usize = 0x10;
pub const CAPABILITIES_POINTER: usize = 0x34;
/// The secondary bus number of a PCI-to-PCI bridge (header type 1).
pub const SECONDARY_BUS: usize = 0x19;

pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// No function answers here: the vendor ID reads as all ones.
pub const NO_DEVICE: u16 = 0xffff;

pub const CAPABILITY_MSI: u8 = 0x05;
pub const CAPABILITY_VENDOR: u8 = 0x09;
pub const CAPABILITY_PCIE: u8 = 0x10;
pub const CAPABILITY_MSIX: u8 = 0x11;
/// The most capabilities followed in one list: 48 fit in 192 bytes, so more means a loop.
const MAX_CAPABILITIES: usize = 48;

/// A function's address on its segment: bus, device (0–31), function (0–7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FunctionAddress {
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FunctionAddress {
    /// `None` when device or function is out of range.
    pub fn new(bus: u8, device: u8, function: u8) -> Option<FunctionAddress> {
        (device < 32 && function < 8).then_some(FunctionAddress {
            bus,
            device,
            function,
        })
    }

    /// Byte offset of this function's configuration space from the ECAM base of bus 0 of a
    /// region whose first bus is `bus_start`; `None` when the bus lies below the region.
    pub fn ecam_offset(self, bus_start: u8) -> Option<u64> {
        let bus = self.bus.checked_sub(bus_start)?;
        Some(
            (u64::from(bus) << 20)
                | (u64::from(self.device) << 15)
                | (u64::from(self.function) << 12),
        )
    }
}

impl fmt::Display for FunctionAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// The identity of a function, from its configuration header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    /// 0: a device, 1: a PCI-to-PCI bridge, 2: a CardBus bridge.
    pub header_type: u8,
    pub multi_function: bool,
}

impl Identity {
    /// Decodes the header; `None` when the buffer is short or no function answers.
    pub fn parse(config: &[u8]) -> Option<Identity> {
        let vendor = le16(config, VENDOR_ID)?;
        if vendor == NO_DEVICE {
            return None;
        }
        let header = *config.get(HEADER_TYPE)?;
        Some(Identity {
            vendor,
            device: le16(config, DEVICE_ID)?,
            revision: *config.get(REVISION)?,
            prog_if: *config.get(REVISION + 1)?,
            subclass: *config.get(REVISION + 2)?,
            class: *config.get(REVISION + 3)?,
            header_type: header & 0x7f,
            multi_function: header & 0x80 != 0,
        })
    }

    /// How many BARs this header type has.
    pub fn bar_count(&self) -> usize {
        match self.header_type {
            0 => 6,
            1 => 2,
            _ => 0,
        }
    }

    pub fn is_pci_bridge(&self) -> bool {
        self.header_type == 1
    }
}

/// A readable name for a class and subclass (PCI code and ID assignment specification).
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x00, _) => "unclassified",
        (0x01, 0x00) => "SCSI",
        (0x01, 0x01) => "IDE",
        (0x01, 0x06) => "SATA",
        (0x01, 0x08) => "NVMe",
        (0x01, _) => "storage",
        (0x02, 0x00) => "Ethernet",
        (0x02, _) => "network",
        (0x03, 0x00) => "VGA",
        (0x03, _) => "display",
        (0x04, _) => "multimedia",
        (0x05, _) => "memory",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, _) => "bridge",
        (0x07, _) => "communication",
        (0x08, _) => "system peripheral",
        (0x09, _) => "input",
        (0x0c, 0x03) => "USB",
        (0x0c, 0x05) => "SMBus",
        (0x0c, _) => "serial bus",
        (0xff, _) => "vendor-specific",
        _ => "other",
    }
}

/// The kind of a BAR, from the low bits of its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32,
    /// Takes this BAR and the next.
    Memory64,
    /// The reserved memory type (`0b01`, "below 1 MiB" in old PCI): not used here.
    Reserved,
}

impl BarKind {
    pub fn of(raw: u32) -> BarKind {
        if raw & 1 != 0 {
            return BarKind::Io;
        }
        match (raw >> 1) & 0b11 {
            0b00 => BarKind::Memory32,
            0b10 => BarKind::Memory64,
            _ => BarKind::Reserved,
        }
    }
}

/// A decoded BAR: where the function's registers are, and how large the window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bar {
    Memory {
        address: u64,
        size: u64,
        prefetchable: bool,
        /// A 64-bit BAR (it also takes the next BAR slot).
        wide: bool,
    },
    Io {
        port: u32,
        size: u32,
    },
}

impl Bar {
    /// Decodes a BAR from its value and the value read back after writing all ones (the size
    /// probe); for a 64-bit BAR, `high` and `probe_high` are the next slot's, else ignored.
    /// `None` when the BAR is not implemented (the probe reads back no writable address bit).
    pub fn decode(raw: u32, high: u32, probe: u32, probe_high: u32) -> Option<Bar> {
        let lowest_bit = |mask: u64| (mask != 0).then(|| mask.isolate_lowest_one());
        match BarKind::of(raw) {
            BarKind::Io => {
                let size = lowest_bit(u64::from(probe & !0b11))?;
                Some(Bar::Io {
                    port: raw & !0b11,
                    size: size as u32,
                })
            }
            BarKind::Memory32 => Some(Bar::Memory {
                address: u64::from(raw & !0xf),
                size: lowest_bit(u64::from(probe & !0xf))?,
                prefetchable: raw & 0b1000 != 0,
                wide: false,
            }),
            BarKind::Memory64 => {
                let probe = (u64::from(probe_high) << 32) | u64::from(probe & !0xf);
                Some(Bar::Memory {
                    address: (u64::from(high) << 32) | u64::from(raw & !0xf),
                    size: lowest_bit(probe)?,
                    prefetchable: raw & 0b1000 != 0,
                    wide: true,
                })
            }
            BarKind::Reserved => None,
        }
    }
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = |f: &mut fmt::Formatter<'_>, bytes: u64| match bytes {
            b if b >= 1 << 20 && b % (1 << 20) == 0 => write!(f, "{} MiB", b >> 20),
            b if b >= 1 << 10 && b % (1 << 10) == 0 => write!(f, "{} KiB", b >> 10),
            b => write!(f, "{b} B"),
        };
        match *self {
            Bar::Memory {
                address,
                size: bytes,
                prefetchable,
                wide,
            } => {
                write!(f, "mem{} {address:#x} ", if wide { "64" } else { "32" })?;
                size(f, bytes)?;
                if prefetchable {
                    write!(f, " pref")?;
                }
                Ok(())
            }
            Bar::Io { port, size: bytes } => {
                write!(f, "io {port:#x} ")?;
                size(f, bytes.into())
            }
        }
    }
}

/// One entry of a capability list: its ID and where it sits in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: usize,
}

/// The capability list of a function's configuration space (first [`CONFIG_BYTES`]).
pub fn capabilities(config: &[u8]) -> Capabilities<'_> {
    let has_list = le16(config, STATUS).is_some_and(|status| status & STATUS_CAPABILITIES != 0);
    let first = if has_list {
        config.get(CAPABILITIES_POINTER).copied().unwrap_or(0)
    } else {
        0
    };
    Capabilities {
        config,
        next: first & 0xfc,
        seen: 0,
    }
}

/// Iterator over [`capabilities`]: ends at a null pointer, a pointer into the header or past
/// the buffer, or after [`MAX_CAPABILITIES`] entries (a loop).
pub struct Capabilities<'a> {
    config: &'a [u8],
    next: u8,
    seen: usize,
}

impl Iterator for Capabilities<'_> {
    type Item = Capability;

    fn next(&mut self) -> Option<Capability> {
        let offset = usize::from(self.next);
        if offset < 0x40 || self.seen >= MAX_CAPABILITIES {
            return None;
        }
        let id = *self.config.get(offset)?;
        let next = *self.config.get(offset + 1)?;
        self.seen += 1;
        self.next = next & 0xfc;
        Some(Capability { id, offset })
    }
}

/// The MSI-X capability: where the vector table and the pending-bit array live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsixCapability {
    /// The capability's offset in configuration space.
    pub offset: usize,
    /// Number of table entries (vectors), 1–2048.
    pub table_size: u16,
    /// Which BAR holds the table, and at what offset in it.
    pub table_bar: u8,
    pub table_offset: u32,
    pub pba_bar: u8,
    pub pba_offset: u32,
}

/// Bytes of one MSI-X table entry: address low, address high, data, vector control.
pub const MSIX_ENTRY_BYTES: u64 = 16;
/// Vector control: the entry is masked.
pub const MSIX_ENTRY_MASKED: u32 = 1;
/// Message control (at capability offset + 2): MSI-X is enabled.
pub const MSIX_ENABLE: u16 = 1 << 15;
/// Message control: every vector is masked.
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

impl MsixCapability {
    /// Decodes the MSI-X capability at `offset`; `None` when it is not one or is cut short.
    pub fn parse(config: &[u8], offset: usize) -> Option<MsixCapability> {
        if *config.get(offset)? != CAPABILITY_MSIX {
            return None;
        }
        let control = le16(config, offset + 2)?;
        let table = le32(config, offset + 4)?;
        let pba = le32(config, offset + 8)?;
        Some(MsixCapability {
            offset,
            table_size: (control & 0x7ff) + 1,
            table_bar: (table & 0b111) as u8,
            table_offset: table & !0b111,
            pba_bar: (pba & 0b111) as u8,
            pba_offset: pba & !0b111,
        })
    }

    /// The offset of message control in configuration space.
    pub fn control_offset(&self) -> usize {
        self.offset + 2
    }

    /// Byte offset of table entry `index` within the table's BAR.
    pub fn entry_offset(&self, index: u16) -> Option<u64> {
        (index < self.table_size)
            .then(|| u64::from(self.table_offset) + u64::from(index) * MSIX_ENTRY_BYTES)
    }
}

/// The MSI capability's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiCapability {
    pub offset: usize,
    /// The message address has a high half.
    pub wide_address: bool,
    pub per_vector_masking: bool,
    /// How many vectors the function can ask for (1–32).
    pub vectors: u8,
}

impl MsiCapability {
    pub fn parse(config: &[u8], offset: usize) -> Option<MsiCapability> {
        if *config.get(offset)? != CAPABILITY_MSI {
            return None;
        }
        let control = le16(config, offset + 2)?;
        Some(MsiCapability {
            offset,
            wide_address: control & (1 << 7) != 0,
            per_vector_masking: control & (1 << 8) != 0,
            vectors: 1 << ((control >> 1) & 0b111).min(5),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> [u8; CONFIG_BYTES] {
        let mut config = [0u8; CONFIG_BYTES];
        config[0..2].copy_from_slice(&0x1af4u16.to_le_bytes());
        config[2..4].copy_from_slice(&0x1041u16.to_le_bytes());
        config[REVISION] = 1;
        config[REVISION + 2] = 0x00;
        config[REVISION + 3] = 0x02;
        config[HEADER_TYPE] = 0x80;
        config
    }

    #[test]
    fn ecam_offsets_and_addresses() {
        let at = FunctionAddress::new(0, 0x1f, 2).unwrap();
        assert_eq!(at.to_string(), "00:1f.2");
        assert_eq!(at.ecam_offset(0), Some(0xfa000));
        let far = FunctionAddress::new(3, 1, 7).unwrap();
        assert_eq!(far.ecam_offset(0), Some(0x30f000));
        assert_eq!(far.ecam_offset(2), Some(0x10f000));
        assert_eq!(far.ecam_offset(4), None);
        assert_eq!(FunctionAddress::new(0, 32, 0), None);
        assert_eq!(FunctionAddress::new(0, 0, 8), None);
    }

    #[test]
    fn identity_from_the_header() {
        let identity = Identity::parse(&config()).unwrap();
        assert_eq!((identity.vendor, identity.device), (0x1af4, 0x1041));
        assert_eq!((identity.class, identity.subclass), (0x02, 0x00));
        assert!(identity.multi_function);
        assert_eq!(identity.bar_count(), 6);
        assert_eq!(class_name(identity.class, identity.subclass), "Ethernet");
        assert_eq!(class_name(0x06, 0x01), "ISA bridge");
        let mut empty = config();
        empty[0] = 0xff;
        empty[1] = 0xff;
        assert_eq!(Identity::parse(&empty), None);
        assert_eq!(Identity::parse(&config()[..8]), None);
    }

    #[test]
    fn bars_decode_with_their_sizes() {
        // A 4 KiB 32-bit memory BAR at 0xfebd1000.
        assert_eq!(
            Bar::decode(0xfebd_1000, 0, 0xffff_f000, 0),
            Some(Bar::Memory {
                address: 0xfebd_1000,
                size: 4096,
                prefetchable: false,
                wide: false
            })
        );
        // A 16 KiB prefetchable 64-bit BAR above 4 GiB.
        assert_eq!(
            Bar::decode(0x0000_400c, 0x1, 0xffff_c00c, 0xffff_ffff),
            Some(Bar::Memory {
                address: 0x1_0000_4000,
                size: 16 * 1024,
                prefetchable: true,
                wide: true
            })
        );
        // A 64-bit BAR larger than 4 GiB: the size is in the high half.
        assert_eq!(
            Bar::decode(0x4, 0x8, 0x4, 0xffff_fff8),
            Some(Bar::Memory {
                address: 0x8_0000_0000,
                size: 0x8_0000_0000,
                prefetchable: false,
                wide: true
            })
        );
        // A 32-byte I/O BAR whose upper bits read back zero (a 16-bit decoder).
        assert_eq!(
            Bar::decode(0xc041, 0, 0x0000_ffe1, 0),
            Some(Bar::Io {
                port: 0xc040,
                size: 32
            })
        );
        // Unimplemented, or the reserved type.
        assert_eq!(Bar::decode(0, 0, 0, 0), None);
        assert_eq!(Bar::decode(0x2, 0, 0xffff_fff2, 0), None);
        assert_eq!(
            Bar::decode(0xfebd_1000, 0, 0xffff_f000, 0)
                .unwrap()
                .to_string(),
            "mem32 0xfebd1000 4 KiB"
        );
    }

    fn with_capabilities(chain: &[(usize, u8, u8)]) -> [u8; CONFIG_BYTES] {
        let mut config = config();
        config[STATUS] = STATUS_CAPABILITIES as u8;
        config[CAPABILITIES_POINTER] = chain.first().map_or(0, |c| c.0 as u8);
        for &(offset, id, next) in chain {
            config[offset] = id;
            config[offset + 1] = next;
        }
        config
    }

    #[test]
    fn the_capability_list_is_walked_in_order() {
        let config = with_capabilities(&[(0x98, 0x11, 0x84), (0x84, 0x09, 0x70), (0x70, 0x05, 0)]);
        let ids: std::vec::Vec<(u8, usize)> =
            capabilities(&config).map(|c| (c.id, c.offset)).collect();
        assert_eq!(ids, [(0x11, 0x98), (0x09, 0x84), (0x05, 0x70)]);
        // No list when the status bit is clear.
        let mut without = config;
        without[STATUS] = 0;
        assert_eq!(capabilities(&without).count(), 0);
    }

    #[test]
    fn bad_capability_lists_end_safely() {
        // A loop.
        let looped = with_capabilities(&[(0x40, 0x09, 0x50), (0x50, 0x09, 0x40)]);
        assert_eq!(capabilities(&looped).count(), MAX_CAPABILITIES);
        // A pointer into the header, and one in the last byte (its next pointer is outside).
        let into_header = with_capabilities(&[(0x40, 0x09, 0x10)]);
        assert_eq!(capabilities(&into_header).count(), 1);
        let mut at_end = config();
        at_end[STATUS] = STATUS_CAPABILITIES as u8;
        at_end[CAPABILITIES_POINTER] = 0xfc;
        assert_eq!(capabilities(&at_end[..0xfd]).count(), 0);
        // The low two bits of pointers are reserved and ignored.
        let unaligned = with_capabilities(&[(0x40, 0x05, 0x53), (0x50, 0x11, 0)]);
        assert_eq!(capabilities(&unaligned).count(), 2);
    }

    #[test]
    fn msix_and_msi_capabilities_decode() {
        let mut config =
            with_capabilities(&[(0x98, CAPABILITY_MSIX, 0x70), (0x70, CAPABILITY_MSI, 0)]);
        // 3 vectors; table in BAR 1 at 0, PBA in BAR 1 at 0x800.
        config[0x9a..0x9c].copy_from_slice(&2u16.to_le_bytes());
        config[0x9c..0xa0].copy_from_slice(&1u32.to_le_bytes());
        config[0xa0..0xa4].copy_from_slice(&0x801u32.to_le_bytes());
        let msix = MsixCapability::parse(&config, 0x98).unwrap();
        assert_eq!(
            msix,
            MsixCapability {
                offset: 0x98,
                table_size: 3,
                table_bar: 1,
                table_offset: 0,
                pba_bar: 1,
                pba_offset: 0x800
            }
        );
        assert_eq!(msix.entry_offset(2), Some(32));
        assert_eq!(msix.entry_offset(3), None);
        assert_eq!(msix.control_offset(), 0x9a);
        assert_eq!(MsixCapability::parse(&config, 0x70), None);
        // MSI: 64-bit address, 4 vectors.
        config[0x72..0x74].copy_from_slice(&((1u16 << 7) | (2 << 1)).to_le_bytes());
        let msi = MsiCapability::parse(&config, 0x70).unwrap();
        assert!(msi.wide_address && !msi.per_vector_masking);
        assert_eq!(msi.vectors, 4);
        assert_eq!(MsixCapability::parse(&config[..0x9c], 0x98), None);
    }
}
