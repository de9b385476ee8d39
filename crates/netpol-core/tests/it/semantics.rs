//! One test per NetworkPolicy semantic rule. Every flow is checked three ways: the compiled engine, the
//! explanation, and the naive reference evaluator must all give the expected verdict.

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::load::load_str;
use netpol_core::portset::Protocol;
use netpol_core::reference;
use netpol_core::verdict::Verdict;

use crate::common::check;

fn engine(yaml: &str) -> Engine {
    let loaded = load_str("test.yaml", yaml);
    assert!(loaded.diagnostics.is_empty(), "unexpected diagnostics: {:#?}", loaded.diagnostics);
    Engine::new(loaded.cluster)
}

const PODS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: a, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: b, labels: {team: b}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: a, labels: {app: web}}
spec:
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 8080}
    - {name: dns, containerPort: 53, protocol: UDP}
    - {name: sctp, containerPort: 9000, protocol: SCTP}
status: {podIP: 10.0.1.1}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: a, labels: {app: db}}
spec:
  containers:
  - name: c
    ports:
    - {name: http, containerPort: 9090}
status: {podIP: 10.0.1.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: b, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: b, labels: {app: web}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.2.2}
"#;

fn with(policies: &str) -> Engine {
    engine(&format!("{PODS}\n---\n{policies}"))
}

#[test]
fn no_policy_allows_everything() {
    let e = with("");
    check(
        &e,
        &[("b/client", "a/web", "80", true), ("a/web", "b/client", "53/UDP", true), ("a/web", "8.8.8.8", "443", true)],
    );
}

#[test]
fn selecting_policy_isolates_ingress_and_denies_by_default() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: a}
spec: {podSelector: {matchLabels: {app: web}}}
"#,
    );
    let ex = check(
        &e,
        &[
            ("b/client", "a/web", "8080", false),
            ("b/client", "a/db", "9090", true), // not selected
            ("a/web", "b/client", "80", true),  // egress not isolated
        ],
    );
    assert!(ex[0].ingress.isolated);
    assert_eq!(ex[0].ingress.policies, vec!["a/deny"]);
    assert!(!ex[0].egress.isolated);
}

#[test]
fn policy_in_another_namespace_does_not_isolate() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: b}
spec: {podSelector: {}}
"#,
    );
    check(&e, &[("a/db", "a/web", "8080", true), ("a/db", "b/web", "80", false)]);
}

#[test]
fn egress_only_policy_leaves_ingress_open() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: a}
spec: {podSelector: {}, policyTypes: [Egress]}
"#,
    );
    check(
        &e,
        &[("b/client", "a/web", "8080", true), ("a/web", "b/client", "80", false), ("a/web", "a/db", "9090", false)],
    );
}

#[test]
fn egress_rules_without_policy_types_imply_egress() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]
"#,
    );
    // Ingress is isolated too (always implied), egress only to db.
    check(&e, &[("a/web", "a/db", "9090", true), ("a/web", "b/client", "80", false), ("a/db", "a/web", "8080", false)]);
}

#[test]
fn empty_egress_list_without_policy_types_does_not_isolate_egress() {
    // Upstream defaulting adds Egress only when len(spec.egress) != 0.
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}, egress: []}
"#,
    );
    check(&e, &[("a/web", "b/client", "80", true), ("b/client", "a/web", "8080", false)]);
}

#[test]
fn explicit_egress_type_with_no_rules_denies_all_egress() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress, Egress], egress: []}
"#,
    );
    let ex = check(&e, &[("a/web", "8.8.8.8", "53/UDP", false), ("a/web", "a/db", "9090", false)]);
    assert!(ex[0].egress.rejections[0].reason.contains("no egress rules"));
}

#[test]
fn policies_are_a_union() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p1, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: 8080}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p2, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]
"#,
    );
    let ex = check(
        &e,
        &[
            ("b/client", "a/web", "8080", true),
            ("b/client", "a/web", "8081", false),
            ("a/db", "a/web", "1234", true),
            ("b/client", "a/db", "9090", false),
        ],
    );
    assert_eq!(ex[0].ingress.policies, vec!["a/p1", "a/p2"]);
    assert_eq!(ex[0].ingress.allowed_by[0].policy, "a/p1");
    assert_eq!(ex[2].ingress.allowed_by[0].policy, "a/p2");
}

#[test]
fn pod_selector_alone_means_own_namespace() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
"#,
    );
    let ex = check(&e, &[("a/web", "a/db", "9090", true), ("b/web", "a/db", "9090", false)]);
    assert!(ex[1].ingress.rejections[0].reason.contains("selects pods in namespace a only"), "{}", ex[1].render());
}

#[test]
fn namespace_selector_alone_means_all_pods_of_matching_namespaces() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}]}]
"#,
    );
    let ex = check(
        &e,
        &[("b/web", "a/db", "9090", true), ("b/client", "a/db", "9090", true), ("a/web", "a/db", "9090", false)],
    );
    let reason = &ex[2].ingress.rejections[0].reason;
    assert!(reason.contains("requires namespace labels team=b; namespace a has"), "{reason}");
}

#[test]
fn namespace_and_pod_selector_in_one_peer_is_and_in_two_peers_is_or() {
    let and = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
      podSelector: {matchLabels: {app: client}}
"#,
    );
    check(
        &and,
        &[("b/client", "a/db", "9090", true), ("b/web", "a/db", "9090", false), ("a/web", "a/db", "9090", false)],
    );
    let or = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {matchLabels: {app: client}}
"#,
    );
    // b/web matches the namespace peer; a/web matches neither (no app=client in a).
    check(
        &or,
        &[("b/client", "a/db", "9090", true), ("b/web", "a/db", "9090", true), ("a/web", "a/db", "9090", false)],
    );
}

#[test]
fn empty_selectors_select_all() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}}]}]
"#,
    );
    // namespaceSelector {} = every pod in every namespace, but not external addresses.
    check(
        &e,
        &[("b/client", "a/db", "9090", true), ("a/web", "a/db", "1", true), ("192.168.1.1", "a/db", "9090", false)],
    );
}

#[test]
fn missing_from_allows_all_sources_including_external() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8080}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "8080", true),
            ("203.0.113.9", "a/web", "8080", true),
            ("b/client", "a/web", "80", false),
        ],
    );
}

#[test]
fn empty_rule_allows_everything() {
    // `ingress: [{}]` allows all traffic: a classic mistake for "deny".
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}, ingress: [{}]}
"#,
    );
    let ex = check(&e, &[("b/client", "a/web", "1", true), ("203.0.113.9", "a/db", "65535/SCTP", true)]);
    assert_eq!(ex[0].ingress.allowed_by[0].peer, None);
    assert_eq!(ex[0].ingress.allowed_by[0].port, None);
}

#[test]
fn protocol_defaults_to_tcp_and_protocols_are_distinct() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 8080}, {port: 53, protocol: UDP}, {port: 9000, protocol: SCTP}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "8080/TCP", true),
            ("b/client", "a/web", "8080/UDP", false),
            ("b/client", "a/web", "53/UDP", true),
            ("b/client", "a/web", "53/TCP", false), // UDP-only rule does not allow TCP
            ("b/client", "a/web", "9000/SCTP", true),
            ("b/client", "a/web", "9000/TCP", false), // SCTP is not TCP
        ],
    );
}

#[test]
fn protocol_without_port_allows_every_port_of_that_protocol() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{ports: [{protocol: UDP}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "1/UDP", true),
            ("b/client", "a/web", "65535/UDP", true),
            ("b/client", "a/web", "1/TCP", false),
        ],
    );
}

#[test]
fn end_port_range_is_inclusive() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{ports: [{port: 8000, endPort: 8080}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "7999", false),
            ("b/client", "a/web", "8000", true),
            ("b/client", "a/web", "8080", true),
            ("b/client", "a/web", "8081", false),
            ("b/client", "a/web", "8050/UDP", false),
        ],
    );
}

#[test]
fn named_ports_resolve_against_the_destination_pod() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "8080", true),  // web: http = 8080
            ("b/client", "a/web", "9090", false), // not web's http
            ("b/client", "a/db", "9090", true),   // db: http = 9090
            ("b/client", "a/db", "8080", false),
        ],
    );
}

#[test]
fn named_port_needs_the_same_protocol() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{ports: [{port: dns, protocol: TCP}, {port: http, protocol: UDP}]}]
"#,
    );
    // web's `dns` is UDP 53 and `http` is TCP 8080: neither entry resolves.
    check(
        &e,
        &[
            ("b/client", "a/web", "53/UDP", false),
            ("b/client", "a/web", "53/TCP", false),
            ("b/client", "a/web", "8080/UDP", false),
        ],
    );
}

#[test]
fn named_ports_in_egress_resolve_against_the_destination() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: b}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{ports: [{port: http}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/web", "8080", true),
            ("b/client", "a/db", "9090", true),
            ("b/client", "a/db", "8080", false),
            // A named port never matches an endpoint that is not a pod.
            ("b/client", "203.0.113.1", "8080", false),
            ("b/client", "b/web", "8080", false), // b/web declares no ports
        ],
    );
}

#[test]
fn egress_denied_at_client_even_if_server_allows() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-egress, namespace: b}
spec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Egress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-ingress, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{namespaceSelector: {}}]}]
"#,
    );
    let ex = check(&e, &[("b/client", "a/web", "8080", false), ("b/web", "a/web", "8080", true)]);
    assert!(!ex[0].egress.allowed);
    assert!(ex[0].ingress.allowed);
}

#[test]
fn ip_block_with_except_and_a_more_specific_allow() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: broad, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 192.168.0.0/16, except: [192.168.1.0/24]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: specific, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 192.168.1.128/25}}], ports: [{port: 443}]}]
"#,
    );
    let ex = check(
        &e,
        &[
            ("a/web", "192.168.2.1", "80", true),
            ("a/web", "192.168.1.1", "80", false),   // in the except
            ("a/web", "192.168.1.200", "443", true), // except of one policy, allowed by the other
            ("a/web", "192.168.1.200", "80", false), // ...but only on 443
            ("a/web", "10.9.9.9", "80", false),
        ],
    );
    assert!(
        ex[1].egress.rejections.iter().any(|r| r.reason.contains("in the exception 192.168.1.0/24")),
        "{}",
        ex[1].render()
    );
}

#[test]
fn ip_block_matches_pod_ips_and_a_pod_ip_is_that_pod() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.2.0/24, except: [10.0.2.2/32]}}]}]
"#,
    );
    check(
        &e,
        &[
            ("b/client", "a/db", "9090", true), // 10.0.2.1
            ("b/web", "a/db", "9090", false),   // 10.0.2.2 is excepted
            ("10.0.2.1", "a/db", "9090", true),
            ("10.0.2.1", "10.0.1.2", "9090", true), // by IP on both sides
            ("10.0.1.1", "10.0.1.2", "9090", false),
        ],
    );
    // The IP of a pod is that pod: its own egress policies apply.
    let e2 = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: b}
spec: {podSelector: {matchLabels: {app: client}}, policyTypes: [Egress]}
"#,
    );
    check(&e2, &[("10.0.2.1", "a/web", "8080", false), ("10.0.2.2", "a/web", "8080", true)]);
}

#[test]
fn external_source_gets_no_egress_policy_and_selectors_do_not_match_it() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {}}]}]
"#,
    );
    let ex = check(&e, &[("198.51.100.7", "a/web", "8080", false), ("b/client", "a/web", "8080", true)]);
    assert!(ex[0].egress.note.as_deref().unwrap().contains("outside the cluster"));
    assert!(ex[0].ingress.rejections[0].reason.contains("not a pod's IP"));
}

#[test]
fn host_network_pods_are_not_subject_to_policies() {
    let e = engine(&format!(
        "{PODS}\n---\n{}",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: node-agent, namespace: a, labels: {app: web}}
spec: {hostNetwork: true, containers: [{name: c}]}
status: {podIP: 10.0.9.9}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: web}}}]}]
"#
    ));
    let ex = check(
        &e,
        &[
            // The hostNetwork pod is not isolated in either direction...
            ("b/client", "a/node-agent", "22", true),
            ("a/node-agent", "203.0.113.1", "443", true),
            // ...and pod selectors do not match it as a peer.
            ("a/node-agent", "a/db", "9090", false),
            ("a/web", "a/db", "9090", false), // a/web's egress is isolated with no egress rules
        ],
    );
    assert!(ex[0].ingress.note.as_deref().unwrap().contains("hostNetwork"));
    assert!(ex[2].ingress.rejections[0].reason.contains("hostNetwork"), "{}", ex[2].render());
}

#[test]
fn traffic_to_itself_is_always_allowed() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
"#,
    );
    let ex = check(
        &e,
        &[("a/web", "a/web", "8080", true), ("a/web", "10.0.1.1", "8080", true), ("a/web", "a/db", "9090", false)],
    );
    assert!(ex[0].note.as_deref().unwrap().contains("same pod"));
}

#[test]
fn ipv6_ip_blocks_and_dual_stack_pods() {
    let e = engine(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: dual, namespace: x, labels: {app: dual}}
spec: {containers: [{name: c}]}
status: {podIP: 10.1.0.1, podIPs: [{ip: 10.1.0.1}, {ip: "fd00::1"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: x, labels: {app: server}}
spec: {containers: [{name: c}]}
status: {podIP: "fd00::2"}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{ipBlock: {cidr: "fd00::/64", except: ["fd00::1:0/112"]}}]}]
"#,
    );
    check(
        &e,
        &[
            ("fd00::1", "x/server", "80", true),    // the dual-stack pod over IPv6
            ("10.1.0.1", "x/server", "80", false),  // the same pod over IPv4: not in the v6 block
            ("x/dual", "x/server", "80", false),    // by name: its primary IP (IPv4) is used
            ("fd00::1:5", "x/server", "80", false), // external, in the except
            ("fd00::2:5", "x/server", "80", true),  // external, allowed
            ("2001:db8::1", "x/server", "80", false),
        ],
    );
}

#[test]
fn match_expressions() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: a}
spec:
  podSelector: {matchExpressions: [{key: app, operator: In, values: [web, db]}]}
  ingress:
  - from:
    - namespaceSelector: {matchExpressions: [{key: team, operator: NotIn, values: [a]}]}
      podSelector: {matchExpressions: [{key: app, operator: Exists}, {key: debug, operator: DoesNotExist}]}
"#,
    );
    check(&e, &[("b/client", "a/web", "80", true), ("b/web", "a/db", "80", true), ("a/web", "a/db", "80", false)]);
}

#[test]
fn implicit_namespaces_carry_the_name_label() {
    let e = engine(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: one, labels: {app: a}}
spec: {containers: [{name: c}]}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: two, labels: {app: b}}
spec: {containers: [{name: c}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: two}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: one}}}]}]
"#,
    );
    check(&e, &[("one/a", "two/b", "80", true)]);
}

/// Go's `net` package, and so Kubernetes, treats an IPv4-mapped IPv6 address (`::ffff:10.0.1.1`) as the IPv4
/// address: it is the pod with 10.0.1.1, and `::ffff:8.8.8.8` is inside `0.0.0.0/0`, not inside `::/0`.
#[test]
fn ipv4_mapped_ipv6_addresses_are_their_ipv4_address() {
    let e = with(
        r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-out, namespace: a}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}}], ports: [{port: 443}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: db-in, namespace: a}
spec:
  podSelector: {matchLabels: {app: db}}
  ingress: [{from: [{ipBlock: {cidr: 10.0.2.0/24}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: client-out-v6, namespace: b}
spec:
  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{to: [{ipBlock: {cidr: "::/0"}}]}]
"#,
    );
    check(
        &e,
        &[
            ("a/web", "::ffff:8.8.8.8", "443", true),              // inside 0.0.0.0/0
            ("a/web", "::ffff:8.8.8.8", "80", false),              // ...on 443 only
            ("a/web", "::ffff:10.9.9.9", "443", false),            // in the except 10.0.0.0/8
            ("::ffff:10.0.2.2", "a/db", "9090", true),             // b/web, in 10.0.2.0/24
            ("::ffff:10.0.1.1", "::ffff:10.0.1.2", "9090", false), // a/web -> a/db: 10.0.1.1 is not in the block
            ("::ffff:10.0.2.1", "::ffff:8.8.8.8", "80", false),    // b/client's ::/0 does not contain it
            ("b/client", "2001:db8::1", "80", true),
        ],
    );
    // The mapped address resolves to the pod, with its canonical IPv4 address.
    let web = e.cluster().find_pod("a", "web").unwrap();
    let ep = e.parse_endpoint("::ffff:10.0.1.1", "default").unwrap();
    assert_eq!(ep, Endpoint::Pod { pod: web, ip: Some("10.0.1.1".parse().unwrap()) });
    assert_eq!(e.endpoint_for_ip("::ffff:10.0.1.1".parse().unwrap()), ep);
    // Endpoints built by callers with a raw mapped address: the engine, explain and the reference agree.
    let me = Endpoint::Pod { pod: web, ip: None };
    for (x, port, want) in
        [("::ffff:8.8.8.8", 443, true), ("::ffff:10.9.9.9", 443, false), ("::ffff:8.8.8.8", 80, false)]
    {
        let x = Endpoint::External(x.parse().unwrap());
        assert_eq!(e.allowed(&me, &x, Protocol::Tcp, port), want, "{x:?} {port}");
        assert_eq!(reference::allowed(e.cluster(), &me, &x, Protocol::Tcp, port), want, "{x:?} {port}");
        assert_eq!(e.explain(&me, &x, Protocol::Tcp, port).verdict, Verdict::from_bool(want), "{x:?} {port}");
    }
    let mapped_web = Endpoint::Pod { pod: web, ip: Some("::ffff:10.0.1.1".parse().unwrap()) };
    let db = Endpoint::Pod { pod: e.cluster().find_pod("a", "db").unwrap(), ip: None };
    assert!(!e.allowed(&mapped_web, &db, Protocol::Tcp, 9090));
    assert!(!reference::allowed(e.cluster(), &mapped_web, &db, Protocol::Tcp, 9090));
}

/// A zoned IPv6 address (`fe80::1%eth0`), or a string that looks like an address and is not a valid one, is
/// an address error, not "unknown pod".
#[test]
fn zoned_and_malformed_addresses_are_address_errors() {
    let e = with("");
    let err = e.parse_endpoint("fe80::1%eth0", "default").unwrap_err();
    assert!(
        err.contains("zoned IPv6 addresses (`%eth0`) are not supported: give the address without the zone"),
        "{err}"
    );
    for s in ["10.0.0.256", "10.0.0.1:8080", "fe80::zz", "1.2.3", "::ffff:10.0.0.300"] {
        let err = e.parse_endpoint(s, "default").unwrap_err();
        assert!(err.contains("is not a valid IP address") && !err.contains("unknown pod"), "{s}: {err}");
    }
    let err = e.parse_endpoint("10.0.0.0/8", "default").unwrap_err();
    assert!(err.contains("is a CIDR") && !err.contains("unknown pod"), "{err}");
    assert!(e.parse_endpoint("a/nope", "default").unwrap_err().contains("unknown pod `a/nope`"));
    // A pod may be named like an (invalid) IPv4 address: it is still that pod.
    let e = engine(&format!(
        "{PODS}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: 10.0.0.256, namespace: default}}\nspec: {{containers: [{{name: c}}]}}\n"
    ));
    let pod = e.cluster().find_pod("default", "10.0.0.256").unwrap();
    assert_eq!(e.parse_endpoint("10.0.0.256", "default").unwrap(), Endpoint::Pod { pod, ip: None });
}
