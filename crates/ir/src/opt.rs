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

use crate::interp::{eval_bin, eval_un};
use crate::{BinOp, Inst, Temp, Ty, UnOp};

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
        static FACTS: std::cell::RefCell<Vec<Facts>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    FACTS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut f) => fold_with(block, &mut f),
        // Only re-entered if a caller folds from inside a fold, which nothing does.
        Err(_) => fold_with(block, &mut Vec::new()),
    });
}

fn fold_with(block: &mut crate::Block, f: &mut Vec<Facts>) {
    f.clear();
    f.resize(block.temps.len(), Facts::default());
    for inst in &block.insts {
        if let Some(d) = inst.def() {
            let c = &mut f[d.0 as usize].defs;
            *c = c.saturating_add(1);
        }
    }
    let mut stretch = 0u32;
    let temps = &block.temps;
    for inst in block.insts.iter_mut() {
        if let Inst::SetLabel(_) = inst {
            stretch += 1;
            continue;
        }
        inst.for_each_use_mut(|t| {
            if let Some(r) = f[t.0 as usize].same(stretch) {
                *t = r;
            }
        });
        let Some(dst) = inst.def() else {
            continue;
        };
        if f[dst.0 as usize].defs != 1 {
            continue;
        }
        f[dst.0 as usize].seen = true;
        f[dst.0 as usize].def_at = stretch;
        let k = |t: Temp| f[t.0 as usize].known(stretch);
        let ty = |t: Temp| temps[t.0 as usize];
        let val = match *inst {
            Inst::Const { val, .. } => Some(val),
            Inst::Un { op, src, .. } => match op {
                // Kept as they are: a constant bit count is rare, and leaving them lets
                // the backends' own tests of these ops see constant operands.
                UnOp::Clz | UnOp::Ctz | UnOp::Popcnt => None,
                _ => k(src).map(|v| eval_un(op, ty(src), ty(dst), v)),
            },
            Inst::Bin { op, a, b, .. } => match (k(a), k(b)) {
                (Some(x), Some(y)) => Some(eval_bin(op, ty(a), x, y)),
                _ => None,
            },
            Inst::Setcond { cond, a, b, .. } => match (k(a), k(b)) {
                (Some(x), Some(y)) => Some(cond.eval(ty(a), x, y) as u64),
                _ => None,
            },
            Inst::Select { c, a, b, .. } => match k(c) {
                Some(cv) => k(if cv != 0 { a } else { b }),
                None => None,
            },
            _ => None,
        };
        if let Some(v) = val {
            let v = ty(dst).mask(v);
            f[dst.0 as usize].val = Some(v);
            *inst = Inst::Const { dst, val: v };
            continue;
        }
        let once = |f: &[Facts], t: Temp| f[t.0 as usize].defs == 1 && f[t.0 as usize].seen;
        let fwd = match *inst {
            Inst::Bin { op, a, b, .. } => identity(op, ty(dst), k(a), k(b)).map(|first| if first { a } else { b }),
            Inst::Un { op: UnOp::Trunc, src, .. } if ty(dst) == Ty::I32 && ty(src) == Ty::I64 => {
                f[src.0 as usize].sext_src(stretch)
            }
            Inst::Un { op: UnOp::Sext32, src, .. } if ty(dst) == Ty::I64 && ty(src) == Ty::I32 && once(f, src) => {
                let earlier = f[src.0 as usize].sext_of(stretch);
                if earlier.is_none() {
                    f[src.0 as usize].sext_of = Some((stretch, dst));
                    f[dst.0 as usize].sext_src = Some(src);
                }
                earlier
            }
            _ => None,
        };
        if let Some(r) = fwd.filter(|&r| once(f, r) && ty(r) == ty(dst)) {
            f[dst.0 as usize].same = Some(r);
        }
    }
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
    use crate::{BinOp, Builder, Cond, Exit, Ty};

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
