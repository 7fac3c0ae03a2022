//! HTIF, the Berkeley host-target interface of Spike: the guest writes a
//! command to the 64-bit variable `tohost` and the host answers in
//! `fromhost` (both found by symbol in the ELF).
//!
//! Command word: `device << 56 | cmd << 48 | payload` (48 bits).
//! - device 0, cmd 0, payload odd: exit with status `payload >> 1` (0 = pass;
//!   riscv-tests report the failing test number this way);
//! - device 0, cmd 0, payload even: syscall proxy, payload = guest address of
//!   `magic_mem[8]` = {number, args...}: `write` (64) to fd 1/2 and `exit`
//!   (93) are served, the result goes to `magic_mem[0]`, `fromhost` gets 1;
//! - device 1, cmd 1: console putchar of the low byte, answered with
//!   `fromhost = 1 << 56 | 1 << 48 | 0x100 | ch` as Spike does.
//!
//! Design: the variables live in ordinary RAM (riscv-tests put them in their
//! own `.tohost` section, but that page is part of a loaded segment, so an
//! MMIO overlay would break loading). A poller thread watches `tohost`,
//! consumes a command by writing 0 back, and answers. Guests wait for
//! `tohost == 0` / `fromhost != 0`, so the protocol needs nothing faster.
//!
//! Pitfalls: an exit status is reduced to 8 bits by the OS; a non-zero code
//! whose low byte is 0 exits with 1 so a failure never reads as a pass.
//! Everything read from guest memory is bounded (syscall buffers are copied
//! in 256-byte chunks, lengths capped), and unknown commands are guest errors.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kite_core::{guest_error, ExitCode, PhysMemory, VmControl};
use kite_memory::PhysMap;

use crate::char::ns16550::Sink;

/// Syscall numbers (RISC-V Linux / riscv-pk).
pub const SYS_WRITE: u64 = 64;
pub const SYS_EXIT: u64 = 93;
/// Largest `write` served in one call (the guest sees a short write beyond).
const MAX_WRITE: u64 = 1 << 20;
/// How long the poller sleeps when `tohost` is idle.
const POLL: Duration = Duration::from_micros(100);

/// The exit status for an HTIF exit code.
pub fn exit_status(code: u64) -> i32 {
    match code {
        0 => 0,
        c if c & 0xff == 0 => 1,
        c => (c & 0xff) as i32,
    }
}

/// An HTIF endpoint over guest RAM.
pub struct Htif {
    mem: Arc<PhysMap>,
    vm: Arc<VmControl>,
    tohost: u64,
    fromhost: Option<u64>,
    out: Mutex<Sink>,
}

impl std::fmt::Debug for Htif {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htif").field("tohost", &self.tohost).field("fromhost", &self.fromhost).finish()
    }
}

impl Htif {
    /// `tohost`/`fromhost`: guest physical addresses (8-byte variables in RAM).
    pub fn new(mem: Arc<PhysMap>, vm: Arc<VmControl>, tohost: u64, fromhost: Option<u64>, out: Sink) -> Htif {
        Htif { mem, vm, tohost, fromhost, out: Mutex::new(out) }
    }

    fn read64(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.mem.read_ram(addr, &mut b).then(|| u64::from_le_bytes(b))
    }

    fn write64(&self, addr: u64, v: u64) -> bool {
        self.mem.write_ram(addr, &v.to_le_bytes())
    }

    fn emit(&self, bytes: &[u8]) {
        if let Ok(mut o) = self.out.lock() {
            let _ = o.write_all(bytes);
            let _ = o.flush();
        }
    }

    fn respond(&self, v: u64) {
        if let Some(fh) = self.fromhost {
            self.write64(fh, v);
        }
    }

    /// Handle a pending command, if any. Returns whether there was one.
    pub fn poll(&self) -> bool {
        let cmd = match self.read64(self.tohost) {
            Some(0) | None => return false,
            Some(v) => v,
        };
        self.write64(self.tohost, 0);
        let (dev, op, payload) = (cmd >> 56, (cmd >> 48) & 0xff, cmd & 0xffff_ffff_ffff);
        match (dev, op) {
            (0, 0) if payload & 1 == 1 => self.vm.request_exit(ExitCode::Exit(exit_status(payload >> 1))),
            (0, 0) => self.syscall(payload),
            (1, 1) => {
                self.emit(&[payload as u8]);
                self.respond(1 << 56 | 1 << 48 | 0x100 | (payload & 0xff));
            }
            _ => guest_error!("htif: unsupported command {cmd:#x} (device {dev}, cmd {op})"),
        }
        true
    }

    /// The syscall proxy: `magic` is the guest address of `magic_mem[8]`.
    fn syscall(&self, magic: u64) {
        let mut m = [0u64; 4];
        for (i, slot) in m.iter_mut().enumerate() {
            match self.read64(magic.wrapping_add(8 * i as u64)) {
                Some(v) => *slot = v,
                None => {
                    guest_error!("htif: syscall block at {magic:#x} is not in RAM");
                    return;
                }
            }
        }
        let ret = match m[0] {
            SYS_WRITE if m[1] == 1 || m[1] == 2 => self.sys_write(m[2], m[3]),
            SYS_WRITE => (-9i64) as u64, // EBADF
            SYS_EXIT => {
                self.vm.request_exit(ExitCode::Exit(exit_status(m[1])));
                0
            }
            n => {
                guest_error!("htif: unsupported syscall {n}");
                (-38i64) as u64 // ENOSYS
            }
        };
        self.write64(magic, ret);
        self.respond(1);
    }

    /// Copy `len` bytes at guest address `buf` to the console; returns the
    /// count written (or -EFAULT).
    fn sys_write(&self, buf: u64, len: u64) -> u64 {
        let len = len.min(MAX_WRITE);
        let mut chunk = [0u8; 256];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(chunk.len() as u64) as usize;
            if !self.mem.read_ram(buf.wrapping_add(done), &mut chunk[..n]) {
                return if done == 0 { (-14i64) as u64 } else { done };
            }
            self.emit(&chunk[..n]);
            done += n as u64;
        }
        done
    }

    /// Start the poller thread; it stops when the VM exits or the returned
    /// handle is dropped.
    pub fn spawn(self: Arc<Self>) -> std::io::Result<HtifPoller> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new().name("htif".into()).spawn(move || {
            while !s.load(Ordering::Relaxed) && self.vm.exit_requested().is_none() {
                if !self.poll() {
                    std::thread::sleep(POLL);
                }
            }
        })?;
        Ok(HtifPoller { stop, thread: Some(thread) })
    }
}

/// The running poller; dropping it stops and joins the thread.
#[derive(Debug)]
pub struct HtifPoller {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for HtifPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    const RAM: u64 = 0x8000_0000;
    const TOHOST: u64 = RAM + 0x1000;
    const FROMHOST: u64 = RAM + 0x1040;

    fn setup() -> (Htif, Arc<PhysMap>, Arc<VmControl>, Capture) {
        let mut map = PhysMap::new();
        map.add_ram("ram", RAM, 0x10000).unwrap();
        let mem = Arc::new(map);
        let vm = Arc::new(VmControl::new());
        let cap = Capture::default();
        let h = Htif::new(mem.clone(), vm.clone(), TOHOST, Some(FROMHOST), Box::new(cap.clone()));
        (h, mem, vm, cap)
    }

    fn rd(mem: &PhysMap, a: u64) -> u64 {
        let mut b = [0u8; 8];
        assert!(mem.read_ram(a, &mut b));
        u64::from_le_bytes(b)
    }
    fn wr(mem: &PhysMap, a: u64, v: u64) {
        assert!(mem.write_ram(a, &v.to_le_bytes()));
    }

    #[test]
    fn exit_codes() {
        let (h, mem, vm, _) = setup();
        assert!(!h.poll());
        wr(&mem, TOHOST, 1);
        assert!(h.poll());
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0)));
        assert_eq!(rd(&mem, TOHOST), 0, "command consumed");
        let (h, mem, vm, _) = setup();
        wr(&mem, TOHOST, (5 << 1) | 1);
        h.poll();
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(5)));
        assert_eq!(exit_status(256), 1, "a failure never exits 0");
        assert_eq!(exit_status(0x1_0003), 3);
    }

    #[test]
    fn console_putchar_and_write_syscall() {
        let (h, mem, vm, cap) = setup();
        wr(&mem, TOHOST, 1 << 56 | 1 << 48 | b'K' as u64);
        assert!(h.poll());
        assert_eq!(rd(&mem, FROMHOST), 1 << 56 | 1 << 48 | 0x100 | b'K' as u64);
        // write(1, "hi\n", 3) through magic memory at RAM + 0x2000.
        let magic = RAM + 0x2000;
        assert!(mem.write_ram(RAM + 0x3000, b"hi\n"));
        for (i, v) in [SYS_WRITE, 1, RAM + 0x3000, 3].into_iter().enumerate() {
            wr(&mem, magic + 8 * i as u64, v);
        }
        wr(&mem, FROMHOST, 0);
        wr(&mem, TOHOST, magic);
        assert!(h.poll());
        assert_eq!(rd(&mem, magic), 3);
        assert_eq!(rd(&mem, FROMHOST), 1);
        assert_eq!(&cap.0.lock().unwrap()[..], b"Khi\n");
        assert_eq!(vm.exit_requested(), None);
        // A bad fd and a buffer outside RAM: error results, no panic.
        wr(&mem, magic, SYS_WRITE); // the result overwrote the number
        wr(&mem, magic + 8, 7);
        wr(&mem, TOHOST, magic);
        h.poll();
        assert_eq!(rd(&mem, magic) as i64, -9);
        for (i, v) in [SYS_WRITE, 1, 0x10, 5].into_iter().enumerate() {
            wr(&mem, magic + 8 * i as u64, v);
        }
        wr(&mem, TOHOST, magic);
        h.poll();
        assert_eq!(rd(&mem, magic) as i64, -14);
        // Unknown device and a magic block outside RAM are ignored.
        wr(&mem, TOHOST, 9 << 56 | 3);
        assert!(h.poll());
        wr(&mem, TOHOST, 0x10);
        assert!(h.poll());
        assert_eq!(vm.exit_requested(), None);
    }

    #[test]
    fn poller_thread_sees_exit() {
        let (h, mem, vm, _) = setup();
        let p = Arc::new(h).spawn().unwrap();
        wr(&mem, TOHOST, (3 << 1) | 1);
        for _ in 0..2000 {
            if vm.exit_requested().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(3)));
        drop(p);
    }
}
