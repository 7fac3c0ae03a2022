//! VM-wide control shared by devices, vCPU loops and the front end.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

/// How the VM asks to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    /// Power off / test pass / test fail: the process exits with this status.
    Exit(i32),
    /// The guest asked for a reset.
    Reset,
}

/// Shared VM control: shutdown requests and vCPU kicks.
///
/// vCPUs register the address of their exit-request word (it lives inline in
/// the CPU state, where translated code reads it at every block entry).
/// `kick_all` sets every registered word, so vCPUs leave translated code
/// promptly and look at why.
#[derive(Debug, Default)]
pub struct VmControl {
    /// The exit request as one word, so a reader never sees "stopping" before
    /// the code that goes with it: 0 = none, `EXIT_TAG | code`, or `RESET`.
    stop: AtomicU64,
    /// Addresses of registered exit-request words.
    kicks: Mutex<Vec<usize>>,
    /// Wakes vCPUs sleeping in `wfi`.
    wake_lock: Mutex<u64>,
    wake: Condvar,
}

thread_local! {
    /// [`VmControl::kick_all`] calls made on this thread (see [`VmControl::kicks_here`]).
    static KICKS_HERE: Cell<u64> = const { Cell::new(0) };
}

const EXIT_TAG: u64 = 1 << 32;
const RESET: u64 = 2 << 32;

impl VmControl {
    pub fn new() -> VmControl {
        VmControl::default()
    }

    /// Ask the VM to stop with `code`. The first request wins.
    pub fn request_exit(&self, code: ExitCode) {
        let word = match code {
            ExitCode::Exit(c) => EXIT_TAG | u64::from(c as u32),
            ExitCode::Reset => RESET,
        };
        // First request wins; later ones only kick again.
        let _ = self.stop.compare_exchange(0, word, Ordering::SeqCst, Ordering::SeqCst);
        self.kick_all();
    }

    /// The pending exit request, if any.
    pub fn exit_requested(&self) -> Option<ExitCode> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            RESET => Some(ExitCode::Reset),
            w => Some(ExitCode::Exit(w as u32 as i32)),
        }
    }

    /// Register a vCPU's exit-request word.
    ///
    /// # Safety
    /// `word` must stay valid until [`VmControl::unregister`] is called for it.
    pub unsafe fn register(&self, word: &AtomicU32) {
        self.kicks.lock().unwrap_or_else(|e| e.into_inner()).push(word as *const AtomicU32 as usize);
    }

    pub fn unregister(&self, word: &AtomicU32) {
        let addr = word as *const AtomicU32 as usize;
        self.kicks.lock().unwrap_or_else(|e| e.into_inner()).retain(|w| *w != addr);
    }

    /// Set every registered exit-request word and wake sleeping vCPUs.
    pub fn kick_all(&self) {
        KICKS_HERE.with(|k| k.set(k.get().wrapping_add(1)));
        let kicks = self.kicks.lock().unwrap_or_else(|e| e.into_inner());
        for &w in kicks.iter() {
            // SAFETY: `register`'s contract keeps every registered word alive
            // until it is unregistered, which takes this same lock.
            let word = unsafe { &*(w as *const AtomicU32) };
            word.store(1, Ordering::SeqCst);
        }
        drop(kicks);
        self.notify();
    }

    /// How many times [`VmControl::kick_all`] has run on the calling thread (for any VM).
    /// On a thread that runs vCPUs in turns, a change means the running guest code raised
    /// an interrupt itself, an IPI above all: the scheduler hands over to its target at
    /// once. Interrupts from other threads (timers, devices) do not count: they wait for
    /// the end of the slice like before, so they cannot split firmware's critical sections.
    pub fn kicks_here() -> u64 {
        KICKS_HERE.with(Cell::get)
    }

    /// Wake vCPUs sleeping in [`VmControl::wait`] (an interrupt arrived).
    pub fn notify(&self) {
        let mut g = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        *g = g.wrapping_add(1);
        self.wake.notify_all();
    }

    /// Sleep until [`VmControl::notify`] or `timeout`, whichever is first.
    /// `still_idle` is checked under the lock so a wake-up is never lost.
    pub fn wait(&self, timeout: std::time::Duration, still_idle: impl Fn() -> bool) {
        let g = self.wake_lock.lock().unwrap_or_else(|e| e.into_inner());
        if !still_idle() || self.stop.load(Ordering::SeqCst) != 0 {
            return;
        }
        let _ = self.wake.wait_timeout(g, timeout);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_exit_request_wins_and_kicks() {
        let vm = VmControl::new();
        let word = AtomicU32::new(0);
        // SAFETY: `word` outlives the registration (unregistered below).
        unsafe { vm.register(&word) };
        assert_eq!(vm.exit_requested(), None);
        vm.request_exit(ExitCode::Exit(3));
        vm.request_exit(ExitCode::Exit(0));
        assert_eq!(vm.exit_requested(), Some(ExitCode::Exit(3)));
        assert_eq!(word.load(Ordering::SeqCst), 1);
        vm.unregister(&word);
    }

    #[test]
    fn a_reader_never_sees_the_stop_without_its_code() {
        // CI once saw Exit(0) for a request of Exit(7): the flag and the code were
        // two stores, and a vCPU read between them.
        for _ in 0..200 {
            let vm = std::sync::Arc::new(VmControl::new());
            let w = vm.clone();
            let t = std::thread::spawn(move || w.request_exit(ExitCode::Exit(-7)));
            let seen = loop {
                if let Some(c) = vm.exit_requested() {
                    break c;
                }
                std::hint::spin_loop();
            };
            t.join().unwrap();
            assert_eq!(seen, ExitCode::Exit(-7));
        }
        let vm = VmControl::new();
        vm.request_exit(ExitCode::Reset);
        vm.request_exit(ExitCode::Exit(1));
        assert_eq!(vm.exit_requested(), Some(ExitCode::Reset));
    }
}
