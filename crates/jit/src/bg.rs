//! Background compilation: a worker thread with its own [`Codegen`] compiles hot
//! interpreted blocks while the dispatcher keeps interpreting them.
//!
//! Protocol: the dispatcher sends a [`Job`] (the block, its TB id, the addresses of the
//! chain slots it allocated and keeps, and the engine constants baked into code); the
//! worker answers with the finished machine code as bytes ([`Done`]). Only the dispatcher
//! thread touches the code cache and the TB cache: it copies the bytes in and promotes the
//! TB when it polls ([`Bg::poll`]) at a dispatch.
//!
//! Invariants: generated code is position-independent apart from the absolute addresses in
//! the job (helpers, chain slots, context, jump-cache word), all of which stay valid while
//! the dispatcher holds the job's [`Pending`] entry (the slots box lives there). A result is
//! installed only if the TB id still holds the very block that was sent (`Arc::ptr_eq`; the
//! pending entry keeps that allocation alive, so the pointer cannot be reused): a TB
//! invalidated, flushed or replaced meanwhile simply drops the result.
//!
//! Pitfalls: results arrive in any order and after arbitrary delays; nothing may assume a
//! submitted TB gets compiled. Dropping [`Bg`] sets its stop flag and closes the channel;
//! the worker (detached, so never waited for) finishes its current job and drops whatever is
//! still queued. It only embeds the job's addresses in code, never reads through them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Instant;

use kite_ir::Block;

use crate::codegen::{Codegen, TbSpec};
use crate::tb::{ChainSlot, TbId};
use crate::JitError;

/// One block to compile.
pub(crate) struct Job {
    pub seq: u64,
    pub block: Arc<Block>,
    /// The block's loop region (see `TbSpec::members`).
    pub members: Vec<Arc<Block>>,
    pub id: TbId,
    pub mmu: usize,
    pub slots: Vec<u64>,
    pub slow: u64,
    pub slow_keep: u64,
    pub jump_cache: bool,
    pub direct: Option<crate::codegen::Direct>,
}

/// The worker's answer: machine code bytes or the reason compilation failed.
pub(crate) struct Done {
    pub seq: u64,
    pub code: Result<Vec<u8>, String>,
    pub ns: u64,
}

/// What the dispatcher keeps for a job in flight.
pub(crate) struct Pending {
    pub id: TbId,
    pub block: Arc<Block>,
    pub slots: Box<[ChainSlot]>,
}

/// Run the calling thread under `SCHED_IDLE`: compiling hot code ahead is only worth host
/// time that no vCPU thread wants. With one thread per vCPU on a host with as many cores,
/// a normal-priority compile thread per vCPU took a core share from the guest and cost
/// more than the faster code returned (a `-smp 2` boot on 2 host cores: 0.66 s against
/// 0.54 s without tier-up).
fn lower_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param`; pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        log::debug!("compile thread keeps normal priority: {}", std::io::Error::last_os_error());
    }
}

/// The dispatcher's side of the worker.
pub(crate) struct Bg {
    tx: Option<Sender<Job>>,
    rx: Receiver<Done>,
    next_seq: u64,
    /// Jobs sent and not yet answered (polling is skipped while zero).
    inflight: usize,
    pending: HashMap<u64, Pending>,
    /// Answers sent by the worker, and how many of them `poll` has seen: an atomic load
    /// per dispatch is much cheaper than a channel `try_recv`.
    answered: Arc<AtomicU64>,
    seen: u64,
    /// Set when the dispatcher goes away: the worker drops the jobs still queued instead
    /// of compiling them (nobody would install the results).
    stop: Arc<AtomicBool>,
}

impl Bg {
    pub(crate) fn new(verify: bool) -> Result<Bg, JitError> {
        let mut cg = Codegen::new(verify)?;
        let (tx, jobs) = channel::<Job>();
        let (done, rx) = channel::<Done>();
        let answered = Arc::new(AtomicU64::new(0));
        let answered_w = answered.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let stop_w = stop.clone();
        // Detached: see `Drop`.
        std::thread::Builder::new()
            .name("kite-jit-bg".into())
            .spawn(move || {
                lower_priority();
                while let Ok(job) = jobs.recv() {
                    if stop_w.load(Ordering::Acquire) {
                        break;
                    }
                    let t0 = Instant::now();
                    let spec = TbSpec {
                        block: &job.block,
                        members: &job.members,
                        mmu: job.mmu,
                        tb: job.id,
                        slots: &job.slots,
                        slow: job.slow,
                        slow_keep: job.slow_keep,
                        jump_cache: job.jump_cache,
                        direct: job.direct,
                    };
                    // A Cranelift panic is a Kite bug: contain it, the block stays interpreted.
                    let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        cg.compile(&spec).map(|c| c.to_vec())
                    }))
                    .unwrap_or_else(|_| Err("Cranelift panicked".into()));
                    let ns = t0.elapsed().as_nanos() as u64;
                    if done.send(Done { seq: job.seq, code, ns }).is_err() {
                        break;
                    }
                    answered_w.fetch_add(1, Ordering::Release);
                }
            })
            .map_err(|e| JitError::Isa(format!("cannot start the compile thread: {e}")))?;
        Ok(Bg { tx: Some(tx), rx, next_seq: 0, inflight: 0, pending: HashMap::new(), answered, seen: 0, stop })
    }

    /// Queue a job; `false` if the worker is gone (the caller compiles in place).
    pub(crate) fn submit(&mut self, mut job: Job, slots: Box<[ChainSlot]>) -> bool {
        let seq = self.next_seq;
        self.next_seq += 1;
        job.seq = seq;
        let p = Pending { id: job.id, block: job.block.clone(), slots };
        let Some(tx) = &self.tx else {
            return false;
        };
        if tx.send(job).is_err() {
            return false;
        }
        self.pending.insert(seq, p);
        self.inflight += 1;
        true
    }

    /// The next finished job with its pending entry, if any (non-blocking).
    pub(crate) fn poll(&mut self) -> Option<(Pending, Done)> {
        while self.inflight > 0 && self.answered.load(Ordering::Acquire) != self.seen {
            match self.rx.try_recv() {
                Ok(d) => {
                    self.inflight -= 1;
                    self.seen += 1;
                    if let Some(p) = self.pending.remove(&d.seq) {
                        return Some((p, d));
                    }
                }
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.inflight = 0;
                    return None;
                }
            }
        }
        None
    }

    /// Whether any job is still waiting for its answer.
    pub(crate) fn busy(&self) -> bool {
        self.inflight > 0
    }

    /// Forget every job in flight (after a full flush): their results are dropped.
    pub(crate) fn forget_all(&mut self) {
        self.pending.clear();
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        // The worker finishes its current job, then stops: a closed channel alone would
        // still hand it every queued job first (tens of milliseconds at a guest's exit).
        self.stop.store(true, Ordering::Release);
        self.tx = None;
        // The worker is not joined: at idle priority, on a host whose cores are all
        // busy, the rest of its current compile could hold a guest's exit for a long
        // time. It owns all it uses (its answer goes nowhere now), so it may finish on
        // its own or die with the process.
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_ir::{Builder, Exit};

    fn job(pc: u64) -> (Job, Box<[ChainSlot]>) {
        let mut b = Builder::new(pc);
        b.exit(Exit::Goto(pc + 4));
        let block = Arc::new(b.finish());
        let slots = crate::tb::TbCache::new_slots(0, 1);
        let addrs = vec![&slots[0] as *const ChainSlot as u64];
        let job = Job {
            seq: 0,
            block,
            members: Vec::new(),
            id: 0,
            mmu: 0,
            slots: addrs,
            slow: 0,
            slow_keep: 0,
            jump_cache: false,
            direct: None,
        };
        (job, slots)
    }

    /// Once stopped (as `Drop` does before closing the channel), the worker compiles none
    /// of the jobs still queued: draining them delayed a guest's exit by tens of ms.
    #[test]
    fn a_stopped_worker_drops_queued_jobs() {
        let mut bg = Bg::new(false).expect("compile thread");
        bg.stop.store(true, Ordering::Release);
        for k in 0..32 {
            let (j, s) = job(0x1000 + 0x100 * k);
            assert!(bg.submit(j, s));
        }
        let answered = bg.answered.clone();
        drop(bg);
        assert_eq!(answered.load(Ordering::Acquire), 0);
    }

    /// The same jobs without the stop flag are all answered (the test above is not vacuous).
    #[test]
    fn a_running_worker_answers_every_job() {
        let mut bg = Bg::new(false).expect("compile thread");
        for k in 0..4 {
            let (j, s) = job(0x1000 + 0x100 * k);
            assert!(bg.submit(j, s));
        }
        let mut got = 0;
        let t0 = Instant::now();
        while got < 4 && t0.elapsed() < std::time::Duration::from_secs(60) {
            if let Some((_, d)) = bg.poll() {
                assert!(d.code.is_ok(), "{:?}", d.code.err());
                got += 1;
            } else {
                std::thread::yield_now();
            }
        }
        assert_eq!(got, 4);
    }
}
