//! The reference evaluator: a direct, naive reading of the NetworkPolicy rules on the model, with no caches
//! and no identities. It is the oracle the property tests compare the compiled engine and the matrix with;
//! keep it obviously correct rather than fast.

use std::net::IpAddr;

use crate::compile::Endpoint;
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

fn peer_matches(c: &Cluster, policy: &Policy, peer: &Peer, ep: &Endpoint) -> bool {
    match peer {
        Peer::IpBlock(b) => ip_of(c, ep).is_some_and(|ip| b.contains(ip)),
        Peer::Selectors { namespaces, pods } => {
            let Endpoint::Pod { pod, .. } = *ep else {
                return false;
            };
            let pod = c.pod(pod);
            if pod.host_network {
                return false;
            }
            let ns_ok = match namespaces {
                None => pod.ns == policy.ns,
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

fn side_allows(
    c: &Cluster,
    subject: PodId,
    dir: Direction,
    other: &Endpoint,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    let pod = c.pod(subject);
    if pod.host_network {
        return true;
    }
    let selecting: Vec<&Policy> =
        c.policies.iter().filter(|p| p.ns == pod.ns && p.affects(dir) && p.pod_selector.matches(&pod.labels)).collect();
    if selecting.is_empty() {
        return true;
    }
    selecting.iter().any(|pol| {
        pol.rules(dir).iter().any(|r| {
            port_matches(c, r, proto, port, dst)
                && (r.peers.is_empty() || r.peers.iter().any(|p| peer_matches(c, pol, p, other)))
        })
    })
}

/// Whether a connection from `src` to `dst` on `proto`/`port` is allowed.
pub fn allowed(c: &Cluster, src: &Endpoint, dst: &Endpoint, proto: Protocol, port: u16) -> bool {
    if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
        if a == b {
            return true;
        }
    }
    let egress = match src {
        Endpoint::Pod { pod, .. } => side_allows(c, *pod, Direction::Egress, dst, dst, proto, port),
        Endpoint::External(_) => true,
    };
    let ingress = match dst {
        Endpoint::Pod { pod, .. } => side_allows(c, *pod, Direction::Ingress, src, dst, proto, port),
        Endpoint::External(_) => true,
    };
    egress && ingress
}
