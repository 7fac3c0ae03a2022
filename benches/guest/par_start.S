/* Entry for the parallel benchmark (par.c): unlike tests/guest/crt0.S every hart
 * runs. Hart 0 clears .bss, then calls par_main(hartid, dtb) and exits through the
 * test finisher with its result; the others wait for .bss to be cleared and call
 * secondary_main(hartid). Each hart gets 16 KiB of the 64 KiB stack; harts 4 and
 * above park.
 */
    .section .text.init, "ax"
    .globl _start
_start:
    .option push
    .option norelax
    la gp, __global_pointer$
    .option pop
    csrr t0, mhartid
    li t1, 4
    bgeu t0, t1, .Lpark
    la sp, __stack_top
    slli t1, t0, 14
    sub sp, sp, t1
    bnez t0, .Lsecondary
    mv s0, a0
    mv s1, a1
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sd zero, 0(t0)
    addi t0, t0, 8
    j 1b
2:  fence rw, rw
    la t0, bss_ready
    li t1, 1
    sw t1, 0(t0)
    mv a0, s0
    mv a1, s1
    call par_main
    call test_exit
.Lsecondary:
    la t1, bss_ready
3:  lw t2, 0(t1)
    beqz t2, 3b
    fence rw, rw
    call secondary_main
.Lpark:
    wfi
    j .Lpark

    .data
    .balign 4
bss_ready: .word 0
