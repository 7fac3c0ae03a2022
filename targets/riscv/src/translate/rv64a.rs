//! A extension: LR/SC with a reservation and the AMOs.
//!
//! LR records the address and the loaded value in the CPU state; SC succeeds
//! iff the reservation address matches and memory still holds the reserved
//! value (QEMU's approach), and always clears the reservation.
//!
//! AMOs are an aligned load, the operation and an aligned store. That is
//! atomic only while one vCPU runs at a time; MTTCG will need an atomic
//! read-modify-write IR op. Misaligned SC/AMO raise store/AMO-address-
//! misaligned (6) from an explicit check, since the load half would otherwise
//! report a load fault; misaligned LR raises load-address-misaligned (4)
//! through the aligned memory op. The read half of an AMO or SC is an `rmw`
//! load, so it needs write permission and faults with the store/AMO cause (7).

use kite_ir::{BinOp, Cond, Exit, MemOp, Temp, Ty};

use super::rv64i::{sext32, trunc32};
use super::{Ctx, Flow};
use crate::cpu::{cause, offsets, NO_RESERVATION};
use crate::decode::{AmoOp, Reg, Width};

fn mop(width: Width) -> MemOp {
    MemOp::new(width.mem_size(), true).aligned()
}

/// Raise store/AMO-misaligned unless `addr` is naturally aligned for `width`.
fn check_aligned(ctx: &mut Ctx, addr: Temp, width: Width) {
    let m = ctx.b.const64(width.mem_size().bytes() as u64 - 1);
    let low = ctx.b.bin(BinOp::And, addr, m);
    let zero = ctx.b.const64(0);
    let ok = ctx.b.label();
    ctx.b.brcond(Cond::Eq, low, zero, ok);
    ctx.b.exit(Exit::Raise { cause: cause::STORE_MISALIGNED, tval: addr });
    ctx.b.set_label(ok);
}

pub(super) fn lr(ctx: &mut Ctx, width: Width, rd: Reg, rs1: Reg) -> Flow {
    let addr = ctx.gpr(rs1);
    // W: the value is kept sign-extended, in rd and in the reservation.
    let v = ctx.b.load(Ty::I64, addr, mop(width));
    ctx.b.st_state(addr, offsets::RES_ADDR);
    ctx.b.st_state(v, offsets::RES_VAL);
    ctx.set_gpr(rd, v);
    Flow::Next
}

pub(super) fn sc(ctx: &mut Ctx, width: Width, rd: Reg, rs1: Reg, rs2: Reg) -> Flow {
    let addr = ctx.gpr(rs1);
    check_aligned(ctx, addr, width);
    let src = ctx.gpr(rs2);
    let res = ctx.b.ld_state(Ty::I64, offsets::RES_ADDR);
    let none = ctx.b.const64(NO_RESERVATION);
    ctx.b.st_state(none, offsets::RES_ADDR);
    let result = ctx.b.const64(1);
    let fail = ctx.b.label();
    ctx.b.brcond(Cond::Ne, addr, res, fail);
    let cur = ctx.b.load(Ty::I64, addr, mop(width).rmw());
    let reserved = ctx.b.ld_state(Ty::I64, offsets::RES_VAL);
    ctx.b.brcond(Cond::Ne, cur, reserved, fail);
    ctx.b.store(src, addr, mop(width));
    let zero = ctx.b.const64(0);
    ctx.b.mov(result, zero);
    ctx.b.set_label(fail);
    ctx.set_gpr(rd, result);
    Flow::Next
}

pub(super) fn amo(ctx: &mut Ctx, op: AmoOp, width: Width, rd: Reg, rs1: Reg, rs2: Reg) -> Flow {
    let addr = ctx.gpr(rs1);
    check_aligned(ctx, addr, width);
    let src = ctx.gpr(rs2);
    let word = width == Width::W;
    let (ty, src) = if word { (Ty::I32, trunc32(ctx, src)) } else { (Ty::I64, src) };
    let old = ctx.b.load(ty, addr, mop(width).rmw());
    let new = match op {
        AmoOp::Swap => src,
        AmoOp::Add => ctx.b.bin(BinOp::Add, old, src),
        AmoOp::Xor => ctx.b.bin(BinOp::Xor, old, src),
        AmoOp::And => ctx.b.bin(BinOp::And, old, src),
        AmoOp::Or => ctx.b.bin(BinOp::Or, old, src),
        AmoOp::Min => ctx.b.bin(BinOp::MinS, old, src),
        AmoOp::Max => ctx.b.bin(BinOp::MaxS, old, src),
        AmoOp::Minu => ctx.b.bin(BinOp::MinU, old, src),
        AmoOp::Maxu => ctx.b.bin(BinOp::MaxU, old, src),
    };
    ctx.b.store(new, addr, mop(width));
    let v = if word { sext32(ctx, old) } else { old };
    ctx.set_gpr(rd, v);
    Flow::Next
}
