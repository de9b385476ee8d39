//! netpol-core: the pure NetworkPolicy engine. Bytes in, answers out; no I/O.
//!
//! Data flows one way: [`load`] (bytes → [`model`]) → [`compile`] (identities, selector peers, tiers and rules
//! in order) → [`eval`], the one evaluator every answer goes through: [`verdict`] (one flow, with its
//! explanation), [`matrix`] (all pairs), [`outside`] (addresses outside the cluster), [`dataplane`] (what a data
//! plane enforces). [`staged`] gives the cluster as if its staged policies were enforced. [`reference`](mod@reference)
//! is a naive evaluator used only to check the others.
#![forbid(unsafe_code)]

pub mod calico_peer;
pub mod calico_selector;
pub mod cni;
pub mod compile;
pub mod dataplane;
pub mod diff;
pub mod eval;
pub mod host;
pub mod ipranges;
pub mod l7;
pub mod label_bits;
pub mod labels;
pub mod lint;
pub mod load;
pub mod matrix;
pub mod model;
pub mod outside;
mod par;
pub mod portset;
pub mod reference;
pub mod selector;
pub mod staged;
pub mod suggest;
pub mod update;
pub mod verdict;
