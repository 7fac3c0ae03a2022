//! Zba, Zbb, Zbs, Zicond and the Zicbom/Zicboz cache-block operations, all
//! as plain IR (no helpers).
//!
//! *W forms compute on I32 temps and sign- or zero-extend as the spec says
//! (clzw/ctzw/cpopw results are small, so zero-extension is exact).
//! Cache blocks are 64 bytes (advertise riscv,cbom-block-size and
//! riscv,cboz-block-size = 64). Permission rules: below M, the menvcfg bits
//! CBIE (inval), CBCFE (clean/flush) and CBZE (zero) must be set, and in U
//! the senvcfg bits too, else illegal instruction. clean/flush/inval have no
//! effect on memory (no caches are modelled) but still check the address:
//! a one-byte read-modify-write probe at x[rs1], which needs write
//! permission and faults as a store, as a CMO fault must.

use kite_ir::{BinOp, Cond, MemOp, MemSize, Temp, Ty, UnOp};

use std::mem::offset_of;

use super::{Ctx, Flow};
use crate::cpu::{RiscvCpu, PRV_M, PRV_U};
use crate::csr::Csrs;
use crate::decode_ext::{BitInsn, BitOp};

/// Cache-block size in bytes.
pub const CBO_BLOCK: u64 = 64;

/// envcfg bits.
pub const ENVCFG_CBIE: u64 = 3 << 4;
pub const ENVCFG_CBCFE: u64 = 1 << 6;
pub const ENVCFG_CBZE: u64 = 1 << 7;

const MENVCFG: u32 = (offset_of!(RiscvCpu, csr) + offset_of!(Csrs, menvcfg)) as u32;
const SENVCFG: u32 = (offset_of!(RiscvCpu, csr) + offset_of!(Csrs, senvcfg)) as u32;

/// The second operand: x[rs2] or the immediate shift amount.
fn src2(ctx: &mut Ctx, i: &BitInsn) -> Temp {
    match i.shamt {
        Some(s) => ctx.b.const64(s as u64),
        None => ctx.gpr(i.rs2),
    }
}

fn zext32(ctx: &mut Ctx, v: Temp) -> Temp {
    ctx.b.ext(UnOp::Zext32, Ty::I64, v)
}

/// A 32-bit unary op (clzw/ctzw/cpopw) with a zero-extended result.
fn unary_w(ctx: &mut Ctx, op: UnOp, a: Temp) -> Temp {
    let a32 = ctx.b.ext(UnOp::Trunc, Ty::I32, a);
    let r = ctx.b.un(op, a32);
    ctx.b.ext(UnOp::Zext32, Ty::I64, r)
}

/// A 32-bit rotate with a sign-extended result.
fn rotate_w(ctx: &mut Ctx, op: BinOp, a: Temp, b: Temp) -> Temp {
    let a32 = ctx.b.ext(UnOp::Trunc, Ty::I32, a);
    let b32 = ctx.b.ext(UnOp::Trunc, Ty::I32, b);
    let r = ctx.b.bin(op, a32, b32);
    ctx.b.ext(UnOp::Sext32, Ty::I64, r)
}

/// orc.b: each byte becomes 0xff if non-zero, else 0.
fn orc_b(ctx: &mut Ctx, x: Temp) -> Temp {
    // Per byte, (x & 0x7f) + 0x7f carries into bit 7 iff the low 7 bits are
    // non-zero (and never into the next byte); OR x for bit 7 itself.
    let m = ctx.b.const64(0x7f7f_7f7f_7f7f_7f7f);
    let low = ctx.b.bin(BinOp::And, x, m);
    let sum = ctx.b.bin(BinOp::Add, low, m);
    let any = ctx.b.bin(BinOp::Or, sum, x);
    let hi = ctx.b.const64(0x8080_8080_8080_8080);
    let h = ctx.b.bin(BinOp::And, any, hi);
    // 0x80 -> 0xff per byte: h - (h >> 7) gives 0x7f without borrows, OR h.
    let k7 = ctx.b.const64(7);
    let ones = ctx.b.bin(BinOp::Shr, h, k7);
    let fill = ctx.b.bin(BinOp::Sub, h, ones);
    ctx.b.bin(BinOp::Or, fill, h)
}

/// Raise illegal instruction unless `mask` bits are set in menvcfg (below M)
/// and in senvcfg (in U).
fn cbo_check(ctx: &mut Ctx, mask: u64) {
    if ctx.privilege == PRV_M {
        return;
    }
    let fail = ctx.b.label();
    let cont = ctx.b.label();
    let regs: &[u32] = if ctx.privilege == PRV_U { &[MENVCFG, SENVCFG] } else { &[MENVCFG] };
    let zero = ctx.b.const64(0);
    let m = ctx.b.const64(mask);
    for &off in regs {
        let v = ctx.b.ld_state(Ty::I64, off);
        let bits = ctx.b.bin(BinOp::And, v, m);
        ctx.b.brcond(Cond::Eq, bits, zero, fail);
    }
    ctx.b.br(cont);
    ctx.b.set_label(fail);
    let _ = ctx.illegal();
    ctx.b.set_label(cont);
}

pub(super) fn bit(ctx: &mut Ctx, i: &BitInsn) -> Flow {
    use BitOp::*;
    let r = match i.op {
        CboInval | CboClean | CboFlush => {
            cbo_check(ctx, if i.op == CboInval { ENVCFG_CBIE } else { ENVCFG_CBCFE });
            let a = ctx.gpr(i.rs1);
            let mop = MemOp { rmw: true, ..MemOp::new(MemSize::B1, false) };
            ctx.b.load(Ty::I64, a, mop);
            return Flow::Next;
        }
        CboZero => {
            cbo_check(ctx, ENVCFG_CBZE);
            let a = ctx.gpr(i.rs1);
            let mask = ctx.b.const64(!(CBO_BLOCK - 1));
            let base = ctx.b.bin(BinOp::And, a, mask);
            let zero = ctx.b.const64(0);
            for k in 0..CBO_BLOCK / 8 {
                let off = ctx.b.const64(k * 8);
                let addr = ctx.b.bin(BinOp::Add, base, off);
                ctx.b.store(zero, addr, MemOp::new(MemSize::B8, false));
            }
            return Flow::Next;
        }
        _ => {
            let a = ctx.gpr(i.rs1);
            let b = src2(ctx, i);
            compute(ctx, i.op, a, b)
        }
    };
    ctx.set_gpr(i.rd, r);
    Flow::Next
}

fn compute(ctx: &mut Ctx, op: BitOp, a: Temp, b: Temp) -> Temp {
    use BitOp::*;
    let shadd = |ctx: &mut Ctx, a: Temp, n: u64| {
        let k = ctx.b.const64(n);
        ctx.b.bin(BinOp::Shl, a, k)
    };
    match op {
        Sh1add | Sh2add | Sh3add => {
            let n = match op {
                Sh1add => 1,
                Sh2add => 2,
                _ => 3,
            };
            let s = shadd(ctx, a, n);
            ctx.b.bin(BinOp::Add, s, b)
        }
        AddUw | Sh1addUw | Sh2addUw | Sh3addUw => {
            let n = match op {
                AddUw => 0,
                Sh1addUw => 1,
                Sh2addUw => 2,
                _ => 3,
            };
            let z = zext32(ctx, a);
            let s = shadd(ctx, z, n);
            ctx.b.bin(BinOp::Add, s, b)
        }
        SlliUw => {
            let z = zext32(ctx, a);
            ctx.b.bin(BinOp::Shl, z, b)
        }
        Andn => {
            let nb = ctx.b.un(UnOp::Not, b);
            ctx.b.bin(BinOp::And, a, nb)
        }
        Orn => {
            let nb = ctx.b.un(UnOp::Not, b);
            ctx.b.bin(BinOp::Or, a, nb)
        }
        Xnor => {
            let x = ctx.b.bin(BinOp::Xor, a, b);
            ctx.b.un(UnOp::Not, x)
        }
        Clz => ctx.b.un(UnOp::Clz, a),
        Ctz => ctx.b.un(UnOp::Ctz, a),
        Cpop => ctx.b.un(UnOp::Popcnt, a),
        Clzw => unary_w(ctx, UnOp::Clz, a),
        Ctzw => unary_w(ctx, UnOp::Ctz, a),
        Cpopw => unary_w(ctx, UnOp::Popcnt, a),
        Max => ctx.b.bin(BinOp::MaxS, a, b),
        Maxu => ctx.b.bin(BinOp::MaxU, a, b),
        Min => ctx.b.bin(BinOp::MinS, a, b),
        Minu => ctx.b.bin(BinOp::MinU, a, b),
        SextB => ctx.b.ext(UnOp::Sext8, Ty::I64, a),
        SextH => ctx.b.ext(UnOp::Sext16, Ty::I64, a),
        ZextH => ctx.b.ext(UnOp::Zext16, Ty::I64, a),
        Rol => ctx.b.bin(BinOp::Rotl, a, b),
        Ror => ctx.b.bin(BinOp::Rotr, a, b),
        Rolw => rotate_w(ctx, BinOp::Rotl, a, b),
        Rorw => rotate_w(ctx, BinOp::Rotr, a, b),
        OrcB => orc_b(ctx, a),
        Rev8 => ctx.b.un(UnOp::Bswap, a),
        Bclr | Bext | Binv | Bset => {
            let one = ctx.b.const64(1);
            match op {
                Bext => {
                    let s = ctx.b.bin(BinOp::Shr, a, b);
                    ctx.b.bin(BinOp::And, s, one)
                }
                _ => {
                    let m = ctx.b.bin(BinOp::Shl, one, b);
                    match op {
                        Bclr => {
                            let nm = ctx.b.un(UnOp::Not, m);
                            ctx.b.bin(BinOp::And, a, nm)
                        }
                        Binv => ctx.b.bin(BinOp::Xor, a, m),
                        _ => ctx.b.bin(BinOp::Or, a, m),
                    }
                }
            }
        }
        CzeroEqz | CzeroNez => {
            let zero = ctx.b.const64(0);
            if op == CzeroEqz {
                ctx.b.select(b, a, zero)
            } else {
                ctx.b.select(b, zero, a)
            }
        }
        // Handled in `bit` (they do not produce a register value).
        CboInval | CboClean | CboFlush | CboZero => ctx.b.const64(0),
    }
}
