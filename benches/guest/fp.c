/* Floating-point workload (double): n-body simulation and a dense matrix multiply. */
#include "bench.h"

const char test_name[] = "bench_fp";

#define NB 5
#define MN 96
static double m_a[MN][MN], m_b[MN][MN], m_c[MN][MN];

struct body { double x, y, z, vx, vy, vz, m; };

static double my_sqrt(double v)
{
    double r;
    __asm__("fsqrt.d %0, %1" : "=f"(r) : "f"(v));
    return r;
}

__attribute__((noinline)) static double nbody(int steps)
{
    struct body b[NB] = {
        {0, 0, 0, 0, 0, 0, 39.47},
        {4.84, -1.16, -0.10, 0.60, 2.81, -0.02, 0.037},
        {8.34, 4.12, -0.40, -1.01, 1.82, 0.008, 0.011},
        {12.89, -15.11, -0.22, 1.08, 0.86, -0.01, 0.0017},
        {15.37, -25.91, 0.17, 0.97, 0.59, -0.03, 0.002},
    };
    const double dt = 0.01;
    for (int s = 0; s < steps; s++) {
        for (int i = 0; i < NB; i++)
            for (int j = i + 1; j < NB; j++) {
                double dx = b[i].x - b[j].x, dy = b[i].y - b[j].y, dz = b[i].z - b[j].z;
                double d2 = dx * dx + dy * dy + dz * dz;
                double mag = dt / (d2 * my_sqrt(d2));
                b[i].vx -= dx * b[j].m * mag; b[i].vy -= dy * b[j].m * mag; b[i].vz -= dz * b[j].m * mag;
                b[j].vx += dx * b[i].m * mag; b[j].vy += dy * b[i].m * mag; b[j].vz += dz * b[i].m * mag;
            }
        for (int i = 0; i < NB; i++) { b[i].x += dt * b[i].vx; b[i].y += dt * b[i].vy; b[i].z += dt * b[i].vz; }
    }
    double e = 0;
    for (int i = 0; i < NB; i++) e += b[i].m * (b[i].vx * b[i].vx + b[i].vy * b[i].vy + b[i].vz * b[i].vz);
    return e;
}

__attribute__((noinline)) static double matmul(int reps)
{
    for (int i = 0; i < MN; i++)
        for (int j = 0; j < MN; j++) { m_a[i][j] = (i * 7 + j) % 13 * 0.25; m_b[i][j] = (i + j * 3) % 11 * 0.5; }
    double t = 0;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < MN; i++)
            for (int j = 0; j < MN; j++) {
                double acc = 0;
                for (int k = 0; k < MN; k++) acc += m_a[i][k] * m_b[k][j];
                m_c[i][j] = acc;
            }
        t += m_c[r % MN][(r * 5) % MN];
        m_a[r % MN][r % MN] += 1.0;
    }
    return t;
}

__attribute__((noinline)) static uint64_t run(void)
{
    union { double d; uint64_t u; } e = {nbody(400000)}, m = {matmul(24)};
    return e.u * 31 + m.u;
}

int main(void)
{
    __asm__ volatile("li t0, 0x2000\n csrs mstatus, t0" ::: "t0"); /* FS = Initial */
    uint64_t sum = run();
    report("fp", sum);
    CHECK("fp checksum", sum, EXPECTED_FP);
    return test_finish();
}
