//! The RV64 hart state ([`RiscvCpu`]), trap entry and the `GuestCpu` glue.
//!
//! Layout: `#[repr(C)]`, the shared [`CpuHeader`] first, then only 8-byte
//! fields up to `irq` (no padding, so the reference interpreter can treat the
//! state as bytes). Generated code reaches fields through [`offsets`].
//!
//! `header.flags` holds the TB flags: bits 0-1 the privilege level (0 U,
//! 1 S, 3 M), bits 2-3 the softmmu TLB index data accesses use (U=0, S=1,
//! S with SUM=2, M=3; under MPRV in M-mode the MPP mode's index), bits 4-5
//! mstatus.FS, bit 6 whether a PMP entry is locked ([`tbflags`]). Whatever
//! changes privilege, MPRV, MPP, SUM or a PMP lock (traps, mret/sret, mstatus
//! and pmpcfg writes) calls [`RiscvCpu::update_flags`].
//!
//! Interrupt-pending bits driven by devices (MSIP, MTIP, MEIP, SEIP) live in
//! the shared [`HartIrq`] so other threads can set them; the software-writable
//! bits of `mip` live in `csr.mip`. The architectural `mip` is their OR.

use std::fmt::{self, Write as _};
use std::mem::offset_of;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kite_core::guest::{FaultKind, TbLimits};
use kite_core::{Fault, GuestCpu, PhysMemory};
use kite_ir::state::{flush, CpuHeader, PAGE_SIZE};
use kite_ir::{Access, Builder};

use crate::csr::{self, mstatus as ms, Csrs};
use crate::{disas, mmu, translate};

/// Privilege levels (the encoding of mstatus.MPP and of the TB flags).
pub const PRV_U: u64 = 0;
pub const PRV_S: u64 = 1;
pub const PRV_M: u64 = 3;

/// `res_addr` value meaning "no reservation" (never a naturally aligned address).
pub const NO_RESERVATION: u64 = u64::MAX;

/// TB-flag bits of `header.flags`.
pub mod tbflags {
    /// Current privilege level.
    pub const PRIV_MASK: u32 = 3;
    /// The data-access MMU index (see `RiscvCpu::mmu_index`).
    pub const MMU_SHIFT: u32 = 2;
    pub const MMU_MASK: u32 = 3 << MMU_SHIFT;
    /// mstatus.FS (0 Off .. 3 Dirty): F/D instructions are illegal when Off,
    /// and FP register writes in a non-Dirty block set Dirty.
    pub const FS_SHIFT: u32 = 4;
    pub const FS_MASK: u32 = 3 << FS_SHIFT;
    /// Some PMP entry is locked, so it binds M-mode too: M-mode data accesses are then
    /// not [`kite_core::GuestCpu::identity_mapped`].
    pub const PMP_LOCKED: u32 = 1 << 6;
}

/// Exception causes (mcause values without the interrupt bit).
pub mod cause {
    pub const INSN_MISALIGNED: u64 = 0;
    pub const INSN_ACCESS: u64 = 1;
    pub const ILLEGAL_INSN: u64 = 2;
    pub const BREAKPOINT: u64 = 3;
    pub const LOAD_MISALIGNED: u64 = 4;
    pub const LOAD_ACCESS: u64 = 5;
    pub const STORE_MISALIGNED: u64 = 6;
    pub const STORE_ACCESS: u64 = 7;
    pub const ECALL_U: u64 = 8;
    pub const ECALL_S: u64 = 9;
    pub const ECALL_M: u64 = 11;
    pub const INSN_PAGE: u64 = 12;
    pub const LOAD_PAGE: u64 = 13;
    pub const STORE_PAGE: u64 = 15;
    /// Set in mcause/scause for interrupts.
    pub const INTERRUPT: u64 = 1 << 63;
}

/// Interrupt numbers / mip bits.
pub mod irq {
    pub const SSI: u32 = 1;
    pub const MSI: u32 = 3;
    pub const STI: u32 = 5;
    pub const MTI: u32 = 7;
    pub const SEI: u32 = 9;
    pub const MEI: u32 = 11;
    /// Delivery priority, highest first.
    pub const PRIORITY: [u32; 6] = [MEI, MSI, MTI, SEI, SSI, STI];
}

/// Externally driven interrupt-pending bits of one hart (CLINT, PLIC/APLIC
/// set them from any thread). Setting a bit does not kick the vCPU: devices
/// reach it through a [`HartIrqLine`], which also kicks.
#[derive(Debug, Default)]
pub struct HartIrq {
    pending: AtomicU64,
}

impl HartIrq {
    /// Raise or lower mip bit `irq` (one of [`irq`]).
    pub fn set(&self, irq: u32, level: bool) {
        let bit = 1u64 << (irq & 63);
        if level {
            self.pending.fetch_or(bit, Ordering::SeqCst);
        } else {
            self.pending.fetch_and(!bit, Ordering::SeqCst);
        }
    }
    pub fn bits(&self) -> u64 {
        self.pending.load(Ordering::SeqCst)
    }
}

/// Wakes a vCPU: sets its `header.exit_request` (so running translated code
/// leaves at the next block entry) and calls `VmControl::notify()` (so a hart
/// sleeping in `wfi` re-checks). `VmControl::kick_all` does both.
pub type Kick = Arc<dyn Fn() + Send + Sync>;

/// The machine's adaptor from a device interrupt output to one `mip` bit of
/// one hart: CLINT -> MSIP/MTIP, PLIC context -> MEIP/SEIP, the Sstc compare
/// timer -> STIP. Raising the line also kicks the hart so it is seen
/// promptly; lowering needs no kick (pending state is re-read at every check).
pub struct HartIrqLine {
    pub irq: Arc<HartIrq>,
    /// One of [`irq`] (MSI, MTI, MEI, SEI, STI).
    pub bit: u32,
    pub kick: Kick,
}

impl HartIrqLine {
    pub fn new(irq: Arc<HartIrq>, bit: u32, kick: Kick) -> HartIrqLine {
        HartIrqLine { irq, bit, kick }
    }
}

impl fmt::Debug for HartIrqLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HartIrqLine").field("bit", &self.bit).field("pending", &self.irq.bits()).finish()
    }
}

impl kite_core::IrqLine for HartIrqLine {
    fn set_level(&self, level: bool) {
        self.irq.set(self.bit, level);
        if level {
            (self.kick)();
        }
    }
}

/// Called with the new effective `stimecmp` on every change (u64::MAX while
/// menvcfg.STCE is clear): the machine forwards it to the compare timer
/// whose output line drives STIP (`CompareTimer::set_compare`).
pub type StimecmpHook = Arc<dyn Fn(u64) + Send + Sync>;

/// Source of the `time` CSR (the machine's CLINT mtime).
pub trait TimeSource: Send + Sync + fmt::Debug {
    fn now(&self) -> u64;
}

/// An RV64 hart.
///
/// SMP: the LR/SC reservation (`res_addr`/`res_val`) is per hart, which is
/// exact for the single-threaded round-robin scheduler (another hart's store
/// runs only between our blocks, and SC compares the value). A multi-threaded
/// translator will need atomic IR ops (cmpxchg for SC/AMOs, fetch-ops) and a
/// host-atomic A/D update (already done with `cmpxchg_u64` in the walker).
#[repr(C)]
pub struct RiscvCpu {
    pub header: CpuHeader,
    /// Integer registers; `x[0]` is always 0 (translated code never writes it).
    pub x: [u64; 32],
    /// FP registers (reserved for the F/D work; not yet used).
    pub f: [u64; 32],
    /// Current privilege level ([`PRV_U`], [`PRV_S`], [`PRV_M`]).
    pub privilege: u64,
    /// LR/SC reservation: address ([`NO_RESERVATION`] if none) and the value loaded.
    pub res_addr: u64,
    pub res_val: u64,
    pub hartid: u64,
    pub csr: Csrs,
    /// Externally driven interrupt-pending bits.
    pub irq: Arc<HartIrq>,
    /// Source of the `time` CSR; without one, `time` reads as the retired
    /// instruction count.
    pub time: Option<Arc<dyn TimeSource>>,
    /// Sstc: see [`StimecmpHook`]. Set it with [`RiscvCpu::set_stimecmp_hook`].
    pub stimecmp_hook: Option<StimecmpHook>,
    /// The smallest aligned region of virtual addresses that covers every superpage
    /// translation the softmmu may have cached since the last full flush (QEMU's
    /// large-page tracking): the TLB holds 4 KiB pieces of superpages, so an
    /// `sfence.vma` by address inside this region must flush everything.
    pub large: Option<(u64, u64)>,
    /// Pages `sfence.vma` asked to flush (see `flush::TLB_PAGE`); more than fit become a
    /// full flush.
    pub flush_pages: [u64; 8],
    pub flush_npages: usize,
    /// Whether the last successful `translate_addr` found a global mapping.
    pub last_global: bool,
}

impl fmt::Debug for RiscvCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RiscvCpu")
            .field("pc", &self.header.pc)
            .field("privilege", &self.privilege)
            .field("x", &self.x)
            .field("hartid", &self.hartid)
            .field("csr", &self.csr)
            .field("irq", &self.irq)
            .finish_non_exhaustive()
    }
}

/// Byte offsets of `RiscvCpu` fields, for generated code.
pub mod offsets {
    use super::*;
    pub const X: u32 = offset_of!(RiscvCpu, x) as u32;
    pub const F: u32 = offset_of!(RiscvCpu, f) as u32;
    pub const PRIVILEGE: u32 = offset_of!(RiscvCpu, privilege) as u32;
    pub const RES_ADDR: u32 = offset_of!(RiscvCpu, res_addr) as u32;
    pub const RES_VAL: u32 = offset_of!(RiscvCpu, res_val) as u32;

    /// Offset of integer register `r`.
    pub const fn x(r: u8) -> u32 {
        X + 8 * (r as u32 & 31)
    }
}

impl RiscvCpu {
    /// Record that a superpage translation of `vaddr` (`size` bytes) may be cached.
    pub fn note_large_page(&mut self, vaddr: u64, size: u64) {
        let m = !(size - 1);
        self.large = Some(match self.large {
            None => (vaddr & m, m),
            Some((base, mask)) => {
                let mut mask = mask & m;
                while vaddr & mask != base & mask {
                    mask <<= 1;
                }
                (base & mask, mask)
            }
        });
    }

    /// `sfence.vma` for the page of `vaddr` (`None`: every address).
    pub fn request_tlb_flush(&mut self, vaddr: Option<u64>) {
        let in_large = |a: u64| self.large.is_some_and(|(base, mask)| a & mask == base);
        match vaddr {
            Some(a) if !in_large(a) && self.flush_npages < self.flush_pages.len() => {
                self.flush_pages[self.flush_npages] = a;
                self.flush_npages += 1;
                self.header.flush_request |= flush::TLB_PAGE;
            }
            _ => {
                self.large = None;
                self.flush_npages = 0;
                self.header.flush_request |= flush::TLB_ALL;
            }
        }
    }

    /// A hart in its reset state: M-mode, pc = 0x1000 (the machine may set
    /// `header.pc` to its reset vector), interrupts disabled, no reservation.
    pub fn new(hartid: u64) -> Box<RiscvCpu> {
        let mut c = Box::new(RiscvCpu {
            header: CpuHeader::default(),
            x: [0; 32],
            f: [0; 32],
            privilege: PRV_M,
            res_addr: NO_RESERVATION,
            res_val: 0,
            hartid,
            csr: Csrs::reset(),
            irq: Arc::new(HartIrq::default()),
            time: None,
            stimecmp_hook: None,
            large: None,
            last_global: false,
            flush_pages: [0; 8],
            flush_npages: 0,
        });
        c.header.pc = 0x1000;
        c.update_flags();
        c
    }

    /// Set the entry point (the machine's boot ROM / kernel entry).
    pub fn set_pc(&mut self, pc: u64) {
        self.header.pc = pc;
    }

    /// Set integer register `r` (x0 stays 0), e.g. a0 = hartid and a1 = the
    /// device-tree address before entering firmware or a kernel.
    pub fn set_x(&mut self, r: usize, v: u64) {
        if let Some(slot) = self.x.get_mut(r).filter(|_| r != 0) {
            *slot = v;
        }
    }

    /// Recompute the privilege, MMU-index, FS and PMP-lock bits of `header.flags`
    /// (other bits are kept).
    pub fn update_flags(&mut self) {
        let st = self.csr.mstatus;
        let data_priv = if self.privilege == PRV_M && st & ms::MPRV != 0 {
            (st & ms::MPP) >> ms::MPP_SHIFT
        } else {
            self.privilege
        };
        let idx = match data_priv {
            PRV_U => 0,
            PRV_S if st & ms::SUM != 0 => 2,
            PRV_S => 1,
            _ => 3,
        };
        let keep =
            self.header.flags & !(tbflags::PRIV_MASK | tbflags::MMU_MASK | tbflags::FS_MASK | tbflags::PMP_LOCKED);
        let fs = (((st & ms::FS) >> 13) as u32) << tbflags::FS_SHIFT;
        // (Any entry with L set, whatever its address mode: conservative and cheap.)
        let locked = (self.csr.pmpcfg[0] | self.csr.pmpcfg[1]) & 0x8080_8080_8080_8080 != 0;
        self.header.flags = keep
            | ((self.privilege as u32) & tbflags::PRIV_MASK)
            | (idx << tbflags::MMU_SHIFT)
            | fs
            | if locked { tbflags::PMP_LOCKED } else { 0 };
    }

    /// Install the Sstc hook and tell it the current effective compare value.
    pub fn set_stimecmp_hook(&mut self, hook: StimecmpHook) {
        self.stimecmp_hook = Some(hook);
        self.stimecmp_changed();
    }

    /// Whether Sstc is enabled for S-mode (menvcfg.STCE).
    pub fn stce(&self) -> bool {
        self.csr.menvcfg & csr::MENVCFG_STCE != 0
    }

    /// Report the effective stimecmp to the hook (u64::MAX while STCE is off,
    /// so the compare line stays low and STIP is the software bit).
    pub fn stimecmp_changed(&self) {
        if let Some(h) = &self.stimecmp_hook {
            h(if self.stce() { self.csr.stimecmp } else { u64::MAX });
        }
    }

    /// Record an exception for the accelerator (used by helpers).
    pub fn raise(&mut self, cause: u64, tval: u64) {
        self.header.status = kite_ir::state::status::EXCEPTION;
        self.header.cause = cause;
        self.header.tval = tval;
    }

    /// The architectural mip: software bits OR device-driven bits. SEIP is
    /// the OR of the software bit and the PLIC line; STIP is the Sstc compare
    /// line while menvcfg.STCE is set, else the software bit.
    pub fn mip(&self) -> u64 {
        let (sw, hw) = if self.stce() {
            (self.csr.mip & !(1 << irq::STI), csr::MIP_MASK)
        } else {
            (self.csr.mip, csr::MIP_MASK & !(1 << irq::STI))
        };
        sw | (self.irq.bits() & hw)
    }

    /// Interrupts pending, enabled in mie, and deliverable at the current
    /// privilege, each mapped to its target: (to M, to S).
    fn deliverable(&self) -> (u64, u64) {
        let pending = self.mip() & self.csr.mie;
        if pending == 0 {
            return (0, 0);
        }
        let mstatus = self.csr.mstatus;
        let m_on = self.privilege < PRV_M || mstatus & ms::MIE != 0;
        let s_on = self.privilege < PRV_S || (self.privilege == PRV_S && mstatus & ms::SIE != 0);
        let to_m = if m_on { pending & !self.csr.mideleg } else { 0 };
        let to_s = if s_on { pending & self.csr.mideleg } else { 0 };
        (to_m, to_s)
    }

    /// After a state change that may enable a pending interrupt (CSR write,
    /// mret/sret), ask the vCPU loop to look at interrupts promptly.
    pub fn request_exit_if_irq(&self) {
        let (m, s) = self.deliverable();
        if m | s != 0 {
            self.header.exit_request.store(1, Ordering::SeqCst);
        }
    }

    /// Enter a trap: `cause` (with [`cause::INTERRUPT`] for interrupts) and
    /// `tval`, from the instruction at `header.pc`. Honours medeleg/mideleg.
    pub fn trap(&mut self, cause_val: u64, tval: u64) {
        let interrupt = cause_val & cause::INTERRUPT != 0;
        let code = cause_val & !cause::INTERRUPT;
        let deleg = if interrupt { self.csr.mideleg } else { self.csr.medeleg };
        let epc = self.header.pc;
        self.res_addr = NO_RESERVATION;
        let to_s = self.privilege <= PRV_S && code < 64 && (deleg >> code) & 1 != 0;
        let st = self.csr.mstatus;
        let (base_vec, new_status, new_priv) = if to_s {
            self.csr.sepc = epc;
            self.csr.scause = cause_val;
            self.csr.stval = tval;
            let spie = if st & ms::SIE != 0 { ms::SPIE } else { 0 };
            let spp = if self.privilege == PRV_S { ms::SPP } else { 0 };
            (self.csr.stvec, (st & !(ms::SIE | ms::SPIE | ms::SPP)) | spie | spp, PRV_S)
        } else {
            self.csr.mepc = epc;
            self.csr.mcause = cause_val;
            self.csr.mtval = tval;
            let mpie = if st & ms::MIE != 0 { ms::MPIE } else { 0 };
            let mpp = (self.privilege & 3) << ms::MPP_SHIFT;
            (self.csr.mtvec, (st & !(ms::MIE | ms::MPIE | ms::MPP)) | mpie | mpp, PRV_M)
        };
        self.csr.mstatus = new_status;
        self.privilege = new_priv;
        let base = base_vec & !3;
        self.header.pc = if interrupt && base_vec & 3 == 1 { base.wrapping_add(code.wrapping_mul(4)) } else { base };
        self.update_flags();
    }

    /// `mret`: returns the new pc, or `None` if not permitted (illegal instruction).
    pub fn mret(&mut self) -> Option<u64> {
        if self.privilege != PRV_M {
            return None;
        }
        let st = self.csr.mstatus;
        let mpp = (st & ms::MPP) >> ms::MPP_SHIFT;
        let mut new = st & !(ms::MIE | ms::MPP);
        new |= ms::MPIE;
        if st & ms::MPIE != 0 {
            new |= ms::MIE;
        }
        if mpp != PRV_M {
            new &= !ms::MPRV;
        }
        self.set_mstatus_raw(new);
        self.privilege = mpp;
        self.update_flags();
        self.request_exit_if_irq();
        Some(self.csr.mepc & !1)
    }

    /// `sret`: returns the new pc, or `None` if not permitted.
    pub fn sret(&mut self) -> Option<u64> {
        let st = self.csr.mstatus;
        if self.privilege < PRV_S || (self.privilege == PRV_S && st & ms::TSR != 0) {
            return None;
        }
        let spp = if st & ms::SPP != 0 { PRV_S } else { PRV_U };
        let mut new = (st & !(ms::SIE | ms::SPP)) | ms::SPIE;
        if st & ms::SPIE != 0 {
            new |= ms::SIE;
        }
        new &= !ms::MPRV; // the new mode is never M
        self.set_mstatus_raw(new);
        self.privilege = spp;
        self.update_flags();
        self.request_exit_if_irq();
        Some(self.csr.sepc & !1)
    }

    /// Store mstatus and keep the TB flags current. MPRV, MPP and SUM only
    /// select another TLB (flags bits 2-3); MXR changes what a mapping
    /// permits in every TLB, so it flushes them.
    pub(crate) fn set_mstatus_raw(&mut self, new: u64) {
        let old = self.csr.mstatus;
        self.csr.mstatus = new;
        if (old ^ new) & ms::MXR != 0 {
            self.header.flush_request |= flush::TLB_ALL;
        }
        self.update_flags();
    }

    /// Retired-instruction count as seen by an instruction with `remaining`
    /// instructions of its block (itself included) not yet retired.
    pub fn retired(&self, remaining: u64) -> u64 {
        self.header.icount.wrapping_sub(remaining)
    }

    /// `-d cpu` register dump.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        let p = match self.privilege {
            PRV_U => 'U',
            PRV_S => 'S',
            _ => 'M',
        };
        let _ = writeln!(s, "pc       {:016x}  priv {p}", self.header.pc);
        for r in 1..32usize {
            let _ = write!(s, "{:<4} {:016x}", disas::REG_NAMES[r], self.x[r]);
            s.push(if r % 4 == 3 { '\n' } else { ' ' });
        }
        let _ = writeln!(
            s,
            "mstatus  {:016x}  mcause {:016x}  mepc {:016x}  mtval {:016x}",
            csr::read_mstatus(self),
            self.csr.mcause,
            self.csr.mepc,
            self.csr.mtval
        );
        let _ = writeln!(
            s,
            "mie      {:016x}  mip    {:016x}  mtvec {:016x}  scause {:016x}  sepc {:016x}",
            self.csr.mie,
            self.mip(),
            self.csr.mtvec,
            self.csr.scause,
            self.csr.sepc
        );
        s
    }
}

// SAFETY: RiscvCpu is #[repr(C)] and its first field is the CpuHeader.
unsafe impl GuestCpu for RiscvCpu {
    fn header(&self) -> &CpuHeader {
        &self.header
    }
    fn header_mut(&mut self) -> &mut CpuHeader {
        &mut self.header
    }

    fn mmu_index(&self, tb_flags: u32) -> usize {
        // U=0, S=1, S+SUM=2, M=3, computed by update_flags (MPRV included), so
        // toggling SUM switches TLBs instead of flushing.
        ((tb_flags & tbflags::MMU_MASK) >> tbflags::MMU_SHIFT) as usize
    }

    fn identity_mapped(&self, tb_flags: u32) -> bool {
        // M-mode data accesses (MPRV included in the index) are never translated, and
        // PMP binds them only through locked entries.
        self.mmu_index(tb_flags) == 3 && tb_flags & tbflags::PMP_LOCKED == 0
    }

    fn translate_addr(
        &mut self,
        vaddr: u64,
        access: Access,
        mmu_index: usize,
        mem: &dyn PhysMemory,
    ) -> Result<u64, Fault> {
        // Instruction fetch always uses the current privilege (never MPRV);
        // SUM never applies to fetches.
        let mode = if access == Access::Exec {
            mmu::Mode { privilege: self.privilege, sum: false }
        } else {
            mmu::mode_of_index(mmu_index)
        };
        let mxr = self.csr.mstatus & ms::MXR != 0;
        let t = mmu::translate_sized(&self.csr, vaddr, access, mode, mxr, mem)?;
        if t.size > PAGE_SIZE {
            self.note_large_page(vaddr, t.size);
        }
        self.last_global = t.global;
        Ok(t.paddr)
    }

    fn tlb_global(&self) -> bool {
        self.last_global
    }

    fn translation_regime(&self) -> Option<u64> {
        // Mode, ASID and root table; a write that changes it flushes (and cuts the links
        // made under the old value), so links always belong to the current value.
        Some(self.csr.satp)
    }

    fn take_flush_page(&mut self) -> Option<u64> {
        let n = self.flush_npages.checked_sub(1)?;
        self.flush_npages = n;
        Some(self.flush_pages[n])
    }

    fn tlb_cacheable(&self, paddr: u64, _mmu_index: usize) -> bool {
        mmu::pmp_page_cacheable(&self.csr, paddr)
    }

    fn fault_for(&self, kind: FaultKind, access: Access, vaddr: u64) -> Fault {
        let c = match (kind, access) {
            (FaultKind::Misaligned, Access::Read) => cause::LOAD_MISALIGNED,
            (FaultKind::Misaligned, Access::Write) => cause::STORE_MISALIGNED,
            (FaultKind::Misaligned, Access::Exec) => cause::INSN_MISALIGNED,
            (FaultKind::AccessFault, Access::Read) => cause::LOAD_ACCESS,
            (FaultKind::AccessFault, Access::Write) => cause::STORE_ACCESS,
            (FaultKind::AccessFault, Access::Exec) => cause::INSN_ACCESS,
        };
        Fault { cause: c, tval: vaddr }
    }

    fn translate_block(
        &self,
        pc: u64,
        tb_flags: u32,
        limits: TbLimits,
        fetch: &mut dyn FnMut(u64) -> Result<u16, kite_core::Fault>,
        b: &mut Builder,
    ) {
        translate::translate_block(pc, tb_flags, limits, fetch, b);
    }

    fn take_exception(&mut self) {
        let (c, t) = (self.header.cause, self.header.tval);
        if log::log_enabled!(target: "int", log::Level::Debug) {
            log::debug!(target: "int", "hart {}: exception {c:#x} at pc={:#x} priv={}", self.hartid, self.header.pc, self.privilege);
        }
        self.trap(c, t);
    }

    fn take_interrupt(&mut self) -> bool {
        let (to_m, to_s) = self.deliverable();
        // Interrupts for M are taken before those for S, each in priority order.
        for set in [to_m, to_s] {
            if let Some(&n) = irq::PRIORITY.iter().find(|&&n| set & (1 << n) != 0) {
                // For `-d int`, which prints the header's cause after the trap.
                self.header.cause = cause::INTERRUPT | n as u64;
                self.header.tval = 0;
                if log::log_enabled!(target: "int", log::Level::Debug) {
                    let (pc, prv, mstatus) = (self.header.pc, self.privilege, self.csr.mstatus);
                    log::debug!(target: "int", "hart {}: interrupt {n} at pc={pc:#x} priv={prv} mstatus={mstatus:#x}", self.hartid);
                }
                self.trap(cause::INTERRUPT | n as u64, 0);
                return true;
            }
        }
        false
    }

    fn has_wakeup(&self) -> bool {
        self.mip() & self.csr.mie != 0
    }

    fn preemptible(&self) -> bool {
        // M-mode with MIE clear is the SBI firmware (OpenSBI) or a bare-metal program.
        // S-mode with SIE clear is not included: Linux spends much of its boot that way
        // (console output), and its own spin loops yield through `pause`.
        self.privilege != PRV_M || self.csr.mstatus & ms::MIE != 0
    }

    fn dump_state(&self) -> String {
        self.dump()
    }

    fn disassemble(&self, pc: u64, bytes: &[u8]) -> (String, usize) {
        disas::disassemble_bytes(pc, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::CsrOp;
    use std::mem::size_of;

    #[test]
    fn layout_has_no_padding_before_irq() {
        assert_eq!(offsets::X, kite_ir::state::offsets::HEADER_END);
        assert_eq!(offsets::F, offsets::X + 256);
        assert_eq!(offsets::PRIVILEGE, offsets::F + 256);
        assert_eq!(offsets::x(10), offsets::X + 80);
        let csr_end = offset_of!(RiscvCpu, csr) + size_of::<Csrs>();
        assert_eq!(offset_of!(RiscvCpu, irq), csr_end);
        assert_eq!(size_of::<Csrs>() % 8, 0);
    }

    #[test]
    fn reset_state() {
        let c = RiscvCpu::new(3);
        assert_eq!(c.header.pc, 0x1000);
        assert_eq!(c.privilege, PRV_M);
        assert_eq!(c.header.flags, 3 | 3 << tbflags::MMU_SHIFT);
        assert_eq!(c.mmu_index(c.header.flags), 3);
        assert_eq!(c.hartid, 3);
        assert_eq!(c.res_addr, NO_RESERVATION);
        let mut c = c;
        c.set_x(0, 5);
        c.set_x(10, 7);
        c.set_x(40, 1);
        assert_eq!((c.x[0], c.x[10]), (0, 7));
    }

    #[test]
    fn only_m_mode_data_accesses_without_a_pmp_lock_are_identity_mapped() {
        let mut c = RiscvCpu::new(0);
        assert!(c.identity_mapped(c.header.flags), "M-mode after reset");
        // MPRV: M-mode loads use MPP's translation and protection.
        c.csr.mstatus |= ms::MPRV | (PRV_S << ms::MPP_SHIFT);
        c.update_flags();
        assert!(!c.identity_mapped(c.header.flags));
        c.csr.mstatus &= !(ms::MPRV | ms::MPP);
        c.privilege = PRV_S;
        c.update_flags();
        assert!(!c.identity_mapped(c.header.flags), "S-mode, even with satp bare (PMP binds it)");
        c.privilege = PRV_M;
        c.update_flags();
        assert!(c.identity_mapped(c.header.flags));
        // An unlocked entry binds only S/U; a locked one (here entry 9's) binds M too,
        // and the pmpcfg write itself updates the flags.
        crate::csr::access(&mut c, 0x3a0, CsrOp::Rw, 0x1f, false, true, 0).unwrap();
        assert!(c.identity_mapped(c.header.flags));
        crate::csr::access(&mut c, 0x3a2, CsrOp::Rw, 0x98 << 8, false, true, 0).unwrap();
        assert_ne!(c.header.flags & tbflags::PMP_LOCKED, 0);
        assert!(!c.identity_mapped(c.header.flags));
    }

    #[test]
    fn only_firmware_with_interrupts_masked_holds_its_time_slice() {
        let mut c = RiscvCpu::new(0);
        assert!(!c.preemptible(), "M-mode, MIE clear (OpenSBI)");
        c.csr.mstatus |= ms::MIE;
        assert!(c.preemptible());
        c.csr.mstatus &= !ms::MIE;
        for p in [PRV_S, PRV_U] {
            c.privilege = p;
            assert!(c.preemptible(), "privilege {p}, SIE clear");
        }
        c.csr.satp = 8 << 60 | 0x8_0123;
        assert_eq!(c.translation_regime(), Some(c.csr.satp));
    }

    #[test]
    fn interrupt_priority_and_enables() {
        let mut c = RiscvCpu::new(0);
        c.header.pc = 0x8000_0000;
        c.csr.mtvec = 0x8000_1001; // vectored
        c.csr.mie = 0xaaa;
        c.irq.set(irq::MTI, true);
        c.irq.set(irq::MSI, true);
        assert!(c.has_wakeup());
        // M-mode with MIE clear: not taken.
        assert!(!c.take_interrupt());
        c.csr.mstatus |= ms::MIE;
        assert!(c.take_interrupt());
        assert_eq!(c.csr.mcause, cause::INTERRUPT | 3);
        assert_eq!(c.header.pc, 0x8000_1000 + 12);
        assert_eq!(c.csr.mepc, 0x8000_0000);
        assert_eq!(c.csr.mstatus & ms::MIE, 0);
        assert_ne!(c.csr.mstatus & ms::MPIE, 0);
        // Lower privilege: M interrupts are taken regardless of MIE.
        c.privilege = PRV_U;
        c.irq.set(irq::MSI, false);
        assert!(c.take_interrupt());
        assert_eq!(c.csr.mcause, cause::INTERRUPT | 7);
        assert_eq!((c.csr.mstatus & ms::MPP) >> ms::MPP_SHIFT, PRV_U);
        assert_eq!(c.privilege, PRV_M);
    }

    #[test]
    fn delegated_exception_goes_to_s() {
        let mut c = RiscvCpu::new(0);
        c.csr.medeleg = 1 << cause::ECALL_U;
        c.csr.stvec = 0x9000;
        c.csr.mtvec = 0x8000;
        c.privilege = PRV_U;
        c.update_flags();
        c.header.pc = 0x1234;
        c.csr.mstatus |= ms::SIE;
        c.trap(cause::ECALL_U, 0);
        assert_eq!(c.privilege, PRV_S);
        assert_eq!(c.header.flags, 1 | 1 << tbflags::MMU_SHIFT);
        assert_eq!(c.header.pc, 0x9000);
        assert_eq!(c.csr.sepc, 0x1234);
        assert_eq!(c.csr.scause, 8);
        assert_eq!(c.csr.mstatus & (ms::SIE | ms::SPP), 0);
        assert_ne!(c.csr.mstatus & ms::SPIE, 0);
        // sret returns to U with SIE restored.
        assert_eq!(c.sret(), Some(0x1234));
        assert_eq!(c.privilege, PRV_U);
        assert_ne!(c.csr.mstatus & ms::SIE, 0);
        // ecall from M is never delegated.
        c.privilege = PRV_M;
        c.csr.medeleg = u64::MAX;
        c.trap(cause::ECALL_M, 0);
        assert_eq!(c.header.pc, 0x8000);
        assert_eq!(c.csr.mcause, 11);
    }

    #[test]
    fn fault_causes() {
        let c = RiscvCpu::new(0);
        assert_eq!(c.fault_for(FaultKind::Misaligned, Access::Read, 3).cause, 4);
        assert_eq!(c.fault_for(FaultKind::Misaligned, Access::Write, 3).cause, 6);
        assert_eq!(c.fault_for(FaultKind::AccessFault, Access::Read, 3), Fault { cause: 5, tval: 3 });
        assert_eq!(c.fault_for(FaultKind::AccessFault, Access::Write, 3).cause, 7);
        assert_eq!(c.fault_for(FaultKind::AccessFault, Access::Exec, 3).cause, 1);
    }

    #[test]
    fn dump_names_registers() {
        let mut c = RiscvCpu::new(0);
        c.x[10] = 0x55;
        let d = c.dump();
        assert!(d.contains("a0   0000000000000055"), "{d}");
        assert!(d.contains("priv M"));
    }
}
