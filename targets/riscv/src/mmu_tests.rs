//! MMU and PMP tests: page walks run through `translate_addr` directly (the
//! permission matrix) and through guest code on the interpreter runner
//! (walks, superpages, A/D, faults, MPRV, PMP).

use std::sync::Mutex;

use kite_core::GuestCpu;
use kite_ir::Access;

use super::pte::*;
use super::*;
use crate::cpu::{cause, tbflags, PRV_M, PRV_S, PRV_U};
use crate::csr::mstatus as ms;
use crate::testutil::*;

/// Page-table pages are allocated from here (the code lives at RAM_BASE).
const PT_BASE: u64 = RAM_BASE + 0x10000;
/// A data page with known contents.
const DATA: u64 = RAM_BASE + 0x30000;
/// The M-mode trap handler (physical; M is always Bare): an ecall.
const HANDLER: u64 = RAM_BASE + 0x3f000;
const CODE_VA: u64 = 0x1000_0000;

fn ld(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(imm, rs1, 3, rd, 0x03)
}
fn sd(rs2: u32, rs1: u32, imm: i32) -> u32 {
    s_type(imm, rs2, rs1, 3, 0x23)
}
fn jalr(rd: u32, rs1: u32) -> u32 {
    i_type(0, rs1, 0, rd, 0x67)
}

/// Builds page tables in the test RAM.
struct Pt {
    levels: u32,
    root: u64,
    next: u64,
}

impl Pt {
    fn new(m: &mut Machine, levels: u32) -> Pt {
        let mode = match levels {
            3 => satp::MODE_SV39,
            4 => satp::MODE_SV48,
            _ => satp::MODE_SV57,
        };
        m.cpu.csr.satp = mode << satp::MODE_SHIFT | (PT_BASE >> 12);
        Pt { levels, root: PT_BASE, next: PT_BASE + 0x1000 }
    }

    /// Map `va` to `pa` with leaf `flags` at `level` (0 = 4 KiB).
    fn map(&mut self, m: &mut Machine, va: u64, pa: u64, flags: u64, level: u32) {
        let mut table = self.root;
        for l in (level + 1..self.levels).rev() {
            let slot = table + ((va >> (12 + 9 * l)) & 0x1ff) * 8;
            let e = m.mem.read(slot, 8);
            table = if e & V != 0 {
                (e >> 10) << 12
            } else {
                let t = self.next;
                self.next += 0x1000;
                m.mem.write(slot, 8, (t >> 12) << 10 | V);
                t
            };
        }
        let slot = table + ((va >> (12 + 9 * level)) & 0x1ff) * 8;
        m.mem.write(slot, 8, (pa >> 12) << 10 | flags);
    }

    /// Address of the leaf PTE for `va` at `level` (after `map`).
    fn leaf(&self, m: &Machine, va: u64, level: u32) -> u64 {
        let mut table = self.root;
        for l in (level + 1..self.levels).rev() {
            let e = m.mem.read(table + ((va >> (12 + 9 * l)) & 0x1ff) * 8, 8);
            table = (e >> 10) << 12;
        }
        table + ((va >> (12 + 9 * level)) & 0x1ff) * 8
    }
}

/// `code` at RAM_BASE, executed in `privilege` from CODE_VA (mapped RX,
/// A set) under `levels`-level paging; traps go to HANDLER in M.
fn paged(code: &[u32], privilege: u64, levels: u32) -> (Machine, Pt) {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.mem.write(HANDLER, 4, ECALL as u64);
    m.cpu.csr.mtvec = HANDLER;
    m.mem.write(DATA, 8, 0x1122_3344_5566_7788);
    let mut pt = Pt::new(&mut m, levels);
    let user = if privilege == PRV_U { U } else { 0 };
    pt.map(&mut m, CODE_VA, RAM_BASE, V | R | X | A | user, 0);
    m.cpu.privilege = privilege;
    m.cpu.update_flags();
    m.cpu.header.pc = CODE_VA;
    (m, pt)
}

/// Run to the ecall (the program's own, or the trap handler's).
fn run(m: &mut Machine) {
    m.run_to_ecall();
}

fn trapped(m: &Machine) -> (u64, u64, u64) {
    (m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc)
}

#[test]
fn sv39_walk_sets_a_then_d() {
    let va = 0x2000_0000u64;
    let (mut m, mut pt) = paged(&[ld(10, 11, 8), ld(12, 11, 0)], PRV_S, 3);
    pt.map(&mut m, va, DATA, V | R | W, 0);
    m.cpu.x[11] = va;
    m.mem.write(DATA + 8, 8, 77);
    run(&mut m);
    assert_eq!(m.cpu.header.pc, CODE_VA + 8, "no trap");
    assert_eq!((m.cpu.x[10], m.cpu.x[12]), (77, 0x1122_3344_5566_7788));
    let leaf = pt.leaf(&m, va, 0);
    assert_eq!(m.mem.read(leaf, 8) & (A | D), A, "a load sets A only");
    // A store sets D.
    let (mut m2, mut pt2) = paged(&[sd(12, 11, 16)], PRV_S, 3);
    pt2.map(&mut m2, va, DATA, V | R | W, 0);
    m2.cpu.x[11] = va;
    m2.cpu.x[12] = 99;
    run(&mut m2);
    assert_eq!(m2.mem.read(DATA + 16, 8), 99);
    assert_eq!(m2.mem.read(pt2.leaf(&m2, va, 0), 8) & (A | D), A | D);
    // The code page's PTE had A already and is not written (no D for fetches).
    assert_eq!(m2.mem.read(pt2.leaf(&m2, CODE_VA, 0), 8) & D, 0);
}

#[test]
fn sv48_and_sv57_walks_and_canonical_addresses() {
    for levels in [3u32, 4, 5] {
        let va_bits = 12 + 9 * levels;
        // The highest canonical positive page, and the lowest negative one.
        let hi = (1u64 << (va_bits - 1)) - 0x1000;
        let neg = !((1u64 << (va_bits - 1)) - 1);
        let (mut m, mut pt) = paged(&[ld(10, 11, 0), ld(12, 13, 0), ld(14, 15, 0)], PRV_S, levels);
        pt.map(&mut m, hi, DATA, V | R | A, 0);
        pt.map(&mut m, neg, DATA, V | R | A, 0);
        m.cpu.x[11] = hi;
        m.cpu.x[13] = neg;
        m.cpu.x[15] = 1u64 << (va_bits - 1); // not sign-extended: non-canonical
        run(&mut m);
        assert_eq!(m.cpu.x[10], 0x1122_3344_5566_7788, "levels {levels}");
        assert_eq!(m.cpu.x[12], 0x1122_3344_5566_7788, "levels {levels}");
        assert_eq!(trapped(&m), (cause::LOAD_PAGE, 1u64 << (va_bits - 1), CODE_VA + 8), "levels {levels}");
    }
}

#[test]
fn superpages_and_misaligned_superpage() {
    let mega_va = 0x4020_0000u64;
    let giga_va = 0xc000_0000u64;
    let bad_va = 0x4060_0000u64;
    let (mut m, mut pt) = paged(&[ld(10, 11, 0), ld(12, 13, 0), ld(14, 15, 0)], PRV_S, 3);
    pt.map(&mut m, mega_va, RAM_BASE, V | R | A, 1);
    pt.map(&mut m, giga_va, RAM_BASE, V | R | A, 2);
    pt.map(&mut m, bad_va, RAM_BASE + 0x1000, V | R | A, 1); // PPN[0] != 0
    m.cpu.x[11] = mega_va + (DATA - RAM_BASE);
    m.cpu.x[13] = giga_va + (DATA - RAM_BASE);
    m.cpu.x[15] = bad_va + 0x10;
    run(&mut m);
    assert_eq!((m.cpu.x[10], m.cpu.x[12]), (0x1122_3344_5566_7788, 0x1122_3344_5566_7788));
    assert_eq!(trapped(&m), (cause::LOAD_PAGE, bad_va + 0x10, CODE_VA + 8));
    // The same with Sv48/Sv57 terapage-level leaves via direct translation.
    for levels in [4u32, 5] {
        let (mut m, mut pt) = paged(&[], PRV_S, levels);
        let tera = 1u64 << 39; // 512 GiB page at level 3
        pt.map(&mut m, tera, 0, V | R | A, 3);
        let view = PhysView(Mutex::new(&mut m.mem.bytes[..]));
        let mode = Mode { privilege: PRV_S, sum: false };
        assert_eq!(translate(&m.cpu.csr, tera + DATA, Access::Read, mode, false, &view), Ok(DATA));
    }
}

#[test]
fn global_mappings_are_reported() {
    // G on the leaf, on a non-leaf PTE above it (the whole subtree is global), or nowhere.
    let (va_leaf, va_tree, va_none) = (0x4000_0000u64, 0x8000_0000u64, 0xc000_0000u64);
    let (mut m, mut pt) = paged(&[], PRV_S, 3);
    pt.map(&mut m, va_leaf, DATA, V | R | A | G, 0);
    pt.map(&mut m, va_tree, DATA, V | R | A, 0);
    pt.map(&mut m, va_none, DATA, V | R | A, 0);
    let upper = pt.leaf(&m, va_tree, 1);
    let e = m.mem.read(upper, 8);
    m.mem.write(upper, 8, e | G);
    let csr = m.cpu.csr.clone();
    let view = PhysView(Mutex::new(&mut m.mem.bytes[..]));
    let mode = Mode { privilege: PRV_S, sum: false };
    let global = |va| translate_sized(&csr, va, Access::Read, mode, false, &view).map(|t| t.global);
    assert_eq!((global(va_leaf), global(va_tree), global(va_none)), (Ok(true), Ok(true), Ok(false)));
    // No translation (M-mode): the same in every address space.
    let m_mode = Mode { privilege: PRV_M, sum: false };
    assert_eq!(translate_sized(&csr, DATA, Access::Read, m_mode, false, &view).map(|t| t.global), Ok(true));
}

#[test]
fn reserved_pte_encodings_fault() {
    let va = 0x2000_0000u64;
    for (flags, level) in [
        (V | W | A, 0u32),          // W without R
        (V | R | A | (1 << 54), 0), // reserved bit
        (V | R | A | (1 << 61), 0), // PBMT without Svpbmt
        (V | R | A | (1 << 63), 0), // N without Svnapot
        (R | A, 0),                 // not valid
        (V | A, 1),                 // non-leaf with A at level 1
        (V | U, 1),                 // non-leaf with U
    ] {
        let (mut m, mut pt) = paged(&[ld(10, 11, 0)], PRV_S, 3);
        if level == 1 {
            // A non-leaf level-1 entry pointing at a table that maps va.
            pt.map(&mut m, va, DATA, V | R | A, 0);
            let l1 = pt.leaf(&m, va, 1);
            let e = m.mem.read(l1, 8);
            m.mem.write(l1, 8, e | flags);
        } else {
            pt.map(&mut m, va, DATA, flags, 0);
        }
        m.cpu.x[11] = va;
        run(&mut m);
        assert_eq!(trapped(&m), (cause::LOAD_PAGE, va, CODE_VA), "flags {flags:#x} level {level}");
    }
    // A level-0 PTE that is not a leaf (no R/W/X): page fault too.
    let (mut m, mut pt) = paged(&[ld(10, 11, 0)], PRV_S, 3);
    pt.map(&mut m, va, DATA, V, 0);
    m.cpu.x[11] = va;
    run(&mut m);
    assert_eq!(trapped(&m).0, cause::LOAD_PAGE);
}

#[test]
fn permission_matrix_u_sum_mxr() {
    let mut m = Machine::new(&[]);
    let mut pt = Pt::new(&mut m, 3);
    // Pages: 0 kernel R, 1 kernel RW, 2 kernel X only, 3 user RW, 4 user X only, 5 user RWX.
    let pages = [V | R, V | R | W, V | X, V | R | W | U, V | X | U, V | R | W | X | U];
    for (i, f) in pages.iter().enumerate() {
        pt.map(&mut m, 0x1000_0000 + 0x1000 * i as u64, DATA, f | A | D, 0);
    }
    let view = PhysView(Mutex::new(&mut m.mem.bytes[..]));
    let csr = m.cpu.csr.clone();
    let ok = |page: u64, access, privilege, sum, mxr| {
        let va = 0x1000_0000 + 0x1000 * page;
        translate(&csr, va, access, Mode { privilege, sum }, mxr, &view).is_ok()
    };
    use Access::{Exec as X_, Read as R_, Write as W_};
    // (page, access, priv, sum, mxr, expected)
    let table = [
        (0, R_, PRV_S, false, false, true),
        (0, W_, PRV_S, false, false, false),
        (0, X_, PRV_S, false, false, false),
        (1, W_, PRV_S, false, false, true),
        (2, R_, PRV_S, false, false, false),
        (2, R_, PRV_S, false, true, true), // MXR: X pages readable
        (2, X_, PRV_S, false, false, true),
        (0, R_, PRV_U, false, false, false), // U cannot touch kernel pages
        (3, R_, PRV_U, false, false, true),
        (3, W_, PRV_U, false, false, true),
        (3, R_, PRV_S, false, false, false), // S on U page needs SUM
        (3, R_, PRV_S, true, false, true),
        (3, W_, PRV_S, true, false, true),
        (4, X_, PRV_S, true, false, false), // S never executes U pages
        (4, X_, PRV_U, false, false, true),
        (4, R_, PRV_U, false, false, false),
        (4, R_, PRV_U, false, true, true),
        (4, R_, PRV_S, true, true, true),
        (5, X_, PRV_S, true, false, false),
        (5, W_, PRV_U, false, false, true),
        (0, W_, PRV_M, false, false, true), // M: Bare, no page checks
    ];
    for (page, access, privilege, sum, mxr, want) in table {
        assert_eq!(
            ok(page, access, privilege, sum, mxr),
            want,
            "page {page} {access:?} priv {privilege} sum {sum} mxr {mxr}"
        );
    }
}

#[test]
fn fetch_page_faults_carry_cause_12() {
    // Jump to an unmapped VA: cause 12, tval = mepc = the target.
    let (mut m, _pt) = paged(&[jalr(0, 11)], PRV_S, 3);
    m.cpu.x[11] = 0x3000_0000;
    run(&mut m);
    assert_eq!(trapped(&m), (cause::INSN_PAGE, 0x3000_0000, 0x3000_0000));
    // A mapped but non-executable page: cause 12 too.
    let (mut m, mut pt) = paged(&[jalr(0, 11)], PRV_S, 3);
    pt.map(&mut m, 0x3000_0000, RAM_BASE, V | R | W | A | D, 0);
    m.cpu.x[11] = 0x3000_0000;
    run(&mut m);
    assert_eq!(trapped(&m), (cause::INSN_PAGE, 0x3000_0000, 0x3000_0000));
    // A 32-bit instruction crossing into an unmapped page: tval = the second half.
    let (mut m, mut pt) = paged(&[jalr(0, 11)], PRV_S, 3);
    pt.map(&mut m, 0x3000_0000, RAM_BASE + 0x1000, V | R | X | A, 0);
    m.mem.write(RAM_BASE + 0x1ffe, 2, 0x0513); // low half of an addi
    m.cpu.x[11] = 0x3000_0ffe;
    run(&mut m);
    assert_eq!(trapped(&m), (cause::INSN_PAGE, 0x3000_1000, 0x3000_0ffe));
    // The fetch uses the current privilege even under MPRV (direct check).
    let (mut m, _pt) = paged(&[], PRV_M, 3);
    m.cpu.csr.mstatus |= ms::MPRV | (PRV_S << ms::MPP_SHIFT);
    m.cpu.update_flags();
    let idx = m.cpu.mmu_index(m.cpu.header.flags);
    assert_eq!(idx, 1, "data accesses use S's TLB");
    let view = PhysView(Mutex::new(&mut m.mem.bytes[..]));
    assert_eq!(m.cpu.translate_addr(RAM_BASE, Access::Exec, idx, &view), Ok(RAM_BASE), "fetch is Bare in M");
    assert_eq!(m.cpu.translate_addr(RAM_BASE, Access::Read, idx, &view).map_err(|f| f.cause), Err(cause::LOAD_PAGE));
}

#[test]
fn mprv_data_accesses_use_mpp() {
    // M-mode code at its physical address sets MPRV with MPP = S, loads
    // through a mapping, stores through a read-only mapping (fault 15).
    let va = 0x2000_0000u64;
    let code = [
        csrrs(0, 0x300, 5), // mstatus |= t0 (MPRV | MPP=S)
        ld(10, 11, 0),
        sd(10, 11, 0),
    ];
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.mem.write(HANDLER, 4, ECALL as u64);
    m.cpu.csr.mtvec = HANDLER;
    m.mem.write(DATA, 8, 0x55);
    let mut pt = Pt::new(&mut m, 3);
    pt.map(&mut m, va, DATA, V | R | A, 0);
    m.cpu.x[5] = ms::MPRV | (PRV_S << ms::MPP_SHIFT);
    m.cpu.x[11] = va;
    run(&mut m);
    assert_eq!(m.cpu.x[10], 0x55);
    assert_eq!(trapped(&m), (cause::STORE_PAGE, va, RAM_BASE + 8));
    // The trap entered M with MPP = M now, so MPRV no longer applies.
    assert_eq!(m.cpu.mmu_index(m.cpu.header.flags), 3);
    // MPP = U with SUM: index 0; MPP = S with SUM: index 2.
    m.cpu.csr.mstatus = (m.cpu.csr.mstatus & !ms::MPP) | ms::MPRV | ms::SUM;
    m.cpu.update_flags();
    assert_eq!(m.cpu.mmu_index(m.cpu.header.flags), 0);
    m.cpu.csr.mstatus |= PRV_S << ms::MPP_SHIFT;
    m.cpu.update_flags();
    assert_eq!(m.cpu.mmu_index(m.cpu.header.flags), 2);
    assert_eq!(m.cpu.header.flags & tbflags::PRIV_MASK, 3);
}

#[test]
fn pmp_tor_napot_na4_and_lock() {
    let mut m = Machine::new(&[]);
    let c = &mut m.cpu.csr;
    // Entry 0: TOR [0, 0x8000_1000) RW. Entry 1: NAPOT 0x8000_2000/4 KiB, R.
    // Entry 2: NA4 at 0x8000_3000, locked, R only. Entry 3: NAPOT all, RWX.
    c.pmpaddr[0] = 0x8000_1000 >> 2;
    c.pmpaddr[1] = (0x8000_2000 >> 2) | 0x1ff;
    c.pmpaddr[2] = 0x8000_3000 >> 2;
    c.pmpaddr[3] = (1 << 54) - 1;
    c.pmpcfg[0] = 0x0b | 0x19 << 8 | 0x91 << 16 | 0x1f << 24;
    let c = m.cpu.csr.clone();
    let chk = |a: u64, acc, p| pmp_check(&c, a, acc, p);
    assert!(chk(0x8000_0ffc, Access::Write, PRV_S));
    assert!(!chk(0x8000_0ffc, Access::Exec, PRV_U));
    assert!(chk(0x8000_2ff8, Access::Read, PRV_S));
    assert!(!chk(0x8000_2ff8, Access::Write, PRV_S));
    assert!(chk(0x8000_2ff8, Access::Write, PRV_M), "M ignores unlocked entries");
    assert!(!chk(0x8000_3000, Access::Write, PRV_M), "locked entries bind M");
    assert!(chk(0x8000_3000, Access::Read, PRV_M));
    assert!(chk(0x8000_3004, Access::Write, PRV_M), "NA4 covers 4 bytes; entry 3 matches after");
    assert!(chk(0x9000_0000, Access::Exec, PRV_U));
    // Without the catch-all, no match fails S/U but not M.
    let mut c2 = c.clone();
    c2.pmpcfg[0] &= 0xff_ffff;
    assert!(!pmp_check(&c2, 0x9000_0000, Access::Read, PRV_S));
    assert!(pmp_check(&c2, 0x9000_0000, Access::Read, PRV_M));
    // Nothing programmed: everything allowed.
    let c3 = crate::csr::Csrs::reset();
    assert!(pmp_check(&c3, 0x9000_0000, Access::Read, PRV_U));
    // Cacheability: the NA4 page and the NAPOT 4 KiB page (whole) differ.
    assert!(pmp_page_cacheable(&c, 0x8000_2123));
    assert!(!pmp_page_cacheable(&c, 0x8000_3000), "NA4 covers part of a page");
    assert!(pmp_page_cacheable(&c, 0x8000_0000));
    assert!(pmp_page_cacheable(&c, 0x9000_0000));
    // TOR with a top inside a page makes that page uncacheable.
    let mut c4 = c3.clone();
    c4.pmpaddr[0] = 0x8000_0800 >> 2;
    c4.pmpcfg[0] = 0x0b;
    assert!(!pmp_page_cacheable(&c4, 0x8000_0000));
    assert!(m.cpu.tlb_cacheable(0x8000_2000, 1));
    assert!(!m.cpu.tlb_cacheable(0x8000_3000, 1));
}

#[test]
fn pmp_faults_from_guest_code_and_on_page_tables() {
    // S-mode Bare: a load outside the only (RX code) region is access fault 5,
    // a store 7.
    let mut m = Machine::new(&[ld(10, 11, 0), sd(10, 11, 0), ECALL]);
    m.mem.write(HANDLER, 4, ECALL as u64);
    m.cpu.csr.mtvec = HANDLER;
    m.cpu.csr.pmpaddr[0] = (RAM_BASE >> 2) | 0x1ff; // code page, 4 KiB NAPOT, RX
    m.cpu.csr.pmpcfg[0] = 0x1d;
    m.cpu.csr.pmpaddr[1] = (DATA >> 2) | 0x1ff; // data page, R
    m.cpu.csr.pmpcfg[0] |= 0x19 << 8;
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    m.cpu.x[11] = DATA;
    m.mem.write(DATA, 8, 5);
    run(&mut m);
    assert_eq!(m.cpu.x[10], 5);
    assert_eq!(trapped(&m), (cause::STORE_ACCESS, DATA, RAM_BASE + 4));
    // Page tables outside every PMP region: the walk's own read faults with
    // the access type of the original access (fetch: 1).
    let (mut m, _pt) = paged(&[], PRV_S, 3);
    m.cpu.csr.pmpaddr[0] = (RAM_BASE >> 2) | 0x1ff;
    m.cpu.csr.pmpcfg[0] = 0x1f;
    run(&mut m);
    assert_eq!(trapped(&m), (cause::INSN_ACCESS, CODE_VA, CODE_VA));
}

#[test]
fn satp_warl_and_flush() {
    let mut m = Machine::new(&[]);
    let c = &mut m.cpu;
    for mode in [satp::MODE_SV39, satp::MODE_SV48, satp::MODE_SV57] {
        c.header.flush_request = 0;
        let v = mode << 60 | 0xffff << 44 | 0x8_0010;
        crate::csr::access(c, 0x180, crate::decode::CsrOp::Rw, v | 0xf << 48, false, true, 0).unwrap();
        assert_eq!(c.csr.satp, v);
        assert_ne!(c.header.flush_request & kite_ir::state::flush::TLB_ALL, 0);
    }
    // Unsupported modes (Sv64 = 11, reserved 1) leave satp unchanged.
    for mode in [1u64, 11, 15] {
        crate::csr::access(c, 0x180, crate::decode::CsrOp::Rw, mode << 60 | 5, false, true, 0).unwrap();
        assert_eq!(c.csr.satp >> 60, satp::MODE_SV57);
    }
    crate::csr::access(c, 0x180, crate::decode::CsrOp::Rw, 0x1234, false, true, 0).unwrap();
    assert_eq!(c.csr.satp, 0, "Bare: ASID/PPN read as zero");
    // Another address space in the same mode drops the non-global translations only;
    // rewriting the same value drops nothing; a mode change drops everything.
    use kite_ir::state::flush::{TLB_ALL, TLB_NONGLOBAL};
    let sv39 = satp::MODE_SV39 << 60;
    let flush_of = |c: &mut crate::cpu::RiscvCpu, v: u64| {
        c.header.flush_request = 0;
        crate::csr::access(c, 0x180, crate::decode::CsrOp::Rw, v, false, true, 0).unwrap();
        c.header.flush_request & (TLB_ALL | TLB_NONGLOBAL)
    };
    assert_eq!(flush_of(c, sv39 | 1 << 44 | 0x8_0010), TLB_ALL, "Bare -> Sv39");
    assert_eq!(flush_of(c, sv39 | 2 << 44 | 0x8_0010), TLB_NONGLOBAL, "new ASID");
    assert_eq!(flush_of(c, sv39 | 2 << 44 | 0x8_0020), TLB_NONGLOBAL, "new root table");
    assert_eq!(flush_of(c, sv39 | 2 << 44 | 0x8_0020), 0, "unchanged");
    assert_eq!(flush_of(c, satp::MODE_SV48 << 60 | 2 << 44 | 0x8_0020), TLB_ALL, "Sv39 -> Sv48");
    assert_eq!(flush_of(c, 0), TLB_ALL, "-> Bare");
}

#[test]
fn ad_update_in_rom_or_race_is_bounded() {
    // A PTE that changes under every cmpxchg: the walk gives up (page fault)
    // instead of looping. Simulated with a PhysMemory that always disagrees.
    struct Fickle;
    impl kite_core::PhysMemory for Fickle {
        fn read_ram(&self, _: u64, buf: &mut [u8]) -> bool {
            let pte = (0x8000_0000u64 >> 12) << 10 | V | R | W | X;
            buf.copy_from_slice(&pte.to_le_bytes()[..buf.len()]);
            true
        }
        fn write_ram(&self, _: u64, _: &[u8]) -> bool {
            false
        }
        fn read(&self, _: u64, _: u32) -> Option<u64> {
            None
        }
        fn write(&self, _: u64, _: u32, _: u64) -> bool {
            false
        }
        fn ram_ptr(&self, _: u64) -> Option<(*mut u8, u64)> {
            None
        }
        fn cmpxchg_u64(&self, _: u64, old: u64, _: u64) -> Option<u64> {
            Some(old ^ 1 << 8)
        }
    }
    let mut csr = crate::csr::Csrs::reset();
    csr.satp = satp::MODE_SV39 << 60;
    let mode = Mode { privilege: PRV_S, sum: false };
    // Level-2 leaf (gigapage at 0x8000_0000): misaligned? no, PPN[1:0] = 0.
    let r = translate(&csr, 0x8000_0000, Access::Read, mode, false, &Fickle);
    assert_eq!(r.map_err(|f| f.cause), Err(cause::LOAD_PAGE));
}
