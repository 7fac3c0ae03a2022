//! Zicsr: every CSR access is one helper call into the CSR table.
//!
//! csrrw with rd = x0 does not read; csrrs/csrrc with rs1 = x0 (or a zero
//! immediate) do not write (so no side effects, and no trap on read-only
//! CSRs). A writing access ends the block unchained (privilege, interrupt
//! enables or translation state may have changed); a counter read ends the
//! block chained, which lets the helper compute the exact retired count:
//! the accessing instruction is always the block's last, so exactly one
//! instruction counted at block entry has not retired yet.

use kite_ir::state::offsets as hdr;
use kite_ir::{Cond, Effects, Exit, Helper, Ty};

use super::{Ctx, Flow};
use crate::cpu::{cause, RiscvCpu};
use crate::csr;
use crate::decode::{CsrOp, Reg};

const READ: u64 = 1 << 14;
const WRITE: u64 = 1 << 15;

/// Instructions of the block not yet retired when a CSR helper runs.
const REMAINING: u64 = 1;

/// `packed`: csr number (bits 0-11), op (12-13), READ, WRITE.
unsafe extern "C" fn helper_csr(cpu: *mut u8, packed: u64, src: u64, insn: u64, remaining: u64) -> u64 {
    // SAFETY: helpers receive the state pointer of the RiscvCpu that the block
    // was translated for (GuestCpu contract), and nothing else holds a
    // reference to it during the call.
    let cpu = unsafe { &mut *(cpu as *mut RiscvCpu) };
    let num = (packed & 0xfff) as u16;
    let op = match (packed >> 12) & 3 {
        0 => CsrOp::Rw,
        1 => CsrOp::Rs,
        _ => CsrOp::Rc,
    };
    let now = cpu.retired(remaining);
    match csr::access(cpu, num, op, src, packed & READ != 0, packed & WRITE != 0, now) {
        Ok(v) => v,
        Err(_) => {
            cpu.raise(cause::ILLEGAL_INSN, insn);
            0
        }
    }
}

pub(crate) static CSR_HELPER: Helper =
    Helper { name: "riscv_csr", func: helper_csr, nargs: 4, ret: Some(Ty::I64), effects: Effects::ALL };

pub(super) fn csr(ctx: &mut Ctx, op: CsrOp, imm: bool, rd: Reg, src: u8, num: u16) -> Flow {
    // It may write fflags or frm.
    *ctx.fp_ok = [None; 2];
    let write = op == CsrOp::Rw || src != 0;
    let read = op != CsrOp::Rw || rd != 0;
    let srcv = if imm { ctx.b.const64(src as u64) } else { ctx.gpr(src) };
    let opbits = match op {
        CsrOp::Rw => 0,
        CsrOp::Rs => 1,
        CsrOp::Rc => 2,
    };
    let packed = (num as u64 & 0xfff) | opbits << 12 | if read { READ } else { 0 } | if write { WRITE } else { 0 };
    let packed = ctx.b.const64(packed);
    let insn = ctx.insn_const();
    let rem = ctx.b.const64(REMAINING);
    let Some(old) = ctx.b.call(&CSR_HELPER, &[packed, srcv, insn, rem]) else {
        return ctx.illegal(); // unreachable: the helper returns a value
    };
    ctx.set_gpr(rd, old);
    if write {
        // Most writes (sscratch, sepc, sstatus.SIE/SUM, ...) change neither the TB flags nor
        // the mappings: the block then ends with a chainable jump, as after any branch.
        // A write that changed the flags (privilege, MMU index, FS) or asked for a TLB flush
        // (satp) must reach the dispatcher. Interrupts a write unmasks set `exit_request`,
        // which the next block's prologue checks either way.
        let flags = ctx.b.ld_state(Ty::I32, hdr::FLAGS);
        let want = ctx.b.const32(ctx.flags);
        let flush = ctx.b.ld_state(Ty::I32, hdr::FLUSH_REQUEST);
        let zero = ctx.b.const32(0);
        let slow = ctx.b.label();
        ctx.b.brcond(Cond::Ne, flags, want, slow);
        ctx.b.brcond(Cond::Ne, flush, zero, slow);
        ctx.b.exit(Exit::Goto(ctx.next_pc()));
        ctx.b.set_label(slow);
        ctx.b.exit(Exit::GotoNoChain(ctx.next_pc()));
        Flow::End
    } else if csr::is_counter(num) {
        ctx.b.exit(Exit::Goto(ctx.next_pc()));
        Flow::End
    } else {
        Flow::Next
    }
}
