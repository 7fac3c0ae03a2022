//! The RISC-V `spike` machine (QEMU's `-M spike`, Spike's layout): a mask ROM
//! with the reset vector at 0x1000, the CLINT at 0x200_0000, DRAM at
//! 0x8000_0000 (`-m`), and HTIF for console and exit (see
//! [`crate::misc::htif`]). No PLIC, UART or device tree: it is the machine
//! for bare-metal test programs such as riscv-tests.
//!
//! Boot: every hart starts at 0x1000, whose reset vector (the same words as
//! `virt`'s) jumps to the ELF entry with `a0 = mhartid`, `a1 = 0` (no device
//! tree). The caller loads the image, then calls [`SpikeMachine::start_htif`]
//! with the `tohost`/`fromhost` symbols the image defines.
//!
//! Pitfall: the machine owns the timer thread and the HTIF poller; keep it
//! alive while the harts run.

use std::sync::Arc;

use kite_core::{PhysMemory, VmControl};
use kite_memory::{GuestRam, PhysMap};

use super::virt::{rom_image, EM_RISCV};
use crate::char::ns16550::Sink;
use crate::intc::aclint::{Aclint, AclintHartLines, CLINT_SIZE};
use crate::loader::{self, LoadedImage};
use crate::misc::htif::{Htif, HtifPoller};
use crate::timer::{Clock, TimerService};
use crate::HwError;

pub const SPIKE_MROM_BASE: u64 = 0x1000;
pub const SPIKE_MROM_SIZE: u64 = 0xf000;
pub const SPIKE_CLINT_BASE: u64 = 0x200_0000;
pub const SPIKE_DRAM_BASE: u64 = 0x8000_0000;
/// Most harts `spike` takes.
pub const SPIKE_MAX_HARTS: u32 = 8;

/// Machine parameters from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpikeConfig {
    pub ram_size: u64,
    pub harts: u32,
}

/// A built `spike` machine.
#[derive(Debug)]
pub struct SpikeMachine {
    pub mem: Arc<PhysMap>,
    pub dram: Arc<GuestRam>,
    pub vm: Arc<VmControl>,
    pub clint: Arc<Aclint>,
    pub clock: Arc<Clock>,
    pub reset_vector: u64,
    pub harts: u32,
    htif: Option<HtifPoller>,
    /// Declared last so it outlives the CLINT's timers.
    pub timers: TimerService,
}

impl SpikeMachine {
    /// Build the machine; `harts[i]` are hart i's MSIP/MTIP inputs.
    pub fn new(cfg: SpikeConfig, vm: Arc<VmControl>, harts: Vec<AclintHartLines>) -> Result<SpikeMachine, HwError> {
        if cfg.ram_size == 0 || cfg.ram_size % 4096 != 0 || cfg.ram_size > super::virt::MAX_RAM_SIZE {
            return Err(HwError::BadRamSize { size: cfg.ram_size });
        }
        if cfg.harts == 0 || cfg.harts > SPIKE_MAX_HARTS || harts.len() != cfg.harts as usize {
            return Err(HwError::BadHartCount { count: cfg.harts, max: SPIKE_MAX_HARTS });
        }
        let timers = TimerService::new()?;
        let clock = Clock::new();
        let clint = Arc::new(Aclint::new(clock.clone(), &timers, harts)?);
        let mut map = PhysMap::new();
        map.add_ram("mrom", SPIKE_MROM_BASE, SPIKE_MROM_SIZE)?;
        map.add_mmio("clint", SPIKE_CLINT_BASE, CLINT_SIZE, clint.clone())?;
        let dram = map.add_ram("dram", SPIKE_DRAM_BASE, cfg.ram_size)?;
        Ok(SpikeMachine {
            mem: Arc::new(map),
            dram,
            vm,
            clint,
            clock,
            reset_vector: SPIKE_MROM_BASE,
            harts: cfg.harts,
            htif: None,
            timers,
        })
    }

    /// Load an image (ELF by magic, else raw at the DRAM base).
    pub fn load(&self, file: &str, data: &[u8]) -> Result<LoadedImage, HwError> {
        loader::load_image(&self.mem, file, data, EM_RISCV, SPIKE_DRAM_BASE)
    }

    /// Write the reset vector: jump to `entry` with `a1 = 0`.
    pub fn setup_reset_vector(&self, entry: u64) -> Result<(), HwError> {
        if !self.mem.write_ram(self.reset_vector, &rom_image(entry, 0, entry)) {
            return Err(HwError::Internal("reset vector does not fit in the mask ROM"));
        }
        Ok(())
    }

    /// Serve HTIF on `tohost` (and answer in `fromhost`), printing to `out`.
    /// Both must be 8-byte variables in RAM.
    pub fn start_htif(&mut self, tohost: u64, fromhost: Option<u64>, out: Sink) -> Result<(), HwError> {
        for (name, a) in [("tohost", Some(tohost)), ("fromhost", fromhost)] {
            let Some(a) = a else { continue };
            let mut probe = [0u8; 8];
            if a % 8 != 0 || !self.mem.read_ram(a, &mut probe) {
                return Err(HwError::Machine(format!("spike: HTIF '{name}' at {a:#x} is not an aligned RAM word")));
            }
        }
        let htif = Arc::new(Htif::new(self.mem.clone(), self.vm.clone(), tohost, fromhost, out));
        let poller = htif.spawn().map_err(|e| HwError::Machine(format!("spike: cannot start HTIF: {e}")))?;
        self.htif = Some(poller);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_memory::Hit;

    fn lines(n: usize) -> Vec<AclintHartLines> {
        let none: Arc<dyn kite_core::IrqLine> = Arc::new(kite_core::NoIrq);
        (0..n).map(|_| AclintHartLines { msip: none.clone(), mtip: none.clone() }).collect()
    }

    #[test]
    fn layout_and_config_checks() {
        let vm = Arc::new(VmControl::new());
        let m = SpikeMachine::new(SpikeConfig { ram_size: 1 << 20, harts: 1 }, vm.clone(), lines(1)).unwrap();
        assert!(matches!(m.mem.lookup(0x1000), Some(Hit::Ram { .. })));
        assert!(matches!(m.mem.lookup(0x200_4000), Some(Hit::Mmio { offset: 0x4000, .. })));
        assert!(matches!(m.mem.lookup(0x8000_0000 + (1 << 20) - 1), Some(Hit::Ram { .. })));
        assert!(m.mem.lookup(0x1000_0000).is_none(), "no UART on spike");
        m.setup_reset_vector(0x8000_0000).unwrap();
        let mut w = [0u8; 4];
        assert!(m.mem.read_ram(0x1018, &mut w));
        assert_eq!(u32::from_le_bytes(w), 0x8000_0000, "start address after the code");
        let bad = SpikeMachine::new(SpikeConfig { ram_size: 1000, harts: 1 }, vm.clone(), lines(1));
        assert!(matches!(bad, Err(HwError::BadRamSize { .. })));
        let bad = SpikeMachine::new(SpikeConfig { ram_size: 1 << 20, harts: 2 }, vm, lines(1));
        assert!(matches!(bad, Err(HwError::BadHartCount { .. })));
    }

    #[test]
    fn htif_addresses_must_be_ram_words() {
        let vm = Arc::new(VmControl::new());
        let mut m = SpikeMachine::new(SpikeConfig { ram_size: 1 << 20, harts: 1 }, vm, lines(1)).unwrap();
        assert!(m.start_htif(0x200_0000, None, Box::new(std::io::sink())).is_err());
        assert!(m.start_htif(0x8000_0004, None, Box::new(std::io::sink())).is_err());
        assert!(m.start_htif(0x8000_1000, Some(0x8000_1040), Box::new(std::io::sink())).is_ok());
    }
}
