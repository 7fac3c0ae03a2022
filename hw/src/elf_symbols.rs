//! Symbol lookup in ELF images, for machines that talk to the guest through
//! well-known variables (HTIF's `tohost`/`fromhost` on `spike`).
//!
//! Only the static symbol table is searched; a stripped or malformed file
//! simply has no symbols (`object` bounds-checks every read, so nothing here
//! can panic on bad input).

use object::read::elf::ElfFile64;
use object::{LittleEndian, Object, ObjectSymbol};

/// The addresses of `names` in the ELF image `data`, in the same order
/// (`None` for a name that is absent, or when `data` is not an ELF64
/// little-endian file).
pub fn find_symbols(data: &[u8], names: &[&str]) -> Vec<Option<u64>> {
    let mut out = vec![None; names.len()];
    let Ok(file) = ElfFile64::<LittleEndian>::parse(data) else {
        return out;
    };
    for sym in file.symbols() {
        let Ok(name) = sym.name() else { continue };
        if let Some(i) = names.iter().position(|n| *n == name) {
            if out[i].is_none() {
                out[i] = Some(sym.address());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_has_no_symbols() {
        assert_eq!(find_symbols(b"not an elf", &["tohost"]), vec![None]);
        assert_eq!(find_symbols(&[], &["a", "b"]), vec![None, None]);
        let mut trunc = b"\x7fELF\x02\x01\x01".to_vec();
        trunc.resize(40, 0);
        assert_eq!(find_symbols(&trunc, &["tohost"]), vec![None]);
    }
    // Lookup in real images is covered by the spike guest tests (tests/isa.rs),
    // which find tohost in every test program.
}
