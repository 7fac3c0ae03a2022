/* Sv39/Sv48 paging from S- and U-mode (privileged spec 1.12, chapter 4):
 *  - a 1 GiB identity gigapage (kernel RWX) lets S-mode run the test code
 *  - a 4 KiB user data page: S loads fault without SUM (13), succeed with it;
 *    a load sets A only, a store sets A and D (hardware A/D updates)
 *  - a kernel read-only page: store page fault (15); unmapped page: 13,
 *    tval = the virtual address; a non-canonical address: 13
 *  - a 2 MiB megapage works; a misaligned megapage (PPN[0] != 0) faults
 *  - U-mode runs from a U|X page, loads its U page, cannot load kernel pages
 *  - MXR makes an execute-only page readable
 *  - fetch page faults (12): unmapped target, and S executing a U page
 *  - sfence.vma makes a remapped PTE visible; so does sfence.vma with the page's
 *    address, also for a 4 KiB piece of a remapped megapage other than the one named
 *  - medeleg sends page faults to the S handler (scause/stval/sepc)
 *  - satp switches between two address spaces (new ASID, or back to an unchanged
 *    one) without sfence.vma: non-global mappings follow satp, the global gigapage
 *    the code runs on keeps working
 *  - the same tables under Sv48 (one more level on top)
 * Every check runs in M-mode: the code under test runs in S/U via RUN_IN and
 * returns through any trap to m_trap, which records mcause/mepc/mtval.
 */
#include "asm_test.h"

#define MSTATUS_MPP  (3 << 11)
#define MSTATUS_SUM  (1 << 18)
#define MSTATUS_MXR  (1 << 19)
#define MSTATUS_MPRV (1 << 17)

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_U 0x10
#define PTE_G 0x20
#define PTE_A 0x40
#define PTE_D 0x80

/* The start of RAM: 1 GiB aligned (gigapage and megapage target). */
#define RAM_PA     0x80000000
#define VA_UDATA   0x40000000   /* user RW page, A/D clear */
#define VA_KRO     0x40001000   /* kernel R page */
#define VA_UCODE   0x40002000   /* user RX page (user_code) */
#define VA_HOLE    0x40003000   /* invalid PTE */
#define VA_UXONLY  0x40004000   /* user X-only page on the data page */
#define VA_MEGA    0x40200000   /* 2 MiB -> 0x80000000 */
#define VA_BADMEGA 0x40400000   /* 2 MiB with PPN[0] != 0 */

/* rd = PTE for the physical address in rd with `flags`. */
#define MKPTE(rd, flags) srli rd, rd, 12; slli rd, rd, 10; ori rd, rd, flags

/* Store the PTE built from address `pa_sym` and `flags` at table[idx]. */
#define SETPTE(table, idx, pa_sym, flags) \
    la t0, pa_sym; MKPTE(t0, flags); la t1, table; sd t0, (idx) * 8(t1)

/* Enter `entry` in mode `mode` (0 U, 1 S); resume at the next line after the
 * first trap (m_trap records it and returns here in M), with the code's a0
 * copied to s5 (CHECK clobbers a0). */
#define RUN_IN(mode, entry)                 \
    la t0, 1f; la t1, resume_pc; sd t0, 0(t1); \
    li t0, MSTATUS_MPP; csrc mstatus, t0;  \
    li t0, (mode) << 11; csrs mstatus, t0;  \
    la t0, entry; csrw mepc, t0; mret;      \
1:  mv s5, a0

/* Same, entering at a constant virtual address. */
#define RUN_AT(mode, va)                    \
    la t0, 1f; la t1, resume_pc; sd t0, 0(t1); \
    li t0, MSTATUS_MPP; csrc mstatus, t0;  \
    li t0, (mode) << 11; csrs mstatus, t0;  \
    li t0, va; csrw mepc, t0; mret;         \
1:  mv s5, a0

/* Load VA_UDATA + 8 in S-mode through `entry` (a2 = the satp s_switch_load switches
 * to) and expect it to end in its ecall; CHECK clobbers a0/a1, so set them each time. */
#define S_LOAD_UDATA(entry, satp_reg) \
    mv a2, satp_reg; li a0, 0; li a1, VA_UDATA + 8; RUN_IN(1, entry); CHECK_TRAP(9)

#define CHECK_TRAP(cause)  LOAD_VAR(s3, rec_cause); CHECKI(s3, cause)
#define CHECK_TVAL(val)    LOAD_VAR(s3, rec_tval); CHECKI(s3, val)

TEST_NAME(priv_sv39)
TEST_BEGIN
    la t0, m_trap
    csrw mtvec, t0
    /* PMP: one NAPOT entry over everything, RWX (as firmware does; QEMU also
     * refuses mret to S/U while no PMP entry is programmed). */
    li t0, -1
    csrw pmpaddr0, t0
    li t0, 0x1f
    csrw pmpcfg0, t0

    /* ---- page tables ---- */
    li t0, RAM_PA
    MKPTE(t0, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D)
    la t1, root
    sd t0, 2 * 8(t1)                                               /* gigapage */
    SETPTE(root, 1, l1, PTE_V)
    SETPTE(l1, 0, l0, PTE_V)
    li t0, RAM_PA
    MKPTE(t0, PTE_V | PTE_R | PTE_A)
    la t1, l1
    sd t0, 1 * 8(t1)                                               /* megapage */
    li t0, RAM_PA + 0x1000
    MKPTE(t0, PTE_V | PTE_R | PTE_A)
    la t1, l1
    sd t0, 2 * 8(t1)                                               /* misaligned megapage */
    SETPTE(l0, 0, udata, PTE_V | PTE_R | PTE_W | PTE_U)
    SETPTE(l0, 1, kro, PTE_V | PTE_R | PTE_A)
    SETPTE(l0, 2, user_code, PTE_V | PTE_R | PTE_X | PTE_U | PTE_A)
    SETPTE(l0, 4, udata, PTE_V | PTE_X | PTE_U | PTE_A)
    la t0, root
    srli t0, t0, 12
    li t1, 8 << 60
    or t0, t0, t1
    csrw satp, t0
    sfence.vma

    /* ---- S-mode runs on the gigapage ---- */
    li a0, 0
    RUN_IN(1, s_nop)
    CHECK_TRAP(9)                          /* ecall from S */

    /* ---- user page from S: needs SUM; A then D ---- */
    li a1, VA_UDATA
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    CHECK_TVAL(VA_UDATA)
    li t0, MSTATUS_SUM
    csrs mstatus, t0
    li a1, VA_UDATA + 8
    li a0, 0
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    la s3, l0
    ld s3, 0(s3)
    andi s3, s3, PTE_A | PTE_D
    CHECKI(s3, PTE_A)                      /* load: A only */
    li a1, VA_UDATA + 16
    li a2, 0x5a5a
    RUN_IN(1, s_store)
    CHECK_TRAP(9)
    la s3, udata
    ld s3, 16(s3)
    CHECKI(s3, 0x5a5a)
    la s3, l0
    ld s3, 0(s3)
    andi s3, s3, PTE_A | PTE_D
    CHECKI(s3, PTE_A | PTE_D)              /* store: A and D */

    /* ---- kernel read-only page, hole, non-canonical ---- */
    li a1, VA_KRO
    li a2, 1
    RUN_IN(1, s_store)
    CHECK_TRAP(15)
    CHECK_TVAL(VA_KRO)
    li a1, VA_KRO + 8
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    CHECKI(s5, 0x4b524f)                   /* "KRO" */
    li a1, VA_HOLE + 0x10
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    CHECK_TVAL(VA_HOLE + 0x10)
    li a1, 0x4000000000                    /* bit 38 set, 63:39 clear */
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    CHECK_TVAL(0x4000000000)

    /* ---- megapages ---- */
    la a1, kro
    li t0, RAM_PA
    sub a1, a1, t0
    li t0, VA_MEGA
    add a1, a1, t0
    addi a1, a1, 8
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    CHECKI(s5, 0x4b524f)
    li a1, VA_BADMEGA + 0x40
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    CHECK_TVAL(VA_BADMEGA + 0x40)

    /* ---- U-mode ---- */
    li a1, VA_UDATA + 8
    li a0, 0
    RUN_AT(0, VA_UCODE)
    CHECK_TRAP(8)                          /* ecall from U */
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    la a1, kro                             /* kernel page through the gigapage */
    RUN_AT(0, VA_UCODE)
    CHECK_TRAP(13)
    LOAD_VAR(s3, rec_epc)
    CHECKI(s3, VA_UCODE)

    /* ---- MXR: execute-only page ---- */
    li a1, VA_UXONLY + 8
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    li t0, MSTATUS_MXR
    csrs mstatus, t0
    li a1, VA_UXONLY + 8
    li a0, 0
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    li t0, MSTATUS_MXR
    csrc mstatus, t0

    /* ---- fetch page faults ---- */
    li a1, VA_HOLE
    RUN_IN(1, s_jump)
    CHECK_TRAP(12)
    CHECK_TVAL(VA_HOLE)
    LOAD_VAR(s3, rec_epc)
    CHECKI(s3, VA_HOLE)
    li a1, VA_UCODE                        /* S never executes U pages */
    RUN_IN(1, s_jump)
    CHECK_TRAP(12)
    CHECK_TVAL(VA_UCODE)

    /* ---- remap + sfence.vma ---- */
    li a1, VA_KRO + 8
    RUN_IN(1, s_load)                      /* caches the old mapping */
    CHECKI(s5, 0x4b524f)
    SETPTE(l0, 1, udata, PTE_V | PTE_R | PTE_A)
    li a1, VA_KRO + 8
    RUN_IN(1, s_sfence_load)
    CHECK_TRAP(9)
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    /* The same by address: map VA_KRO back (the stale entry is cached). */
    SETPTE(l0, 1, kro, PTE_V | PTE_R | PTE_A)
    li a1, VA_KRO + 8
    RUN_IN(1, s_sfence_addr_load)
    CHECK_TRAP(9)
    CHECKI(s5, 0x4b524f)
    /* A megapage is cached in 4 KiB pieces: load the second one, move the megapage to
     * RAM_PA + 2 MiB, flush by the megapage's base address: the second piece must see
     * the new mapping too. */
    li a1, VA_MEGA + 0x1008
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    li t0, RAM_PA + 0x1008
    ld s4, 0(t0)
    CHECK(s5, s4)
    li t0, RAM_PA + 0x200000 + 0x1008
    li s4, 0x6d656761                      /* "mega" at the new place */
    sd s4, 0(t0)
    li t0, RAM_PA + 0x200000
    MKPTE(t0, PTE_V | PTE_R | PTE_A)
    la t1, l1
    sd t0, 1 * 8(t1)
    li a1, VA_MEGA + 0x1008
    li a2, VA_MEGA
    RUN_IN(1, s_sfence_other_load)
    CHECK_TRAP(9)
    CHECKI(s5, 0x6d656761)
    li t0, RAM_PA                          /* restore the megapage */
    MKPTE(t0, PTE_V | PTE_R | PTE_A)
    la t1, l1
    sd t0, 1 * 8(t1)
    sfence.vma

    /* ---- delegation of page faults to S ---- */
    la t0, s_trap
    csrw stvec, t0
    li t0, 1 << 13
    csrw medeleg, t0
    li a1, VA_HOLE + 0x20
    RUN_IN(1, s_load)
    CHECK_TRAP(9)                          /* the S handler's ecall */
    LOAD_VAR(s3, s_rec)
    CHECKI(s3, 13)
    la s3, s_rec
    ld s3, 8(s3)
    CHECKI(s3, VA_HOLE + 0x20)
    la s3, s_rec
    ld s3, 16(s3)
    la s4, s_load
    CHECK(s3, s4)
    csrw medeleg, zero

    /* ---- address-space switches: VA_UDATA maps udata in A (ASID 1) and kro in B
     * (ASID 2); the code's gigapage is global in both ---- */
    li t0, RAM_PA
    MKPTE(t0, PTE_V | PTE_R | PTE_W | PTE_X | PTE_A | PTE_D | PTE_G)
    la t1, root
    sd t0, 2 * 8(t1)
    la t1, rootB
    sd t0, 2 * 8(t1)
    SETPTE(rootB, 1, l1B, PTE_V)
    SETPTE(l1B, 0, l0B, PTE_V)
    SETPTE(l0B, 0, kro, PTE_V | PTE_R | PTE_U | PTE_A)
    li t0, MSTATUS_SUM
    csrs mstatus, t0
    la t0, root
    srli t0, t0, 12
    li t1, 8 << 60 | 1 << 44
    or s6, t0, t1                          /* s6 = satp of A */
    la t0, rootB
    srli t0, t0, 12
    li t1, 8 << 60 | 2 << 44
    or s7, t0, t1                          /* s7 = satp of B */
    csrw satp, s6
    sfence.vma
    S_LOAD_UDATA(s_switch_load, s6)        /* stays in A */
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    S_LOAD_UDATA(s_switch_load, s7)        /* A -> B, in S-mode */
    CHECKI(s5, 0x4b524f)
    S_LOAD_UDATA(s_switch_load, s6)        /* B -> A: its tables did not change */
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    csrw satp, s7                          /* the same from M-mode */
    S_LOAD_UDATA(s_load, s7)
    CHECKI(s5, 0x4b524f)
    csrw satp, s6
    S_LOAD_UDATA(s_load, s6)
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)

    /* ---- Sv48: one more level above the Sv39 root ---- */
    SETPTE(root48, 0, root, PTE_V)
    la t0, root48
    srli t0, t0, 12
    li t1, 9 << 60
    or t0, t0, t1
    csrw satp, t0
    csrr s3, satp
    CHECK(s3, t0)                          /* Sv48 is supported */
    sfence.vma
    li a1, VA_UDATA + 8
    li a0, 0
    RUN_IN(1, s_load)
    CHECK_TRAP(9)
    li s4, 0x0123456789abcdef
    CHECK(s5, s4)
    li a1, 0x4000000000                    /* canonical under Sv48, unmapped */
    RUN_IN(1, s_load)
    CHECK_TRAP(13)
    CHECK_TVAL(0x4000000000)

    csrw satp, zero
    sfence.vma
    TEST_END

/* ---- code run in S-mode (through the gigapage) ---- */
    .balign 4
s_nop:
    ecall
s_load:
    ld a0, 0(a1)
    ecall
s_store:
    sd a2, 0(a1)
    ecall
s_jump:
    jr a1
s_sfence_load:
    sfence.vma
    ld a0, 0(a1)
    ecall
s_sfence_addr_load:
    sfence.vma a1
    ld a0, 0(a1)
    ecall
s_sfence_other_load:
    sfence.vma a2
    ld a0, 0(a1)
    ecall
s_switch_load:
    ld a0, 0(a1)                           /* cached in the TLB under the old satp */
    csrw satp, a2
    ld a0, 0(a1)
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

/* M-mode trap handler: record, then resume in M at resume_pc. */
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
    ld t1, 32(t0)
    csrr t0, mscratch
    mret

/* ---- the user code page (mapped U|R|X at VA_UCODE) ---- */
    .section .text.user, "ax"
    .balign 4096
user_code:
    ld a0, 0(a1)
    ecall
    .balign 4096

    .data
    .balign 8
rec_cause: .dword 0
rec_epc:   .dword 0
rec_tval:  .dword 0
resume_pc: .dword 0
rec_t1:    .dword 0
s_rec:     .dword 0, 0, 0

    .balign 4096
udata:
    .dword 0, 0x0123456789abcdef, 0
    .balign 4096
kro:
    .dword 0, 0x4b524f
    .balign 4096

    .bss
    .balign 4096
root:   .space 4096
l1:     .space 4096
l0:     .space 4096
root48: .space 4096
rootB:  .space 4096
l1B:    .space 4096
l0B:    .space 4096
