//! Live clusters: Namespaces, Pods and NetworkPolicies read from a Kubernetes API server with kube-rs, instead
//! of manifest files.
//!
//! - One-shot commands (`query`, `explain`, `matrix`, `lint`, `describe` with `--kubeconfig`, `--context` or
//!   `--in-cluster`): [`snapshot`] lists the three kinds (paginated, one consistent list per kind) and loads them.
//! - `netpol serve`: [`run`] lists and watches the three kinds with kube-runtime's watcher (bookmarks, a relist
//!   after `410 Gone`, retries with backoff after errors) and keeps one working [`Engine`] current with
//!   [`Engine::update`]. Events are applied in batches (whatever arrives within [`BATCH_WINDOW`] of the first);
//!   each batch that changes the model is handed to a [`Publish`] (the server's state, in `netpol-server`) as
//!   the next immutable model revision. This crate knows nothing of the server.
//!
//! Every object goes through the file loader's validation ([`Loader::add_value`]) with an origin naming it,
//! `cluster:pods/NAMESPACE/NAME` (document 0), so an invalid object is reported and left out exactly as in a
//! file. Pods in phase `Succeeded` or `Failed` are left out: they have no network any more, and their IP may
//! already belong to another pod. Pods without an IP yet (`Pending`) are loaded as a manifest pod without
//! `status.podIP` is: selectors match them, they cannot be named by address.
//!
//! [`Store`] is the pure part: it turns watch events into [`Change`]s and drops events that do not change the
//! model (most pod updates only touch status conditions; a relist finds most objects at the resourceVersion
//! already applied), so the engine sees only real changes.

#![forbid(unsafe_code)]

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::Hasher;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace as K8sNamespace, Pod as K8sPod};
use k8s_openapi::api::networking::v1::NetworkPolicy as K8sNetworkPolicy;
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Config;
use netpol_core::compile::Engine;
use netpol_core::load::{Diagnostic, Loaded, Loader, Severity};
use netpol_core::model::Origin;
use netpol_core::update::{Change, UpdateStats};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

/// The client type of [`Source::client`] (kube-rs's), for [`run`].
pub use kube::Client;

/// How long the applier keeps collecting events after the first one of a batch.
pub const BATCH_WINDOW: Duration = Duration::from_millis(50);
/// Most events applied in one batch.
const MAX_BATCH: usize = 20_000;
/// Page size of list calls.
const PAGE_SIZE: u32 = 500;

/// Where to find the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A kubeconfig: `paths` (merged in order, as `KUBECONFIG=a:b` is; empty: `$KUBECONFIG` or
    /// `~/.kube/config`) and a context (default: its current context).
    Kubeconfig { paths: Vec<PathBuf>, context: Option<String> },
    /// The service account of the pod this runs in (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
    InCluster,
}

impl Source {
    /// The client, and the API server's URL (for messages).
    pub async fn client(&self) -> anyhow::Result<(Client, String)> {
        let config = match self {
            Source::InCluster => Config::incluster().context(
                "cannot use the in-cluster configuration (is this running in a pod with a service account?)",
            )?,
            Source::Kubeconfig { paths, context } => {
                let opts = KubeConfigOptions { context: context.clone(), ..Default::default() };
                let mut merged: Option<Kubeconfig> = None;
                for p in paths {
                    let kc = Kubeconfig::read_from(p)
                        .with_context(|| format!("cannot read the kubeconfig `{}`", p.display()))?;
                    merged = Some(match merged {
                        None => kc,
                        Some(m) => m.merge(kc).with_context(|| format!("cannot merge `{}`", p.display()))?,
                    });
                }
                match merged {
                    Some(kc) => Config::from_custom_kubeconfig(kc, &opts).await,
                    None => Config::from_kubeconfig(&opts).await,
                }
                .context("invalid kubeconfig")?
            }
        };
        let server = config.cluster_url.to_string().trim_end_matches('/').to_string();
        let client = Client::try_from(config).context("cannot create the Kubernetes client")?;
        Ok((client, server))
    }
}

/// The kinds netpol reads from a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Pod,
    NetworkPolicy,
    Namespace,
}

impl Kind {
    /// In the order of revision reports.
    pub const ALL: [Kind; 3] = [Kind::Pod, Kind::NetworkPolicy, Kind::Namespace];

    /// The resource name: `pods`, `networkpolicies`, `namespaces`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Pod => "pods",
            Kind::NetworkPolicy => "networkpolicies",
            Kind::Namespace => "namespaces",
        }
    }

    fn index(self) -> usize {
        match self {
            Kind::Pod => 0,
            Kind::NetworkPolicy => 1,
            Kind::Namespace => 2,
        }
    }
}

/// One object read from the API server, as JSON for the loader.
#[derive(Clone, Debug)]
pub struct Object {
    pub kind: Kind,
    /// Empty for namespaces.
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    /// The object; `None` when it is left out of the model (a pod in phase `Succeeded` or `Failed`).
    pub value: Option<Value>,
}

type Key = (Kind, String, String);

impl Object {
    /// From the JSON of an object (with `kind` and `apiVersion`, as k8s-openapi serialises them).
    pub fn from_value(kind: Kind, value: Value) -> Object {
        let meta = |f: &str| value.pointer(&format!("/metadata/{f}")).and_then(Value::as_str).unwrap_or("").to_string();
        let (namespace, name, resource_version) = (meta("namespace"), meta("name"), meta("resourceVersion"));
        let terminated = kind == Kind::Pod
            && matches!(value.pointer("/status/phase").and_then(Value::as_str), Some("Succeeded" | "Failed"));
        let namespace = if kind == Kind::Namespace { String::new() } else { namespace };
        Object { kind, namespace, name, resource_version, value: (!terminated).then_some(value) }
    }

    fn new<K: Serialize>(kind: Kind, o: &K) -> Result<Object, serde_json::Error> {
        Ok(Object::from_value(kind, serde_json::to_value(o)?))
    }

    /// `cluster:pods/NAMESPACE/NAME`, `cluster:namespaces/NAME`: the "file" of the object's origin.
    pub fn source_name(&self) -> String {
        source_name(self.kind, &self.namespace, &self.name)
    }

    fn key(&self) -> Key {
        (self.kind, self.namespace.clone(), self.name.clone())
    }
}

fn source_name(kind: Kind, namespace: &str, name: &str) -> String {
    if kind == Kind::Namespace {
        format!("cluster:{}/{name}", kind.plural())
    } else {
        format!("cluster:{}/{namespace}/{name}", kind.plural())
    }
}

fn origin(name: String) -> Origin {
    Origin { file: name.into(), document: 0, item: None }
}

/// Loads objects through the file loader (namespaces, then pods, then policies, each sorted by name).
pub fn load_objects(objects: impl IntoIterator<Item = Object>) -> Loaded {
    let mut objects: Vec<Object> = objects.into_iter().filter(|o| o.value.is_some()).collect();
    objects.sort_by(|a, b| {
        let rank = |k: Kind| match k {
            Kind::Namespace => 0,
            Kind::Pod => 1,
            Kind::NetworkPolicy => 2,
        };
        (rank(a.kind), &a.namespace, &a.name).cmp(&(rank(b.kind), &b.namespace, &b.name))
    });
    let mut loader = Loader::new();
    for o in objects {
        let name = o.source_name();
        if let Some(v) = o.value {
            loader.add_value(v, origin(name));
        }
    }
    loader.finish()
}

/// Whether a resourceVersion is newer than another: numerically when both are numbers (etcd's revisions),
/// otherwise the later one seen wins (resourceVersions are opaque to clients).
fn newer(new: &str, old: &str) -> bool {
    match (new.parse::<u64>(), old.parse::<u64>()) {
        (Ok(n), Ok(o)) => n > o,
        _ => true,
    }
}

fn bump(slot: &mut Option<String>, rv: &str) {
    if rv.is_empty() {
        return;
    }
    if slot.as_deref().is_none_or(|old| newer(rv, old)) {
        *slot = Some(rv.to_string());
    }
}

/// `pods=…,networkpolicies=…,namespaces=…` (`-` for a kind without any resourceVersion yet).
fn versions_text(v: &[Option<String>; 3]) -> String {
    let mut s = String::new();
    for (i, k) in Kind::ALL.iter().enumerate() {
        let sep = if i > 0 { "," } else { "" };
        let _ = write!(s, "{sep}{}={}", k.plural(), v[k.index()].as_deref().unwrap_or("-"));
    }
    s
}

// ---- one-shot ----

/// One consistent list of each kind.
pub struct Snapshot {
    pub server: String,
    pub objects: Vec<Object>,
    /// The list resourceVersion of each kind, by [`Kind::index`].
    versions: [Option<String>; 3],
}

impl Snapshot {
    /// `pods=…,networkpolicies=…,namespaces=…`: the list resourceVersions.
    pub fn resource_versions(&self) -> String {
        versions_text(&self.versions)
    }
}

fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 410)
}

/// Lists every object of one kind, page by page; a list whose continue token expired (410) starts over.
async fn list_all<K>(api: &Api<K>, kind: Kind) -> anyhow::Result<(Vec<Object>, Option<String>)>
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let mut attempts = 0;
    'again: loop {
        attempts += 1;
        let mut objects = Vec::new();
        let mut version = None;
        let mut lp = ListParams::default().limit(PAGE_SIZE);
        loop {
            let page = match api.list(&lp).await {
                Ok(p) => p,
                Err(e) if is_gone(&e) && attempts < 3 => {
                    tracing::info!(kind = kind.plural(), "list expired (410 Gone): listing again");
                    continue 'again;
                }
                Err(e) => return Err(e).with_context(|| format!("cannot list {}", kind.plural())),
            };
            if version.is_none() {
                version = page.metadata.resource_version.clone().filter(|s| !s.is_empty());
            }
            for item in &page.items {
                objects.push(Object::new(kind, item).with_context(|| format!("cannot convert a {kind:?}"))?);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => lp = lp.continue_token(&c),
                None => return Ok((objects, version)),
            }
        }
    }
}

/// Lists the namespaces, pods and network policies of the cluster.
pub async fn snapshot(source: &Source) -> anyhow::Result<Snapshot> {
    let (client, server) = source.client().await?;
    let (ns_api, pod_api) = (Api::<K8sNamespace>::all(client.clone()), Api::<K8sPod>::all(client.clone()));
    let pol_api = Api::<K8sNetworkPolicy>::all(client);
    let (ns, pods, pols) = futures::try_join!(
        list_all(&ns_api, Kind::Namespace),
        list_all(&pod_api, Kind::Pod),
        list_all(&pol_api, Kind::NetworkPolicy),
    )
    .with_context(|| format!("reading the cluster at {server}"))?;
    let mut versions: [Option<String>; 3] = Default::default();
    versions[Kind::Namespace.index()] = ns.1;
    versions[Kind::Pod.index()] = pods.1;
    versions[Kind::NetworkPolicy.index()] = pols.1;
    let objects = ns.0.into_iter().chain(pods.0).chain(pols.0).collect();
    Ok(Snapshot { server, objects, versions })
}

/// [`snapshot`] on a new single-threaded runtime, for the synchronous commands. Returns the loaded cluster and
/// the line to print on stderr (`answered from SERVER at resourceVersion pods=… networkpolicies=… namespaces=…`).
pub fn snapshot_blocking(source: &Source) -> anyhow::Result<(Loaded, String)> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let snap = rt.block_on(snapshot(source))?;
    let terminated = snap.objects.iter().filter(|o| o.value.is_none()).count();
    let line = format!(
        "answered from {} at resourceVersion {}{}",
        snap.server,
        snap.resource_versions().replace(',', " "),
        if terminated > 0 { format!(" ({terminated} terminated pod(s) left out)") } else { String::new() }
    );
    Ok((load_objects(snap.objects), line))
}

// ---- the store: watch events -> changes ----

/// One watch event of one kind (kube-runtime's `watcher::Event`, with the object converted).
#[derive(Clone, Debug)]
pub enum Event {
    /// A (re)list starts.
    Init,
    /// An object of the list.
    InitApply(Object),
    /// The list is complete: objects not in it are gone.
    InitDone,
    /// An object was added or modified.
    Apply(Object),
    Delete(Object),
}

/// What a batch of events amounts to.
#[derive(Default)]
pub struct Batch {
    /// Set by the event that completed the first full list of every kind: the whole cluster.
    pub initial: Option<Loaded>,
    /// Changes to apply after `initial` (or to the current engine), in order.
    pub changes: Vec<Change>,
    /// Events that did not change the model.
    pub unchanged: u64,
    /// Whether the set of diagnostics (invalid objects) changed.
    pub diagnostics_changed: bool,
}

struct Entry {
    resource_version: String,
    /// A fingerprint of the model object; `None` when the object is invalid (left out of the model).
    model: Option<u64>,
    diagnostics: Vec<Diagnostic>,
}

#[derive(Default)]
struct KindState {
    /// Between `Init` and `InitDone`: the objects listed so far.
    listing: Option<Vec<Object>>,
    /// Until the first full list of every kind: this kind's objects.
    initial: Option<HashMap<(String, String), Object>>,
    synced: bool,
    /// Highest resourceVersion applied.
    resource_version: Option<String>,
}

/// The objects the model holds, by kind, namespace and name, with their resourceVersions: turns watch events
/// into [`Change`]s. Pure: no I/O.
#[derive(Default)]
pub struct Store {
    kinds: [KindState; 3],
    entries: HashMap<Key, Entry>,
    built: bool,
}

struct FingerprintWriter<'a>(&'a mut DefaultHasher);

impl std::fmt::Write for FingerprintWriter<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.write(s.as_bytes());
        Ok(())
    }
}

/// A hash of everything the engine reads from a model object (its `Debug` form, which prints every field).
fn fingerprint(parts: &dyn std::fmt::Debug) -> u64 {
    let mut h = DefaultHasher::new();
    let _ = write!(FingerprintWriter(&mut h), "{parts:?}");
    h.finish()
}

fn pod_fp(p: &netpol_core::model::Pod) -> u64 {
    fingerprint(&(&p.labels, &p.ports, &p.ips, p.host_network))
}

fn policy_fp(p: &netpol_core::model::Policy) -> u64 {
    fingerprint(&(&p.pod_selector, &p.ingress, &p.egress, p.affects_ingress, p.affects_egress))
}

fn namespace_fp(n: &netpol_core::model::Namespace) -> u64 {
    fingerprint(&n.labels)
}

fn delete_change(key: &Key) -> Change {
    let (kind, namespace, name) = key.clone();
    match kind {
        Kind::Pod => Change::DeletePod { namespace, name },
        Kind::NetworkPolicy => Change::DeletePolicy { namespace, name },
        Kind::Namespace => Change::DeleteNamespace { name },
    }
}

impl Store {
    pub fn new() -> Store {
        Store::default()
    }

    /// Whether the first full list of every kind has been loaded.
    pub fn synced(&self) -> bool {
        self.built
    }

    /// The highest resourceVersion applied per kind: `pods=…,networkpolicies=…,namespaces=…`.
    pub fn resource_versions(&self) -> String {
        let v: [Option<String>; 3] = std::array::from_fn(|i| self.kinds[i].resource_version.clone());
        versions_text(&v)
    }

    /// The diagnostics of the objects held (invalid objects), sorted by object.
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        let mut d: Vec<Diagnostic> = self.entries.values().flat_map(|e| e.diagnostics.iter().cloned()).collect();
        d.sort_by(|a, b| a.origin.file.cmp(&b.origin.file));
        d
    }

    /// Takes one event into account; the changes it causes are appended to `out`.
    pub fn event(&mut self, kind: Kind, ev: Event, out: &mut Batch) {
        let i = kind.index();
        match ev {
            Event::Init => self.kinds[i].listing = Some(Vec::new()),
            Event::InitApply(o) => match &mut self.kinds[i].listing {
                Some(l) => l.push(o),
                // Not in a list (kube-runtime never does this): an update.
                None => self.event(kind, Event::Apply(o), out),
            },
            Event::InitDone => {
                let listed = self.kinds[i].listing.take().unwrap_or_default();
                let ks = &mut self.kinds[i];
                ks.synced = true;
                for o in &listed {
                    bump(&mut ks.resource_version, &o.resource_version);
                }
                if self.built {
                    self.relisted(kind, listed, out);
                } else {
                    ks.initial = Some(listed.into_iter().map(|o| ((o.namespace.clone(), o.name.clone()), o)).collect());
                    self.try_build(out);
                }
            }
            Event::Apply(o) => {
                bump(&mut self.kinds[i].resource_version, &o.resource_version);
                if self.built {
                    self.put(o, out);
                } else {
                    let m = self.kinds[i].initial.get_or_insert_with(HashMap::new);
                    m.insert((o.namespace.clone(), o.name.clone()), o);
                }
            }
            Event::Delete(o) => {
                bump(&mut self.kinds[i].resource_version, &o.resource_version);
                if self.built {
                    self.remove(&o.key(), out);
                } else if let Some(m) = &mut self.kinds[i].initial {
                    m.remove(&(o.namespace, o.name));
                }
            }
        }
    }

    /// Once every kind has been listed: loads everything with one loader.
    fn try_build(&mut self, out: &mut Batch) {
        if self.built || !self.kinds.iter().all(|k| k.synced) {
            return;
        }
        self.built = true;
        let objects: Vec<Object> =
            self.kinds.iter_mut().filter_map(|k| k.initial.take()).flat_map(HashMap::into_values).collect();
        let mut by_source: HashMap<String, Key> = HashMap::new();
        for o in objects.iter().filter(|o| o.value.is_some()) {
            by_source.insert(o.source_name(), o.key());
            let entry = Entry { resource_version: o.resource_version.clone(), model: None, diagnostics: Vec::new() };
            self.entries.insert(o.key(), entry);
        }
        let loaded = load_objects(objects);
        let c = &loaded.cluster;
        let fps = c
            .pods
            .iter()
            .map(|p| (&p.source.origin.file, pod_fp(p)))
            .chain(c.policies.iter().map(|p| (&p.origin.file, policy_fp(p))))
            .chain(c.namespaces.iter().filter_map(|n| n.origin.as_ref().map(|o| (&o.file, namespace_fp(n)))));
        for (file, fp) in fps {
            if let Some(e) = by_source.get(&**file).and_then(|k| self.entries.get_mut(k)) {
                e.model = Some(fp);
            }
        }
        for d in &loaded.diagnostics {
            log_diagnostic(d);
            if let Some(e) = by_source.get(&*d.origin.file).and_then(|k| self.entries.get_mut(k)) {
                e.diagnostics.push(d.clone());
            }
        }
        out.diagnostics_changed |= !loaded.diagnostics.is_empty();
        out.initial = Some(loaded);
    }

    /// After a relist of one kind: puts what changed, deletes what is gone.
    fn relisted(&mut self, kind: Kind, listed: Vec<Object>, out: &mut Batch) {
        let mut present: HashSet<(String, String)> = HashSet::with_capacity(listed.len());
        for o in listed {
            present.insert((o.namespace.clone(), o.name.clone()));
            self.put(o, out);
        }
        let gone: Vec<Key> = self
            .entries
            .keys()
            .filter(|k| k.0 == kind && !present.contains(&(k.1.clone(), k.2.clone())))
            .cloned()
            .collect();
        for k in gone {
            self.remove(&k, out);
        }
    }

    /// An object added, modified, or listed again.
    fn put(&mut self, o: Object, out: &mut Batch) {
        let key = o.key();
        let Some(value) = o.value else {
            // A pod that terminated: gone from the network.
            self.remove(&key, out);
            return;
        };
        let prev = self.entries.get(&key);
        if prev.is_some_and(|e| e.resource_version == o.resource_version) {
            out.unchanged += 1;
            return;
        }
        let prev_model = prev.and_then(|e| e.model);
        let mut loader = Loader::new();
        loader.add_value(value, origin(source_name(key.0, &key.1, &key.2)));
        let mut loaded = loader.finish();
        let next = match key.0 {
            Kind::Pod => {
                loaded.cluster.pods.pop().map(|pod| (pod_fp(&pod), Change::PutPod { namespace: key.1.clone(), pod }))
            }
            Kind::NetworkPolicy => loaded
                .cluster
                .policies
                .pop()
                .map(|policy| (policy_fp(&policy), Change::PutPolicy { namespace: key.1.clone(), policy })),
            Kind::Namespace => loaded
                .cluster
                .namespaces
                .into_iter()
                .find(|n| n.origin.is_some())
                .map(|n| (namespace_fp(&n), Change::PutNamespace(n))),
        };
        let no_diagnostics: &[Diagnostic] = &[];
        if prev.map_or(no_diagnostics, |e| &e.diagnostics) != loaded.diagnostics.as_slice() {
            out.diagnostics_changed = true;
            loaded.diagnostics.iter().for_each(log_diagnostic);
        }
        let model = match (prev_model, next) {
            (Some(a), Some((b, _))) if a == b => {
                out.unchanged += 1;
                Some(b)
            }
            (_, Some((b, change))) => {
                out.changes.push(change);
                Some(b)
            }
            (Some(_), None) => {
                // Now invalid: left out, as the loader leaves invalid objects out of files.
                out.changes.push(delete_change(&key));
                None
            }
            (None, None) => {
                out.unchanged += 1;
                None
            }
        };
        let entry = Entry { resource_version: o.resource_version, model, diagnostics: loaded.diagnostics };
        self.entries.insert(key, entry);
    }

    fn remove(&mut self, key: &Key, out: &mut Batch) {
        match self.entries.remove(key) {
            Some(e) => {
                out.diagnostics_changed |= !e.diagnostics.is_empty();
                if e.model.is_some() {
                    out.changes.push(delete_change(key));
                } else {
                    out.unchanged += 1;
                }
            }
            None => out.unchanged += 1,
        }
    }
}

fn log_diagnostic(d: &Diagnostic) {
    match d.severity {
        Severity::Error => tracing::warn!("invalid object left out of the model: {d}"),
        Severity::Warning => tracing::info!("{d}"),
    }
}

// ---- metrics ----

/// Counters of the live source, for `/metrics`.
pub struct LiveMetrics {
    server: String,
    synced: AtomicBool,
    /// By kind: apply, delete, list (objects of a list).
    events: [[AtomicU64; 3]; 3],
    lists: [AtomicU64; 3],
    errors: [AtomicU64; 3],
    observed: Mutex<[Option<String>; 3]>,
    updates: AtomicU64,
    changes: AtomicU64,
    in_place: AtomicU64,
    recompiles: AtomicU64,
    unchanged: AtomicU64,
    restarts: AtomicU64,
}

impl LiveMetrics {
    pub fn new(server: &str) -> LiveMetrics {
        LiveMetrics {
            server: server.to_string(),
            synced: AtomicBool::new(false),
            events: Default::default(),
            lists: Default::default(),
            errors: Default::default(),
            observed: Mutex::new(Default::default()),
            updates: AtomicU64::new(0),
            changes: AtomicU64::new(0),
            in_place: AtomicU64::new(0),
            recompiles: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    fn event(&self, kind: Kind, ev: &Event) {
        let k = kind.index();
        let (slot, obj) = match ev {
            Event::Apply(o) => (Some(0), Some(o)),
            Event::Delete(o) => (Some(1), Some(o)),
            Event::InitApply(o) => (Some(2), Some(o)),
            Event::Init => {
                self.lists[k].fetch_add(1, Ordering::Relaxed);
                (None, None)
            }
            Event::InitDone => (None, None),
        };
        if let Some(s) = slot {
            self.events[k][s].fetch_add(1, Ordering::Relaxed);
        }
        if let Some(o) = obj {
            bump(&mut self.observed.lock().unwrap_or_else(|e| e.into_inner())[k], &o.resource_version);
        }
    }

    fn error(&self, kind: Kind) {
        self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    fn update(&self, changes: usize, st: UpdateStats) {
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.changes.fetch_add(changes as u64, Ordering::Relaxed);
        self.in_place.fetch_add(st.in_place as u64, Ordering::Relaxed);
        self.recompiles.fetch_add(u64::from(st.recompiled), Ordering::Relaxed);
    }

    /// Appends the Prometheus text of these metrics.
    pub fn write(&self, s: &mut String) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        fn metric(s: &mut String, name: &str, kind: &str, help: &str) {
            let _ = writeln!(s, "# HELP {name} {help}");
            let _ = writeln!(s, "# TYPE {name} {kind}");
        }
        metric(s, "netpol_live_synced", "gauge", "1 once the first full list of every kind is loaded.");
        let _ = writeln!(s, "netpol_live_synced{{server=\"{}\"}} {}", self.server, u8::from(self.synced()));
        metric(s, "netpol_watch_events_total", "counter", "Watch events received, by kind and type.");
        for k in Kind::ALL {
            for (j, t) in ["apply", "delete", "list"].iter().enumerate() {
                let n = get(&self.events[k.index()][j]);
                let _ = writeln!(s, "netpol_watch_events_total{{kind=\"{}\",type=\"{t}\"}} {n}", k.plural());
            }
        }
        metric(s, "netpol_watch_lists_total", "counter", "Full lists by kind: the first one and every relist.");
        for k in Kind::ALL {
            let _ = writeln!(s, "netpol_watch_lists_total{{kind=\"{}\"}} {}", k.plural(), get(&self.lists[k.index()]));
        }
        metric(s, "netpol_watch_errors_total", "counter", "Watch and list errors by kind (each retried with backoff).");
        for k in Kind::ALL {
            let _ =
                writeln!(s, "netpol_watch_errors_total{{kind=\"{}\"}} {}", k.plural(), get(&self.errors[k.index()]));
        }
        metric(s, "netpol_watch_resource_version", "gauge", "Highest resourceVersion received, by kind.");
        let observed = self.observed.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for k in Kind::ALL {
            if let Some(n) = observed[k.index()].as_deref().and_then(|v| v.parse::<u64>().ok()) {
                let _ = writeln!(s, "netpol_watch_resource_version{{kind=\"{}\"}} {n}", k.plural());
            }
        }
        metric(s, "netpol_live_updates_total", "counter", "Batches of changes applied to the engine.");
        let _ = writeln!(s, "netpol_live_updates_total {}", get(&self.updates));
        metric(s, "netpol_live_changes_total", "counter", "Object changes applied to the engine.");
        let _ = writeln!(s, "netpol_live_changes_total {}", get(&self.changes));
        metric(s, "netpol_live_changes_in_place_total", "counter", "Changes the engine applied in place.");
        let _ = writeln!(s, "netpol_live_changes_in_place_total {}", get(&self.in_place));
        metric(s, "netpol_live_recompiles_total", "counter", "Batches that recompiled the engine.");
        let _ = writeln!(s, "netpol_live_recompiles_total {}", get(&self.recompiles));
        metric(s, "netpol_live_events_unchanged_total", "counter", "Events that did not change the model.");
        let _ = writeln!(s, "netpol_live_events_unchanged_total {}", get(&self.unchanged));
        metric(s, "netpol_live_restarts_total", "counter", "Times the live source started over from a full list.");
        let _ = writeln!(s, "netpol_live_restarts_total {}", get(&self.restarts));
    }

    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }
}

// ---- serve: watch and apply ----

/// A model the live source publishes: the working engine after a batch of changes.
pub struct Update {
    pub engine: Engine,
    /// Seconds spent applying the batch (or compiling the first full list).
    pub compile_seconds: f64,
    /// The diagnostics of the objects held (invalid objects), as [`Store::diagnostics`].
    pub diagnostics: Vec<Diagnostic>,
    /// The resourceVersions the engine reflects: `pods=…,networkpolicies=…,namespaces=…`.
    pub resource_versions: String,
}

/// Where [`run`] publishes models: `netpol serve`'s state implements it.
pub trait Publish: Send + Sync + 'static {
    /// Publishes `update` as the next model revision (atomically for readers) and returns that revision.
    fn publish(&self, update: Update) -> u64;
    /// Nothing the engine reads changed: the current model is as current as `resource_versions`.
    fn advance(&self, resource_versions: String);
}

/// Watches one kind and forwards its events; errors are counted and retried with kube-runtime's default
/// backoff (0.8 s doubling to 30 s, with jitter).
async fn watch_kind<K>(api: Api<K>, kind: Kind, tx: mpsc::Sender<(Kind, Event)>, metrics: Arc<LiveMetrics>)
where
    K: kube::Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug + Send + 'static,
{
    let stream = watcher(api, watcher::Config::default().page_size(PAGE_SIZE)).default_backoff();
    let mut stream = std::pin::pin!(stream);
    while let Some(item) = stream.next().await {
        let convert = |o: &K| Object::new(kind, o);
        let ev = match item {
            Ok(watcher::Event::Init) => Ok(Event::Init),
            Ok(watcher::Event::InitDone) => Ok(Event::InitDone),
            Ok(watcher::Event::InitApply(o)) => convert(&o).map(Event::InitApply),
            Ok(watcher::Event::Apply(o)) => convert(&o).map(Event::Apply),
            Ok(watcher::Event::Delete(o)) => convert(&o).map(Event::Delete),
            Err(e) => {
                metrics.error(kind);
                tracing::warn!(kind = kind.plural(), "watch error, retrying with backoff: {e}");
                continue;
            }
        };
        let ev = match ev {
            Ok(ev) => ev,
            Err(e) => {
                metrics.error(kind);
                tracing::error!(kind = kind.plural(), "cannot convert an object: {e}");
                continue;
            }
        };
        if tx.send((kind, ev)).await.is_err() {
            return;
        }
    }
}

/// Keeps the model `sink` publishes current with the cluster: watches the three kinds and applies their events
/// in batches, counting them in `metrics`. Runs until the task is dropped. Should applying a batch fail (a bug),
/// it starts over from a full list, the last published model still answering meanwhile.
pub async fn run(sink: impl Publish, client: Client, metrics: Arc<LiveMetrics>) {
    loop {
        let (tx, mut rx) = mpsc::channel(4096);
        let tasks = [
            tokio::spawn(watch_kind(
                Api::<K8sNamespace>::all(client.clone()),
                Kind::Namespace,
                tx.clone(),
                metrics.clone(),
            )),
            tokio::spawn(watch_kind(Api::<K8sPod>::all(client.clone()), Kind::Pod, tx.clone(), metrics.clone())),
            tokio::spawn(watch_kind(
                Api::<K8sNetworkPolicy>::all(client.clone()),
                Kind::NetworkPolicy,
                tx.clone(),
                metrics.clone(),
            )),
        ];
        drop(tx);
        let result = apply_events(&sink, &mut rx, &metrics).await;
        for t in &tasks {
            t.abort();
        }
        match result {
            Ok(()) => return,
            Err(e) => {
                metrics.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::error!("applying cluster events failed, starting over from a full list: {e:#}");
            }
        }
    }
}

/// The state of the applier between batches: the store and, after the first full list, the working engine.
#[derive(Default)]
struct Applier {
    store: Store,
    engine: Option<Engine>,
}

/// What applying one batch produced.
struct Applied {
    /// The new model to publish, when something the engine reads changed.
    update: Option<Update>,
    /// The resourceVersions the engine reflects after the batch.
    versions: String,
    changes: usize,
    stats: UpdateStats,
    unchanged: u64,
    seconds: f64,
}

impl Applier {
    /// Takes a batch of events into account and updates the engine (CPU work: runs on a blocking thread).
    /// `None` until the first full list of every kind is complete.
    fn apply(&mut self, events: Vec<(Kind, Event)>, metrics: &LiveMetrics) -> Option<Applied> {
        let mut batch = Batch::default();
        for (kind, ev) in events {
            metrics.event(kind, &ev);
            self.store.event(kind, ev, &mut batch);
        }
        let t = Instant::now();
        let first = batch.initial.take().map(|loaded| Engine::new(loaded.cluster));
        let first_sync = first.is_some();
        let Some(engine) = first.or_else(|| self.engine.take()) else {
            metrics.unchanged.fetch_add(batch.unchanged, Ordering::Relaxed);
            return None;
        };
        let engine = self.engine.insert(engine);
        let changes = std::mem::take(&mut batch.changes);
        let n = changes.len();
        let stats = if changes.is_empty() { UpdateStats::default() } else { engine.update(changes) };
        let publish = first_sync || n > 0 || batch.diagnostics_changed;
        let seconds = t.elapsed().as_secs_f64();
        let versions = self.store.resource_versions();
        let update = publish.then(|| Update {
            engine: engine.clone(),
            compile_seconds: seconds,
            diagnostics: self.store.diagnostics(),
            resource_versions: versions.clone(),
        });
        Some(Applied { update, versions, changes: n, stats, unchanged: batch.unchanged, seconds })
    }
}

/// Receives events until the channel closes, applying each batch to the engine and publishing the result.
async fn apply_events(
    sink: &impl Publish,
    rx: &mut mpsc::Receiver<(Kind, Event)>,
    metrics: &Arc<LiveMetrics>,
) -> anyhow::Result<()> {
    let mut applier = Applier::default();
    while let Some(first) = rx.recv().await {
        let mut events = vec![first];
        let deadline = tokio::time::Instant::now() + BATCH_WINDOW;
        while events.len() < MAX_BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(ev)) => events.push(ev),
                _ => break,
            }
        }
        let m = Arc::clone(metrics);
        let job = tokio::task::spawn_blocking(move || {
            let applied = applier.apply(events, &m);
            (applier, applied)
        });
        let (back, applied) = job.await.context("the engine update task failed")?;
        applier = back;
        let Some(a) = applied else { continue };
        match a.update {
            Some(update) => {
                let revision = sink.publish(update);
                metrics.synced.store(true, Ordering::Relaxed);
                tracing::info!(
                    revision,
                    changes = a.changes,
                    stats = ?a.stats,
                    seconds = a.seconds,
                    resource_versions = %a.versions,
                    "model updated"
                );
            }
            // Nothing the engine reads changed: the current model is as current as these events.
            None => sink.advance(a.versions),
        }
        // Counted once the model reflects the batch, so that a reader of the counters sees its effect.
        if a.changes > 0 {
            metrics.update(a.changes, a.stats);
        }
        metrics.unchanged.fetch_add(a.unchanged, Ordering::Relaxed);
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(ns: &str, name: &str, rv: u64, app: &str, ip: &str) -> Object {
        Object::from_value(
            Kind::Pod,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string(), "labels": {"app": app}},
                "status": {"podIP": ip, "phase": "Running"}}),
        )
    }

    fn policy(ns: &str, name: &str, rv: u64) -> Object {
        Object::from_value(
            Kind::NetworkPolicy,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": name, "namespace": ns, "resourceVersion": rv.to_string()},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
        )
    }

    fn list(store: &mut Store, kind: Kind, objects: Vec<Object>, out: &mut Batch) {
        store.event(kind, Event::Init, out);
        for o in objects {
            store.event(kind, Event::InitApply(o), out);
        }
        store.event(kind, Event::InitDone, out);
    }

    fn synced_store() -> Store {
        let mut s = Store::new();
        let mut b = Batch::default();
        list(&mut s, Kind::Namespace, vec![], &mut b);
        list(
            &mut s,
            Kind::Pod,
            vec![pod("a", "web", 5, "web", "10.0.0.1"), pod("a", "cli", 6, "cli", "10.0.0.2")],
            &mut b,
        );
        assert!(b.initial.is_none());
        list(&mut s, Kind::NetworkPolicy, vec![policy("a", "deny", 7)], &mut b);
        let initial = b.initial.unwrap();
        assert_eq!(initial.cluster.pods.len(), 2);
        assert_eq!(initial.cluster.policies.len(), 1);
        assert!(b.changes.is_empty());
        s
    }

    #[test]
    fn first_full_list_builds_once_every_kind_is_listed() {
        let s = synced_store();
        assert!(s.synced());
        assert_eq!(s.resource_versions(), "pods=6,networkpolicies=7,namespaces=-");
    }

    #[test]
    fn status_only_updates_change_nothing() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut p = pod("a", "web", 9, "web", "10.0.0.1");
        p.value.as_mut().unwrap()["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        s.event(Kind::Pod, Event::Apply(p), &mut b);
        assert!(b.changes.is_empty());
        assert_eq!(b.unchanged, 1);
        s.event(Kind::Pod, Event::Apply(pod("a", "web", 10, "other", "10.0.0.1")), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutPod { pod, .. }] if pod.name == "web"));
        assert_eq!(s.resource_versions(), "pods=10,networkpolicies=7,namespaces=-");
    }

    #[test]
    fn relist_puts_only_what_changed_and_deletes_what_is_gone() {
        let mut s = synced_store();
        let mut b = Batch::default();
        // web unchanged (same resourceVersion), cli gone, db new.
        list(
            &mut s,
            Kind::Pod,
            vec![pod("a", "web", 5, "web", "10.0.0.1"), pod("a", "db", 12, "db", "10.0.0.3")],
            &mut b,
        );
        assert_eq!(b.changes.len(), 2, "{:?}", b.changes);
        assert!(b.changes.iter().any(|c| matches!(c, Change::PutPod { pod, .. } if pod.name == "db")));
        assert!(b.changes.iter().any(|c| matches!(c, Change::DeletePod { name, .. } if name == "cli")));
        assert_eq!(b.unchanged, 1);
    }

    #[test]
    fn terminated_pods_are_left_out() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut p = pod("a", "web", 11, "web", "10.0.0.1");
        p = Object::from_value(Kind::Pod, {
            let mut v = p.value.take().unwrap();
            v["status"]["phase"] = json!("Succeeded");
            v
        });
        assert!(p.value.is_none());
        s.event(Kind::Pod, Event::Apply(p), &mut b);
        assert!(matches!(&b.changes[..], [Change::DeletePod { name, .. }] if name == "web"));
    }

    #[test]
    fn invalid_objects_are_reported_and_left_out() {
        let mut s = synced_store();
        let mut b = Batch::default();
        let mut bad = policy("a", "deny", 13);
        bad.value.as_mut().unwrap()["spec"]["policyTypes"] = json!(["Sideways"]);
        s.event(Kind::NetworkPolicy, Event::Apply(bad), &mut b);
        assert!(matches!(&b.changes[..], [Change::DeletePolicy { name, .. }] if name == "deny"));
        assert!(b.diagnostics_changed);
        let d = s.diagnostics();
        assert_eq!(d.len(), 1);
        assert_eq!(&*d[0].origin.file, "cluster:networkpolicies/a/deny");
        assert_eq!(d[0].field.as_deref(), Some("spec.policyTypes[0]"));
        let mut b = Batch::default();
        s.event(Kind::NetworkPolicy, Event::Apply(policy("a", "deny", 14)), &mut b);
        assert!(matches!(&b.changes[..], [Change::PutPolicy { .. }]));
        assert!(b.diagnostics_changed);
        assert!(s.diagnostics().is_empty());
    }

    #[test]
    fn events_before_the_first_full_list_are_folded_in() {
        let mut s = Store::new();
        let mut b = Batch::default();
        list(&mut s, Kind::Pod, vec![pod("a", "web", 5, "web", "10.0.0.1")], &mut b);
        s.event(Kind::Pod, Event::Apply(pod("a", "cli", 6, "cli", "10.0.0.2")), &mut b);
        s.event(Kind::Pod, Event::Delete(pod("a", "web", 7, "web", "10.0.0.1")), &mut b);
        list(&mut s, Kind::Namespace, vec![], &mut b);
        list(&mut s, Kind::NetworkPolicy, vec![], &mut b);
        let c = b.initial.unwrap().cluster;
        assert_eq!(c.pods.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["cli"]);
        assert_eq!(s.resource_versions(), "pods=7,networkpolicies=-,namespaces=-");
    }

    #[test]
    fn resource_versions_compare_numerically() {
        let mut slot = None;
        bump(&mut slot, "9");
        bump(&mut slot, "10");
        bump(&mut slot, "8");
        assert_eq!(slot.as_deref(), Some("10"));
        bump(&mut slot, "opaque");
        assert_eq!(slot.as_deref(), Some("opaque"));
    }
}
