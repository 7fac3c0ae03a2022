//! VM-wide control shared by devices, vCPU loops and the front end.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, Ordering};
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
    stop: AtomicBool,
    code: AtomicI32,
    reset: AtomicBool,
    /// Addresses of registered exit-request words.
    kicks: Mutex<Vec<usize>>,
    /// Wakes vCPUs sleeping in `wfi`.
    wake_lock: Mutex<u64>,
    wake: Condvar,
}

impl VmControl {
    pub fn new() -> VmControl {
        VmControl::default()
    }

    /// Ask the VM to stop with `code`. The first request wins.
    pub fn request_exit(&self, code: ExitCode) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            match code {
                ExitCode::Exit(c) => self.code.store(c, Ordering::SeqCst),
                ExitCode::Reset => self.reset.store(true, Ordering::SeqCst),
            }
        }
        self.kick_all();
    }

    /// The pending exit request, if any.
    pub fn exit_requested(&self) -> Option<ExitCode> {
        if !self.stop.load(Ordering::SeqCst) {
            return None;
        }
        Some(if self.reset.load(Ordering::SeqCst) {
            ExitCode::Reset
        } else {
            ExitCode::Exit(self.code.load(Ordering::SeqCst))
        })
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
        if !still_idle() || self.stop.load(Ordering::SeqCst) {
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
}
