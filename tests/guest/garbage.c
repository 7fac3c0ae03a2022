/* Executes pseudo-random instruction words, one at a time, to shake out
 * decoder and translator robustness: each word is copied into an executable
 * slot followed by a jump back, fence.i makes it visible, and it runs with
 * every GPR pointing at the middle of a scratch buffer (so any load/store/AMO
 * with a 12-bit offset stays inside the buffer; x0-based accesses hit the
 * unmapped page at address 0 and fault). Any trap lands in a handler that
 * counts it and resumes at the jump-back point.
 * Filtered out (they could leave the slot or touch machine state): branches,
 * jal, jalr, SYSTEM (CSRs, wfi, mret), and compressed c.j/c.beqz/c.bnez/c.jr/
 * c.jalr. Everything else - reserved encodings, FP with the FPU off, >32-bit
 * length prefixes, AMOs, loads/stores - is fair game.
 * Expected: all words run to completion (executed + trapped == total). Which
 * words trap may differ between emulators (e.g. optional extensions QEMU
 * implements), so only the totals are checked.
 */
#include <stdint.h>
#include "test.h"

const char test_name[] = "garbage";

#define WORDS 5000u

uint64_t garbage_scratch[1024] __attribute__((aligned(4096)));
uint64_t garbage_save[16];
uint64_t garbage_traps;
uint64_t garbage_last_cause;
uint32_t garbage_slot[4] __attribute__((aligned(16))); /* RAM is executable */

/* run_slot: save callee-saved state, point every GPR at the scratch middle,
 * run the slot; slot_return (reached by the slot's jump back or by the trap
 * handler) restores everything. */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "    .globl run_slot\n"
    "run_slot:\n"
    "    la t0, garbage_save\n"
    "    sd ra, 0(t0)\n"
    "    sd sp, 8(t0)\n"
    "    sd gp, 16(t0)\n"
    "    sd tp, 24(t0)\n"
    "    sd s0, 32(t0)\n"
    "    sd s1, 40(t0)\n"
    "    sd s2, 48(t0)\n"
    "    sd s3, 56(t0)\n"
    "    sd s4, 64(t0)\n"
    "    sd s5, 72(t0)\n"
    "    sd s6, 80(t0)\n"
    "    sd s7, 88(t0)\n"
    "    sd s8, 96(t0)\n"
    "    sd s9, 104(t0)\n"
    "    sd s10, 112(t0)\n"
    "    sd s11, 120(t0)\n"
    "    la t0, garbage_trap\n"
    "    csrw mtvec, t0\n"
    "    la x31, garbage_scratch + 4096\n"
    "    mv x1, x31\n  mv x2, x31\n  mv x3, x31\n  mv x4, x31\n  mv x5, x31\n"
    "    mv x6, x31\n  mv x7, x31\n  mv x8, x31\n  mv x9, x31\n  mv x10, x31\n"
    "    mv x11, x31\n mv x12, x31\n mv x13, x31\n mv x14, x31\n mv x15, x31\n"
    "    mv x16, x31\n mv x17, x31\n mv x18, x31\n mv x19, x31\n mv x20, x31\n"
    "    mv x21, x31\n mv x22, x31\n mv x23, x31\n mv x24, x31\n mv x25, x31\n"
    "    mv x26, x31\n mv x27, x31\n mv x28, x31\n mv x29, x31\n mv x30, x31\n"
    "    j garbage_slot\n"
    "    .globl slot_return\n"
    "slot_return:\n"
    "    la t0, garbage_save\n"
    "    ld ra, 0(t0)\n"
    "    ld sp, 8(t0)\n"
    "    ld gp, 16(t0)\n"
    "    ld tp, 24(t0)\n"
    "    ld s0, 32(t0)\n"
    "    ld s1, 40(t0)\n"
    "    ld s2, 48(t0)\n"
    "    ld s3, 56(t0)\n"
    "    ld s4, 64(t0)\n"
    "    ld s5, 72(t0)\n"
    "    ld s6, 80(t0)\n"
    "    ld s7, 88(t0)\n"
    "    ld s8, 96(t0)\n"
    "    ld s9, 104(t0)\n"
    "    ld s10, 112(t0)\n"
    "    ld s11, 120(t0)\n"
    "    la t0, __unexpected_trap\n"
    "    csrw mtvec, t0\n"
    "    ret\n"
    "    .balign 4\n"
    "garbage_trap:\n"
    "    la t0, garbage_traps\n"
    "    ld t1, 0(t0)\n"
    "    addi t1, t1, 1\n"
    "    sd t1, 0(t0)\n"
    "    csrr t1, mcause\n"
    "    la t0, garbage_last_cause\n"
    "    sd t1, 0(t0)\n"
    "    la t0, slot_return\n"
    "    csrw mepc, t0\n"
    "    mret\n");

void run_slot(void);
void slot_return(void);

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rng32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Returns 1 if the word may be executed (see the filter list above). */
static int allowed(uint32_t w)
{
    if ((w & 3) == 3) {
        uint32_t op = w & 0x7f;
        return op != 0x63 && op != 0x67 && op != 0x6f && op != 0x73;
    }
    uint32_t c = w & 0xffff, quadrant = c & 3, funct3 = c >> 13;
    if (quadrant == 1 && funct3 >= 5)
        return 0; /* c.j, c.beqz, c.bnez */
    if (quadrant == 2 && funct3 == 4 && ((c >> 2) & 0x1f) == 0 && ((c >> 7) & 0x1f) != 0)
        return 0; /* c.jr, c.jalr */
    return 1;
}

/* The jump back, encoded as `jal x0, slot_return` from slot[1]. */
static uint32_t jal_x0(uintptr_t from, uintptr_t to)
{
    uint32_t off = (uint32_t)(to - from);
    return ((off >> 20) & 1) << 31 | ((off >> 1) & 0x3ff) << 21 | ((off >> 11) & 1) << 20 |
           ((off >> 12) & 0xff) << 12 | 0x6f;
}

int main(void)
{
    uint64_t executed = 0, trapped_before;
    uint64_t total = 0;
    uint32_t back = jal_x0((uintptr_t)&garbage_slot[1], (uintptr_t)slot_return);
    while (total < WORDS) {
        uint32_t w = rng32();
        if (!allowed(w))
            continue;
        if ((w & 3) != 3)
            w = (w & 0xffff) | (0x0001u << 16); /* compressed: pad with c.nop */
        garbage_slot[0] = w;
        garbage_slot[1] = back;
        __asm__ volatile("fence.i" ::: "memory");
        trapped_before = garbage_traps;
        run_slot();
        if (garbage_traps == trapped_before)
            executed++;
        total++;
    }
    uart_puts("garbage: words=");
    uart_putdec(total);
    uart_puts(" executed=");
    uart_putdec(executed);
    uart_puts(" trapped=");
    uart_putdec(garbage_traps);
    uart_putc('\n');
    CHECK("every word completed", executed + garbage_traps, total);
    /* random words are a mix: a decoder that rejects or accepts everything is broken */
    CHECK("some words executed", executed > WORDS / 10, 1);
    CHECK("some words trapped", garbage_traps > WORDS / 10, 1);
    return test_finish();
}
