//! The gdb stub, driven by the real `gdb-multiarch` in batch mode.
//!
//! Each test starts Kite with `-gdb tcp::PORT -S` (a free port, CPUs stopped) on the
//! `gdb_target` guest program (`tests/guest/gdb_target.S`, whose labels mark every spot
//! the scripts stop at), waits until the port listens (read from `/proc/net/tcp`, so no
//! probe connection disturbs the stub), runs a gdb script, and checks gdb's output and
//! Kite's exit status. Both processes run under timeouts and are killed on expiry.
//!
//! Without `gdb-multiarch` (CI installs it) the gdb-driven tests print SKIP and pass; the
//! protocol-level test over a Unix socket needs no gdb.
//!
//! The `linux_*` tests are issue 5's acceptance: `-smp 2` Linux (OpenSBI + the shared
//! riscv64 `Image`, `initramfs.cpio.gz` and `vmlinux` for symbols, from `$KITE_IMAGES`),
//! SKIP when those or OpenSBI are missing. The vmlinux has symbols but no DWARF, so
//! untyped kernel variables are cast (`*(unsigned long *)&jiffies`) and `bt` is only
//! trusted for its innermost frame. Either hart may run a given kernel path, so checks
//! read the registers of the thread gdb reports as the one that stopped.

mod common;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const GDB_TIMEOUT: Duration = Duration::from_secs(60);
const KITE_TIMEOUT: Duration = Duration::from_secs(30);

fn have_gdb(test: &str) -> bool {
    let ok = Command::new("gdb-multiarch").arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP {test}: gdb-multiarch is not installed (apt-get install gdb-multiarch)");
    }
    ok && !is_external()
}

/// A free TCP port on 127.0.0.1 (bound and released; Kite binds it right after).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// Whether something listens on 127.0.0.1:`port` (without connecting to it).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1] == want && f[3] == "0A"
        })
    })
}

/// Kite under test; killed when dropped unless it was waited for.
struct Kite {
    child: Option<Child>,
    port: u16,
}

impl Kite {
    fn start(extra: &[&str]) -> Kite {
        let port = free_port();
        let elf = guest("gdb_target").to_string_lossy().into_owned();
        let dev = format!("tcp::{port}");
        let mut args: Vec<&str> = VIRT_ARGS.to_vec();
        args.push(&elf);
        args.extend(["-gdb", &dev, "-S"]);
        args.extend(extra);
        let mut child = spawn_kite(&args);
        let t0 = Instant::now();
        while !listening(port) {
            if let Ok(Some(st)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("kite exited before listening ({st}): {err}");
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "kite does not listen on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Kite { child: Some(child), port }
    }

    /// Wait for Kite to exit (killing it after the timeout: the test then fails).
    fn wait(mut self) -> Output {
        let child = self.child.take().expect("kite still running");
        wait_with_timeout(child, KITE_TIMEOUT, |_| {})
    }
}

impl Drop for Kite {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Run gdb-multiarch in batch mode against `port` with `cmds`; returns stdout + stderr.
fn gdb(port: u16, cmds: &[&str]) -> String {
    gdb_with(port, cmds, |_| {})
}

/// [`gdb`], calling `meanwhile` with gdb's pid on another thread while it runs.
fn gdb_with(port: u16, cmds: &[&str], meanwhile: impl FnOnce(u32) + Send + 'static) -> String {
    let elf = guest("gdb_target").to_string_lossy().into_owned();
    gdb_run(&elf, port, cmds, GDB_TIMEOUT, meanwhile)
}

/// gdb-multiarch in batch mode with symbols from `elf`, killed (failing the test) after `timeout`.
fn gdb_run(
    elf: &str,
    port: u16,
    cmds: &[&str],
    timeout: Duration,
    meanwhile: impl FnOnce(u32) + Send + 'static,
) -> String {
    let mut args: Vec<String> = ["-batch", "-nx", "-ex", "set architecture riscv:rv64", "-ex", "set pagination off"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.extend(["-ex".into(), format!("file {elf}"), "-ex".into(), format!("target remote 127.0.0.1:{port}")]);
    for c in cmds {
        args.push("-ex".into());
        args.push(c.to_string());
    }
    let mut child = Command::new("gdb-multiarch")
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gdb-multiarch");
    let pid = child.id();
    let side = std::thread::spawn(move || meanwhile(pid));
    let mut out_pipe = child.stdout.take().expect("stdout");
    let mut err_pipe = child.stderr.take().expect("stderr");
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out_pipe.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let t0 = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if t0.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                let out = out_t.join().unwrap_or_default() + &err_t.join().unwrap_or_default();
                panic!("gdb timed out after {timeout:?}:\n{out}");
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for gdb: {e}"),
        }
    }
    let _ = side.join();
    let out = out_t.join().unwrap_or_default() + &err_t.join().unwrap_or_default();
    eprintln!("--- gdb ---\n{out}");
    out
}

/// The address of `sym` in the guest ELF (from gdb's own symbol table, so no host tool
/// besides gdb is needed).
fn addr_of(out: &str, label: &str) -> u64 {
    // Lines like "ADDR step_region = 0x80000062".
    let key = format!("ADDR {label} = ");
    let line = out.lines().find_map(|l| l.strip_prefix(&key)).unwrap_or_else(|| panic!("no {key} in:\n{out}"));
    let hex = line.split_whitespace().next().unwrap_or_default().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad address line {line}"))
}

/// gdb command printing the address of a label as "ADDR label = 0x...".
fn print_addr(label: &str) -> String {
    format!("printf \"ADDR {label} = 0x%lx\\n\", &{label}")
}

/// The values gdb printed for "VAL name = ..." lines.
fn val(out: &str, name: &str) -> u64 {
    let key = format!("VAL {name} = ");
    let all: Vec<&str> = out.lines().filter_map(|l| l.strip_prefix(&key)).collect();
    let v = all.last().unwrap_or_else(|| panic!("no {key} in:\n{out}"));
    let v = v.trim().trim_start_matches("0x");
    u64::from_str_radix(v, 16).unwrap_or_else(|_| panic!("bad value line {v}"))
}

fn print_val(name: &str, expr: &str) -> String {
    format!("printf \"VAL {name} = 0x%lx\\n\", {expr}")
}

#[test]
fn break_stepi_registers_memory_and_monitor() {
    if !have_gdb("break_stepi_registers_memory_and_monitor") {
        return;
    }
    let kite = Kite::start(&[]);
    let out = gdb(
        kite.port,
        &[
            &print_val("reset_pc", "$pc"),
            "break *step_region",
            "continue",
            &print_addr("step_region"),
            &print_val("bp_pc", "$pc"),
            "stepi",
            &print_val("pc1", "$pc"),
            "stepi 2",
            &print_val("pc3", "$pc"),
            &print_val("s3", "$s3"),
            "info registers",
            "p $pc",
            &print_val("mstatus", "$mstatus"),
            &print_val("satp", "$satp"),
            &print_val("priv", "$priv"),
            &print_val("mtvec", "$mtvec"),
            "p $fcsr",
            "x/4xw &data_words",
            "monitor help",
            "monitor xp /4x 0x80000000",
            "monitor info registers",
            "delete",
            "continue",
        ],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}", k.dump());
    assert_eq!(val(&out, "reset_pc"), 0x1000, "-S stops at the reset vector");
    let step = addr_of(&out, "step_region");
    assert_eq!(val(&out, "bp_pc"), step);
    assert!(out.contains("Breakpoint 1, step_region"), "{out}");
    // step_region is four 4-byte instructions: exactly one per stepi.
    assert_eq!(val(&out, "pc1"), step + 4);
    assert_eq!(val(&out, "pc3"), step + 12);
    assert_eq!(val(&out, "s3"), 3);
    // M-mode, no paging; mtvec points at the recording trap handler set up by main.
    assert_eq!(val(&out, "priv"), 3);
    assert_eq!(val(&out, "satp"), 0);
    assert_eq!(val(&out, "mstatus") >> 32 & 0xf, 0xa, "mstatus.SXL/UXL = 64-bit");
    assert_ne!(val(&out, "mtvec"), 0);
    assert!(out.contains("0x11111111\t0x22222222\t0x33333333\t0x44444444"), "x/4x: {out}");
    assert!(out.contains("xp /Nx ADDR"), "monitor help: {out}");
    assert!(out.contains("0000000080000000: 0x"), "monitor xp: {out}");
    assert!(out.contains("mtvec"), "monitor info registers: {out}");
    for reg in ["ra ", "sp ", "pc "] {
        assert!(out.lines().any(|l| l.starts_with(reg)), "info registers lacks {reg}: {out}");
    }
    assert!(out.contains("exited normally"), "{out}");
}

#[test]
fn nexti_over_call_and_compressed_breakpoint() {
    if !have_gdb("nexti_over_call_and_compressed_breakpoint") {
        return;
    }
    let kite = Kite::start(&[]);
    let out = gdb(
        kite.port,
        &[
            "break *step_region",
            "continue",
            "stepi 5",
            &print_addr("step_region"),
            &print_val("at_call", "$pc"),
            "nexti",
            &print_val("after_nexti", "$pc"),
            &print_val("a0", "$a0"),
            "break *compressed_insn",
            "continue",
            &print_addr("compressed_insn"),
            &print_val("at_c", "$pc"),
            &print_val("s2_before", "$s2"),
            "stepi",
            &print_val("after_c", "$pc"),
            &print_val("s2_after", "$s2"),
            "delete",
            "continue",
        ],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}", k.dump());
    let step = addr_of(&out, "step_region");
    assert_eq!(val(&out, "at_call"), step + 20);
    assert_eq!(val(&out, "after_nexti"), step + 24, "nexti steps over the call");
    assert_eq!(val(&out, "a0"), 6, "add_one ran");
    let c = addr_of(&out, "compressed_insn");
    assert_eq!(val(&out, "at_c"), c);
    assert_eq!(val(&out, "after_c"), c + 2, "a 2-byte instruction");
    assert_eq!(val(&out, "s2_before") + 1, val(&out, "s2_after"));
}

#[test]
fn watchpoints_stop_at_the_access() {
    if !have_gdb("watchpoints_stop_at_the_access") {
        return;
    }
    for tier in [&[][..], &["-accel", "tcg,tier=interp"][..]] {
        watchpoints_on(tier);
    }
}

fn watchpoints_on(extra: &[&str]) {
    let kite = Kite::start(extra);
    let out = gdb(
        kite.port,
        &[
            "watch *(long *)&watched_var",
            "continue",
            &print_addr("after_store"),
            &print_val("w_pc", "$pc"),
            "delete",
            "rwatch *(long *)&watched_var",
            "continue",
            &print_addr("after_load"),
            &print_val("r_pc", "$pc"),
            "delete",
            "awatch *(long *)&watched_var",
            "set var *(long *)&watched_var = 7",
            "break *guest_ebreak",
            "continue",
            &print_val("after_awatch", "$pc"),
            "delete",
            "continue",
        ],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}", k.dump());
    assert!(out.contains("Old value = 0") && out.contains("New value = 7"), "{out}");
    // gdb reports a watchpoint once the accessing instruction has completed.
    assert_eq!(val(&out, "w_pc"), addr_of(&out, "after_store"), "write watchpoint");
    assert_eq!(val(&out, "r_pc"), addr_of(&out, "after_load"), "read watchpoint");
    assert!(out.contains("Hardware read watchpoint 2") && out.contains("Value = 7"), "{out}");
    // No access to watched_var is left before guest_ebreak: the breakpoint is next.
    assert!(out.contains("Breakpoint 4, guest_ebreak"), "{out}");
}

#[test]
fn writes_to_memory_and_registers_change_the_result() {
    if !have_gdb("writes_to_memory_and_registers_change_the_result") {
        return;
    }
    // Memory: exit_code becomes the status.
    let kite = Kite::start(&[]);
    let out = gdb(kite.port, &["set var *(long *)&exit_code = 7", "continue"]);
    let k = kite.wait();
    assert_eq!(k.status.code(), Some(7), "{}\n{out}", k.dump());
    assert!(out.contains("exited with code 07"), "{out}");
    // A register at before_exit (a0 = the exit code), with a hardware breakpoint.
    let kite = Kite::start(&[]);
    let out = gdb(kite.port, &["hbreak *before_exit", "continue", "set $a0 = 9", "continue"]);
    let k = kite.wait();
    assert_eq!(k.status.code(), Some(9), "{}\n{out}", k.dump());
    assert!(out.contains("Hardware assisted breakpoint 1"), "{out}");
}

#[test]
fn monitor_system_reset_and_phys() {
    if !have_gdb("monitor_system_reset_and_phys") {
        return;
    }
    let kite = Kite::start(&[]);
    let out = gdb(
        kite.port,
        &[
            "break *step_region",
            "continue",
            "monitor phys on",
            "x/1xw 0x80000000",
            "monitor phys off",
            "monitor system_reset",
            // gdb caches registers across monitor commands (as with QEMU).
            "maintenance flush register-cache",
            &print_val("after_reset", "$pc"),
            &print_val("s3_after_reset", "$s3"),
            "continue",
            &print_val("bp_again", "$pc"),
            &print_addr("step_region"),
            "delete",
            "continue",
        ],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}\n{out}", k.dump());
    assert!(out.contains("memory accesses are physical"), "{out}");
    assert_eq!(val(&out, "after_reset"), 0x1000, "the reset machine is held stopped at its reset vector");
    assert_eq!(val(&out, "s3_after_reset"), 0);
    assert_eq!(val(&out, "bp_again"), addr_of(&out, "step_region"), "breakpoints survive the reset");
    assert!(out.contains("exited normally"), "{out}");
}

#[test]
fn guest_ebreak_still_traps_to_the_guest() {
    if !have_gdb("guest_ebreak_still_traps_to_the_guest") {
        return;
    }
    // A gdb breakpoint elsewhere is active; the guest's own ebreak must reach its trap
    // handler (the program checks it ran exactly once with cause 3) and not stop gdb.
    let kite = Kite::start(&[]);
    let out = gdb(kite.port, &["break *after_load", "continue", "continue"]);
    let k = kite.wait();
    assert!(k.status.success(), "{}\n{out}", k.dump());
    assert!(out.contains("Breakpoint 1, after_load"), "{out}");
    assert!(!out.contains("SIGTRAP"), "{out}");
    assert!(out.contains("exited normally"), "{out}");
}

#[test]
fn detach_resumes_and_a_new_gdb_can_attach() {
    if !have_gdb("detach_resumes_and_a_new_gdb_can_attach") {
        return;
    }
    let kite = Kite::start(&[]);
    // First gdb: make the guest spin at spin_loop, then detach (the guest runs on).
    let out1 = gdb(kite.port, &["set var *(long *)&spin_enable = 1", "detach"]);
    assert!(out1.contains("detached"), "{out1}");
    std::thread::sleep(Duration::from_millis(300));
    // Second gdb: connecting stops the running guest, inside the loop.
    let out2 = gdb(
        kite.port,
        &[&print_addr("spin_loop"), &print_val("pc", "$pc"), "set var *(long *)&spin_release = 1", "continue"],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}\n{out2}", k.dump());
    let pc = val(&out2, "pc");
    let spin = addr_of(&out2, "spin_loop");
    assert!((spin..spin + 8).contains(&pc), "pc {pc:#x} not in spin_loop {spin:#x}");
    assert!(out2.contains("exited normally"), "{out2}");
}

#[test]
fn ctrl_c_stops_a_running_guest() {
    if !have_gdb("ctrl_c_stops_a_running_guest") {
        return;
    }
    let kite = Kite::start(&[]);
    // gdb blocks in `continue` while the guest spins; SIGINT to gdb is what Ctrl-C does:
    // gdb sends the interrupt byte and the stub stops the vCPU through its exit request.
    let out = gdb_with(
        kite.port,
        &["set var *(long *)&spin_enable = 1", "continue", &print_addr("spin_loop"), &print_val("pc", "$pc"), "kill"],
        |pid| {
            std::thread::sleep(Duration::from_millis(1500));
            let _ = Command::new("kill").args(["-INT", &pid.to_string()]).status();
        },
    );
    assert!(out.contains("SIGINT"), "{out}");
    let k = kite.wait();
    let pc = val(&out, "pc");
    let spin = addr_of(&out, "spin_loop");
    assert!((spin..spin + 8).contains(&pc), "pc {pc:#x} not in spin_loop {spin:#x}\n{out}");
    assert!(k.status.success(), "kill ends Kite with status 0: {}", k.dump());
}

#[test]
fn kill_ends_kite() {
    if !have_gdb("kill_ends_kite") {
        return;
    }
    let kite = Kite::start(&[]);
    let t0 = Instant::now();
    let out = gdb(kite.port, &["kill"]);
    let k = kite.wait();
    assert!(k.status.success(), "{}\n{out}", k.dump());
    assert!(t0.elapsed() < Duration::from_secs(20));
}

#[test]
fn threads_with_smp2() {
    if !have_gdb("threads_with_smp2") {
        return;
    }
    let kite = Kite::start(&["-smp", "2"]);
    let out = gdb(
        kite.port,
        &[
            "break *before_exit",
            "continue",
            "info threads",
            "thread 1",
            &print_val("hart_t1", "$mhartid"),
            "thread 2",
            &print_val("hart_t2", "$mhartid"),
            "thread 1",
            "delete",
            "continue",
        ],
    );
    let k = kite.wait();
    assert!(k.status.success(), "{}\n{out}", k.dump());
    assert!(out.contains("Thread 1.1") && out.contains("Thread 1.2"), "one thread per vCPU: {out}");
    assert_eq!(val(&out, "hart_t1"), 0);
    // (Not hart 1's a0: in turns, hart 0 can reach `before_exit` within its first time
    // slice, before hart 1 ran the reset code that sets a0 to its hart id.)
    assert_eq!(val(&out, "hart_t2"), 1);
}

/// The remote protocol over `-gdb unix:PATH`, with a raw client (no gdb needed).
#[test]
fn unix_socket_speaks_the_remote_protocol() {
    if is_external() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("kite-gdb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sock = dir.join("gdb.sock");
    let _ = std::fs::remove_file(&sock);
    let elf = guest("gdb_target").to_string_lossy().into_owned();
    let dev = format!("unix:{}", sock.display());
    let mut args: Vec<&str> = VIRT_ARGS.to_vec();
    args.push(&elf);
    args.extend(["-gdb", &dev, "-S"]);
    let child = spawn_kite(&args);
    let mut guard = Kite { child: Some(child), port: 0 };
    let t0 = Instant::now();
    let mut s = loop {
        if let Ok(s) = std::os::unix::net::UnixStream::connect(&sock) {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no socket at {}", sock.display());
        std::thread::sleep(Duration::from_millis(10));
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let mut ask = |pkt: &str| -> String {
        let sum = pkt.bytes().fold(0u8, |a, b| a.wrapping_add(b));
        s.write_all(format!("${pkt}#{sum:02x}").as_bytes()).expect("send");
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        // Read up to the end of one reply packet ("#xx" after the '$').
        let mut hashes = None;
        while hashes != Some(0) {
            s.read_exact(&mut b).expect("reply");
            got.push(b[0]);
            hashes = match hashes {
                Some(n) => Some(n - 1),
                None if b[0] == b'#' => Some(2),
                None => None,
            };
        }
        s.write_all(b"+").expect("ack");
        // Undo run-length encoding: "X*n" is X repeated (n - 29) more times.
        let mut out = Vec::new();
        let mut i = 0;
        while i < got.len() {
            if got[i] == b'*' && i + 1 < got.len() && !out.is_empty() {
                let last = *out.last().unwrap_or(&b'0');
                out.extend(std::iter::repeat_n(last, (got[i + 1] as usize).saturating_sub(29)));
                i += 2;
            } else {
                out.push(got[i]);
                i += 1;
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let stop = ask("?");
    assert!(stop.contains("$T"), "stop reply: {stop}");
    let pc = ask("p20");
    assert!(pc.contains("$0010000000000000#"), "pc = 0x1000 little-endian: {pc}");
    let satp = ask(&format!("p{:x}", 65 + 0x180));
    assert!(satp.contains("$0000000000000000#"), "satp: {satp}");
    let xml = ask("qXfer:features:read:target.xml:0,400");
    assert!(xml.contains("riscv:rv64"), "{xml}");

    // Kill: gdbstub ends the session (it may close before answering).
    let _ = s.write_all(b"$vKill;1#6e");
    drop(s);
    let k = guard.child.take().map(|c| wait_with_timeout(c, KITE_TIMEOUT, |_| {})).expect("kite");
    assert!(k.status.success(), "{}", k.dump());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn freeze_without_a_stub_is_an_error() {
    if is_external() {
        return;
    }
    let elf = guest("gdb_target").to_string_lossy().into_owned();
    let mut args: Vec<&str> = VIRT_ARGS.to_vec();
    args.push(&elf);
    args.push("-S");
    let k = run_kite(&args, KITE_TIMEOUT);
    assert_eq!(k.status.code(), Some(1), "{}", k.dump());
    assert!(k.stderr.contains("-S needs -s or -gdb"), "{}", k.dump());
    let bad = run_kite(&["-gdb", "tcp::notaport", "-kernel", &elf, "-bios", "none"], KITE_TIMEOUT);
    assert_eq!(bad.status.code(), Some(1), "{}", bad.dump());
    assert_eq!(bad.stderr.lines().count(), 1, "one line: {}", bad.dump());
}

// ---- Linux: the shared riscv64 vmlinux + Image under OpenSBI (issue 5's acceptance) ----

/// gdb time limit for the Linux scripts (a boot to the late stop points takes ~5-10 s).
const LINUX_GDB_TIMEOUT: Duration = Duration::from_secs(90);

/// Kite booting Linux with the gdb stub, CPUs stopped at the reset vector.
struct LinuxBoot {
    kite: Kite,
    vmlinux: String,
    /// One Linux boot at a time (see `ONE_BOOT`); declared last, so released after `kite`
    /// has been dropped (killed).
    _one: std::sync::MutexGuard<'static, ()>,
}

/// Concurrent Linux boots under gdb on a 2-core CI host slow each other down enough to
/// make timer-driven expectations (a jiffies store within the test's patience) flaky.
static ONE_BOOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

impl LinuxBoot {
    /// Starts `-smp 2` Linux with `-gdb tcp::PORT -S`, or `None` after a SKIP line when gdb,
    /// the images or OpenSBI are missing.
    fn start(test: &str) -> Option<LinuxBoot> {
        if !have_gdb(test) {
            return None;
        }
        let (image, initrd) = linux_images(test)?;
        let vmlinux = images_dir().join("riscv64").join("vmlinux");
        if !vmlinux.is_file() {
            eprintln!("SKIP {test}: no riscv64/vmlinux under {} (set KITE_IMAGES)", images_dir().display());
            return None;
        }
        let one = ONE_BOOT.lock().unwrap_or_else(|e| e.into_inner());
        let port = free_port();
        let dev = format!("tcp::{port}");
        let (img, rd) = (image.to_string_lossy().into_owned(), initrd.to_string_lossy().into_owned());
        let mut args = linux_boot_args(&img, &rd, "console=ttyS0 kite.test=poweroff");
        args.extend(["-gdb", &dev, "-S"]);
        let child = spawn_kite(&args);
        // From here on, dropping `kite` kills the emulator (timeouts and failed asserts included).
        let mut kite = Kite { child: Some(child), port };
        let t0 = Instant::now();
        while !listening(port) {
            if let Some(Ok(Some(st))) = kite.child.as_mut().map(|c| c.try_wait()) {
                let k = kite.child.take().map(|c| wait_with_timeout(c, KITE_TIMEOUT, |_| {}));
                panic!("kite exited before listening ({st}): {}", k.map(|k| k.dump()).unwrap_or_default());
            }
            assert!(t0.elapsed() < Duration::from_secs(20), "kite does not listen on port {port}");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(LinuxBoot { kite, vmlinux: vmlinux.to_string_lossy().into_owned(), _one: one })
    }

    /// One gdb session (symbols from vmlinux) running `cmds`.
    fn gdb(&self, cmds: &[&str]) -> String {
        gdb_run(&self.vmlinux, self.kite.port, cmds, LINUX_GDB_TIMEOUT, |_| {})
    }
}

/// Prints the kernel image's bounds as VAL lines (minimal symbols: no DWARF needed).
const KERNEL_BOUNDS: [&str; 2] =
    ["printf \"VAL k_start = 0x%lx\\n\", &_start", "printf \"VAL k_end = 0x%lx\\n\", &_end"];

/// sstatus bits the assertions look at.
const SSTATUS_SIE: u64 = 1 << 1;
const SSTATUS_SPP: u64 = 1 << 8;
const SSTATUS_SUM: u64 = 1 << 18;
const SSTATUS_UXL: u64 = 3 << 32;

/// satp of a kernel with paging on: Sv39/48/57 mode and a root table in guest RAM (256 MiB).
fn assert_paging_on(satp: u64, what: &str) {
    let mode = satp >> 60;
    assert!(matches!(mode, 8..=10), "{what}: satp {satp:#x} mode {mode} is not Sv39/48/57");
    let root = (satp & ((1 << 44) - 1)) << 12;
    assert!((0x8000_0000..0x9000_0000).contains(&root), "{what}: satp {satp:#x} root {root:#x} not in RAM");
}

/// A stopped hart's pc fits its privilege: the kernel image in S-mode, OpenSBI (in the first
/// 2 MiB of RAM, below the kernel) in M-mode, the lower half in U-mode.
fn assert_plausible_pc(out: &str, pc: u64, prv: u64, what: &str) {
    let (ks, ke) = (val(out, "k_start"), val(out, "k_end"));
    let ok = match prv {
        1 => (ks..ke).contains(&pc),
        3 => (0x8000_0000..0x8020_0000).contains(&pc),
        0 => pc < 1 << 56,
        _ => false,
    };
    assert!(ok, "{what}: pc {pc:#x} implausible at privilege {prv} (kernel {ks:#x}..{ke:#x}):\n{out}");
}

/// `x/2i $pc` outputs in order: (this instruction's address, the next one's, the mnemonic).
fn disassembled_pairs(out: &str) -> Vec<(u64, u64, String)> {
    let addr = |l: &str| {
        let hex = l.trim_start_matches("=>").split_whitespace().next().unwrap_or_default();
        u64::from_str_radix(hex.trim_start_matches("0x").trim_end_matches(':'), 16).ok()
    };
    let lines: Vec<&str> = out.lines().collect();
    let mut pairs = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with("=> 0x") {
            continue;
        }
        let next = lines.get(i + 1).and_then(|n| addr(n));
        let mnemonic = l.split('\t').nth(1).unwrap_or_default().to_string();
        if let (Some(a), Some(b)) = (addr(l), next) {
            pairs.push((a, b, mnemonic));
        }
    }
    pairs
}

/// The value gdb printed for register `reg` in `info registers` ("pc  0x... ...").
fn info_reg(out: &str, reg: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.split_whitespace().next() == Some(reg))
        .unwrap_or_else(|| panic!("info registers lacks {reg}:\n{out}"));
    let hex = line.split_whitespace().nth(1).unwrap_or_default().trim_start_matches("0x");
    u64::from_str_radix(hex, 16).unwrap_or_else(|_| panic!("bad info registers line {line}"))
}

/// `break start_kernel` (a virtual address, MMU on), `bt`, the CSRs the kernel has set, then
/// `stepi` x N through start_kernel's straight-line prologue (2- and 4-byte instructions),
/// and `kill` ends Kite.
#[test]
fn linux_break_start_kernel() {
    const STEPS: usize = 8;
    let Some(boot) = LinuxBoot::start("linux_break_start_kernel") else { return };
    let mut cmds: Vec<String> = vec![
        "break start_kernel".into(),
        "continue".into(),
        "bt".into(),
        print_val("pc", "$pc"),
        print_val("sk", "&start_kernel"),
        print_val("satp", "$satp"),
        print_val("sstatus", "$sstatus"),
        print_val("priv", "$priv"),
    ];
    cmds.extend(KERNEL_BOUNDS.iter().map(|c| c.to_string()));
    for i in 0..STEPS {
        cmds.extend(["x/2i $pc".into(), "stepi".into(), print_val(&format!("step{i}"), "$pc")]);
    }
    cmds.push("kill".into());
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = boot.gdb(&cmds);
    let k = boot.kite.wait();
    assert!(k.status.success(), "kill ends Kite with status 0: {}\n{out}", k.dump());

    assert!(out.contains("hit Breakpoint 1, ") && out.contains(" in start_kernel ()"), "{out}");
    assert_eq!(val(&out, "pc"), val(&out, "sk"), "{out}");
    // No DWARF: gdb unwinds by prologue analysis; the innermost frame is what it must get right.
    assert!(out.lines().any(|l| l.starts_with("#0 ") && l.ends_with(" in start_kernel ()")), "bt: {out}");
    // head.S turned paging on and entered start_kernel in S-mode with interrupts off.
    assert_eq!(val(&out, "priv"), 1, "S-mode");
    assert_paging_on(val(&out, "satp"), "start_kernel");
    let sstatus = val(&out, "sstatus");
    assert_eq!(sstatus & (SSTATUS_SIE | SSTATUS_SUM), 0, "sstatus {sstatus:#x}: SIE and SUM clear");
    assert_eq!(sstatus & SSTATUS_UXL, 2 << 32, "sstatus {sstatus:#x}: UXL = 64-bit");
    assert_plausible_pc(&out, val(&out, "pc"), 1, "start_kernel");

    // Each stepi advances exactly one instruction: to the next line of `x/2i $pc`.
    let pairs = disassembled_pairs(&out);
    assert_eq!(pairs.len(), STEPS, "one x/2i per step: {out}");
    let mut prev = val(&out, "pc");
    let mut lens = Vec::new();
    for (i, (at, next, mnemonic)) in pairs.iter().enumerate() {
        assert_eq!(*at, prev, "step {i} starts where the last ended: {out}");
        assert!(
            !matches!(mnemonic.as_str(), "j" | "jal" | "jalr" | "jr" | "ret" | "call" | "tail")
                && !mnemonic.starts_with('b'),
            "start_kernel's prologue now has a control transfer ({mnemonic}); step elsewhere: {out}"
        );
        let pc = val(&out, &format!("step{i}"));
        assert_eq!(pc, *next, "stepi {i} over {mnemonic} at {at:#x}: {out}");
        lens.push(next - at);
        prev = pc;
    }
    assert!(lens.iter().all(|l| *l == 2 || *l == 4), "{lens:?}");
    assert!(lens.contains(&2) && lens.contains(&4), "both compressed and full-size steps: {lens:?}");
}

/// One `-smp 2` boot, two gdb sessions. The first stops at start_kernel and detaches; the
/// second attaches to the running kernel (a plausible pc), `watch`es jiffies until the timer
/// tick stores to it, `hbreak`s do_sys_openat2 (init's first open, from user space), checks
/// `info threads` with both harts online and the CSRs of a syscall, and `kill`s Kite.
#[test]
fn linux_watch_hbreak_threads_detach_kill() {
    let Some(boot) = LinuxBoot::start("linux_watch_hbreak_threads_detach_kill") else { return };
    let out1 = boot.gdb(&["break start_kernel", "continue", "delete", "detach"]);
    assert!(out1.contains(" in start_kernel ()") && out1.contains("detached"), "{out1}");
    // OpenSBI's boot-hart lottery may pick either hart; the other waits in the firmware with
    // the MMU off, where the kernel's virtual addresses mean nothing: work on the boot hart.
    let boot_thread = out1
        .lines()
        .find_map(|l| l.strip_prefix("Thread ")?.strip_suffix(" in start_kernel ()"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("which thread stopped at start_kernel?\n{out1}"))
        .to_string();

    let online = "*(unsigned long *)&__cpu_online_mask";
    let mut cmds: Vec<String> = KERNEL_BOUNDS.iter().map(|c| c.to_string()).collect();
    cmds.extend([
        print_val("attach_pc", "$pc"),
        print_val("attach_priv", "$priv"),
        format!("thread {boot_thread}"),
        print_val("satp0", "$satp"),
        print_val("watch_priv", "$priv"),
        // jiffies has no debug type: watch it as the unsigned long it is.
        "watch *(unsigned long *)&jiffies".into(),
        "continue".into(),
        print_val("jiffies_now", "*(unsigned long *)&jiffies"),
        print_val("w_pc", "$pc"),
        print_val("w_priv", "$priv"),
        "delete".into(),
        "hbreak do_sys_openat2".into(),
        "continue".into(),
        // The hart that hit it (either may run init) is the selected thread.
        print_val("satp", "$satp"),
        print_val("sstatus", "$sstatus"),
        print_val("priv", "$priv"),
        print_val("pc", "$pc"),
        "info registers".into(),
        print_val("online", online),
        "info threads".into(),
        "thread 1".into(),
        print_val("t1_hart", "$mhartid"),
        print_val("t1_pc", "$pc"),
        print_val("t1_priv", "$priv"),
        "thread 2".into(),
        print_val("t2_hart", "$mhartid"),
        print_val("t2_pc", "$pc"),
        print_val("t2_priv", "$priv"),
        "kill".into(),
    ]);
    let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
    let out = boot.gdb(&cmds);
    let k = boot.kite.wait();
    assert!(k.status.success(), "kill ends Kite with status 0: {}\n{out}", k.dump());

    // Attaching stopped the kernel mid-boot.
    assert_plausible_pc(&out, val(&out, "attach_pc"), val(&out, "attach_priv"), "on attach");

    // The timer tick's store to jiffies, reported once it has completed.
    assert!(out.contains("Hardware watchpoint 1: *(unsigned long *)&jiffies"), "{out}");
    let num = |key: &str| -> u64 {
        let l = out.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key}:\n{out}"));
        l.trim().parse().unwrap_or_else(|_| panic!("bad {key}{l}"))
    };
    let new = num("New value = ");
    // The old value is read when the watchpoint is set; if the attach stopped the hart in
    // M-mode (OpenSBI serving an SBI call), kernel virtual addresses are not translated
    // there, and gdb prints `<unreadable>` (QEMU behaves the same).
    if !out.contains("Old value = <unreadable>") {
        let old = num("Old value = ");
        assert!(new > old && new - old < 100, "jiffies {old} -> {new}");
    } else {
        assert_eq!(val(&out, "watch_priv"), 3, "only M-mode makes jiffies unreadable: {out}");
    }
    assert_eq!(val(&out, "jiffies_now"), new, "the store is done when gdb reports it");
    assert_eq!(val(&out, "w_priv"), 1);
    assert_plausible_pc(&out, val(&out, "w_pc"), 1, "after the jiffies store");
    assert!(
        ["do_timer ()", "tick_do_update_jiffies64 ()"].iter().any(|f| out.contains(&format!(" in {f}"))),
        "the store is in the tick code: {out}"
    );

    // Hardware breakpoint, late in boot: both harts are online and show as two threads.
    assert!(out.contains("Hardware assisted breakpoint 2 at"), "{out}");
    assert!(out.contains("Breakpoint 2, ") && out.contains(" in do_sys_openat2 ()"), "{out}");
    assert_eq!(val(&out, "online"), 0b11, "cpu_online_mask: both harts up");
    assert!(out.contains("Thread 1.1") && out.contains("Thread 1.2"), "info threads: {out}");
    assert_eq!(val(&out, "t1_hart"), 0);
    assert_eq!(val(&out, "t2_hart"), 1);
    assert_plausible_pc(&out, val(&out, "t1_pc"), val(&out, "t1_priv"), "thread 1");
    assert_plausible_pc(&out, val(&out, "t2_pc"), val(&out, "t2_priv"), "thread 2");
    assert!([val(&out, "t1_pc"), val(&out, "t2_pc")].contains(&val(&out, "pc")), "the hitting thread is one of them");

    // A syscall from init: S-mode, entered from U (SPP clear), interrupts back on, SUM clear,
    // and satp on init's own page table (not the one start_kernel ran on).
    assert_eq!(val(&out, "priv"), 1);
    let sstatus = val(&out, "sstatus");
    assert_eq!(sstatus & (SSTATUS_SPP | SSTATUS_SUM | SSTATUS_SIE), SSTATUS_SIE, "sstatus {sstatus:#x}");
    let (satp0, satp) = (val(&out, "satp0"), val(&out, "satp"));
    assert_paging_on(satp, "do_sys_openat2");
    assert_eq!(satp >> 60, satp0 >> 60, "the same paging mode throughout");
    assert_ne!(satp & ((1 << 44) - 1), satp0 & ((1 << 44) - 1), "init's page table");
    // info registers agrees with $pc; the stack is in the kernel half.
    assert_eq!(info_reg(&out, "pc"), val(&out, "pc"));
    assert_plausible_pc(&out, info_reg(&out, "pc"), 1, "info registers");
    assert!(info_reg(&out, "sp") >> 56 == 0xff, "kernel stack: {out}");
}
