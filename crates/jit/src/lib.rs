//! Kite's translator (placeholder API; being implemented).
use std::sync::Arc;

use kite_core::{ExitCode, GuestCpu, VmControl};
use kite_memory::PhysMap;

/// Which executor runs translated blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Interp,
    Jit,
}

#[derive(Clone, Debug)]
pub struct JitOptions {
    pub tier: Tier,
    pub single_step: bool,
    pub code_cache_bytes: usize,
    pub verify: bool,
}

impl Default for JitOptions {
    fn default() -> Self {
        JitOptions { tier: Tier::Jit, single_step: false, code_cache_bytes: 64 << 20, verify: cfg!(debug_assertions) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JitError {
    #[error("cannot create the code cache: {0}")]
    CodeCache(String),
}

#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub tbs_compiled: u64,
}

#[derive(Debug)]
pub struct Engine<C: GuestCpu> {
    _mem: Arc<PhysMap>,
    vm: Arc<VmControl>,
    _opts: JitOptions,
    _cpu: std::marker::PhantomData<fn(C)>,
}

impl<C: GuestCpu> Engine<C> {
    pub fn new(mem: Arc<PhysMap>, vm: Arc<VmControl>, opts: JitOptions) -> Result<Self, JitError> {
        Ok(Engine { _mem: mem, vm, _opts: opts, _cpu: std::marker::PhantomData })
    }

    pub fn run(&mut self, _cpu: &mut C) -> ExitCode {
        log::error!("translator not implemented yet");
        self.vm.request_exit(ExitCode::Exit(1));
        ExitCode::Exit(1)
    }

    pub fn stats(&self) -> Stats {
        Stats::default()
    }
}
