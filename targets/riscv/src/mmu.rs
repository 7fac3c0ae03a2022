//! Address translation: the Sv39/Sv48/Sv57 page walk and PMP checks.
//!
//! [`translate`] is what `GuestCpu::translate_addr` runs on a softmmu TLB
//! miss (never per access on the fast path). Inputs are the virtual address,
//! the access type and the *effective* mode for it ([`Mode`]: privilege and
//! SUM; MPRV has already been folded in by the caller through the MMU index).
//!
//! Invariants and pitfalls:
//! - M-mode (effective) is always Bare; only the PMP applies.
//! - A/D bits are set in hardware with `PhysMemory::cmpxchg_u64` (QEMU's
//!   behaviour). If the PTE changed under us the walk restarts, a bounded
//!   number of times (another hart rewriting it forever cannot hang us).
//! - Page-table reads and A/D writes are implicit S-mode accesses for the PMP;
//!   a PMP denial there is an access fault of the original access type.
//! - PMP is checked on the first byte of the access only (the softmmu does
//!   not pass the size). Pages that a PMP region does not cover entirely are
//!   made uncacheable through [`pmp_page_cacheable`], so every access to them
//!   comes back here.
//! - Faults: page faults 12/13/15 and access faults 1/5/7 (by access type),
//!   tval = the virtual address.

use kite_core::{Fault, PhysMemory};
use kite_ir::Access;

use crate::cpu::{cause, PRV_M, PRV_S, PRV_U};
use crate::csr::Csrs;

/// satp fields.
pub mod satp {
    pub const MODE_SHIFT: u32 = 60;
    pub const MODE_BARE: u64 = 0;
    pub const MODE_SV39: u64 = 8;
    pub const MODE_SV48: u64 = 9;
    pub const MODE_SV57: u64 = 10;
    pub const ASID_SHIFT: u32 = 44;
    /// 16 ASID bits are implemented (like QEMU on RV64).
    pub const ASID_MASK: u64 = 0xffff << ASID_SHIFT;
    pub const PPN_MASK: u64 = (1 << 44) - 1;
}

/// PTE bits.
pub mod pte {
    pub const V: u64 = 1 << 0;
    pub const R: u64 = 1 << 1;
    pub const W: u64 = 1 << 2;
    pub const X: u64 = 1 << 3;
    pub const U: u64 = 1 << 4;
    pub const G: u64 = 1 << 5;
    pub const A: u64 = 1 << 6;
    pub const D: u64 = 1 << 7;
    pub const PPN_SHIFT: u32 = 10;
    pub const PPN_MASK: u64 = (1 << 44) - 1;
    /// Bits 63:54: N (Svnapot), PBMT (Svpbmt) and reserved bits. None of
    /// those extensions is implemented, so any of them set is a page fault.
    pub const RESERVED: u64 = 0x3ff << 54;
}

/// The effective translation mode of an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    pub privilege: u64,
    /// mstatus.SUM (S-mode data may touch U pages).
    pub sum: bool,
}

/// How many times a walk restarts after losing an A/D update race.
const MAX_RESTARTS: u32 = 16;

fn page_fault(access: Access, vaddr: u64) -> Fault {
    let c = match access {
        Access::Read => cause::LOAD_PAGE,
        Access::Write => cause::STORE_PAGE,
        Access::Exec => cause::INSN_PAGE,
    };
    Fault { cause: c, tval: vaddr }
}

pub fn access_fault(access: Access, vaddr: u64) -> Fault {
    let c = match access {
        Access::Read => cause::LOAD_ACCESS,
        Access::Write => cause::STORE_ACCESS,
        Access::Exec => cause::INSN_ACCESS,
    };
    Fault { cause: c, tval: vaddr }
}

/// Translate `vaddr` for `access` in `mode`, then PMP-check the physical
/// address. `mxr` is mstatus.MXR.
pub fn translate(
    csr: &Csrs,
    vaddr: u64,
    access: Access,
    mode: Mode,
    mxr: bool,
    mem: &dyn PhysMemory,
) -> Result<u64, Fault> {
    translate_sized(csr, vaddr, access, mode, mxr, mem).map(|t| t.paddr)
}

/// A successful translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    pub paddr: u64,
    /// The size of the page that maps the address (4 KiB, or a superpage's size; 0
    /// without translation).
    pub size: u64,
    /// The mapping is the same in every address space: a G bit on the leaf PTE or on a
    /// non-leaf PTE above it (privileged spec 4.3.1), or no translation at all.
    pub global: bool,
}

/// [`translate`], also returning the page size and whether the mapping is global.
pub fn translate_sized(
    csr: &Csrs,
    vaddr: u64,
    access: Access,
    mode: Mode,
    mxr: bool,
    mem: &dyn PhysMemory,
) -> Result<Translation, Fault> {
    let levels = match csr.satp >> satp::MODE_SHIFT {
        _ if mode.privilege == PRV_M => 0,
        satp::MODE_SV39 => 3,
        satp::MODE_SV48 => 4,
        satp::MODE_SV57 => 5,
        _ => 0,
    };
    let t = if levels == 0 {
        Translation { paddr: vaddr, size: 0, global: true }
    } else {
        walk(csr, vaddr, access, mode, mxr, levels, mem)?
    };
    if !pmp_check(csr, t.paddr, access, mode.privilege) {
        return Err(access_fault(access, vaddr));
    }
    Ok(t)
}

/// The page walk of the privileged spec (section 4.3.2), `levels` = 3/4/5.
fn walk(
    csr: &Csrs,
    vaddr: u64,
    access: Access,
    mode: Mode,
    mxr: bool,
    levels: u32,
    mem: &dyn PhysMemory,
) -> Result<Translation, Fault> {
    let va_bits = 12 + 9 * levels;
    // Canonical: bits 63..va_bits-1 all equal.
    let top = (vaddr as i64) >> (va_bits - 1);
    if top != 0 && top != -1 {
        return Err(page_fault(access, vaddr));
    }
    'restart: for _ in 0..MAX_RESTARTS {
        let mut table = (csr.satp & satp::PPN_MASK) << 12;
        let mut global = false;
        for level in (0..levels).rev() {
            let vpn = (vaddr >> (12 + 9 * level)) & 0x1ff;
            let pte_addr = table.wrapping_add(vpn * 8);
            if !pmp_check(csr, pte_addr, Access::Read, PRV_S) {
                return Err(access_fault(access, vaddr));
            }
            let Some(pte) = mem.read_u64(pte_addr) else {
                return Err(access_fault(access, vaddr));
            };
            if pte & pte::V == 0 || (pte & pte::R == 0 && pte & pte::W != 0) || pte & pte::RESERVED != 0 {
                return Err(page_fault(access, vaddr));
            }
            let ppn = (pte >> pte::PPN_SHIFT) & pte::PPN_MASK;
            global |= pte & pte::G != 0;
            if pte & (pte::R | pte::X) == 0 {
                // Non-leaf: D, A and U are reserved.
                if pte & (pte::D | pte::A | pte::U) != 0 || level == 0 {
                    return Err(page_fault(access, vaddr));
                }
                table = ppn << 12;
                continue;
            }
            if !leaf_permits(pte, access, mode, mxr) {
                return Err(page_fault(access, vaddr));
            }
            // Superpage: the low PPN fields must be zero.
            let low_mask = (1u64 << (9 * level)) - 1;
            if ppn & low_mask != 0 {
                return Err(page_fault(access, vaddr));
            }
            let mut want = pte | pte::A;
            if access == Access::Write {
                want |= pte::D;
            }
            if want != pte {
                if !pmp_check(csr, pte_addr, Access::Write, PRV_S) {
                    return Err(access_fault(access, vaddr));
                }
                match mem.cmpxchg_u64(pte_addr, pte, want) {
                    Some(old) if old == pte => {}
                    Some(_) => continue 'restart,
                    // Not RAM (ROM or a device): A/D cannot be set (QEMU: page fault).
                    None => return Err(page_fault(access, vaddr)),
                }
            }
            let vpn_low = (vaddr >> 12) & low_mask;
            let paddr = ((ppn | vpn_low) << 12) | (vaddr & 0xfff);
            return Ok(Translation { paddr, size: 1u64 << (12 + 9 * level), global });
        }
        return Err(page_fault(access, vaddr));
    }
    kite_core::guest_error!("page walk for {vaddr:#x} lost the A/D update race {MAX_RESTARTS} times");
    Err(page_fault(access, vaddr))
}

/// Leaf permission check: U bit against the mode (SUM), R/W/X (MXR).
fn leaf_permits(pte: u64, access: Access, mode: Mode, mxr: bool) -> bool {
    let user_page = pte & pte::U != 0;
    match mode.privilege {
        PRV_U if !user_page => return false,
        PRV_S if user_page && (access == Access::Exec || !mode.sum) => return false,
        _ => {}
    }
    match access {
        Access::Read => pte & pte::R != 0 || (mxr && pte & pte::X != 0),
        Access::Write => pte & pte::W != 0,
        Access::Exec => pte & pte::X != 0,
    }
}

// ---- PMP ----

const PMP_R: u8 = 1;
const PMP_W: u8 = 2;
const PMP_X: u8 = 4;
const PMP_A_SHIFT: u32 = 3;
const PMP_L: u8 = 0x80;
const A_OFF: u8 = 0;
const A_TOR: u8 = 1;
const A_NA4: u8 = 2;

/// The config byte of entry `i` (0..16).
pub fn pmp_cfg(csr: &Csrs, i: usize) -> u8 {
    (csr.pmpcfg[(i / 8) & 1] >> ((i % 8) * 8)) as u8
}

/// The byte range `[lo, hi)` entry `i` matches, or `None` if it is off.
/// `hi` may be `2^64` only in theory (pmpaddr holds 54 bits), so u64 is enough.
fn pmp_range(csr: &Csrs, i: usize) -> Option<(u64, u64)> {
    let cfg = pmp_cfg(csr, i);
    let addr = csr.pmpaddr[i & 15];
    match (cfg >> PMP_A_SHIFT) & 3 {
        A_OFF => None,
        A_TOR => {
            let lo = if i == 0 { 0 } else { csr.pmpaddr[(i - 1) & 15] << 2 };
            let hi = addr << 2;
            (lo < hi).then_some((lo, hi))
        }
        A_NA4 => Some((addr << 2, (addr << 2) + 4)),
        _ => {
            // NAPOT: trailing ones t encode a 2^(t+3)-byte region.
            let m = addr ^ addr.wrapping_add(1); // t+1 low ones
            let base = (addr & !m) << 2;
            Some((base, base.wrapping_add((m.wrapping_add(1)) << 2)))
        }
    }
}

/// Whether any PMP entry is active (A != OFF).
fn pmp_any_active(csr: &Csrs) -> bool {
    csr.pmpcfg.iter().any(|c| c & 0x1818_1818_1818_1818 != 0)
}

/// PMP check of one physical address for `access` at `privilege`.
/// Lowest-numbered matching entry wins; M-mode is only held to locked
/// entries; with no match M succeeds and S/U fail once any entry is active
/// (QEMU's rule: a hart with no PMP programmed allows everything).
pub fn pmp_check(csr: &Csrs, paddr: u64, access: Access, privilege: u64) -> bool {
    if !pmp_any_active(csr) {
        return true;
    }
    for i in 0..16 {
        let Some((lo, hi)) = pmp_range(csr, i) else { continue };
        if paddr < lo || paddr >= hi {
            continue;
        }
        let cfg = pmp_cfg(csr, i);
        if privilege == PRV_M && cfg & PMP_L == 0 {
            return true;
        }
        let need = match access {
            Access::Read => PMP_R,
            Access::Write => PMP_W,
            Access::Exec => PMP_X,
        };
        return cfg & need != 0;
    }
    privilege == PRV_M
}

/// Whether the 4 KiB page holding `paddr` has one PMP outcome throughout:
/// the highest-priority entry overlapping it covers it entirely (or none
/// overlaps). Otherwise the softmmu must not cache the page.
pub fn pmp_page_cacheable(csr: &Csrs, paddr: u64) -> bool {
    if !pmp_any_active(csr) {
        return true;
    }
    let page = paddr & !0xfff;
    let end = page + 0x1000;
    for i in 0..16 {
        let Some((lo, hi)) = pmp_range(csr, i) else { continue };
        if hi <= page || lo >= end {
            continue;
        }
        return lo <= page && end <= hi;
    }
    true
}

/// The effective mode selected by a softmmu MMU index (see
/// `RiscvCpu::mmu_index`): 0 U, 1 S, 2 S with SUM, 3 M.
pub fn mode_of_index(idx: usize) -> Mode {
    match idx {
        0 => Mode { privilege: PRV_U, sum: false },
        1 => Mode { privilege: PRV_S, sum: false },
        2 => Mode { privilege: PRV_S, sum: true },
        _ => Mode { privilege: PRV_M, sum: false },
    }
}

#[cfg(test)]
#[path = "mmu_tests.rs"]
mod tests;
