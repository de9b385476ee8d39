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

use crate::cni::Cni;
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
    /// `name` when Cilium learnt the address from it (the source's DNS went through a proxy rule that allows it).
    fqdn: Option<&'a str>,
    /// The request on the connection.
    request: Option<&'a crate::l7::Request>,
    /// The CNI whose reading of an ipBlock applies.
    cni: Cni,
}

fn peer_matches(c: &Cluster, policy: &Policy, me: &Endpoint, peer: &Peer, other: &Other<'_>) -> bool {
    match peer {
        // Cilium's `host` and `remote-node`: the Node whose address the other end uses, against the Node the
        // subject runs on (its `spec.nodeName`, when the input has that Node).
        Peer::SubjectNodes { own, others } => {
            let Some(theirs) = ip_of(c, other.ep).and_then(|ip| node_with_address(c, ip)) else { return false };
            let mine = match *me {
                Endpoint::Pod { pod, .. } => {
                    let p = c.pod(pod);
                    c.nodes.iter().position(|n| Some(n.name.as_str()) == p.node.as_deref())
                }
                Endpoint::External(ip) => node_with_address(c, ip.to_canonical()),
            };
            (*own && mine == Some(theirs)) || (*others && mine != Some(theirs))
        }
        // Cilium's `fromNodes`/`toNodes`: a Node the selector matches, never the subject's own.
        Peer::NodeSelector(sel) => {
            let Some(theirs) = ip_of(c, other.ep).and_then(|ip| node_with_address(c, ip)) else { return false };
            let mine = match *me {
                Endpoint::Pod { pod, .. } => {
                    let p = c.pod(pod);
                    c.nodes.iter().position(|n| Some(n.name.as_str()) == p.node.as_deref())
                }
                Endpoint::External(ip) => node_with_address(c, ip.to_canonical()),
            };
            mine != Some(theirs) && sel.matches(&c.nodes[theirs].labels)
        }
        Peer::Calico(cp) => calico_matches(c, cp, other.ep),
        // Cilium: a pod or a node's address has an identity of its own, which no CIDR selects.
        Peer::IpBlock(_) if other.cni == Cni::Cilium && is_cluster_address(c, other.ep) => false,
        Peer::IpBlock(b) => ip_of(c, other.ep).is_some_and(|ip| b.contains(ip)),
        Peer::Networks(nets) => ip_of(c, other.ep).is_some_and(|ip| nets.iter().any(|n| n.contains(&ip))),
        Peer::Nodes(sel) => ip_of(c, other.ep).is_some_and(|ip| {
            c.nodes.iter().any(|n| sel.matches(&n.labels) && n.ips.iter().any(|a| a.to_canonical() == ip))
        }),
        Peer::DomainNames(names) => other.name.is_some_and(|name| names.iter().any(|d| domain_matches(d, name))),
        Peer::Fqdns(sels) => {
            matches!(other.ep, Endpoint::External(_))
                && other.fqdn.is_some_and(|name| {
                    sels.iter().any(|d| {
                        crate::l7::DnsPattern::from_selector(&d.match_name, &d.match_pattern)
                            .is_ok_and(|p| p.matches(name))
                    })
                })
        }
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
            ns_ok && pods.as_ref().is_none_or(|sel| sel.matches(&selector_labels(c, pod)))
        }
    }
}

/// The Node (its index) that has address `ip` (canonical): the first one.
fn node_with_address(c: &Cluster, ip: IpAddr) -> Option<usize> {
    c.nodes.iter().position(|n| n.ips.iter().any(|a| a.to_canonical() == ip))
}

/// A pod (hostNetwork ones included) or an address of a node.
fn is_cluster_address(c: &Cluster, ep: &Endpoint) -> bool {
    matches!(ep, Endpoint::Pod { .. })
        || ip_of(c, ep).is_some_and(|ip| c.nodes.iter().any(|n| n.ips.iter().any(|a| a.to_canonical() == ip)))
}

fn port_matches(c: &Cluster, rule: &Rule, proto: Protocol, port: u16, dst: &Endpoint) -> bool {
    rule.ports.is_empty()
        || rule.ports.iter().any(|p| {
            p.protocol == proto
                && match &p.port {
                    PortMatch::Any => true,
                    PortMatch::Range(lo, hi) => *lo <= port && port <= *hi,
                    PortMatch::Named(name) => named_port(c, dst, name, proto) == Some(port),
                }
        })
}

/// A named port of the destination: a host endpoint's (at its address), else a pod's.
fn named_port(c: &Cluster, dst: &Endpoint, name: &str, proto: Protocol) -> Option<u16> {
    if let Some(h) = host_at(c, dst) {
        return h.ports.iter().find(|p| p.protocol == proto && p.name.as_deref() == Some(name)).map(|p| p.port);
    }
    match dst {
        Endpoint::Pod { pod, .. } => c.pod(*pod).named_port(name, proto),
        Endpoint::External(_) => None,
    }
}

/// The host endpoint whose address an endpoint is (an address, or a hostNetwork pod's), the first in input order.
fn host_at<'c>(c: &'c Cluster, ep: &Endpoint) -> Option<&'c HostEndpoint> {
    if let Endpoint::Pod { pod, .. } = *ep {
        if !c.pod(pod).host_network {
            return None;
        }
    }
    let ip = ip_of(c, ep)?;
    c.host_endpoints.iter().find(|h| {
        if h.expected_ips.is_empty() && h.all_interfaces() {
            c.nodes.iter().any(|n| n.name == h.node && n.ips.iter().any(|a| a.to_canonical() == ip))
        } else {
            h.expected_ips.contains(&ip)
        }
    })
}

#[allow(clippy::too_many_arguments)]
fn rule_matches(
    c: &Cluster,
    pol: &Policy,
    me: &Endpoint,
    r: &Rule,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    port_matches(c, r, proto, port, dst)
        && (r.peers.is_empty() || r.peers.iter().any(|p| peer_matches(c, pol, me, p, other)))
        && r.l7.as_ref().is_none_or(|l7| l7_allows(l7, other.request))
}

/// Whether a rule's L7 rules let the request through: none is the connection itself (accepted); an HTTP request
/// needs an HTTP rule that matches it, a DNS query a DNS rule; other parsers' rules are not judged.
fn l7_allows(l7: &crate::l7::L7Rules, request: Option<&crate::l7::Request>) -> bool {
    use crate::l7::{DnsPattern, HttpRule, Request};
    match request {
        None => true,
        Some(_) if l7.other.is_some() => true,
        Some(Request::Http(req)) => l7.http.iter().any(|r| HttpRule::compile(r).is_ok_and(|r| r.matches(req))),
        Some(Request::Dns(name)) => l7
            .dns
            .iter()
            .any(|d| DnsPattern::from_selector(&d.match_name, &d.match_pattern).is_ok_and(|p| p.matches(name))),
    }
}

/// Whether Cilium learns `name`'s addresses for traffic from `src`: one of the egress allow rules that govern it
/// has DNS rules allowing the name (its queries then go through the DNS proxy, which answers them). Those of a pod
/// off the host network are its policies'; those of a node's host namespace (a hostNetwork pod, or a Node's
/// address) the egress host policies selecting that Node (the docs' *Host Policies*: they may have DNS rules).
fn dns_learns(c: &Cluster, src: &Endpoint, name: &str) -> bool {
    let policies: Vec<&Policy> = match *src {
        Endpoint::Pod { pod, .. } if !c.pod(pod).host_network => {
            let p = c.pod(pod);
            let ns_labels = &c.ns(p.ns).labels;
            c.policies
                .iter()
                .filter(|pol| pol.affects(Direction::Egress) && pol.host.applies_to_workloads())
                .filter(|pol| pol.selects(p.ns, ns_labels, &selector_labels(c, p), || c.pod_calico_labels(p)))
                .collect()
        }
        _ => match cilium_host_of(c, src) {
            Some(node) => c
                .policies
                .iter()
                .filter(|p| {
                    p.kind.is_cilium()
                        && p.host.cilium_host
                        && p.affects(Direction::Egress)
                        && p.calico_selector.as_ref().is_some_and(|e| e.matches(&node.labels))
                })
                .collect(),
            None => Vec::new(),
        },
    };
    policies
        .iter()
        .flat_map(|pol| &pol.egress)
        .filter(|r| r.action == Action::Allow)
        .filter_map(|r| r.l7.as_ref())
        .any(|l7| l7_allows(l7, Some(&crate::l7::Request::Dns(name.to_string()))) && !l7.dns.is_empty())
}

/// Whether a Calico entity rule's criteria match an endpoint.
fn calico_matches(c: &Cluster, cp: &CalicoPeer, ep: &Endpoint) -> bool {
    let ip = ip_of(c, ep);
    // Cilium's CIDR peers: never a pod, never a node's address.
    if cp.outside_only
        && (matches!(ep, Endpoint::Pod { .. })
            || ip.is_some_and(|ip| c.nodes.iter().any(|n| n.ips.iter().any(|a| a.to_canonical() == ip.to_canonical()))))
    {
        return false;
    }
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
                }) || c.host_endpoints.iter().any(|h| expr.matches(&h.labels) && h.expected_ips.contains(&ip))
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
                PortMatch::Named(name) => named_port(c, dst, name, proto) == Some(port),
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
            rule_matches(c, pol, me, r, other, dst, proto, port)
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
        .filter(|p| {
            p.host.applies_to_workloads()
                && p.affects(dir)
                && p.selects(pod.ns, ns_labels, &selector_labels(c, pod), || c.pod_calico_labels(pod))
        })
        .collect();
    tiers_allow(c, &selecting, dir, me, other, dst, proto, port)
}

/// The tiers' walk over the policies `selecting` a subject in `dir`: tier by tier, each tier's policies by order
/// (then name, namespace, Calico kind), the first rule that matches decides; a tier that selects the subject and
/// decides nothing ends in its default action; what no tier decides is allowed. A Pass goes on to the next tier,
/// but from one of Antrea's regular tiers (`pass_to_network_policy`) past all of them, to NetworkPolicy.
#[allow(clippy::too_many_arguments)]
fn tiers_allow(
    c: &Cluster,
    selecting: &[&Policy],
    dir: Direction,
    me: &Endpoint,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    let (defs, tiers) = tiers_in_order(c);
    // Antrea: a Pass rule of one of its regular tiers skips every remaining regular tier, on to NetworkPolicy.
    let antrea_regular =
        |t: usize| defs[t].pass_to_network_policy && t != crate::model::PolicyTier::NetworkPolicy.index();
    let mut passed_to_np = false;
    for t in tiers {
        if passed_to_np && antrea_regular(t) {
            continue;
        }
        passed_to_np = false;
        let mut pols: Vec<&Policy> = selecting.iter().copied().filter(|p| p.tier.index() == t).collect();
        if pols.is_empty() {
            continue;
        }
        let ns = |p: &Policy| p.ns().map(|n| c.ns_name(n).to_string()).unwrap_or_default();
        pols.sort_by(|a, b| {
            (a.order, a.position, &a.name, ns(a), a.kind.calico_kind()).cmp(&(
                b.order,
                b.position,
                &b.name,
                ns(b),
                b.kind.calico_kind(),
            ))
        });
        match tier_action(c, &pols, dir, me, other, dst, proto, port) {
            Some(Action::Allow) => return true,
            Some(Action::Deny | Action::Reject) => return false,
            Some(Action::Pass) => {
                passed_to_np = antrea_regular(t);
                continue;
            }
            _ if defs[t].default_action == Action::Deny => return false,
            _ => continue,
        }
    }
    true
}

/// The cluster's tiers (the built-in ones if it has none) and their indexes in evaluation order: by `order` (none
/// last), equal orders by name.
fn tiers_in_order(c: &Cluster) -> (Vec<TierDef>, Vec<usize>) {
    let defs = if c.tiers.len() < 3 { TierDef::builtin() } else { c.tiers.clone() };
    let mut tiers: Vec<usize> = (0..defs.len()).collect();
    tiers.sort_by(|&a, &b| {
        let order = |t: &TierDef| t.order.unwrap_or(f64::INFINITY);
        order(&defs[a]).total_cmp(&order(&defs[b])).then_with(|| defs[a].name.cmp(&defs[b].name))
    });
    (defs, tiers)
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
    allowed_flow(c, src, dst, crate::compile::FlowInfo { dst_name, request: None }, proto, port)
}

/// Whether a flow is allowed, with what it says beyond its ends and port (the name its destination was resolved
/// from, one request on the connection).
pub fn allowed_flow(
    c: &Cluster,
    src: &Endpoint,
    dst: &Endpoint,
    info: crate::compile::FlowInfo<'_>,
    proto: Protocol,
    port: u16,
) -> bool {
    allowed_flow_cni(c, Cni::auto(c).0, src, dst, info, proto, port)
}

/// [`allowed_flow`] as a CNI reads the corners of NetworkPolicy v1 (see [`crate::cni`]): with Cilium an ipBlock
/// never matches a pod or a node's address; with Cilium and Calico a node's addresses reach its own pods.
pub fn allowed_flow_cni(
    c: &Cluster,
    cni: Cni,
    src: &Endpoint,
    dst: &Endpoint,
    info: crate::compile::FlowInfo<'_>,
    proto: Protocol,
    port: u16,
) -> bool {
    if let (Endpoint::Pod { pod: a, .. }, Endpoint::Pod { pod: b, .. }) = (src, dst) {
        if a == b {
            return true;
        }
    }
    let dst_name = info.dst_name;
    let fqdn = dst_name.filter(|n| dns_learns(c, src, n));
    let request = info.request;
    let egress = match src {
        Endpoint::Pod { pod, .. } => {
            let to = Other { ep: dst, name: dst_name, fqdn, request, cni };
            side_allows(c, *pod, src, Direction::Egress, &to, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    let ingress = match dst {
        Endpoint::Pod { pod, .. } => {
            let from = Other { ep: src, name: None, fqdn: None, request, cni };
            from_own_node(c, cni, src, *pod) || side_allows(c, *pod, dst, Direction::Ingress, &from, dst, proto, port)
        }
        Endpoint::External(_) => true,
    };
    egress
        && ingress
        && hosts_allow(c, cni, src, dst, dst_name, proto, port)
        && cilium_hosts_allow(c, cni, src, dst, (dst_name, fqdn, request), proto, port)
}

/// The Node whose host namespace an endpoint is in, for Cilium's host policies: a Node's address, or a hostNetwork
/// pod (the Node at its address, else its `spec.nodeName`). A pod off the host network and an outside address are
/// in none.
fn cilium_host_of<'c>(c: &'c Cluster, ep: &Endpoint) -> Option<&'c Node> {
    let at_ip = |ip: IpAddr| c.nodes.iter().find(|n| n.ips.iter().any(|a| a.to_canonical() == ip));
    match *ep {
        Endpoint::Pod { pod, .. } => {
            let p = c.pod(pod);
            if !p.host_network {
                return None;
            }
            ip_of(c, ep).and_then(at_ip).or_else(|| c.nodes.iter().find(|n| Some(n.name.as_str()) == p.node.as_deref()))
        }
        Endpoint::External(ip) => at_ip(ip.to_canonical()),
    }
}

/// Cilium's host firewall (the docs' *Host Policies*; `pkg/policy/api/rule.go`, `NodeSelector`): traffic leaving a
/// node's host namespace for anywhere but itself meets the egress host policies that select that Node (its
/// labels), traffic entering it from anywhere but itself the ingress ones — pods on that node included (the
/// connectivity test's `host-firewall-ingress` and `-egress`). A node no host policy selects in a direction is not
/// policed there; otherwise the tiers decide as for a pod, and what none decides is allowed.
fn cilium_hosts_allow(
    c: &Cluster,
    cni: Cni,
    src: &Endpoint,
    dst: &Endpoint,
    (name, fqdn, request): (Option<&str>, Option<&str>, Option<&crate::l7::Request>),
    proto: Protocol,
    port: u16,
) -> bool {
    if !c.policies.iter().any(|p| p.host.cilium_host) {
        return true;
    }
    let (a, b) = (cilium_host_of(c, src), cilium_host_of(c, dst));
    let same = matches!((a, b), (Some(x), Some(y)) if x.name == y.name);
    if same {
        return true;
    }
    let to = Other { ep: dst, name, fqdn, request, cni };
    let from = Other { ep: src, name: None, fqdn: None, request, cni };
    a.is_none_or(|n| cilium_host_side(c, n, src, Direction::Egress, &to, dst, proto, port))
        && b.is_none_or(|n| cilium_host_side(c, n, dst, Direction::Ingress, &from, dst, proto, port))
}

/// One direction of a node's host endpoint under Cilium's host policies.
#[allow(clippy::too_many_arguments)]
fn cilium_host_side(
    c: &Cluster,
    node: &Node,
    me: &Endpoint,
    dir: Direction,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> bool {
    let selecting: Vec<&Policy> = c
        .policies
        .iter()
        .filter(|p| {
            p.kind.is_cilium()
                && p.host.cilium_host
                && p.affects(dir)
                && p.calico_selector.as_ref().is_some_and(|e| e.matches(&node.labels))
        })
        .collect();
    tiers_allow(c, &selecting, dir, me, other, dst, proto, port)
}

/// The labels a pod's label selectors see: its own, or in a cluster with Cilium policies Cilium's labels of it.
fn selector_labels(c: &Cluster, pod: &Pod) -> crate::labels::Labels {
    if c.has_cilium() {
        cilium_labels(&pod.labels, c.ns(pod.ns), &pod.service_account)
    } else {
        pod.labels.clone()
    }
}

/// Cilium's allow-localhost, Felix's unpoliced host → local workload traffic and Antrea's local probe flows: with
/// the CNI Cilium, Calico or Antrea, a pod (off the host network) takes anything from an address of its own node.
fn from_own_node(c: &Cluster, cni: Cni, src: &Endpoint, dst: PodId) -> bool {
    let p = c.pod(dst);
    matches!(cni, Cni::Cilium | Cni::Calico | Cni::Antrea | Cni::Netpol)
        && !p.host_network
        && !matches!(*src, Endpoint::Pod { pod, .. } if !c.pod(pod).host_network)
        && ip_of(c, src).is_some_and(|ip| {
            c.nodes.iter().any(|n| {
                Some(n.name.as_str()) == p.node.as_deref()
                    && n.ips.iter().any(|a| a.to_canonical() == ip.to_canonical())
            })
        })
}

/// Where an endpoint is for host endpoints: a pod on a node (maybe unknown), a host endpoint, a node's host
/// namespace no host endpoint guards, or elsewhere.
#[derive(Clone, Copy)]
enum Where<'c> {
    Pod(Option<&'c str>),
    Host(&'c HostEndpoint),
    NodeHost(Option<&'c str>),
    Elsewhere,
}

fn where_is<'c>(c: &'c Cluster, ep: &Endpoint) -> Where<'c> {
    let mut node = None;
    if let Endpoint::Pod { pod, .. } = *ep {
        let p = c.pod(pod);
        if !p.host_network {
            return Where::Pod(p.node.as_deref());
        }
        node = p.node.as_deref();
    }
    if let Some(h) = host_at(c, ep) {
        return Where::Host(h);
    }
    let node = node.or_else(|| {
        let ip = ip_of(c, ep)?;
        c.nodes.iter().find(|n| n.ips.iter().any(|a| a.to_canonical() == ip)).map(|n| n.name.as_str())
    });
    let host_network = matches!(*ep, Endpoint::Pod { .. });
    match node {
        // A hostNetwork pod (or a Node's address) on a node with an all-interfaces host endpoint is that endpoint.
        Some(n) => match node_endpoint(c, Some(n)) {
            Some(h) if h.all_interfaces() => Where::Host(h),
            _ => Where::NodeHost(Some(n)),
        },
        // A hostNetwork pod of an unknown node.
        None if host_network => Where::NodeHost(None),
        None => Where::Elsewhere,
    }
}

/// The host endpoint forwarded traffic of a node crosses: its `*` one, else its first by name.
fn node_endpoint<'c>(c: &'c Cluster, node: Option<&str>) -> Option<&'c HostEndpoint> {
    let node = node?;
    let mut on: Vec<&HostEndpoint> = c.host_endpoints.iter().filter(|h| h.node == node).collect();
    on.sort_by(|a, b| (!a.all_interfaces(), &a.name).cmp(&(!b.all_interfaces(), &b.name)));
    on.first().copied()
}

/// Felix's walk of one stage's tiers at a host endpoint: `Some(true)` allowed, `Some(false)` denied, `None`
/// undecided. Untracked and pre-DNAT tiers end in Pass; the others in their default action.
#[allow(clippy::too_many_arguments)]
fn host_stage(
    c: &Cluster,
    h: &HostEndpoint,
    stage: crate::host::Stage,
    dir: Direction,
    me: &Endpoint,
    other: &Other<'_>,
    dst: &Endpoint,
    proto: Protocol,
    port: u16,
) -> Option<bool> {
    use crate::host::Stage;
    let in_stage = |p: &Policy| match stage {
        Stage::Untracked => p.host.do_not_track,
        Stage::PreDnat => p.host.pre_dnat && dir == Direction::Ingress,
        Stage::Normal => p.host.applies_to_workloads(),
        Stage::Forward => p.host.applies_to_workloads() && p.host.apply_on_forward,
    };
    let selecting: Vec<&Policy> = c
        .policies
        .iter()
        .filter(|p| {
            p.kind == PolicyKind::GlobalNetworkPolicy
                && p.affects(dir)
                && in_stage(p)
                && p.calico_selector.as_ref().is_some_and(|e| e.matches(&h.labels))
        })
        .collect();
    let (defs, tiers) = tiers_in_order(c);
    let passes = matches!(stage, Stage::Untracked | Stage::PreDnat);
    for t in tiers {
        let mut pols: Vec<&Policy> = selecting.iter().copied().filter(|p| p.tier.index() == t).collect();
        if pols.is_empty() {
            continue;
        }
        pols.sort_by(|a, b| (a.order, &a.name).cmp(&(b.order, &b.name)));
        match tier_action(c, &pols, dir, me, other, dst, proto, port) {
            Some(Action::Allow) => return Some(true),
            Some(Action::Deny | Action::Reject) => return Some(false),
            Some(Action::Pass) => continue,
            _ if !passes && defs[t].default_action == Action::Deny => return Some(false),
            _ => continue,
        }
    }
    None
}

/// The host endpoint checks of a flow, as `crate::host` describes Felix's: every one must let it through.
#[allow(clippy::too_many_arguments)]
fn hosts_allow(
    c: &Cluster,
    cni: Cni,
    src: &Endpoint,
    dst: &Endpoint,
    dst_name: Option<&str>,
    proto: Protocol,
    port: u16,
) -> bool {
    use crate::host::{failsafe, profile_allows_all, Stage};
    if c.host_endpoints.is_empty() {
        return true;
    }
    let (ws, wd) = (where_is(c, src), where_is(c, dst));
    let node = |w: Where<'_>| match w {
        Where::Pod(n) => n.map(str::to_string),
        Where::Host(h) => Some(h.node.clone()),
        Where::NodeHost(n) => n.map(str::to_string),
        Where::Elsewhere => None,
    };
    let same = matches!((node(ws), node(wd)), (Some(a), Some(b)) if a == b);
    let is_host = |w: Where<'_>| matches!(w, Where::Host(_) | Where::NodeHost(_));
    let to_dst = Other { ep: dst, name: dst_name, fqdn: None, request: None, cni };
    let to_src = Other { ep: src, name: None, fqdn: None, request: None, cni };
    // (host endpoint, stages, direction, whether it is the host's own traffic)
    let mut checks: Vec<(&HostEndpoint, &[Stage], Direction, bool)> = Vec::new();
    const TO_HOST: &[Stage] = &[Stage::Untracked, Stage::PreDnat, Stage::Normal];
    const FROM_HOST: &[Stage] = &[Stage::Untracked, Stage::Normal];
    const FWD_IN: &[Stage] = &[Stage::Untracked, Stage::PreDnat, Stage::Forward];
    const FWD_OUT: &[Stage] = &[Stage::Forward];
    // Out of the source: a host's traffic leaves through its endpoint unless it stays on the node; traffic to pods
    // leaves through the tunnel device, which only an all-interfaces endpoint covers. A pod's traffic to outside
    // the cluster or to another node's host is forwarded out through its node's endpoint.
    match ws {
        Where::Host(h) => {
            let out = match wd {
                Where::Pod(_) => h.all_interfaces(),
                Where::Host(_) | Where::NodeHost(_) => !same,
                Where::Elsewhere => true,
            };
            if out {
                checks.push((h, FROM_HOST, Direction::Egress, true));
            }
        }
        Where::Pod(n) if matches!(wd, Where::Elsewhere) || is_host(wd) && !same => {
            if let Some(h) = node_endpoint(c, n) {
                checks.push((h, FWD_OUT, Direction::Egress, false));
            }
        }
        _ => {}
    }
    // Into the destination: a host's endpoint sees traffic from elsewhere, and from its own pods only when it
    // covers all interfaces; a pod's node's endpoint sees only traffic from outside the cluster (the rest comes
    // through the tunnel).
    match wd {
        Where::Host(h) => {
            let inn = match ws {
                Where::Pod(_) => !same || h.all_interfaces(),
                Where::Host(_) | Where::NodeHost(_) => !same,
                Where::Elsewhere => true,
            };
            if inn {
                checks.push((h, TO_HOST, Direction::Ingress, true));
            }
        }
        Where::Pod(n) if matches!(ws, Where::Elsewhere) => {
            if let Some(h) = node_endpoint(c, n) {
                checks.push((h, FWD_IN, Direction::Ingress, false));
            }
        }
        _ => {}
    }
    checks.into_iter().all(|(h, stages, dir, host_path)| {
        let fs = failsafe(dir, proto, port);
        if fs && host_path {
            return true;
        }
        let (me, other) = match dir {
            Direction::Ingress => (dst, &to_src),
            Direction::Egress => (src, &to_dst),
        };
        for &stage in stages {
            if fs && matches!(stage, Stage::Untracked | Stage::PreDnat) {
                continue;
            }
            match host_stage(c, h, stage, dir, me, other, dst, proto, port) {
                Some(false) => return false,
                Some(true) if stage == Stage::Untracked && !host_path => {}
                Some(true) => return true,
                None if stage == Stage::Normal => return h.profiles.iter().any(|p| profile_allows_all(p)),
                None => {}
            }
        }
        true
    })
}
