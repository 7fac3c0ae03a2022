//! RV64I: upper immediates, jumps, branches, loads/stores and integer ALU ops.
//!
//! *W operations truncate their operands to I32 temps, operate at 32 bits
//! (IR shift amounts are taken modulo the type width, which is exactly the
//! RISC-V rule for both widths) and sign-extend the result back to 64 bits.

use kite_ir::{BinOp, Cond, Exit, MemOp, Temp, Ty, UnOp};

use super::{Ctx, Flow};
use crate::decode::{AluOp, BranchCond, Reg, Width};

pub(super) fn lui(ctx: &mut Ctx, rd: Reg, imm: i64) -> Flow {
    let v = ctx.b.const64(imm as u64);
    ctx.set_gpr(rd, v);
    Flow::Next
}

pub(super) fn auipc(ctx: &mut Ctx, rd: Reg, imm: i64) -> Flow {
    let v = ctx.b.const64(ctx.pc.wrapping_add(imm as u64));
    ctx.set_gpr(rd, v);
    Flow::Next
}

pub(super) fn jal(ctx: &mut Ctx, rd: Reg, imm: i64) -> Flow {
    let link = ctx.b.const64(ctx.next_pc());
    ctx.set_gpr(rd, link);
    ctx.b.exit(Exit::Goto(ctx.pc.wrapping_add(imm as u64)));
    Flow::End
}

pub(super) fn jalr(ctx: &mut Ctx, rd: Reg, rs1: Reg, imm: i64) -> Flow {
    // Compute the target before writing rd (rd may equal rs1).
    let sum = ctx.addr(rs1, imm);
    let mask = ctx.b.const64(!1);
    let target = ctx.b.bin(BinOp::And, sum, mask);
    let link = ctx.b.const64(ctx.next_pc());
    ctx.set_gpr(rd, link);
    // The ISA's return-address hints: no link and not through ra/t0 is a plain jump
    // (a switch's jump table), neither a call nor a return.
    ctx.b.set_dispatch(rd == 0 && !matches!(rs1, 1 | 5));
    ctx.b.exit(Exit::Indirect(target));
    Flow::End
}

pub(super) fn branch(ctx: &mut Ctx, cond: BranchCond, rs1: Reg, rs2: Reg, imm: i64) -> Flow {
    let a = ctx.gpr(rs1);
    let b = ctx.gpr(rs2);
    let c = match cond {
        BranchCond::Eq => Cond::Eq,
        BranchCond::Ne => Cond::Ne,
        BranchCond::Lt => Cond::LtS,
        BranchCond::Ge => Cond::GeS,
        BranchCond::Ltu => Cond::LtU,
        BranchCond::Geu => Cond::GeU,
    };
    let taken = ctx.b.label();
    ctx.b.brcond(c, a, b, taken);
    ctx.b.exit(Exit::Goto(ctx.next_pc()));
    ctx.b.set_label(taken);
    ctx.b.exit(Exit::Goto(ctx.pc.wrapping_add(imm as u64)));
    Flow::End
}

pub(super) fn load(ctx: &mut Ctx, width: Width, unsigned: bool, rd: Reg, rs1: Reg, imm: i64) -> Flow {
    let addr = ctx.addr(rs1, imm);
    // Plain loads may be misaligned (they succeed, as in QEMU).
    let v = ctx.b.load(Ty::I64, addr, MemOp::new(width.mem_size(), !unsigned));
    ctx.set_gpr(rd, v);
    Flow::Next
}

pub(super) fn store(ctx: &mut Ctx, width: Width, rs1: Reg, rs2: Reg, imm: i64) -> Flow {
    let addr = ctx.addr(rs1, imm);
    let v = ctx.gpr(rs2);
    ctx.b.store(v, addr, MemOp::new(width.mem_size(), false));
    Flow::Next
}

/// Sign-extend a 32-bit temp into a 64-bit one.
pub(super) fn sext32(ctx: &mut Ctx, v: Temp) -> Temp {
    ctx.b.ext(UnOp::Sext32, Ty::I64, v)
}

/// Truncate a 64-bit temp to 32 bits.
pub(super) fn trunc32(ctx: &mut Ctx, v: Temp) -> Temp {
    ctx.b.ext(UnOp::Trunc, Ty::I32, v)
}

/// Integer ALU op of RV64I: `rd = rs1 op b` (`b` is rs2 or the immediate).
pub(super) fn alu(ctx: &mut Ctx, op: AluOp, word: bool, rd: Reg, rs1: Reg, b: Temp) -> Flow {
    let a = ctx.gpr(rs1);
    let (a, b) = if word { (trunc32(ctx, a), trunc32(ctx, b)) } else { (a, b) };
    let v = match op {
        AluOp::Slt => ctx.b.setcond(Cond::LtS, a, b),
        AluOp::Sltu => ctx.b.setcond(Cond::LtU, a, b),
        _ => {
            let bop = match op {
                AluOp::Add => BinOp::Add,
                AluOp::Sub => BinOp::Sub,
                AluOp::Sll => BinOp::Shl,
                AluOp::Srl => BinOp::Shr,
                AluOp::Sra => BinOp::Sar,
                AluOp::Xor => BinOp::Xor,
                AluOp::Or => BinOp::Or,
                AluOp::And => BinOp::And,
                // M ops are routed to rv64m; reaching here is a decoder bug,
                // answered safely with illegal instruction.
                _ => return ctx.illegal(),
            };
            ctx.b.bin(bop, a, b)
        }
    };
    let v = if word { sext32(ctx, v) } else { v };
    ctx.set_gpr(rd, v);
    Flow::Next
}
