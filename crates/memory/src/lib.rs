//! Guest RAM and the physical address map.
//!
//! A machine builds one [`PhysMap`] at start-up: RAM regions (anonymous host
//! mappings from `memmap2`) and MMIO regions (devices), which must not
//! overlap. After that the map is frozen and shared (`Arc<PhysMap>`); lookups
//! take no lock. The translator caches RAM lookups in its softmmu TLB, so
//! [`PhysMap::lookup`] is on the slow path only.
//!
//! RAM is shared by vCPU threads without locks, as on real hardware: racy
//! guest accesses give the guest torn values, never host UB in Kite's own
//! data structures (RAM is only ever accessed through raw pointers, never
//! through Rust references that assert exclusivity).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use kite_core::{MmioDevice, PhysMemory};

/// Errors building the address map.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MemoryError {
    #[error("region {name} at {base:#x}+{size:#x} overlaps {other}")]
    Overlap { name: String, base: u64, size: u64, other: String },
    #[error("region {name} has size 0 or wraps the address space")]
    BadRange { name: String },
    #[error("cannot allocate {size} bytes of guest RAM: {msg}")]
    Alloc { size: u64, msg: String },
}

/// A block of guest RAM backed by an anonymous host mapping.
pub struct GuestRam {
    base: u64,
    size: u64,
    ptr: *mut u8,
    _map: memmap2::MmapMut,
}

// SAFETY: the mapping is plain memory owned by this struct for its whole life;
// all access goes through raw pointers, and guest-visible races are the
// guest's business (see the crate note).
unsafe impl Send for GuestRam {}
// SAFETY: as above; no method hands out `&mut` to the memory.
unsafe impl Sync for GuestRam {}

impl fmt::Debug for GuestRam {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GuestRam({:#x}+{:#x})", self.base, self.size)
    }
}

impl GuestRam {
    pub fn new(base: u64, size: u64) -> Result<GuestRam, MemoryError> {
        let len = usize::try_from(size).map_err(|_| MemoryError::Alloc { size, msg: "too large".into() })?;
        let mut map = memmap2::MmapOptions::new()
            .len(len)
            .map_anon()
            .map_err(|e| MemoryError::Alloc { size, msg: e.to_string() })?;
        // Transparent huge pages, as QEMU asks for its guest RAM: one fault per 2 MiB
        // instead of per 4 KiB, and fewer host TLB misses on guest accesses. Only
        // advice: a host with THP off (or `never`) keeps small pages.
        #[cfg(target_os = "linux")]
        let _ = map.advise(memmap2::Advice::HugePage);
        let ptr = map.as_mut_ptr();
        Ok(GuestRam { base, size, ptr, _map: map })
    }

    pub fn base(&self) -> u64 {
        self.base
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Host pointer for guest-physical `paddr`, with the bytes left in this
    /// RAM block, or `None` if outside.
    pub fn host_ptr(&self, paddr: u64) -> Option<(*mut u8, u64)> {
        let off = paddr.checked_sub(self.base)?;
        if off >= self.size {
            return None;
        }
        // SAFETY: `off < size`, so the result stays inside the mapping.
        Some((unsafe { self.ptr.add(off as usize) }, self.size - off))
    }

    fn range(&self, paddr: u64, len: usize) -> Option<*mut u8> {
        let (p, left) = self.host_ptr(paddr)?;
        (len as u64 <= left).then_some(p)
    }

    pub fn read(&self, paddr: u64, buf: &mut [u8]) -> bool {
        match self.range(paddr, buf.len()) {
            Some(p) => {
                // SAFETY: `range` checked that `buf.len()` bytes from `p` are inside the mapping.
                unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
                true
            }
            None => false,
        }
    }

    pub fn write(&self, paddr: u64, data: &[u8]) -> bool {
        match self.range(paddr, data.len()) {
            Some(p) => {
                // SAFETY: `range` checked that `data.len()` bytes from `p` are inside the mapping.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
                true
            }
            None => false,
        }
    }
}

/// What a region of the map is.
#[derive(Clone, Debug)]
pub enum RegionKind {
    Ram(Arc<GuestRam>),
    Mmio(Arc<dyn MmioDevice>),
}

/// One mapped range.
#[derive(Clone, Debug)]
pub struct Region {
    pub name: String,
    pub base: u64,
    pub size: u64,
    pub kind: RegionKind,
}

/// The result of a physical address lookup.
#[derive(Debug)]
pub enum Hit<'a> {
    /// RAM: host pointer for the address, bytes left in the block, and the block.
    Ram { ptr: *mut u8, left: u64, ram: &'a Arc<GuestRam> },
    /// A device and the offset into its region.
    Mmio { dev: &'a Arc<dyn MmioDevice>, offset: u64, region: &'a Region },
}

/// The guest-physical address map.
#[derive(Debug, Default)]
pub struct PhysMap {
    /// Sorted by base, non-overlapping. A sorted `Vec` rather than a `BTreeMap`: a
    /// machine has a dozen regions, and page walks look up every PTE here (the map's
    /// range search was ~2% of a Linux boot; a binary search over a slice is a few
    /// compares).
    regions: Vec<Region>,
}

impl PhysMap {
    pub fn new() -> PhysMap {
        PhysMap::default()
    }

    fn insert(&mut self, r: Region) -> Result<(), MemoryError> {
        let end = r.base.checked_add(r.size).filter(|_| r.size > 0);
        let Some(end) = end else {
            return Err(MemoryError::BadRange { name: r.name });
        };
        // The nearest region starting below `end` is the only one that can overlap.
        let at = self.regions.partition_point(|x| x.base < end);
        if let Some(prev) = at.checked_sub(1).map(|i| &self.regions[i]) {
            if prev.base + prev.size > r.base {
                return Err(MemoryError::Overlap {
                    name: r.name,
                    base: r.base,
                    size: r.size,
                    other: prev.name.clone(),
                });
            }
        }
        // No overlap, so every region before `at` also starts below `r.base`.
        self.regions.insert(at, r);
        Ok(())
    }

    /// Add RAM; returns the block so loaders can fill it.
    pub fn add_ram(&mut self, name: &str, base: u64, size: u64) -> Result<Arc<GuestRam>, MemoryError> {
        let ram = Arc::new(GuestRam::new(base, size)?);
        self.insert(Region { name: name.into(), base, size, kind: RegionKind::Ram(ram.clone()) })?;
        Ok(ram)
    }

    pub fn add_mmio(&mut self, name: &str, base: u64, size: u64, dev: Arc<dyn MmioDevice>) -> Result<(), MemoryError> {
        self.insert(Region { name: name.into(), base, size, kind: RegionKind::Mmio(dev) })
    }

    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.iter()
    }

    pub fn lookup(&self, paddr: u64) -> Option<Hit<'_>> {
        let i = self.regions.partition_point(|r| r.base <= paddr);
        let r = &self.regions[i.checked_sub(1)?];
        let off = paddr - r.base;
        if off >= r.size {
            return None;
        }
        Some(match &r.kind {
            RegionKind::Ram(ram) => {
                let (ptr, left) = ram.host_ptr(paddr)?;
                Hit::Ram { ptr, left, ram }
            }
            RegionKind::Mmio(dev) => Hit::Mmio { dev, offset: off, region: r },
        })
    }
}

impl PhysMemory for PhysMap {
    fn read_u64(&self, paddr: u64) -> Option<u64> {
        // Every PTE a page walk reads comes through here (~500,000 in a Linux boot): one
        // load instead of a byte copy, and an aligned word read whole, since another
        // hart may be setting its A/D bits.
        match self.lookup(paddr)? {
            Hit::Ram { ptr, left, .. } if left >= 8 => Some(u64::from_le(if ptr as usize % 8 == 0 {
                // SAFETY: 8 bytes from `ptr` are inside the RAM mapping (`left >= 8`), and
                // `ptr` is aligned for an `AtomicU64`.
                unsafe { (*(ptr as *const std::sync::atomic::AtomicU64)).load(std::sync::atomic::Ordering::Relaxed) }
            } else {
                // SAFETY: as above, without the alignment.
                unsafe { (ptr as *const u64).read_unaligned() }
            })),
            _ => None,
        }
    }

    fn read_ram(&self, paddr: u64, buf: &mut [u8]) -> bool {
        match self.lookup(paddr) {
            Some(Hit::Ram { ram, .. }) => ram.read(paddr, buf),
            _ => false,
        }
    }

    fn write_ram(&self, paddr: u64, data: &[u8]) -> bool {
        match self.lookup(paddr) {
            Some(Hit::Ram { ram, .. }) => ram.write(paddr, data),
            _ => false,
        }
    }

    fn read(&self, paddr: u64, size: u32) -> Option<u64> {
        match self.lookup(paddr)? {
            Hit::Ram { ram, .. } => {
                let mut b = [0u8; 8];
                ram.read(paddr, &mut b[..size as usize]).then(|| u64::from_le_bytes(b))
            }
            Hit::Mmio { dev, offset, region } => (offset + size as u64 <= region.size).then(|| dev.read(offset, size)),
        }
    }

    fn write(&self, paddr: u64, size: u32, value: u64) -> bool {
        match self.lookup(paddr) {
            Some(Hit::Ram { ram, .. }) => ram.write(paddr, &value.to_le_bytes()[..size as usize]),
            Some(Hit::Mmio { dev, offset, region }) if offset + size as u64 <= region.size => {
                dev.write(offset, size, value);
                true
            }
            _ => false,
        }
    }

    fn ram_ptr(&self, paddr: u64) -> Option<(*mut u8, u64)> {
        match self.lookup(paddr)? {
            Hit::Ram { ptr, left, .. } => Some((ptr, left)),
            Hit::Mmio { .. } => None,
        }
    }

    fn cmpxchg_u64(&self, paddr: u64, old: u64, new: u64) -> Option<u64> {
        if paddr % 8 != 0 {
            return None;
        }
        let (ptr, left) = self.ram_ptr(paddr)?;
        if left < 8 {
            return None;
        }
        // SAFETY: `ptr` is 8-byte aligned (RAM blocks are page aligned and
        // paddr is) and points at 8 bytes inside the mapping; RAM is only
        // accessed through raw pointers, so an atomic view is sound.
        let a = unsafe { &*(ptr as *const AtomicU64) };
        Some(match a.compare_exchange(old, new, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(v) | Err(v) => v,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Debug, Default)]
    struct Reg(Mutex<u64>);
    impl MmioDevice for Reg {
        fn read(&self, _o: u64, _s: u32) -> u64 {
            *self.0.lock().unwrap()
        }
        fn write(&self, _o: u64, _s: u32, v: u64) {
            *self.0.lock().unwrap() = v;
        }
    }

    #[test]
    fn overlaps_are_rejected() {
        let mut m = PhysMap::new();
        m.add_ram("ram", 0x8000_0000, 0x10000).unwrap();
        let dev: Arc<dyn MmioDevice> = Arc::new(Reg::default());
        assert!(matches!(m.add_mmio("x", 0x8000_f000, 0x2000, dev.clone()), Err(MemoryError::Overlap { .. })));
        assert!(matches!(m.add_mmio("y", 0x7fff_f000, 0x2000, dev.clone()), Err(MemoryError::Overlap { .. })));
        assert!(matches!(m.add_mmio("z", 0, 0, dev.clone()), Err(MemoryError::BadRange { .. })));
        m.add_mmio("uart", 0x1000_0000, 0x100, dev).unwrap();
    }

    #[test]
    fn ram_and_mmio_access() {
        let mut m = PhysMap::new();
        m.add_ram("ram", 0x8000_0000, 0x10000).unwrap();
        m.add_mmio("reg", 0x1000, 0x10, Arc::new(Reg::default())).unwrap();
        assert!(m.write(0x8000_0008, 8, 0x1122_3344_5566_7788));
        assert_eq!(m.read(0x8000_0008, 4), Some(0x5566_7788));
        assert_eq!(m.read_u64(0x8000_0008), Some(0x1122_3344_5566_7788));
        assert!(m.write(0x1004, 4, 42));
        assert_eq!(m.read(0x1000, 4), Some(42));
        assert_eq!(m.read(0x2000, 4), None);
        assert_eq!(m.read(0x8001_0000, 1), None);
        assert!(!m.write_ram(0x8000_fffc, &[0; 8]), "crossing the end of RAM");
        assert_eq!(m.cmpxchg_u64(0x8000_0008, 0x1122_3344_5566_7788, 7), Some(0x1122_3344_5566_7788));
        assert_eq!(m.read_u64(0x8000_0008), Some(7));
        assert!(m.write(0x8000_0010, 8, 0x99));
        assert_eq!(m.read_u64(0x8000_000c), Some(0x99 << 32), "unaligned");
        assert_eq!(m.read_u64(0x8000_fffc), None, "crossing the end of RAM");
        assert_eq!(m.read_u64(0x1000), None, "a device");
    }

    #[test]
    fn regions_added_in_any_order_are_found_with_their_gaps() {
        let mut m = PhysMap::new();
        let dev = |v: u64| -> Arc<dyn MmioDevice> { Arc::new(Reg(Mutex::new(v))) };
        // Out of address order, adjacent and with gaps.
        m.add_mmio("c", 0x3000, 0x1000, dev(3)).unwrap();
        m.add_mmio("a", 0x1000, 0x100, dev(1)).unwrap();
        m.add_mmio("b", 0x2000, 0x1000, dev(2)).unwrap();
        m.add_mmio("d", 0x0, 0x10, dev(0)).unwrap();
        assert!(matches!(m.add_mmio("e", 0x10f0, 0x20, dev(9)), Err(MemoryError::Overlap { .. })));
        let bases: Vec<u64> = m.regions().map(|r| r.base).collect();
        assert_eq!(bases, [0x0, 0x1000, 0x2000, 0x3000]);
        let at = |a: u64| m.read(a, 1);
        assert_eq!([at(0x0), at(0xf), at(0x10), at(0xfff)], [Some(0), Some(0), None, None]);
        assert_eq!([at(0x1000), at(0x10ff), at(0x1100)], [Some(1), Some(1), None]);
        assert_eq!(
            [at(0x2fff), at(0x3000), at(0x3fff), at(0x4000), at(u64::MAX)],
            [Some(2), Some(3), Some(3), None, None]
        );
    }
}
