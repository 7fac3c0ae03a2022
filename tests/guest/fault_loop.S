/* Deliberately unkillable-from-inside guest: mtvec points at unmapped memory
 * and the program jumps to unmapped memory, so every instruction fetch faults
 * and the trap vector itself faults again, forever. The harness checks that
 * Kite still stops promptly on SIGTERM (no hang, no panic). Expected on both
 * Kite and QEMU: prints the marker below, then never exits by itself.
 */
#include "asm_test.h"

TEST_NAME(fault_loop)
TEST_BEGIN
    la a0, msg
    call uart_puts
    li t0, 0x100000000000          /* unmapped (far above RAM and devices) */
    csrw mtvec, t0
    li t1, 0x100000000100
    jr t1
    /* never reached; keep the checker honest if it somehow is */
    li a0, 5
    call test_exit

    .section .rodata
msg:
    .asciz "fault_loop: entering fault loop\n"
