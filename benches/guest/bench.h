/* Kite benchmark guests: shared helpers (on top of tests/guest's runtime).
 *
 * Every benchmark computes a checksum, prints "<name>: checksum=0x..." and
 * exits through the test finisher with CHECK against a value computed by the
 * same program on QEMU (EXPECTED_* below), so a wrong emulation is a failure,
 * not a fast run. Sizes are chosen for roughly 0.5-2 s under qemu-system-riscv64.
 */
#ifndef KITE_BENCH_H
#define KITE_BENCH_H
#include <stdint.h>
#include "test.h"
#include "expected.h"

static inline uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static inline void report(const char *name, uint64_t sum)
{
    uart_puts(name);
    uart_puts(": checksum=");
    uart_puthex(sum);
    uart_putc('\n');
}
#endif
