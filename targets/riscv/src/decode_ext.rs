//! Decode tables for F/D (including the RV64 compressed c.fld/c.fsd/c.fldsp/
//! c.fsdsp) and for Zba/Zbb/Zbs/Zicond/Zicbom/Zicboz. [`crate::decode`]
//! consults these after its own tables, so nothing here may shadow a base
//! encoding (the masks below include every fixed field).
//!
//! Rounding-mode fields: instructions that have one (arithmetic, fused ops,
//! conversions) reject the reserved values 5 and 6 here; the dynamic mode
//! (7) is resolved at run time by the FP helper (which raises illegal
//! instruction when `frm` holds 5..7). Instructions without a rounding mode
//! carry `rm = 0`. Zicbop's prefetches are `ori x0, ...` and Zihintpause's
//! `pause` is a `fence`: both already decode as no-ops in the base table.

use crate::decode::{Entry, Op, Reg};
use crate::fpu::op;

/// What an F/D instruction does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FpKind {
    /// flw/fld: f[rd] = mem[x[rs1] + imm].
    Load,
    /// fsw/fsd: mem[x[rs1] + imm] = f[rs2].
    Store,
    /// Helper operation ([`crate::fpu::op`]) on f registers, result to f[rd].
    Calc(u8),
    /// Helper operation on f registers, result to x[rd] (compares, fclass, fcvt to int).
    CalcToX(u8),
    /// Helper operation on x[rs1], result to f[rd] (fcvt from int).
    CalcFromX(u8),
    /// fsgnj (0), fsgnjn (1), fsgnjx (2).
    Sgnj(u8),
    /// fmv.x.w / fmv.x.d.
    MvToX,
    /// fmv.w.x / fmv.d.x.
    MvFromX,
}

/// A decoded F/D instruction. `dbl` selects D (else S); `rm` is the static
/// rounding mode field (7 = dynamic).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FpInsn {
    pub kind: FpKind,
    pub dbl: bool,
    pub rd: Reg,
    pub rs1: Reg,
    pub rs2: Reg,
    pub rs3: Reg,
    pub rm: u8,
    pub imm: i64,
}

/// Bit-manipulation, conditional-zero and cache-block operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BitOp {
    Sh1add,
    Sh2add,
    Sh3add,
    AddUw,
    Sh1addUw,
    Sh2addUw,
    Sh3addUw,
    SlliUw,
    Andn,
    Orn,
    Xnor,
    Clz,
    Ctz,
    Cpop,
    Clzw,
    Ctzw,
    Cpopw,
    Max,
    Maxu,
    Min,
    Minu,
    SextB,
    SextH,
    ZextH,
    Rol,
    Ror,
    Rolw,
    Rorw,
    OrcB,
    Rev8,
    Bclr,
    Bext,
    Binv,
    Bset,
    CzeroEqz,
    CzeroNez,
    CboInval,
    CboClean,
    CboFlush,
    CboZero,
}

/// A decoded bitmanip/Zicond/Zicbo* instruction. `shamt` is `Some` for the
/// immediate forms (rori, roriw, slli.uw, b*i), which use it instead of x[rs2].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BitInsn {
    pub op: BitOp,
    pub rd: Reg,
    pub rs1: Reg,
    pub rs2: Reg,
    pub shamt: Option<u8>,
}

macro_rules! e {
    ($name:literal, $mask:expr, $bits:expr, $ctor:expr) => {
        Entry { name: $name, mask: $mask, bits: $bits, ctor: $ctor }
    };
}

fn rd(i: u32) -> Reg {
    ((i >> 7) & 31) as Reg
}
fn rs1(i: u32) -> Reg {
    ((i >> 15) & 31) as Reg
}
fn rs2(i: u32) -> Reg {
    ((i >> 20) & 31) as Reg
}

/// An F/D instruction from a 32-bit encoding. `has_rm`: the funct3 field is a
/// rounding mode (reserved values 5/6 make the encoding illegal).
fn fp(i: u32, kind: FpKind, has_rm: bool) -> Op {
    let rm = if has_rm { ((i >> 12) & 7) as u8 } else { 0 };
    if rm == 5 || rm == 6 {
        return Op::Illegal;
    }
    let imm = match kind {
        FpKind::Load => ((i as i32) >> 20) as i64,
        FpKind::Store => ((((i as i32) >> 25) << 5) | ((i >> 7) & 31) as i32) as i64,
        _ => 0,
    };
    let dbl = match kind {
        FpKind::Load | FpKind::Store => (i >> 12) & 7 == 3,
        _ => (i >> 25) & 3 == 1,
    };
    Op::Fp(FpInsn { kind, dbl, rd: rd(i), rs1: rs1(i), rs2: rs2(i), rs3: (i >> 27) as Reg, rm, imm })
}

fn bit(i: u32, op: BitOp) -> Op {
    Op::Bit(BitInsn { op, rd: rd(i), rs1: rs1(i), rs2: rs2(i), shamt: None })
}
fn biti(i: u32, op: BitOp, bits: u32) -> Op {
    let shamt = ((i >> 20) & ((1 << bits) - 1)) as u8;
    Op::Bit(BitInsn { op, rd: rd(i), rs1: rs1(i), rs2: 0, shamt: Some(shamt) })
}

/// funct7 + opcode (funct3 is the rounding mode).
const M_RM: u32 = 0xfe00_007f;
/// funct7 + rs2 + opcode (unary with rounding mode).
const M_RM2: u32 = 0xfff0_007f;
/// funct7 + funct3 + opcode.
const M_F3: u32 = 0xfe00_707f;
/// funct7 + rs2 + funct3 + opcode.
const M_F32: u32 = 0xfff0_707f;
/// fmt + opcode (fused multiply-add; funct3 is the rounding mode).
const M_FMA: u32 = 0x0600_007f;
const M_OPC: u32 = 0x707f;
const M_SH64: u32 = 0xfc00_707f;
const M_CBO: u32 = 0xfff0_7fff;

/// OP-FP encoding: funct5, fmt (0 S, 1 D), rs2, funct3.
const fn opfp(funct5: u32, fmt: u32, rs2: u32, funct3: u32) -> u32 {
    funct5 << 27 | fmt << 25 | rs2 << 20 | funct3 << 12 | 0x53
}

use FpKind::*;

/// The 32-bit extension table.
pub static TABLE32_EXT: &[Entry] = &[
    e!("flw", M_OPC, 0x2007, |i| fp(i, Load, false)),
    e!("fld", M_OPC, 0x3007, |i| fp(i, Load, false)),
    e!("fsw", M_OPC, 0x2027, |i| fp(i, Store, false)),
    e!("fsd", M_OPC, 0x3027, |i| fp(i, Store, false)),
    e!("fmadd.s", M_FMA, 0x43, |i| fp(i, Calc(op::MADD), true)),
    e!("fmadd.d", M_FMA, 0x0200_0043, |i| fp(i, Calc(op::MADD), true)),
    e!("fmsub.s", M_FMA, 0x47, |i| fp(i, Calc(op::MSUB), true)),
    e!("fmsub.d", M_FMA, 0x0200_0047, |i| fp(i, Calc(op::MSUB), true)),
    e!("fnmsub.s", M_FMA, 0x4b, |i| fp(i, Calc(op::NMSUB), true)),
    e!("fnmsub.d", M_FMA, 0x0200_004b, |i| fp(i, Calc(op::NMSUB), true)),
    e!("fnmadd.s", M_FMA, 0x4f, |i| fp(i, Calc(op::NMADD), true)),
    e!("fnmadd.d", M_FMA, 0x0200_004f, |i| fp(i, Calc(op::NMADD), true)),
    e!("fadd.s", M_RM, opfp(0, 0, 0, 0), |i| fp(i, Calc(op::ADD), true)),
    e!("fadd.d", M_RM, opfp(0, 1, 0, 0), |i| fp(i, Calc(op::ADD), true)),
    e!("fsub.s", M_RM, opfp(1, 0, 0, 0), |i| fp(i, Calc(op::SUB), true)),
    e!("fsub.d", M_RM, opfp(1, 1, 0, 0), |i| fp(i, Calc(op::SUB), true)),
    e!("fmul.s", M_RM, opfp(2, 0, 0, 0), |i| fp(i, Calc(op::MUL), true)),
    e!("fmul.d", M_RM, opfp(2, 1, 0, 0), |i| fp(i, Calc(op::MUL), true)),
    e!("fdiv.s", M_RM, opfp(3, 0, 0, 0), |i| fp(i, Calc(op::DIV), true)),
    e!("fdiv.d", M_RM, opfp(3, 1, 0, 0), |i| fp(i, Calc(op::DIV), true)),
    e!("fsqrt.s", M_RM2, opfp(11, 0, 0, 0), |i| fp(i, Calc(op::SQRT), true)),
    e!("fsqrt.d", M_RM2, opfp(11, 1, 0, 0), |i| fp(i, Calc(op::SQRT), true)),
    e!("fsgnj.s", M_F3, opfp(4, 0, 0, 0), |i| fp(i, Sgnj(0), false)),
    e!("fsgnjn.s", M_F3, opfp(4, 0, 0, 1), |i| fp(i, Sgnj(1), false)),
    e!("fsgnjx.s", M_F3, opfp(4, 0, 0, 2), |i| fp(i, Sgnj(2), false)),
    e!("fsgnj.d", M_F3, opfp(4, 1, 0, 0), |i| fp(i, Sgnj(0), false)),
    e!("fsgnjn.d", M_F3, opfp(4, 1, 0, 1), |i| fp(i, Sgnj(1), false)),
    e!("fsgnjx.d", M_F3, opfp(4, 1, 0, 2), |i| fp(i, Sgnj(2), false)),
    e!("fmin.s", M_F3, opfp(5, 0, 0, 0), |i| fp(i, Calc(op::MIN), false)),
    e!("fmax.s", M_F3, opfp(5, 0, 0, 1), |i| fp(i, Calc(op::MAX), false)),
    e!("fmin.d", M_F3, opfp(5, 1, 0, 0), |i| fp(i, Calc(op::MIN), false)),
    e!("fmax.d", M_F3, opfp(5, 1, 0, 1), |i| fp(i, Calc(op::MAX), false)),
    // fcvt.s.d reads a double (the helper's `dbl` is the source format).
    e!("fcvt.s.d", M_RM2, opfp(8, 0, 1, 0), |i| fp_src(i, Calc(op::CVT_FMT), true)),
    e!("fcvt.d.s", M_RM2, opfp(8, 1, 0, 0), |i| fp_src(i, Calc(op::CVT_FMT), false)),
    e!("fle.s", M_F3, opfp(20, 0, 0, 0), |i| fp(i, CalcToX(op::LE), false)),
    e!("flt.s", M_F3, opfp(20, 0, 0, 1), |i| fp(i, CalcToX(op::LT), false)),
    e!("feq.s", M_F3, opfp(20, 0, 0, 2), |i| fp(i, CalcToX(op::EQ), false)),
    e!("fle.d", M_F3, opfp(20, 1, 0, 0), |i| fp(i, CalcToX(op::LE), false)),
    e!("flt.d", M_F3, opfp(20, 1, 0, 1), |i| fp(i, CalcToX(op::LT), false)),
    e!("feq.d", M_F3, opfp(20, 1, 0, 2), |i| fp(i, CalcToX(op::EQ), false)),
    e!("fcvt.w.s", M_RM2, opfp(24, 0, 0, 0), |i| fp(i, CalcToX(op::TO_INT), true)),
    e!("fcvt.wu.s", M_RM2, opfp(24, 0, 1, 0), |i| fp(i, CalcToX(op::TO_INT + 1), true)),
    e!("fcvt.l.s", M_RM2, opfp(24, 0, 2, 0), |i| fp(i, CalcToX(op::TO_INT + 2), true)),
    e!("fcvt.lu.s", M_RM2, opfp(24, 0, 3, 0), |i| fp(i, CalcToX(op::TO_INT + 3), true)),
    e!("fcvt.w.d", M_RM2, opfp(24, 1, 0, 0), |i| fp(i, CalcToX(op::TO_INT), true)),
    e!("fcvt.wu.d", M_RM2, opfp(24, 1, 1, 0), |i| fp(i, CalcToX(op::TO_INT + 1), true)),
    e!("fcvt.l.d", M_RM2, opfp(24, 1, 2, 0), |i| fp(i, CalcToX(op::TO_INT + 2), true)),
    e!("fcvt.lu.d", M_RM2, opfp(24, 1, 3, 0), |i| fp(i, CalcToX(op::TO_INT + 3), true)),
    e!("fcvt.s.w", M_RM2, opfp(26, 0, 0, 0), |i| fp(i, CalcFromX(op::FROM_INT), true)),
    e!("fcvt.s.wu", M_RM2, opfp(26, 0, 1, 0), |i| fp(i, CalcFromX(op::FROM_INT + 1), true)),
    e!("fcvt.s.l", M_RM2, opfp(26, 0, 2, 0), |i| fp(i, CalcFromX(op::FROM_INT + 2), true)),
    e!("fcvt.s.lu", M_RM2, opfp(26, 0, 3, 0), |i| fp(i, CalcFromX(op::FROM_INT + 3), true)),
    e!("fcvt.d.w", M_RM2, opfp(26, 1, 0, 0), |i| fp(i, CalcFromX(op::FROM_INT), true)),
    e!("fcvt.d.wu", M_RM2, opfp(26, 1, 1, 0), |i| fp(i, CalcFromX(op::FROM_INT + 1), true)),
    e!("fcvt.d.l", M_RM2, opfp(26, 1, 2, 0), |i| fp(i, CalcFromX(op::FROM_INT + 2), true)),
    e!("fcvt.d.lu", M_RM2, opfp(26, 1, 3, 0), |i| fp(i, CalcFromX(op::FROM_INT + 3), true)),
    e!("fmv.x.w", M_F32, opfp(28, 0, 0, 0), |i| fp(i, MvToX, false)),
    e!("fclass.s", M_F32, opfp(28, 0, 0, 1), |i| fp(i, CalcToX(op::CLASS), false)),
    e!("fmv.x.d", M_F32, opfp(28, 1, 0, 0), |i| fp(i, MvToX, false)),
    e!("fclass.d", M_F32, opfp(28, 1, 0, 1), |i| fp(i, CalcToX(op::CLASS), false)),
    e!("fmv.w.x", M_F32, opfp(30, 0, 0, 0), |i| fp(i, MvFromX, false)),
    e!("fmv.d.x", M_F32, opfp(30, 1, 0, 0), |i| fp(i, MvFromX, false)),
    // Zba
    e!("sh1add", M_F3, 0x2000_2033, |i| bit(i, BitOp::Sh1add)),
    e!("sh2add", M_F3, 0x2000_4033, |i| bit(i, BitOp::Sh2add)),
    e!("sh3add", M_F3, 0x2000_6033, |i| bit(i, BitOp::Sh3add)),
    e!("add.uw", M_F3, 0x0800_003b, |i| bit(i, BitOp::AddUw)),
    e!("sh1add.uw", M_F3, 0x2000_203b, |i| bit(i, BitOp::Sh1addUw)),
    e!("sh2add.uw", M_F3, 0x2000_403b, |i| bit(i, BitOp::Sh2addUw)),
    e!("sh3add.uw", M_F3, 0x2000_603b, |i| bit(i, BitOp::Sh3addUw)),
    e!("slli.uw", M_SH64, 0x0800_101b, |i| biti(i, BitOp::SlliUw, 6)),
    // Zbb
    e!("andn", M_F3, 0x4000_7033, |i| bit(i, BitOp::Andn)),
    e!("orn", M_F3, 0x4000_6033, |i| bit(i, BitOp::Orn)),
    e!("xnor", M_F3, 0x4000_4033, |i| bit(i, BitOp::Xnor)),
    e!("clz", M_F32, 0x6000_1013, |i| bit(i, BitOp::Clz)),
    e!("ctz", M_F32, 0x6010_1013, |i| bit(i, BitOp::Ctz)),
    e!("cpop", M_F32, 0x6020_1013, |i| bit(i, BitOp::Cpop)),
    e!("sext.b", M_F32, 0x6040_1013, |i| bit(i, BitOp::SextB)),
    e!("sext.h", M_F32, 0x6050_1013, |i| bit(i, BitOp::SextH)),
    e!("clzw", M_F32, 0x6000_101b, |i| bit(i, BitOp::Clzw)),
    e!("ctzw", M_F32, 0x6010_101b, |i| bit(i, BitOp::Ctzw)),
    e!("cpopw", M_F32, 0x6020_101b, |i| bit(i, BitOp::Cpopw)),
    e!("zext.h", M_F32, 0x0800_403b, |i| bit(i, BitOp::ZextH)),
    e!("max", M_F3, 0x0a00_6033, |i| bit(i, BitOp::Max)),
    e!("maxu", M_F3, 0x0a00_7033, |i| bit(i, BitOp::Maxu)),
    e!("min", M_F3, 0x0a00_4033, |i| bit(i, BitOp::Min)),
    e!("minu", M_F3, 0x0a00_5033, |i| bit(i, BitOp::Minu)),
    e!("rol", M_F3, 0x6000_1033, |i| bit(i, BitOp::Rol)),
    e!("ror", M_F3, 0x6000_5033, |i| bit(i, BitOp::Ror)),
    e!("rolw", M_F3, 0x6000_103b, |i| bit(i, BitOp::Rolw)),
    e!("rorw", M_F3, 0x6000_503b, |i| bit(i, BitOp::Rorw)),
    e!("rori", M_SH64, 0x6000_5013, |i| biti(i, BitOp::Ror, 6)),
    e!("roriw", M_F3, 0x6000_501b, |i| biti(i, BitOp::Rorw, 5)),
    e!("orc.b", M_F32, 0x2870_5013, |i| bit(i, BitOp::OrcB)),
    e!("rev8", M_F32, 0x6b80_5013, |i| bit(i, BitOp::Rev8)),
    // Zbs
    e!("bclr", M_F3, 0x4800_1033, |i| bit(i, BitOp::Bclr)),
    e!("bext", M_F3, 0x4800_5033, |i| bit(i, BitOp::Bext)),
    e!("binv", M_F3, 0x6800_1033, |i| bit(i, BitOp::Binv)),
    e!("bset", M_F3, 0x2800_1033, |i| bit(i, BitOp::Bset)),
    e!("bclri", M_SH64, 0x4800_1013, |i| biti(i, BitOp::Bclr, 6)),
    e!("bexti", M_SH64, 0x4800_5013, |i| biti(i, BitOp::Bext, 6)),
    e!("binvi", M_SH64, 0x6800_1013, |i| biti(i, BitOp::Binv, 6)),
    e!("bseti", M_SH64, 0x2800_1013, |i| biti(i, BitOp::Bset, 6)),
    // Zicond
    e!("czero.eqz", M_F3, 0x0e00_5033, |i| bit(i, BitOp::CzeroEqz)),
    e!("czero.nez", M_F3, 0x0e00_7033, |i| bit(i, BitOp::CzeroNez)),
    // Zicbom / Zicboz
    e!("cbo.inval", M_CBO, 0x0000_200f, |i| bit(i, BitOp::CboInval)),
    e!("cbo.clean", M_CBO, 0x0010_200f, |i| bit(i, BitOp::CboClean)),
    e!("cbo.flush", M_CBO, 0x0020_200f, |i| bit(i, BitOp::CboFlush)),
    e!("cbo.zero", M_CBO, 0x0040_200f, |i| bit(i, BitOp::CboZero)),
];

/// fcvt.s.d / fcvt.d.s: like [`fp`] but `dbl` names the source format.
fn fp_src(i: u32, kind: FpKind, src_dbl: bool) -> Op {
    match fp(i, kind, true) {
        Op::Fp(f) => Op::Fp(FpInsn { dbl: src_dbl, ..f }),
        other => other,
    }
}

// ---- compressed FP loads/stores (RV64: double only) ----

fn rdp(i: u32) -> Reg {
    (((i >> 2) & 7) + 8) as Reg
}
fn rs1p(i: u32) -> Reg {
    (((i >> 7) & 7) + 8) as Reg
}
/// c.fld/c.fsd offset: uimm[5:3] at 12:10, uimm[7:6] at 6:5.
fn cl_d_imm(i: u32) -> i64 {
    (((i >> 7) & 0x38) | ((i << 1) & 0xc0)) as i64
}
fn cfp(kind: FpKind, rd: Reg, rs1: Reg, rs2: Reg, imm: i64) -> Op {
    Op::Fp(FpInsn { kind, dbl: true, rd, rs1, rs2, rs3: 0, rm: 0, imm })
}

const CM3: u32 = 0xe003;

/// The compressed extension table.
pub static TABLE16_EXT: &[Entry] = &[
    e!("c.fld", CM3, 0x2000, |i| cfp(Load, rdp(i), rs1p(i), 0, cl_d_imm(i))),
    e!("c.fsd", CM3, 0xa000, |i| cfp(Store, 0, rs1p(i), rdp(i), cl_d_imm(i))),
    e!("c.fldsp", CM3, 0x2002, |i| {
        let imm = ((i >> 7) & 0x20) | ((i >> 2) & 0x18) | ((i << 4) & 0x1c0);
        cfp(Load, ((i >> 7) & 31) as Reg, 2, 0, imm as i64)
    }),
    e!("c.fsdsp", CM3, 0xa002, |i| {
        let imm = ((i >> 7) & 0x38) | ((i >> 1) & 0x1c0);
        cfp(Store, 0, 2, ((i >> 2) & 31) as Reg, imm as i64)
    }),
];

// ---- disassembly (objdump -M no-aliases style) ----

/// ABI names of f0..f31.
pub const FREG_NAMES: [&str; 32] = [
    "ft0", "ft1", "ft2", "ft3", "ft4", "ft5", "ft6", "ft7", "fs0", "fs1", "fa0", "fa1", "fa2", "fa3", "fa4", "fa5",
    "fa6", "fa7", "fs2", "fs3", "fs4", "fs5", "fs6", "fs7", "fs8", "fs9", "fs10", "fs11", "ft8", "ft9", "ft10", "ft11",
];

fn fr(n: Reg) -> &'static str {
    FREG_NAMES[n as usize & 31]
}
fn xr(n: Reg) -> &'static str {
    crate::disas::REG_NAMES[n as usize & 31]
}

const INT_NAMES: [&str; 4] = ["w", "wu", "l", "lu"];
const RM_NAMES: [&str; 8] = ["rne", "rtz", "rdn", "rup", "rmm", "", "", "dyn"];

/// Text of an F/D instruction.
pub fn format_fp(f: &FpInsn) -> String {
    let s = if f.dbl { "d" } else { "s" };
    let rm = if f.rm == 7 { String::new() } else { format!(",{}", RM_NAMES[f.rm as usize & 7]) };
    match f.kind {
        Load => format!("fl{} {},{}({})", if f.dbl { "d" } else { "w" }, fr(f.rd), f.imm, xr(f.rs1)),
        Store => format!("fs{} {},{}({})", if f.dbl { "d" } else { "w" }, fr(f.rs2), f.imm, xr(f.rs1)),
        Sgnj(k) => {
            format!("{}.{s} {},{},{}", ["fsgnj", "fsgnjn", "fsgnjx"][k as usize % 3], fr(f.rd), fr(f.rs1), fr(f.rs2))
        }
        MvToX => format!("fmv.x.{} {},{}", if f.dbl { "d" } else { "w" }, xr(f.rd), fr(f.rs1)),
        MvFromX => format!("fmv.{}.x {},{}", if f.dbl { "d" } else { "w" }, fr(f.rd), xr(f.rs1)),
        CalcFromX(o) => {
            format!("fcvt.{s}.{} {},{}{rm}", INT_NAMES[(o - op::FROM_INT) as usize & 3], fr(f.rd), xr(f.rs1))
        }
        CalcToX(o) if o >= op::TO_INT => {
            format!("fcvt.{}.{s} {},{}{rm}", INT_NAMES[(o - op::TO_INT) as usize & 3], xr(f.rd), fr(f.rs1))
        }
        CalcToX(o) => {
            let n = match o {
                op::EQ => "feq",
                op::LT => "flt",
                op::LE => "fle",
                _ => return format!("fclass.{s} {},{}", xr(f.rd), fr(f.rs1)),
            };
            format!("{n}.{s} {},{},{}", xr(f.rd), fr(f.rs1), fr(f.rs2))
        }
        Calc(op::CVT_FMT) => {
            let (to, from) = if f.dbl { ("s", "d") } else { ("d", "s") };
            format!("fcvt.{to}.{from} {},{}{rm}", fr(f.rd), fr(f.rs1))
        }
        Calc(op::SQRT) => format!("fsqrt.{s} {},{}{rm}", fr(f.rd), fr(f.rs1)),
        Calc(o @ op::MADD..=op::NMADD) => {
            let n = ["fmadd", "fmsub", "fnmsub", "fnmadd"][(o - op::MADD) as usize & 3];
            format!("{n}.{s} {},{},{},{}{rm}", fr(f.rd), fr(f.rs1), fr(f.rs2), fr(f.rs3))
        }
        Calc(o) => {
            let (n, rm) = match o {
                op::ADD => ("fadd", rm.as_str()),
                op::SUB => ("fsub", rm.as_str()),
                op::MUL => ("fmul", rm.as_str()),
                op::DIV => ("fdiv", rm.as_str()),
                op::MIN => ("fmin", ""),
                _ => ("fmax", ""),
            };
            format!("{n}.{s} {},{},{}{rm}", fr(f.rd), fr(f.rs1), fr(f.rs2))
        }
    }
}

/// Text of a bitmanip/Zicond/Zicbo* instruction.
pub fn format_bit(i: &BitInsn) -> String {
    use BitOp::*;
    let n = match i.op {
        Sh1add => "sh1add",
        Sh2add => "sh2add",
        Sh3add => "sh3add",
        AddUw => "add.uw",
        Sh1addUw => "sh1add.uw",
        Sh2addUw => "sh2add.uw",
        Sh3addUw => "sh3add.uw",
        SlliUw => "slli.uw",
        Andn => "andn",
        Orn => "orn",
        Xnor => "xnor",
        Clz => "clz",
        Ctz => "ctz",
        Cpop => "cpop",
        Clzw => "clzw",
        Ctzw => "ctzw",
        Cpopw => "cpopw",
        Max => "max",
        Maxu => "maxu",
        Min => "min",
        Minu => "minu",
        SextB => "sext.b",
        SextH => "sext.h",
        ZextH => "zext.h",
        Rol => "rol",
        Ror if i.shamt.is_some() => "rori",
        Ror => "ror",
        Rolw => "rolw",
        Rorw if i.shamt.is_some() => "roriw",
        Rorw => "rorw",
        OrcB => "orc.b",
        Rev8 => "rev8",
        Bclr if i.shamt.is_some() => "bclri",
        Bclr => "bclr",
        Bext if i.shamt.is_some() => "bexti",
        Bext => "bext",
        Binv if i.shamt.is_some() => "binvi",
        Binv => "binv",
        Bset if i.shamt.is_some() => "bseti",
        Bset => "bset",
        CzeroEqz => "czero.eqz",
        CzeroNez => "czero.nez",
        CboInval => "cbo.inval",
        CboClean => "cbo.clean",
        CboFlush => "cbo.flush",
        CboZero => "cbo.zero",
    };
    match i.op {
        CboInval | CboClean | CboFlush | CboZero => format!("{n} ({})", xr(i.rs1)),
        Clz | Ctz | Cpop | Clzw | Ctzw | Cpopw | SextB | SextH | ZextH | OrcB | Rev8 => {
            format!("{n} {},{}", xr(i.rd), xr(i.rs1))
        }
        _ => match i.shamt {
            Some(s) => format!("{n} {},{},{:#x}", xr(i.rd), xr(i.rs1), s),
            None => format!("{n} {},{},{}", xr(i.rd), xr(i.rs1), xr(i.rs2)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode;

    fn fpd(insn: u32) -> FpInsn {
        match decode(insn).0 {
            Op::Fp(f) => f,
            other => panic!("{insn:#x} decoded as {other:?}"),
        }
    }
    fn bitd(insn: u32) -> BitInsn {
        match decode(insn).0 {
            Op::Bit(b) => b,
            other => panic!("{insn:#x} decoded as {other:?}"),
        }
    }

    #[test]
    fn fp_encodings() {
        // fadd.d fa0, fa1, fa2, rtz  (0x02c5_9553 = fadd.d fa0,fa1,fa2,rtz)
        let f = fpd(0x02c5_9553);
        assert_eq!((f.kind, f.dbl, f.rd, f.rs1, f.rs2, f.rm), (Calc(op::ADD), true, 10, 11, 12, 1));
        // Reserved rounding modes 5 and 6 are illegal; 7 (dynamic) is not.
        assert_eq!(decode(0x02c5_d553).0, Op::Illegal);
        assert_eq!(decode(0x02c5_e553).0, Op::Illegal);
        assert_eq!(fpd(0x02c5_f553).rm, 7);
        // fmadd.s fa0, fa1, fa2, fa3 (rne): rs3 = 13.
        let f = fpd(0x68c5_8543);
        assert_eq!((f.kind, f.dbl, f.rs3), (Calc(op::MADD), false, 13));
        // flw fa0, -4(sp); fsd fa1, 8(a0)
        let f = fpd(0xffc1_2507);
        assert_eq!((f.kind, f.dbl, f.rd, f.rs1, f.imm), (Load, false, 10, 2, -4));
        let f = fpd(0x00b5_3427);
        assert_eq!((f.kind, f.dbl, f.rs1, f.rs2, f.imm), (Store, true, 10, 11, 8));
        // fcvt.s.d fa0, fa1: source is double.
        let f = fpd(0x4015_8553);
        assert_eq!((f.kind, f.dbl), (Calc(op::CVT_FMT), true));
        // fmv.x.d a0, fa1 / fclass.s a0, fa1
        assert_eq!(fpd(0xe205_8553).kind, MvToX);
        assert_eq!(fpd(0xe005_9553).kind, CalcToX(op::CLASS));
        // fsqrt.s with rs2 != 0 is reserved.
        assert_eq!(decode(0x5815_8553 | 1 << 20).0, Op::Illegal);
    }

    #[test]
    fn compressed_fp() {
        // c.fld fa0, 8(a1) = 0x2588; c.fsdsp fs0, 8(sp) = 0xa422
        let (op, len) = decode(0x2588);
        assert_eq!(len, 2);
        assert_eq!(op, cfp(Load, 10, 11, 0, 8));
        assert_eq!(decode(0xa422).0, cfp(Store, 0, 2, 8, 8));
        // c.fldsp fa0, 16(sp) = 0x2542
        assert_eq!(decode(0x2542).0, cfp(Load, 10, 2, 0, 16));
    }

    #[test]
    fn bitmanip_encodings() {
        // sh2add a0, a1, a2
        assert_eq!(bitd(0x20c5_c533).op, BitOp::Sh2add);
        // rori a0, a1, 63 and roriw a0, a1, 31
        let b = bitd(0x63f5_d513);
        assert_eq!((b.op, b.shamt), (BitOp::Ror, Some(63)));
        assert_eq!(bitd(0x61f5_d51b).shamt, Some(31));
        // rev8, orc.b, cpop, zext.h, bseti 40, czero.nez, cbo.zero (a0)
        assert_eq!(bitd(0x6b85_d513).op, BitOp::Rev8);
        assert_eq!(bitd(0x2875_d513).op, BitOp::OrcB);
        assert_eq!(bitd(0x6025_9513).op, BitOp::Cpop);
        assert_eq!(bitd(0x0805_c53b).op, BitOp::ZextH);
        assert_eq!(bitd(0x2a85_9513).shamt, Some(40));
        assert_eq!(bitd(0x0ec5_f533).op, BitOp::CzeroNez);
        assert_eq!(bitd(0x0045_200f).op, BitOp::CboZero);
        // Base encodings are not shadowed: srli/srai/slli still decode as before.
        assert!(matches!(decode(0x0015_d513).0, Op::AluImm { .. }));
        assert!(matches!(decode(0x4015_d513).0, Op::AluImm { .. }));
    }
}
