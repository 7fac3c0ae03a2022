/* SMP coherence test: NHARTS harts (run with -smp 4) hammer shared memory, then
 * hart 0 checks the totals and exits through the SiFive test finisher
 * (0x5555 = pass, (N << 16) | 0x3333 = check N failed).
 *
 *  1. amoadd.w on one counter, ITER times per hart             (check 1)
 *  2. lr.d / sc.d increment loop on another, ITER times        (check 2)
 *  3. plain lw/addi/sw under an amoswap.w.aq / .rl spinlock    (check 3)
 *  4. cross-hart code modification: hart 1 rewrites `patched` (an "addi a0, zero, K"
 *     followed by ret) for K = 1..PATCHES, publishes K with a fence; hart 0 waits
 *     for it, executes fence.i, calls `patched` and must get K back (check 4).
 *     Translated code of one vCPU must notice another vCPU's stores.
 * A lost update in 1-3 means an atomic was not atomic across host threads.
 * Self-contained: no crt0 (every hart runs), no stack, no UART.
 */
    .equ NHARTS, 4
    .equ ITER, 20000
    .equ PATCHES, 300
    .equ FINISHER, 0x100000

    .section .text.init, "ax"
    .globl _start
_start:
    csrr s0, mhartid
    li t0, NHARTS
    bgeu s0, t0, park

    /* 1: AMO add */
    la a0, amo_count
    li t1, ITER
    li t2, 1
1:  amoadd.w zero, t2, (a0)
    addi t1, t1, -1
    bnez t1, 1b

    /* 2: LR/SC increment */
    la a0, lrsc_count
    li t1, ITER
2:  lr.d t3, (a0)
    addi t3, t3, 1
    sc.d t4, t3, (a0)
    bnez t4, 2b
    addi t1, t1, -1
    bnez t1, 2b

    /* 3: spinlock-protected plain increment */
    la a0, lock
    la a1, locked_count
    li t1, ITER
    li t2, 1
3:  amoswap.w.aq t3, t2, (a0)
    bnez t3, 3b
    lw t3, 0(a1)
    addi t3, t3, 1
    sw t3, 0(a1)
    amoswap.w.rl zero, zero, (a0)
    addi t1, t1, -1
    bnez t1, 3b

    /* Done with 1-3. */
    la a0, done
    amoadd.w zero, t2, (a0)

    li t0, 1
    beq s0, t0, writer
    bnez s0, park

    /* Hart 0: reader side of 4. */
    la s1, flag
    li s2, 1
4:  lw t3, 0(s1)
    bne t3, s2, 4b
    fence.i
    call patched
    bne a0, s2, fail4
    fence rw, rw
    sw zero, 0(s1)
    addi s2, s2, 1
    li t0, PATCHES
    bleu s2, t0, 4b

    /* Wait for every hart, then check 1-3. */
    la a0, done
5:  lw t3, 0(a0)
    li t0, NHARTS
    bne t3, t0, 5b
    li t4, NHARTS * ITER
    lw t3, amo_count
    li a0, 1
    bne t3, t4, fail
    ld t3, lrsc_count
    li a0, 2
    bne t3, t4, fail
    lw t3, locked_count
    li a0, 3
    bne t3, t4, fail
    li t0, 0x5555
    li t1, FINISHER
    sw t0, 0(t1)
    j park

fail4:
    li a0, 4
fail:
    slli a0, a0, 16
    li t0, 0x3333
    or a0, a0, t0
    li t1, FINISHER
    sw a0, 0(t1)
park:
    wfi
    j park

    /* Hart 1: writer side of 4. */
writer:
    la s1, flag
    la s3, patched
    li s2, 1
    /* Wait until hart 0 has consumed the previous one. The wait has the shape of
     * OpenSBI's ticket lock: the block that loads jumps back to a test before it in the
     * same page, so the translator's spin-wait detection reads code before the block. */
6:  lw t3, 0(s1)
61: beqz t3, 62f
    lw t3, 0(s1)
    fence r, rw
    j 61b
62:
    slli t4, s2, 20        /* addi a0, zero, K: imm[11:0] << 20 | rd=a0 (10) << 7 | 0x13 */
    li t5, (10 << 7) | 0x13
    or t4, t4, t5
    sw t4, 0(s3)
    fence rw, rw
    sw s2, 0(s1)
    addi s2, s2, 1
    li t0, PATCHES
    bleu s2, t0, 6b
    j park

    /* Rewritten by hart 1; starts as "addi a0, zero, 0". Not compressed: 4-byte stores. */
    .option push
    .option norvc
    .balign 4
patched:
    addi a0, zero, 0
    ret
    .option pop

    /* Shared data on its own page, away from the code. */
    .data
    .balign 4096
amo_count:      .word 0
    .balign 64
lock:           .word 0
    .balign 64
locked_count:   .word 0
    .balign 64
done:           .word 0
    .balign 64
flag:           .word 0
    .balign 64
lrsc_count:     .dword 0
