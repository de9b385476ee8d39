//! netpol-nft: the data plane. Compiles the engine's model into an nftables ruleset ([`ruleset`]), applies it
//! ([`apply`], the only module that runs `nft`), builds network-namespace labs of "pods" ([`lab`]) and probes them
//! with real connections ([`probe`]).

pub mod apply;
pub mod connectivity;
pub mod lab;
pub mod observe;
pub mod probe;
pub mod ruleset;
