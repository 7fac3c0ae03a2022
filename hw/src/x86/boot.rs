//! Boot protocols of the microVM, written into guest RAM.
//!
//! - bzImage: the Linux/x86 boot protocol (>= 2.06, 64-bit entry): the
//!   protected-mode kernel goes to 1 MiB, the setup header is copied into a
//!   `boot_params` zero page, which also gets the e820 map, the command line
//!   and the initrd; entry = 1 MiB + 0x200 with `rsi` = zero page.
//! - ELF with a `XEN_ELFNOTE_PHYS32_ENTRY` note: PVH. Segments go to their
//!   physical addresses; entry = the note's address, `ebx` = an
//!   `hvm_start_info` with the memory map, command line and initrd module.
//! - ELF without the note: entered like a bzImage, in 64-bit mode at
//!   `e_entry` with `rsi` = zero page (Firecracker's vmlinux boot).
//!
//! Fixed low addresses (below the 640 KiB hole): the zero page / start info
//! at [`ZERO_PAGE`], the command line at [`CMDLINE_ADDR`]; the CPU boot
//! tables sit at 0x500..0xf000 (owned by the target crate), the MP table at
//! [`MPTABLE_ADDR`]. Images must not overlap them; loads below 1 MiB are
//! refused for that reason.

use kite_core::PhysMemory;
use kite_memory::PhysMap;
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info};

use crate::HwError;

pub const ZERO_PAGE: u64 = 0x7000;
pub const START_INFO: u64 = 0x6000;
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 0x10000;
pub const MPTABLE_ADDR: u64 = 0x9fc00;
pub const HIGH_MEMORY: u64 = 0x10_0000;
const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const HVM_START_MAGIC: u32 = 0x336e_c578;

/// The e820 map of a microVM with `ram_size` bytes at 0: low memory up to
/// the MP table, the legacy hole, then the rest.
pub fn e820(ram_size: u64) -> Vec<(u64, u64, u32)> {
    let mut m = vec![(0, MPTABLE_ADDR, E820_RAM), (MPTABLE_ADDR, 0x400, E820_RESERVED)];
    if ram_size > HIGH_MEMORY {
        m.push((HIGH_MEMORY, ram_size - HIGH_MEMORY, E820_RAM));
    }
    m
}

/// Bytes of a plain-old-data struct (the `linux-loader` boot structures).
fn pod_bytes<T: Copy>(v: &T) -> &[u8] {
    // SAFETY: only used with repr(C) integer-only structs from linux-loader's
    // generated bindings: every byte is initialised and any value is valid.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, std::mem::size_of::<T>()) }
}

fn pod_bytes_mut<T: Copy>(v: &mut T) -> &mut [u8] {
    // SAFETY: as in `pod_bytes`; any byte pattern is a valid value.
    unsafe { std::slice::from_raw_parts_mut(v as *mut T as *mut u8, std::mem::size_of::<T>()) }
}

fn put(mem: &PhysMap, file: &str, addr: u64, bytes: &[u8]) -> Result<(), HwError> {
    if mem.write_ram(addr, bytes) {
        Ok(())
    } else {
        Err(HwError::OutsideRam { file: file.to_string(), addr, size: bytes.len() as u64 })
    }
}

/// The physical PVH entry from an ELF64's `XEN_ELFNOTE_PHYS32_ENTRY` note, if any.
pub fn pvh_entry(data: &[u8]) -> Option<u32> {
    use object::elf::{FileHeader64, PT_NOTE};
    use object::read::elf::{FileHeader, ProgramHeader};
    use object::LittleEndian as LE;
    let hdr = FileHeader64::<LE>::parse(data).ok()?;
    for ph in hdr.program_headers(LE, data).ok()?.iter().filter(|p| p.p_type(LE) == PT_NOTE) {
        let Ok(Some(mut notes)) = ph.notes(LE, data) else { continue };
        while let Ok(Some(note)) = notes.next() {
            if note.name() == b"Xen" && note.n_type(LE) == XEN_ELFNOTE_PHYS32_ENTRY {
                let d = note.desc();
                return (d.len() >= 4).then(|| u32::from_le_bytes([d[0], d[1], d[2], d[3]]));
            }
        }
    }
    None
}

/// Where the initrd went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Initrd {
    pub addr: u64,
    pub size: u64,
}

/// Put the initrd at the top of RAM below `max` (page aligned), above `kernel_end`.
pub fn load_initrd(
    mem: &PhysMap,
    file: &str,
    data: &[u8],
    ram_size: u64,
    kernel_end: u64,
    max: u64,
) -> Result<Initrd, HwError> {
    let size = data.len() as u64;
    let top = ram_size.min(max.saturating_add(1));
    let addr = top.checked_sub(size).map(|a| a & !0xfff).filter(|a| *a >= kernel_end);
    let Some(addr) = addr else {
        return Err(HwError::OutsideRam { file: file.to_string(), addr: kernel_end, size });
    };
    put(mem, file, addr, data)?;
    Ok(Initrd { addr, size })
}

/// Write the command line (NUL terminated) at [`CMDLINE_ADDR`].
pub fn write_cmdline(mem: &PhysMap, cmdline: &str) -> Result<(), HwError> {
    if cmdline.len() + 1 > CMDLINE_MAX {
        return Err(HwError::Machine(format!(
            "kernel command line too long ({} bytes, max {})",
            cmdline.len(),
            CMDLINE_MAX - 1
        )));
    }
    let mut b = cmdline.as_bytes().to_vec();
    b.push(0);
    put(mem, "command line", CMDLINE_ADDR, &b)
}

/// A bzImage's protected-mode kernel and its setup header, checked.
#[derive(Debug)]
pub struct BzImage<'a> {
    pub setup_header: &'a [u8],
    pub kernel: &'a [u8],
    pub initrd_addr_max: u64,
}

/// Parse a bzImage (boot protocol >= 2.06 with a 64-bit entry), or `None` if not one.
pub fn parse_bzimage<'a>(file: &str, data: &'a [u8]) -> Result<Option<BzImage<'a>>, HwError> {
    if data.len() < 0x250 || &data[0x202..0x206] != b"HdrS" {
        return Ok(None);
    }
    let bad = |msg: &str| HwError::BadElf { file: file.to_string(), msg: msg.to_string() };
    let version = u16::from_le_bytes([data[0x206], data[0x207]]);
    if version < 0x206 {
        return Err(bad("bzImage boot protocol older than 2.06"));
    }
    let xloadflags = u16::from_le_bytes([data[0x236], data[0x237]]);
    if xloadflags & 1 == 0 {
        return Err(bad("bzImage has no 64-bit entry point (XLF_KERNEL_64)"));
    }
    let setup_sects = match data[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let setup_size = (setup_sects + 1) * 512;
    let hdr_end = (0x202 + data[0x201] as usize).min(setup_size);
    if data.len() <= setup_size || hdr_end <= 0x1f1 {
        return Err(bad("truncated bzImage"));
    }
    let initrd_addr_max = u64::from(u32::from_le_bytes(data[0x22c..0x230].try_into().unwrap_or([0xff; 4])));
    Ok(Some(BzImage { setup_header: &data[0x1f1..hdr_end], kernel: &data[setup_size..], initrd_addr_max }))
}

/// Fill and write the `boot_params` zero page.
pub fn write_zero_page(
    mem: &PhysMap,
    ram_size: u64,
    setup_header: Option<&[u8]>,
    cmdline_len: usize,
    initrd: Option<Initrd>,
) -> Result<(), HwError> {
    let mut bp = boot_params::default();
    if let Some(h) = setup_header {
        let n = h.len().min(std::mem::size_of::<boot_params>() - 0x1f1);
        pod_bytes_mut(&mut bp)[0x1f1..0x1f1 + n].copy_from_slice(&h[..n]);
    } else {
        bp.hdr.boot_flag = 0xaa55;
        bp.hdr.header = 0x5372_6448; // "HdrS"
        bp.hdr.version = 0x020f;
    }
    bp.hdr.type_of_loader = 0xff;
    bp.hdr.loadflags |= 0x80; // CAN_USE_HEAP
    bp.hdr.heap_end_ptr = 0xfe00;
    bp.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    bp.hdr.cmdline_size = cmdline_len as u32;
    if let Some(i) = initrd {
        bp.hdr.ramdisk_image = i.addr as u32;
        bp.hdr.ramdisk_size = i.size as u32;
    }
    let map = e820(ram_size);
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        bp.e820_table[i] = boot_e820_entry { addr: *addr, size: *size, r#type: *type_ };
    }
    bp.e820_entries = map.len() as u8;
    put(mem, "boot_params", ZERO_PAGE, pod_bytes(&bp))
}

/// Fill and write the PVH `hvm_start_info`, its memory map and module list.
pub fn write_start_info(mem: &PhysMap, ram_size: u64, initrd: Option<Initrd>) -> Result<(), HwError> {
    let map = e820(ram_size);
    let info_size = std::mem::size_of::<hvm_start_info>() as u64;
    let memmap_addr = START_INFO + info_size.next_multiple_of(16);
    let modlist_addr = memmap_addr + (map.len() * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
    let mut info = hvm_start_info {
        magic: HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: CMDLINE_ADDR,
        memmap_paddr: memmap_addr,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        let e = hvm_memmap_table_entry { addr: *addr, size: *size, type_: *type_, reserved: 0 };
        put(
            mem,
            "start_info",
            memmap_addr + (i * std::mem::size_of::<hvm_memmap_table_entry>()) as u64,
            pod_bytes(&e),
        )?;
    }
    if let Some(i) = initrd {
        let m = hvm_modlist_entry { paddr: i.addr, size: i.size, ..Default::default() };
        put(mem, "start_info", modlist_addr, pod_bytes(&m))?;
        info.nr_modules = 1;
        info.modlist_paddr = modlist_addr;
    }
    put(mem, "start_info", START_INFO, pod_bytes(&info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_skips_the_legacy_hole() {
        let m = e820(64 << 20);
        assert_eq!(m[0], (0, 0x9fc00, 1));
        assert_eq!(m[2], (0x10_0000, (64 << 20) - 0x10_0000, 1));
    }

    #[test]
    fn zero_page_and_start_info_land_in_ram() {
        let mut mem = PhysMap::new();
        mem.add_ram("ram", 0, 4 << 20).unwrap();
        write_zero_page(&mem, 4 << 20, None, 10, Some(Initrd { addr: 0x30_0000, size: 0x1000 })).unwrap();
        let mut b = [0u8; 4];
        mem.read_ram(ZERO_PAGE + 0x218, &mut b); // ramdisk_image
        assert_eq!(u32::from_le_bytes(b), 0x30_0000);
        assert_eq!(mem.read(ZERO_PAGE + 0x1e8, 1), Some(3)); // e820_entries
        write_start_info(&mem, 4 << 20, None).unwrap();
        mem.read_ram(START_INFO, &mut b);
        assert_eq!(u32::from_le_bytes(b), HVM_START_MAGIC);
    }

    #[test]
    fn bzimage_parsing_rejects_junk() {
        assert!(parse_bzimage("x", &[0u8; 100]).unwrap().is_none());
        let mut k = vec![0u8; 0x2000];
        k[0x202..0x206].copy_from_slice(b"HdrS");
        k[0x206] = 0x05;
        k[0x207] = 0x02;
        assert!(parse_bzimage("x", &k).is_err());
        k[0x206] = 0x0f;
        assert!(parse_bzimage("x", &k).is_err()); // no 64-bit entry
        k[0x236] = 1;
        k[0x201] = 0x6a;
        let b = parse_bzimage("x", &k).unwrap().unwrap();
        assert_eq!(b.kernel.len(), 0x2000 - 5 * 512);
    }

    #[test]
    fn initrd_goes_high_and_must_fit() {
        let mut mem = PhysMap::new();
        mem.add_ram("ram", 0, 4 << 20).unwrap();
        let i = load_initrd(&mem, "i", &[1; 100], 4 << 20, 0x20_0000, u64::MAX).unwrap();
        assert_eq!(i.addr, (4 << 20) - 0x1000);
        assert!(load_initrd(&mem, "i", &vec![1; 3 << 20], 4 << 20, 0x20_0000, u64::MAX).is_err());
    }
}
