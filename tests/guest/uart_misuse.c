/* UART misuse: the guest pokes the NS16550A in ways a driver should not -
 * reads/writes of registers past the 8 defined ones (offsets 8..0xff of the
 * 0x100-byte window), 2/4/8-byte accesses to the byte-wide registers,
 * divisor-latch programming, FIFO control writes, reads of IIR/MSR/RBR with
 * nothing pending. An emulator may ignore such accesses or raise an access
 * fault (the guest tolerates both through the recording trap handler), but it
 * must keep running: afterwards the UART is reprogrammed sanely and normal
 * output must work and the guest must pass.
 */
#include <stdint.h>
#include "test.h"

const char test_name[] = "uart_misuse";

#define REG8(off) (*(volatile uint8_t *)(UART_BASE + (off)))
#define REG16(off) (*(volatile uint16_t *)(UART_BASE + (off)))
#define REG32(off) (*(volatile uint32_t *)(UART_BASE + (off)))
#define REG64(off) (*(volatile uint64_t *)(UART_BASE + (off)))

int main(void)
{
    uart_puts("uart_misuse: start\n");
    __asm__ volatile("csrw mtvec, %0" ::"r"(__recording_trap));
    uint64_t sink = 0;

    /* undefined offsets inside the UART window */
    for (unsigned off = 8; off < 0x100; off += 8) {
        REG8(off) = 0xa5;
        sink += REG8(off);
        REG8(off + 3) = 0x5a;
    }
    REG8(0xff) = 0xff;
    sink += REG8(0xff);

    /* wide accesses to byte registers */
    sink += REG64(0);      /* RBR..SCR in one go */
    sink += REG32(4);
    sink += REG16(2);
    REG16(6) = 0;          /* MSR (read-only) + SCR */
    REG32(4) = 0;          /* MCR, LSR, MSR, SCR */
    /* THR '#', IER 0, FCR 0, LCR 3 (8N1), MCR 0, LSR/MSR ignored, SCR 0x5a */
    REG64(0) = 0x5a00000003000023ull;
    REG64(0xf8) = 0x0123456789abcdefull;

    /* reads with nothing pending */
    sink += REG8(0) + REG8(2) + REG8(6);

    /* divisor latch dance and FIFO control, then back to a sane state */
    REG8(3) = 0x83;        /* DLAB = 1 */
    REG8(0) = 0x01;        /* DLL */
    REG8(1) = 0x00;        /* DLM */
    REG8(3) = 0x03;        /* DLAB = 0, 8N1 */
    REG8(2) = 0x07;        /* enable + reset FIFOs */
    REG8(1) = 0x00;        /* no interrupts */
    REG8(4) = 0x00;        /* no loopback */
    (void)sink;

    __asm__ volatile("csrw mtvec, %0" ::"r"(__unexpected_trap));
    uart_puts("\nuart_misuse: accesses survived, traps=");
    uart_putdec(trap_count);
    uart_putc('\n');
    CHECK("LSR THR empty after misuse", REG8(5) & 0x20, 0x20);
    CHECK("LCR reads back 8N1", REG8(3), 0x03);
    uart_puts("uart_misuse: output still works\n");
    return test_finish();
}
