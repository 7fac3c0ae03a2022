/* RV64M: every multiply/divide instruction, expected values from the spec.
 * Division by zero: quotient = all ones (-1 signed, 2^XLEN-1 unsigned),
 * remainder = dividend. Signed overflow (MIN / -1): quotient = MIN, rem = 0.
 * Division truncates toward zero; remainder takes the sign of the dividend.
 * W forms use only the low 32 bits of each source (the sources below carry
 * garbage upper bits) and sign-extend the 32-bit result, even for divuw/remuw.
 */
#include "asm_test.h"

#define MIN64 0x8000000000000000
#define MAX64 0x7fffffffffffffff

TEST_NAME(rv64m)
TEST_BEGIN
    /* ---- mul: low 64 bits of the product ---- */
    TEST_RR(mul, 21, 3, 7)
    TEST_RR(mul, 1, -1, -1)
    TEST_RR(mul, -21, -3, 7)
    /* (2^63-1)*2 = 2^64-2 -> wraps to -2. */
    TEST_RR(mul, 0xfffffffffffffffe, MAX64, 2)
    /* 2^32 * 2^32 = 2^64: low half is 0. */
    TEST_RR(mul, 0, 0x100000000, 0x100000000)
    /* 0x123456789 * 0xfedcba98 = 0x1_21fa00ac_462b0358 (65 bits): bit 64 is dropped. */
    TEST_RR(mul, 0x21fa00ac462b0358, 0x123456789, 0xfedcba98)

    /* ---- mulh: high 64 bits of signed x signed ---- */
    TEST_RR(mulh, 0, -1, -1)                       /* 1 -> high 0 */
    TEST_RR(mulh, 0xffffffffffffffff, -1, 1)       /* -1 -> high all ones */
    TEST_RR(mulh, 0x4000000000000000, MIN64, MIN64) /* 2^126 -> 2^62 */
    /* (2^63-1)^2 = 2^126 - 2^64 + 1 -> high = 2^62 - 1. */
    TEST_RR(mulh, 0x3fffffffffffffff, MAX64, MAX64)
    /* MIN * MAX = -2^126 + 2^63 -> high = -2^62 = 0xc000...0. */
    TEST_RR(mulh, 0xc000000000000000, MIN64, MAX64)

    /* ---- mulhu: high 64 bits of unsigned x unsigned ---- */
    /* (2^64-1)^2 = 2^128 - 2^65 + 1 -> high = 2^64 - 2. */
    TEST_RR(mulhu, 0xfffffffffffffffe, -1, -1)
    TEST_RR(mulhu, 1, 0x100000000, 0x100000000)    /* 2^64 */
    TEST_RR(mulhu, 1, -1, 2)                       /* 2^65 - 2 */
    TEST_RR(mulhu, 0, 12345, 67890)

    /* ---- mulhsu: rs1 signed, rs2 unsigned ---- */
    /* -1 * (2^64-1) = -2^64 + 1 -> 128-bit 0xffff...ffff_0000...0001. */
    TEST_RR(mulhsu, 0xffffffffffffffff, -1, -1)
    TEST_RR(mulhsu, 0, 1, -1)                      /* 2^64 - 1 */
    TEST_RR(mulhsu, 0xffffffffffffffff, -2, 3)     /* -6 */
    /* -2^63 * (2^64-1) = -2^127 + 2^63 = 2^127 + 2^63 mod 2^128 -> high 2^63. */
    TEST_RR(mulhsu, 0x8000000000000000, MIN64, -1)
    /* rs2 = 2^63 unsigned (NOT -2^63): 2 * 2^63 = 2^64 -> high 1. */
    TEST_RR(mulhsu, 1, 2, MIN64)

    /* ---- mulw: low 32 bits of the product, sign-extended ---- */
    TEST_RR(mulw, 0xfffffffffffffffe, 0x7fffffff, 2)
    TEST_RR(mulw, 15, 0xdeadbeef00000003, 0x1234567800000005)
    TEST_RR(mulw, 0, 0x10000, 0x10000)             /* 2^32 -> low word 0 */
    TEST_RR(mulw, 0xffffffff80000000, 0x40000000, 2)

    /* ---- div / divu ---- */
    TEST_RR(div, 3, 20, 6)
    TEST_RR(div, -3, -20, 6)                       /* truncates toward zero */
    TEST_RR(div, -3, 20, -6)
    TEST_RR(div, 3, -20, -6)
    TEST_RR(div, -1, 12345, 0)                     /* divide by zero: all ones */
    TEST_RR(div, -1, -12345, 0)
    TEST_RR(div, MIN64, MIN64, -1)                 /* overflow: MIN */
    TEST_RR(divu, 0x7fffffffffffffff, -1, 2)
    TEST_RR(divu, 0, 20, -6)                       /* -6 is huge unsigned */
    TEST_RR(divu, 0xffffffffffffffff, 12345, 0)    /* 2^64 - 1 */
    TEST_RR(divu, 0xffffffffffffffff, 0, 0)

    /* ---- rem / remu ---- */
    TEST_RR(rem, 2, 20, 6)
    TEST_RR(rem, -2, -20, 6)                       /* sign of the dividend */
    TEST_RR(rem, 2, 20, -6)
    TEST_RR(rem, -2, -20, -6)
    TEST_RR(rem, -12345, -12345, 0)                /* remainder = dividend */
    TEST_RR(rem, 0, MIN64, -1)                     /* overflow: 0 */
    TEST_RR(remu, 1, -1, 2)
    TEST_RR(remu, 20, 20, -6)
    TEST_RR(remu, 0xfffffffffffffff3, -13, 0)      /* remainder = dividend */

    /* ---- divw / divuw (low words only, result sign-extended) ---- */
    /* low words: 14 / -3 = -4 (toward zero) */
    TEST_RR(divw, 0xfffffffffffffffc, 0x123456780000000e, 0xabcdef00fffffffd)
    /* INT32_MIN / -1 = INT32_MIN, sign-extended */
    TEST_RR(divw, 0xffffffff80000000, 0x0000000180000000, 0x00000000ffffffff)
    TEST_RR(divw, 0xffffffffffffffff, 0x7777777700000007, 0x5555555500000000) /* /0 */
    /* 0xfffffffe / 2 unsigned = 0x7fffffff */
    TEST_RR(divuw, 0x7fffffff, 0xabcdabcdfffffffe, 0x2)
    /* 0x80000000 / 1 = 0x80000000, and the 32-bit result is sign-extended */
    TEST_RR(divuw, 0xffffffff80000000, 0x1234567880000000, 0xffffffff00000001)
    /* unsigned /0 -> 0xffffffff, sign-extended to all ones */
    TEST_RR(divuw, 0xffffffffffffffff, 0x0000000012345678, 0x1111111100000000)

    /* ---- remw / remuw ---- */
    TEST_RR(remw, 2, 0x123456780000000e, 0xabcdef00fffffffd)   /* 14 % -3 */
    TEST_RR(remw, 0xfffffffffffffffe, 0x00000000fffffff2, 3)   /* -14 % 3 = -2 */
    TEST_RR(remw, 0, 0x0000000180000000, 0x00000000ffffffff)   /* MIN % -1 */
    /* %0 = sext(low word of the dividend) */
    TEST_RR(remw, 0xffffffff87654321, 0x1234567887654321, 0xffffffff00000000)
    TEST_RR(remuw, 5, 0xffffffff80000005, 0x10)
    TEST_RR(remuw, 15, 0x12345678ffffffff, 0x10)
    /* 0xfffffffe % 0xffffffff = 0xfffffffe -> sign-extended */
    TEST_RR(remuw, 0xfffffffffffffffe, 0x00000000fffffffe, 0x00000000ffffffff)
    TEST_RR(remuw, 0xffffffff87654321, 0x1111111187654321, 0x2222222200000000) /* %0 */

    /* ---- destination aliasing a source ---- */
    li s1, 6
    li s2, 7
    mul s1, s1, s2
    CHECKI(s1, 42)
    li s1, 100
    divu s1, s1, s1
    CHECKI(s1, 1)
    TEST_END
