//! Cilium's policies from a live cluster, through kube-rs's real client against `netpol-fakeapi`:
//! CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (`cilium.io/v2`), read where discovery finds Cilium's
//! group. A one-shot list answers as the same objects read from a file (same diagnostics); the watch follows them
//! (after each event, the engine answers as a fresh list of the cluster does); a cluster without Cilium's CRDs, or
//! without one of them, is no error.

use std::time::Duration;

use netpol_core::compile::Engine;
use netpol_core::load::{load_str, Diagnostic, Severity};
use netpol_core::portset::Protocol;
use netpol_fakeapi::fixtures::{self, cilium_deny_web, cilium_objects, cilium_policy, seed_cilium};
use netpol_fakeapi::Kind as ApiKind;
use netpol_kube::Kind;
use serde_json::{json, Value};

use crate::common::{allowed, cluster, discoveries, endpoint, policy_kinds, watched_kinds, Cluster, Live};

/// Flows on the cluster of `cilium_objects`, with the verdicts its documentation gives.
const FLOWS: [(&str, &str, u16, bool); 5] = [
    ("frontend/web", "backend/api", 8080, true),
    ("frontend/web", "backend/api", 9090, false),
    ("frontend/web", "backend/api", 5432, false),
    ("backend/api", "frontend/web", 8080, false),
    ("203.0.113.1", "frontend/web", 8080, true),
];

const ENDPOINTS: [&str; 4] = ["frontend/web", "backend/api", "203.0.113.1", "10.0.3.1"];
const PORTS: [u16; 3] = [8080, 9090, 53];

/// A fake API server with Cilium's CRDs, the small cluster and Cilium's policies of `cilium_objects`.
fn cilium_cluster() -> Cluster {
    let c = cluster();
    c.server.set_cilium(true);
    seed_cilium(&c.server);
    c
}

/// The same objects (and `extra`) as one JSON stream file, loaded as `netpol -f` loads files.
fn from_file(extra: Vec<Value>) -> (Engine, Vec<Diagnostic>) {
    let mut objects = fixtures::two_namespaces();
    objects.extend(cilium_objects());
    objects.extend(extra);
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    let loaded = load_str("cluster.json", &text.join("\n"));
    (Engine::new(loaded.cluster), loaded.diagnostics)
}

/// An explanation as JSON, without where each rule was read from (a file or the cluster).
fn explanation(e: &Engine, src: &str, dst: &str, port: u16) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("source");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(e.explain(&endpoint(e, src), &endpoint(e, dst), Protocol::Tcp, port)).unwrap();
    strip(&mut v);
    v
}

/// Both engines answer alike: every verdict and explanation among [`ENDPOINTS`], and they hold the same
/// namespaces, tiers and policies.
fn assert_same_answers(live: &Engine, fresh: &Engine, what: &str) {
    for src in ENDPOINTS {
        for dst in ENDPOINTS {
            for port in PORTS {
                assert_eq!(
                    explanation(live, src, dst, port),
                    explanation(fresh, src, dst, port),
                    "{what}: {src} -> {dst} {port}"
                );
            }
        }
    }
    let names = |e: &Engine| {
        let mut ns: Vec<String> = e.cluster().namespaces.iter().map(|n| n.name.clone()).collect();
        ns.sort();
        ns
    };
    assert_eq!(names(live), names(fresh), "{what}: namespaces");
    let tiers = |e: &Engine| {
        let mut t: Vec<(String, Option<f64>)> = e.cluster().tiers.iter().map(|t| (t.name.clone(), t.order)).collect();
        t.sort_by(|a, b| a.0.cmp(&b.0));
        t
    };
    assert_eq!(tiers(live), tiers(fresh), "{what}: tiers");
    assert_eq!(policy_kinds(live), policy_kinds(fresh), "{what}: policies");
}

/// What a fresh list of the cluster answers now.
async fn fresh(c: &Cluster) -> Engine {
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    Engine::new(netpol_kube::load_objects(snap.objects).cluster)
}

/// A diagnostic without its origin (a file's name or the cluster's), as `severity field: message`.
fn described(d: &Diagnostic) -> String {
    format!("{:?} {:?} {:?}: {}", d.severity, d.object, d.field, d.message)
}

// ---- one-shot ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_ciliums_crds_answers_as_the_same_objects_from_a_file() {
    let c = cilium_cluster();
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    assert!(snap.cilium);
    assert!(snap.absent().iter().all(|k| !k.is_cilium()), "{:?}", snap.absent());
    let versions = snap.resource_versions();
    assert!(versions.contains("ciliumnetworkpolicies=") && versions.contains("ciliumclusterwidenetworkpolicies="));
    let requests = c.server.requests();
    assert_eq!(discoveries(&requests), 1);
    for kind in [ApiKind::CiliumNetworkPolicy, ApiKind::CiliumClusterwideNetworkPolicy] {
        assert!(requests.iter().any(|r| r.path == kind.path() && !r.is_watch()), "{kind:?} listed");
    }

    let loaded = netpol_kube::load_objects(snap.objects);
    let (file, file_diagnostics) = from_file(vec![]);
    // The same diagnostics (none: every object is valid).
    assert_eq!(
        loaded.diagnostics.iter().map(described).collect::<Vec<_>>(),
        file_diagnostics.iter().map(described).collect::<Vec<_>>()
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let engine = Engine::new(loaded.cluster);
    assert_eq!(
        policy_kinds(&engine).into_iter().filter(|k| k.is_cilium()).count(),
        file.cluster().policies.len(),
        "every part of both objects"
    );
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&engine, src, dst, port), want, "{src} -> {dst} {port}");
    }
    let denied = explanation(&engine, "frontend/web", "backend/api", 9090).to_string();
    assert!(denied.contains("ingressDeny[0]") && denied.contains("api-ingress"), "{denied}");
    assert_same_answers(&engine, &file, "a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_ciliums_crds_reads_none_and_is_no_error() {
    // Not installed: not asked for, absent.
    let c = cluster();
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without Cilium");
    assert!(!snap.cilium);
    for kind in [Kind::CiliumNetworkPolicy, Kind::CiliumClusterwideNetworkPolicy] {
        assert!(snap.absent().contains(&kind), "{:?}", snap.absent());
    }
    assert!(!snap.resource_versions().contains("cilium"), "{}", snap.resource_versions());
    assert!(c.server.requests().iter().all(|r| !r.path.contains("cilium.io")));
    let live = Live::start(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live.errors(), 0.0);
    assert!(live.version(Kind::CiliumNetworkPolicy).is_none(), "{}", live.versions());
    assert!(c.server.requests().iter().all(|r| !r.path.contains("cilium.io")));
    drop(live);

    // One of the two CRDs not installed: that kind is absent (its list answers 404), the other is read.
    let c = cilium_cluster();
    c.server.set_served(ApiKind::CiliumClusterwideNetworkPolicy, false);
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without one CRD");
    assert_eq!(
        snap.absent(),
        [
            Kind::Tier,
            Kind::CalicoNetworkPolicy,
            Kind::GlobalNetworkPolicy,
            Kind::NetworkSet,
            Kind::GlobalNetworkSet,
            Kind::ServiceAccount,
            Kind::StagedNetworkPolicy,
            Kind::StagedGlobalNetworkPolicy,
            Kind::StagedKubernetesNetworkPolicy,
            Kind::HostEndpoint,
            Kind::CiliumClusterwideNetworkPolicy,
            Kind::AntreaTier,
            Kind::AntreaClusterGroup,
            Kind::AntreaGroup,
            Kind::AntreaClusterNetworkPolicy,
            Kind::AntreaNetworkPolicy
        ]
    );
    let engine = Engine::new(netpol_kube::load_objects(snap.objects).cluster);
    assert!(!allowed(&engine, "frontend/web", "backend/api", 9090));
    assert!(allowed(&engine, "backend/api", "frontend/web", 8080), "no clusterwide policy");
    let live = Live::start(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live.errors(), 0.0);
    assert!(live.version(Kind::CiliumClusterwideNetworkPolicy).is_none(), "{}", live.versions());
    assert!(live.version(Kind::CiliumNetworkPolicy).is_some(), "{}", live.versions());
    let path = ApiKind::CiliumClusterwideNetworkPolicy.path();
    assert!(!c.server.requests().iter().any(|r| r.path == path && r.is_watch()));
    assert!(live.allowed("backend/api", "frontend/web", 8080));
    assert!(!live.allowed("frontend/web", "backend/api", 9090));
}

#[test]
fn the_one_shot_line_names_ciliums_kinds() {
    let c = cilium_cluster();
    let (loaded, line) = netpol_kube::snapshot_blocking(&c.source()).expect("snapshot");
    assert!(line.contains(" ciliumnetworkpolicies=") && line.contains(" ciliumclusterwidenetworkpolicies="), "{line}");
    assert!(loaded.cluster.has_cilium());
}

// ---- watch ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_ciliums_policies() {
    let c = cilium_cluster();
    let live = Live::start(&c).await;
    // Every kind netpol reads on a cluster with Cilium (Services and their endpoints included).
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    for (src, dst, port, want) in FLOWS {
        assert_eq!(live.allowed(src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&live.engine(), &fresh(&c).await, "the first list");
    let warnings = |live: &Live| live.diagnostics().iter().filter(|d| d.severity == Severity::Warning).count();
    assert_eq!(warnings(&live), 0, "{:?}", live.diagnostics());

    // A CiliumNetworkPolicy that denies the flow, then its deletion.
    let rv = c.put(cilium_deny_web());
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080), "denied");
    let e = explanation(&live.engine(), "frontend/web", "backend/api", 8080).to_string();
    assert!(e.contains("deny-web") && e.contains("ingressDeny[0]"), "{e}");
    assert_same_answers(&live.engine(), &fresh(&c).await, "deny-web added");
    assert_eq!(warnings(&live), 0, "{:?}", live.diagnostics());
    let rv = c.server.delete_kind(ApiKind::CiliumNetworkPolicy, Some("backend"), "deny-web").unwrap();
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080), "allowed again");
    assert_same_answers(&live.engine(), &fresh(&c).await, "deny-web deleted");

    // Modified: the allowed port moves and the deny rule goes.
    let moved = cilium_policy(
        "backend",
        "api-ingress",
        json!({
            "endpointSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{
                "fromEndpoints": [{"matchLabels": {"k8s:io.kubernetes.pod.namespace": "frontend", "app": "web"}}],
                "toPorts": [{"ports": [{"port": "9090", "protocol": "TCP"}]}],
            }],
        }),
    );
    let rv = c.put(moved);
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 9090));
    assert!(!live.allowed("frontend/web", "backend/api", 8080));
    assert_same_answers(&live.engine(), &fresh(&c).await, "api-ingress modified");

    // A policy in a namespace no Namespace object declares: the namespace comes and goes with it.
    let elsewhere = cilium_policy(
        "batch",
        "isolate",
        json!({"endpointSelector": {}, "ingressDeny": [{"fromEntities": ["world"]}]}),
    );
    let rv = c.put(elsewhere);
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.engine().cluster().namespace_id("batch").is_some());
    assert_same_answers(&live.engine(), &fresh(&c).await, "a policy in an undeclared namespace");
    let rv = c.server.delete_kind(ApiKind::CiliumNetworkPolicy, Some("batch"), "isolate").unwrap();
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.engine().cluster().namespace_id("batch").is_none());
    assert_same_answers(&live.engine(), &fresh(&c).await, "its deletion");

    // An invalid object is reported and left out, as in a file.
    let invalid = cilium_policy("backend", "bad", json!({"ingress": [{"fromEndpoints": [{}]}]}));
    let rv = c.put(invalid);
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    let errors: Vec<Diagnostic> = live.diagnostics().into_iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(&*errors[0].origin.file, "cluster:ciliumnetworkpolicies/backend/bad");
    assert_same_answers(&live.engine(), &fresh(&c).await, "an invalid policy");
    let rv = c.server.delete_kind(ApiKind::CiliumNetworkPolicy, Some("backend"), "bad").unwrap();
    live.applied(Kind::CiliumNetworkPolicy, rv).await;

    // The clusterwide policy, then the last Cilium policy: Cilium's tiers go with them.
    let rv = c.server.delete_kind(ApiKind::CiliumClusterwideNetworkPolicy, None, "backend-not-to-frontend").unwrap();
    live.applied(Kind::CiliumClusterwideNetworkPolicy, rv).await;
    assert!(live.allowed("backend/api", "frontend/web", 8080));
    assert_same_answers(&live.engine(), &fresh(&c).await, "the clusterwide policy deleted");
    let rv = c.server.delete_kind(ApiKind::CiliumNetworkPolicy, Some("backend"), "api-ingress").unwrap();
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    let engine = live.engine();
    assert!(!policy_kinds(&engine).iter().any(|k| k.is_cilium()));
    assert_eq!(engine.cluster().tiers.len(), 3, "the built-in tiers alone");
    assert_same_answers(&engine, &fresh(&c).await, "no Cilium policy left");
    eventually!("no diagnostics", live.diagnostics().is_empty());
    assert_eq!(live.errors(), 0.0);
    assert!(live.metric("netpol_live_recompiles_total ") >= 6.0);
}

// ---- apply_cilium, alone ----

/// A Calico Tier with a policy in it, a policy in a tier no Tier declares, and a staged policy, beside a Cilium policy: Cilium's tiers come and go
/// around Calico's without moving any policy to another tier.
const WITH_CALICO: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: api, namespace: backend, labels: {app: api}}
status: {podIP: 10.0.2.1}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: frontend, labels: {app: web}}
status: {podIP: 10.0.1.1}
---
apiVersion: projectcalico.org/v3
kind: Tier
metadata: {name: security}
spec: {order: 100}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: security.allow-web}
spec: {tier: security, selector: app == 'api', ingress: [{action: Allow, source: {selector: app == 'web'}}]}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: undeclared.deny-web}
spec: {tier: undeclared, order: 1, selector: app == 'web', ingress: [{action: Deny}]}
---
apiVersion: projectcalico.org/v3
kind: StagedGlobalNetworkPolicy
metadata: {name: security.staged}
spec: {tier: security, selector: app == 'web', ingress: [{action: Deny}]}
"#;

const DENY_WEB: &str = r#"
apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: deny-web, namespace: elsewhere}
spec:
  endpointSelector: {}
  ingressDeny: [{fromEndpoints: [{matchLabels: {k8s:io.kubernetes.pod.namespace: frontend}}]}]
"#;

/// Each policy's kind, name and tier by name; the tiers by name and order; the namespaces.
fn shape(c: &netpol_core::model::Cluster) -> (Vec<String>, Vec<String>, Vec<String>) {
    let tier = |t: netpol_core::model::PolicyTier| c.tiers[t.index()].name.clone();
    let mut policies: Vec<String> =
        c.policies.iter().map(|p| format!("{:?} {} {}", p.kind, p.name, tier(p.tier))).collect();
    // A staged policy's tier: by name once named, else by index.
    let staged_tier =
        |s: &netpol_core::model::StagedPolicy| s.implicit_tier.clone().unwrap_or_else(|| tier(s.policy.tier));
    policies.extend(c.staged.iter().map(|s| format!("staged {} {}", s.policy.name, staged_tier(s))));
    policies.sort();
    let mut tiers: Vec<String> =
        c.tiers.iter().map(|t| format!("{} {:?} {:?}", t.name, t.order, t.default_action)).collect();
    tiers.sort();
    let mut ns: Vec<String> = c.namespaces.iter().map(|n| n.name.clone()).collect();
    ns.sort();
    (policies, tiers, ns)
}

#[test]
fn apply_cilium_gives_what_a_load_of_the_same_objects_gives() {
    let without = load_str("a.yaml", WITH_CALICO).cluster;
    let with = load_str("a.yaml", &format!("{WITH_CALICO}---\n{DENY_WEB}")).cluster;
    // The object's policies as the loader reads it alone, with Cilium's own tiers.
    let alone = load_str("b.yaml", DENY_WEB).cluster;
    let parts: Vec<_> = alone
        .policies
        .iter()
        .map(|p| (p.clone(), (p.tier.index() >= 3).then(|| alone.tiers[p.tier.index()].clone())))
        .collect();
    assert!(!parts.is_empty());
    let change = |parts| netpol_kube::CiliumChange {
        kind: netpol_core::model::PolicyKind::CiliumNetworkPolicy,
        namespace: Some("elsewhere".to_string()),
        name: "deny-web".to_string(),
        parts,
        implicit_namespace: alone.namespaces.iter().find(|n| n.name == "elsewhere").cloned(),
    };
    // Added: as loaded with it.
    let mut c = without.clone();
    netpol_kube::apply_cilium(&mut c, change(parts.clone()));
    assert_eq!(shape(&c), shape(&with));
    assert_eq!(Engine::new(c.clone()).cluster().policies.len(), with.policies.len());
    // Applied again: the same (replaced, not added twice).
    netpol_kube::apply_cilium(&mut c, change(parts));
    assert_eq!(shape(&c), shape(&with));
    // Deleted: as loaded without it; Cilium's tier and the namespace only it named are gone.
    netpol_kube::apply_cilium(&mut c, change(Vec::new()));
    let (policies, tiers, ns) = shape(&c);
    let (want_policies, want_tiers, want_ns) = shape(&without);
    assert_eq!((policies, ns), (want_policies, want_ns));
    assert_eq!(tiers, want_tiers);
    // Deleted from a cluster loaded with it, where Cilium's tier comes before the undeclared one: the policies
    // of the tiers after it keep their tiers.
    let mut loaded = with.clone();
    let undeclared = |c: &netpol_core::model::Cluster| c.tiers.iter().position(|t| t.name == "undeclared").unwrap();
    let cilium = loaded.tiers.iter().position(|t| t.name == "CiliumDeny").unwrap();
    assert!(cilium < undeclared(&loaded), "{:?}", loaded.tiers);
    netpol_kube::apply_cilium(&mut loaded, change(Vec::new()));
    assert_eq!(shape(&loaded), shape(&without));
    // And the engine answers as a fresh one.
    let (e, fresh) = (Engine::new(c), Engine::new(without));
    for (src, dst) in [("frontend/web", "backend/api"), ("backend/api", "frontend/web")] {
        assert_eq!(allowed(&e, src, dst, 8080), allowed(&fresh, src, dst, 8080), "{src} -> {dst}");
    }
}

// ---- entities resolved on the live cluster ----

/// Endpoints and ports of the node entities' test: the pods, the Nodes' addresses (old and new), the outside.
const NODE_ENDPOINTS: [&str; 6] =
    ["backend/api", "frontend/web", "192.168.1.11", "192.168.1.12", "192.168.1.13", "203.0.113.1"];
const NODE_PORTS: [u16; 4] = [10250, 4240, 6443, 8080];

fn on_node(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    pod
}

/// The Cilium policies' rules of an engine's cluster (generated ones included), sorted, in words.
fn cilium_rules(e: &Engine) -> Vec<String> {
    let mut v: Vec<String> = e
        .cluster()
        .policies
        .iter()
        .filter(|p| p.kind.is_cilium())
        .map(|p| format!("{} {:?} {:?}", p.name, p.ingress, p.egress))
        .collect();
    v.sort();
    v
}

/// Two engines explain every flow among `endpoints` on `ports` alike.
fn assert_same_explanations(a: &Engine, b: &Engine, endpoints: &[&str], ports: &[u16], what: &str) {
    for &src in endpoints {
        for &dst in endpoints {
            for &port in ports {
                assert_eq!(
                    explanation(a, src, dst, port),
                    explanation(b, src, dst, port),
                    "{what}: {src} -> {dst} {port}"
                );
            }
        }
    }
}

/// The live engine answers as a fresh list of the cluster (loaded whole, as from a file) does: explanations among
/// [`NODE_ENDPOINTS`], the Cilium policies' rules (generated ones included) and the warnings.
async fn assert_as_listed(live: &Live, c: &Cluster, what: &str) {
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    let loaded = netpol_kube::load_objects(snap.objects);
    let mut listed: Vec<String> = loaded.diagnostics.iter().map(described).collect();
    let fresh = Engine::new(loaded.cluster);
    let engine = live.engine();
    assert_same_explanations(&engine, &fresh, &NODE_ENDPOINTS, &NODE_PORTS, what);
    assert_eq!(cilium_rules(&engine), cilium_rules(&fresh), "{what}: Cilium's rules");
    let mut warnings: Vec<String> = live.diagnostics().iter().map(described).collect();
    warnings.sort();
    listed.sort();
    assert_eq!(warnings, listed, "{what}: diagnostics");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_resolves_ciliums_node_entities_on_the_live_cluster() {
    let c = cilium_cluster();
    c.put(fixtures::node("worker-1", json!({}), "192.168.1.11"));
    c.put(fixtures::node("worker-2", json!({}), "192.168.1.12"));
    c.put(on_node(fixtures::pod("backend", "api", json!({"app": "api"}), "10.0.2.1"), "worker-1"));
    c.put(on_node(fixtures::pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"), "worker-2"));
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert_as_listed(&live, &c, "the first list").await;

    // A policy with node entities, loaded alone by the watch: resolved on the live cluster's Nodes.
    let to_nodes = cilium_policy(
        "backend",
        "to-nodes",
        json!({
            "endpointSelector": {"matchLabels": {"app": "api"}},
            "egress": [
                {"toEntities": ["host"], "toPorts": [{"ports": [{"port": "10250", "protocol": "TCP"}]}]},
                {"toEntities": ["remote-node"], "toPorts": [{"ports": [{"port": "4240", "protocol": "TCP"}]}]},
                {"toEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]},
            ],
        }),
    );
    let rv = c.put(to_nodes);
    live.applied(Kind::CiliumNetworkPolicy, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.11", 10250), "host");
    assert!(!live.allowed("backend/api", "192.168.1.12", 10250));
    assert!(live.allowed("backend/api", "192.168.1.12", 4240), "remote-node");
    assert!(!live.allowed("backend/api", "192.168.1.11", 4240));
    assert!(!live.diagnostics().iter().any(|d| d.message.contains("no Node")), "{:?}", live.diagnostics());
    assert_as_listed(&live, &c, "to-nodes added").await;

    // A Node's address changes.
    let rv = c.put(fixtures::node("worker-2", json!({}), "192.168.1.13"));
    live.applied(Kind::Node, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.13", 4240));
    assert!(!live.allowed("backend/api", "192.168.1.12", 4240));
    assert_as_listed(&live, &c, "worker-2 moved").await;

    // The subject runs on the other node now.
    let rv = c.put(on_node(fixtures::pod("backend", "api", json!({"app": "api"}), "10.0.2.1"), "worker-2"));
    live.applied(Kind::Pod, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.13", 10250));
    assert!(live.allowed("backend/api", "192.168.1.11", 4240));
    assert_as_listed(&live, &c, "api on worker-2").await;

    // The Nodes go: the entities match nothing, and the warning says so once.
    for node in ["worker-1", "worker-2"] {
        let rv = c.server.delete_kind(ApiKind::Node, None, node).unwrap();
        live.applied(Kind::Node, rv).await;
    }
    assert!(!live.allowed("backend/api", "192.168.1.11", 4240));
    assert_as_listed(&live, &c, "no Node").await;
}

// ---- Services, their endpoints and CIDR groups on the live cluster ----

/// Endpoints and ports of the Service and CIDR group tests: the pods, the addresses endpoints and groups move
/// between, an address of no one.
const REF_ENDPOINTS: [&str; 7] =
    ["frontend/web", "backend/api", "203.0.113.10", "203.0.113.11", "192.0.2.10", "192.0.2.11", "198.51.100.7"];
const REF_PORTS: [u16; 3] = [5432, 6443, 443];

/// CiliumNetworkPolicy `frontend/to-db`: `app=web` may reach Service `backend/db` (no selector: its endpoints'
/// addresses) on TCP 5432, and nothing else (its egress is isolated).
fn to_db() -> Value {
    cilium_policy(
        "frontend",
        "to-db",
        json!({
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "egress": [{
                "toServices": [{"k8sService": {"serviceName": "db", "namespace": "backend"}}],
                "toPorts": [{"ports": [{"port": "5432", "protocol": "TCP"}]}],
            }],
        }),
    )
}

/// CiliumNetworkPolicy `frontend/to-apiserver`: `app=web` may reach the `kube-apiserver` entity (the endpoints of
/// Service `default/kubernetes`) on TCP 6443.
fn to_apiserver() -> Value {
    cilium_policy(
        "frontend",
        "to-apiserver",
        json!({
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "egress": [{"toEntities": ["kube-apiserver"], "toPorts": [{"ports": [{"port": "6443", "protocol": "TCP"}]}]}],
        }),
    )
}

/// CiliumNetworkPolicy `frontend/to-partners`: `app=web` may reach the CIDRs of CiliumCIDRGroup `partners` on TCP
/// 443.
fn to_partners() -> Value {
    cilium_policy(
        "frontend",
        "to-partners",
        json!({
            "endpointSelector": {"matchLabels": {"app": "web"}},
            "egress": [{
                "toCIDRSet": [{"cidrGroupRef": "partners"}],
                "toPorts": [{"ports": [{"port": "443", "protocol": "TCP"}]}],
            }],
        }),
    )
}

/// The objects of `c` that [`cilium_objects`] and the small cluster do not have, as the fake server holds them
/// now (kinds of the Service and CIDR group tests).
fn extra_objects(c: &Cluster) -> Vec<Value> {
    let mut out = Vec::new();
    for (kind, ns, name) in [
        (ApiKind::CiliumNetworkPolicy, Some("frontend"), "to-db"),
        (ApiKind::CiliumNetworkPolicy, Some("frontend"), "to-apiserver"),
        (ApiKind::CiliumNetworkPolicy, Some("frontend"), "to-partners"),
        (ApiKind::Service, Some("backend"), "db"),
        (ApiKind::Service, Some("default"), "kubernetes"),
        (ApiKind::EndpointSlice, Some("backend"), "db-1"),
        (ApiKind::EndpointSlice, Some("default"), "kubernetes"),
        (ApiKind::Endpoints, Some("backend"), "db"),
        (ApiKind::Endpoints, Some("default"), "kubernetes"),
        (ApiKind::Service, Some("backend"), "other"),
        (ApiKind::EndpointSlice, Some("backend"), "other-1"),
        (ApiKind::Endpoints, Some("backend"), "other"),
        (ApiKind::CiliumCidrGroup, None, "partners"),
        (ApiKind::CiliumCidrGroupV2Alpha1, None, "partners"),
    ] {
        out.extend(c.server.get_kind(kind, ns, name));
    }
    out
}

/// The live engine answers as the same objects loaded from a file: every explanation among [`REF_ENDPOINTS`] and
/// [`REF_PORTS`], the Cilium policies' rules (generated ones included) and the diagnostics (warnings of peers that
/// match nothing included).
fn assert_as_file(live: &Live, c: &Cluster, what: &str) {
    let (file, file_diagnostics) = from_file(extra_objects(c));
    let engine = live.engine();
    assert_same_explanations(&engine, &file, &REF_ENDPOINTS, &REF_PORTS, what);
    assert_eq!(cilium_rules(&engine), cilium_rules(&file), "{what}: Cilium's rules");
    let sorted = |d: &[Diagnostic]| {
        let mut v: Vec<String> = d.iter().map(described).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&live.diagnostics()), sorted(&file_diagnostics), "{what}: diagnostics");
}

/// An EndpointSlice (`kind` [`Kind::EndpointSlice`]: `SERVICE-1`, or, the older API, the Endpoints object named
/// as its Service) of Service `ns/service` with `addresses`.
fn endpoints_of(kind: Kind, ns: &str, service: &str, addresses: &[&str]) -> Value {
    match kind {
        Kind::EndpointSlice => {
            let name = if service == "kubernetes" { service.to_string() } else { format!("{service}-1") };
            fixtures::endpoint_slice(ns, &name, service, addresses)
        }
        _ => fixtures::endpoints(ns, service, addresses),
    }
}

/// The Service and `kube-apiserver` test, with the endpoints as EndpointSlices or as Endpoints (`kind`): before
/// the Service and its endpoints exist the flows are denied, with them allowed, and they follow the endpoints as
/// they change and go; after each event the live engine answers as a file of the same objects does.
async fn watch_follows_service_endpoints(kind: Kind) {
    let api_kind = match kind {
        Kind::EndpointSlice => ApiKind::EndpointSlice,
        _ => ApiKind::Endpoints,
    };
    let c = cilium_cluster();
    c.put(to_db());
    c.put(to_apiserver());
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.version(Kind::Service).is_some() && live.version(kind).is_some(), "{}", live.versions());
    // Nothing behind either yet: denied, with the warnings a file gives.
    assert!(!live.allowed("frontend/web", "203.0.113.10", 5432), "no Service");
    assert!(!live.allowed("frontend/web", "192.0.2.10", 6443), "no API server endpoints");
    let warned = |live: &Live, what: &str| live.diagnostics().iter().any(|d| d.message.contains(what));
    assert!(warned(&live, "kube-apiserver"), "{:?}", live.diagnostics());
    assert_as_file(&live, &c, "no Service");

    // The Service without a selector: still nothing behind it.
    let rv = c.put(fixtures::service("backend", "db", None));
    live.applied(Kind::Service, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.10", 5432), "no endpoints");
    assert_as_file(&live, &c, "the Service alone");
    // Its endpoints: allowed to that address and port only.
    let rv = c.put(endpoints_of(kind, "backend", "db", &["203.0.113.10"]));
    live.applied(kind, rv).await;
    assert!(live.allowed("frontend/web", "203.0.113.10", 5432), "the Service's endpoint");
    assert!(!live.allowed("frontend/web", "203.0.113.10", 6443));
    assert!(!live.allowed("frontend/web", "203.0.113.11", 5432));
    assert_as_file(&live, &c, "the Service's endpoints");
    // The API server's Service and endpoints.
    let rv = c.put(fixtures::service("default", "kubernetes", None));
    live.applied(Kind::Service, rv).await;
    let rv = c.put(endpoints_of(kind, "default", "kubernetes", &["192.0.2.10"]));
    live.applied(kind, rv).await;
    assert!(live.allowed("frontend/web", "192.0.2.10", 6443), "kube-apiserver");
    assert!(!live.allowed("frontend/web", "192.0.2.11", 6443));
    assert!(!warned(&live, "kube-apiserver"), "{:?}", live.diagnostics());
    assert_as_file(&live, &c, "the API server's endpoints");

    // A Service no policy names, and its endpoints (a live cluster's change all the time): the cluster keeps
    // them, nothing is recompiled.
    let recompiles = live.metric("netpol_live_recompiles_total ");
    let changes = live.metric("netpol_live_changes_total ");
    c.put(fixtures::service("backend", "other", None));
    let rv = c.put(endpoints_of(kind, "backend", "other", &["198.51.100.7"]));
    live.applied(kind, rv).await;
    eventually!("the changes counted", live.metric("netpol_live_changes_total ") >= changes + 2.0);
    assert_eq!(live.metric("netpol_live_recompiles_total "), recompiles, "no recompile");
    assert!(live.engine().cluster().services.iter().any(|s| s.name == "other"));
    assert!(!live.allowed("frontend/web", "198.51.100.7", 5432));
    assert!(live.allowed("frontend/web", "203.0.113.10", 5432));
    assert_as_file(&live, &c, "a Service no policy names");

    // The endpoints move: the verdicts follow.
    let rv = c.put(endpoints_of(kind, "backend", "db", &["203.0.113.11"]));
    live.applied(kind, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.10", 5432), "the old endpoint");
    assert!(live.allowed("frontend/web", "203.0.113.11", 5432), "the new endpoint");
    let rv = c.put(endpoints_of(kind, "default", "kubernetes", &["192.0.2.11"]));
    live.applied(kind, rv).await;
    assert!(!live.allowed("frontend/web", "192.0.2.10", 6443));
    assert!(live.allowed("frontend/web", "192.0.2.11", 6443));
    assert_as_file(&live, &c, "the endpoints moved");

    // The endpoints deleted: denied again.
    let name = if kind == Kind::EndpointSlice { "db-1" } else { "db" };
    let rv = c.server.delete_kind(api_kind, Some("backend"), name).unwrap();
    live.applied(kind, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.11", 5432), "the endpoints gone");
    assert_as_file(&live, &c, "the Service's endpoints deleted");
    let rv = c.server.delete_kind(api_kind, Some("default"), "kubernetes").unwrap();
    live.applied(kind, rv).await;
    assert!(!live.allowed("frontend/web", "192.0.2.11", 6443), "the API server's endpoints gone");
    assert!(warned(&live, "kube-apiserver"), "{:?}", live.diagnostics());
    assert_as_file(&live, &c, "the API server's endpoints deleted");
    // Endpoints again, then the Service deleted: a Service reference that matches nothing.
    let rv = c.put(endpoints_of(kind, "backend", "db", &["203.0.113.10"]));
    live.applied(kind, rv).await;
    assert!(live.allowed("frontend/web", "203.0.113.10", 5432));
    let rv = c.server.delete_kind(ApiKind::Service, Some("backend"), "db").unwrap();
    live.applied(Kind::Service, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.10", 5432), "the Service gone");
    assert_as_file(&live, &c, "the Service deleted");
    assert_eq!(live.errors(), 0.0);
    let events =
        |t: &str| live.metric(&format!("netpol_watch_events_total{{kind=\"{}\",type=\"{t}\"}}", kind.plural()));
    assert!(events("apply") >= 4.0 && events("delete") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_services_and_their_endpoint_slices() {
    watch_follows_service_endpoints(Kind::EndpointSlice).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_services_and_their_endpoints() {
    watch_follows_service_endpoints(Kind::Endpoints).await;
}

/// A CiliumCIDRGroup under `api` (the fake server's kind: `v2`, or `v2alpha1` on an older Cilium) created, changed
/// and deleted changes the verdict of a `cidrGroupRef` rule; the live engine answers as a file of the same
/// objects, and as a one-shot list.
async fn watch_follows_a_cidr_group(c: &Cluster, api: &str) {
    let live = Live::start(c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.version(Kind::CiliumCidrGroup).is_some(), "{}", live.versions());
    assert!(!live.allowed("frontend/web", "198.51.100.7", 443), "no group yet");
    assert_as_file(&live, c, "no group");

    let group = |cidrs: &[&str]| fixtures::cilium_cidr_group(api, "partners", json!({"team": "a"}), cidrs);
    let rv = c.put(group(&["198.51.100.0/24"]));
    live.applied(Kind::CiliumCidrGroup, rv).await;
    assert!(live.allowed("frontend/web", "198.51.100.7", 443), "in the group");
    assert!(!live.allowed("frontend/web", "198.51.100.7", 5432), "another port");
    assert!(!live.allowed("frontend/web", "203.0.113.10", 443), "outside the group");
    assert_as_file(&live, c, "the group created");
    assert_same_answers(&live.engine(), &fresh(c).await, "the group created, as listed");

    let rv = c.put(group(&["203.0.113.0/24"]));
    live.applied(Kind::CiliumCidrGroup, rv).await;
    assert!(!live.allowed("frontend/web", "198.51.100.7", 443), "no longer in the group");
    assert!(live.allowed("frontend/web", "203.0.113.10", 443), "now in the group");
    assert_as_file(&live, c, "the group changed");

    let kind = if api == fixtures::CILIUM { ApiKind::CiliumCidrGroup } else { ApiKind::CiliumCidrGroupV2Alpha1 };
    let rv = c.server.delete_kind(kind, None, "partners").unwrap();
    live.applied(Kind::CiliumCidrGroup, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.10", 443), "the group gone");
    assert_as_file(&live, c, "the group deleted");
    assert_eq!(live.errors(), 0.0);
    assert!(live.metric("netpol_watch_events_total{kind=\"ciliumcidrgroups\",type=\"apply\"}") >= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_cilium_cidr_groups() {
    let c = cilium_cluster();
    c.put(to_partners());
    c.server.clear_requests();
    watch_follows_a_cidr_group(&c, fixtures::CILIUM).await;
    // Read at v2 (the group's resources were asked for), never at v2alpha1.
    let requests = c.server.requests();
    assert!(requests.iter().any(|r| r.path == "/apis/cilium.io/v2"), "{requests:?}");
    assert!(!requests.iter().any(|r| r.path == ApiKind::CiliumCidrGroupV2Alpha1.path()), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_cilium_serves_cidr_groups_at_v2alpha1() {
    let c = cilium_cluster();
    c.server.set_served(ApiKind::CiliumCidrGroup, false);
    c.put(to_partners());
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    assert_eq!(snap.cidr_groups, Some(fixtures::CILIUM_V2ALPHA1));
    assert!(!snap.absent().contains(&Kind::CiliumCidrGroup));
    c.server.clear_requests();
    watch_follows_a_cidr_group(&c, fixtures::CILIUM_V2ALPHA1).await;
    let requests = c.server.requests();
    let path = ApiKind::CiliumCidrGroupV2Alpha1.path();
    assert!(requests.iter().any(|r| r.path == path && r.is_watch()), "{requests:?}");
    assert!(!requests.iter().any(|r| r.path == ApiKind::CiliumCidrGroup.path()), "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_cidr_group_crd_the_rest_works() {
    let c = cilium_cluster();
    c.server.set_served(ApiKind::CiliumCidrGroup, false);
    c.server.set_served(ApiKind::CiliumCidrGroupV2Alpha1, false);
    c.put(to_partners());
    c.put(to_db());
    c.put(fixtures::service("backend", "db", None));
    c.put(fixtures::endpoint_slice("backend", "db-1", "db", &["203.0.113.10"]));
    c.server.clear_requests();
    // One-shot: no error, the kind absent, the rest read.
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without the CIDR group CRD");
    assert_eq!(snap.cidr_groups, None);
    assert!(snap.absent().contains(&Kind::CiliumCidrGroup), "{:?}", snap.absent());
    assert!(!snap.resource_versions().contains("ciliumcidrgroups"), "{}", snap.resource_versions());
    assert!(snap.resource_versions().contains(",endpointslices="), "{}", snap.resource_versions());
    let engine = Engine::new(netpol_kube::load_objects(snap.objects).cluster);
    assert!(allowed(&engine, "frontend/web", "203.0.113.10", 5432));
    assert!(!allowed(&engine, "frontend/web", "198.51.100.7", 443));
    let requests = c.server.requests();
    assert!(!requests.iter().any(|r| r.path.ends_with("/ciliumcidrgroups")), "not asked for: {requests:?}");

    // Watch: no error, no watch of it, the rest followed.
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.version(Kind::CiliumCidrGroup).is_none(), "{}", live.versions());
    assert!(live.allowed("frontend/web", "203.0.113.10", 5432));
    assert!(!live.allowed("frontend/web", "198.51.100.7", 443));
    let rv = c.put(fixtures::endpoint_slice("backend", "db-1", "db", &["203.0.113.11"]));
    live.applied(Kind::EndpointSlice, rv).await;
    assert!(!live.allowed("frontend/web", "203.0.113.10", 5432));
    assert!(live.allowed("frontend/web", "203.0.113.11", 5432));
    assert_as_file(&live, &c, "no CIDR group CRD");
    assert_eq!(live.errors(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_slices_deleted_while_the_watch_is_down_are_found_by_the_relist_after_410() {
    let c = cilium_cluster();
    c.put(to_db());
    c.put(fixtures::service("backend", "db", None));
    c.put(fixtures::endpoint_slice("backend", "db-1", "db", &["203.0.113.10"]));
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.allowed("frontend/web", "203.0.113.10", 5432));
    assert_eq!(live.metric("netpol_watch_lists_total{kind=\"endpointslices\"}"), 1.0);
    // Every watch is cut, and the history they would resume from is gone: they get 410 Gone and list again; the
    // slice deleted meanwhile is only found gone by the relist.
    c.put(fixtures::namespace("other", json!({})));
    c.server.compact();
    c.server.drop_watches();
    c.server.delete_kind(ApiKind::EndpointSlice, Some("backend"), "db-1").unwrap();
    eventually!("the relist", !live.allowed("frontend/web", "203.0.113.10", 5432));
    eventually!("every watch open again", c.server.open_watches() == watched_kinds(&c.server));
    assert_eq!(live.metric("netpol_watch_lists_total{kind=\"endpointslices\"}"), 2.0);
    assert!(live.metric("netpol_watch_errors_total{kind=\"endpointslices\"}") >= 1.0, "the 410 is counted");
    assert_as_file(&live, &c, "after the relist");
}
