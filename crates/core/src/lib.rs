//! Kite's core traits: the seams between machines, devices, guest CPUs and
//! accelerators.
//!
//! - [`device`]: what a device is ([`MmioDevice`]) and how interrupts leave it
//!   ([`IrqLine`]). Devices see offsets, never absolute addresses.
//! - [`guest`]: what a guest architecture provides to an accelerator that
//!   translates it ([`GuestCpu`]): translation of one block into IR, address
//!   translation, trap entry. Accelerators are generic over it.
//! - [`phys`]: the physical-memory view a CPU's page walker or a loader uses
//!   ([`PhysMemory`]); `kite-memory` implements it.
//! - [`accel`]: the accelerator seam ([`Accelerator`]: capabilities, interrupt
//!   lines) and x86 port I/O ([`PioDevice`], [`PioBus`]).
//! - [`vm`]: VM-wide control: shutdown with an exit code, and kicking vCPUs out
//!   of translated code.
//!
//! This crate depends only on `kite-ir` (for the IR a frontend emits and the
//! CPU-state header ABI). It never names a machine, device or accelerator.

pub mod accel;
pub mod debug;
pub mod device;
pub mod guest;
pub mod phys;
pub mod vm;

pub use accel::{AccelError, Accelerator, IoExit, PioBus, PioDevice};
pub use device::{IrqLine, MmioDevice, NoIrq};
pub use guest::{Fault, GuestCpu};
pub use phys::PhysMemory;
pub use vm::{ExitCode, VmControl};

/// Log target for guest misbehaviour (QEMU's `-d guest_errors`).
pub const GUEST_ERRORS: &str = "guest_errors";

/// Log a guest error at most a few times per call site, then count silently,
/// so a misbehaving guest cannot flood the host log.
#[macro_export]
macro_rules! guest_error {
    ($($arg:tt)*) => {{
        static COUNT: ::std::sync::atomic::AtomicU32 = ::std::sync::atomic::AtomicU32::new(0);
        let n = COUNT.fetch_add(1, ::std::sync::atomic::Ordering::Relaxed);
        if n < 8 {
            ::log::warn!(target: $crate::GUEST_ERRORS, $($arg)*);
        } else if n == 8 {
            ::log::warn!(target: $crate::GUEST_ERRORS, "(further messages of this kind suppressed)");
        }
    }};
}
