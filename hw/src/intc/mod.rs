//! Interrupt controllers.
//!
//! - [`aclint`]: the SiFive CLINT / ACLINT (MSWI + MTIMER) of QEMU `virt`:
//!   software interrupts and the machine timer, per hart.
//! - [`plic`]: the SiFive PLIC: level-triggered wired interrupts routed to
//!   per-hart M- and S-mode external interrupt lines.
//!
//! Both are wired purely through [`kite_core::IrqLine`]s: they know nothing
//! of the CPU model. Their outputs are levels that the CPU side mirrors into
//! `mip` (and uses to kick a vCPU out of translated code or `wfi`). Output
//! lines are driven while the controller's lock is held, so an output
//! `IrqLine` must never call back into the controller.

pub mod aclint;
pub mod plic;

pub use aclint::Aclint;
pub use plic::Plic;

/// Errors building interrupt controllers (host configuration, never guest
/// behaviour).
#[derive(Debug, thiserror::Error)]
pub enum IntcError {
    #[error("{dev}: {count} harts/contexts given, between 1 and {max} supported")]
    BadCount { dev: &'static str, count: usize, max: usize },
    #[error("PLIC: no interrupt source {0} (sources are 1..={max})", max = plic::PLIC_NUM_SOURCES - 1)]
    BadSource(u32),
}
