//! Engine tests with the mock guest, on both tiers.

use std::time::{Duration, Instant};

use kite_core::{ExitCode, PhysMemory};

use kite_ir::testing::Rng;

use super::mock::*;
use crate::{Engine, JitOptions, Stats, Tier};

/// A program made of pieces of code at word offsets (the words between are zero): vCPU B's
/// code at word 16 (`RAM_BASE + 0x40`), a far target past a page, ...
fn layout(pieces: &[(usize, &[u32])]) -> Vec<u32> {
    let len = pieces.iter().map(|(at, code)| at + code.len()).max().unwrap_or(0);
    let mut prog = vec![0u32; len];
    for (at, code) in pieces {
        prog[*at..at + code.len()].copy_from_slice(code);
    }
    prog
}

fn load_program(mem: &kite_memory::PhysMap, at: u64, prog: &[u32]) {
    let bytes: Vec<u8> = prog.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(mem.write_ram(at, &bytes));
}

fn run(
    tier: Tier,
    opts: JitOptions,
    prog: &[u32],
    setup: &dyn Fn(&mut MockCpu, &kite_memory::PhysMap),
) -> (ExitCode, Stats) {
    let (code, stats, _, _) = run_on(tier, opts, prog, setup);
    (code, stats)
}

/// [`run`], also returning the vCPU and the machine's memory as the run left them.
fn run_on(
    tier: Tier,
    opts: JitOptions,
    prog: &[u32],
    setup: &dyn Fn(&mut MockCpu, &kite_memory::PhysMap),
) -> (ExitCode, Stats, Box<MockCpu>, std::sync::Arc<kite_memory::PhysMap>) {
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), JitOptions { tier, ..opts }).unwrap();
    let mut cpu = MockCpu::new(vm);
    cpu.h.pc = RAM_BASE;
    cpu.regs[7] = RAM_BASE;
    setup(&mut cpu, &mem);
    let code = e.run(&mut cpu);
    (code, e.stats(), cpu, mem)
}

const TIERS: [Tier; 3] = [Tier::Interp, Tier::Jit, Tier::Tiered];

/// A misaligned load within one page hits the TLB once filled, in every tier (only the
/// first run takes the slow path); one that crosses a page takes it every time.
#[test]
fn misaligned_accesses_within_a_page_take_the_fast_path() {
    for (off, crosses) in [(0x101i16, false), (0xffd, true)] {
        let prog = [
            insn(1, 1, 0, 0),
            insn(1, 2, 0, 10),
            insn(0x0b, 3, 7, off),
            insn(2, 1, 1, 1),
            insn(5, 1, 2, -2),
            insn(7, 0, 0, 0),
        ];
        for (tier, baseline) in [(Tier::Interp, false), (Tier::Jit, false), (Tier::Tiered, true)] {
            let opts = JitOptions { background: false, baseline, regions: false, ..JitOptions::default() };
            let (code, st) = run(tier, opts, &prog, &|_, _| {});
            assert_eq!(code, ExitCode::Exit(10), "{tier:?}");
            let want = if crosses { 10 } else { 1 };
            assert_eq!(st.tlb_slow_path, want, "{tier:?}, offset {off:#x}: {st:?}");
        }
    }
}

/// A long block counts `entry_weight` entries per run toward the tier-up threshold: a
/// 32-instruction loop body reaches a threshold of 100 after 25 runs, a 3-instruction one
/// does not in 40.
#[test]
fn long_blocks_tier_up_after_fewer_runs() {
    for body in [30usize, 1] {
        let mut prog = vec![insn(1, 1, 0, 0), insn(1, 2, 0, 40)];
        prog.extend(std::iter::repeat_n(insn(2, 3, 3, 1), body));
        prog.push(insn(2, 1, 1, 1));
        prog.push(insn(5, 1, 2, -(body as i16 + 1)));
        prog.push(insn(7, 0, 0, 0));
        let opts =
            JitOptions { background: false, thresh: 100, baseline: true, regions: false, ..JitOptions::default() };
        let (code, st) = run(Tier::Tiered, opts, &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(40), "body {body}");
        assert_eq!(st.tbs_promoted, (body == 30) as u64, "body {body}: {st:?}");
    }
}

#[test]
fn counting_loop_chains_in_the_jit() {
    // r1 = 0; r2 = 1000; A: r1 += 1; j B; B: bne r1, r2, A; ecall (exit code r1).
    // Two blocks that jump to each other: chained after the first runs.
    let prog = [
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 1000),
        insn(2, 1, 1, 1),
        insn(6, 0, 0, 1),
        insn(5, 1, 2, -2),
        insn(7, 0, 0, 0),
    ];
    // Foreground compilation: the tier-up point is deterministic.
    let t = 100;
    for (tier, baseline) in [(Tier::Interp, false), (Tier::Jit, false), (Tier::Tiered, false), (Tier::Tiered, true)] {
        // Without regions: the two blocks would become one function (see the region tests).
        let opts =
            JitOptions { background: false, thresh: t as u32, baseline, regions: false, ..JitOptions::default() };
        let (code, st) = run(tier, opts, &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(1000), "{tier:?}");
        // The trapping ecall does not complete, so it is not counted.
        assert_eq!(st.insns, 2 + 3 * 1000, "{tier:?}: {st:?}");
        match (tier, baseline) {
            (Tier::Jit, _) => {
                assert!(st.chains_linked >= 2, "{st:?}");
                assert!(st.dispatches < 20, "the loop must run chained: {st:?}");
                assert_eq!(st.compile_fallbacks, 0);
            }
            (Tier::Tiered, false) => {
                // Interpreted until hot, then compiled in place and chained.
                assert_eq!(st.tbs_promoted, 2, "{st:?}");
                assert!(st.chains_linked >= 2, "{st:?}");
                assert!(st.dispatches >= 2 * t && st.dispatches < 2 * t + 20, "{st:?}");
            }
            (Tier::Tiered, true) => {
                // Baseline code chains at once; the prologue counters send both blocks to
                // Cranelift, whose code is linked in place of the baseline code.
                assert_eq!((st.tbs_baseline, st.tbs_promoted), (4, 2), "{st:?}");
                assert!(st.chains_linked >= 4, "{st:?}");
                assert!(st.dispatches < 20, "{st:?}");
            }
            _ => assert!(st.dispatches > 2000),
        }
    }
}

#[test]
fn translated_blocks_are_constant_folded_before_any_tier() {
    // r1 = sext32(trunc32(-2)); ecall (exit code r1).
    let prog = [insn(0x0e, 1, 0, -2), insn(7, 0, 0, 0)];
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, &prog);
    let vm = watched_vm();
    let opts = JitOptions { tier: Tier::Interp, ..JitOptions::default() };
    let mut e = Engine::<MockCpu>::new(mem, vm.clone(), opts).unwrap();
    let mut cpu = MockCpu::new(vm);
    cpu.h.pc = RAM_BASE;
    assert_eq!(e.run(&mut cpu), ExitCode::Exit(-2));
    let block = e.interp_block_at(RAM_BASE).expect("the block stays cached");
    // The truncation and the extension of the constant are constants now.
    let un = block.insts.iter().filter(|i| matches!(i, kite_ir::Inst::Un { .. })).count();
    assert_eq!(un, 0, "{block}");
}

#[test]
fn a_block_that_jumps_to_itself_loops_inside_its_code() {
    // r1 = 0; r2 = 1000; loop: r1 += 1; bne r1, r2, loop; ecall (exit code r1): the loop
    // block branches back to its own start without returning to the dispatcher.
    let prog = [insn(1, 1, 0, 0), insn(1, 2, 0, 1000), insn(2, 1, 1, 1), insn(5, 1, 2, -1), insn(7, 0, 0, 0)];
    let opts = JitOptions { background: false, ..JitOptions::default() };
    for tier in TIERS {
        let (code, st) = run(tier, opts.clone(), &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(1000), "{tier:?}");
        assert_eq!(st.insns, 2 + 2 * 1000, "{tier:?}: {st:?}");
        if tier == Tier::Jit {
            assert!(st.dispatches < 5, "{st:?}");
            // Entry -> loop and loop -> ecall; the loop's own exit is never linked.
            assert_eq!(st.chains_linked, 2, "{st:?}");
        }
    }
    // Single-stepping never loops inside a block.
    let step = JitOptions { single_step: true, ..opts };
    let (code, st) = run(Tier::Jit, step, &prog, &|_, _| {});
    assert_eq!(code, ExitCode::Exit(1000));
    assert!(st.dispatches > 2000, "{st:?}");
}

#[test]
fn background_compile_takes_over_a_hot_loop() {
    // r1 = 0; loop: r1 += 1; bne r1, r2, loop; ecall (exit code r1), r2 = N from setup.
    // Long enough (tens of ms even once compiled) that a worker starved on a loaded CI machine
    // still installs its code before half the iterations have run.
    const N: u64 = 200_000_000;
    let prog = [insn(1, 1, 0, 0), insn(2, 1, 1, 1), insn(5, 1, 2, -1), insn(7, 0, 0, 0)];
    let opts = JitOptions { background: true, ..JitOptions::default() };
    let (code, st) = run(Tier::Tiered, opts, &prog, &|cpu, _| cpu.regs[2] = N);
    assert_eq!(code, ExitCode::Exit(N as i32));
    assert_eq!(st.insns, 1 + 2 * N, "{st:?}");
    // The worker's code was installed while the loop ran, and the rest ran inside it.
    assert_eq!(st.tbs_promoted, 1, "{st:?}");
    assert!(st.dispatches < N / 2, "{st:?}");
}

#[test]
fn self_modifying_code_is_seen() {
    // 0x00: li r1, 1        <- overwritten with `li r1, 2` by the store at 0x1c
    // 0x04: addi r4, r4, 1
    // 0x08: li r2, 2
    // 0x0c: bne r4, r2, +3  (-> 0x18)
    // 0x10: ecall           (exit code r1)
    // 0x18: lw r3, 0x800(r7)
    // 0x1c: sw r3, 0(r7)
    // 0x20: j -8            (-> 0x00)
    let prog = [
        insn(1, 1, 0, 1),
        insn(2, 4, 4, 1),
        insn(1, 2, 0, 2),
        insn(5, 4, 2, 3),
        insn(7, 0, 0, 0),
        0,
        insn(4, 3, 7, 0x800),
        insn(3, 3, 7, 0),
        insn(6, 0, 0, -8),
    ];
    for tier in TIERS {
        let (code, st) = run(tier, JitOptions::default(), &prog, &|_, mem| {
            assert!(mem.write_ram(RAM_BASE + 0x800, &insn(1, 1, 0, 2).to_le_bytes()));
        });
        assert_eq!(code, ExitCode::Exit(2), "{tier:?}: {st:?}");
        // Only the TB holding the stored-to bytes goes; the storing TB (same page) stays.
        assert_eq!(st.tbs_invalidated, 1, "{st:?}");
        assert_eq!(st.exits.lookup, 0, "{st:?}");
    }
}

/// A chained exit whose target TB is invalidated stops reaching its old code: baseline
/// code jumps to its target directly (a patched `jmp`), and the invalidation re-points it.
#[test]
fn a_chained_exit_into_rewritten_code_runs_the_new_code() {
    // 0x00: li r2, 20 ; li r3, 40 ; j A
    // A 0x0c: addi r5, r5, 1      <- rewritten to `addi r5, r5, 100` when r4 reaches 20
    //   0x10: addi r4, r4, 1 ; bne r4, r2, C
    // S 0x18: lw r6, 0x800(r7) ; sw r6, 0x0c(r7) ; j C
    // C 0x24: bne r4, r3, A        (chained to A after its first run)
    //   0x28: r1 += r5 ; ecall     (exit code 20 * 1 + 20 * 100)
    let prog = [
        insn(1, 2, 0, 20),
        insn(1, 3, 0, 40),
        insn(6, 0, 0, 1),
        insn(2, 5, 5, 1),
        insn(2, 4, 4, 1),
        insn(5, 4, 2, 4),
        insn(4, 6, 7, 0x800),
        insn(3, 6, 7, 0x0c),
        insn(6, 0, 0, 1),
        insn(5, 4, 3, -6),
        insn(0x0c, 1, 5, 0),
        insn(7, 0, 0, 0),
    ];
    for (tier, baseline) in [(Tier::Tiered, true), (Tier::Jit, false)] {
        let opts = JitOptions { background: false, baseline, regions: false, ..JitOptions::default() };
        let (code, st) = run(tier, opts, &prog, &|_, mem| {
            assert!(mem.write_ram(RAM_BASE + 0x800, &insn(2, 5, 5, 100).to_le_bytes()));
        });
        assert_eq!(code, ExitCode::Exit(2020), "{tier:?}: {st:?}");
        assert_eq!(st.tbs_invalidated, 1, "{st:?}");
        // 40 rounds of A -> C -> A: they must have run chained for the test to mean anything.
        assert!(st.dispatches < 40, "{tier:?}: {st:?}");
    }
}

#[test]
fn a_store_into_the_running_tb_ends_it() {
    // 0x00: lw r3, 0x800(r7)   (r3 = `li r1, 2`)
    // 0x04: sw r3, 8(r7)       overwrites the next instruction of this same TB
    // 0x08: li r1, 1           (must run as `li r1, 2`)
    // 0x0c: ecall
    let prog = [insn(4, 3, 7, 0x800), insn(3, 3, 7, 8), insn(1, 1, 0, 1), insn(7, 0, 0, 0)];
    for tier in TIERS {
        let (code, st) = run(tier, JitOptions::default(), &prog, &|_, mem| {
            assert!(mem.write_ram(RAM_BASE + 0x800, &insn(1, 1, 0, 2).to_le_bytes()));
        });
        assert_eq!(code, ExitCode::Exit(2), "{tier:?}: {st:?}");
        assert!(st.exits.lookup >= 1, "the storing TB invalidated itself: {st:?}");
    }
}

#[test]
fn tlb_fast_path_serves_repeated_accesses() {
    // Data on another page than the code (a store to a code page would invalidate it).
    // r1 = 0; r2 = 500; loop: ld r3, 0x2100(r7); sd r3, 0x2108(r7); r1 += 1; bne r1, r2, loop; ecall
    let prog = [
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 500),
        insn(0x0b, 3, 7, 0x2100),
        insn(0x0a, 3, 7, 0x2108),
        insn(2, 1, 1, 1),
        insn(5, 1, 2, -3),
        insn(7, 0, 0, 0),
    ];
    let (code, st) = run(Tier::Jit, JitOptions::default(), &prog, &|_, _| {});
    assert_eq!(code, ExitCode::Exit(500));
    assert!(st.tlb_slow_path <= 8, "1000 accesses should hit the TLB: {st:?}");
    assert!(st.tlb_fills >= 2, "{st:?}");
}

/// A loop walking two arrays (load from one, store a running sum to the other) from
/// `src` and `dst`, `n` steps of `step` bytes: the loads and stores keep a page memo in
/// Cranelift code (`codegen::stride_sites`). Returns the exit code, the registers and RAM.
fn walk(tier: Tier, src: u64, dst: u64, n: u64, step: i16) -> (ExitCode, [u64; 8], Vec<u8>) {
    // r4 = 0; loop: ld r3, 0(r1); r4 += r3; sd r4, 0(r2); r1 += step; r2 += 8; r5 -= 1;
    // bne r5, r6, loop; r1 = r4; ecall.
    let prog = [
        insn(1, 4, 0, 0),
        insn(0x0b, 3, 1, 0),
        insn(0x0c, 4, 3, 0),
        insn(0x0a, 4, 2, 0),
        insn(2, 1, 1, step),
        insn(2, 2, 2, 8),
        insn(2, 5, 5, -1),
        insn(5, 5, 6, -6),
        insn(2, 1, 4, 0),
        insn(7, 0, 0, 0),
    ];
    let setup = |cpu: &mut MockCpu, _: &kite_memory::PhysMap| {
        (cpu.regs[1], cpu.regs[2], cpu.regs[5], cpu.regs[6]) = (src, dst, n, 0);
    };
    let (code, _, cpu, mem) = run_on(tier, JitOptions::default(), &prog, &setup);
    let mut regs = [0; 8];
    regs.copy_from_slice(&cpu.regs[..8]);
    (code, regs, ram_bytes(&mem))
}

#[test]
fn array_walks_that_remember_their_page_match_the_interpreter() {
    let ram_end = RAM_BASE + RAM_SIZE;
    let cases = [
        // Across two page boundaries, aligned and misaligned (an access that straddles
        // the boundary takes the slow path, then the next page is remembered).
        (RAM_BASE + 0x1ff8, RAM_BASE + 0x8000, 700),
        (RAM_BASE + 0x1ffc, RAM_BASE + 0x8004, 700),
        // From RAM into MMIO never: the whole walk on the device (tags with flag bits are
        // never remembered), and a walk that runs off the end of RAM (a fault mid-loop).
        (MMIO_BASE, RAM_BASE + 0x8000, 300),
        (ram_end - 0x100, RAM_BASE + 0x8000, 64),
        (RAM_BASE + 0x4000, ram_end - 0x100, 64),
        // Stores into the page that holds the loop (the slow path, which checks for code
        // there), then out of it.
        (RAM_BASE + 0x4000, RAM_BASE + 0x100, 128),
        (RAM_BASE + 0x4000, RAM_BASE + 0xf00, 64),
    ];
    let down = [
        // Downwards, misaligned, from the first page of RAM into the hole before it: the
        // last load straddles the two, so its last byte's page is the remembered one.
        (RAM_BASE + 0x3c, RAM_BASE + 0x8000, 12),
        (RAM_BASE + 0x2004, RAM_BASE + 0x8000, 40),
    ];
    for (src, dst, n, step) in
        cases.iter().map(|&(s, d, n)| (s, d, n, 8)).chain(down.iter().map(|&(s, d, n)| (s, d, n, -8)))
    {
        let want = walk(Tier::Interp, src, dst, n, step);
        for tier in [Tier::Jit, Tier::Tiered] {
            let got = walk(tier, src, dst, n, step);
            assert_eq!((got.0, got.1), (want.0, want.1), "{tier:?}: walk from {src:#x} to {dst:#x}");
            assert!(got.2 == want.2, "{tier:?}: RAM differs after the walk from {src:#x} to {dst:#x}");
        }
    }
}

/// Run `prog`, which never ends by itself, until another thread's exit request (after
/// 100 ms) stops it; it must stop within seconds.
fn run_until_exit_request(prog: &[u32], opts: JitOptions) -> crate::Stats {
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem, vm.clone(), opts).unwrap();
    let mut cpu = MockCpu::new(vm.clone());
    cpu.h.pc = RAM_BASE;
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        vm.request_exit(ExitCode::Exit(7));
    });
    let t0 = Instant::now();
    assert_eq!(e.run(&mut cpu), ExitCode::Exit(7));
    assert!(t0.elapsed() < Duration::from_secs(5));
    t.join().unwrap();
    e.stats()
}

#[test]
fn exit_request_stops_a_block_jumping_to_itself() {
    let prog = [insn(6, 0, 0, 0)];
    for tier in TIERS {
        let st = run_until_exit_request(&prog, JitOptions { tier, ..JitOptions::default() });
        assert!(st.insns > 1000, "{st:?}");
        if tier == Tier::Jit {
            assert_eq!(st.exits.exit_request, 1, "{st:?}");
        }
    }
}

#[test]
fn exit_request_stops_a_region_whose_forward_goto_skips_the_check() {
    // A: r1 += 1; j B        (a goto to a later pc: no exit-request check in a region)
    // B: r2 += 1; j A        (the back edge: checks)
    let prog = [insn(2, 1, 1, 1), insn(6, 0, 0, 2), insn(7, 0, 0, 0), insn(2, 2, 2, 1), insn(6, 0, 0, -4)];
    let opts = JitOptions { tier: Tier::Tiered, thresh: 10, background: false, ..JitOptions::default() };
    let st = run_until_exit_request(&prog, opts);
    assert!(st.regions > 0, "the loop must run as a region: {st:?}");
    assert!(st.insns > 100_000 && st.dispatches < 100, "{st:?}");
    assert_eq!(st.exits.exit_request, 1, "{st:?}");
}

#[test]
fn full_code_cache_flushes_and_keeps_running() {
    // 3000 single-instruction TBs (single-step) in a 64 KiB cache: several full flushes.
    let mut prog: Vec<u32> = (0..3000).map(|_| insn(2, 1, 1, 1)).collect();
    prog.push(insn(7, 0, 0, 0));
    let opts = JitOptions { single_step: true, code_cache_bytes: 64 * 1024, verify: false, ..JitOptions::default() };
    let (code, st) = run(Tier::Jit, opts, &prog, &|_, _| {});
    assert_eq!(code, ExitCode::Exit(3000));
    assert!(st.full_flushes >= 1, "{st:?}");
    assert_eq!(st.compile_fallbacks, 0);
}

#[test]
fn faults_reach_the_target() {
    // Jump into a hole: instruction access fault (cause 1) -> exit code 201.
    let prog = [insn(1, 5, 0, 0x5000), insn(2, 5, 5, 0), insn(8, 0, 5, 0)];
    for tier in TIERS {
        let (code, _) = run(tier, JitOptions::default(), &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(201), "{tier:?}");
    }
    // A load from a page-faulting address: cause 13 -> 213.
    let prog = [insn(0x0b, 3, 6, 0)];
    for tier in TIERS {
        let (code, _) = run(tier, JitOptions::default(), &prog, &|cpu, _| cpu.regs[6] = FAULT_VA);
        assert_eq!(code, ExitCode::Exit(213), "{tier:?}");
    }
}

#[test]
fn fetch_fault_on_the_second_page_is_not_cached() {
    // An instruction straddling into a page the guest maps on demand: the first fetch
    // faults, the "handler" maps the page, and the retry must run the instruction rather
    // than a cached copy of the fault. Then ecall with r1 = 5.
    let at = RAM_BASE + 0x1000 - 2;
    for tier in TIERS {
        let (mem, _dev) = machine();
        let mut bytes = Vec::new();
        for w in [insn(1, 1, 0, 5), insn(7, 0, 0, 0)] {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        assert!(mem.write_ram(at, &bytes));
        let vm = watched_vm();
        let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier, ..JitOptions::default() }).unwrap();
        let mut cpu = MockCpu::new(vm);
        cpu.h.pc = at;
        cpu.unmapped = Some(RAM_BASE + 0x1000);
        assert_eq!(e.run(&mut cpu), ExitCode::Exit(5), "{tier:?}: {:x?}", cpu.traps);
        assert_eq!(cpu.traps[0].0, 12, "{tier:?}: the first fetch faulted: {:x?}", cpu.traps);
    }
}

#[test]
fn translation_is_timed_only_when_asked() {
    let prog = [insn(1, 1, 0, 9), insn(7, 0, 0, 0)];
    for timing in [false, true] {
        let (_, st) = run(Tier::Tiered, JitOptions { timing, ..JitOptions::default() }, &prog, &|_, _| {});
        assert_eq!(st.tbs_translated, 1);
        assert_eq!(st.translate_ns_total > 0 && st.baseline_ns_total > 0, timing, "{st:?}");
    }
}

#[test]
fn wfi_sleeps_until_an_interrupt() {
    // wfi; ecall (exit code r1 = 9).
    let prog = [insn(1, 1, 0, 9), insn(9, 0, 0, 0), insn(7, 0, 0, 0)];
    for tier in TIERS {
        let (mem, _dev) = machine();
        load_program(&mem, RAM_BASE, &prog);
        let vm = watched_vm();
        let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier, ..JitOptions::default() }).unwrap();
        let mut cpu = MockCpu::new(vm.clone());
        cpu.h.pc = RAM_BASE;
        let irq = cpu.irq.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            irq.store(true, std::sync::atomic::Ordering::SeqCst);
            vm.kick_all();
        });
        assert_eq!(e.run(&mut cpu), ExitCode::Exit(9));
        t.join().unwrap();
        assert_eq!(cpu.regs[15], 1, "the interrupt was taken");
        assert_eq!(e.stats().exits.halt, 1);
        // The sleep is counted as idle time (the interrupt came ~50 ms in).
        let idle = Duration::from_nanos(e.stats().idle_ns);
        assert!(idle >= Duration::from_millis(20) && idle < Duration::from_secs(30), "{idle:?}");
    }
}

/// Not a correctness test: prints compile time per TB and execution speed
/// (`cargo test -p kite-jit -- --ignored --nocapture measure`).
#[test]
#[ignore]
fn measure() {
    let opts = JitOptions { verify: false, timing: true, ..JitOptions::default() };
    // Compile-heavy: 3000 single-instruction TBs.
    let mut prog: Vec<u32> = (0..3000).map(|i| insn(2, 1 + (i % 4), 1, 1)).collect();
    prog.push(insn(7, 0, 0, 0));
    let (_, st) = run(Tier::Jit, JitOptions { single_step: true, ..opts.clone() }, &prog, &|_, _| {});
    println!("single-insn TBs: {} compiled, {:.1} us/TB", st.tbs_compiled, st.avg_compile_us());
    // 8-instruction loop body with memory, run 2M times.
    let prog = [
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 0x7fff),
        insn(2, 2, 2, 0x7fff),
        insn(0x0b, 3, 7, 0x2100),
        insn(0x0c, 3, 1, 0),
        insn(0x0a, 3, 7, 0x2108),
        insn(2, 4, 4, 3),
        insn(2, 1, 1, 1),
        insn(5, 1, 2, -5),
        insn(7, 0, 0, 0),
    ];
    for tier in TIERS {
        let t0 = Instant::now();
        let (_, st) = run(tier, opts.clone(), &prog, &|cpu, _| cpu.regs[2] = 0);
        let dt = t0.elapsed().as_secs_f64();
        let blocks = 0xfffe_u64 as f64;
        println!(
            "{tier:?}: {} insns in {dt:.3} s = {:.1} M insns/s, {:.2} M blocks/s, {} TBs at {:.1} us/TB",
            st.insns,
            st.insns as f64 / dt / 1e6,
            blocks / dt / 1e6,
            st.tbs_compiled,
            st.avg_compile_us()
        );
    }
}

#[test]
fn a_yield_hands_over_to_the_other_vcpu_at_once() {
    // vCPU A counts loop iterations while spinning (with a yield in the loop) on a flag
    // that vCPU B sets; A exits with its count. Honouring the yield, B runs right after
    // A's first iteration; without it A would spin through a whole 1 ms slice first.
    a_spins_briefly_until_b_runs(&spin_on_b(None, Some(insn(0x0d, 0, 0, 0))), |_| machine().0);
}

/// `prog` loaded at `RAM_BASE` of `mem`, and an engine on `tier` with two vCPUs: A at
/// `RAM_BASE` and B at `RAM_BASE + 0x40`, both with r7 = `RAM_BASE` and r8 = `MMIO_BASE`.
fn two_vcpus(
    prog: &[u32],
    tier: Tier,
    mem: std::sync::Arc<kite_memory::PhysMap>,
    vm: &std::sync::Arc<kite_core::VmControl>,
) -> (Engine<MockCpu>, Vec<Box<MockCpu>>) {
    load_program(&mem, RAM_BASE, prog);
    let e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier, ..JitOptions::default() }).unwrap();
    let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
    for (c, pc) in cpus.iter_mut().zip([RAM_BASE, RAM_BASE + 0x40]) {
        (c.h.pc, c.regs[7], c.regs[8]) = (pc, RAM_BASE, MMIO_BASE);
    }
    (e, cpus)
}

/// A frontend may read code before a block's pc in the same page, both when the block is
/// first translated and when it is translated again from guest RAM for its loop region
/// and its Cranelift compile: the block must come out the same each time, and get promoted.
#[test]
fn a_frontend_reads_code_before_the_block_on_every_translation() {
    // 0: li r4, 300   a: r6 += 1; r5 = the word at 0; j b   b: r5 = the word at 0;
    // bne r6, r4, a   exit with r5. Both loop blocks read before their own pc, so whichever
    // heads the region, its member reads back too, and both are compiled again.
    let head = insn(1, 4, 0, 300);
    let prog = [
        head,
        insn(2, 6, 6, 1),
        insn(0x0f, 5, 0, 8),
        insn(6, 0, 0, 1),
        insn(0x0f, 5, 0, 16),
        insn(5, 6, 4, -4),
        insn(2, 1, 5, 0),
        insn(7, 0, 0, 0),
    ];
    for regions in [false, true] {
        let opts = JitOptions { background: false, thresh: 4, regions, ..JitOptions::default() };
        let (code, s) = run(Tier::Tiered, opts, &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(head as i32), "regions {regions}");
        if regions {
            assert!(s.regions == 1 && s.region_blocks == 1, "a region of both loop blocks: {s:?}");
        } else {
            assert!(s.tbs_promoted >= 2, "both loop blocks recompiled: {s:?}");
        }
    }
}

/// A yield with no other vCPU runnable is counted, and the vCPU goes on without a switch
/// out and back in.
#[test]
fn a_yield_with_nobody_else_to_run_keeps_the_vcpu_in() {
    // A: count in r6 to 50 with a yield in the loop, exit with the count. B: `wfi` with
    // no interrupt ever coming, so from its first turn on only A is runnable.
    let prog = layout(&[
        (
            0,
            &[
                insn(1, 4, 0, 50),
                insn(2, 6, 6, 1),
                insn(0x0d, 0, 0, 0),
                insn(5, 6, 4, -2),
                insn(2, 1, 6, 0),
                insn(7, 0, 0, 0),
            ],
        ),
        (16, &[insn(9, 0, 0, 0), insn(6, 0, 0, -1)]),
    ]);
    for tier in TIERS {
        let vm = watched_vm();
        let (mut e, mut cpus) = two_vcpus(&prog, tier, machine().0, &vm);
        match e.run_all(&mut cpus) {
            ExitCode::Exit(n) => assert_eq!(n, 50, "{tier:?}"),
            other => panic!("{tier:?}: {other:?}"),
        }
        let s = e.stats();
        assert!(s.yields >= 50, "{tier:?}: {s:?}");
        // A in, B in (it halts), A in; slice ends may add a few, never one per yield.
        assert!(s.vcpu_switches < 10, "{tier:?}: {} switches", s.vcpu_switches);
    }
}

/// vCPU A (at `RAM_BASE`): `before`, then count in r6 until the flag at r7 + 0x100 is 1, with
/// `inside` in the loop, and exit with the count. vCPU B (at + 0x40): set the flag, `wfi`.
fn spin_on_b(before: Option<u32>, inside: Option<u32>) -> Vec<u32> {
    let mut a = vec![insn(1, 2, 0, 1)];
    a.extend(before);
    let top = a.len() as i16;
    a.push(insn(2, 6, 6, 1));
    a.extend(inside);
    a.push(insn(0x0b, 3, 7, 0x100));
    let back = top - a.len() as i16;
    a.extend([insn(5, 3, 2, back), insn(2, 1, 6, 0), insn(7, 0, 0, 0)]);
    layout(&[(0, &a), (16, &[insn(1, 2, 0, 1), insn(0x0a, 2, 7, 0x100), insn(9, 0, 0, 0)])])
}

/// Run `prog` on two vCPUs in turns, A at `RAM_BASE` and B at `RAM_BASE + 0x40` (r7 =
/// `RAM_BASE`, r8 = `MMIO_BASE`), on every tier over the memory map `map` makes for the VM,
/// and check that A exits with a count of 1 to 3: the times it spun before B ran.
fn a_spins_briefly_until_b_runs(
    prog: &[u32],
    map: impl Fn(&std::sync::Arc<kite_core::VmControl>) -> std::sync::Arc<kite_memory::PhysMap>,
) {
    for tier in TIERS {
        let vm = watched_vm();
        let (mut e, mut cpus) = two_vcpus(prog, tier, map(&vm), &vm);
        match e.run_all(&mut cpus) {
            ExitCode::Exit(n) => assert!((1..=3).contains(&n), "{tier:?}: A spun {n} times before B ran"),
            other => panic!("{tier:?}: {other:?}"),
        }
        let s = e.stats();
        assert!(s.vcpu_switches >= 2, "{tier:?}: A, then B, then A: {s:?}");
    }
}

/// Chains linked while vCPU A runs a loop through two pages (yielding to B, which only
/// yields back, once per iteration) with A and B in translation regimes `a` and `b`.
fn links_made_while_taking_turns(a: Option<u64>, b: Option<u64>) -> u64 {
    let prog = layout(&[
        (0, &[insn(6, 0, 0, 0x400)]),
        (16, &[insn(0x0d, 0, 0, 0), insn(6, 0, 0, -1)]),
        (
            0x1000 / 4,
            &[insn(2, 6, 6, 1), insn(0x0d, 0, 0, 0), insn(5, 6, 14, -(0x1008 / 4)), insn(2, 1, 6, 0), insn(7, 0, 0, 0)],
        ),
    ]);
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, &prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions::default()).unwrap();
    let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
    (cpus[0].h.pc, cpus[0].regs[14], cpus[0].regime) = (RAM_BASE, 20, a);
    (cpus[1].h.pc, cpus[1].regime) = (RAM_BASE + 0x40, b);
    assert_eq!(e.run_all(&mut cpus), ExitCode::Exit(20));
    e.stats().chains_linked
}

#[test]
fn cross_page_links_survive_a_switch_to_a_vcpu_with_the_same_mappings() {
    let same = links_made_while_taking_turns(Some(7), Some(7));
    let other = links_made_while_taking_turns(Some(7), Some(8));
    let unknown = links_made_while_taking_turns(None, None);
    assert!(same < 8, "links kept: {same}");
    assert!(other > 30 && unknown > 30, "links cut at every switch: {other}, {unknown}");
}

#[test]
fn a_vcpu_switched_out_while_its_tlb_maps_a_new_code_page_invalidates_on_store() {
    // A maps page P for writing (a data store), yields; B first runs code on P; A then
    // rewrites B's first instruction (r1 = 5 -> r1 = 9). A's old write entry must have
    // learnt that P holds code, or the store would miss the invalidation and B would
    // exit with 5.
    let p = RAM_BASE + 0x2000;
    let prog = layout(&[
        (
            0,
            &[
                insn(0x0a, 11, 9, 0x800),
                insn(0x0d, 0, 0, 0),
                insn(0x0a, 12, 9, 0),
                insn(0x0d, 0, 0, 0),
                insn(9, 0, 0, 0),
                insn(6, 0, 0, -1),
            ],
        ),
        (
            0x2000 / 4,
            &[
                insn(1, 1, 0, 5),
                insn(0x0d, 0, 0, 0),
                insn(2, 6, 6, 1),
                insn(5, 1, 13, 2),
                insn(7, 0, 0, 0),
                insn(5, 6, 14, -5),
                insn(7, 0, 0, 0),
            ],
        ),
    ]);
    let new = insn(1, 1, 0, 9) as u64 | (insn(0x0d, 0, 0, 0) as u64) << 32;
    for tier in TIERS {
        let (mem, _dev) = machine();
        load_program(&mem, RAM_BASE, &prog);
        let vm = watched_vm();
        let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier, ..JitOptions::default() }).unwrap();
        let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
        cpus[0].h.pc = RAM_BASE;
        cpus[1].h.pc = p;
        for c in cpus.iter_mut() {
            (c.regs[9], c.regs[11], c.regs[12], c.regs[13], c.regs[14]) = (p, 0, new, 9, 10);
        }
        assert_eq!(e.run_all(&mut cpus), ExitCode::Exit(9), "{tier:?}");
    }
}

/// An MMIO device whose every write raises an interrupt: kicks the VM, as the CLINT's
/// MSIP register does for an IPI.
#[derive(Debug)]
struct KickDev(std::sync::Arc<kite_core::VmControl>);

impl kite_core::MmioDevice for KickDev {
    fn read(&self, _offset: u64, _size: u32) -> u64 {
        0
    }
    fn write(&self, _offset: u64, _size: u32, _value: u64) {
        self.0.kick_all();
    }
}

#[test]
fn an_interrupt_raised_under_round_robin_hands_over_at_once() {
    // vCPU A "sends an IPI" (a write to the kicking device), then spins, counting, without
    // a yield until vCPU B has set a flag; B sets it and halts. Handing over at the kick,
    // A spins once or twice; waiting for the end of the time slice, thousands of times.
    a_spins_briefly_until_b_runs(&spin_on_b(Some(insn(0x03, 2, 8, 0)), None), |vm| {
        let mut m = kite_memory::PhysMap::new();
        m.add_ram("ram", RAM_BASE, RAM_SIZE).unwrap();
        m.add_mmio("kick", MMIO_BASE, 0x1000, std::sync::Arc::new(KickDev(vm.clone()))).unwrap();
        std::sync::Arc::new(m)
    });
}

/// How many time-slice ends (preempt flag plus exit request, each given only after the
/// last was seen) a vCPU spinning in a self loop takes before `run_loop` switches it out.
/// Before each, the kicker thread also raises an "interrupt" (`kick_all`): one from
/// another thread must not hand over early (it could split a firmware critical section).
fn slice_ends_until_switched_out(masked: bool) -> u32 {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    // r2 += 1; goto self.
    let prog = [insn(2, 2, 2, 1), insn(6, 0, 0, -1)];
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, &prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions::default()).unwrap();
    let mut cpu = MockCpu::new(vm.clone());
    cpu.h.pc = RAM_BASE;
    cpu.masked = masked;
    let preempt = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let word = &cpu.h.exit_request as *const AtomicU32 as usize;
    let cpu_ptr: *mut MockCpu = &mut *cpu;
    std::thread::scope(|s| {
        let kicker = s.spawn(|| {
            // Counts the slice ends the run loop took (cleared the flag), not the ones
            // given: the last one given may find `run_loop` already returning.
            let mut taken = 0;
            // SAFETY: the CPU outlives this scoped thread; the word is atomic.
            let word = unsafe { &*(word as *const AtomicU32) };
            while !done.load(Ordering::Acquire) {
                vm.kick_all();
                preempt.store(true, Ordering::Release);
                word.store(1, Ordering::Release);
                // Give the next one only once both were seen.
                while (preempt.load(Ordering::Acquire) || word.load(Ordering::Acquire) != 0)
                    && !done.load(Ordering::Acquire)
                {
                    std::thread::yield_now();
                }
                if !preempt.load(Ordering::Acquire) {
                    taken += 1;
                }
            }
            taken
        });
        let stop = e.run_loop(cpu_ptr, Some(&preempt));
        done.store(true, Ordering::Release);
        assert!(matches!(stop, crate::engine::Stop::Preempted));
        kicker.join().unwrap()
    })
}

#[test]
fn a_vcpu_in_firmware_runs_through_a_bounded_number_of_slice_ends() {
    // OpenSBI 1.1 marks a hart START_PENDING before it stores the start address; a
    // switch in between let the other hart boot from a stale address.
    assert_eq!(slice_ends_until_switched_out(false), 1);
    assert_eq!(slice_ends_until_switched_out(true), crate::engine::FIRMWARE_SLICES + 1);
}

#[test]
fn vcpus_take_turns_and_halted_ones_are_skipped() {
    // vCPU A spins (a chained loop) until vCPU B sets a flag, so it only finishes if the
    // scheduler preempts it; B then halts in `wfi` for good: were it resumed without a
    // wake-up it would exit with 7 instead of A's 42.
    let prog = layout(&[
        (0, &[insn(1, 2, 0, 1), insn(0x0b, 3, 7, 0x100), insn(5, 3, 2, -1), insn(1, 1, 0, 42), insn(7, 0, 0, 0)]),
        (
            16,
            &[
                insn(1, 2, 0, 1),
                insn(1, 4, 0, 0),
                insn(1, 5, 0, 2000),
                insn(2, 4, 4, 1),
                insn(5, 4, 5, -1),
                insn(0x0a, 2, 7, 0x100),
                insn(9, 0, 0, 0),
                insn(1, 1, 0, 7),
                insn(7, 0, 0, 0),
            ],
        ),
    ]);
    for tier in TIERS {
        let vm = watched_vm();
        let (mut e, mut cpus) = two_vcpus(&prog, tier, machine().0, &vm);
        let t0 = Instant::now();
        assert_eq!(e.run_all(&mut cpus), ExitCode::Exit(42), "{tier:?}");
        assert!(t0.elapsed() < Duration::from_secs(10));
        assert_eq!(cpus[1].regs[4], 2000, "B ran to its wfi");
        // B stays halted after its wfi. A slice may also end between B's flag store
        // (which ends its TB: it hits the code page) and the wfi, leaving B before the
        // wfi: both are fine; resuming B without a wake-up would have exited with 7.
        let b_pc = cpus[1].h.pc;
        assert!(b_pc == RAM_BASE + 22 * 4 || b_pc == RAM_BASE + 23 * 4, "{tier:?}: B at {b_pc:#x}");
        let st = e.stats();
        assert!(st.exits.halt >= 1, "{st:?}");
        assert!(st.insns > 2 * 2000, "both vCPUs' instructions counted: {st:?}");
    }
}

#[test]
fn all_halted_vcpus_sleep_until_an_interrupt() {
    // Both vCPUs: wfi; then exit with their r1 (A: 5, B: 6). Only B gets an interrupt.
    let prog = layout(&[
        (0, &[insn(1, 1, 0, 5), insn(9, 0, 0, 0), insn(7, 0, 0, 0)]),
        (16, &[insn(1, 1, 0, 6), insn(9, 0, 0, 0), insn(7, 0, 0, 0)]),
    ]);
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, &prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem, vm.clone(), JitOptions::default()).unwrap();
    let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
    cpus[0].h.pc = RAM_BASE;
    cpus[1].h.pc = RAM_BASE + 0x40;
    let irq = cpus[1].irq.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        irq.store(true, std::sync::atomic::Ordering::SeqCst);
        vm.kick_all();
    });
    let t0 = Instant::now();
    assert_eq!(e.run_all(&mut cpus), ExitCode::Exit(6));
    assert!(t0.elapsed() >= Duration::from_millis(45));
    t.join().unwrap();
    assert_eq!((cpus[0].regs[15], cpus[1].regs[15]), (0, 1), "only B took an interrupt");
    let idle = Duration::from_nanos(e.stats().idle_ns);
    assert!(idle >= Duration::from_millis(20) && idle <= t0.elapsed(), "{idle:?}");
}

#[test]
fn indirect_jumps_hit_the_inline_jump_cache() {
    // 0x00: li r1, 0; li r2, 1000; r3 = r7 + 0x10; jr r3
    // 0x10: addi r1, r1, 1; bne r1, r2, +2 (-> 0x1c)
    // 0x18: ecall (exit code r1)
    // 0x1c: jr r3 (-> 0x10)
    let prog = [
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 1000),
        insn(2, 3, 7, 0x10),
        insn(8, 0, 3, 0),
        insn(2, 1, 1, 1),
        insn(5, 1, 2, 2),
        insn(7, 0, 0, 0),
        insn(8, 0, 3, 0),
    ];
    let t = 100;
    for (tier, baseline) in [(Tier::Interp, false), (Tier::Jit, false), (Tier::Tiered, false), (Tier::Tiered, true)] {
        // Without regions: the two blocks would become one function (see the region tests).
        let opts =
            JitOptions { background: false, thresh: t as u32, baseline, regions: false, ..JitOptions::default() };
        let (code, st) = run(tier, opts, &prog, &|_, _| {});
        assert_eq!(code, ExitCode::Exit(1000), "{tier:?}");
        assert_eq!(st.insns, 4 + 2 * 1000 + 999, "{tier:?}: {st:?}");
        match (tier, baseline) {
            // After the first round trip the indirect exit tail-calls the cached TB.
            (Tier::Jit, _) => assert!(st.exits.indirect < 5 && st.dispatches < 20, "{st:?}"),
            (Tier::Tiered, false) => {
                assert_eq!(st.tbs_promoted, 2, "{st:?}");
                assert!(st.exits.indirect <= t + 5, "{st:?}");
            }
            // Baseline code probes the jump cache inline too.
            (Tier::Tiered, true) => {
                assert_eq!(st.tbs_promoted, 2, "{st:?}");
                assert!(st.exits.indirect < 10 && st.dispatches < 20, "{st:?}");
            }
            _ => assert!(st.exits.indirect >= 999, "{st:?}"),
        }
    }
}

#[test]
fn single_step_never_chains_indirect_jumps() {
    let prog = [insn(1, 1, 0, 0), insn(1, 2, 0, 50), insn(2, 3, 7, 0x10), insn(8, 0, 3, 0)];
    let mut prog = prog.to_vec();
    prog.extend([insn(2, 1, 1, 1), insn(5, 1, 2, 2), insn(7, 0, 0, 0), insn(8, 0, 3, 0)]);
    let opts = JitOptions { single_step: true, ..JitOptions::default() };
    let (code, st) = run(Tier::Jit, opts, &prog, &|_, _| {});
    assert_eq!(code, ExitCode::Exit(50));
    // Every instruction is its own TB entered from the dispatcher.
    assert_eq!(st.dispatches, st.insns + 1, "{st:?}");
}

#[test]
fn a_loop_block_leaves_precise_state_at_a_fault_and_an_exit_request() {
    // r3 = RAM end - 0x400, r2 = 1 << 40: loop: r1 += 1; store r1 -> [r3]; r3 += 8;
    // r4 = load [r3 - 8]; r4 += r1 (register-register add); bne r1, r2, loop.
    // The store faults at the end of RAM: every register must hold its value from the
    // faulting iteration, in every tier (the loop keeps them in host registers).
    let prog = [
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 0x4000),
        insn(0x0a, 1, 3, 0),
        insn(2, 3, 3, 8),
        insn(0x0b, 4, 3, -8),
        insn(0x0c, 4, 1, 0),
        insn(2, 1, 1, 1),
        insn(5, 1, 2, -5),
        insn(7, 0, 0, 0),
    ];
    let mut results = Vec::new();
    for tier in TIERS {
        let (mem, _dev) = machine();
        load_program(&mem, RAM_BASE, &prog);
        let vm = watched_vm();
        let opts = JitOptions { tier, background: false, ..JitOptions::default() };
        let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), opts).unwrap();
        let mut cpu = MockCpu::new(vm);
        cpu.h.pc = RAM_BASE;
        cpu.regs[3] = RAM_BASE + RAM_SIZE - 0x400;
        let code = e.run(&mut cpu);
        let st = e.stats();
        assert_eq!(code, ExitCode::Exit(200 + 7), "{tier:?}: store access fault: {st:?}");
        results.push((cpu.regs, cpu.traps.clone(), cpu.h.pc, st.insns));
    }
    assert_eq!(results[0].0[1], 0x400 / 8, "iterations before the fault");
    assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:#x?}");

    // An exit request stops the loop at an iteration boundary with its state stored.
    let (mem, _dev) = machine();
    let spin = [insn(2, 1, 1, 1), insn(0x0c, 4, 1, 0), insn(6, 0, 0, -2)];
    load_program(&mem, RAM_BASE, &spin);
    let vm = watched_vm();
    let mut e =
        Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier: Tier::Jit, ..JitOptions::default() }).unwrap();
    let mut cpu = MockCpu::new(vm.clone());
    cpu.h.pc = RAM_BASE;
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        vm.request_exit(ExitCode::Exit(9));
    });
    assert_eq!(e.run(&mut cpu), ExitCode::Exit(9));
    t.join().unwrap();
    let n = e.stats().insns;
    assert!(n > 1000 && n % 3 == 0, "whole iterations only: {n}");
    assert_eq!(cpu.regs[1], n / 3, "r1 counts the iterations");
    assert_eq!(cpu.regs[4], (1..=n / 3).sum::<u64>(), "r4 sums them");
    assert_eq!(cpu.h.pc, RAM_BASE);
}

#[test]
fn stats_of_several_engines_add_up_field_by_field() {
    // Every field distinct, so a field merged into another's sum shows.
    let x = Stats {
        tbs_compiled: 1,
        tbs_interp: 2,
        tbs_fast_interp: 3,
        tbs_promoted: 4,
        compile_fallbacks: 5,
        compile_ns_total: 6,
        tbs_baseline: 27,
        baseline_ns_total: 28,
        regions: 29,
        region_blocks: 30,
        translate_ns_total: 7,
        tbs_translated: 8,
        itlb_hits: 9,
        itlb_misses: 10,
        chains_linked: 11,
        dispatches: 12,
        jump_cache_hits: 13,
        jump_cache_misses: 14,
        tlb_slow_path: 15,
        tlb_fills: 16,
        tlb_grows: 34,
        tbs_invalidated: 17,
        full_flushes: 18,
        idle_ns: 31,
        yields: 32,
        vcpu_switches: 33,
        exits: crate::ExitStats {
            goto_unlinked: 19,
            goto_nochain: 20,
            indirect: 21,
            exception: 22,
            halt: 23,
            exit_request: 24,
            lookup: 25,
        },
        insns: 26,
    };
    let mut sum = Stats::default();
    sum.merge(&x);
    assert_eq!(sum, x);
    sum.merge(&x);
    assert_eq!((sum.tbs_fast_interp, sum.exits.lookup, sum.insns), (6, 50, 52));
}

#[test]
fn a_halt_loop_woken_by_a_masked_interrupt_backs_off() {
    // loop: halt; j loop, with an interrupt pending but masked: every halt ends at once
    // (as wfi must), and firmware waiting that way (OpenSBI's HSM wait) would spin a host
    // core flat out. After a few such wake-ups each halt sleeps a little: in 300 ms there
    // are a few hundred halts, not millions.
    let prog = [insn(9, 0, 0, 0), insn(6, 0, 0, -1)];
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, &prog);
    let vm = watched_vm();
    let mut e =
        Engine::<MockCpu>::new(mem, vm.clone(), JitOptions { tier: Tier::Jit, ..JitOptions::default() }).unwrap();
    let mut cpu = MockCpu::new(vm.clone());
    cpu.h.pc = RAM_BASE;
    cpu.masked = true;
    cpu.irq.store(true, std::sync::atomic::Ordering::SeqCst);
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        vm.request_exit(ExitCode::Exit(4));
    });
    assert_eq!(e.run(&mut cpu), ExitCode::Exit(4));
    t.join().unwrap();
    let halts = e.stats().exits.halt;
    assert!((64..20_000).contains(&halts), "{halts} halts in 300 ms");
}

/// A random program of `nblocks` blocks that branch to each other at random (loops
/// through several blocks, forward and backward), each ending with a countdown in r13 so
/// every run ends at the ecall after the last block. Registers: r7 = RAM base (memory
/// operands), r13 = the countdown (set by the caller), r14 = 0, r15 = interrupts taken
/// (the mock's interrupt handler counts there).
fn random_looping_program(rng: &mut Rng, nblocks: usize) -> Vec<u32> {
    let mut blocks: Vec<Vec<u32>> = Vec::new();
    let mut data_regs = vec![1u32, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12];
    data_regs.truncate(4 + rng.below(8) as usize);
    for _ in 0..nblocks {
        let mut b = Vec::new();
        for _ in 0..1 + rng.below(6) {
            let rd = data_regs[rng.below(data_regs.len() as u64) as usize];
            let rs = data_regs[rng.below(data_regs.len() as u64) as usize];
            let off = (rng.below(32) * 8) as i16;
            b.push(match rng.below(7) {
                0 => insn(1, rd, 0, rng.next_u64() as i16),
                1 | 2 => insn(2, rd, rs, rng.next_u64() as i16),
                3 => insn(0x0c, rd, rs, 0),
                4 => insn(if rng.below(2) == 0 { 0x03 } else { 0x0a }, rd, 7, off),
                5 => insn(if rng.below(2) == 0 { 0x04 } else { 0x0b }, rd, 7, off),
                _ => insn(0x0e, rd, 0, rng.next_u64() as i16),
            });
        }
        blocks.push(b);
    }
    link_blocks(&blocks, |_, starts| starts[rng.below(nblocks as u64) as usize])
}

/// `blocks` one after another, each with a three-instruction tail: count r13 down, branch
/// to the block `next(k, starts)` returns (an index into the program) while it is not 0
/// (r14), else jump to the final ecall.
fn link_blocks(blocks: &[Vec<u32>], mut next: impl FnMut(usize, &[usize]) -> usize) -> Vec<u32> {
    let mut starts = Vec::new();
    let mut at = 0usize;
    for b in blocks {
        starts.push(at);
        at += b.len() + 3;
    }
    let exit = at;
    let mut prog = Vec::new();
    for (k, b) in blocks.iter().enumerate() {
        prog.extend_from_slice(b);
        let target = next(k, &starts);
        prog.push(insn(2, 13, 13, -1));
        let here = prog.len() as i64;
        prog.push(insn(5, 13, 14, (target as i64 - here) as i16));
        prog.push(insn(6, 0, 0, (exit as i64 - prog.len() as i64) as i16));
    }
    prog.push(insn(7, 0, 0, 0));
    prog
}

/// A random program's run ended as the reference run did: exit, registers, RAM.
fn same_end(got: (ExitCode, &[u64; 16], &[u8]), want: (ExitCode, &[u64; 16], &[u8]), what: &str) {
    assert_eq!(got.0, want.0, "exit: {what}");
    assert_eq!(got.1, want.1, "registers: {what}");
    assert!(got.2 == want.2, "RAM: {what}");
}

/// Run `prog` to its ecall, with an interrupt (and exit request) every `irq_every` (if
/// any); the exit, the registers (r15, the interrupt count, zeroed), the first 512 bytes of
/// RAM and the stats.
fn run_program(
    opts: JitOptions,
    prog: &[u32],
    count: u64,
    irq_every: Option<Duration>,
) -> (ExitCode, [u64; 16], Vec<u8>, Stats) {
    let (mem, _dev) = machine();
    load_program(&mem, RAM_BASE, prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), opts).unwrap();
    let mut cpu = MockCpu::new(vm.clone());
    cpu.h.pc = RAM_BASE;
    cpu.regs[7] = RAM_BASE + 0x800;
    cpu.regs[13] = count;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kicker = irq_every.map(|every| {
        let (irq, vm, stop) = (cpu.irq.clone(), vm.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(every);
                irq.store(true, std::sync::atomic::Ordering::SeqCst);
                vm.kick_all();
            }
        })
    });
    let code = e.run(&mut cpu);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    if let Some(k) = kicker {
        k.join().unwrap();
    }
    let mut ram = vec![0u8; 512];
    assert!(mem.read_ram(RAM_BASE + 0x800, &mut ram));
    let mut regs = cpu.regs;
    regs[15] = 0;
    (code, regs, ram, e.stats())
}

#[test]
fn random_loops_through_several_blocks_match_the_interpreter() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut regions = 0;
    let mut exit_requests = 0;
    for round in 0..300 {
        let nblocks = 2 + rng.below(7) as usize;
        let prog = random_looping_program(&mut rng, nblocks);
        let count = 50 + rng.below(400) + if round % 4 == 0 { 20_000 } else { 0 };
        let reference = run_program(JitOptions { tier: Tier::Interp, ..JitOptions::default() }, &prog, count, None);
        // Tiny thresholds: blocks reach Cranelift (and form regions) within a few runs. Every
        // fourth program runs long, with interrupts arriving while it loops.
        let irq = (round % 4 == 0).then_some(Duration::from_micros(50));
        for (thresh, background) in [(1, false), (3, false), (3, true)] {
            let opts = JitOptions { background, thresh, ..JitOptions::default() };
            let got = run_program(opts, &prog, count, irq);
            let what = format!("thresh {thresh}, background {background}, count {count}, program {prog:08x?}");
            same_end((got.0, &got.1, &got.2), (reference.0, &reference.1, &reference.2), &what);
            if irq.is_none() {
                assert_eq!(got.3.insns, reference.3.insns, "instruction count: {what}");
            }
            regions += got.3.regions;
            exit_requests += got.3.exits.exit_request;
        }
    }
    assert!(regions > 100, "regions were formed ({regions})");
    assert!(exit_requests > 20, "interrupts arrived while blocks ran ({exit_requests})");
}

/// A random program of `nblocks` blocks like [`random_looping_program`]'s, whose memory
/// operands walk: base registers r7 and r8 step by a few bytes in some blocks, and every
/// access has its own offset (misaligned ones too) and size, some of them must be
/// naturally aligned. Runs of accesses off one base form groups (`memgroup`) and, in
/// loops, accesses through a stepped base remember their page (`codegen::stride_sites`);
/// the bases start where those shortcuts must give way: near a page's end, at the end of
/// RAM, on MMIO, short of a faulting page.
fn random_walking_program(rng: &mut Rng, nblocks: usize) -> Vec<u32> {
    let data = [1u32, 2, 3, 4, 5, 6];
    let mut blocks: Vec<Vec<u32>> = Vec::new();
    for _ in 0..nblocks {
        let mut b = Vec::new();
        let base = rng.pick(&[7u32, 8]);
        for _ in 0..2 + rng.below(8) {
            let rd = rng.pick(&data);
            // A frame's worth of offsets, a few of them misaligned (not those of the
            // accesses that must be aligned: those become misaligned as their base walks,
            // after their block was compiled).
            let off = (rng.below(48) as i16 - 16) * 8;
            let odd = if rng.chance(15) { rng.below(8) as i16 } else { 0 };
            let base = if rng.chance(85) { base } else { 15 - base };
            b.push(match rng.below(14) {
                0 | 13 => insn(2, base, base, rng.pick(&[1i16, 2, 4, 8, 16, -4, -8])),
                1 => insn(2, rd, rng.pick(&data), rng.next_u64() as i16),
                2 | 3 => insn(rng.pick(&[0x03, 0x0a]), rd, base, off + odd),
                4 | 5 => insn(rng.pick(&[0x04, 0x0b]), rd, base, off + odd),
                6 => insn(rng.pick(&[0x10, 0x11]), rd, base, off + odd),
                7 => insn(rng.pick(&[0x12, 0x13]), rd, base, off + odd),
                8 | 9 => insn(rng.pick(&[0x14, 0x15]), rd, base, off),
                _ => insn(0x0c, rd, rng.pick(&data), 0),
            });
        }
        blocks.push(b);
    }
    // Mostly back to itself: loops that walk.
    link_blocks(
        &blocks,
        |k, starts| if rng.chance(60) { starts[k] } else { starts[rng.below(nblocks as u64) as usize] },
    )
}

/// Run `prog` (code at RAM_BASE) from scratch with bases r7, r8 and countdown `count`:
/// the exit, the registers, all of RAM and the device's log of accesses.
fn run_walk(
    opts: JitOptions,
    prog: &[u32],
    bases: (u64, u64),
    count: u64,
    flags: u32,
) -> (ExitCode, [u64; 16], Vec<u8>, String, Stats) {
    let (mem, dev) = machine();
    load_program(&mem, RAM_BASE, prog);
    let vm = watched_vm();
    let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), opts).unwrap();
    let mut cpu = MockCpu::new(vm);
    cpu.h.pc = RAM_BASE;
    cpu.h.flags = flags;
    (cpu.regs[7], cpu.regs[8], cpu.regs[13]) = (bases.0, bases.1, count);
    let code = e.run(&mut cpu);
    let log = format!("{:x?}", dev.log.lock().unwrap());
    (code, cpu.regs, ram_bytes(&mem), log, e.stats())
}

#[test]
fn random_memory_walks_match_the_interpreter() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let starts = [
        RAM_BASE + 0x4000,
        RAM_BASE + 0x4ff0,
        RAM_BASE + 0x5ff8,
        RAM_BASE + RAM_SIZE - 0x60,
        RAM_BASE + RAM_SIZE - 0x180,
        MMIO_BASE + 0x80,
        FAULT_VA - 0x40,
    ];
    let (mut faults, mut mmio, mut compiled) = (0, 0, 0);
    for _ in 0..400 {
        let nblocks = 1 + rng.below(4) as usize;
        let prog = random_walking_program(&mut rng, nblocks);
        let bases = (rng.pick(&starts), rng.pick(&starts));
        let count = 20 + rng.below(300);
        let reference = run_walk(JitOptions { tier: Tier::Interp, ..JitOptions::default() }, &prog, bases, count, 0);
        // Identity-mapped: Cranelift's loads read RAM directly (`codegen::Direct`).
        for (thresh, background, flags) in [(1, false, 0), (4, true, 0), (1, false, IDENTITY)] {
            let opts = JitOptions { background, thresh, ..JitOptions::default() };
            let got = run_walk(opts, &prog, bases, count, flags);
            let what =
                format!("thresh {thresh}, flags {flags:#x}, bases {bases:x?}, count {count}, program {prog:08x?}");
            same_end((got.0, &got.1, &got.2), (reference.0, &reference.1, &reference.2), &what);
            assert_eq!(got.3, reference.3, "device accesses: {what}");
            compiled += got.4.tbs_compiled;
        }
        faults += matches!(reference.0, ExitCode::Exit(c) if c >= 200) as u32;
        mmio += !reference.3.is_empty() as u32;
    }
    assert!(faults > 40 && mmio > 40, "walks must reach faults ({faults}) and MMIO ({mmio})");
    assert!(compiled > 400, "the loops must run as Cranelift code ({compiled} compiles)");
}

/// A random "bytecode interpreter": blocks of random register and memory work, each
/// ending in an indirect jump to the next address of a table in RAM (r11 walks it; the
/// table holds block starts, some of them mid-block) or in a direct jump, with a
/// countdown in r13 to the ecall. Regions then hold blocks that the indirect jumps reach
/// (`Engine::region`, `codegen`'s `indirect_to_members`). Returns the program and its
/// table.
fn random_dispatch_program(rng: &mut Rng, nblocks: usize) -> (Vec<u32>, Vec<u64>) {
    let data = [1u32, 2, 3, 4, 5, 6];
    let mut blocks: Vec<Vec<u32>> = Vec::new();
    for _ in 0..nblocks {
        let mut b = Vec::new();
        for _ in 0..1 + rng.below(5) {
            let rd = rng.pick(&data);
            b.push(match rng.below(5) {
                0 => insn(2, rd, rng.pick(&data), rng.next_u64() as i16),
                1 => insn(0x0c, rd, rng.pick(&data), 0),
                2 => insn(0x0b, rd, 7, (rng.below(32) * 8) as i16),
                3 => insn(0x0a, rd, 7, (rng.below(32) * 8) as i16),
                _ => insn(1, rd, 0, rng.next_u64() as i16),
            });
        }
        blocks.push(b);
    }
    // Tail: countdown, leave at 0, then the next block: through the table or direct.
    const TAIL: usize = 6;
    let mut starts = Vec::new();
    let mut at = 0usize;
    for b in &blocks {
        starts.push(at);
        at += b.len() + TAIL;
    }
    let exit = at;
    let mut prog = Vec::new();
    for b in &blocks {
        prog.extend_from_slice(b);
        prog.push(insn(2, 13, 13, -1));
        prog.push(insn(5, 13, 14, 2));
        prog.push(insn(6, 0, 0, (exit as i64 - prog.len() as i64) as i16));
        if rng.chance(80) {
            prog.push(insn(0x0b, 12, 11, 0));
            prog.push(insn(2, 11, 11, 8));
            prog.push(insn(8, 0, 12, 0));
        } else {
            let target = starts[rng.below(nblocks as u64) as usize];
            prog.push(insn(6, 0, 0, (target as i64 - prog.len() as i64) as i16));
            prog.push(insn(7, 0, 0, 0));
            prog.push(insn(7, 0, 0, 0));
        }
    }
    prog.push(insn(7, 0, 0, 0));
    // Mostly a few favourite targets, as an interpreter's hot opcodes.
    let favourites: Vec<usize> = (0..1 + rng.below(4)).map(|_| rng.below(nblocks as u64) as usize).collect();
    let table = (0..DISPATCH_TABLE)
        .map(|_| {
            let k = if rng.chance(70) { rng.pick(&favourites) } else { rng.below(nblocks as u64) as usize };
            let mid = if rng.chance(10) { rng.below(blocks[k].len() as u64) as usize } else { 0 };
            RAM_BASE + 4 * (starts[k] + mid) as u64
        })
        .collect();
    (prog, table)
}

/// Entries of [`random_dispatch_program`]'s table (at `RAM_BASE + 0x4000`).
const DISPATCH_TABLE: usize = 600;

#[test]
fn random_dispatch_loops_match_the_interpreter() {
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut regions = 0;
    for _ in 0..200 {
        let nblocks = 2 + rng.below(9) as usize;
        let (prog, table) = random_dispatch_program(&mut rng, nblocks);
        let count = 50 + rng.below(DISPATCH_TABLE as u64 - 60);
        let go = |opts: JitOptions| {
            let (mem, _dev) = machine();
            load_program(&mem, RAM_BASE, &prog);
            let bytes: Vec<u8> = table.iter().flat_map(|a| a.to_le_bytes()).collect();
            assert!(mem.write_ram(RAM_BASE + 0x4000, &bytes));
            let vm = watched_vm();
            let mut e = Engine::<MockCpu>::new(mem.clone(), vm.clone(), opts).unwrap();
            let mut cpu = MockCpu::new(vm);
            cpu.h.pc = RAM_BASE;
            (cpu.regs[7], cpu.regs[11], cpu.regs[13]) = (RAM_BASE + 0x800, RAM_BASE + 0x4000, count);
            let code = e.run(&mut cpu);
            (code, cpu.regs, ram_bytes(&mem), e.stats())
        };
        let reference = go(JitOptions { tier: Tier::Interp, ..JitOptions::default() });
        for (thresh, background) in [(1, false), (2, true)] {
            let got = go(JitOptions { background, thresh, ..JitOptions::default() });
            let what = format!("thresh {thresh}, count {count}, program {prog:08x?}, table {table:x?}");
            same_end((got.0, &got.1, &got.2), (reference.0, &reference.1, &reference.2), &what);
            assert_eq!(got.3.insns, reference.3.insns, "instruction count: {what}");
            regions += got.3.regions;
        }
    }
    assert!(regions > 100, "regions were formed ({regions})");
}

/// A loop whose only edges are indirect jumps inside one region (A -> B -> A through
/// registers) still takes an interrupt: each such jump checks for an exit request. The
/// loop spins until the interrupt handler has counted one (r15), so without the check it
/// would never end.
#[test]
fn a_region_loop_through_indirect_jumps_takes_interrupts() {
    // 0: r11 = A; r12 = B; j A
    // A (3): r2 += 1; bne r15, r14, OUT; jr r12
    // B (6): r3 += 1; jr r11
    // OUT (8): ecall (exit code r1 = 7)
    let a = RAM_BASE + 3 * 4;
    let b = RAM_BASE + 6 * 4;
    let prog = [
        insn(1, 1, 0, 7),
        insn(6, 0, 0, 2),
        insn(7, 0, 0, 0),
        insn(2, 2, 2, 1),
        insn(5, 15, 14, 5),
        insn(8, 0, 12, 0),
        insn(2, 3, 3, 1),
        insn(8, 0, 11, 0),
        insn(7, 0, 0, 0),
        insn(7, 0, 0, 0),
    ];
    for background in [false, true] {
        let (mem, _dev) = machine();
        load_program(&mem, RAM_BASE, &prog);
        let vm = watched_vm();
        let opts = JitOptions { thresh: 4, background, ..JitOptions::default() };
        let mut e = Engine::<MockCpu>::new(mem, vm.clone(), opts).unwrap();
        let mut cpu = MockCpu::new(vm.clone());
        cpu.h.pc = RAM_BASE;
        (cpu.regs[11], cpu.regs[12]) = (a, b);
        let irq = cpu.irq.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            irq.store(true, std::sync::atomic::Ordering::SeqCst);
            vm.kick_all();
        });
        assert_eq!(e.run(&mut cpu), ExitCode::Exit(7), "background {background}");
        t.join().unwrap();
        let st = e.stats();
        assert_eq!(cpu.regs[15], 1, "the interrupt was taken");
        assert!(st.regions >= 1 && cpu.regs[2] > 10_000, "it looped in a region: {st:?}, {:?}", cpu.regs);
        // The jumps stayed inside the region: few came back to the dispatcher.
        assert!(st.exits.indirect < 100, "{st:?}");
    }
}

#[test]
fn a_loop_through_two_blocks_runs_as_one_region_and_sees_its_code_change() {
    // r1 = 0; r2 = 1000; r5 = 0 (phase)
    // A: r4 += 1; r1 += 1; j B     (patched between the phases to r4 += 100)
    // B: bne r1, r2, A            (hot first: its region holds A, which is not its code)
    //    bne r5, r6, EXIT; store r3 -> A; r5 = 1; r1 = 0; j A
    // EXIT: r1 = 0; r1 += r4; ecall (exit code r1 = 1000 + 100 * 1000)
    // The store runs inside B's region and writes A's bytes: only the region's extent
    // says B's code depends on them. Were it not invalidated, phase 2 would run the old A.
    let mut prog = vec![insn(1, 1, 0, 0), insn(1, 2, 0, 1000), insn(1, 5, 0, 0)];
    prog.extend([insn(2, 4, 4, 1), insn(2, 1, 1, 1), insn(6, 0, 0, 5)]);
    prog.extend([insn(7, 0, 0, 0); 4]);
    prog.extend([
        insn(5, 1, 2, -7),
        insn(5, 5, 6, 6),
        insn(3, 3, 7, 12),
        insn(1, 5, 0, 1),
        insn(1, 1, 0, 0),
        insn(6, 0, 0, -12),
        insn(7, 0, 0, 0),
        insn(1, 1, 0, 0),
        insn(0x0c, 1, 4, 0),
        insn(7, 0, 0, 0),
    ]);
    let patched = insn(2, 4, 4, 100) as u64;
    for (regions, background) in [(true, false), (true, true), (false, false)] {
        let opts = JitOptions { background, thresh: 10, regions, ..JitOptions::default() };
        let (code, st) = run(Tier::Tiered, opts, &prog, &|cpu, _| cpu.regs[3] = patched);
        assert_eq!(code, ExitCode::Exit(1000 + 100 * 1000), "regions {regions}: {st:?}");
        assert_eq!(st.regions > 0, regions, "{st:?}");
        if regions && !background {
            // Both loops ran inside regions, not through the dispatcher.
            assert!(st.dispatches < 100, "{st:?}");
        }
    }
}

#[test]
fn only_blocks_that_get_hot_fast_head_regions() {
    // r1 = 0; r2 = 1; j A
    // A: r1 += 1; j B
    // B: bne r1, r2, A                      (the loop: once in phase 1, 100 times in phase 2)
    //    bne r5, r6, EXIT; r5 = 1; r1 = 0; r2 = 100; j FAR
    // FAR (next page): r3 += 1; bne r3, r9, FAR; j A   (r9 iterations between the phases)
    // EXIT: ecall (exit code r1)
    // A and B are translated in phase 1. With a long FAR loop they reach the threshold
    // long after that (old code that got warm slowly): no region. With a short one they
    // get hot within a few thousand instructions: A heads a region holding B.
    let mut prog = vec![
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 1),
        insn(6, 0, 0, 1),
        insn(2, 1, 1, 1),
        insn(6, 0, 0, 1),
        insn(5, 1, 2, -2),
        insn(5, 5, 6, 6),
        insn(1, 5, 0, 1),
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 100),
        insn(6, 0, 0, 1014),
        insn(7, 0, 0, 0),
        insn(7, 0, 0, 0),
    ];
    prog.resize(1024, insn(7, 0, 0, 0));
    prog.extend([insn(2, 3, 3, 1), insn(5, 3, 9, -1), insn(6, 0, 0, -1023)]);
    for (far, region) in [(50_000, false), (1, true)] {
        let opts = JitOptions { background: false, thresh: 3, ..JitOptions::default() };
        let (code, st) = run(Tier::Tiered, opts, &prog, &|cpu, _| cpu.regs[9] = far);
        assert_eq!(code, ExitCode::Exit(100));
        assert_eq!(st.regions > 0, region, "far loop {far}: {st:?}");
    }
}

/// A block that loops to itself heads a region with its outer loop only if the outer
/// blocks run often enough per run of it: not around a long inner loop (compiled alone),
/// but around a short one.
#[test]
fn a_long_self_loop_leaves_its_cold_outer_loop_out_of_its_region() {
    // O: r3 += 1; r1 = 0; j I
    // I: r1 += 1; bne r1, r9, I     (r9 runs per pass)
    // N: bne r3, r8, O ; ecall      (r8 passes; exit code r1 = r9)
    let prog = [
        insn(2, 3, 3, 1),
        insn(1, 1, 0, 0),
        insn(6, 0, 0, 1),
        insn(2, 1, 1, 1),
        insn(5, 1, 9, -1),
        insn(5, 3, 8, -5),
        insn(7, 0, 0, 0),
    ];
    for (inner, outer, region) in [(1000, 4, false), (2, 1000, true)] {
        let opts = JitOptions { background: false, thresh: 64, ..JitOptions::default() };
        let (code, st) = run(Tier::Tiered, opts, &prog, &|cpu, _| {
            cpu.regs[9] = inner;
            cpu.regs[8] = outer;
        });
        assert_eq!(code, ExitCode::Exit(inner as i32), "{st:?}");
        assert!(st.tbs_promoted >= 1, "{st:?}");
        assert_eq!(st.regions > 0, region, "inner {inner}, outer {outer}: {st:?}");
    }
}

#[test]
fn a_block_already_in_a_region_heads_none_of_its_own() {
    // 0: r1 = 0; r2 = 100; j A
    // A: r1 += 1; j B
    // B: bne r1, r2, A; j FAR
    // FAR (next page): r3 += 1; r1 = 0; bne r3, r9, B; ecall
    // A gets hot first and heads a region holding B. FAR enters at B, whose own TB then
    // gets hot too (once per outer round), fast enough to head a region: it must not,
    // as it would compile the same loop again.
    let mut prog = vec![
        insn(1, 1, 0, 0),
        insn(1, 2, 0, 100),
        insn(6, 0, 0, 1),
        insn(2, 1, 1, 1),
        insn(6, 0, 0, 1),
        insn(5, 1, 2, -2),
        insn(6, 0, 0, 1018),
    ];
    prog.resize(1024, insn(7, 0, 0, 0));
    prog.extend([insn(2, 3, 3, 1), insn(1, 1, 0, 0), insn(5, 3, 9, -1021), insn(7, 0, 0, 0)]);
    let opts = JitOptions { background: false, thresh: 3, ..JitOptions::default() };
    let (code, st) = run(Tier::Tiered, opts, &prog, &|cpu, _| cpu.regs[9] = 10);
    assert_eq!(code, ExitCode::Exit(0));
    assert_eq!(st.regions, 1, "{st:?}");
    assert!(st.tbs_promoted >= 2, "B is still compiled, on its own: {st:?}");
}

#[test]
fn a_write_entry_filled_before_its_page_held_code_sees_the_code() {
    // P0: 0: sw r3 -> P1[0]     (P1 is data now: its TLB write entry is fast)
    //     1: j P1
    //     2: bne r5, r6, EXIT
    //     3: r5 = 1
    //     4: sw r10 -> P1[0]    (same TLB entry: P1 holds code now, the TB must go)
    //     5: j P1
    //     6: EXIT: ecall (exit code r1)
    // P1: li r1, 1 (rewritten to li r1, 7); j P0+2
    let mut prog = vec![
        insn(3, 3, 8, 0),
        insn(6, 0, 0, 1023),
        insn(5, 5, 6, 4),
        insn(1, 5, 0, 1),
        insn(3, 10, 8, 0),
        insn(6, 0, 0, 1019),
        insn(7, 0, 0, 0),
    ];
    prog.resize(1024, insn(7, 0, 0, 0));
    prog.extend([insn(7, 0, 0, 0), insn(6, 0, 0, -1023)]);
    for tier in TIERS {
        let (code, st) = run(tier, JitOptions::default(), &prog, &|cpu, _| {
            cpu.regs[3] = insn(1, 1, 0, 1) as u64;
            cpu.regs[10] = insn(1, 1, 0, 7) as u64;
            cpu.regs[8] = RAM_BASE + 0x1000;
        });
        assert_eq!(code, ExitCode::Exit(7), "{tier:?}: {st:?}");
        assert_eq!(st.tbs_invalidated, 1, "{tier:?}: {st:?}");
    }
}
