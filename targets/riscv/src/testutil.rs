//! Test runner: translate a block, run it through the reference IR
//! interpreter over a flat RAM, enter traps, repeat. Plus small instruction
//! encoders so tests are written from the spec's encodings.

use std::mem::size_of;

use kite_core::guest::TbLimits;
use kite_core::GuestCpu;
use kite_ir::interp::{self, Env, Outcome};
use kite_ir::state::{offsets as hdr, status};
use kite_ir::{Block, Builder, MemOp};

use crate::cpu::{cause, RiscvCpu};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: usize = 0x10_000;

/// Flat RAM at `RAM_BASE`. Misaligned plain accesses succeed; misaligned
/// aligned-only accesses and out-of-range ones fault with RISC-V causes.
#[derive(Debug)]
pub struct TestMem {
    pub bytes: Vec<u8>,
}

fn wr_state(state: &mut [u8], off: u32, v: &[u8]) {
    state[off as usize..off as usize + v.len()].copy_from_slice(v);
}

fn fault(state: &mut [u8], c: u64, vaddr: u64) {
    wr_state(state, hdr::STATUS, &status::EXCEPTION.to_le_bytes());
    wr_state(state, hdr::CAUSE, &c.to_le_bytes());
    wr_state(state, hdr::TVAL, &vaddr.to_le_bytes());
}

impl TestMem {
    fn range(&self, vaddr: u64, n: u64) -> Option<usize> {
        let off = vaddr.checked_sub(RAM_BASE)?;
        (off.checked_add(n)? <= self.bytes.len() as u64).then_some(off as usize)
    }
    pub fn fetch(&self, vaddr: u64) -> Result<u16, kite_core::Fault> {
        let o = self.range(vaddr, 2).ok_or(kite_core::Fault { cause: crate::cpu::cause::INSN_ACCESS, tval: vaddr })?;
        Ok(u16::from_le_bytes([self.bytes[o], self.bytes[o + 1]]))
    }
    pub fn read(&self, vaddr: u64, n: usize) -> u64 {
        let o = self.range(vaddr, n as u64).expect("test address in RAM");
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&self.bytes[o..o + n]);
        u64::from_le_bytes(b)
    }
    pub fn write(&mut self, vaddr: u64, n: usize, v: u64) {
        let o = self.range(vaddr, n as u64).expect("test address in RAM");
        self.bytes[o..o + n].copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

impl Env for TestMem {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64> {
        let n = mop.size.bytes() as u64;
        if mop.aligned && vaddr % n != 0 {
            fault(state, cause::LOAD_MISALIGNED, vaddr);
            return None;
        }
        match self.range(vaddr, n) {
            Some(_) => Some(self.read(vaddr, n as usize)),
            None => {
                fault(state, cause::LOAD_ACCESS, vaddr);
                None
            }
        }
    }
    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool {
        let n = mop.size.bytes() as u64;
        if mop.aligned && vaddr % n != 0 {
            fault(state, cause::STORE_MISALIGNED, vaddr);
            return false;
        }
        match self.range(vaddr, n) {
            Some(_) => {
                self.write(vaddr, n as usize, val);
                true
            }
            None => {
                fault(state, cause::STORE_ACCESS, vaddr);
                false
            }
        }
    }
}

/// Why [`Machine::run`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// An ecall (not entered as a trap); `header.pc` is the ecall.
    Ecall,
    /// wfi.
    Halt,
    /// Ran out of blocks.
    Limit,
}

#[derive(Debug)]
pub struct Machine {
    pub cpu: Box<RiscvCpu>,
    pub mem: TestMem,
    pub max_insns: u32,
    /// Stop at ecall instead of taking the trap.
    pub stop_on_ecall: bool,
    pub blocks: u64,
}

impl Machine {
    /// RAM with `code` (32-bit words) at `RAM_BASE`, pc there, M-mode.
    pub fn new(code: &[u32]) -> Machine {
        let mut bytes = Vec::new();
        for w in code {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        Machine::with_bytes(&bytes)
    }

    pub fn with_bytes(code: &[u8]) -> Machine {
        let mut mem = TestMem { bytes: vec![0; RAM_SIZE] };
        mem.bytes[..code.len()].copy_from_slice(code);
        let mut cpu = RiscvCpu::new(0);
        cpu.header.pc = RAM_BASE;
        Machine { cpu, mem, max_insns: 512, stop_on_ecall: true, blocks: 0 }
    }

    /// Translate the block at the current pc (validated).
    pub fn translate(&self) -> Block {
        let pc = self.cpu.header.pc;
        let mut b = Builder::new(pc);
        let mem = &self.mem;
        let mut fetch = |a: u64| mem.fetch(a);
        self.cpu.translate_block(pc, self.cpu.header.flags, TbLimits { max_insns: self.max_insns }, &mut fetch, &mut b);
        let blk = b.finish();
        if let Err(e) = blk.validate() {
            panic!("invalid block at {pc:#x}: {e}\n{blk:#?}");
        }
        blk
    }

    /// Run one block. (The IR un-counts instructions that did not retire
    /// when a block leaves early; see `docs/ir.md`.)
    pub fn step(&mut self) -> Outcome {
        let blk = self.translate();
        let cpu: *mut RiscvCpu = &mut *self.cpu;
        // SAFETY: the slice covers exactly the RiscvCpu, which has no padding
        // (checked in cpu.rs) and lives for the call; the interpreter is the
        // only user of the state while it runs (helpers go through the same pointer).
        let state = unsafe { std::slice::from_raw_parts_mut(cpu as *mut u8, size_of::<RiscvCpu>()) };
        let out = interp::run(&blk, state, &mut self.mem);
        self.blocks += 1;
        out
    }

    pub fn run(&mut self, max_blocks: u64) -> Stop {
        for _ in 0..max_blocks {
            self.cpu.take_interrupt();
            match self.step() {
                Outcome::Status(status::EXCEPTION) => {
                    let c = self.cpu.header.cause;
                    if self.stop_on_ecall && matches!(c, cause::ECALL_U | cause::ECALL_S | cause::ECALL_M) {
                        return Stop::Ecall;
                    }
                    self.cpu.take_exception();
                }
                Outcome::Status(status::HALT) => return Stop::Halt,
                Outcome::Status(s) => panic!("unexpected status {s}"),
                _ => {}
            }
        }
        Stop::Limit
    }

    /// Run to the ecall that ends the test program.
    pub fn run_to_ecall(&mut self) {
        assert_eq!(self.run(10_000), Stop::Ecall, "program did not reach ecall");
    }
}

// ---- encoders (RISC-V base formats) ----

pub fn r_type(f7: u32, rs2: u32, rs1: u32, f3: u32, rd: u32, opc: u32) -> u32 {
    f7 << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | rd << 7 | opc
}
pub fn i_type(imm: i32, rs1: u32, f3: u32, rd: u32, opc: u32) -> u32 {
    ((imm as u32) & 0xfff) << 20 | rs1 << 15 | f3 << 12 | rd << 7 | opc
}
pub fn s_type(imm: i32, rs2: u32, rs1: u32, f3: u32, opc: u32) -> u32 {
    let i = imm as u32;
    ((i >> 5) & 0x7f) << 25 | rs2 << 20 | rs1 << 15 | f3 << 12 | (i & 0x1f) << 7 | opc
}
pub fn b_type(imm: i32, rs2: u32, rs1: u32, f3: u32) -> u32 {
    let i = imm as u32;
    ((i >> 12) & 1) << 31
        | ((i >> 5) & 0x3f) << 25
        | rs2 << 20
        | rs1 << 15
        | f3 << 12
        | ((i >> 1) & 0xf) << 8
        | ((i >> 11) & 1) << 7
        | 0x63
}
pub fn u_type(imm: i32, rd: u32, opc: u32) -> u32 {
    (imm as u32 & 0xffff_f000) | rd << 7 | opc
}
pub fn j_type(imm: i32, rd: u32) -> u32 {
    let i = imm as u32;
    ((i >> 20) & 1) << 31 | ((i >> 1) & 0x3ff) << 21 | ((i >> 11) & 1) << 20 | ((i >> 12) & 0xff) << 12 | rd << 7 | 0x6f
}

pub fn addi(rd: u32, rs1: u32, imm: i32) -> u32 {
    i_type(imm, rs1, 0, rd, 0x13)
}
pub fn csrrw(rd: u32, csr: u32, rs1: u32) -> u32 {
    i_type(csr as i32, rs1, 1, rd, 0x73)
}
pub fn csrrs(rd: u32, csr: u32, rs1: u32) -> u32 {
    i_type(csr as i32, rs1, 2, rd, 0x73)
}
pub fn csrrc(rd: u32, csr: u32, rs1: u32) -> u32 {
    i_type(csr as i32, rs1, 3, rd, 0x73)
}
pub fn csrrwi(rd: u32, csr: u32, uimm: u32) -> u32 {
    i_type(csr as i32, uimm, 5, rd, 0x73)
}
pub fn csrrsi(rd: u32, csr: u32, uimm: u32) -> u32 {
    i_type(csr as i32, uimm, 6, rd, 0x73)
}
pub fn csrrci(rd: u32, csr: u32, uimm: u32) -> u32 {
    i_type(csr as i32, uimm, 7, rd, 0x73)
}
/// AMO encoding: funct5, aq/rl, rs2, rs1, width (2 = W, 3 = D), rd.
pub fn enc_amo(f5: u32, aqrl: u32, rs2: u32, rs1: u32, f3: u32, rd: u32) -> u32 {
    r_type(f5 << 2 | aqrl, rs2, rs1, f3, rd, 0x2f)
}
pub const ECALL: u32 = 0x0000_0073;
pub const EBREAK: u32 = 0x0010_0073;
pub const MRET: u32 = 0x3020_0073;
pub const WFI: u32 = 0x1050_0073;
pub const NOP: u32 = 0x0000_0013;
