//! A smoltcp [`Device`] over the app's end of its frame rings ([`AppEnd`]) and any
//! [`RingMemory`]: the app's own ring area on the machine, a `Vec` in host tests.
//!
//! Receiving hands smoltcp the frame in its ring slot (no copy) and frees the slot after;
//! transmitting writes straight into the next transmit slot and publishes it. Nothing here
//! makes a kcall: the stack flushes the transmit ring once per poll that produced frames.

use core::cell::{Cell, RefCell};
use lite_abi::net::ring::{AppEnd, MAX_FRAME, RingMemory};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The app's rings, as smoltcp's device.
pub struct RingDevice<M: RingMemory> {
    memory: M,
    end: RefCell<AppEnd>,
    /// Frames committed to the transmit ring since [`RingDevice::take_transmitted`].
    transmitted: Cell<u32>,
    /// Frames taken from the receive ring since [`RingDevice::take_received`].
    received: Cell<u32>,
}

impl<M: RingMemory> RingDevice<M> {
    pub fn new(memory: M, end: AppEnd) -> RingDevice<M> {
        RingDevice {
            memory,
            end: RefCell::new(end),
            transmitted: Cell::new(0),
            received: Cell::new(0),
        }
    }

    pub fn memory(&self) -> &M {
        &self.memory
    }

    /// Frames put on the transmit ring since the last call (then zero).
    pub fn take_transmitted(&self) -> u32 {
        self.transmitted.replace(0)
    }

    /// Frames taken off the receive ring since the last call (then zero).
    pub fn take_received(&self) -> u32 {
        self.received.replace(0)
    }

    /// Whether a received frame waits.
    pub fn rx_waiting(&self) -> bool {
        self.end.borrow().rx_peek(&self.memory).is_some()
    }

    /// Whether the transmit ring is full (a flush is needed before more can go).
    pub fn tx_full(&self) -> bool {
        self.end.borrow().tx_space(&self.memory) == 0
    }
}

/// A received frame, still in its slot.
pub struct RingRxToken<'d, M: RingMemory> {
    device: &'d RingDevice<M>,
}

/// Room for one frame in the next transmit slot.
pub struct RingTxToken<'d, M: RingMemory> {
    device: &'d RingDevice<M>,
}

impl<M: RingMemory> phy::RxToken for RingRxToken<'_, M> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        let device = self.device;
        let (offset, len) = device
            .end
            .borrow()
            .rx_peek(&device.memory)
            .expect("a receive token exists only for a waiting frame");
        let result = device.memory.with_bytes(offset, len, f);
        device.end.borrow_mut().rx_release(&device.memory);
        device.received.set(device.received.get() + 1);
        result
    }
}

impl<M: RingMemory> phy::TxToken for RingTxToken<'_, M> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let device = self.device;
        let offset = device
            .end
            .borrow()
            .tx_slot(&device.memory)
            .expect("a transmit token exists only for a free slot");
        // smoltcp never builds a frame longer than the MTU we announce (MAX_FRAME).
        let len = len.min(MAX_FRAME);
        let result = device.memory.with_bytes_mut(offset, len, f);
        device.end.borrow_mut().tx_commit(&device.memory, len);
        device.transmitted.set(device.transmitted.get() + 1);
        result
    }
}

impl<M: RingMemory> Device for RingDevice<M> {
    type RxToken<'a>
        = RingRxToken<'a, M>
    where
        Self: 'a;
    type TxToken<'a>
        = RingTxToken<'a, M>
    where
        Self: 'a;

    /// A frame, with room for a reply; none while the transmit ring is full (the stack
    /// flushes it and polls again), so a reply is never dropped for want of a slot.
    fn receive(&mut self, _timestamp: Instant) -> Option<(RingRxToken<'_, M>, RingTxToken<'_, M>)> {
        if !self.rx_waiting() || self.tx_full() {
            return None;
        }
        Some((RingRxToken { device: self }, RingTxToken { device: self }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<RingTxToken<'_, M>> {
        (!self.tx_full()).then_some(RingTxToken { device: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities
    }
}
