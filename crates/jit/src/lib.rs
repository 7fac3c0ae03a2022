//! Kite translator.
