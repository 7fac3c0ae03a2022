/* Call-heavy workload: a non-inlined function that keeps many values live (so its
 * prologue and epilogue save and restore a dozen callee-saved registers) and reads
 * and writes a small struct, called millions of times, sometimes recursively. Stack
 * frames and struct fields are runs of accesses off one base register: the pattern of
 * decoders' refill helpers and of most kernel code. */
#include "bench.h"

const char test_name[] = "bench_calls";

__attribute__((noinline)) static uint64_t mix(uint64_t *st, uint64_t x, int n)
{
    uint64_t a = st[0], b = st[1], c = st[2], d = st[3], e = st[4], f = st[5];
    for (int i = 0; i < n; i++) {
        a += x ^ b;
        b = (b << 7) | (b >> 57);
        c ^= a + d;
        d += c * 3;
        e ^= d >> 3;
        f += e ^ a;
        x = x * 0x9e3779b97f4a7c15ull + (uint64_t)i;
        if ((x & 7) == 0)
            x += mix(st + 1, x, 0);
    }
    st[0] = a;
    st[1] = b;
    st[2] = c;
    st[3] = d;
    st[4] = e;
    st[5] = f;
    return a ^ f;
}

int main(void)
{
    uint64_t st[8] = {1, 2, 3, 4, 5, 6, 7, 8}, sum = 0;
    for (uint64_t i = 0; i < 6000000; i++)
        sum += mix(st, i, 2);
    report("calls", sum);
    CHECK("calls checksum", sum, EXPECTED_CALLS);
    return test_finish();
}
