//! One integration-test binary for the crate (each file a module): one link of the dependencies instead of one
//! per file keeps a clean `cargo test --workspace` small on disk and quick to link.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod admin_load;
mod antrea_eval;
mod calico_load;
mod cilium_load;
mod cilium_properties;
mod cilium_refs;
mod cni;
mod common;
mod diff;
mod except_list;
mod load;
mod properties;
mod semantics;
mod staged;
mod tiers;
mod update;
