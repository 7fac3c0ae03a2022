//! Host-input error handling of the `kite` binary: every bad invocation exits
//! non-zero with exactly ONE line on stderr that contains "error" (no panic,
//! no backtrace, no usage dump); `--version` / `--help` succeed; running with
//! no `-kernel` boots the embedded demo, which exits 0 after printing.
//! These checks are about Kite's own CLI, so they are skipped when
//! `KITE_TEST_EMULATOR` points at another emulator.

mod common;

use common::{guest, is_external, run_kite, spawn_kite, target_dir, wait_with_timeout, Output};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

fn skip() -> bool {
    if is_external() {
        eprintln!("skipping: CLI tests only apply to kite (KITE_TEST_EMULATOR is set)");
    }
    is_external()
}

fn assert_one_line_error(what: &str, out: &Output) {
    let err = out.stderr.trim_end();
    let ok = !out.status.success()
        && out.status.code().is_some()
        && err.lines().count() == 1
        && err.to_lowercase().contains("error")
        && !err.contains("panicked")
        && !err.contains("backtrace");
    assert!(ok, "{what}: expected a non-zero exit and one stderr line containing \"error\":\n{}", out.dump());
}

/// A scratch file under the target dir holding `bytes`.
fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = target_dir().join("guest-cli-tests");
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write scratch file");
    path
}

fn run_kernel(path: &str) -> Output {
    run_kite(&["-M", "virt", "-nographic", "-bios", "none", "-kernel", path], TIMEOUT)
}

#[test]
fn missing_kernel_file() {
    if skip() {
        return;
    }
    let path = target_dir().join("guest-cli-tests/does-not-exist.elf");
    let out = run_kernel(&path.to_string_lossy());
    assert_one_line_error("missing kernel", &out);
}

#[test]
fn truncated_elf() {
    if skip() {
        return;
    }
    let full = std::fs::read(guest("rv64i")).expect("read rv64i.elf");
    // Header intact, program headers and segments cut off.
    let path = scratch_file("truncated.elf", &full[..100.min(full.len())]);
    assert_one_line_error("truncated ELF", &run_kernel(&path.to_string_lossy()));
    // Headers intact but the file ends in the middle of a PT_LOAD segment's data.
    let cut = first_load_segment_middle(&full);
    let path = scratch_file("cut-segment.elf", &full[..cut]);
    assert_one_line_error("ELF cut inside a segment", &run_kernel(&path.to_string_lossy()));
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// File offset of the middle of the first non-empty PT_LOAD segment of an
/// ELF64 little-endian file (e_phoff @32, e_phentsize @54, e_phnum @56;
/// p_type @0, p_offset @8, p_filesz @32).
fn first_load_segment_middle(elf: &[u8]) -> usize {
    let phoff = le_u64(elf, 32) as usize;
    let phentsize = u16::from_le_bytes([elf[54], elf[55]]) as usize;
    let phnum = u16::from_le_bytes([elf[56], elf[57]]) as usize;
    (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32::from_le_bytes([elf[ph], elf[ph + 1], elf[ph + 2], elf[ph + 3]]) == 1)
        .map(|ph| (le_u64(elf, ph + 8), le_u64(elf, ph + 32)))
        .find(|&(_, filesz)| filesz >= 16)
        .map(|(off, filesz)| (off + filesz / 2) as usize)
        .expect("rv64i.elf has a PT_LOAD segment")
}

#[test]
fn corrupt_elf() {
    if skip() {
        return;
    }
    let mut elf = std::fs::read(guest("rv64i")).expect("read rv64i.elf");
    // e_phoff (offset 32, 8 bytes) pointing far outside the file.
    elf[32..40].copy_from_slice(&0x7fff_ffff_0000u64.to_le_bytes());
    let path = scratch_file("bad-phoff.elf", &elf);
    assert_one_line_error("ELF with bad e_phoff", &run_kernel(&path.to_string_lossy()));
    // ELF magic followed by garbage.
    let mut junk = b"\x7fELF".to_vec();
    junk.extend((0..400u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8));
    let path = scratch_file("junk.elf", &junk);
    assert_one_line_error("ELF magic + garbage", &run_kernel(&path.to_string_lossy()));
    // (A file without the ELF magic is NOT an error: like QEMU, Kite loads
    // it as a raw image at the DRAM base.)
}

#[test]
fn empty_kernel_file() {
    if skip() {
        return;
    }
    let path = scratch_file("empty.elf", b"");
    assert_one_line_error("empty kernel", &run_kernel(&path.to_string_lossy()));
}

#[test]
fn unknown_machine() {
    if skip() {
        return;
    }
    let out = run_kite(&["-M", "foo", "-nographic"], TIMEOUT);
    assert_one_line_error("-M foo", &out);
}

#[test]
fn unknown_option() {
    if skip() {
        return;
    }
    let out = run_kite(&["-frobnicate"], TIMEOUT);
    assert_one_line_error("-frobnicate", &out);
}

#[test]
fn bad_memory_size() {
    if skip() {
        return;
    }
    for bad in ["banana", "-5", "12Q"] {
        let out = run_kite(&["-M", "virt", "-nographic", "-m", bad], TIMEOUT);
        assert_one_line_error(&format!("-m {bad}"), &out);
    }
}

#[test]
fn version_and_help() {
    if skip() {
        return;
    }
    for flag in ["--version", "--help"] {
        let out = run_kite(&[flag], TIMEOUT);
        assert!(out.status.success(), "{flag} failed:\n{}", out.dump());
        assert!(!out.stdout.trim().is_empty(), "{flag} printed nothing:\n{}", out.dump());
        assert!(!out.stderr.contains("panicked"), "{flag} panicked:\n{}", out.dump());
    }
}

#[test]
fn default_demo_runs() {
    if skip() {
        return;
    }
    let out = run_kite(&["-M", "virt", "-nographic"], TIMEOUT);
    assert!(out.status.success(), "demo did not exit 0:\n{}", out.dump());
    assert!(!out.stdout.trim().is_empty(), "demo printed nothing:\n{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "demo panicked:\n{}", out.dump());
}

#[test]
fn perfmap_names_translated_code() {
    if skip() {
        return;
    }
    // One run per tier: background tier-up is asynchronous, so a short demo may end before
    // any block reaches Cranelift (it did on a loaded 2-core CI machine). `tier=jit` compiles
    // every block with Cranelift in the foreground; the default tiered run names baseline code.
    for (accel, tier) in [("tcg,tier=jit", "cl"), ("tcg,first=baseline,thresh=1000000", "bl")] {
        let child = spawn_kite(&["-M", "virt", "-nographic", "-perfmap", "-accel", accel]);
        let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        let out = wait_with_timeout(child, TIMEOUT, |_| {});
        assert!(out.status.success(), "demo with -perfmap ({accel}) failed:\n{}", out.dump());
        let text = std::fs::read_to_string(&map).unwrap_or_else(|e| panic!("{}: {e}", map.display()));
        let _ = std::fs::remove_file(&map);
        let mut tiers = std::collections::HashSet::new();
        let mut in_ram = 0;
        for line in text.lines() {
            let f: Vec<&str> = line.split(' ').collect();
            assert_eq!(f.len(), 3, "bad perf map line {line:?}");
            let (start, size) = (u64::from_str_radix(f[0], 16), u64::from_str_radix(f[1], 16));
            assert!(start.is_ok_and(|s| s > 0) && size.is_ok_and(|s| s > 0), "bad perf map line {line:?}");
            let rest = f[2].strip_prefix("kite-").unwrap_or_else(|| panic!("bad symbol in {line:?}"));
            let (t, pc) = rest.split_once("-0x").unwrap_or_else(|| panic!("bad symbol in {line:?}"));
            let pc = u64::from_str_radix(pc, 16).unwrap_or_else(|_| panic!("bad guest pc in {line:?}"));
            in_ram += (pc >= 0x8000_0000) as u32;
            tiers.insert(t.to_string());
        }
        assert!(tiers.contains(tier), "{accel}: tier {tier} named in the map:\n{text}");
        assert!(in_ram > 10, "{accel}: the demo's blocks in RAM are named:\n{text}");
    }
}
