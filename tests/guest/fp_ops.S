/* F and D: results and fflags for normal, subnormal, infinite and NaN
 * (quiet/signalling) operands under every rounding mode, from the ISA manual
 * and IEEE 754-2019. RISC-V specifics checked here: the canonical NaN
 * (0x7fc00000 / 0x7ff8000000000000) from every NaN-producing operation (no
 * payload propagation), NaN boxing (an improperly boxed single reads as the
 * canonical NaN; fmv.x.w and fsw do not unbox), fmin/fmax as minimumNumber/
 * maximumNumber (-0 < +0, one NaN gives the other operand, sNaN raises NV),
 * feq quiet / flt, fle signalling, fcvt saturation (NaN -> max), fused
 * multiply-add with a single rounding, and fflags accumulation.
 * fflags: NV=0x10 DZ=0x08 OF=0x04 UF=0x02 NX=0x01.
 *
 * Built twice: as fp_ops, every checked operation starts with fflags clear; as
 * fp_ops_nx (-DPRESET_NX), with NX already set, so the translator's inline host
 * arithmetic (used only when NX is set and the rounding mode is RNE) runs, and
 * every NaN, infinity, zero, subnormal and overflow result must still leave it
 * for the exact path with the same result and flags.
 */
#include "asm_test.h"

#ifdef PRESET_NX
#define FL0 1
#else
#define FL0 0
#endif

#define B(x) (0xffffffff00000000 | (x))   /* NaN-boxed single */
#define ONE_S   0x3f800000
#define TWO_S   0x40000000
#define QNAN_S  0x7fc00000
#define SNAN_S  0x7f800001
#define INF_S   0x7f800000
#define MAX_S   0x7f7fffff
#define ULP24_S 0x33800000                 /* 2^-24 */
#define ONE_D   0x3ff0000000000000
#define QNAN_D  0x7ff8000000000000
#define SNAN_D  0x7ff0000000000001
#define INF_D   0x7ff0000000000000
#define ULP53_D 0x3ca0000000000000         /* 2^-53 */

/* FP result: fs1..fs3 = a, b, c (raw 64-bit bits), run the instruction (which
 * writes fs0), check fs0's 64 bits and fflags. */
#define TF(res, flags, a, b, c, ...)       \
    li t0, a; fmv.d.x fs1, t0;             \
    li t0, b; fmv.d.x fs2, t0;             \
    li t0, c; fmv.d.x fs3, t0;             \
    csrwi fflags, FL0;                     \
    __VA_ARGS__;                           \
    fmv.x.d s3, fs0;                       \
    csrr s4, fflags;                       \
    CHECKI(s3, res);                       \
    CHECKI(s4, (flags) | FL0)

/* Integer result: the instruction writes s3 from fs1/fs2. */
#define TX(res, flags, a, b, ...)          \
    li t0, a; fmv.d.x fs1, t0;             \
    li t0, b; fmv.d.x fs2, t0;             \
    li s3, 0x5555;                         \
    csrwi fflags, FL0;                     \
    __VA_ARGS__;                           \
    csrr s4, fflags;                       \
    CHECKI(s3, res);                       \
    CHECKI(s4, (flags) | FL0)

/* From an integer: s1 = a, the instruction writes fs0. */
#define TI(res, flags, a, ...)             \
    li s1, a;                              \
    csrwi fflags, FL0;                     \
    __VA_ARGS__;                           \
    fmv.x.d s3, fs0;                       \
    csrr s4, fflags;                       \
    CHECKI(s3, res);                       \
    CHECKI(s4, (flags) | FL0)

#ifdef PRESET_NX
TEST_NAME(fp_ops_nx)
#else
TEST_NAME(fp_ops)
#endif
TEST_BEGIN
    li t0, 1 << 13                /* mstatus.FS = Initial */
    csrs mstatus, t0

    /* ---- the dynamic rounding mode (frm) for an instruction without one ---- */
    fsrmi 1                       /* RTZ */
    TF(ONE_D, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2)
    TF(B(ONE_S), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2)
    TF(0x3fd5555555555555, 1, ONE_D, 0x4008000000000000, 0, fdiv.d fs0, fs1, fs2)
    fsrmi 3                       /* RUP */
    TF(0x3ff0000000000001, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2)
    TF(0x3fd5555555555556, 1, ONE_D, 0x4008000000000000, 0, fdiv.d fs0, fs1, fs2)
    TF(0x3ff6a09e667f3bcd, 1, 0x4000000000000000, 0, 0, fsqrt.d fs0, fs1)
    fsrmi 0                       /* RNE */
    TF(ONE_D, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2)
    TF(0x3fd5555555555555, 1, ONE_D, 0x4008000000000000, 0, fdiv.d fs0, fs1, fs2)
    /* fused: 1 * 1 + 2^-53 (tie, even), and the sign-flipped forms */
    TF(ONE_D, 1, ONE_D, ONE_D, ULP53_D, fmadd.d fs0, fs1, fs2, fs3)
    TF(0xbff0000000000000, 1, ONE_D, ONE_D, ULP53_D, fnmadd.d fs0, fs1, fs2, fs3)
    TF(0x3fefffffffffffff, 0, ONE_D, ONE_D, ULP53_D, fmsub.d fs0, fs1, fs2, fs3)
    TF(0xbfefffffffffffff, 0, ONE_D, ONE_D, ULP53_D, fnmsub.d fs0, fs1, fs2, fs3)
    TF(B(0x3fc00000), 0, B(ONE_S), B(0x3f000000), B(ONE_S), fmadd.s fs0, fs1, fs2, fs3)
    TF(B(0xbfc00000), 0, B(ONE_S), B(0x3f000000), B(ONE_S), fnmadd.s fs0, fs1, fs2, fs3)
    TF(B(0xbf000000), 0, B(ONE_S), B(0x3f000000), B(ONE_S), fmsub.s fs0, fs1, fs2, fs3)
    TF(B(0x3f000000), 0, B(ONE_S), B(0x3f000000), B(ONE_S), fnmsub.s fs0, fs1, fs2, fs3)
    /* results at the edges of the normal range */
    TF(0x0010000000000000, 0, 0x0020000000000000, 0x3fe0000000000000, 0, fmul.d fs0, fs1, fs2)
    TF(0x0010000000000002, 0, 0x0020000000000002, 0x3fe0000000000000, 0, fmul.d fs0, fs1, fs2)
    TF(0x7fefffffffffffff, 0, 0x7fefffffffffffff, ONE_D, 0, fmul.d fs0, fs1, fs2)
    TF(0x0000000000000000, 0, ONE_D, 0xbff0000000000000, 0, fadd.d fs0, fs1, fs2)
    TF(0x3ff0000000000000, 0, 0x8000000000000000, ONE_D, 0, fadd.d fs0, fs1, fs2)

    /* ---- fadd.s: 1 + 2^-24 is exactly halfway between 1 and 1+2^-23 ---- */
    TF(B(ONE_S), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2, rne)   /* tie to even */
    TF(B(ONE_S), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2, rtz)
    TF(B(ONE_S), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2, rdn)
    TF(B(0x3f800001), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2, rup)
    TF(B(0x3f800001), 1, B(ONE_S), B(ULP24_S), 0, fadd.s fs0, fs1, fs2, rmm) /* tie away */
    /* negative: -1 - 2^-24 */
    TF(B(0xbf800000), 1, B(0xbf800000), B(0xb3800000), 0, fadd.s fs0, fs1, fs2, rne)
    TF(B(0xbf800000), 1, B(0xbf800000), B(0xb3800000), 0, fadd.s fs0, fs1, fs2, rtz)
    TF(B(0xbf800001), 1, B(0xbf800000), B(0xb3800000), 0, fadd.s fs0, fs1, fs2, rdn)
    TF(B(0xbf800000), 1, B(0xbf800000), B(0xb3800000), 0, fadd.s fs0, fs1, fs2, rup)
    TF(B(0xbf800001), 1, B(0xbf800000), B(0xb3800000), 0, fadd.s fs0, fs1, fs2, rmm)
    /* x - x is +0, except -0 when rounding down */
    TF(B(0), 0, B(ONE_S), B(ONE_S), 0, fsub.s fs0, fs1, fs2, rne)
    TF(B(0x80000000), 0, B(ONE_S), B(ONE_S), 0, fsub.s fs0, fs1, fs2, rdn)
    /* inf - inf: invalid */
    TF(B(QNAN_S), 0x10, B(INF_S), B(INF_S), 0, fsub.s fs0, fs1, fs2, rne)
    /* NaN operands: canonical result, NV only for signalling */
    TF(B(QNAN_S), 0, B(0x7fc12345), B(ONE_S), 0, fadd.s fs0, fs1, fs2, rne)
    TF(B(QNAN_S), 0x10, B(SNAN_S), B(ONE_S), 0, fadd.s fs0, fs1, fs2, rne)
    TF(B(QNAN_S), 0, B(0xffc00001), B(ONE_S), 0, fmul.s fs0, fs1, fs2, rne)
    /* improperly boxed input reads as the canonical NaN (quiet) */
    TF(B(QNAN_S), 0, ONE_S, B(ONE_S), 0, fadd.s fs0, fs1, fs2, rne)
    TF(B(QNAN_S), 0, 0x7fffffff3f800000, B(ONE_S), 0, fadd.s fs0, fs1, fs2, rne)

    /* ---- fmul.s overflow: MAX * 2 ---- */
    TF(B(INF_S), 5, B(MAX_S), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rne)
    TF(B(MAX_S), 5, B(MAX_S), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rtz)
    TF(B(MAX_S), 5, B(MAX_S), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rdn)
    TF(B(INF_S), 5, B(MAX_S), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rup)
    TF(B(INF_S), 5, B(MAX_S), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rmm)
    TF(B(0xff7fffff), 5, B(0xff7fffff), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rup)
    TF(B(0xff800000), 5, B(0xff7fffff), B(TWO_S), 0, fmul.s fs0, fs1, fs2, rdn)
    /* subnormals: 2^-126 * 0.5 is exact (no UF); (2^-126+2^-149) * 0.5 is a tie */
    TF(B(0x00400000), 0, B(0x00800000), B(0x3f000000), 0, fmul.s fs0, fs1, fs2, rne)
    TF(B(0x00400000), 3, B(0x00800001), B(0x3f000000), 0, fmul.s fs0, fs1, fs2, rne)
    TF(B(0x00400001), 3, B(0x00800001), B(0x3f000000), 0, fmul.s fs0, fs1, fs2, rup)
    TF(B(0x00400000), 3, B(0x00800001), B(0x3f000000), 0, fmul.s fs0, fs1, fs2, rtz)
    TF(B(0x00400001), 3, B(0x00800001), B(0x3f000000), 0, fmul.s fs0, fs1, fs2, rmm)
    /* inf * 0: invalid */
    TF(B(QNAN_S), 0x10, B(INF_S), B(0), 0, fmul.s fs0, fs1, fs2, rne)

    /* ---- fdiv.s ---- */
    TF(B(0x3eaaaaab), 1, B(ONE_S), B(0x40400000), 0, fdiv.s fs0, fs1, fs2, rne)
    TF(B(0x3eaaaaaa), 1, B(ONE_S), B(0x40400000), 0, fdiv.s fs0, fs1, fs2, rtz)
    TF(B(0x3eaaaaaa), 1, B(ONE_S), B(0x40400000), 0, fdiv.s fs0, fs1, fs2, rdn)
    TF(B(0x3eaaaaab), 1, B(ONE_S), B(0x40400000), 0, fdiv.s fs0, fs1, fs2, rup)
    TF(B(0x3eaaaaab), 1, B(ONE_S), B(0x40400000), 0, fdiv.s fs0, fs1, fs2, rmm)
    TF(B(INF_S), 8, B(ONE_S), B(0), 0, fdiv.s fs0, fs1, fs2, rne)
    TF(B(0xff800000), 8, B(ONE_S), B(0x80000000), 0, fdiv.s fs0, fs1, fs2, rne)
    TF(B(QNAN_S), 0x10, B(0), B(0), 0, fdiv.s fs0, fs1, fs2, rne)
    TF(B(0), 0, B(ONE_S), B(INF_S), 0, fdiv.s fs0, fs1, fs2, rne)

    /* ---- fsqrt.s ---- */
    TF(B(TWO_S), 0, B(0x40800000), 0, 0, fsqrt.s fs0, fs1, rne)
    TF(B(QNAN_S), 0x10, B(0xbf800000), 0, 0, fsqrt.s fs0, fs1, rne)
    TF(B(0x80000000), 0, B(0x80000000), 0, 0, fsqrt.s fs0, fs1, rne)
    TF(B(INF_S), 0, B(INF_S), 0, 0, fsqrt.s fs0, fs1, rne)
    /* sqrt(2) = 1.41421353816986083984375 (0x3fb504f3) rounded to nearest */
    TF(B(0x3fb504f3), 1, B(TWO_S), 0, 0, fsqrt.s fs0, fs1, rne)
    TF(B(0x3fb504f4), 1, B(TWO_S), 0, 0, fsqrt.s fs0, fs1, rup)

    /* ---- fused multiply-add (one rounding) ---- */
    TF(B(0x40a00000), 0, B(TWO_S), B(0x40400000), B(ONE_S), fmsub.s fs0, fs1, fs2, fs3, rne)  /* 2*3-1 */
    TF(B(0x40e00000), 0, B(TWO_S), B(0x40400000), B(ONE_S), fmadd.s fs0, fs1, fs2, fs3, rne)  /* 2*3+1 */
    TF(B(0xc0000000), 0, B(ONE_S), B(ONE_S), B(ONE_S), fnmadd.s fs0, fs1, fs2, fs3, rne)     /* -(1)-1 */
    TF(B(ONE_S), 0, B(ONE_S), B(ONE_S), B(TWO_S), fnmsub.s fs0, fs1, fs2, fs3, rne)          /* -(1)+2 */
    TF(B(ONE_S), 1, B(ONE_S), B(ONE_S), B(ULP24_S), fmadd.s fs0, fs1, fs2, fs3, rne)
    TF(B(0x3f800001), 1, B(ONE_S), B(ONE_S), B(ULP24_S), fmadd.s fs0, fs1, fs2, fs3, rup)
    /* inf * 0 + qNaN raises NV (the spec requires it even with a quiet addend) */
    TF(B(QNAN_S), 0x10, B(INF_S), B(0), B(QNAN_S), fmadd.s fs0, fs1, fs2, fs3, rne)
    /* (1+2^-52)(1-2^-53) - 1 = 2^-53 - 2^-105 = 2^-54 * (2 - 2^-51) exactly; unfused gives 0 */
    TF(0x3c9ffffffffffffe, 0, 0x3ff0000000000001, 0x3fefffffffffffff, ONE_D, fmsub.d fs0, fs1, fs2, fs3, rne)
    TF(0xbc9ffffffffffffe, 0, 0x3ff0000000000001, 0x3fefffffffffffff, ONE_D, fnmsub.d fs0, fs1, fs2, fs3, rne)

    /* ---- fmin/fmax: minimumNumber/maximumNumber ---- */
    TF(B(0x80000000), 0, B(0), B(0x80000000), 0, fmin.s fs0, fs1, fs2)
    TF(B(0x80000000), 0, B(0x80000000), B(0), 0, fmin.s fs0, fs1, fs2)
    TF(B(0), 0, B(0x80000000), B(0), 0, fmax.s fs0, fs1, fs2)
    TF(B(0), 0, B(0), B(0x80000000), 0, fmax.s fs0, fs1, fs2)
    TF(B(ONE_S), 0, B(0x7fc12345), B(ONE_S), 0, fmin.s fs0, fs1, fs2)
    TF(B(ONE_S), 0, B(ONE_S), B(0x7fc12345), 0, fmax.s fs0, fs1, fs2)
    TF(B(ONE_S), 0x10, B(SNAN_S), B(ONE_S), 0, fmin.s fs0, fs1, fs2)
    TF(B(QNAN_S), 0, B(0x7fc12345), B(0xffc00001), 0, fmax.s fs0, fs1, fs2)
    TF(B(QNAN_S), 0x10, B(SNAN_S), B(SNAN_S), 0, fmin.s fs0, fs1, fs2)
    TF(B(0xbf800000), 0, B(0xbf800000), B(ONE_S), 0, fmin.s fs0, fs1, fs2)
    TF(ONE_D, 0, QNAN_D, ONE_D, 0, fmax.d fs0, fs1, fs2)
    TF(0x8000000000000000, 0, 0, 0x8000000000000000, 0, fmin.d fs0, fs1, fs2)
    TF(ONE_D, 0x10, SNAN_D, ONE_D, 0, fmax.d fs0, fs1, fs2)

    /* ---- sign injection: unboxed inputs become the canonical NaN ---- */
    TF(B(0xbf800000), 0, B(ONE_S), B(0x80000000), 0, fsgnj.s fs0, fs1, fs2)
    TF(B(0xbf800000), 0, B(ONE_S), B(ONE_S), 0, fsgnjn.s fs0, fs1, fs2)
    TF(B(ONE_S), 0, B(0xbf800000), B(0xbf800000), 0, fsgnjx.s fs0, fs1, fs2)
    TF(B(0xffc00000), 0, ONE_S, ONE_S, 0, fsgnjn.s fs0, fs1, fs2)
    TF(B(0x7f800001), 0, B(0xff800001), B(ONE_S), 0, fsgnj.s fs0, fs1, fs2)  /* payload kept, no NV */
    TF(0xbff0000000000000, 0, ONE_D, 0x8000000000000000, 0, fsgnj.d fs0, fs1, fs2)
    TF(0x3ff0000000000000, 0, 0xbff0000000000000, 0xbff0000000000000, 0, fsgnjx.d fs0, fs1, fs2)
    TF(0x7ff8000000000000, 0, 0xfff8000000000000, 0x8000000000000000, 0, fsgnjn.d fs0, fs1, fs2)

    /* ---- compares ---- */
    TX(0, 0, B(QNAN_S), B(ONE_S), feq.s s3, fs1, fs2)
    TX(0, 0x10, B(SNAN_S), B(ONE_S), feq.s s3, fs1, fs2)
    TX(0, 0x10, B(QNAN_S), B(ONE_S), flt.s s3, fs1, fs2)
    TX(0, 0x10, B(QNAN_S), B(ONE_S), fle.s s3, fs1, fs2)
    TX(1, 0, B(0x80000000), B(0), feq.s s3, fs1, fs2)
    TX(0, 0, B(0x80000000), B(0), flt.s s3, fs1, fs2)
    TX(1, 0, B(0x80000000), B(0), fle.s s3, fs1, fs2)
    TX(1, 0, B(0xbf800000), B(ONE_S), flt.s s3, fs1, fs2)
    TX(0, 0, ONE_S, ONE_S, feq.s s3, fs1, fs2)     /* unboxed: both canonical NaN */
    TX(1, 0, ONE_D, ONE_D, fle.d s3, fs1, fs2)
    TX(0, 0x10, QNAN_D, ONE_D, flt.d s3, fs1, fs2)
    TX(0, 0x10, ONE_D, SNAN_D, feq.d s3, fs1, fs2)
    TX(1, 0, 0xfff0000000000000, ONE_D, flt.d s3, fs1, fs2)

    /* ---- fclass ---- */
    TX(0x001, 0, B(0xff800000), 0, fclass.s s3, fs1)
    TX(0x002, 0, B(0xbf800000), 0, fclass.s s3, fs1)
    TX(0x004, 0, B(0x80000001), 0, fclass.s s3, fs1)
    TX(0x008, 0, B(0x80000000), 0, fclass.s s3, fs1)
    TX(0x010, 0, B(0), 0, fclass.s s3, fs1)
    TX(0x020, 0, B(0x007fffff), 0, fclass.s s3, fs1)
    TX(0x040, 0, B(ONE_S), 0, fclass.s s3, fs1)
    TX(0x080, 0, B(INF_S), 0, fclass.s s3, fs1)
    TX(0x100, 0, B(SNAN_S), 0, fclass.s s3, fs1)
    TX(0x200, 0, B(QNAN_S), 0, fclass.s s3, fs1)
    TX(0x200, 0, ONE_S, 0, fclass.s s3, fs1)
    TX(0x001, 0, 0xfff0000000000000, 0, fclass.d s3, fs1)
    TX(0x004, 0, 0x800fffffffffffff, 0, fclass.d s3, fs1)
    TX(0x020, 0, 0x0000000000000001, 0, fclass.d s3, fs1)
    TX(0x100, 0, SNAN_D, 0, fclass.d s3, fs1)
    TX(0x200, 0, 0xfff8000000000000, 0, fclass.d s3, fs1)

    /* ---- fcvt to integer: rounding, saturation, NV vs NX ---- */
    TX(2, 1, B(0x3fc00000), 0, fcvt.w.s s3, fs1, rne)      /* 1.5 */
    TX(1, 1, B(0x3fc00000), 0, fcvt.w.s s3, fs1, rtz)
    TX(1, 1, B(0x3fc00000), 0, fcvt.w.s s3, fs1, rdn)
    TX(2, 1, B(0x3fc00000), 0, fcvt.w.s s3, fs1, rup)
    TX(2, 1, B(0x3fc00000), 0, fcvt.w.s s3, fs1, rmm)
    TX(-2, 1, B(0xbfc00000), 0, fcvt.w.s s3, fs1, rne)     /* -1.5 */
    TX(-1, 1, B(0xbfc00000), 0, fcvt.w.s s3, fs1, rtz)
    TX(-2, 1, B(0xbfc00000), 0, fcvt.w.s s3, fs1, rdn)
    TX(-1, 1, B(0xbfc00000), 0, fcvt.w.s s3, fs1, rup)
    TX(-2, 1, B(0xbfc00000), 0, fcvt.w.s s3, fs1, rmm)
    TX(2, 1, B(0x40200000), 0, fcvt.w.s s3, fs1, rne)      /* 2.5: tie to even */
    TX(3, 1, B(0x40200000), 0, fcvt.w.s s3, fs1, rmm)
    TX(0x7fffffff, 0x10, B(QNAN_S), 0, fcvt.w.s s3, fs1, rne)
    TX(0x7fffffff, 0x10, B(SNAN_S), 0, fcvt.w.s s3, fs1, rne)
    TX(0x7fffffff, 0x10, B(INF_S), 0, fcvt.w.s s3, fs1, rne)
    TX(0xffffffff80000000, 0x10, B(0xff800000), 0, fcvt.w.s s3, fs1, rne)
    TX(0x7fffffff, 0x10, B(0x4f32d05e), 0, fcvt.w.s s3, fs1, rne)   /* 3e9 */
    TX(0xffffffff80000000, 0, B(0xcf000000), 0, fcvt.w.s s3, fs1, rne) /* -2^31 fits */
    TX(0, 0x10, B(0xbf800000), 0, fcvt.wu.s s3, fs1, rne)             /* -1 */
    TX(0, 1, B(0xbf000000), 0, fcvt.wu.s s3, fs1, rtz)                /* -0.5 -> 0, inexact */
    TX(0xffffffffffffff00, 0, B(0x4f7fffff), 0, fcvt.wu.s s3, fs1, rne) /* sign-extended */
    TX(0xffffffffffffffff, 0x10, B(QNAN_S), 0, fcvt.wu.s s3, fs1, rne)
    TX(0x7fffffffffffffff, 0x10, B(0x5f000000), 0, fcvt.l.s s3, fs1, rne) /* 2^63 */
    TX(0x8000000000000000, 0, B(0x5f000000), 0, fcvt.lu.s s3, fs1, rne)
    TX(0xffffffffffffffff, 0x10, B(INF_S), 0, fcvt.lu.s s3, fs1, rne)
    TX(0x8000000000000000, 0x10, 0xfff0000000000000, 0, fcvt.l.d s3, fs1, rne)
    TX(0x7fffffff, 0x10, QNAN_D, 0, fcvt.w.d s3, fs1, rne)
    TX(0xffffffff80000000, 1, 0xc1e0000000100000, 0, fcvt.w.d s3, fs1, rtz) /* -2^31 - 2^-1 */
    TX(0xffffffff80000000, 0x10, 0xc1e0000000100000, 0, fcvt.w.d s3, fs1, rdn)
    TX(0xffffffffffffffff, 0, 0x41efffffffe00000, 0, fcvt.wu.d s3, fs1, rne) /* 2^32-1 */
    TX(0xffffffffffffffff, 0x10, 0x41f0000000000000, 0, fcvt.wu.d s3, fs1, rne) /* 2^32 */
    TX(1, 1, 0x3ff8000000000000, 0, fcvt.lu.d s3, fs1, rdn)

    /* ---- fcvt from integer ---- */
    TI(B(0x4b800000), 1, 16777217, fcvt.s.w fs0, s1, rne)   /* 2^24+1: tie to even */
    TI(B(0x4b800001), 1, 16777217, fcvt.s.w fs0, s1, rup)
    TI(B(0x4b800000), 1, 16777217, fcvt.s.w fs0, s1, rdn)
    TI(B(0xcb800001), 1, -16777217, fcvt.s.w fs0, s1, rdn)
    TI(B(0x4f800000), 1, 0xffffffff, fcvt.s.wu fs0, s1, rne)
    TI(B(0x4f7fffff), 1, 0xffffffff, fcvt.s.wu fs0, s1, rtz)
    TI(B(0xbf800000), 0, -1, fcvt.s.l fs0, s1, rne)
    TI(B(0x5f800000), 1, -1, fcvt.s.lu fs0, s1, rne)
    TI(B(0xbf800000), 0, 0x12345678ffffffff, fcvt.s.w fs0, s1, rne) /* low word only */
    TI(0xbff0000000000000, 0, 0xffffffff, fcvt.d.w fs0, s1)
    TI(0x41efffffffe00000, 0, 0xffffffff, fcvt.d.wu fs0, s1)
    TI(0x4340000000000000, 1, 0x20000000000001, fcvt.d.l fs0, s1, rne)  /* 2^53+1 */
    TI(0x4340000000000001, 1, 0x20000000000001, fcvt.d.l fs0, s1, rup)
    TI(0x43f0000000000000, 1, -1, fcvt.d.lu fs0, s1, rne)
    TI(0x43efffffffffffff, 1, -1, fcvt.d.lu fs0, s1, rtz)
    TI(0, 0, 0, fcvt.d.l fs0, s1, rdn)                     /* +0, never -0 */

    /* ---- fcvt between formats ---- */
    TF(B(0x3eaaaaab), 1, 0x3fd5555555555555, 0, 0, fcvt.s.d fs0, fs1, rne)
    TF(B(0x3eaaaaaa), 1, 0x3fd5555555555555, 0, 0, fcvt.s.d fs0, fs1, rtz)
    TF(B(QNAN_S), 0x10, SNAN_D, 0, 0, fcvt.s.d fs0, fs1, rne)
    TF(B(QNAN_S), 0, 0xfff8000000001234, 0, 0, fcvt.s.d fs0, fs1, rne)
    TF(B(INF_S), 5, 0x47f0000000000000, 0, 0, fcvt.s.d fs0, fs1, rne)    /* 2^128 */
    TF(B(MAX_S), 5, 0x47f0000000000000, 0, 0, fcvt.s.d fs0, fs1, rtz)
    TF(B(0x00000001), 0, 0x36a0000000000000, 0, 0, fcvt.s.d fs0, fs1, rne)  /* 2^-149 exact */
    TF(B(0x00000001), 3, 0x3690000000000000, 0, 0, fcvt.s.d fs0, fs1, rup)  /* 2^-150 */
    TF(B(0), 3, 0x3680000000000000, 0, 0, fcvt.s.d fs0, fs1, rne)        /* 2^-151 -> 0 */
    TF(0x3fd5555560000000, 0, B(0x3eaaaaab), 0, 0, fcvt.d.s fs0, fs1)
    TF(QNAN_D, 0, B(0x7fc12345), 0, 0, fcvt.d.s fs0, fs1)
    TF(QNAN_D, 0x10, B(SNAN_S), 0, 0, fcvt.d.s fs0, fs1)
    TF(QNAN_D, 0, ONE_S, 0, 0, fcvt.d.s fs0, fs1)                        /* unboxed */
    TF(0x36a0000000000000, 0, B(0x00000001), 0, 0, fcvt.d.s fs0, fs1)   /* subnormal is exact */

    /* ---- double arithmetic under every rounding mode: 1 + 2^-53 ---- */
    TF(ONE_D, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2, rne)
    TF(ONE_D, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2, rtz)
    TF(ONE_D, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2, rdn)
    TF(0x3ff0000000000001, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2, rup)
    TF(0x3ff0000000000001, 1, ONE_D, ULP53_D, 0, fadd.d fs0, fs1, fs2, rmm)
    TF(0x3fd5555555555555, 1, ONE_D, 0x4008000000000000, 0, fdiv.d fs0, fs1, fs2, rne)
    TF(0x3fd5555555555556, 1, ONE_D, 0x4008000000000000, 0, fdiv.d fs0, fs1, fs2, rup)
    TF(0x3ff6a09e667f3bcd, 1, 0x4000000000000000, 0, 0, fsqrt.d fs0, fs1, rne)
    TF(0x3ff6a09e667f3bcc, 1, 0x4000000000000000, 0, 0, fsqrt.d fs0, fs1, rtz)
    TF(QNAN_D, 0x10, 0xbff0000000000000, 0, 0, fsqrt.d fs0, fs1, rne)
    TF(INF_D, 5, 0x7fefffffffffffff, 0x7fefffffffffffff, 0, fadd.d fs0, fs1, fs2, rne)
    TF(0x7fefffffffffffff, 5, 0x7fefffffffffffff, 0x7fefffffffffffff, 0, fadd.d fs0, fs1, fs2, rtz)
    TF(QNAN_D, 0x10, SNAN_D, ONE_D, 0, fmul.d fs0, fs1, fs2, rne)
    TF(QNAN_D, 0, 0x7ff8000000000abc, ONE_D, 0, fsub.d fs0, fs1, fs2, rne)
    TF(0x8000000000000000, 0, ONE_D, ONE_D, 0, fsub.d fs0, fs1, fs2, rdn)
    TF(0x0000000000000001, 3, 0x0010000000000000, 0x3ca0000000000000, 0, fmul.d fs0, fs1, fs2, rup)
    TF(0, 3, 0x0010000000000000, 0x3ca0000000000000, 0, fmul.d fs0, fs1, fs2, rne)
    TF(0xfff0000000000000, 8, 0xbff0000000000000, 0, 0, fdiv.d fs0, fs1, fs2, rne)

    /* ---- fflags accumulate across instructions ---- */
    csrwi fflags, 0
    li t0, B(ONE_S)
    fmv.d.x fs1, t0
    fmv.d.x fs2, zero
    fdiv.s fs0, fs1, fs2          /* fs2 = 0 unboxed: reads as NaN */
    csrr s4, fflags
    CHECKI(s4, 0)                 /* unboxed 0 is the canonical NaN: 1/NaN, no flags */
    li t0, B(0)
    fmv.d.x fs2, t0
    fdiv.s fs0, fs1, fs2          /* DZ */
    li t0, B(0x40400000)
    fmv.d.x fs2, t0
    fdiv.s fs0, fs1, fs2          /* NX */
    csrr s4, fflags
    CHECKI(s4, 9)

    /* ---- fmv and boxing of moves ---- */
    li t0, 0x1234567880000000
    fmv.d.x fs1, t0
    fmv.x.w s3, fs1               /* low word, sign-extended, no unboxing */
    CHECKI(s3, 0xffffffff80000000)
    li t0, 0x123456783f800000
    fmv.w.x fs1, t0               /* boxes the low word */
    fmv.x.d s3, fs1
    CHECKI(s3, B(ONE_S))
    TEST_END
