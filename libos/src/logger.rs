//! The `log` facade, routed to the running app's console with the app's own level.
//!
//! `log` keeps one logger per image; this one holds no state, it only asks the running app's
//! context for its level, so each app filters by the level its bundle gave it.

use log::LevelFilter;
#[cfg(target_os = "none")]
use log::{Log, Metadata, Record};

#[cfg(target_os = "none")]
struct AppLogger;

#[cfg(target_os = "none")]
static LOGGER: AppLogger = AppLogger;

#[cfg(target_os = "none")]
impl Log for AppLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= crate::rt::log_level()
    }

    fn log(&self, record: &Record<'_>) {
        if self.enabled(record.metadata()) {
            crate::println!(
                "{:<5} {}: {}",
                record.level(),
                record.target(),
                record.args()
            );
        }
    }

    fn flush(&self) {
        crate::console::flush();
    }
}

#[cfg(target_os = "none")]
/// Installs the logger (the first app to start does it; later calls find it in place).
pub fn install() {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Trace);
}

/// The filter for a bundle's numeric log level (0 off … 5 trace).
pub fn level_filter(level: u64) -> LevelFilter {
    match level {
        0 => LevelFilter::Off,
        1 => LevelFilter::Error,
        2 => LevelFilter::Warn,
        3 => LevelFilter::Info,
        4 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_levels_map_to_filters() {
        assert_eq!(level_filter(0), LevelFilter::Off);
        assert_eq!(level_filter(3), LevelFilter::Info);
        assert_eq!(level_filter(9), LevelFilter::Trace);
    }
}
