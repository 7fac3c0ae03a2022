//! Translation blocks: the TB cache, the per-vCPU jump cache, chain slots and
//! invalidation bookkeeping.
//!
//! - TBs live in a slab indexed by [`TbId`]; the map finds them by (physical pc, virtual pc,
//!   flags).
//! - Every `Exit::Goto` of a compiled TB owns a [`ChainSlot`] at a fixed heap address that
//!   the generated code reads: non-zero means "tail-call this code". The dispatcher links a
//!   slot after it looked the target up; the target records the link in `incoming` so an
//!   invalidation can unlink it.
//! - Links that depend on the current virtual-to-physical mapping (target on another page
//!   than the source TB, or a target spanning two pages) are "fragile" and are cut on every
//!   TLB flush; same-page links stay valid because the source TB was itself found through
//!   the current mapping. A fragile link into a page with a global mapping (the fetch TLB
//!   says so) survives flushes of non-global translations (address-space switches), as do
//!   the jump-cache and fetch-TLB entries of such pages: the kernel's code stays linked
//!   and cached while processes come and go.
//! - `pages` maps each physical page holding code to its TBs; a store to such a page
//!   invalidates the TBs whose guest code bytes it overlaps ([`TbCache::invalidate_range`]);
//!   the page leaves the set when its last TB goes. Data that shares a page with code
//!   (small bare-metal programs) then costs a slow-path store, not a retranslation.
//! - Invalidated TBs keep their chain slots (moved to `graveyard`) until a full flush,
//!   because the generated code that references them may still be the one running.
//! - Jump-cache entries carry the TB's host code address (0 for interpreted TBs) so
//!   generated code can probe the cache inline on an indirect exit; the dispatcher gives
//!   the running vCPU the address of its entry array ([`TbCache::jc_base`]) in
//!   `CpuHeader::jc_base` before each run of generated code, so no code depends on which
//!   vCPU's cache is current.
//! - The per-vCPU fetch TLB ([`JumpCache::itlb`]) maps (virtual page, flags) to a
//!   physical page so a jump-cache miss skips the page walk. It is keyed by the TB flags
//!   (which hold the privilege level) rather than stored in the softmmu TLB's
//!   `addr_code` tags, because a data MMU index does not determine the fetch mode (RISC-V
//!   MPRV). It depends on the mapping exactly as the jump cache does, so it is cleared
//!   at the same TLB flushes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};

use kite_ir::fast::FastBlock;
use kite_ir::state::PAGE_MASK;
use kite_ir::Block;

pub(crate) type TbId = u32;
pub(crate) const NO_TB: TbId = u32::MAX;

/// TBs the cache has room for before its slab and map first grow.
const TB_RESERVE: usize = 1 << 16;

/// Jump cache size (entries, power of two). 16 K: a boot's kernel runs ~39 K blocks, and
/// 4 K entries missed on ~80% of dispatches (each miss a TB-map probe, ~100 ns in cache
/// misses). Larger was no gain while page flushes scanned the whole cache; they no longer
/// do (see `JumpCache::pages`).
pub(crate) const JC_SIZE: usize = 16384;

/// One chainable exit. `target` must stay the first field: generated code loads it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct ChainSlot {
    /// Host code address to tail-call, or 0 (return to the dispatcher).
    pub target: AtomicU64,
    /// The TB `target` belongs to, or [`NO_TB`].
    pub linked: std::cell::Cell<TbId>,
    pub owner: TbId,
    pub index: u32,
    /// The exit's patchable `jmp rel32`, for baseline code (which jumps straight to its
    /// target instead of loading `target`).
    jump: std::cell::Cell<Option<DirectJump>>,
}

/// Where a chained exit's `jmp rel32` is (see `baseline::Jump`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct DirectJump {
    /// The displacement's address in the code cache's writable view (4-byte aligned; an
    /// integer so that slots stay `Send`).
    pub rel: usize,
    /// The executable address just past it (what the displacement is relative to).
    pub next: u64,
    /// The executable address of the exit's unlinked landing.
    pub stub: u64,
}

impl ChainSlot {
    /// Point the exit at `code` (0: back to the dispatcher).
    pub(crate) fn set_target(&self, code: u64) {
        self.target.store(code, Ordering::Relaxed);
        if let Some(j) = self.jump.get() {
            let to = if code == 0 { j.stub } else { code };
            // The cache is far smaller than 2 GiB; should that ever change, an out-of-range
            // target stays unlinked here (the exit keeps returning to the dispatcher).
            if let Ok(rel) = i32::try_from(to.wrapping_sub(j.next) as i64) {
                // SAFETY: `rel` is the aligned displacement of a `jmp` in the writable view
                // of the code cache, set by `set_jump` for this slot's own code. Slots are
                // dropped (`TbCache::clear`) before the cache is reset, so the code is still
                // there. One aligned 4-byte store: a fetch sees the old or the new jump.
                unsafe { AtomicI32::from_ptr(j.rel as *mut i32).store(rel, Ordering::Relaxed) };
            }
        }
    }

    /// The exit jumps directly (baseline code): record where, pointing it at the stub.
    ///
    /// # Safety
    /// `j.rel` must be the 4-byte-aligned, writable displacement of this slot's exit `jmp`
    /// in the code cache, valid until the slot is dropped.
    pub(crate) unsafe fn set_jump(&self, j: DirectJump) {
        self.jump.set(Some(j));
        self.set_target(self.target.load(Ordering::Relaxed));
    }
}

/// How a TB runs.
#[derive(Debug)]
pub(crate) enum Exec {
    Native(*const u8),
    /// Interpreted: the IR (shared with a background compile) and, when the fast tier
    /// took it, its pre-decoded form (boxed: inline it made every TB of the slab, baseline
    /// and compiled ones too, ~90 bytes larger).
    Interp(std::sync::Arc<Block>, Option<Box<FastBlock>>),
}

#[derive(Debug)]
pub(crate) struct Tb {
    pub vpc: u64,
    pub flags: u32,
    /// The data MMU index the code was compiled for.
    pub mmu: usize,
    pub phys_pc: u64,
    /// Physical address of the second page, for a block whose last instruction crosses a page.
    pub phys_page2: Option<u64>,
    /// Bytes of guest code (from `phys_pc`, continuing at `phys_page2` past the page end).
    pub size: u32,
    /// Bytes `[lo, hi)` of `phys_pc`'s page (offsets into it) that the TB's code also
    /// depends on: the blocks of its loop region (see `Engine::region`). A write there
    /// invalidates it.
    pub extent: Option<(u16, u16)>,
    /// The vCPU's instruction count when the TB was made (how fast it got hot).
    pub born: u64,
    pub exec: Exec,
    pub slots: Box<[ChainSlot]>,
    /// Slots of other TBs linked to this one: (source TB, slot index).
    pub incoming: Vec<(TbId, u32)>,
    /// Dispatcher entries while interpreted ([`crate::Tier::Tiered`] compiles at the threshold).
    pub heat: u32,
    /// Baseline-compiled blocks: the IR (for the Cranelift recompile) and the entry counter
    /// their prologue counts down. `None` once Cranelift code replaced the baseline code.
    pub baseline: Option<BaselineTb>,
}

/// What a baseline-compiled TB keeps for its tier-up. Not its IR: ~40,000 blocks of a Linux
/// boot would keep ~100 MB of it for the few thousand that get hot; the block is translated
/// again from the (unchanged, or the TB would be gone) guest code when it does.
#[derive(Debug)]
pub(crate) struct BaselineTb {
    /// Guest instructions in the block (a re-translation must produce the same block).
    pub ninsns: u32,
    /// Read and decremented by the generated prologue: its address is baked into the code,
    /// so it is boxed and outlives the TB until a full flush (see `TbCache::counters`).
    pub counter: Box<std::sync::atomic::AtomicU32>,
    /// The block sent to the background compiler, while its compile is in flight.
    pub inflight: Option<std::sync::Arc<Block>>,
}

/// One jump-cache entry. Layout is read by generated code (see the `JC_*` offsets).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct JcEntry {
    pc: u64,
    /// Host code of `tb`, or 0 when it is interpreted (generated code then misses).
    code: u64,
    flags: u32,
    tb: TbId,
}

/// Offsets of [`JcEntry`] fields and its size, for generated code.
pub(crate) const JC_PC: i32 = 0;
pub(crate) const JC_CODE: i32 = 8;
pub(crate) const JC_FLAGS: i32 = 16;
pub(crate) const JC_ENTRY_SIZE: i64 = 24;
/// Hash shifts of [`jc_index`] (generated code computes the same index).
pub(crate) const JC_SHIFT_A: i64 = 1;
pub(crate) const JC_SHIFT_B: i64 = 13;

const JC_EMPTY: JcEntry = JcEntry { pc: 0, code: 0, flags: 0, tb: NO_TB };

/// Fetch-TLB size (entries, power of two).
const ITLB_SIZE: usize = 256;

/// One fetch-TLB entry: (virtual page, flags) -> physical page. `vpage` is never page
/// aligned when empty.
#[derive(Clone, Copy, Debug)]
struct ItlbEntry {
    vpage: u64,
    flags: u32,
    ppage: u64,
    /// The mapping is global (`GuestCpu::tlb_global`).
    global: bool,
}

const ITLB_EMPTY: ItlbEntry = ItlbEntry { vpage: 1, flags: 0, ppage: 0, global: false };

/// A vCPU's jump cache: virtual (pc, flags) -> TB. `epoch` is the TB cache's
/// invalidation epoch its entries are valid for; a cache swapped in from a vCPU that
/// did not run while TBs were invalidated (ids may have been reused) is cleared.
#[derive(Debug)]
pub(crate) struct JumpCache {
    entries: Box<[JcEntry]>,
    /// Entries per guest page, by a hash of the page ([`jc_page_bucket`]), so that a
    /// single-page TLB flush skips its scan of all [`JC_SIZE`] entries when the page has
    /// none. A Linux boot does ~5,900 such flushes, mostly of data pages, and almost
    /// none finds an entry; a 1024-bit filter saturated at ~3,400 entries and let 37%
    /// of them scan (~2% of the boot). Exact counts (up to bucket sharing) also need no
    /// rebuild after a scan.
    pages: Box<[u16]>,
    /// A bit per entry that depends on a non-global mapping (dropped by
    /// [`TbCache::on_tlb_flush_nonglobal`]).
    /// Boxed like the other arrays: swapping jump caches (every round-robin switch) then
    /// moves pointers, not 2 KiB.
    local: Box<[u64]>,
    epoch: u64,
    /// The TB cache's `promotions` its entries have seen (see [`TbCache::promote`]).
    promotions: u64,
    /// The vCPU's fetch TLB (see the module note).
    itlb: Box<[ItlbEntry]>,
}

impl JumpCache {
    pub(crate) fn new() -> JumpCache {
        JumpCache {
            entries: vec![JC_EMPTY; JC_SIZE].into_boxed_slice(),
            pages: vec![0; JC_PAGE_BUCKETS].into_boxed_slice(),
            local: vec![0; JC_SIZE / 64].into_boxed_slice(),
            epoch: 0,
            promotions: 0,
            itlb: vec![ITLB_EMPTY; ITLB_SIZE].into_boxed_slice(),
        }
    }
}

/// Buckets of [`JumpCache::pages`] (a power of two).
const JC_PAGE_BUCKETS: usize = 1 << 14;

/// The [`JumpCache::pages`] bucket of the page holding `pc`.
fn jc_page_bucket(pc: u64) -> usize {
    // Fold the high bits in first: a plain multiplicative hash put each user page of a
    // Linux boot in the bucket of a kernel page (0xffffffff80000 + n - 0x14b, their
    // difference times the constant had near-zero top bits), so flushes of user pages
    // scanned for kernel entries.
    let p = pc >> kite_ir::state::PAGE_BITS;
    ((p ^ (p >> 23)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - 14)) as usize
}

impl JumpCache {
    fn clear_entries(&mut self) {
        self.entries.fill(JC_EMPTY);
        self.pages.fill(0);
        self.local.fill(0);
    }

    /// Empty entry `i`, keeping the page counts.
    fn empty_at(&mut self, i: usize) {
        let e = &mut self.entries[i];
        if e.tb != NO_TB {
            self.pages[jc_page_bucket(e.pc)] -= 1;
            *e = JC_EMPTY;
        }
    }

    fn set(&mut self, e: JcEntry, global: bool) {
        let i = jc_index(e.pc);
        self.empty_at(i);
        self.pages[jc_page_bucket(e.pc)] += 1;
        self.entries[i] = e;
        if global {
            self.local[i / 64] &= !(1 << (i % 64));
        } else {
            self.local[i / 64] |= 1 << (i % 64);
        }
    }

    fn may_hold_page(&self, page: u64) -> bool {
        self.pages[jc_page_bucket(page)] != 0
    }

    /// Drop the entries for blocks starting in [lo, lo + len).
    fn drop_range(&mut self, lo: u64, len: u64) {
        for i in 0..self.entries.len() {
            let e = &self.entries[i];
            if e.tb != NO_TB && e.pc.wrapping_sub(lo) < len {
                self.empty_at(i);
            }
        }
    }
}

/// A chain link that depends on the current mapping (see the module note). Entries are
/// not removed when a TB goes (that was a scan of every entry per invalidation): cutting
/// a stale one is harmless, since `unlink` only clears a slot still linked to `dst`, and
/// at worst costs a relink through the dispatcher. So that a guest that keeps rewriting
/// code without ever flushing its TLB cannot grow them without bound, dead entries are
/// dropped whenever the count doubles ([`TbCache::prune_fragile`]).
#[derive(Clone, Copy, Debug)]
struct Fragile {
    src: TbId,
    idx: u32,
    dst: TbId,
}

/// Fragile-link entries below which [`TbCache::prune_fragile`] never runs.
const FRAGILE_PRUNE_MIN: usize = 4096;
/// Promotions remembered for saved jump caches; one that missed more is cleared.
const PROMO_LOG: usize = 256;
/// Invalidations remembered for saved jump caches; one that missed more is cleared.
const INVAL_LOG: usize = 256;

/// Fragile links by their target's virtual page, so that a page flush cuts only the
/// links into that page instead of scanning them all.
#[derive(Debug, Default)]
struct FragileIndex {
    by_page: HashMap<u64, Vec<Fragile>, FastHash>,
    len: usize,
}

impl FragileIndex {
    fn push(&mut self, page: u64, f: Fragile) {
        self.by_page.entry(page).or_default().push(f);
        self.len += 1;
    }

    /// Remove and return the entries for links into `page`.
    fn take_page(&mut self, page: u64) -> Vec<Fragile> {
        let v = self.by_page.remove(&page).unwrap_or_default();
        self.len -= v.len();
        v
    }

    /// Remove every entry.
    fn take_all(&mut self) -> impl Iterator<Item = Fragile> + use<> {
        self.len = 0;
        std::mem::take(&mut self.by_page).into_values().flatten()
    }

    fn clear(&mut self) {
        self.by_page.clear();
        self.len = 0;
    }

    /// Keep the entries `live` accepts (`live(page, entry)`), without duplicates.
    fn retain(&mut self, mut live: impl FnMut(u64, &Fragile) -> bool) {
        let key = |f: &Fragile| (f.src, f.idx, f.dst);
        self.by_page.retain(|&page, v| {
            v.retain(|f| live(page, f));
            v.sort_unstable_by_key(key);
            v.dedup_by_key(|f| key(f));
            !v.is_empty()
        });
        self.len = self.by_page.values().map(Vec::len).sum();
    }
}

#[derive(Debug)]
pub(crate) struct TbCache {
    slab: Vec<Option<Tb>>,
    free: Vec<TbId>,
    /// (physical pc, virtual pc, flags) -> TB. The virtual pc is part of the key because
    /// generated code embeds absolute guest pcs (branch targets, return addresses): a TB
    /// translated at one alias of a page (e.g. before the MMU is on) must not run at
    /// another.
    map: HashMap<(u64, u64, u32), TbId, FastHash>,
    pages: HashMap<u64, Vec<TbId>, FastHash>,
    jc: JumpCache,
    /// Bumped on every invalidation and full clear (see [`JumpCache`]).
    epoch: u64,
    /// (virtual pc, id) of the TBs invalidated at the last epochs (one per epoch, the
    /// newest last; emptied by a full clear): a saved jump cache drops just their entries
    /// when it is swapped in. Clearing all 16 K entries instead (~400 KB) at every swap
    /// after any invalidation was ~1.4% of a `-smp 2` boot in turns, plus the refills.
    invalidated: std::collections::VecDeque<(u64, TbId)>,
    /// TBs given new code by [`TbCache::promote`] so far, and the last [`PROMO_LOG`] of
    /// them: saved jump caches still name their old code until they are swapped in.
    promotions: u64,
    promoted: std::collections::VecDeque<TbId>,
    /// Fragile links into pages mapped non-globally: cut by a flush of their target's
    /// page (or the one before it, which a block may run from) and by every full or
    /// non-global flush.
    fragile: FragileIndex,
    /// Fragile links into globally mapped pages: cut by a flush of their page and at
    /// full flushes. They outlive address-space switches, so they are many.
    fragile_global: FragileIndex,
    /// The entry total at which the next prune runs.
    fragile_prune_at: usize,
    graveyard: Vec<Box<[ChainSlot]>>,
    /// Entry counters of invalidated or promoted baseline TBs (their code may still name
    /// them until a full flush; the boxes keep the addresses the code holds).
    #[allow(clippy::vec_box)]
    counters: Vec<Box<std::sync::atomic::AtomicU32>>,
    /// With `track_dropped`: pages that lost their last TB since the owner last drained
    /// the list (the MTTCG page registry is told; see [`crate::mttcg`]).
    pub(crate) dropped_pages: Vec<u64>,
    pub(crate) track_dropped: bool,
    /// Interpreted blocks of TBs invalidated while a TB may be running (a store from the
    /// interpreter into its own code): the interpreter may still be reading them (their
    /// heap parts, which moving the `Exec` here leaves in place), so they are dropped by
    /// [`TbCache::reap`] before the next run.
    retired: Vec<Exec>,
}

/// The TB maps' hasher: keys are guest addresses and flags, not attacker-chosen strings
/// (a guest can only make its own lookups slower), and SipHash showed up at ~3% of a
/// Linux boot. A multiply-rotate mix per word, as in rustc's FxHasher.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WordHasher(u64);

impl Hasher for WordHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u32(&mut self, v: u32) {
        self.write_u64(v as u64);
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type FastHash = BuildHasherDefault<WordHasher>;

/// Unlink TB `id`'s chain `slots` and forget them in their targets' `incoming` lists.
fn cut_outgoing(slab: &mut [Option<Tb>], id: TbId, slots: &[ChainSlot]) {
    for slot in slots {
        let dst = slot.linked.get();
        if dst != NO_TB {
            if let Some(Some(t)) = slab.get_mut(dst as usize) {
                t.incoming.retain(|&(s, i)| !(s == id && i == slot.index));
            }
            slot.set_target(0);
            slot.linked.set(NO_TB);
        }
    }
}

fn tb_vpc(slab: &[Option<Tb>], id: TbId) -> u64 {
    slab.get(id as usize).and_then(|t| t.as_ref()).map_or(0, |t| t.vpc)
}

fn jc_index(pc: u64) -> usize {
    ((pc >> JC_SHIFT_A) ^ (pc >> JC_SHIFT_B)) as usize & (JC_SIZE - 1)
}

fn itlb_index(vpage: u64) -> usize {
    (vpage >> kite_ir::state::PAGE_BITS) as usize & (ITLB_SIZE - 1)
}

impl Tb {
    /// Whether this TB's code bytes on physical page `page` overlap `[lo, hi)`.
    fn overlaps(&self, page: u64, lo: u64, hi: u64) -> bool {
        let start = self.phys_pc;
        let first_end = ((start & PAGE_MASK) + kite_ir::state::PAGE_SIZE).min(start + self.size as u64);
        let in_first = start & PAGE_MASK == page && start < hi && lo < first_end;
        let rest = (start + self.size as u64).saturating_sub(first_end);
        let in_second = self.phys_page2.is_some_and(|p2| p2 == page && rest > 0 && p2 < hi && lo < p2 + rest);
        let base = start & PAGE_MASK;
        let in_region =
            self.extent.is_some_and(|(a, b)| base == page && base + u64::from(a) < hi && lo < base + u64::from(b));
        in_first || in_second || in_region
    }
}

impl TbCache {
    pub(crate) fn new() -> TbCache {
        let jc = JumpCache::new();
        // Reserved up front: a Linux boot makes ~40,000 TBs, and growing the slab and the
        // map by doubling copied megabytes into freshly faulted pages (~2% of the boot's
        // main thread). Untouched slab capacity costs address space only; the map gets
        // the bucket count it would grow to for that many TBs, no more (a sparser table
        // only spreads the dispatcher's lookups over more cache lines and pages).
        TbCache {
            slab: Vec::with_capacity(TB_RESERVE),
            free: Vec::new(),
            map: HashMap::with_capacity_and_hasher(TB_RESERVE / 2, FastHash::default()),
            pages: HashMap::with_capacity_and_hasher(TB_RESERVE / 8, FastHash::default()),
            jc,
            epoch: 0,
            promotions: 0,
            promoted: std::collections::VecDeque::new(),
            invalidated: std::collections::VecDeque::new(),
            fragile: FragileIndex::default(),
            fragile_global: FragileIndex::default(),
            fragile_prune_at: FRAGILE_PRUNE_MIN,
            graveyard: Vec::new(),
            counters: Vec::new(),
            dropped_pages: Vec::new(),
            track_dropped: false,
            retired: Vec::new(),
        }
    }

    /// The TBs with code on physical page `ppage`.
    pub(crate) fn on_page(&self, ppage: u64) -> impl Iterator<Item = &Tb> + '_ {
        self.pages.get(&ppage).into_iter().flatten().filter_map(|&id| self.get(id))
    }

    pub(crate) fn get(&self, id: TbId) -> Option<&Tb> {
        self.slab.get(id as usize).and_then(|t| t.as_ref())
    }

    pub(crate) fn get_mut(&mut self, id: TbId) -> Option<&mut Tb> {
        self.slab.get_mut(id as usize).and_then(|t| t.as_mut())
    }

    /// An interpreted or baseline-compiled TB got Cranelift code (tier-up): publish it and
    /// its chain slots. Jump-cache entries for it learn the code address so inline probes
    /// hit. Blocks chained to the old baseline code are unlinked (they link to the new code
    /// at their next exit through the dispatcher) and the old code's own links are cut.
    pub(crate) fn promote(&mut self, id: TbId, code: *const u8, slots: Box<[ChainSlot]>) {
        let Some(tb) = self.get_mut(id) else {
            return;
        };
        tb.exec = Exec::Native(code);
        let old = std::mem::replace(&mut tb.slots, slots);
        let incoming = std::mem::take(&mut tb.incoming);
        if let Some(b) = tb.baseline.take() {
            self.counters.push(b.counter);
        }
        for (src, idx) in incoming {
            self.unlink(src, idx, id);
        }
        cut_outgoing(&mut self.slab, id, &old);
        // The old baseline code (if any) still names these slots; keep them until a flush.
        if !old.is_empty() {
            self.graveyard.push(old);
        }
        self.jc_repoint(id, code as u64);
        // Saved jump caches learn it when swapped in (`swap_jump_cache`).
        if self.promoted.len() == PROMO_LOG {
            self.promoted.pop_front();
        }
        self.promoted.push_back(id);
        self.promotions += 1;
        self.jc.promotions = self.promotions;
    }

    /// Point the current jump cache's entry for TB `id`, if any, at `code`.
    fn jc_repoint(&mut self, id: TbId, code: u64) {
        // A TB is only ever entered in the jump cache at its own pc (see `jc_set`).
        let vpc = tb_vpc(&self.slab, id);
        let e = &mut self.jc.entries[jc_index(vpc)];
        if e.tb == id {
            e.code = code;
        }
    }

    /// Fetch-TLB lookup: the physical page of `vpage` under `flags`, if cached.
    pub(crate) fn itlb_probe(&self, vpage: u64, flags: u32) -> Option<u64> {
        let e = self.jc.itlb[itlb_index(vpage)];
        (e.vpage == vpage && e.flags == flags).then_some(e.ppage)
    }

    pub(crate) fn itlb_set(&mut self, vpage: u64, flags: u32, ppage: u64, global: bool) {
        self.jc.itlb[itlb_index(vpage)] = ItlbEntry { vpage, flags, ppage, global };
    }

    /// Whether TB `id` is reached through global mappings only: the fetch TLB holds a
    /// global entry for its page, and it does not run into a second page.
    pub(crate) fn reached_globally(&self, id: TbId) -> bool {
        self.get(id).is_some_and(|t| {
            let vpage = t.vpc & PAGE_MASK;
            let e = self.jc.itlb[itlb_index(vpage)];
            t.phys_page2.is_none() && e.global && e.vpage == vpage && e.flags == t.flags
        })
    }

    /// The TB at virtual pc `vpc` (any flags), for tests.
    #[cfg(test)]
    pub(crate) fn find_vpc(&self, vpc: u64) -> Option<&Tb> {
        self.slab.iter().flatten().find(|t| t.vpc == vpc)
    }

    /// The id the next [`TbCache::insert`] will use (generated code embeds it).
    pub(crate) fn next_id(&self) -> TbId {
        self.free.last().copied().unwrap_or(self.slab.len() as TbId)
    }

    /// Allocate `n` unlinked chain slots for the TB that will get `owner`.
    pub(crate) fn new_slots(owner: TbId, n: usize) -> Box<[ChainSlot]> {
        (0..n)
            .map(|i| ChainSlot {
                target: AtomicU64::new(0),
                linked: std::cell::Cell::new(NO_TB),
                owner,
                index: i as u32,
                jump: std::cell::Cell::new(None),
            })
            .collect()
    }

    /// Insert a TB (its id must be [`TbCache::next_id`]). Returns whether a page got its
    /// first code (the caller must then make existing TLB write entries for it take the
    /// slow path).
    pub(crate) fn insert(&mut self, tb: Tb) -> (TbId, bool) {
        let id = self.next_id();
        let mut new_page = false;
        for page in std::iter::once(tb.phys_pc & PAGE_MASK).chain(tb.phys_page2) {
            let list = self.pages.entry(page).or_insert_with(|| {
                new_page = true;
                Vec::new()
            });
            list.push(id);
        }
        self.map.insert((tb.phys_pc, tb.vpc, tb.flags), id);
        if self.free.last() == Some(&id) {
            self.free.pop();
            self.slab[id as usize] = Some(tb);
        } else {
            self.slab.push(Some(tb));
        }
        (id, new_page)
    }

    pub(crate) fn lookup(&self, phys_pc: u64, vpc: u64, flags: u32) -> Option<TbId> {
        self.map.get(&(phys_pc, vpc, flags)).copied()
    }

    /// About how many times the TB for (`phys_pc`, `vpc`, `flags`) was entered, for a
    /// tier-up threshold of `thresh` (baseline entry counters count down from it): 0 if there
    /// is no such TB, `u32::MAX` if it has reached the threshold already.
    pub(crate) fn entries(&self, phys_pc: u64, vpc: u64, flags: u32, thresh: u32) -> u32 {
        let Some(tb) = self.lookup(phys_pc, vpc, flags).and_then(|id| self.get(id)) else {
            return 0;
        };
        match (&tb.exec, &tb.baseline) {
            (Exec::Native(_), Some(b)) => match b.counter.load(Ordering::Relaxed) {
                c if c <= thresh => thresh - c,
                // Re-armed or parked after it fired.
                _ => u32::MAX,
            },
            (Exec::Native(_), None) => u32::MAX,
            (Exec::Interp(..), _) => tb.heat,
        }
    }

    pub(crate) fn jc_probe(&self, pc: u64, flags: u32) -> Option<TbId> {
        let e = self.jc.entries[jc_index(pc)];
        (e.tb != NO_TB && e.pc == pc && e.flags == flags).then_some(e.tb)
    }

    /// Enter TB `tb`, whose virtual pc is `pc`, in the jump cache: entries are only ever
    /// made at a TB's own pc, so promotion and invalidation look at that one index.
    pub(crate) fn jc_set(&mut self, pc: u64, flags: u32, tb: TbId) {
        debug_assert!(self.get(tb).is_none_or(|t| t.vpc == pc), "jump-cache entry at another pc");
        let code = match self.get(tb).map(|t| &t.exec) {
            Some(Exec::Native(p)) => *p as u64,
            _ => 0,
        };
        let global = self.reached_globally(tb);
        self.jc.set(JcEntry { pc, code, flags, tb }, global);
    }

    /// The address of the current jump cache's entries, which the dispatcher gives the
    /// running vCPU (`CpuHeader::jc_base`) for generated code's inline probe.
    pub(crate) fn jc_base(&self) -> u64 {
        self.jc.entries.as_ptr() as u64
    }

    /// Exchange the current jump cache with `other` (another vCPU's); the incoming one
    /// drops the entries of TBs invalidated since it was current (all of them if it
    /// missed more than [`INVAL_LOG`]).
    pub(crate) fn swap_jump_cache(&mut self, other: &mut JumpCache) {
        std::mem::swap(&mut self.jc, other);
        if self.jc.epoch != self.epoch {
            // Only TB ids went stale; the fetch TLB depends on the mapping alone. Entries
            // are made only at a TB's own pc, so each invalidated TB is one index to check.
            let missed = self.epoch.saturating_sub(self.jc.epoch);
            if missed <= self.invalidated.len() as u64 {
                for k in self.invalidated.len() - missed as usize..self.invalidated.len() {
                    let (vpc, id) = self.invalidated[k];
                    let i = jc_index(vpc);
                    if self.jc.entries[i].tb == id {
                        self.jc.empty_at(i);
                    }
                }
            } else {
                self.jc.clear_entries();
                self.jc.promotions = self.promotions;
            }
            self.jc.epoch = self.epoch;
        }
        // TBs promoted meanwhile: their entries still hold the old (baseline) code, whose
        // chain slots the TB no longer owns, so every exit through them would come back
        // to the dispatcher unlinkable (~90,000 times in a 2-hart Linux boot).
        let missed = self.promotions.saturating_sub(self.jc.promotions);
        if missed > self.promoted.len() as u64 {
            self.jc.clear_entries();
        } else {
            for k in self.promoted.len() - missed as usize..self.promoted.len() {
                let id = self.promoted[k];
                if let Some(Exec::Native(code)) = self.get(id).map(|t| &t.exec) {
                    let code = *code as u64;
                    self.jc_repoint(id, code);
                }
            }
        }
        self.jc.promotions = self.promotions;
    }

    pub(crate) fn is_code_page(&self, page: u64) -> bool {
        self.pages.contains_key(&page)
    }

    /// After a TLB flush: clear the jump cache and cut the links that depended on the old
    /// mapping.
    pub(crate) fn on_tlb_flush(&mut self) {
        self.jc.clear_entries();
        self.jc.itlb.fill(ITLB_EMPTY);
        self.cut_local_links();
        for f in self.fragile_global.take_all() {
            self.unlink(f.src, f.idx, f.dst);
        }
    }

    /// Cut the cross-page links into pages mapped non-globally. Besides flushes, needed
    /// when another vCPU starts running on this TB cache (round robin): the links were
    /// made under the previous vCPU's address space. Global links hold for every vCPU.
    pub(crate) fn cut_local_links(&mut self) {
        if self.fragile.len == 0 {
            return; // keep the index's allocation: round robin calls this at every switch
        }
        for f in self.fragile.take_all() {
            self.unlink(f.src, f.idx, f.dst);
        }
    }

    /// Drop the fragile entries whose slot no longer holds their link (ids are reused, so
    /// a dead entry can name a live link: duplicates go too), and run again when the count
    /// has doubled.
    fn prune_fragile(&mut self) {
        let live = |c: &TbCache, f: &Fragile| {
            c.get(f.src).and_then(|t| t.slots.get(f.idx as usize)).is_some_and(|s| s.linked.get() == f.dst)
        };
        // Under its target's current page only (a reused id may be elsewhere now).
        let keep =
            |c: &TbCache, page: u64, f: &Fragile| live(c, f) && c.get(f.dst).is_some_and(|t| t.vpc & PAGE_MASK == page);
        let mut local = std::mem::take(&mut self.fragile);
        local.retain(|page, f| keep(self, page, f));
        self.fragile = local;
        let mut global = std::mem::take(&mut self.fragile_global);
        global.retain(|page, f| keep(self, page, f));
        self.fragile_global = global;
        self.fragile_prune_at = (2 * self.fragile_len()).max(FRAGILE_PRUNE_MIN);
    }

    /// Fragile-link entries kept (live or not yet pruned).
    pub(crate) fn fragile_len(&self) -> usize {
        self.fragile.len + self.fragile_global.len
    }

    /// After a flush of the non-global translations: the same for everything that
    /// depended on one; what global mappings reach stays.
    pub(crate) fn on_tlb_flush_nonglobal(&mut self) {
        for w in 0..self.jc.local.len() {
            let mut b = std::mem::take(&mut self.jc.local[w]);
            while b != 0 {
                self.jc.empty_at(w * 64 + b.trailing_zeros() as usize);
                b &= b - 1;
            }
        }
        for e in self.jc.itlb.iter_mut().filter(|e| !e.global) {
            *e = ITLB_EMPTY;
        }
        self.cut_local_links();
    }

    /// The mapping of `vaddr`'s page changed: forget its fetch-TLB entry, and the jump-cache
    /// entries of and cross-page chains into blocks that start in it or in the page before
    /// (a block may run into it).
    pub(crate) fn on_tlb_flush_page(&mut self, vaddr: u64) {
        let vp = vaddr & PAGE_MASK;
        let e = &mut self.jc.itlb[itlb_index(vp)];
        if e.vpage == vp {
            *e = ITLB_EMPTY;
        }
        let lo = vp.wrapping_sub(kite_ir::state::PAGE_SIZE);
        if self.jc.may_hold_page(lo) || self.jc.may_hold_page(vp) {
            self.jc.drop_range(lo, 2 * kite_ir::state::PAGE_SIZE);
        }
        // Cross-page links into blocks that start in those two pages depended on the old
        // mapping; the others did not (a Linux boot does ~5,000 of these flushes, and
        // cutting every cross-page link each time meant ~100,000 relinks through the
        // dispatcher). A block that can no longer be entered from outside its page is
        // unreachable through same-page links too.
        for page in [lo, vp] {
            for f in self.fragile.take_page(page).into_iter().chain(self.fragile_global.take_page(page)) {
                self.unlink(f.src, f.idx, f.dst);
            }
        }
    }

    fn unlink(&mut self, src: TbId, idx: u32, dst: TbId) {
        if let Some(slot) = self.get(src).and_then(|t| t.slots.get(idx as usize)) {
            if slot.linked.get() == dst {
                slot.set_target(0);
                slot.linked.set(NO_TB);
            }
        }
    }

    /// Point slot `idx` of `src`, at address `addr`, at `dst`. `fragile` links are cut at
    /// the next TLB flush. Returns false if either TB is gone, `dst` has no native code,
    /// or `src` no longer owns that slot (recompiled, or its id reused, since the slot was
    /// returned: index `idx` may now belong to another exit).
    pub(crate) fn link(&mut self, src: TbId, idx: u32, addr: u64, dst: TbId, fragile: bool) -> bool {
        let Some(Exec::Native(code)) = self.get(dst).map(|t| &t.exec) else {
            return false;
        };
        let code = *code as u64;
        let Some(slot) = self.get(src).and_then(|t| t.slots.get(idx as usize)) else {
            return false;
        };
        if slot as *const ChainSlot as u64 != addr {
            return false;
        }
        if slot.linked.get() != NO_TB {
            return false;
        }
        slot.set_target(code);
        slot.linked.set(dst);
        if let Some(Some(t)) = self.slab.get_mut(dst as usize) {
            t.incoming.push((src, idx));
        }
        if fragile {
            let f = Fragile { src, idx, dst };
            let page = self.get(dst).map_or(0, |t| t.vpc & PAGE_MASK);
            if self.reached_globally(dst) {
                self.fragile_global.push(page, f);
            } else {
                self.fragile.push(page, f);
            }
            if self.fragile_len() > self.fragile_prune_at {
                self.prune_fragile();
            }
        }
        true
    }

    /// Invalidate every TB on physical page `page`; returns how many and whether `current`
    /// was among them.
    pub(crate) fn invalidate_page(&mut self, page: u64, current: TbId) -> (u64, bool) {
        let Some(list) = self.pages.remove(&page) else {
            return (0, false);
        };
        if self.track_dropped {
            self.dropped_pages.push(page);
        }
        let mut hit_current = false;
        let mut n = 0;
        for id in list {
            if self.invalidate(id) {
                n += 1;
                hit_current |= id == current;
            }
        }
        (n, hit_current)
    }

    /// Invalidate the TBs on physical page `page` whose code overlaps the physical bytes
    /// `[lo, hi)` (within that page); returns how many and whether `current` was among them.
    pub(crate) fn invalidate_range(&mut self, page: u64, lo: u64, hi: u64, current: TbId) -> (u64, bool) {
        let Some(list) = self.pages.get(&page) else {
            return (0, false);
        };
        let hits: Vec<TbId> =
            list.iter().copied().filter(|&id| self.get(id).is_some_and(|t| t.overlaps(page, lo, hi))).collect();
        let mut hit_current = false;
        let mut n = 0;
        for id in hits {
            if self.invalidate(id) {
                n += 1;
                hit_current |= id == current;
            }
        }
        (n, hit_current)
    }

    /// Invalidate one TB (its second page changed mapping).
    pub(crate) fn invalidate_one(&mut self, id: TbId) {
        self.invalidate(id);
    }

    fn invalidate(&mut self, id: TbId) -> bool {
        let Some(tb) = self.slab.get_mut(id as usize).and_then(|t| t.take()) else {
            return false;
        };
        if self.map.get(&(tb.phys_pc, tb.vpc, tb.flags)) == Some(&id) {
            self.map.remove(&(tb.phys_pc, tb.vpc, tb.flags));
        }
        for page in std::iter::once(tb.phys_pc & PAGE_MASK).chain(tb.phys_page2) {
            if let Some(list) = self.pages.get_mut(&page) {
                list.retain(|&t| t != id);
                if list.is_empty() {
                    self.pages.remove(&page);
                    if self.track_dropped {
                        self.dropped_pages.push(page);
                    }
                }
            }
        }
        for &(src, idx) in &tb.incoming {
            self.unlink(src, idx, id);
        }
        // Our own outgoing links: forget them in their targets.
        cut_outgoing(&mut self.slab, id, &tb.slots);
        let i = jc_index(tb.vpc);
        if self.jc.entries[i].tb == id {
            self.jc.empty_at(i);
        }
        // The current jump cache is scrubbed above; saved ones on swap-in.
        self.epoch += 1;
        self.jc.epoch = self.epoch;
        if self.invalidated.len() == INVAL_LOG {
            self.invalidated.pop_front();
        }
        self.invalidated.push_back((tb.vpc, id));
        self.graveyard.push(tb.slots);
        if let Some(b) = tb.baseline {
            self.counters.push(b.counter);
        }
        if matches!(tb.exec, Exec::Interp(..)) {
            self.retired.push(tb.exec);
        }
        self.free.push(id);
        true
    }

    /// Drop the interpreted blocks of invalidated TBs. Only call while no TB runs.
    pub(crate) fn reap(&mut self) {
        if !self.retired.is_empty() {
            self.retired.clear();
        }
    }

    /// Forget every TB (the code cache is being reset).
    pub(crate) fn clear(&mut self) {
        self.slab.clear();
        self.free.clear();
        self.map.clear();
        if self.track_dropped {
            self.dropped_pages.extend(self.pages.keys());
        }
        self.pages.clear();
        self.jc.clear_entries();
        self.epoch += 1;
        self.jc.epoch = self.epoch;
        // Every saved jump cache is older than this and gets cleared on swap-in.
        self.invalidated.clear();
        self.fragile.clear();
        self.fragile_global.clear();
        self.graveyard.clear();
        self.counters.clear();
        self.retired.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The address of slot `idx` of TB `id` (what its code returns when it is unlinked).
    fn slot_addr(c: &TbCache, id: TbId, idx: u32) -> u64 {
        &c.get(id).unwrap().slots[idx as usize] as *const ChainSlot as u64
    }

    fn tb(pc: u64, code: usize, nslots: usize, owner: TbId) -> Tb {
        Tb {
            vpc: pc,
            flags: 0,
            mmu: 0,
            phys_pc: pc,
            phys_page2: None,
            size: 16,
            extent: None,
            born: 0,
            exec: Exec::Native(code as *const u8),
            slots: TbCache::new_slots(owner, nslots),
            incoming: Vec::new(),
            heat: 0,
            baseline: None,
        }
    }

    #[test]
    fn a_slot_returned_before_a_recompile_is_not_linked_by_index() {
        // A's code returned its unlinked slot 1; before the dispatcher links it, A is
        // recompiled (as a region its exits get other slot indices): index 1 of the new
        // slots is another exit, so the link must not be made.
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 2, 0));
        let (b, _) = c.insert(tb(0x5000, 0x200, 0, 1));
        let old = slot_addr(&c, a, 1);
        c.promote(a, 0x400 as *const u8, TbCache::new_slots(a, 3));
        assert!(!c.link(a, 1, old, b, false));
        assert_eq!(c.get(a).unwrap().slots[1].target.load(Ordering::Relaxed), 0);
        assert!(c.link(a, 1, slot_addr(&c, a, 1), b, false));
    }

    #[test]
    fn a_page_flush_cuts_only_the_cross_page_links_into_that_page() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 2, 0)); // page 0x1000, links to b and d
        let (b, _) = c.insert(tb(0x5000, 0x200, 0, 1)); // page 0x5000
        let (d, _) = c.insert(tb(0x8ff0, 0x300, 0, 2)); // runs into page 0x9000
        assert!(c.link(a, 0, slot_addr(&c, a, 0), b, true) && c.link(a, 1, slot_addr(&c, a, 1), d, true));
        let target = |c: &TbCache, i: usize| c.get(a).unwrap().slots[i].target.load(Ordering::Relaxed);
        // Unrelated pages: both links stay.
        c.on_tlb_flush_page(0x3000);
        c.on_tlb_flush_page(0x7000);
        assert_eq!((target(&c, 0), target(&c, 1)), (0x200, 0x300));
        // The page d runs into: only the link to d goes.
        c.on_tlb_flush_page(0x9abc);
        assert_eq!((target(&c, 0), target(&c, 1)), (0x200, 0));
        // b's own page.
        c.on_tlb_flush_page(0x5000);
        assert_eq!(target(&c, 0), 0);
        // A full flush cuts everything cross-page.
        assert!(c.link(a, 0, slot_addr(&c, a, 0), b, true));
        c.on_tlb_flush();
        assert_eq!(target(&c, 0), 0);
    }

    #[test]
    fn a_page_flush_drops_the_jump_cache_entries_of_that_page_and_the_one_before() {
        let mut c = TbCache::new();
        let pcs = [0x1000u64, 0x1ffe, 0x2000, 0x2ffe, 0x3000, 0x7000];
        let ids: Vec<TbId> = pcs.iter().map(|&pc| c.insert(tb(pc, 0x100, 0, 0)).0).collect();
        for (&pc, &id) in pcs.iter().zip(&ids) {
            c.jc_set(pc, 0, id);
        }
        let present = |c: &TbCache| pcs.map(|pc| c.jc_probe(pc, 0).is_some());
        // Pages with no entries (their counts let these skip the scan).
        c.on_tlb_flush_page(0x9000);
        c.on_tlb_flush_page(0x5000);
        assert_eq!(present(&c), [true; 6]);
        // Page 0x3000: blocks starting in it or in page 0x2000 (which may run into it) go.
        c.on_tlb_flush_page(0x3abc);
        assert_eq!(present(&c), [true, true, false, false, false, true]);
        // The entries that stayed are still found by later flushes.
        c.on_tlb_flush_page(0x7000);
        assert_eq!(present(&c), [true, true, false, false, false, false]);
        c.on_tlb_flush_page(0x1000);
        assert_eq!(present(&c), [false; 6]);
        // Entries made after a scan are seen too.
        c.jc_set(0x7000, 0, ids[5]);
        c.on_tlb_flush_page(0x8000);
        assert_eq!(c.jc_probe(0x7000, 0), None);
    }

    #[test]
    fn link_and_invalidate_unlinks() {
        let mut c = TbCache::new();
        let (a, new_a) = c.insert(tb(0x1000, 0x100, 1, 0));
        let (b, new_b) = c.insert(tb(0x1040, 0x200, 1, 1));
        let (d, new_d) = c.insert(tb(0x2000, 0x300, 0, 2));
        assert!(new_a && !new_b && new_d);
        assert!(c.link(a, 0, slot_addr(&c, a, 0), b, false));
        assert!(c.link(b, 0, slot_addr(&c, b, 0), d, true));
        assert_eq!(c.get(a).unwrap().slots[0].target.load(Ordering::Relaxed), 0x200);
        c.jc_set(0x1040, 0, b);
        assert_eq!(c.jc_probe(0x1040, 0), Some(b));
        assert_eq!(c.jc_probe(0x1040, 1), None);
        // A store to page 0x1000 kills a and b.
        let (n, cur) = c.invalidate_page(0x1000, b);
        assert_eq!((n, cur), (2, true));
        assert_eq!(c.lookup(0x1040, 0x1040, 0), None);
        assert_eq!(c.jc_probe(0x1040, 0), None);
        assert!(!c.is_code_page(0x1000));
        assert!(c.get(d).unwrap().incoming.is_empty());
        // Ids are reused.
        let (e, _) = c.insert(tb(0x1000, 0x400, 1, b));
        assert!(e == a || e == b);
        assert!(c.link(e, 0, slot_addr(&c, e, 0), d, true));
        c.on_tlb_flush();
        assert_eq!(c.get(e).unwrap().slots[0].target.load(Ordering::Relaxed), 0, "fragile link cut");
    }

    /// A slot with a direct jump keeps its displacement pointed at the linked code, and at
    /// its stub while unlinked (here the "code" is a plain integer standing in for it).
    #[test]
    fn linking_patches_a_direct_jump() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 1, 0));
        let (b, _) = c.insert(tb(0x1040, 0x200, 1, 1));
        let rel = Box::new(AtomicI32::new(0));
        let at = rel.as_ptr() as usize;
        let jump = DirectJump { rel: at, next: 0x1_0000, stub: 0x1_0040 };
        // SAFETY: `rel` is an aligned, writable i32 that outlives the cache's slots.
        unsafe { c.get(a).unwrap().slots[0].set_jump(jump) };
        assert_eq!(rel.load(Ordering::Relaxed), 0x40, "unlinked: the stub");
        assert!(c.link(a, 0, slot_addr(&c, a, 0), b, false));
        assert_eq!(rel.load(Ordering::Relaxed), 0x200 - 0x1_0000, "linked: b's code");
        c.invalidate_page(0x1000, NO_TB);
        assert_eq!(rel.load(Ordering::Relaxed), 0x40, "b gone: the stub again");
        c.clear();
    }

    /// The jump cache's per-page counts match its entries (a count too low would let a
    /// page flush skip entries it must drop).
    fn assert_page_counts_exact(c: &TbCache) {
        let mut want = vec![0u16; JC_PAGE_BUCKETS];
        for e in c.jc.entries.iter().filter(|e| e.tb != NO_TB) {
            want[jc_page_bucket(e.pc)] += 1;
        }
        assert!(*want == *c.jc.pages, "jump-cache page counts drifted");
    }

    #[test]
    fn user_and_kernel_pages_rarely_share_a_count_bucket() {
        // A shared bucket makes a flush of one page scan the jump cache for the other's
        // entries. A plain multiplicative hash put user page n with kernel page
        // 0xffffffff80000 + n - 0x14b for every n: 143 of the pairs below share one (the
        // folded hash: none; chance would give ~32).
        let user: Vec<usize> = (0x10..0x10 + 512u64).map(|p| jc_page_bucket(p << 12)).collect();
        let kernel = 0xffff_ffff_8000_0000u64 >> 12;
        let shared = (kernel..kernel + 1024)
            .map(|p| jc_page_bucket(p << 12))
            .map(|b| user.iter().filter(|&&u| u == b).count())
            .sum::<usize>();
        assert!(shared < 96, "{shared} user/kernel page pairs share a bucket");
    }

    #[test]
    fn jump_cache_page_counts_stay_exact() {
        let mut c = TbCache::new();
        // The second pc, in another page, shares the first one's index and overwrites it.
        let clash = (0x3000u64..).step_by(2).find(|&pc| jc_index(pc) == jc_index(0x1002)).unwrap();
        let pcs = [0x1002u64, clash, 0x2000, 0x8000_0000, 0x8000_0ff0];
        let ids: Vec<TbId> = pcs.iter().map(|&pc| c.insert(tb(pc, 0x100, 0, 0)).0).collect();
        c.itlb_set(0x8000_0000, 0, 0x8000_0000, true);
        for (&pc, &id) in pcs.iter().zip(&ids) {
            c.jc_set(pc, 0, id);
            assert_page_counts_exact(&c);
        }
        assert_eq!(c.jc_probe(pcs[0], 0), None, "overwritten");
        c.invalidate_one(ids[2]);
        assert_page_counts_exact(&c);
        assert_eq!(c.jc_probe(0x2000, 0), None);
        c.on_tlb_flush_nonglobal();
        assert_page_counts_exact(&c);
        assert!(c.jc_probe(0x8000_0000, 0).is_some() && c.jc_probe(pcs[1], 0).is_none());
        c.on_tlb_flush_page(0x8000_0000);
        assert_page_counts_exact(&c);
        assert!(c.jc.pages.iter().all(|&n| n == 0), "{:?}", pcs.map(|pc| c.jc_probe(pc, 0)));
        let late = c.insert(tb(0x2004, 0x100, 0, 0)).0;
        c.jc_set(0x2004, 0, late);
        c.on_tlb_flush();
        assert_page_counts_exact(&c);
    }

    #[test]
    fn a_nonglobal_flush_keeps_what_global_mappings_reach() {
        // Kernel pages 0x8000_0000 and 0x8000_5000 are mapped globally, user page 0x1000 is
        // not; k1 links across pages to k2 and to u.
        let mut c = TbCache::new();
        let (k1, _) = c.insert(tb(0x8000_0000, 0x100, 2, 0));
        let (k2, _) = c.insert(tb(0x8000_5000, 0x200, 0, 1));
        let (u, _) = c.insert(tb(0x1000, 0x300, 0, 2));
        let mut two_pages = tb(0x8000_0ff0, 0x400, 0, 3);
        two_pages.phys_page2 = Some(0x9000_0000);
        let (k3, _) = c.insert(two_pages);
        for (page, global) in [(0x8000_0000, true), (0x8000_5000, true), (0x1000, false)] {
            c.itlb_set(page, 0, page, global);
        }
        for (pc, id) in [(0x8000_0000, k1), (0x8000_5000, k2), (0x1000, u), (0x8000_0ff0, k3)] {
            c.jc_set(pc, 0, id);
        }
        let link = |c: &mut TbCache, i: u32, dst: TbId| c.link(k1, i, slot_addr(c, k1, i), dst, true);
        assert!(link(&mut c, 0, k2) && link(&mut c, 1, u));
        let target = |c: &TbCache, i: usize| c.get(k1).unwrap().slots[i].target.load(Ordering::Relaxed);
        c.on_tlb_flush_nonglobal();
        assert_eq!((target(&c, 0), target(&c, 1)), (0x200, 0), "only the link into the user page is cut");
        let jc = |c: &TbCache| [0x8000_0000, 0x8000_5000, 0x1000, 0x8000_0ff0].map(|pc| c.jc_probe(pc, 0).is_some());
        // A block running into a second page depends on that page's mapping too.
        assert_eq!(jc(&c), [true, true, false, false]);
        assert_eq!((c.itlb_probe(0x8000_5000, 0), c.itlb_probe(0x1000, 0)), (Some(0x8000_5000), None));
        // Flushing the global page itself still cuts the link into it.
        c.on_tlb_flush_page(0x8000_5000);
        assert_eq!(target(&c, 0), 0);
        // A full flush cuts and drops everything.
        c.itlb_set(0x8000_5000, 0, 0x8000_5000, true);
        assert!(link(&mut c, 0, k2));
        c.on_tlb_flush();
        assert_eq!(target(&c, 0), 0);
        assert_eq!(jc(&c), [false; 4]);
        assert_eq!(c.itlb_probe(0x8000_0000, 0), None);
    }

    #[test]
    fn another_vcpu_running_cuts_only_local_links() {
        let mut c = TbCache::new();
        let (k, _) = c.insert(tb(0x8000_0000, 0x100, 2, 0));
        let (g, _) = c.insert(tb(0x8000_5000, 0x200, 0, 1));
        let (u, _) = c.insert(tb(0x1000, 0x300, 0, 2));
        c.itlb_set(0x8000_5000, 0, 0x8000_5000, true);
        assert!(c.link(k, 0, slot_addr(&c, k, 0), g, true) && c.link(k, 1, slot_addr(&c, k, 1), u, true));
        c.cut_local_links();
        let target = |i: usize| c.get(k).unwrap().slots[i].target.load(Ordering::Relaxed);
        assert_eq!((target(0), target(1)), (0x200, 0));
    }

    #[test]
    fn dead_fragile_entries_do_not_pile_up_without_flushes() {
        // A guest rewriting the code it jumps to, with no TLB flush ever: every round
        // invalidates the target and links to its new translation across a page.
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 2, 0));
        c.itlb_set(0x8000_0000, 0, 0x8000_0000, true);
        for round in 0..50_000u32 {
            let (d, _) = c.insert(tb(0x8000_0000 + 0x10 * (round as u64 % 64), 0x200, 0, 1));
            for i in 0..2 {
                assert!(c.link(a, i, slot_addr(&c, a, i), d, true));
            }
            c.invalidate_page(0x8000_0000, NO_TB);
        }
        assert!(c.fragile_len() <= 2 * FRAGILE_PRUNE_MIN + 2, "{} entries", c.fragile_len());
    }

    #[test]
    fn fetch_tlb_is_keyed_by_flags_and_cleared_with_the_mapping() {
        let mut c = TbCache::new();
        c.itlb_set(0x4000, 3, 0x8000_4000, false);
        assert_eq!(c.itlb_probe(0x4000, 3), Some(0x8000_4000));
        assert_eq!(c.itlb_probe(0x4000, 1), None, "another privilege level");
        assert_eq!(c.itlb_probe(0x4000 + (ITLB_SIZE as u64) * 0x1000, 3), None, "same index, other page");
        // Invalidating TBs keeps it (mapping unchanged); a TLB flush drops it.
        let (a, _) = c.insert(tb(0x1000, 0x100, 0, 0));
        c.invalidate_page(0x1000, a);
        assert_eq!(c.itlb_probe(0x4000, 3), Some(0x8000_4000));
        c.on_tlb_flush();
        assert_eq!(c.itlb_probe(0x4000, 3), None);
    }

    #[test]
    fn promotion_publishes_code_to_the_jump_cache() {
        let mut c = TbCache::new();
        let mut t = tb(0x1000, 0, 0, 0);
        t.exec = Exec::Interp(std::sync::Arc::new(kite_ir::Builder::new(0x1000).finish()), None);
        let (a, _) = c.insert(t);
        c.jc_set(0x1000, 0, a);
        let base = c.jc_base() as *const JcEntry;
        // SAFETY: `jc_base` points at the live entry array of JC_SIZE entries.
        let entry = |_: &TbCache| unsafe { *base.add(jc_index(0x1000)) }.code;
        assert_eq!(entry(&c), 0, "interpreted: generated code must miss");
        c.promote(a, 0x5000 as *const u8, TbCache::new_slots(a, 1));
        assert_eq!(entry(&c), 0x5000);
        assert!(matches!(c.get(a).unwrap().exec, Exec::Native(_)));
        // Swapping jump caches gives the other vCPU's entries.
        let mut other = JumpCache::new();
        c.swap_jump_cache(&mut other);
        assert_eq!(c.jc_base(), c.jc.entries.as_ptr() as u64);
        assert_ne!(c.jc_base(), base as u64);
    }

    #[test]
    fn stores_invalidate_only_overlapping_tbs() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 0, 0)); // code 0x1000..0x1010
        let (b, _) = c.insert(tb(0x1040, 0x200, 0, 1)); // code 0x1040..0x1050
        let mut x = tb(0x1ff8, 0x300, 0, 2); // 0x1ff8..0x2000 and 0x5000..0x5008
        x.phys_page2 = Some(0x5000);
        let (x, _) = c.insert(x);
        assert_eq!(c.invalidate_range(0x1000, 0x1020, 0x1028, a), (0, false), "data between TBs");
        assert_eq!(c.invalidate_range(0x1000, 0x1010, 0x1011, a), (0, false), "just past a");
        assert!(c.is_code_page(0x1000));
        assert_eq!(c.invalidate_range(0x5000, 0x5008, 0x5010, NO_TB).0, 0, "past x's tail");
        assert_eq!(c.invalidate_range(0x5000, 0x5004, 0x5005, NO_TB).0, 1, "x's tail");
        assert!(c.get(x).is_none() && !c.is_code_page(0x5000));
        assert_eq!(c.invalidate_range(0x1000, 0x100f, 0x1010, a), (1, true), "a's last byte");
        assert!(c.get(b).is_some() && c.is_code_page(0x1000));
        assert_eq!(c.invalidate_range(0x1000, 0x1000, 0x2000, NO_TB).0, 1);
        assert!(!c.is_code_page(0x1000));
    }

    #[test]
    fn tbs_are_per_virtual_alias() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 0, 0));
        assert_eq!(c.lookup(0x1000, 0x1000, 0), Some(a));
        assert_eq!(c.lookup(0x1000, 0xffff_0000_0000_1000, 0), None, "same physical pc, other virtual pc");
        let mut high = tb(0x1000, 0x200, 0, 1);
        high.vpc = 0xffff_0000_0000_1000;
        let (b, _) = c.insert(high);
        assert_eq!(c.lookup(0x1000, 0x1000, 0), Some(a));
        assert_eq!(c.lookup(0x1000, 0xffff_0000_0000_1000, 0), Some(b));
        assert_eq!(c.invalidate_page(0x1000, NO_TB).0, 2, "a store kills both aliases");
    }

    #[test]
    fn saved_jump_caches_drop_just_the_invalidated_entries() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 0, 0));
        let (b, _) = c.insert(tb(0x2000, 0x200, 0, 1));
        let mut other = JumpCache::new();
        other.epoch = c.epoch;
        c.jc_set(0x1000, 0, a); // vCPU 0's entry
        c.swap_jump_cache(&mut other); // vCPU 1 runs
        assert_eq!(c.jc_probe(0x1000, 0), None, "private to vCPU 0");
        c.jc_set(0x2000, 0, b);
        c.swap_jump_cache(&mut other); // back to vCPU 0: nothing was invalidated
        assert_eq!(c.jc_probe(0x1000, 0), Some(a));
        assert_eq!(c.jc_probe(0x2000, 0), None);
        // Invalidating b while vCPU 0 runs: vCPU 1's saved entry for b must go.
        c.invalidate_page(0x2000, NO_TB);
        let (reused, _) = c.insert(tb(0x3000, 0x300, 0, b));
        assert_eq!(reused, b, "id reused");
        c.swap_jump_cache(&mut other);
        assert_eq!(c.jc_probe(0x2000, 0), None, "stale entry dropped");
        // Only the invalidated TB's entry goes: vCPU 0's entry for a survives.
        c.swap_jump_cache(&mut other);
        assert_eq!(c.jc_probe(0x1000, 0), Some(a), "unrelated entry kept");
        // A saved cache that missed more invalidations than are remembered is cleared.
        c.swap_jump_cache(&mut other);
        for k in 0..=INVAL_LOG as u64 {
            let (t, _) = c.insert(tb(0x10_0000 + k * 0x1000, 0x400, 0, 2));
            c.invalidate(t);
        }
        c.swap_jump_cache(&mut other);
        assert_eq!(c.jc_probe(0x1000, 0), None, "cleared after too many invalidations");
    }

    /// The code the current jump cache's entry for `pc` would jump to.
    fn jc_code(c: &TbCache, pc: u64) -> u64 {
        c.jc.entries[jc_index(pc)].code
    }

    #[test]
    fn a_saved_jump_cache_learns_of_promotions_when_swapped_in() {
        let mut c = TbCache::new();
        let (a, _) = c.insert(tb(0x1000, 0x100, 0, 0));
        let mut other = JumpCache::new();
        other.epoch = c.epoch;
        c.jc_set(0x1000, 0, a); // vCPU 0's entry
        c.swap_jump_cache(&mut other); // vCPU 1 runs and promotes a
        c.jc_set(0x1000, 0, a);
        c.promote(a, 0x900 as *const u8, TbCache::new_slots(a, 1));
        assert_eq!(jc_code(&c, 0x1000), 0x900);
        c.swap_jump_cache(&mut other); // back to vCPU 0
        assert_eq!(c.jc_probe(0x1000, 0), Some(a));
        assert_eq!(jc_code(&c, 0x1000), 0x900, "not the old code, whose slots a no longer owns");
        // More promotions than the log keeps: the saved cache starts empty instead.
        c.swap_jump_cache(&mut other);
        for i in 0..=PROMO_LOG {
            c.promote(a, (0x1000 + i) as *const u8, TbCache::new_slots(a, 1));
        }
        c.swap_jump_cache(&mut other);
        assert_eq!(c.jc_probe(0x1000, 0), None);
    }
}
