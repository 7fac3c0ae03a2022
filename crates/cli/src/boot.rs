//! What to load where, decided once from the command line and applied to
//! every (re)built machine.
//!
//! - no `-kernel`, `-bios default` (the default): the embedded demo firmware.
//! - `-kernel K` with `-bios none`: K is loaded (ELF at its physical
//!   addresses, raw at the DRAM base) and the reset vector jumps to it in
//!   M-mode.
//! - `-kernel K` with `-bios default`: Kite bundles no OpenSBI yet, so this
//!   behaves like `-bios none` after a one-line note.
//! - `-bios F [-kernel K]`: F is loaded (ELF, or raw at the DRAM base) and
//!   entered; K goes to its ELF addresses or, raw, to the first 2 MiB
//!   boundary after the firmware (QEMU's `riscv_calc_kernel_start_addr`),
//!   and its entry is passed in `fw_dynamic_info.next_addr`.
//! - `-initrd`/`-append` are read and kept; they reach the guest once the
//!   device tree exists.

use std::path::Path;

use anyhow::{bail, Result};
use kite::args::{Bios, Config};
use kite_hw::riscv::VirtMachine;

/// Raw kernels after a firmware start at this alignment (RV64, as QEMU).
const KERNEL_ALIGN: u64 = 2 << 20;

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
    /// Firmware entered from the reset vector (the demo, a `-bios` file, or none).
    firmware: Option<Image>,
    kernel: Option<Image>,
    /// Kept for the device tree (next step); read now so a bad path fails early.
    initrd: Option<Image>,
    append: Option<String>,
}

impl Images {
    pub fn read(cfg: &Config) -> Result<Images> {
        let kernel = cfg.kernel.as_deref().map(|p| read("kernel", p)).transpose()?;
        let initrd = cfg.initrd.as_deref().map(|p| read("initrd", p)).transpose()?;
        let firmware = match (&cfg.bios, &kernel) {
            (Bios::File(p), _) => Some(read("firmware", p)?),
            (Bios::Default, None) => Some(Image { name: "<demo>".into(), data: kite::DEMO_ELF.to_vec() }),
            (Bios::Default, Some(_)) => {
                eprintln!("kite: note: -bios default: OpenSBI is not bundled yet; starting the kernel directly");
                None
            }
            (Bios::None, Some(_)) => None,
            (Bios::None, None) => bail!("nothing to run: -bios none and no -kernel"),
        };
        Ok(Images { firmware, kernel, initrd, append: cfg.append.clone() })
    }

    /// Load everything into `m` and write its reset vector.
    pub fn load(&self, m: &VirtMachine) -> Result<()> {
        // HwError messages already name the file.
        let load = |img: &Image, raw_base: u64| m.load(&img.name, &img.data, raw_base);
        let (start, next) = match (&self.firmware, &self.kernel) {
            (Some(fw), kernel) => {
                let f = load(fw, m.dram_base)?;
                let next = match kernel {
                    Some(k) => {
                        let base = f.high.checked_next_multiple_of(KERNEL_ALIGN).unwrap_or(m.dram_base);
                        load(k, base)?.entry
                    }
                    None => 0,
                };
                (f.entry, next)
            }
            (None, Some(k)) => {
                let e = load(k, m.dram_base)?.entry;
                (e, e)
            }
            (None, None) => bail!("nothing to run"),
        };
        m.setup_reset_vector(start, 0, next)?;
        if let Some(i) = &self.initrd {
            log::debug!(
                "initrd '{}' ({} bytes) is not passed to the guest yet (needs the device tree)",
                i.name,
                i.data.len()
            );
        }
        if let Some(a) = &self.append {
            log::debug!("kernel command line '{a}' is not passed to the guest yet (needs the device tree)");
        }
        Ok(())
    }
}
