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

use std::io::Write;
use std::sync::Arc;

use anyhow::{Context, Result};
use kite::args::{self, Action, Config, Serial};
use kite::console::{self, Session};
use kite::logging;
use kite_core::{ExitCode, VmControl};
use kite_hw::char::ns16550::Sink;
use kite_hw::riscv::{VirtConfig, VirtMachine};
use kite_jit::{Engine, JitOptions};
use kite_riscv::RiscvCpu;

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

    // Read and check everything from the host before touching the terminal.
    let images = boot::Images::read(&cfg)?;
    if cfg.smp > 1 {
        eprintln!("kite: note: -smp {}: only one hart is supported yet; using 1", cfg.smp);
    }

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
    loop {
        let out: Sink = match cfg.serial {
            Serial::Stdio => Box::new(std::io::stdout()),
            Serial::None => Box::new(std::io::sink()),
        };
        match boot_once(cfg, images, session, out)? {
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

/// Build a fresh machine, load it, and run hart 0 until the VM stops.
fn boot_once(cfg: &Config, images: &boot::Images, session: &Session, serial_out: Sink) -> Result<ExitCode> {
    let vm = Arc::new(VmControl::new());
    let machine = VirtMachine::new(VirtConfig { ram_size: cfg.ram_size }, vm.clone(), serial_out)?;
    images.load(&machine)?;
    session.attach(vm.clone(), machine.uart.clone());

    let mut cpu = RiscvCpu::new(0);
    cpu.header.pc = machine.reset_vector;
    let opts = JitOptions { tier: cfg.tier, ..JitOptions::default() };
    let mut engine = Engine::<RiscvCpu>::new(machine.mem.clone(), vm, opts).context("cannot start the translator")?;
    let code = engine.run(&mut cpu);
    if cfg.debug.stats {
        log::info!(target: logging::STATS, "{:#?}", engine.stats());
    }
    Ok(code)
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
        let code = boot_once(&cfg, &images, &Session::new(), Box::new(cap.clone())).unwrap();
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
        let err = boot_once(&cfg, &images, &Session::new(), Box::new(std::io::sink())).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("big.bin") && msg.contains("0x80000000"), "{msg}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
