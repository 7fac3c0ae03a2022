//! The reference IR interpreter.
//!
//! Executes one [`Block`] against a guest-state byte array and a guest memory
//! ([`Env`]). It is the executable specification of the IR: the Cranelift
//! backend is tested against it, op by op and block by block. It is written for
//! clarity; a fast first tier would pre-decode blocks.

use crate::state::{offsets, status};
use crate::{Access, BinOp, Block, Exit, FpOp, Inst, MemOp, RmwOp, Temp, Ty, UnOp};

/// Guest memory as the interpreter sees it. A failing access returns `None`
/// after recording the guest exception in the state header (`status`,
/// `cause`, `tval`), exactly as the JIT's slow path does.
pub trait Env {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64>;
    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool;

    /// An atomic read-modify-write ([`Inst::Atomic`]); returns the old raw value
    /// (zero-extended). The default is a write-permission load and a store, which is
    /// atomic only for an environment no other thread touches.
    fn atomic(&mut self, state: &mut [u8], vaddr: u64, op: RmwOp, src: u64, expected: u64, mop: MemOp) -> Option<u64> {
        let raw = MemOp { signed: false, rmw: true, ..mop };
        let old = self.load(state, vaddr, raw)?;
        if let Some(new) = op.apply(mop.size, old, src, expected) {
            if !self.store(state, vaddr, new, mop) {
                return None;
            }
        }
        Some(old)
    }
}

/// How the block was left. The header's `pc` has been updated in every case.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A constant-target exit (`chain` tells whether it was chainable).
    Goto { pc: u64, chain: bool },
    /// An indirect jump.
    Indirect { pc: u64 },
    /// The block (or a helper, or a memory access) left with a non-zero
    /// [`status`] code, e.g. `EXCEPTION` or `HALT`.
    Status(u32),
}

/// Apply a binary op to canonical values of type `ty`.
pub fn eval_bin(op: BinOp, ty: Ty, a: u64, b: u64) -> u64 {
    let bits = ty.bits();
    let sh = (b as u32) & (bits - 1);
    let sext = |v: u64| -> i64 {
        match ty {
            Ty::I32 => v as u32 as i32 as i64,
            Ty::I64 => v as i64,
        }
    };
    let (min, allones) = match ty {
        Ty::I32 => (0x8000_0000u64, 0xffff_ffffu64),
        Ty::I64 => (1u64 << 63, u64::MAX),
    };
    let r = match op {
        BinOp::Add => a.wrapping_add(b),
        BinOp::Sub => a.wrapping_sub(b),
        BinOp::And => a & b,
        BinOp::Or => a | b,
        BinOp::Xor => a ^ b,
        BinOp::Shl => a << sh,
        BinOp::Shr => a >> sh,
        BinOp::Sar => (sext(a) >> sh) as u64,
        BinOp::Mul => a.wrapping_mul(b),
        BinOp::MulHs => {
            let p = (sext(a) as i128) * (sext(b) as i128);
            (p >> bits) as u64
        }
        BinOp::MulHu => {
            let p = (a as u128) * (b as u128);
            (p >> bits) as u64
        }
        BinOp::MulHsu => {
            let p = (sext(a) as i128).wrapping_mul(b as i128);
            (p >> bits) as u64
        }
        BinOp::DivS => {
            if b == 0 {
                allones
            } else if a == min && b == allones {
                min
            } else {
                (sext(a) / sext(b)) as u64
            }
        }
        BinOp::DivU => a.checked_div(b).unwrap_or(allones),
        BinOp::RemS => {
            if b == 0 {
                a
            } else if a == min && b == allones {
                0
            } else {
                (sext(a) % sext(b)) as u64
            }
        }
        BinOp::RemU => a.checked_rem(b).unwrap_or(a),
        BinOp::Rotl => match ty {
            Ty::I32 => (a as u32).rotate_left(sh) as u64,
            Ty::I64 => a.rotate_left(sh),
        },
        BinOp::Rotr => match ty {
            Ty::I32 => (a as u32).rotate_right(sh) as u64,
            Ty::I64 => a.rotate_right(sh),
        },
        BinOp::MinS => {
            if sext(a) < sext(b) {
                a
            } else {
                b
            }
        }
        BinOp::MaxS => {
            if sext(a) > sext(b) {
                a
            } else {
                b
            }
        }
        BinOp::MinU => a.min(b),
        BinOp::MaxU => a.max(b),
    };
    ty.mask(r)
}

/// `op(a, b, c)` on binary32 (I32) or binary64 (I64) bit patterns, as [`Inst::Fp`]
/// defines it (the host's IEEE arithmetic; `mul_add` is a correctly rounded fma).
pub fn eval_fp(op: FpOp, ty: Ty, a: u64, b: u64, c: u64) -> u64 {
    macro_rules! apply {
        ($f:ty, $x:expr, $y:expr, $z:expr) => {{
            let (x, y, z) = (<$f>::from_bits($x), <$f>::from_bits($y), <$f>::from_bits($z));
            match op {
                FpOp::Add => x + y,
                FpOp::Sub => x - y,
                FpOp::Mul => x * y,
                FpOp::Div => x / y,
                FpOp::Sqrt => x.sqrt(),
                FpOp::MulAdd => x.mul_add(y, z),
            }
            .to_bits() as u64
        }};
    }
    match ty {
        Ty::I64 => apply!(f64, a, b, c),
        Ty::I32 => apply!(f32, a as u32, b as u32, c as u32),
    }
}

/// Apply a unary op: `src` has type `sty` (canonical), the result has type `dty`.
pub fn eval_un(op: UnOp, sty: Ty, dty: Ty, v: u64) -> u64 {
    let r = match op {
        UnOp::Neg => v.wrapping_neg(),
        UnOp::Not => !v,
        UnOp::Sext8 => v as u8 as i8 as i64 as u64,
        UnOp::Sext16 => v as u16 as i16 as i64 as u64,
        UnOp::Sext32 => v as u32 as i32 as i64 as u64,
        UnOp::Zext8 => v as u8 as u64,
        UnOp::Zext16 => v as u16 as u64,
        UnOp::Zext32 => v as u32 as u64,
        UnOp::Trunc => v,
        UnOp::Clz => match sty {
            Ty::I32 => (v as u32).leading_zeros() as u64,
            Ty::I64 => v.leading_zeros() as u64,
        },
        UnOp::Ctz => match sty {
            Ty::I32 => (v as u32).trailing_zeros() as u64,
            Ty::I64 => v.trailing_zeros() as u64,
        },
        UnOp::Popcnt => sty.mask(v).count_ones() as u64,
        UnOp::Bswap => match sty {
            Ty::I32 => (v as u32).swap_bytes() as u64,
            Ty::I64 => v.swap_bytes(),
        },
    };
    dty.mask(r)
}

/// Extend a raw loaded value (`mop.size` bytes, zero-extended in `raw`) to `ty`.
pub fn extend_load(raw: u64, mop: MemOp, ty: Ty) -> u64 {
    let v = match (mop.signed, mop.size.bytes()) {
        (true, 1) => raw as u8 as i8 as i64 as u64,
        (true, 2) => raw as u16 as i16 as i64 as u64,
        (true, 4) => raw as u32 as i32 as i64 as u64,
        (_, 8) => raw,
        (false, n) => raw & ((1u64 << (n * 8)) - 1),
        _ => unreachable!("sizes are 1, 2, 4 or 8"),
    };
    ty.mask(v)
}

fn rd(state: &[u8], off: u32, ty: Ty) -> u64 {
    let o = off as usize;
    match ty {
        Ty::I32 => u32::from_le_bytes(state[o..o + 4].try_into().expect("4 bytes")) as u64,
        Ty::I64 => u64::from_le_bytes(state[o..o + 8].try_into().expect("8 bytes")),
    }
}

fn wr(state: &mut [u8], off: u32, ty: Ty, v: u64) {
    let o = off as usize;
    match ty {
        Ty::I32 => state[o..o + 4].copy_from_slice(&(v as u32).to_le_bytes()),
        Ty::I64 => state[o..o + 8].copy_from_slice(&v.to_le_bytes()),
    }
}

/// Execute `block` once. `state` must hold the target's whole CPU struct
/// (header first) and be 8-byte aligned; helpers receive `state.as_mut_ptr()`.
///
/// # Panics
/// On a block that fails [`Block::validate`] or a state offset out of range;
/// both are frontend bugs, never guest behaviour.
pub fn run(block: &Block, state: &mut [u8], env: &mut dyn Env) -> Outcome {
    Scratch::default().run(block, state, env)
}

/// Reusable buffers for [`run`]: a first execution tier runs blocks millions of
/// times, and allocating the temp and label arrays per run would dominate.
#[derive(Debug, Default)]
pub struct Scratch {
    vals: Vec<u64>,
    labels: Vec<usize>,
}

impl Scratch {
    /// [`run`] without allocating once the buffers have grown to the largest block.
    pub fn run(&mut self, block: &Block, state: &mut [u8], env: &mut dyn Env) -> Outcome {
        self.vals.clear();
        self.vals.resize(block.temps.len(), 0);
        self.labels.clear();
        self.labels.resize(block.nlabels as usize, usize::MAX);
        if block.nlabels > 0 {
            for (i, inst) in block.insts.iter().enumerate() {
                if let Inst::SetLabel(l) = inst {
                    self.labels[l.0 as usize] = i;
                }
            }
        }
        run_in(block, state, env, &mut self.vals, &self.labels)
    }
}

fn run_in(block: &Block, state: &mut [u8], env: &mut dyn Env, vals: &mut [u64], labels: &[usize]) -> Outcome {
    let ty = |t: Temp| block.ty(t);
    let mut pc = block.pc;
    let mut ip = 0usize;
    // Guest instructions started so far; on an early exit the rest are un-counted.
    let mut started = 0u32;
    let unexec = |started: u32| block.ninsns.saturating_sub(started.saturating_sub(1)) as u64;
    // Instruction count is added at block entry, as the JIT does.
    let ic = rd(state, offsets::ICOUNT, Ty::I64).wrapping_add(block.ninsns as u64);
    wr(state, offsets::ICOUNT, Ty::I64, ic);
    loop {
        let inst = &block.insts[ip];
        ip += 1;
        match inst {
            Inst::InsnStart { pc: p } => {
                pc = *p;
                started += 1;
            }
            Inst::Const { dst, val } => vals[dst.0 as usize] = ty(*dst).mask(*val),
            Inst::Mov { dst, src } => vals[dst.0 as usize] = vals[src.0 as usize],
            Inst::LdState { dst, off } => vals[dst.0 as usize] = rd(state, *off, ty(*dst)),
            Inst::StState { src, off } => wr(state, *off, ty(*src), vals[src.0 as usize]),
            Inst::Bin { op, dst, a, b } => {
                vals[dst.0 as usize] = eval_bin(*op, ty(*dst), vals[a.0 as usize], vals[b.0 as usize])
            }
            Inst::Un { op, dst, src } => vals[dst.0 as usize] = eval_un(*op, ty(*src), ty(*dst), vals[src.0 as usize]),
            Inst::Fp { op, dst, a, b, c } => {
                let (a, b, c) = (vals[a.0 as usize], vals[b.0 as usize], vals[c.0 as usize]);
                vals[dst.0 as usize] = eval_fp(*op, ty(*dst), a, b, c)
            }
            Inst::Setcond { cond, dst, a, b } => {
                vals[dst.0 as usize] = cond.eval(ty(*a), vals[a.0 as usize], vals[b.0 as usize]) as u64
            }
            Inst::Select { dst, c, a, b } => {
                vals[dst.0 as usize] = if vals[c.0 as usize] != 0 { vals[a.0 as usize] } else { vals[b.0 as usize] }
            }
            Inst::Load { dst, addr, mop } => {
                wr(state, offsets::PC, Ty::I64, pc);
                match env.load(state, vals[addr.0 as usize], *mop) {
                    Some(raw) => vals[dst.0 as usize] = extend_load(raw, *mop, ty(*dst)),
                    None => return leave_with_status(state, pc, unexec(started), 0),
                }
            }
            Inst::Store { src, addr, mop } => {
                wr(state, offsets::PC, Ty::I64, pc);
                let v = vals[src.0 as usize];
                if !env.store(state, vals[addr.0 as usize], v, *mop) {
                    return leave_with_status(state, pc, unexec(started), 0);
                }
                // A store may have invalidated translated code (a
                // self-modifying guest): the runtime flags it through status.
                let st = rd(state, offsets::STATUS, Ty::I32) as u32;
                if st != status::NONE {
                    let rem = unexec(started);
                    return leave_with_status(state, next_insn_pc(block, ip).unwrap_or(pc), rem, rem.saturating_sub(1));
                }
            }
            Inst::Atomic { op, dst, addr, src, expected, mop } => {
                wr(state, offsets::PC, Ty::I64, pc);
                let (a, v, e) = (vals[addr.0 as usize], vals[src.0 as usize], vals[expected.0 as usize]);
                match env.atomic(state, a, *op, v, e, *mop) {
                    Some(raw) => vals[dst.0 as usize] = extend_load(raw, *mop, ty(*dst)),
                    None => return leave_with_status(state, pc, unexec(started), 0),
                }
                // Like a store, it may have invalidated translated code.
                let st = rd(state, offsets::STATUS, Ty::I32) as u32;
                if st != status::NONE {
                    let rem = unexec(started);
                    return leave_with_status(state, next_insn_pc(block, ip).unwrap_or(pc), rem, rem.saturating_sub(1));
                }
            }
            Inst::Call { helper, args, dst } => {
                let mut a = [0u64; 4];
                for (slot, t) in a.iter_mut().zip(args.iter()) {
                    *slot = vals[t.0 as usize];
                }
                if helper.effects.may_exit {
                    wr(state, offsets::PC, Ty::I64, pc);
                }
                // SAFETY: helpers are declared by frontends with the HelperFn
                // ABI and receive the state pointer they were written for.
                let r = unsafe { (helper.func)(state.as_mut_ptr(), a[0], a[1], a[2], a[3]) };
                if let (Some(d), Some(rty)) = (dst, helper.ret) {
                    vals[d.0 as usize] = rty.mask(r);
                }
                if helper.effects.may_exit && rd(state, offsets::STATUS, Ty::I32) != 0 {
                    let rem = unexec(started);
                    uncount(state, rem);
                    return Outcome::Status(take_status(state));
                }
            }
            Inst::SetLabel(_) => {}
            Inst::Br(l) => ip = labels[l.0 as usize],
            Inst::BrCond { cond, a, b, target } => {
                if cond.eval(ty(*a), vals[a.0 as usize], vals[b.0 as usize]) {
                    ip = labels[target.0 as usize];
                }
            }
            Inst::Exit(e) => {
                return match e {
                    Exit::Goto(t) => {
                        wr(state, offsets::PC, Ty::I64, *t);
                        Outcome::Goto { pc: *t, chain: true }
                    }
                    Exit::GotoNoChain(t) => {
                        wr(state, offsets::PC, Ty::I64, *t);
                        Outcome::Goto { pc: *t, chain: false }
                    }
                    Exit::Indirect(t) => {
                        let v = vals[t.0 as usize];
                        wr(state, offsets::PC, Ty::I64, v);
                        Outcome::Indirect { pc: v }
                    }
                    Exit::Raise { cause, tval } => {
                        uncount(state, unexec(started));
                        wr(state, offsets::PC, Ty::I64, pc);
                        wr(state, offsets::CAUSE, Ty::I64, *cause);
                        wr(state, offsets::TVAL, Ty::I64, vals[tval.0 as usize]);
                        Outcome::Status(status::EXCEPTION)
                    }
                    Exit::Halt { next_pc } => {
                        wr(state, offsets::PC, Ty::I64, *next_pc);
                        Outcome::Status(status::HALT)
                    }
                };
            }
        }
    }
}

/// PC of the guest instruction that starts at or after IR index `ip`.
fn next_insn_pc(block: &Block, ip: usize) -> Option<u64> {
    block.insts[ip..].iter().find_map(|i| match i {
        Inst::InsnStart { pc } => Some(*pc),
        Inst::Exit(Exit::Goto(p)) | Inst::Exit(Exit::GotoNoChain(p)) => Some(*p),
        _ => None,
    })
}

pub(crate) fn take_status(state: &mut [u8]) -> u32 {
    let s = rd(state, offsets::STATUS, Ty::I32) as u32;
    wr(state, offsets::STATUS, Ty::I32, 0);
    s
}

pub(crate) fn uncount(state: &mut [u8], n: u64) {
    let ic = rd(state, offsets::ICOUNT, Ty::I64).wrapping_sub(n);
    wr(state, offsets::ICOUNT, Ty::I64, ic);
}

/// Leave after a memory access set a status: an exception un-counts `rem_exc`
/// instructions (the faulting one and the rest), any other status `rem_other`
/// (the access completed) and resumes at `pc`. Shared with the fast interpreter.
#[cold]
pub(crate) fn leave_with_status(state: &mut [u8], pc: u64, rem_exc: u64, rem_other: u64) -> Outcome {
    let s = take_status(state);
    if s == status::EXCEPTION {
        uncount(state, rem_exc);
    } else {
        uncount(state, rem_other);
        wr(state, offsets::PC, Ty::I64, pc);
    }
    Outcome::Status(if s == 0 { status::LOOKUP } else { s })
}

/// A flat little-endian memory for tests: `size` bytes at guest address
/// `base`; any access outside raises `cause` with tval = the address.
#[derive(Debug)]
pub struct FlatMemory {
    pub base: u64,
    pub bytes: Vec<u8>,
    /// Cause recorded for an out-of-range access: (load, store).
    pub fault_cause: (u64, u64),
}

impl FlatMemory {
    pub fn new(base: u64, size: usize) -> FlatMemory {
        FlatMemory { base, bytes: vec![0; size], fault_cause: (5, 7) }
    }

    fn range(&self, vaddr: u64, n: u32) -> Option<usize> {
        let off = vaddr.checked_sub(self.base)?;
        let end = off.checked_add(n as u64)?;
        (end <= self.bytes.len() as u64).then_some(off as usize)
    }

    fn fault(state: &mut [u8], cause: u64, vaddr: u64) {
        wr(state, offsets::STATUS, Ty::I32, status::EXCEPTION as u64);
        wr(state, offsets::CAUSE, Ty::I64, cause);
        wr(state, offsets::TVAL, Ty::I64, vaddr);
    }
}

impl Env for FlatMemory {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64> {
        let n = mop.size.bytes();
        let misaligned = mop.aligned && vaddr % n as u64 != 0;
        match self.range(vaddr, n) {
            Some(o) if !misaligned => {
                let mut b = [0u8; 8];
                b[..n as usize].copy_from_slice(&self.bytes[o..o + n as usize]);
                Some(u64::from_le_bytes(b))
            }
            _ => {
                let cause = if mop.rmw { self.fault_cause.1 } else { self.fault_cause.0 };
                Self::fault(state, cause, vaddr);
                None
            }
        }
    }

    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool {
        let n = mop.size.bytes();
        let misaligned = mop.aligned && vaddr % n as u64 != 0;
        match self.range(vaddr, n) {
            Some(o) if !misaligned => {
                self.bytes[o..o + n as usize].copy_from_slice(&val.to_le_bytes()[..n as usize]);
                true
            }
            _ => {
                Self::fault(state, self.fault_cause.1, vaddr);
                false
            }
        }
    }
}

/// Access kind of a memory op in the interpreter's terms (for envs that care).
pub fn access_of(inst: &Inst) -> Option<Access> {
    match inst {
        Inst::Load { .. } => Some(Access::Read),
        Inst::Store { .. } | Inst::Atomic { .. } => Some(Access::Write),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Builder, Cond, MemSize};

    fn state() -> Vec<u8> {
        vec![0u8; offsets::HEADER_END as usize + 256]
    }

    #[test]
    fn riscv_division_corner_cases() {
        let m = u64::MAX;
        assert_eq!(eval_bin(BinOp::DivS, Ty::I64, 7, 0), m);
        assert_eq!(eval_bin(BinOp::DivU, Ty::I64, 7, 0), m);
        assert_eq!(eval_bin(BinOp::RemS, Ty::I64, 7, 0), 7);
        assert_eq!(eval_bin(BinOp::RemU, Ty::I64, 7, 0), 7);
        assert_eq!(eval_bin(BinOp::DivS, Ty::I64, 1 << 63, m), 1 << 63);
        assert_eq!(eval_bin(BinOp::RemS, Ty::I64, 1 << 63, m), 0);
        assert_eq!(eval_bin(BinOp::DivS, Ty::I32, 0x8000_0000, 0xffff_ffff), 0x8000_0000);
        assert_eq!(eval_bin(BinOp::DivS, Ty::I32, 0xffff_fff9, 2), 0xffff_fffd); // -7/2 = -3
        assert_eq!(eval_bin(BinOp::RemS, Ty::I32, 0xffff_fff9, 2), 0xffff_ffff);
        // -7%2 = -1
    }

    #[test]
    fn high_multiplies() {
        assert_eq!(eval_bin(BinOp::MulHu, Ty::I64, u64::MAX, u64::MAX), u64::MAX - 1);
        assert_eq!(eval_bin(BinOp::MulHs, Ty::I64, u64::MAX, u64::MAX), 0); // -1*-1
        assert_eq!(eval_bin(BinOp::MulHsu, Ty::I64, u64::MAX, u64::MAX), u64::MAX); // -1*(2^64-1)
        assert_eq!(eval_bin(BinOp::MulHs, Ty::I64, 1 << 63, 1 << 63), 1 << 62);
    }

    #[test]
    fn shifts_take_amount_modulo_width() {
        assert_eq!(eval_bin(BinOp::Shl, Ty::I64, 1, 64), 1);
        assert_eq!(eval_bin(BinOp::Shl, Ty::I64, 1, 63), 1 << 63);
        assert_eq!(eval_bin(BinOp::Sar, Ty::I32, 0x8000_0000, 31), 0xffff_ffff);
        assert_eq!(eval_bin(BinOp::Shr, Ty::I32, 0x8000_0000, 32), 0x8000_0000);
    }

    #[test]
    fn loop_with_branches_and_memory() {
        // sum = 0; for i in 0..10 { mem[i*8] = i; sum += mem[i*8] }
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let sum = b.const64(0);
        let i = b.const64(0);
        let one = b.const64(1);
        let ten = b.const64(10);
        let eight = b.const64(8);
        let base = b.const64(0x100);
        let top = b.label();
        b.set_label(top);
        let off = b.bin(BinOp::Mul, i, eight);
        let addr = b.bin(BinOp::Add, base, off);
        b.store(i, addr, MemOp::new(MemSize::B8, false));
        let v = b.load(Ty::I64, addr, MemOp::new(MemSize::B8, false));
        let s2 = b.bin(BinOp::Add, sum, v);
        b.mov(sum, s2);
        let i2 = b.bin(BinOp::Add, i, one);
        b.mov(i, i2);
        b.brcond(Cond::LtU, i, ten, top);
        b.st_state(sum, offsets::HEADER_END);
        b.exit(Exit::Goto(0x2000));
        let blk = b.finish();
        blk.validate().unwrap();
        let mut st = state();
        let mut mem = FlatMemory::new(0, 0x1000);
        let out = run(&blk, &mut st, &mut mem);
        assert_eq!(out, Outcome::Goto { pc: 0x2000, chain: true });
        assert_eq!(rd(&st, offsets::HEADER_END, Ty::I64), 45);
        assert_eq!(rd(&st, offsets::PC, Ty::I64), 0x2000);
    }

    #[test]
    fn faulting_load_is_precise() {
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        let a = b.const64(0x10);
        b.insn_start(0x1004);
        let bad = b.const64(0xdead_0000);
        b.load(Ty::I64, bad, MemOp::new(MemSize::B4, true));
        b.exit(Exit::Goto(0x1008));
        let _ = a;
        let blk = b.finish();
        let mut st = state();
        let mut mem = FlatMemory::new(0, 0x1000);
        assert_eq!(run(&blk, &mut st, &mut mem), Outcome::Status(status::EXCEPTION));
        assert_eq!(rd(&st, offsets::PC, Ty::I64), 0x1004);
        assert_eq!(rd(&st, offsets::CAUSE, Ty::I64), 5);
        assert_eq!(rd(&st, offsets::TVAL, Ty::I64), 0xdead_0000);
    }

    #[test]
    fn early_exit_uncounts_unexecuted_instructions() {
        // Three instructions; the second faults: only the first completed.
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        b.insn_start(0x1004);
        let bad = b.const64(0xdead_0000);
        b.load(Ty::I64, bad, MemOp::new(MemSize::B8, false));
        b.insn_start(0x1008);
        b.exit(Exit::Goto(0x100c));
        b.set_extent(3, 12);
        let blk = b.finish();
        let mut st = state();
        let mut mem = FlatMemory::new(0, 0x1000);
        assert_eq!(run(&blk, &mut st, &mut mem), Outcome::Status(status::EXCEPTION));
        assert_eq!(rd(&st, offsets::ICOUNT, Ty::I64), 1);
        // An ecall-like raise at the third instruction: two completed.
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        b.insn_start(0x1004);
        b.insn_start(0x1008);
        let z = b.const64(0);
        b.exit(Exit::Raise { cause: 11, tval: z });
        b.set_extent(3, 12);
        let mut st = state();
        run(&b.finish(), &mut st, &mut mem);
        assert_eq!(rd(&st, offsets::ICOUNT, Ty::I64), 2);
    }
}
