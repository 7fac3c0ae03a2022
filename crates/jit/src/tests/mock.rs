//! A mock guest for tests: a 4-byte-instruction toy ISA, identity ("bare") address
//! translation except for a faulting window, RAM plus a logging MMIO device.
//!
//! Encoding (little-endian u32): op[7:0] rd[11:8] rs[15:12] imm[31:16] (signed).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kite_core::guest::{FaultKind, TbLimits};
use kite_core::{Fault, GuestCpu, MmioDevice, PhysMemory, VmControl};
use kite_ir::state::{offsets, CpuHeader, PAGE_MASK};
use kite_ir::{Access, BinOp, Builder, Cond, Exit, MemOp, MemSize, Ty, UnOp};
use kite_memory::PhysMap;

/// Exit code of a run the watchdog of [`watched_vm`] ended.
pub const WATCHDOG_EXIT: i32 = 0x7d09;

/// A VM that asks to stop (with [`WATCHDOG_EXIT`]) after a minute: a broken translator
/// fails a test instead of hanging it.
pub fn watched_vm() -> Arc<VmControl> {
    let vm = Arc::new(VmControl::new());
    let weak = Arc::downgrade(&vm);
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(60));
        if let Some(vm) = weak.upgrade() {
            vm.request_exit(kite_core::ExitCode::Exit(WATCHDOG_EXIT));
        }
    });
    vm
}

pub const RAM_BASE: u64 = 0x1000_0000;
pub const RAM_SIZE: u64 = 0x10000;
pub const MMIO_BASE: u64 = 0x2000_0000;
/// Virtual addresses at or above this fault with a page fault (cause 13/15/12).
pub const FAULT_VA: u64 = 0xf000_0000_0000;
/// A TB flag: data accesses are identity-mapped (`GuestCpu::identity_mapped`), so
/// Cranelift loads RAM directly. Translation is the identity anyway, except for
/// `FAULT_VA` and up (outside RAM, where direct loads take the probe) and the
/// `unmapped` page, which tests with this flag must not use.
pub const IDENTITY: u32 = 1 << 4;
/// Cause of `ecall`: the mock exits the VM with r1 as the code.
pub const ECALL: u64 = 100;

#[repr(C)]
pub struct MockCpu {
    pub h: CpuHeader,
    pub regs: [u64; 16],
    pub scratch: [u64; 512],
    pub vm: Arc<VmControl>,
    pub irq: Arc<AtomicBool>,
    pub traps: Vec<(u64, u64, u64)>,
    /// A virtual page that faults until its first fault "maps" it (demand paging).
    pub unmapped: Option<u64>,
    /// Interrupts are masked: a pending one wakes `halt` but is not taken (RISC-V wfi
    /// with mstatus.MIE = 0); such a vCPU is also not `preemptible` (M-mode firmware).
    pub masked: bool,
    /// [`GuestCpu::translation_regime`] (`None`: never shared).
    pub regime: Option<u64>,
    /// (virtual page, physical page): this vCPU's own mapping of one page (another
    /// address space), non-global; every other page is the identity.
    pub remap: Option<(u64, u64)>,
}

pub const REGS: u32 = offsets::HEADER_END;
pub const SCRATCH: u32 = offsets::HEADER_END + 16 * 8;
/// Bytes of the CPU that tests compare (header, registers, scratch).
pub const STATE_BYTES: usize = (offsets::HEADER_END + 16 * 8 + 512 * 8) as usize;

pub fn reg(i: u32) -> u32 {
    REGS + 8 * i
}

impl MockCpu {
    pub fn new(vm: Arc<VmControl>) -> Box<MockCpu> {
        Box::new(MockCpu {
            h: CpuHeader::default(),
            regs: [0; 16],
            scratch: [0; 512],
            vm,
            irq: Arc::new(AtomicBool::new(false)),
            traps: Vec::new(),
            unmapped: None,
            masked: false,
            regime: None,
            remap: None,
        })
    }

    /// The compared state, then every TLB entry. The TLB tables' addresses (and their
    /// owner's) differ between machines, so they read as zero; their contents count.
    pub fn state_bytes(&self) -> Vec<u8> {
        // SAFETY: MockCpu is repr(C) and its first STATE_BYTES bytes are initialised
        // integers and pointers (no padding: `kite_ir::state` checks the header layout).
        let mut v = unsafe { std::slice::from_raw_parts(self as *const MockCpu as *const u8, STATE_BYTES) }.to_vec();
        v[offsets::TLB_TABLE as usize..offsets::HEADER_END as usize].fill(0);
        for m in 0..kite_ir::state::MMU_MODES {
            for e in self.h.tlb_entries(m) {
                for w in [e.addr_read, e.addr_write, e.addr_code, e.addend] {
                    v.extend(w.to_le_bytes());
                }
            }
        }
        v
    }
}

// SAFETY: repr(C) with the header first.
unsafe impl GuestCpu for MockCpu {
    fn header(&self) -> &CpuHeader {
        &self.h
    }
    fn header_mut(&mut self) -> &mut CpuHeader {
        &mut self.h
    }
    fn mmu_index(&self, flags: u32) -> usize {
        flags as usize & 3
    }
    fn identity_mapped(&self, flags: u32) -> bool {
        flags & IDENTITY != 0
    }
    fn translate_addr(&mut self, vaddr: u64, access: Access, _mmu: usize, _mem: &dyn PhysMemory) -> Result<u64, Fault> {
        if vaddr >= FAULT_VA || self.unmapped == Some(vaddr & PAGE_MASK) {
            let cause = match access {
                Access::Read => 13,
                Access::Write => 15,
                Access::Exec => 12,
            };
            return Err(Fault { cause, tval: vaddr });
        }
        match self.remap {
            Some((v, p)) if vaddr & PAGE_MASK == v => Ok(p | (vaddr & !PAGE_MASK)),
            _ => Ok(vaddr),
        }
    }
    fn fault_for(&self, kind: FaultKind, access: Access, vaddr: u64) -> Fault {
        let cause = match (kind, access) {
            (FaultKind::Misaligned, Access::Read) => 4,
            (FaultKind::Misaligned, Access::Write) => 6,
            (FaultKind::Misaligned, Access::Exec) => 0,
            (FaultKind::AccessFault, Access::Read) => 5,
            (FaultKind::AccessFault, Access::Write) => 7,
            (FaultKind::AccessFault, Access::Exec) => 1,
        };
        Fault { cause, tval: vaddr }
    }
    fn translate_block(
        &self,
        pc: u64,
        _flags: u32,
        limits: TbLimits,
        fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>,
        b: &mut Builder,
    ) {
        let mut cur = pc;
        let mut n = 0;
        loop {
            let word = match (fetch(cur), fetch(cur.wrapping_add(2))) {
                (Ok(lo), Ok(hi)) => lo as u32 | (hi as u32) << 16,
                _ => {
                    b.insn_start(cur);
                    let t = b.const64(cur);
                    b.exit(Exit::Raise { cause: 12, tval: t });
                    b.set_extent(n + 1, (cur - pc) as u32 + 4);
                    return;
                }
            };
            b.insn_start(cur);
            n += 1;
            let next = cur.wrapping_add(4);
            let (op, rd, rs, imm) =
                (word & 0xff, (word >> 8) & 15, (word >> 12) & 15, (word >> 16) as i16 as i64 as u64);
            let mut done = true;
            match op {
                0x01 => {
                    let v = b.const64(imm);
                    b.st_state(v, reg(rd));
                    done = false;
                }
                0x02 | 0x0c => {
                    let s = b.ld_state(Ty::I64, reg(rs));
                    let k = if op == 0x02 { b.const64(imm) } else { b.ld_state(Ty::I64, reg(rd)) };
                    let v = b.bin(BinOp::Add, s, k);
                    b.st_state(v, reg(rd));
                    done = false;
                }
                0x03 | 0x04 | 0x0a | 0x0b => {
                    let base = b.ld_state(Ty::I64, reg(rs));
                    let k = b.const64(imm);
                    let a = b.bin(BinOp::Add, base, k);
                    let size = if op <= 0x04 { MemSize::B4 } else { MemSize::B8 };
                    if op == 0x03 || op == 0x0a {
                        let v = b.ld_state(Ty::I64, reg(rd));
                        b.store(v, a, MemOp::new(size, false));
                    } else {
                        let v = b.load(Ty::I64, a, MemOp::new(size, true));
                        b.st_state(v, reg(rd));
                    }
                    done = false;
                }
                0x10..=0x15 => {
                    // Narrow and must-be-aligned accesses: 0x10/0x11 store a byte/half,
                    // 0x12/0x13 load a zero-extended byte/sign-extended half, 0x14/0x15
                    // load a word/doubleword that must be naturally aligned (as `lr`).
                    let base = b.ld_state(Ty::I64, reg(rs));
                    let k = b.const64(imm);
                    let a = b.bin(BinOp::Add, base, k);
                    let mop = match op {
                        0x10 | 0x12 => MemOp::new(MemSize::B1, false),
                        0x11 | 0x13 => MemOp::new(MemSize::B2, true),
                        0x14 => MemOp::new(MemSize::B4, true).aligned(),
                        _ => MemOp::new(MemSize::B8, false).aligned(),
                    };
                    if op <= 0x11 {
                        let v = b.ld_state(Ty::I64, reg(rd));
                        b.store(v, a, mop);
                    } else {
                        let v = b.load(Ty::I64, a, mop);
                        b.st_state(v, reg(rd));
                    }
                    done = false;
                }
                0x05 => {
                    let x = b.ld_state(Ty::I64, reg(rd));
                    let y = b.ld_state(Ty::I64, reg(rs));
                    let l = b.label();
                    b.brcond(Cond::Ne, x, y, l);
                    b.exit(Exit::Goto(next));
                    b.set_label(l);
                    b.exit(Exit::Goto(cur.wrapping_add(imm.wrapping_mul(4))));
                }
                0x06 => b.exit(Exit::Goto(cur.wrapping_add(imm.wrapping_mul(4)))),
                0x07 => {
                    let z = b.const64(0);
                    b.exit(Exit::Raise { cause: ECALL, tval: z });
                }
                0x08 => {
                    // jr: a plain indirect jump (not a call or return: `Block::dispatch`).
                    let t = b.ld_state(Ty::I64, reg(rs));
                    b.set_dispatch(true);
                    b.exit(Exit::Indirect(t));
                }
                0x09 => b.exit(Exit::Halt { next_pc: next }),
                0x0e => {
                    // rd = sext32(trunc32(imm)): a constant through the truncation a RISC-V
                    // W-op on an immediate emits (the engine's constant folding removes it).
                    let k = b.const64(imm);
                    let t = b.ext(UnOp::Trunc, Ty::I32, k);
                    let v = b.ext(UnOp::Sext32, Ty::I64, t);
                    b.st_state(v, reg(rd));
                    done = false;
                }
                0x0f => {
                    // rd = the code word `imm` bytes before this instruction, read through
                    // `fetch` as a frontend that looks back does (RISC-V's spin-wait
                    // detection); a fetch the accelerator refuses raises.
                    let a = cur.wrapping_sub(imm);
                    match (fetch(a), fetch(a.wrapping_add(2))) {
                        (Ok(lo), Ok(hi)) => {
                            let v = b.const64(lo as u64 | (hi as u64) << 16);
                            b.st_state(v, reg(rd));
                            done = false;
                        }
                        _ => {
                            let t = b.const64(a);
                            b.exit(Exit::Raise { cause: 12, tval: t });
                        }
                    }
                }
                0x0d => {
                    // yield: ask the scheduler to run another vCPU (like RISC-V `pause`).
                    let cur = b.ld_state(Ty::I32, offsets::FLUSH_REQUEST);
                    let bit = b.const32(kite_ir::state::flush::YIELD);
                    let v = b.bin(BinOp::Or, cur, bit);
                    b.st_state(v, offsets::FLUSH_REQUEST);
                    b.exit(Exit::GotoNoChain(next));
                }
                _ => {
                    let t = b.const64(word as u64);
                    b.exit(Exit::Raise { cause: 2, tval: t });
                }
            }
            if !done && (n >= limits.max_insns || next & PAGE_MASK != pc & PAGE_MASK) {
                b.exit(Exit::Goto(next));
                done = true;
            }
            if done {
                b.set_extent(n, (next - pc) as u32);
                return;
            }
            cur = next;
        }
    }
    fn take_exception(&mut self) {
        self.traps.push((self.h.cause, self.h.tval, self.h.pc));
        if self.unmapped.is_some() && self.unmapped == Some(self.h.tval & PAGE_MASK) {
            // Demand paging: map the page and retry the instruction.
            self.unmapped = None;
        } else if self.h.cause == ECALL {
            self.vm.request_exit(kite_core::ExitCode::Exit(self.regs[1] as i32));
        } else {
            self.vm.request_exit(kite_core::ExitCode::Exit(200 + self.h.cause as i32));
        }
    }
    fn take_interrupt(&mut self) -> bool {
        if !self.masked && self.irq.swap(false, Ordering::SeqCst) {
            self.regs[15] += 1;
            true
        } else {
            false
        }
    }
    fn has_wakeup(&self) -> bool {
        self.irq.load(Ordering::SeqCst)
    }
    fn preemptible(&self) -> bool {
        !self.masked
    }
    fn translation_regime(&self) -> Option<u64> {
        self.regime
    }
    fn dump_state(&self) -> String {
        format!("pc={:#x} regs={:x?}", self.h.pc, self.regs)
    }
    fn disassemble(&self, _pc: u64, bytes: &[u8]) -> (String, usize) {
        if bytes.len() < 4 {
            return ("?".into(), bytes.len());
        }
        (format!("op {:#04x}", bytes[0]), 4)
    }
}

/// Encode a toy instruction.
pub fn insn(op: u32, rd: u32, rs: u32, imm: i16) -> u32 {
    op | rd << 8 | rs << 12 | (imm as u16 as u32) << 16
}

/// An MMIO device that logs every access and reads back a function of the offset.
#[derive(Debug, Default)]
pub struct LogDev {
    pub log: Mutex<Vec<(bool, u64, u32, u64)>>,
}

impl MmioDevice for LogDev {
    fn read(&self, offset: u64, size: u32) -> u64 {
        let v = 0x1122_3344_5566_7788u64.rotate_left(offset as u32 * 8) ^ offset;
        self.log.lock().unwrap().push((false, offset, size, v));
        v
    }
    fn write(&self, offset: u64, size: u32, value: u64) {
        self.log.lock().unwrap().push((true, offset, size, value));
    }
}

/// RAM at RAM_BASE (filled with a byte pattern) and the log device at MMIO_BASE.
pub fn machine() -> (Arc<PhysMap>, Arc<LogDev>) {
    let mut m = PhysMap::new();
    let ram = m.add_ram("ram", RAM_BASE, RAM_SIZE).unwrap();
    let pat: Vec<u8> = (0..RAM_SIZE).map(|i| (i * 7 + (i >> 8)) as u8).collect();
    assert!(ram.write(RAM_BASE, &pat));
    let dev = Arc::new(LogDev::default());
    m.add_mmio("log", MMIO_BASE, 0x1000, dev.clone()).unwrap();
    (Arc::new(m), dev)
}

pub fn ram_bytes(m: &PhysMap) -> Vec<u8> {
    let mut v = vec![0u8; RAM_SIZE as usize];
    assert!(m.read_ram(RAM_BASE, &mut v));
    v
}
