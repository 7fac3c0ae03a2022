//! `-M spike`: boot a bare-metal RISC-V ELF (riscv-tests, HTIF programs) on
//! the spike machine. The image is entered directly from the reset vector
//! (no firmware, no device tree); console output and the exit status come
//! through HTIF (`tohost`/`fromhost`, found by symbol). Exit status = the
//! guest's HTIF exit code (0 = pass).

use std::sync::Arc;

use anyhow::{bail, Result};
use kite::args::{Bios, Config, Serial};
use kite_core::{ExitCode, VmControl};
use kite_hw::char::ns16550::Sink;
use kite_hw::elf_symbols::find_symbols;
use kite_hw::intc::aclint::AclintHartLines;
use kite_hw::riscv::spike::{SpikeConfig, SpikeMachine};
use kite_riscv::RiscvCpu;

use crate::{hart_lines, ClockTime};

/// Run the spike machine until the guest exits.
pub fn run(cfg: &Config) -> Result<i32> {
    if let Bios::File(p) = &cfg.bios {
        bail!("-M spike runs the -kernel image directly: -bios '{}' is not supported (use -bios none)", p.display());
    }
    if cfg.gdb.is_some() || cfg.initrd.is_some() || cfg.dtb.is_some() || cfg.dumpdtb.is_some() {
        bail!("-M spike supports only -kernel, -m, -smp, -bios none, -serial, -d and -accel");
    }
    let Some(path) = &cfg.kernel else {
        bail!("-M spike needs -kernel FILE (a bare-metal ELF)");
    };
    let name = path.display().to_string();
    let data = std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read kernel '{name}': {}", kite::io_msg(&e)))?;
    let syms = find_symbols(&data, &["tohost", "fromhost"]);

    let vm = Arc::new(VmControl::new());
    let mut cpus: Vec<Box<RiscvCpu>> = (0..cfg.smp).map(|h| RiscvCpu::new(h as u64)).collect();
    let lines = cpus
        .iter()
        .map(|c| {
            let l = hart_lines(c, &vm);
            AclintHartLines { msip: l.msip, mtip: l.mtip }
        })
        .collect();
    let mut m = SpikeMachine::new(SpikeConfig { ram_size: cfg.ram_size, harts: cfg.smp }, vm.clone(), lines)?;
    let loaded = m.load(&name, &data)?;
    m.setup_reset_vector(loaded.entry)?;
    let out: Sink = match cfg.serial {
        Serial::Stdio => Box::new(std::io::stdout()),
        Serial::None => Box::new(std::io::sink()),
    };
    match syms[0] {
        Some(tohost) => m.start_htif(tohost, syms[1], out)?,
        None => eprintln!("kite: note: -M spike: '{name}' has no 'tohost' symbol: no HTIF console or exit"),
    }
    for cpu in cpus.iter_mut() {
        cpu.header.pc = m.reset_vector;
        cpu.time = Some(Arc::new(ClockTime(m.clock.clone())));
    }
    let code = crate::run_tcg(cfg, m.mem.clone(), vm, &mut cpus, None)?;
    Ok(match code {
        ExitCode::Exit(c) => c,
        ExitCode::Reset => 0,
    })
}
