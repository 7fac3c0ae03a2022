//! The shared engine (`crate::shared`): several vCPU threads on one TB cache.

use kite_core::{ExitCode, PhysMemory};

use super::mock::*;
use crate::{run_shared, JitOptions, Tier};

/// Run `prog` (at `RAM_BASE`) on `n` vCPU threads sharing one engine, vCPU `i` starting
/// at `pcs[i]` with r7 = `RAM_BASE`; `setup` prepares memory first.
fn run_threads(
    tier: Tier,
    opts: JitOptions,
    prog: &[u32],
    pcs: &[u64],
    setup: &dyn Fn(&kite_memory::PhysMap),
) -> (ExitCode, crate::Stats) {
    run_threads_with(tier, opts, prog, pcs, setup, &|_, _| {})
}

/// [`run_threads`], `cpu_setup(i, cpu)` preparing vCPU `i` last.
fn run_threads_with(
    tier: Tier,
    opts: JitOptions,
    prog: &[u32],
    pcs: &[u64],
    setup: &dyn Fn(&kite_memory::PhysMap),
    cpu_setup: &dyn Fn(usize, &mut MockCpu),
) -> (ExitCode, crate::Stats) {
    let (mem, _dev) = machine();
    let bytes: Vec<u8> = prog.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(mem.write_ram(RAM_BASE, &bytes));
    setup(&mem);
    let vm = watched_vm();
    let mut cpus: Vec<Box<MockCpu>> = pcs.iter().map(|_| MockCpu::new(vm.clone())).collect();
    for (i, (c, &pc)) in cpus.iter_mut().zip(pcs).enumerate() {
        (c.h.pc, c.regs[7]) = (pc, RAM_BASE);
        cpu_setup(i, c);
    }
    run_shared(mem, vm, JitOptions { tier, ..opts }, &mut cpus)
}

/// One vCPU rewrites an instruction of the loop another one is running (its TB, maybe
/// compiled, maybe chained to itself, held in its jump cache): the looping vCPU must get
/// to run the new instruction. Without the invalidation reaching it, it loops until the
/// watchdog ends the run.
#[test]
fn a_vcpu_sees_code_another_vcpu_rewrites() {
    // A, at 0x00: li r1, 1 (becomes li r1, 2) ; li r4, 1 ; sw r4, 0x900(r7) (the loop
    // runs) ; li r2, 2 ; bne r1, r2, -4 ; ecall (exit code r1)
    let a = [insn(1, 1, 0, 1), insn(1, 4, 0, 1), insn(3, 4, 7, 0x900), insn(1, 2, 0, 2), insn(5, 1, 2, -4)];
    // B, at 0x40: wait for A's flag, count r5 down from 20000 (A gets hot meanwhile),
    // then lw r3, 0x800(r7) ; sw r3, 0(r7) ; then spin: j 0.
    let b = [
        insn(1, 6, 0, 1),
        insn(4, 5, 7, 0x900),
        insn(5, 5, 6, -1),
        insn(1, 5, 0, 20000),
        insn(1, 6, 0, 0),
        insn(2, 5, 5, -1),
        insn(5, 5, 6, -1),
        insn(4, 3, 7, 0x800),
        insn(3, 3, 7, 0),
        insn(6, 0, 0, 0),
    ];
    let mut prog = vec![0u32; 0x40 / 4];
    prog[..a.len()].copy_from_slice(&a);
    prog[a.len()] = insn(7, 0, 0, 0);
    prog.extend_from_slice(&b);
    for (tier, thresh) in [(Tier::Tiered, 16), (Tier::Tiered, 16000), (Tier::Jit, 0), (Tier::Interp, 0)] {
        let opts = JitOptions { thresh, background: false, ..JitOptions::default() };
        let (code, st) = run_threads(tier, opts, &prog, &[RAM_BASE, RAM_BASE + 0x40], &|mem| {
            assert!(mem.write_ram(RAM_BASE + 0x800, &insn(1, 1, 0, 2).to_le_bytes()));
            assert!(mem.write_ram(RAM_BASE + 0x900, &[0; 4]));
        });
        assert_eq!(code, ExitCode::Exit(2), "{tier:?}, thresh {thresh}: {st:?}");
        assert!(st.tbs_invalidated >= 1, "{tier:?}, thresh {thresh}: {st:?}");
    }
}

/// Three vCPUs run 1500 two-instruction TBs each (`addi r1, r1, 1 ; j +1`) through a
/// code cache that holds far fewer: full flushes happen while other vCPUs are inside
/// generated code, so they wait for every one to leave it, and the vCPUs that were not
/// the one flushing come back with exit values naming chain slots the flush freed (an
/// unlinked goto returns its slot). Each vCPU counts in its own register and the first
/// one done exits with its count: lost or doubled instructions would change it.
#[test]
fn full_flushes_wait_for_every_vcpu_to_leave_generated_code() {
    let mut prog: Vec<u32> = (0..1500).flat_map(|_| [insn(2, 1, 1, 1), insn(6, 0, 0, 1)]).collect();
    prog.push(insn(7, 0, 0, 0));
    let opts = JitOptions { code_cache_bytes: 64 * 1024, verify: false, ..JitOptions::default() };
    let (code, st) = run_threads(Tier::Jit, opts, &prog, &[RAM_BASE; 3], &|_| {});
    assert_eq!(code, ExitCode::Exit(1500), "{st:?}");
    assert!(st.full_flushes >= 2, "{st:?}");
    assert!(st.exits.goto_unlinked >= 1500, "{st:?}");
    assert_eq!(st.compile_fallbacks, 0);
}

/// Two vCPUs in different address spaces run one block whose jump leaves its page: a
/// chain link vCPU A makes there holds for A's mapping of the target page only. vCPU B
/// maps that page elsewhere and must run its own code there; following A's link it
/// would run A's loop forever (the watchdog then ends the run).
#[test]
fn a_cross_page_link_made_in_one_address_space_is_not_followed_in_another() {
    const V: u64 = RAM_BASE + 0x1000;
    // 0x000 (A's start) and 0x004: j V (the shared block). At V for A: li r4, 1 ;
    // sw r4, 0x900(r7) (A has been there) ; j 0x004. B, at 0x040: wait for A's word,
    // count r5 down from 20000 (A links 0x004 to its V meanwhile), then j 0x004. B maps V
    // to RAM_BASE + 0x2000: li r1, 2 ; ecall.
    let mut prog = vec![0u32; 0x2008 / 4];
    prog[0] = insn(6, 0, 0, 1);
    prog[1] = insn(6, 0, 0, (0x1000 - 4) / 4);
    let b = [
        insn(1, 6, 0, 1),
        insn(4, 5, 7, 0x900),
        insn(5, 5, 6, -1),
        insn(1, 5, 0, 20000),
        insn(1, 6, 0, 0),
        insn(2, 5, 5, -1),
        insn(5, 5, 6, -1),
        insn(6, 0, 0, (4 - 0x5c) / 4),
    ];
    prog[0x40 / 4..0x40 / 4 + b.len()].copy_from_slice(&b);
    let a = [insn(1, 4, 0, 1), insn(3, 4, 7, 0x900), insn(6, 0, 0, (4 - 0x1008) / 4)];
    prog[0x1000 / 4..0x1000 / 4 + a.len()].copy_from_slice(&a);
    prog[0x2000 / 4] = insn(1, 1, 0, 2);
    prog[0x2004 / 4] = insn(7, 0, 0, 0);
    for tier in [Tier::Tiered, Tier::Jit] {
        let (code, st) = run_threads_with(
            tier,
            JitOptions::default(),
            &prog,
            &[RAM_BASE, RAM_BASE + 0x40],
            &|mem| assert!(mem.write_ram(RAM_BASE + 0x900, &[0; 4])),
            &|i, cpu| {
                if i == 1 {
                    cpu.remap = Some((V, RAM_BASE + 0x2000));
                }
            },
        );
        assert_eq!(code, ExitCode::Exit(2), "{tier:?}: {st:?}");
    }
}

/// A vCPU thread of a shared engine sleeps in `wfi` (`engine::mt_halt`, without the lock)
/// until its interrupt is pending, then takes it; the other one sleeps throughout.
#[test]
fn a_vcpu_thread_sleeps_in_wfi_and_takes_the_interrupt_that_wakes_it() {
    // A: li r1, 9 ; wfi ; ecall (exit code r1). B, at 0x40: wfi ; j -1.
    let mut prog = vec![insn(1, 1, 0, 9), insn(9, 0, 0, 0), insn(7, 0, 0, 0)];
    prog.resize(0x40 / 4, 0);
    prog.extend([insn(9, 0, 0, 0), insn(6, 0, 0, -1)]);
    let (mem, _dev) = machine();
    let bytes: Vec<u8> = prog.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(mem.write_ram(RAM_BASE, &bytes));
    let vm = watched_vm();
    let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
    for (c, pc) in cpus.iter_mut().zip([RAM_BASE, RAM_BASE + 0x40]) {
        c.h.pc = pc;
    }
    let irq = cpus[0].irq.clone();
    let vm2 = vm.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        // No kick: the halt's poll finds the interrupt pending, and must make the next
        // step take it.
        irq.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(vm2);
    });
    let start = std::time::Instant::now();
    let (code, st) = run_shared(mem, vm, JitOptions::default(), &mut cpus);
    t.join().unwrap();
    assert_eq!(code, ExitCode::Exit(9), "{st:?}");
    assert_eq!(cpus[0].regs[15], 1, "the interrupt was taken");
    assert!(start.elapsed() >= std::time::Duration::from_millis(40));
    // Both halted (A once; B at least once, and not spinning: it has nothing pending).
    assert!((2..1000).contains(&st.exits.halt), "{st:?}");
}

/// `wfi` ended at once by a pending but masked interrupt: after a few such wake-ups a
/// vCPU thread of a shared engine sleeps a little at each (as `Engine::halt` does), so
/// in 300 ms there are a few hundred halts, not millions.
#[test]
fn a_vcpu_thread_woken_by_a_masked_interrupt_backs_off() {
    let prog = [insn(9, 0, 0, 0), insn(6, 0, 0, -1)];
    let (mem, _dev) = machine();
    let bytes: Vec<u8> = prog.iter().flat_map(|w| w.to_le_bytes()).collect();
    assert!(mem.write_ram(RAM_BASE, &bytes));
    let vm = watched_vm();
    let mut cpus = vec![MockCpu::new(vm.clone()), MockCpu::new(vm.clone())];
    for c in &mut cpus {
        c.h.pc = RAM_BASE;
        c.masked = true;
        c.irq.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    let vm2 = vm.clone();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        vm2.request_exit(ExitCode::Exit(4));
    });
    let (code, st) = run_shared(mem, vm, JitOptions { tier: Tier::Jit, ..JitOptions::default() }, &mut cpus);
    t.join().unwrap();
    assert_eq!(code, ExitCode::Exit(4));
    assert!((128..40_000).contains(&st.exits.halt), "{} halts in 300 ms", st.exits.halt);
}

/// A vCPU whose TLB already maps a page for writing, filled before that page held any
/// code, must still invalidate another vCPU's first TB there when it stores over it: the
/// translating vCPU kicks it, so its next step gives its TLB entry the CODE flag. The
/// writer's last pass runs only chain links made in its first pass, so it meets no
/// dispatcher step of its own between the other vCPU's translation and its store:
/// without the kick its store invalidates nothing, and the other vCPU loops on the old
/// code until the watchdog ends the run.
#[test]
fn a_store_through_a_tlb_entry_older_than_the_pages_code_still_invalidates_it() {
    const P: u64 = RAM_BASE + 0x1000;
    // A at 0x000: wait for the word at 0x900 to be 1, then j P. At P: li r1, 1 (B makes
    // it li r1, 2) ; li r2, 2 ; bne r1, r2, -2 ; ecall (exit code r1).
    let mut prog = vec![0u32; 0x1010 / 4];
    let a = [insn(1, 6, 0, 1), insn(4, 5, 7, 0x900), insn(5, 5, 6, -1), insn(6, 0, 0, (0x1000 - 0xc) / 4)];
    prog[..a.len()].copy_from_slice(&a);
    // B at 0x040 (r8 = P): sw r3, 0x800(r8) (a write entry for P, no code there yet) ;
    // two passes (r11) of: sw r4, 0x900(r7) (A's word: 0, then 1) ; count r5 down from
    // 0x4000 << 10 (tens of milliseconds: A translates P meanwhile, even with Cranelift
    // on a busy host) ; lw r3, 0x800(r7) ; sw r3, 0(r10) (first pass: a word on page 0;
    // last: P) ; then j 0.
    let mut b = vec![
        insn(3, 3, 8, 0x800),
        insn(1, 11, 0, 2),
        insn(2, 10, 7, 0x7f0),
        insn(1, 6, 0, 0),
        insn(1, 4, 0, 0),
        insn(6, 0, 0, 1),
    ];
    let pass = b.len(); // each pass starts here
    b.extend([insn(3, 4, 7, 0x900), insn(1, 5, 0, 0x4000)]);
    b.extend([insn(0x0c, 5, 5, 0); 10]);
    b.push(insn(6, 0, 0, 1));
    b.extend([insn(2, 5, 5, -1), insn(5, 5, 6, -1)]); // the countdown
    b.extend([insn(4, 3, 7, 0x800), insn(3, 3, 10, 0)]); // the store
    b.extend([insn(2, 11, 11, -1), insn(5, 11, 6, 2), insn(6, 0, 0, 0)]); // then done
    b.extend([insn(2, 10, 8, 0), insn(1, 4, 0, 1)]); // the last pass stores to P
    let back = b.len() as i16;
    b.push(insn(6, 0, 0, pass as i16 - back));
    prog[0x40 / 4..0x40 / 4 + b.len()].copy_from_slice(&b);
    let p = [insn(1, 1, 0, 1), insn(1, 2, 0, 2), insn(5, 1, 2, -2), insn(7, 0, 0, 0)];
    prog[0x1000 / 4..0x1000 / 4 + p.len()].copy_from_slice(&p);
    for tier in [Tier::Tiered, Tier::Jit] {
        // No tier-up on the way: its return to the dispatcher would mark the page too.
        let opts = JitOptions { thresh: 1_000_000, ..JitOptions::default() };
        let (code, st) = run_threads_with(
            tier,
            opts,
            &prog,
            &[RAM_BASE, RAM_BASE + 0x40],
            &|mem| {
                assert!(mem.write_ram(RAM_BASE + 0x800, &insn(1, 1, 0, 2).to_le_bytes()));
                assert!(mem.write_ram(RAM_BASE + 0x900, &[0; 4]));
            },
            &|_, cpu| cpu.regs[8] = P,
        );
        assert_eq!(code, ExitCode::Exit(2), "{tier:?}: {st:?}");
        assert!(st.tbs_invalidated >= 1, "{tier:?}: {st:?}");
    }
}
