//! SiFive CLINT (ACLINT MSWI + MTIMER in the legacy layout) as QEMU `virt`
//! maps it at 0x200_0000, 0x1_0000 bytes:
//!
//! | offset             | register            | access            |
//! |--------------------|---------------------|-------------------|
//! | 0x0000 + 4 * hart  | `msip[hart]`        | 32-bit, bit 0     |
//! | 0x4000 + 8 * hart  | `mtimecmp[hart]`    | 64-bit or halves  |
//! | 0xbff8             | `mtime`             | 64-bit or halves  |
//!
//! `msip` bit 0 drives the hart's MSIP line. `mtime` is the shared
//! [`Clock`] (10 MHz since machine start, plus the offset of any guest
//! write). Each hart's MTIP line is a [`CompareTimer`]: high exactly while
//! `mtime >= mtimecmp`, raised by the host timer thread when the deadline
//! passes even if every hart sleeps in `wfi`.
//!
//! `mtimecmp` starts at `u64::MAX` (no timer interrupt until the firmware
//! programs one; QEMU starts at 0 but only evaluates it on a write, so the
//! visible behaviour is the same). Misaligned or wrongly sized accesses,
//! and offsets past the last hart, are guest errors: reads give 0, writes
//! are dropped.

use std::sync::{Arc, Mutex};

use kite_core::{guest_error, IrqLine, MmioDevice};

use super::IntcError;
use crate::timer::{Clock, CompareTimer, TimerService};

/// Size of the CLINT region on `virt`.
pub const CLINT_SIZE: u64 = 0x1_0000;
/// Offset of `msip[0]`.
pub const MSIP_BASE: u64 = 0x0;
/// Offset of `mtimecmp[0]`.
pub const MTIMECMP_BASE: u64 = 0x4000;
/// Offset of `mtime`.
pub const MTIME_OFFSET: u64 = 0xbff8;
/// Most harts the layout has room for (`mtimecmp` runs into `mtime`).
pub const CLINT_MAX_HARTS: usize = ((MTIME_OFFSET - MTIMECMP_BASE) / 8) as usize;

/// The lines of one hart the CLINT drives.
#[derive(Debug, Clone)]
pub struct AclintHartLines {
    /// Machine software interrupt (`mip.MSIP`).
    pub msip: Arc<dyn IrqLine>,
    /// Machine timer interrupt (`mip.MTIP`).
    pub mtip: Arc<dyn IrqLine>,
}

/// The CLINT device.
#[derive(Debug)]
pub struct Aclint {
    clock: Arc<Clock>,
    /// `msip` register bits; the lock also orders the MSIP line updates.
    msip: Mutex<Vec<bool>>,
    msip_lines: Vec<Arc<dyn IrqLine>>,
    mtimecmp: Vec<CompareTimer>,
}

/// Which register an offset names.
enum Reg {
    Msip(usize),
    /// Hart, and whether the access starts at the high half.
    Mtimecmp(usize, bool),
    Mtime(bool),
}

impl Aclint {
    /// A CLINT for `harts.len()` harts (hart i = entry i) on `clock`, with
    /// its timers on `timers`. All lines start low.
    pub fn new(clock: Arc<Clock>, timers: &TimerService, harts: Vec<AclintHartLines>) -> Result<Aclint, IntcError> {
        if harts.is_empty() || harts.len() > CLINT_MAX_HARTS {
            return Err(IntcError::BadCount { dev: "CLINT", count: harts.len(), max: CLINT_MAX_HARTS });
        }
        let mut msip_lines = Vec::with_capacity(harts.len());
        let mut mtimecmp = Vec::with_capacity(harts.len());
        for h in harts {
            h.msip.set_level(false);
            msip_lines.push(h.msip);
            mtimecmp.push(CompareTimer::new(&clock, timers, h.mtip, u64::MAX));
        }
        Ok(Aclint { clock, msip: Mutex::new(vec![false; msip_lines.len()]), msip_lines, mtimecmp })
    }

    /// Current `mtime` (what the `time` CSR reads).
    pub fn mtime(&self) -> u64 {
        self.clock.ticks()
    }

    /// The time base, to hand to CPUs ([`Clock::time_source`]) and Sstc
    /// compare timers.
    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    pub fn num_harts(&self) -> usize {
        self.msip_lines.len()
    }

    /// Decode an access; `None` (after a guest error) if it names nothing.
    fn decode(&self, offset: u64, size: u32, what: &str) -> Option<Reg> {
        let n = self.num_harts() as u64;
        let reg = if offset < MTIMECMP_BASE {
            let hart = (offset - MSIP_BASE) / 4;
            (size == 4 && offset % 4 == 0 && hart < n).then_some(Reg::Msip(hart as usize))
        } else if offset < MTIME_OFFSET {
            let rel = offset - MTIMECMP_BASE;
            let hart = rel / 8;
            let ok = hart < n && ((size == 8 && rel % 8 == 0) || (size == 4 && rel % 4 == 0));
            ok.then_some(Reg::Mtimecmp(hart as usize, rel % 8 == 4))
        } else if offset < MTIME_OFFSET + 8 {
            let rel = offset - MTIME_OFFSET;
            let ok = (size == 8 && rel == 0) || (size == 4 && rel % 4 == 0);
            ok.then_some(Reg::Mtime(rel == 4))
        } else {
            None
        };
        if reg.is_none() {
            guest_error!("CLINT: bad {size}-byte {what} at offset {offset:#x}");
        }
        reg
    }
}

/// The part of a 64-bit register an access of `size` at `high` sees.
fn extract(reg: u64, size: u32, high: bool) -> u64 {
    match (size, high) {
        (8, _) => reg,
        (_, false) => reg & 0xffff_ffff,
        (_, true) => reg >> 32,
    }
}

/// `reg` with the part an access of `size` at `high` writes replaced.
fn deposit(reg: u64, size: u32, high: bool, value: u64) -> u64 {
    match (size, high) {
        (8, _) => value,
        (_, false) => (reg & !0xffff_ffff) | (value & 0xffff_ffff),
        (_, true) => (reg & 0xffff_ffff) | (value << 32),
    }
}

impl MmioDevice for Aclint {
    fn read(&self, offset: u64, size: u32) -> u64 {
        match self.decode(offset, size, "read") {
            Some(Reg::Msip(h)) => {
                let msip = self.msip.lock().unwrap_or_else(|e| e.into_inner());
                msip.get(h).copied().unwrap_or(false) as u64
            }
            Some(Reg::Mtimecmp(h, high)) => self.mtimecmp.get(h).map_or(0, |t| extract(t.compare(), size, high)),
            Some(Reg::Mtime(high)) => extract(self.clock.ticks(), size, high),
            None => 0,
        }
    }

    fn write(&self, offset: u64, size: u32, value: u64) {
        match self.decode(offset, size, "write") {
            Some(Reg::Msip(h)) => {
                let mut msip = self.msip.lock().unwrap_or_else(|e| e.into_inner());
                let (Some(bit), Some(line)) = (msip.get_mut(h), self.msip_lines.get(h)) else { return };
                *bit = value & 1 != 0;
                line.set_level(*bit);
            }
            Some(Reg::Mtimecmp(h, high)) => {
                if let Some(t) = self.mtimecmp.get(h) {
                    // Halves are read-modify-write of the 64-bit value, as on
                    // hardware; RV32 firmware writes high = -1 first to
                    // avoid a spurious interrupt in between.
                    t.set_compare(deposit(t.compare(), size, high, value));
                }
            }
            Some(Reg::Mtime(high)) => self.clock.set_ticks(deposit(self.clock.ticks(), size, high, value)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::test_support::TestLine;
    use crate::timer::TIMEBASE_HZ;
    use std::time::{Duration, Instant};

    struct Rig {
        clint: Aclint,
        msip: Vec<Arc<TestLine>>,
        mtip: Vec<Arc<TestLine>>,
        _svc: TimerService,
    }

    fn rig(harts: usize) -> Rig {
        let svc = TimerService::new().unwrap();
        let msip: Vec<Arc<TestLine>> = (0..harts).map(|_| Arc::new(TestLine::default())).collect();
        let mtip: Vec<Arc<TestLine>> = (0..harts).map(|_| Arc::new(TestLine::default())).collect();
        let lines = (0..harts).map(|i| AclintHartLines { msip: msip[i].clone(), mtip: mtip[i].clone() }).collect();
        let clint = Aclint::new(Clock::new(), &svc, lines).unwrap();
        Rig { clint, msip, mtip, _svc: svc }
    }

    #[test]
    fn msip_drives_only_its_hart() {
        let r = rig(2);
        r.clint.write(4, 4, 1);
        assert!(!r.msip[0].level() && r.msip[1].level());
        assert_eq!(r.clint.read(4, 4), 1);
        assert_eq!(r.clint.read(0, 4), 0);
        r.clint.write(4, 4, 0xfffe); // only bit 0 counts
        assert!(!r.msip[1].level());
        assert_eq!(r.clint.read(4, 4), 0);
    }

    #[test]
    fn mtime_counts_at_10mhz_and_is_writable() {
        let r = rig(1);
        let a = r.clint.read(MTIME_OFFSET, 8);
        std::thread::sleep(Duration::from_millis(2));
        let b = r.clint.mtime();
        assert!(b >= a + TIMEBASE_HZ / 1000, "{a} -> {b}: at least 2 ms of ticks");
        assert!(b < a + TIMEBASE_HZ, "{a} -> {b}: far less than a second");
        r.clint.write(MTIME_OFFSET, 8, 0x1234_0000_0000);
        let t = r.clint.read(MTIME_OFFSET, 8);
        assert!((0x1234_0000_0000..0x1234_0000_0000 + TIMEBASE_HZ).contains(&t), "{t:#x}");
        assert_eq!(r.clint.read(MTIME_OFFSET + 4, 4), 0x1234);
        // A high-half write keeps the low half running.
        r.clint.write(MTIME_OFFSET + 4, 4, 0x7);
        assert_eq!(r.clint.read(MTIME_OFFSET + 4, 4), 0x7);
        assert_eq!(r.clint.clock().ticks() >> 32, 0x7);
    }

    #[test]
    fn mtimecmp_raises_mtip_on_time() {
        let r = rig(2);
        assert!(!r.mtip[0].level() && !r.mtip[1].level(), "mtimecmp starts at u64::MAX");
        assert_eq!(r.clint.read(MTIMECMP_BASE, 8), u64::MAX);
        let start = Instant::now();
        let target = r.clint.mtime() + TIMEBASE_HZ / 50; // 20 ms
        r.clint.write(MTIMECMP_BASE + 8, 8, target);
        assert!(!r.mtip[1].level());
        assert!(r.mtip[1].wait_for(true, Duration::from_secs(2)), "MTIP never rose");
        assert!(r.clint.mtime() >= target);
        assert!(start.elapsed() >= Duration::from_millis(19), "rose early: {:?}", start.elapsed());
        assert!(!r.mtip[0].level(), "other hart untouched");
        // Moving mtimecmp to the future lowers MTIP; to the past raises it.
        r.clint.write(MTIMECMP_BASE + 8, 8, u64::MAX);
        assert!(!r.mtip[1].level());
        r.clint.write(MTIMECMP_BASE, 8, 0);
        assert!(r.mtip[0].level());
    }

    #[test]
    fn mtimecmp_halves() {
        let r = rig(1);
        // RV32 sequence: high = -1, low = x, high = y.
        r.clint.write(MTIMECMP_BASE + 4, 4, 0xffff_ffff);
        r.clint.write(MTIMECMP_BASE, 4, 0x89ab_cdef);
        assert_eq!(r.clint.read(MTIMECMP_BASE, 8), 0xffff_ffff_89ab_cdef);
        r.clint.write(MTIMECMP_BASE + 4, 4, 0x0123_4567);
        assert_eq!(r.clint.read(MTIMECMP_BASE, 8), 0x0123_4567_89ab_cdef);
        assert_eq!(r.clint.read(MTIMECMP_BASE + 4, 4), 0x0123_4567);
        assert_eq!(r.clint.read(MTIMECMP_BASE, 4), 0x89ab_cdef);
        assert!(!r.mtip[0].level(), "still years away");
    }

    #[test]
    fn mtime_write_moves_deadlines() {
        let r = rig(1);
        r.clint.write(MTIMECMP_BASE, 8, 1 << 40);
        assert!(!r.mtip[0].level());
        r.clint.write(MTIME_OFFSET, 8, 1 << 40);
        assert!(r.mtip[0].level(), "mtime jumped past mtimecmp");
        r.clint.write(MTIME_OFFSET, 8, 0);
        assert!(!r.mtip[0].level());
    }

    #[test]
    fn bad_accesses_are_ignored() {
        let r = rig(1);
        assert_eq!(r.clint.read(4, 4), 0, "msip of a missing hart");
        r.clint.write(4, 4, 1);
        r.clint.write(0, 8, 1); // msip is 32-bit only
        r.clint.write(2, 4, 1); // misaligned
        r.clint.write(0, 1, 1);
        assert!(!r.msip[0].level());
        r.clint.write(MTIMECMP_BASE + 8, 8, 0); // hart 1 does not exist
        r.clint.write(MTIMECMP_BASE + 2, 4, 0);
        r.clint.write(MTIMECMP_BASE + 4, 8, 0);
        r.clint.write(MTIMECMP_BASE, 2, 0);
        assert_eq!(r.clint.read(MTIMECMP_BASE, 8), u64::MAX);
        assert!(!r.mtip[0].level());
        assert_eq!(r.clint.read(MTIME_OFFSET + 4, 8), 0);
        assert_eq!(r.clint.read(CLINT_SIZE, 4), 0);
        assert_eq!(r.clint.read(u64::MAX, 8), 0);
        r.clint.write(u64::MAX - 3, 4, 0);
    }

    #[test]
    fn hart_count_is_checked() {
        let svc = TimerService::new().unwrap();
        assert!(matches!(Aclint::new(Clock::new(), &svc, vec![]), Err(IntcError::BadCount { .. })));
        let line: Arc<dyn IrqLine> = Arc::new(kite_core::NoIrq);
        let lines = vec![AclintHartLines { msip: line.clone(), mtip: line }; CLINT_MAX_HARTS + 1];
        assert!(matches!(Aclint::new(Clock::new(), &svc, lines.clone()), Err(IntcError::BadCount { .. })));
        let c = Aclint::new(Clock::new(), &svc, lines[..CLINT_MAX_HARTS].to_vec()).unwrap();
        // The last hart's mtimecmp ends right at mtime.
        let last = MTIMECMP_BASE + 8 * (CLINT_MAX_HARTS as u64 - 1);
        c.write(last, 8, 42);
        assert_eq!(c.read(last, 8), 42);
    }
}
