//! The executor's task cells: a slab, one cell per task, reused after a task ends.
//!
//! A cell holds its task's body (the future, then its output), its join state and its waker.
//! Spawning takes a free cell and joining gives it back, so a task costs no allocation of its
//! own for the join state or the waker. The body is the only allocation, and it too is kept
//! when the task ends: the next task of the same type spawned into the cell reuses it in
//! place (`Pin::set`), so a loop that spawns and joins one kind of task allocates nothing
//! after its first turn. Type erasure without `unsafe` needs the body boxed (a `dyn` object
//! whose future sits in a `Pin<Box<Option<F>>>`, pinned on its own): two blocks on a cell's
//! first use or a change of task type, none on reuse.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::task::Wake;
use alloc::vec::Vec;
use core::any::Any;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};

/// A task's future and, once it has completed, its output; kept for the next task of the same
/// type.
pub(super) trait TaskBody: Any {
    /// Polls the future. On completion drops the future in place and moves the output into
    /// `slot` if that is an `Option<F::Output>` (a join handle polling the task itself), or
    /// keeps it for the join handle.
    fn poll(&mut self, cx: &mut Context<'_>, slot: &mut dyn Any) -> Poll<()>;
    /// Moves the kept output into `slot`, an `Option<F::Output>` (left alone if it is another
    /// type).
    fn take_output(&mut self, slot: &mut dyn Any);
    /// Drops the kept output, if any: its task was detached.
    fn drop_output(&mut self);
}

struct Body<F: Future> {
    /// `None` between the future's completion and the next task of this type.
    future: Pin<Box<Option<F>>>,
    output: Option<F::Output>,
}

impl<F> TaskBody for Body<F>
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn poll(&mut self, cx: &mut Context<'_>, slot: &mut dyn Any) -> Poll<()> {
        let Some(future) = self.future.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let Poll::Ready(output) = future.poll(cx) else {
            return Poll::Pending;
        };
        // Drops what the task still holds now, as if its box were freed.
        self.future.set(None);
        match slot.downcast_mut::<Option<F::Output>>() {
            Some(slot) => *slot = Some(output),
            None => self.output = Some(output),
        }
        Poll::Ready(())
    }

    fn take_output(&mut self, slot: &mut dyn Any) {
        if let Some(slot) = slot.downcast_mut::<Option<F::Output>>() {
            *slot = self.output.take();
        }
    }

    fn drop_output(&mut self) {
        self.output = None;
    }
}

/// Puts `future` in `body`: in place when `body` last held a future of the same type, else in
/// a new body. Returns the body it replaced, if any (for the caller to drop with no borrow
/// held; it holds no future and no output).
fn start<F>(body: &mut Box<dyn TaskBody>, future: F) -> Option<Box<dyn TaskBody>>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let spare: &mut dyn Any = &mut **body;
    if let Some(same) = spare.downcast_mut::<Body<F>>() {
        same.future.set(Some(future));
        return None;
    }
    Some(core::mem::replace(body, new_body(future)))
}

fn new_body<F>(future: F) -> Box<dyn TaskBody>
where
    F: Future + 'static,
    F::Output: 'static,
{
    Box::new(Body {
        future: Box::pin(Some(future)),
        output: None,
    })
}

/// Where a cell's task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// No task: on the free list.
    Free,
    /// Spawned and not completed.
    Running,
    /// Completed; the output waits in the body for the join handle.
    Finished,
}

/// A task's body and its cell's waker: what polling needs, taken out of the cell together
/// while the task is polled (so that it may spawn, which can move the cells).
pub(super) struct Parts {
    pub body: Box<dyn TaskBody>,
    /// Made once with the cell and used by every task the cell holds. A stale wake (from a
    /// waker kept past its task's end) at worst polls the cell's next task once more than
    /// needed, which a future must allow.
    pub waker: Waker,
}

/// One task's cell.
pub(super) struct TaskCell<W> {
    pub stage: Stage,
    /// The join handle was dropped: the cell is freed as soon as the task completes.
    pub detached: bool,
    /// Who awaits the join handle.
    pub joiner: Option<Waker>,
    /// `None` only while the task is polled. A cell made by `insert` always has a body.
    pub parts: Option<Parts>,
    /// What `parts.waker` wakes: the cell's index and whether it is in the ready queue.
    pub waker_state: Arc<W>,
}

/// The cells, and the free ones (the last freed is the first reused).
pub(super) struct TaskSlab<W> {
    pub cells: Vec<TaskCell<W>>,
    pub free: Vec<usize>,
}

impl<W: Wake + Send + Sync + 'static> TaskSlab<W> {
    pub const fn new() -> TaskSlab<W> {
        TaskSlab {
            cells: Vec::new(),
            free: Vec::new(),
        }
    }

    /// Puts `future` in a cell, running: the last freed cell, or a new one whose waker is
    /// made from `new_waker(index)`. Returns the cell's index and the body it replaced, if any
    /// (to be dropped with no borrow held).
    pub fn insert<F>(
        &mut self,
        future: F,
        new_waker: impl FnOnce(usize) -> Arc<W>,
    ) -> (usize, Option<Box<dyn TaskBody>>)
    where
        F: Future + 'static,
        F::Output: 'static,
    {
        if let Some(index) = self.free.pop() {
            let cell = &mut self.cells[index];
            if let Some(parts) = cell.parts.as_mut() {
                cell.stage = Stage::Running;
                return (index, start(&mut parts.body, future));
            }
            // Not reached: a cell is freed only with its parts in it (were one not, it would
            // stay out of use).
        }
        let index = self.cells.len();
        let waker_state = new_waker(index);
        self.cells.push(TaskCell {
            stage: Stage::Running,
            detached: false,
            joiner: None,
            parts: Some(Parts {
                body: new_body(future),
                waker: Waker::from(Arc::clone(&waker_state)),
            }),
            waker_state,
        });
        (index, None)
    }

    /// Gives cell `index` back: it holds no task now (its body stays, for reuse).
    pub fn release(&mut self, index: usize) {
        let cell = &mut self.cells[index];
        cell.stage = Stage::Free;
        cell.detached = false;
        cell.joiner = None;
        self.free.push(index);
    }
}
