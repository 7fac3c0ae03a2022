/* Memory/TLB workload: random read-modify-write over a 64 MiB array (many distinct
 * pages: softmmu TLB misses), then strided sweeps. The array lives above the image
 * (run with -m 256M). */
#include "bench.h"

const char test_name[] = "bench_mem";

#define WORDS (64u << 20) / 8
static uint64_t *const arr = (uint64_t *)0x82000000ul;

int main(void)
{
    for (uint64_t i = 0; i < WORDS; i += 512) arr[i] = i;
    uint64_t s = 12345, sum = 0;
    for (int i = 0; i < 3000000; i++) {
        uint64_t r = xorshift(&s);
        uint64_t *p = &arr[r & (WORDS - 1)];
        *p += r;
        sum ^= *p;
    }
    for (int rep = 0; rep < 8; rep++)
        for (uint64_t i = rep; i < WORDS; i += 509) sum = sum * 3 + arr[i];
    report("mem", sum);
    CHECK("mem checksum", sum, EXPECTED_MEM);
    return test_finish();
}
