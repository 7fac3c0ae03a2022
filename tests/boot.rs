//! Boot Linux on the `virt` machine: OpenSBI (`-bios default`) + the shared
//! riscv64 `Image` and busybox initramfs from `$KITE_IMAGES` (see
//! `../shared/images/README.md`, or build them with `roms/linux/build.sh`).
//!
//! - `linux_boots_and_powers_off`: `kite.test=poweroff` makes `/init` print
//!   `KITE-BOOT-OK` and power off through SBI SRST / the syscon poweroff.
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

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

const OPENSBI: [&str; 3] = [
    "roms/opensbi/fw_dynamic.bin",
    "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
    "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin",
];

/// The kernel and initramfs, or `None` after printing why the test skips.
fn images(test: &str) -> Option<(String, String)> {
    let dir = images_dir().join("riscv64");
    let (k, i) = (dir.join("Image"), dir.join("initramfs.cpio.gz"));
    if !k.is_file() || !i.is_file() {
        eprintln!(
            "SKIP {test}: no riscv64/Image + initramfs.cpio.gz under {} (set KITE_IMAGES)",
            images_dir().display()
        );
        return None;
    }
    let firmware = OPENSBI.iter().map(|p| repo_root().join(p)).find(|p| p.is_file());
    if firmware.is_none() && !is_external() {
        eprintln!("SKIP {test}: no OpenSBI fw_dynamic.bin (install the Debian package 'opensbi')");
        return None;
    }
    Some((k.display().to_string(), i.display().to_string()))
}

fn boot_args<'a>(kernel: &'a str, initrd: &'a str, append: &'a str) -> Vec<&'a str> {
    vec![
        "-M",
        "virt",
        "-smp",
        "2",
        "-m",
        "256M",
        "-nographic",
        "-bios",
        "default",
        "-kernel",
        kernel,
        "-initrd",
        initrd,
        "-append",
        append,
    ]
}

#[test]
fn linux_boots_and_powers_off() {
    let Some((k, i)) = images("linux_boots_and_powers_off") else { return };
    let out = run_kite(&boot_args(&k, &i, "console=ttyS0 kite.test=poweroff"), BOOT_TIMEOUT);
    eprintln!("boot to poweroff: {:.2?}", out.elapsed);
    assert!(out.stdout.contains("OpenSBI"), "no OpenSBI banner:\n{}", out.dump());
    assert!(out.stdout.contains("Linux version"), "the kernel did not start:\n{}", out.dump());
    assert!(out.stdout.contains("KITE-BOOT-OK"), "no KITE-BOOT-OK:\n{}", out.dump());
    assert!(out.status.success(), "{}", out.dump());
    assert!(!out.stderr.contains("panicked"), "{}", out.dump());
}

/// Output collected so far by a reader thread.
#[derive(Clone, Default)]
struct Collected(Arc<Mutex<Vec<u8>>>);

impl Collected {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Wait until the output (after byte `from`) contains `needle`; returns the
    /// offset just past it.
    fn wait_for(&self, needle: &str, from: usize, deadline: Instant) -> Option<usize> {
        while Instant::now() < deadline {
            let t = self.text();
            if let Some(p) = t.get(from..).and_then(|s| s.find(needle)) {
                return Some(from + p + needle.len());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

#[test]
fn linux_shell_answers_on_the_console() {
    let Some((k, i)) = images("linux_shell_answers_on_the_console") else { return };
    let mut child = spawn_kite_piped(&boot_args(&k, &i, "console=ttyS0"));
    let out = Collected::default();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let sink = out.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.0.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let deadline = Instant::now() + BOOT_TIMEOUT;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let step = |what: &str, at: Option<usize>, child: &mut std::process::Child| -> usize {
        match at {
            Some(p) => p,
            None => {
                let _ = child.kill();
                panic!("no {what} within {BOOT_TIMEOUT:?}; console so far:\n{}", out.text());
            }
        }
    };
    let booted = out.wait_for("KITE-BOOT-OK", 0, deadline);
    let booted = step("KITE-BOOT-OK", booted, &mut child);
    let prompt = out.wait_for("# ", booted, deadline);
    let prompt = step("shell prompt", prompt, &mut child);
    stdin.write_all(b"echo hello-$((6*7))\n").expect("write to the console");
    stdin.flush().expect("flush the console");
    // The echo of the command line shows `$((6*7))`; only the output reads 42.
    let answered = out.wait_for("hello-42", prompt, deadline);
    step("hello-42", answered, &mut child);
    stdin.write_all(b"poweroff -f\n").expect("write to the console");
    drop(stdin);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                panic!("kite did not exit after poweroff -f; console:\n{}", out.text());
            }
        }
    };
    let _ = reader.join();
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "exit {status:?}; stderr:\n{err}\nconsole:\n{}", out.text());
}

#[test]
fn dumpdtb_writes_the_device_tree() {
    if is_external() {
        return;
    }
    let Some((k, i)) = images("dumpdtb_writes_the_device_tree") else { return };
    let dtb = std::env::temp_dir().join(format!("kite-boot-test-{}.dtb", std::process::id()));
    let m = format!("virt,dumpdtb={}", dtb.display());
    let mut args = boot_args(&k, &i, "console=ttyS0 quiet");
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
