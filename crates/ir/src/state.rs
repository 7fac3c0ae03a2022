//! The guest-state ABI shared by frontends, backends and the runtime.
//!
//! Every target's CPU struct is `#[repr(C)]` and starts with a [`CpuHeader`],
//! so a backend can find the PC, the exit-request word and the softmmu TLB at
//! fixed offsets without knowing the target. Offsets below are checked by a
//! unit test against the struct layout.

use std::sync::atomic::AtomicU32;

/// Softmmu TLB size per MMU mode, in entries (direct mapped, a power of two). Each mode's
/// TLB is resized by use, as QEMU does (see [`SoftTlb`]): it starts at, and never shrinks
/// below, 1024 entries (256 refilled ~180,000 times in a Linux boot, 1024 ~110,000), and
/// grows up to 65536 (2 MiB, 256 MiB of address space) for a guest whose working set
/// keeps evicting entries (a random walk over 64 MiB: 94% misses at 1024 entries).
pub const TLB_MIN_ENTRIES: usize = 1 << 10;
pub const TLB_MAX_ENTRIES: usize = 1 << 16;
/// Number of MMU modes (TLBs) a target may use; the mode is part of the TB key.
pub const MMU_MODES: usize = 4;
/// Guest page size the softmmu works in.
pub const PAGE_BITS: u32 = 12;
pub const PAGE_SIZE: u64 = 1 << PAGE_BITS;
pub const PAGE_MASK: u64 = !(PAGE_SIZE - 1);

/// What an access's inline TLB check compares with the entry's tag (QEMU's scheme).
/// An access that may be misaligned compares the page of its *last* byte: within its
/// page it hits (x86 hosts load and store misaligned data natively), across a page it
/// misses (the index comes from the first byte's page, whose successor has another
/// index) and the slow path splits it. An access that must be aligned (atomics) keeps
/// its alignment bits, so a misaligned one misses and faults in the slow path.
#[inline]
pub fn tlb_cmp_key(vaddr: u64, bytes: u64, aligned: bool) -> u64 {
    if aligned || bytes == 1 {
        vaddr & (PAGE_MASK | (bytes - 1))
    } else {
        vaddr.wrapping_add(bytes - 1) & PAGE_MASK
    }
}

/// Flag bits kept in the low (in-page) bits of a TLB tag. Any of them set makes
/// the inline comparison fail, so the access takes the slow path. Bits 0-2 are
/// left clear: the inline check folds the access's alignment bits into them.
pub mod tlb_flags {
    /// Entry is empty.
    pub const INVALID: u64 = 1 << 11;
    /// Page is MMIO: dispatch to the device.
    pub const MMIO: u64 = 1 << 10;
    /// Page holds translated code: writes must invalidate TBs first.
    pub const CODE: u64 = 1 << 9;
    /// Page has a debugger watchpoint.
    pub const WATCH: u64 = 1 << 8;
}

/// One softmmu TLB entry (32 bytes, 32-byte aligned: a miss on a cold entry is one cache
/// line, not two). A tag is the virtual page address for the access type, or a value with
/// a flag bit set. `addend` turns a virtual address on the page into a host pointer:
/// `host = vaddr + addend`.
#[repr(C, align(32))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TlbEntry {
    pub addr_read: u64,
    pub addr_write: u64,
    pub addr_code: u64,
    pub addend: u64,
}

impl TlbEntry {
    pub const EMPTY: TlbEntry = TlbEntry {
        addr_read: tlb_flags::INVALID,
        addr_write: tlb_flags::INVALID,
        addr_code: tlb_flags::INVALID,
        addend: 0,
    };

    /// The virtual page this entry translates, if any of its tags is in use.
    pub fn page(&self) -> Option<u64> {
        [self.addr_read, self.addr_write, self.addr_code]
            .into_iter()
            .find(|t| t & tlb_flags::INVALID == 0)
            .map(|t| t & PAGE_MASK)
    }
}

/// Why a block (or a helper) hands control back to the dispatcher.
pub mod status {
    /// Nothing pending: the dispatcher continues at `CpuHeader::pc`.
    pub const NONE: u32 = 0;
    /// A guest exception: `cause` and `tval` are in the header and `pc` is
    /// the faulting instruction.
    pub const EXCEPTION: u32 = 1;
    /// The guest waits for an interrupt; `pc` is the instruction after `wfi`.
    pub const HALT: u32 = 2;
    /// The exit-request word was set (interrupt, timer, debugger, shutdown).
    pub const EXIT_REQUEST: u32 = 3;
    /// Return to the dispatcher to re-evaluate TB-key state; `pc` is set.
    pub const LOOKUP: u32 = 4;
}

/// Bits of [`CpuHeader::flush_request`].
pub mod flush {
    /// Flush every TLB entry and the jump cache (satp write, `sfence.vma`,
    /// privilege-affecting CSR changes).
    pub const TLB_ALL: u32 = 1 << 0;
    /// Translated code may be stale (`fence.i`): the accelerator must make
    /// sure guest stores are visible to later translations (it already
    /// invalidates on stores to code pages, so this is a synchronisation point).
    pub const CODE: u32 = 1 << 1;
    /// The guest is spin-waiting (RISC-V `pause`, x86 `pause`): an accelerator that runs
    /// several vCPUs in turns on one thread should let another one run now, since the
    /// lock or flag being waited for can only change when its holder runs.
    pub const YIELD: u32 = 1 << 2;
    /// Flush the pages the target lists (`GuestCpu::take_flush_page`, e.g. RISC-V
    /// `sfence.vma rs1`): their TLB entries, fetch-TLB and jump-cache entries.
    pub const TLB_PAGE: u32 = 1 << 3;
    /// Flush every translation except global ones (`GuestCpu::tlb_global`): an address
    /// space switch (RISC-V satp write that keeps the mode, `sfence.vma x0, asid`). The
    /// kernel's TLB entries, jump-cache entries and chain links survive it.
    pub const TLB_NONGLOBAL: u32 = 1 << 4;
    /// A softmmu slow path found a TLB too small for the guest's working set
    /// ([`super::CpuHeader::tlb_fill_entry`]): resize it ([`super::CpuHeader::tlb_resize`])
    /// while no block runs, since generated code may keep a TLB's address for a whole block.
    pub const TLB_RESIZE: u32 = 1 << 5;
}

/// The common head of every target's CPU state.
#[repr(C)]
#[derive(Debug)]
pub struct CpuHeader {
    /// Guest PC. Up to date only at block exits and before helpers that may
    /// exit; inside a block the backend knows the PC statically.
    pub pc: u64,
    /// Non-zero asks the vCPU to leave translated code at the next block
    /// entry. Set from other threads (interrupts, timers, debugger, shutdown).
    pub exit_request: AtomicU32,
    /// Set by helpers and slow paths to one of [`status`] to make the block exit.
    pub status: u32,
    /// Pending exception cause (target-defined encoding) and trap value.
    pub cause: u64,
    pub tval: u64,
    /// Guest instructions executed, counted per block entry.
    pub icount: u64,
    /// The target's current TB flags (privilege, MMU mode, FP state, ...):
    /// everything besides the PC that translation depends on. Targets keep it
    /// current whenever that state changes; the dispatcher and jump caches key
    /// blocks on (pc, flags).
    pub flags: u32,
    /// Requests from the target to the accelerator, handled when the block
    /// exits (see [`flush`]). Targets never touch the TLB themselves.
    pub flush_request: u32,
    /// Where the registers-preserving entry to the softmmu slow path leaves its result
    /// (a call that clobbers no register cannot return one in a register).
    pub slow_ret: u64,
    /// The arguments of a call to that entry or to the registers-preserving cold-helper
    /// entry, stored by the caller. Passed in registers, they pinned values to fixed
    /// registers at every TLB-miss site, and the register allocator spilled loop values
    /// that lived in those registers for the whole loop.
    pub slow_args: [u64; 5],
    /// Per MMU mode: the byte mask of a TLB index, `(entries - 1) * 32`. Generated code
    /// finds the entry for `vaddr` at `tlb_table[m] + ((vaddr >> 7) & tlb_mask[m])`
    /// (QEMU's `CPUTLBDescFast`). Both fields change only in [`CpuHeader::tlb_resize`]
    /// and at flushes, which run between blocks, so a block may load them once.
    pub tlb_mask: [u64; MMU_MODES],
    /// Per MMU mode: the host address of TLB entry 0 (owned by `tlbs`).
    pub tlb_table: [u64; MMU_MODES],
    /// The host address of this vCPU's jump-cache entries, for the inline probe of
    /// generated code at an indirect exit (0: none yet). The accelerator sets it before it
    /// runs the vCPU's code, so one block's code serves every vCPU that runs it.
    pub jc_base: u64,
    /// The context the accelerator's softmmu slow path gets as its first argument, set
    /// by the accelerator before it runs generated code (like `jc_base`), so that the
    /// code names no per-engine context.
    pub slow_ctx: u64,
    /// The TLBs and their sizing state. Generated code never reads this.
    pub tlbs: Box<[SoftTlb; MMU_MODES]>,
}

/// One MMU mode's softmmu TLB, sized by use.
///
/// Growing: a fill that evicts another page's translation counts; once a TLB has
/// evicted as many translations as it has entries since it was last emptied or
/// resized, the working set does not fit and the TLB doubles (keeping its entries).
/// QEMU grows only at flushes, by the share of entries in use, so there a guest that
/// never flushes (a compute kernel walking a big array) keeps its smallest TLB; Kite
/// also grows at a flush that finds 70% of the entries in use, as QEMU does.
///
/// Shrinking: a full flush costs a pass over every entry (Linux flushes at address-space
/// switches), so at a flush that ends a window of [`TLB_WINDOW_INSNS`] guest instructions
/// in which no flush found even a quarter of the entries in use, the TLB shrinks to twice
/// that peak. The window is counted in guest instructions, not host time, so a run's
/// TLB sizes (and whatever a guest could observe through stale translations) do not
/// depend on host speed.
#[derive(Debug)]
pub struct SoftTlb {
    entries: Vec<TlbEntry>,
    /// A bit per entry that holds a non-global translation: the entries
    /// [`CpuHeader::tlb_flush_nonglobal`] empties.
    local: Vec<u64>,
    /// Entries that hold a translation.
    used: usize,
    /// Fills that replaced another page's translation since the TLB was last emptied or
    /// resized.
    evictions: usize,
    /// The most entries in use at a flush in the current window, and the guest
    /// instruction count at which the window began.
    window_max: usize,
    window_start: u64,
    /// A grow was asked for ([`flush::TLB_RESIZE`]) and not done yet.
    grow: bool,
}

/// Guest instructions in a TLB-shrinking window (some 50-100 ms of guest time).
pub const TLB_WINDOW_INSNS: u64 = 50_000_000;

impl SoftTlb {
    fn new(n: usize) -> SoftTlb {
        SoftTlb {
            entries: vec![TlbEntry::EMPTY; n],
            local: vec![0; n.div_ceil(64)],
            used: 0,
            evictions: 0,
            window_max: 0,
            window_start: 0,
            grow: false,
        }
    }

    pub fn entries(&self) -> &[TlbEntry] {
        &self.entries
    }

    pub fn entries_mut(&mut self) -> &mut [TlbEntry] {
        &mut self.entries
    }

    fn index(&self, vaddr: u64) -> usize {
        (vaddr >> PAGE_BITS) as usize & (self.entries.len() - 1)
    }

    fn empty_all(&mut self) {
        self.entries.fill(TlbEntry::EMPTY);
        self.local.fill(0);
        self.used = 0;
        self.evictions = 0;
    }

    /// Move to `n` entries, keeping the translations that still have a place.
    fn resize(&mut self, n: usize) {
        let old = std::mem::replace(self, SoftTlb::new(n));
        self.window_max = old.window_max;
        self.window_start = old.window_start;
        for (i, e) in old.entries.iter().enumerate() {
            let Some(page) = e.page() else {
                continue;
            };
            let j = self.index(page);
            if self.entries[j] == TlbEntry::EMPTY {
                self.used += 1;
            }
            self.entries[j] = *e;
            self.set_global(j, old.local[i / 64] & (1 << (i % 64)) == 0);
        }
    }

    fn set_global(&mut self, idx: usize, global: bool) {
        let m = 1u64 << (idx % 64);
        if let Some(w) = self.local.get_mut(idx / 64) {
            if global {
                *w &= !m;
            } else {
                *w |= m;
            }
        }
    }

    /// At a flush: account the use it ends and size the TLB for what comes next. Returns
    /// whether it resized (a resized TLB comes back empty).
    fn flush_resize(&mut self, icount: u64) -> bool {
        let n = self.entries.len();
        self.window_max = self.window_max.max(self.used);
        let size = if self.used * 10 >= n * 7 && n < TLB_MAX_ENTRIES {
            n * 2
        } else if icount.wrapping_sub(self.window_start) >= TLB_WINDOW_INSNS {
            let peak = std::mem::take(&mut self.window_max);
            self.window_start = icount;
            if peak * 4 < n {
                (peak.next_power_of_two() * 2).clamp(TLB_MIN_ENTRIES, n)
            } else {
                n
            }
        } else {
            n
        };
        if size != n {
            *self = SoftTlb { window_start: icount, ..SoftTlb::new(size) };
        }
        size != n
    }
}

impl Default for CpuHeader {
    fn default() -> Self {
        let mut h = CpuHeader {
            pc: 0,
            exit_request: AtomicU32::new(0),
            status: status::NONE,
            cause: 0,
            tval: 0,
            icount: 0,
            flags: 0,
            flush_request: 0,
            slow_ret: 0,
            slow_args: [0; 5],
            tlb_mask: [0; MMU_MODES],
            tlb_table: [0; MMU_MODES],
            jc_base: 0,
            slow_ctx: 0,
            tlbs: Box::new(std::array::from_fn(|_| SoftTlb::new(TLB_MIN_ENTRIES))),
        };
        h.tlb_publish();
        h
    }
}

impl CpuHeader {
    /// Point generated code at the TLBs (after they were made or resized).
    fn tlb_publish(&mut self) {
        for (m, t) in self.tlbs.iter_mut().enumerate() {
            self.tlb_mask[m] = ((t.entries.len() - 1) * std::mem::size_of::<TlbEntry>()) as u64;
            self.tlb_table[m] = t.entries.as_mut_ptr() as u64;
        }
    }

    /// Mode `mmu`'s TLB entries (none for a mode out of range).
    pub fn tlb_entries(&self, mmu: usize) -> &[TlbEntry] {
        self.tlbs.get(mmu).map_or(&[], |t| t.entries())
    }

    pub fn tlb_entries_mut(&mut self, mmu: usize) -> &mut [TlbEntry] {
        self.tlbs.get_mut(mmu).map_or(&mut [], |t| t.entries_mut())
    }

    /// The entry for `vaddr` in mode `mmu`.
    pub fn tlb_entry(&self, mmu: usize, vaddr: u64) -> Option<&TlbEntry> {
        let t = self.tlbs.get(mmu)?;
        t.entries.get(t.index(vaddr))
    }

    /// The entry a fill of `vaddr`'s page in mode `mmu` writes (and its index), emptied
    /// unless it already maps that page at `addend`. Accounts the fill for sizing, and
    /// asks for a resize ([`flush::TLB_RESIZE`], with an exit request so that the block in
    /// flight ends) when the TLB keeps evicting.
    pub fn tlb_fill_entry(&mut self, mmu: usize, vaddr: u64, addend: u64) -> Option<(&mut TlbEntry, usize)> {
        let page = vaddr & PAGE_MASK;
        let t = self.tlbs.get_mut(mmu)?;
        let idx = t.index(vaddr);
        let e = t.entries[idx];
        // Live tags all name one page (a fill for another page empties the entry first).
        if !(e.addend == addend && e.page() == Some(page)) {
            match e.page() {
                None => t.used += 1,
                // The same page mapped elsewhere now (a remap): no other page lost its
                // place, so the working set says nothing new.
                Some(p) if p == page => {}
                Some(_) => {
                    t.evictions += 1;
                    if t.evictions >= t.entries.len() && t.entries.len() < TLB_MAX_ENTRIES && !t.grow {
                        t.grow = true;
                        self.flush_request |= flush::TLB_RESIZE;
                        self.exit_request.fetch_or(1, std::sync::atomic::Ordering::Release);
                    }
                }
            }
            t.entries[idx] = TlbEntry { addend, ..TlbEntry::EMPTY };
        }
        Some((&mut t.entries[idx], idx))
    }

    /// Do the grows [`CpuHeader::tlb_fill_entry`] asked for. Only while no block runs:
    /// the tables move.
    pub fn tlb_resize(&mut self) {
        for t in self.tlbs.iter_mut().filter(|t| t.grow) {
            t.grow = false;
            let n = (t.entries.len() * 2).min(TLB_MAX_ENTRIES);
            t.resize(n);
        }
        self.tlb_publish();
    }

    /// Empty every TLB entry of every mode (and size each TLB by the use this ends).
    pub fn tlb_flush_all(&mut self) {
        let icount = self.icount;
        for t in self.tlbs.iter_mut() {
            if !t.flush_resize(icount) {
                t.empty_all();
            }
        }
        self.tlb_publish();
    }

    /// Empty the entries that hold non-global translations (see [`flush::TLB_NONGLOBAL`]).
    pub fn tlb_flush_nonglobal(&mut self) {
        let icount = self.icount;
        for t in self.tlbs.iter_mut() {
            if t.flush_resize(icount) {
                continue;
            }
            t.evictions = 0;
            let SoftTlb { entries, local, used, .. } = t;
            for (w, bits) in local.iter_mut().enumerate() {
                let mut b = std::mem::take(bits);
                *used = used.saturating_sub(b.count_ones() as usize);
                while b != 0 {
                    entries[w * 64 + b.trailing_zeros() as usize] = TlbEntry::EMPTY;
                    b &= b - 1;
                }
            }
        }
        self.tlb_publish();
    }

    /// Record whether TLB entry `idx` of mode `mmu` holds a global translation.
    pub fn tlb_set_global(&mut self, mmu: usize, idx: usize, global: bool) {
        if let Some(t) = self.tlbs.get_mut(mmu) {
            t.set_global(idx, global);
        }
    }

    /// Make every write entry that maps the guest page at host address `host_page` take
    /// the slow path (set [`tlb_flags::CODE`]): the page just got translated code.
    pub fn tlb_mark_code(&mut self, host_page: u64) {
        self.tlb_mark_code_pages(&[host_page]);
    }

    /// [`CpuHeader::tlb_mark_code`] for several pages at once (`host_pages` sorted).
    pub fn tlb_mark_code_pages(&mut self, host_pages: &[u64]) {
        for e in self.tlbs.iter_mut().flat_map(|t| t.entries.iter_mut()) {
            let w = e.addr_write;
            if w & tlb_flags::INVALID == 0 && host_pages.binary_search(&(w & PAGE_MASK).wrapping_add(e.addend)).is_ok()
            {
                e.addr_write = w | tlb_flags::CODE;
            }
        }
    }

    /// Empty the entries that map the page of `vaddr` in every mode.
    pub fn tlb_flush_page(&mut self, vaddr: u64) {
        let page = vaddr & PAGE_MASK;
        for t in self.tlbs.iter_mut() {
            let idx = t.index(vaddr);
            let e = &mut t.entries[idx];
            if e.page() == Some(page) {
                *e = TlbEntry::EMPTY;
                t.used = t.used.saturating_sub(1);
                t.set_global(idx, true);
            }
        }
    }
}

/// Byte offsets of the header fields, for generated code.
pub mod offsets {
    pub const PC: u32 = 0;
    pub const EXIT_REQUEST: u32 = 8;
    pub const STATUS: u32 = 12;
    pub const CAUSE: u32 = 16;
    pub const TVAL: u32 = 24;
    pub const ICOUNT: u32 = 32;
    pub const FLAGS: u32 = 40;
    pub const FLUSH_REQUEST: u32 = 44;
    pub const SLOW_RET: u32 = 48;
    pub const SLOW_ARGS: u32 = 56;
    /// Per-mode TLB index masks and tables (`CpuHeader::tlb_mask`, `tlb_table`).
    pub const TLB_MASK: u32 = 96;
    pub const TLB_TABLE: u32 = 128;
    /// The jump-cache base (`CpuHeader::jc_base`).
    pub const JC_BASE: u32 = 160;
    /// The slow path's context (`CpuHeader::slow_ctx`).
    pub const SLOW_CTX: u32 = 168;
    /// Size of one TLB entry, in bytes.
    pub const TLB_ENTRY_SIZE: u32 = 32;
    /// Offsets inside a TLB entry.
    pub const TLB_ADDR_READ: u32 = 0;
    pub const TLB_ADDR_WRITE: u32 = 8;
    pub const TLB_ADDR_CODE: u32 = 16;
    pub const TLB_ADDEND: u32 = 24;
    /// First byte after the header: where a target's own state may begin.
    pub const HEADER_END: u32 = 184;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn misaligned_accesses_hit_within_their_page_only() {
        let page = 0x8000_3000u64;
        // Plain accesses: any offset whose last byte stays on the page matches its tag.
        assert_eq!(tlb_cmp_key(page + 0x1, 8, false), page);
        assert_eq!(tlb_cmp_key(page + 0xff8, 8, false), page);
        assert_eq!(tlb_cmp_key(page + 0xffe, 2, false), page);
        assert_eq!(tlb_cmp_key(page + 0xfff, 1, false), page);
        // Crossing into the next page (or wrapping the address space) never matches.
        assert_ne!(tlb_cmp_key(page + 0xff9, 8, false), page);
        assert_ne!(tlb_cmp_key(page + 0xfff, 2, false), page);
        assert_ne!(tlb_cmp_key(u64::MAX - 2, 4, false), PAGE_MASK, "the last page of the address space");
        // Aligned-only accesses (atomics) miss when misaligned, even within the page.
        assert_eq!(tlb_cmp_key(page + 0x8, 8, true), page);
        assert_ne!(tlb_cmp_key(page + 0x4, 8, true), page);
        assert_ne!(tlb_cmp_key(page + 0x2, 4, true), page);
        // A flag bit in the tag keeps every access on the slow path.
        assert_ne!(tlb_cmp_key(page + 0x1, 8, false), page | tlb_flags::CODE);
    }

    #[test]
    fn header_offsets_match_layout() {
        assert_eq!(offset_of!(CpuHeader, pc) as u32, offsets::PC);
        assert_eq!(offset_of!(CpuHeader, exit_request) as u32, offsets::EXIT_REQUEST);
        assert_eq!(offset_of!(CpuHeader, status) as u32, offsets::STATUS);
        assert_eq!(offset_of!(CpuHeader, cause) as u32, offsets::CAUSE);
        assert_eq!(offset_of!(CpuHeader, tval) as u32, offsets::TVAL);
        assert_eq!(offset_of!(CpuHeader, icount) as u32, offsets::ICOUNT);
        assert_eq!(offset_of!(CpuHeader, flags) as u32, offsets::FLAGS);
        assert_eq!(offset_of!(CpuHeader, flush_request) as u32, offsets::FLUSH_REQUEST);
        assert_eq!(offset_of!(CpuHeader, slow_ret) as u32, offsets::SLOW_RET);
        assert_eq!(offset_of!(CpuHeader, slow_args) as u32, offsets::SLOW_ARGS);
        assert_eq!(offset_of!(CpuHeader, tlb_mask) as u32, offsets::TLB_MASK);
        assert_eq!(offset_of!(CpuHeader, tlb_table) as u32, offsets::TLB_TABLE);
        assert_eq!(offset_of!(CpuHeader, jc_base) as u32, offsets::JC_BASE);
        assert_eq!(offset_of!(CpuHeader, slow_ctx) as u32, offsets::SLOW_CTX);
        assert_eq!(size_of::<TlbEntry>() as u32, offsets::TLB_ENTRY_SIZE);
        assert_eq!(std::mem::align_of::<TlbEntry>() as u32, offsets::TLB_ENTRY_SIZE, "an entry is one cache line");
        assert_eq!(size_of::<CpuHeader>() as u32, offsets::HEADER_END);
        let h = CpuHeader::default();
        for m in 0..MMU_MODES {
            let t = h.tlb_entries(m);
            assert_eq!((h.tlb_table[m], h.tlb_mask[m]), (t.as_ptr() as u64, (t.len() as u64 - 1) * 32));
            assert_eq!(h.tlb_table[m] % 32, 0);
        }
    }

    /// A translation of `va` (all three access types) to host address `host`.
    fn map(va: u64, host: u64) -> TlbEntry {
        TlbEntry { addr_read: va, addr_write: va, addr_code: va, addend: host.wrapping_sub(va) }
    }

    /// Fill mode `mmu`'s entry for `va` the way the softmmu does.
    fn fill(h: &mut CpuHeader, mmu: usize, va: u64, global: bool) {
        let e = map(va, 0x7f00_0000_0000 + va);
        let (slot, idx) = h.tlb_fill_entry(mmu, va, e.addend).unwrap();
        *slot = e;
        h.tlb_set_global(mmu, idx, global);
    }

    #[test]
    fn marking_a_code_page_flags_every_write_entry_that_maps_it() {
        let mut h = CpuHeader::default();
        let host = 0x7f00_0000_0000u64;
        // Two virtual aliases of the host page, in two modes, and another page.
        h.tlb_entries_mut(0)[1] = map(0x1000, host);
        h.tlb_entries_mut(2)[5] = map(0xffff_ffc0_0000_5000, host);
        h.tlb_entries_mut(0)[2] = map(0x2000, host + 0x1000);
        h.tlb_mark_code(host);
        assert_eq!(h.tlb_entries(0)[1].addr_write, 0x1000 | tlb_flags::CODE);
        assert_eq!(h.tlb_entries(2)[5].addr_write, 0xffff_ffc0_0000_5000 | tlb_flags::CODE);
        assert_eq!(h.tlb_entries(0)[1].addr_read, 0x1000, "reads stay fast");
        assert_eq!(h.tlb_entries(0)[2].addr_write, 0x2000, "another page");
        assert_eq!(h.tlb_entries(1)[0], TlbEntry::EMPTY);
        // Several pages in one pass.
        let mut h = CpuHeader::default();
        for (i, va) in [0x1000u64, 0x2000, 0x3000].into_iter().enumerate() {
            h.tlb_entries_mut(1)[i] = map(va, host + 0x1000 * i as u64);
        }
        h.tlb_mark_code_pages(&[host, host + 0x2000]);
        let w: Vec<u64> = (0..3).map(|i| h.tlb_entries(1)[i].addr_write & tlb_flags::CODE).collect();
        assert_eq!(w, [tlb_flags::CODE, 0, tlb_flags::CODE]);
    }

    #[test]
    fn flush_page_only_hits_that_page() {
        let mut h = CpuHeader::default();
        fill(&mut h, 0, 0x8000_0000, true);
        fill(&mut h, 1, 0x8000_1000, true);
        h.tlb_flush_page(0x8000_0123);
        assert_eq!(h.tlb_entry(0, 0x8000_0000), Some(&TlbEntry::EMPTY));
        assert_eq!(h.tlb_entry(1, 0x8000_1000).unwrap().addr_read, 0x8000_1000);
        assert_eq!((h.tlbs[0].used, h.tlbs[1].used), (0, 1));
        // An empty entry is not page 0's.
        h.tlb_flush_page(0);
        assert_eq!(h.tlbs[1].used, 1);
    }

    #[test]
    fn a_nonglobal_flush_keeps_global_entries_only() {
        let mut h = CpuHeader::default();
        for (mmu, va, global) in [(0, 0x3000, true), (0, 0x46000, false), (1, 0xc8000, false), (3, 0xff000, true)] {
            fill(&mut h, mmu, va, global);
        }
        // An entry refilled with a global translation loses its mark.
        fill(&mut h, 2, 0x9000, false);
        fill(&mut h, 2, 0x9000, true);
        h.tlb_flush_nonglobal();
        let at = |h: &CpuHeader, m: usize, va: u64| h.tlb_entry(m, va).unwrap().addr_read;
        assert_eq!([at(&h, 0, 0x3000), at(&h, 3, 0xff000), at(&h, 2, 0x9000)], [0x3000, 0xff000, 0x9000]);
        assert_eq!(
            (h.tlb_entry(0, 0x46000), h.tlb_entry(1, 0xc8000)),
            (Some(&TlbEntry::EMPTY), Some(&TlbEntry::EMPTY))
        );
        assert!(h.tlbs.iter().all(|t| t.local.iter().all(|&w| w == 0)));
        assert_eq!(h.tlbs.iter().map(|t| t.used).collect::<Vec<_>>(), [1, 0, 1, 1]);
    }

    #[test]
    fn a_tlb_that_keeps_evicting_grows_and_keeps_its_entries() {
        let mut h = CpuHeader::default();
        let n = TLB_MIN_ENTRIES as u64;
        // A working set of twice the TLB: the first half fills it, the second evicts it.
        for i in 0..2 * n - 1 {
            fill(&mut h, 1, 0x4000_0000 + i * 0x1000, i % 3 == 0);
        }
        assert_eq!((h.flush_request, h.exit_request.load(std::sync::atomic::Ordering::Relaxed)), (0, 0));
        fill(&mut h, 1, 0x4000_0000 + (2 * n - 1) * 0x1000, false);
        assert_eq!(h.flush_request, flush::TLB_RESIZE, "the {n}th eviction asks for a bigger TLB");
        assert_ne!(h.exit_request.load(std::sync::atomic::Ordering::Relaxed), 0, "and ends the block in flight");
        let old = h.tlb_table[1];
        h.tlb_resize();
        assert_eq!(h.tlb_entries(1).len(), 2 * n as usize);
        assert_ne!(h.tlb_table[1], old);
        assert_eq!(h.tlb_mask[1], (2 * n - 1) * 32);
        assert_eq!(h.tlb_entries(0).len(), n as usize, "other modes keep their size");
        // The resident half kept its translations, and their global marks.
        for i in n..2 * n {
            let va = 0x4000_0000 + i * 0x1000;
            assert_eq!(h.tlb_entry(1, va).unwrap().addr_read, va);
        }
        assert_eq!(h.tlbs[1].used, n as usize);
        h.tlb_flush_nonglobal();
        assert_eq!(h.tlbs[1].used as u64, (n..2 * n).filter(|i| i % 3 == 0).count() as u64);
        // Now the whole working set fits: no more evictions, no more growth.
        h.flush_request = 0;
        for _ in 0..3 {
            for i in 0..2 * n {
                fill(&mut h, 1, 0x4000_0000 + i * 0x1000, true);
            }
        }
        assert_eq!(h.flush_request, 0);
    }

    #[test]
    fn remapping_a_page_is_not_an_eviction() {
        let mut h = CpuHeader::default();
        let n = TLB_MIN_ENTRIES as u64;
        // One page remapped to a new host page over and over: the TLB keeps its size.
        for i in 0..4 * n {
            let (slot, _) = h.tlb_fill_entry(0, 0x5000, 0x7f00_0000_0000 + i * 0x1000).unwrap();
            slot.addr_read = 0x5000;
        }
        assert_eq!((h.flush_request, h.tlbs[0].evictions, h.tlbs[0].used), (0, 0, 1));
    }

    #[test]
    fn flushes_grow_a_full_tlb_and_shrink_an_idle_one() {
        let mut h = CpuHeader::default();
        let n = TLB_MIN_ENTRIES as u64;
        // 70% in use at a flush: double.
        for i in 0..n * 7 / 10 + 1 {
            fill(&mut h, 0, i * 0x1000, true);
        }
        h.tlb_flush_all();
        assert_eq!(h.tlb_entries(0).len(), 2 * n as usize);
        assert_eq!(h.tlb_entries(1).len(), n as usize);
        assert_eq!(h.tlb_entry(0, 0), Some(&TlbEntry::EMPTY));
        assert_eq!(h.tlb_table[0], h.tlb_entries(0).as_ptr() as u64);
        // Lightly used for a whole window: back to the smallest size, never below it.
        for k in 1..=3 {
            fill(&mut h, 0, 0x1000, true);
            h.icount = k * TLB_WINDOW_INSNS;
            h.tlb_flush_all();
        }
        assert_eq!(h.tlb_entries(0).len(), n as usize);
        assert_eq!(h.tlb_mask[0], (n - 1) * 32);
    }
}
