//! One test per semantic rule of the admin tiers (ClusterNetworkPolicy v1alpha2; AdminNetworkPolicy and
//! BaselineAdminNetworkPolicy v1alpha1), each traced to the upstream text it comes from
//! (kubernetes-sigs/network-policy-api: `apis/v1alpha2/clusternetworkpolicy_types.go`, `site-src/api-overview.md`,
//! NPEPs). Every flow is checked three ways: the engine, the explanation and the reference evaluator.

use netpol_core::compile::Engine;
use netpol_core::load::load_str;
use netpol_core::verdict::DecidedBy;

use crate::common::{check, check_named};

fn engine(yaml: &str) -> Engine {
    let loaded = load_str("test.yaml", &format!("{BASE}\n---\n{yaml}"));
    assert!(loaded.diagnostics.is_empty(), "unexpected diagnostics: {:#?}", loaded.diagnostics);
    Engine::new(loaded.cluster)
}

/// Namespaces `prod` (env=prod) and `dev` (env=dev), pods `web` and `db` in each, a hostNetwork pod on node
/// `n1`, and the node.
const BASE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev, labels: {env: dev}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}, {name: dns, containerPort: 53, protocol: UDP}]}]}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: prod, labels: {app: db}}
spec: {containers: [{name: c, ports: [{name: pg, containerPort: 5432}]}]}
status: {podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev, labels: {app: web}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8081}]}]}
status: {podIP: 10.0.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: dev, labels: {app: db}}
status: {podIP: 10.0.2.2}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: dev, labels: {app: agent}}
spec: {hostNetwork: true, nodeName: n1}
---
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: worker}}
status: {addresses: [{type: InternalIP, address: 10.0.9.1}, {type: Hostname, address: n1}]}
"#;

fn cnp(name: &str, tier: &str, priority: u32, subject: &str, rules: &str) -> String {
    format!(
        "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\nspec:\n  tier: {tier}\n  priority: {priority}\n  subject: {subject}\n{rules}\n"
    )
}

const ALL_NS: &str = "{namespaces: {}}";
const PROD: &str = "{namespaces: {matchLabels: {env: prod}}}";

/// api-overview: the Admin tier is evaluated before NetworkPolicies; its Deny cannot be overridden by them.
#[test]
fn admin_deny_overrides_a_network_policy_allow() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-all, namespace: prod}\nspec: {podSelector: {}, ingress: [{}]}\n";
    let deny = cnp(
        "no-dev",
        "Admin",
        10,
        PROD,
        "  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}]",
    );
    let e = engine(&format!("{np}---\n{deny}"));
    let ex = check(&e, &[("dev/web", "prod/web", "8080", false), ("prod/db", "prod/web", "8080", true)]);
    assert_eq!(ex[0].ingress.decided_by, DecidedBy::Rule);
    assert_eq!(ex[0].ingress.walk.last().unwrap().policy, "cnp/no-dev");
    assert!(ex[0].render().contains("[Admin] cnp/no-dev (priority 10) ingress rule 0: Deny"), "{}", ex[0].render());
}

/// api-overview: an Admin Accept is final: NetworkPolicy isolation does not deny it.
#[test]
fn admin_accept_overrides_network_policy_isolation() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: prod}\nspec: {podSelector: {}, policyTypes: [Ingress]}\n";
    let accept =
        cnp("ops", "Admin", 5, PROD, "  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {env: dev}}}]}]");
    let e = engine(&format!("{np}---\n{accept}"));
    check(&e, &[("dev/web", "prod/web", "8080", true), ("prod/db", "prod/web", "8080", false)]);
}

/// api-overview: Pass skips the rest of the Admin tier; NetworkPolicies decide, and if none selects the pod,
/// the Baseline tier does.
#[test]
fn pass_hands_the_flow_to_network_policy_then_baseline() {
    let pass = cnp(
        "pass-dev",
        "Admin",
        1,
        ALL_NS,
        "  ingress: [{action: Pass, from: [{namespaces: {matchLabels: {env: dev}}}]}, {action: Deny, from: [{namespaces: {}}]}]",
    );
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db-from-web, namespace: prod}\nspec: {podSelector: {matchLabels: {app: db}}, ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}]}]}\n";
    let baseline = cnp(
        "base",
        "Baseline",
        1,
        ALL_NS,
        "  ingress: [{action: Deny, from: [{pods: {podSelector: {matchLabels: {app: db}}}}]}]",
    );
    let e = engine(&format!("{pass}---\n{np}---\n{baseline}"));
    let ex = check(
        &e,
        &[
            // Passed, then allowed by the NetworkPolicy that selects prod/db.
            ("dev/web", "prod/db", "5432", true),
            // Passed, then denied by that NetworkPolicy's isolation (the Baseline tier is never reached).
            ("dev/db", "prod/db", "5432", false),
            // Passed; no NetworkPolicy selects prod/web: the Baseline tier denies db → web.
            ("dev/db", "prod/web", "8080", false),
            // Passed; no NetworkPolicy, Baseline does not match web → web: allowed by default.
            ("dev/web", "prod/web", "8080", true),
            // Not from dev: the Admin Deny after the Pass decides.
            ("prod/web", "dev/web", "8081", false),
        ],
    );
    assert_eq!(ex[1].ingress.decided_by, DecidedBy::NetworkPolicy);
    assert_eq!(ex[2].ingress.walk.last().unwrap().tier, "Baseline");
    assert_eq!(ex[3].ingress.decided_by, DecidedBy::Default);
    assert!(ex[0].render().contains("Pass, peer 0, any port"), "{}", ex[0].render());
    assert!(ex[0].render().contains("→ next tier"));
}

/// api-overview: the Baseline tier applies only to pods no NetworkPolicy selects.
#[test]
fn baseline_applies_only_where_no_network_policy_selects() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web-open, namespace: prod}\nspec: {podSelector: {matchLabels: {app: web}}, ingress: [{}]}\n";
    let baseline = cnp(
        "deny-dev",
        "Baseline",
        3,
        PROD,
        "  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}]",
    );
    let e = engine(&format!("{np}---\n{baseline}"));
    check(&e, &[("dev/web", "prod/web", "8080", true), ("dev/web", "prod/db", "5432", false)]);
}

/// clusternetworkpolicy_types.go: lower priority numbers are evaluated first.
#[test]
fn the_lower_priority_number_decides_first() {
    let deny = cnp("deny", "Admin", 20, PROD, "  ingress: [{action: Deny, from: [{namespaces: {}}]}]");
    let accept = cnp(
        "accept",
        "Admin",
        10,
        PROD,
        "  ingress: [{action: Accept, from: [{namespaces: {matchLabels: {env: dev}}}]}]",
    );
    let e = engine(&format!("{deny}---\n{accept}"));
    let ex = check(&e, &[("dev/web", "prod/web", "8080", true), ("prod/db", "prod/web", "8080", false)]);
    assert_eq!(ex[0].ingress.walk.last().unwrap().policy, "cnp/accept");
}

/// clusternetworkpolicy_types.go: rules are evaluated in order; the first that matches decides.
#[test]
fn rules_in_order_the_first_match_decides() {
    let p = cnp(
        "ordered",
        "Admin",
        1,
        PROD,
        "  ingress:\n  - {action: Accept, from: [{namespaces: {}}], protocols: [{tcp: {destinationPort: {number: 8080}}}]}\n  - {action: Deny, from: [{namespaces: {}}]}\n  - {action: Accept, from: [{namespaces: {}}]}",
    );
    let e = engine(&p);
    check(&e, &[("dev/web", "prod/web", "8080", true), ("dev/web", "prod/web", "8081", false)]);
}

/// api-overview: selecting a pod as subject does not isolate it; traffic no rule matches falls through to the
/// next tier (conformance: "matches no rules hence allowed").
#[test]
fn a_subject_without_a_matching_rule_is_not_isolated() {
    let p = cnp(
        "narrow",
        "Admin",
        1,
        PROD,
        "  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {env: staging}}}]}]",
    );
    let e = engine(&p);
    let ex = check(&e, &[("dev/web", "prod/web", "8080", true)]);
    assert_eq!(ex[0].ingress.decided_by, DecidedBy::Default);
    assert!(!ex[0].ingress.isolated);
}

/// api-overview: ingress and egress are decided separately; an egress Accept at the source does not override an
/// ingress Deny at the destination.
#[test]
fn directions_are_independent() {
    let accept = cnp(
        "dev-out",
        "Admin",
        1,
        "{namespaces: {matchLabels: {env: dev}}}",
        "  egress: [{action: Accept, to: [{namespaces: {}}]}]",
    );
    let deny = cnp(
        "prod-in",
        "Admin",
        2,
        PROD,
        "  ingress: [{action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}]",
    );
    let e = engine(&format!("{accept}---\n{deny}"));
    let ex = check(&e, &[("dev/web", "prod/web", "8080", false)]);
    assert!(ex[0].egress.allowed && !ex[0].ingress.allowed);
}

/// clusternetworkpolicy_types.go: host-network pods are never subjects and never match namespaces/pods peers;
/// their traffic is their node's, matched by `nodes` (egress) peers at the node's addresses.
#[test]
fn host_network_pods_are_nodes() {
    let deny_all = cnp("deny-all", "Admin", 1, ALL_NS, "  egress: [{action: Deny, to: [{namespaces: {}}]}]");
    let deny_nodes =
        cnp("no-nodes", "Admin", 2, PROD, "  egress: [{action: Deny, to: [{nodes: {matchLabels: {role: worker}}}]}]");
    let e = engine(&format!("{deny_all}---\n{deny_nodes}"));
    check(
        &e,
        &[
            // The hostNetwork pod is not a subject: its egress is not denied.
            ("dev/agent", "prod/web", "8080", true),
            // Nor is it a pod peer of `namespaces: {}`; it is node n1, which `nodes` matches (by its address).
            ("prod/web", "dev/agent", "9100", false),
            ("prod/web", "10.0.9.1", "9100", false),
            // dev is not a subject of no-nodes, and deny-all does not match the node.
            ("dev/web", "10.0.9.1", "9100", true),
        ],
    );
}

/// api-overview and conformance: `networks` match pod addresses too (a /32 of a pod IP selects that pod).
#[test]
fn networks_match_pod_addresses() {
    let p = cnp(
        "cidr",
        "Admin",
        1,
        "{namespaces: {matchLabels: {env: dev}}}",
        "  egress: [{action: Deny, to: [{networks: [10.0.1.2/32, 192.0.2.0/24]}]}]",
    );
    let e = engine(&p);
    check(
        &e,
        &[
            ("dev/web", "prod/db", "5432", false),
            ("dev/web", "prod/web", "8080", true),
            ("dev/web", "192.0.2.77", "443", false),
            ("dev/web", "198.51.100.1", "443", true),
        ],
    );
}

/// npep-133: domainNames match the name the destination was resolved from; `*.` matches one or more labels,
/// never the apex; without a name nothing matches.
#[test]
fn domain_names_match_the_resolved_name() {
    let p = cnp(
        "fqdn",
        "Admin",
        1,
        PROD,
        "  egress:\n  - {action: Accept, to: [{domainNames: ['*.example.com', 'api.example.org']}]}\n  - {action: Deny, to: [{networks: [0.0.0.0/0]}]}",
    );
    let e = engine(&p);
    let ex = check_named(
        &e,
        &[
            ("prod/web", "203.0.113.9", "443", Some("www.example.com"), true),
            ("prod/web", "203.0.113.9", "443", Some("a.b.example.com"), true),
            ("prod/web", "203.0.113.9", "443", Some("example.com"), false),
            ("prod/web", "203.0.113.9", "443", Some("API.Example.org."), true),
            ("prod/web", "203.0.113.9", "443", Some("evil.org"), false),
            ("prod/web", "203.0.113.9", "443", None, false),
        ],
    );
    assert!(ex[5].render().contains("DENY"), "{}", ex[5].render());
}

/// clusternetworkpolicy_types.go: `destinationNamedPort` is resolved against the destination pod's container
/// ports (whatever their protocol); omitted `protocols` match every protocol and port.
#[test]
fn named_ports_and_omitted_protocols() {
    let p = cnp(
        "ports",
        "Admin",
        1,
        PROD,
        "  ingress:\n  - {action: Accept, from: [{namespaces: {}}], protocols: [{destinationNamedPort: dns}]}\n  - {action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}",
    );
    let e = engine(&p);
    check(
        &e,
        &[
            ("dev/web", "prod/web", "53/UDP", true),
            ("dev/web", "prod/web", "53/TCP", false),
            ("dev/web", "prod/web", "8080/SCTP", false),
            ("prod/db", "prod/web", "9999/UDP", true),
        ],
    );
}

/// v1alpha1: AdminNetworkPolicy (Allow/Deny/Pass, priority) and BaselineAdminNetworkPolicy `default` lower to
/// the same tiers as ClusterNetworkPolicy.
#[test]
fn v1alpha1_kinds_are_the_same_tiers() {
    let anp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: guard}\nspec:\n  priority: 3\n  subject: {namespaces: {matchLabels: {env: prod}}}\n  ingress:\n  - {action: Pass, from: [{namespaces: {matchLabels: {env: dev}}}]}\n  - {action: Allow, from: [{namespaces: {}}], ports: [{portNumber: {port: 5432}}]}\n";
    let banp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata: {name: default}\nspec:\n  subject: {namespaces: {}}\n  ingress:\n  - {action: Deny, from: [{namespaces: {matchLabels: {env: dev}}}]}\n";
    let e = engine(&format!("{anp}---\n{banp}"));
    let ex = check(
        &e,
        &[
            ("dev/web", "prod/db", "5432", false),
            ("prod/web", "prod/db", "5432", true),
            ("dev/web", "dev/db", "80", false),
            ("prod/web", "dev/db", "80", true),
        ],
    );
    assert_eq!(ex[0].ingress.walk[0].policy, "anp/guard");
    assert_eq!(ex[0].ingress.walk.last().unwrap().policy, "banp/default");
    assert!(ex[1].render().contains("Allow, peer 0, port 5432/TCP"), "{}", ex[1].render());
}

/// api-overview: a Pass in the Baseline tier leaves the flow to the default: allowed.
#[test]
fn pass_in_the_baseline_tier_means_allow() {
    let p = cnp(
        "base",
        "Baseline",
        1,
        PROD,
        "  ingress: [{action: Pass, from: [{namespaces: {matchLabels: {env: dev}}}]}, {action: Deny, from: [{namespaces: {}}]}]",
    );
    let e = engine(&p);
    check(&e, &[("dev/web", "prod/web", "8080", true), ("prod/db", "prod/web", "8080", false)]);
}

/// clusternetworkpolicy_types.go: equal priorities are undefined; netpol orders them by kind and name, always
/// the same way, and the verdict follows that order.
#[test]
fn equal_priorities_are_ordered_by_name() {
    let b = cnp("b-deny", "Admin", 7, PROD, "  ingress: [{action: Deny, from: [{namespaces: {}}]}]");
    let a = cnp("a-accept", "Admin", 7, PROD, "  ingress: [{action: Accept, from: [{namespaces: {}}]}]");
    let e = engine(&format!("{b}---\n{a}"));
    let ex = check(&e, &[("dev/web", "prod/web", "8080", true)]);
    assert_eq!(ex[0].ingress.walk.last().unwrap().policy, "cnp/a-accept");
}
