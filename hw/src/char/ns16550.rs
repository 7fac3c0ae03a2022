//! NS16550A UART, as QEMU's `virt` machine has it: `reg-shift = 0`, byte-wide
//! registers, a 0x100-byte region.
//!
//! Register map (offset, DLAB = LCR bit 7):
//!
//! | off | read            | write           |
//! |-----|-----------------|-----------------|
//! | 0   | RBR (DLL if DLAB) | THR (DLL if DLAB) |
//! | 1   | IER (DLM if DLAB) | IER (DLM if DLAB) |
//! | 2   | IIR             | FCR             |
//! | 3   | LCR             | LCR             |
//! | 4   | MCR             | MCR             |
//! | 5   | LSR             | (ignored)       |
//! | 6   | MSR             | (ignored)       |
//! | 7   | SCR             | SCR             |
//!
//! Transmission is instantaneous: a THR write leaves the UART at once and LSR
//! always reports THRE|TEMT. The host side is written per byte, or, once
//! [`Ns16550::buffer_output`] gave the UART a timer, per line: bytes collect
//! until a line end (or [`TX_BUFFER`] bytes) and a byte without one is written
//! at most [`TX_FLUSH_DELAY`] later, so prompts still show up. A Linux boot
//! prints ~9 KB through here; one `write` per byte was ~2% of it. The owner
//! calls [`Ns16550::flush_output`] when the machine stops.
//!
//! Reception: a host thread (the console) calls [`Ns16550::push_rx`]; bytes
//! wait in one bounded queue whose first 16 bytes (1 with FIFOs disabled) are
//! the UART's receive FIFO. `push_rx` returns `false` when the queue is full,
//! so the host side applies back-pressure instead of losing input; the vCPU
//! never waits on the host. An FCR "clear RX FIFO" drops only the FIFO part.
//! The receive interrupt is raised whenever data is available (as if the
//! character-timeout fired at once) rather than at the trigger level, which
//! keeps small inputs from stalling without a timer.
//!
//! THRE interrupt semantics follow QEMU: the interrupt is pending when the
//! transmitter becomes empty, or when ETBEI is switched on while THR is
//! empty; reading IIR while it reports THRE clears it.
//!
//! Register state sits behind one uncontended mutex: UART accesses are slow
//! path MMIO (one per guest character), never the translated fast path.
//! Misuse (unknown offsets, accesses wider than a byte) gets a rate-limited
//! `guest_error!` and reads as zero / is dropped.

use std::collections::VecDeque;
use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kite_core::{guest_error, IrqLine, MmioDevice};

use crate::timer::{Timer, TimerService};

/// Size of the register region on the `virt` machine.
pub const NS16550_MMIO_SIZE: u64 = 0x100;
/// Depth of the hardware FIFOs when enabled.
const FIFO_DEPTH: usize = 16;
/// Host bytes that may wait behind the FIFO before `push_rx` refuses more.
pub const RX_QUEUE_CAP: usize = 4096;
/// Buffered output bytes that are written without waiting for a line end.
pub const TX_BUFFER: usize = 4096;
/// The longest a transmitted byte waits in the buffer.
pub const TX_FLUSH_DELAY: Duration = Duration::from_millis(5);

const IER_ERBFI: u8 = 0x01; // receive data available
const IER_ETBEI: u8 = 0x02; // transmitter holding register empty
const IER_ELSI: u8 = 0x04; // receiver line status
const IER_EDSSI: u8 = 0x08; // modem status

const IIR_NO_INT: u8 = 0x01;
const IIR_MSI: u8 = 0x00;
const IIR_THRI: u8 = 0x02;
const IIR_RDI: u8 = 0x04;
const IIR_RLSI: u8 = 0x06;
const IIR_ID_MASK: u8 = 0x06;
const IIR_FIFO_BITS: u8 = 0xC0;

const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
const FCR_CLEAR_TX: u8 = 0x04;

const LCR_DLAB: u8 = 0x80;

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_BI: u8 = 0x10;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

const MSR_DELTA_MASK: u8 = 0x0F;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;

/// Set once a sink write failed, so the warning is printed once per process.
static OUTPUT_FAILURE_REPORTED: AtomicBool = AtomicBool::new(false);

/// Where transmitted bytes go.
pub type Sink = Box<dyn Write + Send>;

struct Regs {
    ier: u8,
    lcr: u8,
    mcr: u8,
    /// Error/break bits of LSR (OE, BI); DR/THRE/TEMT are derived.
    lsr_err: u8,
    msr: u8,
    scr: u8,
    fcr: u8,
    dll: u8,
    dlm: u8,
    thr_ipending: bool,
    /// Received bytes: the FIFO is the front 16 (FIFOs on) or 1 of this queue.
    rx: VecDeque<u8>,
    out: Sink,
    /// Set after the first write error so a closed stdout is reported once.
    out_failed: bool,
    /// Transmitted bytes not yet written to `out`.
    pending: Vec<u8>,
    /// Writes `pending` out [`TX_FLUSH_DELAY`] after a byte without a line end;
    /// `None`: every byte is written at once.
    flush_timer: Option<Timer>,
    flush_armed: bool,
}

impl Regs {
    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn lsr(&self) -> u8 {
        let dr = if self.rx.is_empty() { 0 } else { LSR_DR };
        dr | self.lsr_err | LSR_THRE | LSR_TEMT
    }

    /// The highest-priority pending interrupt's IIR id, or `IIR_NO_INT`.
    fn iir_id(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.lsr_err & (LSR_OE | LSR_BI) != 0 {
            IIR_RLSI
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            IIR_RDI
        } else if self.ier & IER_ETBEI != 0 && self.thr_ipending {
            IIR_THRI
        } else if self.ier & IER_EDSSI != 0 && self.msr & MSR_DELTA_MASK != 0 {
            IIR_MSI
        } else {
            IIR_NO_INT
        }
    }

    fn msr_value(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback: modem inputs mirror the modem control outputs.
            let mut v = 0;
            if self.mcr & MCR_DTR != 0 {
                v |= MSR_DSR;
            }
            if self.mcr & MCR_RTS != 0 {
                v |= MSR_CTS;
            }
            if self.mcr & MCR_OUT1 != 0 {
                v |= MSR_RI;
            }
            if self.mcr & MCR_OUT2 != 0 {
                v |= MSR_DCD;
            }
            v
        } else {
            self.msr
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOP != 0 {
            if self.rx.len() < RX_QUEUE_CAP {
                self.rx.push_back(byte);
            } else {
                self.lsr_err |= LSR_OE;
            }
        } else if !self.out_failed {
            self.pending.push(byte);
            match &self.flush_timer {
                Some(_) if byte == b'\n' || self.pending.len() >= TX_BUFFER => self.flush_out(),
                Some(t) => {
                    if !self.flush_armed {
                        t.arm(Instant::now() + TX_FLUSH_DELAY);
                        self.flush_armed = true;
                    }
                }
                None => self.flush_out(),
            }
        }
    }

    /// Write the buffered output to the sink.
    fn flush_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if !self.out_failed {
            let r = self.out.write_all(&self.pending).and_then(|_| self.out.flush());
            if let Err(e) = r {
                // The host side went away (closed pipe): keep the guest running,
                // and say so once per process (machines are rebuilt on reset).
                if !OUTPUT_FAILURE_REPORTED.swap(true, Ordering::Relaxed) {
                    log::warn!("serial output failed, dropping further output: {e}");
                }
                self.out_failed = true;
            }
        }
        self.pending.clear();
    }
}

impl Drop for Regs {
    fn drop(&mut self) {
        self.flush_out();
    }
}

/// An NS16550A UART.
pub struct Ns16550 {
    regs: Mutex<Regs>,
    irq: Arc<dyn IrqLine>,
}

impl fmt::Debug for Ns16550 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.lock();
        f.debug_struct("Ns16550")
            .field("ier", &r.ier)
            .field("lcr", &r.lcr)
            .field("fcr", &r.fcr)
            .field("rx_len", &r.rx.len())
            .finish_non_exhaustive()
    }
}

impl Ns16550 {
    /// A UART in its reset state writing to `out` and signalling `irq`.
    pub fn new(out: Sink, irq: Arc<dyn IrqLine>) -> Ns16550 {
        Ns16550 {
            regs: Mutex::new(Regs {
                ier: 0,
                lcr: 0,
                mcr: MCR_OUT2,
                lsr_err: 0,
                msr: MSR_DCD | MSR_DSR | MSR_CTS,
                scr: 0,
                fcr: 0,
                dll: 0x0c,
                dlm: 0,
                thr_ipending: false,
                rx: VecDeque::with_capacity(RX_QUEUE_CAP),
                out,
                out_failed: false,
                pending: Vec::new(),
                flush_timer: None,
                flush_armed: false,
            }),
            irq,
        }
    }

    /// A UART writing to the process's stdout.
    pub fn with_stdout(irq: Arc<dyn IrqLine>) -> Ns16550 {
        Ns16550::new(Box::new(std::io::stdout()), irq)
    }

    /// Write the host side per line (see the module note), with a timer of `timers`
    /// for output that does not end a line.
    pub fn buffer_output(self: &Arc<Self>, timers: &TimerService) {
        let me = Arc::downgrade(self);
        let timer = timers.timer(move || {
            if let Some(uart) = me.upgrade() {
                let mut r = uart.lock();
                r.flush_armed = false;
                r.flush_out();
            }
        });
        let mut r = self.lock();
        r.pending.reserve(TX_BUFFER);
        r.flush_timer = Some(timer);
    }

    /// Write out any buffered output now.
    pub fn flush_output(&self) {
        self.lock().flush_out();
    }

    fn lock(&self) -> MutexGuard<'_, Regs> {
        // A poisoned lock only means another thread panicked mid-access; the
        // register file is still plain data, so keep going.
        self.regs.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn update_irq(&self, r: &Regs) {
        self.irq.set_level(r.iir_id() != IIR_NO_INT);
    }

    /// Queue one received byte from the host. Returns `false` (and drops
    /// nothing) when the queue is full; the caller retries later.
    pub fn push_rx(&self, byte: u8) -> bool {
        let mut r = self.lock();
        if r.rx.len() >= RX_QUEUE_CAP {
            return false;
        }
        r.rx.push_back(byte);
        self.update_irq(&r);
        true
    }

    /// Bytes waiting to be read by the guest.
    pub fn rx_pending(&self) -> usize {
        self.lock().rx.len()
    }

    fn read_reg(&self, r: &mut Regs, offset: u64) -> u8 {
        match offset {
            0 if r.lcr & LCR_DLAB != 0 => r.dll,
            0 => {
                let v = r.rx.pop_front().unwrap_or(0);
                if r.rx.is_empty() {
                    r.lsr_err &= !LSR_BI;
                }
                v
            }
            1 if r.lcr & LCR_DLAB != 0 => r.dlm,
            1 => r.ier,
            2 => {
                let id = r.iir_id();
                if id & IIR_ID_MASK == IIR_THRI && id != IIR_NO_INT {
                    r.thr_ipending = false;
                }
                let fifo = if r.fifo_enabled() { IIR_FIFO_BITS } else { 0 };
                id | fifo
            }
            3 => r.lcr,
            4 => r.mcr,
            5 => {
                let v = r.lsr();
                // Error bits clear on read.
                r.lsr_err = 0;
                v
            }
            6 => {
                let v = r.msr_value();
                r.msr &= !MSR_DELTA_MASK;
                v
            }
            7 => r.scr,
            _ => {
                guest_error!("ns16550: read of unknown register {offset:#x}");
                0
            }
        }
    }

    fn write_reg(&self, r: &mut Regs, offset: u64, v: u8) {
        match offset {
            0 if r.lcr & LCR_DLAB != 0 => r.dll = v,
            0 => {
                r.thr_ipending = false;
                r.transmit(v);
                // The byte left at once: THR is empty again.
                r.thr_ipending = true;
            }
            1 if r.lcr & LCR_DLAB != 0 => r.dlm = v,
            1 => {
                let changed = r.ier ^ (v & 0x0f);
                r.ier = v & 0x0f;
                if changed & IER_ETBEI != 0 {
                    r.thr_ipending = r.ier & IER_ETBEI != 0 && r.lsr() & LSR_THRE != 0;
                }
            }
            2 => {
                let was_enabled = r.fifo_enabled();
                r.fcr = v & 0xC9;
                // Switching FIFO mode on or off resets both FIFOs.
                let clear_all = was_enabled != r.fifo_enabled();
                if v & FCR_CLEAR_RX != 0 || clear_all {
                    let n = r.rx.len().min(if was_enabled { FIFO_DEPTH } else { 1 });
                    r.rx.drain(..n);
                    r.lsr_err &= !(LSR_BI | LSR_OE);
                }
                if v & FCR_CLEAR_TX != 0 || clear_all {
                    r.thr_ipending = r.ier & IER_ETBEI != 0;
                }
            }
            3 => r.lcr = v,
            4 => r.mcr = v & 0x1f,
            5 | 6 => guest_error!("ns16550: write {v:#x} to read-only register {offset:#x}"),
            7 => r.scr = v,
            _ => guest_error!("ns16550: write {v:#x} to unknown register {offset:#x}"),
        }
    }
}

impl MmioDevice for Ns16550 {
    fn read(&self, offset: u64, size: u32) -> u64 {
        if size != 1 {
            guest_error!("ns16550: {size}-byte read at {offset:#x} (registers are bytes)");
            return 0;
        }
        let mut r = self.lock();
        let v = self.read_reg(&mut r, offset);
        self.update_irq(&r);
        v as u64
    }

    fn write(&self, offset: u64, size: u32, value: u64) {
        if size != 1 {
            guest_error!("ns16550: {size}-byte write of {value:#x} at {offset:#x} dropped (registers are bytes)");
            return;
        }
        let mut r = self.lock();
        self.write_reg(&mut r, offset, value as u8);
        self.update_irq(&r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A sink that keeps what the guest transmitted.
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An interrupt line that records its level and how often it rose.
    #[derive(Debug, Default)]
    struct RecIrq {
        level: AtomicBool,
        rises: AtomicUsize,
    }
    impl IrqLine for RecIrq {
        fn set_level(&self, level: bool) {
            if level && !self.level.swap(true, Ordering::SeqCst) {
                self.rises.fetch_add(1, Ordering::SeqCst);
            }
            if !level {
                self.level.store(false, Ordering::SeqCst);
            }
        }
    }

    fn uart() -> (Ns16550, Capture, Arc<RecIrq>) {
        let cap = Capture::default();
        let irq = Arc::new(RecIrq::default());
        (Ns16550::new(Box::new(cap.clone()), irq.clone()), cap, irq)
    }

    fn level(irq: &RecIrq) -> bool {
        irq.level.load(Ordering::SeqCst)
    }

    #[test]
    fn buffered_output_is_written_per_line_and_after_a_delay() {
        let timers = TimerService::new().unwrap();
        let (u, cap, _) = uart();
        let u = Arc::new(u);
        u.buffer_output(&timers);
        let out = || cap.0.lock().unwrap().clone();
        for &b in b"line\n" {
            u.write(0, 1, b as u64);
        }
        assert_eq!(out(), b"line\n", "a line end writes the line at once");
        // A prompt without a line end reaches the sink through the timer.
        for &b in b"# " {
            u.write(0, 1, b as u64);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while out() != b"line\n# " {
            assert!(Instant::now() < deadline, "the prompt never reached the sink: {:?}", out());
            std::thread::sleep(Duration::from_millis(1));
        }
        // flush_output writes what is pending without waiting for the timer.
        u.write(0, 1, b'x' as u64);
        u.flush_output();
        assert_eq!(out(), b"line\n# x");
        // So does dropping the UART (a machine that goes away mid-line).
        u.write(0, 1, b'y' as u64);
        drop(u);
        assert_eq!(out(), b"line\n# xy");
        // A full buffer is written without a line end.
        let (u, cap, _) = uart();
        let u = Arc::new(u);
        u.buffer_output(&timers);
        for _ in 0..TX_BUFFER {
            u.write(0, 1, b'z' as u64);
        }
        assert_eq!(cap.0.lock().unwrap().len(), TX_BUFFER);
    }

    #[test]
    fn transmit_goes_to_sink() {
        let (u, cap, irq) = uart();
        for b in b"hi\n" {
            u.write(0, 1, *b as u64);
        }
        assert_eq!(&*cap.0.lock().unwrap(), b"hi\n");
        assert_eq!(u.read(5, 1) as u8 & (LSR_THRE | LSR_TEMT), LSR_THRE | LSR_TEMT);
        assert!(!level(&irq), "no interrupt with IER = 0");
    }

    #[test]
    fn dlab_switches_divisor_latch() {
        let (u, cap, _) = uart();
        u.write(3, 1, 0x83); // DLAB, 8N1
        u.write(0, 1, 0x01);
        u.write(1, 1, 0x02);
        assert_eq!(u.read(0, 1), 0x01);
        assert_eq!(u.read(1, 1), 0x02);
        u.write(3, 1, 0x03);
        assert_eq!(u.read(1, 1), 0, "IER untouched by DLM write");
        assert!(cap.0.lock().unwrap().is_empty(), "DLL write must not transmit");
        assert_eq!(u.read(3, 1), 0x03);
    }

    #[test]
    fn receive_and_data_ready_interrupt() {
        let (u, _, irq) = uart();
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, 0);
        assert!(u.push_rx(b'a'));
        assert!(u.push_rx(b'b'));
        assert_eq!(u.read(5, 1) as u8 & LSR_DR, LSR_DR);
        assert!(!level(&irq));
        u.write(1, 1, IER_ERBFI as u64);
        assert!(level(&irq));
        assert_eq!(u.read(2, 1) as u8, IIR_RDI);
        assert_eq!(u.read(0, 1), b'a' as u64);
        assert!(level(&irq), "still one byte");
        assert_eq!(u.read(0, 1), b'b' as u64);
        assert!(!level(&irq));
        assert_eq!(u.read(2, 1) as u8, IIR_NO_INT);
        assert_eq!(u.read(0, 1), 0, "empty RBR reads 0");
    }

    #[test]
    fn thre_interrupt_like_qemu() {
        let (u, _, irq) = uart();
        u.write(1, 1, IER_ETBEI as u64);
        assert!(level(&irq), "enabling ETBEI with THR empty raises THRE");
        assert_eq!(u.read(2, 1) as u8, IIR_THRI);
        assert!(!level(&irq), "reading IIR clears THRE");
        assert_eq!(u.read(2, 1) as u8, IIR_NO_INT);
        u.write(0, 1, b'x' as u64);
        assert!(level(&irq), "THR empties again after transmit");
        u.write(1, 1, 0);
        assert!(!level(&irq));
        assert_eq!(irq.rises.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn rx_has_priority_over_thre() {
        let (u, _, _) = uart();
        u.write(1, 1, (IER_ETBEI | IER_ERBFI) as u64);
        u.push_rx(b'z');
        assert_eq!(u.read(2, 1) as u8, IIR_RDI);
        u.read(0, 1);
        assert_eq!(u.read(2, 1) as u8, IIR_THRI);
    }

    #[test]
    fn fifo_bits_and_clear() {
        let (u, _, _) = uart();
        assert_eq!(u.read(2, 1) as u8 & IIR_FIFO_BITS, 0);
        u.write(2, 1, FCR_ENABLE as u64);
        assert_eq!(u.read(2, 1) as u8 & IIR_FIFO_BITS, IIR_FIFO_BITS);
        assert!(u.lock().fifo_enabled());
        for i in 0..20u8 {
            assert!(u.push_rx(i));
        }
        // Clearing the RX FIFO drops its 16 bytes, not what waits behind it.
        u.write(2, 1, (FCR_ENABLE | FCR_CLEAR_RX) as u64);
        assert_eq!(u.rx_pending(), 4);
        assert_eq!(u.read(0, 1), 16);
    }

    #[test]
    fn rx_queue_is_bounded() {
        let (u, _, _) = uart();
        for _ in 0..RX_QUEUE_CAP {
            assert!(u.push_rx(b'.'));
        }
        assert!(!u.push_rx(b'!'));
        assert_eq!(u.rx_pending(), RX_QUEUE_CAP);
    }

    #[test]
    fn loopback() {
        let (u, cap, _) = uart();
        u.write(4, 1, (MCR_LOOP | MCR_DTR | MCR_OUT2) as u64);
        u.write(0, 1, b'q' as u64);
        assert!(cap.0.lock().unwrap().is_empty());
        assert_eq!(u.read(0, 1), b'q' as u64);
        assert_eq!(u.read(6, 1) as u8, MSR_DSR | MSR_DCD);
    }

    #[test]
    fn misuse_is_harmless() {
        let (u, cap, _) = uart();
        u.write(0, 4, 0x4141_4141);
        assert_eq!(u.read(0, 8), 0);
        assert_eq!(u.read(0x80, 1), 0);
        u.write(0xff, 1, 1);
        u.write(5, 1, 0);
        assert!(cap.0.lock().unwrap().is_empty());
        u.write(7, 1, 0x5a);
        assert_eq!(u.read(7, 1), 0x5a);
    }

    #[test]
    fn closed_sink_does_not_stop_the_guest() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let u = Ns16550::new(Box::new(Broken), Arc::new(kite_core::NoIrq));
        u.write(0, 1, b'a' as u64);
        u.write(0, 1, b'b' as u64);
        assert!(u.lock().out_failed);
    }
}
