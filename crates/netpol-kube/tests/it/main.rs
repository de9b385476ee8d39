//! One integration-test binary for the crate (each file a module).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[macro_use]
mod common;
mod admin;
mod antrea;
mod calico;
mod cilium;
