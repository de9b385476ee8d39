//! Calico's entity rules compiled: which identities and which addresses a [`CalicoPeer`] matches.
//!
//! Felix matches a selector through IP sets: the addresses of every endpoint the selector matches — a pod's
//! workload endpoint by its labels (with Calico's namespace, service-account and profile labels, see
//! [`crate::model::calico_labels`]), a network set by its labels, whose member addresses are its nets. So an
//! address matches `selector` when it is a matched pod's address or lies in a matched network set's nets (a pod
//! address inside such a set matches too), and `notSelector` excludes the same way. `nets`, `notNets` and
//! `ipVersion` are about the address alone; as Felix renders a rule once per IP family and drops it for a family
//! that its non-empty `nets` or `notNets` have no CIDR of, such a `notNets` matches no address of the other family.
//! Every criterion present must hold.
//!
//! Each CIDR involved (nets, notNets, network sets' nets, each family's whole space when `ipVersion` is used) is
//! an engine block, so an identity's ip class decides all of them for its pods' primary addresses: a peer holds
//! the identities it matches at their primary address (the hot path: one set lookup), and answers any other
//! address — a pod's second address, an address no pod has — from the criteria themselves.

use std::net::IpAddr;

use crate::compile::{BlockId, EpInfo, IdSet, IdentityId};
use crate::model::CalicoPeer;

crate::typed_id!(
    /// A distinct Calico entity rule of the engine: its index in the engine's Calico peers.
    CalicoId
);

/// Endpoints a Calico selector matches: identities by their labels, and the network sets' nets (as blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelMatch {
    pub idents: IdSet,
    pub blocks: Vec<BlockId>,
    /// Indexes of the matched network sets in the cluster (for explanations).
    pub sets: Vec<usize>,
}

/// A compiled [`CalicoPeer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CCalico {
    pub peer: CalicoPeer,
    pub sel: Option<SelMatch>,
    pub not_sel: Option<SelMatch>,
    /// `nets` as blocks (`None`: no criterion).
    pub nets: Option<Vec<BlockId>>,
    pub not_nets: Vec<BlockId>,
    /// Which families `notNets` has CIDRs of (IPv4, IPv6): Felix drops a rule for a family its non-empty
    /// `notNets` has no CIDR of (`FilterRuleToIPVersion`), so then it matches no address of that family.
    pub not_nets_families: (bool, bool),
    /// `ipVersion`: `Some(true)` for 6.
    pub v6: Option<bool>,
    /// The identities matched at their primary address (hostNetwork ones by their address only).
    pub pods: IdSet,
}

/// What the criteria need to know of an address: its blocks, by class or by lookup.
pub(crate) trait Blocks {
    fn in_any(&self, blocks: &[BlockId], ip: IpAddr) -> bool;
}

impl CCalico {
    /// Whether an endpoint matches: `ident` when it is a (non-hostNetwork) pod, `ip` its address if known.
    /// A pod without a known address passes `ipVersion` (it is assumed to have one of each family) but never
    /// `nets`.
    pub(crate) fn matches_parts(&self, b: &dyn Blocks, ident: Option<IdentityId>, ip: Option<IpAddr>) -> bool {
        let hit =
            |m: &SelMatch| ident.is_some_and(|i| m.idents.contains(i)) || ip.is_some_and(|ip| b.in_any(&m.blocks, ip));
        self.sel.as_ref().is_none_or(hit)
            && self.nets.as_ref().is_none_or(|n| ip.is_some_and(|ip| b.in_any(n, ip)))
            && !self.not_sel.as_ref().is_some_and(hit)
            && !ip.is_some_and(|ip| b.in_any(&self.not_nets, ip))
            && (self.peer.not_nets.is_empty()
                || ip.is_none_or(|ip| if ip.is_ipv6() { self.not_nets_families.1 } else { self.not_nets_families.0 }))
            && self.v6.is_none_or(|v6| ip.is_none_or(|ip| ip.is_ipv6() == v6))
    }

    /// Whether the peer matches an endpoint of a flow (the hot path for a pod at its primary address).
    #[inline]
    pub(crate) fn matches(&self, b: &dyn Blocks, ep: &EpInfo<'_>, label_ident: Option<IdentityId>) -> bool {
        match (ep.ident, ep.ip_class) {
            (Some(i), Some(_)) => self.pods.contains(i),
            _ => self.matches_parts(b, label_ident, ep.ip),
        }
    }
}
