//! Kite's RISC-V frontend (RV64IMAC + Zicsr + Zifencei, M/S/U privilege
//! levels with M-mode traps and S-mode delegation).
//!
//! - [`decode`]: one 32-bit and one compressed decode table producing [`decode::Op`].
//! - [`disas`]: `Op` to objdump-style text.
//! - [`cpu`]: the hart state [`RiscvCpu`] (header first, `#[repr(C)]`), trap
//!   entry, interrupts, and the `kite_core::GuestCpu` implementation.
//! - [`csr`]: the CSR table with privilege rules and WARL masks.
//! - `translate`: block translation into Kite IR, one function per instruction.
//! - [`mmu`]: Sv39/Sv48/Sv57 page walks (hardware A/D updates) and PMP.
//!
//! Counters: `header.icount` is advanced by the whole block at block entry,
//! and the IR un-counts the instructions that did not run when a block leaves
//! early (`docs/ir.md`), so it is exact at every block exit. CSR helpers rely
//! on this: a counter-reading instruction always ends its block, so the helper
//! subtracts exactly one (itself) from `icount`.
//!
//! Boot: `RiscvCpu::new(hartid)`, then `set_pc(entry)` (or `header.pc = ..`)
//! and `set_x(10, hartid)`, `set_x(11, dtb)` as firmware expects.

pub mod cpu;
pub mod csr;
pub mod decode;
pub mod decode_ext;
pub mod disas;
pub mod fpu;
pub mod gdb;
pub mod mmu;
mod translate;

#[cfg(test)]
mod priv_tests;
#[cfg(test)]
mod testutil;

pub use cpu::{HartIrq, HartIrqLine, Kick, RiscvCpu, StimecmpHook, TimeSource, PRV_M, PRV_S, PRV_U};
pub use translate::translate_block;
