//! Device tree for the RISC-V `virt` machine, node for node what QEMU's
//! `hw/riscv/virt.c` generates for the devices Kite has, so OpenSBI 1.x and
//! Linux accept it unchanged.
//!
//! Input is a self-contained [`FdtParams`] (hart count, RAM, command line,
//! initrd, ISA string, MMU type, device regions); [`FdtParams::virt`] fills
//! the device regions from the machine's memory-map table. Output is the
//! blob ([`build_fdt`]).
//!
//! Pitfalls:
//! - Linux 6.x prefers `riscv,isa-base` + `riscv,isa-extensions` and falls
//!   back to `riscv,isa`; OpenSBI parses `riscv,isa`. Both are derived from
//!   the one ISA string, so they cannot disagree. With the extension list,
//!   Linux no longer implies `zicntr`/`zihpm`: list `zicntr` in the string
//!   when the CPU implements `rdtime`/`rdcycle`/`rdinstret`.
//! - Interrupt wiring: CLINT `interrupts-extended` is (MSIP=3, MTIP=7) per
//!   hart; PLIC is (MEIP=11, SEIP=9) per hart, i.e. context 2N = M-mode,
//!   2N+1 = S-mode, matching [`crate::intc::plic`].
//! - Phandles are allocated here in creation order; nothing outside this
//!   file may assume their values.

use vm_fdt::FdtWriter;

use super::virt::{memmap, VirtDev};
use crate::intc::plic::PLIC_NUM_SOURCES;
use crate::timer::TIMEBASE_HZ;

/// PLIC source of the UART (QEMU `UART0_IRQ`).
pub const UART0_IRQ: u32 = 10;
/// PLIC source of the Goldfish RTC (QEMU `RTC_IRQ`).
pub const RTC_IRQ: u32 = 11;
/// PLIC source of the first virtio-mmio transport (QEMU `VIRTIO_IRQ`); the
/// others follow.
pub const VIRTIO_IRQ: u32 = 1;
/// The UART's input clock as QEMU advertises it.
pub const UART_CLOCK_HZ: u32 = 3_686_400;

/// CPU-local interrupt numbers (`mip` bits) used in `interrupts-extended`.
const IRQ_M_SOFT: u32 = 3;
const IRQ_M_TIMER: u32 = 7;
const IRQ_S_EXT: u32 = 9;
const IRQ_M_EXT: u32 = 11;

/// Errors building the device tree (bad host parameters).
#[derive(Debug, thiserror::Error)]
pub enum FdtError {
    #[error("device tree: {0}")]
    Writer(#[from] vm_fdt::Error),
    #[error("bad ISA string '{0}' (expected e.g. rv64imac_zicsr_zifencei)")]
    BadIsa(String),
    #[error("the device tree needs at least one hart")]
    NoHarts,
    #[error("initrd end {end:#x} is before its start {start:#x}")]
    BadInitrd { start: u64, end: u64 },
}

/// A base address and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    fn from_dev(dev: VirtDev) -> Region {
        let e = memmap(dev);
        Region { base: e.base, size: e.size }
    }

    /// `reg` with two address and two size cells.
    fn reg(&self) -> [u64; 2] {
        [self.base, self.size]
    }
}

/// Supervisor address translation the harts implement (`mmu-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuType {
    Bare,
    Sv39,
    Sv48,
    Sv57,
}

impl MmuType {
    pub fn as_str(self) -> &'static str {
        match self {
            MmuType::Bare => "riscv,none",
            MmuType::Sv39 => "riscv,sv39",
            MmuType::Sv48 => "riscv,sv48",
            MmuType::Sv57 => "riscv,sv57",
        }
    }
}

/// One virtio-mmio transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmio {
    pub region: Region,
    /// PLIC source.
    pub irq: u32,
}

/// Everything the device tree describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdtParams {
    pub harts: u32,
    pub ram: Region,
    /// Kernel command line (`/chosen/bootargs`); omitted when empty.
    pub bootargs: String,
    /// Initrd `[start, end)` physical addresses.
    pub initrd: Option<(u64, u64)>,
    /// ISA string of every hart, e.g. `rv64imac_zicsr_zifencei`.
    pub isa: String,
    pub mmu: MmuType,
    pub timebase_hz: u32,
    pub clint: Region,
    pub plic: Region,
    pub uart: Region,
    pub uart_irq: u32,
    pub rtc: Region,
    pub rtc_irq: u32,
    pub test: Region,
    /// virtio-mmio transports to describe (QEMU lists all eight; Kite lists
    /// only those that exist).
    pub virtio: Vec<VirtioMmio>,
}

impl FdtParams {
    /// Parameters for `virt` with `harts` harts and `ram_size` bytes of DRAM,
    /// device regions taken from the machine's memory map. No virtio
    /// transports, empty command line, no initrd.
    pub fn virt(harts: u32, ram_size: u64, isa: &str, mmu: MmuType) -> FdtParams {
        let mut ram = Region::from_dev(VirtDev::Dram);
        ram.size = ram_size;
        FdtParams {
            harts,
            ram,
            bootargs: String::new(),
            initrd: None,
            isa: isa.to_string(),
            mmu,
            timebase_hz: TIMEBASE_HZ as u32,
            clint: Region::from_dev(VirtDev::Clint),
            plic: Region::from_dev(VirtDev::Plic),
            uart: Region::from_dev(VirtDev::Uart0),
            uart_irq: UART0_IRQ,
            rtc: Region::from_dev(VirtDev::Rtc),
            rtc_irq: RTC_IRQ,
            test: Region::from_dev(VirtDev::Test),
            virtio: Vec::new(),
        }
    }
}

/// Split an ISA string into its base (`rv64i`) and its extension names,
/// single letters first (`g` expanded), in order, without duplicates.
pub fn isa_extensions(isa: &str) -> Result<(String, Vec<String>), FdtError> {
    let bad = || FdtError::BadIsa(isa.to_string());
    let lower = isa.to_ascii_lowercase();
    let xlen = match lower.get(..4) {
        Some("rv32") => "rv32",
        Some("rv64") => "rv64",
        _ => return Err(bad()),
    };
    let mut parts = lower[4..].split('_');
    let letters = parts.next().unwrap_or("");
    if !letters.starts_with(['i', 'e', 'g']) {
        return Err(bad());
    }
    let mut exts: Vec<String> = Vec::new();
    let mut add = |e: &str| {
        if !exts.iter().any(|x| x == e) {
            exts.push(e.to_string());
        }
    };
    for c in letters.chars() {
        match c {
            'g' => ["i", "m", "a", "f", "d", "zicsr", "zifencei"].iter().for_each(|e| add(e)),
            'a'..='z' => add(c.encode_utf8(&mut [0; 4])),
            _ => return Err(bad()),
        }
    }
    for p in parts {
        if p.is_empty()
            || !p.starts_with(|c: char| c.is_ascii_lowercase())
            || !p.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(bad());
        }
        add(p);
    }
    let base = if exts.first().map(String::as_str) == Some("e") { "e" } else { "i" };
    Ok((format!("{xlen}{base}"), exts))
}

/// Unit-address form of a node name (`name@hex`).
fn node_name(name: &str, base: u64) -> String {
    format!("{name}@{base:x}")
}

/// Build the device tree blob.
pub fn build_fdt(p: &FdtParams) -> Result<Vec<u8>, FdtError> {
    if p.harts == 0 {
        return Err(FdtError::NoHarts);
    }
    if let Some((start, end)) = p.initrd {
        if end < start {
            return Err(FdtError::BadInitrd { start, end });
        }
    }
    let (isa_base, exts) = isa_extensions(&p.isa)?;
    let mut next_phandle = 1u32;
    let mut phandle = || {
        let h = next_phandle;
        next_phandle += 1;
        h
    };

    let mut fdt = FdtWriter::new()?;
    fdt.set_boot_cpuid_phys(0);
    let root = fdt.begin_node("")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "riscv-virtio")?;
    fdt.property_string("model", "riscv-virtio,qemu")?;

    let uart_path = format!("/soc/{}", node_name("serial", p.uart.base));
    let chosen = fdt.begin_node("chosen")?;
    if !p.bootargs.is_empty() {
        fdt.property_string("bootargs", &p.bootargs)?;
    }
    fdt.property_string("stdout-path", &uart_path)?;
    if let Some((start, end)) = p.initrd {
        fdt.property_u64("linux,initrd-start", start)?;
        fdt.property_u64("linux,initrd-end", end)?;
    }
    fdt.end_node(chosen)?;

    let aliases = fdt.begin_node("aliases")?;
    fdt.property_string("serial0", &uart_path)?;
    fdt.end_node(aliases)?;

    let mem = fdt.begin_node(&node_name("memory", p.ram.base))?;
    fdt.property_string("device_type", "memory")?;
    fdt.property_array_u64("reg", &p.ram.reg())?;
    fdt.end_node(mem)?;

    // /cpus: one node per hart with its local interrupt controller.
    let mut cpu_phandles = Vec::with_capacity(p.harts as usize);
    let mut intc_phandles = Vec::with_capacity(p.harts as usize);
    let cpus = fdt.begin_node("cpus")?;
    fdt.property_u32("#address-cells", 1)?;
    fdt.property_u32("#size-cells", 0)?;
    fdt.property_u32("timebase-frequency", p.timebase_hz)?;
    for hart in 0..p.harts {
        let (cpu_ph, intc_ph) = (phandle(), phandle());
        cpu_phandles.push(cpu_ph);
        intc_phandles.push(intc_ph);
        let cpu = fdt.begin_node(&node_name("cpu", hart as u64))?;
        fdt.property_phandle(cpu_ph)?;
        fdt.property_string("device_type", "cpu")?;
        fdt.property_u32("reg", hart)?;
        fdt.property_string("status", "okay")?;
        fdt.property_string("compatible", "riscv")?;
        fdt.property_string("riscv,isa", &p.isa.to_ascii_lowercase())?;
        fdt.property_string("riscv,isa-base", &isa_base)?;
        fdt.property_string_list("riscv,isa-extensions", exts.clone())?;
        fdt.property_string("mmu-type", p.mmu.as_str())?;
        let intc = fdt.begin_node("interrupt-controller")?;
        // Not required by Linux or OpenSBI; keeps dtc's interrupt_provider
        // check quiet, as for the PLIC.
        fdt.property_u32("#address-cells", 0)?;
        fdt.property_u32("#interrupt-cells", 1)?;
        fdt.property_null("interrupt-controller")?;
        fdt.property_string("compatible", "riscv,cpu-intc")?;
        fdt.property_phandle(intc_ph)?;
        fdt.end_node(intc)?;
        fdt.end_node(cpu)?;
    }
    let map = fdt.begin_node("cpu-map")?;
    let cluster = fdt.begin_node("cluster0")?;
    for (hart, ph) in cpu_phandles.iter().enumerate() {
        let core = fdt.begin_node(&format!("core{hart}"))?;
        fdt.property_u32("cpu", *ph)?;
        fdt.end_node(core)?;
    }
    fdt.end_node(cluster)?;
    fdt.end_node(map)?;
    fdt.end_node(cpus)?;

    // Per-hart (phandle, cause) pairs for interrupts-extended.
    let per_hart = |a: u32, b: u32| -> Vec<u32> { intc_phandles.iter().flat_map(|&h| [h, a, h, b]).collect() };
    let (plic_ph, test_ph) = (phandle(), phandle());

    let soc = fdt.begin_node("soc")?;
    fdt.property_u32("#address-cells", 2)?;
    fdt.property_u32("#size-cells", 2)?;
    fdt.property_string("compatible", "simple-bus")?;
    fdt.property_null("ranges")?;

    let rtc = fdt.begin_node(&node_name("rtc", p.rtc.base))?;
    fdt.property_u32("interrupts", p.rtc_irq)?;
    fdt.property_u32("interrupt-parent", plic_ph)?;
    fdt.property_array_u64("reg", &p.rtc.reg())?;
    fdt.property_string("compatible", "google,goldfish-rtc")?;
    fdt.end_node(rtc)?;

    let serial = fdt.begin_node(&node_name("serial", p.uart.base))?;
    fdt.property_u32("interrupts", p.uart_irq)?;
    fdt.property_u32("interrupt-parent", plic_ph)?;
    fdt.property_u32("clock-frequency", UART_CLOCK_HZ)?;
    fdt.property_array_u64("reg", &p.uart.reg())?;
    fdt.property_string("compatible", "ns16550a")?;
    fdt.end_node(serial)?;

    let test = fdt.begin_node(&node_name("test", p.test.base))?;
    fdt.property_phandle(test_ph)?;
    fdt.property_array_u64("reg", &p.test.reg())?;
    fdt.property_string_list("compatible", vec!["sifive,test1".into(), "sifive,test0".into(), "syscon".into()])?;
    fdt.end_node(test)?;

    for v in &p.virtio {
        let n = fdt.begin_node(&node_name("virtio_mmio", v.region.base))?;
        fdt.property_u32("interrupts", v.irq)?;
        fdt.property_u32("interrupt-parent", plic_ph)?;
        fdt.property_array_u64("reg", &v.region.reg())?;
        fdt.property_string("compatible", "virtio,mmio")?;
        fdt.end_node(n)?;
    }

    let plic = fdt.begin_node(&node_name("plic", p.plic.base))?;
    fdt.property_phandle(plic_ph)?;
    fdt.property_u32("riscv,ndev", PLIC_NUM_SOURCES - 1)?;
    fdt.property_array_u64("reg", &p.plic.reg())?;
    fdt.property_array_u32("interrupts-extended", &per_hart(IRQ_M_EXT, IRQ_S_EXT))?;
    fdt.property_null("interrupt-controller")?;
    fdt.property_string_list("compatible", vec!["sifive,plic-1.0.0".into(), "riscv,plic0".into()])?;
    fdt.property_u32("#address-cells", 0)?;
    fdt.property_u32("#interrupt-cells", 1)?;
    fdt.end_node(plic)?;

    let clint = fdt.begin_node(&node_name("clint", p.clint.base))?;
    fdt.property_array_u64("reg", &p.clint.reg())?;
    fdt.property_array_u32("interrupts-extended", &per_hart(IRQ_M_SOFT, IRQ_M_TIMER))?;
    fdt.property_string_list("compatible", vec!["sifive,clint0".into(), "riscv,clint0".into()])?;
    fdt.end_node(clint)?;

    fdt.end_node(soc)?;

    let poweroff = fdt.begin_node("poweroff")?;
    fdt.property_u32("value", 0x5555)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("regmap", test_ph)?;
    fdt.property_string("compatible", "syscon-poweroff")?;
    fdt.end_node(poweroff)?;

    let reboot = fdt.begin_node("reboot")?;
    fdt.property_u32("value", 0x7777)?;
    fdt.property_u32("offset", 0)?;
    fdt.property_u32("regmap", test_ph)?;
    fdt.property_string("compatible", "syscon-reboot")?;
    fdt.end_node(reboot)?;

    fdt.end_node(root)?;
    Ok(fdt.finish()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// path -> property name -> raw value.
    type Tree = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

    fn be32(b: &[u8], off: usize) -> u32 {
        u32::from_be_bytes(b[off..off + 4].try_into().unwrap())
    }

    fn cstr(b: &[u8], off: usize) -> String {
        let end = off + b[off..].iter().position(|&c| c == 0).unwrap();
        String::from_utf8(b[off..end].to_vec()).unwrap()
    }

    /// A minimal FDT reader: header checks and a structure-block walk.
    fn parse(b: &[u8]) -> Tree {
        assert_eq!(be32(b, 0), 0xd00d_feed, "magic");
        assert_eq!(be32(b, 4) as usize, b.len(), "totalsize");
        assert_eq!(be32(b, 20), 17, "version");
        let (structs, strings) = (be32(b, 8) as usize, be32(b, 12) as usize);
        let mut tree = Tree::new();
        let mut path: Vec<String> = Vec::new();
        let mut off = structs;
        let full = |p: &[String]| {
            if p.len() <= 1 {
                "/".to_string()
            } else {
                p[1..].iter().fold(String::new(), |s, n| s + "/" + n)
            }
        };
        loop {
            let tok = be32(b, off);
            off += 4;
            match tok {
                1 => {
                    let name = cstr(b, off);
                    off = (off + name.len() + 1).next_multiple_of(4);
                    path.push(name);
                    assert!(tree.insert(full(&path), BTreeMap::new()).is_none(), "duplicate node {}", full(&path));
                }
                2 => {
                    path.pop().expect("unbalanced END_NODE");
                }
                3 => {
                    let (len, nameoff) = (be32(b, off) as usize, be32(b, off + 4) as usize);
                    let val = b[off + 8..off + 8 + len].to_vec();
                    off = (off + 8 + len).next_multiple_of(4);
                    let name = cstr(b, strings + nameoff);
                    tree.get_mut(&full(&path)).unwrap().insert(name, val);
                }
                4 => {}
                9 => break,
                t => panic!("bad token {t} at {off:#x}"),
            }
        }
        assert!(path.is_empty(), "unclosed nodes");
        tree
    }

    fn prop<'a>(t: &'a Tree, node: &str, name: &str) -> &'a [u8] {
        t.get(node).unwrap_or_else(|| panic!("no node {node}")).get(name).unwrap_or_else(|| panic!("no {node}:{name}"))
    }

    fn s(t: &Tree, node: &str, name: &str) -> String {
        let v = prop(t, node, name);
        assert_eq!(v.last(), Some(&0), "{node}:{name} is not a string");
        String::from_utf8(v[..v.len() - 1].to_vec()).unwrap()
    }

    fn strs(t: &Tree, node: &str, name: &str) -> Vec<String> {
        s(t, node, name).split('\0').map(String::from).collect()
    }

    fn cells(t: &Tree, node: &str, name: &str) -> Vec<u32> {
        prop(t, node, name).chunks(4).map(|c| u32::from_be_bytes(c.try_into().unwrap())).collect()
    }

    fn u64s(t: &Tree, node: &str, name: &str) -> Vec<u64> {
        prop(t, node, name).chunks(8).map(|c| u64::from_be_bytes(c.try_into().unwrap())).collect()
    }

    fn params() -> FdtParams {
        let mut p = FdtParams::virt(2, 256 << 20, "rv64imac_zicsr_zifencei", MmuType::Sv39);
        p.bootargs = "console=ttyS0 earlycon".into();
        p.initrd = Some((0x8800_0000, 0x8810_0000));
        p
    }

    #[test]
    fn isa_strings() {
        let (base, exts) = isa_extensions("rv64imac_zicsr_zifencei").unwrap();
        assert_eq!(base, "rv64i");
        assert_eq!(exts, ["i", "m", "a", "c", "zicsr", "zifencei"]);
        let (base, exts) = isa_extensions("RV32GC_Zicsr_sstc").unwrap();
        assert_eq!(base, "rv32i");
        assert_eq!(exts, ["i", "m", "a", "f", "d", "zicsr", "zifencei", "c", "sstc"]);
        for bad in ["", "rv64", "rv128i", "x86", "rv64mi", "rv64i__zicsr", "rv64i_z-b", "rv64i1p0", "rv64i_9x"] {
            assert!(matches!(isa_extensions(bad), Err(FdtError::BadIsa(_))), "{bad}");
        }
    }

    #[test]
    fn virt_tree_has_what_opensbi_and_linux_need() {
        let t = parse(&build_fdt(&params()).unwrap());
        assert_eq!(cells(&t, "/", "#address-cells"), [2]);
        assert_eq!(cells(&t, "/", "#size-cells"), [2]);
        assert_eq!(s(&t, "/", "compatible"), "riscv-virtio");
        assert_eq!(s(&t, "/", "model"), "riscv-virtio,qemu");

        assert_eq!(s(&t, "/chosen", "bootargs"), "console=ttyS0 earlycon");
        assert_eq!(s(&t, "/chosen", "stdout-path"), "/soc/serial@10000000");
        assert_eq!(u64s(&t, "/chosen", "linux,initrd-start"), [0x8800_0000]);
        assert_eq!(u64s(&t, "/chosen", "linux,initrd-end"), [0x8810_0000]);
        assert_eq!(s(&t, "/aliases", "serial0"), "/soc/serial@10000000");

        assert_eq!(s(&t, "/memory@80000000", "device_type"), "memory");
        assert_eq!(u64s(&t, "/memory@80000000", "reg"), [0x8000_0000, 256 << 20]);

        assert_eq!(cells(&t, "/cpus", "timebase-frequency"), [10_000_000]);
        assert_eq!(cells(&t, "/cpus", "#address-cells"), [1]);
        assert_eq!(cells(&t, "/cpus", "#size-cells"), [0]);
        let mut intcs = Vec::new();
        for hart in 0..2u32 {
            let cpu = format!("/cpus/cpu@{hart}");
            assert_eq!(s(&t, &cpu, "device_type"), "cpu");
            assert_eq!(cells(&t, &cpu, "reg"), [hart]);
            assert_eq!(s(&t, &cpu, "status"), "okay");
            assert_eq!(s(&t, &cpu, "compatible"), "riscv");
            assert_eq!(s(&t, &cpu, "riscv,isa"), "rv64imac_zicsr_zifencei");
            assert_eq!(s(&t, &cpu, "riscv,isa-base"), "rv64i");
            assert_eq!(strs(&t, &cpu, "riscv,isa-extensions"), ["i", "m", "a", "c", "zicsr", "zifencei"]);
            assert_eq!(s(&t, &cpu, "mmu-type"), "riscv,sv39");
            let intc = format!("{cpu}/interrupt-controller");
            assert_eq!(s(&t, &intc, "compatible"), "riscv,cpu-intc");
            assert_eq!(cells(&t, &intc, "#interrupt-cells"), [1]);
            assert!(prop(&t, &intc, "interrupt-controller").is_empty());
            intcs.push(cells(&t, &intc, "phandle")[0]);
            // cpu-map points at the cpu node.
            let core = format!("/cpus/cpu-map/cluster0/core{hart}");
            assert_eq!(cells(&t, &core, "cpu"), cells(&t, &cpu, "phandle"));
        }

        assert_eq!(s(&t, "/soc", "compatible"), "simple-bus");
        assert!(prop(&t, "/soc", "ranges").is_empty());
        let clint = "/soc/clint@2000000";
        assert_eq!(strs(&t, clint, "compatible"), ["sifive,clint0", "riscv,clint0"]);
        assert_eq!(u64s(&t, clint, "reg"), [0x200_0000, 0x1_0000]);
        assert_eq!(cells(&t, clint, "interrupts-extended"), [intcs[0], 3, intcs[0], 7, intcs[1], 3, intcs[1], 7]);

        let plic = "/soc/plic@c000000";
        assert_eq!(strs(&t, plic, "compatible"), ["sifive,plic-1.0.0", "riscv,plic0"]);
        assert_eq!(u64s(&t, plic, "reg"), [0xc00_0000, 0x60_0000]);
        assert_eq!(cells(&t, plic, "riscv,ndev"), [95]);
        assert_eq!(cells(&t, plic, "#interrupt-cells"), [1]);
        assert!(prop(&t, plic, "interrupt-controller").is_empty());
        assert_eq!(cells(&t, plic, "interrupts-extended"), [intcs[0], 11, intcs[0], 9, intcs[1], 11, intcs[1], 9]);
        let plic_ph = cells(&t, plic, "phandle");

        let uart = "/soc/serial@10000000";
        assert_eq!(s(&t, uart, "compatible"), "ns16550a");
        assert_eq!(cells(&t, uart, "clock-frequency"), [3_686_400]);
        assert_eq!(cells(&t, uart, "interrupts"), [10]);
        assert_eq!(cells(&t, uart, "interrupt-parent"), plic_ph);
        assert_eq!(u64s(&t, uart, "reg"), [0x1000_0000, 0x100]);

        let rtc = "/soc/rtc@101000";
        assert_eq!(s(&t, rtc, "compatible"), "google,goldfish-rtc");
        assert_eq!(cells(&t, rtc, "interrupts"), [11]);
        assert_eq!(cells(&t, rtc, "interrupt-parent"), plic_ph);

        let test = "/soc/test@100000";
        assert_eq!(strs(&t, test, "compatible"), ["sifive,test1", "sifive,test0", "syscon"]);
        let test_ph = cells(&t, test, "phandle");
        assert_eq!(s(&t, "/poweroff", "compatible"), "syscon-poweroff");
        assert_eq!(cells(&t, "/poweroff", "regmap"), test_ph);
        assert_eq!(cells(&t, "/poweroff", "value"), [0x5555]);
        assert_eq!(cells(&t, "/poweroff", "offset"), [0]);
        assert_eq!(s(&t, "/reboot", "compatible"), "syscon-reboot");
        assert_eq!(cells(&t, "/reboot", "regmap"), test_ph);
        assert_eq!(cells(&t, "/reboot", "value"), [0x7777]);

        assert!(!t.keys().any(|k| k.contains("virtio_mmio")), "no virtio nodes unless asked");
        // Phandles are unique.
        let mut phs: Vec<u32> = t.values().filter_map(|p| p.get("phandle")).map(|v| be32(v, 0)).collect();
        let n = phs.len();
        phs.sort_unstable();
        phs.dedup();
        assert_eq!(phs.len(), n);
        assert_eq!(n, 2 * 2 + 2, "cpus, intcs, plic, test");
    }

    #[test]
    fn optional_parts() {
        let mut p = FdtParams::virt(1, 128 << 20, "rv64gc", MmuType::Sv57);
        p.virtio.push(VirtioMmio { region: Region { base: 0x1000_1000, size: 0x1000 }, irq: VIRTIO_IRQ });
        let t = parse(&build_fdt(&p).unwrap());
        assert!(!t["/chosen"].contains_key("bootargs"));
        assert!(!t["/chosen"].contains_key("linux,initrd-start"));
        assert_eq!(s(&t, "/cpus/cpu@0", "mmu-type"), "riscv,sv57");
        assert!(!t.contains_key("/cpus/cpu@1"));
        let v = "/soc/virtio_mmio@10001000";
        assert_eq!(s(&t, v, "compatible"), "virtio,mmio");
        assert_eq!(cells(&t, v, "interrupts"), [1]);
        assert_eq!(cells(&t, v, "interrupt-parent"), cells(&t, "/soc/plic@c000000", "phandle"));
    }

    #[test]
    fn bad_params() {
        let mut p = params();
        p.harts = 0;
        assert!(matches!(build_fdt(&p), Err(FdtError::NoHarts)));
        let mut p = params();
        p.initrd = Some((0x9000_0000, 0x8000_0000));
        assert!(matches!(build_fdt(&p), Err(FdtError::BadInitrd { .. })));
        let mut p = params();
        p.isa = "arm64".into();
        assert!(matches!(build_fdt(&p), Err(FdtError::BadIsa(_))));
        let mut p = params();
        p.bootargs = "a\0b".into();
        assert!(matches!(build_fdt(&p), Err(FdtError::Writer(_))));
    }

    /// Cross-check with the reference compiler when it is installed.
    #[test]
    fn dtc_accepts_it() {
        let blob = build_fdt(&params()).unwrap();
        let path = std::env::temp_dir().join(format!("kite-fdt-test-{}.dtb", std::process::id()));
        std::fs::write(&path, &blob).unwrap();
        let out = std::process::Command::new("dtc").args(["-I", "dtb", "-O", "dts", "-o", "-"]).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        let out = match out {
            Ok(o) => o,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("dtc not installed: skipping");
                return;
            }
            Err(e) => panic!("running dtc: {e}"),
        };
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "dtc failed: {stderr}");
        assert!(!stderr.contains("Warning") && !stderr.contains("ERROR"), "dtc complains:\n{stderr}");
        let dts = String::from_utf8_lossy(&out.stdout);
        // Older dtc prints string lists as one string with `\0`s.
        let dts = dts.replace("\", \"", "\\0");
        for needle in [
            "compatible = \"riscv-virtio\";",
            "stdout-path = \"/soc/serial@10000000\";",
            "timebase-frequency = <0x989680>;",
            "compatible = \"sifive,plic-1.0.0\\0riscv,plic0\";",
            "riscv,isa-extensions = \"i\\0m\\0a\\0c\\0zicsr\\0zifencei\";",
            "reg = <0x00 0x80000000 0x00 0x10000000>;",
        ] {
            assert!(dts.contains(needle), "dtc output lacks {needle}:\n{dts}");
        }
    }
}
