//! The execution loop: TB lookup and translation, chaining, exits, interrupts, halts.
//!
//! [`Engine::run`] loops: stop if the VM wants to exit; on a set exit-request word clear
//! it and take a pending interrupt; apply `flush_request`; find the TB for (pc, flags)
//! through the jump cache, the TB map, or the frontend + a compiler; link the chain slot
//! the previous TB left through if it jumped straight here; run the TB; act on why it
//! returned. The interpreter tier uses the same loop with blocks run by
//! [`kite_ir::interp::run`].
//!
//! Tiering ([`Tier::Tiered`]): a new TB is compiled by the baseline compiler; its prologue
//! counts entries and at [`JitOptions::thresh`] returns [`ret::HOT`]. The block is then
//! translated again and compiled by Cranelift ([`Engine::tier_up_baseline`]) and promoted
//! under the same id. With `baseline: false` a new TB is interpreted instead; every
//! dispatcher entry heats it ([`Engine::tier_up`]); interpreted TBs are never chain targets
//! (`TbCache::link` wants native code), so every entry into one passes the dispatcher.
//!
//! With [`JitOptions::background`] the Cranelift compile runs on a worker thread
//! ([`crate::bg`]): the TB keeps running as it was until its code arrives, and the
//! dispatcher installs finished code at the next dispatch (a baseline TB comes back to
//! the dispatcher every `RECHECK` entries for that).
//!
//! Instruction fetch on a jump-cache miss goes through the per-vCPU fetch TLB
//! ([`Engine::code_phys`]) before walking page tables.
//!
//! Aliasing: generated code and the slow path reach the CPU and the engine context through
//! raw pointers, so the loop keeps only raw pointers across a TB run and re-borrows briefly
//! between runs.

use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kite_core::guest::{FaultKind, TbLimits};
use kite_core::{ExitCode, Fault, GuestCpu, PhysMemory, VmControl};
use kite_ir::fast::{FastBlock, FastScratch, FastView};
use kite_ir::state::{flush, status, MMU_MODES, PAGE_MASK, PAGE_SIZE};
use kite_ir::{interp, Access, Block, Builder, Exit, Inst};
use kite_memory::Hit;
use kite_memory::PhysMap;

use crate::baseline::Baseline;
use crate::bg::{Bg, Done, Job, Pending};
use crate::codecache::CodeCache;
use crate::codegen::{ret, Codegen, Direct, TbSpec};
use crate::sched::VcpuState;
use crate::softmmu::{slow_access, InterpEnv};
use crate::tb::{BaselineTb, ChainSlot, DirectJump, Exec, Tb, TbCache, TbId};
use crate::{JitError, JitOptions, Stats, Tier};

#[path = "debug.rs"]
pub(crate) mod debug;

/// Instructions per TB when not single-stepping.
const MAX_INSNS: u32 = 512;
/// Most blocks besides the TB's own in one loop region, and most guest instructions
/// (Cranelift's compile time grows faster than linearly with function size).
const REGION_BLOCKS: usize = 16;
const REGION_INSNS: u32 = 256;
/// A block heads a region only if it reached the tier-up threshold within this many guest
/// instructions per entry counted (see `Engine::region`).
const REGION_DENSITY: u64 = 1000;
/// A region headed by a block that loops to itself keeps only the blocks entered at
/// least once per this many runs of the head (see `Engine::region`).
const REGION_COLD: u32 = 32;
/// Entries kept in `Engine::in_region` before it starts over.
const IN_REGION_MAX: usize = 4096;
/// How long a halted vCPU sleeps before re-checking for a wake-up on its own.
const HALT_POLL: Duration = Duration::from_millis(10);
/// `wfi`s ended at once by a masked interrupt before the vCPU backs off (see `halt`).
const WFI_SPINS: u32 = 64;
/// The longest a backed-off `wfi` sleeps.
const WFI_BACKOFF: Duration = Duration::from_micros(500);
/// New code pages remembered for vCPUs that are switched out (see `Ctx::code_log`); one
/// that missed more flushes its whole TLB.
const CODE_LOG: usize = 64;
/// Time-slice ends a vCPU that is not preemptible (firmware) may let pass before it is
/// switched out anyway (see `run_loop`).
pub(crate) const FIRMWARE_SLICES: u32 = 2;
/// Entries after which a baseline block whose Cranelift compile is in flight returns to
/// the dispatcher again (to install the code once it is ready; see `tier_up_baseline`).
const RECHECK: u32 = 256;

/// What the slow path needs: reached from generated code through a raw pointer.
pub(crate) struct Ctx<C> {
    pub mem: Arc<PhysMap>,
    pub tbs: TbCache,
    pub stats: Stats,
    /// Bumped whenever a physical page first gets code: other vCPUs' TLB write entries
    /// for that page lack the CODE flag (see [`Engine::switch_in`]).
    pub code_gen: u64,
    /// Host addresses of the last [`CODE_LOG`] pages that got code, newest last: the
    /// `i`-th from the end bumped `code_gen` to `code_gen - i`.
    pub code_log: std::collections::VecDeque<u64>,
    /// Debugger watchpoints (read by the slow path).
    pub dbg: debug::DebugState,
    /// The page registry shared with the other vCPUs' engines (MTTCG only).
    pub shared: Option<crate::mttcg::Link>,
    /// The translator lock and the other vCPUs, when several threads share this engine
    /// (`crate::shared`). Set once, before any vCPU runs.
    pub mt: Option<Arc<crate::shared::Threads>>,
    _cpu: std::marker::PhantomData<fn(C)>,
}

/// Nanoseconds since [`Engine::clock`]'s `t0` (0 when timing is off).
fn ns_since(t0: Option<Instant>) -> u64 {
    t0.map_or(0, |t| t.elapsed().as_nanos() as u64)
}

/// A compiled TB: its host code and chain slots.
type Compiled = (*const u8, Box<[ChainSlot]>);

/// The softmmu slow path for `C`, as an address for generated code.
fn slow_fn<C: GuestCpu>() -> u64 {
    slow_access::<C> as unsafe extern "C" fn(*mut Ctx<C>, *mut u8, u64, u64, u64, u64) -> u64 as usize as u64
}

type Trampoline = unsafe extern "C" fn(cpu: *mut u8, code: *const u8) -> u64;

struct Native {
    cg: Codegen,
    /// The cheap first compiler for cold blocks (tiered mode with `baseline`).
    bl: Baseline,
    cache: CodeCache,
    trampoline: Trampoline,
    /// The slow path behind `stub::keep_regs_entry` (for Cranelift code).
    slow_keep: u64,
}

/// Why [`Engine::run_loop`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    Exit(ExitCode),
    /// The vCPU executed `wfi` with nothing pending (only with a scheduler).
    Halted,
    /// Its time slice ended (only with a scheduler).
    Preempted,
}

/// One dispatcher step of a vCPU thread sharing the engine ([`Engine::mt_step`]).
pub(crate) enum MtStep {
    /// Run this native TB (without the translator lock); its exit value is the next
    /// step's input.
    Run(Run),
    /// An interpreted TB ran (under the lock): its exit value.
    Ran(u64),
    /// `wfi` with nothing pending: sleep until a wake-up ([`mt_halt`]).
    Halt,
    /// The guest is spin-waiting: give the host core away.
    Yield,
    /// Nothing to run (an exception was taken, or a full flush waits): step again.
    Again,
    /// The VM asked to exit.
    Exit,
}

/// A native TB ready to run.
pub(crate) struct Run {
    trampoline: Trampoline,
    code: *const u8,
}

impl Run {
    /// Run the TB.
    ///
    /// # Safety
    /// `cpu` is the CPU the run was prepared for, with no Rust reference to it live; the
    /// code must still be in the code cache (no full flush since it was prepared).
    pub(crate) unsafe fn go<C>(&self, cpu: *mut C) -> u64 {
        // SAFETY: per this function's contract; the trampoline and code were compiled by
        // the engine for `C`.
        unsafe { (self.trampoline)(cpu as *mut u8, self.code) }
    }
}

/// A pending chain link: slot `idx` of TB `src` jumped to (pc, flags).
#[derive(Clone, Copy, Debug)]
pub(crate) struct PendingLink {
    src: TbId,
    idx: u32,
    /// The slot's address: the TB may have been recompiled (a region orders its slots
    /// differently) or replaced (its id reused) before the link is made.
    slot: u64,
    pc: u64,
    flags: u32,
}

/// The translating accelerator: one vCPU ([`Engine::run`]) or several taking turns on
/// one thread ([`Engine::run_all`]).
pub struct Engine<C: GuestCpu> {
    ctx: NonNull<Ctx<C>>,
    vm: Arc<VmControl>,
    opts: JitOptions,
    native: Option<Native>,
    pending: Option<PendingLink>,
    /// The vCPU (its address) that ran last on this engine, under round robin.
    last_vcpu: Option<usize>,
    /// Its [`GuestCpu::translation_regime`] when it was switched out: the one the
    /// non-global cross-page chain links were made under.
    links_regime: Option<u64>,
    /// Breakpoints and the stop/resume link, once a debugger is attached.
    dbg: Option<debug::Attached<C>>,
    /// The background compiler (tiered mode with `background`).
    bg: Option<Bg>,
    /// The interpreter tier's reusable buffers (no allocation per block run).
    scratch: interp::Scratch,
    fast: FastScratch,
    /// Consecutive `wfi`s ended at once by a pending but masked interrupt (see `halt`).
    wfi_spins: u32,
    /// Run interpreted blocks on the reference interpreter only (differential tests).
    reference_interp: bool,
    /// A baseline TB that reported [`ret::HOT`], to recompile at the next dispatch.
    hot: Option<TbId>,
    /// Physical addresses of blocks already compiled into a region (head or member):
    /// such a block heads no region of its own. The blocks of one loop nest get hot
    /// together, and each used to head a region spanning the same nest (7 compiles of
    /// one n-body loop). Only a heuristic: stale entries merely cost a region.
    in_region: std::collections::HashSet<u64>,
    /// The last baseline-compiled block's IR, whose vectors the next translation reuses
    /// (growing two fresh vectors per block was ~1% of a Linux boot).
    spare_ir: Option<Block>,
    /// The largest block of guest RAM: what loads of identity-mapped TBs read directly
    /// (see [`Direct`]).
    window: Option<Direct>,
}

// SAFETY: the engine exclusively owns its context, code cache and the pointers into them;
// nothing is shared with other threads (the CPU is passed in by `&mut`).
unsafe impl<C: GuestCpu> Send for Engine<C> {}

impl<C: GuestCpu> std::fmt::Debug for Engine<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("opts", &self.opts).field("stats", &self.stats()).finish()
    }
}

impl<C: GuestCpu> Drop for Engine<C> {
    fn drop(&mut self) {
        // SAFETY: `ctx` came from `Box::into_raw` in `new` and is freed only here; no
        // generated code runs outside `run`.
        drop(unsafe { Box::from_raw(self.ctx.as_ptr()) });
    }
}

/// An interpreted block, borrowed for one run.
#[derive(Clone, Copy)]
enum Interp {
    Fast(FastView<'static>),
    Ref(*const Block),
}

/// Translate the block at `pc` from guest code in RAM: `first.1` bytes at `first.0` (the
/// code from `pc` on, within its page), then, past the end of `pc`'s page, up to `left`
/// bytes of the next page at `second` (if given). Fetching anything else raises an access
/// fault in the block; the second result says whether that happened. `first` is the
/// code at pc: its pointer, the bytes readable from it, and the bytes readable just below
/// it (0 if unknown).
///
/// # Safety
/// The pointers must be valid for reads of the given lengths.
unsafe fn translate_from_ram<C: GuestCpu>(
    cpu: &C,
    pc: u64,
    flags: u32,
    max_insns: u32,
    first: (*const u8, u64, u64),
    second: Option<(*const u8, u64)>,
) -> (Block, bool) {
    let (p0, avail0, before) = first;
    let page1 = (pc & PAGE_MASK).wrapping_add(PAGE_SIZE);
    let avail0 = avail0.min(page1.wrapping_sub(pc));
    let before = before.min(pc & !PAGE_MASK);
    let byte = |a: u64| -> Option<u8> {
        let off = a.wrapping_sub(pc);
        if off < avail0 {
            // SAFETY: `off < avail0` bytes readable from `p0` (the caller's contract).
            return Some(unsafe { p0.add(off as usize).read() });
        }
        // Code before pc in its page (a spin-wait's head, see the RISC-V `spin` module).
        let back = pc.wrapping_sub(a);
        if back != 0 && back <= before {
            // SAFETY: `before` bytes readable below `p0` (the caller's contract).
            return Some(unsafe { p0.sub(back as usize).read() });
        }
        let off1 = a.wrapping_sub(page1);
        match second {
            // SAFETY: `off1 < left` bytes readable from `p` (the caller's contract).
            Some((p, left)) if off1 < left.min(PAGE_SIZE) => Some(unsafe { p.add(off1 as usize).read() }),
            _ => None,
        }
    };
    let mut outside = false;
    let mut fetch = |a: u64| -> Result<u16, Fault> {
        match (byte(a), byte(a.wrapping_add(1))) {
            (Some(l), Some(h)) => Ok(l as u16 | (h as u16) << 8),
            _ => {
                outside = true;
                Err(cpu.fault_for(FaultKind::AccessFault, Access::Exec, a))
            }
        }
    };
    // Room for a typical block (tens of IR instructions per handful of guest ones).
    let mut b = Builder::with_capacity(pc, 96);
    cpu.translate_block(pc, flags, TbLimits { max_insns }, &mut fetch, &mut b);
    (b.finish(), outside)
}

/// How many bytes of `pc`'s page below `p0` (the host address of `phys`, where pc's code
/// is) are readable as the same RAM mapping: all of them from the page start, or none.
fn ram_before(mem: &PhysMap, pc: u64, phys: u64, p0: *const u8) -> u64 {
    let lead = pc & !PAGE_MASK;
    match mem.ram_ptr(phys & PAGE_MASK) {
        Some((p, left)) if left >= lead && std::ptr::eq(p.wrapping_add(lead as usize), p0) => lead,
        _ => 0,
    }
}

/// Chain slots for `block` and its region `members` (the TB that has or will get id
/// `id`): one per `Exit::Goto`, and their addresses for the generated code.
fn chain_slots(block: &Block, members: &[Arc<Block>], id: TbId) -> (Box<[ChainSlot]>, Vec<u64>) {
    let ngoto = std::iter::once(block).chain(members.iter().map(|m| &**m)).map(|b| b.goto_targets().count()).sum();
    let slots = TbCache::new_slots(id, ngoto);
    let addrs = slots.iter().map(|s| s as *const ChainSlot as u64).collect();
    (slots, addrs)
}

/// Result of a block run, normalised (chain-slot addresses become [`ret::GOTO`]).
#[cfg(test)]
pub(crate) fn normalise(r: u64) -> u64 {
    if r >= ret::SLOT_MIN {
        ret::GOTO
    } else {
        r
    }
}

impl<C: GuestCpu> Engine<C> {
    pub fn new(mem: Arc<PhysMap>, vm: Arc<VmControl>, opts: JitOptions) -> Result<Self, JitError> {
        let window = mem
            .regions()
            .filter_map(|r| match &r.kind {
                kite_memory::RegionKind::Ram(ram) => {
                    Some(Direct { base: r.base, size: r.size, host: ram.host_ptr(r.base)?.0 as u64 })
                }
                _ => None,
            })
            .max_by_key(|d| d.size);
        let ctx = Box::new(Ctx {
            mem,
            tbs: TbCache::new(),
            stats: Stats::default(),
            code_gen: 0,
            code_log: std::collections::VecDeque::with_capacity(CODE_LOG),
            dbg: Default::default(),
            shared: None,
            mt: None,
            _cpu: std::marker::PhantomData,
        });
        // SAFETY: `Box::into_raw` never returns null.
        let ctx = unsafe { NonNull::new_unchecked(Box::into_raw(ctx)) };
        // The slow-path entry names the context, so it exists first; on an error it is freed
        // here (the engine that would own it is not built).
        let native = (|| -> Result<Option<Native>, JitError> {
            Ok(match opts.tier {
                Tier::Interp => None,
                Tier::Jit | Tier::Tiered => {
                    let mut cg = Codegen::new(opts.verify)?;
                    let mut cache = CodeCache::new(opts.code_cache_bytes)?;
                    let code = cg.trampoline().map_err(JitError::Trampoline)?;
                    let p =
                        cache.add(code)?.ok_or_else(|| JitError::CodeCache("too small for the trampoline".into()))?;
                    // SAFETY: `p` is the trampoline just compiled for this host with exactly
                    // this signature (SystemV, two pointer-sized arguments, one u64 result).
                    let trampoline = unsafe { std::mem::transmute::<*const u8, Trampoline>(p) };
                    let keep = crate::stub::keep_regs_entry(slow_fn::<C>()).map_err(JitError::Trampoline)?;
                    let slow_keep =
                        cache.add(&keep)?.ok_or_else(|| JitError::CodeCache("too small for the trampoline".into()))?
                            as u64;
                    cache.make_permanent();
                    let mut bl = Baseline::new();
                    bl.direct = cache.writable(p).is_some();
                    Some(Native { cg, bl, cache, trampoline, slow_keep })
                }
            })
        })();
        let native = match native {
            Ok(n) => n,
            Err(e) => {
                // SAFETY: `ctx` came from `Box::into_raw` above and nothing else holds it.
                drop(unsafe { Box::from_raw(ctx.as_ptr()) });
                return Err(e);
            }
        };
        let bg = if opts.tier == Tier::Tiered && opts.background && opts.thresh > 0 {
            match Bg::new(opts.verify) {
                Ok(b) => Some(b),
                Err(e) => {
                    log::warn!("compiling in the foreground: {e}");
                    None
                }
            }
        } else {
            None
        };
        Ok(Engine {
            ctx,
            vm,
            opts,
            native,
            pending: None,
            last_vcpu: None,
            links_regime: None,
            dbg: None,
            bg,
            scratch: interp::Scratch::default(),
            fast: FastScratch::default(),
            wfi_spins: 0,
            reference_interp: false,
            hot: None,
            in_region: std::collections::HashSet::new(),
            spare_ir: None,
            window,
        })
    }

    /// Interpret new blocks with the reference interpreter only (differential tests).
    #[cfg(test)]
    pub(crate) fn set_reference_interp(&mut self, on: bool) {
        self.reference_interp = on;
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        // SAFETY: no generated code is running (we hold `&self` outside `run`).
        unsafe { self.ctx.as_ref() }.stats.clone()
    }

    /// The IR of the interpreted TB at `pc`, for tests.
    #[cfg(test)]
    pub(crate) fn interp_block_at(&mut self, pc: u64) -> Option<Arc<Block>> {
        match &self.ctx().tbs.find_vpc(pc)?.exec {
            Exec::Interp(b, _) => Some(b.clone()),
            Exec::Native(_) => None,
        }
    }

    fn ctx(&mut self) -> &mut Ctx<C> {
        // SAFETY: the context is owned by the engine; callers do not keep the reference
        // across a TB run.
        unsafe { self.ctx.as_mut() }
    }

    /// Run the vCPU until the VM asks to exit; returns that code.
    pub fn run(&mut self, cpu: &mut C) -> ExitCode {
        let cpu: *mut C = cpu;
        // SAFETY: the word lives inside `*cpu`, which outlives this call; it is
        // unregistered before we return.
        unsafe { self.vm.register(&(*cpu).header().exit_request) };
        // SAFETY: `cpu` is valid (from `&mut`), no other reference is live here.
        let ic0 = unsafe { (*cpu).header().icount };
        let code = match self.run_loop(cpu, None) {
            Stop::Exit(code) => code,
            // Unreachable without a scheduler; treat as a stop request all the same.
            Stop::Halted | Stop::Preempted => self.vm.exit_requested().unwrap_or(ExitCode::Exit(1)),
        };
        // SAFETY: as above.
        let h = unsafe { (*cpu).header() };
        let ic1 = h.icount;
        self.vm.unregister(&h.exit_request);
        self.ctx().stats.insns += ic1.wrapping_sub(ic0);
        code
    }

    /// Join the page registry of an MTTCG run (see [`crate::mttcg`]).
    pub(crate) fn link_shared(&mut self, link: crate::mttcg::Link) {
        let ctx = self.ctx();
        ctx.tbs.track_dropped = true;
        ctx.shared = Some(link);
    }

    /// MTTCG bookkeeping at a block boundary: flush the TLB if a page got code in another
    /// engine, invalidate what other vCPUs stored over, and tell the registry which
    /// pages lost their last TB here.
    fn sync_shared(&mut self, cpu: &mut C) {
        let ctx = self.ctx();
        let Some(link) = ctx.shared.as_mut() else {
            return;
        };
        let (flush, ranges) = link.take_work();
        if flush {
            cpu.header_mut().tlb_flush_all();
        }
        for (page, lo, hi) in ranges {
            let (n, _) = ctx.tbs.invalidate_range(page, lo, hi, crate::tb::NO_TB);
            ctx.stats.tbs_invalidated += n;
        }
        crate::mttcg::drain_dropped(&mut ctx.tbs, ctx.shared.as_ref());
    }

    /// Run several vCPUs until the VM asks to exit; returns that code. One vCPU runs
    /// exactly like [`Engine::run`]. With more, they take turns on this thread
    /// (see [`crate::sched`]): a vCPU runs until its time slice ends or it halts in
    /// `wfi`; a halted vCPU is skipped until it has a wake-up; when all are halted the
    /// thread sleeps in [`VmControl::wait`]. They share the TB cache; each has its own
    /// jump cache and TLB.
    pub fn run_all(&mut self, cpus: &mut [Box<C>]) -> ExitCode {
        self.debug_set_cpus(cpus);
        let code = match cpus {
            [] => self.vm.exit_requested().unwrap_or(ExitCode::Exit(0)),
            [one] => self.run(one),
            _ => crate::sched::run_round_robin(self, cpus),
        };
        self.debug_set_cpus(&mut []);
        code
    }

    /// The dispatcher loop for one vCPU. Without `preempt` it runs until the VM exits
    /// (halts sleep in place); with it, it also returns when the vCPU halts or when
    /// the flag is found set at an exit request (end of the time slice).
    ///
    /// A slice that ends where the vCPU is not [`GuestCpu::preemptible`] (firmware) is
    /// extended, up to [`FIRMWARE_SLICES`] times: OpenSBI 1.1 publishes a started hart's
    /// state before its start address, and a switch between the two (most likely while
    /// that code was still being translated) sent the spinning hart to the stale address
    /// ("CPU1: failed to come online" in ~5% of `-smp 2` Linux boots).
    pub(crate) fn run_loop(&mut self, cpu_ptr: *mut C, preempt: Option<&AtomicBool>) -> Stop {
        let mut extended = 0;
        let kicks = VmControl::kicks_here();
        loop {
            if let Some(code) = self.vm.exit_requested() {
                return Stop::Exit(code);
            }
            {
                // SAFETY: no TB is running; this reference ends before the next one does.
                let cpu = unsafe { &mut *cpu_ptr };
                if cpu.header().exit_request.load(Ordering::Acquire) != 0 {
                    if let Err(code) = self.serve_exit_request(cpu) {
                        return Stop::Exit(code);
                    }
                    if let Some(p) = preempt {
                        // An interrupt this vCPU raised during its turn (an IPI) hands over
                        // at once: its sender is often about to spin until the target has
                        // acted (OpenSBI's remote fences do, with AMOs and no `pause`, in
                        // M-mode). QEMU's round robin hands over on any interrupt; one from
                        // a timer could then split firmware's critical sections again.
                        let kicked = VmControl::kicks_here() != kicks;
                        if p.swap(false, Ordering::AcqRel) || kicked {
                            if kicked || cpu.preemptible() || extended >= FIRMWARE_SLICES {
                                self.pending = None;
                                return Stop::Preempted;
                            }
                            extended += 1;
                        }
                    }
                }
                if self.handle_flush(cpu) {
                    // The guest is spin-waiting (see `flush::YIELD`): let the other vCPUs
                    // run, here in turns, or else on this host core (a lock holder, or
                    // the compile threads, may be waiting for it).
                    self.ctx().stats.yields += 1;
                    if preempt.is_some() {
                        self.pending = None;
                        return Stop::Preempted;
                    }
                    std::thread::yield_now();
                }
            }
            let Some(id) = self.find_tb(cpu_ptr) else {
                continue;
            };
            self.link_pending(cpu_ptr, id);
            let r = self.exec(cpu_ptr, id);
            if self.handle_ret(cpu_ptr, r) {
                if preempt.is_some() {
                    self.pending = None;
                    return Stop::Halted;
                }
                self.halt(cpu_ptr);
            }
        }
    }

    /// `cpu`'s exit request was set: clear it and act on what may have set it (MTTCG
    /// registry work, a debugger, TLB flush requests, an interrupt). `Err` when the VM is
    /// to exit. A yield request stays in `flush_request` for the caller.
    fn serve_exit_request(&mut self, cpu: &mut C) -> Result<(), ExitCode> {
        cpu.header().exit_request.store(0, Ordering::Release);
        // Look again: a stop request sets its flag before the kick we just cleared,
        // possibly after the caller's check. Running on would leave a guest spinning
        // inside one block (or a chained loop) with nothing left to stop it (riscv-tests'
        // final `tohost` loop hung ~1 run in 300).
        if let Some(code) = self.vm.exit_requested() {
            return Err(code);
        }
        self.sync_shared(cpu);
        self.debug_poll(cpu);
        cpu.header_mut().flush_request |= self.handle_flush(cpu) as u32 * flush::YIELD;
        if cpu.take_interrupt() {
            self.wfi_spins = 0;
            self.log_int("interrupt", cpu);
        }
        Ok(())
    }

    /// Make `cpu` the vCPU this engine runs next: swap in its jump cache (cleared if
    /// TBs were invalidated since it last ran) and flush its TLB if a page got code
    /// meanwhile. `state` is the vCPU's saved scheduling state.
    pub(crate) fn switch_in(&mut self, cpu: &mut C, state: &mut VcpuState) {
        self.ctx().stats.vcpu_switches += 1;
        let me = cpu as *const C as usize;
        // Cross-page links made under another address space (see `cut_local_links`);
        // another vCPU in the same one (Linux's kernel threads, all in one) keeps them.
        let other = self.last_vcpu.replace(me).is_some_and(|v| v != me);
        let regime = cpu.translation_regime();
        let cut = other && (regime.is_none() || regime != self.links_regime);
        let ctx = self.ctx();
        ctx.tbs.swap_jump_cache(&mut state.jc);
        if cut {
            ctx.tbs.cut_local_links();
        }
        self.mark_code_pages(cpu, &mut state.code_gen);
        self.pending = None;
    }

    /// Pages that got code since `cpu` last ran here (`seen` is the `code_gen` it saw):
    /// its TLB write entries for them need the CODE flag (a store there must
    /// invalidate). The recent ones are marked where they are mapped; after more, the
    /// whole TLB goes.
    fn mark_code_pages(&mut self, cpu: &mut C, seen: &mut u64) {
        let ctx = self.ctx();
        let missed = ctx.code_gen.saturating_sub(*seen);
        if missed > 0 {
            *seen = ctx.code_gen;
            if missed <= ctx.code_log.len() as u64 {
                // On the stack: under a shared engine this runs at dispatcher steps, not
                // just at vCPU switches (the log holds at most `CODE_LOG` pages).
                let skip = ctx.code_log.len() - missed as usize;
                let mut buf = [0u64; CODE_LOG];
                let n = missed as usize;
                for (b, &p) in buf.iter_mut().zip(ctx.code_log.iter().skip(skip)) {
                    *b = p;
                }
                let pages = &mut buf[..n];
                pages.sort_unstable();
                cpu.header_mut().tlb_mark_code_pages(pages);
            } else {
                cpu.header_mut().tlb_flush_all();
            }
        }
    }

    /// Join the vCPU threads of a shared engine (see [`crate::shared`]).
    pub(crate) fn mt_attach(&mut self, sync: Arc<crate::shared::Threads>) {
        self.ctx().mt = Some(sync);
    }

    /// Start a dispatcher step of `cpu` on a shared engine (lock held): swap in its jump
    /// cache, fetch TLB and dispatch state, and mark the pages that got code meanwhile in
    /// its TLB. [`Engine::mt_leave`] takes them back. Returns whether a full flush
    /// happened since its last step: the exit value of its last TB run may then name a
    /// chain slot that is gone (see [`mt_forget`]).
    pub(crate) fn mt_enter(&mut self, cpu: *mut C, st: &mut VcpuState) -> bool {
        // SAFETY: no TB runs on this CPU (its thread is here); the reference ends here.
        let cpu = unsafe { &mut *cpu };
        let ctx = self.ctx();
        ctx.tbs.swap_jump_cache(&mut st.jc);
        let flushes = ctx.stats.full_flushes;
        self.mark_code_pages(cpu, &mut st.code_gen);
        let flushed = st.flushes != flushes;
        if flushed {
            // The link's slot and the hot TB's id are gone with the flush.
            st.flushes = flushes;
            st.pending = None;
            st.hot = None;
        }
        self.pending = st.pending.take();
        self.hot = st.hot.take();
        self.wfi_spins = st.wfi_spins;
        flushed
    }

    /// End a step begun by [`Engine::mt_enter`].
    pub(crate) fn mt_leave(&mut self, st: &mut VcpuState) {
        let ctx = self.ctx();
        ctx.tbs.swap_jump_cache(&mut st.jc);
        st.code_gen = ctx.code_gen;
        st.flushes = ctx.stats.full_flushes;
        st.pending = self.pending.take();
        st.hot = self.hot.take();
        st.wfi_spins = self.wfi_spins;
    }

    /// One dispatcher step of `cpu` on a shared engine, between [`Engine::mt_enter`] and
    /// [`Engine::mt_leave`] (lock held): act on the last TB's exit value `last`, then as
    /// one turn of [`Engine::run_loop`]'s loop up to running the next TB, which the
    /// caller does without the lock (interpreted TBs run here).
    pub(crate) fn mt_step(&mut self, cpu_ptr: *mut C, last: Option<u64>) -> MtStep {
        if let Some(r) = last {
            if self.handle_ret(cpu_ptr, r) {
                return MtStep::Halt;
            }
        }
        // A flush another vCPU asked for, once every vCPU is out of generated code (after
        // the exit value above: it may name a chain slot, which the flush frees).
        let wanted = self.ctx().mt.as_ref().is_some_and(|s| s.flush_wanted() && s.quiet());
        if wanted && self.full_flush() {
            if let Some(sync) = self.ctx().mt.as_ref() {
                sync.flushed();
            }
        }
        if self.vm.exit_requested().is_some() {
            return MtStep::Exit;
        }
        {
            // SAFETY: no TB is running; this reference ends before the next one does.
            let cpu = unsafe { &mut *cpu_ptr };
            if cpu.header().exit_request.load(Ordering::Acquire) != 0 && self.serve_exit_request(cpu).is_err() {
                return MtStep::Exit;
            }
            if self.handle_flush(cpu) {
                self.ctx().stats.yields += 1;
                return MtStep::Yield;
            }
        }
        let Some(id) = self.find_tb(cpu_ptr) else {
            return MtStep::Again;
        };
        self.link_pending(cpu_ptr, id);
        match self.prepare_native(cpu_ptr, id) {
            Some(run) => MtStep::Run(run),
            None => MtStep::Ran(self.exec(cpu_ptr, id)),
        }
    }

    /// Undo [`Engine::switch_in`]: take the jump cache back into `state`.
    pub(crate) fn switch_out(&mut self, cpu: &C, state: &mut VcpuState) {
        self.links_regime = cpu.translation_regime();
        let ctx = self.ctx();
        ctx.tbs.swap_jump_cache(&mut state.jc);
        state.code_gen = ctx.code_gen;
        self.pending = None;
    }

    pub(crate) fn vm(&self) -> &Arc<VmControl> {
        &self.vm
    }

    pub(crate) fn add_insns(&mut self, n: u64) {
        self.ctx().stats.insns += n;
    }

    /// The thread slept for `d` with nothing to run (see [`Stats::idle_ns`]).
    pub(crate) fn add_idle(&mut self, d: Duration) {
        self.ctx().stats.idle_ns += u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    }

    /// A vCPU woke from `wfi`: take the interrupt that woke it.
    pub(crate) fn wake(&mut self, cpu: &mut C) {
        if cpu.take_interrupt() {
            self.log_int("interrupt", cpu);
        }
    }

    /// Start timing a phase for the `-d stats` counters: `None`, with no clock read, when
    /// [`JitOptions::timing`] is off (a read costs ~60 ns in a VM, ~6 per translation).
    fn clock(&self) -> Option<Instant> {
        self.opts.timing.then(Instant::now)
    }

    fn log_int(&self, what: &str, cpu: &C) {
        let h = cpu.header();
        log::info!(target: "int", "{what}: cause={:#x} tval={:#x} -> pc={:#x}", h.cause, h.tval, h.pc);
    }

    /// Act on the target's flush requests; returns whether it asked to yield.
    fn handle_flush(&mut self, cpu: &mut C) -> bool {
        let fr = std::mem::take(&mut cpu.header_mut().flush_request);
        if fr & flush::TLB_RESIZE != 0 {
            cpu.header_mut().tlb_resize();
            self.ctx().stats.tlb_grows += 1;
        }
        if fr & flush::TLB_ALL != 0 {
            cpu.header_mut().tlb_flush_all();
            self.ctx().tbs.on_tlb_flush();
        } else if fr & flush::TLB_NONGLOBAL != 0 {
            cpu.header_mut().tlb_flush_nonglobal();
            self.ctx().tbs.on_tlb_flush_nonglobal();
        }
        while let Some(a) = cpu.take_flush_page() {
            if fr & flush::TLB_ALL == 0 {
                cpu.header_mut().tlb_flush_page(a);
                self.ctx().tbs.on_tlb_flush_page(a);
            }
        }
        // flush::CODE needs nothing more: stores to code pages already invalidate.
        fr & flush::YIELD != 0
    }

    fn raise(&mut self, cpu: &mut C, cause: u64, tval: u64) {
        if cause == debug::DEBUG_CAUSE {
            return self.debug_trap(cpu);
        }
        let h = cpu.header_mut();
        h.cause = cause;
        h.tval = tval;
        self.ctx().stats.exits.exception += 1;
        self.pending = None;
        self.log_int("exception", cpu);
        cpu.take_exception();
    }

    /// Find or make the TB for the current pc and flags, compiling it if it just got hot.
    /// `None` if fetching raised an exception (already taken) or translation failed (the
    /// VM was asked to exit).
    fn find_tb(&mut self, cpu_ptr: *mut C) -> Option<TbId> {
        while let Some((p, d)) = self.bg.as_mut().and_then(Bg::poll) {
            if self.install_bg(p, d).is_err() {
                self.full_flush();
                break;
            }
        }
        if let Some(hot) = self.hot.take() {
            if self.tier_up_baseline(cpu_ptr, hot).is_err() {
                self.full_flush();
            }
        }
        let id = self.find_tb_any(cpu_ptr)?;
        if self.opts.tier != Tier::Tiered {
            return Some(id);
        }
        match self.tier_up(cpu_ptr, id) {
            Ok(()) => Some(id),
            Err(()) => {
                // The code cache is full: start over; the block is translated afresh
                // (interpreted, cold) below.
                self.full_flush();
                self.find_tb_any(cpu_ptr)
            }
        }
    }

    /// Heat an interpreted TB and compile it at the threshold. `Err(())`: the code cache
    /// is full (the TB is left interpreted).
    fn tier_up(&mut self, cpu_ptr: *mut C, id: TbId) -> Result<(), ()> {
        let thresh = self.opts.thresh;
        let background = self.bg.is_some() && !self.opts.single_step;
        let Some(tb) = self.ctx().tbs.get_mut(id) else {
            return Ok(());
        };
        let Exec::Interp(block, _) = &tb.exec else {
            return Ok(());
        };
        tb.heat = tb.heat.saturating_add(crate::baseline::entry_weight(block.ninsns));
        if tb.heat < thresh || tb.heat == u32::MAX {
            return Ok(());
        }
        let (block, mmu, flags) = (block.clone(), tb.mmu, tb.flags);
        if background {
            // Submitted once: the TB stays interpreted until `install_bg` (heat saturated).
            tb.heat = u32::MAX;
        }
        // SAFETY: no TB is running; the dispatcher owns the CPU here (shared use only).
        let direct = self.direct_for(unsafe { &*cpu_ptr }, flags);
        let members = self.region(cpu_ptr, id, &block);
        if background && self.submit_bg(block.clone(), members.clone(), id, mmu, direct) {
            return Ok(());
        }
        if !self.compile_and_promote(&block, &members, id, mmu, direct)? {
            // Compile error (logged): never try again.
            if let Some(tb) = self.ctx().tbs.get_mut(id) {
                tb.heat = u32::MAX;
            }
        }
        Ok(())
    }

    /// A baseline TB's entry counter ran out: recompile it with Cranelift (in the
    /// background when there is a worker; it keeps running baseline code meanwhile).
    /// `Err(())`: the code cache is full.
    fn tier_up_baseline(&mut self, cpu_ptr: *mut C, id: TbId) -> Result<(), ()> {
        let background = self.bg.is_some() && !self.opts.single_step;
        let bg_busy = self.bg.as_ref().is_some_and(Bg::busy);
        let Some(tb) = self.ctx().tbs.get_mut(id) else {
            return Ok(());
        };
        let Some(bl) = tb.baseline.as_mut() else {
            return Ok(());
        };
        if background {
            // Chained baseline code may not come back to the dispatcher for a long time,
            // and only the dispatcher installs finished compiles: until this block's
            // Cranelift code is in, its counter sends it back every RECHECK entries.
            bl.counter.store(RECHECK, Ordering::Relaxed);
            if bl.inflight.is_some() {
                if bg_busy {
                    return Ok(());
                }
                // Nothing is in flight any more (the worker is gone): start over, which
                // compiles in place if it cannot be submitted.
                bl.inflight = None;
            }
        }
        let (mmu, flags) = (tb.mmu, tb.flags);
        // SAFETY: no TB is running; the dispatcher owns the CPU here (shared use only).
        let direct = self.direct_for(unsafe { &*cpu_ptr }, flags);
        let Some(block) = self.retranslate(cpu_ptr, id) else {
            // Not reproducible (a debugger's breakpoint shortened it): stays baseline.
            if let Some(bl) = self.ctx().tbs.get_mut(id).and_then(|t| t.baseline.as_mut()) {
                bl.counter.store(u32::MAX, Ordering::Relaxed);
            }
            return Ok(());
        };
        let block = Arc::new(block);
        let members = self.region(cpu_ptr, id, &block);
        if background {
            if let Some(bl) = self.ctx().tbs.get_mut(id).and_then(|t| t.baseline.as_mut()) {
                bl.inflight = Some(block.clone());
            }
            if self.submit_bg(block.clone(), members.clone(), id, mmu, direct) {
                return Ok(());
            }
        }
        if !self.compile_and_promote(&block, &members, id, mmu, direct)? {
            // Compile error (logged): it stays baseline; stop the re-checks.
            if let Some(bl) = self.ctx().tbs.get_mut(id).and_then(|t| t.baseline.as_mut()) {
                bl.counter.store(u32::MAX, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// The loop region of TB `id` (whose block is `head`) for its Cranelift compile: the
    /// blocks on its page that its direct gotos reach and that lead back to it,
    /// translated with its flags. Compiled into one function with it, a loop through
    /// several blocks keeps guest registers in host registers and jumps between its
    /// blocks instead of chaining through their prologues and epilogues. The guest code
    /// they span becomes the TB's `extent`, so a write there invalidates it. Empty when
    /// the TB heads no such loop.
    fn region(&mut self, cpu_ptr: *mut C, id: TbId, head: &Block) -> Vec<Arc<Block>> {
        if !self.opts.regions || self.opts.single_step || self.dbg.is_some() || self.native.is_none() {
            return Vec::new();
        }
        let Some(tb) = self.ctx().tbs.get(id) else {
            return Vec::new();
        };
        let (flags, ppage, page, born, phys) =
            (tb.flags, tb.phys_pc & PAGE_MASK, head.pc & PAGE_MASK, tb.born, tb.phys_pc);
        // SAFETY: no TB is running; the dispatcher owns the CPU here (shared use only).
        let cpu = unsafe { &*cpu_ptr };
        // Only for a block that got hot fast, i.e. in a loop running now: on a Linux boot
        // the median block needs ~78 M guest instructions to reach the threshold, and
        // regions for all of them cost the compile thread more than they gained (the loops
        // of the compute benchmarks get there within ~1 M). (Under round-robin vCPUs
        // `born` may be another vCPU's count: only the heuristic suffers.)
        let age = cpu.header().icount.saturating_sub(born);
        if age > u64::from(self.opts.thresh.max(1)) * REGION_DENSITY || self.in_region.contains(&phys) {
            return Vec::new();
        }
        let mem = self.ctx().mem.clone();
        let Some((p0, left)) = mem.ram_ptr(ppage) else {
            return Vec::new();
        };
        let avail = left.min(PAGE_SIZE);
        let t0 = self.clock();
        let mut nodes: Vec<Block> = Vec::new();
        // Offsets in the page of the code the region spans.
        let (mut lo, mut hi) = (head.pc - page, head.pc - page);
        let mut seen = vec![head.pc];
        let mut queue: std::collections::VecDeque<u64> = head.goto_targets().collect();
        let mut insns = head.ninsns;
        let thresh = self.opts.thresh.max(1);
        // The first dispatch met (the head's or a member's) queues where it may go.
        let mut dispatch_seen = head.dispatch;
        if dispatch_seen {
            queue.extend(self.dispatch_targets(ppage, page, flags));
        }
        while let Some(t) = queue.pop_front() {
            if nodes.len() >= REGION_BLOCKS || insns >= REGION_INSNS {
                break;
            }
            if t & PAGE_MASK != page || seen.contains(&t) {
                continue;
            }
            seen.push(t);
            let off = t - page;
            if off >= avail {
                continue;
            }
            // Only this page's bytes: a block that would need the next page stays out.
            // SAFETY: `avail <= left` bytes of RAM from `p0`, and `off < avail`.
            let (mut block, outside) =
                unsafe { translate_from_ram(cpu, t, flags, MAX_INSNS, (p0.add(off as usize), avail - off, off), None) };
            if outside || block.ninsns == 0 || block.validate().is_err() {
                continue;
            }
            kite_ir::opt::fold_constants(&mut block);
            insns += block.ninsns;
            queue.extend(block.goto_targets());
            if block.dispatch && !dispatch_seen {
                dispatch_seen = true;
                queue.extend(self.dispatch_targets(ppage, page, flags));
            }
            nodes.push(block);
        }
        // An inner loop that is one block (it jumps to itself) and runs many times per
        // run of the code around it is best compiled alone: the outer loop's blocks add
        // little but lengthen every promoted register's live range, and the register
        // allocator then spilled the inner loop's own values (`par` ran ~11% slower than
        // without regions). Blocks entered often enough per run of the head stay: a
        // quicksort's partition loop, whose inner loops run a few times per pass, gained
        // ~9% from its region.
        if head.goto_targets().any(|t| t == head.pc) {
            let tbs = &self.ctx().tbs;
            nodes.retain(|n| tbs.entries(ppage + (n.pc - page), n.pc, flags, thresh) >= thresh / REGION_COLD);
        }
        // Keep the blocks that lead back to the head (the loop), not its exits.
        let mut back = vec![head.pc];
        let mut keep = vec![false; nodes.len()];
        loop {
            let mut grew = false;
            for (k, n) in nodes.iter().enumerate() {
                // (A dispatch may go to any block the region keeps: one leads back if the
                // head does.)
                if !keep[k] && (n.goto_targets().any(|t| back.contains(&t)) || n.dispatch) {
                    keep[k] = true;
                    back.push(n.pc);
                    grew = true;
                }
            }
            if !grew {
                break;
            }
        }
        let members: Vec<Arc<Block>> =
            nodes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(b, _)| Arc::new(b)).collect();
        for m in &members {
            lo = lo.min(m.pc - page);
            hi = hi.max(m.pc - page + u64::from(m.size));
        }
        let ctx = self.ctx();
        ctx.stats.translate_ns_total += ns_since(t0);
        if members.is_empty() {
            return members;
        }
        if let Some(tb) = ctx.tbs.get_mut(id) {
            // Both within the page, or just past it for a member crossing its end.
            tb.extent = Some((lo as u16, hi as u16));
        }
        ctx.stats.regions += 1;
        ctx.stats.region_blocks += members.len() as u64;
        if self.in_region.len() > IN_REGION_MAX {
            self.in_region.clear();
        }
        let pcs = std::iter::once(head.pc).chain(members.iter().map(|m| m.pc));
        self.in_region.extend(pcs.map(|pc| ppage + (pc - page)));
        members
    }

    /// Where a region's dispatches (`Block::dispatch`: plain indirect jumps, not calls or
    /// returns) may go: the TBs on physical page `ppage` (virtual page `page`, `flags`)
    /// entered often enough, by the rule for a loop's blocks (`REGION_COLD`): a bytecode
    /// interpreter's cases, which jump back to its dispatch. The dispatch compares its
    /// target with the region's blocks (`codegen`'s indirect exit) before it leaves. (With
    /// returns too, `calls` ran 30% slower: a recursive function's blocks became a
    /// region, and every return ran a compare chain before its jump-cache probe.)
    fn dispatch_targets(&mut self, ppage: u64, page: u64, flags: u32) -> Vec<u64> {
        let thresh = self.opts.thresh.max(1);
        let tbs = &self.ctx().tbs;
        tbs.on_page(ppage)
            .filter(|t| t.flags == flags && t.vpc & PAGE_MASK == page)
            .filter(|t| tbs.entries(t.phys_pc, t.vpc, flags, thresh) >= thresh / REGION_COLD)
            .map(|t| t.vpc)
            .take(REGION_BLOCKS)
            .collect()
    }

    /// Translate TB `id`'s guest code again (for its Cranelift recompile). The code bytes
    /// are unchanged while the TB exists (a store to them invalidates it); `None` if the
    /// result is not the same block (e.g. a breakpoint limited the original).
    fn retranslate(&mut self, cpu_ptr: *mut C, id: TbId) -> Option<Block> {
        let t0 = self.clock();
        let tb = self.ctx().tbs.get(id)?;
        let (pc, flags, phys, page2, size) = (tb.vpc, tb.flags, tb.phys_pc, tb.phys_page2, tb.size);
        let ninsns = tb.baseline.as_ref()?.ninsns;
        let mem = self.ctx().mem.clone();
        let (p0, left0) = mem.ram_ptr(phys)?;
        let avail0 = left0.min(PAGE_SIZE - (pc & !PAGE_MASK));
        let second = match page2 {
            Some(p) => Some(mem.ram_ptr(p).map(|(p, left)| (p as *const u8, left))?),
            None => None,
        };
        // SAFETY: no TB is running; the dispatcher owns the CPU here (shared use only).
        let cpu = unsafe { &*cpu_ptr };
        // The page's bytes before pc, if they are the same RAM (the frontend may look back).
        let before = ram_before(&mem, pc, phys, p0);
        // SAFETY: `ram_ptr` gave `left0` bytes at `p0` (and the `before` bytes below it, the
        // same mapping from the page start) and `left` at the second page's pointer.
        let (mut block, _) = unsafe { translate_from_ram(cpu, pc, flags, ninsns, (p0, avail0, before), second) };
        let stats = &mut self.ctx().stats;
        stats.translate_ns_total += ns_since(t0);
        let same = block.size == size && block.ninsns == ninsns && block.validate().is_ok();
        // After validation: the pass indexes temps without checks.
        same.then(|| {
            kite_ir::opt::fold_constants(&mut block);
            block
        })
    }

    /// Compile `block` (TB `id`) with Cranelift here and now and install it. `Ok(false)`:
    /// Cranelift failed (a Kite bug, logged, counted); `Err(())`: the code cache is full.
    fn compile_and_promote(
        &mut self,
        block: &Block,
        members: &[Arc<Block>],
        id: TbId,
        mmu: usize,
        direct: Option<Direct>,
    ) -> Result<bool, ()> {
        let Some((code, slots)) = self.compile_native(block, members, id, mmu, direct)? else {
            self.ctx().stats.compile_fallbacks += 1;
            return Ok(false);
        };
        let ctx = self.ctx();
        ctx.tbs.promote(id, code, slots);
        ctx.stats.tbs_promoted += 1;
        ctx.stats.tbs_compiled += 1;
        Ok(true)
    }

    /// Send `block` (TB `id`) and its region `members` to the background compiler;
    /// `false` if it is gone.
    fn submit_bg(
        &mut self,
        block: Arc<Block>,
        members: Vec<Arc<Block>>,
        id: TbId,
        mmu: usize,
        direct: Option<Direct>,
    ) -> bool {
        let (slow, slow_keep, jump_cache) = self.spec_consts();
        let (slots, addrs) = chain_slots(&block, &members, id);
        let job = Job { seq: 0, block, members, id, mmu, slots: addrs, slow, slow_keep, jump_cache, direct };
        match self.bg.as_mut() {
            Some(bg) => bg.submit(job, slots),
            None => false,
        }
    }

    /// Install code from the background compiler if its TB still holds the block that was
    /// sent. `Err(())`: the code cache is full.
    fn install_bg(&mut self, p: Pending, d: Done) -> Result<(), ()> {
        let ctx = self.ctx();
        ctx.stats.compile_ns_total += d.ns;
        let current = ctx.tbs.get(p.id).is_some_and(|tb| match (&tb.exec, &tb.baseline) {
            (Exec::Interp(b, _), _) => Arc::ptr_eq(b, &p.block),
            (Exec::Native(_), Some(bl)) => bl.inflight.as_ref().is_some_and(|b| Arc::ptr_eq(b, &p.block)),
            _ => false,
        });
        if !current {
            return Ok(());
        }
        let code = match d.code {
            Ok(c) => c,
            Err(e) => {
                log::error!("Cranelift failed on the block at {:#x} (a Kite bug): {e}\n{}", p.block.pc, p.block);
                ctx.stats.compile_fallbacks += 1;
                // A baseline block stays baseline: stop its re-checks.
                if let Some(bl) = ctx.tbs.get_mut(p.id).and_then(|t| t.baseline.as_mut()) {
                    bl.counter.store(u32::MAX, Ordering::Relaxed);
                    bl.inflight = None;
                }
                return Ok(());
            }
        };
        let Some(n) = self.native.as_mut() else {
            return Ok(());
        };
        match n.cache.add(&code) {
            Ok(Some(ptr)) => {
                crate::perfmap::record(ptr, code.len(), "cl", p.block.pc);
                let ctx = self.ctx();
                ctx.tbs.promote(p.id, ptr, p.slots);
                ctx.stats.tbs_promoted += 1;
                ctx.stats.tbs_compiled += 1;
                Ok(())
            }
            Ok(None) => Err(()),
            Err(e) => {
                log::error!("code cache: {e}");
                Ok(())
            }
        }
    }

    /// Engine constants baked into generated code: the slow path (SystemV and
    /// registers-preserving), whether indirect exits probe the jump cache. (Its context
    /// travels in the header, `CpuHeader::slow_ctx`.)
    fn spec_consts(&self) -> (u64, u64, bool) {
        let keep = self.native.as_ref().map_or(0, |n| n.slow_keep);
        (slow_fn::<C>(), keep, !self.opts.single_step)
    }

    /// [`TbSpec::direct`] for a TB translated under `flags`: the RAM window, when the
    /// vCPU's data accesses are identity-mapped under them and no debugger is attached
    /// (its watchpoints are flags on the TLB's entries, which direct loads do not read).
    fn direct_for(&self, cpu: &C, flags: u32) -> Option<Direct> {
        self.window.filter(|_| self.dbg.is_none() && cpu.identity_mapped(flags))
    }

    /// The physical address of instruction fetch `va` (through the fetch TLB, filling it
    /// for whole, cacheable RAM pages after a page walk).
    fn code_phys(&mut self, cpu: &mut C, va: u64, flags: u32, mmu: usize) -> Result<u64, Fault> {
        let vpage = va & PAGE_MASK;
        let ctx = self.ctx();
        if let Some(ppage) = ctx.tbs.itlb_probe(vpage, flags) {
            ctx.stats.itlb_hits += 1;
            return Ok(ppage | (va & !PAGE_MASK));
        }
        ctx.stats.itlb_misses += 1;
        // SAFETY: the context (and so the map its `Arc` holds) outlives this call; no
        // clone: an atomic count shared by every vCPU thread would bounce between cores.
        let mem: &PhysMap = unsafe { &*Arc::as_ptr(&ctx.mem) };
        let p = cpu.translate_addr(va, Access::Exec, mmu, mem)?;
        let ppage = p & PAGE_MASK;
        if let Some(Hit::Ram { ram, .. }) = mem.lookup(p) {
            // Only whole RAM pages (a region ending mid-page must keep faulting beyond it).
            let whole = ram.base() <= ppage && ppage + PAGE_SIZE <= ram.base() + ram.size();
            if whole && cpu.tlb_cacheable(p, mmu) {
                let global = cpu.tlb_global();
                self.ctx().tbs.itlb_set(vpage, flags, ppage, global);
            }
        }
        Ok(p)
    }

    /// [`Engine::find_tb`] without tier-up.
    fn find_tb_any(&mut self, cpu_ptr: *mut C) -> Option<TbId> {
        // SAFETY: no TB is running.
        let cpu = unsafe { &mut *cpu_ptr };
        let pc = cpu.header().pc;
        let flags = cpu.tb_flags();
        let ctx = self.ctx();
        if let Some(id) = ctx.tbs.jc_probe(pc, flags) {
            ctx.stats.jump_cache_hits += 1;
            return Some(id);
        }
        ctx.stats.jump_cache_misses += 1;
        let mmu = cpu.mmu_index(flags).min(MMU_MODES - 1);
        // SAFETY: as in `code_phys`.
        let mem: &PhysMap = unsafe { &*Arc::as_ptr(&ctx.mem) };
        let phys = match self.code_phys(cpu, pc, flags, mmu) {
            Ok(p) => p,
            Err(f) => {
                self.raise(cpu, f.cause, f.tval);
                return None;
            }
        };
        if mem.ram_ptr(phys).is_none() {
            kite_core::guest_error!("instruction fetch from non-RAM address {phys:#x} (pc {pc:#x})");
            let f = cpu.fault_for(FaultKind::AccessFault, Access::Exec, pc);
            self.raise(cpu, f.cause, f.tval);
            return None;
        }
        if let Some(id) = self.ctx().tbs.lookup(phys, pc, flags) {
            let page2 = self.ctx().tbs.get(id).and_then(|t| t.phys_page2);
            let ok = match page2 {
                None => true,
                Some(p2) => {
                    let next = (pc & PAGE_MASK).wrapping_add(PAGE_SIZE);
                    matches!(self.code_phys(cpu, next, flags, mmu), Ok(p) if p & PAGE_MASK == p2)
                }
            };
            if ok {
                self.ctx().tbs.jc_set(pc, flags, id);
                return Some(id);
            }
            // The second page is mapped differently now: drop that TB.
            self.ctx().tbs.invalidate_one(id);
        }
        self.translate(cpu, pc, flags, phys, mmu, mem, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn translate(
        &mut self,
        cpu: &mut C,
        pc: u64,
        flags: u32,
        phys: u64,
        mmu: usize,
        mem: &PhysMap,
        may_flush: bool,
    ) -> Option<TbId> {
        if let Some(r) = self.debug_bp_tb(cpu, pc, flags, phys, mmu) {
            return r;
        }
        let t0 = self.clock();
        let max = if self.opts.single_step { 1 } else { MAX_INSNS };
        let limits = TbLimits { max_insns: self.debug_max_insns(cpu, pc, flags, mmu, max) };
        // The code bytes: the rest of pc's page, and (only if an instruction crosses into
        // it) the start of the next page.
        let (p0, left0) = mem.ram_ptr(phys)?;
        let avail0 = left0.min(PAGE_SIZE - (pc & !PAGE_MASK));
        let page1 = (pc & PAGE_MASK).wrapping_add(PAGE_SIZE);
        // The second page: not looked at yet, or its mapping (or fetch fault).
        let mut second: Option<Result<(*const u8, u64, u64), Fault>> = None;
        // Bytes of pc's page readable below `p0`, looked up only if the frontend reads code
        // before pc (a spin-wait loop's head).
        let mut below: Option<u64> = None;
        let mut block;
        loop {
            let mut wants_second = false;
            let sec = second;
            let access_fault = |a: u64| cpu.fault_for(FaultKind::AccessFault, Access::Exec, a);
            let mut byte = |a: u64| -> Result<u8, Fault> {
                let off = a.wrapping_sub(pc);
                if off < avail0 {
                    // SAFETY: `off < avail0 <= left0` bytes of RAM from `p0`.
                    return Ok(unsafe { p0.add(off as usize).read() });
                }
                let back = pc.wrapping_sub(a);
                if back != 0 && back <= pc & !PAGE_MASK {
                    if back > *below.get_or_insert_with(|| ram_before(mem, pc, phys, p0)) {
                        return Err(access_fault(a));
                    }
                    // SAFETY: `ram_before` found `back` bytes below `p0` in the same mapping.
                    return Ok(unsafe { p0.sub(back as usize).read() });
                }
                let off1 = a.wrapping_sub(page1);
                if off1 >= PAGE_SIZE {
                    return Err(access_fault(a));
                }
                match sec {
                    None => {
                        // Translate again once the second page has been looked up.
                        wants_second = true;
                        Err(access_fault(a))
                    }
                    Some(Err(f)) => Err(Fault { tval: a, ..f }),
                    // SAFETY: `off1 < left` bytes of RAM from `p`.
                    Some(Ok((p, left, _))) if off1 < left => Ok(unsafe { p.add(off1 as usize).read() }),
                    Some(Ok(_)) => Err(access_fault(a)),
                }
            };
            let mut fetch =
                |a: u64| -> Result<u16, Fault> { Ok(byte(a)? as u16 | (byte(a.wrapping_add(1))? as u16) << 8) };
            let mut b = match self.spare_ir.take() {
                Some(old) => Builder::reuse(pc, old),
                // Room for a typical block (tens of IR instructions per handful of guest ones).
                None => Builder::with_capacity(pc, 96),
            };
            cpu.translate_block(pc, flags, limits, &mut fetch, &mut b);
            block = b.finish();
            if wants_second && second.is_none() {
                self.spare_ir = Some(std::mem::take(&mut block));
                let s = match cpu.translate_addr(page1, Access::Exec, mmu, mem) {
                    Ok(p1) => mem
                        .ram_ptr(p1)
                        .map(|(p, left)| (p as *const u8, left.min(PAGE_SIZE), p1 & PAGE_MASK))
                        .ok_or_else(|| cpu.fault_for(FaultKind::AccessFault, Access::Exec, page1)),
                    Err(f) => Err(f),
                };
                second = Some(s);
                continue;
            }
            break;
        }
        let dt = ns_since(t0);
        let stats = &mut self.ctx().stats;
        stats.translate_ns_total += dt;
        stats.tbs_translated += 1;
        if let Err(e) = block.validate() {
            log::error!("frontend produced an invalid block at pc {pc:#x}: {e}\n{block}");
            self.vm.request_exit(ExitCode::Exit(1));
            return None;
        }
        kite_ir::opt::fold_constants(&mut block);
        // A block that is only the fetch fault of an instruction straddling into an unmapped
        // second page must not be cached: it is keyed by the first page alone, so once the
        // guest maps the second page it would keep raising the stale fault. (A one-instruction
        // block that raises and looked at the second page can only be that fault: the
        // frontend never fetches past an instruction that ends its block.)
        if let Some(Err(f)) = second {
            if block.ninsns == 1 && matches!(block.insts.last(), Some(Inst::Exit(Exit::Raise { .. }))) {
                self.raise(cpu, f.cause, f.tval);
                return None;
            }
        }
        let crosses = (pc & !PAGE_MASK) + block.size as u64 > PAGE_SIZE;
        let page2 = match second {
            Some(Ok((_, _, p1))) if crosses => Some(p1),
            _ => None,
        };
        if log::log_enabled!(target: "in_asm", log::Level::Info) {
            self.log_in_asm(cpu, &block, p0, avail0, second.and_then(Result::ok));
        }
        if log::log_enabled!(target: "op", log::Level::Info) {
            log::info!(target: "op", "{block}");
        }
        match self.install(cpu, block, phys, page2, flags, mmu) {
            Ok(id) => {
                self.ctx().tbs.jc_set(pc, flags, id);
                log::debug!("TB {pc:#x} (phys {phys:#x}) translated in {:.1} us", dt as f64 / 1000.0);
                Some(id)
            }
            Err(()) if may_flush => {
                if !self.full_flush() {
                    return None;
                }
                self.translate(cpu, pc, flags, phys, mmu, mem, false)
            }
            Err(()) => {
                log::error!("TB at {pc:#x} does not fit in an empty code cache");
                self.vm.request_exit(ExitCode::Exit(1));
                None
            }
        }
    }

    fn log_in_asm(&self, cpu: &C, block: &Block, p0: *mut u8, avail0: u64, second: Option<(*const u8, u64, u64)>) {
        let mut bytes = Vec::with_capacity(block.size as usize);
        for i in 0..block.size as u64 {
            let b = if i < avail0 {
                // SAFETY: within the `avail0` RAM bytes from `p0`.
                unsafe { p0.add(i as usize).read() }
            } else {
                match second {
                    // SAFETY: within the `left` RAM bytes from `p`.
                    Some((p, left, _)) if i - avail0 < left => unsafe { p.add((i - avail0) as usize).read() },
                    _ => break,
                }
            };
            bytes.push(b);
        }
        let mut off = 0;
        let mut text = String::new();
        while off < bytes.len() {
            let (s, len) = cpu.disassemble(block.pc.wrapping_add(off as u64), &bytes[off..]);
            text.push_str(&format!("  {:#x}: {s}\n", block.pc.wrapping_add(off as u64)));
            if len == 0 {
                break;
            }
            off += len;
        }
        log::info!(target: "in_asm", "IN: {:#x}\n{text}", block.pc);
    }

    /// Compile `block` (the TB that has or will get id `id`) into the code cache.
    /// `Ok(None)`: Cranelift failed (a Kite bug, logged); `Err(())`: the cache is full.
    fn compile_native(
        &mut self,
        block: &Block,
        members: &[Arc<Block>],
        id: TbId,
        mmu: usize,
        direct: Option<Direct>,
    ) -> Result<Option<Compiled>, ()> {
        let t0 = self.clock();
        let (slow, slow_keep, jump_cache) = self.spec_consts();
        let Some(n) = self.native.as_mut() else {
            return Ok(None);
        };
        let (slots, addrs) = chain_slots(block, members, id);
        let spec = TbSpec { block, members, mmu, tb: id, slots: &addrs, slow, slow_keep, jump_cache, direct };
        // A Cranelift panic is a Kite bug, not the guest's: contain it and fall back
        // to the interpreter for this block.
        let cg = &mut n.cg;
        let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| cg.compile(&spec).map(|c| c.to_vec())))
            .unwrap_or_else(|_| Err("Cranelift panicked".into()));
        let r = match compiled {
            Ok(code) => match n.cache.add(&code) {
                Ok(Some(p)) => {
                    crate::perfmap::record(p, code.len(), "cl", block.pc);
                    Some((p, slots))
                }
                Ok(None) => return Err(()),
                Err(e) => {
                    log::error!("code cache: {e}");
                    None
                }
            },
            Err(e) => {
                log::error!("Cranelift failed on the block at {:#x} (a Kite bug): {e}\n{block}", block.pc);
                None
            }
        };
        self.ctx().stats.compile_ns_total += ns_since(t0);
        Ok(r)
    }

    /// Compile `block` (the TB that will get id `id`) with the baseline compiler. `Ok(None)`:
    /// the block uses something it does not handle (it is interpreted instead); `Err(())`:
    /// the code cache is full.
    fn compile_baseline(
        &mut self,
        block: &Arc<Block>,
        id: TbId,
        mmu: usize,
    ) -> Result<Option<(Compiled, BaselineTb)>, ()> {
        let t0 = self.clock();
        let (slow, slow_keep, jump_cache) = self.spec_consts();
        let Some(n) = self.native.as_mut() else {
            return Ok(None);
        };
        let (slots, addrs) = chain_slots(block, &[], id);
        // (The baseline compiler probes the TLB for every access.)
        let spec =
            TbSpec { block, members: &[], mmu, tb: id, slots: &addrs, slow, slow_keep, jump_cache, direct: None };
        let counter = Box::new(std::sync::atomic::AtomicU32::new(self.opts.thresh));
        let heat = &*counter as *const std::sync::atomic::AtomicU32 as u64;
        let bl = &mut n.bl;
        // An assembler panic is a Kite bug: contain it and interpret the block.
        let compiled = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| bl.compile(&spec, heat))) {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                log::debug!("baseline compiler declined the block at {:#x}: {e}", block.pc);
                false
            }
            Err(_) => {
                log::error!("the baseline compiler panicked on the block at {:#x} (a Kite bug):\n{block}", block.pc);
                false
            }
        };
        let r = if compiled {
            match n.cache.add(n.bl.code()) {
                Ok(Some(p)) => {
                    crate::perfmap::record(p, n.bl.code().len(), "bl", block.pc);
                    for j in n.bl.jumps() {
                        let at = p as u64 + j.rel as u64;
                        let (Some(slot), Some(rel)) =
                            (slots.get(j.slot as usize), n.cache.writable(at as *const u8).filter(|_| at % 4 == 0))
                        else {
                            continue;
                        };
                        let d = DirectJump { rel: rel as usize, next: at + 4, stub: p as u64 + j.stub as u64 };
                        // SAFETY: the emitter checked that `rel` is the 4-byte-aligned
                        // displacement of this slot's exit `jmp`, now in the cache at `p`
                        // (16-byte aligned), and the slot is dropped before the cache is reset.
                        unsafe { slot.set_jump(d) };
                    }
                    Some((p, slots, counter))
                }
                Ok(None) => return Err(()),
                Err(e) => {
                    log::error!("code cache: {e}");
                    None
                }
            }
        } else {
            None
        };
        let stats = &mut self.ctx().stats;
        stats.baseline_ns_total += ns_since(t0);
        stats.tbs_baseline += r.is_some() as u64;
        Ok(r.map(|(p, slots, counter)| ((p, slots), BaselineTb { ninsns: block.ninsns, counter, inflight: None })))
    }

    /// Compile (or keep for the interpreter) `block` and add it to the TB cache.
    /// `Err(())` means the code cache is full.
    pub(crate) fn install(
        &mut self,
        cpu: &mut C,
        block: Block,
        phys: u64,
        page2: Option<u64>,
        flags: u32,
        mmu: usize,
    ) -> Result<TbId, ()> {
        let id = self.ctx().tbs.next_id();
        let mut exec = None;
        let mut slots = TbCache::new_slots(id, 0);
        // Tiered: cold blocks start interpreted (thresh 0 compiles at once, like Jit).
        let compile = match self.opts.tier {
            Tier::Interp => false,
            Tier::Jit => true,
            Tier::Tiered => self.opts.thresh == 0,
        };
        let mut failed = false;
        let mut baseline = None;
        let native_first = compile || (self.opts.tier == Tier::Tiered && self.opts.baseline && self.native.is_some());
        let mut block = block;
        if !native_first {
            // The interpreter keeps this block for the TB's life: drop the room the
            // translator reserved (96 instructions and temps) instead of keeping it per TB.
            block.insts.shrink_to_fit();
            block.temps.shrink_to_fit();
        }
        let block = Arc::new(block);
        if compile {
            let direct = self.direct_for(cpu, flags);
            match self.compile_native(&block, &[], id, mmu, direct)? {
                Some((p, s)) => {
                    exec = Some(Exec::Native(p));
                    slots = s;
                }
                None => failed = true,
            }
        } else if self.opts.tier == Tier::Tiered && self.opts.baseline && self.native.is_some() {
            if let Some(((p, s), b)) = self.compile_baseline(&block, id, mmu)? {
                exec = Some(Exec::Native(p));
                slots = s;
                baseline = Some(b);
            }
        }
        let (vpc, size) = (block.pc, block.size);
        let stats = &mut self.ctx().stats;
        let exec = match exec {
            Some(e) => {
                stats.tbs_compiled += baseline.is_none() as u64;
                if let Ok(b) = Arc::try_unwrap(block) {
                    self.spare_ir = Some(b);
                }
                e
            }
            None => {
                if failed {
                    stats.compile_fallbacks += 1;
                }
                stats.tbs_interp += 1;
                // Pre-decoding costs about as much as a few reference runs; deferring it to
                // a TB's first few runs measured no better on a Linux boot.
                let fast =
                    if self.reference_interp { None } else { FastBlock::decode(&block, std::mem::size_of::<C>()) };
                let stats = &mut self.ctx().stats;
                stats.tbs_fast_interp += fast.is_some() as u64;
                Exec::Interp(block, fast.map(Box::new))
            }
        };
        // A block that failed to compile never tiers up (heat saturated).
        let heat = if failed { u32::MAX } else { 0 };
        let tb = Tb {
            vpc,
            flags,
            mmu,
            phys_pc: phys,
            phys_page2: page2,
            size,
            extent: None,
            born: cpu.header().icount,
            exec,
            slots,
            incoming: Vec::new(),
            heat,
            baseline,
        };
        let pages = [Some(phys & PAGE_MASK), page2];
        let (got, new_page) = self.ctx().tbs.insert(tb);
        debug_assert_eq!(got, id);
        if let Some(link) = self.ctx().shared.as_ref() {
            for p in pages.into_iter().flatten() {
                link.add_page(p);
            }
        }
        if new_page {
            // Existing TLB write entries for the page must learn it holds code now. Here:
            // only the entries that map it get the CODE flag (a full flush cost a boot
            // ~500 refills of the whole working set); other vCPUs flush when they are
            // next scheduled (see `code_gen`).
            let ctx = self.ctx();
            let mem = ctx.mem.clone();
            for p in pages.into_iter().flatten() {
                if let Some((host, _)) = mem.ram_ptr(p) {
                    cpu.header_mut().tlb_mark_code(host as u64);
                    if ctx.code_log.len() == CODE_LOG {
                        ctx.code_log.pop_front();
                    }
                    ctx.code_log.push_back(host as u64);
                    ctx.code_gen += 1;
                }
            }
            // Threads sharing the engine mark theirs at their next step: make it soon.
            if let Some(sync) = ctx.mt.as_ref() {
                sync.kick_others(&cpu.header().exit_request);
            }
        }
        Ok(id)
    }

    /// Forget every TB and reset the code cache; `false` if that has to wait because
    /// other threads sharing the engine are inside generated code (it then happens at a
    /// later step, once they are out: `crate::shared`).
    fn full_flush(&mut self) -> bool {
        if let Some(sync) = self.ctx().mt.as_ref() {
            if !sync.quiet() {
                sync.want_flush();
                return false;
            }
        }
        log::debug!("code cache full: flushing every TB");
        let ctx = self.ctx();
        ctx.tbs.clear();
        crate::mttcg::drain_dropped(&mut ctx.tbs, ctx.shared.as_ref());
        ctx.stats.full_flushes += 1;
        if let Some(n) = self.native.as_mut() {
            n.cache.reset();
        }
        if let Some(bg) = self.bg.as_mut() {
            bg.forget_all();
        }
        self.pending = None;
        self.hot = None;
        true
    }

    fn link_pending(&mut self, cpu_ptr: *mut C, dst: TbId) {
        let Some(p) = self.pending.take() else {
            return;
        };
        if self.opts.single_step {
            return;
        }
        // SAFETY: no TB is running.
        let cpu = unsafe { &*cpu_ptr };
        if cpu.header().pc != p.pc || cpu.tb_flags() != p.flags {
            return;
        }
        let ctx = self.ctx();
        let (Some(s), Some(d)) = (ctx.tbs.get(p.src), ctx.tbs.get(dst)) else {
            return;
        };
        // Same-page links survive TLB flushes; others depend on the current mapping.
        let fragile = (s.vpc & PAGE_MASK) != (p.pc & PAGE_MASK) || d.phys_page2.is_some() || d.vpc != p.pc;
        // vCPU threads sharing the engine run in different address spaces at once: a
        // link that holds only in this one's would send another to the wrong code.
        if fragile && ctx.mt.is_some() && !ctx.tbs.reached_globally(dst) {
            return;
        }
        if ctx.tbs.link(p.src, p.idx, p.slot, dst, fragile) {
            ctx.stats.chains_linked += 1;
        }
    }

    /// Run TB `id` once; returns its raw exit value.
    pub(crate) fn exec(&mut self, cpu_ptr: *mut C, id: TbId) -> u64 {
        if let Some(run) = self.prepare_native(cpu_ptr, id) {
            // SAFETY: prepared for this CPU just now (no flush since); the CPU and context
            // pointers are valid and no Rust reference to either is live during the call.
            return unsafe { run.go(cpu_ptr) };
        }
        let ctx = self.ctx();
        ctx.stats.dispatches += 1;
        // No TB is running: interpreted blocks retired by invalidations can go.
        ctx.tbs.reap();
        let Some(tb) = ctx.tbs.get(id) else {
            return status::LOOKUP as u64;
        };
        // Interpreted blocks are borrowed through raw pointers: the TB cache keeps them
        // alive until the next `reap` (see the SAFETY notes below).
        let (interp_block, mmu) = match &tb.exec {
            Exec::Native(_) => return status::LOOKUP as u64,
            Exec::Interp(_, Some(f)) => {
                // SAFETY: the view refers only to the fast block's heap parts, which stay in
                // place and alive until the next `reap`, even if the TB is invalidated
                // during the run (see `TbCache::retired`); `promote` and `clear`, which drop
                // them at once, run only from the dispatcher, between runs.
                let v = unsafe { std::mem::transmute::<FastView<'_>, FastView<'static>>(f.view()) };
                (Interp::Fast(v), tb.mmu)
            }
            Exec::Interp(b, None) => (Interp::Ref(Arc::as_ptr(b)), tb.mmu),
        };
        self.log_exec(cpu_ptr);
        // SAFETY: `C` is `#[repr(C)]` with the header first (GuestCpu contract); the byte
        // view is the only live access to the CPU during the run.
        let state = unsafe { std::slice::from_raw_parts_mut(cpu_ptr as *mut u8, std::mem::size_of::<C>()) };
        let mut env = InterpEnv { ctx: self.ctx.as_ptr(), mmu, tb: id };
        let out = match interp_block {
            Interp::Fast(v) => v.run(&mut self.fast, state, &mut env),
            Interp::Ref(b) => {
                // SAFETY: `b` is the `Arc`'s block, kept alive as the fast view's parts are
                // (see above): during the run only the slow path touches the TB cache, and
                // an invalidation moves the `Arc` to `TbCache::retired`.
                let b = unsafe { &*b };
                self.scratch.run(b, state, &mut env)
            }
        };
        match out {
            interp::Outcome::Goto { chain: true, .. } => ret::GOTO,
            interp::Outcome::Goto { chain: false, .. } => ret::NOCHAIN,
            interp::Outcome::Indirect { .. } => ret::INDIRECT,
            interp::Outcome::Status(s) => s as u64,
        }
    }

    /// Get native TB `id` ready to run on `cpu_ptr`: counted, traced, the header's
    /// jump-cache base and slow-path context set. `None` if it is not native code.
    fn prepare_native(&mut self, cpu_ptr: *mut C, id: TbId) -> Option<Run> {
        let trampoline = self.native.as_ref()?.trampoline;
        let slow_ctx = self.ctx.as_ptr() as u64;
        let ctx = self.ctx();
        let Some(Exec::Native(code)) = ctx.tbs.get(id).map(|t| &t.exec) else {
            return None;
        };
        let code = *code;
        ctx.stats.dispatches += 1;
        // No TB is running here: interpreted blocks retired by invalidations can go.
        // (Under a shared engine other vCPUs may be in native code, never in an
        // interpreted block: those run under the lock.)
        ctx.tbs.reap();
        let jc_base = ctx.tbs.jc_base();
        self.log_exec(cpu_ptr);
        // SAFETY: no TB is running on this CPU; the reference ends here.
        let h = unsafe { &mut *cpu_ptr }.header_mut();
        h.jc_base = jc_base;
        h.slow_ctx = slow_ctx;
        Some(Run { trampoline, code })
    }

    /// `-d exec` and `-d cpu` at a TB's start.
    fn log_exec(&self, cpu_ptr: *mut C) {
        // SAFETY: no TB is running.
        let cpu = unsafe { &*cpu_ptr };
        if log::log_enabled!(target: "exec", log::Level::Info) {
            log::info!(target: "exec", "Trace {:#x} [flags {:#x}]", cpu.header().pc, cpu.tb_flags());
        }
        if log::log_enabled!(target: "cpu", log::Level::Info) {
            log::info!(target: "cpu", "{}", cpu.dump_state());
        }
    }

    /// Act on a TB's exit value; returns true if the vCPU halted (`wfi`).
    fn handle_ret(&mut self, cpu_ptr: *mut C, r: u64) -> bool {
        // SAFETY: the TB has returned; no other reference to the CPU is live.
        let cpu = unsafe { &mut *cpu_ptr };
        let exits = &mut self.ctx().stats.exits;
        match r {
            _ if r & ret::HOT != 0 => self.hot = Some(r as u32),
            _ if r >= ret::SLOT_MIN => {
                exits.goto_unlinked += 1;
                // SAFETY: generated code returns the address of one of its own chain
                // slots, which stay allocated until a full flush (not before this point).
                let slot = unsafe { &*(r as *const ChainSlot) };
                self.pending = Some(PendingLink {
                    src: slot.owner,
                    idx: slot.index,
                    slot: r,
                    pc: cpu.header().pc,
                    flags: cpu.tb_flags(),
                });
            }
            ret::GOTO => exits.goto_unlinked += 1,
            ret::INDIRECT => exits.indirect += 1,
            ret::NOCHAIN => exits.goto_nochain += 1,
            _ if r == status::NONE as u64 => {}
            _ if r == status::LOOKUP as u64 => exits.lookup += 1,
            _ if r == status::EXIT_REQUEST as u64 => exits.exit_request += 1,
            _ if r == status::EXCEPTION as u64 => {
                let (c, t) = (cpu.header().cause, cpu.header().tval);
                self.raise(cpu, c, t);
            }
            _ if r == status::HALT as u64 => {
                exits.halt += 1;
                return true;
            }
            _ => log::error!("TB returned an unknown exit value {r:#x}"),
        }
        false
    }

    /// Sleep in `wfi` until an interrupt is pending, the vCPU is kicked, or the VM exits.
    ///
    /// A `wfi` whose wake-up interrupt is pending but globally masked ends at once, as the
    /// spec says; firmware that waits that way (OpenSBI 1.1's HSM wait, with its
    /// coldboot IPI still pending) then spins through `wfi` until another hart starts it.
    /// After [`WFI_SPINS`] such wake-ups with no interrupt taken in between, each one
    /// first sleeps up to [`WFI_BACKOFF`] (any kick, e.g. an IPI, ends the sleep): a
    /// spinning vCPU thread must not take host cores from the others.
    fn halt(&mut self, cpu_ptr: *mut C) {
        // SAFETY: no TB is running; shared access only while sleeping.
        let (slept, idle) = wfi_sleep(&self.vm, unsafe { &*cpu_ptr });
        self.add_idle(idle);
        if self.vm.exit_requested().is_some() {
            return;
        }
        // SAFETY: as above, now exclusive again.
        let cpu = unsafe { &mut *cpu_ptr };
        if cpu.take_interrupt() {
            self.wfi_spins = 0;
            self.log_int("interrupt", cpu);
        } else {
            wfi_backoff(&self.vm, cpu, &mut self.wfi_spins, slept);
        }
    }
}

/// Sleep in `wfi` until `cpu` has a wake-up, is kicked, or the VM is to exit; returns
/// whether it slept at all, and for how long.
fn wfi_sleep<C: GuestCpu>(vm: &VmControl, cpu: &C) -> (bool, Duration) {
    let idle = || !cpu.has_wakeup() && cpu.header().exit_request.load(Ordering::Acquire) == 0;
    let t0 = Instant::now();
    let mut slept = false;
    while vm.exit_requested().is_none() && idle() {
        slept = true;
        vm.wait(HALT_POLL, idle);
    }
    (slept, if slept { t0.elapsed() } else { Duration::ZERO })
}

/// After a `wfi` that took no interrupt: one that did not sleep but has a wake-up (a
/// pending, masked interrupt, see [`Engine::halt`]) counts in `spins`, and past
/// [`WFI_SPINS`] of them in a row sleeps up to [`WFI_BACKOFF`] (a kick ends it); anything
/// else starts the count over.
fn wfi_backoff<C: GuestCpu>(vm: &VmControl, cpu: &C, spins: &mut u32, slept: bool) {
    if !slept && cpu.has_wakeup() {
        *spins = spins.saturating_add(1);
        if *spins > WFI_SPINS {
            vm.wait(WFI_BACKOFF, || cpu.header().exit_request.load(Ordering::Acquire) == 0);
        }
    } else {
        *spins = 0;
    }
}

/// The exit value `r` of a TB run that a full flush followed: a chain-slot address (an
/// unlinked goto) or a tier-up request names what the flush freed, so it becomes a plain
/// unlinked goto (no link made; `pc` is set either way).
pub(crate) fn mt_forget(r: u64) -> u64 {
    if r >= ret::SLOT_MIN {
        ret::GOTO
    } else {
        r
    }
}

/// Sleep a vCPU thread of a shared engine in `wfi` (as `Engine::halt` does, without the
/// engine or its lock): until an interrupt is pending, the vCPU is kicked or the VM
/// exits. Its exit request is set on the way out, so the next step takes the interrupt.
pub(crate) fn mt_halt<C: GuestCpu>(vm: &VmControl, cpu: &C, st: &mut VcpuState) {
    let (slept, _) = wfi_sleep(vm, cpu);
    wfi_backoff(vm, cpu, &mut st.wfi_spins, slept);
    cpu.header().exit_request.store(1, Ordering::Release);
}
