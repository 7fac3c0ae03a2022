//! Test runner: translate a block, run it through the reference IR
//! interpreter over a flat RAM, enter traps, repeat. Plus small instruction
//! encoders so tests are written from the spec's encodings.
//!
//! Every load, store and fetch goes through `RiscvCpu::translate_addr` (page
//! walk + PMP) with the RAM as the walker's [`PhysMemory`], so MMU tests run
//! real guest code; in M-mode with no PMP that is the identity.

use std::mem::size_of;
use std::sync::Mutex;

use kite_core::PhysMemory;
use kite_ir::Access;

use kite_core::guest::TbLimits;
use kite_core::GuestCpu;
use kite_ir::interp::{self, Env, Outcome};
use kite_ir::state::{offsets as hdr, status};
use kite_ir::{Block, Builder, MemOp};

use crate::cpu::{cause, RiscvCpu};

pub const RAM_BASE: u64 = 0x8000_0000;
pub const RAM_SIZE: usize = 0x40_000;

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

/// The RAM as the page walker's physical memory (test-only: a Mutex gives
/// the `&self` writes that A/D updates need).
pub struct PhysView<'a>(pub Mutex<&'a mut [u8]>);

impl PhysView<'_> {
    fn with<R>(&self, paddr: u64, n: usize, f: impl FnOnce(&mut [u8]) -> R) -> Option<R> {
        let mut g = self.0.lock().unwrap();
        let off = paddr.checked_sub(RAM_BASE)? as usize;
        let end = off.checked_add(n)?;
        g.get_mut(off..end).map(f)
    }
}

impl PhysMemory for PhysView<'_> {
    fn read_ram(&self, paddr: u64, buf: &mut [u8]) -> bool {
        self.with(paddr, buf.len(), |m| buf.copy_from_slice(m)).is_some()
    }
    fn write_ram(&self, paddr: u64, data: &[u8]) -> bool {
        self.with(paddr, data.len(), |m| m.copy_from_slice(data)).is_some()
    }
    fn read(&self, paddr: u64, size: u32) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_ram(paddr, &mut b[..size as usize]).then(|| u64::from_le_bytes(b))
    }
    fn write(&self, paddr: u64, size: u32, value: u64) -> bool {
        self.write_ram(paddr, &value.to_le_bytes()[..size as usize])
    }
    fn ram_ptr(&self, _paddr: u64) -> Option<(*mut u8, u64)> {
        None
    }
    fn cmpxchg_u64(&self, paddr: u64, old: u64, new: u64) -> Option<u64> {
        self.with(paddr, 8, |m| {
            let cur = u64::from_le_bytes(m[..8].try_into().unwrap());
            if cur == old {
                m.copy_from_slice(&new.to_le_bytes());
            }
            cur
        })
    }
}

impl TestMem {
    /// Translate `vaddr` for `access` with the CPU living in `state`,
    /// recording the fault in the header on failure.
    fn xlate(&mut self, state: &mut [u8], vaddr: u64, access: Access) -> Option<u64> {
        assert!(state.len() >= size_of::<RiscvCpu>());
        // SAFETY: `state` is the byte view of the Machine's RiscvCpu (see
        // `Machine::step`); it is not used otherwise while `cpu` lives.
        let cpu = unsafe { &mut *(state.as_mut_ptr() as *mut RiscvCpu) };
        let mmu = cpu.mmu_index(cpu.header.flags);
        let view = PhysView(Mutex::new(&mut self.bytes[..]));
        match cpu.translate_addr(vaddr, access, mmu, &view) {
            Ok(p) => Some(p),
            Err(f) => {
                cpu.raise(f.cause, f.tval);
                None
            }
        }
    }

    /// Translate every byte of an access (it may cross a page).
    fn xlate_all(&mut self, state: &mut [u8], vaddr: u64, n: u64, access: Access) -> Option<[u64; 8]> {
        let mut p = [0u64; 8];
        for i in 0..n {
            p[i as usize] = self.xlate(state, vaddr.wrapping_add(i), access)?;
        }
        Some(p)
    }
}

impl Env for TestMem {
    fn load(&mut self, state: &mut [u8], vaddr: u64, mop: MemOp) -> Option<u64> {
        let n = mop.size.bytes() as u64;
        if mop.aligned && vaddr % n != 0 {
            fault(state, cause::LOAD_MISALIGNED, vaddr);
            return None;
        }
        let p = self.xlate_all(state, vaddr, n, mop.perm(Access::Read))?;
        if p[..n as usize].iter().any(|&a| self.range(a, 1).is_none()) {
            fault(state, cause::LOAD_ACCESS, vaddr);
            return None;
        }
        let mut v = 0u64;
        for (i, &a) in p[..n as usize].iter().enumerate() {
            v |= self.read(a, 1) << (8 * i);
        }
        Some(v)
    }
    fn store(&mut self, state: &mut [u8], vaddr: u64, val: u64, mop: MemOp) -> bool {
        let n = mop.size.bytes() as u64;
        if mop.aligned && vaddr % n != 0 {
            fault(state, cause::STORE_MISALIGNED, vaddr);
            return false;
        }
        let Some(p) = self.xlate_all(state, vaddr, n, Access::Write) else {
            return false;
        };
        if p[..n as usize].iter().any(|&a| self.range(a, 1).is_none()) {
            fault(state, cause::STORE_ACCESS, vaddr);
            return false;
        }
        for (i, &a) in p[..n as usize].iter().enumerate() {
            self.write(a, 1, val >> (8 * i));
        }
        true
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

    /// Translate the block at the current pc (validated). Code is fetched
    /// through `translate_addr` (Exec), like the engine: the pc's page first,
    /// the next page only if an instruction reaches into it.
    pub fn translate(&mut self) -> Block {
        let pc = self.cpu.header.pc;
        let page0 = pc & !0xfff;
        let page1 = page0.wrapping_add(0x1000);
        let mut pages = [Some(self.xlate_exec(page0)), None];
        let blk = loop {
            let mut b = Builder::new(pc);
            let mem = &self.mem;
            let mut wants_second = false;
            let mut fetch = |a: u64| -> Result<u16, kite_core::Fault> {
                let which = usize::from(a & !0xfff != page0);
                match pages[which] {
                    Some(Ok(p)) => mem.fetch(p | (a & 0xfff)).map_err(|f| kite_core::Fault { tval: a, ..f }),
                    Some(Err(f)) => Err(kite_core::Fault { tval: a, ..f }),
                    None => {
                        wants_second = true;
                        Err(kite_core::Fault { cause: cause::INSN_ACCESS, tval: a })
                    }
                }
            };
            let limits = TbLimits { max_insns: self.max_insns };
            self.cpu.translate_block(pc, self.cpu.header.flags, limits, &mut fetch, &mut b);
            if wants_second && pages[1].is_none() {
                pages[1] = Some(self.xlate_exec(page1));
                continue;
            }
            break b.finish();
        };
        if let Err(e) = blk.validate() {
            panic!("invalid block at {pc:#x}: {e}\n{blk:#?}");
        }
        blk
    }

    fn xlate_exec(&mut self, vaddr: u64) -> Result<u64, kite_core::Fault> {
        let mmu = self.cpu.mmu_index(self.cpu.header.flags);
        let view = PhysView(Mutex::new(&mut self.mem.bytes[..]));
        self.cpu.translate_addr(vaddr, Access::Exec, mmu, &view)
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
