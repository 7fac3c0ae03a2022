/* C workload test (-O2, rv64imac/lp64 and, as cprog_gc, rv64gc/lp64d with the
 * FPU left disabled so any FP instruction would trap): CRC-32 against the
 * standard check value, an insertion sort + quicksort of pseudo-random data,
 * 64-bit signed/unsigned division identities and hand-computed quotients, and
 * picolibc printf output the harness compares byte-for-byte.
 */
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include "test.h"

#ifndef TEST_NAME_SUFFIX
#define TEST_NAME_SUFFIX ""
#endif
const char test_name[] = "cprog" TEST_NAME_SUFFIX;

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t crc = 0xffffffffu;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
    /* xorshift64 */
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void quicksort(int64_t *a, long lo, long hi)
{
    while (lo < hi) {
        int64_t pivot = a[lo + (hi - lo) / 2];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot)
                i++;
            while (a[j] > pivot)
                j--;
            if (i <= j) {
                int64_t t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        /* recurse into the smaller half to bound the stack */
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
}

#define NSORT 2000
static int64_t arr[NSORT];
static uint32_t small[64];

static void test_sort(void)
{
    uint64_t sum = 0, xsum = 0;
    for (int i = 0; i < NSORT; i++) {
        arr[i] = (int64_t)rng();
        sum += (uint64_t)arr[i];
        xsum ^= (uint64_t)arr[i];
    }
    quicksort(arr, 0, NSORT - 1);
    int sorted = 1;
    uint64_t sum2 = 0, xsum2 = 0;
    for (int i = 0; i < NSORT; i++) {
        if (i && arr[i - 1] > arr[i])
            sorted = 0;
        sum2 += (uint64_t)arr[i];
        xsum2 ^= (uint64_t)arr[i];
    }
    CHECK("quicksort sorted", sorted, 1);
    CHECK("quicksort sum preserved", sum2, sum);
    CHECK("quicksort xor preserved", xsum2, xsum);
    /* signed order: the data has both signs, so the extremes must be negative/positive */
    CHECK("quicksort min negative", arr[0] < 0, 1);
    CHECK("quicksort max positive", arr[NSORT - 1] > 0, 1);

    /* insertion sort of small unsigned values, checked against a counting sort */
    uint32_t count[16] = { 0 };
    for (int i = 0; i < 64; i++) {
        small[i] = (uint32_t)(rng() >> 60);
        count[small[i]]++;
    }
    for (int i = 1; i < 64; i++) {
        uint32_t v = small[i];
        int j = i - 1;
        while (j >= 0 && small[j] > v) {
            small[j + 1] = small[j];
            j--;
        }
        small[j + 1] = v;
    }
    int k = 0, ok = 1;
    for (uint32_t v = 0; v < 16; v++)
        for (uint32_t c = 0; c < count[v]; c++)
            ok &= small[k++] == v;
    CHECK("insertion sort matches counting sort", ok, 1);
}

static void test_div(void)
{
    /* volatile: force real divide instructions instead of constant folding */
    volatile uint64_t ua = 1000000000000000000ull, ub = 7;
    CHECK("1e18 / 7", ua / ub, 142857142857142857ull);        /* 7 * 142857142857142857 = 999999999999999999 */
    CHECK("1e18 % 7", ua % ub, 1);
    volatile uint64_t um = 0xffffffffffffffffull, ten = 10;
    CHECK("UINT64_MAX / 10", um / ten, 1844674407370955161ull); /* 18446744073709551615 / 10 */
    CHECK("UINT64_MAX % 10", um % ten, 5);
    volatile int64_t sa = -9, sb = 2;
    CHECK("-9 / 2", sa / sb, (uint64_t)-4);                     /* C truncates toward zero */
    CHECK("-9 % 2", sa % sb, (uint64_t)-1);
    volatile int64_t big = -4611686018427387904ll, three = 3;   /* -2^62 */
    CHECK("-2^62 / 3", big / three, (uint64_t)-1537228672809129301ll);
    CHECK("-2^62 % 3", big % three, (uint64_t)-1);
    volatile uint32_t w = 0xfffffff0u, w3 = 3;
    CHECK("u32 0xfffffff0 / 3", w / w3, 0x55555550u);
    volatile int32_t sw = -2147483647 - 1, sw7 = 7;
    CHECK("INT32_MIN / 7", (int64_t)(sw / sw7), (uint64_t)(int64_t)-306783378);
    CHECK("INT32_MIN % 7", (int64_t)(sw % sw7), (uint64_t)(int64_t)-2);

    /* identity a == q*b + r with |r| < |b| on pseudo-random operands */
    int ok = 1;
    for (int i = 0; i < 500; i++) {
        uint64_t a = rng(), b = rng() >> (rng() & 63);
        if (b == 0)
            b = 1;
        uint64_t q = a / b, r = a % b;
        ok &= (q * b + r == a) && (r < b);
        int64_t sa2 = (int64_t)a, sb2 = (int64_t)b;
        if (sb2 == 0 || (sb2 == -1))
            continue;
        int64_t sq = sa2 / sb2, sr = sa2 % sb2;
        ok &= (sq * sb2 + sr == sa2);
        ok &= (sr == 0) || ((sr < 0) == (sa2 < 0));
    }
    CHECK("division identities", ok, 1);
}

static void test_printf(void)
{
    /* The harness compares these lines exactly. */
    printf("printf: %d %u %x %X %o\n", -42, 42u, 0xbeefu, 0xbeefu, 8u);
    printf("printf: [%5d] [%-5d] [%05d] [%+d]\n", 42, 42, 42, 42);
    printf("printf: %ld %lu %lx\n", (long)-1234567890123, 18446744073709551615ul, 0xdeadbeefcafef00dul);
    printf("printf: [%s] [%8s] [%-8s] [%.3s] %c%c\n", "kite", "kite", "kite", "kite", 'o', 'k');
    printf("printf: %#x %#o %% %p\n", 255u, 8u, (void *)0x80001000);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%d-%s-%x", 7, "seven", 7u);
    CHECK("snprintf length", n, 9); /* strlen("7-seven-7") */
    CHECK("snprintf text", strcmp(buf, "7-seven-7"), 0);
}

int main(void)
{
    const char *check = "123456789";
    /* The CRC-32 (IEEE, reflected, init/xorout 0xffffffff) check value. */
    CHECK("crc32 check value", crc32((const uint8_t *)check, 9), 0xcbf43926u);
    CHECK("crc32 empty", crc32((const uint8_t *)"", 0), 0);
    test_sort();
    test_div();
    test_printf();
    return test_finish();
}
