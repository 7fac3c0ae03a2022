/* Kite guest test runtime: polled NS16550A output, test finisher exit and
 * check bookkeeping shared by the C and assembly tests.
 *
 * The UART poll is bounded so a broken LSR model makes output garbled rather
 * than hanging the guest. picolibc's stdout is routed here so printf works.
 */
#include <stdio.h>
#include "test.h"

static volatile uint8_t *const uart = (volatile uint8_t *)UART_BASE;

void uart_putc(char c)
{
    /* LSR (offset 5) bit 5 = THR empty; give up waiting after a while. */
    for (int i = 0; i < 100000 && !(uart[5] & 0x20); i++) {
    }
    uart[0] = (uint8_t)c;
}

void uart_puts(const char *s)
{
    while (*s)
        uart_putc(*s++);
}

void uart_puthex(uint64_t v)
{
    uart_puts("0x");
    for (int i = 60; i >= 0; i -= 4)
        uart_putc("0123456789abcdef"[(v >> i) & 0xf]);
}

void uart_putdec(uint64_t v)
{
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        uart_putc(buf[--n]);
}

void test_exit(int code)
{
    volatile uint32_t *fin = (volatile uint32_t *)FINISHER_BASE;
    if (code == 0)
        *fin = 0x5555;
    else
        *fin = ((uint32_t)code << 16) | 0x3333;
    for (;;)
        __asm__ volatile("wfi");
}

static int uart_stdio_put(char c, FILE *f)
{
    (void)f;
    uart_putc(c);
    return (unsigned char)c;
}

static FILE uart_stdio = FDEV_SETUP_STREAM(uart_stdio_put, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &uart_stdio;
FILE *const stderr = &uart_stdio;

static uint64_t checks_run;
static uint64_t checks_failed;

void __check_named(const char *name, uint64_t got, uint64_t expected)
{
    checks_run++;
    if (got != expected) {
        checks_failed++;
        uart_puts("FAIL ");
        uart_puts(name);
        uart_puts(": got ");
        uart_puthex(got);
        uart_puts(" expected ");
        uart_puthex(expected);
        uart_putc('\n');
    }
}

/* Called by the assembly CHECK macro; `line` is the source line of the check. */
void __check_result(uint64_t line, uint64_t got, uint64_t expected)
{
    checks_run++;
    if (got != expected) {
        checks_failed++;
        uart_puts("FAIL line ");
        uart_putdec(line);
        uart_puts(": got ");
        uart_puthex(got);
        uart_puts(" expected ");
        uart_puthex(expected);
        uart_putc('\n');
    }
}

extern const uint64_t __checklist_start[], __checklist_end[];

int test_finish(void)
{
    uint64_t listed = (uint64_t)(__checklist_end - __checklist_start);
    int code = checks_failed ? 1 : 0;
    uart_puts(test_name);
    uart_puts(": ");
    uart_putdec(checks_run);
    uart_puts(" checks, ");
    uart_putdec(checks_failed);
    uart_puts(" failed\n");
    /* Assembly tests list every static check; each must run exactly once. */
    if (listed && listed != checks_run) {
        uart_puts("FAIL check count: ran ");
        uart_putdec(checks_run);
        uart_puts(", listed ");
        uart_putdec(listed);
        uart_putc('\n');
        code = 2;
    }
    if (checks_run == 0)
        code = 2;
    uart_puts(code ? "FAIL " : "PASS ");
    uart_puts(test_name);
    uart_putc('\n');
    return code;
}

/* Asm tests jump here when done. */
void __test_done(void) __attribute__((noreturn));
void __test_done(void)
{
    test_exit(test_finish());
}

static int in_report;

void __report_unexpected_trap(uint64_t cause, uint64_t epc, uint64_t tval) __attribute__((noreturn));
void __report_unexpected_trap(uint64_t cause, uint64_t epc, uint64_t tval)
{
    if (in_report)
        test_exit(4);
    in_report = 1;
    uart_puts("UNEXPECTED TRAP mcause=");
    uart_puthex(cause);
    uart_puts(" mepc=");
    uart_puthex(epc);
    uart_puts(" mtval=");
    uart_puthex(tval);
    uart_putc('\n');
    test_exit(3);
}
