//! `kite`: the command-line front end.
//!
//! Flow: parse the (QEMU-style) command line -> set up logging, the console
//! and signal handling -> build the machine -> load firmware/kernel -> write
//! the reset vector -> run the hart in the translator until the VM asks to
//! exit -> exit with the guest's status. A guest reset rebuilds the machine
//! from scratch (or exits 0 with `-no-reboot`).
//!
//! Errors are one line on stderr (`kite: error: ...`) with exit status 1;
//! the terminal is restored on every path (normal exit, error, panic hook,
//! signals).

mod boot;
mod microvm;
mod spike;

use std::io::Write;
use std::sync::Arc;

// Translation allocates and frees many small objects (IR blocks, chain slots, map nodes);
// glibc's malloc spent ~5% of a Linux boot in its free lists (docs/performance.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use kite::args::{self, Action, Config, Serial};
use kite::console::{self, Session};
use kite::logging;
use kite_core::{ExitCode, VmControl};
use kite_hw::char::ns16550::Sink;
use kite_hw::riscv::virt::HartLines;
use kite_hw::riscv::{VirtConfig, VirtMachine};
use kite_hw::timer::Clock;
use kite_jit::{Engine, JitOptions};
use kite_riscv::cpu::irq;
use kite_riscv::{HartIrqLine, RiscvCpu};

fn main() {
    let code = match real_main() {
        Ok(code) => code,
        Err(e) => {
            console::restore_terminal();
            let _ = std::io::stdout().flush();
            eprintln!("kite: error: {e:#}");
            1
        }
    };
    console::restore_terminal();
    let _ = std::io::stdout().flush();
    // Like QEMU's exit(code): the OS keeps the low 8 bits.
    std::process::exit(code)
}

fn real_main() -> Result<i32> {
    let cfg = match args::parse(std::env::args_os()) {
        // --help and --version print and exit 0; usage errors become one line.
        Err(e) if args::is_clap_display(&e) => e.exit(),
        Err(e) => anyhow::bail!(args::clap_error_line(&e)),
        Ok(Err(msg)) => anyhow::bail!(msg),
        Ok(Ok(Action::Print(text))) => {
            print!("{text}");
            return Ok(0);
        }
        Ok(Ok(Action::Run(cfg))) => cfg,
    };
    logging::init(&cfg.debug, cfg.logfile.as_deref()).map_err(anyhow::Error::msg)?;
    let prev_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        console::restore_terminal();
        prev_hook(info);
    }));

    let accel = microvm::choose_accel(&cfg)?;
    if cfg.machine == "microvm" {
        let images = microvm::X86Images::read(&cfg)?;
        let session = Session::new();
        console::install_signal_handlers(session.clone()).context("cannot install signal handlers")?;
        if cfg.serial == Serial::Stdio {
            let tty = console::stdin_is_tty();
            if tty {
                console::enter_raw_mode().context("cannot put the terminal in raw mode")?;
            }
            console::spawn_stdin_forwarder(session.clone(), tty).context("cannot start the console thread")?;
        }
        return microvm::run(&cfg, &images, &session);
    }
    if cfg.machine == "spike" {
        return spike::run(&cfg);
    }
    debug_assert_eq!(accel, kite::args::AccelKind::Tcg);
    // Read and check everything from the host before touching the terminal.
    let images = boot::Images::read(&cfg)?;

    let session = Session::new();
    console::install_signal_handlers(session.clone()).context("cannot install signal handlers")?;
    if cfg.serial == Serial::Stdio {
        let tty = console::stdin_is_tty();
        if tty {
            console::enter_raw_mode().context("cannot put the terminal in raw mode")?;
        }
        console::spawn_stdin_forwarder(session.clone(), tty).context("cannot start the console thread")?;
    }
    run(&cfg, &images, &session)
}

/// Boot the machine until the guest (or the host) asks to exit; a guest
/// reset boots a fresh machine unless `-no-reboot`.
fn run(cfg: &Config, images: &boot::Images, session: &Arc<Session>) -> Result<i32> {
    let gdb = start_gdb(cfg)?;
    let mut first = true;
    loop {
        let out: Sink = match cfg.serial {
            Serial::Stdio => Box::new(std::io::stdout()),
            Serial::None => Box::new(std::io::sink()),
        };
        let boot = boot_once(cfg, images, session, out, gdb.as_ref(), std::mem::take(&mut first))?;
        if let (Some(link), ExitCode::Exit(_)) = (&gdb, boot) {
            link.finish(std::time::Duration::from_secs(1));
        }
        match boot {
            ExitCode::Exit(c) => return Ok(c),
            ExitCode::Reset => {
                if let Some(c) = session.host_exit() {
                    return Ok(c);
                }
                if cfg.no_reboot {
                    return Ok(0);
                }
                log::debug!("guest reset: rebuilding the machine");
            }
        }
    }
}

/// `-s`/`-gdb`: start the gdb stub (it outlives machine resets). `-S` without a stub
/// is refused: Kite has no monitor from which the CPUs could be started.
fn start_gdb(cfg: &Config) -> Result<Option<kite_jit::DebugLink<RiscvCpu>>> {
    let Some(listen) = &cfg.gdb else {
        if cfg.freeze {
            anyhow::bail!("-S needs -s or -gdb DEV (a debugger starts the CPUs)");
        }
        return Ok(None);
    };
    let link = kite_jit::DebugLink::new(Arc::new(VmControl::new()));
    kite_gdb::spawn(listen, Arc::new(link.clone()))?;
    Ok(Some(link))
}

/// The machine's clock as the harts' `time` CSR.
#[derive(Debug)]
struct ClockTime(Arc<Clock>);

impl kite_riscv::TimeSource for ClockTime {
    fn now(&self) -> u64 {
        self.0.ticks()
    }
}

/// Hart `cpu`'s interrupt inputs: each sets its `mip` bit and, when raised,
/// kicks the vCPUs (`kick_all`: sets their exit requests and wakes a sleeping
/// scheduler) so the interrupt is seen promptly.
fn hart_lines(cpu: &RiscvCpu, vm: &Arc<VmControl>) -> HartLines {
    let line = |bit: u32| -> Arc<dyn kite_core::IrqLine> {
        let vm = vm.clone();
        Arc::new(HartIrqLine::new(cpu.irq.clone(), bit, Arc::new(move || vm.kick_all())))
    };
    HartLines {
        msip: line(irq::MSI),
        mtip: line(irq::MTI),
        meip: line(irq::MEI),
        seip: line(irq::SEI),
        stip: line(irq::STI),
    }
}

/// Build a fresh machine, load it, and run its harts until the VM stops.
fn boot_once(
    cfg: &Config,
    images: &boot::Images,
    session: &Session,
    serial_out: Sink,
    gdb: Option<&kite_jit::DebugLink<RiscvCpu>>,
    first: bool,
) -> Result<ExitCode> {
    let vm = Arc::new(VmControl::new());
    let mut cpus: Vec<Box<RiscvCpu>> = (0..cfg.smp).map(|h| RiscvCpu::new(h as u64)).collect();
    let lines = cpus.iter().map(|c| hart_lines(c, &vm)).collect();
    let mcfg = VirtConfig { ram_size: cfg.ram_size, harts: cfg.smp };
    let machine = VirtMachine::new(mcfg, vm.clone(), serial_out, lines)?;
    let loaded = images.load(&machine)?;
    if let Some(path) = &cfg.dumpdtb {
        std::fs::write(path, &loaded.fdt).map_err(|e| {
            anyhow::anyhow!("cannot write the device tree to '{}': {}", path.display(), kite::io_msg(&e))
        })?;
        return Ok(ExitCode::Exit(0));
    }
    session.attach(vm.clone(), machine.uart.clone());

    for (cpu, sstc) in cpus.iter_mut().zip(&machine.sstc) {
        cpu.header.pc = machine.reset_vector;
        cpu.time = Some(Arc::new(ClockTime(machine.clock.clone())));
        let sstc = sstc.clone();
        cpu.set_stimecmp_hook(Arc::new(move |v| sstc.set_compare(v)));
    }
    let code = run_tcg(cfg, machine.mem.clone(), vm, &mut cpus, gdb.map(|l| (l, first && cfg.freeze)));
    // The console holds the UART beyond this machine: write out what it buffered.
    machine.uart.flush_output();
    code
}

/// Run the harts on the translator until the VM stops: one host thread each (MTTCG) or in
/// turns on one thread, deterministically, as `kite_jit::thread_per_vcpu` decides.
fn run_tcg(
    cfg: &Config,
    mem: Arc<kite_memory::PhysMap>,
    vm: Arc<VmControl>,
    cpus: &mut [Box<RiscvCpu>],
    gdb: Option<(&kite_jit::DebugLink<RiscvCpu>, bool)>,
) -> Result<ExitCode> {
    if cfg.perfmap {
        kite_jit::perfmap::enable().context("-perfmap: cannot create the map file")?;
    }
    let opts = JitOptions {
        tier: cfg.tier,
        thresh: cfg.thresh,
        baseline: cfg.baseline,
        regions: cfg.regions,
        shared_tbs: cfg.shared_tbs,
        timing: cfg.debug.stats,
        ..JitOptions::default()
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let multi = kite_jit::thread_per_vcpu(cpus.len(), cores, gdb.is_some(), cfg.mttcg);
    if cfg.mttcg == Some(true) && gdb.is_some() && cpus.len() > 1 {
        eprintln!("kite: note: a gdb stub runs the vCPUs on one thread (thread=multi ignored)");
    }
    log::info!(target: logging::STATS, "tcg: {} vCPU(s), {}", cpus.len(), if multi { "one thread each" } else { "one thread" });
    let (code, stats) = if multi {
        kite_jit::run_parallel(mem, vm, opts, cpus)
    } else {
        let mut engine = Engine::<RiscvCpu>::new(mem, vm.clone(), opts).context("cannot start the translator")?;
        if let (Some((link, freeze)), Some(cpu0)) = (gdb, cpus.first()) {
            link.rebind(vm, cpu0, freeze);
            engine.attach_debugger(link);
        }
        let code = engine.run_all(cpus);
        if cfg.debug.stats {
            // The dispatcher thread's own CPU time: steadier than wall time on a busy host
            // for comparing builds (background compiles run on other threads).
            log::info!(target: logging::STATS, "vcpu thread cpu: {} ms", cpu_ms(libc::CLOCK_THREAD_CPUTIME_ID));
        }
        (code, engine.stats())
    };
    if cfg.debug.stats {
        log::info!(target: logging::STATS, "{stats:#?}");
        log::info!(target: logging::STATS, "process cpu: {} ms", cpu_ms(libc::CLOCK_PROCESS_CPUTIME_ID));
    }
    Ok(code)
}

/// CPU time of `clock` (a thread or process CPU-time clock) in milliseconds; 0 if the host
/// cannot tell.
fn cpu_ms(clock: libc::clockid_t) -> u64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid, writable timespec for the call's duration.
    if unsafe { libc::clock_gettime(clock, &mut t) } != 0 {
        return 0;
    }
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn config(args: &[&str]) -> Config {
        let argv = std::iter::once("kite").chain(args.iter().copied()).map(std::ffi::OsString::from);
        match args::parse(argv).unwrap().unwrap() {
            Action::Run(c) => *c,
            Action::Print(p) => panic!("unexpected print: {p}"),
        }
    }

    /// Boot the embedded demo and return its exit and console output.
    fn demo(args: &[&str]) -> (ExitCode, String) {
        let cfg = config(args);
        let images = boot::Images::read(&cfg).unwrap();
        let cap = Capture::default();
        let code = boot_once(&cfg, &images, &Session::new(), Box::new(cap.clone()), None, true).unwrap();
        let out = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
        (code, out)
    }

    const DEMO_EXPECTED: &[&str] = &[
        "Hello from the Kite demo firmware!",
        "fib(90) = 2880067194370816120",
        "primes below 10000 = 1229",
        "crc32(greeting) = 0x00000000b0f0ce46",
        "-7 / 2, -7 % 2 = -3, -1",
        "20! = 2432902008176640000",
        "Powering off through the test finisher. Bye!",
    ];

    fn check_demo(tier: &str) {
        let (code, out) = demo(&["-accel", &format!("tcg,tier={tier}")]);
        for line in DEMO_EXPECTED {
            assert!(out.contains(line), "{tier}: missing {line:?} in:\n{out}");
        }
        assert_eq!(code, ExitCode::Exit(0), "{tier}: {out}");
    }

    #[test]
    fn demo_runs_on_the_interpreter_tier() {
        check_demo("interp");
    }

    #[test]
    fn demo_runs_on_the_jit_tier() {
        check_demo("jit");
    }

    #[test]
    fn kernel_outside_ram_is_a_clean_error() {
        let dir = std::env::temp_dir().join(format!("kite-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let big = dir.join("big.bin");
        std::fs::write(&big, vec![0u8; (1 << 20) + 1]).unwrap();
        let cfg = config(&["-m", "1M", "-bios", "none", "-kernel", big.to_str().unwrap()]);
        let images = boot::Images::read(&cfg).unwrap();
        let err = boot_once(&cfg, &images, &Session::new(), Box::new(std::io::sink()), None, true).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("big.bin") && msg.contains("0x80000000"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
