//! Host tests of the executor and its timers, on a fake clock that jumps to each deadline.

use super::*;
use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::rc::Rc;

/// Nanosecond ticks; `wait_until` jumps straight to the deadline and counts the wait.
#[derive(Default)]
struct FakeClock {
    now: Cell<u64>,
    waits: Cell<u32>,
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.now.get()
    }

    fn ticks_per_second(&self) -> u64 {
        1_000_000_000
    }

    fn wait_until(&self, deadline: u64) {
        self.waits.set(self.waits.get() + 1);
        self.now.set(self.now.get().max(deadline));
    }
}

fn executor() -> &'static Executor<FakeClock> {
    Box::leak(Box::new(Executor::new(FakeClock::default())))
}

const MS: u64 = 1_000_000;

#[test]
fn spawned_tasks_run_and_join_with_their_results() {
    let executor = executor();
    let handles: Vec<_> = (0..5u64)
        .map(|n| executor.spawn(async move { n * n }))
        .collect();
    let sum = executor
        .run_until(async move {
            let mut sum = 0;
            for handle in handles {
                sum += handle.await;
            }
            sum
        })
        .unwrap();
    assert_eq!(sum, 30);
    assert_eq!(executor.live_tasks(), 0);
    assert_eq!(executor.stats().spawned, 5);
    assert_eq!(executor.clock().waits.get(), 0, "no timer, so no wait");
}

#[test]
fn timers_fire_in_deadline_order_and_the_executor_sleeps_between_them() {
    let executor = executor();
    let order = Rc::new(RefCell::new(Vec::new()));
    for ms in [30u64, 10, 20] {
        let order = Rc::clone(&order);
        executor.spawn(async move {
            executor.sleep(Duration::from_millis(ms)).await;
            order.borrow_mut().push((ms, executor.clock().now() / MS));
        });
    }
    executor
        .run_until(executor.sleep(Duration::from_millis(40)))
        .unwrap();
    assert_eq!(*order.borrow(), [(10, 10), (20, 20), (30, 30)]);
    // One wait per distinct deadline: 10, 20, 30, 40.
    assert_eq!(executor.clock().waits.get(), 4);
    assert_eq!(executor.pending_timers(), 0);
}

#[test]
fn timeout_gives_elapsed_when_the_future_is_too_slow() {
    let executor = executor();
    let slow = executor.timeout(
        Duration::from_millis(10),
        executor.sleep(Duration::from_millis(50)),
    );
    assert_eq!(executor.run_until(slow).unwrap(), Err(Elapsed));
    assert_eq!(executor.clock().now(), 10 * MS);
    // The abandoned sleep took its timer with it.
    assert_eq!(executor.pending_timers(), 0);

    let fast = executor.timeout(Duration::from_millis(10), async { 7 });
    assert_eq!(executor.run_until(fast).unwrap(), Ok(7));
}

#[test]
fn yield_now_interleaves_tasks() {
    let executor = executor();
    let trace = Rc::new(RefCell::new(String::new()));
    for name in ['a', 'b'] {
        let trace = Rc::clone(&trace);
        executor.spawn(async move {
            for _ in 0..3 {
                trace.borrow_mut().push(name);
                yield_now().await;
            }
        });
    }
    executor
        .run_until(async {
            for _ in 0..4 {
                yield_now().await;
            }
        })
        .unwrap();
    assert_eq!(*trace.borrow(), "ababab");
}

#[test]
fn tasks_can_spawn_tasks() {
    let executor = executor();
    let inner = executor.run_until(async {
        let outer = executor.spawn(async { executor.spawn(async { 41 }).await + 1 });
        outer.await
    });
    assert_eq!(inner, Ok(42));
}

#[test]
fn a_future_nothing_can_wake_is_reported_as_stalled() {
    let executor = executor();
    assert_eq!(
        executor.run_until(core::future::pending::<()>()),
        Err(Stalled)
    );
}

#[test]
fn a_dropped_join_handle_detaches_the_task() {
    let executor = executor();
    let done = Rc::new(Cell::new(false));
    let flag = Rc::clone(&done);
    drop(executor.spawn(async move {
        executor.sleep(Duration::from_millis(5)).await;
        flag.set(true);
    }));
    executor
        .run_until(executor.sleep(Duration::from_millis(10)))
        .unwrap();
    assert!(done.get());
}
