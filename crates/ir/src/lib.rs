//! Kite's shared intermediate representation (IR).
//!
//! A guest frontend (`targets/*`) turns one translation block (TB) of guest
//! instructions into a [`Block`]: a flat list of [`Inst`]s over typed
//! temporaries ([`Temp`]), ending in one or more block exits. Backends consume
//! blocks: the Cranelift JIT (`kite-jit`) compiles them, and the reference
//! interpreter in [`interp`] executes them directly (differential tests, and a
//! cheap first tier).
//!
//! Every op is specified in `docs/ir.md`, including the results that would be
//! undefined in C (shift amounts, division by zero, signed overflow): the IR has
//! no undefined behaviour, so interpreter and JIT must agree bit for bit.
//!
//! Invariants:
//! - A temp has one type for its whole life. Most temps are assigned once
//!   (the builder hands out fresh temps), but [`Inst::Mov`] may assign an
//!   existing temp, which is how values merge across in-block branches.
//! - Guest CPU state is an opaque byte array addressed by offset
//!   ([`Inst::LdState`]/[`Inst::StState`]); the layout belongs to the target and
//!   the common header ([`state`]) that every target puts first.
//! - Every instruction of the guest starts with [`Inst::InsnStart`]: the
//!   backend records that PC for memory ops and helper calls that may fault,
//!   which is what makes guest exceptions precise.
//! - A block always ends with an exit; control never falls off the end.

pub mod fast;
pub mod interp;
pub mod opt;
pub mod state;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod text;

use std::fmt;

/// The type of a temp. Memory ops can load and store narrower widths, but
/// values in temps are always 32 or 64 bits wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ty {
    I32,
    I64,
}

impl Ty {
    pub fn bits(self) -> u32 {
        match self {
            Ty::I32 => 32,
            Ty::I64 => 64,
        }
    }
    /// Truncate `v` to this type's width (the canonical in-register form:
    /// an I32 value is kept zero-extended in a u64).
    pub fn mask(self, v: u64) -> u64 {
        match self {
            Ty::I32 => v & 0xffff_ffff,
            Ty::I64 => v,
        }
    }
}

/// A typed temporary. Index into [`Block::temps`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Temp(pub u32);

/// A branch target inside a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Label(pub u32);

/// Two-operand ALU ops. Both operands and the result have the same type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    And,
    Or,
    Xor,
    /// Shift left; the amount is taken modulo the type width.
    Shl,
    /// Logical shift right; the amount is taken modulo the type width.
    Shr,
    /// Arithmetic shift right; the amount is taken modulo the type width.
    Sar,
    /// Low half of the product.
    Mul,
    /// High half of the signed × signed product (64×64→128 for I64).
    MulHs,
    /// High half of the unsigned × unsigned product.
    MulHu,
    /// High half of signed(a) × unsigned(b).
    MulHsu,
    /// Signed division, truncating. x/0 = -1; MIN/-1 = MIN (RISC-V results).
    DivS,
    /// Unsigned division. x/0 = all ones.
    DivU,
    /// Signed remainder. x%0 = x; MIN%-1 = 0.
    RemS,
    /// Unsigned remainder. x%0 = x.
    RemU,
    /// Rotate left (amount modulo width).
    Rotl,
    /// Rotate right (amount modulo width).
    Rotr,
    /// Signed minimum / maximum and unsigned minimum / maximum.
    MinS,
    MaxS,
    MinU,
    MaxU,
}

/// One-operand ops. `Sext*`/`Zext*` take the low bits of the source, extend
/// them to the destination type; the destination type may differ from the
/// source type only for the extension/truncation ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnOp {
    Neg,
    Not,
    /// Sign-extend the low 8/16/32 bits of the source to the destination type.
    Sext8,
    Sext16,
    Sext32,
    /// Zero-extend the low 8/16/32 bits of the source to the destination type.
    Zext8,
    Zext16,
    Zext32,
    /// Truncate/convert to the destination type: I64→I32 keeps the low 32
    /// bits, I32→I64 zero-extends.
    Trunc,
    /// Count leading / trailing zeros (width if the value is 0), population count.
    Clz,
    Ctz,
    Popcnt,
    /// Byte swap.
    Bswap,
}

/// IEEE 754 arithmetic on the bit patterns held in temps ([`Inst::Fp`]): an I32 temp
/// holds a binary32, an I64 temp a binary64. Results are rounded to nearest, ties to
/// even; no exception flags are kept, and a NaN result's payload and sign are
/// unspecified. Frontends that need their ISA's NaN, rounding-mode or flag rules use
/// the result only when it cannot differ (a finite, normal result with the inexact flag
/// already raised, say) and take a slow path otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FpOp {
    Add,
    Sub,
    Mul,
    Div,
    /// Square root of `a`.
    Sqrt,
    /// `a * b + c` with one rounding.
    MulAdd,
}

impl FpOp {
    /// Every op (for exhaustive tests).
    pub const ALL: [FpOp; 6] = [FpOp::Add, FpOp::Sub, FpOp::Mul, FpOp::Div, FpOp::Sqrt, FpOp::MulAdd];

    /// How many of `a`, `b`, `c` the op reads (the rest are ignored).
    pub fn arity(self) -> usize {
        match self {
            FpOp::Sqrt => 1,
            FpOp::MulAdd => 3,
            _ => 2,
        }
    }
}

impl BinOp {
    /// Every op (for exhaustive tests).
    pub const ALL: [BinOp; 22] = [
        BinOp::Add,
        BinOp::Sub,
        BinOp::And,
        BinOp::Or,
        BinOp::Xor,
        BinOp::Shl,
        BinOp::Shr,
        BinOp::Sar,
        BinOp::Mul,
        BinOp::MulHs,
        BinOp::MulHu,
        BinOp::MulHsu,
        BinOp::DivS,
        BinOp::DivU,
        BinOp::RemS,
        BinOp::RemU,
        BinOp::Rotl,
        BinOp::Rotr,
        BinOp::MinS,
        BinOp::MaxS,
        BinOp::MinU,
        BinOp::MaxU,
    ];
}

impl UnOp {
    /// Every op (for exhaustive tests).
    pub const ALL: [UnOp; 13] = [
        UnOp::Neg,
        UnOp::Not,
        UnOp::Sext8,
        UnOp::Sext16,
        UnOp::Sext32,
        UnOp::Zext8,
        UnOp::Zext16,
        UnOp::Zext32,
        UnOp::Trunc,
        UnOp::Clz,
        UnOp::Ctz,
        UnOp::Popcnt,
        UnOp::Bswap,
    ];
}

/// Comparison conditions. The result of [`Inst::Setcond`] is 1 or 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cond {
    Eq,
    Ne,
    LtS,
    GeS,
    LtU,
    GeU,
    LeS,
    GtS,
    LeU,
    GtU,
}

impl Cond {
    /// Every condition (for exhaustive tests).
    pub const ALL: [Cond; 10] =
        [Cond::Eq, Cond::Ne, Cond::LtS, Cond::GeS, Cond::LtU, Cond::GeU, Cond::LeS, Cond::GtS, Cond::LeU, Cond::GtU];

    /// Evaluate the condition on two values of type `ty` (given in canonical form).
    pub fn eval(self, ty: Ty, a: u64, b: u64) -> bool {
        let (sa, sb) = match ty {
            Ty::I32 => (a as u32 as i32 as i64, b as u32 as i32 as i64),
            Ty::I64 => (a as i64, b as i64),
        };
        match self {
            Cond::Eq => a == b,
            Cond::Ne => a != b,
            Cond::LtS => sa < sb,
            Cond::GeS => sa >= sb,
            Cond::LtU => a < b,
            Cond::GeU => a >= b,
            Cond::LeS => sa <= sb,
            Cond::GtS => sa > sb,
            Cond::LeU => a <= b,
            Cond::GtU => a > b,
        }
    }
}

/// Access size of a guest memory op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemSize {
    B1,
    B2,
    B4,
    B8,
}

impl MemSize {
    pub fn bytes(self) -> u32 {
        match self {
            MemSize::B1 => 1,
            MemSize::B2 => 2,
            MemSize::B4 => 4,
            MemSize::B8 => 8,
        }
    }
    pub fn log2(self) -> u32 {
        self.bytes().trailing_zeros()
    }
    pub fn from_bytes(n: u32) -> Option<MemSize> {
        Some(match n {
            1 => MemSize::B1,
            2 => MemSize::B2,
            4 => MemSize::B4,
            8 => MemSize::B8,
            _ => return None,
        })
    }
}

/// The operation of an [`Inst::Atomic`] read-modify-write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmwOp {
    Xchg,
    Add,
    And,
    Or,
    Xor,
    /// Signed minimum/maximum at the access width.
    MinS,
    MaxS,
    MinU,
    MaxU,
    /// Compare and swap: store `src` only if memory holds `expected`.
    Cas,
}

impl RmwOp {
    pub const ALL: [RmwOp; 10] = [
        RmwOp::Xchg,
        RmwOp::Add,
        RmwOp::And,
        RmwOp::Or,
        RmwOp::Xor,
        RmwOp::MinS,
        RmwOp::MaxS,
        RmwOp::MinU,
        RmwOp::MaxU,
        RmwOp::Cas,
    ];

    /// The value to store (raw, truncated to `size`) given the old memory value `old`
    /// (raw, zero-extended), or `None` when nothing is stored (a failed `Cas`).
    /// `src` and `expected` are compared/combined at the access width.
    pub fn apply(self, size: MemSize, old: u64, src: u64, expected: u64) -> Option<u64> {
        let bits = size.bytes() * 8;
        let m = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
        let sx = |v: u64| ((v << (64 - bits)) as i64) >> (64 - bits);
        let (old, src) = (old & m, src & m);
        let v = match self {
            RmwOp::Xchg => src,
            RmwOp::Add => old.wrapping_add(src),
            RmwOp::And => old & src,
            RmwOp::Or => old | src,
            RmwOp::Xor => old ^ src,
            RmwOp::MinS => {
                if sx(old) <= sx(src) {
                    old
                } else {
                    src
                }
            }
            RmwOp::MaxS => {
                if sx(old) >= sx(src) {
                    old
                } else {
                    src
                }
            }
            RmwOp::MinU => old.min(src),
            RmwOp::MaxU => old.max(src),
            RmwOp::Cas => {
                if old != expected & m {
                    return None;
                }
                src
            }
        };
        Some(v & m)
    }

    /// Small integer form (for slow-path helpers).
    pub fn index(self) -> u32 {
        RmwOp::ALL.iter().position(|&o| o == self).expect("listed") as u32
    }
    pub fn from_index(i: u32) -> Option<RmwOp> {
        RmwOp::ALL.get(i as usize).copied()
    }
}

/// Shape of a guest memory access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemOp {
    pub size: MemSize,
    /// Sign-extend a narrow load to the destination type (ignored for stores).
    pub signed: bool,
    /// The access must be naturally aligned; a misaligned address raises the
    /// target's misaligned exception instead of being split (atomics).
    pub aligned: bool,
    /// A load that is the read half of an atomic read-modify-write: it needs
    /// write permission and faults as a store would (RISC-V AMOs report
    /// store/AMO causes).
    pub rmw: bool,
}

impl MemOp {
    pub const fn new(size: MemSize, signed: bool) -> MemOp {
        MemOp { size, signed, aligned: false, rmw: false }
    }
    pub const fn aligned(mut self) -> MemOp {
        self.aligned = true;
        self
    }
    pub const fn rmw(mut self) -> MemOp {
        self.rmw = true;
        self
    }
    /// The permission an access of `kind` with this op needs (and the fault
    /// class it raises): rmw loads count as writes.
    pub fn perm(self, kind: Access) -> Access {
        if self.rmw {
            Access::Write
        } else {
            kind
        }
    }
    /// Bits used by [`MemOp::encode`].
    pub const ENCODED_BITS: u32 = 7;
    /// Pack into a small integer (bits 0-1 log2 size, bit 2 signed, bit 3 aligned,
    /// bits 4-5 access kind, bit 6 rmw); this is the form passed to slow-path helpers.
    pub fn encode(self, kind: Access) -> u32 {
        self.size.log2()
            | (self.signed as u32) << 2
            | (self.aligned as u32) << 3
            | (kind as u32) << 4
            | (self.rmw as u32) << 6
    }
    pub fn decode(v: u32) -> (MemOp, Access) {
        let size = MemSize::from_bytes(1 << (v & 3)).expect("2-bit log2 size");
        let kind = match (v >> 4) & 3 {
            0 => Access::Read,
            1 => Access::Write,
            _ => Access::Exec,
        };
        (MemOp { size, signed: v & 4 != 0, aligned: v & 8 != 0, rmw: v & 64 != 0 }, kind)
    }
}

/// What a memory access is for; targets map a failing access to the matching
/// fault (load, store/AMO, instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Access {
    Read = 0,
    Write = 1,
    Exec = 2,
}

/// What a helper may do, so a backend knows what it must flush and check
/// around the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Effects {
    /// Reads guest state: cached guest registers must be written back first.
    pub reads_state: bool,
    /// Writes guest state: cached guest registers must be reloaded afterwards.
    pub writes_state: bool,
    /// May raise a guest exception or request a TB exit. The backend stores
    /// the instruction's PC into the state header before the call, and after
    /// the call checks `CpuHeader::status`; if it is non-zero the block exits
    /// to the dispatcher with that status.
    pub may_exit: bool,
    /// Called only on a rarely taken path (a fast path's fallback): backends lay the
    /// call out of line and may make it dear (store and reload every guest register
    /// they keep in a host register around it) to keep the common path cheap.
    pub cold: bool,
    /// The guest-state bytes `[start, end)` outside the header that the helper may read
    /// or write, if it keeps to them (`None`: anywhere). Backends then keep guest
    /// registers outside the range in host registers across the call. An exit through
    /// `may_exit` still sees all state in memory.
    pub state_range: Option<(u32, u32)>,
}

impl Effects {
    /// Pure function of its arguments.
    pub const PURE: Effects =
        Effects { reads_state: false, writes_state: false, may_exit: false, cold: false, state_range: None };
    /// Reads and writes state, may raise.
    pub const ALL: Effects =
        Effects { reads_state: true, writes_state: true, may_exit: true, cold: false, state_range: None };
}

/// Signature of every helper: the CPU state pointer, then up to four u64
/// arguments (unused ones are zero), returning a u64 (ignored when the
/// declaration has no result). Narrow (I32) arguments arrive zero-extended;
/// an I32 result is truncated by the caller.
pub type HelperFn = unsafe extern "C" fn(cpu: *mut u8, a0: u64, a1: u64, a2: u64, a3: u64) -> u64;

/// A helper declaration. Helpers are plain Rust `extern "C"` functions, declared
/// once as `static`s by the frontend that uses them.
#[derive(Clone, Copy)]
pub struct Helper {
    pub name: &'static str,
    pub func: HelperFn,
    /// Number of u64 arguments after the CPU pointer (0..=4).
    pub nargs: u8,
    /// Result type, if the helper returns a value.
    pub ret: Option<Ty>,
    pub effects: Effects,
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper")
            .field("name", &self.name)
            .field("nargs", &self.nargs)
            .field("ret", &self.ret)
            .field("effects", &self.effects)
            .finish()
    }
}

impl PartialEq for Helper {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && std::ptr::fn_addr_eq(self.func, other.func)
    }
}

/// How a block ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Exit {
    /// Continue at a constant guest PC; the backend may chain directly to the
    /// TB there.
    Goto(u64),
    /// Continue at a constant guest PC, but return to the dispatcher first
    /// (after a change of privilege, translation or other TB-key state).
    GotoNoChain(u64),
    /// Continue at a computed PC (jalr, returns): through the jump cache.
    Indirect(Temp),
    /// Raise a guest exception at the current instruction: `cause` and `tval`
    /// go into the state header and the target's trap logic takes over.
    Raise { cause: u64, tval: Temp },
    /// The guest waits for an interrupt (wfi); resume at `next_pc`.
    Halt { next_pc: u64 },
}

/// One IR instruction. `dst` temps are written, the rest read.
#[derive(Clone, Debug, PartialEq)]
pub enum Inst {
    /// Marks the start of the guest instruction at `pc`. Everything up to the
    /// next `InsnStart` belongs to it.
    InsnStart {
        pc: u64,
    },
    /// `dst = val` (truncated to dst's type).
    Const {
        dst: Temp,
        val: u64,
    },
    /// `dst = src` (same type); may reassign an existing temp.
    Mov {
        dst: Temp,
        src: Temp,
    },
    /// Load dst's type from guest state at byte offset `off`.
    LdState {
        dst: Temp,
        off: u32,
    },
    /// Store `src` (its type's width) into guest state at `off`.
    StState {
        src: Temp,
        off: u32,
    },
    Bin {
        op: BinOp,
        dst: Temp,
        a: Temp,
        b: Temp,
    },
    Un {
        op: UnOp,
        dst: Temp,
        src: Temp,
    },
    /// `dst = op(a, b, c)` in floating point (see [`FpOp`]); all four share a type, and
    /// operands beyond the op's arity are ignored.
    Fp {
        op: FpOp,
        dst: Temp,
        a: Temp,
        b: Temp,
        c: Temp,
    },
    /// `dst = cond(a, b) ? 1 : 0`; `a` and `b` share a type, dst may differ.
    Setcond {
        cond: Cond,
        dst: Temp,
        a: Temp,
        b: Temp,
    },
    /// `dst = c != 0 ? a : b`.
    Select {
        dst: Temp,
        c: Temp,
        a: Temp,
        b: Temp,
    },
    /// Guest memory load through the MMU: `dst = mem[addr]`, extended per `mop`.
    /// May fault (precise at the current instruction).
    Load {
        dst: Temp,
        addr: Temp,
        mop: MemOp,
    },
    /// Guest memory store through the MMU. May fault.
    Store {
        src: Temp,
        addr: Temp,
        mop: MemOp,
    },
    /// Atomic read-modify-write of guest memory: `dst = mem[addr]` (extended per
    /// `mop` to dst's type) and, in one indivisible step, `mem[addr] =
    /// op(old, src)` at the access width (for [`RmwOp::Cas`]: `src` only if the old
    /// value equals `expected`; other ops ignore `expected`). Needs write permission
    /// and faults like a store, even when a `Cas` stores nothing. Atomic across vCPU
    /// threads. `mop.aligned` must be set (misaligned addresses fault).
    Atomic {
        op: RmwOp,
        dst: Temp,
        addr: Temp,
        src: Temp,
        expected: Temp,
        mop: MemOp,
    },
    /// Call a helper with up to four arguments.
    Call {
        helper: &'static Helper,
        args: Vec<Temp>,
        dst: Option<Temp>,
    },
    /// Place a label.
    SetLabel(Label),
    /// Unconditional branch forward or backward within the block.
    Br(Label),
    /// Branch to `target` if `cond(a, b)`, else fall through.
    BrCond {
        cond: Cond,
        a: Temp,
        b: Temp,
        target: Label,
    },
    /// Leave the block.
    Exit(Exit),
}

/// A translated block of guest code in IR form.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Block {
    /// Guest virtual PC of the first instruction.
    pub pc: u64,
    /// Number of guest instructions in the block.
    pub ninsns: u32,
    /// Bytes of guest code covered, from `pc`.
    pub size: u32,
    pub temps: Vec<Ty>,
    pub nlabels: u32,
    pub insts: Vec<Inst>,
    /// Its indirect exit is a plain jump (a `switch`'s dispatch through a jump table, a
    /// computed goto), neither a call nor a return: set by the frontend, from the ISA's
    /// own hints (RISC-V: `jalr x0` through a register other than `ra`/`t0`). A loop
    /// region may then keep the jump's targets (`kite-jit`'s `Engine::region`).
    pub dispatch: bool,
}

/// The temps `$inst` (an `&Inst` or `&mut Inst`) reads, each passed to `$f`: one match
/// for [`Inst::for_each_use`] and [`Inst::for_each_use_mut`].
macro_rules! each_use {
    ($inst:expr, $f:ident) => {
        match $inst {
            Inst::Mov { src, .. } | Inst::StState { src, .. } | Inst::Un { src, .. } => $f(src),
            Inst::Bin { a, b, .. } | Inst::Setcond { a, b, .. } | Inst::BrCond { a, b, .. } => {
                $f(a);
                $f(b);
            }
            Inst::Fp { a, b, c, .. } | Inst::Select { c, a, b, .. } => {
                $f(c);
                $f(a);
                $f(b);
            }
            Inst::Load { addr, .. } => $f(addr),
            Inst::Store { src, addr, .. } => {
                $f(src);
                $f(addr);
            }
            Inst::Atomic { addr, src, expected, .. } => {
                $f(addr);
                $f(src);
                $f(expected);
            }
            Inst::Call { args, .. } => {
                for t in args {
                    $f(t);
                }
            }
            Inst::Exit(Exit::Indirect(t)) | Inst::Exit(Exit::Raise { tval: t, .. }) => $f(t),
            Inst::InsnStart { .. }
            | Inst::Const { .. }
            | Inst::LdState { .. }
            | Inst::SetLabel(_)
            | Inst::Br(_)
            | Inst::Exit(_) => {}
        }
    };
}

impl Inst {
    /// The temp this instruction writes, if any.
    pub fn def(&self) -> Option<Temp> {
        match *self {
            Inst::Mov { dst, .. } | Inst::Load { dst, .. } | Inst::Atomic { dst, .. } => Some(dst),
            Inst::Call { dst, .. } => dst,
            _ => self.pure_def(),
        }
    }

    /// Call `f` on every temp this instruction reads (not on the one it writes).
    pub fn for_each_use(&self, mut f: impl FnMut(Temp)) {
        let mut g = |t: &Temp| f(*t);
        each_use!(self, g);
    }

    /// [`Inst::for_each_use`], to rewrite what it reads.
    pub fn for_each_use_mut(&mut self, mut f: impl FnMut(&mut Temp)) {
        each_use!(self, f);
    }

    /// The temp written by an instruction that does nothing else (so it is dead code if
    /// that temp is never read).
    pub fn pure_def(&self) -> Option<Temp> {
        match *self {
            Inst::Const { dst, .. }
            | Inst::LdState { dst, .. }
            | Inst::Bin { dst, .. }
            | Inst::Un { dst, .. }
            | Inst::Fp { dst, .. }
            | Inst::Setcond { dst, .. }
            | Inst::Select { dst, .. } => Some(dst),
            _ => None,
        }
    }
}

impl Block {
    /// Targets of the block's direct gotos (`Exit::Goto`), in instruction order.
    pub fn goto_targets(&self) -> impl Iterator<Item = u64> + '_ {
        self.insts.iter().filter_map(|i| match i {
            Inst::Exit(Exit::Goto(t)) => Some(*t),
            _ => None,
        })
    }

    pub fn ty(&self, t: Temp) -> Ty {
        self.temps[t.0 as usize]
    }

    /// Check structural invariants: temps and labels in range, types agree,
    /// every label placed once, the block ends in an exit. Backends may assume
    /// a validated block.
    pub fn validate(&self) -> Result<(), IrError> {
        let nt = self.temps.len() as u32;
        let chk = |t: Temp| if t.0 < nt { Ok(()) } else { Err(IrError::BadTemp(t.0)) };
        let mut placed = vec![false; self.nlabels as usize];
        for (i, inst) in self.insts.iter().enumerate() {
            let same = |a: Temp, b: Temp| {
                if self.ty(a) == self.ty(b) {
                    Ok(())
                } else {
                    Err(IrError::TypeMismatch(i))
                }
            };
            match inst {
                Inst::InsnStart { .. } => {}
                Inst::Const { dst, .. } | Inst::LdState { dst, .. } => chk(*dst)?,
                Inst::StState { src, .. } => chk(*src)?,
                Inst::Mov { dst, src } => {
                    chk(*dst)?;
                    chk(*src)?;
                    same(*dst, *src)?;
                }
                Inst::Bin { dst, a, b, .. } => {
                    chk(*dst)?;
                    chk(*a)?;
                    chk(*b)?;
                    same(*dst, *a)?;
                    same(*a, *b)?;
                }
                Inst::Un { op, dst, src } => {
                    chk(*dst)?;
                    chk(*src)?;
                    let ext = matches!(
                        op,
                        UnOp::Sext8
                            | UnOp::Sext16
                            | UnOp::Sext32
                            | UnOp::Zext8
                            | UnOp::Zext16
                            | UnOp::Zext32
                            | UnOp::Trunc
                    );
                    if !ext {
                        same(*dst, *src)?;
                    }
                }
                Inst::Fp { dst, a, b, c, .. } => {
                    for t in [*dst, *a, *b, *c] {
                        chk(t)?;
                    }
                    same(*dst, *a)?;
                    same(*a, *b)?;
                    same(*b, *c)?;
                }
                Inst::Setcond { dst, a, b, .. } => {
                    chk(*dst)?;
                    chk(*a)?;
                    chk(*b)?;
                    same(*a, *b)?;
                }
                Inst::Select { dst, c, a, b } => {
                    chk(*dst)?;
                    chk(*c)?;
                    chk(*a)?;
                    chk(*b)?;
                    same(*dst, *a)?;
                    same(*a, *b)?;
                }
                Inst::Load { dst, addr, .. } | Inst::Store { src: dst, addr, .. } => {
                    chk(*dst)?;
                    chk(*addr)?;
                    if self.ty(*addr) != Ty::I64 {
                        return Err(IrError::TypeMismatch(i));
                    }
                }
                Inst::Atomic { dst, addr, src, expected, mop, .. } => {
                    for t in [*dst, *addr, *src, *expected] {
                        chk(t)?;
                    }
                    same(*dst, *src)?;
                    same(*src, *expected)?;
                    if self.ty(*addr) != Ty::I64 || !mop.aligned || mop.size.bytes() > self.ty(*dst).bits() / 8 {
                        return Err(IrError::TypeMismatch(i));
                    }
                }
                Inst::Call { helper, args, dst } => {
                    if args.len() != helper.nargs as usize || args.len() > 4 {
                        return Err(IrError::BadCall(i));
                    }
                    for a in args {
                        chk(*a)?;
                    }
                    match (dst, helper.ret) {
                        (Some(d), Some(ty)) => {
                            chk(*d)?;
                            if self.ty(*d) != ty {
                                return Err(IrError::TypeMismatch(i));
                            }
                        }
                        (None, _) => {}
                        (Some(_), None) => return Err(IrError::BadCall(i)),
                    }
                }
                Inst::SetLabel(l) => {
                    let p = placed.get_mut(l.0 as usize).ok_or(IrError::BadLabel(l.0))?;
                    if *p {
                        return Err(IrError::BadLabel(l.0));
                    }
                    *p = true;
                }
                Inst::Br(l) => {
                    if l.0 >= self.nlabels {
                        return Err(IrError::BadLabel(l.0));
                    }
                }
                Inst::BrCond { a, b, target, .. } => {
                    chk(*a)?;
                    chk(*b)?;
                    same(*a, *b)?;
                    if target.0 >= self.nlabels {
                        return Err(IrError::BadLabel(target.0));
                    }
                }
                Inst::Exit(e) => match e {
                    Exit::Indirect(t) | Exit::Raise { tval: t, .. } => {
                        chk(*t)?;
                        if self.ty(*t) != Ty::I64 {
                            return Err(IrError::TypeMismatch(i));
                        }
                    }
                    _ => {}
                },
            }
        }
        if let Some(l) = placed.iter().position(|p| !p) {
            return Err(IrError::BadLabel(l as u32));
        }
        match self.insts.last() {
            Some(Inst::Exit(_)) | Some(Inst::Br(_)) => Ok(()),
            _ => Err(IrError::NoExit),
        }
    }
}

/// A malformed block (a frontend bug, never a guest's doing).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IrError {
    #[error("temp t{0} out of range")]
    BadTemp(u32),
    #[error("label L{0} out of range, unplaced or placed twice")]
    BadLabel(u32),
    #[error("type mismatch at instruction {0}")]
    TypeMismatch(usize),
    #[error("bad helper call at instruction {0}")]
    BadCall(usize),
    #[error("block does not end with an exit")]
    NoExit,
    #[error("parse error on line {line}: {msg}")]
    Parse { line: usize, msg: String },
}

/// Builds a [`Block`]. Every value-producing method returns a fresh temp.
#[derive(Debug)]
pub struct Builder {
    block: Block,
}

impl Builder {
    pub fn new(pc: u64) -> Builder {
        Builder { block: Block { pc, ..Block::default() } }
    }

    /// A builder with room for `insts` instructions and as many temps: a frontend that
    /// knows its typical block size avoids regrowing both vectors several times per block.
    pub fn with_capacity(pc: u64, insts: usize) -> Builder {
        let block =
            Block { pc, temps: Vec::with_capacity(insts), insts: Vec::with_capacity(insts), ..Block::default() };
        Builder { block }
    }

    /// A builder for the block at `pc` that keeps `old`'s storage: a translator that hands
    /// back each block it is done with allocates nothing for the next typical one.
    pub fn reuse(pc: u64, old: Block) -> Builder {
        let (mut temps, mut insts) = (old.temps, old.insts);
        temps.clear();
        insts.clear();
        Builder { block: Block { pc, temps, insts, ..Block::default() } }
    }

    pub fn finish(self) -> Block {
        self.block
    }

    /// The block built so far.
    pub fn block(&self) -> &Block {
        &self.block
    }

    /// Number of IR instructions emitted so far (frontends cap TB size on it).
    pub fn len(&self) -> usize {
        self.block.insts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.block.insts.is_empty()
    }

    /// Turn the chainable exits among the instructions from index `from` on into
    /// [`Exit::GotoNoChain`]: a frontend that asks the dispatcher to act after an
    /// instruction it already translated (a spin-wait's yield) needs every path back there.
    pub fn unchain_exits(&mut self, from: usize) {
        for inst in &mut self.block.insts[from..] {
            if let Inst::Exit(Exit::Goto(pc)) = *inst {
                *inst = Inst::Exit(Exit::GotoNoChain(pc));
            }
        }
    }

    /// Mark the block's indirect exit a plain jump ([`Block::dispatch`]).
    pub fn set_dispatch(&mut self, on: bool) {
        self.block.dispatch = on;
    }

    /// Record that the block covers `ninsns` guest instructions in `size` bytes.
    pub fn set_extent(&mut self, ninsns: u32, size: u32) {
        self.block.ninsns = ninsns;
        self.block.size = size;
    }

    pub fn temp(&mut self, ty: Ty) -> Temp {
        self.block.temps.push(ty);
        Temp(self.block.temps.len() as u32 - 1)
    }

    pub fn ty(&self, t: Temp) -> Ty {
        self.block.ty(t)
    }

    pub fn label(&mut self) -> Label {
        self.block.nlabels += 1;
        Label(self.block.nlabels - 1)
    }

    pub fn push(&mut self, inst: Inst) {
        self.block.insts.push(inst);
    }

    pub fn insn_start(&mut self, pc: u64) {
        self.push(Inst::InsnStart { pc });
    }

    pub fn const_(&mut self, ty: Ty, val: u64) -> Temp {
        let dst = self.temp(ty);
        self.push(Inst::Const { dst, val: ty.mask(val) });
        dst
    }

    pub fn const64(&mut self, val: u64) -> Temp {
        self.const_(Ty::I64, val)
    }

    pub fn const32(&mut self, val: u32) -> Temp {
        self.const_(Ty::I32, val as u64)
    }

    pub fn mov(&mut self, dst: Temp, src: Temp) {
        self.push(Inst::Mov { dst, src });
    }

    pub fn ld_state(&mut self, ty: Ty, off: u32) -> Temp {
        let dst = self.temp(ty);
        self.push(Inst::LdState { dst, off });
        dst
    }

    pub fn st_state(&mut self, src: Temp, off: u32) {
        self.push(Inst::StState { src, off });
    }

    pub fn bin(&mut self, op: BinOp, a: Temp, b: Temp) -> Temp {
        let dst = self.temp(self.ty(a));
        self.push(Inst::Bin { op, dst, a, b });
        dst
    }

    pub fn un(&mut self, op: UnOp, src: Temp) -> Temp {
        let dst = self.temp(self.ty(src));
        self.push(Inst::Un { op, dst, src });
        dst
    }

    /// An extension or truncation op into a destination of type `ty`.
    pub fn ext(&mut self, op: UnOp, ty: Ty, src: Temp) -> Temp {
        let dst = self.temp(ty);
        self.push(Inst::Un { op, dst, src });
        dst
    }

    /// A floating-point op on `args` (its arity's worth; see [`FpOp`]). `args` must not be
    /// empty (a frontend bug; no guest input reaches this).
    pub fn fp(&mut self, op: FpOp, args: &[Temp]) -> Temp {
        // Operands beyond the arity are `a` (so that the text form round-trips).
        let a = args[0];
        let arg = |k: usize| args.get(k).copied().filter(|_| k < op.arity()).unwrap_or(a);
        let (b, c) = (arg(1), arg(2));
        let dst = self.temp(self.ty(a));
        self.push(Inst::Fp { op, dst, a, b, c });
        dst
    }

    pub fn setcond(&mut self, cond: Cond, a: Temp, b: Temp) -> Temp {
        let dst = self.temp(self.ty(a));
        self.push(Inst::Setcond { cond, dst, a, b });
        dst
    }

    pub fn select(&mut self, c: Temp, a: Temp, b: Temp) -> Temp {
        let dst = self.temp(self.ty(a));
        self.push(Inst::Select { dst, c, a, b });
        dst
    }

    pub fn load(&mut self, ty: Ty, addr: Temp, mop: MemOp) -> Temp {
        let dst = self.temp(ty);
        self.push(Inst::Load { dst, addr, mop });
        dst
    }

    pub fn store(&mut self, src: Temp, addr: Temp, mop: MemOp) {
        self.push(Inst::Store { src, addr, mop });
    }

    /// An atomic read-modify-write (not `Cas`; see [`Builder::cas`]); returns the old value.
    pub fn atomic(&mut self, op: RmwOp, addr: Temp, src: Temp, mop: MemOp) -> Temp {
        debug_assert!(op != RmwOp::Cas);
        let dst = self.temp(self.ty(src));
        self.push(Inst::Atomic { op, dst, addr, src, expected: src, mop: mop.aligned() });
        dst
    }

    /// Atomic compare-and-swap: stores `new` if memory holds `expected`; returns the old value.
    pub fn cas(&mut self, addr: Temp, expected: Temp, new: Temp, mop: MemOp) -> Temp {
        let dst = self.temp(self.ty(new));
        self.push(Inst::Atomic { op: RmwOp::Cas, dst, addr, src: new, expected, mop: mop.aligned() });
        dst
    }

    pub fn call(&mut self, helper: &'static Helper, args: &[Temp]) -> Option<Temp> {
        let dst = helper.ret.map(|ty| self.temp(ty));
        self.push(Inst::Call { helper, args: args.to_vec(), dst });
        dst
    }

    pub fn set_label(&mut self, l: Label) {
        self.push(Inst::SetLabel(l));
    }

    pub fn br(&mut self, l: Label) {
        self.push(Inst::Br(l));
    }

    pub fn brcond(&mut self, cond: Cond, a: Temp, b: Temp, target: Label) {
        self.push(Inst::BrCond { cond, a, b, target });
    }

    pub fn exit(&mut self, e: Exit) {
        self.push(Inst::Exit(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_builder_starts_empty_with_the_old_storage() {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let x = b.const64(7);
        let l = b.label();
        b.set_label(l);
        b.st_state(x, 0x100);
        b.set_extent(1, 4);
        b.exit(Exit::Goto(0x1004));
        let old = b.finish();
        let (cap_i, cap_t) = (old.insts.capacity(), old.temps.capacity());
        let b = Builder::reuse(0x2000, old);
        assert_eq!(b.block(), &Block { pc: 0x2000, ..Block::default() });
        assert!(b.block().insts.capacity() == cap_i && b.block().temps.capacity() == cap_t);
    }

    #[test]
    fn memop_encoding_roundtrips() {
        for size in [MemSize::B1, MemSize::B2, MemSize::B4, MemSize::B8] {
            for signed in [false, true] {
                for aligned in [false, true] {
                    for rmw in [false, true] {
                        for kind in [Access::Read, Access::Write, Access::Exec] {
                            let m = MemOp { size, signed, aligned, rmw };
                            assert_eq!(MemOp::decode(m.encode(kind)), (m, kind));
                            assert!(m.encode(kind) < 1 << MemOp::ENCODED_BITS);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn validate_rejects_type_mismatch_and_missing_exit() {
        let mut b = Builder::new(0);
        let x = b.const64(1);
        let y = b.const32(2);
        b.push(Inst::Bin { op: BinOp::Add, dst: x, a: x, b: y });
        assert_eq!(b.block().validate(), Err(IrError::TypeMismatch(2)));
        let mut b = Builder::new(0);
        b.const64(1);
        assert_eq!(b.finish().validate(), Err(IrError::NoExit));
    }

    #[test]
    fn cond_eval_signedness() {
        assert!(Cond::LtS.eval(Ty::I64, u64::MAX, 0));
        assert!(!Cond::LtU.eval(Ty::I64, u64::MAX, 0));
        assert!(Cond::LtS.eval(Ty::I32, 0xffff_ffff, 0));
        assert!(Cond::GtU.eval(Ty::I32, 0xffff_ffff, 0));
    }
}
