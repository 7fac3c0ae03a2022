//! Kite devices and machines.
//!
//! - [`char`]: serial ports (NS16550A).
//! - [`misc`]: the SiFive test finisher.
//! - [`riscv`]: RISC-V machines (`virt`), each built from one memory-map
//!   table.
//! - [`loader`]: ELF and raw image loading into guest RAM/ROM.
//!
//! Devices see offsets into their own region, never absolute addresses, and
//! answer guest misuse with `guest_error!` plus zeros or a dropped write.
//! This crate knows `kite-core` and `kite-memory`, never an accelerator or a
//! CPU model.

pub mod char;
pub mod elf_symbols;
pub mod intc;
pub mod loader;
pub mod misc;
pub mod riscv;
pub mod rtc;
pub mod timer;
pub mod x86;

use kite_memory::MemoryError;

/// Errors building machines and loading images.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error("invalid RAM size {size:#x} (must be a non-zero multiple of 4 KiB, at most 1 TiB)")]
    BadRamSize { size: u64 },
    #[error("cannot load '{file}': {msg}")]
    BadElf { file: String, msg: String },
    #[error("cannot load '{file}': {size:#x} bytes at address {addr:#x} do not fit in RAM or ROM")]
    OutsideRam { file: String, addr: u64, size: u64 },
    #[error("{0}")]
    Machine(String),
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("invalid number of harts {count} (1..={max})")]
    BadHartCount { count: u32, max: u32 },
    #[error(transparent)]
    Intc(#[from] intc::IntcError),
    #[error(transparent)]
    Timer(#[from] timer::TimerError),
    #[error(transparent)]
    Fdt(#[from] riscv::fdt::FdtError),
}
