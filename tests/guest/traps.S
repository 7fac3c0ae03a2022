/* Machine-mode traps (privileged spec):
 *  - ecall from M: mcause 11, mepc = the ecall, mtval = 0
 *  - ebreak / c.ebreak-free 32-bit ebreak: mcause 3, mepc = the ebreak
 *  - illegal instructions: mcause 2, mtval = the instruction bits (16 bits for a
 *    compressed encoding), for .word 0 (which is the all-zero 16-bit illegal
 *    encoding), a reserved 32-bit OP encoding, a reserved c.lui, and
 *    0xffffffff (a >32-bit length prefix no RV64IMAC hart implements)
 *  - load/store access faults at unmapped physical addresses: mcause 5 / 7,
 *    mtval = the address; instruction access fault on a jump to unmapped
 *    memory: mcause 1, mepc = mtval = the target
 *  - misaligned plain loads/stores succeed (QEMU virt behaviour), including one
 *    that straddles a 4 KiB page boundary
 *  - trap entry: MPIE <- MIE, MIE <- 0, MPP <- M; mret: pc <- mepc,
 *    MIE <- MPIE, MPIE <- 1
 *  - mtvec vectored mode (MODE = 1) still sends exceptions to BASE
 */
#include "asm_test.h"

#define MSTATUS_MIE  (1 << 3)
#define MSTATUS_MPIE (1 << 7)
#define MSTATUS_MPP  (3 << 11)
#define UNMAPPED_LO  0x8                 /* QEMU virt "debug" hole: nothing there */
#define UNMAPPED_HI  0x100000000000      /* far above RAM and every device */

TEST_NAME(traps)
TEST_BEGIN
    USE_RECORDING_TRAP

    /* ---- ecall ---- */
.Lecall:
    ecall
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 11)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lecall
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, 0)

    /* ---- ebreak (mtval is 0 or the pc: both are allowed) ---- */
    .option push
    .option norvc
.Lebreak:
    ebreak
    .option pop
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 3)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lebreak
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    la a0, ebreak_msg              /* informational: which choice was made */
    call uart_puts
    mv a0, s3
    call uart_puthex
    li a0, 10
    call uart_putc
    seqz s5, s3
    sub s6, s3, s4
    seqz s6, s6
    or s5, s5, s6
    CHECKI(s5, 1)

    /* ---- illegal instructions ---- */
    TRAP_RESUME_AT(1f)
.Lill0:
    .word 0x00000000
1:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lill0
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, 0)                  /* the (16-bit) instruction bits are zero */

.Lill1:
    .word 0xfe000033               /* OP with funct7 = 0x7f: reserved */
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lill1
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, 0xfe000033)

.Lill2:
    .hword 0x6501                  /* c.lui a0, 0: reserved (nzimm = 0) */
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lill2
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, 0x6501)

    .balign 4
    TRAP_RESUME_AT(1f)
.Lill3:
    .word 0xffffffff
1:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 2)
    LOAD_VAR(s3, trap_epc)
    la s4, .Lill3
    CHECK(s3, s4)
    LOAD_VAR(s3, trap_tval)
    CHECKI(s3, 0xffffffff)

    /* ---- access faults ---- */
    li s1, UNMAPPED_LO
    ld s3, 0(s1)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 5)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s1)
    li s1, UNMAPPED_HI
    lw s3, 16(s1)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 5)
    LOAD_VAR(s3, trap_tval)
    addi s1, s1, 16
    CHECK(s3, s1)
    li s1, UNMAPPED_LO
    sd s1, 0(s1)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 7)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s1)
    li s1, UNMAPPED_HI
    sb s1, 1(s1)
    LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 7)
    LOAD_VAR(s3, trap_tval)
    addi s1, s1, 1
    CHECK(s3, s1)
    li s1, UNMAPPED_HI
    amoadd.d s3, s1, (s1)          /* AMOs fault as stores */
    LOAD_VAR(s3, trap_cause)
    QUIRK_IF(s3, 5, 7, "AMO access fault reported as load fault, cause 5 (spec: 7)")
    CHECKI(s3, 7)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s1)

    /* instruction access fault: jump to unmapped memory */
    TRAP_RESUME_AT(1f)
    li s1, UNMAPPED_HI
    jalr ra, 0(s1)
1:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 1)
    LOAD_VAR(s3, trap_epc)
    CHECK(s3, s1)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s1)
    TRAP_RESUME_AT(1f)
    li s1, UNMAPPED_LO
    jr s1
1:  LOAD_VAR(s3, trap_cause)
    CHECKI(s3, 1)
    LOAD_VAR(s3, trap_tval)
    CHECK(s3, s1)

    /* every expected trap so far happened exactly once:
     * ecall, ebreak, 4 illegal, 5 data faults, 2 fetch faults */
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 13)

    /* ---- misaligned plain loads/stores succeed ---- */
    la s0, mis_data
    li s1, 0x1122334455667788
    sd s1, 1(s0)
    ld s3, 1(s0)
    CHECK(s3, s1)
    /* memory bytes 1..8 are now 88 77 66 55 44 33 22 11 (little-endian) */
    lw s3, 3(s0)                   /* bytes 3..6 = 66 55 44 33 */
    CHECKI(s3, 0x33445566)
    lhu s3, 7(s0)                  /* bytes 7..8 = 22 11 */
    CHECKI(s3, 0x1122)
    lh s3, 5(s0)                   /* bytes 5..6 = 44 33 */
    CHECKI(s3, 0x3344)
    li s2, 0xfedc
    sh s2, 3(s0)
    lwu s3, 1(s0)
    CHECKI(s3, 0xfedc7788)
    /* straddle a page boundary: 8 bytes at page_end - 3 */
    la s0, mis_page
    li t0, 4096
    add s0, s0, t0
    addi s0, s0, -3
    li s1, 0x0102030405060708
    sd s1, 0(s0)
    ld s3, 0(s0)
    CHECK(s3, s1)
    lbu s3, 3(s0)                  /* first byte of the second page: 0x05 */
    CHECKI(s3, 0x05)
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 13)                 /* no trap from any of these */

    /* ---- trap entry / mret and the MIE/MPIE stack ---- */
    la t0, mstatus_trap
    csrw mtvec, t0
    /* mie CSR is 0 (no interrupt sources enabled) so MIE = 1 is harmless */
    csrsi mstatus, MSTATUS_MIE
.Lecall2:
    ecall
    LOAD_VAR(s3, seen_mstatus)     /* mstatus inside the handler */
    andi s4, s3, MSTATUS_MIE
    CHECKI(s4, 0)                  /* MIE cleared on entry */
    andi s4, s3, MSTATUS_MPIE
    CHECKI(s4, MSTATUS_MPIE)       /* old MIE saved in MPIE */
    li t0, MSTATUS_MPP
    and s4, s3, t0
    CHECK(s4, t0)                  /* MPP = M (3) */
    csrr s3, mstatus               /* after mret: MIE restored from MPIE = 1 */
    andi s4, s3, MSTATUS_MIE
    CHECKI(s4, MSTATUS_MIE)
    andi s4, s3, MSTATUS_MPIE
    CHECKI(s4, MSTATUS_MPIE)       /* MPIE set to 1 by mret */
    csrci mstatus, MSTATUS_MIE
    /* mret by hand with MPIE = 0, MPP = M: MIE ends 0, pc = mepc */
    li t0, MSTATUS_MPIE
    csrc mstatus, t0
    li t0, MSTATUS_MPP
    csrs mstatus, t0
    csrsi mstatus, MSTATUS_MIE     /* MIE = 1 now; mret must clear it */
    la t0, .Lafter_mret
    csrw mepc, t0
    li s3, 1
    mret
    li s3, 2                       /* skipped: mret jumps to mepc */
.Lafter_mret:
    CHECKI(s3, 1)
    csrr s3, mstatus
    andi s4, s3, MSTATUS_MIE
    CHECKI(s4, 0)
    andi s4, s3, MSTATUS_MPIE
    CHECKI(s4, MSTATUS_MPIE)

    /* ---- vectored mtvec: exceptions still go to BASE ---- */
    la t0, vec_table
    ori t0, t0, 1
    csrw mtvec, t0
    csrr s3, mtvec
    CHECK(s3, t0)                  /* vectored mode is supported and reads back */
    la t0, trap_count
    sd zero, 0(t0)
    ecall
    ebreak
    LOAD_VAR(s3, trap_count)
    CHECKI(s3, 2)
    LOAD_VAR(s3, vec_wrong)
    CHECKI(s3, 0)
    USE_UNEXPECTED_TRAP
    TEST_END

    /* Records mstatus as seen on trap entry, skips the 4-byte ecall. */
    .balign 4
mstatus_trap:
    csrw mscratch, t0
    csrr t0, mstatus
    sd t0, seen_mstatus, t1
    csrr t0, mepc
    addi t0, t0, 4
    csrw mepc, t0
    csrr t0, mscratch
    mret

    /* Vector table: entry 0 (exceptions) -> recording handler; any other
     * entry would be an (incorrect) vectored exception. */
    .balign 256
vec_table:
    j __recording_trap
    .rept 15
    j vec_wrong_entry
    .endr
vec_wrong_entry:
    csrw mscratch, t0
    li t0, 1
    sd t0, vec_wrong, t1
    csrr t0, mscratch
    j __recording_trap

    .section .rodata
ebreak_msg:
    .asciz "traps: ebreak mtval="

    .data
    .balign 8
seen_mstatus: .dword 0
vec_wrong:    .dword 0
mis_data:     .skip 16
    .balign 4096
mis_page:     .skip 8192
