/* Long-running workload: about 10^9 guest instructions of integer mixing
 * (xorshift64 plus multiply/accumulate, ~11 instructions per iteration for
 * 90 million iterations), then prints a checksum that was precomputed on the
 * host by compiling this same loop natively (see EXPECTED below). Keeps the
 * translation cache hot; its wall time is what the harness reports.
 */
#include <stdint.h>
#include "test.h"

const char test_name[] = "longloop";

#define ITERATIONS 90000000u
/* Host-computed: the same loop compiled for x86-64 (gcc -O2) printed this. */
#define EXPECTED 0x3bd299ee6242bab4ull

__attribute__((noinline)) static uint64_t work(uint32_t n)
{
    uint64_t x = 88172645463325252ull, acc = 0;
    for (uint32_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        acc = acc * 31 + (x ^ i);
    }
    return acc;
}

int main(void)
{
    uint64_t start = read_mcycle();
    uint64_t sum = work(ITERATIONS);
    uint64_t end = read_mcycle();
    uart_puts("longloop: checksum=");
    uart_puthex(sum);
    uart_putc('\n');
    CHECK("longloop checksum", sum, EXPECTED);
    CHECK("mcycle advanced", end > start, 1);
    return test_finish();
}
