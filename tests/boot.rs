//! Boot Linux on the `virt` machine: OpenSBI (`-bios default`) + the shared
//! riscv64 `Image` and busybox initramfs from `$KITE_IMAGES` (see
//! `../shared/images/README.md`, or build them with `roms/linux/build.sh`).
//!
//! - `linux_boots_and_powers_off`: `kite.test=poweroff` makes `/init` print
//!   `KITE-BOOT-OK` and power off through SBI SRST / the syscon poweroff; also with
//!   one host thread per hart and with the harts in turns on one thread.
//! - `linux_shell_answers_on_the_console`: no `kite.test`, so `/init` starts
//!   an interactive shell on ttyS0; the test types a command on stdin (which
//!   reaches the guest through the UART's RX interrupt and the PLIC) and
//!   checks the answer, then `poweroff -f` (plain `poweroff` signals PID 1,
//!   which the `/init` script ignores, on QEMU too).
//! - `dumpdtb_writes_the_device_tree`: `-machine dumpdtb=FILE` exits 0 and the
//!   blob describes two harts, the initrd and the command line.
//!
//! When the images or an OpenSBI `fw_dynamic.bin` are missing, each test
//! prints a SKIP line and passes (CI installs Debian's `opensbi`).

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The kernel and initramfs as strings, or `None` after printing why the test skips.
fn images(test: &str) -> Option<(String, String)> {
    let (k, i) = linux_images(test)?;
    Some((k.display().to_string(), i.display().to_string()))
}

/// One Linux boot at a time: concurrent boots (each with a vCPU, compile and timer
/// threads) on a 2-core CI host slow each other down enough to trip the guest's own
/// timeouts.
static ONE_BOOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Boot to `KITE-BOOT-OK`; `both_harts`: also require the second hart online.
fn boot_to_poweroff(test: &str, extra: &[&str], both_harts: bool) {
    let Some((k, i)) = images(test) else { return };
    let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let mut args = linux_boot_args(&k, &i, "console=ttyS0 kite.test=poweroff");
    args.extend(extra);
    let out = run_kite(&args, BOOT_TIMEOUT);
    eprintln!("boot to poweroff ({extra:?}): {:.2?}", out.elapsed);
    assert!(out.stdout.contains("OpenSBI"), "no OpenSBI banner:\n{}", out.dump());
    assert!(out.stdout.contains("Linux version"), "the kernel did not start:\n{}", out.dump());
    if both_harts {
        assert!(out.stdout.contains("Brought up 1 node, 2 CPUs"), "the second hart did not come up:\n{}", out.dump());
    }
    assert!(out.stdout.contains("KITE-BOOT-OK"), "no KITE-BOOT-OK:\n{}", out.dump());
    assert!(out.status.success(), "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
}

#[test]
fn linux_boots_and_powers_off() {
    boot_to_poweroff("linux_boots_and_powers_off", &[], false);
}

/// The same with one host thread per hart (MTTCG; both harts must come online) and, below,
/// with both in turns on one thread: the default depends on the host's core count, so both
/// are named explicitly.
#[test]
fn linux_boots_with_a_thread_per_hart() {
    boot_to_poweroff("linux_boots_with_a_thread_per_hart", &["-accel", "tcg,thread=multi"], true);
}

#[test]
fn linux_boots_with_harts_in_turns() {
    // Not `both_harts`: once in a CI run (two boots at once on 2 cores, before they were
    // serialised) the guest gave up on CPU1 after its 1 s bring-up timeout in this mode.
    boot_to_poweroff("linux_boots_with_harts_in_turns", &["-accel", "tcg,thread=single"], false);
}

#[test]
fn linux_shell_answers_on_the_console() {
    let Some((k, i)) = images("linux_shell_answers_on_the_console") else { return };
    let _one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut console = Console::spawn(&linux_boot_args(&k, &i, "console=ttyS0"));
    let booted = console.wait_for("KITE-BOOT-OK", 0, deadline);
    let prompt = console.wait_for("# ", booted, deadline);
    console.send("echo hello-$((6*7))\n");
    // The echo of the command line shows `$((6*7))`; only the output reads 42.
    console.wait_for("hello-42", prompt, deadline);
    console.send("poweroff -f\n");
    let (status, err, text) = console.finish(deadline);
    assert!(status.success(), "exit {status:?}; stderr:\n{err}\nconsole:\n{text}");
}

#[test]
fn dumpdtb_writes_the_device_tree() {
    if is_external() {
        return;
    }
    let Some((k, i)) = images("dumpdtb_writes_the_device_tree") else { return };
    let dtb = std::env::temp_dir().join(format!("kite-boot-test-{}.dtb", std::process::id()));
    let m = format!("virt,dumpdtb={}", dtb.display());
    let mut args = linux_boot_args(&k, &i, "console=ttyS0 quiet");
    args[1] = &m;
    let out = run_kite(&args, Duration::from_secs(30));
    assert!(out.status.success(), "{}", out.dump());
    let blob = std::fs::read(&dtb).expect("dumpdtb wrote the file");
    let _ = std::fs::remove_file(&dtb);
    assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed], "FDT magic");
    let has = |s: &[u8]| blob.windows(s.len()).any(|w| w == s);
    assert!(has(b"console=ttyS0 quiet\0"));
    assert!(has(b"cpu@1\0") && !has(b"cpu@2\0"), "two harts");
    assert!(has(b"linux,initrd-start\0") && has(b"linux,initrd-end\0"));
    assert!(has(b"sifive,plic-1.0.0\0") && has(b"google,goldfish-rtc\0") && has(b"syscon-poweroff\0"));
    // dtc, when present, must accept it.
    if let Ok(o) = std::process::Command::new("dtc")
        .args(["-I", "dtb", "-O", "dts", "-o", "/dev/null"])
        .arg(PathBuf::from("/dev/stdin"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin.take().map(|mut s| s.write_all(&blob));
            c.wait_with_output()
        })
    {
        assert!(o.status.success(), "dtc rejects the blob: {}", String::from_utf8_lossy(&o.stderr));
    }
}
