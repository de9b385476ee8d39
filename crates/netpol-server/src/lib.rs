//! `netpol serve`: the engine behind an HTTP API (JSON), for dashboards, admission hooks and scripts that ask
//! many questions about one set of manifests.
//!
//! The loaded model (engine, revision, load time, diagnostics) sits behind an [`arc_swap::ArcSwap`]: a request
//! takes one snapshot when it arrives and answers everything from it, and a reload swaps the whole model at
//! once, so an answer comes from the old model or the new one, never a mix. Every response carries the revision
//! of the model that produced it in `X-Netpol-Revision`. With a live cluster (the `kube` feature: [`live`] ties in
//! `netpol-kube`) the model is published by the watch task after each batch of events, and
//! `X-Netpol-Resource-Version` carries the Kubernetes resourceVersions it reflects.
//!
//! Nothing a client does holds the server ([`Limits`]): [`serve_on`] runs hyper's HTTP/1 server with a header
//! read timeout (also the keep-alive idle timeout) and backs off when `accept` fails; [`router`] refuses long URIs
//! and oversized bodies before reading them and reads bodies within a deadline; the expensive requests take one
//! of `--max-expensive` slots (503 with `Retry-After` when none is free) and stop when their client leaves
//! (`Job`). Every error answer is JSON ([`ApiError`]).
//!
//! Routes: `POST /api/v1/query`, `GET /api/v1/explain`, `GET /api/v1/matrix`, `GET /api/v1/lint`,
//! `GET /api/v1/diagnostics`, `POST /api/v1/whatif`, `POST /api/v1/flows/replay`, `GET /api/v1/pods`,
//! `GET /api/v1/policies`, `GET /api/v1/tiers`, `GET /api/v1/hostendpoints`, `GET /api/v1/openapi.json`,
//! `GET /healthz`, `GET /metrics`; and the web UI's ([`ui`]).

#![forbid(unsafe_code)]

pub mod calico;
#[cfg(feature = "kube")]
pub mod live;
pub mod ui;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Extension, Json, Router};
use netpol_core::compile::Engine;
use netpol_core::lint::{self, Finding};
use netpol_core::load::{Diagnostic, Severity};
use netpol_core::model::{
    Action, CalicoPeer, Cluster, Direction, Peer, PodId, Policy, PolicyId, PolicyKind, PolicyPort, PolicyTier,
    PortMatch, Rule,
};
use netpol_core::portset::Protocol;
use netpol_input::query::{parse_port_proto, Resolver};
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

/// Largest matrix (pods) the API computes; larger requests get 422 (use `netpol matrix` for those).
pub const MAX_MATRIX_PODS: usize = 2000;
/// Default request body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;
/// The revision header.
pub const REVISION_HEADER: &str = "x-netpol-revision";
/// With a live cluster: the highest resourceVersion applied per kind (`pods=…,networkpolicies=…,namespaces=…`).
pub const RESOURCE_VERSION_HEADER: &str = "x-netpol-resource-version";

pub struct ServeOptions {
    pub files: Vec<String>,
    /// Read the model from this cluster (list + watch) instead of `files`.
    #[cfg(feature = "kube")]
    pub cluster: Option<netpol_kube::Source>,
    pub listen: SocketAddr,
    pub body_limit: usize,
    pub watch: bool,
    /// Settings of `GET /api/v1/lint` (`.netpol.yaml`'s `lint:`).
    pub lint_config: lint::Config,
    /// Timeouts and the bound on concurrent expensive requests.
    pub limits: Limits,
}

impl ServeOptions {
    /// Serving nothing yet on `listen`, with the default limits and lint settings: set `files` (or, with the `kube`
    /// feature, `cluster`) and the rest.
    pub fn new(listen: SocketAddr) -> ServeOptions {
        ServeOptions {
            files: Vec::new(),
            #[cfg(feature = "kube")]
            cluster: None,
            listen,
            body_limit: DEFAULT_BODY_LIMIT,
            watch: false,
            lint_config: lint::Config::default(),
            limits: Limits::default(),
        }
    }
}

// ---- limits ----

/// Timeouts and concurrency bound of `netpol serve` (the `serve` command's `--header-timeout`, `--body-timeout` and
/// `--max-expensive`).
#[derive(Clone, Debug)]
pub struct Limits {
    /// Time a client has to send a complete request head (request line and headers), counted from when the
    /// connection opens or its previous answer was sent, so it is also the keep-alive idle timeout; then the
    /// connection is closed.
    pub header_timeout: Duration,
    /// Time a client has to send a complete request body once the head is read; a slower one gets 408 and the
    /// connection is closed.
    pub body_timeout: Duration,
    /// Expensive requests (what-if, graph what-if, flow replay, query with explain) computed at once; more get
    /// 503 with `Retry-After` [default: the number of cores].
    pub max_expensive: Option<u32>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { header_timeout: Duration::from_secs(10), body_timeout: Duration::from_secs(30), max_expensive: None }
    }
}

impl Limits {
    /// `--max-expensive`, or the number of cores.
    pub fn max_expensive(&self) -> usize {
        match self.max_expensive {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// `10s`, `500ms`, `2m` or plain seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v * scale <= 86_400.0 => Ok(Duration::from_secs_f64(v * scale)),
        _ => {
            Err(format!("invalid duration `{s}`: a positive number of seconds, `500ms`, `10s` or `2m` (at most 24 h)"))
        }
    }
}

/// Longest request URI (path and query) the API reads; longer ones get 414. Below hyper's own limit (64 KiB),
/// so the answer is the API's JSON error.
pub const MAX_URI_LEN: usize = 16 << 10;
/// `Retry-After` (seconds) of a 503 when every expensive-request slot is taken.
pub const RETRY_AFTER_SECS: u64 = 1;

/// The bound on concurrent expensive requests, and their counters.
struct Expensive {
    slots: Arc<tokio::sync::Semaphore>,
    size: usize,
    counters: Arc<ExpensiveCounters>,
}

#[derive(Default)]
struct ExpensiveCounters {
    in_flight: AtomicU64,
    completed: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
}

impl Expensive {
    fn new(slots: usize) -> Expensive {
        Expensive { slots: Arc::new(tokio::sync::Semaphore::new(slots)), size: slots, counters: Arc::default() }
    }

    fn begin(&self) -> Result<(Job, CancelOnDrop), Busy> {
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.counters.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(Busy);
        };
        self.counters.in_flight.fetch_add(1, Ordering::Relaxed);
        let cancel = Arc::new(AtomicBool::new(false));
        let job = Job {
            _permit: permit,
            cancel: cancel.clone(),
            cancelled: AtomicBool::new(false),
            counters: self.counters.clone(),
        };
        Ok((job, CancelOnDrop(cancel)))
    }
}

/// An expensive request's work, run on a blocking thread: it holds one slot until it ends, and [`Job::check`]
/// tells it to stop once the client is gone (the request's future, holding the [`CancelOnDrop`], was dropped:
/// hyper drops it when the connection closes).
pub(crate) struct Job {
    _permit: tokio::sync::OwnedSemaphorePermit,
    cancel: Arc<AtomicBool>,
    cancelled: AtomicBool,
    counters: Arc<ExpensiveCounters>,
}

/// The client left: the work stopped at a check.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl Job {
    /// `Err(Cancelled)` once the request's future was dropped; called between the phases of the work.
    pub(crate) fn check(&self) -> Result<(), Cancelled> {
        if self.cancel.load(Ordering::Relaxed) {
            self.cancelled.store(true, Ordering::Relaxed);
            return Err(Cancelled);
        }
        Ok(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        let c = &self.counters;
        c.in_flight.fetch_sub(1, Ordering::Relaxed);
        let outcome = if self.cancelled.load(Ordering::Relaxed) { &c.cancelled } else { &c.completed };
        outcome.fetch_add(1, Ordering::Relaxed);
    }
}

/// Kept by an expensive request's future: dropping it (the client closed the connection, or the answer is
/// done) tells the [`Job`] to stop.
pub(crate) struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Every expensive-request slot is taken.
#[derive(Debug)]
pub(crate) struct Busy;

impl Busy {
    pub(crate) fn message(&self, slots: usize) -> String {
        format!(
            "busy: {slots} expensive request(s) (what-if, graph what-if, flow replay, query with explain) are being \
             computed, the server's limit (`serve --max-expensive`); retry after {RETRY_AFTER_SECS} s"
        )
    }
}

/// A reader over a request body that fails once the [`Job`] is cancelled (checked at every line `query` reads).
struct CancellableReader<'a> {
    rest: &'a [u8],
    job: &'a Job,
}

impl std::io::Read for CancellableReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::io::BufRead::fill_buf(self)?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.rest[..n]);
        self.rest = &self.rest[n..];
        Ok(n)
    }
}

impl std::io::BufRead for CancellableReader<'_> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.job.check().map_err(|_| std::io::Error::other("cancelled: the client closed the connection"))?;
        Ok(self.rest)
    }
    fn consume(&mut self, n: usize) {
        self.rest = &self.rest[n.min(self.rest.len())..];
    }
}

/// One loaded, compiled set of manifests. Immutable; a reload builds a new one.
pub struct Model {
    pub engine: Engine,
    /// The staged view (the cluster as if its Calico staged policies were enforced), compiled with the engine
    /// when the cluster has staged policies: explanations carry its verdict (`staged`).
    pub staged: Option<Engine>,
    pub revision: u64,
    pub loaded_at: SystemTime,
    /// Seconds spent compiling the engine.
    pub compile_seconds: f64,
    pub diagnostics: Vec<Diagnostic>,
    lint: OnceLock<Vec<Finding>>,
    /// Live clusters: the resourceVersions this model reflects; advanced in place by events that change nothing
    /// the engine sees.
    resource_version: Mutex<Option<String>>,
}

impl Model {
    /// A model for [`AppState::publish`], which sets its revision. With staged policies, their view is compiled
    /// here ([`Model::with_staged`] takes one compiled elsewhere).
    pub fn new(engine: Engine, compile_seconds: f64, diagnostics: Vec<Diagnostic>) -> Model {
        let staged = netpol_core::staged::staged_engine(&engine);
        Model::with_staged(engine, staged, compile_seconds, diagnostics)
    }

    /// A model whose staged view `staged` is already compiled (`staged::staged_engine` of `engine`).
    pub fn with_staged(
        engine: Engine,
        staged: Option<Engine>,
        compile_seconds: f64,
        diagnostics: Vec<Diagnostic>,
    ) -> Model {
        Model {
            engine,
            staged,
            revision: 0,
            loaded_at: SystemTime::now(),
            compile_seconds,
            diagnostics,
            lint: OnceLock::new(),
            resource_version: Mutex::new(None),
        }
    }

    /// Live clusters: `pods=…,networkpolicies=…,namespaces=…`, the resourceVersions the model reflects.
    pub fn resource_version(&self) -> Option<String> {
        self.resource_version.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn set_resource_version(&self, rv: String) {
        *self.resource_version.lock().unwrap_or_else(|e| e.into_inner()) = Some(rv);
    }

    /// Lint findings, computed once per model (a server has one lint configuration).
    fn findings(&self, config: &lint::Config) -> &[Finding] {
        self.lint.get_or_init(|| lint::lint(&self.engine, config))
    }
}

/// Latency buckets (seconds) of the request histogram.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Metrics {
    /// (route, method, status) -> count.
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    /// route -> latency histogram.
    latency: Mutex<BTreeMap<String, Histogram>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    /// `accept` calls that failed (out of file descriptors, ...).
    accept_errors: AtomicU64,
}

impl Metrics {
    /// Counts one answered request and its latency.
    fn record(&self, route: String, method: String, status: u16, secs: f64) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *requests.entry((route.clone(), method, status)).or_default() += 1;
        drop(requests);
        let mut lat = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        let h = lat.entry(route).or_default();
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            h.buckets[i] += 1;
        }
        h.count += 1;
        h.sum += secs;
    }
}

struct Inner {
    model: ArcSwap<Model>,
    files: Vec<String>,
    metrics: Metrics,
    /// Serialises reloads, so revisions are handed out in order.
    reload_lock: Mutex<()>,
    /// False until a live source published its first model: `/healthz` and the API answer 503.
    ready: AtomicBool,
    #[cfg(feature = "kube")]
    live: Option<Arc<netpol_kube::LiveMetrics>>,
}

/// Shared state of the server: the current model, the inputs to reload it from, metrics.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
    body_limit: usize,
    lint_config: Arc<lint::Config>,
    limits: Arc<Limits>,
    expensive: Arc<Expensive>,
}

fn build_model(files: &[String], revision: u64) -> anyhow::Result<Model> {
    if files.iter().any(|f| f == "-") {
        anyhow::bail!("`netpol serve` reads manifests from files or directories, not stdin (`-`)");
    }
    let (loaded, _invalid) = netpol_input::files::load(files)?;
    let t = Instant::now();
    let engine = Engine::with_cni(loaded.cluster, netpol_input::cni());
    let compile_seconds = t.elapsed().as_secs_f64();
    tracing::info!(revision, compile_seconds, stats = ?engine.stats(), "model loaded");
    Ok(Model { revision, ..Model::new(engine, compile_seconds, loaded.diagnostics) })
}

impl AppState {
    /// Loads and compiles the manifests (revision 1).
    pub fn from_files(files: &[String]) -> anyhow::Result<AppState> {
        let model = build_model(files, 1)?;
        Ok(AppState {
            inner: Arc::new(Inner {
                model: ArcSwap::from_pointee(model),
                files: files.to_vec(),
                metrics: Metrics::default(),
                reload_lock: Mutex::new(()),
                ready: AtomicBool::new(true),
                #[cfg(feature = "kube")]
                live: None,
            }),
            body_limit: DEFAULT_BODY_LIMIT,
            lint_config: Arc::new(lint::Config::default()),
            limits: Arc::new(Limits::default()),
            expensive: Arc::new(Expensive::new(Limits::default().max_expensive())),
        })
    }

    /// Publishes `model` as the next revision (atomically, like a reload) and returns that revision.
    pub fn publish(&self, mut model: Model) -> u64 {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        model.revision = self.inner.model.load().revision + 1;
        let revision = model.revision;
        self.inner.model.store(Arc::new(model));
        self.inner.ready.store(true, Ordering::Release);
        revision
    }

    /// Whether a model is loaded (always with files; after the first full list with a live cluster).
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// The same state with another request body limit (bytes; default [`DEFAULT_BODY_LIMIT`]), for [`router`].
    pub fn with_body_limit(mut self, limit: usize) -> AppState {
        self.body_limit = limit;
        self
    }

    /// The same state with other timeouts and bound on expensive requests (default [`Limits::default`]).
    pub fn with_limits(mut self, limits: Limits) -> AppState {
        self.expensive = Arc::new(Expensive::new(limits.max_expensive()));
        self.limits = Arc::new(limits);
        self
    }

    /// The same state with room for `n` concurrent expensive requests (0: every one gets 503), for tests.
    pub fn with_max_expensive(mut self, n: usize) -> AppState {
        self.expensive = Arc::new(Expensive::new(n));
        self
    }

    /// How many expensive requests may run at once.
    pub(crate) fn expensive_slots(&self) -> usize {
        self.expensive.size
    }

    /// Starts an expensive request (what-if, graph what-if, flow replay, query with explain): a [`Job`] for the
    /// blocking work and the [`CancelOnDrop`] the request's future keeps, or 503 when every slot is taken.
    pub(crate) fn begin_expensive(&self) -> Result<(Job, CancelOnDrop), Busy> {
        self.expensive.begin()
    }

    /// The same state with lint settings for `GET /api/v1/lint` (default: every rule, default severities).
    pub fn with_lint_config(mut self, config: lint::Config) -> AppState {
        self.lint_config = Arc::new(config);
        self
    }

    /// Reloads the manifests; on success the new model (next revision) replaces the old one atomically. On
    /// failure the old model stays and the error is returned. A reload fails when an input cannot be read, or
    /// when the manifests now hold more invalid objects (which loading skips) than the current model's.
    pub fn reload(&self) -> anyhow::Result<()> {
        let _guard = self.inner.reload_lock.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.inner.model.load_full();
        let next = current.revision + 1;
        let invalid = |m: &Model| m.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
        let built = build_model(&self.inner.files, next).and_then(|m| {
            // Invalid objects are skipped when loading: never let a typo silently drop a policy that was there.
            let (was, now) = (invalid(&current), invalid(&m));
            if now > was {
                let first = m.diagnostics.iter().find(|d| d.severity == Severity::Error);
                anyhow::bail!(
                    "the changed manifests have {now} invalid object(s) (revision {} had {was}), first: {}",
                    current.revision,
                    first.map(|d| d.to_string()).unwrap_or_default()
                );
            }
            Ok(m)
        });
        match built {
            Ok(m) => {
                self.inner.model.store(Arc::new(m));
                self.inner.metrics.reloads_ok.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.inner.metrics.reloads_failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub fn revision(&self) -> u64 {
        self.inner.model.load().revision
    }

    /// The current model.
    pub fn model(&self) -> Arc<Model> {
        self.inner.model.load_full()
    }
}

// ---- errors ----

/// Error body of every 4xx/5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ApiError {
    pub error: String,
    /// The request parameter or part at fault (`port`, `src`, `body`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

pub(crate) struct Failure(pub(crate) StatusCode, pub(crate) ApiError);

impl Failure {
    fn new(status: StatusCode, field: &str, error: impl Into<String>) -> Failure {
        Failure(status, ApiError { error: error.into(), field: Some(field.to_string()) })
    }
    fn bad(field: &str, error: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, field, error)
    }
    fn busy(state: &AppState, b: Busy) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "server", b.message(state.expensive_slots()))
    }
}

impl From<Cancelled> for Failure {
    fn from(_: Cancelled) -> Failure {
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "server", "cancelled: the client closed the connection")
    }
}

/// A 503 tells when to retry (every slot taken; a live cluster not listed yet).
pub(crate) fn with_retry_after(status: StatusCode, mut res: Response) -> Response {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    res
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        with_retry_after(self.0, (self.0, Json(self.1)).into_response())
    }
}

fn body_failure(r: BytesRejection) -> Failure {
    let status = r.status();
    let msg =
        if status == StatusCode::PAYLOAD_TOO_LARGE { "request body too large".to_string() } else { r.body_text() };
    Failure::new(status, "body", msg)
}

type Params = Vec<(String, String)>;

fn parse_params(q: Option<&str>) -> Result<Params, Failure> {
    let q = q.unwrap_or("");
    axum::extract::Query::<Params>::try_from_uri(
        &format!("/?{q}").parse().map_err(|_| Failure::bad("query", "invalid query string"))?,
    )
    .map(|p| p.0)
    .map_err(|e| Failure::bad("query", format!("invalid query string: {e}")))
}

fn param<'a>(p: &'a Params, name: &str) -> Option<&'a str> {
    p.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(p: &'a Params, name: &str) -> Result<&'a str, Failure> {
    match param(p, name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Failure::bad(name, format!("missing query parameter `{name}`"))),
    }
}

fn flag(p: &Params, name: &str) -> Result<bool, Failure> {
    match param(p, name) {
        None | Some("false" | "0") => Ok(false),
        Some("" | "true" | "1") => Ok(true),
        Some(v) => Err(Failure::bad(name, format!("invalid `{name}` value `{v}`: true or false"))),
    }
}

// ---- query ----

fn is_json_lines(headers: &HeaderMap, body: &[u8]) -> bool {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim().to_string();
    match mime.as_str() {
        "application/x-ndjson" | "application/jsonl" | "application/jsonlines" | "application/x-jsonlines" => true,
        m if m.starts_with("text/") => true,
        "application/json" => false,
        // No or another content type: sniff.
        _ => body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'['),
    }
}

/// Answers flows, one JSON object per line (the `netpol query` contract), from one model. With a [`Job`] (an
/// expensive request), stops at the next line once the client is gone.
fn answer_lines(model: &Model, lines: &[u8], explain: bool, ns: &str, job: Option<&Job>) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(lines.len() * 2);
    let (engine, staged) = (&model.engine, model.staged.as_ref());
    let r = match job {
        Some(job) => {
            let mut input = CancellableReader { rest: lines, job };
            netpol_input::query::run_with_staged(engine, staged, &mut input, &mut out, explain, ns)
        }
        None => netpol_input::query::run_with_staged(engine, staged, &mut { lines }, &mut out, explain, ns),
    };
    if let Some(job) = job {
        job.check()?;
    }
    r.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string()))?;
    Ok(out)
}

/// A flow to answer (the `netpol query` contract); other members are echoed unchanged.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Flow {
    /// `namespace/pod`, `pod` (in `namespace`) or an IP address.
    pub src: String,
    pub dst: String,
    /// TCP (default), UDP or SCTP.
    pub protocol: Option<String>,
    pub port: u16,
    /// The DNS name `dst` was resolved from (what `domainNames` and Cilium's `toFQDNs` peers match).
    pub dst_fqdn: Option<String>,
    /// One HTTP request on the connection (TCP): Cilium's HTTP rules judge it.
    pub http: Option<HttpFlow>,
    /// One DNS query on the connection: Cilium's DNS rules judge it.
    pub dns: Option<DnsFlow>,
}

/// A flow's HTTP request (method `GET` and path `/` by default).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct HttpFlow {
    pub method: Option<String>,
    pub path: Option<String>,
    pub host: Option<String>,
    /// Header name → value.
    pub headers: Option<std::collections::BTreeMap<String, String>>,
}

/// A flow's DNS query.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct DnsFlow {
    pub query: String,
}

/// A flow echoed with its answer: `verdict` (and `explain` with `?explain=true`), or `error`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct FlowAnswer {
    pub src: Option<String>,
    pub dst: Option<String>,
    pub protocol: Option<String>,
    pub port: Option<u16>,
    pub dst_fqdn: Option<String>,
    /// `allow` or `deny`.
    pub verdict: Option<String>,
    /// The explanation object, as `GET /api/v1/explain` returns it.
    #[schema(value_type = Option<Explanation>)]
    pub explain: Option<serde_json::Value>,
    pub error: Option<String>,
    /// For a line that is not a JSON object: the line.
    pub input: Option<String>,
}

/// Answer flows.
///
/// The body is a JSON array of flows, or JSON Lines (`Content-Type: application/x-ndjson` or `text/*`). Each
/// flow comes back with `verdict` (or `error`), in order, as a JSON array, or as JSON Lines when the request was
/// JSON Lines. A flow that cannot be answered does not fail the request.
#[utoipa::path(post, path = "/api/v1/query",
    params(
        ("explain" = Option<bool>, Query, description = "add an `explain` object to every answer"),
        ("namespace" = Option<String>, Query, description = "namespace of pod names given without one (default `default`)"),
    ),
    request_body(description = "JSON array of flows, or JSON Lines (one flow object per line)",
        content((Vec<Flow> = "application/json"), (String = "application/x-ndjson"))),
    responses(
        (status = 200, description = "one answer per flow, in order",
            content((Vec<FlowAnswer> = "application/json"), (String = "application/x-ndjson"))),
        (status = 400, description = "the body is not a JSON array of flows", body = ApiError),
        (status = 413, description = "body larger than the limit", body = ApiError),
    ))]
async fn query_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let params = parse_params(uri_query.0.as_deref())?;
    let explain = flag(&params, "explain")?;
    let ns = param(&params, "namespace").filter(|s| !s.is_empty()).unwrap_or("default").to_string();
    let body = body.map_err(body_failure)?;
    let lines_mode = is_json_lines(&headers, &body);
    // Explanations are the expensive part: bounded, and stopped when the client leaves.
    let (job, _cancel) = match explain {
        true => state.begin_expensive().map(|(j, c)| (Some(j), Some(c))).map_err(|b| Failure::busy(&state, b))?,
        false => (None, None),
    };
    let task = tokio::task::spawn_blocking(move || -> Result<Response, Failure> {
        let job = job.as_ref();
        if lines_mode {
            let out = answer_lines(&model, &body, explain, &ns, job)?;
            return Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], out).into_response());
        }
        let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&body)
            .map_err(|e| Failure::bad("body", format!("expected a JSON array of flows: {e}")))?;
        let mut lines = Vec::with_capacity(body.len());
        for it in &items {
            // A JSON value holds newlines only as whitespace between tokens: one line per flow.
            lines.extend(it.get().bytes().map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }));
            lines.push(b'\n');
        }
        let out = answer_lines(&model, &lines, explain, &ns, job)?;
        let mut arr = Vec::with_capacity(out.len() + 2);
        arr.push(b'[');
        for (i, l) in out.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
            if i > 0 {
                arr.push(b',');
            }
            arr.extend_from_slice(l);
        }
        arr.push(b']');
        Ok(([(header::CONTENT_TYPE, "application/json")], arr).into_response())
    });
    task.await.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string()))?
}

// ---- explain ----

/// The verdict of a flow.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
pub enum Verdict {
    Allow,
    Deny,
}

/// What decided one direction of a flow.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DecidedBy {
    /// No policy of any tier applies to the subject: allowed.
    NotGoverned,
    /// A rule of an admin tier (Admin or Baseline): the last entry of `walk`.
    Rule,
    /// NetworkPolicy: a rule allows it (`allowed_by`), or the pod is isolated and none does (`rejections`).
    NetworkPolicy,
    /// A tier whose `defaultAction` is Deny (Calico's `default` tier, a Calico Tier's default): one of its policies
    /// selects the subject and none of its rules decided; `tier_default` names the tier.
    TierDefault,
    /// Policies apply, but no tier decided: allowed by default.
    Default,
    /// A Calico host endpoint's normal policies decided nothing: its profiles decide (none: denied).
    Profile,
    /// Cilium: the traffic comes from the pod's own node, let in whatever the policies say (`note` names it).
    OwnNode,
}

/// A rule that matches the flow and takes part in the decision: a rule of a tier that passes the flow to the next
/// tier or decides it, or a Kubernetes NetworkPolicy rule that allows it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct RuleMatch {
    /// The tier's name: `Admin`, `NetworkPolicy` or `Baseline`; with Calico objects `kube-admin`, `default`,
    /// `kube-baseline` or a Calico Tier's name.
    pub tier: String,
    /// `namespace/name`, `cnp/name`, `anp/name`, `banp/name`, `gnp/name` or `caliconetworkpolicy/namespace/name`.
    pub policy: String,
    /// The policy's priority (cluster-scoped admin policies), or its `order` (Calico policies; `null`: none).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, nullable)]
    pub priority: Option<netpol_core::model::Order>,
    /// Index of the rule in the policy's rules of this direction.
    pub rule: usize,
    /// The rule's `name` (admin kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: RuleAction,
    /// Index of the matching peer (`null`: the rule has no peers and matches every peer).
    pub peer: Option<usize>,
    /// The matching `ports` entry (`null`: the rule has no ports and matches every port).
    pub port: Option<String>,
    /// The rule's field path in its object (`spec.ingress[0]`).
    pub field: String,
    /// The object's file and document.
    pub source: String,
    /// The other policies of the same tier and priority that select the subject (admin tiers: their order is
    /// undefined upstream).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tie: Vec<String>,
    /// A `Pass` rule of one of Antrea's tiers: the later tiers the flow skips, on to the NetworkPolicy tier
    /// (absent when a pass goes on to the next tier).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped_tiers: Vec<String>,
}

/// A rule that could have allowed the flow but does not match it, and why.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Rejection {
    pub policy: String,
    /// `null` when the policy has no rules for this direction.
    pub rule: Option<usize>,
    pub reason: String,
}

/// One direction of a flow: egress at the source, ingress at the destination.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct SideExplanation {
    /// `ingress` or `egress`.
    pub direction: String,
    /// The pod (or address) whose policies are checked.
    pub subject: String,
    pub allowed: bool,
    /// Whether a NetworkPolicy selects the subject for this direction.
    pub isolated: bool,
    /// Why no policy applies (an address outside the cluster, a hostNetwork pod, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The policies of every tier that select the subject for this direction, in evaluation order.
    pub policies: Vec<String>,
    /// The rules that decided, tier by tier in evaluation order: rules that pass the flow on to the next tier or
    /// decide it (admin and Calico policies), the Kubernetes NetworkPolicy rules that allow it.
    pub walk: Vec<RuleMatch>,
    pub decided_by: DecidedBy,
    /// The tier whose default action denied the flow (`decided_by: tier_default`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier_default: Option<String>,
    /// The allowing rules of `walk`.
    pub allowed_by: Vec<RuleMatch>,
    /// Why each rule that could have allowed the flow does not (only when denied).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejections: Vec<Rejection>,
    /// Rules of these policies that netpol does not model, and what it does with them (Antrea's `toServices`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub not_modelled: Vec<String>,
}

/// The explanation of one flow (`netpol explain -o json`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct Explanation {
    pub src: String,
    pub dst: String,
    /// The DNS name the destination was resolved from, when the flow gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dst_fqdn: Option<String>,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    pub port: u16,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub egress: SideExplanation,
    pub ingress: SideExplanation,
    /// The Calico host endpoints the flow crosses, in packet order (absent when it crosses none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostExplanation>,
    /// What the host endpoint answer assumes where netpol cannot know (routes, encapsulation, Service DNAT).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_note: Option<String>,
    /// When the cluster has Calico staged policies: the verdict they would give (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staged: Option<StagedExplanation>,
    /// The CNI whose reading the answer follows.
    pub cni: CniInfo,
    /// When another CNI would give the flow another verdict: each CNI's, and why (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cni_dependence: Option<CniDependenceInfo>,
}

/// The CNI the answers follow (`--cni`, or found by auto-detection), as every answer that depends on it says it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CniInfo {
    /// `generic`, `cilium` or `calico`.
    pub name: String,
    /// Why auto-detection chose it (`Cilium policies present`, `DaemonSet kube-system/cilium (k8s-app=cilium)`);
    /// `null` when `--cni` named it.
    pub auto: Option<String>,
}

impl CniInfo {
    /// The engine's CNI (the `cni` member of the CLI's JSON outputs, `netpol_input::cni_json`).
    pub fn of(e: &Engine) -> CniInfo {
        let auto = match e.cni_source() {
            netpol_core::cni::CniSource::Auto(why) => Some(why),
            netpol_core::cni::CniSource::Given => None,
        };
        CniInfo { name: e.cni().as_str().to_string(), auto }
    }
}

/// How a flow's verdict depends on the CNI.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct CniDependenceInfo {
    /// `[cni, allowed]` (a name and a boolean) for generic, cilium and calico.
    pub verdicts: Vec<Vec<serde_json::Value>>,
    pub reason: String,
}

/// Where on a Calico host endpoint a check happens.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum HostPath {
    /// Into the host's own processes: failsafe ports, untracked, pre-DNAT, then normal ingress policies.
    ToHost,
    /// Out of the host's own processes: failsafe ports, untracked, then normal egress policies.
    FromHost,
    /// Forwarded in through the host to a pod on it: untracked (Deny), pre-DNAT, then forward ingress policies.
    ForwardedIn,
    /// Forwarded out through the host from a pod on it: forward egress policies.
    ForwardedOut,
}

/// One check of a flow at a Calico host endpoint.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct HostExplanation {
    pub host_endpoint: String,
    pub node: String,
    pub path: HostPath,
    /// `ingress` or `egress`.
    pub direction: String,
    /// Whether this check lets the flow through.
    pub allowed: bool,
    /// When the flow's port is one of Felix's default failsafe ports for this direction: what that does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failsafe: Option<String>,
    /// Each stage of the path (untracked, pre-DNAT, normal or forward policies) as a side of its own; a stage
    /// skipped (failsafe port, an earlier stage's Allow) says so in its `note`.
    pub stages: Vec<SideExplanation>,
    /// The HostEndpoint object's file and document (a Cilium host: the Node's).
    pub source: String,
    /// A Cilium host: a Node that Cilium's host policies (`nodeSelector`) select; absent for Calico's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cilium: bool,
}

/// The flow as the staged view decides it: the cluster as if its Calico staged policies were enforced.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct StagedExplanation {
    pub verdict: Verdict,
    /// Whether the staged verdict differs from the enforced one.
    pub changed: bool,
    /// The staged policies that bear on the flow (their policy selects the source for egress or the destination
    /// for ingress, in either view).
    pub policies: Vec<StagedPolicyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub egress: SideExplanation,
    pub ingress: SideExplanation,
}

/// A staged policy, as explanations name it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct StagedPolicyRef {
    /// `StagedNetworkPolicy`, `StagedGlobalNetworkPolicy` or `StagedKubernetesNetworkPolicy`.
    pub kind: String,
    /// `namespace/name`, or `name` for a StagedGlobalNetworkPolicy.
    pub name: String,
    /// `Set`, `Delete`, `Learn` or `Ignore`.
    pub action: String,
    /// The enforced policy it sets or deletes, as explanations name policies.
    pub policy: String,
    /// The staged object's file and document.
    pub source: String,
}

/// Explain one flow: per direction, the policies of every tier that apply, the rules that decided tier by tier
/// (`walk`: Admin, NetworkPolicy, Baseline; with Calico objects Calico's tiers), the tier whose default action
/// decided (`tier_default`), and which rule allows it, or why none does.
///
/// Returns the same object as `netpol explain -o json`.
#[utoipa::path(get, path = "/api/v1/explain",
    params(
        ("src" = String, Query, description = "source: `namespace/pod`, `pod` (in `namespace`) or an IP address"),
        ("dst" = String, Query, description = "destination: `namespace/pod`, `pod` or an IP address"),
        ("port" = String, Query, description = "`PORT` or `PORT/PROTOCOL`"),
        ("protocol" = Option<String>, Query, description = "TCP (default), UDP or SCTP"),
        ("namespace" = Option<String>, Query, description = "namespace of pod names given without one (default `default`)"),
        ("dst_fqdn" = Option<String>, Query, description = "the DNS name `dst` was resolved from (what `domainNames` peers match)"),
    ),
    responses(
        (status = 200, description = "the explanation", body = Explanation),
        (status = 400, description = "missing or invalid parameter", body = ApiError),
        (status = 404, description = "unknown pod", body = ApiError),
    ))]
async fn explain_handler(
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
) -> Result<Response, Failure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let src = required(&p, "src")?;
    let dst = required(&p, "dst")?;
    let port_s = required(&p, "port")?;
    let (port, mut proto) = parse_port_proto(port_s).map_err(|e| Failure::bad("port", e))?;
    if let Some(pr) = param(&p, "protocol").filter(|s| !s.is_empty()) {
        let explicit = Protocol::parse_loose(pr).ok_or_else(|| {
            Failure::bad("protocol", format!("unknown protocol `{pr}` (TCP, UDP, SCTP, ICMP or ICMPv6)"))
        })?;
        if !explicit.has_ports() && explicit != proto {
            return Err(Failure::bad("port", format!("{explicit} has no port: give `port=icmp:TYPE:CODE`")));
        }
        if port_s.contains('/') && explicit != proto {
            return Err(Failure::bad("protocol", format!("`protocol={pr}` contradicts `port={port_s}`")));
        }
        proto = explicit;
    }
    let ns = param(&p, "namespace").filter(|s| !s.is_empty()).unwrap_or("default");
    let r = Resolver::new(&model.engine, ns);
    let s = r.endpoint(src).map_err(|e| Failure::new(StatusCode::NOT_FOUND, "src", e))?;
    let d = r.endpoint(dst).map_err(|e| Failure::new(StatusCode::NOT_FOUND, "dst", e))?;
    let name = param(&p, "dst_fqdn")
        .filter(|s| !s.is_empty())
        .map(netpol_input::query::parse_fqdn)
        .transpose()
        .map_err(|e| Failure::bad("dst_fqdn", e))?;
    // `http=METHOD PATH` (or `PATH`), `http_host`, `dns=NAME`: one request on the connection.
    let request = match (param(&p, "http").filter(|s| !s.is_empty()), param(&p, "dns").filter(|s| !s.is_empty())) {
        (Some(_), Some(_)) => return Err(Failure::bad("dns", "give `http` or `dns`, not both")),
        (Some(h), None) => {
            let (method, path) = netpol_input::query::http_request_line(h);
            let host = param(&p, "http_host").filter(|s| !s.is_empty());
            let req = netpol_input::query::http_request(method, path, host, &Default::default())
                .map_err(|e| Failure::bad("http", e))?;
            Some(netpol_core::l7::Request::Http(req))
        }
        (None, Some(d)) => Some(netpol_core::l7::Request::Dns(
            netpol_input::query::parse_dns_query(d).map_err(|e| Failure::bad("dns", e))?,
        )),
        (None, None) => None,
    };
    let info = netpol_core::compile::FlowInfo { dst_name: name.as_deref(), request: request.as_ref() };
    let ex = match &model.staged {
        Some(staged) => netpol_core::staged::explain_flow_with_staged(&model.engine, staged, &s, &d, info, proto, port),
        None => model.engine.explain_flow(&s, &d, info, proto, port),
    };
    // The CNI, and whether another would answer otherwise (their engines compiled for this question only), as
    // `netpol explain -o json` says them.
    let dep = netpol_core::cni::ByCni::new(&model.engine).dependence(&s, &d, info, proto, port);
    let internal = |e: serde_json::Error| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "", e.to_string());
    let mut v = serde_json::to_value(&ex).map_err(internal)?;
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("cni".into(), netpol_input::cni_json(&model.engine));
        if let Some(dep) = &dep {
            m.insert("cni_dependence".into(), serde_json::to_value(dep).map_err(internal)?);
        }
    }
    Ok(Json(v).into_response())
}

// ---- matrix ----

#[derive(Serialize, ToSchema)]
pub struct MatrixPort {
    pub port: u16,
    #[schema(value_type = String)]
    pub protocol: Protocol,
    /// `rows[i][j]`: may `pods[i]` connect to `pods[j]` on this port.
    pub rows: Vec<Vec<bool>>,
}

#[derive(Serialize, ToSchema)]
pub struct MatrixResponse {
    /// The CNI whose reading the answers follow.
    pub cni: CniInfo,
    /// `namespace/pod`, sorted.
    pub pods: Vec<String>,
    pub ports: Vec<MatrixPort>,
}

fn matrix_of(model: &Model, ports: &[(u16, Protocol)], ns: Option<&str>) -> Result<MatrixResponse, Failure> {
    let e = &model.engine;
    if let Some(n) = ns {
        if e.cluster().namespace_id(n).is_none() {
            return Err(Failure::new(StatusCode::NOT_FOUND, "namespace", format!("unknown namespace `{n}`")));
        }
    }
    let pods: Vec<PodId> = e
        .sorted_pods()
        .into_iter()
        .filter(|&p| ns.is_none_or(|n| e.cluster().ns_name(e.cluster().pod(p).ns) == n))
        .collect();
    if pods.len() > MAX_MATRIX_PODS {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "namespace",
            format!(
                "the matrix would cover {} pods, more than the API's limit of {MAX_MATRIX_PODS}: give a `namespace`, \
                 or use `netpol matrix -o summary`",
                pods.len()
            ),
        ));
    }
    let m = e.matrix(ns).map_err(|err| Failure::new(StatusCode::NOT_FOUND, "namespace", err))?;
    if !m.is_stored() {
        return Err(Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "namespace",
            "the matrix is too large for per-pod output; use `netpol matrix -o summary`",
        ));
    }
    let names = pods.iter().map(|&p| e.cluster().pod_ref(p)).collect();
    let cells: Vec<Vec<&netpol_core::portset::PortSet>> = pods
        .iter()
        .map(|&a| {
            pods.iter().map(|&b| m.port_sets.get(m.pod_cell(e, a, b).unwrap_or(netpol_core::matrix::EMPTY))).collect()
        })
        .collect();
    let ports = ports
        .iter()
        .map(|&(port, protocol)| MatrixPort {
            port,
            protocol,
            rows: cells.iter().map(|row| row.iter().map(|s| s.contains(protocol, port)).collect()).collect(),
        })
        .collect();
    Ok(MatrixResponse { cni: CniInfo::of(e), pods: names, ports })
}

/// Pod-to-pod connectivity on given ports (like `netpol matrix -o json --port ...`).
#[utoipa::path(get, path = "/api/v1/matrix",
    params(
        ("port" = Vec<String>, Query, description = "`PORT` or `PORT/PROTOCOL`, repeatable (at most 64)"),
        ("namespace" = Option<String>, Query, description = "only the pods of this namespace"),
    ),
    responses(
        (status = 200, description = "the matrix", body = MatrixResponse),
        (status = 400, description = "missing or invalid port", body = ApiError),
        (status = 404, description = "unknown namespace", body = ApiError),
        (status = 422, description = "too many pods", body = ApiError),
    ))]
async fn matrix_handler(
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
) -> Result<Json<MatrixResponse>, Failure> {
    let p = parse_params(uri_query.0.as_deref())?;
    let ports = p
        .iter()
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| parse_port_proto(v).map_err(|e| Failure::bad("port", e)))
        .collect::<Result<Vec<_>, _>>()?;
    if ports.is_empty() {
        return Err(Failure::bad("port", "missing query parameter `port` (PORT or PORT/PROTOCOL, repeatable)"));
    }
    if ports.len() > 64 {
        return Err(Failure::bad("port", "at most 64 `port` values"));
    }
    let ns = param(&p, "namespace").filter(|s| !s.is_empty()).map(str::to_string);
    let task = tokio::task::spawn_blocking(move || matrix_of(&model, &ports, ns.as_deref()));
    let r = task.await.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "port", e.to_string()))?;
    r.map(Json)
}

// ---- what-if ----

/// A what-if request: policies of any tier (and Calico Tiers and network sets) to add or replace, and policies to
/// delete.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WhatIf {
    /// Objects as in manifests: NetworkPolicy (`networking.k8s.io/v1`), ClusterNetworkPolicy
    /// (`policy.networking.k8s.io/v1alpha2`), AdminNetworkPolicy and BaselineAdminNetworkPolicy
    /// (`policy.networking.k8s.io/v1alpha1`); Calico's NetworkPolicy, GlobalNetworkPolicy, Tier, NetworkSet and
    /// GlobalNetworkSet (`projectcalico.org/v3`, or `crd.projectcalico.org/v1`); Cilium's CiliumNetworkPolicy and
    /// CiliumClusterwideNetworkPolicy (`cilium.io/v2`); Antrea's Tier, ClusterGroup, Group, ClusterNetworkPolicy and
    /// NetworkPolicy (`crd.antrea.io/v1beta1`: admitted and lowered with the loaded Antrea objects). One with the
    /// kind and name (and, for a namespaced kind, the namespace) of a loaded object replaces it.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub apply: Vec<serde_json::Value>,
    /// Loaded policies to delete, as the other answers name them: `namespace/name` for a NetworkPolicy, `cnp/name`,
    /// `anp/name` or `banp/name` for a cluster-scoped admin policy, `gnp/name` for a Calico GlobalNetworkPolicy,
    /// `caliconetworkpolicy/namespace/name` for a Calico NetworkPolicy, `acnp/name` and `annp/namespace/name` for
    /// Antrea's policies (the whole object).
    #[serde(default)]
    pub delete: Vec<String>,
}

pub use netpol_input::overlay::{applicable, applied_reference, policy_reference, Applicable, APPLICABLE_KINDS_TEXT};

/// The cluster with the request's changes ([`netpol_input::overlay::apply`]), or a 4xx naming the field at fault.
pub(crate) fn what_if_cluster(
    base: &netpol_core::model::Cluster,
    req: WhatIf,
) -> Result<netpol_core::model::Cluster, Failure> {
    use netpol_input::overlay::OverlayErrorKind;
    netpol_input::overlay::apply(base, req.apply, &req.delete).map_err(|e| {
        let status = match e.kind {
            OverlayErrorKind::Malformed => StatusCode::BAD_REQUEST,
            OverlayErrorKind::NotFound => StatusCode::NOT_FOUND,
            OverlayErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        };
        Failure::new(status, &e.field, e.message)
    })
}

/// The connectivity delta the given policy changes would cause (as `netpol diff -o json`), without applying them.
///
/// Body: YAML or JSON `{apply: [object...], delete: ["ns/name" | "cnp/name" | "gnp/name" | ...]}`: policies of every
/// tier (NetworkPolicy, ClusterNetworkPolicy, AdminNetworkPolicy, BaselineAdminNetworkPolicy; Calico's
/// NetworkPolicy and GlobalNetworkPolicy; Cilium's CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy) and
/// Calico's Tiers and network sets, each replacing a loaded one of the same kind and name (all the policies of a
/// Cilium object together). `?namespace=` limits the delta. Each group's `cause_detail` holds the explanations of a
/// representative flow before and after, with their walks tier by tier.
#[utoipa::path(post, path = "/api/v1/whatif",
    request_body(content = WhatIf, description = "policies to add/replace and to delete (YAML or JSON)"),
    responses(
        (status = 200, description = "the delta: groups of newly allowed / denied flows with causes", body = Object),
        (status = 400, description = "bad body, a kind that cannot be applied, a malformed reference to delete", body = ApiError),
        (status = 404, description = "a policy to delete does not exist", body = ApiError),
        (status = 422, description = "an applied policy is invalid (`field`: `apply[i].` and the field path inside it)", body = ApiError),
    ))]
async fn whatif_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let params = parse_params(uri_query.0.as_deref())?;
    let ns = param(&params, "namespace").filter(|s| !s.is_empty()).map(str::to_string);
    let body = body.map_err(body_failure)?;
    if let Some(n) = &ns {
        if model.engine.cluster().namespace_id(n).is_none() {
            return Err(Failure::new(StatusCode::NOT_FOUND, "namespace", format!("unknown namespace `{n}`")));
        }
    }
    let (job, _cancel) = state.begin_expensive().map_err(|b| Failure::busy(&state, b))?;
    let task = tokio::task::spawn_blocking(move || -> Result<Response, Failure> {
        let req = parse_what_if(&body)?;
        job.check()?;
        let cluster = what_if_cluster(model.engine.cluster(), req)?;
        job.check()?;
        let new = Engine::with_cni(cluster, model.engine.cni_choice());
        job.check()?;
        let d = netpol_core::diff::diff(&model.engine, &new, &netpol_core::diff::DiffOptions { namespace: ns });
        job.check()?;
        // As `netpol diff -o json`: the CNI of the changed cluster, and the loaded one's when auto now finds another.
        let internal = |e: serde_json::Error| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string());
        let mut v = serde_json::to_value(&d).map_err(internal)?;
        if let serde_json::Value::Object(m) = &mut v {
            m.insert("cni".into(), netpol_input::cni_json(&new));
            if (model.engine.cni(), model.engine.cni_source()) != (new.cni(), new.cni_source()) {
                m.insert("cni_old".into(), netpol_input::cni_json(&model.engine));
            }
        }
        Ok(Json(v).into_response())
    });
    task.await.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string()))?
}

/// The what-if request: JSON (serde_json), else YAML read as manifests are (linear time, nesting limited to 128).
fn parse_what_if(body: &[u8]) -> Result<WhatIf, Failure> {
    let text = std::str::from_utf8(body).map_err(|_| Failure::bad("body", "body is not UTF-8"))?;
    let invalid = |e: &dyn std::fmt::Display| Failure::bad("body", format!("invalid what-if request: {e}"));
    if looks_like_json(text) {
        match serde_json::from_str::<WhatIf>(text) {
            Ok(req) => return Ok(req),
            Err(e) if e.is_data() => return Err(invalid(&e)),
            // Not JSON after all: YAML flow style (`{apply: [...]}`) is read below.
            Err(_) => {}
        }
    }
    let mut docs =
        netpol_core::load::yaml_documents(text).into_iter().filter(|d| !matches!(d, Ok(serde_json::Value::Null)));
    let doc = match docs.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(invalid(&format!("invalid YAML: {}", e.message))),
        None => serde_json::Value::Null,
    };
    if docs.next().is_some() {
        return Err(invalid(&"a what-if request is one document"));
    }
    serde_json::from_value(doc).map_err(|e| invalid(&e))
}

/// Whether a body may be JSON (an object or array): tried with serde_json before YAML.
pub fn looks_like_json(text: &str) -> bool {
    matches!(text.trim_start_matches('\u{feff}').trim_start().as_bytes().first(), Some(b'{' | b'['))
}

// ---- flow logs ----

/// A gzip flow log may decompress to at most this many times `serve --body-limit` (413 beyond).
pub const FLOW_LOG_EXPANSION: usize = 32;

/// A flow log read from a request body and folded into connection classes, as `netpol flows replay` reads its
/// files.
pub(crate) struct FlowLog {
    pub(crate) folded: Vec<netpol_input::flowlog::Folded>,
    /// The lines that could not be read, each with its reason (reading went on).
    pub(crate) errors: Vec<netpol_input::flowlog::LineError>,
    /// Lines read, and lines that carry no flow (skipped by their format's rules).
    pub(crate) lines: u64,
    pub(crate) skipped: u64,
}

/// `?format=`: the flow-log format every line is read in (default: detected line by line).
pub(crate) fn flow_format_param(p: &Params) -> Result<Option<netpol_input::flowlog::FlowFormat>, Failure> {
    match param(p, "format").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(f) => netpol_input::flowlog::FlowFormat::parse(f).map(Some).map_err(|e| Failure::bad("format", e)),
    }
}

/// Refuses a `Content-Encoding` other than `gzip` or `identity` (415): a gzip body is known by its magic bytes.
pub(crate) fn check_content_encoding(headers: &HeaderMap) -> Result<(), Failure> {
    for v in headers.get_all(header::CONTENT_ENCODING) {
        let v = v.to_str().unwrap_or("?");
        for enc in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            if !enc.eq_ignore_ascii_case("gzip") && !enc.eq_ignore_ascii_case("identity") {
                return Err(Failure::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "content-encoding",
                    format!("unsupported Content-Encoding `{enc}`: send the flow log as is, or gzip-compressed"),
                ));
            }
        }
    }
    Ok(())
}

/// Reads a flow log from `bytes` (named `name` in line errors): a gzip stream is decompressed (at most `max`
/// bytes, 413 beyond), each line's format is detected unless `forced`, and a line that cannot be read (not UTF-8,
/// not a flow of any format) is an error of its own while reading goes on. Stops (503) once the client is gone.
pub(crate) fn read_flow_log(
    bytes: &[u8],
    name: &str,
    forced: Option<netpol_input::flowlog::FlowFormat>,
    max: usize,
    job: &Job,
) -> Result<FlowLog, Failure> {
    use netpol_input::flowlog::{decompressed, Folder, Reader};
    let input = CancellableReader { rest: bytes, job };
    let decoded = match decompressed(Box::new(input)) {
        Ok(d) => d,
        Err(e) => {
            job.check()?;
            return Err(Failure::bad("body", format!("cannot read the flow log: {e}")));
        }
    };
    let mut limited = std::io::Read::take(decoded, (max as u64).saturating_add(1));
    let mut folder = Folder::new();
    let mut log = FlowLog { folded: Vec::new(), errors: Vec::new(), lines: 0, skipped: 0 };
    let mut reader = Reader::new(name, &mut limited, forced);
    let mut n: u64 = 0;
    while let Some(r) = reader.next() {
        match r {
            Ok(o) => folder.add(name, o),
            Err(e) => log.errors.push(e),
        }
        n += 1;
        if n.is_multiple_of(1024) {
            job.check()?;
        }
    }
    log.lines = reader.lines();
    log.skipped = reader.skipped();
    drop(reader);
    job.check()?;
    if limited.limit() == 0 {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            format!(
                "the decompressed flow log is larger than {max} bytes ({FLOW_LOG_EXPANSION} times `serve --body-limit`)"
            ),
        ));
    }
    log.folded = folder.finish();
    Ok(log)
}

/// A gzip body (known by its magic bytes) decompressed, at most `max` bytes (413 beyond); `None` when it is not
/// gzip.
fn inflate(bytes: &[u8], max: usize, job: &Job) -> Result<Option<Vec<u8>>, Failure> {
    use std::io::Read;
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(None);
    }
    let input = CancellableReader { rest: bytes, job };
    let mut out = Vec::new();
    let read = netpol_input::flowlog::decompressed(Box::new(input))
        .and_then(|d| d.take((max as u64).saturating_add(1)).read_to_end(&mut out));
    job.check()?;
    read.map_err(|e| Failure::bad("body", format!("cannot decompress the body: {e}")))?;
    if out.len() > max {
        return Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body",
            format!(
                "the decompressed body is larger than {max} bytes ({FLOW_LOG_EXPANSION} times `serve --body-limit`)"
            ),
        ));
    }
    Ok(Some(out))
}

/// A JSON request body (gzip-compressed or not, [`inflate`]) of type `T`; 400 saying what to send (`shape`) when
/// it is not one.
pub(crate) fn json_request<T: serde::de::DeserializeOwned>(
    body: &[u8],
    max: usize,
    job: &Job,
    shape: &str,
) -> Result<T, Failure> {
    let inflated = inflate(body, max, job)?;
    serde_json::from_slice(inflated.as_deref().unwrap_or(body)).map_err(|e| {
        Failure::bad(
            "body",
            format!(
                "with `Content-Type: application/json` the body is {shape}: {e}; send a flow log itself as \
                 `application/x-ndjson` or `text/plain`"
            ),
        )
    })
}

/// `POST /api/v1/flows/replay` with `Content-Type: application/json`: the flow log as a string, and a proposed
/// change as `POST /api/v1/whatif` takes it.
#[derive(serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowReplayRequest {
    /// The flow log: one record per line, in any supported format (Hubble, Calico, kube-network-policies,
    /// Inspektor Gadget, netpol).
    pub flows: String,
    /// Policies to add or replace, as `apply` of `POST /api/v1/whatif`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    pub apply: Vec<serde_json::Value>,
    /// Loaded policies to delete, as `delete` of `POST /api/v1/whatif`.
    #[serde(default)]
    pub delete: Vec<String>,
}

/// Whether the request's `Content-Type` is `application/json`.
pub(crate) fn is_json_content(headers: &HeaderMap) -> bool {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    ct.split(';').next().unwrap_or("").trim().eq_ignore_ascii_case("application/json")
}

/// A line saying what a change is: the references of the applied objects and the deleted policies.
fn change_text(req: &WhatIf) -> String {
    let applied: Vec<String> = req
        .apply
        .iter()
        .enumerate()
        .map(|(i, o)| applied_reference(o).map_or_else(|| format!("apply[{i}]"), |(r, _)| r))
        .collect();
    let mut parts = Vec::new();
    if !applied.is_empty() {
        parts.push(format!("applied: {}", applied.join(", ")));
    }
    if !req.delete.is_empty() {
        parts.push(format!("deleted: {}", req.delete.join(", ")));
    }
    format!("the request's change ({})", parts.join("; "))
}

/// The replay's answer as `netpol flows replay -o json` writes it: the report with `cni`, `change`, `lines`,
/// `skipped_lines` and `errors`. Serialized straight to bytes (a report with many explained rows is large: no
/// intermediate JSON tree).
#[derive(Serialize)]
struct ReplayAnswer<'a> {
    #[serde(flatten)]
    report: &'a netpol_input::replay::Report,
    cni: serde_json::Value,
    change: Option<&'a str>,
    lines: u64,
    skipped_lines: u64,
    errors: &'a [netpol_input::flowlog::LineError],
}

/// Replay a flow log: its observed connections judged by the loaded policies and, with a proposed change, by the
/// changed ones, and compared with the verdicts the data plane logged (as `netpol flows replay -o json`).
///
/// The body is the flow log itself (one record per line, any supported format, detected line by line unless
/// `format` is given; gzip-compressed or not), with no change; or, with `Content-Type: application/json`, a
/// `FlowReplayRequest` (gzip-compressed or not): `{"flows": "<the log>", "apply": [...], "delete": [...]}`, the
/// change given as to `POST /api/v1/whatif` (without `apply` and `delete`: no change). Lines that cannot be read
/// are listed in `errors` and do not fail the request. The answer: `summary` (observed, judged, unresolved,
/// `newly_denied`, `newly_allowed`, the log's disagreements with the model, each as `{classes, connections}`),
/// `rows` (one per judged connection class, with explanations for the changed and disagreeing ones, or all with
/// `explain`), `unresolved`, `cni`, `change`, `lines`, `skipped_lines`, `errors`.
#[utoipa::path(post, path = "/api/v1/flows/replay",
    params(
        ("format" = Option<String>, Query, description = "read every line in this format: `hubble`, `calico`, `kube-network-policies`, `gadget` or `netpol` (default: detected line by line)"),
        ("explain" = Option<bool>, Query, description = "explanations for every row, not only the changed and disagreeing ones"),
    ),
    request_body(description = "the flow log (JSON Lines or text; gzip accepted), or with `Content-Type: application/json` the log and a proposed change",
        content((String = "application/x-ndjson"), (FlowReplayRequest = "application/json"))),
    responses(
        (status = 200, description = "the replay report, as `netpol flows replay -o json`", body = Object),
        (status = 400, description = "bad parameter, a JSON body that is not a `FlowReplayRequest`, a kind that cannot be applied, a malformed reference to delete", body = ApiError),
        (status = 404, description = "a policy to delete does not exist", body = ApiError),
        (status = 413, description = "body (or the decompressed log) larger than the limit", body = ApiError),
        (status = 415, description = "a `Content-Encoding` other than gzip", body = ApiError),
        (status = 422, description = "an applied policy is invalid (`field`: `apply[i].` and the field path inside it)", body = ApiError),
    ))]
async fn flows_replay_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
    uri_query: axum::extract::RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Failure> {
    let params = parse_params(uri_query.0.as_deref())?;
    let explain_all = flag(&params, "explain")?;
    let forced = flow_format_param(&params)?;
    let body = body.map_err(body_failure)?;
    check_content_encoding(&headers)?;
    let json = is_json_content(&headers);
    let max = state.body_limit.saturating_mul(FLOW_LOG_EXPANSION);
    let (job, _cancel) = state.begin_expensive().map_err(|b| Failure::busy(&state, b))?;
    let task = tokio::task::spawn_blocking(move || -> Result<Response, Failure> {
        let (name, req) = if json {
            let shape = "{\"flows\": \"<the flow log>\", \"apply\": [...], \"delete\": [...]}";
            ("flows", Some(json_request::<FlowReplayRequest>(&body, max, &job, shape)?))
        } else {
            ("body", None)
        };
        let (flows, change) = match req {
            Some(FlowReplayRequest { flows, apply, delete }) => (Some(flows), Some(WhatIf { apply, delete })),
            None => (None, None),
        };
        let text = flows.as_ref().map_or(&body[..], |f| f.as_bytes());
        let change = change.filter(|c| !c.apply.is_empty() || !c.delete.is_empty());
        let proposed = match change {
            Some(c) => {
                let what = change_text(&c);
                let cluster = what_if_cluster(model.engine.cluster(), c)?;
                job.check()?;
                let engine = Engine::with_cni(cluster, model.engine.cni_choice());
                job.check()?;
                Some((engine, what))
            }
            None => None,
        };
        let log = read_flow_log(text, name, forced, max, &job)?;
        let opts = netpol_input::replay::Options { explain_all, ..Default::default() };
        let rep = netpol_input::replay::replay(&model.engine, proposed.as_ref().map(|(e, _)| e), &log.folded, opts);
        job.check()?;
        let change = proposed.as_ref().map(|(_, what)| what.as_str());
        let answer = ReplayAnswer {
            report: &rep,
            cni: netpol_input::cni_json(&model.engine),
            change,
            lines: log.lines,
            skipped_lines: log.skipped,
            errors: &log.errors,
        };
        let bytes = serde_json::to_vec(&answer)
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string()))?;
        Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    });
    task.await.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "body", e.to_string()))?
}

// ---- lint ----

/// Lint findings of the loaded manifests (the settings of `serve --config`), as `netpol lint -o json` lists them.
#[utoipa::path(get, path = "/api/v1/lint",
    responses((status = 200, description = "the findings", body = Vec<Object>)))]
async fn lint_handler(
    State(state): State<AppState>,
    Extension(model): Extension<Arc<Model>>,
) -> Result<Response, Failure> {
    let config = state.lint_config.clone();
    let task = tokio::task::spawn_blocking(move || Json(model.findings(&config)).into_response());
    task.await.map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, "lint", e.to_string()))
}

// ---- diagnostics ----

/// Invalid objects left out of the model (and loader warnings), with their origin: file, document and List item,
/// or for a live cluster `cluster:KIND/NAMESPACE/NAME`.
#[utoipa::path(get, path = "/api/v1/diagnostics",
    responses((status = 200, description = "the diagnostics, as `{severity, origin, object, field, message}`",
        body = Vec<Object>)))]
async fn diagnostics_handler(Extension(model): Extension<Arc<Model>>) -> Response {
    Json(&model.diagnostics).into_response()
}

// ---- policies of every tier ----

/// A policy that applies to a pod, in its tier.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TierPolicy {
    /// How the answers name it: `namespace/name` for a NetworkPolicy; `cnp/name`, `anp/name` or `banp/name` for a
    /// cluster-scoped admin policy; `gnp/name` for a Calico GlobalNetworkPolicy, `caliconetworkpolicy/namespace/name`
    /// for a Calico NetworkPolicy.
    pub policy: String,
    /// `NetworkPolicy`, `ClusterNetworkPolicy`, `AdminNetworkPolicy`, `BaselineAdminNetworkPolicy`,
    /// `NetworkPolicy.projectcalico.org`, `GlobalNetworkPolicy`, `CiliumNetworkPolicy` or
    /// `CiliumClusterwideNetworkPolicy` (a Cilium policy is listed once per tier it has rules in: its deny rules
    /// in `CiliumDeny`, its allow rules in `NetworkPolicy` or `CiliumAllow`).
    pub kind: String,
    /// `spec.priority` of a ClusterNetworkPolicy or AdminNetworkPolicy (lower first); NetworkPolicies and the
    /// BaselineAdminNetworkPolicy have none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub priority: Option<netpol_core::model::Order>,
    /// `spec.order` of a Calico policy, lower first (`null`: none, after every ordered policy of its tier); in a
    /// cluster with Calico objects also a Kubernetes NetworkPolicy's (1000, where Calico puts them in its `default`
    /// tier). Absent for the other kinds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, nullable)]
    pub order: Option<netpol_core::model::Order>,
    /// Graph nodes: how many of the node's pods the policy applies to. `GET /api/v1/tiers`: how many pods it
    /// selects (in either direction).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pods: Option<usize>,
}

/// The policies of one tier that apply to a pod in one direction, in evaluation order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TierPolicies {
    /// The tier's name: `Admin`, `NetworkPolicy` or `Baseline`, evaluated in that order; in a cluster with Calico
    /// objects Calico's names, `kube-admin`, `default` and `kube-baseline`, with Calico's own Tiers between them by
    /// their order (see `GET /api/v1/tiers`).
    pub tier: String,
    pub policies: Vec<TierPolicy>,
}

/// `spec.priority`, for the kinds that have one.
pub(crate) fn priority_of(pol: &Policy) -> Option<netpol_core::model::Order> {
    matches!(pol.kind, PolicyKind::ClusterNetworkPolicy | PolicyKind::AdminNetworkPolicy).then_some(pol.order)
}

/// Whether a policy kind is one of Calico's (`projectcalico.org/v3`).
pub(crate) fn is_calico_kind(kind: PolicyKind) -> bool {
    matches!(kind, PolicyKind::CalicoNetworkPolicy | PolicyKind::GlobalNetworkPolicy)
}

/// `spec.order` as the answers give it: a Calico policy's (`null` when it has none); a Kubernetes NetworkPolicy's
/// in a cluster with Calico objects (1000, as Calico converts it); none for the other kinds.
pub(crate) fn order_of(c: &Cluster, pol: &Policy) -> Option<netpol_core::model::Order> {
    let np_in_calico = pol.kind == PolicyKind::NetworkPolicy && c.has_calico();
    (is_calico_kind(pol.kind) || np_in_calico).then_some(pol.order)
}

/// The name a model tier goes by in answers: the cluster's (Calico's names when the input has Calico objects, a
/// Tier's own name), as the engine's tiers and explanations name it.
pub(crate) fn tier_name(c: &Cluster, t: PolicyTier) -> &str {
    c.tiers.get(t.index()).map_or(t.as_str(), |d| d.name.as_str())
}

pub(crate) fn tier_policy(e: &Engine, id: PolicyId) -> TierPolicy {
    let c = e.cluster();
    let pol = c.policy(id);
    TierPolicy {
        policy: c.policy_ref(id),
        kind: pol.kind.as_str().to_string(),
        priority: priority_of(pol),
        order: order_of(c, pol),
        pods: None,
    }
}

/// The policies that apply to an identity's pods in `dir`, tier by tier ([`Engine::policies_by_tier`]).
pub(crate) fn tiers_of(e: &Engine, ident: netpol_core::compile::IdentityId, dir: Direction) -> Vec<TierPolicies> {
    e.policies_by_tier(ident, dir)
        .into_iter()
        .map(|(tier, pols)| TierPolicies {
            tier: tier.to_string(),
            policies: pols.into_iter().map(|p| tier_policy(e, p)).collect(),
        })
        .collect()
}

// ---- tiers ----

/// What a tier does with the traffic its policies leave undecided, for an endpoint one of them selects.
#[derive(Clone, Copy, Debug, Serialize, ToSchema)]
pub enum TierDefaultAction {
    /// Denied (NetworkPolicy isolation; Calico's `default` tier and a Tier's default).
    Deny,
    /// On to the next tier (the admin tiers; `kube-admin`, `kube-baseline`, a Tier with `defaultAction: Pass`).
    Pass,
}

/// A tier, with its policies in evaluation order.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TierInfo {
    /// The name the other answers use (`tier` of policies, pods, graph nodes and explanations).
    pub name: String,
    /// `spec.order`: lower first (`null`: none, after every ordered tier; equal orders go by name). The built-in
    /// tiers: 1,000 (`Admin`, `kube-admin`), 1,000,000 (`NetworkPolicy`, `default`), 10,000,000 (`Baseline`,
    /// `kube-baseline`).
    #[schema(value_type = Option<f64>, nullable)]
    pub order: netpol_core::model::Order,
    /// What happens, for an endpoint a policy of the tier selects, to the traffic no rule of the tier decides.
    #[serde(rename = "defaultAction")]
    pub default_action: TierDefaultAction,
    /// One of the three built-in tiers (Admin, NetworkPolicy, Baseline; Calico's `kube-admin`, `default`,
    /// `kube-baseline`).
    #[serde(rename = "builtIn")]
    pub built_in: bool,
    /// Where its Tier object was read (file and document); absent when no Tier object declares it (a built-in
    /// tier, or one that policies name without a Tier object: assumed with no order and default action Deny).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Its policies in evaluation order (by order or priority, then name, namespace and kind), each with how many
    /// pods it selects (`pods`).
    pub policies: Vec<TierPolicy>,
}

/// The tiers of the loaded model in evaluation order ([`Engine::tier_list`]), each with its model definition.
pub(crate) fn tier_infos(e: &Engine) -> Vec<TierInfo> {
    let c = e.cluster();
    let (_, map) = netpol_core::eval::tiers(&c.tiers);
    let mut selected: HashMap<PolicyId, usize> = HashMap::new();
    for ident in e.identities() {
        let mut pols: Vec<PolicyId> = ident.ingress_policies.iter().chain(&ident.egress_policies).copied().collect();
        pols.sort_unstable();
        pols.dedup();
        for p in pols {
            *selected.entry(p).or_default() += ident.pods.len();
        }
    }
    let all: Vec<PolicyId> = (0..c.policies.len()).map(PolicyId::new).collect();
    let ordered = e.evaluation_order(&all);
    e.tier_list()
        .iter()
        .enumerate()
        .map(|(t, tier)| {
            let t = netpol_core::eval::TierId::new(t);
            let def = map.iter().position(|&m| m == t).and_then(|i| c.tiers.get(i));
            let policies = ordered
                .iter()
                .filter(|&&p| e.policy_tier(p) == t)
                .map(|&p| TierPolicy { pods: Some(selected.get(&p).copied().unwrap_or(0)), ..tier_policy(e, p) })
                .collect();
            TierInfo {
                name: tier.name.to_string(),
                order: netpol_core::model::Order(def.and_then(|d| d.order)),
                default_action: match tier.end {
                    netpol_core::eval::TierEnd::Deny => TierDefaultAction::Deny,
                    netpol_core::eval::TierEnd::Continue => TierDefaultAction::Pass,
                },
                built_in: map.iter().take(3).any(|&m| m == t),
                source: def.and_then(|d| d.origin.as_ref()).map(|o| o.to_string()),
                policies,
            }
        })
        .collect()
}

/// The tiers in evaluation order, with their order, default action and policies.
///
/// Without Calico objects: `Admin`, `NetworkPolicy` and `Baseline`. With them, Calico's tiers: `kube-admin` (the
/// Admin tier), Calico's own Tiers by order, `default` (NetworkPolicies, Calico policies without a tier),
/// `kube-baseline`; equal orders by name, no order last. For each direction of a flow, a tier none of whose
/// policies selects the endpoint is skipped; in a tier the first matching rule decides (Allow, Deny) or leaves the
/// tier (Pass); what none decides gets the tier's `defaultAction`.
#[utoipa::path(get, path = "/api/v1/tiers",
    responses((status = 200, description = "the tiers in evaluation order", body = Vec<TierInfo>)))]
async fn tiers_handler(Extension(model): Extension<Arc<Model>>) -> Json<Vec<TierInfo>> {
    Json(tier_infos(&model.engine))
}

// ---- pods ----

#[derive(Serialize, ToSchema)]
pub struct Isolation {
    /// Whether a NetworkPolicy selects the pod for this direction: then what no rule allows is denied (admin
    /// tiers aside, see `tiers`).
    pub isolated: bool,
    /// The policies of every tier that apply to the pod in this direction, in evaluation order (`namespace/name`,
    /// `cnp/name`, `anp/name`, `banp/name`, `gnp/name`, `caliconetworkpolicy/namespace/name`).
    pub policies: Vec<String>,
    /// The same policies tier by tier, in evaluation order (Admin, NetworkPolicy, Baseline, or Calico's tiers; a
    /// tier with none is left out), each with its priority or order.
    pub tiers: Vec<TierPolicies>,
}

#[derive(Serialize, ToSchema)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub ips: Vec<String>,
    /// Container ports: `name:port/PROTOCOL` or `port/PROTOCOL`.
    pub ports: Vec<String>,
    #[serde(rename = "hostNetwork")]
    pub host_network: bool,
    pub ingress: Isolation,
    pub egress: Isolation,
}

/// Every pod with its labels, addresses, ports, and per direction its isolation and its policies tier by tier.
#[utoipa::path(get, path = "/api/v1/pods",
    responses((status = 200, description = "pods sorted by namespace and name", body = Vec<PodInfo>)))]
async fn pods_handler(Extension(model): Extension<Arc<Model>>) -> Json<Vec<PodInfo>> {
    let e = &model.engine;
    let pods = e
        .sorted_pods()
        .into_iter()
        .map(|id| {
            let p = e.cluster().pod(id);
            let ident = e.pod_identity(id);
            let side = |dir: Direction| Isolation {
                isolated: e.isolated(ident, dir),
                policies: e
                    .evaluation_order(e.identity(ident).policies(dir))
                    .into_iter()
                    .map(|x| e.cluster().policy_ref(x))
                    .collect(),
                tiers: tiers_of(e, ident, dir),
            };
            PodInfo {
                namespace: e.cluster().ns_name(p.ns).to_string(),
                name: p.name.clone(),
                labels: p.labels.to_map(),
                ips: p.ips.iter().map(|i| i.to_string()).collect(),
                ports: p.ports.iter().map(|c| c.to_string()).collect(),
                host_network: p.host_network,
                ingress: side(Direction::Ingress),
                egress: side(Direction::Egress),
            }
        })
        .collect();
    Json(pods)
}

// ---- policies ----

#[derive(Serialize, ToSchema)]
pub struct RuleCounts {
    pub ingress: usize,
    pub egress: usize,
}

/// What a rule does with the traffic it matches.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    /// Allowed (every NetworkPolicy rule; `Accept` of a ClusterNetworkPolicy, `Allow` of the v1alpha1 kinds and of
    /// Calico's).
    Allow,
    Deny,
    /// The rest of this tier is skipped: the next tier decides.
    Pass,
    /// Observed only: evaluation goes on.
    Log,
    /// Denied, and the sender answered (Antrea's `Reject`).
    Reject,
}

impl From<Action> for RuleAction {
    fn from(a: Action) -> RuleAction {
        match a {
            Action::Allow => RuleAction::Allow,
            Action::Deny => RuleAction::Deny,
            Action::Pass => RuleAction::Pass,
            Action::Log => RuleAction::Log,
            Action::Reject => RuleAction::Reject,
        }
    }
}

/// Which side of a Calico rule an entity rule is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntitySide {
    /// The other end of the traffic: `source` of an ingress rule, `destination` of an egress rule.
    Peer,
    /// The policy's own endpoint (`destination` of an ingress rule, `source` of an egress rule): its criteria limit
    /// which of the subject's addresses the rule applies to.
    Subject,
}

/// A Calico rule's `source` or `destination` (an entity rule), as netpol understood it.
#[derive(Serialize, ToSchema)]
pub struct CalicoEntity {
    pub side: EntitySide,
    /// The endpoint selector as Calico combines it (libcalico-go's update processors), in Calico's canonical text:
    /// `selector`, `namespaceSelector` (keys prefixed `pcns.`), `serviceAccounts` (`pcsa.` keys,
    /// `projectcalico.org/serviceaccount in {...}`) and, in a namespaced policy, its own namespace
    /// (`projectcalico.org/namespace == "ns"`). Absent: no endpoint criterion.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `notSelector`: endpoints it matches are excluded.
    #[serde(rename = "notSelector", skip_serializing_if = "Option::is_none")]
    pub not_selector: Option<String>,
    /// `nets`: the address is in one of them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub nets: Vec<String>,
    /// `notNets`: the address is in none of them.
    #[serde(rename = "notNets", skip_serializing_if = "Vec::is_empty")]
    pub not_nets: Vec<String>,
    /// `ports` of this side (`80/TCP`, `1000-2000/UDP`, `http (named port)`): the destination's are the ports the
    /// rule allows; a source's (source ports) match no flow in netpol's answers, which carry no source port.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// `notPorts` of this side.
    #[serde(rename = "notPorts", skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
}

/// A Calico rule's `icmp` or `notICMP`.
#[derive(Serialize, ToSchema)]
pub struct IcmpMatch {
    #[serde(rename = "type")]
    pub type_: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u8>,
}

/// One ingress or egress rule of a policy.
#[derive(Serialize, ToSchema)]
pub struct PolicyRule {
    /// Its index in `spec.ingress` or `spec.egress` (what explanations call `rule`).
    pub index: usize,
    /// The rule's `name` (admin kinds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub action: RuleAction,
    /// The action in the words of the policy's API: `Accept` (ClusterNetworkPolicy), `Allow`, `Deny`, `Pass`,
    /// `Log` (Calico).
    #[serde(rename = "apiAction")]
    pub api_action: String,
    /// The peers (`from` or `to`) in the API's words, such as `podSelector app=web`, `namespaces env=dev`,
    /// `networks 10.0.0.0/8`, a Calico entity rule's criteria (`selector (app == "db"), nets 10.0.0.0/8`); empty:
    /// every peer.
    pub peers: Vec<String>,
    /// The `ports` (or `protocols`) entries, such as `8080/TCP`, `1000-2000/UDP`, `http (named port)`; empty: every
    /// port. Calico rules: the destination's `ports`.
    pub ports: Vec<String>,
    /// Calico: `protocol`, by name (`TCP`, `UDP`, `ICMP`, `ICMPv6`, `SCTP`, `UDPLite`) or number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Calico: `notProtocol`.
    #[serde(rename = "notProtocol", skip_serializing_if = "Option::is_none")]
    pub not_protocol: Option<String>,
    /// Calico: `ipVersion` (4 or 6).
    #[serde(rename = "ipVersion", skip_serializing_if = "Option::is_none")]
    pub ip_version: Option<u8>,
    /// Calico: `icmp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp: Option<IcmpMatch>,
    /// Calico: `notICMP`.
    #[serde(rename = "notICMP", skip_serializing_if = "Option::is_none")]
    pub not_icmp: Option<IcmpMatch>,
    /// Calico: the destination's `notPorts`.
    #[serde(rename = "notPorts", skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// Calico: the rule's `source`, with its side (`peer` in an ingress rule, `subject` in an egress rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<CalicoEntity>,
    /// Calico: the rule's `destination` (`subject` in an ingress rule, `peer` in an egress rule).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<CalicoEntity>,
    /// Calico: why netpol cannot evaluate the rule (a `services` or `http` match): it matches no traffic in netpol's
    /// answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unsupported: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct PolicyInfo {
    /// How the other answers name the policy: `namespace/name` for a NetworkPolicy, `cnp/name`, `anp/name` or
    /// `banp/name` for a cluster-scoped admin policy, `gnp/name` for a Calico GlobalNetworkPolicy,
    /// `caliconetworkpolicy/namespace/name` for a Calico NetworkPolicy (what `delete` and `GET /api/v1/manifest`
    /// take).
    #[serde(rename = "ref")]
    pub reference: String,
    /// `NetworkPolicy`, `ClusterNetworkPolicy`, `AdminNetworkPolicy`, `BaselineAdminNetworkPolicy`,
    /// `NetworkPolicy.projectcalico.org`, `GlobalNetworkPolicy`, `CiliumNetworkPolicy` or
    /// `CiliumClusterwideNetworkPolicy` (a Cilium policy is listed once per tier it has rules in: its deny rules
    /// in `CiliumDeny`, its allow rules in `NetworkPolicy` or `CiliumAllow`).
    pub kind: String,
    /// The tier's name (`Admin`, `NetworkPolicy`, `Baseline`; with Calico objects `kube-admin`, `default`,
    /// `kube-baseline` and Calico's own Tiers: see `GET /api/v1/tiers`).
    pub tier: String,
    /// `spec.priority` of a ClusterNetworkPolicy or AdminNetworkPolicy (lower first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub priority: Option<netpol_core::model::Order>,
    /// `spec.order` of a Calico policy, lower first (`null`: none, after every ordered policy of its tier); with
    /// Calico objects, a Kubernetes NetworkPolicy's too (1000, as Calico converts it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, nullable)]
    pub order: Option<netpol_core::model::Order>,
    /// A namespaced policy's namespace; empty for a cluster-scoped policy.
    pub namespace: String,
    pub name: String,
    /// Cluster-scoped admin policies: the namespaces of the subject, as a selector in kubectl syntax (`{}`: every
    /// namespace).
    #[serde(rename = "namespaceSelector", skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// The pod selector (of the subject) in kubectl syntax (`app=web,tier in (a,b)`; `{}` selects every pod). Not
    /// for Calico policies (see `selector`).
    #[serde(rename = "podSelector", skip_serializing_if = "Option::is_none")]
    pub pod_selector: Option<String>,
    /// Calico policies: the subject selector as Calico combines it, in Calico's canonical text (`selector`, a
    /// GlobalNetworkPolicy's `namespaceSelector` with `pcns.` keys, `serviceAccountSelector` with `pcsa.` keys, and
    /// a NetworkPolicy's own namespace, `projectcalico.org/namespace == "ns"`). Cilium policies: the
    /// `endpointSelector` as netpol compiles it, over Cilium's labels (with a CiliumNetworkPolicy's own namespace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ingress` and/or `Egress`: the directions the policy applies to (for the admin kinds, those it has rules
    /// for; Calico's `types`, after defaulting).
    #[serde(rename = "policyTypes")]
    pub policy_types: Vec<String>,
    pub rules: RuleCounts,
    #[serde(rename = "ingressRules")]
    pub ingress_rules: Vec<PolicyRule>,
    #[serde(rename = "egressRules")]
    pub egress_rules: Vec<PolicyRule>,
    /// `namespace/pod` of the pods the policy selects, sorted.
    #[serde(rename = "selectedPods")]
    pub selected_pods: Vec<String>,
}

/// A peer in the words of its policy's API.
pub(crate) fn peer_text(kind: PolicyKind, p: &Peer) -> String {
    let admin = kind != PolicyKind::NetworkPolicy;
    match p {
        Peer::Selectors { namespaces, pods } => match (namespaces, pods) {
            (Some(ns), None) if admin => format!("namespaces {ns}"),
            (Some(ns), Some(pods)) if admin => format!("pods {pods} in namespaces {ns}"),
            (Some(ns), None) => format!("namespaceSelector {ns}"),
            (Some(ns), Some(pods)) => format!("namespaceSelector {ns} and podSelector {pods}"),
            (None, Some(pods)) => format!("podSelector {pods}"),
            (None, None) => "podSelector {}".to_string(),
        },
        Peer::IpBlock(b) => format!("ipBlock {b}"),
        Peer::Networks(n) => format!("networks {}", n.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(", ")),
        Peer::Nodes(s) => format!("nodes {s}"),
        Peer::DomainNames(d) => format!("domainNames {}", d.join(", ")),
        Peer::Fqdns(d) => format!("toFQDNs {}", d.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")),
        Peer::Calico(c) => c.to_string(),
        Peer::SubjectNodes { own, others } => Peer::subject_nodes_text(*own, *others),
        Peer::NodeSelector(sel) => format!("nodes {sel} (not the subject's own)"),
    }
}

/// The `ports` entries of a rule as text. The admin kinds' named ports have no protocol (the model holds one entry
/// per protocol): one entry each.
pub(crate) fn ports_text(kind: PolicyKind, r: &Rule) -> Vec<String> {
    if is_calico_kind(kind) || r.calico.is_some() {
        return calico_ports_text(&r.ports);
    }
    let mut out: Vec<String> = Vec::new();
    for p in &r.ports {
        let text = match &p.port {
            PortMatch::Named(n) if kind != PolicyKind::NetworkPolicy => format!("{n} (named port)"),
            _ => p.to_string(),
        };
        if out.last() != Some(&text) {
            out.push(text);
        }
    }
    out
}

/// Calico `ports`/`notPorts` as text: `80/TCP`, `1000-2000/UDP`, `http/TCP (named)` with the rule's protocol, and
/// `http (named port)` for a named port without one (the model holds one entry per protocol: one entry).
pub(crate) fn calico_ports_text(ports: &[PolicyPort]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = ports.get(i) {
        match &p.port {
            PortMatch::Named(n) if named_for_every_protocol(ports, i) => {
                i += Protocol::TRANSPORT.len();
                out.push(format!("{n} (named port)"));
            }
            _ => {
                i += 1;
                out.push(p.to_string());
            }
        }
    }
    out
}

/// Whether `ports[i..]` starts with one named port for every protocol, in [`Protocol::TRANSPORT`]'s order: how the
/// loader expands a Calico named port without a protocol.
pub(crate) fn named_for_every_protocol(ports: &[PolicyPort], i: usize) -> bool {
    let Some(PolicyPort { port: PortMatch::Named(name), .. }) = ports.get(i) else { return false };
    Protocol::TRANSPORT.iter().enumerate().all(|(k, &proto)| {
        ports.get(i + k).is_some_and(|q| q.protocol == proto && matches!(&q.port, PortMatch::Named(m) if m == name))
    })
}

/// A protocol number in Calico's words: its name when it has one (`numorstring`'s names), else the number.
pub(crate) fn calico_protocol_name(n: u8) -> String {
    match n {
        6 => "TCP".to_string(),
        17 => "UDP".to_string(),
        1 => "ICMP".to_string(),
        58 => "ICMPv6".to_string(),
        132 => "SCTP".to_string(),
        136 => "UDPLite".to_string(),
        n => n.to_string(),
    }
}

/// A rule's action in its API's words.
pub(crate) fn api_action(kind: PolicyKind, a: Action) -> &'static str {
    netpol_core::lint::action_word(kind, a)
}

fn calico_entity(
    side: EntitySide,
    peer: Option<&CalicoPeer>,
    ports: &[PolicyPort],
    not_ports: &[PolicyPort],
) -> CalicoEntity {
    fn nets<T: ToString>(v: &[T]) -> Vec<String> {
        v.iter().map(|n| n.to_string()).collect()
    }
    CalicoEntity {
        side,
        selector: peer.and_then(|p| p.selector.as_ref()).map(|s| s.to_string()),
        not_selector: peer.and_then(|p| p.not_selector.as_ref()).map(|s| s.to_string()),
        nets: peer.map_or_else(Vec::new, |p| nets(&p.nets)),
        not_nets: peer.map_or_else(Vec::new, |p| nets(&p.not_nets)),
        ports: calico_ports_text(ports),
        not_ports: calico_ports_text(not_ports),
    }
}

fn policy_rules(pol: &Policy, dir: Direction) -> Vec<PolicyRule> {
    pol.rules(dir)
        .iter()
        .enumerate()
        .map(|(index, r)| {
            let mut rule = PolicyRule {
                index,
                name: r.name.clone(),
                action: r.action.into(),
                api_action: api_action(pol.kind, r.action).to_string(),
                peers: r.peers.iter().map(|p| peer_text(pol.kind, p)).collect(),
                ports: ports_text(pol.kind, r),
                protocol: None,
                not_protocol: None,
                ip_version: None,
                icmp: None,
                not_icmp: None,
                not_ports: Vec::new(),
                source: None,
                destination: None,
                unsupported: None,
            };
            if let Some(c) = &r.calico {
                let remote = r.peers.iter().find_map(|p| match p {
                    Peer::Calico(c) => Some(&**c),
                    _ => None,
                });
                let icmp = |m: (u8, Option<u8>)| IcmpMatch { type_: m.0, code: m.1 };
                rule.protocol = c.protocol.map(calico_protocol_name);
                rule.not_protocol = c.not_protocol.map(calico_protocol_name);
                rule.ip_version = remote.and_then(|p| p.ip_version);
                rule.icmp = c.icmp.map(icmp);
                rule.not_icmp = c.not_icmp.map(icmp);
                rule.not_ports = calico_ports_text(&c.not_ports);
                rule.unsupported = c.unsupported.clone();
                let local = c.local.as_ref();
                let (source, destination) = match dir {
                    Direction::Ingress => (
                        calico_entity(EntitySide::Peer, remote, &c.src_ports, &c.not_src_ports),
                        calico_entity(EntitySide::Subject, local, &r.ports, &c.not_ports),
                    ),
                    Direction::Egress => (
                        calico_entity(EntitySide::Subject, local, &c.src_ports, &c.not_src_ports),
                        calico_entity(EntitySide::Peer, remote, &r.ports, &c.not_ports),
                    ),
                };
                rule.source = Some(source);
                rule.destination = Some(destination);
            }
            rule
        })
        .collect()
}

/// Every policy of every tier with its kind, tier, priority or order, subject, rules (with their actions) and the
/// pods it selects.
#[utoipa::path(get, path = "/api/v1/policies",
    responses((status = 200, description = "policies in tier order (Admin, NetworkPolicy, Baseline; with Calico \
        objects Calico's tiers in evaluation order, see `GET /api/v1/tiers`); admin policies by priority, kind and \
        name, NetworkPolicies by namespace and name; in a cluster with Calico objects every tier's policies in \
        evaluation order (order, then name, namespace and kind, as Felix sorts them)", body = Vec<PolicyInfo>)))]
async fn policies_handler(Extension(model): Extension<Arc<Model>>) -> Json<Vec<PolicyInfo>> {
    let e = &model.engine;
    let c = e.cluster();
    let mut selected: HashMap<PolicyId, Vec<String>> = HashMap::new();
    for ident in e.identities() {
        let mut pols: Vec<PolicyId> = ident.ingress_policies.iter().chain(&ident.egress_policies).copied().collect();
        pols.sort_unstable();
        pols.dedup();
        for pol in pols {
            selected.entry(pol).or_default().extend(ident.pods.iter().map(|&p| c.pod_ref(p)));
        }
    }
    let namespace = |pol: &Policy| pol.ns().map(|ns| c.ns_name(ns).to_string()).unwrap_or_default();
    let mut ids: Vec<PolicyId> = (0..c.policies.len()).map(PolicyId::new).collect();
    if c.has_calico() {
        ids = e.evaluation_order(&ids);
    } else {
        ids.sort_by_cached_key(|&id| {
            let pol = c.policy(id);
            (e.policy_tier(id), pol.order, pol.kind, namespace(pol), pol.name.clone())
        });
    }
    let out = ids
        .into_iter()
        .map(|id| {
            let pol = c.policy(id);
            // Calico's and Cilium's policies: their subject is an expression selector (`selector`).
            let calico = is_calico_kind(pol.kind) || pol.kind.is_cilium();
            let mut types = Vec::new();
            if pol.affects_ingress {
                types.push("Ingress".to_string());
            }
            if pol.affects_egress {
                types.push("Egress".to_string());
            }
            let mut pods = selected.remove(&id).unwrap_or_default();
            pods.sort();
            PolicyInfo {
                reference: c.policy_ref(id),
                kind: pol.kind.as_str().to_string(),
                tier: tier_name(c, pol.tier).to_string(),
                priority: priority_of(pol),
                order: order_of(c, pol),
                namespace: namespace(pol),
                name: pol.name.clone(),
                namespace_selector: match &pol.scope {
                    netpol_core::model::Scope::Cluster(sel) if !calico => Some(sel.to_string()),
                    _ => None,
                },
                pod_selector: (!calico).then(|| pol.pod_selector.to_string()),
                selector: pol.calico_selector.as_ref().map(|s| s.to_string()),
                policy_types: types,
                rules: RuleCounts { ingress: pol.ingress.len(), egress: pol.egress.len() },
                ingress_rules: policy_rules(pol, Direction::Ingress),
                egress_rules: policy_rules(pol, Direction::Egress),
                selected_pods: pods,
            }
        })
        .collect();
    Json(out)
}

// ---- host endpoints ----

/// The policies of one stage of a host endpoint, per direction, in evaluation order.
#[derive(Serialize, ToSchema)]
pub struct HostStagePolicies {
    /// `untracked` (`doNotTrack`), `pre-DNAT` (`preDNAT`, ingress only), `normal` (to and from the host itself) or
    /// `forward` (`applyOnForward`: traffic forwarded through the host).
    pub stage: String,
    /// `gnp/name`, in evaluation order (tier, then order).
    pub ingress: Vec<String>,
    pub egress: Vec<String>,
}

/// A Calico HostEndpoint.
#[derive(Serialize, ToSchema)]
pub struct HostEndpointInfo {
    pub name: String,
    /// `spec.node`.
    pub node: String,
    /// `spec.interfaceName`: `*` (every interface of the node) or an interface's name; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// `spec.expectedIPs`.
    #[serde(rename = "expectedIPs")]
    pub expected_ips: Vec<String>,
    /// The addresses flows reach it by: its `expectedIPs`; for an all-interfaces endpoint without any, its Node's
    /// addresses.
    pub addresses: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// `spec.profiles`, in order (`projectcalico-default-allow` and `kns.*` allow what no policy decides; netpol
    /// takes any other profile to allow nothing).
    pub profiles: Vec<String>,
    /// `spec.ports`: `name:port/PROTOCOL`.
    pub ports: Vec<String>,
    /// The GlobalNetworkPolicies that select it, per stage (untracked, pre-DNAT, normal, forward); a stage no
    /// policy applies to is left out.
    pub stages: Vec<HostStagePolicies>,
    /// The object's file and document.
    pub source: String,
}

/// The host endpoints of a model, by name, each with the policies of each stage.
pub(crate) fn host_endpoint_infos(e: &Engine) -> Vec<HostEndpointInfo> {
    use netpol_core::host::Stage;
    let c = e.cluster();
    let mut out: Vec<HostEndpointInfo> = c
        .host_endpoints
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let refs = |stage: Stage, dir: Direction| -> Vec<String> {
                e.host_endpoint_policies(i, stage, dir).into_iter().map(|p| c.policy_ref(p)).collect()
            };
            let stages = Stage::ALL
                .into_iter()
                .map(|stage| HostStagePolicies {
                    stage: stage.as_str().to_string(),
                    ingress: refs(stage, Direction::Ingress),
                    egress: refs(stage, Direction::Egress),
                })
                .filter(|s| !s.ingress.is_empty() || !s.egress.is_empty())
                .collect();
            HostEndpointInfo {
                name: h.name.clone(),
                node: h.node.clone(),
                interface: h.interface.clone(),
                expected_ips: h.expected_ips.iter().map(|a| a.to_string()).collect(),
                addresses: e.host_endpoint_addresses(h).iter().map(|a| a.to_string()).collect(),
                labels: h.labels.to_map(),
                profiles: h.profiles.clone(),
                ports: h.ports.iter().map(|p| p.to_string()).collect(),
                stages,
                source: h.origin.to_string(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Every Calico HostEndpoint with its node, interface, addresses, labels, profiles and named ports, and the
/// GlobalNetworkPolicies that apply to it per stage (untracked, pre-DNAT, normal, forward) and direction, in
/// evaluation order. Empty without host endpoints.
#[utoipa::path(get, path = "/api/v1/hostendpoints",
    responses((status = 200, description = "host endpoints sorted by name", body = Vec<HostEndpointInfo>)))]
async fn host_endpoints_handler(Extension(model): Extension<Arc<Model>>) -> Json<Vec<HostEndpointInfo>> {
    Json(host_endpoint_infos(&model.engine))
}

// ---- health, metrics, openapi ----

/// Readiness: `ok` once a model is loaded (with a live cluster: after the first full list of every kind).
#[utoipa::path(get, path = "/healthz", responses(
    (status = 200, description = "ok", body = String, content_type = "text/plain"),
    (status = 503, description = "live cluster not listed yet", body = String, content_type = "text/plain")))]
async fn healthz(State(state): State<AppState>) -> Response {
    if state.is_ready() {
        "ok".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "waiting for the first full list of the cluster").into_response()
    }
}

fn write_metrics(state: &AppState, model: &Model) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let m = &state.inner.metrics;
    let esc = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let _ = writeln!(s, "# HELP netpol_http_requests_total HTTP requests by route, method and status.");
    let _ = writeln!(s, "# TYPE netpol_http_requests_total counter");
    for ((route, method, status), n) in m.requests.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let _ = writeln!(
            s,
            "netpol_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
            esc(route),
            esc(method)
        );
    }
    let _ = writeln!(s, "# HELP netpol_http_request_duration_seconds HTTP request latency by route.");
    let _ = writeln!(s, "# TYPE netpol_http_request_duration_seconds histogram");
    for (route, h) in m.latency.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        let r = esc(route);
        let mut cum = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cum += h.buckets[i];
            let _ = writeln!(s, "netpol_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{le}\"}} {cum}");
        }
        let _ = writeln!(s, "netpol_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}", h.count);
        let _ = writeln!(s, "netpol_http_request_duration_seconds_sum{{route=\"{r}\"}} {}", h.sum);
        let _ = writeln!(s, "netpol_http_request_duration_seconds_count{{route=\"{r}\"}} {}", h.count);
    }
    let c = &model.engine.cluster();
    let _ = writeln!(s, "# HELP netpol_model_objects Objects in the loaded model, by kind.");
    let _ = writeln!(s, "# TYPE netpol_model_objects gauge");
    let _ = writeln!(s, "netpol_model_objects{{kind=\"namespaces\"}} {}", c.namespaces.len());
    let _ = writeln!(s, "netpol_model_objects{{kind=\"pods\"}} {}", c.pods.len());
    let _ = writeln!(s, "netpol_model_objects{{kind=\"policies\"}} {}", c.policies.len());
    let errors = model.diagnostics.iter().filter(|d| d.severity == Severity::Error).count();
    let _ = writeln!(s, "# HELP netpol_model_invalid_objects Objects skipped as invalid when loading.");
    let _ = writeln!(s, "# TYPE netpol_model_invalid_objects gauge");
    let _ = writeln!(s, "netpol_model_invalid_objects {errors}");
    let _ = writeln!(s, "# HELP netpol_model_compile_seconds Time the last successful compile took.");
    let _ = writeln!(s, "# TYPE netpol_model_compile_seconds gauge");
    let _ = writeln!(s, "netpol_model_compile_seconds {}", model.compile_seconds);
    let loaded = model.loaded_at.duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let _ = writeln!(s, "# HELP netpol_model_loaded_timestamp_seconds When the model was loaded (Unix time).");
    let _ = writeln!(s, "# TYPE netpol_model_loaded_timestamp_seconds gauge");
    let _ = writeln!(s, "netpol_model_loaded_timestamp_seconds {loaded}");
    let _ = writeln!(s, "# HELP netpol_model_revision Revision of the loaded model (1 at start, +1 per reload).");
    let _ = writeln!(s, "# TYPE netpol_model_revision gauge");
    let _ = writeln!(s, "netpol_model_revision {}", model.revision);
    let _ = writeln!(s, "# HELP netpol_reloads_total Reloads by result.");
    let _ = writeln!(s, "# TYPE netpol_reloads_total counter");
    let _ = writeln!(s, "netpol_reloads_total{{result=\"ok\"}} {}", m.reloads_ok.load(Ordering::Relaxed));
    let _ = writeln!(s, "netpol_reloads_total{{result=\"error\"}} {}", m.reloads_failed.load(Ordering::Relaxed));
    let x = &state.expensive.counters;
    let _ = writeln!(s, "# HELP netpol_expensive_requests_in_flight Expensive requests being computed.");
    let _ = writeln!(s, "# TYPE netpol_expensive_requests_in_flight gauge");
    let _ = writeln!(s, "netpol_expensive_requests_in_flight {}", x.in_flight.load(Ordering::Relaxed));
    let _ = writeln!(s, "# HELP netpol_expensive_requests_limit Expensive requests computed at once at most.");
    let _ = writeln!(s, "# TYPE netpol_expensive_requests_limit gauge");
    let _ = writeln!(s, "netpol_expensive_requests_limit {}", state.expensive.size);
    let _ = writeln!(
        s,
        "# HELP netpol_expensive_requests_total Expensive requests (what-if, graph what-if, flow replay, query with \
         explain) by outcome: completed, cancelled (the client left), rejected (503, every slot taken)."
    );
    let _ = writeln!(s, "# TYPE netpol_expensive_requests_total counter");
    for (outcome, n) in [("completed", &x.completed), ("cancelled", &x.cancelled), ("rejected", &x.rejected)] {
        let _ = writeln!(s, "netpol_expensive_requests_total{{outcome=\"{outcome}\"}} {}", n.load(Ordering::Relaxed));
    }
    let _ = writeln!(s, "# HELP netpol_accept_errors_total Failed accept calls (such as out of file descriptors).");
    let _ = writeln!(s, "# TYPE netpol_accept_errors_total counter");
    let _ = writeln!(s, "netpol_accept_errors_total {}", m.accept_errors.load(Ordering::Relaxed));
    #[cfg(feature = "kube")]
    if let Some(live) = &state.inner.live {
        live.write(&mut s);
    }
    s
}

/// Prometheus metrics (text exposition format 0.0.4).
#[utoipa::path(get, path = "/metrics",
    responses((status = 200, description = "metrics", body = String, content_type = "text/plain")))]
async fn metrics_handler(State(state): State<AppState>, Extension(model): Extension<Arc<Model>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], write_metrics(&state, &model))
        .into_response()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "netpol",
        description = "What do these Kubernetes network policies really allow, and why? Policies of every tier: \
        AdminNetworkPolicy and ClusterNetworkPolicy (tier Admin), NetworkPolicy, BaselineAdminNetworkPolicy and \
        ClusterNetworkPolicy (tier Baseline), and Calico's (`projectcalico.org/v3` NetworkPolicy and \
        GlobalNetworkPolicy in Calico's tiers: `kube-admin`, Calico's own Tiers, `default`, `kube-baseline`). Every \
        response carries the revision of the model that answered it in the `X-Netpol-Revision` header. Every error \
        answer is JSON (`ApiError`), including 405 for a method a path does not serve (with `Allow`)."
    ),
    paths(
        query_handler,
        explain_handler,
        matrix_handler,
        lint_handler,
        diagnostics_handler,
        whatif_handler,
        flows_replay_handler,
        pods_handler,
        policies_handler,
        tiers_handler,
        host_endpoints_handler,
        openapi_handler,
        healthz,
        metrics_handler,
        crate::ui::ui_index,
        crate::ui::ui_style,
        crate::ui::ui_app,
        crate::ui::ui_graph,
        crate::ui::ui_panels,
        crate::ui::ui_api,
        crate::ui::ui_icon,
        crate::ui::graph_handler,
        crate::ui::graph_whatif_handler,
        crate::ui::graph_flows_handler,
        crate::ui::manifest_handler
    ),
    components(schemas(
        ApiError,
        Flow,
        FlowAnswer,
        MatrixResponse,
        MatrixPort,
        PodInfo,
        Isolation,
        TierPolicies,
        TierPolicy,
        TierInfo,
        TierDefaultAction,
        PolicyInfo,
        PolicyRule,
        CalicoEntity,
        EntitySide,
        IcmpMatch,
        RuleAction,
        RuleCounts,
        Explanation,
        CniInfo,
        CniDependenceInfo,
        StagedExplanation,
        StagedPolicyRef,
        HostExplanation,
        HostPath,
        HostEndpointInfo,
        HostStagePolicies,
        SideExplanation,
        RuleMatch,
        Rejection,
        Verdict,
        DecidedBy,
        WhatIf,
        FlowReplayRequest,
        crate::ui::UiError,
        crate::ui::GraphResponse,
        crate::ui::GraphNode,
        crate::ui::GraphEdge,
        crate::ui::NodeIsolation,
        crate::ui::PortUse,
        crate::ui::Grouping,
        crate::ui::GraphWhatIfResponse,
        crate::ui::WhatIfEdge,
        crate::ui::EdgeChange,
        crate::ui::AppliedPolicy,
        crate::ui::GraphFlowsResponse,
        crate::ui::GraphFlowsRequest,
        crate::ui::ObservedEdge,
        crate::ui::ObservedFlow,
        crate::ui::OverlayCounts,
        crate::ui::OverlayProblem
    ))
)]
struct ApiDoc;

/// The routes of expensive requests: bounded by `--max-expensive` (503 with `Retry-After` when saturated) and
/// stopped when the client leaves. `POST /api/v1/query` is expensive with `explain`.
pub const EXPENSIVE_ROUTES: [&str; 5] =
    ["/api/v1/whatif", "/api/v1/graph/whatif", "/api/v1/flows/replay", "/api/v1/graph/flows", "/api/v1/query"];

/// The OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let mut doc = ApiDoc::openapi();
    let error = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", ContentBuilder::new().schema(Some(Ref::from_schema_name("ApiError"))).build())
            .build()
    };
    // With a live cluster, every /api/ route but this document answers 503 until the first full list.
    let not_ready =
        error("a live cluster has not been listed yet (`serve --kubeconfig`/`--in-cluster`); `Retry-After`");
    let busy = error(
        "every expensive-request slot is taken (`serve --max-expensive`; `query` only with `explain`): retry after \
         `Retry-After` seconds; or a live cluster has not been listed yet",
    );
    let uri_too_long = error(&format!("the URI is longer than {MAX_URI_LEN} bytes"));
    let timeout = error("the body did not arrive within `serve --body-timeout`");
    let too_large =
        error("the body is larger than `serve --body-limit` (refused before reading when `Content-Length` says so)");
    for (path, item) in doc.paths.paths.iter_mut() {
        let api = path.starts_with("/api/") && path != "/api/v1/openapi.json";
        let expensive = EXPENSIVE_ROUTES.contains(&path.as_str());
        for (post, op) in [(false, &mut item.get), (true, &mut item.post)] {
            let Some(op) = op.as_mut() else { continue };
            let r = &mut op.responses.responses;
            r.entry("414".to_string()).or_insert_with(|| uri_too_long.clone().into());
            if post {
                r.entry("408".to_string()).or_insert_with(|| timeout.clone().into());
                r.entry("413".to_string()).or_insert_with(|| too_large.clone().into());
            }
            if expensive {
                r.insert("503".to_string(), busy.clone().into());
            } else if api {
                r.entry("503".to_string()).or_insert_with(|| not_ready.clone().into());
            }
        }
    }
    doc
}

/// This OpenAPI 3 document.
#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "the document", body = Object)))]
async fn openapi_handler() -> Json<utoipa::openapi::OpenApi> {
    Json(openapi())
}

// ---- router ----

fn route_table() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    let mut routes = vec![
        (Method::POST, "/api/v1/query", post(query_handler)),
        (Method::GET, "/api/v1/explain", get(explain_handler)),
        (Method::GET, "/api/v1/matrix", get(matrix_handler)),
        (Method::GET, "/api/v1/lint", get(lint_handler)),
        (Method::GET, "/api/v1/diagnostics", get(diagnostics_handler)),
        (Method::POST, "/api/v1/whatif", post(whatif_handler)),
        (Method::POST, "/api/v1/flows/replay", post(flows_replay_handler)),
        (Method::GET, "/api/v1/pods", get(pods_handler)),
        (Method::GET, "/api/v1/policies", get(policies_handler)),
        (Method::GET, "/api/v1/tiers", get(tiers_handler)),
        (Method::GET, "/api/v1/hostendpoints", get(host_endpoints_handler)),
        (Method::GET, "/api/v1/openapi.json", get(openapi_handler)),
        (Method::GET, "/healthz", get(healthz)),
        (Method::GET, "/metrics", get(metrics_handler)),
    ];
    routes.extend(crate::ui::route_table());
    routes
}

/// The routes the router serves, as (method, path): what the OpenAPI document must cover.
pub fn routes() -> Vec<(Method, &'static str)> {
    route_table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

/// Takes the model snapshot the request is answered from, sets the revision header, records metrics.
async fn track(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let t = Instant::now();
    let model = state.inner.model.load_full();
    let revision = model.revision;
    let resource_version = model.resource_version();
    req.extensions_mut().insert(model);
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let method = req.method().to_string();
    let waiting =
        !state.is_ready() && route.as_deref().is_some_and(|r| r.starts_with("/api/") && r != "/api/v1/openapi.json");
    let mut res = if waiting {
        let msg = "the cluster has not been listed yet: retry when /healthz answers ok";
        Failure::new(StatusCode::SERVICE_UNAVAILABLE, "model", msg).into_response()
    } else {
        next.run(req).await
    };
    res.headers_mut().insert(REVISION_HEADER, HeaderValue::from(revision));
    if let Some(v) = resource_version.and_then(|v| HeaderValue::from_str(&v).ok()) {
        res.headers_mut().insert(RESOURCE_VERSION_HEADER, v);
    }
    let route = route.unwrap_or_else(|| "unmatched".to_string());
    state.inner.metrics.record(route, method, res.status().as_u16(), t.elapsed().as_secs_f64());
    res
}

async fn not_found() -> Failure {
    Failure::new(StatusCode::NOT_FOUND, "path", "no such route; see /api/v1/openapi.json")
}

/// The API's router (with body limit, revision header and metrics), for `serve` and for tests.
pub fn router(state: AppState) -> Router {
    let mut r: Router<AppState> = Router::new();
    for (_, path, mr) in route_table() {
        r = r.route(path, mr);
    }
    r.fallback(not_found)
        .layer(DefaultBodyLimit::max(state.body_limit))
        .route_layer(middleware::from_fn_with_state(state.clone(), read_request))
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .layer(middleware::from_fn(json_errors))
        .layer(middleware::from_fn_with_state(state.clone(), track_unmatched))
        .with_state(state)
}

/// Refuses a URI over [`MAX_URI_LEN`] (414) and a `Content-Length` over the body limit (413) before reading the
/// body, then reads the body within `--body-timeout` (408) so that handlers get it whole.
async fn read_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let close = |f: Failure| {
        let mut res = f.into_response();
        res.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        res
    };
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_LEN {
        let msg = format!("the URI has {uri_len} bytes, more than the limit of {MAX_URI_LEN}");
        return Failure::new(StatusCode::URI_TOO_LONG, "uri", msg).into_response();
    }
    let limit = state.body_limit;
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return close(too_large(limit));
    }
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(state.limits.body_timeout, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let e = e.into_inner();
            if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() {
                return close(too_large(limit));
            }
            return close(Failure::bad("body", format!("cannot read the request body: {e}")));
        }
        Err(_) => {
            let msg = format!(
                "the request body did not arrive within {:?} (`serve --body-timeout`)",
                state.limits.body_timeout
            );
            return close(Failure::new(StatusCode::REQUEST_TIMEOUT, "body", msg));
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

fn too_large(limit: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body",
        format!("request body too large: more than {limit} bytes (`serve --body-limit`)"),
    )
}

/// Every error answer is JSON: those made outside the handlers (405 from the method router, ...) get the
/// [`ApiError`] shape. `/healthz` keeps its documented plain-text 503.
async fn json_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || path == "/healthz" {
        return res;
    }
    let (mut parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let reason = status.canonical_reason().unwrap_or("error").to_ascii_lowercase();
    let (field, error) = if status == StatusCode::METHOD_NOT_ALLOWED {
        // The method router adds `Allow` after this layer: the allowed methods come from the route table.
        let mut allow: Vec<String> =
            routes().into_iter().filter(|(_, p)| *p == path).map(|(m, _)| m.to_string()).collect();
        if allow.iter().any(|m| m == "GET") {
            allow.push("HEAD".to_string());
        }
        ("method", format!("method {method} is not allowed on {path}; allowed: {}", allow.join(", ")))
    } else {
        match text {
            Ok(t) if !t.is_empty() => ("request", format!("{reason}: {t}")),
            _ => ("request", reason),
        }
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let body = serde_json::to_vec(&ApiError { error, field: Some(field.to_string()) }).unwrap_or_default();
    Response::from_parts(parts, axum::body::Body::from(body))
}

/// Unmatched requests (404 fallback, 405) do not pass `route_layer`: give them the header and count them.
async fn track_unmatched(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let t = Instant::now();
    let method = req.method().to_string();
    let mut res = next.run(req).await;
    if res.headers().contains_key(REVISION_HEADER) {
        return res;
    }
    res.headers_mut().insert(REVISION_HEADER, HeaderValue::from(state.revision()));
    state.inner.metrics.record("unmatched".to_string(), method, res.status().as_u16(), t.elapsed().as_secs_f64());
    res
}

// ---- watch and serve ----

/// What `--watch` compares: the manifest files that loading reads (the same walk, [`netpol_input::files::manifest_files`]:
/// each directory once by canonical path, so a symlink loop neither hangs nor multiplies the work), each with its
/// modification time and size; or the error of the walk (an input gone), so that its return is noticed too.
/// The watched files with their modification time and size (or why they could not be listed).
pub type Fingerprint = Result<Vec<(PathBuf, Option<SystemTime>, u64)>, String>;

pub fn fingerprint(files: &[String]) -> Fingerprint {
    let listed = netpol_input::files::manifest_files(files).map_err(|e| format!("{e:#}"))?;
    Ok(listed
        .files
        .into_iter()
        .map(|p| match std::fs::metadata(&p) {
            Ok(meta) => {
                let modified = meta.modified().ok();
                (p, modified, meta.len())
            }
            Err(_) => (p, None, 0),
        })
        .collect())
}

/// Polls the inputs every `every` and reloads when a file changed, appeared or disappeared since `last` (the
/// fingerprint taken before the model was loaded). A failed reload keeps the old model (logged).
pub async fn watch(state: AppState, mut last: Fingerprint, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let files = state.inner.files.clone();
        let Ok(now) = tokio::task::spawn_blocking(move || fingerprint(&files)).await else { continue };
        if now == last {
            continue;
        }
        last = now;
        let st = state.clone();
        match tokio::task::spawn_blocking(move || st.reload()).await {
            Ok(Ok(())) => tracing::warn!(revision = state.revision(), "manifests changed: reloaded"),
            Ok(Err(e)) => tracing::error!("reload failed, keeping revision {}: {e:#}", state.revision()),
            Err(e) => tracing::error!("reload task failed: {e}"),
        }
    }
}

/// Loads the manifests (or starts listing and watching the cluster), binds `opts.listen` and serves until ctrl-c.
pub async fn serve(opts: ServeOptions) -> anyhow::Result<()> {
    #[cfg(feature = "kube")]
    let cluster = live::start(&opts).await?;
    #[cfg(not(feature = "kube"))]
    let cluster: Option<AppState> = None;
    let state = match cluster {
        Some(state) => state,
        None => {
            let files = opts.files.clone();
            // The files as they were before the first load: a change made while loading is a change.
            let (before, state) = tokio::task::spawn_blocking(move || {
                let before = fingerprint(&files);
                (before, AppState::from_files(&files))
            })
            .await
            .context("loading task failed")?;
            let state = state?
                .with_body_limit(opts.body_limit)
                .with_lint_config(opts.lint_config.clone())
                .with_limits(opts.limits.clone());
            if opts.watch {
                tokio::spawn(watch(state.clone(), before, Duration::from_secs(1)));
            }
            state
        }
    };
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    #[cfg(feature = "kube")]
    let cluster_server = state.live_metrics().map(|live| live.server().to_string());
    #[cfg(not(feature = "kube"))]
    let cluster_server: Option<String> = None;
    match cluster_server {
        Some(server) => eprintln!(
            "netpol: serving the cluster at {server} on http://{addr} (listing and watching; /healthz is ok once listed)"
        ),
        None => eprintln!(
            "netpol: serving {} pod(s) on http://{addr} (revision {})",
            state.model().engine.cluster().pods.len(),
            state.revision()
        ),
    }
    serve_on(listener, state, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}

/// Longest pause between two `accept` calls that failed (out of file descriptors, ...).
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Serves [`router`]`(state)` on `listener` until `shutdown` completes, then lets the connections finish their
/// current request (at most 10 s).
///
/// Each connection is hyper's HTTP/1 server with `--header-timeout` as header read timeout (which also closes
/// idle keep-alive connections); bodies are read within `--body-timeout` by [`router`]. A failed `accept` (such
/// as EMFILE when every file descriptor is taken) is logged and retried after a pause doubling from 5 ms to 1 s,
/// so the server neither exits nor spins, and accepts again once connections close.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(state.limits.header_timeout).keep_alive(true);
    let app = router(state.clone());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    let mut backoff = Duration::ZERO;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // A connection reset before it was accepted concerns that client only.
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionRefused
                ) {
                    continue;
                }
                state.inner.metrics.accept_errors.fetch_add(1, Ordering::Relaxed);
                backoff = (backoff * 2).clamp(Duration::from_millis(5), ACCEPT_BACKOFF_MAX);
                tracing::error!("accept failed, retrying in {backoff:?}: {e}");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        backoff = Duration::ZERO;
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("connection closed: {e}");
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("connections still open after 10 s: closing"),
    }
}

/// [`serve`] on a new multi-threaded tokio runtime, for a synchronous `main`.
pub fn serve_blocking(opts: ServeOptions) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    rt.block_on(serve(opts))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// A flow log whose client left stops reading (503), plain or gzip, and a log read to the end is whole.
    #[test]
    fn a_flow_log_stops_when_the_client_leaves() {
        let line = br#"{"src": "a/b", "dst": "10.0.0.1", "port": 80, "verdict": "allowed"}"#;
        let log: Vec<u8> = line.iter().chain(b"\n").copied().cycle().take((line.len() + 1) * 5000).collect();
        let expensive = Expensive::new(1);
        let (job, cancel) = expensive.begin().map_err(|_| "busy").unwrap();
        let read = read_flow_log(&log, "body", None, 1 << 30, &job).map_err(|f| f.1.error).unwrap();
        assert_eq!((read.lines, read.errors.len(), read.folded.len()), (5000, 0, 1));
        drop(cancel);
        let stopped = read_flow_log(&log, "body", None, 1 << 30, &job).err().expect("cancelled");
        assert_eq!(stopped.0, StatusCode::SERVICE_UNAVAILABLE);
        assert!(stopped.1.error.contains("cancelled"), "{}", stopped.1.error);
        drop(job);
        assert_eq!(expensive.counters.cancelled.load(Ordering::Relaxed), 1);
    }
}
