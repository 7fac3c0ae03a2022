//! Guest-level ISA tests: each bare-metal program in `tests/guest/` runs on
//! the virt machine and must exit 0 after printing `PASS <name>`. Every
//! program runs under both translator tiers (default and
//! `-accel tcg,tier=interp`), which makes this a differential test of the two.
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
