//! The host side of the serial console: terminal raw mode, the stdin
//! forwarder with QEMU's Ctrl-A escapes, and SIGINT/SIGTERM handling.
//!
//! - Raw mode: when stdin is a terminal (and the serial port is on stdio),
//!   it is put in raw mode like QEMU's `-nographic` (no echo, no line
//!   editing, no signals from Ctrl-C, which goes to the guest), keeping
//!   output post-processing so host log lines still end with CR LF. The
//!   saved settings live in a static so every exit path can restore them:
//!   [`restore_terminal`] is called on normal exit, on errors, from the
//!   panic hook and (for a second signal) from the signal handler; it is
//!   idempotent and async-signal-safe (an atomic swap and `tcsetattr`).
//! - Forwarding: a host thread reads stdin and pushes bytes into the current
//!   machine's UART. When the UART queue is full, piped input waits (the
//!   host thread, never the vCPU) and typed input is dropped (so Ctrl-A X
//!   still works against a guest that never reads). With a terminal, Ctrl-A X quits (exit 0), Ctrl-A Ctrl-A
//!   sends Ctrl-A, Ctrl-A H prints help; piped stdin is forwarded as is and
//!   EOF just stops forwarding.
//! - Signals: the first SIGINT/SIGTERM asks the VM to exit with 128+signo
//!   (130/143, like a shell) through [`Session`]; the handler only writes to
//!   a pipe that a watcher thread reads. A second signal restores the
//!   terminal and exits at once, in case the guest never stops.
//!
//! [`Session`] is the hand-off point between these host threads and the
//! machine, which is rebuilt from scratch on a guest reset.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use kite_core::{ExitCode, VmControl};
use kite_hw::char::Ns16550;

/// Ctrl-A, QEMU's console escape character.
pub const ESCAPE: u8 = 0x01;

/// The escape keys, as QEMU prints them (the raw terminal keeps LF -> CR LF).
pub const ESCAPE_HELP: &str = "\nC-a h    print this help\nC-a x    exit emulator\nC-a C-a  sends C-a\n";

/// What a byte typed on the console means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// Send this byte to the guest.
    Send(u8),
    /// Ctrl-A X: quit.
    Quit,
    /// Ctrl-A H: print the escape keys.
    Help,
    /// Nothing to do (the escape itself, or an unknown escape command).
    None,
}

/// The Ctrl-A escape state machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapeParser {
    escaped: bool,
}

impl EscapeParser {
    pub fn feed(&mut self, b: u8) -> Key {
        if !self.escaped {
            if b == ESCAPE {
                self.escaped = true;
                return Key::None;
            }
            return Key::Send(b);
        }
        self.escaped = false;
        match b {
            ESCAPE => Key::Send(ESCAPE),
            b'x' | b'X' => Key::Quit,
            b'h' | b'H' | b'?' => Key::Help,
            // QEMU swallows unknown escape commands.
            _ => Key::None,
        }
    }
}

/// The machine the host threads talk to; replaced on every (re)boot.
#[derive(Debug, Default)]
pub struct Session {
    current: Mutex<Option<(Arc<VmControl>, Arc<Ns16550>)>>,
    /// An exit asked for by the host (signal, Ctrl-A X); sticky across resets.
    host_exit: Mutex<Option<i32>>,
}

impl Session {
    pub fn new() -> Arc<Session> {
        Arc::new(Session::default())
    }

    /// Make `vm`/`uart` the current machine. A host exit that arrived before
    /// (e.g. during a reset) is applied to it at once.
    pub fn attach(&self, vm: Arc<VmControl>, uart: Arc<Ns16550>) {
        if let Some(code) = self.host_exit() {
            vm.request_exit(ExitCode::Exit(code));
        }
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some((vm, uart));
    }

    /// The host wants out with `code` (the first request wins).
    pub fn request_exit(&self, code: i32) {
        let code = *self.host_exit.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(code);
        if let Some((vm, _)) = &*self.current.lock().unwrap_or_else(|e| e.into_inner()) {
            vm.request_exit(ExitCode::Exit(code));
        }
    }

    /// The exit code the host asked for, if it did.
    pub fn host_exit(&self) -> Option<i32> {
        *self.host_exit.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn uart(&self) -> Option<Arc<Ns16550>> {
        self.current.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(_, u)| u.clone())
    }

    /// Deliver one byte to the guest. With `wait`, wait (on this host
    /// thread) while the UART queue is full, giving up if the host asked to
    /// exit; without, a byte that does not fit is dropped, as a real UART
    /// overruns.
    pub fn send(&self, b: u8, wait: bool) {
        loop {
            if self.host_exit().is_some() {
                return;
            }
            if let Some(u) = self.uart() {
                if u.push_rx(b) || !wait {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Handle one chunk of console input. With a terminal (`parser` given),
/// bytes the guest has no room for are dropped rather than waited for, so
/// Ctrl-A X always gets through even to a guest that never reads; piped
/// input waits for room instead, so none is lost.
pub fn handle_input(session: &Session, parser: Option<&mut EscapeParser>, bytes: &[u8], help: &mut dyn Write) {
    match parser {
        None => bytes.iter().for_each(|&b| session.send(b, true)),
        Some(p) => {
            for &b in bytes {
                match p.feed(b) {
                    Key::Send(b) => session.send(b, false),
                    Key::Quit => {
                        session.request_exit(0);
                        return;
                    }
                    Key::Help => {
                        let _ = help.write_all(ESCAPE_HELP.as_bytes());
                        let _ = help.flush();
                    }
                    Key::None => {}
                }
            }
        }
    }
}

/// Start the stdin forwarder thread. `escapes` turns on Ctrl-A handling
/// (stdin is a terminal).
pub fn spawn_stdin_forwarder(session: Arc<Session>, escapes: bool) -> std::io::Result<()> {
    std::thread::Builder::new().name("stdin".into()).spawn(move || {
        let mut parser = EscapeParser::default();
        let mut buf = [0u8; 256];
        let mut stdin = std::io::stdin();
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => handle_input(&session, escapes.then_some(&mut parser), &buf[..n], &mut std::io::stdout()),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("stdin: {e}; no more console input");
                    return;
                }
            }
        }
    })?;
    Ok(())
}

static SAVED_TERMIOS: OnceLock<libc::termios> = OnceLock::new();
static RAW_ACTIVE: AtomicBool = AtomicBool::new(false);

/// Whether file descriptor 0 is a terminal.
pub fn stdin_is_tty() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

/// Put the stdin terminal in raw mode (no-op if stdin is not a terminal).
pub fn enter_raw_mode() -> std::io::Result<()> {
    if !stdin_is_tty() {
        return Ok(());
    }
    // SAFETY: termios is plain old data; an all-zero value is valid and is
    // overwritten by tcgetattr.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `t` is a valid, writable termios.
    if unsafe { libc::tcgetattr(0, &mut t) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let saved = *SAVED_TERMIOS.get_or_init(|| t);
    let mut raw = saved;
    // SAFETY: `raw` is a valid termios.
    unsafe { libc::cfmakeraw(&mut raw) };
    // Keep output processing (LF -> CR LF) as QEMU does, so host messages
    // printed while the guest runs stay readable.
    raw.c_oflag |= libc::OPOST;
    // SAFETY: `raw` is a valid termios for fd 0.
    if unsafe { libc::tcsetattr(0, libc::TCSANOW, &raw) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    RAW_ACTIVE.store(true, Ordering::SeqCst);
    Ok(())
}

/// Restore the terminal settings saved by [`enter_raw_mode`]. Idempotent and
/// async-signal-safe.
pub fn restore_terminal() {
    if RAW_ACTIVE.swap(false, Ordering::SeqCst) {
        if let Some(t) = SAVED_TERMIOS.get() {
            // SAFETY: `t` is the termios read from fd 0 by tcgetattr.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, t) };
        }
    }
}

/// Write end of the signal pipe (-1 before installation).
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(sig: libc::c_int) {
    if SIGNALLED.swap(true, Ordering::SeqCst) {
        // Second signal: the guest did not stop. Leave now, tidily.
        restore_terminal();
        // SAFETY: _exit is async-signal-safe and ends the process.
        unsafe { libc::_exit(128 + sig) };
    }
    let fd = SIGNAL_PIPE.load(Ordering::SeqCst);
    let b = sig as u8;
    // SAFETY: write(2) is async-signal-safe; `b` is a valid 1-byte buffer.
    unsafe { libc::write(fd, &b as *const u8 as *const libc::c_void, 1) };
}

/// Route SIGINT and SIGTERM to `session.request_exit(128 + signo)`.
pub fn install_signal_handlers(session: Arc<Session>) -> std::io::Result<()> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe() returns.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    SIGNAL_PIPE.store(fds[1], Ordering::SeqCst);
    let read_fd = fds[0];
    std::thread::Builder::new().name("signals".into()).spawn(move || loop {
        let mut b = 0u8;
        // SAFETY: reading one byte into a valid buffer from our own pipe.
        let n = unsafe { libc::read(read_fd, &mut b as *mut u8 as *mut libc::c_void, 1) };
        if n == 1 {
            session.request_exit(128 + b as i32);
        } else if n == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    })?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: sigaction is zero-initialisable; we set the handler, an
        // empty mask and SA_RESTART, and `on_signal` only does
        // async-signal-safe work.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            sa.sa_flags = libc::SA_RESTART;
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kite_core::MmioDevice;
    use kite_core::NoIrq;

    #[test]
    fn escapes() {
        let mut p = EscapeParser::default();
        assert_eq!(p.feed(b'a'), Key::Send(b'a'));
        assert_eq!(p.feed(ESCAPE), Key::None);
        assert_eq!(p.feed(ESCAPE), Key::Send(ESCAPE));
        assert_eq!(p.feed(b'x'), Key::Send(b'x'), "escape consumed");
        assert_eq!(p.feed(ESCAPE), Key::None);
        assert_eq!(p.feed(b'h'), Key::Help);
        assert_eq!(p.feed(ESCAPE), Key::None);
        assert_eq!(p.feed(b'q'), Key::None, "unknown escape swallowed");
        assert_eq!(p.feed(ESCAPE), Key::None);
        assert_eq!(p.feed(b'X'), Key::Quit);
        assert_eq!(p.feed(3), Key::Send(3), "Ctrl-C goes to the guest");
    }

    fn machine() -> (Arc<VmControl>, Arc<Ns16550>) {
        (Arc::new(VmControl::new()), Arc::new(Ns16550::new(Box::new(std::io::sink()), Arc::new(NoIrq))))
    }

    #[test]
    fn input_reaches_uart_and_ctrl_a_x_quits() {
        let s = Session::new();
        let (vm, uart) = machine();
        s.attach(vm.clone(), uart.clone());
        let mut p = EscapeParser::default();
        let mut help = Vec::new();
        handle_input(&s, Some(&mut p), b"ab\x01\x01\x01h", &mut help);
        assert_eq!(uart.rx_pending(), 3);
        assert_eq!([uart.read(0, 1), uart.read(0, 1), uart.read(0, 1)], [b'a' as u64, b'b' as u64, 1]);
        assert_eq!(help, ESCAPE_HELP.as_bytes());
        assert_eq!(vm.exit_requested(), None);
        handle_input(&s, Some(&mut p), b"\x01xzz", &mut help);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0)));
        assert_eq!(uart.rx_pending(), 0, "nothing after the quit is sent");
    }

    #[test]
    fn piped_input_is_forwarded_verbatim() {
        let s = Session::new();
        let (vm, uart) = machine();
        s.attach(vm.clone(), uart.clone());
        handle_input(&s, None, b"\x01x", &mut std::io::sink());
        assert_eq!(uart.rx_pending(), 2);
        assert_eq!(vm.exit_requested(), None);
    }

    #[test]
    fn host_exit_survives_reset() {
        let s = Session::new();
        let (vm, uart) = machine();
        s.attach(vm.clone(), uart);
        s.request_exit(130);
        s.request_exit(143);
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(130)));
        let (vm2, uart2) = machine();
        s.attach(vm2.clone(), uart2);
        assert_eq!(vm2.exit_requested(), Some(ExitCode::Exit(130)));
        assert_eq!(s.host_exit(), Some(130));
        // A full queue does not hang a sender once the host asked to exit.
        s.send(b'x', true);
    }

    #[test]
    fn terminal_input_never_waits_for_a_full_queue() {
        let s = Session::new();
        let (vm, uart) = machine();
        s.attach(vm.clone(), uart.clone());
        let flood = vec![b'.'; kite_hw::char::ns16550::RX_QUEUE_CAP + 100];
        let mut p = EscapeParser::default();
        handle_input(&s, Some(&mut p), &flood, &mut std::io::sink());
        assert_eq!(uart.rx_pending(), kite_hw::char::ns16550::RX_QUEUE_CAP);
        handle_input(&s, Some(&mut p), b"\x01x", &mut std::io::sink());
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(0)));
    }
}
