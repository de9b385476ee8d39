//! One integration-test binary for the crate (each file a module): one link of the dependencies instead of one
//! per file keeps a clean `cargo test --workspace` small on disk and quick to link. The modules of commands that
//! need a cargo feature are built with it only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[cfg(all(feature = "lab", feature = "agent"))]
mod agent;
#[cfg(all(feature = "lab", feature = "agent"))]
mod agent_lab;
mod antrea_conformance;
#[cfg(feature = "lab")]
mod antrea_dataplane;
mod assertions;
mod calico_conformance;
#[cfg(feature = "lab")]
mod calico_dataplane;
mod cilium_conformance;
#[cfg(feature = "lab")]
mod cilium_dataplane;
mod cilium_l7;
mod cli;
mod common;
mod conformance;
#[cfg(feature = "lab")]
mod dataplane;
#[cfg(feature = "lab")]
mod dataplane_conformance;
mod diff;
mod flows;
mod hosts;
mod lint;
#[cfg(feature = "kube")]
mod live;
#[cfg(feature = "lab")]
mod multinode;
#[cfg(all(feature = "lab", feature = "agent"))]
mod multinode_conformance;
#[cfg(feature = "server")]
mod serve;
mod staged;
#[cfg(feature = "server")]
mod ui_e2e;
