//! The reference evaluator: a direct, naive reading of the policy rules on the model, with no caches, no
//! identities and no compiled tiers. It is the oracle the property tests compare the compiled engine and the
//! matrix with; keep it obviously correct rather than fast.
//!
//! One direction of a flow, at a pod that is not on the host network (host-network pods are never a subject),
//! as Calico's Felix evaluates it (and as the Kubernetes APIs say for their kinds, which are Calico's three
//! built-in tiers):
//! 1. the tiers in order (by `order`, none last; equal orders by name): Admin (`kube-admin`, 1,000), Calico's
//!    own tiers, NetworkPolicy (`default`, 1,000,000), Baseline (`kube-baseline`, 10,000,000);
//! 2. a tier none of whose policies selects the pod for this direction is skipped;
//! 3. otherwise its policies by order (lower first, none last; equal orders by name, namespace and kind), their
//!    rules in order: the first rule that matches decides — allow, deny, or pass (skip the rest of the tier);
//!    log rules go on;
//! 4. nothing decided: the tier's default action — deny (NetworkPolicy isolation), or on to the next tier;
//! 5. after the last tier: allowed.
//!
//! A Calico rule matches when its ports, protocols and both sides match: an address matches a selector when it
//! is the address of a pod the selector matches (by the pod's Calico labels) or lies in the nets of a network
//! set the selector matches.

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
        Peer::Calico(cp) => calico_matches(c, cp, other.ep),
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

/// Whether a Calico entity rule's criteria match an endpoint.
fn calico_matches(c: &Cluster, cp: &CalicoPeer, ep: &Endpoint) -> bool {
    let ip = ip_of(c, ep);
    let labels = match *ep {
        Endpoint::Pod { pod, .. } if !c.pod(pod).host_network => Some(c.pod_calico_labels(c.pod(pod))),
        _ => None,
    };
    let in_sel = |expr: &crate::calico_selector::Expr| {
        labels.as_ref().is_some_and(|l| expr.matches(l))
            || ip.is_some_and(|ip| {
                c.network_sets.iter().any(|s| {
                    expr.matches(&network_set_labels(s, s.ns.map(|n| c.ns(n))))
                        && s.nets.iter().any(|n| n.contains(&ip))
                })
            })
    };
    cp.selector.as_ref().is_none_or(in_sel)
        && (cp.nets.is_empty() || ip.is_some_and(|ip| cp.nets.iter().any(|n| n.contains(&ip))))
        && !cp.not_selector.as_ref().is_some_and(in_sel)
        && !ip.is_some_and(|ip| cp.not_nets.iter().any(|n| n.contains(&ip)))
        // Felix drops a rule for a family its non-empty notNets has no CIDR of (`FilterRuleToIPVersion`).
        && (cp.not_nets.is_empty()
            || ip.is_none_or(|ip| cp.not_nets.iter().any(|n| matches!(n, ipnet::IpNet::V6(_)) == ip.is_ipv6())))
        && cp.ip_version.is_none_or(|v| ip.is_none_or(|ip| ip.is_ipv6() == (v == 6)))
}

/// Whether a Calico rule's protocols and `notPorts` let the flow through (its `ports` are checked as any rule's).
fn calico_ports_match(c: &Cluster, cr: &CalicoRule, proto: Protocol, port: u16, dst: &Endpoint) -> bool {
    let number = proto.number();
    // ICMP's "port" is `type << 8 | code`.
    let icmp_hit = |(t, code): (u8, Option<u8>)| {
        !proto.has_ports() && port >> 8 == u16::from(t) && code.is_none_or(|c| port & 0xff == u16::from(c))
    };
    let unevaluable = cr.unsupported.is_some() || !cr.src_ports.is_empty() || !cr.not_src_ports.is_empty();
    let not_port = cr.not_ports.iter().any(|p| {
        p.protocol == proto
            && match &p.port {
                PortMatch::Any => true,
                PortMatch::Range(lo, hi) => *lo <= port && port <= *hi,
                PortMatch::Named(name) => match dst {
                    Endpoint::Pod { pod, .. } => c.pod(*pod).named_port(name, proto) == Some(port),
                    Endpoint::External(_) => false,
                },
            }
    });
    !unevaluable
        && cr.protocol.is_none_or(|p| p == number)
        && cr.not_protocol != Some(number)
        && !not_port
        && cr.icmp.is_none_or(icmp_hit)
        && !cr.not_icmp.is_some_and(icmp_hit)
}

/// The first rule of a tier's policies (in order) that matches the flow: its action.
#[allow(clippy::too_many_arguments)]
fn tier_action(
    c: &Cluster,
    pols: &[&Policy],
    dir: Direction,
    me: &Endpoint,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> Option<Action> {
    pols.iter()
        .flat_map(|pol| pol.rules(dir).iter().map(move |r| (pol, r)))
        .filter(|(_, r)| r.action != Action::Log)
        .find(|(pol, r)| {
            rule_matches(c, pol, r, other, dst, proto, port)
                && r.calico.as_ref().is_none_or(|cr| {
                    calico_ports_match(c, cr, proto, port, dst)
                        && cr.local.as_ref().is_none_or(|l| calico_matches(c, l, me))
                })
        })
        .map(|(_, r)| r.action)
}

#[allow(clippy::too_many_arguments)]
fn side_allows(
    c: &Cluster,
    subject: PodId,
    me: &Endpoint,
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
    let builtin = TierDef::builtin();
    let defs = if c.tiers.len() < 3 { &builtin } else { &c.tiers };
    let mut tiers: Vec<usize> = (0..defs.len()).collect();
    tiers.sort_by(|&a, &b| {
        let order = |t: &TierDef| t.order.unwrap_or(f64::INFINITY);
        order(&defs[a]).total_cmp(&order(&defs[b])).then_with(|| defs[a].name.cmp(&defs[b].name))
    });
    for t in tiers {
        let mut pols: Vec<&Policy> = selecting.iter().copied().filter(|p| p.tier.index() == t).collect();
        if pols.is_empty() {
            continue;
        }
        let ns = |p: &Policy| p.ns().map(|n| c.ns_name(n).to_string()).unwrap_or_default();
        pols.sort_by(|a, b| {
            (a.order, &a.name, ns(a), a.kind.calico_kind()).cmp(&(b.order, &b.name, ns(b), b.kind.calico_kind()))
        });
        match tier_action(c, &pols, dir, me, other, dst, proto, port) {
            Some(Action::Allow) => return true,
            Some(Action::Deny) => return false,
            Some(Action::Pass) => continue,
            _ if defs[t].default_action == Action::Deny => return false,
            _ => continue,
        }
    }
    true
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
            side_allows(c, *pod, src, Direction::Egress, &Other { ep: dst, name: dst_name }, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    let ingress = match dst {
        Endpoint::Pod { pod, .. } => {
            side_allows(c, *pod, dst, Direction::Ingress, &Other { ep: src, name: None }, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    egress && ingress
}
