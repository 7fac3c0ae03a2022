/* Kite guest test runtime: entry point and trap handlers.
 *
 * _start: hart 0 only (other harts park in wfi), sets sp/gp, points mtvec at the
 * unexpected-trap reporter, clears .bss, calls main(hartid, dtb) and exits with
 * its return value through the SiFive test finisher (test_exit in uart.c).
 *
 * Two trap handlers are provided:
 *  - __unexpected_trap: default mtvec. Switches to a private trap stack (sp may be
 *    garbage), prints mcause/mepc/mtval and exits with code 3.
 *  - __recording_trap: for tests that EXPECT traps. Records mcause/mepc/mtval in
 *    trap_cause/trap_epc/trap_tval, increments trap_count, then resumes at
 *    trap_resume if non-zero (one-shot: it is cleared) or else skips the trapping
 *    instruction (2 or 4 bytes, read from mepc). A fetch fault with no resume
 *    address, or more than 100000 traps, is reported as unexpected instead of
 *    looping forever. It clobbers only mscratch (t0 is parked there), so tests
 *    that use it must not keep anything in mscratch across a trap.
 * Pitfall: everything here must be position-independent of the test code and
 * must not rely on the stack.
 */
    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    csrr t0, mhartid
    bnez t0, .Lpark
    la sp, __stack_top
    la t0, __unexpected_trap
    csrw mtvec, t0
    mv s0, a0
    mv s1, a1
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  mv a0, s0
    mv a1, s1
    call main
    call test_exit
.Lpark:
    wfi
    j .Lpark

    .text
    .balign 4
    .globl __unexpected_trap
__unexpected_trap:
    la sp, __trap_stack_top
    csrr a0, mcause
    csrr a1, mepc
    csrr a2, mtval
    call __report_unexpected_trap
1:  j 1b

    .balign 4
    .globl __recording_trap
__recording_trap:
    csrw mscratch, t0
    la t0, trap_save
    sd t1, 0(t0)
    sd t2, 8(t0)
    csrr t1, mcause
    sd t1, 16(t0)          /* trap_cause */
    csrr t1, mepc
    sd t1, 24(t0)          /* trap_epc */
    csrr t1, mtval
    sd t1, 32(t0)          /* trap_tval */
    ld t2, 40(t0)          /* trap_count */
    addi t2, t2, 1
    sd t2, 40(t0)
    li t1, 100000
    bgtu t2, t1, .Lrec_bad
    ld t2, 48(t0)          /* trap_resume */
    beqz t2, .Lrec_skip
    sd zero, 48(t0)
    csrw mepc, t2
    j .Lrec_out
.Lrec_skip:
    /* Only skip synchronous exceptions whose mepc is fetchable. */
    ld t1, 16(t0)
    bltz t1, .Lrec_bad     /* interrupt: nothing to skip */
    li t2, 1
    bgeu t2, t1, .Lrec_bad /* cause 0/1: instruction misaligned/access fault */
    li t2, 12
    beq t1, t2, .Lrec_bad  /* instruction page fault */
    csrr t1, mepc
    lhu t2, 0(t1)
    andi t2, t2, 3
    addi t1, t1, 2
    li t0, 3
    bne t2, t0, 1f
    addi t1, t1, 2
1:  csrw mepc, t1
    la t0, trap_save
.Lrec_out:
    ld t1, 0(t0)
    ld t2, 8(t0)
    csrr t0, mscratch
    mret
.Lrec_bad:
    j __unexpected_trap

    .data
    .balign 8
    .globl trap_save, trap_cause, trap_epc, trap_tval, trap_count, trap_resume
trap_save:   .dword 0, 0
trap_cause:  .dword 0
trap_epc:    .dword 0
trap_tval:   .dword 0
trap_count:  .dword 0
trap_resume: .dword 0
