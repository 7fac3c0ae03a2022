//! Clean-ups run on a translated block before any tier sees it.
//!
//! Frontends emit IR one guest instruction at a time, so a 32-bit RISC-V op on an
//! immediate becomes `const`, `trunc` of that const, then the op. Cranelift at
//! `opt_level=none` (what the hot tier uses: its optimiser costs more compile time than it
//! wins back in a boot) folds nothing, so the truncated constant reached the host as a
//! register (`mov r8d, 1; shrx ...` for `srliw a4, a4, 1`). Folding here costs one pass
//! over the block and helps every tier.

use crate::interp::{eval_bin, eval_un};
use crate::{Inst, Temp, UnOp};

/// Replace pure operations whose operands are all constants by constants.
///
/// Only temps written exactly once take part, and a constant is only used from its
/// definition to the next label: IR may read a temp on a path that skipped its only write
/// (it reads as 0, e.g. past a forward branch or in a loop's first iteration), and a label
/// is the only place such a path can join. Within one label-free stretch, every execution
/// of a later read has just passed the definition. Frontends define their constants next
/// to their uses, so this loses next to nothing.
pub fn fold_constants(block: &mut crate::Block) {
    let n = block.temps.len();
    let mut defs = vec![0u8; n];
    for inst in &block.insts {
        if let Some(d) = inst.def() {
            let c = &mut defs[d.0 as usize];
            *c = c.saturating_add(1);
        }
    }
    // (stretch between labels, value): a value counts only in the stretch it was made in.
    let mut known: Vec<(u32, Option<u64>)> = vec![(0, None); n];
    let mut stretch = 0u32;
    let temps = &block.temps;
    for inst in block.insts.iter_mut() {
        if let Inst::SetLabel(_) = inst {
            stretch += 1;
            continue;
        }
        let Some(dst) = inst.def() else {
            continue;
        };
        if defs[dst.0 as usize] != 1 {
            continue;
        }
        let k = |t: Temp| match known[t.0 as usize] {
            (s, v) if s == stretch => v,
            _ => None,
        };
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
            known[dst.0 as usize] = (stretch, Some(v));
            *inst = Inst::Const { dst, val: v };
        }
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
