//! Guest-physical memory as seen by page walkers, loaders and slow paths.

/// Guest-physical memory access. Accesses that hit no RAM or device return
/// `false`/`None` so the caller can raise the architectural access fault.
pub trait PhysMemory: Send + Sync {
    /// Read `buf.len()` bytes from RAM (or ROM) at `paddr`. Devices are not
    /// touched: this is for loaders, page walks and debuggers.
    fn read_ram(&self, paddr: u64, buf: &mut [u8]) -> bool;
    /// Write bytes into RAM at `paddr`.
    fn write_ram(&self, paddr: u64, data: &[u8]) -> bool;
    /// A sized access that may reach a device (`size` 1, 2, 4, 8).
    fn read(&self, paddr: u64, size: u32) -> Option<u64>;
    fn write(&self, paddr: u64, size: u32, value: u64) -> bool;
    /// Host pointer to RAM backing `paddr`, and how many bytes stay
    /// contiguous from there. `None` for devices and holes.
    fn ram_ptr(&self, paddr: u64) -> Option<(*mut u8, u64)>;
    /// Atomic compare-and-swap of an aligned 64-bit RAM word (page-table A/D
    /// updates). Returns the previous value, or `None` if not RAM.
    fn cmpxchg_u64(&self, paddr: u64, old: u64, new: u64) -> Option<u64>;

    fn read_u64(&self, paddr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_ram(paddr, &mut b).then(|| u64::from_le_bytes(b))
    }
    fn read_u32(&self, paddr: u64) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read_ram(paddr, &mut b).then(|| u32::from_le_bytes(b))
    }
}
