//! Loading the admin policy dialects (`policy.networking.k8s.io`: ClusterNetworkPolicy v1alpha2,
//! AdminNetworkPolicy and BaselineAdminNetworkPolicy v1alpha1), Nodes, and what pods take from them. Each valid
//! kind is checked against the model it lowers into; each validation rule against the exact field path and
//! message of its diagnostic, with the valid object after it in the same file still loaded.

use std::net::IpAddr;

use netpol_core::load::{load_str, Diagnostic, Loaded, Severity};
use netpol_core::model::{Action, Origin, Peer, Policy, PolicyKind, PolicyPort, PolicyTier, PortMatch, Rule, Scope};
use netpol_core::portset::Protocol;
use netpol_core::selector::Selector;

// ---- helpers ----

fn fixture(name: &str) -> String {
    let path = format!("{}/../../tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// Removes the common leading indentation of the non-blank lines (and a leading newline).
fn dedent(s: &str) -> String {
    let s = s.strip_prefix('\n').unwrap_or(s);
    let indent = s.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
    s.lines().map(|l| if l.len() >= indent { &l[indent..] } else { l.trim_start() }).collect::<Vec<_>>().join("\n")
        + "\n"
}

#[track_caller]
fn assert_clean(l: &Loaded) {
    assert!(l.diagnostics.is_empty(), "expected no diagnostics, got {:#?}", l.diagnostics);
}

fn warnings(l: &Loaded) -> Vec<&Diagnostic> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Warning).collect()
}

fn cluster_policy<'a>(l: &'a Loaded, kind: PolicyKind, name: &str) -> Option<&'a Policy> {
    l.cluster.policies.iter().find(|p| p.kind == kind && p.name == name)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn sel(s: &Selector) -> String {
    s.to_string()
}

fn scope(p: &Policy) -> String {
    match &p.scope {
        Scope::Cluster(s) => sel(s),
        Scope::Namespace(ns) => panic!("a cluster-scoped policy has scope Namespace({ns})"),
    }
}

/// A peer in a short text form: `ns(sel)`, `pods(ns sel / pod sel)`, `nodes(sel)`, `networks(a,b)`, `domains(a,b)`.
fn peer(p: &Peer) -> String {
    match p {
        Peer::Selectors { namespaces: Some(ns), pods: None } => format!("ns({ns})"),
        Peer::Selectors { namespaces: Some(ns), pods: Some(pods) } => format!("pods({ns} / {pods})"),
        Peer::Nodes(s) => format!("nodes({s})"),
        Peer::Networks(n) => format!("networks({})", n.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")),
        Peer::DomainNames(d) => format!("domains({})", d.join(",")),
        other => panic!("an admin kind has no peer {other:?}"),
    }
}

fn peers(r: &Rule) -> Vec<String> {
    r.peers.iter().map(peer).collect()
}

fn ports(r: &Rule) -> Vec<String> {
    r.ports.iter().map(PolicyPort::to_string).collect()
}

fn api_version(kind: &str) -> &'static str {
    match kind {
        "ClusterNetworkPolicy" => "policy.networking.k8s.io/v1alpha2",
        "AdminNetworkPolicy" | "BaselineAdminNetworkPolicy" => "policy.networking.k8s.io/v1alpha1",
        other => panic!("not an admin kind: {other}"),
    }
}

/// The name the helpers give an object of `kind` (a BaselineAdminNetworkPolicy must be `default`).
fn name_of(kind: &str) -> &'static str {
    if kind == "BaselineAdminNetworkPolicy" {
        "default"
    } else {
        "p"
    }
}

/// An object of `kind` with the given `spec` (YAML, indented as it likes), followed in the same file by a valid
/// Node `after`.
fn with_spec(kind: &str, spec: &str) -> String {
    let mut s =
        format!("apiVersion: {}\nkind: {kind}\nmetadata:\n  name: {}\nspec:\n", api_version(kind), name_of(kind));
    for line in dedent(spec).lines() {
        s.push_str("  ");
        s.push_str(line);
        s.push('\n');
    }
    s.push_str("---\napiVersion: v1\nkind: Node\nmetadata:\n  name: after\n");
    s
}

fn policy_kind(kind: &str) -> PolicyKind {
    match kind {
        "ClusterNetworkPolicy" => PolicyKind::ClusterNetworkPolicy,
        "AdminNetworkPolicy" => PolicyKind::AdminNetworkPolicy,
        _ => PolicyKind::BaselineAdminNetworkPolicy,
    }
}

/// Loads `with_spec(kind, spec)`, asserts that the object was rejected with exactly one error at `field`, while
/// the Node after it in the same file still loaded, and returns the error.
#[track_caller]
fn rejects(kind: &str, spec: &str, field: &str) -> Diagnostic {
    let l = load_str("a.yaml", &with_spec(kind, spec));
    let errors: Vec<_> = l.diagnostics.iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "expected exactly one error, got {:#?}", l.diagnostics);
    let d = errors[0].clone();
    assert_eq!(d.field.as_deref(), Some(field), "{d}");
    assert_eq!(d.object.as_deref(), Some(format!("{kind} {}", name_of(kind)).as_str()));
    assert_eq!(d.origin, Origin { file: "a.yaml".into(), document: 0, item: None });
    assert!(l.cluster.policies.is_empty(), "the invalid policy was loaded");
    assert_eq!(l.cluster.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["after"]);
    d
}

/// Loads `with_spec(kind, spec)`, asserts that it loaded with no error, and returns the policy and the loaded
/// input (for its warnings).
#[track_caller]
fn accepts(kind: &str, spec: &str) -> (Policy, Loaded) {
    let l = load_str("a.yaml", &with_spec(kind, spec));
    assert!(l.diagnostics.iter().all(|d| d.severity == Severity::Warning), "{:#?}", l.diagnostics);
    let p = cluster_policy(&l, policy_kind(kind), name_of(kind)).expect("the policy loaded").clone();
    (p, l)
}

/// Loads a CNP `spec` that must be rejected at `field` with exactly `message`.
#[track_caller]
fn cnp_rejects(spec: &str, field: &str, message: &str) {
    let d = rejects("ClusterNetworkPolicy", spec, field);
    assert_eq!(d.message, message);
}

const CNP_HEAD: &str = "tier: Admin\npriority: 1\nsubject: {namespaces: {}}\n";

// ---- valid objects, lowered ----

#[test]
fn admin_tier_cluster_network_policy_lowers_to_the_model() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    assert_clean(&l);
    let p = cluster_policy(&l, PolicyKind::ClusterNetworkPolicy, "cluster-guard").unwrap();
    assert_eq!((p.tier, p.order), (PolicyTier::Admin, 10.into()));
    assert_eq!(scope(p), "tier=prod");
    assert!(p.pod_selector.is_everything(), "a `namespaces` subject selects every pod of them");
    assert_eq!(p.ns(), None);
    assert!(p.affects_ingress && p.affects_egress);
    assert_eq!(p.origin, Origin { file: "admin-policies.yaml".into(), document: 0, item: None });

    let [deny_dev, pass_monitoring] = &p.ingress[..] else { panic!("two ingress rules: {:?}", p.ingress) };
    assert_eq!((deny_dev.name.as_deref(), deny_dev.action), (Some("deny-dev"), Action::Deny));
    assert_eq!(peers(deny_dev), ["ns(tier=dev)"]);
    assert_eq!(ports(deny_dev), ["80/TCP", "5000-5999/UDP"]);
    assert_eq!(pass_monitoring.action, Action::Pass);
    assert_eq!(peers(pass_monitoring), ["pods(kubernetes.io/metadata.name=monitoring / app=prometheus)"]);
    assert!(pass_monitoring.ports.is_empty(), "no `protocols`: every port of every protocol");

    let [allow_web, pass_db] = &p.egress[..] else { panic!("two egress rules: {:?}", p.egress) };
    assert_eq!(allow_web.action, Action::Allow, "Accept is the model's allow");
    assert_eq!(
        peers(allow_web),
        ["networks(10.0.0.0/8,fd00::/8)", "nodes(kubernetes.io/os=linux)", "domains(*.example.com,kubernetes.io)"]
    );
    assert_eq!(ports(allow_web), ["443/TCP"]);
    assert_eq!((pass_db.name.as_deref(), pass_db.action), (None, Action::Pass));
    assert_eq!(peers(pass_db), ["pods({} / app=db)"], "no namespaceSelector: every namespace (v1alpha2)");
    // A named port of the admin kinds matches the container port of that name whatever its protocol.
    let named: Vec<_> = pass_db.ports.iter().map(|p| (p.protocol, p.port.clone())).collect();
    let pg = || PortMatch::Named("postgres".into());
    assert_eq!(named, [(Protocol::Tcp, pg()), (Protocol::Udp, pg()), (Protocol::Sctp, pg())]);
}

#[test]
fn baseline_tier_cluster_network_policy_with_a_pods_subject() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let p = cluster_policy(&l, PolicyKind::ClusterNetworkPolicy, "baseline-deny").unwrap();
    assert_eq!((p.tier, p.order), (PolicyTier::Baseline, 0.into()));
    assert_eq!(scope(p), "{}", "no namespaceSelector: every namespace");
    assert_eq!(sel(&p.pod_selector), "app=web");
    assert!(p.affects_ingress);
    assert!(!p.affects_egress, "no egress rules: egress is not affected (no implicit isolation)");
    assert_eq!(p.ingress[0].action, Action::Deny);
    assert_eq!(peers(&p.ingress[0]), ["ns({})"]);
}

#[test]
fn admin_network_policy_lowers_to_the_admin_tier() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let p = cluster_policy(&l, PolicyKind::AdminNetworkPolicy, "ns-guard").unwrap();
    assert_eq!((p.tier, p.order), (PolicyTier::Admin, 50.into()));
    assert_eq!((scope(p), sel(&p.pod_selector)), ("tier=prod".to_string(), "{}".to_string()));
    assert!(!p.affects_ingress && p.affects_egress);
    let [dns, deny_rest] = &p.egress[..] else { panic!("two egress rules") };
    assert_eq!((dns.name.as_deref(), dns.action), (Some("dns"), Action::Allow));
    assert_eq!(peers(dns), ["ns(kubernetes.io/metadata.name=kube-system)"]);
    assert_eq!(
        ports(dns),
        ["53/TCP", "53-54/UDP", "dns/TCP (named)", "dns/UDP (named)", "dns/SCTP (named)"],
        "portNumber's protocol defaults to TCP; a namedPort is every protocol's"
    );
    assert_eq!((deny_rest.action, peers(deny_rest)), (Action::Deny, vec!["networks(0.0.0.0/0,::/0)".to_string()]));
    assert_eq!(l.cluster.policy_ref(l.cluster.find_policy("anp/ns-guard").unwrap()), "anp/ns-guard");
}

#[test]
fn baseline_admin_network_policy_lowers_to_the_baseline_tier() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let p = cluster_policy(&l, PolicyKind::BaselineAdminNetworkPolicy, "default").unwrap();
    assert_eq!((p.tier, p.order), (PolicyTier::Baseline, 0.into()));
    assert_eq!((scope(p), sel(&p.pod_selector)), ("{}".to_string(), "{}".to_string()));
    assert_eq!((p.ingress[0].name.as_deref(), p.ingress[0].action), (Some("deny-all"), Action::Deny));
    assert_eq!(
        l.cluster.policies.iter().map(|p| p.kind.short()).collect::<Vec<_>>(),
        ["cnp", "cnp", "anp", "banp"],
        "input order"
    );
}

#[test]
fn admin_kinds_load_from_a_json_list_and_a_typed_list() {
    let json = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
         "metadata": {"name": "a"},
         "spec": {"tier": "Baseline", "priority": 7, "subject": {"namespaces": {}},
                  "egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]}]}},
        {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
         "metadata": {"name": "b"}, "spec": {"tier": "Admin", "priority": 1, "subject": {}}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
         "status": {"addresses": [{"type": "InternalIP", "address": "10.9.0.1"}]}}
    ]}"#;
    let l = load_str("list.json", json);
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    let d = &l.diagnostics[0];
    assert_eq!(d.origin.item, Some(1));
    assert_eq!(d.object.as_deref(), Some("ClusterNetworkPolicy b"));
    assert_eq!(d.field.as_deref(), Some("spec.subject"));
    let a = cluster_policy(&l, PolicyKind::ClusterNetworkPolicy, "a").unwrap();
    assert_eq!((a.tier, a.order, a.origin.item), (PolicyTier::Baseline, 7.into(), Some(0)));
    assert_eq!(l.cluster.nodes[0].ips, [ip("10.9.0.1")]);

    let typed = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicyList\nitems:\n\
                 - metadata: {name: x}\n  spec: {priority: 3, subject: {namespaces: {}}}\n";
    let l = load_str("typed.yaml", typed);
    assert_clean(&l);
    assert_eq!(cluster_policy(&l, PolicyKind::AdminNetworkPolicy, "x").map(|p| p.order), Some(3.into()));
}

// ---- Nodes and the pods on them ----

#[test]
fn nodes_keep_their_internal_and_external_ips_in_order() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let [w1, w2] = &l.cluster.nodes[..] else { panic!("two nodes: {:?}", l.cluster.nodes) };
    assert_eq!(w1.name, "worker-1");
    assert_eq!(w1.ips, [ip("203.0.113.7"), ip("192.168.1.11"), ip("fd00:1::11")], "Hostname is not an IP");
    assert_eq!(w1.labels.get("kubernetes.io/os"), Some("linux"));
    assert_eq!(w1.origin, Origin { file: "admin-policies.yaml".into(), document: 5, item: None });
    assert_eq!((w2.name.as_str(), &w2.ips[..]), ("worker-2", &[ip("192.168.1.12")][..]));
}

#[test]
fn a_host_network_pod_takes_its_nodes_internal_ip_even_when_the_node_comes_later() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let id = l.cluster.find_pod("kube-system", "node-agent").unwrap();
    let pod = l.cluster.pod(id);
    assert_eq!(pod.node.as_deref(), Some("worker-1"));
    // The kubelet's host IPs: the first InternalIP (before the ExternalIP listed earlier), then the first of the
    // other family.
    assert_eq!(pod.ips, [ip("192.168.1.11"), ip("fd00:1::11")]);
}

#[test]
fn host_network_pods_take_node_ips_only_when_they_have_none_and_the_node_is_known() {
    let text = dedent(
        r#"
        apiVersion: v1
        kind: Node
        metadata: {name: n1}
        status: {addresses: [{type: ExternalIP, address: 198.51.100.1}, {type: InternalIP, address: 10.0.0.1}]}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: external-only}
        status: {addresses: [{type: ExternalIP, address: 198.51.100.2}]}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: host, namespace: x}
        spec: {hostNetwork: true, nodeName: n1}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: reported, namespace: x}
        spec: {hostNetwork: true, nodeName: n1}
        status: {podIP: 10.0.0.99}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: not-host, namespace: x}
        spec: {nodeName: n1}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: unknown-node, namespace: x}
        spec: {hostNetwork: true, nodeName: n9}
        ---
        apiVersion: v1
        kind: Pod
        metadata: {name: external, namespace: x}
        spec: {hostNetwork: true, nodeName: external-only}
        "#,
    );
    let l = load_str("n.yaml", &text);
    assert_clean(&l);
    let ips = |name: &str| l.cluster.pod(l.cluster.find_pod("x", name).unwrap()).ips.clone();
    assert_eq!(ips("host"), [ip("10.0.0.1")], "InternalIP first");
    assert_eq!(ips("reported"), [ip("10.0.0.99")], "the status's IP stays");
    assert!(ips("not-host").is_empty());
    assert!(ips("unknown-node").is_empty());
    assert_eq!(ips("external"), [ip("198.51.100.2")], "no InternalIP: the first ExternalIP");
    assert_eq!(l.cluster.pod(l.cluster.find_pod("x", "unknown-node").unwrap()).node.as_deref(), Some("n9"));
}

#[test]
fn a_node_address_that_is_no_ip_is_a_warning_and_the_node_loads() {
    let text = dedent(
        r#"
        apiVersion: v1
        kind: Node
        metadata: {name: n1, namespace: ignored}
        status:
          addresses:
            - {type: InternalIP, address: 10.0.0.1}
            - {type: InternalIP, address: not-an-ip}
            - {type: InternalDNS, address: n1.internal}
            - {type: ExternalIP, address: 10.0.0.1}
        "#,
    );
    let l = load_str("n.yaml", &text);
    let [w] = &warnings(&l)[..] else { panic!("one warning: {:#?}", l.diagnostics) };
    assert_eq!(l.diagnostics.len(), 1);
    assert_eq!(w.object.as_deref(), Some("Node n1"), "cluster-scoped: no namespace in the label");
    assert_eq!(w.field.as_deref(), Some("status.addresses[1].address"));
    assert_eq!(w.message, "invalid IP address `not-an-ip`: the address is left out");
    assert_eq!(l.cluster.nodes[0].ips, [ip("10.0.0.1")], "one address once");
}

#[test]
fn node_and_pod_node_names_are_validated() {
    let l = load_str("n.yaml", "apiVersion: v1\nkind: Node\nmetadata: {name: Bad_Name}\n");
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    assert_eq!(l.diagnostics[0].field.as_deref(), Some("metadata.name"));
    assert!(l.cluster.nodes.is_empty());

    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nspec: {nodeName: Not_A_Node}\n";
    let l = load_str("p.yaml", pod);
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    assert_eq!(l.diagnostics[0].object.as_deref(), Some("Pod x/p"));
    assert_eq!(l.diagnostics[0].field.as_deref(), Some("spec.nodeName"));
    assert!(l.cluster.pods.is_empty());

    let template = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d, namespace: x}\n\
                    spec: {template: {spec: {nodeName: worker-3}}}\n";
    let l = load_str("d.yaml", template);
    assert_clean(&l);
    assert_eq!(l.cluster.pods[0].node.as_deref(), Some("worker-3"));
}

// ---- duplicates and labels ----

#[test]
fn duplicates_are_per_kind_and_name_for_cluster_scoped_kinds() {
    let text = dedent(
        r#"
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: same}
        spec: {tier: Admin, priority: 1, subject: {namespaces: {}}}
        ---
        apiVersion: policy.networking.k8s.io/v1alpha1
        kind: AdminNetworkPolicy
        metadata: {name: same}
        spec: {priority: 1, subject: {namespaces: {}}}
        ---
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: same, namespace: somewhere}
        spec: {tier: Baseline, priority: 2, subject: {namespaces: {}}}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: same}
        ---
        apiVersion: v1
        kind: Node
        metadata: {name: same}
        "#,
    );
    let l = load_str("d.yaml", &text);
    let msgs: Vec<_> =
        l.diagnostics.iter().map(|d| (d.origin.document, d.object.as_deref(), d.field.as_deref())).collect();
    assert_eq!(
        msgs,
        [(2, Some("ClusterNetworkPolicy same"), Some("metadata.name")), (4, Some("Node same"), Some("metadata.name"))]
    );
    assert!(l.diagnostics.iter().all(|d| d.severity == Severity::Error));
    assert!(l.diagnostics[0].message.starts_with("duplicate object: already defined at d.yaml (document 0)"));
    assert!(l.diagnostics[1].message.starts_with("duplicate object: already defined at d.yaml (document 3)"));
    let kept = cluster_policy(&l, PolicyKind::ClusterNetworkPolicy, "same").unwrap();
    assert_eq!(kept.tier, PolicyTier::Admin, "the first one is kept");
    assert_eq!(l.cluster.policies.len(), 2);
    assert_eq!(l.cluster.nodes.len(), 1);
}

#[test]
fn a_broken_admin_object_costs_only_itself() {
    let l = load_str("admin-invalid.yaml", &fixture("admin-invalid.yaml"));
    let errs: Vec<_> =
        l.diagnostics.iter().map(|d| (d.origin.document, d.object.as_deref(), d.field.as_deref())).collect();
    assert_eq!(
        errs,
        [
            (1, Some("AdminNetworkPolicy broken"), Some("spec.ingress[0].acton")),
            (2, Some("ClusterNetworkPolicy also-broken"), Some("spec.egress[0].to[0].networks[0]")),
        ]
    );
    let names: Vec<_> = l.cluster.policies.iter().map(|p| format!("{}/{}", p.kind.short(), p.name)).collect();
    assert_eq!(names, ["cnp/first", "banp/default"]);
    assert_eq!(l.cluster.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["after"]);
}

// ---- validation rules ----

#[test]
fn unknown_fields_get_a_did_you_mean() {
    let d = rejects(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\ningress:\n- acton: Allow\n  from: [{namespaces: {}}]\n",
        "spec.ingress[0].acton",
    );
    assert_eq!(
        d.message,
        "unknown field `acton`: did you mean `action`? (known fields: `name`, `action`, `from`, `ports`)"
    );
    let d = rejects("ClusterNetworkPolicy", "tier: Admin\npriorty: 1\nsubject: {namespaces: {}}\n", "spec.priorty");
    assert!(d.message.starts_with("unknown field `priorty`: did you mean `priority`?"), "{}", d.message);
    let d = rejects(
        "ClusterNetworkPolicy",
        &format!("{CNP_HEAD}egress:\n- action: Deny\n  to: [{{network: [10.0.0.0/8]}}]\n"),
        "spec.egress[0].to[0].network",
    );
    assert!(d.message.starts_with("unknown field `network`: did you mean `networks`?"), "{}", d.message);
    let d = rejects("BaselineAdminNetworkPolicy", "priority: 3\nsubject: {namespaces: {}}\n", "spec.priority");
    assert_eq!(d.message, "unknown field `priority` (known fields: `subject`, `ingress`, `egress`)");
}

#[test]
fn priority_must_be_0_to_1000() {
    cnp_rejects(
        "tier: Admin\npriority: 1001\nsubject: {namespaces: {}}\n",
        "spec.priority",
        "must be between 0 and 1000, inclusive (got 1001)",
    );
    let d = rejects("AdminNetworkPolicy", "priority: -1\nsubject: {namespaces: {}}\n", "spec.priority");
    assert_eq!(d.message, "must be between 0 and 1000, inclusive (got -1)");
    cnp_rejects(
        "tier: Admin\nsubject: {namespaces: {}}\n",
        "spec.priority",
        "required: a number from 0 (first) to 1000",
    );
    let (p, _) = accepts("AdminNetworkPolicy", "priority: 1000\nsubject: {namespaces: {}}\n");
    assert_eq!(p.order, 1000.into());
    let (p, _) = accepts("ClusterNetworkPolicy", "tier: Baseline\npriority: 0\nsubject: {namespaces: {}}\n");
    assert_eq!(p.order, 0.into());
}

#[test]
fn tier_is_admin_or_baseline_case_sensitively() {
    cnp_rejects(
        "tier: admin\npriority: 1\nsubject: {namespaces: {}}\n",
        "spec.tier",
        "unsupported value `admin`: supported values: \"Admin\", \"Baseline\" (values are case-sensitive: `Admin`)",
    );
    cnp_rejects("priority: 1\nsubject: {namespaces: {}}\n", "spec.tier", "required: `Admin` or `Baseline`");
}

#[test]
fn spec_and_subject_are_required() {
    let l = load_str(
        "a.yaml",
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\n",
    );
    assert_eq!(l.diagnostics.len(), 1);
    assert_eq!(l.diagnostics[0].field.as_deref(), Some("spec"));
    cnp_rejects("tier: Admin\npriority: 1\n", "spec.subject", "required: `namespaces` or `pods`");
}

#[test]
fn subject_has_exactly_one_field() {
    cnp_rejects(
        "tier: Admin\npriority: 1\nsubject: {}\n",
        "spec.subject",
        "must specify exactly one of `namespaces`, `pods`",
    );
    cnp_rejects(
        "tier: Admin\npriority: 1\nsubject: {namespaces: {}, pods: {podSelector: {}}}\n",
        "spec.subject",
        "must specify exactly one of `namespaces`, `pods`, not `namespaces`, `pods`",
    );
}

#[test]
fn a_peer_has_exactly_one_field() {
    cnp_rejects(
        &format!("{CNP_HEAD}egress:\n- action: Deny\n  to: [{{namespaces: {{}}, networks: [10.0.0.0/8]}}]\n"),
        "spec.egress[0].to[0]",
        "must specify exactly one of `namespaces`, `pods`, `nodes`, `networks`, `domainNames`, not `namespaces`, \
         `networks`",
    );
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Deny\n  from: [{{}}]\n"),
        "spec.ingress[0].from[0]",
        "must specify exactly one of `namespaces`, `pods`",
    );
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Deny\n  from: []\n"),
        "spec.ingress[0].from",
        "must have at least 1 item",
    );
    cnp_rejects(&format!("{CNP_HEAD}egress:\n- action: Deny\n"), "spec.egress[0].to", "required: at least 1 peer");
}

#[test]
fn pods_peers_need_a_pod_selector_and_in_v1alpha1_a_namespace_selector() {
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Deny\n  from: [{{pods: {{namespaceSelector: {{}}}}}}]\n"),
        "spec.ingress[0].from[0].pods.podSelector",
        "required (`{}` selects every pod)",
    );
    let d = rejects(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\negress:\n- action: Allow\n  to: [{pods: {podSelector: {}}}]\n",
        "spec.egress[0].to[0].pods.namespaceSelector",
    );
    assert_eq!(d.message, "required (`{}` selects every namespace)");
    let d = rejects(
        "BaselineAdminNetworkPolicy",
        "subject: {pods: {podSelector: {}}}\n",
        "spec.subject.pods.namespaceSelector",
    );
    assert_eq!(d.message, "required (`{}` selects every namespace)");
}

#[test]
fn actions_are_per_kind() {
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Allow\n  from: [{{namespaces: {{}}}}]\n"),
        "spec.ingress[0].action",
        "unsupported value `Allow`: supported values: \"Accept\", \"Deny\", \"Pass\" (v1alpha2 renamed `Allow` to \
         `Accept`)",
    );
    let d = rejects(
        "BaselineAdminNetworkPolicy",
        "subject: {namespaces: {}}\ningress:\n- action: Pass\n  from: [{namespaces: {}}]\n",
        "spec.ingress[0].action",
    );
    assert_eq!(
        d.message,
        "unsupported value `Pass`: supported values: \"Allow\", \"Deny\" (a BaselineAdminNetworkPolicy is the last \
         tier: it has no Pass)"
    );
    let d = rejects(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\ningress:\n- action: Accept\n  from: [{namespaces: {}}]\n",
        "spec.ingress[0].action",
    );
    assert_eq!(
        d.message,
        "unsupported value `Accept`: supported values: \"Allow\", \"Deny\", \"Pass\" (v1alpha1 spells it `Allow`)"
    );
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- from: [{{namespaces: {{}}}}]\n"),
        "spec.ingress[0].action",
        "required: `Accept`, `Deny`, `Pass`",
    );
    let (p, _) = accepts(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\ningress:\n- action: Pass\n  from: [{namespaces: {}}]\n",
    );
    assert_eq!(p.ingress[0].action, Action::Pass);
    let (p, _) = accepts(
        "ClusterNetworkPolicy",
        "tier: Baseline\npriority: 1\nsubject: {namespaces: {}}\ningress:\n- action: Pass\n  from: [{namespaces: {}}]\n",
    );
    assert_eq!(p.ingress[0].action, Action::Pass, "Pass is allowed in the Baseline tier of v1alpha2");
}

#[test]
fn a_baseline_admin_network_policy_must_be_named_default() {
    let text = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\n\
                metadata: {name: baseline}\nspec: {subject: {namespaces: {}}}\n";
    let l = load_str("b.yaml", text);
    assert_eq!(l.diagnostics.len(), 1, "{:#?}", l.diagnostics);
    let d = &l.diagnostics[0];
    assert_eq!(
        (d.object.as_deref(), d.field.as_deref()),
        (Some("BaselineAdminNetworkPolicy baseline"), Some("metadata.name"))
    );
    assert_eq!(
        d.message,
        "Only one baseline admin network policy with metadata.name=\"default\" can be created in the cluster"
    );
    assert!(l.cluster.policies.is_empty());
}

#[test]
fn nodes_networks_and_domain_names_are_egress_peers() {
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Accept\n  from: [{{domainNames: [example.com]}}]\n"),
        "spec.ingress[0].from[0].domainNames",
        "`domainNames` peers are only allowed in egress rules (`to`); ingress peers are `namespaces`, `pods`",
    );
    let anp = |peer: &str| {
        format!("priority: 1\nsubject: {{namespaces: {{}}}}\ningress:\n- action: Allow\n  from: [{peer}]\n")
    };
    let d = rejects("AdminNetworkPolicy", &anp("{domainNames: [example.com]}"), "spec.ingress[0].from[0].domainNames");
    assert_eq!(
        d.message,
        "`domainNames` peers are only allowed in egress rules (`to`); ingress peers are `namespaces`, `pods`"
    );
    rejects("AdminNetworkPolicy", &anp("{networks: [10.0.0.0/8]}"), "spec.ingress[0].from[0].networks");
    rejects("AdminNetworkPolicy", &anp("{nodes: {}}"), "spec.ingress[0].from[0].nodes");
    let d = rejects(
        "BaselineAdminNetworkPolicy",
        "subject: {namespaces: {}}\negress:\n- action: Allow\n  to: [{domainNames: [example.com]}]\n",
        "spec.egress[0].to[0].domainNames",
    );
    assert_eq!(
        d.message,
        "BaselineAdminNetworkPolicy egress peers have no `domainNames` (peers: `namespaces`, `pods`, `nodes`, \
         `networks`)"
    );
    let (p, _) = accepts(
        "BaselineAdminNetworkPolicy",
        "subject: {namespaces: {}}\negress:\n- action: Deny\n  to: [{nodes: {}}, {networks: [\"::/0\"]}]\n",
    );
    assert_eq!(peers(&p.egress[0]), ["nodes({})", "networks(::/0)"]);
}

#[test]
fn networks_are_cidrs() {
    let spec =
        |nets: &str| format!("{CNP_HEAD}egress:\n- action: Deny\n  to:\n  - namespaces: {{}}\n  - networks: {nets}\n");
    cnp_rejects(
        &spec("[10.0.0.0/8, 10.0.0.0]"),
        "spec.egress[0].to[1].networks[1]",
        "Invalid CIDR format provided: `10.0.0.0` (e.g. 10.0.0.0/8 or fd00::/8)",
    );
    cnp_rejects(
        &spec("[\"::ffff:10.0.0.0/104\"]"),
        "spec.egress[0].to[1].networks[0]",
        "Invalid CIDR format provided: `::ffff:10.0.0.0/104` (e.g. 10.0.0.0/8 or fd00::/8)",
    );
    cnp_rejects(&spec("[10.0.0.0/8, 10.0.0.0/8]"), "spec.egress[0].to[1].networks[1]", "duplicate value `10.0.0.0/8`");
    cnp_rejects(&spec("[]"), "spec.egress[0].to[1].networks", "must have at least 1 item");
    let many: Vec<String> = (0..26).map(|i| format!("10.{i}.0.0/16")).collect();
    cnp_rejects(
        &spec(&format!("[{}]", many.join(", "))),
        "spec.egress[0].to[1].networks",
        "must have at most 25 items (got 26)",
    );

    // Host bits are accepted by `isCIDR`: masked, with a warning.
    let (p, l) = accepts("ClusterNetworkPolicy", &spec("[10.1.2.3/8, \"2001:db8::1/32\", 10.0.0.0/8]"));
    assert_eq!(peers(&p.egress[0])[1], "networks(10.0.0.0/8,2001:db8::/32)");
    let w: Vec<_> = warnings(&l).iter().map(|d| (d.field.as_deref().unwrap(), d.message.as_str())).collect();
    assert_eq!(
        w,
        [
            ("spec.egress[0].to[1].networks[0]", "`10.1.2.3/8` has host bits set: it is read as `10.0.0.0/8`"),
            ("spec.egress[0].to[1].networks[1]", "`2001:db8::1/32` has host bits set: it is read as `2001:db8::/32`"),
        ]
    );
    assert_eq!(w.len(), l.diagnostics.len());
}

#[test]
fn domain_names_follow_the_upstream_pattern_and_are_lowercased() {
    let spec = |action: &str, names: &str| {
        format!("{CNP_HEAD}egress:\n- action: {action}\n  to: [{{domainNames: {names}}}]\n")
    };
    cnp_rejects(
        &spec("Accept", "[example.com, localhost]"),
        "spec.egress[0].to[0].domainNames[1]",
        "invalid domain name `localhost`: must be two or more dot-separated labels (letters, digits, `-` and `_`, \
         beginning and ending with a letter or digit), optionally prefixed by `*.` and followed by a `.`",
    );
    rejects("ClusterNetworkPolicy", &spec("Accept", "[\"a.*.example.com\"]"), "spec.egress[0].to[0].domainNames[0]");
    rejects(
        "ClusterNetworkPolicy",
        &spec("Accept", "[example.com, example.com]"),
        "spec.egress[0].to[0].domainNames[1]",
    );
    let (p, l) = accepts("ClusterNetworkPolicy", &spec("Accept", "[\"*.Example.COM\", \"kubernetes.io.\"]"));
    assert_clean(&l);
    assert_eq!(peers(&p.egress[0]), ["domains(*.example.com,kubernetes.io.)"]);
}

#[test]
fn domain_names_outside_accept_rules_are_a_warning() {
    let (p, l) = accepts(
        "ClusterNetworkPolicy",
        &format!("{CNP_HEAD}egress:\n- action: Deny\n  to: [{{namespaces: {{}}}}, {{domainNames: [example.com]}}]\n"),
    );
    assert_eq!(peers(&p.egress[0]), ["ns({})", "domains(example.com)"], "the rule is loaded as written");
    let [w] = &l.diagnostics[..] else { panic!("one warning: {:#?}", l.diagnostics) };
    assert_eq!(w.severity, Severity::Warning);
    assert_eq!(w.object.as_deref(), Some("ClusterNetworkPolicy p"));
    assert_eq!(w.field.as_deref(), Some("spec.egress[0].to[1].domainNames"));
    assert_eq!(
        w.message,
        "`domainNames` peers are only supported for Accept rules: what a Deny rule does with them is undefined upstream"
    );
    let (_, l) = accepts(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\negress:\n- action: Pass\n  to: [{domainNames: [example.com]}]\n",
    );
    assert_eq!(
        warnings(&l).iter().map(|d| d.message.as_str()).collect::<Vec<_>>(),
        ["`domainNames` peers are only supported for Allow rules: what a Pass rule does with them is undefined upstream"]
    );
}

#[test]
fn named_ports_only_go_with_pod_peers() {
    cnp_rejects(
        &format!(
            "{CNP_HEAD}egress:\n- action: Accept\n  to: [{{pods: {{podSelector: {{}}}}}}, {{networks: [10.0.0.0/8]}}]\n  \
             protocols: [{{tcp: {{destinationPort: {{number: 80}}}}}}, {{destinationNamedPort: http}}]\n"
        ),
        "spec.egress[0].protocols[1].destinationNamedPort",
        "networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for \
         networks/nodes/domainNames (`to[1]` is a `networks` peer)",
    );
    let d = rejects(
        "AdminNetworkPolicy",
        "priority: 1\nsubject: {namespaces: {}}\negress:\n- action: Allow\n  to: [{nodes: {}}]\n  ports: [{namedPort: http}]\n",
        "spec.egress[0].ports[0].namedPort",
    );
    assert!(d.message.ends_with("(`to[0]` is a `nodes` peer)"), "{}", d.message);
    let d = rejects(
        "BaselineAdminNetworkPolicy",
        "subject: {namespaces: {}}\negress:\n- action: Allow\n  to: [{networks: [10.0.0.0/8]}]\n  ports: [{namedPort: http}]\n",
        "spec.egress[0].ports[0].namedPort",
    );
    assert_eq!(
        d.message,
        "networks/nodes peer cannot be set with namedPorts since there are no namedPorts for networks/nodes (`to[0]` \
         is a `networks` peer)"
    );
    // With pod peers only, and in ingress rules (whose peers are pods), named ports are fine.
    let (p, l) = accepts(
        "ClusterNetworkPolicy",
        &format!("{CNP_HEAD}ingress:\n- action: Accept\n  from: [{{namespaces: {{}}}}]\n  protocols: [{{destinationNamedPort: http}}]\n"),
    );
    assert_clean(&l);
    assert_eq!(ports(&p.ingress[0]), ["http/TCP (named)", "http/UDP (named)", "http/SCTP (named)"]);
}

#[test]
fn a_named_port_that_no_container_can_have_is_a_warning() {
    let (p, l) = accepts(
        "ClusterNetworkPolicy",
        &format!("{CNP_HEAD}ingress:\n- action: Deny\n  from: [{{namespaces: {{}}}}]\n  protocols: [{{destinationNamedPort: Web_Port}}]\n"),
    );
    assert_eq!(p.ingress[0].ports.len(), 3);
    let [w] = &warnings(&l)[..] else { panic!("one warning: {:#?}", l.diagnostics) };
    assert_eq!(w.field.as_deref(), Some("spec.ingress[0].protocols[0].destinationNamedPort"));
    assert!(w.message.starts_with("invalid port name `Web_Port`"), "{}", w.message);
    assert!(w.message.ends_with(": no container port has this name, so this entry matches no port"), "{}", w.message);
}

#[test]
fn protocols_entries_and_ports() {
    let spec = |protocols: &str| {
        format!("{CNP_HEAD}ingress:\n- action: Deny\n  from: [{{namespaces: {{}}}}]\n  protocols: {protocols}\n")
    };
    cnp_rejects(
        &spec("[{tcp: {destinationPort: {range: {start: 90, end: 80}}}}]"),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range",
        "Start port must be less than End port (got 90 to 80)",
    );
    cnp_rejects(
        &spec("[{udp: {destinationPort: {range: {start: 53, end: 53}}}}]"),
        "spec.ingress[0].protocols[0].udp.destinationPort.range",
        "Start port must be less than End port (got 53 to 53)",
    );
    cnp_rejects(
        &spec("[{tcp: {destinationPort: {number: 80}}, udp: {destinationPort: {number: 53}}}]"),
        "spec.ingress[0].protocols[0]",
        "must specify exactly one of `tcp`, `udp`, `sctp`, `destinationNamedPort`, not `tcp`, `udp`",
    );
    cnp_rejects(
        &spec("[{tcp: {}}]"),
        "spec.ingress[0].protocols[0].tcp.destinationPort",
        "required (for every port of the protocol, use `range: {start: 1, end: 65535}`)",
    );
    cnp_rejects(
        &spec("[{sctp: {destinationPort: {}}}]"),
        "spec.ingress[0].protocols[0].sctp.destinationPort",
        "must specify exactly one of `number`, `range`",
    );
    cnp_rejects(
        &spec("[{tcp: {destinationPort: {number: 0}}}]"),
        "spec.ingress[0].protocols[0].tcp.destinationPort.number",
        "must be between 1 and 65535, inclusive (got 0)",
    );
    cnp_rejects(
        &spec("[{tcp: {destinationPort: {range: {start: 1}}}}]"),
        "spec.ingress[0].protocols[0].tcp.destinationPort.range.end",
        "required",
    );
    cnp_rejects(
        &spec("[]"),
        "spec.ingress[0].protocols",
        "must have at least 1 item (omit `protocols` for every port)",
    );
    let (p, l) = accepts("ClusterNetworkPolicy", &spec("[{sctp: {destinationPort: {range: {start: 1, end: 65535}}}}]"));
    assert_clean(&l);
    assert_eq!(p.ingress[0].ports, [PolicyPort { protocol: Protocol::Sctp, port: PortMatch::Range(1, 65535) }]);
}

#[test]
fn v1alpha1_ports() {
    let spec = |ports: &str| {
        format!("priority: 1\nsubject: {{namespaces: {{}}}}\ningress:\n- action: Deny\n  from: [{{namespaces: {{}}}}]\n  ports: {ports}\n")
    };
    let d = rejects(
        "AdminNetworkPolicy",
        &spec("[{portNumber: {protocol: ICMP, port: 1}}]"),
        "spec.ingress[0].ports[0].portNumber.protocol",
    );
    assert_eq!(d.message, "unsupported value `ICMP`: supported values: \"SCTP\", \"TCP\", \"UDP\"");
    let d = rejects(
        "AdminNetworkPolicy",
        &spec("[{portNumber: {port: 70000}}]"),
        "spec.ingress[0].ports[0].portNumber.port",
    );
    assert_eq!(d.message, "must be between 1 and 65535, inclusive (got 70000)");
    let d =
        rejects("AdminNetworkPolicy", &spec("[{portNumber: {port: 80}, namedPort: http}]"), "spec.ingress[0].ports[0]");
    assert_eq!(
        d.message,
        "must specify exactly one of `portNumber`, `namedPort`, `portRange`, not `portNumber`, `namedPort`"
    );
    let d = rejects("BaselineAdminNetworkPolicy", "subject: {namespaces: {}}\ningress:\n- action: Deny\n  from: [{namespaces: {}}]\n  ports: [{portRange: {start: 1}}]\n", "spec.ingress[0].ports[0].portRange.end");
    assert_eq!(d.message, "required");

    // v1alpha1 documents start < end but does not enforce it: a reversed range loads, matches nothing, and warns.
    let (p, l) = accepts(
        "AdminNetworkPolicy",
        &spec("[{portRange: {protocol: SCTP, start: 9000, end: 8000}}, {portRange: {start: 80, end: 80}}]"),
    );
    assert_eq!(
        p.ingress[0].ports,
        [
            PolicyPort { protocol: Protocol::Sctp, port: PortMatch::Range(9000, 8000) },
            PolicyPort { protocol: Protocol::Tcp, port: PortMatch::Range(80, 80) },
        ]
    );
    let [w] = &warnings(&l)[..] else { panic!("one warning: {:#?}", l.diagnostics) };
    assert_eq!(w.field.as_deref(), Some("spec.ingress[0].ports[0].portRange"));
    assert_eq!(w.message, "`start` (9000) is greater than `end` (8000): this range matches no port");
}

#[test]
fn rule_lists_have_upstream_limits() {
    let rules = |n: usize, action: &str| -> String {
        (0..n).map(|_| format!("- action: {action}\n  from: [{{namespaces: {{}}}}]\n")).collect()
    };
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n{}", rules(26, "Deny")),
        "spec.ingress",
        "must have at most 25 items (got 26)",
    );
    let (p, _) = accepts("ClusterNetworkPolicy", &format!("{CNP_HEAD}ingress:\n{}", rules(25, "Deny")));
    assert_eq!(p.ingress.len(), 25);
    let d = rejects(
        "AdminNetworkPolicy",
        &format!("priority: 1\nsubject: {{namespaces: {{}}}}\ningress:\n{}", rules(101, "Deny")),
        "spec.ingress",
    );
    assert_eq!(d.message, "must have at most 100 items (got 101)");
    let (p, _) = accepts(
        "AdminNetworkPolicy",
        &format!("priority: 1\nsubject: {{namespaces: {{}}}}\ningress:\n{}", rules(100, "Deny")),
    );
    assert_eq!(p.ingress.len(), 100);
    let peers: String = (0..26).map(|i| format!("  - namespaces: {{matchLabels: {{n: \"{i}\"}}}}\n")).collect();
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- action: Deny\n  from:\n{peers}"),
        "spec.ingress[0].from",
        "must have at most 25 items (got 26)",
    );
    let long = "x".repeat(101);
    cnp_rejects(
        &format!("{CNP_HEAD}ingress:\n- name: {long}\n  action: Deny\n  from: [{{namespaces: {{}}}}]\n"),
        "spec.ingress[0].name",
        "may not be longer than 100 characters (got 101)",
    );
    let (p, _) = accepts("ClusterNetworkPolicy", &format!("{CNP_HEAD}ingress: []\negress: []\n"));
    assert!(!p.affects_ingress && !p.affects_egress, "empty rule lists are valid and affect nothing");
}

#[test]
fn selectors_are_validated_with_their_paths() {
    cnp_rejects(
        &format!("{CNP_HEAD}egress:\n- action: Deny\n  to: [{{nodes: {{matchExpressions: [{{key: role, operator: Is}}]}}}}]\n"),
        "spec.egress[0].to[0].nodes.matchExpressions[0].operator",
        "not a valid selector operator `Is`: supported values: \"In\", \"NotIn\", \"Exists\", \"DoesNotExist\"",
    );
    let d = rejects(
        "ClusterNetworkPolicy",
        "tier: Admin\npriority: 1\nsubject: {namespaces: {matchLabels: {\"a b\": c}}}\n",
        "spec.subject.namespaces.matchLabels",
    );
    assert!(d.message.contains("a b"), "{}", d.message);
}

#[test]
fn api_versions_are_per_kind() {
    let l = load_str(
        "v.yaml",
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: ClusterNetworkPolicy\nmetadata: {name: c}\nspec: {}\n",
    );
    assert_eq!(l.diagnostics.len(), 1);
    let d = &l.diagnostics[0];
    assert_eq!((d.object.as_deref(), d.field.as_deref()), (Some("ClusterNetworkPolicy c"), Some("apiVersion")));
    assert_eq!(
        d.message,
        "unsupported apiVersion `policy.networking.k8s.io/v1alpha1` for ClusterNetworkPolicy; expected one of \
         `policy.networking.k8s.io/v1alpha2`, `crd.antrea.io/v1beta1`"
    );
    let l = load_str(
        "v.yaml",
        "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: adminnetworkpolicy\nmetadata: {name: a}\n",
    );
    assert_eq!(l.diagnostics[0].object.as_deref(), Some("adminnetworkpolicy a"));
    assert_eq!(
        l.diagnostics[0].message,
        "unknown kind `adminnetworkpolicy`: kinds are case-sensitive; did you mean `AdminNetworkPolicy`?"
    );
}

#[test]
fn the_selectors_of_admin_policies_are_shared_with_equal_ones() {
    let l = load_str("admin-policies.yaml", &fixture("admin-policies.yaml"));
    let banp = cluster_policy(&l, PolicyKind::BaselineAdminNetworkPolicy, "default").unwrap();
    let cnp = cluster_policy(&l, PolicyKind::ClusterNetworkPolicy, "baseline-deny").unwrap();
    let (Scope::Cluster(a), Peer::Selectors { namespaces: Some(b), .. }) = (&banp.scope, &cnp.ingress[0].peers[0])
    else {
        panic!()
    };
    assert!(a.same_allocation(b), "an equal selector anywhere is the same copy");
}
