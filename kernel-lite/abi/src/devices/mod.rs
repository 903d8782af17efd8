//! What kernel-lite reads from the platform to drive devices, as plain parsing code with every
//! field checked: the ACPI tables that describe interrupt controllers and PCI ([`acpi`]), PCI
//! configuration space ([`pci`]) and the encodings of the APIC family ([`apic`]).
//!
//! kernel-lite does the memory-mapped reads and writes; these modules only decode and encode
//! bytes, so malformed firmware tables and odd devices are tested on the host.

pub mod acpi;
pub mod apic;
pub mod pci;

/// Reads a little-endian `u16` at `at`, if it is inside `bytes`.
pub(crate) fn le16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u32` at `at`, if it is inside `bytes`.
pub(crate) fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

/// Reads a little-endian `u64` at `at`, if it is inside `bytes`.
pub(crate) fn le64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
    ))
}
