//! What a guest architecture provides to a translating accelerator.
//!
//! A target implements [`GuestCpu`] on its `#[repr(C)]` CPU-state struct,
//! whose first field is a [`CpuHeader`]. The accelerator owns the execution
//! loop, the TB cache and the softmmu TLB; the target answers questions about
//! its architecture: how to translate a block, how to translate an address,
//! how to enter a trap.

use kite_ir::state::CpuHeader;
use kite_ir::{Access, Builder};

use crate::phys::PhysMemory;

/// A guest exception, in the target's own encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    pub cause: u64,
    pub tval: u64,
}

/// Why the accelerator is asking for a fault cause (it detected the problem
/// itself, outside the target's page walk).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// A naturally-aligned-only access (atomics) was misaligned.
    Misaligned,
    /// The physical address hit no RAM or device.
    AccessFault,
}

/// Limits the accelerator puts on one translation block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TbLimits {
    /// Maximum guest instructions (1 for single-stepping).
    pub max_insns: u32,
}

/// A guest CPU, as a translating accelerator sees it.
///
/// # Safety
/// Implementors must be `#[repr(C)]` with a [`CpuHeader`] as the first field:
/// generated code and helpers address the header at offset 0 of the pointer
/// to `Self`.
pub unsafe trait GuestCpu: Send + 'static {
    fn header(&self) -> &CpuHeader;
    fn header_mut(&mut self) -> &mut CpuHeader;

    /// Everything besides the PC that the translation of a block depends on
    /// (privilege mode, MMU mode, FP enable, ...). Part of the TB key. The
    /// target keeps `CpuHeader::flags` equal to it at every block boundary.
    fn tb_flags(&self) -> u32 {
        self.header().flags
    }

    /// The softmmu TLB (index < `kite_ir::state::MMU_MODES`) that data
    /// accesses use under `tb_flags` (a pure function of the flags).
    fn mmu_index(&self, tb_flags: u32) -> usize;

    /// Translate a virtual address for an access. `Ok(paddr)` or the fault
    /// to raise. `mmu_index` says which mode's view to use (it can differ from
    /// the current one, e.g. MPRV). Page walks read and update page tables
    /// through `mem`.
    fn translate_addr(
        &mut self,
        vaddr: u64,
        access: Access,
        mmu_index: usize,
        mem: &dyn PhysMemory,
    ) -> Result<u64, Fault>;

    /// Whether the translation the last successful [`GuestCpu::translate_addr`] returned
    /// is global: the same in every address space, so it may stay cached across a
    /// `flush::TLB_NONGLOBAL` request. `false` (the default) is always safe.
    fn tlb_global(&self) -> bool {
        false
    }

    /// Whether translations of `mmu_index` may be cached in the softmmu TLB at
    /// page granularity (false forces every access to the slow path, e.g. for
    /// PMP regions smaller than a page).
    fn tlb_cacheable(&self, _paddr: u64, _mmu_index: usize) -> bool {
        true
    }

    /// Whether data accesses of blocks translated under `tb_flags` use the virtual address
    /// as the physical one and nothing but the physical memory map can refuse a read
    /// there (no MMU, no memory protection that applies): generated code may then load
    /// from guest RAM directly, without the softmmu TLB. A pure function of the flags,
    /// which must change whenever the answer does. `false` (the default) is always safe.
    fn identity_mapped(&self, _tb_flags: u32) -> bool {
        false
    }

    /// The next page (any address in it) a `flush::TLB_PAGE` request asked to flush, or
    /// `None` when all are taken. The accelerator drains this on every flush request.
    fn take_flush_page(&mut self) -> Option<u64> {
        None
    }

    /// The current translation of non-global virtual addresses, as a value that is equal
    /// for two vCPUs exactly when they would translate them alike (RISC-V: `satp`).
    /// Chain links into another page made under one vCPU's mappings then stay valid for
    /// another. `None` (the default): never assume so.
    fn translation_regime(&self) -> Option<u64> {
        None
    }

    /// The fault to raise when the accelerator finds a problem itself.
    fn fault_for(&self, kind: FaultKind, access: Access, vaddr: u64) -> Fault;

    /// Emit IR for the block at virtual `pc` under `tb_flags`. `fetch` reads
    /// a 16-bit parcel of guest code at a virtual address, or returns the
    /// fault that fetching it raises (e.g. the second half of an instruction
    /// that crosses into an unmapped page: the target's page-fault or
    /// access-fault cause with tval = that address). A fault on the first
    /// instruction becomes an `Exit::Raise` of that fault; later in the block
    /// the target ends the block before the instruction. The block must end
    /// with an exit and must not cross a page boundary except for the tail of
    /// its last instruction.
    fn translate_block(
        &self,
        pc: u64,
        tb_flags: u32,
        limits: TbLimits,
        fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>,
        b: &mut Builder,
    );

    /// Enter the trap for the exception recorded in the header
    /// (`cause`, `tval`, with `pc` the faulting instruction).
    fn take_exception(&mut self);

    /// If an interrupt is pending and enabled, enter its trap and return true.
    fn take_interrupt(&mut self) -> bool;

    /// Whether an interrupt is pending that ends a `wfi` (enabled or not).
    fn has_wakeup(&self) -> bool;

    /// Whether a scheduler that runs several vCPUs in turns may end a time slice here.
    /// Targets say `false` where firmware runs with interrupts masked: its short
    /// critical sections assume the other harts run at the same time (as on hardware),
    /// not that one stops for a whole slice halfway through. Such a vCPU keeps running,
    /// within a bound, until it is preemptible again. `true` by default.
    fn preemptible(&self) -> bool {
        true
    }

    /// The architectural "instruction retired / cycle" view of the
    /// instruction count was changed by the guest; nothing to do by default.
    fn icount_updated(&mut self) {}

    /// One line per register group, for `-d cpu`.
    fn dump_state(&self) -> String;

    /// Disassemble one instruction from raw bytes at `pc`: (text, length).
    fn disassemble(&self, pc: u64, bytes: &[u8]) -> (String, usize);
}
