//! Decoder tests: encodings assembled by hand from the spec's formats.

use super::*;
use crate::testutil::*;

fn d(insn: u32) -> Op {
    decode(insn).0
}

fn alui_op(op: AluOp, word: bool, rd: Reg, rs1: Reg, imm: i64) -> Op {
    Op::AluImm { op, word, rd, rs1, imm }
}
fn alu_op(op: AluOp, word: bool, rd: Reg, rs1: Reg, rs2: Reg) -> Op {
    Op::Alu { op, word, rd, rs1, rs2 }
}

#[test]
fn rv64i_immediates_and_formats() {
    assert_eq!(d(addi(10, 11, -1)), alui_op(AluOp::Add, false, 10, 11, -1));
    assert_eq!(d(addi(1, 2, 2047)), alui_op(AluOp::Add, false, 1, 2, 2047));
    assert_eq!(d(addi(1, 2, -2048)), alui_op(AluOp::Add, false, 1, 2, -2048));
    assert_eq!(d(u_type(0x12345 << 12, 5, 0x37)), Op::Lui { rd: 5, imm: 0x12345000 });
    assert_eq!(d(u_type(-4096, 5, 0x37)), Op::Lui { rd: 5, imm: -4096 });
    assert_eq!(d(u_type(0x8000_0000u32 as i32, 5, 0x17)), Op::Auipc { rd: 5, imm: -0x8000_0000 });
    for imm in [2, -2, 0x7fe, -0x800, 0xffffe, -0x100000, 0x800, 0x1000] {
        assert_eq!(d(j_type(imm, 1)), Op::Jal { rd: 1, imm: imm as i64 }, "jal {imm}");
    }
    for imm in [2, -2, 0x7fe, 0xffe, -0x1000, 0x800, 0x20] {
        assert_eq!(d(b_type(imm, 3, 4, 1)), Op::Branch { cond: BranchCond::Ne, rs1: 4, rs2: 3, imm: imm as i64 });
    }
    assert_eq!(d(i_type(-8, 5, 0, 1, 0x67)), Op::Jalr { rd: 1, rs1: 5, imm: -8 });
    let conds = [
        (0, BranchCond::Eq),
        (1, BranchCond::Ne),
        (4, BranchCond::Lt),
        (5, BranchCond::Ge),
        (6, BranchCond::Ltu),
        (7, BranchCond::Geu),
    ];
    for (f3, c) in conds {
        assert_eq!(d(b_type(-4, 2, 1, f3)), Op::Branch { cond: c, rs1: 1, rs2: 2, imm: -4 });
    }
    assert_eq!(d(b_type(8, 2, 1, 2)), Op::Illegal);
    assert_eq!(d(b_type(8, 2, 1, 3)), Op::Illegal);
    let loads = [
        (0, Width::B, false),
        (1, Width::H, false),
        (2, Width::W, false),
        (3, Width::D, false),
        (4, Width::B, true),
        (5, Width::H, true),
        (6, Width::W, true),
    ];
    for (f3, w, u) in loads {
        assert_eq!(d(i_type(-3, 2, f3, 7, 0x03)), Op::Load { width: w, unsigned: u, rd: 7, rs1: 2, imm: -3 });
    }
    assert_eq!(d(i_type(0, 2, 7, 7, 0x03)), Op::Illegal, "no ldu");
    for (f3, w) in [(0, Width::B), (1, Width::H), (2, Width::W), (3, Width::D)] {
        assert_eq!(d(s_type(-33, 9, 2, f3, 0x23)), Op::Store { width: w, rs1: 2, rs2: 9, imm: -33 });
        assert_eq!(d(s_type(2047, 9, 2, f3, 0x23)), Op::Store { width: w, rs1: 2, rs2: 9, imm: 2047 });
    }
    assert_eq!(d(s_type(0, 9, 2, 4, 0x23)), Op::Illegal);
}

#[test]
fn rv64i_alu_and_shifts() {
    let imm_ops = [(2, AluOp::Slt), (3, AluOp::Sltu), (4, AluOp::Xor), (6, AluOp::Or), (7, AluOp::And)];
    for (f3, op) in imm_ops {
        assert_eq!(d(i_type(-5, 3, f3, 4, 0x13)), alui_op(op, false, 4, 3, -5));
    }
    // RV64 shifts take a 6-bit shamt; funct6 distinguishes srli/srai.
    assert_eq!(d(r_type(0, 63, 3, 1, 4, 0x13) | 1 << 25), alui_op(AluOp::Sll, false, 4, 3, 63));
    assert_eq!(d(r_type(0x20, 63, 3, 5, 4, 0x13) | 1 << 25), alui_op(AluOp::Sra, false, 4, 3, 63));
    assert_eq!(d(r_type(0, 31, 3, 5, 4, 0x13)), alui_op(AluOp::Srl, false, 4, 3, 31));
    assert_eq!(d(r_type(0x10, 1, 3, 1, 4, 0x13)), Op::Illegal, "slli with funct6 != 0");
    // W shifts: shamt[5] set is reserved.
    assert_eq!(d(r_type(0, 31, 3, 1, 4, 0x1b)), alui_op(AluOp::Sll, true, 4, 3, 31));
    assert_eq!(d(r_type(1, 0, 3, 1, 4, 0x1b)), Op::Illegal);
    assert_eq!(d(r_type(0, 5, 3, 5, 4, 0x1b)), alui_op(AluOp::Srl, true, 4, 3, 5));
    assert_eq!(d(r_type(0x20, 5, 3, 5, 4, 0x1b)), alui_op(AluOp::Sra, true, 4, 3, 5));
    assert_eq!(d(r_type(0x21, 5, 3, 5, 4, 0x1b)), Op::Illegal);
    assert_eq!(d(i_type(-1, 3, 0, 4, 0x1b)), alui_op(AluOp::Add, true, 4, 3, -1));
    for f3 in [2, 3, 4, 6, 7] {
        assert_eq!(d(i_type(0, 3, f3, 4, 0x1b)), Op::Illegal, "op-imm-32 f3={f3}");
    }
    let rr = [
        (0, 0, AluOp::Add),
        (0x20, 0, AluOp::Sub),
        (0, 1, AluOp::Sll),
        (0, 2, AluOp::Slt),
        (0, 3, AluOp::Sltu),
        (0, 4, AluOp::Xor),
        (0, 5, AluOp::Srl),
        (0x20, 5, AluOp::Sra),
        (0, 6, AluOp::Or),
        (0, 7, AluOp::And),
        (1, 0, AluOp::Mul),
        (1, 1, AluOp::Mulh),
        (1, 2, AluOp::Mulhsu),
        (1, 3, AluOp::Mulhu),
        (1, 4, AluOp::Div),
        (1, 5, AluOp::Divu),
        (1, 6, AluOp::Rem),
        (1, 7, AluOp::Remu),
    ];
    for (f7, f3, op) in rr {
        assert_eq!(d(r_type(f7, 5, 6, f3, 7, 0x33)), alu_op(op, false, 7, 6, 5), "{op:?}");
    }
    let rw = [
        (0, 0, AluOp::Add),
        (0x20, 0, AluOp::Sub),
        (0, 1, AluOp::Sll),
        (0, 5, AluOp::Srl),
        (0x20, 5, AluOp::Sra),
        (1, 0, AluOp::Mul),
        (1, 4, AluOp::Div),
        (1, 5, AluOp::Divu),
        (1, 6, AluOp::Rem),
        (1, 7, AluOp::Remu),
    ];
    for (f7, f3, op) in rw {
        assert_eq!(d(r_type(f7, 5, 6, f3, 7, 0x3b)), alu_op(op, true, 7, 6, 5), "{op:?}w");
    }
    for (f7, f3) in [(0, 2), (0, 3), (0, 4), (0, 6), (0, 7), (1, 1), (1, 2), (1, 3), (0x20, 1), (2, 0)] {
        assert_eq!(d(r_type(f7, 5, 6, f3, 7, 0x3b)), Op::Illegal, "op-32 f7={f7} f3={f3}");
    }
    assert_eq!(d(r_type(0x20, 5, 6, 1, 7, 0x33)), Op::Illegal);
}

#[test]
fn system_csr_and_fences() {
    assert_eq!(d(ECALL), Op::Ecall);
    assert_eq!(d(EBREAK), Op::Ebreak);
    assert_eq!(d(MRET), Op::Mret);
    assert_eq!(d(0x1020_0073), Op::Sret);
    assert_eq!(d(WFI), Op::Wfi);
    assert_eq!(d(r_type(9, 11, 10, 0, 0, 0x73)), Op::SfenceVma { rs1: 10, rs2: 11 });
    assert_eq!(d(ECALL | 1 << 7), Op::Illegal, "ecall with rd != 0");
    assert_eq!(d(0x0020_0073), Op::Illegal, "uret is not supported");
    assert_eq!(d(0x0ff0_000f), Op::Fence { pred: 0xf, succ: 0xf });
    assert_eq!(d(0x0230_000f), Op::Fence { pred: 2, succ: 3 });
    assert_eq!(d(0x0000_100f), Op::FenceI);
    assert_eq!(d(csrrw(1, 0x340, 2)), Op::Csr { op: CsrOp::Rw, imm: false, rd: 1, src: 2, csr: 0x340 });
    assert_eq!(d(csrrs(1, 0xfff, 2)), Op::Csr { op: CsrOp::Rs, imm: false, rd: 1, src: 2, csr: 0xfff });
    assert_eq!(d(csrrc(1, 0x300, 0)), Op::Csr { op: CsrOp::Rc, imm: false, rd: 1, src: 0, csr: 0x300 });
    assert_eq!(d(csrrwi(0, 0x300, 31)), Op::Csr { op: CsrOp::Rw, imm: true, rd: 0, src: 31, csr: 0x300 });
    assert_eq!(d(csrrsi(3, 0x300, 8)), Op::Csr { op: CsrOp::Rs, imm: true, rd: 3, src: 8, csr: 0x300 });
    assert_eq!(d(csrrci(3, 0x300, 8)), Op::Csr { op: CsrOp::Rc, imm: true, rd: 3, src: 8, csr: 0x300 });
    assert_eq!(d(i_type(0x300, 1, 4, 1, 0x73)), Op::Illegal, "system funct3 = 4");
}

#[test]
fn atomics() {
    assert_eq!(d(enc_amo(2, 2, 0, 11, 2, 10)), Op::Lr { width: Width::W, aq: true, rl: false, rd: 10, rs1: 11 });
    assert_eq!(d(enc_amo(2, 3, 0, 11, 3, 10)), Op::Lr { width: Width::D, aq: true, rl: true, rd: 10, rs1: 11 });
    assert_eq!(d(enc_amo(2, 0, 5, 11, 3, 10)), Op::Illegal, "lr with rs2 != 0");
    assert_eq!(
        d(enc_amo(3, 1, 12, 11, 2, 10)),
        Op::Sc { width: Width::W, aq: false, rl: true, rd: 10, rs1: 11, rs2: 12 }
    );
    let ops = [
        (1, AmoOp::Swap),
        (0, AmoOp::Add),
        (4, AmoOp::Xor),
        (0xc, AmoOp::And),
        (8, AmoOp::Or),
        (0x10, AmoOp::Min),
        (0x14, AmoOp::Max),
        (0x18, AmoOp::Minu),
        (0x1c, AmoOp::Maxu),
    ];
    for (f5, op) in ops {
        for (f3, w) in [(2, Width::W), (3, Width::D)] {
            assert_eq!(
                d(enc_amo(f5, 0, 12, 11, f3, 10)),
                Op::Amo { op, width: w, aq: false, rl: false, rd: 10, rs1: 11, rs2: 12 }
            );
        }
        assert_eq!(d(enc_amo(f5, 0, 12, 11, 1, 10)), Op::Illegal, "amo with funct3 = 1");
    }
    assert_eq!(d(enc_amo(0x1e, 0, 12, 11, 2, 10)), Op::Illegal);
}

/// Compressed encodings, each compared with its 32-bit expansion.
#[test]
fn compressed_expansions() {
    let cases: &[(u16, Op, &str)] = &[
        // c.addi4spn a0, sp, 1020 (nzuimm all ones but low bits)
        (0x1ff8, alui_op(AluOp::Add, false, 14, 2, 1020), "c.addi4spn"),
        (0x0028, alui_op(AluOp::Add, false, 10, 2, 8), "c.addi4spn"),
        // c.lw a0, 124(a1): uimm 124 = 0b1111100
        (0x5de8, Op::Load { width: Width::W, unsigned: false, rd: 10, rs1: 11, imm: 124 }, "c.lw"),
        (0x7de8, Op::Load { width: Width::D, unsigned: false, rd: 10, rs1: 11, imm: 248 }, "c.ld"),
        (0xdde8, Op::Store { width: Width::W, rs1: 11, rs2: 10, imm: 124 }, "c.sw"),
        (0xfde8, Op::Store { width: Width::D, rs1: 11, rs2: 10, imm: 248 }, "c.sd"),
        (0x0001, alui_op(AluOp::Add, false, 0, 0, 0), "c.nop"),
        (0x157d, alui_op(AluOp::Add, false, 10, 10, -1), "c.addi"),
        (0x0505, alui_op(AluOp::Add, false, 10, 10, 1), "c.addi"),
        (0x357d, alui_op(AluOp::Add, true, 10, 10, -1), "c.addiw"),
        (0x5541, alui_op(AluOp::Add, false, 10, 0, -16), "c.li"),
        (0x7139, alui_op(AluOp::Add, false, 2, 2, -64), "c.addi16sp"),
        (0x6105, alui_op(AluOp::Add, false, 2, 2, 32), "c.addi16sp"),
        (0x757d, Op::Lui { rd: 10, imm: -4096 }, "c.lui"),
        (0x6505, Op::Lui { rd: 10, imm: 0x1000 }, "c.lui"),
        (0x9105, alui_op(AluOp::Srl, false, 10, 10, 33), "c.srli"),
        (0x8505, alui_op(AluOp::Sra, false, 10, 10, 1), "c.srai"),
        (0x997d, alui_op(AluOp::And, false, 10, 10, -1), "c.andi"),
        (0x8d0d, alu_op(AluOp::Sub, false, 10, 10, 11), "c.sub"),
        (0x8d2d, alu_op(AluOp::Xor, false, 10, 10, 11), "c.xor"),
        (0x8d4d, alu_op(AluOp::Or, false, 10, 10, 11), "c.or"),
        (0x8d6d, alu_op(AluOp::And, false, 10, 10, 11), "c.and"),
        (0x9d0d, alu_op(AluOp::Sub, true, 10, 10, 11), "c.subw"),
        (0x9d2d, alu_op(AluOp::Add, true, 10, 10, 11), "c.addw"),
        (0xa001, Op::Jal { rd: 0, imm: 0 }, "c.j"),
        (0xbffd, Op::Jal { rd: 0, imm: -2 }, "c.j"),
        (0xaffd, Op::Jal { rd: 0, imm: 2046 }, "c.j"),
        (0xb001, Op::Jal { rd: 0, imm: -2048 }, "c.j"),
        (0xc101, Op::Branch { cond: BranchCond::Eq, rs1: 10, rs2: 0, imm: 0 }, "c.beqz"),
        (0xdd7d, Op::Branch { cond: BranchCond::Eq, rs1: 10, rs2: 0, imm: -2 }, "c.beqz"),
        (0xed7d, Op::Branch { cond: BranchCond::Ne, rs1: 10, rs2: 0, imm: 254 }, "c.bnez"),
        (0xf101, Op::Branch { cond: BranchCond::Ne, rs1: 10, rs2: 0, imm: -256 }, "c.bnez"),
        (0x1502, alui_op(AluOp::Sll, false, 10, 10, 32), "c.slli"),
        (0x050e, alui_op(AluOp::Sll, false, 10, 10, 3), "c.slli"),
        (0x50fe, Op::Load { width: Width::W, unsigned: false, rd: 1, rs1: 2, imm: 252 }, "c.lwsp"),
        (0x70fe, Op::Load { width: Width::D, unsigned: false, rd: 1, rs1: 2, imm: 504 }, "c.ldsp"),
        (0x8082, Op::Jalr { rd: 0, rs1: 1, imm: 0 }, "c.jr"),
        (0x852e, alu_op(AluOp::Add, false, 10, 0, 11), "c.mv"),
        (0x9002, Op::Ebreak, "c.ebreak"),
        (0x9502, Op::Jalr { rd: 1, rs1: 10, imm: 0 }, "c.jalr"),
        (0x952e, alu_op(AluOp::Add, false, 10, 10, 11), "c.add"),
        (0xdf86, Op::Store { width: Width::W, rs1: 2, rs2: 1, imm: 252 }, "c.swsp"),
        (0xff86, Op::Store { width: Width::D, rs1: 2, rs2: 1, imm: 504 }, "c.sdsp"),
    ];
    for &(p, ref op, name) in cases {
        assert_eq!(decode(p as u32), (*op, 2), "{name} {p:#06x}");
        assert_eq!(decode(0xdead_0000 | p as u32), (*op, 2), "upper bits ignored for {name}");
        assert_eq!(name_of(p as u32), Some(name), "{p:#06x}");
    }
}

#[test]
fn compressed_reserved_encodings() {
    let illegal: &[(u16, &str)] = &[
        (0x0000, "all-zero parcel"),
        (0x0010, "c.addi4spn imm 0, rd != 0"),
        (0x6101, "c.addi16sp imm 0"),
        (0x6501, "c.lui imm 0"),
        (0x2001, "c.addiw rd 0"),
        (0x2085, "c.addiw rd 1 ok?"),
        (0x4002, "c.lwsp rd 0"),
        (0x6002, "c.ldsp rd 0"),
        (0x8002, "c.jr rs1 0"),
        (0x9c41, "c.subw reserved 10"),
        (0x9c61, "c.subw reserved 11"),
        (0x8000, "q0 reserved funct3 100"),
    ];
    for &(p, what) in illegal {
        if what.ends_with("ok?") {
            assert_eq!(decode(p as u32).0, alui_op(AluOp::Add, true, 1, 1, 1), "{what}");
            continue;
        }
        assert_eq!(decode(p as u32), (Op::Illegal, 2), "{what}");
    }
}

/// An index per variant; the exhaustive match makes a new variant fail to
/// compile until it is covered here.
fn variant(op: &Op) -> usize {
    match op {
        Op::Illegal => 0,
        Op::Lui { .. } => 1,
        Op::Auipc { .. } => 2,
        Op::Jal { .. } => 3,
        Op::Jalr { .. } => 4,
        Op::Branch { .. } => 5,
        Op::Load { .. } => 6,
        Op::Store { .. } => 7,
        Op::AluImm { .. } => 8,
        Op::Alu { .. } => 9,
        Op::Fence { .. } => 10,
        Op::FenceI => 11,
        Op::Ecall => 12,
        Op::Ebreak => 13,
        Op::Mret => 14,
        Op::Sret => 15,
        Op::Wfi => 16,
        Op::SfenceVma { .. } => 17,
        Op::Csr { .. } => 18,
        Op::Lr { .. } => 19,
        Op::Sc { .. } => 20,
        Op::Amo { .. } => 21,
        Op::Fp(_) => 22,
        Op::Bit(_) => 23,
    }
}

#[test]
fn every_variant_and_table_line_is_reachable() {
    let mut seen = [false; 24];
    // Each table line's own match value decodes through that line.
    let mut x: u32 = 12345;
    let ext = crate::decode_ext::TABLE32_EXT.iter().chain(crate::decode_ext::TABLE16_EXT.iter());
    for e in TABLE32.iter().chain(TABLE16.iter()).chain(ext) {
        // Fill the don't-care bits at random until this line is the one that
        // matches (earlier, more specific lines shadow some fillings).
        let found = (0..1000).find_map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let insn = e.bits | (x & !e.mask & if e.mask <= 0xffff { 0xffff } else { u32::MAX });
            (name_of(insn) == Some(e.name)).then_some(insn)
        });
        let insn = found.unwrap_or_else(|| panic!("line {e:?} is shadowed"));
        seen[variant(&decode(insn).0)] = true;
    }
    seen[variant(&decode(0xffff_ffff).0)] = true;
    assert!(seen.iter().all(|&s| s), "{seen:?}");
}

/// Random words never panic the decoder or the translator, and every block validates.
#[test]
fn random_words_decode_and_translate() {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    let mut words = [0u32; 8];
    for _ in 0..200_000 {
        for w in words.iter_mut() {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            *w = (x >> 32) as u32;
        }
        let _ = decode(words[0]);
        let _ = crate::disas::format_op(&decode(words[1]).0, 0);
        // Privilege and FS (F/D legal or not) at random.
        let flags = (x >> 20) as u32 & 3 | ((x >> 24) as u32 & 3) << crate::cpu::tbflags::FS_SHIFT;
        let pc = 0x8000_0000u64 + ((x >> 8) & 0xffe);
        let mut fetch = |a: u64| {
            let off = a.wrapping_sub(pc) as usize / 2;
            let w = *words.get(off / 2).ok_or(kite_core::Fault { cause: 1, tval: a })?;
            Ok(if off % 2 == 0 { w as u16 } else { (w >> 16) as u16 })
        };
        let mut b = kite_ir::Builder::new(pc);
        crate::translate::translate_block(pc, flags, kite_core::guest::TbLimits { max_insns: 16 }, &mut fetch, &mut b);
        let blk = b.finish();
        assert_eq!(blk.validate(), Ok(()), "{words:x?}");
        assert!(blk.ninsns >= 1);
    }
}
