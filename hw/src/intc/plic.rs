//! SiFive PLIC as QEMU `virt` configures it: 0xc00_0000, 0x60_0000 bytes,
//! 96 sources (1..=95; source 0 means "none"), priorities 0..=7 (3 bits,
//! `VIRT_IRQCHIP_NUM_PRIO_BITS`), two contexts per hart: hart N M-mode is
//! context 2N, S-mode is context 2N+1.
//!
//! | offset                    | register                          |
//! |---------------------------|-----------------------------------|
//! | 0x000000 + 4 * src        | priority (WARL: masked to 0..=7)  |
//! | 0x001000 + 4 * word       | pending bits (read-only)          |
//! | 0x002000 + 0x80 * ctx     | enable bits, 3 words              |
//! | 0x200000 + 0x1000 * ctx   | priority threshold (0..=7)        |
//! | 0x200004 + 0x1000 * ctx   | claim (read) / complete (write)   |
//!
//! Semantics follow QEMU's `sifive_plic.c` for level-triggered sources:
//! - an input's pending bit follows its level;
//! - a context's output is high while some source is pending, enabled for
//!   it, not claimed and of priority > the context's threshold (so
//!   priority 0 never interrupts);
//! - claim returns the highest-priority such source (ties: lowest id),
//!   clears its pending bit and marks it claimed (0 if none);
//! - complete un-claims a source enabled for that context (others are
//!   ignored, per the spec) and re-pends it if its input is still high.
//!
//! Every change recomputes all context outputs (a few words per context)
//! and drives only the lines whose level changed. All accesses are 32-bit;
//! anything else, and reserved offsets, are guest errors.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use kite_core::{guest_error, IrqLine, MmioDevice};

use super::IntcError;

/// Size of the PLIC region on `virt`.
pub const PLIC_SIZE: u64 = 0x60_0000;
/// Number of sources including the reserved source 0 (QEMU
/// `VIRT_IRQCHIP_NUM_SOURCES`); the device tree's `riscv,ndev` is one less.
pub const PLIC_NUM_SOURCES: u32 = 96;
/// Highest priority (and threshold) value.
pub const PLIC_MAX_PRIORITY: u32 = 7;

pub const PRIORITY_BASE: u64 = 0x0;
pub const PENDING_BASE: u64 = 0x1000;
pub const ENABLE_BASE: u64 = 0x2000;
pub const ENABLE_STRIDE: u64 = 0x80;
pub const CONTEXT_BASE: u64 = 0x20_0000;
pub const CONTEXT_STRIDE: u64 = 0x1000;
/// Most contexts the layout has room for.
pub const PLIC_MAX_CONTEXTS: usize = ((PLIC_SIZE - CONTEXT_BASE) / CONTEXT_STRIDE) as usize;

/// 32-bit words of a source bitmap.
const WORDS: usize = PLIC_NUM_SOURCES.div_ceil(32) as usize;

type Bits = [u32; WORDS];

fn bit(bits: &Bits, src: u32) -> bool {
    bits[(src / 32) as usize] & (1 << (src % 32)) != 0
}

fn set_bit(bits: &mut Bits, src: u32, on: bool) {
    let (w, m) = ((src / 32) as usize, 1u32 << (src % 32));
    if on {
        bits[w] |= m;
    } else {
        bits[w] &= !m;
    }
}

#[derive(Debug, Default, Clone)]
struct Context {
    enable: Bits,
    threshold: u32,
    /// Level last driven onto the output line.
    out: bool,
}

#[derive(Debug)]
struct State {
    priority: [u32; PLIC_NUM_SOURCES as usize],
    level: Bits,
    pending: Bits,
    claimed: Bits,
    contexts: Vec<Context>,
}

impl State {
    /// The source context `ctx` would claim now (0 if none).
    fn best(&self, ctx: &Context) -> u32 {
        let mut best = 0;
        let mut best_prio = ctx.threshold;
        for w in 0..WORDS {
            let mut cand = self.pending[w] & !self.claimed[w] & ctx.enable[w];
            while cand != 0 {
                let src = w as u32 * 32 + cand.trailing_zeros();
                cand &= cand - 1;
                // Strictly greater: ties go to the lowest id, seen first.
                if src != 0 && src < PLIC_NUM_SOURCES && self.priority[src as usize] > best_prio {
                    best = src;
                    best_prio = self.priority[src as usize];
                }
            }
        }
        best
    }
}

struct Shared {
    state: Mutex<State>,
    outputs: Vec<Arc<dyn IrqLine>>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plic").field("state", &self.state).finish()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Recompute every context output; drive the ones that changed. Called
    /// with the lock held so line updates keep their order.
    fn update(&self, st: &mut State) {
        for i in 0..st.contexts.len() {
            let level = st.best(&st.contexts[i]) != 0;
            if st.contexts[i].out != level {
                st.contexts[i].out = level;
                if let Some(line) = self.outputs.get(i) {
                    line.set_level(level);
                }
            }
        }
    }

    fn set_input(&self, src: u32, level: bool) {
        let mut st = self.lock();
        set_bit(&mut st.level, src, level);
        set_bit(&mut st.pending, src, level);
        self.update(&mut st);
    }
}

/// The PLIC device. Cheap to share: inputs ([`Plic::source_line`]) and the
/// MMIO view refer to the same state.
#[derive(Debug)]
pub struct Plic {
    shared: Arc<Shared>,
}

/// One PLIC input, as handed to a device.
#[derive(Debug)]
struct PlicSource {
    shared: Arc<Shared>,
    src: u32,
}

impl IrqLine for PlicSource {
    fn set_level(&self, level: bool) {
        self.shared.set_input(self.src, level);
    }
}

/// What an access decodes to.
enum Reg {
    Priority(u32),
    Pending(usize),
    Enable(usize, usize),
    Threshold(usize),
    Claim(usize),
}

impl Plic {
    /// A PLIC whose context `i` drives `contexts[i]`. For `virt`, pass
    /// `[hart0 MEIP, hart0 SEIP, hart1 MEIP, hart1 SEIP, ...]`. All outputs
    /// start low.
    pub fn new(contexts: Vec<Arc<dyn IrqLine>>) -> Result<Plic, IntcError> {
        if contexts.is_empty() || contexts.len() > PLIC_MAX_CONTEXTS {
            return Err(IntcError::BadCount { dev: "PLIC", count: contexts.len(), max: PLIC_MAX_CONTEXTS });
        }
        for line in &contexts {
            line.set_level(false);
        }
        let state = State {
            priority: [0; PLIC_NUM_SOURCES as usize],
            level: [0; WORDS],
            pending: [0; WORDS],
            claimed: [0; WORDS],
            contexts: vec![Context::default(); contexts.len()],
        };
        Ok(Plic { shared: Arc::new(Shared { state: Mutex::new(state), outputs: contexts }) })
    }

    /// The input line of source `src` (1..=95), for a device to drive.
    pub fn source_line(&self, src: u32) -> Result<Arc<dyn IrqLine>, IntcError> {
        if src == 0 || src >= PLIC_NUM_SOURCES {
            return Err(IntcError::BadSource(src));
        }
        Ok(Arc::new(PlicSource { shared: self.shared.clone(), src }))
    }

    pub fn num_contexts(&self) -> usize {
        self.shared.outputs.len()
    }

    fn decode(&self, offset: u64, size: u32, what: &str) -> Option<Reg> {
        let n = self.num_contexts() as u64;
        let reg = if size != 4 || offset % 4 != 0 {
            None
        } else if offset < PENDING_BASE {
            let src = (offset - PRIORITY_BASE) / 4;
            (src < PLIC_NUM_SOURCES as u64).then_some(Reg::Priority(src as u32))
        } else if offset < ENABLE_BASE {
            let word = (offset - PENDING_BASE) / 4;
            (word < WORDS as u64).then_some(Reg::Pending(word as usize))
        } else if offset < CONTEXT_BASE {
            let (ctx, word) = ((offset - ENABLE_BASE) / ENABLE_STRIDE, (offset - ENABLE_BASE) % ENABLE_STRIDE / 4);
            (ctx < n && word < WORDS as u64).then_some(Reg::Enable(ctx as usize, word as usize))
        } else if offset < PLIC_SIZE {
            let (ctx, reg) = ((offset - CONTEXT_BASE) / CONTEXT_STRIDE, (offset - CONTEXT_BASE) % CONTEXT_STRIDE);
            match (ctx < n, reg) {
                (true, 0) => Some(Reg::Threshold(ctx as usize)),
                (true, 4) => Some(Reg::Claim(ctx as usize)),
                _ => None,
            }
        } else {
            None
        };
        if reg.is_none() {
            guest_error!("PLIC: bad {size}-byte {what} at offset {offset:#x}");
        }
        reg
    }
}

impl MmioDevice for Plic {
    fn read(&self, offset: u64, size: u32) -> u64 {
        let Some(reg) = self.decode(offset, size, "read") else { return 0 };
        let mut st = self.shared.lock();
        let v = match reg {
            Reg::Priority(src) => st.priority[src as usize],
            Reg::Pending(w) => st.pending[w],
            Reg::Enable(ctx, w) => st.contexts[ctx].enable[w],
            Reg::Threshold(ctx) => st.contexts[ctx].threshold,
            Reg::Claim(ctx) => {
                let src = st.best(&st.contexts[ctx]);
                if src != 0 {
                    set_bit(&mut st.pending, src, false);
                    set_bit(&mut st.claimed, src, true);
                    self.shared.update(&mut st);
                }
                src
            }
        };
        v as u64
    }

    fn write(&self, offset: u64, size: u32, value: u64) {
        let Some(reg) = self.decode(offset, size, "write") else { return };
        let value = value as u32;
        let mut st = self.shared.lock();
        match reg {
            // Source 0 does not exist: its priority stays 0.
            Reg::Priority(0) => {}
            Reg::Priority(src) => st.priority[src as usize] = value & PLIC_MAX_PRIORITY,
            Reg::Pending(_) => {
                guest_error!("PLIC: write of {value:#x} to read-only pending bits at {offset:#x}");
                return;
            }
            // Bit 0 of word 0 is source 0: hardwired to 0.
            Reg::Enable(ctx, w) => st.contexts[ctx].enable[w] = if w == 0 { value & !1 } else { value },
            Reg::Threshold(ctx) => st.contexts[ctx].threshold = value & PLIC_MAX_PRIORITY,
            Reg::Claim(ctx) => {
                let src = value;
                if src == 0 || src >= PLIC_NUM_SOURCES || !bit(&st.contexts[ctx].enable, src) {
                    guest_error!("PLIC: context {ctx} completes source {src} it has not enabled; ignored");
                    return;
                }
                set_bit(&mut st.claimed, src, false);
                if bit(&st.level, src) {
                    set_bit(&mut st.pending, src, true);
                }
            }
        }
        self.shared.update(&mut st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::test_support::TestLine;

    fn threshold(ctx: u64) -> u64 {
        CONTEXT_BASE + CONTEXT_STRIDE * ctx
    }
    fn claim(ctx: u64) -> u64 {
        threshold(ctx) + 4
    }
    fn enable(ctx: u64, word: u64) -> u64 {
        ENABLE_BASE + ENABLE_STRIDE * ctx + 4 * word
    }

    /// A PLIC for `harts` harts and its context lines.
    fn plic(harts: usize) -> (Plic, Vec<Arc<TestLine>>) {
        let lines: Vec<Arc<TestLine>> = (0..2 * harts).map(|_| Arc::new(TestLine::default())).collect();
        let p = Plic::new(lines.iter().map(|l| l.clone() as Arc<dyn IrqLine>).collect()).unwrap();
        (p, lines)
    }

    fn levels(lines: &[Arc<TestLine>]) -> Vec<bool> {
        lines.iter().map(|l| l.level()).collect()
    }

    #[test]
    fn uart_like_source_claim_complete_cycle() {
        let (p, lines) = plic(1);
        let uart = p.source_line(10).unwrap();
        p.write(10 * 4, 4, 1);
        p.write(enable(1, 0), 4, 1 << 10); // S-mode context
        assert_eq!(levels(&lines), [false, false]);

        uart.set_level(true);
        assert_eq!(p.read(PENDING_BASE, 4), 1 << 10);
        assert_eq!(levels(&lines), [false, true], "only the enabled context");

        assert_eq!(p.read(claim(1), 4), 10);
        assert_eq!(p.read(PENDING_BASE, 4), 0, "claim clears pending");
        assert!(!lines[1].level(), "claimed source no longer interrupts");
        assert_eq!(p.read(claim(1), 4), 0, "nothing else to claim");

        // Completing while the line is still high re-pends it.
        p.write(claim(1), 4, 10);
        assert!(lines[1].level());
        assert_eq!(p.read(claim(1), 4), 10);
        // The driver drains the UART, the line drops, then it completes.
        uart.set_level(false);
        p.write(claim(1), 4, 10);
        assert!(!lines[1].level());
        assert_eq!(p.read(PENDING_BASE, 4), 0);
        assert_eq!(lines[1].rises.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[test]
    fn highest_priority_first_ties_to_lowest_id() {
        let (p, _lines) = plic(1);
        for (src, prio) in [(3, 2), (5, 6), (7, 6), (40, 7)] {
            p.write(src * 4, 4, prio);
        }
        p.write(enable(0, 0), 4, (1 << 3) | (1 << 5) | (1 << 7));
        p.write(enable(0, 1), 4, 1 << (40 - 32));
        for src in [3, 5, 7, 40] {
            p.source_line(src).unwrap().set_level(true);
        }
        assert_eq!(p.read(PENDING_BASE + 4, 4), 1 << 8);
        let order: Vec<u64> = (0..5).map(|_| p.read(claim(0), 4)).collect();
        assert_eq!(order, [40, 5, 7, 3, 0]);
    }

    #[test]
    fn threshold_masks() {
        let (p, lines) = plic(1);
        let src = p.source_line(1).unwrap();
        p.write(4, 4, 3);
        p.write(enable(0, 0), 4, 1 << 1);
        p.write(threshold(0), 4, 3);
        src.set_level(true);
        assert!(!lines[0].level(), "priority must exceed the threshold");
        assert_eq!(p.read(claim(0), 4), 0, "and claim respects it");
        p.write(threshold(0), 4, 2);
        assert!(lines[0].level());
        p.write(threshold(0), 4, 0xff); // WARL: masked to 7
        assert_eq!(p.read(threshold(0), 4), 7);
        assert!(!lines[0].level());
        p.write(threshold(0), 4, 0);
        p.write(4, 4, 0);
        assert!(!lines[0].level(), "priority 0 never interrupts");
        p.write(4, 4, 0x1f);
        assert_eq!(p.read(4, 4), 7, "priority is masked to 3 bits");
        assert!(lines[0].level());
    }

    #[test]
    fn per_context_enables() {
        let (p, lines) = plic(2);
        let a = p.source_line(33).unwrap();
        let b = p.source_line(2).unwrap();
        p.write(33 * 4, 4, 1);
        p.write(2 * 4, 4, 1);
        p.write(enable(2, 1), 4, 1 << 1); // hart 1 M: source 33
        p.write(enable(1, 0), 4, 1 << 2); // hart 0 S: source 2
        assert_eq!(p.read(enable(2, 1), 4), 2);
        a.set_level(true);
        assert_eq!(levels(&lines), [false, false, true, false]);
        b.set_level(true);
        assert_eq!(levels(&lines), [false, true, true, false]);
        assert_eq!(p.read(claim(1), 4), 2, "hart 0 S sees only source 2");
        assert_eq!(p.read(claim(2), 4), 33);
        assert_eq!(levels(&lines), [false; 4]);
        // Completing from a context that has not enabled the source is ignored.
        p.write(claim(0), 4, 33);
        a.set_level(false);
        a.set_level(true);
        assert_eq!(levels(&lines), [false; 4], "33 is still claimed");
        p.write(claim(2), 4, 33);
        assert_eq!(levels(&lines), [false, false, true, false]);
        // A source enabled in two contexts raises both; one claim lowers both.
        p.write(enable(3, 1), 4, 1 << 1);
        assert_eq!(levels(&lines), [false, false, true, true]);
        assert_eq!(p.read(claim(3), 4), 33);
        assert_eq!(levels(&lines), [false; 4]);
    }

    #[test]
    fn lowering_an_input_clears_pending() {
        let (p, lines) = plic(1);
        let s = p.source_line(95).unwrap();
        p.write(95 * 4, 4, 1);
        p.write(enable(0, 2), 4, 1 << 31);
        s.set_level(true);
        assert!(lines[0].level());
        assert_eq!(p.read(PENDING_BASE + 8, 4), 1 << 31);
        s.set_level(false);
        assert!(!lines[0].level());
        assert_eq!(p.read(claim(0), 4), 0);
    }

    #[test]
    fn bad_offsets_and_sources() {
        let (p, lines) = plic(1);
        assert!(matches!(p.source_line(0), Err(IntcError::BadSource(0))));
        assert!(matches!(p.source_line(96), Err(IntcError::BadSource(96))));
        assert!(p.source_line(95).is_ok());
        p.write(0, 4, 7);
        assert_eq!(p.read(0, 4), 0, "source 0 has no priority");
        p.write(enable(0, 0), 4, u64::MAX);
        assert_eq!(p.read(enable(0, 0), 4), 0xffff_fffe, "source 0 cannot be enabled");
        p.write(claim(0), 4, 0);
        p.write(claim(0), 4, 500);
        for (off, size) in [
            (4u64, 8u32),
            (4, 2),
            (6, 4),
            (96 * 4, 4),
            (PENDING_BASE + 12, 4),
            (enable(0, 3), 4),
            (enable(2, 0), 4),
            (threshold(0) + 8, 4),
            (threshold(2), 4),
            (claim(2), 4),
            (PLIC_SIZE, 4),
            (u64::MAX - 3, 4),
        ] {
            assert_eq!(p.read(off, size), 0, "{off:#x}/{size}");
            p.write(off, size, 0xffff_ffff);
        }
        p.write(PENDING_BASE, 4, 0xffff_fffe);
        assert_eq!(p.read(PENDING_BASE, 4), 0, "pending is read-only");
        assert_eq!(p.read(4, 4), 0);
        assert_eq!(levels(&lines), [false, false]);
        assert!(matches!(Plic::new(vec![]), Err(IntcError::BadCount { .. })));
    }
}
