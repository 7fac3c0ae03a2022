//! Translator-side debugger support (gdb): breakpoints, watchpoints, single-step, and the
//! link between a vCPU thread and the stub thread.
//!
//! A child module of `engine` (declared there with `#[path]`) so its hooks can use the
//! dispatcher's private pieces without widening their visibility.
//!
//! How it works, like QEMU's TCG:
//! - **Breakpoints** (software and hardware alike) never modify guest memory. Setting or
//!   removing one flushes every TB when the vCPU resumes. A TB is then never translated
//!   across a breakpoint (the frontend is asked for fewer instructions), and the TB for a
//!   breakpoint pc is one `exit raise DEBUG_CAUSE` that stops before the instruction runs.
//!   A guest `ebreak` is an ordinary instruction and still traps to the guest.
//! - **Watchpoints** mark the TLB entries of watched pages with `tlb_flags::WATCH`, so every
//!   access to those pages takes the slow path, which compares the exact range. A hit raises
//!   `DEBUG_CAUSE` *before* the access (precise, nothing done). Where gdb expects that
//!   (`CpuRegs::WATCH_AFTER_ACCESS == false`, RISC-V: gdb's riscv port declares its
//!   watchpoints non-steppable, removes them, steps the instruction and then reports the
//!   old/new value) the stop is reported right there, pc = the accessing instruction.
//!   Otherwise (x86-style, and what QEMU does for every target) the engine executes that
//!   one instruction with watchpoints suppressed and reports with pc at the next one.
//!   Reporting after the access on RISC-V would make gdb step a second instruction.
//! - **Single-step** runs one 1-instruction TB from the dispatcher with interrupts masked
//!   (the exit-request word is not looked at). While stepping the TB cache holds only
//!   1-instruction TBs (flushed on entering and leaving step mode), so TB keys need no
//!   extra bit.
//! - **Stopping**: the stub sets `stop` and kicks every vCPU's exit-request word; the
//!   dispatcher checks `stop` only when it already handles an exit request, so a run with
//!   no debugger (or one that is not stopping the guest) costs nothing per TB.
//! - **While stopped** the vCPU thread parks in [`Engine::debug_stop`] and runs jobs the
//!   stub thread posts (closures over the CPU and the engine), one at a time, until one
//!   of them resumes it. The stub thread never touches the CPU state itself.
//!
//! Pitfalls: `DEBUG_CAUSE` is a pseudo exception cause that must never reach the target's
//! trap logic. With several vCPUs (`Engine::run_all`, round-robin on one thread) every
//! vCPU is a gdb thread and all are stopped together; a single-step always runs the vCPU
//! that stopped (gdb's current thread after a stop), whichever thread gdb names.

use std::any::Any;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use kite_core::debug::{BreakKind, CpuRegs, DebugError, DebugTarget, Resume, StopEvent, WatchKind};
use kite_core::{ExitCode, Fault, GuestCpu, PhysMemory, VmControl};
use kite_ir::state::{status, PAGE_MASK, PAGE_SIZE};
use kite_ir::{Access, Builder, Exit, Inst};

use super::Engine;
use crate::tb::{TbId, NO_TB};

/// The pseudo exception cause of a debug stop (breakpoint TB or watchpoint hit). No
/// target uses it: RISC-V causes are small, interrupts only set bit 63.
pub const DEBUG_CAUSE: u64 = u64::MAX;

/// Debug state the slow path reads (it lives in the engine context).
#[derive(Debug, Default)]
pub(crate) struct DebugState {
    pub watches: Vec<Watch>,
    /// Set while re-executing the instruction that hit a watchpoint.
    pub suppress: bool,
    /// The watchpoint hit that raised `DEBUG_CAUSE`, if any.
    pub hit: Option<(WatchKind, u64)>,
}

/// One watchpoint: `[addr, addr + len)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Watch {
    pub addr: u64,
    pub len: u64,
    pub kind: WatchKind,
}

impl DebugState {
    /// Whether the page of virtual address `vpage` has a watchpoint (TLB fill).
    pub fn watches_page(&self, vpage: u64) -> bool {
        self.watches.iter().any(|w| {
            let last = w.addr.wrapping_add(w.len.max(1) - 1);
            w.addr & PAGE_MASK <= vpage && vpage <= last & PAGE_MASK
        })
    }

    /// The watchpoint an access of `n` bytes at `vaddr` triggers (slow path).
    pub fn check(&self, vaddr: u64, n: u64, kind: Access) -> Option<(WatchKind, u64)> {
        if self.suppress {
            return None;
        }
        let write = kind == Access::Write;
        self.watches.iter().find_map(|w| {
            let wanted = match w.kind {
                WatchKind::Write => write,
                WatchKind::Read => !write,
                WatchKind::Access => true,
            };
            let overlaps = vaddr < w.addr.wrapping_add(w.len) && w.addr < vaddr.wrapping_add(n);
            (wanted && overlaps).then_some((w.kind, w.addr))
        })
    }
}

/// Record a watchpoint hit from the slow path: the access is not performed and the block
/// leaves with `DEBUG_CAUSE` at the accessing instruction. Returns true if it hit.
pub(crate) fn watch_hit<C: GuestCpu>(dbg: &mut DebugState, cpu: &mut C, vaddr: u64, n: u64, kind: Access) -> bool {
    let Some(hit) = dbg.check(vaddr, n, kind) else {
        return false;
    };
    dbg.hit = Some(hit);
    let h = cpu.header_mut();
    h.status = status::EXCEPTION;
    h.cause = DEBUG_CAUSE;
    h.tval = vaddr;
    true
}

/// A job the stub thread runs on the stopped vCPU thread.
type Job<C> = Box<dyn FnOnce(&mut Env<'_, C>) -> Box<dyn Any + Send> + Send>;

/// What a job sees: the stopped vCPU, the others (stopped too: they take turns on this
/// thread), and the engine.
pub(crate) struct Env<'a, C: GuestCpu> {
    cpu: &'a mut C,
    /// Index of `cpu` among `cpus`.
    me: usize,
    /// Every vCPU of `Engine::run_all` (empty when run through `Engine::run`).
    cpus: Vec<*mut C>,
    eng: &'a mut Engine<C>,
    resume: Option<Resume>,
}

impl<C: GuestCpu> Env<'_, C> {
    /// vCPU `n`, if it exists.
    fn vcpu(&mut self, n: usize) -> Option<&mut C> {
        if n == self.me {
            return Some(&mut *self.cpu);
        }
        let p = *self.cpus.get(n)?;
        // SAFETY: the pointers come from the `&mut [Box<C>]` that `run_all` holds for the
        // whole run; every vCPU runs on this thread, which is parked in the debugger, so
        // none of them is in use, and `n != me` so this does not alias `self.cpu`.
        Some(unsafe { &mut *p })
    }
}

struct LinkState<C: GuestCpu> {
    /// The vCPU thread is parked and runs jobs.
    parked: bool,
    /// A stop not yet reported to the stub.
    event: Option<StopEvent>,
    /// The vCPU that is parked.
    vcpu: usize,
    jobs: VecDeque<Job<C>>,
    reply: Option<Box<dyn Any + Send>>,
}

struct Shared<C: GuestCpu> {
    st: Mutex<LinkState<C>>,
    cv: Condvar,
    /// The stub asked the vCPUs to stop.
    stop: AtomicBool,
    /// gdb considers the vCPUs stopped (survives a machine reset).
    held: AtomicBool,
    /// How many vCPUs the engine runs.
    nvcpus: std::sync::atomic::AtomicUsize,
    /// Report watchpoints after the access (`CpuRegs::WATCH_AFTER_ACCESS`).
    watch_after: bool,
    /// A debugger is connected (cleared by the stub only after its last packet is sent).
    session: AtomicBool,
    /// The current machine's control (replaced when a reset rebuilds the machine).
    vm: Mutex<Arc<VmControl>>,
}

impl<C: GuestCpu> Shared<C> {
    fn vm(&self) -> Arc<VmControl> {
        self.vm.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The handle the stub thread holds: implements [`DebugTarget`] for a translated machine.
/// Cloned into the engine with [`Engine::attach_debugger`].
pub struct DebugLink<C: GuestCpu> {
    shared: Arc<Shared<C>>,
}

impl<C: GuestCpu> Clone for DebugLink<C> {
    fn clone(&self) -> Self {
        DebugLink { shared: self.shared.clone() }
    }
}

impl<C: GuestCpu> std::fmt::Debug for DebugLink<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DebugLink").field("stop", &self.shared.stop.load(Ordering::Relaxed)).finish()
    }
}

/// How long the stub waits for a parked vCPU to answer one job before giving up.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a job waits for the vCPU of a machine that is being reset to park again.
const RESET_WAIT: Duration = Duration::from_secs(10);
/// How often a parked vCPU re-checks for a VM exit while waiting for jobs.
const PARK_POLL: Duration = Duration::from_millis(50);

impl<C: GuestCpu + CpuRegs> DebugLink<C> {
    pub fn new(vm: Arc<VmControl>) -> DebugLink<C> {
        DebugLink {
            shared: Arc::new(Shared {
                st: Mutex::new(LinkState { parked: false, event: None, vcpu: 0, jobs: VecDeque::new(), reply: None }),
                cv: Condvar::new(),
                stop: AtomicBool::new(false),
                held: AtomicBool::new(false),
                nvcpus: std::sync::atomic::AtomicUsize::new(1),
                watch_after: C::WATCH_AFTER_ACCESS,
                session: AtomicBool::new(false),
                vm: Mutex::new(vm),
            }),
        }
    }
}

impl<C: GuestCpu> DebugLink<C> {
    /// The machine has ended: give a connected debugger up to `timeout` to be told
    /// (gdb then prints the exit status instead of "connection closed"). Waits for the
    /// session to end, not merely for the stub to notice the exit: the stub still has to
    /// write the exit packet, and returning earlier lets the process exit first.
    pub fn finish(&self, timeout: Duration) {
        let t0 = std::time::Instant::now();
        while self.shared.session.load(Ordering::SeqCst) && t0.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Use this link for a (re)built machine whose first vCPU is `cpu`. With `freeze`
    /// (`-S`), or if gdb had the previous machine stopped (`monitor system_reset`), the
    /// vCPU stops before its first instruction.
    pub fn rebind(&self, vm: Arc<VmControl>, cpu: &C, freeze: bool) {
        *self.shared.vm.lock().unwrap_or_else(|e| e.into_inner()) = vm;
        if freeze || self.shared.held.load(Ordering::SeqCst) {
            self.shared.stop.store(true, Ordering::SeqCst);
            cpu.header().exit_request.store(1, Ordering::SeqCst);
        }
    }

    fn lock(&self) -> MutexGuard<'_, LinkState<C>> {
        self.shared.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gone(&self) -> bool {
        self.shared.vm().exit_requested().is_some()
    }

    /// Run `f` on the parked vCPU thread and return its result.
    fn call<R: Send + 'static>(&self, f: impl FnOnce(&mut Env<'_, C>) -> R + Send + 'static) -> Result<R, DebugError> {
        let mut st = self.lock();
        let t0 = std::time::Instant::now();
        while !st.parked {
            // While gdb holds the machine stopped, a reset rebuilds it and the new vCPU
            // parks again shortly: wait for that rather than fail.
            if !self.shared.held.load(Ordering::SeqCst) || t0.elapsed() > RESET_WAIT {
                return Err(if self.gone() { DebugError::Gone } else { DebugError::NotStopped });
            }
            st = self.shared.cv.wait_timeout(st, Duration::from_millis(10)).unwrap_or_else(|e| e.into_inner()).0;
        }
        st.reply = None;
        st.jobs.push_back(Box::new(move |env| Box::new(f(env)) as Box<dyn Any + Send>));
        self.shared.cv.notify_all();
        let t0 = std::time::Instant::now();
        loop {
            if let Some(r) = st.reply.take() {
                return r.downcast::<R>().map(|b| *b).map_err(|_| DebugError::Gone);
            }
            // A reset while gdb holds the machine leaves the job queued for the vCPU of
            // the rebuilt machine; only a real end (or a wedged vCPU) gives up.
            let held = self.shared.held.load(Ordering::SeqCst);
            if (self.gone() && !held) || t0.elapsed() > JOB_TIMEOUT {
                // Never let the abandoned job answer a later call.
                st.jobs.clear();
                return Err(DebugError::Gone);
            }
            st = self.shared.cv.wait_timeout(st, PARK_POLL).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn check_vcpu(&self, vcpu: usize) -> Result<(), DebugError> {
        if vcpu < self.shared.nvcpus.load(Ordering::SeqCst) {
            Ok(())
        } else {
            Err(DebugError::NoVcpu(vcpu))
        }
    }
}

impl<C: GuestCpu + CpuRegs> DebugTarget for DebugLink<C> {
    fn target_xml(&self) -> &'static str {
        C::TARGET_XML
    }

    fn g_regs(&self) -> &'static [usize] {
        C::G_REGS
    }

    fn num_vcpus(&self) -> usize {
        self.shared.nvcpus.load(Ordering::SeqCst)
    }

    fn interrupt(&self) {
        let mut st = self.lock();
        if st.parked {
            // Already stopped: the stub still gets exactly one event for its request.
            if st.event.is_none() {
                st.event = Some(StopEvent::Signal { vcpu: st.vcpu });
            }
            self.shared.cv.notify_all();
            return;
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        drop(st);
        self.shared.vm().kick_all();
    }

    fn wait_stop(&self, timeout: Duration) -> Option<StopEvent> {
        let mut st = self.lock();
        let t0 = std::time::Instant::now();
        loop {
            if let Some(e) = st.event.take() {
                return Some(e);
            }
            if let Some(ExitCode::Exit(code)) = self.shared.vm().exit_requested() {
                return Some(StopEvent::Exited(code));
            }
            let left = timeout.saturating_sub(t0.elapsed());
            if left.is_zero() {
                return None;
            }
            st = self.shared.cv.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn resume(&self, how: Resume) -> Result<(), DebugError> {
        if let Resume::Step { vcpu } = how {
            self.check_vcpu(vcpu)?;
        }
        self.call(move |env| env.resume = Some(how))
    }

    fn read_reg(&self, vcpu: usize, n: usize) -> Result<Vec<u8>, DebugError> {
        self.check_vcpu(vcpu)?;
        self.call(move |env| {
            let mut v = Vec::new();
            env.vcpu(vcpu)?.gdb_read_reg(n, &mut v).then_some(v)
        })?
        .ok_or(DebugError::NoRegister(n))
    }

    fn write_reg(&self, vcpu: usize, n: usize, data: &[u8]) -> Result<(), DebugError> {
        self.check_vcpu(vcpu)?;
        let data = data.to_vec();
        let ok = self.call(move |env| {
            let ok = env.vcpu(vcpu).is_some_and(|c| c.gdb_write_reg(n, &data));
            // The pc or TB-key state may have changed: drop any pending chain link.
            env.eng.pending = None;
            ok
        })?;
        ok.then_some(()).ok_or(DebugError::NoRegister(n))
    }

    fn read_mem(&self, vcpu: usize, addr: u64, len: usize, phys: bool) -> Result<Vec<u8>, DebugError> {
        self.check_vcpu(vcpu)?;
        self.call(move |env| env.mem(vcpu, addr, len, phys, None))
    }

    fn write_mem(&self, vcpu: usize, addr: u64, data: &[u8], phys: bool) -> Result<(), DebugError> {
        self.check_vcpu(vcpu)?;
        let data = data.to_vec();
        let want = data.len();
        let n = self.call(move |env| env.mem(vcpu, addr, want, phys, Some(&data)).len())?;
        (n == want).then_some(()).ok_or(DebugError::BadAddress(addr))
    }

    fn breakpoint(&self, kind: BreakKind, addr: u64, on: bool) -> Result<bool, DebugError> {
        self.call(move |env| {
            let dbg = env.eng.dbg.get_or_insert_with(Attached::default);
            let had = dbg.bps.iter().position(|&(a, k)| a == addr && k == kind);
            let changed = match (on, had) {
                (true, None) => {
                    dbg.bps.push((addr, kind));
                    true
                }
                (false, Some(i)) => {
                    dbg.bps.swap_remove(i);
                    true
                }
                (true, Some(_)) => return true,
                (false, None) => return false,
            };
            dbg.dirty |= changed;
            true
        })
    }

    fn watchpoint(&self, kind: WatchKind, addr: u64, len: u64, on: bool) -> Result<bool, DebugError> {
        if len == 0 {
            return Ok(false);
        }
        self.call(move |env| {
            let w = Watch { addr, len, kind };
            let ws = &mut env.eng.ctx().dbg.watches;
            let r = match ws.iter().position(|x| *x == w) {
                None if on => {
                    ws.push(w);
                    true
                }
                Some(i) if !on => {
                    ws.swap_remove(i);
                    true
                }
                Some(_) => true,
                None => false,
            };
            // Existing TLB entries must gain (or lose) the WATCH flag.
            for n in 0..env.cpus.len().max(1) {
                if let Some(c) = env.vcpu(n) {
                    c.header_mut().tlb_flush_all();
                }
            }
            r
        })
    }

    fn clear_debug(&self) -> Result<(), DebugError> {
        self.call(|env| {
            if let Some(d) = env.eng.dbg.as_mut() {
                d.dirty |= !d.bps.is_empty();
                d.bps.clear();
            }
            env.eng.ctx().dbg.watches.clear();
            for n in 0..env.cpus.len().max(1) {
                if let Some(c) = env.vcpu(n) {
                    c.header_mut().tlb_flush_all();
                }
            }
        })
    }

    fn dump_registers(&self, vcpu: usize) -> Result<String, DebugError> {
        self.check_vcpu(vcpu)?;
        self.call(move |env| env.vcpu(vcpu).map(|c| c.dump_state()))?.ok_or(DebugError::NoVcpu(vcpu))
    }

    fn system_reset(&self) {
        self.shared.vm().request_exit(ExitCode::Reset);
        self.shared.cv.notify_all();
    }

    fn session(&self, active: bool) {
        self.shared.session.store(active, Ordering::SeqCst);
    }

    fn quit(&self, code: i32) {
        self.shared.held.store(false, Ordering::SeqCst);
        self.shared.vm().request_exit(ExitCode::Exit(code));
        self.shared.cv.notify_all();
    }
}

impl<C: GuestCpu> Env<'_, C> {
    /// Read `len` bytes at `addr` (or write `data` there), virtual through the vCPU's
    /// current data MMU view or physical; stops at the first byte that is not RAM or not
    /// mapped. Returns the bytes read (for a write: the bytes covered).
    fn mem(&mut self, vcpu: usize, addr: u64, len: usize, phys: bool, data: Option<&[u8]>) -> Vec<u8> {
        let mem = self.eng.ctx().mem.clone();
        let Some(cpu) = self.vcpu(vcpu) else {
            return Vec::new();
        };
        let cpu: *mut C = cpu;
        // SAFETY: as in `vcpu`; this is the only reference to that vCPU in this function.
        let cpu = unsafe { &mut *cpu };
        let mmu = cpu.mmu_index(cpu.tb_flags()).min(kite_ir::state::MMU_MODES - 1);
        let mut out = Vec::with_capacity(len);
        let mut done = 0usize;
        while done < len {
            let a = addr.wrapping_add(done as u64);
            let pa = if phys {
                a
            } else {
                match cpu.translate_addr(a, Access::Read, mmu, &*mem) {
                    Ok(p) => p,
                    Err(_) => break,
                }
            };
            let Some((p, left)) = mem.ram_ptr(pa) else {
                break;
            };
            let in_page = PAGE_SIZE - (a & !PAGE_MASK);
            let n = ((len - done) as u64).min(left).min(in_page) as usize;
            match data {
                Some(d) => {
                    // SAFETY: `p` points at `left >= n` bytes of guest RAM; the guest is
                    // stopped, so nothing else accesses them now.
                    unsafe { std::ptr::copy_nonoverlapping(d[done..].as_ptr(), p, n) };
                    let page = pa & PAGE_MASK;
                    let ctx = self.eng.ctx();
                    if ctx.tbs.is_code_page(page) {
                        let (k, _) = ctx.tbs.invalidate_page(page, NO_TB);
                        ctx.stats.tbs_invalidated += k;
                    }
                    out.extend_from_slice(&d[done..done + n]);
                }
                None => {
                    // SAFETY: as above, reading.
                    out.extend_from_slice(unsafe { std::slice::from_raw_parts(p, n) });
                }
            }
            done += n;
        }
        out
    }
}

/// The engine's debugger state (present once a debugger is attached).
pub(crate) struct Attached<C: GuestCpu> {
    link: Option<DebugLink<C>>,
    /// Breakpoints: virtual pc and kind.
    pub bps: Vec<(u64, BreakKind)>,
    /// Breakpoints changed since TBs were last flushed.
    pub dirty: bool,
    /// The TB cache holds 1-instruction TBs (single-step mode).
    pub stepping: bool,
    /// `opts.single_step` before step mode was entered.
    saved_single_step: bool,
    /// The vCPUs of the current `run_all` (see [`Env::vcpu`]).
    cpus: Vec<*mut C>,
}

impl<C: GuestCpu> Default for Attached<C> {
    fn default() -> Self {
        Attached {
            link: None,
            bps: Vec::new(),
            dirty: false,
            stepping: false,
            saved_single_step: false,
            cpus: Vec::new(),
        }
    }
}

impl<C: GuestCpu> Engine<C> {
    /// Let a debugger stop and inspect this engine's vCPU through `link`.
    pub fn attach_debugger(&mut self, link: &DebugLink<C>) {
        let a = self.dbg.get_or_insert_with(Attached::default);
        a.link = Some(link.clone());
    }

    /// `run_all` starts (or, with an empty slice, ends): remember the vCPUs so a stopped
    /// debugger can reach all of them.
    pub(super) fn debug_set_cpus(&mut self, cpus: &mut [Box<C>]) {
        let Some(a) = self.dbg.as_mut() else {
            return;
        };
        a.cpus = cpus.iter_mut().map(|c| &mut **c as *mut C).collect();
        if let (Some(l), false) = (&a.link, cpus.is_empty()) {
            l.shared.nvcpus.store(cpus.len(), Ordering::SeqCst);
        }
    }

    /// The index of vCPU `cpu` in `run_all`'s slice (0 when run alone).
    fn vcpu_index(&self, cpu: *mut C) -> usize {
        self.dbg.as_ref().and_then(|a| a.cpus.iter().position(|&p| p == cpu)).unwrap_or(0)
    }

    /// Called when an exit request is handled: stop if the debugger asked for it.
    pub(super) fn debug_poll(&mut self, cpu: &mut C) {
        let cpu_ptr: *mut C = cpu;
        let Some(link) = self.dbg.as_ref().and_then(|a| a.link.clone()) else {
            return;
        };
        if link.shared.stop.swap(false, Ordering::SeqCst) {
            let vcpu = self.vcpu_index(cpu_ptr);
            self.debug_stop(cpu_ptr, StopEvent::Signal { vcpu });
        }
    }

    /// A `DEBUG_CAUSE` exception: a breakpoint TB or a watchpoint hit.
    pub(super) fn debug_trap(&mut self, cpu: &mut C) {
        let cpu_ptr: *mut C = cpu;
        self.pending = None;
        if self.dbg.is_none() {
            return;
        }
        let after = self.dbg.as_ref().and_then(|a| a.link.as_ref()).is_some_and(|l| l.shared.watch_after);
        let vcpu = self.vcpu_index(cpu_ptr);
        let ev = match self.ctx().dbg.hit.take() {
            Some((kind, addr)) if !after => StopEvent::Watch { vcpu, kind, addr },
            Some((kind, addr)) => {
                self.enter_step_mode();
                self.ctx().dbg.suppress = true;
                self.step_one(cpu_ptr);
                self.ctx().dbg.suppress = false;
                StopEvent::Watch { vcpu, kind, addr }
            }
            None => {
                // SAFETY: no TB is running; shared access for the pc only.
                let pc = unsafe { (*cpu_ptr).header().pc };
                let kind = self
                    .dbg
                    .as_ref()
                    .and_then(|a| a.bps.iter().find(|b| b.0 == pc).map(|b| b.1))
                    .unwrap_or(BreakKind::Sw);
                StopEvent::Break { vcpu, kind }
            }
        };
        self.debug_stop(cpu_ptr, ev);
    }

    /// Park, report `ev`, serve the stub's jobs; single-step as asked; return on continue
    /// or when the VM exits.
    fn debug_stop(&mut self, cpu_ptr: *mut C, mut ev: StopEvent) {
        loop {
            match self.park(cpu_ptr, ev) {
                None => return,
                Some(Resume::Continue) => {
                    self.leave_step_mode();
                    if self.dbg.as_mut().is_some_and(|a| std::mem::take(&mut a.dirty)) {
                        self.full_flush();
                    }
                    // Interrupts that arrived while stopped are looked at right away.
                    // SAFETY: no TB is running.
                    unsafe { (*cpu_ptr).header().exit_request.store(1, Ordering::SeqCst) };
                    return;
                }
                Some(Resume::Step { .. }) => {
                    if self.dbg.as_mut().is_some_and(|a| std::mem::take(&mut a.dirty)) {
                        self.full_flush();
                    }
                    self.enter_step_mode();
                    let vcpu = self.vcpu_index(cpu_ptr);
                    ev = match self.step_one(cpu_ptr) {
                        Some((kind, addr)) => StopEvent::Watch { vcpu, kind, addr },
                        None => StopEvent::DoneStep { vcpu },
                    };
                }
            }
        }
    }

    /// Report `ev` and run jobs until one resumes; `None` if the VM exits meanwhile.
    fn park(&mut self, cpu_ptr: *mut C, ev: StopEvent) -> Option<Resume> {
        let link = self.dbg.as_ref().and_then(|a| a.link.clone())?;
        let sh = &link.shared;
        let me = self.vcpu_index(cpu_ptr);
        let cpus = self.dbg.as_ref().map(|a| a.cpus.clone()).unwrap_or_default();
        let mut st = link.lock();
        st.parked = true;
        st.vcpu = me;
        st.event = Some(ev);
        sh.stop.store(false, Ordering::SeqCst);
        sh.held.store(true, Ordering::SeqCst);
        sh.cv.notify_all();
        let vm = sh.vm();
        loop {
            if vm.exit_requested().is_some() {
                st.parked = false;
                sh.cv.notify_all();
                return None;
            }
            let Some(job) = st.jobs.pop_front() else {
                st = sh.cv.wait_timeout(st, PARK_POLL).unwrap_or_else(|e| e.into_inner()).0;
                continue;
            };
            drop(st);
            // SAFETY: the vCPU is stopped in the dispatcher (no TB runs), and this is the
            // only live reference to it while the job runs.
            let cpu = unsafe { &mut *cpu_ptr };
            let mut env = Env { cpu, me, cpus: cpus.clone(), eng: self, resume: None };
            let r = job(&mut env);
            let resume = env.resume;
            st = link.lock();
            st.reply = Some(r);
            sh.cv.notify_all();
            if let Some(how) = resume {
                st.parked = false;
                // A stop gdb never asked about (a re-stop after reset) is stale now.
                st.event = None;
                sh.held.store(false, Ordering::SeqCst);
                return Some(how);
            }
        }
    }

    /// Make the TB cache hold 1-instruction TBs only.
    fn enter_step_mode(&mut self) {
        let Some(a) = self.dbg.as_mut() else {
            return;
        };
        if !a.stepping {
            a.stepping = true;
            a.saved_single_step = self.opts.single_step;
            self.opts.single_step = true;
            self.full_flush();
        }
    }

    fn leave_step_mode(&mut self) {
        let Some(a) = self.dbg.as_mut() else {
            return;
        };
        if a.stepping {
            a.stepping = false;
            self.opts.single_step = a.saved_single_step;
            self.full_flush();
        }
    }

    /// Execute exactly one instruction (or take the exception it raises), interrupts
    /// masked. Returns the watchpoint it hit, if any (the access then completes).
    fn step_one(&mut self, cpu_ptr: *mut C) -> Option<(WatchKind, u64)> {
        for _ in 0..4 {
            {
                // SAFETY: no TB is running.
                let cpu = unsafe { &mut *cpu_ptr };
                // A kick would make the TB leave before its instruction; interrupts stay
                // masked during a step, and the kick is re-raised when the guest continues.
                cpu.header().exit_request.store(0, Ordering::SeqCst);
                self.handle_flush(cpu);
            }
            let id = self.find_tb(cpu_ptr)?;
            let r = self.exec(cpu_ptr, id);
            self.pending = None;
            // SAFETY: the TB has returned.
            let cpu = unsafe { &mut *cpu_ptr };
            if r == status::EXIT_REQUEST as u64 {
                continue;
            }
            if r == status::EXCEPTION as u64 && cpu.header().cause == DEBUG_CAUSE {
                let hit = self.ctx().dbg.hit.take()?;
                let after = self.dbg.as_ref().and_then(|a| a.link.as_ref()).is_some_and(|l| l.shared.watch_after);
                if !after {
                    // Stopped before the access: nothing of the instruction ran.
                    return Some(hit);
                }
                let was = std::mem::replace(&mut self.ctx().dbg.suppress, true);
                let id = self.find_tb(cpu_ptr);
                if let Some(id) = id {
                    let r = self.exec(cpu_ptr, id);
                    self.handle_ret(cpu_ptr, r);
                }
                self.pending = None;
                self.ctx().dbg.suppress = was;
                return Some(hit);
            }
            self.handle_ret(cpu_ptr, r);
            self.pending = None;
            return None;
        }
        None
    }

    /// Translation hook: the TB for a breakpoint pc stops before its instruction.
    /// `Some(result)` if this pc is a breakpoint (outside step mode).
    pub(super) fn debug_bp_tb(
        &mut self,
        cpu: &mut C,
        pc: u64,
        flags: u32,
        phys: u64,
        mmu: usize,
    ) -> Option<Option<TbId>> {
        let a = self.dbg.as_ref()?;
        if a.stepping || !a.bps.iter().any(|b| b.0 == pc) {
            return None;
        }
        let mut b = Builder::new(pc);
        b.insn_start(pc);
        let t = b.const64(pc);
        b.exit(Exit::Raise { cause: DEBUG_CAUSE, tval: t });
        b.set_extent(1, 2);
        let block = b.finish();
        let id = match self.install(cpu, block.clone(), phys, None, flags, mmu) {
            Ok(id) => id,
            Err(()) => {
                self.full_flush();
                self.install(cpu, block, phys, None, flags, mmu).ok()?
            }
        };
        self.ctx().tbs.jc_set(pc, flags, id);
        Some(Some(id))
    }

    /// Translation hook: how many instructions the TB at `pc` may hold so that it ends
    /// right before a breakpoint (`default` when no breakpoint is in reach).
    pub(super) fn debug_max_insns(&self, cpu: &mut C, pc: u64, flags: u32, mmu: usize, default: u32) -> u32 {
        let Some(a) = self.dbg.as_ref() else {
            return default;
        };
        let page0 = pc & PAGE_MASK;
        let page1 = page0.wrapping_add(PAGE_SIZE);
        let reach = page1.wrapping_add(PAGE_SIZE);
        if a.stepping || !a.bps.iter().any(|&(b, _)| b > pc && b < reach) {
            return default;
        }
        // Ask the frontend where its instructions start (code bytes through the MMU).
        // SAFETY: the context outlives this call; only its memory map is read.
        let mem = unsafe { self.ctx.as_ref() }.mem.clone();
        let p0 = cpu.translate_addr(page0, Access::Exec, mmu, &*mem).ok();
        let p1 = cpu.translate_addr(page1, Access::Exec, mmu, &*mem).ok();
        let cpu: &C = cpu;
        let mut fetch = |va: u64| -> Result<u16, Fault> {
            let mut v = 0u16;
            for i in 0..2u64 {
                let a = va.wrapping_add(i);
                let base = match a & PAGE_MASK {
                    p if p == page0 => p0,
                    p if p == page1 => p1,
                    _ => None,
                };
                let host = base.and_then(|b| mem.ram_ptr(b + (a & !PAGE_MASK)));
                let Some((p, _)) = host else {
                    return Err(cpu.fault_for(kite_core::guest::FaultKind::AccessFault, Access::Exec, a));
                };
                // SAFETY: `ram_ptr` returned a pointer to at least one byte of RAM.
                v |= (unsafe { p.read() } as u16) << (8 * i);
            }
            Ok(v)
        };
        let mut b = Builder::new(pc);
        cpu.translate_block(pc, flags, kite_core::guest::TbLimits { max_insns: default }, &mut fetch, &mut b);
        let block = b.finish();
        let starts = block.insts.iter().filter_map(|i| match i {
            Inst::InsnStart { pc } => Some(*pc),
            _ => None,
        });
        for (k, start) in starts.enumerate() {
            if k > 0 && a.bps.iter().any(|b| b.0 == start) {
                return (k as u32).min(default);
            }
        }
        default
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(ws: &[(u64, u64, WatchKind)]) -> DebugState {
        DebugState {
            watches: ws.iter().map(|&(addr, len, kind)| Watch { addr, len, kind }).collect(),
            ..DebugState::default()
        }
    }

    #[test]
    fn watch_ranges_and_kinds() {
        let d = state(&[(0x1000, 8, WatchKind::Write), (0x2004, 4, WatchKind::Read), (0x3000, 1, WatchKind::Access)]);
        assert_eq!(d.check(0x1000, 8, Access::Write), Some((WatchKind::Write, 0x1000)));
        assert_eq!(d.check(0x1007, 1, Access::Write), Some((WatchKind::Write, 0x1000)), "last byte");
        assert_eq!(d.check(0x0ffc, 8, Access::Write), Some((WatchKind::Write, 0x1000)), "overlapping from below");
        assert_eq!(d.check(0x1008, 8, Access::Write), None, "just past the end");
        assert_eq!(d.check(0x0ff8, 8, Access::Write), None, "just before");
        assert_eq!(d.check(0x1000, 8, Access::Read), None, "write watch ignores reads");
        assert_eq!(d.check(0x2000, 8, Access::Read), Some((WatchKind::Read, 0x2004)));
        assert_eq!(d.check(0x2004, 4, Access::Write), None, "read watch ignores writes");
        assert_eq!(d.check(0x3000, 1, Access::Read), Some((WatchKind::Access, 0x3000)));
        assert_eq!(d.check(0x3000, 1, Access::Write), Some((WatchKind::Access, 0x3000)));
        let quiet = DebugState { suppress: true, ..state(&[(0x1000, 8, WatchKind::Write)]) };
        assert_eq!(quiet.check(0x1000, 8, Access::Write), None, "suppressed while re-executing");
    }

    #[test]
    fn watched_pages() {
        let d = state(&[(0x1ffc, 8, WatchKind::Write)]);
        assert!(d.watches_page(0x1000));
        assert!(d.watches_page(0x2000), "the range crosses into the next page");
        assert!(!d.watches_page(0x3000));
        assert!(!d.watches_page(0x0000));
        let top = state(&[(u64::MAX - 3, 4, WatchKind::Read)]);
        assert!(top.watches_page(PAGE_MASK), "no overflow at the top of the address space");
    }
}
