/* F/D state and encodings: mstatus.FS (Off -> every FP instruction and FP
 * CSR access is illegal; an FP write sets Dirty and SD), the fflags/frm/fcsr
 * views, the dynamic rounding mode (frm >= 5 makes a dyn instruction illegal;
 * static rm 5/6 encodings are illegal), FP loads/stores including the
 * compressed c.fld/c.fsd/c.fldsp/c.fsdsp, and NaN boxing on flw/fsw.
 */
#include "asm_test.h"

#define B(x) (0xffffffff00000000 | (x))
#define MSTATUS_FS (3 << 13)

/* Expect the instruction at label `1:` to raise illegal instruction. */
#define EXPECT_ILLEGAL(...)                \
    la t0, trap_count; sd zero, 0(t0);     \
    __VA_ARGS__;                           \
    LOAD_VAR(s3, trap_count);              \
    CHECKI(s3, 1);                         \
    LOAD_VAR(s3, trap_cause);              \
    CHECKI(s3, 2)

    .data
    .balign 16
buf:    .dword 0x1111111111111111, 0x2222222222222222, 0, 0
    .text

TEST_NAME(fp_state)
TEST_BEGIN
    USE_RECORDING_TRAP

    /* ---- FS = Off: FP instructions and FP CSRs are illegal ---- */
    li t0, MSTATUS_FS
    csrc mstatus, t0
    EXPECT_ILLEGAL(fadd.d ft0, ft1, ft2)
    EXPECT_ILLEGAL(fmv.x.d t1, ft0)
    EXPECT_ILLEGAL(la t1, buf; fld ft0, 0(t1))
    EXPECT_ILLEGAL(csrr t1, fcsr)
    EXPECT_ILLEGAL(csrw frm, zero)
    EXPECT_ILLEGAL(csrr t1, fflags)
    csrr s3, mstatus
    srli s3, s3, 13
    andi s3, s3, 3
    CHECKI(s3, 0)

    /* ---- FS = Initial, then an FP write makes it Dirty (and SD) ---- */
    li t0, 1 << 13
    csrs mstatus, t0
    csrr s3, mstatus
    srli s3, s3, 63
    CHECKI(s3, 0)
    fmv.d.x ft0, zero
    csrr s3, mstatus
    srli s3, s3, 13
    andi s3, s3, 3
    CHECKI(s3, 3)
    csrr s3, mstatus
    srli s3, s3, 63
    CHECKI(s3, 1)
    /* Clean: reads keep it Clean; an instruction that only raises fflags
     * (feq on a signalling NaN) modifies FP state, so it makes FS Dirty. */
    li t0, B(0x7f800001)
    fmv.d.x ft4, t0
    li t0, MSTATUS_FS
    csrc mstatus, t0
    li t0, 2 << 13
    csrs mstatus, t0
    fmv.x.d t2, ft4
    csrr s3, mstatus
    srli s3, s3, 13
    andi s3, s3, 3
    CHECKI(s3, 2)
    feq.s t2, ft4, ft4
    csrr s3, mstatus
    srli s3, s3, 13
    andi s3, s3, 3
    QUIRK_IF(s3, 2, 3, "fflags-only update leaves mstatus.FS Clean")
    CHECKI(s3, 3)

    /* ---- fcsr / fflags / frm views ---- */
    li t0, 0xfff
    csrw fcsr, t0
    csrr s3, fcsr
    CHECKI(s3, 0xff)
    csrr s3, fflags
    CHECKI(s3, 0x1f)
    csrr s3, frm
    CHECKI(s3, 7)
    csrwi frm, 2
    csrr s3, fcsr
    CHECKI(s3, 0x5f)
    csrwi fflags, 0x1
    csrr s3, fcsr
    CHECKI(s3, 0x41)
    fsrm s3, zero                 /* swap frm <- 0, old value out */
    CHECKI(s3, 2)

    /* ---- dynamic rounding mode ---- */
    li t0, B(0x3f800000)
    fmv.d.x ft1, t0
    li t0, B(0x33800000)          /* 2^-24: 1 + 2^-24 is a tie */
    fmv.d.x ft2, t0
    csrwi frm, 3                  /* RUP */
    fadd.s ft0, ft1, ft2          /* dyn */
    fmv.x.d s3, ft0
    CHECKI(s3, B(0x3f800001))
    csrwi frm, 0                  /* RNE */
    fadd.s ft0, ft1, ft2
    fmv.x.d s3, ft0
    CHECKI(s3, B(0x3f800000))
    /* frm = 5, 6, 7: dyn instructions are illegal, static ones are fine */
    csrwi frm, 5
    EXPECT_ILLEGAL(fadd.s ft0, ft1, ft2)
    csrwi frm, 6
    EXPECT_ILLEGAL(fcvt.w.d t1, ft1)
    csrwi frm, 7
    EXPECT_ILLEGAL(fsqrt.d ft0, ft1)
    fadd.s ft0, ft1, ft2, rup
    fmv.x.d s3, ft0
    CHECKI(s3, B(0x3f800001))
    /* instructions without a rounding mode ignore frm */
    fmin.s ft0, ft1, ft2
    fmv.x.d s3, ft0
    CHECKI(s3, B(0x33800000))
    csrwi frm, 0
    /* static rm = 5 and 6 are reserved encodings */
    EXPECT_ILLEGAL(.word 0x0220d053)     /* fadd.s ft0, ft1, ft2 with rm=5 */
    EXPECT_ILLEGAL(.word 0x0220e053)     /* rm=6 */
    EXPECT_ILLEGAL(.word 0xc000d053 | (1 << 15)) /* fcvt.w.s with rm=5 */

    /* ---- loads and stores ---- */
    la s5, buf
    flw ft0, 4(s5)                /* 0x11111111, NaN-boxed */
    fmv.x.d s3, ft0
    CHECKI(s3, B(0x11111111))
    fld ft1, 8(s5)
    fmv.x.d s3, ft1
    CHECKI(s3, 0x2222222222222222)
    li t0, 0x12345678cafef00d     /* improperly boxed: fsw stores the low word as is */
    fmv.d.x ft2, t0
    fsw ft2, 16(s5)
    lwu s3, 16(s5)
    CHECKI(s3, 0xcafef00d)
    fsd ft2, 24(s5)
    ld s3, 24(s5)
    CHECKI(s3, 0x12345678cafef00d)
    flw ft3, 1(s5)                /* misaligned: performed */
    fmv.x.d s3, ft3
    CHECKI(s3, B(0x11111111))
    /* compressed forms (with rs1' / rd' in x8..x15 and f8..f15) */
    mv s1, s5
    .option push
    .option rvc
    c.fld fs0, 8(s1)
    c.fsd fs0, 16(s1)
    .option pop
    ld s3, 16(s5)
    CHECKI(s3, 0x2222222222222222)
    addi sp, sp, -32
    li t0, 0x0123456789abcdef
    sd t0, 8(sp)
    .option push
    .option rvc
    c.fldsp fa5, 8(sp)
    c.fsdsp fa5, 16(sp)
    .option pop
    ld s3, 16(sp)
    addi sp, sp, 32
    CHECKI(s3, 0x0123456789abcdef)
    TEST_END
