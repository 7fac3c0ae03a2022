/* Kite demo firmware: a freestanding RV64 program for the virt machine.
 * It greets over the NS16550 UART at 0x10000000, prints a few computed
 * values (so a broken translator shows up as wrong numbers, not just a
 * silent hang) and powers off through the SiFive test finisher at 0x100000.
 * Expected output is checked by Kite's tests; keep it deterministic. */
#include <stdint.h>

#define UART_BASE 0x10000000UL
#define UART_THR 0
#define UART_LSR 5
#define LSR_THRE 0x20
#define FINISHER ((volatile uint32_t *)0x100000UL)
#define FINISHER_PASS 0x5555
#define FINISHER_FAIL 0x3333

static volatile uint8_t *const uart = (volatile uint8_t *)UART_BASE;

static void putc_(char c)
{
    while (!(uart[UART_LSR] & LSR_THRE))
        ;
    uart[UART_THR] = (uint8_t)c;
}

static void puts_(const char *s)
{
    while (*s) {
        if (*s == '\n')
            putc_('\r');
        putc_(*s++);
    }
}

static void put_u64(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    puts_(&buf[i]);
}

static void put_i64(int64_t v)
{
    if (v < 0) {
        putc_('-');
        put_u64(-(uint64_t)v);
    } else {
        put_u64((uint64_t)v);
    }
}

static void put_hex(uint64_t v)
{
    puts_("0x");
    for (int s = 60; s >= 0; s -= 4)
        putc_("0123456789abcdef"[(v >> s) & 0xf]);
}

static void label(const char *name)
{
    puts_("  ");
    puts_(name);
    puts_(" = ");
}

static uint64_t fib(unsigned n)
{
    uint64_t a = 0, b = 1;
    while (n--) {
        uint64_t t = a + b;
        a = b;
        b = t;
    }
    return a;
}

static uint32_t crc32(const char *s)
{
    uint32_t crc = 0xffffffffu;
    while (*s) {
        crc ^= (uint8_t)*s++;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & -(crc & 1));
    }
    return ~crc;
}

/* Sieve of Eratosthenes: count primes below 10000. */
static unsigned char composite[10000];
static unsigned count_primes(void)
{
    unsigned n = 0;
    for (unsigned i = 2; i < sizeof composite; i++) {
        if (composite[i])
            continue;
        n++;
        for (unsigned j = i * i; j < sizeof composite; j += i)
            composite[j] = 1;
    }
    return n;
}

static const char greeting[] = "Hello from the Kite demo firmware!";

/* Keeps the compiler from folding the arithmetic at build time. */
static volatile int64_t opaque_a = -7, opaque_b = 2;

int demo_main(void)
{
    puts_(greeting);
    puts_("\nRunning on a RISC-V virt machine, hart 0, M-mode.\n");
    label("fib(90)");
    put_u64(fib(90));
    puts_("\n");
    label("primes below 10000");
    put_u64(count_primes());
    puts_("\n");
    label("crc32(greeting)");
    put_hex(crc32(greeting));
    puts_("\n");
    int64_t a = opaque_a, b = opaque_b;
    label("-7 / 2, -7 % 2");
    put_i64(a / b);
    puts_(", ");
    put_i64(a % b);
    puts_("\n");
    label("20!");
    uint64_t f = 1;
    for (uint64_t i = 2; i <= 20; i++)
        f *= i;
    put_u64(f);
    puts_("\n");
    puts_("Powering off through the test finisher. Bye!\n");
    return 0;
}

void finish(int status)
{
    *FINISHER = status == 0 ? FINISHER_PASS : ((uint32_t)status << 16) | FINISHER_FAIL;
    for (;;)
        ;
}

void demo_trap(uint64_t cause, uint64_t epc, uint64_t tval)
{
    puts_("\nunexpected trap: mcause=");
    put_hex(cause);
    puts_(" mepc=");
    put_hex(epc);
    puts_(" mtval=");
    put_hex(tval);
    puts_("\n");
    finish(1);
}
