//! Multi-threaded TCG: one host thread per vCPU ([`run_parallel`]). By default the
//! threads share one engine ([`crate::shared`]); with `-accel tcg,tb-cache=private`
//! ([`JitOptions::shared_tbs`] off) each has its own, as described here.
//!
//! Each engine owns its TB cache, code cache, jump cache and background compiler, so the
//! hot paths (dispatch, chaining, TB lookup, tier-up) take no locks and share nothing.
//! The price is that code both vCPUs run is translated twice: a Linux boot's second vCPU
//! translated the kernel again (59 K blocks for two vCPUs against 41 K shared), and two
//! busy harts running the same hot loop pay one extra compile each.
//!
//! What the engines do share ([`Shared`]) is the knowledge of which physical pages hold
//! translated code, so that guest stores stay coherent with every vCPU's TBs:
//! - a page that gets its first TB in any engine bumps `code_gen` and kicks the other
//!   vCPUs; at their next block boundary they flush their softmmu TLBs, so their next
//!   fill of that page carries the CODE flag and stores to it take the slow path;
//! - a slow-path store to such a page queues the byte range in the inbox of every other
//!   engine with TBs there and kicks it; it invalidates the overlapping TBs at its next
//!   block boundary (before it takes any interrupt, so an IPI sent after the store, as a
//!   remote `fence.i` is, always finds the stale code gone).
//!
//! Like QEMU's MTTCG, a store that races with another vCPU translating a page for the
//! first time (between its code read and its TLB flush) is not seen by that TB; RISC-V
//! only promises cross-hart instruction-fetch coherence after the writer's fence and the
//! reader's `fence.i`, which a guest can only order after such a store anyway.
//! Guest atomics are host atomics ([`kite_ir::Inst::Atomic`]); remote `sfence.vma` needs
//! nothing here: SBI delivers it by IPI and the target hart flushes its own TLB.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use kite_core::{ExitCode, GuestCpu, VmControl};
use kite_memory::PhysMap;

use crate::engine::Engine;
use crate::tb::TbCache;
use crate::{JitOptions, Stats};

/// Most vCPUs [`run_parallel`] runs (the page masks are 32 bits wide).
pub const MAX_VCPUS: usize = 32;

/// What the per-vCPU engines share: which pages hold whose code, and the invalidation
/// inboxes.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Physical page -> bit mask of the engines with TBs on it.
    pages: Mutex<HashMap<u64, u32>>,
    /// Bumped whenever a page gets code in some engine while none had any there.
    code_gen: AtomicU64,
    /// Per engine: byte ranges (page, lo, hi) other vCPUs stored to, and whether any
    /// are queued.
    inbox: Vec<Mutex<Vec<(u64, u64, u64)>>>,
    pending: Vec<AtomicBool>,
    /// Per engine: the address of its vCPU's `exit_request` word.
    words: Vec<usize>,
}

impl Shared {
    fn new(words: Vec<usize>) -> Shared {
        let n = words.len();
        Shared {
            pages: Mutex::new(HashMap::new()),
            code_gen: AtomicU64::new(0),
            inbox: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
            pending: (0..n).map(|_| AtomicBool::new(false)).collect(),
            words,
        }
    }

    fn kick(&self, i: usize) {
        // SAFETY: every address is the `exit_request` word of a CPU that `run_parallel`
        // borrows for longer than any engine (and so any caller) runs.
        let word = unsafe { &*(self.words[i] as *const AtomicU32) };
        word.store(1, Ordering::Release);
    }

    fn kick_others(&self, me: usize, mask: u32) {
        for i in (0..self.words.len()).filter(|&i| i != me && mask & (1 << i) != 0) {
            self.kick(i);
        }
    }
}

/// One engine's handle on [`Shared`] (lives in the engine context: the slow path uses it).
#[derive(Debug)]
pub(crate) struct Link {
    shared: Arc<Shared>,
    me: usize,
    /// `Shared::code_gen` when this vCPU last flushed its TLB for it.
    seen_gen: u64,
}

impl Link {
    fn bit(&self) -> u32 {
        1 << self.me
    }

    /// This engine now has TBs on `page`.
    pub(crate) fn add_page(&self, page: u64) {
        let mut pages = self.shared.pages.lock().unwrap_or_else(|e| e.into_inner());
        let m = pages.entry(page).or_insert(0);
        let first = *m == 0;
        *m |= self.bit();
        drop(pages);
        if first {
            self.shared.code_gen.fetch_add(1, Ordering::AcqRel);
            self.shared.kick_others(self.me, u32::MAX);
        }
    }

    /// This engine has no TBs left on `page`.
    pub(crate) fn drop_page(&self, page: u64) {
        let mut pages = self.shared.pages.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = pages.get_mut(&page) {
            *m &= !self.bit();
            if *m == 0 {
                pages.remove(&page);
            }
        }
    }

    /// A store of `[lo, hi)` on `page` happened here: queue it for every other engine
    /// with code on the page. Returns whether any has (its TLB write entries for the page
    /// must then keep taking the slow path).
    pub(crate) fn stored(&self, page: u64, lo: u64, hi: u64) -> bool {
        let mask = self.others_on(page);
        if mask == 0 {
            return false;
        }
        for i in (0..self.shared.words.len()).filter(|&i| mask & (1 << i) != 0) {
            self.shared.inbox[i].lock().unwrap_or_else(|e| e.into_inner()).push((page, lo, hi));
            // Kick only on the first queued range: the vCPU drains them all at once.
            if !self.shared.pending[i].swap(true, Ordering::AcqRel) {
                self.shared.kick(i);
            }
        }
        true
    }

    /// The engines other than this one with code on `page`.
    pub(crate) fn others_on(&self, page: u64) -> u32 {
        let pages = self.shared.pages.lock().unwrap_or_else(|e| e.into_inner());
        pages.get(&page).copied().unwrap_or(0) & !self.bit()
    }

    /// At a block boundary: whether the TLB must be flushed (a page got code elsewhere),
    /// and the ranges other vCPUs stored to since the last call.
    pub(crate) fn take_work(&mut self) -> (bool, Vec<(u64, u64, u64)>) {
        let gen = self.shared.code_gen.load(Ordering::Acquire);
        let flush = gen != self.seen_gen;
        self.seen_gen = gen;
        let ranges = if self.shared.pending[self.me].swap(false, Ordering::AcqRel) {
            std::mem::take(&mut *self.shared.inbox[self.me].lock().unwrap_or_else(|e| e.into_inner()))
        } else {
            Vec::new()
        };
        (flush, ranges)
    }
}

/// Whether `vcpus` should run one host thread each: as `asked` (`-accel tcg,thread=`),
/// else only with two host cores per vCPU (a vCPU spin-waiting for another keeps its core
/// busy, and the compile threads need cores too: on this project's 2-core hosts a
/// 2-vCPU Linux boot runs faster in turns, docs/performance.md). Never with a debugger
/// (the gdb stub drives one engine), and never for a single vCPU.
pub fn thread_per_vcpu(vcpus: usize, host_cores: usize, debugger: bool, asked: Option<bool>) -> bool {
    vcpus > 1 && !debugger && asked.unwrap_or(host_cores >= 2 * vcpus)
}

/// Tell the registry about pages of `tbs` that lost their last TB.
pub(crate) fn drain_dropped(tbs: &mut TbCache, link: Option<&Link>) {
    let Some(link) = link else {
        return;
    };
    let mut pages = std::mem::take(&mut tbs.dropped_pages);
    for &page in &pages {
        // The page may have got code again since it was dropped.
        if !tbs.is_code_page(page) {
            link.drop_page(page);
        }
    }
    pages.clear();
    tbs.dropped_pages = pages;
}

/// Run `cpus` in parallel, one host thread each, until the VM asks to exit: on one
/// shared engine ([`crate::run_shared`]) or, without [`JitOptions::shared_tbs`], one
/// engine each. Returns the exit code and the engines' summed counters. An engine that
/// cannot start (e.g. no memory for its code cache) stops the VM with exit status 1.
pub fn run_parallel<C: GuestCpu>(
    mem: Arc<PhysMap>,
    vm: Arc<VmControl>,
    opts: JitOptions,
    cpus: &mut [Box<C>],
) -> (ExitCode, Stats) {
    if opts.shared_tbs {
        return crate::shared::run_shared(mem, vm, opts, cpus);
    }
    let n = cpus.len().min(MAX_VCPUS);
    let cpus = &mut cpus[..n];
    let words = cpus.iter().map(|c| &c.header().exit_request as *const AtomicU32 as usize).collect();
    let shared = Arc::new(Shared::new(words));
    let results: Vec<Option<(ExitCode, Stats)>> = std::thread::scope(|s| {
        let handles: Vec<_> = cpus
            .iter_mut()
            .enumerate()
            .map(|(i, cpu)| {
                let (mem, shared, opts) = (mem.clone(), shared.clone(), opts.clone());
                spawn_vcpu_thread(s, i, &vm, move |vm| {
                    let mut e = match Engine::<C>::new(mem, vm.clone(), opts) {
                        Ok(e) => e,
                        Err(err) => {
                            log::error!("vCPU {i}: cannot start the translator: {err}");
                            vm.request_exit(ExitCode::Exit(1));
                            return None;
                        }
                    };
                    e.link_shared(Link { shared, me: i, seen_gen: 0 });
                    let code = e.run(cpu);
                    Some((code, e.stats()))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.and_then(|h| h.join().ok().flatten())).collect()
    });
    let mut stats = Stats::default();
    for (_, s) in results.iter().flatten() {
        stats.merge(s);
    }
    let code = vm.exit_requested().unwrap_or(ExitCode::Exit(1));
    (code, stats)
}

/// Start vCPU `i`'s host thread (`kite-vcpuN`) in scope `s`, running `f` with the VM.
/// A thread that cannot start, or that panics (a Kite bug), stops the VM with exit status
/// 1 rather than leave the other vCPUs running (or waiting for it).
pub(crate) fn spawn_vcpu_thread<'s, T: Send + 's>(
    s: &'s std::thread::Scope<'s, '_>,
    i: usize,
    vm: &Arc<VmControl>,
    f: impl FnOnce(&Arc<VmControl>) -> T + Send + 's,
) -> Option<std::thread::ScopedJoinHandle<'s, T>> {
    let vm2 = vm.clone();
    let spawned = std::thread::Builder::new().name(format!("kite-vcpu{i}")).spawn_scoped(s, move || {
        let guard = StopOnPanic(vm2);
        f(&guard.0)
    });
    spawned
        .map_err(|err| {
            log::error!("cannot start a vCPU thread: {err}");
            vm.request_exit(ExitCode::Exit(1));
        })
        .ok()
}

/// Asks the VM to stop if its thread unwinds.
struct StopOnPanic(Arc<VmControl>);

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.request_exit(ExitCode::Exit(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_per_vcpu_by_default_only_with_two_cores_each() {
        assert!(!thread_per_vcpu(2, 2, false, None));
        assert!(thread_per_vcpu(2, 4, false, None));
        assert!(!thread_per_vcpu(4, 7, false, None));
        assert!(thread_per_vcpu(2, 2, false, Some(true)));
        assert!(!thread_per_vcpu(2, 64, false, Some(false)));
        assert!(!thread_per_vcpu(2, 64, true, Some(true)), "a debugger drives one engine");
        assert!(!thread_per_vcpu(1, 64, false, Some(true)));
    }

    #[test]
    fn the_registry_routes_stores_to_the_engines_with_code_there() {
        let words: Vec<AtomicU32> = (0..3).map(|_| AtomicU32::new(0)).collect();
        let shared = Arc::new(Shared::new(words.iter().map(|w| w as *const AtomicU32 as usize).collect()));
        let mut links: Vec<Link> = (0..3).map(|me| Link { shared: shared.clone(), me, seen_gen: 0 }).collect();
        let page = 0x8000_1000;
        // First code on a page: everyone else flushes its TLB (kicked, generation bumped).
        links[1].add_page(page);
        assert_eq!(words.iter().map(|w| w.swap(0, Ordering::SeqCst)).collect::<Vec<_>>(), [1, 0, 1]);
        assert!(links[0].take_work().0 && links[2].take_work().0);
        assert!(!links[0].take_work().0, "once per generation");
        // A store there from engine 0 reaches engine 1 only, kicked once for two stores.
        assert!(links[0].stored(page, page + 8, page + 16));
        assert!(links[0].stored(page, page + 32, page + 40));
        assert_eq!(words.iter().map(|w| w.swap(0, Ordering::SeqCst)).collect::<Vec<_>>(), [0, 1, 0]);
        assert_eq!(links[1].take_work().1, vec![(page, page + 8, page + 16), (page, page + 32, page + 40)]);
        assert!(links[2].take_work().1.is_empty());
        // Engine 1's own stores, and stores once it dropped the page, go nowhere.
        assert!(!links[1].stored(page, page, page + 4));
        links[1].drop_page(page);
        assert!(!links[0].stored(page, page, page + 4));
        assert_eq!(links[0].others_on(page), 0);
        links.clear();
    }
}
