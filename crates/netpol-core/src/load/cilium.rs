//! Cilium's policy kinds (`cilium.io/v2` CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy), lowered onto the
//! tiered core.
//!
//! Cilium decides one direction of an endpoint by the union of every allow of every policy that selects it
//! (NetworkPolicy v1 included), after any deny of any of them: a deny wins over every allow
//! (`pkg/policy/l4.go`, `HasPrecedenceOver`). An endpoint is in default deny in a direction once a policy with
//! rules of that direction (allow or deny) selects it, unless that policy sets `enableDefaultDeny` false for it
//! (`pkg/policy/repository.go`, `computePolicyEnforcementAndRules`). On tiers, one object's rule becomes up to
//! three policies of the same kind and name:
//!
//! - its `ingressDeny`/`egressDeny` rules in the `CiliumDeny` tier (first; its end passes on);
//! - its allow rules of the directions where it enables default deny in the `NetworkPolicy` tier, with
//!   NetworkPolicies v1: selected there, an endpoint is isolated in that direction (a deny-only policy is such a
//!   part without rules);
//! - its allow rules of a direction with `enableDefaultDeny: false` in the `CiliumAllow` tier (between the two;
//!   its end passes on), where they allow without isolating anyone.
//!
//! Allows are unioned whichever tier holds them, and every deny comes first: the walk gives Cilium's answer.
//!
//! Selectors are label selectors over Cilium's labels of a pod ([`crate::model::cilium_labels`]), compiled to the
//! expression selectors the engine indexes (as Calico's are). A namespaced policy's subject is limited to its
//! namespace, and so are its peer selectors unless they name the namespace label or a namespace's labels
//! (`pkg/k8s/apis/cilium.io/utils/utils.go`, `getEndpointSelector`, `ParseToCiliumRule`). Label sources `k8s:`,
//! `any:` and none match a pod's labels alike (`pkg/labels/labels.go`).
//!
//! Entities, `reserved:` selectors and `toServices` name what only the whole input knows (the subject's node, the
//! API server's endpoints, Services and their EndpointSlices): they are placeholders here, resolved once every
//! object is loaded (`cilium_refs.rs`, which documents their semantics).
//!
//! Host policies (a CiliumClusterwideNetworkPolicy rule with `nodeSelector` instead of `endpointSelector`: its
//! subject is the host endpoint of each Node whose labels it matches, [`crate::model::HostFlags::cilium_host`]),
//! `fromNodes`/`toNodes` and `fromGroups`/`toGroups` are `cilium_nodes.rs`'s, which documents them.
//!
//! What this frontend does not model yet is an error naming the field (the policy is then not loaded), never a
//! silent drop: `authentication`, TLS and SNI rules, and `reserved:` selectors other than one `reserved:` label
//! alone (with other requirements, or under `NotIn`/`DoesNotExist`).
//!
//! `CiliumCIDRGroup` objects are network sets of the model labelled with their name under
//! [`crate::model::cilium_keys::CIDR_GROUP`], which only `cidrGroupRef`/`cidrGroupSelector` select ([`cidr_group`]).
//!
//! L7 rules: each `toPorts` entry with `rules.http` or `rules.dns` becomes a rule of its own (the same peers, the
//! entry's ports) carrying them ([`crate::l7::L7Rules`], checked as the agent's `PortRule.sanitize` checks them):
//! a flow's request must pass them for that rule to match it, so an L4-only rule on the same port and peer lets
//! every request through, as Cilium's wildcarding does (`pkg/policy/l4.go`). Kafka and other parsers' rules load
//! with a warning and are not judged. `toFQDNs` is a peer ([`crate::model::Peer::Fqdns`]) that matches an
//! outside address by the name it was resolved from, when the source's own DNS rules let Cilium learn it.

use ipnet::IpNet;

use super::objects::{self as obj, IntOrString};
use super::validate::{check_labels, meta_name, meta_namespace, Errors};
use super::Item;
use crate::calico_selector::Expr;
use crate::model::{
    cilium_keys, Action, CalicoPeer, Direction, Order, Peer, Policy, PolicyKind, PolicyPort, PortMatch, Rule, Scope,
};
use crate::portset::Protocol;
use crate::selector::Selector;

/// The tier a part of a Cilium policy goes to (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CiliumTier {
    Deny,
    Allow,
    NetworkPolicy,
}

/// Names and orders of the two tiers Cilium's policies add: before every other tier, deny first.
pub(crate) const DENY_TIER: (&str, f64) = ("CiliumDeny", 10.0);
pub(crate) const ALLOW_TIER: (&str, f64) = ("CiliumAllow", 20.0);

const NOT_YET: &str = "not modelled by netpol yet: the policy is not loaded";

/// A CiliumNetworkPolicy; `manifest`: the object as written, which each of its policies keeps
/// ([`crate::model::Policy::manifest`]: the model cannot give one object of several policies back).
pub(crate) fn network_policy(
    o: obj::CiliumPolicyObj,
    manifest: Option<std::sync::Arc<str>>,
    errs: &mut Errors,
) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let ns_name = meta_namespace(&o.metadata.namespace, errs);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let ns = ns_name.as_deref().unwrap_or("default").to_string();
    let mut parts = parts(PolicyKind::CiliumNetworkPolicy, Some(&ns), o.spec, o.specs, errs);
    parts.iter_mut().for_each(|(p, _)| p.manifest.clone_from(&manifest));
    Some(Item::CiliumPolicy { ns_name: Some(ns_name?), name: name?, parts })
}

/// A CiliumClusterwideNetworkPolicy (`manifest` as for [`network_policy`]).
pub(crate) fn clusterwide_network_policy(
    o: obj::CiliumPolicyObj,
    manifest: Option<std::sync::Arc<str>>,
    errs: &mut Errors,
) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let mut parts = parts(PolicyKind::CiliumClusterwideNetworkPolicy, None, o.spec, o.specs, errs);
    parts.iter_mut().for_each(|(p, _)| p.manifest.clone_from(&manifest));
    Some(Item::CiliumPolicy { ns_name: None, name: name?, parts })
}

/// The policies of every rule of the object (`spec`, then `specs`), with their tiers.
fn parts(
    kind: PolicyKind,
    ns: Option<&str>,
    spec: Option<obj::CiliumRule>,
    specs: Option<Vec<obj::CiliumRule>>,
    errs: &mut Errors,
) -> Vec<(Policy, CiliumTier)> {
    if spec.is_none() && specs.as_ref().is_none_or(Vec::is_empty) {
        errs.add("spec", "one of spec or specs is required");
    }
    let mut out = Vec::new();
    let all = spec.into_iter().map(|r| ("spec".to_string(), r));
    let all = all.chain(specs.into_iter().flatten().enumerate().map(|(i, r)| (format!("specs[{i}]"), r)));
    for (path, r) in all {
        out.extend(rule_parts(kind, ns, &r, &path, errs));
    }
    out
}

/// One `api.Rule` as up to three policies (see the module documentation).
fn rule_parts(
    kind: PolicyKind,
    ns: Option<&str>,
    r: &obj::CiliumRule,
    path: &str,
    errs: &mut Errors,
) -> Vec<(Policy, CiliumTier)> {
    let subject = match (&r.endpoint_selector, &r.node_selector) {
        (Some(_), Some(_)) => {
            errs.add(format!("{path}.nodeSelector"), "only one of endpointSelector and nodeSelector may be set");
            None
        }
        // A namespaced policy cannot select nodes (`pkg/k8s/apis/cilium.io/v2/cnp_types.go`, `Parse`).
        (None, Some(_)) if ns.is_some() => {
            errs.add(
                format!("{path}.nodeSelector"),
                "a CiliumNetworkPolicy's rule cannot have nodeSelector (host policies are \
                 CiliumClusterwideNetworkPolicies)",
            );
            None
        }
        // A host policy: its subject is the host endpoint of every Node whose labels the selector matches.
        (None, Some(sel)) => selector(sel, &format!("{path}.nodeSelector"), errs),
        (None, None) => {
            errs.add(path.to_string(), "one of endpointSelector or nodeSelector is required");
            None
        }
        (Some(sel), None) => selector(sel, &format!("{path}.endpointSelector"), errs).map(|e| match ns {
            // The subject is always in the policy's namespace.
            Some(ns) => and(e, own_namespace(ns)),
            None => e,
        }),
    };
    let host = r.endpoint_selector.is_none() && r.node_selector.is_some();
    // Label requirements (`fromRequires`/`toRequires`) become deny rules after the policy's own.
    let mut required: (Vec<Rule>, Vec<Rule>) = (Vec::new(), Vec::new());
    let mut rules = |list: &Option<Vec<obj::CiliumPeerRule>>, field: &str, dir: Direction, deny: bool| -> Vec<Rule> {
        let mut out = Vec::new();
        for (i, pr) in list.iter().flatten().enumerate() {
            let p = format!("{path}.{field}[{i}]");
            if host {
                super::cilium_nodes::host_l7(pr, dir, &p, errs);
            }
            out.extend(peer_rule(ns, dir, deny, pr, &p, errs));
            let req = requirements(ns, dir, pr, &p, errs);
            match dir {
                Direction::Ingress => required.0.extend(req),
                Direction::Egress => required.1.extend(req),
            }
        }
        out
    };
    let ingress = rules(&r.ingress, "ingress", Direction::Ingress, false);
    let mut ingress_deny = rules(&r.ingress_deny, "ingressDeny", Direction::Ingress, true);
    let egress = rules(&r.egress, "egress", Direction::Egress, false);
    let mut egress_deny = rules(&r.egress_deny, "egressDeny", Direction::Egress, true);
    ingress_deny.append(&mut required.0);
    egress_deny.append(&mut required.1);
    let Some(subject) = subject else { return Vec::new() };
    let dd = r.enable_default_deny.as_ref();
    // A direction with rules (allow or deny) is default-deny unless the policy turns that off.
    let isolates_in = (!ingress.is_empty() || !ingress_deny.is_empty()) && dd.and_then(|d| d.ingress) != Some(false);
    let isolates_eg = (!egress.is_empty() || !egress_deny.is_empty()) && dd.and_then(|d| d.egress) != Some(false);
    let part = |ingress: Vec<Rule>, egress: Vec<Rule>, affects: (bool, bool)| Policy {
        kind,
        tier: Default::default(),
        order: Order(None),
        scope: Scope::Cluster(Selector::everything()),
        name: String::new(),
        pod_selector: Selector::everything(),
        calico_selector: Some(subject.clone()),
        ingress,
        egress,
        affects_ingress: affects.0,
        affects_egress: affects.1,
        host: crate::model::HostFlags { cilium_host: host, ..Default::default() },
        origin: Default::default(),
        position: 0,
        manifest: None,
    };
    let mut out = Vec::new();
    if !ingress_deny.is_empty() || !egress_deny.is_empty() {
        let affects = (!ingress_deny.is_empty(), !egress_deny.is_empty());
        out.push((part(ingress_deny, egress_deny, affects), CiliumTier::Deny));
    }
    let (mut np, mut allow) = ((Vec::new(), Vec::new()), (Vec::new(), Vec::new()));
    if isolates_in {
        np.0 = ingress;
    } else {
        allow.0 = ingress;
    }
    if isolates_eg {
        np.1 = egress;
    } else {
        allow.1 = egress;
    }
    if isolates_in || isolates_eg {
        out.push((part(np.0, np.1, (isolates_in, isolates_eg)), CiliumTier::NetworkPolicy));
    }
    if !allow.0.is_empty() || !allow.1.is_empty() {
        let affects = (!allow.0.is_empty(), !allow.1.is_empty());
        out.push((part(allow.0, allow.1, affects), CiliumTier::Allow));
    }
    out
}

/// The deprecated `fromRequires`/`toRequires` of a rule, as the documentation defines them (the API server of the
/// pinned Cilium refuses them; evaluated with a warning): every peer of the policy's endpoints in that direction
/// must also match each required selector, whichever policy allows it. Each requirement is a deny rule for
/// everything its selector does not match (outside addresses included: they carry no such labels), named after
/// its field. The selectors are limited to the policy's namespace as `fromEndpoints` are.
fn requirements(ns: Option<&str>, dir: Direction, r: &obj::CiliumPeerRule, path: &str, errs: &mut Errors) -> Vec<Rule> {
    let (list, field) = match dir {
        Direction::Ingress => (&r.from_requires, "fromRequires"),
        Direction::Egress => (&r.to_requires, "toRequires"),
    };
    let Some(list) = list else { return Vec::new() };
    errs.warn(
        format!("{path}.{field}"),
        "deprecated: the API server of current Cilium refuses it; evaluated as Cilium's documentation defines it \
         (every peer must also match)",
    );
    let mut out = Vec::new();
    for (i, sel) in list.iter().enumerate() {
        let p = format!("{path}.{field}[{i}]");
        let Some(e) = selector(sel, &p, errs) else { continue };
        let e = match ns {
            Some(ns) if !names_namespace(sel) => and(e, own_namespace(ns)),
            _ => e,
        };
        let peer = CalicoPeer { not_selector: Some(e), ..Default::default() };
        out.push(Rule {
            peers: vec![calico(peer)],
            ports: Vec::new(),
            action: Action::Deny,
            name: Some(p),
            calico: None,
            l7: None,
        });
    }
    out
}

/// One ingress, ingressDeny, egress or egressDeny rule: its peers (the union of every peer field present) and
/// ports, as one rule named by its field path, and one more rule (same peers) for each `toPorts` entry with L7
/// rules, named by the entry's path.
fn peer_rule(
    ns: Option<&str>,
    dir: Direction,
    deny: bool,
    r: &obj::CiliumPeerRule,
    path: &str,
    errs: &mut Errors,
) -> Vec<Rule> {
    let (own, other) = match dir {
        Direction::Ingress => ("from", "to"),
        Direction::Egress => ("to", "from"),
    };
    // Fields of the other direction: not in this rule's schema.
    let wrong: Vec<(&str, bool)> = match dir {
        Direction::Ingress => vec![
            ("toFQDNs", r.to_fqdns.is_some()),
            ("toEndpoints", r.to_endpoints.is_some()),
            ("toRequires", r.to_requires.is_some()),
            ("toCIDR", r.to_cidr.is_some()),
            ("toCIDRSet", r.to_cidr_set.is_some()),
            ("toEntities", r.to_entities.is_some()),
            ("toServices", r.to_services.is_some()),
            ("toGroups", r.to_groups.is_some()),
            ("toNodes", r.to_nodes.is_some()),
        ],
        Direction::Egress => vec![
            ("fromEndpoints", r.from_endpoints.is_some()),
            ("fromRequires", r.from_requires.is_some()),
            ("fromCIDR", r.from_cidr.is_some()),
            ("fromCIDRSet", r.from_cidr_set.is_some()),
            ("fromEntities", r.from_entities.is_some()),
            ("fromGroups", r.from_groups.is_some()),
            ("fromNodes", r.from_nodes.is_some()),
        ],
    };
    for (field, present) in wrong {
        if present {
            errs.add(
                format!("{path}.{field}"),
                format!("unknown field in an {dir} rule (its peers are `{own}…`, not `{other}…`)"),
            );
        }
    }
    let (endpoints, requires, cidr, cidr_set, entities, groups, nodes) = match dir {
        Direction::Ingress => (
            &r.from_endpoints,
            &r.from_requires,
            &r.from_cidr,
            &r.from_cidr_set,
            &r.from_entities,
            r.from_groups.is_some(),
            &r.from_nodes,
        ),
        Direction::Egress => (
            &r.to_endpoints,
            &r.to_requires,
            &r.to_cidr,
            &r.to_cidr_set,
            &r.to_entities,
            r.to_groups.is_some(),
            &r.to_nodes,
        ),
    };
    if r.authentication.is_some() {
        errs.add(format!("{path}.authentication"), NOT_YET);
    }
    let mut peers: Vec<Peer> = Vec::new();
    // A requirement is a peer field that selects nothing by itself (see `requirements`).
    let mut any_field = requires.is_some();
    if groups {
        // Cloud provider groups: only the provider's API knows their members (`pkg/policy/api/groups.go`).
        any_field = true;
        super::cilium_nodes::groups(&format!("{path}.{own}Groups"), errs);
    }
    if let Some(list) = nodes {
        any_field = true;
        for (i, sel) in list.iter().enumerate() {
            let p = format!("{path}.{own}Nodes[{i}]");
            if let Some(e) = selector(sel, &p, errs) {
                peers.extend(super::cilium_nodes::node_selector(e, &p));
            }
        }
    }
    if let Some(list) = endpoints {
        any_field = true;
        for (i, sel) in list.iter().enumerate() {
            let p = format!("{path}.{own}Endpoints[{i}]");
            if let Some(found) = super::cilium_refs::reserved_selector(sel, &p, errs) {
                peers.extend(found);
                continue;
            }
            if let Some(e) = selector(sel, &p, errs) {
                let e = match ns {
                    Some(ns) if !names_namespace(sel) => and(e, own_namespace(ns)),
                    _ => e,
                };
                peers.push(calico(CalicoPeer { selector: Some(e), ..Default::default() }));
            }
        }
    }
    if let Some(list) = cidr {
        any_field = true;
        for (i, c) in list.iter().enumerate() {
            if let Some(net) = parse_cidr(c, &format!("{path}.{own}CIDR[{i}]"), errs) {
                peers.push(calico(outside(vec![net], Vec::new())));
            }
        }
    }
    if let Some(list) = cidr_set {
        any_field = true;
        for (i, c) in list.iter().enumerate() {
            let p = format!("{path}.{own}CIDRSet[{i}]");
            let set = [c.cidr.is_some(), c.cidr_group_ref.is_some(), c.cidr_group_selector.is_some()];
            if set.iter().filter(|&&x| x).count() > 1 {
                errs.add(p.clone(), "more than one of cidr, cidrGroupRef, or cidrGroupSelector may not be set");
                continue;
            }
            if let Some(peer) = cidr_group_peer(c, &p, errs) {
                peers.push(peer);
                continue;
            }
            if c.cidr_group_ref.is_some() || c.cidr_group_selector.is_some() {
                continue;
            }
            let Some(text) = &c.cidr else {
                errs.add(format!("{p}.cidr"), "required (or cidrGroupRef, cidrGroupSelector)");
                continue;
            };
            let Some(net) = parse_cidr(text, &format!("{p}.cidr"), errs) else { continue };
            let mut except = Vec::new();
            for (j, x) in c.except.iter().flatten().enumerate() {
                let Some(x) = parse_cidr(x, &format!("{p}.except[{j}]"), errs) else { continue };
                if !net.contains(&x) {
                    errs.add(format!("{p}.except[{j}]"), format!("{x} is not inside {net}"));
                    continue;
                }
                except.push(x);
            }
            peers.push(calico(outside(vec![net], except)));
        }
    }
    if let Some(list) = entities {
        any_field = true;
        for (i, name) in list.iter().enumerate() {
            let p = format!("{path}.{own}Entities[{i}]");
            super::cilium_refs::entity(name, &p, &mut peers, errs);
        }
    }
    if let (Direction::Egress, Some(list)) = (dir, &r.to_services) {
        any_field = true;
        for (i, svc) in list.iter().enumerate() {
            peers.extend(super::cilium_refs::service(svc, &format!("{path}.toServices[{i}]"), errs));
        }
    }
    if let (Direction::Egress, Some(list)) = (dir, &r.to_fqdns) {
        any_field = true;
        let mut sels = Vec::new();
        for (i, d) in list.iter().enumerate() {
            match crate::l7::DnsPattern::from_selector(&d.match_name, &d.match_pattern) {
                Ok(_) => sels.push(d.clone()),
                Err(e) => errs.add(format!("{path}.toFQDNs[{i}]"), e.to_string()),
            }
        }
        if !sels.is_empty() {
            peers.push(Peer::Fqdns(sels));
        }
    }
    let mut ports = Vec::new();
    // (entry path, ports, L7 rules) of the entries with L7 rules: rules of their own.
    let mut with_l7: Vec<(String, Vec<PolicyPort>, crate::l7::L7Rules)> = Vec::new();
    // Whether the rule's own ports came from anything (otherwise, with only L7 entries, it has no rule of its own).
    let mut own_ports = r.to_ports.is_none() && r.icmps.is_none();
    if let Some(list) = &r.to_ports {
        for (i, pr) in list.iter().enumerate() {
            let p = format!("{path}.toPorts[{i}]");
            let mut entry = Vec::new();
            match port_rule(pr, dir, deny, &p, &mut entry, errs) {
                Some(l7) => with_l7.push((p, entry, l7)),
                None => {
                    own_ports = true;
                    ports.extend(entry);
                }
            }
        }
    }
    for (i, rule) in r.icmps.iter().flatten().enumerate() {
        own_ports = true;
        for (j, f) in rule.fields.iter().flatten().enumerate() {
            if let Some(p) = icmp_field(f, &format!("{path}.icmps[{i}].fields[{j}]"), errs) {
                ports.push(p);
            }
        }
    }
    if peers.is_empty() && (any_field || (r.to_ports.is_none() && r.icmps.is_none())) {
        // A peer field that selects nothing, or an empty rule: the rule matches no traffic.
        peers.push(calico(CalicoPeer { selector: Some(Expr::Not(Box::new(Expr::All))), ..Default::default() }));
    }
    let action = if deny { Action::Deny } else { Action::Allow };
    let mut out = Vec::with_capacity(1 + with_l7.len());
    if own_ports {
        out.push(Rule { peers: peers.clone(), ports, action, name: Some(path.to_string()), calico: None, l7: None });
    }
    for (p, ports, l7) in with_l7 {
        let l7 = Some(std::sync::Arc::new(l7));
        out.push(Rule { peers: peers.clone(), ports, action, name: Some(p), calico: None, l7 });
    }
    out
}

/// A `CiliumCIDRGroup` (cluster-scoped): its `externalCIDRs` as a network set of the model labelled with its name
/// under [`cilium_keys::CIDR_GROUP`] (besides its own labels), which only CIDR rules' group references select.
pub(crate) fn cidr_group(o: obj::CiliumCidrGroupObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let labels = check_labels(o.metadata.labels, || "metadata.labels".to_string(), errs);
    let Some(spec) = o.spec else {
        errs.add("spec", "required");
        return None;
    };
    let Some(list) = spec.external_cidrs else {
        errs.add("spec.externalCIDRs", "required");
        return None;
    };
    let mut nets = Vec::new();
    for (i, c) in list.iter().enumerate() {
        if let Some(net) = parse_cidr(c, &format!("spec.externalCIDRs[{i}]"), errs) {
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
    }
    let name = name?;
    let mut l: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    l.push((cilium_keys::CIDR_GROUP.to_string(), name.clone()));
    let set =
        crate::model::NetworkSet { ns: None, name, labels: l.into_iter().collect(), nets, origin: Default::default() };
    Some(Item::NetworkSet { ns_name: None, set })
}

/// A CIDR rule's `cidrGroupRef` (the group of that name) or `cidrGroupSelector` (the groups whose labels it
/// matches): the groups' CIDRs, as CIDR peers are (never a pod's or a node's address). `except` does not go with a
/// group (Cilium's API: "not supported yet"): warned and not applied.
fn cidr_group_peer(c: &obj::CiliumCidrRule, path: &str, errs: &mut Errors) -> Option<Peer> {
    let group = Expr::Has(cilium_keys::CIDR_GROUP.to_string());
    let expr = match (&c.cidr_group_ref, &c.cidr_group_selector) {
        (Some(name), _) => {
            if name.is_empty() {
                errs.add(format!("{path}.cidrGroupRef"), "must not be empty");
                return None;
            }
            Expr::Eq { key: cilium_keys::CIDR_GROUP.to_string(), value: name.clone() }
        }
        (None, Some(sel)) => and(selector(sel, &format!("{path}.cidrGroupSelector"), errs)?, group),
        (None, None) => return None,
    };
    if c.except.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.warn(
            format!("{path}.except"),
            "not applied: Cilium does not support `except` with a CIDR group (its API says so); the group's CIDRs \
             are taken whole",
        );
    }
    Some(calico(CalicoPeer { selector: Some(expr), outside_only: true, ..Default::default() }))
}

fn calico(p: CalicoPeer) -> Peer {
    Peer::Calico(Box::new(p))
}

/// A CIDR peer: addresses in `nets` but none of `except`, and no pod's or node's.
fn outside(nets: Vec<IpNet>, except: Vec<IpNet>) -> CalicoPeer {
    CalicoPeer { nets, not_nets: except, outside_only: true, ..Default::default() }
}

/// One `toPorts` entry: its ports (every protocol Cilium means by ANY or none: TCP, UDP, SCTP) into `out`, and its
/// L7 rules, if it has any, checked as the agent's `PortRule.sanitize` checks them (`rule_validation.go`).
fn port_rule(
    pr: &obj::CiliumPortRule,
    dir: Direction,
    deny: bool,
    path: &str,
    out: &mut Vec<PolicyPort>,
    errs: &mut Errors,
) -> Option<crate::l7::L7Rules> {
    for (field, present) in [
        ("terminatingTLS", pr.terminating_tls.is_some()),
        ("originatingTLS", pr.originating_tls.is_some()),
        ("serverNames", pr.server_names.is_some()),
        ("listener", pr.listener.is_some()),
    ] {
        if present {
            errs.add(format!("{path}.{field}"), NOT_YET);
        }
    }
    let l7 = match &pr.rules {
        Some(_) if deny => {
            errs.add(format!("{path}.rules"), "unknown field: deny rules have no L7 rules");
            None
        }
        Some(rules) => l7_rules(rules, dir, &format!("{path}.rules"), errs),
        None => None,
    };
    let ports = pr.ports.as_deref().unwrap_or_default();
    if ports.is_empty() {
        if l7.is_some() {
            errs.add(format!("{path}.ports"), "L7 rules need a port (the agent refuses them without one)");
            return None;
        }
        for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
            out.push(PolicyPort { protocol: proto, port: PortMatch::Any });
        }
        return None;
    }
    for (j, pp) in ports.iter().enumerate() {
        let p = format!("{path}.ports[{j}]");
        let protos: Vec<Protocol> = match pp.protocol.as_deref() {
            None | Some("ANY") => vec![Protocol::Tcp, Protocol::Udp, Protocol::Sctp],
            Some("TCP") => vec![Protocol::Tcp],
            Some("UDP") => vec![Protocol::Udp],
            Some("SCTP") => vec![Protocol::Sctp],
            Some("ICMP" | "ICMPv6" | "VRRP" | "IGMP") => {
                errs.add(format!("{p}.protocol"), NOT_YET);
                continue;
            }
            Some(other) => {
                errs.add(format!("{p}.protocol"), format!("unsupported value `{other}`: one of TCP, UDP, SCTP, ANY"));
                continue;
            }
        };
        let text = match &pp.port {
            None => String::new(),
            Some(IntOrString::Int(n)) => n.to_string(),
            Some(IntOrString::String(s)) => s.clone(),
        };
        let m = if text.is_empty() || text == "0" {
            if pp.end_port.is_some_and(|e| e != 0) {
                errs.add(format!("{p}.endPort"), "endPort needs a port");
                continue;
            }
            PortMatch::Any
        } else if let Ok(n) = text.parse::<u32>() {
            let Ok(lo) = u16::try_from(n) else {
                errs.add(format!("{p}.port"), format!("{n} is not a port (0-65535)"));
                continue;
            };
            match pp.end_port {
                None | Some(0) => PortMatch::Range(lo, lo),
                Some(e) => match u16::try_from(e) {
                    Ok(hi) if hi >= lo => PortMatch::Range(lo, hi),
                    _ => {
                        errs.add(format!("{p}.endPort"), format!("{e} is not a port at or above {lo}"));
                        continue;
                    }
                },
            }
        } else {
            if let Err(e) = crate::selector::check_port_name(&text) {
                errs.add(format!("{p}.port"), e);
                continue;
            }
            if pp.end_port.is_some_and(|e| e != 0) {
                errs.add(format!("{p}.endPort"), "endPort cannot go with a named port");
                continue;
            }
            PortMatch::Named(text)
        };
        if let Some(l7) = &l7 {
            // The agent's checks of a port that carries L7 rules.
            let http_like = l7.dns.is_empty();
            if m == PortMatch::Any {
                errs.add(format!("{p}.port"), "L7 rules can not be used when a port is 0 (or missing)");
                continue;
            }
            if http_like && pp.protocol.as_deref() != Some("TCP") {
                let proto = pp.protocol.as_deref().unwrap_or("ANY");
                errs.add(
                    format!("{p}.protocol"),
                    format!("L7 rules can only apply to TCP (not {proto}) except for DNS rules"),
                );
                continue;
            }
            if !http_like && matches!(m, PortMatch::Range(lo, hi) if lo != hi) {
                errs.add(format!("{p}.endPort"), "DNS rules do not support port ranges");
                continue;
            }
        }
        for proto in protos {
            out.push(PolicyPort { protocol: proto, port: m.clone() });
        }
    }
    l7
}

/// A `toPorts` entry's `rules`: HTTP rules compiled as the proxy compiles them, DNS selectors checked; one parser
/// per entry. Other parsers (`kafka`, `l7proto`) load with a warning: netpol does not judge their requests.
fn l7_rules(rules: &obj::CiliumL7Rules, dir: Direction, path: &str, errs: &mut Errors) -> Option<crate::l7::L7Rules> {
    fn len<T>(v: &Option<Vec<T>>) -> usize {
        v.as_ref().map_or(0, Vec::len)
    }
    let (http, dns, kafka, generic) = (len(&rules.http), len(&rules.dns), len(&rules.kafka), len(&rules.l7));
    if http + dns + kafka + generic == 0 {
        // Empty lists are no L7 rules at all (`L7Rules.IsEmpty`): the entry is an L4 rule.
        return None;
    }
    let kinds = [rules.http.is_some(), rules.dns.is_some(), rules.kafka.is_some(), rules.l7.is_some()];
    if kinds.iter().filter(|&&k| k).count() > 1 {
        errs.add(path.to_string(), "multiple L7 protocol rule types specified in single rule");
        return None;
    }
    if generic > 0 && rules.l7proto.is_none() {
        errs.add(format!("{path}.l7proto"), "required with l7");
        return None;
    }
    let mut out = crate::l7::L7Rules::default();
    if let Some(http) = &rules.http {
        for (i, h) in http.iter().enumerate() {
            match crate::l7::HttpRule::compile(h) {
                Ok(_) => out.http.push(h.clone()),
                Err(e) => errs.add(format!("{path}.http[{i}]"), e.to_string()),
            }
        }
    }
    if let Some(dns) = &rules.dns {
        if dir == Direction::Ingress {
            errs.add(format!("{path}.dns"), "DNS rules are not allowed on ingress");
            return None;
        }
        for (i, d) in dns.iter().enumerate() {
            match crate::l7::DnsPattern::from_selector(&d.match_name, &d.match_pattern) {
                Ok(_) => out.dns.push(d.clone()),
                Err(e) => errs.add(format!("{path}.dns[{i}]"), e.to_string()),
            }
        }
    }
    if kafka + generic > 0 {
        let parser = if kafka > 0 { "Kafka".to_string() } else { rules.l7proto.clone().unwrap_or_default() };
        errs.warn(
            path.to_string(),
            format!(
                "{parser} rules: netpol judges the connection at L3/L4 (Cilium accepts it and hands it to its proxy); \
                 the requests themselves are not judged"
            ),
        );
        out.other = Some(parser);
    }
    Some(out)
}

/// ICMP type names (`pkg/policy/api/icmp.go`), per family.
const ICMP_V4_TYPES: [(&str, u8); 14] = [
    ("EchoReply", 0),
    ("DestinationUnreachable", 3),
    ("Redirect", 5),
    ("Echo", 8),
    ("EchoRequest", 8),
    ("RouterAdvertisement", 9),
    ("RouterSelection", 10),
    ("TimeExceeded", 11),
    ("ParameterProblem", 12),
    ("Timestamp", 13),
    ("TimestampReply", 14),
    ("Photuris", 40),
    ("ExtendedEchoRequest", 42),
    ("ExtendedEchoReply", 43),
];
const ICMP_V6_TYPES: [(&str, u8); 27] = [
    ("DestinationUnreachable", 1),
    ("PacketTooBig", 2),
    ("TimeExceeded", 3),
    ("ParameterProblem", 4),
    ("EchoRequest", 128),
    ("EchoReply", 129),
    ("MulticastListenerQuery", 130),
    ("MulticastListenerReport", 131),
    ("MulticastListenerDone", 132),
    ("RouterSolicitation", 133),
    ("RouterAdvertisement", 134),
    ("NeighborSolicitation", 135),
    ("NeighborAdvertisement", 136),
    ("RedirectMessage", 137),
    ("RouterRenumbering", 138),
    ("ICMPNodeInformationQuery", 139),
    ("ICMPNodeInformationResponse", 140),
    ("InverseNeighborDiscoverySolicitation", 141),
    ("InverseNeighborDiscoveryAdvertisement", 142),
    ("HomeAgentAddressDiscoveryRequest", 144),
    ("HomeAgentAddressDiscoveryReply", 145),
    ("MobilePrefixSolicitation", 146),
    ("MobilePrefixAdvertisement", 147),
    ("DuplicateAddressRequestCodeSuffix", 157),
    ("DuplicateAddressConfirmationCodeSuffix", 158),
    ("ExtendedEchoRequest", 160),
    ("ExtendedEchoReply", 161),
];

/// One `icmps[].fields[]` entry: every message of that ICMP (or ICMPv6) type, whatever its code.
fn icmp_field(f: &obj::CiliumIcmpField, path: &str, errs: &mut Errors) -> Option<PolicyPort> {
    let (proto, names): (Protocol, &[(&str, u8)]) = match f.family.as_deref() {
        None | Some("" | "IPv4") => (Protocol::Icmp, &ICMP_V4_TYPES),
        Some("IPv6") => (Protocol::Icmpv6, &ICMP_V6_TYPES),
        Some(other) => {
            errs.add(format!("{path}.family"), format!("unsupported value `{other}`: IPv4 or IPv6"));
            return None;
        }
    };
    let t = match &f.icmp_type {
        None => {
            errs.add(format!("{path}.type"), "required");
            return None;
        }
        Some(IntOrString::Int(n)) => u8::try_from(*n).ok(),
        Some(IntOrString::String(s)) => {
            s.parse::<u8>().ok().or_else(|| names.iter().find(|(n, _)| n == s).map(|&(_, t)| t))
        }
    };
    let Some(t) = t else {
        errs.add(format!("{path}.type"), "an ICMP type: 0-255 or one of the family's type names");
        return None;
    };
    let (lo, hi) = crate::portset::icmp_type_range(t);
    Some(PolicyPort { protocol: proto, port: PortMatch::Range(lo, hi) })
}

/// A label key's Cilium source and key: `k8s:app` → (`k8s`, `app`); no prefix is source `any`.
fn source_key(key: &str) -> (&str, &str) {
    match key.split_once(':') {
        Some((src, k)) => (src, k),
        None => ("any", key),
    }
}

/// A label selector as an expression over Cilium's labels of a pod. `None` (with an error) when it uses what
/// netpol does not model yet.
pub(super) fn selector(sel: &obj::LabelSelector, path: &str, errs: &mut Errors) -> Option<Expr> {
    let mut terms = Vec::new();
    let mut ok = true;
    let key_of = |key: &str, field: &str, errs: &mut Errors| -> Option<String> {
        match source_key(key) {
            ("k8s" | "any", k) => Some(k.to_string()),
            ("reserved", _) => {
                errs.add(field.to_string(), format!("reserved identities (`{key}`): {NOT_YET}"));
                None
            }
            (src, _) => {
                errs.add(field.to_string(), format!("label source `{src}`: {NOT_YET}"));
                None
            }
        }
    };
    for (k, v) in sel.match_labels.iter().flatten() {
        match key_of(k, &format!("{path}.matchLabels.{k}"), errs) {
            Some(key) => terms.push(Expr::Eq { key, value: v.clone() }),
            None => ok = false,
        }
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = format!("{path}.matchExpressions[{i}]");
        let Some(key) = key_of(&req.key, &format!("{p}.key"), errs) else {
            ok = false;
            continue;
        };
        let mut values: Vec<String> = req.values.clone().unwrap_or_default();
        values.sort();
        values.dedup();
        let term = match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => {
                errs.add(format!("{p}.values"), "must be non-empty for In and NotIn");
                ok = false;
                continue;
            }
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errs.add(format!("{p}.values"), "must be empty for Exists and DoesNotExist");
                ok = false;
                continue;
            }
            "In" => Expr::In { key, values },
            "NotIn" => Expr::NotIn { key, values },
            "Exists" => Expr::Has(key),
            "DoesNotExist" => Expr::Not(Box::new(Expr::Has(key))),
            other => {
                errs.add(
                    format!("{p}.operator"),
                    format!("unsupported value `{other}`: In, NotIn, Exists, DoesNotExist"),
                );
                ok = false;
                continue;
            }
        };
        terms.push(term);
    }
    if !ok {
        return None;
    }
    Some(match terms.len() {
        0 => Expr::All,
        1 => terms.pop().unwrap_or(Expr::All),
        _ => Expr::And(terms),
    })
}

/// Whether a peer selector names the namespace label or a namespace's labels: it is then not limited to the
/// policy's namespace (`getEndpointSelector`).
fn names_namespace(sel: &obj::LabelSelector) -> bool {
    let keys = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .chain(sel.match_expressions.iter().flatten().map(|r| r.key.as_str()));
    keys.map(|k| source_key(k).1).any(|k| k == cilium_keys::NAMESPACE || k.starts_with(cilium_keys::NS_LABELS))
}

fn own_namespace(ns: &str) -> Expr {
    Expr::Eq { key: cilium_keys::NAMESPACE.to_string(), value: ns.to_string() }
}

fn and(a: Expr, b: Expr) -> Expr {
    match a {
        Expr::All => b,
        Expr::And(mut v) => {
            v.push(b);
            Expr::And(v)
        }
        a => Expr::And(vec![a, b]),
    }
}

/// A CIDR (host bits must be zero, as Cilium's CRD pattern requires a prefix) or a bare address (one host).
fn parse_cidr(s: &str, path: &str, errs: &mut Errors) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    if let Ok(ip) = s.parse::<std::net::IpAddr>() {
        return Some(IpNet::from(ip));
    }
    errs.add(path.to_string(), format!("`{s}` is not a CIDR"));
    None
}
