//! netpol-nft: the data plane's rules. Compiles the engine's model into an nftables ruleset ([`ruleset`], pure),
//! applies it ([`apply`], the only module that runs `ip` and `nft`, behind the [`apply::Runner`] trait), and reads
//! `nft monitor trace` ([`observe`], pure). The lab that enforces the ruleset on network-namespace pods, and its
//! probes, are in `netpol-lab`.

#![forbid(unsafe_code)]

pub mod apply;
pub mod observe;
pub mod ruleset;
