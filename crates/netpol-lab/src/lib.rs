//! netpol-lab: the data plane on this machine. Builds network-namespace labs of "pods" routed through a node
//! namespace that enforces the nftables ruleset, or through several nodes joined by a routed fabric ([`lab`]),
//! makes real connections inside those namespaces ([`probe`]), and places and observes flows there
//! ([`connectivity`]).
//!
//! Every command against the kernel goes through `netpol_nft::apply`; this crate holds all of netpol's `unsafe`
//! code: `setns(2)` and sockets inside namespaces ([`probe`]), and [`euid`].

pub mod connectivity;
pub mod lab;
pub mod probe;

/// The effective user id of this process (the lab needs root).
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}
