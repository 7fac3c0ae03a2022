//! Miscellaneous devices.

pub mod test_finisher;

pub use test_finisher::TestFinisher;
