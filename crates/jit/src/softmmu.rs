//! The softmmu slow path, shared by generated code and the interpreter tier.
//!
//! Generated code probes `header.tlb[mmu]` inline and calls [`slow_access`] when the tag
//! does not match (TLB miss, flag bits such as MMIO/CODE, misalignment, page crossing).
//! The slow path translates the address through the target, looks it up in the
//! [`PhysMap`], fills the TLB for RAM pages, performs the access, and on a fault records
//! `status`/`cause`/`tval` in the header for the generated code to act on.
//!
//! A store to a page holding translated code first invalidates the TBs whose code it
//! overlaps (the page's TLB write entries keep the CODE flag while any TB remains); if
//! the running TB was among them the header status becomes `LOOKUP` so the block exits right
//! after the store.
//!
//! `info` (the constant passed by generated code) packs: bits 0-6 `MemOp::encode`,
//! bits 7-8 the MMU index, bits 9-40 the running TB id plus one (0 = none), bits 41-52
//! the exit bookkeeping of [`fixup_info`], bits 56-59 the [`RmwOp`] index plus one for an
//! atomic (0 = a plain access).
//!
//! Atomics ([`kite_ir::Inst::Atomic`]) always come here (they are rare): a TLB probe,
//! then the usual translation, and on RAM a host atomic instruction on the guest's
//! memory, so they stay atomic against other vCPU threads' plain and atomic accesses.

use kite_core::guest::FaultKind;
use kite_core::{Fault, GuestCpu};
use kite_ir::interp::{extend_load, Env};
use kite_ir::state::{status, tlb_cmp_key, tlb_flags, CpuHeader, PAGE_MASK, PAGE_SIZE};
use kite_ir::{Access, MemOp, RmwOp, Ty};
use kite_memory::{Hit, PhysMap};

use crate::engine::Ctx;
use crate::tb::{TbId, NO_TB};

const ATOMIC_SHIFT: u32 = 56;
/// Bits 41-50: instructions of the block not yet completed at this access (itself
/// included); bit 51: the slow path does the exit bookkeeping; bit 52: it is a store
/// (whose `expected` argument is the next instruction's pc).
const REM_SHIFT: u32 = 41;
const FIXUP: u64 = 1 << 51;
const HAS_NEXT: u64 = 1 << 52;

/// The `info` bits that make [`slow_access`] do the exit bookkeeping generated code
/// would otherwise inline after every slow path: when the access leaves a status, un-count
/// the `rem` instructions that did not run (`rem - 1` after a store that completed) and,
/// for a completed store, set `pc` to the next instruction (passed as `expected`). The
/// code then only tests the status and returns it. Keeps compiled blocks small.
pub(crate) fn fixup_info(rem: u32, store: bool) -> u64 {
    FIXUP | ((rem.min(0x3ff) as u64) << REM_SHIFT) | if store { HAS_NEXT } else { 0 }
}

/// The `info` bits that make a slow-path call an atomic `op` (or with [`info`]).
pub(crate) fn atomic_info(op: RmwOp) -> u64 {
    (op.index() as u64 + 1) << ATOMIC_SHIFT
}

/// Build the `info` word for [`slow_access`].
pub(crate) fn info(mop: MemOp, kind: Access, mmu: usize, tb: TbId) -> u64 {
    let tb1 = if tb == NO_TB { 0 } else { tb as u64 + 1 };
    mop.encode(kind) as u64 | ((mmu as u64 & 3) << MemOp::ENCODED_BITS) | (tb1 << (MemOp::ENCODED_BITS + 2))
}

/// The slow path called by generated code. Returns the loaded value extended to 64 bits
/// per the `MemOp` (0 for stores and on a fault; the caller checks the header status).
///
/// # Safety
/// `ctx` must point at the engine context that compiled the calling code, `cpu` at the
/// `C` being run; no Rust reference to either may be live (the dispatcher guarantees it).
pub(crate) unsafe extern "C" fn slow_access<C: GuestCpu>(
    ctx: *mut Ctx<C>,
    cpu: *mut u8,
    vaddr: u64,
    info: u64,
    val: u64,
    expected: u64,
) -> u64 {
    // A context shared by vCPU threads is theirs only under the translator lock
    // (`crate::shared`; nothing if this thread holds it: interpreted blocks run under it).
    // SAFETY: `mt` is written once, before any vCPU runs, and only read afterwards.
    let mt = unsafe { &*std::ptr::addr_of!((*ctx).mt) }.as_deref();
    let _held = mt.map(crate::shared::Threads::lock);
    // SAFETY: per this function's contract both pointers are valid, and unaliased for the
    // duration of the call (a shared context: the lock is held).
    let (ctx, cpu) = unsafe { (&mut *ctx, &mut *(cpu as *mut C)) };
    let r = match RmwOp::from_index(((info >> ATOMIC_SHIFT) as u32 & 15).wrapping_sub(1)) {
        // The old value is extended per the MemOp, as for loads (an `lr.w`/`sc.w` pair
        // compares sign-extended words: returning it raw made every SC of a negative
        // word fail, forever).
        Some(op) => atomic(ctx, cpu, vaddr, info, op, val, expected).map(|raw| {
            let (mop, _) = MemOp::decode((info & ((1 << MemOp::ENCODED_BITS) - 1)) as u32);
            extend_load(raw, mop, Ty::I64)
        }),
        None => access(ctx, cpu, vaddr, info, val),
    }
    .unwrap_or(0);
    if info & FIXUP != 0 && cpu.header().status != status::NONE {
        let h = cpu.header_mut();
        let rem = (info >> REM_SHIFT) & 0x3ff;
        if h.status == status::EXCEPTION {
            h.icount = h.icount.wrapping_sub(rem);
        } else if info & HAS_NEXT != 0 {
            h.icount = h.icount.wrapping_sub(rem.saturating_sub(1));
            h.pc = expected;
        } else {
            h.icount = h.icount.wrapping_sub(rem);
        }
    }
    r
}

fn raise<C: GuestCpu>(cpu: &mut C, f: Fault) {
    let h = cpu.header_mut();
    h.status = status::EXCEPTION;
    h.cause = f.cause;
    h.tval = f.tval;
}

/// Perform one guest access through the slow path. `None` after recording a fault.
pub(crate) fn access<C: GuestCpu>(ctx: &mut Ctx<C>, cpu: &mut C, vaddr: u64, info: u64, val: u64) -> Option<u64> {
    ctx.stats.tlb_slow_path += 1;
    let (mop, kind) = MemOp::decode((info & ((1 << MemOp::ENCODED_BITS) - 1)) as u32);
    let mmu = ((info >> MemOp::ENCODED_BITS) & 3) as usize;
    let perm = mop.perm(kind);
    let cur = info_tb(info);
    let n = mop.size.bytes() as u64;
    if !ctx.dbg.watches.is_empty() && crate::engine::debug::watch_hit(&mut ctx.dbg, cpu, vaddr, n, kind) {
        return None;
    }
    if vaddr & (n - 1) != 0 {
        if mop.aligned {
            let f = cpu.fault_for(FaultKind::Misaligned, perm, vaddr);
            raise(cpu, f);
            return None;
        }
        if (vaddr & !PAGE_MASK) + n > PAGE_SIZE {
            return cross_page(ctx, cpu, vaddr, n, Op { kind, perm }, mmu, cur, val)
                .map(|raw| extend_load(raw, mop, Ty::I64));
        }
    }
    single(ctx, cpu, vaddr, n, Op { kind, perm }, mmu, cur, val).map(|raw| extend_load(raw, mop, Ty::I64))
}

fn info_tb(info: u64) -> TbId {
    match (info >> (MemOp::ENCODED_BITS + 2)) & 0xffff_ffff {
        0 => NO_TB,
        n => (n - 1) as TbId,
    }
}

/// An atomic read-modify-write through the slow path; returns the old raw value
/// (zero-extended), `None` after recording a fault.
#[allow(clippy::too_many_arguments)]
pub(crate) fn atomic<C: GuestCpu>(
    ctx: &mut Ctx<C>,
    cpu: &mut C,
    vaddr: u64,
    info: u64,
    op: RmwOp,
    val: u64,
    expected: u64,
) -> Option<u64> {
    ctx.stats.tlb_slow_path += 1;
    let (mop, _) = MemOp::decode((info & ((1 << MemOp::ENCODED_BITS) - 1)) as u32);
    let mmu = ((info >> MemOp::ENCODED_BITS) & 3) as usize;
    let n = mop.size.bytes() as u64;
    if !ctx.dbg.watches.is_empty() && crate::engine::debug::watch_hit(&mut ctx.dbg, cpu, vaddr, n, Access::Write) {
        return None;
    }
    if vaddr & (n - 1) != 0 {
        let f = cpu.fault_for(FaultKind::Misaligned, Access::Write, vaddr);
        raise(cpu, f);
        return None;
    }
    if let Some(host) = probe(cpu.header(), mmu, vaddr, n, true, Access::Write) {
        // SAFETY: a TLB write hit is a whole, plain RAM page (no CODE/WATCH/MMIO flags),
        // and the access is naturally aligned inside it.
        return Some(unsafe { host_atomic(host, n, op, val, expected) });
    }
    let paddr = match cpu.translate_addr(vaddr, Access::Write, mmu, &*ctx.mem) {
        Ok(p) => p,
        Err(f) => {
            raise(cpu, f);
            return None;
        }
    };
    let mem: &PhysMap = &ctx.mem;
    match mem.lookup(paddr) {
        // Host atomics need natural alignment on the host too; RAM regions are mapped page
        // aligned and placed at aligned guest addresses, so this only guards a machine
        // model that breaks that rule (the guest then sees a misaligned-access fault).
        Some(Hit::Ram { ptr, left, .. }) if left >= n && (ptr as usize) % n as usize == 0 => {
            store_to_code(ctx, cpu, paddr, n, info_tb(info));
            // SAFETY: `ptr` points at `left >= n` bytes of guest RAM, aligned to `n`
            // (checked by the match guard).
            Some(unsafe { host_atomic(ptr, n, op, val, expected) })
        }
        Some(Hit::Mmio { dev, offset, region }) if offset + n <= region.size => {
            // Devices serialise their own register accesses; a read then a write is what
            // a device can observe of an AMO anyway.
            let old = dev.read(offset, n as u32) & mask(n);
            if let Some(new) = op.apply(mop.size, old, val, expected) {
                dev.write(offset, n as u32, new);
            }
            Some(old)
        }
        Some(Hit::Ram { left, .. }) if left >= n => {
            let f = cpu.fault_for(FaultKind::Misaligned, Access::Write, vaddr);
            raise(cpu, f);
            None
        }
        _ => {
            let f = cpu.fault_for(FaultKind::AccessFault, Access::Write, vaddr);
            raise(cpu, f);
            None
        }
    }
}

/// A host atomic read-modify-write of `n` bytes (4 or 8; 1 and 2 for completeness) of
/// guest RAM at `p`, little endian; returns the old value.
///
/// # Safety
/// `p` must point at `n` bytes of guest RAM, aligned to `n`.
unsafe fn host_atomic(p: *mut u8, n: u64, op: RmwOp, val: u64, expected: u64) -> u64 {
    use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::SeqCst};
    let size = kite_ir::MemSize::from_bytes(n as u32).unwrap_or(kite_ir::MemSize::B8);
    macro_rules! rmw {
        ($at:ty, $t:ty) => {{
            // SAFETY: per the contract `p` is valid and aligned for `$t`; guest RAM is
            // only accessed through raw pointers and atomics.
            let a = unsafe { <$at>::from_ptr(p as *mut $t) };
            let (v, e) = (val as $t, expected as $t);
            let old = match op {
                RmwOp::Xchg => a.swap(v, SeqCst),
                RmwOp::Add => a.fetch_add(v, SeqCst),
                RmwOp::And => a.fetch_and(v, SeqCst),
                RmwOp::Or => a.fetch_or(v, SeqCst),
                RmwOp::Xor => a.fetch_xor(v, SeqCst),
                RmwOp::MinU => a.fetch_min(v, SeqCst),
                RmwOp::MaxU => a.fetch_max(v, SeqCst),
                RmwOp::Cas => match a.compare_exchange(e, v, SeqCst, SeqCst) {
                    Ok(o) | Err(o) => o,
                },
                RmwOp::MinS | RmwOp::MaxS => {
                    let f = |o: $t| op.apply(size, o as u64, val, 0).map(|x| x as $t);
                    match a.fetch_update(SeqCst, SeqCst, f) {
                        Ok(o) | Err(o) => o,
                    }
                }
            };
            // Little-endian host (x86_64), as everywhere in the softmmu.
            old as u64
        }};
    }
    match n {
        1 => rmw!(AtomicU8, u8),
        2 => rmw!(AtomicU16, u16),
        4 => rmw!(AtomicU32, u32),
        _ => rmw!(AtomicU64, u64),
    }
}

/// A store of `n` bytes at `paddr` is about to happen: invalidate this engine's TBs that
/// it overlaps (flagging the running one) and, under MTTCG, queue it for the other
/// vCPUs with code on the page. Returns whether any other vCPU has code there.
fn store_to_code<C: GuestCpu>(ctx: &mut Ctx<C>, cpu: &mut C, paddr: u64, n: u64, cur: TbId) -> bool {
    let ppage = paddr & PAGE_MASK;
    let link = ctx.shared.as_ref();
    if ctx.tbs.is_code_page(ppage) {
        let (k, hit_cur) = ctx.tbs.invalidate_range(ppage, paddr, paddr + n, cur);
        ctx.stats.tbs_invalidated += k;
        if hit_cur {
            cpu.header_mut().status = status::LOOKUP;
        }
        if let (true, Some(mt)) = (k > 0, ctx.mt.as_deref()) {
            // Other vCPUs may hold the TBs in their jump caches: back to their
            // dispatchers, which drop them (`crate::shared`).
            mt.kick_others(&cpu.header().exit_request);
        }
        crate::mttcg::drain_dropped(&mut ctx.tbs, link);
    }
    link.is_some_and(|l| l.stored(ppage, paddr, paddr + n))
}

/// What an access does (`kind`) and what permission it needs (`perm`): they differ
/// for the read half of an atomic read-modify-write.
#[derive(Clone, Copy, Debug)]
struct Op {
    kind: Access,
    perm: Access,
}

/// An access that straddles two pages: check both translations first so a fault leaves
/// no partial store, then go byte by byte.
#[allow(clippy::too_many_arguments)]
fn cross_page<C: GuestCpu>(
    ctx: &mut Ctx<C>,
    cpu: &mut C,
    vaddr: u64,
    n: u64,
    op: Op,
    mmu: usize,
    cur: TbId,
    val: u64,
) -> Option<u64> {
    let second = (vaddr | !PAGE_MASK).wrapping_add(1);
    for a in [vaddr, second] {
        if let Err(f) = cpu.translate_addr(a, op.perm, mmu, &*ctx.mem) {
            raise(cpu, f);
            return None;
        }
    }
    let mut raw = 0u64;
    for i in 0..n {
        let b = single(ctx, cpu, vaddr.wrapping_add(i), 1, op, mmu, cur, val >> (8 * i))?;
        raw |= (b & 0xff) << (8 * i);
    }
    Some(raw)
}

/// An access that stays within one page. Returns the raw value (zero-extended).
#[allow(clippy::too_many_arguments)]
fn single<C: GuestCpu>(
    ctx: &mut Ctx<C>,
    cpu: &mut C,
    vaddr: u64,
    n: u64,
    op: Op,
    mmu: usize,
    cur: TbId,
    val: u64,
) -> Option<u64> {
    let Op { kind, perm } = op;
    // SAFETY: the context (and so the map its `Arc` holds) outlives this call; not
    // borrowed from `ctx`, which a store to code needs whole. (No clone: an atomic count
    // shared by every vCPU thread would bounce between cores.)
    let mem: &PhysMap = unsafe { &*std::sync::Arc::as_ptr(&ctx.mem) };
    let paddr = match cpu.translate_addr(vaddr, perm, mmu, mem) {
        Ok(p) => p,
        Err(f) => {
            raise(cpu, f);
            return None;
        }
    };
    let global = cpu.tlb_global();
    match mem.lookup(paddr) {
        Some(Hit::Ram { ptr, left, ram }) if left >= n => {
            let ppage = paddr & PAGE_MASK;
            let mut remote_code = false;
            if kind == Access::Write {
                remote_code = store_to_code(ctx, cpu, paddr, n, cur);
            } else if perm == Access::Write {
                remote_code = ctx.shared.as_ref().is_some_and(|l| l.others_on(ppage) != 0);
            }
            // SAFETY: `ptr` points at `left >= n` bytes of guest RAM, which is only ever
            // accessed through raw pointers; unaligned accesses are explicit.
            let raw = unsafe { host_access(ptr, kind, n, val) };
            // Only cache whole RAM pages (a region ending mid-page must keep faulting
            // beyond its end).
            let whole = ram.base() <= ppage && ppage + PAGE_SIZE <= ram.base() + ram.size();
            if whole && kind != Access::Exec && cpu.tlb_cacheable(paddr, mmu) {
                let code = remote_code || ctx.tbs.is_code_page(ppage);
                // Watched pages keep taking the slow path, which checks the exact range.
                let watch = !ctx.dbg.watches.is_empty() && ctx.dbg.watches_page(vaddr & PAGE_MASK);
                // Host address of the page start (the offset into the page is below `ptr`).
                let host_page = (ptr as u64).wrapping_sub(paddr & !PAGE_MASK);
                fill(cpu.header_mut(), mmu, vaddr, host_page, perm, code, watch, global);
                ctx.stats.tlb_fills += 1;
            }
            Some(raw)
        }
        Some(Hit::Mmio { dev, offset, region }) if offset + n <= region.size => {
            if kind == Access::Write {
                dev.write(offset, n as u32, val & mask(n));
                Some(0)
            } else {
                Some(dev.read(offset, n as u32) & mask(n))
            }
        }
        _ => {
            let f = cpu.fault_for(FaultKind::AccessFault, perm, vaddr);
            raise(cpu, f);
            None
        }
    }
}

/// Read (zero-extended) or write `n` bytes of guest RAM at `p`, little endian; a write
/// returns 0.
///
/// # Safety
/// `p` must point at `n` bytes of guest RAM (only ever accessed through raw pointers).
unsafe fn host_access(p: *mut u8, kind: Access, n: u64, val: u64) -> u64 {
    // SAFETY: per the contract `p..p+n` is RAM; unaligned accesses are explicit.
    unsafe {
        match (kind, n) {
            (Access::Write, 1) => {
                p.write(val as u8);
                0
            }
            (Access::Write, 2) => {
                (p as *mut u16).write_unaligned((val as u16).to_le());
                0
            }
            (Access::Write, 4) => {
                (p as *mut u32).write_unaligned((val as u32).to_le());
                0
            }
            (Access::Write, _) => {
                (p as *mut u64).write_unaligned(val.to_le());
                0
            }
            (_, 1) => p.read() as u64,
            (_, 2) => u16::from_le((p as *const u16).read_unaligned()) as u64,
            (_, 4) => u32::from_le((p as *const u32).read_unaligned()) as u64,
            (_, _) => u64::from_le((p as *const u64).read_unaligned()),
        }
    }
}

fn mask(n: u64) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Record the translation of `vaddr`'s page for `kind` in TLB `mmu` (`global`: see
/// `GuestCpu::tlb_global`). An entry that maps the same page the same way keeps its other
/// tags; anything else is replaced.
#[allow(clippy::too_many_arguments)]
fn fill(
    h: &mut CpuHeader,
    mmu: usize,
    vaddr: u64,
    host_page: u64,
    kind: Access,
    code: bool,
    watch: bool,
    global: bool,
) {
    let vpage = vaddr & PAGE_MASK;
    let addend = host_page.wrapping_sub(vpage);
    let Some((e, idx)) = h.tlb_fill_entry(mmu, vaddr, addend) else {
        return;
    };
    let w = if watch { tlb_flags::WATCH } else { 0 };
    match kind {
        Access::Read => e.addr_read = vpage | w,
        Access::Write => e.addr_write = vpage | w | if code { tlb_flags::CODE } else { 0 },
        Access::Exec => e.addr_code = vpage,
    }
    // The same mapping for another access is as global as this one.
    h.tlb_set_global(mmu, idx, global);
}

/// Inline-TLB probe in Rust (the interpreter tier's fast path; same test as generated code).
fn probe(h: &CpuHeader, mmu: usize, vaddr: u64, n: u64, aligned: bool, kind: Access) -> Option<*mut u8> {
    let e = h.tlb_entry(mmu, vaddr)?;
    let tag = if kind == Access::Write { e.addr_write } else { e.addr_read };
    (tlb_cmp_key(vaddr, n, aligned) == tag).then(|| vaddr.wrapping_add(e.addend) as *mut u8)
}

/// The interpreter tier's memory: the TLB probe, then the same slow path as compiled code.
pub(crate) struct InterpEnv<C: GuestCpu> {
    pub ctx: *mut Ctx<C>,
    pub mmu: usize,
    pub tb: TbId,
}

impl<C: GuestCpu> InterpEnv<C> {
    fn go(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp, kind: Access, val: u64) -> Option<u64> {
        debug_assert!(state.len() >= std::mem::size_of::<C>());
        // SAFETY: the interpreter hands us the byte view of the running `C` (the engine
        // built `state` from it), so the pointer is a valid, exclusive `C`.
        let cpu = unsafe { &mut *(state.as_mut_ptr() as *mut C) };
        let n = mop.size.bytes() as u64;
        if let Some(host) = probe(cpu.header(), self.mmu, vaddr, n, mop.aligned, mop.perm(kind)) {
            // SAFETY: a TLB hit means `host..host+n` lies inside a whole RAM page that the
            // slow path validated (the probe compares the page of the last byte).
            let raw = unsafe { host_access(host, kind, n, val) };
            return Some(extend_load(raw, mop, Ty::I64));
        }
        // SAFETY: the engine context outlives the block run and no other reference to it
        // is live while the interpreter runs.
        let ctx = unsafe { &mut *self.ctx };
        access(ctx, cpu, vaddr, info(mop, kind, self.mmu, self.tb), val)
    }
}

impl<C: GuestCpu> Env for InterpEnv<C> {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64> {
        self.go(state, vaddr, mop, Access::Read, 0)
    }

    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool {
        self.go(state, vaddr, mop, Access::Write, val).is_some()
    }

    fn atomic(&mut self, state: &mut [u8], vaddr: u64, op: RmwOp, src: u64, expected: u64, mop: MemOp) -> Option<u64> {
        // SAFETY: as in `go`: `state` is the byte view of the running `C`, and the
        // engine context is live and unaliased during the block run.
        let (cpu, ctx) = unsafe { (&mut *(state.as_mut_ptr() as *mut C), &mut *self.ctx) };
        let info = info(mop, Access::Write, self.mmu, self.tb) | atomic_info(op);
        atomic(ctx, cpu, vaddr, info, op, src, expected)
    }
}

impl<C: GuestCpu> std::fmt::Debug for InterpEnv<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterpEnv").field("mmu", &self.mmu).field("tb", &self.tb).finish()
    }
}
