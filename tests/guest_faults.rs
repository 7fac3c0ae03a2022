//! Guests that misbehave must never take Kite down or make it unstoppable:
//! - `fault_loop`: mtvec and the pc both point at unmapped memory, so the hart
//!   faults forever; SIGTERM must still stop Kite promptly, non-zero, no panic.
//! - `garbage`: executes 5000 pseudo-random instruction words.
//! - `uart_misuse`: undefined UART registers and 2/4/8-byte UART accesses;
//!   the guest must keep running and pass.
//!
//! The last two also run under both translator tiers; for `garbage` the two
//! tiers' outputs must also be identical (differential decode check).

mod common;

use common::{assert_passed, is_external, run_guest, spawn_kite, wait_with_timeout, Output, Tier, VIRT_ARGS};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn fault_loop_stops_on_sigterm(tier: Tier) {
    if tier == Tier::Interp && is_external() {
        return;
    }
    let elf = common::guest("fault_loop").to_string_lossy().into_owned();
    let mut args: Vec<&str> = VIRT_ARGS.to_vec();
    args.push(&elf);
    if tier == Tier::Interp {
        args.extend(["-accel", "tcg,tier=interp"]);
    }
    let child = spawn_kite(&args);
    let mut signalled_at = None;
    let out = wait_with_timeout(child, Duration::from_secs(10), |child| {
        std::thread::sleep(Duration::from_secs(1));
        let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
        // SAFETY: kill() has no memory-safety preconditions; `pid` is our own
        // child, which has not been reaped yet (so the pid cannot be reused).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
        signalled_at = Some(Instant::now());
    });
    let stop_time = signalled_at.map(|t| t.elapsed()).unwrap_or_default();
    assert!(
        out.stdout.contains("fault_loop: entering fault loop"),
        "guest never reached the fault loop:\n{}",
        out.dump()
    );
    assert!(stop_time < Duration::from_secs(5), "took {stop_time:?} to stop after SIGTERM:\n{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "panicked:\n{}", out.dump());
    // QEMU exits 0 on SIGTERM; Kite must report the abnormal stop.
    if !is_external() {
        assert!(!out.status.success(), "exit status should be non-zero after SIGTERM:\n{}", out.dump());
    }
}

#[test]
fn fault_loop_default() {
    fault_loop_stops_on_sigterm(Tier::Default);
}

#[test]
fn fault_loop_interp() {
    fault_loop_stops_on_sigterm(Tier::Interp);
}

/// Runs `garbage` once per tier per test binary (shared by the per-tier tests
/// and the agreement test).
fn garbage_output(tier: Tier) -> Option<&'static Output> {
    static DEFAULT: OnceLock<Option<Output>> = OnceLock::new();
    static INTERP: OnceLock<Option<Output>> = OnceLock::new();
    let cell = if tier == Tier::Interp { &INTERP } else { &DEFAULT };
    // Every word needs a fence.i, so a translator that flushes and recompiles
    // on each one is slow here: allow more time than for the other guests.
    cell.get_or_init(|| run_guest("garbage", tier, Duration::from_secs(180))).as_ref()
}

fn garbage(tier: Tier) {
    if let Some(out) = garbage_output(tier) {
        assert_passed("garbage", out);
        assert!(out.stdout.contains("garbage: words=5000"), "summary missing:\n{}", out.dump());
    }
}

#[test]
fn garbage_default() {
    garbage(Tier::Default);
}

#[test]
fn garbage_interp() {
    garbage(Tier::Interp);
}

/// Differential check: both tiers must decode every random word the same way,
/// so the executed/trapped split (and all other output) must be identical.
#[test]
fn garbage_tiers_agree() {
    let (Some(jit), Some(interp)) = (garbage_output(Tier::Default), garbage_output(Tier::Interp)) else {
        return;
    };
    assert_eq!(jit.stdout, interp.stdout, "tiers disagree:\n{}\n=== interp ===\n{}", jit.dump(), interp.dump());
}

fn uart_misuse(tier: Tier) {
    if let Some(out) = run_guest("uart_misuse", tier, TIMEOUT) {
        assert_passed("uart_misuse", &out);
        assert!(out.stdout.contains("uart_misuse: output still works"), "marker missing:\n{}", out.dump());
    }
}

#[test]
fn uart_misuse_default() {
    uart_misuse(Tier::Default);
}

#[test]
fn uart_misuse_interp() {
    uart_misuse(Tier::Interp);
}
