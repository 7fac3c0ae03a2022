//! The stub thread: listens (TCP or a Unix socket), runs one gdb connection at a time
//! through gdbstub's blocking event loop, and maps the protocol onto a [`DebugTarget`].
//!
//! Connection life cycle (QEMU's): a new connection stops the vCPUs; `detach` (or a
//! dropped connection) removes every breakpoint and watchpoint and resumes; `kill` ends
//! Kite; then the thread waits for the next connection.
//!
//! Physical memory mode: gdbstub has no hook for QEMU's `Qqemu.PhyMemMode` packet, so
//! `monitor phys on|off` switches `x`/`set` memory accesses between the current vCPU's
//! virtual view and physical addresses.
//!
//! Pitfall: while the vCPUs run, [`BlockingEventLoop::wait_for_stop_reason`] alternates
//! between a short wait for a stop event and a non-blocking peek at the socket, so both a
//! breakpoint and gdb's Ctrl-C are seen within a few milliseconds.

use std::io;
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use gdbstub::common::{Signal, Tid};
use gdbstub::conn::{Connection, ConnectionExt};
use gdbstub::stub::{run_blocking, DisconnectReason, GdbStub, MultiThreadStopReason};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{SingleRegisterAccess, SingleRegisterAccessOps};
use gdbstub::target::ext::base::BaseOps;
use gdbstub::target::ext::breakpoints::{
    Breakpoints, BreakpointsOps, HwBreakpoint, HwBreakpointOps, HwWatchpoint, HwWatchpointOps, SwBreakpoint,
    SwBreakpointOps,
};
use gdbstub::target::ext::monitor_cmd::{ConsoleOutput, MonitorCmd, MonitorCmdOps};
use gdbstub::target::ext::target_description_xml_override::{
    TargetDescriptionXmlOverride, TargetDescriptionXmlOverrideOps,
};
use gdbstub::target::{Target, TargetError, TargetResult};
use gdbstub::{outputln, target::ext::breakpoints::WatchKind as GsWatch};

use crate::arch::{KiteArch, RawRegId, RawRegs};
use crate::{BreakKind, DebugError, DebugTarget, Resume, StopEvent, WatchKind};

/// Where the stub listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listen {
    /// `tcp:[HOST]:PORT`; an empty host means 127.0.0.1.
    Tcp { host: String, port: u16 },
    /// `unix:PATH` (an existing socket file is replaced).
    Unix(PathBuf),
}

impl Listen {
    /// Parse QEMU's `-gdb` device: `tcp::1234`, `tcp:HOST:PORT`, `unix:PATH`, or a bare
    /// port number.
    pub fn parse(s: &str) -> Result<Listen, String> {
        if let Some(p) = s.strip_prefix("unix:") {
            let path = p.split(',').next().unwrap_or_default();
            if path.is_empty() {
                return Err(format!("-gdb {s}: empty socket path"));
            }
            return Ok(Listen::Unix(PathBuf::from(path)));
        }
        let rest = s.strip_prefix("tcp:").unwrap_or(s);
        let rest = rest.split(',').next().unwrap_or_default();
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p),
            None => (String::new(), rest),
        };
        let port = port.parse::<u16>().map_err(|_| format!("-gdb {s}: expected tcp::PORT or unix:PATH"))?;
        Ok(Listen::Tcp { host, port })
    }
}

/// Errors starting the stub.
#[derive(Debug, thiserror::Error)]
pub enum GdbError {
    #[error("gdb stub: cannot listen on {0}: {1}")]
    Listen(String, io::Error),
    #[error("gdb stub: cannot start its thread: {0}")]
    Thread(io::Error),
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

type Conn = Box<dyn ConnectionExt<Error = io::Error>>;

impl Listener {
    fn accept(&self) -> io::Result<Conn> {
        Ok(match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                let _ = s.set_nodelay(true);
                Box::new(s)
            }
            Listener::Unix(l) => Box::new(l.accept()?.0),
        })
    }
}

/// Start listening and serve gdb connections from a new thread, forever.
pub fn spawn(listen: &Listen, target: Arc<dyn DebugTarget>) -> Result<JoinHandle<()>, GdbError> {
    let listener = match listen {
        Listen::Tcp { host, port } => {
            let host = if host.is_empty() { "127.0.0.1" } else { host.as_str() };
            let addr = format!("{host}:{port}");
            Listener::Tcp(TcpListener::bind(&addr).map_err(|e| GdbError::Listen(addr, e))?)
        }
        Listen::Unix(p) => {
            // Replace a stale socket from an earlier run (as QEMU does), never another file.
            use std::os::unix::fs::FileTypeExt;
            if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                let _ = std::fs::remove_file(p);
            }
            Listener::Unix(UnixListener::bind(p).map_err(|e| GdbError::Listen(p.display().to_string(), e))?)
        }
    };
    std::thread::Builder::new().name("gdbstub".into()).spawn(move || serve(listener, target)).map_err(GdbError::Thread)
}

fn serve(listener: Listener, target: Arc<dyn DebugTarget>) {
    loop {
        let conn = match listener.accept() {
            Ok(c) => c,
            Err(e) => {
                log::warn!("gdb stub: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        log::info!("gdb stub: debugger connected");
        // A new connection finds the machine stopped, like QEMU.
        target.interrupt();
        let first = wait_event(&*target);
        if let Some(StopEvent::Exited(_)) = first {
            return;
        }
        let mut st = StubTarget { t: target.clone(), resume: None, phys: false };
        target.session(true);
        let reason = GdbStub::new(conn).run_blocking::<EventLoop>(&mut st);
        target.session(false);
        match reason {
            Ok(DisconnectReason::Kill) => {
                target.quit(0);
                return;
            }
            Ok(DisconnectReason::TargetExited(_)) | Ok(DisconnectReason::TargetTerminated(_)) => return,
            Ok(DisconnectReason::Disconnect) => log::info!("gdb stub: debugger detached"),
            Err(e) => log::warn!("gdb stub: connection ended: {e}"),
        }
        // Detach (or a vanished gdb): forget its breakpoints and let the guest run.
        let _ = target.clear_debug();
        let _ = target.resume(Resume::Continue);
    }
}

/// Wait until the target reports a stop (it was just asked to stop). `None` if it does
/// not within a generous time (the machine is wedged in a device call).
fn wait_event(t: &dyn DebugTarget) -> Option<StopEvent> {
    for _ in 0..600 {
        if let Some(e) = t.wait_stop(Duration::from_millis(100)) {
            return Some(e);
        }
    }
    None
}

struct StubTarget {
    t: Arc<dyn DebugTarget>,
    /// The resume action gdb asked for, applied by `resume`.
    resume: Option<Resume>,
    /// `monitor phys on`: memory packets use physical addresses.
    phys: bool,
}

fn tid(vcpu: usize) -> Tid {
    Tid::new(vcpu + 1).unwrap_or(Tid::MIN)
}

fn vcpu(t: Tid) -> usize {
    t.get() - 1
}

fn err(e: DebugError) -> TargetError<DebugError> {
    match e {
        DebugError::Gone => TargetError::Fatal(e),
        _ => TargetError::NonFatal,
    }
}

fn stop_reason(e: StopEvent) -> MultiThreadStopReason<u64> {
    match e {
        StopEvent::Signal { vcpu } => {
            MultiThreadStopReason::SignalWithThread { tid: tid(vcpu), signal: Signal::SIGINT }
        }
        StopEvent::Break { vcpu, kind: BreakKind::Sw } => MultiThreadStopReason::SwBreak(tid(vcpu)),
        StopEvent::Break { vcpu, kind: BreakKind::Hw } => MultiThreadStopReason::HwBreak(tid(vcpu)),
        StopEvent::Watch { vcpu, kind, addr } => {
            let kind = match kind {
                WatchKind::Write => GsWatch::Write,
                WatchKind::Read => GsWatch::Read,
                WatchKind::Access => GsWatch::ReadWrite,
            };
            MultiThreadStopReason::Watch { tid: tid(vcpu), kind, addr }
        }
        StopEvent::DoneStep { vcpu } => {
            MultiThreadStopReason::SignalWithThread { tid: tid(vcpu), signal: Signal::SIGTRAP }
        }
        StopEvent::Exited(code) => MultiThreadStopReason::Exited(code as u8),
    }
}

enum EventLoop {}

impl run_blocking::BlockingEventLoop for EventLoop {
    type Target = StubTarget;
    type Connection = Conn;
    type StopReason = MultiThreadStopReason<u64>;

    #[allow(clippy::type_complexity)]
    fn wait_for_stop_reason(
        target: &mut StubTarget,
        conn: &mut Conn,
    ) -> Result<
        run_blocking::Event<Self::StopReason>,
        run_blocking::WaitForStopReasonError<DebugError, <Conn as Connection>::Error>,
    > {
        loop {
            if let Some(e) = target.t.wait_stop(Duration::from_millis(5)) {
                return Ok(run_blocking::Event::TargetStopped(stop_reason(e)));
            }
            match conn.peek() {
                Ok(Some(_)) => {
                    let b = conn.read().map_err(run_blocking::WaitForStopReasonError::Connection)?;
                    return Ok(run_blocking::Event::IncomingData(b));
                }
                Ok(None) => {}
                Err(e) => return Err(run_blocking::WaitForStopReasonError::Connection(e)),
            }
        }
    }

    fn on_interrupt(target: &mut StubTarget) -> Result<Option<Self::StopReason>, DebugError> {
        target.t.interrupt();
        Ok(Some(stop_reason(wait_event(&*target.t).ok_or(DebugError::Gone)?)))
    }
}

impl Target for StubTarget {
    type Arch = KiteArch;
    type Error = DebugError;

    fn base_ops(&mut self) -> BaseOps<'_, KiteArch, DebugError> {
        BaseOps::MultiThread(self)
    }

    fn support_breakpoints(&mut self) -> Option<BreakpointsOps<'_, Self>> {
        Some(self)
    }

    fn support_monitor_cmd(&mut self) -> Option<MonitorCmdOps<'_, Self>> {
        Some(self)
    }

    fn support_target_description_xml_override(&mut self) -> Option<TargetDescriptionXmlOverrideOps<'_, Self>> {
        Some(self)
    }

    // Breakpoints never touch guest memory, so gdb must not "insert" them by writing.
    fn guard_rail_implicit_sw_breakpoints(&self) -> bool {
        true
    }
}

impl MultiThreadBase for StubTarget {
    fn read_registers(&mut self, regs: &mut RawRegs, t: Tid) -> TargetResult<(), Self> {
        regs.bytes.clear();
        for &n in self.t.g_regs() {
            regs.bytes.extend(self.t.read_reg(vcpu(t), n).map_err(err)?);
        }
        Ok(())
    }

    fn write_registers(&mut self, regs: &RawRegs, t: Tid) -> TargetResult<(), Self> {
        let mut off = 0;
        for &n in self.t.g_regs() {
            let size = self.t.read_reg(vcpu(t), n).map_err(err)?.len();
            let Some(chunk) = regs.bytes.get(off..off + size) else {
                break;
            };
            self.t.write_reg(vcpu(t), n, chunk).map_err(err)?;
            off += size;
        }
        Ok(())
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], t: Tid) -> TargetResult<usize, Self> {
        let got = self.t.read_mem(vcpu(t), start, data.len(), self.phys).map_err(err)?;
        let n = got.len().min(data.len());
        data[..n].copy_from_slice(&got[..n]);
        if n == 0 && !data.is_empty() {
            return Err(TargetError::NonFatal);
        }
        Ok(n)
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], t: Tid) -> TargetResult<(), Self> {
        self.t.write_mem(vcpu(t), start, data, self.phys).map_err(err)
    }

    fn list_active_threads(&mut self, register_thread: &mut dyn FnMut(Tid)) -> Result<(), DebugError> {
        for i in 0..self.t.num_vcpus() {
            register_thread(tid(i));
        }
        Ok(())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }
}

impl SingleRegisterAccess<Tid> for StubTarget {
    fn read_register(&mut self, t: Tid, reg: RawRegId, buf: &mut [u8]) -> TargetResult<usize, Self> {
        let v = self.t.read_reg(vcpu(t), reg.0).map_err(err)?;
        let n = v.len().min(buf.len());
        buf[..n].copy_from_slice(&v[..n]);
        Ok(n)
    }

    fn write_register(&mut self, t: Tid, reg: RawRegId, val: &[u8]) -> TargetResult<(), Self> {
        self.t.write_reg(vcpu(t), reg.0, val).map_err(err)
    }
}

impl MultiThreadResume for StubTarget {
    fn resume(&mut self) -> Result<(), DebugError> {
        let how = self.resume.take().unwrap_or(Resume::Continue);
        self.t.resume(how)
    }

    fn clear_resume_actions(&mut self) -> Result<(), DebugError> {
        self.resume = None;
        Ok(())
    }

    fn set_resume_action_continue(&mut self, _t: Tid, _signal: Option<Signal>) -> Result<(), DebugError> {
        // A step request for one thread wins over "continue the others": the others stay
        // stopped while it steps (QEMU's behaviour).
        if self.resume.is_none() {
            self.resume = Some(Resume::Continue);
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSchedulerLocking for StubTarget {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), DebugError> {
        // A step already runs only the stepped vCPU; a locked continue of one vCPU is
        // not supported by the round-robin translator and runs them all.
        Ok(())
    }
}

impl MultiThreadSingleStep for StubTarget {
    fn set_resume_action_step(&mut self, t: Tid, _signal: Option<Signal>) -> Result<(), DebugError> {
        self.resume = Some(Resume::Step { vcpu: vcpu(t) });
        Ok(())
    }
}

impl Breakpoints for StubTarget {
    fn support_sw_breakpoint(&mut self) -> Option<SwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_breakpoint(&mut self) -> Option<HwBreakpointOps<'_, Self>> {
        Some(self)
    }
    fn support_hw_watchpoint(&mut self) -> Option<HwWatchpointOps<'_, Self>> {
        Some(self)
    }
}

impl SwBreakpoint for StubTarget {
    fn add_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.t.breakpoint(BreakKind::Sw, addr, true).map_err(err)
    }
    fn remove_sw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.t.breakpoint(BreakKind::Sw, addr, false).map_err(err)
    }
}

impl HwBreakpoint for StubTarget {
    fn add_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.t.breakpoint(BreakKind::Hw, addr, true).map_err(err)
    }
    fn remove_hw_breakpoint(&mut self, addr: u64, _kind: usize) -> TargetResult<bool, Self> {
        self.t.breakpoint(BreakKind::Hw, addr, false).map_err(err)
    }
}

fn watch_kind(k: GsWatch) -> WatchKind {
    match k {
        GsWatch::Write => WatchKind::Write,
        GsWatch::Read => WatchKind::Read,
        GsWatch::ReadWrite => WatchKind::Access,
    }
}

impl HwWatchpoint for StubTarget {
    fn add_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GsWatch) -> TargetResult<bool, Self> {
        self.t.watchpoint(watch_kind(kind), addr, len, true).map_err(err)
    }
    fn remove_hw_watchpoint(&mut self, addr: u64, len: u64, kind: GsWatch) -> TargetResult<bool, Self> {
        self.t.watchpoint(watch_kind(kind), addr, len, false).map_err(err)
    }
}

impl TargetDescriptionXmlOverride for StubTarget {
    fn target_description_xml(
        &self,
        annex: &[u8],
        offset: u64,
        length: usize,
        buf: &mut [u8],
    ) -> TargetResult<usize, Self> {
        if annex != b"target.xml" {
            return Err(TargetError::NonFatal);
        }
        let xml = self.t.target_xml().as_bytes();
        let start = (offset as usize).min(xml.len());
        let n = length.min(buf.len()).min(xml.len() - start);
        buf[..n].copy_from_slice(&xml[start..start + n]);
        Ok(n)
    }
}

const MONITOR_HELP: &str = "\
help                 this text
info registers       the CPU state of the first vCPU
xp /Nx ADDR          N 32-bit words of physical memory at ADDR (also /Nb, /Nh, /Ng)
phys on|off          gdb memory accesses use physical addresses (QEMU's PhyMemMode)
system_reset         reset the machine
quit                 end Kite";

impl MonitorCmd for StubTarget {
    fn handle_monitor_cmd(&mut self, cmd: &[u8], mut out: ConsoleOutput<'_>) -> Result<(), DebugError> {
        let cmd = String::from_utf8_lossy(cmd);
        let words: Vec<&str> = cmd.split_whitespace().collect();
        match words.as_slice() {
            [] | ["help"] => outputln!(out, "{MONITOR_HELP}"),
            ["info", "registers"] => match self.t.dump_registers(0) {
                Ok(s) => outputln!(out, "{s}"),
                Err(e) => outputln!(out, "{e}"),
            },
            ["xp", rest @ ..] => match parse_xp(rest) {
                Ok((count, size, addr)) => outputln!(out, "{}", self.xp(count, size, addr)),
                Err(e) => outputln!(out, "{e}"),
            },
            ["phys", "on"] => {
                self.phys = true;
                outputln!(out, "memory accesses are physical");
            }
            ["phys", "off"] => {
                self.phys = false;
                outputln!(out, "memory accesses are virtual (through the current vCPU)");
            }
            ["phys"] => outputln!(out, "phys is {}", if self.phys { "on" } else { "off" }),
            ["system_reset"] => {
                self.t.system_reset();
                outputln!(out, "resetting");
            }
            ["quit" | "q"] => {
                outputln!(out, "quitting");
                self.t.quit(0);
            }
            _ => outputln!(out, "unknown command '{cmd}' (try 'monitor help')"),
        }
        Ok(())
    }
}

impl StubTarget {
    fn xp(&self, count: u64, size: usize, addr: u64) -> String {
        let mut s = String::new();
        for i in 0..count {
            let a = addr.wrapping_add(i * size as u64);
            if i % (16 / size as u64) == 0 {
                if i != 0 {
                    s.push('\n');
                }
                s.push_str(&format!("{a:016x}:"));
            }
            match self.t.read_mem(0, a, size, true) {
                Ok(b) if b.len() == size => {
                    let mut v = [0u8; 8];
                    v[..size].copy_from_slice(&b);
                    s.push_str(&format!(" 0x{:0w$x}", u64::from_le_bytes(v), w = size * 2));
                }
                _ => {
                    s.push_str(&format!(" Cannot access memory at {a:#x}"));
                    break;
                }
            }
        }
        s
    }
}

/// `/Nf ADDR` (or `ADDR`): (count, unit size, address). Count is capped so one command
/// cannot flood the connection.
fn parse_xp(args: &[&str]) -> Result<(u64, usize, u64), String> {
    let (fmt, addr) = match args {
        [a] => ("/1x", *a),
        [f, a] if f.starts_with('/') => (*f, *a),
        _ => return Err("usage: xp /Nx ADDR".into()),
    };
    let spec = &fmt[1..];
    let digits: String = spec.chars().take_while(|c| c.is_ascii_digit()).collect();
    let count = if digits.is_empty() { 1 } else { digits.parse::<u64>().map_err(|_| "bad count".to_string())? };
    let mut size = 4;
    for c in spec[digits.len()..].chars() {
        match c {
            'b' => size = 1,
            'h' => size = 2,
            'w' => size = 4,
            'g' => size = 8,
            'x' => {}
            _ => return Err(format!("unsupported format '{c}' (use x with b/h/w/g)")),
        }
    }
    let a = addr.trim_start_matches("0x").trim_start_matches("0X");
    let addr = u64::from_str_radix(a, 16).map_err(|_| format!("bad address '{addr}'"))?;
    Ok((count.min(4096), size, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gdb_devices() {
        assert_eq!(Listen::parse("tcp::1234"), Ok(Listen::Tcp { host: String::new(), port: 1234 }));
        assert_eq!(Listen::parse("tcp:0.0.0.0:99"), Ok(Listen::Tcp { host: "0.0.0.0".into(), port: 99 }));
        assert_eq!(Listen::parse("4321"), Ok(Listen::Tcp { host: String::new(), port: 4321 }));
        assert_eq!(Listen::parse("unix:/tmp/s"), Ok(Listen::Unix("/tmp/s".into())));
        assert!(Listen::parse("tcp::x").is_err());
        assert!(Listen::parse("unix:").is_err());
    }

    #[test]
    fn parses_xp() {
        assert_eq!(parse_xp(&["/4x", "0x80000000"]), Ok((4, 4, 0x8000_0000)));
        assert_eq!(parse_xp(&["/2g", "1000"]), Ok((2, 8, 0x1000)));
        assert_eq!(parse_xp(&["/8xb", "10"]), Ok((8, 1, 0x10)));
        assert_eq!(parse_xp(&["0x20"]), Ok((1, 4, 0x20)));
        assert!(parse_xp(&["/4z", "0"]).is_err());
        assert!(parse_xp(&["/4x", "zz"]).is_err());
        assert_eq!(parse_xp(&["/999999x", "0"]).map(|r| r.0), Ok(4096));
    }
}
