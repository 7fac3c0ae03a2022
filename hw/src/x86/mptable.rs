//! Intel MultiProcessor Specification 1.4 tables: how a kernel without ACPI
//! learns the CPUs (`-smp N`), the IOAPIC and the ISA interrupt routing.
//!
//! Layout at `base`: the 16-byte floating pointer structure (`_MP_`), then
//! the configuration table (`PCMP`): one processor entry per vCPU (APIC id
//! = vCPU index, vCPU 0 the bootstrap processor), one ISA bus, one IOAPIC
//! (id `nr_cpus`, at 0xfec00000), ISA IRQs 0..15 routed 1:1 to IOAPIC pins,
//! and LINT0 = ExtINT, LINT1 = NMI. Both structures carry checksums that
//! make their bytes sum to zero; a wrong checksum makes Linux ignore them.

/// Local APIC and IOAPIC addresses (the PC defaults KVM uses).
pub const LAPIC_ADDR: u32 = 0xfee0_0000;
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// APIC ids are 8 bits and the IOAPIC takes one after the CPUs.
pub const MAX_CPUS: u32 = 254;

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)))
}

/// The MP floating pointer and configuration table for `nr_cpus` CPUs, to be
/// written at guest physical `base`. `None` if `nr_cpus` is 0 or too many.
pub fn build(base: u32, nr_cpus: u32) -> Option<Vec<u8>> {
    if nr_cpus == 0 || nr_cpus > MAX_CPUS {
        return None;
    }
    let ioapic_id = nr_cpus as u8;
    let mut entries = Vec::new();
    for cpu in 0..nr_cpus {
        let flags = if cpu == 0 { 3 } else { 1 }; // enabled, bootstrap processor
        entries.push(0u8); // processor
        entries.extend_from_slice(&[cpu as u8, 0x14, flags]);
        entries.extend_from_slice(&0x600u32.to_le_bytes()); // signature: family 6
        entries.extend_from_slice(&0x201u32.to_le_bytes()); // features: FPU, APIC
        entries.extend_from_slice(&[0; 8]);
    }
    entries.extend_from_slice(&[1, 0]); // bus 0
    entries.extend_from_slice(b"ISA   ");
    entries.extend_from_slice(&[2, ioapic_id, 0x11, 1]); // IOAPIC, version 0x11, enabled
    entries.extend_from_slice(&IOAPIC_ADDR.to_le_bytes());
    for irq in 0..16u8 {
        // I/O interrupt: INT, conforming polarity/trigger, bus 0 irq -> IOAPIC pin.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
    }
    // Local interrupts to all LAPICs: ExtINT on LINT0, NMI on LINT1.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    let entry_count = 2 + 16 + 2 + nr_cpus as u16;

    let mut table = Vec::with_capacity(44 + entries.len());
    table.extend_from_slice(b"PCMP");
    table.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    table.extend_from_slice(&[4, 0]); // spec 1.4, checksum (below)
    table.extend_from_slice(b"KITE    "); // OEM id
    table.extend_from_slice(b"MICROVM     "); // product id
    table.extend_from_slice(&0u32.to_le_bytes()); // OEM table pointer
    table.extend_from_slice(&0u16.to_le_bytes()); // OEM table size
    table.extend_from_slice(&entry_count.to_le_bytes());
    table.extend_from_slice(&LAPIC_ADDR.to_le_bytes());
    table.extend_from_slice(&[0; 4]); // extended table length, checksum, reserved
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut mpf = Vec::with_capacity(16 + table.len());
    mpf.extend_from_slice(b"_MP_");
    mpf.extend_from_slice(&(base + 16).to_le_bytes());
    mpf.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // length 1 (x16), spec 1.4
    mpf[10] = checksum(&mpf);
    mpf.extend_from_slice(&table);
    Some(mpf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_checksum_to_zero_and_count_cpus() {
        let t = build(0x9fc00, 2).unwrap();
        let sum = |b: &[u8]| b.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        assert_eq!(&t[..4], b"_MP_");
        assert_eq!(sum(&t[..16]), 0);
        assert_eq!(u32::from_le_bytes(t[4..8].try_into().unwrap()), 0x9fc10);
        let cfg = &t[16..];
        let len = u16::from_le_bytes([cfg[4], cfg[5]]) as usize;
        assert_eq!(len, cfg.len());
        assert_eq!(sum(cfg), 0);
        assert_eq!(u16::from_le_bytes([cfg[34], cfg[35]]), 22);
        // The second processor is enabled, not the BSP, with APIC id 1.
        assert_eq!(&cfg[44 + 20..44 + 24], &[0, 1, 0x14, 1]);
        assert!(build(0, 0).is_none());
        assert!(build(0, 255).is_none());
    }
}
