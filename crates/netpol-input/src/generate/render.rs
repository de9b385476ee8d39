//! The plan as YAML, in each dialect: a small block-style writer (keys in the order Kubernetes users read them,
//! strings quoted only when YAML would read them otherwise), so the same plan is always the same bytes.

use std::fmt::Write as _;
use std::net::IpAddr;

use netpol_core::model::Direction;
use netpol_core::portset::Protocol;

use super::{Dialect, Peer, Plan, PlannedPolicy, Rule, Workload};

/// A YAML value with ordered keys.
#[derive(Clone, Debug)]
pub enum Y {
    Map(Vec<(String, Y)>),
    List(Vec<Y>),
    Str(String),
    Int(i64),
}

fn s(v: impl Into<String>) -> Y {
    Y::Str(v.into())
}

fn map(entries: Vec<(&str, Y)>) -> Y {
    Y::Map(entries.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

/// Whether a string can be written plain (YAML 1.1 and 1.2 both read it back as the same string).
fn plain(v: &str) -> bool {
    const SPECIAL: &[&str] = &["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"];
    let Some(first) = v.chars().next() else { return false };
    // A CIDR: never a number, a boolean or a sexagesimal in YAML 1.1 or 1.2 (those have no `/`).
    let cidr = v.contains('/') && v.chars().all(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '/'));
    if cidr && first != ':' {
        return true;
    }
    (first.is_ascii_alphabetic() || first == '/')
        && v.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'))
        && !SPECIAL.contains(&v.to_ascii_lowercase().as_str())
}

fn scalar(v: &str) -> String {
    if plain(v) {
        v.to_string()
    } else {
        serde_json::to_string(v).unwrap_or_else(|_| "\"\"".to_string())
    }
}

fn write_y(out: &mut String, y: &Y, indent: usize) {
    let pad = " ".repeat(indent);
    match y {
        Y::Map(entries) => {
            for (k, v) in entries {
                match v {
                    Y::Map(m) if m.is_empty() => {
                        let _ = writeln!(out, "{pad}{}: {{}}", scalar(k));
                    }
                    Y::List(l) if l.is_empty() => {
                        let _ = writeln!(out, "{pad}{}: []", scalar(k));
                    }
                    Y::Map(_) => {
                        let _ = writeln!(out, "{pad}{}:", scalar(k));
                        write_y(out, v, indent + 2);
                    }
                    Y::List(_) => {
                        let _ = writeln!(out, "{pad}{}:", scalar(k));
                        write_y(out, v, indent);
                    }
                    Y::Str(x) => {
                        let _ = writeln!(out, "{pad}{}: {}", scalar(k), scalar(x));
                    }
                    Y::Int(i) => {
                        let _ = writeln!(out, "{pad}{}: {i}", scalar(k));
                    }
                }
            }
        }
        Y::List(items) => {
            for item in items {
                match item {
                    Y::Map(m) if !m.is_empty() => {
                        // The first entry on the dash's line, the others under it.
                        let mut first = String::new();
                        write_y(&mut first, &Y::Map(m.iter().take(1).cloned().collect()), indent + 2);
                        let _ = write!(out, "{pad}- {}", first.trim_start());
                        write_y(out, &Y::Map(m.iter().skip(1).cloned().collect()), indent + 2);
                    }
                    Y::Map(_) => {
                        let _ = writeln!(out, "{pad}- {{}}");
                    }
                    Y::List(_) => {
                        let _ = writeln!(out, "{pad}-");
                        write_y(out, item, indent + 2);
                    }
                    Y::Str(x) => {
                        let _ = writeln!(out, "{pad}- {}", scalar(x));
                    }
                    Y::Int(i) => {
                        let _ = writeln!(out, "{pad}- {i}");
                    }
                }
            }
        }
        Y::Str(x) => {
            let _ = writeln!(out, "{pad}{}", scalar(x));
        }
        Y::Int(i) => {
            let _ = writeln!(out, "{pad}{i}");
        }
    }
}

/// The YAML text of a value (one document, no `---`).
pub fn to_yaml(y: &Y) -> String {
    let mut out = String::new();
    write_y(&mut out, y, 0);
    out
}

/// The dialect as the report names it.
pub fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::NetworkPolicy => "NetworkPolicy",
        Dialect::ClusterNetworkPolicy => "ClusterNetworkPolicy",
        Dialect::Cilium => "CiliumNetworkPolicy",
        Dialect::Calico => "Calico NetworkPolicy",
    }
}

/// An address as a one-address CIDR: `/32` for IPv4, `/128` for IPv6.
pub fn host_cidr(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

fn labels_map(labels: &[(String, String)]) -> Y {
    Y::Map(labels.iter().map(|(k, v)| (k.clone(), s(v.clone()))).collect())
}

/// A label selector: `matchLabels`, and a `DoesNotExist` requirement per absent key.
fn label_selector(labels: &[(String, String)], absent: &[String]) -> Y {
    let mut m = Vec::new();
    if !labels.is_empty() {
        m.push(("matchLabels", labels_map(labels)));
    }
    if !absent.is_empty() {
        let reqs = absent.iter().map(|k| map(vec![("key", s(k.clone())), ("operator", s("DoesNotExist"))])).collect();
        m.push(("matchExpressions", Y::List(reqs)));
    }
    map(m)
}

fn match_labels(w: &Workload) -> Y {
    label_selector(&w.selector, &w.absent)
}

fn ns_selector(ns: &str) -> Y {
    map(vec![("matchLabels", map(vec![("kubernetes.io/metadata.name", s(ns))]))])
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
        Protocol::Icmp => "ICMP",
        Protocol::Icmpv6 => "ICMPv6",
    }
}

/// One rendered policy.
#[derive(Clone, Debug)]
pub struct Rendered {
    pub kind: &'static str,
    pub namespace: Option<String>,
    pub name: String,
    /// The document, with its header comment; no `---`.
    pub yaml: String,
}

fn metadata(name: &str, namespace: Option<&str>) -> Y {
    let mut m = vec![("name", s(name))];
    if let Some(ns) = namespace {
        m.push(("namespace", s(ns)));
    }
    m.push(("labels", map(vec![("app.kubernetes.io/managed-by", s("netpol-generate"))])));
    map(m)
}

fn header(p: &PlannedPolicy, w: &Workload) -> String {
    let dir = if p.direction == Direction::Ingress { "ingress" } else { "egress" };
    format!(
        "# netpol generate: {dir} of {}/{} ({} pod(s)), from {} observed connection(s)\n",
        w.namespace,
        w.name,
        w.pods.len(),
        p.connections
    )
}

/// NetworkPolicy.
fn network_policy(plan: &Plan, p: &PlannedPolicy, w: &Workload) -> Y {
    let ingress = p.direction == Direction::Ingress;
    let peer = |x: &Peer| -> Option<Y> {
        match x {
            Peer::Address(ip) => Some(map(vec![("ipBlock", map(vec![("cidr", s(host_cidr(*ip)))]))])),
            Peer::Workload(i) => {
                let o = plan.workloads.get(*i)?;
                let mut m = Vec::new();
                if o.ns != w.ns {
                    m.push(("namespaceSelector", ns_selector(&o.namespace)));
                }
                m.push(("podSelector", match_labels(o)));
                Some(map(m))
            }
        }
    };
    let rules: Vec<Y> = p
        .rules
        .iter()
        .map(|r: &Rule| {
            let peers: Vec<Y> = r.peers.iter().filter_map(peer).collect();
            let ports: Vec<Y> = r
                .ports
                .iter()
                .map(|(proto, port)| map(vec![("protocol", s(proto_name(*proto))), ("port", Y::Int(i64::from(*port)))]))
                .collect();
            map(vec![(if ingress { "from" } else { "to" }, Y::List(peers)), ("ports", Y::List(ports))])
        })
        .collect();
    map(vec![
        ("apiVersion", s("networking.k8s.io/v1")),
        ("kind", s("NetworkPolicy")),
        ("metadata", metadata(&p.name, Some(&w.namespace))),
        (
            "spec",
            map(vec![
                ("podSelector", match_labels(w)),
                ("policyTypes", Y::List(vec![s(if ingress { "Ingress" } else { "Egress" })])),
                (if ingress { "ingress" } else { "egress" }, Y::List(rules)),
            ]),
        ),
    ])
}

fn cnp_pods(o: &Workload) -> Y {
    map(vec![("pods", map(vec![("namespaceSelector", ns_selector(&o.namespace)), ("podSelector", match_labels(o))]))])
}

/// ClusterNetworkPolicy, Baseline tier: accept what was observed, deny the rest (below every NetworkPolicy).
fn cluster_network_policy(plan: &Plan, p: &PlannedPolicy, w: &Workload) -> Y {
    let ingress = p.direction == Direction::Ingress;
    let mut rules: Vec<Y> = Vec::new();
    for (i, r) in p.rules.iter().enumerate() {
        let mut peers: Vec<Y> = Vec::new();
        let mut nets: Vec<Y> = Vec::new();
        for x in &r.peers {
            match x {
                Peer::Workload(k) => peers.extend(plan.workloads.get(*k).map(cnp_pods)),
                Peer::Address(ip) => nets.push(s(host_cidr(*ip))),
            }
        }
        if !nets.is_empty() {
            peers.push(map(vec![("networks", Y::List(nets))]));
        }
        let protocols: Vec<Y> = r
            .ports
            .iter()
            .filter(|(proto, _)| proto.has_ports())
            .map(|(proto, port)| {
                let key = match proto {
                    Protocol::Udp => "udp",
                    Protocol::Sctp => "sctp",
                    _ => "tcp",
                };
                map(vec![(key, map(vec![("destinationPort", map(vec![("number", Y::Int(i64::from(*port)))]))]))])
            })
            .collect();
        let name = if r.dns { "dns".to_string() } else { format!("observed-{i}") };
        rules.push(map(vec![
            ("name", s(name)),
            ("action", s("Accept")),
            (if ingress { "from" } else { "to" }, Y::List(peers)),
            ("protocols", Y::List(protocols)),
        ]));
    }
    let mut rest = vec![map(vec![("namespaces", Y::Map(vec![]))])];
    if !ingress {
        rest.push(map(vec![("networks", Y::List(vec![s("0.0.0.0/0"), s("::/0")]))]));
    }
    rules.push(map(vec![
        ("name", s("everything-else")),
        ("action", s("Deny")),
        (if ingress { "from" } else { "to" }, Y::List(rest)),
    ]));
    let name = format!("{}-{}", dns_name_part(&w.namespace), p.name);
    map(vec![
        ("apiVersion", s("policy.networking.k8s.io/v1alpha2")),
        ("kind", s("ClusterNetworkPolicy")),
        ("metadata", metadata(&name, None)),
        (
            "spec",
            map(vec![
                ("tier", s("Baseline")),
                ("priority", Y::Int(100)),
                ("subject", cnp_pods(w)),
                (if ingress { "ingress" } else { "egress" }, Y::List(rules)),
            ]),
        ),
    ])
}

fn dns_name_part(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// CiliumNetworkPolicy.
fn cilium(plan: &Plan, p: &PlannedPolicy, w: &Workload) -> Y {
    let ingress = p.direction == Direction::Ingress;
    let mut rules: Vec<Y> = Vec::new();
    for r in &p.rules {
        let mut endpoints: Vec<Y> = Vec::new();
        let mut cidrs: Vec<Y> = Vec::new();
        for x in &r.peers {
            match x {
                Peer::Workload(k) => {
                    if let Some(o) = plan.workloads.get(*k) {
                        let mut l = vec![("k8s:io.kubernetes.pod.namespace".to_string(), o.namespace.clone())];
                        l.extend(o.selector.iter().cloned());
                        endpoints.push(label_selector(&l, &o.absent));
                    }
                }
                Peer::Address(ip) => cidrs.push(s(host_cidr(*ip))),
            }
        }
        let ports: Vec<Y> = r
            .ports
            .iter()
            .filter(|(proto, _)| proto.has_ports())
            .map(|(proto, port)| map(vec![("port", s(port.to_string())), ("protocol", s(proto_name(*proto)))]))
            .collect();
        let icmps: Vec<Y> = r
            .ports
            .iter()
            .filter(|(proto, _)| !proto.has_ports())
            .map(|(proto, port)| {
                let family = if *proto == Protocol::Icmpv6 { "IPv6" } else { "IPv4" };
                map(vec![("type", Y::Int(i64::from(port >> 8))), ("family", s(family))])
            })
            .collect();
        for (peers, key) in [
            (endpoints, if ingress { "fromEndpoints" } else { "toEndpoints" }),
            (cidrs, if ingress { "fromCIDR" } else { "toCIDR" }),
        ] {
            if peers.is_empty() {
                continue;
            }
            if !ports.is_empty() {
                rules.push(map(vec![
                    (key, Y::List(peers.clone())),
                    ("toPorts", Y::List(vec![map(vec![("ports", Y::List(ports.clone()))])])),
                ]));
            }
            if !icmps.is_empty() {
                rules.push(map(vec![
                    (key, Y::List(peers)),
                    ("icmps", Y::List(vec![map(vec![("fields", Y::List(icmps.clone()))])])),
                ]));
            }
        }
    }
    map(vec![
        ("apiVersion", s("cilium.io/v2")),
        ("kind", s("CiliumNetworkPolicy")),
        ("metadata", metadata(&p.name, Some(&w.namespace))),
        (
            "spec",
            map(vec![
                ("endpointSelector", match_labels(w)),
                (if ingress { "ingress" } else { "egress" }, Y::List(rules)),
            ]),
        ),
    ])
}

/// A Calico selector expression: `a == 'x' && b == 'y' && !has(c)`, or `all()`.
fn calico_selector(w: &Workload) -> String {
    let terms: Vec<String> = w
        .selector
        .iter()
        .map(|(k, v)| format!("{k} == '{v}'"))
        .chain(w.absent.iter().map(|k| format!("!has({k})")))
        .collect();
    if terms.is_empty() {
        return "all()".to_string();
    }
    terms.join(" && ")
}

/// Calico NetworkPolicy (`projectcalico.org/v3`): one rule per peer and protocol (a Calico rule has one protocol).
fn calico(plan: &Plan, p: &PlannedPolicy, w: &Workload) -> Y {
    let ingress = p.direction == Direction::Ingress;
    let mut rules: Vec<Y> = Vec::new();
    for r in &p.rules {
        let mut protos: Vec<Protocol> = r.ports.iter().map(|(p, _)| *p).collect();
        protos.dedup();
        for proto in protos {
            let mut peer_entities: Vec<Vec<(&str, Y)>> = Vec::new();
            // A Calico rule's nets are of one IP family.
            let (mut nets, mut nets6): (Vec<Y>, Vec<Y>) = (Vec::new(), Vec::new());
            for x in &r.peers {
                match x {
                    Peer::Workload(k) => {
                        if let Some(o) = plan.workloads.get(*k) {
                            let mut e = vec![("selector", s(calico_selector(o)))];
                            if o.ns != w.ns {
                                e.push((
                                    "namespaceSelector",
                                    s(format!("kubernetes.io/metadata.name == '{}'", o.namespace)),
                                ));
                            }
                            peer_entities.push(e);
                        }
                    }
                    Peer::Address(ip) if ip.to_canonical().is_ipv4() => nets.push(s(host_cidr(*ip))),
                    Peer::Address(ip) => nets6.push(s(host_cidr(*ip))),
                }
            }
            for family in [nets, nets6] {
                if !family.is_empty() {
                    peer_entities.push(vec![("nets", Y::List(family))]);
                }
            }
            for peer in peer_entities {
                let mut rule = vec![("action", s("Allow")), ("protocol", s(proto_name(proto)))];
                if proto.has_ports() {
                    let ports: Vec<Y> =
                        r.ports.iter().filter(|(p, _)| *p == proto).map(|(_, port)| Y::Int(i64::from(*port))).collect();
                    if ingress {
                        rule.push(("source", map(peer)));
                        rule.push(("destination", map(vec![("ports", Y::List(ports))])));
                    } else {
                        let mut d = peer;
                        d.push(("ports", Y::List(ports)));
                        rule.push(("destination", map(d)));
                    }
                } else {
                    // One rule per ICMP message.
                    for (_, port) in r.ports.iter().filter(|(p, _)| *p == proto) {
                        let mut one = rule.clone();
                        one.push((
                            "icmp",
                            map(vec![("type", Y::Int(i64::from(port >> 8))), ("code", Y::Int(i64::from(port & 0xff)))]),
                        ));
                        one.push((if ingress { "source" } else { "destination" }, map(peer.clone())));
                        rules.push(map(one));
                    }
                    continue;
                }
                rules.push(map(rule));
            }
        }
    }
    map(vec![
        ("apiVersion", s("projectcalico.org/v3")),
        ("kind", s("NetworkPolicy")),
        ("metadata", metadata(&p.name, Some(&w.namespace))),
        (
            "spec",
            map(vec![
                ("selector", s(calico_selector(w))),
                ("types", Y::List(vec![s(if ingress { "Ingress" } else { "Egress" })])),
                (if ingress { "ingress" } else { "egress" }, Y::List(rules)),
            ]),
        ),
    ])
}

/// Every planned policy, rendered in `dialect`, in plan order.
pub fn render(plan: &Plan, dialect: Dialect) -> Vec<Rendered> {
    let mut out = Vec::with_capacity(plan.policies.len());
    for p in &plan.policies {
        let Some(w) = plan.workloads.get(p.subject) else { continue };
        let y = match dialect {
            Dialect::NetworkPolicy => network_policy(plan, p, w),
            Dialect::ClusterNetworkPolicy => cluster_network_policy(plan, p, w),
            Dialect::Cilium => cilium(plan, p, w),
            Dialect::Calico => calico(plan, p, w),
        };
        let (kind, namespace, name) = match (&y, dialect) {
            (_, Dialect::ClusterNetworkPolicy) => {
                ("ClusterNetworkPolicy", None, format!("{}-{}", dns_name_part(&w.namespace), p.name))
            }
            (_, Dialect::Cilium) => ("CiliumNetworkPolicy", Some(w.namespace.clone()), p.name.clone()),
            _ => ("NetworkPolicy", Some(w.namespace.clone()), p.name.clone()),
        };
        out.push(Rendered { kind, namespace, name, yaml: format!("{}{}", header(p, w), to_yaml(&y)) });
    }
    out
}

/// Every rendered policy as one YAML stream.
pub fn stream(rendered: &[Rendered]) -> String {
    let mut out = String::new();
    for (i, r) in rendered.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&r.yaml);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_back_as_written() {
        let y = map(vec![
            ("a", s("plain")),
            ("b", s("true")),
            ("c", s("80")),
            ("d", s("x: y")),
            ("e", Y::List(vec![map(vec![("k", s("v")), ("l", Y::Int(3))]), s("-dash")])),
            ("f", Y::Map(vec![])),
            ("g", Y::List(vec![])),
            ("k8s:io.kubernetes.pod.namespace", s("shop")),
            ("cidrs", Y::List(vec![s("10.0.0.1/32"), s("fd00::1/128"), s("::1/128")])),
            ("h", map(vec![("i", Y::List(vec![Y::List(vec![s("n")])]))])),
        ]);
        let text = to_yaml(&y);
        let back = netpol_core::load::yaml_documents(&text);
        let v = back.into_iter().next().and_then(Result::ok).unwrap_or_default();
        let want = serde_json::json!({
            "a": "plain", "b": "true", "c": "80", "d": "x: y",
            "e": [{"k": "v", "l": 3}, "-dash"], "f": {}, "g": [],
            "k8s:io.kubernetes.pod.namespace": "shop",
            "cidrs": ["10.0.0.1/32", "fd00::1/128", "::1/128"],
            "h": {"i": [["n"]]}
        });
        assert_eq!(v, want, "{text}");
    }
}
