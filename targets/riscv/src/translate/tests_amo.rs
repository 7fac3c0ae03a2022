//! Execution tests for the A extension (LR/SC reservations, AMOs, alignment).

use crate::testutil::*;

const D: u64 = RAM_BASE + 0x1000;
const W: u32 = 2;
const DW: u32 = 3;

fn lr(f3: u32, rd: u32, rs1: u32) -> u32 {
    enc_amo(2, 0, 0, rs1, f3, rd)
}
fn sc(f3: u32, rd: u32, rs2: u32, rs1: u32) -> u32 {
    enc_amo(3, 0, rs2, rs1, f3, rd)
}

/// Run with a1 = D, a3 = 0x77 (the SC source), memory at D = `init`.
fn run(code: &[u32], init: u64) -> Machine {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.mem.write(D, 8, init);
    m.cpu.x[11] = D;
    m.cpu.x[13] = 0x77;
    m.cpu.x[14] = D + 8;
    m.run_to_ecall();
    m
}

#[test]
fn lr_sc_success() {
    let m = run(&[lr(DW, 10, 11), sc(DW, 12, 13, 11)], 0x1234);
    assert_eq!(m.cpu.x[10], 0x1234);
    assert_eq!(m.cpu.x[12], 0, "sc succeeded");
    assert_eq!(m.mem.read(D, 8), 0x77);
    // lr.w sign-extends; sc.w writes 4 bytes only.
    let m = run(&[lr(W, 10, 11), sc(W, 12, 13, 11)], 0xaaaa_bbbb_8000_0000);
    assert_eq!(m.cpu.x[10], 0xffff_ffff_8000_0000);
    assert_eq!(m.cpu.x[12], 0);
    assert_eq!(m.mem.read(D, 8), 0xaaaa_bbbb_0000_0077);
}

#[test]
fn sc_failures() {
    // No LR at all.
    let m = run(&[sc(DW, 12, 13, 11)], 5);
    assert_eq!((m.cpu.x[12], m.mem.read(D, 8)), (1, 5));
    // SC to a different address than the reservation.
    let m = run(&[lr(DW, 10, 11), sc(DW, 12, 13, 14)], 5);
    assert_eq!((m.cpu.x[12], m.mem.read(D + 8, 8)), (1, 0));
    // The reserved value changed in between.
    let m = run(&[lr(DW, 10, 11), s_type(0, 0, 11, 3, 0x23), sc(DW, 12, 13, 11)], 5);
    assert_eq!((m.cpu.x[12], m.mem.read(D, 8)), (1, 0));
    // The first SC clears the reservation: a second one fails.
    let m = run(&[lr(DW, 10, 11), sc(DW, 12, 13, 11), addi(13, 0, 0x55), sc(DW, 15, 13, 11)], 5);
    assert_eq!((m.cpu.x[12], m.cpu.x[15], m.mem.read(D, 8)), (0, 1, 0x77));
    // A trap between LR and SC clears the reservation too.
    let mut m = Machine::new(&[lr(DW, 10, 11), EBREAK, sc(DW, 12, 13, 11), ECALL]);
    m.mem.write(D, 8, 5);
    m.cpu.x[11] = D;
    m.cpu.x[13] = 0x77;
    m.cpu.csr.mtvec = RAM_BASE + 8; // the handler resumes at the SC
    m.run_to_ecall();
    assert_eq!((m.cpu.x[12], m.mem.read(D, 8)), (1, 5));
}

/// Run one AMO `amo<f5>.<w> a0, a2, (a1)` with memory `init` and a2 = `src`:
/// returns (rd, memory after).
fn amo_result(f5: u32, f3: u32, init: u64, src: u64) -> (u64, u64) {
    let mut m = Machine::new(&[enc_amo(f5, 3, 12, 11, f3, 10), ECALL]);
    m.mem.write(D, 8, init);
    m.cpu.x[11] = D;
    m.cpu.x[12] = src;
    m.run_to_ecall();
    (m.cpu.x[10], m.mem.read(D, 8))
}

#[test]
fn amo_doubleword() {
    let neg5 = (-5i64) as u64;
    assert_eq!(amo_result(1, DW, 10, 3), (10, 3), "swap");
    assert_eq!(amo_result(0, DW, u64::MAX, 2), (u64::MAX, 1), "add wraps");
    assert_eq!(amo_result(4, DW, 0b1100, 0b1010), (0b1100, 0b0110), "xor");
    assert_eq!(amo_result(0xc, DW, 0b1100, 0b1010), (0b1100, 0b1000), "and");
    assert_eq!(amo_result(8, DW, 0b1100, 0b1010), (0b1100, 0b1110), "or");
    assert_eq!(amo_result(0x10, DW, neg5, 3), (neg5, neg5), "min is signed");
    assert_eq!(amo_result(0x14, DW, neg5, 3), (neg5, 3), "max is signed");
    assert_eq!(amo_result(0x18, DW, neg5, 3), (neg5, 3), "minu is unsigned");
    assert_eq!(amo_result(0x1c, DW, neg5, 3), (neg5, neg5), "maxu is unsigned");
}

#[test]
fn amo_word_sign_extends_and_keeps_upper_memory() {
    let hi = 0x1111_2222_0000_0000;
    let m32 = hi | 0x8000_0000;
    let sx = 0xffff_ffff_8000_0000;
    assert_eq!(amo_result(1, W, m32, 0x99_0000_0005), (sx, hi | 5), "swap stores 32 bits");
    assert_eq!(amo_result(0, W, hi | 0xffff_ffff, 1), (u64::MAX, hi), "add wraps at 32 bits");
    assert_eq!(amo_result(4, W, hi | 0xf0, 0xff), (0xf0, hi | 0x0f), "xor");
    assert_eq!(amo_result(0xc, W, hi | 0xf0, 0x3c), (0xf0, hi | 0x30), "and");
    assert_eq!(amo_result(8, W, hi | 0xf0, 0x0f), (0xf0, hi | 0xff), "or");
    assert_eq!(amo_result(0x10, W, m32, 1), (sx, m32), "min.w: 0x80000000 is negative");
    assert_eq!(amo_result(0x14, W, m32, 1), (sx, hi | 1), "max.w");
    assert_eq!(amo_result(0x18, W, m32, 1), (sx, hi | 1), "minu.w");
    assert_eq!(amo_result(0x1c, W, m32, 1), (sx, m32), "maxu.w");
    // The upper half of rs2 does not take part in a W comparison.
    assert_eq!(amo_result(0x10, W, hi | 2, 0xffff_ffff_0000_0001), (2, hi | 1));
}

fn trap_of(insn: u32, addr: u64) -> (u64, u64, u64) {
    let mut m = Machine::new(&[addi(10, 0, 0), insn, ECALL]);
    m.cpu.x[11] = addr;
    m.cpu.csr.mtvec = RAM_BASE + 8;
    m.run_to_ecall();
    (m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc)
}

#[test]
fn misaligned_atomics_trap() {
    let pc = RAM_BASE + 4;
    assert_eq!(trap_of(enc_amo(0, 0, 12, 11, DW, 10), D + 4), (6, D + 4, pc), "amoadd.d");
    assert_eq!(trap_of(enc_amo(1, 0, 12, 11, W, 10), D + 2), (6, D + 2, pc), "amoswap.w");
    assert_eq!(trap_of(sc(W, 10, 12, 11), D + 1), (6, D + 1, pc), "sc.w");
    assert_eq!(trap_of(lr(DW, 10, 11), D + 4), (4, D + 4, pc), "lr.d");
    // Aligned but not 8-aligned is fine for W.
    let m = run(&[enc_amo(0, 0, 13, 14, W, 10)], 0);
    assert_eq!(m.mem.read(D + 8, 4), 0x77);
}
