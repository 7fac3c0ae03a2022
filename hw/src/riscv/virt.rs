//! The RISC-V `virt` machine, laid out like QEMU's so the same firmware and
//! kernels run unchanged.
//!
//! The memory map is ONE table, [`VIRT_MEMMAP`]; [`VirtMachine::new`] walks
//! it to build the physical map, and the device tree ([`VirtMachine::fdt`])
//! is generated from the same table. Only virtio-mmio is listed but left
//! unmapped (accesses fault) until it lands.
//!
//! Boot follows QEMU: every hart starts in M-mode at the mask ROM (0x1000),
//! which holds the reset vector of `riscv_setup_rom_reset_vec` (see
//! [`reset_vector_words`]): it loads `a0 = mhartid`, `a1 = fdt address`,
//! `a2 = &fw_dynamic_info` and jumps to the start address (firmware, or the
//! kernel when there is no firmware). The `fw_dynamic_info` block after it
//! tells OpenSBI's `fw_dynamic` where the next stage is. The device tree goes
//! to the top of DRAM ([`fdt_load_addr`]) and an initrd at QEMU 7.2's spot
//! ([`initrd_load_addr`]).
//!
//! Interrupts: this crate knows no CPU model, so the caller hands one
//! [`HartLines`] per hart (the lines that set that hart's `mip` bits and kick
//! it). The CLINT drives MSIP/MTIP, PLIC context 2N drives hart N's MEIP and
//! 2N+1 its SEIP, one Sstc compare timer per hart drives STIP; the UART is
//! PLIC source 10 and the RTC source 11. One [`TimerService`] thread and one
//! [`Clock`] (the `time` CSR / `mtime`) belong to the machine.
//!
//! Pitfall: the machine owns the timer thread; dropping the machine stops it,
//! so keep the machine alive as long as any hart runs.

use std::sync::Arc;

use kite_core::{IrqLine, PhysMemory, VmControl};
use kite_memory::{GuestRam, PhysMap};

use super::fdt::{build_fdt, FdtParams, MmuType, RTC_IRQ, UART0_IRQ};
use crate::char::ns16550::{Ns16550, Sink, NS16550_MMIO_SIZE};
use crate::intc::aclint::{Aclint, AclintHartLines, CLINT_SIZE};
use crate::intc::plic::{Plic, PLIC_SIZE};
use crate::loader::{self, LoadedImage};
use crate::misc::test_finisher::{TestFinisher, TEST_FINISHER_SIZE};
use crate::rtc::goldfish::GoldfishRtc;
use crate::timer::{Clock, CompareTimer, TimerService};
use crate::HwError;

/// What a memory-map entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VirtDev {
    Mrom,
    Test,
    Rtc,
    Clint,
    Plic,
    Uart0,
    Virtio,
    Dram,
}

/// One entry of the machine's memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemMapEntry {
    pub dev: VirtDev,
    pub name: &'static str,
    pub base: u64,
    /// Size of one instance (for DRAM: the default, overridden by `-m`).
    pub size: u64,
    /// Number of consecutive instances (virtio-mmio has eight).
    pub count: u32,
}

const fn entry(dev: VirtDev, name: &'static str, base: u64, size: u64) -> MemMapEntry {
    MemMapEntry { dev, name, base, size, count: 1 }
}

/// Default DRAM size (QEMU's default for `virt`).
pub const DEFAULT_RAM_SIZE: u64 = 128 << 20;
/// Largest DRAM we accept: far beyond any test, small enough to stay clear
/// of address-space overflow.
pub const MAX_RAM_SIZE: u64 = 1 << 40;
/// Number of virtio-mmio transports, as in QEMU.
pub const VIRTIO_COUNT: u32 = 8;

/// QEMU `virt`'s memory map (hw/riscv/virt.c `virt_memmap`).
pub const VIRT_MEMMAP: &[MemMapEntry] = &[
    entry(VirtDev::Mrom, "mrom", 0x1000, 0xf000),
    entry(VirtDev::Test, "test", 0x10_0000, TEST_FINISHER_SIZE),
    entry(VirtDev::Rtc, "rtc", 0x10_1000, 0x1000),
    entry(VirtDev::Clint, "clint", 0x200_0000, CLINT_SIZE),
    entry(VirtDev::Plic, "plic", 0xc00_0000, PLIC_SIZE),
    entry(VirtDev::Uart0, "uart0", 0x1000_0000, NS16550_MMIO_SIZE),
    MemMapEntry { dev: VirtDev::Virtio, name: "virtio", base: 0x1000_1000, size: 0x1000, count: VIRTIO_COUNT },
    entry(VirtDev::Dram, "dram", 0x8000_0000, DEFAULT_RAM_SIZE),
];

/// The table entry for `dev`.
pub fn memmap(dev: VirtDev) -> &'static MemMapEntry {
    // Every `VirtDev` has exactly one entry (checked by a unit test), so the
    // fallback is unreachable; it avoids a panic path all the same.
    VIRT_MEMMAP.iter().find(|e| e.dev == dev).unwrap_or(&VIRT_MEMMAP[0])
}

/// `fw_dynamic_info` magic ("OSBI") and version, from OpenSBI's
/// `include/sbi/fw_dynamic.h`.
pub const FW_DYNAMIC_INFO_MAGIC: u64 = 0x4942_534f;
pub const FW_DYNAMIC_INFO_VERSION: u64 = 2;
/// `next_mode` value for S-mode.
pub const FW_DYNAMIC_INFO_NEXT_MODE_S: u64 = 1;

/// Offset of `fw_dynamic_info` in the ROM: right after the reset vector.
pub const FW_DYN_OFFSET: u64 = 0x28;

/// The RV64 reset vector, word for word as QEMU's
/// `riscv_setup_rom_reset_vec`. Encodings (rd/rs1 numbers: t0 = x5,
/// a0 = x10, a1 = x11, a2 = x12):
///
/// | off | word         | instruction                               |
/// |-----|--------------|-------------------------------------------|
/// | 0x00 | 0x00000297  | `auipc t0, 0`         (t0 = 0x1000)       |
/// | 0x04 | 0x02828613  | `addi  a2, t0, 0x28`  (&fw_dynamic_info)   |
/// | 0x08 | 0xf1402573  | `csrr  a0, mhartid`   (csrrs a0, 0xf14, x0) |
/// | 0x0c | 0x0202b583  | `ld    a1, 32(t0)`    (fdt address)       |
/// | 0x10 | 0x0182b283  | `ld    t0, 24(t0)`    (start address)     |
/// | 0x14 | 0x00028067  | `jr    t0`            (jalr x0, 0(t0))    |
/// | 0x18 | start lo, hi | `.dword start_addr`                      |
/// | 0x20 | fdt lo, hi   | `.dword fdt_addr`                        |
pub fn reset_vector_words(start_addr: u64, fdt_addr: u64) -> [u32; 10] {
    [
        0x0000_0297,
        0x0282_8613,
        0xf140_2573,
        0x0202_b583,
        0x0182_b283,
        0x0002_8067,
        start_addr as u32,
        (start_addr >> 32) as u32,
        fdt_addr as u32,
        (fdt_addr >> 32) as u32,
    ]
}

/// The ROM image: reset vector followed by `fw_dynamic_info` (magic,
/// version, next_addr, next_mode, options, boot_hart; all XLEN-wide).
pub fn rom_image(start_addr: u64, fdt_addr: u64, next_addr: u64) -> Vec<u8> {
    let mut out: Vec<u8> = reset_vector_words(start_addr, fdt_addr).iter().flat_map(|w| w.to_le_bytes()).collect();
    for v in [FW_DYNAMIC_INFO_MAGIC, FW_DYNAMIC_INFO_VERSION, next_addr, FW_DYNAMIC_INFO_NEXT_MODE_S, 0, 0] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Most harts `virt` takes (`-smp`): QEMU's `VIRT_CPUS_MAX` is larger, but
/// Kite's round-robin scheduler is meant for a handful.
pub const VIRT_MAX_HARTS: u32 = 8;

/// QEMU keeps the device tree below 3 GiB so 32-bit harts can reach it.
const FDT_LIMIT: u64 = 3 << 30;
/// The device tree's load address alignment (QEMU: 2 MiB).
const FDT_ALIGN: u64 = 2 << 20;
const PAGE: u64 = 4096;

/// Where QEMU 7.2's `riscv_load_fdt` puts a device tree of `fdt_size` bytes:
/// the end of DRAM (or 3 GiB, whichever is lower), minus the size, aligned
/// down to 2 MiB. `None` if it does not fit in DRAM.
pub fn fdt_load_addr(dram_base: u64, ram_size: u64, fdt_size: u64) -> Option<u64> {
    let dram_end = dram_base.checked_add(ram_size)?;
    let top = if dram_base < FDT_LIMIT { dram_end.min(FDT_LIMIT) } else { dram_end };
    let addr = top.checked_sub(fdt_size)? & !(FDT_ALIGN - 1);
    (addr >= dram_base).then_some(addr)
}

/// Where an initrd of `size` bytes goes, like QEMU 7.2's
/// `riscv_load_initrd`: `kernel_entry + min(ram / 2, 128 MiB)` (far enough
/// that the kernel's own footprint does not clobber it). When that would run
/// into `limit` (the device tree), it goes just below `limit` instead, page
/// aligned. `None` if it cannot be placed above `kernel_end`.
pub fn initrd_load_addr(kernel_entry: u64, kernel_end: u64, ram_size: u64, size: u64, limit: u64) -> Option<u64> {
    let qemu = kernel_entry.checked_add((ram_size / 2).min(128 << 20))?;
    let start = match qemu.checked_add(size) {
        Some(end) if end <= limit => qemu,
        _ => limit.checked_sub(size)? & !(PAGE - 1),
    };
    (start >= kernel_end).then_some(start)
}

/// Machine parameters from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtConfig {
    /// DRAM size in bytes (`-m`).
    pub ram_size: u64,
    /// Number of harts (`-smp`), 1..=[`VIRT_MAX_HARTS`].
    pub harts: u32,
}

impl Default for VirtConfig {
    fn default() -> Self {
        VirtConfig { ram_size: DEFAULT_RAM_SIZE, harts: 1 }
    }
}

/// The interrupt inputs of one hart, as the CPU side provides them: each
/// line sets its `mip` bit and kicks the hart out of translated code / `wfi`.
#[derive(Clone, Debug)]
pub struct HartLines {
    pub msip: Arc<dyn IrqLine>,
    pub mtip: Arc<dyn IrqLine>,
    pub meip: Arc<dyn IrqLine>,
    pub seip: Arc<dyn IrqLine>,
    pub stip: Arc<dyn IrqLine>,
}

impl HartLines {
    /// Lines connected to nothing (tests, machines run without CPUs).
    pub fn none() -> HartLines {
        let n: Arc<dyn IrqLine> = Arc::new(kite_core::NoIrq);
        HartLines { msip: n.clone(), mtip: n.clone(), meip: n.clone(), seip: n.clone(), stip: n }
    }
}

/// What the device tree says beyond the machine's own layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtExtras {
    /// `/chosen/bootargs` (omitted when empty).
    pub bootargs: String,
    /// Initrd `[start, end)`.
    pub initrd: Option<(u64, u64)>,
    /// The harts' ISA string (from the CPU model).
    pub isa: String,
    pub mmu: MmuType,
}

/// A built `virt` machine.
#[derive(Debug)]
pub struct VirtMachine {
    pub mem: Arc<PhysMap>,
    pub dram: Arc<GuestRam>,
    pub mrom: Arc<GuestRam>,
    pub vm: Arc<VmControl>,
    pub uart: Arc<Ns16550>,
    pub clint: Arc<Aclint>,
    pub plic: Arc<Plic>,
    pub rtc: Arc<GoldfishRtc>,
    /// The platform time base (`mtime`, the harts' `time` CSR).
    pub clock: Arc<Clock>,
    /// Per-hart Sstc `stimecmp` timers driving STIP (starting at "never").
    pub sstc: Vec<Arc<CompareTimer>>,
    /// Where the harts start (the mask ROM).
    pub reset_vector: u64,
    pub dram_base: u64,
    pub harts: u32,
    /// The timer thread: declared last so it outlives the devices' timers.
    pub timers: TimerService,
}

/// ELF machine number for RISC-V.
pub const EM_RISCV: u16 = object::elf::EM_RISCV;

impl VirtMachine {
    /// Build the machine: walk [`VIRT_MEMMAP`] and map what exists. The UART
    /// writes to `serial_out`; `harts[i]` are hart i's interrupt inputs (their
    /// number is the hart count, which must match `cfg.harts`).
    pub fn new(
        cfg: VirtConfig,
        vm: Arc<VmControl>,
        serial_out: Sink,
        harts: Vec<HartLines>,
    ) -> Result<VirtMachine, HwError> {
        if cfg.ram_size == 0 || cfg.ram_size % 4096 != 0 || cfg.ram_size > MAX_RAM_SIZE {
            return Err(HwError::BadRamSize { size: cfg.ram_size });
        }
        if cfg.harts == 0 || cfg.harts > VIRT_MAX_HARTS || harts.len() != cfg.harts as usize {
            return Err(HwError::BadHartCount { count: cfg.harts, max: VIRT_MAX_HARTS });
        }
        let timers = TimerService::new()?;
        let clock = Clock::new();
        let clint_lines =
            harts.iter().map(|h| AclintHartLines { msip: h.msip.clone(), mtip: h.mtip.clone() }).collect();
        let clint = Arc::new(Aclint::new(clock.clone(), &timers, clint_lines)?);
        let plic_lines = harts.iter().flat_map(|h| [h.meip.clone(), h.seip.clone()]).collect();
        let plic = Arc::new(Plic::new(plic_lines)?);
        let sstc =
            harts.iter().map(|h| Arc::new(CompareTimer::new(&clock, &timers, h.stip.clone(), u64::MAX))).collect();
        let uart = Arc::new(Ns16550::new(serial_out, plic.source_line(UART0_IRQ)?));
        uart.buffer_output(&timers);
        let rtc = GoldfishRtc::new(&timers, plic.source_line(RTC_IRQ)?);
        let mut map = PhysMap::new();
        let mut dram = None;
        let mut mrom = None;
        for e in VIRT_MEMMAP {
            match e.dev {
                VirtDev::Mrom => mrom = Some(map.add_ram(e.name, e.base, e.size)?),
                VirtDev::Dram => dram = Some(map.add_ram(e.name, e.base, cfg.ram_size)?),
                VirtDev::Test => map.add_mmio(e.name, e.base, e.size, Arc::new(TestFinisher::new(vm.clone())))?,
                VirtDev::Uart0 => map.add_mmio(e.name, e.base, e.size, uart.clone())?,
                VirtDev::Rtc => map.add_mmio(e.name, e.base, e.size, rtc.clone())?,
                VirtDev::Clint => map.add_mmio(e.name, e.base, e.size, clint.clone())?,
                VirtDev::Plic => map.add_mmio(e.name, e.base, e.size, plic.clone())?,
                // Not implemented yet: left unmapped (accesses fault).
                VirtDev::Virtio => log::debug!("virt: {} at {:#x} not mapped yet", e.name, e.base),
            }
        }
        let (Some(dram), Some(mrom)) = (dram, mrom) else {
            return Err(HwError::Internal("virt memory map lacks DRAM or mask ROM"));
        };
        Ok(VirtMachine {
            mem: Arc::new(map),
            dram_base: dram.base(),
            dram,
            reset_vector: mrom.base(),
            mrom,
            vm,
            uart,
            clint,
            plic,
            rtc,
            clock,
            sstc,
            harts: cfg.harts,
            timers,
        })
    }

    /// DRAM size in bytes.
    pub fn ram_size(&self) -> u64 {
        self.dram.size()
    }

    /// The device tree of this machine (QEMU's nodes for what exists).
    pub fn fdt(&self, extras: &FdtExtras) -> Result<Vec<u8>, HwError> {
        let mut p = FdtParams::virt(self.harts, self.ram_size(), &extras.isa, extras.mmu);
        p.bootargs = extras.bootargs.clone();
        p.initrd = extras.initrd;
        Ok(build_fdt(&p)?)
    }

    /// Write the reset vector and `fw_dynamic_info` into the mask ROM:
    /// jump to `start_addr` with `a1 = fdt_addr`; `next_addr` is the stage
    /// firmware should enter (the kernel), or `start_addr` without one.
    pub fn setup_reset_vector(&self, start_addr: u64, fdt_addr: u64, next_addr: u64) -> Result<(), HwError> {
        let rom = rom_image(start_addr, fdt_addr, next_addr);
        if !self.mem.write_ram(self.reset_vector, &rom) {
            return Err(HwError::Internal("reset vector does not fit in the mask ROM"));
        }
        Ok(())
    }

    /// Load an image (ELF by magic, else raw at `raw_base`) into RAM/ROM.
    pub fn load(&self, file: &str, data: &[u8], raw_base: u64) -> Result<LoadedImage, HwError> {
        loader::load_image(&self.mem, file, data, EM_RISCV, raw_base)
    }

    /// Copy `data` (named `what` in errors) to guest RAM at `addr`.
    pub fn write_blob(&self, what: &str, addr: u64, data: &[u8]) -> Result<(), HwError> {
        if self.mem.write_ram(addr, data) {
            Ok(())
        } else {
            Err(HwError::OutsideRam { file: what.to_string(), addr, size: data.len() as u64 })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_memory::Hit;

    fn machine(ram: u64) -> VirtMachine {
        machine_with(ram, vec![HartLines::none()])
    }

    fn machine_with(ram: u64, harts: Vec<HartLines>) -> VirtMachine {
        let cfg = VirtConfig { ram_size: ram, harts: harts.len() as u32 };
        VirtMachine::new(cfg, Arc::new(VmControl::new()), Box::new(std::io::sink()), harts).unwrap()
    }

    /// Encode an I-type instruction from its fields.
    fn itype(imm: i32, rs1: u32, f3: u32, rd: u32, op: u32) -> u32 {
        ((imm as u32 & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op
    }

    #[test]
    fn reset_vector_encodings() {
        let w = reset_vector_words(0x8000_0000, 0x8760_0000);
        assert_eq!(w[0], (5 << 7) | 0x17, "auipc t0, 0");
        assert_eq!(w[1], itype(0x28, 5, 0, 12, 0x13), "addi a2, t0, 0x28");
        assert_eq!(w[2], itype(0xf14u32 as i32, 0, 2, 10, 0x73), "csrr a0, mhartid");
        assert_eq!(w[3], itype(32, 5, 3, 11, 0x03), "ld a1, 32(t0)");
        assert_eq!(w[4], itype(24, 5, 3, 5, 0x03), "ld t0, 24(t0)");
        assert_eq!(w[5], itype(0, 5, 0, 0, 0x67), "jalr x0, 0(t0)");
        assert_eq!((w[6], w[7]), (0x8000_0000, 0));
        assert_eq!((w[8], w[9]), (0x8760_0000, 0));
        assert_eq!(FW_DYN_OFFSET as usize, w.len() * 4);
    }

    #[test]
    fn memmap_is_consistent() {
        for dev in [
            VirtDev::Mrom,
            VirtDev::Test,
            VirtDev::Rtc,
            VirtDev::Clint,
            VirtDev::Plic,
            VirtDev::Uart0,
            VirtDev::Virtio,
            VirtDev::Dram,
        ] {
            assert_eq!(VIRT_MEMMAP.iter().filter(|e| e.dev == dev).count(), 1, "{dev:?}");
            assert_eq!(memmap(dev).dev, dev);
        }
        // Sorted and non-overlapping.
        for pair in VIRT_MEMMAP.windows(2) {
            let end = pair[0].base + pair[0].size * pair[0].count as u64;
            assert!(end <= pair[1].base, "{} overlaps {}", pair[0].name, pair[1].name);
        }
    }

    #[test]
    fn builds_map_from_table() {
        let m = machine(DEFAULT_RAM_SIZE);
        assert_eq!(m.reset_vector, 0x1000);
        assert_eq!(m.dram_base, 0x8000_0000);
        assert_eq!(m.dram.size(), DEFAULT_RAM_SIZE);
        assert!(matches!(m.mem.lookup(0x1000_0005), Some(Hit::Mmio { offset: 5, .. })));
        assert!(matches!(m.mem.lookup(0x10_0000), Some(Hit::Mmio { offset: 0, .. })));
        assert!(matches!(m.mem.lookup(0x8000_0000 + DEFAULT_RAM_SIZE - 1), Some(Hit::Ram { .. })));
        assert!(m.mem.lookup(0x8000_0000 + DEFAULT_RAM_SIZE).is_none());
        assert!(matches!(m.mem.lookup(0x200_bff8), Some(Hit::Mmio { offset: 0xbff8, .. })), "CLINT");
        assert!(matches!(m.mem.lookup(0xc00_0004), Some(Hit::Mmio { offset: 4, .. })), "PLIC");
        assert!(matches!(m.mem.lookup(0x10_1000), Some(Hit::Mmio { offset: 0, .. })), "RTC");
        assert!(m.mem.lookup(0x1000_1000).is_none(), "virtio not mapped yet");
        let m = machine(1 << 30);
        assert_eq!(m.dram.size(), 1 << 30);
    }

    #[test]
    fn rejects_bad_ram_sizes() {
        for size in [0, 4095, MAX_RAM_SIZE + 4096] {
            let cfg = VirtConfig { ram_size: size, harts: 1 };
            let r =
                VirtMachine::new(cfg, Arc::new(VmControl::new()), Box::new(std::io::sink()), vec![HartLines::none()]);
            assert!(matches!(r, Err(HwError::BadRamSize { .. })), "{size}");
        }
        for (harts, lines) in [(0, 0), (9, 9), (2, 1)] {
            let cfg = VirtConfig { ram_size: DEFAULT_RAM_SIZE, harts };
            let r = VirtMachine::new(
                cfg,
                Arc::new(VmControl::new()),
                Box::new(std::io::sink()),
                vec![HartLines::none(); lines],
            );
            assert!(matches!(r, Err(HwError::BadHartCount { .. })), "{harts}");
        }
    }

    #[test]
    fn rom_holds_vector_and_fw_dynamic_info() {
        let m = machine(DEFAULT_RAM_SIZE);
        m.setup_reset_vector(0x8000_0000, 0x8700_0000, 0x8020_0000).unwrap();
        assert_eq!(m.mem.read(0x1000, 4), Some(0x297));
        assert_eq!(m.mem.read_u64(0x1018), Some(0x8000_0000));
        assert_eq!(m.mem.read_u64(0x1020), Some(0x8700_0000));
        assert_eq!(m.mem.read_u64(0x1028), Some(FW_DYNAMIC_INFO_MAGIC));
        assert_eq!(m.mem.read_u64(0x1030), Some(FW_DYNAMIC_INFO_VERSION));
        assert_eq!(m.mem.read_u64(0x1038), Some(0x8020_0000));
        assert_eq!(m.mem.read_u64(0x1040), Some(FW_DYNAMIC_INFO_NEXT_MODE_S));
    }

    #[test]
    fn test_finisher_is_wired() {
        let m = machine(DEFAULT_RAM_SIZE);
        assert!(m.mem.write(0x10_0000, 4, 0x5555));
        assert_eq!(m.vm.exit_requested(), Some(kite_core::ExitCode::Exit(0)));
    }

    #[test]
    fn fdt_goes_to_the_top_of_dram_2mib_aligned() {
        // QEMU 7.2: 256 MiB at 0x80000000, a small tree -> 0x8fe00000.
        assert_eq!(fdt_load_addr(0x8000_0000, 256 << 20, 0x2000), Some(0x8fe0_0000));
        assert_eq!(fdt_load_addr(0x8000_0000, 256 << 20, 2 << 20), Some(0x8fe0_0000));
        assert_eq!(fdt_load_addr(0x8000_0000, 256 << 20, (2 << 20) + 1), Some(0x8fc0_0000));
        // Capped at 3 GiB for DRAM starting below it.
        assert_eq!(fdt_load_addr(0x8000_0000, 4 << 30, 0x1000), Some(0xbfe0_0000));
        // Does not fit.
        assert_eq!(fdt_load_addr(0x8000_0000, 1 << 20, 0x1000), Some(0x8000_0000), "QEMU: start of a tiny DRAM");
        assert_eq!(fdt_load_addr(0x8000_0000, 4 << 20, 8 << 20), None);
    }

    #[test]
    fn initrd_placement_follows_qemu_and_stays_below_the_fdt() {
        let entry = 0x8020_0000;
        // >= 256 MiB: entry + 128 MiB.
        assert_eq!(initrd_load_addr(entry, 0x8100_0000, 256 << 20, 1 << 20, 0x8fe0_0000), Some(0x8820_0000));
        // 64 MiB: entry + 32 MiB.
        assert_eq!(initrd_load_addr(entry, 0x8100_0000, 64 << 20, 1 << 20, 0x83e0_0000), Some(0x8220_0000));
        // Too big for QEMU's spot: just below the FDT, page aligned.
        let size = (30 << 20) + 5;
        let r = initrd_load_addr(entry, 0x8100_0000, 64 << 20, size, 0x83e0_0000).unwrap();
        assert_eq!(r, 0x81ff_f000);
        assert!(r + size <= 0x83e0_0000);
        // Would overlap the kernel: refused.
        assert_eq!(initrd_load_addr(entry, 0x8100_0000, 64 << 20, 60 << 20, 0x83e0_0000), None);
    }

    /// A line recording its level.
    #[derive(Debug, Default)]
    struct Level(std::sync::atomic::AtomicBool);
    impl IrqLine for Level {
        fn set_level(&self, level: bool) {
            self.0.store(level, std::sync::atomic::Ordering::SeqCst);
        }
    }
    impl Level {
        fn get(&self) -> bool {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn interrupts_are_wired_per_hart() {
        let lines: Vec<[Arc<Level>; 5]> = (0..2).map(|_| std::array::from_fn(|_| Arc::new(Level::default()))).collect();
        let harts = lines
            .iter()
            .map(|l| HartLines {
                msip: l[0].clone(),
                mtip: l[1].clone(),
                meip: l[2].clone(),
                seip: l[3].clone(),
                stip: l[4].clone(),
            })
            .collect();
        let m = machine_with(DEFAULT_RAM_SIZE, harts);
        // CLINT msip[1] -> hart 1 MSIP only.
        assert!(m.mem.write(0x200_0004, 4, 1));
        assert!(lines[1][0].get() && !lines[0][0].get());
        // mtimecmp[0] = 0 -> hart 0 MTIP.
        assert!(m.mem.write(0x200_4000, 8, 0));
        assert!(lines[0][1].get() && !lines[1][1].get());
        // UART source 10, priority 1, enabled for context 3 (hart 1 S-mode).
        assert!(m.mem.write(0xc00_0000 + 4 * 10, 4, 1));
        assert!(m.mem.write(0xc00_2000 + 0x80 * 3, 4, 1 << 10));
        assert!(m.mem.write(0x1000_0001, 1, 1)); // IER: received data available
        assert!(m.uart.push_rx(b'x'));
        assert!(lines[1][3].get(), "hart 1 SEIP");
        assert!(!lines[1][2].get() && !lines[0][3].get() && !lines[0][2].get());
        assert_eq!(m.mem.read(0xc20_3004, 4), Some(10), "claim on context 3");
        // Sstc timer of hart 1 -> its STIP.
        m.sstc[1].set_compare(0);
        assert!(lines[1][4].get() && !lines[0][4].get());
        // The RTC answers.
        assert_ne!(m.mem.read(0x10_1000, 4), None);
    }

    #[test]
    fn fdt_describes_the_machine() {
        let m = machine_with(DEFAULT_RAM_SIZE, vec![HartLines::none(); 2]);
        let extras = FdtExtras {
            bootargs: "console=ttyS0".into(),
            initrd: Some((0x8800_0000, 0x8810_0000)),
            isa: "rv64imac_zicsr".into(),
            mmu: MmuType::Sv39,
        };
        let blob = m.fdt(&extras).unwrap();
        let has = |needle: &[u8]| blob.windows(needle.len()).any(|w| w == needle);
        assert_eq!(&blob[..4], &[0xd0, 0x0d, 0xfe, 0xed]);
        assert!(has(b"console=ttyS0\0"));
        assert!(has(b"cpu@1\0") && !has(b"cpu@2\0"));
        assert!(has(b"riscv,sv39\0"));
        assert!(has(b"linux,initrd-start\0"));
    }
}
