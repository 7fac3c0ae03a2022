//! Tests of the whole accelerator with a tiny mock guest: IR differential tests
//! (interpreter tier vs JIT on identical state and memory) and engine tests (chaining,
//! self-modifying code, TLB, exit requests, code-cache flushes).

mod diff;
mod engine;
mod mock;
mod shared;
