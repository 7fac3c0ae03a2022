//! Kite devices and machines.
