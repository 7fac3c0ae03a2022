//! Differential tests: random blocks run through the reference interpreter and the fast
//! tier from identical state and memory; outcome, state bytes and memory must match.

use super::*;
use crate::interp::{self, FlatMemory, Outcome};
use crate::{Builder, Effects, Helper, Label, MemSize};

const REGS: u32 = offsets::HEADER_END;
const NREGS: u32 = 24;
const STATE_LEN: usize = REGS as usize + NREGS as usize * 8 + 64;
const MEM_BASE: u64 = 0x1_0000;
const MEM_SIZE: usize = 0x400;
/// Stores to `[SMC, SMC + 16)` succeed but flag a status (as a store into translated code).
const SMC: u64 = MEM_BASE + 0x200;
/// The state slot that starts as a pointer into memory (a base register).
const BASE_SLOT: u32 = 5;

use crate::testing::Rng;

/// An interesting value: edge cases, small numbers, addresses, or noise.
fn value(r: &mut Rng) -> u64 {
    match r.below(8) {
        0 => r.pick(&[0, 1, 2, 31, 32, 33, 63, 64, 65, u64::MAX]),
        1 => r.pick(&[0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 63, (1 << 63) - 1, 0xffff_ffff_8000_0000]),
        2 => r.below(16),
        3 => MEM_BASE + r.below(MEM_SIZE as u64 + 16),
        4 => SMC + r.below(16),
        5 => (r.next_u64() as i8) as u64,
        _ => r.next_u64(),
    }
}

struct TestEnv {
    mem: FlatMemory,
}

impl Env for TestEnv {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64> {
        self.mem.load(state, vaddr, mop)
    }
    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool {
        let ok = self.mem.store(state, vaddr, val, mop);
        if ok && (SMC..SMC + 16).contains(&vaddr) {
            let s = if vaddr & 1 == 0 { status::LOOKUP } else { status::EXIT_REQUEST };
            state[offsets::STATUS as usize..][..4].copy_from_slice(&s.to_le_bytes());
        }
        ok
    }
}

fn slot(state: &mut [u8], i: u32) -> &mut [u8] {
    &mut state[(REGS + i * 8) as usize..][..8]
}

unsafe extern "C" fn h_mix(_cpu: *mut u8, a: u64, b: u64, _: u64, _: u64) -> u64 {
    a.rotate_left(17) ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Returns a value wider than its I32 result type (the caller truncates).
unsafe extern "C" fn h_wide(_cpu: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    a ^ 0xabcd_0000_1234_0000
}

/// Reads and writes state; raises or requests an exit depending on its argument.
unsafe extern "C" fn h_maybe_exit(cpu: *mut u8, a: u64, b: u64, c: u64, d: u64) -> u64 {
    // SAFETY: the interpreters pass the state buffer, which is STATE_LEN bytes long.
    let st = unsafe { std::slice::from_raw_parts_mut(cpu, STATE_LEN) };
    let old = u64::from_le_bytes(slot(st, 3).try_into().unwrap());
    slot(st, 3).copy_from_slice(&(old ^ a ^ b ^ c ^ d).to_le_bytes());
    match a % 8 {
        0 => {
            st[offsets::STATUS as usize..][..4].copy_from_slice(&status::EXCEPTION.to_le_bytes());
            st[offsets::CAUSE as usize..][..8].copy_from_slice(&9u64.to_le_bytes());
        }
        1 => st[offsets::STATUS as usize..][..4].copy_from_slice(&status::EXIT_REQUEST.to_le_bytes()),
        _ => {}
    }
    old.wrapping_add(a)
}

/// Sets a status but does not declare `may_exit`: the status must be left alone.
unsafe extern "C" fn h_quiet(cpu: *mut u8, a: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: as above.
    let st = unsafe { std::slice::from_raw_parts_mut(cpu, STATE_LEN) };
    slot(st, 4).copy_from_slice(&a.to_le_bytes());
    0
}

static MIX: Helper = Helper { name: "mix", func: h_mix, nargs: 2, ret: Some(Ty::I64), effects: Effects::PURE };
static WIDE: Helper = Helper { name: "wide", func: h_wide, nargs: 1, ret: Some(Ty::I32), effects: Effects::PURE };
static MAYBE_EXIT: Helper =
    Helper { name: "maybe_exit", func: h_maybe_exit, nargs: 4, ret: Some(Ty::I64), effects: Effects::ALL };
static QUIET: Helper = Helper {
    name: "quiet",
    func: h_quiet,
    nargs: 1,
    ret: None,
    effects: Effects { reads_state: false, writes_state: true, may_exit: false, cold: false, state_range: None },
};

const BINOPS: [BinOp; 22] = BinOp::ALL;
const UNOPS: [UnOp; 9] =
    [UnOp::Neg, UnOp::Not, UnOp::Clz, UnOp::Ctz, UnOp::Popcnt, UnOp::Bswap, UnOp::Sext8, UnOp::Sext16, UnOp::Zext8];
const EXTS: [UnOp; 7] = [UnOp::Sext8, UnOp::Sext16, UnOp::Sext32, UnOp::Zext8, UnOp::Zext16, UnOp::Zext32, UnOp::Trunc];
const CONDS: [Cond; 10] = Cond::ALL;
const SIZES: [MemSize; 4] = [MemSize::B1, MemSize::B2, MemSize::B4, MemSize::B8];

/// Builds a random block of guest "instructions", each a few random IR ops, some with
/// in-instruction branches (diamonds merging through `Mov`, skips that leave temps
/// unwritten, bounded loops).
struct Gen<'a> {
    r: &'a mut Rng,
    b: Builder,
    live: Vec<Temp>,
}

impl Gen<'_> {
    fn temp(&mut self, ty: Ty) -> Temp {
        let c: Vec<Temp> = self.live.iter().copied().filter(|t| self.b.ty(*t) == ty).collect();
        if c.is_empty() || self.r.chance(25) {
            let v = value(self.r);
            let t = self.b.const_(ty, v);
            self.live.push(t);
            t
        } else {
            self.r.pick(&c)
        }
    }
    /// A guest-state offset: mostly a few hot slots (so loads meet earlier stores and
    /// helper writes), sometimes the half of a slot.
    fn state_off(&mut self) -> u32 {
        let n = if self.r.chance(70) { 6 } else { NREGS as u64 };
        REGS + 8 * self.r.below(n) as u32 + if self.r.chance(20) { 4 } else { 0 }
    }
    /// The shapes a RISC-V frontend emits (which the fast tier fuses): addi, ld/sd with a
    /// signed offset from a base register, add, addw, and a value produced on one path
    /// and used after the join.
    fn guest_insn(&mut self) {
        let rd = self.state_off() & !7;
        let rs = self.state_off() & !7;
        let imm = (self.r.below(0x400) as i64 - 0x200) as u64;
        match self.r.below(6) {
            0 => {
                let a = self.b.ld_state(Ty::I64, rs);
                let k = self.b.const64(imm);
                let v = self.b.bin(BinOp::Add, a, k);
                self.b.st_state(v, rd);
            }
            1 | 2 => {
                let base = self.b.ld_state(Ty::I64, REGS + 8 * BASE_SLOT);
                let k = self.b.const64(imm);
                let addr = self.b.bin(BinOp::Add, base, k);
                let mop = MemOp::new(self.r.pick(&SIZES), self.r.chance(50));
                if self.r.chance(15) {
                    // Atomics: faults (misaligned, out of range) and the SMC status too.
                    let mop = MemOp::new(self.r.pick(&[MemSize::B4, MemSize::B8]), self.r.chance(50));
                    let v = self.b.ld_state(Ty::I64, rs);
                    let old = if self.r.chance(30) {
                        let e = self.b.ld_state(Ty::I64, rd);
                        self.b.cas(addr, e, v, mop)
                    } else {
                        let op = self.r.pick(&RmwOp::ALL[..9]);
                        self.b.atomic(op, addr, v, mop)
                    };
                    self.b.st_state(old, rd);
                } else if self.r.chance(50) {
                    let v = self.b.load(Ty::I64, addr, mop);
                    self.b.st_state(v, rd);
                } else {
                    let v = self.b.ld_state(Ty::I64, rs);
                    self.b.store(v, addr, mop);
                }
            }
            3 => {
                let a = self.b.ld_state(Ty::I64, rs);
                let b = self.b.ld_state(Ty::I64, rd);
                let v = self.b.bin(BinOp::Add, a, b);
                self.b.st_state(v, rd);
            }
            4 => {
                // addw and friends: any op on truncated operands, which may be the result
                // of an earlier one (`trunc(sext32(x))`) or an immediate such as 0
                // (`sext.w` is `addiw rd, rs, 0`); the result may be extended twice.
                let a = match self.r.below(3) {
                    0 => self.temp(Ty::I64),
                    1 => self.b.ld_state(Ty::I64, rs),
                    _ => self.narrow(rs),
                };
                let b = match self.r.below(4) {
                    0 => self.b.ld_state(Ty::I64, rd),
                    1 => self.b.const64(self.r.pick(&[0, 1, u64::MAX, imm, 0x3fff_ffff, 0xffff_ffff_c000_0000])),
                    2 => self.narrow(rd),
                    _ => self.temp(Ty::I64),
                };
                let a = self.b.ext(UnOp::Trunc, Ty::I32, a);
                let b = self.b.ext(UnOp::Trunc, Ty::I32, b);
                let op = if self.r.chance(50) { BinOp::Add } else { self.r.pick(&BINOPS) };
                let v32 = self.b.bin(op, a, b);
                let v = self.b.ext(UnOp::Sext32, Ty::I64, v32);
                self.b.st_state(v, rd);
                self.live.push(v);
                if self.r.chance(30) {
                    let again = self.b.ext(UnOp::Sext32, Ty::I64, v32);
                    self.live.push(again);
                }
            }
            _ => {
                let (a, b) = (self.temp(Ty::I64), self.temp(Ty::I64));
                let l = self.b.label();
                let t = self.b.temp(Ty::I64);
                self.b.brcond(self.r.pick(&CONDS), a, b, l);
                if self.r.chance(50) {
                    self.b.push(Inst::LdState { dst: t, off: rs });
                } else {
                    let k = self.b.const64(imm);
                    self.b.push(Inst::Bin { op: BinOp::Add, dst: t, a, b: k });
                }
                self.b.set_label(l);
                let k = self.b.const64(imm);
                let v = self.b.bin(BinOp::Add, t, k);
                self.b.st_state(v, rd);
            }
        }
    }
    /// A 64-bit value with known sign bits (for the pass that drops extensions), often
    /// stored to `off` and loaded back: a masked value, an extended one, a flag, a
    /// negated flag, or a shifted one.
    fn narrow(&mut self, off: u32) -> Temp {
        let x = self.temp(Ty::I64);
        let v = match self.r.below(7) {
            0 => {
                let m = self.b.const64(self.r.pick(&[1, 0xff, 0x3fff_ffff, 0x7fff_ffff, 0xffff_ffff]));
                self.b.bin(BinOp::And, x, m)
            }
            6 => {
                // A sum that needs one bit more than its operands.
                let m = self.b.const64(self.r.pick(&[0x3fff_ffff, 0x1fff_ffff]));
                let p = self.b.bin(BinOp::And, x, m);
                let y = self.temp(Ty::I64);
                let q = self.b.bin(BinOp::And, y, m);
                let op = self.r.pick(&[BinOp::Add, BinOp::Sub]);
                self.b.bin(op, p, q)
            }
            1 => {
                let op = self.r.pick(&[UnOp::Sext8, UnOp::Sext16, UnOp::Sext32, UnOp::Zext16, UnOp::Zext32]);
                self.b.ext(op, Ty::I64, x)
            }
            2 => {
                let y = self.temp(Ty::I64);
                let dst = self.b.temp(Ty::I64);
                self.b.push(Inst::Setcond { cond: self.r.pick(&CONDS), dst, a: x, b: y });
                dst
            }
            3 => {
                let one = self.b.const64(1);
                let bit = self.b.bin(BinOp::And, x, one);
                let zero = self.b.const64(0);
                self.b.bin(BinOp::Sub, zero, bit)
            }
            4 => {
                let n = self.b.const64(self.r.pick(&[1, 31, 32, 33, 34, 40, 63]));
                let op = self.r.pick(&[BinOp::Shr, BinOp::Sar, BinOp::Shl]);
                self.b.bin(op, x, n)
            }
            _ => {
                let t32 = self.b.ext(UnOp::Trunc, Ty::I32, x);
                let n = self.b.const_(Ty::I32, self.r.pick(&[0, 1, 7, 31, 32]));
                let op = self.r.pick(&[BinOp::Shr, BinOp::And, BinOp::Sar]);
                let r = self.b.bin(op, t32, n);
                self.b.ext(UnOp::Sext32, Ty::I64, r)
            }
        };
        if self.r.chance(50) {
            self.b.st_state(v, off);
            self.b.ld_state(Ty::I64, off)
        } else {
            v
        }
    }
    /// Store a temp before its only definition, then load the slot back.
    fn late_def(&mut self) {
        let t = self.b.temp(Ty::I64);
        let off = self.state_off() & !7;
        self.b.st_state(t, off);
        let low = self.b.ext(UnOp::Trunc, Ty::I32, t);
        let v = value(self.r);
        self.b.push(Inst::Const { dst: t, val: v });
        let u = self.b.ld_state(Ty::I64, off);
        let x = self.b.ld_state(Ty::I32, off + 8);
        let y = self.b.bin(BinOp::Add, low, x);
        self.b.st_state(y, off + 8);
        let w = self.b.bin(BinOp::Xor, u, t);
        let off2 = self.state_off() & !7;
        self.b.st_state(w, off2);
        self.live.push(u);
    }
    fn ty(&mut self) -> Ty {
        if self.r.chance(60) {
            Ty::I64
        } else {
            Ty::I32
        }
    }
    fn addr(&mut self) -> Temp {
        if self.r.chance(80) {
            let base = self.b.const64(MEM_BASE + self.r.below(MEM_SIZE as u64 + 8));
            if self.r.chance(50) {
                base
            } else {
                let off = self.temp(Ty::I64);
                let m = self.b.const64(0xff);
                let off = self.b.bin(BinOp::And, off, m);
                self.b.bin(BinOp::Add, base, off)
            }
        } else {
            self.temp(Ty::I64)
        }
    }
    fn op(&mut self) {
        let ty = self.ty();
        let t = match self.r.below(20) {
            0 => {
                let off = self.state_off();
                self.b.ld_state(ty, off)
            }
            1 => {
                let v = self.temp(ty);
                let off = self.state_off();
                self.b.st_state(v, off);
                return;
            }
            2..=7 => {
                let (a, b) = (self.temp(ty), self.temp(ty));
                let op = if self.r.chance(50) { self.r.pick(&BINOPS[..8]) } else { self.r.pick(&BINOPS) };
                self.b.bin(op, a, b)
            }
            8 => {
                let a = self.temp(ty);
                let op = self.r.pick(&UNOPS);
                self.b.un(op, a)
            }
            9 => {
                let a = self.temp(ty);
                let op = self.r.pick(&EXTS);
                let dty = self.ty();
                self.b.ext(op, dty, a)
            }
            10 => {
                let (a, b) = (self.temp(ty), self.temp(ty));
                let c = self.r.pick(&CONDS);
                let dst = self.b.temp(self.r.pick(&[Ty::I32, Ty::I64]));
                self.b.push(Inst::Setcond { cond: c, dst, a, b });
                dst
            }
            11 => {
                let cty = self.ty();
                let c = self.temp(cty);
                let (a, b) = (self.temp(ty), self.temp(ty));
                self.b.select(c, a, b)
            }
            12 | 13 => {
                let addr = self.addr();
                let mut mop = MemOp::new(self.r.pick(&SIZES), self.r.chance(50));
                if self.r.chance(15) {
                    mop = mop.aligned();
                }
                if self.r.chance(10) {
                    mop = mop.rmw();
                }
                self.b.load(ty, addr, mop)
            }
            14 | 15 => {
                let addr = self.addr();
                let v = self.temp(ty);
                let mut mop = MemOp::new(self.r.pick(&SIZES), false);
                if self.r.chance(15) {
                    mop = mop.aligned();
                }
                self.b.store(v, addr, mop);
                return;
            }
            16 => {
                let (a, b) = (self.temp(Ty::I64), self.temp(Ty::I64));
                self.b.call(&MIX, &[a, b]).unwrap()
            }
            17 => {
                let a = self.temp(Ty::I64);
                if self.r.chance(50) {
                    self.b.call(&WIDE, &[a]).unwrap()
                } else {
                    self.b.call(&QUIET, &[a]);
                    return;
                }
            }
            18 => {
                let args: Vec<Temp> = (0..4).map(|_| self.temp(Ty::I64)).collect();
                self.b.call(&MAYBE_EXIT, &args).unwrap()
            }
            _ => {
                let src = self.temp(ty);
                let dst = self.b.temp(ty);
                self.b.mov(dst, src);
                dst
            }
        };
        self.live.push(t);
        // Results often go straight to guest state (fused in the fast tier).
        if self.r.chance(30) {
            let off = self.state_off();
            self.b.st_state(t, off);
        }
    }
    /// `if cond { ops; x = v1 } else { ops; x = v2 }`, or a skip that leaves a temp
    /// unwritten on one path.
    fn diamond(&mut self) {
        let ty = self.ty();
        let (a, b) = (self.temp(ty), self.temp(ty));
        let c = self.r.pick(&CONDS);
        let (els, join) = (self.b.label(), self.b.label());
        let xty = self.ty();
        let x = self.b.temp(xty);
        let skip_only = self.r.chance(30);
        self.b.brcond(c, a, b, els);
        let saved = self.live.len();
        for _ in 0..self.r.below(3) {
            self.op();
        }
        let v = self.temp(self.b.ty(x));
        self.b.mov(x, v);
        self.live.truncate(saved);
        if skip_only {
            self.b.set_label(els);
            self.b.set_label(join);
        } else {
            self.b.br(join);
            self.b.set_label(els);
            for _ in 0..self.r.below(3) {
                self.op();
            }
            let v = self.temp(self.b.ty(x));
            self.b.mov(x, v);
            self.live.truncate(saved);
            self.b.set_label(join);
        }
        // After a skip, `x` may be unwritten: its read must see 0.
        self.live.push(x);
    }
    /// `i = 0; do { ops; i += 1 } while i < n`.
    fn lp(&mut self) {
        let i = self.b.temp(Ty::I64);
        let zero = self.b.const64(0);
        self.b.mov(i, zero);
        let top = self.b.label();
        self.b.set_label(top);
        let saved = self.live.len();
        for _ in 0..1 + self.r.below(3) {
            self.op();
        }
        self.live.truncate(saved);
        let one = self.b.const64(1);
        let i2 = self.b.bin(BinOp::Add, i, one);
        self.b.mov(i, i2);
        let n = self.b.const64(1 + self.r.below(4));
        self.b.brcond(Cond::LtU, i, n, top);
        self.live.push(i);
    }
    fn exit(&mut self, pc: u64) {
        match self.r.below(7) {
            0 => self.b.exit(Exit::GotoNoChain(pc + 0x100)),
            1 => {
                let t = self.temp(Ty::I64);
                self.b.exit(Exit::Indirect(t));
            }
            2 => {
                let t = self.temp(Ty::I64);
                self.b.exit(Exit::Raise { cause: 2, tval: t });
            }
            3 => self.b.exit(Exit::Halt { next_pc: pc }),
            4 => {
                let (a, b) = (self.temp(Ty::I64), self.temp(Ty::I64));
                let l = self.b.label();
                self.b.brcond(self.r.pick(&CONDS), a, b, l);
                self.b.exit(Exit::Goto(pc + 0x40));
                self.b.set_label(l);
                self.b.exit(Exit::Goto(pc));
            }
            _ => self.b.exit(Exit::Goto(pc)),
        }
    }
}

fn gen_block(r: &mut Rng) -> Block {
    let pc0 = 0x8000_0000 + 4 * r.below(1000);
    let mut g = Gen { r, b: Builder::new(pc0), live: Vec::new() };
    let n = 1 + g.r.below(12) as u32;
    let mut pc = pc0;
    for k in 0..n {
        g.b.insn_start(pc);
        if k == 0 && g.r.chance(10) {
            // A temp read before anything writes it (reads as 0).
            let t = g.b.temp(Ty::I64);
            g.live.push(t);
        }
        for _ in 0..g.r.below(6) {
            match g.r.below(10) {
                0 => g.diamond(),
                1 if g.r.chance(30) => g.lp(),
                2 if g.r.chance(30) => g.late_def(),
                3..=5 => g.guest_insn(),
                _ => g.op(),
            }
        }
        pc += 4;
    }
    g.exit(pc);
    g.b.set_extent(n, 4 * n);
    g.b.finish()
}

fn init_state(r: &mut Rng) -> Vec<u8> {
    let mut st = vec![0u8; STATE_LEN];
    for b in st[offsets::PC as usize..offsets::EXIT_REQUEST as usize].iter_mut() {
        *b = r.next_u64() as u8;
    }
    st[offsets::ICOUNT as usize..][..8].copy_from_slice(&r.below(1000).to_le_bytes());
    for i in 0..NREGS {
        let v = value(r);
        slot(&mut st, i).copy_from_slice(&v.to_le_bytes());
    }
    let base = MEM_BASE + 0x180 + r.below(0x100);
    slot(&mut st, BASE_SLOT).copy_from_slice(&base.to_le_bytes());
    st
}

fn init_mem(r: &mut Rng) -> TestEnv {
    let mut mem = FlatMemory::new(MEM_BASE, MEM_SIZE);
    for b in mem.bytes.iter_mut() {
        *b = r.next_u64() as u8;
    }
    TestEnv { mem }
}

/// Run `block` through both tiers from the same state and memory; panic on a difference.
/// Returns whether the fast tier took it.
fn compare(block: &Block, seed: u64, fast: &mut FastScratch) -> bool {
    let Some(fb) = FastBlock::decode(block, STATE_LEN) else {
        return false;
    };
    let mut r = Rng(seed | 1);
    let st0 = init_state(&mut r);
    let env0 = init_mem(&mut r);
    let mut ea = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
    ea.mem.bytes.clone_from(&env0.mem.bytes);
    let (mut sa, mut sb, mut eb) = (st0.clone(), st0, env0);
    // Stale register contents from other blocks must never leak in.
    for (i, v) in fast.regs.iter_mut().enumerate() {
        *v = 0xdead_beef_0000_0000 | i as u64;
    }
    for run in 0..2 {
        let oa = interp::run(block, &mut sa, &mut ea);
        let ob = fb.run(fast, &mut sb, &mut eb);
        assert_eq!(oa, ob, "outcome differs (run {run}, seed {seed:#x}) for\n{block}");
        if sa != sb {
            let i = sa.iter().zip(&sb).position(|(x, y)| x != y).unwrap();
            panic!(
                "state differs at byte {i:#x} (reference {:#x}, fast {:#x}; run {run}, seed {seed:#x}) for\n{block}",
                sa[i], sb[i]
            );
        }
        assert!(ea.mem.bytes == eb.mem.bytes, "memory differs (run {run}, seed {seed:#x}) for\n{block}");
    }
    true
}

#[test]
fn random_blocks_match_the_reference() {
    let mut fast = FastScratch::default();
    let mut taken = 0;
    let n = 20_000;
    for i in 0..n {
        let seed = 0x1234_5678_9abc_def1u64.wrapping_mul(i as u64 + 1);
        let mut r = Rng(seed | 1);
        let block = gen_block(&mut r);
        block.validate().unwrap_or_else(|e| panic!("generator bug: {e}\n{block}"));
        taken += compare(&block, seed.rotate_left(7), &mut fast) as u32;
    }
    assert_eq!(taken, n, "the fast tier declined generated blocks");
}

/// Every binary, unary and compare op on edge values, with the second operand both a
/// register and a folded constant, in both types; every result lands in its own slot.
#[test]
fn every_op_on_edge_values() {
    let edges =
        [0u64, 1, 2, 31, 32, 63, 64, 0x7fff_ffff, 0x8000_0000, 0xffff_ffff, 1 << 63, u64::MAX, 0x1234_5678_9abc_def0];
    let len = REGS as usize + 8 * 256;
    let mut fast = FastScratch::default();
    for ty in [Ty::I32, Ty::I64] {
        for &bv in &edges {
            let mut b = Builder::new(0x1000);
            b.insn_start(0x1000);
            let x = b.ld_state(ty, REGS);
            let y = b.ld_state(ty, REGS + 8);
            let c = b.const_(ty, bv);
            let mut out = 2;
            let mut put = |b: &mut Builder, t: Temp| {
                b.st_state(t, REGS + 8 * out);
                out += 1;
            };
            for op in BINOPS {
                for rhs in [y, c] {
                    let r = b.bin(op, x, rhs);
                    put(&mut b, r);
                }
            }
            for cond in CONDS {
                for rhs in [y, c] {
                    let s = b.setcond(cond, x, rhs);
                    put(&mut b, s);
                }
            }
            for op in UNOPS.iter().chain(&EXTS) {
                for dty in [Ty::I32, Ty::I64] {
                    let r = b.ext(*op, dty, x);
                    put(&mut b, r);
                }
            }
            b.exit(Exit::Goto(0x1004));
            b.set_extent(1, 4);
            let blk = b.finish();
            let fb = FastBlock::decode(&blk, len).expect("decodes");
            for &a in &edges {
                let mut st = vec![0u8; len];
                slot(&mut st, 0).copy_from_slice(&a.to_le_bytes());
                slot(&mut st, 1).copy_from_slice(&bv.to_le_bytes());
                let (mut sa, mut sb) = (st.clone(), st);
                let mut m1 = TestEnv { mem: FlatMemory::new(MEM_BASE, 16) };
                let mut m2 = TestEnv { mem: FlatMemory::new(MEM_BASE, 16) };
                assert_eq!(interp::run(&blk, &mut sa, &mut m1), fb.run(&mut fast, &mut sb, &mut m2));
                if sa != sb {
                    let i = sa.iter().zip(&sb).position(|(x, y)| x != y).unwrap();
                    panic!("result slot {} differs for a={a:#x} b={bv:#x} in\n{blk}", (i - REGS as usize) / 8);
                }
            }
        }
    }
}

#[test]
fn unsupported_blocks_fall_back() {
    // A branch across a guest-instruction boundary.
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    let z = b.const64(0);
    let l = b.label();
    b.brcond(Cond::Eq, z, z, l);
    b.insn_start(0x1004);
    b.set_label(l);
    b.exit(Exit::Goto(0x1008));
    let blk = b.finish();
    blk.validate().unwrap();
    assert!(FastBlock::decode(&blk, STATE_LEN).is_none());
    // A state offset past the state.
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    b.ld_state(Ty::I64, STATE_LEN as u32 - 4);
    b.exit(Exit::Goto(0x1004));
    assert!(FastBlock::decode(&b.finish(), STATE_LEN).is_none());
    // No exit at the end.
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    assert!(FastBlock::decode(&b.finish(), STATE_LEN).is_none());
    // An unplaced label.
    let mut b = Builder::new(0x1000);
    let l = b.label();
    b.br(l);
    assert!(FastBlock::decode(&b.finish(), STATE_LEN).is_none());
    let _ = Label(0);
}

#[test]
fn constants_fold_and_dead_ones_vanish() {
    let mut b = Builder::new(0x1000);
    b.insn_start(0x1000);
    let x = b.ld_state(Ty::I64, REGS);
    let k = b.const64(5);
    let y = b.bin(BinOp::Add, x, k);
    b.st_state(y, REGS);
    b.exit(Exit::Goto(0x1004));
    let fb = FastBlock::decode(&b.finish(), STATE_LEN).unwrap();
    // ld + addi + st fuse into one op.
    assert_eq!(fb.len(), 2, "{fb:?}");
    assert!(matches!(fb.ops[0], Op::LdAddISt64 { v: 5, .. }), "{fb:?}");
}

#[test]
fn ops_are_small() {
    assert!(std::mem::size_of::<Op>() <= 16, "{}", std::mem::size_of::<Op>());
}

/// Fused ops that read guest state and then set the PC must read first.
#[test]
fn header_state_operands_of_fused_memory_ops() {
    let mut fast = FastScratch::default();
    for off in [offsets::PC, offsets::ICOUNT, REGS] {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let addr = b.ld_state(Ty::I64, REGS + 8 * BASE_SLOT);
        let v = b.ld_state(Ty::I64, off);
        b.store(v, addr, MemOp::new(MemSize::B8, false));
        let k = b.const64(8);
        let addr2 = b.bin(BinOp::Add, addr, k);
        let v = b.ld_state(Ty::I64, off);
        b.store(v, addr2, MemOp::new(MemSize::B8, false));
        b.exit(Exit::Goto(0x1004));
        b.set_extent(1, 4);
        let blk = b.finish();
        let fb = FastBlock::decode(&blk, STATE_LEN).unwrap();
        // (Past the header the second load is forwarded from the first instead.)
        let fused = fb.ops.iter().any(|o| matches!(o, Op::StoreSt { .. }));
        assert!(fused || off >= offsets::HEADER_END, "{fb:?}");
        let mut st = init_state(&mut Rng(7));
        slot(&mut st, BASE_SLOT).copy_from_slice(&(MEM_BASE + 0x40).to_le_bytes());
        let (mut sa, mut sb) = (st.clone(), st);
        let mut m1 = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
        let mut m2 = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
        assert_eq!(interp::run(&blk, &mut sa, &mut m1), fb.run(&mut fast, &mut sb, &mut m2));
        assert!(sa == sb && m1.mem.bytes == m2.mem.bytes, "differs for offset {off}:\n{blk}");
    }
}

/// Constant folding (`opt::fold_constants`) never changes what a block does: random blocks
/// (with diamonds, loops and temps read before their definition) run the same in the
/// reference interpreter before and after it.
#[test]
fn constant_folding_keeps_random_blocks_equivalent() {
    let mut folded_any = 0;
    for i in 0..20_000u64 {
        let seed = 0x0f0f_1234_5678_9abcu64.wrapping_mul(i + 1);
        let mut r = Rng(seed | 1);
        let block = gen_block(&mut r);
        let mut folded = block.clone();
        crate::opt::fold_constants(&mut folded);
        folded.validate().unwrap_or_else(|e| panic!("folding broke the block: {e}\n{folded}"));
        folded_any += (folded != block) as u32;
        let mut r = Rng(seed.rotate_left(7) | 1);
        let st0 = init_state(&mut r);
        let env0 = init_mem(&mut r);
        let mut ea = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
        ea.mem.bytes.clone_from(&env0.mem.bytes);
        let (mut sa, mut sb, mut eb) = (st0.clone(), st0, env0);
        for run in 0..2 {
            let oa = interp::run(&block, &mut sa, &mut ea);
            let mut ob = interp::run(&folded, &mut sb, &mut eb);
            // An indirect jump to a known address may become a direct one (chainable: the
            // generator's blocks call no helper that could change the TB flags).
            if let (Outcome::Indirect { pc }, Outcome::Goto { pc: to, chain: true }) = (oa, ob) {
                if pc == to {
                    ob = oa;
                }
            }
            assert_eq!(oa, ob, "outcome differs (run {run}) for\n{block}\nfolded:\n{folded}");
            assert!(sa == sb, "state differs (run {run}) for\n{block}\nfolded:\n{folded}");
            assert!(ea.mem.bytes == eb.mem.bytes, "memory differs (run {run}) for\n{block}");
        }
    }
    assert!(folded_any > 1000, "the generator must give the pass something to fold: {folded_any}");
}

/// One step of a bitwise CRC on a 32-bit value held sign-extended in a register (RV64
/// `andi`, `negw`, `srliw`, `and`, `xor`, `sext.w`), with the operand order of each op
/// chosen by `swap`: the step the fold pass rewrites (`Pass::distribute`).
fn crc_step(swap: u32) -> Block {
    let (c, poly, t) = (REGS, REGS + 8, REGS + 16);
    let order = |b: &mut Builder, op: BinOp, x: Temp, y: Temp, bit: u32| {
        if swap & (1 << bit) != 0 {
            b.bin(op, y, x)
        } else {
            b.bin(op, x, y)
        }
    };
    let mut b = Builder::new(0);
    b.insn_start(0);
    let x = b.ld_state(Ty::I64, c);
    let one = b.const64(1);
    let bit = order(&mut b, BinOp::And, x, one, 0);
    b.st_state(bit, t);
    let flag = b.ld_state(Ty::I64, t);
    let flag32 = b.ext(UnOp::Trunc, Ty::I32, flag);
    let zero = b.const_(Ty::I32, 0);
    let neg32 = b.bin(BinOp::Sub, zero, flag32);
    let neg = b.ext(UnOp::Sext32, Ty::I64, neg32);
    b.st_state(neg, t);
    let x = b.ld_state(Ty::I64, c);
    let x32 = b.ext(UnOp::Trunc, Ty::I32, x);
    let k = b.const_(Ty::I32, 1);
    let sh32 = b.bin(BinOp::Shr, x32, k);
    let sh = b.ext(UnOp::Zext32, Ty::I64, sh32);
    b.st_state(sh, c);
    let (m, p) = (b.ld_state(Ty::I64, t), b.ld_state(Ty::I64, poly));
    let masked = order(&mut b, BinOp::And, m, p, 1);
    b.st_state(masked, t);
    let (m, s) = (b.ld_state(Ty::I64, t), b.ld_state(Ty::I64, c));
    let mixed = order(&mut b, BinOp::Xor, m, s, 2);
    b.st_state(mixed, t);
    let v = b.ld_state(Ty::I64, t);
    let v32 = b.ext(UnOp::Trunc, Ty::I32, v);
    let vx = b.ext(UnOp::Sext32, Ty::I64, v32);
    b.st_state(vx, c);
    b.exit(Exit::Goto(4));
    b.set_extent(1, 4);
    b.finish()
}

/// The fold pass moves a CRC step's final `sext.w` onto the polynomial's register, in
/// every operand order, and the step still computes the same thing, also for a
/// polynomial register that is no sign-extended 32-bit value.
#[test]
fn crc_steps_keep_their_value_when_the_extension_moves() {
    let mut r = Rng(0x5eed_c0de_1234_5679);
    for swap in 0..8 {
        let block = crc_step(swap);
        let mut folded = block.clone();
        crate::opt::fold_constants(&mut folded);
        folded.validate().unwrap_or_else(|e| panic!("folding broke the block: {e}\n{folded}"));
        let sexts = |b: &Block| b.insts.iter().filter(|i| matches!(i, Inst::Un { op: UnOp::Sext32, .. })).count();
        // The extension of the loop-carried value is gone; the polynomial's took its place.
        assert_eq!(folded.insts.len(), block.insts.len() + 3, "swap {swap}:\n{folded}");
        let last_sext = folded.insts.iter().rposition(|i| matches!(i, Inst::Un { op: UnOp::Sext32, .. }));
        let last_store = folded.insts.iter().rposition(|i| matches!(i, Inst::StState { .. })).unwrap();
        assert!(matches!(folded.insts[last_store - 1], Inst::Bin { op: BinOp::Xor, .. }), "swap {swap}:\n{folded}");
        assert!(last_sext.is_some_and(|i| i + 3 == last_store), "swap {swap}:\n{folded}");
        assert!(sexts(&folded) <= sexts(&block) + 1);
        for _ in 0..200 {
            let mut st = init_state(&mut r);
            let crc = value(&mut r) as u32 as i32 as i64 as u64;
            let poly = match r.below(3) {
                0 => 0xffff_ffff_edb8_8320,
                1 => value(&mut r) as u32 as i32 as i64 as u64,
                _ => value(&mut r),
            };
            slot(&mut st, 0).copy_from_slice(&crc.to_le_bytes());
            slot(&mut st, 1).copy_from_slice(&poly.to_le_bytes());
            let (mut sa, mut sb) = (st.clone(), st);
            let mut ea = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
            let mut eb = TestEnv { mem: FlatMemory::new(MEM_BASE, MEM_SIZE) };
            assert_eq!(interp::run(&block, &mut sa, &mut ea), interp::run(&folded, &mut sb, &mut eb));
            assert!(sa == sb, "swap {swap}, crc {crc:#x}, poly {poly:#x}:\n{folded}");
            let want = (crc as u32 >> 1) ^ (poly as u32 & (crc as u32 & 1).wrapping_neg());
            assert_eq!(slot(&mut sb, 0), &(want as i32 as i64 as u64).to_le_bytes());
        }
    }
}
