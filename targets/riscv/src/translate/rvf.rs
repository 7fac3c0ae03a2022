//! F and D: loads/stores, moves and sign injection as plain IR; everything
//! that rounds or raises flags is one call to [`FP_HELPER`] (SoftFloat, see
//! `crate::fpu`), except add/sub/mul/div/sqrt and the fused multiply-adds in
//! round-to-nearest-even: those run as host arithmetic ([`kite_ir::Inst::Fp`])
//! whenever the result cannot differ from SoftFloat's, and fall back to the
//! helper on a cold path otherwise (see [`calc`]).
//!
//! mstatus.FS: the TB flags carry FS ([`tbflags::FS_MASK`]). With FS = Off
//! every FP instruction is illegal (decided at translation time). In a block
//! translated with FS != Dirty, each FP register write also sets FS = Dirty
//! in mstatus and in `header.flags` (so the next lookup picks the Dirty
//! translation); the helper does the same when it raises fflags. SD is
//! derived from FS when mstatus is read.
//!
//! Pitfalls: single values live NaN-boxed; sign injection must unbox
//! (improperly boxed -> canonical NaN) but fmv.x.w and fsw take the low 32
//! bits as they are. The dynamic rounding mode is checked at run time by the
//! helper (frm >= 5 -> illegal instruction), so the helper may exit.

use std::mem::offset_of;

use kite_ir::{BinOp, Cond, Effects, Helper, MemOp, MemSize, Temp, Ty, UnOp};

use super::{Ctx, Flow};
use crate::cpu::{cause, offsets, tbflags, RiscvCpu};
use crate::csr::{mstatus as ms, Csrs};
use crate::decode::Reg;
use crate::decode_ext::{FpInsn, FpKind};
use crate::fpu::{self, BOX, CANON_S};

/// Offset of mstatus in the CPU state.
const MSTATUS: u32 = (offset_of!(RiscvCpu, csr) + offset_of!(Csrs, mstatus)) as u32;

/// The CSRs' span in the CPU state.
const CSRS: u32 = offset_of!(RiscvCpu, csr) as u32;

/// Offset of fcsr (fflags in bits 0-4, frm in 5-7).
const FCSR: u32 = (offset_of!(RiscvCpu, csr) + offset_of!(Csrs, fcsr)) as u32;

/// Offset of FP register `r`.
fn f_off(r: Reg) -> u32 {
    offsets::F + 8 * (r as u32 & 31)
}

/// Control word of the helper: op (bits 0-7), dbl (8), rm (9-11), insn (32-63).
fn ctl(op: u8, dbl: bool, rm: u8, insn: u32) -> u64 {
    op as u64 | (dbl as u64) << 8 | ((rm & 7) as u64) << 9 | (insn as u64) << 32
}

/// `a`, `b`, `c`: register bits; `ctl`: see [`ctl`]. Returns the result bits.
unsafe extern "C" fn helper_fp(cpu: *mut u8, a: u64, b: u64, c: u64, ctl: u64) -> u64 {
    // SAFETY: helpers receive the state pointer of the RiscvCpu that the block
    // was translated for (GuestCpu contract), and nothing else holds a
    // reference to it during the call.
    let cpu = unsafe { &mut *(cpu as *mut RiscvCpu) };
    let op = ctl as u8;
    let dbl = ctl & (1 << 8) != 0;
    let mut rm = ((ctl >> 9) & 7) as u8;
    if rm == 7 {
        rm = ((cpu.csr.fcsr >> 5) & 7) as u8;
    }
    if rm > 4 {
        cpu.raise(cause::ILLEGAL_INSN, ctl >> 32);
        return 0;
    }
    // Host-FPU fast path (see `fpu::exec_host`): round-to-nearest-even with
    // NX already set. Only ops ADD..=NMADD, which write an f register, so the
    // caller's register write marks FS dirty as SoftFloat's NX would have.
    if rm == 0 && op <= fpu::op::NMADD && cpu.csr.fcsr & fpu::flags::NX as u64 != 0 {
        if let Some(r) = fpu::exec_host(op, dbl, a, b, c) {
            return r;
        }
    }
    let (r, flags) = fpu::exec(op, dbl, a, b, c, rm);
    if flags != 0 {
        cpu.csr.fcsr |= flags as u64;
        fpu::mark_dirty(cpu);
    }
    r
}

pub(crate) static FP_HELPER: Helper =
    Helper { name: "riscv_fp", func: helper_fp, nargs: 4, ret: Some(Ty::I64), effects: Effects::ALL };

/// The same helper as the fallback of an inline fast path (see [`calc`]).
/// It touches only the CSRs (fcsr, mstatus) and the header (flags, an exception).
pub(crate) static FP_SLOW_HELPER: Helper = Helper {
    name: "riscv_fp_slow",
    func: helper_fp,
    nargs: 4,
    ret: Some(Ty::I64),
    effects: Effects { cold: true, state_range: Some((CSRS, CSRS + size_of::<Csrs>() as u32)), ..Effects::ALL },
};

impl Ctx<'_> {
    fn fpr(&mut self, r: Reg) -> Temp {
        self.b.ld_state(Ty::I64, f_off(r))
    }

    /// Write FP register `r`, marking the FP state dirty first if the block
    /// was translated with FS != Dirty.
    fn set_fpr(&mut self, r: Reg, v: Temp) {
        if self.flags & tbflags::FS_MASK != tbflags::FS_MASK {
            let st = self.b.ld_state(Ty::I64, MSTATUS);
            let fs = self.b.const64(ms::FS);
            let st = self.b.bin(BinOp::Or, st, fs);
            self.b.st_state(st, MSTATUS);
            let fl = self.b.ld_state(Ty::I32, kite_ir::state::offsets::FLAGS);
            let bits = self.b.const32(tbflags::FS_MASK);
            let fl = self.b.bin(BinOp::Or, fl, bits);
            self.b.st_state(fl, kite_ir::state::offsets::FLAGS);
        }
        self.b.st_state(v, f_off(r));
    }

    /// Single from a register: an improperly boxed value reads as the
    /// canonical NaN (the result stays in boxed form).
    fn unbox(&mut self, v: Temp) -> Temp {
        let k32 = self.b.const64(32);
        let hi = self.b.bin(BinOp::Shr, v, k32);
        let ones = self.b.const64(0xffff_ffff);
        let ok = self.b.setcond(Cond::Eq, hi, ones);
        let canon = self.b.const64(BOX | CANON_S as u64);
        self.b.select(ok, v, canon)
    }
}

/// Whether the block's TB flags allow FP instructions (FS != Off).
pub(super) fn fp_enabled(flags: u32) -> bool {
    flags & tbflags::FS_MASK != 0
}

pub(super) fn fp(ctx: &mut Ctx, f: &FpInsn) -> Flow {
    if !fp_enabled(ctx.flags) {
        return ctx.illegal();
    }
    let size = if f.dbl { MemSize::B8 } else { MemSize::B4 };
    match f.kind {
        FpKind::Load => {
            let addr = ctx.addr(f.rs1, f.imm);
            let mut v = ctx.b.load(Ty::I64, addr, MemOp::new(size, false));
            if !f.dbl {
                let bx = ctx.b.const64(BOX);
                v = ctx.b.bin(BinOp::Or, v, bx);
            }
            ctx.set_fpr(f.rd, v);
        }
        FpKind::Store => {
            let addr = ctx.addr(f.rs1, f.imm);
            let v = ctx.fpr(f.rs2);
            ctx.b.store(v, addr, MemOp::new(size, false));
        }
        FpKind::Calc(op) => calc(ctx, f, op),
        FpKind::CalcToX(op) => {
            let r = call(ctx, f, op, true);
            ctx.set_gpr(f.rd, r);
        }
        FpKind::CalcFromX(op) => {
            let r = call(ctx, f, op, false);
            ctx.set_fpr(f.rd, r);
        }
        FpKind::Sgnj(k) => {
            let (mut a, mut b) = (ctx.fpr(f.rs1), ctx.fpr(f.rs2));
            if !f.dbl {
                a = ctx.unbox(a);
                b = ctx.unbox(b);
            }
            let sign = ctx.b.const64(if f.dbl { 1 << 63 } else { 1 << 31 });
            let r = match k {
                0 | 1 => {
                    let not_sign = ctx.b.un(UnOp::Not, sign);
                    let mag = ctx.b.bin(BinOp::And, a, not_sign);
                    let src = if k == 1 { ctx.b.un(UnOp::Not, b) } else { b };
                    let s = ctx.b.bin(BinOp::And, src, sign);
                    ctx.b.bin(BinOp::Or, mag, s)
                }
                _ => {
                    let s = ctx.b.bin(BinOp::And, b, sign);
                    ctx.b.bin(BinOp::Xor, a, s)
                }
            };
            ctx.set_fpr(f.rd, r);
        }
        FpKind::MvToX => {
            let mut v = ctx.fpr(f.rs1);
            if !f.dbl {
                v = ctx.b.ext(UnOp::Sext32, Ty::I64, v);
            }
            ctx.set_gpr(f.rd, v);
        }
        FpKind::MvFromX => {
            let mut v = ctx.gpr(f.rs1);
            if !f.dbl {
                let z = ctx.b.ext(UnOp::Zext32, Ty::I64, v);
                let bx = ctx.b.const64(BOX);
                v = ctx.b.bin(BinOp::Or, z, bx);
            }
            ctx.set_fpr(f.rd, v);
        }
    }
    Flow::Next
}

/// An arithmetic op (`fpu::op::ADD..=NMADD`): inline host arithmetic where its result
/// is the architectural one, the helper otherwise.
///
/// The host computes in round-to-nearest-even without keeping flags, so its result is
/// used only when nothing else could differ (as `fpu::exec_host` decides): the rounding
/// mode is RNE (static, or dynamic with frm = RNE), NX is already set in fflags (an
/// inexact result raises nothing new), every single input is properly NaN-boxed, and
/// the result is finite and normal with a magnitude above the smallest normal (so no
/// NaN, infinity, overflow, underflow, invalid or divide-by-zero case). Everything else
/// takes the helper on a cold path; a guest that clears fflags often runs there until
/// an inexact result sets NX again.
///
/// Both paths write f[rd] themselves (no temp merges after the branch, so that the
/// optimising backend can keep the result in a float register).
fn calc(ctx: &mut Ctx, f: &FpInsn, op: u8) {
    let Some((kind, neg_a, neg_c)) = fpu::host_op(op).filter(|_| f.rm == 0 || f.rm == 7) else {
        let r = call(ctx, f, op, true);
        ctx.set_fpr(f.rd, r);
        return;
    };
    let arity = kind.arity();
    let regs = [ctx.fpr(f.rs1), ctx.fpr(f.rs2), ctx.fpr(f.rs3)];
    let ins = &regs[..arity];
    let (ty, sign, min_normal, inf) = if f.dbl {
        (Ty::I64, 1u64 << 63, 0x0010_0000_0000_0000u64, 0x7ff0_0000_0000_0000u64)
    } else {
        (Ty::I32, 1 << 31, 0x0080_0000, 0x7f80_0000)
    };
    let mut v = regs;
    if !f.dbl {
        for t in &mut v[..arity] {
            *t = ctx.b.ext(UnOp::Trunc, Ty::I32, *t);
        }
    }
    for (k, neg) in [(0, neg_a), (2, neg_c)] {
        if neg {
            let s = ctx.b.const_(ty, sign);
            v[k] = ctx.b.bin(BinOp::Xor, v[k], s);
        }
    }
    let r = ctx.b.fp(kind, &v[..arity]);
    // finite and normal above the smallest normal: (|r| - (min + 1)) <u (inf - min - 1)
    let mag = ctx.b.const_(ty, sign - 1);
    let m = ctx.b.bin(BinOp::And, r, mag);
    let lo = ctx.b.const_(ty, min_normal + 1);
    let m = ctx.b.bin(BinOp::Sub, m, lo);
    let span = ctx.b.const_(ty, inf - min_normal - 1);
    let mut ok = ctx.b.setcond(Cond::LtU, m, span);
    if !f.dbl {
        ok = ctx.b.ext(UnOp::Zext32, Ty::I64, ok);
        let mut all = ins[0];
        for &t in &ins[1..] {
            all = ctx.b.bin(BinOp::And, all, t);
        }
        let k32 = ctx.b.const64(32);
        let hi = ctx.b.bin(BinOp::Shr, all, k32);
        let ones = ctx.b.const64(0xffff_ffff);
        let boxed = ctx.b.setcond(Cond::Eq, hi, ones);
        ok = ctx.b.bin(BinOp::And, ok, boxed);
    }
    // NX set, and frm = RNE when the instruction's rounding mode is dynamic (once per
    // block: only CSR instructions could change either).
    let dynamic = (f.rm == 7) as usize;
    let csr_ok = match ctx.fp_ok[dynamic] {
        Some(t) => t,
        None => {
            let fcsr = ctx.b.ld_state(Ty::I64, FCSR);
            let want = ctx.b.const64(if dynamic == 1 { 0xe1 } else { 0x01 });
            let got = ctx.b.bin(BinOp::And, fcsr, want);
            let nx = ctx.b.const64(fpu::flags::NX as u64);
            let t = ctx.b.setcond(Cond::Eq, got, nx);
            ctx.fp_ok[dynamic] = Some(t);
            t
        }
    };
    ok = ctx.b.bin(BinOp::And, ok, csr_ok);
    let res = if f.dbl {
        r
    } else {
        let z = ctx.b.ext(UnOp::Zext32, Ty::I64, r);
        let bx = ctx.b.const64(BOX);
        ctx.b.bin(BinOp::Or, z, bx)
    };
    let (slow, done) = (ctx.b.label(), ctx.b.label());
    let zero = ctx.b.const64(0);
    ctx.b.brcond(Cond::Eq, ok, zero, slow);
    ctx.set_fpr(f.rd, res);
    ctx.b.br(done);
    ctx.b.set_label(slow);
    // The operands as read above (rd may be one of them). The helper may trap (frm > 4),
    // and then f[rd] must be as it was.
    let k = ctx.b.const64(ctl(op, f.dbl, f.rm, ctx.insn));
    let (a, b, c) = (regs[0], if arity > 1 { regs[1] } else { zero }, if arity > 2 { regs[2] } else { zero });
    if let Some(slow) = ctx.b.call(&FP_SLOW_HELPER, &[a, b, c, k]) {
        ctx.set_fpr(f.rd, slow);
    }
    ctx.b.set_label(done);
}

/// Emit the helper call for `op`; `fp_src`: operands come from f registers
/// (else x[rs1]).
fn call(ctx: &mut Ctx, f: &FpInsn, op: u8, fp_src: bool) -> Temp {
    let a = if fp_src { ctx.fpr(f.rs1) } else { ctx.gpr(f.rs1) };
    let binary = matches!(op, fpu::op::ADD..=fpu::op::DIV | fpu::op::MADD..=fpu::op::LE);
    let b = if fp_src && binary { ctx.fpr(f.rs2) } else { ctx.b.const64(0) };
    let fused = matches!(op, fpu::op::MADD..=fpu::op::NMADD);
    let c = if fused { ctx.fpr(f.rs3) } else { ctx.b.const64(0) };
    let k = ctx.b.const64(ctl(op, f.dbl, f.rm, ctx.insn));
    match ctx.b.call(&FP_HELPER, &[a, b, c, k]) {
        Some(t) => t,
        None => ctx.b.const64(0), // unreachable: the helper returns a value
    }
}
