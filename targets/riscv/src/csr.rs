//! Control and status registers: storage ([`Csrs`]) and ONE table
//! ([`TABLE`]) of `{number range, name, predicate, read, write}` lines, sorted
//! by number and searched by binary search (CSR accesses are helper calls,
//! never inline).
//!
//! Access rules, applied by [`access`] before any line-specific code:
//! the CSR must exist, `csr[9:8]` must not exceed the current privilege, and a
//! write to a read-only CSR (`csr[11:10] == 3`) is illegal. A line's
//! predicate adds its own conditions (counter enables, TVM). Writes apply WARL
//! masks; reads never have side effects.
//!
//! Counters: there is no timing model, so `cycle` and `instret` both count
//! retired instructions, each with its own offset (writes) and freeze value
//! (mcountinhibit). `now` is the exact retired count before the accessing
//! instruction (the translator ends a block after every counter access, so
//! the helper can correct the block-entry icount).

use kite_ir::state::flush;

use crate::cpu::{RiscvCpu, PRV_M, PRV_S};
use crate::decode::CsrOp;

/// mstatus bits.
pub mod mstatus {
    pub const SIE: u64 = 1 << 1;
    pub const MIE: u64 = 1 << 3;
    pub const SPIE: u64 = 1 << 5;
    pub const UBE: u64 = 1 << 6;
    pub const MPIE: u64 = 1 << 7;
    pub const SPP: u64 = 1 << 8;
    pub const VS: u64 = 3 << 9;
    pub const MPP_SHIFT: u32 = 11;
    pub const MPP: u64 = 3 << MPP_SHIFT;
    pub const FS: u64 = 3 << 13;
    pub const XS: u64 = 3 << 15;
    pub const MPRV: u64 = 1 << 17;
    pub const SUM: u64 = 1 << 18;
    pub const MXR: u64 = 1 << 19;
    pub const TVM: u64 = 1 << 20;
    pub const TW: u64 = 1 << 21;
    pub const TSR: u64 = 1 << 22;
    pub const UXL: u64 = 3 << 32;
    pub const SXL: u64 = 3 << 34;
    pub const SD: u64 = 1 << 63;
    /// Bits an M-mode write may change. VS stays 0 (read-only) until the
    /// V work adds it here.
    pub const WRITABLE: u64 = SIE | MIE | SPIE | MPIE | SPP | MPP | FS | MPRV | SUM | MXR | TVM | TW | TSR;
    /// The sstatus view.
    pub const SSTATUS: u64 = SIE | SPIE | UBE | SPP | VS | FS | XS | SUM | MXR | UXL | SD;
    /// Bits an S-mode write to sstatus may change.
    pub const S_WRITABLE: u64 = SIE | SPIE | SPP | FS | SUM | MXR;
}

/// misa: RV64 with A, C, I, M, S, U (F/D pending).
pub const MISA: u64 = (2 << 62) | 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 8) | (1 << 12) | (1 << 18) | (1 << 20);
/// mie bits that exist (SSIE, MSIE, STIE, MTIE, SEIE, MEIE).
pub const MIE_MASK: u64 = 0xaaa;
/// mip bits that can be pending at all.
pub const MIP_MASK: u64 = 0xaaa;
/// mip bits M-mode software may write (SSIP, STIP, SEIP).
pub const MIP_WRITABLE: u64 = 0x222;
/// Interrupts that may be delegated to S.
pub const MIDELEG_MASK: u64 = 0x222;
/// Exceptions that may be delegated to S (not ecall-from-M, 11).
pub const MEDELEG_MASK: u64 = 0xb3ff;
/// senvcfg: FIOM and the Zicbom/Zicboz enables CBIE, CBCFE, CBZE.
pub const ENVCFG_MASK: u64 = 1 | 0xf0;
/// menvcfg.STCE (Sstc: stimecmp enabled for S-mode, STIP driven by it).
pub const MENVCFG_STCE: u64 = 1 << 63;
/// menvcfg: FIOM, CBIE, CBCFE, CBZE and STCE (no Svpbmt).
pub const MENVCFG_MASK: u64 = ENVCFG_MASK | MENVCFG_STCE;
/// mcountinhibit: CY, IR and the hpm bits (TM is hardwired 0).
pub const COUNTINHIBIT_MASK: u64 = 0xffff_fffd;
/// pmpaddr holds address bits 55:2.
pub const PMPADDR_MASK: u64 = (1 << 54) - 1;

/// CSR storage. Only u64 fields, so the struct has no padding.
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Csrs {
    pub mstatus: u64,
    pub medeleg: u64,
    pub mideleg: u64,
    pub mie: u64,
    /// Software-writable mip bits (the device-driven ones are in `HartIrq`).
    pub mip: u64,
    pub mtvec: u64,
    pub mscratch: u64,
    pub mepc: u64,
    pub mcause: u64,
    pub mtval: u64,
    pub mcounteren: u64,
    pub mcountinhibit: u64,
    pub menvcfg: u64,
    pub stvec: u64,
    pub sscratch: u64,
    pub sepc: u64,
    pub scause: u64,
    pub stval: u64,
    pub satp: u64,
    pub scounteren: u64,
    pub senvcfg: u64,
    /// cycle = retired + cycle_off unless inhibited, then cycle_frozen.
    pub cycle_off: u64,
    pub cycle_frozen: u64,
    pub instret_off: u64,
    pub instret_frozen: u64,
    /// pmpcfg0 and pmpcfg2 (RV64 has only the even ones).
    pub pmpcfg: [u64; 2],
    pub pmpaddr: [u64; 16],
    /// Sstc supervisor timer compare (reset: all ones, "never").
    pub stimecmp: u64,
    /// fcsr: fflags (bits 0-4) and frm (bits 5-7).
    pub fcsr: u64,
}

impl Csrs {
    pub fn reset() -> Csrs {
        Csrs { mstatus: (2 << 32) | (2 << 34), stimecmp: u64::MAX, ..Csrs::default() }
    }
}

/// Who may access a CSR beyond the generic privilege/read-only rules.
type Pred = fn(&RiscvCpu, u16) -> bool;
type ReadFn = fn(&RiscvCpu, u16, u64) -> u64;
type WriteFn = fn(&mut RiscvCpu, u16, u64, u64);

/// One CSR table line, covering CSRs `first..=last`.
#[derive(Clone, Copy)]
pub struct CsrEntry {
    pub first: u16,
    pub last: u16,
    pub name: &'static str,
    pub pred: Option<Pred>,
    pub read: ReadFn,
    pub write: WriteFn,
}

impl std::fmt::Debug for CsrEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:#x}..={:#x}", self.name, self.first, self.last)
    }
}

macro_rules! csr {
    ($first:expr, $last:expr, $name:literal, $pred:expr, $read:expr, $write:expr) => {
        CsrEntry { first: $first, last: $last, name: $name, pred: $pred, read: $read, write: $write }
    };
    ($num:expr, $name:literal, $pred:expr, $read:expr, $write:expr) => {
        csr!($num, $num, $name, $pred, $read, $write)
    };
}

/// A plain storage CSR: `field` with a WARL write mask.
macro_rules! plain {
    ($num:expr, $name:literal, $field:ident, $mask:expr) => {
        csr!($num, $name, None, |c, _, _| c.csr.$field, |c, _, v, _| c.csr.$field = v & $mask)
    };
}

fn ignore(_: &mut RiscvCpu, _: u16, _: u64, _: u64) {}
fn zero(_: &RiscvCpu, _: u16, _: u64) -> u64 {
    0
}

pub fn read_mstatus(c: &RiscvCpu) -> u64 {
    let v = c.csr.mstatus;
    let dirty = v & mstatus::FS == mstatus::FS || v & mstatus::XS == mstatus::XS || v & mstatus::VS == mstatus::VS;
    if dirty {
        v | mstatus::SD
    } else {
        v & !mstatus::SD
    }
}

fn write_mstatus(c: &mut RiscvCpu, val: u64, mask: u64) {
    let old = c.csr.mstatus;
    let mut v = val;
    // MPP is WARL: 2 (H) is not a supported mode, keep the old value (QEMU).
    if (v & mstatus::MPP) >> mstatus::MPP_SHIFT == 2 {
        v = (v & !mstatus::MPP) | (old & mstatus::MPP);
    }
    c.set_mstatus_raw((old & !mask) | (v & mask));
    c.request_exit_if_irq();
}

fn write_mtvec(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    // Modes 2 and 3 are reserved: ignore such writes (QEMU).
    if v & 3 < 2 {
        c.csr.mtvec = v;
    } else {
        kite_core::guest_error!("mtvec write with reserved mode {:#x} ignored", v);
    }
}
fn write_stvec(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    if v & 3 < 2 {
        c.csr.stvec = v;
    } else {
        kite_core::guest_error!("stvec write with reserved mode {:#x} ignored", v);
    }
}

fn write_satp(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    use crate::mmu::satp::*;
    // WARL: a write selecting an unsupported mode has no effect (QEMU).
    let v = match v >> MODE_SHIFT {
        MODE_BARE => 0, // Bare: ASID and PPN read as zero
        MODE_SV39 | MODE_SV48 | MODE_SV57 => v & ((0xf << MODE_SHIFT) | ASID_MASK | PPN_MASK),
        _ => return,
    };
    let old = std::mem::replace(&mut c.csr.satp, v);
    // The softmmu TLB is not tagged by ASID: an address-space switch drops every
    // non-global translation (hardware would keep them under their ASID). Global ones
    // (the kernel's) are the same in every address space and stay; a mode change
    // affects every translation.
    if (old ^ v) >> MODE_SHIFT != 0 {
        c.header.flush_request |= flush::TLB_ALL;
    } else if old != v {
        c.header.flush_request |= flush::TLB_NONGLOBAL;
    }
}

fn write_menvcfg(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    let old = c.csr.menvcfg;
    c.csr.menvcfg = v & MENVCFG_MASK;
    if (old ^ c.csr.menvcfg) & MENVCFG_STCE != 0 {
        c.stimecmp_changed();
        c.request_exit_if_irq();
    }
}

fn write_stimecmp(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    c.csr.stimecmp = v;
    c.stimecmp_changed();
}

/// stimecmp: M always; S only with menvcfg.STCE and mcounteren.TM (Sstc).
fn pred_stimecmp(c: &RiscvCpu, _: u16) -> bool {
    c.privilege == PRV_M || (c.stce() && c.csr.mcounteren & TM != 0)
}

/// satp is illegal from S-mode when mstatus.TVM is set.
fn pred_satp(c: &RiscvCpu, _: u16) -> bool {
    !(c.privilege == PRV_S && c.csr.mstatus & mstatus::TVM != 0)
}

/// User counters: gated by mcounteren (below M) and scounteren (in U).
fn pred_counter(c: &RiscvCpu, csr: u16) -> bool {
    let bit = 1u64 << (csr & 31);
    match c.privilege {
        PRV_M => true,
        PRV_S => c.csr.mcounteren & bit != 0,
        _ => c.csr.mcounteren & bit != 0 && c.csr.scounteren & bit != 0,
    }
}

const CY: u64 = 1 << 0;
const TM: u64 = 1 << 1;
const IR: u64 = 1 << 2;

fn read_cycle(c: &RiscvCpu, _: u16, now: u64) -> u64 {
    if c.csr.mcountinhibit & CY != 0 {
        c.csr.cycle_frozen
    } else {
        now.wrapping_add(c.csr.cycle_off)
    }
}
fn read_instret(c: &RiscvCpu, _: u16, now: u64) -> u64 {
    if c.csr.mcountinhibit & IR != 0 {
        c.csr.instret_frozen
    } else {
        now.wrapping_add(c.csr.instret_off)
    }
}
/// A write to a counter: the next instruction reads the written value.
fn write_cycle(c: &mut RiscvCpu, _: u16, v: u64, now: u64) {
    c.csr.cycle_frozen = v;
    c.csr.cycle_off = v.wrapping_sub(now.wrapping_add(1));
}
fn write_instret(c: &mut RiscvCpu, _: u16, v: u64, now: u64) {
    c.csr.instret_frozen = v;
    c.csr.instret_off = v.wrapping_sub(now.wrapping_add(1));
}
fn write_countinhibit(c: &mut RiscvCpu, csr: u16, v: u64, now: u64) {
    let new = v & COUNTINHIBIT_MASK;
    let old = c.csr.mcountinhibit;
    // Freeze or resume each counter at its value after this instruction.
    let cy = read_cycle(c, csr, now.wrapping_add(1));
    let ir = read_instret(c, csr, now.wrapping_add(1));
    if (old ^ new) & CY != 0 {
        write_cycle(c, csr, cy, now);
    }
    if (old ^ new) & IR != 0 {
        write_instret(c, csr, ir, now);
    }
    c.csr.mcountinhibit = new;
}
fn read_time(c: &RiscvCpu, _: u16, now: u64) -> u64 {
    match &c.time {
        Some(t) => t.now(),
        None => now,
    }
}

fn write_mie(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    c.csr.mie = v & MIE_MASK;
    c.request_exit_if_irq();
}
fn write_mip(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    // With Sstc enabled STIP is the compare line, read-only here.
    let m = if c.stce() { MIP_WRITABLE & !(1 << crate::cpu::irq::STI) } else { MIP_WRITABLE };
    c.csr.mip = (c.csr.mip & !m) | (v & m);
    c.request_exit_if_irq();
}
fn write_sie(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    let m = c.csr.mideleg & MIE_MASK;
    c.csr.mie = (c.csr.mie & !m) | (v & m);
    c.request_exit_if_irq();
}
fn write_sip(c: &mut RiscvCpu, _: u16, v: u64, _: u64) {
    // Only SSIP is writable from S, and only if delegated.
    let m = c.csr.mideleg & (1 << crate::cpu::irq::SSI);
    c.csr.mip = (c.csr.mip & !m) | (v & m);
    c.request_exit_if_irq();
}

fn read_pmpcfg(c: &RiscvCpu, csr: u16, _: u64) -> u64 {
    c.csr.pmpcfg[((csr - 0x3a0) / 2) as usize & 1]
}
/// The config byte of PMP entry `i`.
fn pmp_cfg_byte(c: &RiscvCpu, i: usize) -> u8 {
    (c.csr.pmpcfg[(i / 8) & 1] >> ((i % 8) * 8)) as u8
}
const PMP_R: u8 = 1;
const PMP_W: u8 = 2;
const PMP_L: u8 = 0x80;
const PMP_A_TOR: u8 = 1 << 3;
const PMP_A: u8 = 3 << 3;

fn write_pmpcfg(c: &mut RiscvCpu, csr: u16, v: u64, _: u64) {
    let reg = ((csr - 0x3a0) / 2) as usize & 1;
    let mut out = c.csr.pmpcfg[reg];
    for byte in 0..8 {
        let old = (out >> (byte * 8)) as u8;
        if old & PMP_L != 0 {
            continue; // locked entries ignore writes
        }
        let mut b = (v >> (byte * 8)) as u8 & !0x60; // bits 5-6 are reserved (0)
        if b & PMP_W != 0 && b & PMP_R == 0 {
            b &= !(PMP_R | PMP_W); // RW=01 is reserved
        }
        out = (out & !(0xff << (byte * 8))) | ((b as u64) << (byte * 8));
    }
    c.csr.pmpcfg[reg] = out;
    c.header.flush_request |= flush::TLB_ALL;
    // A lock binds M-mode too (`tbflags::PMP_LOCKED`).
    c.update_flags();
}
fn read_pmpaddr(c: &RiscvCpu, csr: u16, _: u64) -> u64 {
    c.csr.pmpaddr[(csr - 0x3b0) as usize & 15]
}
fn write_pmpaddr(c: &mut RiscvCpu, csr: u16, v: u64, _: u64) {
    let i = (csr - 0x3b0) as usize & 15;
    let locked = pmp_cfg_byte(c, i) & PMP_L != 0;
    let next_tor_locked = i < 15 && {
        let n = pmp_cfg_byte(c, i + 1);
        n & PMP_L != 0 && n & PMP_A == PMP_A_TOR
    };
    if !locked && !next_tor_locked {
        c.csr.pmpaddr[i] = v & PMPADDR_MASK;
        c.header.flush_request |= flush::TLB_ALL;
    }
}

/// The CSR table, sorted by number (checked by a test).
pub static TABLE: &[CsrEntry] = &[
    csr!(0x001, "fflags", Some(crate::fpu::pred_fcsr), crate::fpu::read_fcsr, crate::fpu::write_fcsr),
    csr!(0x002, "frm", Some(crate::fpu::pred_fcsr), crate::fpu::read_fcsr, crate::fpu::write_fcsr),
    csr!(0x003, "fcsr", Some(crate::fpu::pred_fcsr), crate::fpu::read_fcsr, crate::fpu::write_fcsr),
    csr!(0x100, "sstatus", None, |c, _, _| read_mstatus(c) & mstatus::SSTATUS, |c, _, v, _| write_mstatus(
        c,
        v,
        mstatus::S_WRITABLE
    )),
    csr!(0x104, "sie", None, |c, _, _| c.csr.mie & c.csr.mideleg, write_sie),
    csr!(0x105, "stvec", None, |c, _, _| c.csr.stvec, write_stvec),
    plain!(0x106, "scounteren", scounteren, 0xffff_ffff),
    plain!(0x10a, "senvcfg", senvcfg, ENVCFG_MASK),
    plain!(0x140, "sscratch", sscratch, u64::MAX),
    plain!(0x141, "sepc", sepc, !1),
    plain!(0x142, "scause", scause, u64::MAX),
    plain!(0x143, "stval", stval, u64::MAX),
    csr!(0x144, "sip", None, |c, _, _| c.mip() & c.csr.mideleg, write_sip),
    csr!(0x14d, "stimecmp", Some(pred_stimecmp), |c, _, _| c.csr.stimecmp, write_stimecmp),
    csr!(0x180, "satp", Some(pred_satp), |c, _, _| c.csr.satp, write_satp),
    csr!(0x300, "mstatus", None, |c, _, _| read_mstatus(c), |c, _, v, _| write_mstatus(c, v, mstatus::WRITABLE)),
    csr!(0x301, "misa", None, |_, _, _| MISA, ignore),
    plain!(0x302, "medeleg", medeleg, MEDELEG_MASK),
    plain!(0x303, "mideleg", mideleg, MIDELEG_MASK),
    csr!(0x304, "mie", None, |c, _, _| c.csr.mie, write_mie),
    csr!(0x305, "mtvec", None, |c, _, _| c.csr.mtvec, write_mtvec),
    plain!(0x306, "mcounteren", mcounteren, 0xffff_ffff),
    csr!(0x30a, "menvcfg", None, |c, _, _| c.csr.menvcfg, write_menvcfg),
    csr!(0x320, "mcountinhibit", None, |c, _, _| c.csr.mcountinhibit, write_countinhibit),
    csr!(0x323, 0x33f, "mhpmevent", None, zero, ignore),
    plain!(0x340, "mscratch", mscratch, u64::MAX),
    plain!(0x341, "mepc", mepc, !1),
    plain!(0x342, "mcause", mcause, u64::MAX),
    plain!(0x343, "mtval", mtval, u64::MAX),
    csr!(0x344, "mip", None, |c, _, _| c.mip(), write_mip),
    csr!(0x3a0, "pmpcfg0", None, read_pmpcfg, write_pmpcfg),
    csr!(0x3a2, "pmpcfg2", None, read_pmpcfg, write_pmpcfg),
    csr!(0x3b0, 0x3bf, "pmpaddr", None, read_pmpaddr, write_pmpaddr),
    // Sdtrig with zero triggers: tselect is hardwired 0 and tdata1 reads type 0
    // ("no trigger here"), so software probing for breakpoints finds none
    // instead of taking an illegal-instruction trap.
    csr!(0x7a0, "tselect", None, zero, ignore),
    csr!(0x7a1, 0x7a3, "tdata", None, zero, ignore),
    csr!(0x7a4, "tinfo", None, |_, _, _| 1, ignore),
    csr!(0xb00, "mcycle", None, read_cycle, write_cycle),
    csr!(0xb02, "minstret", None, read_instret, write_instret),
    csr!(0xb03, 0xb1f, "mhpmcounter", None, zero, ignore),
    csr!(0xc00, "cycle", Some(pred_counter), read_cycle, ignore),
    csr!(0xc01, "time", Some(pred_counter), read_time, ignore),
    csr!(0xc02, "instret", Some(pred_counter), read_instret, ignore),
    csr!(0xc03, 0xc1f, "hpmcounter", Some(pred_counter), zero, ignore),
    csr!(0xf11, "mvendorid", None, zero, ignore),
    csr!(0xf12, "marchid", None, zero, ignore),
    csr!(0xf13, "mimpid", None, zero, ignore),
    csr!(0xf14, "mhartid", None, |c, _, _| c.hartid, ignore),
    csr!(0xf15, "mconfigptr", None, zero, ignore),
];

/// The table line for CSR `num`.
pub fn lookup(num: u16) -> Option<&'static CsrEntry> {
    let i = TABLE.partition_point(|e| e.last < num);
    TABLE.get(i).filter(|e| e.first <= num && num <= e.last)
}

/// Name of CSR `num` for the disassembler (`pmpaddr3`, `hpmcounter5`...).
pub fn name(num: u16) -> Option<String> {
    lookup(num).map(|e| {
        if e.first == e.last {
            e.name.to_string()
        } else {
            format!("{}{}", e.name, num - e.first + (e.first & 0xf))
        }
    })
}

/// Whether reading CSR `num` depends on the retired-instruction count (the
/// translator ends the block after such an access so the count is exact).
pub fn is_counter(num: u16) -> bool {
    matches!(num, 0xb00 | 0xb02 | 0xc00..=0xc02)
}

/// The illegal-instruction condition of a CSR access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("illegal CSR access")]
pub struct IllegalCsr;

/// Perform a Zicsr access: returns the old value (0 if not read).
/// `now` is the retired-instruction count before this instruction.
pub fn access(
    c: &mut RiscvCpu,
    num: u16,
    op: CsrOp,
    src: u64,
    read: bool,
    write: bool,
    now: u64,
) -> Result<u64, IllegalCsr> {
    let e = lookup(num).ok_or(IllegalCsr)?;
    let need = ((num >> 8) & 3) as u64;
    if c.privilege < need || (write && (num >> 10) & 3 == 3) {
        return Err(IllegalCsr);
    }
    if let Some(p) = e.pred {
        if !p(c, num) {
            return Err(IllegalCsr);
        }
    }
    let old = if read || op != CsrOp::Rw { (e.read)(c, num, now) } else { 0 };
    if write {
        // csrrs/csrrc on mip: only the software-writable SEIP bit takes part
        // in the read-modify-write, not the PLIC line ORed into reads.
        let base = if num == 0x344 {
            let sei = 1u64 << crate::cpu::irq::SEI;
            (old & !sei) | (c.csr.mip & sei)
        } else {
            old
        };
        let new = match op {
            CsrOp::Rw => src,
            CsrOp::Rs => base | src,
            CsrOp::Rc => base & !src,
        };
        (e.write)(c, num, new, now);
    }
    Ok(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::PRV_U;

    #[test]
    fn table_sorted_and_disjoint() {
        for w in TABLE.windows(2) {
            assert!(w[0].first <= w[0].last && w[0].last < w[1].first, "{:?} / {:?}", w[0], w[1]);
        }
        assert_eq!(lookup(0x3b5).map(|e| e.name), Some("pmpaddr"));
        assert_eq!(name(0x3b5).as_deref(), Some("pmpaddr5"));
        assert!(lookup(0x3a1).is_none(), "pmpcfg1 does not exist on RV64");
        assert!(lookup(0x7c0).is_none());
        assert_eq!(name(0x7a2).as_deref(), Some("tdata2"));
        assert_eq!(lookup(0xf15).map(|e| e.name), Some("mconfigptr"));
    }

    fn rw(c: &mut RiscvCpu, num: u16, v: u64) -> Result<u64, IllegalCsr> {
        access(c, num, CsrOp::Rw, v, true, true, 0)
    }
    fn rd(c: &mut RiscvCpu, num: u16) -> Result<u64, IllegalCsr> {
        access(c, num, CsrOp::Rs, 0, true, false, 0)
    }

    #[test]
    fn triggers_absent_but_probeable() {
        let mut c = RiscvCpu::new(0);
        // tselect is hardwired 0; tdata1 keeps type 0 whatever is written.
        rw(&mut c, 0x7a0, 1).unwrap();
        assert_eq!(rd(&mut c, 0x7a0), Ok(0));
        rw(&mut c, 0x7a1, (2 << 60) | (1 << 6) | (1 << 2)).unwrap();
        assert_eq!(rd(&mut c, 0x7a1), Ok(0));
        assert_eq!(rd(&mut c, 0x7a4), Ok(1), "tinfo: only type 0 (none)");
        c.privilege = PRV_S;
        assert_eq!(rd(&mut c, 0x7a0), Err(IllegalCsr), "M-mode only");
    }

    #[test]
    fn mstatus_warl() {
        let mut c = RiscvCpu::new(0);
        rw(&mut c, 0x300, u64::MAX).unwrap();
        let v = rd(&mut c, 0x300).unwrap();
        assert_eq!(v & mstatus::MPP, mstatus::MPP);
        assert_eq!(v & mstatus::FS, mstatus::FS, "FS is writable");
        assert_eq!(v & mstatus::SD, mstatus::SD, "FS = Dirty sets SD");
        assert_eq!((v & mstatus::UXL) >> 32, 2);
        assert_eq!((v & mstatus::SXL) >> 34, 2);
        // MPP = 2 is reserved: the old value (3) stays.
        rw(&mut c, 0x300, 2 << 11).unwrap();
        assert_eq!(rd(&mut c, 0x300).unwrap() & mstatus::MPP, 3 << 11);
        rw(&mut c, 0x300, 1 << 11).unwrap();
        assert_eq!(rd(&mut c, 0x300).unwrap() & mstatus::MPP, 1 << 11);
        // sstatus is a view.
        rw(&mut c, 0x100, mstatus::SIE | mstatus::MIE).unwrap();
        let m = rd(&mut c, 0x300).unwrap();
        assert_ne!(m & mstatus::SIE, 0);
        assert_eq!(m & mstatus::MIE, 0, "sstatus cannot set MIE");
        assert_eq!(rd(&mut c, 0x100).unwrap() & mstatus::MPP, 0);
    }

    #[test]
    fn warl_masks() {
        let mut c = RiscvCpu::new(0);
        rw(&mut c, 0x341, 0x1003).unwrap();
        assert_eq!(rd(&mut c, 0x341), Ok(0x1002));
        rw(&mut c, 0x305, 0x8000_0001).unwrap();
        rw(&mut c, 0x305, 0x9000_0002).unwrap();
        assert_eq!(rd(&mut c, 0x305), Ok(0x8000_0001), "reserved mtvec mode ignored");
        rw(&mut c, 0x304, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x304), Ok(0xaaa));
        rw(&mut c, 0x344, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x344), Ok(0x222));
        rw(&mut c, 0x302, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x302), Ok(0xb3ff));
        rw(&mut c, 0x303, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x303), Ok(0x222));
        assert_eq!(rd(&mut c, 0x104), Ok(0x222), "sie = mie & mideleg");
        assert_eq!(rd(&mut c, 0x301), Ok(MISA));
        rw(&mut c, 0x301, 0).unwrap();
        assert_eq!(rd(&mut c, 0x301), Ok(MISA), "misa writes ignored");
        rw(&mut c, 0x180, 11 << 60 | 5).unwrap();
        assert_eq!(rd(&mut c, 0x180), Ok(0), "unsupported satp mode (Sv64): no effect");
        rw(&mut c, 0x320, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x320), Ok(COUNTINHIBIT_MASK));
    }

    #[test]
    fn privilege_and_read_only_rules() {
        let mut c = RiscvCpu::new(7);
        assert_eq!(rd(&mut c, 0xf14), Ok(7));
        assert_eq!(rw(&mut c, 0xf14, 1), Err(IllegalCsr));
        // csrrs with x0: no write, so no trap on a read-only CSR.
        assert_eq!(access(&mut c, 0xf14, CsrOp::Rs, 0, true, false, 0), Ok(7));
        assert_eq!(rd(&mut c, 0x7b0), Err(IllegalCsr), "unknown CSR");
        c.privilege = PRV_S;
        assert_eq!(rd(&mut c, 0x300), Err(IllegalCsr));
        assert!(rd(&mut c, 0x100).is_ok());
        assert_eq!(rd(&mut c, 0xc00), Err(IllegalCsr), "mcounteren.CY clear");
        c.csr.mcounteren = 1;
        assert!(rd(&mut c, 0xc00).is_ok());
        c.privilege = PRV_U;
        assert_eq!(rd(&mut c, 0xc00), Err(IllegalCsr), "scounteren.CY clear");
        c.csr.scounteren = 1;
        assert!(rd(&mut c, 0xc00).is_ok());
        assert_eq!(rd(&mut c, 0x100), Err(IllegalCsr));
        c.privilege = PRV_S;
        c.csr.mstatus |= mstatus::TVM;
        assert_eq!(rd(&mut c, 0x180), Err(IllegalCsr));
        c.privilege = PRV_M;
        assert_eq!(rd(&mut c, 0x180), Ok(0));
    }

    #[test]
    fn pmp_lock_and_reserved_encodings() {
        let mut c = RiscvCpu::new(0);
        // entry 0: W without R -> RW cleared; entry 1: locked TOR, X.
        rw(&mut c, 0x3a0, 0x8c02 | 0x60).unwrap();
        assert_eq!(rd(&mut c, 0x3a0), Ok(0x8c00));
        rw(&mut c, 0x3b0, 0x1234).unwrap();
        assert_eq!(rd(&mut c, 0x3b0), Ok(0), "next entry is locked TOR");
        rw(&mut c, 0x3b1, 0x1234).unwrap();
        assert_eq!(rd(&mut c, 0x3b1), Ok(0), "locked entry");
        rw(&mut c, 0x3b2, u64::MAX).unwrap();
        assert_eq!(rd(&mut c, 0x3b2), Ok(PMPADDR_MASK));
        rw(&mut c, 0x3a0, 0).unwrap();
        assert_eq!(rd(&mut c, 0x3a0), Ok(0x8c00), "locked byte kept");
        rw(&mut c, 0x3a2, 0x1f).unwrap();
        assert_eq!(rd(&mut c, 0x3a2), Ok(0x1f));
    }

    #[test]
    fn counters_offsets_and_inhibit() {
        let mut c = RiscvCpu::new(0);
        assert_eq!(access(&mut c, 0xb02, CsrOp::Rs, 0, true, false, 100), Ok(100));
        // Write 1000 at now=100: the next instruction (now=101) reads 1000.
        access(&mut c, 0xb02, CsrOp::Rw, 1000, false, true, 100).unwrap();
        assert_eq!(access(&mut c, 0xc02, CsrOp::Rs, 0, true, false, 101), Ok(1000));
        assert_eq!(access(&mut c, 0xc02, CsrOp::Rs, 0, true, false, 111), Ok(1010));
        // Inhibit IR at now=111: frozen at 1011 (this instruction counted).
        access(&mut c, 0x320, CsrOp::Rw, IR, false, true, 111).unwrap();
        assert_eq!(access(&mut c, 0xc02, CsrOp::Rs, 0, true, false, 500), Ok(1011));
        assert_eq!(access(&mut c, 0xc00, CsrOp::Rs, 0, true, false, 500), Ok(500), "cycle not inhibited");
        access(&mut c, 0x320, CsrOp::Rw, 0, false, true, 600).unwrap();
        assert_eq!(access(&mut c, 0xc02, CsrOp::Rs, 0, true, false, 601), Ok(1011));
        assert_eq!(access(&mut c, 0xc02, CsrOp::Rs, 0, true, false, 611), Ok(1021));
    }
}
