//! Host timer service and the machine's time base.
//!
//! - [`TimerService`]: one background thread sleeping on a `Condvar` until
//!   the earliest armed deadline, then running that timer's callback. Devices
//!   get a [`Timer`] handle per event source and arm, re-arm or cancel it at
//!   O(log n) cost; nothing spins, so a machine whose harts all sleep in
//!   `wfi` still gets its timer interrupt exactly on time.
//! - [`Clock`]: the RISC-V platform time base (`mtime`, the `time` CSR):
//!   10 MHz ticks since the machine started, plus an offset the guest can
//!   change by writing `mtime`. Reading it is lock-free (one monotonic clock
//!   read and one atomic load), so the CPU may read it for every `rdtime`.
//! - [`CompareTimer`]: an interrupt line that is high exactly while
//!   `clock >= compare` (CLINT `mtimecmp`, Sstc `stimecmp`).
//!
//! Invariants and pitfalls:
//! - Callbacks run on the service thread with no service lock held, so they
//!   may arm or cancel timers (their own included). They must not block for
//!   long: every other timer waits behind them.
//! - A callback that was already due when [`Timer::cancel`] (or a re-arm)
//!   ran may still run once afterwards. Callbacks therefore re-check their
//!   condition under their device's own lock instead of trusting the firing.
//! - Lock order: device lock -> service lock. The service thread never holds
//!   its lock while calling into a device.
//! - Callbacks should capture `Weak` references to their device: a device
//!   owns its `Timer`s, and the service owns the callbacks until the `Timer`
//!   is dropped, so a strong reference would form a cycle.
//! - Dropping the [`TimerService`] stops and joins the thread; timers armed
//!   afterwards never fire.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kite_core::IrqLine;

/// Frequency of [`Clock`] ticks: 10 MHz, QEMU `virt`'s timebase.
pub const TIMEBASE_HZ: u64 = 10_000_000;
/// Nanoseconds per tick.
const NS_PER_TICK: u64 = 1_000_000_000 / TIMEBASE_HZ;

/// Errors starting the timer service.
#[derive(Debug, thiserror::Error)]
pub enum TimerError {
    #[error("cannot start the timer thread: {0}")]
    Spawn(#[from] std::io::Error),
}

/// What a timer runs when its deadline passes.
type Callback = Arc<dyn Fn() + Send + Sync>;

struct Slot {
    deadline: Option<Instant>,
    callback: Callback,
}

#[derive(Default)]
struct State {
    /// Armed timers ordered by deadline; the id breaks ties (and makes
    /// entries unique).
    queue: BTreeSet<(Instant, u64)>,
    slots: BTreeMap<u64, Slot>,
    next_id: u64,
    shutdown: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Signalled when the earliest deadline moves earlier or on shutdown.
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking callback cannot poison this lock (callbacks run
        // unlocked), but recover anyway rather than propagate.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.lock();
        f.debug_struct("TimerShared")
            .field("timers", &st.slots.len())
            .field("armed", &st.queue.len())
            .field("shutdown", &st.shutdown)
            .finish()
    }
}

/// The host timer thread. Owned by the machine; dropping it stops the
/// thread.
#[derive(Debug)]
pub struct TimerService {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl TimerService {
    /// Start the timer thread.
    pub fn new() -> Result<TimerService, TimerError> {
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let thread = std::thread::Builder::new().name("kite-timer".into()).spawn(move || run(&s))?;
        Ok(TimerService { shared, thread: Some(thread) })
    }

    /// A new, unarmed timer that runs `callback` on the service thread each
    /// time its deadline passes.
    pub fn timer(&self, callback: impl Fn() + Send + Sync + 'static) -> Timer {
        let mut st = self.shared.lock();
        let id = st.next_id;
        st.next_id += 1;
        st.slots.insert(id, Slot { deadline: None, callback: Arc::new(callback) });
        Timer { shared: self.shared.clone(), id }
    }

    /// A timer armed for `deadline`.
    pub fn schedule(&self, deadline: Instant, callback: impl Fn() + Send + Sync + 'static) -> Timer {
        let t = self.timer(callback);
        t.arm(deadline);
        t
    }
}

impl Drop for TimerService {
    fn drop(&mut self) {
        self.shared.lock().shutdown = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.thread.take() {
            // A panicked callback already ended the thread; nothing to add.
            let _ = t.join();
        }
    }
}

/// The service thread: sleep until the earliest deadline, fire, repeat.
fn run(shared: &Shared) {
    let mut st = shared.lock();
    loop {
        if st.shutdown {
            return;
        }
        let now = Instant::now();
        let Some(&(deadline, id)) = st.queue.first() else {
            st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        if deadline > now {
            st = shared.wake.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
            continue;
        }
        st.queue.remove(&(deadline, id));
        let callback = st.slots.get_mut(&id).map(|slot| {
            slot.deadline = None;
            slot.callback.clone()
        });
        drop(st);
        if let Some(cb) = callback {
            cb();
        }
        st = shared.lock();
    }
}

/// A handle on one timer of a [`TimerService`]. Dropping it cancels the
/// timer and frees its callback.
pub struct Timer {
    shared: Arc<Shared>,
    id: u64,
}

impl fmt::Debug for Timer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Timer").field("id", &self.id).field("deadline", &self.deadline()).finish()
    }
}

impl Timer {
    /// Fire at `deadline` (replacing any earlier arming). A deadline in the
    /// past fires as soon as the service thread gets to it.
    pub fn arm(&self, deadline: Instant) {
        let mut st = self.shared.lock();
        if st.shutdown {
            return;
        }
        let id = self.id;
        let Some(slot) = st.slots.get_mut(&id) else { return };
        let old = slot.deadline.replace(deadline);
        if let Some(old) = old {
            st.queue.remove(&(old, id));
        }
        st.queue.insert((deadline, id));
        // Only a new earliest deadline changes how long the thread sleeps.
        if st.queue.first() == Some(&(deadline, id)) {
            self.shared.wake.notify_one();
        }
    }

    /// Disarm (no effect if not armed).
    pub fn cancel(&self) {
        let mut st = self.shared.lock();
        let id = self.id;
        if let Some(old) = st.slots.get_mut(&id).and_then(|s| s.deadline.take()) {
            st.queue.remove(&(old, id));
        }
    }

    /// The armed deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.shared.lock().slots.get(&self.id).and_then(|s| s.deadline)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        let id = self.id;
        if let Some(old) = st.slots.remove(&id).and_then(|s| s.deadline) {
            st.queue.remove(&(old, id));
        }
    }
}

/// When a tick count will be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Already reached.
    Now,
    /// Reached at this instant.
    At(Instant),
    /// Too far away to represent (e.g. a compare value of `u64::MAX`).
    Never,
}

/// A reader of the platform time base for a CPU (`time` CSR, Sstc):
/// returns the current tick count.
pub type TimeSource = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The platform time base: [`TIMEBASE_HZ`] ticks since creation, plus a
/// guest-set offset (wrapping arithmetic, as the 64-bit `mtime` counter).
pub struct Clock {
    start: Instant,
    offset: AtomicU64,
    /// Compare timers to re-evaluate when the guest moves the time.
    watchers: Mutex<Vec<Weak<CompareInner>>>,
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Clock").field("ticks", &self.ticks()).finish()
    }
}

impl Clock {
    /// A clock reading 0 now.
    pub fn new() -> Arc<Clock> {
        Arc::new(Clock { start: Instant::now(), offset: AtomicU64::new(0), watchers: Mutex::new(Vec::new()) })
    }

    /// Ticks since `start`, without the offset.
    fn raw_ticks_at(&self, t: Instant) -> u64 {
        // u64 nanoseconds last 584 years; saturate rather than truncate.
        let ns = u64::try_from(t.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        ns / NS_PER_TICK
    }

    /// The tick count at instant `t`.
    pub fn ticks_at(&self, t: Instant) -> u64 {
        self.raw_ticks_at(t).wrapping_add(self.offset.load(Ordering::Acquire))
    }

    /// The current tick count (`mtime`).
    pub fn ticks(&self) -> u64 {
        self.ticks_at(Instant::now())
    }

    /// Set the current tick count (a guest write to `mtime`) and re-evaluate
    /// every compare timer on this clock.
    pub fn set_ticks(&self, value: u64) {
        let raw = self.raw_ticks_at(Instant::now());
        self.offset.store(value.wrapping_sub(raw), Ordering::Release);
        let watchers: Vec<Arc<CompareInner>> = {
            let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
            w.retain(|x| x.strong_count() > 0);
            w.iter().filter_map(Weak::upgrade).collect()
        };
        for c in watchers {
            c.refresh();
        }
    }

    /// When the tick count reaches `target` (if the offset stays put).
    pub fn deadline_for(&self, target: u64) -> Deadline {
        let now = Instant::now();
        let raw = self.raw_ticks_at(now);
        let current = raw.wrapping_add(self.offset.load(Ordering::Acquire));
        if current >= target {
            return Deadline::Now;
        }
        // The first instant whose raw tick is `raw + delta`: its exact start,
        // so the deadline is never early.
        raw.checked_add(target - current)
            .and_then(|t| t.checked_mul(NS_PER_TICK))
            .and_then(|ns| self.start.checked_add(Duration::from_nanos(ns)))
            .map_or(Deadline::Never, Deadline::At)
    }

    /// A [`TimeSource`] for a CPU.
    pub fn time_source(self: &Arc<Self>) -> TimeSource {
        let c = self.clone();
        Arc::new(move || c.ticks())
    }

    fn watch(&self, c: Weak<CompareInner>) {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|x| x.strong_count() > 0);
        w.push(c);
    }
}

struct CompareState {
    compare: u64,
    /// Level last driven onto the line.
    level: bool,
}

struct CompareInner {
    clock: Arc<Clock>,
    line: Arc<dyn IrqLine>,
    state: Mutex<CompareState>,
    timer: Timer,
}

impl CompareInner {
    fn lock(&self) -> MutexGuard<'_, CompareState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh(&self) {
        let mut st = self.lock();
        self.update(&mut st);
    }

    /// Drive the line from `clock >= compare` and arm the timer for the
    /// rising edge. Called with the state lock held so level changes reach
    /// the line in order.
    fn update(&self, st: &mut CompareState) {
        let level = match self.clock.deadline_for(st.compare) {
            Deadline::Now => {
                self.timer.cancel();
                true
            }
            Deadline::At(t) => {
                self.timer.arm(t);
                false
            }
            Deadline::Never => {
                self.timer.cancel();
                false
            }
        };
        if level != st.level {
            st.level = level;
            self.line.set_level(level);
        }
    }
}

/// An interrupt line that is high exactly while `clock >= compare`.
///
/// Writing a compare value in the past raises the line at once; one in the
/// future lowers it and arms a host timer for the moment it is reached.
/// Guest writes to the clock (`Clock::set_ticks`) re-evaluate it.
pub struct CompareTimer {
    inner: Arc<CompareInner>,
}

impl fmt::Debug for CompareTimer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.lock();
        f.debug_struct("CompareTimer").field("compare", &st.compare).field("level", &st.level).finish()
    }
}

impl CompareTimer {
    /// A compare timer driving `line`, starting at `compare` (use
    /// `u64::MAX` for "never"). The line is set to its initial level here.
    pub fn new(clock: &Arc<Clock>, timers: &TimerService, line: Arc<dyn IrqLine>, compare: u64) -> CompareTimer {
        let inner = Arc::new_cyclic(|weak: &Weak<CompareInner>| {
            let weak = weak.clone();
            let timer = timers.timer(move || {
                if let Some(inner) = weak.upgrade() {
                    inner.refresh();
                }
            });
            CompareInner {
                clock: clock.clone(),
                line,
                state: Mutex::new(CompareState { compare, level: false }),
                timer,
            }
        });
        clock.watch(Arc::downgrade(&inner));
        {
            // Drive the line once whatever its previous state.
            let mut st = inner.lock();
            inner.update(&mut st);
            inner.line.set_level(st.level);
        }
        CompareTimer { inner }
    }

    /// The compare value.
    pub fn compare(&self) -> u64 {
        self.inner.lock().compare
    }

    /// Set the compare value and update the line.
    pub fn set_compare(&self, value: u64) {
        let mut st = self.inner.lock();
        st.compare = value;
        self.inner.update(&mut st);
    }

    /// The level currently driven onto the line.
    pub fn level(&self) -> bool {
        self.inner.lock().level
    }
}

/// Test helpers shared by the device tests of this crate.
#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Condvar, Mutex};
    use std::time::{Duration, Instant};

    use kite_core::IrqLine;

    /// An interrupt line that records its level and counts rising edges;
    /// tests can wait for it to go high.
    #[derive(Debug, Default)]
    pub struct TestLine {
        level: AtomicBool,
        pub rises: AtomicU32,
        lock: Mutex<()>,
        cv: Condvar,
    }

    impl TestLine {
        pub fn level(&self) -> bool {
            self.level.load(Ordering::SeqCst)
        }

        /// Wait up to `timeout` for the line to be `level`; true if it was.
        pub fn wait_for(&self, level: bool, timeout: Duration) -> bool {
            let end = Instant::now() + timeout;
            let mut g = self.lock.lock().unwrap();
            while self.level() != level {
                let now = Instant::now();
                if now >= end {
                    return false;
                }
                g = self.cv.wait_timeout(g, end - now).unwrap().0;
            }
            true
        }
    }

    impl IrqLine for TestLine {
        fn set_level(&self, level: bool) {
            let _g = self.lock.lock().unwrap();
            if level && !self.level.swap(true, Ordering::SeqCst) {
                self.rises.fetch_add(1, Ordering::SeqCst);
            }
            self.level.store(level, Ordering::SeqCst);
            self.cv.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::TestLine;
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::mpsc;

    #[test]
    fn fires_in_deadline_order() {
        let svc = TimerService::new().unwrap();
        let (tx, rx) = mpsc::channel();
        let now = Instant::now();
        let mut timers = Vec::new();
        for (i, ms) in [(0u32, 20u64), (1, 5), (2, 10)] {
            let tx = Mutex::new(tx.clone());
            timers.push(svc.schedule(now + Duration::from_millis(ms), move || {
                let _ = tx.lock().unwrap().send((i, Instant::now()));
            }));
        }
        let got: Vec<(u32, Instant)> = (0..3).map(|_| rx.recv_timeout(Duration::from_secs(2)).unwrap()).collect();
        assert_eq!(got.iter().map(|g| g.0).collect::<Vec<_>>(), vec![1, 2, 0]);
        for (i, at) in got {
            let due = now + Duration::from_millis([20, 5, 10][i as usize]);
            assert!(at >= due, "timer {i} fired early");
        }
        assert!(timers.iter().all(|t| t.deadline().is_none()), "fired timers are disarmed");
    }

    #[test]
    fn cancel_rearm_and_drop() {
        let svc = TimerService::new().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let h = hits.clone();
        let t = svc.schedule(Instant::now() + Duration::from_millis(5), move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        t.cancel();
        assert_eq!(t.deadline(), None);
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(hits.load(Ordering::SeqCst), 0, "cancelled timer fired");

        // Re-arming replaces the deadline: a far one, then a near one.
        t.arm(Instant::now() + Duration::from_secs(3600));
        t.arm(Instant::now() + Duration::from_millis(2));
        let end = Instant::now() + Duration::from_secs(2);
        while hits.load(Ordering::SeqCst) == 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(10));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "fires once, at the new deadline");

        let h = hits.clone();
        let t2 = svc.schedule(Instant::now() + Duration::from_millis(5), move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        drop(t2);
        std::thread::sleep(Duration::from_millis(15));
        assert_eq!(hits.load(Ordering::SeqCst), 1, "dropped timer fired");
    }

    #[test]
    fn callback_can_rearm_itself() {
        let svc = TimerService::new().unwrap();
        let hits = Arc::new(AtomicU32::new(0));
        let slot: Arc<Mutex<Option<Timer>>> = Arc::new(Mutex::new(None));
        let (h, s) = (hits.clone(), Arc::downgrade(&slot));
        let t = svc.timer(move || {
            if h.fetch_add(1, Ordering::SeqCst) < 2 {
                if let Some(s) = s.upgrade() {
                    if let Some(t) = s.lock().unwrap().as_ref() {
                        t.arm(Instant::now() + Duration::from_millis(1));
                    }
                }
            }
        });
        t.arm(Instant::now());
        *slot.lock().unwrap() = Some(t);
        let end = Instant::now() + Duration::from_secs(2);
        while hits.load(Ordering::SeqCst) < 3 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn drop_stops_thread_and_later_arms_are_ignored() {
        let svc = TimerService::new().unwrap();
        let t = svc.timer(|| {});
        drop(svc); // joins the thread; must not hang
        t.arm(Instant::now());
        assert_eq!(t.deadline(), None);
    }

    #[test]
    fn clock_ticks_at_10mhz_and_can_be_set() {
        let c = Clock::new();
        let t0 = c.start;
        assert_eq!(c.ticks_at(t0), 0);
        assert_eq!(c.ticks_at(t0 + Duration::from_micros(1)), 10);
        assert_eq!(c.ticks_at(t0 + Duration::from_nanos(199)), 1);
        c.set_ticks(1_000_000_000);
        let now = c.ticks();
        assert!((1_000_000_000..1_000_000_000 + TIMEBASE_HZ).contains(&now), "{now}");
        let src = c.time_source();
        assert!(src() >= now);
        // Setting the counter backwards works too (wrapping offset).
        c.set_ticks(5);
        assert!(c.ticks() < 5 + TIMEBASE_HZ);
    }

    #[test]
    fn clock_deadlines() {
        let c = Clock::new();
        assert_eq!(c.deadline_for(0), Deadline::Now);
        assert_eq!(c.deadline_for(u64::MAX), Deadline::Never);
        let target = c.ticks() + 1000; // 100 us ahead
        let Deadline::At(t) = c.deadline_for(target) else { panic!("expected a deadline") };
        assert!(c.ticks_at(t) >= target, "deadline is never early");
        assert!(c.ticks_at(t - Duration::from_nanos(1)) < target, "and is exactly the first such instant");
    }

    #[test]
    fn compare_timer_raises_on_time_and_lowers_on_future_compare() {
        let svc = TimerService::new().unwrap();
        let clock = Clock::new();
        let line = Arc::new(TestLine::default());
        let ct = CompareTimer::new(&clock, &svc, line.clone(), u64::MAX);
        assert!(!line.level() && !ct.level());

        // 10 ms in the future: low now, high once reached.
        let target = clock.ticks() + TIMEBASE_HZ / 100;
        ct.set_compare(target);
        assert!(!line.level());
        assert!(line.wait_for(true, Duration::from_secs(2)), "timer never fired");
        assert!(clock.ticks() >= target, "raised early");

        // Moving the compare into the future lowers it.
        ct.set_compare(clock.ticks() + TIMEBASE_HZ * 3600);
        assert!(!line.level());
        // Moving it into the past raises it immediately.
        ct.set_compare(0);
        assert!(line.level());
        assert_eq!(ct.compare(), 0);
    }

    #[test]
    fn compare_timer_follows_clock_writes() {
        let svc = TimerService::new().unwrap();
        let clock = Clock::new();
        let line = Arc::new(TestLine::default());
        let ct = CompareTimer::new(&clock, &svc, line.clone(), 1_000_000_000);
        assert!(!line.level());
        clock.set_ticks(1_000_000_000);
        assert!(line.level(), "jumping the clock past compare raises the line");
        clock.set_ticks(0);
        assert!(!line.level(), "and jumping back lowers it");
        drop(ct);
        clock.set_ticks(2_000_000_000); // dropped watchers are skipped
    }

    #[test]
    fn compare_timer_initial_level() {
        let svc = TimerService::new().unwrap();
        let clock = Clock::new();
        let line = Arc::new(TestLine::default());
        let _ct = CompareTimer::new(&clock, &svc, line.clone(), 0);
        assert!(line.level(), "compare 0 is already reached");
    }
}
