//! `netpol serve` on a live cluster, in-process: through kube-rs's real client against `netpol-fakeapi` (an API
//! server written for these tests that speaks the real wire protocol over plain HTTP: paginated lists with
//! resourceVersions, streaming watches, bookmarks, `410 Gone` after compaction, dropped connections), driven through
//! `router(...)`: first full list, policy, pod and namespace events, revision and resourceVersion reporting,
//! bookmarks, a relist forced by compaction, dropped watches, counters in /metrics, admin network policies, a
//! cluster without their CRDs, Calico's objects and Cilium's policies. The binary (`serve` over a real
//! socket, the one-shot commands with `--kubeconfig`, the deploy/ manifest) is tested in
//! `crates/netpol/tests/it/live.rs`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use netpol_fakeapi::fixtures::{self, allow_web, anp_deny_frontend, default_deny, namespace, pod};
use netpol_fakeapi::{Api, FakeApiServer, Kind as ApiKind, RequestLog};
use netpol_kube::{Kind, Source};
use netpol_server::{live, router, AppState};
use serde_json::json;

use crate::common::{get, post};

/// Longest wait for the model to reflect a change (it normally takes ~50–100 ms).
const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `$cond` (which may `.await`) every 50 ms until it holds; fails after [`TIMEOUT`].
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let start = Instant::now();
        loop {
            if $cond {
                break;
            }
            if start.elapsed() > TIMEOUT {
                panic!("timed out after {TIMEOUT:?} waiting for {}", $what);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// A fake API server with two namespaces and a pod in each, and a kubeconfig pointing at it.
struct Cluster {
    server: FakeApiServer,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

fn cluster() -> Cluster {
    let server = FakeApiServer::start().expect("fake API server");
    let dir = crate::common::tempdir();
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    fixtures::seed_two_namespaces(&server);
    Cluster { server, kubeconfig, _dir: dir }
}

/// `netpol serve` on the cluster, in-process: the live task and the router.
struct Live {
    state: AppState,
    app: axum::Router,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_live(c: &Cluster) -> Live {
    let source = Source::Kubeconfig { paths: vec![c.kubeconfig.clone()], context: None };
    let (client, server) = source.client().await.expect("client");
    assert_eq!(server, c.server.url());
    let state = AppState::live(&server);
    let task = tokio::spawn(live::run(state.clone(), client));
    let app = router(state.clone());
    eventually!("the first full list", get(&app, "/healthz").await.status == StatusCode::OK);
    // Watching from here on: a watch stream of every kind netpol reads from this cluster is open.
    let watched = watched(&c.server).len();
    eventually!("a watch of every kind", c.server.open_watches() == watched);
    Live { state, app, task }
}

/// `allow`, `deny`, or `unknown` when an endpoint is not in the model.
async fn verdict(app: &axum::Router, src: &str, dst: &str) -> String {
    let r = get(app, &format!("/api/v1/explain?src={src}&dst={dst}&port=8080")).await;
    match r.status {
        StatusCode::OK => r.json()["verdict"].as_str().expect("verdict").to_string(),
        StatusCode::NOT_FOUND => "unknown".to_string(),
        s => panic!("explain answered {s}: {}", r.text()),
    }
}

async fn metrics(app: &axum::Router) -> String {
    get(app, "/metrics").await.text()
}

/// The value of the first sample whose line starts with `prefix` (name and labels).
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample `{prefix}` in\n{text}"))
}

const CHANGES: &str = "netpol_live_changes_total ";
const IN_PLACE: &str = "netpol_live_changes_in_place_total ";
const UNCHANGED: &str = "netpol_live_events_unchanged_total ";

/// Non-watch GETs of a collection (list calls) among `requests`.
fn lists<'a>(requests: &'a [RequestLog], path: &'a str) -> impl Iterator<Item = &'a RequestLog> + 'a {
    requests.iter().filter(move |r| r.method == "GET" && r.path == path && !r.is_watch())
}

/// Services and their endpoints: read only where Cilium is.
const WITH_CILIUM: [ApiKind; 3] = [ApiKind::Service, ApiKind::EndpointSlice, ApiKind::Endpoints];

/// The kinds of `server` netpol lists and watches: every kind it serves, but ServiceAccounts only where Calico is,
/// Services and their endpoints only where Cilium is, Calico's CRDs only where Calico's API server is not, and
/// CiliumCIDRGroups at one version (`v2` where served).
fn watched(server: &FakeApiServer) -> Vec<ApiKind> {
    let served = server.served_kinds();
    let api_server = served.iter().any(|k| k.api() == Api::CalicoApiServer);
    let calico = served.iter().any(|k| matches!(k.api(), Api::CalicoCrd | Api::CalicoApiServer));
    let cilium = served.contains(&ApiKind::CiliumNetworkPolicy);
    let cidr_groups_v2 = served.contains(&ApiKind::CiliumCidrGroup);
    served
        .iter()
        .copied()
        .filter(|k| match k.api() {
            Api::CalicoCrd => !api_server,
            // Written by the node agent, never read.
            _ if *k == ApiKind::Event => false,
            _ if *k == ApiKind::Service => cilium || served.iter().any(|k| k.api() == Api::AntreaCrd),
            _ if WITH_CILIUM.contains(k) => cilium,
            _ if *k == ApiKind::CiliumCidrGroupV2Alpha1 => !cidr_groups_v2,
            _ => *k != ApiKind::ServiceAccount || calico,
        })
        .collect()
}

/// The collections netpol lists and watches on the cluster of [`cluster`] (no Calico, no Cilium).
fn collections() -> Vec<String> {
    ApiKind::ALL
        .iter()
        .filter(|k| matches!(k.api(), Api::BuiltIn | Api::PolicyCrd))
        .filter(|k| **k != ApiKind::ServiceAccount && **k != ApiKind::Event && !WITH_CILIUM.contains(k))
        .map(|k| k.path())
        .collect()
}

/// The kinds netpol reads from a cluster without Calico (and without Cilium).
fn without_calico() -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|k| !k.is_calico() && !k.is_cilium() && !k.is_antrea()).collect()
}

/// The resourceVersions of the kinds without any object yet, after those of pods, network policies and namespaces.
const NO_OTHER_VERSIONS: &str =
    "nodes=-,clusternetworkpolicies=-,adminnetworkpolicies=-,baselineadminnetworkpolicies=-";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_policy_pod_and_namespace_events() {
    let c = cluster();
    let live = serve_live(&c).await;
    let app = &live.app;
    let s = &c.server;

    // The first full list: no policy, everything allowed; the revision and resourceVersions are reported.
    let r = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["verdict"], "allow");
    assert_eq!(r.revision, 1);
    let rv = s.resource_version();
    // pods: the api pod's put was the last change; namespaces: backend's; no policy yet.
    assert_eq!(
        r.resource_version.as_deref(),
        Some(format!("pods={rv},networkpolicies=-,namespaces={},{NO_OTHER_VERSIONS}", rv - 2).as_str())
    );
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_live_synced{"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_model_objects{kind=\"pods\"}"), 2.0);
    assert_eq!(metric(&m, "netpol_watch_lists_total{kind=\"pods\"}"), 1.0);
    assert_eq!(metric(&m, "netpol_watch_resource_version{kind=\"pods\"}"), rv as f64);

    // A policy added on the server changes the verdict.
    let deny_rv = s.put(default_deny());
    eventually!("default-deny applied", verdict(app, "frontend/web", "backend/api").await == "deny");
    let r = get(app, "/api/v1/policies").await;
    assert_eq!(r.revision, 2, "one event, one new revision");
    assert_eq!(
        r.resource_version.as_deref(),
        Some(format!("pods={rv},networkpolicies={deny_rv},namespaces={},{NO_OTHER_VERSIONS}", rv - 2).as_str())
    );
    s.put(allow_web());
    eventually!("allow-web applied", verdict(app, "frontend/web", "backend/api").await == "allow");

    // Pod events: a relabel takes the pod out of the allowed peers, and back.
    let before = metrics(app).await;
    s.put(pod("frontend", "web", json!({"app": "web-v2"}), "10.0.1.1"));
    eventually!("pod relabel applied", verdict(app, "frontend/web", "backend/api").await == "deny");
    s.put(pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"));
    eventually!("pod relabel reverted", verdict(app, "frontend/web", "backend/api").await == "allow");
    let after = metrics(app).await;
    assert_eq!(metric(&after, CHANGES) - metric(&before, CHANGES), 2.0, "{after}");
    // Pod label changes are applied to the compiled engine in place when the engine supports it
    // (netpol-core's `Engine::update` reports how many changes it applied in place).
    if in_place_supported() {
        assert_eq!(metric(&after, IN_PLACE) - metric(&before, IN_PLACE), 2.0, "{after}");
    }

    // A new pod, found by name and by IP; then deleted.
    s.put(pod("frontend", "web2", json!({"app": "web"}), "10.0.1.2"));
    eventually!("new pod", verdict(app, "frontend/web2", "backend/api").await == "allow");
    assert_eq!(verdict(app, "10.0.1.2", "backend/api").await, "allow");
    s.delete("Pod", Some("frontend"), "web2").expect("web2 existed");
    eventually!("pod deleted", verdict(app, "frontend/web2", "backend/api").await == "unknown");

    // A namespace relabel: the namespaceSelector no longer matches.
    s.put(namespace("frontend", json!({"tier": "edge"})));
    eventually!("namespace relabel", verdict(app, "frontend/web", "backend/api").await == "deny");
    s.put(namespace("frontend", json!({"tier": "frontend"})));
    eventually!("namespace relabel reverted", verdict(app, "frontend/web", "backend/api").await == "allow");

    // A status-only update (what most pod events are) reaches netpol but changes nothing: same revision.
    let rev = get(app, "/healthz").await.revision;
    let before = metrics(app).await;
    let mut api = pod("backend", "api", json!({"app": "api"}), "10.0.2.1");
    api["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
    let api_rv = s.put(api);
    eventually!("the status update", metric(&metrics(app).await, UNCHANGED) > metric(&before, UNCHANGED));
    let r = get(app, "/healthz").await;
    assert_eq!(r.revision, rev, "a status-only update is not a new revision");
    // ... but the model now reflects that resourceVersion.
    assert!(r.resource_version.unwrap().starts_with(&format!("pods={api_rv},")));
    assert_eq!(metric(&metrics(app).await, CHANGES), metric(&before, CHANGES));

    // A pod that terminated is left out of the model.
    let mut done = pod("backend", "api", json!({"app": "api"}), "10.0.2.1");
    done["status"]["phase"] = json!("Succeeded");
    s.put(done);
    eventually!("terminated pod left out", verdict(app, "frontend/web", "backend/api").await == "unknown");

    let m = metrics(app).await;
    for kind in Kind::ALL {
        let (name, lists) =
            (kind.plural(), if kind.is_calico() || kind.is_cilium() || kind.is_antrea() { 0.0 } else { 1.0 });
        assert_eq!(metric(&m, &format!("netpol_watch_errors_total{{kind=\"{name}\"}}")), 0.0, "{m}");
        assert_eq!(metric(&m, &format!("netpol_watch_lists_total{{kind=\"{name}\"}}")), lists, "{m}");
    }
    // web relabelled twice, web2 added, api status-only, api terminated.
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"pods\",type=\"apply\"}"), 5.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"pods\",type=\"delete\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_model_revision "), live.state.revision() as f64);
}

/// Whether netpol-core's `Engine::update` applies a pod label change in place (rather than recompiling).
fn in_place_supported() -> bool {
    use netpol_core::update::Change;
    let c = netpol_core::load::load_str(
        "t",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: n, labels: {x: '1'}}\nstatus: {podIP: 10.9.0.1}\n",
    )
    .cluster;
    let mut pod = c.pods[0].clone();
    let mut e = netpol_core::compile::Engine::new(c);
    pod.labels.insert("x", "2");
    e.update(vec![Change::PutPod { namespace: "n".into(), pod }]).in_place > 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bookmarks_change_nothing() {
    let c = cluster();
    let live = serve_live(&c).await;
    let app = &live.app;
    let requests = c.server.requests();
    let watches: Vec<&RequestLog> = requests.iter().filter(|r| r.is_watch()).collect();
    assert_eq!(watches.len(), without_calico().len(), "{requests:?}");
    assert!(watches.iter().all(|r| r.has_param("allowWatchBookmarks", "true")), "{watches:?}");
    let rev = get(app, "/healthz").await.revision;
    let before = metrics(app).await;
    for _ in 0..3 {
        c.server.send_bookmarks();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.server.put(default_deny());
    eventually!("the policy after the bookmarks", verdict(app, "frontend/web", "backend/api").await == "deny");
    assert_eq!(get(app, "/healthz").await.revision, rev + 1);
    let after = metrics(app).await;
    assert_eq!(metric(&after, CHANGES) - metric(&before, CHANGES), 1.0, "{after}");
    let requests = c.server.requests();
    for path in &collections() {
        assert_eq!(lists(&requests, path).count(), 1, "no relist of {path}: {requests:?}");
    }
    for kind in Kind::ALL.map(Kind::plural) {
        assert_eq!(metric(&after, &format!("netpol_watch_errors_total{{kind=\"{kind}\"}}")), 0.0, "{after}");
    }
    assert_eq!(c.server.open_watches(), without_calico().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resume_from_their_resource_version() {
    let c = cluster();
    let live = serve_live(&c).await;
    let app = &live.app;
    c.server.clear_requests();
    c.server.drop_watches();
    // Changes made while the watches are down (or re-opening) are replayed from the history.
    c.server.put(default_deny());
    c.server.delete("Pod", Some("frontend"), "web").expect("web existed");
    c.server.put(pod("frontend", "web3", json!({"app": "web"}), "10.0.1.3"));
    eventually!("the policy", verdict(app, "frontend/web3", "backend/api").await == "deny");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "unknown");
    eventually!("every watch open again", c.server.open_watches() == without_calico().len());
    let requests = c.server.requests();
    for path in &collections() {
        assert_eq!(lists(&requests, path).count(), 0, "no relist of {path}: {requests:?}");
        let rewatch = requests.iter().find(|r| r.path == *path && r.is_watch());
        let rewatch = rewatch.unwrap_or_else(|| panic!("no new watch of {path}: {requests:?}"));
        assert!(rewatch.query.contains("resourceVersion="), "{rewatch:?}");
    }
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_watch_lists_total{kind=\"pods\"}"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_forces_a_relist_that_applies_only_the_difference() {
    let c = cluster();
    for i in 0..20 {
        c.server.put(pod("backend", &format!("worker-{i}"), json!({"app": "worker"}), &format!("10.0.3.{}", i + 1)));
    }
    let live = serve_live(&c).await;
    let app = &live.app;
    let s = &c.server;
    let before = metrics(app).await;
    // A namespace change moves the server's revision past what the pod and policy watches have seen; after
    // compaction they cannot resume (410 Gone) and must list again. The pod deleted meanwhile is not seen as an
    // event by anyone: only the relist finds it gone.
    s.put(namespace("other", json!({})));
    s.compact();
    s.clear_requests();
    s.drop_watches();
    s.delete("Pod", Some("frontend"), "web").expect("web existed");
    eventually!("the relist", verdict(app, "frontend/web", "backend/api").await == "unknown");
    eventually!("every watch open again", s.open_watches() == without_calico().len());
    let requests = s.requests();
    assert!(lists(&requests, "/api/v1/pods").count() >= 1, "pods relisted: {requests:?}");
    let after = metrics(app).await;
    assert!(metric(&after, "netpol_watch_errors_total{kind=\"pods\"}") >= 1.0, "the 410 is counted: {after}");
    assert_eq!(metric(&after, "netpol_watch_lists_total{kind=\"pods\"}"), 2.0, "{after}");
    // Only the difference reached the engine: the new namespace and the deleted pod; the 21 pods listed again at
    // the resourceVersion already applied were skipped.
    assert_eq!(metric(&after, CHANGES) - metric(&before, CHANGES), 2.0, "{after}");
    assert!(metric(&after, UNCHANGED) - metric(&before, UNCHANGED) >= 21.0, "{after}");
    assert_eq!(metric(&after, "netpol_model_objects{kind=\"pods\"}"), 21.0);
    // Everything else still answers as before.
    assert_eq!(verdict(app, "backend/worker-3", "backend/api").await, "allow");
    s.put(default_deny());
    eventually!("events after the relist", verdict(app, "backend/worker-3", "backend/api").await == "deny");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_objects_are_reported_and_left_out() {
    let c = cluster();
    let live = serve_live(&c).await;
    let app = &live.app;
    assert_eq!(get(app, "/api/v1/diagnostics").await.json(), json!([]));
    // The fake server, unlike a real one, does not validate: netpol's loader finds this policy invalid.
    let mut bad = default_deny();
    bad["spec"]["policyTypes"] = json!(["Ingress", "Sideways"]);
    c.server.put(bad);
    eventually!("the invalid policy reported", metric(&metrics(app).await, "netpol_model_invalid_objects ") == 1.0);
    let d = get(app, "/api/v1/diagnostics").await.json();
    assert_eq!(d[0]["severity"], "error", "{d}");
    assert_eq!(d[0]["origin"]["file"], "cluster:networkpolicies/backend/default-deny", "{d}");
    assert_eq!(d[0]["field"], "spec.policyTypes[1]", "{d}");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow", "left out of the model");
    // Fixed on the server: applied, and the diagnostic is gone.
    c.server.put(default_deny());
    eventually!("the fixed policy", verdict(app, "frontend/web", "backend/api").await == "deny");
    assert_eq!(get(app, "/api/v1/diagnostics").await.json(), json!([]));
    assert_eq!(metric(&metrics(app).await, "netpol_model_invalid_objects "), 0.0);
    // Broken again: the model drops the policy rather than keep a version the cluster no longer has.
    let mut bad = default_deny();
    bad["spec"]["podSelector"] = json!({"matchExpressions": [{"key": "app", "operator": "In"}]});
    c.server.put(bad);
    eventually!("the broken policy left out", verdict(app, "frontend/web", "backend/api").await == "allow");
    assert_eq!(get(app, "/api/v1/diagnostics").await.json()[0]["field"], "spec.podSelector.matchExpressions[0].values");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_admin_network_policies() {
    let c = cluster();
    let live = serve_live(&c).await;
    let app = &live.app;
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    let rev = get(app, "/healthz").await.revision;
    // The AdminNetworkPolicy's Deny rule overrides what NetworkPolicies allow.
    c.server.put(allow_web());
    let rv = c.server.put(anp_deny_frontend());
    let applied = format!(",adminnetworkpolicies={rv},");
    eventually!(
        "the AdminNetworkPolicy",
        get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied))
    );
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "deny");
    let r = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    assert!(r.text().contains("deny-frontend"), "{}", r.text());
    assert!(get(app, "/healthz").await.revision > rev);
    let rv = c.server.delete("AdminNetworkPolicy", None, "deny-frontend").expect("it existed");
    let applied = format!(",adminnetworkpolicies={rv},");
    eventually!("the deletion", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"adminnetworkpolicies\",type=\"apply\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"adminnetworkpolicies\",type=\"delete\"}"), 1.0, "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_is_ready_on_a_cluster_without_the_admin_policy_crds() {
    let c = cluster();
    c.server.set_crds_installed(false);
    let live = serve_live(&c).await;
    let app = &live.app;
    assert_eq!(c.server.open_watches(), 4, "the built-in kinds only");
    let r = get(app, "/healthz").await;
    let rv = c.server.resource_version();
    // The kinds the cluster does not serve are left out of the resourceVersions.
    assert_eq!(
        r.resource_version.as_deref(),
        Some(format!("pods={rv},networkpolicies=-,namespaces={},nodes=-", rv - 2).as_str())
    );
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    c.server.put(default_deny());
    eventually!("the policy", verdict(app, "frontend/web", "backend/api").await == "deny");
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_live_synced{"), 1.0, "{m}");
    for kind in Kind::ALL.map(Kind::plural) {
        assert_eq!(metric(&m, &format!("netpol_watch_errors_total{{kind=\"{kind}\"}}")), 0.0, "{m}");
    }
    // Each CRD was asked for once (404), and not watched.
    let requests = c.server.requests();
    for kind in ApiKind::ALL.into_iter().filter(|k| k.api() == Api::PolicyCrd) {
        let path = kind.path();
        assert_eq!(lists(&requests, &path).count(), 1, "{requests:?}");
        assert!(!requests.iter().any(|r| r.path == path && r.is_watch()), "{requests:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_calicos_objects() {
    use netpol_fakeapi::fixtures::{calico_deny_web, seed_calico, CALICO_CRD};
    use netpol_fakeapi::Calico;
    let c = cluster();
    c.server.set_calico(Calico::Crds);
    seed_calico(&c.server, CALICO_CRD);
    let live = serve_live(&c).await;
    let app = &live.app;
    let calicos = Kind::ALL.iter().filter(|k| !k.is_cilium() && !k.is_antrea()).count();
    assert_eq!(c.server.open_watches(), calicos, "every kind but Cilium's and Antrea's, service accounts included");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    let rv = c.server.resource_version();
    let header = get(app, "/healthz").await.resource_version.unwrap();
    assert!(header.contains(&format!(",tiers={},", rv - 5)), "{header}");
    assert!(header.contains(&format!(",serviceaccounts={},", rv - 7)), "{header}");
    assert!(header.ends_with(",stagedkubernetesnetworkpolicies=-,hostendpoints=-"), "none yet: {header}");

    // A GlobalNetworkPolicy that denies, then its deletion: the verdict changes and back.
    let rv = c.server.put(calico_deny_web(CALICO_CRD));
    let applied = format!(",globalnetworkpolicies={rv},");
    eventually!(
        "the GlobalNetworkPolicy",
        get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied))
    );
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "deny");
    let r = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    assert!(r.text().contains("security.deny-web"), "{}", r.text());
    let rv = c.server.delete_kind(ApiKind::CalicoGlobalNetworkPolicy, None, "security.deny-web").expect("it existed");
    let applied = format!(",globalnetworkpolicies={rv},");
    eventually!("the deletion", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");

    // The Tier deleted: its policies' warning is listed with the diagnostics.
    assert_eq!(get(app, "/api/v1/diagnostics").await.json(), json!([]));
    c.server.delete_kind(ApiKind::CalicoTier, None, "security").expect("it existed");
    eventually!("the warnings", get(app, "/api/v1/diagnostics").await.json().as_array().is_some_and(|d| d.len() == 2));
    let d = get(app, "/api/v1/diagnostics").await.json();
    assert_eq!(d[0]["severity"], "warning", "{d}");
    assert_eq!(d[0]["field"], "spec.tier", "{d}");
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"globalnetworkpolicies\",type=\"apply\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"globalnetworkpolicies\",type=\"delete\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_errors_total{kind=\"tiers\"}"), 0.0, "{m}");
}

/// Cilium's policies on a live cluster: read where its CRDs are installed, listed with their kind and tiers,
/// explained by the deny rule that decides, and followed as they change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_ciliums_policies() {
    use netpol_fakeapi::fixtures::{cilium_deny_web, seed_cilium};
    let c = cluster();
    c.server.set_cilium(true);
    seed_cilium(&c.server);
    let live = serve_live(&c).await;
    let app = &live.app;
    assert!(watched(&c.server).contains(&ApiKind::CiliumClusterwideNetworkPolicy));
    let rv = c.server.resource_version();
    let header = get(app, "/healthz").await.resource_version.unwrap();
    assert!(
        header.contains(&format!(",ciliumnetworkpolicies={},ciliumclusterwidenetworkpolicies={rv},", rv - 1)),
        "{header}"
    );
    // CIDR groups, Services and their endpoints: none yet.
    assert!(header.ends_with(",ciliumcidrgroups=-,services=-,endpointslices=-,endpoints=-"), "{header}");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    assert_eq!(verdict(app, "backend/api", "frontend/web").await, "deny");
    let r = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=9090").await;
    let x = r.json();
    assert_eq!(x["verdict"], "deny", "{x}");
    assert_eq!(x["ingress"]["walk"][0]["field"], "spec.ingressDeny[0]", "{x}");
    assert_eq!(x["ingress"]["walk"][0]["tier"], "CiliumDeny", "{x}");

    // The policies: kind, tier and the deny rules of each, as loaded from the cluster.
    let policies = get(app, "/api/v1/policies").await.json();
    let kinds: Vec<(String, String, String)> = policies
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (p["kind"].as_str().unwrap().into(), p["name"].as_str().unwrap().into(), p["tier"].as_str().unwrap().into())
        })
        .collect();
    for want in [
        ("CiliumNetworkPolicy", "api-ingress", "CiliumDeny"),
        ("CiliumNetworkPolicy", "api-ingress", "NetworkPolicy"),
        ("CiliumClusterwideNetworkPolicy", "backend-not-to-frontend", "CiliumDeny"),
    ] {
        let want = (want.0.to_string(), want.1.to_string(), want.2.to_string());
        assert!(kinds.contains(&want), "{want:?} in {kinds:?}");
    }
    let d = get(app, "/api/v1/diagnostics").await.json();
    assert_eq!(d.as_array().map(Vec::len), Some(0), "every object is valid: {d}");

    // A CiliumNetworkPolicy that denies web, then its deletion: the verdict changes and back.
    let rv = c.server.put(cilium_deny_web());
    let applied = format!(",ciliumnetworkpolicies={rv},");
    eventually!("the policy", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "deny");
    let r = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    let x = r.json();
    assert!(x["ingress"]["walk"][0]["policy"].as_str().unwrap().contains("deny-web"), "{x}");
    assert_eq!(x["ingress"]["walk"][0]["field"], "spec.ingressDeny[0]", "{x}");
    let rv = c.server.delete_kind(ApiKind::CiliumNetworkPolicy, Some("backend"), "deny-web").expect("it existed");
    let applied = format!(",ciliumnetworkpolicies={rv},");
    eventually!("the deletion", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"ciliumnetworkpolicies\",type=\"apply\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_events_total{kind=\"ciliumnetworkpolicies\",type=\"delete\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_watch_errors_total{kind=\"ciliumclusterwidenetworkpolicies\"}"), 0.0, "{m}");
    assert!(metric(&m, "netpol_live_recompiles_total ") >= 2.0, "{m}");
}

/// Antrea's objects on a live cluster: read where the CRDs are, the verdicts, explanations, policies and
/// diagnostics follow an ACNP put and deleted, and an ACNP whose Tier does not exist is reported until the Tier is
/// put.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_follows_antreas_objects() {
    use netpol_fakeapi::fixtures::{antrea_cluster_policy, antrea_drop_web, antrea_tier, seed_antrea};
    let c = cluster();
    c.server.set_antrea(true);
    seed_antrea(&c.server);
    let live = serve_live(&c).await;
    let app = &live.app;
    let header = get(app, "/healthz").await.resource_version.unwrap();
    assert!(header.contains(",clusternetworkpolicies.crd.antrea.io="), "{header}");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    let x = get(app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=9090").await.json();
    assert_eq!(x["verdict"], "deny", "{x}");
    assert_eq!(x["ingress"]["walk"][0]["policy"], "acnp/guard-api", "{x}");
    assert_eq!(x["ingress"]["walk"][0]["tier"], "sec", "{x}");
    let policies = get(app, "/api/v1/policies").await.json();
    let refs: Vec<&str> = policies.as_array().unwrap().iter().map(|p| p["ref"].as_str().unwrap()).collect();
    assert!(refs.contains(&"acnp/guard-api") && refs.contains(&"annp/backend/api-self"), "{refs:?}");

    // A Drop ACNP, then its deletion: the verdict changes and back.
    let rv = c.server.put(antrea_drop_web());
    let applied = format!(",clusternetworkpolicies.crd.antrea.io={rv},");
    eventually!("the policy", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "deny");
    let rv = c.server.delete_kind(ApiKind::AntreaClusterNetworkPolicy, None, "drop-web").expect("it existed");
    let applied = format!(",clusternetworkpolicies.crd.antrea.io={rv},");
    eventually!("the deletion", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");

    // An ACNP in a Tier that does not exist: in the diagnostics, until the Tier comes.
    c.server.put(antrea_cluster_policy(
        "later",
        serde_json::json!({"tier": "late", "priority": 1, "appliedTo": [{"podSelector": {}}],
            "ingress": [{"action": "Drop", "from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
    ));
    eventually!("the refusal", get(app, "/api/v1/diagnostics").await.json().as_array().is_some_and(|d| d.len() == 1));
    let d = get(app, "/api/v1/diagnostics").await.json();
    assert!(d.to_string().contains("no Tier late"), "{d}");
    assert_eq!(verdict(app, "frontend/web", "backend/api").await, "allow");
    c.server.put(antrea_tier("late", 30));
    eventually!("admitted", verdict(app, "frontend/web", "backend/api").await == "deny");
    let d = get(app, "/api/v1/diagnostics").await.json();
    assert_eq!(d.as_array().map(Vec::len), Some(0), "{d}");
    let m = metrics(app).await;
    assert_eq!(metric(&m, "netpol_watch_errors_total{kind=\"tiers.crd.antrea.io\"}"), 0.0, "{m}");
    assert!(metric(&m, "netpol_live_recompiles_total ") >= 3.0, "{m}");
}

/// Calico's staged policies on a live cluster: explain carries their verdict as soon as one is watched, the
/// enforced verdict does not change, and `staged` goes away with the last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_explains_calicos_staged_policies() {
    use netpol_fakeapi::fixtures::{calico_staged_deny_web, seed_calico, CALICO_V3};
    use netpol_fakeapi::Calico;
    let c = cluster();
    c.server.set_calico(Calico::ApiServer);
    seed_calico(&c.server, CALICO_V3);
    let live = serve_live(&c).await;
    let app = &live.app;
    let explain = "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080";
    assert!(get(app, explain).await.json().get("staged").is_none());
    let rv = c.server.put(calico_staged_deny_web(CALICO_V3));
    let applied = format!(",stagedglobalnetworkpolicies={rv},");
    eventually!("the staged policy", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    let j = get(app, explain).await.json();
    assert_eq!((&j["verdict"], &j["staged"]["verdict"]), (&json!("allow"), &json!("deny")), "{j}");
    assert_eq!(j["staged"]["policies"][0]["kind"], "StagedGlobalNetworkPolicy");
    assert_eq!(j["staged"]["policies"][0]["name"], "security.staged-deny-web");
    assert!(live.state.model().staged.is_some());
    let r = post(
        app,
        "/api/v1/query?explain=true",
        "application/json",
        json!([{"src": "frontend/web", "dst": "backend/api", "port": 8080}]).to_string(),
    )
    .await;
    assert_eq!(r.json()[0]["explain"]["staged"]["verdict"], "deny");
    let rv = c
        .server
        .delete_kind(ApiKind::CalicoV3StagedGlobalNetworkPolicy, None, "security.staged-deny-web")
        .expect("it existed");
    let applied = format!(",stagedglobalnetworkpolicies={rv},");
    eventually!("the deletion", get(app, "/healthz").await.resource_version.is_some_and(|v| v.contains(&applied)));
    assert!(get(app, explain).await.json().get("staged").is_none());
    assert!(live.state.model().staged.is_none());
}

#[tokio::test]
async fn not_ready_until_the_first_full_list() {
    // Nothing runs the live task here: the state stays as it is before the first list arrives.
    let app = router(AppState::live("http://127.0.0.1:1"));
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text());
    assert_eq!(r.revision, 0);
    let r = get(&app, "/api/v1/pods").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.json()["field"], "model");
    let doc = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(doc.status, StatusCode::OK);
    // The OpenAPI document declares that answer on every API route (and not on itself).
    let doc = doc.json();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            let declared = op["responses"]["503"]["content"]["application/json"]["schema"]["$ref"].as_str();
            let want = path.starts_with("/api/") && path != "/api/v1/openapi.json";
            let got = declared == Some("#/components/schemas/ApiError");
            assert_eq!(got, want, "{method} {path}: 503 declared {declared:?}");
        }
    }
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(metric(&r.text(), "netpol_live_synced{"), 0.0);
}
