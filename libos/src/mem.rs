//! An app's heap: a first-fit allocator over the app's own quota, with the accounting the
//! per-app table and the out-of-memory report need. Every app has one; the global allocator
//! (in `sys`) routes each allocation to the running app's.

use core::alloc::Layout;
use core::mem::MaybeUninit;
use core::ptr::NonNull;
use linked_list_allocator::Heap;

/// One app's heap and its usage.
pub struct AppHeap {
    heap: Heap,
    peak: usize,
    /// Size of the last allocation that failed, cleared by the next one that succeeds: a panic
    /// that follows a failure is reported as running out of memory.
    failed: usize,
}

impl AppHeap {
    /// A heap over `region`, which the app owns for its whole life.
    pub fn new(region: &'static mut [MaybeUninit<u8>]) -> AppHeap {
        AppHeap {
            heap: Heap::from_slice(region),
            peak: 0,
            failed: 0,
        }
    }

    /// A block for `layout`, or `None` when the quota cannot hold it.
    pub fn allocate(&mut self, layout: Layout) -> Option<NonNull<u8>> {
        match self.heap.allocate_first_fit(layout) {
            Ok(block) => {
                self.failed = 0;
                self.peak = self.peak.max(self.heap.used());
                Some(block)
            }
            Err(()) => {
                self.failed = layout.size().max(1);
                None
            }
        }
    }

    /// The allocator itself, for `sys`, which returns blocks to it (an `unsafe` contract that
    /// stays in `sys`).
    #[cfg(target_os = "none")]
    pub(crate) fn allocator(&mut self) -> &mut Heap {
        &mut self.heap
    }

    /// Bytes in use now.
    pub fn used(&self) -> usize {
        self.heap.used()
    }

    /// The most bytes in use at once.
    pub fn peak(&self) -> usize {
        self.peak
    }

    /// The quota, less what the app's context takes.
    pub fn size(&self) -> usize {
        self.heap.size()
    }

    /// The size of the last failed allocation, if the latest attempt failed.
    pub fn failed_allocation(&self) -> Option<usize> {
        (self.failed > 0).then_some(self.failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(bytes: usize) -> (AppHeap, core::ops::Range<usize>) {
        let region: &'static mut [MaybeUninit<u8>] =
            Box::leak(vec![MaybeUninit::uninit(); bytes].into_boxed_slice());
        let start = region.as_ptr() as usize;
        (AppHeap::new(region), start..start + bytes)
    }

    #[test]
    fn each_heap_serves_only_from_its_own_region() {
        let (mut a, a_range) = heap(64 * 1024);
        let (mut b, b_range) = heap(64 * 1024);
        let layout = Layout::from_size_align(1000, 8).unwrap();
        for _ in 0..10 {
            let from_a = a.allocate(layout).unwrap().as_ptr() as usize;
            let from_b = b.allocate(layout).unwrap().as_ptr() as usize;
            assert!(a_range.contains(&from_a) && a_range.contains(&(from_a + 999)));
            assert!(b_range.contains(&from_b) && b_range.contains(&(from_b + 999)));
        }
        assert_eq!(a.used(), 10_000);
        assert_eq!(b.used(), 10_000);
    }

    #[test]
    fn exhausting_one_heap_leaves_the_other_untouched() {
        let (mut small, _) = heap(16 * 1024 + 256);
        let (mut other, _) = heap(16 * 1024);
        let big = Layout::from_size_align(4096, 8).unwrap();
        let mut blocks = 0;
        while small.allocate(big).is_some() {
            blocks += 1;
        }
        assert!(blocks >= 3);
        assert_eq!(small.failed_allocation(), Some(4096));
        assert_eq!(other.failed_allocation(), None);
        assert!(other.allocate(big).is_some());
        // A later success clears the failure mark.
        assert!(
            small
                .allocate(Layout::from_size_align(8, 8).unwrap())
                .is_some()
        );
        assert_eq!(small.failed_allocation(), None);
    }

    #[test]
    fn peak_usage_follows_the_high_water_mark() {
        let (mut heap, _) = heap(64 * 1024);
        let layout = Layout::from_size_align(8192, 8).unwrap();
        for count in 1..=4 {
            heap.allocate(layout).unwrap();
            assert_eq!(heap.peak(), count * 8192);
            assert_eq!(heap.used(), heap.peak());
        }
    }
}
