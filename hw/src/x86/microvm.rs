//! `-M microvm`: a minimal x86_64 machine for direct kernel boot.
//!
//! RAM at 0 (below 4 GiB; [`MAX_RAM`]), COM1 (NS16550 at port 0x3f8, IRQ 4),
//! the i8042 reset line, an optional `isa-debug-exit`, an MP table for the
//! CPUs, and virtio-mmio transports announced on the kernel command line
//! (`virtio_mmio.device=`). Interrupt controllers and the PIT belong to the
//! accelerator, so the machine requires [`Accelerator::has_in_kernel_irqchip`].
//!
//! [`MicroVm::load`] writes the kernel (bzImage, PVH ELF or 64-bit ELF), the
//! initrd, the command line and the boot structures, and says how the boot
//! vCPU enters ([`X86Entry`]); the accelerator's CPU code turns that into
//! register state.

use std::sync::Arc;

use kite_core::{Accelerator, MmioDevice, PhysMemory, PioBus, PioDevice, VmControl};
use kite_memory::PhysMap;

use super::boot::{self, Initrd};
use super::debug_exit::DebugExit;
use super::i8042::{I8042, I8042_BASE, I8042_LEN};
use super::mptable;
use super::virtio_mmio::EmptyTransport;
use crate::char::ns16550::{Ns16550, Sink};
use crate::loader;
use crate::timer::TimerService;
use crate::HwError;

/// RAM must end below the 32-bit PCI/APIC hole.
pub const MAX_RAM: u64 = 0xc000_0000;
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_GSI: u32 = 4;
/// First virtio-mmio transport (QEMU microvm's layout: 512 bytes each, GSIs from 5).
pub const VIRTIO_MMIO_BASE: u64 = 0xfeb0_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x200;
pub const VIRTIO_MMIO_GSI: u32 = 5;
/// Transport slots mapped (empty until virtio devices exist).
pub const VIRTIO_MMIO_SLOTS: u64 = 8;
const EM_X86_64: u16 = 62;

/// How the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum X86Entry {
    /// PVH: 32-bit protected mode, `ebx` = start info.
    Pvh { entry: u32, start_info: u32 },
    /// Linux 64-bit boot protocol: long mode, `rsi` = zero page.
    Linux64 { entry: u64, boot_params: u64 },
}

/// Machine options from the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroVmConfig {
    pub ram_size: u64,
    pub smp: u32,
    /// `isa-debug-exit` at (iobase, iosize).
    pub debug_exit: Option<(u16, u16)>,
}

/// Port I/O view of a byte-register MMIO device (the 16550 on COM1).
#[derive(Debug)]
struct PortMapped(Arc<dyn MmioDevice>);

impl PioDevice for PortMapped {
    fn read(&self, offset: u16, size: u32) -> u32 {
        self.0.read(u64::from(offset), size) as u32
    }
    fn write(&self, offset: u16, size: u32, value: u32) {
        self.0.write(u64::from(offset), size, u64::from(value))
    }
}

/// A built microVM.
#[derive(Debug)]
pub struct MicroVm {
    pub mem: Arc<PhysMap>,
    pub pio: Arc<PioBus>,
    pub uart: Arc<Ns16550>,
    pub ram_size: u64,
    pub smp: u32,
    /// virtio-mmio transports with a device behind them (base, GSI), announced
    /// to the kernel; the empty slots are not (as on QEMU's microvm).
    pub virtio_mmio: Vec<(u64, u32)>,
    /// Flushes console output that does not end a line (see `Ns16550::buffer_output`).
    _timers: TimerService,
}

/// `virtio_mmio.device=` parameters for the kernel command line.
pub fn virtio_mmio_cmdline(transports: &[(u64, u32)]) -> String {
    transports
        .iter()
        .map(|(base, gsi)| format!("virtio_mmio.device={}@{base:#x}:{gsi}", VIRTIO_MMIO_SIZE))
        .collect::<Vec<_>>()
        .join(" ")
}

impl MicroVm {
    pub fn new(
        cfg: &MicroVmConfig,
        accel: &dyn Accelerator,
        vm: Arc<VmControl>,
        serial_out: Sink,
    ) -> Result<MicroVm, HwError> {
        if !accel.has_in_kernel_irqchip() {
            return Err(HwError::Machine(format!(
                "machine 'microvm' needs an accelerator with an in-kernel interrupt controller ('{}' has none)",
                accel.name()
            )));
        }
        if cfg.ram_size < (2 << 20) || cfg.ram_size > MAX_RAM || cfg.ram_size % 4096 != 0 {
            return Err(HwError::Machine(format!(
                "microvm RAM size {:#x} must be a multiple of 4 KiB between 2 MiB and 3 GiB",
                cfg.ram_size
            )));
        }
        let max = accel.max_vcpus().min(mptable::MAX_CPUS);
        if cfg.smp == 0 || cfg.smp > max {
            return Err(HwError::Machine(format!("-smp {}: this accelerator runs at most {max} vCPUs", cfg.smp)));
        }
        let mut mem = PhysMap::new();
        mem.add_ram("ram", 0, cfg.ram_size)?;
        for i in 0..VIRTIO_MMIO_SLOTS {
            let base = VIRTIO_MMIO_BASE + i * VIRTIO_MMIO_SIZE;
            mem.add_mmio(&format!("virtio-mmio.{i}"), base, VIRTIO_MMIO_SIZE, Arc::new(EmptyTransport))?;
        }
        let irq = |gsi| accel.irq_line(gsi).map_err(|e| HwError::Machine(e.to_string()));
        let uart = Arc::new(Ns16550::new(serial_out, irq(COM1_GSI)?));
        // The console is written per line, as on `virt`: each byte was a `write`.
        let timers = TimerService::new()?;
        uart.buffer_output(&timers);
        let mut pio = PioBus::new();
        let bus_err = |e: kite_core::AccelError| HwError::Machine(e.to_string());
        pio.insert("com1", COM1_PORT, 8, Arc::new(PortMapped(uart.clone()))).map_err(bus_err)?;
        pio.insert("i8042", I8042_BASE, I8042_LEN, Arc::new(I8042::new(vm.clone()))).map_err(bus_err)?;
        if let Some((base, size)) = cfg.debug_exit {
            pio.insert("isa-debug-exit", base, size, Arc::new(DebugExit::new(vm))).map_err(bus_err)?;
        }
        Ok(MicroVm {
            mem: Arc::new(mem),
            pio: Arc::new(pio),
            uart,
            ram_size: cfg.ram_size,
            smp: cfg.smp,
            virtio_mmio: Vec::new(),
            _timers: timers,
        })
    }

    /// Load `kernel` (+ `initrd`, `cmdline`), write the boot structures and
    /// the MP table, and say how to enter.
    pub fn load(
        &self,
        kernel: (&str, &[u8]),
        initrd: Option<(&str, &[u8])>,
        cmdline: &str,
    ) -> Result<X86Entry, HwError> {
        let (kname, kdata) = kernel;
        let mut full_cmdline = cmdline.to_string();
        let virtio = virtio_mmio_cmdline(&self.virtio_mmio);
        if !virtio.is_empty() {
            full_cmdline = format!("{full_cmdline} {virtio}").trim().to_string();
        }
        boot::write_cmdline(&self.mem, &full_cmdline)?;
        let table = mptable::build(boot::MPTABLE_ADDR as u32, self.smp)
            .ok_or_else(|| HwError::Machine(format!("cannot describe {} CPUs in an MP table", self.smp)))?;
        if !self.mem.write_ram(boot::MPTABLE_ADDR, &table) {
            return Err(HwError::Internal("MP table does not fit below 640 KiB"));
        }

        let bz = boot::parse_bzimage(kname, kdata)?;
        let (entry, kernel_end, setup_header, initrd_max) = match &bz {
            Some(b) => {
                let li = loader::load_raw(&self.mem, kname, b.kernel, boot::HIGH_MEMORY)?;
                let entry = X86Entry::Linux64 { entry: boot::HIGH_MEMORY + 0x200, boot_params: boot::ZERO_PAGE };
                (entry, li.high, Some(b.setup_header), b.initrd_addr_max)
            }
            None if loader::is_elf(kdata) => {
                let li = loader::load_elf(&self.mem, kname, kdata, EM_X86_64)?;
                if li.low < boot::HIGH_MEMORY {
                    return Err(HwError::BadElf {
                        file: kname.to_string(),
                        msg: format!("segment at {:#x} is below 1 MiB (reserved for boot data)", li.low),
                    });
                }
                let entry = match boot::pvh_entry(kdata) {
                    Some(e) => X86Entry::Pvh { entry: e, start_info: boot::START_INFO as u32 },
                    None => X86Entry::Linux64 { entry: li.entry, boot_params: boot::ZERO_PAGE },
                };
                (entry, li.high, None, u64::from(u32::MAX))
            }
            None => {
                return Err(HwError::BadElf { file: kname.to_string(), msg: "not a bzImage or an x86_64 ELF".into() })
            }
        };
        let initrd: Option<Initrd> = initrd
            .map(|(n, d)| boot::load_initrd(&self.mem, n, d, self.ram_size, kernel_end, initrd_max))
            .transpose()?;
        match entry {
            X86Entry::Pvh { .. } => boot::write_start_info(&self.mem, self.ram_size, initrd)?,
            X86Entry::Linux64 { .. } => {
                boot::write_zero_page(&self.mem, self.ram_size, setup_header, full_cmdline.len(), initrd)?
            }
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_core::{AccelError, IrqLine, NoIrq};

    #[derive(Debug)]
    struct FakeAccel(bool);
    impl Accelerator for FakeAccel {
        fn name(&self) -> &'static str {
            "fake"
        }
        fn has_in_kernel_irqchip(&self) -> bool {
            self.0
        }
        fn max_vcpus(&self) -> u32 {
            4
        }
        fn irq_line(&self, _gsi: u32) -> Result<Arc<dyn IrqLine>, AccelError> {
            Ok(Arc::new(NoIrq))
        }
    }

    fn cfg() -> MicroVmConfig {
        MicroVmConfig { ram_size: 16 << 20, smp: 2, debug_exit: Some((0xf4, 4)) }
    }

    #[test]
    fn needs_an_in_kernel_irqchip_and_sane_sizes() {
        let vm = Arc::new(VmControl::new());
        let e = MicroVm::new(&cfg(), &FakeAccel(false), vm.clone(), Box::new(std::io::sink())).unwrap_err();
        assert!(e.to_string().contains("in-kernel interrupt controller"), "{e}");
        let big = MicroVmConfig { ram_size: 4 << 30, ..cfg() };
        assert!(MicroVm::new(&big, &FakeAccel(true), vm.clone(), Box::new(std::io::sink())).is_err());
        let many = MicroVmConfig { smp: 5, ..cfg() };
        assert!(MicroVm::new(&many, &FakeAccel(true), vm, Box::new(std::io::sink())).is_err());
    }

    #[test]
    fn ports_reach_the_devices() {
        let vm = Arc::new(VmControl::new());
        let m = MicroVm::new(&cfg(), &FakeAccel(true), vm.clone(), Box::new(std::io::sink())).unwrap();
        assert_eq!(m.pio.read(COM1_PORT + 5, 1) & 0x60, 0x60); // LSR: THRE|TEMT
        m.pio.write(0xf4, 1, 3);
        assert_eq!(vm.exit_requested(), Some(kite_core::ExitCode::Exit(7)));
    }

    #[test]
    fn raw_junk_is_refused_and_virtio_is_announced() {
        let vm = Arc::new(VmControl::new());
        let m = MicroVm::new(&cfg(), &FakeAccel(true), vm, Box::new(std::io::sink())).unwrap();
        let e = m.load(("junk.bin", &[0x90; 64]), None, "").unwrap_err();
        assert!(e.to_string().contains("junk.bin"), "{e}");
        assert_eq!(virtio_mmio_cmdline(&[(VIRTIO_MMIO_BASE, VIRTIO_MMIO_GSI)]), "virtio_mmio.device=512@0xfeb00000:5");
    }
}
