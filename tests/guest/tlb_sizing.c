/* Softmmu TLB sizing under real guest paging (kite_ir::state::SoftTlb).
 *
 * Loads and stores run in M-mode with mstatus.MPRV = 1 and MPP = S, so Sv39
 * translates them as S-mode accesses while instructions are fetched untranslated.
 * A working set of 10240 pages, ten times the TLB's smallest size, evicts entries
 * until the TLB has grown to 16384 entries (the Rust harness checks `-d stats`:
 * tlb_grows); the data read back must stay right while it grows. Then, on the grown
 * TLB:
 *  - satp switches between two address spaces (ASIDs 1 and 2) that map a 4 KiB page
 *    to different frames: its entry, made before the TLB grew, follows satp, and the
 *    working set's global mapping (a second alias) keeps working;
 *  - the page remapped is seen after `sfence.vma` with its address;
 *  - everything still reads right after a full `sfence.vma`.
 * Each of these checks failed when the matching piece of the sizing was broken on
 * purpose (a flush or a move that ignored the grown size or the non-global marks).
 */
#include <stdint.h>
#include "test.h"

const char test_name[] = "tlb_sizing";

#define PTE_V 0x01
#define PTE_R 0x02
#define PTE_W 0x04
#define PTE_X 0x08
#define PTE_G 0x20
#define PTE_A 0x40
#define PTE_D 0x80
#define LEAF (PTE_V | PTE_R | PTE_W | PTE_A | PTE_D)

#define PAGES 10240u
/* The working set: 40 MiB of RAM from 16 MiB in, through the identity gigapage, and
 * also through a second, global gigapage at 3 GiB. (Kite turns `sfence.vma` of a page
 * inside the aligned range that holds every large page it has cached into a full
 * flush: the 2 GiB from 0x80000000 here, which VA_X is outside of.) */
#define SET_PA 0x81000000ul
#define ALIAS_VA (0xc0000000ul + (SET_PA - 0x80000000ul))
/* The remapped page (non-global). Its TLB index differs between TLB sizes, so a
 * flush that looked where a smaller TLB kept it would miss the entry. */
#define VA_X 0x407ff000ul
#define L1_X ((VA_X >> 21) & 511)
#define L0_X ((VA_X >> 12) & 511)

static uint64_t root1[512] __attribute__((aligned(4096)));
static uint64_t root2[512] __attribute__((aligned(4096)));
static uint64_t l1[512] __attribute__((aligned(4096)));
static uint64_t l0_1[512] __attribute__((aligned(4096)));
static uint64_t l0_2[512] __attribute__((aligned(4096)));
static uint64_t frame_a[512] __attribute__((aligned(4096)));
static uint64_t frame_b[512] __attribute__((aligned(4096)));
static uint64_t l1_2[512] __attribute__((aligned(4096)));

static uint64_t pte(const void *pa, uint64_t flags)
{
    return ((uint64_t)(uintptr_t)pa >> 12) << 10 | flags;
}

static uint64_t satp(const uint64_t *root, uint64_t asid)
{
    return 8ul << 60 | asid << 44 | (uint64_t)(uintptr_t)root >> 12;
}

static void set_satp(uint64_t v)
{
    __asm__ volatile("csrw satp, %0" ::"r"(v) : "memory");
}

static void sfence_all(void)
{
    __asm__ volatile("sfence.vma" ::: "memory");
}

static void sfence_page(uint64_t va)
{
    __asm__ volatile("sfence.vma %0" ::"r"(va) : "memory");
}

static void mprv(int on)
{
    const uint64_t mprv = 1ul << 17, mpp = 3ul << 11, mpp_s = 1ul << 11;
    if (on) {
        __asm__ volatile("csrc mstatus, %0" ::"r"(mpp));
        __asm__ volatile("csrs mstatus, %0" ::"r"(mpp_s | mprv) : "memory");
    } else {
        __asm__ volatile("csrc mstatus, %0" ::"r"(mprv) : "memory");
    }
}

static uint64_t value(uint32_t i)
{
    return (uint64_t)i * 0x9e3779b97f4a7c15ull ^ 0x5bd1e995u;
}

/* One word per page, at a different offset in each. */
static volatile uint64_t *word(uint64_t base, uint32_t i)
{
    return (volatile uint64_t *)(base + (uint64_t)i * 4096 + (i % 512) * 8);
}

/* A compiler barrier after the load: page-table stores must not move above it. */
static uint64_t read_x(void)
{
    uint64_t v = *(volatile uint64_t *)(VA_X + 16);
    __asm__ volatile("" ::: "memory");
    return v;
}

/* Reads of VA_X that did not find the value expected. */
static uint32_t x_wrong;

/* The working set's words, combined; every 64 pages VA_X is read too (and must hold
 * `x`), so its entry is in the TLB when the TLB grows, and moves with it. */
static uint64_t sum_pages(uint64_t base, uint64_t x)
{
    uint64_t s = 0;
    for (uint32_t i = 0; i < PAGES; i++) {
        s = s * 3 + *word(base, i);
        if (i % 64 == 0)
            x_wrong += read_x() != x;
    }
    return s;
}

int main(void)
{
    /* PMP: everything RWX for S (firmware does the same). */
    __asm__ volatile("csrw pmpaddr0, %0" ::"r"(-1l));
    __asm__ volatile("csrw pmpcfg0, %0" ::"r"(0x1fl));

    /* Both address spaces: identity gigapages for MMIO (0) and RAM (2), the working
     * set's alias (4, global), and VA_X through their own l0 tables. */
    for (int r = 0; r < 2; r++) {
        uint64_t *root = r ? root2 : root1;
        root[0] = pte((void *)0, LEAF | PTE_G);
        root[2] = pte((void *)0x80000000ul, LEAF | PTE_X | PTE_G);
        root[3] = pte((void *)0x80000000ul, LEAF | PTE_G);
        root[1] = pte(r ? l1_2 : l1, PTE_V);
    }
    l1[L1_X] = pte(l0_1, PTE_V);
    l1_2[L1_X] = pte(l0_2, PTE_V);
    l0_1[L0_X] = pte(frame_a, LEAF);
    l0_2[L0_X] = pte(frame_b, LEAF);
    frame_a[2] = 0xaaaa;
    frame_b[2] = 0xbbbb;

    uint64_t expect = 0;
    for (uint32_t i = 0; i < PAGES; i++)
        expect = expect * 3 + value(i);

    set_satp(satp(root1, 1));
    sfence_all();
    mprv(1);
    /* Write the working set, then read it a few rounds: the TLB grows. */
    for (uint32_t i = 0; i < PAGES; i++)
        *word(SET_PA, i) = value(i);
    uint64_t s[4];
    for (int r = 0; r < 4; r++)
        s[r] = sum_pages(SET_PA, 0xaaaa);
    uint32_t x_asid1 = x_wrong;
    /* ASID 2 maps VA_X to frame_b: the moved entry must still be known as non-global.
     * The working set's global mapping stays. */
    set_satp(satp(root2, 2));
    uint64_t s_other = sum_pages(ALIAS_VA, 0xbbbb);
    uint32_t x_asid2 = x_wrong - x_asid1;
    set_satp(satp(root1, 1));
    uint64_t x2 = read_x();
    /* Remap VA_X in ASID 1: seen after sfence.vma of that page. */
    l0_1[L0_X] = pte(frame_b, LEAF);
    sfence_page(VA_X);
    uint64_t x3 = read_x();
    sfence_all();
    x_wrong = 0;
    uint64_t s_fenced = sum_pages(SET_PA, 0xbbbb);
    mprv(0);

    for (int r = 0; r < 4; r++)
        CHECK("working set read back while the TLB grows", s[r], expect);
    CHECK("VA_X reads in ASID 1 that missed frame_a", x_asid1, 0);
    CHECK("VA_X reads in ASID 2 that missed frame_b", x_asid2, 0);
    CHECK("working set in ASID 2 (global mapping)", s_other, expect);
    CHECK("VA_X back in ASID 1", x2, 0xaaaa);
    CHECK("VA_X after its remap and sfence.vma of its page", x3, 0xbbbb);
    CHECK("working set after a full sfence.vma", s_fenced, expect);
    CHECK("VA_X reads after it that missed frame_b", x_wrong, 0);
    return test_finish();
}
