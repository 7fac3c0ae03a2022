//! The RISC-V `virt` machine, laid out like QEMU's so the same firmware and
//! kernels run unchanged.
//!
//! The memory map is ONE table, [`VIRT_MEMMAP`]; [`VirtMachine::new`] walks
//! it to build the physical map (and the device tree will be generated from
//! the same table). Entries whose device does not exist yet (RTC, CLINT,
//! PLIC, virtio-mmio) are listed but left unmapped, so guest accesses there
//! are access faults until they land.
//!
//! Boot follows QEMU: the hart starts in M-mode at the mask ROM (0x1000),
//! which holds the reset vector of `riscv_setup_rom_reset_vec` (see
//! [`reset_vector_words`]): it loads `a0 = mhartid`, `a1 = fdt address`,
//! `a2 = &fw_dynamic_info` and jumps to the start address (firmware, or the
//! kernel when there is no firmware). The `fw_dynamic_info` block after it
//! tells OpenSBI's `fw_dynamic` where the next stage is.
//!
//! Interrupts are not wired yet: the UART gets a [`NoIrq`] line until the
//! PLIC exists.

use std::sync::Arc;

use kite_core::{NoIrq, PhysMemory, VmControl};
use kite_memory::{GuestRam, PhysMap};

use crate::char::ns16550::{Ns16550, Sink, NS16550_MMIO_SIZE};
use crate::loader::{self, LoadedImage};
use crate::misc::test_finisher::{TestFinisher, TEST_FINISHER_SIZE};
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
    entry(VirtDev::Clint, "clint", 0x200_0000, 0x1_0000),
    entry(VirtDev::Plic, "plic", 0xc00_0000, 0x60_0000),
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

/// Machine parameters from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtConfig {
    /// DRAM size in bytes (`-m`).
    pub ram_size: u64,
}

impl Default for VirtConfig {
    fn default() -> Self {
        VirtConfig { ram_size: DEFAULT_RAM_SIZE }
    }
}

/// A built `virt` machine.
#[derive(Debug)]
pub struct VirtMachine {
    pub mem: Arc<PhysMap>,
    pub dram: Arc<GuestRam>,
    pub mrom: Arc<GuestRam>,
    pub vm: Arc<VmControl>,
    pub uart: Arc<Ns16550>,
    /// Where the hart starts (the mask ROM).
    pub reset_vector: u64,
    pub dram_base: u64,
}

/// ELF machine number for RISC-V.
pub const EM_RISCV: u16 = object::elf::EM_RISCV;

impl VirtMachine {
    /// Build the machine: walk [`VIRT_MEMMAP`] and map what exists. The UART
    /// writes to `serial_out`.
    pub fn new(cfg: VirtConfig, vm: Arc<VmControl>, serial_out: Sink) -> Result<VirtMachine, HwError> {
        if cfg.ram_size == 0 || cfg.ram_size % 4096 != 0 || cfg.ram_size > MAX_RAM_SIZE {
            return Err(HwError::BadRamSize { size: cfg.ram_size });
        }
        let uart = Arc::new(Ns16550::new(serial_out, Arc::new(NoIrq)));
        let mut map = PhysMap::new();
        let mut dram = None;
        let mut mrom = None;
        for e in VIRT_MEMMAP {
            match e.dev {
                VirtDev::Mrom => mrom = Some(map.add_ram(e.name, e.base, e.size)?),
                VirtDev::Dram => dram = Some(map.add_ram(e.name, e.base, cfg.ram_size)?),
                VirtDev::Test => map.add_mmio(e.name, e.base, e.size, Arc::new(TestFinisher::new(vm.clone())))?,
                VirtDev::Uart0 => map.add_mmio(e.name, e.base, e.size, uart.clone())?,
                // Not implemented yet: left unmapped (accesses fault).
                VirtDev::Rtc | VirtDev::Clint | VirtDev::Plic | VirtDev::Virtio => {
                    log::debug!("virt: {} at {:#x} not mapped yet", e.name, e.base)
                }
            }
        }
        let (Some(dram), Some(mrom)) = (dram, mrom) else {
            return Err(HwError::Internal("virt memory map lacks DRAM or mask ROM"));
        };
        Ok(VirtMachine { mem: Arc::new(map), dram_base: dram.base(), dram, reset_vector: mrom.base(), mrom, vm, uart })
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_memory::Hit;

    fn machine(ram: u64) -> VirtMachine {
        VirtMachine::new(VirtConfig { ram_size: ram }, Arc::new(VmControl::new()), Box::new(std::io::sink())).unwrap()
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
        assert!(m.mem.lookup(0x200_0000).is_none(), "CLINT not mapped yet");
        let m = machine(1 << 30);
        assert_eq!(m.dram.size(), 1 << 30);
    }

    #[test]
    fn rejects_bad_ram_sizes() {
        for size in [0, 4095, MAX_RAM_SIZE + 4096] {
            let r =
                VirtMachine::new(VirtConfig { ram_size: size }, Arc::new(VmControl::new()), Box::new(std::io::sink()));
            assert!(matches!(r, Err(HwError::BadRamSize { .. })), "{size}");
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
}
