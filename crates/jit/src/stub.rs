//! Hand-written glue between Cranelift code and Rust.
//!
//! [`keep_regs_entry`] wraps the softmmu slow path so that Cranelift can call it with the
//! `preserve_all` convention. With the SystemV convention every inline TLB probe's miss
//! path is a call that clobbers nine integer and sixteen vector registers: values live
//! across it must sit in callee-saved registers, and a block that uses any of those saves
//! and restores them on every entry and exit (five stores and five loads around code that
//! is often only a few instructions long). A miss is rare; paying for the registers there
//! instead is the better trade. `preserve_all` calls cannot return a value, so the
//! wrapper stores the slow path's result in [`CpuHeader::slow_ret`]
//! (kite_ir::state::CpuHeader) for the caller to load.

// `dynasm!` expands some operands through `.into()`.
#![allow(clippy::useless_conversion)]

use dynasmrt::x64::X64Relocation;
use dynasmrt::{dynasm, DynasmApi, VecAssembler};
use kite_ir::state::offsets;

/// Machine code of a function `f(cpu)` that saves every caller-saved register, calls
/// `target(ctx, cpu, vaddr, info, val, next)` (the SystemV slow path) with `ctx` read from
/// the header's `slow_ctx` and the last four arguments from its `slow_args`, stores its
/// result at `cpu + SLOW_RET` and
/// restores everything (rax included). The caller's only register argument is `cpu`, which
/// a TB receives in rdi anyway: no other value has to leave its register at a miss site.
pub(crate) fn keep_regs_entry(target: u64) -> Result<Vec<u8>, String> {
    let (a, c) = (offsets::SLOW_ARGS as i32, offsets::SLOW_CTX as i32);
    keep_regs(|ops| {
        dynasm!(ops
            ; .arch x64
            ; mov rsi, rdi
            ; mov rdi, [rsi + c]
            ; mov rdx, [rsi + a]
            ; mov rcx, [rsi + a + 8]
            ; mov r8, [rsi + a + 16]
            ; mov r9, [rsi + a + 24]
            ; mov rax, QWORD target as i64
        )
    })
}

/// The same for helper calls on cold paths ([`kite_ir::Effects::cold`]): `f(cpu)` with
/// `func, a0, a1, a2, a3` in the header's `slow_args` calls the helper
/// `func(cpu, a0, a1, a2, a3)`. Process-wide (it depends on nothing per engine); `None` if
/// no executable page could be had.
pub(crate) fn keep_regs_call() -> Option<u64> {
    static CODE: std::sync::OnceLock<Option<memmap2::Mmap>> = std::sync::OnceLock::new();
    let code = CODE.get_or_init(|| {
        let a = offsets::SLOW_ARGS as i32;
        let bytes = keep_regs(|ops| {
            dynasm!(ops
                ; .arch x64
                ; mov rax, [rdi + a]
                ; mov rsi, [rdi + a + 8]
                ; mov rdx, [rdi + a + 16]
                ; mov rcx, [rdi + a + 24]
                ; mov r8, [rdi + a + 32]
            )
        })
        .ok()?;
        let mut m = memmap2::MmapMut::map_anon(bytes.len()).ok()?;
        m.copy_from_slice(&bytes);
        m.make_exec().ok()
    });
    code.as_ref().map(|m| m.as_ptr() as u64)
}

/// Save every caller-saved register, run `load` (which puts the callee in rax and the
/// SystemV arguments in place, from registers only), call it, store rax at
/// `SLOW_RET` off the `cpu` pointer that arrived in rdi, restore everything.
fn keep_regs(load: impl FnOnce(&mut VecAssembler<X64Relocation>)) -> Result<Vec<u8>, String> {
    let mut ops = VecAssembler::<X64Relocation>::new(0);
    let ret = offsets::SLOW_RET as i32;
    // Frame: rbp, then nine saved integer registers (72 bytes), then 16 xmm registers
    // (256 bytes) and 8 bytes of padding, which leaves rsp 16-byte aligned at the call.
    dynasm!(ops
        ; .arch x64
        ; push rbp
        ; mov rbp, rsp
        ; push rax
        ; push rcx
        ; push rdx
        ; push rsi
        ; push rdi
        ; push r8
        ; push r9
        ; push r10
        ; push r11
        ; sub rsp, 264
        ; movups [rsp], xmm0
        ; movups [rsp + 16], xmm1
        ; movups [rsp + 32], xmm2
        ; movups [rsp + 48], xmm3
        ; movups [rsp + 64], xmm4
        ; movups [rsp + 80], xmm5
        ; movups [rsp + 96], xmm6
        ; movups [rsp + 112], xmm7
        ; movups [rsp + 128], xmm8
        ; movups [rsp + 144], xmm9
        ; movups [rsp + 160], xmm10
        ; movups [rsp + 176], xmm11
        ; movups [rsp + 192], xmm12
        ; movups [rsp + 208], xmm13
        ; movups [rsp + 224], xmm14
        ; movups [rsp + 240], xmm15
    );
    load(&mut ops);
    dynasm!(ops
        ; .arch x64
        ; call rax
        // The saved rdi is the `cpu` argument.
        ; mov rsi, [rbp - 40]
        ; mov [rsi + ret], rax
        ; movups xmm0, [rsp]
        ; movups xmm1, [rsp + 16]
        ; movups xmm2, [rsp + 32]
        ; movups xmm3, [rsp + 48]
        ; movups xmm4, [rsp + 64]
        ; movups xmm5, [rsp + 80]
        ; movups xmm6, [rsp + 96]
        ; movups xmm7, [rsp + 112]
        ; movups xmm8, [rsp + 128]
        ; movups xmm9, [rsp + 144]
        ; movups xmm10, [rsp + 160]
        ; movups xmm11, [rsp + 176]
        ; movups xmm12, [rsp + 192]
        ; movups xmm13, [rsp + 208]
        ; movups xmm14, [rsp + 224]
        ; movups xmm15, [rsp + 240]
        ; add rsp, 264
        ; pop r11
        ; pop r10
        ; pop r9
        ; pop r8
        ; pop rdi
        ; pop rsi
        ; pop rdx
        ; pop rcx
        ; pop rax
        ; pop rbp
        ; ret
    );
    ops.finalize().map_err(|e| format!("assembler: {e:?}"))
}
