//! Cilium's entities, `reserved:` selectors and `toServices` (`load/cilium_refs.rs`), and the Service,
//! EndpointSlice and Endpoints kinds they are resolved against: each verdict from the engine and from the reference
//! evaluator, which must agree.

use netpol_core::compile::Engine;
use netpol_core::load::{load_str, Loaded, Severity};
use netpol_core::portset::Protocol;
use netpol_core::reference;

/// Two nodes; `a` (app=a) and `b` on node-1, `c` (app=a too) on node-2, `w` (app=a) unscheduled; a hostNetwork
/// pod on each node.
const CLUSTER: &str = r#"
apiVersion: v1
kind: Node
metadata: {name: node-1}
status: {addresses: [{type: InternalIP, address: 10.1.0.1}, {type: Hostname, address: node-1}]}
---
apiVersion: v1
kind: Node
metadata: {name: node-2}
status: {addresses: [{type: InternalIP, address: 10.1.0.2}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: ns}
---
apiVersion: v1
kind: Namespace
metadata: {name: default}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ns, labels: {app: a}}
spec: {nodeName: node-1}
status: {podIP: 10.0.0.1}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: ns, labels: {app: b}}
spec: {nodeName: node-1}
status: {podIP: 10.0.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: c, namespace: ns, labels: {app: a}}
spec: {nodeName: node-2}
status: {podIP: 10.0.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: w, namespace: ns, labels: {app: a}}
status: {podIP: 10.0.0.4}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-1, namespace: default, labels: {app: agent}}
spec: {nodeName: node-1, hostNetwork: true}
---
apiVersion: v1
kind: Pod
metadata: {name: agent-2, namespace: default, labels: {app: agent}}
spec: {nodeName: node-2, hostNetwork: true}
"#;

fn load(more: &str) -> Loaded {
    load_str("refs.yaml", &format!("{CLUSTER}---\n{more}"))
}

fn errors(l: &Loaded) -> Vec<String> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Error).map(|d| d.to_string()).collect()
}

fn warnings(l: &Loaded) -> Vec<String> {
    l.diagnostics.iter().filter(|d| d.severity == Severity::Warning).map(|d| d.to_string()).collect()
}

/// The verdict of a TCP flow, after checking that the engine and the reference evaluator agree on it.
fn allowed(e: &Engine, from: &str, to: &str, port: u16) -> bool {
    let src = e.parse_endpoint(from, "ns").unwrap();
    let dst = e.parse_endpoint(to, "ns").unwrap();
    let fast = e.allowed(&src, &dst, Protocol::Tcp, port);
    let slow = reference::allowed(e.cluster(), &src, &dst, Protocol::Tcp, port);
    assert_eq!(fast, slow, "engine and reference disagree on {from} -> {to}:{port}");
    fast
}

fn engine(l: Loaded) -> Engine {
    assert_eq!(errors(&l), Vec::<String>::new());
    Engine::new(l.cluster)
}

#[test]
fn host_is_the_subjects_own_node_and_remote_node_every_other_one() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-host, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [host]
  - toEntities: [remote-node]
    toPorts: [{ports: [{port: "10250", protocol: TCP}]}]
"#,
    );
    let e = engine(l);
    // a runs on node-1, c on node-2: the same rule, different addresses.
    assert!(allowed(&e, "ns/a", "10.1.0.1", 22));
    assert!(!allowed(&e, "ns/a", "10.1.0.2", 22));
    assert!(allowed(&e, "ns/a", "10.1.0.2", 10250));
    assert!(allowed(&e, "ns/c", "10.1.0.2", 22));
    assert!(!allowed(&e, "ns/c", "10.1.0.1", 22));
    assert!(allowed(&e, "ns/c", "10.1.0.1", 10250));
    // The hostNetwork pods of a node are the node.
    assert!(allowed(&e, "ns/a", "default/agent-1", 9100));
    assert!(!allowed(&e, "ns/a", "default/agent-2", 9100));
    assert!(allowed(&e, "ns/a", "default/agent-2", 10250));
    // Neither is a pod or an outside address.
    assert!(!allowed(&e, "ns/a", "ns/b", 22));
    assert!(!allowed(&e, "ns/a", "10.9.9.9", 10250));
    // A pod on no Node of the input has no host; every Node is a remote node of it.
    assert!(!allowed(&e, "ns/w", "10.1.0.1", 22));
    assert!(allowed(&e, "ns/w", "10.1.0.1", 10250));
    assert!(allowed(&e, "ns/w", "10.1.0.2", 10250));
}

#[test]
fn remote_node_ingress_and_deny_rules_are_relative_to_the_subject_too() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: from-nodes, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEntities: [remote-node]
  egress:
  - toEntities: [all]
  egressDeny:
  - toEntities: [host]
    toPorts: [{ports: [{port: "22", protocol: TCP}]}]
"#,
    );
    let e = engine(l);
    assert!(allowed(&e, "10.1.0.2", "ns/a", 80));
    assert!(allowed(&e, "default/agent-2", "ns/a", 80));
    assert!(!allowed(&e, "10.9.9.9", "ns/a", 80));
    assert!(!allowed(&e, "ns/b", "ns/a", 80));
    // Its own node is let in whatever the policies say (allow-localhost).
    assert!(allowed(&e, "10.1.0.1", "ns/a", 80));
    // The deny is for a's own node only.
    assert!(!allowed(&e, "ns/a", "10.1.0.1", 22));
    assert!(allowed(&e, "ns/a", "10.1.0.2", 22));
    assert!(!allowed(&e, "ns/c", "10.1.0.2", 22));
    assert!(allowed(&e, "ns/c", "10.1.0.1", 22));
}

#[test]
fn explain_names_the_rule_a_node_entity_was_written_in() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-host, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEndpoints: [{matchLabels: {app: b}}]
  - toEntities: [host]
"#,
    );
    let e = engine(l);
    let src = e.parse_endpoint("ns/a", "ns").unwrap();
    let dst = e.parse_endpoint("10.1.0.1", "ns").unwrap();
    let x = e.explain(&src, &dst, Protocol::Tcp, 22);
    let text = x.render();
    assert!(text.contains("spec.egress[1])"), "{text}");
    // Another node's address: explain says whose node each end is.
    let dst = e.parse_endpoint("10.1.0.2", "ns").unwrap();
    let x = e.explain(&src, &dst, Protocol::Tcp, 22);
    let text = x.render();
    assert_eq!(x.verdict, netpol_core::verdict::Verdict::Deny, "{text}");
    assert!(text.contains("is node node-2, not the subject's node (ns/a runs on node node-1)"), "{text}");
}

const APISERVER: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: kubernetes, namespace: default, labels: {component: apiserver}}
spec: {clusterIP: 10.96.0.1, ports: [{name: https, port: 443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: kubernetes, namespace: default, labels: {kubernetes.io/service-name: kubernetes}}
addressType: IPv4
endpoints:
- addresses: [10.2.0.10]
- addresses: [10.2.0.11]
  conditions: {ready: false}
ports: [{name: https, port: 6443, protocol: TCP}]
"#;

const TO_APISERVER: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-api, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [kube-apiserver]
"#;

#[test]
fn kube_apiserver_is_the_endpoints_of_the_kubernetes_service() {
    let l = load(&format!("{APISERVER}---\n{TO_APISERVER}"));
    assert!(warnings(&l).iter().all(|w| !w.contains("kube-apiserver")), "{:#?}", warnings(&l));
    let e = engine(l);
    assert!(allowed(&e, "ns/a", "10.2.0.10", 6443));
    assert!(!allowed(&e, "ns/a", "10.2.0.11", 6443), "not ready: no backend");
    assert!(!allowed(&e, "ns/a", "10.96.0.1", 443), "the ClusterIP is not an endpoint");
    assert!(!allowed(&e, "ns/a", "10.1.0.1", 6443));
}

#[test]
fn kube_apiserver_from_endpoints_objects_too() {
    let eps = r#"
apiVersion: v1
kind: Endpoints
metadata: {name: kubernetes, namespace: default}
subsets:
- addresses: [{ip: 10.1.0.2}]
  notReadyAddresses: [{ip: 10.2.0.12}]
  ports: [{name: https, port: 6443}]
"#;
    let e = engine(load(&format!("{eps}---\n{TO_APISERVER}")));
    // The API server on node-2: its address is node-2's (remote-node too) and kube-apiserver.
    assert!(allowed(&e, "ns/a", "10.1.0.2", 6443));
    assert!(allowed(&e, "ns/a", "default/agent-2", 6443));
    assert!(!allowed(&e, "ns/a", "10.2.0.12", 6443));
}

#[test]
fn kube_apiserver_without_its_endpoints_in_the_input_is_unknown_and_said_so() {
    let l = load(TO_APISERVER);
    let w = warnings(&l);
    assert!(
        w.iter().any(|w| w.contains("spec.egress[0].toEntities[0]")
            && w.contains("kube-apiserver")
            && w.contains("unknown")),
        "{w:#?}"
    );
    let e = engine(l);
    assert!(!allowed(&e, "ns/a", "10.2.0.10", 6443));
}

#[test]
fn cluster_includes_nodes_and_the_api_server() {
    let l = load(&format!(
        "{APISERVER}---\n{}",
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: cluster, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress: [{toEntities: [cluster]}]
"#
    ));
    let e = engine(l);
    assert!(allowed(&e, "ns/a", "ns/b", 80));
    assert!(allowed(&e, "ns/a", "10.1.0.2", 80));
    assert!(allowed(&e, "ns/a", "10.1.0.1", 80));
    assert!(allowed(&e, "ns/a", "10.2.0.10", 80));
    assert!(!allowed(&e, "ns/a", "10.9.9.9", 80));
}

#[test]
fn health_init_unmanaged_and_ingress_match_nothing_with_a_warning() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: odd, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEntities: [health, init, unmanaged, ingress]
"#,
    );
    let w = warnings(&l);
    for (i, name) in ["health", "init", "unmanaged", "ingress"].iter().enumerate() {
        let field = format!("spec.ingress[0].fromEntities[{i}]");
        assert!(w.iter().any(|w| w.contains(&field) && w.contains(name) && w.contains("nothing")), "{field}: {w:#?}");
    }
    let e = engine(l);
    // The rule selects nothing: the pod is isolated.
    assert!(!allowed(&e, "ns/b", "ns/a", 80));
    assert!(!allowed(&e, "10.9.9.9", "ns/a", 80));
}

#[test]
fn reserved_selectors_are_the_entities_and_get_no_namespace() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reserved, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - fromEndpoints: [{matchLabels: {"reserved:remote-node": ""}}]
    toPorts: [{ports: [{port: "84", protocol: TCP}]}]
  - fromEndpoints: [{matchExpressions: [{key: "reserved:world", operator: Exists}]}]
    toPorts: [{ports: [{port: "85", protocol: TCP}]}]
  egress:
  - toEndpoints: [{matchLabels: {"reserved:host": ""}}]
"#,
    );
    let e = engine(l);
    assert!(allowed(&e, "10.1.0.2", "ns/a", 84));
    assert!(!allowed(&e, "10.1.0.2", "ns/a", 85));
    assert!(!allowed(&e, "10.9.9.9", "ns/a", 84));
    assert!(allowed(&e, "10.9.9.9", "ns/a", 85));
    assert!(!allowed(&e, "ns/b", "ns/a", 85));
    assert!(allowed(&e, "ns/a", "10.1.0.1", 1));
    assert!(!allowed(&e, "ns/a", "10.1.0.2", 1));
}

#[test]
fn reserved_selectors_netpol_does_not_model_are_errors_by_field_and_unknown_ones_select_nothing() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: reserved, namespace: ns}
spec:
  endpointSelector: {}
  ingress:
  - fromEndpoints: [{matchLabels: {"reserved:host": "", app: b}}]
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: unknown, namespace: ns}
spec:
  endpointSelector: {}
  ingress:
  - {}
  - fromEndpoints: [{matchLabels: {"reserved:nodes": ""}}]
"#,
    );
    let errs = errors(&l);
    assert!(
        errs.iter().any(|e| e.contains("spec.ingress[0].fromEndpoints[0]") && e.contains("not modelled")),
        "{errs:#?}"
    );
    // A reserved label no identity carries: Cilium takes it, and it selects nothing.
    let w = warnings(&l);
    let field = "spec.ingress[1].fromEndpoints[0].matchLabels.reserved:nodes";
    assert!(w.iter().any(|w| w.contains(field) && w.contains("nothing")), "{w:#?}");
}

const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: external-db, namespace: ns}
spec: {ports: [{port: 5432}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: external-db-x1, namespace: ns, labels: {kubernetes.io/service-name: external-db}}
addressType: IPv4
endpoints: [{addresses: [10.70.0.5]}, {addresses: [10.0.0.2]}]
---
apiVersion: v1
kind: Service
metadata: {name: legacy, namespace: ns, labels: {external: "yes"}}
---
apiVersion: v1
kind: Endpoints
metadata: {name: legacy, namespace: ns}
subsets: [{addresses: [{ip: 10.70.0.9}]}]
---
apiVersion: v1
kind: Service
metadata: {name: bees, namespace: ns, labels: {external: "no"}}
spec: {selector: {app: b}}
"#;

#[test]
fn to_services_is_the_backends_of_the_named_services() {
    let l = load(&format!(
        "{SERVICES}---\n{}",
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-db, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toServices: [{k8sService: {serviceName: external-db, namespace: ns}}]
    toPorts: [{ports: [{port: "5432", protocol: TCP}]}]
  - toServices: [{k8sServiceSelector: {selector: {matchLabels: {external: "yes"}}, namespace: ns}}]
  - toServices: [{k8sService: {serviceName: bees, namespace: ns}}]
    toPorts: [{ports: [{port: "8080", protocol: TCP}]}]
"#
    ));
    assert!(warnings(&l).iter().all(|w| !w.contains("toServices")), "{:#?}", warnings(&l));
    let e = engine(l);
    assert!(allowed(&e, "ns/a", "10.70.0.5", 5432));
    assert!(!allowed(&e, "ns/a", "10.70.0.5", 22), "toPorts still apply");
    // A selector-less Service's endpoints are a generated CIDR: never a pod's address.
    assert!(!allowed(&e, "ns/a", "ns/b", 5432));
    assert!(allowed(&e, "ns/a", "10.70.0.9", 22));
    // A Service with a selector: the pods it selects, in its namespace.
    assert!(allowed(&e, "ns/a", "ns/b", 8080));
    assert!(!allowed(&e, "ns/a", "10.9.9.9", 5432));
}

#[test]
fn to_services_naming_what_the_input_lacks_warns_and_matches_nothing() {
    let l = load(
        r#"
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: ns}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: to-none, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toServices: [{k8sService: {serviceName: nowhere, namespace: ns}}]
  - toServices: [{k8sService: {serviceName: empty, namespace: ns}}]
  - toServices: [{k8sServiceSelector: {selector: {matchLabels: {x: y}}}}]
"#,
    );
    let w = warnings(&l);
    for i in 0..3 {
        let field = format!("spec.egress[{i}].toServices[0]");
        assert!(w.iter().any(|w| w.contains(&field) && w.contains("matches nothing")), "{field}: {w:#?}");
    }
    let e = engine(l);
    assert!(!allowed(&e, "ns/a", "10.9.9.9", 80));
    assert!(!allowed(&e, "ns/a", "ns/b", 80));
}

#[test]
fn to_services_is_checked_by_field() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: bad, namespace: ns}
spec:
  endpointSelector: {}
  egress:
  - toServices: [{k8sService: {namespace: ns}}]
  - toServices: [{}]
  - toServices: [{k8sService: {serviceName: a}, k8sServiceSelector: {selector: {}}}]
  ingress:
  - toServices: [{k8sService: {serviceName: a}}]
"#,
    );
    let errs = errors(&l);
    for field in [
        "spec.egress[0].toServices[0].k8sService.serviceName",
        "spec.egress[1].toServices[0]",
        "spec.egress[2].toServices[0]",
        "spec.ingress[0].toServices",
    ] {
        assert!(errs.iter().any(|e| e.contains(field)), "no error at {field}: {errs:#?}");
    }
}

#[test]
fn services_and_their_endpoints_are_read_by_field() {
    let l = load(
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s1, namespace: ns, labels: {kubernetes.io/service-name: s}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.x]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s2, namespace: ns}
addressType: IPv4
endpoints: [{addresses: [10.0.0.9]}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: s3, namespace: ns, labels: {kubernetes.io/service-name: s}}
addressType: FQDN
endpoints: [{addresses: [db.example.com]}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: s, namespace: ns}
subsets: [{addresses: [{hostname: x}]}]
---
apiVersion: v1
kind: Service
metadata: {name: s, namespace: ns}
spec: {selector: {"bad key!": x}}
"#,
    );
    let errs = errors(&l);
    for field in ["endpoints[0].addresses[0]", "subsets[0].addresses[0].ip", "spec.selector"] {
        assert!(errs.iter().any(|e| e.contains(field)), "no error at {field}: {errs:#?}");
    }
    let w = warnings(&l);
    assert!(w.iter().any(|w| w.contains("kubernetes.io/service-name")), "{w:#?}");
    assert!(w.iter().any(|w| w.contains("addressType") && w.contains("FQDN")), "{w:#?}");
    assert!(l.cluster.services.is_empty());
    assert!(l.cluster.service_endpoints.is_empty());
}

#[test]
fn host_and_remote_node_without_any_node_in_the_input_are_unknown_and_said_so() {
    let l = load_str(
        "alone.yaml",
        r#"
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: ns, labels: {app: a}}
spec: {nodeName: node-1}
status: {podIP: 10.0.0.1}
---
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: nodes, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [host, remote-node]
"#,
    );
    let w = warnings(&l);
    for (i, name) in ["host", "remote-node"].iter().enumerate() {
        let field = format!("spec.egress[0].toEntities[{i}]");
        assert!(w.iter().any(|w| w.contains(&field) && w.contains(name) && w.contains("unknown")), "{field}: {w:#?}");
    }
    let e = engine(l);
    assert!(!allowed(&e, "ns/a", "10.1.0.1", 22));
}

#[test]
fn resolving_again_changes_nothing_and_says_each_warning_once() {
    let l = load(
        r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: refs, namespace: ns}
spec:
  endpointSelector: {matchLabels: {app: a}}
  egress:
  - toEntities: [host, remote-node, kube-apiserver, cluster]
  - toServices: [{k8sService: {serviceName: nowhere, namespace: ns}}]
"#,
    );
    assert_eq!(errors(&l), Vec::<String>::new());
    let policies = format!("{:?}", l.cluster.policies);
    let mut c = l.cluster;
    let first = netpol_core::load::resolve_cilium_refs(&mut c);
    assert_eq!(format!("{:?}", c.policies), policies, "the same rules, generated ones included");
    let second = netpol_core::load::resolve_cilium_refs(&mut c);
    assert_eq!(format!("{:?}", c.policies), policies);
    assert_eq!(first, second, "the same warnings, not more");
    assert_eq!(first.len(), 2, "{first:#?}");
    assert!(first.iter().all(|d| l.diagnostics.contains(d)), "the loader's warnings: {:#?}", l.diagnostics);
    let e =
        engine(netpol_core::load::Loaded { cluster: c, diagnostics: Vec::new(), skipped_kinds: Default::default() });
    assert!(allowed(&e, "ns/a", "10.1.0.1", 22), "host");
    assert!(allowed(&e, "ns/a", "10.1.0.2", 22), "remote-node");
}
