//! The scheduling policy: a FIFO ready queue (round-robin), a quantum, blocking until a deadline
//! or an event (whichever comes first), and restarts after a back-off. The hot path (a yield, a
//! wait, a tick) is O(1) unless something is due: the earliest deadline is kept, so a turn does
//! not scan every app. It decides; kernel-lite's
//! `apps` module does (switches stacks, maps memory, prints). Times are TSC ticks.

use alloc::vec::Vec;
use lite_abi::bundle::RestartPolicy;
use lite_abi::kcall::Events;

/// How an app's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnd {
    Exited(i64),
    Faulted,
}

impl AppEnd {
    pub fn failed(self) -> bool {
        self != AppEnd::Exited(0)
    }
}

/// Where an app stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    Ready,
    Running,
    /// Waits until `deadline` or one of `events` is pending.
    Blocked {
        deadline: u64,
        events: Events,
    },
    /// Ended, to start again at `at` (restart back-off).
    Restarting {
        at: u64,
    },
    Ended(AppEnd),
}

/// One app, as the policy sees it.
#[derive(Debug, Clone)]
struct Entry {
    state: RunState,
    /// Events signalled and not yet reported by a wait.
    pending: Events,
    restart: RestartPolicy,
    restarts: u16,
}

/// A FIFO of app indices in a fixed ring whose size is a power of two at least the number of
/// apps: each app is queued at most once, so it never fills, and a push or pop is a mask, a
/// load and a store (the `VecDeque` it replaced checked for growth and wrapped with compares).
#[derive(Debug, Clone)]
struct ReadyQueue {
    slots: Vec<u32>,
    mask: usize,
    head: usize,
    len: usize,
}

impl ReadyQueue {
    /// Apps `0..count`, all queued in order.
    fn with_all(count: usize) -> ReadyQueue {
        let size = count.max(1).next_power_of_two();
        let mut slots = alloc::vec![0; size];
        for (slot, app) in slots.iter_mut().zip(0..count as u32) {
            *slot = app;
        }
        ReadyQueue {
            slots,
            mask: size - 1,
            head: 0,
            len: count,
        }
    }

    #[inline]
    fn push(&mut self, app: usize) {
        debug_assert!(self.len < self.slots.len(), "an app queued twice");
        self.slots[(self.head + self.len) & self.mask] = app as u32;
        self.len += 1;
    }

    #[inline]
    fn pop(&mut self) -> Option<usize> {
        if self.len == 0 {
            return None;
        }
        let app = self.slots[self.head & self.mask] as usize;
        self.head = self.head.wrapping_add(1);
        self.len -= 1;
        Some(app)
    }
}

/// What a `wait` comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Returns at once with these events (empty: the deadline has passed).
    Now(Events),
    /// The app blocks; when it runs again, [`Policy::take_events`] gives its result.
    Blocked,
}

/// What follows an app's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterEnd {
    /// It restarts in `delay_ms` (restarts used before this one: `used`).
    Restart { delay_ms: u64, used: u16 },
    /// It will not run again: its policy is spent (`limit_reached`) or says never.
    Stopped { limit_reached: bool },
}

/// The policy for all apps of an image.
#[derive(Debug, Clone)]
pub struct Policy {
    apps: Vec<Entry>,
    /// Ready apps in the order they run; each at most once.
    ready: ReadyQueue,
    current: Option<usize>,
    quantum: u32,
    quantum_left: u32,
    /// No blocked deadline or restart falls before this (it may be early, never late).
    next_due: u64,
    /// An event was signalled since the last full wake-up scan.
    signalled: bool,
}

impl Policy {
    /// Apps with these restart policies, all ready; each runs `quantum` timer ticks at a time.
    pub fn new(restarts: impl IntoIterator<Item = RestartPolicy>, quantum: u32) -> Policy {
        let apps: Vec<Entry> = restarts
            .into_iter()
            .map(|restart| Entry {
                state: RunState::Ready,
                pending: Events::NONE,
                restart,
                restarts: 0,
            })
            .collect();
        Policy {
            ready: ReadyQueue::with_all(apps.len()),
            apps,
            current: None,
            quantum,
            quantum_left: quantum,
            next_due: u64::MAX,
            signalled: false,
        }
    }

    #[inline]
    fn make_ready(&mut self, app: usize) {
        self.apps[app].state = RunState::Ready;
        self.ready.push(app);
    }

    /// Whether anything may be due at `now` (cheap; exact only after a scan): when not,
    /// [`Policy::wake_due`] has nothing to do.
    #[inline]
    pub fn maybe_due(&self, now: u64) -> bool {
        self.signalled || self.next_due <= now
    }

    #[inline]
    pub fn state(&self, app: usize) -> RunState {
        self.apps[app].state
    }

    /// The most restarts `app`'s policy allows.
    pub fn restart_limit(&self, app: usize) -> u16 {
        self.apps[app].restart.limit()
    }

    /// Restarts used so far.
    pub fn restarts(&self, app: usize) -> u16 {
        self.apps[app].restarts
    }

    /// The app on the CPU.
    #[inline]
    pub fn running(&self) -> Option<usize> {
        self.current
    }

    #[inline]
    fn due(entry: &Entry, now: u64) -> bool {
        match entry.state {
            RunState::Blocked { deadline, events } => {
                deadline <= now || !entry.pending.intersection(events).is_empty()
            }
            RunState::Restarting { at } => at <= now,
            _ => false,
        }
    }

    /// Wakes blocked apps whose deadline passed or whose event came, and makes apps whose
    /// back-off is over ready, calling `restart(app, restarts_used_now, restart_limit)` for each
    /// (so its context is prepared).
    #[inline]
    pub fn wake_due(&mut self, now: u64, mut restart: impl FnMut(usize, u16, u16)) {
        if !self.maybe_due(now) {
            return;
        }
        self.signalled = false;
        self.next_due = u64::MAX;
        for index in 0..self.apps.len() {
            let entry = &mut self.apps[index];
            if Self::due(entry, now) {
                if let RunState::Restarting { .. } = entry.state {
                    entry.restarts += 1;
                    restart(index, entry.restarts, entry.restart.limit());
                }
                self.make_ready(index);
                continue;
            }
            match entry.state {
                RunState::Blocked { deadline, .. } => self.next_due = self.next_due.min(deadline),
                RunState::Restarting { at } => self.next_due = self.next_due.min(at),
                _ => {}
            }
        }
    }

    /// The ready app that has waited longest (round-robin), now running with a fresh quantum;
    /// `None` when no app is ready.
    #[inline]
    pub fn pick_next(&mut self) -> Option<usize> {
        debug_assert!(self.current.is_none(), "an app is still on the CPU");
        let next = self.ready.pop()?;
        self.apps[next].state = RunState::Running;
        self.current = Some(next);
        self.quantum_left = self.quantum;
        Some(next)
    }

    /// The running app left the CPU (it yielded, blocked, ended or was preempted).
    #[inline]
    pub fn left_cpu(&mut self) {
        self.current = None;
    }

    /// A timer tick hit the running app: whether to preempt it (quantum spent, or another app
    /// is due now).
    #[inline]
    pub fn on_tick(&mut self, now: u64) -> bool {
        self.quantum_left = self.quantum_left.saturating_sub(1);
        self.quantum_left == 0 || (self.maybe_due(now) && self.any_due(now))
    }

    /// Whether an app is due now (a deadline passed, an awaited event fired, a restart).
    pub fn any_due(&self, now: u64) -> bool {
        self.apps.iter().any(|entry| Self::due(entry, now))
    }

    /// The running app yields (or is preempted): it stays ready, behind the others.
    #[inline]
    pub fn yield_running(&mut self) {
        if let Some(app) = self.current {
            self.make_ready(app);
        }
    }

    /// The running app waits until `deadline` or one of `events`.
    #[inline]
    pub fn wait(&mut self, deadline: u64, events: Events, now: u64) -> Wait {
        let Some(app) = self.current else {
            return Wait::Now(Events::NONE);
        };
        let ready = self.take_events(app, events);
        if !ready.is_empty() || deadline <= now {
            return Wait::Now(ready);
        }
        self.apps[app].state = RunState::Blocked { deadline, events };
        self.next_due = self.next_due.min(deadline);
        Wait::Blocked
    }

    /// The pending events of `mask` for `app`, now cleared: a wait's result.
    #[inline]
    pub fn take_events(&mut self, app: usize, mask: Events) -> Events {
        let entry = &mut self.apps[app];
        let ready = entry.pending.intersection(mask);
        entry.pending = entry.pending.without(ready);
        ready
    }

    /// Events for `app` (from a device, say): kept until a wait reports them; a blocked app
    /// waiting for one of them becomes due.
    pub fn signal(&mut self, app: usize, events: Events) {
        let entry = &mut self.apps[app];
        entry.pending = entry.pending.union(events);
        self.signalled = true;
    }

    /// The running app ended (exit or fault).
    pub fn end_running(&mut self, end: AppEnd) {
        if let Some(app) = self.current {
            self.apps[app].state = RunState::Ended(end);
        }
    }

    /// After `app` ended with `end` (its memory returned): restart it after a back-off, or not,
    /// by its policy. `ticks_per_ms` converts the back-off.
    pub fn after_end(&mut self, app: usize, now: u64, ticks_per_ms: u64) -> AfterEnd {
        let entry = &mut self.apps[app];
        let RunState::Ended(end) = entry.state else {
            return AfterEnd::Stopped {
                limit_reached: false,
            };
        };
        entry.pending = Events::NONE;
        match entry.restart.next_restart(end.failed(), entry.restarts) {
            Some(delay_ms) => {
                let at = now.saturating_add(delay_ms.saturating_mul(ticks_per_ms));
                entry.state = RunState::Restarting { at };
                self.next_due = self.next_due.min(at);
                AfterEnd::Restart {
                    delay_ms,
                    used: entry.restarts,
                }
            }
            None => AfterEnd::Stopped {
                limit_reached: entry.restart.next_restart(end.failed(), 0).is_some(),
            },
        }
    }

    /// The earliest time a blocked app's deadline or a restart falls due.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.apps
            .iter()
            .filter_map(|entry| match entry.state {
                RunState::Blocked { deadline, .. } => Some(deadline),
                RunState::Restarting { at } => Some(at),
                _ => None,
            })
            .min()
    }

    /// Whether every app has ended for good.
    pub fn all_ended(&self) -> bool {
        self.apps
            .iter()
            .all(|entry| matches!(entry.state, RunState::Ended(_)))
    }

    /// Whether some app ended failed (or has not ended).
    pub fn any_failed(&self) -> bool {
        self.apps.iter().any(|entry| match entry.state {
            RunState::Ended(end) => end.failed(),
            _ => true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEVER: RestartPolicy = RestartPolicy::Never;

    fn policy(count: usize) -> Policy {
        Policy::new(core::iter::repeat_n(NEVER, count), 10)
    }

    /// Runs the picked app, which does `f` and leaves the CPU.
    fn run(policy: &mut Policy, f: impl FnOnce(&mut Policy)) -> usize {
        let app = policy.pick_next().expect("an app is ready");
        f(policy);
        policy.left_cpu();
        app
    }

    #[test]
    fn the_ready_queue_keeps_order_across_its_wrap() {
        let mut queue = ReadyQueue::with_all(3);
        assert_eq!(queue.slots.len(), 4);
        let mut order = Vec::new();
        for _ in 0..10 {
            let app = queue.pop().unwrap();
            order.push(app);
            queue.push(app);
        }
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]);
        while queue.pop().is_some() {}
        assert_eq!(queue.pop(), None);
    }

    #[test]
    fn ready_apps_take_turns() {
        let mut p = policy(3);
        let order: Vec<usize> = (0..6).map(|_| run(&mut p, Policy::yield_running)).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn a_wait_ends_at_its_deadline() {
        let mut p = policy(1);
        run(&mut p, |p| {
            assert_eq!(p.wait(100, Events::NONE, 10), Wait::Blocked)
        });
        assert_eq!(p.next_wakeup(), Some(100));
        p.wake_due(99, |_, _, _| unreachable!());
        assert_eq!(p.pick_next(), None, "not due yet");
        p.wake_due(100, |_, _, _| unreachable!());
        assert_eq!(p.pick_next(), Some(0));
        assert_eq!(p.take_events(0, Events::ALL), Events::NONE, "woken by time");
    }

    #[test]
    fn a_wait_ends_at_an_event_before_its_deadline() {
        let mut p = policy(2);
        let bit = Events::bit(3);
        run(&mut p, |p| {
            assert_eq!(p.wait(1_000, bit, 10), Wait::Blocked)
        });
        p.signal(0, Events::bit(4)); // not waited for
        p.wake_due(20, |_, _, _| unreachable!());
        assert_eq!(
            p.state(0),
            RunState::Blocked {
                deadline: 1_000,
                events: bit
            }
        );
        p.signal(0, bit);
        p.wake_due(20, |_, _, _| unreachable!());
        assert_eq!(p.pick_next(), Some(1), "round-robin after app 0");
        p.yield_running();
        p.left_cpu();
        assert_eq!(p.pick_next(), Some(0));
        assert_eq!(p.take_events(0, bit), bit);
        assert_eq!(
            p.take_events(0, Events::ALL),
            Events::bit(4),
            "the other stays pending"
        );
    }

    #[test]
    fn an_event_signalled_before_the_wait_is_not_lost() {
        let mut p = policy(1);
        p.signal(0, Events::bit(1));
        run(&mut p, |p| {
            assert_eq!(
                p.wait(u64::MAX, Events::bit(1), 5),
                Wait::Now(Events::bit(1))
            );
            assert_eq!(
                p.wait(3, Events::bit(1), 5),
                Wait::Now(Events::NONE),
                "past deadline"
            );
        });
    }

    #[test]
    fn a_tick_preempts_when_the_quantum_is_spent_or_another_is_due() {
        let mut p = Policy::new([NEVER, NEVER], 3);
        run(&mut p, |p| {
            assert_eq!(p.wait(50, Events::NONE, 0), Wait::Blocked)
        });
        p.pick_next();
        assert!(!p.on_tick(10));
        assert!(!p.on_tick(20));
        assert!(p.on_tick(30), "quantum spent");
        p.yield_running();
        p.left_cpu();
        p.pick_next();
        assert!(p.on_tick(50), "app 0's deadline is due");
    }

    #[test]
    fn a_sleeper_woken_by_a_tick_runs_before_the_app_it_preempts() {
        let mut p = policy(2);
        run(&mut p, |p| {
            assert_eq!(p.wait(5, Events::NONE, 0), Wait::Blocked)
        });
        assert_eq!(p.pick_next(), Some(1));
        assert!(p.on_tick(5), "the sleeper is due");
        // The order kernel-lite follows: wake what is due, then requeue the preempted app.
        p.wake_due(5, |_, _, _| unreachable!());
        p.yield_running();
        p.left_cpu();
        assert_eq!(p.pick_next(), Some(0));
    }

    #[test]
    fn restarts_follow_the_policy_with_a_back_off() {
        let mut p = Policy::new([RestartPolicy::OnFailure { limit: 2 }], 10);
        let mut restarted = 0;
        for round in 0..3u64 {
            run(&mut p, |p| p.end_running(AppEnd::Faulted));
            let now = round * 1_000;
            match p.after_end(0, now, 10) {
                AfterEnd::Restart { delay_ms, used } => {
                    assert_eq!((delay_ms, used), (50 << round, round as u16));
                    assert_eq!(p.next_wakeup(), Some(now + delay_ms * 10));
                    p.wake_due(now + delay_ms * 10, |app, used, limit| {
                        assert_eq!((app, limit), (0, 2));
                        restarted += 1;
                        assert_eq!(used, restarted);
                    });
                }
                AfterEnd::Stopped { limit_reached } => {
                    assert!(limit_reached);
                    assert_eq!(round, 2);
                }
            }
        }
        assert_eq!((restarted, p.restarts(0)), (2, 2));
        assert!(p.all_ended() && p.any_failed());
    }

    #[test]
    fn a_clean_exit_is_not_restarted_on_failure_only() {
        let mut p = Policy::new([RestartPolicy::OnFailure { limit: 3 }], 10);
        run(&mut p, |p| p.end_running(AppEnd::Exited(0)));
        assert_eq!(
            p.after_end(0, 0, 1),
            AfterEnd::Stopped {
                limit_reached: false
            }
        );
        assert!(p.all_ended() && !p.any_failed());
    }
}
