//! KVM accelerator: runs x86_64 guests on the host CPU through /dev/kvm.
//!
//! [`KvmVm::open`] creates the VM with the in-kernel irqchip (PIC, IOAPIC,
//! LAPICs) and PIT; [`KvmVm::map_memory`] registers every RAM block of the
//! machine's [`PhysMap`] as a memory slot (the same host mapping the rest of
//! Kite uses, so loaders write guest RAM directly); device interrupts go
//! through irqfds ([`KvmVm::irq_line`]); [`KvmVm::run`] starts one host
//! thread per vCPU and dispatches MMIO exits to the `PhysMap` and port I/O
//! exits to the machine's [`PioBus`].
//!
//! Stopping: every vCPU thread checks [`VmControl::exit_requested`] before
//! each `KVM_RUN`. A thread inside `KVM_RUN` is kicked with a real-time
//! signal whose handler sets `immediate_exit` in that thread's `kvm_run`;
//! the kick repeats until the thread is gone, so a signal landing just
//! before `KVM_RUN` cannot be lost and no path hangs.
//!
//! Errors are one line ([`KvmError`]): no /dev/kvm, no permission, a missing
//! capability, an emulation failure with the guest RIP. Guest behaviour
//! never panics Kite: unknown MMIO/ports are logged and ignored, a triple
//! fault is a reset.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use kite_core::{guest_error, AccelError, Accelerator, ExitCode, IoExit, IrqLine, PhysMemory, PioBus, VmControl};
use kite_memory::{Hit, PhysMap, RegionKind};
use kite_x86::BootEntry;
use kvm_bindings::{
    kvm_pit_config, kvm_run, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Cap, Kvm, VcpuExit, VcpuFd, VmFd};
use vmm_sys_util::eventfd::EventFd;

/// KVM failures, each one line.
#[derive(Debug, thiserror::Error)]
pub enum KvmError {
    #[error("KVM is not available: /dev/kvm does not exist (load the kvm module, or use -accel tcg)")]
    NoDevice,
    #[error("KVM is not available: no permission to open /dev/kvm (join the 'kvm' group, or use -accel tcg)")]
    NoPermission,
    #[error("KVM is not available: cannot open /dev/kvm: {0}")]
    Open(String),
    #[error("KVM lacks a required capability: {0}")]
    MissingCap(&'static str),
    #[error("KVM: {what} failed: {err}")]
    Ioctl { what: &'static str, err: String },
    #[error("KVM: -smp {0} is more than this host's KVM allows ({1})")]
    TooManyVcpus(u32, u32),
    #[error("KVM: cannot set up vCPU state: {0}")]
    Setup(#[from] kite_x86::X86Error),
}

fn ioctl_err(what: &'static str) -> impl FnOnce(vmm_sys_util::errno::Error) -> KvmError {
    move |e| KvmError::Ioctl { what, err: e.to_string() }
}

/// Where the TSS and identity map pages go (Intel needs them, below 4 GiB
/// and outside RAM; the usual spot just below the BIOS area).
const TSS_ADDR: usize = 0xfffb_d000;
const IDENTITY_MAP_ADDR: u64 = 0xfffb_c000;

/// An open VM: the accelerator a machine asks for capabilities and interrupt lines.
pub struct KvmVm {
    kvm: Kvm,
    vm: VmFd,
    max_vcpus: u32,
}

impl fmt::Debug for KvmVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KvmVm(max_vcpus={})", self.max_vcpus)
    }
}

/// Whether /dev/kvm can be opened (for accelerator choice and test skips).
pub fn available() -> Result<(), KvmError> {
    open_kvm().map(|_| ())
}

/// Whether the host KVM is nested PVM, where each guest instruction may be
/// emulated and Linux guests do not boot.
pub fn is_pvm() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

fn open_kvm() -> Result<Kvm, KvmError> {
    Kvm::new().map_err(|e| match e.errno() {
        libc::ENOENT | libc::ENXIO | libc::ENODEV => KvmError::NoDevice,
        libc::EACCES | libc::EPERM => KvmError::NoPermission,
        _ => KvmError::Open(e.to_string()),
    })
}

impl KvmVm {
    /// Open /dev/kvm and create a VM with in-kernel irqchip and PIT.
    pub fn open() -> Result<KvmVm, KvmError> {
        let kvm = open_kvm()?;
        for (cap, name) in [
            (Cap::Irqchip, "KVM_CAP_IRQCHIP"),
            (Cap::Irqfd, "KVM_CAP_IRQFD"),
            (Cap::Pit2, "KVM_CAP_PIT2"),
            (Cap::UserMemory, "KVM_CAP_USER_MEMORY"),
            (Cap::ImmediateExit, "KVM_CAP_IMMEDIATE_EXIT"),
        ] {
            if !kvm.check_extension(cap) {
                return Err(KvmError::MissingCap(name));
            }
        }
        let vm = kvm.create_vm().map_err(ioctl_err("KVM_CREATE_VM"))?;
        // Only VMX needs these; elsewhere they may fail harmlessly.
        if let Err(e) = vm.set_tss_address(TSS_ADDR) {
            log::debug!(target: "accel", "KVM_SET_TSS_ADDR: {e} (ignored)");
        }
        if let Err(e) = vm.set_identity_map_address(IDENTITY_MAP_ADDR) {
            log::debug!(target: "accel", "KVM_SET_IDENTITY_MAP_ADDR: {e} (ignored)");
        }
        vm.create_irq_chip().map_err(ioctl_err("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config { flags: KVM_PIT_SPEAKER_DUMMY, ..Default::default() };
        vm.create_pit2(pit).map_err(ioctl_err("KVM_CREATE_PIT2"))?;
        let max_vcpus = kvm.get_max_vcpus().min(255) as u32;
        Ok(KvmVm { kvm, vm, max_vcpus })
    }

    /// Register every RAM block of `mem` as a KVM memory slot.
    ///
    /// `mem` must outlive the VM (the caller keeps the `Arc<PhysMap>` that
    /// [`KvmVm::run`] also holds).
    pub fn map_memory(&self, mem: &PhysMap) -> Result<(), KvmError> {
        let rams = mem.regions().filter_map(|r| match &r.kind {
            RegionKind::Ram(ram) => Some(ram),
            RegionKind::Mmio(_) => None,
        });
        for (slot, ram) in rams.enumerate() {
            let Some((ptr, _)) = ram.host_ptr(ram.base()) else { continue };
            let region = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: ram.base(),
                memory_size: ram.size(),
                userspace_addr: ptr as u64,
            };
            // SAFETY: the host range is the GuestRam's own anonymous mapping of
            // exactly `size` bytes, kept alive by the PhysMap for the VM's life.
            unsafe { self.vm.set_user_memory_region(region) }.map_err(ioctl_err("KVM_SET_USER_MEMORY_REGION"))?;
        }
        Ok(())
    }

    fn create_vcpu(&self, id: u32, nr: u32, boot: Option<BootEntry>) -> Result<VcpuFd, KvmError> {
        let vcpu = self.vm.create_vcpu(u64::from(id)).map_err(ioctl_err("KVM_CREATE_VCPU"))?;
        let mut cpuid =
            self.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).map_err(ioctl_err("KVM_GET_SUPPORTED_CPUID"))?;
        kite_x86::fixup_cpuid(&mut cpuid, id, nr);
        vcpu.set_cpuid2(&cpuid).map_err(ioctl_err("KVM_SET_CPUID2"))?;
        vcpu.set_msrs(&kite_x86::boot_msrs_fam()?).map_err(ioctl_err("KVM_SET_MSRS"))?;
        vcpu.set_fpu(&kite_x86::boot_fpu()).map_err(ioctl_err("KVM_SET_FPU"))?;
        if let Some(entry) = boot {
            let mut lapic = vcpu.get_lapic().map_err(ioctl_err("KVM_GET_LAPIC"))?;
            kite_x86::set_lapic_lint(&mut lapic);
            vcpu.set_lapic(&lapic).map_err(ioctl_err("KVM_SET_LAPIC"))?;
            let mut sregs = vcpu.get_sregs().map_err(ioctl_err("KVM_GET_SREGS"))?;
            kite_x86::boot_sregs(entry, &mut sregs);
            vcpu.set_sregs(&sregs).map_err(ioctl_err("KVM_SET_SREGS"))?;
            vcpu.set_regs(&kite_x86::boot_regs(entry)).map_err(ioctl_err("KVM_SET_REGS"))?;
        }
        Ok(vcpu)
    }

    /// Run `nr_vcpus` vCPUs until the VM stops. vCPU 0 starts at `boot`; the
    /// others wait for INIT/SIPI in the in-kernel LAPIC, as on a PC.
    pub fn run(
        &self,
        mem: Arc<PhysMap>,
        pio: Arc<PioBus>,
        ctl: Arc<VmControl>,
        boot: BootEntry,
        nr_vcpus: u32,
    ) -> Result<IoExit, KvmError> {
        if nr_vcpus == 0 || nr_vcpus > self.max_vcpus {
            return Err(KvmError::TooManyVcpus(nr_vcpus, self.max_vcpus));
        }
        install_kick_handler()?;
        kite_x86::write_boot_tables(boot, &mut |a, b| mem.write_ram(a, b))?;
        let mut vcpus = Vec::new();
        for id in 0..nr_vcpus {
            vcpus.push(self.create_vcpu(id, nr_vcpus, (id == 0).then_some(boot))?);
        }
        let failure: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let running = Arc::new(AtomicUsize::new(vcpus.len()));
        // vCPU threads report here when they end, so the stop loop below wakes at once.
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let mut threads = Vec::new();
        for (id, vcpu) in vcpus.into_iter().enumerate() {
            let t = VcpuThread { id, mem: mem.clone(), pio: pio.clone(), ctl: ctl.clone() };
            let (failure2, running2, ctl2, done2) = (failure.clone(), running.clone(), ctl.clone(), done_tx.clone());
            let spawned = std::thread::Builder::new().name(format!("vcpu{id}")).spawn(move || {
                if let Err(msg) = t.run(vcpu) {
                    let mut f = failure2.lock().unwrap_or_else(|e| e.into_inner());
                    f.get_or_insert(msg);
                    drop(f);
                    ctl2.request_exit(ExitCode::Exit(1));
                }
                running2.fetch_sub(1, Ordering::SeqCst);
                ctl2.notify();
                let _ = done2.send(());
            });
            match spawned {
                Ok(h) => threads.push(h),
                Err(e) => {
                    ctl.request_exit(ExitCode::Exit(1));
                    running.fetch_sub(1, Ordering::SeqCst);
                    failure
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .get_or_insert(format!("cannot start a vCPU thread: {e}"));
                }
            }
        }
        // Wait for a stop request, then kick until every vCPU thread is gone.
        while running.load(Ordering::SeqCst) > 0 {
            if ctl.exit_requested().is_some() {
                kick(&threads);
                // Pace the kicks (`VmControl::wait` returns at once after a stop request):
                // kicking in a tight loop livelocked a vCPU thread that was inside a
                // syscall of its own (e.g. the futex of the i8042's reset request), since
                // every signal interrupts and restarts it.
                let _ = done_rx.recv_timeout(Duration::from_millis(2));
            } else {
                ctl.wait(Duration::from_millis(100), || {
                    ctl.exit_requested().is_none() && running.load(Ordering::SeqCst) > 0
                });
            }
        }
        for t in threads {
            let _ = t.join();
        }
        if let Some(msg) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(IoExit::Failed(msg));
        }
        Ok(match ctl.exit_requested() {
            Some(ExitCode::Reset) => IoExit::Reset,
            _ => IoExit::Stopped,
        })
    }
}

impl Accelerator for KvmVm {
    fn name(&self) -> &'static str {
        "kvm"
    }
    fn has_in_kernel_irqchip(&self) -> bool {
        true
    }
    fn max_vcpus(&self) -> u32 {
        self.max_vcpus
    }
    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn IrqLine>, AccelError> {
        let fd = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| AccelError(format!("cannot create an eventfd: {e}")))?;
        self.vm.register_irqfd(&fd, gsi).map_err(|e| AccelError(format!("KVM_IRQFD for GSI {gsi} failed: {e}")))?;
        Ok(Arc::new(IrqFd { fd, gsi, level: std::sync::atomic::AtomicBool::new(false) }))
    }
}

/// An interrupt line into the in-kernel irqchip through an irqfd. A rising
/// edge signals the eventfd (KVM raises and lowers the GSI); ISA devices on
/// a PC interrupt on edges, so lowering needs no action.
struct IrqFd {
    fd: EventFd,
    gsi: u32,
    level: std::sync::atomic::AtomicBool,
}

impl fmt::Debug for IrqFd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IrqFd(gsi {})", self.gsi)
    }
}

impl IrqLine for IrqFd {
    fn set_level(&self, level: bool) {
        if level && !self.level.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.fd.write(1) {
                log::warn!(target: "accel", "irqfd for GSI {} not signalled: {e}", self.gsi);
            }
        } else if !level {
            self.level.store(false, Ordering::SeqCst);
        }
    }
}

thread_local! {
    /// This thread's `kvm_run`, for the kick signal handler.
    static KVM_RUN: Cell<*mut kvm_run> = const { Cell::new(std::ptr::null_mut()) };
}

fn kick_signal() -> libc::c_int {
    libc::SIGRTMIN()
}

extern "C" fn on_kick(_sig: libc::c_int) {
    // Only a thread-local read and a volatile store: async-signal-safe.
    let _ = KVM_RUN.try_with(|p| {
        let run = p.get();
        if !run.is_null() {
            // SAFETY: the pointer is this thread's mapped kvm_run, set while the
            // VcpuFd lives and cleared before it is dropped.
            unsafe { std::ptr::addr_of_mut!((*run).immediate_exit).write_volatile(1) };
        }
    });
}

fn install_kick_handler() -> Result<(), KvmError> {
    static ONCE: Once = Once::new();
    static RESULT: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction plus a handler that only does
        // async-signal-safe work; no SA_RESTART so KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_kick as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            RESULT.store(libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()), Ordering::SeqCst);
        }
    });
    if RESULT.load(Ordering::SeqCst) != 0 {
        return Err(KvmError::Ioctl { what: "sigaction", err: std::io::Error::last_os_error().to_string() });
    }
    Ok(())
}

fn kick(threads: &[std::thread::JoinHandle<()>]) {
    use std::os::unix::thread::JoinHandleExt;
    for t in threads.iter().filter(|t| !t.is_finished()) {
        // SAFETY: the pthread is joinable (not yet joined), so its id is valid.
        unsafe { libc::pthread_kill(t.as_pthread_t(), kick_signal()) };
    }
}

/// One vCPU's loop state.
struct VcpuThread {
    id: usize,
    mem: Arc<PhysMap>,
    pio: Arc<PioBus>,
    ctl: Arc<VmControl>,
}

/// A port access of `data.len()` bytes; string I/O (`rep ins/outs`) arrives
/// as several elements, handled one by one with the element size guessed
/// from the length (1, 2 or 4 divide it).
fn elem_size(len: usize) -> usize {
    if len <= 4 && len.is_power_of_two() {
        len
    } else {
        1
    }
}

impl VcpuThread {
    fn run(&self, mut vcpu: VcpuFd) -> Result<(), String> {
        KVM_RUN.with(|p| p.set(vcpu.get_kvm_run() as *mut kvm_run));
        let r = self.run_loop(&mut vcpu);
        KVM_RUN.with(|p| p.set(std::ptr::null_mut()));
        r
    }

    fn guest_rip(&self, vcpu: &VcpuFd) -> String {
        match (vcpu.get_regs(), vcpu.get_sregs()) {
            (Ok(r), Ok(s)) => {
                let v = kite_x86::X86Registers::from_kvm(&r, &s);
                format!("rip {:#x} ({} mode, cs {:#x})", v.rip, v.mode(), v.cs)
            }
            _ => "an unknown rip".into(),
        }
    }

    fn run_loop(&self, vcpu: &mut VcpuFd) -> Result<(), String> {
        loop {
            if self.ctl.exit_requested().is_some() {
                return Ok(());
            }
            match vcpu.run() {
                Ok(VcpuExit::IoIn(port, data)) => {
                    let n = elem_size(data.len());
                    for chunk in data.chunks_mut(n) {
                        let v = self.pio.read(port, n as u32);
                        chunk.copy_from_slice(&v.to_le_bytes()[..n]);
                    }
                }
                Ok(VcpuExit::IoOut(port, data)) => {
                    let n = elem_size(data.len());
                    for chunk in data.chunks(n) {
                        let mut b = [0u8; 4];
                        b[..n].copy_from_slice(chunk);
                        self.pio.write(port, n as u32, u32::from_le_bytes(b));
                    }
                }
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    let v = self.mmio(addr, data.len(), None);
                    let n = data.len().min(8);
                    data[..n].copy_from_slice(&v.to_le_bytes()[..n]);
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    let mut b = [0u8; 8];
                    let n = data.len().min(8);
                    b[..n].copy_from_slice(&data[..n]);
                    self.mmio(addr, data.len(), Some(u64::from_le_bytes(b)));
                }
                Ok(VcpuExit::Hlt) => {
                    // Only without an in-kernel LAPIC; sleep until something happens.
                    self.ctl.wait(Duration::from_millis(10), || true);
                }
                Ok(VcpuExit::Shutdown) => {
                    log::info!(target: "accel", "vcpu{}: triple fault at {}: resetting", self.id, self.guest_rip(vcpu));
                    self.ctl.request_exit(ExitCode::Reset);
                    return Ok(());
                }
                Ok(VcpuExit::SystemEvent(kind, _)) => {
                    let code = match kind {
                        kvm_bindings::KVM_SYSTEM_EVENT_RESET => ExitCode::Reset,
                        _ => ExitCode::Exit(0),
                    };
                    self.ctl.request_exit(code);
                    return Ok(());
                }
                Ok(VcpuExit::Intr) => {}
                Ok(VcpuExit::InternalError) => {
                    // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the live union field.
                    let sub = unsafe { vcpu.get_kvm_run().__bindgen_anon_1.internal.suberror };
                    let what = match sub {
                        1 => "emulation failure",
                        2 => "simultaneous exceptions",
                        3 => "delivery event failure",
                        _ => "internal error",
                    };
                    return Err(format!("KVM {what} (suberror {sub}) on vcpu{} at {}", self.id, self.guest_rip(vcpu)));
                }
                Ok(VcpuExit::FailEntry(reason, cpu)) => {
                    return Err(format!(
                        "KVM entry failure on vcpu{} (hardware reason {reason:#x}, host cpu {cpu}) at {}",
                        self.id,
                        self.guest_rip(vcpu)
                    ));
                }
                Ok(other) => {
                    let what = format!("{other:?}");
                    return Err(format!("unexpected KVM exit {what} on vcpu{} at {}", self.id, self.guest_rip(vcpu)));
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                    vcpu.set_kvm_immediate_exit(0);
                }
                Err(e) => return Err(format!("KVM_RUN failed on vcpu{}: {e} at {}", self.id, self.guest_rip(vcpu))),
            }
        }
    }

    /// An MMIO access that KVM could not satisfy from RAM: a device, or nothing.
    fn mmio(&self, addr: u64, len: usize, write: Option<u64>) -> u64 {
        let size = len as u32;
        match self.mem.lookup(addr) {
            Some(Hit::Mmio { dev, offset, region })
                if matches!(len, 1 | 2 | 4 | 8) && offset + len as u64 <= region.size =>
            {
                match write {
                    Some(v) => {
                        dev.write(offset, size, v);
                        0
                    }
                    None => dev.read(offset, size),
                }
            }
            _ => {
                match write {
                    Some(v) => {
                        guest_error!("vcpu{}: MMIO write {v:#x} to unassigned address {addr:#x} (size {len})", self.id)
                    }
                    None => guest_error!("vcpu{}: MMIO read from unassigned address {addr:#x} (size {len})", self.id),
                }
                0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_io_elements() {
        assert_eq!(elem_size(1), 1);
        assert_eq!(elem_size(2), 2);
        assert_eq!(elem_size(4), 4);
        assert_eq!(elem_size(3), 1);
        assert_eq!(elem_size(16), 1);
    }

    #[test]
    fn open_error_messages_are_one_line() {
        for e in [KvmError::NoDevice, KvmError::NoPermission, KvmError::MissingCap("KVM_CAP_IRQCHIP")] {
            assert!(!e.to_string().contains('\n'));
        }
    }

    /// A VM with memory and an irq line, where /dev/kvm works.
    #[test]
    fn vm_opens_with_irqchip_and_irqfd() {
        if let Err(e) = available() {
            eprintln!("skipped: {e}");
            return;
        }
        let vm = KvmVm::open().expect("open");
        assert!(vm.has_in_kernel_irqchip());
        let mut mem = PhysMap::new();
        mem.add_ram("ram", 0, 2 << 20).unwrap();
        vm.map_memory(&mem).unwrap();
        let line = vm.irq_line(4).unwrap();
        line.set_level(true);
        line.set_level(false);
    }
}
