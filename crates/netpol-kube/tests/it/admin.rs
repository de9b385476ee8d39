//! The admin network policy CRDs (`policy.networking.k8s.io`) and Nodes from a live cluster, through kube-rs's
//! real client against `netpol-fakeapi` (an API server written for these tests that speaks the real wire
//! protocol over plain HTTP): what the one-shot snapshot and the watch ask for (one list of every kind at its real
//! path, a watch of every kind the cluster serves, a `404` for a CRD that is not installed taken as "none"), the
//! objects they hand to the loader, and what the engine answers as admin policies and nodes come and go.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use netpol_core::compile::Engine;
use netpol_core::model::PolicyKind;
use netpol_fakeapi::fixtures::{
    self, anp_deny_frontend, banp_default, cnp_accept_web, cnp_deny_nodes, node, worker_node,
};
use netpol_kube::Kind;
use serde_json::json;

use crate::common::{allowed, cluster, discoveries, lists, policy_kinds, watches, without_calico, Live};

// ---- one-shot ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_lists_admin_policies_and_nodes() {
    let c = cluster();
    for o in [anp_deny_frontend(), banp_default(), cnp_accept_web(), worker_node()] {
        c.put(o);
    }
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");

    // Discovery (no Calico here: its kinds and service accounts are not asked for), then one list of every other
    // kind at its real path, in pages, and nothing else.
    let requests = c.server.requests();
    for kind in without_calico() {
        let l = lists(&requests, kind);
        assert_eq!(l.len(), 1, "{kind:?}: {requests:?}");
        assert!(l[0].has_param("limit", "500"), "{:?}", l[0]);
    }
    assert_eq!(discoveries(&requests), 1);
    assert_eq!(requests.len(), without_calico().len() + 1, "{requests:?}");
    assert_eq!(
        snap.absent(),
        Kind::ALL.into_iter().filter(|k| k.is_calico() || k.is_cilium() || k.is_antrea()).collect::<Vec<_>>()
    );
    assert_eq!(snap.calico, None);
    let rv = c.server.resource_version();
    let every = without_calico().iter().map(|k| format!("{}={rv}", k.plural())).collect::<Vec<_>>().join(",");
    assert_eq!(snap.resource_versions(), every);
    assert!(every.contains(",nodes=") && every.ends_with(&format!(",baselineadminnetworkpolicies={rv}")));

    // The objects, named by kind and name, typed (list items come without kind and apiVersion).
    let names: BTreeSet<String> = snap.objects.iter().map(|o| o.source_name()).collect();
    for name in [
        "cluster:adminnetworkpolicies/deny-frontend",
        "cluster:baselineadminnetworkpolicies/default",
        "cluster:clusternetworkpolicies/accept-web",
        "cluster:nodes/worker-1",
        "cluster:pods/backend/api",
    ] {
        assert!(names.contains(name), "{name} in {names:?}");
    }
    for o in &snap.objects {
        let v = o.value.as_ref().expect("a value");
        assert_eq!(v["kind"], o.kind.name(), "{v}");
        assert_eq!(v["apiVersion"], o.kind.api_version(), "{v}");
        if o.kind.is_optional() {
            assert!(o.namespace.is_empty() && v["spec"]["subject"].is_object(), "{v}");
        }
    }
    let node = snap.objects.iter().find(|o| o.kind == Kind::Node).expect("the node");
    assert_eq!(node.value.as_ref().unwrap()["status"]["addresses"][1]["address"], "192.168.1.11");

    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert!(loaded.skipped_kinds.is_empty(), "{:?}", loaded.skipped_kinds);
    let engine = Engine::new(loaded.cluster);
    assert_eq!(
        policy_kinds(&engine),
        [PolicyKind::ClusterNetworkPolicy, PolicyKind::AdminNetworkPolicy, PolicyKind::BaselineAdminNetworkPolicy]
    );
    let c = engine.cluster();
    assert_eq!(c.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["worker-1"]);
    assert_eq!(c.nodes[0].ips, ["192.168.1.11".parse::<IpAddr>().unwrap()]);
    // The ClusterNetworkPolicy accepts 8080 (priority 10) before the AdminNetworkPolicy denies the rest (20).
    assert!(allowed(&engine, "frontend/web", "backend/api", 8080));
    assert!(!allowed(&engine, "frontend/web", "backend/api", 9090));
    // The BaselineAdminNetworkPolicy denies ingress to frontend.
    assert!(!allowed(&engine, "backend/api", "frontend/web", 8080));
}

#[test]
fn a_cluster_without_the_crds_loads_normally() {
    let c = cluster();
    c.put(worker_node());
    c.server.set_crds_installed(false);
    c.server.clear_requests();
    let (loaded, line) = netpol_kube::snapshot_blocking(&c.source()).expect("no error without the CRDs");
    let rv = c.server.resource_version();
    assert_eq!(
        line,
        format!(
            "answered from {} at resourceVersion pods={rv} networkpolicies={rv} namespaces={rv} nodes={rv}",
            c.server.url()
        )
    );
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let requests = c.server.requests();
    for kind in without_calico() {
        assert_eq!(lists(&requests, kind).len(), 1, "one list, no retry, of {kind:?}: {requests:?}");
    }
    let engine = Engine::new(loaded.cluster);
    assert!(allowed(&engine, "frontend/web", "backend/api", 8080));
    assert_eq!(engine.cluster().nodes.len(), 1);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let snap = rt.block_on(netpol_kube::snapshot(&c.source())).unwrap();
    let optional: Vec<Kind> =
        Kind::ALL.into_iter().filter(|k| k.is_optional() || k.is_calico() || k.is_cilium()).collect();
    assert_eq!(snap.absent(), optional);
    assert!(snap.objects.iter().all(|o| !o.kind.is_optional()));
}

// ---- watch ----
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_admin_policies_and_nodes() {
    let c = cluster();
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == without_calico().len());
    let requests = c.server.requests();
    for kind in Kind::ALL {
        let want = usize::from(!kind.is_calico() && !kind.is_cilium() && !kind.is_antrea());
        assert_eq!(lists(&requests, kind).len(), want, "{kind:?}: {requests:?}");
        assert_eq!(watches(&requests, kind).len(), want, "{kind:?}: {requests:?}");
    }
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    assert_eq!(live.version(Kind::AdminNetworkPolicy).as_deref(), Some("-"));
    let changes = live.metric("netpol_live_changes_total ");

    // An AdminNetworkPolicy whose Deny rule blocks the flow, then its deletion.
    let rv = c.put(anp_deny_frontend());
    live.applied(Kind::AdminNetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080));
    assert_eq!(policy_kinds(&live.engine()), [PolicyKind::AdminNetworkPolicy]);
    assert_eq!(&*live.engine().cluster().policies[0].origin.file, "cluster:adminnetworkpolicies/deny-frontend");
    let rv = c.server.delete("AdminNetworkPolicy", None, "deny-frontend").expect("it existed");
    live.applied(Kind::AdminNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    assert!(live.engine().cluster().policies.is_empty());

    // The BaselineAdminNetworkPolicy and a ClusterNetworkPolicy of the Admin tier, together.
    c.put(banp_default());
    let rv = c.put(cnp_accept_web());
    live.applied(Kind::ClusterNetworkPolicy, rv).await;
    assert_eq!(
        policy_kinds(&live.engine()),
        [PolicyKind::ClusterNetworkPolicy, PolicyKind::BaselineAdminNetworkPolicy]
    );
    assert!(!live.allowed("backend/api", "frontend/web", 8080), "the baseline denies");
    let rv = c.server.delete("BaselineAdminNetworkPolicy", None, "default").expect("it existed");
    live.applied(Kind::BaselineAdminNetworkPolicy, rv).await;
    assert!(live.allowed("backend/api", "frontend/web", 8080));

    // Nodes: a `nodes` peer matches the addresses of the nodes the cluster has.
    let rv = c.put(cnp_deny_nodes());
    live.applied(Kind::ClusterNetworkPolicy, rv).await;
    let node_ip = "192.168.1.11";
    assert!(live.allowed("frontend/web", node_ip, 10250), "no node has the address yet");
    let rv = c.put(worker_node());
    live.applied(Kind::Node, rv).await;
    assert!(!live.allowed("frontend/web", node_ip, 10250), "denied to the node");
    assert!(live.allowed("backend/api", node_ip, 10250), "only frontend is the subject");
    assert_eq!(live.engine().cluster().nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["worker-1"]);
    // Relabelled out of the peer's selector, then deleted.
    let rv = c.put(node("worker-1", json!({"kubernetes.io/os": "windows"}), node_ip));
    live.applied(Kind::Node, rv).await;
    assert!(live.allowed("frontend/web", node_ip, 10250));
    let rv = c.put(worker_node());
    live.applied(Kind::Node, rv).await;
    assert!(!live.allowed("frontend/web", node_ip, 10250));
    let rv = c.server.delete("Node", None, "worker-1").expect("it existed");
    live.applied(Kind::Node, rv).await;
    assert!(live.allowed("frontend/web", node_ip, 10250));
    assert!(live.engine().cluster().nodes.is_empty());

    // Every event above changed the model once (the ANP put and deleted; the BANP and a CNP put, the BANP
    // deleted; the second CNP; the node put, relabelled, put back, deleted), and none was an error or a relist.
    let applied = live.metric("netpol_live_changes_total ") - changes;
    assert_eq!(applied, 10.0);
    assert_eq!(live.errors(), 0.0);
    for kind in Kind::ALL {
        let want = if kind.is_calico() || kind.is_cilium() || kind.is_antrea() { 0.0 } else { 1.0 };
        assert_eq!(live.metric(&format!("netpol_watch_lists_total{{kind=\"{}\"}}", kind.plural())), want);
    }
    assert_eq!(live.metric("netpol_watch_events_total{kind=\"nodes\",type=\"apply\"}"), 3.0);
    assert_eq!(live.metric("netpol_watch_events_total{kind=\"nodes\",type=\"delete\"}"), 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_without_the_crds() {
    let c = cluster();
    c.put(worker_node());
    c.server.set_crds_installed(false);
    let live = Live::start(&c).await;
    eventually!("a watch of every built-in kind", c.server.open_watches() == 4);
    // The namespaces, then the pods, then the node were put.
    let rv = c.server.resource_version();
    assert_eq!(live.versions(), format!("pods={},networkpolicies=-,namespaces={},nodes={rv}", rv - 1, rv - 3));
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    // Longer than the first retry's backoff (0.8 s): the CRDs are not retried, and none of it is an error.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = c.server.requests();
    for kind in Kind::ALL {
        assert_eq!(
            lists(&requests, kind).len(),
            usize::from(!kind.is_calico() && !kind.is_cilium() && !kind.is_antrea()),
            "{kind:?}: {requests:?}"
        );
        let want = usize::from(!kind.is_optional() && !kind.is_calico() && !kind.is_cilium() && !kind.is_antrea());
        assert_eq!(watches(&requests, kind).len(), want, "{kind:?}: {requests:?}");
    }
    assert_eq!(live.errors(), 0.0);
    assert_eq!(c.server.open_watches(), 4);
    // The other kinds are watched as usual.
    let rv = c.put(fixtures::default_deny());
    live.applied(Kind::NetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_removed_while_watched_take_their_policies_with_them() {
    let c = cluster();
    c.put(anp_deny_frontend());
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == without_calico().len());
    assert!(!live.allowed("frontend/web", "backend/api", 8080));
    // The CRDs' finalizer deletes their objects, then their watches end and their paths are gone (404).
    c.server.set_crds_installed(false);
    eventually!("the CRD kinds absent", live.version(Kind::AdminNetworkPolicy).is_none());
    eventually!("the CRD kinds absent", live.version(Kind::ClusterNetworkPolicy).is_none());
    eventually!("the CRD kinds absent", live.version(Kind::BaselineAdminNetworkPolicy).is_none());
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    assert!(live.engine().cluster().policies.is_empty());
    assert_eq!(c.server.open_watches(), 4);
    assert_eq!(live.errors(), 0.0);
    assert!(live.versions().starts_with("pods="), "{}", live.versions());
}
