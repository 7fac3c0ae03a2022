/* RV64C: every integer compressed instruction, written with explicit c.
 * mnemonics, expected values from the spec's expansion rules:
 * c.addi4spn rd' = sp + nzuimm; c.addi16sp sp += nzimm*16; c.lui rd = sext(nzimm<<12);
 * c.li/c.addi/c.andi sign-extend a 6-bit immediate; c.addiw/c.addw/c.subw produce
 * a sign-extended 32-bit result; c.srli/c.srai/c.slli take shamt 1..63;
 * c.jalr links pc + 2 (not + 4); c.ebreak raises a breakpoint (cause 3).
 * (c.fld/c.fsd/c.fldsp/c.fsdsp need D, which rv64imac lacks; c.jal is RV32-only.)
 */
#include "asm_test.h"

TEST_NAME(rv64c)
TEST_BEGIN
    .option push
    .option rvc

    /* ---- constants ---- */
    c.li a0, -32                   /* 6-bit immediate, sign-extended */
    CHECKI(a0, -32)
    c.li a0, 31
    CHECKI(a0, 31)
    c.li a0, 0
    CHECKI(a0, 0)
    c.lui a1, 1
    CHECKI(a1, 0x1000)
    c.lui a1, 0x1f                 /* largest positive: 0x1f << 12 */
    CHECKI(a1, 0x1f000)
    c.lui a1, 0xfffff              /* nzimm = -1 -> 0xffff...f000 */
    CHECKI(a1, 0xfffffffffffff000)
    c.lui a1, 0xfffe0              /* nzimm = -32 -> -0x20000 */
    CHECKI(a1, 0xfffffffffffe0000)

    /* ---- c.addi / c.addiw ---- */
    li a2, 100
    c.addi a2, -32
    CHECKI(a2, 68)
    li a2, -1
    c.addi a2, 31
    CHECKI(a2, 30)
    li a2, 0x7fffffff
    c.addiw a2, 1                  /* 32-bit wrap then sign extension */
    CHECKI(a2, 0xffffffff80000000)
    li a2, 0x1ffffffff
    c.addiw a2, 0                  /* sext.w: low word 0xffffffff -> -1 */
    CHECKI(a2, 0xffffffffffffffff)
    li a2, 0x123456780000000a
    c.addiw a2, -11                /* 10 - 11 = -1 as a word */
    CHECKI(a2, 0xffffffffffffffff)

    /* ---- shifts and c.andi ---- */
    li s0, 1
    c.slli s0, 63
    CHECKI(s0, 0x8000000000000000)
    li s0, 0x8000000000000000
    c.srli s0, 63
    CHECKI(s0, 1)
    li s0, 0x8000000000000000
    c.srli s0, 32
    CHECKI(s0, 0x80000000)
    li s0, 0x8000000000000000
    c.srai s0, 63
    CHECKI(s0, 0xffffffffffffffff)
    li s0, 0x8000000000000000
    c.srai s0, 1
    CHECKI(s0, 0xc000000000000000)
    li s0, 0x7000000000000000
    c.srai s0, 60                  /* positive: zero-filled */
    CHECKI(s0, 7)
    li s0, 0x12345678
    c.slli s0, 4
    CHECKI(s0, 0x123456780)
    li s1, 0x123456789abcdeff
    c.andi s1, -32                 /* ...ffe0 */
    CHECKI(s1, 0x123456789abcdee0)
    li s1, 0x123456789abcdeff
    c.andi s1, 31
    CHECKI(s1, 0x1f)
    li s1, 0x123456789abcdeff
    c.andi s1, 0
    CHECKI(s1, 0)

    /* ---- register-register ALU (rd'/rs2' in x8..x15) ---- */
    li a3, 0xff00ff00ff00ff00
    li a4, 0x0ff00ff00ff00ff0
    mv a5, a3
    c.and a5, a4
    CHECKI(a5, 0x0f000f000f000f00)
    li a3, 0xff00ff00ff00ff00      /* CHECK clobbered the a-registers */
    li a4, 0x0ff00ff00ff00ff0
    mv a5, a3
    c.or a5, a4
    CHECKI(a5, 0xfff0fff0fff0fff0)
    li a3, 0xff00ff00ff00ff00
    li a4, 0x0ff00ff00ff00ff0
    mv a5, a3
    c.xor a5, a4
    CHECKI(a5, 0xf0f0f0f0f0f0f0f0)
    li a3, 5
    li a4, 7
    c.sub a3, a4
    CHECKI(a3, -2)
    li a3, 0x0000000080000000
    li a4, 1
    c.subw a3, a4                  /* 0x80000000 - 1 = 0x7fffffff (positive) */
    CHECKI(a3, 0x7fffffff)
    li a3, 0
    li a4, 1
    c.subw a3, a4
    CHECKI(a3, -1)
    li a3, 0x123456787fffffff
    li a4, 0xabcdef0000000001
    c.addw a3, a4                  /* low words: 0x7fffffff + 1, sign-extended */
    CHECKI(a3, 0xffffffff80000000)

    /* ---- c.mv / c.add (full register set) ---- */
    li t3, 0x1122334455667788
    c.mv t4, t3
    CHECK(t4, t3)
    li t3, 0x7fffffffffffffff
    li t4, 1
    c.add t4, t3                   /* wraps to MIN */
    CHECKI(t4, 0x8000000000000000)
    li s2, 40
    li s3, 2
    c.add s2, s3
    CHECKI(s2, 42)

    /* ---- c.nop ---- */
    li s2, 5
    c.nop
    c.nop
    CHECKI(s2, 5)

    /* ---- stack-relative: c.addi16sp, c.addi4spn, c.*sp ---- */
    mv s4, sp                      /* remember the original sp */
    c.addi16sp sp, -512            /* most negative */
    addi s5, s4, -512
    mv t0, sp; CHECK(t0, s5)
    c.addi16sp sp, 496             /* largest positive */
    addi s5, s4, -16
    mv t0, sp; CHECK(t0, s5)
    c.addi16sp sp, -496            /* sp = s4 - 512 again: room for 512 bytes */
    c.addi4spn a0, sp, 4           /* smallest */
    addi s5, sp, 4
    CHECK(a0, s5)
    c.addi4spn a0, sp, 1020        /* largest */
    addi s5, sp, 1020
    CHECK(a0, s5)
    li s2, 0x8899aabbccddeeff
    c.sdsp s2, 0(sp)
    c.sdsp s2, 504(sp)             /* largest offset */
    c.swsp s2, 252(sp)             /* largest offset: writes 0xccddeeff */
    c.ldsp t0, 0(sp)
    CHECK(t0, s2)
    c.ldsp t0, 504(sp)
    CHECK(t0, s2)
    c.lwsp t0, 252(sp)             /* sign-extended */
    CHECKI(t0, 0xffffffffccddeeff)
    ld t0, 248(sp)                 /* the sw must not touch bytes 248..251 */
    c.li t1, 0
    sd t1, 248(sp)
    c.swsp s2, 252(sp)
    ld t0, 248(sp)
    CHECKI(t0, 0xccddeeff00000000)
    c.addi16sp sp, 496
    addi sp, sp, 16
    mv t0, sp; CHECK(t0, s4)

    /* ---- c.lw / c.ld / c.sw / c.sd ---- */
    la s0, cdata
    li s1, 0xfedcba9876543210
    c.sd s1, 0(s0)
    c.sd s1, 248(s0)               /* largest c.ld/c.sd offset */
    c.sw s1, 124(s0)               /* largest c.lw/c.sw offset */
    c.ld a0, 0(s0)
    CHECK(a0, s1)
    c.ld a0, 248(s0)
    CHECK(a0, s1)
    c.lw a0, 124(s0)               /* 0x76543210: positive */
    CHECKI(a0, 0x76543210)
    c.lw a0, 4(s0)                 /* 0xfedcba98: sign-extended */
    CHECKI(a0, 0xfffffffffedcba98)
    c.li a1, -1
    c.sw a1, 0(s0)                 /* only the low word changes */
    c.ld a0, 0(s0)
    CHECKI(a0, 0xfedcba98ffffffff)

    /* ---- control flow ---- */
    li s2, 0
    c.j 1f
    li s2, 99                      /* skipped */
1:  c.li s1, 0
    c.beqz s1, 1f                  /* taken */
    li s2, 98
1:  c.bnez s1, .Lc_bad             /* not taken */
    c.li s1, -1
    c.bnez s1, 1f                  /* taken (any non-zero) */
    li s2, 97
1:  c.beqz s1, .Lc_bad             /* not taken */
    /* backward c.j and backward c.bnez: count down 3 */
    c.li s1, 3
    c.j 3f
2:  c.addi s1, -1
3:  c.bnez s1, 2b
    addi s2, s2, 1                 /* s2 becomes 1 only via the intended path */
.Lc_bad:
    CHECKI(s2, 1)

    la s3, .Lcjr_target
    c.jr s3
    li s2, 55                      /* skipped */
.Lcjr_target:
    CHECKI(s2, 1)

    la s3, .Lcjalr_target
    c.jalr s3                      /* ra = address of the next (2-byte-later) instruction */
.Lcjalr_link:
    j .Lcjalr_done
.Lcjalr_target:
    mv s5, ra
    la s6, .Lcjalr_link
    CHECK(s5, s6)
    /* return through the link with c.jr */
    c.jr s5
.Lcjalr_done:
    li s5, 1
    CHECKI(s5, 1)

    /* ---- c.ebreak: breakpoint exception at its own address ---- */
    USE_RECORDING_TRAP
.Lcebreak:
    c.ebreak                       /* handler skips 2 bytes */
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 3)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lcebreak
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 1)
    USE_UNEXPECTED_TRAP

    .option pop
    TEST_END

    .data
    .balign 8
cdata:
    .skip 256
