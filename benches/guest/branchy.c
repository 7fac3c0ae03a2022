/* Branchy / indirect workload: a bytecode interpreter (switch dispatch) and a
 * function-pointer table called in a data-dependent order (indirect jumps and
 * returns dominate). */
#include "bench.h"

const char test_name[] = "bench_branchy";

enum { OP_PUSH, OP_ADD, OP_MUL, OP_XOR, OP_DUP, OP_SWAP, OP_JNZ, OP_DEC, OP_POP, OP_HALT };

__attribute__((noinline)) static uint64_t vm_run(const uint8_t *code, uint64_t n)
{
    uint64_t st[16], acc = 0;
    int sp = 0;
    int pc = 0;
    st[sp++] = n;
    for (;;) {
        switch (code[pc++]) {
        case OP_PUSH: st[sp++] = code[pc++]; break;
        case OP_ADD: sp--; st[sp - 1] += st[sp]; break;
        case OP_MUL: sp--; st[sp - 1] *= st[sp]; break;
        case OP_XOR: sp--; st[sp - 1] ^= st[sp]; break;
        case OP_DUP: st[sp] = st[sp - 1]; sp++; break;
        case OP_SWAP: { uint64_t t = st[sp - 1]; st[sp - 1] = st[sp - 2]; st[sp - 2] = t; break; }
        case OP_JNZ: { int t = code[pc++]; if (st[--sp]) pc = t; break; }
        case OP_DEC: st[sp - 1]--; break;
        case OP_POP: acc += st[--sp]; break;
        case OP_HALT: return acc + st[0];
        }
    }
}

typedef uint64_t (*fn_t)(uint64_t);
#define F(n, e) __attribute__((noinline)) static uint64_t f##n(uint64_t x) { return e; }
F(0, x * 3 + 1) F(1, x ^ (x >> 3)) F(2, x + 0x9e37) F(3, (x << 5) - x) F(4, x * x + 7) F(5, ~x + 11)
F(6, x ^ 0x5555) F(7, (x >> 1) | (x << 63))
static fn_t const table[8] = {f0, f1, f2, f3, f4, f5, f6, f7};

int main(void)
{
    /* n on stack; loop: dup push 3 mul pop; push 7 xor ... dec dup jnz */
    static const uint8_t prog[] = {
        /* 0 */ OP_DUP, OP_PUSH, 3, OP_MUL, OP_POP,
        /* 5 */ OP_DUP, OP_PUSH, 7, OP_XOR, OP_PUSH, 2, OP_ADD, OP_POP,
        /* 13 */ OP_DEC, OP_DUP, OP_JNZ, 0, OP_HALT,
    };
    uint64_t sum = vm_run(prog, 6000000);
    uint64_t x = 1, s = 99;
    for (int i = 0; i < 16000000; i++) x = table[xorshift(&s) & 7](x);
    sum = sum * 31 + x;
    report("branchy", sum);
    CHECK("branchy checksum", sum, EXPECTED_BRANCHY);
    return test_finish();
}
