//! The code cache: one region that compiled functions are appended to.
//!
//! W^X without system calls per block: the cache is one `memfd` mapped twice, a
//! read-write view that code is copied into and a read-execute view that runs it (QEMU's
//! "split W^X"). Changing page protections instead (`mprotect` twice per block) is what
//! we did first; with other threads in the process (timer, background compiler, stdin)
//! every `mprotect` also costs a cross-CPU TLB shootdown, which was ~7% of a Linux boot.
//! If the double mapping cannot be made, we fall back to that scheme.
//!
//! Code is never freed piecemeal: when the cache is full the engine flushes every TB and
//! [`CodeCache::reset`] rewinds to the end of the permanent prefix (the entry trampoline),
//! so addresses handed out earlier become stale all at once. Generated code must be
//! position independent (it is: Cranelift functions reference their constants
//! RIP-relatively and everything else through absolute constants).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crate::JitError;

/// Alignment of every function in the cache.
const FUNC_ALIGN: usize = 16;

#[derive(Debug)]
pub(crate) struct CodeCache {
    /// The executable view (what callers get pointers into).
    exec: *mut u8,
    /// The writable view of the same memory, or `None` in the `mprotect` fallback.
    write: Option<*mut u8>,
    size: usize,
    used: usize,
    /// Bytes at the start that survive [`CodeCache::reset`].
    permanent: usize,
    page: usize,
    /// Bytes from the start whose pages are already populated (see [`CodeCache::populate`]);
    /// a lower bound of `ahead`'s count, kept here so `add` reads no atomic.
    populated: usize,
    /// The helper thread that populates ahead of use: `None` until the first `populate`
    /// starts it, `Some(None)` if it could not be started (then population stays
    /// synchronous; not retried per chunk).
    ahead: Option<Option<Populator>>,
}

/// Populates the cache's pages ahead of use on a helper thread, so that the dispatcher
/// does not wait in `madvise` for them: ~18 ms of a ~330 ms Linux boot (26 MiB of code,
/// two views) before.
#[derive(Debug)]
struct Populator {
    shared: Arc<PopShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct PopShared {
    /// Bytes from the start whose pages are populated (by either thread).
    done: AtomicUsize,
    /// (populate up to here, stop).
    want: Mutex<(usize, bool)>,
    cv: Condvar,
}

/// How far past the chunk in use the helper populates.
const POPULATE_AHEAD: usize = 4 * POPULATE_CHUNK;

/// `MADV_POPULATE_*` both views of [from, to).
///
/// # Safety
/// [from, to) must lie inside both views (page-aligned ends), which must stay mapped
/// for the call.
unsafe fn populate_views(write: usize, exec: usize, from: usize, to: usize) {
    for (base, advice) in [(write, libc::MADV_POPULATE_WRITE), (exec, libc::MADV_POPULATE_READ)] {
        // SAFETY: per this function's contract; populating changes no contents.
        unsafe { libc::madvise((base + from) as *mut libc::c_void, to - from, advice) };
    }
}

impl Populator {
    /// Start the helper for views `write`/`exec` of `size` bytes; `None` if no thread
    /// can be made (population then stays synchronous).
    fn start(write: *mut u8, exec: *mut u8, size: usize) -> Option<Populator> {
        let shared =
            Arc::new(PopShared { done: AtomicUsize::new(0), want: Mutex::new((0, false)), cv: Condvar::new() });
        let sh = shared.clone();
        let (w, x) = (write as usize, exec as usize);
        let thread = std::thread::Builder::new()
            .name("kite-cc-populate".into())
            .spawn(move || loop {
                let want = {
                    let mut g = sh.want.lock().unwrap_or_else(|e| e.into_inner());
                    while !g.1 && g.0 <= sh.done.load(Ordering::Acquire) {
                        g = sh.cv.wait(g).unwrap_or_else(|e| e.into_inner());
                    }
                    if g.1 {
                        return;
                    }
                    g.0
                };
                let from = sh.done.load(Ordering::Acquire);
                let to = (from + POPULATE_CHUNK).min(want).min(size);
                if from < to {
                    // SAFETY: [from, to) is inside both views (to <= size, chunk-aligned
                    // or `size`); the cache joins this thread before it unmaps them.
                    unsafe { populate_views(w, x, from, to) };
                    sh.done.fetch_max(to, Ordering::Release);
                }
            })
            .ok()?;
        Some(Populator { shared, thread: Some(thread) })
    }

    fn request(&self, to: usize) {
        let mut g = self.shared.want.lock().unwrap_or_else(|e| e.into_inner());
        if to > g.0 {
            g.0 = to;
            self.shared.cv.notify_one();
        }
    }
}

impl Drop for Populator {
    fn drop(&mut self) {
        self.shared.want.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
        self.shared.cv.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// How much of the cache [`CodeCache::populate`] faults in at once.
const POPULATE_CHUNK: usize = 1 << 20;

fn os_err() -> JitError {
    JitError::CodeCache(std::io::Error::last_os_error().to_string())
}

/// Map `size` bytes of `fd` (or anonymous memory if `fd` is -1) with `prot`.
fn map(size: usize, prot: libc::c_int, fd: libc::c_int) -> Option<*mut u8> {
    let flags = if fd < 0 {
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE
    } else {
        libc::MAP_SHARED | libc::MAP_NORESERVE
    };
    // SAFETY: a fresh mapping with no address hint; the result is checked.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), size, prot, flags, fd, 0) };
    (p != libc::MAP_FAILED).then_some(p as *mut u8)
}

fn unmap(p: *mut u8, size: usize) {
    // SAFETY: callers pass a mapping of exactly `size` bytes made by `map` that holds no
    // Rust objects and whose code can no longer run.
    unsafe { libc::munmap(p as *mut libc::c_void, size) };
}

/// The two views of one memfd: (writable, executable).
fn dual_map(size: usize) -> Option<(*mut u8, *mut u8)> {
    // SAFETY: the name is a NUL-terminated literal; the result is checked.
    let fd = unsafe { libc::memfd_create(c"kite-code".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is the memfd we just created.
    let sized = unsafe { libc::ftruncate(fd, size as libc::off_t) } == 0;
    let views = if sized {
        match (map(size, libc::PROT_READ | libc::PROT_WRITE, fd), map(size, libc::PROT_READ | libc::PROT_EXEC, fd)) {
            (Some(w), Some(x)) => Some((w, x)),
            (w, x) => {
                w.into_iter().chain(x).for_each(|p| unmap(p, size));
                None
            }
        }
    } else {
        None
    };
    // SAFETY: closing our own descriptor; the mappings keep the memory alive.
    unsafe { libc::close(fd) };
    views
}

impl CodeCache {
    pub(crate) fn new(size: usize) -> Result<CodeCache, JitError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = if page > 0 { page as usize } else { 4096 };
        let size = size.max(64 * 1024).next_multiple_of(page);
        // perf reads `/tmp/perf-<pid>.map` only for anonymous mappings, so under
        // `-perfmap` the cache is one anonymous read-write-execute view (QEMU's default
        // layout): a profiling mode, not worth a memfd's W^X.
        let rwx = || map(size, libc::PROT_READ | libc::PROT_WRITE | libc::PROT_EXEC, -1);
        let (exec, write) = match if crate::perfmap::on() { None } else { dual_map(size) } {
            Some((w, x)) => (x, Some(w)),
            None if crate::perfmap::on() => {
                let p = rwx().ok_or_else(os_err)?;
                (p, Some(p))
            }
            None => {
                log::debug!("code cache: no double mapping ({}), using mprotect", std::io::Error::last_os_error());
                (map(size, libc::PROT_READ | libc::PROT_WRITE, -1).ok_or_else(os_err)?, None)
            }
        };
        Ok(CodeCache { exec, write, size, used: 0, permanent: 0, page, populated: 0, ahead: None })
    }

    /// The writable alias of executable address `exec` (inside the cache), or `None`
    /// in the `mprotect` fallback, where code cannot be patched in place.
    pub(crate) fn writable(&self, exec: *const u8) -> Option<*mut u8> {
        let off = (exec as usize).checked_sub(self.exec as usize).filter(|&o| o < self.size)?;
        // SAFETY: `off < size`: inside the writable view.
        self.write.map(|w| unsafe { w.add(off) })
    }

    /// Copy `code` in and return its (executable) address, or `None` if it does not fit.
    pub(crate) fn add(&mut self, code: &[u8]) -> Result<Option<*const u8>, JitError> {
        let start = self.used.next_multiple_of(FUNC_ALIGN);
        let end = match start.checked_add(code.len()) {
            Some(e) if e <= self.size => e,
            _ => return Ok(None),
        };
        if end > self.populated {
            self.populate(end);
        }
        match self.write {
            Some(w) => {
                // SAFETY: [start, end) is inside the writable view (end <= size); the
                // source is a separate Rust slice. The bytes are not yet reachable from any
                // TB, so no code runs from them while they are written.
                unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), w.add(start), code.len()) };
            }
            None => {
                let pstart = start / self.page * self.page;
                let pend = end.next_multiple_of(self.page);
                // SAFETY: [pstart, pend) lies inside our mapping (end <= size and size is
                // page aligned); no generated code runs while the dispatcher installs code.
                let base = unsafe { self.exec.add(pstart) };
                self.protect(base, pend - pstart, libc::PROT_READ | libc::PROT_WRITE)?;
                // SAFETY: the destination range is inside the mapping and now writable; the
                // source is a separate Rust slice.
                unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.exec.add(start), code.len()) };
                self.protect(base, pend - pstart, libc::PROT_READ | libc::PROT_EXEC)?;
            }
        }
        self.used = end;
        // SAFETY: `start < size`, inside the mapping.
        Ok(Some(unsafe { self.exec.add(start) } as *const u8))
    }

    /// Fault in the pages of the next chunk(s) up to `end` with one system call per view
    /// instead of one page fault per 4 KiB page per view (each a host exit in a VM: ~12,000
    /// faults in a Linux boot), and have the helper thread fault in the chunks after them.
    /// Best effort: without `MADV_POPULATE_*` (Linux < 5.14) the pages fault in on first
    /// use as before.
    fn populate(&mut self, end: usize) {
        let to = end.next_multiple_of(POPULATE_CHUNK).min(self.size);
        let Some(w) = self.write else {
            self.populated = to;
            return;
        };
        let (exec, size) = (self.exec, self.size);
        let ahead = self.ahead.get_or_insert_with(|| Populator::start(w, exec, size));
        let from = match ahead {
            Some(p) => {
                p.request((to + POPULATE_AHEAD).min(self.size));
                p.shared.done.load(Ordering::Acquire).max(self.populated)
            }
            None => self.populated,
        };
        if from < to {
            // SAFETY: [from, to) lies inside both views of our mapping (to <= size; both
            // multiples of the page size).
            unsafe { populate_views(w as usize, self.exec as usize, from, to) };
            if let Some(Some(p)) = &self.ahead {
                p.shared.done.fetch_max(to, Ordering::Release);
            }
        }
        self.populated = to;
    }

    fn protect(&self, p: *mut u8, len: usize, prot: libc::c_int) -> Result<(), JitError> {
        // SAFETY: `p..p+len` is a page-aligned range of our own mapping, which holds no
        // Rust objects.
        if unsafe { libc::mprotect(p as *mut libc::c_void, len, prot) } != 0 {
            return Err(os_err());
        }
        Ok(())
    }

    /// Everything added so far survives [`CodeCache::reset`].
    pub(crate) fn make_permanent(&mut self) {
        self.permanent = self.used;
    }

    /// Forget every non-permanent function. The caller must have dropped every pointer
    /// into that code (TB map, chain slots, jump cache).
    pub(crate) fn reset(&mut self) {
        self.used = self.permanent;
    }
}

impl Drop for CodeCache {
    fn drop(&mut self) {
        // The helper must be done with the views before they go.
        drop(self.ahead.take());
        // The engine that owns the cache is being dropped, so no code in it can run.
        unmap(self.exec, self.size);
        if let Some(w) = self.write.filter(|&w| w != self.exec) {
            unmap(w, self.size);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill_and_reset(mut c: CodeCache) {
        let ret = [0xc3u8; 100];
        let a = c.add(&ret).unwrap().unwrap();
        c.make_permanent();
        let b = c.add(&ret).unwrap().unwrap();
        assert_eq!(b as usize % FUNC_ALIGN, 0);
        assert!(b as usize >= a as usize + 100);
        let mut n = 0;
        while c.add(&ret).unwrap().is_some() {
            n += 1;
        }
        assert!(n > 500);
        c.reset();
        assert_eq!(c.add(&ret).unwrap().unwrap(), b);
        // The permanent code is still intact, read through the executable view.
        // SAFETY: `a` points at 100 readable bytes we copied in.
        assert_eq!(unsafe { *a }, 0xc3);
    }

    #[test]
    fn add_until_full_then_reset() {
        let c = CodeCache::new(64 * 1024).unwrap();
        assert!(c.write.is_some(), "the double mapping is available on Linux");
        fill_and_reset(c);
    }

    #[test]
    fn mprotect_fallback_works_too() {
        let size = 64 * 1024;
        let exec = map(size, libc::PROT_READ | libc::PROT_WRITE, -1).unwrap();
        fill_and_reset(CodeCache {
            exec,
            write: None,
            size,
            used: 0,
            permanent: 0,
            page: 4096,
            populated: 0,
            ahead: None,
        });
    }

    #[test]
    fn code_written_through_one_view_runs_from_the_other() {
        let mut c = CodeCache::new(64 * 1024).unwrap();
        // mov eax, 42; ret
        let f = c.add(&[0xb8, 42, 0, 0, 0, 0xc3]).unwrap().unwrap();
        // SAFETY: `f` is the executable address of the 6 bytes above, a complete
        // SystemV function returning an int.
        let f: extern "C" fn() -> u32 = unsafe { std::mem::transmute(f) };
        assert_eq!(f(), 42);
    }

    #[test]
    fn the_helper_populates_ahead_and_stops_with_the_cache() {
        let size = 8 * POPULATE_CHUNK;
        let mut c = CodeCache::new(size).unwrap();
        let code = vec![0xc3u8; 4096];
        c.add(&code).unwrap().unwrap();
        let shared = c.ahead.as_ref().and_then(Option::as_ref).expect("helper started").shared.clone();
        let t0 = std::time::Instant::now();
        while shared.done.load(Ordering::Acquire) < POPULATE_CHUNK + POPULATE_AHEAD {
            assert!(t0.elapsed().as_secs() < 20, "helper stuck at {}", shared.done.load(Ordering::Acquire));
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // Filling the rest needs no synchronous population and sees the bytes written.
        while let Some(f) = c.add(&code).unwrap() {
            // SAFETY: `f` is the executable address of the 4096 bytes just copied in.
            assert_eq!(unsafe { *f }, 0xc3);
        }
        assert_eq!(shared.done.load(Ordering::Acquire), size);
        drop(c);
        assert_eq!(Arc::strong_count(&shared), 1, "the helper thread has exited");
    }
}
