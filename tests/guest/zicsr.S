/* Zicsr: csrrw/csrrs/csrrc/csrrwi/csrrsi/csrrci on mscratch (rd gets the OLD
 * value, then the CSR is written/set/cleared), including rd = x0 (no read
 * side effects needed, write still happens) and rs1 = x0 / uimm = 0 (no write
 * at all, so even a read-only CSR can be read that way). Also: cycle/instret
 * and mcycle/minstret increase; misa reports MXL = 2 (RV64) with I, M, A, C;
 * mhartid = 0; mepc bit 0 is always zero; writing a read-only CSR raises an
 * illegal-instruction exception (cause 2); an unknown CSR number is illegal.
 */
#include "asm_test.h"

TEST_NAME(zicsr)
TEST_BEGIN
    /* ---- register forms ---- */
    li s1, 0x0123456789abcdef
    csrw mscratch, s1              /* csrrw x0, mscratch, s1 */
    csrr s3, mscratch              /* csrrs s3, mscratch, x0 */
    CHECK(s3, s1)
    li s2, 0xfedcba9876543210
    csrrw s3, mscratch, s2         /* old value out, new value in */
    CHECK(s3, s1)
    csrr s3, mscratch
    CHECK(s3, s2)
    li s1, 0x00000000000000ff
    csrrs s3, mscratch, s1         /* set bits */
    CHECK(s3, s2)
    csrr s3, mscratch
    CHECKI(s3, 0xfedcba98765432ff)
    li s1, 0xff00000000000f0f
    csrrc s3, mscratch, s1         /* clear bits */
    CHECKI(s3, 0xfedcba98765432ff)
    csrr s3, mscratch
    CHECKI(s3, 0x00dcba98765430f0)
    /* rd == rs1: the old CSR value goes to rd, the OLD rs1 is what is written */
    li s4, 0x1111
    csrrw s4, mscratch, s4
    CHECKI(s4, 0x00dcba98765430f0)
    csrr s3, mscratch
    CHECKI(s3, 0x1111)
    /* csrrs/csrrc with rs1 = x0 read without writing */
    csrrs s3, mscratch, x0
    CHECKI(s3, 0x1111)
    csrrc s3, mscratch, x0
    CHECKI(s3, 0x1111)
    /* rd = x0 variants still write */
    li s1, 0x2222
    csrrs x0, mscratch, s1
    csrr s3, mscratch
    CHECKI(s3, 0x3333)
    li s1, 0x1111
    csrrc x0, mscratch, s1
    csrr s3, mscratch
    CHECKI(s3, 0x2222)

    /* ---- immediate forms: zero-extended 5-bit uimm ---- */
    csrrwi s3, mscratch, 31
    CHECKI(s3, 0x2222)
    csrr s3, mscratch
    CHECKI(s3, 31)                 /* not sign-extended */
    csrrci s3, mscratch, 0x11
    CHECKI(s3, 31)
    csrr s3, mscratch
    CHECKI(s3, 0x0e)
    csrrsi s3, mscratch, 0x10
    CHECKI(s3, 0x0e)
    csrr s3, mscratch
    CHECKI(s3, 0x1e)
    csrrsi s3, mscratch, 0         /* uimm 0: no write */
    CHECKI(s3, 0x1e)
    csrrci s3, mscratch, 0
    CHECKI(s3, 0x1e)
    csrrwi x0, mscratch, 0         /* csrwi */
    csrr s3, mscratch
    CHECKI(s3, 0)

    /* ---- identification ---- */
    csrr s3, mhartid
    CHECKI(s3, 0)
    csrr s3, misa
    srli s4, s3, 62                /* MXL */
    CHECKI(s4, 2)
    /* extension bits: A = bit 0, C = bit 2, I = bit 8, M = bit 12 */
    li s5, (1 << 0) | (1 << 2) | (1 << 8) | (1 << 12)
    and s4, s3, s5
    CHECK(s4, s5)
    /* reading a read-only CSR with csrrs rs1 = x0 / csrrsi uimm = 0 is fine */
    csrrsi s3, mhartid, 0
    CHECKI(s3, 0)

    /* ---- mepc: bit 0 always reads as zero (IALIGN = 16 with C) ---- */
    li s1, 0x80001235
    csrw mepc, s1
    csrr s3, mepc
    QUIRK_IF(s3, 0x80001235, 0x80001234, "mepc bit 0 reads back as written (spec: always 0)")
    CHECKI(s3, 0x80001234)

    /* ---- counters increase ---- */
    rdcycle s1
    rdinstret s2
    csrr s5, mcycle
    csrr s6, minstret
    li t0, 200
1:  addi t0, t0, -1
    bnez t0, 1b
    rdcycle s3
    rdinstret s4
    sltu s3, s1, s3
    CHECKI(s3, 1)
    sltu s4, s2, s4
    CHECKI(s4, 1)
    csrr s3, mcycle
    csrr s4, minstret
    sltu s3, s5, s3
    CHECKI(s3, 1)
    sltu s4, s6, s4
    CHECKI(s4, 1)

    /* ---- illegal CSR accesses ---- */
    USE_RECORDING_TRAP
.Lro_write:
    csrw mhartid, s1               /* read-only CSR (0xf14): illegal */
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lro_write
    CHECK(s3, s4)
.Lro_write2:
    csrrsi s3, cycle, 1            /* user counter is read-only: write attempt is illegal */
    LOAD_VAR(s3, trap_epc)
    la s4, .Lro_write2
    CHECK(s3, s4)
.Lno_csr:
    csrr s3, 0x7ff                 /* unallocated machine CSR number */
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lno_csr
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 3)
    USE_UNEXPECTED_TRAP
    TEST_END
