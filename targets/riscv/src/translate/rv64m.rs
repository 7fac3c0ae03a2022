//! M extension: multiply and divide. The IR's DivS/DivU/RemS/RemU already
//! have the RISC-V results for division by zero and signed overflow, at both
//! widths; the *W forms operate on I32 temps (the low 32 bits interpreted as
//! signed or unsigned 32-bit values) and sign-extend the 32-bit result.

use kite_ir::{BinOp, Temp};

use super::rv64i::{sext32, trunc32};
use super::{Ctx, Flow};
use crate::decode::{AluOp, Reg};

/// Whether `op` belongs to the M extension.
pub(super) fn is_m(op: AluOp) -> bool {
    matches!(
        op,
        AluOp::Mul | AluOp::Mulh | AluOp::Mulhsu | AluOp::Mulhu | AluOp::Div | AluOp::Divu | AluOp::Rem | AluOp::Remu
    )
}

pub(super) fn muldiv(ctx: &mut Ctx, op: AluOp, word: bool, rd: Reg, rs1: Reg, b: Temp) -> Flow {
    let bop = match op {
        AluOp::Mul => BinOp::Mul,
        AluOp::Mulh if !word => BinOp::MulHs,
        AluOp::Mulhsu if !word => BinOp::MulHsu,
        AluOp::Mulhu if !word => BinOp::MulHu,
        AluOp::Div => BinOp::DivS,
        AluOp::Divu => BinOp::DivU,
        AluOp::Rem => BinOp::RemS,
        AluOp::Remu => BinOp::RemU,
        // No mulh*w exists; the decoder never produces it.
        _ => return ctx.illegal(),
    };
    let a = ctx.gpr(rs1);
    let v = if word {
        let (a, b) = (trunc32(ctx, a), trunc32(ctx, b));
        let r = ctx.b.bin(bop, a, b);
        sext32(ctx, r)
    } else {
        ctx.b.bin(bop, a, b)
    };
    ctx.set_gpr(rd, v);
    Flow::Next
}
