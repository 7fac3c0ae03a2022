//! `-perfmap`: a `/tmp/perf-<pid>.map` symbol file for Linux `perf`, one line per compiled
//! block (`start size kite-<tier>-<guest pc>`), as QEMU's `-perfmap` writes. With it,
//! `perf report` names generated code by guest address instead of lumping it together.
//!
//! Off by default; when on, each compile costs one short `write` (lines are written whole
//! so `perf` never reads half a line, and nothing is lost if Kite exits through
//! `process::exit`).

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static ON: AtomicBool = AtomicBool::new(false);
static FILE: Mutex<Option<File>> = Mutex::new(None);

/// Start writing `/tmp/perf-<pid>.map`; returns its path.
pub fn enable() -> std::io::Result<String> {
    let path = format!("/tmp/perf-{}.map", std::process::id());
    let f = File::create(&path)?;
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = Some(f);
    ON.store(true, Ordering::Release);
    Ok(path)
}

/// Whether [`enable`] was called.
pub(crate) fn on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// Name `len` bytes of code at `addr`, compiled by `tier` from guest code at `pc`.
#[inline]
pub(crate) fn record(addr: *const u8, len: usize, tier: &str, pc: u64) {
    if !ON.load(Ordering::Relaxed) {
        return;
    }
    let line = format!("{:x} {:x} kite-{tier}-{pc:#x}\n", addr as usize, len);
    if let Some(f) = FILE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        // A failed write only loses symbols: stop trying rather than warn per block.
        if f.write_all(line.as_bytes()).is_err() {
            ON.store(false, Ordering::Relaxed);
        }
    }
}
