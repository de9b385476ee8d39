//! Synthetic cluster generator.
