//! Accelerator choice, and the x86_64 `microvm` boot flow on KVM.
//!
//! [`choose_accel`] walks `-accel a:b` (or the default: KVM when host and
//! guest architecture match and /dev/kvm works, else tcg) and returns the
//! first accelerator that can run the machine, or one line saying why none
//! can. [`run`] builds a microVM on KVM, loads the kernel, and runs the
//! vCPUs; a guest reset (triple fault, i8042) reboots it, or ends Kite with
//! status 0 under `-no-reboot`, as in QEMU.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use kite::args::{AccelKind, Config, Serial};
use kite::console::Session;
use kite::logging::ACCEL;
use kite_core::{ExitCode, IoExit, VmControl};
use kite_hw::char::ns16550::Sink;
use kite_hw::x86::{MicroVm, MicroVmConfig, X86Entry};
use kite_kvm::KvmVm;
use kite_x86::BootEntry;

/// The guest architecture of a machine.
fn guest_arch(machine: &str) -> &'static str {
    if machine == "microvm" {
        "x86_64"
    } else {
        "riscv64"
    }
}

/// Why `kind` cannot run `machine` here, or `None` if it can.
fn unusable(kind: AccelKind, machine: &str) -> Option<String> {
    let (host, guest) = (std::env::consts::ARCH, guest_arch(machine));
    match kind {
        AccelKind::Kvm if host != guest => Some(format!("KVM cannot run a {guest} guest on this {host} host")),
        AccelKind::Kvm => kite_kvm::available().err().map(|e| e.to_string()),
        AccelKind::Tcg if guest == "x86_64" => {
            Some(format!("machine '{machine}' cannot run on tcg: Kite has no x86 translator (use -accel kvm)"))
        }
        AccelKind::Tcg => None,
    }
}

/// Pick the accelerator for `cfg`'s machine.
pub fn choose_accel(cfg: &Config) -> Result<AccelKind> {
    let same_arch = std::env::consts::ARCH == guest_arch(cfg.machine);
    let candidates = if !cfg.accels.is_empty() {
        cfg.accels.clone()
    } else if same_arch {
        vec![AccelKind::Kvm, AccelKind::Tcg]
    } else {
        vec![AccelKind::Tcg]
    };
    let mut reasons = Vec::new();
    for k in &candidates {
        match unusable(*k, cfg.machine) {
            None => {
                log::info!(target: ACCEL, "accelerator: {} (machine {})", name(*k), cfg.machine);
                return Ok(*k);
            }
            Some(why) => {
                log::info!(target: ACCEL, "accelerator {} unusable: {why}", name(*k));
                reasons.push(why);
            }
        }
    }
    match reasons.len() {
        1 => bail!("{}", reasons[0]),
        _ => bail!("no accelerator can run machine '{}': {}", cfg.machine, reasons.join("; ")),
    }
}

fn name(k: AccelKind) -> &'static str {
    match k {
        AccelKind::Kvm => "kvm",
        AccelKind::Tcg => "tcg",
    }
}

fn read(what: &str, path: &std::path::Path) -> Result<(String, Vec<u8>)> {
    let data =
        std::fs::read(path).map_err(|e| anyhow!("cannot read {what} '{}': {}", path.display(), kite::io_msg(&e)))?;
    if data.is_empty() {
        bail!("{what} '{}' is empty", path.display());
    }
    Ok((path.display().to_string(), data))
}

/// The host files of a microVM boot, read once.
#[derive(Debug)]
pub struct X86Images {
    kernel: (String, Vec<u8>),
    initrd: Option<(String, Vec<u8>)>,
    append: String,
}

impl X86Images {
    pub fn read(cfg: &Config) -> Result<X86Images> {
        let Some(k) = cfg.kernel.as_deref() else { bail!("machine 'microvm' needs -kernel (a bzImage or an ELF)") };
        if cfg.bios != kite::args::Bios::Default {
            bail!("machine 'microvm' boots -kernel directly; -bios is not supported");
        }
        Ok(X86Images {
            kernel: read("kernel", k)?,
            initrd: cfg.initrd.as_deref().map(|p| read("initrd", p)).transpose()?,
            append: cfg.append.clone().unwrap_or_default(),
        })
    }
}

/// Boot until the guest or the host ends the VM; the process exit status.
pub fn run(cfg: &Config, images: &X86Images, session: &Arc<Session>) -> Result<i32> {
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
                log::debug!("guest reset: rebuilding the microVM");
            }
        }
    }
}

fn boot_once(cfg: &Config, images: &X86Images, session: &Session, out: Sink) -> Result<ExitCode> {
    let t0 = Instant::now();
    let accel = KvmVm::open()?;
    let ctl = Arc::new(VmControl::new());
    let mcfg = MicroVmConfig { ram_size: cfg.ram_size, smp: cfg.smp, debug_exit: cfg.debug_exit };
    let m = MicroVm::new(&mcfg, &accel, ctl.clone(), out)?;
    accel.map_memory(&m.mem)?;
    let initrd = images.initrd.as_ref().map(|(n, d)| (n.as_str(), d.as_slice()));
    let entry = m.load((&images.kernel.0, &images.kernel.1), initrd, &images.append)?;
    session.attach(ctl.clone(), m.uart.clone());
    let boot = match entry {
        X86Entry::Pvh { entry, start_info } => BootEntry::Pvh { entry, start_info },
        X86Entry::Linux64 { entry, boot_params } => BootEntry::Linux64 { entry, boot_params },
    };
    log::info!(target: ACCEL, "microvm ready in {:?}: entry {boot:x?}", t0.elapsed());
    let ran = accel.run(m.mem.clone(), m.pio.clone(), ctl.clone(), boot, cfg.smp);
    // The console holds the UART beyond this machine: write out what it buffered.
    m.uart.flush_output();
    match ran.context("cannot run the microVM")? {
        IoExit::Failed(msg) => bail!("{msg}"),
        IoExit::Reset => Ok(ExitCode::Reset),
        IoExit::Stopped => Ok(ctl.exit_requested().unwrap_or(ExitCode::Exit(0))),
    }
}
