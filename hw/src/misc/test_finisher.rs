//! SiFive test finisher (QEMU's `sifive_test`): a one-register device that
//! lets a guest end the emulation.
//!
//! A 32-bit write at offset 0 is decoded as `status = value & 0xffff`,
//! `code = value >> 16`:
//! - `0x5555` (PASS): exit with status 0;
//! - `0x3333` (FAIL): exit with status `code`;
//! - `0x7777` (RESET): ask the machine for a reset.
//!
//! Anything else is a guest error and is ignored (QEMU aborts there; a guest
//! must never be able to crash Kite). Reads return 0. As in QEMU, 16-bit
//! writes are accepted too (the value is zero-extended).

use std::sync::Arc;

use kite_core::{guest_error, ExitCode, MmioDevice, VmControl};

/// Size of the device region on the `virt` machine.
pub const TEST_FINISHER_SIZE: u64 = 0x1000;

/// Status values in the low 16 bits of a write.
pub const FINISHER_FAIL: u64 = 0x3333;
pub const FINISHER_PASS: u64 = 0x5555;
pub const FINISHER_RESET: u64 = 0x7777;

/// The test finisher device.
#[derive(Debug)]
pub struct TestFinisher {
    vm: Arc<VmControl>,
}

impl TestFinisher {
    pub fn new(vm: Arc<VmControl>) -> TestFinisher {
        TestFinisher { vm }
    }
}

impl MmioDevice for TestFinisher {
    fn read(&self, _offset: u64, _size: u32) -> u64 {
        0
    }

    fn write(&self, offset: u64, size: u32, value: u64) {
        if offset != 0 || !(size == 2 || size == 4) {
            guest_error!("test finisher: {size}-byte write of {value:#x} at {offset:#x} ignored");
            return;
        }
        let value = if size == 2 { value & 0xffff } else { value & 0xffff_ffff };
        let code = (value >> 16) as i32;
        match value & 0xffff {
            FINISHER_PASS => self.vm.request_exit(ExitCode::Exit(0)),
            FINISHER_FAIL => self.vm.request_exit(ExitCode::Exit(code)),
            FINISHER_RESET => self.vm.request_exit(ExitCode::Reset),
            other => guest_error!("test finisher: unknown status {other:#x} (value {value:#x}) ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finisher() -> (TestFinisher, Arc<VmControl>) {
        let vm = Arc::new(VmControl::new());
        (TestFinisher::new(vm.clone()), vm)
    }

    #[test]
    fn pass_exits_zero() {
        let (f, vm) = finisher();
        f.write(0, 4, 0x1234_5555);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0)));
    }

    #[test]
    fn fail_carries_code() {
        let (f, vm) = finisher();
        f.write(0, 4, (3 << 16) | FINISHER_FAIL);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(3)));
        let (f, vm) = finisher();
        f.write(0, 4, 0xffff_3333);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0xffff)));
    }

    #[test]
    fn reset() {
        let (f, vm) = finisher();
        f.write(0, 4, FINISHER_RESET);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Reset));
    }

    #[test]
    fn garbage_is_ignored() {
        let (f, vm) = finisher();
        f.write(0, 4, 0x1234);
        f.write(4, 4, FINISHER_PASS);
        f.write(0, 1, FINISHER_PASS);
        f.write(0, 8, FINISHER_PASS);
        assert_eq!(vm.exit_requested(), None);
        assert_eq!(f.read(0, 4), 0);
        // Bits beyond the access size do not leak into the status or code.
        f.write(0, 2, 0xdead_0003_5555);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0)));
    }
}
