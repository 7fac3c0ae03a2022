//! A guest can never crash Kite through a device: every MMIO device of the RISC-V
//! machines takes random accesses (any offset in and just past its region, every size,
//! random values, interleaved reads and writes) without panicking. Writes that end the VM
//! (test finisher) only set the exit request, which this test ignores.

use std::sync::Arc;

use kite_core::{IrqLine, MmioDevice, NoIrq, VmControl};
use kite_hw::char::ns16550::{Ns16550, NS16550_MMIO_SIZE};
use kite_hw::intc::aclint::{Aclint, AclintHartLines, CLINT_SIZE};
use kite_hw::intc::plic::{Plic, PLIC_SIZE};
use kite_hw::misc::test_finisher::{TestFinisher, TEST_FINISHER_SIZE};
use kite_hw::rtc::goldfish::{GoldfishRtc, GOLDFISH_RTC_SIZE};
use kite_hw::timer::{Clock, TimerService};

/// A small deterministic generator (xorshift64*), so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn hammer(name: &str, dev: &dyn MmioDevice, size: u64, seed: u64) {
    let mut r = Rng(seed);
    for _ in 0..200_000 {
        let x = r.next();
        // Mostly inside the region, sometimes at the very end or just past it.
        let off = match x % 8 {
            0 => size.saturating_sub(1 + (x >> 8) % 8),
            1 => size + (x >> 8) % 16,
            _ => (x >> 8) % size,
        };
        let width = [1u32, 2, 4, 8][((x >> 4) % 4) as usize];
        let off = if (x >> 6) & 1 == 0 { off & !(width as u64 - 1) } else { off };
        if (x >> 7) & 1 == 0 {
            let _ = dev.read(off, width);
        } else {
            dev.write(off, width, r.next());
        }
    }
    eprintln!("{name}: 200000 random accesses survived");
}

fn lines(n: usize) -> Vec<Arc<dyn IrqLine>> {
    (0..n).map(|_| Arc::new(NoIrq) as Arc<dyn IrqLine>).collect()
}

#[test]
fn random_guest_accesses_never_panic() {
    let timers = TimerService::new().expect("timer thread");
    let clock = Clock::new();
    let harts = (0..2).map(|_| AclintHartLines { msip: Arc::new(NoIrq), mtip: Arc::new(NoIrq) }).collect();
    let aclint = Aclint::new(clock, &timers, harts).expect("clint");
    hammer("clint", &aclint, CLINT_SIZE, 1);
    let plic = Plic::new(lines(4)).expect("plic");
    hammer("plic", &plic, PLIC_SIZE, 2);
    let uart = Ns16550::new(Box::new(std::io::sink()), Arc::new(NoIrq));
    hammer("ns16550", &uart, NS16550_MMIO_SIZE, 3);
    let rtc = GoldfishRtc::new(&timers, Arc::new(NoIrq));
    hammer("goldfish-rtc", &*rtc, GOLDFISH_RTC_SIZE, 4);
    let vm = Arc::new(VmControl::new());
    let fin = TestFinisher::new(vm);
    hammer("test-finisher", &fin, TEST_FINISHER_SIZE, 5);
}
