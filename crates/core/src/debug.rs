//! The debugging seam: what a debugger stub (`kite-gdb`) needs from a machine and from a
//! target CPU, defined here so targets and accelerators implement it without depending on
//! the stub (dependencies stay one-way: `kite-gdb` -> `kite-core` <- targets, accelerators).
//!
//! - [`DebugTarget`]: what a debuggable machine offers (vCPUs, registers, memory through a
//!   vCPU's MMU or physical, breakpoints, watchpoints, stop / resume / single-step, reset,
//!   quit). The translator implements it; a KVM accelerator can implement it too.
//! - [`CpuRegs`]: a target CPU's register view in gdb's numbering plus its target
//!   description XML.
//!
//! Pitfall: every [`DebugTarget`] call blocks the stub thread until the vCPU thread has
//! answered, so implementations must answer promptly while the vCPUs are stopped (and
//! return [`DebugError::NotStopped`] rather than wait while they run).

use std::time::Duration;

/// A target CPU's registers as gdb sees them.
pub trait CpuRegs {
    /// The target description (`qXfer:features:read:target.xml`), with a `regnum` on
    /// every register: those numbers are the ones [`CpuRegs::gdb_read_reg`] takes.
    const TARGET_XML: &'static str;
    /// The registers of the `g` packet, in order (gdb fetches the others with `p`).
    const G_REGS: &'static [usize];
    /// Whether gdb expects watchpoint stops after the access completed (x86) rather
    /// than before the accessing instruction runs (RISC-V: gdb's
    /// `have_nonsteppable_watchpoint`, it steps over the access itself).
    const WATCH_AFTER_ACCESS: bool;

    /// Append register `n`'s value (target byte order) to `out`; false if there is none.
    fn gdb_read_reg(&self, n: usize, out: &mut Vec<u8>) -> bool;
    /// Write register `n` from `data`; false if there is none or the size is wrong.
    fn gdb_write_reg(&mut self, n: usize, data: &[u8]) -> bool;
}

/// Breakpoint flavours: both are implemented by the translator without touching guest
/// memory; they differ only in what gdb reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BreakKind {
    Sw,
    Hw,
}

/// Which accesses a watchpoint catches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WatchKind {
    Write,
    Read,
    Access,
}

/// Why the vCPUs stopped (reported once to the stub).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopEvent {
    /// Stopped on request (Ctrl-C, a new connection, `-S`).
    Signal { vcpu: usize },
    /// A breakpoint at the current pc (before the instruction runs).
    Break { vcpu: usize, kind: BreakKind },
    /// A watchpoint: at the accessing instruction (nothing done yet) or, for targets with
    /// [`CpuRegs::WATCH_AFTER_ACCESS`], after it (pc is the next instruction).
    Watch { vcpu: usize, kind: WatchKind, addr: u64 },
    /// A single step finished.
    DoneStep { vcpu: usize },
    /// The guest ended (power off / finisher) with this status.
    Exited(i32),
}

/// How to resume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resume {
    Continue,
    /// Execute exactly one instruction on `vcpu` (others stay stopped), interrupts masked.
    Step {
        vcpu: usize,
    },
}

/// Errors a [`DebugTarget`] reports to the stub.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DebugError {
    #[error("the vCPUs are running")]
    NotStopped,
    #[error("no vCPU {0}")]
    NoVcpu(usize),
    #[error("no register {0}")]
    NoRegister(usize),
    #[error("address {0:#x} is not accessible")]
    BadAddress(u64),
    #[error("the machine has ended")]
    Gone,
}

/// A debuggable machine, driven from the stub thread.
pub trait DebugTarget: Send + Sync {
    /// The target description XML.
    fn target_xml(&self) -> &'static str;
    /// The registers of the `g` packet.
    fn g_regs(&self) -> &'static [usize];
    fn num_vcpus(&self) -> usize;
    /// Ask every vCPU to stop; a [`StopEvent`] follows (asynchronously).
    fn interrupt(&self);
    /// Wait up to `timeout` for the next stop event.
    fn wait_stop(&self, timeout: Duration) -> Option<StopEvent>;
    /// Resume stopped vCPUs.
    fn resume(&self, how: Resume) -> Result<(), DebugError>;
    fn read_reg(&self, vcpu: usize, n: usize) -> Result<Vec<u8>, DebugError>;
    fn write_reg(&self, vcpu: usize, n: usize, data: &[u8]) -> Result<(), DebugError>;
    /// Read up to `len` bytes from `addr` (virtual through `vcpu`'s current MMU view, or
    /// physical); a short result stops at the first inaccessible byte.
    fn read_mem(&self, vcpu: usize, addr: u64, len: usize, phys: bool) -> Result<Vec<u8>, DebugError>;
    fn write_mem(&self, vcpu: usize, addr: u64, data: &[u8], phys: bool) -> Result<(), DebugError>;
    /// Insert (`on`) or remove a breakpoint; false if there was nothing to remove.
    fn breakpoint(&self, kind: BreakKind, addr: u64, on: bool) -> Result<bool, DebugError>;
    /// Insert (`on`) or remove a watchpoint on `[addr, addr + len)`.
    fn watchpoint(&self, kind: WatchKind, addr: u64, len: u64, on: bool) -> Result<bool, DebugError>;
    /// Remove every breakpoint and watchpoint (a debugger went away).
    fn clear_debug(&self) -> Result<(), DebugError>;
    /// The target's register dump (`monitor info registers`).
    fn dump_registers(&self, vcpu: usize) -> Result<String, DebugError>;
    /// Reset the machine (`monitor system_reset`).
    fn system_reset(&self);
    /// End Kite with `code` (`kill`, `monitor quit`).
    fn quit(&self, code: i32);
    /// A debugger connected (`true`) or went away.
    fn session(&self, _active: bool) {}
}
