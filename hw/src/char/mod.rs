//! Character devices (serial ports).

pub mod ns16550;

pub use ns16550::Ns16550;
