//! The Cilium frontend (`load/cilium.rs`): how CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy objects
//! become tiered policies, what is validated, and what is refused as not modelled yet (by field path).

use netpol_core::compile::{Endpoint, Engine, FlowInfo};
use netpol_core::l7::{HttpRequest, Request};
use netpol_core::load::{load_str, Severity};
use netpol_core::model::PolicyKind;
use netpol_core::portset::Protocol;

const CLUSTER: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {team: a}}
---
apiVersion: v1
kind: Namespace
metadata: {name: ops}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: shop, labels: {app: web}}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: ops, labels: {app: web}}
status: {podIP: 10.0.0.3}
"#;

fn load(policies: &str) -> netpol_core::load::Loaded {
    load_str("cilium.yaml", &format!("{CLUSTER}---\n{policies}"))
}

fn errors(l: &netpol_core::load::Loaded) -> Vec<String> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect()
}

fn allowed(e: &Engine, from: &str, to: &str, port: u16) -> bool {
    let src = e.parse_endpoint(from, "default").unwrap();
    let dst = e.parse_endpoint(to, "default").unwrap();
    e.allowed(&src, &dst, Protocol::Tcp, port)
}

#[test]
fn one_object_becomes_a_deny_part_an_isolating_part_and_a_non_isolating_part() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  enableDefaultDeny: {egress: false}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
  ingressDeny:
  - fromEndpoints: [{matchLabels: {app: web, k8s:io.kubernetes.pod.namespace: ops}}]
  egress:
  - toEndpoints: [{}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let c = &l.cluster;
    let parts: Vec<_> = c.policies.iter().filter(|p| p.kind == PolicyKind::CiliumNetworkPolicy).collect();
    assert_eq!(parts.len(), 3, "deny, isolating allow, non-isolating allow");
    let tier_name = |p: &netpol_core::model::Policy| c.tiers[p.tier.index()].name.clone();
    let names: Vec<String> = parts.iter().map(|p| tier_name(p)).collect();
    assert_eq!(names, ["CiliumDeny", "NetworkPolicy", "CiliumAllow"]);
    assert!(parts.iter().all(|p| p.name == "api"));
    // The isolating part holds the ingress rules; the egress allow isolates nobody.
    assert!(parts[1].affects_ingress && !parts[1].affects_egress);
    assert!(!parts[2].affects_ingress && parts[2].affects_egress);
    let e = Engine::new(l.cluster);
    assert!(allowed(&e, "shop/web", "shop/api", 80));
    assert!(!allowed(&e, "ops/web", "shop/api", 80), "the deny names ops explicitly, and wins");
    assert!(!allowed(&e, "10.9.9.9", "shop/api", 80), "ingress is default deny");
    assert!(allowed(&e, "shop/api", "10.9.9.9", 443), "egress is not default deny (enableDefaultDeny)");
}

#[test]
fn a_namespaced_peer_is_limited_to_its_namespace_unless_it_names_one() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "80", protocol: TCP}]}]
  - fromEndpoints: [{matchLabels: {"io.kubernetes.pod.namespace": ops}}]
    toPorts: [{ports: [{port: "http"}]}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    assert!(allowed(&e, "shop/web", "shop/api", 80));
    assert!(!allowed(&e, "ops/web", "shop/api", 80), "app=web of another namespace");
    assert!(allowed(&e, "ops/web", "shop/api", 8080), "the named port, from the namespace the peer names");
    assert!(!allowed(&e, "shop/web", "shop/api", 8080));
}

#[test]
fn what_is_not_modelled_yet_is_an_error_naming_the_field_and_the_policy_is_not_loaded() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: fqdn, namespace: shop}
spec:
  endpointSelector: {}
  egress:
  - toEndpoints: [{matchExpressions: [{key: "reserved:host", operator: DoesNotExist}]}]
  - toEndpoints: [{}]
    authentication: {mode: required}
"#,
    );
    let errs = errors(&l);
    for field in ["spec.egress[0].toEndpoints[0].matchExpressions[0].operator", "spec.egress[1].authentication"] {
        assert!(errs.iter().any(|e| e.contains(field)), "no error at {field}: {errs:#?}");
    }
    assert!(l.cluster.policies.iter().all(|p| !p.kind.is_cilium()), "the policy is not loaded");
}

/// Host policies, node selectors and cloud groups load (`load/cilium_nodes.rs`); what upstream refuses in them is
/// an error naming the field: a namespaced policy with `nodeSelector` (`pkg/k8s/apis/cilium.io/v2/cnp_types.go`,
/// `Parse`), L7 rules on host ingress and HTTP rules on host egress (`pkg/policy/api/rule_validation.go`).
#[test]
fn host_policies_node_selectors_and_groups_load_and_what_upstream_refuses_is_an_error() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: hosts}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  ingress: [{fromNodes: [{}], toPorts: [{ports: [{port: "22", protocol: TCP}]}]}]
  egress:
  - toEntities: [world]
    toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchPattern: "*"}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: groups, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  egress:
  - toGroups: [{aws: {securityGroupsIds: [sg-1]}}]
  - toNodes: [{matchLabels: {role: edge}}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let warned: Vec<String> =
        l.diagnostics.iter().filter(|d| d.severity == Severity::Warning).map(|d| d.to_string()).collect();
    assert!(
        warned.iter().any(|w| w.contains("spec.egress[0].toGroups") && w.contains("matches nothing")),
        "{warned:#?}"
    );
    assert!(
        warned.iter().any(|w| w.contains("spec.egress[1].toNodes[0]") && w.contains("no Node of the input matches")),
        "{warned:#?}"
    );
    let hosts: Vec<_> = l.cluster.policies.iter().filter(|p| p.host.cilium_host).collect();
    assert!(!hosts.is_empty() && hosts.iter().all(|p| p.kind == PolicyKind::CiliumClusterwideNetworkPolicy));

    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: namespaced-host, namespace: shop}
spec:
  nodeSelector: {}
  ingress: [{fromEntities: [world]}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-http}
spec:
  nodeSelector: {}
  egress:
  - toEntities: [world]
    toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: host-l7-ingress}
spec:
  nodeSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{method: GET}]}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: both}
spec:
  nodeSelector: {}
  endpointSelector: {}
  ingress: [{}]
"#,
    );
    let errs = errors(&l);
    for (object, field) in [
        ("CiliumNetworkPolicy shop/namespaced-host", "spec.nodeSelector"),
        ("CiliumClusterwideNetworkPolicy host-http", "spec.egress[0].toPorts[0].rules"),
        ("CiliumClusterwideNetworkPolicy host-l7-ingress", "spec.ingress[0].toPorts[0].rules"),
        ("CiliumClusterwideNetworkPolicy both", "spec.nodeSelector"),
    ] {
        assert!(
            errs.iter().any(|e| e.contains(object) && e.contains(field)),
            "no error at {object} {field}: {errs:#?}"
        );
    }
    assert!(l.cluster.policies.iter().all(|p| !p.kind.is_cilium()), "none is loaded");
}

#[test]
fn validation_names_the_field() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromCIDRSet: [{cidr: 10.0.0.0/8, except: [192.168.0.0/16]}]
    toPorts: [{ports: [{port: "70000"}, {port: "80", endPort: 79}, {port: "80", protocol: TCPX}]}]
  - fromEntities: [everywhere]
"#,
    );
    let errs = errors(&l).join("\n");
    for want in [
        "spec.ingress[0].fromCIDRSet[0].except[0]",
        "spec.ingress[0].toPorts[0].ports[0].port",
        "spec.ingress[0].toPorts[0].ports[1].endPort",
        "spec.ingress[0].toPorts[0].ports[2].protocol",
        "spec.ingress[1].fromEntities[0]",
    ] {
        assert!(errs.contains(want), "no error at {want}:\n{errs}");
    }
    // An unknown field refuses the object as kubectl's strict validation does, with a suggestion.
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: typo, namespace: shop}
spec:
  endpointSelector: {}
  ingress: [{fromEndpoint: [{}]}]
"#,
    );
    let errs = errors(&l).join("\n");
    assert!(errs.contains("spec.ingress[0].fromEndpoint") && errs.contains("did you mean `fromEndpoints`"), "{errs}");
    assert!(l.cluster.policies.iter().all(|p| !p.kind.is_cilium()));
}

#[test]
fn l7_rules_filter_requests_and_the_connection_is_judged_at_l3_l4() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: l7, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: web}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}], rules: {http: [{method: GET, path: "/public"}]}}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    // The connection: accepted (and handed to the proxy).
    assert!(allowed(&e, "shop/web", "shop/api", 8080));
    assert!(!allowed(&e, "shop/web", "shop/api", 80));
    let (web, api) = (e.parse_endpoint("shop/web", "shop").unwrap(), e.parse_endpoint("shop/api", "shop").unwrap());
    let http = |m: &str, p: &str| Request::Http(HttpRequest::new(m, p));
    let ask = |req: &Request| {
        e.allowed_flow(&web, &api, FlowInfo { dst_name: None, request: Some(req) }, Protocol::Tcp, 8080)
    };
    assert!(ask(&http("GET", "/public")));
    assert!(!ask(&http("GET", "/public/x")), "anchored: the whole path must match");
    assert!(!ask(&http("POST", "/public")));
    assert!(!ask(&Request::Dns("example.com".into())), "an HTTP proxy refuses a DNS query");
    // explain names the rule that lets the request through, and the one that refuses it.
    let ok = e.explain_flow(
        &web,
        &api,
        FlowInfo { dst_name: None, request: Some(&http("GET", "/public")) },
        Protocol::Tcp,
        8080,
    );
    let text = ok.render();
    assert!(text.contains("HTTP GET /public allowed by its L7 rule 0"), "{text}");
    assert!(text.contains("spec.ingress[0].toPorts[0]"), "{text}");
    let no = e.explain_flow(
        &web,
        &api,
        FlowInfo { dst_name: None, request: Some(&http("POST", "/public")) },
        Protocol::Tcp,
        8080,
    );
    let text = no.render();
    assert!(text.starts_with("DENY") && text.contains("its L7 rules refuse HTTP POST /public"), "{text}");
    // Without a request: the connection, and the rules that will filter its requests.
    let conn = e.explain(&web, &api, Protocol::Tcp, 8080).render();
    assert!(conn.contains("requests on it are then filtered by HTTP method `GET` path `/public`"), "{conn}");
}

#[test]
fn l7_rules_are_checked_as_the_agent_checks_them() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad-l7, namespace: shop}
spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80"}], rules: {http: [{}]}}]
  - toPorts: [{ports: [{port: "53", protocol: UDP}], rules: {dns: [{matchName: x.io}]}}]
  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{path: "(("}]}}]
  - toPorts: [{ports: [{port: "0", protocol: TCP}], rules: {http: [{}]}}]
  egress:
  - toPorts: [{ports: [{port: "53", endPort: 60, protocol: UDP}], rules: {dns: [{matchName: x.io}]}}]
  - toPorts: [{ports: [{port: "53"}], rules: {dns: [{matchName: x.io, matchPattern: "*.io"}]}}]
  - toPorts: [{ports: [{port: "80", protocol: TCP}], rules: {http: [{}], dns: [{matchName: x.io}]}}]
  - toFQDNs: [{matchPattern: "a b"}]
"#,
    );
    let errs = errors(&l).join("\n");
    for want in [
        "spec.ingress[0].toPorts[0].ports[0].protocol: L7 rules can only apply to TCP (not ANY)",
        "spec.ingress[1].toPorts[0].rules.dns: DNS rules are not allowed on ingress",
        "spec.ingress[2].toPorts[0].rules.http[0]: invalid regular expression",
        "spec.ingress[3].toPorts[0].ports[0].port: L7 rules can not be used when a port is 0",
        "spec.egress[0].toPorts[0].ports[0].endPort: DNS rules do not support port ranges",
        "spec.egress[1].toPorts[0].rules.dns[0]: only one of matchName or matchPattern",
        "spec.egress[2].toPorts[0].rules: multiple L7 protocol rule types",
        "spec.egress[3].toFQDNs[0]",
    ] {
        assert!(errs.contains(want), "no error `{want}`:\n{errs}");
    }
    // Empty lists are no L7 rules (the entry is an L4 rule); Kafka rules load with a warning.
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: empty, namespace: shop}
spec:
  endpointSelector: {}
  ingress:
  - toPorts: [{ports: [{port: "80", protocol: UDP}], rules: {http: []}}]
  - toPorts: [{ports: [{port: "9092", protocol: TCP}], rules: {kafka: [{topic: t}]}}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let warned = l
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Warning && d.field.as_deref() == Some("spec.ingress[1].toPorts[0].rules"));
    assert!(warned, "{:#?}", l.diagnostics);
    let pol = l.cluster.policies.iter().find(|p| p.kind.is_cilium()).unwrap();
    assert!(pol.ingress[0].l7.is_none());
    assert_eq!(pol.ingress[1].l7.as_ref().and_then(|l| l.other.clone()).as_deref(), Some("Kafka"));
}

#[test]
fn to_fqdns_selects_an_address_only_when_the_sources_dns_goes_through_a_rule_that_allows_the_name() {
    let yaml = |dns: &str| {
        format!(
            r#"
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: shop, labels: {{app: client}}}}
spec: {{containers: [{{name: c}}]}}
status: {{podIP: 10.0.1.10}}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {{name: fqdn, namespace: shop}}
spec:
  endpointSelector: {{matchLabels: {{app: client}}}}
  egress:
  - toFQDNs: [{{matchPattern: "*.example.com"}}]
    toPorts: [{{ports: [{{port: "443", protocol: TCP}}]}}]
{dns}"#
        )
    };
    let with_dns = "  - toEntities: [all]\n    toPorts: [{ports: [{port: \"53\", protocol: ANY}], rules: {dns: [{matchPattern: \"*.example.com\"}]}}]\n";
    for (dns, learnt) in [(with_dns, true), ("", false)] {
        let l = load(&yaml(dns));
        assert_eq!(errors(&l), Vec::<String>::new());
        let e = Engine::new(l.cluster);
        let src = e.parse_endpoint("shop/client", "shop").unwrap();
        let dst = Endpoint::External("192.0.2.7".parse().unwrap());
        let at = |name: Option<&str>| {
            e.allowed_flow(&src, &dst, FlowInfo { dst_name: name, request: None }, Protocol::Tcp, 443)
        };
        assert_eq!(at(Some("www.example.com")), learnt, "dns rule present: {learnt}");
        assert!(!at(Some("www.other.org")));
        assert!(!at(None), "an address alone is not a name");
        let text = e.explain_named(&src, &dst, Some("www.example.com"), Protocol::Tcp, 443).render();
        if !learnt {
            assert!(text.contains("Cilium never learns its addresses"), "{text}");
        }
        // The DNS query itself is judged by the DNS rule.
        if learnt {
            let q = |n: &str| Request::Dns(n.to_string());
            let dns_server = Endpoint::External("10.96.0.10".parse().unwrap());
            let ask = |r: &Request| {
                e.allowed_flow(&src, &dns_server, FlowInfo { dst_name: None, request: Some(r) }, Protocol::Udp, 53)
            };
            assert!(ask(&q("api.example.com")));
            assert!(!ask(&q("api.other.org")));
        }
    }
}

#[test]
fn cidr_peers_never_select_pods_and_the_explanation_names_the_deny_field() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: outside}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - toCIDR: [10.0.0.0/8]
  egressDeny:
  - toCIDRSet: [{cidr: 10.9.0.0/16, except: [10.9.9.0/24]}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    assert!(!allowed(&e, "shop/web", "shop/api", 80), "a pod address is not selected by a CIDR");
    assert!(allowed(&e, "shop/web", "10.1.2.3", 80));
    assert!(allowed(&e, "shop/web", "10.9.9.9", 80), "in the except of the deny");
    assert!(!allowed(&e, "ops/web", "10.9.1.1", 80));
    let src = e.parse_endpoint("ops/web", "default").unwrap();
    let dst = e.parse_endpoint("10.9.1.1", "default").unwrap();
    let ex = e.explain(&src, &dst, Protocol::Tcp, 80);
    let text = ex.render();
    assert!(text.contains("egressDeny[0]"), "{text}");
}

#[test]
fn a_watch_event_on_a_cluster_with_cilium_policies_gives_what_a_fresh_load_gives() {
    let policy = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: batch}}]
"#;
    let new_pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: batch, namespace: shop, labels: {app: batch}}\n\
                   status: {podIP: 10.0.0.9}\n";
    let before = load(policy);
    let after = load(&format!("{policy}---\n{new_pod}"));
    assert_eq!(errors(&after), Vec::<String>::new());
    let pod = after.cluster.pods.iter().find(|p| p.name == "batch").unwrap().clone();
    let mut e = Engine::new(before.cluster);
    let stats = e.update(vec![netpol_core::update::Change::PutPod { namespace: "shop".into(), pod }]);
    assert!(stats.recompiled, "Cilium's selectors see every endpoint's labels: recompiled");
    let fresh = Engine::new(after.cluster);
    for (from, to) in [("shop/batch", "shop/api"), ("shop/web", "shop/api"), ("shop/api", "shop/batch")] {
        assert_eq!(allowed(&e, from, to, 80), allowed(&fresh, from, to, 80), "{from} -> {to}");
    }
    assert!(allowed(&e, "shop/batch", "shop/api", 80));
}

#[test]
fn a_pods_own_node_gets_in_whatever_the_policies_say_and_explain_says_so() {
    let nodes = "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nstatus: {addresses: [{type: InternalIP, address: 10.1.0.1}]}\n\
                 ---\napiVersion: v1\nkind: Node\nmetadata: {name: n2}\nstatus: {addresses: [{type: InternalIP, address: 10.1.0.2}]}\n\
                 ---\napiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\n\
                 spec: {nodeName: n1}\nstatus: {podIP: 10.0.0.5}\n";
    let policy = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: db, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: db}}
  ingress: [{fromEndpoints: [{matchLabels: {app: api}}]}]
"#;
    let l = load(&format!("{nodes}---\n{policy}"));
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    assert!(allowed(&e, "10.1.0.1", "shop/db", 5432), "its own node");
    assert!(!allowed(&e, "10.1.0.2", "shop/db", 5432), "another node");
    assert!(!allowed(&e, "shop/web", "shop/db", 5432));
    let src = e.parse_endpoint("10.1.0.1", "default").unwrap();
    let dst = e.parse_endpoint("shop/db", "default").unwrap();
    let ex = e.explain(&src, &dst, Protocol::Tcp, 5432);
    assert_eq!(ex.ingress.decided_by, netpol_core::verdict::DecidedBy::OwnNode);
    let text = ex.render();
    assert!(text.contains("its own node n1") && text.contains("its policies alone would deny it"), "{text}");
    // Without Cilium policies, a node is an address like any other (NetworkPolicy v1 says nothing of it).
    let l = load(&format!("{nodes}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: d, namespace: shop}}\nspec: {{podSelector: {{}}}}\n"));
    let e = Engine::new(l.cluster);
    assert!(!allowed(&e, "10.1.0.1", "shop/db", 5432));
}

#[test]
fn icmp_rules_by_number_and_name_per_family() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: ping, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: web}}
  egress:
  - icmps: [{fields: [{type: 8}, {type: EchoRequest, family: IPv6}, {type: "TimeExceeded"}]}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: shop}
spec:
  endpointSelector: {}
  egress:
  - icmps: [{fields: [{type: Ping}, {type: 8, family: IPv5}, {type: 300}]}]
"#,
    );
    let errs = errors(&l).join("\n");
    for want in ["spec.egress[0].icmps[0].fields[0].type", "fields[1].family", "fields[2].type"] {
        assert!(errs.contains(want), "no error at {want}:\n{errs}");
    }
    let e = Engine::new(l.cluster);
    let src = e.parse_endpoint("shop/web", "default").unwrap();
    let dst = e.parse_endpoint("10.9.9.9", "default").unwrap();
    let v6 = e.parse_endpoint("fd00::9", "default").unwrap();
    let icmp = |t: u8| netpol_core::portset::icmp_port(t, 0);
    assert!(e.allowed(&src, &dst, Protocol::Icmp, icmp(8)), "echo request");
    assert!(e.allowed(&src, &dst, Protocol::Icmp, netpol_core::portset::icmp_port(11, 1)), "time exceeded, any code");
    assert!(!e.allowed(&src, &dst, Protocol::Icmp, icmp(13)), "timestamp is not listed");
    assert!(!e.allowed(&src, &dst, Protocol::Tcp, 80), "an ICMP-only rule allows no TCP");
    assert!(e.allowed(&src, &v6, Protocol::Icmpv6, icmp(128)), "ICMPv6 echo request by name");
    assert!(!e.allowed(&src, &v6, Protocol::Icmpv6, icmp(8)), "type 8 of ICMPv6 is not listed");
}

#[test]
fn label_requirements_deny_every_peer_without_the_labels_with_a_warning() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromRequires: [{matchLabels: {app: web}}]
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: open}
spec:
  endpointSelector: {matchLabels: {app: api}}
  ingress:
  - fromEntities: [all]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let warned = l
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Warning && d.field.as_deref() == Some("spec.ingress[0].fromRequires"));
    assert!(warned, "{:#?}", l.diagnostics);
    let e = Engine::new(l.cluster);
    assert!(allowed(&e, "shop/web", "shop/api", 80), "allowed by the clusterwide policy, and meets the requirement");
    assert!(!allowed(&e, "ops/web", "shop/api", 80), "the requirement is limited to the policy's namespace");
    assert!(!allowed(&e, "10.9.9.9", "shop/api", 80), "an outside address has no labels");
    let src = e.parse_endpoint("ops/web", "default").unwrap();
    let dst = e.parse_endpoint("shop/api", "default").unwrap();
    let text = e.explain(&src, &dst, Protocol::Tcp, 80).render();
    assert!(text.contains("spec.ingress[0].fromRequires[0]"), "{text}");
}

#[test]
fn with_cilium_policies_networkpolicy_selectors_see_ciliums_labels() {
    let np = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: api, namespace: shop}
spec:
  podSelector: {matchLabels: {app: api}}
  ingress:
  - from: [{podSelector: {matchLabels: {io.cilium.k8s.policy.serviceaccount: default}}}]
"#;
    let cnp = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: other, namespace: ops}
spec:
  endpointSelector: {}
  egress: [{toEntities: [all]}]
"#;
    // Without Cilium policies the key is an ordinary label no pod has: nothing is allowed in.
    let e = Engine::new(load(np).cluster);
    assert!(!allowed(&e, "shop/web", "shop/api", 80));
    // With them, the NetworkPolicy is Cilium's: its selector sees the pod's service account label.
    let l = load(&format!("{np}---\n{cnp}"));
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    assert!(allowed(&e, "shop/web", "shop/api", 80));
    assert!(!allowed(&e, "ops/web", "shop/api", 80), "a v1 podSelector peer stays in the policy's namespace");
}

#[test]
fn cidr_groups_are_selected_by_name_or_labels_and_never_select_pods() {
    let l = load(
        r#"
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.1.10}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db}}
spec: {containers: [{name: c}]}
status: {podIP: 10.0.9.9}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumCIDRGroup
metadata: {name: partners, labels: {kind: partner}}
spec: {externalCIDRs: [192.0.2.0/24, 10.0.9.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: vendors, labels: {kind: vendor}}
spec: {externalCIDRs: [198.51.100.0/24]}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: out, namespace: shop}
spec:
  endpointSelector: {matchLabels: {app: client}}
  egress:
  - toCIDRSet: [{cidrGroupRef: partners, except: [192.0.2.128/25]}]
    toPorts: [{ports: [{port: "443", protocol: TCP}]}]
  - toCIDRSet: [{cidrGroupSelector: {matchLabels: {kind: vendor}}}]
    toPorts: [{ports: [{port: "8443", protocol: TCP}]}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let warned = l
        .diagnostics
        .iter()
        .any(|d| d.severity == Severity::Warning && d.field.as_deref() == Some("spec.egress[0].toCIDRSet[0].except"));
    assert!(warned, "except with a group is warned: {:#?}", l.diagnostics);
    let e = Engine::new(l.cluster);
    let src = e.parse_endpoint("shop/client", "shop").unwrap();
    let at = |ip: &str, port: u16| {
        let dst = e.parse_endpoint(ip, "shop").unwrap();
        let fast = e.allowed(&src, &dst, Protocol::Tcp, port);
        assert_eq!(fast, netpol_core::reference::allowed(e.cluster(), &src, &dst, Protocol::Tcp, port), "{ip} {port}");
        fast
    };
    assert!(at("192.0.2.7", 443), "in the group by name");
    assert!(at("192.0.2.200", 443), "except is not applied with a group");
    assert!(!at("192.0.2.7", 8443));
    assert!(at("198.51.100.1", 8443), "in a group the selector selects");
    assert!(!at("198.51.100.1", 443));
    assert!(!at("203.0.113.1", 443), "in no group");
    assert!(!at("10.0.9.9", 443), "a pod's address in a group: pods are selected by identity only");
    let text = e.explain(&src, &e.parse_endpoint("192.0.2.7", "shop").unwrap(), Protocol::Tcp, 443).render();
    assert!(text.starts_with("ALLOW") && text.contains("spec.egress[0]"), "{text}");
    // Errors by field: a bad CIDR, a missing spec, and a rule with both a CIDR and a group.
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: bad}
spec: {externalCIDRs: [nope]}
---
apiVersion: cilium.io/v2
kind: CiliumCIDRGroup
metadata: {name: empty}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: both, namespace: shop}
spec:
  endpointSelector: {}
  egress: [{toCIDRSet: [{cidr: 10.0.0.0/8, cidrGroupRef: bad}]}]
"#,
    );
    let errs = errors(&l).join("\n");
    for want in
        ["spec.externalCIDRs[0]", "CiliumCIDRGroup empty: spec", "spec.egress[0].toCIDRSet[0]: more than one of"]
    {
        assert!(errs.contains(want), "no error `{want}`:\n{errs}");
    }
}

#[test]
fn every_policy_of_a_cilium_object_keeps_the_object_as_written() {
    let cnp = "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: api, namespace: shop}\nspec:\n  \
               endpointSelector: {matchLabels: {app: api}}\n  ingress: [{fromEndpoints: [{matchLabels: {app: web}}]}]\n  \
               ingressDeny: [{toPorts: [{ports: [{port: \"9090\"}]}]}]\n";
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: shop}\n\
              spec: {podSelector: {}}\n";
    // As YAML and as JSON (a List's item is read from its raw text).
    let json = r#"{"kind":"List","apiVersion":"v1","items":[{"apiVersion":"cilium.io/v2","kind":"CiliumNetworkPolicy",
        "metadata":{"name":"api","namespace":"shop"},"spec":{"endpointSelector":{"matchLabels":{"app":"api"}},
        "ingress":[{"fromEndpoints":[{"matchLabels":{"app":"web"}}]}],"ingressDeny":[{"toPorts":[{"ports":[{"port":"9090"}]}]}]}}]}"#;
    // A YAML document is kept as its text, comments included.
    for (file, text) in [("c.yaml", format!("{CLUSTER}---\n{cnp}# reviewed\n---\n{np}")), ("c.json", json.to_string())]
    {
        let l = load_str(file, &text);
        assert!(errors(&l).is_empty(), "{:?}", errors(&l));
        let parts: Vec<_> = l.cluster.policies.iter().filter(|p| p.kind.is_cilium()).collect();
        assert_eq!(parts.len(), 2, "{file}: the deny part and the allow part");
        let want: serde_yaml_ng::Value = serde_yaml_ng::from_str(cnp).unwrap();
        for p in &parts {
            let text = p.manifest.as_deref().unwrap_or_else(|| panic!("{file}: no manifest"));
            assert_eq!(serde_yaml_ng::from_str::<serde_yaml_ng::Value>(text).unwrap(), want, "{file}: {text}");
            assert!(text.starts_with("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\n"), "{text}");
            assert_eq!(text.contains("# reviewed"), file == "c.yaml", "{text}");
        }
        assert!(std::sync::Arc::ptr_eq(parts[0].manifest.as_ref().unwrap(), parts[1].manifest.as_ref().unwrap()));
        assert!(l.cluster.policies.iter().filter(|p| !p.kind.is_cilium()).all(|p| p.manifest.is_none()));
    }
}

/// A host policy is checked at the node (`host.rs`): `explain` shows the host's check with the deciding rule by its
/// field path, a node's own pods meet it (cilium-cli's `host-firewall-ingress`), a node no host policy selects is
/// not policed, and `host`/`remote-node` in a host policy are relative to the node.
#[test]
fn host_policies_are_checked_at_the_node_and_explained_by_field() {
    let l = load_str(
        "hosts.yaml",
        r#"
apiVersion: v1
kind: Node
metadata: {name: n1, labels: {role: edge}}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}]}
---
apiVersion: v1
kind: Node
metadata: {name: n2}
status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: shop, labels: {app: api}}
spec: {nodeName: n1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: agent, namespace: shop, labels: {app: agent}}
spec: {nodeName: n1, hostNetwork: true}
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata: {name: edge}
spec:
  nodeSelector: {matchLabels: {role: edge}}
  ingress:
  - fromEntities: [remote-node]
  - fromEndpoints: [{matchLabels: {app: web}}]
  ingressDeny:
  - fromEntities: [world]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
  egress:
  - toEntities: [remote-node]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let e = Engine::new(l.cluster);
    let check = |from: &str, to: &str, port: u16| {
        let src = e.parse_endpoint(from, "shop").unwrap();
        let dst = e.parse_endpoint(to, "shop").unwrap();
        let got = e.allowed(&src, &dst, Protocol::Tcp, port);
        assert_eq!(
            got,
            netpol_core::reference::allowed(e.cluster(), &src, &dst, Protocol::Tcp, port),
            "{from} -> {to}"
        );
        (got, e.explain(&src, &dst, Protocol::Tcp, port).render())
    };
    let (ok, text) = check("10.9.9.9", "10.1.0.1", 22);
    assert!(!ok);
    assert!(text.contains("host of node n1 (Cilium host policies), traffic to the host: DENIED"), "{text}");
    assert!(text.contains("spec.ingressDeny[0]"), "{text}");
    let (ok, text) = check("10.1.0.2", "10.1.0.1", 80);
    assert!(ok, "remote-node: the other node\n{text}");
    assert!(text.contains("spec.ingress[0]"), "{text}");
    assert!(!check("shop/api", "10.1.0.1", 80).0, "the node's own pod meets its host policy");
    assert!(!check("shop/api", "shop/agent", 80).0, "a hostNetwork pod is in its node's host namespace");
    assert!(check("10.1.0.1", "shop/api", 80).1.contains("remote-node"), "its own pod: egress allows remote-node only");
    assert!(!check("10.1.0.1", "shop/api", 80).0);
    assert!(check("10.1.0.1", "10.1.0.2", 80).0, "egress to the other node (remote-node)");
    assert!(check("10.9.9.9", "10.1.0.2", 22).0, "n2 is selected by no host policy");
    assert!(check("10.9.9.9", "shop/api", 22).0, "pods' traffic is not the host's");
}
