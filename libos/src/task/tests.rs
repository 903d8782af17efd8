//! Host tests of the executor, its timers and its event waits, on a fake clock that jumps to
//! each deadline or event, and keeps events pending the way kernel-lite does.

use super::*;
use core::cell::{Cell, RefCell};
use core::time::Duration;
use std::rc::Rc;

/// Nanosecond ticks. `wait` jumps straight to the deadline or to the next scheduled event it
/// waits for, whichever is first, and records its arguments; events it does not wait for stay
/// pending, as in kernel-lite.
#[derive(Default)]
struct FakeClock {
    now: Cell<u64>,
    waits: Cell<u32>,
    /// Events that have fired and not been reported by a `wait` yet.
    pending: Cell<Events>,
    /// Events that will fire at a time: (time, events).
    scheduled: RefCell<Vec<(u64, Events)>>,
    /// Each wait: (deadline, events waited for, events returned, time it returned).
    log: RefCell<Vec<(u64, Events, Events, u64)>>,
}

impl FakeClock {
    /// `events` fire at `time` (ticks).
    fn fire_at(&self, time: u64, events: Events) {
        self.scheduled.borrow_mut().push((time, events));
    }

    /// `events` fire now (as a device would while the app runs).
    fn raise(&self, events: Events) {
        self.pending.set(self.pending.get().union(events));
    }

    /// Moves every scheduled event due by now into `pending`.
    fn fire_due(&self) {
        let now = self.now.get();
        self.scheduled.borrow_mut().retain(|&(time, events)| {
            if time <= now {
                self.pending.set(self.pending.get().union(events));
            }
            time > now
        });
    }

    fn take(&self, events: Events) -> Events {
        let ready = self.pending.get().intersection(events);
        self.pending.set(self.pending.get().without(ready));
        ready
    }
}

impl Clock for FakeClock {
    fn now(&self) -> u64 {
        self.now.get()
    }

    fn ticks_per_second(&self) -> u64 {
        1_000_000_000
    }

    fn wait(&self, deadline: u64, events: Events) -> Events {
        self.waits.set(self.waits.get() + 1);
        let returned = loop {
            self.fire_due();
            let ready = self.take(events);
            if !ready.is_empty() || self.now.get() >= deadline {
                break ready;
            }
            let next_event = self
                .scheduled
                .borrow()
                .iter()
                .filter(|(_, fired)| !fired.intersection(events).is_empty())
                .map(|&(time, _)| time)
                .min();
            match next_event {
                Some(time) if time <= deadline => self.now.set(time),
                _ => {
                    assert_ne!(deadline, u64::MAX, "the app would wait forever");
                    self.now.set(deadline);
                }
            }
        };
        self.log
            .borrow_mut()
            .push((deadline, events, returned, self.now.get()));
        returned
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

const E0: Events = Events::bit(0);
const E1: Events = Events::bit(1);
const E2: Events = Events::bit(2);

#[test]
fn an_event_wakes_its_waiter_before_a_later_deadline() {
    let executor = executor();
    executor.clock().fire_at(5 * MS, E0);
    let trace = Rc::new(RefCell::new(Vec::new()));
    let events = Rc::clone(&trace);
    executor.spawn(async move {
        let fired = executor.wait_event(E0).await;
        events
            .borrow_mut()
            .push(("event", fired, executor.clock().now() / MS));
    });
    let timers = Rc::clone(&trace);
    executor
        .run_until(async move {
            executor.sleep(Duration::from_millis(10)).await;
            timers
                .borrow_mut()
                .push(("timer", Events::NONE, executor.clock().now() / MS));
        })
        .unwrap();
    assert_eq!(
        *trace.borrow(),
        [("event", E0, 5), ("timer", Events::NONE, 10)]
    );
    // The first wait had both the timer's deadline and the awaited event; the second only the
    // deadline.
    let log = executor.clock().log.borrow();
    assert_eq!(log[0], (10 * MS, E0, E0, 5 * MS));
    assert_eq!(log[1], (10 * MS, Events::NONE, Events::NONE, 10 * MS));
    assert_eq!(executor.stats().event_wakes, 1);
}

#[test]
fn a_deadline_wakes_its_sleeper_before_a_later_event() {
    let executor = executor();
    executor.clock().fire_at(20 * MS, E0);
    let waiter = executor.spawn(async move {
        let fired = executor.wait_event(E0).await;
        (fired, executor.clock().now() / MS)
    });
    let (slept_until, event) = executor
        .run_until(async move {
            executor.sleep(Duration::from_millis(10)).await;
            let slept_until = executor.clock().now() / MS;
            (slept_until, waiter.await)
        })
        .unwrap();
    assert_eq!(slept_until, 10);
    assert_eq!(event, (E0, 20));
    // With no timer left, the executor waits for the event alone: no deadline.
    let log = executor.clock().log.borrow();
    assert_eq!(log[0], (10 * MS, E0, Events::NONE, 10 * MS));
    assert_eq!(log[1], (u64::MAX, E0, E0, 20 * MS));
}

#[test]
fn an_event_that_fired_before_the_wait_is_not_lost() {
    let executor = executor();
    // Fired before anyone waits for it, while the app sleeps for something else: kernel-lite
    // keeps it pending because the sleep did not ask for it.
    executor.clock().fire_at(2 * MS, E1);
    let got = executor.run_until(async move {
        executor.sleep(Duration::from_millis(5)).await;
        let first = executor.wait_event(E1).await;
        let first_at = executor.clock().now() / MS;
        // Fired while the app was busy (no wait in between).
        executor.clock().raise(E1);
        yield_now().await;
        let second = executor.wait_event(E1).await;
        (first, first_at, second, executor.clock().now() / MS)
    });
    assert_eq!(got, Ok((E1, 5, E1, 5)));
    // The sleep's wait did not ask for the event; each event wait returned at once.
    let log = executor.clock().log.borrow();
    assert_eq!(log[0], (5 * MS, Events::NONE, Events::NONE, 5 * MS));
    assert_eq!(log[1], (u64::MAX, E1, E1, 5 * MS));
    assert_eq!(log[2], (u64::MAX, E1, E1, 5 * MS));
    assert_eq!(executor.pending_events(), Events::NONE);
}

#[test]
fn two_tasks_await_different_events() {
    let executor = executor();
    executor.clock().fire_at(5 * MS, E2);
    executor.clock().fire_at(8 * MS, E1);
    executor.clock().fire_at(12 * MS, E1.union(E2));
    let order = Rc::new(RefCell::new(Vec::new()));
    let handles: Vec<_> = [E1, E2]
        .into_iter()
        .map(|bit| {
            let order = Rc::clone(&order);
            executor.spawn(async move {
                for _ in 0..2 {
                    let fired = executor.wait_event(bit).await;
                    order
                        .borrow_mut()
                        .push((fired.0.trailing_zeros(), executor.clock().now() / MS));
                }
            })
        })
        .collect();
    executor
        .run_until(async move {
            for handle in handles {
                handle.await;
            }
        })
        .unwrap();
    // Each task got only its own event; both fired at 12 ms, and one wait woke both tasks.
    let mut order = order.borrow().clone();
    order[2..].sort();
    assert_eq!(order, [(2, 5), (1, 8), (1, 12), (2, 12)]);
    let log = executor.clock().log.borrow();
    let waited: Vec<Events> = log.iter().map(|&(_, events, _, _)| events).collect();
    assert_eq!(waited, [E1.union(E2); 3]);
    assert_eq!(log[2].2, E1.union(E2));
}

#[test]
fn a_timeout_around_an_event_wait() {
    let executor = executor();
    // The event never comes: the timeout elapses, and the abandoned waiter is gone.
    let missed = executor.timeout(Duration::from_millis(10), executor.wait_event(E0));
    assert_eq!(executor.run_until(missed), Ok(Err(Elapsed)));
    assert_eq!(executor.clock().now(), 10 * MS);
    assert_eq!(
        executor.run_until(core::future::pending::<()>()),
        Err(Stalled),
        "no waiter for E0 is left behind"
    );

    // The event comes in time: its bits, and the timeout's timer is gone.
    executor.clock().fire_at(13 * MS, E0);
    let caught = executor.timeout(Duration::from_millis(10), executor.wait_event(E0));
    assert_eq!(executor.run_until(caught), Ok(Ok(E0)));
    assert_eq!(executor.clock().now(), 13 * MS);
    assert_eq!(executor.pending_timers(), 0);
}

#[test]
fn waiting_for_no_event_completes_at_once() {
    let executor = executor();
    assert_eq!(
        executor.run_until(executor.wait_event(Events::NONE)),
        Ok(Events::NONE)
    );
    assert_eq!(executor.clock().waits.get(), 0);
}

#[test]
fn a_spawn_and_join_loop_reuses_one_cell() {
    let executor = executor();
    let sum = executor
        .run_until(async {
            let mut sum = 0;
            for n in 0..100u64 {
                sum += executor.spawn(async move { n }).await;
            }
            sum
        })
        .unwrap();
    assert_eq!(sum, 4950);
    assert_eq!(executor.task_cells(), 1);
    assert_eq!(executor.stats().spawned, 100);
    assert_eq!(executor.live_tasks(), 0);
}

#[test]
fn cells_are_reused_by_later_batches_and_other_task_types() {
    let executor = executor();
    executor
        .run_until(async {
            for round in 0..3u64 {
                let handles: Vec<_> = (0..5u64)
                    .map(|n| executor.spawn(async move { round * 10 + n }))
                    .collect();
                yield_now().await;
                let outputs: Vec<u64> = {
                    let mut outputs = Vec::new();
                    for handle in handles {
                        outputs.push(handle.await);
                    }
                    outputs
                };
                assert_eq!(outputs, (0..5).map(|n| round * 10 + n).collect::<Vec<_>>());
            }
            // Another future type (and output type) in the same cells.
            let words = executor.spawn(async { String::from("reused") });
            let pair = executor.spawn(async {
                yield_now().await;
                (1u8, 2u8)
            });
            assert_eq!(words.await, "reused");
            assert_eq!(pair.await, (1, 2));
        })
        .unwrap();
    assert_eq!(executor.task_cells(), 5);
}

#[test]
fn a_detached_task_frees_its_cell_when_it_completes() {
    let executor = executor();
    executor
        .run_until(async {
            drop(executor.spawn(async {
                executor.sleep(Duration::from_millis(1)).await;
            }));
            assert_eq!(executor.live_tasks(), 1);
            executor.sleep(Duration::from_millis(2)).await;
            assert_eq!(executor.live_tasks(), 0);
            // The freed cell takes the next task.
            executor.spawn(async { 3 }).await
        })
        .unwrap();
    assert_eq!(executor.task_cells(), 1);
}

#[test]
fn what_a_task_holds_is_dropped_when_it_completes_not_when_its_cell_is_reused() {
    let executor = executor();
    let held = Rc::new(());
    let output = Rc::new(());
    let (in_task, out_of_task) = (Rc::clone(&held), Rc::clone(&output));
    let handle = executor.spawn(async move {
        yield_now().await;
        drop(in_task);
        out_of_task
    });
    let captured = Rc::clone(&held);
    let keeper = executor.spawn(async move {
        // Captured but never used: dropped with the task's future.
        let _captured = &captured;
    });
    executor.run_until(yield_now()).unwrap();
    executor.run_until(yield_now()).unwrap();
    assert!(handle.is_finished() && keeper.is_finished());
    assert_eq!(
        Rc::strong_count(&held),
        1,
        "the completed futures were dropped"
    );
    assert_eq!(
        Rc::strong_count(&output),
        2,
        "the output waits for its join handle"
    );
    // Dropping an unjoined handle of a finished task drops the output.
    drop(handle);
    drop(keeper);
    assert_eq!(Rc::strong_count(&output), 1);
}

#[test]
#[allow(clippy::async_yields_async)] // the join handle is the output, on purpose
fn an_output_whose_drop_uses_the_executor_is_dropped_safely() {
    let executor = executor();
    let ran = Rc::new(Cell::new(false));
    let flag = Rc::clone(&ran);
    // The outer task's output is the inner task's join handle; dropping the outer handle
    // unjoined drops the inner one, which detaches its task.
    let outer = executor.spawn(async move {
        executor.spawn(async move {
            yield_now().await;
            flag.set(true);
        })
    });
    executor.run_until(yield_now()).unwrap();
    assert!(outer.is_finished());
    drop(outer);
    executor
        .run_until(async {
            for _ in 0..3 {
                yield_now().await;
            }
        })
        .unwrap();
    assert!(ran.get(), "the detached inner task ran to its end");
    assert_eq!(executor.live_tasks(), 0);
}

#[test]
fn joining_a_ready_task_runs_it_at_once() {
    let executor = executor();
    let order = Rc::new(RefCell::new(Vec::new()));
    let log = |name: &'static str| {
        let order = Rc::clone(&order);
        async move { order.borrow_mut().push(name) }
    };
    executor
        .run_until(async {
            let first = executor.spawn(log("first"));
            let second = executor.spawn(log("second"));
            second.await;
            first.await;
        })
        .unwrap();
    // The joiner ran the task it waited for rather than wait its turn in the ready queue.
    assert_eq!(*order.borrow(), ["second", "first"]);
    assert_eq!(executor.stats().polls, 3, "main, then each task once");
}

/// Keeps a clone of the waker it is polled with.
struct KeepWaker(Rc<RefCell<Option<core::task::Waker>>>);

impl core::future::Future for KeepWaker {
    type Output = ();

    fn poll(
        self: core::pin::Pin<&mut Self>,
        cx: &mut core::task::Context<'_>,
    ) -> core::task::Poll<()> {
        *self.0.borrow_mut() = Some(cx.waker().clone());
        core::task::Poll::Ready(())
    }
}

#[test]
fn a_stale_waker_only_polls_the_cells_next_task_once_more() {
    let executor = executor();
    let kept = Rc::new(RefCell::new(None));
    executor
        .run_until(executor.spawn(KeepWaker(Rc::clone(&kept))))
        .unwrap();
    let stale = kept.borrow_mut().take().unwrap();
    let polls = Rc::new(Cell::new(0));
    let counted = Rc::clone(&polls);
    let sleeper = executor.spawn(async move {
        let mut sleep = core::pin::pin!(executor.sleep(Duration::from_millis(5)));
        core::future::poll_fn(|cx| {
            counted.set(counted.get() + 1);
            sleep.as_mut().poll(cx)
        })
        .await
    });
    assert_eq!(
        executor.task_cells(),
        1,
        "the sleeper took the first task's cell"
    );
    executor.run_until(yield_now()).unwrap();
    assert_eq!(polls.get(), 1);
    stale.wake();
    executor.run_until(yield_now()).unwrap();
    assert_eq!(polls.get(), 2, "one spurious poll");
    executor.run_until(sleeper).unwrap();
    assert_eq!(executor.clock().now(), 5 * MS);
}
