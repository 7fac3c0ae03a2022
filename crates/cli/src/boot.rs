//! What to load where, decided once from the command line and applied to
//! every (re)built machine. QEMU 7.2's `virt` boot flow:
//!
//! - no `-kernel`, `-bios default` (the default): the embedded demo firmware.
//! - `-kernel K` with `-bios default`: OpenSBI's `fw_dynamic.bin` (searched in
//!   [`opensbi_candidates`]) at the DRAM base, entered in M-mode with
//!   `a0 = hartid`, `a1 = device tree`, `a2 = &fw_dynamic_info`, whose
//!   `next_addr` is the kernel entry (S-mode).
//! - `-bios F [-kernel K]`: F is loaded (ELF, or raw at the DRAM base) and
//!   entered the same way.
//! - Kernels after a firmware: ELF at their physical addresses; a RISC-V
//!   `Image` ([`parse_image_header`]) at DRAM base + `text_offset`
//!   (0x80200000 for Linux); other raw images at the first 2 MiB boundary after
//!   the firmware (QEMU's `riscv_calc_kernel_start_addr`).
//! - `-kernel K` with `-bios none`: K is loaded (ELF at its physical addresses,
//!   raw at the DRAM base) and the reset vector jumps to it in M-mode.
//! - The device tree (generated, or `-dtb FILE`) goes to the top of DRAM, an
//!   `-initrd` high in RAM below it (`kite_hw::riscv::virt::{fdt_load_addr,
//!   initrd_load_addr}`); `-append` becomes `/chosen/bootargs`.
//!
//! Pitfall: a bare-metal program (`-bios none`, no initrd/append) keeps
//! booting when RAM is too small for the device tree: `a1` is then 0.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use kite::args::{Bios, Config};
use kite_hw::riscv::fdt::MmuType;
use kite_hw::riscv::virt::{fdt_load_addr, initrd_load_addr, FdtExtras};
use kite_hw::riscv::VirtMachine;
use kite_riscv::RiscvCpu;

/// Raw kernels after a firmware start at this alignment (RV64, as QEMU).
const KERNEL_ALIGN: u64 = 2 << 20;

/// Where `-bios default` looks for OpenSBI, in order: the project's own
/// `roms/opensbi/` (next to the sources, then the current directory), Debian's
/// `opensbi` package, QEMU's copy (`qemu-system-data`).
pub fn opensbi_candidates() -> Vec<PathBuf> {
    vec![
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../roms/opensbi/fw_dynamic.bin"),
        PathBuf::from("roms/opensbi/fw_dynamic.bin"),
        PathBuf::from("/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin"),
        PathBuf::from("/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin"),
    ]
}

/// The first OpenSBI `fw_dynamic.bin` that exists.
pub fn find_opensbi() -> Option<PathBuf> {
    opensbi_candidates().into_iter().find(|p| p.is_file())
}

/// The fields of a RISC-V Linux `Image` header Kite uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Load offset from the start of DRAM.
    pub text_offset: u64,
    /// Memory the kernel occupies from its load address (0: unknown).
    pub image_size: u64,
}

/// Parse the RISC-V boot image header (Linux `Documentation/arch/riscv/
/// boot-image-header.rst`): `text_offset` at 0x08, `image_size` at 0x10,
/// magic "RISCV\0\0\0" at 0x30 (deprecated) or "RSC\x05" at 0x38.
pub fn parse_image_header(data: &[u8]) -> Option<ImageHeader> {
    let u64_at = |off: usize| data.get(off..off + 8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    let magic = data.get(0x30..0x38) == Some(b"RISCV\0\0\0");
    let magic2 = data.get(0x38..0x3c) == Some(b"RSC\x05");
    if !(magic || magic2) {
        return None;
    }
    Some(ImageHeader { text_offset: u64_at(0x08)?, image_size: u64_at(0x10)? })
}

/// The ISA string and MMU type of the harts Kite emulates, asked of the CPU
/// model itself so the device tree never promises what the harts lack: the
/// single-letter extensions from `misa`; `zicntr` if the `time` CSR exists;
/// `sstc` if `stimecmp` does; the deepest paging mode `satp` accepts.
pub fn hart_isa() -> (String, MmuType) {
    use kite_riscv::csr;
    let misa = csr::MISA;
    let mut isa = String::from("rv64");
    for letter in "imafdqcbvh".chars() {
        if misa & (1 << (letter as u32 - 'a' as u32)) != 0 {
            isa.push(letter);
        }
    }
    let has = |num: u16| csr::lookup(num).is_some();
    if has(0xc01) {
        isa.push_str("_zicntr");
    }
    isa.push_str("_zicsr_zifencei");
    if has(0x14d) {
        isa.push_str("_sstc");
    }
    let mut probe = RiscvCpu::new(0);
    let mmu = [(10u64, MmuType::Sv57), (9, MmuType::Sv48), (8, MmuType::Sv39)]
        .into_iter()
        .find(|&(mode, _)| {
            let v = mode << 60;
            let w = csr::access(&mut probe, 0x180, kite_riscv::decode::CsrOp::Rw, v, false, true, 0);
            let r = csr::access(&mut probe, 0x180, kite_riscv::decode::CsrOp::Rs, 0, true, false, 0);
            w.is_ok() && r.is_ok_and(|got| got >> 60 == mode)
        })
        .map_or(MmuType::Bare, |(_, m)| m);
    (isa, mmu)
}

/// A host file read into memory.
#[derive(Debug)]
pub struct Image {
    pub name: String,
    pub data: Vec<u8>,
}

fn read(what: &str, path: &Path) -> Result<Image> {
    let data = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("cannot read {what} '{}': {}", path.display(), kite::io_msg(&e)))?;
    if data.is_empty() {
        bail!("{what} '{}' is empty", path.display());
    }
    Ok(Image { name: path.display().to_string(), data })
}

/// The images to load at every boot.
#[derive(Debug)]
pub struct Images {
    /// Firmware entered from the reset vector (the demo, OpenSBI, a `-bios` file, or none).
    firmware: Option<Image>,
    kernel: Option<Image>,
    initrd: Option<Image>,
    append: Option<String>,
    /// `-dtb FILE`, passed instead of the generated tree.
    dtb: Option<Image>,
}

/// What [`Images::load`] put in the machine.
#[derive(Debug)]
pub struct Loaded {
    /// The device tree the guest gets (also what `dumpdtb` writes).
    pub fdt: Vec<u8>,
}

impl Images {
    pub fn read(cfg: &Config) -> Result<Images> {
        let kernel = cfg.kernel.as_deref().map(|p| read("kernel", p)).transpose()?;
        let initrd = cfg.initrd.as_deref().map(|p| read("initrd", p)).transpose()?;
        let dtb = cfg.dtb.as_deref().map(|p| read("device tree", p)).transpose()?;
        if let Some(d) = &dtb {
            if d.data.get(..4) != Some(&[0xd0, 0x0d, 0xfe, 0xed][..]) {
                bail!("device tree '{}' is not a flattened device tree blob (bad magic)", d.name);
            }
            if cfg.append.is_some() || initrd.is_some() {
                eprintln!("kite: note: -dtb: -append and -initrd are not patched into the given device tree");
            }
        }
        let firmware = match (&cfg.bios, &kernel) {
            (Bios::File(p), _) => Some(read("firmware", p)?),
            (Bios::Default, None) => Some(Image { name: "<demo>".into(), data: kite::DEMO_ELF.to_vec() }),
            (Bios::Default, Some(_)) => {
                let Some(p) = find_opensbi() else {
                    let paths: Vec<String> = opensbi_candidates().iter().map(|p| p.display().to_string()).collect();
                    bail!(
                        "-bios default: OpenSBI fw_dynamic.bin not found (looked in {}); install the Debian \
                         package 'opensbi' or pass -bios FILE",
                        paths.join(", ")
                    );
                };
                Some(read("firmware", &p)?)
            }
            (Bios::None, Some(_)) => None,
            (Bios::None, None) => bail!("nothing to run: -bios none and no -kernel"),
        };
        Ok(Images { firmware, kernel, initrd, append: cfg.append.clone(), dtb })
    }

    /// Load everything into `m`, place the device tree (and initrd) and write
    /// the reset vector.
    pub fn load(&self, m: &VirtMachine) -> Result<Loaded> {
        // HwError messages already name the file.
        let load = |img: &Image, raw_base: u64| m.load(&img.name, &img.data, raw_base);
        // (reset-vector target, firmware's next stage, kernel [entry, end) if any, highest used).
        let (start, next, kernel, used_high) = match (&self.firmware, &self.kernel) {
            (Some(fw), kernel) => {
                let f = load(fw, m.dram_base)?;
                match kernel {
                    Some(k) => {
                        let (entry, end) = self.load_kernel_after_firmware(m, k, f.high)?;
                        (f.entry, entry, Some((entry, end)), end.max(f.high))
                    }
                    None => (f.entry, 0, None, f.high),
                }
            }
            (None, Some(k)) => {
                let l = load(k, m.dram_base)?;
                (l.entry, l.entry, Some((l.entry, l.high)), l.high)
            }
            (None, None) => bail!("nothing to run"),
        };
        let bare = self.firmware.is_none() && self.initrd.is_none() && self.append.is_none() && self.dtb.is_none();
        let (isa, mmu) = hart_isa();
        // The initrd range only changes property values, not the tree's size: a
        // first build with a dummy range gives the size that decides the address.
        let mut extras = FdtExtras {
            bootargs: self.append.clone().unwrap_or_default(),
            initrd: self.initrd.as_ref().map(|_| (0, 0)),
            isa,
            mmu,
        };
        let mut fdt = match &self.dtb {
            Some(d) => d.data.clone(),
            None => m.fdt(&extras)?,
        };
        let ram = m.ram_size();
        let fdt_addr = match fdt_load_addr(m.dram_base, ram, fdt.len() as u64) {
            Some(a) if a >= used_high => a,
            _ if bare => {
                log::debug!("no room for the device tree above the program; a1 = 0");
                m.setup_reset_vector(start, 0, next)?;
                return Ok(Loaded { fdt });
            }
            _ => bail!("{} bytes of RAM leave no room for the device tree above the loaded images", ram),
        };
        if let Some(i) = &self.initrd {
            let (entry, end) = kernel.unwrap_or((m.dram_base, used_high));
            let size = i.data.len() as u64;
            let Some(addr) = initrd_load_addr(entry, end.max(used_high), ram, size, fdt_addr) else {
                bail!("initrd '{}' ({size} bytes) does not fit in RAM between the kernel and the device tree", i.name);
            };
            m.write_blob(&i.name, addr, &i.data)?;
            extras.initrd = Some((addr, addr + size));
            if self.dtb.is_none() {
                fdt = m.fdt(&extras)?;
            }
            log::debug!("initrd '{}' at {addr:#x}..{:#x}", i.name, addr + size);
        }
        m.write_blob("device tree", fdt_addr, &fdt).context("cannot place the device tree")?;
        log::debug!("device tree ({} bytes) at {fdt_addr:#x}", fdt.len());
        m.setup_reset_vector(start, fdt_addr, next)?;
        Ok(Loaded { fdt })
    }

    /// Load a kernel entered by firmware that ends at `fw_high`; returns its
    /// entry and the end of its memory footprint.
    fn load_kernel_after_firmware(&self, m: &VirtMachine, k: &Image, fw_high: u64) -> Result<(u64, u64)> {
        if let Some(h) = (!kite_hw::loader::is_elf(&k.data)).then(|| parse_image_header(&k.data)).flatten() {
            let Some(base) = m.dram_base.checked_add(h.text_offset).filter(|&b| b >= fw_high) else {
                bail!(
                    "kernel '{}': text_offset {:#x} puts it inside the firmware (which ends at {fw_high:#x})",
                    k.name,
                    h.text_offset
                );
            };
            let l = m.load(&k.name, &k.data, base)?;
            let end = base.saturating_add(h.image_size).max(l.high);
            if end > m.dram_base + m.ram_size() {
                bail!("kernel '{}' needs {:#x} bytes from {base:#x}, beyond the end of RAM", k.name, h.image_size);
            }
            return Ok((l.entry, end));
        }
        let base = fw_high.checked_next_multiple_of(KERNEL_ALIGN).unwrap_or(m.dram_base);
        let l = m.load(&k.name, &k.data, base)?;
        Ok((l.entry, l.high))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(text_offset: u64, image_size: u64, magic: bool, magic2: bool) -> Vec<u8> {
        let mut h = vec![0u8; 0x40];
        h[0x08..0x10].copy_from_slice(&text_offset.to_le_bytes());
        h[0x10..0x18].copy_from_slice(&image_size.to_le_bytes());
        if magic {
            h[0x30..0x38].copy_from_slice(b"RISCV\0\0\0");
        }
        if magic2 {
            h[0x38..0x3c].copy_from_slice(b"RSC\x05");
        }
        h
    }

    #[test]
    fn image_header_is_parsed() {
        let want = Some(ImageHeader { text_offset: 0x20_0000, image_size: 0x123_4000 });
        assert_eq!(parse_image_header(&header(0x20_0000, 0x123_4000, true, true)), want);
        assert_eq!(parse_image_header(&header(0x20_0000, 0x123_4000, true, false)), want, "old magic alone");
        assert_eq!(parse_image_header(&header(0x20_0000, 0x123_4000, false, true)), want, "new magic alone");
        assert_eq!(parse_image_header(&header(0x20_0000, 0x123_4000, false, false)), None);
        assert_eq!(parse_image_header(&header(0x20_0000, 0, true, true)[..0x37]), None, "truncated");
        assert_eq!(parse_image_header(b""), None);
    }

    #[test]
    fn shared_image_header_if_present() {
        let dir = std::env::var("KITE_IMAGES")
            .unwrap_or_else(|_| format!("{}/../../../shared/images", env!("CARGO_MANIFEST_DIR")));
        let Ok(data) = std::fs::read(Path::new(&dir).join("riscv64/Image")) else {
            eprintln!("SKIP: no riscv64/Image under {dir}");
            return;
        };
        let h = parse_image_header(&data).expect("the shared Image has a RISC-V header");
        assert_eq!(h.text_offset, 0x20_0000);
        assert!(h.image_size >= data.len() as u64);
    }

    #[test]
    fn isa_comes_from_the_cpu_model() {
        let (isa, _) = hart_isa();
        assert!(isa.starts_with("rv64ima"), "{isa}");
        assert!(isa.contains('c') && isa.contains("_zicsr_zifencei"), "{isa}");
        assert!(kite_hw::riscv::fdt::isa_extensions(&isa).is_ok(), "{isa}");
    }
}
