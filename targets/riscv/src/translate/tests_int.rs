//! Execution tests for RV64I and M: programs assembled with the encoders in
//! `testutil`, run through the reference interpreter; expected values come
//! from the ISA specification.

use crate::testutil::*;

/// Run `code` + ecall with registers preset by `regs` (index, value).
fn run(code: &[u32], regs: &[(usize, u64)]) -> Machine {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    for &(r, v) in regs {
        m.cpu.x[r] = v;
    }
    m.run_to_ecall();
    m
}

fn rr(f7: u32, f3: u32, opc: u32) -> impl Fn(u32, u32, u32) -> u32 {
    move |rd, rs1, rs2| r_type(f7, rs2, rs1, f3, rd, opc)
}

/// Evaluate `op rd=10, rs1=11, rs2=12` on (a, b).
fn eval(enc: &dyn Fn(u32, u32, u32) -> u32, a: u64, b: u64) -> u64 {
    run(&[enc(10, 11, 12)], &[(11, a), (12, b)]).cpu.x[10]
}

const MIN: u64 = 1 << 63;

#[test]
fn add_sub_logic_compare() {
    assert_eq!(eval(&rr(0, 0, 0x33), u64::MAX, 2), 1);
    assert_eq!(eval(&rr(0x20, 0, 0x33), 0, 1), u64::MAX);
    assert_eq!(eval(&rr(0, 4, 0x33), 0xf0f0, 0xff00), 0x0ff0);
    assert_eq!(eval(&rr(0, 6, 0x33), 0xf0f0, 0xff00), 0xfff0);
    assert_eq!(eval(&rr(0, 7, 0x33), 0xf0f0, 0xff00), 0xf000);
    assert_eq!(eval(&rr(0, 2, 0x33), u64::MAX, 1), 1, "slt: -1 < 1");
    assert_eq!(eval(&rr(0, 3, 0x33), u64::MAX, 1), 0, "sltu: max > 1");
    // slti / sltiu: the immediate is sign-extended, then compared unsigned for sltiu.
    assert_eq!(run(&[i_type(-1, 11, 2, 10, 0x13)], &[(11, u64::MAX - 1)]).cpu.x[10], 1);
    assert_eq!(run(&[i_type(-1, 11, 3, 10, 0x13)], &[(11, u64::MAX - 1)]).cpu.x[10], 1);
    assert_eq!(run(&[i_type(-1, 11, 3, 10, 0x13)], &[(11, u64::MAX)]).cpu.x[10], 0);
    assert_eq!(run(&[i_type(-1, 11, 4, 10, 0x13)], &[(11, 0x0f)]).cpu.x[10], !0x0f, "xori -1 = not");
    assert_eq!(run(&[i_type(0x7ff, 11, 7, 10, 0x13)], &[(11, u64::MAX)]).cpu.x[10], 0x7ff);
}

#[test]
fn shifts_64_and_32() {
    let sll = rr(0, 1, 0x33);
    let srl = rr(0, 5, 0x33);
    let sra = rr(0x20, 5, 0x33);
    assert_eq!(eval(&sll, 1, 63), MIN);
    assert_eq!(eval(&sll, 1, 64), 1, "sll uses rs2[5:0]");
    assert_eq!(eval(&srl, MIN, 63), 1);
    assert_eq!(eval(&sra, MIN, 63), u64::MAX);
    assert_eq!(eval(&sra, MIN, 64 + 1), 0xc000_0000_0000_0000);
    let sllw = rr(0, 1, 0x3b);
    let srlw = rr(0, 5, 0x3b);
    let sraw = rr(0x20, 5, 0x3b);
    assert_eq!(eval(&sllw, 1, 31), 0xffff_ffff_8000_0000, "sllw sign-extends bit 31");
    assert_eq!(eval(&sllw, 1, 32), 1, "sllw uses rs2[4:0]");
    assert_eq!(eval(&sllw, 0xffff_ffff_0000_0003, 1), 6, "upper bits of rs1 ignored");
    assert_eq!(eval(&srlw, 0x1234_5678_8000_0000, 31), 1);
    assert_eq!(eval(&srlw, 0x8000_0000, 0), 0xffff_ffff_8000_0000);
    assert_eq!(eval(&sraw, 0x8000_0000, 31), u64::MAX);
    assert_eq!(eval(&sraw, 0xffff_ffff_4000_0000, 30), 1);
    // Immediate forms.
    let slli = |sh: u32| r_type(0, 0, 11, 1, 10, 0x13) | sh << 20;
    let srai = |sh: u32| r_type(0x20, 0, 11, 5, 10, 0x13) | sh << 20;
    assert_eq!(run(&[slli(63)], &[(11, 3)]).cpu.x[10], MIN);
    assert_eq!(run(&[srai(63)], &[(11, MIN)]).cpu.x[10], u64::MAX);
    assert_eq!(run(&[r_type(0, 31, 11, 1, 10, 0x1b)], &[(11, 1)]).cpu.x[10], 0xffff_ffff_8000_0000, "slliw 31");
    assert_eq!(run(&[r_type(0x20, 31, 11, 5, 10, 0x1b)], &[(11, 0x8000_0000)]).cpu.x[10], u64::MAX, "sraiw 31");
    assert_eq!(run(&[r_type(0, 31, 11, 5, 10, 0x1b)], &[(11, u64::MAX)]).cpu.x[10], 1, "srliw 31");
}

#[test]
fn word_arithmetic_sign_extends() {
    assert_eq!(eval(&rr(0, 0, 0x3b), 0x7fff_ffff, 1), 0xffff_ffff_8000_0000, "addw overflow");
    assert_eq!(eval(&rr(0x20, 0, 0x3b), 0, 1), u64::MAX, "subw");
    assert_eq!(eval(&rr(0x20, 0, 0x3b), 0x1_0000_0000, 0), 0, "subw ignores upper bits");
    assert_eq!(run(&[addi(0, 0, 0) | 0x8], &[]).cpu.x[0], 0);
    assert_eq!(run(&[i_type(0, 11, 0, 10, 0x1b)], &[(11, 0x1_0000_0005)]).cpu.x[10], 5, "addiw = sext.w");
    assert_eq!(run(&[i_type(-1, 11, 0, 10, 0x1b)], &[(11, 0x8000_0000)]).cpu.x[10], 0x7fff_ffff);
}

#[test]
fn upper_immediates_x0_and_jumps() {
    let m = run(&[u_type(0x8000_0000u32 as i32, 10, 0x37), u_type(0x1000, 11, 0x17)], &[]);
    assert_eq!(m.cpu.x[10], 0xffff_ffff_8000_0000, "lui sign-extends");
    assert_eq!(m.cpu.x[11], RAM_BASE + 4 + 0x1000, "auipc");
    // Writes to x0 are dropped, reads of x0 give 0.
    let m = run(&[addi(0, 0, 5), addi(10, 0, 0)], &[]);
    assert_eq!((m.cpu.x[0], m.cpu.x[10]), (0, 0));
    // jal: link = pc + 4, skips one instruction.
    let m = run(&[j_type(8, 1), addi(10, 0, 1), addi(11, 0, 2)], &[]);
    assert_eq!((m.cpu.x[1], m.cpu.x[10], m.cpu.x[11]), (RAM_BASE + 4, 0, 2));
    // jalr with rd == rs1 and an odd target: bit 0 cleared, target from the old value.
    let m = run(&[i_type(9, 5, 0, 5, 0x67), addi(10, 0, 1), addi(11, 0, 2)], &[(5, RAM_BASE)]);
    assert_eq!((m.cpu.x[5], m.cpu.x[10], m.cpu.x[11]), (RAM_BASE + 4, 0, 2));
}

/// A `jalr` marks its block a dispatch (`Block::dispatch`) by the ISA's return-address
/// hints: a plain jump through a register other than ra/t0 (`jr a5`, a switch's jump
/// table) is one; a return (`ret`, `jr t0`), a call (`jalr ra, a5`) and `c.jr ra` are not.
#[test]
fn plain_indirect_jumps_are_dispatches() {
    let jalr = |rd: u32, rs1: u32| i_type(0, rs1, 0, rd, 0x67);
    for (code, dispatch) in [
        (jalr(0, 15), true),
        (jalr(0, 6), true),
        (jalr(0, 1), false),
        (jalr(0, 5), false),
        (jalr(1, 15), false),
        (jalr(5, 15), false),
        (jalr(1, 1), false),
    ] {
        let mut m = Machine::new(&[addi(10, 0, 1), code]);
        assert_eq!(m.translate().dispatch, dispatch, "{code:#010x}");
    }
    // c.jr a5 and c.jr ra (compressed: `jalr x0, 0(rs1)`).
    for (half, dispatch) in [(0x8782u16, true), (0x8082, false)] {
        let mut m = Machine::with_bytes(&[half as u8, (half >> 8) as u8, 0x13, 0, 0, 0]);
        assert_eq!(m.translate().dispatch, dispatch, "{half:#06x}");
    }
    // No indirect jump at all.
    assert!(!Machine::new(&[addi(10, 0, 1), j_type(8, 0)]).translate().dispatch);
}

#[test]
fn branches_signed_and_unsigned() {
    // Each branch skips `addi a0, zero, 1` when taken.
    let cases = [
        (0, 5u64, 5u64, true),
        (0, 5, 6, false),
        (1, 5, 6, true),
        (1, 5, 5, false),
        (4, u64::MAX, 0, true),
        (4, 0, u64::MAX, false),
        (5, 0, u64::MAX, true),
        (5, u64::MAX, u64::MAX, true),
        (6, 0, u64::MAX, true),
        (6, u64::MAX, 0, false),
        (7, u64::MAX, 0, true),
        (7, 0, 1, false),
    ];
    for (f3, a, b, taken) in cases {
        let m = run(&[b_type(8, 12, 11, f3), addi(10, 0, 1)], &[(11, a), (12, b)]);
        assert_eq!(m.cpu.x[10] == 0, taken, "f3={f3} a={a:#x} b={b:#x}");
    }
    // A backward-branch loop: sum 1..=10 across many blocks.
    let m = run(
        &[addi(10, 0, 0), addi(11, 0, 10), r_type(0, 11, 10, 0, 10, 0x33), addi(11, 11, -1), b_type(-8, 0, 11, 1)],
        &[],
    );
    assert_eq!(m.cpu.x[10], 55);
}

#[test]
fn loads_and_stores() {
    let d = RAM_BASE + 0x1000;
    let mut prog = vec![
        i_type(0, 5, 0, 10, 0x03),  // lb
        i_type(0, 5, 4, 11, 0x03),  // lbu
        i_type(0, 5, 1, 12, 0x03),  // lh
        i_type(0, 5, 5, 13, 0x03),  // lhu
        i_type(0, 5, 2, 14, 0x03),  // lw
        i_type(0, 5, 6, 15, 0x03),  // lwu
        i_type(0, 5, 3, 16, 0x03),  // ld
        i_type(1, 5, 2, 17, 0x03),  // misaligned lw succeeds
        s_type(16, 16, 5, 3, 0x23), // sd
        s_type(24, 16, 5, 2, 0x23), // sw
        s_type(32, 16, 5, 1, 0x23), // sh
        s_type(40, 16, 5, 0, 0x23), // sb
        s_type(-1, 16, 6, 3, 0x23), // misaligned sd, negative offset
    ];
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.mem.write(d, 8, 0x89ab_cdef_8000_0080);
    let v = m.mem.read(d, 8);
    m.cpu.x[5] = d;
    m.cpu.x[6] = d + 0x40;
    m.run_to_ecall();
    let x = &m.cpu.x;
    assert_eq!(x[10], 0xffff_ffff_ffff_ff80, "lb sign-extends");
    assert_eq!(x[11], 0x80);
    assert_eq!(x[12], 0x80, "lh of 0x0080 is positive");
    assert_eq!(x[14], 0xffff_ffff_8000_0080, "lw sign-extends");
    assert_eq!(x[15], 0x8000_0080, "lwu zero-extends");
    assert_eq!(x[16], v);
    assert_eq!(x[17], (v >> 8) as u32 as i32 as i64 as u64);
    assert_eq!(m.mem.read(d + 16, 8), v);
    assert_eq!(m.mem.read(d + 24, 8), v & 0xffff_ffff);
    assert_eq!(m.mem.read(d + 32, 8), v & 0xffff);
    assert_eq!(m.mem.read(d + 40, 8), v & 0xff);
    assert_eq!(m.mem.read(d + 0x3f, 8), v);
}

#[test]
fn load_access_fault_is_precise() {
    let mut m = Machine::new(&[addi(10, 0, 1), i_type(0, 5, 3, 11, 0x03), addi(12, 0, 1)]);
    m.stop_on_ecall = true;
    m.cpu.x[5] = 0x10;
    m.cpu.csr.mtvec = RAM_BASE + 0x800;
    m.mem.write(RAM_BASE + 0x800, 4, ECALL as u64);
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.mcause, 5);
    assert_eq!(m.cpu.csr.mtval, 0x10);
    assert_eq!(m.cpu.csr.mepc, RAM_BASE + 4);
    assert_eq!((m.cpu.x[10], m.cpu.x[12]), (1, 0));
}

#[test]
fn multiply() {
    let mul = rr(1, 0, 0x33);
    let mulh = rr(1, 1, 0x33);
    let mulhsu = rr(1, 2, 0x33);
    let mulhu = rr(1, 3, 0x33);
    assert_eq!(eval(&mul, u64::MAX, u64::MAX), 1);
    assert_eq!(eval(&mul, 0x1_0000_0001, 0x1_0000_0001), 0x2_0000_0001);
    assert_eq!(eval(&mulh, u64::MAX, u64::MAX), 0, "(-1)*(-1) = 1");
    assert_eq!(eval(&mulh, MIN, MIN), 0x4000_0000_0000_0000);
    assert_eq!(eval(&mulh, MIN, 1), u64::MAX);
    assert_eq!(eval(&mulhu, u64::MAX, u64::MAX), u64::MAX - 1);
    assert_eq!(eval(&mulhu, MIN, 2), 1);
    assert_eq!(eval(&mulhsu, u64::MAX, u64::MAX), u64::MAX, "-1 * (2^64-1)");
    assert_eq!(eval(&mulhsu, 2, u64::MAX), 1);
    assert_eq!(eval(&mulhsu, MIN, u64::MAX), MIN, "-2^63 * (2^64-1) = -2^127 + 2^63");
    let mulw = rr(1, 0, 0x3b);
    assert_eq!(eval(&mulw, 0x7fff_ffff, 2), u64::MAX - 1);
    assert_eq!(eval(&mulw, 0xffff_ffff_0000_0003, 0x5_0000_0003), 9);
}

#[test]
fn divide_corner_cases_all_variants() {
    let div = rr(1, 4, 0x33);
    let divu = rr(1, 5, 0x33);
    let rem = rr(1, 6, 0x33);
    let remu = rr(1, 7, 0x33);
    assert_eq!(eval(&div, 7, 0), u64::MAX);
    assert_eq!(eval(&divu, 7, 0), u64::MAX);
    assert_eq!(eval(&rem, 7, 0), 7);
    assert_eq!(eval(&remu, 7, 0), 7);
    assert_eq!(eval(&div, MIN, u64::MAX), MIN);
    assert_eq!(eval(&rem, MIN, u64::MAX), 0);
    assert_eq!(eval(&div, (-7i64) as u64, 2), (-3i64) as u64);
    assert_eq!(eval(&rem, (-7i64) as u64, 2), u64::MAX);
    assert_eq!(eval(&divu, (-7i64) as u64, 2), ((-7i64) as u64) / 2);
    assert_eq!(eval(&remu, (-7i64) as u64, 2), 1);
    let divw = rr(1, 4, 0x3b);
    let divuw = rr(1, 5, 0x3b);
    let remw = rr(1, 6, 0x3b);
    let remuw = rr(1, 7, 0x3b);
    // The low 32 bits are the operands; upper garbage is ignored.
    let a = 0x1234_5678_ffff_fff9; // -7
    let b = 0xabcd_ef00_0000_0002;
    assert_eq!(eval(&divw, a, b), (-3i64) as u64);
    assert_eq!(eval(&remw, a, b), u64::MAX);
    assert_eq!(eval(&divuw, a, b), 0x7fff_fffc);
    assert_eq!(eval(&remuw, a, b), 1);
    assert_eq!(eval(&divw, a, 0x1_0000_0000), u64::MAX, "divw by 0");
    assert_eq!(eval(&divuw, a, 0x1_0000_0000), u64::MAX, "divuw by 0 = sext(0xffffffff)");
    assert_eq!(eval(&remw, a, 0x1_0000_0000), (-7i64) as u64, "remw by 0 = sext(rs1)");
    assert_eq!(eval(&remuw, 0x8000_0000, 0), 0xffff_ffff_8000_0000, "remuw by 0 = sext(rs1[31:0])");
    assert_eq!(eval(&divw, 0x8000_0000, 0xffff_ffff), 0xffff_ffff_8000_0000, "divw overflow");
    assert_eq!(eval(&remw, 0x8000_0000, 0xffff_ffff), 0, "remw overflow");
    assert_eq!(eval(&divuw, 0x8000_0000, 0xffff_ffff), 0);
}
