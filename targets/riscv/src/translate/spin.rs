//! Spin-wait detection: a loop that polls memory without `pause`.
//!
//! Linux's spin loops run `pause` (`cpu_relax()`), which asks the accelerator to yield
//! (see `zifencei`). Firmware's do not: OpenSBI's secondary harts spin on a load until
//! the boot hart has initialised, and its ticket locks spin on the owner field. When
//! vCPUs run in turns on one host thread, such a hart burns whole time slices that its
//! waker needs (in a two-hart Linux boot, ~10 ms of the secondary's start-up).
//!
//! A loop is a spin-wait when one pass of it cannot change anything the next pass reads
//! except through memory other agents write: every instruction is a plain register
//! operation, load, fence or direct branch (no store, atomic, CSR or system instruction),
//! and no register is both read before it is written and written (no loop-carried
//! value: a countdown or a pointer walk is not a spin). Each pass then computes the
//! same thing until another hart or a device changes memory, so letting the others run
//! first loses nothing. The block that closes such a loop asks to yield
//! (`flush::YIELD`, as `pause` does) and leaves it unchained, so every pass returns to
//! the dispatcher.
//!
//! The loop is the block itself (a branch back to its start), or the block followed by
//! the one its final `j` goes to in the same page when that one branches back (a
//! ticket lock: `lw; fence; j head` with `head: and; beq done`).

use kite_core::Fault;
use kite_ir::state::{PAGE_MASK, PAGE_SIZE};

use super::fetch_insn;
use crate::decode::{decode, Op};

/// Instructions looked at past the block's final jump.
const PEEK: usize = 8;

/// Registers read before being written, and written, along one pass of a candidate
/// loop; `pure` turns false at the first instruction that rules the loop out.
#[derive(Clone, Copy, Debug)]
pub(super) struct Scan {
    live_in: u32,
    written: u32,
    pure: bool,
}

impl Default for Scan {
    fn default() -> Scan {
        Scan { live_in: 0, written: 0, pure: true }
    }
}

impl Scan {
    /// Account for `op`, one instruction of the pass.
    pub(super) fn add(&mut self, op: &Op) {
        if !self.pure {
            return;
        }
        let (reads, rd) = match *op {
            Op::Lui { rd, .. } | Op::Auipc { rd, .. } | Op::Jal { rd, .. } => (0, rd),
            Op::AluImm { rd, rs1, .. } | Op::Load { rd, rs1, .. } => (bit(rs1), rd),
            Op::Alu { rd, rs1, rs2, .. } => (bit(rs1) | bit(rs2), rd),
            Op::Bit(ref i) => (bit(i.rs1) | bit(i.rs2), i.rd),
            Op::Branch { rs1, rs2, .. } => (bit(rs1) | bit(rs2), 0),
            Op::Fence { .. } => (0, 0),
            _ => {
                self.pure = false;
                return;
            }
        };
        self.live_in |= reads & !self.written;
        self.written |= bit(rd);
    }

    fn spins(&self) -> bool {
        self.pure && self.live_in & self.written == 0
    }

    /// Whether `last`, the control-flow instruction at `pc` that ends the block starting
    /// at `start`, closes a spin-wait loop back to `start`. `self` holds the block's
    /// earlier instructions.
    pub(super) fn closes_spin(
        mut self,
        start: u64,
        pc: u64,
        last: &Op,
        fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>,
    ) -> bool {
        self.add(last);
        if !self.pure {
            return false;
        }
        match *last {
            Op::Branch { imm, .. } => pc.wrapping_add(imm as u64) == start && self.spins(),
            Op::Jal { imm, .. } => {
                let target = pc.wrapping_add(imm as u64);
                if target == start {
                    return self.spins();
                }
                target & PAGE_MASK == start & PAGE_MASK && self.peek(start, target, fetch)
            }
            _ => false,
        }
    }

    /// Follow the code at `at` (the block's jump target) to its first control-flow
    /// instruction: does it branch back to `start` with the pass still a spin?
    fn peek(mut self, start: u64, mut at: u64, fetch: &mut dyn FnMut(u64) -> Result<u16, Fault>) -> bool {
        for _ in 0..PEEK {
            // Never into the next page, not even for the second parcel of an instruction at
            // the page's end: asking for it makes the accelerator look the page up (and
            // translate the block again) for a mere hint.
            if at & PAGE_MASK != start & PAGE_MASK || at & !PAGE_MASK > PAGE_SIZE - 4 {
                return false;
            }
            let Ok((insn, len)) = fetch_insn(fetch, at) else { return false };
            let (op, _) = decode(insn);
            self.add(&op);
            if !self.pure {
                return false;
            }
            match op {
                Op::Branch { imm, .. } => {
                    return (at.wrapping_add(imm as u64) == start || at.wrapping_add(len) == start) && self.spins();
                }
                Op::Jal { imm, .. } => return at.wrapping_add(imm as u64) == start && self.spins(),
                _ => at = at.wrapping_add(len),
            }
        }
        false
    }
}

fn bit(r: u8) -> u32 {
    (1u32 << r) & !1
}
