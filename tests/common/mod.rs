//! Shared harness for Kite's guest-level integration tests.
//!
//! - [`guest`] builds the bare-metal programs in `tests/guest/` once per test
//!   binary (`make OUT=<target>/guest`, guarded by a `OnceLock` and a file
//!   lock so concurrent test binaries do not race) and returns the ELF path.
//! - [`run_kite`] runs the emulator with a hard timeout: on expiry the child
//!   is killed and the test fails with whatever output it produced, so no test
//!   can hang.
//! - `KITE_TEST_EMULATOR=<command>` (e.g. `qemu-system-riscv64`) runs that
//!   command instead of Kite, to validate the guest programs themselves on a
//!   reference emulator; Kite-only checks (translator tiers, QUIRK lines,
//!   host-error messages) are skipped then.
//!
//! Pitfall: each integration test binary compiles this module separately and
//! uses only part of it, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

/// The exact arguments every guest run starts with (same as QEMU's).
pub const VIRT_ARGS: [&str; 6] = ["-M", "virt", "-nographic", "-bios", "none", "-kernel"];

/// Captured result of one emulator run.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    /// Everything the run printed, for failure messages.
    pub fn dump(&self) -> String {
        format!(
            "status: {:?} after {:.2?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.elapsed, self.stdout, self.stderr
        )
    }
}

/// The alternative emulator command from `KITE_TEST_EMULATOR`, if set.
pub fn external_emulator() -> Option<String> {
    std::env::var("KITE_TEST_EMULATOR").ok().filter(|s| !s.trim().is_empty())
}

/// True when the tests run against `KITE_TEST_EMULATOR` instead of Kite.
pub fn is_external() -> bool {
    external_emulator().is_some()
}

/// The repository root (this file lives in `<root>/tests/common/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Cargo's target directory: `CARGO_TARGET_DIR` if set (relative paths are
/// relative to the workspace root), else derived from the kite binary path
/// (`<target>/<profile>/kite`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() { dir } else { repo_root().join(dir) };
    }
    let exe = Path::new(env!("CARGO_BIN_EXE_kite"));
    match exe.parent().and_then(Path::parent) {
        Some(dir) => dir.to_path_buf(),
        None => repo_root().join("target"),
    }
}

fn build_guests() -> Result<PathBuf, String> {
    let cc = Command::new("riscv64-unknown-elf-gcc").arg("--version").output();
    if !matches!(cc, Ok(ref o) if o.status.success()) {
        return Err("riscv64-unknown-elf-gcc not found: run `bash .ci/run` or install \
                    gcc-riscv64-unknown-elf and picolibc-riscv64-unknown-elf"
            .into());
    }
    let out = target_dir().join("guest");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    // Several test binaries may build at once (e.g. parallel cargo runs):
    // serialise make with an exclusive lock on a file in the output dir.
    let lock_path = out.join(".build.lock");
    let lock = File::create(&lock_path).map_err(|e| format!("cannot create {}: {e}", lock_path.display()))?;
    lock_exclusive(&lock).map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let result = Command::new("make")
        .arg("-s")
        .arg("-C")
        .arg(repo_root().join("tests/guest"))
        .arg(format!("OUT={}", out.display()))
        .output();
    // Dropping the file releases the lock.
    drop(lock);
    match result {
        Ok(o) if o.status.success() => Ok(out),
        Ok(o) => Err(format!(
            "building the guest programs failed ({}):\n{}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )),
        Err(e) => Err(format!("cannot run make: {e} (install make, or run `bash .ci/run`)")),
    }
}

/// Blocks until `file` is exclusively locked (released when it is closed).
/// (`File::lock` would do, but it is newer than the workspace's MSRV.)
fn lock_exclusive(file: &File) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only operates on the descriptor, which `file` keeps open
    // for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Path of guest program `name` (e.g. "rv64i" -> `<target>/guest/rv64i.elf`),
/// building all programs on first use.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match BUILT.get_or_init(build_guests) {
        Ok(dir) => dir.join(format!("{name}.elf")),
        Err(msg) => panic!("{msg}"),
    }
}

/// The command to run: Kite, or `KITE_TEST_EMULATOR` (split on whitespace,
/// so it may carry its own leading arguments).
fn emulator_command() -> Command {
    match external_emulator() {
        Some(cmdline) => {
            let mut parts = cmdline.split_whitespace();
            let mut cmd = Command::new(parts.next().unwrap_or("false"));
            cmd.args(parts);
            cmd
        }
        None => Command::new(env!("CARGO_BIN_EXE_kite")),
    }
}

/// Starts the emulator with `args`, stdin closed and output captured.
pub fn spawn_kite(args: &[&str]) -> Child {
    let mut cmd = emulator_command();
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // A panic must show up as such, and no debug logging may pollute stderr.
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG");
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start emulator {:?}: {e}", cmd.get_program()),
    }
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Waits for `child` up to `timeout`; kills it and fails the test on expiry.
/// `on_start` runs once the output readers are in place (used to signal the
/// child while it runs).
pub fn wait_with_timeout(mut child: Child, timeout: Duration, on_start: impl FnOnce(&Child)) -> Output {
    let start = Instant::now();
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    on_start(&child);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() >= timeout => {
                let _ = child.kill();
                let status = child.wait().ok();
                let stdout = out.join().unwrap_or_default();
                let stderr = err.join().unwrap_or_default();
                panic!(
                    "emulator timed out after {timeout:?} and was killed ({status:?})\n--- stdout ---\n{stdout}\n\
                     --- stderr ---\n{stderr}"
                );
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for the emulator failed: {e}"),
        }
    };
    let elapsed = start.elapsed();
    Output { status, stdout: out.join().unwrap_or_default(), stderr: err.join().unwrap_or_default(), elapsed }
}

/// Runs the emulator with `args`; kills it and fails the test after `timeout`.
pub fn run_kite(args: &[&str], timeout: Duration) -> Output {
    wait_with_timeout(spawn_kite(args), timeout, |_| {})
}

/// Translator tier for a guest run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Kite's default (or the external emulator as is).
    Default,
    /// `-accel tcg,tier=interp`: the reference IR interpreter.
    Interp,
    /// `-accel tcg,tier=jit`: Cranelift for every block (the default runs cold blocks as
    /// baseline code and only hot ones through Cranelift).
    Jit,
}

impl Tier {
    /// The `-accel` value selecting this tier, if it is not the default.
    pub fn accel(self) -> Option<&'static str> {
        match self {
            Tier::Default => None,
            Tier::Interp => Some("tcg,tier=interp"),
            Tier::Jit => Some("tcg,tier=jit"),
        }
    }
}

/// Runs guest program `name` on the virt machine with the standard arguments.
/// Returns `None` for a Kite-only tier when an external emulator is in use.
pub fn run_guest(name: &str, tier: Tier, timeout: Duration) -> Option<Output> {
    if tier != Tier::Default && is_external() {
        eprintln!("skipping {name} with {tier:?}: KITE_TEST_EMULATOR is set");
        return None;
    }
    let elf = guest(name);
    let elf = elf.to_string_lossy().into_owned();
    let mut args: Vec<&str> = VIRT_ARGS.to_vec();
    args.push(&elf);
    if let Some(a) = tier.accel() {
        args.extend(["-accel", a]);
    }
    let out = run_kite(&args, timeout);
    eprintln!("{name} ({tier:?}): {:.2?}", out.elapsed);
    Some(out)
}

/// Asserts a guest run passed: exit status 0, "PASS <name>" printed, no FAIL
/// line, no unexpected trap, no panic; on Kite also no QUIRK line (those mark
/// reference-emulator deviations from the spec that the guest tolerates).
pub fn assert_passed(name: &str, out: &Output) {
    let problem = if !out.status.success() {
        Some("non-zero exit status")
    } else if !out.stdout.lines().any(|l| l.trim_end() == format!("PASS {name}")) {
        Some("no PASS line")
    } else if out.stdout.lines().any(|l| l.starts_with("FAIL")) {
        Some("a FAIL line")
    } else if out.stdout.contains("UNEXPECTED TRAP") {
        Some("an unexpected trap")
    } else if out.stderr.contains("panicked") {
        Some("a panic")
    } else if !is_external() && out.stdout.lines().any(|l| l.starts_with("QUIRK")) {
        Some("a QUIRK line (behaviour that deviates from the spec)")
    } else {
        None
    };
    if let Some(problem) = problem {
        panic!("guest {name} failed ({problem}):\n{}", out.dump());
    }
}

/// Where the Linux guest images live: `$KITE_IMAGES`, else `../shared/images`
/// beside the repository (as `.ci/run` sets it).
pub fn images_dir() -> PathBuf {
    match std::env::var_os("KITE_IMAGES") {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => repo_root().join("../shared/images"),
    }
}

/// Like [`spawn_kite`], with stdin a pipe the test writes to (the console).
pub fn spawn_kite_piped(args: &[&str]) -> Child {
    let mut cmd = emulator_command();
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUST_LOG");
    match cmd.spawn() {
        Ok(child) => child,
        Err(e) => panic!("cannot start emulator {:?}: {e}", cmd.get_program()),
    }
}

/// Where `-bios default` finds OpenSBI's `fw_dynamic.bin` (the same order as Kite's).
pub const LINUX_OPENSBI_PATHS: [&str; 3] = [
    "roms/opensbi/fw_dynamic.bin",
    "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
    "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin",
];

/// The riscv64 `Image` and `initramfs.cpio.gz` from [`images_dir`], or `None`
/// after printing a SKIP line for `test` (no images, or no OpenSBI for Kite).
pub fn linux_images(test: &str) -> Option<(PathBuf, PathBuf)> {
    let dir = images_dir().join("riscv64");
    let (k, i) = (dir.join("Image"), dir.join("initramfs.cpio.gz"));
    if !k.is_file() || !i.is_file() {
        eprintln!(
            "SKIP {test}: no riscv64/Image + initramfs.cpio.gz under {} (set KITE_IMAGES)",
            images_dir().display()
        );
        return None;
    }
    let firmware = LINUX_OPENSBI_PATHS.iter().map(|p| repo_root().join(p)).find(|p| p.is_file());
    if firmware.is_none() && !is_external() {
        eprintln!("SKIP {test}: no OpenSBI fw_dynamic.bin (install the Debian package 'opensbi')");
        return None;
    }
    Some((k, i))
}

/// The `virt` Linux boot command line used by the boot tests (2 harts, 256 MiB, OpenSBI).
pub fn linux_boot_args<'a>(kernel: &'a str, initrd: &'a str, append: &'a str) -> Vec<&'a str> {
    let fixed = ["-M", "virt", "-smp", "2", "-m", "256M", "-nographic", "-bios", "default"];
    let mut args = fixed.to_vec();
    args.extend(["-kernel", kernel, "-initrd", initrd, "-append", append]);
    args
}

/// An emulator whose serial console the test drives: stdin is written with
/// [`Console::send`], stdout is collected by a reader thread. Every wait has a
/// deadline; on failure the child is killed and the test panics with the
/// console so far.
pub struct Console {
    child: Child,
    stdin: Option<std::process::ChildStdin>,
    out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Console {
    /// Starts the emulator (Kite or `KITE_TEST_EMULATOR`) with `args`.
    pub fn spawn(args: &[&str]) -> Console {
        let mut child = spawn_kite_piped(args);
        let stdin = child.stdin.take();
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = out.clone();
        let stdout = child.stdout.take();
        let reader = thread::spawn(move || {
            let Some(mut stdout) = stdout else { return };
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(&buf[..n]);
            }
        });
        Console { child, stdin, out, reader: Some(reader) }
    }

    /// Everything the console printed so far, `\r` removed.
    pub fn text(&self) -> String {
        let bytes = self.out.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// Waits until the console (after offset `from` of [`Console::text`])
    /// shows `needle`; returns the offset just past it.
    pub fn wait_for(&mut self, needle: &str, from: usize, deadline: Instant) -> usize {
        loop {
            let t = self.text();
            if let Some(p) = t.get(from..).and_then(|s| s.find(needle)) {
                return from + p + needle.len();
            }
            if Instant::now() >= deadline || matches!(self.child.try_wait(), Ok(Some(_))) {
                let _ = self.child.kill();
                panic!("no {needle:?} on the console; console so far:\n{t}");
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Types `line` on the console.
    pub fn send(&mut self, line: &str) {
        use std::io::Write;
        let ok = match self.stdin.as_mut() {
            Some(s) => s.write_all(line.as_bytes()).and_then(|_| s.flush()).is_ok(),
            None => false,
        };
        if !ok {
            let _ = self.child.kill();
            panic!("cannot write {line:?} to the console; console so far:\n{}", self.text());
        }
    }

    /// Closes stdin and waits for the emulator to exit; returns its status,
    /// stderr and the whole console.
    pub fn finish(mut self, deadline: Instant) -> (ExitStatus, String, String) {
        drop(self.stdin.take());
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    panic!("the emulator did not exit; console:\n{}", self.text());
                }
            }
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let err = drain(self.child.stderr.take()).join().unwrap_or_default();
        (status, err, self.text())
    }
}

impl Drop for Console {
    /// A failing test must not leave the emulator running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
