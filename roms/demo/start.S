/* Entry of the Kite demo firmware: runs in M-mode on hart 0, entered from
 * the reset vector at 0x1000 with a0 = hartid, a1 = fdt (or 0). */
    .section .text.start, "ax"
    .globl _start
_start:
    /* Other harts (none yet on Kite) just park. */
    bnez    a0, park
    la      t0, trap_entry
    csrw    mtvec, t0
    la      sp, __stack_top
    /* Zero .bss (the loader already does; real hardware would not). */
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    demo_main
    /* demo_main returns the exit status for the test finisher. */
    call    finish
park:
    wfi
    j       park

    .align 4
trap_entry:
    la      sp, __stack_top
    csrr    a0, mcause
    csrr    a1, mepc
    csrr    a2, mtval
    call    demo_trap
    j       park
