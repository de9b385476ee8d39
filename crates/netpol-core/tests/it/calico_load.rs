//! Loading Calico's dialect (`projectcalico.org/v3` and `crd.projectcalico.org/v1`): policies with their
//! selectors combined as libcalico-go's update processors combine them (compared with the parse of upstream's
//! string), rules, tiers, network sets, service accounts, the kinds netpol only recognises, and one test per
//! validation rule with the exact field path of its diagnostic. Staged policies: `staged.rs`.

use ipnet::IpNet;
use netpol_core::calico_selector::{parse, Expr};
use netpol_core::load::{load_str, Diagnostic, Loaded, Severity};
use netpol_core::model::{
    Action, CalicoPeer, CalicoRule, Cluster, Order, Peer, Policy, PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule,
    Scope,
};
use netpol_core::portset::Protocol;

// ---- helpers ----

fn fixture(name: &str) -> String {
    let path = format!("{}/../../tests/data/calico/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A Calico NetworkPolicy `p` in namespace `prod` with this spec (YAML flow or block text after `spec:`).
fn np(spec: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: prod}}\nspec: {spec}\n"
    )
}

/// A GlobalNetworkPolicy `g` with this spec.
fn gnp(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\nmetadata: {{name: g}}\nspec: {spec}\n")
}

fn sel(s: &str) -> Expr {
    parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

#[track_caller]
fn assert_clean(l: &Loaded) {
    assert!(l.diagnostics.is_empty(), "expected no diagnostics, got {:#?}", l.diagnostics);
}

fn errors(l: &Loaded) -> Vec<&Diagnostic> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect()
}

fn warnings(l: &Loaded) -> Vec<&Diagnostic> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Warning).collect()
}

/// The only policy of a clean load.
#[track_caller]
fn only_policy(text: &str) -> Policy {
    let l = load_str("c.yaml", text);
    assert_clean(&l);
    assert_eq!(l.cluster.policies.len(), 1, "{:#?}", l.cluster.policies);
    l.cluster.policies[0].clone()
}

fn calico(r: &Rule) -> &CalicoRule {
    r.calico.as_deref().expect("a Calico rule has its CalicoRule")
}

/// The remote peer of a rule (its only peer).
#[track_caller]
fn remote(r: &Rule) -> &CalicoPeer {
    match &r.peers[..] {
        [Peer::Calico(p)] => p,
        other => panic!("expected one Calico peer, got {other:?}"),
    }
}

fn tcp(lo: u16, hi: u16) -> PolicyPort {
    PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(lo, hi) }
}

fn named(protocol: Protocol, name: &str) -> PolicyPort {
    PolicyPort { protocol, port: PortMatch::Named(name.to_string()) }
}

/// The one error diagnostic of loading `text` (warnings allowed): (field, message). Nothing is loaded.
#[track_caller]
fn the_error(text: &str) -> (String, String) {
    let l = load_str("e.yaml", text);
    let errs = errors(&l);
    assert_eq!(errs.len(), 1, "expected one error, got {:#?}", l.diagnostics);
    assert!(l.cluster.policies.is_empty() && l.cluster.network_sets.is_empty(), "an invalid object is not loaded");
    (errs[0].field.clone().unwrap_or_default(), errs[0].message.clone())
}

#[track_caller]
fn assert_error(text: &str, field: &str, message: &str) {
    let (f, m) = the_error(text);
    assert_eq!(f, field, "{m}");
    assert!(m.contains(message), "message for {field}: {m:?} does not contain {message:?}");
}

fn tier_names(c: &Cluster) -> Vec<&str> {
    c.tiers.iter().map(|t| t.name.as_str()).collect()
}

// ---- policies: kinds, scope, subject selectors ----

#[test]
fn a_namespaced_policy_selects_in_its_own_namespace() {
    let p = only_policy(&np("{selector: app == 'web', serviceAccountSelector: role == 'fe'}"));
    assert_eq!(p.kind, PolicyKind::CalicoNetworkPolicy);
    assert_eq!(p.tier, PolicyTier::NetworkPolicy);
    assert_eq!(p.order, Order(None));
    assert!(matches!(p.scope, Scope::Namespace(_)));
    assert!(p.pod_selector.is_everything());
    // networkpolicyprocessor.go: `(selector) && ns == '<ns>'`, then `(...) && <pcsa. selector>`.
    let want = sel("((app == 'web') && projectcalico.org/namespace == 'prod') && pcsa.role == 'fe'");
    assert_eq!(p.calico_selector, Some(want));
    // No selector: only the namespace.
    let p = only_policy(&np("{}"));
    assert_eq!(p.calico_selector, Some(sel("projectcalico.org/namespace == 'prod'")));
    // The namespace defaults to `default`.
    let p = only_policy("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n");
    assert_eq!(p.calico_selector, Some(sel("projectcalico.org/namespace == 'default'")));
}

#[test]
fn a_global_policy_combines_its_selectors_as_upstream() {
    let p = only_policy(&gnp("{selector: app == 'web', namespaceSelector: team == 'a'}"));
    assert_eq!(p.kind, PolicyKind::GlobalNetworkPolicy);
    assert!(matches!(&p.scope, Scope::Cluster(s) if s.is_everything()));
    assert!(p.pod_selector.is_everything());
    assert_eq!(p.calico_selector, Some(sel("(app == 'web') && pcns.team == 'a'")));
    // `all()` in the namespace selector is "in any namespace" (and upstream replaces it in the whole string).
    let p = only_policy(&gnp("{selector: all(), namespaceSelector: all()}"));
    let has_ns = "has(projectcalico.org/namespace)";
    assert_eq!(p.calico_selector, Some(sel(&format!("({has_ns}) && {has_ns}"))));
    let p = only_policy(&gnp("{selector: all(), namespaceSelector: team == 'a' || has(x)}"));
    assert_eq!(p.calico_selector, Some(sel(&format!("({has_ns}) && (pcns.team == 'a' || has(pcns.x))"))));
    // The service account selector: `pcsa.` keys, `all()` is "with a service account".
    let p = only_policy(&gnp("{selector: app == 'web', serviceAccountSelector: all()}"));
    assert_eq!(p.calico_selector, Some(sel("(app == 'web') && has(projectcalico.org/serviceaccount)")));
    let p = only_policy(&gnp("{namespaceSelector: team == 'a', serviceAccountSelector: trust == 'high'}"));
    assert_eq!(p.calico_selector, Some(sel("(pcns.team == 'a') && pcsa.trust == 'high'")));
    // Nothing at all: every endpoint.
    assert_eq!(only_policy(&gnp("{}")).calico_selector, Some(Expr::All));
    assert_eq!(only_policy(&gnp("{selector: ''}")).calico_selector, Some(Expr::All));
}

#[test]
fn types_default_as_the_api_says() {
    let affects = |spec: &str| {
        let p = only_policy(&np(spec));
        (p.affects_ingress, p.affects_egress)
    };
    assert_eq!(affects("{}"), (true, false));
    assert_eq!(affects("{ingress: [{action: Allow}]}"), (true, false));
    assert_eq!(affects("{egress: [{action: Allow}]}"), (false, true));
    assert_eq!(affects("{ingress: [{action: Deny}], egress: [{action: Allow}]}"), (true, true));
    assert_eq!(affects("{ingress: [{action: Deny}], types: [Egress]}"), (false, true));
    assert_eq!(affects("{types: [Egress, Ingress]}"), (true, true));
}

#[test]
fn order_is_kept_or_none() {
    assert_eq!(only_policy(&np("{order: 10.5}")).order, Order(Some(10.5)));
    assert_eq!(only_policy(&gnp("{order: 100}")).order, Order(Some(100.0)));
    assert_eq!(only_policy(&np("{}")).order, Order(None));
}

// ---- rules: sides, selectors, namespaces ----

#[test]
fn an_ingress_rule_has_the_source_as_peer_and_the_destination_as_local_side() {
    let p = only_policy(&np(
        "{ingress: [{action: Deny, source: {selector: app == 'fe'}, destination: {selector: role == 'db'}}]}",
    ));
    let r = &p.ingress[0];
    assert_eq!(r.action, Action::Deny);
    // rules.go getEndpointSelector: a namespaced policy's rule sides are limited to its namespace.
    let peer = remote(r);
    assert_eq!(peer.selector, Some(sel("(projectcalico.org/namespace == 'prod') && (app == 'fe')")));
    assert_eq!((peer.not_selector.as_ref(), peer.ip_version), (None, None));
    let local = calico(r).local.as_ref().expect("a local side");
    assert_eq!(local.selector, Some(sel("(projectcalico.org/namespace == 'prod') && (role == 'db')")));
    // Egress: the destination is the peer, the source the local side.
    let p = only_policy(&np(
        "{egress: [{action: Allow, source: {selector: a == 'x'}, destination: {nets: [10.0.0.0/8]}}]}",
    ));
    let r = &p.egress[0];
    assert_eq!(remote(r).nets, vec![net("10.0.0.0/8")]);
    assert_eq!(remote(r).selector, None, "nets alone do not limit to the namespace");
    assert_eq!(
        calico(r).local.as_ref().unwrap().selector,
        Some(sel("(projectcalico.org/namespace == 'prod') && (a == 'x')"))
    );
    // No criterion on either side: no peer, no local side.
    let p = only_policy(&np("{ingress: [{action: Allow}]}"));
    assert!(p.ingress[0].peers.is_empty() && calico(&p.ingress[0]).local.is_none());
    assert_eq!(calico(&p.ingress[0]), &CalicoRule::default());
}

#[test]
fn a_not_selector_alone_limits_the_side_to_the_policys_namespace() {
    let p = only_policy(&np("{ingress: [{action: Allow, source: {notSelector: app == 'bad'}}]}"));
    let peer = remote(&p.ingress[0]);
    assert_eq!(peer.selector, Some(sel("projectcalico.org/namespace == 'prod'")));
    assert_eq!(peer.not_selector, Some(sel("app == 'bad'")), "notSelector is kept as written");
    // In a global policy it is not limited at all.
    let p = only_policy(&gnp("{ingress: [{action: Allow, source: {notSelector: app == 'bad'}}]}"));
    let peer = remote(&p.ingress[0]);
    assert_eq!((peer.selector.as_ref(), peer.not_selector.as_ref()), (None, Some(&sel("app == 'bad'"))));
}

#[test]
fn namespace_selectors_of_a_rule_side() {
    let peer_of = |text: &str| remote(&only_policy(text).ingress[0]).clone();
    // A namespace selector replaces the policy's own namespace: `pcns.` keys.
    let p =
        peer_of(&np("{ingress: [{action: Allow, source: {namespaceSelector: team == 'a', selector: app == 'x'}}]}"));
    assert_eq!(p.selector, Some(sel("(pcns.team == 'a') && (app == 'x')")));
    // `all()`: any namespace; alone, it is the whole selector.
    let p = peer_of(&np("{ingress: [{action: Allow, source: {namespaceSelector: all()}}]}"));
    assert_eq!(p.selector, Some(sel("has(projectcalico.org/namespace)")));
    // `global()`: no namespace (global network sets and host endpoints).
    let p = peer_of(&np("{ingress: [{action: Allow, source: {namespaceSelector: global(), selector: role == 'x'}}]}"));
    assert_eq!(p.selector, Some(sel("(!has(projectcalico.org/namespace)) && (role == 'x')")));
    // A global policy's rule: as written, or with its namespace selector.
    let p = peer_of(&gnp("{ingress: [{action: Allow, source: {selector: app == 'x'}}]}"));
    assert_eq!(p.selector, Some(sel("app == 'x'")));
    let p = peer_of(&gnp("{ingress: [{action: Allow, source: {namespaceSelector: has(team)}}]}"));
    assert_eq!(p.selector, Some(sel("has(pcns.team)")));
}

#[test]
fn service_accounts_of_a_rule_side() {
    let p = only_policy(&np(
        "{ingress: [{action: Allow, source: {selector: app == 'y', serviceAccounts: {names: [b, a, b2], selector: team == 'x'}}}]}",
    ));
    let want = "(projectcalico.org/namespace == 'prod') && \
                (((pcsa.team == 'x') && (projectcalico.org/serviceaccount in {'a', 'b', 'b2'})) && (app == 'y'))";
    assert_eq!(remote(&p.ingress[0]).selector, Some(sel(want)));
    // Names only, in a global policy.
    let p = only_policy(&gnp("{ingress: [{action: Allow, source: {serviceAccounts: {names: [api]}}}]}"));
    assert_eq!(remote(&p.ingress[0]).selector, Some(sel("projectcalico.org/serviceaccount in {'api'}")));
    // A selector only: `pcsa.` keys, no replacement of `all()`.
    let p = only_policy(&gnp("{ingress: [{action: Allow, source: {serviceAccounts: {selector: all()}}}]}"));
    assert_eq!(remote(&p.ingress[0]).selector, Some(Expr::All));
    // Neither: no criterion.
    let p = only_policy(&gnp("{ingress: [{action: Allow, source: {serviceAccounts: {}}}]}"));
    assert!(p.ingress[0].peers.is_empty());
}

// ---- rules: protocols, ports, ICMP, nets ----

#[test]
fn protocols_by_name_and_number() {
    let proto = |p: &str| {
        let r = only_policy(&np(&format!("{{ingress: [{{action: Allow, protocol: {p}}}]}}"))).ingress[0].clone();
        calico(&r).protocol
    };
    for (p, n) in [("TCP", 6), ("UDP", 17), ("ICMP", 1), ("ICMPv6", 58), ("SCTP", 132), ("UDPLite", 136)] {
        assert_eq!(proto(p), Some(n), "{p}");
    }
    assert_eq!(proto("47"), Some(47));
    assert_eq!(proto("'112'"), Some(112), "a number in a string is the number");
    assert_eq!(proto("255"), Some(255));
    let r = only_policy(&np("{egress: [{action: Deny, notProtocol: UDP}]}")).egress[0].clone();
    assert_eq!((calico(&r).protocol, calico(&r).not_protocol), (None, Some(17)));
}

#[test]
fn destination_ports_source_ports_and_not_ports() {
    let p = only_policy(&np(
        "{ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, '8000:8080', http, '443'], notPorts: [8081]}}]}",
    ));
    let r = &p.ingress[0];
    assert_eq!(r.ports, vec![tcp(80, 80), tcp(8000, 8080), named(Protocol::Tcp, "http"), tcp(443, 443)]);
    assert_eq!(calico(r).not_ports, vec![tcp(8081, 8081)]);
    assert!(calico(r).src_ports.is_empty());
    // Protocol by number.
    let p = only_policy(&np("{egress: [{action: Allow, protocol: 132, destination: {ports: [9000]}}]}"));
    assert_eq!(p.egress[0].ports, vec![PolicyPort { protocol: Protocol::Sctp, port: PortMatch::Range(9000, 9000) }]);
    // A named port without a protocol matches the port of that name whatever its protocol.
    let p = only_policy(&np("{ingress: [{action: Allow, destination: {ports: [metrics]}}]}"));
    let all: Vec<PolicyPort> = Protocol::TRANSPORT.iter().map(|&pr| named(pr, "metrics")).collect();
    assert_eq!(p.ingress[0].ports, all);
}

#[test]
fn source_ports_are_kept_and_warned_about() {
    let l = load_str(
        "s.yaml",
        &np("{egress: [{action: Allow, protocol: UDP, source: {ports: [53], notPorts: ['1:1023']}}]}"),
    );
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let r = &l.cluster.policies[0].egress[0];
    let udp = |lo, hi| PolicyPort { protocol: Protocol::Udp, port: PortMatch::Range(lo, hi) };
    assert_eq!(calico(r).src_ports, vec![udp(53, 53)]);
    assert_eq!(calico(r).not_src_ports, vec![udp(1, 1023)]);
    assert!(r.ports.is_empty() && calico(r).unsupported.is_none());
    let w: Vec<(&str, &str)> =
        warnings(&l).iter().map(|d| (d.field.as_deref().unwrap_or(""), d.message.as_str())).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    assert_eq!(w[0].0, "spec.egress[0].source.ports");
    assert_eq!(w[1].0, "spec.egress[0].source.notPorts");
    assert!(w.iter().all(|(_, m)| m.contains("no source port") && m.contains("matching no traffic")), "{w:?}");
}

#[test]
fn icmp_type_and_code() {
    let p = only_policy(&np(
        "{ingress: [{action: Allow, protocol: ICMP, icmp: {type: 8, code: 0}, notICMP: {type: 3}}, {action: Allow, protocol: 58, icmp: {type: 128}}]}",
    ));
    assert_eq!(calico(&p.ingress[0]).icmp, Some((8, Some(0))));
    assert_eq!(calico(&p.ingress[0]).not_icmp, Some((3, None)));
    assert_eq!(calico(&p.ingress[1]).icmp, Some((128, None)));
    // An empty `icmp` is no criterion.
    let p = only_policy(&np("{ingress: [{action: Allow, protocol: ICMP, icmp: {}}]}"));
    assert_eq!(calico(&p.ingress[0]).icmp, None);
}

#[test]
fn nets_are_masked_and_ip_version_goes_on_the_remote_peer() {
    let l = load_str(
        "n.yaml",
        &np("{ingress: [{action: Allow, ipVersion: 4, source: {nets: [10.1.2.3/8, 192.168.0.1, 172.16.0.0/12], notNets: [10.2.0.0/16]}, destination: {nets: [10.9.0.0/16]}}]}"),
    );
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let r = &l.cluster.policies[0].ingress[0];
    let peer = remote(r);
    assert_eq!(peer.nets, vec![net("10.0.0.0/8"), net("192.168.0.1/32"), net("172.16.0.0/12")]);
    assert_eq!(peer.not_nets, vec![net("10.2.0.0/16")]);
    assert_eq!(peer.ip_version, Some(4));
    let local = calico(r).local.as_ref().unwrap();
    assert_eq!((local.nets.clone(), local.ip_version), (vec![net("10.9.0.0/16")], None));
    // What Calico's API server would refuse but Felix reads: a warning each.
    let w: Vec<&str> = warnings(&l).iter().map(|d| d.field.as_deref().unwrap_or("")).collect();
    assert_eq!(w, ["spec.ingress[0].source.nets[0]", "spec.ingress[0].source.nets[1]"]);
    assert!(warnings(&l)[0].message.contains("host bits") && warnings(&l)[0].message.contains("10.0.0.0/8"));
    // ipVersion alone makes a peer.
    let p = only_policy(&np("{egress: [{action: Allow, ipVersion: 6}]}"));
    assert_eq!(remote(&p.egress[0]), &CalicoPeer { ip_version: Some(6), ..CalicoPeer::default() });
}

#[test]
fn services_and_http_are_unsupported_with_a_warning() {
    let l = load_str(
        "s.yaml",
        &np("{ingress: [{action: Allow, source: {services: {name: web}}}, {action: Allow, protocol: TCP, http: {methods: [GET], paths: [{prefix: /api}]}}], egress: [{action: Allow, destination: {services: {name: dns, namespace: kube-system}}}]}"),
    );
    assert!(errors(&l).is_empty(), "{:#?}", l.diagnostics);
    let p = &l.cluster.policies[0];
    let unsupported = |r: &Rule| calico(r).unsupported.clone().unwrap_or_default();
    assert!(unsupported(&p.ingress[0]).contains("source.services"), "{}", unsupported(&p.ingress[0]));
    assert!(unsupported(&p.ingress[1]).contains("http"), "{}", unsupported(&p.ingress[1]));
    assert!(unsupported(&p.egress[0]).contains("destination.services"), "{}", unsupported(&p.egress[0]));
    assert!(p.ingress[0].peers.is_empty(), "a services match has no other criterion");
    let w: Vec<(&str, &str)> =
        warnings(&l).iter().map(|d| (d.field.as_deref().unwrap_or(""), d.message.as_str())).collect();
    let fields: Vec<&str> = w.iter().map(|w| w.0).collect();
    assert_eq!(
        fields,
        ["spec.ingress[0].source.services", "spec.ingress[1].http", "spec.egress[0].destination.services"]
    );
    assert!(w[0].1.contains("prod/web") && w[2].1.contains("kube-system/dns"), "{w:?}");
    assert!(w.iter().all(|(_, m)| m.contains("matching no traffic")), "{w:?}");
}

#[test]
fn do_not_track_and_pre_dnat_policies_carry_their_flags() {
    for field in ["doNotTrack", "preDNAT"] {
        let l =
            load_str("h.yaml", &gnp(&format!("{{{field}: true, applyOnForward: true, ingress: [{{action: Allow}}]}}")));
        assert_clean(&l);
        let h = l.cluster.policies[0].host;
        assert_eq!((h.do_not_track, h.pre_dnat, h.apply_on_forward), (field == "doNotTrack", field == "preDNAT", true));
        assert!(!h.applies_to_workloads(), "untracked and pre-DNAT policies apply to host endpoints only");
    }
    // applyOnForward alone is fine for pods.
    let p = only_policy(&gnp("{applyOnForward: true, selector: app == 'x'}"));
    assert_eq!(p.calico_selector, Some(sel("app == 'x'")));
}

// ---- apiVersions and lists ----

#[test]
fn both_api_versions_read_the_same_spec() {
    let v3 = fixture("crd-v1.yaml").replace("crd.projectcalico.org/v1", "projectcalico.org/v3");
    let a = load_str("v1.yaml", &fixture("crd-v1.yaml"));
    let b = load_str("v3.yaml", &v3);
    assert_clean(&a);
    assert_clean(&b);
    assert_eq!(a.cluster.policies.len(), 2);
    for (x, y) in a.cluster.policies.iter().zip(&b.cluster.policies) {
        assert_eq!(
            (x.kind, &x.name, &x.calico_selector, &x.ingress),
            (y.kind, &y.name, &y.calico_selector, &y.ingress)
        );
    }
    assert!(a.cluster.tiers[1].origin.is_some(), "the Tier `default` object declares the built-in tier");
    // The same object under both: one object, the second a duplicate.
    let both = load_str("both.yaml", &format!("{}---\n{v3}", fixture("crd-v1.yaml")));
    let dup: Vec<&str> = errors(&both).iter().map(|d| d.object.as_deref().unwrap_or("")).collect();
    assert_eq!(
        dup,
        ["NetworkPolicy.projectcalico.org shop/allow-web", "GlobalNetworkPolicy default-deny", "Tier default"]
    );
    assert_eq!(both.cluster.policies.len(), 2);
}

#[test]
fn calico_network_policy_and_kubernetes_network_policy_are_told_apart_by_api_version() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec: {podSelector: {}}\n---\n"
        .to_string()
        + &np("{selector: all()}");
    let l = load_str("two.yaml", &text);
    assert_clean(&l);
    let kinds: Vec<PolicyKind> = l.cluster.policies.iter().map(|p| p.kind).collect();
    assert_eq!(kinds, [PolicyKind::NetworkPolicy, PolicyKind::CalicoNetworkPolicy]);
    // Another apiVersion: the error lists all four (Antrea's NetworkPolicy too).
    let l = load_str("v.yaml", &np("{}").replace("projectcalico.org/v3", "projectcalico.org/v2"));
    let d = errors(&l)[0];
    assert_eq!(d.field.as_deref(), Some("apiVersion"));
    assert_eq!(
        d.message,
        "unsupported apiVersion `projectcalico.org/v2` for NetworkPolicy; expected one of `networking.k8s.io/v1`, \
         `projectcalico.org/v3`, `crd.projectcalico.org/v1`, `crd.antrea.io/v1beta1`"
    );
}

#[test]
fn a_calicoctl_list_loads_item_by_item() {
    let l = load_str("list.yaml", &fixture("calicoctl-list.yaml"));
    assert_clean(&l);
    let names: Vec<&str> = l.cluster.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["allow-dns", "allow-web"]);
    let dns = &l.cluster.policies[0];
    assert_eq!(dns.origin.item, Some(0));
    assert_eq!((dns.affects_ingress, dns.affects_egress), (false, true));
    let r = &dns.egress[0];
    let want = "(pcns.projectcalico.org/name == 'kube-system') && (k8s-app == 'kube-dns')";
    assert_eq!(remote(r).selector, Some(sel(want)));
    assert_eq!(r.ports, vec![PolicyPort { protocol: Protocol::Udp, port: PortMatch::Range(53, 53) }]);
    let web = &l.cluster.policies[1];
    assert_eq!(web.order, Order(Some(500.0)));
    assert_eq!(web.ingress[0].ports, vec![tcp(8000, 8080)]);
    assert_eq!(remote(&web.ingress[0]).nets, vec![net("0.0.0.0/0")]);
    // A JSON list of GlobalNetworkPolicies, an item without apiVersion taking the list's.
    let l = load_str("list.json", &fixture("gnp-list.json"));
    assert_clean(&l);
    let ping = &l.cluster.policies[0];
    assert_eq!(calico(&ping.ingress[0]).icmp, Some((8, Some(0))));
    assert_eq!(remote(&ping.ingress[0]).ip_version, Some(4));
    let smtp = &l.cluster.policies[1];
    assert_eq!(smtp.egress[0].ports, vec![tcp(25, 25), tcp(587, 587)]);
    assert_eq!((smtp.affects_ingress, smtp.affects_egress), (false, true));
    // A plain `kind: List` of several kinds (`calicoctl get tier,gnp -o yaml`).
    let list = "apiVersion: v1\nkind: List\nitems:\n\
                - {apiVersion: projectcalico.org/v3, kind: Tier, metadata: {name: t}, spec: {order: 5}}\n\
                - {apiVersion: projectcalico.org/v3, kind: GlobalNetworkPolicy, metadata: {name: g}, spec: {tier: t}}\n\
                - {apiVersion: projectcalico.org/v3, kind: HostEndpoint, metadata: {name: h}, spec: {node: n, interfaceName: eth0}}\n";
    let l = load_str("list.yaml", list);
    assert_clean(&l);
    assert_eq!(tier_names(&l.cluster)[3..], ["t"]);
    assert_eq!(l.cluster.policies[0].tier, PolicyTier::Custom(3));
    assert_eq!(l.cluster.host_endpoints.len(), 1);
    assert_eq!(l.cluster.host_endpoints[0].origin.item, Some(2));
}

// ---- tiers ----

#[test]
fn tiers_declared_implicit_and_built_in() {
    let l = load_str("cluster.yaml", &fixture("cluster.yaml"));
    assert_clean(&l);
    let c = &l.cluster;
    assert_eq!(tier_names(c), ["kube-admin", "default", "kube-baseline", "security", "platform"]);
    let security = &c.tiers[3];
    assert_eq!((security.order, security.default_action), (Some(100.0), Action::Pass));
    assert!(security.origin.is_some());
    assert_eq!((c.tiers[4].order, c.tiers[4].default_action), (Some(200.0), Action::Deny));
    let tier_of = |name: &str| c.policies.iter().find(|p| p.name == name).unwrap().tier;
    assert_eq!(tier_of("security.db-ingress"), PolicyTier::Custom(3));
    // Declared after the policy in it.
    assert_eq!(tier_of("deny-blocked-egress"), PolicyTier::Custom(4));

    // A tier no Tier object declares: assumed (no order, Deny), one warning per policy in it.
    let text = np("{tier: ghost}")
        + "---\n"
        + &gnp("{tier: ghost}")
        + "---\n"
        + &gnp("{tier: kube-admin}").replace("name: g", "name: h");
    let l = load_str("t.yaml", &text);
    assert!(errors(&l).is_empty());
    let w = warnings(&l);
    assert_eq!(w.len(), 2);
    assert_eq!(w[0].field.as_deref(), Some("spec.tier"));
    assert_eq!(w[0].object.as_deref(), Some("NetworkPolicy.projectcalico.org prod/p"));
    assert!(w[0].message.contains("Calico would have refused") && w[0].message.contains("Deny"), "{}", w[0].message);
    assert_eq!(tier_names(&l.cluster), ["kube-admin", "default", "kube-baseline", "ghost"]);
    let ghost = &l.cluster.tiers[3];
    assert_eq!((ghost.order, ghost.default_action, ghost.origin.is_none()), (None, Action::Deny, true));
    let tiers: Vec<PolicyTier> = l.cluster.policies.iter().map(|p| p.tier).collect();
    assert_eq!(tiers, [PolicyTier::Custom(3), PolicyTier::Custom(3), PolicyTier::Admin]);
}

#[test]
fn built_in_tiers_keep_their_kubernetes_names_without_calico_objects() {
    let k8s = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\nspec: {}\n";
    assert_eq!(tier_names(&load_str("k.yaml", k8s).cluster), ["Admin", "NetworkPolicy", "Baseline"]);
    let tier = "apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {name: kube-baseline}\n\
                spec: {order: 10000000, defaultAction: Pass}\n";
    let l = load_str("t.yaml", tier);
    assert_clean(&l);
    assert_eq!(tier_names(&l.cluster), ["kube-admin", "default", "kube-baseline"]);
    assert!(l.cluster.tiers[2].origin.is_some() && l.cluster.tiers[0].origin.is_none());
}

#[test]
fn built_in_tier_objects_must_keep_order_and_default_action() {
    let tier = |name: &str, spec: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: Tier\nmetadata: {{name: {name}}}\nspec: {spec}\n")
    };
    assert_error(
        &tier("kube-admin", "{order: 1000}"),
        "spec.defaultAction",
        "The 'kube-admin' tier must have default action 'Pass'",
    );
    assert_error(
        &tier("default", "{order: 5, defaultAction: Deny}"),
        "spec.order",
        "default tier order must be 1000000",
    );
    assert_error(
        &tier("kube-baseline", "{defaultAction: Pass}"),
        "spec.order",
        "kube-baseline tier order must be 10000000",
    );
    assert_error(
        &tier("default", "{order: 1000000, defaultAction: Pass}"),
        "spec.defaultAction",
        "must have default action 'Deny'",
    );
    assert_error(&tier("custom", "{defaultAction: Log}"), "spec.defaultAction", "supported values: \"Pass\", \"Deny\"");
    assert_error(&tier("a.b", "{}"), "metadata.name", "RFC 1123 label");
    assert_error(&tier("c", "{order: 1, color: red}"), "spec.color", "unknown field `color`");
}

// ---- network sets and service accounts ----

#[test]
fn network_sets() {
    let l = load_str("cluster.yaml", &fixture("cluster.yaml"));
    let sets = &l.cluster.network_sets;
    assert_eq!(sets.len(), 2);
    assert_eq!((sets[0].name.as_str(), sets[0].ns), ("blocked", None));
    assert_eq!(sets[0].labels.get("role"), Some("blocked"));
    assert_eq!(sets[0].nets, vec![net("198.51.100.0/24"), net("203.0.113.7/32")]);
    assert_eq!(sets[1].ns, l.cluster.namespace_id("shop"));
    assert_eq!(sets[1].nets, vec![net("192.0.2.0/25")]);
    // Host bits are masked off (the API server takes them here).
    let set = "apiVersion: crd.projectcalico.org/v1\nkind: NetworkSet\nmetadata: {name: s, namespace: prod}\n\
               spec: {nets: [10.0.0.1/8, 'fd00::1']}\n";
    let l = load_str("s.yaml", set);
    assert_clean(&l);
    assert_eq!(l.cluster.network_sets[0].nets, vec![net("10.0.0.0/8"), net("fd00::1/128")]);
    assert!(l.cluster.has_calico());
}

#[test]
fn network_set_errors_name_their_entry() {
    let set = |labels: &str, nets: &str| {
        format!("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkSet\nmetadata: {{name: s, labels: {labels}}}\nspec: {{nets: {nets}}}\n")
    };
    assert_error(&set("{}", "[10.0.0.0/8, 300.0.0.1]"), "spec.nets[1]", "invalid CIDR `300.0.0.1`");
    assert_error(&set("{}", "[10.0.0.0/8, 10.0.0.0/8]"), "spec.nets[1]", "duplicate value");
    assert_error(&set("{projectcalico.org/namespace: x}", "[]"), "metadata.labels", "is not a valid label name");
    assert_error(&set("{'bad key': x}", "[]"), "metadata.labels", "invalid label key");
}

#[test]
fn service_accounts_declared_and_implicit() {
    let l = load_str("cluster.yaml", &fixture("cluster.yaml"));
    let c = &l.cluster;
    let sas: Vec<(&str, bool)> = c.service_accounts.iter().map(|s| (s.name.as_str(), s.origin.is_some())).collect();
    // `api` is declared; `db-0` runs as `default`, which exists without a ServiceAccount object.
    assert_eq!(sas, [("api", true), ("default", false)]);
    assert_eq!(c.service_accounts[0].labels.get("trust"), Some("high"));
    assert!(c.service_accounts[1].labels.is_empty());
    let api = &c.pods[c.find_pod("shop", "api-0").unwrap().index()];
    let labels = c.pod_calico_labels(api);
    assert_eq!(labels.get("pcsa.trust"), Some("high"));
    assert_eq!(labels.get("projectcalico.org/serviceaccount"), Some("api"));
    assert_eq!(labels.get("pcns.team"), Some("web"));
    let db = &c.pods[c.find_pod("shop", "db-0").unwrap().index()];
    assert_eq!(c.pod_calico_labels(db).get("pcsa.projectcalico.org/name"), Some("default"));
    // The rule of the fixture's policy matches the api pod by its service account.
    let policy = c.policies.iter().find(|p| p.name == "security.db-ingress").unwrap();
    let peer = remote(&policy.ingress[0]);
    assert!(peer.selector.as_ref().unwrap().matches(&labels));
    assert!(!peer.selector.as_ref().unwrap().matches(&c.pod_calico_labels(db)));
    // A duplicate ServiceAccount is an error; one in another namespace is not.
    let sa = |ns: &str| format!("apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: a, namespace: {ns}}}\n");
    let l = load_str("sa.yaml", &[sa("x"), sa("y"), sa("x")].join("---\n"));
    assert_eq!(errors(&l).len(), 1);
    assert_eq!(l.cluster.service_accounts.len(), 2);
    assert!(!l.cluster.has_calico(), "service accounts alone are no Calico input");
}

// ---- kinds only recognised, kinds skipped ----

#[test]
fn other_calico_kinds_are_skipped_and_counted() {
    let l = load_str("u.yaml", &fixture("unmodelled.yaml"));
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    let skipped: Vec<(&str, usize)> = l.skipped_kinds.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        skipped,
        [("BGPPeer", 1), ("FelixConfiguration", 1), ("IPPool", 1), ("Node.projectcalico.org", 1), ("Profile", 1)]
    );
    assert!(l.cluster.policies.is_empty() && l.cluster.nodes.is_empty());
}

// ---- validation: one test per rule, with the exact field path ----

#[test]
fn each_invalid_object_costs_only_itself() {
    let l = load_str("invalid.yaml", &fixture("invalid.yaml"));
    let fields: Vec<(&str, &str)> =
        errors(&l).iter().map(|d| (d.object.as_deref().unwrap_or(""), d.field.as_deref().unwrap_or(""))).collect();
    assert_eq!(
        fields,
        [
            ("NetworkPolicy.projectcalico.org shop/bad-action", "spec.ingress[0].action"),
            ("GlobalNetworkPolicy bad-selector", "spec.selector"),
            ("NetworkPolicy.projectcalico.org shop/ports-without-protocol", "spec.egress[0].destination.ports"),
            ("NetworkSet shop/bad-nets", "spec.nets[1]"),
        ]
    );
    let names: Vec<&str> = l.cluster.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ok"]);
    assert!(l.cluster.network_sets.is_empty());
}

#[test]
fn unknown_fields_suggest_the_closest() {
    assert_error(&np("{ingress: [{action: Allow, sourc: {}}]}"), "spec.ingress[0].sourc", "did you mean `source`?");
    assert_error(&np("{selectr: all()}"), "spec.selectr", "did you mean `selector`?");
    assert_error(
        &gnp("{ingress: [{action: Allow, destination: {namespaceSelectr: x}}]}"),
        "spec.ingress[0].destination.namespaceSelectr",
        "did you mean `namespaceSelector`?",
    );
    // A NetworkPolicy has no namespaceSelector of its own (a GlobalNetworkPolicy has).
    assert_error(&np("{namespaceSelector: all()}"), "spec.namespaceSelector", "unknown field `namespaceSelector`");
}

#[test]
fn names_follow_calicos_patterns() {
    assert_error(&np("{}").replace("name: p,", "name: a.b.c,"), "metadata.name", "two joined by a '.'");
    assert_error(&gnp("{}").replace("name: g", "name: Web"), "metadata.name", "RFC 1123");
    assert_eq!(only_policy(&np("{}").replace("name: p,", "name: tier1.p,")).name, "tier1.p");
    assert_eq!(only_policy(&np("{}").replace("name: p,", "name: knp.default.a.b,")).name, "knp.default.a.b");
    assert_error(&np("{tier: Tier_1}"), "spec.tier", "RFC 1123 subdomain");
    assert_error(
        &np("{}").replace("namespace: prod}", "namespace: prod, labels: {'a b': c}}"),
        "metadata.labels",
        "invalid label key",
    );
}

#[test]
fn actions_and_types_are_enums() {
    assert_error(&np("{ingress: [{action: allow}]}"), "spec.ingress[0].action", "values are case-sensitive: `Allow`");
    assert_error(&np("{egress: [{protocol: TCP}]}"), "spec.egress[0].action", "required");
    assert_error(&np("{types: [Ingres]}"), "spec.types[0]", "unsupported value `Ingres`");
    assert_error(&np("{types: [Ingress, Ingress]}"), "spec.types[1]", "'Ingress' type specified more than once");
    assert_error(&np("{types: []}"), "spec.types", "at least 1 item");
    assert_error(&np("{performanceHints: [Fast]}"), "spec.performanceHints[0]", "AssumeNeededOnEveryNode");
    assert_error(&np("{order: .nan}"), "spec.order", "finite");
}

#[test]
fn at_most_1024_rules() {
    let rules = vec!["{action: Allow}"; 1025].join(", ");
    assert_error(&np(&format!("{{egress: [{rules}]}}")), "spec.egress", "at most 1024 items (got 1025)");
    let rules = vec!["{action: Allow}"; 1024].join(", ");
    assert_eq!(only_policy(&np(&format!("{{egress: [{rules}]}}"))).egress.len(), 1024);
}

#[test]
fn selectors_must_parse() {
    let (f, m) = the_error(&np("{ingress: [{action: Allow, source: {selector: app == }}]}"));
    assert_eq!(f, "spec.ingress[0].source.selector");
    let upstream = parse("app ==").unwrap_err();
    assert!(m.contains(&upstream.to_string()), "{m}");
    assert_error(&gnp("{namespaceSelector: 'a in {'}"), "spec.namespaceSelector", "invalid selector");
    assert_error(&np("{serviceAccountSelector: '!!'}"), "spec.serviceAccountSelector", "invalid selector");
    assert_error(
        &np("{egress: [{action: Allow, destination: {notSelector: '&&'}}]}"),
        "spec.egress[0].destination.notSelector",
        "invalid selector",
    );
    assert_error(
        &np("{egress: [{action: Allow, destination: {serviceAccounts: {selector: 'a =='}}}]}"),
        "spec.egress[0].destination.serviceAccounts.selector",
        "invalid selector",
    );
    let long = format!("a == '{}'", "x".repeat(1020));
    assert_error(&np(&format!("{{selector: \"{long}\"}}")), "spec.selector", "may not be longer than 1024 characters");
    let not = format!("{{ingress: [{{action: Allow, source: {{notSelector: \"{long}\"}}}}]}}");
    assert_error(&np(&not), "spec.ingress[0].source.notSelector", "may not be longer than 1024 characters");
    // `serviceAccounts.selector` has no limit.
    let sa = format!("{{ingress: [{{action: Allow, source: {{serviceAccounts: {{selector: \"{long}\"}}}}}}]}}");
    assert_eq!(only_policy(&np(&sa)).ingress.len(), 1);
}

#[test]
fn global_is_only_for_a_rule_sides_namespace_selector() {
    let msg = "global() can only be used in an EntityRule namespaceSelector";
    assert_error(&np("{selector: global()}"), "spec.selector", msg);
    assert_error(&gnp("{namespaceSelector: global()}"), "spec.namespaceSelector", msg);
    assert_error(&gnp("{serviceAccountSelector: global()}"), "spec.serviceAccountSelector", msg);
    assert_error(
        &np("{ingress: [{action: Allow, source: {selector: global()}}]}"),
        "spec.ingress[0].source.selector",
        msg,
    );
    assert_error(
        &np("{ingress: [{action: Allow, source: {namespaceSelector: global() && has(a)}}]}"),
        "spec.ingress[0].source.namespaceSelector",
        "global() cannot be combined with other selectors",
    );
}

#[test]
fn ports_need_a_protocol_with_ports() {
    let numeric = "rules with numeric port or port range must set protocol to TCP or UDP or SCTP";
    let any = "rules that specify ports must set protocol to TCP or UDP or SCTP";
    assert_error(
        &np("{ingress: [{action: Allow, destination: {ports: [80]}}]}"),
        "spec.ingress[0].destination.ports",
        numeric,
    );
    assert_error(
        &np("{ingress: [{action: Allow, source: {notPorts: ['1:2']}}]}"),
        "spec.ingress[0].source.notPorts",
        numeric,
    );
    assert_error(
        &np("{ingress: [{action: Allow, protocol: ICMP, destination: {ports: [http]}}]}"),
        "spec.ingress[0].destination.ports",
        any,
    );
    // UDPLite has no ports in Calico's API (`SupportsPorts`: TCP, UDP, SCTP).
    assert_error(
        &np("{ingress: [{action: Allow, protocol: UDPLite, destination: {notPorts: [80]}}]}"),
        "spec.ingress[0].destination.notPorts",
        any,
    );
    assert_error(
        &np("{ingress: [{action: Allow, protocol: 47, destination: {ports: [80]}}]}"),
        "spec.ingress[0].destination.ports",
        any,
    );
}

#[test]
fn ports_are_numbers_ranges_or_port_names() {
    let port = |p: &str| np(&format!("{{ingress: [{{action: Allow, protocol: TCP, destination: {{ports: [{p}]}}}}]}}"));
    let at = "spec.ingress[0].destination.ports[0]";
    assert_error(&port("0"), at, "port number must be between 1 and 65535");
    assert_error(&port("65536"), at, "between 1 and 65535");
    assert_error(&port("'65536'"), at, "invalid port format (65536)");
    assert_error(&port("'90:80'"), at, "minimum port number (90) is greater than maximum port number (80)");
    assert_error(&port("'0:80'"), at, "port number must be between 1 and 65535");
    assert_error(&port("'1:70000'"), at, "invalid maximum port number in range");
    assert_error(&port("HTTP"), at, "invalid port name `HTTP`");
    assert_error(&port("'a b'"), at, "invalid name for named port (a b)");
    let fifty_one = vec!["80"; 51].join(", ");
    assert_error(&port(&fifty_one), "spec.ingress[0].destination.ports", "at most 50 items");
}

#[test]
fn protocols_are_names_or_numbers_from_1_to_255() {
    let rule = |p: &str| np(&format!("{{ingress: [{{action: Allow, {p}}}]}}"));
    assert_error(&rule("protocol: tcp"), "spec.ingress[0].protocol", "values are case-sensitive: `TCP`");
    assert_error(&rule("protocol: 0"), "spec.ingress[0].protocol", "protocol number invalid");
    assert_error(&rule("protocol: 256"), "spec.ingress[0].protocol", "between 1 and 255");
    assert_error(&rule("protocol: GRE"), "spec.ingress[0].protocol", "protocol name invalid");
    assert_error(&rule("notProtocol: Udp"), "spec.ingress[0].notProtocol", "case-sensitive: `UDP`");
}

#[test]
fn icmp_needs_an_icmp_protocol_and_valid_fields() {
    let rule = |r: &str| np(&format!("{{ingress: [{{action: Allow, {r}}}]}}"));
    let proto = "ICMP fields require protocol to be ICMP or ICMPv6";
    assert_error(&rule("icmp: {type: 8}"), "spec.ingress[0].icmp", proto);
    assert_error(&rule("protocol: TCP, icmp: {type: 8}"), "spec.ingress[0].icmp", proto);
    // CEL compares the value as written: a number in a string is not the number 1.
    assert_error(&rule("protocol: '1', icmp: {type: 8}"), "spec.ingress[0].icmp", proto);
    assert_error(&rule("protocol: ICMP, icmp: {type: 255}"), "spec.ingress[0].icmp.type", "between 0 and 254");
    assert_error(&rule("protocol: ICMP, icmp: {type: 3, code: 256}"), "spec.ingress[0].icmp.code", "between 0 and 255");
    assert_error(
        &rule("protocol: ICMP, icmp: {code: 1}"),
        "spec.ingress[0].icmp.code",
        "ICMP code specified without an ICMP type",
    );
    assert_error(&rule("protocol: ICMP, notICMP: {code: 1}"), "spec.ingress[0].notICMP.code", "without an ICMP type");
}

#[test]
fn ip_version_agrees_with_protocols_and_nets() {
    let rule = |r: &str| np(&format!("{{ingress: [{{action: Allow, {r}}}]}}"));
    assert_error(&rule("ipVersion: 5"), "spec.ingress[0].ipVersion", "supported values: \"4\", \"6\"");
    assert_error(
        &rule("ipVersion: 6, protocol: ICMP"),
        "spec.ingress[0].ipVersion",
        "protocol ICMP requires ipVersion 4",
    );
    assert_error(
        &rule("ipVersion: 4, notProtocol: 58"),
        "spec.ingress[0].ipVersion",
        "protocol ICMPv6 requires ipVersion 6",
    );
    assert_error(
        &rule("ipVersion: 6, source: {nets: [10.0.0.0/8]}"),
        "spec.ingress[0].source.nets",
        "rule IP version doesn't match CIDR version",
    );
    assert_error(
        &rule("source: {nets: [10.0.0.0/8]}, destination: {notNets: ['fd00::/8']}"),
        "spec.ingress[0].destination.notNets",
        "rule contains both IPv4 and IPv6 CIDRs",
    );
}

#[test]
fn nets_must_be_cidrs_or_addresses() {
    let rule = |r: &str| np(&format!("{{egress: [{{action: Allow, {r}}}]}}"));
    assert_error(
        &rule("destination: {nets: [10.0.0.0/8, 10.0.0.0/40]}"),
        "spec.egress[0].destination.nets[1]",
        "invalid CIDR",
    );
    assert_error(&rule("destination: {notNets: [garbage]}"), "spec.egress[0].destination.notNets[0]", "invalid CIDR");
    assert_error(&rule("source: {nets: [10.0.0.0/8, 10.0.0.0/8]}"), "spec.egress[0].source.nets[1]", "duplicate value");
    let catch_all = "catch-all CIDR in negation creates logical contradiction";
    assert_error(&rule("destination: {notNets: [0.0.0.0/0]}"), "spec.egress[0].destination.notNets[0]", catch_all);
    assert_error(&rule("destination: {notNets: ['0:0:0::/0']}"), "spec.egress[0].destination.notNets[0]", catch_all);
}

#[test]
fn services_where_and_with_what_the_api_allows() {
    let rule = |dir: &str, r: &str| np(&format!("{{{dir}: [{{action: Allow, {r}}}]}}"));
    assert_error(
        &rule("ingress", "destination: {services: {name: a}}"),
        "spec.ingress[0].destination.services",
        "not allowed in ingress rule destination",
    );
    assert_error(
        &rule("egress", "source: {services: {name: a}}"),
        "spec.egress[0].source.services",
        "not allowed in egress rule source",
    );
    assert_error(
        &rule("egress", "destination: {services: {}}"),
        "spec.egress[0].destination.services.name",
        "services must specify a service name",
    );
    assert_error(
        &rule("egress", "protocol: TCP, destination: {services: {name: a}, ports: [80]}"),
        "spec.egress[0].destination.ports",
        "ports and notPorts cannot be specified with services",
    );
    assert_error(
        &rule("egress", "destination: {services: {name: a}, selector: x == 'y'}"),
        "spec.egress[0].destination.selector",
        "Selector/NotSelector and Services",
    );
    assert_error(
        &rule("egress", "destination: {services: {name: a}, namespaceSelector: all()}"),
        "spec.egress[0].destination.namespaceSelector",
        "NamespaceSelector and Services",
    );
    assert_error(
        &rule("egress", "destination: {services: {name: a}, nets: [10.0.0.0/8]}"),
        "spec.egress[0].destination.nets",
        "Nets/NotNets and Services",
    );
    assert_error(
        &rule("egress", "destination: {services: {name: a}, serviceAccounts: {names: [x]}}"),
        "spec.egress[0].destination.serviceAccounts",
        "ServiceAccounts and Services",
    );
    // A GlobalNetworkPolicy's services match names its namespace.
    assert_error(
        &gnp("{egress: [{action: Allow, destination: {services: {name: a}}}]}"),
        "spec.egress[0].destination.services.namespace",
        "must specify a namespace",
    );
}

#[test]
fn http_matches_are_ingress_allow_rules_over_tcp() {
    let rule = |dir: &str, r: &str| np(&format!("{{{dir}: [{{{r}}}]}}"));
    assert_error(
        &rule("egress", "action: Allow, http: {methods: [GET]}"),
        "spec.egress[0].http",
        "not allowed in egress rule",
    );
    assert_error(
        &rule("ingress", "action: Deny, http: {methods: [GET]}"),
        "spec.ingress[0].http",
        "HTTP match is only valid on Allow rules",
    );
    assert_error(
        &rule("ingress", "action: Allow, protocol: UDP, http: {methods: [GET]}"),
        "spec.ingress[0].http",
        "must have protocol TCP or unset",
    );
    assert_error(
        &rule("ingress", "action: Allow, http: {methods: [GET, GET]}"),
        "spec.ingress[0].http.methods",
        "duplicates",
    );
    assert_error(
        &rule("ingress", "action: Allow, http: {paths: [{exact: /a, prefix: /b}]}"),
        "spec.ingress[0].http.paths[0]",
        "Both 'exact' and 'prefix'",
    );
    assert_error(
        &rule("ingress", "action: Allow, http: {paths: [{exact: 'a?b'}]}"),
        "spec.ingress[0].http.paths[0]",
        "must start with `/`",
    );
}

#[test]
fn global_policy_only_rules() {
    assert_error(
        &gnp("{doNotTrack: true, preDNAT: true, applyOnForward: true}"),
        "spec.preDNAT",
        "preDNAT and doNotTrack cannot both be true",
    );
    assert_error(
        &gnp("{preDNAT: true, applyOnForward: true, egress: [{action: Allow}]}"),
        "spec.egress",
        "preDNAT policy cannot have any egress rules",
    );
    assert_error(
        &gnp("{preDNAT: true, applyOnForward: true, types: [Egress]}"),
        "spec.types",
        "cannot have 'Egress' type",
    );
    assert_error(
        &gnp("{doNotTrack: true}"),
        "spec.applyOnForward",
        "applyOnForward must be true if either preDNAT or doNotTrack is true",
    );
}

#[test]
fn types_of_fields_are_checked() {
    assert_error(&np("{order: ten}"), "spec.order", "invalid type");
    assert_error(&np("{ingress: [{action: Allow, ipVersion: four}]}"), "spec.ingress[0].ipVersion", "invalid type");
    assert_error(&np("{ingress: [{action: Allow, protocol: 6.5}]}"), "spec.ingress[0].protocol", "invalid type");
}

// ---- host endpoints ----

fn hep(spec: &str) -> String {
    format!("apiVersion: projectcalico.org/v3\nkind: HostEndpoint\nmetadata: {{name: h, labels: {{role: node}}}}\nspec: {spec}\n")
}

#[test]
fn a_host_endpoint_loads_with_its_addresses_profiles_and_ports() {
    let l = load_str(
        "h.yaml",
        &hep("{node: n1, interfaceName: eth0, expectedIPs: [10.0.0.1, '::ffff:10.0.0.2'], profiles: [projectcalico-default-allow], ports: [{name: web, protocol: TCP, port: 80}, {name: dns, protocol: 17, port: 53}]}"),
    );
    assert_clean(&l);
    assert!(l.cluster.has_calico(), "a host endpoint makes the input a Calico cluster");
    let h = &l.cluster.host_endpoints[0];
    assert_eq!((h.name.as_str(), h.node.as_str(), h.interface.as_deref()), ("h", "n1", Some("eth0")));
    assert_eq!(h.expected_ips, vec!["10.0.0.1".parse::<std::net::IpAddr>().unwrap(), "10.0.0.2".parse().unwrap()]);
    assert_eq!(h.profiles, ["projectcalico-default-allow"]);
    let ports: Vec<String> = h.ports.iter().map(|p| p.to_string()).collect();
    assert_eq!(ports, ["web:80/TCP", "dns:53/UDP"]);
    assert_eq!(h.labels.get("role"), Some("node"));
    // The CRD group reads the same spec.
    let crd = hep("{node: n1, interfaceName: '*'}").replace("projectcalico.org/v3", "crd.projectcalico.org/v1");
    let l = load_str("h.yaml", &crd);
    assert_clean(&l);
    assert!(l.cluster.host_endpoints[0].all_interfaces());
}

#[test]
fn host_endpoint_validation() {
    let cases = [
        ("{interfaceName: eth0}", "spec.node", "node must be specified"),
        ("{node: n1}", "spec", "at least one of interfaceName or expectedIPs"),
        ("{node: n1, expectedIPs: [10.0.0.300]}", "spec.expectedIPs[0]", "invalid IP address"),
        ("{node: n1, expectedIPs: [10.0.0.1, 10.0.0.1]}", "spec.expectedIPs[1]", "duplicate"),
        ("{node: n1, interfaceName: averyveryverylongname}", "spec.interfaceName", "invalid interface name"),
        ("{node: N_1, interfaceName: eth0}", "spec.node", ""),
        ("{node: n1, interfaceName: eth0, profiles: [Bad_Name]}", "spec.profiles[0]", ""),
        (
            "{node: n1, interfaceName: eth0, ports: [{name: web, protocol: ICMP, port: 80}]}",
            "spec.ports[0].protocol",
            "TCP, UDP or SCTP",
        ),
        (
            "{node: n1, interfaceName: eth0, ports: [{name: web, protocol: TCP, port: 0}]}",
            "spec.ports[0].port",
            "between 1 and 65535",
        ),
        ("{node: n1, interfaceName: eth0, ports: [{protocol: TCP, port: 80}]}", "spec.ports[0].name", "Required"),
        ("{node: n1, interfaceName: eth0, bogus: 1}", "spec", "bogus"),
    ];
    for (spec, field, words) in cases {
        let l = load_str("h.yaml", &hep(spec));
        let e = errors(&l);
        assert!(!e.is_empty(), "{spec}: no error");
        assert!(
            e.iter().any(|d| d.field.as_deref().unwrap_or("").starts_with(field) && d.message.contains(words))
                || e.iter().any(|d| d.message.contains(words) && !words.is_empty()),
            "{spec}: expected {field} ({words}), got {e:#?}"
        );
        assert!(l.cluster.host_endpoints.is_empty(), "{spec}: an invalid host endpoint is not loaded");
    }
    // A duplicate name is an error; the first one stays.
    let l = load_str(
        "h.yaml",
        &[hep("{node: n1, interfaceName: eth0}"), hep("{node: n2, interfaceName: eth0}")].join("---\n"),
    );
    assert_eq!(errors(&l).len(), 1);
    assert_eq!(l.cluster.host_endpoints.len(), 1);
    assert_eq!(l.cluster.host_endpoints[0].node, "n1");
}

/// A Calico rule reads the family of the peer's address: a rule is dropped for a family its `notNets` has no
/// CIDR of (Felix's `FilterRuleToIPVersion`), while a pod with no address yet passes the address criteria. So pods
/// that differ only by the family of their address (or by having one) are judged apart. Before, a pod with no
/// address shared the identity of an IPv4 pod with the same labels, and took its answer.
#[test]
fn pods_differing_only_by_address_family_are_judged_apart() {
    let pod = |name: &str, ip: &str| {
        let status = if ip.is_empty() { String::new() } else { format!("\nstatus: {{podIP: '{ip}'}}") };
        format!("---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: prod, labels: {{app: web}}}}{status}\n")
    };
    let db = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: prod, labels: {app: db}}\n\
              status: {podIPs: [{ip: 10.0.0.9}, {ip: 'fd00::9'}]}\n";
    let policy = np("{selector: app == 'db', ingress: [{action: Allow, source: {notNets: ['fd00::/120']}}]}");
    let yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: prod}}\n{}{}{}{db}---\n{policy}",
        pod("v4", "10.0.0.1"),
        pod("v6", "fd00::1"),
        pod("none", ""),
    );
    let loaded = load_str("family.yaml", &yaml);
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let e = netpol_core::compile::Engine::new(loaded.cluster);
    // The rule has no IPv4 CIDR in notNets: no rule for IPv4. Its IPv6 CIDR holds fd00::1. No address: allowed.
    crate::common::check(
        &e,
        &[
            ("prod/v4", "prod/db", "80", false),
            ("prod/v6", "prod/db", "80", false),
            ("prod/none", "prod/db", "80", true),
        ],
    );
}
