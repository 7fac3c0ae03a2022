/* Loads in hot M-mode code. Cranelift compiles loads of identity-mapped code (M-mode
 * with no locked PMP entry) as host loads from guest RAM without the softmmu TLB
 * (`codegen::Direct`); every case below runs small load functions thousands of times
 * first, so they are compiled by then in the default tier (and at once with
 * `-accel tcg,tier=jit`):
 *  - an array sum reads RAM;
 *  - loads from MMIO (the UART's LSR, CLINT's mtime) still reach the devices;
 *  - loads at the end of RAM (128 MiB, the default size) work up to its last byte
 *    and raise a load access fault once they cross it;
 *  - a locked PMP entry without R denies M-mode loads from its page, also to code
 *    that read the page before the lock.
 * Faults go to the runtime's recording handler, which skips the faulting load.
 */
#include "asm_test.h"

#define RAM_END   0x88000000
#define UART_LSR  0x10000005
#define MTIME     0x0200bff8
#define HOT       20000

/* Call `fn` with a0 = s5 HOT times; the last value is in s2. */
#define HOT_CALLS(fn)                   \
    li s1, HOT;                         \
98: mv a0, s5;                          \
    call fn;                            \
    mv s2, a0;                          \
    addi s1, s1, -1;                    \
    bnez s1, 98b

TEST_NAME(direct_loads)
TEST_BEGIN
    USE_RECORDING_TRAP

    /* ---- an array sum, hot ---- */
    li s1, 2000
    li s2, 0
1:  la a0, array
    call sum16
    add s2, s2, a0
    addi s1, s1, -1
    bnez s1, 1b
    CHECKI(s2, 136 * 2000)

    /* ---- MMIO: the UART's LSR reads "transmitter empty" every time ---- */
    li s1, HOT
    li s2, 0xff
1:  li a0, UART_LSR
    call load_bu
    and s2, s2, a0
    addi s1, s1, -1
    bnez s1, 1b
    andi s2, s2, 0x60
    CHECKI(s2, 0x60)
    /* CLINT's mtime moves forward */
    li a0, MTIME
    call load_d
    mv s3, a0
    li s5, MTIME
    HOT_CALLS(load_d)
    sltu s4, s3, s2
    CHECKI(s4, 1)

    /* ---- the end of RAM: loads up to its last byte, none across it ---- */
    li t0, RAM_END - 8
    li t1, 0x1122334455667788
    sd t1, 0(t0)
    li s5, RAM_END - 8
    HOT_CALLS(load_d)
    CHECKI(s2, 0x1122334455667788)
    li s5, RAM_END - 4
    HOT_CALLS(load_w)
    CHECKI(s2, 0x11223344)
    li s5, RAM_END - 1
    HOT_CALLS(load_bu)
    CHECKI(s2, 0x11)
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 0)
    li a0, RAM_END - 4
    call load_d                            /* faults, skipped */
    li a0, RAM_END - 1
    call load_h                            /* faults, skipped */
    li a0, RAM_END
    call load_w                            /* faults, skipped */
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 3)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 5)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, RAM_END)

    /* ---- a locked PMP entry without R binds M's loads ---- */
    la s5, pmp_page
    addi s5, s5, 8
    li t1, 0x55
    sd t1, 0(s5)
    HOT_CALLS(load_d)
    CHECKI(s2, 0x55)
    la t0, pmp_page
    srli t0, t0, 2
    ori t0, t0, 0x1ff                      /* NAPOT, 4 KiB */
    csrw pmpaddr0, t0
    li t0, 0x98                            /* L, NAPOT, no R/W/X */
    csrw pmpcfg0, t0
    mv a0, s5
    call load_d                            /* faults, skipped */
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 4)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 5)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s5)
    /* Other pages stay readable. */
    li s5, RAM_END - 8
    HOT_CALLS(load_d)
    CHECKI(s2, 0x1122334455667788)
    TEST_END

/* ---- the load functions ---- */
    .balign 4
sum16:
    li t0, 16
    li t1, 0
1:  ld t2, 0(a0)
    add t1, t1, t2
    addi a0, a0, 8
    addi t0, t0, -1
    bnez t0, 1b
    mv a0, t1
    ret
load_d:
    ld a0, 0(a0)
    ret
load_w:
    lw a0, 0(a0)
    ret
load_h:
    lh a0, 0(a0)
    ret
load_bu:
    lbu a0, 0(a0)
    ret

    .data
    .balign 8
array:     .dword 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16

    .balign 4096
pmp_page:  .dword 0, 0
    .balign 4096
