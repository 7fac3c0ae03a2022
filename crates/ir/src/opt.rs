//! Clean-ups run on a translated block before any tier sees it.
//!
//! Frontends emit IR one guest instruction at a time, so a 32-bit RISC-V op on an
//! immediate becomes `const`, `trunc` of that const, then the op. Cranelift at
//! `opt_level=none` (what the hot tier uses: its optimiser costs more compile time than it
//! wins back in a boot) folds nothing, so the truncated constant reached the host as a
//! register (`mov r8d, 1; shrx ...` for `srliw a4, a4, 1`). Folding here costs one pass
//! over the block and helps every tier.
//!
//! The same pass forwards values that need no instruction: `x + 0` and the other
//! identities, `trunc(sext32(x))` (a W-op reading the result of another) and a second
//! `sext32` of the same temp. RV64 code is full of them (`sext.w` is `addiw rd, rs, 0`),
//! and each one was a host instruction on a dependency chain: the CRC loop of the `int`
//! benchmark ran `lea ecx, [r8]; movsxd rbx, ecx` for its `sext.w`.
//!
//! It also counts the known sign bits of 64-bit temps (as LLVM's `ComputeNumSignBits`
//! does), looking through a `ld_state` of a slot stored earlier in the stretch, to drop
//! extensions that cannot change anything: a W-op whose 64-bit operands are already
//! sign-extended 32-bit values with room to spare (`negw` of a 0/1 flag, `addw` of two
//! sign-extended bytes) is done at 64 bits, and `sext32` of a value whose bit 31 is known
//! clear (`srliw`, `andi` with a small mask) becomes a zero-extension, which the x86-64
//! backends get for free from any 32-bit instruction. A `sext.w` of a 64-bit value that
//! is sign-extended already reads that value. In one shape, a CRC or LFSR step
//! (`(c >> 1) ^ (POLY & -(c & 1))` on a 32-bit `c`), the `sext.w` that ends the step moves
//! onto the polynomial's register, off the loop-carried chain (`Pass::distribute`).

use crate::interp::{eval_bin, eval_un};
use crate::state::offsets;
use crate::{BinOp, Exit, Inst, MemSize, Temp, Ty, UnOp};

/// Replace pure operations whose operands are all constants by constants, and reads of
/// a value that equals an earlier temp by reads of that temp.
///
/// Only temps written exactly once take part, and a fact about one is only used from its
/// definition to the next label: IR may read a temp on a path that skipped its only write
/// (it reads as 0, e.g. past a forward branch or in a loop's first iteration), and a label
/// is the only place such a path can join. Within one label-free stretch, every execution
/// of a later read has just passed the definition. Frontends define their constants next
/// to their uses, so this loses next to nothing. A temp forwarded to must have been
/// defined (once) before, so it holds the same value at every later read.
pub fn fold_constants(block: &mut crate::Block) {
    // The pass runs on every translated block: its table is kept per thread, so a block
    // costs no allocation once the table has grown.
    thread_local! {
        static FACTS: std::cell::RefCell<(Vec<Facts>, Vec<Stored>)> =
            const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
    }
    FACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut f) => {
            let (facts, stored) = &mut *f;
            fold_with(block, facts, stored)
        }
        // Only re-entered if a caller folds from inside a fold, which nothing does.
        Err(_) => fold_with(block, &mut Vec::new(), &mut Vec::new()),
    });
}

/// A 64-bit state slot written earlier in the current stretch: `ld_state` of it reads
/// `temp` back (until a call, which may write state, or an overlapping store), so it has
/// the same known sign bits. Kept in a table indexed by the slot's 8-byte granule (a clash
/// just forgets the older store); an entry counts only in the generation it was made in.
#[derive(Clone, Copy)]
struct Stored {
    off: u32,
    temp: Temp,
    generation: u32,
}

const STORED_SLOTS: usize = 64;

fn stored_slot(off: u32) -> usize {
    (off >> 3) as usize % STORED_SLOTS
}

/// Sign bits of a 64-bit constant: how many of its top bits equal bit 63 (1..=64).
fn const_sign_bits(v: u64) -> u8 {
    let x = v as i64;
    (x ^ (x >> 63)).leading_zeros() as u8
}

fn fold_with(block: &mut crate::Block, f: &mut Vec<Facts>, stored: &mut Vec<Stored>) {
    f.clear();
    f.resize(block.temps.len(), Facts::default());
    stored.clear();
    stored.resize(STORED_SLOTS, Stored { off: 0, temp: Temp(0), generation: 0 });
    for inst in &block.insts {
        if let Some(d) = inst.def() {
            let c = &mut f[d.0 as usize].defs;
            *c = c.saturating_add(1);
        }
    }
    let mut p = Pass { f, temps: &block.temps, stretch: 0 };
    let mut generation = 1u32;
    // No helper that may write the header, and no store to it, so far.
    let mut flags_fixed = true;
    // No store, atomic or call since the last instruction started: a `Goto` is where such
    // an access resumes when it invalidates its own block (`codegen::next_pc`), and the
    // target of a jump is not the next instruction.
    let mut quiet_insn = true;
    // One match per instruction: the pass runs on every translated block (~1.4 M
    // instructions in a Linux boot), and each dispatch on the kind is a hard-to-predict
    // branch.
    // `sext32`s moved to an operand (`Pass::distribute`): the instructions to insert
    // before the one at each index, and the types of the temps they define.
    let mut inserts: Vec<(usize, [Inst; 3])> = Vec::new();
    let mut new_temps: Vec<Ty> = Vec::new();
    let ntemps = block.temps.len() as u32;
    let mut now_direct = false;
    for (at, inst) in block.insts.iter_mut().enumerate() {
        match inst {
            Inst::InsnStart { .. } => quiet_insn = true,
            Inst::SetLabel(_) => {
                p.stretch += 1;
                generation += 1;
            }
            Inst::Const { dst, val } => {
                let ty = p.ty(*dst);
                *val = ty.mask(*val);
                if p.define(*dst) {
                    p.set_const(*dst, *val);
                }
            }
            Inst::LdState { dst, off } => {
                if p.define(*dst) && p.ty(*dst) == Ty::I64 {
                    // A slot stored earlier in this stretch reads back what was stored.
                    // Only its facts are carried over: reading the stored temp itself
                    // would give it a second use, which the baseline compiler pays for
                    // with a stack slot.
                    let s = stored[stored_slot(*off)];
                    if s.generation == generation && s.off == *off {
                        // A constant, though, is no temp: `auipc`/`lui` then `addi`, `ld`
                        // or `jalr` on the register fold to one constant.
                        if let Some(v) = p.known(s.temp) {
                            let dst = *dst;
                            p.set_const(dst, v);
                            *inst = Inst::Const { dst, val: v };
                            continue;
                        }
                        let sign_bits = p.sign_bits(s.temp);
                        let fd = &mut p.f[dst.0 as usize];
                        fd.sign_bits = sign_bits;
                        fd.mirror = Some(s.temp);
                    }
                }
            }
            Inst::StState { src, off } => {
                p.fwd(src);
                let (src, off) = (*src, *off);
                let ty = p.ty(src);
                for g in off >> 3..=off.saturating_add(ty.bits() / 8 - 1) >> 3 {
                    stored[stored_slot(g << 3)].generation = 0;
                }
                // Header fields (pc, status, ...) may change under the block's feet: a
                // slow-path access writes some. Guest registers change only through IR
                // and helpers.
                if ty == Ty::I64 && off % 8 == 0 && p.once(src) && off >= offsets::HEADER_END {
                    stored[stored_slot(off)] = Stored { off, temp: src, generation };
                }
                // The TB flags live in the header (an FP op marking the FP state dirty).
                flags_fixed &= off >= offsets::HEADER_END;
            }
            Inst::Exit(Exit::Indirect(t)) => {
                p.fwd(t);
                // A jump to a known address (`auipc` + `jalr`: far calls, tail calls) is a
                // direct one, chainable like `jal`'s, as long as nothing in the block may
                // have changed the TB flags in a way its translation cannot predict (the
                // jump cache checks them; a chained jump does not).
                if let Some(pc) = p.known(*t).filter(|_| flags_fixed && quiet_insn) {
                    *inst = Inst::Exit(Exit::Goto(pc));
                    // No indirect jump left to be a dispatch.
                    now_direct = true;
                }
            }
            Inst::Bin { op, dst, a, b } => {
                p.fwd(a);
                p.fwd(b);
                let (op, dst, a, b) = (*op, *dst, *a, *b);
                if !p.define(dst) {
                    continue;
                }
                let (ka, kb) = (p.known(a), p.known(b));
                let ty = p.ty(dst);
                if let (Some(x), Some(y)) = (ka, kb) {
                    let v = ty.mask(eval_bin(op, ty, x, y));
                    p.set_const(dst, v);
                    *inst = Inst::Const { dst, val: v };
                    continue;
                }
                if let Some(first) = identity(op, ty, ka, kb) {
                    p.same(dst, if first { a } else { b });
                }
                if ty == Ty::I32 {
                    // What `widen` needs of a W-op.
                    let w_op = Some((op, a, b)).filter(|_| p.once(a) && p.once(b));
                    let fd = &mut p.f[dst.0 as usize];
                    fd.w_op = w_op;
                    fd.bit31_clear = match op {
                        BinOp::Shr => kb.is_some_and(|n| n & 31 != 0),
                        BinOp::And => [ka, kb].iter().any(|k| k.is_some_and(|v| v & 0x8000_0000 == 0)),
                        _ => false,
                    };
                } else {
                    let (na, nb) = (p.sign_bits(a), p.sign_bits(b));
                    let shift = kb.map(|n| (n & 63) as u8);
                    if matches!(op, BinOp::And | BinOp::Or | BinOp::Xor) && p.once(a) && p.once(b) {
                        // What `distribute` needs of a bitwise op.
                        p.f[dst.0 as usize].w_op = Some((op, a, b));
                    }
                    p.f[dst.0 as usize].sign_bits = match op {
                        // A non-negative constant mask bounds the result whatever the other side.
                        BinOp::And => {
                            let mask = |k: Option<u64>| k.filter(|v| (*v as i64) >= 0).map_or(0, const_sign_bits);
                            na.min(nb).max(mask(ka)).max(mask(kb))
                        }
                        BinOp::Or | BinOp::Xor => na.min(nb),
                        BinOp::Add | BinOp::Sub => na.min(nb).saturating_sub(1).max(1),
                        BinOp::Shr => shift.map_or(1, |n| n.max(1)),
                        BinOp::Sar => shift.map_or(na, |n| (na + n).min(64)),
                        BinOp::Shl => shift.map_or(1, |n| na.saturating_sub(n).max(1)),
                        _ => 1,
                    };
                }
            }
            Inst::Un { op, dst, src } => {
                p.fwd(src);
                let (op, dst, src) = (*op, *dst, *src);
                if !p.define(dst) {
                    continue;
                }
                let (dty, sty) = (p.ty(dst), p.ty(src));
                if (op, dty, sty) == (UnOp::Trunc, Ty::I32, Ty::I64) && p.once(src) {
                    // For `widen`, even if it folds: the W-op's 64-bit operand.
                    p.f[dst.0 as usize].wide = Some(src);
                }
                match (op, p.known(src)) {
                    // Kept as they are: a constant bit count is rare, and leaving them
                    // lets the backends' own tests of these ops see constant operands.
                    (UnOp::Clz | UnOp::Ctz | UnOp::Popcnt, _) | (_, None) => {}
                    (_, Some(v)) => {
                        let v = dty.mask(eval_un(op, sty, dty, v));
                        p.set_const(dst, v);
                        *inst = Inst::Const { dst, val: v };
                        continue;
                    }
                }
                match (op, dty, sty) {
                    (UnOp::Trunc, Ty::I32, Ty::I64) => {
                        // trunc(sext32(x)) is x.
                        if let Some(x) = p.f[src.0 as usize].sext_src(p.stretch) {
                            p.same(dst, x);
                        }
                    }
                    (UnOp::Sext32, Ty::I64, Ty::I32) if p.once(src) => {
                        let stretch = p.stretch;
                        // A second sext32 of the same temp is the first.
                        match p.f[src.0 as usize].sext_of(stretch) {
                            Some(earlier) => p.same(dst, earlier),
                            None => {
                                p.f[src.0 as usize].sext_of = Some((stretch, dst));
                                p.f[dst.0 as usize].sext_src = Some(src);
                                if let Some(wide) = widen(p.f, stretch, dst, src) {
                                    *inst = wide;
                                } else if let Some(w) = p.f[src.0 as usize].wide_in(stretch) {
                                    if p.sign_bits(w) >= 33 {
                                        // sext32(trunc(x)) is x when x is a sign-extended
                                        // 32-bit value already.
                                        p.same(dst, w);
                                    } else if let Some((op1, op2, c, d, y)) = p.distribute(w) {
                                        // sext32 moved to the one operand that needs it
                                        // (see `Pass::distribute`).
                                        let n = ntemps + new_temps.len() as u32;
                                        let (d32, dx, inner) = (Temp(n), Temp(n + 1), Temp(n + 2));
                                        new_temps.extend([Ty::I32, Ty::I64, Ty::I64]);
                                        inserts.push((
                                            at,
                                            [
                                                Inst::Un { op: UnOp::Trunc, dst: d32, src: d },
                                                Inst::Un { op: UnOp::Sext32, dst: dx, src: d32 },
                                                Inst::Bin { op: op2, dst: inner, a: c, b: dx },
                                            ],
                                        ));
                                        *inst = Inst::Bin { op: op1, dst, a: inner, b: y };
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
                if dty == Ty::I32 {
                    p.f[dst.0 as usize].bit31_clear = matches!(op, UnOp::Zext8 | UnOp::Zext16);
                } else {
                    let ns = p.sign_bits(src);
                    p.f[dst.0 as usize].sign_bits = match *inst {
                        // `widen` made it a 64-bit op or a zero-extension of a value with
                        // bit 31 clear.
                        Inst::Bin { .. } => 33,
                        _ => match (op, sty) {
                            (UnOp::Sext8, _) => 57,
                            (UnOp::Sext16, _) => 49,
                            (UnOp::Sext32, _) => 33,
                            (UnOp::Zext8, _) => 56,
                            (UnOp::Zext16, _) => 48,
                            (UnOp::Zext32, _) if p.bit31_clear(src) => 33,
                            (UnOp::Zext32, _) | (UnOp::Trunc, Ty::I32) => 32,
                            (UnOp::Not, Ty::I64) => ns,
                            (UnOp::Neg, Ty::I64) => ns.saturating_sub(1).max(1),
                            _ => 1,
                        },
                    };
                }
            }
            Inst::Setcond { cond, dst, a, b } => {
                p.fwd(a);
                p.fwd(b);
                let (cond, dst, a, b) = (*cond, *dst, *a, *b);
                if !p.define(dst) {
                    continue;
                }
                if let (Some(x), Some(y)) = (p.known(a), p.known(b)) {
                    let v = cond.eval(p.ty(a), x, y) as u64;
                    p.set_const(dst, v);
                    *inst = Inst::Const { dst, val: v };
                    continue;
                }
                let fd = &mut p.f[dst.0 as usize];
                fd.bit31_clear = true;
                fd.sign_bits = 63;
            }
            Inst::Select { dst, c, a, b } => {
                p.fwd(c);
                p.fwd(a);
                p.fwd(b);
                let (dst, c, a, b) = (*dst, *c, *a, *b);
                if !p.define(dst) {
                    continue;
                }
                if let Some(v) = p.known(c).and_then(|cv| p.known(if cv != 0 { a } else { b })) {
                    let v = p.ty(dst).mask(v);
                    p.set_const(dst, v);
                    *inst = Inst::Const { dst, val: v };
                    continue;
                }
                if p.ty(dst) == Ty::I64 {
                    p.f[dst.0 as usize].sign_bits = p.sign_bits(a).min(p.sign_bits(b));
                }
            }
            Inst::Store { .. } | Inst::Atomic { .. } => {
                quiet_insn = false;
                inst.for_each_use_mut(|t| p.fwd(t));
                if let Some(dst) = inst.def() {
                    p.define(dst);
                }
            }
            Inst::Load { dst, addr, mop } => {
                p.fwd(addr);
                let (dst, mop) = (*dst, *mop);
                if !p.define(dst) {
                    continue;
                }
                let fd = &mut p.f[dst.0 as usize];
                if p.temps[dst.0 as usize] == Ty::I32 {
                    fd.bit31_clear = !mop.signed && matches!(mop.size, MemSize::B1 | MemSize::B2);
                } else {
                    fd.sign_bits = match (mop.size, mop.signed) {
                        (MemSize::B1, true) => 57,
                        (MemSize::B1, false) => 56,
                        (MemSize::B2, true) => 49,
                        (MemSize::B2, false) => 48,
                        (MemSize::B4, true) => 33,
                        (MemSize::B4, false) => 32,
                        (MemSize::B8, _) => 1,
                    };
                }
            }
            _ => {
                if let Inst::Call { helper, .. } = inst {
                    // Any helper may write guest state.
                    generation += 1;
                    quiet_insn = false;
                    flags_fixed &= !helper.effects.writes_state;
                }
                inst.for_each_use_mut(|t| p.fwd(t));
                if let Some(dst) = inst.def() {
                    p.define(dst);
                }
            }
        }
    }
    if now_direct {
        block.dispatch &= block.insts.iter().any(|i| matches!(i, Inst::Exit(Exit::Indirect(_))));
    }
    if !inserts.is_empty() {
        block.temps.extend(new_temps);
        let old = std::mem::take(&mut block.insts);
        block.insts.reserve(old.len() + 3 * inserts.len());
        let mut next = inserts.into_iter().peekable();
        for (i, inst) in old.into_iter().enumerate() {
            if let Some((_, before)) = next.next_if(|(at, _)| *at == i) {
                block.insts.extend(before);
            }
            block.insts.push(inst);
        }
    }
}

/// The pass's view of the block: the facts, the temps' types, the current stretch.
struct Pass<'a> {
    f: &'a mut [Facts],
    temps: &'a [Ty],
    stretch: u32,
}

impl Pass<'_> {
    fn ty(&self, t: Temp) -> Ty {
        self.temps[t.0 as usize]
    }

    /// Read `t` as the earlier temp it equals, if any.
    fn fwd(&self, t: &mut Temp) {
        if let Some(r) = self.f[t.0 as usize].same(self.stretch) {
            *t = r;
        }
    }

    /// Pass the definition of `t`; whether facts about it count (it is written once).
    fn define(&mut self, t: Temp) -> bool {
        let fd = &mut self.f[t.0 as usize];
        if fd.defs != 1 {
            return false;
        }
        fd.seen = true;
        fd.def_at = self.stretch;
        true
    }

    fn once(&self, t: Temp) -> bool {
        self.f[t.0 as usize].is_once()
    }

    fn known(&self, t: Temp) -> Option<u64> {
        self.f[t.0 as usize].known(self.stretch)
    }

    fn sign_bits(&self, t: Temp) -> u8 {
        self.f[t.0 as usize].sign_bits(self.stretch)
    }

    /// (32-bit temps) Bit 31 of `t` is known clear.
    fn bit31_clear(&self, t: Temp) -> bool {
        let fd = &self.f[t.0 as usize];
        fd.bit31_clear && fd.def_at == self.stretch && fd.is_once()
    }

    /// The bitwise op (and its operands) whose value the 64-bit `t` is, directly or
    /// through a `ld_state` of the slot it was stored to.
    fn bit_op(&self, t: Temp) -> Option<(BinOp, Temp, Temp)> {
        let fd = &self.f[t.0 as usize];
        if fd.def_at != self.stretch || !fd.is_once() {
            return None;
        }
        let def = match fd.mirror {
            Some(m) => &self.f[m.0 as usize],
            None => fd,
        };
        def.w_op.filter(|_| def.def_at == self.stretch && def.is_once() && self.ty(t) == Ty::I64)
    }

    /// For `sext32(trunc(w))` where `w` is `op1(op2(c, d), y)` and `c`, `y` are already
    /// sign-extended 32-bit values: `(op1, op2, c, d, y)`, for `op1(op2(c, sext32(trunc(d))), y)`,
    /// which is equal (bitwise ops commute with the extension, which leaves `c` and `y` as
    /// they are). Why: in `c = (c >> 1) ^ (POLY & -(c & 1))`, a CRC or LFSR step on a
    /// 32-bit value, the extension then applies to the polynomial's register instead of
    /// the loop-carried value, and leaves the loop's dependency chain (one host
    /// instruction in five). Only this shape: moving the extension to an operand in
    /// general adds instructions without knowing it shortens any chain.
    fn distribute(&self, w: Temp) -> Option<(BinOp, BinOp, Temp, Temp, Temp)> {
        // (other, free) for operands of which one is sign-extended already.
        let split = |a: Temp, b: Temp| {
            let free = |t: Temp| self.sign_bits(t) >= 33;
            if free(b) {
                Some((a, b))
            } else if free(a) {
                Some((b, a))
            } else {
                None
            }
        };
        let (op1, a, b) = self.bit_op(w)?;
        let (x, y) = split(a, b)?;
        let (op2, p, q) = self.bit_op(x)?;
        let (d, c) = split(p, q)?;
        let fd = &self.f[d.0 as usize];
        (fd.def_at == self.stretch && fd.is_once() && self.ty(d) == Ty::I64).then_some((op1, op2, c, d, y))
    }

    fn set_const(&mut self, t: Temp, v: u64) {
        let i64 = self.ty(t) == Ty::I64;
        let fd = &mut self.f[t.0 as usize];
        fd.val = Some(v);
        fd.sign_bits = if i64 { const_sign_bits(v) } else { 0 };
    }

    /// `t` (defined once, just now) equals `r`: later reads of `t` read `r`, if `r` too is
    /// defined once, already, and has the same type.
    fn same(&mut self, t: Temp, r: Temp) {
        if self.once(r) && self.ty(r) == self.ty(t) {
            self.f[t.0 as usize].same = Some(r);
        }
    }
}

/// `sext32(src)` for a 32-bit `src` without the extension, if it needs none: the W-op
/// `src` done on its 64-bit operands when they leave no room for a carry out of 32 bits
/// (the result then equals its own sign extension), or a zero-extension when bit 31 of
/// `src` is clear.
fn widen(f: &[Facts], stretch: u32, dst: Temp, src: Temp) -> Option<Inst> {
    let fs = &f[src.0 as usize];
    if fs.def_at != stretch {
        return None;
    }
    if let Some((op, a, b)) = fs.w_op {
        let (wa, wb) = (f[a.0 as usize].wide_in(stretch), f[b.0 as usize].wide_in(stretch));
        if let (Some(wa), Some(wb)) = (wa, wb) {
            let (na, nb) = (f[wa.0 as usize].sign_bits(stretch), f[wb.0 as usize].sign_bits(stretch));
            // Both operands fit in 33 bits (32 for add/sub, whose result takes one more):
            // the 64-bit result then fits in 32 and the W-op's low half is all of it.
            let need = match op {
                BinOp::And | BinOp::Or | BinOp::Xor => 33,
                BinOp::Add | BinOp::Sub => 34,
                _ => 65,
            };
            if na.min(nb) >= need {
                return Some(Inst::Bin { op, dst, a: wa, b: wb });
            }
        }
    }
    fs.bit31_clear.then_some(Inst::Un { op: UnOp::Zext32, dst, src })
}

/// What the pass knows of one temp. A fact counts only in the stretch between labels it
/// was made in. Those about the temp's own value (`val`, `same`, `sext_src`) are all made at
/// its (single) definition, in stretch `def_at`; `sext_of` records its own.
#[derive(Clone, Copy, Default)]
struct Facts {
    /// Its constant value.
    val: Option<u64>,
    /// An earlier temp with the same value.
    same: Option<Temp>,
    /// The temp this one is `sext32` of.
    sext_src: Option<Temp>,
    /// The temp holding `sext32` of this one, and the stretch that was found in.
    sext_of: Option<(u32, Temp)>,
    /// (64-bit temps) How many of its top bits are known to equal bit 63; 0 or 1: nothing.
    sign_bits: u8,
    /// (32-bit temps) The 64-bit temp it truncates.
    wide: Option<Temp>,
    /// The op and operands it is the result of: (32-bit temps) any; (64-bit temps) a
    /// bitwise one.
    w_op: Option<(BinOp, Temp, Temp)>,
    /// (64-bit `ld_state`) The temp stored to the slot earlier in the stretch, whose
    /// value it reads.
    mirror: Option<Temp>,
    /// (32-bit temps) Bit 31 is known clear.
    bit31_clear: bool,
    /// The stretch of its definition.
    def_at: u32,
    /// Definitions (saturating).
    defs: u8,
    /// Its (single) definition has been passed.
    seen: bool,
}

impl Facts {
    fn known(&self, stretch: u32) -> Option<u64> {
        self.val.filter(|_| self.def_at == stretch)
    }

    fn same(&self, stretch: u32) -> Option<Temp> {
        self.same.filter(|_| self.def_at == stretch)
    }

    fn sext_src(&self, stretch: u32) -> Option<Temp> {
        self.sext_src.filter(|_| self.def_at == stretch)
    }

    fn is_once(&self) -> bool {
        self.defs == 1 && self.seen
    }

    fn sign_bits(&self, stretch: u32) -> u8 {
        if self.def_at == stretch && self.defs == 1 && self.seen {
            self.sign_bits
        } else {
            1
        }
    }

    fn wide_in(&self, stretch: u32) -> Option<Temp> {
        self.wide.filter(|_| self.def_at == stretch)
    }

    fn sext_of(&self, stretch: u32) -> Option<Temp> {
        self.sext_of.filter(|&(s, _)| s == stretch).map(|(_, t)| t)
    }
}

/// Whether `a op b` is one of its operands whatever the other is: `Some(true)` for `a`,
/// `Some(false)` for `b`, given the constant values known of each.
fn identity(op: BinOp, ty: Ty, a: Option<u64>, b: Option<u64>) -> Option<bool> {
    let ones = ty.mask(u64::MAX);
    match (op, a, b) {
        (BinOp::Add | BinOp::Or | BinOp::Xor, _, Some(0)) => Some(true),
        (BinOp::Add | BinOp::Or | BinOp::Xor, Some(0), _) => Some(false),
        (BinOp::Sub | BinOp::Shl | BinOp::Shr | BinOp::Sar | BinOp::Rotl | BinOp::Rotr, _, Some(0)) => Some(true),
        (BinOp::And, _, Some(m)) if m == ones => Some(true),
        (BinOp::And, Some(m), _) if m == ones => Some(false),
        (BinOp::Mul, _, Some(1)) => Some(true),
        (BinOp::Mul, Some(1), _) => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BinOp, Builder, Cond, Exit, MemOp, Ty};

    #[test]
    fn folds_truncated_constants_and_ops_on_them() {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let x = b.ld_state(Ty::I64, 0x100);
        let one = b.const64(1);
        let x32 = b.ext(UnOp::Trunc, Ty::I32, x);
        let one32 = b.ext(UnOp::Trunc, Ty::I32, one);
        let sh = b.bin(BinOp::Shr, x32, one32);
        let m = b.const64(0xffff_ffff_0000_0001);
        let two = b.bin(BinOp::Add, one, one);
        let mm = b.bin(BinOp::Mul, m, two);
        let lt = b.setcond(Cond::LtS, mm, one);
        let pick = b.select(lt, two, one);
        let r = b.ext(UnOp::Sext32, Ty::I64, sh);
        b.st_state(r, 0x100);
        b.st_state(pick, 0x108);
        b.exit(Exit::Goto(0x1004));
        b.set_extent(1, 4);
        let mut blk = b.finish();
        let before = blk.clone();
        fold_constants(&mut blk);
        blk.validate().unwrap();
        let konst = |t: Temp| {
            blk.insts.iter().find_map(|i| match *i {
                Inst::Const { dst, val } if dst == t => Some(val),
                _ => None,
            })
        };
        assert_eq!(konst(one32), Some(1));
        assert_eq!(konst(two), Some(2));
        assert_eq!(konst(mm), Some(0xffff_fffe_0000_0002));
        assert_eq!(konst(lt), Some(1));
        assert_eq!(konst(pick), Some(2));
        // Values depending on guest state are untouched.
        assert_eq!(konst(x32), None);
        assert_eq!(konst(sh), None);
        assert_eq!(blk.insts.len(), before.insts.len());
    }

    /// The source of the `StState` to `off`.
    fn stored(blk: &crate::Block, off: u32) -> Temp {
        blk.insts
            .iter()
            .find_map(|i| match *i {
                Inst::StState { src, off: o } if o == off => Some(src),
                _ => None,
            })
            .unwrap()
    }

    fn finish(mut b: Builder) -> crate::Block {
        b.exit(Exit::Goto(4));
        folded(b)
    }

    /// `b`'s block, ended here, before and after folding.
    fn before_after(mut b: Builder) -> (crate::Block, crate::Block) {
        b.exit(Exit::Goto(4));
        b.set_extent(1, 4);
        let before = b.finish();
        let mut after = before.clone();
        fold_constants(&mut after);
        after.validate().unwrap();
        (before, after)
    }

    /// `b`'s block, ended by the caller, folded.
    fn folded(mut b: Builder) -> crate::Block {
        b.set_extent(1, 4);
        let mut blk = b.finish();
        fold_constants(&mut blk);
        blk.validate().unwrap();
        blk
    }

    #[test]
    fn forwards_identities_and_w_op_round_trips() {
        let mut b = Builder::new(0);
        b.insn_start(0);
        // sext.w: sext32(trunc(x) + 0) extends trunc(x) directly.
        let x = b.ld_state(Ty::I64, 0x100);
        let t = b.ext(UnOp::Trunc, Ty::I32, x);
        let zero = b.const_(Ty::I32, 0);
        let u = b.bin(BinOp::Add, t, zero);
        let v = b.ext(UnOp::Sext32, Ty::I64, u);
        b.st_state(v, 0x100);
        // A W-op on that result reads t itself, and extending it again is v.
        let w = b.ext(UnOp::Trunc, Ty::I32, v);
        let y = b.ld_state(Ty::I32, 0x108);
        let r = b.bin(BinOp::Sub, w, y);
        b.st_state(r, 0x108);
        let v2 = b.ext(UnOp::Sext32, Ty::I64, t);
        b.st_state(v2, 0x110);
        // x & -1, x * 1, x >> 0, 0 | x.
        let ones = b.const64(u64::MAX);
        let one = b.const64(1);
        let z64 = b.const64(0);
        let a = b.bin(BinOp::And, x, ones);
        let m = b.bin(BinOp::Mul, one, a);
        let s = b.bin(BinOp::Shr, m, z64);
        let o = b.bin(BinOp::Or, z64, s);
        b.st_state(o, 0x118);
        let blk = finish(b);
        let src_of = |d: Temp| {
            blk.insts.iter().find_map(|i| match *i {
                Inst::Un { dst, src, .. } if dst == d => Some(src),
                Inst::Bin { dst, a, .. } if dst == d => Some(a),
                _ => None,
            })
        };
        assert_eq!(src_of(v), Some(t), "sext32 of the truncated value itself");
        assert_eq!(src_of(r), Some(t), "trunc(sext32(t)) is t");
        assert_eq!(stored(&blk, 0x110), v, "sext32(t) again is v");
        assert_eq!(stored(&blk, 0x118), x);
        assert_eq!(stored(&blk, 0x100), v);
    }

    #[test]
    fn forwards_neither_across_a_label_nor_to_a_later_definition() {
        // u = s + 0 only on the fall-through path: after the join, u (0 when skipped)
        // must not become s.
        let mut b = Builder::new(0);
        b.insn_start(0);
        let s = b.ld_state(Ty::I64, 0x100);
        let zero = b.const64(0);
        let skip = b.label();
        let u = b.temp(Ty::I64);
        b.brcond(Cond::Eq, s, zero, skip);
        let k = b.const64(0);
        b.push(Inst::Bin { op: BinOp::Add, dst: u, a: s, b: k });
        b.set_label(skip);
        b.st_state(u, 0x108);
        // w = a + 0 reads a before its only definition (0): a read of w after that
        // definition must still see 0, not a.
        let a = b.temp(Ty::I64);
        let z = b.const64(0);
        let w = b.bin(BinOp::Add, a, z);
        b.push(Inst::LdState { dst: a, off: 0x100 });
        b.st_state(w, 0x110);
        let blk = finish(b);
        assert_eq!(stored(&blk, 0x108), u);
        assert_eq!(stored(&blk, 0x110), w);
    }

    extern "C" fn nop(_: *mut u8, _: u64, _: u64, _: u64, _: u64) -> u64 {
        0
    }
    static NOP: crate::Helper =
        crate::Helper { name: "nop", func: nop, nargs: 1, ret: None, effects: crate::Effects::ALL };

    /// The instruction that defines `t`.
    fn def_of(blk: &crate::Block, t: Temp) -> Inst {
        blk.insts.iter().find(|i| i.def() == Some(t)).cloned().unwrap()
    }

    /// `op(trunc(a), trunc(b))` extended to 64 bits, as a frontend emits a W-op.
    fn w_op(b: &mut Builder, op: BinOp, x: Temp, y: Temp) -> Temp {
        let (x, y) = (b.ext(UnOp::Trunc, Ty::I32, x), b.ext(UnOp::Trunc, Ty::I32, y));
        let r = b.bin(op, x, y);
        b.ext(UnOp::Sext32, Ty::I64, r)
    }

    #[test]
    fn drops_extensions_that_change_nothing() {
        let mut b = Builder::new(0);
        b.insn_start(0);
        // negw of a 0/1 flag that went through a register: a 64-bit negation.
        let x = b.ld_state(Ty::I64, 0x100);
        let one = b.const64(1);
        let bit = b.bin(BinOp::And, x, one);
        b.st_state(bit, 0x108);
        let flag = b.ld_state(Ty::I64, 0x108);
        let zero = b.const64(0);
        let neg = w_op(&mut b, BinOp::Sub, zero, flag);
        b.st_state(neg, 0x108);
        // srliw: bit 31 of the result is clear, so sign- and zero-extension agree.
        let w = b.ld_state(Ty::I64, 0x110);
        let w32 = b.ext(UnOp::Trunc, Ty::I32, w);
        let k = b.const_(Ty::I32, 1);
        let sh = b.bin(BinOp::Shr, w32, k);
        let shx = b.ext(UnOp::Sext32, Ty::I64, sh);
        b.st_state(shx, 0x110);
        // A sum of two 30-bit values needs 32 bits: adding another may carry into bit
        // 31, so that addw keeps its extension.
        let m = b.const64(0x3fff_ffff);
        let (p, q) = (b.ld_state(Ty::I64, 0x118), b.ld_state(Ty::I64, 0x120));
        let (p, q) = (b.bin(BinOp::And, p, m), b.bin(BinOp::And, q, m));
        let sum = b.bin(BinOp::Add, p, q);
        let wide_sum = w_op(&mut b, BinOp::Add, sum, m);
        b.st_state(wide_sum, 0x118);
        // ... while two 30-bit values themselves add at 64 bits.
        let narrow_sum = w_op(&mut b, BinOp::Add, p, q);
        b.st_state(narrow_sum, 0x120);
        // Facts about a stored slot end at a call (a helper may write state) and at a
        // label (another path may have written it).
        b.st_state(bit, 0x128);
        b.call(&NOP, &[x]);
        let after_call = b.ld_state(Ty::I64, 0x128);
        let zero2 = b.const64(0);
        let neg2 = w_op(&mut b, BinOp::Sub, zero2, after_call);
        b.st_state(bit, 0x130);
        let l = b.label();
        b.set_label(l);
        let after_label = b.ld_state(Ty::I64, 0x130);
        let zero3 = b.const64(0);
        let neg3 = w_op(&mut b, BinOp::Sub, zero3, after_label);
        b.st_state(neg2, 0x128);
        b.st_state(neg3, 0x130);
        // ... and at a store that overlaps the slot: the high half of it, or a misaligned
        // 64-bit store that covers it.
        let mut partly = Vec::new();
        let x2 = b.ld_state(Ty::I64, 0x300);
        let one2 = b.const64(1);
        let bit2 = b.bin(BinOp::And, x2, one2);
        for (slot, off, ty) in [(0x138, 0x13c, Ty::I32), (0x148, 0x144, Ty::I64), (0x150, 0x158, Ty::I64)] {
            b.st_state(bit2, slot);
            let other = b.ld_state(ty, 0x200);
            b.st_state(other, off);
            let back = b.ld_state(Ty::I64, slot);
            let z = b.const64(0);
            let n = w_op(&mut b, BinOp::Sub, z, back);
            b.st_state(n, 0x208);
            partly.push(n);
        }
        let blk = finish(b);
        // (The last store is next to the slot, not over it: that one is still widened, so
        // the others test what they claim.)
        let last = partly.pop().unwrap();
        assert!(matches!(def_of(&blk, last), Inst::Bin { op: BinOp::Sub, .. }), "{blk}");
        for n in partly {
            assert!(matches!(def_of(&blk, n), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");
        }
        assert_eq!(def_of(&blk, neg), Inst::Bin { op: BinOp::Sub, dst: neg, a: zero, b: flag });
        assert_eq!(def_of(&blk, shx), Inst::Un { op: UnOp::Zext32, dst: shx, src: sh });
        assert!(matches!(def_of(&blk, wide_sum), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");
        assert_eq!(def_of(&blk, narrow_sum), Inst::Bin { op: BinOp::Add, dst: narrow_sum, a: p, b: q });
        assert!(matches!(def_of(&blk, neg2), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");
        assert!(matches!(def_of(&blk, neg3), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");
    }

    /// `sext32(trunc(x))` of an `x` that is sign-extended already reads `x`; the extension
    /// moves to an operand only in a CRC step's shape (`Pass::distribute`), and only to a
    /// temp defined in the same stretch.
    #[test]
    fn extensions_of_bitwise_results_go_only_where_they_are_free() {
        // (flag & poly) ^ (x >>> 1): the CRC step, but with `poly` read before a label.
        let crc = |label_before_poly: bool| {
            let mut b = Builder::new(0);
            b.insn_start(0);
            let poly = b.ld_state(Ty::I64, 0x110);
            if label_before_poly {
                let l = b.label();
                b.set_label(l);
            }
            let x = b.ld_state(Ty::I64, 0x100);
            let one = b.const64(1);
            let bit = b.bin(BinOp::And, x, one);
            let zero = b.const64(0);
            let flag = b.bin(BinOp::Sub, zero, bit);
            let x32 = b.ext(UnOp::Trunc, Ty::I32, x);
            let k = b.const_(Ty::I32, 1);
            let sh32 = b.bin(BinOp::Shr, x32, k);
            let sh = b.ext(UnOp::Zext32, Ty::I64, sh32);
            let masked = b.bin(BinOp::And, flag, poly);
            b.st_state(masked, 0x108);
            let m = b.ld_state(Ty::I64, 0x108);
            let v = b.bin(BinOp::Xor, m, sh);
            let v32 = b.ext(UnOp::Trunc, Ty::I32, v);
            let vx = b.ext(UnOp::Sext32, Ty::I64, v32);
            b.st_state(vx, 0x100);
            let (before, blk) = before_after(b);
            (blk, before.insts.len(), vx, poly, flag, sh)
        };
        let (blk, n, vx, poly, flag, sh) = crc(false);
        assert_eq!(blk.insts.len(), n + 3, "{blk}");
        let Inst::Bin { op: BinOp::Xor, a: inner, b: y, .. } = def_of(&blk, vx) else { panic!("{blk}") };
        assert_eq!(y, sh);
        assert!(matches!(def_of(&blk, inner), Inst::Bin { op: BinOp::And, a, .. } if a == flag), "{blk}");
        let Inst::Bin { b: dx, .. } = def_of(&blk, inner) else { unreachable!() };
        let Inst::Un { op: UnOp::Sext32, src: d32, .. } = def_of(&blk, dx) else { panic!("{blk}") };
        assert_eq!(def_of(&blk, d32), Inst::Un { op: UnOp::Trunc, dst: d32, src: poly });
        // Across a label the polynomial's value is not known to be there: left alone.
        let (blk, n, vx, ..) = crc(true);
        assert_eq!(blk.insts.len(), n, "{blk}");
        assert!(matches!(def_of(&blk, vx), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");

        let mut b = Builder::new(0);
        b.insn_start(0);
        // Neither operand of the xor is a sign-extended 32-bit value: the extension stays.
        let (p, q) = (b.ld_state(Ty::I64, 0x100), b.ld_state(Ty::I64, 0x108));
        let both = b.bin(BinOp::Xor, p, q);
        let both32 = b.ext(UnOp::Trunc, Ty::I32, both);
        let both_x = b.ext(UnOp::Sext32, Ty::I64, both32);
        b.st_state(both_x, 0x100);
        // Both are (a lw result and a zero-extended srliw): the xor needs no extension,
        // and the store reads it directly.
        let addr = b.ld_state(Ty::I64, 0x110);
        let word = b.load(Ty::I64, addr, MemOp::new(MemSize::B4, true));
        let r32 = b.ld_state(Ty::I32, 0x118);
        let k = b.const_(Ty::I32, 3);
        let sh32 = b.bin(BinOp::Shr, r32, k);
        let sh = b.ext(UnOp::Zext32, Ty::I64, sh32);
        let free = b.bin(BinOp::Xor, word, sh);
        let free32 = b.ext(UnOp::Trunc, Ty::I32, free);
        let free_x = b.ext(UnOp::Sext32, Ty::I64, free32);
        b.st_state(free_x, 0x108);
        let (before, blk) = before_after(b);
        assert_eq!(blk.insts.len(), before.insts.len(), "{blk}");
        assert!(matches!(def_of(&blk, both_x), Inst::Un { op: UnOp::Sext32, .. }), "{blk}");
        assert_eq!(stored(&blk, 0x100), both_x);
        assert_eq!(stored(&blk, 0x108), free);
    }

    /// `auipc t1, hi` then `jalr lo(t1)` (after `extra`, in the `auipc`'s instruction), as the
    /// RISC-V frontend emits them; the folded block's exit.
    fn far_jump(extra: impl FnOnce(&mut Builder)) -> Exit {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        extra(&mut b);
        let hi = b.const64(0x8020_0000);
        b.st_state(hi, 0x130);
        b.insn_start(0x1004);
        let t1 = b.ld_state(Ty::I64, 0x130);
        let lo = b.const64(0x123);
        let sum = b.bin(BinOp::Add, t1, lo);
        let mask = b.const64(!1);
        let target = b.bin(BinOp::And, sum, mask);
        b.set_dispatch(true);
        b.exit(Exit::Indirect(target));
        let blk = folded(b);
        let Some(Inst::Exit(e)) = blk.insts.last() else { panic!("no exit:\n{blk}") };
        if let Exit::Goto(_) = e {
            // The register read became the constant it was just given.
            assert_eq!(def_of(&blk, t1), Inst::Const { dst: t1, val: 0x8020_0000 });
        }
        // A jump that became direct is no dispatch any more.
        assert_eq!(blk.dispatch, matches!(e, Exit::Indirect(_)), "{blk}");
        *e
    }

    #[test]
    fn indirect_jumps_to_known_addresses_become_direct() {
        assert_eq!(far_jump(|_| {}), Exit::Goto(0x8020_0122));
        // A store in an earlier instruction changes nothing ...
        assert_eq!(
            far_jump(|b| {
                let (v, a) = (b.const64(1), b.const64(0x9000));
                b.store(v, a, MemOp::new(MemSize::B8, false));
            }),
            Exit::Goto(0x8020_0122)
        );
        // ... but one in the jump's own instruction resumes at the `Goto`'s pc when it
        // invalidates the block, which is no next instruction.
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let hi = b.const64(0x8020_0000);
        b.st_state(hi, 0x130);
        let t1 = b.ld_state(Ty::I64, 0x130);
        b.store(hi, t1, MemOp::new(MemSize::B8, false));
        b.exit(Exit::Indirect(t1));
        let blk = folded(b);
        assert!(matches!(blk.insts.last(), Some(Inst::Exit(Exit::Indirect(_)))), "{blk}");
        // A helper that may write state may have changed the TB flags, which a chained
        // jump would not look at again; so may a store into the header.
        assert!(matches!(
            far_jump(|b| {
                let a = b.const64(0);
                b.call(&NOP, &[a]);
            }),
            Exit::Indirect(_)
        ));
        assert!(matches!(
            far_jump(|b| {
                let f = b.const_(Ty::I32, 1);
                b.st_state(f, offsets::FLAGS);
            }),
            Exit::Indirect(_)
        ));
    }

    #[test]
    fn leaves_reassigned_temps_alone() {
        // `t` is a constant on one path and something else on the other.
        let mut b = Builder::new(0);
        b.insn_start(0);
        let t = b.const64(5);
        let s = b.ld_state(Ty::I64, 0x100);
        let skip = b.label();
        let zero = b.const64(0);
        b.brcond(Cond::Eq, s, zero, skip);
        b.mov(t, s);
        b.set_label(skip);
        let one = b.const64(1);
        let u = b.bin(BinOp::Add, t, one);
        b.st_state(u, 0x100);
        b.exit(Exit::Goto(4));
        b.set_extent(1, 4);
        let mut blk = b.finish();
        let before = blk.clone();
        fold_constants(&mut blk);
        assert_eq!(blk, before);
    }
}
