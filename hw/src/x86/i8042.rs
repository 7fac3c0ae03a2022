//! i8042 keyboard controller, reduced to what a microVM needs: the CPU
//! reset line (command 0xfe on port 0x64), as QEMU's microvm and Firecracker
//! have it. There is no keyboard: the status register says "no data", data
//! reads return 0, and other commands are accepted and ignored.
//!
//! Mapped at ports 0x60..0x65 (offset 0 = data, offset 4 = status/command);
//! offsets 1..3 are other devices on a PC (0x61 is the PIT speaker port,
//! which the in-kernel PIT claims first) and read as all ones here.

use std::sync::Arc;

use kite_core::{guest_error, ExitCode, PioDevice, VmControl};

/// First port and length of the range this device answers.
pub const I8042_BASE: u16 = 0x60;
pub const I8042_LEN: u16 = 5;
const CMD_RESET: u32 = 0xfe;

/// The controller.
#[derive(Debug)]
pub struct I8042 {
    vm: Arc<VmControl>,
}

impl I8042 {
    pub fn new(vm: Arc<VmControl>) -> I8042 {
        I8042 { vm }
    }
}

impl PioDevice for I8042 {
    fn read(&self, offset: u16, _size: u32) -> u32 {
        match offset {
            0 => 0,
            4 => 0, // status: output buffer empty, input buffer empty
            _ => u32::MAX,
        }
    }

    fn write(&self, offset: u16, _size: u32, value: u32) {
        match offset {
            4 if value & 0xff == CMD_RESET => {
                log::debug!("i8042: reset requested by the guest");
                self.vm.request_exit(ExitCode::Reset);
            }
            0 | 4 => {}
            _ => guest_error!("i8042: write {value:#x} to unknown offset {offset}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_fe_resets_and_others_do_not() {
        let vm = Arc::new(VmControl::new());
        let k = I8042::new(vm.clone());
        assert_eq!(k.read(4, 1), 0);
        k.write(4, 1, 0xad);
        k.write(0, 1, 0xfe);
        assert_eq!(vm.exit_requested(), None);
        k.write(4, 1, 0xfe);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Reset));
    }
}
