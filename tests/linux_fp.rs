//! Linux userspace floating point: a static riscv64 glibc program
//! (`tests/linux-guest/fptest.c`, built with Debian's `gcc-riscv64-linux-gnu`)
//! runs inside the booted guest and must print exactly the lines of
//! `tests/linux-guest/fptest.expected`, ending with `FPTEST-OK <checksum>`.
//!
//! The program reaches the guest in a second initramfs: a newc cpio archive
//! holding `/fptest`, appended to a copy of the shared `initramfs.cpio.gz`
//! (Linux unpacks concatenated archives, compressed or not). The test boots
//! without `kite.test`, so `/init` starts the shell; it types
//! `/fptest; poweroff -f` and compares the console with the expected text.
//!
//! The expected text comes from the host (x86-64 glibc computes the same bits
//! for IEEE basic operations; libm results are printed to 12 digits) plus
//! three RISC-V specific lines taken from the ISA spec (see fptest.c). It was
//! checked with `KITE_TEST_EMULATOR=qemu-system-riscv64`.
//!
//! Pitfalls: the uncompressed archive must start on a 4-byte boundary of the
//! initrd (the kernel only looks for a cpio magic there), hence the zero
//! padding after the gzip stream. Skips (with a SKIP line) when the images,
//! OpenSBI or the cross compiler are missing.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const TIMEOUT: Duration = Duration::from_secs(120);
const EXPECTED: &str = include_str!("linux-guest/fptest.expected");

/// Appends one newc ("070701") entry: the 110-byte header of 13 eight-digit
/// hex fields, the NUL-terminated name and the data, each padded to 4 bytes.
fn newc_entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, data: &[u8]) {
    let fields = [
        ino,
        mode,
        0,                     // uid
        0,                     // gid
        1,                     // nlink
        0,                     // mtime
        data.len() as u32,     // filesize
        0,                     // devmajor
        0,                     // devminor
        0,                     // rdevmajor
        0,                     // rdevminor
        name.len() as u32 + 1, // namesize, with the NUL
        0,                     // check (only for "070702")
    ];
    out.extend_from_slice(b"070701");
    for f in fields {
        out.extend_from_slice(format!("{f:08X}").as_bytes());
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    pad4(out);
    out.extend_from_slice(data);
    pad4(out);
}

fn pad4(out: &mut Vec<u8>) {
    while out.len() % 4 != 0 {
        out.push(0);
    }
}

/// A newc archive of regular files `(name, mode bits, data)`, with the trailer.
fn newc_archive(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, (name, perm, data)) in files.iter().enumerate() {
        newc_entry(&mut out, n as u32 + 1, name, 0o100000 | perm, data);
    }
    newc_entry(&mut out, 0, "TRAILER!!!", 0, &[]);
    out
}

/// Builds `fptest` into `<target>/linux-guest`; `Err` says why it cannot.
fn build_fptest() -> Result<PathBuf, String> {
    let cc = Command::new("riscv64-linux-gnu-gcc").arg("--version").output();
    if !matches!(cc, Ok(ref o) if o.status.success()) {
        return Err("no riscv64-linux-gnu-gcc (install the Debian package 'gcc-riscv64-linux-gnu')".into());
    }
    let out = target_dir().join("linux-guest");
    let o = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(repo_root().join("tests/linux-guest"))
        .arg(format!("OUT={}", out.display()))
        .output()
        .map_err(|e| format!("cannot run make: {e}"))?;
    if !o.status.success() {
        panic!(
            "building tests/linux-guest failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    Ok(out.join("fptest"))
}

/// A copy of `initrd` with `/fptest` appended; the file name carries the pid
/// so concurrent runs do not share it.
fn initrd_with(initrd: &Path, prog: &Path) -> PathBuf {
    let mut blob = std::fs::read(initrd).unwrap_or_else(|e| panic!("cannot read {}: {e}", initrd.display()));
    let data = std::fs::read(prog).unwrap_or_else(|e| panic!("cannot read {}: {e}", prog.display()));
    pad4(&mut blob);
    blob.extend(newc_archive(&[("fptest", 0o755, &data)]));
    let path = target_dir().join("linux-guest").join(format!("initramfs-fptest-{}.cpio.gz", std::process::id()));
    std::fs::write(&path, blob).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// Checks that the expected lines appear, whole and in order, in `console`;
/// returns the first one that does not.
fn first_missing<'a>(console: &str, expected: &'a str) -> Option<&'a str> {
    let mut lines = console.lines().map(str::trim_end);
    expected.lines().find(|want| !lines.any(|got| got == *want))
}

#[test]
fn linux_userspace_fp_matches_the_expected_output() {
    let Some((kernel, initrd)) = linux_images("linux_userspace_fp") else { return };
    let prog = match build_fptest() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIP linux_userspace_fp: {why}");
            return;
        }
    };
    let initrd = initrd_with(&initrd, &prog);
    let (k, i) = (kernel.display().to_string(), initrd.display().to_string());
    let start = Instant::now();
    let deadline = start + TIMEOUT;
    let mut console = Console::spawn(&linux_boot_args(&k, &i, "console=ttyS0"));
    let booted = console.wait_for("KITE-BOOT-OK", 0, deadline);
    let prompt = console.wait_for("# ", booted, deadline);
    let booted_in = start.elapsed();
    console.send("/fptest; poweroff -f\n");
    let (status, stderr, text) = console.finish(deadline);
    let _ = std::fs::remove_file(&initrd);
    eprintln!("boot {booted_in:.2?}, fptest + poweroff {:.2?}", start.elapsed() - booted_in);
    let run = text.get(prompt..).unwrap_or_default();
    if let Some(line) = first_missing(run, EXPECTED) {
        panic!("missing or out of order: {line:?}\n--- console after the prompt ---\n{run}");
    }
    assert!(!run.contains("FAIL"), "{run}");
    assert!(status.success(), "exit {status:?}; stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn newc_archive_layout() {
    let a = newc_archive(&[("ab", 0o755, b"xyz")]);
    // ino 1, mode 0o100755, uid, gid, nlink 1, mtime, filesize 3, 4 x dev, namesize 3, check.
    let header = "070701\
                  00000001000081ED000000000000000000000001000000000000000300000000\
                  0000000000000000000000000000000300000000";
    assert_eq!(&a[..110], header.as_bytes());
    // 110 + "ab\0" = 113 -> padded to 116; data 3 -> padded to 120.
    assert_eq!(&a[110..116], b"ab\0\0\0\0");
    assert_eq!(&a[116..120], b"xyz\0");
    let trailer = &a[120..];
    assert!(trailer.starts_with(b"070701"));
    assert_eq!(&trailer[94..102], b"0000000B", "namesize of TRAILER!!!");
    assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    assert_eq!(a.len() % 4, 0);
    assert_eq!(trailer.len(), 124);
}

#[test]
fn expected_lines_are_matched_in_order() {
    let console = "$ /fptest\nx = 1\ny = 2  \nFPTEST-OK 12\n";
    assert_eq!(first_missing(console, "x = 1\nFPTEST-OK 12\n"), None);
    assert_eq!(first_missing(console, "y = 2\nx = 1\n"), Some("x = 1"));
    assert_eq!(first_missing(console, "x = \n"), Some("x = "));
}
