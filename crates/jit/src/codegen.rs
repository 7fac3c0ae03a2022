//! IR -> Cranelift.
//!
//! Every TB becomes one function with the `tail` calling convention, `fn(cpu) -> u64`,
//! entered from the dispatcher through a SystemV trampoline. The return value says why
//! the block left (see [`ret`]): a status code, an exit kind, or the address of the
//! [`ChainSlot`](crate::tb::ChainSlot) of an unlinked `goto` for the dispatcher to link.
//! A linked `goto` tail-calls the next TB directly (`return_call_indirect`), so chained
//! blocks run without returning to the dispatcher.
//!
//! Generated code:
//! - checks `exit_request` and bumps `icount` at entry;
//! - keeps guest state (`ld_state`/`st_state` beyond the common header) in a small
//!   straight-line cache of SSA values: loads after a load or store of the same offset
//!   are forwarded, stores are delayed; dirty values are written back before helpers
//!   that read or write state or may exit, on every slow path (only there), at branches,
//!   labels and exits, and the cache is dropped at labels and after state-writing helpers;
//! - probes the softmmu TLB inline for every guest access and calls the slow path on a
//!   miss, storing the instruction's pc first (precise exceptions) and checking the
//!   header status afterwards;
//! - on an indirect exit probes the current vCPU's jump cache inline (when
//!   [`TbSpec::jump_cache`] is set; its entries are at `CpuHeader::jc_base`, so the code
//!   serves any vCPU): an entry with the same pc, the same *current* header
//!   flags (a helper before the exit may have changed them) and native code is
//!   tail-called; anything else returns to the dispatcher. The target's own prologue
//!   checks `exit_request` and counts instructions, as for a chained `goto`.
//!
//! Division and remainder are guarded so Cranelift's trapping `sdiv`/`udiv` never see a
//! zero divisor or MIN/-1; results follow the IR (RISC-V) definition.

use cranelift_codegen::control::ControlPlane;
use cranelift_codegen::ir::condcodes::IntCC;
use cranelift_codegen::ir::{self, types, AbiParam, BlockArg, InstBuilder, MemFlagsData, Signature, Value};
use cranelift_codegen::isa::{CallConv, OwnedTargetIsa};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_codegen::Context;
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use std::sync::Arc;

use kite_ir::state::{offsets, status, PAGE_MASK};
use kite_ir::{Access, BinOp, Block, Cond, Exit, FpOp, Helper, Inst, MemOp, MemSize, RmwOp, Temp, Ty, UnOp};

use crate::memgroup::MemGroups;
use crate::softmmu;
use crate::tb::TbId;
use crate::JitError;

/// Return values of a TB function (besides the `status` codes 0..=4).
pub(crate) mod ret {
    /// `Exit::Indirect`: `pc` is set.
    pub const INDIRECT: u64 = 16;
    /// `Exit::GotoNoChain`: `pc` is set.
    pub const NOCHAIN: u64 = 17;
    /// A chainable goto without a slot (interpreter tier): `pc` is set.
    pub const GOTO: u64 = 18;
    /// `HOT | id`: a baseline block's entry counter ran out (nothing ran; `pc` is the
    /// block's start) and TB `id` (the low 32 bits) is to be recompiled with Cranelift.
    /// The id travels in the return value, so the code names no per-engine word for it
    /// (a step toward code that every vCPU thread can run). No chain-slot address has
    /// bit 63 set: user-space addresses are below 2^47.
    pub const HOT: u64 = 1 << 63;
    /// Values at or above this (and below [`HOT`]) are chain-slot addresses (an unlinked
    /// goto; `pc` is set).
    pub const SLOT_MIN: u64 = 4096;
}

/// Most state values kept in the in-block cache at once.
const CACHE_MAX: usize = 32;

/// What one TB compilation needs besides the IR.
#[derive(Debug)]
pub(crate) struct TbSpec<'a> {
    pub block: &'a Block,
    /// More blocks compiled into the same function (a loop region, see
    /// `Engine::region`): a goto to one of their pcs jumps there without leaving. Each
    /// holds guest code the TB's invalidation covers (its `extent`).
    pub members: &'a [Arc<Block>],
    pub mmu: usize,
    pub tb: TbId,
    /// Addresses of the chain slots, one per `Exit::Goto` in instruction order.
    pub slots: &'a [u64],
    /// The slow-path function (its context is `CpuHeader::slow_ctx`).
    pub slow: u64,
    /// The same slow path behind [`crate::stub::keep_regs_entry`] (Cranelift code uses
    /// that one).
    pub slow_keep: u64,
    /// Probe the running vCPU's jump cache (`CpuHeader::jc_base`) on indirect exits;
    /// `false` always returns to the dispatcher there (single-step mode, which also turns
    /// off in-block loops: every block run must return).
    pub jump_cache: bool,
    /// Guest RAM the TB's loads reach without the softmmu TLB (its data accesses are
    /// identity-mapped and unchecked, `GuestCpu::identity_mapped`); `None`: every
    /// access probes the TLB.
    pub direct: Option<Direct>,
}

/// A block of guest RAM that loads of an identity-mapped TB read straight from the host
/// mapping: a load of `n` bytes at guest `addr` with `addr - base <= size - n` is a host
/// load at `host + (addr - base)`. Two instructions and a predicted branch instead of
/// the TLB probe's ~10, and none of the probe's loads on the address's dependency chain:
/// a bare-metal list walk ran 27% faster. Loads only: a store must still see whether its
/// page holds translated code, which the TLB's write entries say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Direct {
    pub base: u64,
    pub size: u64,
    pub host: u64,
}

/// Tests: compile as for a host without FMA (the call path). Other tests that run
/// meanwhile only take that (equally correct) path too.
#[cfg(test)]
pub(crate) static NO_FMA: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The Cranelift state reused across compilations.
pub(crate) struct Codegen {
    isa: OwnedTargetIsa,
    ctx: Context,
    fctx: FunctionBuilderContext,
    tail_sig: Signature,
    c_sig: Signature,
    slow_sig: Signature,
    /// The host has fused multiply-add instructions (else Cranelift would need a libcall).
    has_fma: bool,
}

impl std::fmt::Debug for Codegen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codegen").field("isa", &self.isa.name()).finish()
    }
}

impl Codegen {
    pub(crate) fn new(verify: bool) -> Result<Codegen, JitError> {
        let mut fb = settings::builder();
        let set = |fb: &mut settings::Builder, k: &str, v: &str| fb.set(k, v).map_err(|e| JitError::Isa(e.to_string()));
        // Measured (docs/performance.md): "none" compiles ~40% faster than "speed" with no
        // visible loss on the benchmarks (the IR is already simple and the state cache does
        // the forwarding); the single-pass register allocator compiles faster still but
        // its code runs up to 2x slower.
        set(&mut fb, "opt_level", "none")?;
        set(&mut fb, "regalloc_algorithm", "backtracking")?;
        set(&mut fb, "enable_verifier", if verify { "true" } else { "false" })?;
        set(&mut fb, "unwind_info", "false")?;
        set(&mut fb, "is_pic", "false")?;
        // Cranelift's x64 tail calls rely on frame pointers.
        set(&mut fb, "preserve_frame_pointers", "true")?;
        let ib = cranelift_native::builder().map_err(|e| JitError::Isa(e.to_string()))?;
        let isa = ib.finish(settings::Flags::new(fb)).map_err(|e| JitError::Isa(e.to_string()))?;
        let mut tail_sig = Signature::new(CallConv::Tail);
        tail_sig.params.push(AbiParam::new(types::I64));
        tail_sig.returns.push(AbiParam::new(types::I64));
        let mut c_sig = Signature::new(isa.default_call_conv());
        for _ in 0..5 {
            c_sig.params.push(AbiParam::new(types::I64));
        }
        c_sig.returns.push(AbiParam::new(types::I64));
        // The slow path is entered through `stub::keep_regs_entry`: no register is
        // clobbered, and the result comes back in the header's `slow_ret`.
        // Its only register argument is the cpu; the others go through the header's
        // `slow_args` (see `stub::keep_regs_entry`).
        let mut slow_sig = Signature::new(CallConv::PreserveAll);
        slow_sig.params.push(AbiParam::new(types::I64));
        let has_fma = isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
        #[cfg(test)]
        let has_fma = has_fma && !NO_FMA.load(std::sync::atomic::Ordering::Relaxed);
        Ok(Codegen {
            isa,
            ctx: Context::new(),
            fctx: FunctionBuilderContext::new(),
            tail_sig,
            c_sig,
            slow_sig,
            has_fma,
        })
    }

    fn finish(&mut self) -> Result<&[u8], String> {
        let code = self.ctx.compile(&*self.isa, &mut ControlPlane::default()).map_err(|e| format!("{:?}", e.inner))?;
        if !code.buffer.relocs().is_empty() {
            return Err("generated code needs relocations".into());
        }
        Ok(code.code_buffer())
    }

    /// The SystemV entry trampoline: `fn(cpu, code) -> u64` calls the tail-callconv TB.
    pub(crate) fn trampoline(&mut self) -> Result<&[u8], String> {
        self.ctx.clear();
        let mut sig = Signature::new(self.isa.default_call_conv());
        sig.params.push(AbiParam::new(types::I64));
        sig.params.push(AbiParam::new(types::I64));
        sig.returns.push(AbiParam::new(types::I64));
        self.ctx.func.signature = sig;
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let st = b.import_signature(self.tail_sig.clone());
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let (cpu, code) = (b.block_params(entry)[0], b.block_params(entry)[1]);
        let call = b.ins().call_indirect(st, code, &[cpu]);
        let r = b.inst_results(call)[0];
        b.ins().return_(&[r]);
        b.seal_all_blocks();
        b.finalize(self.isa.frontend_config());
        self.finish()
    }

    /// Compile one TB; returns the machine code (valid until the next call).
    pub(crate) fn compile(&mut self, spec: &TbSpec<'_>) -> Result<&[u8], String> {
        self.ctx.clear();
        self.ctx.func.signature = self.tail_sig.clone();
        let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
        let sig_tail = b.import_signature(self.tail_sig.clone());
        let sig_c = b.import_signature(self.c_sig.clone());
        let sig_slow = b.import_signature(self.slow_sig.clone());
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        let cpu = b.block_params(entry)[0];
        let mut e = Emit {
            b,
            spec,
            cpu,
            cur: spec.block,
            vars: Vec::new(),
            labels: Vec::new(),
            cache: Vec::new(),
            sig_tail,
            sig_c,
            sig_slow,
            has_fma: self.has_fma,
            pc: spec.block.pc,
            started: 0,
            live: true,
            next_slot: 0,
            entries: Vec::new(),
            promos: Vec::new(),
            fbits: Vec::new(),
            status_exit: None,
            groups: MemGroups::default(),
            group_vals: Vec::new(),
            memos: Vec::new(),
        };
        e.start_member(spec.block);
        e.prologue();
        let pc0 = spec.block.pc;
        let self_loop = spec.block.goto_targets().any(|t| t == pc0);
        // Members only make sense with a loop header to jump to; single-step mode (no
        // jump cache) has neither.
        let members = if spec.jump_cache && spec.block.ninsns > 0 { spec.members } else { &[] };
        if spec.jump_cache && spec.block.ninsns > 0 && (self_loop || !members.is_empty()) {
            e.enter_loop(members);
        }
        for m in members {
            let blk = e.b.create_block();
            e.entries.push((m.pc, blk, m.ninsns));
        }
        e.body(spec.block);
        for (k, m) in members.iter().enumerate() {
            let blk = e.entries[k + 1].1;
            e.b.switch_to_block(blk);
            e.cache.clear();
            e.live = true;
            e.start_member(m);
            e.body(m);
        }
        e.emit_status_exit();
        e.b.seal_all_blocks();
        e.b.finalize(self.isa.frontend_config());
        self.finish()
    }
}

/// PC of the guest instruction after IR index `i` of `block` (`cur` if none follows): where
/// a store or atomic that ends the block (it invalidated the running TB) resumes.
pub(crate) fn next_pc(block: &Block, i: usize, cur: u64) -> u64 {
    block.insts[i + 1..]
        .iter()
        .find_map(|x| match x {
            Inst::InsnStart { pc } => Some(*pc),
            Inst::Exit(Exit::Goto(p)) | Inst::Exit(Exit::GotoNoChain(p)) => Some(*p),
            _ => None,
        })
        .unwrap_or(cur)
}

fn clty(t: Ty) -> ir::Type {
    match t {
        Ty::I32 => types::I32,
        Ty::I64 => types::I64,
    }
}

fn intcc(c: Cond) -> IntCC {
    match c {
        Cond::Eq => IntCC::Equal,
        Cond::Ne => IntCC::NotEqual,
        Cond::LtS => IntCC::SignedLessThan,
        Cond::GeS => IntCC::SignedGreaterThanOrEqual,
        Cond::LtU => IntCC::UnsignedLessThan,
        Cond::GeU => IntCC::UnsignedGreaterThanOrEqual,
        Cond::LeS => IntCC::SignedLessThanOrEqual,
        Cond::GtS => IntCC::SignedGreaterThan,
        Cond::LeU => IntCC::UnsignedLessThanOrEqual,
        Cond::GtU => IntCC::UnsignedGreaterThan,
    }
}

fn state_flags() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

#[derive(Clone, Copy, Debug)]
struct Cached {
    off: u32,
    ty: Ty,
    val: Value,
    dirty: bool,
}

impl Cached {
    fn overlaps(&self, off: u32, len: u32) -> bool {
        let (a0, a1) = (self.off as u64, self.off as u64 + self.ty.bits() as u64 / 8);
        let (b0, b1) = (off as u64, off as u64 + len as u64);
        a0 < b1 && b0 < a1
    }
}

struct Emit<'a, 'b> {
    b: FunctionBuilder<'a>,
    spec: &'b TbSpec<'b>,
    cpu: Value,
    /// The block being emitted (the TB's own, or a region member), and its temps and
    /// labels.
    cur: &'b Block,
    vars: Vec<Variable>,
    labels: Vec<ir::Block>,
    cache: Vec<Cached>,
    sig_tail: ir::SigRef,
    sig_c: ir::SigRef,
    has_fma: bool,
    /// The registers-preserving entries (softmmu slow path, cold helpers): `fn(cpu)` with
    /// the arguments in the header's `slow_args`; the result is in its `slow_ret`.
    sig_slow: ir::SigRef,
    /// Guest pc of the instruction being emitted.
    pc: u64,
    /// Guest instructions started so far (the current one included).
    started: u32,
    /// Whether the current Cranelift block is open (not yet terminated).
    live: bool,
    next_slot: usize,
    /// For a block that jumps to its own start, or a region: where a goto to each of its
    /// blocks (guest pc) goes instead of leaving, and how many guest instructions that
    /// block counts. The TB's own entry is the loop header after the prologue.
    entries: Vec<(u64, ir::Block, u32)>,
    /// The guest state slots kept in Cranelift variables (host registers) across the
    /// loop's iterations and the region's blocks.
    promos: Vec<Promo>,
    /// (integer value, the float it is the bits of): see `as_float`.
    fbits: Vec<(Value, Value)>,
    /// The shared exit for slow paths that left a status (see `leave_on_status`).
    status_exit: Option<ir::Block>,
    /// The current block's runs of accesses that share one TLB probe (`memgroup`), and for
    /// each group whose first member was emitted: its host base (0: the check failed).
    groups: MemGroups,
    group_vals: Vec<Option<Value>>,
    /// Loop functions: the accesses that step through memory (see [`stride_sites`]) and the
    /// page each last found in the TLB, as (block, instruction, key, addend) variables.
    memos: Vec<(&'b Block, usize, Variable, Variable)>,
}

/// A guest state slot promoted to a Cranelift variable for the whole function (loop
/// blocks): loaded once at entry, stored back wherever state must be in memory (exits,
/// helper calls, slow paths), reloaded after helpers that write state.
#[derive(Clone, Copy, Debug)]
struct Promo {
    off: u32,
    ty: Ty,
    var: Variable,
    /// Stored to somewhere in the block (only those are written back).
    written: bool,
    /// Kept as a float (F64/F32 for an I64/I32 slot): an FP register that the loop's
    /// float ops read or write, so its value stays in an XMM register (see `float_slots`).
    float: bool,
}

impl Promo {
    /// The variable's Cranelift type.
    fn cl(&self) -> types::Type {
        if self.float {
            float_ty(self.ty)
        } else {
            clty(self.ty)
        }
    }
}

/// The float type whose bits an integer temp of `ty` holds.
fn float_ty(ty: Ty) -> types::Type {
    match ty {
        Ty::I32 => types::F32,
        Ty::I64 => types::F64,
    }
}

/// The state slots (offset, type) whose loaded value is an operand of an [`Inst::Fp`]
/// or whose stored value is the result of one: FP registers, kept in float variables.
fn float_slots<'a>(blocks: impl Iterator<Item = &'a Block> + Clone) -> Vec<(u32, Ty)> {
    let mut out = Vec::new();
    for block in blocks {
        let mut used = vec![false; block.temps.len()];
        let mut made = vec![false; block.temps.len()];
        for inst in &block.insts {
            if let Inst::Fp { dst, a, b, c, .. } = *inst {
                for t in [a, b, c] {
                    used[t.0 as usize] = true;
                }
                made[dst.0 as usize] = true;
            }
        }
        for inst in &block.insts {
            let slot = match *inst {
                Inst::LdState { dst, off } if used[dst.0 as usize] => (off, block.ty(dst)),
                Inst::StState { src, off } if made[src.0 as usize] => (off, block.ty(src)),
                _ => continue,
            };
            if !out.contains(&slot) {
                out.push(slot);
            }
        }
    }
    out
}

/// Most state slots promoted in one loop block or region (before the per-register caps).
const PROMO_MAX: usize = 24;
/// Most promoted integer slots (of ~13 allocatable host registers, a few stay for
/// temporaries and TLB probes) and float slots (16 XMM registers).
const PROMO_INT_MAX: usize = 10;
const PROMO_FLOAT_MAX: usize = 12;

/// Most accesses per loop function that keep a page memo (two variables each).
const MEMO_MAX: usize = 4;

/// The loads and stores of `block` that step through memory: their address is a guest
/// register (plus a constant) that the block itself moves by a small constant, as an
/// array walk does (`lw a4, 0(a5); addi a5, a5, 4`). In a loop they stay on one page for
/// many iterations, so they remember the last page they found in the TLB instead of
/// probing it each time. A heuristic only: a memo is exact whatever the address does.
fn stride_sites(block: &Block) -> Vec<usize> {
    let def = |t: Temp| block.insts.iter().find(|i| i.def() == Some(t));
    let konst = |t: Temp| match def(t) {
        Some(&Inst::Const { val, .. }) => Some(val as i64),
        _ => None,
    };
    // The register an address is, directly or plus a constant of at most 2 KiB.
    let reg_plus = |t: Temp| match *def(t)? {
        Inst::LdState { off, dst } if block.ty(dst) == Ty::I64 => Some(off),
        Inst::Bin { op: BinOp::Add, a, b, .. } => match (def(a)?, konst(b)) {
            (&Inst::LdState { off, dst }, Some(c)) if block.ty(dst) == Ty::I64 && c.abs() <= 2048 => Some(off),
            _ => None,
        },
        _ => None,
    };
    // The registers the block moves: `r = r + c`, 0 < |c| <= 64.
    let stepped: Vec<u32> = block
        .insts
        .iter()
        .filter_map(|i| match *i {
            Inst::StState { src, off } => match *def(src)? {
                Inst::Bin { op: BinOp::Add, a, b, .. } => match (def(a)?, konst(b)) {
                    (&Inst::LdState { off: o, .. }, Some(c)) if o == off && c != 0 && c.abs() <= 64 => Some(off),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect();
    block
        .insts
        .iter()
        .enumerate()
        .filter_map(|(n, i)| match *i {
            Inst::Load { addr, .. } | Inst::Store { addr, .. } => {
                reg_plus(addr).filter(|o| stepped.contains(o)).map(|_| n)
            }
            _ => None,
        })
        .collect()
}

/// The guest state slots a loop block (or region) may keep in variables: every
/// (offset, type) its blocks load or store outside the header, unless another access
/// overlaps it differently.
fn promotable<'a>(blocks: impl Iterator<Item = &'a Block>) -> Vec<(u32, Ty, bool)> {
    let mut slots: Vec<(u32, Ty, bool)> = Vec::new();
    let mut bad: Vec<(u32, u32)> = Vec::new();
    for (block, inst) in blocks.flat_map(|b| b.insts.iter().map(move |i| (b, i))) {
        let (off, ty, w) = match *inst {
            Inst::LdState { dst, off } => (off, block.ty(dst), false),
            Inst::StState { src, off } => (off, block.ty(src), true),
            _ => continue,
        };
        if off < offsets::HEADER_END {
            continue;
        }
        let len = ty.bits() / 8;
        let overlaps = |o: u32, l: u32| o < off + len && off < o + l;
        match slots.iter_mut().find(|s| s.0 == off && s.1 == ty) {
            Some(s) => s.2 |= w,
            None => {
                if slots.iter().any(|s| overlaps(s.0, s.1.bits() / 8)) {
                    bad.push((off, len));
                } else {
                    slots.push((off, ty, w));
                }
            }
        }
    }
    slots.retain(|s| !bad.iter().any(|&(o, l)| o < s.0 + s.1.bits() / 8 && s.0 < o + l));
    slots.truncate(PROMO_MAX);
    slots
}

impl<'b> Emit<'_, 'b> {
    fn konst(&mut self, ty: Ty, v: u64) -> Value {
        self.b.ins().iconst(clty(ty), ty.mask(v) as i64)
    }

    fn k64(&mut self, v: u64) -> Value {
        self.b.ins().iconst(types::I64, v as i64)
    }

    fn hdr_store(&mut self, v: Value, off: u32) {
        self.b.ins().store(state_flags(), v, self.cpu, off as i32);
    }

    fn hdr_load(&mut self, ty: ir::Type, off: u32) -> Value {
        self.b.ins().load(ty, state_flags(), self.cpu, off as i32)
    }

    fn store_pc(&mut self, pc: u64) {
        let v = self.k64(pc);
        self.hdr_store(v, offsets::PC);
    }

    /// Address base and displacement for state offset `off`.
    fn state_addr(&mut self, off: u32) -> (Value, i32) {
        match i32::try_from(off) {
            Ok(o) => (self.cpu, o),
            Err(_) => (self.b.ins().iadd_imm_s(self.cpu, off as i64), 0),
        }
    }

    fn raw_state_store(&mut self, c: Cached) {
        let (base, d) = self.state_addr(c.off);
        self.b.ins().store(state_flags(), c.val, base, d);
    }

    fn ensure_live(&mut self) {
        if !self.live {
            let blk = self.b.create_block();
            self.b.switch_to_block(blk);
            self.cache.clear();
            self.live = true;
        }
    }

    fn prologue(&mut self) {
        let er = self.hdr_load(types::I32, offsets::EXIT_REQUEST);
        let (xr, body) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(er, xr, &[], body, &[]);
        self.b.set_cold_block(xr);
        self.b.switch_to_block(xr);
        let pc = self.spec.block.pc;
        self.store_pc(pc);
        let r = self.k64(status::EXIT_REQUEST as u64);
        self.b.ins().return_(&[r]);
        self.b.switch_to_block(body);
        if self.spec.block.ninsns > 0 {
            let ic = self.hdr_load(types::I64, offsets::ICOUNT);
            let ic = self.b.ins().iadd_imm_s(ic, self.spec.block.ninsns as i64);
            self.hdr_store(ic, offsets::ICOUNT);
        }
    }

    /// Begin emitting `block` (the TB's own or a region member): its temps and labels.
    fn start_member(&mut self, block: &'b Block) {
        self.cur = block;
        self.vars.clear();
        for &t in &block.temps {
            let v = self.b.declare_var(clty(t));
            self.vars.push(v);
        }
        self.labels.clear();
        for _ in 0..block.nlabels {
            let l = self.b.create_block();
            self.labels.push(l);
        }
        self.pc = block.pc;
        self.started = 0;
    }

    /// Emit the instructions of the current block.
    fn body(&mut self, block: &'b Block) {
        self.groups = crate::memgroup::analyze_into(block, std::mem::take(&mut self.groups));
        self.group_vals.clear();
        self.group_vals.resize(self.groups.groups.len(), None);
        for (i, inst) in block.insts.iter().enumerate() {
            self.inst(i, inst);
        }
        if self.live {
            // Validated blocks end in an exit or a branch; be defensive anyway.
            self.leave(block.pc, status::LOOKUP as u64);
        }
    }

    /// Set up a self-looping block or a region (the TB's block plus `members`): promote
    /// their state slots to variables, then open the loop header that gotos to the TB's
    /// own start jump back to.
    fn enter_loop(&mut self, members: &'b [Arc<Block>]) {
        let all = || std::iter::once(self.spec.block).chain(members.iter().map(|m| &**m));
        // Helpers that write state would force a store and a reload of every promoted
        // slot around each call (FP helpers did, and FP loops got slower): such loops keep
        // the per-run state cache. Calls on cold paths (fast-path fallbacks) do not count.
        let calls_writers = all()
            .flat_map(|b| b.insts.iter())
            .any(|i| matches!(i, Inst::Call { helper, .. } if helper.effects.writes_state && !helper.effects.cold));
        let mut slots = if calls_writers { Vec::new() } else { promotable(all()) };
        let floats = float_slots(all());
        // No more than the host has registers for, the head block's (the innermost loop)
        // first: in a loop nest every promoted slot is live around the inner loop, and
        // two dozen of them made Cranelift spill the inner loop's own values (`par` ran
        // ~15% slower than with ten).
        let (mut ints, mut fps) = (0, 0);
        slots.retain(|&(off, ty, _)| {
            let n = if floats.contains(&(off, ty)) { &mut fps } else { &mut ints };
            *n += 1;
            *n <= if floats.contains(&(off, ty)) { PROMO_FLOAT_MAX } else { PROMO_INT_MAX }
        });
        // The instruction count too: a memory add per iteration is a store-to-load chain.
        slots.push((offsets::ICOUNT, Ty::I64, true));
        for (off, ty, written) in slots {
            let float = floats.contains(&(off, ty));
            let mut p = Promo { off, ty, var: Variable::from_u32(0), written, float };
            p.var = self.b.declare_var(p.cl());
            let (base, d) = self.state_addr(off);
            let v = self.b.ins().load(p.cl(), state_flags(), base, d);
            self.b.def_var(p.var, v);
            self.promos.push(p);
        }
        if !calls_writers {
            // Loads that go direct (`TbSpec::direct`) need no memo: leave the memos to stores.
            let direct = self.spec.direct.is_some();
            let memo_wanted = |b: &Block, i: usize| !(direct && matches!(b.insts[i], Inst::Load { .. }));
            let sites: Vec<(&'b Block, usize)> = all()
                .flat_map(|b| stride_sites(b).into_iter().map(move |i| (b, i)))
                .filter(|&(b, i)| memo_wanted(b, i))
                .take(MEMO_MAX)
                .collect();
            for (blk, i) in sites {
                let (key, add) = (self.b.declare_var(types::I64), self.b.declare_var(types::I64));
                // No key matches this one: keys have bits 3..=11 clear.
                let none = self.k64(kite_ir::state::PAGE_SIZE >> 1);
                let zero = self.k64(0);
                self.b.def_var(key, none);
                self.b.def_var(add, zero);
                self.memos.push((blk, i, key, add));
            }
        }
        let hdr = self.b.create_block();
        self.b.ins().jump(hdr, &[]);
        self.b.switch_to_block(hdr);
        self.entries.push((self.spec.block.pc, hdr, self.spec.block.ninsns));
    }

    /// The page memo of access `i` of the current block, if it has one.
    fn memo_at(&self, i: usize) -> Option<(Variable, Variable)> {
        self.memos.iter().find(|m| std::ptr::eq(m.0, self.cur) && m.1 == i).map(|m| (m.2, m.3))
    }

    fn promo(&self, off: u32, ty: Ty) -> Option<Variable> {
        self.promos.iter().find(|p| p.off == off && p.ty == ty).map(|p| p.var)
    }

    fn promo_float(&self, off: u32, ty: Ty) -> bool {
        self.promos.iter().any(|p| p.off == off && p.ty == ty && p.float)
    }

    /// `v` (an integer value) as a float of the same width: the float it was made from,
    /// if it was, else a bitcast (a register move).
    fn as_float(&mut self, v: Value, ty: Ty) -> Value {
        match self.fbits.iter().find(|(i, _)| *i == v) {
            Some(&(_, f)) => f,
            None => self.b.ins().bitcast(float_ty(ty), MemFlagsData::new(), v),
        }
    }

    /// The integer bits of float `f`, remembering where they came from (see `as_float`).
    /// An SSA value is defined once, so the pair stays true wherever `v` is used.
    fn float_bits(&mut self, f: Value, ty: Ty) -> Value {
        let v = self.b.ins().bitcast(clty(ty), MemFlagsData::new(), f);
        self.fbits.push((v, f));
        v
    }

    /// Store the promoted slots the block writes (their variables stay valid).
    fn sync_promos(&mut self) {
        self.sync_promos_in(0, u32::MAX);
    }

    /// Store the written promoted slots overlapping `[lo, hi)`.
    fn sync_promos_in(&mut self, lo: u32, hi: u32) {
        for i in 0..self.promos.len() {
            let p = self.promos[i];
            if p.written && p.off < hi && lo < p.off + p.ty.bits() / 8 {
                let v = self.b.use_var(p.var);
                let (base, d) = self.state_addr(p.off);
                self.b.ins().store(state_flags(), v, base, d);
            }
        }
    }

    /// Reload the promoted slots overlapping `[lo, hi)`.
    fn reload_promos_in(&mut self, lo: u32, hi: u32) {
        for i in 0..self.promos.len() {
            let p = self.promos[i];
            if p.off < hi && lo < p.off + p.ty.bits() / 8 {
                let (base, d) = self.state_addr(p.off);
                let v = self.b.ins().load(p.cl(), state_flags(), base, d);
                self.b.def_var(p.var, v);
            }
        }
    }

    /// Reload every promoted slot (a helper may have written state).
    fn reload_promos(&mut self) {
        self.reload_promos_in(0, u32::MAX);
    }

    /// Write dirty cached state back; they become clean.
    fn writeback(&mut self) {
        for i in 0..self.cache.len() {
            if self.cache[i].dirty {
                let c = self.cache[i];
                self.raw_state_store(c);
                self.cache[i].dirty = false;
            }
        }
    }

    /// Write dirty cached state back on a side path (the values stay dirty for the main path).
    fn writeback_side(&mut self) {
        for i in 0..self.cache.len() {
            if self.cache[i].dirty {
                let c = self.cache[i];
                self.raw_state_store(c);
            }
        }
    }

    /// Drop cache entries overlapping `[off, off+len)` (writing dirty ones back first),
    /// except an exact (off, ty) match when `keep` is given.
    fn evict_overlaps(&mut self, off: u32, len: u32, keep: Option<Ty>) {
        let mut i = 0;
        while i < self.cache.len() {
            let c = self.cache[i];
            if c.overlaps(off, len) && !(c.off == off && Some(c.ty) == keep) {
                if c.dirty {
                    self.raw_state_store(c);
                }
                self.cache.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn push_cache(&mut self, c: Cached) {
        if self.cache.len() >= CACHE_MAX {
            let old = self.cache.remove(0);
            if old.dirty {
                self.raw_state_store(old);
            }
        }
        self.cache.push(c);
    }

    fn ld_state(&mut self, ty: Ty, off: u32) -> Value {
        if let Some(var) = self.promo(off, ty) {
            let v = self.b.use_var(var);
            return if self.promo_float(off, ty) { self.float_bits(v, ty) } else { v };
        }
        let len = ty.bits() / 8;
        if off >= offsets::HEADER_END {
            if let Some(c) = self.cache.iter().find(|c| c.off == off && c.ty == ty) {
                return c.val;
            }
            self.evict_overlaps(off, len, None);
        }
        let (base, d) = self.state_addr(off);
        let v = self.b.ins().load(clty(ty), state_flags(), base, d);
        if off >= offsets::HEADER_END {
            self.push_cache(Cached { off, ty, val: v, dirty: false });
        }
        v
    }

    fn st_state(&mut self, ty: Ty, off: u32, v: Value) {
        if let Some(var) = self.promo(off, ty) {
            let v = if self.promo_float(off, ty) { self.as_float(v, ty) } else { v };
            self.b.def_var(var, v);
            return;
        }
        if off < offsets::HEADER_END {
            let (base, d) = self.state_addr(off);
            self.b.ins().store(state_flags(), v, base, d);
            return;
        }
        self.evict_overlaps(off, ty.bits() / 8, Some(ty));
        if let Some(c) = self.cache.iter_mut().find(|c| c.off == off && c.ty == ty) {
            c.val = v;
            c.dirty = true;
        } else {
            self.push_cache(Cached { off, ty, val: v, dirty: true });
        }
    }

    fn var(&mut self, t: Temp) -> Value {
        self.b.use_var(self.vars[t.0 as usize])
    }

    fn def(&mut self, t: Temp, v: Value) {
        self.b.def_var(self.vars[t.0 as usize], v);
    }

    fn ty(&self, t: Temp) -> Ty {
        self.cur.ty(t)
    }

    /// Return to the dispatcher with `pc` stored and return value `r`.
    fn leave(&mut self, pc: u64, r: u64) {
        self.writeback();
        self.sync_promos();
        self.store_pc(pc);
        let r = self.k64(r);
        self.b.ins().return_(&[r]);
        self.live = false;
    }

    /// PC of the next guest instruction after IR index `i` (for stores that end the block).
    fn next_pc(&self, i: usize) -> u64 {
        next_pc(self.cur, i, self.pc)
    }

    fn inst(&mut self, i: usize, inst: &Inst) {
        if !matches!(inst, Inst::SetLabel(_)) {
            self.ensure_live();
        }
        match inst {
            Inst::InsnStart { pc } => {
                self.pc = *pc;
                self.started += 1;
            }
            Inst::Const { dst, val } => {
                let v = self.konst(self.ty(*dst), *val);
                self.def(*dst, v);
            }
            Inst::Mov { dst, src } => {
                let v = self.var(*src);
                self.def(*dst, v);
            }
            Inst::LdState { dst, off } => {
                let v = self.ld_state(self.ty(*dst), *off);
                self.def(*dst, v);
            }
            Inst::StState { src, off } => {
                let v = self.var(*src);
                self.st_state(self.ty(*src), *off, v);
            }
            Inst::Bin { op, dst, a, b } => {
                let (a, b) = (self.var(*a), self.var(*b));
                let v = self.bin(*op, self.ty(*dst), a, b);
                self.def(*dst, v);
            }
            Inst::Un { op, dst, src } => {
                let s = self.var(*src);
                let v = self.un(*op, self.ty(*src), self.ty(*dst), s);
                self.def(*dst, v);
            }
            Inst::Fp { op, dst, a, b, c } => {
                let (a, b, c) = (self.var(*a), self.var(*b), self.var(*c));
                let v = self.fp(*op, self.ty(*dst), a, b, c);
                self.def(*dst, v);
            }
            Inst::Setcond { cond, dst, a, b } => {
                let (a, b) = (self.var(*a), self.var(*b));
                let c = self.b.ins().icmp(intcc(*cond), a, b);
                let dty = clty(self.ty(*dst));
                let v = self.b.ins().uextend(dty, c);
                self.def(*dst, v);
            }
            Inst::Select { dst, c, a, b } => {
                let (c, a, b) = (self.var(*c), self.var(*a), self.var(*b));
                let v = self.b.ins().select(c, a, b);
                self.def(*dst, v);
            }
            Inst::Load { dst, addr, mop } => {
                let a = self.var(*addr);
                let ty = self.ty(*dst);
                let g = self.group_at(i);
                let v = match (self.spec.direct, g) {
                    // A group's members share one check and then cost nothing each (a
                    // function's register restores: `calls` ran 3% slower with a range
                    // check per load). Must-be-aligned loads (`lr`) keep the probe,
                    // which checks alignment.
                    (Some(d), None) if !mop.aligned && d.size >= 8 => self.load_direct(a, *mop, ty, d),
                    _ => {
                        let m = if g.is_none() { self.memo_at(i) } else { None };
                        self.mem(a, *mop, Access::Read, None, ty, 0, g, m)
                    }
                };
                self.def(*dst, v);
            }
            Inst::Store { src, addr, mop } => {
                let a = self.var(*addr);
                let s = self.var(*src);
                let ty = self.ty(*src);
                let next = self.next_pc(i);
                let g = self.group_at(i);
                let m = if g.is_none() { self.memo_at(i) } else { None };
                self.mem(a, *mop, Access::Write, Some(s), ty, next, g, m);
            }
            Inst::Atomic { op, dst, addr, src, expected, mop } => {
                let v = self.atomic(i, *op, *addr, *src, *expected, *mop);
                self.def(*dst, v);
            }
            Inst::Call { helper, args, dst } => self.call(helper, args, *dst),
            Inst::SetLabel(l) => {
                let blk = self.labels[l.0 as usize];
                if self.live {
                    self.writeback();
                    self.b.ins().jump(blk, &[]);
                }
                self.b.switch_to_block(blk);
                self.cache.clear();
                self.live = true;
            }
            Inst::Br(l) => {
                self.writeback();
                let blk = self.labels[l.0 as usize];
                self.b.ins().jump(blk, &[]);
                self.live = false;
            }
            Inst::BrCond { cond, a, b, target } => {
                self.writeback();
                let (a, b) = (self.var(*a), self.var(*b));
                let c = self.b.ins().icmp(intcc(*cond), a, b);
                let fall = self.b.create_block();
                let blk = self.labels[target.0 as usize];
                self.b.ins().brif(c, blk, &[], fall, &[]);
                self.b.switch_to_block(fall);
                // Its one predecessor is known: sealed, variables read in it are the
                // values defined before the branch (not block parameters), which keeps
                // `as_float` able to see through them.
                self.b.seal_block(fall);
            }
            Inst::Exit(e) => self.exit(e),
        }
    }

    fn exit(&mut self, e: &Exit) {
        match *e {
            Exit::Goto(t) => {
                if self.entries.len() == 1 && self.entries[0].0 != t {
                    // A block that loops on itself leaves once per loop: its exit goes out
                    // of line, so the back edge after the loop's branch falls through. (Not
                    // in regions: a bytecode interpreter's dispatch loop leaves often, and
                    // `branchy` ran ~20% slower with its exits out of line.)
                    let out = self.b.create_block();
                    self.b.set_cold_block(out);
                    self.b.ins().jump(out, &[]);
                    self.b.switch_to_block(out);
                    self.b.seal_block(out);
                }
                self.writeback();
                if let Some(&(_, dst, n)) = self.entries.iter().find(|e| e.0 == t) {
                    // To our own start or a region member without leaving: keep state in
                    // registers, count the block entered, and check for an exit request
                    // as its prologue would. A goto to a later pc from a block without
                    // helper calls skips the check: every cycle in the region has a goto
                    // to the same or an earlier pc, so a request still waits at most one
                    // pass through the region's blocks. A block that calls a helper keeps
                    // it: a CSR write that unmasks an interrupt relies on the next block's
                    // check, and a later one may mask it again.
                    let check = t <= self.cur.pc || self.cur.insts.iter().any(|i| matches!(i, Inst::Call { .. }));
                    self.enter_member(t, dst, n, check);
                    self.live = false;
                    return;
                }
                self.sync_promos();
                let Some(&slot) = self.spec.slots.get(self.next_slot) else {
                    self.leave(t, ret::GOTO);
                    return;
                };
                self.next_slot += 1;
                let sa = self.k64(slot);
                let p = self.b.ins().load(types::I64, state_flags(), sa, 0);
                let (chain, back) = (self.b.create_block(), self.b.create_block());
                if self.in_cold_block() {
                    self.b.set_cold_block(chain);
                }
                self.b.ins().brif(p, chain, &[], back, &[]);
                // Unlinked only until the dispatcher links it (or its target is gone).
                self.b.set_cold_block(back);
                self.b.switch_to_block(chain);
                self.b.ins().return_call_indirect(self.sig_tail, p, &[self.cpu]);
                self.b.switch_to_block(back);
                self.store_pc(t);
                self.b.ins().return_(&[sa]);
                self.live = false;
            }
            Exit::GotoNoChain(t) => self.leave(t, ret::NOCHAIN),
            Exit::Indirect(t) => {
                self.writeback();
                if self.cur.dispatch && self.entries.len() > 1 && self.spec.jump_cache && self.flags_fixed() {
                    self.indirect_to_members(t);
                }
                self.sync_promos();
                let v = self.var(t);
                self.hdr_store(v, offsets::PC);
                if self.spec.jump_cache {
                    self.jc_probe(v);
                }
                let r = self.k64(ret::INDIRECT);
                self.b.ins().return_(&[r]);
                self.live = false;
            }
            Exit::Raise { cause, tval } => {
                let rem = self.unexecuted();
                if rem > 0 {
                    let rem = self.k64(rem as u64);
                    self.uncount(rem);
                }
                let tv = self.var(tval);
                let c = self.k64(cause);
                self.hdr_store(c, offsets::CAUSE);
                self.hdr_store(tv, offsets::TVAL);
                let pc = self.pc;
                self.leave(pc, status::EXCEPTION as u64);
            }
            Exit::Halt { next_pc } => self.leave(next_pc, status::HALT as u64),
        }
    }

    /// Whether nothing in the current block may change the TB flags: no helper that writes
    /// state, no store into the header. Only then is an indirect jump to a region member
    /// (translated with the region's flags) the same as the jump cache's hit on it.
    fn flags_fixed(&self) -> bool {
        !self.cur.insts.iter().any(|i| match i {
            Inst::Call { helper, .. } => helper.effects.writes_state,
            Inst::StState { off, .. } => *off < offsets::HEADER_END,
            _ => false,
        })
    }

    /// An indirect jump in a region (a bytecode interpreter's dispatch): to a member's pc
    /// it goes there without leaving, as a goto to it does, after an exit-request check
    /// (a loop may pass through indirect jumps alone); other targets fall through to the
    /// exit. Compared one by one: the members are few (`REGION_BLOCKS`), and each compare
    /// is a branch the host predicts with the jump's history, where a jump-cache hit
    /// tore the frame down and built the next one.
    fn indirect_to_members(&mut self, t: Temp) {
        let v = self.var(t);
        for k in 0..self.entries.len() {
            let (pc, dst, n) = self.entries[k];
            let (hit, next) = (self.b.create_block(), self.b.create_block());
            let c = self.b.ins().icmp_imm_s(IntCC::Equal, v, pc as i64);
            self.b.ins().brif(c, hit, &[], next, &[]);
            self.b.switch_to_block(hit);
            self.b.seal_block(hit);
            self.enter_member(pc, dst, n, true);
            self.b.switch_to_block(next);
            self.b.seal_block(next);
        }
    }

    /// Jump to the function's block `dst` for guest `pc` (its start or a region member's,
    /// `n` instructions) without leaving: count the block entered and, with `check`, test
    /// for an exit request first, as its prologue would (leaving exactly as it would).
    fn enter_member(&mut self, pc: u64, dst: ir::Block, n: u32, check: bool) {
        if check {
            let er = self.hdr_load(types::I32, offsets::EXIT_REQUEST);
            let (again, out) = (self.b.create_block(), self.b.create_block());
            self.b.ins().brif(er, out, &[], again, &[]);
            self.b.set_cold_block(out);
            self.b.switch_to_block(out);
            self.leave(pc, status::EXIT_REQUEST as u64);
            self.b.switch_to_block(again);
        }
        let icv = self.promo(offsets::ICOUNT, Ty::I64).expect("loop blocks promote icount");
        let ic = self.b.use_var(icv);
        let ic = self.b.ins().iadd_imm_s(ic, n as i64);
        self.b.def_var(icv, ic);
        self.b.ins().jump(dst, &[]);
    }

    /// Inline jump-cache probe for an indirect exit to `pc` (already stored): tail-call
    /// the cached TB on a hit, fall through otherwise.
    fn jc_probe(&mut self, pc: Value) {
        use crate::tb::{JC_CODE, JC_ENTRY_SIZE, JC_FLAGS, JC_PC, JC_SHIFT_A, JC_SHIFT_B, JC_SIZE};
        let base = self.hdr_load(types::I64, offsets::JC_BASE);
        let a = self.b.ins().ushr_imm_s(pc, JC_SHIFT_A);
        let c = self.b.ins().ushr_imm_s(pc, JC_SHIFT_B);
        let h = self.b.ins().bxor(a, c);
        let idx = self.b.ins().band_imm_s(h, (JC_SIZE - 1) as i64);
        let off = self.b.ins().imul_imm_s(idx, JC_ENTRY_SIZE);
        let ent = self.b.ins().iadd(base, off);
        let epc = self.b.ins().load(types::I64, state_flags(), ent, JC_PC);
        let eflags = self.b.ins().load(types::I32, state_flags(), ent, JC_FLAGS);
        let code = self.b.ins().load(types::I64, state_flags(), ent, JC_CODE);
        let flags = self.hdr_load(types::I32, offsets::FLAGS);
        let pc_ok = self.b.ins().icmp(IntCC::Equal, epc, pc);
        let fl_ok = self.b.ins().icmp(IntCC::Equal, eflags, flags);
        let code_ok = self.b.ins().icmp_imm_s(IntCC::NotEqual, code, 0);
        let ok = self.b.ins().band(pc_ok, fl_ok);
        let ok = self.b.ins().band(ok, code_ok);
        let (hit, miss) = (self.b.create_block(), self.b.create_block());
        self.b.ins().brif(ok, hit, &[], miss, &[]);
        self.b.switch_to_block(hit);
        self.b.ins().return_call_indirect(self.sig_tail, code, &[self.cpu]);
        self.b.switch_to_block(miss);
    }

    /// Instructions of this block not executed when it leaves at the current
    /// instruction: the current one and all after it (see `docs/ir.md`, icount).
    fn unexecuted(&self) -> u32 {
        self.cur.ninsns.saturating_sub(self.started.saturating_sub(1))
    }

    /// `icount -= n` (icount was advanced by the whole block at entry).
    fn uncount(&mut self, n: Value) {
        if let Some(var) = self.promo(offsets::ICOUNT, Ty::I64) {
            // Keep the variable and memory equal: either may be used next.
            let ic = self.b.use_var(var);
            let ic = self.b.ins().isub(ic, n);
            self.b.def_var(var, ic);
            self.hdr_store(ic, offsets::ICOUNT);
            return;
        }
        let ic = self.hdr_load(types::I64, offsets::ICOUNT);
        let ic = self.b.ins().isub(ic, n);
        self.hdr_store(ic, offsets::ICOUNT);
    }

    /// After a slow-path access that did its own exit bookkeeping (`fixup_info`): if it
    /// left a status, clear it and return it, through one shared block per function.
    /// Whether code is being emitted into a block laid out after the hot code: blocks
    /// that continue it are cold too.
    fn in_cold_block(&self) -> bool {
        self.b.current_block().is_some_and(|c| self.b.func.layout.is_cold(c))
    }

    fn leave_on_status(&mut self) {
        let st = self.hdr_load(types::I32, offsets::STATUS);
        let fail = match self.status_exit {
            Some(b) => b,
            None => {
                let b = self.b.create_block();
                self.b.append_block_param(b, types::I32);
                self.b.set_cold_block(b);
                self.status_exit = Some(b);
                b
            }
        };
        let ok = self.b.create_block();
        // After a slow path the rest of it is cold too: laid out in the hot code, it sat
        // between a TLB probe and its hit path, so every hit took a jump.
        if self.in_cold_block() {
            self.b.set_cold_block(ok);
        }
        self.b.ins().brif(st, fail, &[BlockArg::Value(st)], ok, &[]);
        self.b.switch_to_block(ok);
    }

    /// Emit the shared status exit of [`Emit::leave_on_status`], if it was used.
    fn emit_status_exit(&mut self) {
        let Some(b) = self.status_exit else {
            return;
        };
        self.b.switch_to_block(b);
        let st = self.b.block_params(b)[0];
        let zero = self.b.ins().iconst(types::I32, 0);
        self.hdr_store(zero, offsets::STATUS);
        let r = self.b.ins().uextend(types::I64, st);
        self.b.ins().return_(&[r]);
    }

    /// After a call that may have set the header status: exit with it if non-zero.
    /// `pc_on_exit` is stored first unless the status is `EXCEPTION` (whose pc is the
    /// faulting instruction, already stored).
    /// `store_all`: cached and promoted state is not all in memory yet (a call with a
    /// `state_range`); the exit stores it.
    fn check_status(&mut self, pc_on_exit: Option<u64>, store_all: bool) {
        let st = self.hdr_load(types::I32, offsets::STATUS);
        let (fail, ok) = (self.b.create_block(), self.b.create_block());
        if self.in_cold_block() {
            self.b.set_cold_block(ok);
        }
        self.b.ins().brif(st, fail, &[], ok, &[]);
        self.b.set_cold_block(fail);
        self.b.switch_to_block(fail);
        if store_all {
            self.writeback_side();
            self.sync_promos();
        }
        let zero = self.b.ins().iconst(types::I32, 0);
        self.hdr_store(zero, offsets::STATUS);
        // Un-count what did not run: an exception leaves before the current
        // instruction; a store that ends the block leaves after it.
        let rem = self.unexecuted() as u64;
        let rem_after = if pc_on_exit.is_some() { rem.saturating_sub(1) } else { rem };
        let is_exc_rem = self.b.ins().icmp_imm_s(IntCC::Equal, st, status::EXCEPTION as i64);
        let (ra, rb) = (self.k64(rem), self.k64(rem_after));
        let n = self.b.ins().select(is_exc_rem, ra, rb);
        self.uncount(n);
        if let Some(next) = pc_on_exit {
            let is_exc = self.b.ins().icmp_imm_s(IntCC::Equal, st, status::EXCEPTION as i64);
            let (cur, next) = (self.k64(self.pc), self.k64(next));
            let pc = self.b.ins().select(is_exc, cur, next);
            self.hdr_store(pc, offsets::PC);
        }
        let r = self.b.ins().uextend(types::I64, st);
        self.b.ins().return_(&[r]);
        self.b.switch_to_block(ok);
        // One predecessor (as after a `brcond`): values read on from here are the ones
        // from before the call.
        self.b.seal_block(ok);
    }

    /// Floating point on integer-typed values: move them to float registers and back.
    fn fp(&mut self, op: FpOp, ty: Ty, a: Value, b: Value, c: Value) -> Value {
        if op == FpOp::MulAdd && !self.has_fma {
            let wide = |e: &mut Self, v: Value| match ty {
                Ty::I32 => e.b.ins().uextend(types::I64, v),
                Ty::I64 => v,
            };
            let (a, b, c) = (wide(self, a), wide(self, b), wide(self, c));
            let (ctl, f) = (
                self.k64(crate::baseline::fp_ctl(op, ty)),
                self.k64(crate::baseline::fp_call as *const () as usize as u64),
            );
            let call = self.b.ins().call_indirect(self.sig_c, f, &[self.cpu, ctl, a, b, c]);
            let r = self.b.inst_results(call)[0];
            return match ty {
                Ty::I32 => self.b.ins().ireduce(types::I32, r),
                Ty::I64 => r,
            };
        }
        let (x, y, z) = (self.as_float(a, ty), self.as_float(b, ty), self.as_float(c, ty));
        let r = match op {
            FpOp::Add => self.b.ins().fadd(x, y),
            FpOp::Sub => self.b.ins().fsub(x, y),
            FpOp::Mul => self.b.ins().fmul(x, y),
            FpOp::Div => self.b.ins().fdiv(x, y),
            FpOp::Sqrt => self.b.ins().sqrt(x),
            FpOp::MulAdd => self.b.ins().fma(x, y, z),
        };
        self.float_bits(r, ty)
    }

    fn call(&mut self, h: &Helper, args: &[Temp], dst: Option<Temp>) {
        let e = h.effects;
        if e.cold {
            if let Some(cur) = self.b.current_block() {
                self.b.set_cold_block(cur);
            }
        }
        if e.may_exit {
            let pc = self.pc;
            self.store_pc(pc);
        }
        if e.reads_state || e.writes_state || e.may_exit {
            match e.state_range {
                // Only what the helper can see goes to memory (and is dropped from the
                // cache); the status exit below stores the rest.
                Some((lo, hi)) => {
                    self.evict_overlaps(lo, hi.saturating_sub(lo), None);
                    self.sync_promos_in(lo, hi);
                }
                None => {
                    self.writeback();
                    self.sync_promos();
                }
            }
        }
        let zero = self.k64(0);
        let mut a = [self.cpu, zero, zero, zero, zero];
        for (slot, &t) in a[1..].iter_mut().zip(args) {
            let v = self.var(t);
            *slot = match self.ty(t) {
                Ty::I32 => self.b.ins().uextend(types::I64, v),
                Ty::I64 => v,
            };
        }
        let f = self.k64(h.func as usize as u64);
        let r = match crate::stub::keep_regs_call().filter(|_| e.cold) {
            // A cold call clobbers no register (see `stub`): float values stay in XMM
            // registers across fast paths whose fallback it is.
            Some(keep) => {
                let k = self.k64(keep);
                self.slow_call(k, &[f, a[1], a[2], a[3], a[4]]);
                self.hdr_load(types::I64, offsets::SLOW_RET)
            }
            None => {
                let call = self.b.ins().call_indirect(self.sig_c, f, &a);
                self.b.inst_results(call)[0]
            }
        };
        if e.writes_state {
            match e.state_range {
                Some((lo, hi)) => self.reload_promos_in(lo, hi),
                None => {
                    self.cache.clear();
                    self.reload_promos();
                }
            }
        }
        if let Some(d) = dst {
            let v = match self.ty(d) {
                Ty::I32 => self.b.ins().ireduce(types::I32, r),
                Ty::I64 => r,
            };
            self.def(d, v);
        }
        if e.may_exit {
            self.check_status(None, e.state_range.is_some());
        }
    }

    /// A guest memory access: inline TLB probe, host access on a hit, slow path otherwise.
    /// For loads returns the value (of `ty`); for stores `src` has type `ty`.
    /// The inline softmmu TLB probe of a `size` access at `addr`, and the branch on it: a
    /// hit (the tag matches: same page, aligned to `size`, no flag bits) continues in the
    /// current block with the host address returned; a miss goes to the returned cold
    /// block. Both paths are to end in a jump to the returned merge block, with a value
    /// of `ty` (the merge block's parameter, returned too).
    fn tlb_split(&mut self, addr: Value, mop: MemOp, perm: Access, ty: Ty) -> (Value, ir::Block, ir::Block, Value) {
        let (hit, ent) = self.tlb_probe(addr, mop, perm);
        let (fast, slow, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        let out = self.b.append_block_param(merge, clty(ty));
        self.b.ins().brif(hit, fast, &[], slow, &[]);
        // Laid out after the function's hot code, so a TLB hit falls through.
        self.b.set_cold_block(slow);
        // Fast path: host = vaddr + addend.
        self.b.switch_to_block(fast);
        let addend = self.tlb_field(ent, offsets::TLB_ADDEND);
        (self.b.ins().iadd(addr, addend), slow, merge, out)
    }

    /// The probe of [`Emit::tlb_split`]: whether it hits, and the entry's address
    /// (the comparison is `kite_ir::state::tlb_cmp_key`).
    fn tlb_probe(&mut self, addr: Value, mop: MemOp, perm: Access) -> (Value, Value) {
        let tag_off = if perm == Access::Write { offsets::TLB_ADDR_WRITE } else { offsets::TLB_ADDR_READ };
        let ent = self.tlb_entry(addr);
        let tag = self.tlb_field(ent, tag_off);
        let m = self.tlb_key(addr, mop);
        (self.b.ins().icmp(IntCC::Equal, m, tag), ent)
    }

    /// What a TLB tag must equal for an access of `mop` at `addr` to hit: the page of its
    /// last byte, plus the alignment bits of an access that must be aligned
    /// (`kite_ir::state::tlb_cmp_key`).
    fn tlb_key(&mut self, addr: Value, mop: MemOp) -> Value {
        let last = mop.size.bytes() as i64 - 1;
        if mop.aligned || last == 0 {
            self.b.ins().band_imm_s(addr, (PAGE_MASK | last as u64) as i64)
        } else {
            let end = self.b.ins().iadd_imm_s(addr, last);
            self.b.ins().band_imm_s(end, PAGE_MASK as i64)
        }
    }

    /// The address of the TLB entry for the page of `addr` in this TB's MMU mode. The
    /// mode's mask and table only change between blocks (see `CpuHeader::tlb_mask`), so
    /// their loads are `readonly` and `can_move`. At the optimisation level used, Cranelift
    /// still loads them at each access (two L1 hits); loading them once per function cost
    /// more in spills than it saved (`docs/performance.md`, sixteenth round).
    fn tlb_entry(&mut self, addr: Value) -> Value {
        let m = (self.spec.mmu as u32 & 3) * 8;
        let fixed = MemFlagsData::new().with_notrap().with_readonly().with_can_move();
        let shift = kite_ir::state::PAGE_BITS - offsets::TLB_ENTRY_SIZE.trailing_zeros();
        let idx = self.b.ins().ushr_imm_s(addr, shift as i64);
        let mask = self.b.ins().load(types::I64, fixed, self.cpu, (offsets::TLB_MASK + m) as i32);
        let idx = self.b.ins().band(idx, mask);
        let table = self.b.ins().load(types::I64, fixed, self.cpu, (offsets::TLB_TABLE + m) as i32);
        self.b.ins().iadd(table, idx)
    }

    /// Load field `off` (`offsets::TLB_ADDR_*`, `TLB_ADDEND`) of TLB entry `ent`.
    fn tlb_field(&mut self, ent: Value, off: u32) -> Value {
        self.b.ins().load(types::I64, state_flags(), ent, off as i32)
    }

    /// For a member of an access group (`memgroup`): the group's host base (0 if the shared
    /// check failed) and this access's host address. The first member emits the check.
    fn group_at(&mut self, i: usize) -> Option<(Value, Value)> {
        let (gid, g, off) = self.groups.of(i)?;
        let (base_t, lo, hi, read, write, first) = (g.base, g.lo, g.hi, g.read, g.write, g.first);
        if first == i {
            let base = self.var(base_t);
            let start = self.b.ins().iadd_imm_s(base, lo);
            let last = self.b.ins().iadd_imm_s(base, hi - 1);
            let ent = self.tlb_entry(start);
            let key = self.b.ins().band_imm_s(start, PAGE_MASK as i64);
            let key_last = self.b.ins().band_imm_s(last, PAGE_MASK as i64);
            let mut ok = self.b.ins().icmp(IntCC::Equal, key, key_last);
            for (want, tag_off) in [(read, offsets::TLB_ADDR_READ), (write, offsets::TLB_ADDR_WRITE)] {
                if want {
                    let tag = self.tlb_field(ent, tag_off);
                    let hit = self.b.ins().icmp(IntCC::Equal, key, tag);
                    ok = self.b.ins().band(ok, hit);
                }
            }
            let addend = self.tlb_field(ent, offsets::TLB_ADDEND);
            let host_base = self.b.ins().iadd(base, addend);
            // One value stays live across the group: the host base, or 0 if the check
            // failed. A real one is never 0: `base + lo` lies on a mapped host page and
            // |lo| <= 2048 (`memgroup::MAX_OFFSET`), while the zero page is never mapped.
            let zero = self.k64(0);
            self.group_vals[gid as usize] = Some(self.b.ins().select(ok, host_base, zero));
        }
        let host_base = self.group_vals[gid as usize]?;
        Some((host_base, self.b.ins().iadd_imm_s(host_base, off)))
    }

    /// The host access of a load or store at `host`; a load's value, or a store's source.
    fn access(&mut self, host: Value, mop: MemOp, src: Option<Value>, ty: Ty) -> Value {
        let mf = MemFlagsData::new().with_notrap();
        let v = match src {
            None => {
                let cty = clty(ty);
                let ins = self.b.ins();
                match (mop.size, mop.signed, ty) {
                    (MemSize::B8, _, Ty::I64) | (MemSize::B4, _, Ty::I32) => ins.load(cty, mf, host, 0),
                    (MemSize::B8, _, Ty::I32) => {
                        let v = ins.load(types::I64, mf, host, 0);
                        self.b.ins().ireduce(types::I32, v)
                    }
                    (MemSize::B4, true, _) => ins.sload32(mf, host, 0),
                    (MemSize::B4, false, _) => ins.uload32(mf, host, 0),
                    (MemSize::B2, true, _) => ins.sload16(cty, mf, host, 0),
                    (MemSize::B2, false, _) => ins.uload16(cty, mf, host, 0),
                    (MemSize::B1, true, _) => ins.sload8(cty, mf, host, 0),
                    (MemSize::B1, false, _) => ins.uload8(cty, mf, host, 0),
                }
            }
            Some(s) => {
                match (mop.size, ty) {
                    (MemSize::B8, Ty::I32) => {
                        let w = self.b.ins().uextend(types::I64, s);
                        self.b.ins().store(mf, w, host, 0);
                    }
                    (MemSize::B8, Ty::I64) | (MemSize::B4, Ty::I32) => {
                        self.b.ins().store(mf, s, host, 0);
                    }
                    (MemSize::B4, Ty::I64) => {
                        self.b.ins().istore32(mf, s, host, 0);
                    }
                    (MemSize::B2, _) => {
                        self.b.ins().istore16(mf, s, host, 0);
                    }
                    (MemSize::B1, _) => {
                        self.b.ins().istore8(mf, s, host, 0);
                    }
                }
                s
            }
        };
        v
    }

    /// A load through `TbSpec::direct`: inside the RAM block a host load at a fixed
    /// offset; anywhere else (MMIO, another RAM block, across the block's end) the
    /// softmmu slow path, out of line. (Not the TLB probe first: it never hits MMIO, and
    /// its hit path, laid out inline, sat between the check and the load.)
    fn load_direct(&mut self, addr: Value, mop: MemOp, ty: Ty, d: Direct) -> Value {
        let off = self.b.ins().iadd_imm_s(addr, d.base.wrapping_neg() as i64);
        let last = d.size - mop.size.bytes() as u64;
        let inside = self.b.ins().icmp_imm_s(IntCC::UnsignedLessThanOrEqual, off, last as i64);
        let (fast, other, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
        let out = self.b.append_block_param(merge, clty(ty));
        self.b.ins().brif(inside, fast, &[], other, &[]);
        self.b.set_cold_block(other);
        self.b.switch_to_block(fast);
        let host = self.b.ins().iadd_imm_s(addr, d.host.wrapping_sub(d.base) as i64);
        let v = self.access(host, mop, None, ty);
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
        self.mem_slow(other, merge, addr, mop, Access::Read, None, ty, 0);
        self.b.switch_to_block(merge);
        out
    }

    /// One load or store. In an access group (`group`: the group's host base, 0 if the
    /// shared check failed, and this access's host address) it probes the TLB itself only
    /// when the shared check failed.
    #[allow(clippy::too_many_arguments)]
    fn mem(
        &mut self,
        addr: Value,
        mop: MemOp,
        kind: Access,
        src: Option<Value>,
        ty: Ty,
        next_pc: u64,
        group: Option<(Value, Value)>,
        memo: Option<(Variable, Variable)>,
    ) -> Value {
        let (slow, merge, out) = match (group, memo) {
            (None, Some((kv, av))) => {
                // The page this access found in the TLB the last time, if it is on it
                // again: within one run of the function nothing can change what a page
                // maps to (see `memgroup`: a TLB flush needs a helper that writes state,
                // and a function with one has no memos), and only a hit, on a tag without
                // flag bits, is remembered. The key asks for natural alignment even where
                // the access need not be aligned: an aligned access cannot straddle two
                // pages, while a misaligned one whose last byte is on the remembered page
                // may start on the page before it. Those take the probe, which sees it.
                let last_byte = mop.size.bytes() as u64 - 1;
                let key = self.b.ins().band_imm_s(addr, (PAGE_MASK | last_byte) as i64);
                let last = self.b.use_var(kv);
                let same = self.b.ins().icmp(IntCC::Equal, key, last);
                let (fast, probe, merge) = (self.b.create_block(), self.b.create_block(), self.b.create_block());
                let out = self.b.append_block_param(merge, clty(ty));
                self.b.ins().brif(same, fast, &[], probe, &[]);
                // Same page: no probe, and the access falls through from the check.
                self.b.switch_to_block(fast);
                let add = self.b.use_var(av);
                let host = self.b.ins().iadd(addr, add);
                let v = self.access(host, mop, src, ty);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                // Another page (once per page in an array walk): the probe, out of line,
                // which remembers the page on a hit.
                self.b.set_cold_block(probe);
                self.b.switch_to_block(probe);
                let (hit, ent) = self.tlb_probe(addr, mop, mop.perm(kind));
                let (found, slow) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(hit, found, &[], slow, &[]);
                self.b.set_cold_block(found);
                self.b.set_cold_block(slow);
                self.b.switch_to_block(found);
                let add = self.tlb_field(ent, offsets::TLB_ADDEND);
                // A hit means the whole access is on the entry's page (entries of
                // neighbouring pages have different indices).
                let page = self.b.ins().band_imm_s(addr, PAGE_MASK as i64);
                self.b.def_var(kv, page);
                self.b.def_var(av, add);
                let host = self.b.ins().iadd(addr, add);
                let v = self.access(host, mop, src, ty);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                (slow, merge, out)
            }
            (None, None) => {
                let (host, slow, merge, out) = self.tlb_split(addr, mop, mop.perm(kind), ty);
                let v = self.access(host, mop, src, ty);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                (slow, merge, out)
            }
            (Some((ok, ghost)), _) => {
                let (fast, probe) = (self.b.create_block(), self.b.create_block());
                self.b.ins().brif(ok, fast, &[], probe, &[]);
                // Only when the range crossed a page or the TLB lacked it: all out of line.
                self.b.set_cold_block(probe);
                self.b.switch_to_block(probe);
                let (host, slow, merge, out) = self.tlb_split(addr, mop, mop.perm(kind), ty);
                if let Some(hit) = self.b.current_block() {
                    self.b.set_cold_block(hit);
                }
                let v = self.access(host, mop, src, ty);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                // The group's check covered this access: its own copy of the access, so
                // the hot path joins `merge` with no block-parameter copy.
                self.b.switch_to_block(fast);
                let v = self.access(ghost, mop, src, ty);
                self.b.ins().jump(merge, &[BlockArg::Value(v)]);
                (slow, merge, out)
            }
        };

        self.mem_slow(slow, merge, addr, mop, kind, src, ty, next_pc);
        self.b.switch_to_block(merge);
        out
    }

    /// The slow path of [`Emit::mem`] in block `slow`, ending in a jump to `merge` with
    /// the load's value (a store's source).
    #[allow(clippy::too_many_arguments)]
    fn mem_slow(
        &mut self,
        slow: ir::Block,
        merge: ir::Block,
        addr: Value,
        mop: MemOp,
        kind: Access,
        src: Option<Value>,
        ty: Ty,
        next_pc: u64,
    ) {
        // Precise pc, consistent state, then the helper.
        self.b.switch_to_block(slow);
        let pc = self.pc;
        self.store_pc(pc);
        self.writeback_side();
        self.sync_promos();
        let fix = softmmu::fixup_info(self.unexecuted(), src.is_some());
        let info = self.k64(softmmu::info(mop, kind, self.spec.mmu, self.spec.tb) | fix);
        let val = match (src, ty) {
            (Some(s), Ty::I32) => self.b.ins().uextend(types::I64, s),
            (Some(s), Ty::I64) => s,
            (None, _) => self.k64(0),
        };
        let f = self.k64(self.spec.slow_keep);
        // For a store, the pc to resume at if it invalidated this block (see `fixup_info`).
        let next = self.k64(if src.is_some() { next_pc } else { 0 });
        self.slow_call(f, &[addr, info, val, next]);
        self.leave_on_status();
        // A store's result is its source; only a load reads the stub's result word.
        let v = match src {
            Some(s) => s,
            None => {
                let r = self.hdr_load(types::I64, offsets::SLOW_RET);
                match ty {
                    Ty::I32 => self.b.ins().ireduce(types::I32, r),
                    Ty::I64 => r,
                }
            }
        };
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);
    }

    /// An atomic read-modify-write. Words and doublewords on a page the TLB holds for
    /// writing are a host atomic inline (`lock xadd`, `xchg`, `lock cmpxchg`, or a
    /// compare-and-swap loop); the rest, and every miss, take the slow-path helper, which
    /// probes the TLB and does a host atomic on RAM. Like a store it may invalidate the
    /// running TB, so its status check resumes after it.
    fn atomic(&mut self, i: usize, op: RmwOp, addr: Temp, src: Temp, expected: Temp, mop: MemOp) -> Value {
        let ty = self.ty(src);
        let (a, s, e) = (self.var(addr), self.var(src), self.var(expected));
        let wty = match mop.size {
            MemSize::B4 => types::I32,
            MemSize::B8 => types::I64,
            _ => return self.atomic_slow(i, op, ty, a, s, e, mop),
        };
        // Write permission on a plain RAM page, naturally aligned (else the tag misses).
        let (host, slow, merge, out) = self.tlb_split(a, mop.aligned(), Access::Write, ty);
        let narrow = |b: &mut FunctionBuilder, v: Value| match (ty, wty) {
            (Ty::I64, t) if t == types::I32 => b.ins().ireduce(types::I32, v),
            (Ty::I32, t) if t == types::I64 => b.ins().uextend(types::I64, v),
            _ => v,
        };
        let (sw, ew) = (narrow(&mut self.b, s), narrow(&mut self.b, e));
        let mf = MemFlagsData::new().with_notrap().with_aligned();
        let rmw = |b: &mut FunctionBuilder, o: ir::AtomicRmwOp| b.ins().atomic_rmw(wty, mf, o, host, sw);
        let old = match op {
            RmwOp::Cas => self.b.ins().atomic_cas(mf, host, ew, sw),
            RmwOp::Xchg => rmw(&mut self.b, ir::AtomicRmwOp::Xchg),
            RmwOp::Add => rmw(&mut self.b, ir::AtomicRmwOp::Add),
            RmwOp::And => rmw(&mut self.b, ir::AtomicRmwOp::And),
            RmwOp::Or => rmw(&mut self.b, ir::AtomicRmwOp::Or),
            RmwOp::Xor => rmw(&mut self.b, ir::AtomicRmwOp::Xor),
            RmwOp::MinS => rmw(&mut self.b, ir::AtomicRmwOp::Smin),
            RmwOp::MaxS => rmw(&mut self.b, ir::AtomicRmwOp::Smax),
            RmwOp::MinU => rmw(&mut self.b, ir::AtomicRmwOp::Umin),
            RmwOp::MaxU => rmw(&mut self.b, ir::AtomicRmwOp::Umax),
        };
        // The old value extended per the MemOp, as the slow path returns it.
        let v = match (ty, wty == types::I32) {
            (Ty::I64, true) if mop.signed => self.b.ins().sextend(types::I64, old),
            (Ty::I64, true) => self.b.ins().uextend(types::I64, old),
            (Ty::I32, false) => self.b.ins().ireduce(types::I32, old),
            _ => old,
        };
        self.b.ins().jump(merge, &[BlockArg::Value(v)]);

        self.b.switch_to_block(slow);
        let r = self.atomic_slow(i, op, ty, a, s, e, mop);
        self.b.ins().jump(merge, &[BlockArg::Value(r)]);
        self.b.switch_to_block(merge);
        out
    }

    /// [`Emit::atomic`] through the slow-path helper.
    #[allow(clippy::too_many_arguments)]
    fn atomic_slow(&mut self, i: usize, op: RmwOp, ty: Ty, a: Value, s: Value, e: Value, mop: MemOp) -> Value {
        let next = self.next_pc(i);
        let pc = self.pc;
        self.store_pc(pc);
        self.writeback_side();
        self.sync_promos();
        let info = self.k64(softmmu::info(mop, Access::Write, self.spec.mmu, self.spec.tb) | softmmu::atomic_info(op));
        let (s, e) = match ty {
            Ty::I32 => (self.b.ins().uextend(types::I64, s), self.b.ins().uextend(types::I64, e)),
            Ty::I64 => (s, e),
        };
        let f = self.k64(self.spec.slow_keep);
        self.slow_call(f, &[a, info, s, e]);
        let r = self.hdr_load(types::I64, offsets::SLOW_RET);
        self.check_status(Some(next), false);
        match ty {
            Ty::I32 => self.b.ins().ireduce(types::I32, r),
            Ty::I64 => r,
        }
    }

    /// Call the registers-preserving entry `f` (`stub::keep_regs_entry` or
    /// `stub::keep_regs_call`) with `args` stored in the header's `slow_args`, in the order
    /// that entry reads them.
    fn slow_call(&mut self, f: Value, args: &[Value]) {
        debug_assert!(args.len() <= 5, "slow_args holds five words");
        for (k, &v) in args.iter().enumerate() {
            self.hdr_store(v, offsets::SLOW_ARGS + 8 * k as u32);
        }
        self.b.ins().call_indirect(self.sig_slow, f, &[self.cpu]);
    }

    /// `v`'s value if an `iconst` defines it.
    fn iconst_of(&self, v: Value) -> Option<i64> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v) {
            ir::ValueDef::Result(inst, 0) => match dfg.insts[inst] {
                ir::InstructionData::UnaryImm { opcode: ir::Opcode::Iconst, imm } => Some(imm.bits()),
                _ => None,
            },
            _ => None,
        }
    }

    /// `v` as `x + k` if an `iadd` of a constant defines it.
    fn add_const_of(&self, v: Value) -> Option<(Value, i64)> {
        let dfg = &self.b.func.dfg;
        match dfg.value_def(v) {
            ir::ValueDef::Result(inst, 0) => match dfg.insts[inst] {
                ir::InstructionData::Binary { opcode: ir::Opcode::Iadd, args: [x, y] } => {
                    self.iconst_of(y).map(|k| (x, k)).or_else(|| self.iconst_of(x).map(|k| (y, k)))
                }
                _ => None,
            },
            _ => None,
        }
    }

    fn bin(&mut self, op: BinOp, ty: Ty, a: Value, b: Value) -> Value {
        let bits = ty.bits() as i64;
        let min = 1u64 << (bits - 1);
        match op {
            BinOp::Add => {
                // x + k1 + k2 as one add: at `opt_level=none` Cranelift lowers the nested
                // form with one constant in a register (every stack-slot address after an
                // `addi sp` in the same block: `mov ecx, 0x58; lea rdx, [r12+rcx-0x70]`).
                let (a, b) = if self.iconst_of(a).is_some() { (b, a) } else { (a, b) };
                match (self.iconst_of(b), self.add_const_of(a)) {
                    (Some(k2), Some((x, k1))) => self.b.ins().iadd_imm_s(x, k1.wrapping_add(k2)),
                    _ => self.b.ins().iadd(a, b),
                }
            }
            BinOp::Sub => self.b.ins().isub(a, b),
            BinOp::And => self.b.ins().band(a, b),
            BinOp::Or => self.b.ins().bor(a, b),
            BinOp::Xor => self.b.ins().bxor(a, b),
            BinOp::Shl => self.b.ins().ishl(a, b),
            BinOp::Shr => self.b.ins().ushr(a, b),
            BinOp::Sar => self.b.ins().sshr(a, b),
            BinOp::Rotl => self.b.ins().rotl(a, b),
            BinOp::Rotr => self.b.ins().rotr(a, b),
            BinOp::Mul => self.b.ins().imul(a, b),
            BinOp::MulHs => self.b.ins().smulhi(a, b),
            BinOp::MulHu => self.b.ins().umulhi(a, b),
            BinOp::MulHsu => {
                // signed(a) * unsigned(b) = a*b - 2^w * b * [a < 0]: subtract b from the
                // unsigned high half when a is negative.
                let hi = self.b.ins().umulhi(a, b);
                let s = self.b.ins().sshr_imm_s(a, bits - 1);
                let m = self.b.ins().band(s, b);
                self.b.ins().isub(hi, m)
            }
            BinOp::DivU | BinOp::RemU => {
                let z = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
                let one = self.konst(ty, 1);
                let d = self.b.ins().select(z, one, b);
                if op == BinOp::DivU {
                    let q = self.b.ins().udiv(a, d);
                    let ones = self.konst(ty, u64::MAX);
                    self.b.ins().select(z, ones, q)
                } else {
                    let r = self.b.ins().urem(a, d);
                    self.b.ins().select(z, a, r)
                }
            }
            BinOp::DivS | BinOp::RemS => {
                // Divide by 1 instead of 0 or MIN/-1 (which trap), then patch the result:
                // MIN/1 = MIN and MIN%1 = 0 are already the IR's answers for MIN/-1.
                let z = self.b.ins().icmp_imm_s(IntCC::Equal, b, 0);
                let mn = self.konst(ty, min);
                let amin = self.b.ins().icmp(IntCC::Equal, a, mn);
                let ones = self.konst(ty, u64::MAX);
                let bm1 = self.b.ins().icmp(IntCC::Equal, b, ones);
                let ov = self.b.ins().band(amin, bm1);
                let bad = self.b.ins().bor(z, ov);
                let one = self.konst(ty, 1);
                let d = self.b.ins().select(bad, one, b);
                if op == BinOp::DivS {
                    let q = self.b.ins().sdiv(a, d);
                    self.b.ins().select(z, ones, q)
                } else {
                    let r = self.b.ins().srem(a, d);
                    self.b.ins().select(z, a, r)
                }
            }
            BinOp::MinS => self.b.ins().smin(a, b),
            BinOp::MaxS => self.b.ins().smax(a, b),
            BinOp::MinU => self.b.ins().umin(a, b),
            BinOp::MaxU => self.b.ins().umax(a, b),
        }
    }

    /// Take the low `n` bits of `v` (type `sty`) and extend or truncate them to `dty`.
    fn low_bits(&mut self, v: Value, sty: Ty, n: u32, signed: bool, dty: Ty) -> Value {
        let n = n.min(sty.bits());
        let nty = match n {
            8 => types::I8,
            16 => types::I16,
            32 => types::I32,
            _ => types::I64,
        };
        let low = if n == sty.bits() { v } else { self.b.ins().ireduce(nty, v) };
        let db = dty.bits();
        if n == db {
            low
        } else if n < db {
            if signed {
                self.b.ins().sextend(clty(dty), low)
            } else {
                self.b.ins().uextend(clty(dty), low)
            }
        } else {
            self.b.ins().ireduce(clty(dty), low)
        }
    }

    fn un(&mut self, op: UnOp, sty: Ty, dty: Ty, v: Value) -> Value {
        match op {
            UnOp::Neg => self.b.ins().ineg(v),
            UnOp::Not => self.b.ins().bnot(v),
            UnOp::Sext8 => self.low_bits(v, sty, 8, true, dty),
            UnOp::Sext16 => self.low_bits(v, sty, 16, true, dty),
            UnOp::Sext32 => self.low_bits(v, sty, 32, true, dty),
            UnOp::Zext8 => self.low_bits(v, sty, 8, false, dty),
            UnOp::Zext16 => self.low_bits(v, sty, 16, false, dty),
            UnOp::Zext32 => self.low_bits(v, sty, 32, false, dty),
            UnOp::Trunc => self.low_bits(v, sty, sty.bits(), false, dty),
            UnOp::Clz => self.b.ins().clz(v),
            UnOp::Ctz => self.b.ins().ctz(v),
            UnOp::Popcnt => self.b.ins().popcnt(v),
            UnOp::Bswap => self.b.ins().bswap(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_ir::{Builder, MemSize};

    #[test]
    fn stride_sites_are_accesses_through_a_register_the_block_steps() {
        let (r, q) = (0x200, 0x208);
        let mut b = Builder::new(0x1000);
        b.insn_start(0x1000);
        // lw a4, 8(r); lw a4, 0(q); sw a4, -4(r)
        let base = b.ld_state(Ty::I64, r);
        let k = b.const64(8);
        let a = b.bin(BinOp::Add, base, k);
        let v = b.load(Ty::I64, a, MemOp::new(MemSize::B4, true));
        let other = b.ld_state(Ty::I64, q);
        b.load(Ty::I64, other, MemOp::new(MemSize::B4, true));
        let base2 = b.ld_state(Ty::I64, r);
        let k2 = b.const64(-4i64 as u64);
        let a2 = b.bin(BinOp::Add, base2, k2);
        b.store(v, a2, MemOp::new(MemSize::B4, false));
        // r += 4; q = q + 0 (no step), then a far offset off r: no site.
        let base3 = b.ld_state(Ty::I64, r);
        let four = b.const64(4);
        let stepped = b.bin(BinOp::Add, base3, four);
        b.st_state(stepped, r);
        let q0 = b.ld_state(Ty::I64, q);
        let zero = b.const64(0);
        let same = b.bin(BinOp::Add, q0, zero);
        b.st_state(same, q);
        let base4 = b.ld_state(Ty::I64, r);
        let far = b.const64(4096);
        let a4 = b.bin(BinOp::Add, base4, far);
        b.load(Ty::I64, a4, MemOp::new(MemSize::B8, false));
        b.exit(Exit::Goto(0x1000));
        b.set_extent(1, 4);
        let blk = b.finish();
        let sites: Vec<Inst> = stride_sites(&blk).into_iter().map(|i| blk.insts[i].clone()).collect();
        assert_eq!(sites.len(), 2, "{blk}");
        assert!(matches!(sites[0], Inst::Load { addr, .. } if addr == a));
        assert!(matches!(sites[1], Inst::Store { addr, .. } if addr == a2));
    }
}
