/* HTIF console and exit for the spike builds of the F/D and bitmanip tests
 * (`*_spike.elf`): strong definitions of the two hardware hooks of uart.c,
 * whose own uart_putc/test_exit are weakened in the spike build (compiled at
 * -O0 so its internal calls go through the symbols). `tohost`/`fromhost` sit
 * in their own `.tohost` section as in riscv-tests; the emulator finds them
 * by symbol. Every wait is bounded so a broken host cannot hang the guest.
 */
#include "test.h"

volatile uint64_t tohost __attribute__((section(".tohost"), aligned(64)));
volatile uint64_t fromhost __attribute__((section(".tohost"), aligned(64)));

#define HTIF_CONSOLE_PUTCHAR ((1ULL << 56) | (1ULL << 48))

void uart_putc(char c)
{
    for (int i = 0; i < 10000000 && tohost; i++) {
    }
    tohost = HTIF_CONSOLE_PUTCHAR | (uint8_t)c;
    for (int i = 0; i < 10000000 && !fromhost; i++) {
    }
    fromhost = 0;
}

void test_exit(int code)
{
    tohost = ((uint64_t)code << 1) | 1;
    for (;;)
        __asm__ volatile("wfi");
}
