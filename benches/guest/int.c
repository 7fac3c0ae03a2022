/* Integer workload: CRC-32 over a buffer, quicksort of pseudo-random keys, and
 * a CoreMark-like linked-list walk with a small state machine. */
#include "bench.h"

const char test_name[] = "bench_int";

#define N 65536
static uint32_t keys[N];
static uint8_t buf[N];

struct node { struct node *next; uint32_t v; };
static struct node nodes[4096];

static uint32_t crc32(const uint8_t *p, uint32_t n)
{
    uint32_t c = 0xffffffffu;
    for (uint32_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & -(c & 1));
    }
    return ~c;
}

static void qsort_u32(uint32_t *a, int lo, int hi)
{
    while (lo < hi) {
        uint32_t p = a[(lo + hi) / 2];
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < p) i++;
            while (a[j] > p) j--;
            if (i <= j) { uint32_t t = a[i]; a[i] = a[j]; a[j] = t; i++; j--; }
        }
        if (j - lo < hi - i) { qsort_u32(a, lo, j); lo = i; } else { qsort_u32(a, i, hi); hi = j; }
    }
}

static uint32_t list_walk(int rounds)
{
    uint32_t state = 0, acc = 0;
    for (int r = 0; r < rounds; r++) {
        for (struct node *n = &nodes[0]; n; n = n->next) {
            switch ((n->v ^ state) & 3) {
            case 0: acc += n->v; state = 1; break;
            case 1: acc ^= n->v << 3; state = 2; break;
            case 2: acc = acc * 33 + 7; state = 3; break;
            default: acc -= state; state = 0; break;
            }
        }
    }
    return acc;
}

int main(void)
{
    uint64_t s = 0x9e3779b97f4a7c15ull, sum = 0;
    for (int i = 0; i < N; i++) buf[i] = (uint8_t)xorshift(&s);
    for (int rep = 0; rep < 120; rep++) {
        buf[rep] ^= (uint8_t)rep;
        sum = sum * 31 + crc32(buf, N);
    }
    for (int rep = 0; rep < 30; rep++) {
        for (int i = 0; i < N; i++) keys[i] = (uint32_t)xorshift(&s);
        qsort_u32(keys, 0, N - 1);
        for (int i = 1; i < N; i += 97) sum = sum * 31 + (keys[i] >= keys[i - 1]) + keys[i];
    }
    /* One list through all nodes in a scattered order (1031 is odd: a permutation). */
    for (int k = 0; k < 4096; k++) {
        struct node *n = &nodes[(k * 1031) % 4096];
        n->v = (uint32_t)xorshift(&s);
        n->next = k + 1 < 4096 ? &nodes[((k + 1) * 1031) % 4096] : 0;
    }
    sum = sum * 31 + list_walk(4000);
    report("int", sum);
    CHECK("int checksum", sum, EXPECTED_INT);
    return test_finish();
}
