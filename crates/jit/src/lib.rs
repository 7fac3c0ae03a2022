//! Kite's translator ("tcg" accelerator): IR -> x86-64 (a one-pass baseline compiler for
//! cold code, Cranelift for hot code) -> native code.
//!
//! A guest frontend ([`GuestCpu::translate_block`]) turns a block of guest code into
//! [`kite_ir::Block`]s; this crate compiles them ([`baseline`], [`codegen`]) into a private code cache
//! ([`codecache`]), keeps a TB cache keyed by (guest physical pc, virtual pc, flags) with a per-vCPU
//! jump cache and direct block chaining ([`tb`]), implements the softmmu (inline TLB fast
//! path in generated code, slow path in [`softmmu`]) and runs everything from the
//! dispatcher loop in [`engine`]. Debugger support (translation-level breakpoints,
//! TLB-flagged watchpoints, single-step, the stop/resume link to the gdb stub) is in
//! `debug.rs`, a child module of `engine` ([`DebugLink`]).
//!
//! Invariants and pitfalls:
//! - An [`Engine`] runs one vCPU ([`Engine::run`]), several in turns on one thread
//!   ([`Engine::run_all`], round robin in `sched`, sharing the TB cache with a jump cache
//!   per vCPU), or several on a thread each behind its translator lock ([`run_shared`],
//!   `shared`). Generated code bakes in addresses of that engine's TBs (entry counters,
//!   chain slots), so code never moves between engines; the slow path's context and the
//!   jump cache come from the running vCPU's header.
//! - Generated code only runs from inside [`Engine::run`]; while it runs the dispatcher holds
//!   no Rust reference into the context or the CPU, because slow paths reach both through
//!   raw pointers.
//! - Code memory is only reclaimed by a full flush, which happens in the dispatcher (never
//!   while generated code is on the stack). Invalidated TBs keep their code and chain slots
//!   until then.
//! - The host is assumed little-endian with a coherent instruction cache (x86-64); other
//!   hosts need an icache flush after code is written.
//! - Executors: [`Tier::Interp`] runs blocks through [`kite_ir::interp`] with the same
//!   softmmu code (the reference for differential tests), [`Tier::Jit`] compiles them with
//!   Cranelift at first sight, and [`Tier::Tiered`] (the default) compiles a new block with
//!   the baseline compiler (or, with `baseline: false`, interprets it) and recompiles it
//!   with Cranelift after [`JitOptions::thresh`] entries, under the same TB id (so
//!   jump-cache entries, invalidation and chain bookkeeping stay valid). A block that
//!   fails to compile (a Kite bug) is logged and stays as it was (interpreted or baseline).

mod baseline;
mod bg;
mod codecache;
mod codegen;
mod engine;
mod memgroup;
mod mttcg;
pub mod perfmap;
mod sched;
mod shared;
mod softmmu;
mod stub;
mod tb;

#[cfg(test)]
mod tests;

pub use engine::debug::{DebugLink, DEBUG_CAUSE};
pub use engine::Engine;
pub use mttcg::{run_parallel, thread_per_vcpu, MAX_VCPUS};
pub use shared::run_shared;

/// Which executor runs translated blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// Blocks run through the reference IR interpreter (slow; the differential-test reference).
    Interp,
    /// Blocks are compiled to native code with Cranelift when first translated.
    Jit,
    /// Blocks start as baseline code (or interpreted, see [`JitOptions::baseline`]) and are
    /// recompiled with Cranelift once hot ([`JitOptions::thresh`]).
    Tiered,
}

/// Default [`JitOptions::thresh`]: picked by measurement on the Linux boot (see
/// `docs/performance.md`, "Eleventh round"). A Cranelift compile costs the compile thread
/// ~150 us a block and the dispatcher ~10 us (retranslation, region, install); a block
/// pays that back only after some 10^4 more runs. At 1000 a boot promoted ~2,600 blocks,
/// kept the compile thread saturated and ran slower than with no Cranelift at all; at
/// 16000 it promotes ~160, and a compute loop still gets there within a millisecond.
pub const DEFAULT_THRESH: u32 = 16000;

/// Accelerator options.
#[derive(Clone, Debug)]
pub struct JitOptions {
    pub tier: Tier,
    /// One guest instruction per TB (debugging, precise `-d exec` traces).
    pub single_step: bool,
    /// Size of the code cache; when it is full every TB is flushed and translation restarts.
    pub code_cache_bytes: usize,
    /// Run the Cranelift verifier on every function (slow; on by default in debug builds).
    pub verify: bool,
    /// [`Tier::Tiered`]: entries of a block (counted by the baseline prologue, or per
    /// dispatch for an interpreted one) before Cranelift compiles it (0 compiles with
    /// Cranelift at first sight, like [`Tier::Jit`]).
    pub thresh: u32,
    /// [`Tier::Tiered`]: compile hot blocks on a worker thread while they keep running as
    /// they were (`false`: compile in place, deterministic tier-up point).
    pub background: bool,
    /// [`Tier::Tiered`]: cold blocks are compiled by the baseline compiler (one pass, a few
    /// microseconds) instead of interpreted; `thresh` then counts their entries in the
    /// generated prologue, chained entries included.
    pub baseline: bool,
    /// Cranelift compiles a hot block together with the blocks of its loop on the same
    /// guest page (a region: gotos between them are jumps, guest registers stay in host
    /// registers); `false` compiles every block alone.
    pub regions: bool,
    /// Measure translation and compile times for [`Stats`] (`-d stats`); off, those
    /// totals stay 0 and no clock is read per block.
    pub timing: bool,
    /// [`run_parallel`]: the vCPU threads share one engine and its TB cache
    /// ([`run_shared`]); `false` gives each its own (the `mttcg` module).
    pub shared_tbs: bool,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions {
            tier: Tier::Tiered,
            single_step: false,
            code_cache_bytes: 64 << 20,
            verify: cfg!(debug_assertions),
            thresh: DEFAULT_THRESH,
            background: true,
            baseline: true,
            regions: true,
            timing: false,
            shared_tbs: true,
        }
    }
}

/// Errors creating an engine (host problems, never guest behaviour).
#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("cannot create the code cache: {0}")]
    CodeCache(String),
    #[error("cannot set up Cranelift for this host: {0}")]
    Isa(String),
    #[error("cannot compile the entry trampoline: {0}")]
    Trampoline(String),
}

/// Why blocks handed control back to the dispatcher.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExitStats {
    /// A chainable `goto` whose chain slot was not linked yet (or may not be linked).
    pub goto_unlinked: u64,
    /// `goto_nochain` exits.
    pub goto_nochain: u64,
    /// Indirect jumps.
    pub indirect: u64,
    pub exception: u64,
    pub halt: u64,
    pub exit_request: u64,
    pub lookup: u64,
}

/// Counters of one engine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Blocks compiled to native code.
    pub tbs_compiled: u64,
    /// Blocks translated for the interpreter tier (including compile-error fallbacks and
    /// cold blocks of [`Tier::Tiered`]).
    pub tbs_interp: u64,
    /// Interpreted blocks the fast (pre-decoded) interpreter took; the rest run on the
    /// reference interpreter.
    pub tbs_fast_interp: u64,
    /// Interpreted blocks compiled once hot ([`Tier::Tiered`]; also counted in `tbs_compiled`).
    pub tbs_promoted: u64,
    /// Blocks that failed to compile and fell back to the interpreter (Kite bugs).
    pub compile_fallbacks: u64,
    /// Time spent in Cranelift (and copying into the code cache) for compiled blocks.
    pub compile_ns_total: u64,
    /// Blocks compiled by the baseline compiler (cold code; not in `tbs_compiled`).
    pub tbs_baseline: u64,
    /// Time spent in the baseline compiler (and copying into the code cache).
    pub baseline_ns_total: u64,
    /// Cranelift compiles that took a loop region (more blocks than the TB's own).
    pub regions: u64,
    /// Blocks added to those compiles besides the TBs' own.
    pub region_blocks: u64,
    /// Time spent in the frontend (guest code -> IR) for every translated block.
    pub translate_ns_total: u64,
    /// Blocks translated by the frontend (every tier).
    pub tbs_translated: u64,
    /// Instruction-fetch translations served by the per-vCPU fetch TLB (no page walk).
    pub itlb_hits: u64,
    /// Instruction-fetch translations that walked the page tables.
    pub itlb_misses: u64,
    /// Chain slots linked (a later execution of that exit jumps straight to the next TB).
    pub chains_linked: u64,
    /// TB entries made by the dispatcher (everything else entered through a chain).
    pub dispatches: u64,
    pub jump_cache_hits: u64,
    pub jump_cache_misses: u64,
    /// Memory accesses that took the softmmu slow path (TLB misses, MMIO, misaligned, code pages).
    pub tlb_slow_path: u64,
    /// TLB entries filled by the slow path.
    pub tlb_fills: u64,
    /// Times a TLB doubled because the guest's working set kept evicting its entries
    /// (see `kite_ir::state::SoftTlb`; growth and shrinking at flushes are not counted).
    pub tlb_grows: u64,
    /// TBs invalidated by stores to code pages.
    pub tbs_invalidated: u64,
    /// Whole-cache flushes because the code cache was full.
    pub full_flushes: u64,
    /// Wall time, in nanoseconds, this engine's thread slept because no vCPU it runs had
    /// anything to do (all in `wfi` with no interrupt pending): time the guest spent
    /// waiting for its timers, not emulating. Summed over engines under MTTCG.
    pub idle_ns: u64,
    /// Spin-wait yield requests acted on (`pause`, and loops the frontend found spinning).
    pub yields: u64,
    /// vCPU switches on a thread that runs several in turns.
    pub vcpu_switches: u64,
    pub exits: ExitStats,
    /// Guest instructions executed (from the header's icount).
    pub insns: u64,
}

impl Stats {
    /// Add another engine's counters (MTTCG runs one engine per vCPU).
    pub fn merge(&mut self, o: &Stats) {
        let Stats {
            tbs_compiled,
            tbs_interp,
            tbs_fast_interp,
            tbs_promoted,
            compile_fallbacks,
            compile_ns_total,
            tbs_baseline,
            baseline_ns_total,
            regions,
            region_blocks,
            translate_ns_total,
            tbs_translated,
            itlb_hits,
            itlb_misses,
            chains_linked,
            dispatches,
            jump_cache_hits,
            jump_cache_misses,
            tlb_slow_path,
            tlb_fills,
            tlb_grows,
            tbs_invalidated,
            full_flushes,
            idle_ns,
            yields,
            vcpu_switches,
            exits,
            insns,
        } = self;
        let ExitStats { goto_unlinked, goto_nochain, indirect, exception, halt, exit_request, lookup } = exits;
        for (a, b) in [
            (tbs_compiled, o.tbs_compiled),
            (tbs_interp, o.tbs_interp),
            (tbs_fast_interp, o.tbs_fast_interp),
            (tbs_promoted, o.tbs_promoted),
            (compile_fallbacks, o.compile_fallbacks),
            (compile_ns_total, o.compile_ns_total),
            (tbs_baseline, o.tbs_baseline),
            (baseline_ns_total, o.baseline_ns_total),
            (regions, o.regions),
            (region_blocks, o.region_blocks),
            (translate_ns_total, o.translate_ns_total),
            (tbs_translated, o.tbs_translated),
            (itlb_hits, o.itlb_hits),
            (itlb_misses, o.itlb_misses),
            (chains_linked, o.chains_linked),
            (dispatches, o.dispatches),
            (jump_cache_hits, o.jump_cache_hits),
            (jump_cache_misses, o.jump_cache_misses),
            (tlb_slow_path, o.tlb_slow_path),
            (tlb_fills, o.tlb_fills),
            (tlb_grows, o.tlb_grows),
            (tbs_invalidated, o.tbs_invalidated),
            (full_flushes, o.full_flushes),
            (idle_ns, o.idle_ns),
            (yields, o.yields),
            (vcpu_switches, o.vcpu_switches),
            (insns, o.insns),
            (goto_unlinked, o.exits.goto_unlinked),
            (goto_nochain, o.exits.goto_nochain),
            (indirect, o.exits.indirect),
            (exception, o.exits.exception),
            (halt, o.exits.halt),
            (exit_request, o.exits.exit_request),
            (lookup, o.exits.lookup),
        ] {
            *a += b;
        }
    }

    /// Average compile time per compiled TB, in microseconds.
    pub fn avg_compile_us(&self) -> f64 {
        if self.tbs_compiled == 0 {
            0.0
        } else {
            self.compile_ns_total as f64 / self.tbs_compiled as f64 / 1000.0
        }
    }

    /// Average baseline compile time per baseline TB, in microseconds.
    pub fn avg_baseline_us(&self) -> f64 {
        if self.tbs_baseline == 0 {
            0.0
        } else {
            self.baseline_ns_total as f64 / self.tbs_baseline as f64 / 1000.0
        }
    }

    /// Average frontend (guest -> IR) time per translated TB, in microseconds.
    pub fn avg_translate_us(&self) -> f64 {
        if self.tbs_translated == 0 {
            0.0
        } else {
            self.translate_ns_total as f64 / self.tbs_translated as f64 / 1000.0
        }
    }
}
