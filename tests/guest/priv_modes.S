/* M/S/U privilege mechanics without paging (privileged spec 1.12):
 *  - ecall causes 8/9 from U/S; mret to U clears MPRV
 *  - M/S CSRs are illegal (2) from lower modes
 *  - counter gating by mcounteren (S) and mcounteren & scounteren (U)
 *  - TVM (satp, sfence.vma), TSR (sret) and TW (wfi) trap in S; wfi in U traps
 *  - sret returns to U; medeleg sends U's ecall to the S handler
 *  - mideleg: a pending SSIP is taken by S right after mret (scause, sepc)
 *  - an undelegated S-level interrupt is taken in M from U with MIE = 0;
 *    priority SSI over STI
 *  - Sstc: with menvcfg.STCE, stimecmp in the past raises STIP, taken by S;
 *    a stimecmp in the future lowers it
 *  - PMP: a read-only NAPOT page denies S stores (7) but not M's until it is
 *    locked; a locked entry ignores pmpaddr writes
 * Checks run in M; the code under test runs in S/U via RUN_IN and comes back
 * through any trap to m_trap (records mcause/mepc/mtval).
 */
#include "asm_test.h"

#define MSTATUS_SIE  (1 << 1)
#define MSTATUS_MPP  (3 << 11)
#define MSTATUS_MPRV (1 << 17)
#define MSTATUS_TVM  (1 << 20)
#define MSTATUS_TW   (1 << 21)
#define MSTATUS_TSR  (1 << 22)
#define INTR         0x8000000000000000
#define CSR_MENVCFG  0x30a
#define CSR_STIMECMP 0x14d

/* Enter `entry` in `mode` (0 U, 1 S); resume after the first trap, in M. */
#define RUN_IN(mode, entry)                 \
    la t0, 1f; la t1, resume_pc; sd t0, 0(t1); \
    li t0, MSTATUS_MPP; csrc mstatus, t0;  \
    li t0, (mode) << 11; csrs mstatus, t0;  \
    la t0, entry; csrw mepc, t0; mret;      \
1:

#define CHECK_TRAP(cause)  LOAD_VAR(s3, rec_cause); CHECKI(s3, cause)
#define CHECK_EPC(label)   LOAD_VAR(s3, rec_epc); la s4, label; CHECK(s3, s4)
#define CHECK_SREC(off, v) la s3, s_rec; ld s3, off(s3); CHECKI(s3, v)

TEST_NAME(priv_modes)
TEST_BEGIN
    la t0, m_trap
    csrw mtvec, t0
    /* PMP: everything RWX (QEMU refuses mret to S/U with no PMP entry). */
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f
    csrw pmpcfg0, t0

    /* ---- ecall causes, MPRV cleared by mret to U ---- */
    RUN_IN(1, x_ecall)
    CHECK_TRAP(9)
    CHECK_EPC(x_ecall)
    li t0, MSTATUS_MPRV
    csrs mstatus, t0
    RUN_IN(0, x_ecall)
    CHECK_TRAP(8)
    csrr s3, mstatus
    li t0, MSTATUS_MPRV
    and s3, s3, t0
    QUIRK_IF(s3, MSTATUS_MPRV, 0, "mret to U leaves mstatus.MPRV set (priv 1.12 clears it)")
    CHECKI(s3, 0)
    li t0, MSTATUS_MPRV
    csrc mstatus, t0

    /* ---- CSR privilege ---- */
    RUN_IN(1, s_read_mstatus)
    CHECK_TRAP(2)
    CHECK_EPC(s_read_mstatus)
    RUN_IN(0, u_read_sstatus)
    CHECK_TRAP(2)

    /* ---- counter gating ---- */
    csrw mcounteren, zero
    csrw scounteren, zero
    RUN_IN(1, x_rdcycle)
    CHECK_TRAP(2)
    li t0, 7
    csrw mcounteren, t0
    RUN_IN(1, x_rdcycle)
    CHECK_TRAP(9)
    RUN_IN(1, x_rdtime)
    CHECK_TRAP(9)
    RUN_IN(0, x_rdtime)
    CHECK_TRAP(2)                          /* scounteren.TM clear */
    li t0, 2
    csrw scounteren, t0
    RUN_IN(0, x_rdtime)
    CHECK_TRAP(8)
    RUN_IN(0, x_rdcycle)
    CHECK_TRAP(2)
    csrw mcounteren, zero
    RUN_IN(0, x_rdtime)
    CHECK_TRAP(2)                          /* mcounteren.TM clear */

    /* ---- TVM / TSR / TW ---- */
    li t0, MSTATUS_TVM
    csrs mstatus, t0
    RUN_IN(1, s_read_satp)
    CHECK_TRAP(2)
    RUN_IN(1, s_sfence)
    CHECK_TRAP(2)
    li t0, MSTATUS_TVM
    csrc mstatus, t0
    RUN_IN(1, s_read_satp)
    CHECK_TRAP(9)
    RUN_IN(1, s_sfence)
    CHECK_TRAP(9)
    li t0, MSTATUS_TSR
    csrs mstatus, t0
    RUN_IN(1, s_sret_to_u)
    CHECK_TRAP(2)
    LOAD_VAR(s3, rec_tval)
    CHECKI(s3, 0x10200073)                 /* the sret encoding */
    li t0, MSTATUS_TSR
    csrc mstatus, t0
    RUN_IN(1, s_sret_to_u)
    CHECK_TRAP(8)                          /* sret reached U's ecall */
    CHECK_EPC(x_ecall)
    li t0, MSTATUS_TW
    csrs mstatus, t0
    RUN_IN(1, x_wfi)
    CHECK_TRAP(2)
    li t0, MSTATUS_TW
    csrc mstatus, t0
    RUN_IN(0, x_wfi)
    CHECK_TRAP(2)                          /* wfi in U: always illegal */

    /* ---- exception delegation: U ecall -> S handler ---- */
    la t0, s_trap
    csrw stvec, t0
    li t0, 1 << 8
    csrw medeleg, t0
    RUN_IN(0, x_ecall)
    CHECK_TRAP(9)                          /* the S handler's own ecall */
    CHECK_SREC(0, 8)
    la s3, s_rec
    ld s3, 16(s3)
    la s4, x_ecall
    CHECK(s3, s4)
    csrw medeleg, zero

    /* ---- interrupt delegation: SSIP taken by S at once ---- */
    li t0, 2
    csrw mideleg, t0
    csrw mie, t0
    csrs mip, t0
    li t0, MSTATUS_SIE
    csrs mstatus, t0
    RUN_IN(1, x_spin)
    CHECK_TRAP(9)
    CHECK_SREC(0, INTR | 1)
    la s3, s_rec
    ld s3, 16(s3)
    la s4, x_spin
    CHECK(s3, s4)
    li t0, 2
    csrc mip, t0
    csrw mideleg, zero

    /* ---- undelegated S-level interrupts go to M from U, MIE = 0 ---- */
    li t0, 0x22                            /* SSIE | STIE */
    csrw mie, t0
    li t0, 0x20
    csrs mip, t0                           /* STIP (software, STCE = 0) */
    RUN_IN(0, x_spin)
    CHECK_TRAP(INTR | 5)
    CHECK_EPC(x_spin)
    li t0, 0x22
    csrs mip, t0                           /* SSIP and STIP: SSI wins */
    RUN_IN(0, x_spin)
    CHECK_TRAP(INTR | 1)
    li t0, 0x22
    csrc mip, t0
    csrw mie, zero

    /* ---- Sstc ---- */
    li t0, 1
    slli t0, t0, 63
    csrs CSR_MENVCFG, t0
    li t0, 2
    csrw mcounteren, t0                    /* TM: S may use stimecmp */
    li t0, 0x20
    csrw mideleg, t0
    csrw mie, t0
    li t0, MSTATUS_SIE
    csrs mstatus, t0
    la t0, s_rec
    sd zero, 0(t0)
    RUN_IN(1, s_stimecmp_now)
    CHECK_TRAP(9)
    CHECK_SREC(0, INTR | 5)
    csrr s3, mip
    andi s3, s3, 0x20
    CHECKI(s3, 0x20)                       /* stimecmp = 0 is in the past */
    li t0, -1
    csrw CSR_STIMECMP, t0
    csrr s3, mip
    andi s3, s3, 0x20
    CHECKI(s3, 0)                          /* far future: STIP low again */
    li t0, 1
    slli t0, t0, 63
    csrc CSR_MENVCFG, t0
    csrw mideleg, zero
    csrw mie, zero
    csrw mcounteren, zero

    /* ---- PMP: a read-only NAPOT page (entry 0) before the catch-all ---- */
    li t0, -1
    csrw pmpaddr1, t0
    la t0, pmp_page
    srli t0, t0, 2
    ori t0, t0, 0x1ff                      /* NAPOT, 4 KiB */
    csrw pmpaddr0, t0
    li t0, 0x1f19                          /* entry 1 NAPOT RWX, entry 0 NAPOT R */
    csrw pmpcfg0, t0
    la a1, pmp_page
    li a2, 7
    RUN_IN(1, s_store)
    CHECK_TRAP(7)
    LOAD_VAR(s3, rec_tval)
    la s4, pmp_page
    CHECK(s3, s4)
    la a1, pmp_page
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    la s3, pmp_page                        /* M ignores unlocked entries */
    li s4, 0x77
    sd s4, 8(s3)
    ld s4, 8(s3)
    CHECKI(s4, 0x77)
    li t0, 0x80                            /* lock entry 0: binds M too */
    csrs pmpcfg0, t0
    csrr s3, pmpcfg0
    andi s3, s3, 0xff
    CHECKI(s3, 0x99)
    la t0, 1f
    la t1, resume_pc
    sd t0, 0(t1)
    la s3, pmp_page
    sd zero, 8(s3)
1:  CHECK_TRAP(7)
    la s3, pmp_page
    ld s3, 8(s3)
    CHECKI(s3, 0x77)                       /* the store did not happen */
    csrw pmpaddr0, zero                    /* locked: ignored */
    csrr s3, pmpaddr0
    la s4, pmp_page
    srli s4, s4, 2
    ori s4, s4, 0x1ff
    CHECK(s3, s4)
    TEST_END

/* ---- code run in S or U ---- */
    .balign 4
x_ecall:
    ecall
s_read_mstatus:
    csrr a0, mstatus
    ecall
u_read_sstatus:
    csrr a0, sstatus
    ecall
x_rdcycle:
    rdcycle a0
    ecall
x_rdtime:
    rdtime a0
    ecall
s_read_satp:
    csrr a0, satp
    ecall
s_sfence:
    sfence.vma
    ecall
s_sret_to_u:
    la t0, x_ecall
    csrw sepc, t0
    li t0, 1 << 8
    csrc sstatus, t0                       /* SPP = U */
    sret
x_wfi:
    wfi
    ecall
s_store:
    sd a2, 0(a1)
    ecall
s_load:
    ld a0, 0(a1)
    ecall
x_spin:
    nop
    nop
    ecall
s_stimecmp_now:
    csrw CSR_STIMECMP, zero
    li t1, 1000000                         /* bounded wait for the interrupt */
1:  addi t1, t1, -1
    bnez t1, 1b
    ecall

    .balign 4
s_trap:
    la t1, s_rec
    csrr t0, scause
    sd t0, 0(t1)
    csrr t0, stval
    sd t0, 8(t1)
    csrr t0, sepc
    sd t0, 16(t1)
    ecall

/* M-mode trap handler: record, then resume in M (MIE = 0) at resume_pc. */
    .balign 4
m_trap:
    csrw mscratch, t0
    la t0, rec_cause
    sd t1, 32(t0)
    csrr t1, mcause
    sd t1, 0(t0)
    csrr t1, mepc
    sd t1, 8(t0)
    csrr t1, mtval
    sd t1, 16(t0)
    ld t1, 24(t0)
    csrw mepc, t1
    li t1, MSTATUS_MPP
    csrs mstatus, t1
    li t1, 1 << 7                          /* MPIE = 0: stay at MIE = 0 in M */
    csrc mstatus, t1
    ld t1, 32(t0)
    csrr t0, mscratch
    mret

    .data
    .balign 8
rec_cause: .dword 0
rec_epc:   .dword 0
rec_tval:  .dword 0
resume_pc: .dword 0
rec_t1:    .dword 0
s_rec:     .dword 0, 0, 0

    .balign 4096
pmp_page:  .dword 0, 0
    .balign 4096
