//! Execution tests for F/D and bitmanip translation through the reference
//! interpreter: FS gating and dirty marking, NaN boxing in pure-IR moves,
//! the dynamic rounding mode, and bitmanip edge values (expected values from
//! the specifications).

use crate::cpu::{cause, tbflags};
use crate::csr::mstatus as ms;
use crate::fpu::BOX;
use crate::testutil::*;

const FS_INITIAL: u64 = 1 << 13;

fn machine(code: &[u32], fs: u64) -> Machine {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.cpu.csr.mstatus = (m.cpu.csr.mstatus & !ms::FS) | fs;
    m.cpu.update_flags();
    m
}

/// OP-FP encoding.
fn opfp(f5: u32, fmt: u32, rs2: u32, rs1: u32, rm: u32, rd: u32) -> u32 {
    r_type(f5 << 2 | fmt, rs2, rs1, rm, rd, 0x53)
}

#[test]
fn fs_off_makes_fp_illegal() {
    let fadd_d = opfp(0, 1, 2, 1, 7, 3);
    let mut m = machine(&[fadd_d], 0);
    m.stop_on_ecall = true;
    m.cpu.csr.mtvec = RAM_BASE + 4; // the ecall
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (cause::ILLEGAL_INSN, fadd_d as u64));
}

#[test]
fn fp_write_sets_dirty_and_flags() {
    // fmv.d.x f1, a0
    let mut m = machine(&[opfp(30, 1, 0, 10, 0, 1)], FS_INITIAL);
    m.cpu.x[10] = 0x1234;
    m.run_to_ecall();
    assert_eq!(m.cpu.f[1], 0x1234);
    assert_eq!(m.cpu.csr.mstatus & ms::FS, ms::FS);
    assert_eq!(m.cpu.header.flags & tbflags::FS_MASK, tbflags::FS_MASK);
    assert_eq!(crate::csr::read_mstatus(&m.cpu) >> 63, 1, "SD");
}

#[test]
fn moves_box_and_sign_injection_unboxes() {
    // fmv.w.x f1, a0; fmv.x.w a1, f2; fsgnjn.s f3, f4, f4
    let code = [opfp(30, 0, 0, 10, 0, 1), opfp(28, 0, 0, 2, 0, 11), opfp(4, 0, 4, 4, 1, 3)];
    let mut m = machine(&code, FS_INITIAL);
    m.cpu.x[10] = 0xdead_beef_3f80_0000;
    m.cpu.f[2] = 0x1234_5678_8000_0001; // not boxed: fmv.x.w takes the low word anyway
    m.cpu.f[4] = 0x3f80_0000; // not boxed: reads as the canonical NaN
    m.run_to_ecall();
    assert_eq!(m.cpu.f[1], BOX | 0x3f80_0000);
    assert_eq!(m.cpu.x[11], 0xffff_ffff_8000_0001);
    assert_eq!(m.cpu.f[3], BOX | 0xffc0_0000);
}

#[test]
fn dynamic_rounding_mode_and_flags() {
    // fadd.s f3, f1, f2 (dyn): 1 + 2^-24 is a tie.
    let code = [opfp(0, 0, 2, 1, 7, 3)];
    for (frm, want) in [(0u64, 0x3f80_0000u64), (3, 0x3f80_0001), (4, 0x3f80_0001)] {
        let mut m = machine(&code, FS_INITIAL);
        m.cpu.f[1] = BOX | 0x3f80_0000;
        m.cpu.f[2] = BOX | 0x3380_0000;
        m.cpu.csr.fcsr = frm << 5;
        m.run_to_ecall();
        assert_eq!(m.cpu.f[3], BOX | want, "frm {frm}");
        assert_eq!(m.cpu.csr.fcsr & 0x1f, 1, "NX");
    }
    // frm = 5: illegal at run time.
    let mut m = machine(&code, FS_INITIAL);
    m.cpu.csr.fcsr = 5 << 5;
    m.cpu.csr.mtvec = RAM_BASE + 4;
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.mcause, cause::ILLEGAL_INSN);
    assert_eq!(m.cpu.f[3], 0, "no write on the trap");
}

#[test]
fn bitmanip_edges() {
    let r = |f7: u32, f3: u32, opc: u32, rs2: u32| r_type(f7, rs2, 11, f3, 10, opc);
    let eval = |insn: u32, a: u64, b: u64| {
        let mut m = machine(&[insn], 0);
        m.cpu.x[11] = a;
        m.cpu.x[12] = b;
        m.run_to_ecall();
        m.cpu.x[10]
    };
    assert_eq!(eval(r(0x14, 5, 0x13, 7), 0x0001_0080_00ff_0010, 0), 0x00ff_00ff_00ff_00ff, "orc.b");
    assert_eq!(eval(r(0x35, 5, 0x13, 0x18), 0x0102_0304_0506_0708, 0), 0x0807_0605_0403_0201, "rev8");
    assert_eq!(eval(r(0x30, 1, 0x1b, 0), 0xffff_ffff_0000_0000, 0), 32, "clzw of a zero low word");
    assert_eq!(eval(r(0x30, 1, 0x1b, 2), 0xffff_ffff_0000_0003, 0), 2, "cpopw");
    assert_eq!(eval(r(0x30, 5, 0x3b, 12), 1, 33), 0xffff_ffff_8000_0000, "rorw by 33 = by 1, sign-extended");
    assert_eq!(eval(r(0x04, 0, 0x3b, 12), u64::MAX, 1), 0x1_0000_0000, "add.uw");
    assert_eq!(eval(r(0x24, 1, 0x33, 12), u64::MAX, 64), u64::MAX - 1, "bclr index mod 64");
    assert_eq!(eval(r(0x07, 5, 0x33, 12), 77, 1 << 40), 77, "czero.eqz tests all of rs2");
    assert_eq!(eval(r(0x07, 7, 0x33, 12), 77, 1 << 40), 0, "czero.nez");
}

#[test]
fn cbo_zero_clears_the_aligned_block() {
    // cbo.zero (a1)
    let mut m = machine(&[0x0040_a00f | 11 << 15], 0);
    for i in 0..24 {
        m.mem.write(RAM_BASE + 0x1000 + 8 * i, 8, 0x5a5a);
    }
    m.cpu.x[11] = RAM_BASE + 0x1040 + 13;
    m.run_to_ecall();
    assert_eq!(m.mem.read(RAM_BASE + 0x1038, 8), 0x5a5a);
    assert!((0..8).all(|i| m.mem.read(RAM_BASE + 0x1040 + 8 * i, 8) == 0));
    assert_eq!(m.mem.read(RAM_BASE + 0x1080, 8), 0x5a5a);
}
