//! Device-facing traits.

use std::fmt::Debug;

/// A memory-mapped device. Offsets are relative to the start of the device's
/// region; `size` is 1, 2, 4 or 8. Implementations use interior mutability
/// because vCPU threads and I/O threads share devices.
///
/// Misuse by the guest (bad offset, bad size, write to a read-only register)
/// is answered with zeros or a dropped write and a rate-limited
/// [`guest_error!`](crate::guest_error), never a panic.
pub trait MmioDevice: Send + Sync + Debug {
    fn read(&self, offset: u64, size: u32) -> u64;
    fn write(&self, offset: u64, size: u32, value: u64);
}

/// An interrupt line out of a device, wired by the machine to an interrupt
/// controller input (translator) or an irqfd (KVM).
pub trait IrqLine: Send + Sync + Debug {
    fn set_level(&self, level: bool);
    /// An edge: raise and lower.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// A line connected to nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _level: bool) {}
}
