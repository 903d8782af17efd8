//! The bottom of the runtime: [`AppContext`], one app's instance of every element.
//!
//! It lives at the start of the app's heap region, where kernel-lite points the FS base; its
//! first word is its own address, so finding it is one load from `fs:0` (done in `sys`, the
//! only code that may read a segment register). Building it is plain Rust ([`AppContext::new`]);
//! `sys` only places it. Adding an element is one field here and one line in `new`.

use crate::console::LineBuffer;
use crate::mem::AppHeap;
use lite_abi::layout::AppInfo;
use log::LevelFilter;
use spin::Mutex;

/// One app's instance of every element. Lives at the start of the app's heap region; the FS
/// base points at it and its first word points at itself.
#[repr(C)]
pub struct AppContext {
    /// Must stay first: `fs:0` reads it.
    pub(crate) self_address: u64,
    index: usize,
    name: [u8; lite_abi::layout::NAME_LEN],
    log_level: LevelFilter,
    pub(crate) console: Mutex<LineBuffer>,
    pub(crate) heap: Mutex<AppHeap>,
    /// Start of the app's frame-ring area, 0 without a network binding.
    net_area: u64,
    /// Made on first use (it allocates, so the heap must exist first).
    #[cfg(target_os = "none")]
    executor: core::cell::OnceCell<crate::task::Executor<crate::task::SystemClock>>,
    /// The app's network stack, made on first use; boxed so an app without a network pays a
    /// pointer here, not a whole interface.
    #[cfg(target_os = "none")]
    net: core::cell::OnceCell<
        Result<alloc::boxed::Box<crate::net::AppNetStack>, crate::net::NetError>,
    >,
    /// The app's file system volume, mounted on first use from its disk extent.
    #[cfg(target_os = "none")]
    fs: core::cell::OnceCell<Result<crate::fs::Volume, crate::fs::MountError>>,
}

/// An app's heap usage, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUsage {
    pub used: usize,
    pub peak: usize,
    pub size: usize,
}

impl AppContext {
    /// The context of app `index`, described by `info`, placed at `self_address`, with `heap`
    /// as its heap. Every element starts here, fresh for each run of the app.
    #[cfg_attr(not(target_os = "none"), allow(dead_code))] // only `sys` places contexts
    pub(crate) fn new(
        self_address: u64,
        index: usize,
        info: &AppInfo,
        heap: AppHeap,
    ) -> AppContext {
        AppContext {
            self_address,
            index,
            name: info.name,
            log_level: crate::logger::level_filter(info.log_level),
            console: Mutex::new(LineBuffer::new()),
            heap: Mutex::new(heap),
            net_area: info.net_area,
            #[cfg(target_os = "none")]
            executor: core::cell::OnceCell::new(),
            #[cfg(target_os = "none")]
            net: core::cell::OnceCell::new(),
            #[cfg(target_os = "none")]
            fs: core::cell::OnceCell::new(),
        }
    }

    /// The app's name in its bundle.
    pub fn name(&self) -> &str {
        lite_abi::decode_name(&self.name).unwrap_or("?")
    }

    /// Where the app's frame rings are (0 without a network binding).
    #[cfg_attr(not(feature = "deliberate-faults"), allow(dead_code))]
    pub(crate) fn net_area(&self) -> u64 {
        self.net_area
    }

    /// Whether the app has a network binding.
    pub fn has_network(&self) -> bool {
        self.net_area != 0
    }

    /// The app's index in its bundle.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The app's `log` level.
    pub fn log_level(&self) -> LevelFilter {
        self.log_level
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
impl AppContext {
    /// The app's network stack (see [`crate::net`]), made on first use.
    pub fn net(&'static self) -> crate::io::Result<&'static crate::net::AppNetStack> {
        let net = self.net.get_or_init(|| {
            let rings = crate::sys::AppRingMemory::of_app(self.net_area)
                .ok_or(crate::net::NetError::NoNetwork)?;
            crate::net::NetStack::new(self.executor(), rings).map(alloc::boxed::Box::new)
        });
        match net {
            Ok(stack) => Ok(stack),
            Err(error) => Err((*error).into()),
        }
    }
}

#[cfg(target_os = "none")]
impl AppContext {
    /// The app's file system volume (see [`crate::fs`]), mounted on first use: formatted
    /// when the extent is blank, refused (and the reason logged) when it is not a volume.
    pub fn fs(&'static self) -> crate::io::Result<&'static crate::fs::Volume> {
        let volume = self.fs.get_or_init(|| {
            let volume = crate::sys::blk::open_disk().and_then(crate::fs::Volume::mount_boxed);
            if let Err(error) = &volume {
                log::error!("fs: cannot mount the app's volume: {error}");
            }
            volume
        });
        match volume {
            Ok(volume) => Ok(volume),
            Err(error) => Err((*error).into()),
        }
    }
}

/// The running app's context.
#[cfg(target_os = "none")]
#[inline]
pub fn current() -> &'static AppContext {
    crate::sys::current_context()
}

/// Runs `f` on the running app's console line buffer.
#[cfg(target_os = "none")]
pub(crate) fn with_console<R>(f: impl FnOnce(&mut LineBuffer) -> R) -> R {
    f(&mut current().console.lock())
}

/// The running app's `log` level.
#[cfg(target_os = "none")]
pub(crate) fn log_level() -> LevelFilter {
    current().log_level
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::MaybeUninit;

    #[test]
    fn a_context_is_built_from_the_apps_info_record() {
        let mut info = AppInfo::EMPTY;
        info.name[..5].copy_from_slice(b"hello");
        info.log_level = 3;
        let region: &'static mut [MaybeUninit<u8>] =
            Box::leak(vec![MaybeUninit::uninit(); 16 * 1024].into_boxed_slice());
        let context = AppContext::new(0x1000, 7, &info, AppHeap::new(region));
        assert_eq!(context.self_address, 0x1000);
        assert_eq!((context.name(), context.index()), ("hello", 7));
        assert_eq!(context.log_level(), LevelFilter::Info);
        assert_eq!(context.heap_usage().used, 0);
        assert_eq!(context.heap_usage().size, 16 * 1024);
    }
}
