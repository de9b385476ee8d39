//! Property tests for Cilium's kinds: random clusters written as manifests (so the Cilium frontend is exercised
//! too), whose every flow the engine, `explain` and the matrix answer as the reference evaluator does.

use std::fmt::Write as _;

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::load::{load_str, Severity};
use netpol_core::model::PodId;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::verdict::Verdict;
use proptest::prelude::*;

use crate::common::Rng;

const APPS: [&str; 3] = ["web", "api", "db"];
const NAMESPACES: [&str; 3] = ["a", "b", "c"];

fn selector(r: &mut Rng) -> String {
    let mut terms: Vec<String> = Vec::new();
    let mut exprs: Vec<String> = Vec::new();
    if r.chance(60) {
        terms.push(format!("{}app: {}", r.pick(&["", "k8s:", "any:"]), r.pick(&APPS)));
    }
    if r.chance(20) {
        terms.push(format!("{}io.kubernetes.pod.namespace: {}", r.pick(&["", "k8s:"]), r.pick(&NAMESPACES)));
    }
    if r.chance(15) {
        terms.push(format!("io.cilium.k8s.namespace.labels.team: {}", r.pick(&["x", "y"])));
    }
    if r.chance(15) {
        terms.push(format!("io.cilium.k8s.policy.serviceaccount: {}", r.pick(&["default", "robot"])));
    }
    if r.chance(25) {
        let op = *r.pick(&["In", "NotIn", "Exists", "DoesNotExist"]);
        let values = if op.ends_with("In") {
            format!(", values: [{}, {}]", r.pick(&APPS), r.pick(&APPS))
        } else {
            String::new()
        };
        exprs.push(format!("{{key: {}, operator: {op}{values}}}", r.pick(&["app", "tier", "k8s:tier"])));
    }
    let mut s = String::from("{");
    if !terms.is_empty() {
        s.push_str(&format!("matchLabels: {{{}}}", terms.join(", ")));
    }
    if !exprs.is_empty() {
        if !terms.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!("matchExpressions: [{}]", exprs.join(", ")));
    }
    s.push('}');
    s
}

fn cidr(r: &mut Rng) -> String {
    r.pick(&["10.0.0.0/8", "10.0.1.0/24", "10.9.0.0/16", "0.0.0.0/0", "10.1.0.1/32", "fd00::/8"]).to_string()
}

/// One rule of `dir`; `host`: of a host policy (no L7 rules but DNS on egress, as the agent requires).
fn peer_rule(r: &mut Rng, dir: &str, deny: bool, host: bool) -> String {
    let pre = if dir == "ingress" { "from" } else { "to" };
    let mut fields: Vec<String> = Vec::new();
    if r.chance(50) {
        let n = r.below(3);
        let mut sels: Vec<String> = (0..n).map(|_| selector(r)).collect();
        if r.chance(15) {
            let name = *r.pick(&["host", "remote-node", "world", "kube-apiserver", "health"]);
            sels.push(if r.chance(50) {
                format!("{{matchLabels: {{\"reserved:{name}\": \"\"}}}}")
            } else {
                format!("{{matchExpressions: [{{key: \"reserved:{name}\", operator: Exists}}]}}")
            });
        }
        fields.push(format!("{pre}Endpoints: [{}]", sels.join(", ")));
    }
    if r.chance(20) {
        fields.push(format!("{pre}CIDR: [{}]", cidr(r)));
    }
    if r.chance(20) {
        let c = *r.pick(&["10.0.0.0/8", "10.9.0.0/16"]);
        let except = if r.chance(50) {
            format!(", except: [{}]", if c == "10.0.0.0/8" { "10.9.0.0/16" } else { "10.9.9.0/24" })
        } else {
            String::new()
        };
        fields.push(format!("{pre}CIDRSet: [{{cidr: {c}{except}}}]"));
    }
    if r.chance(15) {
        // CiliumCIDRGroups (written by `manifests`): by name or by labels.
        let g = *r.pick(&[
            "{cidrGroupRef: near}",
            "{cidrGroupRef: far}",
            "{cidrGroupSelector: {matchLabels: {zone: near}}}",
        ]);
        let head = format!("{pre}CIDRSet: [");
        match fields.iter_mut().find(|f| f.starts_with(&head)) {
            Some(f) => f.insert_str(head.len(), &format!("{g}, ")),
            None => fields.push(format!("{head}{g}]")),
        }
    }
    if r.chance(20) {
        let entities = [
            "world",
            "cluster",
            "all",
            "world-ipv4",
            "host",
            "remote-node",
            "kube-apiserver",
            "health",
            "host, remote-node",
        ];
        fields.push(format!("{pre}Entities: [{}]", r.pick(&entities)));
    }
    if pre == "to" && r.chance(15) {
        let svc = *r.pick(&[
            "{k8sService: {serviceName: ext, namespace: a}}",
            "{k8sService: {serviceName: svc, namespace: b}}",
            "{k8sService: {serviceName: ext}}",
            "{k8sServiceSelector: {selector: {matchLabels: {expose: \"yes\"}}}}",
            "{k8sServiceSelector: {selector: {}, namespace: b}}",
        ]);
        fields.push(format!("toServices: [{svc}]"));
    }
    if r.chance(10) {
        fields.push(format!("{pre}Requires: [{}]", selector(r)));
    }
    if r.chance(15) {
        // Node selectors (over the Nodes' labels, written by `manifests`).
        let sel = *r.pick(&[
            "{}",
            "{matchLabels: {tier: a}}",
            "{matchExpressions: [{key: tier, operator: NotIn, values: [a]}]}",
        ]);
        fields.push(format!("{pre}Nodes: [{sel}]"));
    }
    if r.chance(4) {
        fields.push(format!("{pre}Groups: [{{aws: {{securityGroupsIds: [sg-1]}}}}]"));
    }
    if r.chance(15) {
        let t = *r.pick(&["8", "EchoRequest", "13", "Timestamp"]);
        fields.push(format!("icmps: [{{fields: [{{type: {t}}}, {{type: EchoRequest, family: IPv6}}]}}]"));
    }
    if r.chance(60) {
        let mut ports = Vec::new();
        for _ in 0..1 + r.below(2) {
            let port = *r.pick(&["\"80\"", "\"8080\"", "\"0\"", "\"http\"", "\"53\""]);
            let end = if port == "\"80\"" && r.chance(30) { ", endPort: 90" } else { "" };
            let proto = *r.pick(&["", ", protocol: TCP", ", protocol: UDP", ", protocol: ANY"]);
            ports.push(format!("{{port: {port}{end}{proto}}}"));
        }
        let mut entries = vec![format!("{{ports: [{}]}}", ports.join(", "))];
        // L7 rules, as the agent accepts them: HTTP on TCP ports, DNS on egress to port 53.
        if !deny && !host && r.chance(30) {
            let port = *r.pick(&["\"80\"", "\"8080\""]);
            let http = *r.pick(&[
                "{method: GET}",
                "{path: \"/a.*\"}",
                "{method: \"POST|PUT\", path: /b}",
                "{headers: [\"X-T yes\"]}",
                "{}",
            ]);
            entries.push(format!("{{ports: [{{port: {port}, protocol: TCP}}], rules: {{http: [{http}]}}}}"));
        }
        if !deny && dir == "egress" && r.chance(30) {
            let dns =
                *r.pick(&["{matchPattern: \"*.example.com\"}", "{matchName: a.example.com}", "{matchPattern: \"*\"}"]);
            let proto = *r.pick(&["UDP", "ANY", "TCP"]);
            entries.push(format!("{{ports: [{{port: \"53\", protocol: {proto}}}], rules: {{dns: [{dns}]}}}}"));
        }
        fields.push(format!("toPorts: [{}]", entries.join(", ")));
    }
    if dir == "egress" && !deny && r.chance(20) {
        let f =
            *r.pick(&["{matchName: a.example.com}", "{matchPattern: \"*.example.com\"}", "{matchPattern: \"*.org\"}"]);
        fields.push(format!("toFQDNs: [{f}]"));
    }
    format!("{{{}}}", fields.join(", "))
}

/// A random cluster as manifests: 2 nodes, 2-3 namespaces, up to 8 pods (some hostNetwork), maybe a
/// NetworkPolicy, 1-4 Cilium policies.
fn manifests(seed: u64) -> String {
    let mut r = Rng(seed);
    let mut y = String::new();
    for (i, ip) in ["10.1.0.1", "10.1.0.2"].iter().enumerate() {
        let tier = *r.pick(&["a", "b"]);
        let _ = write!(y, "apiVersion: v1\nkind: Node\nmetadata: {{name: n{i}, labels: {{tier: {tier}}}}}\nstatus: {{addresses: [{{type: InternalIP, address: {ip}}}]}}\n---\n");
    }
    // Two CIDR groups: one holding pod and node addresses too (which it never selects), one outside.
    y.push_str("apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: near, labels: {zone: near}}\nspec: {externalCIDRs: [10.9.0.0/16, 10.0.1.0/24, 10.1.0.1/32]}\n---\n");
    y.push_str("apiVersion: cilium.io/v2\nkind: CiliumCIDRGroup\nmetadata: {name: far}\nspec: {externalCIDRs: [192.0.2.0/24, fd00::/8]}\n---\n");
    let n_ns = 2 + r.below(2);
    for ns in &NAMESPACES[..n_ns] {
        let team = if r.chance(50) { format!(", labels: {{team: {}}}", r.pick(&["x", "y"])) } else { String::new() };
        let _ = write!(y, "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}{team}}}\n---\n");
    }
    for i in 0..1 + r.below(8) {
        let ns = NAMESPACES[r.below(n_ns)];
        let mut labels = Vec::new();
        if r.chance(80) {
            labels.push(format!("app: {}", r.pick(&APPS)));
        }
        if r.chance(40) {
            labels.push(format!("tier: {}", r.pick(&APPS)));
        }
        let host = r.chance(10);
        let sa = if r.chance(30) { ", serviceAccountName: robot" } else { "" };
        let node = r.below(2);
        // Some pods are on no node of the input (a workload's, or not scheduled yet).
        let node_name = if !host && r.chance(10) { String::new() } else { format!("nodeName: n{node}, ") };
        let ip = if host { format!("10.1.0.{}", node + 1) } else { format!("10.0.1.{}", 10 + i) };
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: {ns}, labels: {{{}}}}}\nspec: {{{node_name}hostNetwork: {host}{sa}, containers: [{{name: c, ports: [{{name: http, containerPort: {}}}]}}]}}\nstatus: {{podIP: {ip}}}\n---\n",
            labels.join(", "),
            r.pick(&[80, 8080, 81])
        );
    }
    // Services: the API server's (its endpoints outside the cluster, or a node), one without a selector, one with.
    if r.chance(70) {
        let ip = *r.pick(&["10.9.1.1", "10.1.0.2"]);
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: kubernetes, namespace: default}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: kubernetes, namespace: default, labels: {{kubernetes.io/service-name: kubernetes}}}}\naddressType: IPv4\nendpoints: [{{addresses: [{ip}]}}]\n---\n"
        );
    }
    if r.chance(60) {
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: ext, namespace: a, labels: {{expose: \"yes\"}}}}\n---\napiVersion: v1\nkind: Endpoints\nmetadata: {{name: ext, namespace: a}}\nsubsets: [{{addresses: [{{ip: 10.9.9.9}}, {{ip: 10.0.1.10}}]}}]\n---\n"
        );
    }
    if r.chance(60) {
        let _ = write!(
            y,
            "apiVersion: v1\nkind: Service\nmetadata: {{name: svc, namespace: b, labels: {{expose: \"yes\"}}}}\nspec: {{selector: {{app: {}}}}}\n---\n",
            r.pick(&APPS)
        );
    }
    if r.chance(40) {
        let _ = write!(
            y,
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: np, namespace: {}}}\nspec: {{podSelector: {{matchLabels: {{app: {}}}}}, ingress: [{{from: [{{podSelector: {{}}}}], ports: [{{port: 80}}]}}]}}\n---\n",
            NAMESPACES[r.below(n_ns)],
            r.pick(&APPS)
        );
    }
    for i in 0..1 + r.below(4) {
        let clusterwide = r.chance(30);
        let (kind, ns) = if clusterwide {
            ("CiliumClusterwideNetworkPolicy", String::new())
        } else {
            ("CiliumNetworkPolicy", format!(", namespace: {}", NAMESPACES[r.below(n_ns)]))
        };
        // Host policies: a clusterwide rule with a nodeSelector (over the Nodes' `tier`).
        let host = clusterwide && r.chance(40);
        let mut spec = if host {
            format!("nodeSelector: {}", r.pick(&["{}", "{matchLabels: {tier: a}}", "{matchLabels: {k8s:tier: b}}"]))
        } else {
            format!("endpointSelector: {}", selector(&mut r))
        };
        for (field, dir, deny) in [
            ("ingress", "ingress", false),
            ("egress", "egress", false),
            ("ingressDeny", "ingress", true),
            ("egressDeny", "egress", true),
        ] {
            if r.chance(if deny { 25 } else { 50 }) {
                let rules: Vec<String> = (0..1 + r.below(2)).map(|_| peer_rule(&mut r, dir, deny, host)).collect();
                spec.push_str(&format!(", {field}: [{}]", rules.join(", ")));
            }
        }
        if r.chance(20) {
            spec.push_str(&format!(", enableDefaultDeny: {{{}: false}}", r.pick(&["ingress", "egress"])));
        }
        let _ =
            write!(y, "apiVersion: cilium.io/v2\nkind: {kind}\nmetadata: {{name: c{i}{ns}}}\nspec: {{{spec}}}\n---\n");
    }
    y
}

fn engine(seed: u64) -> Engine {
    let text = manifests(seed);
    let loaded = load_str("random.yaml", &text);
    let errors: Vec<String> =
        loaded.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{}\n{text}", errors.join("\n"));
    Engine::new(loaded.cluster)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn cilium_engine_explain_and_matrix_agree_with_reference(seed in any::<u64>()) {
        let e = engine(seed);
        let mut eps: Vec<Endpoint> =
            (0..e.cluster().pods.len()).map(|p| Endpoint::Pod { pod: PodId::new(p), ip: None }).collect();
        for ip in ["10.9.9.9", "10.9.1.1", "10.1.0.1", "10.1.0.2", "192.0.2.1", "fd00::9"] {
            eps.push(Endpoint::External(ip.parse().unwrap()));
        }
        for s in &eps {
            for d in &eps {
                let icmp = [(Protocol::Icmp, 0x0800u16), (Protocol::Icmp, 0x0d00), (Protocol::Icmpv6, 0x8000)];
                let l4 = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp]
                    .into_iter()
                    .flat_map(|p| [53u16, 80, 81, 85, 90, 91, 8080].map(|port| (p, port)));
                for (proto, port) in icmp.into_iter().chain(l4) {
                    {
                        let want = reference::allowed(e.cluster(), s, d, proto, port);
                        prop_assert_eq!(e.allowed(s, d, proto, port), want, "engine {:?} -> {:?} {}/{}", s, d, port, proto);
                        let ex = e.explain(s, d, proto, port);
                        prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                    }
                }
            }
        }
        // Requests and names: HTTP on the HTTP rules' ports, DNS on 53, destinations resolved from names.
        let requests = [
            Request::Http(HttpRequest::new("GET", "/")),
            Request::Http(HttpRequest::new("POST", "/b")),
            Request::Http(HttpRequest::new("GET", "/a/x").with_header("X-T", "yes")),
            Request::Dns("a.example.com".to_string()),
            Request::Dns("b.other.org".to_string()),
        ];
        for s in &eps {
            for d in &eps {
                let names: &[Option<&str>] = match d {
                    Endpoint::External(_) => &[None, Some("a.example.com"), Some("x.b.org")],
                    Endpoint::Pod { .. } => &[None],
                };
                for &name in names {
                    for req in requests.iter().map(Some).chain([None]) {
                        let (proto, port) = match req {
                            Some(Request::Dns(_)) => (Protocol::Udp, 53),
                            _ => (Protocol::Tcp, if name.is_some() { 443 } else { 8080 }),
                        };
                        for port in [port, 80] {
                            let info = FlowInfo { dst_name: name, request: req };
                            let want = reference::allowed_flow(e.cluster(), s, d, info, proto, port);
                            prop_assert_eq!(e.allowed_flow(s, d, info, proto, port), want,
                                "engine {:?} -> {:?} ({:?}) {}/{} {:?}", s, d, name, port, proto, req);
                            let ex = e.explain_flow(s, d, info, proto, port);
                            prop_assert_eq!(ex.verdict, Verdict::from_bool(want), "explain\n{}", ex.render());
                        }
                    }
                }
            }
        }
        // Cilium's host endpoints in the data plane's table decide every pair of addresses as the engine does.
        if e.has_cilium_hosts() {
            let t = e.dataplane();
            let mut ips: Vec<std::net::IpAddr> = eps.iter().filter_map(|ep| e.endpoint_ip(ep)).collect();
            ips.sort();
            ips.dedup();
            for &a in &ips {
                for &b in &ips {
                    let (s, d) = (e.endpoint_for_ip(a), e.endpoint_for_ip(b));
                    for (proto, port) in [(Protocol::Tcp, 22u16), (Protocol::Tcp, 80), (Protocol::Udp, 53), (Protocol::Tcp, 8080), (Protocol::Icmp, 0x0800)] {
                        let want = e.host_checks_allow(&s, &d, proto, port);
                        prop_assert_eq!(t.host_allows(a, b, proto, port), want, "table {} -> {} {}/{}", a, b, port, proto);
                    }
                }
            }
        }
        let m = e.matrix(None).unwrap();
        let n = e.cluster().pods.len();
        // The matrix leaves out a node's access to its own pods for hostNetwork pods' traffic, and says so.
        let at_host = e.pods_with_host_checks();
        prop_assert_eq!(at_host.is_empty(), e.matrix_caveat().is_none());
        for a in (0..n).map(PodId::new) {
            for b in (0..n).map(PodId::new) {
                if at_host.contains(&a) || at_host.contains(&b) {
                    continue;
                }
                let set = m.port_sets.get(m.pod_cell(&e, a, b).unwrap()).clone();
                for proto in [Protocol::Tcp, Protocol::Udp] {
                    for port in [1u16, 53, 80, 85, 90, 91, 8080, 65535] {
                        let (s, d) = (Endpoint::Pod { pod: a, ip: None }, Endpoint::Pod { pod: b, ip: None });
                        let want = reference::allowed(e.cluster(), &s, &d, proto, port);
                        prop_assert_eq!(set.contains(proto, port), want, "matrix {} -> {} {}/{}: {}", a, b, port, proto, set);
                    }
                }
            }
        }
    }
}

/// The generator writes what the frontend reads: no seed gives an error (checked by `engine`), and the
/// clusters do carry Cilium policies of every part.
#[test]
fn random_cilium_clusters_have_every_part() {
    let mut tiers = std::collections::BTreeSet::new();
    let (mut node_rules, mut services, mut host_policies) = (0, 0, 0);
    for seed in 0..200 {
        let e = engine(seed);
        node_rules += usize::from(e.cluster().has_cilium_node_rules());
        services += usize::from(!e.cluster().services.is_empty());
        host_policies += usize::from(e.has_cilium_hosts());
        for p in &e.cluster().policies {
            if p.kind.is_cilium() {
                tiers.insert(e.cluster().tiers[p.tier.index()].name.clone());
            }
        }
    }
    assert_eq!(tiers.into_iter().collect::<Vec<_>>(), ["CiliumAllow", "CiliumDeny", "NetworkPolicy"]);
    assert!(node_rules > 20, "only {node_rules} clusters with host or remote-node rules");
    assert!(services > 100, "only {services} clusters with Services");
    assert!(host_policies > 20, "only {host_policies} clusters with host policies that select a Node");
}
