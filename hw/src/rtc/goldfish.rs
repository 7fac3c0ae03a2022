//! Goldfish RTC, as QEMU `virt` has it at 0x10_1000 (PLIC source 11).
//!
//! | offset | read                          | write                        |
//! |--------|-------------------------------|------------------------------|
//! | 0x00   | TIME_LOW (latches TIME_HIGH)  | set time, low half           |
//! | 0x04   | TIME_HIGH (latched)           | set time, high half          |
//! | 0x08   | ALARM_LOW                     | ALARM_LOW, arms the alarm    |
//! | 0x0c   | ALARM_HIGH                    | ALARM_HIGH (arm: write LOW)  |
//! | 0x10   | IRQ_ENABLED                   | IRQ_ENABLED (bit 0)          |
//! | 0x14   | -                             | CLEAR_ALARM                  |
//! | 0x18   | ALARM_STATUS (alarm armed)    | -                            |
//! | 0x1c   | -                             | CLEAR_INTERRUPT              |
//!
//! Time is nanoseconds since the Unix epoch: the host wall clock sampled
//! once at creation, advanced by the monotonic clock from then on (so
//! alarms map to exact [`Instant`]s and host clock steps do not disturb the
//! guest), plus the offset of any guest write. Semantics follow QEMU's
//! `goldfish_rtc.c`: an alarm at or before the current time fires at once;
//! the interrupt line is `irq_pending && irq_enabled`. All registers are
//! 32-bit; other sizes and unknown offsets are guest errors.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kite_core::{guest_error, IrqLine, MmioDevice};

use crate::timer::{Timer, TimerService};

/// Size of the RTC region on `virt`.
pub const GOLDFISH_RTC_SIZE: u64 = 0x1000;

pub const TIME_LOW: u64 = 0x00;
pub const TIME_HIGH: u64 = 0x04;
pub const ALARM_LOW: u64 = 0x08;
pub const ALARM_HIGH: u64 = 0x0c;
pub const IRQ_ENABLED: u64 = 0x10;
pub const CLEAR_ALARM: u64 = 0x14;
pub const ALARM_STATUS: u64 = 0x18;
pub const CLEAR_INTERRUPT: u64 = 0x1c;

#[derive(Debug, Default)]
struct State {
    /// Guest time minus host time, wrapping.
    offset: u64,
    /// TIME_HIGH as latched by the last TIME_LOW read.
    time_high: u32,
    alarm_next: u64,
    alarm_running: bool,
    irq_pending: bool,
    irq_enabled: bool,
    /// Level last driven onto the line.
    level: bool,
}

/// The Goldfish RTC device.
#[derive(Debug)]
pub struct GoldfishRtc {
    start: Instant,
    /// Wall-clock nanoseconds since the epoch at `start`.
    base_ns: u64,
    irq: Arc<dyn IrqLine>,
    state: Mutex<State>,
    timer: Timer,
}

impl GoldfishRtc {
    /// An RTC reading the host wall clock, raising `irq` for alarms.
    pub fn new(timers: &TimerService, irq: Arc<dyn IrqLine>) -> Arc<GoldfishRtc> {
        // A host clock before 1970 (or past 2554) reads as the epoch: the
        // guest can still set the time.
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        GoldfishRtc::with_epoch_ns(timers, irq, u64::try_from(now).unwrap_or(0))
    }

    /// An RTC that reads `epoch_ns` now (tests, reproducible runs).
    pub fn with_epoch_ns(timers: &TimerService, irq: Arc<dyn IrqLine>, epoch_ns: u64) -> Arc<GoldfishRtc> {
        irq.set_level(false);
        Arc::new_cyclic(|weak: &Weak<GoldfishRtc>| {
            let weak = weak.clone();
            let timer = timers.timer(move || {
                if let Some(rtc) = weak.upgrade() {
                    rtc.alarm_fired();
                }
            });
            GoldfishRtc { start: Instant::now(), base_ns: epoch_ns, irq, state: Mutex::new(State::default()), timer }
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Host time in ns since the epoch (before the guest offset).
    fn host_ns(&self, at: Instant) -> u64 {
        let elapsed = u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        self.base_ns.wrapping_add(elapsed)
    }

    /// Guest time now.
    fn count(&self, st: &State) -> u64 {
        self.host_ns(Instant::now()).wrapping_add(st.offset)
    }

    /// The current guest time in ns since the epoch.
    pub fn time_ns(&self) -> u64 {
        let st = self.lock();
        self.count(&st)
    }

    fn update_irq(&self, st: &mut State) {
        let level = st.irq_pending && st.irq_enabled;
        if level != st.level {
            st.level = level;
            self.irq.set_level(level);
        }
    }

    fn clear_alarm(&self, st: &mut State) {
        self.timer.cancel();
        st.alarm_running = false;
    }

    /// Arm the alarm for `alarm_next`, or fire it now if that has passed.
    fn set_alarm(&self, st: &mut State) {
        let now = Instant::now();
        let count = self.host_ns(now).wrapping_add(st.offset);
        if st.alarm_next <= count {
            self.clear_alarm(st);
            st.irq_pending = true;
            self.update_irq(st);
            return;
        }
        st.alarm_running = true;
        match now.checked_add(Duration::from_nanos(st.alarm_next - count)) {
            Some(deadline) => self.timer.arm(deadline),
            // Centuries away: armed but never reached in this run.
            None => self.timer.cancel(),
        }
    }

    fn alarm_fired(&self) {
        let mut st = self.lock();
        // A cancelled or moved alarm may still fire once: re-check.
        if st.alarm_running {
            self.set_alarm(&mut st);
        }
    }

    /// Move the guest time so that it reads `value` now.
    fn set_time(&self, st: &mut State, value: u64) {
        let current = self.count(st);
        st.offset = st.offset.wrapping_add(value.wrapping_sub(current));
        if st.alarm_running {
            self.set_alarm(st);
        }
    }
}

impl MmioDevice for GoldfishRtc {
    fn read(&self, offset: u64, size: u32) -> u64 {
        if size != 4 {
            guest_error!("goldfish RTC: {size}-byte read at {offset:#x}");
            return 0;
        }
        let mut st = self.lock();
        let v = match offset {
            TIME_LOW => {
                let now = self.count(&st);
                st.time_high = (now >> 32) as u32;
                now & 0xffff_ffff
            }
            TIME_HIGH => st.time_high as u64,
            ALARM_LOW => st.alarm_next & 0xffff_ffff,
            ALARM_HIGH => st.alarm_next >> 32,
            IRQ_ENABLED => st.irq_enabled as u64,
            ALARM_STATUS => st.alarm_running as u64,
            _ => {
                guest_error!("goldfish RTC: read of unknown or write-only register {offset:#x}");
                0
            }
        };
        v
    }

    fn write(&self, offset: u64, size: u32, value: u64) {
        if size != 4 {
            guest_error!("goldfish RTC: {size}-byte write of {value:#x} at {offset:#x}");
            return;
        }
        let value = value & 0xffff_ffff;
        let mut st = self.lock();
        match offset {
            TIME_LOW => {
                let now = self.count(&st);
                self.set_time(&mut st, (now & !0xffff_ffff) | value);
            }
            TIME_HIGH => {
                let now = self.count(&st);
                self.set_time(&mut st, (now & 0xffff_ffff) | (value << 32));
            }
            ALARM_LOW => {
                st.alarm_next = (st.alarm_next & !0xffff_ffff) | value;
                self.set_alarm(&mut st);
            }
            ALARM_HIGH => st.alarm_next = (st.alarm_next & 0xffff_ffff) | (value << 32),
            IRQ_ENABLED => {
                st.irq_enabled = value & 1 != 0;
                self.update_irq(&mut st);
            }
            CLEAR_ALARM => self.clear_alarm(&mut st),
            CLEAR_INTERRUPT => {
                st.irq_pending = false;
                self.update_irq(&mut st);
            }
            _ => guest_error!("goldfish RTC: write of {value:#x} to unknown or read-only register {offset:#x}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::test_support::TestLine;

    const EPOCH: u64 = 1_700_000_000_000_000_000; // Nov 2023, in ns

    fn rtc() -> (Arc<GoldfishRtc>, Arc<TestLine>, TimerService) {
        let svc = TimerService::new().unwrap();
        let line = Arc::new(TestLine::default());
        (GoldfishRtc::with_epoch_ns(&svc, line.clone(), EPOCH), line, svc)
    }

    fn read_time(r: &GoldfishRtc) -> u64 {
        let lo = r.read(TIME_LOW, 4);
        (r.read(TIME_HIGH, 4) << 32) | lo
    }

    fn set_alarm(r: &GoldfishRtc, at: u64) {
        r.write(ALARM_HIGH, 4, at >> 32);
        r.write(ALARM_LOW, 4, at & 0xffff_ffff);
    }

    #[test]
    fn time_reads_latch_high_and_advance() {
        let (r, _, _svc) = rtc();
        let t0 = read_time(&r);
        assert!((EPOCH..EPOCH + 1_000_000_000).contains(&t0), "{t0}");
        assert_eq!(r.read(TIME_HIGH, 4), t0 >> 32, "latched by the TIME_LOW read");
        std::thread::sleep(Duration::from_millis(2));
        let t1 = read_time(&r);
        assert!(t1 >= t0 + 2_000_000, "{t0} -> {t1}");
        // The real-clock constructor is near the host's time.
        let svc = TimerService::new().unwrap();
        let host = GoldfishRtc::new(&svc, Arc::new(kite_core::NoIrq));
        let sys = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
        assert!(host.time_ns().abs_diff(sys) < 1_000_000_000);
    }

    #[test]
    fn guest_sets_time() {
        let (r, _, _svc) = rtc();
        // Linux writes TIME_HIGH then TIME_LOW.
        let want: u64 = 0x0000_1234_5678_9abc;
        r.write(TIME_HIGH, 4, want >> 32);
        r.write(TIME_LOW, 4, want & 0xffff_ffff);
        let t = read_time(&r);
        assert!((want..want + 1_000_000_000).contains(&t), "{t:#x}");
        assert_eq!(r.read(TIME_HIGH, 4), 0x1234);
    }

    #[test]
    fn alarm_fires_on_time_and_clears() {
        let (r, line, _svc) = rtc();
        r.write(IRQ_ENABLED, 4, 1);
        assert_eq!(r.read(IRQ_ENABLED, 4), 1);
        let start = Instant::now();
        let at = r.time_ns() + 15_000_000; // 15 ms
        set_alarm(&r, at);
        assert_eq!(r.read(ALARM_STATUS, 4), 1);
        assert_eq!((r.read(ALARM_HIGH, 4) << 32) | r.read(ALARM_LOW, 4), at);
        assert!(!line.level());
        assert!(line.wait_for(true, Duration::from_secs(2)), "alarm never fired");
        assert!(start.elapsed() >= Duration::from_millis(14), "early: {:?}", start.elapsed());
        assert!(r.time_ns() >= at);
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
        r.write(CLEAR_INTERRUPT, 4, 1);
        assert!(!line.level());
    }

    #[test]
    fn past_alarm_fires_at_once_and_enable_gates_the_line() {
        let (r, line, _svc) = rtc();
        set_alarm(&r, EPOCH - 1);
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
        assert!(!line.level(), "pending but not enabled");
        r.write(IRQ_ENABLED, 4, 1);
        assert!(line.level());
        r.write(IRQ_ENABLED, 4, 0);
        assert!(!line.level());
        r.write(IRQ_ENABLED, 4, 1);
        r.write(CLEAR_INTERRUPT, 4, 0);
        assert!(!line.level());
    }

    #[test]
    fn clear_alarm_cancels() {
        let (r, line, _svc) = rtc();
        r.write(IRQ_ENABLED, 4, 1);
        set_alarm(&r, r.time_ns() + 5_000_000);
        r.write(CLEAR_ALARM, 4, 1);
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
        assert!(!line.wait_for(true, Duration::from_millis(20)), "cancelled alarm fired");
    }

    #[test]
    fn moving_time_past_a_running_alarm_fires_it() {
        let (r, line, _svc) = rtc();
        r.write(IRQ_ENABLED, 4, 1);
        let at = EPOCH + 3600 * 1_000_000_000;
        set_alarm(&r, at);
        assert!(!line.level());
        r.write(TIME_HIGH, 4, (at >> 32) + 1);
        assert!(line.level());
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
    }

    #[test]
    fn bad_accesses_are_ignored() {
        let (r, line, _svc) = rtc();
        assert_eq!(r.read(TIME_LOW, 8), 0);
        assert_eq!(r.read(CLEAR_ALARM, 4), 0);
        assert_eq!(r.read(0x20, 4), 0);
        assert_eq!(r.read(u64::MAX, 4), 0);
        r.write(IRQ_ENABLED, 1, 1);
        r.write(ALARM_STATUS, 4, 1);
        r.write(0x800, 4, 1);
        assert_eq!(r.read(IRQ_ENABLED, 4), 0);
        assert_eq!(r.read(ALARM_STATUS, 4), 0);
        // An alarm too far away to schedule is armed but harmless.
        set_alarm(&r, u64::MAX);
        assert_eq!(r.read(ALARM_STATUS, 4), 1);
        assert!(!line.level());
    }
}
