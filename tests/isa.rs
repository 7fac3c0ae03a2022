//! Guest-level ISA tests: each bare-metal program in `tests/guest/` runs on
//! the virt machine and must exit 0 after printing `PASS <name>`. Every
//! program runs under three executors: the default (cold blocks as baseline code, hot
//! ones through Cranelift), `-accel tcg,tier=jit` (Cranelift for every block) and
//! `-accel tcg,tier=interp` (the reference interpreter): a differential test of the three.
//! Set `KITE_TEST_EMULATOR=qemu-system-riscv64` to validate the programs on
//! QEMU instead (the interp variants are skipped then).

mod common;

use common::{assert_passed, run_guest, Tier};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

fn check(name: &str, tier: Tier) {
    if let Some(out) = run_guest(name, tier, TIMEOUT) {
        assert_passed(name, &out);
    }
}

macro_rules! isa_test {
    ($default:ident, $interp:ident, $prog:literal) => {
        #[test]
        fn $default() {
            check($prog, Tier::Default);
            check($prog, Tier::Jit);
        }
        #[test]
        fn $interp() {
            check($prog, Tier::Interp);
        }
    };
}

isa_test!(rv64i, rv64i_interp, "rv64i");
isa_test!(rv64m, rv64m_interp, "rv64m");
isa_test!(rv64a, rv64a_interp, "rv64a");
isa_test!(rv64c, rv64c_interp, "rv64c");
isa_test!(zicsr, zicsr_interp, "zicsr");
isa_test!(zifencei, zifencei_interp, "zifencei");
isa_test!(traps, traps_interp, "traps");
isa_test!(cprog_gc, cprog_gc_interp, "cprog_gc");
isa_test!(fp_ops, fp_ops_interp, "fp_ops");
isa_test!(fp_ops_nx, fp_ops_nx_interp, "fp_ops_nx");
isa_test!(fp_state, fp_state_interp, "fp_state");
isa_test!(bitmanip, bitmanip_interp, "bitmanip");

/// The F/D and bitmanip programs built for `-M spike` (console and exit
/// through HTIF, see tests/guest/fp_htif.c), on both tiers.
fn check_spike(name: &str, tier: Tier) {
    if tier != Tier::Default && common::is_external() {
        return;
    }
    let elf = common::guest(&format!("{name}_spike")).to_string_lossy().into_owned();
    let mut args = vec!["-M", "spike", "-nographic", "-bios", "none", "-kernel", &elf];
    if let Some(a) = tier.accel() {
        args.extend(["-accel", a]);
    }
    let out = common::run_kite(&args, TIMEOUT);
    assert_passed(name, &out);
}

macro_rules! spike_test {
    ($default:ident, $interp:ident, $prog:literal) => {
        #[test]
        fn $default() {
            check_spike($prog, Tier::Default);
            check_spike($prog, Tier::Jit);
        }
        #[test]
        fn $interp() {
            check_spike($prog, Tier::Interp);
        }
    };
}

spike_test!(fp_ops_spike, fp_ops_spike_interp, "fp_ops");
spike_test!(fp_state_spike, fp_state_spike_interp, "fp_state");
spike_test!(bitmanip_spike, bitmanip_spike_interp, "bitmanip");
isa_test!(priv_sv39, priv_sv39_interp, "priv_sv39");
isa_test!(priv_modes, priv_modes_interp, "priv_modes");
isa_test!(direct_loads, direct_loads_interp, "direct_loads");

/// The printf lines of `cprog`, exactly (see tests/guest/cprog.c).
const CPROG_PRINTF: &str = "\
printf: -42 42 beef BEEF 10
printf: [   42] [42   ] [00042] [+42]
printf: -1234567890123 18446744073709551615 deadbeefcafef00d
printf: [kite] [    kite] [kite    ] [kit] ok
printf: 0xff 010 % 0x80001000
";

fn cprog(tier: Tier) {
    if let Some(out) = run_guest("cprog", tier, TIMEOUT) {
        assert_passed("cprog", &out);
        let printed: String =
            out.stdout.lines().filter(|l| l.starts_with("printf: ")).map(|l| format!("{}\n", l.trim_end())).collect();
        assert_eq!(printed, CPROG_PRINTF, "printf output differs:\n{}", out.dump());
    }
}

#[test]
fn cprog_default() {
    cprog(Tier::Default);
}

#[test]
fn cprog_interp() {
    cprog(Tier::Interp);
}

/// ~10^9 guest instructions; its own test so the wall time is visible
/// (`cargo test -- --nocapture` prints it).
fn longloop(tier: Tier, timeout: Duration) {
    if let Some(out) = run_guest("longloop", tier, timeout) {
        assert_passed("longloop", &out);
        assert!(out.stdout.contains("longloop: checksum=0x3bd299ee6242bab4"), "checksum line missing:\n{}", out.dump());
    }
}

#[test]
fn longloop_default() {
    longloop(Tier::Default, Duration::from_secs(300));
}

#[test]
fn longloop_interp() {
    longloop(Tier::Interp, Duration::from_secs(600));
}

/// `tests/guest/smp.S` on four vCPUs: AMOs, LR/SC and a spinlock must lose no update, and
/// code one hart rewrites must run in its new form on another after `fence.i`. Runs on one
/// host thread per vCPU (`thread=multi`, sharing one TB cache or each with its own) on
/// both tiers, in the round-robin mode, and in whichever the host's core count makes the
/// default.
fn check_smp(accel: &str) {
    let elf = common::guest("smp").to_string_lossy().into_owned();
    let mut args = vec!["-M", "virt", "-smp", "4", "-nographic", "-bios", "none", "-kernel", &elf];
    if !common::is_external() && !accel.is_empty() {
        args.extend(["-accel", accel]);
    }
    // Several runs: lost updates and missed invalidations are races.
    for _ in 0..3 {
        let out = common::run_kite(&args, TIMEOUT);
        // Exit status 0 is the finisher's pass; N is check N of smp.S.
        assert!(out.status.success(), "smp.S failed ({accel}): {out:?}");
    }
}

#[test]
fn smp_default_mode() {
    check_smp("");
}

#[test]
fn smp_threads_interp() {
    check_smp("tcg,tier=interp,thread=multi");
}

#[test]
fn smp_threads_jit() {
    check_smp("tcg,tier=jit,thread=multi");
}

#[test]
fn smp_threads_tiered() {
    check_smp("tcg,thread=multi");
}

/// A TB cache per vCPU thread instead of one shared (`-accel tcg,tb-cache=private`).
#[test]
fn smp_threads_private_tb_caches() {
    check_smp("tcg,thread=multi,tb-cache=private");
}

#[test]
fn smp_round_robin() {
    check_smp("tcg,thread=single");
}

/// Tier-up at once: the spin-wait blocks (and their loop regions) are translated again
/// for Cranelift, which reads code before a block's pc from guest RAM directly.
#[test]
fn smp_round_robin_hot() {
    check_smp("tcg,thread=single,thresh=2");
}

#[test]
fn smp_threads_hot() {
    check_smp("tcg,thread=multi,thresh=2");
}

/// `tests/guest/tlb_sizing.c`: a working set ten times the smallest softmmu TLB, read
/// back right while the TLB grows, then ASID switches and page and full fences on the
/// grown TLB. `-d stats` must show the growth, or the program tested nothing new.
fn tlb_sizing(tier: Tier) {
    if tier != Tier::Default && common::is_external() {
        return;
    }
    let elf = common::guest("tlb_sizing").to_string_lossy().into_owned();
    let mut args: Vec<&str> = common::VIRT_ARGS.to_vec();
    args.push(&elf);
    if let Some(a) = tier.accel() {
        args.extend(["-accel", a]);
    }
    if !common::is_external() {
        args.extend(["-d", "stats"]);
    }
    let out = common::run_kite(&args, TIMEOUT);
    assert_passed("tlb_sizing", &out);
    if !common::is_external() {
        let grows = out
            .stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("tlb_grows: ")?.trim_end_matches(',').parse::<u32>().ok());
        // 1024 -> 2048 -> 4096 -> 8192 -> 16384 for the data; instruction fetches fill the
        // same TLB, so how blocks get translated could add an eviction or a grow.
        assert!(
            grows.is_some_and(|n| n >= 4),
            "{tier:?}: the TLB did not grow to hold the working set:\n{}",
            out.dump()
        );
    }
}

#[test]
fn tlb_sizing_default() {
    tlb_sizing(Tier::Default);
    tlb_sizing(Tier::Jit);
}

#[test]
fn tlb_sizing_interp() {
    tlb_sizing(Tier::Interp);
}
