//! Differential tests: every block runs through the interpreter tier and the JIT on
//! identical CPU state and memory; state bytes (header with TLB, registers, scratch),
//! RAM, the MMIO log and the exit values must match. Each block runs twice so the second
//! run exercises the inline TLB fast path the first run filled.

use std::sync::Arc;

use kite_core::{PhysMemory, VmControl};
use kite_ir::state::{offsets, status};
use kite_ir::{BinOp, Block, Builder, Cond, Effects, Exit, FpOp, Helper, MemOp, MemSize, RmwOp, Temp, Ty, UnOp};

use super::mock::*;
use crate::engine::normalise;
use crate::{Engine, JitOptions, Tier};

const CODE_PHYS: u64 = 0x3000_0000;

type Outcome = (Vec<u64>, Vec<u8>, Vec<u8>, Vec<(bool, u64, u32, u64)>);

fn init(cpu: &mut MockCpu) {
    for (i, r) in cpu.regs.iter_mut().enumerate() {
        *r = (i as u64).wrapping_mul(0x0101_0101_0101_0101) ^ 0x8000_0000_0000_0010;
    }
    for (i, s) in cpu.scratch.iter_mut().enumerate() {
        *s = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    cpu.regs[1] = RAM_BASE + 0x100;
    cpu.regs[2] = MMIO_BASE + 0x10;
}

/// `reference`: interpret with the reference interpreter instead of the fast tier.
fn run_tier(tier: Tier, reference: bool, block: &Block, setup: &dyn Fn(&mut MockCpu)) -> Outcome {
    let (mem, dev) = machine();
    let vm = Arc::new(VmControl::new());
    // Tiered with a threshold never reached: the block runs as baseline code.
    let opts = JitOptions { tier, verify: true, thresh: 1 << 30, background: false, ..JitOptions::default() };
    let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), opts).unwrap();
    e.set_reference_interp(reference);
    let mut cpu = MockCpu::new(vm);
    init(&mut cpu);
    setup(&mut cpu);
    let id = e.install(&mut cpu, block.clone(), CODE_PHYS, None, 0, 0).unwrap();
    let st = e.stats();
    if tier == Tier::Jit {
        assert_eq!((st.tbs_compiled, st.compile_fallbacks), (1, 0), "block did not compile:\n{block}");
    }
    if tier == Tier::Tiered {
        // It declines only backward branches (the block is interpreted then).
        let expect = !has_backward_branch(block) as u64;
        assert_eq!(st.tbs_baseline, expect, "the baseline compiler's choice for:\n{block}");
    }

    let mut outs = Vec::new();
    for _ in 0..2 {
        outs.push(normalise(e.exec(&mut *cpu as *mut MockCpu, id)));
        // The header status must never leak out of a block.
        assert_eq!(cpu.h.status, 0, "status left set by {tier:?}:\n{block}");
    }
    if tier == Tier::Interp {
        let fast = !reference && kite_ir::fast::FastBlock::decode(block, std::mem::size_of::<MockCpu>()).is_some();
        assert_eq!(e.stats().tbs_fast_interp, fast as u64, "{block}");
    }
    let log = dev.log.lock().unwrap().clone();
    // TLB addends hold host addresses, which differ between the two machines: compare
    // them relative to where each machine's RAM is mapped.
    let host_ram = mem.ram_ptr(RAM_BASE).unwrap().0 as u64;
    for m in 0..kite_ir::state::MMU_MODES {
        for e in cpu.h.tlb_entries_mut(m).iter_mut().filter(|e| **e != kite_ir::state::TlbEntry::EMPTY) {
            e.addend = e.addend.wrapping_sub(host_ram.wrapping_sub(RAM_BASE));
        }
    }
    // Scratch for Cranelift code's slow-path calls: only meaningful right after one.
    cpu.h.slow_ret = 0;
    cpu.h.slow_args = [0; 5];
    (outs, cpu.state_bytes(), ram_bytes(&mem), log)
}

fn has_backward_branch(block: &Block) -> bool {
    let mut placed = vec![false; block.nlabels as usize];
    block.insts.iter().any(|i| match *i {
        kite_ir::Inst::SetLabel(l) => {
            placed[l.0 as usize] = true;
            false
        }
        kite_ir::Inst::Br(l) | kite_ir::Inst::BrCond { target: l, .. } => placed[l.0 as usize],
        _ => false,
    })
}

fn check_with(block: &Block, setup: &dyn Fn(&mut MockCpu)) -> Outcome {
    // Generated blocks keep branches within one guest instruction: the fast tier takes all.
    assert!(
        kite_ir::fast::FastBlock::decode(block, std::mem::size_of::<MockCpu>()).is_some(),
        "fast tier declined\n{block}"
    );
    check_any(block, setup)
}

/// As [`check_with`], for blocks the fast interpreter may decline (it then runs the
/// reference interpreter too).
fn check_any(block: &Block, setup: &dyn Fn(&mut MockCpu)) -> Outcome {
    block.validate().unwrap_or_else(|e| panic!("invalid test block: {e}\n{block}"));
    let a = run_tier(Tier::Interp, true, block, setup);
    let f = run_tier(Tier::Interp, false, block, setup);
    let b = run_tier(Tier::Jit, false, block, setup);
    let c = run_tier(Tier::Tiered, false, block, setup);
    for (name, o) in [("fast interp", &f), ("jit", &b), ("baseline", &c)] {
        assert_eq!(a.0, o.0, "exit values differ (reference vs {name}) for\n{block}");
        if a.1 != o.1 {
            let i = a.1.iter().zip(&o.1).position(|(x, y)| x != y).unwrap();
            panic!("state differs at byte {i:#x} (reference {:#x}, {name} {:#x}) for\n{block}", a.1[i], o.1[i]);
        }
        assert!(a.2 == o.2, "RAM differs (reference vs {name}) for\n{block}");
        assert_eq!(a.3, o.3, "MMIO log differs (reference vs {name}) for\n{block}");
    }
    a
}

fn check(block: &Block) -> Outcome {
    check_with(block, &|_| {})
}

const BINOPS: [BinOp; 22] = BinOp::ALL;
const UNOPS: [UnOp; 13] = UnOp::ALL;
const CONDS: [Cond; 10] = Cond::ALL;

fn edge_values(ty: Ty) -> Vec<u64> {
    let v = [
        0u64,
        1,
        2,
        7,
        u64::MAX,
        u64::MAX - 6,
        1 << 63,
        (1 << 63) - 1,
        0x8000_0000,
        0x7fff_ffff,
        0xffff_ffff,
        31,
        32,
        63,
        64,
        0x1234_5678_9abc_def0,
    ];
    let mut out: Vec<u64> = v.iter().map(|&x| ty.mask(x)).collect();
    out.dedup();
    out
}

/// Scratch layout for the generated tests: inputs at 0.., outputs at 16...
fn val_off(i: usize) -> u32 {
    SCRATCH + 8 * i as u32
}
fn out_off(k: usize) -> u32 {
    SCRATCH + 8 * (16 + k as u32)
}

fn setup_values(vals: Vec<u64>) -> impl Fn(&mut MockCpu) {
    move |cpu: &mut MockCpu| {
        for (i, v) in vals.iter().enumerate() {
            cpu.scratch[i] = *v;
        }
    }
}

#[test]
fn every_binop_on_both_types_with_edge_values() {
    for ty in [Ty::I32, Ty::I64] {
        let vals = edge_values(ty);
        for op in BINOPS {
            // Operands from state (computed at run time) ...
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let mut k = 0;
            for i in 0..vals.len() {
                for j in 0..vals.len() {
                    let x = b.ld_state(ty, val_off(i));
                    let y = b.ld_state(ty, val_off(j));
                    let r = b.bin(op, x, y);
                    b.st_state(r, out_off(k));
                    k += 1;
                }
            }
            b.exit(Exit::Goto(0x1004));
            b.set_extent(1, 4);
            check_with(&b.finish(), &setup_values(vals.clone()));
            // ... and from constants (what Cranelift may fold).
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let mut k = 0;
            for &x in &vals {
                for &y in &vals {
                    let x = b.const_(ty, x);
                    let y = b.const_(ty, y);
                    let r = b.bin(op, x, y);
                    b.st_state(r, out_off(k));
                    k += 1;
                }
            }
            b.exit(Exit::Goto(0x1004));
            check(&b.finish());
        }
    }
}

/// Float operands (bit patterns): zeros, normals, extremes, subnormals, infinities and a
/// NaN. (NaN results are the host's default NaN in every tier: all of them use SSE.)
fn float_values(ty: Ty) -> Vec<u64> {
    let d = [0.0, -0.0, 1.0, -1.5, 3.0, 1e300, -1e-300, 5e-324, f64::MAX, f64::INFINITY, f64::NEG_INFINITY, f64::NAN];
    match ty {
        Ty::I64 => d.iter().map(|v| v.to_bits()).collect(),
        Ty::I32 => d.iter().map(|&v| (v as f32).to_bits() as u64).chain([1]).collect(),
    }
}

#[test]
fn every_fp_op_on_both_types_with_float_values() {
    fp_ops_with_float_values();
    // Fused multiply-add as a call, as on a host without FMA.
    crate::codegen::NO_FMA.store(true, std::sync::atomic::Ordering::Relaxed);
    fp_ops_with_float_values();
    crate::codegen::NO_FMA.store(false, std::sync::atomic::Ordering::Relaxed);
}

fn fp_ops_with_float_values() {
    for ty in [Ty::I32, Ty::I64] {
        let vals = float_values(ty);
        let n = vals.len();
        for op in FpOp::ALL {
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let mut k = 0;
            for i in 0..n {
                for j in 0..n {
                    let x = b.ld_state(ty, val_off(i));
                    let y = b.ld_state(ty, val_off(j));
                    let z = b.ld_state(ty, val_off((i + j) % n));
                    let r = b.fp(op, &[x, y, z]);
                    b.st_state(r, out_off(k % 200));
                    k += 1;
                }
            }
            b.exit(Exit::Goto(0x1004));
            b.set_extent(1, 4);
            check_with(&b.finish(), &setup_values(vals.clone()));
        }
    }
}

#[test]
fn every_unop_with_every_type_pair() {
    for sty in [Ty::I32, Ty::I64] {
        let vals = edge_values(sty);
        for op in UNOPS {
            let ext = matches!(
                op,
                UnOp::Sext8 | UnOp::Sext16 | UnOp::Sext32 | UnOp::Zext8 | UnOp::Zext16 | UnOp::Zext32 | UnOp::Trunc
            );
            for dty in [Ty::I32, Ty::I64] {
                if !ext && dty != sty {
                    continue;
                }
                let mut b = Builder::new(0x1000);
                b.insn_start(0x1000);
                for (i, &v) in vals.iter().enumerate() {
                    let x = b.ld_state(sty, val_off(i));
                    let r = b.ext(op, dty, x);
                    b.st_state(r, out_off(2 * i));
                    let c = b.const_(sty, v);
                    let r = b.ext(op, dty, c);
                    b.st_state(r, out_off(2 * i + 1));
                }
                b.exit(Exit::Goto(0x1004));
                check_with(&b.finish(), &setup_values(vals.clone()));
            }
        }
    }
}

#[test]
fn setcond_select_and_brcond_on_both_types() {
    for ty in [Ty::I32, Ty::I64] {
        let vals = edge_values(ty);
        for cond in CONDS {
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let mut k = 0;
            for i in 0..vals.len() {
                for j in 0..vals.len() {
                    let x = b.ld_state(ty, val_off(i));
                    let y = b.ld_state(ty, val_off(j));
                    let dst = b.temp(if k % 2 == 0 { Ty::I64 } else { Ty::I32 });
                    b.push(kite_ir::Inst::Setcond { cond, dst, a: x, b: y });
                    b.st_state(dst, out_off(k));
                    // Select on a computed condition, and a branch on the same comparison.
                    let s = b.select(x, y, x);
                    b.st_state(s, out_off(300 + (k % 100)));
                    k += 1;
                }
            }
            // A brcond ladder: count how many pairs satisfy the condition.
            let cnt = b.const64(0);
            let one = b.const64(1);
            for i in 0..vals.len() {
                let x = b.ld_state(ty, val_off(i));
                let y = b.ld_state(ty, val_off((i * 5 + 3) % vals.len()));
                let skip = b.label();
                b.brcond(cond, x, y, skip);
                let c2 = b.bin(BinOp::Add, cnt, one);
                b.mov(cnt, c2);
                b.set_label(skip);
            }
            b.st_state(cnt, reg(9));
            b.exit(Exit::Goto(0x1004));
            check_with(&b.finish(), &setup_values(vals.clone()));
        }
    }
}

/// Addresses for memory tests: (vaddr, description).
fn mem_addrs() -> Vec<u64> {
    vec![
        RAM_BASE + 0x200,        // aligned RAM
        RAM_BASE + 0x201,        // misaligned by 1
        RAM_BASE + 0x203,        // misaligned by 3
        RAM_BASE + 0x1000 - 2,   // crosses a page (for sizes > 2)
        RAM_BASE + 0x1000 - 1,   // crosses a page (for sizes > 1)
        RAM_BASE + RAM_SIZE - 2, // crosses the end of RAM
        MMIO_BASE + 0x20,        // device
        MMIO_BASE + 0x21,        // misaligned device access
        0x5000_0000,             // hole: access fault
        FAULT_VA + 0x10,         // page fault
    ]
}

/// `x + k1 + k2` (Cranelift code folds the two constants into one add), wrapping, on both
/// types, with the constants on either side.
#[test]
fn nested_constant_adds_wrap_like_two_adds() {
    for ty in [Ty::I32, Ty::I64] {
        let ks = [0u64, 1, 0x7fff_ffff, 0x8000_0000, u64::MAX, 0x58, (-112i64) as u64];
        for &k1 in &ks {
            for &k2 in &ks {
                let mut b = Builder::new(0x1000);
                b.insn_start(0x1000);
                for (i, swap) in [false, true].into_iter().enumerate() {
                    let x = b.ld_state(ty, val_off(0));
                    let c1 = b.const_(ty, k1);
                    let y = if swap { b.bin(BinOp::Add, c1, x) } else { b.bin(BinOp::Add, x, c1) };
                    let c2 = b.const_(ty, k2);
                    let z = if swap { b.bin(BinOp::Add, c2, y) } else { b.bin(BinOp::Add, y, c2) };
                    b.st_state(z, out_off(i));
                }
                b.exit(Exit::Goto(0x1004));
                b.set_extent(1, 4);
                check_with(&b.finish(), &setup_values(vec![0xffff_ffff_ffff_fff0]));
            }
        }
    }
}

/// Runs of accesses off one base share one TLB check in Cranelift code (`memgroup`): on a
/// page the TLB holds, across a page or the end of RAM, on MMIO, in a hole, on a page that
/// faults, misaligned; stores, loads and both. The block runs twice, so the second run
/// finds the TLB filled.
#[test]
fn access_groups_match_per_access_probes_everywhere() {
    let bases = [
        RAM_BASE + 0x208,
        RAM_BASE + 0x203,
        RAM_BASE + 0x1000 - 20,
        RAM_BASE + RAM_SIZE - 20,
        MMIO_BASE + 0x28,
        0x5000_0000,
        FAULT_VA + 0x10,
    ];
    let accesses: [(i64, MemSize, bool); 6] = [
        (0, MemSize::B8, true),
        (8, MemSize::B4, false),
        (12, MemSize::B2, true),
        (-8, MemSize::B8, false),
        (16, MemSize::B1, true),
        (4, MemSize::B4, true),
    ];
    for base in bases {
        for pattern in 0..3 {
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let p = b.ld_state(Ty::I64, val_off(0));
            for (k, &(off, size, store)) in accesses.iter().enumerate() {
                b.insn_start(0x1004 + 4 * k as u64);
                let c = b.const64(off as u64);
                let a = b.bin(BinOp::Add, p, c);
                let mop = MemOp::new(size, k % 2 == 0);
                if pattern == 0 || (pattern == 2 && store) {
                    let v = b.ld_state(Ty::I64, val_off(1 + k));
                    b.store(v, a, mop);
                } else {
                    let x = b.load(Ty::I64, a, mop);
                    b.st_state(x, out_off(k));
                }
            }
            b.exit(Exit::Goto(0x2000));
            b.set_extent(accesses.len() as u32 + 1, 4 * (accesses.len() as u32 + 1));
            let block = b.finish();
            assert_eq!(crate::memgroup::analyze(&block).groups.len(), 1, "{block}");
            let vals = std::iter::once(base).chain((1..8).map(|i| 0x0102_0304_0506_0708u64.wrapping_mul(i))).collect();
            check_with(&block, &setup_values(vals));
        }
    }
}

/// An access that must be naturally aligned (`lr`) takes no part in a group: off a
/// misaligned base it still faults, where the group's members do not.
#[test]
fn accesses_that_must_be_aligned_stay_out_of_groups() {
    for base in [RAM_BASE + 0x208, RAM_BASE + 0x202] {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let p = b.ld_state(Ty::I64, val_off(0));
        let mut lr = None;
        for (k, off) in [0i64, 8, 16, 24].into_iter().enumerate() {
            b.insn_start(0x1004 + 4 * k as u64);
            let c = b.const64(off as u64);
            let a = b.bin(BinOp::Add, p, c);
            let mop = MemOp::new(MemSize::B4, true);
            let x = if k == 2 {
                lr = Some(b.len());
                b.load(Ty::I64, a, mop.aligned())
            } else {
                b.load(Ty::I64, a, mop)
            };
            b.st_state(x, out_off(k));
        }
        b.exit(Exit::Goto(0x2000));
        b.set_extent(5, 20);
        let block = b.finish();
        let groups = crate::memgroup::analyze(&block);
        assert_eq!(groups.groups.len(), 1, "{block}");
        assert!(groups.of(lr.unwrap()).is_none(), "{block}");
        check_with(&block, &setup_values(vec![base]));
    }
}

#[test]
fn loads_and_stores_of_every_size_and_address_kind() {
    for size in [MemSize::B1, MemSize::B2, MemSize::B4, MemSize::B8] {
        for signed in [false, true] {
            for aligned in [false, true] {
                for addr in mem_addrs() {
                    for (ty, rmw) in [(Ty::I32, false), (Ty::I64, false), (Ty::I64, true)] {
                        // rmw: the read half of an AMO (write permission, store faults).
                        let mop = MemOp { size, signed, aligned, rmw };
                        // Load: a dirty register before it must be visible even on a fault.
                        let mut b = Builder::new(0x1000);
                        b.insn_start(0x1000);
                        let v = b.const64(0xabcd);
                        b.st_state(v, reg(3));
                        b.insn_start(0x1004);
                        let a = b.const64(addr);
                        let x = b.load(ty, a, mop);
                        b.st_state(x, reg(4));
                        b.insn_start(0x1008);
                        let y = b.load(ty, a, mop);
                        b.st_state(y, reg(5));
                        b.exit(Exit::Goto(0x100c));
                        b.set_extent(3, 12);
                        check(&b.finish());
                        // Store, then read back through a different size.
                        let mut b = Builder::new(0x1000);
                        b.insn_start(0x1000);
                        let v = b.ld_state(ty, reg(6));
                        let a = b.const64(addr);
                        b.st_state(a, reg(7));
                        b.store(v, a, mop);
                        b.insn_start(0x1004);
                        let y = b.load(Ty::I64, a, MemOp::new(MemSize::B8, false));
                        b.st_state(y, reg(8));
                        b.exit(Exit::Goto(0x1008));
                        b.set_extent(2, 8);
                        check(&b.finish());
                    }
                }
            }
        }
    }
}

#[test]
fn atomics_of_every_op_size_and_address_kind() {
    let aligned_ram = RAM_BASE + 0x200;
    // Negative at 32 and 64 bits (signed min/max, sign-extended old values) in both the
    // old value and the operand.
    let init = 0x8000_0000_ffff_fff0u64;
    let src = 0xffff_ffff_8000_0005u64;
    for op in RmwOp::ALL {
        for (size, ty) in [(MemSize::B4, Ty::I32), (MemSize::B4, Ty::I64), (MemSize::B8, Ty::I64)] {
            for signed in [false, true] {
                // A Cas that succeeds and one that fails.
                for expected in [init, 0] {
                    for addr in mem_addrs() {
                        let mop = MemOp { size, signed, aligned: true, rmw: false };
                        let mut b = Builder::new(0x1000);
                        b.insn_start(0x1000);
                        let v = b.const64(init);
                        let a = b.const64(addr);
                        b.store(v, a, MemOp::new(MemSize::B8, false));
                        b.insn_start(0x1004);
                        let s = b.ld_state(ty, reg(6));
                        let old = if op == RmwOp::Cas {
                            let e = b.ld_state(ty, reg(7));
                            b.cas(a, e, s, mop)
                        } else {
                            b.atomic(op, a, s, mop)
                        };
                        b.st_state(old, reg(4));
                        b.insn_start(0x1008);
                        let y = b.load(Ty::I64, a, MemOp::new(MemSize::B8, false));
                        b.st_state(y, reg(8));
                        b.exit(Exit::Goto(0x100c));
                        b.set_extent(3, 12);
                        let out = check_with(&b.finish(), &|c| {
                            c.regs[6] = src;
                            c.regs[7] = expected;
                        });
                        if addr != aligned_ram {
                            continue;
                        }
                        let rd =
                            |off: u32| u64::from_le_bytes(out.1[off as usize..off as usize + 8].try_into().unwrap());
                        let keep = if size == MemSize::B4 { init & !0xffff_ffff } else { 0 };
                        let new = op.apply(size, init, ty.mask(src), ty.mask(expected)).map_or(init, |n| keep | n);
                        assert_eq!(rd(reg(8)), new, "{op:?} {size:?} {ty:?} memory");
                        let mask = if size == MemSize::B4 { 0xffff_ffff } else { u64::MAX };
                        let want = kite_ir::interp::extend_load(init & mask, mop, ty);
                        assert_eq!(ty.mask(rd(reg(4))), want, "{op:?} {size:?} {ty:?} old value");
                    }
                }
            }
        }
    }
}

/// Values read from guest state stay valid after the field is overwritten: by a store to
/// it, on one side of a branch, and by a helper that writes state (the baseline compiler
/// reads single-use state loads where they are used, and must write them out first).
#[test]
fn state_reads_survive_later_writes_of_the_field() {
    for case in 0..4 {
        for taken in [false, true] {
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let old4 = b.ld_state(Ty::I64, reg(4));
            let old4w = b.ld_state(Ty::I32, reg(4));
            let k0 = b.const64(0x1234_5678_9abc);
            let k32 = b.const32(0x8000_0001);
            // The new field value depends on the old one, so the block's second run (see
            // `run_tier`) shows a stale read of the first.
            let k = b.bin(BinOp::Add, old4, k0);
            let k32 = b.bin(BinOp::Xor, old4w, k32);
            match case {
                0 => b.st_state(k, reg(4)),
                1 => {
                    // Write the field on the fall-through side only.
                    let l = b.label();
                    let x = b.const64(taken as u64);
                    let zero = b.const64(0);
                    b.brcond(Cond::Ne, x, zero, l);
                    b.st_state(k, reg(4));
                    b.set_label(l);
                }
                2 => {
                    b.call(&HELPERS[2], &[k]);
                }
                _ => {
                    // A narrower store into the field's low half.
                    b.st_state(k32, reg(4));
                }
            }
            let sum = b.bin(BinOp::Add, old4, k);
            b.st_state(old4, reg(8));
            b.st_state(sum, reg(9));
            let w = b.bin(BinOp::Xor, old4w, k32);
            b.st_state(w, reg(10));
            b.exit(Exit::Goto(0x1004));
            b.set_extent(1, 4);
            // Every tier must agree with the reference interpreter (the block runs twice, so
            // the second run reads what the first wrote).
            check_any(&b.finish(), &|_| {});
        }
    }
}

/// A loop inside a block that stores to a field read before the loop: the value read must
/// be the one from before the loop in every iteration (the baseline compiler reads such
/// values at their uses; it declines blocks with backward branches, which this checks too).
#[test]
fn a_state_read_before_a_loop_that_stores_the_field() {
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    let old = b.ld_state(Ty::I64, reg(4));
    let i = b.const64(0);
    let one = b.const64(1);
    let n = b.const64(3);
    let top = b.label();
    b.set_label(top);
    b.st_state(old, reg(5));
    let next = b.bin(BinOp::Add, i, one);
    b.mov(i, next);
    b.st_state(next, reg(4));
    b.brcond(Cond::LtU, i, n, top);
    b.exit(Exit::Goto(0x1004));
    b.set_extent(1, 4);
    check_any(&b.finish(), &|_| {});
}

#[test]
fn faults_are_precise_and_flush_cached_state() {
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    let v = b.const64(0x77);
    b.st_state(v, reg(3));
    b.insn_start(0x1004);
    let a = b.const64(FAULT_VA);
    b.load(Ty::I64, a, MemOp::new(MemSize::B4, false));
    b.exit(Exit::Goto(0x1008));
    let out = check(&b.finish());
    assert_eq!(out.0, vec![status::EXCEPTION as u64; 2]);
    let rd = |off: u32| u64::from_le_bytes(out.1[off as usize..off as usize + 8].try_into().unwrap());
    assert_eq!(rd(offsets::PC), 0x1004);
    assert_eq!(rd(offsets::CAUSE), 13);
    assert_eq!(rd(offsets::TVAL), FAULT_VA);
    assert_eq!(rd(reg(3)), 0x77);
}

// Helpers, one per Effects combination; each does only what it declares.
fn st(cpu: *mut u8) -> &'static mut MockCpu {
    // SAFETY: helpers are only called with the MockCpu being run.
    unsafe { &mut *(cpu as *mut MockCpu) }
}
unsafe extern "C" fn h_pure(_c: *mut u8, a: u64, b: u64, c: u64, d: u64) -> u64 {
    a.wrapping_mul(3).wrapping_add(b ^ c).wrapping_sub(d)
}
unsafe extern "C" fn h_read(c: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    st(c).regs[3].wrapping_add(a)
}
unsafe extern "C" fn h_write(c: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    st(c).regs[4] = a.wrapping_add(1);
    0
}
unsafe extern "C" fn h_rw(c: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    let s = st(c);
    s.regs[5] = s.regs[5].wrapping_add(a);
    s.regs[5]
}
unsafe extern "C" fn h_exit(c: *mut u8, a: u64, b: u64, _: u64, _: u64) -> u64 {
    if a == 1 {
        let s = st(c);
        s.h.status = status::EXCEPTION;
        s.h.cause = 77;
        s.h.tval = b;
    }
    a
}
unsafe extern "C" fn h_all(c: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    let s = st(c);
    s.regs[6] = s.regs[3] ^ a;
    if a == 2 {
        s.h.status = status::HALT;
        s.h.pc = 0x4444;
    }
    s.regs[6]
}

const fn eff(reads_state: bool, writes_state: bool, may_exit: bool) -> Effects {
    Effects { reads_state, writes_state, may_exit, cold: false, state_range: None }
}

static HELPERS: [Helper; 8] = [
    Helper { name: "pure", func: h_pure, nargs: 4, ret: Some(Ty::I64), effects: Effects::PURE },
    Helper { name: "read", func: h_read, nargs: 1, ret: Some(Ty::I64), effects: eff(true, false, false) },
    Helper { name: "write", func: h_write, nargs: 1, ret: None, effects: eff(false, true, false) },
    Helper { name: "rw", func: h_rw, nargs: 1, ret: Some(Ty::I32), effects: eff(true, true, false) },
    Helper { name: "exit", func: h_exit, nargs: 2, ret: Some(Ty::I64), effects: eff(false, false, true) },
    Helper { name: "read_exit", func: h_read, nargs: 1, ret: Some(Ty::I64), effects: eff(true, false, true) },
    Helper { name: "write_exit", func: h_write, nargs: 1, ret: None, effects: eff(false, true, true) },
    Helper { name: "all", func: h_all, nargs: 1, ret: Some(Ty::I64), effects: Effects::ALL },
];

/// Touches only `regs[5]` (its declared `state_range`); raises if `b` is 1.
unsafe extern "C" fn h_cold(c: *mut u8, a: u64, b: u64, _: u64, _: u64) -> u64 {
    let s = st(c);
    s.regs[5] = s.regs[5].wrapping_add(a);
    if b == 1 {
        s.h.status = status::EXCEPTION;
        s.h.cause = 5;
        s.h.tval = a;
    }
    s.regs[5]
}

static COLD: Helper = Helper {
    name: "cold",
    func: h_cold,
    nargs: 2,
    ret: Some(Ty::I64),
    effects: Effects { cold: true, state_range: Some((REGS + 40, REGS + 48)), ..Effects::ALL },
};

/// A cold helper with a `state_range`: Cranelift calls it through the registers-preserving
/// stub (integer and float values live across it survive), writes back and reloads only the
/// range around it, and stores everything else (a dirty register outside the range) when
/// the helper raises.
#[test]
fn cold_calls_with_a_state_range_keep_values_and_store_all_on_exit() {
    for raise in [0u64, 1] {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let (f1, f2) = (b.ld_state(Ty::I64, reg(2)), b.ld_state(Ty::I64, reg(3)));
        let prod = b.fp(FpOp::Mul, &[f1, f2]);
        let ints: Vec<Temp> = (0..6)
            .map(|i| {
                let r = b.ld_state(Ty::I64, reg(i));
                let k = b.const64(0x1111 * (i as u64 + 1));
                b.bin(BinOp::Add, r, k)
            })
            .collect();
        b.st_state(ints[0], reg(7)); // dirty, outside the range
        b.st_state(ints[1], reg(5)); // dirty, inside it
        let flag = b.const64(raise);
        let r = b.call(&COLD, &[ints[2], flag]).unwrap();
        let sum = b.fp(FpOp::Add, &[prod, prod]);
        b.st_state(sum, reg(6));
        let back = b.ld_state(Ty::I64, reg(5));
        let mut acc = b.bin(BinOp::Xor, r, back);
        for &t in &ints[3..] {
            acc = b.bin(BinOp::Add, acc, t);
        }
        b.st_state(acc, reg(0));
        b.exit(Exit::Goto(0x1004));
        b.set_extent(1, 4);
        check_any(&b.finish(), &|cpu| {
            cpu.regs[2] = 1.5f64.to_bits();
            cpu.regs[3] = (-3.25f64).to_bits();
        });
    }
}

fn helper_table() -> Vec<&'static Helper> {
    HELPERS.iter().collect()
}

#[test]
fn ir_files() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ir");
    let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    let mut n = 0;
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "ir")) {
        let text = std::fs::read_to_string(p).unwrap();
        let block = kite_ir::text::parse(&text, &helper_table()).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let out = check_any(&block, &|_| {});
        // An `# expect: N` line pins the first exit value.
        if let Some(l) = text.lines().find_map(|l| l.trim().strip_prefix("# expect:")) {
            assert_eq!(out.0[0], l.trim().parse::<u64>().unwrap(), "{}", p.display());
        }
        n += 1;
    }
    assert!(n >= 8, "IR test files missing");
}

/// Cranelift calls the softmmu slow path with a convention that clobbers no register
/// (`stub::keep_regs_entry`): sixteen values held across slow-path loads and a store
/// (MMIO, so every access misses the TLB) must come out unchanged.
#[test]
fn values_live_across_slow_paths_survive() {
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    let vals: Vec<Temp> = (0..16)
        .map(|i| {
            let k = b.const64(0x0101_0101_0101_0101u64.wrapping_mul(i + 1) ^ (i << 40));
            let r = b.ld_state(Ty::I64, reg(i as u32 % 8));
            b.bin(BinOp::Xor, k, r)
        })
        .collect();
    let a = b.const64(MMIO_BASE + 8);
    let x = b.load(Ty::I64, a, MemOp::new(MemSize::B8, false));
    b.store(vals[3], a, MemOp::new(MemSize::B4, false));
    let y = b.load(Ty::I64, a, MemOp::new(MemSize::B2, true));
    let mut acc = b.bin(BinOp::Add, x, y);
    for (i, &v) in vals.iter().enumerate() {
        let rot = b.const64(i as u64 * 3 + 1);
        let r = b.bin(BinOp::Rotl, v, rot);
        acc = b.bin(BinOp::Add, acc, r);
        b.st_state(v, reg(8 + i as u32 % 8));
    }
    b.st_state(acc, reg(0));
    b.exit(Exit::Goto(0x1004));
    b.set_extent(1, 4);
    check_any(&b.finish(), &|cpu| {
        for (i, r) in cpu.regs.iter_mut().enumerate() {
            *r = 0x9e37_79b9_7f4a_7c15u64.rotate_left(i as u32 * 7);
        }
    });
}
