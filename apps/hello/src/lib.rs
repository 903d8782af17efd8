//! hello: the smallest useful app. Greets, shows the privilege level it runs at (read from CS:
//! it must be 3), allocates from its own heap, reads the clock in user mode, and exits.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use libos::time::{Duration, Instant};
use libos::{diag, println, rt, thread};

pub fn main() -> i32 {
    let started = Instant::now();
    let cpl = diag::privilege_level();
    println!(
        "Hello from {}, a libos app! CPL={cpl}",
        rt::current().name()
    );
    let squares: Vec<u64> = (1..=1000).map(|n| n * n).collect();
    let sum: u64 = squares.iter().sum();
    let heap = rt::current().heap_usage();
    println!(
        "allocated {} squares (sum {sum}); heap {} of {} bytes in use",
        squares.len(),
        heap.used,
        heap.size
    );
    thread::sleep(Duration::from_millis(10));
    log::info!(
        "slept 10 ms; {} us since start, read from the TSC",
        started.elapsed().as_micros()
    );
    if cpl == 3 { 0 } else { 1 }
}
