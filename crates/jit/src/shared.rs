//! Multi-threaded TCG with one TB cache: a host thread per vCPU, all running one
//! [`Engine`] ([`run_shared`]), as QEMU's MTTCG does.
//!
//! The per-engine alternative ([`crate::mttcg`]) translates everything a vCPU runs in its
//! own engine: a Linux boot's second vCPU translates the kernel again (59 K blocks for
//! two vCPUs against 39 K for one). Here the engine (TB cache, code cache, compilers) is
//! shared behind one lock, the "translator lock":
//! - A vCPU thread holds it for each dispatcher step ([`Engine::mt_step`]): acting on the
//!   last TB's exit value, interrupts, finding or translating the next TB, linking. Its
//!   per-vCPU state (jump cache and fetch TLB, a pending chain link, a tier-up request)
//!   is swapped into the engine for the step ([`Engine::mt_enter`]), as round robin
//!   does at a vCPU switch ([`crate::sched`]).
//! - Generated code runs without it; chained jumps and jump-cache hits take no lock.
//!   The softmmu slow path takes it (it may invalidate TBs and reads the TB cache's
//!   code pages), unless its thread holds it already (interpreted blocks run under it).
//! - Invalidated TBs keep their code until a full flush, so a vCPU still inside one
//!   finishes it safely. The invalidating vCPU kicks the others: their next TB entry
//!   (a stale jump-cache hit included) returns to the dispatcher, whose step drops the
//!   jump-cache entries of TBs invalidated meanwhile. Likewise when a page first gets
//!   code: their TLB write entries for it get the CODE flag at their next step. (As in
//!   QEMU, a store racing with another vCPU's first translation of a page may be missed
//!   by that TB; RISC-V only promises instruction-fetch coherence after the writer's
//!   fence and the reader's `fence.i`, which a guest can only order after the store.)
//! - Chain links into another page hold only for the address space they were made in;
//!   vCPUs in different address spaces run at once, so only links into pages mapped
//!   globally (a kernel's) are made across pages.
//! - A full flush (code cache full) needs every vCPU out of generated code: the vCPU
//!   that finds the cache full does it at once if none is inside, else raises
//!   `flush_wanted` and kicks them all; vCPUs then wait outside generated code until the
//!   last one out has flushed (QEMU's `start_exclusive`).

use std::cell::{Cell, UnsafeCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kite_core::{ExitCode, GuestCpu, VmControl};
use kite_memory::PhysMap;

use crate::engine::{Engine, MtStep};
use crate::mttcg::spawn_vcpu_thread;
use crate::sched::VcpuState;
use crate::{JitOptions, Stats, MAX_VCPUS};

thread_local! {
    /// Whether this thread holds a translator lock (the slow path then takes none).
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// What the vCPU threads of one shared engine coordinate through.
#[derive(Debug)]
pub(crate) struct Threads {
    lock: Mutex<()>,
    /// Signalled when `flush_wanted` is cleared or a vCPU leaves generated code.
    cond: Condvar,
    /// vCPU threads inside generated code (or about to enter it).
    running: AtomicUsize,
    /// A full flush waits for every vCPU to leave generated code.
    flush_wanted: AtomicBool,
    /// Addresses of the vCPUs' `exit_request` words.
    words: Vec<usize>,
}

/// The translator lock, held: `HELD` is set meanwhile.
pub(crate) struct Held<'a>(Option<MutexGuard<'a, ()>>);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.0.is_some() {
            HELD.with(|h| h.set(false));
        }
    }
}

impl Held<'_> {
    /// Release the lock and wait on `cond` (up to `d`) for another vCPU's signal.
    fn wait(mut self, cond: &Condvar, d: Duration) {
        if let Some(g) = self.0.take() {
            HELD.with(|h| h.set(false));
            drop(cond.wait_timeout(g, d));
        }
    }
}

impl Threads {
    fn new(words: Vec<usize>) -> Threads {
        Threads {
            lock: Mutex::new(()),
            cond: Condvar::new(),
            running: AtomicUsize::new(0),
            flush_wanted: AtomicBool::new(false),
            words,
        }
    }

    /// Take the lock (nothing if this thread holds it already).
    pub(crate) fn lock(&self) -> Held<'_> {
        if HELD.with(|h| h.get()) {
            return Held(None);
        }
        let g = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        HELD.with(|h| h.set(true));
        Held(Some(g))
    }

    /// Set the exit request of every vCPU but the one whose word is at `me`.
    pub(crate) fn kick_others(&self, me: *const AtomicU32) {
        for &w in self.words.iter().filter(|&&w| w != me as usize) {
            // SAFETY: every address is the `exit_request` word of a CPU that `run_shared`
            // borrows for longer than any vCPU thread runs.
            unsafe { &*(w as *const AtomicU32) }.store(1, Ordering::Release);
        }
    }

    /// Whether no vCPU is inside generated code (call with the lock held).
    pub(crate) fn quiet(&self) -> bool {
        self.running.load(Ordering::Acquire) == 0
    }

    /// Ask for a full flush once every vCPU is out of generated code (lock held): kick
    /// them all out of it.
    pub(crate) fn want_flush(&self) {
        self.flush_wanted.store(true, Ordering::Release);
        self.kick_others(std::ptr::null());
    }

    pub(crate) fn flush_wanted(&self) -> bool {
        self.flush_wanted.load(Ordering::Acquire)
    }

    /// The deferred flush happened (lock held).
    pub(crate) fn flushed(&self) {
        self.flush_wanted.store(false, Ordering::Release);
        self.cond.notify_all();
    }
}

/// An engine shared by vCPU threads; only touched with its `Threads`' lock held.
struct SharedEngine<C: GuestCpu> {
    engine: UnsafeCell<Engine<C>>,
    sync: Arc<Threads>,
}

// SAFETY: the engine is only reached through `with`, under the lock; generated code and
// the slow path (which takes the lock) reach it through raw pointers.
unsafe impl<C: GuestCpu> std::marker::Sync for SharedEngine<C> {}

impl<C: GuestCpu> SharedEngine<C> {
    /// Run `f` on the engine with the lock held.
    fn with<R>(&self, f: impl FnOnce(&mut Engine<C>) -> R) -> R {
        let _held = self.sync.lock();
        // SAFETY: the lock is held (by this call or, for the slow path's callers, this
        // thread), so no other reference to the engine is live.
        f(unsafe { &mut *self.engine.get() })
    }
}

/// Run `cpus` in parallel, one host thread each, on one shared engine, until the VM asks
/// to exit. Returns the exit code and the engine's counters.
pub fn run_shared<C: GuestCpu>(
    mem: Arc<PhysMap>,
    vm: Arc<VmControl>,
    opts: JitOptions,
    cpus: &mut [Box<C>],
) -> (ExitCode, Stats) {
    let n = cpus.len().min(MAX_VCPUS);
    let cpus = &mut cpus[..n];
    let words: Vec<usize> = cpus.iter().map(|c| &c.header().exit_request as *const AtomicU32 as usize).collect();
    let sync = Arc::new(Threads::new(words));
    let mut engine = match Engine::<C>::new(mem, vm.clone(), opts) {
        Ok(e) => e,
        Err(err) => {
            log::error!("cannot start the translator: {err}");
            vm.request_exit(ExitCode::Exit(1));
            return (ExitCode::Exit(1), Stats::default());
        }
    };
    engine.mt_attach(sync.clone());
    let shared = SharedEngine { engine: UnsafeCell::new(engine), sync };
    std::thread::scope(|s| {
        for (i, cpu) in cpus.iter_mut().enumerate() {
            let shared = &shared;
            let cpu: &mut C = cpu;
            spawn_vcpu_thread(s, i, &vm, move |vm| vcpu_thread(shared, cpu, vm));
        }
    });
    let stats = shared.with(|e| e.stats());
    let code = vm.exit_requested().unwrap_or(ExitCode::Exit(1));
    (code, stats)
}

/// How long a vCPU waiting for a deferred flush sleeps at most before looking again.
const FLUSH_POLL: Duration = Duration::from_millis(1);

fn vcpu_thread<C: GuestCpu>(shared: &SharedEngine<C>, cpu: &mut C, vm: &Arc<VmControl>) {
    let sync = &*shared.sync;
    let cpu: *mut C = cpu;
    // SAFETY: the word lives inside `*cpu`, which outlives this call; it is unregistered
    // before we return.
    unsafe { vm.register(&(*cpu).header().exit_request) };
    // SAFETY: `cpu` is valid (from `&mut`); no other reference is live here.
    let ic0 = unsafe { (*cpu).header().icount };
    let mut st = VcpuState::new();
    let mut last: Option<u64> = None;
    loop {
        let step = {
            let held = sync.lock();
            if sync.flush_wanted() && !sync.quiet() {
                // A full flush waits for every vCPU to leave generated code: wait outside.
                held.wait(&sync.cond, FLUSH_POLL);
                continue;
            }
            // SAFETY: the lock is held; the reference ends with this block.
            let e = unsafe { &mut *shared.engine.get() };
            let flushed = e.mt_enter(cpu, &mut st);
            let last = last.take().map(|r| if flushed { crate::engine::mt_forget(r) } else { r });
            let step = e.mt_step(cpu, last);
            e.mt_leave(&mut st);
            if let MtStep::Run(_) = step {
                // Counted before the lock goes: a flush must wait for this run.
                sync.running.fetch_add(1, Ordering::AcqRel);
            }
            step
        };
        match step {
            MtStep::Exit => break,
            MtStep::Again => {}
            MtStep::Yield => std::thread::yield_now(),
            MtStep::Ran(r) => last = Some(r),
            MtStep::Halt => {
                // SAFETY: no TB is running; the engine is not touched while we sleep.
                crate::engine::mt_halt(vm, unsafe { &*cpu }, &mut st);
            }
            MtStep::Run(run) => {
                // SAFETY: `run` was prepared for this CPU by `mt_step`; its code stays in the
                // cache until a full flush, which waits for `running` to drop.
                let r = unsafe { run.go(cpu) };
                if sync.running.fetch_sub(1, Ordering::AcqRel) == 1 && sync.flush_wanted() {
                    // (Under the lock: a waiter checks `running` with it held.)
                    let _held = sync.lock();
                    sync.cond.notify_all();
                }
                last = Some(r);
            }
        }
    }
    // SAFETY: as above.
    let h = unsafe { (*cpu).header() };
    let ic1 = h.icount;
    vm.unregister(&h.exit_request);
    shared.with(|e| e.add_insns(ic1.wrapping_sub(ic0)));
}
