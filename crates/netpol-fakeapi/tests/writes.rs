//! Writes over HTTP: create, replace, patch and delete, by raw HTTP/1.1 requests, by kube-rs's client and by
//! `kubectl` (when it is on `PATH`), and the watch events they produce.
//!
//! Every async test runs under [`within`], so a hang fails the test instead of blocking CI.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::future::Future;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config, ResourceExt};
use netpol_fakeapi::{FakeApiServer, Kind};
use serde_json::{json, Value};

const TEST_TIMEOUT: Duration = Duration::from_secs(60);

async fn within<F: Future>(body: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, body).await.expect("the test timed out")
}

/// A file in the target directory (`CARGO_TARGET_TMPDIR`), never the system's temporary directory.
fn scratch(server: &FakeApiServer, name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "netpol-fakeapi-writes-{}-{}-{name}",
        std::process::id(),
        server.addr().port()
    ))
}

async fn client(server: &FakeApiServer) -> Client {
    let path = scratch(server, "kubeconfig");
    server.write_kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await.unwrap();
    // kube-rs takes HTTPS_PROXY from the environment even for a plain-http cluster; loopback needs no proxy.
    config.proxy_url = None;
    Client::try_from(config).unwrap()
}

/// Sends one HTTP/1.1 request and returns the status code and the JSON body.
fn http(server: &FakeApiServer, method: &str, path: &str, content_type: &str, body: &str) -> (u16, Value) {
    let mut conn = std::net::TcpStream::connect(server.addr()).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: fakeapi\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    conn.read_to_string(&mut text).unwrap();
    let code = text.split(' ').nth(1).unwrap().parse().unwrap();
    let body = text.split_once("\r\n\r\n").unwrap().1;
    (code, serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")))
}

const JSON: &str = "application/json";
const PODS: &str = "/api/v1/namespaces/a/pods";

fn pod(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": "main", "image": image}, {"name": "side", "image": "side:1"}]},
    })
}

fn reason(status: &Value) -> (u64, &str) {
    assert_eq!((status["kind"].as_str(), status["status"].as_str()), (Some("Status"), Some("Failure")), "{status}");
    (status["code"].as_u64().unwrap(), status["reason"].as_str().unwrap())
}

#[test]
fn create_answers_201_then_409_already_exists_and_refuses_other_kinds_and_namespaces() {
    let server = FakeApiServer::start().unwrap();
    let (code, created) = http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["namespace"], "a", "the namespace comes from the path");
    assert_eq!(created["metadata"]["resourceVersion"], server.resource_version().to_string());
    assert!(created["metadata"]["uid"].as_str().is_some_and(|u| !u.is_empty()));
    assert!(created["metadata"]["creationTimestamp"].is_string());
    assert_eq!(server.get("Pod", Some("a"), "web").unwrap(), created);

    let (code, status) = http(&server, "POST", PODS, JSON, &pod("web", "web:2").to_string());
    assert_eq!((code, reason(&status)), (409, (409, "AlreadyExists")));
    assert_eq!(status["message"], "pods \"web\" already exists");
    assert_eq!(status["details"], json!({"name": "web", "kind": "pods"}));

    let revision = server.resource_version();
    let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}});
    let elsewhere = json!({"kind": "Pod", "metadata": {"name": "db", "namespace": "b"}});
    let np = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p"}});
    for body in [namespace, elsewhere, np, json!([1]), json!("pod")] {
        let (code, status) = http(&server, "POST", PODS, JSON, &body.to_string());
        assert_eq!((code, reason(&status)), (400, (400, "BadRequest")), "{body}");
    }
    let (code, status) = http(&server, "POST", PODS, JSON, "{not json");
    assert_eq!((code, reason(&status).1), (400, "BadRequest"));
    let (code, status) = http(&server, "POST", PODS, JSON, r#"{"kind":"Pod","metadata":{}}"#);
    assert_eq!((code, reason(&status).1), (422, "Invalid"));
    assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    let (code, status) = http(&server, "POST", "/api/v1/pods", JSON, &pod("x", "x").to_string());
    assert_eq!((code, reason(&status).1), (405, "MethodNotAllowed"));
    let (code, status) = http(&server, "POST", PODS, "application/vnd.kubernetes.protobuf", "\u{0}");
    assert_eq!((code, reason(&status).1), (415, "UnsupportedMediaType"));
    assert_eq!(server.resource_version(), revision, "nothing refused was stored");

    // No kind or apiVersion: the path's. generateName: a name is made. YAML bodies are read too.
    let (code, generated) = http(&server, "POST", PODS, JSON, r#"{"metadata":{"generateName":"job-"}}"#);
    assert_eq!(code, 201, "{generated}");
    assert_eq!((generated["kind"].as_str(), generated["apiVersion"].as_str()), (Some("Pod"), Some("v1")));
    let name = generated["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: from-yaml\n";
    assert_eq!(http(&server, "POST", "/api/v1/namespaces", "application/yaml", yaml).0, 201);
    assert!(server.get("Namespace", None, "from-yaml").is_some());
    // A cluster-scoped object at its path; a CRD kind at its group's path.
    let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"priority": 3}});
    let (code, created) = http(&server, "POST", &Kind::AdminNetworkPolicy.path(), JSON, &anp.to_string());
    assert_eq!(code, 201, "{created}");
}

#[test]
fn replace_keeps_uid_and_creation_and_refuses_stale_revisions_absent_objects_and_other_names() {
    let server = FakeApiServer::start().unwrap();
    let (_, created) = http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
    let mut next = pod("web", "web:2");
    next["metadata"]["resourceVersion"] = created["metadata"]["resourceVersion"].clone();
    let (code, replaced) = http(&server, "PUT", &format!("{PODS}/web"), JSON, &next.to_string());
    assert_eq!(code, 200, "{replaced}");
    assert_eq!(replaced["spec"]["containers"][0]["image"], "web:2");
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(replaced["metadata"]["creationTimestamp"], created["metadata"]["creationTimestamp"]);
    assert_eq!(replaced["metadata"]["resourceVersion"], server.resource_version().to_string());

    // The same body again: its resourceVersion is now stale.
    let (code, status) = http(&server, "PUT", &format!("{PODS}/web"), JSON, &next.to_string());
    assert_eq!((code, reason(&status)), (409, (409, "Conflict")));
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to \
         the latest version and try again"
    );
    // Without a resourceVersion, a replace is unconditional.
    let (code, _) = http(&server, "PUT", &format!("{PODS}/web"), JSON, &pod("web", "web:3").to_string());
    assert_eq!(code, 200);
    let (code, status) = http(&server, "PUT", &format!("{PODS}/nope"), JSON, &pod("nope", "x").to_string());
    assert_eq!((code, reason(&status)), (404, (404, "NotFound")));
    assert_eq!(status["message"], "pods \"nope\" not found");
    let (code, status) = http(&server, "PUT", &format!("{PODS}/web"), JSON, &pod("other", "x").to_string());
    assert_eq!((code, reason(&status).1), (400, "BadRequest"));
    let mut uid = pod("web", "web:4");
    uid["metadata"]["uid"] = json!("another");
    assert_eq!(http(&server, "PUT", &format!("{PODS}/web"), JSON, &uid.to_string()).0, 409);
}

#[test]
fn every_patch_type_applies_and_bumps_the_revision() {
    let server = FakeApiServer::start().unwrap();
    let (_, created) = http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
    let web = format!("{PODS}/web");
    let patch = |content_type: &str, body: Value| http(&server, "PATCH", &web, content_type, &body.to_string());

    let (code, merged) =
        patch("application/merge-patch+json", json!({"metadata": {"labels": {"app": null, "tier": "front"}}}));
    assert_eq!(code, 200, "{merged}");
    assert_eq!(merged["metadata"]["labels"], json!({"tier": "front"}));
    assert_eq!(merged["metadata"]["uid"], created["metadata"]["uid"]);
    assert_eq!(merged["metadata"]["resourceVersion"], server.resource_version().to_string());

    let ops = json!([
        {"op": "test", "path": "/metadata/labels/tier", "value": "front"},
        {"op": "add", "path": "/metadata/labels/app.kubernetes.io~1name", "value": "web"},
        {"op": "replace", "path": "/spec/containers/0/image", "value": "web:2"},
        {"op": "remove", "path": "/metadata/labels/tier"},
    ]);
    let (code, patched) = patch("application/json-patch+json", ops);
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["metadata"]["labels"], json!({"app.kubernetes.io/name": "web"}));
    assert_eq!(patched["spec"]["containers"][0]["image"], "web:2");
    let revision = server.resource_version();
    let (code, status) = patch("application/json-patch+json", json!([{"op": "test", "path": "/kind", "value": "X"}]));
    assert_eq!((code, reason(&status).1), (422, "Invalid"));
    let (code, status) = patch("application/json-patch+json", json!({"op": "add"}));
    assert_eq!((code, reason(&status).1), (400, "BadRequest"));
    assert_eq!(server.resource_version(), revision, "a failed patch changes nothing");

    // Strategic: containers merge by name (kubectl's directives included); other lists are replaced.
    let smp = json!({"spec": {
        "$setElementOrder/containers": [{"name": "main"}, {"name": "side"}],
        "containers": [{"name": "side", "image": "side:2"}],
    }});
    let (code, patched) = patch("application/strategic-merge-patch+json", smp);
    assert_eq!(code, 200, "{patched}");
    assert_eq!(
        patched["spec"]["containers"],
        json!([{"name": "main", "image": "web:2"}, {"name": "side", "image": "side:2"}])
    );

    // A stale resourceVersion in a patch is a precondition that fails.
    let (code, status) = patch("application/merge-patch+json", json!({"metadata": {"resourceVersion": "2"}}));
    assert_eq!((code, reason(&status).1), (409, "Conflict"));
    let (code, status) = patch("application/merge-patch+json", json!({"metadata": {"name": "other"}}));
    assert_eq!((code, reason(&status).1), (400, "BadRequest"));
    let (code, status) = patch("text/plain", json!({}));
    assert_eq!((code, reason(&status).1), (415, "UnsupportedMediaType"));
    let (code, status) =
        http(&server, "PATCH", &format!("{PODS}/nope"), "application/merge-patch+json", &json!({}).to_string());
    assert_eq!((code, reason(&status).1), (404, "NotFound"));

    // Server-side apply: fieldManager required; creates (201), then merges (200).
    let apply = "application/apply-patch+yaml";
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: db\n  labels: {app: db}\nspec:\n  containers:\n  - \
                name: main\n    image: db:1\n";
    let db = format!("{PODS}/db");
    let (code, status) = http(&server, "PATCH", &db, apply, yaml);
    assert_eq!((code, reason(&status).1), (422, "Invalid"));
    let (code, applied) = http(&server, "PATCH", &format!("{db}?fieldManager=test"), apply, yaml);
    assert_eq!(code, 201, "{applied}");
    assert_eq!(applied["metadata"]["namespace"], "a");
    let (code, applied) =
        http(&server, "PATCH", &format!("{db}?fieldManager=test"), apply, &yaml.replace("db:1", "db:2"));
    assert_eq!(code, 200, "{applied}");
    assert_eq!(applied["spec"]["containers"], json!([{"name": "main", "image": "db:2"}]));
    assert_eq!(applied["metadata"]["uid"], server.get("Pod", Some("a"), "db").unwrap()["metadata"]["uid"]);

    // Custom resources take merge and JSON patches but not strategic ones, as on a real apiserver.
    let anp = json!({"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"priority": 3}});
    server.put(anp);
    let path = format!("{}/deny", Kind::AdminNetworkPolicy.path());
    let body = json!({"spec": {"priority": 4}}).to_string();
    let (code, status) = http(&server, "PATCH", &path, "application/strategic-merge-patch+json", &body);
    assert_eq!((code, reason(&status).1), (415, "UnsupportedMediaType"));
    let (code, patched) = http(&server, "PATCH", &path, "application/merge-patch+json", &body);
    assert_eq!((code, &patched["spec"]["priority"]), (200, &json!(4)));
}

#[test]
fn delete_answers_the_last_state_then_404_and_checks_preconditions() {
    let server = FakeApiServer::start().unwrap();
    http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
    let web = format!("{PODS}/web");
    let stale = json!({"preconditions": {"resourceVersion": "1"}}).to_string();
    let (code, status) = http(&server, "DELETE", &web, JSON, &stale);
    assert_eq!((code, reason(&status).1), (409, "Conflict"));
    let (code, deleted) = http(&server, "DELETE", &web, JSON, r#"{"propagationPolicy":"Background"}"#);
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(deleted["metadata"]["name"], "web");
    assert_eq!(deleted["metadata"]["resourceVersion"], server.resource_version().to_string());
    assert_eq!(server.get("Pod", Some("a"), "web"), None);
    let (code, status) = http(&server, "DELETE", &web, JSON, "");
    assert_eq!((code, reason(&status)), (404, (404, "NotFound")));
    let (code, status) = http(&server, "DELETE", PODS, JSON, "");
    assert_eq!((code, reason(&status).1), (405, "MethodNotAllowed"));
}

#[test]
fn dry_run_answers_without_storing() {
    let server = FakeApiServer::start().unwrap();
    let (code, created) = http(&server, "POST", &format!("{PODS}?dryRun=All"), JSON, &pod("web", "web:1").to_string());
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["name"], "web");
    assert!(created["metadata"]["uid"].is_string() && created["metadata"].get("resourceVersion").is_none());
    assert_eq!((server.resource_version(), server.get("Pod", Some("a"), "web")), (1, None));

    http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
    let stored = server.get("Pod", Some("a"), "web").unwrap();
    let revision = server.resource_version();
    let web = format!("{PODS}/web?dryRun=All");
    let (code, replaced) = http(&server, "PUT", &web, JSON, &pod("web", "web:2").to_string());
    assert_eq!((code, &replaced["spec"]["containers"][0]["image"]), (200, &json!("web:2")));
    assert_eq!(replaced["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"]);
    let merge = json!({"metadata": {"labels": {"new": "1"}}}).to_string();
    let (code, patched) = http(&server, "PATCH", &web, "application/merge-patch+json", &merge);
    assert_eq!((code, &patched["metadata"]["labels"]["new"]), (200, &json!("1")));
    let (code, deleted) = http(&server, "DELETE", &web, JSON, "");
    assert_eq!((code, &deleted["metadata"]["name"]), (200, &json!("web")));
    // DeleteOptions' dryRun counts too.
    let (code, _) = http(&server, "DELETE", &format!("{PODS}/web"), JSON, r#"{"dryRun":["All"]}"#);
    assert_eq!(code, 200);
    assert_eq!(server.resource_version(), revision);
    assert_eq!(server.get("Pod", Some("a"), "web").unwrap(), stored);
    let (code, status) = http(&server, "POST", &format!("{PODS}?dryRun=Some"), JSON, &pod("x", "x").to_string());
    assert_eq!((code, reason(&status).1), (400, "BadRequest"));
}

#[test]
fn a_forbidden_kind_refuses_writes_with_their_verb() {
    let server = FakeApiServer::start().unwrap();
    server.put(json!({"kind": "Pod", "metadata": {"namespace": "a", "name": "web"}}));
    server.set_forbidden(Kind::Pod, true);
    let (code, status) = http(&server, "POST", PODS, JSON, &pod("db", "db:1").to_string());
    assert_eq!((code, reason(&status).1), (403, "Forbidden"));
    assert_eq!(
        status["message"],
        "pods is forbidden: User \"system:anonymous\" cannot create resource \"pods\" in API group \"\" in the \
         namespace \"a\""
    );
    let (code, status) = http(&server, "DELETE", &format!("{PODS}/web"), JSON, "");
    assert_eq!(code, 403);
    assert!(status["message"].as_str().unwrap().contains("cannot delete resource"), "{status}");
    assert!(server.get("Pod", Some("a"), "web").is_some());
}

#[test]
fn discovery_lists_the_write_verbs_and_a_minimal_openapi_v3() {
    let server = FakeApiServer::start().unwrap();
    let (code, core) = http(&server, "GET", "/api/v1", JSON, "");
    assert_eq!(code, 200);
    let pods = core["resources"].as_array().unwrap().iter().find(|r| r["name"] == "pods").unwrap();
    assert_eq!(pods["verbs"], json!(["create", "delete", "get", "list", "patch", "update", "watch"]));
    assert_eq!(pods["namespaced"], true);
    let (_, policy) = http(&server, "GET", "/apis/policy.networking.k8s.io/v1alpha1", JSON, "");
    assert_eq!(policy["resources"][0]["verbs"][0], "create");

    let (code, root) = http(&server, "GET", "/openapi/v3", JSON, "");
    assert_eq!(code, 200);
    assert_eq!(root["paths"]["api/v1"]["serverRelativeURL"], "/openapi/v3/api/v1");
    assert!(root["paths"].get("apis/networking.k8s.io/v1").is_some());
    assert!(root["paths"].get("apis/cilium.io/v2").is_none(), "Cilium is not installed");
    let (code, doc) = http(&server, "GET", "/openapi/v3/api/v1?hash=x", JSON, "");
    assert_eq!(code, 200);
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"], json!({"group": "", "version": "v1", "kind": "Pod"}));
    assert!(patch["parameters"].as_array().unwrap().iter().any(|p| p["name"] == "fieldValidation"));
    assert_eq!(http(&server, "GET", "/openapi/v3/apis/cilium.io/v2", JSON, "").0, 404);
}

#[tokio::test]
async fn a_watch_sees_the_events_of_http_writes() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        let pods: Api<Pod> = Api::namespaced(client(&server).await, "a");
        let mut events = pods.watch(&WatchParams::default(), "1").await.unwrap().boxed();
        http(&server, "POST", PODS, JSON, &pod("web", "web:1").to_string());
        let merge = json!({"metadata": {"labels": {"v": "2"}}}).to_string();
        http(&server, "PATCH", &format!("{PODS}/web"), "application/merge-patch+json", &merge);
        http(&server, "PUT", &format!("{PODS}/web"), JSON, &pod("web", "web:3").to_string());
        http(&server, "POST", &format!("{PODS}?dryRun=All"), JSON, &pod("dry", "x").to_string());
        http(&server, "DELETE", &format!("{PODS}/web"), JSON, "");
        let mut seen = Vec::new();
        for _ in 0..4 {
            match events.next().await.unwrap().unwrap() {
                WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.resource_version().unwrap())),
                WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.resource_version().unwrap())),
                WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.resource_version().unwrap())),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, ["ADDED 2", "MODIFIED 3", "MODIFIED 4", "DELETED 5"]);
    })
    .await;
}

#[tokio::test]
async fn kube_rs_creates_replaces_patches_and_deletes() {
    within(async {
        let server = FakeApiServer::start().unwrap();
        let client = client(&server).await;
        let pods: Api<Pod> = Api::namespaced(client.clone(), "a");
        let web: Pod = serde_json::from_value(pod("web", "web:1")).unwrap();
        let created = pods.create(&PostParams::default(), &web).await.unwrap();
        assert_eq!(created.namespace().as_deref(), Some("a"));
        let error = pods.create(&PostParams::default(), &web).await.unwrap_err();
        assert!(matches!(&error, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists"), "{error:?}");

        let mut next = created.clone();
        next.labels_mut().insert("v".into(), "2".into());
        let replaced = pods.replace("web", &PostParams::default(), &next).await.unwrap();
        assert_eq!(replaced.uid(), created.uid());
        let error = pods.replace("web", &PostParams::default(), &next).await.unwrap_err();
        assert!(matches!(&error, kube::Error::Api(s) if s.code == 409 && s.reason == "Conflict"), "{error:?}");

        let params = PatchParams::default();
        let merged = pods.patch("web", &params, &Patch::Merge(json!({"metadata": {"labels": {"v": "3"}}}))).await;
        assert_eq!(merged.unwrap().labels()["v"], "3");
        let strategic = Patch::Strategic(json!({"spec": {"containers": [{"name": "main", "image": "web:2"}]}}));
        let patched = pods.patch("web", &params, &strategic).await.unwrap();
        let images: Vec<_> = patched.spec.unwrap().containers.into_iter().map(|c| c.image.unwrap()).collect();
        assert_eq!(images, ["web:2", "side:1"]);
        let apply = PatchParams::apply("netpol-test");
        let db = pods.patch("db", &apply, &Patch::Apply(pod("db", "db:1"))).await.unwrap();
        assert_eq!(db.name_any(), "db");
        let dry = pods.patch("db", &apply.clone().dry_run(), &Patch::Apply(pod("db", "db:2"))).await.unwrap();
        assert_eq!(dry.spec.unwrap().containers[0].image.as_deref(), Some("db:2"));
        let stored = pods.get("db").await.unwrap();
        assert_eq!(stored.spec.unwrap().containers[0].image.as_deref(), Some("db:1"));

        let deleted = pods.delete("web", &DeleteParams::default()).await.unwrap();
        assert!(deleted.left().is_some_and(|p| p.name_any() == "web"));
        assert_eq!(pods.get_opt("web").await.unwrap(), None);
        let error = pods.delete("web", &DeleteParams::default()).await.unwrap_err();
        assert!(matches!(&error, kube::Error::Api(s) if s.code == 404), "{error:?}");

        // A custom kind, through the dynamic API.
        let resource = ApiResource {
            group: "policy.networking.k8s.io".into(),
            version: "v1alpha1".into(),
            api_version: "policy.networking.k8s.io/v1alpha1".into(),
            kind: "AdminNetworkPolicy".into(),
            plural: "adminnetworkpolicies".into(),
        };
        let anps: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let anp: DynamicObject = serde_json::from_value(json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
            "kind": "AdminNetworkPolicy", "metadata": {"name": "deny"}, "spec": {"priority": 3}}))
        .unwrap();
        anps.create(&PostParams::default(), &anp).await.unwrap();
        let patched = anps.patch("deny", &params, &Patch::Merge(json!({"spec": {"priority": 5}}))).await.unwrap();
        assert_eq!(patched.data["spec"]["priority"], 5);
        anps.delete("deny", &DeleteParams::default()).await.unwrap();
        assert_eq!(server.get_kind(Kind::AdminNetworkPolicy, None, "deny"), None);
    })
    .await;
}

// ---------------------------------------------------------------------------------------------------------------
// kubectl

/// The `kubectl` on `PATH`, if any.
fn kubectl() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("kubectl")).find(|p| p.is_file())
}

/// Runs `kubectl` against the server; returns its exit status's success and its stdout and stderr.
fn run_kubectl(kubectl: &Path, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(kubectl)
        .args(args)
        .args(["--request-timeout=20s"])
        .env("KUBECONFIG", kubeconfig)
        // The cache of discovery and OpenAPI documents, per test, never in the user's home.
        .env("KUBECACHEDIR", kubeconfig.with_extension("cache"))
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("kubectl runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Removes the test's files when it ends, passed or failed.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for path in &self.0 {
            // Files a failed test did not get to write are not there to remove.
            let _ = std::fs::remove_file(path);
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

#[test]
fn kubectl_applies_creates_labels_gets_and_deletes() {
    let Some(kubectl) = kubectl() else {
        eprintln!("skipped: kubectl is not on PATH (install it, e.g. Debian's kubectl, to run this test)");
        return;
    };
    let server = FakeApiServer::start().unwrap();
    server.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
    let kubeconfig = scratch(&server, "kubeconfig");
    server.write_kubeconfig(&kubeconfig).unwrap();
    let manifest = scratch(&server, "manifest.yaml");
    let _cleanup = Cleanup(vec![kubeconfig.clone(), manifest.clone(), kubeconfig.with_extension("cache")]);
    let write = |image: &str, priority: u32| {
        let text = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels: {{app: web}}\nspec:\n  containers:\n  - \
             name: main\n    image: {image}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  \
             name: deny\nspec:\n  podSelector: {{}}\n  policyTypes: [Ingress]\n---\napiVersion: \
             policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata:\n  name: anp\nspec:\n  priority: \
             {priority}\n  subject: {{namespaces: {{}}}}\n"
        );
        std::fs::write(&manifest, text).unwrap();
    };
    let run = |args: &[&str]| {
        let (ok, text) = run_kubectl(&kubectl, &kubeconfig, args);
        assert!(ok, "kubectl {args:?} failed:\n{text}");
        text
    };
    let file = manifest.to_str().unwrap();

    write("web:1", 10);
    let out = run(&["apply", "-f", file]);
    assert!(
        out.contains("pod/web created") && out.contains("adminnetworkpolicy.policy.networking.k8s.io/anp created"),
        "{out}"
    );
    let pod = server.get("Pod", Some("default"), "web").unwrap();
    assert!(pod["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"].is_string());

    write("web:2", 20);
    let out = run(&["apply", "-f", file]);
    assert!(out.contains("pod/web configured"), "{out}");
    let pod = server.get("Pod", Some("default"), "web").unwrap();
    assert_eq!(pod["spec"]["containers"][0]["image"], "web:2");
    assert_eq!(server.get_kind(Kind::AdminNetworkPolicy, None, "anp").unwrap()["spec"]["priority"], 20);

    let out = run(&["label", "pod", "web", "team=a", "--overwrite"]);
    assert!(out.contains("pod/web labeled"), "{out}");
    run(&["label", "adminnetworkpolicy", "anp", "team=b"]);
    run(&["label", "pod", "web", "app-"]);
    let pod = server.get("Pod", Some("default"), "web").unwrap();
    assert_eq!(pod["metadata"]["labels"], json!({"team": "a"}));
    let uid = pod["metadata"]["uid"].clone();
    assert_eq!(server.get_kind(Kind::AdminNetworkPolicy, None, "anp").unwrap()["metadata"]["labels"]["team"], "b");

    run(&["annotate", "networkpolicy", "deny", "note=x"]);
    let np = server.get("NetworkPolicy", Some("default"), "deny").unwrap();
    assert_eq!(np["metadata"]["annotations"]["note"], "x");
    write("web:3", 30);
    let out = run(&["replace", "-f", file]);
    assert!(out.contains("pod/web replaced"), "{out}");
    let pod = server.get("Pod", Some("default"), "web").unwrap();
    assert_eq!((&pod["spec"]["containers"][0]["image"], &pod["metadata"]["uid"]), (&json!("web:3"), &uid));

    run(&["patch", "pod", "web", "-p", r#"{"spec":{"containers":[{"name":"main","image":"web:4"}]}}"#]);
    run(&["patch", "pod", "web", "--type=json", "-p", r#"[{"op":"add","path":"/metadata/labels/x","value":"y"}]"#]);
    let pod = server.get("Pod", Some("default"), "web").unwrap();
    assert_eq!(
        (&pod["spec"]["containers"][0]["image"], &pod["metadata"]["labels"]["x"]),
        (&json!("web:4"), &json!("y"))
    );
    let revision = server.resource_version();
    let out = run(&["apply", "--dry-run=server", "-f", file, "-o", "jsonpath={.items[0].spec.containers[0].image}"]);
    // (After `replace`, kubectl warns that the last-applied annotation is gone, on stderr.)
    assert!(out.starts_with("web:3"), "{out}");
    assert_eq!(server.resource_version(), revision, "a server-side dry run changes nothing");

    let out = run(&["get", "pods", "-o", "name"]);
    assert_eq!(out.trim(), "pod/web");
    let out = run(&["get", "po,netpol,anp", "-o", "name"]);
    let names: Vec<&str> = out.lines().collect();
    assert_eq!(
        names,
        ["pod/web", "networkpolicy.networking.k8s.io/deny", "adminnetworkpolicy.policy.networking.k8s.io/anp"]
    );
    let out = run(&["get", "networkpolicy", "deny", "-o", "jsonpath={.spec.policyTypes[0]}"]);
    assert_eq!(out, "Ingress");

    let (ok, out) = run_kubectl(&kubectl, &kubeconfig, &["create", "-f", file]);
    assert!(!ok && out.contains("AlreadyExists"), "{out}");
    run(&["delete", "-f", file]);
    assert_eq!(server.get("Pod", Some("default"), "web"), None);
    assert_eq!(server.get_kind(Kind::AdminNetworkPolicy, None, "anp"), None);
    let out = run(&["create", "-f", file]);
    assert!(out.contains("networkpolicy.networking.k8s.io/deny created"), "{out}");
    let out = run(&["apply", "--server-side", "-f", file]);
    assert!(out.contains("serverside-applied"), "{out}");
    run(&["delete", "pod", "web"]);
    assert_eq!(server.get("Pod", Some("default"), "web"), None);
}
