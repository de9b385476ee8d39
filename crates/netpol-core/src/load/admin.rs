//! The admin policy dialects of `policy.networking.k8s.io`: ClusterNetworkPolicy (`v1alpha2`, tiers Admin and
//! Baseline), AdminNetworkPolicy and BaselineAdminNetworkPolicy (`v1alpha1`), from the lean objects to model
//! policies. The rules are the CRDs' schemas of the experimental channel (the one with every field netpol reads:
//! `nodes`, `domainNames`, named ports), CEL rules included; what the schema accepts but upstream documents as
//! unsupported or undefined is loaded with a warning.
//!
//! The three kinds differ in a few facts (limits, action names, which peers exist, whether the namespace selector
//! of a `pods` peer is required): one [`Dialect`] each, and one path through the rules.

use std::net::IpAddr;

use ipnet::IpNet;

use super::objects as obj;
use super::validate::{check_protocol, convert_selector, meta_name, Errors};
use super::Item;
use crate::model::{Action, Direction, Peer, Policy, PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule, Scope};
use crate::portset::Protocol;
use crate::selector::{self, Selector};

/// What differs between the admin kinds.
struct Dialect {
    kind: PolicyKind,
    /// `maxItems` of `ingress` and `egress`, of `from` and `to`, of `protocols` (`ports`).
    max_rules: usize,
    max_peers: usize,
    max_ports: usize,
    /// The `action` values and what they do.
    actions: &'static [(&'static str, Action)],
    /// The action `domainNames` peers are documented for; `None`: the kind has no `domainNames`.
    domain_names_for: Option<&'static str>,
    /// `v1alpha1` requires both selectors of a `pods` subject or peer; `v1alpha2` only `podSelector`.
    namespace_selector_required: bool,
    /// The egress-rule CEL rule against named ports with peers that are not pods.
    named_port_message: &'static str,
}

const NAMED_PORT_MESSAGE: &str = "networks/nodes/domainNames peer cannot be set with namedPorts since there are no \
                                  namedPorts for networks/nodes/domainNames";

const CNP: Dialect = Dialect {
    kind: PolicyKind::ClusterNetworkPolicy,
    max_rules: 25,
    max_peers: 25,
    max_ports: 25,
    actions: &[("Accept", Action::Allow), ("Deny", Action::Deny), ("Pass", Action::Pass)],
    domain_names_for: Some("Accept"),
    namespace_selector_required: false,
    named_port_message: NAMED_PORT_MESSAGE,
};

const ANP: Dialect = Dialect {
    kind: PolicyKind::AdminNetworkPolicy,
    max_rules: 100,
    max_peers: 100,
    max_ports: 100,
    actions: &[("Allow", Action::Allow), ("Deny", Action::Deny), ("Pass", Action::Pass)],
    domain_names_for: Some("Allow"),
    namespace_selector_required: true,
    named_port_message: NAMED_PORT_MESSAGE,
};

const BANP: Dialect = Dialect {
    kind: PolicyKind::BaselineAdminNetworkPolicy,
    max_rules: 100,
    max_peers: 100,
    max_ports: 100,
    actions: &[("Allow", Action::Allow), ("Deny", Action::Deny)],
    domain_names_for: None,
    namespace_selector_required: true,
    named_port_message: "networks/nodes peer cannot be set with namedPorts since there are no namedPorts for \
                         networks/nodes",
};

/// The port entries of a rule: `protocols` (`v1alpha2`) or `ports` (`v1alpha1`).
#[derive(Clone, Copy)]
enum Ports<'a> {
    Protocols(&'a [obj::CnpProtocol]),
    Ports(&'a [obj::AnpPort]),
}

/// A rule of any admin kind and direction, borrowed from its object.
struct RuleObj<'a> {
    name: Option<&'a str>,
    action: Option<&'a str>,
    peers: Option<&'a [obj::AdminPeer]>,
    ports: Option<Ports<'a>>,
}

pub(crate) fn cluster_network_policy(o: obj::ClusterNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let Some(spec) = o.spec else {
        errs.add("spec", "required: a ClusterNetworkPolicy needs `tier`, `priority` and `subject`");
        return None;
    };
    let tier = match spec.tier.as_deref() {
        Some("Admin") => Some(PolicyTier::Admin),
        Some("Baseline") => Some(PolicyTier::Baseline),
        None => {
            errs.add("spec.tier", "required: `Admin` or `Baseline`");
            None
        }
        Some(other) => {
            errs.add("spec.tier", unsupported(other, &["Admin", "Baseline"]));
            None
        }
    };
    let priority = priority(spec.priority, errs);
    let ingress = spec.ingress.as_deref().unwrap_or_default().iter().map(|r| RuleObj {
        name: r.name.as_deref(),
        action: r.action.as_deref(),
        peers: r.from.as_deref(),
        ports: r.protocols.as_deref().map(Ports::Protocols),
    });
    let egress = spec.egress.as_deref().unwrap_or_default().iter().map(|r| RuleObj {
        name: r.name.as_deref(),
        action: r.action.as_deref(),
        peers: r.to.as_deref(),
        ports: r.protocols.as_deref().map(Ports::Protocols),
    });
    let policy = policy(&CNP, name, spec.subject.as_ref(), ingress, egress, errs);
    Some(Item::ClusterPolicy(Policy { tier: tier?, order: priority?.into(), ..policy? }))
}

pub(crate) fn admin_network_policy(o: obj::AdminNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    let Some(spec) = o.spec else {
        errs.add("spec", "required: an AdminNetworkPolicy needs `priority` and `subject`");
        return None;
    };
    let priority = priority(spec.priority, errs);
    let ingress = spec.ingress.as_deref().unwrap_or_default().iter().map(anp_ingress);
    let egress = spec.egress.as_deref().unwrap_or_default().iter().map(anp_egress);
    let policy = policy(&ANP, name, spec.subject.as_ref(), ingress, egress, errs);
    Some(Item::ClusterPolicy(Policy { tier: PolicyTier::Admin, order: priority?.into(), ..policy? }))
}

pub(crate) fn baseline_admin_network_policy(o: obj::BaselineAdminNetworkPolicyObj, errs: &mut Errors) -> Option<Item> {
    let name = meta_name(&o.metadata.name, errs);
    // The object's CEL rule: the kind is a singleton.
    if name.as_deref().is_some_and(|n| n != "default") {
        errs.add(
            "metadata.name",
            "Only one baseline admin network policy with metadata.name=\"default\" can be created in the cluster",
        );
    }
    let Some(spec) = o.spec else {
        errs.add("spec", "required: a BaselineAdminNetworkPolicy needs `subject`");
        return None;
    };
    let ingress = spec.ingress.as_deref().unwrap_or_default().iter().map(anp_ingress);
    let egress = spec.egress.as_deref().unwrap_or_default().iter().map(anp_egress);
    let policy = policy(&BANP, name, spec.subject.as_ref(), ingress, egress, errs);
    // No priority: there is one BANP, after every NetworkPolicy.
    Some(Item::ClusterPolicy(Policy { tier: PolicyTier::Baseline, order: 0.into(), ..policy? }))
}

fn anp_ingress(r: &obj::AnpIngressRule) -> RuleObj<'_> {
    RuleObj {
        name: r.name.as_deref(),
        action: r.action.as_deref(),
        peers: r.from.as_deref(),
        ports: r.ports.as_deref().map(Ports::Ports),
    }
}

fn anp_egress(r: &obj::AnpEgressRule) -> RuleObj<'_> {
    RuleObj {
        name: r.name.as_deref(),
        action: r.action.as_deref(),
        peers: r.to.as_deref(),
        ports: r.ports.as_deref().map(Ports::Ports),
    }
}

/// `spec.priority`: required, 0 to 1000.
fn priority(p: Option<i64>, errs: &mut Errors) -> Option<u32> {
    match p {
        None => {
            errs.add("spec.priority", "required: a number from 0 (first) to 1000");
            None
        }
        Some(n @ 0..=1000) => u32::try_from(n).ok(),
        Some(n) => {
            errs.add("spec.priority", format!("must be between 0 and 1000, inclusive (got {n})"));
            None
        }
    }
}

/// What the kinds share: subject and rules. The policy's tier and priority are the caller's to set.
fn policy<'a>(
    d: &Dialect,
    name: Option<String>,
    subject: Option<&obj::AdminSubject>,
    ingress: impl ExactSizeIterator<Item = RuleObj<'a>>,
    egress: impl ExactSizeIterator<Item = RuleObj<'a>>,
    errs: &mut Errors,
) -> Option<Policy> {
    let subject = match subject {
        None => {
            errs.add("spec.subject", "required: `namespaces` or `pods`");
            None
        }
        Some(s) => self::subject(d, s, errs),
    };
    let ingress = rules(d, Direction::Ingress, ingress, errs);
    let egress = rules(d, Direction::Egress, egress, errs);
    let (namespaces, pods) = subject?;
    Some(Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: d.kind,
        tier: PolicyTier::Admin,
        order: 0.into(),
        calico_selector: None,
        scope: Scope::Cluster(namespaces),
        name: name?,
        pod_selector: pods,
        // No implicit isolation: a policy affects a direction only through its rules.
        affects_ingress: !ingress.is_empty(),
        affects_egress: !egress.is_empty(),
        ingress,
        egress,
        origin: Default::default(),
    })
}

/// `spec.ingress` or `spec.egress`.
fn rules<'a>(
    d: &Dialect,
    dir: Direction,
    list: impl ExactSizeIterator<Item = RuleObj<'a>>,
    errs: &mut Errors,
) -> Vec<Rule> {
    let path = format!("spec.{dir}");
    if list.len() > d.max_rules {
        errs.add(&path, format!("must have at most {} items (got {})", d.max_rules, list.len()));
    }
    list.enumerate().map(|(i, r)| rule(d, dir, &r, &format!("{path}[{i}]"), errs)).collect()
}

/// `subject`: exactly one of `namespaces` (every pod of those namespaces) and `pods`. Returns the namespace
/// selector and the pod selector.
fn subject(d: &Dialect, s: &obj::AdminSubject, errs: &mut Errors) -> Option<(Selector, Selector)> {
    let fields = [("namespaces", s.namespaces.is_some()), ("pods", s.pods.is_some())];
    exactly_one(&fields, "spec.subject", errs)?;
    match (&s.namespaces, &s.pods) {
        (Some(ns), _) => Some((convert_selector(ns, "spec.subject.namespaces", errs), Selector::everything())),
        (None, Some(p)) => namespaced_pod(d, p, "spec.subject.pods", errs),
        (None, None) => None,
    }
}

/// A `pods` subject or peer: (namespace selector, pod selector).
fn namespaced_pod(d: &Dialect, p: &obj::NamespacedPod, path: &str, errs: &mut Errors) -> Option<(Selector, Selector)> {
    let namespaces = match &p.namespace_selector {
        Some(s) => Some(convert_selector(s, format_args!("{path}.namespaceSelector"), errs)),
        // v1alpha2: absent is empty, every namespace.
        None if !d.namespace_selector_required => Some(Selector::everything()),
        None => {
            errs.add(format!("{path}.namespaceSelector"), "required (`{}` selects every namespace)");
            None
        }
    };
    let pods = match &p.pod_selector {
        Some(s) => Some(convert_selector(s, format_args!("{path}.podSelector"), errs)),
        None => {
            errs.add(format!("{path}.podSelector"), "required (`{}` selects every pod)");
            None
        }
    };
    Some((namespaces?, pods?))
}

fn rule(d: &Dialect, dir: Direction, r: &RuleObj<'_>, path: &str, errs: &mut Errors) -> Rule {
    let mut rule = Rule::default();
    match r.name {
        Some(n) if n.chars().count() > 100 => errs
            .add(format!("{path}.name"), format!("may not be longer than 100 characters (got {})", n.chars().count())),
        // `omitempty`: an empty name is no name.
        Some(n) if !n.is_empty() => rule.name = Some(n.to_string()),
        _ => {}
    }
    match r.action {
        None => errs.add(format!("{path}.action"), format!("required: {}", quoted(d.actions.iter().map(|a| a.0)))),
        Some(a) => match d.actions.iter().find(|(name, _)| *name == a) {
            Some((_, action)) => rule.action = *action,
            None => {
                let mut msg = unsupported(a, &d.actions.iter().map(|a| a.0).collect::<Vec<_>>());
                match (d.kind, a) {
                    (PolicyKind::ClusterNetworkPolicy, "Allow") => {
                        msg.push_str(" (v1alpha2 renamed `Allow` to `Accept`)")
                    }
                    (PolicyKind::AdminNetworkPolicy, "Accept") => msg.push_str(" (v1alpha1 spells it `Allow`)"),
                    (PolicyKind::BaselineAdminNetworkPolicy, "Pass") => {
                        msg.push_str(" (a BaselineAdminNetworkPolicy is the last tier: it has no Pass)")
                    }
                    _ => {}
                }
                errs.add(format!("{path}.action"), msg);
            }
        },
    }
    let peer_field = match dir {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let peers = r.peers.unwrap_or_default();
    if r.peers.is_none() {
        errs.add(format!("{path}.{peer_field}"), "required: at least 1 peer");
    } else {
        check_len(peers.len(), d.max_peers, &format!("{path}.{peer_field}"), "", errs);
    }
    for (i, p) in peers.iter().enumerate() {
        let ppath = format!("{path}.{peer_field}[{i}]");
        if let Some(peer) = peer(d, dir, p, &ppath, errs) {
            if let (Peer::DomainNames(_), Some(meant_for)) = (&peer, d.domain_names_for) {
                if r.action.is_some_and(|a| a != meant_for) {
                    errs.warn(
                        format!("{ppath}.domainNames"),
                        format!(
                            "`domainNames` peers are only supported for {meant_for} rules: what a {} rule does with \
                             them is undefined upstream",
                            r.action.unwrap_or_default()
                        ),
                    );
                }
            }
            rule.peers.push(peer);
        }
    }
    let named = match r.ports {
        None => None,
        Some(Ports::Protocols(ps)) => {
            check_len(ps.len(), d.max_ports, &format!("{path}.protocols"), " (omit `protocols` for every port)", errs);
            protocols(ps, path, &mut rule.ports, errs)
        }
        Some(Ports::Ports(ps)) => {
            check_len(ps.len(), d.max_ports, &format!("{path}.ports"), " (omit `ports` for every port)", errs);
            anp_ports(ps, path, &mut rule.ports, errs)
        }
    };
    // The egress rule's CEL rule: named ports only with pod peers.
    if let Some(named_path) = named.filter(|_| dir == Direction::Egress) {
        let not_pods = peers.iter().enumerate().find_map(|(i, p)| {
            let field = [("networks", p.networks.is_some()), ("nodes", p.nodes.is_some())]
                .into_iter()
                .chain(d.domain_names_for.map(|_| ("domainNames", p.domain_names.is_some())))
                .find(|f| f.1)?;
            Some((i, field.0))
        });
        if let Some((i, field)) = not_pods {
            errs.add(named_path, format!("{} (`{peer_field}[{i}]` is a `{field}` peer)", d.named_port_message));
        }
    }
    rule
}

/// One peer: exactly one field, among those the kind has in this direction.
fn peer(d: &Dialect, dir: Direction, p: &obj::AdminPeer, path: &str, errs: &mut Errors) -> Option<Peer> {
    let egress = dir == Direction::Egress;
    let fields = [
        ("namespaces", p.namespaces.is_some(), true),
        ("pods", p.pods.is_some(), true),
        ("nodes", p.nodes.is_some(), egress),
        ("networks", p.networks.is_some(), egress),
        ("domainNames", p.domain_names.is_some(), egress && d.domain_names_for.is_some()),
    ];
    let allowed = quoted(fields.iter().filter(|f| f.2).map(|f| f.0));
    let mut ok = true;
    for (field, _, _) in fields.iter().filter(|f| f.1 && !f.2) {
        let msg = if egress {
            format!("{} egress peers have no `{field}` (peers: {allowed})", d.kind.as_str())
        } else {
            format!("`{field}` peers are only allowed in egress rules (`to`); ingress peers are {allowed}")
        };
        errs.add(format!("{path}.{field}"), msg);
        ok = false;
    }
    match fields.iter().filter(|f| f.1).count() {
        0 => {
            errs.add(path, format!("must specify exactly one of {allowed}"));
            return None;
        }
        1 => {}
        _ => {
            let set = quoted(fields.iter().filter(|f| f.1).map(|f| f.0));
            errs.add(path, format!("must specify exactly one of {allowed}, not {set}"));
            return None;
        }
    }
    if !ok {
        return None;
    }
    if let Some(s) = &p.namespaces {
        return Some(Peer::Selectors {
            namespaces: Some(convert_selector(s, format_args!("{path}.namespaces"), errs)),
            pods: None,
        });
    }
    if let Some(np) = &p.pods {
        let (ns, pods) = namespaced_pod(d, np, &format!("{path}.pods"), errs)?;
        return Some(Peer::Selectors { namespaces: Some(ns), pods: Some(pods) });
    }
    if let Some(s) = &p.nodes {
        return Some(Peer::Nodes(convert_selector(s, format_args!("{path}.nodes"), errs)));
    }
    if let Some(nets) = &p.networks {
        return networks(nets, &format!("{path}.networks"), errs).map(Peer::Networks);
    }
    if let Some(names) = &p.domain_names {
        return domain_names(names, &format!("{path}.domainNames"), errs).map(Peer::DomainNames);
    }
    None
}

/// `networks`: 1 to 25 distinct CIDRs (`isCIDR`, at most 43 characters), host bits masked off.
fn networks(nets: &[String], path: &str, errs: &mut Errors) -> Option<Vec<IpNet>> {
    check_len(nets.len(), 25, path, "", errs);
    let mut out: Vec<IpNet> = Vec::with_capacity(nets.len());
    let mut ok = true;
    for (i, s) in nets.iter().enumerate() {
        let epath = format!("{path}[{i}]");
        if nets.get(..i).is_some_and(|before| before.contains(s)) {
            errs.add(epath, format!("duplicate value `{s}`"));
            ok = false;
            continue;
        }
        if s.len() > 43 {
            errs.add(epath, format!("may not be longer than 43 characters (got {})", s.len()));
            ok = false;
            continue;
        }
        match parse_cidr(s) {
            None => {
                errs.add(epath, format!("Invalid CIDR format provided: `{s}` (e.g. 10.0.0.0/8 or fd00::/8)"));
                ok = false;
            }
            Some(net) => {
                let masked = net.trunc();
                if masked != net {
                    errs.warn(epath, format!("`{s}` has host bits set: it is read as `{masked}`"));
                }
                if !out.contains(&masked) {
                    out.push(masked);
                }
            }
        }
    }
    ok.then_some(out)
}

/// Kubernetes CEL's `isCIDR`: Go's `netip.ParsePrefix` (no zone, no leading zeros in an IPv4 address or in the
/// prefix length), and no IPv4-mapped IPv6 address. Host bits may be set (not masked here).
pub(crate) fn parse_cidr(s: &str) -> Option<IpNet> {
    let (addr, len) = s.split_once('/')?;
    // Rust's parser, like Go's netip, refuses zones and leading zeros in IPv4 octets.
    let ip: IpAddr = addr.parse().ok()?;
    if let IpAddr::V6(v6) = ip {
        if v6.to_ipv4_mapped().is_some() {
            return None;
        }
    }
    let digits = !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit());
    if !digits || (len.len() > 1 && len.starts_with('0')) {
        return None;
    }
    IpNet::new(ip, len.parse().ok()?).ok()
}

/// `domainNames`: 1 to 25 distinct names of the upstream pattern, lowercased.
fn domain_names(names: &[String], path: &str, errs: &mut Errors) -> Option<Vec<String>> {
    check_len(names.len(), 25, path, "", errs);
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    let mut ok = true;
    for (i, s) in names.iter().enumerate() {
        let epath = format!("{path}[{i}]");
        if names.get(..i).is_some_and(|before| before.contains(s)) {
            errs.add(epath, format!("duplicate value `{s}`"));
            ok = false;
        } else if !is_domain_name(s) {
            errs.add(
                epath,
                format!(
                    "invalid domain name `{s}`: must be two or more dot-separated labels (letters, digits, `-` and \
                     `_`, beginning and ending with a letter or digit), optionally prefixed by `*.` and followed by \
                     a `.`"
                ),
            );
            ok = false;
        } else {
            let lower = s.to_ascii_lowercase();
            if !out.contains(&lower) {
                out.push(lower);
            }
        }
    }
    ok.then_some(out)
}

/// The `DomainName` pattern, exactly:
/// `^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`. Upstream's
/// `A-z` (for `A-Z`) is kept: the API server admits `[ \ ] ^ _` and a backtick as a label's first character.
pub(crate) fn is_domain_name(s: &str) -> bool {
    let rest = s.strip_prefix("*.").unwrap_or(s);
    let rest = rest.strip_suffix('.').unwrap_or(rest);
    let first = |c: &u8| (b'A'..=b'z').contains(c) || c.is_ascii_digit();
    let middle = |c: &u8| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_';
    let label = |l: &str| match l.as_bytes() {
        [] => false,
        [c] => first(c),
        [f, mid @ .., l] => first(f) && mid.iter().all(middle) && l.is_ascii_alphanumeric(),
    };
    rest.split('.').count() >= 2 && rest.split('.').all(label)
}

/// `protocols` (v1alpha2) into `out`; returns the path of the first named port, if any.
fn protocols(ps: &[obj::CnpProtocol], path: &str, out: &mut Vec<PolicyPort>, errs: &mut Errors) -> Option<String> {
    let mut named = None;
    for (i, p) in ps.iter().enumerate() {
        let ppath = format!("{path}.protocols[{i}]");
        let fields = [
            ("tcp", p.tcp.is_some()),
            ("udp", p.udp.is_some()),
            ("sctp", p.sctp.is_some()),
            ("destinationNamedPort", p.destination_named_port.is_some()),
        ];
        let Some(field) = exactly_one(&fields, &ppath, errs) else { continue };
        let (protocol, port) = match field {
            "tcp" => (Protocol::Tcp, &p.tcp),
            "udp" => (Protocol::Udp, &p.udp),
            "sctp" => (Protocol::Sctp, &p.sctp),
            _ => {
                let name = p.destination_named_port.as_deref().unwrap_or_default();
                let npath = format!("{ppath}.destinationNamedPort");
                named_port(name, &npath, out, errs);
                named.get_or_insert(npath);
                continue;
            }
        };
        let dpath = format!("{ppath}.{field}.destinationPort");
        let Some(dp) = port.as_ref().and_then(|p| p.destination_port.as_ref()) else {
            // The protocol structs have `minProperties: 1`, whatever the docs say of an omitted port.
            errs.add(dpath, "required (for every port of the protocol, use `range: {start: 1, end: 65535}`)");
            continue;
        };
        let Some(which) = exactly_one(&[("number", dp.number.is_some()), ("range", dp.range.is_some())], &dpath, errs)
        else {
            continue;
        };
        if which == "number" {
            if let Some(n) = port_number(dp.number, || format!("{dpath}.number"), errs) {
                out.push(PolicyPort { protocol, port: PortMatch::Range(n, n) });
            }
        } else if let Some(r) = &dp.range {
            let rpath = format!("{dpath}.range");
            let start = port_number(r.start, || format!("{rpath}.start"), errs);
            let end = port_number(r.end, || format!("{rpath}.end"), errs);
            if let (Some(start), Some(end)) = (start, end) {
                if start < end {
                    out.push(PolicyPort { protocol, port: PortMatch::Range(start, end) });
                } else {
                    // The PortRange CEL rule (strict: a one-port range is a `number`).
                    errs.add(rpath, format!("Start port must be less than End port (got {start} to {end})"));
                }
            }
        }
    }
    named
}

/// `ports` (v1alpha1) into `out`; returns the path of the first named port, if any.
fn anp_ports(ps: &[obj::AnpPort], path: &str, out: &mut Vec<PolicyPort>, errs: &mut Errors) -> Option<String> {
    let mut named = None;
    for (i, p) in ps.iter().enumerate() {
        let ppath = format!("{path}.ports[{i}]");
        let fields = [
            ("portNumber", p.port_number.is_some()),
            ("namedPort", p.named_port.is_some()),
            ("portRange", p.port_range.is_some()),
        ];
        match exactly_one(&fields, &ppath, errs) {
            Some("portNumber") => {
                let Some(pn) = &p.port_number else { continue };
                let proto = check_protocol(pn.protocol.as_deref(), format_args!("{ppath}.portNumber.protocol"), errs);
                let port = port_number(pn.port, || format!("{ppath}.portNumber.port"), errs);
                if let (Some(protocol), Some(n)) = (proto, port) {
                    out.push(PolicyPort { protocol, port: PortMatch::Range(n, n) });
                }
            }
            Some("portRange") => {
                let Some(r) = &p.port_range else { continue };
                let rpath = format!("{ppath}.portRange");
                let proto = check_protocol(r.protocol.as_deref(), format_args!("{rpath}.protocol"), errs);
                let start = port_number(r.start, || format!("{rpath}.start"), errs);
                let end = port_number(r.end, || format!("{rpath}.end"), errs);
                if let (Some(protocol), Some(start), Some(end)) = (proto, start, end) {
                    if start > end {
                        // Documented ("Start must be less than End") but, in v1alpha1, not enforced: the API server
                        // accepts the range, and it matches no port (the model's empty range).
                        errs.warn(
                            rpath,
                            format!("`start` ({start}) is greater than `end` ({end}): this range matches no port"),
                        );
                    }
                    out.push(PolicyPort { protocol, port: PortMatch::Range(start, end) });
                }
            }
            Some(_) => {
                let npath = format!("{ppath}.namedPort");
                named_port(p.named_port.as_deref().unwrap_or_default(), &npath, out, errs);
                named.get_or_insert(npath);
            }
            None => {}
        }
    }
    named
}

/// A named port of the admin kinds: it has no protocol of its own, it matches the destination's container port of
/// that name whatever its protocol. The model's named ports have one (NetworkPolicy's resolve against the
/// container port of that name and protocol), so it becomes one entry per protocol a container port can have.
fn named_port(name: &str, path: &str, out: &mut Vec<PolicyPort>, errs: &mut Errors) {
    // Upstream does not validate the name; one that is no valid port name is on no container.
    if let Err(e) = selector::check_port_name(name) {
        errs.warn(path, format!("{e}: no container port has this name, so this entry matches no port"));
    }
    for protocol in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        out.push(PolicyPort { protocol, port: PortMatch::Named(name.to_string()) });
    }
}

fn port_number(n: Option<i64>, path: impl Fn() -> String, errs: &mut Errors) -> Option<u16> {
    match n {
        None => {
            errs.add(path(), "required");
            None
        }
        Some(n) => match u16::try_from(n) {
            Ok(p) if p >= 1 => Some(p),
            _ => {
                errs.add(path(), format!("must be between 1 and 65535, inclusive (got {n})"));
                None
            }
        },
    }
}

/// `minItems: 1`, `maxItems: max`.
fn check_len(n: usize, max: usize, path: &str, hint: &str, errs: &mut Errors) {
    if n == 0 {
        errs.add(path, format!("must have at least 1 item{hint}"));
    } else if n > max {
        errs.add(path, format!("must have at most {max} items (got {n})"));
    }
}

/// A one-of object (`minProperties: 1`, `maxProperties: 1`): the field that is set.
fn exactly_one(fields: &[(&'static str, bool)], path: &str, errs: &mut Errors) -> Option<&'static str> {
    let mut set = fields.iter().filter(|f| f.1).map(|f| f.0);
    match (set.next(), set.next()) {
        (Some(f), None) => Some(f),
        (None, _) => {
            errs.add(path, format!("must specify exactly one of {}", quoted(fields.iter().map(|f| f.0))));
            None
        }
        (Some(_), Some(_)) => {
            let all = quoted(fields.iter().map(|f| f.0));
            errs.add(
                path,
                format!(
                    "must specify exactly one of {all}, not {}",
                    quoted(fields.iter().filter(|f| f.1).map(|f| f.0))
                ),
            );
            None
        }
    }
}

/// `a`, `b`, `c`
fn quoted<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The API server's enum message.
fn unsupported(value: &str, supported: &[&str]) -> String {
    let list: Vec<String> = supported.iter().map(|s| format!("\"{s}\"")).collect();
    let mut msg = format!("unsupported value `{value}`: supported values: {}", list.join(", "));
    if let Some(s) = supported.iter().find(|s| s.eq_ignore_ascii_case(value)) {
        msg.push_str(&format!(" (values are case-sensitive: `{s}`)"));
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names_follow_the_upstream_pattern() {
        for ok in ["kubernetes.io", "*.kubernetes.io", "a.b", "www.Example.COM.", "x_y.a-b.io", "1.2", "_a.io", "[.io"]
        {
            assert!(is_domain_name(ok), "{ok}");
        }
        for bad in
            ["localhost", "*.io.", "*", "*.", "a..b", ".a.b", "a.b..", "-a.io", "a-.io", "a.*.io", "*.*.io", "é.io"]
        {
            assert!(!is_domain_name(bad), "{bad}");
        }
        assert!(!is_domain_name("*.io"), "a wildcard needs two labels after it");
    }

    #[test]
    fn cidrs_follow_is_cidr() {
        for ok in ["10.0.0.0/8", "10.0.0.1/8", "fd00::/8", "0.0.0.0/0", "::/0", "::1.2.3.4/128", "1.2.3.4/32"] {
            assert!(parse_cidr(ok).is_some(), "{ok}");
        }
        for bad in ["10.0.0.0", "10.0.0.0/33", "010.0.0.0/8", "10.0.0.0/08", "10.0.0.0/+8", "::ffff:1.2.3.4/128"] {
            assert!(parse_cidr(bad).is_none(), "{bad}");
        }
        for bad in ["fe80::1%eth0/64", " 10.0.0.0/8", "10.0.0.0/8 ", "fd00::/129", "10.0.0.0/"] {
            assert!(parse_cidr(bad).is_none(), "{bad}");
        }
    }
}
