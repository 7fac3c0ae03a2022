//! Privileged and system instructions: ecall, ebreak, mret/sret, wfi,
//! sfence.vma. Permission checks that depend only on the privilege level are
//! done at translation time (it is part of the TB flags); those that depend
//! on mstatus (TSR, TW, TVM) are done by helpers.

use kite_ir::state::flush;
use kite_ir::{Effects, Exit, Helper, Ty};

use super::{Ctx, Flow};
use crate::cpu::{cause, RiscvCpu, PRV_M, PRV_S, PRV_U};
use crate::csr::mstatus;

pub(super) fn ecall(ctx: &mut Ctx) -> Flow {
    let c = match ctx.privilege {
        PRV_U => cause::ECALL_U,
        PRV_S => cause::ECALL_S,
        _ => cause::ECALL_M,
    };
    ctx.raise(c, 0)
}

pub(super) fn ebreak(ctx: &mut Ctx) -> Flow {
    ctx.raise(cause::BREAKPOINT, ctx.pc)
}

/// Cast the helper state pointer.
///
/// # Safety
/// `cpu` must be the state pointer of a live `RiscvCpu` with no other
/// reference to it for the returned lifetime (the helper-call contract).
unsafe fn cpu_of<'a>(cpu: *mut u8) -> &'a mut RiscvCpu {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(cpu as *mut RiscvCpu) }
}

/// a0 = instruction bits, a1 = 1 for sret. Returns the new pc.
unsafe extern "C" fn helper_xret(cpu: *mut u8, insn: u64, is_sret: u64, _: u64, _: u64) -> u64 {
    // SAFETY: helper-call contract (state pointer of the translating CPU).
    let cpu = unsafe { cpu_of(cpu) };
    let r = if is_sret != 0 { cpu.sret() } else { cpu.mret() };
    r.unwrap_or_else(|| {
        cpu.raise(cause::ILLEGAL_INSN, insn);
        0
    })
}

static XRET_HELPER: Helper =
    Helper { name: "riscv_xret", func: helper_xret, nargs: 2, ret: Some(Ty::I64), effects: Effects::ALL };

pub(super) fn xret(ctx: &mut Ctx, sret: bool) -> Flow {
    if ctx.privilege == PRV_U || (!sret && ctx.privilege != PRV_M) {
        return ctx.illegal();
    }
    let insn = ctx.insn_const();
    let which = ctx.b.const64(sret as u64);
    let Some(pc) = ctx.b.call(&XRET_HELPER, &[insn, which]) else {
        return ctx.illegal(); // unreachable: the helper returns a value
    };
    // Privilege and flags changed: Indirect goes through the (pc, flags) lookup.
    ctx.b.exit(Exit::Indirect(pc));
    Flow::End
}

/// wfi from S-mode: illegal when mstatus.TW is set.
unsafe extern "C" fn helper_wfi(cpu: *mut u8, insn: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: helper-call contract (state pointer of the translating CPU).
    let cpu = unsafe { cpu_of(cpu) };
    if cpu.privilege != PRV_M && cpu.csr.mstatus & mstatus::TW != 0 {
        cpu.raise(cause::ILLEGAL_INSN, insn);
    }
    0
}

static WFI_HELPER: Helper = Helper { name: "riscv_wfi", func: helper_wfi, nargs: 1, ret: None, effects: Effects::ALL };

pub(super) fn wfi(ctx: &mut Ctx) -> Flow {
    match ctx.privilege {
        PRV_U => return ctx.illegal(),
        PRV_M => {}
        _ => {
            let insn = ctx.insn_const();
            ctx.b.call(&WFI_HELPER, &[insn]);
        }
    }
    ctx.b.exit(Exit::Halt { next_pc: ctx.next_pc() });
    Flow::End
}

/// sfence.vma: illegal in S-mode with mstatus.TVM; otherwise flush the page of rs1's
/// address (rs1 != x0; everything if a cached superpage may cover it), the non-global
/// translations (rs1 = x0, rs2 != x0: one address space) or all TLBs (both x0).
/// ASIDs are not tracked, so the ASID forms flush as if for every ASID.
unsafe extern "C" fn helper_sfence_vma(cpu: *mut u8, insn: u64, _: u64, _: u64, _: u64) -> u64 {
    // SAFETY: helper-call contract (state pointer of the translating CPU).
    let cpu = unsafe { cpu_of(cpu) };
    if cpu.privilege == PRV_S && cpu.csr.mstatus & mstatus::TVM != 0 {
        cpu.raise(cause::ILLEGAL_INSN, insn);
    } else {
        let (rs1, rs2) = (((insn >> 15) & 31) as usize, (insn >> 20) & 31);
        if rs1 == 0 && rs2 != 0 {
            cpu.header.flush_request |= flush::TLB_NONGLOBAL;
        } else {
            cpu.request_tlb_flush((rs1 != 0).then(|| cpu.x[rs1]));
        }
    }
    0
}

static SFENCE_HELPER: Helper =
    Helper { name: "riscv_sfence_vma", func: helper_sfence_vma, nargs: 1, ret: None, effects: Effects::ALL };

pub(super) fn sfence_vma(ctx: &mut Ctx) -> Flow {
    if ctx.privilege == PRV_U {
        return ctx.illegal();
    }
    let insn = ctx.insn_const();
    ctx.b.call(&SFENCE_HELPER, &[insn]);
    ctx.b.exit(Exit::GotoNoChain(ctx.next_pc()));
    Flow::End
}
