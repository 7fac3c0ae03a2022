//! Logging set-up: `-d` items become `log` targets, `-D` picks the file.
//!
//! The translator logs under the targets `in_asm`, `op`, `exec`, `cpu` and
//! `int` at trace level; devices log guest misbehaviour under
//! `guest_errors` (warn level, rate-limited at the source); `-d stats`
//! prints the translator's statistics at exit under the `stats` target.
//! Without `-d`, only Kite's own warnings and errors show. `RUST_LOG`, if
//! set, is applied on top (for developers).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use log::{Level, LevelFilter};

use crate::args::DebugItems;

/// The log target for `-d stats` output.
pub const STATS: &str = "stats";
/// Log target of the accelerator choice (shown under any `-d`).
pub const ACCEL: &str = "accel";

/// The `(target, level)` filters for a set of `-d` items.
pub fn filters(d: &DebugItems) -> Vec<(&'static str, LevelFilter)> {
    let mut f: Vec<(&'static str, LevelFilter)> = d.trace_targets.iter().map(|t| (*t, LevelFilter::Trace)).collect();
    f.push((kite_core::GUEST_ERRORS, if d.guest_errors { LevelFilter::Warn } else { LevelFilter::Off }));
    f.push((STATS, if d.stats { LevelFilter::Info } else { LevelFilter::Off }));
    // Any -d shows which accelerator was chosen.
    let any = !d.trace_targets.is_empty() || d.guest_errors || d.stats;
    f.push((ACCEL, if any { LevelFilter::Info } else { LevelFilter::Warn }));
    f
}

/// Install the logger. Errors name the log file that could not be opened.
pub fn init(d: &DebugItems, logfile: Option<&Path>) -> Result<(), String> {
    let mut b = env_logger::Builder::new();
    b.filter_level(LevelFilter::Warn);
    for (target, level) in filters(d) {
        b.filter_module(target, level);
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    b.format(|buf, r| match r.level() {
        // Trace output is QEMU-like: the message alone.
        Level::Trace | Level::Debug | Level::Info => writeln!(buf, "{}", r.args()),
        Level::Warn => writeln!(buf, "kite: warning: {}", r.args()),
        Level::Error => writeln!(buf, "kite: error: {}", r.args()),
    });
    if let Some(path) = logfile {
        let f = File::create(path)
            .map_err(|e| format!("cannot open log file '{}': {}", path.display(), crate::io_msg(&e)))?;
        b.target(env_logger::Target::Pipe(Box::new(f)));
    }
    b.try_init().map_err(|e| format!("cannot install the logger: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_map_to_targets() {
        let d = DebugItems { trace_targets: vec!["in_asm", "int"], guest_errors: true, stats: false };
        let f = filters(&d);
        assert!(f.contains(&("in_asm", LevelFilter::Trace)));
        assert!(f.contains(&("int", LevelFilter::Trace)));
        assert!(!f.iter().any(|(t, _)| *t == "op"));
        assert!(f.contains(&("guest_errors", LevelFilter::Warn)));
        assert!(f.contains(&("stats", LevelFilter::Off)));
        let f = filters(&DebugItems::default());
        assert!(f.contains(&("guest_errors", LevelFilter::Off)));
    }

    #[test]
    fn bad_log_file_is_one_line() {
        let e = init(&DebugItems::default(), Some(Path::new("/nonexistent-dir/x.log"))).unwrap_err();
        assert!(e.starts_with("cannot open log file '/nonexistent-dir/x.log': "), "{e}");
        assert!(!e.contains("os error"), "{e}");
    }
}
