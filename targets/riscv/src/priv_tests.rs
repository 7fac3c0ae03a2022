//! Privileged-architecture tests beyond the MMU: Sstc hook, SEIP/STIP
//! composition, the IrqLine adaptor, TSR/TVM, counter gating of `time`,
//! interrupt delegation, and TB-flag upkeep across traps and xret.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use kite_core::{GuestCpu, IrqLine};

use crate::cpu::{cause, irq, tbflags, HartIrqLine, RiscvCpu, TimeSource, PRV_M, PRV_S, PRV_U};
use crate::csr::{self, mstatus as ms, IllegalCsr, MENVCFG_STCE};
use crate::decode::CsrOp;
use crate::testutil::*;

const MIP: u16 = 0x344;
const MENVCFG: u16 = 0x30a;
const STIMECMP: u16 = 0x14d;
const HANDLER: u64 = RAM_BASE + 0x800;

fn rw(c: &mut RiscvCpu, num: u16, v: u64) -> Result<u64, IllegalCsr> {
    csr::access(c, num, CsrOp::Rw, v, true, true, 0)
}
fn rd(c: &mut RiscvCpu, num: u16) -> Result<u64, IllegalCsr> {
    csr::access(c, num, CsrOp::Rs, 0, true, false, 0)
}

#[test]
fn sstc_hook_sees_effective_compare() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut c = RiscvCpu::new(0);
    let s = seen.clone();
    c.set_stimecmp_hook(Arc::new(move |v| s.lock().unwrap().push(v)));
    rw(&mut c, STIMECMP, 1000).unwrap(); // STCE off: the line stays low
    rw(&mut c, MENVCFG, MENVCFG_STCE).unwrap();
    rw(&mut c, STIMECMP, 2000).unwrap();
    rw(&mut c, MENVCFG, 0).unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![u64::MAX, u64::MAX, 1000, 2000, u64::MAX]);
    assert_eq!(rd(&mut c, STIMECMP), Ok(2000));
    assert_eq!(c.csr.menvcfg, 0);
    rw(&mut c, MENVCFG, u64::MAX).unwrap();
    assert_eq!(c.csr.menvcfg, csr::MENVCFG_MASK, "WARL mask");
    assert_eq!(c.csr.menvcfg & (3 << 61), 0, "no Svpbmt/Svadu");
}

#[test]
fn stimecmp_access_rules_and_stip_source() {
    let mut c = RiscvCpu::new(0);
    c.privilege = PRV_S;
    assert_eq!(rd(&mut c, STIMECMP), Err(IllegalCsr), "STCE clear");
    c.csr.menvcfg = MENVCFG_STCE;
    assert_eq!(rd(&mut c, STIMECMP), Err(IllegalCsr), "mcounteren.TM clear");
    c.csr.mcounteren = 2;
    assert_eq!(rd(&mut c, STIMECMP), Ok(u64::MAX), "reset value");
    // With STCE the compare line is STIP and software cannot write it.
    c.privilege = PRV_M;
    rw(&mut c, MIP, 1 << irq::STI).unwrap();
    assert_eq!(c.mip() & (1 << irq::STI), 0);
    c.irq.set(irq::STI, true);
    assert_ne!(c.mip() & (1 << irq::STI), 0);
    // Without STCE the line is ignored and the software bit rules.
    c.csr.menvcfg = 0;
    assert_eq!(c.mip() & (1 << irq::STI), 0);
    rw(&mut c, MIP, 1 << irq::STI).unwrap();
    assert_ne!(c.mip() & (1 << irq::STI), 0);
}

#[test]
fn seip_is_software_bit_or_plic_line() {
    let mut c = RiscvCpu::new(0);
    let sei = 1u64 << irq::SEI;
    c.irq.set(irq::SEI, true);
    assert_eq!(rd(&mut c, MIP).unwrap() & sei, sei);
    // csrrs on mip: the line does not leak into the software bit.
    csr::access(&mut c, MIP, CsrOp::Rs, 1 << irq::SSI, true, true, 0).unwrap();
    c.irq.set(irq::SEI, false);
    assert_eq!(rd(&mut c, MIP).unwrap(), 1 << irq::SSI);
    // A software SEIP stays pending after the line drops, and shows with it high.
    csr::access(&mut c, MIP, CsrOp::Rs, sei, false, true, 0).unwrap();
    c.irq.set(irq::SEI, true);
    c.irq.set(irq::SEI, false);
    assert_eq!(rd(&mut c, MIP).unwrap() & sei, sei);
    csr::access(&mut c, MIP, CsrOp::Rc, sei, false, true, 0).unwrap();
    assert_eq!(rd(&mut c, MIP).unwrap() & sei, 0);
    // MEIP/MTIP/MSIP are read-only from software.
    rw(&mut c, MIP, 0x888).unwrap();
    assert_eq!(rd(&mut c, MIP).unwrap() & 0x888, 0);
}

#[test]
fn hart_irq_line_sets_bit_and_kicks_on_raise() {
    let c = RiscvCpu::new(0);
    let kicks = Arc::new(AtomicU32::new(0));
    let k = kicks.clone();
    let line = HartIrqLine::new(
        c.irq.clone(),
        irq::MEI,
        Arc::new(move || {
            k.fetch_add(1, Ordering::SeqCst);
        }),
    );
    line.set_level(true);
    assert_ne!(c.mip() & (1 << irq::MEI), 0);
    assert_eq!(kicks.load(Ordering::SeqCst), 1);
    line.set_level(false);
    assert_eq!(c.mip() & (1 << irq::MEI), 0);
    assert_eq!(kicks.load(Ordering::SeqCst), 1, "lowering needs no kick");
    assert!(format!("{line:?}").contains("bit: 11"));
}

#[derive(Debug)]
struct FixedTime(u64);
impl TimeSource for FixedTime {
    fn now(&self) -> u64 {
        self.0
    }
}

#[test]
fn time_csr_reads_time_source_and_is_gated() {
    let mut c = RiscvCpu::new(0);
    c.time = Some(Arc::new(FixedTime(12345)));
    assert_eq!(rd(&mut c, 0xc01), Ok(12345));
    c.privilege = PRV_S;
    assert_eq!(rd(&mut c, 0xc01), Err(IllegalCsr), "mcounteren.TM clear");
    c.csr.mcounteren = 2;
    assert_eq!(rd(&mut c, 0xc01), Ok(12345));
    c.privilege = PRV_U;
    assert_eq!(rd(&mut c, 0xc01), Err(IllegalCsr), "scounteren.TM clear");
    c.csr.scounteren = 2;
    assert_eq!(rd(&mut c, 0xc01), Ok(12345));
}

/// S-mode code at RAM_BASE; M handler at HANDLER is an ecall.
fn s_machine(code: &[u32]) -> Machine {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.cpu.csr.mtvec = HANDLER;
    m.mem.write(HANDLER, 4, ECALL as u64);
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    m
}

const SRET: u32 = 0x1020_0073;

#[test]
fn tsr_and_tvm_trap_in_s() {
    // sret with TSR: illegal, tval = the instruction.
    let mut m = s_machine(&[SRET]);
    m.cpu.csr.mstatus |= ms::TSR;
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (cause::ILLEGAL_INSN, SRET as u64, RAM_BASE));
    // Without TSR sret works (to U at sepc).
    let mut m = s_machine(&[SRET]);
    m.cpu.csr.sepc = RAM_BASE + 4;
    m.run_to_ecall();
    assert_eq!((m.cpu.privilege, m.cpu.header.pc), (PRV_U, RAM_BASE + 4));
    // csrr satp with TVM: illegal; satp writable from S otherwise.
    let insn = csrrs(10, 0x180, 0);
    let mut m = s_machine(&[insn]);
    m.cpu.csr.mstatus |= ms::TVM;
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (cause::ILLEGAL_INSN, insn as u64));
    let mut m = s_machine(&[csrrw(0, 0x180, 11)]);
    m.cpu.x[11] = 8 << 60 | 0x80010;
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.satp, 8 << 60 | 0x80010);
}

#[test]
fn plic_seip_delegated_to_s_and_m_first() {
    let mut c = RiscvCpu::new(0);
    c.header.pc = 0x8000_0100;
    c.csr.stvec = 0x8000_2000;
    c.csr.mtvec = 0x8000_1000;
    c.csr.mideleg = 1 << irq::SEI;
    c.csr.mie = (1 << irq::SEI) | (1 << irq::MTI);
    c.privilege = PRV_S;
    c.update_flags();
    c.irq.set(irq::SEI, true);
    // S with SIE clear: a delegated S interrupt waits.
    assert!(!c.take_interrupt());
    c.csr.mstatus |= ms::SIE;
    // An M interrupt pending too: M first even though S is enabled.
    c.irq.set(irq::MTI, true);
    assert!(c.take_interrupt());
    assert_eq!((c.csr.mcause, c.privilege, c.header.pc), (cause::INTERRUPT | 7, PRV_M, 0x8000_1000));
    assert_eq!(c.mret(), Some(0x8000_0100));
    c.header.pc = 0x8000_0100;
    c.irq.set(irq::MTI, false);
    assert!(c.take_interrupt());
    assert_eq!((c.csr.scause, c.privilege, c.header.pc), (cause::INTERRUPT | 9, PRV_S, 0x8000_2000));
    assert_eq!(c.csr.sepc, 0x8000_0100);
    assert_ne!(c.csr.mstatus & ms::SPP, 0);
    // In M-mode a delegated interrupt is never taken.
    c.privilege = PRV_M;
    c.csr.mstatus |= ms::MIE | ms::SIE;
    assert!(!c.take_interrupt());
    assert!(c.has_wakeup());
}

#[test]
fn flags_track_privilege_sum_and_mprv() {
    let mut c = RiscvCpu::new(0);
    let idx = |c: &RiscvCpu| c.mmu_index(c.header.flags);
    // sstatus.SUM in S switches TLB index 1 <-> 2 without a flush.
    c.privilege = PRV_S;
    c.update_flags();
    assert_eq!(idx(&c), 1);
    c.header.flush_request = 0;
    csr::access(&mut c, 0x100, CsrOp::Rs, ms::SUM, false, true, 0).unwrap();
    assert_eq!(idx(&c), 2);
    assert_eq!(c.header.flush_request, 0, "SUM does not flush");
    // MXR flushes.
    csr::access(&mut c, 0x100, CsrOp::Rs, ms::MXR, false, true, 0).unwrap();
    assert_ne!(c.header.flush_request, 0);
    // A trap from S to M with MPRV set: MPP = S, so M's data accesses use
    // index 2 (S with SUM); fetches stay M.
    c.csr.mstatus |= ms::MPRV;
    c.trap(cause::ECALL_S, 0);
    assert_eq!((c.header.flags & tbflags::PRIV_MASK, idx(&c)), (3, 2));
    // mret to U clears MPRV: index 0.
    c.csr.mstatus = (c.csr.mstatus & !ms::MPP) | (PRV_U << ms::MPP_SHIFT);
    c.mret();
    assert_eq!((c.privilege, idx(&c), c.csr.mstatus & ms::MPRV), (PRV_U, 0, 0));
}
