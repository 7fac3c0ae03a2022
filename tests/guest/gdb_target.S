/* Target program for the gdb stub tests (tests/gdb.rs): bare metal, M-mode, no MMU.
 *
 * Every spot the tests stop at has a global label, so gdb scripts can say
 * `break *step_region` and compare $pc with label addresses:
 *  - step_region: four 4-byte instructions (no RVC) for exact `stepi N` checks (s3 counts).
 *  - step_region + 20: a 4-byte call (jal), for `nexti` over it (returns to + 24).
 *  - compressed_insn: a 2-byte c.addi in the middle of a block.
 *  - store_insn / after_store, load_insn / after_load: the store and load of
 *    watched_var, for watch / rwatch / awatch.
 *  - guest_ebreak: the program's own ebreak, handled by the recording trap handler;
 *    the program fails unless that trap happened exactly once with cause 3.
 *  - spin_loop: if spin_enable is set, waits until spin_release is set (for detach and
 *    re-attach tests).
 *  - before_exit: a0 holds the exit code (exit_code, 0 by default) from here on.
 * The result: exit code = exit_code + (s2 != 7 ? 100 : 0), through the test finisher.
 */
    .section .rodata
    .globl test_name
test_name:
    .asciz "gdb_target"

    .text
    .globl main
main:
    addi sp, sp, -16
    sd ra, 8(sp)
    la t0, __recording_trap
    csrw mtvec, t0

    .option push
    .option norvc
    .globl step_region
step_region:
    addi s3, zero, 1
    addi s3, s3, 1
    addi s3, s3, 1
    addi s3, s3, 1
    /* step_region + 16: a0 = 5; + 20: the call; + 24: the return address. No labels
     * in between: gdb takes every symbol for a function start, and `nexti` only stops
     * back in the same "function". */
    addi a0, zero, 5
    jal ra, add_one
    .option pop
    mv s2, a0
    .option push
    .option rvc
    .globl compressed_insn
compressed_insn:
    c.addi s2, 1
    .option pop
    la t1, watched_var
    .globl store_insn
store_insn:
    sd s2, 0(t1)
    .globl after_store
after_store:
    nop
    .globl load_insn
load_insn:
    ld t2, 0(t1)
    .globl after_load
after_load:
    nop

    la t0, spin_enable
    ld t0, 0(t0)
    beqz t0, 2f
    la t1, spin_release
    .globl spin_loop
spin_loop:
    ld t0, 0(t1)
    beqz t0, spin_loop
2:
    .globl guest_ebreak
guest_ebreak:
    ebreak
    la t0, trap_count
    ld t0, 0(t0)
    li t1, 1
    bne t0, t1, fail
    la t0, trap_cause
    ld t0, 0(t0)
    li t1, 3
    bne t0, t1, fail

    la t0, exit_code
    ld a0, 0(t0)
    li t1, 7
    beq s2, t1, 3f
    addi a0, a0, 100
3:
    .globl before_exit
before_exit:
    ld ra, 8(sp)
    addi sp, sp, 16
    ret

fail:
    li a0, 99
    ld ra, 8(sp)
    addi sp, sp, 16
    ret

    .globl add_one
add_one:
    addi a0, a0, 1
    ret

    .data
    .balign 8
    .globl watched_var, exit_code, spin_enable, spin_release, data_words
watched_var:  .dword 0
exit_code:    .dword 0
spin_enable:  .dword 0
spin_release: .dword 0
data_words:   .word 0x11111111, 0x22222222, 0x33333333, 0x44444444
