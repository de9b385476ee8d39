//! `netpol serve`: every endpoint on examples/three-tier through `router(...)` (no socket), bad input, the
//! OpenAPI document's coverage of the router, metrics, real HTTP over TCP (`serve_on`: timeouts, limits,
//! cancellation of a what-if and of a flow replay), and reloads under load. The binary's own tests are in
//! `crates/netpol/tests/it/serve.rs`.

use netpol_server as serve;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use axum::http::{Method, StatusCode};
use serde_json::Value;
use serve::{router, AppState};

use crate::common::{assert_declared, call, example, get, Res};

fn state() -> AppState {
    AppState::from_files(&[example()]).expect("three-tier loads")
}

fn assert_error(r: &Res, status: StatusCode, field: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["field"], field, "{j}");
    assert!(j["error"].as_str().is_some_and(|e| !e.is_empty()), "{j}");
}

#[tokio::test]
async fn healthz_and_revision_header() {
    let app = router(state());
    let r = get(&app, "/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.text(), "ok");
    assert_eq!(r.revision, 1);
    let r = get(&app, "/nope").await;
    assert_error(&r, StatusCode::NOT_FOUND, "path");
    assert_eq!(r.revision, 1);
}

#[tokio::test]
async fn explain_happy_path() {
    let app = router(state());
    let r = get(&app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    assert_eq!(j["verdict"], "allow");
    assert_eq!(j["port"], 8080);
    assert_eq!(j["protocol"], "TCP");
    let r = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432/TCP").await;
    assert_eq!(r.json()["verdict"], "allow");
    let r = get(&app, "/api/v1/explain?src=frontend/web&dst=database/postgres&port=5432&protocol=tcp").await;
    assert_eq!(r.json()["verdict"], "deny");
    // By IP, and a pod name resolved in `namespace`.
    let r = get(&app, "/api/v1/explain?src=10.244.1.11&dst=api&namespace=backend&port=8080").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.json()["verdict"], "allow");
}

#[tokio::test]
async fn explain_bad_input() {
    let app = router(state());
    let cases = [
        ("/api/v1/explain?dst=backend/api&port=8080", StatusCode::BAD_REQUEST, "src"),
        ("/api/v1/explain?src=frontend/web&port=8080", StatusCode::BAD_REQUEST, "dst"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=0", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=70000", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=http", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=80/ICMP", StatusCode::BAD_REQUEST, "port"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=80&protocol=gre", StatusCode::BAD_REQUEST, "protocol"),
        (
            "/api/v1/explain?src=frontend/web&dst=backend/api&port=80/UDP&protocol=TCP",
            StatusCode::BAD_REQUEST,
            "protocol",
        ),
        ("/api/v1/explain?src=frontend/nope&dst=backend/api&port=8080", StatusCode::NOT_FOUND, "src"),
        ("/api/v1/explain?src=frontend/web&dst=nope/api&port=8080", StatusCode::NOT_FOUND, "dst"),
        ("/api/v1/explain?src=frontend/web&dst=backend/api&port=", StatusCode::BAD_REQUEST, "port"),
    ];
    for (uri, status, field) in cases {
        let r = get(&app, uri).await;
        assert_eq!(r.status, status, "{uri}: {}", r.text());
        assert_error(&r, status, field);
    }
}

#[tokio::test]
async fn query_json_array() {
    let app = router(state());
    let body = r#"[
        {"src": "frontend/web", "dst": "backend/api", "port": 8080, "id": "a"},
        {"src":"backend/worker","dst":"database/postgres","protocol":"TCP","port":5432},
        {"src":"frontend/web","dst":"database/postgres","port":5432},
        {"src":"frontend/web","dst":"backend/api"},
        {"src":"frontend/nope","dst":"backend/api","port":8080},
        42
    ]"#;
    let r = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], body.into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(r.content_type.starts_with("application/json"));
    let j = r.json();
    let a = j.as_array().expect("array");
    assert_eq!(a.len(), 6);
    assert_eq!(a[0]["verdict"], "allow");
    assert_eq!(a[0]["id"], "a", "other members are echoed");
    assert_eq!(a[1]["verdict"], "allow");
    assert_eq!(a[2]["verdict"], "deny");
    assert!(a[3]["error"].as_str().expect("error").contains("port"), "{}", a[3]);
    assert!(a[4]["error"].as_str().expect("error").contains("unknown pod"), "{}", a[4]);
    assert!(a[5]["error"].is_string(), "{}", a[5]);
    assert!(a[0].get("explain").is_none());

    // ?explain=true adds the explanation; content type sniffed when absent.
    let r = call(&app, Method::POST, "/api/v1/query?explain=true", &[], body.into()).await;
    let j = r.json();
    assert_eq!(j[0]["explain"]["verdict"], "allow");
    assert_eq!(j[0]["explain"]["dst"], j[0]["dst"]);
    assert_eq!(j[2]["explain"]["verdict"], "deny");
}

#[tokio::test]
async fn query_json_lines() {
    let app = router(state());
    let body = "{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080}\n\
                {\"src\":\"web\",\"dst\":\"database/postgres\",\"port\":5432}\n\
                not json\n";
    let r = call(
        &app,
        Method::POST,
        "/api/v1/query?namespace=frontend",
        &[("content-type", "application/x-ndjson")],
        body.into(),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.content_type, "application/x-ndjson");
    let lines: Vec<Value> = r.text().lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["verdict"], "allow");
    assert_eq!(lines[1]["verdict"], "deny");
    assert_eq!(lines[2]["input"], "not json");
    assert!(lines[2]["error"].is_string());
    // Byte-for-byte echo, like `netpol query`.
    assert!(r
        .text()
        .starts_with("{\"src\":\"frontend/web\",\"dst\":\"backend/api\",\"port\":8080,\"verdict\":\"allow\"}\n"));

    let r = call(&app, Method::POST, "/api/v1/query?explain=1", &[("content-type", "text/plain")], body.into()).await;
    let first: Value = serde_json::from_str(r.text().lines().next().expect("a line")).expect("json");
    assert_eq!(first["explain"]["verdict"], "allow");
}

#[tokio::test]
async fn query_bad_input_and_body_limit() {
    let app = router(state());
    let r = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], b"{\"src\":1}".to_vec())
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
    let r = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], b"[1,".to_vec()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
    let r = call(
        &app,
        Method::POST,
        "/api/v1/query?explain=maybe",
        &[("content-type", "application/json")],
        b"[]".to_vec(),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "explain");
    let r = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], b"[]".to_vec()).await;
    assert_eq!(r.json(), serde_json::json!([]));

    // Default limit 1 MiB.
    let big = format!("[{}]", vec![r#"{"src":"frontend/web","dst":"backend/api","port":8080}"#; 30_000].join(","));
    assert!(big.len() > 1 << 20);
    let r =
        call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], big.clone().into_bytes())
            .await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body");

    // Configurable.
    let small = router(state().with_body_limit(100));
    let r =
        call(&small, Method::POST, "/api/v1/query", &[("content-type", "application/json")], big.into_bytes()).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "body");
    let ok = br#"[{"src":"frontend/web","dst":"backend/api","port":8080}]"#.to_vec();
    let r = call(&small, Method::POST, "/api/v1/query", &[("content-type", "application/json")], ok).await;
    assert_eq!(r.status, StatusCode::OK);
    // Wrong method: JSON too.
    let r = get(&app, "/api/v1/query").await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method");
}

#[tokio::test]
async fn matrix_happy_and_bad() {
    let app = router(state());
    let r = get(&app, "/api/v1/matrix?port=8080/TCP&port=5432").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let pods: Vec<&str> = j["pods"].as_array().expect("pods").iter().map(|p| p.as_str().expect("str")).collect();
    let idx = |name: &str| pods.iter().position(|p| *p == name).unwrap_or_else(|| panic!("{name} in {pods:?}"));
    let (web, api, worker, pg) =
        (idx("frontend/web"), idx("backend/api"), idx("backend/worker"), idx("database/postgres"));
    let ports = j["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["port"], 8080);
    assert_eq!(ports[0]["protocol"], "TCP");
    assert_eq!(ports[0]["rows"].as_array().expect("rows").len(), pods.len());
    assert_eq!(ports[0]["rows"][web][api], true);
    assert_eq!(ports[0]["rows"][api][web], false);
    assert_eq!(ports[1]["port"], 5432);
    assert_eq!(ports[1]["rows"][worker][pg], true);
    assert_eq!(ports[1]["rows"][web][pg], false);

    let r = get(&app, "/api/v1/matrix?port=5432&namespace=database").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json()["pods"]
        .as_array()
        .expect("pods")
        .iter()
        .all(|p| p.as_str().is_some_and(|p| p.starts_with("database/"))));

    assert_error(&get(&app, "/api/v1/matrix").await, StatusCode::BAD_REQUEST, "port");
    assert_error(&get(&app, "/api/v1/matrix?port=abc").await, StatusCode::BAD_REQUEST, "port");
    assert_error(&get(&app, "/api/v1/matrix?port=80&port=99999").await, StatusCode::BAD_REQUEST, "port");
    let many = (1..=65).map(|p| format!("port={p}")).collect::<Vec<_>>().join("&");
    assert_error(&get(&app, &format!("/api/v1/matrix?{many}")).await, StatusCode::BAD_REQUEST, "port");
    assert_error(&get(&app, "/api/v1/matrix?port=80&namespace=nope").await, StatusCode::NOT_FOUND, "namespace");
}

#[tokio::test]
async fn matrix_refuses_too_many_pods() {
    let dir = crate::common::tempdir();
    let mut y = String::new();
    for i in 0..(serve::MAX_MATRIX_PODS + 1) {
        y.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p{i}, namespace: big, labels: {{app: a}}}}\nspec: {{containers: [{{name: c, image: x}}]}}\n"
        ));
    }
    std::fs::write(dir.path().join("pods.yaml"), y).expect("write");
    let app = router(AppState::from_files(&[dir.path().display().to_string()]).expect("loads"));
    assert_error(&get(&app, "/api/v1/matrix?port=80").await, StatusCode::UNPROCESSABLE_ENTITY, "namespace");
}

#[tokio::test]
async fn lint_follows_the_servers_lint_settings() {
    let codes = |r: Res| -> Vec<String> {
        r.json().as_array().expect("array").iter().map(|f| f["code"].as_str().expect("code").to_string()).collect()
    };
    let all = codes(get(&router(state()), "/api/v1/lint").await);
    assert!(all.iter().any(|c| c == "NP009"), "{all:?}");
    let config = netpol_core::lint::Config { disable: vec!["NP009".into()], ..Default::default() };
    let some = codes(get(&router(state().with_lint_config(config)), "/api/v1/lint").await);
    assert!(!some.is_empty() && !some.iter().any(|c| c == "NP009"), "{some:?}");
    assert_eq!(some.len(), all.iter().filter(|c| *c != "NP009").count());
}

#[tokio::test]
async fn lint_pods_policies() {
    let app = router(state());
    let r = get(&app, "/api/v1/lint").await;
    assert_eq!(r.status, StatusCode::OK);
    let findings = r.json();
    let findings = findings.as_array().expect("array");
    assert!(!findings.is_empty(), "the example has a classic mistake");
    assert!(findings.iter().all(|f| f["code"].as_str().is_some_and(|c| c.starts_with("NP"))));
    assert!(findings.iter().any(|f| f["object"].as_str().is_some_and(|o| o.contains("allow-postgres-from-backend"))));

    let r = get(&app, "/api/v1/pods").await;
    assert_eq!(r.status, StatusCode::OK);
    let pods = r.json();
    let find = |ns: &str, name: &str| {
        pods.as_array()
            .expect("array")
            .iter()
            .find(|p| p["namespace"] == ns && p["name"] == name)
            .unwrap_or_else(|| panic!("{ns}/{name}"))
            .clone()
    };
    let api = find("backend", "api-6b8d7f5c4-m4n7r");
    assert_eq!(api["ips"], serde_json::json!(["10.244.2.21", "fd00:10:244:2::21"]));
    assert_eq!(api["labels"]["app"], "api");
    assert_eq!(api["hostNetwork"], false);
    assert_eq!(api["ingress"]["isolated"], true);
    let web = find("frontend", "web");
    assert_eq!(web["ports"], serde_json::json!(["http:8080/TCP"]));
    assert!(web["ingress"]["policies"].as_array().expect("arr").iter().any(|p| p == "frontend/allow-web-ingress"));
    let prom = find("monitoring", "prometheus");
    assert_eq!(prom["ingress"]["isolated"], false);
    assert_eq!(prom["egress"]["policies"], serde_json::json!([]));

    let r = get(&app, "/api/v1/policies").await;
    assert_eq!(r.status, StatusCode::OK);
    let pols = r.json();
    let pols = pols.as_array().expect("array");
    let p = pols
        .iter()
        .find(|p| p["namespace"] == "frontend" && p["name"] == "allow-web-ingress")
        .expect("allow-web-ingress");
    assert_eq!(p["podSelector"], "app=web");
    assert_eq!(p["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(p["rules"]["ingress"], 1);
    assert_eq!(p["rules"]["egress"], 0);
    let sel = p["selectedPods"].as_array().expect("arr");
    assert!(sel.iter().any(|s| s == "frontend/web"));
    assert!(sel.iter().all(|s| s.as_str().is_some_and(|s| s.starts_with("frontend/web"))));
    let dd = pols.iter().find(|p| p["namespace"] == "backend" && p["name"] == "default-deny").expect("default-deny");
    assert_eq!(dd["podSelector"], "{}");
    assert_eq!(dd["policyTypes"], serde_json::json!(["Ingress", "Egress"]));
    assert!(dd["selectedPods"].as_array().expect("arr").iter().any(|s| s == "backend/worker"));
}

#[tokio::test]
async fn openapi_covers_exactly_the_router() {
    let app = router(state());
    let r = get(&app, "/api/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc["openapi"]);
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("item").keys() {
            if ["get", "post", "put", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    documented.sort();
    let mut routes: Vec<(String, String)> =
        serve::routes().into_iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    routes.sort();
    assert_eq!(documented, routes, "OpenAPI paths vs router routes");
    // And the router really serves each documented (method, path), and nothing else on those paths.
    for (method, path) in &documented {
        let m: Method = method.parse().expect("method");
        let body = if m == Method::POST { b"[]".to_vec() } else { Vec::new() };
        let r = call(&app, m.clone(), path, &[("content-type", "application/json")], body).await;
        assert!(
            r.status != StatusCode::NOT_FOUND && r.status != StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {}",
            r.status
        );
        let other = if m == Method::GET { Method::POST } else { Method::GET };
        let r = call(&app, other.clone(), path, &[], Vec::new()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{other} {path}");
    }
    // Schemas referenced by the documented responses exist.
    for name in [
        "ApiError",
        "MatrixResponse",
        "PodInfo",
        "PolicyInfo",
        "Flow",
        "FlowAnswer",
        "Explanation",
        "TierPolicies",
        "PolicyRule",
    ] {
        assert!(doc["components"]["schemas"][name].is_object(), "schema {name}");
    }
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_requests() {
    let app = router(state());
    let ok = "netpol_http_requests_total{route=\"/api/v1/explain\",method=\"GET\",status=\"200\"}";
    let bad = "netpol_http_requests_total{route=\"/api/v1/explain\",method=\"GET\",status=\"400\"}";
    let count = "netpol_http_request_duration_seconds_count{route=\"/api/v1/explain\"}";
    let before = get(&app, "/metrics").await.text();
    for _ in 0..3 {
        get(&app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
    }
    get(&app, "/api/v1/explain?src=frontend/web").await;
    let r = get(&app, "/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/plain"));
    let after = r.text();
    assert_eq!(metric(&after, ok) - metric(&before, ok), 3.0, "{after}");
    assert_eq!(metric(&after, bad) - metric(&before, bad), 1.0, "{after}");
    assert_eq!(metric(&after, count) - metric(&before, count), 4.0, "{after}");
    assert!(after.contains("netpol_http_request_duration_seconds_bucket{route=\"/api/v1/explain\",le=\"+Inf\"} 4"));
    assert_eq!(metric(&after, "netpol_model_objects{kind=\"namespaces\"}"), 5.0);
    assert!(metric(&after, "netpol_model_objects{kind=\"pods\"}") >= 6.0);
    assert!(metric(&after, "netpol_model_objects{kind=\"policies\"}") >= 10.0);
    assert_eq!(metric(&after, "netpol_model_revision "), 1.0);
    assert!(after.contains("# TYPE netpol_model_compile_seconds gauge\nnetpol_model_compile_seconds "));
    // The metrics request before this one was counted too.
    assert!(metric(&after, "netpol_http_requests_total{route=\"/metrics\",method=\"GET\",status=\"200\"}") >= 1.0);
}

#[test]
fn real_http_over_tcp() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = router(state());
    rt.spawn(async move { axum::serve(listener, app).await });
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let body = r#"[{"src":"backend/worker","dst":"database/postgres","port":5432}]"#;
    write!(
        s,
        "POST /api/v1/query HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.to_ascii_lowercase().contains("x-netpol-revision: 1\r\n"), "{resp}");
    let body = resp.split("\r\n\r\n").nth(1).expect("body");
    let j: Value = serde_json::from_str(body).expect("json");
    assert_eq!(j[0]["verdict"], "allow");
    rt.shutdown_background();
}

fn copy_example(to: &Path) -> PathBuf {
    for f in ["namespaces.yaml", "workloads.yaml", "policies.yaml"] {
        std::fs::copy(Path::new(&example()).join(f), to.join(f)).expect("copy");
    }
    to.join("policies.yaml")
}

/// The mis-indent fixed: `podSelector` ANDed with `namespaceSelector`, so backend/worker loses postgres.
fn fixed_policies(original: &str) -> String {
    let bad = "        - namespaceSelector:\n            matchLabels:\n              tier: backend\n        - podSelector:\n            matchLabels:\n              app: api\n";
    assert_eq!(original.matches(bad).count(), 1, "the example's mis-indent moved");
    original.replace(bad, &bad.replace("        - podSelector:", "          podSelector:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reload_under_load_is_atomic() {
    let dir = crate::common::tempdir();
    let policies = copy_example(dir.path());
    let original = std::fs::read_to_string(&policies).expect("read");
    let fixed = fixed_policies(&original);
    let st = AppState::from_files(&[dir.path().display().to_string()]).expect("loads");
    let app = router(st.clone());

    // Sanity: the two models differ on worker -> postgres, agree on web -> api.
    let q = "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432";
    assert_eq!(get(&app, q).await.json()["verdict"], "allow");

    // Odd revisions: the original (allow); even: fixed (deny).
    let reloads = 20u64;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..4 {
        let app = app.clone();
        let stop = stop.clone();
        readers.push(tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n == 0 {
                let r = get(&app, q).await;
                assert_eq!(r.status, StatusCode::OK);
                let v = r.json();
                let expect = if r.revision % 2 == 1 { "allow" } else { "deny" };
                assert_eq!(v["verdict"], expect, "revision {} answered {}", r.revision, v["verdict"]);
                let f = get(&app, "/api/v1/explain?src=frontend/web&dst=backend/api&port=8080").await;
                assert_eq!(f.json()["verdict"], "allow");
                let body = br#"[{"src":"backend/worker","dst":"database/postgres","port":5432}]"#.to_vec();
                let qr = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], body).await;
                let expect = if qr.revision % 2 == 1 { "allow" } else { "deny" };
                assert_eq!(qr.json()[0]["verdict"], expect, "query at revision {}", qr.revision);
                seen.insert(r.revision);
                n += 1;
                tokio::task::yield_now().await;
            }
            seen
        }));
    }
    let writer = {
        let st = st.clone();
        tokio::task::spawn_blocking(move || {
            for i in 0..reloads {
                let text = if i % 2 == 0 { &fixed } else { &original };
                std::fs::write(&policies, text).expect("write");
                st.reload().expect("reload");
                assert_eq!(st.revision(), i + 2);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        })
    };
    writer.await.expect("writer");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut all = std::collections::BTreeSet::new();
    for r in readers {
        all.extend(r.await.expect("reader"));
    }
    assert_eq!(st.revision(), reloads + 1);
    assert!(all.len() > 2, "readers saw several revisions: {all:?}");
    let last = get(&app, q).await;
    assert_eq!(last.revision, reloads + 1);
    assert_eq!(last.json()["verdict"], if (reloads + 1) % 2 == 1 { "allow" } else { "deny" });
}

#[tokio::test]
async fn failed_reload_keeps_the_old_model() {
    let dir = crate::common::tempdir();
    copy_example(dir.path());
    let sub = dir.path().join("extra");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(sub.join("x.yaml"), "kind: ConfigMap\n").expect("write");
    let st = AppState::from_files(&[dir.path().display().to_string(), sub.join("x.yaml").display().to_string()])
        .expect("loads");
    std::fs::remove_file(sub.join("x.yaml")).expect("rm");
    assert!(st.reload().is_err(), "a missing input fails the reload");
    assert_eq!(st.revision(), 1);
    let app = router(st.clone());
    let r = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!((r.revision, r.json()["verdict"].clone()), (1, Value::from("allow")));
    let m = get(&app, "/metrics").await.text();
    assert_eq!(metric(&m, "netpol_reloads_total{result=\"error\"}"), 1.0);
}

#[tokio::test]
async fn reload_with_new_invalid_objects_keeps_the_old_model() {
    let dir = crate::common::tempdir();
    let policies = copy_example(dir.path());
    let original = std::fs::read_to_string(&policies).expect("read");
    let st = AppState::from_files(&[dir.path().display().to_string()]).expect("loads");
    // A YAML typo would drop the last policy (allow-postgres-from-backend): rejected.
    std::fs::write(&policies, format!("{original}\n  oops: [")).expect("write");
    let err = st.reload().expect_err("rejected");
    assert!(err.to_string().contains("invalid object"), "{err:#}");
    assert_eq!(st.revision(), 1);
    // An invalid policy (bad port) is rejected too; fixing it reloads.
    std::fs::write(&policies, original.replace("port: 5432", "port: 99999")).expect("write");
    assert!(st.reload().is_err());
    std::fs::write(&policies, fixed_policies(&original)).expect("write");
    st.reload().expect("valid again");
    assert_eq!(st.revision(), 2);
    let r = get(&router(st), "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!((r.revision, r.json()["verdict"].clone()), (2, Value::from("deny")));
}

#[tokio::test]
async fn watch_reloads_on_change() {
    let dir = crate::common::tempdir();
    let policies = copy_example(dir.path());
    let original = std::fs::read_to_string(&policies).expect("read");
    let files = [dir.path().display().to_string()];
    let before = serve::fingerprint(&files);
    let st = AppState::from_files(&files).expect("loads");
    let w = tokio::spawn(serve::watch(st.clone(), before, std::time::Duration::from_millis(50)));
    tokio::time::sleep(std::time::Duration::from_millis(120)).await;
    std::fs::write(&policies, fixed_policies(&original) + "\n").expect("write");
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        if st.revision() == 2 {
            ok = true;
            break;
        }
    }
    w.abort();
    assert!(ok, "watch did not reload");
    let app = router(st);
    let r = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!(r.json()["verdict"], "deny");
}

#[tokio::test]
async fn whatif_shows_the_delta_without_applying_it() {
    let app = router(state());
    // Fix the mis-indent: one AND peer instead of two OR peers. backend/worker loses access to postgres.
    let body = r#"
apply:
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: allow-postgres-from-backend, namespace: database}
  spec:
    podSelector: {matchLabels: {app: postgres}}
    policyTypes: [Ingress]
    ingress:
    - from:
      - namespaceSelector: {matchLabels: {tier: backend}}
        podSelector: {matchLabels: {app: api}}
      ports: [{port: 5432}]
"#;
    let r =
        call(&app, Method::POST, "/api/v1/whatif", &[("content-type", "application/yaml")], body.as_bytes().to_vec())
            .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let j = r.json();
    let groups = j["groups"].as_array().unwrap();
    let lost = groups
        .iter()
        .find(|g| g["change"] == "newly_denied" && g["sources"].to_string().contains("backend/worker"))
        .unwrap_or_else(|| panic!("{j}"));
    assert!(lost["destinations"].to_string().contains("database/postgres"), "{lost}");
    assert!(!groups.iter().any(|g| g["change"] == "newly_allowed"), "{j}");
    // Nothing was applied: the model still allows the flow.
    let e = get(&app, "/api/v1/explain?src=backend/worker&dst=database/postgres&port=5432").await;
    assert_eq!(e.json()["verdict"], "allow");
    // Deleting the api's ingress rule from the frontend closes web -> api.
    let del = call(
        &app,
        Method::POST,
        "/api/v1/whatif",
        &[("content-type", "application/json")],
        br#"{"delete":["backend/allow-api-from-frontend"]}"#.to_vec(),
    )
    .await;
    assert_eq!(del.status, StatusCode::OK, "{}", del.text());
    let j = del.json();
    assert!(
        j["groups"].as_array().unwrap().iter().any(|g| g["change"] == "newly_denied"
            && g["sources"].to_string().contains("frontend/web")
            && g["destinations"].to_string().contains("backend/api")),
        "{j}"
    );
}

#[tokio::test]
async fn whatif_bad_input() {
    let app = router(state());
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], b"delete: [nope]".to_vec()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "delete[0]");
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], b"delete: [a/b]".to_vec()).await;
    assert_error(&r, StatusCode::NOT_FOUND, "delete[0]");
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], b"apply: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: x}, spec: {podSelector: {}, ingress: [{ports: [{port: 0}]}]}}]".to_vec()).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "apply[0].spec.ingress[0].ports[0].port");
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], b"apply: [{kind: Pod}]".to_vec()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "apply[0].kind");
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], b"unknown: 1".to_vec()).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "body");
}

/// Every answer (good and bad requests, every JSON route) is one the OpenAPI document declares for that route,
/// and its body validates against the declared schema.
#[tokio::test]
async fn responses_match_their_openapi_schemas() {
    let app = router(state());
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: database}\n\
                  spec: {podSelector: {}, ingress: [{ports: [{port: 5432}]}]}\n";
    let bad_policy = policy.replace("port: 5432", "port: 0");
    let flows = br#"[{"src":"frontend/web","dst":"backend/api","port":8080}]"#.to_vec();
    let cases: Vec<(Method, &str, &str, Vec<u8>)> = vec![
        (Method::GET, "/api/v1/explain", "?src=frontend/web&dst=backend/api&port=8080", vec![]),
        (Method::GET, "/api/v1/explain", "?src=frontend/web", vec![]),
        (Method::GET, "/api/v1/explain", "?src=nope/x&dst=backend/api&port=80", vec![]),
        (Method::GET, "/api/v1/graph", "?port=8080/TCP", vec![]),
        (Method::GET, "/api/v1/graph", "?port=nope", vec![]),
        (Method::GET, "/api/v1/graph", "?port=80&namespace=nope", vec![]),
        (Method::POST, "/api/v1/graph/whatif", "?port=5432/TCP", policy.as_bytes().to_vec()),
        (Method::POST, "/api/v1/graph/whatif", "?port=5432/TCP", bad_policy.into_bytes()),
        (Method::GET, "/api/v1/manifest", "?policy=nope", vec![]),
        (Method::GET, "/api/v1/manifest", "?policy=a/b", vec![]),
        (Method::GET, "/api/v1/matrix", "?port=80&port=5432", vec![]),
        (Method::GET, "/api/v1/matrix", "", vec![]),
        (Method::GET, "/api/v1/matrix", "?port=80&namespace=nope", vec![]),
        (Method::POST, "/api/v1/query", "", flows),
        (Method::POST, "/api/v1/query", "", b"[1,".to_vec()),
        (Method::POST, "/api/v1/whatif", "", b"{}".to_vec()),
        (Method::POST, "/api/v1/whatif", "", b"delete: [nope]".to_vec()),
        (Method::POST, "/api/v1/whatif", "", b"delete: [a/b]".to_vec()),
        (Method::GET, "/api/v1/lint", "", vec![]),
        (Method::GET, "/api/v1/pods", "", vec![]),
        (Method::GET, "/api/v1/policies", "", vec![]),
        (Method::GET, "/api/v1/diagnostics", "", vec![]),
        (Method::GET, "/api/v1/openapi.json", "", vec![]),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (method, path, query, body) in cases {
        let ct =
            if path.contains("whatif") && !body.starts_with(b"{") { "application/yaml" } else { "application/json" };
        let r = call(&app, method.clone(), &format!("{path}{query}"), &[("content-type", ct)], body).await;
        statuses.insert(r.status.as_u16());
        assert_declared(&doc, &method, path, &r);
    }
    assert_eq!(statuses.into_iter().collect::<Vec<_>>(), [200, 400, 404, 422], "good and bad requests were covered");
}

// ---- limits, timeouts, overload, cancellation ----

/// The `ApiError` schema of the OpenAPI document, with its components, for validating an error body.
fn validate_api_error(doc: &Value, body: &Value) {
    let mut schema = serde_json::json!({"$ref": "#/components/schemas/ApiError"});
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).expect("schema");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{body}: {errors:?}");
}

#[tokio::test]
async fn every_error_answer_is_json() {
    let app = router(state());
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    // 405 (made by the method router, empty before).
    for (method, path) in [(Method::GET, "/api/v1/whatif"), (Method::DELETE, "/api/v1/pods"), (Method::POST, "/")] {
        let r = call(&app, method.clone(), path, &[], Vec::new()).await;
        assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method");
        assert!(r.content_type.starts_with("application/json"), "{method} {path}: {}", r.content_type);
        assert!(!r.header("allow").is_empty(), "{method} {path}: Allow is kept");
        let allowed = if path == "/api/v1/whatif" { "allowed: POST" } else { "allowed: GET, HEAD" };
        assert!(r.json()["error"].as_str().is_some_and(|e| e.contains(path) && e.ends_with(allowed)), "{}", r.text());
        validate_api_error(&doc, &r.json());
    }
    // 414: the API refuses a URI longer than MAX_URI_LEN (hyper's own limit, 64 KiB, answers without a body).
    let long = format!("/api/v1/explain?src=frontend/web&dst=backend/api&port=80&x={}", "a".repeat(serve::MAX_URI_LEN));
    let r = get(&app, &long).await;
    assert_error(&r, StatusCode::URI_TOO_LONG, "uri");
    assert!(doc["paths"]["/api/v1/explain"]["get"]["responses"]["414"].is_object(), "414 is declared");
    validate_api_error(&doc, &r.json());
    let r = call(&app, Method::POST, &long.replace("/explain", "/whatif"), &[], b"{}".to_vec()).await;
    assert_error(&r, StatusCode::URI_TOO_LONG, "uri");
    // Just under the limit is read.
    let fits =
        format!("/api/v1/explain?src=frontend/web&dst=backend/api&port=8080&x={}", "a".repeat(serve::MAX_URI_LEN - 80));
    assert_eq!(get(&app, &fits).await.status, StatusCode::OK);
    // Every POST route declares 408 and 413, every route 414.
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("item") {
            assert!(op["responses"]["414"].is_object(), "{method} {path}: 414");
            if method == "post" {
                assert!(op["responses"]["408"].is_object() && op["responses"]["413"].is_object(), "{path}");
            }
        }
    }
}

#[tokio::test]
async fn saturated_expensive_requests_get_503_with_retry_after() {
    // No slot at all: every expensive request is refused, cheap ones are answered.
    let app = router(state().with_max_expensive(0));
    let doc = get(&app, "/api/v1/openapi.json").await.json();
    let flows = br#"[{"src":"frontend/web","dst":"backend/api","port":8080}]"#.to_vec();
    let policy = b"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: database}\nspec: {podSelector: {}}\n";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("/api/v1/whatif", "", br#"{"delete":["backend/default-deny"]}"#.to_vec()),
        ("/api/v1/graph/whatif", "?port=5432/TCP", policy.to_vec()),
        ("/api/v1/query", "?explain=true", flows.clone()),
    ];
    for (path, query, body) in cases {
        let r =
            call(&app, Method::POST, &format!("{path}{query}"), &[("content-type", "application/json")], body).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "server");
        assert_eq!(r.header("retry-after"), serve::RETRY_AFTER_SECS.to_string(), "{path}");
        assert!(r.json()["error"].as_str().is_some_and(|e| e.contains("--max-expensive")), "{}", r.text());
        let declared = &doc["paths"][path]["post"]["responses"]["503"];
        assert!(declared["description"].as_str().is_some_and(|d| d.contains("expensive")), "{path}: {declared}");
        validate_api_error(&doc, &r.json());
    }
    let r = call(&app, Method::POST, "/api/v1/query", &[("content-type", "application/json")], flows).await;
    assert_eq!(r.status, StatusCode::OK, "a query without explain is cheap");
    let m = get(&app, "/metrics").await.text();
    assert_eq!(metric(&m, "netpol_expensive_requests_total{outcome=\"rejected\"}"), 3.0, "{m}");
    assert_eq!(metric(&m, "netpol_expensive_requests_limit"), 0.0);
    // With slots, the same requests are computed and counted.
    let app = router(state().with_max_expensive(1));
    let r = call(&app, Method::POST, "/api/v1/whatif", &[], br#"{"delete":["backend/default-deny"]}"#.to_vec()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let m = get(&app, "/metrics").await.text();
    assert_eq!(metric(&m, "netpol_expensive_requests_total{outcome=\"completed\"}"), 1.0, "{m}");
    assert_eq!(metric(&m, "netpol_expensive_requests_in_flight"), 0.0, "{m}");
}

#[tokio::test]
async fn deeply_nested_bodies_fail_fast() {
    let app = router(state());
    let n = 60_000;
    let bodies: Vec<(&str, &str, String)> = vec![
        // YAML flow nesting: libyaml's scanner is quadratic in it (this one took 62 s in a release build).
        ("/api/v1/whatif", "application/yaml", format!("apply: [{}", "{a: [".repeat(n))),
        ("/api/v1/whatif", "application/json", format!("{{\"apply\":[{}", "{\"a\":[".repeat(n))),
        ("/api/v1/whatif", "application/json", "[".repeat(5 * n)),
        ("/api/v1/graph/whatif", "application/yaml", "{a: [".repeat(n)),
        ("/api/v1/graph/whatif", "application/yaml", "[".repeat(5 * n)),
        ("/api/v1/query?explain=true", "application/json", "[".repeat(5 * n)),
    ];
    for (path, ct, body) in bodies {
        let t = std::time::Instant::now();
        let r = call(&app, Method::POST, path, &[("content-type", ct)], body.into_bytes()).await;
        let took = t.elapsed();
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.text());
        assert!(r.json()["error"].is_string());
        // Linear work: milliseconds (minutes before, in a debug build); the bound only catches a hang.
        assert!(took < std::time::Duration::from_secs(5), "{path} {ct}: {took:?}");
    }
    // Legit bodies in flow style are read as before.
    let ok =
        "{apply: [{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: p, namespace: database, \
              annotations: {note: '[[[ {{{ not nesting'}}, spec: {podSelector: {matchLabels: {app: postgres}}, \
              ingress: [{from: [{podSelector: {}}], ports: [{port: 5432}]}]}}]}";
    let r = call(&app, Method::POST, "/api/v1/whatif", &[("content-type", "application/yaml")], ok.into()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
}

/// YAML bodies are read as manifests are: any number of shallow flow collections is fine, nesting beyond 128
/// levels is refused by a linear scan whatever quotes and comments hide.
#[test]
fn yaml_bodies_are_read_in_linear_time() {
    use netpol_core::load::yaml_documents;
    let docs = yaml_documents("a: {b: [1, 2]}\nc: []\nd: {}\n");
    assert_eq!(docs, vec![Ok(serde_json::json!({"a": {"b": [1, 2]}, "c": [], "d": {}}))]);
    // Many flow collections, shallow: read (they used to be refused above a budget).
    let many = format!("items: [{}]\n", "{a: [1]}, ".repeat(50_000));
    assert!(yaml_documents(&many)[0].is_ok());
    // Deep, with the closing brackets hidden in quotes or comments: refused, with the line.
    for deep in ["[ \"]\", ".repeat(20_000), "[ # ]\n".repeat(20_000)] {
        let docs = yaml_documents(&deep);
        let e = docs[0].as_ref().unwrap_err();
        assert!(e.message.contains("nesting deeper than 128 levels"), "{e:?}");
        assert!(e.line.is_some());
    }
    // A broken document costs only itself.
    let docs = yaml_documents("a: 1\n---\nb: [\n---\nc: 3\n");
    assert!(docs[0].is_ok() && docs[1].is_err() && docs[2].is_ok(), "{docs:?}");
    assert!(
        serve::looks_like_json(" \n{\"a\": 1}") && serve::looks_like_json("[1]") && !serve::looks_like_json("a: 1")
    );
}

#[test]
fn durations_parse() {
    let d = serve::parse_duration;
    assert_eq!(d("10s"), Ok(std::time::Duration::from_secs(10)));
    assert_eq!(d("250ms"), Ok(std::time::Duration::from_millis(250)));
    assert_eq!(d("2m"), Ok(std::time::Duration::from_secs(120)));
    assert_eq!(d("1.5"), Ok(std::time::Duration::from_millis(1500)));
    for bad in ["", "0", "-1s", "abc", "1h", "nan", "100000"] {
        assert!(d(bad).is_err(), "{bad}");
    }
}

/// A server on a real socket (`serve::serve_on`, as `netpol serve` runs it) on its own runtime.
struct Live {
    rt: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Live {
    fn start(st: AppState) -> Live {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        rt.spawn(serve::serve_on(listener, st, async move {
            let _ = rx.await;
        }));
        Live { rt, addr, stop: Some(tx) }
    }

    fn connect(&self) -> std::net::TcpStream {
        let s = std::net::TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(std::time::Duration::from_secs(20))).expect("timeout");
        s
    }

    /// One request (`Connection: close`); the whole answer.
    fn request(&self, raw: &str) -> String {
        let mut s = self.connect();
        s.write_all(raw.as_bytes()).expect("write");
        let mut resp = Vec::new();
        let _ = s.read_to_end(&mut resp);
        String::from_utf8_lossy(&resp).into_owned()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let rt = std::mem::replace(&mut self.rt, tokio::runtime::Builder::new_current_thread().build().expect("rt"));
        rt.shutdown_background();
    }
}

fn body_of(resp: &str) -> Value {
    let body = resp.split("\r\n\r\n").nth(1).unwrap_or_else(|| panic!("no body: {resp}"));
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {resp}"))
}

#[test]
fn content_length_over_the_limit_is_refused_before_reading() {
    let live = Live::start(state().with_body_limit(1000));
    let mut s = live.connect();
    // The body never comes: an answer can only be given before reading it (the body timeout is 30 s).
    s.write_all(b"POST /api/v1/whatif HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{\"ap")
        .expect("write");
    let t = std::time::Instant::now();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).expect("timeout");
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(body_of(&resp)["field"], "body");
    // A chunked body (no Content-Length) over the limit: 413 once the limit is passed.
    let chunk = "x".repeat(1500);
    let resp = live.request(&format!(
        "POST /api/v1/whatif HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
        chunk.len()
    ));
    assert!(resp.starts_with("HTTP/1.1 413"), "{resp}");
    assert_eq!(body_of(&resp)["field"], "body");
}

#[test]
fn slow_connections_are_closed_by_the_timeouts_and_do_not_block_others() {
    use std::time::{Duration, Instant};
    let timeout = Duration::from_millis(500);
    let limits = serve::Limits { header_timeout: timeout, body_timeout: timeout, max_expensive: Some(2) };
    let live = Live::start(state().with_limits(limits));
    let n = 40;
    let opened = Instant::now();
    // (kind, connection): idle after connecting; half a request head; a head and half a body; idle after one
    // answered request on a keep-alive connection.
    let mut slow: Vec<(&str, std::net::TcpStream)> = Vec::new();
    for _ in 0..n {
        slow.push(("idle", live.connect()));
        let mut s = live.connect();
        s.write_all(b"GET /api/v1/pods HTTP/1.1\r\nHost: x\r\nX-Slow: ").expect("write");
        slow.push(("half head", s));
        let mut s = live.connect();
        s.write_all(b"POST /api/v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n[{\"src\":")
            .expect("write");
        slow.push(("half body", s));
        let mut s = live.connect();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
        let mut buf = [0u8; 512];
        let mut got = Vec::new();
        while !got.ends_with(b"ok") {
            let k = s.read(&mut buf).expect("read");
            assert!(k > 0, "closed early");
            got.extend_from_slice(&buf[..k]);
        }
        slow.push(("keep-alive idle", s));
    }
    // Meanwhile the server answers.
    let t = Instant::now();
    let resp = live.request("GET /api/v1/explain?src=frontend/web&dst=backend/api&port=8080 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let answered = t.elapsed();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert_eq!(body_of(&resp)["verdict"], "allow");
    // And every slow connection is closed by the server, a half-sent body with a 408 JSON answer.
    let mut longest = Duration::ZERO;
    for (kind, mut s) in slow {
        s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        let mut rest = Vec::new();
        let r = s.read_to_end(&mut rest);
        let alive = opened.elapsed();
        assert!(
            r.is_ok() || r.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{kind}: not closed: {r:?}"
        );
        let rest = String::from_utf8_lossy(&rest);
        if kind == "half body" {
            assert!(rest.starts_with("HTTP/1.1 408"), "{kind}: {rest}");
            assert_eq!(body_of(&rest)["field"], "body");
        }
        longest = longest.max(alive);
    }
    eprintln!(
        "{} slow connections, timeouts {timeout:?}: answered another in {answered:?}; all closed after {longest:?}",
        4 * n
    );
    assert!(answered < Duration::from_secs(5), "{answered:?}");
    assert!(longest < Duration::from_secs(8), "{longest:?}");
}

#[test]
fn a_disconnected_clients_what_if_stops() {
    use std::time::{Duration, Instant};
    let dir = crate::common::tempdir();
    let file = dir.path().join("synth.yaml");
    std::fs::write(&file, netpol_synth::generate_yaml(&netpol_synth::Params::new(200, 3000, 1200))).expect("write");
    let st = AppState::from_files(&[file.display().to_string()]).expect("loads");
    let live = Live::start(st.clone());
    let app = router(st);
    let metrics = || live.rt.block_on(get(&app, "/metrics")).text();
    let count = |m: &str, what: &str| metric(m, &format!("netpol_expensive_requests_{what}"));
    let policy =
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: monitoring}\n\
                  spec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";
    let request = format!(
        "POST /api/v1/graph/whatif?port=8080/TCP HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{policy}",
        policy.len()
    );
    // Connected: the whole computation.
    let t = Instant::now();
    let resp = live.request(&request);
    let full = t.elapsed();
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..resp.len().min(300)]);
    assert_eq!(count(&metrics(), "total{outcome=\"completed\"}"), 1.0);
    // Disconnected once the work started: it stops at its next check instead of running to the end.
    let mut s = live.connect();
    s.write_all(request.as_bytes()).expect("write");
    let started = Instant::now();
    while count(&metrics(), "in_flight") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the what-if did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(s);
    let t = Instant::now();
    while count(&metrics(), "in_flight") > 0.0 {
        assert!(t.elapsed() < Duration::from_secs(60), "still running");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = t.elapsed();
    let m = metrics();
    eprintln!("graph what-if on 3,000 pods: {full:?} connected; stopped {stopped:?} after the client left");
    assert_eq!(count(&m, "total{outcome=\"cancelled\"}"), 1.0, "the work noticed the client left: {m}");
    assert_eq!(count(&m, "total{outcome=\"completed\"}"), 1.0, "{m}");
}

#[test]
fn a_disconnected_clients_flow_replay_stops() {
    use std::time::{Duration, Instant};
    let st = state();
    let live = Live::start(st.clone());
    let app = router(st);
    let metrics = || live.rt.block_on(get(&app, "/metrics")).text();
    let count = |m: &str, what: &str| metric(m, &format!("netpol_expensive_requests_{what}"));
    // A small gzip body that inflates to just under the bound (FLOW_LOG_EXPANSION times the body limit): long to
    // read, quick to send.
    let line = b"{\"src\": \"frontend/web\", \"dst\": \"backend/api\", \"port\": 8080, \"verdict\": \"allowed\"}\n";
    let lines = (serve::DEFAULT_BODY_LIMIT * serve::FLOW_LOG_EXPANSION - 1) / line.len();
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for _ in 0..lines {
        enc.write_all(line).expect("gzip");
    }
    let body = enc.finish().expect("gzip");
    let head = format!(
        "POST /api/v1/flows/replay HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n\
         Content-Encoding: gzip\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let send = |s: &mut std::net::TcpStream| {
        s.write_all(head.as_bytes()).expect("write");
        s.write_all(&body).expect("write");
    };
    // Connected: read to the end.
    let t = Instant::now();
    let mut s = live.connect();
    send(&mut s);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let full = t.elapsed();
    let resp = String::from_utf8_lossy(&resp);
    assert!(resp.starts_with("HTTP/1.1 200"), "{}", &resp[..resp.len().min(300)]);
    assert_eq!(body_of(&resp)["summary"]["observed"]["connections"], lines as u64);
    assert_eq!(count(&metrics(), "total{outcome=\"completed\"}"), 1.0);
    // Disconnected once the work started: it stops at its next check.
    let mut s = live.connect();
    send(&mut s);
    let started = Instant::now();
    while count(&metrics(), "in_flight") < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(20), "the replay did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    drop(s);
    let t = Instant::now();
    while count(&metrics(), "in_flight") > 0.0 {
        assert!(t.elapsed() < Duration::from_secs(60), "still running");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped = t.elapsed();
    let m = metrics();
    eprintln!("flow replay of {lines} lines: {full:?} connected; stopped {stopped:?} after the client left");
    assert_eq!(count(&m, "total{outcome=\"cancelled\"}"), 1.0, "the work noticed the client left: {m}");
    assert_eq!(count(&m, "total{outcome=\"completed\"}"), 1.0, "{m}");
}
