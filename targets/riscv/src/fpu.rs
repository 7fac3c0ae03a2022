//! F/D arithmetic on raw bits: Berkeley SoftFloat 3e (the `softfloat-sys`
//! crate built with its RISC-V specialisation, the same core Spike uses) plus
//! the few operations SoftFloat lacks (min/max, fclass).
//!
//! Invariants: every function takes and returns register bits. Single values
//! arrive NaN-boxed in 64 bits; an improperly boxed input reads as the
//! canonical NaN ([`unbox_s`]) and single results are returned boxed. NaN
//! results are always canonical (the RISC-V specialisation of SoftFloat
//! never propagates payloads). The returned flags use the fflags layout,
//! which is also SoftFloat's (NX=1, UF=2, OF=4, DZ=8, NV=16), and rounding
//! mode numbers 0..=4 are SoftFloat's too.
//!
//! Pitfalls: SoftFloat's rounding mode and flags are C thread-locals, so each
//! call sets the mode and clears the flags first (vCPU threads never share
//! them). The caller resolves the dynamic mode (7) and rejects 5/6 first.

use softfloat_sys as sf;

use kite_ir::interp::eval_fp;
use kite_ir::{FpOp, Ty};

use crate::cpu::{tbflags, RiscvCpu};
use crate::csr::mstatus;

/// fflags bits.
pub mod flags {
    pub const NX: u8 = 1;
    pub const UF: u8 = 2;
    pub const OF: u8 = 4;
    pub const DZ: u8 = 8;
    pub const NV: u8 = 16;
}

/// Canonical NaNs.
pub const CANON_S: u32 = 0x7fc0_0000;
pub const CANON_D: u64 = 0x7ff8_0000_0000_0000;
/// The upper half of a properly NaN-boxed single.
pub const BOX: u64 = 0xffff_ffff_0000_0000;

/// Operation codes of [`exec`] (the `op` field of the FP helper's control word).
pub mod op {
    pub const ADD: u8 = 0;
    pub const SUB: u8 = 1;
    pub const MUL: u8 = 2;
    pub const DIV: u8 = 3;
    pub const SQRT: u8 = 4;
    pub const MADD: u8 = 5;
    pub const MSUB: u8 = 6;
    pub const NMSUB: u8 = 7;
    pub const NMADD: u8 = 8;
    pub const MIN: u8 = 9;
    pub const MAX: u8 = 10;
    pub const EQ: u8 = 11;
    pub const LT: u8 = 12;
    pub const LE: u8 = 13;
    pub const CLASS: u8 = 14;
    /// fcvt.{w,wu,l,lu}.fmt: `TO_INT + rs2 field` (0 w, 1 wu, 2 l, 3 lu).
    pub const TO_INT: u8 = 16;
    /// fcvt.fmt.{w,wu,l,lu}: `FROM_INT + rs2 field`.
    pub const FROM_INT: u8 = 20;
    /// fcvt.s.d (for `dbl` = true: the source format is double) / fcvt.d.s.
    pub const CVT_FMT: u8 = 24;
}

/// Read a single from a 64-bit register: improperly boxed values are the canonical NaN.
pub fn unbox_s(v: u64) -> u32 {
    if v & BOX == BOX {
        v as u32
    } else {
        CANON_S
    }
}

/// NaN-box a single.
pub fn box_s(v: u32) -> u64 {
    BOX | v as u64
}

fn sext32(v: u32) -> u64 {
    v as i32 as i64 as u64
}

/// fclass result bits from the fields of a value.
fn classify(sign: bool, exp_max: bool, exp_zero: bool, frac_zero: bool, quiet: bool) -> u64 {
    let bit = match (exp_max, exp_zero, frac_zero) {
        (true, _, true) => 7,                 // infinity
        (true, _, false) => 8 + quiet as u32, // NaN: sNaN 8, qNaN 9
        (false, true, true) => 4,             // zero
        (false, true, false) => 5,            // subnormal
        (false, false, _) => 6,               // normal
    };
    let bit = if sign && bit <= 7 { 7 - bit } else { bit };
    1 << bit
}

fn class_s(a: u32) -> u64 {
    let exp = (a >> 23) & 0xff;
    let frac = a & 0x7f_ffff;
    classify(a >> 31 != 0, exp == 0xff, exp == 0, frac == 0, frac & 0x40_0000 != 0)
}

fn class_d(a: u64) -> u64 {
    let exp = (a >> 52) & 0x7ff;
    let frac = a & 0xf_ffff_ffff_ffff;
    classify(a >> 63 != 0, exp == 0x7ff, exp == 0, frac == 0, frac & 0x8_0000_0000_0000 != 0)
}

fn is_nan_s(a: u32) -> bool {
    a & 0x7fff_ffff > 0x7f80_0000
}

fn is_nan_d(a: u64) -> bool {
    a & 0x7fff_ffff_ffff_ffff > 0x7ff0_0000_0000_0000
}

fn f32(v: u32) -> sf::float32_t {
    sf::float32_t { v }
}

fn f64(v: u64) -> sf::float64_t {
    sf::float64_t { v }
}

const SIGN_S: u32 = 1 << 31;
const SIGN_D: u64 = 1 << 63;

/// Single-precision operation on unboxed inputs; returns register bits
/// (boxed for FP results, x-register value for integer results).
/// The caller has set SoftFloat's thread-local rounding mode.
fn exec_s(op: u8, a: u32, b: u32, c: u32, rm: u8) -> u64 {
    // SAFETY: SoftFloat functions are pure computations on their value
    // arguments; the only state they touch is the calling thread's rounding
    // mode and exception flags.
    unsafe {
        let r = match op {
            op::ADD => sf::f32_add(f32(a), f32(b)),
            op::SUB => sf::f32_sub(f32(a), f32(b)),
            op::MUL => sf::f32_mul(f32(a), f32(b)),
            op::DIV => sf::f32_div(f32(a), f32(b)),
            op::SQRT => sf::f32_sqrt(f32(a)),
            op::MADD => sf::f32_mulAdd(f32(a), f32(b), f32(c)),
            op::MSUB => sf::f32_mulAdd(f32(a), f32(b), f32(c ^ SIGN_S)),
            op::NMSUB => sf::f32_mulAdd(f32(a ^ SIGN_S), f32(b), f32(c)),
            op::NMADD => sf::f32_mulAdd(f32(a ^ SIGN_S), f32(b), f32(c ^ SIGN_S)),
            op::MIN | op::MAX => {
                // IEEE 754-2019 minimumNumber/maximumNumber (Spike's formulation):
                // `first` says a wins; the quiet compare raises NV for sNaN only.
                let (x, y) = if op == op::MIN { (a, b) } else { (b, a) };
                let first = sf::f32_lt_quiet(f32(x), f32(y)) || (sf::f32_eq(f32(x), f32(y)) && x & SIGN_S != 0);
                let v = if is_nan_s(a) && is_nan_s(b) {
                    CANON_S
                } else if first || is_nan_s(b) {
                    a
                } else {
                    b
                };
                f32(v)
            }
            op::EQ => return sf::f32_eq(f32(a), f32(b)) as u64,
            op::LT => return sf::f32_lt(f32(a), f32(b)) as u64,
            op::LE => return sf::f32_le(f32(a), f32(b)) as u64,
            op::CLASS => return class_s(a),
            op::TO_INT => return sext32(sf::f32_to_i32(f32(a), rm, true) as i32 as u32),
            0x11 => return sext32(sf::f32_to_ui32(f32(a), rm, true) as u32),
            0x12 => return sf::f32_to_i64(f32(a), rm, true) as u64,
            0x13 => return sf::f32_to_ui64(f32(a), rm, true),
            op::CVT_FMT => return sf::f32_to_f64(f32(a)).v, // fcvt.d.s
            _ => f32(CANON_S),
        };
        box_s(r.v)
    }
}

/// Double-precision operation; returns register bits.
fn exec_d(op: u8, a: u64, b: u64, c: u64, rm: u8) -> u64 {
    // SAFETY: pure SoftFloat computations on values (see exec_s).
    unsafe {
        let r = match op {
            op::ADD => sf::f64_add(f64(a), f64(b)),
            op::SUB => sf::f64_sub(f64(a), f64(b)),
            op::MUL => sf::f64_mul(f64(a), f64(b)),
            op::DIV => sf::f64_div(f64(a), f64(b)),
            op::SQRT => sf::f64_sqrt(f64(a)),
            op::MADD => sf::f64_mulAdd(f64(a), f64(b), f64(c)),
            op::MSUB => sf::f64_mulAdd(f64(a), f64(b), f64(c ^ SIGN_D)),
            op::NMSUB => sf::f64_mulAdd(f64(a ^ SIGN_D), f64(b), f64(c)),
            op::NMADD => sf::f64_mulAdd(f64(a ^ SIGN_D), f64(b), f64(c ^ SIGN_D)),
            op::MIN | op::MAX => {
                let (x, y) = if op == op::MIN { (a, b) } else { (b, a) };
                let first = sf::f64_lt_quiet(f64(x), f64(y)) || (sf::f64_eq(f64(x), f64(y)) && x & SIGN_D != 0);
                let v = if is_nan_d(a) && is_nan_d(b) {
                    CANON_D
                } else if first || is_nan_d(b) {
                    a
                } else {
                    b
                };
                f64(v)
            }
            op::EQ => return sf::f64_eq(f64(a), f64(b)) as u64,
            op::LT => return sf::f64_lt(f64(a), f64(b)) as u64,
            op::LE => return sf::f64_le(f64(a), f64(b)) as u64,
            op::CLASS => return class_d(a),
            op::TO_INT => return sext32(sf::f64_to_i32(f64(a), rm, true) as i32 as u32),
            0x11 => return sext32(sf::f64_to_ui32(f64(a), rm, true) as u32),
            0x12 => return sf::f64_to_i64(f64(a), rm, true) as u64,
            0x13 => return sf::f64_to_ui64(f64(a), rm, true),
            op::CVT_FMT => return box_s(sf::f64_to_f32(f64(a)).v), // fcvt.s.d
            _ => f64(CANON_D),
        };
        r.v
    }
}

/// Integer-to-FP conversions (`a` is the x register; `kind` the rs2 field).
fn from_int(dbl: bool, kind: u8, a: u64) -> u64 {
    // SAFETY: pure SoftFloat computations on values (see exec_s).
    unsafe {
        if dbl {
            match kind {
                0 => sf::i32_to_f64(a as i32).v,
                1 => sf::ui32_to_f64(a as u32).v,
                2 => sf::i64_to_f64(a as i64).v,
                _ => sf::ui64_to_f64(a).v,
            }
        } else {
            box_s(match kind {
                0 => sf::i32_to_f32(a as i32).v,
                1 => sf::ui32_to_f32(a as u32).v,
                2 => sf::i64_to_f32(a as i64).v,
                _ => sf::ui64_to_f32(a).v,
            })
        }
    }
}

/// Execute FP operation `op` ([`op`]) on register bits with rounding mode
/// `rm` (0..=4, already resolved). Returns the result bits and the fflags
/// raised. Unknown `op` values give the canonical NaN (never reached from
/// the translator).
pub fn exec(op: u8, dbl: bool, a: u64, b: u64, c: u64, rm: u8) -> (u64, u8) {
    // SAFETY: setting and reading SoftFloat's thread-local mode and flags
    // through the crate's accessor functions; the operations themselves are
    // pure (see exec_s).
    unsafe {
        sf::softfloat_roundingMode_write_helper(rm.min(4));
        sf::softfloat_exceptionFlags_write_helper(0);
        let r = if (op::FROM_INT..op::FROM_INT + 4).contains(&op) {
            from_int(dbl, op - op::FROM_INT, a)
        } else if dbl {
            exec_d(op, a, b, c, rm.min(4))
        } else {
            exec_s(op, unbox_s(a), unbox_s(b), unbox_s(c), rm.min(4))
        };
        (r, sf::softfloat_exceptionFlags_read_helper() & 0x1f)
    }
}

/// Host-FPU fast path ("hardfloat") for add/sub/mul/div/sqrt and the fused
/// multiply-adds, round-to-nearest-even only. Returns `None` (use [`exec`])
/// unless the host result provably equals SoftFloat's and the only flag
/// SoftFloat could raise is NX, which the caller must already have set in
/// fflags (so whether this operation was inexact does not matter).
///
/// Why the result check alone suffices: both the host (SSE, default MXCSR:
/// RNE, no FTZ/DAZ; `mul_add` is a correctly rounded fma) and SoftFloat
/// round the exact result correctly, so they agree whenever the result is a
/// number. A finite result with magnitude above the smallest normal rules
/// out NaN/infinite inputs (they give NaN, infinity or, for x/inf, zero),
/// NV, DZ and OF (RNE overflow gives infinity), and UF: rounding is
/// monotone, so |exact| <= MIN would round to <= MIN, hence the exact value
/// is not tiny either (RISC-V detects tininess after rounding, and a result
/// equal to MIN could hide it, so MIN itself falls back). Zero results fall
/// back too (sign-of-zero rules). Single inputs that are not properly boxed
/// read as the canonical NaN and so fall back.
#[inline]
pub fn exec_host(op: u8, dbl: bool, a: u64, b: u64, c: u64) -> Option<u64> {
    let (fop, neg_a, neg_c) = host_op(op)?;
    if dbl {
        let s = 1u64 << 63;
        let r = eval_fp(fop, Ty::I64, a ^ (neg_a as u64 * s), b, c ^ (neg_c as u64 * s));
        let m = f64::from_bits(r).abs();
        (m > f64::MIN_POSITIVE && m < f64::INFINITY).then_some(r)
    } else {
        let s = 1u64 << 31;
        let (x, y, z) = (unbox_s(a) as u64, unbox_s(b) as u64, unbox_s(c) as u64);
        let r = eval_fp(fop, Ty::I32, x ^ (neg_a as u64 * s), y, z ^ (neg_c as u64 * s));
        let m = f32::from_bits(r as u32).abs();
        (m > f32::MIN_POSITIVE && m < f32::INFINITY).then(|| box_s(r as u32))
    }
}

/// The host operation behind an arithmetic op (`op::ADD..=op::NMADD`): the IR op, and
/// whether to negate the first and the third operand first (exact sign flips: msub =
/// a*b + -c, nmsub = -a*b + c, nmadd = -a*b + -c). `None` for every other op. Shared
/// by [`exec_host`] and the translator's inline arithmetic.
pub fn host_op(op: u8) -> Option<(FpOp, bool, bool)> {
    Some(match op {
        op::ADD => (FpOp::Add, false, false),
        op::SUB => (FpOp::Sub, false, false),
        op::MUL => (FpOp::Mul, false, false),
        op::DIV => (FpOp::Div, false, false),
        op::SQRT => (FpOp::Sqrt, false, false),
        op::MADD => (FpOp::MulAdd, false, false),
        op::MSUB => (FpOp::MulAdd, false, true),
        op::NMSUB => (FpOp::MulAdd, true, false),
        op::NMADD => (FpOp::MulAdd, true, true),
        _ => return None,
    })
}

// ---- FP state: mstatus.FS and the fflags/frm/fcsr CSRs ----

/// Set mstatus.FS = Dirty and the matching TB-flag bits (the next block
/// lookup then finds the Dirty translation).
pub fn mark_dirty(cpu: &mut RiscvCpu) {
    cpu.csr.mstatus |= mstatus::FS;
    cpu.header.flags |= tbflags::FS_MASK;
}

/// FP CSRs exist only while mstatus.FS != Off.
pub(crate) fn pred_fcsr(c: &RiscvCpu, _: u16) -> bool {
    c.csr.mstatus & mstatus::FS != 0
}

/// fflags (0x001), frm (0x002), fcsr (0x003).
pub(crate) fn read_fcsr(c: &RiscvCpu, num: u16, _: u64) -> u64 {
    let v = c.csr.fcsr & 0xff;
    match num {
        0x001 => v & 0x1f,
        0x002 => v >> 5,
        _ => v,
    }
}

/// Writes set FS = Dirty. frm is WARL-free: any 3-bit value is kept (an
/// invalid dynamic mode traps when an instruction uses it).
pub(crate) fn write_fcsr(c: &mut RiscvCpu, num: u16, v: u64, _: u64) {
    let old = c.csr.fcsr;
    c.csr.fcsr = match num {
        0x001 => (old & !0x1f) | (v & 0x1f),
        0x002 => (old & 0x1f) | ((v & 7) << 5),
        _ => v & 0xff,
    };
    mark_dirty(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONE_S: u64 = BOX | 0x3f80_0000;
    const TWO_S: u64 = BOX | 0x4000_0000;
    const SNAN_S: u64 = BOX | 0x7f80_0001;
    const ONE_D: u64 = 0x3ff0_0000_0000_0000;

    #[test]
    fn arithmetic_and_boxing() {
        assert_eq!(exec(op::ADD, false, ONE_S, ONE_S, 0, 0), (TWO_S, 0));
        // Improperly boxed input reads as the canonical NaN (quiet: no NV).
        assert_eq!(exec(op::ADD, false, 0x3f80_0000, ONE_S, 0, 0), (BOX | CANON_S as u64, 0));
        // sNaN input: canonical NaN, NV.
        assert_eq!(exec(op::MUL, false, SNAN_S, ONE_S, 0, 0), (BOX | CANON_S as u64, flags::NV));
        assert_eq!(exec(op::DIV, true, ONE_D, 0, 0, 0), (0x7ff0_0000_0000_0000, flags::DZ));
        // 1/3 rounds differently up and down.
        let three = 0x4008_0000_0000_0000;
        let (up, f) = exec(op::DIV, true, ONE_D, three, 0, 3);
        let (dn, _) = exec(op::DIV, true, ONE_D, three, 0, 2);
        assert_eq!((up - dn, f), (1, flags::NX));
        assert_eq!(exec(op::SQRT, true, 1 << 63 | ONE_D, 0, 0, 0), (CANON_D, flags::NV));
    }

    #[test]
    fn fused_multiply_add_rounds_once() {
        // (1 + 2^-52) * (1 - 2^-53) - 1 = 2^-53 - 2^-105 exactly; a separately
        // rounded product would give 0.
        let a = ONE_D + 1;
        let b = 0x3fef_ffff_ffff_ffff;
        let want = (2f64.powi(-53) - 2f64.powi(-105)).to_bits();
        assert_eq!(exec(op::MSUB, true, a, b, ONE_D, 0), (want, 0));
        let (n, _) = exec(op::NMADD, true, ONE_D, ONE_D, ONE_D, 0);
        assert_eq!(n, 0xc000_0000_0000_0000, "-(1*1)-1 = -2");
        assert_eq!(exec(op::NMSUB, false, ONE_S, ONE_S, TWO_S, 0), (ONE_S, 0), "-(1*1)+2 = 1");
    }

    #[test]
    fn min_max_semantics() {
        let pz = 0u64;
        let nz = SIGN_D;
        assert_eq!(exec(op::MIN, true, pz, nz, 0, 0), (nz, 0));
        assert_eq!(exec(op::MAX, true, nz, pz, 0, 0), (pz, 0));
        let qnan = CANON_D | 5;
        assert_eq!(exec(op::MIN, true, qnan, ONE_D, 0, 0), (ONE_D, 0));
        assert_eq!(exec(op::MAX, true, ONE_D, 0x7ff0_0000_0000_0001, 0, 0), (ONE_D, flags::NV));
        assert_eq!(exec(op::MAX, true, qnan, qnan, 0, 0), (CANON_D, 0));
        assert_eq!(exec(op::MIN, false, SNAN_S, ONE_S, 0, 0), (ONE_S, flags::NV));
    }

    #[test]
    fn compares_signal_per_spec() {
        let q = BOX | 0x7fc0_0000;
        assert_eq!(exec(op::EQ, false, q, ONE_S, 0, 0), (0, 0));
        assert_eq!(exec(op::EQ, false, SNAN_S, ONE_S, 0, 0), (0, flags::NV));
        assert_eq!(exec(op::LT, false, q, ONE_S, 0, 0), (0, flags::NV));
        assert_eq!(exec(op::LE, false, ONE_S, ONE_S, 0, 0), (1, 0));
        assert_eq!(exec(op::LT, true, SIGN_D, 0, 0, 0), (0, 0), "-0 < +0 is false");
    }

    #[test]
    fn conversions_saturate() {
        // NaN -> int max; -1.5 -> unsigned 0 with NV; 2^40 -> w saturates.
        assert_eq!(exec(op::TO_INT, true, CANON_D, 0, 0, 0), (0x7fff_ffff, flags::NV));
        assert_eq!(exec(op::TO_INT + 1, true, 0xbff8_0000_0000_0000, 0, 0, 0), (0, flags::NV));
        assert_eq!(exec(op::TO_INT + 1, true, 0x41ef_ffff_ffe0_0000, 0, 0, 0), (u64::MAX, 0), "wu sign-extends");
        assert_eq!(exec(op::TO_INT + 3, false, BOX | 0xff80_0000, 0, 0, 0), (0, flags::NV));
        assert_eq!(exec(op::TO_INT + 2, false, BOX | 0x3fc0_0000, 0, 0, 4), (2, flags::NX), "1.5 RMM -> 2");
        assert_eq!(exec(op::TO_INT + 2, false, BOX | 0x3fc0_0000, 0, 0, 1), (1, flags::NX), "1.5 RTZ -> 1");
        assert_eq!(exec(op::FROM_INT + 3, false, u64::MAX, 0, 0, 0), (BOX | 0x5f80_0000, flags::NX));
        assert_eq!(exec(op::FROM_INT, true, 0xffff_ffff, 0, 0, 0), (0xbff0_0000_0000_0000, 0));
        assert_eq!(exec(op::CVT_FMT, false, SNAN_S, 0, 0, 0), (CANON_D, flags::NV));
        assert_eq!(exec(op::CVT_FMT, true, ONE_D, 0, 0, 0), (ONE_S, 0));
        // 1e300 to single overflows: +inf under RNE, max finite under RTZ.
        let big = 0x7e37_e43c_8800_759c;
        assert_eq!(exec(op::CVT_FMT, true, big, 0, 0, 0), (BOX | 0x7f80_0000, flags::OF | flags::NX));
        assert_eq!(exec(op::CVT_FMT, true, big, 0, 0, 1), (BOX | 0x7f7f_ffff, flags::OF | flags::NX));
    }

    #[test]
    fn fclass_bits() {
        let cases: [(u64, u64); 10] = [
            (0xfff0_0000_0000_0000, 1 << 0),
            (0xbff0_0000_0000_0000, 1 << 1),
            (0x8000_0000_0000_0001, 1 << 2),
            (SIGN_D, 1 << 3),
            (0, 1 << 4),
            (1, 1 << 5),
            (ONE_D, 1 << 6),
            (0x7ff0_0000_0000_0000, 1 << 7),
            (0x7ff0_0000_0000_0001, 1 << 8),
            (CANON_D, 1 << 9),
        ];
        for (v, want) in cases {
            assert_eq!(exec(op::CLASS, true, v, 0, 0, 0).0, want, "{v:#x}");
        }
        assert_eq!(exec(op::CLASS, false, 0x3f80_0000, 0, 0, 0).0, 1 << 9, "unboxed = canonical NaN");
        assert_eq!(exec(op::CLASS, false, BOX | 0x8000_0001, 0, 0, 0).0, 1 << 2);
    }

    /// xorshift64* (deterministic, no dependency).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    /// A random value of the format: mostly moderate exponents (results that
    /// take the fast path), sometimes exponents near the underflow and
    /// overflow thresholds, special encodings and fully random bits.
    fn operand(r: &mut Rng, dbl: bool) -> u64 {
        let v = r.next();
        let (ebits, fbits, bias) = if dbl { (11, 52, 1023i64) } else { (8, 23, 127i64) };
        let emax = (1i64 << ebits) - 1;
        let exp = match v % 8 {
            0 => (r.next() % emax as u64 + 1) as i64,          // anything, incl. inf/NaN
            1 => (r.next() % 60) as i64,                       // near/below the normal range
            2 => emax - 1 - (r.next() % 60) as i64,            // near overflow
            3 => bias / 2 + (r.next() % (bias as u64)) as i64, // wide range around 1
            _ => bias - 20 + (r.next() % 40) as i64,           // close to 1
        };
        let frac = match r.next() % 8 {
            0 => 0,
            1 => (1 << fbits) - 1,
            _ => r.next() & ((1 << fbits) - 1),
        };
        let x = (v >> 63) << (ebits + fbits) | (exp as u64) << fbits | frac;
        if dbl {
            x
        } else {
            box_s(x as u32)
        }
    }

    /// Differential test: wherever the host path answers, SoftFloat (RNE)
    /// gives the same bits and no flag other than NX.
    #[test]
    fn host_fast_path_matches_softfloat() {
        let mut r = Rng(0x9e37_79b9_7f4a_7c15);
        let mut taken = [0u32; 9];
        let n = 250_000;
        for dbl in [true, false] {
            for op in op::ADD..=op::NMADD {
                for _ in 0..n {
                    let (a, b, c) = (operand(&mut r, dbl), operand(&mut r, dbl), operand(&mut r, dbl));
                    let Some(h) = exec_host(op, dbl, a, b, c) else { continue };
                    let (s, f) = exec(op, dbl, a, b, c, 0);
                    assert_eq!((h, f & !flags::NX), (s, 0), "op {op} dbl {dbl} {a:#x} {b:#x} {c:#x}");
                    taken[op as usize] += 1;
                }
            }
        }
        // The fast path must actually be exercised for every operation.
        for (op, &t) in taken.iter().enumerate() {
            assert!(t > n / 4, "op {op}: host path taken only {t} times");
        }
    }

    #[test]
    fn host_fast_path_boundaries() {
        let min = f64::MIN_POSITIVE;
        // A result of exactly MIN, and products just below it, fall back.
        assert_eq!(exec_host(op::MUL, true, min.to_bits(), 1f64.to_bits(), 0), None);
        let below = (min * 0.75).to_bits(); // subnormal
        assert_eq!(exec_host(op::ADD, true, below, 0, 0), None);
        // A subnormal input with a normal result is fine (exact here: 2^-1023 * 4).
        assert_eq!(exec_host(op::MUL, true, (min / 2.0).to_bits(), 4f64.to_bits(), 0), Some((min * 2.0).to_bits()));
        // Zero, infinite, NaN results and DZ fall back.
        let one = 1f64.to_bits();
        assert_eq!(exec_host(op::SUB, true, one, one, 0), None);
        assert_eq!(exec_host(op::DIV, true, one, 0, 0), None);
        assert_eq!(exec_host(op::MUL, true, f64::MAX.to_bits(), 2f64.to_bits(), 0), None);
        assert_eq!(exec_host(op::SQRT, true, (-4f64).to_bits(), 0, 0), None);
        // Improperly boxed single: canonical NaN, falls back.
        assert_eq!(exec_host(op::ADD, false, 0x3f80_0000, ONE_S, 0), None);
        assert_eq!(exec_host(op::ADD, false, ONE_S, ONE_S, 0), Some(TWO_S));
        // Non-arithmetic operations never take it.
        assert_eq!(exec_host(op::MIN, true, one, one, 0), None);
    }

    #[test]
    fn underflow_is_after_rounding() {
        // 2^-127 * (2 - 2^-24) to single: under RNE it rounds (at unbounded
        // exponent) to 2^-126, so it is not tiny after rounding: NX only.
        let x = 0x380f_ffff_f000_0000;
        assert_eq!(exec(op::CVT_FMT, true, x, 0, 0, 0), (BOX | 0x0080_0000, flags::NX));
        // Under RTZ it stays tiny and inexact: UF|NX.
        assert_eq!(exec(op::CVT_FMT, true, x, 0, 0, 1), (BOX | 0x007f_ffff, flags::UF | flags::NX));
    }
}
