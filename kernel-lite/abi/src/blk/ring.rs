//! The request ring between one app and kernel-lite for its disk extent: the app posts block
//! requests (read, write, flush) naming sectors of its own extent and one of its data buffers;
//! kernel-lite checks each, hands the good ones to the device in batches and posts a completion
//! for every request, good or not.
//!
//! ```text
//! area     header page | data buffers (slots × buffer_sectors × 512 bytes)
//! header   SUBMIT_PRODUCER u32 (app)      SUBMIT_CONSUMER u32 (kernel-lite)
//!          COMPLETE_PRODUCER u32 (kernel-lite)  COMPLETE_CONSUMER u32 (app)   each on its own line
//!          REQUESTS: slots × { op u8 | reserved [3] | tag u32 | sector u64 | sectors u32 |
//!                               buffer u32 | reserved u64 }                     (32 bytes)
//!          COMPLETIONS: slots × { tag u32 | status i32 | reserved u64 }          (16 bytes)
//! ```
//! Indices run freely (wrapping u32). `sector` counts from the start of the app's extent, so an
//! app cannot even name a sector outside it; kernel-lite still checks the range against the
//! extent's size, with overflow checked. As for the frame rings, kernel-lite keeps its own
//! indices, reads each app index and each request exactly once into its own memory, and checks
//! the copy: a broken request gets an error completion; a broken index is reported and nothing
//! of it is trusted.

use crate::net::ring::RingMemory;

pub const SUBMIT_PRODUCER: usize = 0;
pub const SUBMIT_CONSUMER: usize = 64;
pub const COMPLETE_PRODUCER: usize = 128;
pub const COMPLETE_CONSUMER: usize = 192;
const REQUESTS: usize = 1024;
const REQUEST_BYTES: usize = 32;
const COMPLETION_BYTES: usize = 16;
const HEADER_BYTES: usize = 4096;
/// The most requests in flight per app.
pub const MAX_SLOTS: u32 = 64;
/// The largest request: 64 KiB.
pub const MAX_BUFFER_SECTORS: u32 = 128;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Read = 1,
    Write = 2,
    /// Everything completed before it is on stable storage when it completes.
    Flush = 3,
}

/// A completion's status: 0 is success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    /// The op byte names no operation.
    BadOp = -1,
    /// The sectors do not lie inside the app's extent.
    OutOfExtent = -2,
    /// The buffer index names no buffer.
    BadBuffer = -3,
    /// No sectors, or more than a buffer holds.
    BadLength = -4,
    /// The device reported an error.
    DeviceError = -5,
}

impl Status {
    pub fn from_code(code: i32) -> Option<Status> {
        [
            Status::Ok,
            Status::BadOp,
            Status::OutOfExtent,
            Status::BadBuffer,
            Status::BadLength,
            Status::DeviceError,
        ]
        .into_iter()
        .find(|status| *status as i32 == code)
    }
}

/// The shape of an area: request slots (a power of two up to [`MAX_SLOTS`]) and each data
/// buffer's size in sectors (a power of two from 8 to [`MAX_BUFFER_SECTORS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub slots: u32,
    pub buffer_sectors: u32,
}

impl Geometry {
    /// Whether the shape is one kernel-lite accepts.
    pub fn is_valid(&self) -> bool {
        self.slots.is_power_of_two()
            && self.slots <= MAX_SLOTS
            && self.buffer_sectors.is_power_of_two()
            && (8..=MAX_BUFFER_SECTORS).contains(&self.buffer_sectors)
    }

    /// Bytes of one data buffer.
    pub const fn buffer_bytes(&self) -> usize {
        self.buffer_sectors as usize * 512
    }

    /// Bytes of the whole area (a multiple of 4 KiB).
    pub const fn area_bytes(&self) -> u64 {
        (HEADER_BYTES + self.slots as usize * self.buffer_bytes()) as u64
    }

    /// Where data buffer `buffer` starts in the area.
    pub const fn buffer_offset(&self, buffer: u32) -> usize {
        HEADER_BYTES + buffer as usize * self.buffer_bytes()
    }

    const fn request_offset(&self, index: u32) -> usize {
        REQUESTS + (index & (self.slots - 1)) as usize * REQUEST_BYTES
    }

    const fn completion_offset(&self, index: u32) -> usize {
        REQUESTS
            + MAX_SLOTS as usize * REQUEST_BYTES
            + (index & (self.slots - 1)) as usize * COMPLETION_BYTES
    }
}

/// A request kernel-lite checked: what to ask the device for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    pub tag: u32,
    pub op: Op,
    /// First sector, counted from the extent's start.
    pub sector: u64,
    pub sectors: u32,
    /// The data buffer's offset in the area (reads fill it, writes take from it).
    pub buffer_offset: usize,
}

/// What kernel-lite's end found on the submission ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// A request to carry out.
    Request(Request),
    /// A broken request: complete it with this status, do nothing else.
    Refused { tag: u32, status: Status },
}

/// An index the app published that cannot be right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorruptIndex(pub u32);

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// kernel-lite's end: consumer of submissions, producer of completions.
#[derive(Debug, Clone)]
pub struct KernelEnd {
    geometry: Geometry,
    extent_sectors: u64,
    submit_consumer: u32,
    complete_producer: u32,
    /// Requests taken and not yet completed: each has a completion slot reserved.
    in_flight: u32,
}

impl KernelEnd {
    /// A fresh end for an app whose extent has `extent_sectors` sectors: zeroes the header's
    /// indices (each start of the app).
    pub fn reset(geometry: Geometry, extent_sectors: u64, memory: &impl RingMemory) -> KernelEnd {
        for index in [
            SUBMIT_PRODUCER,
            SUBMIT_CONSUMER,
            COMPLETE_PRODUCER,
            COMPLETE_CONSUMER,
        ] {
            memory.store_index(index, 0);
        }
        KernelEnd {
            geometry,
            extent_sectors,
            submit_consumer: 0,
            complete_producer: 0,
            in_flight: 0,
        }
    }

    /// Requests the app has posted and kernel-lite has not taken.
    pub fn pending(&self, memory: &impl RingMemory) -> Result<u32, CorruptIndex> {
        let producer = memory.load_index(SUBMIT_PRODUCER);
        let pending = producer.wrapping_sub(self.submit_consumer);
        if pending > self.geometry.slots {
            return Err(CorruptIndex(producer));
        }
        Ok(pending)
    }

    /// Completions the app has not read yet, as far as kernel-lite may trust.
    fn unread_completions(&self, memory: &impl RingMemory) -> Result<u32, CorruptIndex> {
        let consumer = memory.load_index(COMPLETE_CONSUMER);
        let unread = self.complete_producer.wrapping_sub(consumer);
        if unread > self.geometry.slots {
            return Err(CorruptIndex(consumer));
        }
        Ok(unread)
    }

    /// Takes the next request, checked, or `None` when the ring is empty or every completion
    /// slot is unread or reserved (a request is taken only when its completion has room, so
    /// every request gets one).
    pub fn take(&mut self, memory: &impl RingMemory) -> Result<Option<Taken>, CorruptIndex> {
        if self.pending(memory)? == 0 {
            return Ok(None);
        }
        if self.unread_completions(memory)? + self.in_flight >= self.geometry.slots {
            return Ok(None);
        }
        self.in_flight += 1;
        let mut raw = [0u8; REQUEST_BYTES];
        let at = self.geometry.request_offset(self.submit_consumer);
        memory.with_bytes(at, REQUEST_BYTES, |bytes| raw.copy_from_slice(bytes));
        self.submit_consumer = self.submit_consumer.wrapping_add(1);
        memory.store_index(SUBMIT_CONSUMER, self.submit_consumer);
        Ok(Some(self.check(&raw)))
    }

    /// Checks a request copied out of the ring.
    fn check(&self, raw: &[u8; REQUEST_BYTES]) -> Taken {
        let tag = u32_at(raw, 4);
        let refused = |status| Taken::Refused { tag, status };
        let op = match raw[0] {
            1 => Op::Read,
            2 => Op::Write,
            3 => Op::Flush,
            _ => return refused(Status::BadOp),
        };
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&raw[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let sectors = u32_at(raw, 16);
        let buffer = u32_at(raw, 20);
        if op == Op::Flush {
            return Taken::Request(Request {
                tag,
                op,
                sector: 0,
                sectors: 0,
                buffer_offset: 0,
            });
        }
        if buffer >= self.geometry.slots {
            return refused(Status::BadBuffer);
        }
        if sectors == 0 || sectors > self.geometry.buffer_sectors {
            return refused(Status::BadLength);
        }
        if sector
            .checked_add(u64::from(sectors))
            .is_none_or(|end| end > self.extent_sectors)
        {
            return refused(Status::OutOfExtent);
        }
        Taken::Request(Request {
            tag,
            op,
            sector,
            sectors,
            buffer_offset: self.geometry.buffer_offset(buffer),
        })
    }

    /// Posts the completion of request `tag`. Room was reserved when it was taken, unless the
    /// app has since published an impossible consumer index.
    pub fn complete(
        &mut self,
        memory: &impl RingMemory,
        tag: u32,
        status: Status,
    ) -> Result<(), CorruptIndex> {
        self.unread_completions(memory)?;
        self.in_flight = self.in_flight.saturating_sub(1);
        let at = self.geometry.completion_offset(self.complete_producer);
        memory.with_bytes_mut(at, COMPLETION_BYTES, |bytes| {
            bytes[..4].copy_from_slice(&tag.to_le_bytes());
            bytes[4..8].copy_from_slice(&(status as i32).to_le_bytes());
            bytes[8..].fill(0);
        });
        self.complete_producer = self.complete_producer.wrapping_add(1);
        memory.store_index(COMPLETE_PRODUCER, self.complete_producer);
        Ok(())
    }
}

/// The app's end: producer of submissions, consumer of completions.
#[derive(Debug, Clone)]
pub struct AppEnd {
    geometry: Geometry,
    submit_producer: u32,
    complete_consumer: u32,
}

impl AppEnd {
    /// The end of an area kernel-lite has just reset.
    pub fn new(geometry: Geometry) -> AppEnd {
        AppEnd {
            geometry,
            submit_producer: 0,
            complete_consumer: 0,
        }
    }

    /// Free submission slots.
    pub fn space(&self, memory: &impl RingMemory) -> u32 {
        let consumer = memory.load_index(SUBMIT_CONSUMER);
        self.geometry
            .slots
            .saturating_sub(self.submit_producer.wrapping_sub(consumer))
    }

    /// Posts a request (its data, for a write, already in `buffer`); `false` when full.
    pub fn submit(
        &mut self,
        memory: &impl RingMemory,
        tag: u32,
        op: Op,
        sector: u64,
        sectors: u32,
        buffer: u32,
    ) -> bool {
        if self.space(memory) == 0 {
            return false;
        }
        let at = self.geometry.request_offset(self.submit_producer);
        memory.with_bytes_mut(at, REQUEST_BYTES, |bytes| {
            bytes.fill(0);
            bytes[0] = op as u8;
            bytes[4..8].copy_from_slice(&tag.to_le_bytes());
            bytes[8..16].copy_from_slice(&sector.to_le_bytes());
            bytes[16..20].copy_from_slice(&sectors.to_le_bytes());
            bytes[20..24].copy_from_slice(&buffer.to_le_bytes());
        });
        self.submit_producer = self.submit_producer.wrapping_add(1);
        memory.store_index(SUBMIT_PRODUCER, self.submit_producer);
        true
    }

    /// The next completion (tag and status code), if kernel-lite has posted one.
    pub fn next_completion(&mut self, memory: &impl RingMemory) -> Option<(u32, i32)> {
        if memory.load_index(COMPLETE_PRODUCER) == self.complete_consumer {
            return None;
        }
        let at = self.geometry.completion_offset(self.complete_consumer);
        let completion =
            memory.with_bytes(at, 8, |bytes| (u32_at(bytes, 0), u32_at(bytes, 4) as i32));
        self.complete_consumer = self.complete_consumer.wrapping_add(1);
        memory.store_index(COMPLETE_CONSUMER, self.complete_consumer);
        Some(completion)
    }
}

const _: () = assert!(
    REQUESTS + MAX_SLOTS as usize * (REQUEST_BYTES + COMPLETION_BYTES) <= HEADER_BYTES,
    "requests and completions fit the header page"
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::ring::host::VecMemory;

    const GEOMETRY: Geometry = Geometry {
        slots: 8,
        buffer_sectors: 16,
    };
    const EXTENT: u64 = 1000;

    fn setup() -> (VecMemory, KernelEnd, AppEnd) {
        assert!(GEOMETRY.is_valid());
        let memory = VecMemory::new(GEOMETRY.area_bytes());
        let kernel = KernelEnd::reset(GEOMETRY, EXTENT, &memory);
        (memory, kernel, AppEnd::new(GEOMETRY))
    }

    #[test]
    fn requests_are_taken_checked_and_completed_in_order() {
        let (memory, mut kernel, mut app) = setup();
        for round in 0..5u32 {
            for i in 0..8u32 {
                let tag = round * 8 + i;
                assert!(app.submit(&memory, tag, Op::Write, u64::from(i) * 16, 16, i));
            }
            assert!(!app.submit(&memory, 99, Op::Read, 0, 1, 0), "full");
            for i in 0..8u32 {
                let Some(Taken::Request(request)) = kernel.take(&memory).unwrap() else {
                    panic!("a good request");
                };
                assert_eq!(request.tag, round * 8 + i);
                assert_eq!(request.op, Op::Write);
                assert_eq!(request.buffer_offset, GEOMETRY.buffer_offset(i));
                kernel.complete(&memory, request.tag, Status::Ok).unwrap();
            }
            assert_eq!(kernel.take(&memory), Ok(None));
            for i in 0..8u32 {
                assert_eq!(app.next_completion(&memory), Some((round * 8 + i, 0)));
            }
            assert_eq!(app.next_completion(&memory), None);
        }
    }

    #[test]
    fn broken_requests_get_error_completions() {
        let (memory, mut kernel, mut app) = setup();
        let cases = [
            (Op::Read, EXTENT - 4, 8, 0, Status::OutOfExtent),
            (Op::Read, u64::MAX - 2, 8, 0, Status::OutOfExtent),
            (Op::Write, 0, 0, 0, Status::BadLength),
            (Op::Write, 0, 17, 0, Status::BadLength),
            (Op::Read, 0, 8, 8, Status::BadBuffer),
        ];
        for (tag, (op, sector, sectors, buffer, status)) in cases.into_iter().enumerate() {
            assert!(app.submit(&memory, tag as u32, op, sector, sectors, buffer));
            assert_eq!(
                kernel.take(&memory),
                Ok(Some(Taken::Refused {
                    tag: tag as u32,
                    status
                }))
            );
        }
        // An unknown op byte, written by hand.
        assert!(app.submit(&memory, 7, Op::Read, 0, 1, 0));
        memory.with_bytes_mut(REQUESTS + 5 * REQUEST_BYTES, 1, |bytes| bytes[0] = 9);
        assert_eq!(
            kernel.take(&memory),
            Ok(Some(Taken::Refused {
                tag: 7,
                status: Status::BadOp
            }))
        );
        // The last sector of the extent is the app's; flushes name no sectors.
        assert!(app.submit(&memory, 8, Op::Read, EXTENT - 8, 8, 1));
        assert!(matches!(kernel.take(&memory), Ok(Some(Taken::Request(_)))));
    }

    #[test]
    fn hostile_indices_are_refused_and_completions_never_overrun() {
        let (memory, mut kernel, mut app) = setup();
        memory.store_index(SUBMIT_PRODUCER, 1000);
        assert_eq!(kernel.take(&memory), Err(CorruptIndex(1000)));
        memory.store_index(SUBMIT_PRODUCER, 0);
        // Eight requests taken and completed, none read: the ring of completions is full, so
        // the ninth waits rather than overwrite an unread completion.
        for tag in 0..8 {
            assert!(app.submit(&memory, tag, Op::Flush, 0, 0, 0));
            let taken = kernel.take(&memory).unwrap().unwrap();
            assert!(matches!(taken, Taken::Request(_)));
            kernel.complete(&memory, tag, Status::Ok).unwrap();
        }
        assert!(app.submit(&memory, 8, Op::Flush, 0, 0, 0));
        assert_eq!(kernel.take(&memory), Ok(None));
        // Requests in flight hold completion slots too.
        let (memory, mut kernel, mut app) = setup();
        for tag in 0..8 {
            assert!(app.submit(&memory, tag, Op::Flush, 0, 0, 0));
            assert!(kernel.take(&memory).unwrap().is_some());
        }
        assert!(app.submit(&memory, 8, Op::Flush, 0, 0, 0));
        assert_eq!(
            kernel.take(&memory),
            Ok(None),
            "eight in flight, none completed"
        );
        kernel.complete(&memory, 0, Status::Ok).unwrap();
        assert_eq!(app.next_completion(&memory), Some((0, 0)));
        assert!(kernel.take(&memory).unwrap().is_some());
        assert!(app.submit(&memory, 9, Op::Flush, 0, 0, 0));
        memory.store_index(COMPLETE_CONSUMER, 12345);
        assert_eq!(kernel.take(&memory), Err(CorruptIndex(12345)));
        assert_eq!(Status::from_code(-2), Some(Status::OutOfExtent));
        assert_eq!(Status::from_code(7), None);
        assert!(
            !Geometry {
                slots: 3,
                buffer_sectors: 8
            }
            .is_valid()
        );
        assert!(
            !Geometry {
                slots: 8,
                buffer_sectors: 512
            }
            .is_valid()
        );
    }
}
