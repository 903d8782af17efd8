//! call-bench: TSC ticks per operation for a plain libos call (reading the clock) and for a null
//! kcall round trip. Many iterations per run, several runs, the median reported.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;
use libos::time::Instant;
use libos::{println, sys};

const RUNS: usize = 7;
const ITERATIONS: u64 = 20_000;

fn measure(name: &str, mut operation: impl FnMut() -> u64) {
    let mut per_op: Vec<f64> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = sys::rdtsc();
        let mut sink = 0u64;
        for _ in 0..ITERATIONS {
            sink = sink.wrapping_add(operation());
        }
        let ticks = sys::rdtsc() - start;
        black_box(sink);
        per_op.push(ticks as f64 / ITERATIONS as f64);
    }
    per_op.sort_by(|a, b| a.total_cmp(b));
    println!(
        "bench {name} median={:.2} min={:.2} max={:.2} runs={RUNS} iterations={ITERATIONS}",
        per_op[RUNS / 2],
        per_op[0],
        per_op[RUNS - 1]
    );
}

pub fn main() -> i32 {
    measure("clock_read", || Instant::now().tsc());
    measure("null_kcall", sys::null_kcall);
    0
}
