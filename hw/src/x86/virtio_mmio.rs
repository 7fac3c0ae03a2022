//! Empty virtio-mmio transports: the register block a virtio-mmio slot
//! shows when no device backs it (device ID 0), as on QEMU's microvm. A
//! driver probing one finds the magic and version, sees "no device" and
//! moves on; this is the plumbing real virtio devices will plug into.
//!
//! Registers (virtio 1.x, offsets in bytes, 32-bit reads): 0x000 magic
//! "virt", 0x004 version 2, 0x008 device ID 0, 0x00c vendor ID. Everything
//! else reads 0 and writes are dropped; non-32-bit accesses to the header
//! are a guest error (the spec requires 32-bit accesses).

use kite_core::{guest_error, MmioDevice};

pub const VIRTIO_MMIO_MAGIC: u32 = 0x7472_6976;
/// "KITE" in little-endian ASCII.
pub const KITE_VENDOR_ID: u32 = 0x4554_494b;

/// A transport with nothing behind it.
#[derive(Debug, Default)]
pub struct EmptyTransport;

impl MmioDevice for EmptyTransport {
    fn read(&self, offset: u64, size: u32) -> u64 {
        if size != 4 {
            guest_error!("virtio-mmio: {size}-byte read at offset {offset:#x} (must be 4)");
            return 0;
        }
        u64::from(match offset {
            0x000 => VIRTIO_MMIO_MAGIC,
            0x004 => 2,
            0x00c => KITE_VENDOR_ID,
            _ => 0,
        })
    }

    fn write(&self, offset: u64, _size: u32, value: u64) {
        guest_error!("virtio-mmio: write {value:#x} at offset {offset:#x} of an empty transport");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_says_no_device() {
        let t = EmptyTransport;
        assert_eq!(t.read(0, 4), u64::from(VIRTIO_MMIO_MAGIC));
        assert_eq!(t.read(4, 4), 2);
        assert_eq!(t.read(8, 4), 0);
        assert_eq!(t.read(0, 1), 0);
        t.write(0x70, 4, 1);
    }
}
