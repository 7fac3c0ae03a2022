//! Miscellaneous devices.

pub mod htif;
pub mod test_finisher;

pub use test_finisher::TestFinisher;
