//! x86 PC-style devices and the `microvm` machine.
//!
//! - [`i8042`]: just enough of the keyboard controller for the reset line.
//! - [`debug_exit`]: QEMU's `isa-debug-exit` (exit status `(value << 1) | 1`).
//! - [`mptable`]: the Intel MP table that tells a kernel about `-smp N`.
//! - [`boot`]: Linux boot protocol (bzImage, `boot_params`, e820) and PVH
//!   (`hvm_start_info`) set-up in guest RAM.
//! - [`virtio_mmio`]: empty virtio-mmio transports (device ID 0).
//! - [`microvm`]: the machine: RAM, devices on port I/O, boot images.
//!
//! Interrupt controllers are the accelerator's (in-kernel irqchip): this
//! module asks for interrupt lines by GSI and never models a PIC or IOAPIC.

pub mod boot;
pub mod debug_exit;
pub mod i8042;
pub mod microvm;
pub mod mptable;
pub mod virtio_mmio;

pub use microvm::{MicroVm, MicroVmConfig, X86Entry};
