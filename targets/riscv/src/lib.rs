//! RISC-V frontend.
