//! Calico's objects from a live cluster, through kube-rs's real client against `netpol-fakeapi`: Tiers, Calico's
//! NetworkPolicies and GlobalNetworkPolicies, NetworkSets and GlobalNetworkSets (under Calico's CRDs' group, or its
//! API server's when the cluster serves it), and the ServiceAccounts their selectors see. A one-shot list answers
//! as the same objects read from a file; the watch follows them (the engine after each event answers as a fresh
//! list of the cluster does); a cluster without Calico, or without one of its CRDs, is no error; a kind RBAC does
//! not grant is one. Calico's staged policies (StagedNetworkPolicy, StagedGlobalNetworkPolicy,
//! StagedKubernetesNetworkPolicy) are read and watched the same way into `Cluster::staged`: never enforced, their
//! staged view answers as a fresh list's does. Calico's HostEndpoints are read and watched like its other kinds:
//! the host checks of flows to a host's address answer as the same objects from a file, and follow every change
//! (the endpoint, the policies guarding it, the Node whose address an all-interfaces endpoint takes).

use std::time::Duration;

use netpol_core::compile::Engine;
use netpol_core::load::{load_str, Severity};
use netpol_core::model::PolicyKind;
use netpol_core::portset::Protocol;
use netpol_fakeapi::fixtures::{
    self, calico_deny_web, calico_host_endpoint, calico_host_kubelet, calico_network_set, calico_objects,
    calico_staged_delete_partners, calico_staged_deny_web, calico_staged_isolate_web, calico_tier,
    calico_worker_endpoint, seed_calico, service_account, worker_node, CALICO_CRD, CALICO_V3,
};
use netpol_fakeapi::{Calico, Kind as ApiKind, RequestLog};
use netpol_kube::{CalicoApi, Kind};
use serde_json::{json, Value};

use crate::common::{allowed, cluster, discoveries, endpoint, policy_kinds, watched_kinds, Cluster, Live};

/// Flows on the cluster of `calico_objects`, with the verdicts its documentation gives.
const FLOWS: [(&str, &str, u16, bool); 8] = [
    ("frontend/web", "backend/api", 8080, true),
    ("frontend/web", "backend/api", 9090, false),
    ("192.0.2.7", "backend/api", 8080, true),
    ("198.51.100.7", "backend/api", 8080, false),
    ("198.51.100.7", "frontend/web", 8080, false),
    ("backend/api", "frontend/web", 8080, true),
    ("203.0.113.1", "frontend/web", 8080, true),
    ("203.0.113.1", "backend/api", 8080, false),
];

/// Endpoints and ports whose every combination two engines must agree on.
const ENDPOINTS: [&str; 6] = ["frontend/web", "backend/api", "192.0.2.7", "198.51.100.7", "203.0.113.1", "10.9.9.9"];
const PORTS: [u16; 3] = [8080, 9090, 53];

/// A fake API server serving `calico`, with the small cluster and Calico's objects of `api` in it.
fn calico_cluster(calico: Calico, api: &str) -> Cluster {
    let c = cluster();
    c.server.set_calico(calico);
    seed_calico(&c.server, api);
    c
}

/// The same objects as one JSON stream file, loaded as `netpol -f` loads files.
fn from_file(api: &str) -> Engine {
    from_file_with(api, vec![])
}

/// [`from_file`], with `extra` objects after Calico's.
fn from_file_with(api: &str, extra: Vec<Value>) -> Engine {
    let mut objects = fixtures::two_namespaces();
    objects.extend(calico_objects(api));
    objects.extend(extra);
    // As the server holds them: a later object of the same kind and name replaces an earlier one.
    let key = |o: &Value| {
        (o["apiVersion"].clone(), o["kind"].clone(), o["metadata"]["namespace"].clone(), o["metadata"]["name"].clone())
    };
    let text: Vec<String> = objects
        .iter()
        .enumerate()
        .filter(|(i, o)| objects[i + 1..].iter().all(|later| key(later) != key(o)))
        .map(|(_, o)| o.to_string())
        .collect();
    let loaded = load_str("cluster.json", &text.join("\n"));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    Engine::new(loaded.cluster)
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

/// Both engines answer alike: every verdict and explanation (walk, tiers, policies, rules) among [`ENDPOINTS`].
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
}

fn calico_kinds() -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|k| k.is_calico()).collect()
}

/// The fake server's kind of one of netpol's, under Calico's `api`.
fn api_kind_in(kind: Kind, api: &str) -> ApiKind {
    let api_version = if kind.is_calico() && kind != Kind::ServiceAccount { api } else { kind.api_version() };
    ApiKind::from_api_version(api_version, kind.name()).expect("a kind the fake server serves")
}

fn lists_of(requests: &[RequestLog], path: &str) -> usize {
    requests.iter().filter(|r| r.path == path && !r.is_watch()).count()
}

// ---- one-shot ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_calicos_crds_answers_as_the_same_objects_from_a_file() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    assert_eq!(snap.calico, Some(CalicoApi::Crds));
    assert!(snap.absent().iter().all(|k| !k.is_calico()), "{:?}", snap.absent());
    // Discovery, then one list of every kind at its path under Calico's CRDs' group.
    let requests = c.server.requests();
    assert_eq!(discoveries(&requests), 1);
    for kind in calico_kinds() {
        let path = api_kind_in(kind, CALICO_CRD).path();
        assert_eq!(lists_of(&requests, &path), 1, "{path}: {requests:?}");
    }
    assert!(requests.iter().all(|r| !r.path.starts_with("/apis/projectcalico.org")), "{requests:?}");
    let rv = c.server.resource_version();
    assert!(
        snap.resource_versions().ends_with(&format!(
            ",tiers={rv},networkpolicies.projectcalico.org={rv},globalnetworkpolicies={rv},networksets={rv},\
             globalnetworksets={rv},serviceaccounts={rv},stagednetworkpolicies={rv},stagedglobalnetworkpolicies={rv},\
             stagedkubernetesnetworkpolicies={rv},hostendpoints={rv}"
        )),
        "{}",
        snap.resource_versions()
    );
    let names: Vec<String> = snap.objects.iter().filter(|o| o.kind.is_calico()).map(|o| o.source_name()).collect();
    for name in [
        "cluster:tiers/security",
        "cluster:globalnetworkpolicies/security.allow-web",
        "cluster:globalnetworksets/blocked",
        "cluster:networksets/backend/partners",
        "cluster:networkpolicies.projectcalico.org/backend/allow-partners",
        "cluster:serviceaccounts/frontend/web-sa",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    for o in snap.objects.iter().filter(|o| o.kind.is_calico() && o.kind != Kind::ServiceAccount) {
        assert_eq!(o.value.as_ref().unwrap()["apiVersion"], CALICO_CRD);
    }

    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let live = Engine::new(loaded.cluster);
    let file = from_file(CALICO_CRD);
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&live, src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&live, &file, "one-shot");
    let tiers: Vec<&str> = live.cluster().tiers.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tiers, ["kube-admin", "default", "kube-baseline", "security"]);
    assert_eq!(
        policy_kinds(&live),
        [PolicyKind::CalicoNetworkPolicy, PolicyKind::GlobalNetworkPolicy, PolicyKind::GlobalNetworkPolicy]
    );
    // The serviceAccounts selector matched frontend/web through its ServiceAccount's labels.
    let e = explanation(&live, "frontend/web", "backend/api", 8080);
    assert!(e.to_string().contains("security.allow-web"), "{e}");

    // The line the one-shot commands print says where Calico's objects came from.
    let source = c.source();
    let (_, line) =
        tokio::task::spawn_blocking(move || netpol_kube::snapshot_blocking(&source)).await.unwrap().unwrap();
    assert!(line.ends_with(" (Calico's objects from crd.projectcalico.org/v1)"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_calicos_api_server_its_group_is_read() {
    let c = calico_cluster(Calico::ApiServer, CALICO_V3);
    // The CRDs are there too (the fake server keeps the two groups apart): not read.
    c.put(calico_tier(CALICO_CRD, "crd-only", 1.0));
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    assert_eq!(snap.calico, Some(CalicoApi::ApiServer));
    let requests = c.server.requests();
    for kind in calico_kinds() {
        assert_eq!(lists_of(&requests, &api_kind_in(kind, CALICO_V3).path()), 1, "{kind:?}: {requests:?}");
    }
    assert!(requests.iter().all(|r| !r.path.starts_with("/apis/crd.projectcalico.org")), "{requests:?}");
    for o in snap.objects.iter().filter(|o| o.kind.is_calico() && o.kind != Kind::ServiceAccount) {
        assert_eq!(o.value.as_ref().unwrap()["apiVersion"], CALICO_V3, "{}", o.source_name());
    }
    assert!(snap.objects.iter().all(|o| o.name != "crd-only"));
    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let live = Engine::new(loaded.cluster);
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&live, src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&live, &from_file(CALICO_V3), "one-shot, API server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_calico_crd_is_no_error() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    c.server.set_served(ApiKind::CalicoGlobalNetworkSet, false);
    let snap = netpol_kube::snapshot(&c.source()).await.expect("no error without one CRD");
    // (and Cilium's kinds, and the Services and endpoints only they read: the cluster does not serve its group)
    assert_eq!(
        snap.absent(),
        [
            Kind::GlobalNetworkSet,
            Kind::CiliumNetworkPolicy,
            Kind::CiliumClusterwideNetworkPolicy,
            Kind::CiliumCidrGroup,
            Kind::Service,
            Kind::EndpointSlice,
            Kind::Endpoints,
            Kind::AntreaTier,
            Kind::AntreaClusterGroup,
            Kind::AntreaGroup,
            Kind::AntreaClusterNetworkPolicy,
            Kind::AntreaNetworkPolicy
        ]
    );
    assert!(!snap.resource_versions().contains("globalnetworksets"), "{}", snap.resource_versions());
    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let engine = Engine::new(loaded.cluster);
    // No GlobalNetworkSet: `security.deny-blocked` matches no address.
    assert!(allowed(&engine, "198.51.100.7", "frontend/web", 8080));
    assert!(allowed(&engine, "frontend/web", "backend/api", 8080));

    // The watch: synced, the kind not watched, no error.
    let live = Live::start(&c).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(live.errors(), 0.0);
    assert!(live.version(Kind::GlobalNetworkSet).is_none(), "{}", live.versions());
    assert!(live.version(Kind::Tier).is_some());
    let requests = c.server.requests();
    let path = ApiKind::CalicoGlobalNetworkSet.path();
    assert!(!requests.iter().any(|r| r.path == path && r.is_watch()), "{requests:?}");
    assert!(live.allowed("198.51.100.7", "frontend/web", 8080));
}

#[test]
fn a_cluster_without_calico_reads_no_calico_kind_and_no_service_account() {
    let c = cluster();
    c.put(service_account("frontend", "web-sa", json!({"role": "web"})));
    c.server.clear_requests();
    let (loaded, line) = netpol_kube::snapshot_blocking(&c.source()).expect("no error without Calico");
    assert!(!line.contains("serviceaccounts") && !line.contains("Calico"), "{line}");
    assert!(loaded.cluster.service_accounts.iter().all(|a| a.origin.is_none()));
    let requests = c.server.requests();
    assert!(requests.iter().all(|r| !r.path.contains("projectcalico") && !r.path.contains("serviceaccounts")));
    assert_eq!(discoveries(&requests), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calico_kind_rbac_does_not_grant_is_an_error() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    c.server.set_forbidden(ApiKind::CalicoTier, true);
    let error = netpol_kube::snapshot(&c.source()).await.err().expect("a 403 is an error");
    let text = format!("{error:#}");
    assert!(text.contains("cannot list tiers (crd.projectcalico.org/v1)"), "{text}");
    assert!(text.contains("forbidden"), "{text}");

    // The watch retries with backoff, counting the errors; the model waits for every kind's first list.
    let live = Live::spawn(&c).await;
    eventually!("a counted error", live.metric("netpol_watch_errors_total{kind=\"tiers\"}") >= 1.0);
    assert!(!live.metrics.synced());
    // Granted: the retry lists it and the model is built.
    c.server.set_forbidden(ApiKind::CalicoTier, false);
    eventually!("the first full list", live.metrics.synced());
    assert!(live.allowed("frontend/web", "backend/api", 8080));
}

// ---- watch ----

/// What a fresh list of the cluster answers now.
async fn fresh(c: &Cluster) -> Engine {
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    Engine::new(netpol_kube::load_objects(snap.objects).cluster)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_calicos_objects() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    for (src, dst, port, want) in FLOWS {
        assert_eq!(live.allowed(src, dst, port), want, "{src} -> {dst} {port}");
    }
    assert_same_answers(&live.engine(), &fresh(&c).await, "the first list");
    let recompiles = live.metric("netpol_live_recompiles_total ");

    // A GlobalNetworkPolicy that denies the flow, then its deletion.
    let rv = c.put(calico_deny_web(CALICO_CRD));
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080), "denied");
    let e = explanation(&live.engine(), "frontend/web", "backend/api", 8080);
    assert!(e.to_string().contains("security.deny-web"), "{e}");
    assert_same_answers(&live.engine(), &fresh(&c).await, "deny-web put");
    let rv = c.server.delete_kind(ApiKind::CalicoGlobalNetworkPolicy, None, "security.deny-web").unwrap();
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080), "allowed again");
    assert_same_answers(&live.engine(), &fresh(&c).await, "deny-web deleted");

    // The service account's labels are what the serviceAccounts selector matches.
    let rv = c.server.delete("ServiceAccount", Some("frontend"), "web-sa").unwrap();
    live.applied(Kind::ServiceAccount, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080), "web-sa has no labels any more");
    assert_same_answers(&live.engine(), &fresh(&c).await, "service account deleted");
    let rv = c.put(service_account("frontend", "web-sa", json!({"role": "web"})));
    live.applied(Kind::ServiceAccount, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080));

    // A pod's service account.
    let rv = c.put(fixtures::pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"));
    live.applied(Kind::Pod, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080), "web runs as `default` now");
    assert_same_answers(&live.engine(), &fresh(&c).await, "pod without its service account");
    let rv = c.put(fixtures::pod_as("frontend", "web", json!({"app": "web"}), "10.0.1.1", "web-sa"));
    live.applied(Kind::Pod, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080));

    // Network sets: the partners' addresses, then a relabelled GlobalNetworkSet.
    let rv = c.server.delete_kind(ApiKind::CalicoNetworkSet, Some("backend"), "partners").unwrap();
    live.applied(Kind::NetworkSet, rv).await;
    assert!(!live.allowed("192.0.2.7", "backend/api", 8080));
    let rv = c.put(calico_network_set(CALICO_CRD, None, "blocked", json!({"kind": "other"}), &["198.51.100.0/24"]));
    live.applied(Kind::GlobalNetworkSet, rv).await;
    assert!(live.allowed("198.51.100.7", "frontend/web", 8080), "no longer kind=blocked");
    assert_same_answers(&live.engine(), &fresh(&c).await, "network sets changed");

    // The Tier deleted: its policies stay, in a tier netpol assumes (after every ordered tier), with the
    // loader's warning; the Tier back: no warning.
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());
    let rv = c.server.delete_kind(ApiKind::CalicoTier, None, "security").unwrap();
    live.applied(Kind::Tier, rv).await;
    assert_same_answers(&live.engine(), &fresh(&c).await, "tier deleted");
    let d = live.diagnostics();
    assert_eq!(d.len(), 2, "{d:?}");
    assert!(d.iter().all(|d| d.severity == Severity::Warning && d.field.as_deref() == Some("spec.tier")), "{d:?}");
    assert_eq!(&*d[0].origin.file, "cluster:globalnetworkpolicies/security.allow-web");
    let rv = c.put(calico_tier(CALICO_CRD, "security", 100.0));
    live.applied(Kind::Tier, rv).await;
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());
    assert_same_answers(&live.engine(), &fresh(&c).await, "tier back");

    // Calico's NetworkPolicy deleted: nothing of the default tier selects backend/api any more.
    let rv = c.server.delete_kind(ApiKind::CalicoNetworkPolicy, Some("backend"), "allow-partners").unwrap();
    live.applied(Kind::CalicoNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 9090));
    assert_same_answers(&live.engine(), &fresh(&c).await, "Calico NetworkPolicy deleted");

    // An invalid object is reported like any other and left out.
    let mut bad = calico_deny_web(CALICO_CRD);
    bad["spec"]["ingress"][0]["action"] = json!("Reject");
    let rv = c.put(bad);
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    let d = live.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].severity, &*d[0].origin.file),
        (Severity::Error, "cluster:globalnetworkpolicies/security.deny-web")
    );
    assert_eq!(d[0].field.as_deref(), Some("spec.ingress[0].action"));
    assert!(live.allowed("frontend/web", "backend/api", 8080));

    // Every batch with Calico objects recompiled; nothing was an error or a relist.
    assert!(live.metric("netpol_live_recompiles_total ") > recompiles);
    assert_eq!(live.errors(), 0.0);
    for kind in calico_kinds() {
        assert_eq!(live.metric(&format!("netpol_watch_lists_total{{kind=\"{}\"}}", kind.plural())), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_calicos_api_server() {
    let c = calico_cluster(Calico::ApiServer, CALICO_V3);
    let live = Live::start(&c).await;
    for (src, dst, port, want) in FLOWS {
        assert_eq!(live.allowed(src, dst, port), want, "{src} -> {dst} {port}");
    }
    let rv = c.put(calico_deny_web(CALICO_V3));
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(!live.allowed("frontend/web", "backend/api", 8080));
    let rv = c.server.delete_kind(ApiKind::CalicoV3GlobalNetworkPolicy, None, "security.deny-web").unwrap();
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "backend/api", 8080));
    let requests = c.server.requests();
    assert!(requests.iter().all(|r| !r.path.starts_with("/apis/crd.projectcalico.org")), "{requests:?}");
    let path = ApiKind::CalicoV3GlobalNetworkPolicy.path();
    assert!(requests.iter().any(|r| r.path == path && r.is_watch()), "{requests:?}");
}

// ---- staged policies ----

/// The staged view of an engine's cluster, compiled.
fn staged_view(e: &Engine) -> Engine {
    Engine::new(e.cluster().with_staged())
}

/// The staged kinds under `api`, with the three staged fixtures put: listed once, loaded into `Cluster::staged`
/// (never enforced), and the staged view answers as the same objects from a file.
async fn staged_snapshot(calico: Calico, api: &str) {
    let c = calico_cluster(calico, api);
    for o in [calico_staged_deny_web(api), calico_staged_delete_partners(api), calico_staged_isolate_web(api)] {
        c.put(o);
    }
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    let requests = c.server.requests();
    for kind in [Kind::StagedNetworkPolicy, Kind::StagedGlobalNetworkPolicy, Kind::StagedKubernetesNetworkPolicy] {
        assert_eq!(lists_of(&requests, &api_kind_in(kind, api).path()), 1, "{kind:?}: {requests:?}");
    }
    let names: Vec<String> = snap.objects.iter().map(|o| o.source_name()).collect();
    for name in [
        "cluster:stagedglobalnetworkpolicies/security.staged-deny-web",
        "cluster:stagednetworkpolicies/backend/allow-partners",
        "cluster:stagedkubernetesnetworkpolicies/frontend/isolate-web",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    assert_eq!(loaded.cluster.staged.len(), 3);
    let live = Engine::new(loaded.cluster);
    // Enforced: as without them.
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&live, src, dst, port), want, "{src} -> {dst} {port}");
    }
    let staged = staged_view(&live);
    assert!(!allowed(&staged, "frontend/web", "backend/api", 8080), "the staged deny-web");
    assert!(allowed(&staged, "192.0.2.7", "backend/api", 9090), "allow-partners deleted");
    assert!(!allowed(&staged, "backend/api", "frontend/web", 8080), "isolate-web");
    // As the same objects from a file.
    let staged_objects =
        vec![calico_staged_deny_web(api), calico_staged_delete_partners(api), calico_staged_isolate_web(api)];
    let file = from_file_with(api, staged_objects);
    assert_eq!(file.cluster().staged.len(), 3);
    assert_same_answers(&staged, &staged_view(&file), "the staged view, one-shot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_calicos_staged_policies_from_either_group() {
    staged_snapshot(Calico::Crds, CALICO_CRD).await;
    staged_snapshot(Calico::ApiServer, CALICO_V3).await;
}

/// The watch follows staged policies: put, replaced, deleted, and a Tier going away under one; the enforced
/// engine never changes (and is not recompiled for them), the staged view answers as a fresh list's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_calicos_staged_policies() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.engine().cluster().staged.is_empty());
    let recompiles = live.metric("netpol_live_recompiles_total ");
    let check = |live: &Engine, what: &str| {
        for (src, dst, port, want) in FLOWS {
            assert_eq!(allowed(live, src, dst, port), want, "{what}: enforced {src} -> {dst} {port}");
        }
    };

    let rv = c.put(calico_staged_deny_web(CALICO_CRD));
    live.applied(Kind::StagedGlobalNetworkPolicy, rv).await;
    let e = live.engine();
    assert_eq!(e.cluster().staged.len(), 1);
    check(&e, "staged deny-web");
    assert!(!allowed(&staged_view(&e), "frontend/web", "backend/api", 8080));
    assert_same_answers(&staged_view(&e), &staged_view(&fresh(&c).await), "staged deny-web put");
    // The staged view is published with the engine, compiled.
    let published = live.staged().expect("a staged view");
    assert_same_answers(&published, &staged_view(&e), "the published staged view");
    // Staged policies are not compiled into the enforced engine.
    assert_eq!(live.metric("netpol_live_recompiles_total "), recompiles);
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());

    let rv = c.put(calico_staged_delete_partners(CALICO_CRD));
    live.applied(Kind::StagedNetworkPolicy, rv).await;
    let rv = c.put(calico_staged_isolate_web(CALICO_CRD));
    live.applied(Kind::StagedKubernetesNetworkPolicy, rv).await;
    let e = live.engine();
    assert_eq!(e.cluster().staged.len(), 3);
    check(&e, "three staged");
    let staged = staged_view(&e);
    assert!(allowed(&staged, "192.0.2.7", "backend/api", 9090));
    assert!(!allowed(&staged, "backend/api", "frontend/web", 8080));
    assert_same_answers(&staged, &staged_view(&fresh(&c).await), "three staged");
    // A staged Delete whose policy is there: no warning (the store never reports that one).
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());

    // Replaced: the staged deny-web becomes an allow of everything.
    let mut allow = calico_staged_deny_web(CALICO_CRD);
    allow["spec"]["ingress"][0]["action"] = json!("Allow");
    let rv = c.put(allow);
    live.applied(Kind::StagedGlobalNetworkPolicy, rv).await;
    assert!(allowed(&staged_view(&live.engine()), "frontend/web", "backend/api", 9090));
    assert_same_answers(&staged_view(&live.engine()), &staged_view(&fresh(&c).await), "staged replaced");

    // Its Tier deleted: the staged policy keeps its tier by name, with the loader's warning; the Tier back: none.
    let rv = c.server.delete_kind(ApiKind::CalicoTier, None, "security").unwrap();
    live.applied(Kind::Tier, rv).await;
    assert_same_answers(&staged_view(&live.engine()), &staged_view(&fresh(&c).await), "tier deleted");
    let d = live.diagnostics();
    assert!(
        d.iter().any(|d| &*d.origin.file == "cluster:stagedglobalnetworkpolicies/security.staged-deny-web"
            && d.field.as_deref() == Some("spec.tier")),
        "{d:?}"
    );
    let rv = c.put(calico_tier(CALICO_CRD, "security", 100.0));
    live.applied(Kind::Tier, rv).await;
    assert!(live.diagnostics().is_empty(), "{:?}", live.diagnostics());
    assert_same_answers(&staged_view(&live.engine()), &staged_view(&fresh(&c).await), "tier back");

    // Deleted, one by one.
    let rv = c.server.delete_kind(ApiKind::CalicoStagedGlobalNetworkPolicy, None, "security.staged-deny-web").unwrap();
    live.applied(Kind::StagedGlobalNetworkPolicy, rv).await;
    let rv = c.server.delete_kind(ApiKind::CalicoStagedNetworkPolicy, Some("backend"), "allow-partners").unwrap();
    live.applied(Kind::StagedNetworkPolicy, rv).await;
    let rv =
        c.server.delete_kind(ApiKind::CalicoStagedKubernetesNetworkPolicy, Some("frontend"), "isolate-web").unwrap();
    live.applied(Kind::StagedKubernetesNetworkPolicy, rv).await;
    let e = live.engine();
    assert!(e.cluster().staged.is_empty());
    assert!(live.staged().is_none());
    check(&e, "none staged");
    // An invalid staged object is reported and left out, like any other.
    let mut bad = calico_staged_deny_web(CALICO_CRD);
    bad["spec"]["stagedAction"] = json!("Enforce");
    let rv = c.put(bad);
    live.applied(Kind::StagedGlobalNetworkPolicy, rv).await;
    let d = live.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].severity, &*d[0].origin.file, d[0].field.as_deref()),
        (Severity::Error, "cluster:stagedglobalnetworkpolicies/security.staged-deny-web", Some("spec.stagedAction"))
    );
    assert!(live.engine().cluster().staged.is_empty());
    assert_eq!(live.errors(), 0.0);
}

// ---- host endpoints ----

/// Flows to and from the worker's address, and the pods, whose every combination two engines must agree on.
const HOST_ENDPOINTS: [&str; 5] = ["frontend/web", "backend/api", "192.168.1.11", "203.0.113.1", "10.9.9.9"];
/// The kubelet's port, a failsafe port, and one nothing allows.
const HOST_PORTS: [u16; 3] = [10250, 22, 8080];

/// [`assert_same_answers`] among [`HOST_ENDPOINTS`], on [`HOST_PORTS`].
fn assert_same_host_answers(live: &Engine, fresh: &Engine, what: &str) {
    for src in HOST_ENDPOINTS {
        for dst in HOST_ENDPOINTS {
            for port in HOST_PORTS {
                assert_eq!(
                    explanation(live, src, dst, port),
                    explanation(fresh, src, dst, port),
                    "{what}: {src} -> {dst} {port}"
                );
            }
        }
    }
}

/// The worker's Node, its eth0's HostEndpoint and the GlobalNetworkPolicy guarding it, under `api`.
fn host_objects(api: &str) -> Vec<Value> {
    vec![worker_node(), calico_worker_endpoint(api), calico_host_kubelet(api)]
}

/// HostEndpoints under `api`: listed once, loaded with their addresses, and the host checks answer as the same
/// objects from a file.
async fn host_snapshot(calico: Calico, api: &str) {
    let c = calico_cluster(calico, api);
    for o in host_objects(api) {
        c.put(o);
    }
    c.server.clear_requests();
    let snap = netpol_kube::snapshot(&c.source()).await.expect("snapshot");
    let requests = c.server.requests();
    assert_eq!(lists_of(&requests, &api_kind_in(Kind::HostEndpoint, api).path()), 1, "{requests:?}");
    let rv = c.server.resource_version();
    assert!(snap.resource_versions().ends_with(&format!(",hostendpoints={rv}")), "{}", snap.resource_versions());
    let names: Vec<String> = snap.objects.iter().map(|o| o.source_name()).collect();
    assert!(names.iter().any(|n| n == "cluster:hostendpoints/worker-1-eth0"), "{names:?}");
    let loaded = netpol_kube::load_objects(snap.objects);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let h = &loaded.cluster.host_endpoints;
    assert_eq!(h.len(), 1);
    assert_eq!((h[0].name.as_str(), h[0].node.as_str()), ("worker-1-eth0", "worker-1"));
    assert_eq!(&*h[0].origin.file, "cluster:hostendpoints/worker-1-eth0");
    let live = Engine::new(loaded.cluster);
    assert!(allowed(&live, "frontend/web", "192.168.1.11", 10250), "host-kubelet allows web");
    assert!(!allowed(&live, "backend/api", "192.168.1.11", 10250), "the default tier denies the rest");
    assert!(allowed(&live, "backend/api", "192.168.1.11", 22), "a failsafe port");
    for (src, dst, port, want) in FLOWS {
        assert_eq!(allowed(&live, src, dst, port), want, "pods as without host endpoints: {src} -> {dst} {port}");
    }
    let e = explanation(&live, "backend/api", "192.168.1.11", 10250);
    assert_eq!(e["hosts"][0]["host_endpoint"], "worker-1-eth0", "{e}");
    assert_eq!(e["hosts"][0]["path"], "to-host", "{e}");
    assert_same_host_answers(&live, &from_file_with(api, host_objects(api)), "one-shot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_reads_calicos_host_endpoints_from_either_group() {
    host_snapshot(Calico::Crds, CALICO_CRD).await;
    host_snapshot(Calico::ApiServer, CALICO_V3).await;
}

/// The watch follows host endpoints: put, replaced (an all-interfaces endpoint at its Node's address, with a
/// profile), the policy guarding them, the Node, deleted; an invalid one is reported and left out. Every step
/// answers as a fresh list of the cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_calicos_host_endpoints() {
    let c = calico_cluster(Calico::Crds, CALICO_CRD);
    c.put(worker_node());
    let live = Live::start(&c).await;
    eventually!("a watch of every kind", c.server.open_watches() == watched_kinds(&c.server));
    assert!(live.allowed("backend/api", "192.168.1.11", 10250), "no host endpoint: the node's address is open");
    let recompiles = live.metric("netpol_live_recompiles_total ");

    // The endpoint alone: no policy, no profile: Felix drops what reaches it, but for its failsafe ports.
    let rv = c.put(calico_worker_endpoint(CALICO_CRD));
    live.applied(Kind::HostEndpoint, rv).await;
    assert_eq!(live.engine().cluster().host_endpoints.len(), 1);
    assert!(!live.allowed("frontend/web", "192.168.1.11", 10250));
    assert!(live.allowed("frontend/web", "192.168.1.11", 22));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "endpoint put");
    assert!(live.metric("netpol_live_recompiles_total ") > recompiles, "recompiled");

    // The policy guarding it.
    let rv = c.put(calico_host_kubelet(CALICO_CRD));
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "192.168.1.11", 10250));
    assert!(!live.allowed("backend/api", "192.168.1.11", 10250));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "policy put");

    // Replaced: every interface of the worker, at its Node's address, with Calico's allow-all profile; the
    // policy's tier still denies what it leaves.
    let all = |profiles: Value| {
        let mut h =
            calico_host_endpoint(CALICO_CRD, "worker-1-eth0", "worker-1", json!({"role": "worker"}), Some("*"), &[]);
        h["spec"]["profiles"] = profiles;
        h
    };
    let rv = c.put(all(json!(["projectcalico-default-allow"])));
    live.applied(Kind::HostEndpoint, rv).await;
    let e = live.engine();
    let h = &e.cluster().host_endpoints[0];
    assert_eq!((h.interface.as_deref(), h.expected_ips.len()), (Some("*"), 0));
    assert!(!live.allowed("backend/api", "192.168.1.11", 10250));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "endpoint replaced");
    let rv = c.server.delete_kind(ApiKind::CalicoGlobalNetworkPolicy, None, "host-kubelet").unwrap();
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.11", 10250), "no policy: the profile allows");
    let rv = c.put(all(json!([])));
    live.applied(Kind::HostEndpoint, rv).await;
    assert!(!live.allowed("backend/api", "192.168.1.11", 10250), "no profile any more");
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "profile dropped");

    // The Node gone: the all-interfaces endpoint has no address; back: it has.
    let rv = c.server.delete("Node", None, "worker-1").unwrap();
    live.applied(Kind::Node, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.11", 10250), "an address of no host");
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "node deleted");
    let rv = c.put(worker_node());
    live.applied(Kind::Node, rv).await;
    assert!(!live.allowed("backend/api", "192.168.1.11", 10250));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "node back");

    // Deleted.
    let rv = c.server.delete_kind(ApiKind::CalicoHostEndpoint, None, "worker-1-eth0").unwrap();
    live.applied(Kind::HostEndpoint, rv).await;
    assert!(live.engine().cluster().host_endpoints.is_empty());
    assert!(live.allowed("backend/api", "192.168.1.11", 10250));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "endpoint deleted");

    // An invalid one (no node) is reported and left out, like any other object.
    let mut bad = calico_worker_endpoint(CALICO_CRD);
    bad["spec"].as_object_mut().unwrap().remove("node");
    let rv = c.put(bad);
    live.applied(Kind::HostEndpoint, rv).await;
    let d = live.diagnostics();
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].severity, &*d[0].origin.file, d[0].field.as_deref()),
        (Severity::Error, "cluster:hostendpoints/worker-1-eth0", Some("spec.node"))
    );
    assert!(live.engine().cluster().host_endpoints.is_empty());
    assert!(live.allowed("backend/api", "192.168.1.11", 10250));
    assert_eq!(live.errors(), 0.0);
}

/// With Calico's API server, host endpoints are watched in its group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_host_endpoints_from_calicos_api_server() {
    let c = calico_cluster(Calico::ApiServer, CALICO_V3);
    c.put(worker_node());
    let live = Live::start(&c).await;
    let rv = c.put(calico_worker_endpoint(CALICO_V3));
    live.applied(Kind::HostEndpoint, rv).await;
    assert!(!live.allowed("frontend/web", "192.168.1.11", 10250));
    let rv = c.put(calico_host_kubelet(CALICO_V3));
    live.applied(Kind::GlobalNetworkPolicy, rv).await;
    assert!(live.allowed("frontend/web", "192.168.1.11", 10250));
    assert_same_host_answers(&live.engine(), &fresh(&c).await, "API server");
    let rv = c.server.delete_kind(ApiKind::CalicoV3HostEndpoint, None, "worker-1-eth0").unwrap();
    live.applied(Kind::HostEndpoint, rv).await;
    assert!(live.allowed("backend/api", "192.168.1.11", 10250));
    let requests = c.server.requests();
    let path = ApiKind::CalicoV3HostEndpoint.path();
    assert!(requests.iter().any(|r| r.path == path && r.is_watch()), "{requests:?}");
    assert!(requests.iter().all(|r| !r.path.starts_with("/apis/crd.projectcalico.org")), "{requests:?}");
}
