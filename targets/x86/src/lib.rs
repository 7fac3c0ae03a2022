//! x86_64 target: the architectural state a vCPU starts in, for the boot
//! protocols Kite's microVM supports, and a register view.
//!
//! - [`BootEntry::Pvh`]: Xen PVH 32-bit entry: protected mode, paging off,
//!   flat 4 GiB segments, `ebx` = physical address of `hvm_start_info`.
//! - [`BootEntry::Linux64`]: the 64-bit Linux boot protocol entry: long mode
//!   with identity-mapped page tables (first 4 GiB, 2 MiB pages), flat
//!   segments from a GDT in guest RAM, `rsi` = physical address of
//!   `boot_params`.
//! - [`fixup_cpuid`]: KVM's supported CPUID made per-vCPU (APIC ids, leaf
//!   0xb topology, the hypervisor bit).
//!
//! Pitfalls: the GDT and page tables live in guest RAM at fixed low
//! addresses ([`GDT_ADDR`], [`PML4_ADDR`] ..), so machines must keep
//! [`BOOT_TABLES_START`]..[`BOOT_TABLES_END`] out of anything they load.
//! The hidden parts of segment registers (base/limit/flags) must agree with
//! the GDT entries, or the first segment load in the guest changes them.
//!
//! This crate only builds state (plain `kvm-bindings` structs); it never
//! opens /dev/kvm.

use kvm_bindings::{kvm_fpu, kvm_lapic_state, kvm_msr_entry, kvm_regs, kvm_segment, kvm_sregs, CpuId, Msrs};

/// The GDT (null, code64, data, code32, tss) sits here.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT (limit 0): any exception before the guest sets its own is a triple fault.
pub const IDT_ADDR: u64 = 0x520;
/// Page tables for the 64-bit entry: PML4, one PDPT, four page directories.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
/// Guest RAM that [`write_boot_tables`] owns.
pub const BOOT_TABLES_START: u64 = 0x500;
pub const BOOT_TABLES_END: u64 = 0xf000;

const SEL_CODE64: u16 = 0x08;
const SEL_DATA: u16 = 0x10;
const SEL_CODE32: u16 = 0x18;
const SEL_TSS: u16 = 0x20;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;

/// Where and how the boot vCPU starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootEntry {
    /// PVH: 32-bit protected mode at `entry`, `ebx` = `start_info`.
    Pvh { entry: u32, start_info: u32 },
    /// 64-bit Linux boot protocol at `entry`, `rsi` = `boot_params`.
    Linux64 { entry: u64, boot_params: u64 },
}

/// Errors building vCPU state.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum X86Error {
    #[error("cannot write the boot GDT/page tables at {0:#x} (guest RAM too small?)")]
    TablesOutsideRam(u64),
    #[error("too many boot MSRs for KVM_SET_MSRS")]
    TooManyMsrs,
}

/// A GDT entry from its flags (bits 52..55 + access byte), base and limit.
fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((u64::from(base) & 0xff00_0000) << 32)
        | ((u64::from(base) & 0x00ff_ffff) << 16)
        | (u64::from(limit) & 0x0000_ffff)
        | ((u64::from(limit) & 0x000f_0000) << 32)
        | ((u64::from(flags) & 0xf0ff) << 40)
}

/// The GDT Kite's boot state uses, index = selector >> 3.
fn gdt() -> [u64; 5] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff), // code64: G, L, P, DPL0, exec/read, accessed
        gdt_entry(0xc093, 0, 0xfffff), // data: G, D/B, P, read/write, accessed
        gdt_entry(0xc09b, 0, 0xfffff), // code32: G, D/B, P, exec/read, accessed
        gdt_entry(0x808b, 0, 0xfffff), // tss: busy 64-bit TSS (KVM wants a usable TR)
    ]
}

/// The hidden part of a segment register, as the CPU would load it from `entry`.
fn segment(sel: u16, entry: u64) -> kvm_segment {
    let limit = ((entry & 0xffff) | ((entry >> 32) & 0xf_0000)) as u32;
    let g = ((entry >> 55) & 1) as u8;
    kvm_segment {
        base: ((entry >> 16) & 0xff_ffff) | ((entry >> 32) & 0xff00_0000),
        limit: if g == 1 { (limit << 12) | 0xfff } else { limit },
        selector: sel,
        type_: ((entry >> 40) & 0xf) as u8,
        present: ((entry >> 47) & 1) as u8,
        dpl: ((entry >> 45) & 3) as u8,
        db: ((entry >> 54) & 1) as u8,
        s: ((entry >> 44) & 1) as u8,
        l: ((entry >> 53) & 1) as u8,
        g,
        avl: ((entry >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

/// Write the GDT, IDT and (for 64-bit entry) identity page tables covering
/// the first 4 GiB with 2 MiB pages. `write` stores bytes at a guest
/// physical address and says whether they fit in RAM.
pub fn write_boot_tables(entry: BootEntry, write: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<(), X86Error> {
    let mut put =
        |addr: u64, bytes: &[u8]| if write(addr, bytes) { Ok(()) } else { Err(X86Error::TablesOutsideRam(addr)) };
    let gdt: Vec<u8> = gdt().iter().flat_map(|e| e.to_le_bytes()).collect();
    put(GDT_ADDR, &gdt)?;
    put(IDT_ADDR, &[0u8; 8])?;
    if let BootEntry::Linux64 { .. } = entry {
        put(PML4_ADDR, &(PDPT_ADDR | 3).to_le_bytes())?;
        let pdpt: Vec<u8> = (0..4u64).flat_map(|i| ((PD_ADDR + i * 0x1000) | 3).to_le_bytes()).collect();
        put(PDPT_ADDR, &pdpt)?;
        // 2048 entries of 2 MiB: present, writable, page size.
        let pd: Vec<u8> = (0..2048u64).flat_map(|i| ((i << 21) | 0x83).to_le_bytes()).collect();
        put(PD_ADDR, &pd)?;
    }
    Ok(())
}

/// General registers at entry.
pub fn boot_regs(entry: BootEntry) -> kvm_regs {
    let mut r = kvm_regs { rflags: 0x2, ..Default::default() };
    match entry {
        BootEntry::Pvh { entry, start_info } => {
            r.rip = u64::from(entry);
            r.rbx = u64::from(start_info);
        }
        BootEntry::Linux64 { entry, boot_params } => {
            r.rip = entry;
            r.rsi = boot_params;
            // A stack below the boot tables' reserved area is the kernel's to replace;
            // give it something valid meanwhile.
            r.rsp = 0x8ff0;
            r.rbp = 0x8ff0;
        }
    }
    r
}

/// Segment, descriptor-table, control registers and EFER at entry. `s` comes
/// from the vCPU (KVM_GET_SREGS) so fields Kite does not set keep KVM's
/// reset values (APIC base, interrupt bitmap).
pub fn boot_sregs(entry: BootEntry, s: &mut kvm_sregs) {
    let gdt = gdt();
    let data = segment(SEL_DATA, gdt[(SEL_DATA >> 3) as usize]);
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = (gdt.len() * 8 - 1) as u16;
    s.idt.base = IDT_ADDR;
    s.idt.limit = 0;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = segment(SEL_TSS, gdt[(SEL_TSS >> 3) as usize]);
    match entry {
        BootEntry::Pvh { .. } => {
            s.cs = segment(SEL_CODE32, gdt[(SEL_CODE32 >> 3) as usize]);
            s.cr0 = CR0_PE | CR0_ET;
            s.cr3 = 0;
            s.cr4 = 0;
            s.efer = 0;
        }
        BootEntry::Linux64 { .. } => {
            s.cs = segment(SEL_CODE64, gdt[(SEL_CODE64 >> 3) as usize]);
            s.cr0 = CR0_PE | CR0_ET | CR0_PG;
            s.cr3 = PML4_ADDR;
            s.cr4 = CR4_PAE;
            s.efer = EFER_LME | EFER_LMA;
        }
    }
}

/// x87/SSE state after FNINIT + default MXCSR (what firmware leaves).
pub fn boot_fpu() -> kvm_fpu {
    kvm_fpu { fcw: 0x37f, mxcsr: 0x1f80, ..Default::default() }
}

/// MSRs a boot vCPU starts with: SYSENTER/SYSCALL state cleared, and
/// `IA32_MISC_ENABLE` with fast strings on (as firmware does).
pub fn boot_msrs() -> Vec<kvm_msr_entry> {
    const MSRS: &[(u32, u64)] = &[
        (0x174, 0),       // SYSENTER_CS
        (0x175, 0),       // SYSENTER_ESP
        (0x176, 0),       // SYSENTER_EIP
        (0xc000_0081, 0), // STAR
        (0xc000_0082, 0), // LSTAR
        (0xc000_0083, 0), // CSTAR
        (0xc000_0084, 0), // SYSCALL_MASK
        (0xc000_0102, 0), // KERNEL_GS_BASE
        (0x10, 0),        // TSC
        (0x1a0, 1),       // MISC_ENABLE: fast string operations
    ];
    MSRS.iter().map(|&(index, data)| kvm_msr_entry { index, data, ..Default::default() }).collect()
}

/// [`boot_msrs`] as the FAM wrapper KVM_SET_MSRS wants.
pub fn boot_msrs_fam() -> Result<Msrs, X86Error> {
    Msrs::from_entries(&boot_msrs()).map_err(|_| X86Error::TooManyMsrs)
}

/// Make KVM's supported CPUID this vCPU's: APIC ids in leaves 1 and 0xb,
/// the logical processor count, and the hypervisor bit.
pub fn fixup_cpuid(cpuid: &mut CpuId, cpu: u32, nr_cpus: u32) {
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                // ebx[31:24] initial APIC id, ebx[23:16] logical processors.
                e.ebx = (e.ebx & 0x0000_ffff) | (cpu << 24) | ((nr_cpus.min(255)) << 16);
                e.ecx |= 1 << 31; // hypervisor present
                if nr_cpus > 1 {
                    e.edx |= 1 << 28; // HTT: the count in ebx is valid
                }
            }
            0xb => {
                // One thread per core, all cores in one package.
                e.edx = cpu;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        e.eax = 32 - nr_cpus.max(1).saturating_sub(1).leading_zeros();
                        e.ebx = nr_cpus;
                        e.ecx = (2 << 8) | 1;
                    }
                    i => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = i;
                    }
                }
            }
            _ => {}
        }
    }
}

/// LAPIC set-up for the boot protocol: LINT0 = ExtINT (the 8259 PIC reaches
/// the CPU, as firmware leaves it), LINT1 = NMI.
pub fn set_lapic_lint(lapic: &mut kvm_lapic_state) {
    const LVT0: usize = 0x350;
    const LVT1: usize = 0x360;
    const MODE_EXTINT: u32 = 0x7 << 8;
    const MODE_NMI: u32 = 0x4 << 8;
    let rw = |regs: &mut [std::os::raw::c_char; 1024], off: usize, v: u32| {
        for (i, b) in v.to_le_bytes().iter().enumerate() {
            regs[off + i] = *b as std::os::raw::c_char;
        }
    };
    let get = |regs: &[std::os::raw::c_char; 1024], off: usize| {
        u32::from_le_bytes([regs[off] as u8, regs[off + 1] as u8, regs[off + 2] as u8, regs[off + 3] as u8])
    };
    let lvt0 = (get(&lapic.regs, LVT0) & !0x1_0700) | MODE_EXTINT;
    let lvt1 = (get(&lapic.regs, LVT1) & !0x1_0700) | MODE_NMI;
    rw(&mut lapic.regs, LVT0, lvt0);
    rw(&mut lapic.regs, LVT1, lvt1);
}

/// The registers a debugger or an error message wants, in one place.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct X86Registers {
    pub gpr: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// Names of [`X86Registers::gpr`] in order (gdb's x86_64 order).
pub const GPR_NAMES: [&str; 16] =
    ["rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"];

impl X86Registers {
    pub fn from_kvm(r: &kvm_regs, s: &kvm_sregs) -> X86Registers {
        X86Registers {
            gpr: [
                r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11, r.r12, r.r13, r.r14,
                r.r15,
            ],
            rip: r.rip,
            rflags: r.rflags,
            cs: s.cs.selector,
            ss: s.ss.selector,
            ds: s.ds.selector,
            es: s.es.selector,
            fs: s.fs.selector,
            gs: s.gs.selector,
            cr0: s.cr0,
            cr3: s.cr3,
            cr4: s.cr4,
            efer: s.efer,
        }
    }

    /// The mode the CPU is in, for messages.
    pub fn mode(&self) -> &'static str {
        if self.cr0 & CR0_PE == 0 {
            "real"
        } else if self.efer & EFER_LMA != 0 {
            "long"
        } else {
            "protected"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gdt_entries_decode_to_flat_segments() {
        let g = gdt();
        let cs64 = segment(SEL_CODE64, g[1]);
        assert_eq!((cs64.l, cs64.db, cs64.g, cs64.present, cs64.type_, cs64.s), (1, 0, 1, 1, 0xb, 1));
        assert_eq!((cs64.base, cs64.limit), (0, 0xffff_ffff));
        let cs32 = segment(SEL_CODE32, g[3]);
        assert_eq!((cs32.l, cs32.db), (0, 1));
        let ds = segment(SEL_DATA, g[2]);
        assert_eq!((ds.type_, ds.db, ds.limit), (3, 1, 0xffff_ffff));
        let tr = segment(SEL_TSS, g[4]);
        assert_eq!((tr.type_, tr.s), (0xb, 0));
    }

    #[test]
    fn long_mode_tables_identity_map_4g() {
        let mut mem = vec![0u8; 0x10000];
        write_boot_tables(BootEntry::Linux64 { entry: 0x10_0000, boot_params: 0x7000 }, &mut |a, b| {
            let a = a as usize;
            mem.get_mut(a..a + b.len()).map(|d| d.copy_from_slice(b)).is_some()
        })
        .unwrap();
        let rd = |a: u64| u64::from_le_bytes(mem[a as usize..a as usize + 8].try_into().unwrap());
        // Walk 0xc020_1234 by hand.
        let va: u64 = 0xc020_1234;
        let pdpt = rd(PML4_ADDR + ((va >> 39) & 511) * 8) & !0xfff;
        let pd = rd(pdpt + ((va >> 30) & 511) * 8) & !0xfff;
        let pde = rd(pd + ((va >> 21) & 511) * 8);
        assert_eq!(pde & 0x83, 0x83);
        assert_eq!((pde & !0x1f_ffff & !0xfff) | (va & 0x1f_ffff), va);
        let mut s = kvm_sregs::default();
        boot_sregs(BootEntry::Linux64 { entry: 0, boot_params: 0 }, &mut s);
        assert_eq!(s.cr3, PML4_ADDR);
        assert_ne!(s.efer & EFER_LMA, 0);
    }

    #[test]
    fn tables_outside_ram_are_an_error() {
        let e = write_boot_tables(BootEntry::Pvh { entry: 0, start_info: 0 }, &mut |_, _| false).unwrap_err();
        assert_eq!(e, X86Error::TablesOutsideRam(GDT_ADDR));
    }

    #[test]
    fn pvh_entry_is_flat_protected_mode() {
        let r = boot_regs(BootEntry::Pvh { entry: 0x10_0000, start_info: 0x6000 });
        assert_eq!((r.rip, r.rbx, r.rflags), (0x10_0000, 0x6000, 2));
        let mut s = kvm_sregs::default();
        boot_sregs(BootEntry::Pvh { entry: 0x10_0000, start_info: 0x6000 }, &mut s);
        assert_eq!(s.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((s.cs.db, s.cs.l, s.cs.selector), (1, 0, SEL_CODE32));
        let regs = X86Registers::from_kvm(&r, &s);
        assert_eq!(regs.mode(), "protected");
    }

    #[test]
    fn cpuid_gets_apic_ids_and_topology() {
        let mut c = CpuId::from_entries(&[
            kvm_bindings::kvm_cpuid_entry2 { function: 1, ebx: 0xff00_0800, ..Default::default() },
            kvm_bindings::kvm_cpuid_entry2 { function: 0xb, index: 1, ..Default::default() },
        ])
        .unwrap();
        fixup_cpuid(&mut c, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_eq!((e[1].eax, e[1].ebx, e[1].edx), (2, 4, 3));
    }

    #[test]
    fn lapic_lints_are_extint_and_nmi() {
        let mut l = kvm_lapic_state::default();
        l.regs[0x352] = 1; // masked
        set_lapic_lint(&mut l);
        assert_eq!(l.regs[0x351] as u8, 0x7);
        assert_eq!(l.regs[0x352], 0);
        assert_eq!(l.regs[0x361] as u8, 0x4);
    }
}
