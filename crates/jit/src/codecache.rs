//! The code cache: one anonymous mapping that compiled functions are appended to.
//!
//! Pages are writable only while new code is copied in and executable otherwise (W^X),
//! which costs two `mprotect` calls per TB. Code is never freed piecemeal: when the cache
//! is full the engine flushes every TB and [`CodeCache::reset`] rewinds to the end of the
//! permanent prefix (the entry trampoline), so addresses handed out earlier become stale
//! all at once.

use crate::JitError;

/// Alignment of every function in the cache.
const FUNC_ALIGN: usize = 16;

#[derive(Debug)]
pub(crate) struct CodeCache {
    base: *mut u8,
    size: usize,
    used: usize,
    /// Bytes at the start that survive [`CodeCache::reset`].
    permanent: usize,
    page: usize,
}

impl CodeCache {
    pub(crate) fn new(size: usize) -> Result<CodeCache, JitError> {
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        let page = if page > 0 { page as usize } else { 4096 };
        let size = size.max(64 * 1024).next_multiple_of(page);
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(JitError::CodeCache(std::io::Error::last_os_error().to_string()));
        }
        Ok(CodeCache { base: p as *mut u8, size, used: 0, permanent: 0, page })
    }

    /// Copy `code` in and return its address, or `None` if it does not fit.
    pub(crate) fn add(&mut self, code: &[u8]) -> Result<Option<*const u8>, JitError> {
        let start = self.used.next_multiple_of(FUNC_ALIGN);
        let end = match start.checked_add(code.len()) {
            Some(e) if e <= self.size => e,
            _ => return Ok(None),
        };
        let pstart = start / self.page * self.page;
        let pend = end.next_multiple_of(self.page);
        // SAFETY: [pstart, pend) lies inside our mapping (end <= size and size is page
        // aligned); no generated code runs while the dispatcher compiles.
        let base = unsafe { self.base.add(pstart) };
        self.protect(base, pend - pstart, libc::PROT_READ | libc::PROT_WRITE)?;
        // SAFETY: the destination range is inside the mapping and now writable; the source
        // is a separate Rust slice.
        unsafe { std::ptr::copy_nonoverlapping(code.as_ptr(), self.base.add(start), code.len()) };
        self.protect(base, pend - pstart, libc::PROT_READ | libc::PROT_EXEC)?;
        self.used = end;
        // SAFETY: `start < size`, inside the mapping.
        Ok(Some(unsafe { self.base.add(start) } as *const u8))
    }

    fn protect(&self, p: *mut u8, len: usize, prot: libc::c_int) -> Result<(), JitError> {
        // SAFETY: `p..p+len` is a page-aligned range of our own mapping, which holds no
        // Rust objects.
        if unsafe { libc::mprotect(p as *mut libc::c_void, len, prot) } != 0 {
            return Err(JitError::CodeCache(std::io::Error::last_os_error().to_string()));
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
        // SAFETY: unmapping exactly the mapping created in `new`; the engine that owns the
        // cache is being dropped, so no code in it can run any more.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.size) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_until_full_then_reset() {
        let mut c = CodeCache::new(64 * 1024).unwrap();
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
        // The permanent code is still intact.
        // SAFETY: `a` points at 100 readable bytes we copied in.
        assert_eq!(unsafe { *a }, 0xc3);
    }
}
