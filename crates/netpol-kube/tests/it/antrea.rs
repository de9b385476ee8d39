//! Antrea's objects from a live cluster, through kube-rs's real client against `netpol-fakeapi`: Tier,
//! ClusterGroup, Group, ClusterNetworkPolicy (ACNP) and NetworkPolicy (ANNP) of `crd.antrea.io/v1beta1`, read where
//! discovery finds Antrea's group. A one-shot list answers as the same objects read from a file; the watch follows
//! them and what their lowering reads (namespaces): after each event the engine answers as a fresh list of the
//! cluster does; a cluster without Antrea's CRDs is no error.

use std::time::Duration;

use netpol_core::compile::Engine;
use netpol_core::load::{load_str, Diagnostic, Severity};
use netpol_core::portset::Protocol;
use netpol_fakeapi::fixtures::{self, antrea_cluster_group, antrea_cluster_policy, antrea_drop_web, antrea_objects};
use netpol_fakeapi::Kind as ApiKind;
use netpol_kube::Kind;
use serde_json::{json, Value};

use crate::common::{allowed, cluster, discoveries, endpoint, policy_kinds, watched_kinds, Cluster, Live};

/// Flows on the cluster of `antrea_objects`, with the verdicts its documentation gives.
const FLOWS: [(&str, &str, u16, bool); 4] = [
    ("frontend/web", "backend/api", 8080, true),
    ("frontend/web", "backend/api", 9090, false),
    ("frontend/web", "backend/api", 5432, false),
    ("backend/api", "frontend/web", 8080, true),
];

const ENDPOINTS: [&str; 5] = ["frontend/web", "backend/api", "203.0.113.1", "batch/a", "batch/b"];
const PORTS: [u16; 4] = [8080, 9090, 5432, 7000];

/// A fake API server with Antrea's CRDs, the small cluster and Antrea's objects of `antrea_objects`.
fn antrea_cluster() -> Cluster {
    let c = cluster();
    c.server.set_antrea(true);
    fixtures::seed_antrea(&c.server);
    c
}

/// The same objects as one JSON stream file, loaded as `netpol -f` loads files.
fn from_file() -> (Engine, Vec<Diagnostic>) {
    let mut objects = fixtures::two_namespaces();
    objects.extend(antrea_objects());
    let text: Vec<String> = objects.iter().map(Value::to_string).collect();
    let loaded = load_str("cluster.json", &text.join("\n"));
    (Engine::new(loaded.cluster), loaded.diagnostics)
}

/// An explanation as rendered text, without where each rule was read from (a file or the cluster).
fn explanation(e: &Engine, src: &str, dst: &str, port: u16) -> Option<String> {
    let known = |w: &str| {
        w.parse::<std::net::IpAddr>().is_ok()
            || w.split_once('/').is_some_and(|(ns, name)| e.cluster().find_pod(ns, name).is_some())
    };
    if !known(src) || !known(dst) {
        return None;
    }
    let text = e.explain(&endpoint(e, src), &endpoint(e, dst), Protocol::Tcp, port).render();
    Some(text.lines().map(|l| l.split(" (cluster").next().unwrap_or(l).to_string()).collect::<Vec<_>>().join("\n"))
}

/// Both engines answer alike among [`ENDPOINTS`] (those both have), and hold the same tiers and policies.
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

fn described(d: &Diagnostic) -> String {
    format!("{:?} {:?} {:?}: {}", d.severity, d.object, d.field, d.message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_antreas_crds_answers_as_the_same_objects_from_a_file() {
    let c = antrea_cluster();
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    assert!(snap.absent().iter().all(|k| !k.is_antrea()), "{:?}", snap.absent());
    let versions = snap.resource_versions();
    for plural in ["tiers.crd.antrea.io=", "clustergroups=", "groups=", "clusternetworkpolicies.crd.antrea.io="] {
        assert!(versions.contains(plural), "{versions}");
    }
    assert!(versions.contains("networkpolicies.crd.antrea.io="), "{versions}");
    let requests = c.server.requests();
    assert_eq!(discoveries(&requests), 1);
    for kind in [ApiKind::AntreaTier, ApiKind::AntreaClusterNetworkPolicy, ApiKind::AntreaNetworkPolicy] {
        assert!(requests.iter().any(|r| r.path == kind.path() && !r.is_watch()), "{kind:?} listed");
    }
    let loaded = netpol_kube::load_objects(snap.objects);
    let (file, file_diagnostics) = from_file();
    assert_eq!(
        loaded.diagnostics.iter().map(described).collect::<Vec<_>>(),
        file_diagnostics.iter().map(described).collect::<Vec<_>>()
    );
    let engine = Engine::new(loaded.cluster);
    assert_eq!(engine.cni(), netpol_core::cni::Cni::Antrea);
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&engine, src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&engine, &file, "a snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_without_antreas_crds_reads_none_and_is_no_error() {
    let c = cluster();
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without Antrea");
    for kind in Kind::ALL.into_iter().filter(|k| k.is_antrea()) {
        assert!(snap.absent().contains(&kind), "{:?}", snap.absent());
    }
    assert!(c.server.requests().iter().all(|r| !r.path.contains("crd.antrea.io")));
    let live = Live::start(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live.errors(), 0.0);
    assert!(live.version(Kind::AntreaClusterNetworkPolicy).is_none(), "{}", live.versions());
    assert!(c.server.requests().iter().all(|r| !r.path.contains("crd.antrea.io")));
    drop(live);

    // One CRD not installed (its list answers 404): absent, the others read.
    let c = antrea_cluster();
    c.server.set_served(ApiKind::AntreaGroup, false);
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without one CRD");
    assert!(snap.absent().contains(&Kind::AntreaGroup));
    assert!(!snap.absent().contains(&Kind::AntreaClusterNetworkPolicy));
    let live = Live::start(&c).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(live.errors(), 0.0);
    assert!(!live.allowed("frontend/web", "backend/api", 9090));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_antreas_objects_and_namespaces() {
    let c = antrea_cluster();
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    for (src, dst, port, want) in FLOWS {
        assert_eq!(live.allowed(src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&live.engine(), &fresh(&c).await, "the first list");
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());

    // A Drop ACNP added denies what was allowed; deleted, allowed again.
    let rv = c.put(antrea_drop_web());
    live.applied(Kind::AntreaClusterNetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080), "dropped");
    assert_same_answers(&live.engine(), &fresh(&c).await, "drop-web added");
    let rv = c.server.delete_kind(ApiKind::AntreaClusterNetworkPolicy, None, "drop-web").unwrap();
    live.applied(Kind::AntreaClusterNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080), "allowed again");
    assert_same_answers(&live.engine(), &fresh(&c).await, "drop-web deleted");

    // The group changes: no pod is in it any more, 9090 is no longer dropped.
    let rv = c.put(antrea_cluster_group("web-pods", json!({"podSelector": {"matchLabels": {"app": "none"}}})));
    live.applied(Kind::AntreaClusterGroup, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 9090));
    assert_same_answers(&live.engine(), &fresh(&c).await, "the group changed");

    // An ACNP in a Tier that does not exist: refused (reported), then admitted once the Tier is there.
    let isolate = antrea_cluster_policy(
        "same-namespace-7000",
        json!({
            "tier": "later", "priority": 1,
            "appliedTo": [{"namespaceSelector": {}}],
            "ingress": [
                {"action": "Allow", "from": [{"namespaces": {"match": "Self"}}], "ports": [{"protocol": "TCP", "port": 7000}]},
                {"action": "Drop", "from": [{"namespaceSelector": {}}], "ports": [{"protocol": "TCP", "port": 7000}]},
            ],
        }),
    );
    let rv = c.put(isolate);
    live.applied(Kind::AntreaClusterNetworkPolicy, rv).await;
    let errors: Vec<Diagnostic> = live.diagnostics().into_iter().filter(|d| d.severity == Severity::Error).collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(&*errors[0].origin.file, "cluster:clusternetworkpolicies.crd.antrea.io/same-namespace-7000");
    assert!(errors[0].message.contains("no Tier later"), "{errors:?}");
    assert!(live.allowed("frontend/web", "backend/api", 7000));
    let rv = c.put(fixtures::antrea_tier("later", 30));
    live.applied(Kind::AntreaTier, rv).await;
    eventually!("the refusal gone", live.diagnostics().is_empty());
    assert!(!live.allowed("frontend/web", "backend/api", 7000), "dropped across namespaces");
    assert_same_answers(&live.engine(), &fresh(&c).await, "the Tier added");

    // Pods in a new namespace: the Self rule covers it (its own pods reach each other), as a fresh list does.
    let rv = c.put(fixtures::namespace("batch", json!({"team": "batch"})));
    live.applied(Kind::Namespace, rv).await;
    c.put(fixtures::pod("batch", "a", json!({"app": "a"}), "10.0.3.1"));
    let rv = c.put(fixtures::pod("batch", "b", json!({"app": "b"}), "10.0.3.2"));
    live.applied(Kind::Pod, rv).await;
    assert!(live.allowed("batch/a", "batch/b", 7000));
    assert!(!live.allowed("frontend/web", "batch/b", 7000));
    assert_same_answers(&live.engine(), &fresh(&c).await, "a namespace added");

    // The ANNP deleted, then the Tier of the ACNP: it is refused again.
    let rv = c.server.delete_kind(ApiKind::AntreaNetworkPolicy, Some("backend"), "api-self").unwrap();
    live.applied(Kind::AntreaNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 5432));
    assert_same_answers(&live.engine(), &fresh(&c).await, "the ANNP deleted");
    let rv = c.server.delete_kind(ApiKind::AntreaTier, None, "later").unwrap();
    live.applied(Kind::AntreaTier, rv).await;
    assert!(live.allowed("frontend/web", "batch/b", 7000));
    eventually!("the refusal back", live.diagnostics().len() == 1);
    assert_eq!(live.errors(), 0.0);
    assert!(live.metric("netpol_live_recompiles_total ") >= 6.0);
}
