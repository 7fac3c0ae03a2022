/* RV64I base integer instructions: every instruction, expected values worked
 * out by hand from the unprivileged spec (comments give the reasoning).
 * Covers: add/sub wrap-around, logic ops, slt/sltu/slti/sltiu with negative
 * immediates, shifts by 0/31/32/63 (incl. the W forms and their sign
 * extension), lui/auipc with negative upper immediates, every load (sign/zero
 * extension) and store (partial writes), all six branches taken/not taken with
 * signed vs unsigned operands, jal/jalr link values, jalr clearing bit 0,
 * writes to x0 being discarded, and fence as a no-op.
 */
#include "asm_test.h"

TEST_NAME(rv64i)
TEST_BEGIN
    /* ---- add / sub / addi ---- */
    TEST_RR(add, 5, 2, 3)
    /* 0x7fff...f + 1 wraps to the most negative value (no overflow trap). */
    TEST_RR(add, 0x8000000000000000, 0x7fffffffffffffff, 1)
    /* -1 + -1 = -2: carry out of bit 63 is discarded. */
    TEST_RR(add, 0xfffffffffffffffe, -1, -1)
    TEST_RR(sub, 0xffffffffffffffff, 0, 1)
    /* MIN - 1 wraps to MAX. */
    TEST_RR(sub, 0x7fffffffffffffff, 0x8000000000000000, 1)
    TEST_RR(sub, 0, 0x123456789abcdef0, 0x123456789abcdef0)
    TEST_RI(addi, 0x0000000000000800 - 1, 0, 2047)
    /* imm is sign-extended: 0 + (-2048). */
    TEST_RI(addi, 0xfffffffffffff800, 0, -2048)
    TEST_RI(addi, 0x8000000000000000, 0x7fffffffffffffff, 1)

    /* ---- W arithmetic: 32-bit result, sign-extended to 64 ---- */
    /* 0x7fffffff + 1 = 0x80000000 (as 32 bits) -> sign-extended. */
    TEST_RR(addw, 0xffffffff80000000, 0x7fffffff, 1)
    /* Upper bits of the sources are ignored: low words 0xffffffff + 2 = 1. */
    TEST_RR(addw, 1, 0x12345678ffffffff, 0xabcdef0000000002)
    TEST_RR(subw, 0xffffffffffffffff, 0, 1)
    /* 0x80000000 - 1 = 0x7fffffff (positive, upper bits zero). */
    TEST_RR(subw, 0x7fffffff, 0xffffffff80000000, 1)
    TEST_RI(addiw, 0xffffffff80000000, 0x7fffffff, 1)
    /* addiw x, 0 is sext.w: 0x00000000_ffffffff -> -1. */
    TEST_RI(addiw, 0xffffffffffffffff, 0xffffffff, 0)
    TEST_RI(addiw, 0x7ffff800, 0x80000000, -2048)

    /* ---- logic (per 16-bit lane: ff00 op 0ff0 = and 0f00, or fff0, xor f0f0) ---- */
    TEST_RR(and, 0x0f000f000f000f00, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0)
    TEST_RR(or,  0xfff0fff0fff0fff0, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0)
    TEST_RR(xor, 0xf0f0f0f0f0f0f0f0, 0xff00ff00ff00ff00, 0x0ff00ff00ff00ff0)
    /* andi sign-extends its 12-bit immediate: -16 = ...fff0 clears the low nibble. */
    TEST_RI(andi, 0x123456789abcdef0, 0x123456789abcdeff, -16)
    TEST_RI(andi, 0x0ff, 0x123456789abcdeff, 0x0ff)
    TEST_RI(ori, 0xffffffffffffffff, 0x0, -1)
    TEST_RI(ori, 0x123456789abcd7ff, 0x123456789abcd000, 0x7ff)
    /* xori with -1 is bitwise not. */
    TEST_RI(xori, 0xedcba98765432100, 0x123456789abcdeff, -1)
    TEST_RI(xori, 0x123456789abcdf00, 0x123456789abcdeff, 0x1ff)

    /* ---- 64-bit shifts: shift amount is rs2[5:0] ---- */
    TEST_RR(sll, 0x123456789abcdef0, 0x123456789abcdef0, 0)
    TEST_RR(sll, 0x80000000, 1, 31)
    TEST_RR(sll, 0x100000000, 1, 32)
    TEST_RR(sll, 0x8000000000000000, 1, 63)
    /* Only the low 6 bits of rs2 count: 64 -> 0, 65 -> 1. */
    TEST_RR(sll, 0x2, 1, 65)
    TEST_RR(srl, 0x8000000000000000, 0x8000000000000000, 0)
    TEST_RR(srl, 0x100000000, 0x8000000000000000, 31)
    TEST_RR(srl, 0x80000000, 0x8000000000000000, 32)
    TEST_RR(srl, 1, 0x8000000000000000, 63)
    TEST_RR(sra, 0x8000000000000000, 0x8000000000000000, 0)
    /* Arithmetic shift replicates the sign bit. */
    TEST_RR(sra, 0xffffffff00000000, 0x8000000000000000, 31)
    TEST_RR(sra, 0xffffffff80000000, 0x8000000000000000, 32)
    TEST_RR(sra, 0xffffffffffffffff, 0x8000000000000000, 63)
    TEST_RR(sra, 0x0000000000000001, 0x7fffffffffffffff, 62)
    TEST_RI(slli, 0x123456789abcdef0, 0x123456789abcdef0, 0)
    TEST_RI(slli, 0x80000000, 1, 31)
    TEST_RI(slli, 0x100000000, 1, 32)
    TEST_RI(slli, 0x8000000000000000, 1, 63)
    TEST_RI(srli, 0xffffffffffffffff, 0xffffffffffffffff, 0)
    TEST_RI(srli, 0x1ffffffff, 0xffffffffffffffff, 31)
    TEST_RI(srli, 0xffffffff, 0xffffffffffffffff, 32)
    TEST_RI(srli, 1, 0xffffffffffffffff, 63)
    TEST_RI(srai, 0x8000000000000000, 0x8000000000000000, 0)
    TEST_RI(srai, 0xffffffff00000000, 0x8000000000000000, 31)
    TEST_RI(srai, 0xffffffff80000000, 0x8000000000000000, 32)
    TEST_RI(srai, 0xffffffffffffffff, 0x8000000000000000, 63)

    /* ---- 32-bit shifts: shamt = rs2[4:0], result sign-extended ---- */
    /* 1 << 31 = 0x80000000 as a word -> sign-extended. */
    TEST_RR(sllw, 0xffffffff80000000, 1, 31)
    TEST_RR(sllw, 0x12345678, 0xffffffff12345678, 0)
    /* shamt 32 uses rs2[4:0] = 0: result is sext(low word). */
    TEST_RR(sllw, 0xffffffff87654321, 0x87654321, 32)
    /* Bits shifted out of the word vanish: 0x80000001 << 1 = 2. */
    TEST_RR(sllw, 2, 0x80000001, 1)
    /* srlw zero-fills from bit 31 and ignores the upper source bits. */
    TEST_RR(srlw, 1, 0xffffffff80000000, 31)
    /* srlw by 0 of a word with bit 31 set still sign-extends the 32-bit result. */
    TEST_RR(srlw, 0xffffffff80000000, 0x0000000080000000, 0)
    TEST_RR(srlw, 0x7fffffff, 0xffffffffffffffff, 1)
    TEST_RR(srlw, 0xffffffff80000000, 0x80000000, 32)
    /* sraw replicates bit 31 (not bit 63). */
    TEST_RR(sraw, 0xffffffffffffffff, 0x0000000080000000, 31)
    TEST_RR(sraw, 0xfffffffff8000000, 0x0000000080000000, 4)
    TEST_RR(sraw, 0x00000000, 0xffffffff7fffffff, 31)
    TEST_RR(sraw, 0xffffffff80000000, 0x80000000, 32)
    TEST_RI(slliw, 0xffffffff80000000, 1, 31)
    TEST_RI(slliw, 0xffffffff87654321, 0x1234567887654321, 0)
    TEST_RI(srliw, 1, 0x80000000, 31)
    TEST_RI(srliw, 0xffffffff80000000, 0x80000000, 0)
    TEST_RI(srliw, 0x00ffffff, 0xffffffffffffffff, 8)
    TEST_RI(sraiw, 0xffffffffffffffff, 0x80000000, 31)
    TEST_RI(sraiw, 0xffffffffff800000, 0x80000000, 8)
    TEST_RI(sraiw, 0x00000000007fffff, 0xffffffff7fffffff, 8)

    /* ---- compares ---- */
    TEST_RR(slt, 1, -1, 0)
    TEST_RR(slt, 0, 0, -1)
    TEST_RR(slt, 1, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_RR(slt, 0, 5, 5)
    /* Unsigned: -1 is the largest value. */
    TEST_RR(sltu, 0, -1, 0)
    TEST_RR(sltu, 1, 0, -1)
    TEST_RR(sltu, 0, 0x8000000000000000, 0x7fffffffffffffff)
    TEST_RI(slti, 1, -2, -1)
    TEST_RI(slti, 0, -1, -1)
    TEST_RI(slti, 0, 0, -2048)
    TEST_RI(slti, 1, 0x8000000000000000, -2048)
    TEST_RI(slti, 1, 2046, 2047)
    /* sltiu sign-extends the immediate then compares unsigned:
     * x < 0xffff...ffff is true for every x except all-ones. */
    TEST_RI(sltiu, 1, 0x7fffffffffffffff, -1)
    TEST_RI(sltiu, 0, 0xffffffffffffffff, -1)
    /* sltiu rd, rs, 1 is seqz. */
    TEST_RI(sltiu, 1, 0, 1)
    TEST_RI(sltiu, 0, 5, 1)
    /* -2048 sign-extends to 0xffff...f800; 0xffff...f801 is not below it. */
    TEST_RI(sltiu, 0, 0xfffffffffffff801, -2048)

    /* ---- lui / auipc ---- */
    lui s3, 0x12345
    CHECKI(s3, 0x12345000)
    /* lui with bit 31 of the result set sign-extends on RV64. */
    lui s3, 0x80000
    CHECKI(s3, 0xffffffff80000000)
    lui s3, 0xfffff
    CHECKI(s3, 0xfffffffffffff000)
    lui s3, 0
    CHECKI(s3, 0)
    /* auipc adds the sign-extended upper immediate to its own pc. */
.Lauipc0:
    auipc s3, 0
    la s4, .Lauipc0
    CHECK(s3, s4)
.Lauipc1:
    auipc s3, 0xfffff
    la s4, .Lauipc1
    li s5, -4096
    add s4, s4, s5
    CHECK(s3, s4)
.Lauipc2:
    /* 0x80000 << 12 sign-extends to -2 GiB; pc is 0x80xxxxxx so the sum
     * is pc - 0x80000000 (a small address, not a memory access). */
    auipc s3, 0x80000
    la s4, .Lauipc2
    li s5, 0xffffffff80000000
    add s4, s4, s5
    CHECK(s3, s4)

    /* ---- loads: sign/zero extension ---- */
    la s0, load_data           /* bytes 0x80 0x7f 0x01 0xff | 0xf0 0xde 0xbc 0x9a ... */
    lb s3, 0(s0)
    CHECKI(s3, 0xffffffffffffff80)
    lbu s3, 0(s0)
    CHECKI(s3, 0x80)
    lb s3, 1(s0)
    CHECKI(s3, 0x7f)
    lb s3, 3(s0)
    CHECKI(s3, -1)
    lbu s3, 3(s0)
    CHECKI(s3, 0xff)
    /* halfword at +2 is 0xff01 (little-endian). */
    lh s3, 2(s0)
    CHECKI(s3, 0xffffffffffffff01)
    lhu s3, 2(s0)
    CHECKI(s3, 0xff01)
    lh s3, 0(s0)
    CHECKI(s3, 0x7f80)
    /* word at +0 is 0xff017f80: bit 31 set. */
    lw s3, 0(s0)
    CHECKI(s3, 0xffffffffff017f80)
    lwu s3, 0(s0)
    CHECKI(s3, 0xff017f80)
    lw s3, 8(s0)
    CHECKI(s3, 0x12345678)
    ld s3, 0(s0)
    CHECKI(s3, 0x9abcdef0ff017f80)
    /* negative displacement */
    addi s1, s0, 16
    ld s3, -8(s1)
    CHECKI(s3, 0x0011223312345678)
    lbu s3, -1(s1)
    CHECKI(s3, 0x00)

    /* ---- stores: partial writes leave neighbours intact ---- */
    la s0, store_data
    li s1, -1
    sd s1, 0(s0)
    sd s1, 8(s0)
    li s2, 0x0123456789abcdef
    sb s2, 1(s0)               /* only byte 1 becomes 0xef */
    ld s3, 0(s0)
    CHECKI(s3, 0xffffffffffffefff)
    sh s2, 4(s0)               /* bytes 4..5 become 0xcdef */
    ld s3, 0(s0)
    CHECKI(s3, 0xffffcdefffffefff)
    sw s2, 8(s0)               /* bytes 8..11 become 0x89abcdef */
    ld s3, 8(s0)
    CHECKI(s3, 0xffffffff89abcdef)
    sd s2, 8(s0)
    ld s3, 8(s0)
    CHECK(s3, s2)
    sd zero, 0(s0)
    li s2, 0x5a
    sb s2, 7(s0)               /* highest byte of the dword */
    ld s3, 0(s0)
    CHECKI(s3, 0x5a00000000000000)
    addi s1, s0, 8
    sh s2, -2(s1)              /* negative offset: bytes 6..7 = 0x005a */
    ld s3, 0(s0)
    CHECKI(s3, 0x005a000000000000)

    /* ---- x0 is hard-wired to zero ---- */
    li s1, 1234
    add x0, s1, s1
    addi x0, x0, 5
    lui x0, 0x12345
    ld x0, 0(s0)
    mv s3, x0
    CHECKI(s3, 0)

    /* ---- branches: s4 accumulates one bit per correct outcome ---- */
    li s4, 0
    li s1, -1
    li s2, 1
    beq s1, s1, 1f
    j .Lbr_bad
1:  ori s4, s4, 1
    beq s1, s2, .Lbr_bad
    bne s1, s2, 1f
    j .Lbr_bad
1:  ori s4, s4, 2
    bne s1, s1, .Lbr_bad
    blt s1, s2, 1f             /* signed: -1 < 1 */
    j .Lbr_bad
1:  ori s4, s4, 4
    blt s2, s1, .Lbr_bad
    blt s2, s2, .Lbr_bad       /* strict */
    bge s2, s1, 1f             /* signed: 1 >= -1 */
    j .Lbr_bad
1:  ori s4, s4, 8
    bge s2, s2, 1f             /* equal: taken */
    j .Lbr_bad
1:  ori s4, s4, 16
    bge s1, s2, .Lbr_bad
    bltu s2, s1, 1f            /* unsigned: 1 < 0xffff...ffff */
    j .Lbr_bad
1:  ori s4, s4, 32
    bltu s1, s2, .Lbr_bad
    bltu s2, s2, .Lbr_bad
    bgeu s1, s2, 1f            /* unsigned: 0xffff...ffff >= 1 */
    j .Lbr_bad
1:  ori s4, s4, 64
    bgeu s2, s1, .Lbr_bad
    bgeu s2, s2, 1f
    j .Lbr_bad
1:  ori s4, s4, 128
    /* backward taken branch: loop three times */
    li s1, 3
    li s5, 0
2:  addi s5, s5, 1
    addi s1, s1, -1
    bnez s1, 2b
    li s1, 3
    bne s5, s1, .Lbr_bad
    ori s4, s4, 256
.Lbr_bad:
    CHECKI(s4, 0x1ff)

    /* ---- jal / jalr ---- */
.Ljal0:
    jal s3, .Ljal1             /* link = address of the next instruction */
.Ljal_ret:
    j .Lbr_bad2
.Ljal1:
    la s4, .Ljal_ret
    CHECK(s3, s4)
    /* jal x0 is a plain jump (no link written anywhere). */
    li s3, 77
    jal x0, 1f
    li s3, 0
1:  CHECKI(s3, 77)
    /* jalr target = (rs1 + imm) & ~1: an odd target address still lands. */
    la s1, .Ljalr_t1
    addi s1, s1, 1
    jalr s3, 0(s1)
.Ljalr_l1:
    j .Lbr_bad2
.Ljalr_t1:
    la s4, .Ljalr_l1
    CHECK(s3, s4)
    /* jalr with a non-zero offset (odd sum again: base - 7 + 8 = base + 1). */
    la s1, .Ljalr_t2
    addi s1, s1, -7
    jalr s3, 8(s1)
.Ljalr_l2:
    j .Lbr_bad2
.Ljalr_t2:
    la s4, .Ljalr_l2
    CHECK(s3, s4)
    /* rd == rs1: target uses the OLD rs1 value, then rd gets the link. */
    la s3, .Ljalr_t3
    jalr s3, 0(s3)
.Ljalr_l3:
    j .Lbr_bad2
.Ljalr_t3:
    la s4, .Ljalr_l3
    CHECK(s3, s4)
    /* call/ret through a real subroutine. */
    li s3, 0
    call sub_add_40
    CHECKI(s3, 40)
.Lbr_bad2:
    li s5, 1
    CHECKI(s5, 1)

    /* ---- fence variants are no-ops for a single hart ---- */
    li s3, 9
    fence
    fence rw, rw
    fence r, w
    fence.tso
    CHECKI(s3, 9)
    TEST_END

sub_add_40:
    addi s3, s3, 40
    ret

    .data
    .balign 8
load_data:
    .byte 0x80, 0x7f, 0x01, 0xff, 0xf0, 0xde, 0xbc, 0x9a
    .word 0x12345678
    .word 0x00112233
store_data:
    .dword 0, 0
