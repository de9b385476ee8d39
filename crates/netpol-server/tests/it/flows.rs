//! `POST /api/v1/flows/replay` and `POST /api/v1/graph/flows` on examples/three-tier and its Hubble flow log:
//! the replay report (`netpol flows replay -o json`), with and without a proposed change, bad input, gzip, the
//! bound on expensive requests, the OpenAPI document; and the log over the graph, edge by edge.

use std::io::Write;
use std::path::Path;

use axum::http::{Method, StatusCode};
use netpol_server::{router, AppState};
use serde_json::{json, Value};

use crate::common::{assert_declared, call, example, get, Res};

fn state() -> AppState {
    AppState::from_files(&[example()]).expect("three-tier loads")
}

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// examples/three-tier/flows.hubble.jsonl: 24 lines, one of them cut short.
fn hubble_log() -> Vec<u8> {
    std::fs::read(root().join("examples/three-tier/flows.hubble.jsonl")).expect("the example's flow log")
}

/// examples/three-tier-fix/allow-postgres-from-backend.yaml, as a JSON object.
fn the_fix() -> Value {
    let text = std::fs::read_to_string(root().join("examples/three-tier-fix/allow-postgres-from-backend.yaml"))
        .expect("the example's fix");
    serde_yaml_ng::from_str(&text).expect("YAML")
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn assert_error(r: &Res, status: StatusCode, field: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], field, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
}

async fn replay(app: &axum::Router, query: &str, content_type: &str, body: Vec<u8>) -> Res {
    call(app, Method::POST, &format!("/api/v1/flows/replay{query}"), &[("content-type", content_type)], body).await
}

#[tokio::test]
async fn replay_answers_as_the_command_line() {
    let app = router(state());
    let r = replay(&app, "", "application/x-ndjson", hubble_log()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    // The members of `netpol flows replay -o json`.
    for key in ["summary", "rows", "unresolved", "cni", "change", "lines", "skipped_lines", "errors"] {
        assert!(j.get(key).is_some(), "{key} missing: {j}");
    }
    assert_eq!(j["lines"], 24);
    assert_eq!(j["change"], Value::Null);
    assert_eq!(j["cni"]["name"], "generic");
    let s = &j["summary"];
    assert_eq!(s["proposed"], false);
    assert_eq!(s["observed"], json!({"classes": 10, "connections": 13}));
    assert_eq!(s["observed_allowed_model_denies"], json!({"classes": 1, "connections": 1}));
    assert_eq!(s["newly_denied"], json!({"classes": 0, "connections": 0}));
    // The line cut short is an error of its own, named by the body.
    let errors = j["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1, "{j}");
    assert_eq!((errors[0]["file"].as_str(), errors[0]["line"].as_u64()), (Some("body"), Some(8)));
    // Explanations only for the disagreeing row; every row's with `explain`.
    let rows = j["rows"].as_array().expect("rows");
    assert_eq!(rows.iter().filter(|r| r.get("explain_current").is_some()).count(), 1, "{j}");
    let r = replay(&app, "?explain=true", "text/plain", hubble_log()).await;
    let j = r.json();
    assert!(j["rows"].as_array().expect("rows").iter().all(|r| r["explain_current"].is_object()), "{j}");
}

#[tokio::test]
async fn a_change_that_cuts_observed_traffic_is_newly_denied() {
    let app = router(state());
    let flows = String::from_utf8(hubble_log()).expect("UTF-8");
    let body = json!({"flows": flows, "apply": [the_fix()]});
    let r = replay(&app, "", "application/json", body.to_string().into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["summary"]["proposed"], true);
    assert_eq!(j["summary"]["newly_denied"], json!({"classes": 1, "connections": 3}));
    assert_eq!(j["summary"]["newly_allowed"], json!({"classes": 0, "connections": 0}));
    assert!(
        j["change"].as_str().is_some_and(|c| c.contains("database/allow-postgres-from-backend")),
        "{}",
        j["change"]
    );
    let cut: Vec<&Value> =
        j["rows"].as_array().expect("rows").iter().filter(|r| r["change"] == "newly_denied").collect();
    assert_eq!(cut.len(), 1);
    assert!(cut[0]["src"].as_str().is_some_and(|s| s.starts_with("backend/worker-")), "{}", cut[0]);
    assert_eq!((cut[0]["current"].as_str(), cut[0]["proposed"].as_str()), (Some("allow"), Some("deny")));
    assert!(cut[0]["explain_proposed"].is_object(), "{}", cut[0]);
    // The line errors are named by the member.
    assert_eq!(j["errors"][0]["file"], "flows");
    // Deleting the api's ingress policy cuts the observed web -> api connections instead.
    let body = json!({"flows": flows, "delete": ["backend/allow-api-from-frontend"]});
    let r = replay(&app, "", "application/json; charset=utf-8", body.to_string().into_bytes()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let cut = r.json()["rows"].as_array().expect("rows").clone();
    assert!(
        cut.iter()
            .any(|r| r["change"] == "newly_denied" && r["dst"].as_str().is_some_and(|d| d.starts_with("backend/api-"))),
        "{cut:?}"
    );
    // Nothing was applied: the model still allows the flow the fix would cut.
    let e = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!(e.json()["verdict"], "allow");
    // The JSON request gzip-compressed: the same answer.
    let body = json!({"flows": flows, "apply": [the_fix()]});
    let r = call(
        &app,
        Method::POST,
        "/api/v1/flows/replay",
        &[("content-type", "application/json"), ("content-encoding", "gzip")],
        gzip(body.to_string().as_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["summary"]["newly_denied"], json!({"classes": 1, "connections": 3}));
    // A JSON body without a change: the log alone.
    let body = json!({"flows": flows});
    let j = replay(&app, "", "application/json", body.to_string().into_bytes()).await.json();
    assert_eq!((j["summary"]["proposed"].as_bool(), j["change"].is_null()), (Some(false), true));
}

#[tokio::test]
async fn replay_bad_input() {
    let app = router(state());
    let flows = String::from_utf8(hubble_log()).expect("UTF-8");
    let with = |change: Value| {
        let mut body = json!({ "flows": flows });
        for (k, v) in change.as_object().expect("object") {
            body[k] = v.clone();
        }
        body.to_string().into_bytes()
    };
    // The change, as /api/v1/whatif judges it.
    let bad_port = json!({"apply": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "database"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}}]});
    let r = replay(&app, "", "application/json", with(bad_port)).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.ingress[0].ports[0].port");
    let r = replay(&app, "", "application/json", with(json!({"apply": [{"kind": "Pod"}]}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "apply[0].kind");
    let r = replay(&app, "", "application/json", with(json!({"delete": ["nope"]}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "delete[0]");
    let r = replay(&app, "", "application/json", with(json!({"delete": ["a/b"]}))).await;
    assert_error(&r, StatusCode::NOT_FOUND, "delete[0]");
    // A JSON body that is not the request object (a flow log sent as application/json): 400 saying what to send.
    let r = replay(&app, "", "application/json", hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
    assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("application/x-ndjson")), "{}", r.text());
    let r = replay(&app, "", "application/json", with(json!({"unknown": 1}))).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
    // Parameters.
    let r = replay(&app, "?format=nope", "text/plain", hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "format");
    let r = replay(&app, "?explain=maybe", "text/plain", hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "explain");
    let r = call(
        &app,
        Method::POST,
        "/api/v1/flows/replay",
        &[("content-type", "text/plain"), ("content-encoding", "br")],
        hubble_log(),
    )
    .await;
    assert_error(&r, StatusCode::UNSUPPORTED_MEDIA_TYPE, "content-encoding");
}

#[tokio::test]
async fn bad_lines_are_errors_not_failures() {
    let app = router(state());
    // Not UTF-8 at all: every line is an error, and the request is answered.
    let r = replay(&app, "", "application/octet-stream", b"\xff\xfe\x00\n\x80abc\n".to_vec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["lines"], 2);
    assert_eq!(j["summary"]["observed"]["classes"], 0);
    let errors = j["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{j}");
    assert!(errors[0]["message"].as_str().is_some_and(|m| m.contains("not valid UTF-8")), "{j}");
    // Garbage among good lines; an empty body.
    let mut body = b"not a flow\n{\"x\": 1}\n".to_vec();
    body.extend(hubble_log());
    let j = replay(&app, "", "text/plain", body).await.json();
    assert_eq!(j["errors"].as_array().map(Vec::len), Some(3), "{j}");
    assert_eq!(j["summary"]["observed"]["classes"], 10);
    let j = replay(&app, "", "text/plain", Vec::new()).await.json();
    assert_eq!((j["lines"].as_u64(), j["rows"].as_array().map(Vec::len)), (Some(0), Some(0)));
    // A forced format reads every line in it: the Hubble lines are not Calico flows.
    let j = replay(&app, "?format=calico", "text/plain", hubble_log()).await.json();
    assert_eq!(j["summary"]["observed"]["classes"], 0, "{j}");
    assert!(!j["errors"].as_array().expect("errors").is_empty(), "{j}");
    let j = replay(&app, "?format=hubble", "text/plain", hubble_log()).await.json();
    assert_eq!(j["summary"]["observed"]["classes"], 10, "{j}");
}

#[tokio::test]
async fn gzip_bodies_are_read_and_bounded() {
    let plain = replay(&router(state()), "", "text/plain", hubble_log()).await.json();
    let app = router(state());
    let zipped = gzip(&hubble_log());
    let r = call(
        &app,
        Method::POST,
        "/api/v1/flows/replay",
        &[("content-type", "application/x-ndjson"), ("content-encoding", "gzip")],
        zipped.clone(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json(), plain);
    // Known by its magic bytes, without the header too.
    assert_eq!(replay(&app, "", "application/octet-stream", zipped).await.json(), plain);
    // A corrupt stream: an error line, answered.
    let mut cut = gzip(&hubble_log());
    cut.truncate(cut.len() / 2);
    let r = replay(&app, "", "application/octet-stream", cut).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(!r.json()["errors"].as_array().expect("errors").is_empty());
    // A small body that inflates past FLOW_LOG_EXPANSION times the body limit: 413.
    let limit = 4096;
    let app = router(state().with_body_limit(limit));
    let bomb = gzip(&vec![b'\n'; limit * netpol_server::FLOW_LOG_EXPANSION + 10]);
    assert!(bomb.len() < limit, "{}", bomb.len());
    let r = replay(&app, "", "application/octet-stream", bomb.clone()).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body");
    let r = call(&app, Method::POST, "/api/v1/graph/flows?group=labels", &[], bomb.clone()).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body");
    let r = replay(&app, "", "application/json", bomb).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body");
}

#[tokio::test]
async fn flow_requests_are_expensive() {
    let app = router(state().with_max_expensive(0));
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    for path in ["/api/v1/flows/replay", "/api/v1/graph/flows"] {
        let r = call(&app, Method::POST, path, &[("content-type", "text/plain")], hubble_log()).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "server");
        assert_eq!(r.header("retry-after"), netpol_server::RETRY_AFTER_SECS.to_string(), "{path}");
        assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("--max-expensive")), "{}", r.text());
        assert!(netpol_server::EXPENSIVE_ROUTES.contains(&path));
        assert_declared(&doc, &Method::POST, path, &r);
    }
    let m = get(&app, "/metrics").await.text();
    assert!(m.contains("netpol_expensive_requests_total{outcome=\"rejected\"} 2"), "{m}");
    // With a slot: computed, counted, and the slot given back.
    let app = router(state().with_max_expensive(1));
    for _ in 0..2 {
        let r = replay(&app, "", "text/plain", hubble_log()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    let m = get(&app, "/metrics").await.text();
    assert!(m.contains("netpol_expensive_requests_total{outcome=\"completed\"} 2"), "{m}");
    assert!(m.contains("netpol_expensive_requests_in_flight 0"), "{m}");
}

/// Every answer of the two routes is one the OpenAPI document declares, its body valid against the schema.
#[tokio::test]
async fn flow_answers_match_their_openapi_schemas() {
    let app = router(state().with_body_limit(1 << 16));
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    let flows = String::from_utf8(hubble_log()).expect("UTF-8");
    let change = json!({"flows": flows, "apply": [the_fix()]}).to_string().into_bytes();
    let bad = json!({"flows": "", "apply": [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "database"},
        "spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]}}]})
    .to_string()
    .into_bytes();
    let cases: Vec<(&str, &str, &str, Vec<u8>)> = vec![
        ("/api/v1/flows/replay", "", "text/plain", hubble_log()),
        ("/api/v1/flows/replay", "?explain=true", "application/json", change),
        ("/api/v1/flows/replay", "", "application/json", bad),
        ("/api/v1/flows/replay", "", "application/json", br#"{"flows":"","delete":["a/b"]}"#.to_vec()),
        ("/api/v1/flows/replay", "?format=x", "text/plain", vec![]),
        ("/api/v1/flows/replay", "", "text/plain", vec![b'x'; 1 << 17]),
        ("/api/v1/graph/flows", "?group=labels", "text/plain", hubble_log()),
        ("/api/v1/graph/flows", "?port=5432&namespace=database", "text/plain", hubble_log()),
        ("/api/v1/graph/flows", "?port=nope", "text/plain", hubble_log()),
        ("/api/v1/graph/flows", "?namespace=nope", "text/plain", hubble_log()),
        ("/api/v1/graph/flows", "", "text/plain", vec![b'x'; 1 << 17]),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (path, query, ct, body) in cases {
        let r = call(&app, Method::POST, &format!("{path}{query}"), &[("content-type", ct)], body).await;
        statuses.insert(r.status.as_u16());
        assert_declared(&doc, &Method::POST, path, &r);
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [200, 400, 404, 413, 422]);
}

// ---- the log over the graph ----

/// The observed edge between the nodes holding these pods (`namespace/pod` prefixes; `None`: outside).
fn edge<'a>(j: &'a Value, graph: &Value, src: Option<&str>, dst: Option<&str>) -> &'a Value {
    let node = |pod: Option<&str>| -> Value {
        let Some(pod) = pod else { return Value::Null };
        let (ns, name) = pod.split_once('/').expect("ns/pod");
        let n = graph["nodes"].as_array().expect("nodes").iter().find(|n| {
            n["namespace"] == ns && n["pods"].as_array().expect("pods").iter().any(|p| p.as_str() == Some(name))
        });
        n.unwrap_or_else(|| panic!("no node holds {pod}"))["id"].clone()
    };
    let (a, b) = (node(src), node(dst));
    j["edges"].as_array().expect("edges").iter().find(|e| e["src"] == a && e["dst"] == b).unwrap_or_else(|| {
        panic!("no observed edge {a} -> {b}: {}", j["edges"]);
    })
}

#[tokio::test]
async fn the_log_over_the_graph() {
    let app = router(state());
    let graph = get(&app, "/api/v1/graph?port=5432/TCP").await.json();
    let grouping = graph["grouping"].as_str().expect("grouping").to_string();
    let r = call(&app, Method::POST, &format!("/api/v1/graph/flows?group={grouping}"), &[], hubble_log()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["grouping"], grouping.as_str());
    assert!(j.get("port").is_none(), "every port: {j}");
    let c = &j["counts"];
    assert_eq!((c["lines"].as_u64(), c["errorLines"].as_u64(), c["flows"].as_u64()), (Some(24), Some(1), Some(10)));
    assert_eq!((c["onEdges"].as_u64(), c["unresolved"].as_u64()), (Some(10), Some(0)), "{c}");
    assert_eq!(j["errors"][0]["line"], 8);
    // Every node id of the overlay is one of the graph's (same grouping, no focus: every node is shown).
    let ids: std::collections::HashSet<&str> =
        graph["nodes"].as_array().expect("nodes").iter().filter_map(|n| n["id"].as_str()).collect();
    for e in j["edges"].as_array().expect("edges") {
        for end in [&e["src"], &e["dst"]] {
            assert!(end.is_null() || end.as_str().is_some_and(|id| ids.contains(id)), "{end} not on the graph");
        }
    }
    // Observed and allowed, the model agrees: not red.
    let e = edge(&j, &graph, Some("backend/worker"), Some("database/postgres"));
    assert_eq!((e["allowed"].as_u64(), e["connections"].as_u64()), (Some(3), Some(3)), "{e}");
    assert_eq!((e["deniedAny"].as_bool(), e["modelAgrees"].as_bool()), (Some(false), Some(true)), "{e}");
    assert_eq!(e["ports"], json!(["5432/TCP"]));
    // Observed denied (the log says so, and the model agrees): red.
    let e = edge(&j, &graph, Some("frontend/web"), Some("database/postgres"));
    assert_eq!((e["denied"].as_u64(), e["modelDenied"].as_u64()), (Some(1), Some(1)), "{e}");
    assert_eq!((e["deniedAny"].as_bool(), e["modelAgrees"].as_bool()), (Some(true), Some(true)), "{e}");
    assert_eq!(e["example"]["port"], "5432/TCP");
    assert_eq!((e["example"]["observed"].as_str(), e["example"]["model"].as_str()), (Some("denied"), Some("deny")));
    // Logged allowed to an address outside the cluster, the model denies: red, and they disagree.
    let e = edge(&j, &graph, Some("backend/worker"), None);
    assert_eq!(
        (e["allowed"].as_u64(), e["modelDenied"].as_u64(), e["disagreements"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!((e["deniedAny"].as_bool(), e["modelAgrees"].as_bool()), (Some(true), Some(false)), "{e}");
    assert_eq!(e["addresses"], json!(["198.51.100.7"]));
    // Denied edges come first.
    let reds: Vec<bool> = j["edges"].as_array().expect("edges").iter().map(|e| e["deniedAny"] == true).collect();
    assert!(reds.windows(2).all(|w| w[0] || !w[1]), "{reds:?}");
    // The example explains as the edge says.
    let ex = &e["example"];
    let q = format!(
        "/api/v1/explain?src={}&dst={}&port={}",
        ex["src"].as_str().unwrap(),
        ex["dst"].as_str().unwrap(),
        ex["port"].as_str().unwrap()
    );
    assert_eq!(get(&app, &q).await.json()["verdict"], "deny");
}

#[tokio::test]
async fn the_log_over_the_graph_follows_port_focus_and_grouping() {
    let app = router(state());
    // One port.
    let j = call(&app, Method::POST, "/api/v1/graph/flows?group=labels&port=5432", &[], hubble_log()).await.json();
    assert_eq!(j["port"], "5432/TCP");
    let edges = j["edges"].as_array().expect("edges");
    assert!(!edges.is_empty() && edges.iter().all(|e| e["ports"] == json!(["5432/TCP"])), "{j}");
    assert_eq!(j["counts"]["otherPorts"].as_u64().unwrap() + j["counts"]["onEdges"].as_u64().unwrap(), 10);
    // A focus: only edges with an end in it.
    let j = call(&app, Method::POST, "/api/v1/graph/flows?group=labels&namespace=monitoring", &[], hubble_log())
        .await
        .json();
    let edges = j["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), 1, "{j}");
    assert!(edges[0]["src"].as_str().is_some_and(|s| s.starts_with("monitoring/")), "{j}");
    assert_eq!(j["counts"]["outsideFocus"], 9);
    // By namespace: node ids are the namespaces; the two frontend -> backend classes fold into one edge.
    let j = call(&app, Method::POST, "/api/v1/graph/flows?group=namespace", &[], hubble_log()).await.json();
    assert_eq!(j["grouping"], "namespace");
    let e = j["edges"].as_array().expect("edges").iter().find(|e| e["src"] == "frontend" && e["dst"] == "backend");
    let e = e.unwrap_or_else(|| panic!("{j}"));
    assert_eq!(e["flows"], 2, "{e}");
    // Bad parameters.
    let r = call(&app, Method::POST, "/api/v1/graph/flows?group=nope", &[], hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "group");
    let r = call(&app, Method::POST, "/api/v1/graph/flows?format=nope", &[], hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "format");
}

#[tokio::test]
async fn the_log_over_the_graph_with_a_what_if() {
    let app = router(state());
    let graph = get(&app, "/api/v1/graph?port=5432/TCP&group=labels").await.json();
    let flows = String::from_utf8(hubble_log()).expect("UTF-8");
    let fix = std::fs::read_to_string(root().join("examples/three-tier-fix/allow-postgres-from-backend.yaml"))
        .expect("the example's fix");
    let url = "/api/v1/graph/flows?group=labels";
    let body = json!({"flows": flows, "whatif": fix}).to_string();
    let r = crate::common::post(&app, url, "application/json", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["whatif"], true);
    // The fix cuts the observed worker -> postgres connections, as `POST /api/v1/flows/replay` says.
    let e = edge(&j, &graph, Some("backend/worker"), Some("database/postgres"));
    assert_eq!((e["newlyDenied"].as_u64(), e["newlyAllowed"].as_u64()), (Some(3), Some(0)), "{e}");
    assert_eq!(e["deniedAny"], false, "the loaded policies allow it: {e}");
    let cut: u64 = j["edges"].as_array().expect("edges").iter().filter_map(|e| e["newlyDenied"].as_u64()).sum();
    assert_eq!(cut, 3);
    // Deleting a policy instead; gzip-compressed.
    let body = json!({"flows": flows, "whatif": "", "delete": ["backend/allow-api-from-frontend"]}).to_string();
    let r = call(
        &app,
        Method::POST,
        url,
        &[("content-type", "application/json"), ("content-encoding", "gzip")],
        gzip(body.as_bytes()),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let e = edge(&j, &graph, Some("frontend/web"), Some("backend/api"));
    assert_eq!(e["newlyDenied"], 3, "{e}");
    // Without a what-if (or an empty one): none counted.
    let body = json!({"flows": flows, "whatif": " "}).to_string();
    let j = crate::common::post(&app, url, "application/json", body).await.json();
    assert_eq!(j["whatif"], false);
    assert!(j["edges"].as_array().expect("edges").iter().all(|e| e["newlyDenied"] == 0), "{j}");
    // An invalid pasted policy: its field, document and line, as the graph what-if says them.
    let bad = fix.replace("port: 5432", "port: 0");
    let r =
        crate::common::post(&app, url, "application/json", json!({"flows": flows, "whatif": bad}).to_string()).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "spec.ingress[0].ports[0].port");
    assert!(r.json()["line"].as_u64().is_some(), "{}", r.text());
    let body = json!({"flows": flows, "delete": ["a/b"]}).to_string();
    let r = crate::common::post(&app, url, "application/json", body).await;
    assert_error(&r, StatusCode::NOT_FOUND, "delete[0]");
    // Not the request object.
    let r = crate::common::post(&app, url, "application/json", hubble_log()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
}
