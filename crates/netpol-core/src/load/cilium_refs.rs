//! Cilium's peers that name what only the whole input knows: the entities (`toEntities`/`fromEntities`, and
//! `reserved:` label selectors, which select the same identities) and `toServices`.
//!
//! Entities (`pkg/policy/api/entity.go`), as netpol answers for them:
//!
//! - `world` (`-ipv4`, `-ipv6`): addresses that are no pod's and no node's; `all`: everything; `none`: nothing;
//! - `host`: the node the subject runs on (the policy's selected pod: its `spec.nodeName`) — that Node's
//!   addresses, and so the hostNetwork pods there; `remote-node`: every other Node's addresses and hostNetwork
//!   pods. Both are relative to the subject: one rule means different addresses for pods on different nodes. A
//!   subject whose node is not in the input has no `host`, and every Node is a `remote-node` of it;
//! - `kube-apiserver`: the endpoints of the `default/kubernetes` Service (its EndpointSlices, or its Endpoints),
//!   whatever else those addresses are; with neither in the input it matches nothing, and a warning says so;
//! - `cluster` (and `cluster-mesh`: netpol sees one cluster): every pod, every Node's address and the
//!   `kube-apiserver` endpoints;
//! - `health` (cilium-health's endpoints), `init` (endpoints whose identity is not resolved yet), `unmanaged`
//!   (endpoints Cilium does not manage) and `ingress` (Cilium's Envoy ingress proxy): identities that are no pod or
//!   address netpol knows; they match nothing, with a warning.
//!
//! A `reserved:` selector of `fromEndpoints`/`toEndpoints` (`reserved:host: ""`, or `Exists`) is the entity of
//! that name, and like an entity it is not limited to the policy's namespace (`getEndpointSelector` adds no
//! namespace to a selector with a `reserved:` key); a `reserved:` label no identity carries (or asked for with a
//! value) selects nothing, with a warning.
//!
//! `toServices` (`pkg/policy/k8s/service.go`): `k8sService` names a Service by name and namespace,
//! `k8sServiceSelector` chooses Services by their labels in a namespace (no namespace: any namespace, as
//! upstream matches them). A Service without a selector stands for its endpoints' addresses, as a generated
//! `toCIDRSet` (so, as every CIDR peer, never a pod's or a node's address); a Service with a selector for the pods
//! it selects, as a generated `toEndpoints` selector (its selector and its namespace). A reference that no
//! Service in the input matches matches nothing, with a warning.
//!
//! The loader reads one document at a time, so these peers are placeholders (an expression over a key no label
//! has, [`crate::model::cilium_keys::REF`], which matches nothing) and [`resolve`] resolves them once every object
//! is loaded: a Service or the API server's endpoints become address or selector peers beside the placeholder.
//! `host` and `remote-node` need no resolving: they are [`Peer::SubjectNodes`], which the engine matches per flow
//! against the subject's Node and the peer's address (a rule's meaning then differs between pods on different
//! nodes, without one rule or one identity per Node); their placeholder only carries the field for the warning
//! of a cluster without Node addresses.
//!
//! The placeholders stay in the model, and what resolving makes is marked ([`CalicoPeer::generated`], on the
//! peers), so resolution can run again on a changed cluster: it drops what the
//! last one made and makes it from the Nodes, Services and endpoints of the moment, leaving the cluster as a
//! fresh load of the same objects would be. The loader resolves when it finishes (unless told not to:
//! [`super::Loader::defer_cilium_refs`], for one object loaded alone); [`crate::compile::Engine::update`] before
//! it recompiles a cluster with placeholders (any change to one with Cilium policies recompiles, Nodes, pods,
//! Services and EndpointSlices included); netpol-kube after it assembles the live cluster. The warnings (no Node,
//! no API server endpoints, no such Service) are those of one resolution: [`super::resolve_cilium_refs`] returns
//! them for the cluster as it is.

use std::collections::HashSet;

use ipnet::IpNet;

use super::cilium::selector;
use super::objects as obj;
use super::validate::Errors;
use super::{Diagnostic, Severity};
use crate::calico_selector::Expr;
use crate::model::{cilium_keys, CalicoPeer, Cluster, Direction, Peer, Scope};

/// The key of a placeholder's kind, and of the field path it was written at.
const REF_KEY: &str = cilium_keys::REF;
const REF_PATH: &str = cilium_keys::REF_PATH;
const REF_NS: &str = "netpol:ref-namespace";
const REF_NAME: &str = "netpol:ref-name";

/// Every entity of the pinned Cilium (`+kubebuilder:validation:Enum` of `api.Entity`, and `world-ipv4`/`-ipv6`).
pub(crate) const ENTITIES: [&str; 14] = [
    "world",
    "world-ipv4",
    "world-ipv6",
    "cluster",
    "cluster-mesh",
    "host",
    "remote-node",
    "kube-apiserver",
    "health",
    "init",
    "ingress",
    "unmanaged",
    "all",
    "none",
];

/// A peer that matches nothing.
pub(crate) fn nothing() -> Peer {
    Peer::Calico(Box::new(CalicoPeer { selector: Some(Expr::Not(Box::new(Expr::All))), ..Default::default() }))
}

/// A peer made by [`resolve`] (dropped by the next resolution).
fn generated(p: CalicoPeer) -> Peer {
    Peer::Calico(Box::new(CalicoPeer { generated: true, ..p }))
}

fn is_generated(peer: &Peer) -> bool {
    matches!(peer, Peer::Calico(c) if c.generated)
}

/// Whether a peer is a placeholder (cheaply: its first term is the placeholder key).
fn is_placeholder(peer: &Peer) -> bool {
    let Peer::Calico(c) = peer else { return false };
    matches!(&c.selector, Some(Expr::And(t)) if matches!(t.first(), Some(Expr::Eq { key, .. }) if key == REF_KEY))
}

/// Whether a Cilium policy of `c` has a placeholder (or what resolving one made).
pub(crate) fn has_refs(c: &Cluster) -> bool {
    c.policies.iter().filter(|p| p.kind.is_cilium()).any(|p| {
        p.ingress.iter().chain(&p.egress).any(|r| r.peers.iter().any(|peer| is_placeholder(peer) || is_generated(peer)))
    })
}

fn eq(key: &str, value: &str) -> Expr {
    Expr::Eq { key: key.to_string(), value: value.to_string() }
}

/// A placeholder peer: resolved by [`resolve`].
fn placeholder(kind: &str, path: &str, mut rest: Vec<Expr>) -> Peer {
    let mut terms = vec![eq(REF_KEY, kind), eq(REF_PATH, path)];
    terms.append(&mut rest);
    Peer::Calico(Box::new(CalicoPeer { selector: Some(Expr::And(terms)), ..Default::default() }))
}

fn world(nets: &[&str]) -> Peer {
    let nets = nets.iter().filter_map(|n| n.parse::<IpNet>().ok()).collect();
    Peer::Calico(Box::new(CalicoPeer { nets, outside_only: true, ..Default::default() }))
}

/// What an identity netpol does not model is, for the warning of an entity (or `reserved:` label) naming it.
fn unmodelled(name: &str) -> Option<&'static str> {
    Some(match name {
        "health" => "Cilium's health-check endpoints (cilium-health), which are no pod or address netpol knows",
        "init" => "endpoints whose identity Cilium has not resolved yet; netpol answers for pods with their labels",
        "unmanaged" => "endpoints Cilium does not manage; netpol takes every pod as managed by Cilium",
        "ingress" => "Cilium's Envoy ingress proxy (what it forwards), which netpol does not model",
        _ => return None,
    })
}

/// The peers of an entity written at `path` (see the module documentation); an unknown name is an error.
pub(crate) fn entity(name: &str, path: &str, peers: &mut Vec<Peer>, errs: &mut Errors) {
    match name {
        "world" => peers.push(world(&["0.0.0.0/0", "::/0"])),
        "world-ipv4" => peers.push(world(&["0.0.0.0/0"])),
        "world-ipv6" => peers.push(world(&["::/0"])),
        "all" => peers.push(Peer::Calico(Box::default())),
        "none" => {}
        // Every pod (by its labels), every node's address (so hostNetwork pods too), the API server.
        "cluster" | "cluster-mesh" => {
            peers.push(Peer::Calico(Box::new(CalicoPeer { selector: Some(Expr::All), ..Default::default() })));
            peers.push(Peer::Nodes(crate::selector::Selector::everything()));
            peers.push(placeholder("cluster-apiserver", path, Vec::new()));
        }
        // Relative to the subject (compiled per flow); the placeholder only carries the field for the warning of
        // a cluster without Nodes.
        "host" | "remote-node" => {
            peers.push(placeholder(name, path, Vec::new()));
            peers.push(Peer::SubjectNodes { own: name == "host", others: name == "remote-node" });
        }
        "kube-apiserver" => peers.push(placeholder(name, path, Vec::new())),
        other => match unmodelled(other) {
            Some(what) => errs.warn(path.to_string(), format!("entity `{other}`: {what}: it matches nothing here")),
            None => errs.add(path.to_string(), format!("unknown entity `{other}` (one of {})", ENTITIES.join(", "))),
        },
    }
}

/// A `fromEndpoints`/`toEndpoints` selector with `reserved:` keys: the entity it selects (see the module
/// documentation). `None` when it has no such key (an ordinary selector).
pub(crate) fn reserved_selector(sel: &obj::LabelSelector, path: &str, errs: &mut Errors) -> Option<Vec<Peer>> {
    let reserved = |k: &str| k.strip_prefix("reserved:").map(str::to_string);
    let labels: Vec<(&String, &String)> = sel.match_labels.iter().flatten().collect();
    let exprs: Vec<&obj::Requirement> = sel.match_expressions.iter().flatten().collect();
    let any = labels.iter().any(|(k, _)| reserved(k).is_some()) || exprs.iter().any(|r| reserved(&r.key).is_some());
    if !any {
        return None;
    }
    let not_yet = |errs: &mut Errors, field: String, what: &str| {
        errs.add(field, format!("{what}: not modelled by netpol yet: the policy is not loaded"));
        Some(Vec::new())
    };
    if labels.len() + exprs.len() != 1 {
        return not_yet(errs, path.to_string(), "a selector with a `reserved:` label and other requirements");
    }
    let (name, field, value_ok) = match (labels.first(), exprs.first()) {
        (Some((k, v)), _) => (reserved(k).unwrap_or_default(), format!("{path}.matchLabels.{k}"), v.is_empty()),
        (None, Some(r)) => {
            let field = format!("{path}.matchExpressions[0]");
            match r.operator.as_str() {
                "Exists" => (reserved(&r.key).unwrap_or_default(), field, true),
                "In" => {
                    let ok = r.values.iter().flatten().any(String::is_empty);
                    (reserved(&r.key).unwrap_or_default(), field, ok)
                }
                op => return not_yet(errs, format!("{field}.operator"), &format!("`{op}` on a `reserved:` label")),
            }
        }
        (None, None) => return None,
    };
    if !ENTITIES.contains(&name.as_str()) || matches!(name.as_str(), "cluster" | "cluster-mesh" | "all") {
        // Cilium takes any label; no identity carries this one.
        errs.warn(field, format!("no identity carries `reserved:{name}`: this selector selects nothing"));
        return Some(vec![nothing()]);
    }
    if !value_ok {
        // Reserved labels have no value: a selector that asks for one selects nothing.
        errs.warn(field, format!("`reserved:{name}` has no value: this selector selects nothing"));
        return Some(vec![nothing()]);
    }
    let mut peers = Vec::new();
    entity(&name, &field, &mut peers, errs);
    if peers.is_empty() {
        peers.push(nothing());
    }
    Some(peers)
}

/// One `toServices` entry written at `path`: a placeholder for the Services it names.
pub(crate) fn service(s: &obj::CiliumService, path: &str, errs: &mut Errors) -> Option<Peer> {
    match (&s.k8s_service, &s.k8s_service_selector) {
        (Some(r), None) => {
            let Some(name) = r.service_name.as_deref().filter(|n| !n.is_empty()) else {
                errs.add(format!("{path}.k8sService.serviceName"), "required");
                return None;
            };
            let ns = r.namespace.clone().unwrap_or_default();
            Some(placeholder("service", path, vec![eq(REF_NS, &ns), eq(REF_NAME, name)]))
        }
        (None, Some(sel)) => {
            let Some(ls) = &sel.selector else {
                errs.add(format!("{path}.k8sServiceSelector.selector"), "required");
                return None;
            };
            let expr = selector(ls, &format!("{path}.k8sServiceSelector.selector"), errs)?;
            let ns = sel.namespace.clone().unwrap_or_default();
            Some(placeholder("service-selector", path, vec![eq(REF_NS, &ns), expr]))
        }
        (Some(_), Some(_)) => {
            errs.add(path.to_string(), "only one of k8sService and k8sServiceSelector may be set");
            None
        }
        (None, None) => {
            errs.add(path.to_string(), "one of k8sService or k8sServiceSelector is required");
            None
        }
    }
}

/// A placeholder, read back.
enum Ref {
    Host,
    RemoteNode,
    KubeApiserver { quiet: bool },
    Service { ns: String, name: String },
    ServiceSelector { ns: String, selector: Expr },
}

fn read(peer: &Peer) -> Option<(Ref, String)> {
    let Peer::Calico(c) = peer else { return None };
    let Some(Expr::And(terms)) = &c.selector else { return None };
    let value = |t: Option<&Expr>, key: &str| match t {
        Some(Expr::Eq { key: k, value }) if k == key => Some(value.clone()),
        _ => None,
    };
    let kind = value(terms.first(), REF_KEY)?;
    let path = value(terms.get(1), REF_PATH)?;
    let r = match kind.as_str() {
        "host" => Ref::Host,
        "remote-node" => Ref::RemoteNode,
        "kube-apiserver" => Ref::KubeApiserver { quiet: false },
        "cluster-apiserver" => Ref::KubeApiserver { quiet: true },
        "service" => Ref::Service { ns: value(terms.get(2), REF_NS)?, name: value(terms.get(3), REF_NAME)? },
        "service-selector" => {
            let mut rest: Vec<Expr> = terms.iter().skip(3).cloned().collect();
            let selector = match rest.len() {
                0 => Expr::All,
                1 => rest.pop().unwrap_or(Expr::All),
                _ => Expr::And(rest),
            };
            Ref::ServiceSelector { ns: value(terms.get(2), REF_NS)?, selector }
        }
        _ => return None,
    };
    Some((r, path))
}

fn hosts(ips: impl IntoIterator<Item = std::net::IpAddr>) -> Vec<IpNet> {
    let mut v: Vec<IpNet> = ips.into_iter().map(|ip| IpNet::from(ip.to_canonical())).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// The endpoint addresses of Service `ns/name` in the input, if it has EndpointSlices or Endpoints.
fn endpoint_addresses(c: &Cluster, ns: &str, name: &str) -> Option<Vec<IpNet>> {
    let mut found = false;
    let ips = c
        .service_endpoints
        .iter()
        .filter(|e| e.namespace == ns && e.service == name)
        .inspect(|_| found = true)
        .flat_map(|e| e.addresses.iter().copied())
        .collect::<Vec<_>>();
    found.then(|| hosts(ips))
}

/// Resolves the placeholders of every Cilium policy (see the module documentation): drops what an earlier
/// resolution made, then makes it from the cluster's current Nodes, Services and endpoints; warnings for what the
/// cluster does not have.
pub(crate) fn resolve(c: &mut Cluster, diags: &mut Vec<Diagnostic>) {
    if !has_refs(c) {
        return;
    }
    for p in c.policies.iter_mut().filter(|p| p.kind.is_cilium()) {
        for rules in [&mut p.ingress, &mut p.egress] {
            for r in rules.iter_mut() {
                r.peers.retain(|peer| !is_generated(peer));
            }
        }
    }
    let apiserver = endpoint_addresses(c, "default", "kubernetes");
    let no_node_address = c.nodes.iter().all(|n| n.ips.is_empty());
    let mut said: HashSet<(String, String)> = HashSet::new();
    for pi in 0..c.policies.len() {
        if !c.policies[pi].kind.is_cilium() {
            continue;
        }
        let pol = &c.policies[pi];
        let object = match &pol.scope {
            Scope::Namespace(ns) => format!("{} {}/{}", pol.kind.as_str(), c.ns(*ns).name, pol.name),
            Scope::Cluster(_) => format!("{} {}", pol.kind.as_str(), pol.name),
        };
        let origin = pol.origin.clone();
        let mut warn = |path: &str, message: String| {
            if said.insert((format!("{origin} {path}"), message.clone())) {
                diags.push(Diagnostic {
                    severity: Severity::Warning,
                    origin: origin.clone(),
                    object: Some(object.clone()),
                    field: Some(path.to_string()),
                    message,
                });
            }
        };
        for dir in [Direction::Ingress, Direction::Egress] {
            let rules = match dir {
                Direction::Ingress => std::mem::take(&mut c.policies[pi].ingress),
                Direction::Egress => std::mem::take(&mut c.policies[pi].egress),
            };
            let mut out = Vec::with_capacity(rules.len());
            for mut rule in rules {
                let mut peers = Vec::with_capacity(rule.peers.len());
                for peer in std::mem::take(&mut rule.peers) {
                    let found = read(&peer);
                    // A placeholder stays (it matches nothing): the next resolution starts from it.
                    peers.push(peer);
                    let Some((r, path)) = found else { continue };
                    if matches!(r, Ref::Host | Ref::RemoteNode) && no_node_address {
                        let which = if matches!(r, Ref::Host) { "host" } else { "remote-node" };
                        warn(
                            &path,
                            format!(
                                "entity `{which}` is unknown: the input has no Node with an address (a node's \
                                 addresses are what it matches): it matches nothing here"
                            ),
                        );
                    }
                    match r {
                        Ref::Host | Ref::RemoteNode => {}
                        Ref::KubeApiserver { quiet } => match &apiserver {
                            Some(nets) if !nets.is_empty() => {
                                peers.push(generated(CalicoPeer { nets: nets.clone(), ..Default::default() }))
                            }
                            Some(_) if !quiet => warn(
                                &path,
                                "entity `kube-apiserver`: the endpoints of Service default/kubernetes have no ready \
                                 address in the input: it matches nothing here"
                                    .to_string(),
                            ),
                            None if !quiet => warn(
                                &path,
                                "entity `kube-apiserver` is unknown: the input has no EndpointSlice or Endpoints of \
                                 Service default/kubernetes (its endpoints are the API server's addresses): it \
                                 matches nothing here"
                                    .to_string(),
                            ),
                            _ => {}
                        },
                        Ref::Service { ns, name } => {
                            let found: Vec<usize> = (0..c.services.len())
                                .filter(|&i| {
                                    c.services[i].name == name && (ns.is_empty() || c.services[i].namespace == ns)
                                })
                                .collect();
                            if found.is_empty() {
                                let ns =
                                    if ns.is_empty() { "any namespace".to_string() } else { format!("namespace {ns}") };
                                warn(
                                    &path,
                                    format!("no Service `{name}` in {ns} in the input: it matches nothing here"),
                                );
                            }
                            for i in found {
                                peers.extend(service_peer(c, i, &path, &mut warn));
                            }
                        }
                        Ref::ServiceSelector { ns, selector } => {
                            let found: Vec<usize> = (0..c.services.len())
                                .filter(|&i| {
                                    let s = &c.services[i];
                                    (ns.is_empty() || s.namespace == ns) && selector.matches(&s.labels)
                                })
                                .collect();
                            if found.is_empty() {
                                warn(
                                    &path,
                                    "no Service in the input matches this selector: it matches nothing here"
                                        .to_string(),
                                );
                            }
                            for i in found {
                                peers.extend(service_peer(c, i, &path, &mut warn));
                            }
                        }
                    }
                }
                rule.peers = peers;
                out.push(rule);
            }
            match dir {
                Direction::Ingress => c.policies[pi].ingress = out,
                Direction::Egress => c.policies[pi].egress = out,
            }
        }
    }
}

/// The peers of Service `c.services[i]` (see the module documentation).
fn service_peer(c: &Cluster, i: usize, path: &str, warn: &mut impl FnMut(&str, String)) -> Option<Peer> {
    let s = &c.services[i];
    match &s.selector {
        Some(sel) if s.has_selector() => {
            let mut terms: Vec<Expr> = sel.iter().map(|(k, v)| eq(k, v)).collect();
            terms.push(eq(cilium_keys::NAMESPACE, &s.namespace));
            Some(generated(CalicoPeer { selector: Some(Expr::And(terms)), ..Default::default() }))
        }
        _ => match endpoint_addresses(c, &s.namespace, &s.name) {
            Some(nets) if !nets.is_empty() => {
                Some(generated(CalicoPeer { nets, outside_only: true, ..Default::default() }))
            }
            _ => {
                warn(
                    path,
                    format!(
                        "Service {}/{} has no selector and no ready endpoint address in the input (no EndpointSlice \
                         or Endpoints): it matches nothing here",
                        s.namespace, s.name
                    ),
                );
                None
            }
        },
    }
}
