//! The ACPI tables kernel-lite needs: the RSDP, the root table (RSDT or XSDT), the MADT (local
//! APIC, I/O APICs, interrupt source overrides) and the MCFG (where PCI configuration space is
//! memory-mapped).
//!
//! Physical memory is read through [`PhysicalMemory`], which may refuse a range; every pointer
//! and length the firmware wrote is checked before it is followed, every table's checksum is
//! verified, and a bad table is a named [`AcpiError`], never a panic or an endless loop.

use super::{le16, le32, le64};
use core::fmt;

/// A table signature, such as `*b"APIC"` for the MADT.
pub type Signature = [u8; 4];

pub const MADT: Signature = *b"APIC";
pub const MCFG: Signature = *b"MCFG";
pub const RSDT: Signature = *b"RSDT";
pub const XSDT: Signature = *b"XSDT";

/// Bytes of every table's header.
pub const HEADER_BYTES: usize = 36;
/// The longest table accepted: a length field beyond it is taken as corrupt.
pub const MAX_TABLE_BYTES: usize = 1 << 20;
const RSDP_V1_BYTES: usize = 20;
const RSDP_V2_BYTES: usize = 36;

/// Read access to physical memory.
pub trait PhysicalMemory {
    /// The `len` bytes at physical `address`, or `None` where they are not all readable.
    fn read(&self, address: u64, len: usize) -> Option<&[u8]>;
}

/// Shows a signature as text, with anything unprintable escaped.
struct ShowSignature(Signature);

impl fmt::Display for ShowSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            if byte.is_ascii_graphic() || byte == b' ' {
                write!(f, "{}", byte as char)?;
            } else {
                write!(f, "\\x{byte:02x}")?;
            }
        }
        Ok(())
    }
}

/// Why the ACPI tables could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcpiError {
    /// The boot loader found no RSDP.
    NoRsdp,
    /// `what` at `address` lies outside readable physical memory.
    Unreadable { what: &'static str, address: u64 },
    /// No `RSD PTR ` signature at this address.
    RsdpBadSignature(u64),
    /// The RSDP's checksum (or its extended checksum) is wrong.
    RsdpBadChecksum(u64),
    /// The RSDP's length field (revision 2 and later) is out of range.
    RsdpBadLength(u32),
    /// The RSDP names no root table.
    NoRootTable,
    /// The table at `address` is not the `expected` one.
    WrongSignature {
        expected: Signature,
        found: Signature,
        address: u64,
    },
    /// A table's length field is shorter than its header or absurdly long.
    BadLength {
        signature: Signature,
        address: u64,
        length: u32,
    },
    /// A table's bytes do not sum to zero.
    BadChecksum { signature: Signature, address: u64 },
    /// A table is too short for its fixed fields.
    Truncated { signature: Signature },
    /// The MADT entry at byte `offset` of the table has a bad length for its type.
    BadMadtEntry { offset: usize, kind: u8, length: u8 },
    /// The interrupt flags of the MADT entry at `offset` use a reserved encoding.
    BadInterruptFlags { offset: usize, flags: u16 },
    /// MCFG entry `index` has its last bus before its first.
    BadMcfgEntry { index: usize },
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AcpiError::NoRsdp => write!(f, "the boot loader found no RSDP"),
            AcpiError::Unreadable { what, address } => {
                write!(f, "{what} at {address:#x} is outside physical memory")
            }
            AcpiError::RsdpBadSignature(at) => write!(f, "no RSDP signature at {at:#x}"),
            AcpiError::RsdpBadChecksum(at) => write!(f, "the RSDP at {at:#x} has a bad checksum"),
            AcpiError::RsdpBadLength(length) => write!(f, "the RSDP claims {length} bytes"),
            AcpiError::NoRootTable => write!(f, "the RSDP names no RSDT or XSDT"),
            AcpiError::WrongSignature {
                expected,
                found,
                address,
            } => write!(
                f,
                "expected the {} at {address:#x}, found '{}'",
                ShowSignature(expected),
                ShowSignature(found)
            ),
            AcpiError::BadLength {
                signature,
                address,
                length,
            } => write!(
                f,
                "the {} at {address:#x} claims a length of {length} bytes",
                ShowSignature(signature)
            ),
            AcpiError::BadChecksum { signature, address } => write!(
                f,
                "the {} at {address:#x} has a bad checksum",
                ShowSignature(signature)
            ),
            AcpiError::Truncated { signature } => {
                write!(f, "the {} is truncated", ShowSignature(signature))
            }
            AcpiError::BadMadtEntry {
                offset,
                kind,
                length,
            } => write!(
                f,
                "MADT entry of type {kind} at offset {offset} has a bad length ({length})"
            ),
            AcpiError::BadInterruptFlags { offset, flags } => write!(
                f,
                "MADT entry at offset {offset} has reserved interrupt flags {flags:#x}"
            ),
            AcpiError::BadMcfgEntry { index } => {
                write!(f, "MCFG entry {index} ends before it starts")
            }
        }
    }
}

fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &byte| sum.wrapping_add(byte)) == 0
}

/// Which root table the RSDP names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootTable {
    /// ACPI 1.0: 32-bit table pointers.
    Rsdt(u32),
    /// ACPI 2.0 and later: 64-bit table pointers.
    Xsdt(u64),
}

impl RootTable {
    pub fn address(self) -> u64 {
        match self {
            RootTable::Rsdt(address) => address.into(),
            RootTable::Xsdt(address) => address,
        }
    }

    pub fn signature(self) -> Signature {
        match self {
            RootTable::Rsdt(_) => RSDT,
            RootTable::Xsdt(_) => XSDT,
        }
    }

    fn entry_bytes(self) -> usize {
        match self {
            RootTable::Rsdt(_) => 4,
            RootTable::Xsdt(_) => 8,
        }
    }
}

/// The RSDP, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rsdp {
    pub address: u64,
    pub revision: u8,
    /// The XSDT where the RSDP names one, else the RSDT.
    pub root: RootTable,
}

impl Rsdp {
    /// Reads and checks the RSDP at `address`.
    pub fn read(memory: &impl PhysicalMemory, address: u64) -> Result<Rsdp, AcpiError> {
        let unreadable = AcpiError::Unreadable {
            what: "the RSDP",
            address,
        };
        let v1 = memory.read(address, RSDP_V1_BYTES).ok_or(unreadable)?;
        if &v1[..8] != b"RSD PTR " {
            return Err(AcpiError::RsdpBadSignature(address));
        }
        if !checksum_ok(v1) {
            return Err(AcpiError::RsdpBadChecksum(address));
        }
        let revision = v1[15];
        let rsdt = le32(v1, 16).unwrap_or(0);
        let mut xsdt = 0;
        if revision >= 2 {
            let v2 = memory.read(address, RSDP_V2_BYTES).ok_or(unreadable)?;
            let length = le32(v2, 20).unwrap_or(0);
            if !(RSDP_V2_BYTES..=4096).contains(&(length as usize)) {
                return Err(AcpiError::RsdpBadLength(length));
            }
            let whole = memory.read(address, length as usize).ok_or(unreadable)?;
            if !checksum_ok(whole) {
                return Err(AcpiError::RsdpBadChecksum(address));
            }
            xsdt = le64(v2, 24).unwrap_or(0);
        }
        let root = match (xsdt, rsdt) {
            (0, 0) => return Err(AcpiError::NoRootTable),
            (0, rsdt) => RootTable::Rsdt(rsdt),
            (xsdt, _) => RootTable::Xsdt(xsdt),
        };
        Ok(Rsdp {
            address,
            revision,
            root,
        })
    }
}

/// A table whose signature, length and checksum have been checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Table<'m> {
    pub address: u64,
    /// The whole table, header included.
    pub bytes: &'m [u8],
}

impl<'m> Table<'m> {
    /// Reads the table at `address` and checks it; `expected` is its signature where the caller
    /// knows it.
    pub fn read(
        memory: &'m impl PhysicalMemory,
        address: u64,
        expected: Option<Signature>,
    ) -> Result<Table<'m>, AcpiError> {
        let header = memory
            .read(address, HEADER_BYTES)
            .ok_or(AcpiError::Unreadable {
                what: "a table header",
                address,
            })?;
        let signature: Signature = header[..4].try_into().unwrap_or_default();
        if let Some(expected) = expected
            && expected != signature
        {
            return Err(AcpiError::WrongSignature {
                expected,
                found: signature,
                address,
            });
        }
        let length = le32(header, 4).unwrap_or(0);
        if !(HEADER_BYTES..=MAX_TABLE_BYTES).contains(&(length as usize)) {
            return Err(AcpiError::BadLength {
                signature,
                address,
                length,
            });
        }
        let bytes = memory
            .read(address, length as usize)
            .ok_or(AcpiError::Unreadable {
                what: "a table",
                address,
            })?;
        if !checksum_ok(bytes) {
            return Err(AcpiError::BadChecksum { signature, address });
        }
        Ok(Table { address, bytes })
    }

    pub fn signature(&self) -> Signature {
        self.bytes[..4].try_into().unwrap_or_default()
    }

    pub fn revision(&self) -> u8 {
        self.bytes[8]
    }

    /// The bytes after the header.
    pub fn body(&self) -> &'m [u8] {
        &self.bytes[HEADER_BYTES..]
    }
}

/// The ACPI tables reached from one RSDP.
pub struct Tables<'m, M: PhysicalMemory> {
    memory: &'m M,
    pub rsdp: Rsdp,
    root: Table<'m>,
}

impl<'m, M: PhysicalMemory> Tables<'m, M> {
    /// Checks the RSDP at `rsdp_address` and the root table it names.
    pub fn new(memory: &'m M, rsdp_address: u64) -> Result<Self, AcpiError> {
        let rsdp = Rsdp::read(memory, rsdp_address)?;
        let root = Table::read(memory, rsdp.root.address(), Some(rsdp.root.signature()))?;
        Ok(Tables { memory, rsdp, root })
    }

    /// The physical addresses the root table lists.
    pub fn addresses(&self) -> impl Iterator<Item = u64> + '_ {
        let size = self.rsdp.root.entry_bytes();
        self.root.body().chunks_exact(size).map(move |entry| {
            if size == 4 {
                le32(entry, 0).unwrap_or(0).into()
            } else {
                le64(entry, 0).unwrap_or(0)
            }
        })
    }

    /// The first table with `signature`, checked; `Ok(None)` when there is none. Entries whose
    /// header cannot be read are passed over.
    pub fn find(&self, signature: Signature) -> Result<Option<Table<'m>>, AcpiError> {
        for address in self.addresses() {
            let Some(header) = self.memory.read(address, HEADER_BYTES) else {
                continue;
            };
            if header[..4] == signature {
                return Table::read(self.memory, address, Some(signature)).map(Some);
            }
        }
        Ok(None)
    }
}

/// An interrupt line's polarity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Polarity {
    ActiveHigh,
    ActiveLow,
}

/// An interrupt line's trigger mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// An I/O APIC, from the MADT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoApicEntry {
    pub id: u8,
    pub address: u32,
    /// The first global system interrupt (GSI) its inputs serve.
    pub gsi_base: u32,
}

/// An ISA IRQ that is wired to another GSI, or with other flags, than the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptOverride {
    pub bus: u8,
    pub irq: u8,
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// One MADT entry kernel-lite uses; the others are [`MadtEntry::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MadtEntry {
    LocalApic {
        processor_uid: u8,
        apic_id: u8,
        /// Usable now (bit 0) or able to come online later (bit 1).
        enabled: bool,
    },
    IoApic(IoApicEntry),
    Override(InterruptOverride),
    /// A 64-bit address of the local APIC, replacing the header's.
    LocalApicAddress(u64),
    Other {
        kind: u8,
    },
}

/// Decodes MPS INTI flags; the "conforms to the bus" encodings mean ISA's: edge, active high.
fn interrupt_flags(flags: u16, offset: usize) -> Result<(Polarity, Trigger), AcpiError> {
    let polarity = match flags & 0b11 {
        0 | 1 => Polarity::ActiveHigh,
        3 => Polarity::ActiveLow,
        _ => return Err(AcpiError::BadInterruptFlags { offset, flags }),
    };
    let trigger = match (flags >> 2) & 0b11 {
        0 | 1 => Trigger::Edge,
        3 => Trigger::Level,
        _ => return Err(AcpiError::BadInterruptFlags { offset, flags }),
    };
    Ok((polarity, trigger))
}

/// The MADT ("APIC" table), checked for its fixed fields.
#[derive(Debug, Clone, Copy)]
pub struct Madt<'m> {
    /// The local APIC's 32-bit address from the header (see [`Madt::local_apic_address`]).
    pub header_local_apic_address: u32,
    /// The machine also has the two legacy 8259 PICs.
    pub pcat_compat: bool,
    entries: &'m [u8],
}

/// Where the MADT's entries start, counted from the start of the table.
const MADT_ENTRIES_AT: usize = HEADER_BYTES + 8;

impl<'m> Madt<'m> {
    pub fn parse(table: Table<'m>) -> Result<Madt<'m>, AcpiError> {
        let truncated = AcpiError::Truncated { signature: MADT };
        let body = table.body();
        Ok(Madt {
            header_local_apic_address: le32(body, 0).ok_or(truncated)?,
            pcat_compat: le32(body, 4).ok_or(truncated)? & 1 != 0,
            entries: &table.bytes[MADT_ENTRIES_AT..],
        })
    }

    /// The entries in table order; iteration stops after the first bad one.
    pub fn entries(&self) -> MadtEntries<'m> {
        MadtEntries {
            bytes: self.entries,
            at: 0,
            failed: false,
        }
    }

    /// The local APIC's address: an address-override entry's, else the header's.
    pub fn local_apic_address(&self) -> Result<u64, AcpiError> {
        let mut address = u64::from(self.header_local_apic_address);
        for entry in self.entries() {
            if let MadtEntry::LocalApicAddress(at) = entry? {
                address = at;
            }
        }
        Ok(address)
    }
}

/// Iterator over [`Madt::entries`].
pub struct MadtEntries<'m> {
    bytes: &'m [u8],
    at: usize,
    failed: bool,
}

impl MadtEntries<'_> {
    fn entry(&self) -> Result<(MadtEntry, usize), AcpiError> {
        let offset = MADT_ENTRIES_AT + self.at;
        let rest = &self.bytes[self.at..];
        let kind = rest[0];
        let length = rest.get(1).copied().unwrap_or(0);
        let bad = AcpiError::BadMadtEntry {
            offset,
            kind,
            length,
        };
        let minimum = match kind {
            0 => 8,
            1 => 12,
            2 => 10,
            5 => 12,
            _ => 2,
        };
        if usize::from(length) < minimum || usize::from(length) > rest.len() {
            return Err(bad);
        }
        let entry = &rest[..usize::from(length)];
        let parsed = match kind {
            0 => MadtEntry::LocalApic {
                processor_uid: entry[2],
                apic_id: entry[3],
                enabled: le32(entry, 4).ok_or(bad)? & 0b11 != 0,
            },
            1 => MadtEntry::IoApic(IoApicEntry {
                id: entry[2],
                address: le32(entry, 4).ok_or(bad)?,
                gsi_base: le32(entry, 8).ok_or(bad)?,
            }),
            2 => {
                let flags = le16(entry, 8).ok_or(bad)?;
                let (polarity, trigger) = interrupt_flags(flags, offset)?;
                MadtEntry::Override(InterruptOverride {
                    bus: entry[2],
                    irq: entry[3],
                    gsi: le32(entry, 4).ok_or(bad)?,
                    polarity,
                    trigger,
                })
            }
            5 => MadtEntry::LocalApicAddress(le64(entry, 4).ok_or(bad)?),
            kind => MadtEntry::Other { kind },
        };
        Ok((parsed, usize::from(length)))
    }
}

impl Iterator for MadtEntries<'_> {
    type Item = Result<MadtEntry, AcpiError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.at >= self.bytes.len() {
            return None;
        }
        match self.entry() {
            Ok((entry, length)) => {
                self.at += length;
                Some(Ok(entry))
            }
            Err(error) => {
                self.failed = true;
                Some(Err(error))
            }
        }
    }
}

/// How an ISA IRQ reaches the I/O APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsaRoute {
    pub gsi: u32,
    pub polarity: Polarity,
    pub trigger: Trigger,
}

/// Where ISA IRQ `irq` arrives: its override where the MADT has one, else GSI `irq`, edge,
/// active high.
pub fn isa_route<'a>(
    overrides: impl IntoIterator<Item = &'a InterruptOverride>,
    irq: u8,
) -> IsaRoute {
    overrides
        .into_iter()
        .find(|o| o.bus == 0 && o.irq == irq)
        .map(|o| IsaRoute {
            gsi: o.gsi,
            polarity: o.polarity,
            trigger: o.trigger,
        })
        .unwrap_or(IsaRoute {
            gsi: irq.into(),
            polarity: Polarity::ActiveHigh,
            trigger: Trigger::Edge,
        })
}

/// A range of PCI buses whose configuration space is memory-mapped (ECAM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamRegion {
    /// Physical address of bus 0's space (not `bus_start`'s).
    pub base: u64,
    pub segment: u16,
    pub bus_start: u8,
    pub bus_end: u8,
}

/// Bytes of one MCFG entry.
const MCFG_ENTRY_BYTES: usize = 16;

/// The ECAM regions the MCFG lists.
pub fn mcfg_regions(table: Table<'_>) -> Result<impl Iterator<Item = EcamRegion> + '_, AcpiError> {
    let body = table.body();
    if body.len() < 8 {
        return Err(AcpiError::Truncated { signature: MCFG });
    }
    let entries = &body[8..];
    let (entries, _) = entries.as_chunks::<MCFG_ENTRY_BYTES>();
    for (index, entry) in entries.iter().enumerate() {
        if entry[11] < entry[10] {
            return Err(AcpiError::BadMcfgEntry { index });
        }
    }
    Ok(entries.iter().map(|entry| EcamRegion {
        base: le64(entry, 0).unwrap_or(0),
        segment: le16(entry, 8).unwrap_or(0),
        bus_start: entry[10],
        bus_end: entry[11],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// Physical memory: one buffer at `base`.
    struct FakeMemory {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysicalMemory for FakeMemory {
        fn read(&self, address: u64, len: usize) -> Option<&[u8]> {
            let start = usize::try_from(address.checked_sub(self.base)?).ok()?;
            self.bytes.get(start..start.checked_add(len)?)
        }
    }

    const BASE: u64 = 0xe_0000;

    impl FakeMemory {
        fn new() -> Self {
            FakeMemory {
                base: BASE,
                bytes: Vec::new(),
            }
        }

        /// Appends `bytes` 16-byte aligned; returns their physical address.
        fn put(&mut self, bytes: &[u8]) -> u64 {
            while self.bytes.len() % 16 != 0 {
                self.bytes.push(0);
            }
            let at = BASE + self.bytes.len() as u64;
            self.bytes.extend_from_slice(bytes);
            at
        }

        fn byte_mut(&mut self, address: u64) -> &mut u8 {
            &mut self.bytes[(address - BASE) as usize]
        }
    }

    fn fix_checksum(bytes: &mut [u8], at: usize, range: core::ops::Range<usize>) {
        bytes[at] = 0;
        let sum = bytes[range].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        bytes[at] = 0u8.wrapping_sub(sum);
    }

    fn table(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(signature);
        bytes.extend_from_slice(&((HEADER_BYTES + body.len()) as u32).to_le_bytes());
        bytes.push(1); // revision
        bytes.push(0); // checksum
        bytes.extend_from_slice(b"LIBOS TESTTABLE\0\0\0\0\0\0\0\0\0\0\0");
        bytes.truncate(HEADER_BYTES);
        bytes.extend_from_slice(body);
        let len = bytes.len();
        fix_checksum(&mut bytes, 9, 0..len);
        bytes
    }

    fn rsdp_v2(xsdt: u64) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(b"RSD PTR ");
        bytes.push(0);
        bytes.extend_from_slice(b"LIBOS ");
        bytes.push(2);
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&36u32.to_le_bytes());
        bytes.extend_from_slice(&xsdt.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        fix_checksum(&mut bytes, 8, 0..20);
        fix_checksum(&mut bytes, 32, 0..36);
        bytes
    }

    fn rsdp_v1(rsdt: u32) -> Vec<u8> {
        let mut bytes = rsdp_v2(0);
        bytes[15] = 0;
        bytes[16..20].copy_from_slice(&rsdt.to_le_bytes());
        bytes.truncate(20);
        fix_checksum(&mut bytes, 8, 0..20);
        bytes
    }

    /// A q35-like MADT: one CPU, one I/O APIC, IRQ 0 on GSI 2 and IRQ 9 level, active high.
    fn q35_madt_body() -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]);
        body.extend_from_slice(&[1, 12, 0, 0]);
        body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(&[2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&[2, 10, 0, 9, 9, 0, 0, 0, 0b1101, 0]);
        body.extend_from_slice(&[4, 6, 0xff, 0, 0, 1]);
        body
    }

    fn mcfg_body() -> Vec<u8> {
        let mut body = vec![0u8; 8];
        body.extend_from_slice(&0xb000_0000u64.to_le_bytes());
        body.extend_from_slice(&[0, 0, 0, 255, 0, 0, 0, 0]);
        body
    }

    /// Memory holding an RSDP (v2 with XSDT, or v1 with RSDT) and the given tables.
    fn machine(v2: bool, tables: &[Vec<u8>]) -> (FakeMemory, u64) {
        let mut memory = FakeMemory::new();
        let addresses: Vec<u64> = tables.iter().map(|t| memory.put(t)).collect();
        let root = if v2 {
            let entries: Vec<u8> = addresses.iter().flat_map(|a| a.to_le_bytes()).collect();
            memory.put(&table(b"XSDT", &entries))
        } else {
            let entries: Vec<u8> = addresses
                .iter()
                .flat_map(|a| (*a as u32).to_le_bytes())
                .collect();
            memory.put(&table(b"RSDT", &entries))
        };
        let rsdp = if v2 {
            memory.put(&rsdp_v2(root))
        } else {
            memory.put(&rsdp_v1(root as u32))
        };
        (memory, rsdp)
    }

    #[test]
    fn a_q35_like_machine_parses_with_xsdt_and_rsdt() {
        for v2 in [true, false] {
            let (memory, rsdp) = machine(
                v2,
                &[
                    table(b"FACP", &[0; 8]),
                    table(b"APIC", &q35_madt_body()),
                    table(b"MCFG", &mcfg_body()),
                ],
            );
            let tables = Tables::new(&memory, rsdp).unwrap();
            assert_eq!(matches!(tables.rsdp.root, RootTable::Xsdt(_)), v2);
            let madt = Madt::parse(tables.find(MADT).unwrap().unwrap()).unwrap();
            assert_eq!(madt.local_apic_address(), Ok(0xfee0_0000));
            assert!(madt.pcat_compat);
            let entries: Vec<MadtEntry> = madt.entries().map(Result::unwrap).collect();
            assert_eq!(entries.len(), 5);
            assert_eq!(
                entries[0],
                MadtEntry::LocalApic {
                    processor_uid: 0,
                    apic_id: 0,
                    enabled: true
                }
            );
            assert_eq!(
                entries[1],
                MadtEntry::IoApic(IoApicEntry {
                    id: 0,
                    address: 0xfec0_0000,
                    gsi_base: 0
                })
            );
            assert_eq!(entries[4], MadtEntry::Other { kind: 4 });
            let overrides: Vec<InterruptOverride> = entries
                .iter()
                .filter_map(|e| match e {
                    MadtEntry::Override(o) => Some(*o),
                    _ => None,
                })
                .collect();
            assert_eq!(isa_route(&overrides, 0).gsi, 2);
            assert_eq!(isa_route(&overrides, 0).trigger, Trigger::Edge);
            assert_eq!(
                isa_route(&overrides, 9),
                IsaRoute {
                    gsi: 9,
                    polarity: Polarity::ActiveHigh,
                    trigger: Trigger::Level
                }
            );
            assert_eq!(
                isa_route(&overrides, 8),
                IsaRoute {
                    gsi: 8,
                    polarity: Polarity::ActiveHigh,
                    trigger: Trigger::Edge
                }
            );
            let regions: Vec<EcamRegion> = mcfg_regions(tables.find(MCFG).unwrap().unwrap())
                .unwrap()
                .collect();
            assert_eq!(
                regions,
                [EcamRegion {
                    base: 0xb000_0000,
                    segment: 0,
                    bus_start: 0,
                    bus_end: 255
                }]
            );
            assert_eq!(tables.find(*b"HPET"), Ok(None));
        }
    }

    #[test]
    fn a_bad_rsdp_is_refused_by_name() {
        let (mut memory, rsdp) = machine(true, &[]);
        assert!(matches!(
            Tables::new(&memory, rsdp + 16),
            Err(AcpiError::RsdpBadSignature(_))
        ));
        assert!(matches!(
            Tables::new(&memory, 0x1000),
            Err(AcpiError::Unreadable { .. })
        ));
        *memory.byte_mut(rsdp + 30) ^= 1; // inside the extended checksum only
        assert_eq!(
            Tables::new(&memory, rsdp).err(),
            Some(AcpiError::RsdpBadChecksum(rsdp))
        );
        let (mut memory, rsdp) = machine(true, &[]);
        *memory.byte_mut(rsdp + 20) = 200; // length 200: beyond the buffer
        assert!(Tables::new(&memory, rsdp).is_err());
        let mut memory = FakeMemory::new();
        let rsdp = memory.put(&rsdp_v1(0));
        assert_eq!(
            Tables::new(&memory, rsdp).err(),
            Some(AcpiError::NoRootTable)
        );
    }

    #[test]
    fn bad_tables_are_refused_by_name() {
        let (mut memory, rsdp) = machine(true, &[table(b"APIC", &q35_madt_body())]);
        let madt_at = BASE;
        *memory.byte_mut(madt_at + 40) ^= 0x10;
        let tables = Tables::new(&memory, rsdp).unwrap();
        assert_eq!(
            tables.find(MADT),
            Err(AcpiError::BadChecksum {
                signature: MADT,
                address: madt_at
            })
        );
        // A length field shorter than the header, or past the end of memory.
        for length in [10u32, 0x7000_0000, 4096] {
            let (mut memory, rsdp) = machine(true, &[table(b"APIC", &q35_madt_body())]);
            memory.bytes[4..8].copy_from_slice(&length.to_le_bytes());
            let tables = Tables::new(&memory, rsdp).unwrap();
            assert!(tables.find(MADT).is_err(), "length {length}");
        }
        // The root table is not what the RSDP says.
        let (mut memory, rsdp) = machine(true, &[]);
        let root = Rsdp::read(&memory, rsdp).unwrap().root.address();
        *memory.byte_mut(root) = b'R';
        assert!(matches!(
            Tables::new(&memory, rsdp),
            Err(AcpiError::WrongSignature { .. })
        ));
    }

    #[test]
    fn bad_madt_entries_stop_the_walk_with_an_error() {
        // A zero length would loop forever; one past the end would read beyond the table.
        for (length, offset) in [(0u8, 44), (200, 44), (4, 44)] {
            let mut body = q35_madt_body();
            body[8 + 1] = length;
            let madt_table = table(b"APIC", &body);
            let madt = Madt::parse(Table {
                address: 0,
                bytes: &madt_table,
            })
            .unwrap();
            let results: Vec<_> = madt.entries().collect();
            assert_eq!(results.len(), 1, "length {length}");
            assert_eq!(
                results[0],
                Err(AcpiError::BadMadtEntry {
                    offset,
                    kind: 0,
                    length
                })
            );
            assert!(madt.local_apic_address().is_err());
        }
        let mut body = q35_madt_body();
        body[8 + 8 + 12 + 8] = 0b10; // reserved polarity
        let madt_table = table(b"APIC", &body);
        let madt = Madt::parse(Table {
            address: 0,
            bytes: &madt_table,
        })
        .unwrap();
        assert!(matches!(
            madt.entries().nth(2),
            Some(Err(AcpiError::BadInterruptFlags { .. }))
        ));
        let short = table(b"APIC", &[0; 4]);
        assert_eq!(
            Madt::parse(Table {
                address: 0,
                bytes: &short
            })
            .err(),
            Some(AcpiError::Truncated { signature: MADT })
        );
    }

    #[test]
    fn an_address_override_replaces_the_local_apic_address() {
        let mut body = q35_madt_body();
        body.extend_from_slice(&[5, 12, 0, 0]);
        body.extend_from_slice(&0x1_fee0_0000u64.to_le_bytes());
        let madt_table = table(b"APIC", &body);
        let madt = Madt::parse(Table {
            address: 0,
            bytes: &madt_table,
        })
        .unwrap();
        assert_eq!(madt.local_apic_address(), Ok(0x1_fee0_0000));
    }

    #[test]
    fn bad_mcfg_entries_are_refused() {
        let mut body = mcfg_body();
        body[8 + 10] = 9;
        body[8 + 11] = 3;
        let mcfg = table(b"MCFG", &body);
        assert!(matches!(
            mcfg_regions(Table {
                address: 0,
                bytes: &mcfg
            }),
            Err(AcpiError::BadMcfgEntry { index: 0 })
        ));
        let short = table(b"MCFG", &[0; 4]);
        assert!(matches!(
            mcfg_regions(Table {
                address: 0,
                bytes: &short
            }),
            Err(AcpiError::Truncated { .. })
        ));
    }

    #[test]
    fn errors_name_the_table() {
        let error = AcpiError::BadChecksum {
            signature: MADT,
            address: 0x1000,
        };
        assert_eq!(error.to_string(), "the APIC at 0x1000 has a bad checksum");
        let error = AcpiError::WrongSignature {
            expected: XSDT,
            found: *b"\0ab\x7f",
            address: 0x20,
        };
        assert_eq!(
            error.to_string(),
            "expected the XSDT at 0x20, found '\\x00ab\\x7f'"
        );
    }
}
