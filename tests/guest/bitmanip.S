/* Zba, Zbb, Zbs, Zicond and Zicbom/Zicboz: every instruction with edge
 * values from the specifications (W forms use the low 32 bits of the source
 * and sign-extend; shift amounts/bit indexes are taken modulo XLEN; clz/ctz
 * of 0 give XLEN (32 for the W forms); czero.* test the whole rs2). Zicond
 * has no assembler support in this binutils, so it is written as .word.
 */
#include "asm_test.h"

    .data
    .balign 64
block:
    .rept 16
    .dword 0x5a5a5a5a5a5a5a5a
    .endr
    .section .rodata
quirk_cboz: .asciz "QUIRK Zicboz not implemented\n"
    .text

/* czero.eqz / czero.nez s3, s1, s2, checked against `expect`. QEMU 7.2 (the
 * reference) predates Zicond: there the instruction traps (skipped by the
 * recording handler, s3 keeps its marker) and QUIRK supplies the spec value. */
#define ZICOND(enc, expect)                \
    la t0, trap_count; sd zero, 0(t0);      \
    li s3, 0x5555;                          \
    .word enc;                              \
    QUIRK_IF(s3, 0x5555, expect, "Zicond not implemented"); \
    CHECKI(s3, expect)
#define CZERO_EQZ (0x0e04d9b3 | (18 << 20))
#define CZERO_NEZ (0x0e04f9b3 | (18 << 20))

TEST_NAME(bitmanip)
TEST_BEGIN
    /* ---- Zba ---- */
    TEST_RR(sh1add, 0x7, 3, 1)
    TEST_RR(sh2add, 0xd, 3, 1)
    TEST_RR(sh3add, 0x19, 3, 1)
    TEST_RR(sh3add, 0x0, 0x2000000000000000, 0)          /* wraps */
    TEST_RR(add.uw, 0x100000000, 0xffffffffffffffff, 1)  /* zext32(rs1) + rs2 */
    TEST_RR(sh1add.uw, 0x1fffffffe, 0x12345678ffffffff, 0)
    TEST_RR(sh2add.uw, 0x3fffffffc + 4, 0xabcdef00ffffffff, 4)
    TEST_RR(sh3add.uw, 0x400000000, 0x80000000, 0)
    TEST_RI(slli.uw, 0xffffffff00000000, 0x12345678ffffffff, 32)
    TEST_RI(slli.uw, 0x80000000, 0xffffffff80000000, 0)

    /* ---- Zbb: logic with negate ---- */
    TEST_RR(andn, 0xf0, 0xff, 0x0f)
    TEST_RR(orn, 0xfffffffffffffff0 | 0x5, 0x5, 0xf)
    TEST_RR(xnor, 0xffffffffffffff00, 0xf0, 0x0f)
    /* counts */
    li s1, 0
    clz s3, s1
    CHECKI(s3, 64)
    ctz s3, s1
    CHECKI(s3, 64)
    clzw s3, s1
    CHECKI(s3, 32)
    ctzw s3, s1
    CHECKI(s3, 32)
    li s1, 0xffffffff00000001     /* W forms see only the low word */
    clzw s3, s1
    CHECKI(s3, 31)
    ctz s3, s1
    CHECKI(s3, 0)
    cpopw s3, s1
    CHECKI(s3, 1)
    cpop s3, s1
    CHECKI(s3, 33)
    li s1, 0x0000000100000000
    ctzw s3, s1
    CHECKI(s3, 32)
    clz s3, s1
    CHECKI(s3, 31)
    li s1, -1
    clz s3, s1
    CHECKI(s3, 0)
    cpop s3, s1
    CHECKI(s3, 64)
    /* min/max */
    TEST_RR(max, 1, -1, 1)
    TEST_RR(maxu, -1, -1, 1)
    TEST_RR(min, -1, -1, 1)
    TEST_RR(minu, 1, -1, 1)
    TEST_RR(min, 0x8000000000000000, 0x8000000000000000, 0x7fffffffffffffff)
    /* extensions */
    li s1, 0x12345680
    sext.b s3, s1
    CHECKI(s3, 0xffffffffffffff80)
    li s1, 0x1234807f
    sext.h s3, s1
    CHECKI(s3, 0xffffffffffff807f)
    li s1, -1
    zext.h s3, s1
    CHECKI(s3, 0xffff)
    /* rotates (amount mod 64 / mod 32) */
    TEST_RR(rol, 0x2000000000000001, 0x9000000000000000, 65)
    TEST_RR(ror, 0x8000000000000000, 1, 1)
    TEST_RR(rolw, 0xffffffff80000000, 0x4000000000000000 | 0x40000000, 1)
    TEST_RR(rorw, 0xffffffff80000000, 1, 33)
    TEST_RR(rorw, 0x12345678, 0xffffffff12345678, 0)
    TEST_RI(rori, 0x2345678123456781, 0x1234567812345678, 60)
    TEST_RI(roriw, 0xffffffff81234567, 0x0000000012345678, 4)
    /* orc.b / rev8 */
    li s1, 0x0001008000ff0010
    orc.b s3, s1
    CHECKI(s3, 0x00ff00ff00ff00ff)
    li s1, 0x0102030405060708
    rev8 s3, s1
    CHECKI(s3, 0x0807060504030201)

    /* ---- Zbs: index mod 64 ---- */
    TEST_RR(bset, 0x8000000000000000, 0, 63)
    TEST_RR(bset, 0x1, 0, 64)
    TEST_RR(bclr, 0xfffffffffffffffe, -1, 128)
    TEST_RR(binv, 0x0000000100000000, 0, 32)
    TEST_RR(bext, 1, 0x8000000000000000, 63)
    TEST_RR(bext, 0, 0x8000000000000000, 62)
    TEST_RI(bseti, 0x10000000000, 0, 40)
    TEST_RI(bclri, 0x7fffffffffffffff, -1, 63)
    TEST_RI(binvi, 0xfffffffffffffffe, -1, 0)
    TEST_RI(bexti, 1, 0x20, 5)

    /* ---- Zicond ---- */
    USE_RECORDING_TRAP
    li s1, 1234
    li s2, 0
    ZICOND(CZERO_EQZ, 0)
    ZICOND(CZERO_NEZ, 1234)
    li s2, 0x100000000            /* whole register tested, not the low word */
    ZICOND(CZERO_EQZ, 1234)
    ZICOND(CZERO_NEZ, 0)
    USE_UNEXPECTED_TRAP

    /* ---- Zicbom / Zicboz (M-mode: always permitted). QEMU 7.2 lacks them:
     * there each traps (and is skipped), QUIRK reports it and cbo.zero's
     * effect is done in software so the checks still apply. ---- */
    USE_RECORDING_TRAP
    la s1, block
    addi s2, s1, 64 + 17          /* any address inside the second block */
    cbo.zero (s2)
    LOAD_VAR(s4, trap_count)
    beqz s4, 1f
    la a0, quirk_cboz
    call uart_puts
    sd zero, 64(s1)
    sd zero, 120(s1)
1:  ld s3, 56(s1)                 /* first block untouched */
    CHECKI(s3, 0x5a5a5a5a5a5a5a5a)
    ld s3, 64(s1)
    CHECKI(s3, 0)
    ld s3, 120(s1)
    CHECKI(s3, 0)
    la t0, trap_count
    sd zero, 0(t0)
    cbo.clean (s1)
    cbo.flush (s1)
    cbo.inval (s1)                /* no caches: memory keeps its contents */
    LOAD_VAR(s4, trap_count)
    QUIRK_IF(s4, 3, 0, "Zicbom not implemented")
    CHECKI(s4, 0)
    ld s3, 0(s1)
    CHECKI(s3, 0x5a5a5a5a5a5a5a5a)
    USE_UNEXPECTED_TRAP
    /* Zicbop prefetches and pause are hints */
    prefetch.r 0(s1)
    prefetch.w 64(s1)
    prefetch.i 0(s1)
    pause
    TEST_END
