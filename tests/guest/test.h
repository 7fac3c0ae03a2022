/* Kite guest test runtime: shared declarations for C test programs.
 *
 * UART output goes to the NS16550A at 0x10000000 (polled, THRE bit of LSR);
 * test_exit() writes the SiFive test finisher at 0x100000 (0x5555 = pass,
 * (code << 16) | 0x3333 = fail with `code`). CHECK() counts checks and
 * prints one "FAIL" line per mismatch; test_finish() prints the summary
 * ("PASS <name>" or "FAIL <name>") and returns the exit code for main.
 * Every program defines `const char test_name[]`.
 */
#ifndef KITE_TEST_H
#define KITE_TEST_H

#include <stdint.h>

#define UART_BASE 0x10000000UL
#define FINISHER_BASE 0x100000UL

extern const char test_name[];

void uart_putc(char c);
void uart_puts(const char *s);
void uart_puthex(uint64_t v);
void uart_putdec(uint64_t v);
void test_exit(int code) __attribute__((noreturn));
void __check_named(const char *name, uint64_t got, uint64_t expected);
int test_finish(void);

/* Trap records written by __recording_trap (crt0.S). */
extern volatile uint64_t trap_cause, trap_epc, trap_tval, trap_count, trap_resume;
void __recording_trap(void);
void __unexpected_trap(void);

#define CHECK(name, got, expected) __check_named((name), (uint64_t)(got), (uint64_t)(expected))

static inline uint64_t read_mcycle(void)
{
    uint64_t v;
    __asm__ volatile("csrr %0, mcycle" : "=r"(v));
    return v;
}

#endif
