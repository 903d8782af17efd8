//! Benchmark programs. `call-bench`: TSC ticks per operation for a plain libos call (reading the
//! clock), a null kcall round trip, and the executor's task spawn + join (one at a time, and in
//! batches of 16 that go through the ready queue) and yield + wake.
//! `switch-bench`: two apps yielding to each other, for the cost of an app switch. Many
//! iterations per run, several runs, the median reported as
//! `bench NAME median=… min=… max=… runs=… iterations=…`.
#![no_std]

extern crate alloc;

use alloc::vec::Vec;
use core::hint::black_box;
use libos::time::Instant;
use libos::{diag, println, rt, task, thread};

const RUNS: usize = 7;
const ITERATIONS: u64 = 20_000;
/// Tasks per batch in `task_spawn_join_batch`.
const BATCH: u64 = 16;

fn report(name: &str, mut per_op: Vec<f64>, iterations: u64) {
    per_op.sort_by(|a, b| a.total_cmp(b));
    println!(
        "bench {name} median={:.2} min={:.2} max={:.2} runs={} iterations={iterations}",
        per_op[per_op.len() / 2],
        per_op[0],
        per_op[per_op.len() - 1],
        per_op.len()
    );
}

fn measure(name: &str, mut operation: impl FnMut() -> u64) {
    let mut per_op = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now().tsc();
        let mut sink = 0u64;
        for _ in 0..ITERATIONS {
            sink = sink.wrapping_add(operation());
        }
        let ticks = Instant::now().tsc() - start;
        black_box(sink);
        per_op.push(ticks as f64 / ITERATIONS as f64);
    }
    report(name, per_op, ITERATIONS);
}

pub fn main() -> i32 {
    measure("clock_read", || Instant::now().tsc());
    measure("null_kcall", diag::null_kcall);
    let spawn_join = task::block_on(async {
        let mut per_op = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now().tsc();
            for n in 0..ITERATIONS {
                black_box(task::spawn(async move { n }).await);
            }
            per_op.push((Instant::now().tsc() - start) as f64 / ITERATIONS as f64);
        }
        per_op
    });
    report("task_spawn_join", spawn_join, ITERATIONS);
    // The same through the ready queue: a batch spawned, then joined, so each task is polled
    // by the executor before its join handle asks for it.
    let batched = task::block_on(async {
        let mut per_op = Vec::with_capacity(RUNS);
        let mut handles = Vec::with_capacity(BATCH as usize);
        for _ in 0..RUNS {
            let start = Instant::now().tsc();
            for batch in 0..ITERATIONS / BATCH {
                handles.extend((0..BATCH).map(|n| task::spawn(async move { batch + n })));
                task::yield_now().await;
                for handle in handles.drain(..) {
                    black_box(handle.await);
                }
            }
            per_op.push((Instant::now().tsc() - start) as f64 / ITERATIONS as f64);
        }
        per_op
    });
    report("task_spawn_join_batch", batched, ITERATIONS);
    let yield_wake = task::block_on(async {
        let mut per_op = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            let start = Instant::now().tsc();
            for _ in 0..ITERATIONS {
                task::yield_now().await;
            }
            per_op.push((Instant::now().tsc() - start) as f64 / ITERATIONS as f64);
        }
        per_op
    });
    report("task_yield_wake", yield_wake, ITERATIONS);
    0
}

/// Run by two apps at once: each `yield` kcall hands the CPU to the other app, so a run of N
/// yields in one app spans 2N app switches. The first app reports.
pub fn switch_bench() -> i32 {
    const SWITCH_ITERATIONS: u64 = 5_000;
    let mut per_switch = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let start = Instant::now().tsc();
        for _ in 0..SWITCH_ITERATIONS {
            thread::yield_now();
        }
        per_switch.push((Instant::now().tsc() - start) as f64 / (2 * SWITCH_ITERATIONS) as f64);
    }
    if rt::current().index() == 0 {
        report("app_switch", per_switch, SWITCH_ITERATIONS);
    }
    0
}
