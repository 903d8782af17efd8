//! Programs for the multi-app demo. `counter` counts on a timer, so it shows on the console
//! that it keeps running while its neighbours crash and restart. `quiet_worker` computes,
//! allocates, reads the clock, spawns tasks and sets timers — CSE work that needs no kcall — and
//! prints once, so the accounting table can show it made no kcall but to sleep and to print.
//! `crasher` panics soon after it starts, to show a restart policy at work beside the others.
#![no_std]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use libos::println;
use libos::time::{Duration, Instant};
use libos::{task, thread};

/// How many times the counter counts, one count every [`COUNT_EVERY`].
pub const COUNTS: u32 = 40;
pub const COUNT_EVERY: Duration = Duration::from_millis(50);

pub fn counter() -> i32 {
    task::block_on(async {
        for count in 1..=COUNTS {
            println!("count {count}");
            task::sleep(COUNT_EVERY).await;
        }
    });
    0
}

fn primes_below(limit: usize) -> Vec<usize> {
    let mut sieve = alloc::vec![true; limit];
    let mut primes = Vec::new();
    for n in 2..limit {
        if sieve[n] {
            primes.push(n);
            (n * n..limit).step_by(n).for_each(|m| sieve[m] = false);
        }
    }
    primes
}

pub fn quiet_worker() -> i32 {
    let started = Instant::now();
    let (primes, histogram, ticks) = task::block_on(async {
        let workers: Vec<_> = (1..=8u64)
            .map(|worker| {
                task::spawn(async move {
                    task::sleep(Duration::from_millis(5 * worker)).await;
                    task::yield_now().await;
                    let primes = primes_below(2_000 * worker as usize);
                    let late = task::timeout(
                        Duration::from_millis(1),
                        task::sleep(Duration::from_secs(1)),
                    )
                    .await;
                    (primes.len(), late.is_err())
                })
            })
            .collect();
        let mut histogram: BTreeMap<usize, usize> = BTreeMap::new();
        let mut primes = 0;
        for worker in workers {
            let (found, timed_out) = worker.await;
            assert!(timed_out, "a 1 ms timeout on a 1 s sleep must elapse");
            primes += found;
            *histogram.entry(found % 10).or_default() += 1;
        }
        (primes, histogram, Instant::now().tsc() - started.tsc())
    });
    println!(
        "8 tasks, 16 timers, {primes} primes, {} residues, {} TSC ticks, {} us",
        histogram.len(),
        ticks,
        started.elapsed().as_micros()
    );
    0
}

/// How long the crasher lets its neighbours run before it panics.
pub const CRASH_AFTER: Duration = Duration::from_millis(150);

/// Panics [`CRASH_AFTER`] after it starts: a plain panic, which kernel-lite reports with the
/// app's name and restarts according to the bundle's policy.
pub fn crasher() -> i32 {
    println!("will crash by panic in {} ms", CRASH_AFTER.as_millis());
    thread::sleep(CRASH_AFTER);
    let reason = core::hint::black_box("a deliberate panic");
    panic!("{reason}");
}
