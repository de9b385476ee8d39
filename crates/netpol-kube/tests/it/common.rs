//! What the live tests share: a fake API server seeded with the small cluster of `netpol_fakeapi::fixtures`, a
//! kubeconfig for it, `netpol_kube::run` publishing into a [`Sink`], and the engine's answers by name.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netpol_core::compile::{Endpoint, Engine};
use netpol_core::load::Diagnostic;
use netpol_core::model::PolicyKind;
use netpol_core::portset::Protocol;
use netpol_fakeapi::fixtures;
use netpol_fakeapi::{FakeApiServer, Kind as ApiKind, RequestLog};
use netpol_kube::{Kind, LiveMetrics, Publish, Source, Update};

/// Longest wait for the model to reflect a change (it normally takes ~50–100 ms).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `$cond` (which may `.await`) every 20 ms until it holds; fails after [`TIMEOUT`].
macro_rules! eventually {
    ($what:expr, $cond:expr) => {{
        let start = std::time::Instant::now();
        loop {
            if $cond {
                break;
            }
            if start.elapsed() > $crate::common::TIMEOUT {
                panic!("timed out after {:?} waiting for {}", $crate::common::TIMEOUT, $what);
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }};
}

/// A fake API server with two namespaces and a pod in each (`frontend/web` 10.0.1.1, `backend/api` 10.0.2.1),
/// and a kubeconfig pointing at it.
pub(crate) struct Cluster {
    pub(crate) server: FakeApiServer,
    pub(crate) kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) fn cluster() -> Cluster {
    let server = FakeApiServer::start().expect("fake API server");
    let scratch = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("netpol-kube-it");
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let dir = tempfile::tempdir_in(&scratch).expect("temporary directory");
    let kubeconfig = dir.path().join("kubeconfig");
    server.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    fixtures::seed_two_namespaces(&server);
    Cluster { server, kubeconfig, _dir: dir }
}

impl Cluster {
    pub(crate) fn source(&self) -> Source {
        Source::Kubeconfig { paths: vec![self.kubeconfig.clone()], context: None }
    }

    pub(crate) fn put(&self, obj: serde_json::Value) -> u64 {
        self.server.try_put(obj).expect("put")
    }
}

/// The fake server's kind of one of netpol's (Calico's: under its CRDs' group).
pub(crate) fn api_kind(kind: Kind) -> ApiKind {
    ApiKind::from_api_version(kind.api_version(), kind.name()).expect("a kind the fake server serves")
}

/// The kinds netpol reads from a cluster without Calico, Cilium and Antrea (the fake server's default).
pub(crate) fn without_calico() -> Vec<Kind> {
    Kind::ALL.into_iter().filter(|k| !k.is_calico() && !k.is_cilium() && !k.is_antrea()).collect()
}

/// How many watches netpol keeps open on `server`: one per kind it serves, but ServiceAccounts only where Calico
/// is, Services, EndpointSlices and Endpoints only where Cilium is, Calico's CRDs only where its API server is not,
/// and CiliumCIDRGroups at one version (`v2` where served, else `v2alpha1`); Events never.
pub(crate) fn watched_kinds(server: &FakeApiServer) -> usize {
    use netpol_fakeapi::Api;
    let served = server.served_kinds();
    let api_server = served.iter().any(|k| k.api() == Api::CalicoApiServer);
    let calico = served.iter().any(|k| matches!(k.api(), Api::CalicoCrd | Api::CalicoApiServer));
    let cilium = served.contains(&ApiKind::CiliumNetworkPolicy);
    let antrea = served.iter().any(|k| k.api() == Api::AntreaCrd);
    let cidr_groups_v2 = served.contains(&ApiKind::CiliumCidrGroup);
    served
        .iter()
        .filter(|k| match k {
            ApiKind::ServiceAccount => calico,
            ApiKind::Service => cilium || antrea,
            ApiKind::EndpointSlice | ApiKind::Endpoints => cilium,
            ApiKind::CiliumCidrGroupV2Alpha1 => !cidr_groups_v2,
            // Written by the node agent, never read.
            ApiKind::Event => false,
            _ => k.api() != Api::CalicoCrd || !api_server,
        })
        .count()
}

/// Discovery requests (`GET /apis`: which of Calico's groups, and whether Cilium's, the cluster serves).
pub(crate) fn discoveries(requests: &[RequestLog]) -> usize {
    requests.iter().filter(|r| r.path == "/apis").count()
}

pub(crate) fn lists(requests: &[RequestLog], kind: Kind) -> Vec<&RequestLog> {
    let path = api_kind(kind).path();
    requests.iter().filter(|r| r.path == path && !r.is_watch()).collect()
}

pub(crate) fn watches(requests: &[RequestLog], kind: Kind) -> Vec<&RequestLog> {
    let path = api_kind(kind).path();
    requests.iter().filter(|r| r.path == path && r.is_watch()).collect()
}

/// `ns/name` of a pod, or an address.
pub(crate) fn endpoint(engine: &Engine, what: &str) -> Endpoint {
    if let Ok(ip) = what.parse::<IpAddr>() {
        return engine.endpoint_for_ip(ip);
    }
    let (ns, name) = what.split_once('/').expect("ns/name");
    let pod = engine.cluster().find_pod(ns, name).unwrap_or_else(|| panic!("no pod {what}"));
    Endpoint::Pod { pod, ip: None }
}

pub(crate) fn allowed(engine: &Engine, src: &str, dst: &str, port: u16) -> bool {
    engine.allowed(&endpoint(engine, src), &endpoint(engine, dst), Protocol::Tcp, port)
}

/// The resourceVersion of `plural` in a `pods=…,networkpolicies=…,…` text; `None` when the kind is left out.
pub(crate) fn version_of(versions: &str, plural: &str) -> Option<String> {
    versions.split(',').find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == plural).map(|(_, v)| v.to_string()))
}

pub(crate) fn policy_kinds(engine: &Engine) -> Vec<PolicyKind> {
    let mut kinds: Vec<PolicyKind> = engine.cluster().policies.iter().map(|p| p.kind).collect();
    kinds.sort();
    kinds
}

// ---- watch ----

/// What `run` published last: the working engine and the resourceVersions it reflects.
#[derive(Clone, Default)]
pub(crate) struct Sink(pub(crate) Arc<Mutex<Published>>);

#[derive(Default)]
pub(crate) struct Published {
    pub(crate) engine: Option<Engine>,
    /// The staged view published with it.
    pub(crate) staged: Option<Engine>,
    pub(crate) revision: u64,
    pub(crate) resource_versions: String,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl Publish for Sink {
    fn publish(&self, update: Update) -> u64 {
        let mut p = self.0.lock().unwrap();
        p.revision += 1;
        p.engine = Some(std::sync::Arc::unwrap_or_clone(update.engine));
        p.staged = update.staged;
        p.resource_versions = update.resource_versions;
        p.diagnostics = update.diagnostics;
        p.revision
    }

    fn advance(&self, resource_versions: String) {
        self.0.lock().unwrap().resource_versions = resource_versions;
    }
}

/// `run` on the cluster.
pub(crate) struct Live {
    pub(crate) sink: Sink,
    pub(crate) metrics: Arc<LiveMetrics>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Live {
    pub(crate) async fn start(c: &Cluster) -> Live {
        let live = Live::spawn(c).await;
        eventually!("the first full list", live.metrics.synced());
        live
    }

    /// `run` on the cluster, without waiting for the first full list.
    pub(crate) async fn spawn(c: &Cluster) -> Live {
        let (client, server) = c.source().client().await.expect("client");
        let sink = Sink::default();
        let metrics = Arc::new(LiveMetrics::new(&server));
        let task = tokio::spawn(netpol_kube::run(sink.clone(), client, metrics.clone()));
        Live { sink, metrics, task }
    }

    pub(crate) fn diagnostics(&self) -> Vec<Diagnostic> {
        self.sink.0.lock().unwrap().diagnostics.clone()
    }

    pub(crate) fn engine(&self) -> Engine {
        self.sink.0.lock().unwrap().engine.clone().expect("an engine")
    }

    /// The staged view published with the engine (`None` without staged policies).
    pub(crate) fn staged(&self) -> Option<Engine> {
        self.sink.0.lock().unwrap().staged.clone()
    }

    pub(crate) fn versions(&self) -> String {
        self.sink.0.lock().unwrap().resource_versions.clone()
    }

    pub(crate) fn version(&self, kind: Kind) -> Option<String> {
        version_of(&self.versions(), kind.plural())
    }

    /// Waits until the model reflects the event of `kind` at `rv`.
    pub(crate) async fn applied(&self, kind: Kind, rv: u64) {
        let want = Some(rv.to_string());
        eventually!(format!("{} at {rv} (now {})", kind.plural(), self.versions()), self.version(kind) == want);
    }

    pub(crate) fn allowed(&self, src: &str, dst: &str, port: u16) -> bool {
        allowed(&self.engine(), src, dst, port)
    }

    /// The value of a sample of the live metrics (name and labels).
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        let mut text = String::new();
        self.metrics.write(&mut text);
        let line = text.lines().find(|l| l.starts_with(sample)).unwrap_or_else(|| panic!("no {sample} in\n{text}"));
        line.rsplit(' ').next().and_then(|v| v.parse().ok()).expect("a number")
    }

    pub(crate) fn errors(&self) -> f64 {
        Kind::ALL.iter().map(|k| self.metric(&format!("netpol_watch_errors_total{{kind=\"{}\"}}", k.plural()))).sum()
    }
}
