//! Runs of loads and stores off one base address (a stack frame's saves and restores, a
//! struct's fields) that can share one softmmu TLB probe.
//!
//! Every access normally probes the TLB inline (~10 host instructions). A group's first
//! member instead checks once that the group's whole byte range `[base+lo, base+hi)` lies
//! on one page that the TLB holds for every access kind the group needs; if so, each member
//! is `host_base + offset`, with no probe. If not (the range crosses a page, a tag carries a
//! flag bit: MMIO, code, watchpoint, or the entry holds another page), every member takes
//! its own probe as before, so faults, MMIO and self-modifying stores stay exact.
//!
//! Why the shortcut is sound: within a straight-line stretch nothing can change the
//! mapping of a page the check found in the TLB. Another access's slow path may evict the
//! entry, but an eviction does not change what the page maps to; a guest page-table store
//! takes effect only after `sfence.vma`, and helpers that flush the TLB (CSR writes,
//! `sfence.vma`) write unbounded state, which ends a group here (and they end their block
//! anyway). A page gets the CODE flag only when a block is translated, which happens
//! between blocks, never inside one. So a group never spans a label (a merge point the
//! check does not dominate), a branch, an exit, or such a call.

use kite_ir::{Access, BinOp, Block, Inst, Temp, Ty};

/// Fewest members for a group: with two the shared check saves little over two probes.
const MIN_MEMBERS: usize = 3;
/// Widest byte range a group may cover: wider ranges cross pages too often.
const MAX_SPAN: i64 = 512;
/// Largest offset from the base a member may have.
const MAX_OFFSET: u64 = 2048;

/// One group: the byte range its members touch relative to the base, which TLB tags
/// the check needs, and the index of its first member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MemGroup {
    pub base: Temp,
    pub lo: i64,
    pub hi: i64,
    pub read: bool,
    pub write: bool,
    pub first: usize,
}

/// The groups of a block: for each instruction, its group and offset if it is a member.
/// Also the analysis's scratch space: the Cranelift emitter keeps one and reuses it for
/// every block.
#[derive(Clone, Debug, Default)]
pub(crate) struct MemGroups {
    member: Vec<Option<(u32, i64)>>,
    pub groups: Vec<MemGroup>,
    defs: Vec<u8>,
    konst: Vec<Option<u64>>,
    add: Vec<Option<(Temp, Temp)>>,
    canon: Vec<Temp>,
    /// Guest-state fields whose value a temp holds: (offset, bytes, temp).
    state: Vec<(u32, u32, Temp)>,
    /// Groups open in the current stretch: (base, candidate).
    open: Vec<(Temp, u32)>,
    /// Candidate groups and their member counts.
    cand: Vec<(MemGroup, u32)>,
    /// Per instruction: (candidate, offset) of an access that joined one.
    joined: Vec<Option<(u32, i64)>>,
}

impl MemGroups {
    /// Instruction `i`'s group (number and description) and offset, if it is a member.
    pub fn of(&self, i: usize) -> Option<(u32, &MemGroup, i64)> {
        let (g, off) = (*self.member.get(i)?)?;
        Some((g, self.groups.get(g as usize)?, off))
    }
}

fn ty_bytes(ty: Ty) -> u32 {
    ty.bits() / 8
}

/// Find the groups of `block`.
#[cfg(test)]
pub(crate) fn analyze(block: &Block) -> MemGroups {
    analyze_into(block, MemGroups::default())
}

/// Find the groups of `block`, reusing `g`'s storage. Blocks with fewer loads and stores
/// than a group needs (most of them) cost one scan.
pub(crate) fn analyze_into(block: &Block, mut g: MemGroups) -> MemGroups {
    g.member.clear();
    g.groups.clear();
    let accesses = block.insts.iter().filter(|i| matches!(i, Inst::Load { .. } | Inst::Store { .. })).count();
    if accesses < MIN_MEMBERS {
        return g;
    }
    let n = block.temps.len();
    let MemGroups { member, groups, defs, konst, add, canon, state, open, cand, joined } = &mut g;
    defs.clear();
    defs.resize(n, 0);
    konst.clear();
    konst.resize(n, None);
    add.clear();
    add.resize(n, None);
    for inst in &block.insts {
        let Some(d) = inst.def() else { continue };
        let i = d.0 as usize;
        defs[i] = defs[i].saturating_add(1);
        match *inst {
            Inst::Const { val, .. } => konst[i] = Some(val),
            Inst::Bin { op: BinOp::Add, a, b, .. } => add[i] = Some((a, b)),
            _ => {}
        }
    }
    let once = |t: Temp| defs[t.0 as usize] == 1;
    // Frontends load a guest register afresh for each instruction (`ld_state`; backends
    // forward the stored value): temps that hold the same state value are one base.
    canon.clear();
    canon.extend((0..n as u32).map(Temp));
    state.clear();
    for inst in &block.insts {
        match *inst {
            Inst::LdState { dst, off } if once(dst) => {
                let len = ty_bytes(block.temps[dst.0 as usize]);
                match state.iter().find(|s| s.0 == off && s.1 == len) {
                    Some(s) => canon[dst.0 as usize] = s.2,
                    None => state.push((off, len, dst)),
                }
            }
            Inst::StState { src, off } => {
                let len = ty_bytes(block.temps[src.0 as usize]);
                state.retain(|s| s.0 + s.1 <= off || off + len <= s.0);
                if once(src) {
                    state.push((off, len, canon[src.0 as usize]));
                }
            }
            Inst::Call { helper, .. } if helper.effects.writes_state => match helper.effects.state_range {
                Some((lo, hi)) => state.retain(|s| s.0 + s.1 <= lo || hi <= s.0),
                None => state.clear(),
            },
            Inst::SetLabel(_) => state.clear(),
            _ => {}
        }
    }
    let k = |t: Temp| if once(t) { konst[t.0 as usize] } else { None };
    // An address as (base, offset): `base + constant` (either order), else itself + 0.
    let split = |addr: Temp| -> (Temp, i64) {
        let c = |t: Temp| canon[t.0 as usize];
        if once(addr) {
            if let Some((a, b)) = add[addr.0 as usize] {
                if let Some(v) = k(b) {
                    return (c(a), v as i64);
                }
                if let Some(v) = k(a) {
                    return (c(b), v as i64);
                }
            }
        }
        (c(addr), 0)
    };
    open.clear();
    cand.clear();
    joined.clear();
    joined.resize(block.insts.len(), None);
    for (i, inst) in block.insts.iter().enumerate() {
        let (addr, bytes, perm) = match *inst {
            // One that must be naturally aligned (`lr`) faults where a group's shared check
            // sees nothing wrong: it probes on its own (the TLB compare sees misalignment).
            Inst::Load { mop, .. } | Inst::Store { mop, .. } if mop.aligned => continue,
            Inst::Load { addr, mop, .. } => (addr, mop.size.bytes() as i64, mop.perm(Access::Read)),
            Inst::Store { addr, mop, .. } => (addr, mop.size.bytes() as i64, mop.perm(Access::Write)),
            Inst::SetLabel(_) | Inst::Br(_) | Inst::Exit(_) => {
                open.clear();
                continue;
            }
            Inst::Call { helper, .. } if helper.effects.writes_state && helper.effects.state_range.is_none() => {
                open.clear();
                continue;
            }
            _ => continue,
        };
        let (base, off) = split(addr);
        // Offsets of a load or store immediate (RISC-V: 12 bits) at most: the backends add
        // them as displacements, and Cranelift's "check failed" host base 0 can then never
        // be a real one (it would put `base + off` on the never-mapped zero page).
        if !once(base) || off.unsigned_abs() > MAX_OFFSET {
            continue;
        }
        let (lo, hi, write) = (off, off + bytes, perm == Access::Write);
        if let Some(s) = open.iter().position(|o| o.0 == base) {
            let c = open[s].1;
            let (grp, count) = &mut cand[c as usize];
            let (nlo, nhi) = (grp.lo.min(lo), grp.hi.max(hi));
            if nhi - nlo <= MAX_SPAN {
                (grp.lo, grp.hi) = (nlo, nhi);
                grp.read |= !write;
                grp.write |= write;
                *count += 1;
                joined[i] = Some((c, off));
                continue;
            }
            // Too wide: this access starts a new group off the same base.
            open.swap_remove(s);
        }
        cand.push((MemGroup { base, lo, hi, read: !write, write, first: i }, 1));
        open.push((base, cand.len() as u32 - 1));
        joined[i] = Some((cand.len() as u32 - 1, off));
    }
    // Candidates with enough members become groups, numbered in order (the count's
    // place now holds the group's number, or MAX).
    for (grp, count) in cand.iter_mut() {
        if *count as usize >= MIN_MEMBERS {
            *count = groups.len() as u32;
            groups.push(grp.clone());
        } else {
            *count = u32::MAX;
        }
    }
    if groups.is_empty() {
        return g;
    }
    member.resize(block.insts.len(), None);
    for (i, j) in joined.iter().enumerate() {
        if let Some((c, off)) = *j {
            let id = cand[c as usize].1;
            if id != u32::MAX {
                member[i] = Some((id, off));
            }
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_ir::{Builder, Exit, MemOp, MemSize};

    fn frame(b: &mut Builder, base: Temp, offs: &[i64]) {
        for &o in offs {
            let k = b.const64(o as u64);
            let a = b.bin(BinOp::Add, base, k);
            let v = b.const64(o as u64);
            b.store(v, a, MemOp::new(MemSize::B8, false));
        }
    }

    #[test]
    fn a_stack_frame_is_one_group_and_labels_split_groups() {
        let mut b = Builder::new(0x1000);
        let sp = b.ld_state(Ty::I64, 0x110);
        frame(&mut b, sp, &[8, 16, 24, 0]);
        let x = b.load(Ty::I64, sp, MemOp::new(MemSize::B4, true));
        b.st_state(x, 0x118);
        let l = b.label();
        b.set_label(l);
        frame(&mut b, sp, &[32, 40]);
        b.exit(Exit::Goto(0x1004));
        let blk = b.finish();
        let g = analyze(&blk);
        assert_eq!(g.groups.len(), 1, "the two stores after the label are too few: {g:?}");
        let grp = &g.groups[0];
        assert_eq!((grp.base, grp.lo, grp.hi, grp.read, grp.write), (sp, 0, 32, true, true));
        let offs: Vec<i64> = (0..blk.insts.len()).filter_map(|i| g.of(i).map(|(_, _, o)| o)).collect();
        assert_eq!(offs, [8, 16, 24, 0, 0]);
        assert_eq!(g.of(grp.first).map(|(_, _, o)| o), Some(8));
    }

    #[test]
    fn reloads_of_an_unchanged_register_are_one_base() {
        let mut b = Builder::new(0x1000);
        let sp = b.ld_state(Ty::I64, 0x110);
        let k = b.const64(-64i64 as u64);
        let nsp = b.bin(BinOp::Add, sp, k);
        b.st_state(nsp, 0x110);
        for off in [8, 16, 24] {
            let again = b.ld_state(Ty::I64, 0x110);
            frame(&mut b, again, &[off]);
        }
        // A store to the register starts another base.
        b.st_state(sp, 0x110);
        for off in [8, 16, 24] {
            let again = b.ld_state(Ty::I64, 0x110);
            frame(&mut b, again, &[off]);
        }
        b.exit(Exit::Goto(0x1004));
        let g = analyze(&b.finish());
        assert_eq!(g.groups.iter().map(|g| (g.base, g.lo, g.hi)).collect::<Vec<_>>(), [(nsp, 8, 32), (sp, 8, 32)]);
    }

    #[test]
    fn wide_ranges_and_redefined_bases_do_not_group() {
        let mut b = Builder::new(0x1000);
        let p = b.ld_state(Ty::I64, 0x110);
        frame(&mut b, p, &[0, 600, 1200]);
        // Offsets beyond a load/store immediate's reach (see `MAX_OFFSET`).
        let r = b.ld_state(Ty::I64, 0x120);
        frame(&mut b, r, &[4096, 4104, 4112]);
        // A base that is a `mov` destination (defined twice) is no base.
        let q = b.ld_state(Ty::I64, 0x118);
        b.mov(q, p);
        frame(&mut b, q, &[0, 8, 16]);
        b.exit(Exit::Goto(0x1004));
        let g = analyze(&b.finish());
        assert!(g.groups.is_empty(), "{g:?}");
    }
}
