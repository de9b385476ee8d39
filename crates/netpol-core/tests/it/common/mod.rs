//! Random-cluster building blocks shared by the property tests (a tiny deterministic generator, so a failing
//! case is reproduced by its seed).
#![allow(dead_code, clippy::unwrap_used, clippy::indexing_slicing)]

use std::net::IpAddr;

use ipnet::IpNet;
use netpol_core::compile::{Endpoint, Engine};
use netpol_core::model::*;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::selector::{Atom, Labels, Requirement, Selector};
use netpol_core::verdict::{Explanation, Verdict};

/// A tiny deterministic generator, so a failing case is reproduced by its seed.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len())]
    }
}

pub fn labels(r: &mut Rng, keys: &[(&str, &[&str])]) -> Labels {
    let mut l = Labels::new();
    for (k, vals) in keys {
        if r.chance(70) {
            l.insert(k.to_string(), r.pick(vals).to_string());
        }
    }
    l
}

pub fn selector(r: &mut Rng, keys: &[(&str, &[&str])]) -> Selector {
    let mut reqs = Vec::new();
    for _ in 0..r.below(3) {
        let (k, vals) = r.pick(keys);
        let v: Vec<Atom> = vals.iter().filter(|_| r.chance(50)).map(|&s| s.into()).collect();
        let v = if v.is_empty() { vec![vals[0].into()] } else { v };
        reqs.push(match r.below(4) {
            0 => Requirement::In((*k).into(), v),
            1 => Requirement::NotIn((*k).into(), v),
            2 => Requirement::Exists((*k).into()),
            _ => Requirement::DoesNotExist((*k).into()),
        });
    }
    Selector::from_requirements(reqs)
}

pub const NS_KEYS: &[(&str, &[&str])] = &[("team", &["a", "b"]), ("env", &["x", "y"])];
pub const POD_KEYS: &[(&str, &[&str])] = &[("app", &["a", "b", "c"]), ("tier", &["x", "y"])];

// ---- random clusters (the generator of the property tests) ----

pub const PROTOS: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
pub const PORTS: [u16; 6] = [53, 70, 80, 81, 90, 100];

pub fn ip(r: &mut Rng, i: usize) -> Option<IpAddr> {
    match r.below(6) {
        0 => None,
        1 => Some(format!("fd00::{}", i + 1).parse().unwrap()),
        _ => Some(format!("10.0.0.{}", i * 16 + 1 + r.below(15)).parse().unwrap()),
    }
}

pub fn ip_block(r: &mut Rng) -> IpBlock {
    if r.chance(25) {
        let cidr: IpNet = "fd00::/120".parse().unwrap();
        let except = if r.chance(50) { vec!["fd00::/126".parse().unwrap()] } else { vec![] };
        return IpBlock { cidr, except };
    }
    let prefix = *r.pick(&[24u8, 25, 26, 28]);
    let base = (r.below(4) * 64) as u8;
    let cidr = IpNet::new(format!("10.0.0.{base}").parse().unwrap(), prefix).unwrap().trunc();
    let mut except = Vec::new();
    if r.chance(40) && prefix < 30 {
        let IpNet::V4(c) = cidr else { unreachable!() };
        let sub = c.subnets(prefix + 2).unwrap().nth(r.below(4)).unwrap();
        except.push(IpNet::V4(sub));
        // Sometimes more: nested, overlapping, adjacent or duplicate exceptions, in any order.
        if r.chance(40) {
            for _ in 0..1 + r.below(3) {
                let p = (prefix + 1 + r.below(5) as u8).min(32);
                let n = 1usize << (p - prefix);
                except.push(IpNet::V4(c.subnets(p).unwrap().nth(r.below(n)).unwrap()));
            }
        }
    }
    IpBlock { cidr, except }
}

pub fn rule(r: &mut Rng) -> Rule {
    let mut rule = Rule::default();
    for _ in 0..r.below(3) {
        rule.peers.push(if r.chance(25) {
            Peer::IpBlock(ip_block(r))
        } else {
            let namespaces = r.chance(60).then(|| selector(r, NS_KEYS));
            let pods = if namespaces.is_none() || r.chance(50) { Some(selector(r, POD_KEYS)) } else { None };
            Peer::Selectors { namespaces, pods }
        });
    }
    for _ in 0..r.below(3) {
        let protocol = *r.pick(&PROTOS);
        let port = match r.below(4) {
            0 => PortMatch::Any,
            1 => {
                let lo = *r.pick(&PORTS);
                PortMatch::Range(lo, lo + r.below(25) as u16)
            }
            2 => PortMatch::Range(*r.pick(&PORTS), 0).clone(),
            _ => PortMatch::Named(r.pick(&["http", "dns", "metrics", "sctp"]).to_string()),
        };
        let port = match port {
            PortMatch::Range(lo, 0) => PortMatch::Range(lo, lo),
            p => p,
        };
        rule.ports.push(PolicyPort { protocol, port });
    }
    rule
}

/// Named container ports, a random subset (names unique per pod; `http` on two ports across pods).
pub fn pod_ports(r: &mut Rng) -> Vec<ContainerPort> {
    let choices = [
        ("http", 80, Protocol::Tcp),
        ("http", 81, Protocol::Tcp),
        ("dns", 53, Protocol::Udp),
        ("metrics", 90, Protocol::Tcp),
        ("sctp", 70, Protocol::Sctp),
    ];
    let mut ports: Vec<ContainerPort> = Vec::new();
    for (n, p, proto) in choices {
        if r.chance(35) && !ports.iter().any(|x| x.name.as_deref() == Some(n)) {
            ports.push(ContainerPort { name: Some((*n).into()), port: p, protocol: proto });
        }
    }
    ports
}

/// A policy with these rules, random policyTypes (ingress, egress or both) and a random pod selector.
pub fn policy_with_rules(r: &mut Rng, ns: NsId, name: String, ingress: Vec<Rule>, egress: Vec<Rule>) -> Policy {
    let (affects_ingress, affects_egress) = match r.below(3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let pod_selector = selector(r, POD_KEYS);
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind: PolicyKind::NetworkPolicy,
        tier: PolicyTier::NetworkPolicy,
        order: 1000.into(),
        calico_selector: None,
        scope: Scope::Namespace(ns),
        name,
        pod_selector,
        ingress,
        egress,
        affects_ingress,
        affects_egress,
        origin: Origin::default(),
    }
}

pub const NODE_KEYS: &[(&str, &[&str])] = &[("zone", &["a", "b"]), ("role", &["infra", "work"])];

/// Destination names flows may carry (`dst_fqdn`), and the `domainNames` entries rules may have.
pub const NAMES: [&str; 3] = ["api.example.com", "a.b.example.com", "other.org"];
const DOMAINS: [&str; 4] = ["api.example.com", "*.example.com", "other.org", "*.b.example.com"];

/// An admin-tier rule: any action, peers of every kind (namespaces and pods always name their namespaces).
pub fn admin_rule(r: &mut Rng, egress: bool, baseline: bool) -> Rule {
    let mut rule = rule(r);
    for p in &mut rule.peers {
        match p {
            Peer::Selectors { namespaces, .. } if namespaces.is_none() => *namespaces = Some(selector(r, NS_KEYS)),
            Peer::IpBlock(b) if r.chance(70) => *p = Peer::Networks(vec![b.cidr, ip_block(r).cidr]),
            _ => {}
        }
    }
    if egress && r.chance(30) {
        rule.peers.push(Peer::Nodes(selector(r, NODE_KEYS)));
    }
    if egress && r.chance(25) {
        let names = DOMAINS.iter().filter(|_| r.chance(50)).map(|d| d.to_string()).collect::<Vec<_>>();
        rule.peers.push(Peer::DomainNames(if names.is_empty() { vec![DOMAINS[0].to_string()] } else { names }));
    }
    rule.action = match r.below(if baseline { 2 } else { 3 }) {
        0 => Action::Allow,
        1 => Action::Deny,
        _ => Action::Pass,
    };
    rule.name = r.chance(50).then(|| format!("r{}", r.below(100)));
    rule
}

/// A policy of an admin tier (ClusterNetworkPolicy of either tier, AdminNetworkPolicy or
/// BaselineAdminNetworkPolicy), with equal priorities now and then.
pub fn admin_policy(r: &mut Rng, name: String) -> Policy {
    let (kind, tier) = match r.below(4) {
        0 => (PolicyKind::ClusterNetworkPolicy, PolicyTier::Admin),
        1 => (PolicyKind::ClusterNetworkPolicy, PolicyTier::Baseline),
        2 => (PolicyKind::AdminNetworkPolicy, PolicyTier::Admin),
        _ => (PolicyKind::BaselineAdminNetworkPolicy, PolicyTier::Baseline),
    };
    let baseline = kind == PolicyKind::BaselineAdminNetworkPolicy;
    let ingress: Vec<Rule> = (0..r.below(3)).map(|_| admin_rule(r, false, baseline)).collect();
    let egress: Vec<Rule> = (0..r.below(3)).map(|_| admin_rule(r, true, baseline)).collect();
    Policy {
        host: Default::default(),
        position: 0,
        manifest: None,
        kind,
        tier,
        order: (r.below(3) as u32).into(),
        calico_selector: None,
        scope: Scope::Cluster(selector(r, NS_KEYS)),
        name: if baseline { "default".to_string() } else { name },
        pod_selector: if r.chance(40) { Selector::everything() } else { selector(r, POD_KEYS) },
        affects_ingress: !ingress.is_empty(),
        affects_egress: !egress.is_empty(),
        ingress,
        egress,
        origin: Origin::default(),
    }
}

/// A cluster of NetworkPolicies only.
pub fn np_cluster(seed: u64) -> Cluster {
    let mut c = cluster(seed);
    c.policies.retain(|p| p.kind == PolicyKind::NetworkPolicy);
    c.nodes.clear();
    c
}

/// A random cluster: namespaces, pods (some on the host network, at their node's address), NetworkPolicies,
/// policies of the admin tiers, nodes.
pub fn cluster(seed: u64) -> Cluster {
    let mut r = Rng(seed);
    let mut c = Cluster::default();
    for i in 0..1 + r.below(3) {
        let mut l = labels(&mut r, NS_KEYS);
        l.insert("kubernetes.io/metadata.name", format!("ns{i}"));
        c.namespaces.push(Namespace { name: format!("ns{i}"), labels: l, origin: None });
    }
    for i in 0..1 + r.below(8) {
        let ports = pod_ports(&mut r);
        let ips = ip(&mut r, i).into_iter().collect();
        c.pods.push(Pod {
            ns: NsId::new(r.below(c.namespaces.len())),
            name: format!("p{i}"),
            labels: labels(&mut r, POD_KEYS),
            ports: ports.into(),
            ips,
            host_network: r.chance(8),
            node: None,
            service_account: "default".into(),
            source: PodSource { kind: "Pod", origin: Origin::default() },
        });
    }
    for i in 0..r.below(7) {
        let ingress: Vec<Rule> = (0..r.below(3)).map(|_| rule(&mut r)).collect();
        let egress: Vec<Rule> = (0..r.below(3)).map(|_| rule(&mut r)).collect();
        let ns = NsId::new(r.below(c.namespaces.len()));
        c.policies.push(policy_with_rules(&mut r, ns, format!("pol{i}"), ingress, egress));
    }
    for i in 0..r.below(3) {
        let mut l = labels(&mut r, NODE_KEYS);
        l.insert("kubernetes.io/hostname", format!("node{i}"));
        let mut ips: Vec<IpAddr> = vec![format!("10.0.0.{}", 240 + i).parse().unwrap()];
        if r.chance(30) {
            ips.push(format!("fd00::f{i}").parse().unwrap());
        }
        c.nodes.push(Node { name: format!("node{i}"), labels: l, ips, origin: Origin::default() });
    }
    for p in c.pods.iter_mut().filter(|p| p.host_network) {
        if let Some(n) = c.nodes.first() {
            p.ips = n.ips.clone();
            p.node = Some(n.name.clone());
        }
    }
    for i in 0..r.below(5) {
        let pol = admin_policy(&mut r, format!("adm{i}"));
        if !c.policies.iter().any(|q| q.kind == pol.kind && q.name == pol.name) {
            c.policies.push(pol);
        }
    }
    c
}

pub fn endpoints(e: &Engine) -> Vec<Endpoint> {
    let mut v: Vec<Endpoint> =
        (0..e.cluster().pods.len()).map(PodId::new).map(|pod| Endpoint::Pod { pod, ip: None }).collect();
    for (pod, p) in e.cluster().pods.iter().enumerate() {
        for ip in &p.ips {
            v.push(Endpoint::Pod { pod: PodId::new(pod), ip: Some(*ip) });
        }
    }
    for ext in ["10.0.0.200", "10.0.0.3", "fd00::99", "192.0.2.1", "10.0.0.240", "10.0.0.241"] {
        v.push(e.endpoint_for_ip(ext.parse().unwrap()));
    }
    v
}

// ---- flows checked three ways (engine, explanation, reference) ----

/// Checks each `(src, dst, "port[/proto]", dst name, allow?)`; returns the explanations.
pub fn check_named(e: &Engine, flows: &[(&str, &str, &str, Option<&str>, bool)]) -> Vec<Explanation> {
    let mut out = Vec::new();
    for &(src, dst, port, name, want) in flows {
        let s = e.parse_endpoint(src, "default").unwrap();
        let d = e.parse_endpoint(dst, "default").unwrap();
        let (port, proto) = match port.split_once('/') {
            Some((p, proto)) => (p.parse().unwrap(), Protocol::parse_loose(proto).unwrap()),
            None => (port.parse().unwrap(), Protocol::Tcp),
        };
        let fast = e.allowed_named(&s, &d, name, proto, port);
        let naive = reference::allowed_named(e.cluster(), &s, &d, name, proto, port);
        let ex = e.explain_named(&s, &d, name, proto, port);
        let text = ex.render();
        assert_eq!(fast, want, "engine: {src} -> {dst} {port}/{proto}\n{text}");
        assert_eq!(naive, want, "reference: {src} -> {dst} {port}/{proto}\n{text}");
        assert_eq!(ex.verdict, Verdict::from_bool(want), "explain: {src} -> {dst} {port}/{proto}\n{text}");
        out.push(ex);
    }
    out
}

pub fn check(e: &Engine, flows: &[(&str, &str, &str, bool)]) -> Vec<Explanation> {
    let named: Vec<_> = flows.iter().map(|&(s, d, p, w)| (s, d, p, None, w)).collect();
    check_named(e, &named)
}

// ---- random Calico clusters ----

/// A random Calico selector over pod labels, Calico's namespace and service-account labels and the profile
/// labels (`pcns.`, `pcsa.`), with `&&`, `||` and `!`.
pub fn calico_expr(r: &mut Rng, depth: usize) -> netpol_core::calico_selector::Expr {
    let text = calico_expr_text(r, depth);
    netpol_core::calico_selector::parse(&text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn calico_expr_text(r: &mut Rng, depth: usize) -> String {
    if depth > 0 && r.chance(35) {
        let op = if r.chance(50) { "&&" } else { "||" };
        return format!("({}) {op} ({})", calico_expr_text(r, depth - 1), calico_expr_text(r, depth - 1));
    }
    if depth > 0 && r.chance(10) {
        return format!("!({})", calico_expr_text(r, depth - 1));
    }
    let (k, vals): (&str, &[&str]) = *r.pick(&[
        ("app", &["a", "b", "c"][..]),
        ("tier", &["x", "y"][..]),
        ("role", &["db", "ext"][..]),
        ("projectcalico.org/namespace", &["ns0", "ns1"][..]),
        ("projectcalico.org/serviceaccount", &["default", "sa1"][..]),
        ("pcns.team", &["a", "b"][..]),
        ("pcsa.priv", &["yes"][..]),
    ]);
    let v = *r.pick(vals);
    match r.below(9) {
        0 => format!("has({k})"),
        1 => format!("!has({k})"),
        2 => format!("{k} != '{v}'"),
        3 => format!("{k} in {{'{v}', '{}'}}", vals[0]),
        4 => format!("{k} not in {{'{v}'}}"),
        5 => format!("{k} starts with '{}'", &v[..1]),
        6 => "all()".to_string(),
        _ => format!("{k} == '{v}'"),
    }
}

fn calico_peer(r: &mut Rng) -> CalicoPeer {
    let mut p = CalicoPeer::default();
    if r.chance(60) {
        p.selector = Some(calico_expr(r, 2));
    }
    if r.chance(20) {
        p.not_selector = Some(calico_expr(r, 1));
    }
    if r.chance(30) {
        p.nets = (0..1 + r.below(2)).map(|_| ip_block(r).cidr).collect();
    }
    if r.chance(20) {
        p.not_nets = vec![ip_block(r).cidr];
    }
    if r.chance(10) {
        p.ip_version = Some(if r.chance(50) { 4 } else { 6 });
    }
    p
}

fn calico_rule(r: &mut Rng) -> Rule {
    let mut rule = Rule::default();
    let remote = calico_peer(r);
    if !remote.is_any() {
        rule.peers.push(Peer::Calico(Box::new(remote)));
    }
    let mut c = CalicoRule::default();
    if r.chance(20) {
        c.local = Some(calico_peer(r)).filter(|p| !p.is_any());
    }
    let proto = *r.pick(&PROTOS);
    let number = |p: Protocol| p.number();
    if r.chance(60) {
        c.protocol = Some(if r.chance(15) { 1 } else { number(proto) });
        if c.protocol == Some(1) {
            match r.below(4) {
                0 => c.icmp = Some((8, Some(0))),
                1 => c.icmp = Some((3, None)),
                2 => c.not_icmp = Some((8, None)),
                _ => {}
            }
        } else {
            for _ in 0..r.below(3) {
                let port = match r.below(3) {
                    0 => {
                        let lo = *r.pick(&PORTS);
                        PortMatch::Range(lo, lo + r.below(25) as u16)
                    }
                    1 => PortMatch::Range(*r.pick(&PORTS), 0),
                    _ => PortMatch::Named(r.pick(&["http", "dns", "metrics", "sctp"]).to_string()),
                };
                let port = match port {
                    PortMatch::Range(lo, 0) => PortMatch::Range(lo, lo),
                    p => p,
                };
                let pp = PolicyPort { protocol: proto, port };
                if r.chance(25) {
                    c.not_ports.push(pp);
                } else {
                    rule.ports.push(pp);
                }
            }
        }
    } else if r.chance(20) {
        c.not_protocol = Some(number(proto));
    }
    if r.chance(5) {
        c.src_ports.push(PolicyPort { protocol: proto, port: PortMatch::Range(53, 53) });
    }
    rule.action = match r.below(10) {
        0..=3 => Action::Allow,
        4..=6 => Action::Deny,
        7 | 8 => Action::Pass,
        _ => Action::Log,
    };
    rule.calico = Some(Box::new(c));
    rule
}

/// A random cluster with Calico objects on top of [`cluster`]'s: tiers of Calico's own, service accounts,
/// network sets, Calico NetworkPolicies and GlobalNetworkPolicies in every tier with orders that tie.
pub fn calico_cluster(seed: u64) -> Cluster {
    calico_cluster_with(seed, 0, 1)
}

/// [`calico_cluster`] with at least `tiers` tiers of Calico's own and `policies` Calico policies: many
/// policies per tier, so that many subjects share some tiers' policies and differ in others (the matrix shares
/// rows per tier).
pub fn calico_cluster_with(seed: u64, tiers: usize, policies: usize) -> Cluster {
    let mut c = cluster(seed);
    let mut r = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
    for i in 0..tiers + r.below(3) {
        c.tiers.push(TierDef {
            name: format!("t{i}"),
            order: [Some(100.0), Some(1_000.0), Some(5e6), None][r.below(4)],
            default_action: if r.chance(50) { Action::Deny } else { Action::Pass },
            origin: Some(Origin::default()),
            pass_to_network_policy: false,
        });
    }
    for p in c.pods.iter_mut() {
        p.service_account = (*r.pick(&["default", "sa1"])).into();
    }
    for ns in 0..c.namespaces.len() {
        if r.chance(50) {
            let mut l = Labels::new();
            l.insert("priv", "yes");
            c.service_accounts.push(ServiceAccount { ns: NsId::new(ns), name: "sa1".into(), labels: l, origin: None });
        }
    }
    for i in 0..r.below(3) {
        let mut l = Labels::new();
        l.insert("role", *r.pick(&["db", "ext"]));
        c.network_sets.push(NetworkSet {
            ns: r.chance(50).then(|| NsId::new(r.below(c.namespaces.len()))),
            name: format!("set{i}"),
            labels: l,
            nets: (0..1 + r.below(2)).map(|_| ip_block(&mut r).cidr).collect(),
            origin: Origin::default(),
        });
    }
    let tiers = c.tiers.len();
    for i in 0..policies + r.below(5) {
        let global = r.chance(40);
        let ns = NsId::new(r.below(c.namespaces.len()));
        let ingress: Vec<Rule> = (0..r.below(3)).map(|_| calico_rule(&mut r)).collect();
        let egress: Vec<Rule> = (0..r.below(3)).map(|_| calico_rule(&mut r)).collect();
        let (affects_ingress, affects_egress) = match r.below(3) {
            0 => (true, false),
            1 => (false, true),
            _ => (true, true),
        };
        let mut sel = calico_expr(&mut r, 1);
        if !global {
            let own = netpol_core::calico_selector::parse(&format!(
                "projectcalico.org/namespace == '{}'",
                c.namespaces[ns.index()].name
            ))
            .unwrap();
            sel = netpol_core::calico_selector::Expr::And(vec![sel, own]);
        }
        c.policies.push(Policy {
            host: Default::default(),
            position: 0,
            manifest: None,
            kind: if global { PolicyKind::GlobalNetworkPolicy } else { PolicyKind::CalicoNetworkPolicy },
            tier: PolicyTier::from_index(r.below(tiers)),
            order: Order([Some(10.0), Some(1000.0), Some(1000.0), None][r.below(4)]),
            scope: if global { Scope::Cluster(Selector::everything()) } else { Scope::Namespace(ns) },
            name: format!("cal{}", r.below(3) + 3 * i),
            pod_selector: Selector::everything(),
            calico_selector: Some(sel),
            ingress,
            egress,
            affects_ingress,
            affects_egress,
            origin: Origin::default(),
        });
    }
    host_endpoints(&mut c, &mut Rng(seed ^ 0x5851_f42d_4c95_7f2d));
    c
}

/// Calico host endpoints on two nodes (at addresses `endpoints` probes, and sometimes at a Node's address only),
/// pods spread over the nodes, and GlobalNetworkPolicies made untracked, pre-DNAT or applyOnForward.
fn host_endpoints(c: &mut Cluster, r: &mut Rng) {
    if r.chance(30) {
        return;
    }
    for p in c.pods.iter_mut() {
        p.node = [Some("n0".to_string()), Some("n1".to_string()), None][r.below(3)].clone();
    }
    c.nodes.push(netpol_core::model::Node {
        name: "n1".into(),
        labels: Labels::new(),
        ips: vec!["10.0.0.3".parse().unwrap()],
        origin: Origin::default(),
    });
    let addrs = ["10.0.0.240", "10.0.0.241", "fd00::99", "10.0.0.200"];
    for i in 0..1 + r.below(3) {
        let mut labels = Labels::new();
        labels.insert("role", *r.pick(&["db", "ext"]));
        let all = r.chance(50);
        let expected_ips = if all && r.chance(30) {
            Vec::new()
        } else {
            (0..1 + r.below(2))
                .map(|_| r.pick(&addrs).parse().unwrap())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect()
        };
        c.host_endpoints.push(netpol_core::model::HostEndpoint {
            name: format!("hep{i}"),
            node: r.pick(&["n0", "n1"]).to_string(),
            interface: Some(if all { "*".into() } else { format!("eth{i}") }),
            expected_ips,
            labels,
            profiles: if r.chance(40) { vec!["projectcalico-default-allow".into()] } else { Vec::new() },
            ports: vec![ContainerPort { name: Some("web".into()), port: 80, protocol: Protocol::Tcp }],
            origin: Origin::default(),
        });
    }
    for p in c.policies.iter_mut().filter(|p| p.kind == PolicyKind::GlobalNetworkPolicy) {
        match r.below(4) {
            0 => p.host.do_not_track = true,
            1 => {
                p.host.pre_dnat = true;
                p.affects_egress = false;
                p.affects_ingress = true;
                p.egress.clear();
            }
            _ => {}
        }
        p.host.apply_on_forward = p.host.do_not_track || p.host.pre_dnat || r.chance(50);
    }
}

/// Antrea's static tiers (before the Admin tier, order 1,000) and one after it (Antrea's application tier, also
/// before NetworkPolicy), as (name, order).
const ANTREA_TIERS: [(&str, f64); 5] =
    [("emergency", 50.0), ("securityops", 100.0), ("networkops", 150.0), ("platform", 200.0), ("application", 1_500.0)];

/// A random cluster with Antrea-like policies on top of [`cluster`]'s: several tiers with
/// `pass_to_network_policy` (a pass skips all of them, on to NetworkPolicy), the Admin tier among them now and
/// then, now and then a tier without the flag in the middle of them (a run of Antrea tiers ends there), and
/// ClusterNetworkPolicies and NetworkPolicies of `crd.antrea.io` with Allow, Drop, Reject and Pass rules,
/// priorities that tie and rule positions.
pub fn antrea_like_cluster(seed: u64) -> Cluster {
    let mut c = cluster(seed);
    let mut r = Rng(seed ^ 0x2545_f491_4f6c_dd1d);
    if c.tiers.len() < 3 {
        c.tiers = TierDef::builtin();
    }
    c.tiers[0].pass_to_network_policy = r.chance(60);
    let first = c.tiers.len();
    for (name, order) in ANTREA_TIERS {
        if r.chance(70) {
            c.tiers.push(TierDef {
                name: name.into(),
                order: Some(order),
                default_action: Action::Pass,
                origin: Some(Origin::default()),
                pass_to_network_policy: true,
            });
        }
    }
    if r.chance(30) {
        // A tier without the flag among Antrea's: it ends their run (a pass before it is released to it).
        c.tiers.push(TierDef {
            name: "plain".into(),
            order: Some(*r.pick(&[75.0, 120.0, 1_200.0])),
            default_action: if r.chance(50) { Action::Deny } else { Action::Pass },
            origin: Some(Origin::default()),
            pass_to_network_policy: false,
        });
    }
    let tiers: Vec<usize> = std::iter::once(0).chain(first..c.tiers.len()).collect();
    for i in 0..2 + r.below(6) {
        let namespaced = r.chance(40);
        let ns = NsId::new(r.below(c.namespaces.len()));
        let rules = |egress: bool, r: &mut Rng| -> Vec<Rule> {
            (0..r.below(4))
                .map(|_| {
                    let mut rule = admin_rule(r, egress, false);
                    if rule.action == Action::Deny && r.chance(50) {
                        rule.action = Action::Reject;
                    }
                    rule
                })
                .collect()
        };
        let ingress = rules(false, &mut r);
        let egress = rules(true, &mut r);
        c.policies.push(Policy {
            host: Default::default(),
            position: r.below(3) as u32,
            manifest: None,
            kind: if namespaced { PolicyKind::AntreaNetworkPolicy } else { PolicyKind::AntreaClusterNetworkPolicy },
            tier: PolicyTier::from_index(*r.pick(&tiers)),
            order: Order([Some(1.0), Some(5.5), Some(5.5), None][r.below(4)]),
            calico_selector: None,
            scope: if namespaced { Scope::Namespace(ns) } else { Scope::Cluster(selector(&mut r, NS_KEYS)) },
            name: format!("ant{}", r.below(3) + 3 * i),
            pod_selector: if r.chance(40) { Selector::everything() } else { selector(&mut r, POD_KEYS) },
            affects_ingress: !ingress.is_empty(),
            affects_egress: !egress.is_empty(),
            ingress,
            egress,
            origin: Origin::default(),
        });
    }
    c
}
