//! Encodings of the APIC family: I/O APIC redirection entries, MSI messages aimed at a local
//! APIC, and the local APIC timer's arithmetic.

use super::acpi::{Polarity, Trigger};

/// The I/O APIC's register of its version and number of inputs.
pub const IOAPIC_VERSION: u32 = 0x01;

/// The I/O APIC register indices of input `pin`'s redirection entry (low half, high half).
pub fn redirection_registers(pin: u32) -> (u32, u32) {
    let low = 0x10 + 2 * pin;
    (low, low + 1)
}

/// How many inputs an I/O APIC has, from its version register.
pub fn ioapic_inputs(version_register: u32) -> u32 {
    ((version_register >> 16) & 0xff) + 1
}

/// One I/O APIC redirection entry: fixed delivery, physical destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redirection {
    pub vector: u8,
    /// The local APIC ID that takes the interrupt.
    pub destination: u8,
    pub polarity: Polarity,
    pub trigger: Trigger,
    pub masked: bool,
}

const REDIRECTION_ACTIVE_LOW: u64 = 1 << 13;
const REDIRECTION_LEVEL: u64 = 1 << 15;
const REDIRECTION_MASKED: u64 = 1 << 16;

impl Redirection {
    /// The 64-bit register value.
    pub fn encode(self) -> u64 {
        let mut value = u64::from(self.vector) | (u64::from(self.destination) << 56);
        if self.polarity == Polarity::ActiveLow {
            value |= REDIRECTION_ACTIVE_LOW;
        }
        if self.trigger == Trigger::Level {
            value |= REDIRECTION_LEVEL;
        }
        if self.masked {
            value |= REDIRECTION_MASKED;
        }
        value
    }

    /// Reads a register value back (delivery mode and status bits are not kept).
    pub fn decode(value: u64) -> Redirection {
        Redirection {
            vector: value as u8,
            destination: (value >> 56) as u8,
            polarity: if value & REDIRECTION_ACTIVE_LOW != 0 {
                Polarity::ActiveLow
            } else {
                Polarity::ActiveHigh
            },
            trigger: if value & REDIRECTION_LEVEL != 0 {
                Trigger::Level
            } else {
                Trigger::Edge
            },
            masked: value & REDIRECTION_MASKED != 0,
        }
    }

    /// A masked entry with no vector: what an input not in use holds.
    pub fn unused() -> Redirection {
        Redirection {
            vector: 0,
            destination: 0,
            polarity: Polarity::ActiveHigh,
            trigger: Trigger::Edge,
            masked: true,
        }
    }
}

/// An MSI or MSI-X message: the device writes `data` to `address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where MSI writes land: the local APICs' interrupt window.
const MSI_ADDRESS_BASE: u64 = 0xfee0_0000;

impl MsiMessage {
    /// A fixed, edge-triggered interrupt `vector` for the local APIC with ID `apic_id`
    /// (physical destination mode).
    pub fn fixed(apic_id: u8, vector: u8) -> MsiMessage {
        MsiMessage {
            address: MSI_ADDRESS_BASE | (u64::from(apic_id) << 12),
            data: u32::from(vector),
        }
    }
}

/// The local APIC timer's divide configuration value for "divide by 16".
pub const TIMER_DIVIDE_BY_16: u32 = 0b0011;

/// Local APIC timer counts per second, from a calibration that counted down from `start` to
/// `end` while a reference clock of `reference_hz` advanced `reference_ticks`.
pub fn timer_hz(start: u32, end: u32, reference_ticks: u64, reference_hz: u64) -> u64 {
    let counted = u64::from(start.saturating_sub(end));
    if reference_ticks == 0 {
        return 0;
    }
    (u128::from(counted) * u128::from(reference_hz) / u128::from(reference_ticks)) as u64
}

/// The timer count that lasts at least `tsc_ticks` of a TSC at `tsc_hz`, for a timer at
/// `timer_hz`: rounded up, at least 1, at most `u32::MAX` (a longer wait wakes early and the
/// caller arms again).
pub fn timer_count_for_tsc(tsc_ticks: u64, tsc_hz: u64, timer_hz: u64) -> u32 {
    if tsc_hz == 0 {
        return 1;
    }
    let count = (u128::from(tsc_ticks) * u128::from(timer_hz)).div_ceil(u128::from(tsc_hz));
    count.clamp(1, u128::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirection_entries_round_trip() {
        let entry = Redirection {
            vector: 0x50,
            destination: 3,
            polarity: Polarity::ActiveLow,
            trigger: Trigger::Level,
            masked: false,
        };
        assert_eq!(entry.encode(), 0x0300_0000_0000_a050);
        assert_eq!(Redirection::decode(entry.encode()), entry);
        let edge = Redirection {
            polarity: Polarity::ActiveHigh,
            trigger: Trigger::Edge,
            masked: true,
            ..entry
        };
        assert_eq!(edge.encode(), 0x0300_0000_0001_0050);
        assert_eq!(Redirection::decode(edge.encode()), edge);
        assert!(Redirection::decode(Redirection::unused().encode()).masked);
    }

    #[test]
    fn ioapic_registers_and_inputs() {
        assert_eq!(redirection_registers(0), (0x10, 0x11));
        assert_eq!(redirection_registers(23), (0x3e, 0x3f));
        // QEMU's I/O APIC: version 0x20, 24 inputs.
        assert_eq!(ioapic_inputs(0x0017_0020), 24);
    }

    #[test]
    fn msi_messages_target_one_local_apic() {
        assert_eq!(
            MsiMessage::fixed(0, 0x51),
            MsiMessage {
                address: 0xfee0_0000,
                data: 0x51
            }
        );
        assert_eq!(MsiMessage::fixed(2, 0x60).address, 0xfee0_2000);
    }

    #[test]
    fn timer_arithmetic() {
        // 62.5 MHz counted over 50 ms of a 1.193182 MHz PIT.
        let pit_ticks = 1_193_182 / 20;
        let counted = 3_125_000u32;
        let hz = timer_hz(u32::MAX, u32::MAX - counted, pit_ticks, 1_193_182);
        assert!((62_490_000..=62_510_000).contains(&hz), "{hz}");
        assert_eq!(timer_hz(5, 10, 100, 100), 0);
        assert_eq!(timer_hz(5, 0, 0, 100), 0);
        // 1 ms of a 2 GHz TSC on a 62.5 MHz timer.
        assert_eq!(
            timer_count_for_tsc(2_000_000, 2_000_000_000, 62_500_000),
            62_500
        );
        // Rounded up, never zero, never past u32.
        assert_eq!(timer_count_for_tsc(1, 2_000_000_000, 62_500_000), 1);
        assert_eq!(timer_count_for_tsc(0, 2_000_000_000, 62_500_000), 1);
        assert_eq!(timer_count_for_tsc(3, 2, 1), 2);
        assert_eq!(timer_count_for_tsc(u64::MAX, 1, 1), u32::MAX);
        assert_eq!(timer_count_for_tsc(5, 0, 1), 1);
    }
}
