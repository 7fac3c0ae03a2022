//! Round-robin scheduling of several vCPUs on one host thread ([`Engine::run_all`]).
//!
//! - A kicker thread ends time slices: every [`SLICE`] it sets the running vCPU's
//!   `exit_request` and the shared `preempt` flag; the dispatcher sees the request at the
//!   next block entry (chained loops included) and hands over to the next vCPU. A vCPU
//!   in firmware (not `GuestCpu::preemptible`) lets up to two slice ends pass.
//! - An interrupt the running vCPU raises itself (`VmControl::kicks_here` moved: an IPI)
//!   hands over at once: the vCPU it is for runs now, not after the sender's slice
//!   (OpenSBI's remote fences spin on an AMO until the target has acted). Interrupts
//!   from timer and device threads wait for the slice end.
//! - A vCPU that executes `wfi` with nothing pending is marked halted and skipped until
//!   `has_wakeup()`; when every vCPU is halted the thread sleeps in `VmControl::wait`,
//!   which device interrupt lines end through `VmControl::notify`/`kick_all`.
//! - The TB cache is shared; each vCPU has its own jump cache, swapped in on switch
//!   ([`crate::tb::JumpCache`]: cleared if TBs were invalidated meanwhile, re-pointed at
//!   the new code of TBs promoted meanwhile). Pages that got code while a vCPU was
//!   switched out get the CODE flag on its TLB write entries (`Ctx::code_log`; a full
//!   TLB flush after more than it holds), so its stores there take the slow path that
//!   invalidates the TBs. Cross-page chain links are cut at a switch only when the two
//!   vCPUs' `GuestCpu::translation_regime`s differ.
//!
//! Pitfalls: the kicker may hit the vCPU that was running an instant ago (a harmless
//! spurious exit request, which only makes that vCPU look at interrupts); a slice can
//! therefore last up to two periods. This design is the stepping stone to one thread
//! per vCPU: the per-vCPU state is already separate ([`VcpuState`]).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use kite_core::{ExitCode, GuestCpu};

use crate::engine::{Engine, Stop};
use crate::tb::JumpCache;

/// Length of a time slice.
pub(crate) const SLICE: Duration = Duration::from_millis(1);
/// How long the thread sleeps, at most, when every vCPU is halted before looking again.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Scheduling state of one vCPU while it is switched out.
#[derive(Debug)]
pub(crate) struct VcpuState {
    pub jc: JumpCache,
    /// `Ctx::code_gen` when the vCPU last ran.
    pub code_gen: u64,
    /// Stopped in `wfi`, waiting for a wake-up.
    pub halted: bool,
    /// Under a shared engine (`crate::shared`): the engine's per-vCPU dispatch state
    /// between steps (see `Engine::mt_enter`).
    pub pending: Option<crate::engine::PendingLink>,
    pub hot: Option<crate::tb::TbId>,
    pub wfi_spins: u32,
    /// `Stats::full_flushes` when it last ran.
    pub flushes: u64,
}

impl VcpuState {
    pub(crate) fn new() -> VcpuState {
        VcpuState {
            jc: JumpCache::new(),
            code_gen: 0,
            halted: false,
            pending: None,
            hot: None,
            wfi_spins: 0,
            flushes: 0,
        }
    }
}

/// What the kicker thread shares with the scheduler.
struct Kicker {
    /// Addresses of the vCPUs' `exit_request` words.
    words: Vec<usize>,
    current: AtomicUsize,
    preempt: AtomicBool,
    stop: AtomicBool,
}

impl Kicker {
    fn kick_current(&self) {
        if let Some(&w) = self.words.get(self.current.load(Ordering::Acquire)) {
            // SAFETY: every address is the `exit_request` word of a CPU borrowed by
            // `run_round_robin` for longer than the kicker thread lives (scoped thread).
            let word = unsafe { &*(w as *const AtomicU32) };
            self.preempt.store(true, Ordering::Release);
            word.store(1, Ordering::Release);
        }
    }
}

/// Run `cpus` (two or more) in turns until the VM asks to exit.
pub(crate) fn run_round_robin<C: GuestCpu>(engine: &mut Engine<C>, cpus: &mut [Box<C>]) -> ExitCode {
    let vm = engine.vm().clone();
    for c in cpus.iter() {
        // SAFETY: the words live inside the boxed CPUs, borrowed for this whole call;
        // they are unregistered before it returns.
        unsafe { vm.register(&c.header().exit_request) };
    }
    let kicker = Kicker {
        words: cpus.iter().map(|c| &c.header().exit_request as *const AtomicU32 as usize).collect(),
        current: AtomicUsize::new(0),
        preempt: AtomicBool::new(false),
        stop: AtomicBool::new(false),
    };
    let mut states: Vec<VcpuState> = cpus.iter().map(|_| VcpuState::new()).collect();
    let icount0: Vec<u64> = cpus.iter().map(|c| c.header().icount).collect();
    let code = std::thread::scope(|s| {
        let k = &kicker;
        let spawned = std::thread::Builder::new().name("kite-rr-kick".into()).spawn_scoped(s, move || {
            // Parked rather than asleep: the exit below wakes it at once instead of
            // waiting out the slice (up to 1 ms on every multi-vCPU run's exit).
            while !k.stop.load(Ordering::Acquire) {
                std::thread::park_timeout(SLICE);
                if !k.stop.load(Ordering::Acquire) {
                    k.kick_current();
                }
            }
        });
        let kick_thread = match spawned {
            Ok(h) => Some(h.thread().clone()),
            Err(e) => {
                // Without slices one vCPU could spin forever waiting for another.
                log::error!("cannot start the vCPU scheduler thread: {e}");
                vm.request_exit(ExitCode::Exit(1));
                None
            }
        };
        let code = schedule(engine, cpus, &mut states, &kicker);
        kicker.stop.store(true, Ordering::Release);
        if let Some(t) = kick_thread {
            t.unpark();
        }
        code
    });
    for (c, ic0) in cpus.iter().zip(icount0) {
        engine.add_insns(c.header().icount.wrapping_sub(ic0));
        vm.unregister(&c.header().exit_request);
    }
    code
}

fn schedule<C: GuestCpu>(
    engine: &mut Engine<C>,
    cpus: &mut [Box<C>],
    states: &mut [VcpuState],
    kicker: &Kicker,
) -> ExitCode {
    let vm = engine.vm().clone();
    let n = cpus.len();
    let mut cur = n - 1;
    // The vCPU whose state is switched into the engine: one that yields (`pause`, a
    // spin-wait) with nobody else runnable goes on without a switch out and back in.
    let mut active: Option<usize> = None;
    loop {
        if let Some(code) = vm.exit_requested() {
            if let Some(a) = active {
                engine.switch_out(&cpus[a], &mut states[a]);
            }
            return code;
        }
        // The next runnable vCPU after `cur`, round robin.
        let next = (1..=n).map(|d| (cur + d) % n).find(|&i| !states[i].halted || cpus[i].has_wakeup());
        let Some(i) = next else {
            let idle = || cpus.iter().all(|c| !c.has_wakeup());
            let t0 = std::time::Instant::now();
            vm.wait(IDLE_POLL, idle);
            engine.add_idle(t0.elapsed());
            continue;
        };
        cur = i;
        if active != Some(i) {
            if let Some(a) = active {
                engine.switch_out(&cpus[a], &mut states[a]);
            }
            engine.switch_in(&mut cpus[i], &mut states[i]);
            active = Some(i);
        }
        let cpu = &mut cpus[i];
        let st = &mut states[i];
        if st.halted {
            st.halted = false;
            engine.wake(cpu);
        }
        kicker.current.store(i, Ordering::Release);
        kicker.preempt.store(false, Ordering::Release);
        let stop = engine.run_loop(&mut **cpu as *mut C, Some(&kicker.preempt));
        match stop {
            Stop::Exit(code) => {
                engine.switch_out(cpu, st);
                return code;
            }
            Stop::Halted => st.halted = true,
            Stop::Preempted => {}
        }
    }
}
