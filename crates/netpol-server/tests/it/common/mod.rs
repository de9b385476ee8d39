//! Shared by the HTTP API tests (serve, graph, live): one request through `router(...)` without a socket, the
//! scratch directory, and the bundled example's path.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The directory for the tests' scratch files: `CARGO_TARGET_TMPDIR` (`<target dir>/tmp`), never the system's
/// temporary directory, so that no test writes outside the target directory.
pub fn scratch() -> &'static Path {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("netpol-server-it");
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("cannot create {}: {e}", d.display()));
        d
    })
}

/// A fresh directory under [`scratch`], removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir_in(scratch())
        .unwrap_or_else(|e| panic!("cannot create a directory in {}: {e}", scratch().display()))
}

/// examples/three-tier.
pub fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/three-tier").display().to_string()
}

/// examples/admin-tiers/cluster.yaml: policies of every tier.
pub fn admin_example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/admin-tiers/cluster.yaml").display().to_string()
}

/// Asserts that `r`, the answer to `method path`, is one the OpenAPI document `doc` declares for that route (its
/// status and content type), and that a JSON body validates against the declared schema.
pub fn assert_declared(doc: &Value, method: &Method, path: &str, r: &Res) {
    let what = format!("{method} {path} -> {}", r.status);
    let op = &doc["paths"][path][method.as_str().to_lowercase()];
    assert!(op.is_object(), "{what}: not documented");
    let declared = &op["responses"][r.status.as_str()];
    assert!(declared.is_object(), "{what}: status not declared: {}", r.text());
    let media = r.content_type.split(';').next().unwrap_or("").to_string();
    let Some(schema) = declared["content"][&media]["schema"].as_object() else {
        panic!("{what}: content type {media} not declared: {}", declared["content"]);
    };
    if media != "application/json" {
        return;
    }
    let mut schema = Value::Object(schema.clone());
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{what}: bad schema: {e}"));
    let instance = r.json();
    let errors: Vec<String> =
        validator.iter_errors(&instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{what}: the body does not match the declared schema: {errors:#?}");
}

/// A response, with the headers every test looks at pulled out.
pub struct Res {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// `X-Netpol-Revision` (every response must carry it).
    pub revision: u64,
    pub content_type: String,
    /// `X-Netpol-Resource-Version` (live clusters only).
    pub resource_version: Option<String>,
    pub body: Vec<u8>,
}

impl Res {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// A header's value, or "" when absent.
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).map(|v| v.to_str().unwrap_or("").to_string()).unwrap_or_default()
    }
}

pub async fn call(app: &axum::Router, method: Method, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> Res {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let res = app.clone().oneshot(b.body(Body::from(body)).expect("request")).await.expect("infallible");
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.expect("body").to_bytes().to_vec();
    let mut r = Res { status, headers, revision: 0, content_type: String::new(), resource_version: None, body };
    r.revision = r.header("x-netpol-revision").parse().unwrap_or_else(|_| panic!("no revision header on {uri}"));
    r.content_type = r.header("content-type");
    r.resource_version =
        r.headers.contains_key("x-netpol-resource-version").then(|| r.header("x-netpol-resource-version"));
    r
}

pub async fn get(app: &axum::Router, uri: &str) -> Res {
    call(app, Method::GET, uri, &[], Vec::new()).await
}

/// `call` with a body and its content type.
pub async fn post(app: &axum::Router, uri: &str, content_type: &str, body: impl Into<Vec<u8>>) -> Res {
    call(app, Method::POST, uri, &[("content-type", content_type)], body.into()).await
}
