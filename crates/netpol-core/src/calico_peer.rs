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
use crate::ipranges::BlockRanges;
use crate::model::CalicoPeer;

crate::typed_id!(
    /// A distinct Calico entity rule of the engine: its index in the engine's Calico peers.
    CalicoId
);

/// Addresses as sorted, merged, disjoint intervals per family: membership is a binary search however many CIDRs
/// went in.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Intervals {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Intervals {
    /// The union of the blocks' ranges.
    pub(crate) fn of(ranges: &[BlockRanges], blocks: &[BlockId]) -> Intervals {
        let mut v: [Vec<(u128, u128)>; 2] = Default::default();
        for b in blocks {
            if let Some(r) = ranges.get(b.index()) {
                v[usize::from(r.v6)].extend_from_slice(&r.ranges);
            }
        }
        let merge = |mut x: Vec<(u128, u128)>| {
            x.sort_unstable();
            let mut out: Vec<(u128, u128)> = Vec::with_capacity(x.len());
            for (lo, hi) in x {
                match out.last_mut() {
                    Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                    _ => out.push((lo, hi)),
                }
            }
            out
        };
        let [v4, v6] = v;
        Intervals { v4: merge(v4), v6: merge(v6) }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let (v6, n) = crate::ipranges::num(ip.to_canonical());
        let r = if v6 { &self.v6 } else { &self.v4 };
        let i = r.partition_point(|&(_, hi)| hi < n);
        r.get(i).is_some_and(|&(lo, _)| lo <= n)
    }
}

/// How the criteria look an address up in their blocks.
#[derive(Clone, Copy)]
pub(crate) enum Lookup<'a> {
    /// A primary pod address, by its ip class (the blocks containing it, sorted).
    Class(&'a [BlockId]),
    /// Any address, in the criteria's merged intervals.
    Exact,
}

/// Whether two sorted block lists share a block (the shorter one searched in the longer).
fn share(a: &[BlockId], b: &[BlockId]) -> bool {
    let (small, large) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    small.iter().any(|x| large.binary_search(x).is_ok())
}

/// Endpoints a Calico selector matches: identities by their labels, and the network sets' nets (as blocks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelMatch {
    pub idents: IdSet,
    pub blocks: Vec<BlockId>,
    /// `blocks` as merged intervals.
    pub intervals: Intervals,
    /// Indexes of the matched network sets in the cluster (for explanations).
    pub sets: Vec<usize>,
    /// Indexes of the matched host endpoints in the cluster.
    pub heps: Vec<usize>,
}

/// A compiled [`CalicoPeer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CCalico {
    pub peer: CalicoPeer,
    pub sel: Option<SelMatch>,
    pub not_sel: Option<SelMatch>,
    /// `nets` as blocks (`None`: no criterion), and as merged intervals.
    pub nets: Option<Vec<BlockId>>,
    pub nets_intervals: Intervals,
    pub not_nets: Vec<BlockId>,
    pub not_nets_intervals: Intervals,
    /// Which families `notNets` has CIDRs of (IPv4, IPv6): Felix drops a rule for a family its non-empty
    /// `notNets` has no CIDR of (`FilterRuleToIPVersion`), so then it matches no address of that family.
    pub not_nets_families: (bool, bool),
    /// `ipVersion`: `Some(true)` for 6.
    pub v6: Option<bool>,
    /// The identities matched at their primary address (hostNetwork ones by their address only).
    pub pods: IdSet,
    /// With `peer.outside_only`: the nodes' addresses (sorted), which such a peer never matches.
    pub node_ips: Vec<IpAddr>,
}

impl CCalico {
    /// Whether an endpoint matches: `ident` when it is a (non-hostNetwork) pod, `ip` its address if known.
    /// A pod without a known address passes `ipVersion` (it is assumed to have one of each family) but never
    /// `nets`.
    pub(crate) fn matches_parts(&self, lk: Lookup<'_>, ident: Option<IdentityId>, ip: Option<IpAddr>) -> bool {
        let labels = |m: &Option<SelMatch>| m.as_ref().is_some_and(|m| ident.is_some_and(|i| m.idents.contains(i)));
        self.matches_labelled(lk, [labels(&self.sel), labels(&self.not_sel)], ip)
    }

    /// [`CCalico::matches_parts`] with the endpoint's labels already looked up: whether `selector` and
    /// `notSelector` match them (`labelled`), the address then decides the rest.
    pub(crate) fn matches_labelled(&self, lk: Lookup<'_>, labelled: [bool; 2], ip: Option<IpAddr>) -> bool {
        let inside = |blocks: &[BlockId], iv: &Intervals| {
            ip.is_some_and(|ip| match lk {
                Lookup::Class(c) => share(c, blocks),
                Lookup::Exact => iv.contains(ip),
            })
        };
        let hit = |m: &SelMatch, by_labels: bool| by_labels || inside(&m.blocks, &m.intervals);
        if self.peer.outside_only && ip.is_some_and(|ip| self.node_ips.binary_search(&ip.to_canonical()).is_ok()) {
            return false;
        }
        self.sel.as_ref().is_none_or(|m| hit(m, labelled[0]))
            && self.nets.as_ref().is_none_or(|n| inside(n, &self.nets_intervals))
            && !self.not_sel.as_ref().is_some_and(|m| hit(m, labelled[1]))
            && !inside(&self.not_nets, &self.not_nets_intervals)
            && (self.peer.not_nets.is_empty()
                || ip.is_none_or(|ip| if ip.is_ipv6() { self.not_nets_families.1 } else { self.not_nets_families.0 }))
            && self.v6.is_none_or(|v6| ip.is_none_or(|ip| ip.is_ipv6() == v6))
    }

    /// Whether the peer matches an endpoint of a flow (the hot path for a pod at its primary address).
    #[inline]
    pub(crate) fn matches(&self, ep: &EpInfo<'_>, label_ident: Option<IdentityId>) -> bool {
        match (ep.ident, ep.ip_class) {
            // A pod's address, whatever it is, is never outside the cluster.
            (Some(_), _) if self.peer.outside_only => false,
            (Some(i), Some(_)) => self.pods.contains(i),
            _ => self.matches_parts(Lookup::Exact, label_ident, ep.ip),
        }
    }
}
