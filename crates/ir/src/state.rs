//! The guest-state ABI shared by frontends, backends and the runtime.
//!
//! Every target's CPU struct is `#[repr(C)]` and starts with a [`CpuHeader`],
//! so a backend can find the PC, the exit-request word and the softmmu TLB at
//! fixed offsets without knowing the target. Offsets below are checked by a
//! unit test against the struct layout.

use std::sync::atomic::AtomicU32;

/// Number of softmmu TLB entries per MMU mode (direct mapped). 256 refilled ~180,000
/// times in a Linux boot (conflict misses), 1024 ~110,000 (~4% of the boot); larger
/// sizes gain less and make every full flush and the CPU struct bigger (QEMU resizes its
/// TLBs by use instead).
pub const TLB_ENTRIES: usize = 1024;
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

/// One softmmu TLB entry (32 bytes). A tag is the virtual page address for the
/// access type, or a value with a flag bit set. `addend` turns a virtual
/// address on the page into a host pointer: `host = vaddr + addend`.
#[repr(C)]
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
}

/// The common head of every target's CPU state.
// 32-byte aligned so that every 32-byte TLB entry sits in one cache line (a miss on a
// cold entry is one line, not two).
#[repr(C, align(32))]
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
    /// The softmmu TLBs, one per MMU mode.
    pub tlb: [[TlbEntry; TLB_ENTRIES]; MMU_MODES],
    /// Per mode, a bit per TLB entry that holds a non-global translation: the entries
    /// [`CpuHeader::tlb_flush_nonglobal`] empties.
    pub tlb_local: [[u64; TLB_ENTRIES / 64]; MMU_MODES],
}

impl Default for CpuHeader {
    fn default() -> Self {
        CpuHeader {
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
            tlb: [[TlbEntry::EMPTY; TLB_ENTRIES]; MMU_MODES],
            tlb_local: [[0; TLB_ENTRIES / 64]; MMU_MODES],
        }
    }
}

impl CpuHeader {
    /// Empty every TLB entry of every mode.
    pub fn tlb_flush_all(&mut self) {
        for mode in self.tlb.iter_mut() {
            mode.fill(TlbEntry::EMPTY);
        }
        self.tlb_local = [[0; TLB_ENTRIES / 64]; MMU_MODES];
    }

    /// Empty the entries that hold non-global translations (see [`flush::TLB_NONGLOBAL`]).
    pub fn tlb_flush_nonglobal(&mut self) {
        for (mode, local) in self.tlb.iter_mut().zip(self.tlb_local.iter_mut()) {
            for (w, bits) in local.iter_mut().enumerate() {
                let mut b = std::mem::take(bits);
                while b != 0 {
                    mode[w * 64 + b.trailing_zeros() as usize] = TlbEntry::EMPTY;
                    b &= b - 1;
                }
            }
        }
    }

    /// Record whether TLB entry `idx` of mode `mmu` holds a global translation.
    pub fn tlb_set_global(&mut self, mmu: usize, idx: usize, global: bool) {
        if let Some(local) = self.tlb_local.get_mut(mmu) {
            let (w, m) = (idx / 64 % (TLB_ENTRIES / 64), 1u64 << (idx % 64));
            if global {
                local[w] &= !m;
            } else {
                local[w] |= m;
            }
        }
    }

    /// Make every write entry that maps the guest page at host address `host_page` take
    /// the slow path (set [`tlb_flags::CODE`]): the page just got translated code.
    pub fn tlb_mark_code(&mut self, host_page: u64) {
        self.tlb_mark_code_pages(&[host_page]);
    }

    /// [`CpuHeader::tlb_mark_code`] for several pages at once (`host_pages` sorted).
    pub fn tlb_mark_code_pages(&mut self, host_pages: &[u64]) {
        for e in self.tlb.iter_mut().flatten() {
            let w = e.addr_write;
            if w & tlb_flags::INVALID == 0 && host_pages.binary_search(&(w & PAGE_MASK).wrapping_add(e.addend)).is_ok()
            {
                e.addr_write = w | tlb_flags::CODE;
            }
        }
    }

    /// Empty the entries that map the page of `vaddr` in every mode.
    pub fn tlb_flush_page(&mut self, vaddr: u64) {
        let idx = ((vaddr >> PAGE_BITS) as usize) & (TLB_ENTRIES - 1);
        let page = vaddr & PAGE_MASK;
        for mode in self.tlb.iter_mut() {
            let e = &mut mode[idx];
            if [e.addr_read, e.addr_write, e.addr_code].iter().any(|t| t & PAGE_MASK == page) {
                *e = TlbEntry::EMPTY;
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
    /// 32-byte aligned (as the header is): no TLB entry straddles two cache lines.
    pub const TLB: u32 = 96;
    /// Size of one TLB entry and of one mode's TLB, in bytes.
    pub const TLB_ENTRY_SIZE: u32 = 32;
    pub const TLB_MODE_SIZE: u32 = TLB_ENTRY_SIZE * super::TLB_ENTRIES as u32;
    /// Offsets inside a TLB entry.
    pub const TLB_ADDR_READ: u32 = 0;
    pub const TLB_ADDR_WRITE: u32 = 8;
    pub const TLB_ADDR_CODE: u32 = 16;
    pub const TLB_ADDEND: u32 = 24;
    /// The non-global entry bitmaps (`CpuHeader::tlb_local`).
    pub const TLB_LOCAL: u32 = TLB + TLB_MODE_SIZE * super::MMU_MODES as u32;
    /// First byte after the header: where a target's own state may begin.
    pub const HEADER_END: u32 = TLB_LOCAL + (super::TLB_ENTRIES / 8 * super::MMU_MODES) as u32;
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
        assert_eq!(std::mem::align_of::<CpuHeader>() as u32 % offsets::TLB_ENTRY_SIZE, 0);
        assert_eq!(offsets::TLB % offsets::TLB_ENTRY_SIZE, 0);
        assert_eq!(offset_of!(CpuHeader, tlb) as u32, offsets::TLB);
        assert_eq!(size_of::<TlbEntry>() as u32, offsets::TLB_ENTRY_SIZE);
        assert_eq!(offset_of!(CpuHeader, tlb_local) as u32, offsets::TLB_LOCAL);
        assert_eq!(size_of::<CpuHeader>() as u32, offsets::HEADER_END);
    }

    #[test]
    fn marking_a_code_page_flags_every_write_entry_that_maps_it() {
        let mut h = CpuHeader::default();
        let host = 0x7f00_0000_0000u64;
        // Two virtual aliases of the host page, in two modes, and another page.
        let alias = |va: u64| TlbEntry { addr_read: va, addr_write: va, addr_code: va, addend: host.wrapping_sub(va) };
        h.tlb[0][1] = alias(0x1000);
        h.tlb[2][5] = alias(0xffff_ffc0_0000_5000);
        h.tlb[0][2] = TlbEntry { addend: host.wrapping_sub(0x2000) + 0x1000, ..alias(0x2000) };
        h.tlb_mark_code(host);
        assert_eq!(h.tlb[0][1].addr_write, 0x1000 | tlb_flags::CODE);
        assert_eq!(h.tlb[2][5].addr_write, 0xffff_ffc0_0000_5000 | tlb_flags::CODE);
        assert_eq!(h.tlb[0][1].addr_read, 0x1000, "reads stay fast");
        assert_eq!(h.tlb[0][2].addr_write, 0x2000, "another page");
        assert_eq!(h.tlb[1][0], TlbEntry::EMPTY);
        // Several pages in one pass.
        let mut h = CpuHeader::default();
        for (i, va) in [0x1000u64, 0x2000, 0x3000].into_iter().enumerate() {
            h.tlb[1][i] = TlbEntry { addend: host + 0x1000 * i as u64 - va, ..alias(va) };
        }
        h.tlb_mark_code_pages(&[host, host + 0x2000]);
        let w: Vec<u64> = (0..3).map(|i| h.tlb[1][i].addr_write & tlb_flags::CODE).collect();
        assert_eq!(w, [tlb_flags::CODE, 0, tlb_flags::CODE]);
    }

    #[test]
    fn flush_page_only_hits_that_page() {
        let mut h = CpuHeader::default();
        let e = TlbEntry { addr_read: 0x8000_0000, addr_write: 0x8000_0000, addr_code: 0x8000_0000, addend: 1 };
        h.tlb[0][0] = e;
        h.tlb[1][1] = TlbEntry { addr_read: 0x8000_1000, ..e };
        h.tlb_flush_page(0x8000_0123);
        assert_eq!(h.tlb[0][0], TlbEntry::EMPTY);
        assert_eq!(h.tlb[1][1].addend, 1);
    }

    #[test]
    fn a_nonglobal_flush_keeps_global_entries_only() {
        let mut h = CpuHeader::default();
        let e = TlbEntry { addr_read: 0x8000_0000, addr_write: 0x8000_0000, addr_code: 0x8000_0000, addend: 1 };
        for (mmu, idx, global) in [(0, 3, true), (0, 70, false), (1, 200, false), (3, 255, true)] {
            h.tlb[mmu][idx] = e;
            h.tlb_set_global(mmu, idx, global);
        }
        // An entry refilled with a global translation loses its mark.
        h.tlb[2][9] = e;
        h.tlb_set_global(2, 9, false);
        h.tlb_set_global(2, 9, true);
        h.tlb_flush_nonglobal();
        assert_eq!((h.tlb[0][3], h.tlb[3][255], h.tlb[2][9]), (e, e, e));
        assert_eq!((h.tlb[0][70], h.tlb[1][200]), (TlbEntry::EMPTY, TlbEntry::EMPTY));
        assert_eq!(h.tlb_local, [[0; TLB_ENTRIES / 64]; MMU_MODES]);
    }
}
