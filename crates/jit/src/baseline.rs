//! The baseline compiler: IR -> x86-64 in one pass, for cold blocks.
//!
//! Cranelift costs ~100 us per block; a Linux boot translates ~40,000 blocks and most run
//! a handful of times, so compiling them all with Cranelift, or interpreting them until hot,
//! costs more than QEMU spends on the whole boot. This emitter writes machine code straight
//! from the IR (a few microseconds per block, like QEMU's TCG) so cold blocks run natively,
//! chain, and probe the jump cache inline. Hot blocks are recompiled by Cranelift: the
//! prologue counts entries down in a per-TB counter (a block of `n` instructions counts as
//! [`entry_weight`]`(n)` entries) and, when it runs out, returns [`ret::HOT`] before running
//! anything, with the TB's id in the returned value (`ret::HOT | id`).
//!
//! Contract (shared with `codegen.rs`, so baseline and Cranelift blocks chain into each
//! other): `fn(cpu) -> u64` in Cranelift's `tail` convention on x86-64 (cpu in `rdi`,
//! result in `rax`, SystemV callee-saved registers), entered with the return address on
//! the stack; chaining and inline jump-cache hits tear the frame down and `jmp` to the
//! next block with the cpu in `rdi`. The return values and the header protocol (pc,
//! status, icount un-counting on early exits) are those of `codegen.rs`.
//!
//! Code shape: `rbx` holds the cpu pointer for the whole block; ops compute in
//! `rax`/`rcx`/`rdx`. An IR temp has an 8-byte frame slot holding its canonical form (I32
//! values zero-extended), but most never touch it: a value computed into `rax` and read only
//! by the next instruction stays there; single-definition constants are immediates and
//! guest-state loads are read at their uses as `[rbx+off]` operands (see [`Loc`] for when
//! those are written to the slot after all); unused pure values emit nothing. Guest state is
//! written in place. Memory accesses probe the softmmu TLB inline; misses, status checks,
//! the prologue's exits and exit stubs are emitted out of line after the block body so the
//! hot path falls through.
//!
//! Pitfall: the `rax` forwarding and the operand bindings are decided in emission order,
//! which is only sound because IR branches go forward and every value read after a label is
//! in its slot there (bindings are written out before branches and labels; `mov`
//! destinations, the only temps assigned twice, always live in their slots).
//!
//! Why not a crate for the whole thing: the encoding is done by `dynasmrt` (instruction
//! templates assembled at build time); the selection above is simple enough that a
//! register allocator or an IR pass would cost more compile time than it saves for code
//! that runs a few times before Cranelift replaces it.

// `dynasm!` expands dynamic registers (`Rq(r)`) to `r.into()`.
#![allow(clippy::useless_conversion)]

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynamicLabel, DynasmApi, DynasmLabelApi, VecAssembler};
use kite_ir::state::{offsets, status, PAGE_BITS, PAGE_MASK};
use kite_ir::{Access, BinOp, Cond, Exit, FpOp, Helper, Inst, MemOp, MemSize, RmwOp, Temp, Ty, UnOp};

use crate::codegen::{ret, TbSpec};
use crate::softmmu;

/// Host features the emitter may use (checked once).
#[derive(Clone, Copy, Debug)]
struct HostFeatures {
    lzcnt: bool,
    bmi1: bool,
    popcnt: bool,
}

/// The baseline compiler's reusable state (buffers kept across blocks: no allocation
/// per block once they have grown).
pub(crate) struct Baseline {
    host: HostFeatures,
    /// Chain with patchable direct jumps (the code cache has a writable view); else each
    /// chained exit loads its slot's target and jumps through it.
    pub(crate) direct: bool,
    /// The direct jumps of the last compiled block, for the engine to publish.
    jumps: Vec<Jump>,
    code: Vec<u8>,
    ops: VecAssembler<X64Relocation>,
    labels: Vec<DynamicLabel>,
    stubs: Vec<Stub>,
    uses: Vec<u32>,
    multi: Vec<bool>,
    last: Vec<u32>,
    locs: Vec<Loc>,
    quiet: Vec<bool>,
    placed: Vec<bool>,
}

impl std::fmt::Debug for Baseline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Baseline").field("host", &self.host).finish()
    }
}

/// A chained exit's patchable `jmp rel32` in the last compiled block (offsets from the
/// start of its code): the engine points the displacement at the target when it links the
/// exit's chain slot, and back at the stub, which returns the slot to the dispatcher, when
/// it unlinks it (see `ChainSlot::set_target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Jump {
    /// The exit's chain slot (index into the TB's slots).
    pub slot: u32,
    /// The 4-byte-aligned displacement of the `jmp`.
    pub rel: u32,
    /// The unlinked landing.
    pub stub: u32,
}

/// Where a block's out-of-line pieces come back to, and what they need.
enum Stub {
    /// A TLB miss: call the slow path for access `kind`.
    Slow {
        entry: DynamicLabel,
        back: DynamicLabel,
        pc: u64,
        info: u64,
        /// A store's value (where it is, whether it is an I32) and the pc after it.
        store: Option<(Loc, bool, u64)>,
        load_i32: bool,
    },
    /// The unlinked landing of a direct chained exit (the frame is already torn down and
    /// the cpu is in `rdi`): store the pc and return the chain slot to the dispatcher.
    Chain { entry: DynamicLabel, pc: u64, slot: u64, idx: u32, rel: u32 },
    /// A non-zero status after a call (`check_status` in codegen.rs).
    Status { entry: DynamicLabel, rem: u32, rem_after: u32, pc_on_exit: Option<(u64, u64)> },
    /// An atomic that missed the TLB (or is not done inline): the slow-path helper, then
    /// back with the old value in `rax`; a non-zero status goes to `status`.
    Atomic {
        entry: DynamicLabel,
        back: DynamicLabel,
        pc: u64,
        info: u64,
        /// Where the operand and the expected value are (and whether they are I32).
        src: (Loc, bool),
        expected: (Loc, bool),
        dst_i32: bool,
        status: DynamicLabel,
    },
}

/// Where a temp's value is. Temps start in their frame slot; a temp defined once (never a
/// `mov` destination) by a constant that fits an imm32, or by a load of guest state, is not
/// materialised at all: its readers use the immediate or the state field directly. A state
/// binding holds while the field is unchanged: it is written to the slot before a store to
/// that field, before a helper that writes state, and before any branch or label (where
/// control paths meet).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Loc {
    /// `[rsp + off]`.
    Slot(i32),
    /// `[rbx + off]`.
    State(i32),
    /// The immediate (sign-extended for I64; the raw low 32 bits for I32).
    Imm(i32),
}

/// Errors: blocks the emitter does not handle run on the interpreter instead.
pub(crate) type BaselineError = String;

impl Baseline {
    pub(crate) fn new() -> Baseline {
        let host = HostFeatures {
            lzcnt: std::is_x86_feature_detected!("lzcnt"),
            bmi1: std::is_x86_feature_detected!("bmi1"),
            popcnt: std::is_x86_feature_detected!("popcnt"),
        };
        Baseline {
            host,
            direct: false,
            jumps: Vec::new(),
            code: Vec::new(),
            ops: VecAssembler::new(0),
            labels: Vec::new(),
            stubs: Vec::new(),
            uses: Vec::new(),
            multi: Vec::new(),
            last: Vec::new(),
            locs: Vec::new(),
            quiet: Vec::new(),
            placed: Vec::new(),
        }
    }

    /// Compile one TB. `heat` is the address of its entry counter (a `u32`).
    pub(crate) fn compile(&mut self, spec: &TbSpec<'_>, heat: u64) -> Result<(), BaselineError> {
        let mut ops = std::mem::replace(&mut self.ops, VecAssembler::new(0));
        let epilogue = ops.new_dynamic_label();
        let mut labels = std::mem::take(&mut self.labels);
        labels.clear();
        labels.extend((0..spec.block.nlabels).map(|_| ops.new_dynamic_label()));
        let mut stubs = std::mem::take(&mut self.stubs);
        stubs.clear();
        let mut uses = std::mem::take(&mut self.uses);
        let mut multi = std::mem::take(&mut self.multi);
        let mut last = std::mem::take(&mut self.last);
        count_uses(spec.block, &mut uses, &mut multi, &mut last);
        let mut locs = std::mem::take(&mut self.locs);
        let quiet = std::mem::take(&mut self.quiet);
        let placed = std::mem::take(&mut self.placed);
        locs.clear();
        locs.extend((0..spec.block.temps.len()).map(|t| Loc::Slot(8 * t as i32)));
        let mut jumps = std::mem::take(&mut self.jumps);
        jumps.clear();
        let mut e = Emit {
            ops,
            spec,
            host: self.host,
            direct: self.direct,
            jumps,
            frame: 0,
            labels,
            stubs,
            pc: spec.block.pc,
            started: 0,
            next_slot: 0,
            epilogue,
            status_exit: None,
            uses,
            multi,
            last,
            locs,
            quiet,
            placed,
            bound: Vec::new(),
            entry_exits: None,
            at: 0,
            rax_holds: None,
            rax_avail: None,
        };
        let r = e.body(heat);
        self.labels = std::mem::take(&mut e.labels);
        self.stubs = std::mem::take(&mut e.stubs);
        self.uses = std::mem::take(&mut e.uses);
        self.multi = std::mem::take(&mut e.multi);
        self.last = std::mem::take(&mut e.last);
        self.locs = std::mem::take(&mut e.locs);
        self.quiet = std::mem::take(&mut e.quiet);
        self.placed = std::mem::take(&mut e.placed);
        self.jumps = std::mem::take(&mut e.jumps);
        r?;
        // `drain` keeps the assembler's buffers for the next block; on an error the
        // assembler is dropped (it may hold unresolved references).
        let mut ops = e.ops;
        self.code.clear();
        self.code.extend(ops.drain().map_err(|e| format!("assembler: {e:?}"))?);
        self.ops = ops;
        // The engine patches these displacements in place: each must be a `jmp rel32`'s.
        if self.jumps.iter().any(|j| j.rel == 0 || self.code.get(j.rel as usize - 1) != Some(&0xe9)) {
            return Err("a chained exit is not a jmp rel32".into());
        }
        Ok(())
    }

    /// The code of the last successful [`Baseline::compile`].
    pub(crate) fn code(&self) -> &[u8] {
        &self.code
    }

    /// The direct chained exits of the last successful [`Baseline::compile`].
    pub(crate) fn jumps(&self) -> &[Jump] {
        &self.jumps
    }
}

struct Emit<'a, 'b> {
    ops: VecAssembler<X64Relocation>,
    spec: &'a TbSpec<'b>,
    host: HostFeatures,
    direct: bool,
    jumps: Vec<Jump>,
    /// Bytes reserved below the saved registers (temps; keeps `rsp` 16-byte aligned).
    frame: i32,
    labels: Vec<DynamicLabel>,
    stubs: Vec<Stub>,
    pc: u64,
    started: u32,
    next_slot: usize,
    epilogue: DynamicLabel,
    status_exit: Option<DynamicLabel>,
    /// Reads of each temp in the block.
    uses: Vec<u32>,
    /// Temps assigned more than once (`mov` destinations): always in their slot.
    multi: Vec<bool>,
    /// Index of the last instruction reading each temp.
    last: Vec<u32>,
    /// Where each temp's value is (see [`Loc`]).
    locs: Vec<Loc>,
    /// Per instruction: whether it emits no code ([`Emit::silent`], decided once).
    quiet: Vec<bool>,
    /// Per label: placed yet (the forward-branch check).
    placed: Vec<bool>,
    /// Temps currently bound to a state field.
    bound: Vec<Temp>,
    /// The prologue's out-of-line exits: (exit request, hot).
    entry_exits: Option<(DynamicLabel, DynamicLabel)>,
    /// Index of the instruction being emitted.
    at: usize,
    /// The temp whose value `rax` holds at the end of the previous instruction (its
    /// slot may not have been written, see `st`).
    rax_holds: Option<Temp>,
    /// The same, for the instruction being emitted (only `ld(RAX, t)` consults it).
    rax_avail: Option<Temp>,
}

/// The temp an instruction loads into `rax` before anything else touches `rax`, and
/// never reads from its slot: a single-use value computed into `rax` by the instruction
/// just before need not be stored at all.
fn rax_operand(inst: &Inst) -> Option<Temp> {
    match *inst {
        Inst::Mov { src, .. } | Inst::StState { src, .. } | Inst::Un { src, .. } => Some(src),
        Inst::Bin { op: BinOp::MulHsu, .. } => None,
        Inst::Bin { a, .. } | Inst::Setcond { a, .. } | Inst::BrCond { a, .. } | Inst::Select { a, .. } => Some(a),
        Inst::Load { addr, .. } | Inst::Store { addr, .. } => Some(addr),
        Inst::Exit(Exit::Indirect(t)) => Some(t),
        _ => None,
    }
}

/// How many times each temp is read (into `uses`, one entry per temp), the index of the
/// instruction that reads it last (`last`), and which temps are `mov` destinations (`multi`).
fn count_uses(block: &kite_ir::Block, uses: &mut Vec<u32>, multi: &mut Vec<bool>, last: &mut Vec<u32>) {
    uses.clear();
    uses.resize(block.temps.len(), 0);
    last.clear();
    last.resize(block.temps.len(), 0);
    multi.clear();
    multi.resize(block.temps.len(), false);
    for inst in &block.insts {
        if let Inst::Mov { dst, .. } = *inst {
            if let Some(m) = multi.get_mut(dst.0 as usize) {
                *m = true;
            }
        }
    }
    for (i, inst) in block.insts.iter().enumerate() {
        inst.for_each_use(|t| {
            if let Some(u) = uses.get_mut(t.0 as usize) {
                *u += 1;
                last[t.0 as usize] = i as u32;
            }
        });
    }
}

/// The control word of [`fp_call`]: the op's index in [`FpOp::ALL`], plus 256 for binary64.
pub(crate) fn fp_ctl(op: FpOp, ty: Ty) -> u64 {
    FpOp::ALL.iter().position(|&o| o == op).unwrap_or(0) as u64 | ((ty == Ty::I64) as u64) << 8
}

/// [`Inst::Fp`] as a call (a [`kite_ir::HelperFn`]; the CPU pointer is unused): baseline
/// code, and fused multiply-adds in Cranelift code on hosts without FMA.
pub(crate) extern "C" fn fp_call(_cpu: *mut u8, ctl: u64, a: u64, b: u64, c: u64) -> u64 {
    let op = FpOp::ALL[(ctl & 0xff) as usize % FpOp::ALL.len()];
    let ty = if ctl & 0x100 != 0 { Ty::I64 } else { Ty::I32 };
    kite_ir::interp::eval_fp(op, ty, a, b, c)
}

/// How many entries one run of a block of `ninsns` guest instructions counts for toward
/// the tier-up threshold: one per started 8 instructions beyond the first 15, so long blocks
/// (unrolled crypto and checksum code in a Linux boot) reach Cranelift after as many guest
/// instructions as a typical short block, while blocks under 16 instructions count as
/// before. Measured on a boot's per-block entry counts: 192 blocks promoted instead of 170,
/// and 56% of the instructions run in blocks that get promoted instead of 43%.
pub(crate) fn entry_weight(ninsns: u32) -> u32 {
    (ninsns / 8).max(1)
}

/// Host register numbers (`Rq(n)`).
const RAX: u8 = 0;
const RCX: u8 = 1;
const RDX: u8 = 2;

fn fits_i32(v: u64) -> bool {
    v as i64 == v as i32 as i64
}

impl Emit<'_, '_> {
    fn body(&mut self, heat: u64) -> Result<(), String> {
        // Forward branches only (see the module pitfall): decline anything else.
        let insts = &self.spec.block.insts;
        self.placed.clear();
        self.placed.resize(self.labels.len(), false);
        for inst in insts {
            match *inst {
                Inst::SetLabel(l) => self.placed[l.0 as usize] = true,
                Inst::Br(l) | Inst::BrCond { target: l, .. } if self.placed[l.0 as usize] => {
                    return Err("backward branch".into());
                }
                _ => {}
            }
        }
        let mut quiet = std::mem::take(&mut self.quiet);
        quiet.clear();
        quiet.extend(insts.iter().map(|i| self.silent(i)));
        self.quiet = quiet;
        self.prologue(heat)?;
        for (i, inst) in self.spec.block.insts.iter().enumerate() {
            self.at = i;
            // What rax holds survives only into the next instruction (and across the
            // instructions that emit nothing).
            if self.quiet[i] {
                // Bookkeeping only (pc, bindings): rax is left as it is.
                self.inst(i, inst)?;
                continue;
            }
            self.rax_avail = self.rax_holds.take();
            self.inst(i, inst)?;
        }
        // Validated blocks end in an exit; be defensive anyway.
        self.leave(self.spec.block.pc, status::LOOKUP as u64);
        self.emit_stubs();
        Ok(())
    }

    /// Whether `inst` emits no code: markers, unused pure values, and constants and state
    /// loads that their readers take directly (see [`Loc`]).
    fn silent(&self, inst: &Inst) -> bool {
        let dead = |t: Temp| self.uses[t.0 as usize] == 0 && !self.multi[t.0 as usize];
        match *inst {
            Inst::InsnStart { .. } => true,
            Inst::Const { dst, val } => {
                dead(dst)
                    || (!self.multi[dst.0 as usize] && (self.ty(dst) == Ty::I32 || fits_i32(self.ty(dst).mask(val))))
            }
            Inst::LdState { dst, off } => dead(dst) || (!self.multi[dst.0 as usize] && off >= offsets::HEADER_END),
            _ => inst.pure_def().is_some_and(dead),
        }
    }

    fn slot(&self, t: Temp) -> i32 {
        8 * t.0 as i32
    }

    fn ty(&self, t: Temp) -> Ty {
        self.spec.block.ty(t)
    }

    /// `reg = temp` (64-bit: slots are canonical). For `rax`, nothing if the previous
    /// instruction left the value there.
    fn ld(&mut self, r: u8, t: Temp) {
        if r == RAX && self.rax_avail.take() == Some(t) {
            return;
        }
        if r == RAX {
            self.rax_avail = None;
        }
        let (loc, i32) = (self.loc(t), self.ty(t) == Ty::I32);
        self.ld_loc(r, loc, i32);
    }

    /// `reg = ` the value at `loc` (of an I32 temp when `i32`), zero-extended.
    fn ld_loc(&mut self, r: u8, loc: Loc, i32: bool) {
        match loc {
            Loc::Slot(s) => dynasm!(self.ops ; .arch x64 ; mov Rq(r), QWORD [rsp + s]),
            Loc::State(o) if i32 => dynasm!(self.ops ; .arch x64 ; mov Rd(r), DWORD [rbx + o]),
            Loc::State(o) => dynasm!(self.ops ; .arch x64 ; mov Rq(r), QWORD [rbx + o]),
            Loc::Imm(v) if i32 => dynasm!(self.ops ; .arch x64 ; mov Rd(r), v),
            Loc::Imm(v) => dynasm!(self.ops ; .arch x64 ; mov Rq(r), v),
        }
    }

    fn loc(&self, t: Temp) -> Loc {
        self.locs[t.0 as usize]
    }

    /// Write temps bound to state fields overlapping `[off, off+len)` (all of them when
    /// `len` is `None`) to their slots, through `rcx` (`rax` may hold the next operand).
    fn materialize(&mut self, range: Option<(i32, i32)>) {
        let mut i = 0;
        while i < self.bound.len() {
            let t = self.bound[i];
            let Loc::State(o) = self.loc(t) else {
                self.bound.swap_remove(i);
                continue;
            };
            if self.last[t.0 as usize] <= self.at as u32 {
                // Read for the last time already, or by this instruction, which reads its
                // operands before it writes state or leaves (a branch's compare).
                self.bound.swap_remove(i);
                continue;
            }
            let w = (self.ty(t).bits() / 8) as i32;
            if range.is_some_and(|(off, len)| !(o < off + len && off < o + w)) {
                i += 1;
                continue;
            }
            self.ld(RCX, t);
            let s = self.slot(t);
            dynasm!(self.ops ; .arch x64 ; mov QWORD [rsp + s], rcx);
            self.locs[t.0 as usize] = Loc::Slot(s);
            self.bound.swap_remove(i);
        }
    }

    /// `temp = reg`, canonicalising I32 results (their upper half must be zero).
    fn st(&mut self, t: Temp, r: u8) {
        if self.ty(t) == Ty::I32 {
            dynasm!(self.ops ; .arch x64 ; mov Rd(r), Rd(r));
        }
        self.st_canon(t, r);
    }

    /// `temp = reg` for a value already in canonical form. A value in `rax` is left there
    /// for the next instruction, and not stored at all if that instruction is its only
    /// reader and takes it from `rax` (see [`rax_operand`]).
    fn st_canon(&mut self, t: Temp, r: u8) {
        self.locs[t.0 as usize] = Loc::Slot(self.slot(t));
        if r == RAX {
            self.rax_holds = Some(t);
            let next = (self.at + 1..self.quiet.len()).find(|&j| !self.quiet[j]).map(|j| &self.spec.block.insts[j]);
            if self.uses[t.0 as usize] == 1 && next.and_then(rax_operand) == Some(t) {
                return;
            }
        }
        let s = self.slot(t);
        dynasm!(self.ops ; .arch x64 ; mov QWORD [rsp + s], Rq(r));
    }

    fn mov_imm(&mut self, r: u8, v: u64) {
        if r == RAX {
            self.rax_avail = None;
        }
        if v <= u32::MAX as u64 {
            dynasm!(self.ops ; .arch x64 ; mov Rd(r), v as i32);
        } else if fits_i32(v) {
            dynasm!(self.ops ; .arch x64 ; mov Rq(r), v as i32);
        } else {
            dynasm!(self.ops ; .arch x64 ; mov Rq(r), QWORD v as i64);
        }
    }

    fn hdr_store_imm64(&mut self, off: u32, v: u64) {
        let off = off as i32;
        if fits_i32(v) {
            dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + off], v as i32);
        } else {
            self.mov_imm(RCX, v);
            dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + off], rcx);
        }
    }

    fn store_pc(&mut self, pc: u64) {
        self.hdr_store_imm64(offsets::PC, pc);
    }

    fn state_off(&self, off: u32) -> Result<i32, String> {
        i32::try_from(off).map_err(|_| format!("state offset {off:#x} out of range"))
    }

    /// Instructions of this block not executed when it leaves at the current one.
    fn unexecuted(&self) -> u32 {
        self.spec.block.ninsns.saturating_sub(self.started.saturating_sub(1))
    }

    fn prologue(&mut self, heat: u64) -> Result<(), String> {
        // Temps, rounded so that rsp is 16-byte aligned after `push rbx` (entered with a
        // return address on the stack). No frame pointer: nothing here walks frames, and
        // `push rbp; mov rbp, rsp ... pop rbp` was three of the ~45 host instructions a
        // typical kernel block runs.
        let temps = self.spec.block.temps.len() as i64 * 8;
        let frame = (temps + 15) / 16 * 16;
        self.frame = i32::try_from(frame).map_err(|_| "too many temps".to_string())?;
        let (frame, er, ic) = (self.frame, offsets::EXIT_REQUEST as i32, offsets::ICOUNT as i32);
        let (xr, hot_l) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        dynasm!(self.ops
            ; .arch x64
            ; push rbx
            ; sub rsp, frame
            ; mov rbx, rdi
            ; cmp DWORD [rbx + er], 0
            ; jne =>xr
        );
        self.mov_imm(RAX, heat);
        // Fires once, when the counter is at most the weight (and then wraps far away):
        // the engine re-arms it (`RECHECK`) or parks it at `u32::MAX`.
        let w = entry_weight(self.spec.block.ninsns) as i32;
        dynasm!(self.ops ; .arch x64 ; sub DWORD [rax], w ; jbe =>hot_l);
        let n = self.spec.block.ninsns as i32;
        if n > 0 {
            dynasm!(self.ops ; .arch x64 ; add QWORD [rbx + ic], n);
        }
        // Out of line (after the body, see `emit_stubs`): the exit request (as codegen's
        // prologue) and the tier-up request.
        self.entry_exits = Some((xr, hot_l));
        Ok(())
    }

    /// Return `r` to the dispatcher with `pc` stored.
    fn leave(&mut self, pc: u64, r: u64) {
        self.store_pc(pc);
        self.mov_imm(RAX, r);
        let epi = self.epilogue;
        dynasm!(self.ops ; .arch x64 ; jmp =>epi);
    }

    /// Tear the frame down and jump to the block whose code address is in `rax`.
    fn tail_jump_rax(&mut self) {
        let frame = self.frame;
        dynasm!(self.ops
            ; .arch x64
            ; mov rdi, rbx
            ; add rsp, frame
            ; pop rbx
            ; jmp rax
        );
    }

    fn inst(&mut self, i: usize, inst: &Inst) -> Result<(), String> {
        let dead = |t: Temp| self.uses[t.0 as usize] == 0 && !self.multi[t.0 as usize];
        if inst.pure_def().is_some_and(dead) {
            return Ok(());
        }
        match *inst {
            Inst::InsnStart { pc } => {
                self.pc = pc;
                self.started += 1;
            }
            Inst::Const { dst, val } => {
                let v = self.ty(dst).mask(val);
                let s = self.slot(dst);
                let imm = match self.ty(dst) {
                    Ty::I32 => Some(v as u32 as i32),
                    Ty::I64 if fits_i32(v) => Some(v as i32),
                    Ty::I64 => None,
                };
                match imm {
                    Some(k) if !self.multi[dst.0 as usize] => self.locs[dst.0 as usize] = Loc::Imm(k),
                    _ if fits_i32(v) => dynasm!(self.ops ; .arch x64 ; mov QWORD [rsp + s], v as i32),
                    _ => {
                        self.mov_imm(RAX, v);
                        dynasm!(self.ops ; .arch x64 ; mov QWORD [rsp + s], rax);
                    }
                }
            }
            Inst::Mov { dst, src } => {
                self.ld(RAX, src);
                self.st_canon(dst, RAX);
            }
            Inst::LdState { dst, off } => {
                let o = self.state_off(off)?;
                if off >= offsets::HEADER_END && !self.multi[dst.0 as usize] {
                    // Read where it is used (see `Loc`).
                    self.locs[dst.0 as usize] = Loc::State(o);
                    self.bound.push(dst);
                } else {
                    match self.ty(dst) {
                        Ty::I32 => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rbx + o]),
                        Ty::I64 => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rbx + o]),
                    }
                    self.st_canon(dst, RAX);
                }
            }
            Inst::StState { src, off } => {
                let o = self.state_off(off)?;
                let len = (self.ty(src).bits() / 8) as i32;
                self.materialize(Some((o, len)));
                self.ld(RAX, src);
                match self.ty(src) {
                    Ty::I32 => dynasm!(self.ops ; .arch x64 ; mov DWORD [rbx + o], eax),
                    Ty::I64 => dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + o], rax),
                }
            }
            Inst::Bin { op, dst, a, b } => self.bin(op, dst, a, b),
            Inst::Un { op, dst, src } => self.un(op, dst, src)?,
            Inst::Fp { op, dst, a, b, c } => self.fp(op, dst, a, b, c),
            Inst::Setcond { cond, dst, a, b } => {
                self.cmp(a, b);
                self.setcc(cond);
                dynasm!(self.ops ; .arch x64 ; movzx eax, al);
                self.st_canon(dst, RAX);
            }
            Inst::Select { dst, c, a, b } => {
                self.ld(RCX, c);
                self.ld(RAX, a);
                self.ld(RDX, b);
                dynasm!(self.ops ; .arch x64 ; test rcx, rcx ; cmovz rax, rdx);
                self.st_canon(dst, RAX);
            }
            Inst::Load { dst, addr, mop } => self.mem(addr, mop, Access::Read, None, Some(dst), 0),
            Inst::Store { src, addr, mop } => {
                let next = self.next_pc(i);
                self.mem(addr, mop, Access::Write, Some(src), None, next);
            }
            Inst::Atomic { op, dst, addr, src, expected, mop } => self.atomic(i, op, dst, addr, src, expected, mop),
            Inst::Call { helper, ref args, dst } => self.call(helper, args, dst)?,
            Inst::SetLabel(l) => {
                // Paths meet here: every value must be where all of them put it.
                self.materialize(None);
                let lbl = self.labels[l.0 as usize];
                dynasm!(self.ops ; .arch x64 ; =>lbl);
            }
            Inst::Br(l) => {
                self.materialize(None);
                let lbl = self.labels[l.0 as usize];
                dynasm!(self.ops ; .arch x64 ; jmp =>lbl);
            }
            Inst::BrCond { cond, a, b, target } => {
                self.materialize(None);
                self.cmp(a, b);
                let lbl = self.labels[target.0 as usize];
                self.jcc(cond, lbl);
            }
            Inst::Exit(ref e) => self.exit(e),
        }
        Ok(())
    }

    fn next_pc(&self, i: usize) -> u64 {
        crate::codegen::next_pc(self.spec.block, i, self.pc)
    }

    /// Flags for `a <cond> b` in the operands' width.
    fn cmp(&mut self, a: Temp, b: Temp) {
        self.ld(RAX, a);
        match (self.loc(b), self.ty(a)) {
            (Loc::Slot(s), Ty::I32) => dynasm!(self.ops ; .arch x64 ; cmp eax, DWORD [rsp + s]),
            (Loc::Slot(s), Ty::I64) => dynasm!(self.ops ; .arch x64 ; cmp rax, QWORD [rsp + s]),
            (Loc::State(o), Ty::I32) => dynasm!(self.ops ; .arch x64 ; cmp eax, DWORD [rbx + o]),
            (Loc::State(o), Ty::I64) => dynasm!(self.ops ; .arch x64 ; cmp rax, QWORD [rbx + o]),
            (Loc::Imm(v), Ty::I32) => dynasm!(self.ops ; .arch x64 ; cmp eax, v),
            (Loc::Imm(v), Ty::I64) => dynasm!(self.ops ; .arch x64 ; cmp rax, v),
        }
    }

    fn setcc(&mut self, c: Cond) {
        match c {
            Cond::Eq => dynasm!(self.ops ; .arch x64 ; sete al),
            Cond::Ne => dynasm!(self.ops ; .arch x64 ; setne al),
            Cond::LtS => dynasm!(self.ops ; .arch x64 ; setl al),
            Cond::GeS => dynasm!(self.ops ; .arch x64 ; setge al),
            Cond::LtU => dynasm!(self.ops ; .arch x64 ; setb al),
            Cond::GeU => dynasm!(self.ops ; .arch x64 ; setae al),
            Cond::LeS => dynasm!(self.ops ; .arch x64 ; setle al),
            Cond::GtS => dynasm!(self.ops ; .arch x64 ; setg al),
            Cond::LeU => dynasm!(self.ops ; .arch x64 ; setbe al),
            Cond::GtU => dynasm!(self.ops ; .arch x64 ; seta al),
        }
    }

    fn jcc(&mut self, c: Cond, l: DynamicLabel) {
        match c {
            Cond::Eq => dynasm!(self.ops ; .arch x64 ; je =>l),
            Cond::Ne => dynasm!(self.ops ; .arch x64 ; jne =>l),
            Cond::LtS => dynasm!(self.ops ; .arch x64 ; jl =>l),
            Cond::GeS => dynasm!(self.ops ; .arch x64 ; jge =>l),
            Cond::LtU => dynasm!(self.ops ; .arch x64 ; jb =>l),
            Cond::GeU => dynasm!(self.ops ; .arch x64 ; jae =>l),
            Cond::LeS => dynasm!(self.ops ; .arch x64 ; jle =>l),
            Cond::GtS => dynasm!(self.ops ; .arch x64 ; jg =>l),
            Cond::LeU => dynasm!(self.ops ; .arch x64 ; jbe =>l),
            Cond::GtU => dynasm!(self.ops ; .arch x64 ; ja =>l),
        }
    }

    fn bin(&mut self, op: BinOp, dst: Temp, a: Temp, b: Temp) {
        let w64 = self.ty(dst) == Ty::I64;
        let lb = self.loc(b);
        self.ld(RAX, a);
        macro_rules! alu {
            ($m:ident) => {
                match (lb, w64) {
                    (Loc::Slot(s), true) => dynasm!(self.ops ; .arch x64 ; $m rax, QWORD [rsp + s]),
                    (Loc::Slot(s), false) => dynasm!(self.ops ; .arch x64 ; $m eax, DWORD [rsp + s]),
                    (Loc::State(o), true) => dynasm!(self.ops ; .arch x64 ; $m rax, QWORD [rbx + o]),
                    (Loc::State(o), false) => dynasm!(self.ops ; .arch x64 ; $m eax, DWORD [rbx + o]),
                    (Loc::Imm(v), true) => dynasm!(self.ops ; .arch x64 ; $m rax, v),
                    (Loc::Imm(v), false) => dynasm!(self.ops ; .arch x64 ; $m eax, v),
                }
            };
        }
        macro_rules! shift {
            ($m:ident) => {{
                // The hardware takes the count modulo the operand width, as the IR does.
                self.ld(RCX, b);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; $m rax, cl);
                } else {
                    dynasm!(self.ops ; .arch x64 ; $m eax, cl);
                }
            }};
        }
        // One-operand multiplies: rdx:rax = rax * rcx.
        macro_rules! wide {
            ($m:ident) => {{
                self.ld(RCX, b);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; $m rcx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; $m ecx);
                }
            }};
        }
        macro_rules! minmax {
            ($cmov:ident) => {{
                self.ld(RCX, b);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; cmp rax, rcx ; $cmov rax, rcx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; cmp eax, ecx ; $cmov eax, ecx);
                }
            }};
        }
        let mut out = RAX;
        match op {
            BinOp::Add => alu!(add),
            BinOp::Sub => alu!(sub),
            BinOp::And => alu!(and),
            BinOp::Or => alu!(or),
            BinOp::Xor => alu!(xor),
            BinOp::Mul => {
                self.ld(RCX, b);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; imul rax, rcx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; imul eax, ecx);
                }
            }
            BinOp::Shl => shift!(shl),
            BinOp::Shr => shift!(shr),
            BinOp::Sar => shift!(sar),
            BinOp::Rotl => shift!(rol),
            BinOp::Rotr => shift!(ror),
            BinOp::MinS => minmax!(cmovg),
            BinOp::MaxS => minmax!(cmovl),
            BinOp::MinU => minmax!(cmova),
            BinOp::MaxU => minmax!(cmovb),
            // The high half of the product is the result.
            BinOp::MulHs => {
                out = RDX;
                wide!(imul);
            }
            BinOp::MulHu => {
                out = RDX;
                wide!(mul);
            }
            BinOp::MulHsu => {
                // signed(a) * unsigned(b): the unsigned high half minus b where a < 0.
                out = RDX;
                self.ld(RCX, b);
                if w64 {
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov r8, rax
                        ; mul rcx
                        ; sar r8, 63
                        ; and r8, rcx
                        ; sub rdx, r8
                    );
                } else {
                    dynasm!(self.ops
                        ; .arch x64
                        ; mov r8d, eax
                        ; mul ecx
                        ; sar r8d, 31
                        ; and r8d, ecx
                        ; sub edx, r8d
                    );
                }
            }
            BinOp::DivU | BinOp::RemU => {
                // x/0 = all ones, x%0 = x (the IR's RISC-V results).
                let rem = op == BinOp::RemU;
                if rem {
                    out = RDX;
                }
                let (zero, done) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
                self.ld(RCX, b);
                dynasm!(self.ops ; .arch x64 ; test rcx, rcx ; jz =>zero ; xor edx, edx);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; div rcx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; div ecx);
                }
                self.div_by_zero(rem, w64, zero, done);
            }
            BinOp::DivS | BinOp::RemS => {
                // x/0 = -1, x%0 = x; MIN/-1 = MIN (= -MIN), MIN%-1 = 0: -1 never reaches idiv.
                let rem = op == BinOp::RemS;
                if rem {
                    out = RDX;
                }
                let (zero, m1, done) =
                    (self.ops.new_dynamic_label(), self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
                self.ld(RCX, b);
                dynasm!(self.ops ; .arch x64 ; test rcx, rcx ; jz =>zero);
                if w64 {
                    dynasm!(self.ops ; .arch x64 ; cmp rcx, -1 ; je =>m1 ; cqo ; idiv rcx);
                } else {
                    dynasm!(self.ops ; .arch x64 ; cmp ecx, -1 ; je =>m1 ; cdq ; idiv ecx);
                }
                dynasm!(self.ops ; .arch x64 ; jmp =>done ; =>m1);
                if rem {
                    dynasm!(self.ops ; .arch x64 ; xor edx, edx);
                } else if w64 {
                    dynasm!(self.ops ; .arch x64 ; neg rax);
                } else {
                    dynasm!(self.ops ; .arch x64 ; neg eax);
                }
                self.div_by_zero(rem, w64, zero, done);
            }
        }
        // Every 32-bit form above leaves its result zero-extended.
        self.st_canon(dst, out);
    }

    /// The end of a division: jump over the divisor-0 path, which gives x/0 = all ones and
    /// x%0 = x (the IR's RISC-V results; `a` is still in rax there).
    fn div_by_zero(&mut self, rem: bool, w64: bool, zero: DynamicLabel, done: DynamicLabel) {
        dynasm!(self.ops ; .arch x64 ; jmp =>done ; =>zero);
        if rem {
            dynasm!(self.ops ; .arch x64 ; mov rdx, rax);
        } else if w64 {
            dynasm!(self.ops ; .arch x64 ; mov rax, -1);
        } else {
            dynasm!(self.ops ; .arch x64 ; mov eax, -1);
        }
        dynasm!(self.ops ; .arch x64 ; =>done);
    }

    fn un(&mut self, op: UnOp, dst: Temp, src: Temp) -> Result<(), String> {
        let (sty, dty) = (self.ty(src), self.ty(dst));
        let w64 = sty == Ty::I64;
        self.ld(RAX, src);
        let d64 = dty == Ty::I64;
        match op {
            UnOp::Neg if w64 => dynasm!(self.ops ; .arch x64 ; neg rax),
            UnOp::Neg => dynasm!(self.ops ; .arch x64 ; neg eax),
            UnOp::Not if w64 => dynasm!(self.ops ; .arch x64 ; not rax),
            UnOp::Not => dynasm!(self.ops ; .arch x64 ; not eax),
            UnOp::Sext8 if d64 => dynasm!(self.ops ; .arch x64 ; movsx rax, al),
            UnOp::Sext8 => dynasm!(self.ops ; .arch x64 ; movsx eax, al),
            UnOp::Sext16 if d64 => dynasm!(self.ops ; .arch x64 ; movsx rax, ax),
            UnOp::Sext16 => dynasm!(self.ops ; .arch x64 ; movsx eax, ax),
            UnOp::Sext32 if d64 => dynasm!(self.ops ; .arch x64 ; movsxd rax, eax),
            UnOp::Zext8 => dynasm!(self.ops ; .arch x64 ; movzx eax, al),
            UnOp::Zext16 => dynasm!(self.ops ; .arch x64 ; movzx eax, ax),
            // I64 -> I64 is the identity, I32 -> I64 zero-extends (slots are canonical).
            UnOp::Trunc if d64 => {}
            // 32 low bits into an I32, or zero-extended into an I64.
            UnOp::Sext32 | UnOp::Zext32 | UnOp::Trunc => dynasm!(self.ops ; .arch x64 ; mov eax, eax),
            UnOp::Clz if self.host.lzcnt && w64 => dynasm!(self.ops ; .arch x64 ; lzcnt rax, rax),
            UnOp::Clz if self.host.lzcnt => dynasm!(self.ops ; .arch x64 ; lzcnt eax, eax),
            UnOp::Ctz if self.host.bmi1 && w64 => dynasm!(self.ops ; .arch x64 ; tzcnt rax, rax),
            UnOp::Ctz if self.host.bmi1 => dynasm!(self.ops ; .arch x64 ; tzcnt eax, eax),
            UnOp::Popcnt if self.host.popcnt && w64 => dynasm!(self.ops ; .arch x64 ; popcnt rax, rax),
            UnOp::Popcnt if self.host.popcnt => dynasm!(self.ops ; .arch x64 ; popcnt eax, eax),
            UnOp::Bswap if w64 => dynasm!(self.ops ; .arch x64 ; bswap rax),
            UnOp::Bswap => dynasm!(self.ops ; .arch x64 ; bswap eax),
            UnOp::Clz | UnOp::Ctz | UnOp::Popcnt => return Err(format!("{op:?} needs a host feature")),
        }
        // 32-bit forms zero-extend; 64-bit results are only produced for I64 destinations.
        self.st_canon(dst, RAX);
        Ok(())
    }

    /// A guest access: inline TLB probe; the value is loaded into / stored from the temps.
    /// The inline softmmu TLB probe of a `size` access at the guest address in `rax`: on a
    /// hit `rax` becomes the host address; a miss (or a misaligned address, or a flagged
    /// page) jumps to `miss` with `rax` unchanged. Clobbers `rcx` and `rdx`.
    /// The inline TLB check of an access at `rax` (see `kite_ir::state::tlb_cmp_key`);
    /// on a hit `rax` is the host address, else it jumps to `miss` with `rax` intact.
    fn tlb_probe(&mut self, mop: MemOp, perm: Access, miss: DynamicLabel) {
        let m = (self.spec.mmu as i32 & 3) * 8;
        let (mask, table) = (offsets::TLB_MASK as i32 + m, offsets::TLB_TABLE as i32 + m);
        let tag = if perm == Access::Write { offsets::TLB_ADDR_WRITE } else { offsets::TLB_ADDR_READ } as i32;
        let addend = offsets::TLB_ADDEND as i32;
        let last = mop.size.bytes() as i32 - 1;
        let shift = (PAGE_BITS - offsets::TLB_ENTRY_SIZE.trailing_zeros()) as i8;
        // rcx = the entry: table + ((addr >> 7) & mask) (see `CpuHeader::tlb_mask`).
        dynasm!(self.ops
            ; .arch x64
            ; mov rcx, rax
            ; shr rcx, shift
            ; and rcx, QWORD [rbx + mask]
            ; add rcx, QWORD [rbx + table]
        );
        if mop.aligned || last == 0 {
            let mask = (PAGE_MASK | last as u64) as i64 as i32;
            dynasm!(self.ops ; .arch x64 ; mov rdx, rax ; and rdx, mask);
        } else {
            dynasm!(self.ops ; .arch x64 ; lea rdx, [rax + last] ; and rdx, PAGE_MASK as i64 as i32);
        }
        dynasm!(self.ops
            ; .arch x64
            ; cmp rdx, QWORD [rcx + tag]
            ; jne =>miss
            ; add rax, QWORD [rcx + addend]
        );
    }

    fn mem(&mut self, addr: Temp, mop: MemOp, kind: Access, src: Option<Temp>, dst: Option<Temp>, next_pc: u64) {
        let (slow, back) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        self.ld(RAX, addr);
        self.tlb_probe(mop, mop.perm(kind), slow);
        let load_i32 = dst.is_some_and(|d| self.ty(d) == Ty::I32);
        match (src, dst) {
            (Some(s), _) => {
                self.ld(RDX, s);
                match mop.size {
                    MemSize::B1 => dynasm!(self.ops ; .arch x64 ; mov BYTE [rax], dl),
                    MemSize::B2 => dynasm!(self.ops ; .arch x64 ; mov WORD [rax], dx),
                    MemSize::B4 => dynasm!(self.ops ; .arch x64 ; mov DWORD [rax], edx),
                    MemSize::B8 => dynasm!(self.ops ; .arch x64 ; mov QWORD [rax], rdx),
                }
            }
            (None, Some(d)) => {
                let d64 = self.ty(d) == Ty::I64;
                match (mop.size, mop.signed) {
                    (MemSize::B8, _) if d64 => dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rax]),
                    (MemSize::B8, _) | (MemSize::B4, false) => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rax]),
                    (MemSize::B4, true) if d64 => dynasm!(self.ops ; .arch x64 ; movsxd rax, DWORD [rax]),
                    (MemSize::B4, true) => dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rax]),
                    (MemSize::B2, true) if d64 => dynasm!(self.ops ; .arch x64 ; movsx rax, WORD [rax]),
                    (MemSize::B2, true) => dynasm!(self.ops ; .arch x64 ; movsx eax, WORD [rax]),
                    (MemSize::B2, false) => dynasm!(self.ops ; .arch x64 ; movzx eax, WORD [rax]),
                    (MemSize::B1, true) if d64 => dynasm!(self.ops ; .arch x64 ; movsx rax, BYTE [rax]),
                    (MemSize::B1, true) => dynasm!(self.ops ; .arch x64 ; movsx eax, BYTE [rax]),
                    (MemSize::B1, false) => dynasm!(self.ops ; .arch x64 ; movzx eax, BYTE [rax]),
                }
            }
            (None, None) => {}
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        if let Some(d) = dst {
            // Both paths leave the canonical value in rax.
            self.st_canon(d, RAX);
        }
        let fix = softmmu::fixup_info(self.unexecuted(), src.is_some());
        let info = softmmu::info(mop, kind, self.spec.mmu, self.spec.tb) | fix;
        self.stubs.push(Stub::Slow {
            entry: slow,
            back,
            pc: self.pc,
            info,
            store: src.map(|s| (self.loc(s), self.ty(s) == Ty::I32, next_pc)),
            load_i32,
        });
    }

    /// Jump to the shared status exit when the header status is non-zero (the slow path
    /// did the exit bookkeeping, see `softmmu::fixup_info`).
    fn status_exit_label(&mut self) -> DynamicLabel {
        match self.status_exit {
            Some(l) => l,
            None => {
                let l = self.ops.new_dynamic_label();
                self.status_exit = Some(l);
                l
            }
        }
    }

    /// After a call that may have set the header status: leave with it if non-zero
    /// (`codegen::check_status`).
    fn check_status(&mut self, pc_on_exit: Option<u64>) {
        let sto = offsets::STATUS as i32;
        let entry = self.ops.new_dynamic_label();
        dynasm!(self.ops ; .arch x64 ; cmp DWORD [rbx + sto], 0 ; jne =>entry);
        let rem = self.unexecuted();
        let rem_after = if pc_on_exit.is_some() { rem.saturating_sub(1) } else { rem };
        self.stubs.push(Stub::Status { entry, rem, rem_after, pc_on_exit: pc_on_exit.map(|n| (self.pc, n)) });
    }

    /// An atomic read-modify-write. A word or doubleword `Xchg`/`Add`/`Cas`/`And`/`Or`/
    /// `Xor` on a page the TLB holds for writing is a host atomic inline (`xchg`,
    /// `lock xadd`, `lock cmpxchg`, or a `lock cmpxchg` loop); everything else, and every
    /// miss, calls the slow path out of line. A Linux boot does ~270,000 atomics, most
    /// of them in cold code: as helper calls they were 70% of its slow-path entries.
    #[allow(clippy::too_many_arguments)]
    fn atomic(&mut self, i: usize, op: RmwOp, dst: Temp, addr: Temp, src: Temp, expected: Temp, mop: MemOp) {
        let next = self.next_pc(i);
        let info = softmmu::info(mop, Access::Write, self.spec.mmu, self.spec.tb) | softmmu::atomic_info(op);
        let (entry, back) = (self.ops.new_dynamic_label(), self.ops.new_dynamic_label());
        let dst_i32 = self.ty(dst) == Ty::I32;
        let inline = matches!(mop.size, MemSize::B4 | MemSize::B8)
            && matches!(op, RmwOp::Xchg | RmwOp::Add | RmwOp::Cas | RmwOp::And | RmwOp::Or | RmwOp::Xor);
        self.ld(RAX, addr);
        if inline {
            // A miss leaves the guest address in rax for the slow path.
            self.tlb_probe(mop.aligned(), Access::Write, entry);
            dynasm!(self.ops ; .arch x64 ; mov rdx, rax);
            self.ld(RCX, src);
            let w64 = mop.size == MemSize::B8;
            match op {
                RmwOp::Xchg if w64 => dynasm!(self.ops ; .arch x64 ; xchg QWORD [rdx], rcx ; mov rax, rcx),
                RmwOp::Xchg => dynasm!(self.ops ; .arch x64 ; xchg DWORD [rdx], ecx ; mov eax, ecx),
                RmwOp::Add if w64 => dynasm!(self.ops ; .arch x64 ; lock xadd QWORD [rdx], rcx ; mov rax, rcx),
                RmwOp::Add => dynasm!(self.ops ; .arch x64 ; lock xadd DWORD [rdx], ecx ; mov eax, ecx),
                RmwOp::Cas => {
                    self.ld(RAX, expected);
                    if w64 {
                        dynasm!(self.ops ; .arch x64 ; lock cmpxchg QWORD [rdx], rcx);
                    } else {
                        // A 32-bit cmpxchg that succeeds leaves rax as it was.
                        dynasm!(self.ops ; .arch x64 ; lock cmpxchg DWORD [rdx], ecx ; mov eax, eax);
                    }
                }
                _ => {
                    // rax = current; try current `op` src until no other writer got between.
                    let again = self.ops.new_dynamic_label();
                    if w64 {
                        dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rdx] ; =>again ; mov r8, rax);
                    } else {
                        dynasm!(self.ops ; .arch x64 ; mov eax, DWORD [rdx] ; =>again ; mov r8d, eax);
                    }
                    match op {
                        RmwOp::And => dynasm!(self.ops ; .arch x64 ; and r8, rcx),
                        RmwOp::Or => dynasm!(self.ops ; .arch x64 ; or r8, rcx),
                        _ => dynasm!(self.ops ; .arch x64 ; xor r8, rcx),
                    }
                    if w64 {
                        dynasm!(self.ops ; .arch x64 ; lock cmpxchg QWORD [rdx], r8 ; jne =>again);
                    } else {
                        dynasm!(self.ops ; .arch x64 ; lock cmpxchg DWORD [rdx], r8d ; jne =>again);
                    }
                }
            }
            // The old value as the slow path returns it: extended per the MemOp, then
            // canonical for the destination (32-bit results above are zero-extended).
            match (w64, dst_i32) {
                (false, false) if mop.signed => dynasm!(self.ops ; .arch x64 ; movsxd rax, eax),
                (true, true) => dynasm!(self.ops ; .arch x64 ; mov eax, eax),
                _ => {}
            }
        } else {
            dynasm!(self.ops ; .arch x64 ; jmp =>entry);
        }
        dynasm!(self.ops ; .arch x64 ; =>back);
        self.st_canon(dst, RAX);
        // The slow path's status exit: an exception leaves before this instruction, a
        // store that invalidated this block after it.
        let status = self.ops.new_dynamic_label();
        let rem = self.unexecuted();
        self.stubs.push(Stub::Status {
            entry: status,
            rem,
            rem_after: rem.saturating_sub(1),
            pc_on_exit: Some((self.pc, next)),
        });
        let (src, expected) =
            ((self.loc(src), self.ty(src) == Ty::I32), (self.loc(expected), self.ty(expected) == Ty::I32));
        self.stubs.push(Stub::Atomic { entry, back, pc: self.pc, info, src, expected, dst_i32, status });
    }

    /// Floating point by a call to [`fp_call`]: this tier runs cold code, where a call
    /// costs less than teaching it SSE (the optimising tier emits the host instructions).
    fn fp(&mut self, op: FpOp, dst: Temp, a: Temp, b: Temp, c: Temp) {
        // System V: rsi = control word, rdx, rcx, r8 = operands (rdi, the CPU, unused).
        self.ld(RDX, a);
        self.ld(RCX, b);
        self.ld(8, c);
        self.mov_imm(6, fp_ctl(op, self.ty(dst)));
        self.mov_imm(RAX, fp_call as *const () as usize as u64);
        dynasm!(self.ops ; .arch x64 ; call rax);
        self.st(dst, RAX);
    }

    fn call(&mut self, h: &Helper, args: &[Temp], dst: Option<Temp>) -> Result<(), String> {
        if args.len() > 4 {
            return Err(format!("helper {} has {} arguments", h.name, args.len()));
        }
        if h.effects.writes_state {
            // Values read from state fields before the call must not see its writes.
            let range = h.effects.state_range.map(|(lo, hi)| (lo as i32, hi.saturating_sub(lo) as i32));
            self.materialize(range);
        }
        if h.effects.may_exit {
            let pc = self.pc;
            self.store_pc(pc);
        }
        // rdi = cpu, then rsi, rdx, rcx, r8 (unused ones zero, as codegen passes).
        const ARGS: [u8; 4] = [6, 2, 1, 8];
        dynasm!(self.ops ; .arch x64 ; mov rdi, rbx);
        for (k, &r) in ARGS.iter().enumerate() {
            match args.get(k) {
                Some(&t) => self.ld(r, t),
                None => dynasm!(self.ops ; .arch x64 ; xor Rd(r), Rd(r)),
            }
        }
        self.mov_imm(RAX, h.func as usize as u64);
        dynasm!(self.ops ; .arch x64 ; call rax);
        if let Some(d) = dst {
            self.st(d, RAX);
        }
        if h.effects.may_exit {
            self.check_status(None);
        }
        Ok(())
    }

    fn exit(&mut self, e: &Exit) {
        match *e {
            Exit::Goto(t) => {
                let Some(&slot) = self.spec.slots.get(self.next_slot) else {
                    self.leave(t, ret::GOTO);
                    return;
                };
                self.next_slot += 1;
                if self.direct {
                    // Tear the frame down, then `jmp rel32`, its displacement 4-byte aligned
                    // so that relinking is one atomic store that no fetch sees half done.
                    let (frame, entry) = (self.frame, self.ops.new_dynamic_label());
                    dynasm!(self.ops ; .arch x64 ; mov rdi, rbx ; add rsp, frame ; pop rbx);
                    // One NOP of the padding's length: it runs at every chained exit.
                    match (4 - (self.ops.offset().0 + 1) % 4) % 4 {
                        1 => self.ops.push(0x90),
                        2 => self.ops.extend([0x66, 0x90]),
                        3 => self.ops.extend([0x0f, 0x1f, 0x00]),
                        _ => {}
                    }
                    debug_assert_eq!((self.ops.offset().0 + 1) % 4, 0);
                    // dynasm always encodes a jump to a dynamic label as `e9 rel32`.
                    dynasm!(self.ops ; .arch x64 ; jmp =>entry);
                    let rel = (self.ops.offset().0 - 4) as u32;
                    let idx = (self.next_slot - 1) as u32;
                    self.stubs.push(Stub::Chain { entry, pc: t, slot, idx, rel });
                    return;
                }
                let back = self.ops.new_dynamic_label();
                self.mov_imm(RAX, slot);
                dynasm!(self.ops ; .arch x64 ; mov rax, QWORD [rax] ; test rax, rax ; jz =>back);
                self.tail_jump_rax();
                dynasm!(self.ops ; .arch x64 ; =>back);
                self.store_pc(t);
                self.mov_imm(RAX, slot);
                let epi = self.epilogue;
                dynasm!(self.ops ; .arch x64 ; jmp =>epi);
            }
            Exit::GotoNoChain(t) => self.leave(t, ret::NOCHAIN),
            Exit::Indirect(t) => {
                let pco = offsets::PC as i32;
                self.ld(RAX, t);
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + pco], rax);
                if self.spec.jump_cache {
                    self.jc_probe();
                }
                self.mov_imm(RAX, ret::INDIRECT);
                let epi = self.epilogue;
                dynasm!(self.ops ; .arch x64 ; jmp =>epi);
            }
            Exit::Raise { cause, tval } => {
                let rem = self.unexecuted() as i32;
                let (ic, tv) = (offsets::ICOUNT as i32, offsets::TVAL as i32);
                if rem > 0 {
                    dynasm!(self.ops ; .arch x64 ; sub QWORD [rbx + ic], rem);
                }
                self.ld(RAX, tval);
                dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + tv], rax);
                self.hdr_store_imm64(offsets::CAUSE, cause);
                let pc = self.pc;
                self.leave(pc, status::EXCEPTION as u64);
            }
            Exit::Halt { next_pc } => self.leave(next_pc, status::HALT as u64),
        }
    }

    /// Inline jump-cache probe for an indirect exit to the pc in `rax` (already stored):
    /// tail-jump to the cached block on a hit, fall through otherwise.
    fn jc_probe(&mut self) {
        use crate::tb::{JC_CODE, JC_FLAGS, JC_PC, JC_SHIFT_A, JC_SHIFT_B, JC_SIZE};
        let (sa, sb, m) = (JC_SHIFT_A as i8, JC_SHIFT_B as i8, (JC_SIZE - 1) as i32);
        let fl = offsets::FLAGS as i32;
        let miss = self.ops.new_dynamic_label();
        dynasm!(self.ops
            ; .arch x64
            ; mov rcx, rax
            ; shr rcx, sa
            ; mov rdx, rax
            ; shr rdx, sb
            ; xor rcx, rdx
            ; and ecx, m
            ; lea rcx, [rcx + rcx * 2]
        );
        // Entries are 24 bytes: index * 3 * 8.
        debug_assert_eq!(crate::tb::JC_ENTRY_SIZE, 24);
        let jcb = offsets::JC_BASE as i32;
        dynasm!(self.ops
            ; .arch x64
            ; mov rdx, QWORD [rbx + jcb]
            ; lea rcx, [rdx + rcx * 8]
            ; cmp rax, QWORD [rcx + JC_PC]
            ; jne =>miss
            ; mov edx, DWORD [rbx + fl]
            ; cmp edx, DWORD [rcx + JC_FLAGS]
            ; jne =>miss
            ; mov rax, QWORD [rcx + JC_CODE]
            ; test rax, rax
            ; jz =>miss
        );
        self.tail_jump_rax();
        dynasm!(self.ops ; .arch x64 ; =>miss);
    }

    /// The out-of-line pieces, then the shared exits.
    fn emit_stubs(&mut self) {
        if let Some((xr, hot_l)) = self.entry_exits.take() {
            let pc = self.spec.block.pc;
            dynasm!(self.ops ; .arch x64 ; =>xr);
            self.leave(pc, status::EXIT_REQUEST as u64);
            dynasm!(self.ops ; .arch x64 ; =>hot_l);
            self.leave(pc, ret::HOT | u64::from(self.spec.tb));
        }
        let (pco, ic, sto) = (offsets::PC as i32, offsets::ICOUNT as i32, offsets::STATUS as i32);
        let sctx = offsets::SLOW_CTX as i32;
        let mut stubs = std::mem::take(&mut self.stubs);
        for stub in stubs.drain(..) {
            match stub {
                Stub::Slow { entry, back, pc, info, store, load_i32 } => {
                    // rax still holds the guest address (the probe only added on a hit).
                    dynasm!(self.ops ; .arch x64 ; =>entry ; mov rdx, rax);
                    self.store_pc(pc);
                    dynasm!(self.ops ; .arch x64 ; mov rdi, QWORD [rbx + sctx]);
                    dynasm!(self.ops ; .arch x64 ; mov rsi, rbx);
                    self.mov_imm(RCX, info);
                    match store {
                        Some((loc, i32, next)) => {
                            self.ld_loc(8, loc, i32);
                            self.mov_imm(9, next);
                        }
                        None => dynasm!(self.ops ; .arch x64 ; xor r8d, r8d ; xor r9d, r9d),
                    }
                    self.mov_imm(RAX, self.spec.slow);
                    let exit = self.status_exit_label();
                    dynasm!(self.ops ; .arch x64 ; call rax ; cmp DWORD [rbx + sto], 0 ; jne =>exit);
                    if load_i32 {
                        dynasm!(self.ops ; .arch x64 ; mov eax, eax);
                    }
                    dynasm!(self.ops ; .arch x64 ; jmp =>back);
                }
                Stub::Atomic { entry, back, pc, info, src, expected, dst_i32, status } => {
                    // rax holds the guest address.
                    dynasm!(self.ops ; .arch x64 ; =>entry ; mov rdx, rax);
                    self.store_pc(pc);
                    dynasm!(self.ops ; .arch x64 ; mov rdi, QWORD [rbx + sctx]);
                    dynasm!(self.ops ; .arch x64 ; mov rsi, rbx);
                    self.ld_loc(8, src.0, src.1);
                    self.ld_loc(9, expected.0, expected.1);
                    self.mov_imm(RCX, info);
                    self.mov_imm(RAX, self.spec.slow);
                    let sto = offsets::STATUS as i32;
                    dynasm!(self.ops ; .arch x64 ; call rax ; cmp DWORD [rbx + sto], 0 ; jne =>status);
                    if dst_i32 {
                        dynasm!(self.ops ; .arch x64 ; mov eax, eax);
                    }
                    dynasm!(self.ops ; .arch x64 ; jmp =>back);
                }
                Stub::Chain { entry, pc, slot, idx, rel } => {
                    let stub = self.ops.offset().0 as u32;
                    dynasm!(self.ops ; .arch x64 ; =>entry);
                    self.mov_imm(RAX, pc);
                    dynasm!(self.ops ; .arch x64 ; mov QWORD [rdi + pco], rax);
                    self.mov_imm(RAX, slot);
                    dynasm!(self.ops ; .arch x64 ; ret);
                    self.jumps.push(Jump { slot: idx, rel, stub });
                }
                Stub::Status { entry, rem, rem_after, pc_on_exit } => {
                    let exc = status::EXCEPTION as i32;
                    let other = self.ops.new_dynamic_label();
                    let epi = self.epilogue;
                    dynasm!(self.ops
                        ; .arch x64
                        ; =>entry
                        ; mov eax, DWORD [rbx + sto]
                        ; mov DWORD [rbx + sto], 0
                        ; cmp eax, exc
                        ; jne =>other
                    );
                    // An exception leaves before the current instruction.
                    let (rem, rem_after) = (rem as i32, rem_after as i32);
                    dynasm!(self.ops ; .arch x64 ; sub QWORD [rbx + ic], rem);
                    if let Some((cur, _)) = pc_on_exit {
                        self.mov_imm(RCX, cur);
                        dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + pco], rcx);
                    }
                    dynasm!(self.ops ; .arch x64 ; jmp =>epi ; =>other ; sub QWORD [rbx + ic], rem_after);
                    if let Some((_, next)) = pc_on_exit {
                        self.mov_imm(RCX, next);
                        dynasm!(self.ops ; .arch x64 ; mov QWORD [rbx + pco], rcx);
                    }
                    dynasm!(self.ops ; .arch x64 ; jmp =>epi);
                }
            }
        }
        self.stubs = stubs;
        if let Some(l) = self.status_exit {
            let epi = self.epilogue;
            dynasm!(self.ops
                ; .arch x64
                ; =>l
                ; mov eax, DWORD [rbx + sto]
                ; mov DWORD [rbx + sto], 0
                ; jmp =>epi
            );
        }
        let (epi, frame) = (self.epilogue, self.frame);
        dynasm!(self.ops
            ; .arch x64
            ; =>epi
            ; add rsp, frame
            ; pop rbx
            ; ret
        );
    }
}
