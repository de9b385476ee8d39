//! The reference evaluator: a direct, naive reading of the policy rules on the model, with no caches, no
//! identities and no compiled tiers. It is the oracle the property tests compare the compiled engine and the
//! matrix with; keep it obviously correct rather than fast.
//!
//! One direction of a flow, at a pod that is not on the host network (host-network pods are never a subject):
//! 1. the Admin tier: the policies selecting the pod, by priority (lower first; equal priorities by kind, then
//!    name), their rules in order; the first rule whose peer and ports match decides: allow, deny, or pass
//!    (skip the rest of the Admin tier);
//! 2. NetworkPolicy: if any NetworkPolicy selects the pod for this direction, the flow is allowed if one of
//!    their rules matches it, denied otherwise;
//! 3. the Baseline tier, as the Admin tier (pass: on to the default);
//! 4. allowed.

use std::net::IpAddr;

use crate::compile::{domain_matches, Endpoint};
use crate::model::*;
use crate::portset::Protocol;

/// The address of an endpoint; an IPv4-mapped IPv6 address is its IPv4 address (as in Go's `net` package).
fn ip_of(c: &Cluster, ep: &Endpoint) -> Option<IpAddr> {
    match *ep {
        Endpoint::Pod { pod, ip } => ip.or_else(|| c.pod(pod).primary_ip()),
        Endpoint::External(ip) => Some(ip),
    }
    .map(|ip| ip.to_canonical())
}

/// The other end of a flow, seen from the subject: the endpoint, and the DNS name it was resolved from (only
/// for a destination).
struct Other<'a> {
    ep: &'a Endpoint,
    name: Option<&'a str>,
}

fn peer_matches(c: &Cluster, policy: &Policy, peer: &Peer, other: &Other<'_>) -> bool {
    match peer {
        // Stated in the next step of Calico support; no loader produces it yet.
        Peer::Calico(_) => false,
        Peer::IpBlock(b) => ip_of(c, other.ep).is_some_and(|ip| b.contains(ip)),
        Peer::Networks(nets) => ip_of(c, other.ep).is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
        Peer::Nodes(sel) => ip_of(c, other.ep).is_some_and(|ip| {
            c.nodes.iter().any(|n| sel.matches(&n.labels) && n.ips.iter().any(|a| a.to_canonical() == ip))
        }),
        Peer::DomainNames(names) => other.name.is_some_and(|name| names.iter().any(|d| domain_matches(d, name))),
        Peer::Selectors { namespaces, pods } => {
            let Endpoint::Pod { pod, .. } = *other.ep else {
                return false;
            };
            let pod = c.pod(pod);
            if pod.host_network {
                return false;
            }
            let ns_ok = match namespaces {
                None => policy.ns() == Some(pod.ns),
                Some(sel) => sel.matches(&c.ns(pod.ns).labels),
            };
            ns_ok && pods.as_ref().is_none_or(|sel| sel.matches(&pod.labels))
        }
    }
}

fn port_matches(c: &Cluster, rule: &Rule, proto: Protocol, port: u16, dst: &Endpoint) -> bool {
    rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol == proto
                && match &p.port {
                    PortMatch::Any => true,
                    PortMatch::Range(lo, hi) => *lo <= port && port <= *hi,
                    PortMatch::Named(name) => match dst {
                        Endpoint::Pod { pod, .. } => c.pod(*pod).named_port(name, proto) == Some(port),
                        Endpoint::External(_) => false,
                    },
                }
        })
}

fn rule_matches(
    c: &Cluster,
    pol: &Policy,
    r: &Rule,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    port_matches(c, r, proto, port, dst)
        && (r.peers.is_empty() || r.peers.iter().any(|p| peer_matches(c, pol, p, other)))
}

/// The first action of an admin tier's rules that matches, in order.
#[allow(clippy::too_many_arguments)]
fn admin_tier(
    c: &Cluster,
    selecting: &[&Policy],
    tier: PolicyTier,
    dir: Direction,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> Option<Action> {
    let mut pols: Vec<&&Policy> = selecting.iter().filter(|p| p.tier == tier).collect();
    pols.sort_by(|a, b| (a.order, a.kind, &a.name).cmp(&(b.order, b.kind, &b.name)));
    pols.iter()
        .flat_map(|pol| pol.rules(dir).iter().map(move |r| (pol, r)))
        .filter(|(_, r)| r.action != Action::Log)
        .find(|(pol, r)| rule_matches(c, pol, r, other, dst, proto, port))
        .map(|(_, r)| r.action)
}

#[allow(clippy::too_many_arguments)]
fn side_allows(
    c: &Cluster,
    subject: PodId,
    dir: Direction,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    let pod = c.pod(subject);
    if pod.host_network {
        return true;
    }
    let ns_labels = &c.ns(pod.ns).labels;
    let selecting: Vec<&Policy> = c
        .policies
        .iter()
        .filter(|p| p.affects(dir) && p.selects(pod.ns, ns_labels, &pod.labels, || c.pod_calico_labels(pod)))
        .collect();
    match admin_tier(c, &selecting, PolicyTier::Admin, dir, other, dst, proto, port) {
        Some(Action::Allow) => return true,
        Some(Action::Deny) => return false,
        _ => {}
    }
    let nps: Vec<&&Policy> = selecting.iter().filter(|p| p.tier == PolicyTier::NetworkPolicy).collect();
    if !nps.is_empty() {
        return nps.iter().any(|pol| pol.rules(dir).iter().any(|r| rule_matches(c, pol, r, other, dst, proto, port)));
    }
    admin_tier(c, &selecting, PolicyTier::Baseline, dir, other, dst, proto, port) != Some(Action::Deny)
}

/// Whether a connection from `src` to `dst` on `proto`/`port` is allowed.
pub fn allowed(c: &Cluster, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> bool {
    allowed_named(c, src, dst, None, proto, port)
}

/// Whether a connection from `src` to `dst` (an address resolved from the DNS name `dst_name`) on
/// `proto`/`port` is allowed.
pub fn allowed_named(
    c: &Cluster,
    src: &Endpoint,
    dst: &Endpoint,
    dst_name: Option<&str>,
    proto: Protocol,
    port: u16,
) -> bool {
    if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
        if a == b {
            return true;
        }
    }
    let egress = match src {
        Endpoint::Pod { pod, .. } => {
            side_allows(c, *pod, Direction::Egress, &Other { ep: dst, name: dst_name }, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    let ingress = match dst {
        Endpoint::Pod { pod, .. } => {
            side_allows(c, *pod, Direction::Ingress, &Other { ep: src, name: None }, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    egress && ingress
}
