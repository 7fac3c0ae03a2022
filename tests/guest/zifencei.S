/* Zifencei: self-modifying code. After storing a new instruction over an old
 * one, fence.i guarantees the NEW instruction executes. Every case runs in a
 * loop (10 iterations, a different immediate each time) so an emulator that
 * caches translations must invalidate them on every store + fence.i:
 *  1. patching a called subroutine (`addi a0, x0, i`, then ret);
 *  2. patching the instruction right after the fence.i in the same straight-line
 *     block (the translator must end the block at fence.i / notice the store);
 *  3. patching a 16-bit compressed instruction (c.li a0, i) with sh.
 * Encodings: addi rd, x0, imm = imm << 20 | rd << 7 | 0x13 (funct3 0, rs1 0);
 * c.li rd, imm (imm 0..31) = 0b010 << 13 | rd << 7 | imm << 2 | 0b01.
 * Expected sums: 0 + 1 + ... + 9 = 45 for each case.
 */
#include "asm_test.h"

#define ADDI_X0(rd, imm) (((imm) << 20) | ((rd) << 7) | 0x13)

TEST_NAME(zifencei)
TEST_BEGIN
    /* ---- 1. patched subroutine ---- */
    call smc_func                  /* original: returns 1000 */
    mv s3, a0
    CHECKI(s3, 1000)
    li s1, 0                       /* i */
    li s2, 0                       /* sum */
1:  la t0, smc_func
    slli t1, s1, 20
    li t2, ADDI_X0(10, 0)
    or t1, t1, t2
    sw t1, 0(t0)
    fence.i
    call smc_func
    add s2, s2, a0
    addi s1, s1, 1
    li t0, 10
    bne s1, t0, 1b
    CHECKI(s2, 45)

    /* ---- 2. patch the next instruction in the same block ---- */
    li s1, 0
    li s2, 0
1:  la t0, .Lpatch_inline
    slli t1, s1, 20
    li t2, ADDI_X0(11, 0)
    or t1, t1, t2
    sw t1, 0(t0)
    fence.i
    .option push
    .option norvc
.Lpatch_inline:
    addi a1, x0, 1000              /* replaced by addi a1, x0, i before it runs */
    .option pop
    add s2, s2, a1
    addi s1, s1, 1
    li t0, 10
    bne s1, t0, 1b
    CHECKI(s2, 45)

    /* ---- 3. patch a compressed instruction ---- */
    li s1, 0
    li s2, 0
1:  la t0, smc_cfunc
    slli t1, s1, 2
    li t2, (0x2 << 13) | (10 << 7) | 0x1    /* c.li a0, 0 */
    or t1, t1, t2
    sh t1, 0(t0)
    fence.i
    call smc_cfunc
    add s2, s2, a0
    addi s1, s1, 1
    li t0, 10
    bne s1, t0, 1b
    CHECKI(s2, 45)

    /* The patched code is still what runs after the loops. */
    call smc_func
    mv s3, a0
    CHECKI(s3, 9)
    TEST_END

    .option push
    .option norvc
    .balign 4
smc_func:
    addi a0, x0, 1000
    ret
    .option pop

    .option push
    .option rvc
    .balign 4
smc_cfunc:
    c.li a0, 31
    ret
    .option pop
