//! The frame rings between kernel-lite and one app: single-producer/single-consumer rings of
//! fixed frame slots in the app's own slot of memory, mapped for ring 3.
//!
//! ```text
//! area    header page | rx slots (rx_slots × SLOT_BYTES) | tx slots (tx_slots × SLOT_BYTES)
//! header  0 NetConfig (64 bytes, written by kernel-lite at app start)
//!         RX_PRODUCER u32 (kernel-lite)  RX_CONSUMER u32 (app)
//!         TX_PRODUCER u32 (app)          TX_CONSUMER u32 (kernel-lite)   each on its own line
//! slot    length u32 | reserved u32 | frame (Ethernet, no FCS, at most MAX_FRAME bytes)
//! ```
//! Indices run freely (wrapping u32); slot `i` of a ring is `i mod slots`.
//!
//! kernel-lite's end ([`KernelEnd`]) keeps its own indices privately and reads the app's index
//! and each length exactly once per use, checking them before anything depends on them: an app
//! that scribbles on its ring can only lose its own frames. The app's end ([`AppEnd`]) trusts
//! kernel-lite. Both ends reach the memory through [`RingMemory`], so the protocol runs the same
//! over the app's mapping, over kernel-lite's view of the app's frames, and over a `Vec` in a
//! host test.

use super::config::NetConfig;

/// Bytes of one frame slot.
pub const SLOT_BYTES: usize = 2048;
/// Bytes before the frame in a slot: its length (u32) and a reserved word.
pub const SLOT_HEADER: usize = 8;
/// The longest frame a slot carries: a 1500-byte MTU and the Ethernet header, no FCS.
pub const MAX_FRAME: usize = 1514;
/// The shortest: an Ethernet header.
pub const MIN_FRAME: usize = 14;
/// Bytes of the header page.
pub const HEADER_BYTES: usize = 4096;

/// Offsets in the header page.
pub const CONFIG_OFFSET: usize = 0;
pub const RX_PRODUCER: usize = 128;
pub const RX_CONSUMER: usize = 192;
pub const TX_PRODUCER: usize = 256;
pub const TX_CONSUMER: usize = 320;

/// Where a ring area keeps what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub rx_slots: u32,
    pub tx_slots: u32,
}

impl Geometry {
    /// The rings a (checked) binding asks for.
    pub fn of(config: &NetConfig) -> Geometry {
        Geometry {
            rx_slots: u32::from(config.rx_slots),
            tx_slots: u32::from(config.tx_slots),
        }
    }

    /// Bytes of the whole area (a multiple of 4 KiB).
    pub const fn area_bytes(&self) -> u64 {
        (HEADER_BYTES + (self.rx_slots as usize + self.tx_slots as usize) * SLOT_BYTES) as u64
    }

    /// Offset of the slot that ring index `index` of the receive ring uses.
    pub const fn rx_slot(&self, index: u32) -> usize {
        HEADER_BYTES + (index & (self.rx_slots - 1)) as usize * SLOT_BYTES
    }

    /// Offset of the slot that ring index `index` of the transmit ring uses.
    pub const fn tx_slot(&self, index: u32) -> usize {
        HEADER_BYTES
            + (self.rx_slots as usize + (index & (self.tx_slots - 1)) as usize) * SLOT_BYTES
    }
}

/// The memory a ring area lives in, as one end sees it. Offsets are from the area's start;
/// a slot never crosses a 4 KiB page, so an implementation over scattered pages can hand out
/// a slot as one slice.
pub trait RingMemory {
    /// Reads an index word the other end writes (with acquire ordering).
    fn load_index(&self, offset: usize) -> u32;
    /// Publishes an index word this end owns (with release ordering).
    fn store_index(&self, offset: usize, value: u32);
    /// Runs `f` over `len` bytes at `offset`, all within one slot or the header page.
    fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R;
    /// Runs `f` over `len` writable bytes at `offset`, all within one slot or the header page.
    fn with_bytes_mut<R>(&self, offset: usize, len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R;
}

/// Why kernel-lite's end could not move a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The receive ring has no free slot: the app is not keeping up.
    Full,
    /// The app published an index that is impossible (more frames than slots).
    Corrupt { index: u32 },
    /// A transmit slot holds a length outside `MIN_FRAME..=MAX_FRAME` (the slot is consumed).
    BadLength { len: u32 },
    /// A frame longer than `MAX_FRAME` was offered to the receive ring.
    TooLong { len: usize },
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::Full => write!(f, "ring full"),
            RingError::Corrupt { index } => write!(f, "impossible ring index {index}"),
            RingError::BadLength { len } => write!(f, "frame length {len} out of range"),
            RingError::TooLong { len } => write!(f, "frame of {len} bytes is too long"),
        }
    }
}

fn read_u32(memory: &impl RingMemory, offset: usize) -> u32 {
    memory.with_bytes(offset, 4, |bytes| {
        u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])
    })
}

/// kernel-lite's end: producer of the receive ring, consumer of the transmit ring.
#[derive(Debug, Clone)]
pub struct KernelEnd {
    geometry: Geometry,
    rx_producer: u32,
    tx_consumer: u32,
}

impl KernelEnd {
    /// Empties both rings (every index zero) and writes the app's binding into the header, as
    /// each start of the app needs.
    pub fn reset(geometry: Geometry, config: &NetConfig, memory: &impl RingMemory) -> KernelEnd {
        memory.with_bytes_mut(0, HEADER_BYTES, |header| header.fill(0));
        memory.with_bytes_mut(CONFIG_OFFSET, super::config::NET_CONFIG_BYTES, |bytes| {
            bytes.copy_from_slice(&config.encode())
        });
        for index in [RX_PRODUCER, RX_CONSUMER, TX_PRODUCER, TX_CONSUMER] {
            memory.store_index(index, 0);
        }
        KernelEnd {
            geometry,
            rx_producer: 0,
            tx_consumer: 0,
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Copies `frame` into the next receive slot and publishes it.
    pub fn push_rx(&mut self, memory: &impl RingMemory, frame: &[u8]) -> Result<(), RingError> {
        if frame.len() > MAX_FRAME {
            return Err(RingError::TooLong { len: frame.len() });
        }
        let consumer = memory.load_index(RX_CONSUMER);
        let used = self.rx_producer.wrapping_sub(consumer);
        if used > self.geometry.rx_slots {
            return Err(RingError::Corrupt { index: consumer });
        }
        if used == self.geometry.rx_slots {
            return Err(RingError::Full);
        }
        let slot = self.geometry.rx_slot(self.rx_producer);
        memory.with_bytes_mut(slot, SLOT_HEADER + frame.len(), |bytes| {
            bytes[..4].copy_from_slice(&(frame.len() as u32).to_le_bytes());
            bytes[4..8].fill(0);
            bytes[SLOT_HEADER..].copy_from_slice(frame);
        });
        self.rx_producer = self.rx_producer.wrapping_add(1);
        memory.store_index(RX_PRODUCER, self.rx_producer);
        Ok(())
    }

    /// Frames the app has published on the transmit ring and kernel-lite has not taken yet.
    pub fn tx_pending(&self, memory: &impl RingMemory) -> Result<u32, RingError> {
        let producer = memory.load_index(TX_PRODUCER);
        let pending = producer.wrapping_sub(self.tx_consumer);
        if pending > self.geometry.tx_slots {
            return Err(RingError::Corrupt { index: producer });
        }
        Ok(pending)
    }

    /// Copies the next transmit frame into `out` and frees its slot: `Ok(Some(len))`, or
    /// `Ok(None)` when the ring is empty. A slot with an impossible length is freed and
    /// reported. The length is read once, and the frame is checked only in `out`, never again
    /// in the app's memory.
    pub fn pop_tx(
        &mut self,
        memory: &impl RingMemory,
        out: &mut [u8; MAX_FRAME],
    ) -> Result<Option<usize>, RingError> {
        if self.tx_pending(memory)? == 0 {
            return Ok(None);
        }
        let slot = self.geometry.tx_slot(self.tx_consumer);
        let len = read_u32(memory, slot);
        let result = if (MIN_FRAME as u32..=MAX_FRAME as u32).contains(&len) {
            let len = len as usize;
            memory.with_bytes(slot + SLOT_HEADER, len, |bytes| {
                out[..len].copy_from_slice(bytes)
            });
            Ok(Some(len))
        } else {
            Err(RingError::BadLength { len })
        };
        self.tx_consumer = self.tx_consumer.wrapping_add(1);
        memory.store_index(TX_CONSUMER, self.tx_consumer);
        result
    }
}

/// The app's end: consumer of the receive ring, producer of the transmit ring.
#[derive(Debug, Clone)]
pub struct AppEnd {
    geometry: Geometry,
    rx_consumer: u32,
    tx_producer: u32,
}

impl AppEnd {
    /// The end of a ring area kernel-lite has just reset.
    pub fn new(geometry: Geometry) -> AppEnd {
        AppEnd {
            geometry,
            rx_consumer: 0,
            tx_producer: 0,
        }
    }

    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The binding kernel-lite wrote into the header, checked.
    pub fn config(memory: &impl RingMemory) -> Result<NetConfig, super::config::NetConfigError> {
        let mut bytes = [0u8; super::config::NET_CONFIG_BYTES];
        memory.with_bytes(CONFIG_OFFSET, bytes.len(), |header| {
            bytes.copy_from_slice(header)
        });
        NetConfig::decode(&bytes)
    }

    /// The next received frame: its offset in the area and its length, or `None`.
    pub fn rx_peek(&self, memory: &impl RingMemory) -> Option<(usize, usize)> {
        if memory.load_index(RX_PRODUCER) == self.rx_consumer {
            return None;
        }
        let slot = self.geometry.rx_slot(self.rx_consumer);
        let len = (read_u32(memory, slot) as usize).min(MAX_FRAME);
        Some((slot + SLOT_HEADER, len))
    }

    /// Frees the frame [`AppEnd::rx_peek`] showed.
    pub fn rx_release(&mut self, memory: &impl RingMemory) {
        self.rx_consumer = self.rx_consumer.wrapping_add(1);
        memory.store_index(RX_CONSUMER, self.rx_consumer);
    }

    /// Free transmit slots.
    pub fn tx_space(&self, memory: &impl RingMemory) -> u32 {
        let consumer = memory.load_index(TX_CONSUMER);
        self.geometry
            .tx_slots
            .saturating_sub(self.tx_producer.wrapping_sub(consumer))
    }

    /// Whether frames wait on the transmit ring for kernel-lite (a flush is due).
    pub fn tx_pending(&self, memory: &impl RingMemory) -> bool {
        memory.load_index(TX_CONSUMER) != self.tx_producer
    }

    /// Where the next transmit frame goes (the offset of its bytes), or `None` when full.
    pub fn tx_slot(&self, memory: &impl RingMemory) -> Option<usize> {
        (self.tx_space(memory) > 0).then(|| self.geometry.tx_slot(self.tx_producer) + SLOT_HEADER)
    }

    /// Publishes the frame of `len` bytes written at [`AppEnd::tx_slot`].
    pub fn tx_commit(&mut self, memory: &impl RingMemory, len: usize) {
        let slot = self.geometry.tx_slot(self.tx_producer);
        memory.with_bytes_mut(slot, 4, |bytes| {
            bytes.copy_from_slice(&(len as u32).to_le_bytes())
        });
        self.tx_producer = self.tx_producer.wrapping_add(1);
        memory.store_index(TX_PRODUCER, self.tx_producer);
    }
}

/// A ring area in host memory, for tests of both ends.
#[cfg(any(test, feature = "std"))]
pub mod host {
    use super::RingMemory;
    use std::cell::RefCell;

    /// A ring area backed by a `Vec`.
    pub struct VecMemory(pub RefCell<std::vec::Vec<u8>>);

    impl VecMemory {
        pub fn new(bytes: u64) -> VecMemory {
            VecMemory(RefCell::new(std::vec![0; bytes as usize]))
        }
    }

    impl RingMemory for VecMemory {
        fn load_index(&self, offset: usize) -> u32 {
            let bytes = self.0.borrow();
            u32::from_le_bytes([
                bytes[offset],
                bytes[offset + 1],
                bytes[offset + 2],
                bytes[offset + 3],
            ])
        }

        fn store_index(&self, offset: usize, value: u32) {
            self.0.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }

        fn with_bytes<R>(&self, offset: usize, len: usize, f: impl FnOnce(&[u8]) -> R) -> R {
            f(&self.0.borrow()[offset..offset + len])
        }

        fn with_bytes_mut<R>(
            &self,
            offset: usize,
            len: usize,
            f: impl FnOnce(&mut [u8]) -> R,
        ) -> R {
            f(&mut self.0.borrow_mut()[offset..offset + len])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host::VecMemory;
    use super::*;
    use crate::net::config::derived_mac;

    fn setup(slots: u16) -> (VecMemory, KernelEnd, AppEnd) {
        let config = NetConfig {
            rx_slots: slots,
            tx_slots: slots,
            ..NetConfig::new(derived_mac("t"))
        };
        let geometry = Geometry::of(&config);
        let memory = VecMemory::new(geometry.area_bytes());
        let kernel = KernelEnd::reset(geometry, &config, &memory);
        (memory, kernel, AppEnd::new(geometry))
    }

    fn frame(tag: u8, len: usize) -> std::vec::Vec<u8> {
        (0..len).map(|i| tag.wrapping_add(i as u8)).collect()
    }

    #[test]
    fn frames_cross_both_rings_in_order_and_wrap() {
        let (memory, mut kernel, mut app) = setup(8);
        assert_eq!(AppEnd::config(&memory).unwrap().rx_slots, 8);
        for round in 0..5u8 {
            for i in 0..8u8 {
                kernel
                    .push_rx(&memory, &frame(round * 8 + i, 60 + i as usize))
                    .unwrap();
            }
            assert_eq!(kernel.push_rx(&memory, &frame(0, 60)), Err(RingError::Full));
            for i in 0..8u8 {
                let (offset, len) = app.rx_peek(&memory).unwrap();
                assert_eq!(len, 60 + i as usize);
                let got = memory.with_bytes(offset, len, |bytes| bytes.to_vec());
                assert_eq!(got, frame(round * 8 + i, len));
                app.rx_release(&memory);
            }
            assert!(app.rx_peek(&memory).is_none());
            for i in 0..8u8 {
                let at = app.tx_slot(&memory).unwrap();
                let sent = frame(i, 100 + i as usize);
                memory.with_bytes_mut(at, sent.len(), |bytes| bytes.copy_from_slice(&sent));
                app.tx_commit(&memory, sent.len());
            }
            assert!(app.tx_slot(&memory).is_none());
            assert!(app.tx_pending(&memory));
            let mut out = [0u8; MAX_FRAME];
            for i in 0..8u8 {
                let len = kernel.pop_tx(&memory, &mut out).unwrap().unwrap();
                assert_eq!(&out[..len], &frame(i, 100 + i as usize)[..]);
            }
            assert_eq!(kernel.pop_tx(&memory, &mut out), Ok(None));
            assert!(!app.tx_pending(&memory));
        }
    }

    #[test]
    fn hostile_indices_and_lengths_are_refused_without_harm() {
        let (memory, mut kernel, mut app) = setup(8);
        // The app claims to have consumed frames that were never produced.
        memory.store_index(RX_CONSUMER, 1000);
        assert_eq!(
            kernel.push_rx(&memory, &frame(1, 60)),
            Err(RingError::Corrupt { index: 1000 })
        );
        memory.store_index(RX_CONSUMER, 0);
        kernel.push_rx(&memory, &frame(1, 60)).unwrap();
        // The app publishes more transmit frames than there are slots.
        memory.store_index(TX_PRODUCER, 9);
        let mut out = [0u8; MAX_FRAME];
        assert_eq!(
            kernel.pop_tx(&memory, &mut out),
            Err(RingError::Corrupt { index: 9 })
        );
        memory.store_index(TX_PRODUCER, 0);
        // Impossible lengths are reported and their slots consumed.
        for len in [0usize, 13, MAX_FRAME + 1, u32::MAX as usize] {
            let at = app.tx_slot(&memory).unwrap();
            memory.with_bytes_mut(at, 1, |bytes| bytes[0] = 0xaa);
            app.tx_commit(&memory, len);
            assert_eq!(
                kernel.pop_tx(&memory, &mut out),
                Err(RingError::BadLength { len: len as u32 })
            );
        }
        assert_eq!(kernel.pop_tx(&memory, &mut out), Ok(None));
        assert_eq!(
            kernel.push_rx(&memory, &[0u8; MAX_FRAME + 1]),
            Err(RingError::TooLong { len: MAX_FRAME + 1 })
        );
    }

    #[test]
    fn slots_never_cross_a_page() {
        let geometry = Geometry {
            rx_slots: 16,
            tx_slots: 8,
        };
        assert_eq!(geometry.area_bytes() % 4096, 0);
        for index in 0..64 {
            for slot in [geometry.rx_slot(index), geometry.tx_slot(index)] {
                assert_eq!(slot / 4096, (slot + SLOT_BYTES - 1) / 4096);
                assert!(slot as u64 + SLOT_BYTES as u64 <= geometry.area_bytes());
            }
        }
    }
}
