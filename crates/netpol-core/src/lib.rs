//! netpol-core: the pure NetworkPolicy engine. Bytes in, answers out; no I/O.
//!
//! Data flows one way: [`load`] (bytes → [`model`]) → [`compile`] (identities, selector cache, port sets) →
//! answers: [`verdict`] (one flow, with its explanation) and [`matrix`] (all pairs). [`reference`] is a naive
//! evaluator used only to check the fast paths.

pub mod compile;
pub mod dataplane;
pub mod diff;
pub mod eval;
pub mod ipranges;
pub mod labels;
pub mod lint;
pub mod load;
pub mod matrix;
pub mod model;
pub mod outside;
pub mod portset;
pub mod reference;
pub mod selector;
pub mod suggest;
pub mod update;
pub mod verdict;
