//! The accelerator seam and port I/O.
//!
//! - [`Accelerator`]: what a machine may ask of whatever runs its vCPUs
//!   (KVM, the translator) without naming it: capabilities such as an
//!   in-kernel interrupt controller, and interrupt lines into it.
//! - [`PioDevice`] and [`PioBus`]: x86 port I/O. Devices see an offset into
//!   their own port range, like [`MmioDevice`](crate::MmioDevice) regions.
//! - [`IoExit`]: the neutral answer of a vCPU run, so front ends report
//!   guest resets and failures without knowing the accelerator.
//!
//! Invariants: the bus is built once (before vCPUs start) and then only
//! read, so dispatch takes no lock; a port nobody owns reads as all ones and
//! ignores writes, with a rate-limited `guest_error!` (as on a PC, where
//! nothing drives the bus).

use std::collections::BTreeMap;
use std::fmt::{self, Debug};
use std::sync::Arc;

use crate::{guest_error, IrqLine};

/// A port-I/O device. `offset` is relative to the first port of its range;
/// `size` is 1, 2 or 4. Misuse is answered with all ones / a dropped write.
pub trait PioDevice: Send + Sync + Debug {
    fn read(&self, offset: u16, size: u32) -> u32;
    fn write(&self, offset: u16, size: u32, value: u32);
}

/// Why building a [`PioBus`] or asking an accelerator failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccelError(pub String);

impl fmt::Display for AccelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AccelError {}

#[derive(Debug)]
struct PioRange {
    len: u16,
    name: &'static str,
    dev: Arc<dyn PioDevice>,
}

/// Port ranges -> devices. Lookups are a `BTreeMap` range query (port I/O is
/// a slow path: every access is a VM exit anyway).
#[derive(Debug, Default)]
pub struct PioBus {
    ranges: BTreeMap<u16, PioRange>,
}

impl PioBus {
    pub fn new() -> PioBus {
        PioBus::default()
    }

    /// Map `dev` at ports `base..base+len`. Overlaps are refused.
    pub fn insert(
        &mut self,
        name: &'static str,
        base: u16,
        len: u16,
        dev: Arc<dyn PioDevice>,
    ) -> Result<(), AccelError> {
        let end = u32::from(base) + u32::from(len);
        if len == 0 || end > 0x1_0000 {
            return Err(AccelError(format!("port range {name} at {base:#x}+{len:#x} is empty or wraps")));
        }
        let clash = self
            .ranges
            .iter()
            .find(|(b, r)| u32::from(**b) < end && u32::from(base) < u32::from(**b) + u32::from(r.len));
        if let Some((b, r)) = clash {
            return Err(AccelError(format!("port range {name} at {base:#x}+{len:#x} overlaps {} at {b:#x}", r.name)));
        }
        self.ranges.insert(base, PioRange { len, name, dev });
        Ok(())
    }

    fn find(&self, port: u16) -> Option<(&PioRange, u16)> {
        let (base, r) = self.ranges.range(..=port).next_back()?;
        let off = port - base;
        (off < r.len).then_some((r, off))
    }

    /// An `in` of `size` bytes from `port`.
    pub fn read(&self, port: u16, size: u32) -> u32 {
        match self.find(port) {
            Some((r, off)) => r.dev.read(off, size),
            None => {
                guest_error!("in from unassigned port {port:#x} (size {size})");
                u32::MAX
            }
        }
    }

    /// An `out` of `size` bytes to `port`.
    pub fn write(&self, port: u16, size: u32, value: u32) {
        match self.find(port) {
            Some((r, off)) => r.dev.write(off, size, value),
            None => guest_error!("out {value:#x} to unassigned port {port:#x} (size {size})"),
        }
    }
}

/// How a vCPU run ended, in words every accelerator shares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IoExit {
    /// The VM control asked everything to stop (power off, exit device, host signal).
    Stopped,
    /// The guest reset the machine: triple fault or a reset device.
    Reset,
    /// The accelerator cannot go on: one line naming what and where (guest PC).
    Failed(String),
}

/// What a machine may ask of its accelerator. Machines never name an
/// accelerator: they ask for capabilities and wire interrupts through here.
pub trait Accelerator: Send + Sync + Debug {
    /// Short name for logs (`kvm`, `tcg`).
    fn name(&self) -> &'static str;
    /// The interrupt controllers (PIC/IOAPIC/LAPIC) and PIT are emulated by
    /// the accelerator, so the machine must not model them.
    fn has_in_kernel_irqchip(&self) -> bool;
    /// The most vCPUs this accelerator can run for one VM.
    fn max_vcpus(&self) -> u32;
    /// An interrupt line into global system interrupt `gsi` of the
    /// accelerator's interrupt controller.
    fn irq_line(&self, gsi: u32) -> Result<Arc<dyn IrqLine>, AccelError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Rec(Mutex<Vec<(u16, u32, u32)>>);
    impl PioDevice for Rec {
        fn read(&self, offset: u16, size: u32) -> u32 {
            u32::from(offset) * 0x10 + size
        }
        fn write(&self, offset: u16, size: u32, value: u32) {
            self.0.lock().unwrap().push((offset, size, value));
        }
    }

    #[test]
    fn dispatches_by_offset_and_ignores_unassigned_ports() {
        let mut bus = PioBus::new();
        let a = Arc::new(Rec::default());
        bus.insert("a", 0x3f8, 8, a.clone()).unwrap();
        assert_eq!(bus.read(0x3fa, 1), 0x21);
        bus.write(0x3ff, 1, 7);
        assert_eq!(a.0.lock().unwrap().as_slice(), &[(7, 1, 7)]);
        assert_eq!(bus.read(0x400, 1), u32::MAX);
        assert_eq!(bus.read(0x3f7, 2), u32::MAX);
        bus.write(0x3f7, 1, 1);
        assert_eq!(a.0.lock().unwrap().len(), 1);
    }

    #[test]
    fn refuses_overlaps_and_empty_ranges() {
        let mut bus = PioBus::new();
        let d: Arc<dyn PioDevice> = Arc::new(Rec::default());
        bus.insert("a", 0x60, 1, d.clone()).unwrap();
        bus.insert("b", 0x64, 1, d.clone()).unwrap();
        assert!(bus.insert("c", 0x5f, 2, d.clone()).unwrap_err().0.contains("overlaps a"));
        assert!(bus.insert("d", 0x10, 0, d.clone()).is_err());
        assert!(bus.insert("e", 0xffff, 2, d.clone()).is_err());
        bus.insert("f", 0xffff, 1, d).unwrap();
    }
}
