//! The RISC-V instruction decoder: one table for 32-bit encodings, one for
//! compressed (RVC, RV64 variant) encodings, both producing the same [`Op`].
//!
//! Each table line is `{name, mask, match, constructor}` in the style of QEMU's
//! `insn32.decode`; the first line whose `insn & mask == match` wins, so more
//! specific lines (e.g. `c.nop` before `c.addi`) come first. Constructors
//! extract the fields and reject reserved encodings by returning
//! [`Op::Illegal`]. Compressed instructions are expanded into the `Op` of their
//! 32-bit equivalent; the caller learns the length from [`decode`].
//!
//! Pure and allocation-free: any 32-bit word decodes to something (never panics).
//! F/D and bitmanip encodings live in `decode_ext` (looked up after these tables).

use kite_ir::MemSize;

/// A general-purpose register number (0..=31).
pub type Reg = u8;

/// Memory access width of a load, store or atomic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    B,
    H,
    W,
    D,
}

impl Width {
    pub fn mem_size(self) -> MemSize {
        match self {
            Width::B => MemSize::B1,
            Width::H => MemSize::B2,
            Width::W => MemSize::B4,
            Width::D => MemSize::B8,
        }
    }
    pub fn suffix(self) -> &'static str {
        match self {
            Width::B => "b",
            Width::H => "h",
            Width::W => "w",
            Width::D => "d",
        }
    }
}

/// Conditional-branch comparisons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BranchCond {
    Eq,
    Ne,
    Lt,
    Ge,
    Ltu,
    Geu,
}

/// Integer ALU operations (OP, OP-IMM, OP-32, OP-IMM-32 and the M extension).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
}

/// AMO read-modify-write operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmoOp {
    Swap,
    Add,
    Xor,
    And,
    Or,
    Min,
    Max,
    Minu,
    Maxu,
}

/// Zicsr operation kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CsrOp {
    /// csrrw / csrrwi
    Rw,
    /// csrrs / csrrsi
    Rs,
    /// csrrc / csrrci
    Rc,
}

/// A decoded instruction. Immediates are sign-extended to i64 (already
/// shifted into place, e.g. `Lui::imm` is the final value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Reserved or unsupported encoding: raises illegal instruction.
    Illegal,
    Lui {
        rd: Reg,
        imm: i64,
    },
    Auipc {
        rd: Reg,
        imm: i64,
    },
    Jal {
        rd: Reg,
        imm: i64,
    },
    Jalr {
        rd: Reg,
        rs1: Reg,
        imm: i64,
    },
    Branch {
        cond: BranchCond,
        rs1: Reg,
        rs2: Reg,
        imm: i64,
    },
    Load {
        width: Width,
        unsigned: bool,
        rd: Reg,
        rs1: Reg,
        imm: i64,
    },
    Store {
        width: Width,
        rs1: Reg,
        rs2: Reg,
        imm: i64,
    },
    /// Register-immediate ALU op; `word` selects the RV64 *W form (32-bit
    /// operation, result sign-extended). Shifts carry the shamt in `imm`.
    AluImm {
        op: AluOp,
        word: bool,
        rd: Reg,
        rs1: Reg,
        imm: i64,
    },
    /// Register-register ALU op (including M); `word` as for `AluImm`.
    Alu {
        op: AluOp,
        word: bool,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    Fence {
        pred: u8,
        succ: u8,
    },
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Sret,
    Wfi,
    SfenceVma {
        rs1: Reg,
        rs2: Reg,
    },
    /// Zicsr. With `imm`, `src` is the 5-bit zero-extended immediate,
    /// otherwise the source register.
    Csr {
        op: CsrOp,
        imm: bool,
        rd: Reg,
        src: u8,
        csr: u16,
    },
    Lr {
        width: Width,
        aq: bool,
        rl: bool,
        rd: Reg,
        rs1: Reg,
    },
    Sc {
        width: Width,
        aq: bool,
        rl: bool,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    Amo {
        op: AmoOp,
        width: Width,
        aq: bool,
        rl: bool,
        rd: Reg,
        rs1: Reg,
        rs2: Reg,
    },
    /// F/D instructions (see `decode_ext`).
    Fp(crate::decode_ext::FpInsn),
    /// Zba/Zbb/Zbs/Zicond/Zicbom/Zicboz (see `decode_ext`).
    Bit(crate::decode_ext::BitInsn),
}

/// One decode-table line.
#[derive(Clone, Copy)]
pub struct Entry {
    pub name: &'static str,
    pub mask: u32,
    pub bits: u32,
    pub ctor: fn(u32) -> Op,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:08x}/{:08x}", self.name, self.bits, self.mask)
    }
}

macro_rules! e {
    ($name:literal, $mask:expr, $bits:expr, $ctor:expr) => {
        Entry { name: $name, mask: $mask, bits: $bits, ctor: $ctor }
    };
}

// ---- 32-bit field extraction ----

fn rd(i: u32) -> Reg {
    ((i >> 7) & 31) as Reg
}
fn rs1(i: u32) -> Reg {
    ((i >> 15) & 31) as Reg
}
fn rs2(i: u32) -> Reg {
    ((i >> 20) & 31) as Reg
}
fn imm_i(i: u32) -> i64 {
    ((i as i32) >> 20) as i64
}
fn imm_s(i: u32) -> i64 {
    ((((i as i32) >> 25) << 5) | ((i >> 7) & 31) as i32) as i64
}
fn imm_b(i: u32) -> i64 {
    let v = (((i as i32) >> 31) << 12)
        | (((i >> 7) & 1) << 11) as i32
        | (((i >> 25) & 0x3f) << 5) as i32
        | (((i >> 8) & 0xf) << 1) as i32;
    v as i64
}
fn imm_u(i: u32) -> i64 {
    (i & 0xffff_f000) as i32 as i64
}
fn imm_j(i: u32) -> i64 {
    let v = (((i as i32) >> 31) << 20)
        | (((i >> 12) & 0xff) << 12) as i32
        | (((i >> 20) & 1) << 11) as i32
        | (((i >> 21) & 0x3ff) << 1) as i32;
    v as i64
}

fn branch(i: u32, cond: BranchCond) -> Op {
    Op::Branch { cond, rs1: rs1(i), rs2: rs2(i), imm: imm_b(i) }
}
fn load(i: u32, width: Width, unsigned: bool) -> Op {
    Op::Load { width, unsigned, rd: rd(i), rs1: rs1(i), imm: imm_i(i) }
}
fn store(i: u32, width: Width) -> Op {
    Op::Store { width, rs1: rs1(i), rs2: rs2(i), imm: imm_s(i) }
}
fn alui(i: u32, op: AluOp, word: bool) -> Op {
    Op::AluImm { op, word, rd: rd(i), rs1: rs1(i), imm: imm_i(i) }
}
/// Shift by immediate: 6-bit shamt for RV64 shifts, 5-bit for *W forms (the
/// mask in the table already rejects shamt[5] = 1 for the W forms).
fn shifti(i: u32, op: AluOp, word: bool) -> Op {
    let shamt = (i >> 20) & if word { 0x1f } else { 0x3f };
    Op::AluImm { op, word, rd: rd(i), rs1: rs1(i), imm: shamt as i64 }
}
fn alu(i: u32, op: AluOp, word: bool) -> Op {
    Op::Alu { op, word, rd: rd(i), rs1: rs1(i), rs2: rs2(i) }
}
fn csr(i: u32, op: CsrOp, imm: bool) -> Op {
    Op::Csr { op, imm, rd: rd(i), src: rs1(i), csr: (i >> 20) as u16 }
}
fn aq(i: u32) -> bool {
    i & (1 << 26) != 0
}
fn rl(i: u32) -> bool {
    i & (1 << 25) != 0
}
fn lr(i: u32, width: Width) -> Op {
    Op::Lr { width, aq: aq(i), rl: rl(i), rd: rd(i), rs1: rs1(i) }
}
fn sc(i: u32, width: Width) -> Op {
    Op::Sc { width, aq: aq(i), rl: rl(i), rd: rd(i), rs1: rs1(i), rs2: rs2(i) }
}
fn amo(i: u32, op: AmoOp, width: Width) -> Op {
    Op::Amo { op, width, aq: aq(i), rl: rl(i), rd: rd(i), rs1: rs1(i), rs2: rs2(i) }
}

const M_OPC: u32 = 0x707f; // funct3 + opcode
const M_R: u32 = 0xfe00_707f; // funct7 + funct3 + opcode
const M_SH64: u32 = 0xfc00_707f; // funct6 + funct3 + opcode
const M_AMO: u32 = 0xf800_707f; // funct5 + funct3 + opcode
const M_LR: u32 = 0xf9f0_707f; // funct5 + rs2 + funct3 + opcode

/// The 32-bit decode table (RV64I, M, A, Zicsr, Zifencei, privileged).
pub static TABLE32: &[Entry] = &[
    e!("lui", 0x7f, 0x37, |i| Op::Lui { rd: rd(i), imm: imm_u(i) }),
    e!("auipc", 0x7f, 0x17, |i| Op::Auipc { rd: rd(i), imm: imm_u(i) }),
    e!("jal", 0x7f, 0x6f, |i| Op::Jal { rd: rd(i), imm: imm_j(i) }),
    e!("jalr", M_OPC, 0x67, |i| Op::Jalr { rd: rd(i), rs1: rs1(i), imm: imm_i(i) }),
    e!("beq", M_OPC, 0x0063, |i| branch(i, BranchCond::Eq)),
    e!("bne", M_OPC, 0x1063, |i| branch(i, BranchCond::Ne)),
    e!("blt", M_OPC, 0x4063, |i| branch(i, BranchCond::Lt)),
    e!("bge", M_OPC, 0x5063, |i| branch(i, BranchCond::Ge)),
    e!("bltu", M_OPC, 0x6063, |i| branch(i, BranchCond::Ltu)),
    e!("bgeu", M_OPC, 0x7063, |i| branch(i, BranchCond::Geu)),
    e!("lb", M_OPC, 0x0003, |i| load(i, Width::B, false)),
    e!("lh", M_OPC, 0x1003, |i| load(i, Width::H, false)),
    e!("lw", M_OPC, 0x2003, |i| load(i, Width::W, false)),
    e!("ld", M_OPC, 0x3003, |i| load(i, Width::D, false)),
    e!("lbu", M_OPC, 0x4003, |i| load(i, Width::B, true)),
    e!("lhu", M_OPC, 0x5003, |i| load(i, Width::H, true)),
    e!("lwu", M_OPC, 0x6003, |i| load(i, Width::W, true)),
    e!("sb", M_OPC, 0x0023, |i| store(i, Width::B)),
    e!("sh", M_OPC, 0x1023, |i| store(i, Width::H)),
    e!("sw", M_OPC, 0x2023, |i| store(i, Width::W)),
    e!("sd", M_OPC, 0x3023, |i| store(i, Width::D)),
    e!("addi", M_OPC, 0x0013, |i| alui(i, AluOp::Add, false)),
    e!("slti", M_OPC, 0x2013, |i| alui(i, AluOp::Slt, false)),
    e!("sltiu", M_OPC, 0x3013, |i| alui(i, AluOp::Sltu, false)),
    e!("xori", M_OPC, 0x4013, |i| alui(i, AluOp::Xor, false)),
    e!("ori", M_OPC, 0x6013, |i| alui(i, AluOp::Or, false)),
    e!("andi", M_OPC, 0x7013, |i| alui(i, AluOp::And, false)),
    e!("slli", M_SH64, 0x1013, |i| shifti(i, AluOp::Sll, false)),
    e!("srli", M_SH64, 0x5013, |i| shifti(i, AluOp::Srl, false)),
    e!("srai", M_SH64, 0x4000_5013, |i| shifti(i, AluOp::Sra, false)),
    e!("add", M_R, 0x0033, |i| alu(i, AluOp::Add, false)),
    e!("sub", M_R, 0x4000_0033, |i| alu(i, AluOp::Sub, false)),
    e!("sll", M_R, 0x1033, |i| alu(i, AluOp::Sll, false)),
    e!("slt", M_R, 0x2033, |i| alu(i, AluOp::Slt, false)),
    e!("sltu", M_R, 0x3033, |i| alu(i, AluOp::Sltu, false)),
    e!("xor", M_R, 0x4033, |i| alu(i, AluOp::Xor, false)),
    e!("srl", M_R, 0x5033, |i| alu(i, AluOp::Srl, false)),
    e!("sra", M_R, 0x4000_5033, |i| alu(i, AluOp::Sra, false)),
    e!("or", M_R, 0x6033, |i| alu(i, AluOp::Or, false)),
    e!("and", M_R, 0x7033, |i| alu(i, AluOp::And, false)),
    e!("mul", M_R, 0x0200_0033, |i| alu(i, AluOp::Mul, false)),
    e!("mulh", M_R, 0x0200_1033, |i| alu(i, AluOp::Mulh, false)),
    e!("mulhsu", M_R, 0x0200_2033, |i| alu(i, AluOp::Mulhsu, false)),
    e!("mulhu", M_R, 0x0200_3033, |i| alu(i, AluOp::Mulhu, false)),
    e!("div", M_R, 0x0200_4033, |i| alu(i, AluOp::Div, false)),
    e!("divu", M_R, 0x0200_5033, |i| alu(i, AluOp::Divu, false)),
    e!("rem", M_R, 0x0200_6033, |i| alu(i, AluOp::Rem, false)),
    e!("remu", M_R, 0x0200_7033, |i| alu(i, AluOp::Remu, false)),
    e!("addiw", M_OPC, 0x001b, |i| alui(i, AluOp::Add, true)),
    e!("slliw", M_R, 0x101b, |i| shifti(i, AluOp::Sll, true)),
    e!("srliw", M_R, 0x501b, |i| shifti(i, AluOp::Srl, true)),
    e!("sraiw", M_R, 0x4000_501b, |i| shifti(i, AluOp::Sra, true)),
    e!("addw", M_R, 0x003b, |i| alu(i, AluOp::Add, true)),
    e!("subw", M_R, 0x4000_003b, |i| alu(i, AluOp::Sub, true)),
    e!("sllw", M_R, 0x103b, |i| alu(i, AluOp::Sll, true)),
    e!("srlw", M_R, 0x503b, |i| alu(i, AluOp::Srl, true)),
    e!("sraw", M_R, 0x4000_503b, |i| alu(i, AluOp::Sra, true)),
    e!("mulw", M_R, 0x0200_003b, |i| alu(i, AluOp::Mul, true)),
    e!("divw", M_R, 0x0200_403b, |i| alu(i, AluOp::Div, true)),
    e!("divuw", M_R, 0x0200_503b, |i| alu(i, AluOp::Divu, true)),
    e!("remw", M_R, 0x0200_603b, |i| alu(i, AluOp::Rem, true)),
    e!("remuw", M_R, 0x0200_703b, |i| alu(i, AluOp::Remu, true)),
    // fence: fm/rs1/rd are reserved-for-future and ignored (as QEMU does).
    e!("fence", M_OPC, 0x000f, |i| Op::Fence { pred: ((i >> 24) & 0xf) as u8, succ: ((i >> 20) & 0xf) as u8 }),
    e!("fence.i", M_OPC, 0x100f, |_| Op::FenceI),
    e!("ecall", 0xffff_ffff, 0x0000_0073, |_| Op::Ecall),
    e!("ebreak", 0xffff_ffff, 0x0010_0073, |_| Op::Ebreak),
    e!("sret", 0xffff_ffff, 0x1020_0073, |_| Op::Sret),
    e!("mret", 0xffff_ffff, 0x3020_0073, |_| Op::Mret),
    e!("wfi", 0xffff_ffff, 0x1050_0073, |_| Op::Wfi),
    e!("sfence.vma", 0xfe00_7fff, 0x1200_0073, |i| Op::SfenceVma { rs1: rs1(i), rs2: rs2(i) }),
    e!("csrrw", M_OPC, 0x1073, |i| csr(i, CsrOp::Rw, false)),
    e!("csrrs", M_OPC, 0x2073, |i| csr(i, CsrOp::Rs, false)),
    e!("csrrc", M_OPC, 0x3073, |i| csr(i, CsrOp::Rc, false)),
    e!("csrrwi", M_OPC, 0x5073, |i| csr(i, CsrOp::Rw, true)),
    e!("csrrsi", M_OPC, 0x6073, |i| csr(i, CsrOp::Rs, true)),
    e!("csrrci", M_OPC, 0x7073, |i| csr(i, CsrOp::Rc, true)),
    e!("lr.w", M_LR, 0x1000_202f, |i| lr(i, Width::W)),
    e!("sc.w", M_AMO, 0x1800_202f, |i| sc(i, Width::W)),
    e!("amoswap.w", M_AMO, 0x0800_202f, |i| amo(i, AmoOp::Swap, Width::W)),
    e!("amoadd.w", M_AMO, 0x0000_202f, |i| amo(i, AmoOp::Add, Width::W)),
    e!("amoxor.w", M_AMO, 0x2000_202f, |i| amo(i, AmoOp::Xor, Width::W)),
    e!("amoand.w", M_AMO, 0x6000_202f, |i| amo(i, AmoOp::And, Width::W)),
    e!("amoor.w", M_AMO, 0x4000_202f, |i| amo(i, AmoOp::Or, Width::W)),
    e!("amomin.w", M_AMO, 0x8000_202f, |i| amo(i, AmoOp::Min, Width::W)),
    e!("amomax.w", M_AMO, 0xa000_202f, |i| amo(i, AmoOp::Max, Width::W)),
    e!("amominu.w", M_AMO, 0xc000_202f, |i| amo(i, AmoOp::Minu, Width::W)),
    e!("amomaxu.w", M_AMO, 0xe000_202f, |i| amo(i, AmoOp::Maxu, Width::W)),
    e!("lr.d", M_LR, 0x1000_302f, |i| lr(i, Width::D)),
    e!("sc.d", M_AMO, 0x1800_302f, |i| sc(i, Width::D)),
    e!("amoswap.d", M_AMO, 0x0800_302f, |i| amo(i, AmoOp::Swap, Width::D)),
    e!("amoadd.d", M_AMO, 0x0000_302f, |i| amo(i, AmoOp::Add, Width::D)),
    e!("amoxor.d", M_AMO, 0x2000_302f, |i| amo(i, AmoOp::Xor, Width::D)),
    e!("amoand.d", M_AMO, 0x6000_302f, |i| amo(i, AmoOp::And, Width::D)),
    e!("amoor.d", M_AMO, 0x4000_302f, |i| amo(i, AmoOp::Or, Width::D)),
    e!("amomin.d", M_AMO, 0x8000_302f, |i| amo(i, AmoOp::Min, Width::D)),
    e!("amomax.d", M_AMO, 0xa000_302f, |i| amo(i, AmoOp::Max, Width::D)),
    e!("amominu.d", M_AMO, 0xc000_302f, |i| amo(i, AmoOp::Minu, Width::D)),
    e!("amomaxu.d", M_AMO, 0xe000_302f, |i| amo(i, AmoOp::Maxu, Width::D)),
];

// ---- RVC field extraction (i holds the 16-bit parcel) ----

/// rd'/rs2' in bits 4:2 (x8..x15).
fn rdp(i: u32) -> Reg {
    (((i >> 2) & 7) + 8) as Reg
}
/// rs1'/rd' in bits 9:7 (x8..x15).
fn rs1p(i: u32) -> Reg {
    (((i >> 7) & 7) + 8) as Reg
}
/// Full rd/rs1 in bits 11:7.
fn crd(i: u32) -> Reg {
    ((i >> 7) & 31) as Reg
}
/// Full rs2 in bits 6:2.
fn crs2(i: u32) -> Reg {
    ((i >> 2) & 31) as Reg
}
/// Sign-extend the low `bits` bits of `v`.
fn sext(v: u32, bits: u32) -> i64 {
    ((v as i64) << (64 - bits)) >> (64 - bits)
}
/// CI-format 6-bit signed immediate: imm[5] at 12, imm[4:0] at 6:2.
fn ci_imm(i: u32) -> i64 {
    sext(((i >> 7) & 0x20) | ((i >> 2) & 0x1f), 6)
}
/// 6-bit shift amount of c.slli/c.srli/c.srai.
fn ci_shamt(i: u32) -> i64 {
    (((i >> 7) & 0x20) | ((i >> 2) & 0x1f)) as i64
}
/// c.lw/c.sw offset: uimm[5:3] at 12:10, uimm[2] at 6, uimm[6] at 5.
fn cl_w_imm(i: u32) -> i64 {
    (((i >> 7) & 0x38) | ((i >> 4) & 4) | ((i << 1) & 0x40)) as i64
}
/// c.ld/c.sd offset: uimm[5:3] at 12:10, uimm[7:6] at 6:5.
fn cl_d_imm(i: u32) -> i64 {
    (((i >> 7) & 0x38) | ((i << 1) & 0xc0)) as i64
}
/// c.j offset: [11|4|9:8|10|6|7|3:1|5] in bits 12:2.
fn cj_imm(i: u32) -> i64 {
    let v = ((i >> 1) & 0x800)
        | ((i >> 7) & 0x10)
        | ((i >> 1) & 0x300)
        | ((i << 2) & 0x400)
        | ((i >> 1) & 0x40)
        | ((i << 1) & 0x80)
        | ((i >> 2) & 0xe)
        | ((i << 3) & 0x20);
    sext(v, 12)
}
/// c.beqz/c.bnez offset: [8|4:3] in 12:10, [7:6|2:1|5] in 6:2.
fn cb_imm(i: u32) -> i64 {
    let v = ((i >> 4) & 0x100) | ((i >> 7) & 0x18) | ((i << 1) & 0xc0) | ((i >> 2) & 6) | ((i << 3) & 0x20);
    sext(v, 9)
}

fn c_addi4spn(i: u32) -> Op {
    let imm = ((i >> 7) & 0x30) | ((i >> 1) & 0x3c0) | ((i >> 4) & 4) | ((i >> 2) & 8);
    if imm == 0 {
        return Op::Illegal; // includes the all-zero parcel
    }
    Op::AluImm { op: AluOp::Add, word: false, rd: rdp(i), rs1: 2, imm: imm as i64 }
}
fn c_addiw(i: u32) -> Op {
    match crd(i) {
        0 => Op::Illegal,
        r => Op::AluImm { op: AluOp::Add, word: true, rd: r, rs1: r, imm: ci_imm(i) },
    }
}
fn c_addi16sp(i: u32) -> Op {
    let v = ((i >> 3) & 0x200) | ((i >> 2) & 0x10) | ((i << 1) & 0x40) | ((i << 4) & 0x180) | ((i << 3) & 0x20);
    match sext(v, 10) {
        0 => Op::Illegal,
        imm => Op::AluImm { op: AluOp::Add, word: false, rd: 2, rs1: 2, imm },
    }
}
fn c_lui(i: u32) -> Op {
    match sext(((i << 5) & 0x2_0000) | ((i << 10) & 0x1_f000), 18) {
        0 => Op::Illegal,
        imm => Op::Lui { rd: crd(i), imm },
    }
}
fn c_arith(i: u32, op: AluOp, word: bool) -> Op {
    Op::Alu { op, word, rd: rs1p(i), rs1: rs1p(i), rs2: rdp(i) }
}
fn c_lwsp(i: u32) -> Op {
    let imm = ((i >> 7) & 0x20) | ((i >> 2) & 0x1c) | ((i << 4) & 0xc0);
    match crd(i) {
        0 => Op::Illegal,
        r => Op::Load { width: Width::W, unsigned: false, rd: r, rs1: 2, imm: imm as i64 },
    }
}
fn c_ldsp(i: u32) -> Op {
    let imm = ((i >> 7) & 0x20) | ((i >> 2) & 0x18) | ((i << 4) & 0x1c0);
    match crd(i) {
        0 => Op::Illegal,
        r => Op::Load { width: Width::D, unsigned: false, rd: r, rs1: 2, imm: imm as i64 },
    }
}
fn c_jr(i: u32) -> Op {
    match crd(i) {
        0 => Op::Illegal,
        r => Op::Jalr { rd: 0, rs1: r, imm: 0 },
    }
}

const CM3: u32 = 0xe003; // funct3 + quadrant

/// The compressed decode table (RV64C; F/D forms are illegal for now).
pub static TABLE16: &[Entry] = &[
    // Quadrant 0
    e!("c.addi4spn", CM3, 0x0000, c_addi4spn),
    e!("c.lw", CM3, 0x4000, |i| Op::Load {
        width: Width::W,
        unsigned: false,
        rd: rdp(i),
        rs1: rs1p(i),
        imm: cl_w_imm(i)
    }),
    e!("c.ld", CM3, 0x6000, |i| Op::Load {
        width: Width::D,
        unsigned: false,
        rd: rdp(i),
        rs1: rs1p(i),
        imm: cl_d_imm(i)
    }),
    e!("c.sw", CM3, 0xc000, |i| Op::Store { width: Width::W, rs1: rs1p(i), rs2: rdp(i), imm: cl_w_imm(i) }),
    e!("c.sd", CM3, 0xe000, |i| Op::Store { width: Width::D, rs1: rs1p(i), rs2: rdp(i), imm: cl_d_imm(i) }),
    // Quadrant 1
    e!("c.nop", 0xef83, 0x0001, |i| Op::AluImm { op: AluOp::Add, word: false, rd: 0, rs1: 0, imm: ci_imm(i) }),
    e!("c.addi", CM3, 0x0001, |i| Op::AluImm { op: AluOp::Add, word: false, rd: crd(i), rs1: crd(i), imm: ci_imm(i) }),
    e!("c.addiw", CM3, 0x2001, c_addiw),
    e!("c.li", CM3, 0x4001, |i| Op::AluImm { op: AluOp::Add, word: false, rd: crd(i), rs1: 0, imm: ci_imm(i) }),
    e!("c.addi16sp", 0xef83, 0x6101, c_addi16sp),
    e!("c.lui", CM3, 0x6001, c_lui),
    e!("c.srli", 0xec03, 0x8001, |i| Op::AluImm {
        op: AluOp::Srl,
        word: false,
        rd: rs1p(i),
        rs1: rs1p(i),
        imm: ci_shamt(i)
    }),
    e!("c.srai", 0xec03, 0x8401, |i| Op::AluImm {
        op: AluOp::Sra,
        word: false,
        rd: rs1p(i),
        rs1: rs1p(i),
        imm: ci_shamt(i)
    }),
    e!("c.andi", 0xec03, 0x8801, |i| Op::AluImm {
        op: AluOp::And,
        word: false,
        rd: rs1p(i),
        rs1: rs1p(i),
        imm: ci_imm(i)
    }),
    e!("c.sub", 0xfc63, 0x8c01, |i| c_arith(i, AluOp::Sub, false)),
    e!("c.xor", 0xfc63, 0x8c21, |i| c_arith(i, AluOp::Xor, false)),
    e!("c.or", 0xfc63, 0x8c41, |i| c_arith(i, AluOp::Or, false)),
    e!("c.and", 0xfc63, 0x8c61, |i| c_arith(i, AluOp::And, false)),
    e!("c.subw", 0xfc63, 0x9c01, |i| c_arith(i, AluOp::Sub, true)),
    e!("c.addw", 0xfc63, 0x9c21, |i| c_arith(i, AluOp::Add, true)),
    e!("c.j", CM3, 0xa001, |i| Op::Jal { rd: 0, imm: cj_imm(i) }),
    e!("c.beqz", CM3, 0xc001, |i| Op::Branch { cond: BranchCond::Eq, rs1: rs1p(i), rs2: 0, imm: cb_imm(i) }),
    e!("c.bnez", CM3, 0xe001, |i| Op::Branch { cond: BranchCond::Ne, rs1: rs1p(i), rs2: 0, imm: cb_imm(i) }),
    // Quadrant 2
    e!("c.slli", CM3, 0x0002, |i| Op::AluImm {
        op: AluOp::Sll,
        word: false,
        rd: crd(i),
        rs1: crd(i),
        imm: ci_shamt(i)
    }),
    e!("c.lwsp", CM3, 0x4002, c_lwsp),
    e!("c.ldsp", CM3, 0x6002, c_ldsp),
    e!("c.jr", 0xf07f, 0x8002, c_jr),
    e!("c.mv", 0xf003, 0x8002, |i| Op::Alu { op: AluOp::Add, word: false, rd: crd(i), rs1: 0, rs2: crs2(i) }),
    e!("c.ebreak", 0xffff, 0x9002, |_| Op::Ebreak),
    e!("c.jalr", 0xf07f, 0x9002, |i| Op::Jalr { rd: 1, rs1: crd(i), imm: 0 }),
    e!("c.add", 0xf003, 0x9002, |i| Op::Alu { op: AluOp::Add, word: false, rd: crd(i), rs1: crd(i), rs2: crs2(i) }),
    e!("c.swsp", CM3, 0xc002, |i| Op::Store {
        width: Width::W,
        rs1: 2,
        rs2: crs2(i),
        imm: (((i >> 7) & 0x3c) | ((i >> 1) & 0xc0)) as i64
    }),
    e!("c.sdsp", CM3, 0xe002, |i| Op::Store {
        width: Width::D,
        rs1: 2,
        rs2: crs2(i),
        imm: (((i >> 7) & 0x38) | ((i >> 1) & 0x1c0)) as i64
    }),
];

fn lookup(table: &'static [Entry], insn: u32) -> Option<&'static Entry> {
    table.iter().find(|e| insn & e.mask == e.bits)
}

/// The base table first, then the extension table (`decode_ext`).
fn lookup_all(insn: u32) -> Option<&'static Entry> {
    if insn & 3 != 3 {
        lookup(TABLE16, insn & 0xffff).or_else(|| lookup(crate::decode_ext::TABLE16_EXT, insn & 0xffff))
    } else {
        lookup(TABLE32, insn).or_else(|| lookup(crate::decode_ext::TABLE32_EXT, insn))
    }
}

/// Length in bytes of the instruction whose first parcel is `parcel`.
pub fn insn_len(parcel: u16) -> u32 {
    if parcel & 3 == 3 {
        4
    } else {
        2
    }
}

/// Decode one instruction. `insn` holds the instruction bits (for a
/// compressed instruction only the low 16 bits are looked at). Returns the
/// operation and the instruction length in bytes (2 or 4).
pub fn decode(insn: u32) -> (Op, u32) {
    let insn = if insn & 3 != 3 { insn & 0xffff } else { insn };
    (lookup_all(insn).map_or(Op::Illegal, |e| (e.ctor)(insn)), insn_len(insn as u16))
}

/// The table name of the instruction (`"c.addi"`, `"lr.w"`...), if any line matches.
pub fn name_of(insn: u32) -> Option<&'static str> {
    lookup_all(insn).map(|e| e.name)
}

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
