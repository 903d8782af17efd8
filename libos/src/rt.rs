//! The runtime: an app's start-up, its context (its instance of every element), and the table
//! of programs an image carries.
//!
//! kernel-lite enters the image at `_start` (defined by [`crate::user_image!`]) once per app, with the
//! app's index. The runtime builds the app's [`AppContext`] at the start of the app's heap
//! region, where the FS base points, finds the app's program by name and runs it.

use crate::console::LineBuffer;
use crate::mem::AppHeap;
use log::LevelFilter;
use spin::Mutex;

/// A program an image can run: its name in bundles, and its `main`, returning the exit status.
#[derive(Clone, Copy)]
pub struct Program {
    pub name: &'static str,
    pub main: fn() -> i32,
}

/// The program called `name`, if the image has it.
pub fn find_program<'a>(programs: &'a [Program], name: &str) -> Option<&'a Program> {
    programs.iter().find(|program| program.name == name)
}

/// One app's instance of every element. Lives at the start of the app's heap region; the FS
/// base points at it and its first word points at itself, so finding it is one load from `fs:0`.
#[repr(C)]
pub struct AppContext {
    /// Must stay first: `fs:0` reads it.
    pub(crate) self_address: u64,
    pub(crate) index: usize,
    pub(crate) name: [u8; lite_abi::layout::NAME_LEN],
    pub(crate) log_level: LevelFilter,
    pub(crate) console: Mutex<LineBuffer>,
    pub(crate) heap: Mutex<AppHeap>,
    /// Made on first use (it allocates, so the heap must exist first).
    #[cfg(target_os = "none")]
    pub(crate) executor: core::cell::OnceCell<crate::task::Executor<crate::task::SystemClock>>,
}

/// An app's heap usage, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUsage {
    pub used: usize,
    pub peak: usize,
    pub size: usize,
}

impl AppContext {
    /// The app's name in its bundle.
    pub fn name(&self) -> &str {
        lite_abi::decode_name(&self.name).unwrap_or("?")
    }

    /// The app's index in its bundle.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The app's heap: in use, at peak, and in all.
    pub fn heap_usage(&self) -> HeapUsage {
        let heap = self.heap.lock();
        HeapUsage {
            used: heap.used(),
            peak: heap.peak(),
            size: heap.size(),
        }
    }

    /// The app's executor (see [`crate::task`]).
    #[cfg(target_os = "none")]
    pub fn executor(&self) -> &crate::task::Executor<crate::task::SystemClock> {
        self.executor
            .get_or_init(|| crate::task::Executor::new(crate::task::SystemClock))
    }
}

#[cfg(target_os = "none")]
mod machine {
    use super::*;

    /// Runs app `index` of the bundle: builds its context, then its program; never returns.
    pub fn start(index: usize, programs: &[Program]) -> ! {
        let Some(info) = crate::sys::app_info(index) else {
            crate::sys::exit(126)
        };
        crate::sys::install_context(index, info);
        crate::logger::install();
        let wanted = lite_abi::decode_name(&info.program).unwrap_or("");
        match find_program(programs, wanted) {
            Some(program) => crate::process::exit((program.main)()),
            None => {
                crate::println!("no program named '{wanted}' in this image");
                crate::process::exit(127)
            }
        }
    }

    /// The running app's context.
    pub fn current() -> &'static AppContext {
        crate::sys::current_context()
    }

    pub(crate) fn with_console<R>(f: impl FnOnce(&mut LineBuffer) -> R) -> R {
        f(&mut current().console.lock())
    }

    pub(crate) fn log_level() -> LevelFilter {
        current().log_level
    }
}

#[cfg(target_os = "none")]
pub use machine::{current, start};
#[cfg(target_os = "none")]
pub(crate) use machine::{log_level, with_console};

#[cfg(test)]
mod tests {
    use super::*;

    fn zero() -> i32 {
        0
    }

    fn one() -> i32 {
        1
    }

    #[test]
    fn programs_are_found_by_name() {
        let programs = [
            Program {
                name: "a",
                main: zero,
            },
            Program {
                name: "b",
                main: one,
            },
        ];
        assert_eq!(find_program(&programs, "b").map(|p| (p.main)()), Some(1));
        assert!(find_program(&programs, "c").is_none());
    }
}
