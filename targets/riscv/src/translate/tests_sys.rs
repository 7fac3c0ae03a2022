//! Execution tests for Zicsr, Zifencei, traps, privilege changes, counters
//! and block formation.

use kite_core::guest::TbLimits;
use kite_core::GuestCpu;
use kite_ir::state::flush;
use kite_ir::{Builder, Exit, Inst};

use crate::cpu::{irq, PRV_M, PRV_S, PRV_U};
use crate::csr::mstatus as ms;
use crate::testutil::*;

const MSCRATCH: u32 = 0x340;
const MSTATUS: u32 = 0x300;
const MEPC: u32 = 0x341;
const MHARTID: u32 = 0xf14;
const INSTRET: u32 = 0xc02;
const CYCLE: u32 = 0xc00;
const HANDLER: u64 = RAM_BASE + 0x800;

/// A machine whose trap handler (at HANDLER) is an ecall, so a test stops
/// right after the trap entry with the M-mode CSRs to inspect.
fn machine(code: &[u32]) -> Machine {
    let mut prog = code.to_vec();
    prog.push(ECALL);
    let mut m = Machine::new(&prog);
    m.cpu.csr.mtvec = HANDLER;
    m.mem.write(HANDLER, 4, ECALL as u64);
    m
}

#[test]
fn csr_read_write_set_clear() {
    let mut m = machine(&[
        csrrw(10, MSCRATCH, 11),  // a0 = 0, mscratch = a1
        csrrs(12, MSCRATCH, 13),  // a2 = old, set bits of a3
        csrrc(14, MSCRATCH, 15),  // a4 = old, clear bits of a5
        csrrs(16, MSCRATCH, 0),   // a6 = read only
        csrrwi(17, MSCRATCH, 31), // a7 = old, mscratch = 31
        csrrsi(18, MSCRATCH, 0),  // s2 = read only (uimm 0)
        csrrci(19, MSCRATCH, 3),  // s3 = 31, mscratch = 28
        csrrw(0, MSCRATCH, 11),   // no read, write a1
        csrrc(20, MSCRATCH, 0),   // s4 = read
    ]);
    m.cpu.csr.mscratch = 0;
    m.cpu.x[11] = 0xf0;
    m.cpu.x[13] = 0x0f;
    m.cpu.x[15] = 0x81;
    m.run_to_ecall();
    let x = &m.cpu.x;
    assert_eq!((x[10], x[12], x[14], x[16]), (0, 0xf0, 0xff, 0x7e));
    assert_eq!((x[17], x[18], x[19], x[20]), (0x7e, 31, 31, 0xf0));
    assert_eq!(m.cpu.header.pc, RAM_BASE + 36, "stopped at the final ecall, not in a trap");
}

#[test]
fn csr_x0_forms_on_read_only_csr() {
    // csrrs/csrrc with rs1 = x0 and csrrsi/csrrci with uimm = 0 do not write: no trap.
    let mut m =
        machine(&[csrrs(10, MHARTID, 0), csrrc(11, MHARTID, 0), csrrsi(12, MHARTID, 0), csrrci(13, MHARTID, 0)]);
    m.cpu.hartid = 5;
    m.run_to_ecall();
    assert_eq!(m.cpu.header.pc, RAM_BASE + 16);
    assert_eq!(&m.cpu.x[10..14], &[5, 5, 5, 5]);
    // Any write to a read-only CSR traps, even csrrw with rd = x0 or a zero value.
    for insn in [csrrw(0, MHARTID, 0), csrrs(10, MHARTID, 11), csrrwi(10, MHARTID, 0)] {
        let mut m = machine(&[insn]);
        m.cpu.x[11] = 1;
        m.run_to_ecall();
        assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (2, insn as u64, RAM_BASE));
        assert_eq!(m.cpu.x[10], 0, "rd not written on a trap");
    }
}

#[test]
fn illegal_instructions_report_bits() {
    for insn in [0xffff_ffffu32, csrrs(10, 0x7c0, 0), 0x0000_0073 | 1 << 20 | 1 << 15] {
        let mut m = machine(&[addi(10, 0, 1), insn]);
        m.run_to_ecall();
        assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (2, insn as u64, RAM_BASE + 4), "{insn:#x}");
    }
}

#[test]
fn ebreak_and_ecall_causes() {
    let mut m = machine(&[NOP, EBREAK]);
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (3, RAM_BASE + 4, RAM_BASE + 4));
    assert_eq!(m.cpu.header.pc, HANDLER);

    // ecall from M, S and U: enter the mode with mret, then ecall.
    for (mode, cause) in [(PRV_M, 11), (PRV_S, 9), (PRV_U, 8)] {
        let mut m = machine(&[csrrw(0, MEPC, 11), csrrs(0, MSTATUS, 12), MRET, ECALL]);
        m.cpu.x[11] = RAM_BASE + 12;
        m.cpu.csr.mstatus &= !ms::MPP;
        m.cpu.x[12] = mode << ms::MPP_SHIFT;
        m.run_to_ecall();
        assert_eq!(m.cpu.header.pc, RAM_BASE + 12);
        assert_eq!(m.cpu.privilege, mode);
        assert_eq!(m.cpu.header.cause, cause);
        // Taking it: mcause, MPP = the old mode, M-mode handler.
        m.cpu.take_exception();
        assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mepc), (cause, RAM_BASE + 12));
        assert_eq!((m.cpu.csr.mstatus & ms::MPP) >> ms::MPP_SHIFT, mode);
        assert_eq!((m.cpu.privilege, m.cpu.header.flags & crate::cpu::tbflags::PRIV_MASK), (PRV_M, 3));
    }
}

#[test]
fn mtvec_vectored_only_for_interrupts() {
    let mut m = machine(&[EBREAK]);
    m.cpu.csr.mtvec = HANDLER | 1;
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.mcause, 3);
    assert_eq!(m.cpu.header.pc, HANDLER, "exceptions go to the base");
    // Machine timer interrupt: base + 4 * 7.
    let mut m = machine(&[NOP, NOP]);
    m.cpu.csr.mtvec = HANDLER | 1;
    m.mem.write(HANDLER + 28, 4, ECALL as u64);
    m.cpu.csr.mie = 1 << irq::MTI;
    m.cpu.csr.mstatus |= ms::MIE;
    m.cpu.irq.set(irq::MTI, true);
    m.run_to_ecall();
    assert_eq!(m.cpu.header.pc, HANDLER + 28);
    assert_eq!(m.cpu.csr.mcause, (1 << 63) | 7);
    assert_eq!(m.cpu.csr.mepc, RAM_BASE);
}

#[test]
fn mret_restores_mie_and_mpp() {
    let mut m = machine(&[csrrw(0, MEPC, 11), MRET, NOP, csrrs(10, MSTATUS, 0)]);
    m.cpu.x[11] = RAM_BASE + 12;
    m.cpu.csr.mstatus = (m.cpu.csr.mstatus & !ms::MIE) | ms::MPIE | ms::MPP;
    m.run_to_ecall();
    let st = m.cpu.x[10];
    assert_ne!(st & ms::MIE, 0, "MIE = old MPIE");
    assert_ne!(st & ms::MPIE, 0, "MPIE = 1");
    assert_eq!(st & ms::MPP, 0, "MPP = U");
    assert_eq!(m.cpu.privilege, PRV_M);
    // mret from S-mode is illegal.
    let mut m = machine(&[MRET]);
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (2, MRET as u64));
}

#[test]
fn s_mode_cannot_touch_m_csrs() {
    let mut m = machine(&[csrrs(10, MSTATUS, 0)]);
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.mcause, 2);
    assert_eq!(m.cpu.csr.mepc, RAM_BASE);
}

#[test]
fn instret_and_cycle_are_exact() {
    // Reads in the middle of blocks, across a taken branch and a loop.
    let mut m = machine(&[
        csrrs(10, INSTRET, 0),
        NOP,
        NOP,
        csrrs(11, INSTRET, 0),
        addi(5, 0, 3),
        addi(5, 5, -1),
        b_type(-4, 0, 5, 1), // bne t0, zero, -4: loop 3 times
        csrrs(12, INSTRET, 0),
        csrrs(13, CYCLE, 0),
        csrrs(14, CYCLE, 0),
    ]);
    m.run_to_ecall();
    let x = &m.cpu.x;
    assert_eq!(x[10], 0, "nothing retired before the first instruction");
    assert_eq!(x[11] - x[10], 3);
    assert_eq!(x[12] - x[11], 1 + 1 + 3 * 2);
    assert_eq!(x[14] - x[13], 1);
    // Writes: the next instruction reads the written value.
    let mut m = machine(&[csrrw(0, 0xb02, 11), csrrs(10, INSTRET, 0), NOP, csrrs(12, INSTRET, 0)]);
    m.cpu.x[11] = 1000;
    m.run_to_ecall();
    assert_eq!((m.cpu.x[10], m.cpu.x[12]), (1000, 1002));
}

#[test]
fn instret_excludes_trapped_instructions() {
    // The faulting load and the instructions after it in its block do not retire.
    let mut m = machine(&[NOP, i_type(0, 0, 3, 11, 0x03), NOP, NOP]);
    m.stop_on_ecall = true;
    m.run_to_ecall();
    assert_eq!(m.cpu.csr.mcause, 5);
    // Retired: the nop only (the handler's ecall stops the run unretired).
    assert_eq!(m.cpu.header.icount, 1);
}

#[test]
fn wfi_fence_i_sfence() {
    let mut m = machine(&[NOP, WFI]);
    assert_eq!(m.run(10), Stop::Halt);
    assert_eq!(m.cpu.header.pc, RAM_BASE + 8);
    let mut m = machine(&[0x0000_100f, NOP]);
    m.run_to_ecall();
    assert_ne!(m.cpu.header.flush_request & flush::CODE, 0);
    let mut m = machine(&[0x1200_0073]);
    m.run_to_ecall();
    assert_ne!(m.cpu.header.flush_request & flush::TLB_ALL, 0);
    // sfence.vma x0, t0: one address space's (non-global) translations.
    let mut m = machine(&[0x1250_0073]);
    m.run_to_ecall();
    assert_eq!(m.cpu.header.flush_request & (flush::TLB_ALL | flush::TLB_NONGLOBAL), flush::TLB_NONGLOBAL);
    // pause (a fence hint) asks to yield and ends its block; other fences do not.
    let mut m = machine(&[0x0100_000f, NOP]);
    m.run_to_ecall();
    assert_ne!(m.cpu.header.flush_request & flush::YIELD, 0);
    assert_eq!(translate_at(&m, RAM_BASE, 16).ninsns, 1, "pause ends the block");
    let mut m = machine(&[0x0ff0_000f, NOP]); // fence iorw, iorw
    m.run_to_ecall();
    assert_eq!(m.cpu.header.flush_request & flush::YIELD, 0);
    // wfi/sfence.vma from U are illegal; in S with TW/TVM too.
    for (prv, extra, insn) in
        [(PRV_U, 0, WFI), (PRV_S, ms::TW, WFI), (PRV_U, 0, 0x1200_0073), (PRV_S, ms::TVM, 0x1200_0073)]
    {
        let mut m = machine(&[insn]);
        m.cpu.privilege = prv;
        m.cpu.csr.mstatus |= extra;
        m.cpu.update_flags();
        m.run_to_ecall();
        assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval), (2, insn as u64), "{insn:#x} in {prv}");
    }
}

#[test]
fn fetch_faults() {
    // Jump outside RAM: instruction access fault, tval = the address.
    let mut m = machine(&[i_type(0, 11, 0, 0, 0x67)]);
    m.cpu.x[11] = 0x1000;
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (1, 0x1000, 0x1000));
    // A 32-bit instruction whose second half is missing: tval = address of that half.
    let end = RAM_BASE + RAM_SIZE as u64 - 2;
    let mut m = machine(&[i_type(0, 11, 0, 0, 0x67)]);
    m.cpu.x[11] = end;
    m.mem.write(end, 2, 0x0513); // low half of an addi
    m.run_to_ecall();
    assert_eq!((m.cpu.csr.mcause, m.cpu.csr.mtval, m.cpu.csr.mepc), (1, end + 2, end));
}

fn translate_at(m: &Machine, pc: u64, max: u32) -> kite_ir::Block {
    let mut b = Builder::new(pc);
    let mut fetch = |a: u64| m.mem.fetch(a);
    m.cpu.translate_block(pc, m.cpu.header.flags, TbLimits { max_insns: max }, &mut fetch, &mut b);
    let blk = b.finish();
    blk.validate().unwrap();
    blk
}

#[test]
fn block_formation() {
    let m = Machine::new(&[NOP; 1100]);
    // Straight-line code stops at the page boundary.
    let blk = translate_at(&m, RAM_BASE + 0xff8, 512);
    assert_eq!((blk.ninsns, blk.size), (2, 8));
    assert_eq!(blk.insts.last(), Some(&Inst::Exit(Exit::Goto(RAM_BASE + 0x1000))));
    // max_insns (1 = single-step).
    let blk = translate_at(&m, RAM_BASE, 1);
    assert_eq!(blk.ninsns, 1);
    let blk = translate_at(&m, RAM_BASE, 7);
    assert_eq!(blk.ninsns, 7);
    let starts = blk.insts.iter().filter(|i| matches!(i, Inst::InsnStart { .. })).count();
    assert_eq!(starts, 7);
    // A 32-bit instruction straddling the page may end a block.
    let mut m = Machine::new(&[]);
    m.mem.write(RAM_BASE + 0xffc, 2, 0x0001); // c.nop
    m.mem.write(RAM_BASE + 0xffe, 4, addi(10, 0, 7) as u64);
    let blk = translate_at(&m, RAM_BASE + 0xffc, 16);
    assert_eq!((blk.ninsns, blk.size), (2, 6));
    // Branches end the block with two chainable exits.
    let m = Machine::new(&[b_type(8, 0, 0, 0)]);
    let blk = translate_at(&m, RAM_BASE, 16);
    let exits: Vec<_> = blk.insts.iter().filter_map(|i| if let Inst::Exit(e) = i { Some(*e) } else { None }).collect();
    assert_eq!(exits, vec![Exit::Goto(RAM_BASE + 4), Exit::Goto(RAM_BASE + 8)]);
}

#[test]
fn delegated_interrupt_to_s_and_priority() {
    // In S-mode with SIE: an STI delegated to S goes to stvec; MTI (not
    // delegated) beats it and goes to M.
    let mut m = machine(&[NOP]);
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    m.cpu.csr.stvec = HANDLER;
    m.cpu.csr.mideleg = 1 << irq::STI;
    m.cpu.csr.mie = (1 << irq::STI) | (1 << irq::MTI);
    m.cpu.csr.mstatus |= ms::SIE;
    m.cpu.csr.mip = 1 << irq::STI;
    m.cpu.irq.set(irq::MTI, true);
    assert!(m.cpu.take_interrupt());
    assert_eq!((m.cpu.privilege, m.cpu.csr.mcause), (PRV_M, (1 << 63) | 7));
    m.cpu.irq.set(irq::MTI, false);
    assert!(!m.cpu.take_interrupt(), "S interrupts are not taken in M-mode");
    m.cpu.privilege = PRV_S;
    m.cpu.update_flags();
    assert!(m.cpu.take_interrupt());
    assert_eq!((m.cpu.privilege, m.cpu.csr.scause), (PRV_S, (1 << 63) | 5));
    assert_eq!(m.cpu.csr.mstatus & ms::SIE, 0);
    assert_ne!(m.cpu.csr.mstatus & ms::SPP, 0);
}

#[test]
fn csr_write_enabling_pending_interrupt_requests_exit() {
    let mut m = machine(&[csrrsi(0, MSTATUS, 8), NOP]);
    m.cpu.csr.mie = 1 << irq::MSI;
    m.cpu.irq.set(irq::MSI, true);
    // The flags did not change: a chainable exit; the next block's prologue sees the request.
    assert_eq!(m.step(), kite_ir::interp::Outcome::Goto { pc: RAM_BASE + 4, chain: true });
    assert_eq!(m.cpu.header.exit_request.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn csr_write_changing_tb_flags_or_asking_a_flush_leaves_unchained() {
    // mstatus.FS off -> dirty changes the TB flags; a new satp asks for a TLB flush;
    // sscratch does neither.
    for (insn, chain) in [(csrrs(0, MSTATUS, 5), false), (csrrw(0, 0x180, 6), false), (csrrw(0, 0x140, 5), true)] {
        let mut m = machine(&[insn, NOP]);
        m.cpu.x[5] = 3 << 13;
        m.cpu.x[6] = 8 << 60;
        m.cpu.csr.mstatus &= !(3 << 13);
        m.cpu.update_flags();
        assert_eq!(m.step(), kite_ir::interp::Outcome::Goto { pc: RAM_BASE + 4, chain }, "{insn:#x}");
    }
}

/// Random programs built from the decode tables (random operand fields) run
/// through translation and the interpreter: nothing panics, every block
/// validates (checked in `Machine::translate`), and x0 stays 0.
#[test]
fn random_programs_never_panic() {
    use crate::decode::{TABLE16, TABLE32};
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..300 {
        let mut bytes = Vec::new();
        while bytes.len() < 256 {
            let r = next();
            if r % 3 == 0 {
                let e = &TABLE16[(r >> 8) as usize % TABLE16.len()];
                let p = (e.bits | ((r >> 32) as u32 & !e.mask)) as u16;
                bytes.extend_from_slice(&p.to_le_bytes());
            } else {
                let e = &TABLE32[(r >> 8) as usize % TABLE32.len()];
                let w = e.bits | ((r >> 32) as u32 & !e.mask);
                bytes.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mut m = Machine::with_bytes(&bytes);
        m.stop_on_ecall = false;
        m.cpu.csr.mtvec = RAM_BASE + (next() % 64) * 4;
        for r in 1..32 {
            // Half the registers point into RAM so memory ops often succeed.
            m.cpu.x[r] = if next() % 2 == 0 { RAM_BASE + next() % RAM_SIZE as u64 } else { next() };
        }
        let _ = m.run(200);
        assert_eq!(m.cpu.x[0], 0);
    }
}

/// Whether the block asks to yield and leaves every exit unchained (a spin-wait).
fn spins(blk: &kite_ir::Block) -> bool {
    let yields = blk
        .insts
        .iter()
        .any(|i| matches!(i, Inst::StState { off, .. } if *off == kite_ir::state::offsets::FLUSH_REQUEST));
    let chained = blk.insts.iter().any(|i| matches!(i, Inst::Exit(Exit::Goto(_))));
    assert!(!yields || !chained, "a yielding block must return to the dispatcher");
    yields
}

#[test]
fn spin_waits_without_pause_yield() {
    let lw = |rd, rs1, imm| i_type(imm, rs1, 2, rd, 0x03);
    let sw = |rs2, rs1, imm| s_type(imm, rs2, rs1, 2, 0x23);
    let bne = |rs1, rs2, imm| b_type(imm, rs2, rs1, 1);
    let beq = |rs1, rs2, imm| b_type(imm, rs2, rs1, 0);
    let and = |rd, rs1, rs2| r_type(0, rs2, rs1, 7, rd, 0x33);
    let fence_r_rw = 0x0230_000f;
    // OpenSBI's wait for the boot hart: li t0, 2; ld t1, 0(a0); bne t0, t1, back.
    let m = Machine::new(&[addi(5, 0, 2), i_type(0, 10, 3, 6, 0x03), bne(5, 6, -8)]);
    assert!(spins(&translate_at(&m, RAM_BASE, 16)));
    // Loop-carried registers are not spins: a countdown, a pointer walk, a strlen.
    let m = Machine::new(&[addi(5, 5, -1), bne(5, 0, -4)]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "countdown");
    let m = Machine::new(&[i_type(0, 10, 3, 10, 0x03), bne(10, 0, -4)]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "list walk");
    let m = Machine::new(&[lw(5, 10, 0), addi(10, 10, 4), bne(5, 0, -8)]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "string scan");
    // A store (or any other side effect) in the loop is not a spin either.
    let m = Machine::new(&[lw(5, 10, 0), sw(5, 11, 0), bne(5, 0, -8)]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "copy loop");
    let m = Machine::new(&[csrrs(5, MSCRATCH, 0), bne(5, 0, -4)]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "CSR poll");
    // A branch elsewhere is not a loop.
    let m = Machine::new(&[lw(5, 10, 0), bne(5, 0, 8), NOP, NOP]);
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)));
    // OpenSBI's ticket lock: head: and a1, a3, a4; beq a2, a1, done
    //                        wait: lw a3, 0(a0); fence r, rw; j head
    // The block at `wait` closes the loop through the head's fall-through.
    let m = Machine::new(&[and(11, 13, 14), beq(12, 11, 16), lw(13, 10, 0), fence_r_rw, j_type(-16, 0), NOP]);
    let wait = translate_at(&m, RAM_BASE + 8, 16);
    assert!(spins(&wait));
    assert!(wait.insts.contains(&Inst::Exit(Exit::GotoNoChain(RAM_BASE))));
    assert!(!spins(&translate_at(&m, RAM_BASE, 16)), "the head alone does not loop");
    // The same shape with the lock word's address advancing is a scan, not a spin.
    let m = Machine::new(&[and(11, 13, 14), beq(12, 11, 16), lw(13, 10, 0), addi(10, 10, 4), j_type(-16, 0), NOP]);
    assert!(!spins(&translate_at(&m, RAM_BASE + 8, 16)));
    // Executed, the spin still runs as before: it asks to yield and loops until memory
    // changes (here it exits at once: the word already holds 2).
    let mut m = machine(&[addi(5, 0, 2), i_type(0, 10, 3, 6, 0x03), bne(5, 6, -8)]);
    m.cpu.x[10] = RAM_BASE + 0x900;
    m.mem.write(RAM_BASE + 0x900, 8, 2);
    m.run_to_ecall();
    assert_ne!(m.cpu.header.flush_request & flush::YIELD, 0);
    assert_eq!(m.cpu.header.pc, RAM_BASE + 12);
}
