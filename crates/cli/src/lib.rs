//! The `kite` front end, as a library so its pieces are unit-tested apart
//! from the binary: QEMU-style option parsing ([`args`]), the host console
//! ([`console`]: raw terminal, stdin forwarding, Ctrl-A escapes, signals),
//! logging set-up ([`logging`]) and the embedded demo firmware.
//!
//! `main.rs` strings them together with a machine from `kite-hw` and the
//! translator from `kite-jit`.

pub mod args;
pub mod console;
pub mod logging;

/// The demo firmware run when no `-kernel` is given (built from
/// `roms/demo/` by its Makefile; the binary is committed).
pub static DEMO_ELF: &[u8] = include_bytes!("../../../roms/demo/demo.elf");

/// An I/O error as a short message, without Rust's " (os error N)" tail:
/// `No such file or directory`.
pub fn io_msg(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_messages_are_short() {
        let e = std::io::Error::from_raw_os_error(libc::ENOENT);
        assert_eq!(io_msg(&e), "No such file or directory");
    }

    #[test]
    fn demo_is_a_riscv_elf() {
        assert!(kite_hw::loader::is_elf(DEMO_ELF));
        assert_eq!(u16::from_le_bytes([DEMO_ELF[18], DEMO_ELF[19]]), kite_hw::riscv::virt::EM_RISCV);
    }
}
