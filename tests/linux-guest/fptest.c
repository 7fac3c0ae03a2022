/* fptest: Linux userspace floating point in the riscv64 guest (tests/linux_fp.rs).
 *
 * A static glibc program (riscv64-linux-gnu-gcc -O2 -static -ffp-contract=off
 * -fno-math-errno -frounding-math) whose printed lines are compared with
 * fptest.expected.
 * Pitfalls it avoids so that the expected text is exact:
 *   - every input goes through a volatile, so GCC cannot fold the math at
 *     compile time: the guest FPU (and the kernel's FP context switching)
 *     really computes each value;
 *   - -ffp-contract=off keeps a*b+c as two roundings (no implicit fmadd), so
 *     the x86-64 host computes the same bits; fused results use fma()
 *     explicitly (which becomes fmadd.d);
 *   - -frounding-math: without it GCC assumes round-to-nearest and rewrites
 *     e.g. rint(-x) as -rint(x), which is wrong under FE_UPWARD;
 *   - libm transcendentals may differ in the last ulp between glibc's
 *     riscv64 and x86-64 builds, so they are printed with %.12g only and
 *     checked against a tolerance, and kept out of the checksum;
 *   - three lines are RISC-V specific (their expected text comes from the
 *     ISA spec, not the host): 0/0 gives the canonical NaN 0x7ff8000000000000
 *     (x86: negative), float->int conversions saturate (+inf and NaN ->
 *     LONG_MAX; x86 returns LONG_MIN) and fmax.d(-0, +0) is +0.
 * The last line, "FPTEST-OK <checksum>", hashes (FNV-1a) the bit patterns of
 * every exact result that x86-64 shares (so the host computes the same
 * checksum), including each nbody step.
 */
#include <fenv.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

static uint64_t hash = 0xcbf29ce484222325ull;
static int failures;

static void mix(uint64_t v)
{
    for (int i = 0; i < 8; i++) {
        hash ^= (v >> (8 * i)) & 0xff;
        hash *= 0x100000001b3ull;
    }
}

static uint64_t bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof u);
    return u;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Print an exact double result and fold it into the checksum. */
static void show(const char *what, double d)
{
    printf("%s = %.17g (%a)\n", what, d, d);
    mix(bits(d));
}

/* A result whose RISC-V value differs from x86-64's: printed, not hashed. */
static void show_rv(const char *what, double d)
{
    printf("%s = %.17g (%a)\n", what, d, d);
}

static void showf(const char *what, float f)
{
    printf("%s = %.9g\n", what, f);
    mix(fbits(f));
}

static void showi(const char *what, long long v)
{
    printf("%s = %lld\n", what, v);
    mix((uint64_t)v);
}

/* libm function results: printed to 12 digits, checked within `rel`. */
static void approx(const char *what, double got, double want, double rel)
{
    printf("%s ~ %.12g\n", what, got);
    if (!(fabs(got - want) <= rel * fabs(want))) {
        printf("FAIL %s: %.17g, want %.17g\n", what, got, want);
        failures++;
    }
}

static volatile double v_two = 2.0, v_one = 1.0, v_three = 3.0, v_tenth = 0.1, v_ten = 10.0, v_zero = 0.0;
static volatile double v_half = 0.5, v_big = 9007199254740993.0 /* rounds to 2^53 */;
static volatile long long v_2p53p1 = 9007199254740993LL;
static volatile float vf_two = 2.0f, vf_tenth = 0.1f, vf_three = 3.0f;

static void basic(void)
{
    show("sqrt(2)", sqrt(v_two));
    show("1/3", v_one / v_three);
    show("0.1*3", v_tenth * v_three);
    show("0.1+0.2", v_tenth + v_tenth * v_two);
    show("fma(0.1,10,-1)", fma(v_tenth, v_ten, -v_one));
    show("0.1*10-1", v_tenth * v_ten - v_one);
    show("fma(1/3,3,-1)", fma(v_one / v_three, v_three, -v_one));
    show("fmin(-0,0)", fmin(-v_zero, v_zero));
    show_rv("fmax(-0,0)", fmax(-v_zero, v_zero)); /* fmax.d orders -0 < +0; x86 glibc returns -0 */
    show("fabs(-3)", fabs(-v_three));
    show("copysign(3,-0)", copysign(v_three, -v_zero));
    showf("sqrtf(2)", sqrtf(vf_two));
    showf("0.1f*3", vf_tenth * vf_three);
    showf("fmaf(0.1,3,-0.3)", fmaf(vf_tenth, vf_three, -0.3f));
    show("(double)0.1f", (double)vf_tenth);
    showf("(float)(1/3)", (float)(v_one / v_three));
}

static void conversions(void)
{
    volatile double a = 2.5, b = -2.5, c = 3.5, d = -1.9, f = 4294967295.75;
    showi("(long)2.5", (long)a);
    showi("(long)-1.9", (long)d);
    showi("lrint(2.5)", lrint(a));
    showi("lrint(3.5)", lrint(c));
    showi("lrint(-2.5)", lrint(b));
    showi("llround(-2.5)", llround(b));
    showi("(unsigned)4294967295.75", (long long)(unsigned)f);
    show("(double)(2^53+1)", (double)v_2p53p1);
    show("(double)(unsigned long)-1", (double)(unsigned long)(-v_2p53p1 / v_2p53p1));
    show("(double)2^53+1 literal", v_big);
    showi("(int)(float)16777217", (int)(float)(v_2p53p1 / 536870912LL)); /* 16777216.xx -> 16777216 */
    show("trunc(-2.7)", trunc(-2.7 * v_one));
    show("floor(-2.5)", floor(b));
    show("ceil(-2.5)", ceil(b));
    show("round(2.5)", round(a));
    show("nearbyint(2.5)", nearbyint(a));
}

static void specials(void)
{
    double nan = v_zero / v_zero, inf = v_one / v_zero, sub = DBL_MIN * v_half, tiny = DBL_TRUE_MIN * v_one;
    printf("0/0: isnan=%d signbit=%d bits=%016" PRIx64 "\n", isnan(nan) != 0, signbit(nan) != 0, bits(nan));
    printf("1/0: isinf=%d %f, -1/0 %f\n", isinf(inf) != 0, inf, -inf);
    printf("classify: nan=%d inf=%d zero=%d sub=%d normal=%d\n", fpclassify(nan) == FP_NAN,
           fpclassify(inf) == FP_INFINITE, fpclassify(-v_zero) == FP_ZERO, fpclassify(sub) == FP_SUBNORMAL,
           fpclassify(v_one) == FP_NORMAL);
    printf("signbit(-0)=%d -0 prints %g\n", signbit(-v_zero) != 0, -v_zero);
    show("DBL_MIN/2", sub);
    show("DBL_TRUE_MIN", tiny);
    show("DBL_TRUE_MIN/2 (ties to even: 0)", tiny * v_half);
    show("DBL_TRUE_MIN*3/2", tiny * 3.0 * v_half);
    show("DBL_MAX*2", DBL_MAX * v_two);
    show("fmax(nan,1)", fmax(nan, v_one));
    show("fmin(1,nan)", fmin(v_one, nan));
    printf("nan==nan %d, nan<1 %d, inf>DBL_MAX %d\n", nan == nan, nan < v_one, inf > DBL_MAX);
    printf("nan prints %f, -inf prints %e\n", fabs(nan), -inf);
    /* RISC-V fcvt saturates (+inf and NaN -> LONG_MAX); x86 returns LONG_MIN for all three. */
    printf("lrint(inf)=%ld lrint(-inf)=%ld lrint(nan)=%ld\n", lrint(inf), lrint(-inf), lrint(nan));
}

static void rounding(void)
{
    static const struct { int mode; const char *name; } modes[] = {
        {FE_TONEAREST, "nearest"}, {FE_UPWARD, "upward"}, {FE_DOWNWARD, "downward"}, {FE_TOWARDZERO, "towardzero"},
    };
    for (unsigned i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        if (fesetround(modes[i].mode) != 0) {
            printf("FAIL fesetround(%s)\n", modes[i].name);
            failures++;
            continue;
        }
        double r1 = rint(2.5 * v_one), r2 = rint(-2.5 * v_one), r3 = rint(2.7 * v_one), q = v_one / v_three;
        double s = sqrt(v_two);
        printf("%s: rint(2.5)=%g rint(-2.5)=%g rint(2.7)=%g 1/3=%a sqrt2=%a lrint(-3.5)=%ld\n", modes[i].name, r1, r2,
               r3, q, s, lrint(-3.5 * v_one));
        mix(bits(r1) ^ bits(r2) ^ bits(r3));
        mix(bits(q));
        mix(bits(s));
    }
    fesetround(FE_TONEAREST);

    feclearexcept(FE_ALL_EXCEPT);
    volatile double x = v_one / v_three;
    printf("flags after 1/3: inexact=%d invalid=%d\n", fetestexcept(FE_INEXACT) != 0, fetestexcept(FE_INVALID) != 0);
    feclearexcept(FE_ALL_EXCEPT);
    x = v_one / v_zero;
    printf("flags after 1/0: divbyzero=%d inexact=%d\n", fetestexcept(FE_DIVBYZERO) != 0,
           fetestexcept(FE_INEXACT) != 0);
    feclearexcept(FE_ALL_EXCEPT);
    x = sqrt(-v_one);
    printf("flags after sqrt(-1): invalid=%d isnan=%d\n", fetestexcept(FE_INVALID) != 0, isnan(x) != 0);
    feclearexcept(FE_ALL_EXCEPT);
    x = DBL_MAX * v_two;
    printf("flags after DBL_MAX*2: overflow=%d\n", fetestexcept(FE_OVERFLOW) != 0);
    feclearexcept(FE_ALL_EXCEPT);
    x = DBL_MIN * v_tenth;
    printf("flags after DBL_MIN*0.1: underflow=%d\n", fetestexcept(FE_UNDERFLOW) != 0);
    feclearexcept(FE_ALL_EXCEPT);
    x = v_two * v_three;
    printf("flags after 2*3: none=%d\n", fetestexcept(FE_ALL_EXCEPT) == 0);
}

static void libm(void)
{
    approx("exp(1)", exp(v_one), M_E, 1e-15);
    approx("log(10)", log(v_ten), M_LN10, 1e-15);
    approx("sin(0.5)", sin(v_half), 0.479425538604203, 1e-14);
    approx("cos(0.5)", cos(v_half), 0.8775825618903728, 1e-14);
    approx("atan2(1,2)", atan2(v_one, v_two), 0.4636476090008061, 1e-14);
    approx("pow(2,0.5)", pow(v_two, v_half), M_SQRT2, 1e-15);
    approx("tanh(0.5)", tanh(v_half), 0.46211715726000974, 1e-14);
    approx("expf(1)", expf((float)v_one), M_E, 1e-7);
}

/* A small n-body integration: long dependent chains of add/mul/div/sqrt. */
static void nbody(void)
{
    double x[4] = {0, 1, -1.5, 0.25}, y[4] = {0, 0.5, 0.75, -2}, vx[4] = {0, 0.1, -0.05, 0.2},
           vy[4] = {0, 0.9, -0.6, 0.1}, m[4] = {10, 0.1, 0.05, 0.02};
    volatile double dt = 0.001;
    for (int step = 0; step < 2000; step++) {
        for (int i = 0; i < 4; i++)
            for (int j = i + 1; j < 4; j++) {
                double dx = x[i] - x[j], dy = y[i] - y[j], d2 = dx * dx + dy * dy + 0.01;
                double inv = dt / (d2 * sqrt(d2));
                vx[i] -= dx * m[j] * inv;
                vy[i] -= dy * m[j] * inv;
                vx[j] += dx * m[i] * inv;
                vy[j] += dy * m[i] * inv;
            }
        for (int i = 0; i < 4; i++) {
            x[i] += dt * vx[i];
            y[i] += dt * vy[i];
            mix(bits(x[i]) ^ bits(vy[i]));
        }
    }
    double e = 0;
    for (int i = 0; i < 4; i++) e += 0.5 * m[i] * (vx[i] * vx[i] + vy[i] * vy[i]);
    show("nbody energy", e);
    show("nbody x1", x[1]);
}

int main(void)
{
    basic();
    conversions();
    specials();
    rounding();
    libm();
    nbody();
    if (failures) {
        printf("FPTEST-FAILED %d\n", failures);
        return 1;
    }
    printf("FPTEST-OK %016" PRIx64 "\n", hash);
    return 0;
}
