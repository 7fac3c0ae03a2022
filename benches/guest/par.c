/* Parallel integer workload: UNITS independent work units (a multiply/xorshift
 * mix over a private 16 KiB array each), split over the harts the device tree
 * lists (hart h runs units h, h + n, ...). The same ELF runs with -smp 1 and
 * -smp 2; the wall-time ratio is the scaling of one host thread per vCPU.
 * Entry: par_start.S (every hart runs).
 */
#include "bench.h"

const char test_name[] = "bench_par";

#define UNITS 4
#define WORDS 4096
#define ROUNDS 20000

static uint32_t arrays[UNITS][WORDS] __attribute__((aligned(4096)));
static volatile uint64_t results[UNITS];
static volatile uint32_t nharts;
static volatile uint32_t units_done;

static uint64_t unit(int u)
{
    uint32_t *a = arrays[u];
    uint64_t x = 0x9e3779b97f4a7c15ull * (uint64_t)(u + 1);
    for (int i = 0; i < WORDS; i++)
        a[i] = (uint32_t)xorshift(&x);
    uint64_t acc = 0;
    for (int r = 0; r < ROUNDS; r++) {
        for (int i = 0; i < WORDS; i++) {
            x = x * 6364136223846793005ull + a[i];
            a[i] = (uint32_t)(x >> 29) ^ (uint32_t)i;
            acc += x >> 40;
        }
    }
    return acc ^ x;
}

static void run_units(uint32_t hart)
{
    for (uint32_t u = hart; u < UNITS; u += nharts) {
        results[u] = unit(u);
        __atomic_fetch_add(&units_done, 1, __ATOMIC_SEQ_CST);
    }
}

/* Count the /cpus/cpu@N nodes of the flattened device tree. */
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t dtb_cpus(const uint8_t *dtb)
{
    if (!dtb || be32(dtb) != 0xd00dfeed)
        return 1;
    const uint8_t *p = dtb + be32(dtb + 8);
    uint32_t n = 0;
    for (;;) {
        uint32_t tok = be32(p);
        p += 4;
        if (tok == 1) { /* BEGIN_NODE: name, NUL, padding */
            const char *name = (const char *)p;
            if (name[0] == 'c' && name[1] == 'p' && name[2] == 'u' && name[3] == '@')
                n++;
            while (*p)
                p++;
            p = (const uint8_t *)(((uintptr_t)p + 4) & ~(uintptr_t)3);
        } else if (tok == 3) { /* PROP: len, nameoff, value */
            uint32_t len = be32(p);
            p += 8 + ((len + 3) & ~3u);
        } else if (tok == 2 || tok == 4) { /* END_NODE, NOP */
        } else {
            break;
        }
    }
    return n ? n : 1;
}

void secondary_main(long hart);
void secondary_main(long hart)
{
    while (nharts == 0)
        ;
    if ((uint32_t)hart < nharts)
        run_units((uint32_t)hart);
}

int par_main(long hart, const void *dtb);
int par_main(long hart, const void *dtb)
{
    (void)hart;
    uint32_t n = dtb_cpus(dtb);
    if (n > 4)
        n = 4;
    __atomic_store_n(&nharts, n, __ATOMIC_SEQ_CST);
    run_units(0);
    while (units_done != UNITS)
        ;
    uint64_t sum = 0;
    for (int u = 0; u < UNITS; u++)
        sum = sum * 31 + results[u];
    report("bench_par", sum);
    uart_puts("harts: ");
    uart_putdec(n);
    uart_putc('\n');
    CHECK("par checksum", sum, EXPECTED_PAR);
    return test_finish();
}
