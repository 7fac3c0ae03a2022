//! Translation of guest code into Kite IR: the block loop
//! ([`translate_block`]) and one `match` on [`Op`] dispatching to one function
//! per instruction, grouped by extension.
//!
//! Conventions: guest registers are read with `LdState` at
//! [`offsets::x`] (x0 reads as the constant 0) and written with `StState`
//! (writes to x0 are dropped, but the instruction's other effects such as a
//! load's fault still happen). Every instruction starts with `InsnStart`.
//! A block ends at a control-flow instruction, at a CSR access that writes or
//! reads a counter, before the next 4 KiB page, or after `max_insns`.

mod bitmanip;
mod rv64a;
mod rv64i;
mod rv64m;
mod rvf;
mod spin;
mod system;
mod zicsr;
mod zifencei;

use kite_core::guest::TbLimits;
use kite_core::Fault;
use kite_ir::state::{flush, PAGE_MASK};
use kite_ir::{Builder, Exit, Temp, Ty};

use crate::cpu::{cause, offsets, tbflags};
use crate::decode::{decode, Op, Reg};

/// Caps the IR size of one block (a guest cannot make translation unbounded).
const MAX_IR_INSTS: usize = 2048;

/// Per-instruction translation context.
pub(crate) struct Ctx<'a> {
    pub b: &'a mut Builder,
    pub pc: u64,
    /// Instruction length in bytes (2 or 4).
    pub len: u64,
    /// Raw instruction bits (the parcel for a compressed instruction): the
    /// tval of an illegal-instruction trap.
    pub insn: u32,
    /// Privilege level from the TB flags.
    pub privilege: u64,
    /// The block's TB flags (FS state for F/D).
    pub flags: u32,
    /// Per block: whether fcsr allows the inline FP arithmetic (see `rvf::calc`), for a
    /// static RNE (`[0]`) and a dynamic (`[1]`) rounding mode, once computed. CSR
    /// instructions forget it; nothing else clears NX or changes frm.
    pub fp_ok: &'a mut [Option<Temp>; 2],
}

/// Whether the instruction ended the block (it emitted its own exits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    Next,
    End,
}

impl Ctx<'_> {
    pub fn next_pc(&self) -> u64 {
        self.pc.wrapping_add(self.len)
    }
    /// Read integer register `r` (x0 is the constant 0).
    pub fn gpr(&mut self, r: Reg) -> Temp {
        if r == 0 {
            self.b.const64(0)
        } else {
            self.b.ld_state(Ty::I64, offsets::x(r))
        }
    }
    /// Write integer register `r` (writes to x0 are dropped).
    pub fn set_gpr(&mut self, r: Reg, v: Temp) {
        if r != 0 {
            self.b.st_state(v, offsets::x(r));
        }
    }
    /// `x[r] + imm` as an address.
    pub fn addr(&mut self, r: Reg, imm: i64) -> Temp {
        let base = self.gpr(r);
        if imm == 0 {
            base
        } else {
            let k = self.b.const64(imm as u64);
            self.b.bin(kite_ir::BinOp::Add, base, k)
        }
    }
    /// End the block raising `cause` with a constant `tval`.
    pub fn raise(&mut self, cause: u64, tval: u64) -> Flow {
        let t = self.b.const64(tval);
        self.b.exit(Exit::Raise { cause, tval: t });
        Flow::End
    }
    /// Illegal instruction: tval = the instruction bits.
    pub fn illegal(&mut self) -> Flow {
        self.raise(cause::ILLEGAL_INSN, self.insn as u64)
    }
    /// The instruction as a 64-bit constant (helper argument for traps).
    pub fn insn_const(&mut self) -> Temp {
        self.b.const64(self.insn as u64)
    }
}

/// Emit IR for one decoded instruction.
pub(crate) fn translate_op(ctx: &mut Ctx, op: &Op) -> Flow {
    match *op {
        Op::Illegal => ctx.illegal(),
        Op::Lui { rd, imm } => rv64i::lui(ctx, rd, imm),
        Op::Auipc { rd, imm } => rv64i::auipc(ctx, rd, imm),
        Op::Jal { rd, imm } => rv64i::jal(ctx, rd, imm),
        Op::Jalr { rd, rs1, imm } => rv64i::jalr(ctx, rd, rs1, imm),
        Op::Branch { cond, rs1, rs2, imm } => rv64i::branch(ctx, cond, rs1, rs2, imm),
        Op::Load { width, unsigned, rd, rs1, imm } => rv64i::load(ctx, width, unsigned, rd, rs1, imm),
        Op::Store { width, rs1, rs2, imm } => rv64i::store(ctx, width, rs1, rs2, imm),
        Op::AluImm { op, word, rd, rs1, imm } => {
            let b = ctx.b.const64(imm as u64);
            rv64i::alu(ctx, op, word, rd, rs1, b)
        }
        Op::Alu { op, word, rd, rs1, rs2 } => {
            let b = ctx.gpr(rs2);
            if rv64m::is_m(op) {
                rv64m::muldiv(ctx, op, word, rd, rs1, b)
            } else {
                rv64i::alu(ctx, op, word, rd, rs1, b)
            }
        }
        Op::Fence { .. } if ctx.insn == zifencei::PAUSE => zifencei::pause(ctx),
        Op::Fence { .. } => Flow::Next, // single-threaded TCG-style execution: a no-op
        Op::FenceI => zifencei::fence_i(ctx),
        Op::Ecall => system::ecall(ctx),
        Op::Ebreak => system::ebreak(ctx),
        Op::Mret => system::xret(ctx, false),
        Op::Sret => system::xret(ctx, true),
        Op::Wfi => system::wfi(ctx),
        Op::SfenceVma { .. } => system::sfence_vma(ctx),
        Op::Csr { op, imm, rd, src, csr } => zicsr::csr(ctx, op, imm, rd, src, csr),
        Op::Lr { width, rd, rs1, .. } => rv64a::lr(ctx, width, rd, rs1),
        Op::Sc { width, rd, rs1, rs2, .. } => rv64a::sc(ctx, width, rd, rs1, rs2),
        Op::Amo { op, width, rd, rs1, rs2, .. } => rv64a::amo(ctx, op, width, rd, rs1, rs2),
        Op::Fp(ref f) => rvf::fp(ctx, f),
        Op::Bit(ref i) => bitmanip::bit(ctx, i),
    }
}

/// The instruction at `pc` and its length: one 16-bit parcel, or two for a 32-bit one.
pub(super) fn fetch_insn(fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>, pc: u64) -> Result<(u32, u64), Fault> {
    let lo = fetch(pc)?;
    if lo & 3 != 3 {
        return Ok((lo as u32, 2));
    }
    fetch(pc.wrapping_add(2)).map(|hi| (lo as u32 | (hi as u32) << 16, 4))
}

/// Translate the block at `pc` (see `GuestCpu::translate_block`).
pub fn translate_block(
    pc: u64,
    tb_flags: u32,
    limits: TbLimits,
    fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>,
    b: &mut Builder,
) {
    let privilege = (tb_flags & tbflags::PRIV_MASK) as u64;
    let max = limits.max_insns.max(1);
    let page = pc & PAGE_MASK;
    let mut cur = pc;
    let mut n = 0u32;
    let mut fp_ok = [None; 2];
    let mut scan = spin::Scan::default();
    loop {
        // Fetch. A failing fetch of the first instruction raises its fault
        // (tval = the missing parcel); later in the block, stop before the
        // instruction so it starts the next block.
        let (insn, len) = match fetch_insn(fetch, cur) {
            Ok(v) => v,
            Err(f) if n == 0 => {
                b.insn_start(cur);
                let t = b.const64(f.tval);
                b.exit(Exit::Raise { cause: f.cause, tval: t });
                n = 1;
                break;
            }
            Err(_) => {
                b.exit(Exit::Goto(cur));
                break;
            }
        };
        b.insn_start(cur);
        n += 1;
        let (op, _) = decode(insn);
        let spins = matches!(op, Op::Branch { .. } | Op::Jal { .. }) && scan.closes_spin(pc, cur, &op, fetch);
        if spins {
            zifencei::request_bits(b, flush::YIELD);
        }
        let mark = b.len();
        let mut ctx = Ctx { b, pc: cur, len, insn, privilege, flags: tb_flags, fp_ok: &mut fp_ok };
        let flow = translate_op(&mut ctx, &op);
        if spins {
            b.unchain_exits(mark);
        }
        scan.add(&op);
        cur = cur.wrapping_add(len);
        if flow == Flow::End {
            break;
        }
        if n >= max || cur & PAGE_MASK != page || b.len() > MAX_IR_INSTS {
            b.exit(Exit::Goto(cur));
            break;
        }
    }
    b.set_extent(n, cur.wrapping_sub(pc) as u32);
}

#[cfg(test)]
mod tests_amo;
#[cfg(test)]
mod tests_fp;
#[cfg(test)]
mod tests_int;
#[cfg(test)]
mod tests_rvc;
#[cfg(test)]
mod tests_sys;
