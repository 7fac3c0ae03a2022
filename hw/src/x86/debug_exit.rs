//! QEMU's `isa-debug-exit`: a write of `value` to its port range ends the
//! emulator with status `(value << 1) | 1`, so a test guest can report any
//! odd status (QEMU's convention; even statuses come from elsewhere).
//! Reads return 0. `iobase`/`iosize` come from `-device
//! isa-debug-exit,iobase=0xf4,iosize=0x04` (QEMU's defaults: 0x501, 2).

use std::sync::Arc;

use kite_core::{ExitCode, PioDevice, VmControl};

/// QEMU's defaults when `-device isa-debug-exit` gives no options.
pub const DEFAULT_IOBASE: u16 = 0x501;
pub const DEFAULT_IOSIZE: u16 = 2;

/// The device.
#[derive(Debug)]
pub struct DebugExit {
    vm: Arc<VmControl>,
}

impl DebugExit {
    pub fn new(vm: Arc<VmControl>) -> DebugExit {
        DebugExit { vm }
    }
}

impl PioDevice for DebugExit {
    fn read(&self, _offset: u16, _size: u32) -> u32 {
        0
    }

    fn write(&self, _offset: u16, size: u32, value: u32) {
        let mask = if size >= 4 { u32::MAX } else { (1u32 << (size * 8)) - 1 };
        let code = ((value & mask) as i32).wrapping_shl(1) | 1;
        log::debug!("isa-debug-exit: guest wrote {value:#x}: exit status {code}");
        self.vm.request_exit(ExitCode::Exit(code));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_status_is_value_shifted_with_bit0() {
        let vm = Arc::new(VmControl::new());
        DebugExit::new(vm.clone()).write(0, 1, 0x2a);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0x55)));
        let vm = Arc::new(VmControl::new());
        DebugExit::new(vm.clone()).write(0, 1, 0x1ff);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0x1ff)));
    }
}
