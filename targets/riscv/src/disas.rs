//! Disassembler: [`Op`] to text in the style of `objdump -M no-aliases`
//! (ABI register names, comma-separated operands without spaces, branch and
//! jump targets as absolute addresses). Compressed instructions print as their
//! 32-bit expansion (the table name, e.g. `c.addi`, is available from
//! [`crate::decode::name_of`]).

use std::fmt::Write as _;

use crate::csr;
use crate::decode::{decode, insn_len, AluOp, AmoOp, BranchCond, CsrOp, Op};

/// ABI names of x0..x31.
pub const REG_NAMES: [&str; 32] = [
    "zero", "ra", "sp", "gp", "tp", "t0", "t1", "t2", "s0", "s1", "a0", "a1", "a2", "a3", "a4", "a5", "a6", "a7", "s2",
    "s3", "s4", "s5", "s6", "s7", "s8", "s9", "s10", "s11", "t3", "t4", "t5", "t6",
];

fn r(n: u8) -> &'static str {
    REG_NAMES[n as usize & 31]
}

fn alu_name(op: AluOp) -> &'static str {
    match op {
        AluOp::Add => "add",
        AluOp::Sub => "sub",
        AluOp::Sll => "sll",
        AluOp::Slt => "slt",
        AluOp::Sltu => "sltu",
        AluOp::Xor => "xor",
        AluOp::Srl => "srl",
        AluOp::Sra => "sra",
        AluOp::Or => "or",
        AluOp::And => "and",
        AluOp::Mul => "mul",
        AluOp::Mulh => "mulh",
        AluOp::Mulhsu => "mulhsu",
        AluOp::Mulhu => "mulhu",
        AluOp::Div => "div",
        AluOp::Divu => "divu",
        AluOp::Rem => "rem",
        AluOp::Remu => "remu",
    }
}

fn amo_name(op: AmoOp) -> &'static str {
    match op {
        AmoOp::Swap => "amoswap",
        AmoOp::Add => "amoadd",
        AmoOp::Xor => "amoxor",
        AmoOp::And => "amoand",
        AmoOp::Or => "amoor",
        AmoOp::Min => "amomin",
        AmoOp::Max => "amomax",
        AmoOp::Minu => "amominu",
        AmoOp::Maxu => "amomaxu",
    }
}

fn ordering(aq: bool, rl: bool) -> &'static str {
    match (aq, rl) {
        (false, false) => "",
        (true, false) => ".aq",
        (false, true) => ".rl",
        (true, true) => ".aqrl",
    }
}

fn fence_set(bits: u8) -> String {
    let mut s = String::new();
    for (bit, c) in [(8, 'i'), (4, 'o'), (2, 'r'), (1, 'w')] {
        if bits & bit != 0 {
            s.push(c);
        }
    }
    if s.is_empty() {
        s.push('0');
    }
    s
}

fn csr_name(num: u16) -> String {
    csr::name(num).unwrap_or_else(|| format!("{num:#x}"))
}

/// Format one decoded instruction at `pc`.
pub fn format_op(op: &Op, pc: u64) -> String {
    let target = |imm: i64| pc.wrapping_add(imm as u64);
    match *op {
        Op::Illegal => "(illegal)".to_string(),
        Op::Lui { rd, imm } => format!("lui {},{:#x}", r(rd), (imm as u64 >> 12) & 0xf_ffff),
        Op::Auipc { rd, imm } => format!("auipc {},{:#x}", r(rd), (imm as u64 >> 12) & 0xf_ffff),
        Op::Jal { rd, imm } => format!("jal {},{:#x}", r(rd), target(imm)),
        Op::Jalr { rd, rs1, imm } => format!("jalr {},{}({})", r(rd), imm, r(rs1)),
        Op::Branch { cond, rs1, rs2, imm } => {
            let n = match cond {
                BranchCond::Eq => "beq",
                BranchCond::Ne => "bne",
                BranchCond::Lt => "blt",
                BranchCond::Ge => "bge",
                BranchCond::Ltu => "bltu",
                BranchCond::Geu => "bgeu",
            };
            format!("{n} {},{},{:#x}", r(rs1), r(rs2), target(imm))
        }
        Op::Load { width, unsigned, rd, rs1, imm } => {
            format!("l{}{} {},{}({})", width.suffix(), if unsigned { "u" } else { "" }, r(rd), imm, r(rs1))
        }
        Op::Store { width, rs1, rs2, imm } => format!("s{} {},{}({})", width.suffix(), r(rs2), imm, r(rs1)),
        Op::AluImm { op, word, rd, rs1, imm } => {
            let w = if word { "w" } else { "" };
            match op {
                AluOp::Sll | AluOp::Srl | AluOp::Sra => {
                    format!("{}i{w} {},{},{:#x}", alu_name(op), r(rd), r(rs1), imm)
                }
                AluOp::Sltu => format!("sltiu {},{},{}", r(rd), r(rs1), imm),
                _ => format!("{}i{w} {},{},{}", alu_name(op), r(rd), r(rs1), imm),
            }
        }
        Op::Alu { op, word, rd, rs1, rs2 } => {
            format!("{}{} {},{},{}", alu_name(op), if word { "w" } else { "" }, r(rd), r(rs1), r(rs2))
        }
        Op::Fence { pred, succ } => format!("fence {},{}", fence_set(pred), fence_set(succ)),
        Op::FenceI => "fence.i".to_string(),
        Op::Ecall => "ecall".to_string(),
        Op::Ebreak => "ebreak".to_string(),
        Op::Mret => "mret".to_string(),
        Op::Sret => "sret".to_string(),
        Op::Wfi => "wfi".to_string(),
        Op::SfenceVma { rs1, rs2 } => format!("sfence.vma {},{}", r(rs1), r(rs2)),
        Op::Csr { op, imm, rd, src, csr } => {
            let n = match op {
                CsrOp::Rw => "csrrw",
                CsrOp::Rs => "csrrs",
                CsrOp::Rc => "csrrc",
            };
            if imm {
                format!("{n}i {},{},{}", r(rd), csr_name(csr), src)
            } else {
                format!("{n} {},{},{}", r(rd), csr_name(csr), r(src))
            }
        }
        Op::Lr { width, aq, rl, rd, rs1 } => {
            format!("lr.{}{} {},({})", width.suffix(), ordering(aq, rl), r(rd), r(rs1))
        }
        Op::Sc { width, aq, rl, rd, rs1, rs2 } => {
            format!("sc.{}{} {},{},({})", width.suffix(), ordering(aq, rl), r(rd), r(rs2), r(rs1))
        }
        Op::Amo { op, width, aq, rl, rd, rs1, rs2 } => {
            format!("{}.{}{} {},{},({})", amo_name(op), width.suffix(), ordering(aq, rl), r(rd), r(rs2), r(rs1))
        }
        Op::Fp(ref f) => crate::decode_ext::format_fp(f),
        Op::Bit(ref i) => crate::decode_ext::format_bit(i),
    }
}

/// Disassemble the instruction at the start of `bytes` (guest code at `pc`):
/// the text and the number of bytes consumed.
pub fn disassemble_bytes(pc: u64, bytes: &[u8]) -> (String, usize) {
    let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
        return ("(truncated)".to_string(), bytes.len());
    };
    let lo = u16::from_le_bytes([b0, b1]);
    let len = insn_len(lo) as usize;
    let insn = if len == 4 {
        match bytes.get(2..4) {
            Some(hi) => lo as u32 | (u16::from_le_bytes([hi[0], hi[1]]) as u32) << 16,
            None => return ("(truncated)".to_string(), bytes.len()),
        }
    } else {
        lo as u32
    };
    let (op, _) = decode(insn);
    let mut s = format_op(&op, pc);
    if op == Op::Illegal {
        let _ = write!(s, " {insn:#0w$x}", w = len * 2 + 2);
    }
    (s, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dis(insn: u32, pc: u64) -> String {
        format_op(&decode(insn).0, pc)
    }

    #[test]
    fn formats_like_objdump_no_aliases() {
        assert_eq!(dis(0x00150513, 0), "addi a0,a0,1");
        assert_eq!(dis(0x00813503, 0), "ld a0,8(sp)");
        assert_eq!(dis(0x00a13423, 0), "sd a0,8(sp)");
        assert_eq!(dis(0x123452b7, 0), "lui t0,0x12345");
        assert_eq!(dis(0x00351513, 0), "slli a0,a0,0x3");
        assert_eq!(dis(0x34059573, 0), "csrrw a0,mscratch,a1");
        assert_eq!(dis(0x3004d073, 0), "csrrwi zero,mstatus,9");
        assert_eq!(dis(0x0ff0000f, 0), "fence iorw,iorw");
        assert_eq!(dis(0x00b50463, 0x8000_0000), "beq a0,a1,0x80000008");
        assert_eq!(dis(0x04c5a52f, 0), "amoadd.w.aq a0,a2,(a1)");
        assert_eq!(dis(0x1005b52f, 0), "lr.d a0,(a1)");
        assert_eq!(dis(0x000000ef, 0x1000), "jal ra,0x1000");
    }

    #[test]
    fn bytes_and_compressed() {
        let (s, n) = disassemble_bytes(0, &[0x05, 0x05]);
        assert_eq!((s.as_str(), n), ("addi a0,a0,1", 2));
        let (s, n) = disassemble_bytes(0, &[0x13, 0x05, 0x15, 0x00]);
        assert_eq!((s.as_str(), n), ("addi a0,a0,1", 4));
        assert_eq!(disassemble_bytes(0, &[0x13, 0x05]).0, "(truncated)");
        assert_eq!(disassemble_bytes(0, &[0x13]).0, "(truncated)");
        assert_eq!(disassemble_bytes(0, &[0, 0]).0, "(illegal) 0x0000");
    }
}
