//! RISC-V machines.

pub mod fdt;
pub mod spike;
pub mod virt;

pub use virt::{VirtConfig, VirtMachine};
