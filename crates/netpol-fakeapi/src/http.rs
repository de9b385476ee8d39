//! The HTTP face of the store: routing, list pagination, watch streams, discovery and `Status` errors. Writes are
//! in [`crate::write`].

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::kind::Kind;
use crate::store::{event_line, Field, FieldTerm, ObjectKey, ReadError, Scope, Store, WatchFrom, WatchMsg};
use crate::write::{self, Target};
use crate::RequestLog;

/// State shared by the server's handlers and the [`FakeApiServer`](crate::FakeApiServer) handle.
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub requests: Mutex<Vec<RequestLog>>,
    pub addr: SocketAddr,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves the data consistent before it can fail.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    lock(&shared.requests).push(RequestLog {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
    });
    let request = Request { method: &method, uri: &uri, headers: &headers, body: &body };
    serve(&shared, &request).unwrap_or_else(ApiError::into_response)
}

/// One request, as the handlers see it.
pub(crate) struct Request<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

impl Request<'_> {
    /// The media type of the body, lowercase and without parameters (`application/json`); empty if unsaid.
    pub(crate) fn content_type(&self) -> String {
        let value = self.headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
    }
}

fn serve(shared: &Arc<Shared>, request: &Request<'_>) -> Result<Response, ApiError> {
    let (method, uri) = (request.method, request.uri);
    let route = parse_route(uri.path()).ok_or_else(ApiError::no_such_path)?;
    let verb = match (method.as_str(), &route) {
        ("GET", Route::Collection { .. }) => "list",
        ("GET", _) => "get",
        ("POST", Route::Collection { kind, namespace }) if namespace.is_some() || !kind.is_namespaced() => "create",
        ("PUT", Route::Object { .. }) => "update",
        ("PATCH", Route::Object { .. }) => "patch",
        ("DELETE", Route::Object { .. }) => "delete",
        _ => {
            return Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("the server does not allow this method on the requested resource: {method} {}", uri.path()),
            )
            .with_details(json!({})))
        }
    };
    let params = Params::parse(uri)?;
    // A kind whose CRD is not installed has no path at all, as on a real apiserver.
    let served = |kind: Kind| lock(&shared.store).serves(kind);
    match route {
        Route::Version => Ok(json_response(StatusCode::OK, &version())),
        Route::CoreVersions => Ok(json_response(StatusCode::OK, &core_versions(shared.addr))),
        Route::Groups => Ok(json_response(StatusCode::OK, &groups(&served))),
        Route::OpenApiRoot => Ok(json_response(StatusCode::OK, &openapi_root(&served))),
        Route::OpenApi(group, version) => {
            let body = openapi_group_version(group, version, &served).ok_or_else(ApiError::no_such_path)?;
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::Resources(group, version) => {
            let body = resources(group, version, &served).ok_or_else(ApiError::no_such_path)?;
            Ok(json_response(StatusCode::OK, &body))
        }
        Route::Object { kind, .. } | Route::Collection { kind, .. } if !served(kind) => Err(ApiError::no_such_path()),
        Route::Object { kind, namespace, .. } | Route::Collection { kind, namespace }
            if lock(&shared.store).is_forbidden(kind) =>
        {
            Err(ApiError::forbidden(kind, namespace, if params.watch { "watch" } else { verb }))
        }
        Route::Object { kind, namespace, name } if verb != "get" => {
            write::object(shared, request, &params, Target { kind, namespace, name: Some(name) })
        }
        Route::Collection { kind, namespace } if verb == "create" => {
            write::object(shared, request, &params, Target { kind, namespace, name: None })
        }
        Route::Object { kind, namespace, name } => get(shared, &params, kind, namespace, name),
        Route::Collection { kind, namespace } => {
            let mut terms = params.field_terms()?;
            if let Some(namespace) = namespace {
                terms.push(FieldTerm { field: Field::Namespace, value: namespace.to_owned(), negated: false });
            }
            let scope = Scope { kind, terms };
            if params.watch {
                watch(shared, &params, scope)
            } else {
                list(shared, &params, &scope)
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Version,
    CoreVersions,
    Groups,
    /// The OpenAPI v3 discovery document: the path of each group version's document.
    OpenApiRoot,
    /// The OpenAPI v3 document of one group version: (group, version), `""` for the core group.
    OpenApi(&'static str, &'static str),
    /// Discovery of one group version: (group, version), `""` for the core group.
    Resources(&'static str, &'static str),
    Collection {
        kind: Kind,
        namespace: Option<&'a str>,
    },
    Object {
        kind: Kind,
        namespace: Option<&'a str>,
        name: &'a str,
    },
}

fn parse_route(path: &str) -> Option<Route<'_>> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] => Some(Route::Version),
        ["api"] => Some(Route::CoreVersions),
        ["apis"] => Some(Route::Groups),
        ["openapi", "v3"] => Some(Route::OpenApiRoot),
        ["openapi", "v3", "api", version] => openapi_route("", version),
        ["openapi", "v3", "apis", group, version] => openapi_route(group, version),
        ["api", version, rest @ ..] => resource_route("", version, rest),
        ["apis", group, version, rest @ ..] if !group.is_empty() => resource_route(group, version, rest),
        _ => None,
    }
}

fn openapi_route(group: &str, version: &str) -> Option<Route<'static>> {
    Kind::ALL
        .into_iter()
        .find(|k| k.group() == group && k.version() == version)
        .map(|k| Route::OpenApi(k.group(), k.version()))
}

fn resource_route<'a>(group: &str, version: &str, rest: &[&'a str]) -> Option<Route<'a>> {
    let kind = |plural: &str| Kind::from_plural(group, version, plural);
    match rest {
        [] => Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.version() == version)
            .map(|k| Route::Resources(k.group(), k.version())),
        [plural] => kind(plural).map(|kind| Route::Collection { kind, namespace: None }),
        [plural, name] => {
            kind(plural).filter(|k| !k.is_namespaced()).map(|kind| Route::Object { kind, namespace: None, name })
        }
        ["namespaces", namespace, plural] => kind(plural)
            .filter(|k| k.is_namespaced())
            .map(|kind| Route::Collection { kind, namespace: Some(namespace) }),
        ["namespaces", namespace, plural, name] => kind(plural)
            .filter(|k| k.is_namespaced())
            .map(|kind| Route::Object { kind, namespace: Some(namespace), name }),
        _ => None,
    }
}

/// The query parameters the server understands. Others (`pretty`, `timeout`, `fieldValidation`, …) are ignored.
#[derive(Debug, Default)]
pub(crate) struct Params {
    watch: bool,
    resource_version: Option<String>,
    resource_version_match: Option<String>,
    limit: Option<usize>,
    continue_token: Option<String>,
    timeout_seconds: Option<u64>,
    allow_watch_bookmarks: bool,
    send_initial_events: bool,
    field_selector: Option<String>,
    /// `dryRun=All`: a write answers as it would, and changes nothing.
    pub dry_run: bool,
    /// `fieldManager`, required by server-side apply.
    pub field_manager: Option<String>,
}

impl Params {
    fn parse(uri: &Uri) -> Result<Params, ApiError> {
        let Query(raw) = Query::<HashMap<String, String>>::try_from_uri(uri)
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        let text = |name: &str| raw.get(name).filter(|v| !v.is_empty()).cloned();
        if let Some(selector) = text("labelSelector") {
            return Err(ApiError::bad_request(format!(
                "labelSelector `{selector}` is not supported by the fake API server: list everything and filter"
            )));
        }
        let limit = match text("limit") {
            None => None,
            Some(v) => match v.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return Err(ApiError::bad_request(format!("limit `{v}` is not a non-negative integer"))),
            },
        };
        let timeout_seconds = match text("timeoutSeconds") {
            None => None,
            Some(v) => match v.parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    return Err(ApiError::bad_request(format!("timeoutSeconds `{v}` is not a non-negative integer")))
                }
            },
        };
        Ok(Params {
            watch: parse_bool(&raw, "watch")?,
            resource_version: text("resourceVersion"),
            resource_version_match: text("resourceVersionMatch"),
            limit,
            continue_token: text("continue"),
            timeout_seconds,
            allow_watch_bookmarks: parse_bool(&raw, "allowWatchBookmarks")?,
            send_initial_events: parse_bool(&raw, "sendInitialEvents")?,
            field_selector: text("fieldSelector"),
            dry_run: match text("dryRun").as_deref() {
                None => false,
                Some("All") => true,
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "Invalid dry run value: {other} (the only accepted value is All)"
                    )))
                }
            },
            field_manager: text("fieldManager"),
        })
    }

    /// Parses `fieldSelector`: comma-separated `metadata.name` / `metadata.namespace` terms with `=`, `==`
    /// or `!=`. Other fields are refused, as a real apiserver refuses fields a kind does not index.
    fn field_terms(&self) -> Result<Vec<FieldTerm>, ApiError> {
        let Some(selector) = &self.field_selector else {
            return Ok(Vec::new());
        };
        let mut terms = Vec::new();
        for term in selector.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (field, value, negated) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (f, v, false)
            } else {
                return Err(ApiError::bad_request(format!("invalid field selector term `{term}`")));
            };
            let field = match field.trim() {
                "metadata.name" => Field::Name,
                "metadata.namespace" => Field::Namespace,
                other => {
                    return Err(ApiError::bad_request(format!(
                        "field label not supported by the fake API server: `{other}` \
                         (only metadata.name and metadata.namespace)"
                    )))
                }
            };
            terms.push(FieldTerm { field, value: value.trim().to_owned(), negated });
        }
        Ok(terms)
    }
}

/// Parses a boolean the way the apiserver does (Go's `strconv.ParseBool`); absent or empty is false.
fn parse_bool(raw: &HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    match raw.get(name).map(String::as_str) {
        None | Some("") => Ok(false),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(ApiError::bad_request(format!("{name} `{other}` is not a boolean"))),
    }
}

fn parse_revision(text: &str) -> Result<u64, ApiError> {
    text.parse().map_err(|_| ApiError::bad_request(format!("resourceVersion `{text}` is not a valid resource version")))
}

fn get(
    shared: &Shared,
    params: &Params,
    kind: Kind,
    namespace: Option<&str>,
    name: &str,
) -> Result<Response, ApiError> {
    if params.watch {
        return Err(ApiError::bad_request(format!(
            "watching one object by URL is not supported: watch the collection with fieldSelector=metadata.name={name}"
        )));
    }
    let key = ObjectKey { kind, namespace: namespace.unwrap_or_default().to_owned(), name: name.to_owned() };
    let store = lock(&shared.store);
    match store.get(&key) {
        Some(obj) => Ok(json_response(StatusCode::OK, obj)),
        None => Err(ApiError::not_found(kind, name)),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// List

const CONTINUE_PREFIX: &str = "fakeapi-v1.";

fn encode_continue(revision: u64, offset: usize) -> String {
    format!("{CONTINUE_PREFIX}{revision}.{offset}")
}

fn decode_continue(token: &str) -> Option<(u64, usize)> {
    let (revision, offset) = token.strip_prefix(CONTINUE_PREFIX)?.split_once('.')?;
    Some((revision.parse().ok()?, offset.parse().ok()?))
}

fn list(shared: &Shared, params: &Params, scope: &Scope) -> Result<Response, ApiError> {
    let store = lock(&shared.store);
    let (revision, offset, continuing) = match &params.continue_token {
        Some(token) => {
            if params.resource_version.as_deref().is_some_and(|rv| rv != "0") {
                return Err(ApiError::bad_request(
                    "specifying resourceVersion is not allowed when using continue".to_owned(),
                ));
            }
            let (revision, offset) = decode_continue(token).ok_or_else(|| {
                ApiError::bad_request(format!("continue token `{token}` is not one this server made"))
            })?;
            (revision, offset, true)
        }
        None => (list_revision(&store, params)?, 0, false),
    };
    let items = store.list(scope, revision).map_err(|e| read_error(e, continuing))?;
    drop(store);

    let total = items.len();
    let start = offset.min(total);
    let end = params.limit.map_or(total, |limit| start.saturating_add(limit).min(total));
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if end < total {
        metadata["continue"] = Value::from(encode_continue(revision, end));
        metadata["remainingItemCount"] = Value::from(total - end);
    }
    // A real apiserver's list items carry no kind or apiVersion: the list's own fields say them.
    let page: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(end - start)
        .map(|mut item| {
            if let Some(map) = item.as_object_mut() {
                map.remove("kind");
                map.remove("apiVersion");
            }
            item
        })
        .collect();
    let body = json!({
        "kind": scope.kind.list_name(),
        "apiVersion": scope.kind.api_version(),
        "metadata": metadata,
        "items": page,
    });
    Ok(json_response(StatusCode::OK, &body))
}

/// The revision a first list page is served at, from `resourceVersion` and `resourceVersionMatch`.
///
/// Unset: the current revision (a consistent read). `0`: any revision, so the current one. `N` with `Exact`,
/// or with no match but a `limit` (the legacy rule): exactly `N`. `N` with `NotOlderThan`, or with neither:
/// the current revision, which must be at least `N`.
fn list_revision(store: &Store, params: &Params) -> Result<u64, ApiError> {
    let current = store.revision();
    let exact = match params.resource_version_match.as_deref() {
        None => None,
        Some("Exact") => Some(true),
        Some("NotOlderThan") => Some(false),
        Some(other) => return Err(ApiError::bad_request(format!("resourceVersionMatch `{other}` is not supported"))),
    };
    let Some(rv) = params.resource_version.as_deref() else {
        if exact.is_some() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden unless resourceVersion is provided".to_owned(),
            ));
        }
        return Ok(current);
    };
    if rv == "0" {
        return match exact {
            Some(true) => {
                Err(ApiError::bad_request("resourceVersionMatch=Exact is forbidden for resourceVersion 0".to_owned()))
            }
            _ => Ok(current),
        };
    }
    let requested = parse_revision(rv)?;
    if exact.unwrap_or(params.limit.is_some()) {
        Ok(requested)
    } else if requested > current {
        Err(read_error(ReadError::TooLarge { requested, current }, false))
    } else {
        Ok(current)
    }
}

fn read_error(error: ReadError, continuing: bool) -> ApiError {
    match error {
        ReadError::Expired { requested, compacted } if continuing => ApiError::new(
            StatusCode::GONE,
            "Expired",
            format!(
                "the continue token is too old: its resourceVersion {requested} is before the compaction point \
                 {compacted}; start a new list without it"
            ),
        ),
        ReadError::Expired { requested, compacted } => {
            ApiError::new(StatusCode::GONE, "Expired", format!("too old resource version: {requested} ({compacted})"))
        }
        ReadError::TooLarge { requested, current } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!("Too large resource version: {requested}, current: {current}"),
        )
        .with_details(json!({
            "causes": [{ "reason": "ResourceVersionTooLarge", "message": "Too large resource version" }],
            "retryAfterSeconds": 1,
        })),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Watch

fn watch(shared: &Arc<Shared>, params: &Params, scope: Scope) -> Result<Response, ApiError> {
    let from = if params.send_initial_events {
        if !params.allow_watch_bookmarks {
            return Err(ApiError::bad_request("sendInitialEvents requires allowWatchBookmarks=true".to_owned()));
        }
        if params.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::bad_request(
                "sendInitialEvents requires resourceVersionMatch=NotOlderThan".to_owned(),
            ));
        }
        // Initial events are the current state, which is at least as new as any revision the store has had.
        if let Some(rv) = params.resource_version.as_deref().filter(|rv| *rv != "0") {
            let requested = parse_revision(rv)?;
            let current = lock(&shared.store).revision();
            if requested > current {
                return Err(read_error(ReadError::TooLarge { requested, current }, false));
            }
        }
        WatchFrom::Current { initial_events_end: true }
    } else {
        if params.resource_version_match.is_some() {
            return Err(ApiError::bad_request(
                "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided".to_owned(),
            ));
        }
        match params.resource_version.as_deref() {
            None | Some("0") => WatchFrom::Current { initial_events_end: false },
            Some(rv) => WatchFrom::After(parse_revision(rv)?),
        }
    };

    let kind = scope.kind;
    let subscription = lock(&shared.store).watch(scope, from, params.allow_watch_bookmarks);
    let subscription = match subscription {
        Ok(subscription) => subscription,
        // A real apiserver accepts the watch and then sends the error as its only event.
        Err(expired @ ReadError::Expired { .. }) => {
            let status = read_error(expired, false).status_object();
            return Ok(watch_response(Body::from(event_line("ERROR", &status))));
        }
        Err(too_large @ ReadError::TooLarge { .. }) => return Err(read_error(too_large, false)),
    };
    tracing::debug!(kind = %kind, id = subscription.id, "watch opened");

    let state = WatchStream {
        backlog: subscription.backlog.into(),
        rx: subscription.rx,
        deadline: params.timeout_seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s)),
        finished: false,
        _guard: WatchGuard { shared: Arc::clone(shared), id: subscription.id },
    };
    let stream = futures_util::stream::unfold(state, next_chunk);
    Ok(watch_response(Body::from_stream(stream)))
}

struct WatchStream {
    backlog: VecDeque<Bytes>,
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    deadline: Option<tokio::time::Instant>,
    finished: bool,
    _guard: WatchGuard,
}

/// Unregisters a watch from the store when its response body is dropped, whatever ended it.
struct WatchGuard {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for WatchGuard {
    fn drop(&mut self) {
        lock(&self.shared.store).unsubscribe(self.id);
        tracing::debug!(id = self.id, "watch closed");
    }
}

const ABORT_FLUSH_DELAY: Duration = Duration::from_millis(20);

/// The next chunk of a watch body: the backlog, then live events, until the deadline (a clean end of the
/// chunked body) or an abort (an error, on which hyper drops the connection without the final chunk).
async fn next_chunk(mut state: WatchStream) -> Option<(io::Result<Bytes>, WatchStream)> {
    if state.finished {
        return None;
    }
    if let Some(line) = state.backlog.pop_front() {
        return Some((Ok(line), state));
    }
    let msg = match state.deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, state.rx.recv()).await.unwrap_or(None),
        None => state.rx.recv().await,
    };
    match msg {
        Some(WatchMsg::Line(line)) => Some((Ok(line), state)),
        Some(WatchMsg::Abort) => {
            state.finished = true;
            // Pending for a moment lets hyper flush the events already written before it drops the
            // connection, so an abort never swallows an event (such as a bookmark) sent before it.
            tokio::time::sleep(ABORT_FLUSH_DELAY).await;
            Some((Err(io::Error::new(io::ErrorKind::ConnectionAborted, "watch dropped by the fake API server")), state))
        }
        None => None,
    }
}

fn watch_response(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

// ---------------------------------------------------------------------------------------------------------------
// Discovery

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "37",
        "gitVersion": "v1.37.0-netpol-fakeapi",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "none",
        "compiler": "none",
        "platform": "linux/amd64",
    })
}

fn core_versions(addr: SocketAddr) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": addr.to_string() }],
    })
}

/// The group versions served, each with its kinds, in the order of [`Kind::ALL`].
fn group_versions(served: &dyn Fn(Kind) -> bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for k in Kind::ALL.into_iter().filter(|k| served(*k)) {
        if !out.contains(&(k.group(), k.version())) {
            out.push((k.group(), k.version()));
        }
    }
    out
}

/// The order of preference of versions, as the apiserver sorts them: GA, then beta, then alpha; higher numbers
/// first within each.
fn version_priority(version: &str) -> (u8, u32, u32) {
    let rest = version.strip_prefix('v').unwrap_or(version);
    let digits = |s: &str| s.parse::<u32>().unwrap_or(0);
    for (stability, marker) in [(1, "beta"), (0, "alpha")] {
        if let Some((major, minor)) = rest.split_once(marker) {
            return (stability, digits(major), digits(minor));
        }
    }
    (2, digits(rest), 0)
}

fn groups(served: &dyn Fn(Kind) -> bool) -> Value {
    let mut names: Vec<&str> = Vec::new();
    let all = group_versions(served);
    for (group, _) in &all {
        if !group.is_empty() && !names.contains(group) {
            names.push(group);
        }
    }
    let groups: Vec<Value> = names
        .into_iter()
        .map(|name| {
            let mut versions: Vec<&str> = all.iter().filter(|(g, _)| *g == name).map(|(_, v)| *v).collect();
            versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
            let versions: Vec<Value> =
                versions.into_iter().map(|v| json!({ "groupVersion": format!("{name}/{v}"), "version": v })).collect();
            json!({ "name": name, "preferredVersion": versions[0].clone(), "versions": versions })
        })
        .collect();
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// The short names (`kubectl get po`) and categories (`kubectl get all`) of the kinds that have them on a real
/// cluster, for the built-in kinds and the `policy.networking.k8s.io` CRDs.
fn short_names(kind: Kind) -> (&'static [&'static str], &'static [&'static str]) {
    match kind {
        Kind::Namespace => (&["ns"], &[]),
        Kind::Node => (&["no"], &[]),
        Kind::Pod => (&["po"], &["all"]),
        Kind::Service => (&["svc"], &["all"]),
        Kind::ServiceAccount => (&["sa"], &[]),
        Kind::Endpoints => (&["ep"], &[]),
        Kind::NetworkPolicy => (&["netpol"], &[]),
        Kind::AdminNetworkPolicy => (&["anp"], &[]),
        Kind::BaselineAdminNetworkPolicy => (&["banp"], &[]),
        _ => (&[], &[]),
    }
}

/// The resources of one group version; `None` when none is served there.
fn resources(group: &str, version: &str, served: &dyn Fn(Kind) -> bool) -> Option<Value> {
    let resources: Vec<Value> = Kind::ALL
        .iter()
        .filter(|k| k.group() == group && k.version() == version && served(**k))
        .map(|k| {
            let mut resource = json!({
                "name": k.plural(),
                "singularName": k.singular(),
                "namespaced": k.is_namespaced(),
                "kind": k.name(),
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
            });
            let (short_names, categories) = short_names(*k);
            if !short_names.is_empty() {
                resource["shortNames"] = json!(short_names);
            }
            if !categories.is_empty() {
                resource["categories"] = json!(categories);
            }
            resource
        })
        .collect();
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_owned() } else { format!("{group}/{version}") };
    Some(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}

/// The path of a group version in OpenAPI v3 discovery: `api/v1`, `apis/networking.k8s.io/v1`.
fn openapi_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: where each served group version's document is.
fn openapi_root(served: &dyn Fn(Kind) -> bool) -> Value {
    let paths: serde_json::Map<String, Value> = group_versions(served)
        .into_iter()
        .map(|(group, version)| {
            let path = openapi_path(group, version);
            (path.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{path}") }))
        })
        .collect();
    json!({ "paths": paths })
}

/// `/openapi/v3/{api path}`: a minimal document for one group version, without schemas. It has what kubectl
/// looks for before it sends `fieldValidation` (a `PATCH` operation per kind, tagged with the kind and taking the
/// `fieldValidation` query parameter), so kubectl leaves validation to the server (which ignores it) instead of
/// validating against schemas; without schemas, kubectl's client-side apply computes its patches from its own
/// built-in types, or as JSON merge patches for the custom kinds.
fn openapi_group_version(group: &str, version: &str, served: &dyn Fn(Kind) -> bool) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.group() == group && k.version() == version && served(*k)) {
        let prefix = openapi_path(group, version);
        let path = if kind.is_namespaced() {
            format!("/{prefix}/namespaces/{{namespace}}/{}/{{name}}", kind.plural())
        } else {
            format!("/{prefix}/{}/{{name}}", kind.plural())
        };
        let operation = json!({
            "operationId": format!("patch{}", kind.name()),
            "x-kubernetes-action": "patch",
            "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": kind.name() },
            "parameters": [
                { "name": "dryRun", "in": "query", "schema": { "type": "string" } },
                { "name": "fieldManager", "in": "query", "schema": { "type": "string" } },
                { "name": "fieldValidation", "in": "query", "schema": { "type": "string" } },
            ],
            "responses": { "200": { "description": "OK" } },
        });
        paths.insert(path, json!({ "patch": operation }));
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": self::version()["gitVersion"].clone() },
        "paths": paths,
        "components": { "schemas": {} },
    }))
}

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// A failed request, sent as a `Status` object with the matching HTTP code.
#[derive(Debug)]
pub(crate) struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Option<Value>,
}

impl ApiError {
    pub(crate) fn new(code: StatusCode, reason: &'static str, message: String) -> ApiError {
        ApiError { code, reason, message, details: None }
    }

    pub(crate) fn bad_request(message: String) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }

    /// The `details` of an error about one object: its name, its resource (`kind` is the plural, as the
    /// apiserver sends it) and its group (left out for the core group).
    pub(crate) fn object_details(kind: Kind, name: &str) -> Value {
        let mut details = json!({ "name": name, "kind": kind.plural() });
        if !kind.group().is_empty() {
            details["group"] = Value::from(kind.group());
        }
        details
    }

    /// What a real apiserver answers for an object that does not exist.
    pub(crate) fn not_found(kind: Kind, name: &str) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("{} \"{name}\" not found", kind.resource()))
            .with_details(ApiError::object_details(kind, name))
    }

    /// What a real apiserver answers for a path it does not serve (such as the resources of a CRD that is not
    /// installed).
    pub(crate) fn no_such_path() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", "the server could not find the requested resource".to_owned())
            .with_details(json!({}))
    }

    /// What a real apiserver answers a client whose RBAC does not grant the request (anonymous here).
    fn forbidden(kind: Kind, namespace: Option<&str>, verb: &str) -> ApiError {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        let message = format!(
            "{} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
            kind.resource(),
            kind.plural(),
            kind.group()
        );
        ApiError::new(StatusCode::FORBIDDEN, "Forbidden", message)
            .with_details(json!({ "group": kind.group(), "kind": kind.plural() }))
    }

    pub(crate) fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    fn status_object(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code.as_u16(),
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }

    fn into_response(self) -> Response {
        json_response(self.code, &self.status_object())
    }
}

pub(crate) fn json_response(code: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let cases: [(&str, Option<Route<'_>>); 31] = [
            ("/version", Some(Route::Version)),
            ("/openapi/v3", Some(Route::OpenApiRoot)),
            ("/openapi/v3/api/v1", Some(Route::OpenApi("", "v1"))),
            ("/openapi/v3/apis/cilium.io/v2alpha1", Some(Route::OpenApi("cilium.io", "v2alpha1"))),
            ("/openapi/v2", None),
            ("/api", Some(Route::CoreVersions)),
            ("/apis", Some(Route::Groups)),
            ("/api/v1", Some(Route::Resources("", "v1"))),
            ("/apis/networking.k8s.io/v1", Some(Route::Resources("networking.k8s.io", "v1"))),
            ("/apis/policy.networking.k8s.io/v1alpha1", Some(Route::Resources("policy.networking.k8s.io", "v1alpha1"))),
            ("/api/v1/nodes", Some(Route::Collection { kind: Kind::Node, namespace: None })),
            ("/api/v1/nodes/n1", Some(Route::Object { kind: Kind::Node, namespace: None, name: "n1" })),
            (
                "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies",
                Some(Route::Collection { kind: Kind::ClusterNetworkPolicy, namespace: None }),
            ),
            (
                "/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies/default",
                Some(Route::Object { kind: Kind::BaselineAdminNetworkPolicy, namespace: None, name: "default" }),
            ),
            ("/apis/policy.networking.k8s.io/v1alpha2/adminnetworkpolicies", None),
            ("/api/v1/namespaces", Some(Route::Collection { kind: Kind::Namespace, namespace: None })),
            ("/api/v1/namespaces/a", Some(Route::Object { kind: Kind::Namespace, namespace: None, name: "a" })),
            ("/api/v1/pods", Some(Route::Collection { kind: Kind::Pod, namespace: None })),
            ("/api/v1/namespaces/a/pods", Some(Route::Collection { kind: Kind::Pod, namespace: Some("a") })),
            (
                "/apis/networking.k8s.io/v1/namespaces/a/networkpolicies/p",
                Some(Route::Object { kind: Kind::NetworkPolicy, namespace: Some("a"), name: "p" }),
            ),
            ("/api/v1/pods/p", None),
            ("/api/v1/networkpolicies", None),
            ("/apis/apps/v1", None),
            ("/apis/networking.k8s.io/v1beta1/networkpolicies", None),
            ("/api/v1/namespaces/a/namespaces", None),
            (
                "/apis/crd.projectcalico.org/v1/namespaces/a/networkpolicies",
                Some(Route::Collection { kind: Kind::CalicoNetworkPolicy, namespace: Some("a") }),
            ),
            (
                "/apis/projectcalico.org/v3/tiers/security",
                Some(Route::Object { kind: Kind::CalicoV3Tier, namespace: None, name: "security" }),
            ),
            ("/api/v1/serviceaccounts", Some(Route::Collection { kind: Kind::ServiceAccount, namespace: None })),
            (
                "/api/v1/namespaces/default/endpoints",
                Some(Route::Collection { kind: Kind::Endpoints, namespace: Some("default") }),
            ),
            (
                "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes",
                Some(Route::Object { kind: Kind::EndpointSlice, namespace: Some("default"), name: "kubernetes" }),
            ),
            (
                "/apis/cilium.io/v2alpha1/ciliumcidrgroups",
                Some(Route::Collection { kind: Kind::CiliumCidrGroupV2Alpha1, namespace: None }),
            ),
        ];
        for (path, want) in cases {
            assert_eq!(parse_route(path), want, "{path}");
        }
    }

    #[test]
    fn discovery_lists_what_is_served() {
        let all = |_: Kind| true;
        let listed = groups(&all);
        let policy = &listed["groups"][1];
        assert_eq!(policy["name"], "policy.networking.k8s.io");
        assert_eq!(policy["preferredVersion"]["version"], "v1alpha2");
        assert_eq!(policy["versions"][1]["groupVersion"], "policy.networking.k8s.io/v1alpha1");
        let v1alpha1 = resources("policy.networking.k8s.io", "v1alpha1", &all).unwrap();
        let names: Vec<&str> =
            v1alpha1["resources"].as_array().unwrap().iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["adminnetworkpolicies", "baselineadminnetworkpolicies"]);
        assert_eq!(v1alpha1["resources"][0]["namespaced"], false);
        let core = resources("", "v1", &all).unwrap();
        assert_eq!(core["resources"].as_array().unwrap().len(), 7);
        let names: Vec<&str> =
            listed["groups"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "networking.k8s.io",
                "policy.networking.k8s.io",
                "crd.projectcalico.org",
                "projectcalico.org",
                "cilium.io",
                "discovery.k8s.io",
                "crd.antrea.io"
            ]
        );
        assert_eq!(listed["groups"][4]["preferredVersion"]["groupVersion"], "cilium.io/v2");
        assert_eq!(listed["groups"][4]["versions"][1]["groupVersion"], "cilium.io/v2alpha1");
        let old_cilium = resources("cilium.io", "v2alpha1", &all).unwrap();
        assert_eq!(old_cilium["resources"][0]["name"], "ciliumcidrgroups");
        assert_eq!(old_cilium["resources"][0]["kind"], "CiliumCIDRGroup");
        assert_eq!(old_cilium["resources"][0]["singularName"], "ciliumcidrgroup");
        let cilium = resources("cilium.io", "v2", &all).unwrap();
        assert_eq!(cilium["resources"][1]["name"], "ciliumclusterwidenetworkpolicies");
        assert_eq!(cilium["resources"][1]["namespaced"], false);
        let v3 = resources("projectcalico.org", "v3", &all).unwrap();
        assert_eq!(v3["resources"][0]["kind"], "NetworkPolicy");
        assert_eq!(v3["resources"][0]["singularName"], "networkpolicy");
        assert_eq!(v3["resources"][0]["namespaced"], true);

        let no_crds = |k: Kind| k.api() == crate::kind::Api::BuiltIn;
        // networking.k8s.io and discovery.k8s.io.
        assert_eq!(groups(&no_crds)["groups"].as_array().unwrap().len(), 2);
        assert_eq!(resources("policy.networking.k8s.io", "v1alpha1", &no_crds), None);
        assert!(version_priority("v1") > version_priority("v1beta1"));
        assert!(version_priority("v1beta1") > version_priority("v2alpha1"));
        assert!(version_priority("v1alpha2") > version_priority("v1alpha1"));
    }

    #[test]
    fn continue_tokens_round_trip_and_reject_strangers() {
        assert_eq!(decode_continue(&encode_continue(42, 7)), Some((42, 7)));
        assert_eq!(decode_continue("42.7"), None);
        assert_eq!(decode_continue("fakeapi-v1.x.7"), None);
    }

    #[test]
    fn field_selectors() {
        let params = Params {
            field_selector: Some("metadata.name=a, metadata.namespace!=kube-system".into()),
            ..Params::default()
        };
        let terms = params.field_terms().unwrap();
        assert_eq!(
            terms,
            [
                FieldTerm { field: Field::Name, value: "a".into(), negated: false },
                FieldTerm { field: Field::Namespace, value: "kube-system".into(), negated: true },
            ]
        );
        let params = Params { field_selector: Some("status.phase=Running".into()), ..Params::default() };
        assert_eq!(params.field_terms().unwrap_err().code, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn list_revision_rules() {
        let mut store = Store::new();
        for name in ["a", "b", "c"] {
            store.put(json!({"kind": "Namespace", "metadata": {"name": name}}), "t").unwrap();
        }
        let current = store.revision();
        let at = |rv: Option<&str>, m: Option<&str>, limit: Option<usize>| {
            let params = Params {
                resource_version: rv.map(str::to_owned),
                resource_version_match: m.map(str::to_owned),
                limit,
                ..Params::default()
            };
            list_revision(&store, &params).map_err(|e| e.code)
        };
        assert_eq!(at(None, None, None), Ok(current));
        assert_eq!(at(Some("0"), Some("NotOlderThan"), None), Ok(current));
        assert_eq!(at(Some("2"), Some("Exact"), None), Ok(2));
        assert_eq!(at(Some("2"), None, Some(1)), Ok(2));
        assert_eq!(at(Some("2"), None, None), Ok(current));
        assert_eq!(at(Some("2"), Some("NotOlderThan"), None), Ok(current));
        assert_eq!(at(Some("99"), Some("NotOlderThan"), None), Err(StatusCode::GATEWAY_TIMEOUT));
        assert_eq!(at(None, Some("Exact"), None), Err(StatusCode::BAD_REQUEST));
        assert_eq!(at(Some("0"), Some("Exact"), None), Err(StatusCode::BAD_REQUEST));
        assert_eq!(at(Some("x"), None, None), Err(StatusCode::BAD_REQUEST));
    }
}
