//! Kite's RISC-V frontend (RV64IMAC + Zicsr + Zifencei, M/S/U privilege
//! levels with M-mode traps and S-mode delegation).
//!
//! - [`decode`]: one 32-bit and one compressed decode table producing [`decode::Op`].
//! - [`disas`]: `Op` to objdump-style text.
//! - [`cpu`]: the hart state [`RiscvCpu`] (header first, `#[repr(C)]`), trap
//!   entry, interrupts, and the `kite_core::GuestCpu` implementation.
//! - [`csr`]: the CSR table with privilege rules and WARL masks.
//! - `translate`: block translation into Kite IR, one function per instruction.
//!
//! Not yet: the MMU (satp accepts only Bare; `translate_addr` is the place for
//! Sv39/48/57 and PMP), F/D (misa and mstatus.FS say absent), bitmanip.
//!
//! Pitfall for accelerators: `header.icount` is advanced by the whole block at
//! block entry. When a block leaves early, the instructions that did not run
//! must be subtracted to keep `cycle`/`instret` exact: after an exception,
//! the faulting instruction and those after it (count the block's
//! `InsnStart`s from `header.pc` on); after another mid-block exit (e.g. a
//! store that hit translated code), those from the resume pc on. CSR helpers
//! rely on this: a counter-reading instruction always ends its block, so the
//! helper subtracts exactly one (itself) from `icount`.
//!
//! Boot: `RiscvCpu::new(hartid)`, then `set_pc(entry)` (or `header.pc = ..`)
//! and `set_x(10, hartid)`, `set_x(11, dtb)` as firmware expects.

pub mod cpu;
pub mod csr;
pub mod decode;
pub mod disas;
mod translate;

#[cfg(test)]
mod testutil;

pub use cpu::{HartIrq, RiscvCpu, TimeSource, PRV_M, PRV_S, PRV_U};
pub use translate::translate_block;
