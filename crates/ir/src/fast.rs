//! The fast first tier: a pre-decoded form of a [`Block`] and a tight loop that runs it.
//!
//! [`FastBlock::decode`] runs once per translated block and turns it into a flat array of
//! ops:
//! - temps are indices into a register file reused across runs ([`FastScratch`]);
//! - a temp defined once by a `Const` and read where it is certainly defined is folded
//!   into the reading op as an immediate (add/and/or/xor/shift/compare/branch with an
//!   immediate, stores of constants to state), and the `Const` itself is dropped when
//!   nothing reads it as a register any more;
//! - the operand type is resolved at decode time (64- and 32-bit variants are separate
//!   ops), state offsets are checked against the state size once, labels become op
//!   indices, and the guest PC and instruction count at every memory op, helper call and
//!   raise are precomputed (so `InsnStart` costs nothing at run time);
//! - ops on constants are computed at decode time; loads of guest state (past the common
//!   header) that an earlier load or store in the same straight-line stretch already
//!   holds become copies of that register, as in the JIT's state cache; I32 ops that only
//!   use the low half of an operand read the untruncated register; pure ops whose result
//!   nothing reads are dropped;
//! - common adjacent pairs whose intermediate temp has no other reader are fused (address
//!   add + guest load/store, guest load + state store, load + add + store of state, ...).
//!
//! Semantics are exactly those of [`crate::interp`] (the specification), which the
//! differential tests check. Blocks the decoder does not support (malformed ones, or a
//! branch that crosses a guest-instruction boundary, where the PC at a fault would be
//! dynamic) get `None`: the caller keeps using the reference interpreter for them.

use crate::interp::{eval_bin, eval_fp, eval_un, extend_load, leave_with_status, take_status, uncount, Env, Outcome};
use crate::state::{offsets, status};
use crate::{BinOp, Block, Cond, Exit, FpOp, HelperFn, Inst, MemOp, RmwOp, Temp, Ty, UnOp};

/// One pre-decoded operation. Register operands (`d`, `a`, `b`, `s`, ...) index the
/// register file; `t` fields are op indices; `site` indexes [`FastBlock::sites`].
#[derive(Clone, Copy, Debug)]
enum Op {
    Const {
        d: u16,
        v: u64,
    },
    Mov {
        d: u16,
        s: u16,
    },
    Ld64 {
        d: u16,
        off: u32,
    },
    Ld32 {
        d: u16,
        off: u32,
    },
    St64 {
        s: u16,
        off: u32,
    },
    St32 {
        s: u16,
        off: u32,
    },
    StI64 {
        off: u32,
        v: u64,
    },
    StI32 {
        off: u32,
        v: u32,
    },
    Add64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Sub64 {
        d: u16,
        a: u16,
        b: u16,
    },
    And64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Or64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Xor64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Shl64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Shr64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Sar64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Mul64 {
        d: u16,
        a: u16,
        b: u16,
    },
    Add32 {
        d: u16,
        a: u16,
        b: u16,
    },
    Sub32 {
        d: u16,
        a: u16,
        b: u16,
    },
    AddI64 {
        d: u16,
        a: u16,
        v: u64,
    },
    AndI64 {
        d: u16,
        a: u16,
        v: u64,
    },
    OrI64 {
        d: u16,
        a: u16,
        v: u64,
    },
    XorI64 {
        d: u16,
        a: u16,
        v: u64,
    },
    ShlI64 {
        d: u16,
        a: u16,
        sh: u32,
    },
    ShrI64 {
        d: u16,
        a: u16,
        sh: u32,
    },
    SarI64 {
        d: u16,
        a: u16,
        sh: u32,
    },
    AddI32 {
        d: u16,
        a: u16,
        v: u64,
    },
    ShlI32 {
        d: u16,
        a: u16,
        sh: u32,
    },
    ShrI32 {
        d: u16,
        a: u16,
        sh: u32,
    },
    SarI32 {
        d: u16,
        a: u16,
        sh: u32,
    },
    /// Any other binary op, register operands.
    Bin {
        op: BinOp,
        ty: Ty,
        d: u16,
        a: u16,
        b: u16,
    },
    /// Any other binary op with a constant second operand.
    BinI {
        op: BinOp,
        ty: Ty,
        d: u16,
        a: u16,
        v: u64,
    },
    /// `Sext32` into an I64 destination.
    Sext32 {
        d: u16,
        s: u16,
    },
    /// `Zext32` into an I64 destination, or `Trunc` into an I32 one.
    Low32 {
        d: u16,
        s: u16,
    },
    Un {
        op: UnOp,
        sty: Ty,
        dty: Ty,
        d: u16,
        s: u16,
    },
    Fp {
        op: FpOp,
        ty: Ty,
        d: u16,
        a: u16,
        b: u16,
        c: u16,
    },
    Setcond {
        cond: Cond,
        ty: Ty,
        d: u16,
        a: u16,
        b: u16,
    },
    SetcondI {
        cond: Cond,
        ty: Ty,
        d: u16,
        a: u16,
        v: u64,
    },
    Select {
        d: u16,
        c: u16,
        a: u16,
        b: u16,
    },
    Load {
        d: u16,
        addr: u16,
        mop: MemOp,
        ty: Ty,
        site: u16,
    },
    Store {
        s: u16,
        addr: u16,
        mop: MemOp,
        site: u16,
    },
    /// An `Inst::Atomic`; its operands are in [`FastBlock::atomics`].
    Atomic {
        at: u16,
    },
    Call {
        call: u16,
    },
    Br {
        t: u16,
    },
    BrCond {
        cond: Cond,
        ty: Ty,
        a: u16,
        b: u16,
        t: u16,
    },
    BrCondI {
        cond: Cond,
        ty: Ty,
        a: u16,
        v: u64,
        t: u16,
    },
    Goto {
        pc: u64,
    },
    GotoNoChain {
        pc: u64,
    },
    Indirect {
        s: u16,
    },
    Raise {
        cause: u64,
        tval: u16,
        site: u16,
    },
    Halt {
        next_pc: u64,
    },
    /// Decode-time placeholder for a label; removed before the block is used.
    Mark {
        l: u16,
    },
    // Fused pairs (see `fuse`): the temp between the two ops is read by nothing else.
    /// `Load` from `base + imm`.
    LoadOff {
        d: u16,
        base: u16,
        imm: i32,
        mop: MemOp,
        ty: Ty,
        site: u16,
    },
    /// `Store` to `base + imm`.
    StoreOff {
        s: u16,
        base: u16,
        imm: i32,
        mop: MemOp,
        site: u16,
    },
    /// An I64 `Load` stored to the state at `off8 * 8` (fused ops keep state offsets in
    /// 8-byte units to stay 16 bytes: guest registers lie beyond the 64 KiB header).
    LoadSt {
        off8: u16,
        addr: u16,
        mop: MemOp,
        site: u16,
    },
    /// An I64 `LoadOff` stored to the state at `off8 * 8`.
    LoadOffSt {
        off8: u16,
        base: u16,
        imm: i32,
        mop: MemOp,
        site: u16,
    },
    /// `AddI64` / `Add64` / `Sext32` stored to the state at `off`.
    AddISt64 {
        off: u32,
        a: u16,
        v: u64,
    },
    Add64St {
        off: u32,
        a: u16,
        b: u16,
    },
    Sext32St {
        off: u32,
        s: u16,
    },
    /// A `Store` / `StoreOff` of the I64 state at `off`.
    StoreSt {
        off8: u16,
        addr: u16,
        mop: MemOp,
        site: u16,
    },
    StoreOffSt {
        off8: u16,
        base: u16,
        imm: i32,
        mop: MemOp,
        site: u16,
    },
    /// `Ld64` then `AddI64` of it.
    LdAddI64 {
        d: u16,
        off: u32,
        v: u64,
    },
    /// `LdAddI64` stored to the state at `dst8 * 8` (read from `src8 * 8`).
    LdAddISt64 {
        dst8: u16,
        src8: u16,
        v: u64,
    },
}

/// Fuse `b` into `a` (adjacent, no label between) if `a`'s result is read only by `b`.
fn fuse(a: Op, b: Op, reads: impl Fn(u16) -> u32) -> Option<Op> {
    let once = |t: u16| reads(t) == 1;
    let imm32 = |v: u64| i32::try_from(v as i64).ok();
    let off8 = |o: u32| if o % 8 == 0 { u16::try_from(o / 8).ok() } else { None };
    Some(match (a, b) {
        (Op::AddI64 { d: t, a: base, v }, Op::Load { d, addr, mop, ty, site }) if addr == t && once(t) => {
            Op::LoadOff { d, base, imm: imm32(v)?, mop, ty, site }
        }
        (Op::AddI64 { d: t, a: base, v }, Op::Store { s, addr, mop, site }) if addr == t && s != t && once(t) => {
            Op::StoreOff { s, base, imm: imm32(v)?, mop, site }
        }
        (Op::Load { d: t, addr, mop, ty: Ty::I64, site }, Op::St64 { s, off }) if s == t && once(t) => {
            Op::LoadSt { off8: off8(off)?, addr, mop, site }
        }
        (Op::LoadOff { d: t, base, imm, mop, ty: Ty::I64, site }, Op::St64 { s, off }) if s == t && once(t) => {
            Op::LoadOffSt { off8: off8(off)?, base, imm, mop, site }
        }
        (Op::AddI64 { d: t, a, v }, Op::St64 { s, off }) if s == t && once(t) => Op::AddISt64 { off, a, v },
        (Op::Add64 { d: t, a, b }, Op::St64 { s, off }) if s == t && once(t) => Op::Add64St { off, a, b },
        (Op::Sext32 { d: t, s: src }, Op::St64 { s, off }) if s == t && once(t) => Op::Sext32St { off, s: src },
        (Op::Ld64 { d: t, off }, Op::AddI64 { d, a, v }) if a == t && once(t) => Op::LdAddI64 { d, off, v },
        (Op::Ld64 { d: t, off }, Op::Store { s, addr, mop, site }) if s == t && addr != t && once(t) => {
            Op::StoreSt { off8: off8(off)?, addr, mop, site }
        }
        (Op::Ld64 { d: t, off }, Op::StoreOff { s, base, imm, mop, site }) if s == t && base != t && once(t) => {
            Op::StoreOffSt { off8: off8(off)?, base, imm, mop, site }
        }
        (Op::LdAddI64 { d: t, off, v }, Op::St64 { s, off: dst }) if s == t && once(t) => {
            Op::LdAddISt64 { dst8: off8(dst)?, src8: off8(off)?, v }
        }
        _ => return None,
    })
}

/// Static facts about the guest instruction an op belongs to.
#[derive(Clone, Copy, Debug, Default)]
struct Site {
    /// PC of the current guest instruction (the reference's `pc`).
    pc: u64,
    /// Instructions to un-count on an early exit here (the reference's `unexec(started)`).
    rem: u64,
    /// Where a store that set a non-exception status resumes.
    next_pc: u64,
}

#[derive(Clone, Copy, Debug)]
struct CallSite {
    func: HelperFn,
    nargs: u8,
    args: [u16; 4],
    /// Destination register and the helper's result type, when both exist.
    dst: Option<(u16, Ty)>,
    may_exit: bool,
    site: Site,
}

/// The operands of an [`Op::Atomic`].
#[derive(Clone, Copy, Debug)]
struct AtomicSite {
    op: RmwOp,
    d: u16,
    addr: u16,
    src: u16,
    expected: u16,
    mop: MemOp,
    ty: Ty,
    site: u16,
}

/// A block in pre-decoded form (see the module note).
#[derive(Debug)]
pub struct FastBlock {
    ops: Box<[Op]>,
    sites: Box<[Site]>,
    calls: Box<[CallSite]>,
    atomics: Box<[AtomicSite]>,
    /// Registers that may be read before they are written: zeroed on entry (the reference
    /// starts every run with all temps 0).
    zero: Box<[u16]>,
    nregs: usize,
    /// Minimum state size every offset was checked against.
    state_len: usize,
    ninsns: u32,
}

/// The reusable register file of [`FastBlock::run`].
#[derive(Debug, Default)]
pub struct FastScratch {
    regs: Vec<u64>,
}

#[derive(Clone, Copy, Debug, Default)]
struct TempInfo {
    defs: u32,
    /// The value of the temp's (only, if `defs == 1`) `Const` definition.
    cval: Option<u64>,
    /// Register reads emitted so far.
    reads: u32,
    /// Read somewhere it may not have been written yet.
    maybe_undef: bool,
}

/// A set of temps as a bit vector.
#[derive(Clone, Debug)]
struct Set(Vec<u64>);

impl Set {
    fn new(n: usize, full: bool) -> Set {
        Set(vec![if full { u64::MAX } else { 0 }; n.div_ceil(64)])
    }
    fn has(&self, t: usize) -> bool {
        self.0[t / 64] >> (t % 64) & 1 != 0
    }
    fn add(&mut self, t: usize) {
        self.0[t / 64] |= 1 << (t % 64);
    }
    fn fill(&mut self, full: bool) {
        self.0.fill(if full { u64::MAX } else { 0 });
    }
    fn and(&mut self, o: &Set) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a &= *b;
        }
    }
}

enum Opnd {
    Reg(u16),
    Imm(u64),
}

/// What a guest-state slot is known to hold (see [`Dec::known`]).
#[derive(Clone, Copy, Debug)]
enum Known {
    /// The value of a register defined exactly once.
    Reg(u16),
    Imm(u64),
}

struct Dec<'a> {
    block: &'a Block,
    info: Vec<TempInfo>,
    /// Temps certainly written on every path to the current point.
    defined: Set,
    /// Per temp: the single-definition register it is a copy of (a forwarded state load),
    /// or `NO_ALIAS`.
    alias: Vec<u16>,
    /// Per temp defined once by `Trunc` to I32: the (single-definition) register it
    /// truncates, or `NO_ALIAS`. 32-bit ops that only look at the low half of an operand
    /// read that register instead, and the truncation usually goes.
    low: Vec<u16>,
    /// Straight-line knowledge of guest state beyond the common header, as the JIT's state
    /// cache keeps it: (offset, type, value) of recent loads and stores. Dropped at labels
    /// and after helpers that write state; memory accesses only touch the header.
    known: Vec<(u32, Ty, Known)>,
}

const NO_ALIAS: u16 = u16::MAX;
/// Most entries in [`Dec::known`].
const KNOWN_MAX: usize = 32;

impl Dec<'_> {
    fn ty(&self, t: Temp) -> Ty {
        self.block.temps[t.0 as usize]
    }
    fn check(&self, t: Temp) -> Option<u16> {
        ((t.0 as usize) < self.info.len()).then_some(t.0 as u16)
    }
    /// A register read of `t`.
    fn reg(&mut self, t: Temp) -> Option<u16> {
        let mut r = self.check(t)?;
        // A copy read where it is certainly defined is its source (whose only definition
        // precedes the copy, so it holds the same value).
        if self.alias[r as usize] != NO_ALIAS && self.defined.has(r as usize) {
            r = self.alias[r as usize];
        }
        let i = r as usize;
        self.info[i].reads += 1;
        if !self.defined.has(i) {
            self.info[i].maybe_undef = true;
        }
        Some(r)
    }
    /// A read of `t` that may be folded into an immediate.
    fn opnd(&mut self, t: Temp) -> Option<Opnd> {
        let i = self.check(t)? as usize;
        let inf = self.info[i];
        match inf.cval {
            Some(v) if inf.defs == 1 && self.defined.has(i) => Some(Opnd::Imm(v)),
            _ => self.reg(t).map(Opnd::Reg),
        }
    }
    /// A read of `t` by an I32 op that only uses its low 32 bits: may fold a constant or
    /// skip a truncation.
    fn opnd_low(&mut self, t: Temp, low_ok: bool) -> Option<Opnd> {
        let i = self.check(t)? as usize;
        if low_ok && self.low[i] != NO_ALIAS && self.defined.has(i) {
            let r = self.low[i];
            self.info[r as usize].reads += 1;
            return Some(Opnd::Reg(r));
        }
        self.opnd(t)
    }
    /// What the state at (`off`, `ty`) is known to hold.
    fn lookup(&self, off: u32, ty: Ty) -> Option<Known> {
        self.known.iter().rev().find(|k| k.0 == off && k.1 == ty).map(|k| k.2)
    }
    /// Forget what overlaps a store of `ty` at `off`.
    fn clobber(&mut self, off: u32, ty: Ty) {
        let end = off + ty.bits() / 8;
        self.known.retain(|k| k.0 + k.1.bits() / 8 <= off || end <= k.0);
    }
    /// Record that (`off`, `ty`) holds `v` (only past the header).
    fn remember(&mut self, off: u32, ty: Ty, v: Known) {
        if off < offsets::HEADER_END {
            return;
        }
        // A register defined once and certainly defined here keeps its value from now on
        // (its definition can only run again after a backward branch, and labels clear
        // `known`).
        if let Known::Reg(r) = v {
            if self.info[r as usize].defs != 1 || !self.defined.has(r as usize) {
                return;
            }
        }
        self.known.retain(|k| !(k.0 == off && k.1 == ty));
        if self.known.len() >= KNOWN_MAX {
            self.known.remove(0);
        }
        self.known.push((off, ty, v));
    }
    /// `t = v`, computed at decode time; later reads of `t` fold `v` if this is its only
    /// definition.
    fn konst(&mut self, t: Temp, v: u64) -> Option<Op> {
        let r = self.def(t)?;
        let inf = &mut self.info[r as usize];
        if inf.defs == 1 {
            inf.cval = Some(v);
        }
        Some(Op::Const { d: r, v })
    }
    /// A write of `t`.
    fn def(&mut self, t: Temp) -> Option<u16> {
        let i = self.check(t)?;
        self.defined.add(i as usize);
        Some(i)
    }
}

fn state_ok(off: u32, ty: Ty, state_len: usize) -> Option<u32> {
    (off as usize + ty.bits() as usize / 8 <= state_len).then_some(off)
}

impl FastBlock {
    /// Pre-decode `block` for a state of `state_len` bytes, or `None` if this tier does
    /// not support it (the reference interpreter then runs it).
    pub fn decode(block: &Block, state_len: usize) -> Option<FastBlock> {
        let insts = &block.insts;
        let nt = block.temps.len();
        let nl = block.nlabels as usize;
        // Registers, labels, op, site and call indices are all u16 (sites, calls and ops
        // are at most one per instruction).
        let small = |n: usize| n <= u16::MAX as usize;
        if state_len < offsets::HEADER_END as usize || !small(nt) || !small(nl) || !small(insts.len()) {
            return None;
        }
        // Control must never run off the end.
        if !matches!(insts.last(), Some(Inst::Exit(_)) | Some(Inst::Br(_))) {
            return None;
        }
        // Pass 1: definitions, constants, labels (with their guest-instruction region).
        let mut info = vec![TempInfo::default(); nt];
        let mut label_at = vec![(usize::MAX, 0u32); nl];
        let mut region = 0u32;
        for (i, inst) in insts.iter().enumerate() {
            let dst = match inst {
                Inst::InsnStart { .. } => {
                    region += 1;
                    None
                }
                Inst::SetLabel(l) => {
                    let slot = label_at.get_mut(l.0 as usize)?;
                    if slot.0 != usize::MAX {
                        return None;
                    }
                    *slot = (i, region);
                    None
                }
                Inst::Const { dst, val } => {
                    let ty = *block.temps.get(dst.0 as usize)?;
                    info[dst.0 as usize].cval = Some(ty.mask(*val));
                    Some(*dst)
                }
                // Decoding does not assume a validated block: a call's result counts only
                // if the helper has one.
                Inst::Call { helper, dst, .. } => dst.filter(|_| helper.ret.is_some()),
                other => other.def(),
            };
            if let Some(d) = dst {
                info.get_mut(d.0 as usize)?.defs += 1;
            }
        }
        // Branches: every label placed, none crossing an InsnStart; note labels reached
        // by a backward branch (nothing is assumed defined there).
        let mut back = vec![false; nl];
        if nl > 0 {
            if label_at.iter().any(|&(p, _)| p == usize::MAX) {
                return None;
            }
            let mut region = 0u32;
            for (i, inst) in insts.iter().enumerate() {
                let l = match inst {
                    Inst::InsnStart { .. } => {
                        region += 1;
                        continue;
                    }
                    Inst::Br(l) | Inst::BrCond { target: l, .. } => l.0 as usize,
                    _ => continue,
                };
                let &(pos, r) = label_at.get(l)?;
                if r != region {
                    return None;
                }
                if pos < i {
                    back[l] = true;
                }
            }
        } else if insts.iter().any(|i| matches!(i, Inst::Br(_) | Inst::BrCond { .. })) {
            return None;
        }

        // Pass 2: emit ops (labels as marks), tracking certainly-defined temps.
        let mut d = Dec {
            block,
            info,
            defined: Set::new(nt, false),
            alias: vec![NO_ALIAS; nt],
            low: vec![NO_ALIAS; nt],
            known: Vec::new(),
        };
        let mut fwd: Vec<Option<Set>> = vec![None; nl];
        let mut reachable = true;
        let mut ops = Vec::with_capacity(insts.len());
        let mut sites: Vec<Site> = Vec::new();
        let mut calls = Vec::new();
        let mut atomics: Vec<AtomicSite> = Vec::new();
        let mut stores: Vec<(usize, usize)> = Vec::new();
        let mut pc = block.pc;
        let mut started = 0u32;
        let site = |pc: u64, started: u32| Site {
            pc,
            rem: block.ninsns.saturating_sub(started.saturating_sub(1)) as u64,
            next_pc: pc,
        };
        for (i, inst) in insts.iter().enumerate() {
            let op = match inst {
                Inst::InsnStart { pc: p } => {
                    pc = *p;
                    started += 1;
                    continue;
                }
                Inst::SetLabel(l) => {
                    let l = l.0 as usize;
                    if !reachable {
                        d.defined.fill(true);
                    }
                    if let Some(s) = &fwd[l] {
                        d.defined.and(s);
                    } else if !reachable {
                        // Only backward branches (or nothing) lead here.
                        d.defined.fill(false);
                    }
                    if back[l] {
                        d.defined.fill(false);
                    }
                    d.known.clear();
                    reachable = true;
                    Op::Mark { l: l as u16 }
                }
                Inst::Const { dst, val } => {
                    let v = d.ty(*dst).mask(*val);
                    Op::Const { d: d.def(*dst)?, v }
                }
                Inst::Mov { dst, src } => match d.opnd(*src)? {
                    Opnd::Imm(v) => Op::Const { d: d.def(*dst)?, v },
                    Opnd::Reg(s) => Op::Mov { d: d.def(*dst)?, s },
                },
                Inst::LdState { dst, off } => {
                    let ty = d.ty(*dst);
                    let off = state_ok(*off, ty, state_len)?;
                    let single = d.info[d.check(*dst)? as usize].defs == 1;
                    match d.lookup(off, ty).filter(|_| single) {
                        // A load of what the state is known to hold: a copy (dropped later
                        // if every read goes to the source) or a constant (then folded).
                        Some(Known::Reg(r)) => {
                            let dr = d.def(*dst)?;
                            d.alias[dr as usize] = r;
                            d.info[r as usize].reads += 1;
                            Op::Mov { d: dr, s: r }
                        }
                        Some(Known::Imm(v)) => {
                            let dr = d.def(*dst)?;
                            d.info[dr as usize].cval = Some(v);
                            Op::Const { d: dr, v }
                        }
                        None => {
                            let dr = d.def(*dst)?;
                            d.remember(off, ty, Known::Reg(dr));
                            match ty {
                                Ty::I64 => Op::Ld64 { d: dr, off },
                                Ty::I32 => Op::Ld32 { d: dr, off },
                            }
                        }
                    }
                }
                Inst::StState { src, off } => {
                    let ty = d.ty(*src);
                    let off = state_ok(*off, ty, state_len)?;
                    let v = d.opnd(*src)?;
                    d.clobber(off, ty);
                    match (v, ty) {
                        (Opnd::Imm(v), Ty::I64) => {
                            d.remember(off, ty, Known::Imm(v));
                            Op::StI64 { off, v }
                        }
                        (Opnd::Imm(v), Ty::I32) => {
                            d.remember(off, ty, Known::Imm(v));
                            Op::StI32 { off, v: v as u32 }
                        }
                        (Opnd::Reg(s), Ty::I64) => {
                            d.remember(off, ty, Known::Reg(s));
                            Op::St64 { s, off }
                        }
                        (Opnd::Reg(s), Ty::I32) => {
                            d.remember(off, ty, Known::Reg(s));
                            Op::St32 { s, off }
                        }
                    }
                }
                Inst::Bin { op, dst, a, b } => {
                    let ty = d.ty(*dst);
                    // I32 ops whose result depends only on the low halves of a / b.
                    let low_a = ty == Ty::I32
                        && matches!(
                            op,
                            BinOp::Add
                                | BinOp::Sub
                                | BinOp::Mul
                                | BinOp::And
                                | BinOp::Or
                                | BinOp::Xor
                                | BinOp::Shl
                                | BinOp::Sar
                                | BinOp::Rotl
                                | BinOp::Rotr
                        );
                    let low_b = low_a || (ty == Ty::I32 && *op == BinOp::Shr);
                    let ao = d.opnd_low(*a, low_a)?;
                    let bo = d.opnd_low(*b, low_b)?;
                    let commutes = matches!(op, BinOp::Add | BinOp::And | BinOp::Or | BinOp::Xor | BinOp::Mul);
                    match (ao, bo) {
                        (Opnd::Imm(x), Opnd::Imm(y)) => d.konst(*dst, eval_bin(*op, ty, x, y))?,
                        (Opnd::Imm(x), Opnd::Reg(br)) if commutes => {
                            let dr = d.def(*dst)?;
                            bin(*op, ty, dr, br, Opnd::Imm(x))
                        }
                        (Opnd::Imm(_), bo) => {
                            let ar = d.reg(*a)?;
                            let dr = d.def(*dst)?;
                            bin(*op, ty, dr, ar, bo)
                        }
                        (Opnd::Reg(ar), bo) => {
                            let dr = d.def(*dst)?;
                            bin(*op, ty, dr, ar, bo)
                        }
                    }
                }
                Inst::Un { op, dst, src } => {
                    let (sty, dty) = (d.ty(*src), d.ty(*dst));
                    let s = match d.opnd(*src)? {
                        Opnd::Imm(v) => {
                            ops.push(d.konst(*dst, eval_un(*op, sty, dty, v))?);
                            continue;
                        }
                        Opnd::Reg(s) => s,
                    };
                    let dr = d.def(*dst)?;
                    match (op, dty) {
                        (UnOp::Sext32, Ty::I64) => Op::Sext32 { d: dr, s },
                        (UnOp::Trunc, Ty::I32) => {
                            let si = s as usize;
                            if d.info[dr as usize].defs == 1 && d.info[si].defs == 1 && d.defined.has(si) {
                                d.low[dr as usize] = s;
                            }
                            Op::Low32 { d: dr, s }
                        }
                        (UnOp::Zext32, Ty::I64) => Op::Low32 { d: dr, s },
                        _ => Op::Un { op: *op, sty, dty, d: dr, s },
                    }
                }
                Inst::Setcond { cond, dst, a, b } => {
                    let ty = d.ty(*a);
                    let ar = d.reg(*a)?;
                    let bo = d.opnd(*b)?;
                    let dr = d.def(*dst)?;
                    match bo {
                        Opnd::Imm(v) => Op::SetcondI { cond: *cond, ty, d: dr, a: ar, v },
                        Opnd::Reg(br) => Op::Setcond { cond: *cond, ty, d: dr, a: ar, b: br },
                    }
                }
                Inst::Select { dst, c, a, b } => {
                    let (c, a, b) = (d.reg(*c)?, d.reg(*a)?, d.reg(*b)?);
                    Op::Select { d: d.def(*dst)?, c, a, b }
                }
                Inst::Fp { op, dst, a, b, c } => {
                    let ty = d.ty(*dst);
                    let (a, b, c) = (d.reg(*a)?, d.reg(*b)?, d.reg(*c)?);
                    Op::Fp { op: *op, ty, d: d.def(*dst)?, a, b, c }
                }
                Inst::Load { dst, addr, mop } => {
                    let ty = d.ty(*dst);
                    let addr = d.reg(*addr)?;
                    sites.push(site(pc, started));
                    Op::Load { d: d.def(*dst)?, addr, mop: *mop, ty, site: sites.len() as u16 - 1 }
                }
                Inst::Store { src, addr, mop } => {
                    let (s, addr) = (d.reg(*src)?, d.reg(*addr)?);
                    sites.push(site(pc, started));
                    stores.push((i, sites.len() - 1));
                    Op::Store { s, addr, mop: *mop, site: sites.len() as u16 - 1 }
                }
                Inst::Atomic { op, dst, addr, src, expected, mop } => {
                    let ty = d.ty(*dst);
                    let (addr, src, expected) = (d.reg(*addr)?, d.reg(*src)?, d.reg(*expected)?);
                    sites.push(site(pc, started));
                    // Like a store, it resumes at the next instruction if it hit the code.
                    stores.push((i, sites.len() - 1));
                    let site = sites.len() as u16 - 1;
                    atomics.push(AtomicSite { op: *op, d: d.def(*dst)?, addr, src, expected, mop: *mop, ty, site });
                    Op::Atomic { at: u16::try_from(atomics.len() - 1).ok()? }
                }
                Inst::Call { helper, args, dst } => {
                    if args.len() > 4 {
                        return None;
                    }
                    let mut regs = [0u16; 4];
                    for (r, a) in regs.iter_mut().zip(args) {
                        *r = d.reg(*a)?;
                    }
                    let dst = match (dst, helper.ret) {
                        (Some(t), Some(ty)) => Some((d.def(*t)?, ty)),
                        (Some(t), None) => {
                            d.check(*t)?;
                            None
                        }
                        (None, _) => None,
                    };
                    if helper.effects.writes_state {
                        d.known.clear();
                    }
                    calls.push(CallSite {
                        func: helper.func,
                        nargs: args.len() as u8,
                        args: regs,
                        dst,
                        may_exit: helper.effects.may_exit,
                        site: site(pc, started),
                    });
                    Op::Call { call: calls.len() as u16 - 1 }
                }
                Inst::Br(l) => {
                    let l = l.0 as usize;
                    if label_at[l].0 > i {
                        join(&mut fwd[l], &d.defined, reachable);
                    }
                    reachable = false;
                    Op::Br { t: l as u16 }
                }
                Inst::BrCond { cond, a, b, target } => {
                    let ty = d.ty(*a);
                    let ar = d.reg(*a)?;
                    let bo = d.opnd(*b)?;
                    let l = target.0 as usize;
                    if label_at[l].0 > i {
                        join(&mut fwd[l], &d.defined, reachable);
                    }
                    match bo {
                        Opnd::Imm(v) => Op::BrCondI { cond: *cond, ty, a: ar, v, t: l as u16 },
                        Opnd::Reg(br) => Op::BrCond { cond: *cond, ty, a: ar, b: br, t: l as u16 },
                    }
                }
                Inst::Exit(e) => {
                    let op = match e {
                        Exit::Goto(t) => Op::Goto { pc: *t },
                        Exit::GotoNoChain(t) => Op::GotoNoChain { pc: *t },
                        Exit::Indirect(t) => Op::Indirect { s: d.reg(*t)? },
                        Exit::Raise { cause, tval } => {
                            let tval = d.reg(*tval)?;
                            sites.push(site(pc, started));
                            Op::Raise { cause: *cause, tval, site: sites.len() as u16 - 1 }
                        }
                        Exit::Halt { next_pc } => Op::Halt { next_pc: *next_pc },
                    };
                    reachable = false;
                    op
                }
                #[allow(unreachable_patterns)]
                _ => return None,
            };
            if !reachable {
                // Code after an unconditional transfer runs only through a label.
                d.defined.fill(true);
            }
            ops.push(op);
        }
        // Stores resume at the next instruction (the reference's `next_insn_pc`).
        if !stores.is_empty() {
            let mut next = None;
            let mut k = stores.len();
            for i in (0..insts.len()).rev() {
                while k > 0 && stores[k - 1].0 == i {
                    let s = &mut sites[stores[k - 1].1];
                    s.next_pc = next.unwrap_or(s.pc);
                    k -= 1;
                }
                match insts[i] {
                    Inst::InsnStart { pc } | Inst::Exit(Exit::Goto(pc)) | Inst::Exit(Exit::GotoNoChain(pc)) => {
                        next = Some(pc)
                    }
                    _ => {}
                }
            }
        }
        // Pass 3: drop pure ops whose result nothing reads (last to first, so chains of
        // copies go too), then the marks, resolving labels.
        let mut info = d.info;
        let mut keep = vec![true; ops.len()];
        for (k, op) in ops.iter().enumerate().rev() {
            let dead = |d: u16| info[d as usize].reads == 0;
            match *op {
                Op::Const { d, .. } | Op::Ld64 { d, .. } | Op::Ld32 { d, .. } if dead(d) => keep[k] = false,
                Op::Mov { d, s } | Op::Low32 { d, s } if dead(d) => {
                    keep[k] = false;
                    info[s as usize].reads -= 1;
                }
                _ => {}
            }
        }
        let mut label_op = vec![0u16; nl];
        let mut out: Vec<Op> = Vec::with_capacity(ops.len());
        // Whether the last op pushed is directly followed by the next (no label between).
        let mut adjacent = false;
        for (op, keep) in ops.into_iter().zip(keep) {
            match op {
                Op::Mark { l } => {
                    label_op[l as usize] = out.len() as u16;
                    adjacent = false;
                }
                _ if keep => {
                    let last = out.last_mut().filter(|_| adjacent);
                    match last.and_then(|a| fuse(*a, op, |t| info[t as usize].reads).map(|f| (a, f))) {
                        Some((a, f)) => *a = f,
                        None => out.push(op),
                    }
                    adjacent = true;
                }
                _ => {}
            }
        }
        for op in out.iter_mut() {
            match op {
                Op::Br { t } | Op::BrCond { t, .. } | Op::BrCondI { t, .. } => *t = label_op[*t as usize],
                _ => {}
            }
        }
        // Marks are never last (the block ends in an exit or a branch), so every label
        // resolves to an op; the last op transfers control, so `ip` never runs off.
        debug_assert!(label_op.iter().all(|&t| (t as usize) < out.len()));
        let zero = (0..nt as u16).filter(|&t| info[t as usize].maybe_undef && info[t as usize].reads > 0).collect();
        Some(FastBlock {
            ops: out.into_boxed_slice(),
            sites: sites.into_boxed_slice(),
            calls: calls.into_boxed_slice(),
            atomics: atomics.into_boxed_slice(),
            zero,
            nregs: nt,
            state_len,
            ninsns: block.ninsns,
        })
    }

    /// Number of pre-decoded ops (for statistics and tests).
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Execute the block once, exactly as [`crate::interp::run`] would. `state` must be at
    /// least the `state_len` given to [`FastBlock::decode`] (checked) and hold the
    /// target's CPU struct; helpers receive `state.as_mut_ptr()`.
    pub fn run<E: Env + ?Sized>(&self, scratch: &mut FastScratch, state: &mut [u8], env: &mut E) -> Outcome {
        self.view().run(scratch, state, env)
    }

    /// The block as a small `Copy` value that refers only to its heap parts (a caller can
    /// run it without keeping the `FastBlock` itself in place).
    pub fn view(&self) -> FastView<'_> {
        FastView {
            ops: &self.ops,
            sites: &self.sites,
            calls: &self.calls,
            atomics: &self.atomics,
            zero: &self.zero,
            nregs: self.nregs,
            state_len: self.state_len,
            ninsns: self.ninsns,
        }
    }
}

/// A borrowed [`FastBlock`] (see [`FastBlock::view`]).
#[derive(Clone, Copy, Debug)]
pub struct FastView<'a> {
    ops: &'a [Op],
    sites: &'a [Site],
    calls: &'a [CallSite],
    atomics: &'a [AtomicSite],
    zero: &'a [u16],
    nregs: usize,
    state_len: usize,
    ninsns: u32,
}

impl FastView<'_> {
    /// As [`FastBlock::run`].
    #[inline(never)]
    pub fn run<E: Env + ?Sized>(&self, scratch: &mut FastScratch, state: &mut [u8], env: &mut E) -> Outcome {
        assert!(state.len() >= self.state_len, "state smaller than the block was decoded for");
        if scratch.regs.len() < self.nregs {
            scratch.regs.resize(self.nregs, 0);
        }
        let regs = &mut scratch.regs[..];
        for &t in self.zero.iter() {
            regs[t as usize] = 0;
        }
        // Register operands were checked against the block's temp count at decode time
        // (`Dec::check`) and `regs` holds at least that many entries (resized above).
        macro_rules! r {
            ($i:expr) => {{
                let i = $i as usize;
                debug_assert!(i < regs.len());
                // SAFETY: in bounds as explained above.
                unsafe { *regs.get_unchecked(i) }
            }};
        }
        macro_rules! w {
            ($i:expr, $v:expr) => {{
                let (i, v) = ($i as usize, $v);
                debug_assert!(i < regs.len());
                // SAFETY: in bounds as explained above.
                unsafe { *regs.get_unchecked_mut(i) = v }
            }};
        }
        // State fields of ops: their offsets were checked at decode time (`state_ok`:
        // `off + width <= state_len`) and `state.len() >= state_len` is asserted above.
        macro_rules! sld {
            ($t:ty, $off:expr) => {{
                let o = $off as usize;
                debug_assert!(o + std::mem::size_of::<$t>() <= state.len());
                // SAFETY: in bounds as explained above; `read_unaligned` needs no alignment.
                <$t>::from_le(unsafe { std::ptr::read_unaligned(state.as_ptr().add(o) as *const $t) })
            }};
        }
        macro_rules! sst {
            ($t:ty, $off:expr, $v:expr) => {{
                let o = $off as usize;
                let v: $t = $v;
                debug_assert!(o + std::mem::size_of::<$t>() <= state.len());
                // SAFETY: in bounds as explained above; `write_unaligned` needs no alignment.
                unsafe { std::ptr::write_unaligned(state.as_mut_ptr().add(o) as *mut $t, v.to_le()) }
            }};
        }
        let ic = ld64(state, offsets::ICOUNT).wrapping_add(self.ninsns as u64);
        st64(state, offsets::ICOUNT, ic);
        let ops = self.ops;
        let mut ip = 0usize;
        loop {
            // SAFETY: `ip` starts at 0 (the block has at least its final exit op) and is
            // then either a resolved label (< ops.len(), decode) or the successor of an
            // op that does not transfer control, which is never the last op (the last op
            // is an exit or an unconditional branch).
            let op = unsafe { ops.get_unchecked(ip) };
            ip += 1;
            match *op {
                Op::Const { d, v } => w!(d, v),
                Op::Mov { d, s } => w!(d, r!(s)),
                Op::Ld64 { d, off } => w!(d, sld!(u64, off)),
                Op::Ld32 { d, off } => w!(d, sld!(u32, off) as u64),
                Op::St64 { s, off } => sst!(u64, off, r!(s)),
                Op::St32 { s, off } => sst!(u32, off, r!(s) as u32),
                Op::StI64 { off, v } => sst!(u64, off, v),
                Op::StI32 { off, v } => sst!(u32, off, v),
                Op::Add64 { d, a, b } => w!(d, r!(a).wrapping_add(r!(b))),
                Op::Sub64 { d, a, b } => w!(d, r!(a).wrapping_sub(r!(b))),
                Op::And64 { d, a, b } => w!(d, r!(a) & r!(b)),
                Op::Or64 { d, a, b } => w!(d, r!(a) | r!(b)),
                Op::Xor64 { d, a, b } => w!(d, r!(a) ^ r!(b)),
                Op::Shl64 { d, a, b } => w!(d, r!(a) << (r!(b) as u32 & 63)),
                Op::Shr64 { d, a, b } => w!(d, r!(a) >> (r!(b) as u32 & 63)),
                Op::Sar64 { d, a, b } => w!(d, ((r!(a) as i64) >> (r!(b) as u32 & 63)) as u64),
                Op::Mul64 { d, a, b } => w!(d, r!(a).wrapping_mul(r!(b))),
                Op::Add32 { d, a, b } => w!(d, r!(a).wrapping_add(r!(b)) & M32),
                Op::Sub32 { d, a, b } => w!(d, r!(a).wrapping_sub(r!(b)) & M32),
                Op::AddI64 { d, a, v } => w!(d, r!(a).wrapping_add(v)),
                Op::AndI64 { d, a, v } => w!(d, r!(a) & v),
                Op::OrI64 { d, a, v } => w!(d, r!(a) | v),
                Op::XorI64 { d, a, v } => w!(d, r!(a) ^ v),
                Op::ShlI64 { d, a, sh } => w!(d, r!(a) << sh),
                Op::ShrI64 { d, a, sh } => w!(d, r!(a) >> sh),
                Op::SarI64 { d, a, sh } => w!(d, ((r!(a) as i64) >> sh) as u64),
                Op::AddI32 { d, a, v } => w!(d, r!(a).wrapping_add(v) & M32),
                Op::ShlI32 { d, a, sh } => w!(d, (r!(a) << sh) & M32),
                Op::ShrI32 { d, a, sh } => w!(d, (r!(a) >> sh) & M32),
                Op::SarI32 { d, a, sh } => w!(d, ((r!(a) as u32 as i32 as i64 >> sh) as u64) & M32),
                Op::Bin { op, ty, d, a, b } => w!(d, eval_bin(op, ty, r!(a), r!(b))),
                Op::BinI { op, ty, d, a, v } => w!(d, eval_bin(op, ty, r!(a), v)),
                Op::Sext32 { d, s } => w!(d, r!(s) as u32 as i32 as i64 as u64),
                Op::Low32 { d, s } => w!(d, r!(s) & M32),
                Op::Un { op, sty, dty, d, s } => w!(d, eval_un(op, sty, dty, r!(s))),
                Op::Setcond { cond, ty, d, a, b } => w!(d, cond.eval(ty, r!(a), r!(b)) as u64),
                Op::SetcondI { cond, ty, d, a, v } => w!(d, cond.eval(ty, r!(a), v) as u64),
                Op::Select { d, c, a, b } => w!(d, if r!(c) != 0 { r!(a) } else { r!(b) }),
                Op::Fp { op, ty, d, a, b, c } => w!(d, eval_fp(op, ty, r!(a), r!(b), r!(c))),
                Op::Load { d, addr, mop, ty, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    match env.load(state, r!(addr), mop) {
                        Some(raw) => w!(d, extend_load(raw, mop, ty)),
                        None => return leave_with_status(state, s.pc, s.rem, 0),
                    }
                }
                Op::LoadOff { d, base, imm, mop, ty, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    match env.load(state, r!(base).wrapping_add(imm as i64 as u64), mop) {
                        Some(raw) => w!(d, extend_load(raw, mop, ty)),
                        None => return leave_with_status(state, s.pc, s.rem, 0),
                    }
                }
                Op::LoadSt { off8, addr, mop, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    match env.load(state, r!(addr), mop) {
                        Some(raw) => sst!(u64, off8 as usize * 8, extend_load(raw, mop, Ty::I64)),
                        None => return leave_with_status(state, s.pc, s.rem, 0),
                    }
                }
                Op::LoadOffSt { off8, base, imm, mop, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    match env.load(state, r!(base).wrapping_add(imm as i64 as u64), mop) {
                        Some(raw) => sst!(u64, off8 as usize * 8, extend_load(raw, mop, Ty::I64)),
                        None => return leave_with_status(state, s.pc, s.rem, 0),
                    }
                }
                Op::StoreOff { s: src, base, imm, mop, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    if !env.store(state, r!(base).wrapping_add(imm as i64 as u64), r!(src), mop) {
                        return leave_with_status(state, s.pc, s.rem, 0);
                    }
                    if ld32(state, offsets::STATUS) != status::NONE {
                        return leave_with_status(state, s.next_pc, s.rem, s.rem.saturating_sub(1));
                    }
                }
                Op::StoreSt { off8, addr, mop, site } => {
                    // Read first: the field may be the PC, which the store sets.
                    let v = sld!(u64, off8 as usize * 8);
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    if !env.store(state, r!(addr), v, mop) {
                        return leave_with_status(state, s.pc, s.rem, 0);
                    }
                    if ld32(state, offsets::STATUS) != status::NONE {
                        return leave_with_status(state, s.next_pc, s.rem, s.rem.saturating_sub(1));
                    }
                }
                Op::StoreOffSt { off8, base, imm, mop, site } => {
                    let v = sld!(u64, off8 as usize * 8);
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    let addr = r!(base).wrapping_add(imm as i64 as u64);
                    if !env.store(state, addr, v, mop) {
                        return leave_with_status(state, s.pc, s.rem, 0);
                    }
                    if ld32(state, offsets::STATUS) != status::NONE {
                        return leave_with_status(state, s.next_pc, s.rem, s.rem.saturating_sub(1));
                    }
                }
                Op::AddISt64 { off, a, v } => sst!(u64, off, r!(a).wrapping_add(v)),
                Op::Add64St { off, a, b } => sst!(u64, off, r!(a).wrapping_add(r!(b))),
                Op::Sext32St { off, s } => sst!(u64, off, r!(s) as u32 as i32 as i64 as u64),
                Op::LdAddI64 { d, off, v } => w!(d, sld!(u64, off).wrapping_add(v)),
                Op::LdAddISt64 { dst8, src8, v } => {
                    sst!(u64, dst8 as usize * 8, sld!(u64, src8 as usize * 8).wrapping_add(v))
                }
                Op::Store { s: src, addr, mop, site } => {
                    let s = self.sites[site as usize];
                    st64(state, offsets::PC, s.pc);
                    if !env.store(state, r!(addr), r!(src), mop) {
                        return leave_with_status(state, s.pc, s.rem, 0);
                    }
                    if ld32(state, offsets::STATUS) != status::NONE {
                        return leave_with_status(state, s.next_pc, s.rem, s.rem.saturating_sub(1));
                    }
                }
                Op::Atomic { at } => {
                    let a = self.atomics[at as usize];
                    let s = self.sites[a.site as usize];
                    st64(state, offsets::PC, s.pc);
                    match env.atomic(state, r!(a.addr), a.op, r!(a.src), r!(a.expected), a.mop) {
                        Some(raw) => w!(a.d, extend_load(raw, a.mop, a.ty)),
                        None => return leave_with_status(state, s.pc, s.rem, 0),
                    }
                    if ld32(state, offsets::STATUS) != status::NONE {
                        return leave_with_status(state, s.next_pc, s.rem, s.rem.saturating_sub(1));
                    }
                }
                Op::Call { call } => {
                    let c = &self.calls[call as usize];
                    let mut a = [0u64; 4];
                    for (slot, &reg) in a.iter_mut().zip(&c.args[..c.nargs as usize]) {
                        *slot = r!(reg);
                    }
                    if c.may_exit {
                        st64(state, offsets::PC, c.site.pc);
                    }
                    // SAFETY: helpers are declared by frontends with the HelperFn ABI and
                    // receive the state pointer they were written for (as in the reference).
                    let v = unsafe { (c.func)(state.as_mut_ptr(), a[0], a[1], a[2], a[3]) };
                    if let Some((d, ty)) = c.dst {
                        w!(d, ty.mask(v));
                    }
                    if c.may_exit && ld32(state, offsets::STATUS) != 0 {
                        uncount(state, c.site.rem);
                        return Outcome::Status(take_status(state));
                    }
                }
                Op::Br { t } => ip = t as usize,
                Op::BrCond { cond, ty, a, b, t } => {
                    if cond.eval(ty, r!(a), r!(b)) {
                        ip = t as usize;
                    }
                }
                Op::BrCondI { cond, ty, a, v, t } => {
                    if cond.eval(ty, r!(a), v) {
                        ip = t as usize;
                    }
                }
                Op::Goto { pc } => {
                    st64(state, offsets::PC, pc);
                    return Outcome::Goto { pc, chain: true };
                }
                Op::GotoNoChain { pc } => {
                    st64(state, offsets::PC, pc);
                    return Outcome::Goto { pc, chain: false };
                }
                Op::Indirect { s } => {
                    let v = r!(s);
                    st64(state, offsets::PC, v);
                    return Outcome::Indirect { pc: v };
                }
                Op::Raise { cause, tval, site } => {
                    let s = self.sites[site as usize];
                    uncount(state, s.rem);
                    st64(state, offsets::PC, s.pc);
                    st64(state, offsets::CAUSE, cause);
                    st64(state, offsets::TVAL, r!(tval));
                    return Outcome::Status(status::EXCEPTION);
                }
                Op::Halt { next_pc } => {
                    st64(state, offsets::PC, next_pc);
                    return Outcome::Status(status::HALT);
                }
                Op::Mark { .. } => {}
            }
        }
    }
}

const M32: u64 = 0xffff_ffff;

/// Record a forward branch's certainly-defined set for its label.
fn join(slot: &mut Option<Set>, defined: &Set, reachable: bool) {
    if !reachable {
        return;
    }
    match slot {
        Some(s) => s.and(defined),
        None => *slot = Some(defined.clone()),
    }
}

/// Pick the op for `dst = a <op> b` of type `ty`.
fn bin(op: BinOp, ty: Ty, d: u16, a: u16, b: Opnd) -> Op {
    let sh_mask = ty.bits() as u64 - 1;
    match (b, ty) {
        (Opnd::Reg(b), Ty::I64) => match op {
            BinOp::Add => Op::Add64 { d, a, b },
            BinOp::Sub => Op::Sub64 { d, a, b },
            BinOp::And => Op::And64 { d, a, b },
            BinOp::Or => Op::Or64 { d, a, b },
            BinOp::Xor => Op::Xor64 { d, a, b },
            BinOp::Shl => Op::Shl64 { d, a, b },
            BinOp::Shr => Op::Shr64 { d, a, b },
            BinOp::Sar => Op::Sar64 { d, a, b },
            BinOp::Mul => Op::Mul64 { d, a, b },
            _ => Op::Bin { op, ty, d, a, b },
        },
        (Opnd::Reg(b), Ty::I32) => match op {
            BinOp::Add => Op::Add32 { d, a, b },
            BinOp::Sub => Op::Sub32 { d, a, b },
            _ => Op::Bin { op, ty, d, a, b },
        },
        (Opnd::Imm(v), Ty::I64) => match op {
            BinOp::Add => Op::AddI64 { d, a, v },
            BinOp::Sub => Op::AddI64 { d, a, v: v.wrapping_neg() },
            BinOp::And => Op::AndI64 { d, a, v },
            BinOp::Or => Op::OrI64 { d, a, v },
            BinOp::Xor => Op::XorI64 { d, a, v },
            BinOp::Shl => Op::ShlI64 { d, a, sh: (v & sh_mask) as u32 },
            BinOp::Shr => Op::ShrI64 { d, a, sh: (v & sh_mask) as u32 },
            BinOp::Sar => Op::SarI64 { d, a, sh: (v & sh_mask) as u32 },
            _ => Op::BinI { op, ty, d, a, v },
        },
        (Opnd::Imm(v), Ty::I32) => match op {
            BinOp::Add => Op::AddI32 { d, a, v },
            BinOp::Sub => Op::AddI32 { d, a, v: v.wrapping_neg() },
            BinOp::Shl => Op::ShlI32 { d, a, sh: (v & sh_mask) as u32 },
            BinOp::Shr => Op::ShrI32 { d, a, sh: (v & sh_mask) as u32 },
            BinOp::Sar => Op::SarI32 { d, a, sh: (v & sh_mask) as u32 },
            _ => Op::BinI { op, ty, d, a, v },
        },
    }
}

// Header accessors (bounds-checked: header offsets are below `HEADER_END`, which decode
// requires of `state_len`, so these never fail).
#[inline(always)]
fn ld64(state: &[u8], off: u32) -> u64 {
    let o = off as usize;
    u64::from_le_bytes(state[o..o + 8].try_into().expect("8 bytes"))
}

#[inline(always)]
fn ld32(state: &[u8], off: u32) -> u32 {
    let o = off as usize;
    u32::from_le_bytes(state[o..o + 4].try_into().expect("4 bytes"))
}

#[inline(always)]
fn st64(state: &mut [u8], off: u32, v: u64) {
    let o = off as usize;
    state[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

#[cfg(test)]
#[path = "fast_tests.rs"]
mod tests;
