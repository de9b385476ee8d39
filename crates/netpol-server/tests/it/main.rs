//! One integration-test binary for the crate (each file a module): one link of the dependencies instead of one
//! per file keeps a clean `cargo test --workspace` small on disk and quick to link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod calico;
mod cilium;
mod common;
mod flows;
mod graph;
#[cfg(feature = "kube")]
mod live;
mod serve;
mod tiers;
