//! Live clusters end to end, through kube-rs's real client against `netpol-fakeapi` (an API server written for
//! these tests that speaks the real wire protocol over plain HTTP: paginated lists with resourceVersions,
//! streaming watches, bookmarks, `410 Gone` after compaction, dropped connections).
//!
//! - `netpol serve` with a live source, driven in-process through `router(...)`: first full list, policy, pod
//!   and namespace events, revision and resourceVersion reporting, bookmarks, a relist forced by compaction,
//!   dropped watches, counters in /metrics; and the binary over a real socket.
//! - The one-shot commands (`query`, `explain`, `matrix`, `lint`, `describe`) with `--kubeconfig`, via the binary.
//! - The deploy/ manifest: kinds, read-only RBAC, the Deployment's command, probes and hardening.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use netpol::live;
use netpol::serve::{router, AppState};
use netpol_fakeapi::{FakeApiServer, RequestLog};
use serde_json::{json, Value};

use crate::common::get;

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

fn namespace(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}})
}

fn pod(ns: &str, name: &str, labels: Value, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {"containers": [{"name": "main", "image": "registry.example/app:1",
            "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]},
    })
}

fn policy(ns: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn default_deny() -> Value {
    policy("backend", "default-deny", json!({"podSelector": {}, "policyTypes": ["Ingress"]}))
}

/// Ingress to backend `app=api` on the named port `http` from `app=web` pods of `tier=frontend` namespaces.
fn allow_web() -> Value {
    policy(
        "backend",
        "allow-web",
        json!({
            "podSelector": {"matchLabels": {"app": "api"}},
            "ingress": [{
                "from": [{"namespaceSelector": {"matchLabels": {"tier": "frontend"}},
                          "podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": "http"}],
            }],
        }),
    )
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
    for obj in [
        namespace("frontend", json!({"tier": "frontend"})),
        namespace("backend", json!({"tier": "backend"})),
        pod("frontend", "web", json!({"app": "web"}), "10.0.1.1"),
        pod("backend", "api", json!({"app": "api"}), "10.0.2.1"),
    ] {
        assert!(server.put(obj) > 0);
    }
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
    let source = live::Source::Kubeconfig { paths: vec![c.kubeconfig.clone()], context: None };
    let (client, server) = source.client().await.expect("client");
    assert_eq!(server, c.server.url());
    let state = AppState::live(&server);
    let task = tokio::spawn(live::run(state.clone(), client));
    let app = router(state.clone());
    eventually!("the first full list", get(&app, "/healthz").await.status == StatusCode::OK);
    // Watching from here on: the three watch streams are open.
    eventually!("three open watches", c.server.open_watches() == 3);
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

const COLLECTIONS: [&str; 3] = ["/api/v1/namespaces", "/api/v1/pods", "/apis/networking.k8s.io/v1/networkpolicies"];

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
        Some(format!("pods={rv},networkpolicies=-,namespaces={}", rv - 2).as_str())
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
        Some(format!("pods={rv},networkpolicies={deny_rv},namespaces={}", rv - 2).as_str())
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
    for kind in ["pods", "networkpolicies", "namespaces"] {
        assert_eq!(metric(&m, &format!("netpol_watch_errors_total{{kind=\"{kind}\"}}")), 0.0, "{m}");
        assert_eq!(metric(&m, &format!("netpol_watch_lists_total{{kind=\"{kind}\"}}")), 1.0, "{m}");
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
    assert_eq!(watches.len(), 3, "{requests:?}");
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
    for path in COLLECTIONS {
        assert_eq!(lists(&requests, path).count(), 1, "no relist of {path}: {requests:?}");
    }
    for kind in ["pods", "networkpolicies", "namespaces"] {
        assert_eq!(metric(&after, &format!("netpol_watch_errors_total{{kind=\"{kind}\"}}")), 0.0, "{after}");
    }
    assert_eq!(c.server.open_watches(), 3);
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
    eventually!("three open watches again", c.server.open_watches() == 3);
    let requests = c.server.requests();
    for path in COLLECTIONS {
        assert_eq!(lists(&requests, path).count(), 0, "no relist of {path}: {requests:?}");
        let rewatch = requests.iter().find(|r| r.path == path && r.is_watch());
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
    eventually!("three open watches again", s.open_watches() == 3);
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

// ---- one-shot commands, through the binary ----

fn netpol(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_netpol"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("KUBECONFIG").env_remove("KUBERNETES_SERVICE_HOST").env_remove("RUST_LOG");
    for v in ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] {
        cmd.env_remove(v);
    }
    cmd.env("HOME", "/nonexistent");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn netpol");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write stdin");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("netpol {args:?} did not finish within {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = |b: Vec<u8>| String::from_utf8(b).expect("utf-8");
    (out.status.code().unwrap_or(-1), text(out.stdout), text(out.stderr))
}

/// The cluster of the one-shot tests: policies, a terminated pod and an invalid policy on top of [`cluster`].
fn policy_cluster() -> Cluster {
    let c = cluster();
    c.server.put(default_deny());
    c.server.put(allow_web());
    let mut done = pod("frontend", "job-1", json!({"app": "job"}), "10.0.1.9");
    done["status"]["phase"] = json!("Succeeded");
    c.server.put(done);
    // The fake server does not validate; netpol's loader reports this one and leaves it out.
    c.server.put(policy("backend", "bad", json!({"podSelector": {}, "policyTypes": ["Sideways"]})));
    // Selects no pod: lint's NP001.
    c.server.put(policy("backend", "typo", json!({"podSelector": {"matchLabels": {"app": "apii"}}})));
    c
}

#[test]
fn one_shot_query_explain_matrix_describe() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    let flows = concat!(
        r#"{"id":1,"src":"frontend/web","dst":"backend/api","port":8080}"#,
        "\n",
        r#"{"id":2,"src":"frontend/web","dst":"backend/api","port":9090}"#,
        "\n",
        r#"{"id":3,"src":"frontend/job-1","dst":"backend/api","port":8080}"#,
        "\n"
    );
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], flows, &[]);
    assert_eq!(code, 1, "one flow names a pod that is not in the model: {err}");
    let lines: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[1]["verdict"], "deny");
    assert!(lines[2]["error"].is_string(), "{}", lines[2]);
    let rv = c.server.resource_version();
    let from = format!(
        "netpol: answered from {} at resourceVersion pods={rv} networkpolicies={rv} namespaces={rv} (1 terminated pod(s) left out)",
        c.server.url()
    );
    assert!(err.contains(&from), "{err}");
    assert!(
        err.contains(
            "error: cluster:networkpolicies/backend/bad (document 0): NetworkPolicy backend/bad: spec.policyTypes[0]:"
        ),
        "{err}"
    );
    assert!(err.contains("warning: 1 invalid object(s) were skipped"), "{err}");
    let (code, _, err) = netpol(&["--strict", "query", "--kubeconfig", &kc], flows, &[]);
    assert_eq!(code, 2, "{err}");

    let (code, out, err) =
        netpol(&["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["verdict"], "allow");

    let (code, out, err) = netpol(&["matrix", "--kubeconfig", &kc, "--port", "9090/TCP", "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j["pods"], json!(["backend/api", "frontend/web"]));
    // backend/api is isolated for ingress and allows only its named port `http` (8080) from frontend/web.
    assert_eq!(j["ports"][0]["rows"], json!([[true, true], [false, true]]));

    let (code, out, err) = netpol(&["describe", "--kubeconfig", &kc, "-o", "json"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let j: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(j.as_array().map(Vec::len), Some(2), "{j}");
}

/// Like kubectl, the client goes through `HTTPS_PROXY` unless `NO_PROXY` names the server.
#[test]
fn one_shot_commands_follow_https_proxy_and_no_proxy() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    // A proxy that refuses every connection: port 1 on loopback has no listener.
    let proxy = ("HTTPS_PROXY", "http://127.0.0.1:1");
    let args = ["explain", "--kubeconfig", &kc, "frontend/web", "backend/api", "8080"];
    let (code, _, err) = netpol(&args, "", &[proxy]);
    assert_eq!(code, 2, "the proxy is used and refuses: {err}");
    let (code, out, err) = netpol(&args, "", &[proxy, ("NO_PROXY", "127.0.0.1")]);
    assert_eq!(code, 0, "NO_PROXY bypasses the proxy: {err}");
    assert!(out.contains("allow"), "{out}");
}

#[test]
fn one_shot_lint_points_at_cluster_objects() {
    let c = policy_cluster();
    let kc = c.kubeconfig.display().to_string();
    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "-o", "json", "--fail-on", "never"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let findings: Vec<Value> = serde_json::from_str(&out).expect("json");
    let np001 = findings.iter().find(|f| f["code"] == "NP001").unwrap_or_else(|| panic!("NP001 in {out}"));
    assert_eq!(np001["origin"]["file"], "cluster:networkpolicies/backend/typo");
    // Objects from a cluster have no file lines.
    assert!(findings.iter().all(|f| f["line"].is_null()), "{out}");

    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "-o", "sarif", "--fail-on", "never"], "", &[]);
    assert_eq!(code, 0, "{err}");
    let sarif: Value = serde_json::from_str(&out).expect("json");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(!results.is_empty());
    for r in results {
        let phys = &r["locations"][0]["physicalLocation"];
        assert!(phys["artifactLocation"]["uri"].as_str().is_some_and(|u| u.starts_with("cluster:")), "{r}");
        assert!(phys["region"].is_null(), "{r}");
    }

    let (code, out, err) = netpol(&["lint", "--kubeconfig", &kc, "--fail-on", "warning"], "", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(out.contains("cluster:networkpolicies/backend/typo\n  NetworkPolicy backend/typo\n"), "{out}");
}

#[test]
fn one_shot_lists_page_by_page() {
    let c = cluster();
    for i in 0..1200 {
        let ip = format!("10.1.{}.{}", i / 200, i % 200 + 1);
        c.server.put(pod("backend", &format!("w-{i}"), json!({"app": "w"}), &ip));
    }
    c.server.clear_requests();
    let kc = c.kubeconfig.display().to_string();
    let flow = r#"{"src":"frontend/web","dst":"backend/w-1199","port":80}"#;
    let (code, out, err) = netpol(&["query", "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""verdict":"allow""#), "{out}");
    let requests = c.server.requests();
    let pages: Vec<&RequestLog> = lists(&requests, "/api/v1/pods").collect();
    assert_eq!(pages.len(), 3, "1,202 pods in pages of 500: {pages:?}");
    assert!(pages.iter().all(|r| r.has_param("limit", "500")), "{pages:?}");
    assert_eq!(pages.iter().filter(|r| r.query.contains("continue=")).count(), 2, "{pages:?}");
}

#[test]
fn input_flags() {
    let c = cluster();
    let kc = c.kubeconfig.display().to_string();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier").display().to_string();
    let flow = r#"{"src":"frontend/web","dst":"backend/api","port":8080}"#;

    let (code, _, err) = netpol(&["query", "-f", &example, "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("either with -f or with --kubeconfig/--context, not both"), "{err}");

    // $KUBECONFIG does not get in the way of -f ...
    c.server.clear_requests();
    let (code, _, err) = netpol(&["query", "-f", &example], flow, &[("KUBECONFIG", &kc)]);
    assert_eq!(code, 0, "{err}");
    assert!(c.server.requests().is_empty());
    // ... and is the cluster when -f is not given, like kubectl.
    let (code, out, err) = netpol(&["query"], flow, &[("KUBECONFIG", &kc)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(r#""verdict":"allow""#), "{out}");
    assert!(err.contains(&format!("answered from {}", c.server.url())), "{err}");

    let (code, _, err) = netpol(&["query", "--kubeconfig", &kc, "--context", "nope"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = netpol(&["query", "--in-cluster"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("in-cluster"), "{err}");
    let (code, _, err) = netpol(&["query", "--in-cluster", "--kubeconfig", &kc], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--in-cluster cannot be combined"), "{err}");
    let (code, _, err) = netpol(&["query"], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("no input"), "{err}");
    let (code, _, err) = netpol(&["serve", "--kubeconfig", &kc, "--watch"], "", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("--watch"), "{err}");
    // A server that does not answer: a clear error, not a hang.
    let dead = c._dir.path().join("dead");
    std::fs::write(
        &dead,
        std::fs::read_to_string(&c.kubeconfig).unwrap().replace(&c.server.url(), "http://127.0.0.1:9"),
    )
    .unwrap();
    let (code, _, err) = netpol(&["query", "--kubeconfig", &dead.display().to_string()], flow, &[]);
    assert_eq!(code, 2);
    assert!(err.contains("reading the cluster at http://127.0.0.1:9"), "{err}");
}

#[test]
fn serve_binary_over_a_socket() {
    let c = cluster();
    c.server.put(default_deny());
    let mut child = Command::new(env!("CARGO_BIN_EXE_netpol"))
        .args(["serve", "--kubeconfig", &c.kubeconfig.display().to_string(), "--listen", "127.0.0.1:0"])
        .env_remove("KUBECONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn netpol serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    let addr = line.split("http://").nth(2).and_then(|s| s.split_whitespace().next()).map(str::to_string);
    let Some(addr) = addr else {
        let _ = child.kill();
        panic!("no address in `{line}`");
    };
    assert!(line.contains(&format!("serving the cluster at {}", c.server.url())), "{line}");
    let http_get = |path: &str| -> String {
        let mut s = std::net::TcpStream::connect(&addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("write");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        resp
    };
    let deadline = Instant::now() + TIMEOUT;
    while !http_get("/healthz").starts_with("HTTP/1.1 200") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve never became ready");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let resp = http_get("/api/v1/explain?src=frontend/web&dst=backend/api&port=8080");
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let rv = c.server.resource_version();
    let lower = resp.to_ascii_lowercase();
    assert!(
        lower.contains(&format!("x-netpol-resource-version: pods=5,networkpolicies={rv},namespaces=3\r\n")),
        "{resp}"
    );
    assert!(resp.contains(r#""verdict":"deny""#), "{resp}");
}

// ---- deploy/ ----

#[test]
fn deploy_manifest_is_read_only_and_hardened() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/netpol.yaml");
    let text = std::fs::read_to_string(&path).expect("deploy/netpol.yaml");
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .collect();
    let of = |kind: &str| -> Vec<&Value> { docs.iter().filter(|d| d["kind"] == kind).collect() };
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment", "Service"]);

    // RBAC: get/list/watch only, on exactly namespaces, pods and networking.k8s.io networkpolicies.
    let role = of("ClusterRole")[0];
    let mut granted = Vec::new();
    for rule in role["rules"].as_array().expect("rules") {
        let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(verbs, ["get", "list", "watch"], "{rule}");
        assert!(rule.get("nonResourceURLs").is_none() && rule.get("resourceNames").is_none(), "{rule}");
        for g in rule["apiGroups"].as_array().unwrap() {
            for r in rule["resources"].as_array().unwrap() {
                granted.push(format!("{}/{}", g.as_str().unwrap(), r.as_str().unwrap()));
            }
        }
    }
    granted.sort();
    assert_eq!(granted, ["/namespaces", "/pods", "networking.k8s.io/networkpolicies"]);
    let binding = of("ClusterRoleBinding")[0];
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let sa = of("ServiceAccount")[0];
    assert_eq!(binding["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(binding["subjects"][0]["name"], sa["metadata"]["name"]);
    assert_eq!(binding["subjects"][0]["namespace"], sa["metadata"]["namespace"]);

    let dep = of("Deployment")[0];
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_eq!(dep["metadata"]["namespace"], sa["metadata"]["namespace"]);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    let container = &spec["containers"][0];
    assert_eq!(container["args"], json!(["serve", "--in-cluster", "--listen", "0.0.0.0:8080"]));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/healthz");
    assert!(container["livenessProbe"]["httpGet"]["path"].is_string());
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(container["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert!(
        container["resources"]["requests"]["cpu"].is_string()
            && container["resources"]["requests"]["memory"].is_string()
    );
    let labels = &dep["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&dep["spec"]["selector"]["matchLabels"], labels);
    let svc = of("Service")[0];
    assert_eq!(&svc["spec"]["selector"], labels);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], container["ports"][0]["name"]);
    // The CLI accepts the Deployment's arguments (parsing only: --help after them).
    let mut args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    args.push("--help");
    let (code, _, err) = netpol(&args, "", &[]);
    assert_eq!(code, 0, "{err}");
}
