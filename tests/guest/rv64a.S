/* RV64A: lr/sc and every AMO (.w and .d), expected values from the spec.
 * AMO rd receives the OLD memory value (sign-extended from 32 bits for .w);
 * memory receives op(old, rs2). .w AMOs must not touch the neighbouring word
 * (a 0xa5a5a5a5 sentinel sits in the upper half of each test dword).
 * min/max are signed, minu/maxu unsigned; .w compares the 32-bit values.
 * lr/sc: only what the spec guarantees is tested: sc after an lr to the same
 * address with no intervening store succeeds (rd = 0), and sc to an address
 * outside the reservation fails (rd != 0, memory untouched).
 * Misaligned lr -> load address misaligned (cause 4), misaligned AMO/sc ->
 * store/AMO address misaligned (cause 6), mtval = the address.
 */
#include "asm_test.h"

#define SENT 0xa5a5a5a500000000

/* inst on the low word of a dword whose upper word holds the sentinel. */
#define AMO_W(inst, init, operand, exp_old, exp_new) \
    la s0, amo_mem;                                  \
    li s1, SENT | (init);                            \
    sd s1, 0(s0);                                    \
    li s2, operand;                                  \
    inst s3, s2, (s0);                               \
    CHECKI(s3, exp_old);                             \
    ld s4, 0(s0);                                    \
    CHECKI(s4, SENT | (exp_new))

/* QEMU 7.2 reports misaligned AMOs as cause 4 (load misaligned); the spec
 * (privileged spec, "store/AMO address misaligned") requires 6. Accept 4 only
 * after printing a QUIRK line: the harness rejects QUIRK lines when it runs
 * Kite, and tolerates them when validating on an external emulator. */
#define AMO_MISALIGNED_CAUSE(reg)                    \
    LOAD_VAR(reg, trap_cause);                       \
    li t0, 4;                                        \
    bne reg, t0, 4f;                                 \
    la a0, quirk_amo;                                \
    call uart_puts;                                  \
    li reg, 6;                                       \
4:

#define AMO_D(inst, init, operand, exp_old, exp_new) \
    la s0, amo_mem;                                  \
    li s1, init;                                     \
    sd s1, 0(s0);                                    \
    li s2, operand;                                  \
    inst s3, s2, (s0);                               \
    CHECKI(s3, exp_old);                             \
    ld s4, 0(s0);                                    \
    CHECKI(s4, exp_new)

TEST_NAME(rv64a)
TEST_BEGIN
    /* ---- 32-bit AMOs: old value sign-extended into rd ---- */
    AMO_W(amoswap.w, 0x80000001, 0x12345678, 0xffffffff80000001, 0x12345678)
    /* upper bits of rs2 are ignored by .w */
    AMO_W(amoswap.w, 0x00000005, 0x7777777787654321, 5, 0x87654321)
    /* 0x7fffffff + 1 wraps to 0x80000000 within the word */
    AMO_W(amoadd.w, 0x7fffffff, 1, 0x7fffffff, 0x80000000)
    /* 0xffffffff + 2 = 1: the carry must not reach the sentinel word */
    AMO_W(amoadd.w, 0xffffffff, 2, 0xffffffffffffffff, 0x00000001)
    AMO_W(amoxor.w, 0xff00ff00, 0x0ff00ff0, 0xffffffffff00ff00, 0xf0f0f0f0)
    AMO_W(amoand.w, 0xff00ff00, 0x0ff00ff0, 0xffffffffff00ff00, 0x0f000f00)
    AMO_W(amoor.w,  0xff00ff00, 0x0ff00ff0, 0xffffffffff00ff00, 0xfff0fff0)
    /* signed: 0x80000000 = INT32_MIN < 1 */
    AMO_W(amomin.w, 0x80000000, 1, 0xffffffff80000000, 0x80000000)
    AMO_W(amomax.w, 0x80000000, 1, 0xffffffff80000000, 0x00000001)
    /* unsigned: 0x80000000 > 1 */
    AMO_W(amominu.w, 0x80000000, 1, 0xffffffff80000000, 0x00000001)
    AMO_W(amomaxu.w, 0x80000000, 1, 0xffffffff80000000, 0x80000000)
    /* rs2 garbage upper bits: compare only the low word; -1 (0xffffffff) vs 2 */
    AMO_W(amomin.w, 0x00000002, 0x00000001ffffffff, 2, 0xffffffff)
    AMO_W(amomaxu.w, 0x00000002, 0x00000001ffffffff, 2, 0xffffffff)

    /* ---- 64-bit AMOs ---- */
    AMO_D(amoswap.d, 0x8000000000000001, 0x123456789abcdef0, 0x8000000000000001, 0x123456789abcdef0)
    AMO_D(amoadd.d, 0x7fffffffffffffff, 1, 0x7fffffffffffffff, 0x8000000000000000)
    AMO_D(amoadd.d, 0x00000000ffffffff, 1, 0x00000000ffffffff, 0x0000000100000000)
    AMO_D(amoxor.d, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xff00ff00ff00ff00, 0xf0f0f0f0f0f0f0f0)
    AMO_D(amoand.d, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xff00ff00ff00ff00, 0x0f000f000f000f00)
    AMO_D(amoor.d,  0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0, 0xff00ff00ff00ff00, 0xfff0fff0fff0fff0)
    AMO_D(amomin.d, 0x8000000000000000, 1, 0x8000000000000000, 0x8000000000000000)
    AMO_D(amomax.d, 0x8000000000000000, 1, 0x8000000000000000, 1)
    AMO_D(amominu.d, 0x8000000000000000, 1, 0x8000000000000000, 1)
    AMO_D(amomaxu.d, 0x8000000000000000, 1, 0x8000000000000000, 0x8000000000000000)
    /* A .d compare uses all 64 bits: 0x1_00000000 > 0xffffffff unsigned and signed */
    AMO_D(amomin.d, 0x0000000100000000, 0x00000000ffffffff, 0x0000000100000000, 0x00000000ffffffff)
    AMO_D(amomaxu.d, 0x0000000100000000, 0x00000000ffffffff, 0x0000000100000000, 0x0000000100000000)
    /* ordering bits do not change the result */
    AMO_D(amoadd.d.aqrl, 40, 2, 40, 42)
    AMO_W(amoadd.w.aq, 40, 2, 40, 42)

    /* rd = x0: memory still updated */
    la s0, amo_mem
    li s1, 10
    sd s1, 0(s0)
    li s2, 5
    amoadd.d x0, s2, (s0)
    ld s4, 0(s0)
    CHECKI(s4, 15)

    /* ---- lr/sc ---- */
    la s0, amo_mem
    li s1, SENT | 0x80000001
    sd s1, 0(s0)
    lr.w s3, (s0)                  /* sign-extends the loaded word */
    li s2, 0x11223344
    sc.w s4, s2, (s0)              /* same address, nothing in between: succeeds */
    CHECKI(s3, 0xffffffff80000001)
    CHECKI(s4, 0)
    ld s5, 0(s0)
    CHECKI(s5, SENT | 0x11223344)

    li s1, 0x8000000000000007
    sd s1, 0(s0)
    lr.d.aq s3, (s0)
    li s2, 0x0123456789abcdef
    sc.d.rl s4, s2, (s0)
    CHECKI(s3, 0x8000000000000007)
    CHECKI(s4, 0)
    ld s5, 0(s0)
    CHECKI(s5, 0x0123456789abcdef)

    /* lr/sc increment loop (the usual atomic-add idiom): must complete. */
    li s1, 100
    sd s1, 0(s0)
    li s6, 0                       /* attempts, bounded */
1:  addi s6, s6, 1
    li t0, 1000
    bgtu s6, t0, 2f
    lr.d s3, (s0)
    addi s3, s3, 1
    sc.d s4, s3, (s0)
    bnez s4, 1b
2:  ld s5, 0(s0)
    CHECKI(s5, 101)

    /* sc.w / sc.d to an address other than the reserved one must fail and
     * leave memory untouched (the other address is a different granule). */
    la s0, amo_mem
    la s7, amo_other
    li s1, 0x5555
    sd s1, 0(s7)
    lr.w s3, (s0)
    li s2, 0x1234
    sc.w s4, s2, (s7)
    snez s4, s4
    CHECKI(s4, 1)
    ld s5, 0(s7)
    CHECKI(s5, 0x5555)
    lr.d s3, (s0)
    sc.d s4, s2, (s7)
    snez s4, s4
    CHECKI(s4, 1)
    ld s5, 0(s7)
    CHECKI(s5, 0x5555)

    /* ---- misaligned atomics trap (plain misaligned accesses do not) ---- */
    USE_RECORDING_TRAP
    la s0, amo_mem
    addi s0, s0, 2
    TRAP_RESUME_AT(3f)
    lr.w s3, (s0)
3:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 4)                  /* load address misaligned */
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s0)
    TRAP_RESUME_AT(3f)
    li s2, 1
    amoadd.w s3, s2, (s0)
3:  AMO_MISALIGNED_CAUSE(s3)
    CHECKI(s3, 6)                  /* store/AMO address misaligned */
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s0)
    addi s0, s0, 2                 /* 4-aligned but not 8-aligned */
    TRAP_RESUME_AT(3f)
    amoswap.d s3, s2, (s0)
3:  AMO_MISALIGNED_CAUSE(s3)
    CHECKI(s3, 6)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s0)
    TRAP_RESUME_AT(3f)
    lr.d s3, (s0)
3:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 4)
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 4)
    /* (A misaligned sc is not tested: QEMU checks the reservation first and
     * simply fails an sc whose address does not match, without trapping.) */
    USE_UNEXPECTED_TRAP
    TEST_END

    .section .rodata
quirk_amo:
    .asciz "QUIRK misaligned AMO reported as cause 4 (spec: 6)\n"

    .data
    .balign 64
amo_mem:
    .dword 0, 0
    .balign 64
    .skip 64
amo_other:
    .dword 0
