//! Kite's gdb remote-protocol stub.
//!
//! Two seams, defined in `kite_core::debug` (re-exported here), keep the stub independent
//! of the accelerator and the architecture:
//! - [`DebugTarget`]: what a debuggable machine offers the stub (vCPUs, registers,
//!   memory through a vCPU's MMU or physical, breakpoints, watchpoints, stop / resume /
//!   single-step, reset, quit). The translator implements it (`kite_jit::DebugLink`); a
//!   KVM accelerator can implement it later with no change here.
//! - [`CpuRegs`]: a target CPU's register view in gdb's numbering plus its target
//!   description XML (`kite_riscv` implements it for `RiscvCpu`).
//!
//! [`server`] runs the gdbstub protocol state machine in its own thread; the vCPUs never
//! poll anything for it: a stop request sets their exit-request words.
//!
//! Pitfalls: every [`DebugTarget`] call blocks the stub thread until the vCPU thread has
//! answered, so implementations must answer promptly while the vCPUs are stopped (and
//! return [`DebugError::NotStopped`] rather than wait while they run).

mod arch;
pub mod server;

pub use kite_core::debug::{BreakKind, CpuRegs, DebugError, DebugTarget, Resume, StopEvent, WatchKind};
pub use server::{spawn, Listen};
