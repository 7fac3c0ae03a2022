//! A extension: LR/SC with a reservation and the AMOs.
//!
//! LR records the address and the loaded value in the CPU state; SC succeeds
//! iff the reservation address matches and memory still holds the reserved
//! value (QEMU's approach), and always clears the reservation.
//!
//! AMOs are one IR `Atomic` op each, and SC is an atomic compare-and-swap against
//! the value LR loaded, so both stay atomic with one host thread per vCPU.
//! Misaligned SC/AMO raise store/AMO-address-misaligned (6) from an explicit
//! check; misaligned LR raises load-address-misaligned (4) through the aligned
//! memory op. Atomics need write permission and fault with the store/AMO cause
//! (7, 15), even an SC whose compare fails.

use kite_ir::{BinOp, Cond, Exit, MemOp, RmwOp, Temp, Ty};

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
    let reserved = ctx.b.ld_state(Ty::I64, offsets::RES_VAL);
    let old = ctx.b.cas(addr, reserved, src, mop(width));
    let failed = ctx.b.setcond(Cond::Ne, old, reserved);
    ctx.b.mov(result, failed);
    ctx.b.set_label(fail);
    ctx.set_gpr(rd, result);
    Flow::Next
}

pub(super) fn amo(ctx: &mut Ctx, op: AmoOp, width: Width, rd: Reg, rs1: Reg, rs2: Reg) -> Flow {
    let addr = ctx.gpr(rs1);
    check_aligned(ctx, addr, width);
    let src = ctx.gpr(rs2);
    let word = width == Width::W;
    // W: operate on the low word (the IR op works at the access width either way).
    let src = if word { trunc32(ctx, src) } else { src };
    let rmw = match op {
        AmoOp::Swap => RmwOp::Xchg,
        AmoOp::Add => RmwOp::Add,
        AmoOp::Xor => RmwOp::Xor,
        AmoOp::And => RmwOp::And,
        AmoOp::Or => RmwOp::Or,
        AmoOp::Min => RmwOp::MinS,
        AmoOp::Max => RmwOp::MaxS,
        AmoOp::Minu => RmwOp::MinU,
        AmoOp::Maxu => RmwOp::MaxU,
    };
    let old = ctx.b.atomic(rmw, addr, src, mop(width));
    let v = if word { sext32(ctx, old) } else { old };
    ctx.set_gpr(rd, v);
    Flow::Next
}
