//! Loading guest images into physical memory.
//!
//! Two formats, told apart by the ELF magic:
//! - **ELF64** (little-endian, for the machine's `e_machine`): every
//!   `PT_LOAD` segment is copied to its *physical* address (`p_paddr`, as
//!   QEMU does for firmware and bare-metal kernels), and the bytes from
//!   `p_filesz` to `p_memsz` are zeroed. The entry point is returned.
//! - **raw** images are copied to a given base address (the DRAM base) and
//!   entered there.
//!
//! Every byte must land in RAM or ROM (a RAM region of the map); a segment
//! that touches a device, a hole, or runs off the end of a region is a clean
//! error naming the file and address. Malformed files (truncated headers,
//! program headers or segment data past the end of the file, `filesz >
//! memsz`, address overflow) are errors too: nothing here can panic on bad
//! input, because `object` bounds-checks every read and every address sum is
//! checked.

use kite_memory::{Hit, PhysMap};
use object::elf::{FileHeader64, ELFCLASS64, ELFDATA2LSB, PT_LOAD};
use object::read::elf::{FileHeader, ProgramHeader};
use object::LittleEndian;

use crate::HwError;

/// The ELF magic (`\x7fELF`).
pub const ELF_MAGIC: [u8; 4] = *b"\x7fELF";

/// Whether `data` starts like an ELF file.
pub fn is_elf(data: &[u8]) -> bool {
    data.starts_with(&ELF_MAGIC)
}

/// Where an image went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Where to jump to.
    pub entry: u64,
    /// Lowest physical address written.
    pub low: u64,
    /// One past the highest physical address written.
    pub high: u64,
}

fn elf_err(file: &str, msg: impl Into<String>) -> HwError {
    HwError::BadElf { file: file.to_string(), msg: msg.into() }
}

/// Check that `[addr, addr + len)` lies inside one RAM region of `mem`.
fn check_ram(mem: &PhysMap, file: &str, addr: u64, len: u64) -> Result<(), HwError> {
    if len == 0 {
        return Ok(());
    }
    let outside = || HwError::OutsideRam { file: file.to_string(), addr, size: len };
    addr.checked_add(len).ok_or_else(outside)?;
    match mem.lookup(addr) {
        Some(Hit::Ram { left, .. }) if left >= len => Ok(()),
        _ => Err(outside()),
    }
}

/// Zero `len` bytes of RAM at `addr` (already checked to be RAM), in chunks
/// so a large `.bss` needs no large buffer.
fn zero_ram(mem: &PhysMap, mut addr: u64, mut len: u64) -> bool {
    static ZEROS: [u8; 4096] = [0; 4096];
    use kite_core::PhysMemory;
    while len > 0 {
        let n = len.min(ZEROS.len() as u64);
        if !mem.write_ram(addr, &ZEROS[..n as usize]) {
            return false;
        }
        addr += n;
        len -= n;
    }
    true
}

/// Load an ELF64 little-endian image for `machine` (an `EM_*` value).
pub fn load_elf(mem: &PhysMap, file: &str, data: &[u8], machine: u16) -> Result<LoadedImage, HwError> {
    use kite_core::PhysMemory;
    if !is_elf(data) {
        return Err(elf_err(file, "not an ELF file"));
    }
    if data.len() > 4 && data[4] != ELFCLASS64 {
        return Err(elf_err(file, "only 64-bit ELF files are supported"));
    }
    if data.len() > 5 && data[5] != ELFDATA2LSB {
        return Err(elf_err(file, "only little-endian ELF files are supported"));
    }
    let hdr = FileHeader64::<LittleEndian>::parse(data).map_err(|e| elf_err(file, e.to_string()))?;
    let e = LittleEndian;
    if hdr.e_machine(e) != machine {
        return Err(elf_err(file, format!("wrong machine type {} (expected {machine})", hdr.e_machine(e))));
    }
    let phdrs = hdr.program_headers(e, data).map_err(|err| elf_err(file, err.to_string()))?;
    let mut low = u64::MAX;
    let mut high = 0u64;
    for ph in phdrs.iter().filter(|ph| ph.p_type(e) == PT_LOAD) {
        let paddr = ph.p_paddr(e);
        let filesz = ph.p_filesz(e);
        let memsz = ph.p_memsz(e);
        if filesz > memsz {
            return Err(elf_err(file, format!("segment at {paddr:#x} has p_filesz > p_memsz")));
        }
        if memsz == 0 {
            continue;
        }
        // A bss-only segment's p_offset is meaningless (it may point past EOF).
        let bytes = if filesz == 0 {
            &[][..]
        } else {
            ph.data(e, data)
                .map_err(|()| elf_err(file, format!("segment at {paddr:#x} extends past the end of the file")))?
        };
        check_ram(mem, file, paddr, memsz)?;
        if !mem.write_ram(paddr, bytes) || !zero_ram(mem, paddr + filesz, memsz - filesz) {
            return Err(HwError::OutsideRam { file: file.to_string(), addr: paddr, size: memsz });
        }
        low = low.min(paddr);
        high = high.max(paddr + memsz);
    }
    if low == u64::MAX {
        return Err(elf_err(file, "no loadable segments"));
    }
    Ok(LoadedImage { entry: hdr.e_entry(e), low, high })
}

/// Load a raw image at `base`.
pub fn load_raw(mem: &PhysMap, file: &str, data: &[u8], base: u64) -> Result<LoadedImage, HwError> {
    use kite_core::PhysMemory;
    let len = data.len() as u64;
    check_ram(mem, file, base, len.max(1))?;
    if !mem.write_ram(base, data) {
        return Err(HwError::OutsideRam { file: file.to_string(), addr: base, size: len });
    }
    Ok(LoadedImage { entry: base, low: base, high: base + len })
}

/// Load `data` as ELF (by magic) or else as a raw image at `raw_base`.
pub fn load_image(mem: &PhysMap, file: &str, data: &[u8], machine: u16, raw_base: u64) -> Result<LoadedImage, HwError> {
    if is_elf(data) {
        load_elf(mem, file, data, machine)
    } else {
        load_raw(mem, file, data, raw_base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_core::PhysMemory;
    use object::elf::EM_RISCV;

    const RAM: u64 = 0x8000_0000;

    fn mem() -> PhysMap {
        let mut m = PhysMap::new();
        m.add_ram("ram", RAM, 0x10_0000).unwrap();
        m.add_ram("rom", 0x1000, 0x1000).unwrap();
        m
    }

    /// A minimal ELF64 with one PT_LOAD per `(paddr, bytes, memsz)`.
    fn elf(segs: &[(u64, &[u8], u64)], entry: u64) -> Vec<u8> {
        let phoff = 64u64;
        let data_off = phoff + 56 * segs.len() as u64;
        let mut out = vec![0u8; 64];
        out[..4].copy_from_slice(&ELF_MAGIC);
        out[4] = 2; // ELFCLASS64
        out[5] = 1; // little-endian
        out[6] = 1; // EV_CURRENT
        out[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out[18..20].copy_from_slice(&EM_RISCV.to_le_bytes());
        out[20..24].copy_from_slice(&1u32.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&phoff.to_le_bytes());
        out[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        out[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
        out[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let mut off = data_off;
        for (paddr, bytes, memsz) in segs {
            let mut ph = [0u8; 56];
            ph[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            ph[8..16].copy_from_slice(&off.to_le_bytes());
            ph[16..24].copy_from_slice(&paddr.to_le_bytes()); // vaddr
            ph[24..32].copy_from_slice(&paddr.to_le_bytes());
            ph[32..40].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            ph[40..48].copy_from_slice(&memsz.to_le_bytes());
            out.extend_from_slice(&ph);
            off += bytes.len() as u64;
        }
        for (_, bytes, _) in segs {
            out.extend_from_slice(bytes);
        }
        out
    }

    #[test]
    fn loads_segments_and_zero_fills() {
        let m = mem();
        m.write_ram(RAM + 0x100, &[0xff; 16]);
        let img = elf(&[(RAM + 0x100, &[1, 2, 3, 4], 16), (0x1000, &[9], 1)], RAM + 0x100);
        let li = load_image(&m, "t.elf", &img, EM_RISCV, RAM).unwrap();
        assert_eq!(li, LoadedImage { entry: RAM + 0x100, low: 0x1000, high: RAM + 0x110 });
        let mut b = [0u8; 16];
        assert!(m.read_ram(RAM + 0x100, &mut b));
        assert_eq!(b, [1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(m.read(0x1000, 1), Some(9));
    }

    #[test]
    fn bss_only_segment_with_offset_past_eof() {
        let m = mem();
        m.write_ram(RAM, &[0xff; 64]);
        let mut img = elf(&[(RAM, &[], 64)], RAM);
        // p_offset of the first program header far beyond the file.
        img[64 + 8..64 + 16].copy_from_slice(&0x10_0000u64.to_le_bytes());
        load_elf(&m, "bss.elf", &img, EM_RISCV).unwrap();
        assert_eq!(m.read_u64(RAM + 56), Some(0));
    }

    #[test]
    fn raw_image_at_base() {
        let m = mem();
        let li = load_image(&m, "t.bin", &[0x13, 0, 0, 0], EM_RISCV, RAM).unwrap();
        assert_eq!(li.entry, RAM);
        assert_eq!(m.read(RAM, 4), Some(0x13));
        let big = vec![0u8; 0x10_0001];
        assert!(matches!(load_raw(&m, "big.bin", &big, RAM), Err(HwError::OutsideRam { .. })));
    }

    #[test]
    fn segment_outside_ram_names_file_and_address() {
        let m = mem();
        let img = elf(&[(0x1000_0000, &[1], 1)], 0);
        let err = load_elf(&m, "k.elf", &img, EM_RISCV).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("k.elf") && msg.contains("0x10000000"), "{msg}");
        // Running off the end of RAM through the zero-fill part.
        let img = elf(&[(RAM + 0xf_fff0, &[1], 0x20)], 0);
        assert!(matches!(load_elf(&m, "k.elf", &img, EM_RISCV), Err(HwError::OutsideRam { .. })));
        // Address overflow.
        let img = elf(&[(u64::MAX - 1, &[1], 0x20)], 0);
        assert!(matches!(load_elf(&m, "k.elf", &img, EM_RISCV), Err(HwError::OutsideRam { .. })));
    }

    #[test]
    fn truncated_and_garbage_input_is_an_error() {
        let m = mem();
        let img = elf(&[(RAM, &[1, 2, 3, 4, 5, 6, 7, 8], 8)], RAM);
        // Every truncation of a valid file fails cleanly (or, at full
        // length, loads).
        for n in 0..img.len() {
            let r = load_elf(&m, "cut.elf", &img[..n], EM_RISCV);
            assert!(r.is_err(), "truncated to {n} bytes loaded");
        }
        assert!(load_elf(&m, "ok.elf", &img, EM_RISCV).is_ok());
        // Flip every byte of the header and program header: never a panic.
        for i in 0..(64 + 56) {
            let mut bad = img.clone();
            bad[i] ^= 0xff;
            let _ = load_elf(&m, "flip.elf", &bad, EM_RISCV);
        }
        // Pseudo-random garbage behind a valid magic.
        let mut x = 0x1234_5678_9abc_def0u64;
        for _ in 0..200 {
            let mut g: Vec<u8> = (0..200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            g[..4].copy_from_slice(&ELF_MAGIC);
            g[4] = 2;
            g[5] = 1;
            g[6] = 1;
            let _ = load_elf(&m, "junk.elf", &g, EM_RISCV);
        }
    }

    #[test]
    fn rejects_wrong_class_machine_and_sizes() {
        let m = mem();
        let mut img = elf(&[(RAM, &[1], 1)], RAM);
        img[4] = 1;
        assert!(load_elf(&m, "a", &img, EM_RISCV).unwrap_err().to_string().contains("64-bit"));
        let img = elf(&[(RAM, &[1], 1)], RAM);
        assert!(load_elf(&m, "a", &img, 62).unwrap_err().to_string().contains("machine"));
        let img = elf(&[(RAM, &[1, 2], 1)], RAM);
        assert!(load_elf(&m, "a", &img, EM_RISCV).unwrap_err().to_string().contains("p_filesz"));
        let img = elf(&[], RAM);
        assert!(load_elf(&m, "a", &img, EM_RISCV).unwrap_err().to_string().contains("no loadable"));
    }
}
