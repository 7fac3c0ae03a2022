//! Real-time clocks.
//!
//! - [`goldfish`]: the Goldfish RTC of QEMU `virt` (wall-clock time in
//!   nanoseconds since the Unix epoch, with an alarm interrupt).

pub mod goldfish;

pub use goldfish::GoldfishRtc;
